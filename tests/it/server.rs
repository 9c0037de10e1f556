//! A running `gateway serve` for a test: its own data folder, host key and a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{bin, TestEnv};

pub const ORG_DIR: &str = "pearl-carers-ltd";

/// A running `gateway serve`, stopped (SIGKILL) and reaped when dropped.
pub struct Server {
    child: Child,
    /// The SFTP port it listens on (127.0.0.1).
    pub port: u16,
}

impl Server {
    pub fn start(env: &TestEnv) -> Server {
        Server::start_with(env, "")
    }

    /// Starts with the test defaults (a short settle time, fast login refusals, a host key in the
    /// data folder) and `sftp` settings of its own (`key = value` lines).
    pub fn start_with(env: &TestEnv, sftp: &str) -> Server {
        Server::start_full(env, sftp, "", &[]).0
    }

    /// With other configuration sections (e.g. `[mail]`) besides the test defaults.
    pub fn with_config(env: &TestEnv, sections: &str) -> Server {
        Server::start_full(env, "", sections, &[]).0
    }

    /// As `start_with`, plus other configuration sections and `serve` arguments; also returns what
    /// `serve` printed before it was ready.
    pub fn start_full(env: &TestEnv, sftp: &str, sections: &str, args: &[&str]) -> (Server, Vec<String>) {
        Server::launch(env, sftp, sections, args, false, &[], None)
    }

    /// With configuration sections and environment variables (e.g. `GATEWAY_FAULT`) of its own.
    pub fn start_env(env: &TestEnv, sections: &str, vars: &[(&str, &str)]) -> Server {
        Server::launch(env, "", sections, &[], false, vars, None).0
    }

    /// With its log, filtered by `filter` (`RUST_LOG` syntax), written to [`Server::log_path`].
    pub fn start_logging(env: &TestEnv, filter: &str) -> Server {
        Server::launch(env, "", "", &[], false, &[], Some(filter)).0
    }

    /// Where `start_logging` writes the server's log.
    pub fn log_path(env: &TestEnv) -> PathBuf {
        env.data().join("serve.log")
    }

    /// As a newcomer runs it: from inside the data folder's parent with a relative `--data .`.
    pub fn start_relative(env: &TestEnv) -> Server {
        Server::launch(env, "", "", &[], true, &[], None).0
    }

    fn launch(
        env: &TestEnv,
        sftp: &str,
        sections: &str,
        args: &[&str],
        relative: bool,
        vars: &[(&str, &str)],
        log_to_file: Option<&str>,
    ) -> (Server, Vec<String>) {
        let config = env.data().join("gateway.toml");
        let key = env.data().join("ssh_host_ed25519_key");
        let delay = if sftp.contains("failed_login_delay_ms") { "" } else { "failed_login_delay_ms = 100" };
        let text = format!("[watch]\nsettle_ms = 100\n[sftp]\nhost_key = \"{}\"\n{delay}\n{sftp}\n{sections}", key.display());
        std::fs::write(&config, text).unwrap();
        let log = log_to_file.map(String::from).or_else(|| std::env::var("GATEWAY_TEST_LOG").ok());
        let mut command = Command::new(bin());
        if relative {
            command.current_dir(env.data()).args(["--data", "."]);
        } else {
            command.arg("--data").arg(env.data());
        }
        let mut child = command
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", log.clone().unwrap_or_else(|| "warn".into()))
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(match (log_to_file, &log) {
                (Some(_), _) => Stdio::from(std::fs::File::create(Server::log_path(env)).expect("create the server's log")),
                (None, Some(_)) => Stdio::inherit(),
                (None, None) => Stdio::null(),
            })
            .spawn()
            .expect("start gateway serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut port = None;
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read serve's output");
            if let Some(rest) = line.split("SFTP on 127.0.0.1:").nth(1) {
                port = rest.split(',').next().and_then(|p| p.parse().ok());
            }
            let ready = line.contains("watching the inboxes");
            lines.push(line);
            if ready {
                break;
            }
        }
        (Server { child, port: port.unwrap_or_else(|| panic!("serve printed no SFTP address: {lines:?}")) }, lines)
    }
}

impl Server {
    /// The `gateway serve` process, e.g. to lower its descriptor limit with `prlimit --pid`.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// The names of the result JSON files an organisation has, sorted.
pub fn results(env: &TestEnv, slug: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.org_dir(slug).join("results"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".result.json")).collect())
        .unwrap_or_default();
    names.sort();
    names
}
