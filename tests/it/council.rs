//! Issue 10: the council's login and folder, driven with OpenSSH `sftp` and paramiko: the CPLI
//! extract dropped into the council's `/inbox` is loaded all or nothing and answered in its
//! `/results`; no provider's login reaches the council's folder, and the council's login no provider's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{keypair, example, write_temp, TestEnv, PEARL};
use crate::server::{result_path, results, wait_for_json, Server, ORG_DIR};

const COUNCIL_LOGIN: &str = "finance";
const PEARL_LOGIN: &str = "pearl-rota";

/// The rows of `examples/cplis.csv` (its header aside) and the organisations it names.
const EXAMPLE_CPLIS: u64 = 9;

/// `gateway user add --council --name LOGIN --key KEY.pub`, or `--org ORG` for a provider's login.
fn add_login(env: &TestEnv, whose: Option<&str>, login: &str, key: &Path) -> String {
    let pubkey = format!("{}.pub", key.display());
    let mut args = vec!["user", "add", "--name", login, "--key", &pubkey];
    match whose {
        Some(org) => args.extend(["--org", org]),
        None => args.push("--council"),
    }
    env.ok(&args)
}

/// A running gateway with a council login (and a Pearl login when the examples' CPLIs are loaded).
struct Council {
    env: TestEnv,
    server: Server,
    key: PathBuf,
}

impl Council {
    fn start(env: TestEnv) -> Council {
        let key = keypair(env.data(), "council");
        let said = add_login(&env, None, COUNCIL_LOGIN, &key);
        assert!(said.starts_with("finance for the council: 1 key(s)"), "{said}");
        let server = Server::start(&env);
        Council { env, server, key }
    }

    /// `sftp -b -` as `login` with `key`; the batch on standard input.
    fn sftp(&self, login: &str, key: &Path, batch: &str) -> Output {
        let mut c = Command::new("sftp");
        c.args(["-P", &self.server.port.to_string(), "-i", key.to_str().unwrap()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-b", "-"])
            .arg(format!("{login}@127.0.0.1"));
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run sftp");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), batch.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Drops `file` into the council's `/inbox` as `name` over SFTP.
    fn drop_extract(&self, file: &Path, name: &str) {
        let out = self.sftp(COUNCIL_LOGIN, &self.key, &format!("put {} /inbox/{name}\n", file.display()));
        assert!(out.status.success(), "sftp put: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Fetches `/results/NAME` over SFTP as the council login, polling until it is there.
    fn fetch_result(&self, name: &str) -> Value {
        let local = self.env.data().join("fetched").join(name);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.sftp(COUNCIL_LOGIN, &self.key, &format!("get /results/{name} {}\n", local.display()));
            if out.status.success() {
                return serde_json::from_slice(&std::fs::read(&local).unwrap()).expect("result JSON");
            }
            assert!(Instant::now() < deadline, "no /results/{name} over SFTP: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn council_dir(env: &TestEnv) -> PathBuf {
    env.data().join("council")
}

/// (read, new, updated, rejected, organisations created, match changes) of a CPLI extract's result.
fn extract_counts(result: &Value) -> (u64, u64, u64, u64, u64, u64) {
    let c = &result["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("counts.{k} missing in {result}"));
    (n("read"), n("new"), n("updated"), n("rejected"), n("organisations_created"), n("match_changes"))
}

#[test]
fn the_council_login_drops_the_example_extract_with_openssh_sftp_and_reads_its_result() {
    let gw = Council::start(TestEnv::new());
    let listed = gw.env.ok(&["user", "list"]);
    assert!(listed.contains("finance\t(council)\t1 key(s)"), "user list shows the council's login as such: {listed}");
    let root = gw.sftp(COUNCIL_LOGIN, &gw.key, "ls /\n");
    assert_eq!(String::from_utf8_lossy(&root.stdout).split_whitespace().filter(|w| !w.starts_with("sftp>") && *w != "ls" && *w != "/").collect::<Vec<_>>(), ["/exports", "/inbox", "/results"]);

    gw.drop_extract(&example("cplis.csv"), "cplis.csv");
    let result = gw.fetch_result("cplis.result.json");
    assert_eq!((result["status"].as_str(), result["kind"].as_str()), (Some("processed"), Some("cplis")), "{result}");
    assert_eq!(extract_counts(&result), (EXAMPLE_CPLIS, EXAMPLE_CPLIS, 0, 0, 1, 0), "{result}");
    assert_eq!(result["issues"], serde_json::json!([]));
    assert!(council_dir(&gw.env).join("results/cplis.result.csv").is_file());
    assert_eq!(std::fs::read_dir(gw.env.data().join("archive/_council")).unwrap().count(), 1, "the extract is archived");

    // The same extract again: every CPLI is updated, none new, no organisation created; answered
    // under the next free name, as a provider's second file of one name is.
    gw.drop_extract(&example("cplis.csv"), "cplis.csv");
    let again = gw.fetch_result("cplis.result.2.json");
    assert_eq!(extract_counts(&again), (EXAMPLE_CPLIS, 0, EXAMPLE_CPLIS, 0, 0, 0), "{again}");

    // Loaded as `cplis load` loads it: Pearl Carers Ltd exists with the extract's services.
    drop(gw.server);
    let orgs = gw.env.ok(&["org", "list"]);
    assert!(orgs.starts_with("Pearl Carers Ltd\tpearl-carers-ltd"), "{orgs}");
    assert!(!gw.env.ok(&["export", "commissioned", "--org", PEARL]).trim().is_empty());
}

const HEADER: &str = "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised";

fn cpli(id: &str, ssref: &str, org: &str, contract: &str, start: &str) -> String {
    format!("{id},{ssref},Mr Test,,,,{org},,{org} - Oxford,{contract},,Personal Care,{start},,2,Hr,Weekly,20.50,Y")
}

#[test]
fn a_malformed_extract_is_answered_with_every_bad_row_and_nothing_of_it_is_loaded() {
    let gw = Council::start(TestEnv::new());
    let rows = [
        cpli("700001", "C700001", "Nobody Care Ltd", "DAPL", "03/10/2022"),
        cpli("700002", "C700002", "Nobody Care Ltd", "DAPL", "31/02/2022"),
        cpli("700003", "C700003", "Nobody Care Ltd", "XYZ", "03/10/2022"),
        cpli("700004", "C700004", "Nobody Care Ltd", "LWAH", "03/10/2022"),
    ];
    let (_d, bad) = write_temp("bad.csv", &format!("{HEADER}\n{}\n", rows.join("\n")));
    gw.drop_extract(&bad, "bad.csv");
    let result = gw.fetch_result("bad.result.json");
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(extract_counts(&result), (4, 0, 0, 2, 0, 0), "{result}");
    let issues: Vec<(u64, &str, &str, &str)> = result["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["row"].as_u64().unwrap(), i["code"].as_str().unwrap(), i["field"].as_str().unwrap(), i["ref"].as_str().unwrap()))
        .collect();
    assert_eq!(issues, [(3, "BAD_DATE", "StartDate", "700002"), (4, "UNKNOWN_CONTRACT", "Contract", "700003")], "{result}");
    let contract = &result["issues"][1]["message"];
    assert!(contract.as_str().unwrap().contains("'XYZ'") && contract.as_str().unwrap().contains("DAPL, LWAH, APL, HTLAH, Spot"), "{contract}");
    let csv = std::fs::read_to_string(council_dir(&gw.env).join("results/bad.result.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "a header and one line per bad row: {csv}");

    // A missing column, copied straight into the council's inbox (the watcher takes it): the whole
    // file fails and every count is 0.
    let without_cost = format!("{}\n{}\n", HEADER.replace(",UnitCost", ""), rows[0].replace(",20.50,", ","));
    let inbox = council_dir(&gw.env).join("inbox");
    std::fs::write(inbox.join("no-cost.tmp"), &without_cost).unwrap();
    std::fs::rename(inbox.join("no-cost.tmp"), inbox.join("no-cost.csv")).unwrap();
    let missing = wait_for_json(&council_dir(&gw.env).join("results/no-cost.result.json"), 60);
    assert_eq!(missing["status"], "failed", "{missing}");
    assert_eq!(extract_counts(&missing), (0, 0, 0, 0, 0, 0), "{missing}");
    assert_eq!(missing["issues"][0]["code"], "MISSING_COLUMN", "{missing}");
    assert_eq!(missing["issues"][0]["field"], "UnitCost", "{missing}");

    // Nothing of the bad extract was loaded: the good rows alone, sent next, are all new and make
    // the organisation then.
    // Sent as a WinSCP-style upload: a temporary name, then the rename to *.csv, as a provider may.
    let (_d, good) = write_temp("good.csv", &format!("{HEADER}\n{}\n{}\n", rows[0], rows[3]));
    let batch = format!("put {} /inbox/good.csv.filepart\nrename /inbox/good.csv.filepart /inbox/good.csv\n", good.display());
    let out = gw.sftp(COUNCIL_LOGIN, &gw.key, &batch);
    assert!(out.status.success(), "sftp put and rename: {}", String::from_utf8_lossy(&out.stderr));
    let good = gw.fetch_result("good.result.json");
    assert_eq!(extract_counts(&good), (2, 2, 0, 0, 1, 0), "{good}");
}

/// Runs the paramiko client's `attack` as `login`: every way out of its own folder it tries.
fn attack(gw: &Council, login: &str, key: &Path, victim: &str, victim_result: &Path) -> Value {
    let out = Command::new("python3")
        .arg(crate::helpers::root().join("tests/clients/paramiko_client.py"))
        .args([&gw.server.port.to_string(), login, key.to_str().unwrap(), "attack", victim])
        .env("VICTIM_RESULT", victim_result)
        .env("GATEWAY_SOURCE_ADDR", "127.0.0.1")
        .output()
        .expect("run python3");
    assert!(out.status.success(), "paramiko attack: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_all_refused(tried: &Value, who: &str) {
    for (name, outcome) in tried.as_object().unwrap() {
        if name.starts_with("own ") {
            continue;
        }
        assert!(outcome.as_str().unwrap().starts_with("refused"), "{who}: {name}: {outcome}");
    }
    assert_eq!(tried["own root listing"], serde_json::json!(["exports", "inbox", "results"]), "{who}");
}

#[test]
fn the_council_login_cannot_reach_a_providers_folder_and_no_provider_login_reaches_the_councils() {
    let gw = Council::start(TestEnv::with_example_cplis());
    let pearl_key = keypair(gw.env.data(), "pearl");
    add_login(&gw.env, Some(PEARL), PEARL_LOGIN, &pearl_key);
    let week = example("visits-week.csv");
    let out = gw.sftp(PEARL_LOGIN, &pearl_key, &format!("put {} /inbox/\n", week.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pearl_result = result_path(&gw.env, "visits-week.result.json");
    let pearl_before = wait_for_json(&pearl_result, 60);
    // The council's extract answered under the name the attack looks for in a victim's results.
    gw.drop_extract(&example("cplis.csv"), "visits-week.csv");
    let council_result = council_dir(&gw.env).join("results/visits-week.result.json");
    let council_before = wait_for_json(&council_result, 60);
    // Links planted in each one's own results (by anyone with host access) are never followed.
    std::os::unix::fs::symlink(&pearl_result, council_dir(&gw.env).join("results/link.result.json")).unwrap();
    std::os::unix::fs::symlink(&council_result, gw.env.org_dir(ORG_DIR).join("results/link.result.json")).unwrap();

    // The council's login after Pearl's folder, by its slug and by the host's layout from council/.
    for victim in [ORG_DIR, "../orgs/pearl-carers-ltd", "orgs/pearl-carers-ltd"] {
        assert_all_refused(&attack(&gw, COUNCIL_LOGIN, &gw.key, victim, &pearl_result), &format!("council -> {victim}"));
    }
    // Pearl's login after the council's folder, from orgs/pearl-carers-ltd/ and from the root.
    for victim in ["../council", "council", "../../council"] {
        assert_all_refused(&attack(&gw, PEARL_LOGIN, &pearl_key, victim, &council_result), &format!("pearl -> {victim}"));
    }

    // URL-encoded `..` through curl, and the OpenSSH client with `..`, both ways.
    let url = format!("sftp://127.0.0.1:{}", gw.server.port);
    let curl = |login: &str, key: &Path, path: &str| {
        Command::new("curl").args(["-sS", "-k", "--key"]).arg(key).arg("--pubkey").arg(format!("{}.pub", key.display())).args(["-u", &format!("{login}:")]).arg(format!("{url}{path}")).output().unwrap()
    };
    for (login, key, path) in [
        (COUNCIL_LOGIN, &gw.key, "/%2e%2e/orgs/pearl-carers-ltd/results/visits-week.result.json"),
        (COUNCIL_LOGIN, &gw.key, "/results/%2E%2E%2F%2E%2E%2Forgs%2Fpearl-carers-ltd%2Fresults%2Fvisits-week.result.json"),
        (PEARL_LOGIN, &pearl_key, "/%2e%2e/%2e%2e/council/results/visits-week.result.json"),
        (PEARL_LOGIN, &pearl_key, "/results/%2E%2E%2F%2E%2E%2F%2E%2E%2Fcouncil%2Fresults%2Fvisits-week.result.json"),
    ] {
        let out = curl(login, key, path);
        assert!(!out.status.success() && out.stdout.is_empty(), "{login} curl {path} got {}", String::from_utf8_lossy(&out.stdout));
    }
    for (login, key, path) in [
        (COUNCIL_LOGIN, &gw.key, "../orgs/pearl-carers-ltd/results/visits-week.result.json"),
        (PEARL_LOGIN, &pearl_key, "../../council/results/visits-week.result.json"),
    ] {
        let out = gw.sftp(login, key, &format!("get {path} /tmp/never\n"));
        assert!(!out.status.success(), "{login} got {path}");
        let out = gw.sftp(login, key, &format!("put {} /../../council/inbox/x.csv\n", week.display()));
        assert!(!out.status.success(), "{login} wrote outside its folder");
    }

    // Both folders are as they were: nothing arrived in either's inbox or results.
    assert_eq!(wait_for_json(&pearl_result, 1), pearl_before);
    assert_eq!(wait_for_json(&council_result, 1), council_before);
    assert_eq!(results(&gw.env, ORG_DIR), ["link.result.json", "visits-week.result.json"]);
    let mut council_results: Vec<String> = std::fs::read_dir(council_dir(&gw.env).join("results")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".json")).collect();
    council_results.sort();
    assert_eq!(council_results, ["link.result.json", "visits-week.result.json"]);
    // Only the pending file each attack leaves in its own inbox.
    let inbox: Vec<String> = std::fs::read_dir(council_dir(&gw.env).join("inbox")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(inbox, ["mine.part"]);
}

/// The example extract without Edna Krabappel's package (156001): her visits of the example week
/// stay unmatched until a later extract adds it.
fn partial_extract() -> (tempfile::TempDir, PathBuf) {
    let extract = std::fs::read_to_string(example("cplis.csv")).unwrap();
    let without: String = extract.lines().filter(|l| !l.starts_with("156001,")).map(|l| format!("{l}\n")).collect();
    write_temp("cplis-partial.csv", &without)
}

fn unmatched(env: &TestEnv) -> usize {
    env.visits(PEARL).iter().filter(|v| v["status"] == "Unmatched").count()
}

#[test]
fn an_extract_that_adds_a_cpli_matches_a_stored_unmatched_visit_and_its_result_counts_it() {
    let env = TestEnv::new();
    let (_d, partial) = partial_extract();
    env.ok(&["cplis", "load", partial.to_str().unwrap()]);
    env.import(PEARL, &example("visits-week.csv"));
    let before = unmatched(&env);
    assert!(before > 0, "the test needs visits the partial extract leaves unmatched");

    let gw = Council::start(env);
    gw.drop_extract(&example("cplis.csv"), "cplis.csv");
    let result = gw.fetch_result("cplis.result.json");
    assert_eq!(extract_counts(&result), (EXAMPLE_CPLIS, 1, EXAMPLE_CPLIS - 1, 0, 0, before as u64), "{result}");

    drop(gw.server);
    assert_eq!(unmatched(&gw.env), 0, "every visit is matched once the extract is loaded");
}

/// Waits for a `serve` that stops itself at a fault point.
fn wait_for_abort(mut child: std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "exited cleanly instead of stopping at the fault point");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("never reached its fault point");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_council_extract_cut_off_by_a_crash_after_it_was_stored_is_answered_once_at_the_next_start_and_not_loaded_twice() {
    let env = TestEnv::new();
    let (_d, partial) = partial_extract();
    env.ok(&["cplis", "load", partial.to_str().unwrap()]);
    env.import(PEARL, &example("visits-week.csv"));
    // Copied into the council's inbox while the gateway is down: taken at start, then the process
    // dies right after the extract and its record are stored, before it is answered.
    std::fs::create_dir_all(council_dir(&env).join("inbox")).unwrap();
    std::fs::copy(example("cplis.csv"), council_dir(&env).join("inbox/cplis.csv")).unwrap();
    wait_for_abort(crate::crash::serve_with_fault(&env, "cplis-stored", ""));
    assert!(!council_dir(&env).join("results/cplis.result.json").exists(), "the crash came before the answer");
    assert_eq!(std::fs::read_dir(env.data().join("spool/_council")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with("__cplis.csv")).count(), 1);

    let server = Server::start(&env);
    let result = wait_for_json(&council_dir(&env).join("results/cplis.result.json"), 60);
    // As committed: one CPLI new, the rest updated; replaying did not load it a second time (which
    // would have counted every CPLI as updated).
    let (read, new, updated, ..) = extract_counts(&result);
    assert_eq!((read, new, updated), (EXAMPLE_CPLIS, 1, EXAMPLE_CPLIS - 1), "{result}");
    // Answered once; the spool is empty and the file archived.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(env.data().join("spool/_council")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with("__cplis.csv")) {
        assert!(Instant::now() < deadline, "the extract stays in the spool");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!council_dir(&env).join("results/cplis.result.2.json").exists());
    assert_eq!(std::fs::read_dir(env.data().join("archive/_council")).unwrap().count(), 1);
    drop(server);
    assert_eq!(unmatched(&env), 0, "the cut-short load was finished at the start");
}

/// A CPLI the council moves to another provider (same CPLIID, another OrganisationName): the
/// visits the first provider sent under it are matched again (Unmatched now), counted as changed,
/// and its commissioned care export no longer lists the client; a load that changes only an
/// unmatched visit's "did you mean" is not counted as a change of match.
#[test]
fn a_cpli_moved_to_another_provider_unmatches_the_first_ones_visits_and_leaves_its_export() {
    let env = TestEnv::with_example_cplis();
    env.import(PEARL, &example("visits-week.csv"));
    let extract = std::fs::read_to_string(example("cplis.csv")).unwrap();
    let moved: String = extract
        .lines()
        // Another organisation: another name, and not Pearl's OrganisationRef (blank).
        .map(|l| if l.starts_with("156001,") { l.replace(",6513270E-269E-0D37-F2A7-4DE452E6B438,Pearl Carers Ltd,", ",,Ruby Home Care Ltd,") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let (_d, path) = write_temp("moved.csv", &moved);
    let out = env.ok(&["cplis", "load", path.to_str().unwrap()]);
    let of_client: Vec<Value> = env.visits(PEARL).into_iter().filter(|v| v["ssref"] == "A123456").collect();
    assert_eq!(of_client.len(), 14);
    assert!(of_client.iter().all(|v| v["status"] == "Unmatched"), "{of_client:#?}");
    assert!(out.contains("; 14 stored visits and actuals rows changed match status"), "{out}");
    let commissioned = std::fs::read_to_string(env.org_dir(ORG_DIR).join("exports/commissioned-care.csv")).unwrap();
    assert!(!commissioned.contains("A123456"), "{commissioned}");

    // A visit for a client with no package, then an extract giving the client a package at another
    // service: the visit is still unmatched (only its "did you mean" changes), so nothing is counted.
    let row = crate::guide::visit_row(&[
        ("VisitRef", "M1"),
        ("Deleted", "0"),
        ("PlannedVisitDate", "10/10/2022"),
        ("PlannedEntryTime", "09:00"),
        ("PlannedExitTime", "10:00"),
        ("VisitType", "C"),
        ("SSRef", "A777777"),
        ("ServiceLevel", "Home Support"),
        ("ServiceName", "Pearl Carers - Zone 8"),
    ]);
    let (_v, visits) = write_temp("m1.csv", &crate::guide::visits_file(&[row]));
    env.import(PEARL, &visits);
    let added = format!("{moved}\n156099,A777777,Mr Milhouse Van Houten,,,,Pearl Carers Ltd,,Pearl Carers - Zone 9,LWAH,,Home Support,04/04/2022,,7,Hr,Weekly,23.77,Y\n");
    let (_a, path) = write_temp("added.csv", &added);
    let again = env.ok(&["cplis", "load", path.to_str().unwrap()]);
    assert!(again.contains("; 0 stored visits and actuals rows changed match status"), "{again}");
    let m1 = env.visits(PEARL).into_iter().find(|v| v["visit_ref"] == "M1").unwrap();
    assert!(m1["unmatched_reason"].as_str().unwrap().contains("did you mean ServiceName 'Pearl Carers - Zone 9'"), "{m1}");
}
