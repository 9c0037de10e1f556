//! The one cell reader every file kind uses: text with a length limit, date, time, boolean, GUID,
//! decimal and whole number, each with its message written once (issue 11).
//!
//! A reader takes a cell's heading and its trimmed, non-blank text and returns the value or a
//! `Problem`: the code and a message that names the column, quotes what was found (by `quote`, so a
//! 5 MB cell is never repeated whole) and says what would be right. `Row` applies the readers to one
//! row of a file kind and collects the row's issues; a blank cell is `None` and is the rule's to judge.

use std::borrow::Cow;
use std::collections::HashSet;
use std::marker::PhantomData;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::outcome::{Code, Issue, Severity};
use super::source::{decode, row_data, Encoding};
use crate::domain::cell::describe_control;
use crate::domain::number::{parse_bounded, thousands, AmountError, MAX_AMOUNT};
use crate::domain::{date_message, forbidden_control, is_valid_nhs_number, parse_date_cell, parse_guid, parse_time, quote, Guid, Organisation, TextKind};

/// Why a cell is refused: the code and the message a provider reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    pub message: String,
}

impl Problem {
    fn new(code: Code, message: String) -> Problem {
        Problem { code, message }
    }
}

/// A blank cell the rule needs; `why` (may be empty) says what the column is for.
pub fn required(heading: &str, why: &str) -> Problem {
    Problem::new(Code::Required, format!("{heading} is required{why}"))
}

/// Refuses a control character (issue 9): none in a plain cell, tabs and line breaks allowed in free text.
pub fn control(heading: &str, value: &str, kind: TextKind) -> Result<(), Problem> {
    let Some((at, c)) = forbidden_control(value, kind) else { return Ok(()) };
    let allowed = if kind == TextKind::Free { " (tabs and line breaks are fine here)" } else { "" };
    Err(Problem::new(
        Code::ControlCharacter,
        format!("{heading} holds a control character, {}, at character {at}: remove it; a cell holds printable text only{allowed}", describe_control(c)),
    ))
}

/// Text of at most `max` characters.
pub fn text(heading: &str, value: &str, max: usize) -> Result<(), Problem> {
    // Bytes bound characters from above, so only a long value is counted.
    let n = if value.len() <= max { value.len() } else { value.chars().count() };
    if n > max {
        return Err(Problem::new(Code::TooLong, format!("{heading} is {n} characters long; at most {max} are allowed")));
    }
    Ok(())
}

/// A date in one of the guide's forms, or a date-time at midnight (`domain::parse_date_cell` decides).
pub fn date(heading: &str, value: &str) -> Result<NaiveDate, Problem> {
    parse_date_cell(value).map_err(|p| Problem::new(Code::BadDate, date_message(heading, quote(value), p)))
}

/// A time on the 24-hour clock.
pub fn time(heading: &str, value: &str) -> Result<NaiveTime, Problem> {
    parse_time(value).ok_or_else(|| {
        Problem::new(
            Code::BadTime,
            match value.trim() {
                // Rostering systems write 24:00 for a visit ending at midnight.
                "24:00" | "24:00:00" => format!("{heading} '{}' is not a time: for midnight write 00:00 (a visit whose exit is earlier than its entry runs past midnight)", quote(value)),
                _ => format!("{heading} '{}' is not a time: use hh:mm or hh:mm:ss on the 24-hour clock, e.g. 08:30 or 17:45:00", quote(value)),
            },
        )
    })
}

/// The guide's booleans (Deleted, IsOverridden): 1 or Y is true, 0 or N false, in any case.
pub fn boolean(heading: &str, value: &str) -> Result<bool, Problem> {
    match value.as_bytes() {
        [b'1'] | [b'Y' | b'y'] => Ok(true),
        [b'0'] | [b'N' | b'n'] => Ok(false),
        _ => Err(Problem::new(Code::BadBoolean, format!("{heading} must be 0, 1, Y or N; found '{}'", quote(value)))),
    }
}

/// A GUID as the council's Commissioned Care Export writes it.
pub fn guid(heading: &str, value: &str) -> Result<Guid, Problem> {
    parse_guid(value).ok_or_else(|| {
        Problem::new(
            Code::BadGuid,
            format!(
                "{heading} '{}' is not a GUID (32 hex digits as 8-4-4-4-12, as in the Commissioned Care Export); leave it blank if unsure",
                quote(value)
            ),
        )
    })
}

/// A quantity from 0 to `MAX_AMOUNT` with at most `decimals` decimal places (issue 9: an unbounded
/// one overflowed the arithmetic after it).
pub fn decimal(heading: &str, value: &str, decimals: u32) -> Result<Decimal, Problem> {
    parse_bounded(value, decimals).map_err(|e| match e {
        AmountError::NotANumber => Problem::new(
            Code::BadNumber,
            format!("{heading} '{}' is not a number: write a quantity such as 3.5 (a dot for the decimals, no units)", quote(value)),
        ),
        AmountError::Negative => Problem::new(Code::BadQuantity, format!("{heading} is {}; a quantity cannot be negative", quote(value))),
        e => Problem::new(
            Code::BadQuantity,
            format!(
                "{heading} '{}' {e}: a quantity is a number from 0 to {} with at most {decimals} decimal places",
                quote(value),
                thousands(MAX_AMOUNT.into())
            ),
        ),
    })
}

/// Money in pounds: more than 0 (`positive` says why), at most two decimals, a leading `£` allowed;
/// `example` is a sum as the column would hold it.
pub fn money(heading: &str, raw: &str, positive: &str, example: &str) -> Result<Decimal, Problem> {
    let text = raw.trim();
    let pounds = text.strip_prefix('£').unwrap_or(text).trim();
    // Thousands commas as the CPLI extract takes them (since 2026-12-03); a decimal comma is not a
    // number. Messages quote the cell as written, not as read without its commas.
    let plain = crate::domain::number::without_thousands_commas(pounds).unwrap_or(pounds.into());
    match parse_bounded(&plain, 2) {
        Ok(d) if d > Decimal::ZERO => Ok(d),
        Ok(_) => Err(Problem::new(Code::BadQuantity, format!("{heading} is {}; {positive}", quote(raw)))),
        Err(AmountError::NotANumber) => {
            Err(Problem::new(Code::BadNumber, format!("{heading} '{}' is not an amount of money: write pounds and pence such as {example}", quote(raw))))
        }
        Err(AmountError::Negative) => Err(Problem::new(Code::BadQuantity, format!("{heading} is {}; an amount cannot be negative", quote(pounds)))),
        Err(e) => Err(Problem::new(
            Code::BadQuantity,
            format!("{heading} '{}' {e}: an amount is a number from 0 to {} with at most 2 decimal places", quote(raw), thousands(MAX_AMOUNT.into())),
        )),
    }
}

/// A count from 0 to `MAX_AMOUNT`.
pub fn whole(heading: &str, value: &str) -> Result<u64, Problem> {
    match parse_bounded(value, 0) {
        Ok(n) => Ok(n.to_u64().unwrap_or(0)),
        Err(AmountError::Negative) => Err(Problem::new(Code::BadQuantity, format!("{heading} is {}; it cannot be negative", quote(value)))),
        Err(AmountError::TooLarge) => Err(Problem::new(
            Code::BadQuantity,
            format!("{heading} '{}' is more than {}, the most accepted", quote(value), thousands(MAX_AMOUNT.into())),
        )),
        Err(_) => Err(Problem::new(Code::BadNumber, format!("{heading} '{}' is not a whole number", quote(value)))),
    }
}

/// A column of a file kind: its heading, its place in the kind's list, and what text it may hold.
pub trait Column: Copy + Send + Sync + 'static {
    /// Every column, in the kind's heading order.
    const ALL: &'static [Self];
    /// The column whose cell names the row in its issues (the kind's key).
    const KEY: Self;
    fn heading(self) -> &'static str;
    fn index(self) -> usize;
    fn text_kind(self) -> TextKind;

    /// The column with this heading, as written in `HEADINGS`.
    fn named(heading: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.heading() == heading)
    }
}

/// Declares a file kind's columns: `enum Col by Key { Name: HEADING; ... }`, with `, free` after a
/// free-text column's heading (tabs and line breaks allowed there); `Key` names a row in its issues.
/// Makes the enum, its `Column` impl and `HEADINGS`.
macro_rules! columns {
    ($(#[$meta:meta])* $vis:vis enum $name:ident by $key:ident { $($var:ident : $heading:expr $(, $free:ident)?;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($var),* }

        /// The headings, in the kind's order.
        pub const HEADINGS: &[&str] = &[$($heading),*];

        impl $crate::ingest::cells::Column for $name {
            const ALL: &'static [$name] = &[$($name::$var),*];
            const KEY: $name = $name::$key;
            fn heading(self) -> &'static str {
                HEADINGS[self as usize]
            }
            fn index(self) -> usize {
                self as usize
            }
            fn text_kind(self) -> $crate::domain::TextKind {
                match self {
                    $($name::$var => columns!(@kind $($free)?)),*
                }
            }
        }
    };
    (@kind) => { $crate::domain::TextKind::Plain };
    (@kind free) => { $crate::domain::TextKind::Free };
}
pub(crate) use columns;

/// `quote(value).to_string()`, without the formatter for the usual short printable cell (issue 11:
/// formatting each row's reference character by character cost ~1,600 instructions a row).
pub fn quoted(value: &str) -> String {
    if value.len() <= crate::domain::cell::QUOTE_CHARS && value.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        value.to_string()
    } else {
        quote(value).to_string()
    }
}

/// An issue on a data row, carrying the row as the portal shows it.
pub fn row_issue(row: u64, reference: Option<String>, code: Code, field: Option<&str>, message: String, rec: &csv::ByteRecord, enc: Encoding) -> Issue {
    Issue { row: Some(row), reference, severity: code.severity(), code, field: field.map(String::from), message, row_data: Some(row_data(enc, rec)) }
}

/// One row of a file kind being judged: its cells, decoded and trimmed once, and its issues.
pub struct Row<'r, C> {
    pub row: u64,
    pub rec: &'r csv::ByteRecord,
    pub enc: Encoding,
    /// Cells in the file's header row.
    pub header_len: usize,
    cells: Vec<Cow<'r, str>>,
    /// What the issues name the row by (the kind's key cell), quoted.
    pub reference: Option<String>,
    pub issues: Vec<Issue>,
    _cols: PhantomData<C>,
}

impl<'r, C: Column> Row<'r, C> {
    /// `positions` holds, for each of the kind's columns, where it is in the file (`None`: left out,
    /// read as blank). A UTF-8 row is checked once and its cells sliced from it (cells end at ASCII
    /// commas, so every slice is valid text).
    pub fn new(row: u64, rec: &'r csv::ByteRecord, enc: Encoding, positions: &[Option<usize>], header_len: usize) -> Row<'r, C> {
        let whole = if enc == Encoding::Utf8 { std::str::from_utf8(rec.as_slice()).ok() } else { None };
        let cells = positions
            .iter()
            .map(|p| match (p, whole) {
                (None, _) => Cow::Borrowed(""),
                (Some(i), Some(whole)) => Cow::Borrowed(rec.range(*i).and_then(|r| whole.get(r)).unwrap_or("").trim_ascii()),
                (Some(i), None) => decode(enc, rec.get(*i).unwrap_or_default().trim_ascii()),
            })
            .collect();
        Row { row, rec, enc, header_len, cells, reference: None, issues: Vec::new(), _cols: PhantomData }
    }

    /// The cell's text, trimmed; `""` when blank or left out.
    pub fn get(&self, col: C) -> Cow<'r, str> {
        self.cells[col.index()].clone()
    }

    /// The cell's text, `None` when blank.
    pub fn opt(&self, col: C) -> Option<Cow<'r, str>> {
        Some(self.get(col)).filter(|v| !v.is_empty())
    }

    pub fn is_blank(&self, col: C) -> bool {
        self.cells[col.index()].is_empty()
    }

    pub fn push(&mut self, code: Code, field: Option<C>, message: String) {
        let issue = row_issue(self.row, self.reference.clone(), code, field.map(C::heading), message, self.rec, self.enc);
        self.issues.push(issue);
    }

    fn problem(&mut self, col: C, p: Problem) {
        self.push(p.code, Some(col), p.message);
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }

    /// Refuses control characters in every column (issue 9: a NUL was stored in VisitRef); whether
    /// any was found. Nearly every row is printable ASCII, settled by one pass over its bytes.
    pub fn check_controls(&mut self) -> bool {
        // Without stopping at the first byte, so that the compiler checks many bytes at a time.
        if !self.rec.as_slice().iter().fold(false, |other, b| other | !(0x20..0x7F).contains(b)) {
            return false;
        }
        let before = self.issues.len();
        for &col in C::ALL {
            if let Err(p) = control(col.heading(), &self.cells[col.index()], col.text_kind()) {
                self.problem(col, p);
            }
        }
        self.issues.len() > before
    }

    /// Flags a blank cell the rule needs; whether it was blank.
    pub fn require(&mut self, col: C, why: &str) -> bool {
        let blank = self.is_blank(col);
        if blank {
            self.problem(col, required(col.heading(), why));
        }
        blank
    }

    /// Reads a non-blank cell with `read`; a refused one is flagged and read as `None`.
    fn read<T>(&mut self, col: C, read: impl FnOnce(&str, &str) -> Result<T, Problem>) -> Option<T> {
        let v = self.opt(col)?;
        match read(col.heading(), &v) {
            Ok(t) => Some(t),
            Err(p) => {
                self.problem(col, p);
                None
            }
        }
    }

    /// Text of at most `max` characters; `None` when blank or too long.
    pub fn text(&mut self, col: C, max: usize) -> Option<String> {
        let v = self.opt(col)?;
        self.read(col, |h, v| text(h, v, max))?;
        Some(v.into_owned())
    }

    /// Text of at most `max` characters, flagged when blank (`why` says what it is for).
    pub fn required_text(&mut self, col: C, max: usize, why: &str) -> Option<String> {
        let v = self.text(col, max);
        self.require(col, why);
        v
    }

    /// A date, flagged when blank.
    pub fn required_date(&mut self, col: C, why: &str) -> Option<NaiveDate> {
        let v = self.date(col);
        self.require(col, why);
        v
    }

    /// The organisation a row names must be the one whose folder the file was sent to: a provider
    /// sends only its own rows. `name`: the OrganisationName given and whether it names `org`.
    /// `foreign`: other organisations' GUIDs, refused even while `org`'s own is not known.
    pub fn check_organisation(&mut self, org: &Organisation, (name_col, ref_col): (C, C), name: Option<(&str, bool)>, org_ref: Option<&Guid>, foreign: &HashSet<Guid>, noun: &str) {
        if let Some((name, false)) = name {
            let message = format!("{} '{}' is not {}, whose folder this file was sent to; a provider may send only its own {noun}", name_col.heading(), quote(name), org.name);
            self.push(Code::WrongOrganisation, Some(name_col), message);
        }
        match (org_ref, org.org_ref.as_ref()) {
            (Some(given), Some(own)) if given != own => {
                let message = format!("{} {given} is not the GUID of {} ({own}); leave it blank if unsure", ref_col.heading(), org.name);
                self.push(Code::WrongOrganisation, Some(ref_col), message);
            }
            (Some(given), None) if foreign.contains(given) => self.foreign_guid(ref_col, given, org),
            _ => {}
        }
    }

    /// A GUID the council's CPLIs give another organisation.
    pub fn foreign_guid(&mut self, col: C, given: &Guid, org: &Organisation) {
        let message = format!("{} {given} is another organisation's GUID in the council's CPLIs, not one of {}; leave it blank if unsure", col.heading(), org.name);
        self.push(Code::WrongOrganisation, Some(col), message);
    }

    /// An NHS number that fails its check digit is a warning: the row is kept.
    pub fn nhs_number(&mut self, col: C, value: Option<&str>) {
        if let Some(n) = value.filter(|n| !is_valid_nhs_number(n)) {
            let message = format!("{} '{}' is not a valid NHS number (10 digits with a correct check digit); check it or leave it blank", col.heading(), quote(n));
            self.push(Code::BadNhsNumber, Some(col), message);
        }
    }

    pub fn date(&mut self, col: C) -> Option<NaiveDate> {
        self.read(col, date)
    }

    pub fn time(&mut self, col: C) -> Option<NaiveTime> {
        self.read(col, time)
    }

    pub fn boolean(&mut self, col: C) -> Option<bool> {
        self.read(col, boolean)
    }

    pub fn guid(&mut self, col: C) -> Option<Guid> {
        self.read(col, guid)
    }

    pub fn decimal(&mut self, col: C, decimals: u32) -> Option<Decimal> {
        self.read(col, |h, v| decimal(h, v, decimals))
    }

    pub fn whole(&mut self, col: C) -> Option<u64> {
        self.read(col, whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, Problem>) -> Code {
        r.unwrap_err().code
    }

    #[test]
    fn a_blank_cell_a_rule_needs_is_required_saying_what_it_is_for() {
        assert_eq!(required("VisitType", ": one of DHS, DHF").message, "VisitType is required: one of DHS, DHF");
        assert_eq!(required("Forename", "").code, Code::Required);
    }

    #[test]
    fn text_longer_than_its_column_allows_is_too_long_counted_in_characters() {
        assert_eq!(text("SSRef", "A123", 4), Ok(()));
        assert_eq!(text("SSRef", "éééé", 4), Ok(()), "four characters, eight bytes");
        let p = text("SSRef", "A1234", 4).unwrap_err();
        assert_eq!((p.code, p.message.as_str()), (Code::TooLong, "SSRef is 5 characters long; at most 4 are allowed"));
    }

    #[test]
    fn a_control_character_is_refused_naming_the_column_and_where_and_free_text_may_hold_tabs_and_line_breaks() {
        let p = control("CarerRef", "C\t1", TextKind::Plain).unwrap_err();
        assert_eq!(p.code, Code::ControlCharacter);
        assert!(p.message.starts_with("CarerRef holds a control character, U+0009 (tab), at character 2"), "{}", p.message);
        assert_eq!(control("Comments", "fell,\r\nrested\tthen ate", TextKind::Free), Ok(()));
        assert!(control("Comments", "x\u{0}", TextKind::Free).unwrap_err().message.contains("(tabs and line breaks are fine here)"));
    }

    #[test]
    fn a_date_is_read_in_the_guides_forms_and_anything_else_is_a_bad_date_naming_the_forms() {
        assert_eq!(date("PeriodStart", "03/10/2022"), Ok(NaiveDate::from_ymd_opt(2022, 10, 3).unwrap()));
        let p = date("PeriodStart", "31/02/2022").unwrap_err();
        assert_eq!(p.code, Code::BadDate);
        assert!(p.message.starts_with("PeriodStart '31/02/2022' is not a date") && p.message.contains("DD/MM/YYYY"), "{}", p.message);
    }

    #[test]
    fn a_time_is_read_on_the_24_hour_clock_and_anything_else_is_a_bad_time() {
        assert_eq!(time("PlannedEntryTime", "8:30"), Ok(NaiveTime::from_hms_opt(8, 30, 0).unwrap()));
        let p = time("PlannedEntryTime", "8.30am").unwrap_err();
        assert_eq!(p.code, Code::BadTime);
        assert!(p.message.contains("hh:mm"), "{}", p.message);
    }

    #[test]
    fn midnight_written_as_24_00_is_a_bad_time_that_says_to_write_00_00() {
        let p = time("PlannedExitTime", "24:00").unwrap_err();
        assert_eq!(p.code, Code::BadTime);
        assert!(p.message.starts_with("PlannedExitTime '24:00' is not a time: for midnight write 00:00"), "{}", p.message);
    }

    #[test]
    fn a_boolean_is_0_1_y_or_n_in_any_case() {
        for (v, b) in [("1", true), ("Y", true), ("y", true), ("0", false), ("N", false), ("n", false)] {
            assert_eq!(boolean("Deleted", v), Ok(b), "{v}");
        }
        for v in ["yes", "true", "2", "10"] {
            let p = boolean("Deleted", v).unwrap_err();
            assert_eq!((p.code, p.message), (Code::BadBoolean, format!("Deleted must be 0, 1, Y or N; found '{v}'")));
        }
    }

    #[test]
    fn a_guid_is_32_hex_digits_as_8_4_4_4_12_and_anything_else_is_a_bad_guid() {
        assert!(guid("ClientRef", "97d54925-7210-436e-8d97-9727cd416685").is_ok());
        let p = guid("ClientRef", "97D54925").unwrap_err();
        assert_eq!(p.code, Code::BadGuid);
        assert!(p.message.contains("8-4-4-4-12") && p.message.contains("leave it blank"), "{}", p.message);
    }

    #[test]
    fn a_decimal_is_a_bounded_quantity_and_words_are_not_numbers() {
        assert_eq!(decimal("Actual", "3.25", 4), Ok(Decimal::new(325, 2)));
        assert_eq!(code(decimal("Actual", "ten", 4)), Code::BadNumber);
        assert_eq!(code(decimal("Actual", "-1", 4)), Code::BadQuantity);
        let p = decimal("Actual", "9.12345", 4).unwrap_err();
        assert!(p.message.contains("from 0 to 1,000,000 with at most 4 decimal places"), "{}", p.message);
    }

    #[test]
    fn a_whole_number_is_a_count_up_to_a_million() {
        assert_eq!(whole("Visits", "14"), Ok(14));
        assert_eq!(code(whole("Visits", "2.5")), Code::BadNumber);
        assert_eq!(code(whole("Visits", "-3")), Code::BadQuantity);
        assert_eq!(code(whole("Visits", "18446744073709551616")), Code::BadQuantity);
    }

    #[test]
    fn a_reference_is_quoted_as_every_message_quotes_a_value() {
        for v in ["V1", "K000000001", "Zoë", "x".repeat(60).as_str(), "x".repeat(61).as_str(), "a\u{0}b", "tab\there", "\u{85}"] {
            assert_eq!(quoted(v), quote(v).to_string(), "{v:?}");
        }
    }

    #[test]
    fn a_huge_cell_is_quoted_by_its_first_characters_in_every_message() {
        let big = "x".repeat(1_000_000);
        for p in [date("D", &big).unwrap_err(), time("T", &big).unwrap_err(), boolean("B", &big).unwrap_err(), guid("G", &big).unwrap_err(), whole("W", &big).unwrap_err()] {
            assert!(p.message.len() < 600 && p.message.contains("(1,000,000 characters)"), "{}", p.message);
        }
    }
}
