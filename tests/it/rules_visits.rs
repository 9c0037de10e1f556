//! Issue 11's visit rules through the real binary: hand-written CPLI extract and visits files
//! imported with `gateway import`, the results and the report read back.

use serde_json::Value;

use crate::guide::{codes_of, visit_row, visits_file};
use crate::helpers::*;

/// Three clients of Pearl Carers Ltd, one per kind of contract the rules read.
const CPLIS: &str = "\
CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised
900001,B100001,Mr Spot,,,,Pearl Carers Ltd,,Pearl Carers - Spot Oxford,Spot,,Personal Care,03/10/2022,,2,Hr,Weekly,20.00,Y
900002,B100002,Mrs Live Well,,,,Pearl Carers Ltd,,Pearl Carers - Zone 6 - Oxford,LWAH,,Home Support,03/10/2022,,2,Hr,Weekly,23.77,Y
900003,B100003,Mr Dapl,9434765919,,,Pearl Carers Ltd,,Pearl Carers - DAPL Oxford,DAPL,,Personal Care,03/10/2022,,3,Hr,Weekly,23.226,Y
";

fn env() -> TestEnv {
    let env = TestEnv::new();
    let (_d, cplis) = write_temp("cplis.csv", CPLIS);
    env.ok(&["cplis", "load", cplis.to_str().unwrap()]);
    env
}

/// A one-hour visit; `kind` is the visit type, and `client` says who (SSRef, or `nhs:` + number).
fn visit(vref: &str, client: &str, level: &str, service: &str, date: &str, entry: &str, kind: &str) -> String {
    let exit = format!("{:02}:{}", entry[..2].parse::<u32>().unwrap() + 1, &entry[3..]);
    let delivered = kind != "H";
    let mut pairs = vec![
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", entry),
        ("PlannedExitTime", exit.as_str()),
        ("VisitType", kind),
        ("ServiceLevel", level),
        ("ServiceName", service),
    ];
    match client.strip_prefix("nhs:") {
        Some(n) => pairs.push(("NHSNumber", n)),
        None => pairs.push(("SSRef", client)),
    }
    if delivered {
        pairs.extend([("DeliveredVisitDate", date), ("DeliveredEntryTime", entry), ("DeliveredExitTime", exit.as_str())]);
    } else {
        pairs.push(("Comments", "admitted to hospital"));
    }
    visit_row(&pairs)
}

fn dapl(vref: &str, client: &str, date: &str, entry: &str, kind: &str) -> String {
    visit(vref, client, "Personal Care", "Pearl Carers - DAPL Oxford", date, entry, kind)
}

fn import(env: &TestEnv, rows: &[String]) -> Value {
    let (_d, path) = write_temp("visits.csv", &visits_file(rows));
    env.import(PEARL, &path)
}

#[test]
fn a_visit_for_a_service_level_that_takes_no_visits_data_is_rejected_naming_the_list() {
    let env = env();
    let r = import(&env, &[
        visit("L1", "B100003", "Hospital Incentive Payment", "Pearl Carers - DAPL Oxford", "03/10/2022", "08:00", "DHS"),
        visit("L2", "B100003", "personal  CARE", "Pearl Carers - DAPL Oxford", "04/10/2022", "08:00", "DHS"),
    ]);
    assert_eq!(codes_of(&r, "L1"), ["NO_VISITS_FOR_SERVICE_LEVEL"]);
    assert_eq!(codes_of(&r, "L2"), Vec::<String>::new(), "{r:#}");
    let msg = issues_with(&r, "NO_VISITS_FOR_SERVICE_LEVEL")[0]["message"].as_str().unwrap();
    assert!(msg.contains("Personal Care, Continuing Care") && msg.contains("Hospital Incentive Payment"), "{msg}");
    // The data-quality count holds the week's PLANNED_HOURS_DIFFER (one hour sent of three).
    assert_eq!(counts(&r), (2, 1, 0, 1, 1));
    assert_eq!(issues_with(&r, "PLANNED_HOURS_DIFFER").len(), 1);
}

#[test]
fn a_spot_visit_is_an_invoice_case_kept_but_not_paid_in_the_report() {
    let env = env();
    let r = import(&env, &[visit("S1", "B100001", "Personal Care", "Pearl Carers - Spot Oxford", "03/10/2022", "08:00", "DHS")]);
    assert_eq!(codes_of(&r, "S1"), ["INVOICE_CASE"]);
    assert_eq!(issues_with(&r, "INVOICE_CASE")[0]["severity"], "warning");
    // Only INVOICE_CASE: a Spot package's planned hours are not judged.
    assert_eq!(counts(&r), (1, 1, 0, 0, 1));
    let listed = env.visits(PEARL);
    assert_eq!((listed.len(), listed[0]["status"].as_str()), (1, Some("Matched")), "{listed:#?}");
    let out = env.ok(&["report", "commissioned-vs-actuals", "--org", PEARL, "--from", "2022-10-03", "--to", "2022-10-09", "--format", "json"]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    let spot = rows.as_array().unwrap().iter().find(|r| r["cpli_id"] == "900001").expect("the Spot CPLI's week is listed");
    assert_eq!((spot["visits"].as_u64(), spot["actual_qty"].as_str(), spot["actual_cost"].as_str()), (Some(0), Some("0"), Some("0.00")), "{spot}");
}

#[test]
fn dhs_on_a_live_well_at_home_package_is_the_wrong_delivered_type_and_dhf_is_right() {
    let env = env();
    let lwah = |vref: &str, date: &str, kind: &str| visit(vref, "B100002", "Home Support", "Pearl Carers - Zone 6 - Oxford", date, "08:00", kind);
    let r = import(&env, &[lwah("W1", "03/10/2022", "DHS"), lwah("W2", "04/10/2022", "DHF"), dapl("W3", "B100003", "05/10/2022", "08:00", "DHF")]);
    assert_eq!(codes_of(&r, "W1"), ["WRONG_DELIVERED_TYPE"]);
    assert_eq!(codes_of(&r, "W2"), Vec::<String>::new());
    assert_eq!(codes_of(&r, "W3"), ["WRONG_DELIVERED_TYPE"]);
    let msgs: Vec<&str> = issues_with(&r, "WRONG_DELIVERED_TYPE").iter().map(|i| i["message"].as_str().unwrap()).collect();
    assert!(msgs[0].contains("use VisitType DHF") && msgs[1].contains("use VisitType DHS"), "{msgs:?}");
}

#[test]
fn a_visit_delivered_between_hospital_visits_in_this_file_and_stored_ones_is_flagged() {
    let env = env();
    let first = import(&env, &[dapl("P1", "B100003", "03/10/2022", "08:00", "DHS"), dapl("P2", "B100003", "03/10/2022", "18:00", "H")]);
    assert!(!codes(&first).contains(&"CLIENT_IN_HOSPITAL".to_string()), "{first:#}");
    // The next file names the client by NHS number: still the same client.
    let r = import(&env, &[dapl("P3", "nhs:9434765919", "04/10/2022", "08:00", "DHS"), dapl("P4", "B100003", "04/10/2022", "18:00", "H"), dapl("P5", "B100003", "05/10/2022", "08:00", "DHS")]);
    assert_eq!(codes_of(&r, "P3"), ["CLIENT_IN_HOSPITAL"], "{r:#}");
    assert_eq!(codes_of(&r, "P5"), Vec::<String>::new());
    let msg = issues_with(&r, "CLIENT_IN_HOSPITAL")[0]["message"].as_str().unwrap();
    assert!(msg.contains("03/10/2022 18:00 and 04/10/2022 18:00"), "{msg}");
}

#[test]
fn planned_hours_differ_once_per_client_and_not_again_for_a_file_that_corrects_one_visit() {
    let env = env();
    // Three hours commissioned; two visits by SSRef and one by NHS number make three.
    let week = [
        dapl("H1", "B100003", "03/10/2022", "08:00", "DHS"),
        dapl("H2", "B100003", "04/10/2022", "08:00", "DHS"),
        dapl("H3", "nhs:9434765919", "05/10/2022", "08:00", "DHS"),
    ];
    let r = import(&env, &week);
    assert_eq!(codes(&r), Vec::<String>::new(), "{r:#}");
    // Deleting one visit makes the week two hours: a correction, not a sending of the week.
    let delete = visit_row(&[("VisitRef", "H2"), ("Deleted", "1")]);
    let r = import(&env, &[delete]);
    assert_eq!(codes(&r), Vec::<String>::new(), "{r:#}");
    // A new visit that week sends it again: judged, once, by SSRef.
    let r = import(&env, &[dapl("H4", "nhs:9434765919", "06/10/2022", "08:00", "DHS"), dapl("H5", "B100003", "07/10/2022", "08:00", "DHS")]);
    let found = issues_with(&r, "PLANNED_HOURS_DIFFER");
    assert_eq!(found.len(), 1, "{r:#}");
    assert_eq!(found[0]["ref"], "B100003");
    assert!(found[0]["message"].as_str().unwrap().contains("4 hours planned"), "{}", found[0]["message"]);
}
