//! The council's clock while `gateway serve` runs (issue 10): payment periods locked a fixed number of
//! days after they end (`[schedule] auto_lock`), and the figures of the council's daily summary email.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Periods;
use crate::domain::{LockRecord, LockedBy, Period};
use crate::outcome::{ImportResult, Severity, Status};
use crate::pipeline::Gateway;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A `[schedule]` setting that cannot work; the gateway does not start with it.
    #[error("the schedule configuration is not usable: {0}")]
    Config(String),
    #[error("cannot start the lock schedule's thread: {0}")]
    Thread(std::io::Error),
}

/// When locks fall due: each period `after_days` whole days after its last day, at `at`.
#[derive(Debug, Clone, Copy)]
pub struct LockSchedule {
    pub first_start: NaiveDate,
    pub length_days: i64,
    pub after_days: u32,
    pub at: NaiveTime,
}

impl LockSchedule {
    pub fn new(periods: &Periods, after_days: u32, at: NaiveTime) -> LockSchedule {
        LockSchedule { first_start: periods.first_start, length_days: periods.length_days, after_days, at }
    }

    /// The last day of the latest period whose lock is due at `now` (local time). A period ending
    /// on day E falls due at `at` on day E + after_days + 1.
    pub fn due_until(&self, now: NaiveDateTime) -> NaiveDate {
        let today = now.date();
        let due_day = if now.time() >= self.at { today } else { today - chrono::Duration::days(1) };
        let latest_end = due_day - chrono::Duration::days(i64::from(self.after_days) + 1);
        // The period holding the day after `latest_end` is not due; the one before it is.
        let next = Period::containing(latest_end + chrono::Duration::days(1), self.first_start, self.length_days);
        next.start - chrono::Duration::days(1)
    }

    /// When the next lock after `now` falls due (local time).
    pub fn next_due(&self, now: NaiveDateTime) -> NaiveDateTime {
        let next_end = self.due_until(now) + chrono::Duration::days(self.length_days);
        (next_end + chrono::Duration::days(i64::from(self.after_days) + 1)).and_time(self.at)
    }
}

/// The running lock schedule; stopped (and its thread joined) when dropped, so `serve` starts it
/// with one call and it ends with `serve`.
pub struct ScheduleHandle {
    running: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for ScheduleHandle {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            drop(stop);
            if thread.join().is_err() {
                tracing::error!("the lock schedule's thread panicked");
            }
        }
    }
}

/// The longest the schedule sleeps before it looks at the clock again: a wall clock set forward, or
/// a machine suspended, is noticed within this, not only at the next due time.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// After a failure to lock (a full disk), the next try.
const RETRY: Duration = Duration::from_secs(60);

/// Starts the lock schedule when `schedule.auto_lock` is on: at once it locks whatever fell due while
/// the gateway was down, then sleeps until the next lock is due. A thread of its own, as the mail
/// outbox is: locking is store work, kept off the async runtime.
pub fn start(gw: Arc<Gateway>) -> Result<ScheduleHandle, ScheduleError> {
    let config = &gw.config.schedule;
    // Checked even when off, so a typo is found before the day it is turned on.
    let at = config.lock_time().map_err(ScheduleError::Config)?;
    if !config.auto_lock {
        return Ok(ScheduleHandle { running: None });
    }
    if gw.config.periods.length_days < 1 {
        return Err(ScheduleError::Config(format!("periods.length_days is {}; payment periods need at least one day", gw.config.periods.length_days)));
    }
    let schedule = LockSchedule::new(&gw.config.periods, config.lock_after_days, at);
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("lock-schedule".into())
        .spawn(move || run(&gw, schedule, &stopped))
        .map_err(ScheduleError::Thread)?;
    Ok(ScheduleHandle { running: Some((stop, thread)) })
}

fn run(gw: &Gateway, schedule: LockSchedule, stopped: &mpsc::Receiver<()>) {
    tracing::info!(after_days = schedule.after_days, at = %schedule.at, "lock schedule started");
    loop {
        let now = Local::now().naive_local();
        let wait = match lock_due(gw, schedule.due_until(now)) {
            Ok(()) => until_local(schedule.next_due(now)).min(MAX_SLEEP),
            Err(e) => {
                tracing::error!(error = %e, "could not make the lock that is due; trying again in a minute");
                RETRY
            }
        };
        if !matches!(stopped.recv_timeout(wait), Err(mpsc::RecvTimeoutError::Timeout)) {
            return;
        }
    }
}

/// Locks up to `until` unless the store is locked that far already. It holds the store's turn, so the
/// lock falls between two files, never inside an import.
fn lock_due(gw: &Gateway, until: NaiveDate) -> Result<(), crate::pipeline::GatewayError> {
    if gw.store.locked_until()?.is_some_and(|l| l.locks(until)) {
        return Ok(());
    }
    let _turn = gw.turn();
    if !gw.ensure_store() {
        return Err(StoreError::Sled(sled::Error::Io(std::io::Error::other("the store is not usable yet"))).into());
    }
    gw.lock_until(until, LockedBy::Schedule)?;
    Ok(())
}

/// How long from now until `at` (local time); zero when it has passed.
fn until_local(at: NaiveDateTime) -> Duration {
    // A time skipped by a clock change counts from the hour after, as the digest's does.
    let at = Local.from_local_datetime(&at).earliest().unwrap_or_else(|| Local.from_utc_datetime(&at));
    (at.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

// The council's daily summary.

/// An organisation that has sent nothing for this long is listed as silent.
pub const SILENT_DAYS: i64 = 7;

/// What the council's summary says, computed when it is queued and kept with it in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouncilSummary {
    pub day: NaiveDate,
    /// The files processed at or after `from` and before `to` are this summary's.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Every organisation, by name.
    pub organisations: Vec<OrgSummary>,
    pub failed: Vec<FailedFile>,
    pub locks: Vec<LockRecord>,
    /// Disputes past their respond-by day with no answer, as the summary's day saw them (issue 12).
    #[serde(default)]
    pub overdue: Vec<OverdueDispute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueDispute {
    pub organisation: String,
    pub id: String,
    pub visit_ref: String,
    pub reason: String,
    pub respond_by: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSummary {
    pub name: String,
    /// Files processed in the summary's time.
    pub files: u64,
    pub failed: u64,
    pub rows_read: u64,
    pub rows_rejected: u64,
    /// Its stored visits that are unmatched now.
    pub unmatched_visits: u64,
    /// When its latest file (of any time) was received.
    pub last_file_at: Option<DateTime<Utc>>,
    /// Nothing received in the [`SILENT_DAYS`] before the summary's close.
    pub silent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFile {
    pub organisation: String,
    pub file: String,
    pub received_at: DateTime<Utc>,
    /// The first error, in words.
    pub reason: String,
}

impl CouncilSummary {
    pub fn files(&self) -> u64 {
        self.organisations.iter().map(|o| o.files).sum()
    }

    pub fn silent(&self) -> impl Iterator<Item = &OrgSummary> {
        self.organisations.iter().filter(|o| o.silent)
    }
}

/// How the summary names the council's own files.
pub const COUNCIL: &str = "The council";

fn failed_file(organisation: &str, r: &ImportResult, received_at: DateTime<Utc>) -> FailedFile {
    let reason = r.issues.iter().find(|i| i.severity == Severity::Error).map(|i| i.message.clone()).unwrap_or_default();
    FailedFile { organisation: organisation.to_string(), file: r.file.clone(), received_at, reason }
}

fn parse_time(rfc3339: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.with_timezone(&Utc))
}

/// The summary's figures: `organisations` are every known organisation's name with its unmatched
/// visits now; `imports` every finished import (any order); `locks` those made in the time. A file
/// belongs to the summary whose time holds its processing (so each file is in exactly one summary);
/// an organisation is silent when no file of its was received in the [`SILENT_DAYS`] before `to`.
pub fn summarise(
    day: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    organisations: &[(String, u64)],
    imports: impl IntoIterator<Item = ImportResult>,
    locks: Vec<LockRecord>,
) -> CouncilSummary {
    let mut orgs: BTreeMap<String, OrgSummary> = organisations
        .iter()
        .map(|(name, unmatched)| {
            let o = OrgSummary { name: name.clone(), files: 0, failed: 0, rows_read: 0, rows_rejected: 0, unmatched_visits: *unmatched, last_file_at: None, silent: true };
            (name.clone(), o)
        })
        .collect();
    let mut failed = Vec::new();
    for r in imports {
        let received = parse_time(&r.received_at);
        let processed = parse_time(&r.processed_at).or(received);
        let in_time = processed.is_some_and(|t| t >= from && t < to);
        // The council's own files (a CPLI extract) name no organisation: not a provider's figures,
        // but a failed one is the council's to fix, so it is listed.
        let Some(name) = r.organisation.clone() else {
            if in_time && r.status == Status::Failed {
                failed.push(failed_file(COUNCIL, &r, received.or(processed).unwrap_or(to)));
            }
            continue;
        };
        let o = orgs.entry(name.clone()).or_insert_with(|| OrgSummary {
            name: name.clone(),
            files: 0,
            failed: 0,
            rows_read: 0,
            rows_rejected: 0,
            unmatched_visits: 0,
            last_file_at: None,
            silent: true,
        });
        if let Some(t) = received.filter(|t| *t < to) {
            o.last_file_at = o.last_file_at.max(Some(t));
        }
        if !in_time {
            continue;
        }
        o.files += 1;
        o.rows_read += r.counts.read;
        o.rows_rejected += r.counts.rejected;
        if r.status == Status::Failed {
            o.failed += 1;
            failed.push(failed_file(&name, &r, received.or(processed).unwrap_or(to)));
        }
    }
    let silent_since = to - chrono::Duration::days(SILENT_DAYS);
    for o in orgs.values_mut() {
        o.silent = o.last_file_at.is_none_or(|t| t < silent_since);
    }
    failed.sort_by(|a, b| (a.received_at, &a.organisation).cmp(&(b.received_at, &b.organisation)));
    CouncilSummary { day, from, to, organisations: orgs.into_values().collect(), failed, locks, overdue: Vec::new() }
}

/// Reads the summary's figures from the store: every import, every organisation's unmatched visits
/// now, the locks made in the time, the disputes overdue now.
pub fn gather(gw: &Gateway, day: NaiveDate, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<CouncilSummary, StoreError> {
    let mut organisations = Vec::new();
    for org in gw.store.orgs()? {
        let mut unmatched = 0;
        for glanced in gw.store.visit_glances(&org.slug) {
            unmatched += u64::from(glanced?.1);
        }
        organisations.push((org.name, unmatched));
    }
    let imports = gw.store.imports().collect::<Result<Vec<_>, _>>()?;
    let locks = gw.store.locks_between(from, to)?;
    let today = gw.config.rules.current_day();
    let overdue = gw
        .store
        .disputes(None)?
        .into_iter()
        .filter(|d| d.is_overdue(today))
        .map(|d| OverdueDispute { organisation: d.organisation, id: d.id.to_string(), visit_ref: d.visit_ref, reason: d.dispute_type.name().into(), respond_by: d.respond_by })
        .collect();
    Ok(CouncilSummary { overdue, ..summarise(day, from, to, &organisations, imports, locks) })
}

/// Queues `day`'s council summary (closing at `due`) for the council's contacts, once (see
/// [`crate::store::Store::queue_council_summary`]). It holds the store's turn while it reads the
/// figures, so a file being processed at the close is wholly in this summary or wholly in the next.
pub fn queue_council_summary(gw: &Gateway, due: DateTime<Utc>, day: NaiveDate) -> Result<usize, StoreError> {
    if gw.store.council_summary_mark()?.is_some_and(|m| m.day >= day) {
        return Ok(0);
    }
    let _turn = gw.turn();
    gw.store.queue_council_summary(due, day, |from| gather(gw, day, from, due))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Code, Counts, Issue};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The default periods (four-weekly from 03/10/2022), locked 14 days after they end, at 06:00.
    fn schedule(after_days: u32) -> LockSchedule {
        let periods = Periods::default();
        LockSchedule::new(&periods, after_days, NaiveTime::from_hms_opt(6, 0, 0).unwrap())
    }

    #[test]
    fn a_period_is_locked_the_given_number_of_whole_days_after_its_last_day_at_the_lock_time() {
        // Period 1 is 03/10/2022 to 30/10/2022: 14 days after it is 13/11, due on 14/11 at 06:00.
        let s = schedule(14);
        assert_eq!(s.due_until(at("2022-11-14 05:59")), d("2022-10-02"), "not yet: period 0 is the latest due");
        assert_eq!(s.due_until(at("2022-11-14 06:00")), d("2022-10-30"));
        assert_eq!(s.due_until(at("2022-12-11 23:59")), d("2022-10-30"), "period 2 ends 27/11, due 12/12");
        assert_eq!(s.due_until(at("2022-12-12 06:00")), d("2022-11-27"));
    }

    #[test]
    fn with_no_days_after_a_period_is_locked_on_the_day_after_its_last_day() {
        let s = schedule(0);
        assert_eq!(s.due_until(at("2022-10-31 05:00")), d("2022-10-02"));
        assert_eq!(s.due_until(at("2022-10-31 06:00")), d("2022-10-30"));
    }

    #[test]
    fn the_next_lock_is_the_next_periods_due_time() {
        let s = schedule(14);
        assert_eq!(s.next_due(at("2022-11-14 05:59")), at("2022-11-14 06:00"));
        assert_eq!(s.next_due(at("2022-11-14 06:00")), at("2022-12-12 06:00"));
        assert_eq!(s.next_due(at("2022-12-01 12:00")), at("2022-12-12 06:00"));
    }

    #[test]
    fn locks_fall_due_across_month_and_year_ends() {
        // Period 4 is 26/12/2022 to 22/01/2023 (it spans the year end); due 14 days after, on 06/02/2023.
        let s = schedule(14);
        assert_eq!(s.due_until(at("2023-01-08 07:00")), d("2022-11-27"), "period 3 (28/11 to 25/12) falls due on 09/01");
        assert_eq!(s.due_until(at("2023-01-09 06:00")), d("2022-12-25"));
        assert_eq!(s.due_until(at("2023-02-06 05:59")), d("2022-12-25"));
        assert_eq!(s.due_until(at("2023-02-06 06:00")), d("2023-01-22"));
        assert_eq!(s.next_due(at("2023-01-31 12:00")), at("2023-02-06 06:00"));
        // A 30-day period ending on 31/01 falls due on 01/03 (28 days in February 2023) with 28 days after.
        let month = LockSchedule { first_start: d("2023-01-02"), length_days: 30, after_days: 28, at: NaiveTime::MIN };
        assert_eq!(month.due_until(at("2023-02-28 23:59")), d("2023-01-01"));
        assert_eq!(month.due_until(at("2023-03-01 00:00")), d("2023-01-31"));
    }

    #[test]
    fn periods_before_the_configured_start_fall_due_too() {
        // A gateway started long after first_start, or a first_start in the future, still locks by
        // the same four-weekly steps counted backwards.
        let s = schedule(0);
        assert_eq!(s.due_until(at("2022-09-10 06:00")), d("2022-09-04"));
    }

    fn import(org: &str, file: &str, received: &str, status: Status, read: u64, rejected: u64) -> ImportResult {
        let mut r = ImportResult::new(file, &format!("id-{file}"), Some(org), received.into());
        r.processed_at = received.into();
        r.status = status;
        r.counts = Counts { read, new: read - rejected, updated: 0, rejected, data_quality_issues: 0 };
        if status == Status::Failed {
            r.issues = vec![Issue::file(Code::MissingColumn, Some("SSRef"), "the heading SSRef is missing")];
        }
        r
    }

    fn day_summary(imports: Vec<ImportResult>) -> CouncilSummary {
        let orgs = [("Pearl Carers Ltd".to_string(), 2), ("Quiet Care Ltd".to_string(), 0)];
        let lock = LockRecord { at: utc("2026-11-27T00:00:00Z"), until: d("2026-11-08"), by: LockedBy::Schedule };
        summarise(d("2026-11-27"), utc("2026-11-26T07:00:00Z"), utc("2026-11-27T07:00:00Z"), &orgs, imports, vec![lock])
    }

    #[test]
    fn the_summary_counts_each_organisations_files_of_its_day_only() {
        let s = day_summary(vec![
            import("Pearl Carers Ltd", "early.csv", "2026-11-26T06:59:59Z", Status::Processed, 9, 9),
            import("Pearl Carers Ltd", "a.csv", "2026-11-26T07:00:00Z", Status::Processed, 21, 1),
            import("Pearl Carers Ltd", "b.csv", "2026-11-27T06:59:59Z", Status::Failed, 0, 0),
            import("Pearl Carers Ltd", "late.csv", "2026-11-27T07:00:00Z", Status::Processed, 5, 0),
        ]);
        let pearl = &s.organisations[0];
        assert_eq!(pearl.name, "Pearl Carers Ltd");
        assert_eq!((pearl.files, pearl.failed, pearl.rows_read, pearl.rows_rejected, pearl.unmatched_visits), (2, 1, 21, 1, 2));
        assert_eq!(s.files(), 2);
        assert_eq!(pearl.last_file_at, Some(utc("2026-11-27T06:59:59Z")), "a file after the close is not in this summary at all");
    }

    #[test]
    fn a_failed_file_is_listed_with_its_first_error() {
        let s = day_summary(vec![import("Pearl Carers Ltd", "b.csv", "2026-11-27T01:00:00Z", Status::Failed, 0, 0)]);
        assert_eq!(
            s.failed,
            [FailedFile {
                organisation: "Pearl Carers Ltd".into(),
                file: "b.csv".into(),
                received_at: utc("2026-11-27T01:00:00Z"),
                reason: "the heading SSRef is missing".into()
            }]
        );
    }

    #[test]
    fn an_organisation_with_no_file_in_the_last_seven_days_is_silent() {
        let s = day_summary(vec![
            import("Pearl Carers Ltd", "old.csv", "2026-11-20T07:00:00Z", Status::Processed, 1, 0),
            import("Quiet Care Ltd", "older.csv", "2026-11-20T06:59:59Z", Status::Processed, 1, 0),
        ]);
        let silent: Vec<&str> = s.silent().map(|o| o.name.as_str()).collect();
        assert_eq!(silent, ["Quiet Care Ltd"], "seven days to the second before the close is not silent");
        let none = day_summary(vec![]);
        assert_eq!(none.silent().count(), 2, "an organisation that never sent a file is silent");
        assert_eq!(none.organisations[1].last_file_at, None);
    }

    #[test]
    fn the_councils_own_files_are_no_organisations_figures_but_a_failed_one_is_listed() {
        let mut loaded = import("x", "cplis.csv", "2026-11-27T01:00:00Z", Status::Processed, 9, 0);
        loaded.organisation = None;
        let mut broken = import("x", "cplis-bad.csv", "2026-11-27T02:00:00Z", Status::Failed, 0, 0);
        broken.organisation = None;
        let s = day_summary(vec![loaded, broken]);
        assert_eq!(s.files(), 0);
        assert_eq!(s.organisations.len(), 2);
        assert_eq!(s.failed.iter().map(|f| (f.organisation.as_str(), f.file.as_str())).collect::<Vec<_>>(), [(COUNCIL, "cplis-bad.csv")]);
        assert_eq!(s.locks.len(), 1, "the locks it is given are kept");
    }
}
