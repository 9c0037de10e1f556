//! Bursts (issue 10): the real `gateway serve` (release build), 100 paramiko sessions each
//! uploading a 1,000-row visits file at the same instant; for each file, the time from its upload
//! closed (the result's `received_at`, the spooled file's last write) to its result JSON readable in
//! `results/`; p50/p95/p99 printed beside a single upload's (median of 5, alone on the server).
//!
//! cargo build --release && cargo run --release --example bench_burst -- [--sessions 100] [--rows 1000] [--other-cplis 0] [--hospital] [--dir target/bench_burst] [--gateway PATH] [--keep]
//!
//! Needs `ssh-keygen` and Python's paramiko. The data folder is on the disk `--dir` is on (default
//! under target/, a real disk, so fsyncs cost what they cost in production; /dev/shm hides them).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const ORG: &str = "Burst Care Ltd";
const SERVICE: &str = "Burst Care - Zone 1 - Oxford";
const SINGLES: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string());
    let sessions: usize = opt("--sessions", "100").parse().expect("--sessions N");
    // CPLIs of other organisations in the store: a council's extract holds every provider's.
    let other_cplis: usize = opt("--other-cplis", "0").parse().expect("--other-cplis N");
    // Each file ends with an H visit: the hospital rule then reads the organisation's stored H visits.
    let hospital = args.iter().any(|a| a == "--hospital");
    // Rows a file (four a day: two clients, two calls): fewer show the fixed cost of a file.
    let rows: usize = opt("--rows", "1000").parse().expect("--rows N");
    let dir = std::path::absolute(PathBuf::from(opt("--dir", "target/bench_burst"))).unwrap();
    // The release `gateway` beside this example, or another (`--gateway PATH`, e.g. main's, to compare).
    let beside = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("gateway");
    let gateway = PathBuf::from(opt("--gateway", beside.to_str().unwrap()));
    assert!(gateway.exists(), "no {}: run `cargo build --release` first", gateway.display());
    let _ = std::fs::remove_dir_all(&dir);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let data = dir.join("data");

    let key = dir.join("client_ed25519");
    run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
    let clients = sessions + SINGLES;
    write_cplis(&dir.join("cplis.csv"), clients, other_cplis);
    for i in 0..sessions {
        write_visits(&files.join(format!("burst-{i:03}.csv")), i, rows, hospital);
    }
    for i in 0..SINGLES {
        write_visits(&files.join(format!("single-{i:03}.csv")), sessions + i, rows, hospital);
    }
    let gw = |args: &[&str]| {
        let mut c = Command::new(&gateway);
        c.arg("--data").arg(&data).args(args).env("RUST_LOG", "warn");
        c
    };
    run_ok(gw(&["cplis", "load", dir.join("cplis.csv").to_str().unwrap()]).stdout(Stdio::null()));
    run_ok(gw(&["user", "add", "--org", ORG, "--name", "burst", "--key", &format!("{}.pub", key.display())]).stdout(Stdio::null()));
    let config = dir.join("gateway.toml");
    // A session per upload: above the default 50 per login.
    std::fs::write(&config, format!("[sftp]\nhost_key = \"{}\"\nmax_sessions_per_login = {}\n", dir.join("host_key").display(), sessions + 10)).unwrap();
    let (mut server, port) = serve(gw(&["--config", config.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"]));
    let results = data.join("orgs").join("burst-care-ltd").join("results");

    let mut single = Vec::new();
    for i in 0..SINGLES {
        upload(port, &key, &files.join("single-%03d.csv"), &format!("single{i}"), 1);
        single.extend(wait_results(&results, &[format!("single{i}-000")], rows).iter().map(|t| t.latency));
    }
    let names: Vec<String> = (0..sessions).map(|i| format!("burst-{i:03}")).collect();
    let started = Instant::now();
    let cpu_before = cpu_seconds(server.id());
    upload(port, &key, &files.join("burst-%03d.csv"), "burst", sessions);
    let timings = wait_results(&results, &names, rows);
    let mut burst: Vec<Duration> = timings.iter().map(|t| t.latency).collect();
    let first_close = timings.iter().map(|t| t.closed).min().unwrap();
    let last_close = timings.iter().map(|t| t.closed).max().unwrap();
    let last_answer = timings.iter().map(|t| t.answered).max().unwrap();
    let wall = started.elapsed();
    let cpu = cpu_seconds(server.id()) - cpu_before;
    let _ = server.kill();
    let _ = server.wait();

    single.sort();
    burst.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("upload closed -> result readable, {rows}-row visits files, paramiko, loopback, data in {}", data.display());
    println!("single upload (median of {SINGLES}): {:.0} ms", ms(pct(&single, 0.5)));
    println!(
        "burst of {sessions} at once: p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms; every file answered; {:.1} s from the burst's start to its last result",
        ms(pct(&burst, 0.50)),
        ms(pct(&burst, 0.95)),
        ms(pct(&burst, 0.99)),
        ms(*burst.last().unwrap()),
        wall.as_secs_f64()
    );
    // Whether the clients or the server set the pace: how spread the closes were, and how long the
    // server took after the last one.
    let secs = |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default().as_secs_f64();
    println!(
        "uploads closed over {:.2} s; first close -> last result {:.2} s; last close -> last result {:.2} s",
        secs(first_close, last_close),
        secs(first_close, last_answer),
        secs(last_close, last_answer)
    );
    // Wall times swing with the machine's load; the server's CPU time much less.
    println!("server CPU time during the burst (logins, uploads, processing): {cpu:.2} s, {:.1} ms a file", cpu * 1000.0 / sessions as f64);
    // `--keep` leaves the data folder for a look with other tools (strace, perf) afterwards.
    if !args.iter().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// User + system CPU seconds a process has used (`/proc/PID/stat`, in clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn run_ok(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts `gateway serve` and waits until it watches its inboxes; returns it and its SFTP port.
fn serve(mut c: Command) -> (Child, u16) {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start gateway serve");
    let mut port = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("SFTP on 127.0.0.1:").nth(1) {
            port = rest.split(',').next().and_then(|p| p.parse().ok());
        }
        if line.contains("watching the inboxes") {
            break;
        }
    }
    (child, port.expect("serve printed its port"))
}

fn upload(port: u16, key: &Path, pattern: &Path, prefix: &str, count: usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/burst_upload.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&port.to_string(), "burst", key.to_str().unwrap(), pattern.to_str().unwrap(), prefix, &count.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "burst_upload.py: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("burst_upload.py prints JSON");
    assert_eq!(report["uploaded"], count, "{report}");
}

/// Polls `results/` until every `NAME.result.json` parses; for each, the time from its
/// `received_at` to the moment it was first read whole, and the two instants.
fn wait_results(results: &Path, names: &[String], rows: usize) -> Vec<Timing> {
    let mut seen: HashMap<&str, Timing> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.len() < names.len() {
        assert!(Instant::now() < deadline, "only {} of {} results after 300 s", seen.len(), names.len());
        for name in names {
            if seen.contains_key(name.as_str()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(results.join(format!("{name}.result.json"))) else { continue };
            let now = SystemTime::now();
            let Ok(result) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            assert_eq!(result["counts"]["read"], rows, "{result}");
            let received: chrono::DateTime<chrono::Utc> = result["received_at"].as_str().unwrap().parse().unwrap();
            let closed = SystemTime::from(received);
            seen.insert(name, Timing { latency: now.duration_since(closed).unwrap_or_default(), closed, answered: now });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seen.into_values().collect()
}

/// One file of a burst: upload closed -> result readable, and when each happened.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timing {
    latency: Duration,
    closed: SystemTime,
    answered: SystemTime,
}

/// Two CPLIs for each of `clients` of the organisation, and `others` of other organisations (the
/// rest of the council's extract, 50 providers).
fn write_cplis(path: &Path, clients: usize, others: usize) {
    let mut c = String::from("CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n");
    for i in 0..clients * 2 {
        c.push_str(&format!("{},B{i:06},Client {i},,,,{ORG},,{SERVICE},LWAH,,Home Support,02/01/2023,,7,Hr,Weekly,23.77,Y\n", 800000 + i));
    }
    for i in 0..others {
        let org = format!("Other Care {} Ltd", i % 50);
        c.push_str(&format!("{},O{i:06},Client O{i},,,,{org},,{org} - Zone 1,LWAH,,Home Support,02/01/2023,,7,Hr,Weekly,23.77,Y\n", 100000 + i));
    }
    std::fs::write(path, c).unwrap();
}

/// File `n`: two clients of its own, two calls a day for 250 days; 1,000 new rows, all matched.
/// With `hospital`, its last row is an H visit (the client in hospital), so the hospital rule looks
/// at the organisation's stored H visits.
fn write_visits(path: &Path, n: usize, rows: usize, hospital: bool) {
    let mut v = gateway::ingest::visits::HEADINGS.join(",");
    v.push('\n');
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
    let mut row = 0;
    for day in 0..rows.div_ceil(4) as i64 {
        let date = (start + chrono::Duration::days(day)).format("%d/%m/%Y").to_string();
        for client in [2 * n, 2 * n + 1] {
            for (entry, exit) in [("08:10", "08:40"), ("18:00", "18:30")] {
                row += 1;
                if hospital && row == rows {
                    v.push_str(&format!("F{n:03}-{row:04},0,{date},{entry},{exit},H,,,,,,,,,,,B{client:06},,,Home Support,,,{SERVICE},,{ORG}\n"));
                    continue;
                }
                v.push_str(&format!(
                    "F{n:03}-{row:04},0,{date},{entry},{exit},DHF,{date},{entry},,,{exit},,,,,,B{client:06},,,Home Support,,,{SERVICE},,{ORG}\n"
                ));
            }
        }
    }
    std::fs::write(path, v).unwrap();
}
