//! Actuals in the table of kinds while their rules still run on their own machinery
//! (issue 11, stage A): thin adapters, removed as each kind moves onto `cells` and `engine`.

use super::kinds::{File, Kind, Pending};
use super::result::{Counts, FileKind, ImportResult};
use super::source::{Header, Rows, ScanSpec};
use super::{actuals, cpli_index, IngestError, Issues};
use crate::store::{ActualBatch, StoreError};

pub struct Actuals;
pub static ACTUALS: Actuals = Actuals;

impl Kind for Actuals {
    fn kind(&self) -> FileKind {
        FileKind::Actuals
    }
    fn noun(&self) -> &'static str {
        "actuals"
    }
    fn headings(&self) -> &'static [&'static str] {
        &actuals::HEADINGS
    }
    fn required(&self) -> usize {
        13
    }
    fn detected_by(&self) -> &'static str {
        actuals::HEADINGS[4]
    }
    fn missing_hint(&self) -> &'static str {
        "an actuals file needs Deleted, SSRef, ServiceLevel, ServiceName, PeriodStart, PeriodEnd, Planned, Actual, Frustrated, Missed, Extra, Visits and Comments (ClientRef, NHSNumber, ServiceLevelRef, ServiceRef, OrganisationRef and OrganisationName may be left out)"
    }
    fn scan_spec(&self, header: &Header) -> ScanSpec {
        actuals::scan_spec(header)
    }
    fn judge<'s>(&self, file: &File<'_, 's>, issues: &mut Issues) -> Result<(Counts, Box<dyn Pending + 's>), IngestError> {
        let cols = actuals::Columns::find(&file.scan.header, &mut Vec::new()).map_err(|_| std::io::Error::other("actuals headings"))?;
        let slug = file.slug();
        let cplis = cpli_index(file.given_cplis, file.store, file.org)?;
        let ctx = actuals::Context {
            org: file.org,
            cplis: cplis.as_ref(),
            locked: file.store.map(|s| s.locked_until()).transpose()?.flatten(),
            periods: &file.config.periods,
            hours_step_minutes: file.config.rules.actuals_hours_step_minutes,
            store: file.store.filter(|_| file.org.is_some()).map(|s| (s, slug.as_str())),
            import_id: &file.incoming.import_id,
        };
        let mut rows = Rows::open(file.incoming.path, file.scan.encoding)?;
        // Accepted rows are written as they are judged, like a visits file's (issue 9).
        let batch = match file.writer() {
            Some(s) => Some(s.begin_actuals(&slug, &file.incoming.import_id)?),
            None => None,
        };
        let mut apply = |change: crate::store::ActualChange| -> Result<(), IngestError> {
            match &batch {
                Some(b) => Ok(b.put(&change)?),
                None => Ok(()),
            }
        };
        match actuals::judge(file.scan, &mut rows, &cols, &ctx, issues, &mut apply) {
            Ok(counts) => Ok((counts, Box::new(ActualsPending(batch)))),
            Err(e) => {
                if let Some(b) = batch {
                    b.abort()?;
                }
                Err(e)
            }
        }
    }
}

/// `None` when nothing is written (validate).
struct ActualsPending<'s>(Option<ActualBatch<'s>>);

impl Pending for ActualsPending<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        self.0.map_or(Ok(()), |b| b.commit(result))
    }
    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.0.map_or(Ok(()), ActualBatch::abort)
    }
}
