//! The council's own files (issue 10): a CPLI extract dropped into `council/inbox` (over SFTP by a
//! council login, or copied in) is loaded exactly as `gateway cplis load` loads it, all of it or none
//! of it, and answered in `council/results` with the counts and every bad row; claim decisions and
//! disputes files (issue 12) are judged row by row.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::data_dir::SpooledFile;
use crate::ingest::cplis::{self, CpliError};
use crate::ingest::kinds::Kind;
use crate::ingest::source::Header;
use crate::ingest::{self, AnswerPlan, IngestError};
use crate::outcome::{Code, ExtractCounts, FileKind, ImportResult, Issue, Severity, Status};
use crate::pipeline::{catching_panics, CpliLoad, Gateway, GatewayError, Result};

/// What the council's inbox takes, for the answer to any other file.
const TAKES: &str = "the council's inbox takes the CPLI extract (a CSV whose header has CPLIID, SSRef, OrganisationName, ServiceName, ServiceLevel, StartDate, Quantity, Unit, Frequency, UnitCost, Authorised), claim decisions (Decision, and ClaimId or Organisation and ClaimRef) and disputes (Organisation, VisitRef, DisputeType and Details to raise one; DisputeId and Close to close one)";

/// Puts a load's counts into the council's result: CPLIs read, new, updated, none rejected,
/// organisations created (the match changes are known only after matching again).
pub(crate) fn count_load(result: &mut ImportResult, load: &CpliLoad) {
    result.counts.read = load.cplis as u64;
    result.counts.new = load.new as u64;
    result.counts.updated = load.updated as u64;
    result.counts.rejected = 0;
    result.extract = Some(ExtractCounts { organisations_created: load.organisations_created as u64, match_changes: load.rematched as u64 });
}

impl Gateway {
    /// Loads and answers a file the council dropped. Safe to call again after a crash: an extract
    /// whose load was committed is answered from its record, never loaded twice.
    pub(crate) fn answer_council(&self, spooled: &SpooledFile, failed: Option<String>) -> Result<ImportResult> {
        let (import_id, name) = (spooled.import_id(), spooled.name.as_str());
        let path = self.data.spooled(spooled);
        let plan = self.answer_plan(spooled)?;
        if let Some(recorded) = self.store.import_result(&import_id)? {
            return self.council_answered(spooled, &plan, recorded, true);
        }
        let received_at: DateTime<Utc> =
            std::fs::metadata(&path).and_then(|m| m.modified()).map(DateTime::from).unwrap_or_else(|_| Utc::now());
        let mut result = ImportResult::new(name, &import_id, None, received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        result.kind = FileKind::Cplis;
        result.answer = Some(plan.answer.clone());
        result.extract = Some(ExtractCounts::default());
        result.sha256 = ingest::source::sha256(&path).map_err(|source| GatewayError::Io { context: format!("reading {}", path.display()), source })?;
        if let Some(message) = failed {
            return self.council_refused(spooled, &plan, result, vec![Issue::file(Code::InternalError, None, message)], 0, 0);
        }
        let kind = header_of(&path).and_then(|h| COUNCIL_KINDS.iter().find(|(_, detects)| detects(&h)).map(|(kind, _)| *kind));
        let read = catching_panics(|| match kind {
            Some(kind) => load_rows(self, &path, &mut result, kind),
            None => self.load_council_extract(&path, &mut result),
        });
        match read {
            Ok(Ok(Loaded::Stored)) => {
                result.processed_at = ingest::now_rfc3339();
                // The counts are complete now that the stored rows are matched again.
                self.store.record_council_import(&result)?;
                self.write_council_answer(&result, &plan)?;
                self.council_answered(spooled, &plan, result, true)
            }
            Ok(Ok(Loaded::Refused { issues, read, rejected })) => self.council_refused(spooled, &plan, result, issues, read, rejected),
            Ok(Err(e)) => {
                // A failed store is opened again first; while it cannot be, the worker keeps the file
                // and answers it once the store is back (issue 9).
                if !self.store.is_healthy() && self.store.recover().is_err() {
                    return Err(e);
                }
                if let Some(committed) = self.store.import_result(&import_id)? {
                    return self.council_answered(spooled, &plan, committed, true);
                }
                tracing::error!(file = name, import_id, error = %e, "could not load the council's extract; answering it as failed");
                let message = format!("the gateway could not load this extract ({e}); nothing from it was stored. This is a fault of the gateway, not of the file: send it again later");
                self.council_refused(spooled, &plan, result, vec![Issue::file(Code::InternalError, None, message)], 0, 0)
            }
            Err(panic) => {
                tracing::error!(file = name, import_id, panic = panic.to_string(), "loading the council's extract panicked; answering it as failed");
                let message = format!("the gateway failed on this extract (an internal error: {}); nothing from it was stored. This is a fault of the gateway, not of the file", panic.message);
                self.council_refused(spooled, &plan, result, vec![Issue::file(Code::InternalError, None, message)], 0, 0)
            }
        }
    }

    /// Reads the extract and, when every row is good, stores it with the import's record in one
    /// batch and matches the stored visits and actuals again.
    fn load_council_extract(&self, path: &Path, result: &mut ImportResult) -> Result<Loaded> {
        if !is_extract(path)? {
            result.kind = FileKind::Unknown;
            // A provider's file dropped here is told where it goes.
            let provider = header_of(path).and_then(|h| crate::ingest::kinds::detect(&h)).map(|k| format!("this is a provider's {} file: it goes into the organisation's own inbox; ", k.noun));
            let issue = Issue::file(Code::UnknownFileKind, None, format!("{}{TAKES}", provider.unwrap_or_else(|| "this is not a CPLI extract: ".into())));
            return Ok(Loaded::Refused { issues: vec![issue], read: 0, rejected: 0 });
        }
        match cplis::read_extract(path, &self.store.orgs()?) {
            Ok(cplis) => {
                let load = self.store_cplis(&cplis, Some(&mut *result))?;
                count_load(result, &load);
                Ok(Loaded::Stored)
            }
            Err(CpliError::Invalid(problems)) => {
                let mut rows: Vec<u64> = problems.iter().filter_map(|p| p.row).collect();
                rows.dedup();
                // A missing heading fails the whole file: every count is 0 (SPEC 3).
                let read = if rows.is_empty() { 0 } else { data_rows(path)? };
                Ok(Loaded::Refused { issues: problems.iter().map(cplis::CpliProblem::to_issue).collect(), read, rejected: rows.len() as u64 })
            }
            Err(CpliError::Read { source, .. }) => {
                let issue = Issue::file(Code::FileUnreadable, None, format!("the extract cannot be read as CSV text ({source}); save it as CSV"));
                Ok(Loaded::Refused { issues: vec![issue], read: 0, rejected: 0 })
            }
        }
    }

    /// A file of which nothing was loaded: answered `failed` with its issues, recorded so that a
    /// replay does not judge it again.
    fn council_refused(&self, spooled: &SpooledFile, plan: &AnswerPlan, mut result: ImportResult, issues: Vec<Issue>, read: u64, rejected: u64) -> Result<ImportResult> {
        result.status = Status::Failed;
        result.counts.read = read;
        result.counts.rejected = rejected;
        result.issue_count = issues.len() as u64;
        result.error_count = issues.iter().filter(|i| i.severity == Severity::Error).count() as u64;
        result.issues = issues;
        result.processed_at = ingest::now_rfc3339();
        self.write_council_answer(&result, plan)?;
        let recorded = match self.store.record_council_import(&result) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(import_id = result.import_id, error = %e, "could not record the council's refused extract; it is answered all the same");
                false
            }
        };
        self.council_answered(spooled, plan, result, recorded)
    }

    fn write_council_answer(&self, result: &ImportResult, plan: &AnswerPlan) -> Result<()> {
        ingest::write_answer(result, plan).map_err(|e| GatewayError::Io {
            context: "writing the result of the council's file".into(),
            source: match e {
                IngestError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
        })
    }

    fn council_answered(&self, spooled: &SpooledFile, plan: &AnswerPlan, result: ImportResult, recorded: bool) -> Result<ImportResult> {
        let result = self.answer_and_archive(spooled, plan, result, recorded)?;
        tracing::info!(org = "the council", file = spooled.name, import_id = spooled.import_id(), summary = result.summary(), "processed");
        Ok(result)
    }
}

/// What reading a council file came to.
enum Loaded {
    Stored,
    Refused { issues: Vec<Issue>, read: u64, rejected: u64 },
}

/// Whether a header is of a council kind.
type Detects = fn(&Header) -> bool;

/// The council's files judged row by row (issue 12), beside the CPLI extract (loaded all or
/// nothing): each kind and how its header is told.
static COUNCIL_KINDS: &[(&Kind, Detects)] =
    &[(&crate::ingest::claim_decisions::KIND, crate::ingest::claim_decisions::detects), (&crate::ingest::disputes::KIND, crate::ingest::disputes::detects)];

/// A council file of a row-by-row kind, judged on the engine every file kind runs on: each row
/// applied or refused alone, what the rows changed, their emails and the file's record stored in
/// one batch (a replay answers from the record); then every export follows. Refused whole (a
/// missing heading, an unreadable file) when nothing of it was stored.
fn load_rows(gw: &Gateway, path: &Path, result: &mut ImportResult, kind: &'static Kind) -> Result<Loaded> {
    let spooled = crate::data_dir::SpooledFile::from_path(path).map_err(|e| GatewayError::Invalid(e.to_string()))?;
    let plan = gw.answer_plan(&spooled)?;
    let received_at = DateTime::parse_from_rfc3339(&result.received_at).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now());
    let incoming = ingest::Incoming { path, file_name: result.file.clone(), import_id: result.import_id.clone(), received_at, attachments: None };
    let judged = ingest::process_as(&gw.config, None, &incoming, ingest::Mode::Import(&gw.store), Some(&plan), Some(kind))?;
    result.kind = kind.kind;
    result.extract = None;
    if judged.status == Status::Failed {
        return Ok(Loaded::Refused { issues: judged.issues, read: 0, rejected: 0 });
    }
    if kind.kind == FileKind::Disputes {
        // A close row may delete its visit, which changes the stay a pending claim is for.
        for org in gw.store.orgs()? {
            gw.refigure_claims(&org)?;
        }
    }
    gw.mark_exports(crate::exports::Touched::All);
    *result = ImportResult { answer: result.answer.clone(), ..judged };
    Ok(Loaded::Stored)
}

/// The file's header row, as the kinds' detection reads it; `None` when there is none to read.
fn header_of(path: &Path) -> Option<Header> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(false).from_path(path).ok()?;
    let mut header = csv::ByteRecord::new();
    rdr.read_byte_record(&mut header).ok().filter(|read| *read)?;
    Some(Header::from_record(&header))
}

/// Whether the file's header names a CPLIID column (any case, spaces ignored, as every heading).
fn is_extract(path: &Path) -> Result<bool> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(false).from_path(path).map_err(|e| read_error(path, e))?;
    let mut header = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut header).map_err(|e| read_error(path, e))? {
        return Ok(false);
    }
    let key = crate::ingest::source::heading_key(cplis::CPLI_ID);
    Ok(header.iter().any(|h| {
        let h = String::from_utf8_lossy(h);
        crate::ingest::source::heading_key(h.trim_start_matches('\u{FEFF}')) == key
    }))
}

/// The extract's rows below its header, for the `read` count of a refused extract.
fn data_rows(path: &Path) -> Result<u64> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| read_error(path, e))?;
    let mut rec = csv::ByteRecord::new();
    let mut n = 0;
    while rdr.read_byte_record(&mut rec).map_err(|e| read_error(path, e))? {
        n += 1;
    }
    Ok(n)
}

fn read_error(path: &Path, e: csv::Error) -> GatewayError {
    GatewayError::Cplis(CpliError::Read { path: path.display().to_string(), source: e.into() })
}
