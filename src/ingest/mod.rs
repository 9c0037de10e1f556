//! One file in, one `ImportResult` out: detect the kind, read and judge the rows, match, apply.
//!
//! Every way in (an SFTP upload, a file copied into an inbox, `gateway import`, `gateway validate`)
//! ends in `process`, so a file gets the same result whichever way it came.

pub mod actuals;
pub mod carers;
pub mod cplis;
pub mod matching;
pub mod result;
pub mod source;
pub mod visits;

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::Config;
use crate::domain::{Cpli, Organisation};
use crate::store::{Store, StoreError};
use matching::CpliIndex;
pub use result::{Code, Counts, FileKind, ImportResult, Issue, Severity, Status};
use source::{Encoding, Rows, ScanError};

/// Failures of ours (not of the provider's file): the file could not be read from our own disk, or
/// the store failed. The file stays in the spool and is tried again.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
}

/// A file on its way in.
pub struct Incoming<'a> {
    /// Where the file is now (spool, or the user's own path for `validate`).
    pub path: &'a Path,
    /// The name the provider gave it.
    pub file_name: String,
    pub import_id: String,
    pub received_at: DateTime<Utc>,
}

/// What the judging is allowed to see and do.
pub enum Mode<'a> {
    /// Judge and store, against everything the store knows of the organisation.
    Import(&'a Store),
    /// Judge only. With a store (and an organisation) rows are judged against what it holds; the
    /// given CPLIs, if any, replace the stored ones.
    Validate { store: Option<&'a Store>, cplis: Option<Vec<Cpli>> },
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Judges (and in `Import` mode applies) one file.
pub fn process(config: &Config, org: Option<&Organisation>, incoming: &Incoming<'_>, mode: Mode<'_>) -> Result<ImportResult, IngestError> {
    if let Mode::Import(store) = &mode {
        // The same import id again (a replay after a crash): it was applied once; answer the same.
        if let Some(done) = store.import_result(&incoming.import_id)? {
            return Ok(done);
        }
    }
    let mut result = ImportResult {
        file: incoming.file_name.clone(),
        import_id: incoming.import_id.clone(),
        organisation: org.map(|o| o.name.clone()).unwrap_or_default(),
        kind: FileKind::Unknown,
        status: Status::Processed,
        received_at: incoming.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        processed_at: String::new(),
        sha256: String::new(),
        counts: Counts::default(),
        issues: Vec::new(),
    };
    let outcome = judge(config, org, incoming, &mode, &mut result);
    result.processed_at = now_rfc3339();
    let store = match &mode {
        Mode::Import(s) => Some(*s),
        Mode::Validate { .. } => None,
    };
    match outcome? {
        Judged::Failed => {
            result.status = Status::Failed;
            result.counts = Counts::default();
            sort_issues(&mut result.issues);
            if let Some(s) = store {
                s.record_import(org.map_or("", |o| o.slug.as_str()), &result)?;
            }
        }
        Judged::Visits { batch } => {
            finish_counts(&mut result);
            batch.commit(&result)?;
        }
        Judged::Actuals { slug, changes } => {
            finish_counts(&mut result);
            if let Some(s) = store {
                s.commit_actuals(&slug, &changes, &result)?;
            }
        }
        Judged::Carers { slug, changes } => {
            finish_counts(&mut result);
            if let Some(s) = store {
                s.commit_carers(&slug, &changes.upserts, &changes.deletes, &result)?;
            }
        }
    }
    Ok(result)
}

fn finish_counts(result: &mut ImportResult) {
    sort_issues(&mut result.issues);
    result.counts.data_quality_issues = result.issues.iter().filter(|i| i.severity == Severity::Warning).count() as u64;
}

/// File-level issues first, then by row; the order of issues on one row is kept.
fn sort_issues(issues: &mut [Issue]) {
    issues.sort_by_key(|i| i.row.map_or(0, |r| r + 1));
}

enum Judged<'s> {
    Failed,
    Visits { batch: crate::store::VisitBatch<'s> },
    Carers { slug: String, changes: carers::CarerChanges },
    Actuals { slug: String, changes: Vec<crate::store::ActualChange> },
}

fn judge<'s>(
    config: &Config,
    org: Option<&Organisation>,
    incoming: &Incoming<'_>,
    mode: &Mode<'s>,
    result: &mut ImportResult,
) -> Result<Judged<'s>, IngestError> {
    let spec = |header: &source::Header, kind| match kind {
        FileKind::Visits => visits::scan_spec(header),
        FileKind::Actuals => actuals::scan_spec(header),
        FileKind::Carers => source::ScanSpec { key: header.position("carerref"), slot: None },
        _ => source::ScanSpec::default(),
    };
    let started = std::time::Instant::now();
    let scan = match source::scan(incoming.path, &config.limits, spec) {
        Ok(s) => s,
        Err(ScanError::File(issue)) => {
            result.issues.push(issue);
            return Ok(Judged::Failed);
        }
        Err(ScanError::Io(e)) => return Err(e.into()),
    };
    tracing::debug!(file = incoming.file_name, rows = scan.data_rows, ms = started.elapsed().as_millis() as u64, "first pass");
    result.sha256 = scan.sha256.clone();
    result.kind = scan.kind;
    if scan.encoding == Encoding::Windows1252 {
        result.issues.push(Issue::file(
            Code::EncodingGuessed,
            None,
            "the file is not UTF-8, so it was read as Windows-1252 (Excel's \"CSV (Comma delimited)\"); check names with accents, or save as \"CSV UTF-8\"",
        ));
    }
    let (store, given_cplis) = match mode {
        Mode::Import(s) => (Some(*s), None),
        Mode::Validate { store, cplis } => (*store, cplis.as_deref()),
    };
    let write = matches!(mode, Mode::Import(_));
    match scan.kind {
        FileKind::Unknown => {
            result.issues.push(Issue::file(Code::UnknownFileKind, None, unknown_kind_message(&scan.header)));
            Ok(Judged::Failed)
        }
        FileKind::Visits => {
            let cols = match visits::Columns::find(&scan.header, &mut result.issues) {
                Ok(c) => c,
                Err(mut errs) => {
                    result.issues.append(&mut errs);
                    return Ok(Judged::Failed);
                }
            };
            let slug = org.map(|o| o.slug.clone()).unwrap_or_default();
            let cplis = cpli_index(given_cplis, store, org)?;
            let carers = match (store, org) {
                (Some(s), Some(_)) => Some(s.carer_refs(&slug)?),
                _ => None,
            };
            let locked = store.map(|s| s.locked_until()).transpose()?.flatten();
            let today = config.rules.today.unwrap_or_else(|| chrono::Local::now().date_naive());
            let ctx = visits::Context {
                org,
                cplis: cplis.as_ref(),
                carers: carers.as_ref(),
                locked,
                rules: &config.rules,
                periods: &config.periods,
                today,
                no_visit_levels: config.rules.no_visit_service_levels.iter().map(|l| crate::domain::NameKey::new(l)).collect(),
            };
            let batch = match store {
                Some(s) => s.begin_visits(&slug, &incoming.import_id, write)?,
                None => crate::store::VisitBatch::offline(),
            };
            let rows = Rows::open(incoming.path, scan.encoding)?;
            let started = std::time::Instant::now();
            match visits::import(&scan, rows, &cols, &ctx, &batch, &mut result.issues) {
                Ok(counts) => {
                    tracing::debug!(file = incoming.file_name, ms = started.elapsed().as_millis() as u64, "rows judged and applied");
                    result.counts = counts;
                    Ok(Judged::Visits { batch })
                }
                Err(e) => {
                    batch.abort()?;
                    Err(e)
                }
            }
        }
        FileKind::Actuals => {
            let cols = match actuals::Columns::find(&scan.header, &mut result.issues) {
                Ok(c) => c,
                Err(mut errs) => {
                    result.issues.append(&mut errs);
                    return Ok(Judged::Failed);
                }
            };
            let slug = org.map(|o| o.slug.clone()).unwrap_or_default();
            let cplis = cpli_index(given_cplis, store, org)?;
            let ctx = actuals::Context {
                org,
                cplis: cplis.as_ref(),
                locked: store.map(|s| s.locked_until()).transpose()?.flatten(),
                periods: &config.periods,
                hours_step_minutes: config.rules.actuals_hours_step_minutes,
                store: store.filter(|_| org.is_some()).map(|s| (s, slug.as_str())),
                import_id: &incoming.import_id,
            };
            let mut rows = Rows::open(incoming.path, scan.encoding)?;
            let (counts, changes) = actuals::judge(&scan, &mut rows, &cols, &ctx, &mut result.issues)?;
            result.counts = counts;
            Ok(Judged::Actuals { slug, changes: if write { changes } else { Vec::new() } })
        }
        FileKind::Carers => {
            let slug = org.map(|o| o.slug.clone()).unwrap_or_default();
            let known = match store {
                Some(s) => s.carer_refs(&slug)?,
                None => Default::default(),
            };
            let mut rows = Rows::open(incoming.path, scan.encoding)?;
            match carers::judge(&scan, &mut rows, &known, &mut result.issues)? {
                Ok((counts, changes)) => {
                    result.counts = counts;
                    Ok(Judged::Carers { slug, changes })
                }
                Err(()) => Ok(Judged::Failed),
            }
        }
    }
}

/// Why a header is not one we take, with the likeliest fix.
/// The CPLIs rows are matched against: those given to `validate` replace the stored ones; offline
/// without them nothing is matched.
fn cpli_index(
    given: Option<&[Cpli]>,
    store: Option<&Store>,
    org: Option<&Organisation>,
) -> Result<Option<CpliIndex>, IngestError> {
    let cplis = match (given, store, org) {
        (Some(given), _, _) => Some(given.iter().filter(|c| org.is_none_or(|o| o.is_named(&c.organisation_name))).cloned().collect()),
        (None, Some(s), Some(o)) => Some(s.cplis_for_org(o)?),
        _ => None,
    };
    Ok(cplis.map(CpliIndex::new))
}

fn unknown_kind_message(header: &source::Header) -> String {
    if header.keys.iter().any(|k| k == "cpliid") {
        return "this is a CPLI extract: the council loads those with `gateway cplis load`; providers send visits, actuals or carers files".into();
    }
    if let [only] = header.names.as_slice() {
        for (sep, name) in [(';', "semicolons"), ('\t', "tabs"), ('|', "bars")] {
            if only.contains(sep) {
                return format!(
                    "the header row is one column separated by {name}: the file must be comma-separated CSV (in Excel: Save As > \"CSV UTF-8 (Comma delimited)\")"
                );
            }
        }
    }
    let first: Vec<&str> = header.names.iter().take(3).map(String::as_str).collect();
    format!(
        "the header row ({}...) is not that of a visits file (VisitRef, Deleted, PlannedVisitDate, ...), an actuals file (SSRef, ServiceLevel, ServiceName, PeriodStart, ...) or a carers file (CarerRef, Forename, Surname, Deleted); the first row of a CSV must hold the headings",
        first.join(", ")
    )
}
