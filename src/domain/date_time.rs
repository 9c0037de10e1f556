//! Dates and times as the guide's "Visits File Data Format" allows them to be written.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

/// The date forms accepted in every date column, as a message lists them (issue 11 added
/// `D MMM YY`, ISO `YYYY-MM-DD` and Excel's date-time cells at midnight).
pub const DATE_FORMS: &str = "DD/MM/YYYY (e.g. 03/10/2022), DD-MM-YY, DD-MMM-YYYY (e.g. 03-Oct-2022), DD MMM YY (e.g. 3 Oct 22) or YYYY-MM-DD (e.g. 2022-10-03), optionally followed by the time 00:00 or 00:00:00 as Excel writes a date";

/// Why a date cell was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateProblem {
    /// Not one of `DATE_FORMS`.
    NotADate,
    /// In one of the forms, but no such day: 31/02/2022, month 13, day 0.
    NoSuchDay { year: i32, month: u32, day: u32 },
    /// A real date followed by a time of day other than midnight: refused, because the column holds
    /// a date only and such a cell is most often a UTC timestamp whose day is not the local one
    /// (issue 11: "09/10/2022 23:00" written by a system on UTC is 10/10/2022 in the UK in summer).
    TimeOfDay(NaiveDate, NaiveTime),
}

/// A date cell: any form of `DATE_FORMS`. A date-time cell (Excel's "10/10/2022 00:00" or
/// "10/10/2022 00:00:00", ISO "2022-10-10T00:00:00") is its date when the time is midnight.
pub fn parse_date_cell(s: &str) -> Result<NaiveDate, DateProblem> {
    // Nearly every cell is DD/MM/YYYY: read it directly (issue 11: the general path cost ~460
    // instructions, three or four times a visit row).
    if let [d1, d2, b'/', m1, m2, b'/', y @ ..] = s.as_bytes() {
        if let (Some(d), Some(m), Some(y)) = (digits(&[*d1, *d2], 2, 2), digits(&[*m1, *m2], 2, 2), digits(y, 4, 4)) {
            return calendar(y as i32, m, d);
        }
    }
    let s = s.trim();
    let (date, time) = match s.rfind([' ', 'T']) {
        // `T` separates only an ISO date from its time.
        Some(i) if s[i + 1..].contains(':') && (s.as_bytes()[i] == b' ' || i == 10) => (s[..i].trim_end(), Some(&s[i + 1..])),
        _ => (s, None),
    };
    if time.is_some() && s.as_bytes().get(10) == Some(&b'T') && !is_iso(date) {
        return Err(DateProblem::NotADate);
    }
    let d = parse_date_only(date).ok_or(DateProblem::NotADate)??;
    match time.map(parse_time) {
        None => Ok(d),
        Some(None) => Err(DateProblem::NotADate),
        Some(Some(t)) if t == NaiveTime::MIN => Ok(d),
        Some(Some(t)) => Err(DateProblem::TimeOfDay(d, t)),
    }
}

/// `parse_date_cell` when only a date or nothing matters.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    parse_date_cell(s).ok()
}

/// What is wrong with a date cell, for a provider: the column, the value, and the forms accepted.
pub fn date_message(heading: &str, value: impl std::fmt::Display, problem: DateProblem) -> String {
    match problem {
        DateProblem::NotADate => format!("{heading} '{value}' is not a date in a form the council accepts: use {DATE_FORMS}; the date must exist"),
        DateProblem::NoSuchDay { year, month, day } => {
            let why = match NaiveDate::from_ymd_opt(year, month, 1) {
                None => format!("there is no month {month} (the day comes first: DD/MM/YYYY)"),
                Some(first) if day == 0 => format!("there is no day 0 of {}", first.format("%B %Y")),
                Some(first) => format!("{} has {} days", first.format("%B %Y"), days_in_month(first)),
            };
            format!("{heading} '{value}' is not a date: {why}; write a day that exists, e.g. as DD/MM/YYYY")
        }
        DateProblem::TimeOfDay(d, t) => format!(
            "{heading} '{value}' holds a time of day ({}) as well as the date {}: this column takes a date only; write the date alone (a time other than midnight often means a timestamp in another time zone, whose day may not be the one meant)",
            t.format("%H:%M"),
            uk_date(d)
        ),
    }
}

/// Parses `D/M/YYYY`, `D-M-YYYY`, `D/M/YY`, `D-M-YY`, `D MMM YYYY`, `D MMM YY`, `D-MMM-YY`,
/// `D-MMM-YYYY` (leading zeros optional, month names in any case) and ISO `YYYY-MM-DD`. Only real
/// calendar dates pass.
fn is_iso(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-'
}

/// A date in one of the forms, whether or not the day exists; `None` when it is in none of them.
fn parse_date_only(s: &str) -> Option<Result<NaiveDate, DateProblem>> {
    let b = s.as_bytes();
    if is_iso(s) {
        return Some(calendar(digits(&b[..4], 4, 4)? as i32, digits(&b[5..7], 2, 2)?, digits(&b[8..], 2, 2)?));
    }
    let first = b.iter().position(|c| matches!(c, b'/' | b'-' | b' '))?;
    let sep = b[first];
    let rest = &b[first + 1..];
    let second = rest.iter().position(|c| *c == sep)?;
    let (d, m, y) = (&b[..first], &rest[..second], &rest[second + 1..]);
    if y.contains(&sep) {
        return None;
    }
    let day = digits(d, 1, 2)?;
    let month = if m.iter().all(u8::is_ascii_digit) {
        if sep == b' ' {
            return None; // "1 8 2022" is not one of the guide's forms
        }
        digits(m, 1, 2)?
    } else {
        if sep == b'/' {
            return None;
        }
        month_from_name(m)?
    };
    let year = match y.len() {
        4 => digits(y, 4, 4)? as i32,
        2 => 2000 + digits(y, 2, 2)? as i32,
        _ => return None,
    };
    Some(calendar(year, month, day))
}

/// The day, or why it is not on the calendar.
fn calendar(year: i32, month: u32, day: u32) -> Result<NaiveDate, DateProblem> {
    NaiveDate::from_ymd_opt(year, month, day).ok_or(DateProblem::NoSuchDay { year, month, day })
}

/// How many days the month starting on `first` has.
fn days_in_month(first: NaiveDate) -> u32 {
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap_or(NaiveDate::MAX);
    (next - first).num_days() as u32
}

/// Parses `h:mm` or `h:mm:ss` (hour 0-23, leading zero optional).
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    // The usual hh:mm, read directly (issue 11).
    if let [h1, h2, b':', m1, m2] = s.as_bytes() {
        if let (Some(h), Some(m)) = (digits(&[*h1, *h2], 2, 2), digits(&[*m1, *m2], 2, 2)) {
            return NaiveTime::from_hms_opt(h, m, 0);
        }
    }
    let b = s.trim().as_bytes();
    let colon = b.iter().position(|c| *c == b':')?;
    let h = digits(&b[..colon], 1, 2)?;
    let rest = &b[colon + 1..];
    let (m, sec) = match rest.iter().position(|c| *c == b':') {
        Some(i) => (digits(&rest[..i], 2, 2)?, digits(&rest[i + 1..], 2, 2)?),
        None => (digits(rest, 2, 2)?, 0),
    };
    NaiveTime::from_hms_opt(h, m, sec)
}

/// A number written with `min..=max` ASCII digits.
fn digits(s: &[u8], min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max {
        return None;
    }
    s.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32))
}

fn month_from_name(m: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8]; 12] = [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];
    MONTHS.iter().position(|n| m.eq_ignore_ascii_case(n)).map(|i| i as u32 + 1)
}

/// A date the way the guide and a UK provider write it: `03/10/2022`.
/// Written by hand: exports write millions of dates, and chrono's formatter parses its pattern each
/// time (about 12% of an export's instructions).
pub fn uk_date(d: NaiveDate) -> String {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return d.format("%d/%m/%Y").to_string();
    }
    let mut s = String::with_capacity(10);
    push_two(&mut s, d.day());
    s.push('/');
    push_two(&mut s, d.month());
    s.push('/');
    push_two(&mut s, year as u32 / 100);
    push_two(&mut s, year as u32 % 100);
    s
}

/// A time as `hh:mm`, the way the guide writes it (`08:30`).
pub fn hh_mm(t: NaiveTime) -> String {
    let mut s = String::with_capacity(5);
    push_two(&mut s, t.hour());
    s.push(':');
    push_two(&mut s, t.minute());
    s
}

fn push_two(s: &mut String, n: u32) {
    s.push(char::from(b'0' + (n / 10 % 10) as u8));
    s.push(char::from(b'0' + (n % 10) as u8));
}

/// Minutes between an entry and an exit time; an exit earlier than the entry runs past midnight.
/// Times may carry seconds (the guide's `hh:mm[:ss]`): a length is counted to the nearest minute,
/// 30 seconds and over rounding up, so that seconds neither go unpaid nor are paid twice on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    pub minutes: i64,
}

impl Duration {
    pub fn between(entry: NaiveTime, exit: NaiveTime) -> Duration {
        let secs = |t: NaiveTime| t.num_seconds_from_midnight() as i64;
        let mut d = secs(exit) - secs(entry);
        if d < 0 {
            d += 24 * 3600;
        }
        Duration { minutes: (d + 30) / 60 }
    }

    pub fn hours_text(self) -> String {
        let h = self.minutes / 60;
        let m = self.minutes % 60;
        if m == 0 { format!("{h}h") } else { format!("{h}h {m:02}m") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visits_length_is_counted_to_the_nearest_minute() {
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M:%S").unwrap();
        assert_eq!(Duration::between(t("08:00:00"), t("08:30:50")).minutes, 31);
        assert_eq!(Duration::between(t("08:00:13"), t("08:30:42")).minutes, 30, "29 s short of 30 m 30 s");
        assert_eq!(Duration::between(t("08:00:00"), t("08:30:30")).minutes, 31, "half a minute rounds up");
        assert_eq!(Duration::between(t("08:00:30"), t("09:00:00")).minutes, 60, "59 m 30 s");
        assert_eq!(Duration::between(t("23:59:40"), t("00:00:10")).minutes, 1, "past midnight");
        assert_eq!(Duration::between(t("08:00:00"), t("08:00:00")).minutes, 0);
    }

    fn d(y: i32, m: u32, day: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, day)
    }

    #[test]
    fn dates_and_times_are_written_as_chrono_writes_them() {
        let days = [(2022, 10, 3), (1, 1, 1), (999, 12, 31), (9999, 12, 31), (2024, 2, 29), (-5, 6, 7), (10000, 1, 1)];
        for (y, m, day) in days {
            let date = d(y, m, day).unwrap();
            assert_eq!(uk_date(date), date.format("%d/%m/%Y").to_string(), "{date:?}");
        }
        for (h, m) in [(0, 0), (8, 5), (23, 59), (12, 30)] {
            let t = NaiveTime::from_hms_opt(h, m, 59).unwrap();
            assert_eq!(hh_mm(t), t.format("%H:%M").to_string());
        }
    }

    #[test]
    fn every_date_form_of_the_guide_is_accepted() {
        for s in ["3/10/2022", "03/10/2022", "3-10-2022", "03-10-2022", "3/10/22", "03-10-22",
                  "3 Oct 2022", "03 OCT 2022", "3-Oct-22", "03-oct-22", "3-Oct-2022", "3 Oct 22"] {
            assert_eq!(parse_date(s), d(2022, 10, 3), "{s}");
        }
    }

    #[test]
    fn the_usual_dd_mm_yyyy_and_hh_mm_read_directly_agree_with_the_general_reading() {
        // A leading space takes the general path (the cell is trimmed there).
        for s in ["03/10/2022", "31/02/2022", "29/02/2024", "00/01/2022", "01/13/2022", "03/10/0000", "0a/10/2022", "03/10/20x2"] {
            assert_eq!(parse_date_cell(s), parse_date_cell(&format!(" {s}")), "{s}");
        }
        for s in ["08:30", "23:59", "24:00", "08:60", "0a:30", "00:00"] {
            assert_eq!(parse_time(s), parse_time(&format!(" {s}")), "{s}");
        }
    }

    #[test]
    fn dates_that_are_not_on_the_calendar_are_refused() {
        for s in ["31/02/2022", "29/02/2023", "00/01/2022", "1/13/2022", "32/01/2022"] {
            assert_eq!(parse_date(s), None, "{s}");
        }
        assert_eq!(parse_date("29/02/2024"), d(2024, 2, 29));
    }

    #[test]
    fn a_date_in_an_accepted_form_that_is_not_on_the_calendar_says_which_part_does_not_exist() {
        let said = |s: &str| date_message("PlannedVisitDate", s, parse_date_cell(s).unwrap_err());
        assert_eq!(said("31/02/2022"), "PlannedVisitDate '31/02/2022' is not a date: February 2022 has 28 days; write a day that exists, e.g. as DD/MM/YYYY");
        assert!(said("29-Feb-2023").contains("February 2023 has 28 days"), "{}", said("29-Feb-2023"));
        assert!(said("31/04/2022").contains("April 2022 has 30 days"));
        assert!(said("2022-12-32").contains("December 2022 has 31 days"));
        assert!(said("10/13/2022").contains("there is no month 13 (the day comes first"), "{}", said("10/13/2022"));
        assert!(said("00/01/2022").contains("there is no day 0 of January 2022"));
        // Not one of the forms: the forms are listed.
        assert!(said("2022/10/03").contains("not a date in a form the council accepts"));
    }

    #[test]
    fn dates_in_other_forms_are_refused() {
        for s in ["2022-1-03", "2022/10/03", "3.10.2022", "3/Oct/2022", "3 10 2022", "October 3 2022",
                  "3-October-2022", "tomorrow", "", "3/10/022", "3//2022", "3/10/2022/1", "3/10/2022 00", "3/10/2022 0:0",
                  "3/10/2022 24:00", "3/10/2022T00:00", "2022-10-03 12"] {
            assert_eq!(parse_date(s), None, "{s}");
        }
    }

    #[test]
    fn a_short_year_after_a_month_name_and_iso_dates_are_dates() {
        for s in ["10 Oct 22", "10 oct 22", "2022-10-10", " 2022-10-10 "] {
            assert_eq!(parse_date(s), d(2022, 10, 10), "{s}");
        }
        assert_eq!(parse_date("2022-02-30"), None);
    }

    #[test]
    fn excels_date_time_cells_at_midnight_are_dates() {
        for s in ["10/10/2022 00:00", "10/10/2022 00:00:00", "10/10/2022 0:00", "10-Oct-2022 00:00", "10 Oct 22 00:00:00",
                  "2022-10-10 00:00:00", "2022-10-10T00:00:00"] {
            assert_eq!(parse_date_cell(s), Ok(d(2022, 10, 10).unwrap()), "{s}");
        }
    }

    #[test]
    fn a_date_time_cell_with_a_time_other_than_midnight_is_refused_naming_the_time() {
        let t = NaiveTime::from_hms_opt(23, 0, 0).unwrap();
        assert_eq!(parse_date_cell("09/10/2022 23:00"), Err(DateProblem::TimeOfDay(d(2022, 10, 9).unwrap(), t)));
        assert_eq!(parse_date("09/10/2022 00:00:01"), None);
        let m = date_message("PlannedVisitDate", "09/10/2022 23:00", DateProblem::TimeOfDay(d(2022, 10, 9).unwrap(), t));
        assert!(m.contains("time of day (23:00)") && m.contains("09/10/2022") && m.contains("date only"), "{m}");
    }

    #[test]
    fn the_bad_date_message_lists_every_accepted_form() {
        let m = date_message("PeriodStart", "31/02/2022", DateProblem::NotADate);
        for form in ["DD/MM/YYYY", "DD-MM-YY", "DD-MMM-YYYY", "DD MMM YY", "YYYY-MM-DD", "00:00"] {
            assert!(m.contains(form), "{form}: {m}");
        }
    }

    #[test]
    fn times_with_optional_leading_zero_and_seconds_are_accepted() {
        let t = NaiveTime::from_hms_opt(8, 30, 0);
        assert_eq!(parse_time("8:30"), t);
        assert_eq!(parse_time("08:30"), t);
        assert_eq!(parse_time("08:30:00"), t);
        assert_eq!(parse_time("23:59:59"), NaiveTime::from_hms_opt(23, 59, 59));
    }

    #[test]
    fn times_out_of_range_or_badly_written_are_refused() {
        for s in ["24:00", "25:00", "8.30", "8:5", "8:60", "830", "08:30:0", "08:30:00:00", "", "ab:cd"] {
            assert_eq!(parse_time(s), None, "{s}");
        }
    }

    #[test]
    fn an_exit_before_the_entry_runs_past_midnight() {
        let t = |s| parse_time(s).unwrap();
        assert_eq!(Duration::between(t("22:00"), t("01:30")).minutes, 210);
        assert_eq!(Duration::between(t("08:00"), t("09:00")).minutes, 60);
        assert_eq!(Duration::between(t("08:00"), t("08:00")).minutes, 0);
    }
}
