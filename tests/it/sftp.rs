//! The SFTP front door, driven by clients nobody here wrote: OpenSSH `sftp` and `scp`, `curl`, `lftp`,
//! `rclone` and Python `paramiko` (`scripts/test` installs the ones a machine lacks).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{keypair, counts, example, TestEnv, PEARL};
use crate::server::{inbox, result_path, results, wait_for_json, Server, ORG_DIR};

const LOGIN: &str = "pearl-rota";
const PASSWORD: &str = "Rota2022Carers";
const OTHER: &str = "Other Care Ltd";

/// A server with the examples' CPLIs and a login for Pearl Carers Ltd with a fresh key and a password.
struct Gateway {
    env: TestEnv,
    server: Server,
    key: PathBuf,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with("")
    }

    fn start_with(config: &str) -> Gateway {
        let env = env();
        let server = Server::start_with(&env, config);
        Gateway::with(env, server)
    }

    fn with(env: TestEnv, server: Server) -> Gateway {
        let key = keypair(env.data(), "pearl");
        add_user(&env, PEARL, LOGIN, &key, Some(PASSWORD));
        Gateway { env, server, key }
    }

    fn ssh_opts(&self, key: &Path, port_flag: &str) -> Vec<String> {
        [port_flag, &self.server.port.to_string(), "-i", key.to_str().unwrap()]
            .into_iter()
            .map(String::from)
            .chain(common_ssh_opts())
            .collect()
    }

    /// `sftp -b BATCH` as `login`; the batch is given on standard input.
    fn sftp(&self, login: &str, key: &Path, batch: &str) -> Output {
        let mut c = Command::new("sftp");
        c.args(self.ssh_opts(key, "-P")).args(["-b", "-"]).arg(format!("{login}@127.0.0.1"));
        run_with_stdin(c, batch)
    }

    fn paramiko(&self, login: &str, auth: &str, args: &[&str]) -> Value {
        self.paramiko_from("127.0.0.1", login, auth, args)
    }

    /// As `paramiko`, connecting from the local address `source` (any of 127.0.0.0/8).
    fn paramiko_from(&self, source: &str, login: &str, auth: &str, args: &[&str]) -> Value {
        let out = Command::new("python3")
            .arg(crate::helpers::root().join("tests/clients/paramiko_client.py"))
            .args([&self.server.port.to_string(), login, auth])
            .args(args)
            .env("VICTIM_RESULT", result_path(&self.env, "visits-week.result.json"))
            .env("GATEWAY_SOURCE_ADDR", source)
            .output()
            .expect("run python3");
        assert!(out.status.success(), "paramiko {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("paramiko printed {:?}: {e}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Fetches `results/NAME` over SFTP as the Pearl login, polling until it is there.
    fn fetch_result(&self, name: &str) -> Value {
        let dest = self.env.data().join("fetched");
        std::fs::create_dir_all(&dest).unwrap();
        let local = dest.join(name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.sftp(LOGIN, &self.key, &format!("get /results/{name} {}\n", local.display()));
            if out.status.success() {
                return serde_json::from_slice(&std::fs::read(&local).unwrap()).expect("result JSON");
            }
            assert!(Instant::now() < deadline, "no /results/{name} over SFTP: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The examples' CPLIs (Pearl Carers Ltd) and a second organisation, for the isolation tests
/// (organisations are added while no server runs: the server holds the store).
fn env() -> TestEnv {
    let env = TestEnv::with_example_cplis();
    env.ok(&["org", "add", "--name", OTHER]);
    env
}

fn common_ssh_opts() -> impl Iterator<Item = String> {
    ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]
        .into_iter()
        .map(String::from)
}

fn run_with_stdin(mut c: Command, input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn client");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn add_user(env: &TestEnv, org: &str, login: &str, key: &Path, password: Option<&str>) {
    let mut c = env.cmd(&["user", "add", "--org", org, "--name", login, "--key", &format!("{}.pub", key.display())]);
    if password.is_some() {
        c.arg("--password-stdin");
    }
    let out = run_with_stdin(c, &format!("{}\n", password.unwrap_or("")));
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_example_week(result: &Value) {
    assert_eq!(result["status"], "processed", "{result}");
    assert_eq!(counts(result), (21, 21, 0, 0, 0), "{result}");
}

fn week() -> String {
    example("visits-week.csv").display().to_string()
}

#[test]
fn openssh_sftp_uploads_the_example_week_and_fetches_its_result() {
    let gw = Gateway::start();
    let out = gw.sftp(LOGIN, &gw.key, &format!("put {} /inbox/\nls /inbox\n", week()));
    assert_ok("sftp put", &out);
    assert_example_week(&gw.fetch_result("visits-week.result.json"));
    assert_eq!(results(&gw.env, ORG_DIR), ["visits-week.result.json"]);
}

#[test]
fn openssh_scp_uploads_and_downloads() {
    let gw = Gateway::start();
    let out = Command::new("scp").args(gw.ssh_opts(&gw.key, "-P")).arg(week()).arg(format!("{LOGIN}@127.0.0.1:/inbox/")).output().unwrap();
    assert_ok("scp upload", &out);
    wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30);
    let local = gw.env.data().join("scp.json");
    let out = Command::new("scp")
        .args(gw.ssh_opts(&gw.key, "-P"))
        .arg(format!("{LOGIN}@127.0.0.1:/results/visits-week.result.json"))
        .arg(&local)
        .output()
        .unwrap();
    assert_ok("scp download", &out);
    assert_example_week(&serde_json::from_slice(&std::fs::read(local).unwrap()).unwrap());
}

#[test]
fn curl_uploads_and_downloads_with_a_password() {
    let gw = Gateway::start();
    let url = format!("sftp://127.0.0.1:{}", gw.server.port);
    let user = format!("{LOGIN}:{PASSWORD}");
    let out = Command::new("curl").args(["-sS", "-k", "-u", &user, "-T", &week()]).arg(format!("{url}/inbox/")).output().unwrap();
    assert_ok("curl upload", &out);
    wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30);
    let out = Command::new("curl").args(["-sS", "-k", "-u", &user]).arg(format!("{url}/results/visits-week.result.json")).output().unwrap();
    assert_ok("curl download", &out);
    assert_example_week(&serde_json::from_slice(&out.stdout).unwrap());
}

#[test]
fn lftp_uploads_and_downloads() {
    let gw = Gateway::start();
    let connect = format!("ssh -a -x -i {} {}", gw.key.display(), common_ssh_opts().collect::<Vec<_>>().join(" "));
    let local = gw.env.data().join("lftp.json");
    let script = format!(
        "set sftp:connect-program \"{connect}\"; open -u {LOGIN}, -p {} sftp://127.0.0.1; put {} -o /inbox/visits-week.csv",
        gw.server.port,
        week()
    );
    let out = Command::new("lftp").args(["-c", &script]).output().unwrap();
    assert_ok("lftp put", &out);
    wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30);
    let script = format!(
        "set sftp:connect-program \"{connect}\"; open -u {LOGIN}, -p {} sftp://127.0.0.1; get /results/visits-week.result.json -o {}",
        gw.server.port,
        local.display()
    );
    let out = Command::new("lftp").args(["-c", &script]).output().unwrap();
    assert_ok("lftp get", &out);
    assert_example_week(&serde_json::from_slice(&std::fs::read(local).unwrap()).unwrap());
}

#[test]
fn rclone_uploads_and_downloads() {
    let gw = Gateway::start();
    let remote = format!(
        ":sftp,host=127.0.0.1,port={},user={LOGIN},key_file={},shell_type=none,disable_hashcheck=true:",
        gw.server.port,
        gw.key.display()
    );
    let rclone = |args: &[&str]| Command::new("rclone").args(args).env("RCLONE_CONFIG", "/dev/null").output().unwrap();
    assert_ok("rclone upload", &rclone(&["copyto", &week(), &format!("{remote}/inbox/visits-week.csv")]));
    wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30);
    let local = gw.env.data().join("rclone.json");
    assert_ok("rclone download", &rclone(&["copyto", &format!("{remote}/results/visits-week.result.json"), local.to_str().unwrap()]));
    assert_example_week(&serde_json::from_slice(&std::fs::read(local).unwrap()).unwrap());
    assert_eq!(results(&gw.env, ORG_DIR), ["visits-week.result.json"], "processed once");
}

#[test]
fn paramiko_uploads_and_downloads() {
    let gw = Gateway::start();
    let key = gw.key.display().to_string();
    assert_eq!(gw.paramiko(LOGIN, &key, &["put", &week(), "/inbox/visits-week.csv"]), "ok");
    wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30);
    let local = gw.env.data().join("paramiko.json");
    assert_eq!(gw.paramiko(LOGIN, &key, &["get", "/results/visits-week.result.json", local.to_str().unwrap()]), "ok");
    assert_example_week(&serde_json::from_slice(&std::fs::read(local).unwrap()).unwrap());
}

/// Ten files uploaded one after another in one paramiko session, each sending visit V1 again with
/// its own comment, then an eleventh by `gateway import`: they are applied in the order they were
/// given, so the last one's V1 is stored
/// (each close's sync handed its file on as it finished, and about half the runs applied an older
/// file after a newer one).
#[test]
fn files_uploaded_one_after_another_are_applied_in_the_order_they_were_closed() {
    use crate::guide::{visit_row, visits_file};
    // The first upload's sync made slower than the others' (a fault point), as a busy disk makes it.
    let env = env();
    let server = Server::start_env(&env, "", &[("GATEWAY_FAULT", "slow-first-sync")]);
    let gw = Gateway::with(env, server);
    let dir = gw.env.data().join("uploads");
    std::fs::create_dir_all(&dir).unwrap();
    let mut puts = Vec::new();
    for n in 1..=10 {
        let comment = format!("upload {n}");
        let row = visit_row(&[
            ("VisitRef", "V1"),
            ("Deleted", "0"),
            ("PlannedVisitDate", "01/08/2022"),
            ("PlannedEntryTime", "09:00"),
            ("PlannedExitTime", "09:30"),
            ("VisitType", "C"),
            ("Comments", &comment),
            ("SSRef", "A123456"),
            ("ServiceLevel", "Home Support"),
            ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
        ]);
        let path = dir.join(format!("order{n}.csv"));
        std::fs::write(&path, visits_file(&[row])).unwrap();
        puts.extend([path.display().to_string(), format!("/inbox/order{n}.csv")]);
    }
    let puts: Vec<&str> = puts.iter().map(String::as_str).collect();
    let done = gw.paramiko(LOGIN, &gw.key.display().to_string(), &[&["tryput"][..], &puts].concat());
    assert!(done.as_array().unwrap().iter().all(|d| d == "ALLOWED"), "{done}");
    // A command's import given after the uploads' CLOSEs were answered is applied after them too
    // (it went straight to the engine, before the uploads still syncing).
    let row = visit_row(&[
        ("VisitRef", "V1"), ("Deleted", "0"), ("PlannedVisitDate", "01/08/2022"), ("PlannedEntryTime", "09:00"), ("PlannedExitTime", "09:30"),
        ("VisitType", "C"), ("Comments", "imported"), ("SSRef", "A123456"), ("ServiceLevel", "Home Support"), ("ServiceName", "Pearl Carers - Zone 6 - Oxford"),
    ]);
    let imported = dir.join("order11.csv");
    std::fs::write(&imported, visits_file(&[row])).unwrap();
    gw.env.ok(&["import", "--org", PEARL, imported.to_str().unwrap()]);
    let processed: Vec<String> = (1..=11)
        .map(|n| wait_for_json(&result_path(&gw.env, &format!("order{n}.result.json")), 30)["processed_at"].as_str().unwrap().to_string())
        .collect();
    assert!(processed.windows(2).all(|w| w[0] <= w[1]), "applied in upload order: {processed:?}");
    let v1: Vec<Value> = serde_json::from_str(&gw.env.ok(&["visits", "list", "--org", PEARL, "--format", "json"])).unwrap();
    let v1 = v1.iter().find(|v| v["visit_ref"] == "V1").expect("V1 stored");
    assert_eq!(v1["comments"], "imported", "{v1}");
}

/// No file of the organisation waits in staging, the spool or the inbox, and the archive holds `n`.
fn assert_settled(env: &TestEnv, archived: usize) {
    let count = |p: PathBuf| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count(env.data().join("staging")), 0, "staging is empty");
    assert_eq!(count(env.data().join("spool").join(ORG_DIR)), 0, "spool is empty");
    assert_eq!(count(inbox(env)), 0, "inbox is empty");
    assert_eq!(count(env.data().join("archive").join(ORG_DIR)), archived, "archived files");
}

#[test]
fn a_workbook_sent_as_it_is_is_answered_save_as_csv_and_other_names_wait() {
    let gw = Gateway::start();
    let dir = gw.env.data().join("local");
    std::fs::create_dir_all(&dir).unwrap();
    // An .xlsx is a zip file; an ordinary text file is not judged until renamed to *.csv.
    std::fs::write(dir.join("visits.xlsx"), b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml").unwrap();
    std::fs::copy(example("visits-week.csv"), dir.join("notes.txt")).unwrap();
    let puts = format!("put {0}/visits.xlsx /inbox/\nput {0}/notes.txt /inbox/\nput {1} /inbox/\n", dir.display(), week());
    assert_ok("sftp put", &gw.sftp(LOGIN, &gw.key, &puts));
    let r = gw.fetch_result("visits.xlsx.result.json");
    assert_eq!((r["status"].as_str(), r["issues"][0]["code"].as_str()), (Some("failed"), Some("FILE_UNREADABLE")), "{r}");
    let message = r["issues"][0]["message"].as_str().unwrap();
    assert!(message.contains("spreadsheet workbook (Excel .xlsx") && message.contains("Save As"), "{message}");
    // The week sent after both is answered: the gateway has moved past the text file, which waits.
    assert_example_week(&gw.fetch_result("visits-week.result.json"));
    assert_eq!(results(&gw.env, ORG_DIR), ["visits-week.result.json", "visits.xlsx.result.json"]);
    assert!(inbox(&gw.env).join("notes.txt").exists());
}

#[test]
fn a_winscp_style_upload_is_processed_exactly_once_after_the_rename() {
    let gw = Gateway::start();
    assert_eq!(gw.paramiko(LOGIN, &gw.key.display().to_string(), &["winscp", &week(), "/inbox/visits-week.csv"]), "ok");
    assert_example_week(&wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(results(&gw.env, ORG_DIR), ["visits-week.result.json"]);
    assert_settled(&gw.env, 1);
}

#[test]
fn an_upload_killed_halfway_is_never_processed() {
    let gw = Gateway::start();
    let out = Command::new("python3")
        .arg(crate::helpers::root().join("tests/clients/paramiko_client.py"))
        .args([&gw.server.port.to_string(), LOGIN, &gw.key.display().to_string(), "halfway", &week(), "/inbox/visits-week.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "the client died mid-upload: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(results(&gw.env, ORG_DIR).is_empty(), "no result for a broken-off upload");
    assert_settled(&gw.env, 0);
    // The same file sent whole afterwards is processed normally.
    assert_ok("sftp put", &gw.sftp(LOGIN, &gw.key, &format!("put {} /inbox/\n", week())));
    assert_example_week(&wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30));
}

#[test]
fn another_organisations_login_cannot_reach_the_first_ones_files() {
    let gw = Gateway::start();
    assert_ok("sftp put", &gw.sftp(LOGIN, &gw.key, &format!("put {} /inbox/\n", week())));
    let victim_result = result_path(&gw.env, "visits-week.result.json");
    let before = wait_for_json(&victim_result, 30);

    let other_key = keypair(gw.env.data(), "other");
    add_user(&gw.env, OTHER, "other-rota", &other_key, None);
    // A link planted in the other organisation's own results (by anyone with host access) is never followed.
    std::os::unix::fs::symlink(&victim_result, gw.env.org_dir("other-care-ltd").join("results/link.result.json")).unwrap();

    let tried = gw.paramiko("other-rota", &other_key.display().to_string(), &["attack", ORG_DIR]);
    for (name, outcome) in tried.as_object().unwrap() {
        if name.starts_with("own ") {
            continue;
        }
        let outcome = outcome.as_str().unwrap();
        assert!(outcome.starts_with("refused"), "{name}: {outcome}");
    }
    assert_eq!(tried["own root listing"], serde_json::json!(["exports", "inbox", "results"]));
    assert_eq!(tried["own results listing"], serde_json::json!([]), "the planted link is not listed");
    for write in ["write into /results", "write at root", "rename own pending into /results", "remove own result", "symlink to victim"] {
        assert!(tried[write].as_str().unwrap().contains("Errno 13"), "{write} is a permission error: {}", tried[write]);
    }

    // URL-encoded names through curl, and the OpenSSH client with `..`.
    let url = format!("sftp://127.0.0.1:{}", gw.server.port);
    for path in ["/%2e%2e/pearl-carers-ltd/results/visits-week.result.json", "/results/%2E%2E%2F%2E%2E%2Fpearl-carers-ltd%2Fresults%2Fvisits-week.result.json"] {
        let out = Command::new("curl").args(["-sS", "-k", "--key"]).arg(&other_key).arg("--pubkey").arg(format!("{}.pub", other_key.display())).args(["-u", "other-rota:"]).arg(format!("{url}{path}")).output().unwrap();
        assert!(!out.status.success() && out.stdout.is_empty(), "curl {path} got {}", String::from_utf8_lossy(&out.stdout));
    }
    let out = gw.sftp("other-rota", &other_key, "get ../pearl-carers-ltd/results/visits-week.result.json /tmp/never\n");
    assert!(!out.status.success());
    let out = gw.sftp("other-rota", &other_key, &format!("put {} /results/x.csv\n", week()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ermission denied"), "{}", String::from_utf8_lossy(&out.stderr));

    // Pearl's files are as they were, and nothing arrived in its inbox or results.
    assert_eq!(wait_for_json(&victim_result, 1), before);
    assert_eq!(results(&gw.env, ORG_DIR), ["visits-week.result.json"]);
    assert_eq!(results(&gw.env, "other-care-ltd"), ["link.result.json"], "only the planted link");
}

#[test]
fn a_wrong_key_and_a_wrong_password_are_refused() {
    let gw = Gateway::start();
    let stranger = keypair(gw.env.data(), "stranger");
    let out = gw.sftp(LOGIN, &stranger, "ls /\n");
    assert!(!out.status.success(), "a key that is not the login's is refused");
    assert!(gw.paramiko(LOGIN, "password:Wrong2022Pass", &["login"]).as_str().unwrap().starts_with("refused"));
    assert!(gw.paramiko("nobody", "password:Wrong2022Pass", &["login"]).as_str().unwrap().starts_with("refused"));
    assert_eq!(gw.paramiko(LOGIN, &format!("password:{PASSWORD}"), &["login"]), "ok");
    assert_eq!(gw.paramiko(LOGIN, &gw.key.display().to_string(), &["login"]), "ok");
}

#[test]
fn the_sixth_bad_password_in_a_row_is_refused_even_when_correct_until_the_lock_expires() {
    let gw = Gateway::start_with("failed_login_delay_ms = 50\nlockout_secs = 4");
    for _ in 0..5 {
        assert!(gw.paramiko(LOGIN, "password:Wrong2022Pass", &["login"]).as_str().unwrap().starts_with("refused"));
    }
    let right = format!("password:{PASSWORD}");
    assert!(gw.paramiko(LOGIN, &right, &["login"]).as_str().unwrap().starts_with("refused"), "locked: the right password is refused too");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(gw.paramiko(LOGIN, &right, &["login"]), "ok", "the lock has expired");
}

#[test]
fn fifty_concurrent_sessions_each_upload_a_file_and_every_one_is_processed_once() {
    // Fifty connections from one address at the same instant: over the default cap of 10 not yet
    // logged in per address (issue 9), which a client this parallel raises.
    let gw = Gateway::start_with("max_startups_per_source = 50");
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["load", "50", &week()]);
    assert_eq!(out["errors"], serde_json::json!([]), "{out}");
    let expected: Vec<String> = (0..50).map(|i| format!("load-{i:02}.result.json")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results(&gw.env, ORG_DIR).len() < 50 {
        assert!(Instant::now() < deadline, "only {} results", results(&gw.env, ORG_DIR).len());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(results(&gw.env, ORG_DIR), expected, "each file answered once");
    let mut new = 0;
    for name in &expected {
        let r = wait_for_json(&result_path(&gw.env, name), 1);
        let (read, n, updated, rejected, _) = counts(&r);
        assert_eq!((read, rejected), (21, 0), "{name}: {r}");
        assert_eq!(n + updated, 21);
        new += n;
    }
    assert_eq!(new, 21, "the same 21 visits: new once, updated 49 times");
    assert_settled(&gw.env, 50);
}

#[test]
fn an_upload_over_the_size_limit_is_refused_and_says_which_limit() {
    let env = env();
    let server = Server::start_full(&env, "", "[limits]\nmax_file_bytes = 2048\n", &[]).0;
    let gw = Gateway::with(env, server);
    // OpenSSH's sftp shows only the status ("Failure"); paramiko shows the gateway's message.
    assert!(!gw.sftp(LOGIN, &gw.key, &format!("put {} /inbox/\n", week())).status.success());
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["tryput", &week(), "/inbox/visits-week.csv"]);
    assert!(out[0].as_str().unwrap().contains("larger than the gateway accepts (limit 2048 bytes)"), "{out}");
    std::thread::sleep(Duration::from_millis(800));
    assert!(results(&gw.env, ORG_DIR).is_empty(), "nothing processed");
    assert_settled(&gw.env, 0);
}

#[test]
fn sessions_beyond_the_per_login_limit_are_refused_and_say_which_limit() {
    let gw = Gateway::start_with("max_sessions_per_login = 1");
    // One session held open by paramiko (it sleeps inside `hold`), a second refused.
    let mut holder = holding(&gw, &["hold", "5"]);
    let out = gw.sftp(LOGIN, &gw.key, "ls /\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limit 1 per login"), "{stderr}");
    let _ = holder.kill();
    let _ = holder.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_ok("a session after the first ended", &gw.sftp(LOGIN, &gw.key, "ls /\n"));
}

#[test]
fn uploads_beyond_the_inbox_file_limit_are_refused_and_say_which_limit() {
    let gw = Gateway::start_with("max_inbox_files = 2");
    let w = week();
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["tryput", &w, "/inbox/a.part", &w, "/inbox/b.part", &w, "/inbox/c.part"]);
    assert_eq!(out[0], "ALLOWED");
    assert_eq!(out[1], "ALLOWED");
    assert!(out[2].as_str().unwrap().contains("/inbox already holds 2 files waiting (limit 2)"), "{out}");
    // Removing a pending file makes room.
    assert_ok("rm and put", &gw.sftp(LOGIN, &gw.key, &format!("rm /inbox/a.part\nput {} /inbox/c.part\nls /inbox\n", week())));
}

/// A paramiko session running `what` (`hold SECS`: a session held open; `holdupload LOCAL REMOTE`:
/// an upload written and held open) until killed; returned once it says it is holding.
fn holding(gw: &Gateway, what: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let mut holder = Command::new("python3")
        .arg(crate::helpers::root().join("tests/clients/paramiko_client.py"))
        .args([&gw.server.port.to_string(), LOGIN, &gw.key.display().to_string()])
        .args(what)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("holding"), "{line}");
    holder
}

#[test]
fn a_refusal_at_the_inbox_limit_counts_uploads_in_progress_apart_from_the_files_listed() {
    let gw = Gateway::start_with("max_inbox_files = 1");
    let mut holder = holding(&gw, &["holdupload", &week(), "/inbox/held.csv"]);
    let w = week();
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["tryput", &w, "/inbox/b.part"]);
    let _ = holder.kill();
    let _ = holder.wait();
    // It asked the login to remove the files it holds, which it could not see (until 2026-12-03).
    assert!(out[0].as_str().unwrap().contains("/inbox already holds 0 files waiting and 1 uploads in progress, which are not listed until they are closed (limit 1 in all)"), "{out}");
}

/// A refused upload, rename or folder is logged with the login, its address and the reason given
/// (only an upload too large and the disk reserve were).
#[test]
fn refusals_of_what_would_change_the_inbox_are_logged_with_the_reason_given() {
    let env = env();
    let server = Server::start_logging(&env, "warn");
    let gw = Gateway::with(env, server);
    let key = gw.key.display().to_string();
    let tried = gw.paramiko(LOGIN, &key, &["tryput", &week(), "/results/x.csv"]);
    assert!(tried[0].as_str().unwrap().starts_with("refused"), "{tried}");
    let _ = gw.sftp(LOGIN, &gw.key, "-mkdir /inbox/sub\n");
    // Once a later upload is answered the server has written its log lines for the earlier ones.
    assert_eq!(gw.paramiko(LOGIN, &key, &["put", &week(), "/inbox/visits-week.csv"]), "ok");
    wait_for_json(&result_path(&gw.env, "visits-week.result.json"), 30);
    let log = std::fs::read_to_string(Server::log_path(&gw.env)).unwrap();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains(" refused ") && l.contains(&format!("user=\"{LOGIN}\"")) && l.contains("addr=")).collect();
    assert!(refused.iter().any(|l| l.contains("/results is read-only")), "{log}");
    assert!(refused.iter().any(|l| l.contains("folders cannot be made")), "{log}");
}

/// The server offers the two methods a login can have; russh's default offered hostbased and
/// keyboard-interactive too, which clients listed and could try in vain.
#[test]
fn only_publickey_and_password_are_offered() {
    let gw = Gateway::start();
    assert_eq!(gw.paramiko(LOGIN, "password:unused", &["methods"]), serde_json::json!(["password", "publickey"]));
}

/// A paramiko session of `LOGIN` holding an upload open while `change` is made, then closing it and
/// trying a listing and another upload: what it was told of each.
fn after_login_change(gw: &Gateway, held: &str, change: impl FnOnce()) -> Value {
    use std::io::{BufRead, Write};
    let mut holder = Command::new("python3")
        .arg(crate::helpers::root().join("tests/clients/paramiko_client.py"))
        .args([&gw.server.port.to_string(), LOGIN, &gw.key.display().to_string()])
        .args(["afterremoval", &week(), &format!("/inbox/{held}"), &format!("/inbox/after-{held}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("holding"), "{line}");
    change();
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = holder.wait();
    serde_json::from_str(&line).unwrap()
}

/// `user remove` while the login's session is open (issue 10's "takes effect at once"): the upload
/// it was writing is not taken (the next stat says why), and it can list and upload nothing more;
/// nor once the login is added again with another key (the way to revoke a key).
#[test]
fn a_login_removed_while_its_session_is_open_can_do_nothing_more() {
    let gw = Gateway::start();
    let removed = after_login_change(&gw, "held.csv", || {
        gw.env.ok(&["user", "remove", "--name", LOGIN]);
    });
    add_user(&gw.env, PEARL, LOGIN, &gw.key, None);
    let new_key = keypair(gw.env.data(), "pearl-new");
    let readded = after_login_change(&gw, "held2.csv", || {
        gw.env.ok(&["user", "remove", "--name", LOGIN]);
        add_user(&gw.env, PEARL, LOGIN, &new_key, None);
    });
    for tried in [&removed, &readded] {
        for what in ["held", "list", "put"] {
            assert!(tried[what].as_str().unwrap().contains(&format!("the login '{LOGIN}' has been removed, or its key or password changed")), "{what}: {tried}");
        }
    }
    // A file imported after: once it is answered, a held upload taken at its close would have been too.
    gw.env.ok(&["import", "--org", PEARL, &week()]);
    let results: Vec<String> = std::fs::read_dir(gw.env.org_dir(ORG_DIR).join("results")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(results.iter().any(|r| r.starts_with("visits-week.result")), "{results:?}");
    assert!(!results.iter().any(|r| r.starts_with("held") || r.starts_with("after")), "{results:?}");
}

#[test]
fn the_host_key_is_made_once_with_mode_0600_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_example_cplis();
    let (server, first) = Server::start_full(&env, "", "", &[]);
    drop(server);
    let key = env.data().join("ssh_host_ed25519_key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let (_server, second) = Server::start_full(&env, "", "", &[]);
    let fingerprint = |lines: &[String]| lines.iter().find_map(|l| l.split("host key ").nth(1).map(str::to_string)).expect("fingerprint printed");
    assert!(fingerprint(&first).starts_with("SHA256:"));
    assert_eq!(fingerprint(&first), fingerprint(&second));
}

#[test]
fn the_demo_prints_commands_that_upload_the_example_week_and_fetch_its_result() {
    let env = TestEnv::new();
    let (_server, lines) = Server::start_full(&env, "", "", &["--demo"]);
    let command = |label: &str| {
        lines.iter().find_map(|l| l.split(label).nth(1).map(|c| c.trim().to_string())).unwrap_or_else(|| panic!("no '{label}' in {lines:?}"))
    };
    let upload = command("upload the example week:");
    let out = Command::new("sh").arg("-c").arg(&upload).current_dir(crate::helpers::root()).output().unwrap();
    assert_ok(&upload, &out);
    let fetch = command("fetch its result:");
    let dest = env.data().join("fetched");
    std::fs::create_dir_all(&dest).unwrap();
    let fetch = format!("{} {}", fetch.strip_suffix(" .").expect("fetches into ."), dest.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("sh").arg("-c").arg(&fetch).current_dir(crate::helpers::root()).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{fetch}: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_example_week(&wait_for_json(&dest.join("visits-week.result.json"), 1));
}

#[test]
fn email_an_upload_over_sftp_is_answered_by_one_mail_with_the_counts_and_the_result_csv() {
    use crate::mail::{free_port, mail_config, SmtpSink};
    let env = env();
    env.ok(&["contact", "add", "--org", PEARL, "--email", "rota@pearl.example.org", "--name", "Siân Jones"]);
    let smtp = free_port();
    let sink = SmtpSink::start(smtp, &env.data().join("maildir"));
    let server = Server::start_full(&env, "", &mail_config(smtp), &[]).0;
    let gw = Gateway::with(env, server);
    assert_ok("sftp put", &gw.sftp(LOGIN, &gw.key, &format!("put {} /inbox/\n", week())));
    let result = gw.fetch_result("visits-week.result.json");
    assert_example_week(&result);
    let mails = sink.wait_for(1, 30);
    assert_eq!(mails.len(), 1, "one email: {mails:#?}");
    let m = &mails[0];
    assert_eq!(m["subject"], "visits-week.csv: 21 read, 0 rejected");
    assert_eq!(m["to"], "Siân Jones <rota@pearl.example.org>");
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("Records read:          21") && text.contains("New:                   21") && text.contains("Rejected:              0"), "{text}");
    let html = m["html"].as_str().unwrap();
    assert!(html.contains("<td>Records read</td><td style=\"text-align: right; padding-left: 16px;\">21</td>"), "{html}");
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{m}");
    assert_eq!(attachments[0]["filename"], "visits-week.result.csv");
    let csv = std::fs::read_to_string(result_path(&gw.env, "visits-week.result.csv")).unwrap();
    assert_eq!(attachments[0]["content"].as_str().unwrap().replace("\r\n", "\n"), csv.replace("\r\n", "\n"));
}

#[test]
fn a_name_being_uploaded_by_one_session_is_refused_to_another() {
    let gw = Gateway::start();
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["twowriters", "/inbox/visits.part"]);
    assert!(out["second"].as_str().unwrap().contains("/inbox/visits.part: another session is uploading it"), "{out}");
    // The session's own upload of the name is told apart (until 2026-12-03 it was "another session").
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["reopen", "/inbox/visits.part"]);
    assert!(out["second"].as_str().unwrap().contains("/inbox/visits.part: this session already has it open"), "{out}");
}

#[test]
fn a_results_folder_of_hundreds_of_files_is_listed_whole() {
    let gw = Gateway::start();
    let results = gw.env.org_dir(ORG_DIR).join("results");
    for i in 0..250 {
        std::fs::write(results.join(format!("file-{i:03}.result.json")), "{}").unwrap();
    }
    assert_eq!(gw.paramiko(LOGIN, &gw.key.display().to_string(), &["count", "/results"]), 250);
    let out = gw.sftp(LOGIN, &gw.key, "ls -1 /results\n");
    assert_ok("sftp ls", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(".result.json")).count(), 250);
}

// Issue 9: nothing knocks the front door over.

/// Raw TCP connections from `source` held open by `tests/clients/flood.py` until dropped.
struct Flood(std::process::Child);

impl Flood {
    /// Returns once `flood.py` has made its connections; `at_least` of them must have connected (the
    /// rest may wait in vain in a full listen backlog).
    fn start(port: u16, count: usize, at_least: usize, source: &str) -> Flood {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(crate::helpers::root().join("tests/clients/flood.py"))
            .args([&port.to_string(), &count.to_string(), source])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let open: usize = line.trim().strip_prefix("open ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("flood.py: {line}"));
        assert!(open >= at_least, "only {open} of {count} flood connections were made");
        Flood(child)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Lowers the running server's descriptor limit, as a supervisor with a small `LimitNOFILE` would.
fn limit_descriptors(server: &Server, n: u32) {
    let out = Command::new("prlimit").arg(format!("--pid={}", server.pid())).arg(format!("--nofile={n}:{n}")).output().unwrap();
    assert_ok("prlimit", &out);
}

fn staging_files(env: &TestEnv) -> usize {
    std::fs::read_dir(env.data().join("staging")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn issue_9_the_listener_survives_running_out_of_descriptors_and_a_login_works_after_the_flood() {
    // Caps high enough that the flood, not the caps, meets the descriptor limit.
    let gw = Gateway::start_with("max_startups_per_source = 10000\nmax_startups = 10000");
    limit_descriptors(&gw.server, 256);
    // More connections than descriptors: accept() fails with EMFILE while the flood lasts.
    let flood = Flood::start(gw.server.port, 340, 300, "127.0.0.1");
    drop(flood);
    assert_ok("sftp after the flood", &gw.sftp(LOGIN, &gw.key, "ls /\n"));
}

#[test]
fn issue_9_a_flood_from_one_address_does_not_keep_another_address_out() {
    let gw = Gateway::start();
    limit_descriptors(&gw.server, 256);
    // Under load a few connects may time out in a full backlog; 300 is still more than the server's
    // 256 descriptors, which without the caps ends the listener.
    let flood = Flood::start(gw.server.port, 400, 300, "127.0.0.2");
    assert_ok("sftp from 127.0.0.1 during a flood from 127.0.0.2", &gw.sftp(LOGIN, &gw.key, "ls /\n"));
    drop(flood);
}

#[test]
fn issue_9_a_connection_sending_ignore_messages_is_dropped_at_the_login_grace_time() {
    let gw = Gateway::start_with("login_grace_secs = 3");
    let out = gw.paramiko("nobody", "unused", &["grace", "20"]);
    assert_eq!(out["dropped"], true, "still connected after 20 s: {out}");
    let after = out["after"].as_f64().unwrap();
    assert!((2.5..10.0).contains(&after), "dropped after {after} s, grace 3 s");
}

/// Five wrong passwords for the Pearl login from `source`, then proof the lock is on: the right
/// password from there is refused.
fn lock_password_from(gw: &Gateway, source: &str) {
    for _ in 0..5 {
        assert!(gw.paramiko_from(source, LOGIN, "password:Wrong2022Pass", &["login"]).as_str().unwrap().starts_with("refused"));
    }
    let right = format!("password:{PASSWORD}");
    assert!(gw.paramiko_from(source, LOGIN, &right, &["login"]).as_str().unwrap().starts_with("refused"), "locked from {source}");
}

#[test]
fn issue_9_wrong_passwords_from_one_address_do_not_refuse_the_right_key() {
    let gw = Gateway::start_with("failed_login_delay_ms = 50");
    lock_password_from(&gw, "127.0.0.1");
    assert_eq!(gw.paramiko(LOGIN, &gw.key.display().to_string(), &["login"]), "ok");
    assert_ok("OpenSSH with the key", &gw.sftp(LOGIN, &gw.key, "ls /\n"));
}

#[test]
fn issue_9_wrong_passwords_from_one_address_do_not_refuse_the_right_password_from_another() {
    let gw = Gateway::start_with("failed_login_delay_ms = 50");
    lock_password_from(&gw, "127.0.0.2");
    assert_eq!(gw.paramiko_from("127.0.0.1", LOGIN, &format!("password:{PASSWORD}"), &["login"]), "ok");
}

#[test]
fn issue_9_user_unlock_lets_the_right_password_in_at_once() {
    let gw = Gateway::start_with("failed_login_delay_ms = 50");
    lock_password_from(&gw, "127.0.0.1");
    let out = gw.env.ok(&["user", "unlock", "--name", LOGIN]);
    assert!(out.contains("unlocked pearl-rota"), "{out}");
    assert_eq!(gw.paramiko(LOGIN, &format!("password:{PASSWORD}"), &["login"]), "ok");
    let unknown = gw.env.run(&["user", "unlock", "--name", "nobody"]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("there is no login 'nobody'"));
}

#[test]
fn issue_9_refused_opens_at_the_handle_limit_leave_nothing_in_staging() {
    let gw = Gateway::start();
    std::fs::write(gw.env.org_dir(ORG_DIR).join("results/old.result.json"), "{}").unwrap();
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["handles", "/results/old.result.json", "500"]);
    assert_eq!(out["held"], 64, "{out}");
    assert_eq!(out["refused"], 500, "{out}");
    assert!(out["last"].as_str().unwrap().contains("too many open files in this session (limit 64)"), "{out}");
    assert_eq!(staging_files(&gw.env), 0, "refused opens made nothing");
}

#[test]
fn issue_9_an_upload_cut_by_kill_9_and_a_crashed_write_are_removed_from_staging_at_the_next_start() {
    let gw = Gateway::start();
    let mut holder = holding(&gw, &["holdupload", &week(), "/inbox/visits-week.csv"]);
    // What `DataDir::write_atomically` leaves when killed between writing and renaming.
    std::fs::write(gw.env.data().join("staging/0193aa1e-crashed.tmp"), "half a result").unwrap();
    let Gateway { env, server, .. } = gw;
    drop(server); // SIGKILL, the upload still open
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(staging_files(&env), 2, "the cut upload and the .tmp are left by the crash");
    let _server = Server::start(&env);
    assert_eq!(staging_files(&env), 0, "removed at the next start");
}

#[test]
fn issue_9_dot_files_in_the_inbox_are_listed_and_count_towards_its_limit() {
    let gw = Gateway::start_with("max_inbox_files = 2");
    std::fs::write(inbox(&gw.env).join(".hidden.part"), "left by someone").unwrap();
    let w = week();
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["tryput", &w, "/inbox/a.part", &w, "/inbox/b.part"]);
    assert_eq!(out[0], "ALLOWED");
    assert!(out[1].as_str().unwrap().contains("/inbox already holds 2 files waiting (limit 2)"), "{out}");
    let out = gw.sftp(LOGIN, &gw.key, "ls -1a /inbox\n");
    assert_ok("sftp ls", &out);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(".hidden.part") && listed.contains("a.part"), "both files that count are listed: {listed}");
    // And the login can clear it.
    assert_ok("rm and put", &gw.sftp(LOGIN, &gw.key, &format!("rm /inbox/.hidden.part\nput {w} /inbox/b.part\n")));
}

#[test]
fn issue_9_names_with_a_right_to_left_override_or_control_characters_are_refused_with_a_clear_message() {
    let gw = Gateway::start();
    let w = week();
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["tryput", &w, "/inbox/visits\u{202E}vsc.part", &w, "/inbox/visits\u{7}.part"]);
    let rtl = out[0].as_str().unwrap();
    assert!(rtl.contains("not a usable file name") && rtl.contains("U+202E (a text-direction control)"), "{out}");
    assert!(out[1].as_str().unwrap().contains("U+0007 (a control character)"), "{out}");
    assert_eq!(std::fs::read_dir(inbox(&gw.env)).unwrap().count(), 0);
    assert_eq!(staging_files(&gw.env), 0);
}

#[test]
fn issue_9_requests_before_the_sftp_init_are_refused() {
    let gw = Gateway::start();
    assert_eq!(gw.paramiko(LOGIN, &gw.key.display().to_string(), &["preinit"]), "status", "no handle before INIT");
    assert_eq!(staging_files(&gw.env), 0);
}

/// Runs `serve` with no `sftp.host_key` setting from the working directory `cwd`; the host key
/// fingerprint it prints.
fn fingerprint_serving_from(env: &TestEnv, cwd: &Path) -> String {
    use std::io::BufRead;
    let config = env.data().join("no-host-key.toml");
    std::fs::write(&config, "[sftp]\nfailed_login_delay_ms = 100\n").unwrap();
    let mut child = Command::new(crate::helpers::bin())
        .current_dir(cwd)
        .arg("--data")
        .arg(env.data())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut found = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(f) = line.split("host key ").nth(1) {
            found = Some(f.trim().to_string());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found.expect("serve printed its host key")
}

#[test]
fn issue_9_the_host_key_defaults_to_the_data_folder_whatever_the_working_directory() {
    let env = TestEnv::with_example_cplis();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = fingerprint_serving_from(&env, a.path());
    let second = fingerprint_serving_from(&env, b.path());
    assert_eq!(first, second, "the same host key from either directory");
    assert!(env.data().join("keys/ssh_host_ed25519_key").is_file());
    assert!(!a.path().join("keys").exists() && !b.path().join("keys").exists(), "nothing made in the working directory");
}

#[test]
fn issue_9_an_upload_is_refused_up_front_when_the_disk_is_below_its_reserve() {
    let env = env();
    let server = Server::start_full(&env, "", "[limits]\nmin_free_disk_bytes = 9000000000000000000\n", &[]).0;
    let gw = Gateway::with(env, server);
    let out = gw.paramiko(LOGIN, &gw.key.display().to_string(), &["tryput", &week(), "/inbox/visits-week.csv"]);
    assert!(out[0].as_str().unwrap().contains("below its reserve of 8583068847656 MiB"), "{out}");
    assert!(!gw.sftp(LOGIN, &gw.key, &format!("put {} /inbox/\n", week())).status.success(), "OpenSSH sftp too");
    assert_ok("listing still works", &gw.sftp(LOGIN, &gw.key, "ls /results\n"));
    assert_eq!(staging_files(&gw.env), 0);
    assert!(std::fs::read_dir(inbox(&gw.env)).unwrap().next().is_none());
}
