//! A file's way through the gateway: claimed into the spool, judged and applied, answered in
//! `results/`, kept in the archive. `gateway import` and the inbox watcher both go through here.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;
use crate::data_dir::{DataDir, Owner, SpooledFile};
use crate::domain::{LockedBy, Organisation, Period, Slug};
use crate::fault;
use crate::ingest::cplis::{self, CpliError};
use crate::ingest::matching::CpliIndex;
use crate::ingest::{self, Incoming, IngestError, Mode};
use crate::outcome::{Answer, Code, FileKind, ImportResult, Issue, Status};
use crate::ingest::AnswerPlan;
use crate::reports::{self, hospital, ActualsOptions, ActualsRow, ClientWeek, HospitalRow, WeekActuals};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Cplis(#[from] CpliError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("there is no organisation '{name}'{}", known_list(.known))]
    UnknownOrganisation { name: String, known: Vec<String> },
    #[error("{0}")]
    Invalid(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; none exists yet: load the council's CPLI extract (`gateway cplis load FILE`) or `gateway org add --name NAME`".into()
    } else {
        format!("; known organisations: {}", known.join(", "))
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GatewayError {
    let context = context.into();
    move |source| GatewayError::Io { context, source }
}

pub type Result<T> = std::result::Result<T, GatewayError>;

/// The engine with its configuration, folders and store: what every command and the server share.
pub struct Gateway {
    pub config: Config,
    pub data: DataDir,
    pub store: Store,
    /// Whose turn it is at the store while `serve` runs (issue 10): the worker holds it for each file,
    /// a command sent over the control socket for the whole command, so a command runs between files,
    /// never inside an import.
    turn: std::sync::Mutex<()>,
    /// Exports waiting to be rewritten (issue 10).
    pub(crate) exports: crate::exports::Pending,
}

/// What `cplis load` did, counted as the council's result file counts it (issue 10).
#[derive(Debug)]
pub struct CpliLoad {
    pub cplis: usize,
    pub new: usize,
    /// CPLIIDs already stored (upserted again, even when nothing in them changed).
    pub updated: usize,
    /// Every organisation the extract names.
    pub organisations: Vec<String>,
    /// Those of them the store did not hold before.
    pub organisations_created: usize,
    /// Stored visits and actuals rows whose match (status or CPLI) changed.
    pub rematched: usize,
}

impl Gateway {
    pub fn open(config: Config, data_root: &Path) -> Result<Gateway> {
        let data = DataDir::new(data_root);
        fs::create_dir_all(data.root()).map_err(io(format!("creating {}", data.root().display())))?;
        let store = Store::open(&data.db())?;
        let gw = Gateway { config, data, store, turn: Default::default(), exports: Default::default() };
        let rounded = ingest::visits::round_stored_weeks_once(&gw.store, &gw.config.rules.visit_types)?;
        if rounded > 0 {
            tracing::info!(weeks = rounded, "week totals made again from the stored visits, each visit's length to the nearest minute");
        }
        if !gw.store.rematch_pending()?.is_empty() {
            let changed = gw.finish_rematch()?;
            tracing::warn!(changed, "finished matching stored visits against a CPLI load that was cut short");
        }
        gw.mark_archived_answered()?;
        Ok(gw)
    }

    /// Marks answered the imports whose result files are in place and whose file has left the spool
    /// for the archive: a crash between the two lost the mark, which is not flushed on its own, and
    /// with nothing in the spool to replay, the import's emails were held for good (until
    /// 2026-12-03).
    fn mark_archived_answered(&self) -> Result<()> {
        for (owner, import_id, answer) in self.store.held_answers_everywhere()? {
            let spooled = fs::read_dir(self.data.spool_of(&owner))
                .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{import_id}__"))))
                .unwrap_or(false);
            if !spooled && self.data.results_of(&owner).join(&answer.json).exists() {
                self.store.mark_answered_for(&owner, &import_id)?;
                self.store.flush()?;
                tracing::warn!(import_id, owner = owner.in_words(), "an answered import that a stop cut short was marked answered: its emails are released");
            }
        }
        Ok(())
    }

    /// Waits for the store's turn and holds it until the guard drops (see `turn`). A holder that
    /// panicked left nothing half-done that the next one must not see (imports roll back), so a
    /// poisoned lock is taken all the same.
    pub fn turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.turn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The organisation a person named (its name or its slug).
    pub fn org(&self, name: &str) -> Result<Organisation> {
        match self.store.org(name)? {
            Some(o) => Ok(o),
            None => Err(GatewayError::UnknownOrganisation {
                name: name.into(),
                known: self.store.orgs()?.into_iter().map(|o| o.name).collect(),
            }),
        }
    }

    /// The organisation whose folders these are.
    pub fn org_by_slug(&self, slug: &Slug) -> Result<Organisation> {
        match self.store.org_by_slug(slug)? {
            Some(o) => Ok(o),
            None => Err(GatewayError::UnknownOrganisation {
                name: slug.to_string(),
                known: self.store.orgs()?.into_iter().map(|o| o.name).collect(),
            }),
        }
    }

    pub fn add_org(&self, name: &str, org_ref: Option<&str>) -> Result<Organisation> {
        if name.trim().is_empty() {
            return Err(GatewayError::Invalid("an organisation needs a name".into()));
        }
        // As a CPLI extract's OrganisationName (since 2026-12-03; a line break broke `org list`'s lines).
        if let Some((at, c)) = crate::domain::forbidden_control(name, crate::domain::TextKind::Plain) {
            return Err(GatewayError::Invalid(format!(
                "CONTROL_CHARACTER: the name holds {} at character {}: an organisation's name is one line of text",
                crate::domain::cell::describe_control(c),
                at
            )));
        }
        let guid = match org_ref {
            Some(r) => Some(crate::domain::parse_guid(r).ok_or_else(|| GatewayError::Invalid(format!("'{r}' is not a GUID")))?),
            None => None,
        };
        let mut org = match self.store.org(name)? {
            Some(org) => org,
            None => {
                // Another name of an organisation's folder is refused, never written over it.
                if let Some(clash) = self.store.org_by_slug(&crate::domain::Slug::from_name(name))?.and_then(|o| o.folder_clash(name)) {
                    return Err(GatewayError::Invalid(clash));
                }
                Organisation::new(name, None)
            }
        };
        if let Some(g) = guid {
            // One GUID, one organisation: uploads and extracts tell organisations apart by it.
            if let Some(other) = self.store.orgs()?.into_iter().find(|o| o.slug != org.slug && o.org_ref.as_ref() == Some(&g)) {
                return Err(GatewayError::Invalid(format!("OrganisationRef {g} is the organisation '{}' already; each organisation has its own", other.name)));
            }
            org.org_ref = Some(g);
        }
        self.store.put_org(&org)?;
        self.store.flush()?;
        self.data.ensure_org(&org.slug).map_err(io("creating the organisation's folders"))?;
        self.write_commissioned_export(&org)?;
        self.mark_exports(crate::exports::Touched::Org(org.slug.clone()));
        Ok(org)
    }

    /// Loads the council's CPLI extract, creates what it names, and matches the affected
    /// organisations' visits again.
    pub fn load_cplis(&self, path: &Path) -> Result<CpliLoad> {
        let cplis = cplis::read_extract(path, &self.store.orgs()?)?;
        self.store_cplis(&cplis, None)
    }

    /// Stores an extract already read: the CPLIs, the organisations they name and the promise to
    /// match again in one batch, with `record`'s import record when the extract came as a council
    /// file (so a replay after a crash never applies it twice); then matches again.
    pub(crate) fn store_cplis(&self, cplis: &[crate::domain::Cpli], record: Option<&mut ImportResult>) -> Result<CpliLoad> {
        let known = self.store.orgs()?;
        let orgs = cplis::organisations(cplis, known.clone());
        let organisations_created = orgs.iter().filter(|o| !known.iter().any(|k| k.slug == o.slug)).count();
        for org in &orgs {
            self.data.ensure_org(&org.slug).map_err(io("creating the organisation's folders"))?;
        }
        let updated = self.store.cplis_stored(cplis)?;
        let mut load = CpliLoad {
            cplis: cplis.len(),
            new: cplis.len() - updated,
            updated,
            organisations: orgs.iter().map(|o| o.name.clone()).collect(),
            organisations_created,
            rematched: 0,
        };
        let new = match record {
            Some(result) => {
                crate::council::count_load(result, &load);
                self.store.store_council_extract(&orgs, cplis, result)?
            }
            None => self.store.store_extract(&orgs, cplis)?,
        };
        debug_assert_eq!(new, load.new);
        self.store.flush()?;
        fault::point("cplis-stored");
        load.rematched = self.finish_rematch()?;
        Ok(load)
    }

    /// Matches again the stored visits and actuals rows of every organisation a CPLI load touched,
    /// and rewrites their exports. A load cut short (a crash, a kill) is finished here at the next
    /// start; matching is recomputed from the stored CPLIs, so doing it twice changes nothing.
    fn finish_rematch(&self) -> Result<usize> {
        let mut rematched = 0;
        for slug in self.store.rematch_pending()? {
            let Some(org) = self.store.org_by_slug(&slug)? else { continue };
            let index = CpliIndex::new(self.store.cplis_for_org(&org)?);
            rematched += self.store.rematch_visits(&org.slug, |v| index.match_visit(v))?;
            rematched += self.store.rematch_actuals(&org.slug, |a| ingest::actuals::rematch(a, &index, self.config.rules.actuals_hours_step_minutes))?;
            self.refigure_claims(&org)?;
            self.write_commissioned_export(&org)?;
            self.mark_exports(crate::exports::Touched::Org(org.slug.clone()));
        }
        self.store.rematched()?;
        Ok(rematched)
    }

    /// The organisation's commissioned care export (SPEC 5), as CSV.
    pub fn commissioned_export(&self, org: &Organisation) -> Result<Vec<u8>> {
        Ok(reports::commissioned_care_csv(&self.store.cplis_for_org(org)?))
    }

    /// Keeps `exports/commissioned-care.csv` current: rewritten atomically when its content changes,
    /// so a reader sees the old file or the new one, never half of one.
    pub fn write_commissioned_export(&self, org: &Organisation) -> Result<PathBuf> {
        let path = self.data.exports(&org.slug).join(COMMISSIONED_EXPORT);
        let body = self.commissioned_export(org)?;
        if fs::read(&path).ok().as_deref() != Some(body.as_slice()) {
            fs::create_dir_all(self.data.exports(&org.slug)).map_err(io("creating the exports folder"))?;
            self.data.write_atomically(&path, &body).map_err(io("writing the commissioned care export"))?;
        }
        Ok(path)
    }

    /// The commissioned vs actuals report, from the week totals kept as visits arrive (one record
    /// per client, service and week, not every visit).
    pub fn commissioned_vs_actuals(&self, org: &Organisation, opts: &ActualsOptions) -> Result<Vec<ActualsRow>> {
        check_range(opts.from, opts.to)?;
        let cplis = self.store.cplis_for_org(org)?;
        let mut actuals = WeekActuals::new(&cplis, &self.config.rules.visit_types, opts.from, opts.to);
        for week in self.store.weeks(&org.slug) {
            let (k, t) = week?;
            actuals.add_client_week(&ClientWeek {
                client: &k.client,
                level: &k.level,
                service: &k.service,
                monday: k.monday,
                visits: t.visits,
                paid_visits: t.paid_visits,
                actual_minutes: t.actual_minutes,
                frust_minutes: t.frust_minutes,
            });
        }
        // Weeks in which a package starts or ends: their visits as they matched (a full pass over
        // the organisation's visits, only when the report has such a week).
        if actuals.needs_visits() {
            for fact in self.store.visit_facts(&org.slug) {
                actuals.add_matched(&fact?);
            }
        }
        // Issue 11: extra-care actuals rows are rows of the report too.
        for a in self.store.current_actuals(&org.slug) {
            actuals.add_actual(&a?.actual);
        }
        reports::commissioned_vs_actuals(&cplis, &actuals, opts).map_err(|e| GatewayError::Invalid(e.to_string()))
    }

    /// Hospital incentive claims for stays that begin between `from` and `to`. Stays need every
    /// visit in order, so this reads each stored visit once (streamed, kept compact).
    pub fn hospital_incentive(&self, org: &Organisation, from: NaiveDate, to: NaiveDate) -> Result<Vec<HospitalRow>> {
        check_range(from, to)?;
        let cplis = self.store.cplis_for_org(org)?;
        let mut visits = hospital::HospitalVisits::new(&cplis, to);
        for fact in self.store.visit_facts(&org.slug) {
            visits.add(&fact?);
        }
        visits.claims(&self.config.hospital, from, to).map_err(|e| GatewayError::Invalid(e.to_string()))
    }

    /// Writes a report into the organisation's `exports/` folder, atomically.
    pub fn write_export(&self, org: &Organisation, name: &str, body: &[u8]) -> Result<PathBuf> {
        let dir = self.data.exports(&org.slug);
        fs::create_dir_all(&dir).map_err(io("creating the exports folder"))?;
        let path = dir.join(name);
        self.data.write_atomically(&path, body).map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// Locks every visit dated on or before `date`, by hand or by the council's schedule (issue 10).
    /// A lock never moves back: an earlier date leaves the later lock as it is, and everything on or
    /// before `date` is locked all the same. Returns the period holding `date`, and the day the lock
    /// already stood at when it did not move.
    pub fn lock_until(&self, date: chrono::NaiveDate, by: LockedBy) -> Result<(Period, Option<chrono::NaiveDate>)> {
        let period = Period::containing(date, self.config.periods.first_start, self.config.periods.length_days);
        match self.store.advance_lock(date, by, Utc::now())? {
            Some(_) => {
                tracing::info!(until = %date, by = by.as_str(), period = period.describe(), "locked");
                // Issue 10: a lock takes its periods' visits out of every `visits-status.csv`.
                self.mark_exports(crate::exports::Touched::All);
                Ok((period, None))
            }
            None => {
                let standing = self.store.locked_until()?.map_or(date, |l| l.0);
                tracing::info!(until = %date, by = by.as_str(), locked_until = %standing, "already locked that far; a lock never moves back");
                Ok((period, Some(standing)))
            }
        }
    }

    /// `gateway import`: the file is copied into the organisation's spool exactly as an upload would
    /// be claimed, then processed.
    pub fn import_file(&self, org: &Organisation, path: &Path) -> Result<ImportResult> {
        let spooled = self.spool_copy(org, path)?;
        self.process_spooled(&spooled)
    }

    /// Claims a copy of the file at `path` into the organisation's spool, as `import` does; the
    /// running server's `import` (issue 10) then hands it to its queue.
    pub fn spool_copy(&self, org: &Organisation, path: &Path) -> Result<SpooledFile> {
        let name = file_name(path)?;
        self.data.ensure_org(&org.slug).map_err(io("creating the organisation's folders"))?;
        let staged = self.data.staging().join(format!("{}.part", uuid::Uuid::new_v4()));
        fs::copy(path, &staged).map_err(io(format!("reading {}", path.display())))?;
        let spooled = self.spool_file(&org.slug, &name);
        fs::rename(&staged, self.data.spooled(&spooled)).map_err(io("moving the file into the spool"))?;
        Ok(spooled)
    }

    /// Claims a complete file from an inbox by renaming it into the spool (so it is taken once).
    pub fn claim(&self, slug: &Slug, path: &Path) -> Result<SpooledFile> {
        self.claim_as(slug, path, &file_name(path)?)
    }

    /// Claims the file at `path` (an inbox file or a finished SFTP upload) as `name`.
    pub fn claim_as(&self, slug: &Slug, path: &Path, name: &str) -> Result<SpooledFile> {
        self.claim_for(&Owner::Org(slug.clone()), path, name)
    }

    /// Claims the file at `path` as `name` for an organisation or the council (issue 10).
    pub fn claim_for(&self, owner: &Owner, path: &Path, name: &str) -> Result<SpooledFile> {
        fs::create_dir_all(self.data.spool_of(owner)).map_err(io("creating the spool"))?;
        let spooled = self.spool_file_for(owner, name);
        fs::rename(path, self.data.spooled(&spooled)).map_err(io(format!("claiming {}", path.display())))?;
        Ok(spooled)
    }

    fn spool_file(&self, slug: &Slug, name: &str) -> SpooledFile {
        self.spool_file_for(&Owner::Org(slug.clone()), name)
    }

    fn spool_file_for(&self, owner: &Owner, name: &str) -> SpooledFile {
        // v7 ids sort by time, so a replay after a crash keeps the order files arrived in.
        SpooledFile::new(owner.clone(), uuid::Uuid::now_v7(), answerable_name(name))
    }

    /// Judges and applies a spooled file, writes its result files, and archives it. Safe to call
    /// again for the same spooled file after a crash: an import already applied is not applied twice,
    /// and its answer is put in place under the names fixed in its commit (issue 9).
    ///
    /// A file the gateway fails on (a panic, a store or disk that refuses a write) is answered with a
    /// failed result naming an internal error and leaves the spool, so it is not retried first at
    /// every start; only when even that answer cannot be written does it stay.
    pub fn process_spooled(&self, spooled: &SpooledFile) -> Result<ImportResult> {
        // For the stopping test: each file takes a while, so a stop comes while one is applied.
        if fault::is("slow-files") {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        self.answer_spooled(spooled, None)
    }

    /// Answers a spooled file as failed because of `reason` (a store or disk failure), without
    /// judging it again: a file on which the store failed for lack of space, answered once space
    /// returns (judging it again would only fill the disk again, issue 9).
    pub fn fail_spooled(&self, spooled: &SpooledFile, reason: &str) -> Result<ImportResult> {
        self.answer_spooled(spooled, Some(store_failure_message(&reason)))
    }

    fn answer_spooled(&self, spooled: &SpooledFile, failed: Option<String>) -> Result<ImportResult> {
        // The council's files (issue 10) are its own kinds, answered in its own folder.
        let slug = match &spooled.owner {
            Owner::Org(slug) => slug,
            Owner::Council => return self.answer_council(spooled, failed),
        };
        let (import_id, name) = (spooled.import_id(), &spooled.name);
        let org = self.org_by_slug(slug)?;
        let path = self.data.spooled(spooled);
        let received_at: DateTime<Utc> =
            fs::metadata(&path).and_then(|m| m.modified()).map(DateTime::from).unwrap_or_else(|_| Utc::now());
        let attachments = Some(ingest::claims::AttachmentDirs { inbox: self.data.inbox(slug), kept: self.data.attachments(slug) });
        let incoming = Incoming { path: &path, file_name: name.clone(), import_id: import_id.clone(), received_at, attachments };
        let plan = self.answer_plan(spooled)?;
        if let Some(message) = failed {
            // Committed before the store failed (its record survived the reopening): it stands, and
            // is answered as committed, not as failed over rows that are stored.
            if let Some(committed) = self.store.import_result(&import_id)? {
                return self.finish(spooled, &org, &plan, committed, true);
            }
            let (result, recorded) = self.fail_file(slug, &org, &incoming, &plan, message)?;
            return self.finish(spooled, &org, &plan, result, recorded);
        }
        let judged = catching_panics(|| ingest::process_answered(&self.config, Some(&org), &incoming, Mode::Import(&self.store), Some(&plan)));
        let (result, recorded) = match judged {
            Ok(Ok(r)) => (r, true),
            Ok(Err(e)) => {
                // A failed store is opened again first (`Store::recover`, which also rolls the cut-short
                // import back); while it cannot be, the error goes to the worker and the file waits.
                if !self.store.is_healthy() {
                    if let Err(again) = self.store.recover() {
                        tracing::error!(file = name, import_id, error = %again, "the store failed and cannot be opened again yet");
                        return Err(e.into());
                    }
                }
                match self.store.import_result(&import_id)? {
                    // Committed, then the flush failed: the import stands; answer it as recorded.
                    Some(committed) => (committed, true),
                    None => {
                        tracing::error!(org = org.name, file = name, import_id, error = %e, "could not store the file; answering it as failed");
                        self.fail_file(slug, &org, &incoming, &plan, store_failure_message(&e))?
                    }
                }
            }
            Err(panic) => {
                tracing::error!(org = org.name, file = name, import_id, panic = panic.to_string(), "processing panicked; answering the file as failed");
                let message = format!(
                    "the gateway failed on this file (an internal error{}: {}); nothing from it was stored. This is a fault of the gateway, not of the file: tell the council's support team, giving the import id {import_id} (they find it in the gateway's log by it), and send the file again once they say it is mended",
                    panic.row.map(|r| format!(" at row {r}")).unwrap_or_default(),
                    panic.message
                );
                self.fail_file(slug, &org, &incoming, &plan, message)?
            }
        };
        self.finish(spooled, &org, &plan, result, recorded)
    }

    /// Puts a file's answer in place under its fixed names and archives the file.
    fn finish(&self, spooled: &SpooledFile, org: &Organisation, plan: &AnswerPlan, result: ImportResult, recorded: bool) -> Result<ImportResult> {
        let result = self.answer_and_archive(spooled, plan, result, recorded)?;
        tracing::info!(org = org.name, file = spooled.name, import_id = spooled.import_id(), summary = result.summary(), "processed");
        Ok(result)
    }

    /// The answer put in place (once) and the file archived, for an organisation's file or the council's.
    pub(crate) fn answer_and_archive(&self, spooled: &SpooledFile, plan: &AnswerPlan, result: ImportResult, recorded: bool) -> Result<ImportResult> {
        let (owner, import_id) = (&spooled.owner, spooled.import_id());
        if !recorded || !self.store.answered(&import_id)? {
            if fault::is("slow-answer") {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            self.put_answer_in_place(owner, &result, plan)?;
            if recorded {
                self.store.mark_answered_for(owner, &import_id)?;
            }
        }
        fs::create_dir_all(self.data.archive_of(owner)).map_err(io("creating the archive"))?;
        fs::rename(self.data.spooled(spooled), self.data.archived(spooled)).map_err(io("archiving the file"))?;
        fault::point("after-archive");
        for staged in [&plan.staged_csv, &plan.staged_json] {
            let _ = fs::remove_file(staged);
        }
        if let Owner::Org(slug) = owner {
            if result.kind == FileKind::Visits && result.status == Status::Processed {
                if let Some(org) = self.store.org_by_slug(slug)? {
                    self.refigure_claims(&org)?;
                }
            }
            self.mark_exports(crate::exports::Touched::Org(slug.clone()));
        }
        Ok(result)
    }

    /// Every organisation's pending claims figured again, as `serve` starts (its exports are all
    /// rewritten then): a new version's rules (an upgrade) or `[hospital]` settings apply to claims
    /// already pending at once, not only when their visits or CPLIs next change (since 2026-12-03).
    /// Only `serve`, with the configuration it runs on, so a one-shot listing neither writes nor
    /// figures under another configuration.
    pub fn refigure_all_claims(&self) -> Result<()> {
        for org in self.store.orgs()? {
            self.refigure_claims(&org)?;
        }
        Ok(())
    }

    /// Keeps the organisation's pending claims' figures those of its visits and CPLIs as they now
    /// are (after a visits file, a CPLI load, a dispute closed by deleting its visit): the council
    /// decides against today's figure.
    pub(crate) fn refigure_claims(&self, org: &Organisation) -> Result<()> {
        let changed = ingest::claims::refigured(&self.store, org, &self.config.hospital)?;
        if !changed.is_empty() {
            self.store.put_claims(&changed)?;
            tracing::info!(org = org.name, claims = changed.len(), "pending claims refigured: their stays' visits or CPLIs changed");
        }
        Ok(())
    }

    /// The names of an import's result files: those its commit recorded (a replay), else the first
    /// `NAME.result.*`, `NAME.result.2.*`, ... that neither exists in `results/` nor is held by an
    /// import committed but not yet answered; written first beside the spooled file.
    pub(crate) fn answer_plan(&self, spooled: &SpooledFile) -> Result<AnswerPlan> {
        let (owner, import_id, name) = (&spooled.owner, spooled.import_id(), spooled.name.as_str());
        let spool = self.data.spool_of(owner);
        let staged = |ext: &str| spool.join(format!("{import_id}.result.{ext}"));
        let (staged_csv, staged_json) = (staged("csv"), staged("json"));
        if let Some(answer) = self.store.import_result(&import_id)?.and_then(|r| r.answer) {
            return Ok(AnswerPlan { staged_csv, staged_json, answer });
        }
        let dir = self.data.results_of(owner);
        let held = self.store.held_answers_for(owner)?;
        let taken = |n: &str| dir.join(n).exists() || held.iter().any(|a| a.csv == n || a.json == n);
        let stem = crate::outcome::csv_stem(name);
        // `NAME.result.json`, then `NAME.result.2.json`, ...: a number after `.result` cannot be part
        // of a file's own name, so one file's answer never takes the name another file's would have
        // (`NAME.2.result.json` for a second `NAME.csv` was also the answer of a file `NAME.2.csv`).
        let answer = (1..)
            .map(|n| {
                let n = if n == 1 { String::new() } else { format!(".{n}") };
                Answer { csv: format!("{stem}.result{n}.csv"), json: format!("{stem}.result{n}.json") }
            })
            .find(|a| !taken(&a.csv) && !taken(&a.json))
            .expect("some number is free");
        Ok(AnswerPlan { staged_csv, staged_json, answer })
    }

    /// A file the gateway failed on: what it wrote is rolled back, and it is answered with one
    /// `INTERNAL_ERROR`. Returns the result and whether the store recorded it (a store that refuses
    /// writes cannot; the file is answered and archived all the same, without an email).
    fn fail_file(&self, slug: &Slug, org: &Organisation, incoming: &Incoming<'_>, plan: &AnswerPlan, message: String) -> Result<(ImportResult, bool)> {
        if let Err(e) = self.store.roll_back_unfinished() {
            tracing::error!(import_id = incoming.import_id, error = %e, "could not roll back the failed import now; the next start will");
        }
        let mut result = internal_failure(incoming, Some(org), message);
        result.answer = Some(plan.answer.clone());
        ingest::write_answer(&result, plan).map_err(|e| GatewayError::Io {
            context: "writing the result of a file the gateway failed on".into(),
            source: match e {
                IngestError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
        })?;
        let recorded = match self.store.record_import(slug, &result) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(import_id = incoming.import_id, error = %e, "could not record the failed import; it is answered without an email");
                false
            }
        };
        Ok((result, recorded))
    }

    /// Moves the staged result files into `results/` under their fixed names, CSV first (clients
    /// poll for the JSON); a replay renames what is still staged, or writes again what is missing.
    fn put_answer_in_place(&self, owner: &Owner, result: &ImportResult, plan: &AnswerPlan) -> Result<()> {
        let answer = result.answer.as_ref().unwrap_or(&plan.answer);
        let dir = self.data.results_of(owner);
        fs::create_dir_all(&dir).map_err(io("creating the results folder"))?;
        let place = |staged: &Path, name: &str, body: &dyn Fn() -> Vec<u8>| -> Result<()> {
            let dest = dir.join(name);
            if staged.exists() {
                fs::rename(staged, &dest).map_err(io(format!("moving the result into {}", dest.display())))
            } else if !dest.exists() {
                tracing::warn!(import_id = result.import_id, file = name, "the staged result is gone; writing it again from the stored record");
                self.data.write_atomically(&dest, &body()).map_err(io(format!("writing {}", dest.display())))
            } else {
                Ok(())
            }
        };
        place(&plan.staged_csv, &answer.csv, &|| result.to_csv())?;
        fault::point("after-result-csv");
        place(&plan.staged_json, &answer.json, &|| {
            let mut body = result.to_json().into_bytes();
            body.push(b'\n');
            body
        })?;
        // The renames survive a crash before the import is marked answered.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Everything claimed but not finished (a crash, a stop): oldest first.
    pub fn spooled(&self) -> Result<Vec<SpooledFile>> {
        let mut out = Vec::new();
        let root = self.data.spool_root();
        let Ok(orgs) = fs::read_dir(&root) else { return Ok(out) };
        for org in orgs.flatten() {
            for f in fs::read_dir(org.path()).map_err(io("reading the spool"))?.flatten() {
                // Staged results (`<import id>.result.*`) and spills are not spooled files.
                if let Ok(spooled) = SpooledFile::from_path(&f.path()) {
                    out.push(spooled);
                }
            }
        }
        out.sort_by_key(SpooledFile::file_name);
        Ok(out)
    }

    /// Before a file: a store that failed (a full disk) is opened again first, rolling back the
    /// import it cut short, so later files go on once space returns without a restart (issue 9).
    /// Whether the store is usable; while it is not, files wait.
    pub fn ensure_store(&self) -> bool {
        if self.store.is_healthy() {
            return true;
        }
        match self.store.recover() {
            Ok(()) => {
                tracing::warn!("the store failed and has been opened again");
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the store cannot be opened again yet");
                false
            }
        }
    }

    /// Judges files without storing anything (`gateway validate`).
    pub fn validate(
        config: &Config,
        store: Option<&Store>,
        org: Option<&Organisation>,
        cplis: Option<Vec<crate::domain::Cpli>>,
        path: &Path,
    ) -> Result<ImportResult> {
        let incoming = Incoming { path, file_name: file_name(path)?, import_id: uuid::Uuid::now_v7().to_string(), received_at: Utc::now(), attachments: None };
        match catching_panics(|| ingest::process(config, org, &incoming, Mode::Validate { store, cplis })) {
            Ok(judged) => Ok(judged?),
            Err(panic) => Ok(internal_failure(
                &incoming,
                org,
                format!(
                    "the gateway failed on this file (an internal error{}: {}); this is a fault of the gateway, not of the file",
                    panic.row.map(|r| format!(" at row {r}")).unwrap_or_default(),
                    panic.message
                ),
            )),
        }
    }
}

/// A failed result with one `INTERNAL_ERROR` (issue 9).
fn internal_failure(incoming: &Incoming<'_>, org: Option<&Organisation>, message: String) -> ImportResult {
    let mut result = ImportResult::new(
        &incoming.file_name,
        &incoming.import_id,
        org.map(|o| o.name.as_str()),
        incoming.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    result.status = Status::Failed;
    result.processed_at = ingest::now_rfc3339();
    // Every result carries its file's hash (SPEC 4; since 2026-12-03 this one too).
    result.sha256 = ingest::source::sha256(incoming.path).unwrap_or_default();
    result.issues = vec![Issue::file(Code::InternalError, None, message)];
    (result.issue_count, result.error_count) = (1, 1);
    result
}

/// What a caught panic said, and the row being judged when it happened, if known.
#[derive(Debug)]
pub struct Panicked {
    pub message: String,
    pub row: Option<u64>,
}

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            Some(r) => write!(f, "{} (row {r})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The first panic seen while a file is processed (the judging threads' panic comes before the
/// one that ends their scope, which knows no row).
static PANIC_NOTE: std::sync::Mutex<Option<Panicked>> = std::sync::Mutex::new(None);

/// Runs `f`, turning a panic into `Err` with its message and row (issue 9: a panic on a file must
/// answer that file, not kill the worker or come back at every start).
pub(crate) fn catching_panics<T>(f: impl FnOnce() -> T) -> std::result::Result<T, Panicked> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = match (info.payload().downcast_ref::<&str>(), info.payload().downcast_ref::<String>()) {
                (Some(s), _) => s.to_string(),
                (_, Some(s)) => s.clone(),
                _ => "a panic".to_string(),
            };
            let message = match info.location() {
                Some(l) => format!("{message} ({}:{})", l.file(), l.line()),
                None => message,
            };
            if let Ok(mut note) = PANIC_NOTE.lock() {
                note.get_or_insert(Panicked { message, row: ingest::current_row() });
            }
            previous(info);
        }));
    });
    let take = || PANIC_NOTE.lock().map(|mut n| n.take()).unwrap_or_default();
    take();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let note = take();
    outcome.map_err(|_| note.unwrap_or(Panicked { message: "a panic".into(), row: None }))
}

/// What a file on which the store or the disk failed is answered with.
fn store_failure_message(e: &dyn std::fmt::Display) -> String {
    format!(
        "the gateway could not process this file ({e}); nothing from it was stored. This is a fault of the gateway's disk or store, not of the file: send it again later"
    )
}

/// The commissioned care export's name in `exports/`.
pub const COMMISSIONED_EXPORT: &str = "commissioned-care.csv";

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    if from > to {
        return Err(GatewayError::Invalid(format!("--from {from} is after --to {to}")));
    }
    Ok(())
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| GatewayError::Invalid(format!("{} is not a file", path.display())))
}

/// The longest file name the gateway answers under. File systems allow 255 bytes; the spool adds a
/// 38-byte import id and the result a `.result.json` suffix, so a longer name dropped into an inbox
/// was claimed but never answered (issue 9). 200 is also the SFTP front door's limit.
pub const MAX_FILE_NAME: usize = 200;

/// `name` itself when it fits [`MAX_FILE_NAME`]; otherwise its beginning (cut at a character
/// boundary), `~`, eight hex digits of its hash (so two long names that begin alike stay apart) and
/// its extension, e.g. `visits-....~1a2b3c4d.csv`. The file is answered under that name.
pub fn answerable_name(name: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    if name.len() <= MAX_FILE_NAME {
        return name.into();
    }
    let ext = match name.rfind('.') {
        Some(i) if name.len() - i <= 10 => &name[i..],
        _ => "",
    };
    let hash = sha2::Sha256::digest(name.as_bytes());
    let tag = format!("~{:02x}{:02x}{:02x}{:02x}", hash[0], hash[1], hash[2], hash[3]);
    let mut cut = MAX_FILE_NAME - tag.len() - ext.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{ext}", &name[..cut]).into()
}

/// Whether a name in an inbox is a finished file to judge: a CSV, or a spreadsheet sent as it is
/// (answered `FILE_UNREADABLE`, "Save As CSV", rather than left in /inbox unanswered). Temporary
/// names of SFTP clients and editors (`*.filepart`, `*.part`, `*.tmp`, dot-names) wait until they
/// are renamed; other names (a claim's PDF attachment) are left where they are.
pub fn is_ready_name(name: &str) -> bool {
    const ENDINGS: [&str; 5] = [".csv", ".xlsx", ".xlsm", ".xls", ".ods"];
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.') && ENDINGS.iter().any(|e| lower.len() > e.len() && lower.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_upload_names_wait_for_the_rename() {
        assert!(is_ready_name("visits.csv"));
        assert!(is_ready_name("VISITS.CSV"));
        for n in ["visits.csv.filepart", "visits.csv.part", "visits.tmp", ".visits.csv", ".csv", "visits.xlsx.filepart", "letter.pdf", "visits.txt"] {
            assert!(!is_ready_name(n), "{n}");
        }
    }

    #[test]
    fn a_spreadsheet_sent_as_it_is_is_answered_not_left_waiting() {
        for n in ["visits.xlsx", "Visits.XLS", "rota.xlsm", "visits.ods"] {
            assert!(is_ready_name(n), "{n}");
        }
        assert!(!is_ready_name(".xlsx"));
    }

    #[test]
    fn a_name_too_long_to_answer_is_shortened_keeping_its_extension() {
        assert_eq!(answerable_name("visits.csv"), "visits.csv");
        let long = format!("{}.csv", "é".repeat(150));
        let short = answerable_name(&long);
        assert!(short.len() <= MAX_FILE_NAME, "{}", short.len());
        assert!(short.ends_with(".csv") && short.contains('~'), "{short}");
        assert!(is_ready_name(&short));
        let other = format!("{}x.csv", "é".repeat(150));
        assert_ne!(answerable_name(&other), short, "names that begin alike stay apart");
    }
}
