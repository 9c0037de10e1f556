//! Issue 10: the exports kept current in each organisation's `/exports` (visit status, unmatched,
//! commissioned vs actuals, hospital incentive) and the council's (submissions, visits per period).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

use crate::guide::{visit_row, visits_file};
use crate::helpers::*;
use crate::server::{wait_for_json, Server, ORG_DIR};

const RUBY: &str = "Ruby Home Support Ltd";
const RUBY_DIR: &str = "ruby-home-support-ltd";

fn keypair(dir: &Path) -> PathBuf {
    let key = dir.join("exports_ed25519");
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    key
}

/// `sftp -b -` as `login` with `key`; insists on success.
fn sftp(port: u16, login: &str, key: &Path, batch: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("sftp")
        .args(["-P", &port.to_string(), "-i", key.to_str().unwrap(), "-b", "-"])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
        .arg(format!("{login}@127.0.0.1"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sftp");
    child.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sftp {batch:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CSV's rows (header left out) as maps from heading to cell.
fn rows_of(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let heads: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records().map(|rec| heads.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect()).collect()
}

fn read_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    rows_of(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn refs(rows: &[BTreeMap<String, String>]) -> Vec<String> {
    rows.iter().map(|r| r["VisitRef"].clone()).collect()
}

fn exports(env: &TestEnv, dir: &str, name: &str) -> PathBuf {
    env.org_dir(dir).join("exports").join(name)
}

/// A visit of the examples' CPLIs: Krabappel (A123456, Zone 6, Home Support) unless `ssref` and
/// `service` say otherwise; delivered as planned.
fn visit(vref: &str, ssref: &str, service: &str, date: &str) -> String {
    visit_row(&[
        ("VisitRef", vref),
        ("Deleted", "0"),
        ("PlannedVisitDate", date),
        ("PlannedEntryTime", "09:00"),
        ("PlannedExitTime", "09:30"),
        ("VisitType", "DHF"),
        ("DeliveredVisitDate", date),
        ("DeliveredEntryTime", "09:00"),
        ("DeliveredExitTime", "09:30"),
        ("SSRef", ssref),
        ("ServiceLevel", "Home Support"),
        ("ServiceName", service),
    ])
}

const ZONE6: &str = "Pearl Carers - Zone 6 - Oxford";

fn import(env: &TestEnv, org: &str, name: &str, rows: &[String]) {
    let (_d, path) = write_temp(name, &visits_file(rows));
    let result = env.import(org, &path);
    assert_eq!(counts(&result).3, 0, "no row is rejected: {result}");
}

#[test]
fn after_uploads_over_sftp_the_providers_four_exports_hold_its_visits_read_over_sftp() {
    let env = TestEnv::with_example_cplis();
    let key = keypair(env.data());
    env.ok(&["user", "add", "--org", PEARL, "--name", "pearl-rota", "--key", &format!("{}.pub", key.display())]);
    let server = Server::start(&env);
    let week = example("visits-week.csv");
    let (_d, wrong) = write_temp("wrong-service.csv", &visits_file(&[visit("W1", "A123456", "Pearl Carers - Zone 9", "01/08/2022")]));
    sftp(server.port, "pearl-rota", &key, &format!("put {} /inbox/\nput {} /inbox/\n", week.display(), wrong.display()));
    let results = env.org_dir(ORG_DIR).join("results");
    wait_for_json(&results.join("visits-week.result.json"), 30);
    wait_for_json(&results.join("wrong-service.result.json"), 30);

    // The exports follow the results once the queue is quiet: fetched over SFTP until they show both files.
    let local = env.data().join("fetched");
    std::fs::create_dir_all(&local).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        sftp(server.port, "pearl-rota", &key, &format!("lcd {}\nget /exports/*.csv\n", local.display()));
        let rows = read_rows(&local.join("visits-status.csv"));
        // The four are rewritten one after another: a fetch can fall between two of them.
        let report_done = read_rows(&local.join("commissioned-vs-actuals.csv")).iter().any(|r| r["cpli_id"] == "156001");
        if rows.len() == 22 && report_done && read_rows(&local.join("hospital-incentive.csv")).len() == 1 {
            break rows;
        }
        assert!(Instant::now() < deadline, "the exports never held both files' visits: visits-status.csv {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let v1 = status.iter().find(|r| r["VisitRef"] == "V1").expect("V1 is listed");
    assert_eq!((v1["PlannedVisitDate"].as_str(), v1["Status"].as_str(), v1["CPLIID"].as_str()), ("01/08/2022", "Matched", "156001"));
    let unmatched = read_rows(&local.join("unmatched.csv"));
    assert_eq!(refs(&unmatched), ["W1"]);
    assert!(unmatched[0]["Reason"].contains("no CPLI with ServiceName 'Pearl Carers - Zone 9'"), "{unmatched:?}");
    assert!(unmatched[0]["DidYouMean"].contains(ZONE6), "{unmatched:?}");

    let report = read_rows(&local.join("commissioned-vs-actuals.csv"));
    let line = report.iter().find(|r| r["cpli_id"] == "156001").expect("Krabappel's week");
    assert_eq!((line["week"].as_str(), line["comm_qty"].as_str(), line["actual_qty"].as_str()), ("2022-08-01", "7", "8"), "{report:?}");
    assert!(report.iter().all(|r| r["week"].as_str() >= "2022-06-13"), "eight weeks up to the latest visit: {report:?}");
    let hospital = read_rows(&local.join("hospital-incentive.csv"));
    assert_eq!(hospital.len(), 1, "{hospital:?}");
    assert_eq!((hospital[0]["ssref"].as_str(), hospital[0]["amount"].as_str()), ("A654321", "5.94"));

    // The council's submissions list the organisation's two files (its exports are rewritten after
    // the organisation's, in the same rewrite).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let subs = read_rows(&env.data().join("council/exports/submissions.csv"));
        let pearl = subs.iter().find(|r| r["Organisation"] == PEARL).expect("Pearl is listed");
        let seen = (pearl["FilesTotal"].clone(), pearl["UnmatchedVisits"].clone(), pearl["LatestVisitDate"].clone());
        if seen.0 == "2" {
            assert_eq!((seen.1.as_str(), seen.2.as_str()), ("1", "2022-08-07"));
            break;
        }
        assert!(Instant::now() < deadline, "submissions.csv never counted both files: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cpli_load_that_matches_a_visit_takes_it_out_of_unmatched_csv() {
    let env = TestEnv::with_example_cplis();
    import(&env, PEARL, "new-client.csv", &[visit("N1", "A999999", ZONE6, "03/10/2022"), visit("K1", "A123456", ZONE6, "03/10/2022")]);
    let unmatched = exports(&env, ORG_DIR, "unmatched.csv");
    assert_eq!(refs(&read_rows(&unmatched)), ["N1"]);
    let extract = format!(
        "{}\n999001,A999999,Mrs New Client,,,,{PEARL},,{ZONE6},LWAH,,Home Support,03/10/2022,,7,Hr,Weekly,23.77,Y\n",
        std::fs::read_to_string(example("cplis.csv")).unwrap().lines().next().unwrap()
    );
    let (_d, path) = write_temp("cplis-new.csv", &extract);
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
    assert_eq!(refs(&read_rows(&unmatched)), Vec::<String>::new(), "N1 matches now");
    let status = read_rows(&exports(&env, ORG_DIR, "visits-status.csv"));
    let n1 = status.iter().find(|r| r["VisitRef"] == "N1").unwrap();
    assert_eq!((n1["Status"].as_str(), n1["CPLIID"].as_str(), n1["Reason"].as_str()), ("Matched", "999001", ""));
}

#[test]
fn a_period_lock_takes_its_visits_out_of_visits_status_csv() {
    let env = TestEnv::with_example_cplis();
    // Payment period 1 is 03/10/2022 to 30/10/2022; period 2 starts 31/10/2022.
    import(&env, PEARL, "two-periods.csv", &[visit("P1", "A123456", ZONE6, "10/10/2022"), visit("P2", "A123456", ZONE6, "31/10/2022")]);
    let status = exports(&env, ORG_DIR, "visits-status.csv");
    assert_eq!(refs(&read_rows(&status)), ["P1", "P2"]);
    env.ok(&["period", "lock", "--until", "2022-10-30"]);
    assert_eq!(refs(&read_rows(&status)), ["P2"]);
    let council = read_rows(&env.data().join("council/exports/visits-2022-10-03.csv"));
    assert_eq!(refs(&council), ["P1"], "the council still sees a locked period's visits");
}

#[test]
fn an_organisation_never_sees_another_organisations_rows_in_its_exports() {
    let env = TestEnv::with_example_cplis();
    env.ok(&["org", "add", "--name", RUBY]);
    import(&env, PEARL, "pearl.csv", &[visit("PEARL-1", "A123456", ZONE6, "03/10/2022"), visit("PEARL-2", "A999999", ZONE6, "03/10/2022")]);
    import(&env, RUBY, "ruby.csv", &[visit("RUBY-1", "A999998", "Ruby - Zone 1", "03/10/2022")]);
    for name in ["visits-status.csv", "unmatched.csv", "commissioned-vs-actuals.csv", "hospital-incentive.csv"] {
        let ruby = std::fs::read_to_string(exports(&env, RUBY_DIR, name)).unwrap();
        let pearl = std::fs::read_to_string(exports(&env, ORG_DIR, name)).unwrap();
        assert!(!ruby.contains("PEARL-") && !ruby.contains("A123456") && !ruby.contains("156001"), "{name} of Ruby: {ruby}");
        assert!(!pearl.contains("RUBY-") && !pearl.contains("A999998"), "{name} of Pearl: {pearl}");
    }
    assert_eq!(refs(&read_rows(&exports(&env, RUBY_DIR, "visits-status.csv"))), ["RUBY-1"]);
    assert_eq!(refs(&read_rows(&exports(&env, ORG_DIR, "unmatched.csv"))), ["PEARL-2"]);
}

#[test]
fn a_burst_of_files_rewrites_each_export_once() {
    let env = TestEnv::with_example_cplis();
    // Ten files waiting in the inbox when the server starts reach the queue together: a burst.
    let inbox = env.org_dir(ORG_DIR).join("inbox");
    for n in 0..10 {
        let rows: Vec<String> = (0..5).map(|i| visit(&format!("B{n}-{i}"), "A123456", ZONE6, &format!("{:02}/10/2022", 3 + i))).collect();
        std::fs::write(inbox.join(format!("burst-{n}.csv")), visits_file(&rows)).unwrap();
    }
    let _server = Server::start_logging(&env, "warn,gateway::pipeline=info,gateway::exports=info");
    let results = env.org_dir(ORG_DIR).join("results");
    for n in 0..10 {
        wait_for_json(&results.join(format!("burst-{n}.result.json")), 30);
    }
    // The sign the gateway has moved past the burst: the last export it rewrites (the council's
    // visits of the period) holds all of it.
    let status = env.data().join("council/exports/visits-2022-10-03.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&status).map(|t| rows_of(&t).len()).unwrap_or(0) < 50 {
        assert!(Instant::now() < deadline, "the council's visits-2022-10-03.csv never held the burst's 50 visits");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(Server::log_path(&env)).unwrap();
    let after_first_file = &log[log.find("processed").expect("the log names processed files")..];
    for name in ["visits-status.csv", "unmatched.csv", "commissioned-vs-actuals.csv", "hospital-incentive.csv", "submissions.csv", "visits-2022-10-03.csv"] {
        let rewrites = after_first_file.lines().filter(|l| l.contains("export rewritten") && l.contains(name)).count();
        assert!(rewrites <= 1, "{name} was rewritten {rewrites} times for one burst:\n{log}");
    }
    let rewrites = |name: &str| after_first_file.lines().filter(|l| l.contains("export rewritten") && l.contains(name)).count();
    assert_eq!(rewrites("visits-status.csv"), 1, "{log}");
    assert_eq!(rewrites("submissions.csv"), 1, "{log}");
}

/// The council's visits of each period, by file name: the VisitRefs in it.
fn council_visit_files(env: &TestEnv) -> BTreeMap<String, Vec<String>> {
    let dir = env.data().join("council/exports");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("visits-"))
        .map(|n| (n.clone(), refs(&read_rows(&dir.join(&n)))))
        .collect()
}

/// The council's files are joined from each organisation's part (`export-parts/`, made by the pass
/// that makes the organisation's own exports): a part that is lost, or was made under other payment
/// periods, is made again before it is joined.
#[test]
fn the_councils_visit_files_are_joined_from_each_part_and_a_part_lost_or_made_under_other_periods_is_made_again() {
    let env = TestEnv::with_example_cplis();
    env.import(PEARL, &example("visits-week.csv"));
    let before = council_visit_files(&env);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["visits-2022-07-11.csv"], "28-day periods from 03/10/2022");
    assert_eq!(before["visits-2022-07-11.csv"].len(), 21, "{before:?}");
    assert!(env.data().join("export-parts/pearl-carers-ltd/visits-2022-07-11.csv").exists());

    // Lost (say, a data folder restored without it): the next change makes it again.
    std::fs::remove_dir_all(env.data().join("export-parts")).unwrap();
    env.ok(&["org", "add", "--name", "Other Care Ltd"]);
    assert_eq!(council_visit_files(&env), before);

    // Made under 28-day periods, read under 14-day ones: made again, in the periods now in force.
    let (_d, config) = write_temp("gateway.toml", "[periods]\nlength_days = 14\n");
    env.ok(&["--config", config.to_str().unwrap(), "org", "add", "--name", "Third Care Ltd"]);
    let after = council_visit_files(&env);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["visits-2022-07-25.csv"], "{after:?}");
    assert_eq!(after["visits-2022-07-25.csv"], before["visits-2022-07-11.csv"]);
}

/// A deterministic stream of small numbers, so the generated month is the same at every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn the_councils_visits_per_period_sum_per_client_and_week_to_the_reports_quantities_and_costs() {
    let env = TestEnv::new();
    let orgs = ["Alpha Care Ltd", "Beta Home Care Ltd", "Gamma Support Ltd"];
    let costs = ["23.226", "19.5", "21.07"];
    let mut extract = String::from("CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n");
    for (o, org) in orgs.iter().enumerate() {
        for c in 0..4 {
            extract.push_str(&format!("{}{c},C{o}{c:05},Client {o}{c},,,,{org},,{org} - Zone 1,DAPL,,Personal Care,01/09/2022,,{},Hr,Weekly,{},Y\n", 700 + o, 5 + c, costs[(o + c) % 3]));
        }
    }
    // A temporary extra package beside Alpha's first client's for two weeks, at another cost: those
    // weeks are paid at the package's rate, in the report and visit by visit alike.
    extract.push_str("7009,C000000,Client 00,,,,Alpha Care Ltd,,Alpha Care Ltd - Zone 1,DAPL,,Personal Care,24/10/2022,06/11/2022,3,Hr,Weekly,30.5,Y\n");
    let (_d, path) = write_temp("cplis.csv", &extract);
    env.ok(&["cplis", "load", path.to_str().unwrap()]);
    // Four weeks and a bit from Monday 17/10/2022: across payment periods 1 and 2. Times in steps of
    // 3 minutes, so each figure has at most two decimals and the report's rounding is exact.
    let mut rng = Lcg(10);
    let types = ["DHS", "DHS", "DHS", "E", "C", "U", "H", "C24"];
    for (o, org) in orgs.iter().enumerate() {
        let mut rows = Vec::new();
        for day in 0..31u32 {
            let date = chrono::NaiveDate::from_ymd_opt(2022, 10, 17).unwrap() + chrono::Duration::days(day.into());
            let date = date.format("%d/%m/%Y").to_string();
            for c in 0..4 {
                for call in 0..2 {
                    let code = types[rng.next(types.len() as u64) as usize];
                    let (h, m) = (7 + call * 9 + c, 3 * rng.next(20) as u32);
                    let length = 15 + 3 * rng.next(15) as u32;
                    let at = |mins: u32| format!("{:02}:{:02}", (h * 60 + m + mins) / 60, (h * 60 + m + mins) % 60);
                    let (entry, exit) = (at(0), at(length));
                    let (d_entry, d_exit) = (at(3 * rng.next(3) as u32), at(length + 3 * rng.next(6) as u32));
                    let vref = format!("V{o}-{day}-{c}-{call}");
                    let ssref = format!("C{o}{c:05}");
                    let service = format!("{org} - Zone 1");
                    let mut pairs = vec![
                        ("VisitRef", vref.as_str()),
                        ("Deleted", "0"),
                        ("PlannedVisitDate", date.as_str()),
                        ("PlannedEntryTime", entry.as_str()),
                        ("PlannedExitTime", exit.as_str()),
                        ("VisitType", code),
                        ("Comments", "generated"),
                        ("SSRef", ssref.as_str()),
                        ("ServiceLevel", "Personal Care"),
                        ("ServiceName", service.as_str()),
                    ];
                    if matches!(code, "DHS" | "E") {
                        pairs.extend([("DeliveredVisitDate", date.as_str()), ("DeliveredEntryTime", d_entry.as_str()), ("DeliveredExitTime", d_exit.as_str())]);
                    }
                    rows.push(visit_row(&pairs));
                }
            }
        }
        import(&env, org, "month.csv", &rows);
    }

    // The council's files: every visit once, in the file of its payment period.
    let dir = env.data().join("council/exports");
    let mut files: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("visits-")).collect();
    files.sort();
    assert_eq!(files, ["visits-2022-10-03.csv", "visits-2022-10-31.csv"]);
    // (ssref, Monday) -> (delivered-based hours, other paid hours, their costs), exact.
    type Sums = (Decimal, Decimal, Decimal, Decimal);
    let mut sums: BTreeMap<(String, String), Sums> = BTreeMap::new();
    let mut visits = 0;
    for f in &files {
        for r in read_rows(&dir.join(f)) {
            visits += 1;
            assert_eq!(r["Status"], "Matched", "{r:?}");
            let date = chrono::NaiveDate::parse_from_str(&r["PlannedVisitDate"], "%d/%m/%Y").unwrap();
            let monday = date - chrono::Duration::days(chrono::Datelike::weekday(&date).num_days_from_monday().into());
            let (hours, cost): (Decimal, Decimal) = (r["PaidHours"].parse().unwrap(), r["Cost"].parse().unwrap());
            if r["SSRef"] == "C000000" && (chrono::NaiveDate::from_ymd_opt(2022, 10, 24).unwrap()..=chrono::NaiveDate::from_ymd_opt(2022, 11, 6).unwrap()).contains(&date) {
                assert_eq!((r["CPLIID"].as_str(), r["UnitCost"].as_str()), ("7000", "25.95375"), "the package's rate: {r:?}");
            }
            assert_eq!(hours * Decimal::from(60), r["PaidMinutes"].parse::<Decimal>().unwrap(), "{r:?}");
            let s = sums.entry((r["SSRef"].clone(), monday.to_string())).or_default();
            if matches!(r["VisitType"].as_str(), "DHS" | "E") {
                (s.0, s.2) = (s.0 + hours, s.2 + cost);
            } else {
                (s.1, s.3) = (s.1 + hours, s.3 + cost);
            }
        }
    }
    assert_eq!(visits, 3 * 31 * 4 * 2);

    let penny = |d: Decimal| d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let mut compared = 0;
    for org in orgs {
        let out = env.ok(&["report", "commissioned-vs-actuals", "--org", org, "--from", "2022-10-17", "--to", "2022-11-20", "--format", "json"]);
        let report: Vec<Value> = serde_json::from_str(&out).unwrap();
        for row in report {
            let key = (row["ssref"].as_str().unwrap().to_string(), row["week"].as_str().unwrap().to_string());
            let figure = |k: &str| row[k].as_str().unwrap().parse::<Decimal>().unwrap();
            let (actual, frust, actual_cost, frust_cost) = sums.get(&key).copied().unwrap_or_default();
            assert_eq!(actual + frust, figure("actual_qty") + figure("frust_qty"), "paid hours of {key:?}");
            assert_eq!(actual, figure("actual_qty"), "{key:?}");
            assert_eq!(penny(actual_cost), figure("actual_cost"), "actual cost of {key:?}");
            assert_eq!(penny(frust_cost), figure("frust_cost"), "frustrated cost of {key:?}");
            if key.0 == "C000000" && ["2022-10-24", "2022-10-31"].contains(&key.1.as_str()) {
                // 5 h at 23.226 and 3 h at 30.5: 207.63 for 8 h, 25.95375 an hour.
                assert_eq!((figure("comm_qty"), figure("comm_cost")), (Decimal::from(8), "207.63".parse().unwrap()), "{key:?}");
                assert_eq!(penny(actual * "25.95375".parse::<Decimal>().unwrap()), figure("actual_cost"), "{key:?} at the package's rate");
            }
            compared += 1;
        }
    }
    assert_eq!(compared, sums.len(), "every client week of the council's files is a row of the report");
}
