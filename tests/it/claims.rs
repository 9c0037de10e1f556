//! Issue 12: one-off claims of the hospital incentive, both ways by file. The guide's two worked
//! examples (£11.89, £47.54) claimed clean; ineligible, unfounded, duplicate and miscounted claims
//! told why; the council (OpenSSH sftp, council login) accepts one amended and rejects one with a
//! note; `/exports/claims.csv` read over SFTP shows both; the decision emails reach aiosmtpd.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::guide::{visit_row, visits_file};
use crate::helpers::{keypair, codes, counts, issues_with, write_temp, TestEnv, PEARL};
use crate::mail::{free_port, mail_config, SmtpSink};
use crate::server::{wait_for_json, Server, ORG_DIR};

const DAPL_SOUTH: &str = "Pearl Carers - DAPL South";
const DAPL_OXFORD: &str = "Pearl Carers - DAPL Oxford";
const SPOT: &str = "Pearl Carers - Spot Oxford";
const APL: &str = "Pearl Carers - APL Oxford";

/// Flanders (DAPL South) and Skinner (DAPL Oxford) at the guide's £23.77 an hour; a Spot client and
/// an APL one.
fn load_cplis(env: &TestEnv) {
    let text = "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n\
        156024,A352035,Mr Ned Flanders,,,,Pearl Carers Ltd,,Pearl Carers - DAPL South,DAPL,,Personal Care,03/10/2022,,2,Hr,Weekly,23.77,Y\n\
        156040,A332295,Mr Principal Skinner,,,,Pearl Carers Ltd,,Pearl Carers - DAPL Oxford,DAPL,,Personal Care,03/10/2022,,7,Hr,Weekly,23.77,Y\n\
        156050,A381542,Mr Nelson Muntz,,,,Pearl Carers Ltd,,Pearl Carers - Spot Oxford,Spot,,Personal Care,03/10/2022,,7,Hr,Weekly,23.77,Y\n\
        156060,A371849,Mr Mayor Quimby,,,,Pearl Carers Ltd,,Pearl Carers - APL Oxford,APL,,Personal Care,03/10/2022,,7,Hr,Weekly,23.77,Y\n";
    let (_d, path) = write_temp("cplis.csv", text);
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
}

const LWAH_OXFORD: &str = "Pearl Carers - LWAH Oxford";

/// A store with only these CPLI extract rows (the header is added).
fn with_cplis(rows: &str) -> TestEnv {
    let env = TestEnv::new();
    let (_d, path) = write_temp("cplis.csv", &format!("CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n{rows}"));
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
    env
}

fn visit(vref: &str, ssref: &str, service: &str, date: &str, (entry, exit): (&str, &str), code: &str) -> String {
    let mut pairs = vec![
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", entry),
        ("PlannedExitTime", exit),
        ("VisitType", code),
        ("Comments", if code == "H" { "in hospital" } else { "" }),
        ("SSRef", ssref),
        ("ServiceLevel", "Personal Care"),
        ("ServiceName", service),
    ];
    if code == "DHS" {
        pairs.extend([("DeliveredVisitDate", date), ("DeliveredEntryTime", entry), ("DeliveredExitTime", exit)]);
    }
    visit_row(&pairs)
}

/// The guide's two examples as visits: Flanders missed Saturday 12/11's call and resumed on
/// Sunday 13/11 (and again 26/11, resumed 27/11); Skinner missed 4 hours from Monday 21/11's
/// evening call to Friday 25/11's lunch call. The Spot and APL clients missed a visit each.
fn load_visits(env: &TestEnv) {
    let mut rows = vec![
        visit("F1", "A352035", DAPL_SOUTH, "06/11/2022", ("14:00", "15:00"), "DHS"),
        visit("F2", "A352035", DAPL_SOUTH, "12/11/2022", ("14:00", "15:00"), "H"),
        visit("F3", "A352035", DAPL_SOUTH, "13/11/2022", ("14:00", "15:00"), "DHS"),
        visit("F4", "A352035", DAPL_SOUTH, "26/11/2022", ("14:00", "15:00"), "H"),
        visit("F5", "A352035", DAPL_SOUTH, "27/11/2022", ("14:00", "15:00"), "DHS"),
        visit("K0", "A332295", DAPL_OXFORD, "21/11/2022", ("12:00", "12:30"), "DHS"),
        visit("K1", "A332295", DAPL_OXFORD, "21/11/2022", ("18:00", "18:30"), "H"),
        visit("M1", "A381542", SPOT, "21/11/2022", ("09:00", "10:00"), "H"),
        visit("Q1", "A371849", APL, "21/11/2022", ("09:00", "10:00"), "H"),
    ];
    for day in 22..=24 {
        rows.push(visit(&format!("K{day}a"), "A332295", DAPL_OXFORD, &format!("{day}/11/2022"), ("12:00", "12:30"), "H"));
        rows.push(visit(&format!("K{day}b"), "A332295", DAPL_OXFORD, &format!("{day}/11/2022"), ("18:00", "18:30"), "H"));
    }
    rows.push(visit("K25a", "A332295", DAPL_OXFORD, "25/11/2022", ("12:00", "12:30"), "H"));
    rows.push(visit("K25b", "A332295", DAPL_OXFORD, "25/11/2022", ("18:00", "18:30"), "DHS"));
    let (_d, path) = write_temp("visits.csv", &visits_file(&rows));
    let result = env.import(PEARL, &path);
    assert_eq!(counts(&result).3, 0, "no visit is rejected: {result}");
}

const CLAIMS_HEADER: &str = "ClaimRef,SSRef,ServiceName,AdmittedOn,DischargedOn,Amount,Description,Attachment";

/// The guide's two worked examples, as its Description asks: the dates, the hours and the working.
fn guide_claims(attachment: &str) -> String {
    format!(
        "{CLAIMS_HEADER}\n\
         HIP-1,A352035,{DAPL_SOUTH},10/11/2022,13/11/2022,11.89,\"Admitted Thursday 10.11.22, discharged and care resumed Sunday 13.11.22; missed Saturday's call: 1 hours * 23.77 * 50% = £11.89\",\n\
         HIP-2,A332295,{DAPL_OXFORD},21/11/2022,25/11/2022,£47.54,\"Admitted 21.11.22 after the lunch call, care resumed 25.11.22 with the evening call: 4 hours * 23.77 * 50% = £47.54\",{attachment}\n"
    )
}

fn import_claims(env: &TestEnv, name: &str, text: &str) -> Value {
    let (_d, path) = write_temp(name, text);
    env.import(PEARL, &path)
}

#[test]
fn the_guides_two_worked_examples_are_claimed_clean_and_bad_claims_are_told_why() {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    let clean = import_claims(&env, "claims.csv", &guide_claims(""));
    assert_eq!((clean["kind"].as_str(), clean["status"].as_str()), (Some("claims"), Some("processed")));
    assert_eq!(counts(&clean), (2, 2, 0, 0, 0), "{clean}");
    assert_eq!(codes(&clean), Vec::<String>::new());

    let bad = format!(
        "{CLAIMS_HEADER}\n\
         HIP-3,A381542,{SPOT},21/11/2022,,10.00,Admitted 21.11.22,\n\
         HIP-4,A371849,{APL},21/11/2022,,10.00,Admitted 21.11.22,\n\
         HIP-5,A332295,{DAPL_OXFORD},01/11/2022,03/11/2022,10.00,Admitted 01.11.22,\n\
         HIP-6,A332295,{DAPL_OXFORD},22/11/2022,25/11/2022,35.66,The same stay again,\n\
         HIP-7,A352035,{DAPL_SOUTH},24/11/2022,,15.00,\"Admitted 24.11.22, resumed 27.11.22: 1 h missed\",\n"
    );
    let r = import_claims(&env, "more-claims.csv", &bad);
    assert_eq!(counts(&r), (5, 1, 0, 4, 1), "{r}");
    assert_eq!(codes(&r), ["CLAIM_NOT_ELIGIBLE", "CLAIM_NOT_ELIGIBLE", "NO_HOSPITAL_VISITS", "DUPLICATE_CLAIM", "CLAIM_AMOUNT_DIFFERS"], "{r}");
    let msg = |code: &str, n: usize| issues_with(&r, code)[n]["message"].as_str().unwrap().to_string();
    assert!(msg("CLAIM_NOT_ELIGIBLE", 0).contains("is under the Spot contract"), "{}", msg("CLAIM_NOT_ELIGIBLE", 0));
    assert!(msg("CLAIM_NOT_ELIGIBLE", 1).contains("is under the APL contract"), "{}", msg("CLAIM_NOT_ELIGIBLE", 1));
    assert!(msg("NO_HOSPITAL_VISITS", 0).starts_with("no H (in hospital) visit is stored for client A332295"), "{}", msg("NO_HOSPITAL_VISITS", 0));
    assert!(msg("DUPLICATE_CLAIM", 0).starts_with("claim C2 (ClaimRef 'HIP-2', admitted 21/11/2022) is already for this stay"), "{}", msg("DUPLICATE_CLAIM", 0));
    let differs = &issues_with(&r, "CLAIM_AMOUNT_DIFFERS")[0];
    assert_eq!((differs["ref"].as_str(), differs["field"].as_str(), differs["severity"].as_str()), (Some("HIP-7"), Some("Amount"), Some("warning")));
    assert!(
        differs["message"].as_str().unwrap().starts_with("the claim is for £15.00; the gateway's figure for this stay is £11.89: 1 h × £23.77 × 50% = £11.89 (DAPL, admitted 24/11/2022, care resumed 27/11/2022, 2 working days, 1 H visits)"),
        "{differs}"
    );

    // The list: three claims, all pending; a resubmitted pending ClaimRef updates it, Deleted withdraws one.
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--org", PEARL, "--format", "json"])).unwrap();
    let got: Vec<(&str, &str, &str, &str)> =
        list.iter().map(|c| (c["claim_id"].as_str().unwrap(), c["claim_ref"].as_str().unwrap(), c["status"].as_str().unwrap(), c["computed_amount"].as_str().unwrap())).collect();
    assert_eq!(got, [("C1", "HIP-1", "Pending", "11.89"), ("C2", "HIP-2", "Pending", "47.54"), ("C3", "HIP-7", "Pending", "11.89")]);
    let again = import_claims(&env, "fix.csv", &format!("{CLAIMS_HEADER},Deleted\nHIP-7,A352035,{DAPL_SOUTH},24/11/2022,,11.89,Corrected,,0\nHIP-1,,,,,,,,1\n"));
    assert_eq!(counts(&again), (2, 0, 2, 0, 0), "{again}");
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    let status: BTreeMap<&str, (&str, &str)> = list.iter().map(|c| (c["claim_id"].as_str().unwrap(), (c["status"].as_str().unwrap(), c["amount"].as_str().unwrap()))).collect();
    assert_eq!(status["C1"].0, "Withdrawn");
    assert_eq!(status["C3"], ("Pending", "11.89"), "the same ClaimRef again keeps its id");

    // The report uses the same figures, with the working.
    let report: Vec<Value> = serde_json::from_str(&env.ok(&["report", "hospital-incentive", "--org", PEARL, "--from", "2022-11-01", "--to", "2022-11-30", "--format", "json"])).unwrap();
    let amounts: Vec<(&str, &str)> = report.iter().map(|r| (r["from"].as_str().unwrap(), r["amount"].as_str().unwrap())).collect();
    assert_eq!(amounts, [("2022-11-21", "47.54"), ("2022-11-12", "11.89"), ("2022-11-26", "11.89")]);

    // A note is as long as the decisions file allows: a longer one decides nothing.
    let out = env.run(&["claim", "decide", "--id", "C2", "--decision", "rejected", "--note", &"n".repeat(8001)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("TOO_LONG") && err.contains("--note"), "{out:?}");
    // A decided claim cannot be decided again, nor changed by the provider.
    assert!(env.ok(&["claim", "decide", "--id", "C2", "--decision", "accepted"]).starts_with("claim C2 (Pearl Carers Ltd, ClaimRef HIP-2) accepted at £47.54"));
    let out = env.run(&["claim", "decide", "--id", "C2", "--decision", "rejected", "--note", "no"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("CLAIM_DECIDED"), "{out:?}");
    let r = import_claims(&env, "late.csv", &guide_claims(""));
    assert_eq!(codes(&r), ["CLAIM_DECIDED"], "HIP-1 (withdrawn) is claimed again, HIP-2 is decided: {r}");
}

/// OpenSSH `sftp -b -` as `login`; the batch on standard input.
#[test]
fn a_claim_under_an_unauthorised_cpli_or_one_with_no_contract_is_told_so() {
    let env = with_cplis(
        "158001,B000001,Mrs One,,,,Pearl Carers Ltd,,Pearl Carers - DAPL South,,,Personal Care,03/10/2022,,7,Hr,Weekly,20,Y\n\
        158002,B000002,Mrs Two,,,,Pearl Carers Ltd,,Pearl Carers - DAPL South,DAPL,,Personal Care,03/10/2022,,7,Hr,Weekly,20,N\n\
        158003,B000003,Mrs Three,,,,Pearl Carers Ltd,,Pearl Carers - DAPL South,DAPL,,Personal Care,03/10/2022,,7,Hr,Weekly,20,Y\n\
        1580,B000003,Mrs Three,,,,Pearl Carers Ltd,,Pearl Carers - DAPL South,DAPL,,Personal Care,14/11/2022,27/11/2022,2,Hr,Weekly,20,N\n",
    );
    let rows = [
        visit("B1", "B000001", DAPL_SOUTH, "14/11/2022", ("09:00", "10:00"), "H"),
        visit("B2", "B000002", DAPL_SOUTH, "14/11/2022", ("09:00", "10:00"), "H"),
        visit("B3", "B000003", DAPL_SOUTH, "14/11/2022", ("09:00", "10:00"), "H"),
        visit("B4", "B000003", DAPL_SOUTH, "15/11/2022", ("09:00", "10:00"), "DHS"),
    ];
    let (_v, path) = write_temp("visits.csv", &visits_file(&rows));
    env.import(PEARL, &path);
    // B000003's open package is authorised; a temporary one beside it (CPLIID 1580, first in order) is not.
    let claims = format!("{CLAIMS_HEADER}\nB-1,B000001,{DAPL_SOUTH},14/11/2022,,10.00,Admitted 14.11.22,\nB-2,B000002,{DAPL_SOUTH},14/11/2022,,10.00,Admitted 14.11.22,\nB-3,B000003,{DAPL_SOUTH},14/11/2022,,10.00,Admitted 14.11.22,\n");
    let r = import_claims(&env, "claims.csv", &claims);
    assert_eq!(codes(&r), ["CLAIM_NOT_ELIGIBLE", "NO_CPLI"], "{r}");
    assert_eq!(counts(&r).1, 1, "B-3 is claimed under the authorised package: {r}");
    let msg = |code: &str| issues_with(&r, code)[0]["message"].as_str().unwrap().to_string();
    assert!(msg("CLAIM_NOT_ELIGIBLE").contains("CPLI 158001 for 'Pearl Carers - DAPL South' is under no contract recorded (its Contract is blank"), "{}", msg("CLAIM_NOT_ELIGIBLE"));
    assert!(msg("NO_CPLI").contains("CPLI 158002 for 'Pearl Carers - DAPL South' is not authorised yet"), "{}", msg("NO_CPLI"));
}

/// A decided claim keeps the stay end it was decided on, but its H visits sent later still run
/// the stay on: a second claim for those days is the same stay.
#[test]
fn a_second_claim_for_a_stay_whose_first_claim_was_decided_before_its_visits_ran_on_is_a_duplicate() {
    const LWAH: &str = LWAH_OXFORD;
    let env = with_cplis(&format!("158010,P000001,Mr Patty,,,,Pearl Carers Ltd,,{LWAH},LWAH,,Personal Care,03/10/2022,,7,Hr,Weekly,20,Y\n"));
    let send = |name: &str, days: std::ops::RangeInclusive<u32>| {
        let rows: Vec<String> = days.map(|day| visit(&format!("P{day}"), "P000001", LWAH, &format!("{day:02}/11/2022"), ("09:00", "10:00"), "H")).collect();
        let (_v, path) = write_temp(name, &visits_file(&rows));
        assert_eq!(counts(&env.import(PEARL, &path)).3, 0);
    };
    send("first.csv", 7..=10);
    let first = import_claims(&env, "k1.csv", &format!("{CLAIMS_HEADER}\nK1,P000001,{LWAH},07/11/2022,10/11/2022,40.00,Admitted 07.11.22,\n"));
    assert_eq!(codes(&first), Vec::<String>::new(), "{first}");
    env.ok(&["claim", "decide", "--id", "C1", "--decision", "accepted"]);
    send("later.csv", 11..=15);
    let second = import_claims(&env, "k2.csv", &format!("{CLAIMS_HEADER}\nK2,P000001,{LWAH},12/11/2022,,40.00,Admitted 12.11.22,\n"));
    assert_eq!(codes(&second), ["DUPLICATE_CLAIM"], "{second}");
}

/// Quimby under LWAH, his package varied on 18/11/2022 (£20 an hour, then £30), in hospital from
/// 10/11 to the end of the month with no care resumed: one stay, not two.
#[test]
fn a_stay_runs_on_across_a_variation_of_the_package_and_cannot_be_split_into_two_claims() {
    const LWAH: &str = LWAH_OXFORD;
    let env = with_cplis(&format!(
        "158006,A371849,Mr Mayor Quimby,,,,Pearl Carers Ltd,,{LWAH},LWAH,,Personal Care,03/10/2022,17/11/2022,7,Hr,Weekly,20,Y\n\
         158007,A371849,Mr Mayor Quimby,,,,Pearl Carers Ltd,,{LWAH},LWAH,,Personal Care,18/11/2022,,7,Hr,Weekly,30,Y\n"
    ));
    let rows: Vec<String> = (10..=30).map(|day| visit(&format!("Q{day}"), "A371849", LWAH, &format!("{day}/11/2022"), ("09:00", "10:00"), "H")).collect();
    let (_v, path) = write_temp("visits.csv", &visits_file(&rows));
    assert_eq!(counts(&env.import(PEARL, &path)).3, 0);

    // The report: one stay, its first 14 days paid, each visit at its own CPLI's cost.
    let report: Vec<Value> = serde_json::from_str(&env.ok(&["report", "hospital-incentive", "--org", PEARL, "--from", "2022-11-01", "--to", "2022-11-30", "--format", "json"])).unwrap();
    assert_eq!(report.len(), 1, "{report:#?}");
    assert_eq!((report[0]["cpli_id"].as_str(), report[0]["amount"].as_str()), (Some("158006"), Some("170.00")));
    assert_eq!(
        report[0]["working"].as_str().unwrap(),
        "(8 h × £20 + 6 h × £30) × 50% = £170.00 (LWAH holds the package open for up to 14 days, to 23/11/2022)"
    );

    // A claim with an early DischargedOn is figured as the visits show the stay (since 2026-12-03;
    // it was figured to that day, £70.00, while the H visits ran on); a second claim for the days
    // after it, or from the variation, is the same stay (the H visits run on, no care between).
    let first = import_claims(&env, "claims.csv", &format!("{CLAIMS_HEADER}\nQ-1,A371849,{LWAH},10/11/2022,16/11/2022,70.00,Admitted 10.11.22,\n"));
    assert_eq!((counts(&first), codes(&first)), ((1, 1, 0, 0, 1), vec!["CLAIM_AMOUNT_DIFFERS".to_string()]), "{first}");
    assert!(issues_with(&first, "CLAIM_AMOUNT_DIFFERS")[0]["message"].as_str().unwrap().starts_with("the claim is for £70.00; the gateway's figure for this stay is £170.00"), "{first}");
    let split = format!("{CLAIMS_HEADER}\nQ-2,A371849,{LWAH},17/11/2022,,100.00,Admitted 17.11.22,\nQ-3,A371849,{LWAH},18/11/2022,,90.00,From the variation,\n");
    let r = import_claims(&env, "split.csv", &split);
    assert_eq!(codes(&r), ["DUPLICATE_CLAIM", "DUPLICATE_CLAIM"], "{r}");
    assert!(issues_with(&r, "DUPLICATE_CLAIM")[0]["message"].as_str().unwrap().starts_with("claim C1 (ClaimRef 'Q-1', admitted 10/11/2022) is already for this stay"), "{r}");
}

/// Two stays of one DAPL client: H from Monday 7/11 evening, care resumed Wednesday 9/11 at lunch,
/// H again that evening to Friday lunch, care resumed Friday evening. Each is claimed, the second
/// admitted on the day the first's care resumed.
#[test]
fn a_stay_begun_the_day_the_last_ones_care_resumed_is_claimed_apart() {
    let env = with_cplis(&format!("910001,H1,Mr Hans Moleman,,,,Pearl Carers Ltd,,{DAPL_OXFORD},DAPL,,Personal Care,03/10/2022,,7,Hr,Weekly,23.77,Y\n"));
    let calls = [(4, "DHS", ""), (7, "DHS", "H"), (8, "H", "H"), (9, "DHS", "H"), (10, "H", "H"), (11, "H", "DHS")];
    let mut rows = Vec::new();
    for (day, lunch, evening) in calls {
        rows.push(visit(&format!("M{day}a"), "H1", DAPL_OXFORD, &format!("{day:02}/11/2022"), ("12:00", "12:30"), lunch));
        if !evening.is_empty() {
            rows.push(visit(&format!("M{day}b"), "H1", DAPL_OXFORD, &format!("{day:02}/11/2022"), ("18:00", "18:30"), evening));
        }
    }
    let (_v, path) = write_temp("visits.csv", &visits_file(&rows));
    assert_eq!(counts(&env.import(PEARL, &path)).3, 0);
    let r = import_claims(
        &env,
        "claims.csv",
        &format!("{CLAIMS_HEADER}\nS-1,H1,{DAPL_OXFORD},07/11/2022,09/11/2022,17.83,First stay,\nS-2,H1,{DAPL_OXFORD},09/11/2022,11/11/2022,23.77,Second stay,\n"),
    );
    assert_eq!((counts(&r), codes(&r)), ((2, 2, 0, 0, 0), vec![]), "each claim is its own stay's, at the report's figure: {r}");
    assert_eq!(claim_figure(&env, "S-2"), ("23.77".to_string(), "2 h × £23.77 × 50% = £23.77".to_string()));
}

fn sftp(port: u16, login: &str, key: &Path, batch: &str) -> Output {
    let out = crate::helpers::sftp_batch(port, login, key, batch);
    assert!(out.status.success(), "sftp as {login}: {batch}\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Fetches `remote` over SFTP until `done` holds for its rows.
fn fetch_rows_until(port: u16, login: &str, key: &Path, remote: &str, local: &Path, done: impl Fn(&[BTreeMap<String, String>]) -> bool) -> Vec<BTreeMap<String, String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = std::fs::remove_file(local);
        sftp(port, login, key, &format!("get {remote} {}\n", local.display()));
        let rows = rows_of(&std::fs::read_to_string(local).unwrap());
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{remote} never showed what was expected: {rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rows_of(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let heads = rdr.headers().unwrap().clone();
    rdr.records().map(|r| heads.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()).collect()
}

#[test]
fn the_council_accepts_one_claim_amended_and_rejects_one_with_a_note_and_the_provider_sees_both_over_sftp_and_by_email() {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    env.ok(&["contact", "add", "--org", PEARL, "--email", "manager@pearl.example.org", "--name", "Edna"]);
    let pearl_key = keypair(env.data(), "pearl");
    let council_key = keypair(env.data(), "council");
    env.ok(&["user", "add", "--org", PEARL, "--name", "pearl-rota", "--key", &format!("{}.pub", pearl_key.display())]);
    env.ok(&["user", "add", "--council", "--name", "finance", "--key", &format!("{}.pub", council_key.display())]);
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port, &env.data().join("maildir"));
    let server = Server::with_config(&env, &mail_config(smtp_port));

    // The provider uploads its evidence, then the claims file naming it.
    let work = env.data().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let pdf = work.join("skinner-discharge.pdf");
    std::fs::write(&pdf, b"%PDF-1.4\n% discharge letter, John Radcliffe, 25/11/2022\n%%EOF\n").unwrap();
    let claims = work.join("claims.csv");
    std::fs::write(&claims, guide_claims("skinner-discharge.pdf")).unwrap();
    sftp(server.port, "pearl-rota", &pearl_key, &format!("put {} /inbox/\nput {} /inbox/\n", pdf.display(), claims.display()));
    let result = wait_for_json(&env.org_dir(ORG_DIR).join("results/claims.result.json"), 30);
    assert_eq!(counts(&result), (2, 2, 0, 0, 0), "{result}");
    assert!(env.data().join("attachments").join(ORG_DIR).join("C2-skinner-discharge.pdf").is_file(), "the attachment is kept with claim C2");
    assert!(!env.org_dir(ORG_DIR).join("inbox/skinner-discharge.pdf").exists(), "and leaves the inbox");

    // The council decides through its own inbox: C1 by id with an amended amount, HIP-2 by
    // organisation and ClaimRef, rejected with a note; a third row names no claim.
    let decisions = work.join("decisions.csv");
    std::fs::write(
        &decisions,
        "ClaimId,Organisation,ClaimRef,Decision,Amount,Note\n\
         C1,,,Accepted,10.00,Amended: the Saturday call was planned for 50 minutes\n\
         ,Pearl Carers Ltd,HIP-2,Rejected,,Not enough detail: the discharge letter is not dated\n\
         C99,,,Accepted,,\n\
         ,Pearl Carers Ltd,HIP-2,Accepted,,\n",
    )
    .unwrap();
    sftp(server.port, "finance", &council_key, &format!("put {} /inbox/\n", decisions.display()));
    let fetched = work.join("decisions.result.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer: Value = loop {
        let _ = std::fs::remove_file(&fetched);
        let out = Command::new("sftp")
            .args(["-P", &server.port.to_string(), "-i", council_key.to_str().unwrap(), "-b", "-"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
            .arg("finance@127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                std::io::Write::write_all(&mut c.stdin.take().unwrap(), format!("get /results/decisions.result.json {}\n", fetched.display()).as_bytes())?;
                c.wait()
            })
            .unwrap();
        if out.success() {
            break serde_json::from_slice(&std::fs::read(&fetched).unwrap()).unwrap();
        }
        assert!(Instant::now() < deadline, "the council's result never came");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!((answer["kind"].as_str(), answer["status"].as_str()), (Some("claim_decisions"), Some("processed")), "{answer}");
    assert_eq!(counts(&answer), (4, 0, 2, 2, 0), "{answer}");
    assert_eq!(codes(&answer), ["UNKNOWN_CLAIM", "CLAIM_DECIDED"]);
    // Decided by the row above: named by the claim's id and the Decision column.
    assert_eq!((answer["issues"][1]["ref"].as_str(), answer["issues"][1]["field"].as_str()), (Some("C2"), Some("Decision")), "{answer}");

    // The provider's /exports/claims.csv shows both decisions with the council's notes.
    let rows = fetch_rows_until(server.port, "pearl-rota", &pearl_key, "/exports/claims.csv", &work.join("claims-export.csv"), |rows| {
        rows.iter().all(|r| r["Status"] != "Pending") && rows.len() == 2
    });
    let by_ref: BTreeMap<&str, &BTreeMap<String, String>> = rows.iter().map(|r| (r["ClaimRef"].as_str(), r)).collect();
    let c1 = by_ref["HIP-1"];
    assert_eq!(
        (c1["ClaimId"].as_str(), c1["Status"].as_str(), c1["Amount"].as_str(), c1["ComputedAmount"].as_str(), c1["AcceptedAmount"].as_str()),
        ("C1", "Accepted", "11.89", "11.89", "10.00")
    );
    assert_eq!(c1["Note"], "Amended: the Saturday call was planned for 50 minutes");
    let c2 = by_ref["HIP-2"];
    assert_eq!((c2["Status"].as_str(), c2["AcceptedAmount"].as_str(), c2["Attachment"].as_str()), ("Rejected", "", "skinner-discharge.pdf"));
    assert_eq!(c2["Note"], "Not enough detail: the discharge letter is not dated");
    assert_eq!((c2["AdmittedOn"].as_str(), c2["DischargedOn"].as_str(), c2["Working"].as_str()), ("21/11/2022", "25/11/2022", "4 h × £23.77 × 50% = £47.54"));

    // The council's own claims.csv has every organisation's.
    let council = fetch_rows_until(server.port, "finance", &council_key, "/exports/claims.csv", &work.join("council-claims.csv"), |rows| {
        rows.iter().filter(|r| r["Status"] != "Pending").count() == 2
    });
    assert!(council.iter().all(|r| r["Organisation"] == PEARL), "{council:?}");
    // The council's hospital-incentive.csv holds the same figures the claims were judged by.
    let stays = fetch_rows_until(server.port, "finance", &council_key, "/exports/hospital-incentive.csv", &work.join("council-hospital.csv"), |rows| rows.len() == 3);
    let figures: Vec<(&str, &str, &str, &str)> =
        stays.iter().map(|r| (r["organisation"].as_str(), r["ssref"].as_str(), r["from"].as_str(), r["amount"].as_str())).collect();
    assert_eq!(figures, [(PEARL, "A332295", "2022-11-21", "47.54"), (PEARL, "A352035", "2022-11-12", "11.89"), (PEARL, "A352035", "2022-11-26", "11.89")]);
    assert_eq!(stays[0]["working"], c2["Working"]);

    // The contact got the claims file's result and one email per decision.
    let mails = sink.wait_for(3, 30);
    let subjects: Vec<&str> = mails.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert_eq!(mails.len(), 3, "{subjects:?}");
    let accepted = mails.iter().find(|m| m["subject"] == "Pearl Carers Ltd: Claim C1 accepted at £10.00 (amended from £11.89)").unwrap_or_else(|| panic!("{subjects:?}"));
    let text = accepted["text"].as_str().unwrap();
    assert!(text.starts_with("Hello Edna,"), "{text}");
    assert!(text.contains("Council's note: Amended: the Saturday call was planned for 50 minutes"), "{text}");
    assert!(accepted["html"].as_str().unwrap().contains("<th align=\"left\" valign=\"top\">Amount accepted</th><td>£10.00</td>"));
    let rejected = mails.iter().find(|m| m["subject"] == "Pearl Carers Ltd: Claim C2 rejected").unwrap_or_else(|| panic!("{subjects:?}"));
    assert!(rejected["text"].as_str().unwrap().contains("Council's note: Not enough detail: the discharge letter is not dated"));
    assert!(rejected["to"].as_str().unwrap().contains("manager@pearl.example.org"));
}

#[test]
fn a_claims_file_stopped_after_its_commit_is_answered_from_its_record_at_the_next_start_and_applied_once() {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    let inbox = env.org_dir(ORG_DIR).join("inbox");
    std::fs::write(inbox.join("discharge.pdf"), b"%PDF-1.4\n%%EOF\n").unwrap();
    let (_d, claims) = write_temp("claims.csv", &guide_claims("discharge.pdf"));
    let stopped = env.cmd(&["import", "--org", PEARL, claims.to_str().unwrap()]).env("GATEWAY_FAULT", "after-commit").output().unwrap();
    assert!(!stopped.status.success(), "the fault point stops the import after its commit");
    let results = env.org_dir(ORG_DIR).join("results");
    assert!(!results.join("claims.result.json").exists(), "stopped before it was answered");

    let _server = Server::start(&env);
    let result = wait_for_json(&results.join("claims.result.json"), 30);
    assert_eq!(counts(&result), (2, 2, 0, 0, 0), "answered from its record: {result}");
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    let ids: Vec<(&str, &str)> = list.iter().map(|c| (c["claim_id"].as_str().unwrap(), c["attachment"].as_str().unwrap())).collect();
    assert_eq!(ids, [("C1", ""), ("C2", "discharge.pdf")], "applied once");
    assert!(env.data().join("attachments").join(ORG_DIR).join("C2-discharge.pdf").is_file());
    // The next claim gets the next id: the counter was committed with the claims.
    let next = import_claims(&env, "next.csv", &format!("{CLAIMS_HEADER}\nHIP-7,A352035,{DAPL_SOUTH},24/11/2022,,11.89,Admitted 24.11.22,\n"));
    assert_eq!(counts(&next), (1, 1, 0, 0, 0), "{next}");
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    assert_eq!(list.last().unwrap()["claim_id"], "C3");
    // Sent again with Attachment blank, the claim keeps the one it has (it was dropped).
    let again = import_claims(&env, "again.csv", &guide_claims(""));
    assert_eq!(counts(&again).2, 2, "both updated: {again}");
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    assert_eq!(list[1]["attachment"], "discharge.pdf", "{list:#?}");
}

#[test]
fn an_attachment_that_is_missing_or_not_what_its_name_says_is_refused_and_the_claim_with_it() {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    let inbox = env.org_dir(ORG_DIR).join("inbox");
    std::fs::write(inbox.join("letter.pdf"), b"PK\x03\x04 a Word document renamed").unwrap();
    std::fs::write(inbox.join("Discharge.PNG"), b"\x89PNG\r\n\x1a\n").unwrap();
    let text = format!(
        "{CLAIMS_HEADER}\n\
         HIP-1,A352035,{DAPL_SOUTH},10/11/2022,13/11/2022,11.89,Admitted 10.11.22,not-uploaded.png\n\
         HIP-2,A332295,{DAPL_OXFORD},21/11/2022,25/11/2022,47.54,Admitted 21.11.22,letter.pdf\n\
         HIP-3,A332295,{DAPL_OXFORD},21/11/2022,25/11/2022,47.54,Admitted 21.11.22,letter.docx\n\
         HIP-4,A332295,{DAPL_OXFORD},21/11/2022,25/11/2022,47.54,Admitted 21.11.22,discharge.png\n"
    );
    let r = import_claims(&env, "claims.csv", &text);
    assert_eq!(codes(&r), ["BAD_ATTACHMENT", "BAD_ATTACHMENT", "BAD_ATTACHMENT", "BAD_ATTACHMENT"], "{r}");
    let msgs: Vec<&str> = r["issues"].as_array().unwrap().iter().map(|i| i["message"].as_str().unwrap()).collect();
    assert!(msgs[0].starts_with("Attachment 'not-uploaded.png' is not in /inbox: upload it to /inbox before the claims file"), "{}", msgs[0]);
    assert!(msgs[1].starts_with("Attachment 'letter.pdf' is not a PDF file"), "{}", msgs[1]);
    assert!(msgs[2].starts_with("Attachment 'letter.docx' must name a PDF, PNG or JPEG file"), "{}", msgs[2]);
    assert_eq!(msgs[3], "Attachment 'discharge.png' is not in /inbox, but 'Discharge.PNG' is: names must match exactly, case included; write Attachment as 'Discharge.PNG'");
    assert_eq!(counts(&r), (4, 0, 0, 4, 0));
    assert!(inbox.join("letter.pdf").exists(), "a refused attachment stays where it was");
}

#[test]
fn an_organisation_sees_only_its_own_claims_and_cannot_claim_another_ones_client() {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    env.ok(&["org", "add", "--name", "Ruby Home Support Ltd"]);
    assert_eq!(counts(&import_claims(&env, "claims.csv", &guide_claims(""))), (2, 2, 0, 0, 0));
    let again = import_claims(&env, "claims.csv", &guide_claims(""));
    assert_eq!(counts(&again), (2, 0, 2, 0, 0), "Pearl sending its claims again updates them");
    let (_d, path) = write_temp("claims.csv", &guide_claims(""));
    let ruby_result = env.import("Ruby Home Support Ltd", &path);
    assert_eq!(codes(&ruby_result), ["NO_CPLI", "NO_CPLI"], "{ruby_result}");
    assert!(issues_with(&ruby_result, "NO_CPLI")[0]["message"].as_str().unwrap().starts_with("client A352035 has no CPLI with Ruby Home Support Ltd"));
    let export = |slug: &str| std::fs::read_to_string(env.org_dir(slug).join("exports/claims.csv")).unwrap();
    assert_eq!(export("ruby-home-support-ltd").lines().count(), 1, "only the headings");
    let pearl = export(ORG_DIR);
    assert_eq!(pearl.lines().count(), 3, "{pearl}");
    let council = std::fs::read_to_string(env.data().join("council/exports/claims.csv")).unwrap();
    assert_eq!(council.lines().filter(|l| l.starts_with("Pearl Carers Ltd,")).count(), 2, "{council}");
}

#[test]
fn the_example_claim_on_the_example_week_is_accepted_clean() {
    let env = TestEnv::with_example_cplis();
    let week = env.import(PEARL, &crate::helpers::example("visits-week.csv"));
    assert_eq!(counts(&week).3, 0, "{week}");
    let r = env.import(PEARL, &crate::helpers::example("claims.csv"));
    assert_eq!((counts(&r), codes(&r).len()), ((1, 1, 0, 0, 0), 0), "{r}");
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["working"], "0.5 h × £23.77 × 50% = £5.94");
}

/// The guide's two claims made on its examples' visits, both pending.
fn guide_claims_pending() -> TestEnv {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    let r = import_claims(&env, "claims.csv", &guide_claims(""));
    assert_eq!(counts(&r).1, 2, "{r}");
    env
}

/// A claim's ComputedAmount and Working as `claim list` gives them.
fn claim_figure(env: &TestEnv, claim_ref: &str) -> (String, String) {
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    let c = list.iter().find(|c| c["claim_ref"] == claim_ref).unwrap_or_else(|| panic!("{claim_ref} in {list:?}")).clone();
    (c["computed_amount"].as_str().unwrap().to_string(), c["working"].as_str().unwrap().to_string())
}

#[test]
fn a_pending_claims_figure_follows_its_stays_visits_and_a_decided_ones_does_not() {
    let env = guide_claims_pending();
    let figure = |claim_ref: &str| claim_figure(&env, claim_ref);
    assert_eq!(figure("HIP-2").0, "47.54");
    env.ok(&["claim", "decide", "--id", "C1", "--decision", "accepted"]);
    // Skinner's Wednesday and Thursday calls were delivered after all: two hours missed, not four.
    // And Flanders's Saturday call too, after his claim was accepted.
    let mut delivered: Vec<String> = (23..=24).flat_map(|d| ["a", "b"].map(|s| visit(&format!("K{d}{s}"), "A332295", DAPL_OXFORD, &format!("{d}/11/2022"), if s == "a" { ("12:00", "12:30") } else { ("18:00", "18:30") }, "DHS"))).collect();
    delivered.push(visit("F2", "A352035", DAPL_SOUTH, "12/11/2022", ("14:00", "15:00"), "DHS"));
    let (_d, path) = write_temp("corrected.csv", &visits_file(&delivered));
    assert_eq!(counts(&env.import(PEARL, &path)).2, 5);
    // The stay now ends with Wednesday's lunch call (care resumed): Monday evening and Tuesday's two
    // calls, 1.5 h, as the report shows it; Friday's H lunch call is a stay of its own (since
    // 2026-12-03; the claim's DischargedOn of Friday made one stay of both, 2 h).
    assert_eq!(figure("HIP-2"), ("17.83".to_string(), "1.5 h × £23.77 × 50% = £17.83".to_string()));
    // The council disputes Tuesday's lunch call and closes the dispute by deleting it.
    assert!(env.ok(&["dispute", "raise", "--org", PEARL, "--visit", "K22a", "--type", "6", "--details", "was at home"]).starts_with("D1 "));
    env.ok(&["dispute", "close", "--id", "D1", "--delete-visit"]);
    assert!(figure("HIP-2").1.starts_with("1 h × £23.77 × 50% = £11.89"), "{:?}", figure("HIP-2"));
    // Flanders's claim, decided before, keeps the figure it was decided on.
    assert_eq!(figure("HIP-1").0, "11.89");
    let exported = std::fs::read_to_string(env.data().join("orgs/pearl-carers-ltd/exports/claims.csv")).unwrap();
    assert!(exported.lines().any(|l| l.starts_with("HIP-2,C2,") && l.contains(",47.54,11.89,")), "{exported}");
}

#[test]
fn a_pending_claims_figure_is_nothing_once_its_package_is_another_organisations_or_under_a_contract_without_the_incentive() {
    let env = guide_claims_pending();
    let figure = |claim_ref: &str| {
        let (amount, working) = claim_figure(&env, claim_ref);
        (amount.parse::<rust_decimal::Decimal>().unwrap(), working)
    };
    assert_eq!(figure("HIP-2").0, "47.54".parse().unwrap());
    // The council's next extract gives Skinner's package to another provider, and puts Flanders's
    // under a Spot contract.
    let extract = "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n\
        156040,A332295,Mr Principal Skinner,,,,Acme Care Ltd,,Acme Care - DAPL Oxford,DAPL,,Personal Care,03/10/2022,,7,Hr,Weekly,30.00,Y\n\
        156024,A352035,Mr Ned Flanders,,,,Pearl Carers Ltd,,Pearl Carers - DAPL South,Spot,,Personal Care,03/10/2022,,2,Hr,Weekly,23.77,Y\n";
    let (_d, path) = write_temp("cplis-moved.csv", extract);
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
    let (amount, working) = figure("HIP-2");
    assert_eq!(amount, rust_decimal::Decimal::ZERO, "{working}");
    assert_eq!(working, "nothing: CPLI 156040 is no longer one of Pearl Carers Ltd's packages in the council's extract");
    let (amount, working) = figure("HIP-1");
    assert_eq!(amount, rust_decimal::Decimal::ZERO, "{working}");
    assert!(working.contains("CPLI 156024's contract is now Spot, which has no hospital incentive"), "{working}");
    // The Contract shown beside that figure is the one it is now under.
    let list: Vec<Value> = serde_json::from_str(&env.ok(&["claim", "list", "--format", "json"])).unwrap();
    let hip1 = list.iter().find(|c| c["claim_ref"] == "HIP-1").unwrap();
    assert_eq!(hip1["contract"], "Spot", "{hip1}");
    let csv = std::fs::read_to_string(env.org_dir(crate::server::ORG_DIR).join("exports/claims.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("HIP-1,") && l.contains(",Spot,")), "{csv}");
}

#[test]
fn a_claims_submitted_and_decided_days_are_the_gateways_day_as_a_disputes_are() {
    let env = TestEnv::new();
    load_cplis(&env);
    load_visits(&env);
    // A day the wall clock is not on: `rules.today`, as a dispute's RaisedOn takes it.
    let config = env.data().join("day.toml");
    std::fs::write(&config, "[rules]\ntoday = \"2023-02-01\"\n").unwrap();
    let at_day = |args: &[&str]| env.ok(&[&["--config", config.to_str().unwrap()], args].concat());
    let (_d, path) = write_temp("claims.csv", &guide_claims(""));
    at_day(&["import", "--org", PEARL, path.to_str().unwrap()]);
    at_day(&["claim", "decide", "--id", "C1", "--decision", "accepted"]);
    let exported = std::fs::read_to_string(env.data().join("orgs/pearl-carers-ltd/exports/claims.csv")).unwrap();
    let rows = rows_of(&exported);
    let (c1, c2) = (&rows[0], &rows[1]);
    assert_eq!((c1["SubmittedOn"].as_str(), c1["DecidedOn"].as_str()), ("01/02/2023", "01/02/2023"), "{exported}");
    assert_eq!((c2["SubmittedOn"].as_str(), c2["DecidedOn"].as_str()), ("01/02/2023", ""), "{exported}");
}

#[test]
fn a_pending_claims_figure_from_an_earlier_version_of_the_rules_is_figured_again_when_serve_starts() {
    let env = guide_claims_pending();
    {
        // As an earlier version of the gateway may have left it: another figure for HIP-2.
        let store = gateway::store::Store::open(&env.data().join("db")).unwrap();
        let mut claims = store.claims(None).unwrap();
        let c = claims.iter_mut().find(|c| c.claim_ref == "HIP-2").unwrap();
        c.computed_amount = "0".parse().unwrap();
        c.working = "nothing: an earlier rule".into();
        store.put_claims(std::slice::from_ref(c)).unwrap();
    }
    assert_eq!(claim_figure(&env, "HIP-2").0, "0.00", "a listing neither figures nor writes");
    let _server = Server::start(&env);
    assert_eq!(claim_figure(&env, "HIP-2").0, "47.54");
}
