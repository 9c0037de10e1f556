//! Issue 12, disputes (SPEC 8, docs/disputes.md): the council queries a visit, the provider answers
//! within 7 days, the council closes it, by file both ways. The guide's example end to end over
//! OpenSSH sftp (the council's login raising and closing, the provider's login answering, each
//! `/exports/disputes.csv` read back over SFTP, the emails at aiosmtpd); a disputed visit sent again
//! or deleted answering its dispute by itself; `Overdue` past the respond-by day in both exports, in
//! `dispute list` and in the council's daily summary; every refused row of a responses file and of a
//! council disputes file answered with its code while the good rows beside it are applied; and
//! `DeleteVisit` deleting the visit as its dispute closes (refused in a locked period).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Local;
use serde_json::Value;

use crate::guide::{visit_row, visits_file};
use crate::helpers::{codes, counts, keypair, root, write_temp, TestEnv, PEARL};
use crate::mail::{free_port, mail_config, SmtpSink};
use crate::server::{result_path, wait_for_json, Server, ORG_DIR};

const COUNCIL_LOGIN: &str = "finance";
const PEARL_LOGIN: &str = "pearl-rota";
const DAPL_OXFORD: &str = "Pearl Carers - DAPL Oxford";
const RUBY: &str = "Ruby Home Support Ltd";
const RUBY_DIR: &str = "ruby-home-support-ltd";

/// The provider's `disputes.csv` columns, in order; the council's has `Organisation` first.
const COLUMNS: &str = "DisputeId,Status,DisputeType,Reason,Details,VisitRef,SSRef,Client,VisitDate,RaisedOn,RespondBy,Responses,ResolvedOn,Note,VisitDeleted";

/// The provider's answer in the guide's example.
const P33: &str = "P33 marked as undeliverable because client would not open the door";

type Row = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------------------------
// Data

/// One of Mr Principal Skinner's visits (A332295, CPLI 156040 of examples/cplis.csv, Pearl Carers -
/// DAPL Oxford, Personal Care), planned 08:00-09:00 on `date`, delivered that day at `delivered`.
fn skinner_visit(vref: &str, date: &str, code: &str, delivered: Option<(&str, &str)>, comment: &str) -> String {
    let mut pairs = vec![
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", "08:00"),
        ("PlannedExitTime", "09:00"),
        ("VisitType", code),
        ("Comments", comment),
        ("SSRef", "A332295"),
        ("ServiceLevel", "Personal Care"),
        ("ServiceName", DAPL_OXFORD),
    ];
    if let Some((entry, exit)) = delivered {
        pairs.extend([("DeliveredVisitDate", date), ("DeliveredEntryTime", entry), ("DeliveredExitTime", exit)]);
    }
    visit_row(&pairs)
}

/// The guide's three dispute examples in the week of 03/10/2022: PS2 an E visit delivered 08:00-10:00
/// with no comment, PS3 a U visit with no comment, PS5 delivered 10:00-10:30 against 08:00-09:00.
fn guide_visits() -> Vec<String> {
    vec![
        skinner_visit("PS2", "04/10/2022", "E", Some(("08:00", "10:00")), ""),
        skinner_visit("PS3", "05/10/2022", "U", None, ""),
        skinner_visit("PS5", "07/10/2022", "DHS", Some(("10:00", "10:30")), ""),
    ]
}

fn guide_week() -> String {
    visits_file(&guide_visits())
}

/// A configuration for commands run without `serve`, whose day is `day` (YYYY-MM-DD).
fn day_config(env: &TestEnv, day: &str) -> PathBuf {
    let path = env.data().join(format!("day-{day}.toml"));
    std::fs::write(&path, format!("[rules]\ntoday = \"{day}\"\n")).unwrap();
    path
}

/// `gateway --config CONFIG ARGS...`, insisting on success.
fn gw(env: &TestEnv, config: &Path, args: &[&str]) -> String {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    env.ok(&all)
}

/// `gateway --config CONFIG import --org ORG --format json FILE` for `text` saved as `name`; exit 0
/// and 1 are both results.
fn import_at(env: &TestEnv, config: &Path, org: &str, name: &str, text: &str) -> Value {
    let (_d, path) = write_temp(name, text);
    let args = ["--config", config.to_str().unwrap(), "import", "--org", org, "--format", "json", path.to_str().unwrap()];
    let out = env.run(&args);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "gateway {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("gateway {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `dispute raise` through `run`; returns the id its output starts with, checked to be `expected`.
fn raise(run: impl Fn(&[&str]) -> String, org: &str, visit: &str, kind: &str, details: &str, expected: &str) {
    let out = run(&["dispute", "raise", "--org", org, "--visit", visit, "--type", kind, "--details", details]);
    assert!(out.starts_with(&format!("{expected} ")), "dispute raise on {visit} should print {expected} first: {out}");
}

/// The (row, code) of every error of a result, in order.
fn errors(result: &Value) -> Vec<(u64, String)> {
    result["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("no issues array in {result}"))
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| (i["row"].as_u64().unwrap_or(0), i["code"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn expect_errors(expected: &[(u64, &str)]) -> Vec<(u64, String)> {
    expected.iter().map(|(r, c)| (*r, c.to_string())).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Reading the answers

/// The header line and the rows of a CSV export.
fn table(text: &str) -> (String, Vec<Row>) {
    let header = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let heads = rdr.headers().unwrap().clone();
    let rows = rdr.records().map(|r| heads.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()).collect();
    (header, rows)
}

/// The row of `id`, if listed.
fn find<'a>(rows: &'a [Row], id: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.get("DisputeId").map(String::as_str) == Some(id))
}

fn row<'a>(rows: &'a [Row], id: &str) -> &'a Row {
    find(rows, id).unwrap_or_else(|| panic!("{id} not in {rows:#?}"))
}

fn status_of(rows: &[Row], id: &str) -> Option<String> {
    find(rows, id).map(|r| r["Status"].clone())
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r["DisputeId"].as_str()).collect()
}

/// `row`'s values of `names`, for one comparison.
fn fields<'a>(row: &'a Row, names: &[&str]) -> Vec<&'a str> {
    names.iter().map(|n| row.get(*n).unwrap_or_else(|| panic!("no column {n} in {row:?}")).as_str()).collect()
}

fn provider_export(env: &TestEnv, slug: &str) -> PathBuf {
    env.org_dir(slug).join("exports/disputes.csv")
}

fn council_export(env: &TestEnv) -> PathBuf {
    env.data().join("council/exports/disputes.csv")
}

/// Reads a local export until `done` holds for its rows (a running `serve` rewrites it between files).
fn wait_for_export(path: &Path, done: impl Fn(&[Row]) -> bool) -> (String, Vec<Row>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let (header, rows) = if text.is_empty() { (String::new(), Vec::new()) } else { table(&text) };
        if done(&rows) {
            return (header, rows);
        }
        assert!(Instant::now() < deadline, "{} never showed what was expected: {text}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An export written at once by a command run without `serve`.
fn read_export(path: &Path) -> (String, Vec<Row>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    table(&text)
}

/// A JSON value as text: a string as it is, a list joined by " | ", null as "".
fn flat(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flat).collect::<Vec<_>>().join(" | "),
        Value::Object(o) => o.values().map(flat).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// `dispute list ... --format json` output by dispute id.
fn listed(out: &str) -> BTreeMap<String, Value> {
    let list: Vec<Value> = serde_json::from_str(out).unwrap_or_else(|e| panic!("dispute list printed no JSON list ({e}): {out}"));
    list.into_iter().map(|d| (flat(&d["dispute_id"]), d)).collect()
}

/// A date as the list gives it: dd/mm/yyyy as in the exports, or ISO.
fn is_day(v: &Value, ddmmyyyy: &str) -> bool {
    let text = flat(v);
    let iso = {
        let p: Vec<&str> = ddmmyyyy.split('/').collect();
        format!("{}-{}-{}", p[2], p[1], p[0])
    };
    text == ddmmyyyy || text == iso
}

// ---------------------------------------------------------------------------------------------------------
// Email

/// Every mail in the sink's Maildir, decoded by `read_maildir.py`.
fn mails(maildir: &Path) -> Vec<Value> {
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let out = Command::new("python3").arg(root().join("tests/it/read_maildir.py")).arg(maildir).output().unwrap();
    assert!(out.status.success(), "read_maildir.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn subject(m: &Value) -> &str {
    m["subject"].as_str().unwrap_or("")
}

/// Waits for a mail for which `pred` holds.
fn wait_for_mail(maildir: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = mails(maildir);
        if let Some(m) = all.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let subjects: Vec<&str> = all.iter().map(subject).collect();
        assert!(Instant::now() < deadline, "no {what} after 30 s; mails: {subjects:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------------------
// SFTP

/// A running `serve` with a council login and a Pearl login, driven by OpenSSH `sftp`.
struct Gate {
    server: Server,
    council_key: PathBuf,
    pearl_key: PathBuf,
    work: PathBuf,
}

impl Gate {
    fn start(env: &TestEnv, sections: &str) -> Gate {
        let council_key = keypair(env.data(), "council");
        let pearl_key = keypair(env.data(), "pearl");
        env.ok(&["user", "add", "--council", "--name", COUNCIL_LOGIN, "--key", &format!("{}.pub", council_key.display())]);
        env.ok(&["user", "add", "--org", PEARL, "--name", PEARL_LOGIN, "--key", &format!("{}.pub", pearl_key.display())]);
        let work = env.data().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let server = Server::with_config(env, sections);
        Gate { server, council_key, pearl_key, work }
    }

    fn key(&self, login: &str) -> &Path {
        if login == COUNCIL_LOGIN {
            &self.council_key
        } else {
            &self.pearl_key
        }
    }

    /// `sftp -b -` as `login`; the batch on standard input.
    fn sftp(&self, login: &str, batch: &str) -> Output {
        crate::helpers::sftp_batch(self.server.port, login, self.key(login), batch)
    }

    /// Uploads `text` as `/inbox/NAME` as `login`.
    fn put(&self, login: &str, name: &str, text: &str) {
        let local = self.work.join(format!("{login}-{name}"));
        std::fs::write(&local, text).unwrap();
        let out = self.sftp(login, &format!("put {} /inbox/{name}\n", local.display()));
        assert!(out.status.success(), "sftp put {name} as {login}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Downloads `remote` as `login` until `done` holds for its text.
    fn fetch_until(&self, login: &str, remote: &str, done: impl Fn(&str) -> bool) -> String {
        let local = self.work.join(format!("{login}-fetched-{}", remote.replace('/', "_")));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let _ = std::fs::remove_file(&local);
            let out = self.sftp(login, &format!("get {remote} {}\n", local.display()));
            let text = if out.status.success() { std::fs::read_to_string(&local).unwrap_or_default() } else { String::new() };
            if out.status.success() && done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{remote} as {login} never showed what was expected: {text}\n{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The council's `/results/NAME`, over SFTP, once it is there.
    fn council_result(&self, name: &str) -> Value {
        let text = self.fetch_until(COUNCIL_LOGIN, &format!("/results/{name}"), |t| serde_json::from_str::<Value>(t).is_ok());
        serde_json::from_str(&text).unwrap()
    }

    /// `/exports/disputes.csv` over SFTP as `login`, once `done` holds for its rows.
    fn export(&self, login: &str, done: impl Fn(&[Row]) -> bool) -> (String, Vec<Row>) {
        let text = self.fetch_until(login, "/exports/disputes.csv", |t| !t.is_empty() && done(&table(t).1));
        table(&text)
    }
}

fn kind_of(result: &Value) -> Option<&str> {
    result["kind"].as_str()
}

// ---------------------------------------------------------------------------------------------------------
// 1. The guide's example, end to end

#[test]
fn disputes_the_guides_example_is_raised_answered_and_resolved_by_file_over_sftp_with_emails() {
    let env = TestEnv::with_example_cplis();
    env.ok(&["contact", "add", "--org", PEARL, "--email", "manager@pearl.example.org", "--name", "Edna"]);
    let smtp_port = free_port();
    let maildir = env.data().join("maildir");
    let _sink = SmtpSink::start(smtp_port, &maildir);
    let gate = Gate::start(&env, &format!("{}[rules]\ntoday = \"2022-10-10\"\n", mail_config(smtp_port)));

    // The provider's login sends the week with the guide's three doubtful visits.
    gate.put(PEARL_LOGIN, "week-2022-10-03.csv", &guide_week());
    let week = wait_for_json(&result_path(&env, "week-2022-10-03.result.json"), 30);
    assert_eq!((counts(&week).1, counts(&week).3), (3, 0), "the three visits are stored: {week}");

    // The council's login raises Missing Comment (10) on PS3.
    gate.put(COUNCIL_LOGIN, "disputes.csv", "Organisation,VisitRef,DisputeType,Details\nPearl Carers Ltd,PS3,10,missing comment\n");
    let raised = gate.council_result("disputes.result.json");
    assert_eq!(kind_of(&raised), Some("disputes"), "{raised}");
    assert_eq!(counts(&raised), (1, 1, 0, 0, 0), "{raised}");

    // The provider's login reads it in its /exports: D1, In Dispute, 7 days to respond.
    let (header, rows) = gate.export(PEARL_LOGIN, |rows| !rows.is_empty());
    assert_eq!(header, COLUMNS);
    assert_eq!(ids(&rows), ["D1"], "{rows:#?}");
    let d1 = row(&rows, "D1");
    let shown = [
        "DisputeId", "Status", "DisputeType", "Reason", "Details", "VisitRef", "SSRef", "VisitDate", "RaisedOn", "RespondBy", "Responses", "ResolvedOn", "Note", "VisitDeleted",
    ];
    assert_eq!(
        fields(d1, &shown),
        ["D1", "In Dispute", "10", "Missing Comment", "missing comment", "PS3", "A332295", "05/10/2022", "10/10/2022", "17/10/2022", "", "", "", ""],
        "{d1:?}"
    );
    assert!(d1["Client"].contains("Principal Skinner"), "{d1:?}");

    // The provider's contact is told.
    let told = wait_for_mail(&maildir, "email of dispute D1 raised", |m| subject(m).contains("dispute D1") && subject(m).contains("Missing Comment"));
    assert!(told["to"].as_str().unwrap().contains("manager@pearl.example.org"), "{told}");
    assert!(!subject(&told).contains("resolved"), "{told}");

    // The provider answers with a responses file: Resolution Requested, its words in Responses.
    gate.put(PEARL_LOGIN, "responses.csv", &format!("DisputeId,Response\nD1,{P33}\n"));
    let answered = wait_for_json(&result_path(&env, "responses.result.json"), 30);
    assert_eq!(kind_of(&answered), Some("dispute_responses"), "{answered}");
    assert_eq!(counts(&answered), (1, 0, 1, 0, 0), "{answered}");
    let (_, rows) = gate.export(PEARL_LOGIN, |rows| status_of(rows, "D1").as_deref() == Some("Resolution Requested"));
    let responses = &row(&rows, "D1")["Responses"];
    assert!(responses.starts_with("10/10/2022 ") && responses.ends_with(&format!(": {P33}")), "{responses}");
    assert!(responses.contains("responses.csv"), "WHO is the file it came in: {responses}");

    // The council closes it with a note.
    gate.put(COUNCIL_LOGIN, "close.csv", "DisputeId,Close,Note\nD1,Y,\"All received, thanks.\"\n");
    let closed = gate.council_result("close.result.json");
    assert_eq!(kind_of(&closed), Some("disputes"), "{closed}");
    assert_eq!(counts(&closed), (1, 0, 1, 0, 0), "{closed}");
    let (_, rows) = gate.export(PEARL_LOGIN, |rows| status_of(rows, "D1").as_deref() == Some("Resolved"));
    let d1 = row(&rows, "D1");
    assert_eq!(fields(d1, &["Status", "ResolvedOn", "Note", "VisitDeleted"]), ["Resolved", "10/10/2022", "All received, thanks.", ""], "{d1:?}");
    assert!(d1["Responses"].ends_with(P33), "the answer stays shown: {d1:?}");

    // The council's own export: the same dispute, its organisation first.
    let (header, council) = gate.export(COUNCIL_LOGIN, |rows| status_of(rows, "D1").as_deref() == Some("Resolved"));
    assert_eq!(header, format!("Organisation,{COLUMNS}"));
    assert_eq!(council.len(), 1, "{council:#?}");
    assert_eq!(fields(&council[0], &["Organisation", "DisputeId", "VisitRef", "Note"]), [PEARL, "D1", "PS3", "All received, thanks."]);

    // And the provider is told it is resolved; the raising was told once.
    let resolved = wait_for_mail(&maildir, "email of dispute D1 resolved", |m| subject(m).contains("dispute D1 resolved"));
    assert!(resolved["to"].as_str().unwrap().contains("manager@pearl.example.org"), "{resolved}");
    let all = mails(&maildir);
    let raised_mails = all.iter().filter(|m| subject(m).contains("dispute D1") && subject(m).contains("Missing Comment") && !subject(m).contains("resolved")).count();
    assert_eq!(raised_mails, 1, "{:?}", all.iter().map(subject).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------------------
// 2. Answered by sending the visit again, or deleting it

#[test]
fn disputes_a_disputed_visit_sent_again_or_deleted_in_a_visits_file_answers_its_dispute_by_itself() {
    let env = TestEnv::with_example_cplis();
    let gate = Gate::start(&env, "[rules]\ntoday = \"2022-10-10\"\n");
    gate.put(PEARL_LOGIN, "week.csv", &guide_week());
    let week = wait_for_json(&result_path(&env, "week.result.json"), 30);
    assert_eq!(counts(&week).3, 0, "{week}");

    // Raised from the command line while serve runs (through its control socket).
    let cli = |args: &[&str]| env.ok(args);
    raise(cli, PEARL, "PS2", "10", "The E visit on 04/10 has no comment", "D1");
    raise(cli, PEARL, "PS3", "10", "The U visit on 05/10 has no comment", "D2");
    let (_, rows) = wait_for_export(&provider_export(&env, ORG_DIR), |rows| rows.len() == 2);
    assert_eq!((status_of(&rows, "D1").as_deref(), status_of(&rows, "D2").as_deref()), (Some("In Dispute"), Some("In Dispute")), "{rows:#?}");

    // PS2 sent again with its comment (the guide's resolution), PS5 corrected beside it.
    let again = visits_file(&[
        skinner_visit("PS2", "04/10/2022", "E", Some(("08:00", "10:00")), "Exceptional: client had a fall and the carer had to wait for the ambulance"),
        skinner_visit("PS5", "07/10/2022", "DHS", Some(("08:02", "09:06")), ""),
    ]);
    gate.put(PEARL_LOGIN, "resubmit.csv", &again);
    let r = wait_for_json(&result_path(&env, "resubmit.result.json"), 30);
    assert_eq!((counts(&r).2, counts(&r).3), (2, 0), "{r}");
    let (_, rows) = wait_for_export(&provider_export(&env, ORG_DIR), |rows| status_of(rows, "D1").as_deref() == Some("Resolution Requested"));
    let d1 = row(&rows, "D1");
    assert!(d1["Responses"].starts_with("10/10/2022 ") && d1["Responses"].contains("visit resubmitted in resubmit.csv"), "{d1:?}");
    let d2 = row(&rows, "D2");
    assert_eq!(fields(d2, &["Status", "Responses"]), ["In Dispute", ""], "only PS2's dispute is answered: {d2:?}");

    // PS3 deleted: its dispute is answered so.
    let delete = visits_file(&[visit_row(&[("VisitRef", "PS3"), ("Deleted", "1"), ("SSRef", "A332295")])]);
    gate.put(PEARL_LOGIN, "delete.csv", &delete);
    let d = wait_for_json(&result_path(&env, "delete.result.json"), 30);
    assert_eq!((counts(&d).2, counts(&d).3), (1, 0), "{d}");
    let (_, rows) = wait_for_export(&provider_export(&env, ORG_DIR), |rows| status_of(rows, "D2").as_deref() == Some("Resolution Requested"));
    let d2 = row(&rows, "D2");
    assert!(d2["Responses"].contains("visit deleted in delete.csv"), "{d2:?}");
    assert_eq!(row(&rows, "D1")["Responses"], d1["Responses"], "D1 is not answered again");

    // `dispute list` through the running server agrees.
    let list = listed(&env.ok(&["dispute", "list", "--org", PEARL, "--format", "json"]));
    let statuses: Vec<(&str, String)> = list.iter().map(|(id, d)| (id.as_str(), flat(&d["status"]))).collect();
    assert_eq!(statuses, [("D1", "Resolution Requested".to_string()), ("D2", "Resolution Requested".to_string())]);
    assert!(flat(&list["D1"]["responses"]).contains("visit resubmitted in resubmit.csv"), "{}", list["D1"]);
}

// ---------------------------------------------------------------------------------------------------------
// 3. Overdue

#[test]
fn disputes_unanswered_past_respond_by_is_overdue_in_the_list_both_exports_and_the_councils_summary() {
    let env = TestEnv::with_example_cplis();
    let oct10 = day_config(&env, "2022-10-10");
    let week = import_at(&env, &oct10, PEARL, "week.csv", &guide_week());
    assert_eq!(counts(&week).3, 0, "{week}");
    let on10 = |args: &[&str]| gw(&env, &oct10, args);
    raise(on10, PEARL, "PS3", "10", "missing comment", "D1");
    raise(on10, PEARL, "PS5", "8", "delivered 10:00-10:30 against 08:00-09:00", "D2");
    // D2 is answered with RequestResolution N: still In Dispute, but answered, so never Overdue.
    let r = import_at(&env, &oct10, PEARL, "responses.csv", "DisputeId,Response,RequestResolution\nD2,Checking the carer's timesheet,N\n");
    assert_eq!(counts(&r), (1, 0, 1, 0, 0), "{r}");

    let list = listed(&gw(&env, &oct10, &["dispute", "list", "--format", "json"]));
    assert_eq!(list.keys().collect::<Vec<_>>(), ["D1", "D2"], "{list:?}");
    assert_eq!(flat(&list["D1"]["status"]), "In Dispute", "{}", list["D1"]);
    assert!(is_day(&list["D1"]["raised_on"], "10/10/2022") && is_day(&list["D1"]["respond_by"], "17/10/2022"), "{}", list["D1"]);
    assert_eq!(flat(&list["D2"]["status"]), "In Dispute", "RequestResolution N keeps it In Dispute: {}", list["D2"]);
    assert!(flat(&list["D2"]["responses"]).contains("Checking the carer's timesheet"), "{}", list["D2"]);

    // On its respond-by day it is still only In Dispute; the day after, Overdue.
    let oct17 = day_config(&env, "2022-10-17");
    let list = listed(&gw(&env, &oct17, &["dispute", "list", "--format", "json"]));
    assert_eq!(flat(&list["D1"]["status"]), "In Dispute", "not overdue on 17/10 itself: {}", list["D1"]);
    let oct18 = day_config(&env, "2022-10-18");
    let list = listed(&gw(&env, &oct18, &["dispute", "list", "--format", "json"]));
    assert_eq!((flat(&list["D1"]["status"]).as_str(), flat(&list["D2"]["status"]).as_str()), ("Overdue", "In Dispute"), "{list:?}");
    let overdue = listed(&gw(&env, &oct18, &["dispute", "list", "--status", "Overdue", "--format", "json"]));
    assert_eq!(overdue.keys().collect::<Vec<_>>(), ["D1"], "{overdue:?}");

    // serve started again on the 18th, with a council officer whose daily summary falls due at once.
    env.ok(&["contact", "add", "--council", "--email", "officer@council.example.org", "--name", "Marge Bouvier"]);
    let port = free_port();
    let maildir = env.data().join("maildir");
    let _sink = SmtpSink::start(port, &maildir);
    let summary_at = (Local::now() - chrono::Duration::seconds(1)).format("%H:%M:%S").to_string();
    let _server = Server::with_config(&env, &format!("{}[rules]\ntoday = \"2022-10-18\"\n[schedule]\nsummary_at = \"{summary_at}\"\n", mail_config(port)));

    let (_, rows) = wait_for_export(&provider_export(&env, ORG_DIR), |rows| status_of(rows, "D1").as_deref() == Some("Overdue"));
    assert_eq!(status_of(&rows, "D2").as_deref(), Some("In Dispute"), "{rows:#?}");
    assert_eq!(fields(row(&rows, "D1"), &["RaisedOn", "RespondBy", "Responses"]), ["10/10/2022", "17/10/2022", ""]);
    let (_, council) = wait_for_export(&council_export(&env), |rows| status_of(rows, "D1").as_deref() == Some("Overdue"));
    assert_eq!(fields(row(&council, "D1"), &["Organisation", "Status"]), [PEARL, "Overdue"]);
    assert_eq!(status_of(&council, "D2").as_deref(), Some("In Dispute"));

    let summary = wait_for_mail(&maildir, "the council's daily summary", |m| m["to"].as_str().unwrap_or("").contains("officer@council.example.org"));
    let text = summary["text"].as_str().unwrap_or("");
    let at = text.find("Overdue disputes").unwrap_or_else(|| panic!("no 'Overdue disputes' in the summary:\n{text}"));
    assert!(text[at..].contains("D1"), "D1 is not listed among the overdue disputes:\n{text}");

    // The list through the running server says the same.
    let list = listed(&env.ok(&["dispute", "list", "--org", PEARL, "--format", "json"]));
    assert_eq!(flat(&list["D1"]["status"]), "Overdue", "{}", list["D1"]);
}

// ---------------------------------------------------------------------------------------------------------
// 4. A responses file's bad rows

/// A second organisation with one client and one stored visit, R1.
fn ruby_with_a_visit(env: &TestEnv, config: &Path) {
    let extract = "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n\
        900001,A900001,Mrs Luann Van Houten,,,,Ruby Home Support Ltd,,Ruby - DAPL Oxford,DAPL,,Personal Care,03/10/2022,,7,Hr,Weekly,23.77,Y\n";
    let (_d, path) = write_temp("ruby-cplis.csv", extract);
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
    let r1 = visit_row(&[
        ("VisitRef", "R1"),
        ("Deleted", "0"),
        ("PlannedVisitDate", "05/10/2022"),
        ("PlannedEntryTime", "08:00"),
        ("PlannedExitTime", "09:00"),
        ("VisitType", "DHS"),
        ("DeliveredVisitDate", "05/10/2022"),
        ("DeliveredEntryTime", "08:00"),
        ("DeliveredExitTime", "09:00"),
        ("SSRef", "A900001"),
        ("ServiceLevel", "Personal Care"),
        ("ServiceName", "Ruby - DAPL Oxford"),
    ]);
    let r = import_at(env, config, RUBY, "ruby.csv", &visits_file(&[r1]));
    assert_eq!(counts(&r).1, 1, "{r}");
}

#[test]
fn disputes_a_responses_file_refuses_unknown_foreign_closed_and_empty_answers_with_their_codes_and_applies_the_good_one() {
    let env = TestEnv::with_example_cplis();
    let cfg = day_config(&env, "2022-10-10");
    let week = import_at(&env, &cfg, PEARL, "week.csv", &guide_week());
    assert_eq!(counts(&week).3, 0, "{week}");
    ruby_with_a_visit(&env, &cfg);
    let cli = |args: &[&str]| gw(&env, &cfg, args);
    raise(cli, PEARL, "PS3", "10", "missing comment", "D1");
    raise(cli, PEARL, "PS5", "8", "delivered 10:00-10:30 against 08:00-09:00", "D2");
    raise(cli, RUBY, "R1", "9", "the client says nobody came", "D3");
    raise(cli, PEARL, "PS2", "Missing Comment", "the E visit has no comment", "D4");
    gw(&env, &cfg, &["dispute", "close", "--id", "D2", "--note", "Times corrected by phone"]);

    let answers = format!(
        "DisputeId,Response,RequestResolution\n\
         D999,No such dispute,Y\n\
         D3,Not ours to answer,Y\n\
         D2,Too late,Y\n\
         D4,,Y\n\
         D1,{P33},\n"
    );
    let r = import_at(&env, &cfg, PEARL, "responses.csv", &answers);
    assert_eq!(kind_of(&r), Some("dispute_responses"), "{r}");
    assert_eq!(counts(&r), (5, 0, 1, 4, 0), "{r}");
    assert_eq!(errors(&r), expect_errors(&[(2, "UNKNOWN_DISPUTE"), (3, "UNKNOWN_DISPUTE"), (4, "DISPUTE_CLOSED"), (5, "REQUIRED")]), "{r:#}");
    let foreign = r["issues"].as_array().unwrap().iter().find(|i| i["row"] == 3).unwrap();
    assert!(!flat(&foreign["message"]).contains("Van Houten") && !flat(&foreign["message"]).contains("A900001"), "nothing of Ruby's dispute is told to Pearl: {foreign}");

    // The good row applied; the refused ones changed nothing.
    let list = listed(&gw(&env, &cfg, &["dispute", "list", "--format", "json"]));
    assert_eq!(list.keys().collect::<Vec<_>>(), ["D1", "D2", "D3", "D4"], "{list:?}");
    let state = |id: &str| (flat(&list[id]["status"]), flat(&list[id]["responses"]));
    assert_eq!(state("D1").0, "Resolution Requested", "{}", list["D1"]);
    assert!(state("D1").1.ends_with(&format!(": {P33}")), "{}", list["D1"]);
    assert_eq!(state("D2"), ("Resolved".to_string(), String::new()), "{}", list["D2"]);
    assert_eq!(state("D3"), ("In Dispute".to_string(), String::new()), "{}", list["D3"]);
    assert_eq!(state("D4"), ("In Dispute".to_string(), String::new()), "{}", list["D4"]);
    assert_eq!(flat(&list["D3"]["organisation"]), RUBY);
    assert_eq!((flat(&list["D4"]["dispute_type"]).as_str(), flat(&list["D4"]["reason"]).as_str()), ("10", "Missing Comment"), "{}", list["D4"]);

    // Each provider's export has its own disputes only (D2 resolved today is still shown); the
    // council's has all of them.
    let (_, pearl) = read_export(&provider_export(&env, ORG_DIR));
    assert_eq!(ids(&pearl), ["D1", "D2", "D4"], "{pearl:#?}");
    assert_eq!(fields(row(&pearl, "D2"), &["Status", "ResolvedOn", "Note"]), ["Resolved", "10/10/2022", "Times corrected by phone"]);
    let (_, ruby) = read_export(&provider_export(&env, RUBY_DIR));
    assert_eq!(ids(&ruby), ["D3"], "{ruby:#?}");
    let (_, council) = read_export(&council_export(&env));
    let orgs: Vec<(&str, &str)> = council.iter().map(|r| (r["DisputeId"].as_str(), r["Organisation"].as_str())).collect();
    assert_eq!(orgs, [("D1", PEARL), ("D2", PEARL), ("D3", RUBY), ("D4", PEARL)]);
}

// ---------------------------------------------------------------------------------------------------------
// 5. A council disputes file's bad rows, and DeleteVisit

#[test]
fn disputes_a_council_file_refuses_bad_rows_with_their_codes_applies_the_good_ones_and_delete_visit_deletes_the_visit() {
    let env = TestEnv::with_example_cplis();
    let cfg = day_config(&env, "2022-10-10");
    let mut rows = vec![skinner_visit("PS1", "03/10/2022", "DHS", Some(("08:00", "09:00")), "")];
    rows.extend(guide_visits());
    let week = import_at(&env, &cfg, PEARL, "week.csv", &visits_file(&rows));
    assert_eq!(counts(&week).3, 0, "{week}");
    let cli = |args: &[&str]| gw(&env, &cfg, args);
    raise(cli, PEARL, "PS3", "10", "missing comment", "D1");
    gw(&env, &cfg, &["dispute", "close", "--id", "D1", "--note", "Comment received"]);
    raise(cli, PEARL, "PS5", "8", "delivered 10:00-10:30 against 08:00-09:00", "D2");
    raise(cli, PEARL, "PS1", "6", "the client was in hospital that week", "D3");
    // PS1 (03/10/2022) falls in a locked period.
    env.ok(&["period", "lock", "--until", "2022-10-03"]);

    let gate = Gate::start(&env, "[rules]\ntoday = \"2022-10-10\"\n");
    let file = "Organisation,VisitRef,DisputeType,Details,DisputeId,Close,Note,DeleteVisit\n\
        Pearl Carers Ltd,PS99,10,Where is this visit?,,,,\n\
        Nobody Care Ltd,PS2,10,Not a provider,,,,\n\
        Pearl Carers Ltd,PS2,11,No such type,,,,\n\
        ,,,,D1,Y,Closing it again,\n\
        Pearl Carers Ltd,PS5,Incorrect Data,The same query again,,,,\n\
        Pearl Carers Ltd,PS2,Missing Comment,The E visit on 04/10 has no comment,,,,\n\
        Pearl Carers Ltd,PS1,10,,,,,\n\
        ,,,,D2,Y,No response within 7 days: the visit is deleted,Y\n\
        ,,,,D3,Y,Deleting a locked visit,Y\n\
        ,,,,D3,,,Y\n\
        ,,,,D77,Y,,\n\
        Pearl Carers Ltd,PS3,10,Raising and closing at once,D3,Y,,\n\
        Nobody Care Ltd,,,,D3,Y,Another organisation's dispute,Y\n";
    gate.put(COUNCIL_LOGIN, "queries.csv", file);
    let r = gate.council_result("queries.result.json");
    assert_eq!(kind_of(&r), Some("disputes"), "{r}");
    assert_eq!(counts(&r), (13, 1, 1, 11, 0), "{r:#}");
    let expected = expect_errors(&[
        (2, "UNKNOWN_VISIT"),
        (3, "UNKNOWN_VISIT"),
        (4, "UNKNOWN_DISPUTE_TYPE"),
        (5, "DISPUTE_CLOSED"),
        (6, "ALREADY_DISPUTED"),
        (8, "REQUIRED"),
        (10, "PERIOD_LOCKED"),
        (11, "REQUIRED"),
        (12, "UNKNOWN_DISPUTE"),
        (13, "REF_MISMATCH"),
        (14, "REF_MISMATCH"),
    ]);
    let mut each_once = errors(&r);
    each_once.dedup();
    assert_eq!(each_once, expected, "{r:#}");
    let closed_again = r["issues"].as_array().unwrap().iter().find(|i| i["row"] == 5).unwrap();
    assert_eq!(closed_again["ref"], "D1", "a close row is told by its DisputeId: {closed_again}");
    let mixed = r["issues"].as_array().unwrap().iter().find(|i| i["row"] == 13).unwrap();
    assert!(mixed["message"].as_str().unwrap().starts_with("VisitRef 'PS3' is not the visit of dispute D3 (PS1)"), "{mixed}");
    let other = r["issues"].as_array().unwrap().iter().find(|i| i["row"] == 14).expect("a close row naming another organisation is refused");
    assert_eq!((&other["code"], &other["field"]), (&"REF_MISMATCH".into(), &"Organisation".into()), "{other}");
    assert!(other["message"].as_str().unwrap().starts_with("Organisation 'Nobody Care Ltd' is not the organisation of dispute D3 (Pearl Carers Ltd)"), "{other}");

    // The council's export over SFTP: D4 raised by name as type 10; D2 closed with its visit deleted;
    // D3 neither closed nor deleted; D1 as it was.
    let (header, council) = gate.export(COUNCIL_LOGIN, |rows| find(rows, "D4").is_some() && status_of(rows, "D2").as_deref() == Some("Resolved"));
    assert_eq!(header, format!("Organisation,{COLUMNS}"));
    assert_eq!(ids(&council), ["D1", "D2", "D3", "D4"], "{council:#?}");
    assert!(council.iter().all(|r| r["Organisation"] == PEARL), "{council:#?}");
    let d4 = row(&council, "D4");
    assert_eq!(
        fields(d4, &["Status", "DisputeType", "Reason", "Details", "VisitRef", "VisitDate", "RaisedOn", "RespondBy"]),
        ["In Dispute", "10", "Missing Comment", "The E visit on 04/10 has no comment", "PS2", "04/10/2022", "10/10/2022", "17/10/2022"]
    );
    let d2 = row(&council, "D2");
    assert_eq!(
        fields(d2, &["Status", "ResolvedOn", "Note", "VisitDeleted", "VisitRef"]),
        ["Resolved", "10/10/2022", "No response within 7 days: the visit is deleted", "Y", "PS5"]
    );
    let d3 = row(&council, "D3");
    assert_eq!(fields(d3, &["Status", "ResolvedOn", "VisitDeleted"]), ["In Dispute", "", ""], "PERIOD_LOCKED leaves D3 open: {d3:?}");
    let d1 = row(&council, "D1");
    assert_eq!(fields(d1, &["Status", "Note"]), ["Resolved", "Comment received"], "{d1:?}");

    // PS5 is deleted; PS1 (locked) is not.
    let refs: Vec<String> = env.visits(PEARL).iter().map(|v| flat(&v["visit_ref"])).collect();
    assert!(!refs.contains(&"PS5".to_string()), "PS5 is still listed: {refs:?}");
    for kept in ["PS1", "PS2", "PS3"] {
        assert!(refs.contains(&kept.to_string()), "{kept} is gone: {refs:?}");
    }
    // The provider sees the deletion in its own export.
    let (_, pearl) = wait_for_export(&provider_export(&env, ORG_DIR), |rows| status_of(rows, "D2").as_deref() == Some("Resolved"));
    assert_eq!(row(&pearl, "D2")["VisitDeleted"], "Y");

    // Each refused row is told its reason once.
    assert_eq!(errors(&r), expected, "one issue per refused row: {r:#}");

    // The lock is judged on the visit as it is now, not as it was raised: PS7 raised on 06/10, sent
    // again dated 04/10, then 04/10 locked: DeleteVisit is refused and both stay.
    let sent = import_at(&env, &cfg, PEARL, "ps7.csv", &visits_file(&[skinner_visit("PS7", "06/10/2022", "DHS", Some(("08:00", "09:00")), "")]));
    assert_eq!(counts(&sent).1, 1, "{sent}");
    raise(cli, PEARL, "PS7", "9", "the client says this visit did not happen", "D5");
    let moved = import_at(&env, &cfg, PEARL, "ps7-moved.csv", &visits_file(&[skinner_visit("PS7", "04/10/2022", "DHS", Some(("08:00", "09:00")), "")]));
    assert_eq!(counts(&moved).2, 1, "{moved}");
    env.ok(&["period", "lock", "--until", "2022-10-04"]);
    let out = env.run(&["--config", cfg.to_str().unwrap(), "dispute", "close", "--id", "D5", "--delete-visit"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PERIOD_LOCKED") && err.contains("dated 04/10/2022"), "{err}");
    assert!(env.visits(PEARL).iter().any(|v| v["visit_ref"] == "PS7"), "PS7 must stay");
    let list = listed(&gw(&env, &cfg, &["dispute", "list", "--format", "json"]));
    assert_eq!(flat(&list["D5"]["status"]), "Resolution Requested", "{list:#?}");

    // Deleting a visit closes every other open dispute on it; a raise on it is then UNKNOWN_VISIT.
    raise(cli, PEARL, "PS3", "8", "the planned times look wrong", "D6");
    raise(cli, PEARL, "PS3", "9", "the client says the carer never came", "D7");
    gw(&env, &cfg, &["dispute", "close", "--id", "D6", "--delete-visit", "--note", "No response"]);
    let list = listed(&gw(&env, &cfg, &["dispute", "list", "--format", "json"]));
    assert_eq!(flat(&list["D7"]["status"]), "Resolved", "{list:#?}");
    assert_eq!(flat(&list["D7"]["note"]), "closed with dispute D6: the visit was deleted");
    let out = env.run(&["--config", cfg.to_str().unwrap(), "dispute", "raise", "--org", PEARL, "--visit", "PS3", "--type", "3", "--details", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNKNOWN_VISIT"), "{}", String::from_utf8_lossy(&out.stderr));

    // The command has the disputes file's checks and codes: a type outside 1-10, blank or too long Details.
    let too_long = "a".repeat(8001);
    for (kind, details, code) in [("11", "x", "UNKNOWN_DISPUTE_TYPE"), ("8", " ", "REQUIRED"), ("8", too_long.as_str(), "TOO_LONG")] {
        let out = env.run(&["--config", cfg.to_str().unwrap(), "dispute", "raise", "--org", PEARL, "--visit", "PS2", "--type", kind, "--details", details]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && err.contains(code), "{kind}: {err}");
    }

    // Each side's file in the other's inbox is told where it goes, not judged as another kind.
    let misplaced = import_at(&env, &cfg, PEARL, "queries.csv", "Organisation,VisitRef,DisputeType,Details\nPearl Carers Ltd,PS2,10,x\n");
    assert_eq!(codes(&misplaced), ["UNKNOWN_FILE_KIND"], "{misplaced:#}");
    assert!(flat(&misplaced["issues"][0]["message"]).starts_with("this is the council's disputes file"), "{misplaced:#}");
    gate.put(COUNCIL_LOGIN, "answers.csv", "DisputeId,Response\nD5,resent\n");
    let r = gate.council_result("answers.result.json");
    assert_eq!(codes(&r), ["UNKNOWN_FILE_KIND"], "{r:#}");
    assert!(flat(&r["issues"][0]["message"]).starts_with("this is a provider's dispute responses file"), "{r:#}");

    // --status takes the statuses and Open (every one not resolved), and refuses anything else.
    let open = listed(&gw(&env, &cfg, &["dispute", "list", "--status", "open", "--format", "json"]));
    assert_eq!(open.keys().map(String::as_str).collect::<Vec<_>>(), ["D3", "D4", "D5"], "{open:#?}");
    let out = env.run(&["--config", cfg.to_str().unwrap(), "dispute", "list", "--status", "banana"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------------------------------
// 6. A crash between deleting the visit and closing its dispute

#[test]
fn disputes_a_crash_after_the_visit_is_deleted_and_before_the_dispute_closes_leaves_both_as_they_were() {
    let env = TestEnv::with_example_cplis();
    let cfg = day_config(&env, "2022-10-10");
    let week = import_at(&env, &cfg, PEARL, "week.csv", &visits_file(&guide_visits()));
    assert_eq!(counts(&week).3, 0, "{week}");
    raise(|args: &[&str]| gw(&env, &cfg, args), PEARL, "PS5", "8", "delivered 10:00-10:30 against 08:00-09:00", "D1");
    let close = ["--config", cfg.to_str().unwrap(), "dispute", "close", "--id", "D1", "--delete-visit"];
    let crashed = env.cmd(&close).env("GATEWAY_FAULT", "visits-deleted").output().unwrap();
    assert!(!crashed.status.success() && String::from_utf8_lossy(&crashed.stderr).contains("GATEWAY_FAULT=visits-deleted"), "{crashed:?}");
    // Opening the store again rolls the deletion back: the visit is there and the dispute open.
    assert!(env.visits(PEARL).iter().any(|v| v["visit_ref"] == "PS5"), "PS5 was deleted without its dispute closing");
    let list = listed(&gw(&env, &cfg, &["dispute", "list", "--format", "json"]));
    assert_eq!((flat(&list["D1"]["status"]), flat(&list["D1"]["visit_deleted"])), ("In Dispute".to_string(), String::new()), "{list:#?}");
    // Done again, it is done once.
    gw(&env, &cfg, &close[2..]);
    assert!(!env.visits(PEARL).iter().any(|v| v["visit_ref"] == "PS5"));
    let list = listed(&gw(&env, &cfg, &["dispute", "list", "--format", "json"]));
    assert_eq!(flat(&list["D1"]["visit_deleted"]), "Y", "{list:#?}");
}
