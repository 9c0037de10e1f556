//! A fresh data folder per test and small wrappers around the real `gateway` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The organisation the guide's examples belong to (`examples/cplis.csv` creates it).
pub const PEARL: &str = "Pearl Carers Ltd";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gateway")
}

/// Repository root, for `examples/` and `tests/fixtures/`.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

pub fn example(rel: &str) -> PathBuf {
    root().join("examples").join(rel)
}

/// One test's own data folder; removed when dropped.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// A data folder with the examples' CPLIs (Pearl Carers Ltd and its clients) loaded.
    pub fn with_example_cplis() -> Self {
        let env = Self::new();
        env.ok(&["cplis", "load", example("cplis.csv").to_str().unwrap()]);
        env
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// `gateway --data DIR ARGS...`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--data").arg(self.data()).args(args);
        c.env("RUST_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run gateway")
    }

    /// Runs and insists on exit status 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gateway {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `gateway import --org ORG --format json FILE`: the section-4 result of one file.
    /// Exit code 0 (clean) and 1 (errors in the file) are both results; anything else fails the test.
    pub fn import(&self, org: &str, file: &Path) -> Value {
        self.json_result(&["import", "--org", org, "--format", "json", file.to_str().unwrap()])
    }

    /// `gateway validate [--org ORG] --format json FILE`.
    pub fn validate(&self, extra: &[&str], file: &Path) -> Value {
        let mut args = vec!["validate", "--format", "json"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        self.json_result(&args)
    }

    fn json_result(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(1)),
            "gateway {args:?} exited {code:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "gateway {args:?} printed no JSON ({e})\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// `gateway visits list --org ORG --format json`.
    pub fn visits(&self, org: &str) -> Vec<Value> {
        let out = self.ok(&["visits", "list", "--org", org, "--format", "json"]);
        serde_json::from_str::<Value>(&out).expect("json").as_array().expect("array").clone()
    }

    /// The organisation's folder under `--data`, e.g. `orgs/pearl-carers-ltd`.
    pub fn org_dir(&self, slug: &str) -> PathBuf {
        self.data().join("orgs").join(slug)
    }
}

/// `counts` of a result as (read, new, updated, rejected, data_quality_issues).
pub fn counts(result: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &result["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("counts.{k} missing in {result}"));
    (n("read"), n("new"), n("updated"), n("rejected"), n("data_quality_issues"))
}

/// The codes of every issue in a result, in order.
pub fn codes(result: &Value) -> Vec<String> {
    result["issues"]
        .as_array()
        .expect("issues array")
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_string())
        .collect()
}

/// Issues with this code.
pub fn issues_with<'a>(result: &'a Value, code: &str) -> Vec<&'a Value> {
    result["issues"].as_array().unwrap().iter().filter(|i| i["code"] == code).collect()
}

/// Writes `text` to a file named `name` in a fresh temp folder kept alive by the returned guard.
pub fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// The 25 visits headings in the guide's order.
pub const VISITS_HEADER: &str = "VisitRef,Deleted,PlannedVisitDate,PlannedEntryTime,PlannedExitTime,VisitType,DeliveredVisitDate,DeliveredEntryTime,DeliveredEntryTime IsOverridden,DeliveredEntryTime OverrideReason,DeliveredExitTime,DeliveredExitTime IsOverridden,DeliveredExitTime OverrideReason,VarianceReason,Comments,ClientRef,SSRef,NHSNumber,ServiceLevelRef,ServiceLevel,CarerRef,ServiceRef,ServiceName,OrganisationRef,OrganisationName";

/// A new ed25519 key pair `NAME_ed25519` (and `.pub`) in `dir`, without a passphrase.
pub fn keypair(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(format!("{name}_ed25519"));
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    key
}

/// OpenSSH `sftp -b -` as `login` on 127.0.0.1:`port`, the batch on standard input; its output,
/// success or not.
pub fn sftp_batch(port: u16, login: &str, key: &Path, batch: &str) -> Output {
    let mut child = Command::new("sftp")
        .args(["-P", &port.to_string(), "-i", key.to_str().unwrap(), "-b", "-"])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "LogLevel=ERROR", "-o", "BatchMode=yes"])
        .arg(format!("{login}@127.0.0.1"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sftp");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), batch.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
