//! Issue 10: every command works while `serve` runs, through the control socket: same output, same
//! exit status, uploads in flight meanwhile each processed once; the socket's mode, a stale socket,
//! a server that dies mid-reply.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{keypair, example, TestEnv, PEARL, VISITS_HEADER};
use crate::mail::{free_port, mail_config, SmtpSink};
use crate::server::{results, wait_for_json, Server, ORG_DIR};

/// The four organisations besides Pearl Carers Ltd whose logins upload meanwhile.
const OTHERS: [&str; 4] = ["Amber Care Ltd", "Birch Homecare Ltd", "Cedar Carers Ltd", "Damson Support Ltd"];
const PASSWORD: &str = "Rota2022Carers";

/// A visit for a client the examples' CPLIs lack (SSRef A999999): stored Unmatched until a CPLI for
/// it is loaded.
fn unmatched_visit_file(dir: &Path) -> PathBuf {
    let path = dir.join("unmatched-visit.csv");
    let row = "U1,0,01/08/2022,09:00,09:30,DHF,01/08/2022,09:02,,,09:31,,,,,,A999999,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,,";
    std::fs::write(&path, format!("{VISITS_HEADER}\n{row}\n")).unwrap();
    path
}

/// A CPLI extract with the CPLI the unmatched visit lacked (the examples' first CPLI, another client).
fn extract_adding_its_cpli(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example("cplis.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let first = lines.next().unwrap();
    let added = first
        .replacen("156001,A123456,Mrs Edna Krabappel,1390996034,2217BEAD-DBC4-96CB-8E81-973E0BECD7B0", "156999,A999999,Mrs Agnes Skinner,9434765919,5A1F0C3E-2B7D-4E2B-9C1A-3F4D5E6A7B8C", 1);
    assert_ne!(added, first, "the examples' first CPLI changed; update this test");
    let path = dir.join("cplis-added.csv");
    std::fs::write(&path, format!("{header}\n{added}\n")).unwrap();
    path
}

fn run_with_stdin(mut c: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn assert_exit(what: &str, out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `python3 tests/clients/paramiko_client.py PORT LOGIN AUTH ARGS...` (its JSON answer).
fn paramiko(port: u16, login: &str, auth: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(crate::helpers::root().join("tests/clients/paramiko_client.py"))
        .args([&port.to_string(), login, auth])
        .args(args)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "paramiko {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn slug(name: &str) -> String {
    name.to_lowercase().replace(' ', "-")
}

/// Sends SIGTERM and waits until the process has exited (a zombie until `Server` reaps it).
fn stop_cleanly(server: &Server) {
    let pid = server.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
            return;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Five files uploaded, the server stopped once the first is answered (each file made slow by a
/// fault point): the one being applied is finished, the rest stay in the spool and are applied at
/// the next start, in order (the whole queue was worked through before the server stopped).
#[test]
fn a_server_stopped_with_files_queued_leaves_them_in_the_spool_for_the_next_start() {
    let env = TestEnv::with_example_cplis();
    let key = keypair(env.data(), "rota");
    env.ok(&["user", "add", "--org", PEARL, "--name", "pearl-rota", "--key", &format!("{}.pub", key.display())]);
    let server = Server::start_env(&env, "", &[("GATEWAY_FAULT", "slow-files")]);
    let week = example("visits-week.csv").display().to_string();
    let puts: Vec<String> = (1..=5).flat_map(|n| [week.clone(), format!("/inbox/queued{n}.csv")]).collect();
    let puts: Vec<&str> = puts.iter().map(String::as_str).collect();
    let done = paramiko(server.port, "pearl-rota", key.to_str().unwrap(), &[&["tryput"][..], &puts].concat());
    assert!(done.as_array().unwrap().iter().all(|d| d == "ALLOWED"), "{done}");
    let answered = |n: u32| env.org_dir(ORG_DIR).join("results").join(format!("queued{n}.result.json"));
    wait_for_json(&answered(1), 30);
    stop_cleanly(&server);
    let left: Vec<u32> = (1..=5).filter(|n| !answered(*n).exists()).collect();
    assert!(left.len() >= 2, "files after the one being applied stay queued: {left:?} unanswered");
    let _server = Server::start(&env);
    let processed: Vec<String> = (1..=5).map(|n| wait_for_json(&answered(n), 30)["processed_at"].as_str().unwrap().to_string()).collect();
    assert!(processed.windows(2).all(|w| w[0] <= w[1]), "in upload order: {processed:?}");
}

/// A server stopped at once after a file (within the quiet wait before exports are written) writes
/// them before it ends: the provider's and the council's exports show the file.
#[test]
fn a_server_stopped_right_after_a_file_leaves_its_exports_current() {
    let env = TestEnv::with_example_cplis();
    let server = Server::start(&env);
    let file = unmatched_visit_file(env.data());
    env.ok(&["import", "--org", PEARL, file.to_str().unwrap()]);
    stop_cleanly(&server);
    let exports = env.org_dir(ORG_DIR).join("exports");
    let unmatched = std::fs::read_to_string(exports.join("unmatched.csv")).unwrap();
    assert!(unmatched.lines().any(|l| l.starts_with("U1,")), "U1 is in unmatched.csv: {unmatched}");
    let submissions = std::fs::read_to_string(env.data().join("council/exports/submissions.csv")).unwrap();
    assert!(submissions.contains("unmatched-visit.csv"), "the council's submissions.csv names the file: {submissions}");
}

/// Waits until the organisation has `n` result files.
fn wait_for_results(env: &TestEnv, org_slug: &str, n: usize, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let names = results(env, org_slug);
        if names.len() >= n {
            return names;
        }
        assert!(Instant::now() < deadline, "{org_slug}: {} of {n} results after {secs} s: {names:?}", names.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_of(visits: &[Value], visit_ref: &str) -> String {
    let v = visits.iter().find(|v| v["visit_ref"] == visit_ref).unwrap_or_else(|| panic!("no visit {visit_ref}"));
    v["status"].as_str().unwrap().to_string()
}

#[test]
fn commands_run_while_serving_answer_as_with_the_server_stopped_and_uploads_are_processed_once() {
    let env = TestEnv::with_example_cplis();
    for o in OTHERS {
        env.ok(&["org", "add", "--name", o]);
    }
    let files = tempfile::tempdir().unwrap();
    let unmatched = unmatched_visit_file(files.path());
    let extract = extract_adding_its_cpli(files.path());
    let week = example("visits-week.csv");
    let smtp_port = free_port();
    let sink = SmtpSink::start(smtp_port, &env.data().join("maildir"));
    // 20 sessions from one address log in at once: above the default 10 a source may have waiting
    // to log in (issue 9), which would refuse some on a loaded machine.
    let server = Server::start_full(&env, "max_startups_per_source = 40", &mail_config(smtp_port), &[]).0;
    let socket = env.data().join("control.sock");
    assert!(socket.exists(), "serve makes data/control.sock");

    // Logins made while serving: through the socket, one with --password-stdin.
    let mut logins = Vec::new();
    for (n, org) in std::iter::once(PEARL).chain(OTHERS).enumerate() {
        let key = keypair(env.data(), &format!("login{n}"));
        let login = format!("rota-{n}");
        let mut c = env.cmd(&["user", "add", "--org", org, "--name", &login, "--key", &format!("{}.pub", key.display())]);
        if n == 0 {
            c.arg("--password-stdin");
        }
        let out = run_with_stdin(c, &format!("{PASSWORD}\n"));
        assert_exit("user add while serving", &out, 0);
        let said = String::from_utf8(out.stdout).unwrap();
        let password = if n == 0 { ", password" } else { "" };
        assert_eq!(said, format!("{login} for {org}: 1 key(s){password}\n"));
        logins.push((org, login, key));
    }
    let port = server.port;
    assert_eq!(paramiko(port, "rota-0", &format!("password:{PASSWORD}"), &["login"]), "ok", "the password given through the socket works");

    // The visit no CPLI fits yet, uploaded and stored Unmatched.
    let pearl_key = logins[0].2.display().to_string();
    assert_eq!(paramiko(port, "rota-0", &pearl_key, &["put", unmatched.to_str().unwrap(), "/inbox/unmatched-visit.csv"]), "ok");
    let result = wait_for_json(&env.org_dir(ORG_DIR).join("results/unmatched-visit.result.json"), 30);
    assert_eq!(result["counts"]["new"], 1, "{result}");
    assert_eq!(status_of(&env.visits(PEARL), "U1"), "Unmatched");

    // 20 uploads from 5 organisations (4 sessions each, at once) in flight while the commands run.
    let uploads: Vec<_> = logins
        .iter()
        .map(|(_, login, key)| {
            let (login, key, week) = (login.clone(), key.display().to_string(), week.display().to_string());
            std::thread::spawn(move || paramiko(port, &login, &key, &["load", "4", &week]))
        })
        .collect();

    let run = |args: &[&str]| env.run(args);
    let loaded = run(&["cplis", "load", extract.to_str().unwrap()]);
    assert_exit("cplis load while serving", &loaded, 0);
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(said.starts_with("loaded 1 CPLIs (1 new, 0 updated)"), "{said}");
    let added = run(&["org", "add", "--name", "Elder Care Ltd"]);
    assert_exit("org add while serving", &added, 0);
    assert_eq!(
        String::from_utf8_lossy(&added.stdout),
        format!("Elder Care Ltd (elder-care-ltd): inbox {}\n", env.org_dir("elder-care-ltd").join("inbox").display())
    );
    let contact = run(&["contact", "add", "--org", PEARL, "--email", "zoe@pearl.example.org", "--name", "Zoe"]);
    assert_exit("contact add while serving", &contact, 0);
    assert_eq!(String::from_utf8_lossy(&contact.stdout), "Pearl Carers Ltd: Zoe <zoe@pearl.example.org> (every) gets an email for every file\n");
    let locked = run(&["period", "lock", "--until", "2022-07-03"]);
    assert_exit("period lock while serving", &locked, 0);
    assert!(String::from_utf8_lossy(&locked.stdout).starts_with("locked every visit dated on or before"));
    let read_only: [&[&str]; 3] = [
        &["visits", "list", "--org", PEARL, "--format", "json"],
        &["report", "commissioned-vs-actuals", "--org", PEARL, "--from", "2022-08-01", "--to", "2022-08-07"],
        &["export", "commissioned", "--org", PEARL],
    ];
    for args in read_only {
        assert_exit(&format!("{args:?} while serving"), &run(args), 0);
    }
    // `import` while serving: relative path, as a user types it, resolved against the client's folder.
    std::fs::copy(&week, files.path().join("imported.csv")).unwrap();
    let imported = env.cmd(&["import", "--org", PEARL, "--format", "json", "imported.csv"]).current_dir(files.path()).output().unwrap();
    assert_exit("import while serving", &imported, 0);
    let printed: Value = serde_json::from_slice(&imported.stdout).expect("import prints its result");
    let answered = wait_for_json(&env.org_dir(ORG_DIR).join("results/imported.result.json"), 5);
    assert_eq!(printed, answered, "import prints the result the queue answered with");
    assert_eq!(printed["counts"]["read"], 21);

    for u in uploads {
        assert_eq!(u.join().unwrap()["errors"], serde_json::json!([]));
    }
    // Every upload answered once: 4 per organisation, Pearl's also the unmatched visit and the import.
    let mut expected_archive = 0;
    for (org, _, _) in &logins {
        let n = if *org == PEARL { 6 } else { 4 };
        let names = wait_for_results(&env, &slug(org), n, 60);
        assert_eq!(names.len(), n, "{org}: {names:?}");
        for name in names.iter().filter(|n| n.starts_with("load-")) {
            let r: Value = serde_json::from_str(&std::fs::read_to_string(env.org_dir(&slug(org)).join("results").join(name)).unwrap()).unwrap();
            assert_eq!((r["status"].as_str(), r["counts"]["read"].as_u64()), (Some("processed"), Some(21)), "{org} {name}: {r}");
        }
        expected_archive += n;
    }
    let archived: usize = std::fs::read_dir(env.data().join("archive")).unwrap().map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count()).sum();
    assert_eq!(archived, expected_archive, "every upload archived once");

    // The contact added while serving is mailed for the next upload.
    assert_eq!(paramiko(port, "rota-0", &pearl_key, &["put", week.to_str().unwrap(), "/inbox/next-upload.csv"]), "ok");
    wait_for_json(&env.org_dir(ORG_DIR).join("results/next-upload.result.json"), 30);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mails = sink.wait_for(1, 30);
        if mails.iter().any(|m| m["to"].as_str().unwrap().contains("zoe@pearl.example.org") && m["subject"].as_str().unwrap().starts_with("next-upload.csv:")) {
            break;
        }
        assert!(Instant::now() < deadline, "no mail to the new contact for next-upload.csv: {mails:#?}");
    }
    // The once-unmatched visit is Matched now.
    assert_eq!(status_of(&env.visits(PEARL), "U1"), "Matched");

    let while_serving: Vec<Output> = read_only.iter().map(|a| run(a)).collect();
    stop_cleanly(&server);
    assert!(!socket.exists(), "a clean stop removes the socket");
    for (args, served) in read_only.iter().zip(while_serving) {
        let stopped = run(args);
        assert_exit(&format!("{args:?} with the server stopped"), &stopped, 0);
        assert_eq!(String::from_utf8_lossy(&served.stdout), String::from_utf8_lossy(&stopped.stdout), "{args:?}: the same output either way");
        assert_eq!(String::from_utf8_lossy(&served.stderr), String::from_utf8_lossy(&stopped.stderr), "{args:?}");
    }
}

#[test]
fn a_failing_command_while_serving_prints_the_same_message_and_exit_status_as_with_the_server_stopped() {
    let env = TestEnv::with_example_cplis();
    let (_dir, bad) = crate::helpers::write_temp("bad.csv", "not,a,visits,file\n");
    let week = crate::helpers::example("visits-week.csv");
    let cases: [&[&str]; 10] = [
        &["visits", "list", "--org", "Nobody Care Ltd"],
        &["cplis", "load", "/nonexistent/cplis.csv"],
        // Relative, a folder: named as typed (since 2026-12-03 the server named them absolutely).
        &["cplis", "load", "no-such-cplis.csv"],
        &["cplis", "load", "."],
        &["validate", "--org", PEARL, "--cplis", "no-such-cplis.csv", week.to_str().unwrap()],
        &["user", "add", "--org", PEARL, "--name", "rota", "--key", "no-such-key.pub"],
        // A file that is no public key, named as typed too (since 2026-12-03).
        &["user", "add", "--org", PEARL, "--name", "rota", "--key", "Cargo.toml"],
        &["import", "--org", PEARL, bad.to_str().unwrap()],
        // A good file before one that is not there: neither is imported, and the message names the
        // file as typed (since 2026-12-03 the server stored the first and named the second absolutely).
        &["import", "--org", PEARL, week.to_str().unwrap(), "no-such-visits.csv"],
        // A folder is no file to import either.
        &["import", "--org", PEARL, week.to_str().unwrap(), env.data().to_str().unwrap()],
    ];
    let server = Server::start(&env);
    let served: Vec<Output> = cases.iter().map(|a| env.run(a)).collect();
    stop_cleanly(&server);
    for (args, served) in cases.iter().zip(served) {
        let stopped = env.run(args);
        assert_ne!(stopped.status.code(), Some(0), "{args:?} fails");
        assert_eq!(served.status.code(), stopped.status.code(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&served.stderr), String::from_utf8_lossy(&stopped.stderr), "{args:?}");
        if args[0] != "import" {
            assert_eq!(served.stdout, stopped.stdout, "{args:?}");
        }
    }
    assert_eq!(env.visits(PEARL), Vec::<serde_json::Value>::new(), "no file of a failed import is stored");
}

#[test]
fn the_control_socket_is_a_socket_only_its_owner_may_use() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    let meta = std::fs::symlink_metadata(env.data().join("control.sock")).expect("data/control.sock");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!env.data().join(".control.tmp").exists(), "the private folder it was bound in is gone");
    // A second server on the same data folder is refused, saying why (it was told "another
    // command ... is running" until 2026-12-03).
    let second = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_exit("a second serve", &second, 2);
    assert!(String::from_utf8_lossy(&second.stderr).contains("a gateway server is already running on the data folder"), "{second:?}");
}

#[test]
fn a_killed_servers_stale_socket_is_replaced_at_the_next_start_and_commands_work() {
    let env = TestEnv::with_example_cplis();
    let socket = env.data().join("control.sock");
    drop(Server::start(&env)); // SIGKILL: nothing removes the socket
    assert!(socket.exists(), "kill -9 leaves the socket behind");
    let _server = Server::start(&env);
    let out = env.run(&["org", "list"]);
    assert_exit("org list through a replaced socket", &out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Pearl Carers Ltd\t"));
}

#[test]
fn a_server_that_dies_mid_reply_makes_the_command_exit_2_saying_so() {
    let env = TestEnv::with_example_cplis();
    env.import(PEARL, &example("visits-week.csv"));
    let _server = Server::start_env(&env, "", &[("GATEWAY_FAULT", "control-mid-reply")]);
    let out = env.run(&["visits", "list", "--org", PEARL]);
    assert_exit("visits list cut short", &out, 2);
    assert!(!out.stdout.is_empty(), "the first part of the answer arrived before the server died");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gateway: the gateway server stopped before it finished answering; the command may or may not have been applied; see its log\n"
    );
}

/// Bytes waiting unread in a pipe.
fn unread(pipe: &impl std::os::fd::AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer given, which points at `n`.
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

#[test]
fn a_command_whose_reader_stops_reading_does_not_hold_up_the_files_queued_behind_it() {
    use std::io::Read;
    let env = TestEnv::with_example_cplis();
    // Enough stored visits that the list's answer overflows every buffer between the server and a
    // reader that has stopped (the socket's, the client's, the pipe's).
    let mut text = format!("{VISITS_HEADER}\n");
    for i in 0..4000 {
        let day = 1 + i % 28;
        text.push_str(&format!("S{i:05},0,{day:02}/08/2022,09:00,09:30,DHF,{day:02}/08/2022,09:02,,,09:31,,,,,,A999999,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,,\n"));
    }
    let (dir, stored) = crate::helpers::write_temp("stored.csv", &text);
    assert_eq!(crate::helpers::counts(&env.import(PEARL, &stored)).1, 4000);
    let _server = Server::start(&env);

    // A council officer's `visits list | less`, paused: nothing reads its output.
    let mut list = env.cmd(&["visits", "list", "--org", PEARL, "--format", "json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = list.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while unread(&stdout) < 65536 {
        assert!(Instant::now() < deadline, "the list never filled its pipe");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A provider's file meanwhile: answered although the list is still unread.
    std::fs::copy(unmatched_visit_file(dir.path()), crate::server::inbox(&env).join("later.csv")).unwrap();
    let result = wait_for_json(&crate::server::result_path(&env, "later.result.json"), 60);
    assert_eq!(crate::helpers::counts(&result).1, 1, "{result}");

    // The list, read now, is whole and is the store as it was when it ran: before that file.
    let mut body = Vec::new();
    stdout.read_to_end(&mut body).unwrap();
    let status = list.wait().unwrap();
    assert!(status.success(), "visits list exited {status:?}");
    let visits: Vec<Value> = serde_json::from_slice(&body).expect("the whole list, as JSON");
    assert_eq!(visits.len(), 4000);
    assert!(visits.iter().all(|v| v["visit_ref"] != "U1"));
}

#[test]
fn serve_on_a_data_folder_too_deep_for_a_socket_says_so_once_and_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d".repeat(100)).join("data");
    let out = std::process::Command::new(crate::helpers::bin()).arg("--data").arg(&data).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("cannot listen on the control socket {}", data.join("control.sock").display())), "{err}");
    assert!(err.contains("give the gateway a data folder with a shorter path") && !err.contains("SUN_LEN"), "{err}");
}
