//! The words of an email: askama templates (`templates/`) rendered into a subject, a text part and an
//! HTML part, from a file's stored result or from a day's results for the digest.

use askama::Template;
use chrono::{DateTime, Local, NaiveDate};

use super::contacts::has_problems;
use crate::domain::uk_date;
use crate::outcome::{ImportResult, Issue, Severity, Status};
use crate::schedule::{CouncilSummary, SILENT_DAYS};

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
            // Not one row but several of one reference (a client's week: PLANNED_HOURS_DIFFER).
            (None, Some(v)) => format!("The rows of {v}"),
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
    let stem = crate::outcome::csv_stem(file);
    format!("{stem}.result.csv")
}

/// The issues, errors before warnings, each in the result's order.
fn errors_first(issues: &[Issue]) -> impl Iterator<Item = &Issue> {
    let errors = issues.iter().filter(|i| i.severity == Severity::Error);
    errors.chain(issues.iter().filter(|i| i.severity != Severity::Error))
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
        // Errors first: a rejected row is money not paid, and one warning per client and week
        // (PLANNED_HOURS_DIFFER, file-level, so first in the result) could fill the excerpt.
        issues: errors_first(&r.issues).take(max_issues).map(IssueLine::new).collect(),
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

struct SummaryOrgLine {
    name: String,
    /// `3 files, 1 failed; 26 rows read, 5 rejected; 1 unmatched visit now`
    figures: String,
    files: u64,
    failed: u64,
    read: u64,
    rejected: u64,
    unmatched: u64,
    last_file: String,
}

struct SummaryFailedLine {
    organisation: String,
    file: String,
    received_at: String,
    reason: String,
}

struct SummarySilentLine {
    name: String,
    last_file: String,
}

struct SummaryLockLine {
    at: String,
    by: &'static str,
    until: String,
}

struct SummaryView {
    recipient: Option<String>,
    headline: String,
    from: String,
    to: String,
    orgs: Vec<SummaryOrgLine>,
    failed: Vec<SummaryFailedLine>,
    silent: Vec<SummarySilentLine>,
    silent_days: i64,
    locks: Vec<SummaryLockLine>,
    /// "D3 Pearl Carers Ltd, visit PS5: Missing Comment, respond by 17/10/2022".
    overdue: Vec<String>,
}

#[derive(Template)]
#[template(path = "summary.txt")]
struct SummaryText<'a> {
    v: &'a SummaryView,
}

#[derive(Template)]
#[template(path = "summary.html")]
struct SummaryHtml<'a> {
    v: &'a SummaryView,
}

/// `1 file`, `2 files`.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

fn local(t: DateTime<chrono::Utc>) -> String {
    t.with_timezone(&Local).format("%d/%m/%Y %H:%M").to_string()
}

/// The council's daily summary (issue 10), from the figures kept with it.
pub fn council_summary_email(s: &CouncilSummary, recipient: Option<&str>) -> Rendered {
    // Of the organisations' files, as the files counted; the council's own failed files (listed
    // with the failed ones, in no organisation's figures) are told apart.
    let failed: u64 = s.organisations.iter().map(|o| o.failed).sum();
    let councils = s.failed.iter().filter(|f| f.organisation == crate::schedule::COUNCIL).count() as u64;
    let councils = if councils > 0 { format!(" (and {} of the council's own)", count(councils, "file", "files")) } else { String::new() };
    let silent = s.silent().count() as u64;
    let headline = format!(
        "Daily summary {}: {} from {}, {failed} failed{councils}, {} silent for {SILENT_DAYS} days, {}",
        s.day.format("%d/%m/%Y"),
        count(s.files(), "file", "files"),
        count(s.organisations.iter().filter(|o| o.files > 0).count() as u64, "organisation", "organisations"),
        count(silent, "organisation", "organisations"),
        count(s.locks.len() as u64, "lock", "locks"),
    );
    let last_file = |t: Option<DateTime<chrono::Utc>>| t.map_or_else(|| "never".to_string(), local);
    let v = SummaryView {
        recipient: recipient.map(String::from),
        headline,
        from: local(s.from),
        to: local(s.to),
        orgs: s
            .organisations
            .iter()
            .map(|o| SummaryOrgLine {
                name: o.name.clone(),
                figures: if o.files == 0 {
                    format!("no files; {} now", count(o.unmatched_visits, "unmatched visit", "unmatched visits"))
                } else {
                    format!(
                        "{}, {} failed; {}, {} rejected; {} now",
                        count(o.files, "file", "files"),
                        o.failed,
                        count(o.rows_read, "row read", "rows read"),
                        o.rows_rejected,
                        count(o.unmatched_visits, "unmatched visit", "unmatched visits"),
                    )
                },
                files: o.files,
                failed: o.failed,
                read: o.rows_read,
                rejected: o.rows_rejected,
                unmatched: o.unmatched_visits,
                last_file: last_file(o.last_file_at),
            })
            .collect(),
        failed: s
            .failed
            .iter()
            .map(|f| SummaryFailedLine { organisation: f.organisation.clone(), file: f.file.clone(), received_at: local(f.received_at), reason: f.reason.clone() })
            .collect(),
        silent: s.silent().map(|o| SummarySilentLine { name: o.name.clone(), last_file: last_file(o.last_file_at) }).collect(),
        silent_days: SILENT_DAYS,
        locks: s
            .locks
            .iter()
            .map(|l| SummaryLockLine { at: local(l.at), by: l.by.as_str(), until: uk_date(l.until) })
            .collect(),
        overdue: s.overdue.iter().map(|d| format!("{} {}, visit {}: {}, respond by {}", d.id, d.organisation, d.visit_ref, d.reason, uk_date(d.respond_by))).collect(),
    };
    Rendered {
        subject: v.headline.clone(),
        text: SummaryText { v: &v }.render().expect("the text template renders"),
        html: SummaryHtml { v: &v }.render().expect("the HTML template renders"),
        attachment: None,
    }
}

#[derive(Template)]
#[template(path = "notice.txt")]
struct NoticeText<'a> {
    n: &'a crate::mail::outbox::Notice,
    recipient: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticeHtml<'a> {
    n: &'a crate::mail::outbox::Notice,
    recipient: Option<&'a str>,
}

/// An event email (issue 12: a claim decided): the headline and its facts.
pub fn notice_email(n: &crate::mail::outbox::Notice, recipient: Option<&str>) -> Rendered {
    Rendered {
        subject: n.subject.clone(),
        text: NoticeText { n, recipient }.render().expect("the text template renders"),
        html: NoticeHtml { n, recipient }.render().expect("the HTML template renders"),
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
    fn the_excerpt_tells_errors_before_warnings() {
        let mut issues: Vec<Issue> = (0..25)
            .map(|n| {
                let mut week = Issue::file(Code::PlannedHoursDiffer, None, format!("week 07/11/2022 to 13/11/2022: client A{n:06} has 1 hours planned"));
                week.reference = Some(format!("A{n:06}"));
                week
            })
            .collect();
        issues.push(row_issue(30, Code::BadDate, "PlannedVisitDate", "PlannedVisitDate '31/02/2022' is not a date"));
        let r = result("visits.csv", issues, counts(30, 29, 0, 1, 25), Status::Processed);
        let m = file_email(&r, None, 20, Some(r.to_csv()));
        let first = m.text.find("- Row 30 (V30), PlannedVisitDate (Error BAD_DATE)").expect("the error is in the excerpt");
        assert!(first < m.text.find("PLANNED_HOURS_DIFFER").unwrap(), "{}", m.text);
        assert_eq!(m.text.matches("(Warning PLANNED_HOURS_DIFFER)").count(), 19);
    }

    #[test]
    fn a_clients_week_warning_is_told_as_the_rows_of_the_client_not_the_whole_file() {
        let mut week = Issue::file(Code::PlannedHoursDiffer, None, "week 07/11/2022 to 13/11/2022: client A123456 has 1 hours planned");
        week.reference = Some("A123456".into());
        let r = result("visits.csv", vec![week], counts(1, 1, 0, 0, 1), Status::Processed);
        let m = file_email(&r, None, 20, Some(r.to_csv()));
        assert!(m.text.contains("- The rows of A123456 (Warning PLANNED_HOURS_DIFFER)"), "{}", m.text);
        assert!(!m.text.contains("The whole file"), "{}", m.text);
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

    #[test]
    fn the_councils_summary_gives_each_organisations_figures_failed_files_silent_ones_and_locks() {
        use crate::domain::{LockRecord, LockedBy};
        use crate::schedule::{FailedFile, OrgSummary};
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        let org = |name: &str, files, failed, read, rejected, unmatched, last: Option<&str>, silent| OrgSummary {
            name: name.into(),
            files,
            failed,
            rows_read: read,
            rows_rejected: rejected,
            unmatched_visits: unmatched,
            last_file_at: last.map(t),
            silent,
        };
        let s = CouncilSummary {
            day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            from: t("2026-11-26T07:00:00Z"),
            to: t("2026-11-27T07:00:00Z"),
            organisations: vec![
                org("Pearl Carers Ltd", 3, 1, 26, 5, 1, Some("2026-11-27T06:00:00Z"), false),
                org("Quiet <Care> Ltd", 0, 0, 0, 0, 0, None, true),
            ],
            failed: vec![FailedFile {
                organisation: "Pearl Carers Ltd".into(),
                file: "missing.csv".into(),
                received_at: t("2026-11-27T06:00:00Z"),
                reason: "the heading SSRef is missing".into(),
            }],
            locks: vec![LockRecord { at: t("2026-11-27T00:00:00Z"), until: NaiveDate::from_ymd_opt(2026, 11, 8).unwrap(), by: LockedBy::Schedule }],
            overdue: vec![crate::schedule::OverdueDispute {
                organisation: "Pearl Carers Ltd".into(),
                id: "D3".into(),
                visit_ref: "PS5".into(),
                reason: "Missing Comment".into(),
                respond_by: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            }],
        };
        let mut with_councils = s.clone();
        with_councils.failed.push(FailedFile { organisation: crate::schedule::COUNCIL.into(), ..s.failed[0].clone() });
        assert_eq!(
            council_summary_email(&with_councils, None).subject,
            "Daily summary 27/11/2026: 3 files from 1 organisation, 1 failed (and 1 file of the council's own), 1 organisation silent for 7 days, 1 lock"
        );
        let m = council_summary_email(&s, Some("Marge"));
        assert_eq!(m.subject, "Daily summary 27/11/2026: 3 files from 1 organisation, 1 failed, 1 organisation silent for 7 days, 1 lock");
        assert!(m.text.starts_with("Hello Marge,"), "{}", m.text);
        assert!(m.text.contains("- Pearl Carers Ltd: 3 files, 1 failed; 26 rows read, 5 rejected; 1 unmatched visit now"), "{}", m.text);
        assert!(m.text.contains("- Quiet <Care> Ltd: no files; 0 unmatched visits now"), "{}", m.text);
        assert!(m.text.contains("missing.csv (received "), "{}", m.text);
        assert!(m.text.contains("): the heading SSRef is missing"), "{}", m.text);
        assert!(m.text.contains("Organisations that sent nothing in the last 7 days:\n- Quiet <Care> Ltd (last file: never)"), "{}", m.text);
        assert!(m.text.contains("by schedule: every visit dated on or before 08/11/2026 is locked"), "{}", m.text);
        assert!(m.text.contains("Overdue disputes (past their respond-by date, not answered):\n- D3 Pearl Carers Ltd, visit PS5: Missing Comment, respond by 20/11/2026"), "{}", m.text);
        assert!(m.html.contains("<li>D3 Pearl Carers Ltd, visit PS5: Missing Comment, respond by 20/11/2026</li>"), "{}", m.html);
        assert!(m.html.contains("Quiet &#60;Care&#62; Ltd") && !m.html.contains("<Care>"), "{}", m.html);
        assert!(m.attachment.is_none());
    }
}
