//! Actuals files through the real binary: the guide's columns, over-delivery with and without a
//! comment, re-sending, and the result files.

use crate::helpers::*;

const HEADER: &str = "Deleted,SSRef,ServiceLevel,ServiceName,PeriodStart,PeriodEnd,Planned,Actual,Frustrated,Missed,Extra,Visits,Comments";

/// A week's row for Mrs Agnes Skinner (A401234, CPLI 156050 of examples/cplis.csv: 10 hours a week
/// of extra care housing at £21.50).
fn week(start: &str, end: &str, planned: &str, actual: &str, extra: &str, visits: &str, comment: &str) -> String {
    format!("0,A401234,Extra Care Housing - Planned Care,Pearl Carers - Extra Care Oxford,{start},{end},{planned},{actual},0,0,{extra},{visits},{comment}")
}

fn file(rows: &[String]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

#[test]
fn the_example_actuals_file_is_accepted_matched_and_resending_it_counts_every_row_as_updated() {
    let env = TestEnv::with_example_cplis();
    let first = env.import(PEARL, &example("actuals.csv"));
    assert_eq!(first["kind"], "actuals");
    assert_eq!(counts(&first), (3, 3, 0, 0, 0), "{first:#}");
    let again = env.import(PEARL, &example("actuals.csv"));
    assert_eq!(counts(&again), (3, 0, 3, 0, 0), "{again:#}");
    let results = env.org_dir("pearl-carers-ltd").join("results");
    assert!(results.join("actuals.result.json").exists() && results.join("actuals.result.2.json").exists());
}

#[test]
fn over_delivery_without_a_comment_is_rejected_row_by_row_and_accepted_with_one() {
    let env = TestEnv::with_example_cplis();
    let rows = [
        week("03/10/2022", "09/10/2022", "10", "10.5", "0", "14", ""),
        week("10/10/2022", "16/10/2022", "10", "10", "0", "14", ""),
        week("17/10/2022", "23/10/2022", "10", "10", "1.25", "16", ""),
    ];
    let (_d, path) = write_temp("actuals.csv", &file(&rows));
    let result = env.import(PEARL, &path);
    assert_eq!(counts(&result), (3, 1, 0, 2, 0), "{result:#}");
    let rejected = issues_with(&result, "COMMENT_REQUIRED");
    assert_eq!(rejected.iter().map(|i| i["row"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4]);
    assert!(rejected.iter().all(|i| i["field"] == "Comments" && i["severity"] == "error" && i["ref"] == "A401234"));

    let commented = [
        week("03/10/2022", "09/10/2022", "10", "10.5", "0", "14", "stayed longer after a fall"),
        week("10/10/2022", "16/10/2022", "10", "10", "0", "14", ""),
        week("17/10/2022", "23/10/2022", "10", "10", "1.25", "16", "\"Two extra visits, agreed with the social worker\""),
    ];
    let (_d2, path) = write_temp("actuals.csv", &file(&commented));
    let result = env.import(PEARL, &path);
    assert_eq!(counts(&result), (3, 2, 1, 0, 0), "{result:#}");
}

#[test]
fn bad_quantities_and_periods_are_rejected_with_their_codes() {
    let env = TestEnv::with_example_cplis();
    let rows = [
        week("03/10/2022", "09/10/2022", "ten", "9", "0", "14", ""),
        week("10/10/2022", "16/10/2022", "10", "-2", "0", "14", ""),
        week("17/10/2022", "16/10/2022", "10", "9", "0", "14", ""),
    ];
    let (_d, path) = write_temp("actuals.csv", &file(&rows));
    let result = env.import(PEARL, &path);
    assert_eq!(codes(&result), ["BAD_NUMBER", "BAD_QUANTITY", "BAD_DATE"]);
    assert_eq!(counts(&result).3, 3);
}

#[test]
fn validate_judges_an_actuals_file_without_storing_it() {
    let env = TestEnv::new();
    let rows = [week("03/10/2022", "09/10/2022", "10", "10.5", "0", "14", "")];
    let (_d, path) = write_temp("actuals.csv", &file(&rows));
    let result = env.validate(&["--cplis", example("cplis.csv").to_str().unwrap()], &path);
    assert_eq!(codes(&result), ["COMMENT_REQUIRED"]);
    assert!(!env.data().join("db").exists());
}
