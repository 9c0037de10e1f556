//! Ingest benchmark: generates a realistic visits file and measures, in one run, a parse-only pass
//! (csv `ByteRecord`), `validate`, `import` into sled, and raw sled inserts of as many records (the
//! store's own ceiling), each in its own process so each phase's peak memory is its own.
//!
//! cargo run --release --example bench_ingest -- --rows 1000000 [--dir /tmp/bench_ingest]
//!
//! The raw sled phase inserts as many records with the store's keys, values as long as the visits
//! `import` stored, and the store's sled configuration. The import phase starts from an empty
//! store: an organisation's first file, which reads no stored versions back (issue 11). It times
//! the file applied as `serve` applies it, with the exports' rewrite held, and prints the one
//! rewrite after it apart (issue 10's exports read every stored visit, so they grow with the store,
//! not with the file; before 2026-12-02 the import phase's time held it).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gateway::config::Config;

// The allocator the gateway binary runs with, so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gateway::pipeline::Gateway;

const ORG: &str = "Bench Care Ltd";
const SERVICE: &str = "Bench Care - Zone 1 - Oxford";
/// A client has two half-hour calls a day, 7 hours a week, as in the guide's example week.
const VISITS_PER_CLIENT_YEAR: usize = 2 * 364;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rows: usize = arg("--rows").map(|r| r.replace('_', "").parse().expect("--rows N")).unwrap_or(1_000_000);
    let value_bytes: usize = arg("--value-bytes").map(|r| r.parse().expect("--value-bytes N")).unwrap_or(200);
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| std::env::temp_dir().join("bench_ingest").display().to_string()));
    if let Some(phase) = arg("--phase") {
        return run_phase(&phase, &dir, rows, value_bytes);
    }

    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    let bytes = generate(&dir, rows);
    println!(
        "generated {rows} visit rows for {} clients ({:.0} MB) in {:.1} s",
        rows.div_ceil(VISITS_PER_CLIENT_YEAR),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    println!("{:<10} {:>10} {:>14} {:>14}", "phase", "seconds", "rows/s", "peak MB");
    let mut rates = std::collections::HashMap::new();
    // The raw phase writes values as long as the visits `import` stored (issue 11: the same records).
    let mut value_bytes = 200;
    for phase in ["parse", "validate", "import", "sled-raw"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--phase", phase, "--rows", &rows.to_string(), "--dir", &dir.display().to_string()])
            .args(["--value-bytes", &value_bytes.to_string()])
            .output()
            .expect("run phase");
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("phase {phase} failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        // The phase prints "secs peak_kb".
        let mut parts = text.split_whitespace();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        let peak_kb: f64 = parts.next().unwrap().parse().unwrap();
        if let Some(stored) = parts.next() {
            value_bytes = stored.parse().unwrap();
        }
        let rate = rows as f64 / secs;
        rates.insert(phase, rate);
        println!("{phase:<10} {secs:>10.2} {rate:>14.0} {:>14.1}", peak_kb / 1024.0);
        if let Some(exports) = parts.next().and_then(|e| e.parse::<f64>().ok()) {
            println!("  then the exports' one rewrite: {exports:.2} s (not in import's rows/s)");
        }
    }
    println!("a stored visit: {value_bytes} bytes on average (the raw phase's value length)");
    println!("import / raw sled inserts: {:.0}%", 100.0 * rates["import"] / rates["sled-raw"]);
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

fn run_phase(phase: &str, dir: &Path, rows: usize, value_bytes: usize) {
    let visits = dir.join("visits.csv");
    let cplis = dir.join("cplis.csv");
    let mut config = Config::default();
    config.rules.today = chrono::NaiveDate::from_ymd_opt(2024, 6, 1);
    let mut stored_bytes = None;
    let mut exports_secs = None;
    let secs = match phase {
        "parse" => {
            let t = Instant::now();
            let mut rdr = csv::ReaderBuilder::new().from_path(&visits).unwrap();
            let mut rec = csv::ByteRecord::new();
            let mut n = 0usize;
            while rdr.read_byte_record(&mut rec).unwrap() {
                n += rec.len();
            }
            assert!(n >= rows);
            t.elapsed().as_secs_f64()
        }
        "validate" => {
            let extract = gateway::ingest::cplis::read_extract(&cplis, &[]).unwrap();
            let org = gateway::domain::Organisation::new(ORG, None);
            let t = Instant::now();
            let r = Gateway::validate(&config, None, Some(&org), Some(extract), &visits).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!((r.counts.read, r.counts.rejected), (rows as u64, 0), "{:?}", r.issues.first());
            secs
        }
        "import" => {
            let data = dir.join("data");
            let _ = std::fs::remove_dir_all(&data);
            let gw = Gateway::open(config, &data).unwrap();
            gw.load_cplis(&cplis).unwrap();
            let org = gw.org(ORG).unwrap();
            // The file applied (as `serve` applies it: the exports' rewrite held), then the one
            // rewrite of the exports after it, timed apart (issue 10's exports read every stored visit).
            let t = Instant::now();
            let (r, secs, peak) = gw.exports_once(|| {
                let r = gw.import_file(&org, &visits).unwrap();
                (r, t.elapsed().as_secs_f64(), peak_kb())
            });
            exports_secs = Some(t.elapsed().as_secs_f64() - secs);
            assert_eq!((r.counts.new, r.counts.rejected), (rows as u64, 0), "{:?}", r.issues.first());
            drop(gw);
            // The visits as stored (`DataDir::db`), read after the peak was taken.
            let db = sled::Config::new().path(data.join("db")).cache_capacity(gateway::store::SLED_CACHE_BYTES).open().unwrap();
            let (n, bytes) = db.scan_prefix(b"v\0").fold((0usize, 0usize), |(n, b), kv| (n + 1, b + kv.unwrap().1.len()));
            stored_bytes = Some((bytes / n.max(1), peak));
            secs
        }
        "sled-raw" => {
            let path = dir.join("sled-raw");
            let _ = std::fs::remove_dir_all(&path);
            // The store's sled configuration (`store::SLED_CACHE_BYTES`), so the comparison is fair.
            let db = sled::Config::new().path(&path).cache_capacity(gateway::store::SLED_CACHE_BYTES).open().unwrap();
            let value = vec![b'x'; value_bytes];
            let t = Instant::now();
            for i in 0..rows {
                let key = format!("v\0bench-care-ltd\0K{i:09}");
                db.insert(key.as_bytes(), value.as_slice()).unwrap();
            }
            db.flush().unwrap();
            t.elapsed().as_secs_f64()
        }
        other => panic!("unknown phase {other}"),
    };
    match (stored_bytes, exports_secs) {
        (Some((bytes, peak)), Some(exports)) => println!("{secs} {peak} {bytes} {exports}"),
        (Some((bytes, peak)), None) => println!("{secs} {peak} {bytes}"),
        _ => println!("{secs} {}", peak_kb()),
    }
}

/// The visits file and a CPLI extract for its clients. Mostly delivered visits with a realistic
/// sprinkling of cancellations, hospital stays and commented exceptional visits.
fn generate(dir: &Path, rows: usize) -> u64 {
    let clients = rows.div_ceil(VISITS_PER_CLIENT_YEAR);
    let mut c = BufWriter::new(std::fs::File::create(dir.join("cplis.csv")).unwrap());
    writeln!(c, "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised").unwrap();
    for i in 0..clients {
        writeln!(c, "{},B{:06},Client {i},,,,{ORG},,{SERVICE},LWAH,,Home Support,02/01/2023,,7,Hr,Weekly,23.77,Y", 500000 + i, i).unwrap();
    }
    c.flush().unwrap();

    let path = dir.join("visits.csv");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    writeln!(w, "{}", gateway::ingest::visits::HEADINGS.join(",")).unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
    let mut n = 0;
    'out: for day in 0..364 {
        let date = (start + chrono::Duration::days(day)).format("%d/%m/%Y").to_string();
        for client in 0..clients {
            for (entry, exit) in [("08:10", "08:40"), ("18:00", "18:30")] {
                if n == rows {
                    break 'out;
                }
                n += 1;
                let (vt, delivered, comment) = match n % 97 {
                    0 => ("C", false, "Client cancelled at short notice"),
                    1 => ("U", false, "Carer could not get in; family informed"),
                    2 => ("C24", false, "Cancelled two days ahead"),
                    3 => ("H", false, "Client in hospital"),
                    _ => ("DHF", true, ""),
                };
                let (dd, de, dx) = if delivered { (date.as_str(), entry, exit) } else { ("", "", "") };
                writeln!(
                    w,
                    "K{n:09},0,{date},{entry},{exit},{vt},{dd},{de},,,{dx},,,,{comment},,B{client:06},,,Home Support,,,{SERVICE},,{ORG}"
                )
                .unwrap();
            }
        }
    }
    w.flush().unwrap();
    std::fs::metadata(&path).unwrap().len()
}
