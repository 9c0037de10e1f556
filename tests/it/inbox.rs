//! The inbox watcher of `gateway serve`: files copied in are taken once complete, and only then.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{bin, counts, example, TestEnv};

const ORG_DIR: &str = "pearl-carers-ltd";

/// A running `gateway serve`, stopped (SIGKILL) and reaped when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn start(env: &TestEnv) -> Server {
        Self::start_with(env, "")
    }

    /// With more settings appended to the test configuration (e.g. a `[mail]` section).
    pub fn start_with(env: &TestEnv, extra_config: &str) -> Server {
        let config = env.data().join("gateway.toml");
        std::fs::write(&config, format!("[watch]\nsettle_ms = 100\n{extra_config}")).unwrap();
        let child = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(env.data())
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gateway serve");
        let mut server = Server { child };
        server.wait_ready();
        server
    }

    /// Waits for the line saying the inboxes are watched.
    fn wait_ready(&mut self) {
        use std::io::{BufRead, BufReader};
        let stdout = self.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read serve's first line");
        assert!(line.contains("watching the inboxes"), "serve said: {line:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn inbox(env: &TestEnv) -> PathBuf {
    env.org_dir(ORG_DIR).join("inbox")
}

pub fn result_path(env: &TestEnv, name: &str) -> PathBuf {
    env.org_dir(ORG_DIR).join("results").join(name)
}

/// Polls until `path` exists and parses as JSON, or fails after `secs`.
pub fn wait_for_json(path: &Path, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str(&text) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no {} after {secs} s", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn results(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.org_dir(ORG_DIR).join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".result.json"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_copied_into_an_inbox_is_processed_and_answered() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("visits-week.csv")).unwrap();
    let result = wait_for_json(&result_path(&env, "visits-week.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
    assert_eq!(result["status"], "processed");
    assert!(result_path(&env, "visits-week.result.csv").exists());
    assert_eq!(std::fs::read_dir(inbox(&env)).unwrap().count(), 0, "the inbox still holds the file");
    let archived: Vec<_> = std::fs::read_dir(env.data().join("archive").join(ORG_DIR)).unwrap().collect();
    assert_eq!(archived.len(), 1);
}

#[test]
fn a_file_written_slowly_in_chunks_is_processed_once_after_it_is_complete() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    let content = std::fs::read(example("visits-week.csv")).unwrap();
    let mut f = std::fs::File::create(inbox(&env).join("slow.csv")).unwrap();
    for chunk in content.chunks(content.len() / 5 + 1) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    drop(f);
    let result = wait_for_json(&result_path(&env, "slow.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0), "processed before it was complete: {result}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(results(&env), ["slow.result.json"], "processed more than once");
}

#[test]
fn a_temporary_name_waits_for_the_rename_to_csv() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    let part = inbox(&env).join("x.csv.filepart");
    std::fs::copy(example("visits-week.csv"), &part).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(results(&env).is_empty(), "a .filepart was processed");
    assert!(part.exists());
    std::fs::rename(&part, inbox(&env).join("x.csv")).unwrap();
    let result = wait_for_json(&result_path(&env, "x.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
}

#[test]
fn files_dropped_while_the_gateway_was_down_are_processed_when_it_starts() {
    let env = TestEnv::with_example_cplis();
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("early.csv")).unwrap();
    let _server = Server::start(&env);
    let result = wait_for_json(&result_path(&env, "early.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
}

#[test]
fn a_file_left_in_the_spool_by_a_crash_is_finished_at_start_and_applied_once() {
    let env = TestEnv::with_example_cplis();
    let spool = env.data().join("spool").join(ORG_DIR);
    std::fs::create_dir_all(&spool).unwrap();
    let spooled = spool.join("01890a5d-ac96-774b-bcce-b302099a8057__visits-week.csv");
    std::fs::copy(example("visits-week.csv"), &spooled).unwrap();
    {
        let _server = Server::start(&env);
        let result = wait_for_json(&result_path(&env, "visits-week.result.json"), 30);
        assert_eq!(counts(&result), (21, 21, 0, 0, 0));
    }
    // The same claimed file again (a crash after the commit, before the archive): not applied twice,
    // and not answered twice.
    std::fs::copy(example("visits-week.csv"), &spooled).unwrap();
    {
        let _server = Server::start(&env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while spooled.exists() {
            assert!(Instant::now() < deadline, "the spooled file was not finished");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(results(&env), ["visits-week.result.json"]);
    assert_eq!(env.visits(crate::helpers::PEARL).len(), 21);
}
