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
pub use result::{Answer, Code, Counts, FileKind, ImportResult, Issue, Issues, LogHandle, Severity, Status, KEPT_ISSUES};
use source::{Encoding, Rows, ScanError};

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
    let outcome = judge(config, org, incoming, &mode, &mut result, &mut issues);
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
    let first = log.first(KEPT_ISSUES);
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

/// Makes a judged file count: its rows (written as judged, for visits) and its import record with
/// its emails, in one batch. A commit that fails is rolled back.
fn commit(judged: Judged<'_>, store: Option<&Store>, org: Option<&Organisation>, result: &ImportResult) -> Result<(), IngestError> {
    static NO_SPACE_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let committed = match judged {
        // The store refusing the commit of the first file, as a full disk would (a fault point).
        Judged::Visits { batch } if store.is_some() && crate::fault::is("no-space") && !NO_SPACE_ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) => {
            batch.abort()?;
            return Err(std::io::Error::from_raw_os_error(28).into());
        }
        // Only an import is recorded, and an import is always some organisation's.
        Judged::Failed => match (store, org) {
            (Some(s), Some(o)) => s.record_import(&o.slug, result),
            _ => Ok(()),
        },
        Judged::Visits { batch } => batch.commit(result),
        Judged::Actuals { batch } => match batch {
            Some(b) => b.commit(result),
            None => Ok(()),
        },
        Judged::Carers { changes } => match (store, org) {
            (Some(s), Some(o)) => s.commit_carers(&o.slug, &changes.upserts, &changes.deletes, result),
            _ => Ok(()),
        },
    };
    if let (Err(_), Some(s)) = (&committed, store) {
        // What the visits file wrote as it went is undone now, not at the next start (issue 9).
        let _ = s.roll_back_unfinished();
    }
    Ok(committed?)
}

/// Undoes what a judged file wrote as it went (a visits file's rows) when it will not be committed.
fn abort_judged(judged: Judged<'_>) -> Result<(), IngestError> {
    match judged {
        Judged::Visits { batch } => Ok(batch.abort()?),
        Judged::Actuals { batch: Some(batch) } => Ok(batch.abort()?),
        _ => Ok(()),
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
    Failed,
    Visits { batch: crate::store::VisitBatch<'s> },
    Carers { changes: carers::CarerChanges },
    /// `None` when nothing is written (validate).
    Actuals { batch: Option<crate::store::ActualBatch<'s>> },
}

fn judge<'s>(
    config: &Config,
    org: Option<&Organisation>,
    incoming: &Incoming<'_>,
    mode: &Mode<'s>,
    result: &mut ImportResult,
    issues: &mut Issues,
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
            issues.push(issue);
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
    result.kind = scan.kind;
    if scan.encoding == Encoding::Windows1252 {
        issues.push(Issue::file(
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
            issues.push(Issue::file(Code::UnknownFileKind, None, unknown_kind_message(&scan.header)));
            Ok(Judged::Failed)
        }
        FileKind::Visits => {
            let mut warnings = Vec::new();
            let found = visits::Columns::find(&scan.header, &mut warnings);
            issues.append(&mut warnings);
            let cols = match found {
                Ok(c) => c,
                Err(mut errs) => {
                    issues.append(&mut errs);
                    return Ok(Judged::Failed);
                }
            };
            let cplis = cpli_index(given_cplis, store, org)?;
            let carers = match (store, org) {
                (Some(s), Some(o)) => Some(s.carer_refs(&o.slug)?),
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
                visit_levels: config.rules.visit_service_levels.iter().map(|l| crate::domain::NameKey::new(l)).collect(),
            };
            let batch = match (store, org) {
                (Some(s), Some(o)) => s.begin_visits(&o.slug, &incoming.import_id, write)?,
                _ => crate::store::VisitBatch::offline(),
            };
            let rows = Rows::open(incoming.path, scan.encoding)?;
            let started = std::time::Instant::now();
            match visits::import(&scan, rows, &cols, &ctx, &batch, issues) {
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
            let mut warnings = Vec::new();
            let found = actuals::Columns::find(&scan.header, &mut warnings);
            issues.append(&mut warnings);
            let cols = match found {
                Ok(c) => c,
                Err(mut errs) => {
                    issues.append(&mut errs);
                    return Ok(Judged::Failed);
                }
            };
            let cplis = cpli_index(given_cplis, store, org)?;
            let ctx = actuals::Context {
                org,
                cplis: cplis.as_ref(),
                locked: store.map(|s| s.locked_until()).transpose()?.flatten(),
                periods: &config.periods,
                hours_step_minutes: config.rules.actuals_hours_step_minutes,
                store: store.zip(org).map(|(s, o)| (s, &o.slug)),
                import_id: &incoming.import_id,
            };
            let mut rows = Rows::open(incoming.path, scan.encoding)?;
            // Accepted rows are written as they are judged, like a visits file's (issue 9).
            let batch = match (store, org, write) {
                (Some(s), Some(o), true) => Some(s.begin_actuals(&o.slug, &incoming.import_id)?),
                _ => None,
            };
            let mut apply = |change: crate::store::ActualChange| -> Result<(), IngestError> {
                match &batch {
                    Some(b) => Ok(b.put(&change)?),
                    None => Ok(()),
                }
            };
            match actuals::judge(&scan, &mut rows, &cols, &ctx, issues, &mut apply) {
                Ok(counts) => {
                    result.counts = counts;
                    Ok(Judged::Actuals { batch })
                }
                Err(e) => {
                    if let Some(b) = batch {
                        b.abort()?;
                    }
                    Err(e)
                }
            }
        }
        FileKind::Carers => {
            let known = match (store, org) {
                (Some(s), Some(o)) => s.carer_refs(&o.slug)?,
                _ => Default::default(),
            };
            let mut rows = Rows::open(incoming.path, scan.encoding)?;
            match carers::judge(&scan, &mut rows, &known, issues)? {
                Ok((counts, changes)) => {
                    result.counts = counts;
                    Ok(Judged::Carers { changes })
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
