//! Command-line behaviour not tied to one guide example: validate, period lock, organisation and carer
//! checks, the accepted date and time forms, headings, encodings, duplicate refs and the result CSV.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::guide::{codes_of, refs, visit, visit_row, visits_file};
use crate::helpers::*;

/// Ned Flanders (A352035, Personal Care, Pearl Carers - DAPL South, 2 h weekly from 03/10/2022): one
/// delivered visit. Two hours a visit, so a file with one visit per week tallies with the CPLI.
fn ned(vref: &str, date: &str, entry: &str, exit: &str) -> String {
    visit_row(&[
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", entry),
        ("PlannedExitTime", exit),
        ("VisitType", "DHS"),
        ("DeliveredVisitDate", date),
        ("DeliveredEntryTime", entry),
        ("DeliveredExitTime", exit),
        ("SSRef", "A352035"),
        ("ServiceLevel", "Personal Care"),
        ("ServiceName", "Pearl Carers - DAPL South"),
    ])
}

fn ned_with(vref: &str, date: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", "08:00"),
        ("PlannedExitTime", "10:00"),
        ("VisitType", "DHS"),
        ("DeliveredVisitDate", date),
        ("DeliveredEntryTime", "08:00"),
        ("DeliveredExitTime", "10:00"),
        ("SSRef", "A352035"),
        ("ServiceLevel", "Personal Care"),
        ("ServiceName", "Pearl Carers - DAPL South"),
    ];
    for (k, v) in extra {
        match pairs.iter_mut().find(|(h, _)| h == k) {
            Some(p) => p.1 = v,
            None => pairs.push((k, v)),
        }
    }
    visit_row(&pairs)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------------------
// validate

#[test]
fn validate_judges_the_example_week_but_stores_nothing() {
    let env = TestEnv::with_example_cplis();
    let r = env.validate(&["--org", PEARL], &example("visits-week.csv"));
    let c = counts(&r);
    assert_eq!((c.0, c.3), (21, 0), "{r:#}");
    assert!(codes(&r).is_empty(), "{r:#}");
    assert!(env.visits(PEARL).is_empty(), "validate stored visits");
    let results = env.org_dir("pearl-carers-ltd").join("results");
    let stored: Vec<_> = std::fs::read_dir(&results)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "validate wrote result files: {stored:?}");
    // And an import afterwards still sees every row as new.
    assert_eq!(counts(&env.import(PEARL, &example("visits-week.csv"))), (21, 21, 0, 0, 0));
}

#[test]
fn validate_exits_1_when_a_row_has_an_error() {
    let env = TestEnv::with_example_cplis();
    let text = visits_file(&[ned("G1", "03/10/2022", "08:00", "10:00"), ned("B1", "32/10/2022", "08:00", "10:00")]);
    let (_g, path) = write_temp("bad.csv", &text);
    let out = env.run(&["validate", "--org", PEARL, "--format", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(codes_of(&r, "B1").contains(&"BAD_DATE".to_string()), "{r:#}");
    assert!(env.visits(PEARL).is_empty());
    // the same without the bad row exits 0
    let (_g2, clean) = write_temp("good.csv", &visits_file(&[ned("G1", "03/10/2022", "08:00", "10:00")]));
    let out = env.run(&["validate", "--org", PEARL, "--format", "json", clean.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn validate_with_an_organisation_the_store_does_not_have_exits_2_unless_the_given_extract_names_it() {
    let env = TestEnv::with_example_cplis();
    let week = example("visits-week.csv");
    let out = env.run(&["validate", "--org", "Pearl Carer Ltd", week.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no organisation 'Pearl Carer Ltd'"), "{}", String::from_utf8_lossy(&out.stderr));
    // An extract not loaded yet, given with --cplis, may name it.
    let extract = std::fs::read_to_string(example("cplis.csv")).unwrap().replace(",Pearl Carers Ltd,", ",Opal Care Ltd,").replace("6513270E-269E-0D37-F2A7-4DE452E6B438", "");
    let (_c, cplis) = write_temp("opal.csv", &extract);
    let out = env.run(&["validate", "--org", "Opal Care Ltd", "--cplis", cplis.to_str().unwrap(), week.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `validate --org` with an extract not loaded yet judges OrganisationRef and ServiceRef as the import
/// after that load does: the organisation's GUID and services are the extract's.
#[test]
fn validate_with_an_extract_checks_organisation_and_service_guids_as_import_does() {
    let rows = [
        // Another organisation's GUID as OrganisationRef.
        "G1,0,10/10/2022,08:00,08:30,C,,,,,,,,,x,,A123456,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,AAAAAAAA-0000-0000-0000-000000000001,",
        // Zone 6's ServiceRef beside the DAPL South's name.
        "G2,0,10/10/2022,20:00,20:30,C,,,,,,,,,x,,A123456,,,Home Support,,36F675CC-81E7-4EF5-E8E2-5D940ED90475,Pearl Carers - DAPL South,,",
    ];
    let (_d, file) = write_temp("guids.csv", &format!("{VISITS_HEADER}\n{}\n", rows.join("\n")));
    let codes_of = |r: &Value| -> Vec<(String, String)> {
        r["issues"].as_array().unwrap().iter().filter(|i| i["severity"] == "error").map(|i| (i["ref"].as_str().unwrap_or("").to_string(), i["code"].as_str().unwrap().to_string())).collect()
    };
    let cplis = example("cplis.csv");
    let validated = TestEnv::new().validate(&["--org", PEARL, "--cplis", cplis.to_str().unwrap()], &file);
    let imported = TestEnv::with_example_cplis().import(PEARL, &file);
    assert_eq!(codes_of(&imported), [("G1".to_string(), "WRONG_ORGANISATION".to_string()), ("G2".to_string(), "REF_MISMATCH".to_string())]);
    assert_eq!(codes_of(&validated), codes_of(&imported));
}

#[test]
fn import_exits_1_when_any_row_is_rejected_and_0_when_clean() {
    let env = TestEnv::with_example_cplis();
    let (_g, bad) = write_temp("bad.csv", &visits_file(&[ned("B1", "32/10/2022", "08:00", "10:00")]));
    let out = env.run(&["import", "--org", PEARL, "--format", "json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let (_g2, good) = write_temp("good.csv", &visits_file(&[ned("G1", "03/10/2022", "08:00", "10:00")]));
    let out = env.run(&["import", "--org", PEARL, "--format", "json", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

// ---------------------------------------------------------------------------------------------------------
// period lock

#[test]
fn rows_dated_in_a_locked_period_are_rejected_period_locked() {
    let env = TestEnv::with_example_cplis();
    env.ok(&["period", "lock", "--until", "2022-08-03"]);
    let r = env.import(PEARL, &example("visits-week.csv"));
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (21, 12, 0, 9), "{r:#}");
    let locked = issues_with(&r, "PERIOD_LOCKED");
    let locked_refs: BTreeSet<String> = locked.iter().map(|i| i["ref"].as_str().unwrap().to_string()).collect();
    assert_eq!(locked_refs, set(&["V1", "V2", "V3", "V4", "V5", "V6", "V15", "V16", "V17"]), "{r:#}");
    assert!(locked.iter().all(|i| i["severity"] == "error"));
    let rows: BTreeSet<u64> = locked.iter().map(|i| i["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [2, 3, 4, 5, 6, 7, 16, 17, 18].into_iter().collect());
    let listed = refs(&env.visits(PEARL));
    assert_eq!(listed.len(), 12);
    assert!(!listed.contains("V1") && listed.contains("V7") && listed.contains("V18"), "{listed:?}");
}

#[test]
fn a_deletion_of_a_visit_dated_in_a_locked_period_is_rejected_too() {
    let env = TestEnv::with_example_cplis();
    assert_eq!(counts(&env.import(PEARL, &example("visits-week.csv"))).1, 21);
    env.ok(&["period", "lock", "--until", "2022-08-03"]);
    let del = |vref: &str| visit_row(&[("VisitRef", vref), ("Deleted", "1"), ("SSRef", "A123456")]);
    let (_g, path) = write_temp("delete.csv", &visits_file(&[del("V1"), del("V7")]));
    let r = env.import(PEARL, &path);
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (2, 0, 1, 1), "{r:#}");
    assert_eq!(codes_of(&r, "V1"), vec!["PERIOD_LOCKED"], "{r:#}");
    let listed = refs(&env.visits(PEARL));
    assert!(listed.contains("V1"), "a locked visit was deleted");
    assert!(!listed.contains("V7"), "the unlocked deletion did not happen");
    assert_eq!(listed.len(), 20);
}

#[test]
fn a_visit_stored_in_a_locked_period_cannot_be_moved_out_of_it_by_an_update() {
    // SPEC 3.5 rejects deletions of locked visits: the stored visit's date counts, not only the row's. Moving
    // V1 (01/08/2022, locked) to 10/08/2022 would take it out of the locked period just as a deletion would.
    let env = TestEnv::with_example_cplis();
    assert_eq!(counts(&env.import(PEARL, &example("visits-week.csv"))).1, 21);
    env.ok(&["period", "lock", "--until", "2022-08-03"]);
    let moved = visit_row(&[
        ("VisitRef", "V1"),
        ("Deleted", "0"),
        ("PlannedVisitDate", "10/08/2022"),
        ("PlannedEntryTime", "09:00"),
        ("PlannedExitTime", "09:30"),
        ("VisitType", "DHS"),
        ("DeliveredVisitDate", "10/08/2022"),
        ("DeliveredEntryTime", "09:02"),
        ("DeliveredExitTime", "09:31"),
        ("SSRef", "A123456"),
        ("ServiceLevel", "Home Support"),
        ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
    ]);
    let (_g, path) = write_temp("move.csv", &visits_file(&[moved]));
    let r = env.import(PEARL, &path);
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (1, 0, 0, 1), "the locked visit was changed: {r:#}");
    assert_eq!(codes_of(&r, "V1"), vec!["PERIOD_LOCKED"], "{r:#}");
    let visits = env.visits(PEARL);
    assert_eq!(visit(&visits, "V1")["planned_visit_date"], "2022-08-01");
}

// ---------------------------------------------------------------------------------------------------------
// organisation and carers

#[test]
fn a_row_naming_another_organisation_is_rejected_wrong_organisation() {
    let env = TestEnv::with_example_cplis();
    let rows = [
        ned_with("W1", "10/10/2022", &[("OrganisationName", "Diamond Home Care Ltd")]),
        ned_with("W2", "03/10/2022", &[("OrganisationName", "Pearl Carers Ltd")]),
    ];
    let (_g, path) = write_temp("orgs.csv", &visits_file(&rows));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (2, 1, 0, 1, 0), "issues: {:?}\n{r:#}", codes(&r));
    let w = issues_with(&r, "WRONG_ORGANISATION");
    assert_eq!(w.len(), 1, "{r:#}");
    assert_eq!(w[0]["ref"], "W1");
    assert_eq!(w[0]["row"], 2);
    assert_eq!(w[0]["field"], "OrganisationName");
    assert_eq!(refs(&env.visits(PEARL)), set(&["W2"]));
}

#[test]
fn a_carerref_is_rejected_unknown_carer_until_the_carers_file_names_it() {
    let env = TestEnv::with_example_cplis();
    let (_g, path) = write_temp("carer-visit.csv", &visits_file(&[ned_with("K1", "03/10/2022", &[("CarerRef", "CR-017")])]));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (1, 0, 0, 1, 0), "{r:#}");
    let u = issues_with(&r, "UNKNOWN_CARER");
    assert_eq!(u.len(), 1, "{r:#}");
    assert_eq!(u[0]["ref"], "K1");
    assert_eq!(u[0]["field"], "CarerRef");
    assert!(env.visits(PEARL).is_empty());

    let (_g2, carers) = write_temp("carers.csv", "CarerRef,Forename,Surname,Deleted\nCR-017,Lisa,Simpson,0\nCR-018,Bart,Simpson,0\n");
    let c = env.import(PEARL, &carers);
    assert_eq!(c["kind"], "carers", "{c:#}");
    assert_eq!(c["status"], "processed", "{c:#}");
    assert_eq!(counts(&c).3, 0, "{c:#}");

    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (1, 1, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits(PEARL);
    assert_eq!(visit(&visits, "K1")["carer_ref"], "CR-017");
}

// ---------------------------------------------------------------------------------------------------------
// date and time forms (SPEC 2.1)

#[test]
fn every_date_form_of_the_spec_is_accepted() {
    let env = TestEnv::with_example_cplis();
    // One two-hour visit per week (Mondays), so each week tallies with Ned's 2 h weekly CPLI.
    let forms = [
        ("D1", "3/10/2022", "2022-10-03"),   // D/M/YYYY, no leading zero
        ("D2", "10-10-2022", "2022-10-10"),  // D-M-YYYY
        ("D3", "17/10/22", "2022-10-17"),    // D/M/YY
        ("D4", "24-10-22", "2022-10-24"),    // D-M-YY
        ("D5", "31 Oct 2022", "2022-10-31"), // D MMM YYYY
        ("D6", "7-Nov-22", "2022-11-07"),    // D-MMM-YY
        ("D7", "14-Nov-2022", "2022-11-14"), // D-MMM-YYYY
    ];
    let rows: Vec<String> = forms.iter().map(|(r, d, _)| ned(r, d, "08:00", "10:00")).collect();
    let (_g, path) = write_temp("dates.csv", &visits_file(&rows));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (7, 7, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits(PEARL);
    for (vref, _, iso) in forms {
        let v = visit(&visits, vref);
        assert_eq!(v["planned_visit_date"], iso, "{v:#}");
        assert_eq!(v["delivered_visit_date"], iso, "{v:#}");
        assert_eq!(v["status"], "Matched", "{v:#}");
    }
}

#[test]
fn the_31st_of_february_is_bad_date() {
    let env = TestEnv::with_example_cplis();
    let row = visit_row(&[
        ("VisitRef", "F1"),
        ("Deleted", "0"),
        ("PlannedVisitDate", "31/02/2022"),
        ("PlannedEntryTime", "08:00"),
        ("PlannedExitTime", "10:00"),
        ("VisitType", "C24"),
        ("Comments", "Cancelled by the family a week ahead"),
        ("SSRef", "A352035"),
        ("ServiceLevel", "Personal Care"),
        ("ServiceName", "Pearl Carers - DAPL South"),
    ]);
    let (_g, path) = write_temp("feb.csv", &visits_file(&[row]));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (1, 0, 0, 1, 0), "{r:#}");
    let bad = issues_with(&r, "BAD_DATE");
    assert_eq!(bad.len(), 1, "{r:#}");
    assert_eq!(bad[0]["field"], "PlannedVisitDate");
    assert_eq!(bad[0]["row"], 2);
    assert_eq!(bad[0]["ref"], "F1");
    assert_eq!(bad[0]["severity"], "error");
}

#[test]
fn times_with_or_without_leading_zero_and_seconds_are_accepted_and_25_00_is_bad_time() {
    let env = TestEnv::with_example_cplis();
    let rows = [
        ned("T1", "03/10/2022", "8:30", "10:30"),
        ned("T2", "10/10/2022", "08:30", "10:30"),
        ned("T3", "17/10/2022", "08:30:00", "10:30:00"),
        ned_with("T4", "24/10/2022", &[("PlannedEntryTime", "25:00")]),
    ];
    let (_g, path) = write_temp("times.csv", &visits_file(&rows));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (4, 3, 0, 1, 0), "issues: {:?}\n{r:#}", codes(&r));
    let bad = issues_with(&r, "BAD_TIME");
    assert_eq!(bad.len(), 1, "{r:#}");
    assert_eq!(bad[0]["ref"], "T4");
    assert_eq!(bad[0]["field"], "PlannedEntryTime");
    assert_eq!(bad[0]["row"], 5);
    let visits = env.visits(PEARL);
    assert_eq!(refs(&visits), set(&["T1", "T2", "T3"]));
    for vref in ["T1", "T2", "T3"] {
        let v = visit(&visits, vref);
        assert_eq!(v["planned_entry_time"], "08:30:00", "{v:#}");
        assert_eq!(v["planned_exit_time"], "10:30:00", "{v:#}");
        assert_eq!(v["delivered_entry_time"], "08:30:00", "{v:#}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// headings

#[test]
fn headings_in_another_order_in_lower_case_and_without_spaces_are_accepted() {
    let env = TestEnv::with_example_cplis();
    let heads: Vec<String> = VISITS_HEADER.split(',').rev().map(|h| h.to_lowercase().replace(' ', "")).collect();
    let row = ned("H1", "03/10/2022", "08:00", "10:00");
    let cells: Vec<&str> = row.split(',').rev().collect();
    let text = format!("{}\n{}\n", heads.join(","), cells.join(","));
    let (_g, path) = write_temp("headings.csv", &text);
    let r = env.import(PEARL, &path);
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(counts(&r), (1, 1, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits(PEARL);
    let v = visit(&visits, "H1");
    assert_eq!(v["ssref"], "A352035");
    assert_eq!(v["service_name"], "Pearl Carers - DAPL South");
    assert_eq!(v["planned_visit_date"], "2022-10-03");
    assert_eq!(v["status"], "Matched");
}

#[test]
fn a_missing_heading_fails_the_whole_file_with_missing_column_and_stores_nothing() {
    let env = TestEnv::with_example_cplis();
    let heads: Vec<&str> = VISITS_HEADER.split(',').collect();
    let drop = heads.iter().position(|h| *h == "CarerRef").unwrap();
    let keep = |line: &str| -> String {
        line.split(',').enumerate().filter(|(i, _)| *i != drop).map(|(_, c)| c).collect::<Vec<_>>().join(",")
    };
    let text = format!(
        "{}\n{}\n{}\n",
        keep(VISITS_HEADER),
        keep(&ned("M1", "03/10/2022", "08:00", "10:00")),
        keep(&ned("M2", "10/10/2022", "08:00", "10:00"))
    );
    let (_g, path) = write_temp("missing.csv", &text);
    let r = env.import(PEARL, &path);
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(counts(&r), (0, 0, 0, 0, 0), "{r:#}");
    let m = issues_with(&r, "MISSING_COLUMN");
    assert_eq!(m.len(), 1, "{r:#}");
    assert!(m[0]["row"].is_null(), "file-level issue: {r:#}");
    assert_eq!(m[0]["severity"], "error");
    let names_it = m[0]["field"] == "CarerRef" || m[0]["message"].as_str().unwrap_or("").contains("CarerRef");
    assert!(names_it, "the missing heading is not named: {r:#}");
    assert!(env.visits(PEARL).is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// encodings

#[test]
fn a_windows_1252_file_is_accepted_with_encoding_guessed_and_reads_back_as_utf8() {
    let env = TestEnv::with_example_cplis();
    let row = ned_with("E1", "03/10/2022", &[("Comments", "Caf\u{e9} visit \u{a3}5 parking")]);
    let utf8 = visits_file(&[row]);
    // Re-encode as Windows-1252: é = 0xE9, £ = 0xA3, everything else ASCII.
    let bytes: Vec<u8> = utf8
        .chars()
        .map(|ch| match ch {
            '\u{e9}' => 0xE9,
            '\u{a3}' => 0xA3,
            c if c.is_ascii() => c as u8,
            c => panic!("test bug: {c:?}"),
        })
        .collect();
    assert!(std::str::from_utf8(&bytes).is_err(), "test bug: the bytes must not be UTF-8");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp1252.csv");
    std::fs::write(&path, &bytes).unwrap();
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (1, 1, 0, 0, 1), "issues: {:?}\n{r:#}", codes(&r));
    assert_eq!(codes(&r), vec!["ENCODING_GUESSED"], "{r:#}");
    assert!(issues_with(&r, "ENCODING_GUESSED")[0]["row"].is_null(), "file-level: {r:#}");
    let visits = env.visits(PEARL);
    assert_eq!(visit(&visits, "E1")["comments"], "Caf\u{e9} visit \u{a3}5 parking");
}

#[test]
fn a_utf8_file_with_a_bom_and_lf_line_ends_is_accepted_cleanly() {
    let env = TestEnv::with_example_cplis();
    let text = format!(
        "\u{feff}{}\n{}\n",
        VISITS_HEADER,
        ned_with("B1", "03/10/2022", &[("Comments", "Caf\u{e9} \u{a3}")])
    );
    let (_g, path) = write_temp("bom.csv", &text);
    let r = env.import(PEARL, &path);
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(counts(&r), (1, 1, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits(PEARL);
    assert_eq!(visit(&visits, "B1")["comments"], "Caf\u{e9} \u{a3}");
}

// ---------------------------------------------------------------------------------------------------------
// duplicate refs and counts

#[test]
fn a_visitref_used_twice_rejects_both_rows_and_read_is_new_plus_updated_plus_rejected() {
    let env = TestEnv::with_example_cplis();
    let rows = [
        ned("D1", "03/10/2022", "08:00", "10:00"),
        ned("D1", "10/10/2022", "08:00", "10:00"),
        ned("D2", "17/10/2022", "08:00", "10:00"),
    ];
    let (_g, path) = write_temp("dups.csv", &visits_file(&rows));
    let r = env.import(PEARL, &path);
    let (read, new, updated, rejected, dq) = counts(&r);
    assert_eq!(read, new + updated + rejected, "{r:#}");
    assert_eq!((read, new, updated, rejected, dq), (3, 1, 0, 2, 0), "issues: {:?}\n{r:#}", codes(&r));
    let d = issues_with(&r, "DUPLICATE_REF");
    assert_eq!(d.len(), 2, "{r:#}");
    let rows: BTreeSet<u64> = d.iter().map(|i| i["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [2, 3].into_iter().collect());
    assert!(d.iter().all(|i| i["ref"] == "D1" && i["severity"] == "error"));
    assert_eq!(refs(&env.visits(PEARL)), set(&["D2"]));
}

// ---------------------------------------------------------------------------------------------------------
// the result CSV

#[test]
fn the_result_csv_neutralises_a_comment_that_begins_with_an_equals_sign() {
    let env = TestEnv::with_example_cplis();
    // Comments first, so the row's raw data (the row_data cell) begins with the comment; a wrong zone makes
    // the row carry an issue (UNMATCHED) so that it appears in the result.
    let mut heads: Vec<&str> = VISITS_HEADER.split(',').collect();
    let at = heads.iter().position(|h| *h == "Comments").unwrap();
    let row = ned_with(
        "X1",
        "03/10/2022",
        &[("Comments", "=1+2 see office"), ("ServiceName", "Pearl Carers - DAPL Nowhere")],
    );
    let mut cells: Vec<&str> = row.split(',').collect();
    let comment = cells.remove(at);
    cells.insert(0, comment);
    let head = heads.remove(at);
    heads.insert(0, head);
    let text = format!("{}\n{}\n", heads.join(","), cells.join(","));
    let (_g, path) = write_temp("formula.csv", &text);
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r).1, 1, "{r:#}");
    let issue = issues_of_x1(&r);
    assert!(
        issue["row_data"].as_str().unwrap_or("").starts_with("=1+2"),
        "test premise: row_data should begin with the comment: {r:#}"
    );

    let csv_path = env.org_dir("pearl-carers-ltd").join("results/formula.result.csv");
    let bytes = std::fs::read(&csv_path).unwrap_or_else(|e| panic!("{}: {e}", csv_path.display()));
    let mut rd = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes.as_slice());
    let mut saw_comment = false;
    for rec in rd.records() {
        let rec = rec.expect("result CSV parses");
        for cell in rec.iter() {
            let cell = cell.trim_start_matches('\u{feff}');
            assert!(!cell.starts_with(['=', '+', '@']), "formula cell {cell:?} in {}", String::from_utf8_lossy(&bytes));
            if cell.contains("=1+2 see office") {
                saw_comment = true;
            }
        }
    }
    assert!(saw_comment, "the comment is not in the result CSV at all: {}", String::from_utf8_lossy(&bytes));
}

fn issues_of_x1(r: &Value) -> &Value {
    r["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ref"] == "X1")
        .unwrap_or_else(|| panic!("no issue on X1: {r:#}"))
}

/// `n` rows for Mayor Quimby, each planned and delivered on 31 February (two BAD_DATEs a row).
fn bad_date_file(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let mut text = format!("{VISITS_HEADER}\n");
    for i in 0..n {
        text.push_str(&format!(
            "B{i:05},0,31/02/2023,08:00,09:00,DHS,31/02/2023,08:00,,,09:00,,,,,,A371849,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,,\n"
        ));
    }
    write_temp("bad-dates.csv", &text)
}

#[test]
fn every_issue_is_in_the_result_files_and_the_output_though_the_store_keeps_the_first_100() {
    // Issue 9: issues are streamed to the result files and the output, not held in memory or stored.
    let env = TestEnv::with_example_cplis();
    let (_d, file) = bad_date_file(150);
    let printed = env.import(PEARL, &file);
    assert_eq!(counts(&printed), (150, 0, 0, 150, 0));
    assert_eq!(codes(&printed), vec!["BAD_DATE".to_string(); 300]);
    let rows: Vec<u64> = printed["issues"].as_array().unwrap().iter().map(|i| i["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, (2..=151).flat_map(|r| [r, r]).collect::<Vec<u64>>(), "issues in row order");
    let results = env.org_dir("pearl-carers-ltd").join("results");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(results.join("bad-dates.result.json")).unwrap()).unwrap();
    assert_eq!(stored, printed, "the result file and the printed result differ");
    let csv = std::fs::read_to_string(results.join("bad-dates.result.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301);
    let keys: Vec<&str> = stored.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        vec!["counts", "file", "import_id", "issues", "kind", "organisation", "processed_at", "received_at", "sha256", "status"];
    expected.sort();
    assert_eq!(keys, expected, "the section-4 shape");

    let text = env.run(&["validate", "--org", PEARL, file.to_str().unwrap()]);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 301, "{text}");
    assert!(text.lines().nth(300).unwrap().starts_with("  row 151 (B00149) error BAD_DATE "), "{text}");
    let two = env.run(&["validate", "--format", "json", file.to_str().unwrap(), file.to_str().unwrap()]);
    let two: Value = serde_json::from_slice(&two.stdout).unwrap();
    assert_eq!(two.as_array().unwrap().iter().map(|r| r["issues"].as_array().unwrap().len()).collect::<Vec<_>>(), [300, 300]);
}

#[test]
fn a_panic_in_the_engine_is_a_failed_result_naming_an_internal_error_not_a_crash() {
    // Issue 9, item 4: a panic exited 101 with no result.
    let env = TestEnv::with_example_cplis();
    let week = example("visits-week.csv");
    for args in [vec!["validate", "--format", "json"], vec!["import", "--org", PEARL, "--format", "json"]] {
        let out = env.cmd(&args).arg(&week).env("GATEWAY_FAULT", "panic-judging").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["status"], "failed");
        assert_eq!(codes(&result), ["INTERNAL_ERROR"]);
        assert!(result["issues"][0]["message"].as_str().unwrap().contains("GATEWAY_FAULT=panic-judging"), "{result}");
    }
    assert!(env.org_dir("pearl-carers-ltd").join("results/visits-week.result.json").exists());
    assert!(env.visits(PEARL).is_empty());
}

#[test]
fn a_listing_whose_reader_has_gone_ends_quietly() {
    // Issue 11: `org list` and the other one-line answers were printed with `println!`, which
    // panics on a closed pipe (`gateway org list | head -0`); the answer now goes through a writer
    // whose failure the binary recognises.
    let env = TestEnv::with_example_cplis();
    let mut child = env.cmd(&["org", "list"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Closed before the gateway has opened its store, long before it writes.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn org_add_refuses_an_organisation_ref_another_organisation_holds_and_the_extract_still_loads() {
    let env = TestEnv::with_example_cplis();
    let pearls = "6513270E-269E-0D37-F2A7-4DE452E6B438";
    let out = env.run(&["org", "add", "--name", "Gamma Care", "--ref", pearls]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the organisation 'Pearl Carers Ltd' already"), "{}", String::from_utf8_lossy(&out.stderr));
    // Its own GUID again is fine, and the council's extract still loads.
    env.ok(&["org", "add", "--name", PEARL, "--ref", pearls]);
    env.ok(&["cplis", "load", example("cplis.csv").to_str().unwrap()]);
}

#[test]
fn org_add_refuses_a_name_with_a_control_character_as_the_extract_does() {
    let env = TestEnv::new();
    let out = env.run(&["org", "add", "--name", "Evil\nName"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CONTROL_CHARACTER") && err.contains("U+000A (line feed) at character 5"), "{err}");
    assert!(!env.ok(&["org", "list"]).contains("Evil"));
}

#[test]
fn user_add_without_an_owner_names_both_org_and_council() {
    let env = TestEnv::new();
    let out = env.run(&["user", "add", "--name", "rota", "--key", "rota.pub"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--org <ORG>|--council"), "{err}");
}
