//! Payment periods: 4-weekly from a configured start; the council locks every date up to a day.

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::uk_date;

/// One payment period, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub number: i64,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    /// The period holding `date`, counting from `first` in steps of `days` (periods before `first` get
    /// numbers below 1).
    pub fn containing(date: NaiveDate, first: NaiveDate, days: i64) -> Period {
        let offset = (date - first).num_days().div_euclid(days);
        let start = first + Duration::days(offset * days);
        Period { number: offset + 1, start, end: start + Duration::days(days - 1) }
    }

    pub fn describe(&self) -> String {
        // Periods before the configured first one have no number a person would know.
        match self.number {
            n if n >= 1 => format!("payment period {n} ({} to {})", uk_date(self.start), uk_date(self.end)),
            _ => format!("the payment period {} to {}", uk_date(self.start), uk_date(self.end)),
        }
    }
}

/// Everything on or before this date is locked (`gateway period lock --until DATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedUntil(pub NaiveDate);

impl LockedUntil {
    pub fn locks(&self, date: NaiveDate) -> bool {
        date <= self.0
    }
}

/// Who moved the lock (issue 10): the council's schedule (`schedule.auto_lock`) or a person
/// (`gateway period lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockedBy {
    Schedule,
    Hand,
}

impl LockedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            LockedBy::Schedule => "by schedule",
            LockedBy::Hand => "by hand",
        }
    }
}

/// A lock that moved the locked date forward, as the store records it for the council's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub at: chrono::DateTime<chrono::Utc>,
    pub until: NaiveDate,
    pub by: LockedBy,
}

/// The Monday that starts the week holding `date`.
pub fn week_start(date: NaiveDate) -> NaiveDate {
    date - Duration::days(date.weekday().num_days_from_monday() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn periods_are_four_weekly_from_the_configured_start() {
        let first = d("2022-10-03");
        let p = Period::containing(d("2022-10-30"), first, 28);
        assert_eq!((p.number, p.start, p.end), (1, first, d("2022-10-30")));
        let p = Period::containing(d("2022-10-31"), first, 28);
        assert_eq!((p.number, p.start), (2, d("2022-10-31")));
        let p = Period::containing(d("2022-10-02"), first, 28);
        assert_eq!((p.number, p.end), (0, d("2022-10-02")));
    }

    #[test]
    fn a_period_before_the_first_is_described_by_its_dates_not_a_number_below_one() {
        let first = d("2022-10-03");
        assert_eq!(Period::containing(d("2022-10-10"), first, 28).describe(), "payment period 1 (03/10/2022 to 30/10/2022)");
        assert_eq!(Period::containing(d("2022-08-01"), first, 28).describe(), "the payment period 11/07/2022 to 07/08/2022");
    }

    #[test]
    fn a_locked_period_includes_its_last_day() {
        let lock = LockedUntil(d("2022-10-30"));
        assert!(lock.locks(d("2022-10-30")));
        assert!(!lock.locks(d("2022-10-31")));
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(week_start(d("2022-08-07")), d("2022-08-01"));
        assert_eq!(week_start(d("2022-08-01")), d("2022-08-01"));
    }
}
