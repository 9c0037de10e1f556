//! One file in, one `ImportResult` out: detect the kind, read and judge the rows, match, apply.
//!
//! Every way in (an SFTP upload, a file copied into an inbox, `gateway import`, `gateway validate`)
//! ends in `process`, so a file gets the same result whichever way it came.

pub mod actuals;
pub mod carers;
pub mod cells;
pub mod claim_decisions;
pub mod claims;
pub mod dispute_responses;
pub mod disputes;
pub mod cplis;
pub mod engine;
pub mod headings;
pub mod kinds;
pub mod matching;
pub mod source;
pub mod visits;

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::Config;
use crate::domain::{Cpli, Guid, Organisation};
use crate::store::{Store, StoreError};
use matching::CpliIndex;
use crate::outcome::{Answer, Code, Counts, FileKind, ImportResult, Issue, Issues, LogHandle, Status, KEPT_ISSUES};
use source::{Encoding, ScanError};

/// Failures of ours (not of the provider's file): the file could not be read from our own disk, a
/// result file could not be written, or the store failed. The pipeline answers the file as failed
/// (`INTERNAL_ERROR`) when it can (issue 9).
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
    /// Where a claims file's attachments are found and kept (issue 12); `None` when not importing
    /// into an organisation's folder.
    pub attachments: Option<claims::AttachmentDirs>,
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

/// Judges (and in `Import` mode applies) one file, with no result files.
pub fn process(config: &Config, org: Option<&Organisation>, incoming: &Incoming<'_>, mode: Mode<'_>) -> Result<ImportResult, IngestError> {
    process_answered(config, org, incoming, mode, None)
}

/// Where an import's result files are written before the import is committed (issue 9): beside
/// the spooled file, under the names `answer` fixes in `results/`; both recorded in the commit.
pub struct AnswerPlan {
    pub staged_csv: std::path::PathBuf,
    pub staged_json: std::path::PathBuf,
    pub answer: Answer,
}


thread_local! {
    static CURRENT_ROW: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Notes the row this thread is judging, so a panic can say which row it was on (issue 9).
pub fn note_row(row: u64) {
    CURRENT_ROW.with(|r| r.set(Some(row)));
}

/// The row this thread was last judging.
pub fn current_row() -> Option<u64> {
    CURRENT_ROW.with(|r| r.get())
}


/// As `process`; in `Import` mode with a plan, the result files are written (and synced) at the
/// plan's staged paths before the import is committed, and the commit records their names.
pub fn process_answered(
    config: &Config,
    org: Option<&Organisation>,
    incoming: &Incoming<'_>,
    mode: Mode<'_>,
    plan: Option<&AnswerPlan>,
) -> Result<ImportResult, IngestError> {
    process_as(config, org, incoming, mode, plan, None)
}

/// As `process_answered`, for a file of a kind known beforehand (`forced`: one of the council's
/// kinds, detected by its own table) rather than detected from `KINDS` (issue 12).
pub fn process_as(
    config: &Config,
    org: Option<&Organisation>,
    incoming: &Incoming<'_>,
    mode: Mode<'_>,
    plan: Option<&AnswerPlan>,
    forced: Option<&'static kinds::Kind>,
) -> Result<ImportResult, IngestError> {
    if let Mode::Import(store) = &mode {
        // The same import id again (a replay after a crash): it was applied once; answer the same.
        if let Some(done) = store.import_result(&incoming.import_id)? {
            return Ok(done);
        }
    }
    let mut result = ImportResult::new(
        &incoming.file_name,
        &incoming.import_id,
        org.map(|o| o.name.as_str()),
        incoming.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    let store = match &mode {
        Mode::Import(s) => Some(*s),
        Mode::Validate { .. } => None,
    };
    // The spill goes beside the spooled file when importing (the data folder's disk).
    let spill_dir = store.and(incoming.path.parent());
    let mut issues = Issues::new(spill_dir)?;
    let outcome = judge(config, org, incoming, &mode, &mut result, &mut issues, forced);
    result.processed_at = now_rfc3339();
    let judged = outcome?;
    let log = match issues.finish() {
        Ok(log) => log,
        Err(e) => {
            abort_judged(judged)?;
            return Err(e.into());
        }
    };
    if matches!(judged, Judged::Failed) {
        result.status = Status::Failed;
        result.counts = Counts::default();
    } else {
        result.counts.data_quality_issues = log.warnings();
    }
    result.issue_count = log.total();
    result.error_count = log.errors();
    let first = log.kept(KEPT_ISSUES);
    result.log = LogHandle(Some(std::sync::Arc::new(log)));
    let staged = first.map_err(IngestError::from).and_then(|first| {
        result.issues = first;
        match plan {
            Some(plan) if store.is_some() => {
                write_answer(&result, plan)?;
                result.answer = Some(plan.answer.clone());
                crate::fault::point("before-commit");
                Ok(())
            }
            _ => Ok(()),
        }
    });
    if let Err(e) = staged {
        abort_judged(judged)?;
        return Err(e);
    }
    commit(judged, store, org, &result)?;
    if store.is_some() {
        crate::fault::point("after-commit");
    }
    Ok(result)
}

/// Makes a judged file count: its rows (written as judged, for visits and actuals) and its import
/// record with its emails, in one batch. A commit that fails is rolled back.
fn commit(judged: Judged<'_>, store: Option<&Store>, org: Option<&Organisation>, result: &ImportResult) -> Result<(), IngestError> {
    static NO_SPACE_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let committed = match (judged, store) {
        // Only an import is recorded, and an import is always some organisation's.
        (Judged::Failed, Some(s)) => match org {
            Some(o) => s.record_import(&o.slug, result),
            None => Ok(()),
        },
        (Judged::Failed, None) => Ok(()),
        // The store refusing the commit of the first file, as a full disk would (a fault point).
        (Judged::Rows(pending), Some(_)) if crate::fault::is("no-space") && !NO_SPACE_ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) => {
            pending.abort()?;
            return Err(std::io::Error::from_raw_os_error(28).into());
        }
        (Judged::Rows(pending), _) => pending.commit(result),
    };
    if let (Err(_), Some(s)) = (&committed, store) {
        // What the file wrote as it went is undone now, not at the next start (issue 9).
        let _ = s.roll_back_unfinished();
    }
    Ok(committed?)
}

/// Undoes what a judged file wrote as it went when it will not be committed.
fn abort_judged(judged: Judged<'_>) -> Result<(), IngestError> {
    match judged {
        Judged::Rows(pending) => Ok(pending.abort()?),
        Judged::Failed => Ok(()),
    }
}

/// Writes the result files at the plan's staged paths, synced, so that once the import is
/// committed they survive a crash and a replay only has to rename them into `results/`.
pub fn write_answer(result: &ImportResult, plan: &AnswerPlan) -> Result<(), IngestError> {
    fn write(path: &Path, body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(path)?);
        body(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    }
    write(&plan.staged_csv, |w| result.write_csv(w))?;
    write(&plan.staged_json, |w| result.write_json(w, "").and_then(|()| w.write_all(b"\n")))?;
    Ok(())
}

enum Judged<'s> {
    /// The file as a whole is refused: nothing from it is stored.
    Failed,
    /// Rows judged; what they wrote or hold, to commit or undo.
    Rows(Box<dyn kinds::Pending + 's>),
}

fn judge<'s>(
    config: &Config,
    org: Option<&Organisation>,
    incoming: &Incoming<'_>,
    mode: &Mode<'s>,
    result: &mut ImportResult,
    issues: &mut Issues,
    forced: Option<&'static kinds::Kind>,
) -> Result<Judged<'s>, IngestError> {
    let spec = |header: &source::Header, kind| forced.or_else(|| kinds::spec(kind)).map_or_else(source::ScanSpec::default, |k| (k.scan_spec)(header));
    let started = std::time::Instant::now();
    let scan = match source::scan(incoming.path, &config.limits, spec) {
        Ok(s) => s,
        Err(ScanError::File(issue)) => {
            issues.push(issue);
            result.sha256 = source::sha256(incoming.path)?;
            return Ok(Judged::Failed);
        }
        Err(ScanError::Io(e)) => return Err(e.into()),
    };
    tracing::debug!(file = incoming.file_name, rows = scan.data_rows, ms = started.elapsed().as_millis() as u64, "first pass");
    CURRENT_ROW.with(|r| r.set(None));
    if crate::fault::is("panic-judging") {
        panic!("GATEWAY_FAULT=panic-judging");
    }
    result.sha256 = scan.sha256.clone();
    result.kind = forced.map_or(scan.kind, |k| k.kind);
    if scan.encoding == Encoding::Windows1252 {
        issues.push(Issue::file(
            Code::EncodingGuessed,
            None,
            "the file is not UTF-8, so it was read as Windows-1252 (Excel's \"CSV (Comma delimited)\"); check names with accents, or save as \"CSV UTF-8\"",
        ));
    }
    if forced.is_none() {
        // A council file dropped into an organisation's inbox: told so, not judged as the provider's
        // kind whose heading it happens to hold (a disputes file has VisitRef).
        let provider_kind = kinds::spec(scan.kind).filter(|k| kinds::has_required(k, &scan.header));
        if let Some(message) = council_file_message(&scan.header).filter(|_| provider_kind.is_none()) {
            result.kind = FileKind::Unknown;
            issues.push(Issue::file(Code::UnknownFileKind, None, message));
            return Ok(Judged::Failed);
        }
    }
    let Some(kind) = forced.or_else(|| kinds::spec(scan.kind)) else {
        issues.push(Issue::file(Code::UnknownFileKind, None, unknown_kind_message(&scan.header)));
        return Ok(Judged::Failed);
    };
    let Some(positions) = kinds::positions(kind, &scan.header, issues) else { return Ok(Judged::Failed) };
    let (store, given_cplis) = match mode {
        Mode::Import(s) => (Some(*s), None),
        Mode::Validate { store, cplis } => (*store, cplis.as_deref()),
    };
    let file = kinds::File { config, org, incoming, scan: &scan, positions, store, write: matches!(mode, Mode::Import(_)), given_cplis };
    let started = std::time::Instant::now();
    let (counts, pending) = (kind.judge)(&file, issues)?;
    tracing::debug!(file = incoming.file_name, ms = started.elapsed().as_millis() as u64, "rows judged and applied");
    result.counts = counts;
    Ok(Judged::Rows(pending))
}

/// The CPLIs rows are matched against: those given to `validate` replace the stored ones; offline
/// without them nothing is matched.
pub(crate) fn cpli_index(
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

/// The OrganisationRef and ServiceRef GUIDs of every organisation but `org`: a file of an
/// organisation whose own GUIDs the gateway does not know yet is still refused another's.
pub(crate) fn foreign_guids(store: Option<&Store>, org: Option<&Organisation>) -> Result<std::collections::HashSet<Guid>, IngestError> {
    let (Some(store), Some(org)) = (store, org) else { return Ok(Default::default()) };
    let others = store.orgs()?.into_iter().filter(|o| o.slug != org.slug);
    Ok(others.flat_map(|o| o.org_ref.into_iter().chain(o.services.into_iter().filter_map(|s| s.service_ref))).collect())
}

/// What an organisation is told of a council file (disputes, claim decisions) dropped into its inbox.
fn council_file_message(header: &source::Header) -> Option<String> {
    if disputes::detects(header) {
        return Some("this is the council's disputes file: the council drops it into its own inbox; a provider answers a dispute with a dispute responses file (DisputeId, Response, RequestResolution)".into());
    }
    if claim_decisions::detects(header) {
        return Some("this is the council's claim decisions file: the council drops it into its own inbox; a provider sends claims in a claims file (ClaimRef, SSRef, ServiceName, AdmittedOn, ...)".into());
    }
    None
}

/// Why a header is not one we take, with the likeliest fix.
fn unknown_kind_message(header: &source::Header) -> String {
    if header.position(&source::heading_key(cplis::CPLI_ID)).is_some() {
        return "this is a CPLI extract: the council loads it (from its own /inbox, or with `gateway cplis load`); a provider sends visits, actuals, carers, claims or dispute responses files".into();
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
    format!("the header row ({}...) is not that of {}; the first row of a CSV must hold the headings", first.join(", "), kinds::describe_all())
}
