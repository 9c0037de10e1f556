//! Issue 11's rules on dates, GUIDs and extra-care actuals, each with a hand-written file through the
//! real binary: the date forms of every file kind, GUIDs round-tripped through the commissioned care
//! export, actuals in the commissioned vs actuals report, and PLANNED_DIFFERS_FROM_CPLI.

use serde_json::Value;

use crate::guide::{visit_row, visits_file};
use crate::helpers::*;

const ACTUALS_HEADER: &str = "Deleted,SSRef,ServiceLevel,ServiceName,PeriodStart,PeriodEnd,Planned,Actual,Frustrated,Missed,Extra,Visits,Comments";

/// Today where the tests run, once clear of midnight: the gateway's own day is then the same.
fn this_day() -> chrono::NaiveDate {
    while chrono::Local::now().format("%H:%M").to_string().as_str() >= "23:59" {
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    chrono::Local::now().date_naive()
}

/// A delivered (DHF: its CPLI is Live Well at Home) visit of A123456 (examples/cplis.csv: Home Support, Zone 6 Oxford, from 04/04/2022),
/// planned and delivered on `date` (written as given) at `entry`. The tests use a week that has not
/// finished, so PLANNED_HOURS_DIFFER does not judge it.
fn delivered(vref: &str, date: &str, entry: &str, exit: &str) -> String {
    visit_row(&[
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", entry),
        ("PlannedExitTime", exit),
        ("VisitType", "DHF"),
        ("DeliveredVisitDate", date),
        ("DeliveredEntryTime", entry),
        ("DeliveredExitTime", exit),
        ("SSRef", "A123456"),
        ("ServiceLevel", "Home Support"),
        ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
    ])
}

#[test]
fn short_years_iso_dates_and_excels_midnight_date_times_are_dates_in_visits_carers_and_actuals() {
    let env = TestEnv::with_example_cplis();
    // Today: delivered, and in a week that has not finished (a date after tomorrow is refused).
    let today = this_day();
    let day = |f: &str| today.format(f).to_string();
    let rows = [
        delivered("D1", &day("%-d %b %y"), "08:00", "08:30"),
        delivered("D2", &day("%Y-%m-%d"), "09:00", "09:30"),
        delivered("D3", &day("%d/%m/%Y 00:00"), "10:00", "10:30"),
        delivered("D4", &day("%d/%m/%Y 00:00:00"), "11:00", "11:30"),
        delivered("D5", &day("%d/%m/%Y 14:30"), "12:00", "12:30"),
    ];
    let (_d, path) = write_temp("visits.csv", &visits_file(&rows));
    let result = env.import(PEARL, &path);
    assert_eq!(counts(&result), (5, 4, 0, 1, 0), "{result:#}");
    let bad = issues_with(&result, "BAD_DATE");
    assert_eq!(bad.iter().map(|i| (i["ref"].as_str().unwrap(), i["field"].as_str().unwrap())).collect::<Vec<_>>(),
               [("D5", "PlannedVisitDate"), ("D5", "DeliveredVisitDate")]);
    let msg = bad[0]["message"].as_str().unwrap();
    assert!(msg.contains("time of day (14:30)") && msg.contains("date only"), "{msg}");
    let visits = env.visits(PEARL);
    assert_eq!(visits.iter().map(|v| v["planned_visit_date"].as_str().unwrap()).collect::<Vec<_>>(), [day("%Y-%m-%d").as_str(); 4]);

    let (_c, carers) = write_temp("carers.csv", "CarerRef,Forename,Surname,Deleted,StartDate,EndDate\nCR-1,Lisa,Simpson,0,2022-08-01,31 Dec 22\nCR-2,Bart,Simpson,0,01/08/2022 00:00,\n");
    assert_eq!(counts(&env.import(PEARL, &carers)), (2, 2, 0, 0, 0));

    let actuals = format!(
        "{ACTUALS_HEADER}\n0,A401234,Extra Care Housing - Planned Care,Pearl Carers - Extra Care Oxford,2022-10-03,9 Oct 22 00:00,10,10,0,0,0,14,\n"
    );
    let (_a, actuals) = write_temp("actuals.csv", &actuals);
    let result = env.import(PEARL, &actuals);
    assert_eq!(counts(&result), (1, 1, 0, 0, 0), "{result:#}");
}

#[test]
fn a_bad_date_message_lists_the_new_forms_or_says_which_day_does_not_exist() {
    let env = TestEnv::new();
    let (_d, path) = write_temp("visits.csv", &visits_file(&[delivered("D1", "3.2.2022", "08:00", "08:30"), delivered("D2", "31/02/2022", "08:00", "08:30")]));
    let result = env.validate(&[], &path);
    let bad = issues_with(&result, "BAD_DATE");
    let msg = bad[0]["message"].as_str().unwrap().to_string();
    for form in ["DD MMM YY", "YYYY-MM-DD", "00:00:00"] {
        assert!(msg.contains(form), "{form}: {msg}");
    }
    let d2 = bad.iter().find(|i| i["ref"] == "D2" && i["field"] == "PlannedVisitDate").expect("D2's date");
    assert!(d2["message"].as_str().unwrap().contains("'31/02/2022' is not a date: February 2022 has 28 days"), "{result:#}");
}

/// One CPLI of Pearl Carers Ltd whose GUIDs are written with braces, in lower case and without
/// hyphens, as a council's extract may hold them.
const ODD_GUIDS: &str = "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n\
    156001,A123456,Mrs Edna Krabappel,,2217bead-dbc4-96cb-8e81-973e0becd7b0,{6513270e-269e-0d37-f2a7-4de452e6b438},Pearl Carers Ltd,36F675CC81E74EF5E8E25D940ED90475,Pearl Carers - Zone 6 - Oxford,LWAH,{D23F0824-128B-2F33-0C5C-7FD0A6A3A450},Home Support,2022-04-04 00:00:00,,7,Hr,Weekly,23.77,Y\n";

#[test]
fn a_guid_copied_from_the_commissioned_care_export_is_accepted_back_in_a_visits_file() {
    let env = TestEnv::new();
    let (_c, cplis) = write_temp("cplis.csv", ODD_GUIDS);
    env.ok(&["cplis", "load", cplis.to_str().unwrap()]);
    let export = env.ok(&["export", "commissioned", "--org", PEARL]);
    let mut rdr = csv::Reader::from_reader(export.as_bytes());
    let heads = rdr.headers().unwrap().clone();
    let row = rdr.records().next().expect("one package").unwrap();
    let cell = |h: &str| row.get(heads.iter().position(|x| x == h).unwrap()).unwrap().to_string();
    assert_eq!(cell("OrganisationRef"), "6513270E-269E-0D37-F2A7-4DE452E6B438", "{export}");
    let mut pairs: Vec<(&str, String)> = vec![
        ("VisitRef", "G1".into()),
        ("Deleted", "0".into()),
        ("PlannedVisitDate", this_day().format("%d/%m/%Y").to_string()),
        ("PlannedEntryTime", "08:00".into()),
        ("PlannedExitTime", "08:30".into()),
        ("VisitType", "DHF".into()),
        ("DeliveredVisitDate", this_day().format("%d/%m/%Y").to_string()),
        ("DeliveredEntryTime", "08:00".into()),
        ("DeliveredExitTime", "08:30".into()),
    ];
    for (visit_heading, export_heading) in [("SSRef", "SSRef"), ("ServiceLevelRef", "ServiceLevelRef"), ("ServiceLevel", "ServiceLevelName"),
        ("ServiceRef", "ServiceRef"), ("ServiceName", "ServiceName"), ("OrganisationRef", "OrganisationRef"), ("OrganisationName", "OrganisationName")] {
        pairs.push((visit_heading, cell(export_heading)));
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_v, visits) = write_temp("visits.csv", &visits_file(&[visit_row(&pairs)]));
    let result = env.import(PEARL, &visits);
    assert_eq!(counts(&result), (1, 1, 0, 0, 0), "{result:#}");
    assert_eq!(env.visits(PEARL)[0]["status"], "Matched");
}

#[test]
fn an_extract_holding_a_guid_no_visits_file_could_send_is_refused_naming_row_and_column() {
    let env = TestEnv::new();
    // The guide's own export shows Diamond Home Care's OrganisationRef as SF54B181-...: not hex.
    let text = ODD_GUIDS.replace("{6513270e-269e-0d37-f2a7-4de452e6b438}", "SF54B181-1C7B-469E-B37C-4B93FA9EBE1E");
    let (_c, cplis) = write_temp("cplis.csv", &text);
    let out = env.run(&["cplis", "load", cplis.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row 2: column 6 (OrganisationRef) 'SF54B181-1C7B-469E-B37C-4B93FA9EBE1E' is not a GUID"), "{err}");
    assert!(env.run(&["org", "list"]).stdout.is_empty(), "nothing was loaded");
}

fn report(env: &TestEnv, from: &str, to: &str) -> Vec<Value> {
    let out = env.ok(&["report", "commissioned-vs-actuals", "--org", PEARL, "--from", from, "--to", to, "--format", "json"]);
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

#[test]
fn extra_care_actuals_are_rows_of_the_commissioned_vs_actuals_report() {
    let env = TestEnv::with_example_cplis();
    // examples/actuals.csv: Mrs Skinner's three weeks of extra care from 03/10/2022 (CPLI 156050,
    // 10 Hr Weekly at 21.50): 9.5 + 0.5 frustrated, 10, and 10 with 1.25 extra.
    assert_eq!(counts(&env.import(PEARL, &example("actuals.csv"))).3, 0);
    let rows = report(&env, "2022-10-03", "2022-10-23");
    let keys = ["cpli_id", "week", "comm_qty", "actual_qty", "frust_qty", "diff_qty", "comm_cost", "actual_cost", "frust_cost", "diff_cost", "period_end", "source"];
    let got: Vec<Vec<&str>> = rows.iter().map(|r| keys.iter().map(|k| r[*k].as_str().unwrap()).collect()).collect();
    assert_eq!(got, [
        ["156050", "2022-10-03", "10", "9.5", "0.5", "0", "215.00", "204.25", "10.75", "0.00", "2022-10-09", "actuals"],
        ["156050", "2022-10-10", "10", "10", "0", "0", "215.00", "215.00", "0.00", "0.00", "2022-10-16", "actuals"],
        ["156050", "2022-10-17", "10", "10", "0", "0", "215.00", "215.00", "0.00", "0.00", "2022-10-23", "actuals"],
    ]);
    assert_eq!(rows.iter().map(|r| r["visits"].as_u64().unwrap()).collect::<Vec<_>>(), [14, 14, 16]);
    let csv = env.ok(&["report", "commissioned-vs-actuals", "--org", PEARL, "--from", "2022-10-10", "--to", "2022-10-16"]);
    assert_eq!(csv.lines().collect::<Vec<_>>(), [
        "ssref,cpli_id,week,visits,comm_qty,actual_qty,frust_qty,diff_qty,comm_cost,actual_cost,frust_cost,diff_cost,period_end,source",
        "A401234,156050,2022-10-10,14,10,10,0,0,215.00,215.00,0.00,0.00,2022-10-16,actuals",
    ]);
}

#[test]
fn an_actuals_row_whose_planned_is_not_the_cplis_quantity_for_the_period_is_stored_with_a_warning() {
    let env = TestEnv::with_example_cplis();
    let text = format!(
        "{ACTUALS_HEADER}\n\
         0,A401234,Extra Care Housing - Planned Care,Pearl Carers - Extra Care Oxford,03/10/2022,09/10/2022,10,10,0,0,0,14,\n\
         0,A401234,Extra Care Housing - Planned Care,Pearl Carers - Extra Care Oxford,10/10/2022,16/10/2022,8.5,8,0,0,0,12,\n\
         0,A401234,Extra Care Housing - Planned Care,Pearl Carers - Extra Care Oxford,31/10/2022,27/11/2022,40,40,0,0,0,56,\n"
    );
    let (_a, path) = write_temp("actuals.csv", &text);
    let result = env.import(PEARL, &path);
    assert_eq!(counts(&result), (3, 3, 0, 0, 1), "{result:#}");
    let warned = issues_with(&result, "PLANNED_DIFFERS_FROM_CPLI");
    assert_eq!((warned[0]["row"].as_u64(), warned[0]["field"].as_str(), warned[0]["severity"].as_str()), (Some(3), Some("Planned"), Some("warning")));
    let msg = warned[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("Planned 8.5 differs from CPLI 156050's 10 for 10/10/2022 to 16/10/2022 (10 Hr Weekly)"), "{msg}");
}
