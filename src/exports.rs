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

use crate::domain::number::visit_cost;
use crate::domain::{uk_date, week_start, Cpli, MatchStatus, Organisation, Period, Slug, Visit};
use crate::ingest::headings as h;
use crate::outcome::{excel_safe, excel_safe_cell};
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

/// One export: its file name (for a family of files, the pattern), columns, and how its rows are made.
pub struct Export {
    pub name: &'static str,
    pub scope: Scope,
    pub columns: &'static [&'static str],
    /// A family (`visits-YYYY-MM-DD.csv`): its files are those its rows name; any other file of the
    /// family in the folder is removed (a period whose visits were all deleted).
    family: Option<(&'static str, &'static str)>,
    source: Source,
}

/// How an export's rows are made.
enum Source {
    /// By its own reading of the store.
    Rows(fn(&Gateway, Option<&Organisation>, &mut RowSink<'_>) -> Result<()>),
    /// By the one pass over an organisation's visits ([`Gateway::visit_pass`]); the council's file
    /// is joined from every organisation's part, which the same pass leaves in `export-parts/`.
    Visits,
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
    Export { name: "visits-status.csv", scope: Scope::Org, columns: &VISIT_STATUS_COLUMNS, family: None, source: Source::Visits },
    Export { name: "unmatched.csv", scope: Scope::Org, columns: &VISIT_STATUS_COLUMNS, family: None, source: Source::Visits },
    Export { name: "commissioned-vs-actuals.csv", scope: Scope::Org, columns: &reports::actuals::COLUMNS, family: None, source: Source::Rows(commissioned_vs_actuals) },
    Export { name: HOSPITAL, scope: Scope::Org, columns: &hospital::COLUMNS, family: None, source: Source::Visits },
    Export { name: "claims.csv", scope: Scope::Org, columns: crate::claims::COLUMNS, family: None, source: Source::Rows(claims) },
    Export { name: "disputes.csv", scope: Scope::Org, columns: crate::disputes::COLUMNS, family: None, source: Source::Rows(disputes) },
    Export { name: "submissions.csv", scope: Scope::Council, columns: &SUBMISSIONS_COLUMNS, family: None, source: Source::Rows(submissions) },
    Export { name: "claims.csv", scope: Scope::Council, columns: &crate::claims::COUNCIL_COLUMNS, family: None, source: Source::Rows(claims) },
    Export { name: "disputes.csv", scope: Scope::Council, columns: &crate::disputes::COUNCIL_COLUMNS, family: None, source: Source::Rows(disputes) },
    Export { name: HOSPITAL, scope: Scope::Council, columns: &COUNCIL_HOSPITAL_COLUMNS, family: None, source: Source::Visits },
    Export { name: "visits-YYYY-MM-DD.csv", scope: Scope::Council, columns: &COUNCIL_VISITS_COLUMNS, family: Some(VISITS_FAMILY), source: Source::Visits },
];

const HOSPITAL: &str = "hospital-incentive.csv";
/// The council's `visits-YYYY-MM-DD.csv`, one a payment period.
const VISITS_FAMILY: (&str, &str) = ("visits-", ".csv");

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
    /// Changes marked so far, for telling whether anything changed since a moment.
    marks: std::sync::atomic::AtomicU64,
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

    /// How many changes were marked so far.
    pub fn marks(&self) -> u64 {
        self.marks.load(Ordering::SeqCst)
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
        self.marks.fetch_add(1, Ordering::SeqCst);
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
        let all = match self.store.orgs() {
            Ok(all) => all,
            Err(e) => {
                self.exports.put_back(dirty);
                return Err(e.into());
            }
        };
        let mut written = 0;
        let mut failed = Dirty::default();
        let mut count = |made: Vec<(&str, Result<usize>)>, org: Option<&Organisation>, failed: &mut Dirty| {
            for (export, done) in made {
                match (done, org) {
                    (Ok(n), _) => written += n,
                    (Err(e), Some(org)) => {
                        tracing::error!(org = org.name, export, error = %e, "could not rewrite an export");
                        failed.orgs.insert(org.slug.clone());
                    }
                    (Err(e), None) => {
                        tracing::error!(export, error = %e, "could not rewrite a council export");
                        failed.council = true;
                    }
                }
            }
        };
        for org in all.iter().filter(|o| dirty.all_orgs || dirty.orgs.contains(&o.slug)) {
            // visits-status.csv goes last, so a reader that sees it new sees every other file new too.
            let mut made = self.rows_exports(Scope::Org, Some(org));
            made.push(("hospital-incentive.csv, unmatched.csv, visits-status.csv", self.visit_pass(org)));
            count(made, Some(org), &mut failed);
        }
        if dirty.council {
            // Every part first (submissions.csv reads what each organisation's pass counted); the
            // visits of each period last, as before the parts.
            let made = match self.ensure_parts(&all) {
                Ok(()) => {
                    let mut made = self.rows_exports(Scope::Council, None);
                    made.push(("hospital-incentive.csv, visits-YYYY-MM-DD.csv", self.join_parts(&all)));
                    made
                }
                Err(e) => vec![("the organisations' parts", Err(e))],
            };
            count(made, None, &mut failed);
        }
        if !failed.is_empty() {
            self.exports.put_back(failed);
            return Err(GatewayError::Invalid("some exports could not be rewritten; see the log".into()));
        }
        Ok(written)
    }

    /// The exports of `scope` that read the store their own way, each written; by name.
    fn rows_exports(&self, scope: Scope, org: Option<&Organisation>) -> Vec<(&'static str, Result<usize>)> {
        EXPORTS
            .iter()
            .filter(|e| e.scope == scope)
            .filter_map(|e| match e.source {
                Source::Rows(rows) => Some((e.name, self.write_export_files(e, rows, org))),
                Source::Visits => None,
            })
            .collect()
    }

    /// Makes one export's files for `org` (or the council) and puts those whose content changed in
    /// place; returns how many were rewritten.
    fn write_export_files(&self, export: &Export, rows: RowsFn, org: Option<&Organisation>) -> Result<usize> {
        let dir = match org {
            Some(o) => self.data.exports(&o.slug),
            None => self.data.council_exports(),
        };
        let mut staged = self.staged(Some(export.columns))?;
        if export.family.is_none() {
            // A single file exists even with no rows: its header says what it would hold.
            staged.open(export.name).map_err(io_err(format!("staging {}", export.name)))?;
        }
        rows(self, org, &mut |name, cells| staged.row(name, cells))?;
        self.put_in_place(staged, &dir, export.family)
    }

    /// Files to be written in `staging/`, with `columns` as their header (none for a part).
    fn staged(&self, columns: Option<&'static [&'static str]>) -> Result<Staged> {
        fs::create_dir_all(self.data.staging()).map_err(io_err("creating the staging folder".into()))?;
        Ok(Staged { staging: self.data.staging(), columns, files: BTreeMap::new() })
    }

    fn put_in_place(&self, staged: Staged, dir: &Path, family: Option<(&str, &str)>) -> Result<usize> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let names: Vec<String> = staged.files.keys().cloned().collect();
        staged.put_in_place(dir, family).map_err(io_err(format!("writing {} in {}", names.join(", "), dir.display())))
    }

    /// One pass over the organisation's visits, each decoded once, makes its `visits-status.csv`,
    /// `unmatched.csv` and `hospital-incentive.csv`, and its part of the council's
    /// `visits-YYYY-MM-DD.csv`, `hospital-incentive.csv` and `submissions.csv` (in
    /// `export-parts/<slug>/`). Before 2026-12-02 each of those files read every visit again: six
    /// passes, 10-11 s for a million stored visits, during which `serve`'s worker took no file.
    fn visit_pass(&self, org: &Organisation) -> Result<usize> {
        let lock = self.store.locked_until()?;
        let window = report_window(self, org)?;
        let cplis = self.store.cplis_for_org(org)?;
        let by_id: HashMap<&str, &Cpli> = cplis.iter().map(|c| (c.cpli_id.as_str(), c)).collect();
        let packages = Packages::of(&cplis);
        let periods = &self.config.periods;
        let (mut status, mut stays_file, mut part) = (self.staged(Some(&VISIT_STATUS_COLUMNS))?, self.staged(Some(&hospital::COLUMNS))?, self.staged(None)?);
        let mut summary = PartSummary { fingerprint: self.parts_fingerprint(), ..Default::default() };
        let mut stays = window.map(|(_, to)| hospital::HospitalVisits::new(&cplis, to));
        let name = excel_safe(&org.name).into_owned();
        let made = (|| -> Result<()> {
            for name in ["visits-status.csv", "unmatched.csv"] {
                status.open(name).map_err(sink_err)?;
            }
            stays_file.open(HOSPITAL).map_err(sink_err)?;
            part.open(HOSPITAL).map_err(sink_err)?;
            for sv in self.store.current_visits(&org.slug) {
                let Some(v) = sv?.visit else { continue };
                let unmatched = matches!(v.matched, MatchStatus::Unmatched { .. });
                let shown = !lock.is_some_and(|l| l.locks(v.planned_date));
                summary.latest_visit = summary.latest_visit.max(Some(v.planned_date));
                summary.unmatched += u64::from(unmatched);
                let start = visit_cells(&v);
                if shown || unmatched {
                    let tail = status_tail(&v);
                    if shown {
                        status.row("visits-status.csv", start.iter().chain(&tail)).map_err(sink_err)?;
                    }
                    if unmatched {
                        status.row("unmatched.csv", start.iter().chain(&tail)).map_err(sink_err)?;
                    }
                }
                let period = Period::containing(v.planned_date, periods.first_start, periods.length_days);
                let tail = council_tail(self, &v, &by_id, &packages)?;
                part.row(&format!("visits-{}.csv", period.start), std::iter::once(&name).chain(&start).chain(&tail)).map_err(sink_err)?;
                if let (Some(stays), Some(fact)) = (stays.as_mut(), crate::store::fact_of_visit(&v)) {
                    stays.add(&fact);
                }
            }
            // Stays that touch the report's weeks: those that began up to a year before them are
            // looked at, and kept where they run into the weeks (a stay's cover is 7 or 14 days).
            if let (Some(stays), Some((from, to))) = (stays, window) {
                let rows = stays.claims(&self.config.hospital, from - Duration::days(365), to).map_err(|e| GatewayError::Invalid(e.to_string()))?;
                for row in rows.into_iter().filter(|r| r.to >= from) {
                    let cells = row.cells().map(|c| excel_safe_cell(&c).into_owned());
                    stays_file.row(HOSPITAL, &cells).map_err(sink_err)?;
                    part.row(HOSPITAL, std::iter::once(&name).chain(&cells)).map_err(sink_err)?;
                }
            }
            Ok(())
        })();
        made?;
        let (exports, parts) = (self.data.exports(&org.slug), self.data.export_parts(&org.slug));
        let mut written = self.put_in_place(stays_file, &exports, None)?;
        written += self.put_in_place(status, &exports, None)?;
        // The summary goes last and only once the rest is in place: a part without it is made again.
        let summary_path = parts.join(PART_SUMMARY);
        match fs::remove_file(&summary_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(format!("removing {}", summary_path.display()))(e)),
            _ => {}
        }
        self.put_in_place(part, &parts, Some(VISITS_FAMILY))?;
        let json = serde_json::to_vec(&summary).map_err(|e| GatewayError::Invalid(e.to_string()))?;
        self.data.write_atomically(&summary_path, &json).map_err(io_err(format!("writing {}", summary_path.display())))?;
        Ok(written)
    }

    /// What the organisation's last pass counted, if its part is there and was made with this
    /// configuration (the payment periods, visit types and hospital rules its rows depend on).
    fn part_summary(&self, org: &Organisation) -> Option<PartSummary> {
        let bytes = fs::read(self.data.export_parts(&org.slug).join(PART_SUMMARY)).ok()?;
        serde_json::from_slice::<PartSummary>(&bytes).ok().filter(|s| s.fingerprint == self.parts_fingerprint())
    }

    fn parts_fingerprint(&self) -> u64 {
        let c = &self.config;
        crate::ingest::source::stable_hash(format!("{:?}", (&c.periods, &c.rules.visit_types, &c.hospital)))
    }

    /// Makes each organisation's part that is missing or was made under another configuration.
    fn ensure_parts(&self, orgs: &[Organisation]) -> Result<()> {
        for org in orgs.iter().filter(|o| self.part_summary(o).is_none()) {
            self.visit_pass(org)?;
        }
        Ok(())
    }

    /// The council's `hospital-incentive.csv` and `visits-YYYY-MM-DD.csv`: each organisation's part
    /// joined, in the order of `orgs`.
    fn join_parts(&self, orgs: &[Organisation]) -> Result<usize> {
        let parts: Vec<PathBuf> = orgs.iter().map(|o| self.data.export_parts(&o.slug)).collect();
        let mut visit_files = BTreeSet::new();
        for dir in &parts {
            for e in fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(VISITS_FAMILY.0) && name.ends_with(VISITS_FAMILY.1) {
                    visit_files.insert(name);
                }
            }
        }
        let dir = self.data.council_exports();
        let mut written = 0;
        for (names, columns, family) in [
            (vec![HOSPITAL.to_string()], &COUNCIL_HOSPITAL_COLUMNS[..], None),
            (visit_files.into_iter().collect::<Vec<_>>(), &COUNCIL_VISITS_COLUMNS[..], Some(VISITS_FAMILY)),
        ] {
            let mut staged = self.staged(Some(columns))?;
            for name in &names {
                let joined = (|| {
                    for part in &parts {
                        staged.append(name, &part.join(name))?;
                    }
                    Ok(())
                })();
                joined.map_err(io_err(format!("joining the organisations' parts of {name}")))?;
            }
            written += self.put_in_place(staged, &dir, family)?;
        }
        Ok(written)
    }
}

/// What an organisation's pass over its visits counted, for the council's `submissions.csv`; and the
/// configuration it was made under.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct PartSummary {
    fingerprint: u64,
    unmatched: u64,
    latest_visit: Option<NaiveDate>,
}

const PART_SUMMARY: &str = "summary.json";

type RowsFn = fn(&Gateway, Option<&Organisation>, &mut RowSink<'_>) -> Result<()>;

fn io_err(context: String) -> impl FnOnce(io::Error) -> GatewayError {
    move |source| GatewayError::Io { context, source }
}

/// Files being written in `staging/`, by name; those not put in place (a failure on the way) are
/// removed when it is dropped.
struct Staged {
    staging: PathBuf,
    /// The header of each file; `None` for an organisation's part, which is joined under the council's.
    columns: Option<&'static [&'static str]>,
    files: BTreeMap<String, (PathBuf, csv::Writer<BufWriter<fs::File>>)>,
}

impl Staged {
    fn open(&mut self, name: &str) -> io::Result<&mut csv::Writer<BufWriter<fs::File>>> {
        if !self.files.contains_key(name) {
            let tmp = self.staging.join(format!("{}.tmp", uuid::Uuid::new_v4()));
            let mut w = csv::Writer::from_writer(BufWriter::with_capacity(256 * 1024, fs::File::create(&tmp)?));
            if let Some(columns) = self.columns {
                w.write_record(columns)?;
            }
            self.files.insert(name.to_string(), (tmp, w));
        }
        Ok(&mut self.files.get_mut(name).expect("just inserted").1)
    }

    fn row<C: AsRef<[u8]>>(&mut self, name: &str, cells: impl IntoIterator<Item = C>) -> io::Result<()> {
        self.open(name)?.write_record(cells).map_err(io::Error::other)
    }

    /// Adds the rows of a part (CSV rows without a header) to `name`; a missing part adds nothing.
    fn append(&mut self, name: &str, part: &Path) -> io::Result<()> {
        self.open(name)?;
        let mut from = match fs::File::open(part) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let (tmp, w) = self.files.remove(name).expect("just opened");
        let mut file = w.into_inner().map_err(|e| io::Error::other(e.to_string()))?;
        let copied = io::copy(&mut from, &mut file);
        self.files.insert(name.to_string(), (tmp, csv::Writer::from_writer(file)));
        copied.map(|_| ())
    }

    /// Renames each staged file over its export when its content differs, leaving the export as it
    /// is otherwise; removes the family's files that were not made this time. No fsync: an export is
    /// a view of the store, and every start rewrites whatever differs (a file cut short by a crash).
    fn put_in_place(mut self, dir: &Path, family: Option<(&str, &str)>) -> io::Result<usize> {
        let mut written = 0;
        let names: BTreeSet<String> = self.files.keys().cloned().collect();
        // An organisation's part is no export: the log says so, at debug.
        let part = self.columns.is_none();
        let mut files = std::mem::take(&mut self.files).into_iter();
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
                    if part {
                        tracing::debug!(part = name, folder = %dir.display(), "part of the council's exports rewritten");
                    } else {
                        tracing::info!(export = name, folder = %dir.display(), "export rewritten");
                    }
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
                    if !part {
                        tracing::info!(export = name, folder = %dir.display(), "export removed: nothing left in it");
                    }
                }
            }
        }
        Ok(written)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in std::mem::take(&mut self.files).into_values() {
            let _ = fs::remove_file(tmp);
        }
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
        out("commissioned-vs-actuals.csv", &row.cells().map(|c| excel_safe_cell(&c).into_owned())).map_err(sink_err)?;
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

/// What `submissions.csv` says of one organisation's files.
#[derive(Default)]
struct Submissions {
    this_period: u64,
    total: u64,
    last: Option<crate::outcome::ImportResult>,
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
        // Counted by the organisation's pass over its visits, which the refresh made first.
        let visits = gw.part_summary(org).ok_or_else(|| GatewayError::Invalid(format!("{}'s part of the council's exports is missing", org.name)))?;
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
            visits.unmatched.to_string(),
            visits.latest_visit.map(|d| d.to_string()).unwrap_or_default(),
        ];
        out("submissions.csv", &cells).map_err(sink_err)?;
    }
    Ok(())
}

/// Minutes the council pays for a visit matched to `cpli`, as the commissioned-vs-actuals report
/// counts them: delivered time of the paid delivered-based types (DHS, DHF, E), planned time of the
/// other paid types (C, U), nothing for the unpaid ones (C24, H) or a Spot package (invoiced).
pub fn paid_minutes(gw: &Gateway, v: &Visit, cpli: &Cpli) -> i64 {
    if cpli.is_spot() {
        return 0;
    }
    match gw.config.rules.visit_types.get(&v.visit_type).filter(|t| t.provider_paid) {
        None => 0,
        Some(t) if t.delivered_based => v.delivered.as_ref().map_or(0, |d| crate::domain::Duration::between(d.entry, d.exit).minutes),
        Some(_) => v.planned_duration().minutes,
    }
}

/// The CPLIs of each package holding more than one (a variation, a temporary extra package), by
/// CPLIID.
struct Packages<'c>(HashMap<&'c str, Vec<&'c Cpli>>);

impl<'c> Packages<'c> {
    fn of(cplis: &'c [Cpli]) -> Packages<'c> {
        let mut groups: HashMap<_, Vec<&Cpli>> = HashMap::new();
        for c in cplis {
            groups.entry(c.package_key()).or_default().push(c);
        }
        let shared = groups.into_values().filter(|g| g.len() > 1);
        Packages(shared.flat_map(|g| g.iter().map(|c| (c.cpli_id.as_str(), g.clone())).collect::<Vec<_>>()).collect())
    }

    /// The rate a visit of `cpli` on `date` is paid at: the package's, cost over quantity, in a
    /// week a temporary extra package shares (`cpli::shared_week`, as the report pays it); else
    /// the CPLI's own unit cost. `(cost, per quantity)`.
    fn rate(&self, cpli: &Cpli, date: NaiveDate) -> (Decimal, Decimal) {
        let shared = self.0.get(cpli.cpli_id.as_str()).and_then(|p| crate::domain::cpli::shared_week(cpli, p.iter().copied(), week_start(date)));
        shared.map_or((cpli.unit_cost, Decimal::ONE), |(qty, cost)| (cost, qty))
    }
}

/// The council's row of a visit after the organisation and [`visit_cells`]: service level and name,
/// then the match and what the council pays for it.
fn council_tail(gw: &Gateway, v: &Visit, cplis: &HashMap<&str, &Cpli>, packages: &Packages<'_>) -> Result<Vec<String>> {
    let mut cells = vec![text(v.service_level.as_deref()), text(v.service_name.as_deref())];
    let cpli = v.cpli_id().and_then(|id| cplis.get(id));
    match (&v.matched, cpli) {
        (MatchStatus::Matched { cpli_id }, Some(c)) => {
            let minutes = paid_minutes(gw, v, c);
            let (cost, per) = packages.rate(c, v.planned_date);
            let overflow = || GatewayError::Invalid(reports::Overflow::of(c).to_string());
            let rate = cost.checked_div(per).ok_or_else(overflow)?;
            let cost = visit_cost(minutes, cost, per).ok_or_else(overflow)?;
            cells.extend(["Matched".into(), excel_safe(cpli_id).into_owned(), rate.normalize().to_string()]);
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

/// VisitRef, the dates and times, type, SSRef: the start of a visit's row in every export.
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
#[cfg(test)]
fn status_cells(v: &Visit) -> Vec<String> {
    let mut cells = visit_cells(v);
    cells.extend(status_tail(v));
    cells
}

/// The row of a visit in `visits-status.csv` and `unmatched.csv` after [`visit_cells`].
fn status_tail(v: &Visit) -> Vec<String> {
    let guid = |g: &Option<crate::domain::Guid>| g.as_ref().map(|g| g.to_string()).unwrap_or_default();
    let mut cells = vec![
        guid(&v.client_ref),
        text(v.nhs_number.as_deref()),
        guid(&v.service_level_ref),
        text(v.service_level.as_deref()),
        guid(&v.service_ref),
        text(v.service_name.as_deref()),
    ];
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
