//! Issue 10, the council's clock: payment periods locked on schedule while `serve` runs (never moved
//! back), council contacts, and the council's daily summary email through a real SMTP server.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Local, NaiveDate};
use serde_json::Value;

use crate::guide::{visit_row, visits_file};
use crate::helpers::{example, write_temp, TestEnv, PEARL, VISITS_HEADER};
use crate::mail::{free_port, mail_config, LoggedServer, SmtpSink};
use crate::server::{inbox, result_path, wait_for_json};

/// A delivered home-support visit of Mrs Krabappel's (examples/cplis.csv) planned on `day`.
fn visit_on(visit_ref: &str, day: NaiveDate) -> String {
    let date = day.format("%d/%m/%Y").to_string();
    visit_row(&[
        ("VisitRef", visit_ref),
        ("Deleted", "0"),
        ("PlannedVisitDate", &date),
        ("PlannedEntryTime", "09:00"),
        ("PlannedExitTime", "09:30"),
        ("VisitType", "DHS"),
        ("DeliveredVisitDate", &date),
        ("DeliveredEntryTime", "09:00"),
        ("DeliveredExitTime", "09:30"),
        ("SSRef", "A123456"),
        ("ServiceLevel", "Home Support"),
        ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
    ])
}

/// Drops a visits file into Pearl's inbox (written aside, renamed in) and returns its result.
fn drop_and_wait(env: &TestEnv, name: &str, rows: &[String]) -> Value {
    let part = inbox(env).join(format!("{name}.part"));
    std::fs::write(&part, visits_file(rows)).unwrap();
    std::fs::rename(&part, inbox(env).join(name)).unwrap();
    let stem = name.strip_suffix(".csv").unwrap();
    wait_for_json(&result_path(env, &format!("{stem}.result.json")), 60)
}

/// The codes of one VisitRef's issues.
fn codes_of(result: &Value, visit_ref: &str) -> Vec<String> {
    result["issues"].as_array().unwrap().iter().filter(|i| i["ref"] == visit_ref).map(|i| i["code"].as_str().unwrap().to_string()).collect()
}

/// Waits until the local clock is at least a minute from midnight, so "today" holds for the test.
fn away_from_midnight() {
    while Local::now().format("%H:%M").to_string().as_str() >= "23:59" {
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn today() -> NaiveDate {
    Local::now().date_naive()
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// Four-weekly periods of which the latest ended yesterday, and a lock schedule.
fn schedule_config(after_days: u32, lock_at: &str) -> String {
    format!(
        "[periods]\nfirst_start = {}\nlength_days = 28\n[schedule]\nauto_lock = true\nlock_after_days = {after_days}\nlock_at = \"{lock_at}\"\n",
        today() - days(28)
    )
}

/// The log line of the lock until `until` made by the schedule.
fn lock_line(log: &str, until: NaiveDate) -> Option<String> {
    log.lines().find(|l| l.contains(" locked ") && l.contains(&format!("until={until}")) && l.contains("by schedule")).map(String::from)
}

#[test]
fn schedule_locks_a_period_while_serve_runs_and_a_later_row_dated_in_it_is_period_locked() {
    away_from_midnight();
    let env = TestEnv::with_example_cplis();
    let yesterday = today() - days(1);
    // Periods end yesterday (the latest) and 29 days ago; each is locked on the day after it ends
    // at lock_at. At start only the older one is due: the newer falls due some seconds later.
    let lock_at = (Local::now() + chrono::Duration::seconds(20)).format("%H:%M:%S").to_string();
    let server = LoggedServer::start(&env, &schedule_config(0, &lock_at), &[]);
    let log = server.wait_for_log("lock schedule started", 30);
    let earlier = today() - days(29);
    assert!(lock_line(&server.wait_for_log(&format!("until={earlier}"), 30), earlier).is_some(), "{log}");
    let log = server.wait_for_log(&format!("until={yesterday}"), 90);
    assert!(lock_line(&log, yesterday).is_some(), "{log}");
    let first = log.find(&format!("until={earlier}")).unwrap();
    let second = log.find(&format!("until={yesterday}")).unwrap();
    assert!(first < second, "the period ending yesterday was locked at start, not while serving:\n{log}");

    let r = drop_and_wait(&env, "after-lock.csv", &[visit_on("Y1", yesterday), visit_on("T1", today())]);
    assert_eq!(codes_of(&r, "Y1"), ["PERIOD_LOCKED"], "{r:#}");
    assert!(!codes_of(&r, "T1").contains(&"PERIOD_LOCKED".to_string()), "today is not in a locked period: {r:#}");
    assert_eq!(r["counts"]["rejected"], 1, "{r:#}");
}

#[test]
fn schedule_an_earlier_schedule_never_moves_the_lock_back() {
    away_from_midnight();
    let env = TestEnv::with_example_cplis();
    let yesterday = today() - days(1);
    {
        // No days after: the period that ended yesterday was due at 00:00 today, so it is locked at start.
        let server = LoggedServer::start(&env, &schedule_config(0, "00:00"), &[]);
        let log = server.wait_for_log(&format!("until={yesterday}"), 30);
        assert!(lock_line(&log, yesterday).is_some(), "{log}");
    }
    // 40 days after: the latest period due ended 57 days ago, before the lock in force.
    let server = LoggedServer::start(&env, &schedule_config(40, "00:00"), &[]);
    server.wait_for_log("lock schedule started", 30);
    let r = drop_and_wait(&env, "later.csv", &[visit_on("Y2", yesterday), visit_on("M2", today() - days(40)), visit_on("T2", today())]);
    assert_eq!(codes_of(&r, "Y2"), ["PERIOD_LOCKED"], "the lock moved back: {r:#}");
    assert_eq!(codes_of(&r, "M2"), ["PERIOD_LOCKED"], "{r:#}");
    assert!(!codes_of(&r, "T2").contains(&"PERIOD_LOCKED".to_string()), "{r:#}");
    let log = server.log();
    assert!(!log.contains(&format!("until={}", today() - days(57))), "{log}");
}

#[test]
fn schedule_council_contacts_are_added_listed_and_removed_apart_from_the_organisations() {
    let env = TestEnv::with_example_cplis();
    let added = env.ok(&["contact", "add", "--council", "--email", "Officer@Council.example.org", "--name", "Marge Bouvier"]);
    assert!(added.contains("the council: Marge Bouvier <Officer@Council.example.org> gets the daily summary at 07:00"), "{added}");
    env.ok(&["contact", "add", "--org", PEARL, "--email", "zoe@pearl.example.org"]);
    assert_eq!(env.ok(&["contact", "list", "--council"]), "(council)\tOfficer@Council.example.org\tMarge Bouvier\tsummary\n");
    let providers = env.ok(&["contact", "list"]);
    assert!(providers.contains("zoe@pearl.example.org") && !providers.contains("Officer@"), "{providers}");
    let out = env.run(&["contact", "add", "--council", "--org", PEARL, "--email", "x@council.example.org"]);
    assert_eq!(out.status.code(), Some(2), "--council and --org together: {}", String::from_utf8_lossy(&out.stderr));
    env.ok(&["contact", "remove", "--council", "--email", "officer@council.example.org"]);
    assert_eq!(env.ok(&["contact", "list", "--council"]), "");
    let again = env.run(&["contact", "remove", "--council", "--email", "officer@council.example.org"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("the council has no contact officer@council.example.org"));
}

/// Imports through the command line; exit 0 or 1 are both results.
fn import(env: &TestEnv, path: &Path) -> Value {
    env.import(PEARL, path)
}

#[test]
fn schedule_the_councils_daily_summary_arrives_once_with_each_organisations_figures() {
    let env = TestEnv::with_example_cplis();
    env.ok(&["org", "add", "--name", "Quiet Care Ltd"]);
    env.ok(&["contact", "add", "--council", "--email", "officer@council.example.org", "--name", "Marge Bouvier"]);
    let week = import(&env, &example("visits-week.csv"));
    let (_g1, stray) = write_temp(
        "stray.csv",
        &visits_file(&[visit_row(&[
            ("VisitRef", "S1"),
            ("Deleted", "0"),
            ("PlannedVisitDate", "03/08/2022"),
            ("PlannedEntryTime", "09:00"),
            ("PlannedExitTime", "09:30"),
            ("VisitType", "DHS"),
            ("DeliveredVisitDate", "03/08/2022"),
            ("DeliveredEntryTime", "09:00"),
            ("DeliveredExitTime", "09:30"),
            ("SSRef", "Z999999"),
            ("ServiceLevel", "Home Support"),
            ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
        ])]),
    );
    let stray = import(&env, &stray);
    assert!(codes_of(&stray, "S1").contains(&"UNMATCHED".to_string()), "{stray:#}");
    let header_without_ssref: Vec<&str> = VISITS_HEADER.split(',').filter(|h| *h != "SSRef").collect();
    let (_g2, broken) = write_temp("no-ssref.csv", &format!("{}\n", header_without_ssref.join(",")));
    let broken = import(&env, &broken);
    assert_eq!(broken["status"], "failed", "{broken:#}");
    env.ok(&["period", "lock", "--until", "2022-08-03"]);
    let unmatched = env.ok(&["visits", "list", "--org", PEARL, "--status", "unmatched", "--format", "json"]);
    let unmatched = serde_json::from_str::<Value>(&unmatched).unwrap().as_array().unwrap().len();
    assert!(unmatched >= 1);
    let n = |r: &Value, k: &str| r["counts"][k].as_u64().unwrap();
    let read = n(&week, "read") + n(&stray, "read") + n(&broken, "read");
    let rejected = n(&week, "rejected") + n(&stray, "rejected") + n(&broken, "rejected");

    // The summary time has passed since those files and the lock: the first poll queues it.
    std::thread::sleep(Duration::from_millis(1100));
    let summary_at = Local::now().format("%H:%M:%S").to_string();
    let port = free_port();
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    let config = format!("{}[schedule]\nsummary_at = \"{summary_at}\"\n", mail_config(port));
    {
        let _server = LoggedServer::start(&env, &config, &[]);
        let mails = sink.wait_for(1, 30);
        assert_eq!(mails.len(), 1, "{mails:#?}");
        let m = &mails[0];
        assert_eq!(m["to"], "Marge Bouvier <officer@council.example.org>");
        let day = Local::now().format("%d/%m/%Y");
        assert_eq!(m["subject"], format!("Daily summary {day}: 3 files from 1 organisation, 1 failed, 1 organisation silent for 7 days, 1 lock"));
        let text = m["text"].as_str().unwrap();
        let visits = if unmatched == 1 { "visit".to_string() } else { "visits".to_string() };
        let pearl = format!("- Pearl Carers Ltd: 3 files, 1 failed; {read} rows read, {rejected} rejected; {unmatched} unmatched {visits} now");
        assert!(text.contains(&pearl), "{pearl}\n{text}");
        assert!(text.contains("- Quiet Care Ltd: no files; 0 unmatched visits now"), "{text}");
        assert!(text.contains("- Pearl Carers Ltd, no-ssref.csv (received "), "{text}");
        assert!(text.contains("SSRef"), "the failed file's reason names the missing heading: {text}");
        assert!(text.contains("Organisations that sent nothing in the last 7 days:\n- Quiet Care Ltd (last file: never)\n"), "{text}");
        assert!(text.contains("by hand: every visit dated on or before 03/08/2022 is locked"), "{text}");
        let html = m["html"].as_str().unwrap();
        assert!(html.contains("<li><strong>Quiet Care Ltd</strong> (last file: never)</li>"), "{html}");
    }
    // Started again the same day: the day's summary is not queued again. The sign that the outbox has
    // polled past it: a provider's email for a file dropped after the restart arrives.
    env.ok(&["contact", "add", "--org", PEARL, "--email", "zoe@pearl.example.org"]);
    let _server = LoggedServer::start(&env, &config, &[]);
    let started = Instant::now();
    drop_and_wait(&env, "after-restart.csv", &[visit_on("R1", NaiveDate::from_ymd_opt(2022, 8, 10).unwrap())]);
    let mails = sink.wait_for(2, 30);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert_eq!(mails[1]["to"], "zoe@pearl.example.org");
}

#[test]
fn schedule_a_lock_by_hand_never_moves_back_either() {
    let env = TestEnv::with_example_cplis();
    env.ok(&["period", "lock", "--until", "2022-08-07"]);
    let out = env.ok(&["period", "lock", "--until", "2022-08-02"]);
    // It said it had locked to 02/08/2022 (until 2026-12-03): where the lock stands is what is true.
    assert_eq!(out.trim(), "already locked: every visit dated on or before 07/08/2022 is locked, so 02/08/2022 is too; a lock never moves back, nothing changed");
    let (_g, path) = write_temp("v.csv", &visits_file(&[visit_on("H1", NaiveDate::from_ymd_opt(2022, 8, 5).unwrap())]));
    let r = env.import(PEARL, &path);
    assert_eq!(codes_of(&r, "H1"), ["PERIOD_LOCKED"], "the lock moved back to 02/08/2022: {r:#}");
}
