//! The files the gateway keeps current in each organisation's and the council's `/exports` (issue 10):
//! one table of exports, each a name, its columns and how its rows are made; each rewritten whole
//! (staged, then renamed in) only when its content changed, and coalesced, so a burst of files
//! rewrites each export once rather than once per file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::domain::number::minutes_times;
use crate::domain::{uk_date, week_start, Cpli, MatchStatus, Organisation, Period, Slug, Visit};
use crate::ingest::headings as h;
use crate::outcome::excel_safe;
use crate::pipeline::{Gateway, GatewayError, Result};
use crate::reports::{self, hospital, ActualsOptions};

/// Whose folder an export is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Each organisation's `exports/`, from its own rows only.
    Org,
    /// The council's `exports/`, over every organisation.
    Council,
}

/// Where a row goes: the file name (within the export's folder) and its cells.
type RowSink<'a> = dyn FnMut(&str, &[String]) -> io::Result<()> + 'a;

/// One export: its file name (for a family of files, the pattern), columns, and rows.
pub struct Export {
    pub name: &'static str,
    pub scope: Scope,
    pub columns: &'static [&'static str],
    /// A family (`visits-YYYY-MM-DD.csv`): its files are those `rows` names; any other file of the
    /// family in the folder is removed (a period whose visits were all deleted).
    family: Option<(&'static str, &'static str)>,
    rows: fn(&Gateway, Option<&Organisation>, &mut RowSink<'_>) -> Result<()>,
}

/// The columns of `visits-status.csv` and `unmatched.csv`: the visits file's headings where they are
/// the same thing, then the match.
pub const VISIT_STATUS_COLUMNS: [&str; 19] = [
    h::VISIT_REF,
    h::PLANNED_VISIT_DATE,
    h::PLANNED_ENTRY_TIME,
    h::PLANNED_EXIT_TIME,
    h::VISIT_TYPE,
    h::DELIVERED_VISIT_DATE,
    h::DELIVERED_ENTRY_TIME,
    h::DELIVERED_EXIT_TIME,
    h::SS_REF,
    h::CLIENT_REF,
    h::NHS_NUMBER,
    h::SERVICE_LEVEL_REF,
    h::SERVICE_LEVEL,
    h::SERVICE_REF,
    h::SERVICE_NAME,
    "Status",
    "CPLIID",
    "Reason",
    "DidYouMean",
];

pub const SUBMISSIONS_COLUMNS: [&str; 14] = [
    "Organisation",
    "PeriodStart",
    "FilesThisPeriod",
    "FilesTotal",
    "LastFile",
    "LastReceivedAt",
    "LastStatus",
    "LastRead",
    "LastNew",
    "LastUpdated",
    "LastRejected",
    "LastDataQualityIssues",
    "UnmatchedVisits",
    "LatestVisitDate",
];

pub const COUNCIL_VISITS_COLUMNS: [&str; 18] = [
    "Organisation",
    h::VISIT_REF,
    h::PLANNED_VISIT_DATE,
    h::PLANNED_ENTRY_TIME,
    h::PLANNED_EXIT_TIME,
    h::VISIT_TYPE,
    h::DELIVERED_VISIT_DATE,
    h::DELIVERED_ENTRY_TIME,
    h::DELIVERED_EXIT_TIME,
    h::SS_REF,
    h::SERVICE_LEVEL,
    h::SERVICE_NAME,
    "Status",
    "CPLIID",
    "UnitCost",
    "PaidMinutes",
    "PaidHours",
    "Cost",
];

/// Every export the gateway keeps current. The commissioned care export is written apart
/// (`Gateway::write_commissioned_export`), as before issue 10.
pub const EXPORTS: [Export; 11] = [
    Export { name: "visits-status.csv", scope: Scope::Org, columns: &VISIT_STATUS_COLUMNS, family: None, rows: visits_status },
    Export { name: "unmatched.csv", scope: Scope::Org, columns: &VISIT_STATUS_COLUMNS, family: None, rows: unmatched },
    Export { name: "commissioned-vs-actuals.csv", scope: Scope::Org, columns: &reports::actuals::COLUMNS, family: None, rows: commissioned_vs_actuals },
    Export { name: "hospital-incentive.csv", scope: Scope::Org, columns: &hospital::COLUMNS, family: None, rows: hospital_incentive },
    Export { name: "claims.csv", scope: Scope::Org, columns: crate::claims::COLUMNS, family: None, rows: claims },
    Export { name: "disputes.csv", scope: Scope::Org, columns: crate::disputes::COLUMNS, family: None, rows: disputes },
    Export { name: "submissions.csv", scope: Scope::Council, columns: &SUBMISSIONS_COLUMNS, family: None, rows: submissions },
    Export { name: "claims.csv", scope: Scope::Council, columns: &crate::claims::COUNCIL_COLUMNS, family: None, rows: claims },
    Export { name: "disputes.csv", scope: Scope::Council, columns: &crate::disputes::COUNCIL_COLUMNS, family: None, rows: disputes },
    Export { name: "hospital-incentive.csv", scope: Scope::Council, columns: &COUNCIL_HOSPITAL_COLUMNS, family: None, rows: council_hospital_incentive },
    Export {
        name: "visits-YYYY-MM-DD.csv",
        scope: Scope::Council,
        columns: &COUNCIL_VISITS_COLUMNS,
        family: Some(("visits-", ".csv")),
        rows: council_visits,
    },
];

/// How many weeks the provider's commissioned-vs-actuals and hospital-incentive exports cover, up to
/// the week of its latest visit (issue 10).
pub const REPORT_WEEKS: i64 = 8;

/// Exports waiting to be rewritten: what changed since the last rewrite.
#[derive(Default)]
pub struct Pending {
    dirty: Mutex<Dirty>,
    /// Set while `serve` runs: its worker rewrites between files; otherwise a change is written at once.
    deferred: AtomicBool,
    /// Wakes the worker when a command (over the control socket) changed something between files.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Dirty {
    orgs: BTreeSet<Slug>,
    all_orgs: bool,
    council: bool,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.orgs.is_empty() && !self.all_orgs && !self.council
    }
}

/// What a change touched.
#[derive(Debug, Clone)]
pub enum Touched {
    /// One organisation's rows (an import, a CPLI load naming it); the council's exports too.
    Org(Slug),
    /// Every organisation's (a lock, the start of `serve`); the council's too.
    All,
}

impl Pending {
    /// From now on changes wait for [`Gateway::refresh_exports`] (the serve worker's, between files).
    pub fn defer(&self) {
        self.deferred.store(true, Ordering::SeqCst);
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.lock().map(|d| !d.is_empty()).unwrap_or(true)
    }

    /// Resolves when something was marked since the last call (a stored permit counts).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn mark(&self, touched: Touched) {
        if let Ok(mut d) = self.dirty.lock() {
            match touched {
                Touched::Org(slug) => {
                    d.orgs.insert(slug);
                }
                Touched::All => d.all_orgs = true,
            }
            d.council = true;
        }
        self.changed.notify_one();
    }

    fn take(&self) -> Dirty {
        self.dirty.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default()
    }

    /// Puts back what a failed rewrite did not finish, so it is tried again.
    fn put_back(&self, undone: Dirty) {
        if let Ok(mut d) = self.dirty.lock() {
            d.orgs.extend(undone.orgs);
            d.all_orgs |= undone.all_orgs;
            d.council |= undone.council;
        }
    }
}

impl Gateway {
    /// Notes that `touched` changed; written at once unless `serve`'s worker writes it between files.
    pub fn mark_exports(&self, touched: Touched) {
        self.exports.mark(touched);
        if !self.exports.deferred.load(Ordering::SeqCst) {
            if let Err(e) = self.refresh_exports() {
                tracing::error!(error = %e, "could not rewrite the exports; they are rewritten at the next change or start");
            }
        }
    }

    /// Runs `work` with the exports' rewrites held, then rewrites once what it touched (a one-shot
    /// `import` of many files, issue 10); while `serve`'s worker writes them, it still does.
    pub fn exports_once<T>(&self, work: impl FnOnce() -> T) -> T {
        let deferred_before = self.exports.deferred.swap(true, Ordering::SeqCst);
        let done = work();
        if !deferred_before {
            self.exports.deferred.store(false, Ordering::SeqCst);
            if let Err(e) = self.refresh_exports() {
                tracing::error!(error = %e, "could not rewrite the exports; they are rewritten at the next change or start");
            }
        }
        done
    }

    /// Rewrites every export something changed under since the last call. Returns how many files
    /// were rewritten (unchanged content is not rewritten). The caller holds the store's turn while
    /// serving, so every export reads one consistent store.
    pub fn refresh_exports(&self) -> Result<usize> {
        let dirty = self.exports.take();
        if dirty.is_empty() {
            return Ok(0);
        }
        let orgs: Vec<Organisation> = match self.store.orgs() {
            Ok(all) if dirty.all_orgs => all,
            Ok(all) => all.into_iter().filter(|o| dirty.orgs.contains(&o.slug)).collect(),
            Err(e) => {
                self.exports.put_back(dirty);
                return Err(e.into());
            }
        };
        let mut written = 0;
        let mut failed = Dirty::default();
        for org in &orgs {
            for export in EXPORTS.iter().filter(|e| e.scope == Scope::Org) {
                match self.write_export_files(export, Some(org)) {
                    Ok(n) => written += n,
                    Err(e) => {
                        tracing::error!(org = org.name, export = export.name, error = %e, "could not rewrite an export");
                        failed.orgs.insert(org.slug.clone());
                    }
                }
            }
        }
        if dirty.council {
            for export in EXPORTS.iter().filter(|e| e.scope == Scope::Council) {
                match self.write_export_files(export, None) {
                    Ok(n) => written += n,
                    Err(e) => {
                        tracing::error!(export = export.name, error = %e, "could not rewrite a council export");
                        failed.council = true;
                    }
                }
            }
        }
        if !failed.is_empty() {
            self.exports.put_back(failed);
            return Err(GatewayError::Invalid("some exports could not be rewritten; see the log".into()));
        }
        Ok(written)
    }

    /// Makes one export's files for `org` (or the council) and puts those whose content changed in
    /// place; returns how many were rewritten.
    fn write_export_files(&self, export: &Export, org: Option<&Organisation>) -> Result<usize> {
        let dir = match org {
            Some(o) => self.data.exports(&o.slug),
            None => self.data.council_exports(),
        };
        let io_err = |context: String| move |source| GatewayError::Io { context, source };
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        fs::create_dir_all(self.data.staging()).map_err(io_err("creating the staging folder".into()))?;
        let mut staged = Staged { staging: self.data.staging(), columns: export.columns, files: BTreeMap::new() };
        if export.family.is_none() {
            // A single file exists even with no rows: its header says what it would hold.
            staged.open(export.name).map_err(io_err(format!("staging {}", export.name)))?;
        }
        let made = (export.rows)(self, org, &mut |name, cells| staged.row(name, cells));
        if let Err(e) = made {
            staged.discard();
            return Err(e);
        }
        staged.put_in_place(&dir, export.family).map_err(io_err(format!("writing {} in {}", export.name, dir.display())))
    }
}

/// An export's files being written in `staging/`, by name.
struct Staged {
    staging: PathBuf,
    columns: &'static [&'static str],
    files: BTreeMap<String, (PathBuf, csv::Writer<BufWriter<fs::File>>)>,
}

impl Staged {
    fn open(&mut self, name: &str) -> io::Result<&mut csv::Writer<BufWriter<fs::File>>> {
        if !self.files.contains_key(name) {
            let tmp = self.staging.join(format!("{}.tmp", uuid::Uuid::new_v4()));
            let mut w = csv::Writer::from_writer(BufWriter::with_capacity(256 * 1024, fs::File::create(&tmp)?));
            w.write_record(self.columns)?;
            self.files.insert(name.to_string(), (tmp, w));
        }
        Ok(&mut self.files.get_mut(name).expect("just inserted").1)
    }

    fn row(&mut self, name: &str, cells: &[String]) -> io::Result<()> {
        self.open(name)?.write_record(cells).map_err(io::Error::other)
    }

    fn discard(self) {
        for (tmp, _) in self.files.into_values() {
            let _ = fs::remove_file(tmp);
        }
    }

    /// Renames each staged file over its export when its content differs, leaving the export as it
    /// is otherwise; removes the family's files that were not made this time. No fsync: an export is
    /// a view of the store, and every start rewrites whatever differs (a file cut short by a crash).
    fn put_in_place(self, dir: &Path, family: Option<(&str, &str)>) -> io::Result<usize> {
        let mut written = 0;
        let names: BTreeSet<String> = self.files.keys().cloned().collect();
        let mut files = self.files.into_iter();
        let mut outcome: io::Result<()> = Ok(());
        for (name, (tmp, w)) in files.by_ref() {
            let done = (|| {
                w.into_inner().map_err(|e| io::Error::other(e.to_string()))?.into_inner().map_err(|e| e.into_error())?;
                let dest = dir.join(&name);
                if same_content(&tmp, &dest)? {
                    fs::remove_file(&tmp)?;
                } else {
                    fs::rename(&tmp, &dest)?;
                    written += 1;
                    tracing::info!(export = name, folder = %dir.display(), "export rewritten");
                }
                Ok(())
            })();
            if let Err(e) = done {
                let _ = fs::remove_file(&tmp);
                outcome = Err(e);
                break;
            }
        }
        for (_, (tmp, _)) in files {
            let _ = fs::remove_file(tmp);
        }
        outcome?;
        if let Some((prefix, suffix)) = family {
            for e in fs::read_dir(dir)?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) && name.ends_with(suffix) && !names.contains(&name) {
                    fs::remove_file(e.path())?;
                    written += 1;
                    tracing::info!(export = name, folder = %dir.display(), "export removed: nothing left in it");
                }
            }
        }
        Ok(written)
    }
}

/// Whether two files hold the same bytes (a missing `b` is not the same), read in chunks so a large
/// export is never held whole.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (ma, mb) = match (fs::metadata(a), fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => (ma, mb),
        (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn org_of(org: Option<&Organisation>) -> Result<&Organisation> {
    org.ok_or_else(|| GatewayError::Invalid("an organisation's export was asked for without an organisation".into()))
}

fn sink_err(e: io::Error) -> GatewayError {
    GatewayError::Io { context: "writing an export".into(), source: e }
}

// The rows of each export.

fn visits_status(gw: &Gateway, org: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let org = org_of(org)?;
    let lock = gw.store.locked_until()?;
    for sv in gw.store.current_visits(&org.slug) {
        let Some(v) = sv?.visit else { continue };
        if lock.is_some_and(|l| l.locks(v.planned_date)) {
            continue;
        }
        out("visits-status.csv", &status_cells(&v)).map_err(sink_err)?;
    }
    Ok(())
}

fn unmatched(gw: &Gateway, org: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let org = org_of(org)?;
    for sv in gw.store.unmatched_visits(&org.slug) {
        let Some(v) = sv?.visit else { continue };
        out("unmatched.csv", &status_cells(&v)).map_err(sink_err)?;
    }
    Ok(())
}

/// Monday and Sunday of the `REPORT_WEEKS` weeks up to the week of the organisation's latest visit
/// (or extra-care actuals period); `None` before it sent any.
fn report_window(gw: &Gateway, org: &Organisation) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let mut latest: Option<NaiveDate> = None;
    for w in gw.store.weeks(&org.slug) {
        let (k, t) = w?;
        if t.visits > 0 {
            latest = latest.max(Some(k.monday));
        }
    }
    for a in gw.store.current_actuals(&org.slug) {
        latest = latest.max(Some(week_start(a?.actual.period_start)));
    }
    Ok(latest.map(|monday| (monday - Duration::weeks(REPORT_WEEKS - 1), monday + Duration::days(6))))
}

fn commissioned_vs_actuals(gw: &Gateway, org: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let org = org_of(org)?;
    let Some((from, to)) = report_window(gw, org)? else { return Ok(()) };
    let opts = ActualsOptions { from, to, differences_only: false, include_empty_weeks: false };
    for row in gw.commissioned_vs_actuals(org, &opts)? {
        out("commissioned-vs-actuals.csv", &row.cells()).map_err(sink_err)?;
    }
    Ok(())
}

/// Stays that touch the report's weeks: those that began up to a year before them are looked at, and
/// kept where they run into the weeks (a stay's cover is 7 or 14 days, so a year is ample).
fn hospital_incentive(gw: &Gateway, org: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let org = org_of(org)?;
    let Some((from, to)) = report_window(gw, org)? else { return Ok(()) };
    for row in gw.hospital_incentive(org, from - Duration::days(365), to)? {
        if row.to >= from {
            out("hospital-incentive.csv", &row.cells()).map_err(sink_err)?;
        }
    }
    Ok(())
}

/// Disputes (issue 12): the organisation's own open ones and those resolved in the last
/// `disputes.resolved_shown_days`; every dispute of every organisation in the council's.
fn disputes(gw: &Gateway, org: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let today = gw.config.rules.current_day();
    let shown_days = gw.config.disputes.resolved_shown_days;
    for d in gw.disputes(org)? {
        let cells = match org {
            Some(_) if !d.shown_to_provider(today, shown_days) => continue,
            Some(_) => crate::disputes::cells(&d, today),
            None => crate::disputes::list_rows(std::slice::from_ref(&d), today).remove(0),
        };
        out("disputes.csv", &cells).map_err(sink_err)?;
    }
    Ok(())
}

/// Every claim (issue 12): the organisation's own in its `claims.csv`, every organisation's in the
/// council's, with the decisions and the council's notes.
fn claims(gw: &Gateway, org: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    for c in gw.claims(org)? {
        let cells = match org {
            Some(_) => crate::claims::cells(&c),
            None => crate::claims::list_rows(std::slice::from_ref(&c)).remove(0),
        };
        out("claims.csv", &cells).map_err(sink_err)?;
    }
    Ok(())
}

/// The council's `hospital-incentive.csv` (issue 12): every organisation's lines, as in its own.
pub const COUNCIL_HOSPITAL_COLUMNS: [&str; 13] = [
    "organisation",
    "ssref",
    "cpli_id",
    "contract",
    "from",
    "to",
    "visits",
    "missed_hours",
    "unit_cost",
    "amount",
    "care_resumed",
    "working_days",
    "working",
];

fn council_hospital_incentive(gw: &Gateway, _: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    for org in gw.store.orgs()? {
        let name = excel_safe(&org.name).into_owned();
        hospital_incentive(gw, Some(&org), &mut |_, cells| {
            let mut row = vec![name.clone()];
            row.extend_from_slice(cells);
            out("hospital-incentive.csv", &row)
        })?;
    }
    Ok(())
}

/// What `submissions.csv` says of one organisation.
#[derive(Default)]
struct Submissions {
    this_period: u64,
    total: u64,
    last: Option<crate::outcome::ImportResult>,
    unmatched: u64,
    latest_visit: Option<NaiveDate>,
}

fn submissions(gw: &Gateway, _: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let periods = &gw.config.periods;
    let period = Period::containing(Utc::now().date_naive(), periods.first_start, periods.length_days);
    let orgs = gw.store.orgs()?;
    let mut by_name: HashMap<&str, Submissions> = orgs.iter().map(|o| (o.name.as_str(), Submissions::default())).collect();
    for import in gw.store.imports() {
        let import = import?;
        let Some(s) = import.organisation.as_deref().and_then(|n| by_name.get_mut(n)) else { continue };
        s.total += 1;
        let received = chrono::DateTime::parse_from_rfc3339(&import.received_at).map(|t| t.with_timezone(&Utc).date_naive()).ok();
        if received.is_some_and(|d| period.start <= d && d <= period.end) {
            s.this_period += 1;
        }
        s.last = Some(import);
    }
    for org in &orgs {
        let s = by_name.get_mut(org.name.as_str()).expect("every organisation has an entry");
        for glanced in gw.store.visit_glances(&org.slug) {
            let (planned_date, unmatched) = glanced?;
            s.latest_visit = s.latest_visit.max(Some(planned_date));
            s.unmatched += u64::from(unmatched);
        }
        let last = s.last.as_ref();
        let count = |f: fn(&crate::outcome::Counts) -> u64| last.map(|l| f(&l.counts).to_string()).unwrap_or_default();
        let cells = [
            excel_safe(&org.name).into_owned(),
            period.start.to_string(),
            s.this_period.to_string(),
            s.total.to_string(),
            last.map(|l| excel_safe(&l.file).into_owned()).unwrap_or_default(),
            last.map(|l| l.received_at.clone()).unwrap_or_default(),
            last.map(|l| if l.status == crate::outcome::Status::Processed { "processed" } else { "failed" }.to_string()).unwrap_or_default(),
            count(|c| c.read),
            count(|c| c.new),
            count(|c| c.updated),
            count(|c| c.rejected),
            count(|c| c.data_quality_issues),
            s.unmatched.to_string(),
            s.latest_visit.map(|d| d.to_string()).unwrap_or_default(),
        ];
        out("submissions.csv", &cells).map_err(sink_err)?;
    }
    Ok(())
}

fn council_visits(gw: &Gateway, _: Option<&Organisation>, out: &mut RowSink<'_>) -> Result<()> {
    let periods = &gw.config.periods;
    for org in gw.store.orgs()? {
        let cplis: HashMap<String, Cpli> = gw.store.cplis_for_org(&org)?.into_iter().map(|c| (c.cpli_id.clone(), c)).collect();
        for sv in gw.store.current_visits(&org.slug) {
            let Some(v) = sv?.visit else { continue };
            let period = Period::containing(v.planned_date, periods.first_start, periods.length_days);
            let cells = council_cells(gw, &org, &v, &cplis)?;
            out(&format!("visits-{}.csv", period.start), &cells).map_err(sink_err)?;
        }
    }
    Ok(())
}

/// Minutes the council pays for a visit matched to `cpli`, as the commissioned-vs-actuals report
/// counts them: delivered time of the paid delivered-based types (DHS, DHF, E), planned time of the
/// other paid types (C, U), nothing for the unpaid ones (C24, H) or a Spot package (invoiced).
pub fn paid_minutes(gw: &Gateway, v: &Visit, cpli: &Cpli) -> i64 {
    if cpli.contract.trim().eq_ignore_ascii_case("spot") {
        return 0;
    }
    match gw.config.rules.visit_types.get(&v.visit_type).filter(|t| t.provider_paid) {
        None => 0,
        Some(t) if t.delivered_based => v.delivered.as_ref().map_or(0, |d| crate::domain::Duration::between(d.entry, d.exit).minutes),
        Some(_) => v.planned_duration().minutes,
    }
}

fn council_cells(gw: &Gateway, org: &Organisation, v: &Visit, cplis: &HashMap<String, Cpli>) -> Result<Vec<String>> {
    let mut cells = vec![excel_safe(&org.name).into_owned()];
    cells.extend(visit_cells(v));
    cells.truncate(10);
    cells.push(text(v.service_level.as_deref()));
    cells.push(text(v.service_name.as_deref()));
    let cpli = v.cpli_id().and_then(|id| cplis.get(id));
    match (&v.matched, cpli) {
        (MatchStatus::Matched { cpli_id }, Some(c)) => {
            let minutes = paid_minutes(gw, v, c);
            let cost = minutes_times(minutes, c.unit_cost, 60)
                .ok_or_else(|| GatewayError::Invalid(reports::Overflow::of(c).to_string()))?;
            cells.extend(["Matched".into(), excel_safe(cpli_id).into_owned(), c.unit_cost.normalize().to_string()]);
            cells.extend([minutes.to_string(), exact(reports::hours(minutes)), exact(cost)]);
        }
        _ => cells.extend(["Unmatched".into(), String::new(), String::new(), String::new(), String::new(), String::new()]),
    }
    Ok(cells)
}

/// An exact decimal without trailing zeros; a fraction that does not end (minutes / 60) is written
/// to the 28 significant digits rust_decimal holds, so sums round exactly to the penny.
fn exact(d: Decimal) -> String {
    d.normalize().to_string()
}

fn text(s: Option<&str>) -> String {
    s.map(|s| excel_safe(s).into_owned()).unwrap_or_default()
}

/// Organisation, VisitRef, the dates and times, type, SSRef: the start of the council's row too.
fn visit_cells(v: &Visit) -> Vec<String> {
    let time = crate::domain::hh_mm;
    let d = v.delivered.as_ref();
    vec![
        excel_safe(&v.visit_ref).into_owned(),
        uk_date(v.planned_date),
        time(v.planned_entry),
        time(v.planned_exit),
        v.visit_type.clone(),
        d.map(|d| uk_date(d.date)).unwrap_or_default(),
        d.map(|d| time(d.entry)).unwrap_or_default(),
        d.map(|d| time(d.exit)).unwrap_or_default(),
        text(v.ssref.as_deref()),
    ]
}

/// A visit's row in `visits-status.csv` and `unmatched.csv`.
fn status_cells(v: &Visit) -> Vec<String> {
    let mut cells = visit_cells(v);
    let guid = |g: &Option<crate::domain::Guid>| g.as_ref().map(|g| g.to_string()).unwrap_or_default();
    cells.extend([
        guid(&v.client_ref),
        text(v.nhs_number.as_deref()),
        guid(&v.service_level_ref),
        text(v.service_level.as_deref()),
        guid(&v.service_ref),
        text(v.service_name.as_deref()),
    ]);
    match &v.matched {
        MatchStatus::Matched { cpli_id } => cells.extend(["Matched".into(), excel_safe(cpli_id).into_owned(), String::new(), String::new()]),
        MatchStatus::Unmatched { reason } => {
            let (why, hint) = split_hint(reason);
            cells.extend(["Unmatched".into(), String::new(), excel_safe(why).into_owned(), excel_safe(hint).into_owned()]);
        }
    }
    cells
}

/// Matching's reason as the reason and its "did you mean" (`ingest::matching` ends a reason with
/// `: did you mean ...?` where a CPLI is near).
pub fn split_hint(reason: &str) -> (&str, &str) {
    match reason.split_once(": did you mean ") {
        Some((why, hint)) => (why, hint.strip_suffix('?').unwrap_or(hint)),
        None => (reason, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmatched_reason_is_split_into_the_reason_and_what_was_meant() {
        let (why, hint) = split_hint("client A1 has no CPLI with ServiceName 'X' and ServiceLevel 'Y': did you mean ServiceName 'Z'?");
        assert_eq!(why, "client A1 has no CPLI with ServiceName 'X' and ServiceLevel 'Y'");
        assert_eq!(hint, "ServiceName 'Z'");
        assert_eq!(split_hint("no care package (CPLI) for client A1"), ("no care package (CPLI) for client A1", ""));
    }

    #[test]
    fn every_export_has_its_own_name_and_rows_of_its_columns() {
        // A provider's export and the council's may share a name (claims.csv): they are in different folders.
        let mut names: Vec<(&str, bool)> = EXPORTS.iter().map(|e| (e.name, e.scope == Scope::Org)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EXPORTS.len());
        let v = Visit {
            visit_ref: "=V1".into(),
            planned_date: NaiveDate::from_ymd_opt(2022, 10, 3).unwrap(),
            planned_entry: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            planned_exit: chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            visit_type: "C".into(),
            delivered: None,
            variance_reason: None,
            comments: None,
            client_ref: None,
            ssref: Some("A1".into()),
            nhs_number: None,
            service_level_ref: None,
            service_level: Some("Personal Care".into()),
            carer_ref: None,
            service_ref: None,
            service_name: None,
            matched: MatchStatus::Unmatched { reason: "no CPLI: did you mean 'X'?".into() },
        };
        let cells = status_cells(&v);
        assert_eq!(cells.len(), VISIT_STATUS_COLUMNS.len());
        assert_eq!(cells[0], "'=V1", "a cell Excel would run is neutralised");
        assert_eq!(&cells[15..], ["Unmatched", "", "no CPLI", "'X'"]);
    }

    #[test]
    fn same_content_compares_bytes_and_a_missing_file_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        fs::write(&a, "x,y\n1,2\n").unwrap();
        fs::write(&b, "x,y\n1,2\n").unwrap();
        assert!(same_content(&a, &b).unwrap());
        fs::write(&b, "x,y\n1,3\n").unwrap();
        assert!(!same_content(&a, &b).unwrap());
        assert!(!same_content(&a, &c).unwrap());
    }
}
