//! The words of an email: askama templates (`templates/`) rendered into a subject, a text part and an
//! HTML part, from a file's stored result or from a day's results for the digest.

use askama::Template;
use chrono::{DateTime, Local, NaiveDate};

use super::contacts::has_problems;
use crate::outcome::{ImportResult, Issue, Severity, Status};

/// A rendered email, before addressing.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `(file name, bytes)` of the result CSV, when attached.
    pub attachment: Option<(String, Vec<u8>)>,
}

/// `visits.csv: 21 read, 0 rejected` (with the data-quality issues when there are any), or
/// `visits.csv: failed, nothing stored`.
pub fn outcome(r: &ImportResult) -> String {
    let c = &r.counts;
    match r.status {
        Status::Failed => format!("{}: failed, nothing stored", r.file),
        Status::Processed if c.data_quality_issues > 0 => {
            format!("{}: {} read, {} rejected, {} data-quality issues", r.file, c.read, c.rejected, c.data_quality_issues)
        }
        Status::Processed => format!("{}: {} read, {} rejected", r.file, c.read, c.rejected),
    }
}

struct IssueLine {
    at: String,
    field: Option<String>,
    severity: &'static str,
    code: String,
    message: String,
}

impl IssueLine {
    fn new(i: &Issue) -> IssueLine {
        let at = match (i.row, &i.reference) {
            (Some(r), Some(v)) => format!("Row {r} ({v})"),
            (Some(r), None) => format!("Row {r}"),
            (None, Some(v)) => format!("The whole file ({v})"),
            (None, None) => "The whole file".into(),
        };
        let severity = match i.severity {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
        };
        IssueLine { at, field: i.field.clone(), severity, code: i.code.as_str(), message: i.message.clone() }
    }
}

struct FileView {
    recipient: Option<String>,
    headline: String,
    organisation: String,
    file: String,
    import_id: String,
    received_at: String,
    failed: bool,
    fix_first: String,
    read: u64,
    new: u64,
    updated: u64,
    rejected: u64,
    dq: u64,
    issues: Vec<IssueLine>,
    total_issues: usize,
    more: usize,
    attachment_note: String,
}

#[derive(Template)]
#[template(path = "result.txt")]
struct FileText<'a> {
    v: &'a FileView,
}

#[derive(Template)]
#[template(path = "result.html")]
struct FileHtml<'a> {
    v: &'a FileView,
}

fn local_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&Local).format("%d/%m/%Y %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// `visits.csv` -> `visits.result.csv`, as in `results/`.
pub fn result_csv_name(file: &str) -> String {
    let stem = file.strip_suffix(".csv").or_else(|| file.strip_suffix(".CSV")).unwrap_or(file);
    format!("{stem}.result.csv")
}

/// The email for one file: counts, the first `max_issues` issues in words (of those the store
/// keeps), and `csv`, the result CSV as read from `results/`, attached when given (`None`: larger
/// than the limit, or unreadable).
pub fn file_email(r: &ImportResult, recipient: Option<&str>, max_issues: usize, csv: Option<Vec<u8>>) -> Rendered {
    let csv_name = r.answer.as_ref().map_or_else(|| result_csv_name(&r.file), |a| a.csv.clone());
    // Attached even when there are no issues: the issue asks for it on every email, and a rostering
    // system's inbox rule may file results by their attachment.
    let attach = csv.is_some();
    let total_issues = r.total_issues() as usize;
    let attachment_note = if total_issues == 0 {
        format!("No issues: there is nothing to correct. {csv_name} is attached for your records.")
    } else if attach {
        format!("Every issue is in the attached {csv_name}, which opens in Excel.")
    } else {
        format!("The list of every issue is too large to attach: {csv_name} is in the organisation's results folder.")
    };
    let c = &r.counts;
    let v = FileView {
        recipient: recipient.map(String::from),
        headline: outcome(r),
        organisation: r.organisation.clone().unwrap_or_default(),
        file: r.file.clone(),
        import_id: r.import_id.clone(),
        received_at: local_time(&r.received_at),
        failed: r.status == Status::Failed,
        fix_first: r.issues.iter().find(|i| i.severity == Severity::Error).map(|i| i.message.clone()).unwrap_or_default(),
        read: c.read,
        new: c.new,
        updated: c.updated,
        rejected: c.rejected,
        dq: c.data_quality_issues,
        issues: r.issues.iter().take(max_issues).map(IssueLine::new).collect(),
        total_issues,
        more: total_issues.saturating_sub(max_issues.min(r.issues.len())),
        attachment_note,
    };
    Rendered {
        subject: v.headline.clone(),
        text: FileText { v: &v }.render().expect("the text template renders"),
        html: FileHtml { v: &v }.render().expect("the HTML template renders"),
        attachment: csv.map(|csv| (csv_name, csv)),
    }
}

struct DigestLine {
    received_at: String,
    outcome: String,
    problems: bool,
}

struct DigestView {
    recipient: Option<String>,
    headline: String,
    files: Vec<DigestLine>,
}

#[derive(Template)]
#[template(path = "digest.txt")]
struct DigestText<'a> {
    v: &'a DigestView,
}

#[derive(Template)]
#[template(path = "digest.html")]
struct DigestHtml<'a> {
    v: &'a DigestView,
}

/// One email for a day's files.
pub fn digest_email(organisation: &str, day: NaiveDate, results: &[ImportResult], recipient: Option<&str>) -> Rendered {
    let with_problems = results.iter().filter(|r| has_problems(r)).count();
    let files = if results.len() == 1 { "1 file".to_string() } else { format!("{} files", results.len()) };
    let headline = format!("{organisation}: {files} on {}, {with_problems} with problems", day.format("%d/%m/%Y"));
    let v = DigestView {
        recipient: recipient.map(String::from),
        headline,
        files: results
            .iter()
            .map(|r| DigestLine { received_at: local_time(&r.received_at), outcome: outcome(r), problems: has_problems(r) })
            .collect(),
    };
    Rendered {
        subject: v.headline.clone(),
        text: DigestText { v: &v }.render().expect("the text template renders"),
        html: DigestHtml { v: &v }.render().expect("the HTML template renders"),
        attachment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Code, Counts, FileKind};

    fn result(file: &str, issues: Vec<Issue>, counts: Counts, status: Status) -> ImportResult {
        let mut r = ImportResult::new(file, "0193a1b2-0000-7000-8000-000000000001", Some("Pearl Carers Ltd"), "2026-11-27T10:15:00.000Z".into());
        r.kind = FileKind::Visits;
        r.status = status;
        r.processed_at = "2026-11-27T10:15:01.000Z".into();
        r.counts = counts;
        r.issue_count = issues.len() as u64;
        r.issues = issues;
        r
    }

    fn row_issue(row: u64, code: Code, field: &str, message: &str) -> Issue {
        Issue {
            row: Some(row),
            reference: Some(format!("V{row}")),
            severity: code.severity(),
            code,
            field: Some(field.into()),
            message: message.into(),
            row_data: None,
        }
    }

    fn counts(read: u64, new: u64, updated: u64, rejected: u64, dq: u64) -> Counts {
        Counts { read, new, updated, rejected, data_quality_issues: dq }
    }

    #[test]
    fn the_subject_names_the_file_and_the_outcome() {
        let clean = result("visits.csv", vec![], counts(21, 21, 0, 0, 0), Status::Processed);
        assert_eq!(file_email(&clean, None, 20, Some(clean.to_csv())).subject, "visits.csv: 21 read, 0 rejected");
        let warned = result("visits.csv", vec![], counts(21, 20, 0, 1, 2), Status::Processed);
        assert_eq!(outcome(&warned), "visits.csv: 21 read, 1 rejected, 2 data-quality issues");
        let failed = result("v.csv", vec![Issue::file(Code::FileEmpty, None, "no header")], Counts::default(), Status::Failed);
        assert_eq!(outcome(&failed), "v.csv: failed, nothing stored");
    }

    #[test]
    fn both_parts_carry_the_counts() {
        let r = result("visits.csv", vec![], counts(21, 17, 4, 0, 0), Status::Processed);
        let m = file_email(&r, None, 20, Some(r.to_csv()));
        assert!(m.text.contains("Records read:          21"), "{}", m.text);
        assert!(m.text.contains("New:                   17"));
        assert!(m.text.contains("Updated:               4"));
        assert!(m.text.contains("Rejected:              0"));
        assert!(m.html.contains("<td>Records read</td><td style=\"text-align: right; padding-left: 16px;\">21</td>"), "{}", m.html);
        assert!(m.text.contains("No issues"));
        assert_eq!(m.attachment.expect("attached for a clean file too").0, "visits.result.csv");
    }

    #[test]
    fn issues_are_spelt_out_with_row_column_problem_and_remedy_up_to_the_limit() {
        let issues: Vec<Issue> = (2..=26)
            .map(|row| row_issue(row, Code::BadDate, "PlannedVisitDate", "PlannedVisitDate '31/02/2022' is not a date: use DD/MM/YYYY"))
            .collect();
        let r = result("visits.csv", issues, counts(25, 0, 0, 25, 0), Status::Processed);
        let m = file_email(&r, None, 20, Some(r.to_csv()));
        assert!(
            m.text.contains("- Row 7 (V7), PlannedVisitDate (Error BAD_DATE): PlannedVisitDate '31/02/2022' is not a date: use DD/MM/YYYY"),
            "{}",
            m.text
        );
        assert_eq!(m.text.matches("\n- Row ").count(), 20);
        assert!(m.text.contains("The first 20 of 25 issues"));
        assert!(!m.text.contains("Row 22 "), "the 21st issue is left to the CSV");
        assert_eq!(m.html.matches("<td>Row ").count(), 20);
        let (name, csv) = m.attachment.expect("the result CSV is attached");
        assert_eq!(name, "visits.result.csv");
        assert_eq!(csv, r.to_csv());
    }

    #[test]
    fn a_failed_file_says_what_to_fix_first() {
        let r = result(
            "visits.csv",
            vec![Issue::file(Code::MissingColumn, Some("CarerRef"), "the heading CarerRef is missing: add it to the first row")],
            Counts::default(),
            Status::Failed,
        );
        let m = file_email(&r, None, 20, Some(r.to_csv()));
        assert!(m.text.contains("Fix this first, then send the whole file again:\n  the heading CarerRef is missing"), "{}", m.text);
        assert!(m.html.contains("<strong>Fix this first</strong>"));
        assert!(m.text.contains("- The whole file, CarerRef (Error MISSING_COLUMN)"));
    }

    #[test]
    fn html_in_a_providers_comment_is_escaped_in_the_html_part_only() {
        let message = "TIMES_DO_NOT_TALLY: comment was '<script>alert(1)</script> & <b>late</b>'";
        let r = result("visits.csv", vec![row_issue(3, Code::TimesDoNotTally, "Comments", message)], counts(1, 1, 0, 0, 1), Status::Processed);
        let m = file_email(&r, Some("<i>Boss</i>"), 20, Some(r.to_csv()));
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(!m.html.contains("<b>late"));
        assert!(!m.html.contains("<i>Boss"));
        assert!(m.html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#60;b&#62;late"), "{}", m.html);
        assert!(m.text.contains(message), "the text part shows it as written");
    }

    #[test]
    fn utf8_names_survive_in_both_parts() {
        let r = result(
            "ymweliadau-Siân.csv",
            vec![row_issue(4, Code::UnknownCarer, "CarerRef", "CarerRef 'Zoë Brontë' is not one of the organisation's carers")],
            counts(3, 2, 0, 1, 0),
            Status::Processed,
        );
        let m = file_email(&r, Some("Siân Jones"), 20, Some(r.to_csv()));
        assert_eq!(m.subject, "ymweliadau-Siân.csv: 3 read, 1 rejected");
        assert!(m.text.starts_with("Hello Siân Jones,"));
        assert!(m.text.contains("'Zoë Brontë'"));
        assert!(m.html.contains("Hello Siân Jones,"));
        assert!(m.html.contains("Zoë Brontë"));
        assert_eq!(m.attachment.unwrap().0, "ymweliadau-Siân.result.csv");
    }

    #[test]
    fn a_result_csv_over_the_limit_is_not_attached_and_the_email_says_where_it_is() {
        let r = result("visits.csv", vec![row_issue(2, Code::BadTime, "PlannedEntryTime", "bad")], counts(1, 0, 0, 1, 0), Status::Processed);
        let m = file_email(&r, None, 20, None);
        assert!(m.attachment.is_none());
        assert!(m.text.contains("too large to attach: visits.result.csv is in the organisation's results folder"));
    }

    #[test]
    fn the_digest_lists_every_file_of_the_day() {
        let a = result("a.csv", vec![], counts(5, 5, 0, 0, 0), Status::Processed);
        let b = result("b.csv", vec![], counts(3, 1, 0, 2, 0), Status::Processed);
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let m = digest_email("Pearl Carers Ltd", day, &[a, b], Some("Zoë"));
        assert_eq!(m.subject, "Pearl Carers Ltd: 2 files on 27/11/2026, 1 with problems");
        assert!(m.text.contains("a.csv: 5 read, 0 rejected"));
        assert!(m.text.contains("b.csv: 3 read, 2 rejected"));
        assert!(m.html.contains("<strong>b.csv: 3 read, 2 rejected</strong>"));
        assert!(m.text.starts_with("Hello Zoë,"));
    }
}
