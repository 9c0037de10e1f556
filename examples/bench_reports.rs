//! Reports benchmark: a year of stored visits for 1,000 clients (about 2 million), then the
//! commissioned vs actuals report and the hospital incentive over the whole year, each in its own
//! process so each figure's peak memory is its own.
//!
//! cargo run --release --example bench_reports -- [--clients 1000] [--dir /tmp/bench_reports] [--reuse]
//!
//! `--reuse` keeps the store a previous run loaded.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chrono::{Duration, NaiveDate, NaiveTime};
use gateway::config::Config;
use gateway::pipeline::Gateway;
use gateway::reports::ActualsOptions;

// The allocator the gateway binary runs with, so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORG: &str = "Bench Care Ltd";
const SERVICE: &str = "Bench Care - DAPL Oxford";
/// Calls a day: clients alternate between 5 and 6, so 1,000 clients make about 2 million visits a year.
const CALLS: [(u32, u32); 6] = [(7, 30), (10, 0), (12, 30), (15, 0), (18, 0), (21, 0)];

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2023, 1, 2).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let clients: usize = arg("--clients").map(|r| r.parse().expect("--clients N")).unwrap_or(1000);
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| std::env::temp_dir().join("bench_reports").display().to_string()));
    if let Some(phase) = arg("--phase") {
        return run_phase(&phase, &dir, clients);
    }
    std::fs::create_dir_all(&dir).unwrap();
    println!("{:<26} {:>10} {:>10} {:>12}", "phase", "seconds", "peak MB", "");
    for phase in ["load", "commissioned-vs-actuals", "commissioned-vs-actuals", "hospital-incentive"] {
        if phase == "load" && std::env::args().any(|a| a == "--reuse") && dir.join("data/db").exists() {
            continue;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--phase", phase, "--clients", &clients.to_string(), "--dir", &dir.display().to_string()])
            .output()
            .expect("run phase");
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("phase {phase} failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        // The phase prints "secs peak_kb what".
        let mut parts = text.split_whitespace();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        let peak_kb: f64 = parts.next().unwrap().parse().unwrap();
        let what: Vec<&str> = parts.collect();
        println!("{phase:<26} {secs:>10.2} {:>10.1}   {}", peak_kb / 1024.0, what.join(" "));
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

fn run_phase(phase: &str, dir: &Path, clients: usize) {
    let data = dir.join("data");
    let year = (first_day(), first_day() + Duration::days(363));
    let (secs, what) = match phase {
        "load" => {
            let _ = std::fs::remove_dir_all(&data);
            let mut config = Config::default();
            config.rules.today = NaiveDate::from_ymd_opt(2024, 6, 1);
            let gw = Gateway::open(config, &data).unwrap();
            let t = Instant::now();
            let n = load(&gw, dir, clients);
            (t.elapsed().as_secs_f64(), format!("{n} visits stored for {clients} clients"))
        }
        "commissioned-vs-actuals" => {
            let gw = Gateway::open(Config::default(), &data).unwrap();
            let org = gw.org(ORG).unwrap();
            let opts = ActualsOptions { from: year.0, to: year.1, differences_only: false, include_empty_weeks: false };
            let t = Instant::now();
            let rows = gw.commissioned_vs_actuals(&org, &opts).unwrap();
            let csv = gateway::reports::table_csv(&gateway::reports::actuals::COLUMNS, rows.iter().map(|r| r.cells()));
            (t.elapsed().as_secs_f64(), format!("{} rows ({} KB of CSV)", rows.len(), csv.len() / 1024))
        }
        "hospital-incentive" => {
            let gw = Gateway::open(Config::default(), &data).unwrap();
            let org = gw.org(ORG).unwrap();
            let t = Instant::now();
            let rows = gw.hospital_incentive(&org, year.0, year.1).unwrap();
            (t.elapsed().as_secs_f64(), format!("{} stays", rows.len()))
        }
        other => panic!("unknown phase {other}"),
    };
    println!("{secs} {} {what}", peak_kb());
}

/// CPLIs for the clients, then a year of their visits as one visits file imported as a provider's
/// would be (so the store holds what production holds, week totals included). Mostly delivered
/// visits, with cancellations, undeliverable calls, extra visits and a hospital stay now and then.
fn load(gw: &Gateway, dir: &Path, clients: usize) -> u64 {
    let cplis = dir.join("cplis.csv");
    let mut c = BufWriter::new(std::fs::File::create(&cplis).unwrap());
    writeln!(c, "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised").unwrap();
    for i in 0..clients {
        let hours = if i % 2 == 0 { "17.5" } else { "21" };
        writeln!(c, "{},B{i:06},Client {i},,,,{ORG},,{SERVICE},DAPL,,Personal Care,02/01/2023,,{hours},Hr,Weekly,23.226,Y", 600000 + i).unwrap();
    }
    c.flush().unwrap();
    drop(c);
    gw.load_cplis(&cplis).unwrap();

    let visits = dir.join("visits.csv");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&visits).unwrap());
    writeln!(w, "{}", gateway::ingest::visits::HEADINGS.join(",")).unwrap();
    let mut n = 0u64;
    for client in 0..clients {
        let calls = if client % 2 == 0 { 5 } else { 6 };
        for day in 0..364 {
            let date = first_day() + Duration::days(day);
            let d = date.format("%d/%m/%Y");
            // A week in hospital every 20 weeks, a different week for each client.
            let in_hospital = (day + client as i64 * 7) % 140 < 7;
            for (h, m) in CALLS.iter().take(calls) {
                n += 1;
                let entry = NaiveTime::from_hms_opt(*h, *m, 0).unwrap();
                let exit = entry + Duration::minutes(30);
                let (code, comment) = match (in_hospital, n % 53) {
                    (true, _) => ("H", "Client in hospital"),
                    (false, 0) => ("C", "Client cancelled at short notice"),
                    (false, 1) => ("U", "Carer could not get in; family informed"),
                    (false, 2) => ("E", "Client unwell; carer stayed longer"),
                    _ => ("DHS", ""),
                };
                let (e, x) = (entry.format("%H:%M"), exit.format("%H:%M"));
                if matches!(code, "DHS" | "E") {
                    let de = (entry + Duration::minutes((n % 5) as i64)).format("%H:%M");
                    let dx = (exit + Duration::minutes((n % 7) as i64)).format("%H:%M");
                    writeln!(w, "K{n:09},0,{d},{e},{x},{code},{d},{de},,,{dx},,,,{comment},,B{client:06},,,Personal Care,,,{SERVICE},,{ORG}").unwrap();
                } else {
                    writeln!(w, "K{n:09},0,{d},{e},{x},{code},,,,,,,,,{comment},,B{client:06},,,Personal Care,,,{SERVICE},,{ORG}").unwrap();
                }
            }
        }
    }
    w.flush().unwrap();
    drop(w);
    let org = gw.org(ORG).unwrap();
    let r = gw.import_file(&org, &visits).unwrap();
    assert_eq!((r.counts.new, r.counts.rejected), (n, 0), "{:?}", r.issues.first());
    n
}
