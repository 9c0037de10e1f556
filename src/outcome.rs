//! What a provider gets back for one file: counts and every issue, as JSON and as an Excel-safe CSV.
//!
//! Below both `ingest` (which makes it) and `store` (which keeps it), so neither imports the other
//! for it (issue 11: it was the only import circle).
//!
//! Issues are streamed (issue 9): while a file is judged each issue goes to a spill file on disk
//! (`Issues`), never into memory; the result files and the printed output are written from it, and
//! the `ImportResult` kept in memory and in the store holds only the counts and the first issues.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How many issues an `ImportResult` keeps (in the store, for the email); the rest are only in the
/// result files (issue 9: the store must not grow with a file's issues).
pub const KEPT_ISSUES: usize = 100;

/// Stable codes (SPEC 4): rostering systems act on them, so a code is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Code {
    // Errors: the row (or, for file-level ones, the whole file) is rejected.
    /// The file cannot be read as CSV text: a spreadsheet, UTF-16, binary, a line or row over the limits,
    /// or a header wider than `limits.max_columns` (a file whose line breaks were stripped).
    FileUnreadable,
    /// The file has no header row.
    FileEmpty,
    /// A heading the file kind requires is absent (one issue per heading).
    MissingColumn,
    /// A heading appears twice in the header.
    DuplicateColumn,
    /// The header is not that of a visits, actuals, carers or claims file (or, in the council's inbox, of one of its kinds).
    UnknownFileKind,
    /// The file is over `limits.max_file_bytes`.
    FileTooLarge,
    /// A row with more or fewer cells than the header (empty extra cells are tolerated).
    WrongFieldCount,
    /// A required value is blank.
    Required,
    /// A value is longer than its column allows.
    TooLong,
    /// A value that is not a real date in one of the accepted forms.
    BadDate,
    /// A value that is not a time of day in one of the accepted forms.
    BadTime,
    /// A boolean that is not `0`, `1`, `Y` or `N`.
    BadBoolean,
    /// A value that is not a GUID.
    BadGuid,
    /// Actuals: a quantity that is not a number, or a Visits count that is not a whole number.
    BadNumber,
    /// A VisitType that is not one of the configured codes.
    UnknownVisitType,
    /// Delivered date and times are required for a delivered-based visit type (E, DHS, DHF).
    DeliveredRequired,
    /// Delivered date and times must be blank for a visit type that was not delivered.
    DeliveredNotAllowed,
    /// The same key is used on more than one row of the file: every such row is rejected.
    DuplicateRef,
    /// A deletion names a visit, carer or actuals row the organisation does not have.
    DeleteUnknown,
    /// A visit for a service level the council takes no visits data for.
    NoVisitsForServiceLevel,
    /// An actuals row for a service level that takes visits: its actuals come from the visits.
    NoActualsForServiceLevel,
    /// An actuals row whose period shares days with another stored row of the client and service.
    OverlappingPeriod,
    /// The row's date, or the stored visit's, is in a period the council has locked.
    PeriodLocked,
    /// An OrganisationName or OrganisationRef not the uploader's, or a ServiceRef not one of its services.
    WrongOrganisation,
    /// A GUID that disagrees with the name given beside it.
    RefMismatch,
    /// A CarerRef the organisation has not sent in a carers file.
    UnknownCarer,
    /// Actuals: a quantity that is negative, beyond its bounds, or not in whole quarter hours.
    BadQuantity,
    /// Actuals: over-delivery (Actual + Extra above Planned) without Comments.
    CommentRequired,
    /// A cell holds a control character (NUL, escape, ...): refused in every cell, except tabs and
    /// line breaks in free-text columns such as Comments (issue 9).
    ControlCharacter,
    // Warnings: the row is stored and flagged.
    /// Stored, but no CPLI fits the row; the message says why and names a near one.
    Unmatched,
    /// An E, U, C or C24 visit without a comment, or an overridden time without its reason.
    MissingComment,
    /// Delivered an hour or more over the planned time, without a comment.
    OverPlannedNoComment,
    /// The delivered time does not overlap the planned time, without a comment.
    TimesDoNotTally,
    /// A planned or delivered exit time equal to its entry time.
    ZeroDuration,
    /// An NHSNumber that is not 10 digits with a valid check digit.
    BadNhsNumber,
    /// A finished week's planned hours for a client differ from the CPLIs in force (file-level).
    PlannedHoursDiffer,
    /// The same client and planned slot twice in the file, neither row saying double-handed.
    PossibleDuplicate,
    /// A heading that is not the file kind's: the column is ignored.
    UnknownColumn,
    /// The file is not UTF-8 and was read as Windows-1252.
    EncodingGuessed,
    // Neither an error nor a warning of the file's: the gateway failed on it (issue 9).
    /// The gateway failed while processing the file (a fault of ours, or a disk or store that
    /// refused a write); nothing from the file was stored.
    InternalError,
    // Appended by issue 11 (warnings).
    /// An actuals row's Planned is not the matched CPLI's quantity for its period (issue 11; the
    /// extra-care guide: Planned is "according to the contract"); the row is stored.
    PlannedDiffersFromCpli,
    /// Warning: the visit matches a CPLI under a Spot contract; Spot packages are invoiced to the
    /// council, not sent as visits (dispute type 1, Invoice Case). The visit is stored, not paid.
    InvoiceCase,
    /// Warning: DHS on a Live Well at Home (LWAH) CPLI, or DHF on a home-support one (DAPL, APL,
    /// HTLAH); the message names the type the matched CPLI's contract takes.
    WrongDeliveredType,
    /// Warning: a visit marked delivered between the client's H (in hospital) visits (dispute
    /// type 6, Client In Hospital).
    ClientInHospital,
    // Appended by issue 10 (the council's CPLI extract).
    /// CPLI extract: a Contract that is not one of DAPL, LWAH, APL, HTLAH or Spot; with any refused
    /// row nothing of the extract is loaded.
    UnknownContract,
    // Appended by issue 12 (one-off claims).
    /// Claims: the client has no CPLI with the claim's ServiceName in force on AdmittedOn.
    NoCpli,
    /// Claims: the client's CPLI is under a contract with no hospital incentive (APL, HTLAH, Spot);
    /// the message names the contract.
    ClaimNotEligible,
    /// Claims: no H (in hospital) visit is stored for the client and service in the claimed stay.
    NoHospitalVisits,
    /// Claims: another pending or accepted claim is for the same client, service and stay.
    DuplicateClaim,
    /// Claims: the Attachment is not in `/inbox`, is not a PDF, PNG or JPEG, or is too large.
    BadAttachment,
    /// Claims, claim decisions: the claim has been decided (or withdrawn) and cannot change.
    ClaimDecided,
    /// Claim decisions: no claim has that ClaimId, or that Organisation and ClaimRef.
    UnknownClaim,
    /// Claim decisions: a Decision that is not Accepted or Rejected, or an Amount with Rejected.
    BadDecision,
    /// Warning: the claim's Amount differs from the gateway's figure for the stay; the message shows
    /// the working ("4 h × £23.77 × 50% = £47.54"). The claim is kept, Pending.
    ClaimAmountDiffers,
    // Appended by issue 12 (disputes).
    /// Disputes: no such organisation, or it has no current visit with that VisitRef.
    UnknownVisit,
    /// Disputes: a DisputeType that is not 1-10 or one of the guide's names for them.
    UnknownDisputeType,
    /// Disputes: the visit already has an open dispute of that type.
    AlreadyDisputed,
    /// Disputes, dispute responses: no such dispute (for a provider, none of its own).
    UnknownDispute,
    /// Disputes, dispute responses: the dispute is resolved and cannot change.
    DisputeClosed,
}

/// Why a row's change cannot be made (a claim decided, a dispute raised, answered or closed): the
/// code, the column it is about, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub field: Option<&'static str>,
    pub message: String,
}

impl Code {
    pub fn severity(self) -> Severity {
        use Code::*;
        match self {
            Unmatched | MissingComment | OverPlannedNoComment | TimesDoNotTally | ZeroDuration | BadNhsNumber
            | PlannedHoursDiffer | PossibleDuplicate | UnknownColumn | EncodingGuessed | PlannedDiffersFromCpli | InvoiceCase
            | WrongDeliveredType | ClientInHospital | ClaimAmountDiffers => Severity::Warning,
            _ => Severity::Error,
        }
    }

    pub fn as_str(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }
}

/// Lists every `Code` once, as `Code::ALL`, for the test that holds docs/codes.md to the enum
/// (issue 11). The exhaustive match beside it stops the build when a variant is added to the
/// enum but not here, so the list cannot fall behind.
macro_rules! every_code {
    ($($code:ident),+ $(,)?) => {
        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$code),+];
        }
        const _: fn(Code) = |code| match code {
            $(Code::$code)|+ => {}
        };
    };
}

every_code![
    FileUnreadable,
    FileEmpty,
    MissingColumn,
    DuplicateColumn,
    UnknownFileKind,
    FileTooLarge,
    WrongFieldCount,
    Required,
    TooLong,
    BadDate,
    BadTime,
    BadBoolean,
    BadGuid,
    BadNumber,
    UnknownVisitType,
    DeliveredRequired,
    DeliveredNotAllowed,
    DuplicateRef,
    DeleteUnknown,
    NoVisitsForServiceLevel,
    NoActualsForServiceLevel,
    OverlappingPeriod,
    PeriodLocked,
    WrongOrganisation,
    RefMismatch,
    UnknownCarer,
    BadQuantity,
    CommentRequired,
    ControlCharacter,
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
    InternalError,
    PlannedDiffersFromCpli,
    InvoiceCase,
    WrongDeliveredType,
    ClientInHospital,
    UnknownContract,
    NoCpli,
    ClaimNotEligible,
    NoHospitalVisits,
    DuplicateClaim,
    BadAttachment,
    ClaimDecided,
    UnknownClaim,
    BadDecision,
    ClaimAmountDiffers,
    UnknownVisit,
    UnknownDisputeType,
    AlreadyDisputed,
    UnknownDispute,
    DisputeClosed,
];

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
    /// The council's CPLI extract, dropped into its own inbox (issue 10).
    Cplis,
    /// A provider's one-off claims (issue 12).
    Claims,
    /// The council's decisions on claims (issue 12).
    #[serde(rename = "claim_decisions")]
    ClaimDecisions,
    /// The council's disputes: raised and closed (issue 12).
    Disputes,
    /// A provider's answers to disputes (issue 12).
    #[serde(rename = "dispute_responses")]
    DisputeResponses,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Processed,
    Failed,
}

/// The counts only a CPLI extract's result has (issue 10), beside read, new, updated and rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractCounts {
    /// Organisations the extract named that the gateway did not know.
    pub organisations_created: u64,
    /// Stored visits and actuals rows whose match (status or CPLI) the load changed.
    pub match_changes: u64,
}

/// The section-4 result of one file, as kept in memory and in the store: the counts and the first
/// `KEPT_ISSUES` issues; every issue is in `log` (while the file's result is being written or
/// printed) and in the result files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportResult {
    pub file: String,
    pub import_id: String,
    /// The organisation's name; `None` for `validate` without `--org`. Written `""` then, in the
    /// store and the result JSON alike, as before issue 11.
    #[serde(with = "blank_is_none")]
    pub organisation: Option<String>,
    pub kind: FileKind,
    pub status: Status,
    pub received_at: String,
    pub processed_at: String,
    pub sha256: String,
    pub counts: Counts,
    /// `KEPT_ISSUES` issues, in the result files' order: the first ones, errors chosen before
    /// warnings ([`IssueLog::kept`]).
    pub issues: Vec<Issue>,
    /// How many issues there are in all (records written before issue 9 kept them all: 0 here).
    #[serde(default)]
    pub issue_count: u64,
    #[serde(default)]
    pub error_count: u64,
    /// The names of the result files in `results/`, fixed before they are written.
    #[serde(default)]
    pub answer: Option<Answer>,
    /// A CPLI extract's own counts (issue 10); written inside `counts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExtractCounts>,
    #[serde(skip)]
    pub log: LogHandle,
}

/// `results/NAME.result.csv` and `.json` of one import (file names only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub csv: String,
    pub json: String,
}

/// Every issue of a judged file, on disk; compares equal to any other (it is not part of the result's value).
#[derive(Debug, Clone, Default)]
pub struct LogHandle(pub Option<Arc<IssueLog>>);

impl PartialEq for LogHandle {
    fn eq(&self, _: &LogHandle) -> bool {
        true
    }
}

impl ImportResult {
    /// A result with no issues yet.
    pub fn new(file: &str, import_id: &str, organisation: Option<&str>, received_at: String) -> ImportResult {
        ImportResult {
            file: file.into(),
            import_id: import_id.into(),
            organisation: organisation.map(String::from),
            kind: FileKind::Unknown,
            status: Status::Processed,
            received_at,
            processed_at: String::new(),
            sha256: String::new(),
            counts: Counts::default(),
            issues: Vec::new(),
            issue_count: 0,
            error_count: 0,
            answer: None,
            extract: None,
            log: LogHandle::default(),
        }
    }

    /// How many issues in all.
    pub fn total_issues(&self) -> u64 {
        self.issue_count.max(self.issues.len() as u64)
    }

    pub fn has_errors(&self) -> bool {
        self.status == Status::Failed || self.error_count > 0 || self.issues.iter().any(|i| i.severity == Severity::Error)
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
            Status::Processed => match self.extract {
                Some(e) => format!(
                    "{}: {} CPLIs read, {} new, {} updated, {} rejected, {} organisations created, {} stored visits and actuals rows changed match",
                    self.file, c.read, c.new, c.updated, c.rejected, e.organisations_created, e.match_changes
                ),
                None if self.kind == FileKind::Claims => format!(
                    "{}: {} claims read, {} new, {} updated, {} rejected, {} data-quality issues",
                    self.file, c.read, c.new, c.updated, c.rejected, c.data_quality_issues
                ),
                None if self.kind == FileKind::ClaimDecisions => {
                    format!("{}: {} claim decisions read, {} claims decided, {} rejected", self.file, c.read, c.updated, c.rejected)
                }
                None if self.kind == FileKind::Disputes => {
                    format!("{}: {} dispute rows read, {} disputes raised, {} closed, {} rejected", self.file, c.read, c.new, c.updated, c.rejected)
                }
                None if self.kind == FileKind::DisputeResponses => {
                    format!("{}: {} responses read, {} disputes answered, {} rejected", self.file, c.read, c.updated, c.rejected)
                }
                None => format!(
                    "{}: {} read, {} new, {} updated, {} rejected, {} data-quality issues",
                    self.file, c.read, c.new, c.updated, c.rejected, c.data_quality_issues
                ),
            },
        }
    }

    /// The counts of a kind whose new and updated mean something of their own (SPEC 7: "counts
    /// named for the file's kind"), under those names.
    fn kind_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let c = &self.counts;
        let named: &[(&'static str, u64)] = match self.kind {
            FileKind::Disputes => &[("disputes_raised", c.new), ("disputes_closed", c.updated)],
            FileKind::DisputeResponses => &[("disputes_answered", c.updated)],
            FileKind::ClaimDecisions => &[("claims_decided", c.updated)],
            _ => &[],
        };
        named.iter().copied().collect()
    }

    /// Every issue in order: from the log while there is one, else the kept ones.
    pub fn for_each_issue(&self, f: impl FnMut(&Issue) -> io::Result<()>) -> io::Result<()> {
        match &self.log.0 {
            Some(log) => log.for_each(f),
            None => self.issues.iter().try_for_each(f),
        }
    }

    /// Human-readable text: the summary and one line per issue.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.summary())?;
        self.for_each_issue(|i| {
            let at = match (i.row, &i.reference) {
                (Some(r), Some(v)) => format!("row {r} ({v})"),
                (Some(r), None) => format!("row {r}"),
                (None, Some(v)) => format!("file ({v})"),
                (None, None) => "file".to_string(),
            };
            let field = i.field.as_deref().map(|f| format!(" {f}")).unwrap_or_default();
            writeln!(out, "  {at} {} {}{field}: {}", i.severity.as_str(), i.code.as_str(), i.message)
        })
    }

    /// `write_text` into a string (small results, tests).
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        let _ = self.write_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The issues as a CSV that opens cleanly in Excel: a cell that Excel would run as a formula
    /// (`= + - @`, or a tab / carriage return first) is prefixed with `'`.
    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["row", "ref", "severity", "code", "field", "message", "row_data"])?;
        self.for_each_issue(|i| {
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
            w.write_record(cells.iter().map(|c| excel_safe(c).into_owned()))?;
            Ok(())
        })?;
        w.flush()
    }

    /// `write_csv` into memory (small results, tests).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.write_csv(&mut out);
        out
    }

    /// The section-4 JSON, pretty-printed as `serde_json` prints it, every line after `indent`;
    /// the issues are streamed, so a result of a million issues is never in memory.
    pub fn write_json(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        #[derive(Serialize)]
        struct Head<'a> {
            file: &'a str,
            import_id: &'a str,
            organisation: &'a str,
            kind: FileKind,
            status: Status,
            received_at: &'a str,
            processed_at: &'a str,
            sha256: &'a str,
            counts: AllCounts,
        }
        #[derive(Serialize)]
        struct AllCounts {
            #[serde(flatten)]
            counts: Counts,
            #[serde(flatten)]
            extract: Option<ExtractCounts>,
            /// The counts under the names of the file's kind (SPEC 7), beside the generic ones.
            #[serde(flatten)]
            named: std::collections::BTreeMap<&'static str, u64>,
        }
        let head = Head {
            file: &self.file,
            import_id: &self.import_id,
            organisation: self.organisation.as_deref().unwrap_or(""),
            kind: self.kind,
            status: self.status,
            received_at: &self.received_at,
            processed_at: &self.processed_at,
            sha256: &self.sha256,
            counts: AllCounts { counts: self.counts, extract: self.extract, named: self.kind_counts() },
        };
        let text = serde_json::to_string_pretty(&head).map_err(io::Error::other)?;
        // `{ ... "counts": {...}\n}` without its closing brace: the issues follow.
        let open = text.strip_suffix("\n}").unwrap_or(&text);
        write_indented(out, open, indent)?;
        write!(out, ",\n{indent}  \"issues\": [")?;
        let mut first = true;
        self.for_each_issue(|i| {
            let text = serde_json::to_string_pretty(i).map_err(io::Error::other)?;
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            write_indented(out, &text, &format!("{indent}    "))
        })?;
        if first {
            write!(out, "]\n{indent}}}")
        } else {
            write!(out, "\n{indent}  ]\n{indent}}}")
        }
    }

    /// `write_json` into a string (small results, tests).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let _ = self.write_json(&mut out, "");
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An absent organisation as the `""` it has always been written as (issue 11).
mod blank_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Some(String::deserialize(d)?).filter(|s| !s.is_empty()))
    }
}

/// Writes `text` with `indent` before every line (serde's pretty JSON never breaks a string).
fn write_indented(out: &mut dyn Write, text: &str, indent: &str) -> io::Result<()> {
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(indent.as_bytes())?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Where a file's issues go while it is judged: a spill file of one JSON line per issue, and the
/// tallies. A write that fails is kept and reported by `finish` (the rules push issues freely).
pub struct Issues {
    spill: BufWriter<File>,
    failed: Option<io::Error>,
    tally: Tally,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    total: u64,
    errors: u64,
    warnings: u64,
    file_level: u64,
}

impl Issues {
    /// Spills into an unnamed temporary file in `dir` (the spool, so it is on the data folder's
    /// disk), or in the system's temporary folder.
    pub fn new(dir: Option<&std::path::Path>) -> io::Result<Issues> {
        let file = crate::data_dir::unnamed_file(dir, "issues")?;
        Ok(Issues { spill: BufWriter::with_capacity(256 * 1024, file), failed: None, tally: Tally::default() })
    }

    pub fn push(&mut self, issue: Issue) {
        let t = &mut self.tally;
        t.total += 1;
        match issue.severity {
            Severity::Error => t.errors += 1,
            Severity::Warning => t.warnings += 1,
        }
        if issue.row.is_none() {
            t.file_level += 1;
        }
        if self.failed.is_none() {
            let written = serde_json::to_writer(&mut self.spill, &issue).map_err(io::Error::other).and_then(|()| self.spill.write_all(b"\n"));
            if let Err(e) = written {
                self.failed = Some(e);
            }
        }
    }

    pub fn append(&mut self, issues: &mut Vec<Issue>) {
        for i in issues.drain(..) {
            self.push(i);
        }
    }

    pub fn extend(&mut self, issues: impl IntoIterator<Item = Issue>) {
        for i in issues {
            self.push(i);
        }
    }

    pub fn warnings(&self) -> u64 {
        self.tally.warnings
    }

    /// The log to read back, or the first write that failed.
    pub fn finish(self) -> io::Result<IssueLog> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let file = self.spill.into_inner().map_err(|e| e.into_error())?;
        Ok(IssueLog { file, tally: self.tally })
    }
}

/// Stops a read of the log once it has what it wants (`IssueLog::first`, `IssueLog::kept`).
#[derive(Debug, thiserror::Error)]
#[error("enough issues")]
struct Enough;

/// Every issue of a judged file, read back in the result's order: file-level issues first, then
/// the rows' in row order (the rules push row issues in file order).
#[derive(Debug)]
pub struct IssueLog {
    file: File,
    tally: Tally,
}

impl IssueLog {
    pub fn total(&self) -> u64 {
        self.tally.total
    }

    pub fn errors(&self) -> u64 {
        self.tally.errors
    }

    pub fn warnings(&self) -> u64 {
        self.tally.warnings
    }

    pub fn for_each(&self, mut f: impl FnMut(&Issue) -> io::Result<()>) -> io::Result<()> {
        // Two reads of the spill: file-level issues (few, but found both before and after the
        // rows), then the rows'.
        let passes: &[bool] = match self.tally.file_level {
            0 => &[false],
            n if n == self.tally.total => &[true],
            _ => &[true, false],
        };
        for &file_level in passes {
            let mut file = self.file.try_clone()?;
            file.rewind()?;
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    break;
                }
                // A row issue's line starts `{"row":N`; a file-level one `{"row":null`.
                if line.starts_with("{\"row\":null") != file_level {
                    continue;
                }
                let issue: Issue = serde_json::from_str(&line).map_err(io::Error::other)?;
                f(&issue)?;
            }
        }
        Ok(())
    }

    /// The `n` issues kept with a result (`KEPT_ISSUES`), in the result files' order: the first `n`,
    /// except that an error past them takes the place of a warning, so that what is kept of a file
    /// whose warnings come first still names its rejected rows (the email lists its issues from
    /// these, errors first; since 2026-12-03 110 warnings before an error left it out). Reads no
    /// further than the last issue it keeps.
    pub fn kept(&self, n: usize) -> io::Result<Vec<Issue>> {
        let want_errors = n.min(usize::try_from(self.errors()).unwrap_or(usize::MAX));
        let (mut errors, mut others) = (Vec::new(), Vec::new());
        let mut at = 0usize;
        let read = self.for_each(|i| {
            let list = if i.severity == Severity::Error { &mut errors } else { &mut others };
            if list.len() < n {
                list.push((at, i.clone()));
            }
            at += 1;
            if errors.len() == want_errors && others.len() >= n - want_errors {
                return Err(io::Error::other(Enough));
            }
            Ok(())
        });
        match read {
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<Enough>()) => {}
            other => other?,
        }
        let others_kept = n - errors.len().min(n);
        let mut kept: Vec<(usize, Issue)> = errors.into_iter().chain(others.into_iter().take(others_kept)).collect();
        kept.sort_by_key(|(at, _)| *at);
        Ok(kept.into_iter().map(|(_, i)| i).collect())
    }

    /// The first `n` issues in order.
    pub fn first(&self, n: usize) -> io::Result<Vec<Issue>> {
        let mut out = Vec::new();
        let read = self.for_each(|i| {
            if out.len() == n {
                return Err(io::Error::other(Enough));
            }
            out.push(i.clone());
            Ok(())
        });
        match read {
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<Enough>()) => Ok(out),
            other => other.map(|()| out),
        }
    }
}

/// Neutralises a cell Excel would otherwise treat as a formula (OWASP "CSV injection").
pub fn excel_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// [`excel_safe`] for a table of text and figures (the reports): a negative number such as
/// `-0.95` is a figure, left as it is; anything else that Excel would run is neutralised.
pub fn excel_safe_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.strip_prefix('-') {
        Some(rest) if rest.parse::<rust_decimal::Decimal>().is_ok() => cell.into(),
        _ => excel_safe(cell),
    }
}

/// A file's name without its `.csv` ending, in any case (`Visits.Csv` -> `Visits`): the stem of its
/// result files.
pub fn csv_stem(name: &str) -> &str {
    match name.len().checked_sub(4) {
        Some(i) if name.is_char_boundary(i) && name[i..].eq_ignore_ascii_case(".csv") => &name[..i],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_kept_with_a_result_name_an_error_that_comes_after_a_hundred_warnings() {
        let on_row = |row: u64, code: Code| Issue { row: Some(row), ..Issue::file(code, None, format!("row {row}")) };
        let mut issues = Issues::new(None).unwrap();
        for row in 2..112 {
            issues.push(on_row(row, Code::Unmatched));
        }
        issues.push(on_row(112, Code::BadDate));
        let log = issues.finish().unwrap();
        let kept = log.kept(KEPT_ISSUES).unwrap();
        assert_eq!(kept.len(), KEPT_ISSUES);
        // The first 99 warnings, then the error, in the result's order (the first 100 were all
        // warnings until 2026-12-03, and the email listed no rejected row).
        assert_eq!(kept.last().map(|i| (i.row, i.code)), Some((Some(112), Code::BadDate)));
        assert_eq!(kept[98].row, Some(100));
        // A file with fewer issues keeps them all, as `first` does.
        assert_eq!(log.kept(500).unwrap(), log.first(500).unwrap());
    }

    #[test]
    fn a_result_is_named_after_the_file_without_its_csv_ending_in_any_case() {
        for (name, stem) in [("visits.csv", "visits"), ("UPPER.CSV", "UPPER"), ("mixed.Csv", "mixed"), ("notes.txt", "notes.txt"), ("csv", "csv"), ("é.csv", "é")] {
            assert_eq!(csv_stem(name), stem, "{name}");
        }
    }

    #[test]
    fn a_report_cell_excel_would_run_is_neutralised_but_a_negative_figure_is_not() {
        for (cell, safe) in [("=X1", "'=X1"), ("@SUM(A1)", "'@SUM(A1)"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("-0.95", "-0.95"), ("-22.06", "-22.06"), ("A332295", "A332295")] {
            assert_eq!(excel_safe_cell(cell), safe, "{cell}");
        }
    }

    #[test]
    fn a_council_files_counts_are_also_named_for_its_kind() {
        let mut r = ImportResult::new("queries.csv", "x", None, String::new());
        r.kind = FileKind::Disputes;
        r.counts = Counts { read: 5, new: 2, updated: 1, rejected: 2, data_quality_issues: 0 };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!((v["counts"]["disputes_raised"].as_u64(), v["counts"]["disputes_closed"].as_u64(), v["counts"]["new"].as_u64()), (Some(2), Some(1), Some(2)));
        r.kind = FileKind::Visits;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["counts"].as_object().unwrap().len(), 5, "a provider's kinds keep SPEC 4's five counts: {v}");
    }

    #[test]
    fn a_result_without_an_organisation_is_written_with_a_blank_one_as_before() {
        // Issue 11: `None`, no longer `""`, in memory; the store and the result JSON are unchanged.
        let none = ImportResult::new("visits.csv", "x", None, String::new());
        let stored = serde_json::to_value(&none).unwrap();
        assert_eq!(stored["organisation"], "");
        assert_eq!(serde_json::from_value::<ImportResult>(stored).unwrap().organisation, None);
        assert!(none.to_json().contains("\"organisation\": \"\","), "{}", none.to_json());
        let pearl = ImportResult::new("visits.csv", "x", Some("Pearl Carers Ltd"), String::new());
        let back: ImportResult = serde_json::from_value(serde_json::to_value(&pearl).unwrap()).unwrap();
        assert_eq!(back.organisation.as_deref(), Some("Pearl Carers Ltd"));
    }

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

    /// The rows of the code table in docs/codes.md: the backquoted codes of each row's first cell,
    /// with the row's severity cell.
    fn documented_codes() -> Vec<(String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/codes.md");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut rows = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            for code in cells[1].split('`').skip(1).step_by(2) {
                rows.push((code.to_string(), cells[2].to_string()));
            }
        }
        rows
    }

    // Issue 11: the docs' code table must list every code; a variant appended to `Code` is added to
    // `every_code!` (the build insists) and then to docs/codes.md (this test insists).
    #[test]
    fn the_code_table_in_docs_lists_every_code_once_with_its_severity() {
        let documented = documented_codes();
        let mut problems = Vec::new();
        for code in Code::ALL {
            let name = code.as_str();
            let rows: Vec<&(String, String)> = documented.iter().filter(|(c, _)| *c == name).collect();
            match rows.as_slice() {
                [] => problems.push(format!("{name} has no row in docs/codes.md")),
                [(_, severity)] if !severity.starts_with(code.severity().as_str()) => {
                    problems.push(format!("{name} is listed as '{severity}' but is {}", code.severity().as_str()))
                }
                [_] => {}
                _ => problems.push(format!("{name} has {} rows in docs/codes.md", rows.len())),
            }
        }
        let names: Vec<String> = Code::ALL.iter().map(|c| c.as_str()).collect();
        for (code, _) in &documented {
            if !names.contains(code) {
                problems.push(format!("docs/codes.md lists {code}, which is not a code"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert_eq!(documented.len(), Code::ALL.len());
    }

    #[test]
    fn every_code_is_listed_once_in_all() {
        let mut names: Vec<String> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        assert!(names.iter().all(|n| !n.is_empty()));
    }
}
