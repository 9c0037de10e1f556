//! Soak (issue 9): the real `gateway serve` on a temporary data folder, generated visits files
//! dropped into the inbox, the server killed with SIGKILL at random instants and started again, then
//! a check that every file was answered exactly once (one NAME.result.json and .csv, no NAME.2.*)
//! and every accepted row stored once (`visits list --format json` against the generated rows and
//! the results' counts). Run on demand, not in CI:
//!
//! cargo run --release --example soak -- --imports 100 [--seed N] [--max-rows 3000] [--keep]
//!
//! Exits 1 when a check fails, after printing every failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const ORG: &str = "Pearl Carers Ltd";
const SLUG: &str = "pearl-carers-ltd";
const HEADER: &str = "VisitRef,Deleted,PlannedVisitDate,PlannedEntryTime,PlannedExitTime,VisitType,DeliveredVisitDate,DeliveredEntryTime,DeliveredEntryTime IsOverridden,DeliveredEntryTime OverrideReason,DeliveredExitTime,DeliveredExitTime IsOverridden,DeliveredExitTime OverrideReason,VarianceReason,Comments,ClientRef,SSRef,NHSNumber,ServiceLevelRef,ServiceLevel,CarerRef,ServiceRef,ServiceName,OrganisationRef,OrganisationName";

/// xorshift64*: reproducible from `--seed` without depending on a rand API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What a generated file must produce.
struct Expected {
    rows: u64,
    rejected: u64,
    accepted_refs: Vec<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let imports: usize = arg("--imports").map(|v| v.parse().expect("--imports N")).unwrap_or(100);
    let max_rows: u64 = arg("--max-rows").map(|v| v.parse().expect("--max-rows N")).unwrap_or(3000);
    let seed: u64 = arg("--seed").map(|v| v.parse().expect("--seed N")).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let keep = args.iter().any(|a| a == "--keep");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let gateway = build_gateway(&root);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let data = tmp.path().join("data");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    run(&gateway, &data, &["cplis", "load", root.join("examples/cplis.csv").to_str().unwrap()]);
    let config = tmp.path().join("gateway.toml");
    std::fs::write(&config, format!("[watch]\nsettle_ms = 50\n[sftp]\nhost_key = \"{}\"\n", data.join("host_key").display())).unwrap();

    println!("soak: {imports} imports, seed {seed}, up to {max_rows} rows a file, data in {}", data.display());
    let mut rng = Rng(seed);
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    for i in 0..imports {
        let name = format!("soak-{i:04}.csv");
        let e = generate(&files.join(&name), i, &mut rng, max_rows);
        expected.insert(name, e);
    }
    let names: Vec<String> = expected.keys().cloned().collect();
    let inbox = data.join("orgs").join(SLUG).join("inbox");
    let results = data.join("orgs").join(SLUG).join("results");

    let started = Instant::now();
    let (mut kills, mut dropped) = (0usize, 0usize);
    while dropped < names.len() {
        let mut server = Serve::start(&gateway, &data, &config);
        let batch = rng.between(1, 4) as usize;
        for name in names.iter().skip(dropped).take(batch) {
            drop_into(&files.join(name), &inbox, name);
            dropped += 1;
        }
        // A random instant: before the claim, while judging or storing, while answering, or after.
        std::thread::sleep(Duration::from_millis(rng.between(0, 1200)));
        server.kill();
        kills += 1;
    }
    // A last start that is not killed: it finishes whatever the kills left in the spool or inbox.
    let server = Serve::start(&gateway, &data, &config);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !names.iter().all(|n| results.join(format!("{}.result.json", stem(n))).exists()) || !spool_empty(&data) {
        if Instant::now() > deadline {
            println!("soak: not every file answered after 600 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let took = started.elapsed();

    let failures = check(&gateway, &data, &results, &expected);
    let rows: u64 = expected.values().map(|e| e.rows).sum();
    let rejected: u64 = expected.values().map(|e| e.rejected).sum();
    println!(
        "soak: {imports} files, {rows} rows ({rejected} rejected by design), {kills} SIGKILLs, {:.1} s; {} failure(s)",
        took.as_secs_f64(),
        failures.len()
    );
    for f in &failures {
        println!("  FAIL {f}");
    }
    if keep {
        println!("soak: kept {}", tmp.keep().display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Makes sure the `gateway` binary of the example's own profile is built from this tree (`cargo run
/// --example` builds only the library and the example).
fn build_gateway(root: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/examples/soak -> target/<profile>/gateway
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--bin", "gateway", "--manifest-path"]).arg(root.join("Cargo.toml"));
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --bin gateway failed");
    let bin = profile_dir.join("gateway");
    assert!(bin.exists(), "no {}", bin.display());
    bin
}

fn run(gateway: &Path, data: &Path, args: &[&str]) -> String {
    let out = Command::new(gateway).arg("--data").arg(data).args(args).env("RUST_LOG", "error").output().unwrap();
    assert!(out.status.success(), "gateway {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A visits file of 1 to `max_rows` rows with unique VisitRefs (file `i`), a tenth of files with
/// about a fifth of their rows rejected (an impossible date).
fn generate(path: &Path, i: usize, rng: &mut Rng, max_rows: u64) -> Expected {
    // Sizes spread over orders of magnitude: many small files, some large.
    let rows = match rng.between(0, 9) {
        0..=5 => rng.between(1, 50),
        6..=8 => rng.between(51, max_rows.max(52) / 4),
        _ => rng.between(max_rows / 2, max_rows.max(1)),
    };
    let with_rejects = rng.between(0, 9) < 3;
    let mut w = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "{HEADER}").unwrap();
    let mut e = Expected { rows, rejected: 0, accepted_refs: Vec::new() };
    for r in 0..rows {
        let visit_ref = format!("S{i:04}-{r:05}");
        // Visits of Mayor Quimby (examples/cplis.csv), four a day from 2 January 2023, one day per
        // file-and-row slot so that no two rows of the whole soak share a slot.
        let slot = r as usize;
        let day = chrono_day(i * 1000 + slot / 4);
        let (entry, exit) = [("08:00", "09:00"), ("12:00", "13:00"), ("17:00", "17:30"), ("21:00", "21:30")][slot % 4];
        let bad = with_rejects && rng.between(0, 4) == 0;
        let planned = if bad { "31/02/2022".to_string() } else { day.clone() };
        writeln!(w, "{visit_ref},0,{planned},{entry},{exit},DHF,{day},{entry},,,{exit},,,,,,A371849,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,,").unwrap();
        if bad {
            e.rejected += 1;
        } else {
            e.accepted_refs.push(visit_ref);
        }
    }
    w.flush().unwrap();
    e
}

/// `n` days after 02/01/2023, as DD/MM/YYYY.
fn chrono_day(n: usize) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap() + chrono::Duration::days((n % 3000) as i64);
    d.format("%d/%m/%Y").to_string()
}

fn stem(name: &str) -> &str {
    name.strip_suffix(".csv").unwrap_or(name)
}

/// Copied in under a temporary name and renamed, as docs/operations.md asks.
fn drop_into(from: &Path, inbox: &Path, name: &str) {
    let part = inbox.join(format!("{name}.part"));
    std::fs::copy(from, &part).unwrap();
    std::fs::rename(&part, inbox.join(name)).unwrap();
}

fn spool_empty(data: &Path) -> bool {
    std::fs::read_dir(data.join("spool").join(SLUG)).map(|mut d| d.next().is_none()).unwrap_or(true)
}

/// A running `gateway serve`.
struct Serve(Child);

impl Serve {
    fn start(gateway: &Path, data: &Path, config: &Path) -> Serve {
        let mut child = Command::new(gateway)
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start gateway serve");
        let out = child.stdout.take().unwrap();
        for line in BufReader::new(out).lines() {
            if line.unwrap().contains("watching the inboxes") {
                break;
            }
        }
        Serve(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, and waits for it to finish the file it is on.
    fn stop(mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn check(gateway: &Path, data: &Path, results: &Path, expected: &BTreeMap<String, Expected>) -> Vec<String> {
    let mut failures = Vec::new();
    let listed: BTreeSet<String> = std::fs::read_dir(results)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let mut import_ids = BTreeSet::new();
    let (mut new, mut updated) = (0u64, 0u64);
    for (name, e) in expected {
        let stem = stem(name);
        for ext in ["json", "csv"] {
            if !listed.contains(&format!("{stem}.result.{ext}")) {
                failures.push(format!("{name}: no {stem}.result.{ext}"));
            }
        }
        let again: Vec<&String> = listed.iter().filter(|l| l.starts_with(&format!("{stem}.")) && !l.starts_with(&format!("{stem}.result."))).collect();
        if !again.is_empty() {
            failures.push(format!("{name}: answered more than once: {again:?}"));
        }
        let Ok(text) = std::fs::read_to_string(results.join(format!("{stem}.result.json"))) else { continue };
        let r: serde_json::Value = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(err) => {
                failures.push(format!("{name}: result JSON unreadable: {err}"));
                continue;
            }
        };
        let c = &r["counts"];
        let (read, rej) = (c["read"].as_u64().unwrap_or(0), c["rejected"].as_u64().unwrap_or(0));
        if (read, rej) != (e.rows, e.rejected) {
            failures.push(format!("{name}: read {read} rejected {rej}, expected {} and {}", e.rows, e.rejected));
        }
        new += c["new"].as_u64().unwrap_or(0);
        updated += c["updated"].as_u64().unwrap_or(0);
        import_ids.insert(r["import_id"].as_str().unwrap_or_default().to_string());
    }
    let visits: serde_json::Value = serde_json::from_str(&run(gateway, data, &["visits", "list", "--org", ORG, "--format", "json"])).unwrap();
    let visits = visits.as_array().unwrap();
    let stored: BTreeSet<&str> = visits.iter().map(|v| v["visit_ref"].as_str().unwrap()).collect();
    let wanted: BTreeSet<&str> = expected.values().flat_map(|e| e.accepted_refs.iter().map(String::as_str)).collect();
    if stored.len() != visits.len() {
        failures.push(format!("{} stored visits but {} distinct VisitRefs", visits.len(), stored.len()));
    }
    if stored != wanted {
        let missing = wanted.difference(&stored).count();
        let extra = stored.difference(&wanted).count();
        failures.push(format!("stored visits differ from the accepted rows: {missing} missing, {extra} not expected"));
    }
    if new != wanted.len() as u64 || updated != 0 {
        failures.push(format!("the results count {new} new and {updated} updated; {} rows were accepted, each once", wanted.len()));
    }
    let foreign = visits.iter().filter(|v| !import_ids.contains(v["import_id"].as_str().unwrap_or_default())).count();
    if foreign > 0 {
        failures.push(format!("{foreign} stored visits carry an import id that no result names (a file applied under two ids)"));
    }
    if !spool_empty(data) {
        failures.push("files are left in the spool".into());
    }
    failures
}
