//! The guide's own examples (shared/seeds/000_b6ba446cff5c6d2d.txt): the example week, re-sending it, the
//! deletion by CSV, scenarios 1, 2, 3 and 7, the three dispute examples and unmatched visits.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::helpers::*;

/// One visits row in `VISITS_HEADER` order from (heading, value) pairs; headings not named are blank.
pub(crate) fn visit_row(pairs: &[(&str, &str)]) -> String {
    let heads: Vec<&str> = VISITS_HEADER.split(',').collect();
    for (k, _) in pairs {
        assert!(heads.contains(k), "test bug: no visits heading {k:?}");
    }
    heads
        .iter()
        .map(|h| pairs.iter().find(|(k, _)| k == h).map(|(_, v)| csv_cell(v)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",")
}

/// A CSV cell, quoted when it has to be.
pub(crate) fn csv_cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// A visits file: the 25 headings and these rows, LF line ends.
pub(crate) fn visits_file(rows: &[String]) -> String {
    let mut s = String::from(VISITS_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

/// The issues of one VisitRef.
pub(crate) fn issues_of<'a>(result: &'a Value, vref: &str) -> Vec<&'a Value> {
    result["issues"].as_array().expect("issues array").iter().filter(|i| i["ref"] == vref).collect()
}

/// The codes of one VisitRef's issues.
pub(crate) fn codes_of(result: &Value, vref: &str) -> Vec<String> {
    issues_of(result, vref).iter().map(|i| i["code"].as_str().unwrap().to_string()).collect()
}

/// The VisitRefs currently listed.
pub(crate) fn refs(visits: &[Value]) -> BTreeSet<String> {
    visits.iter().map(|v| v["visit_ref"].as_str().expect("visit_ref").to_string()).collect()
}

pub(crate) fn visit<'a>(visits: &'a [Value], vref: &str) -> &'a Value {
    visits
        .iter()
        .find(|v| v["visit_ref"] == vref)
        .unwrap_or_else(|| panic!("visit {vref} not listed in {visits:#?}"))
}

/// `visits list --org ORG --status STATUS --format json`.
pub(crate) fn visits_with_status(env: &TestEnv, org: &str, status: &str) -> Vec<Value> {
    let out = env.ok(&["visits", "list", "--org", org, "--status", status, "--format", "json"]);
    serde_json::from_str::<Value>(&out).expect("json").as_array().expect("array").clone()
}

/// A `cpli_id` as text whether the product prints it as a string or a number.
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn load_cplis(env: &TestEnv, path: &Path) {
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
}

fn result_jsons(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("no results folder {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n.contains(".result"))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// The example week (guide "Example File", V1-V21)

#[test]
fn the_example_week_is_read_in_full_all_new_and_all_matched() {
    let env = TestEnv::with_example_cplis();
    let r = env.import(PEARL, &example("visits-week.csv"));
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(r["kind"], "visits", "{r:#}");
    assert_eq!(r["organisation"], PEARL, "{r:#}");
    assert_eq!(r["file"], "visits-week.csv", "{r:#}");
    assert_eq!(counts(&r), (21, 21, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));

    let visits = env.visits(PEARL);
    assert_eq!(visits.len(), 21);
    let expected: BTreeSet<String> = (1..=21).map(|n| format!("V{n}")).collect();
    assert_eq!(refs(&visits), expected);
    for v in &visits {
        assert_eq!(v["status"], "Matched", "{v:#}");
    }
    // One row read back field by field: V14, the exceptional visit of 7 August.
    let v14 = visit(&visits, "V14");
    assert_eq!(v14["planned_visit_date"], "2022-08-07");
    assert_eq!(v14["planned_entry_time"], "20:00:00");
    assert_eq!(v14["planned_exit_time"], "20:30:00");
    assert_eq!(v14["visit_type"], "E");
    assert_eq!(v14["delivered_visit_date"], "2022-08-07");
    assert_eq!(v14["delivered_exit_time"], "22:30:00");
    assert_eq!(v14["ssref"], "A123456");
    assert_eq!(v14["service_level"], "Home Support");
    assert_eq!(v14["service_name"], "Pearl Carers - Zone 6 - Oxford");
    assert_eq!(id_text(&v14["cpli_id"]), "156001");
    assert_eq!(id_text(&visit(&visits, "V21")["cpli_id"]), "156002");

    let results = env.org_dir("pearl-carers-ltd").join("results");
    let json_path = results.join("visits-week.result.json");
    let text = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|e| panic!("{} missing: {e}; folder has {:?}", json_path.display(), result_jsons(&results)));
    let stored: Value = serde_json::from_str(&text).expect("result file is JSON");
    assert_eq!(counts(&stored), (21, 21, 0, 0, 0));
    assert_eq!(stored["status"], "processed");
    assert!(results.join("visits-week.result.csv").is_file(), "result CSV missing");
}

#[test]
fn the_same_example_week_sent_twice_counts_every_row_as_updated_and_keeps_both_results() {
    let env = TestEnv::with_example_cplis();
    let first = env.import(PEARL, &example("visits-week.csv"));
    assert_eq!(counts(&first), (21, 21, 0, 0, 0), "{:?}", codes(&first));
    let second = env.import(PEARL, &example("visits-week.csv"));
    assert_eq!(second["status"], "processed");
    assert_eq!(counts(&second), (21, 0, 21, 0, 0), "{:?}", codes(&second));
    assert_eq!(env.visits(PEARL).len(), 21);

    let results = env.org_dir("pearl-carers-ltd").join("results");
    let names = result_jsons(&results);
    assert_eq!(names.len(), 2, "two result JSONs expected, found {names:?}");
    assert!(names.contains("visits-week.result.json"), "{names:?}");
    assert!(names.contains("visits-week.result.2.json"), "{names:?}");
    let first_file: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("visits-week.result.json")).unwrap()).unwrap();
    assert_eq!(counts(&first_file), (21, 21, 0, 0, 0), "the first result was overwritten");
    let second_file: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("visits-week.result.2.json")).unwrap()).unwrap();
    assert_eq!(counts(&second_file), (21, 0, 21, 0, 0));
    assert!(results.join("visits-week.result.2.csv").is_file(), "second result CSV missing");
}

#[test]
fn a_file_named_like_a_second_answer_gets_its_own_answer_not_the_second_files() {
    // `dup.csv` twice, then a file of its own named `dup.2.csv`: each answer is found under the
    // name its file gives, and holds that file's result.
    let env = TestEnv::with_example_cplis();
    let dir = tempfile::tempdir().unwrap();
    let week = std::fs::read_to_string(example("visits-week.csv")).unwrap();
    let (dup, dup2) = (dir.path().join("dup.csv"), dir.path().join("dup.2.csv"));
    std::fs::write(&dup, &week).unwrap();
    std::fs::write(&dup2, "").unwrap();
    env.import(PEARL, &dup);
    env.import(PEARL, &dup);
    env.import(PEARL, &dup2);
    let results = env.org_dir("pearl-carers-ltd").join("results");
    let read = |name: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(results.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap() };
    assert_eq!((read("dup.result.json")["file"].as_str(), counts(&read("dup.result.json")).1), (Some("dup.csv"), 21));
    assert_eq!((read("dup.result.2.json")["file"].as_str(), counts(&read("dup.result.2.json")).2), (Some("dup.csv"), 21));
    let own = read("dup.2.result.json");
    assert_eq!((own["file"].as_str(), own["status"].as_str()), (Some("dup.2.csv"), Some("failed")), "{own}");
}

// ---------------------------------------------------------------------------------------------------------
// Deleting visits data by CSV (guide lines 1240-1258)

#[test]
fn a_deletion_row_with_only_visitref_deleted_and_ssref_removes_the_visit_and_counts_as_updated() {
    let env = TestEnv::with_example_cplis();
    let r = env.import(PEARL, &fixture("guide/deletion-v101-visit.csv"));
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (1, 1, 0, 0), "{r:#}");
    let visits = env.visits(PEARL);
    assert_eq!(visit(&visits, "V101")["status"], "Matched");

    let d = env.import(PEARL, &fixture("guide/deletion-v101-delete.csv"));
    assert_eq!(d["status"], "processed", "{d:#}");
    let c = counts(&d);
    assert_eq!((c.0, c.1, c.2, c.3), (1, 0, 1, 0), "read 1, updated 1 expected: {d:#}");
    assert!(!codes(&d).iter().any(|c| c == "REQUIRED"), "a deletion needs no other field: {d:#}");
    assert!(!refs(&env.visits(PEARL)).contains("V101"), "V101 still listed after its deletion");

    // The same deletion file sent again (SPEC 3: the second time changes nothing except counting
    // the rows as updated): not DELETE_UNKNOWN.
    let again = env.import(PEARL, &fixture("guide/deletion-v101-delete.csv"));
    assert_eq!(counts(&again), (1, 0, 1, 0, 0), "{again:#}");
    assert!(!refs(&env.visits(PEARL)).contains("V101"));
}

#[test]
fn deleting_a_visitref_the_organisation_never_sent_is_rejected_delete_unknown() {
    let env = TestEnv::with_example_cplis();
    let d = env.import(PEARL, &fixture("guide/deletion-unknown.csv"));
    let c = counts(&d);
    assert_eq!((c.0, c.1, c.2, c.3), (1, 0, 0, 1), "{d:#}");
    let del = issues_with(&d, "DELETE_UNKNOWN");
    assert_eq!(del.len(), 1, "{d:#}");
    assert_eq!(del[0]["ref"], "V999");
    assert_eq!(del[0]["row"], 2);
    assert_eq!(del[0]["severity"], "error");
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 1: double-handed care (guide 1014-1046)

#[test]
fn scenario_1_double_handed_rows_with_the_guides_comment_are_all_new_and_raise_no_issue() {
    let env = TestEnv::new();
    load_cplis(&env, &fixture("guide/scenario1-cplis.csv"));
    let r = env.import("Diamond Home Care Ltd", &fixture("guide/scenario1-visits.csv"));
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(counts(&r), (14, 14, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    assert!(issues_with(&r, "POSSIBLE_DUPLICATE").is_empty());
    let visits = env.visits("Diamond Home Care Ltd");
    assert_eq!(visits.len(), 14);
    assert!(visits.iter().all(|v| v["status"] == "Matched"), "{visits:#?}");
}

#[test]
fn scenario_1_without_the_double_handed_comments_flags_possible_duplicates_but_keeps_the_rows() {
    let env = TestEnv::new();
    load_cplis(&env, &fixture("guide/scenario1-cplis.csv"));
    let text = std::fs::read_to_string(fixture("guide/scenario1-visits.csv")).unwrap();
    let stripped = text.replace("Double-Handed - 2nd carer", "");
    assert_ne!(text, stripped);
    let (_g, path) = write_temp("scenario1-no-comments.csv", &stripped);
    let r = env.import("Diamond Home Care Ltd", &path);
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (14, 14, 0, 0), "{r:#}");
    let dups = issues_with(&r, "POSSIBLE_DUPLICATE");
    assert!(dups.len() >= 7, "one POSSIBLE_DUPLICATE per pair at least: {r:#}");
    assert!(dups.iter().all(|i| i["severity"] == "warning"));
    let flagged: BTreeSet<String> = dups.iter().map(|i| i["ref"].as_str().unwrap_or("").to_string()).collect();
    for pair in 0..7 {
        let (a, b) = (format!("V{}", 2 * pair + 1), format!("V{}", 2 * pair + 2));
        assert!(flagged.contains(&a) || flagged.contains(&b), "neither {a} nor {b} flagged: {flagged:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 2: a temporary second CPLI for one week (guide 1048-1087)

#[test]
fn scenario_2_planned_care_over_two_cplis_matches_and_tallies_with_both_quantities() {
    let env = TestEnv::new();
    load_cplis(&env, &fixture("guide/scenario2-cplis.csv"));
    let r = env.import("YYX Care Ltd", &fixture("guide/scenario2-visits.csv"));
    assert_eq!(r["status"], "processed", "{r:#}");
    // 7 x 1 h + 7 x 0.5 h = 10.5 h = 7 + 3.5: no PLANNED_HOURS_DIFFER.
    assert_eq!(counts(&r), (14, 14, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits("YYX Care Ltd");
    assert_eq!(visits.len(), 14);
    for v in &visits {
        assert_eq!(v["status"], "Matched", "{v:#}");
        let id = id_text(&v["cpli_id"]);
        assert!(id == "302001" || id == "302002", "{v:#}");
    }
    assert_eq!(visit(&visits, "V1")["planned_visit_date"], "2022-10-03");
    assert_eq!(visit(&visits, "V14")["planned_visit_date"], "2022-10-09");
    assert_eq!(visit(&visits, "V1")["delivered_exit_time"], "09:05:00");
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 3: an emergency extra visit, type E with a comment (guide 1089-1123)

#[test]
fn scenario_3_an_agreed_emergency_visit_typed_e_with_a_comment_raises_no_issue() {
    let env = TestEnv::new();
    load_cplis(&env, &fixture("guide/scenario3-cplis.csv"));
    let r = env.import("XYX Care Ltd", &fixture("guide/scenario3-visits.csv"));
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(counts(&r), (3, 3, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits("XYX Care Ltd");
    assert_eq!(refs(&visits), ["V1", "V2", "V3"].iter().map(|s| s.to_string()).collect());
    assert_eq!(visit(&visits, "V3")["visit_type"], "E");
    assert_eq!(visit(&visits, "V3")["comments"], "Extra emergency visit agreed with social worker");
    assert_eq!(visit(&visits, "V3")["planned_visit_date"], "2022-10-17");
}

#[test]
fn scenario_3_without_the_comment_on_the_e_visit_gets_missing_comment_on_that_row() {
    let env = TestEnv::new();
    load_cplis(&env, &fixture("guide/scenario3-cplis.csv"));
    let text = std::fs::read_to_string(fixture("guide/scenario3-visits.csv")).unwrap();
    let stripped = text.replace("Extra emergency visit agreed with social worker", "");
    assert_ne!(text, stripped);
    let (_g, path) = write_temp("scenario3-no-comment.csv", &stripped);
    let r = env.import("XYX Care Ltd", &path);
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (3, 3, 0, 0), "{r:#}");
    let mc = issues_with(&r, "MISSING_COMMENT");
    assert_eq!(mc.len(), 1, "{r:#}");
    assert_eq!(mc[0]["ref"], "V3");
    assert_eq!(mc[0]["row"], 4);
    assert_eq!(mc[0]["severity"], "warning");
    assert!(codes_of(&r, "V1").is_empty() && codes_of(&r, "V2").is_empty(), "{r:#}");
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 7: cancelling without the notice period, type C (guide 1139-1141)

/// Mayor Quimby (A371849, 14 h weekly from 03/10/2022): two hours a day for the week of 3 October, type C.
fn notice_period_rows(comment: &str) -> Vec<String> {
    (3..=9)
        .map(|d| {
            let date = format!("{d:02}/10/2022");
            let vref = format!("Q{d}");
            visit_row(&[
                ("VisitRef", &vref),
                ("Deleted", "0"),
                ("PlannedVisitDate", &date),
                ("PlannedEntryTime", "08:00"),
                ("PlannedExitTime", "10:00"),
                ("VisitType", "C"),
                ("Comments", comment),
                ("SSRef", "A371849"),
                ("ServiceLevel", "Home Support"),
                ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
            ])
        })
        .collect()
}

#[test]
fn scenario_7_c_visits_for_the_notice_period_with_a_comment_are_accepted_without_issues() {
    let env = TestEnv::with_example_cplis();
    let rows = notice_period_rows("Client ended the package on 02/10 without notice; notice period visit");
    let (_g, path) = write_temp("notice.csv", &visits_file(&rows));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (7, 7, 0, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    let visits = env.visits(PEARL);
    assert_eq!(visits.len(), 7);
    assert!(visits.iter().all(|v| v["visit_type"] == "C" && v["status"] == "Matched"), "{visits:#?}");
}

#[test]
fn scenario_7_c_visits_without_a_comment_are_accepted_with_missing_comment_warnings() {
    let env = TestEnv::with_example_cplis();
    let (_g, path) = write_temp("notice.csv", &visits_file(&notice_period_rows("")));
    let r = env.import(PEARL, &path);
    assert_eq!(counts(&r), (7, 7, 0, 0, 7), "issues: {:?}\n{r:#}", codes(&r));
    let mc = issues_with(&r, "MISSING_COMMENT");
    assert_eq!(mc.len(), 7, "{r:#}");
    let flagged: BTreeSet<String> = mc.iter().map(|i| i["ref"].as_str().unwrap().to_string()).collect();
    assert_eq!(flagged, (3..=9).map(|d| format!("Q{d}")).collect());
    assert_eq!(env.visits(PEARL).len(), 7);
}

// ---------------------------------------------------------------------------------------------------------
// Disputes, examples 1-3 (guide 1666-1790): Principal Skinner, A332295, Pearl Carers - DAPL Oxford

#[test]
fn dispute_examples_flag_the_uncommented_e_and_u_visits_and_the_delivered_time_that_does_not_tally() {
    let env = TestEnv::with_example_cplis();
    let r = env.import(PEARL, &fixture("guide/disputes-visits.csv"));
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (5, 5, 0, 0), "rows stay accepted: {r:#}");

    // Example 1: E on 4 Oct, planned 08:00-09:00, delivered 08:00-10:00, no comment.
    let ps2 = codes_of(&r, "PS2");
    assert!(ps2.contains(&"MISSING_COMMENT".to_string()), "PS2: {ps2:?}\n{r:#}");
    assert!(
        ps2.iter().all(|c| c == "MISSING_COMMENT" || c == "OVER_PLANNED_NO_COMMENT"),
        "PS2 only lacks a comment: {ps2:?}"
    );
    // Example 2: U on 5 Oct, no comment.
    assert_eq!(codes_of(&r, "PS3"), vec!["MISSING_COMMENT"], "{r:#}");
    // Example 3: DHS on 7 Oct planned 08:00-09:00, delivered 10:00-10:30.
    assert_eq!(codes_of(&r, "PS5"), vec!["TIMES_DO_NOT_TALLY"], "{r:#}");
    // The well-formed visits of the week carry nothing.
    assert!(codes_of(&r, "PS1").is_empty(), "{r:#}");
    assert!(codes_of(&r, "PS4").is_empty(), "{r:#}");
    for i in issues_of(&r, "PS5").iter().chain(issues_of(&r, "PS3").iter()) {
        assert_eq!(i["severity"], "warning");
    }
    assert_eq!(issues_of(&r, "PS3")[0]["row"], 4);
    assert_eq!(issues_of(&r, "PS5")[0]["row"], 6);

    let visits = env.visits(PEARL);
    assert_eq!(visits.len(), 5);
    assert!(visits.iter().all(|v| v["status"] == "Matched" && id_text(&v["cpli_id"]) == "156040"), "{visits:#?}");
}

#[test]
fn resubmitting_ps5_with_corrected_times_and_ps2_with_a_comment_updates_them_and_clears_the_flags() {
    let env = TestEnv::with_example_cplis();
    let first = env.import(PEARL, &fixture("guide/disputes-visits.csv"));
    assert_eq!(codes_of(&first, "PS5"), vec!["TIMES_DO_NOT_TALLY"], "{first:#}");

    // The guide's resubmission: PS5, delivered 08:02-09:06 (guide 1783-1790), plus PS2 with its comment
    // (Resolution 1: "resubmit the visit data and add a comment").
    let r = env.import(PEARL, &fixture("guide/disputes-resubmitted.csv"));
    assert_eq!(r["status"], "processed", "{r:#}");
    assert_eq!(counts(&r), (2, 0, 2, 0, 0), "issues: {:?}\n{r:#}", codes(&r));
    assert!(issues_with(&r, "TIMES_DO_NOT_TALLY").is_empty());
    assert!(issues_with(&r, "MISSING_COMMENT").is_empty());

    let visits = env.visits(PEARL);
    assert_eq!(visits.len(), 5, "an update replaces, it does not add");
    let ps5 = visit(&visits, "PS5");
    assert_eq!(ps5["delivered_entry_time"], "08:02:00");
    assert_eq!(ps5["delivered_exit_time"], "09:06:00");
    assert_eq!(ps5["status"], "Matched");
    assert!(visit(&visits, "PS2")["comments"].as_str().unwrap().starts_with("Exceptional"));
}

// ---------------------------------------------------------------------------------------------------------
// Unmatched visits (guide "Unmatched Visits", reasons 2 and 3) and matching again after a CPLI change

#[test]
fn a_visit_with_the_wrong_zone_is_unmatched_and_the_message_names_the_service_the_provider_meant() {
    let env = TestEnv::with_example_cplis();
    let r = env.import(PEARL, &fixture("guide/unmatched-visits.csv"));
    let c = counts(&r);
    assert_eq!((c.0, c.1, c.2, c.3), (2, 2, 0, 0), "unmatched visits are still accepted: {r:#}");

    let n1: Vec<&Value> = issues_of(&r, "N1").into_iter().filter(|i| i["code"] == "UNMATCHED").collect();
    assert_eq!(n1.len(), 1, "{r:#}");
    assert_eq!(n1[0]["severity"], "warning");
    let msg = n1[0]["message"].as_str().unwrap();
    assert!(msg.contains("Pearl Carers - Zone 7 - Farrington"), "no suggestion in {msg:?}");

    let n2: Vec<&Value> = issues_of(&r, "N2").into_iter().filter(|i| i["code"] == "UNMATCHED").collect();
    assert_eq!(n2.len(), 1, "{r:#}");
    let msg = n2[0]["message"].as_str().unwrap();
    let start_forms = ["03/10/2022", "3/10/2022", "2022-10-03", "03 Oct 2022", "3 Oct 2022", "03-Oct-2022"];
    assert!(start_forms.iter().any(|f| msg.contains(f)), "the CPLI start date is not named in {msg:?}");

    let visits = env.visits(PEARL);
    for vref in ["N1", "N2"] {
        let v = visit(&visits, vref);
        assert_eq!(v["status"], "Unmatched", "{v:#}");
        assert!(v["unmatched_reason"].as_str().is_some_and(|s| !s.is_empty()), "{v:#}");
    }
}

#[test]
fn loading_a_corrected_cpli_extract_matches_a_previously_unmatched_visit_again() {
    let env = TestEnv::with_example_cplis();
    env.import(PEARL, &fixture("guide/unmatched-visits.csv"));
    let before = refs(&visits_with_status(&env, PEARL, "unmatched"));
    assert_eq!(before, ["N1", "N2"].iter().map(|s| s.to_string()).collect());

    // The council moves CPLI 156029's start back to 01/09/2022: N2 (26/09/2022) now falls within it.
    load_cplis(&env, &fixture("guide/cplis-corrected.csv"));
    let after = refs(&visits_with_status(&env, PEARL, "unmatched"));
    assert_eq!(after, ["N1"].iter().map(|s| s.to_string()).collect(), "N2 should have been matched again");
    let matched = visits_with_status(&env, PEARL, "matched");
    let n2 = visit(&matched, "N2");
    assert_eq!(n2["status"], "Matched");
    assert_eq!(id_text(&n2["cpli_id"]), "156029");
}
