//! Worst-case memory benchmark (issue 9): files within the limits that are all issues, each judged by
//! `validate` and applied by `import` in a process of its own, reporting the peak memory (VmHWM) of
//! each, how much the store grew, and the peak of a process that merely opens the store afterwards.
//!
//! cargo run --release --example bench_worst [-- --case bad-dates|rejected|actuals] [--dir /tmp/bench_worst]
//!
//! Cases: `bad-dates` 1,000,000 visit rows, each with a bad PlannedVisitDate; `rejected` 200,000
//! visit rows each rejected (an unknown visit type and a bad time); `actuals` a 100,000-row actuals
//! file, every row accepted and matched.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gateway::config::Config;
use gateway::pipeline::Gateway;

// The allocator the gateway binary runs with, so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORG: &str = "Bench Care Ltd";
const SERVICE: &str = "Bench Care - Zone 1 - Oxford";
const ECH_SERVICE: &str = "Bench Care - Extra Care Oxford";
const CASES: [&str; 3] = ["bad-dates", "rejected", "actuals"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| std::env::temp_dir().join("bench_worst").display().to_string()));
    if let (Some(phase), Some(case)) = (arg("--phase"), arg("--case")) {
        return run_phase(&phase, &case, &dir);
    }
    let cases: Vec<String> = match arg("--case") {
        Some(c) => vec![c],
        None => CASES.iter().map(|c| c.to_string()).collect(),
    };
    println!("{:<10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}", "case", "rows", "file MB", "phase", "seconds", "peak MB", "store +MB", "issues");
    for case in &cases {
        let case_dir = dir.join(case);
        std::fs::create_dir_all(&case_dir).unwrap();
        let (rows, bytes) = generate(case, &case_dir);
        for phase in ["validate", "import", "reopen"] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--phase", phase, "--case", case, "--dir", &dir.display().to_string()])
                .output()
                .expect("run phase");
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                eprintln!("{case} {phase} failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
                std::process::exit(1);
            }
            // The phase prints "secs peak_kb store_growth_bytes issues".
            let f: Vec<f64> = text.split_whitespace().map(|v| v.parse().unwrap()).collect();
            println!(
                "{case:<10} {rows:>9} {:>10.0} {phase:>10} {:>10.2} {:>10.1} {:>12.1} {:>12}",
                bytes as f64 / 1e6,
                f[0],
                f[1] / 1024.0,
                f[2] / 1e6,
                f[3]
            );
        }
    }
}

fn peak_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn config() -> Config {
    let mut config = Config::default();
    config.rules.today = chrono::NaiveDate::from_ymd_opt(2024, 6, 1);
    config
}

fn run_phase(phase: &str, case: &str, dir: &Path) {
    let case_dir = dir.join(case);
    let file = case_dir.join(format!("{case}.csv"));
    let cplis = case_dir.join("cplis.csv");
    let data = case_dir.join("data");
    let (secs, growth, issues) = match phase {
        "validate" => {
            let extract = gateway::ingest::cplis::read_extract(&cplis, &[]).unwrap();
            let org = gateway::domain::Organisation::new(ORG, None);
            let t = Instant::now();
            let r = Gateway::validate(&config(), None, Some(&org), Some(extract), &file).unwrap();
            // As `gateway validate --format json > /dev/null` prints it.
            r.write_json(&mut std::io::sink(), "").unwrap();
            (t.elapsed().as_secs_f64(), 0, r.total_issues())
        }
        "import" => {
            let _ = std::fs::remove_dir_all(&data);
            let gw = Gateway::open(config(), &data).unwrap();
            gw.load_cplis(&cplis).unwrap();
            gw.store.flush().unwrap();
            let before = dir_bytes(&data.join("db"));
            let org = gw.org(ORG).unwrap();
            let t = Instant::now();
            let r = gw.import_file(&org, &file).unwrap();
            let secs = t.elapsed().as_secs_f64();
            gw.store.flush().unwrap();
            drop(gw);
            (secs, dir_bytes(&data.join("db")).saturating_sub(before), r.total_issues())
        }
        // What every later process pays for the store the import left (`org list`, an idle `serve`).
        "reopen" => {
            let t = Instant::now();
            let gw = Gateway::open(config(), &data).unwrap();
            let orgs = gw.store.orgs().unwrap();
            let org = gw.org(ORG).unwrap();
            let waiting = gw.store.waiting().unwrap().len();
            assert!(!orgs.is_empty() && waiting == 0 && !org.slug.as_str().is_empty());
            (t.elapsed().as_secs_f64(), 0, 0)
        }
        other => panic!("unknown phase {other}"),
    };
    println!("{secs} {} {growth} {issues}", peak_kb());
}

/// The case's file and a CPLI extract for its clients; returns (rows, bytes).
fn generate(case: &str, dir: &Path) -> (usize, u64) {
    let path = dir.join(format!("{case}.csv"));
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let mut c = BufWriter::new(std::fs::File::create(dir.join("cplis.csv")).unwrap());
    writeln!(c, "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised").unwrap();
    let rows = match case {
        "bad-dates" | "rejected" => {
            let rows = if case == "bad-dates" { 1_000_000 } else { 200_000 };
            let clients = 1_374;
            for i in 0..clients {
                writeln!(c, "{},B{:06},Client {i},,,,{ORG},,{SERVICE},LWAH,,Home Support,02/01/2023,,7,Hr,Weekly,23.77,Y", 500000 + i, i).unwrap();
            }
            writeln!(w, "{}", gateway::ingest::visits::HEADINGS.join(",")).unwrap();
            for n in 0..rows {
                let client = n % clients;
                let line = if case == "bad-dates" {
                    // 31 February: a date in the right form that is not a date.
                    format!("K{n:09},0,31/02/2023,08:10,08:40,DHF,31/02/2023,08:10,,,08:40,,,,,,B{client:06},,,Home Support,,,{SERVICE},,{ORG}")
                } else {
                    format!("K{n:09},0,02/01/2023,25:10,08:40,XYZ,,,,,,,,,,,B{client:06},,,Home Support,,,{SERVICE},,{ORG}")
                };
                writeln!(w, "{line}").unwrap();
            }
            rows
        }
        "actuals" => {
            // A row per client and week: 1,924 clients for a year.
            let rows: usize = 100_000;
            let clients = rows.div_ceil(52);
            for i in 0..clients {
                writeln!(c, "{},E{:06},Client {i},,,,{ORG},,{ECH_SERVICE},Spot,,Extra Care Housing - Planned Care,02/01/2023,,10,Hr,Weekly,23.226,Y", 700000 + i, i).unwrap();
            }
            writeln!(w, "Deleted,SSRef,ServiceLevel,ServiceName,PeriodStart,PeriodEnd,Planned,Actual,Frustrated,Missed,Extra,Visits,Comments").unwrap();
            let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
            for n in 0..rows {
                let (client, week) = (n % clients, n / clients);
                let from = start + chrono::Duration::weeks(week as i64);
                let to = from + chrono::Duration::days(6);
                writeln!(
                    w,
                    "0,E{client:06},Extra Care Housing - Planned Care,{ECH_SERVICE},{},{},10,9.5,0.5,0,0,14,",
                    from.format("%d/%m/%Y"),
                    to.format("%d/%m/%Y")
                )
                .unwrap();
            }
            rows
        }
        other => panic!("unknown case {other}; cases: {CASES:?}"),
    };
    w.flush().unwrap();
    c.flush().unwrap();
    (rows, std::fs::metadata(&path).unwrap().len())
}
