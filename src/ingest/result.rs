//! What a provider gets back for one file: counts and every issue, as JSON and as an Excel-safe CSV.

use serde::{Deserialize, Serialize};

/// Stable codes (SPEC 4): rostering systems act on them, so a code is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Code {
    // Errors: the row (or, for file-level ones, the whole file) is rejected.
    /// The file cannot be read as text CSV (binary, a spreadsheet, UTF-16, an absurdly long line).
    FileUnreadable,
    /// No header row at all.
    FileEmpty,
    /// A heading the file kind requires is absent.
    MissingColumn,
    /// A heading appears twice.
    DuplicateColumn,
    /// The header is not that of a visits, actuals or carers file.
    UnknownFileKind,
    /// Over the configured size limit.
    FileTooLarge,
    /// A row with more or fewer fields than the header.
    WrongFieldCount,
    Required,
    TooLong,
    BadDate,
    BadTime,
    BadBoolean,
    BadGuid,
    BadNumber,
    UnknownVisitType,
    /// Delivered date and times are required for a delivered-based visit type.
    DeliveredRequired,
    /// Delivered date and times must be blank for a visit type that was not delivered.
    DeliveredNotAllowed,
    /// The same key is used on more than one row of the file.
    DuplicateRef,
    /// A deletion names a visit the organisation does not have.
    DeleteUnknown,
    NoVisitsForServiceLevel,
    PeriodLocked,
    WrongOrganisation,
    /// A GUID that disagrees with the name given beside it.
    RefMismatch,
    UnknownCarer,
    BadQuantity,
    CommentRequired,
    /// A cell holds a control character (NUL, escape, ...): refused in every cell, except tabs and
    /// line breaks in free-text columns such as Comments (issue 9).
    ControlCharacter,
    // Warnings: the row is stored and flagged.
    Unmatched,
    MissingComment,
    OverPlannedNoComment,
    TimesDoNotTally,
    ZeroDuration,
    BadNhsNumber,
    PlannedHoursDiffer,
    PossibleDuplicate,
    UnknownColumn,
    EncodingGuessed,
}

impl Code {
    pub fn severity(self) -> Severity {
        use Code::*;
        match self {
            Unmatched | MissingComment | OverPlannedNoComment | TimesDoNotTally | ZeroDuration | BadNhsNumber
            | PlannedHoursDiffer | PossibleDuplicate | UnknownColumn | EncodingGuessed => Severity::Warning,
            _ => Severity::Error,
        }
    }

    pub fn as_str(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem: where (row, column), what, and what would be right, in words a provider understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// The spreadsheet row (header = 1); `None` for the whole file.
    pub row: Option<u64>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub severity: Severity,
    pub code: Code,
    pub field: Option<String>,
    pub message: String,
    pub row_data: Option<String>,
}

impl Issue {
    pub fn file(code: Code, field: Option<&str>, message: impl Into<String>) -> Issue {
        Issue {
            row: None,
            reference: None,
            severity: code.severity(),
            code,
            field: field.map(String::from),
            message: message.into(),
            row_data: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub read: u64,
    pub new: u64,
    pub updated: u64,
    pub rejected: u64,
    pub data_quality_issues: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Visits,
    Actuals,
    Carers,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Processed,
    Failed,
}

/// The section-4 result of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportResult {
    pub file: String,
    pub import_id: String,
    pub organisation: String,
    pub kind: FileKind,
    pub status: Status,
    pub received_at: String,
    pub processed_at: String,
    pub sha256: String,
    pub counts: Counts,
    pub issues: Vec<Issue>,
}

impl ImportResult {
    pub fn has_errors(&self) -> bool {
        self.status == Status::Failed || self.issues.iter().any(|i| i.severity == Severity::Error)
    }

    /// One line a person reads first: `visits.csv: 21 read, 21 new, 0 updated, 0 rejected, 0 data-quality issues`.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        match self.status {
            Status::Failed => format!(
                "{}: failed, nothing stored ({})",
                self.file,
                self.issues.iter().find(|i| i.severity == Severity::Error).map_or("", |i| i.message.as_str())
            ),
            Status::Processed => format!(
                "{}: {} read, {} new, {} updated, {} rejected, {} data-quality issues",
                self.file, c.read, c.new, c.updated, c.rejected, c.data_quality_issues
            ),
        }
    }

    /// Human-readable text: the summary and one line per issue.
    pub fn to_text(&self) -> String {
        let mut out = self.summary();
        out.push('\n');
        for i in &self.issues {
            let at = match (i.row, &i.reference) {
                (Some(r), Some(v)) => format!("row {r} ({v})"),
                (Some(r), None) => format!("row {r}"),
                (None, Some(v)) => format!("file ({v})"),
                (None, None) => "file".to_string(),
            };
            let field = i.field.as_deref().map(|f| format!(" {f}")).unwrap_or_default();
            out.push_str(&format!("  {at} {} {}{field}: {}\n", i.severity.as_str(), i.code.as_str(), i.message));
        }
        out
    }

    /// The issues as a CSV that opens cleanly in Excel: a cell that Excel would run as a formula
    /// (`= + - @`, or a tab / carriage return first) is prefixed with `'`.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(["row", "ref", "severity", "code", "field", "message", "row_data"]);
        for i in &self.issues {
            let row = i.row.map(|r| r.to_string()).unwrap_or_default();
            let code = i.code.as_str();
            let cells = [
                row.as_str(),
                i.reference.as_deref().unwrap_or(""),
                i.severity.as_str(),
                code.as_str(),
                i.field.as_deref().unwrap_or(""),
                i.message.as_str(),
                i.row_data.as_deref().unwrap_or(""),
            ];
            let _ = w.write_record(cells.iter().map(|c| excel_safe(c).into_owned()));
        }
        w.into_inner().unwrap_or_default()
    }
}

/// Neutralises a cell Excel would otherwise treat as a formula (OWASP "CSV injection").
pub fn excel_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_in_the_result_csv() {
        assert_eq!(excel_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(excel_safe("+44 1865"), "'+44 1865");
        assert_eq!(excel_safe("-1+1"), "'-1+1");
        assert_eq!(excel_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(excel_safe("Client fell"), "Client fell");
    }

    #[test]
    fn codes_serialise_as_the_stable_screaming_snake_names() {
        assert_eq!(Code::TimesDoNotTally.as_str(), "TIMES_DO_NOT_TALLY");
        assert_eq!(Code::BadNhsNumber.as_str(), "BAD_NHS_NUMBER");
        assert_eq!(Code::Unmatched.severity(), Severity::Warning);
        assert_eq!(Code::DeleteUnknown.severity(), Severity::Error);
    }
}
