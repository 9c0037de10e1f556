//! Control socket benchmark (issue 10): `visits list` of a million stored visits run one-shot with
//! the server stopped, and through the control socket of a running `gateway serve`; wall time, the
//! bytes listed, and peak memory (VmHWM) of the command and of the server, side by side.
//!
//! cargo build --release --bin gateway && cargo run --release --example bench_control -- --rows 1000000 [--dir /tmp/bench_control]
//!
//! The visits are stored once (a one-shot `cplis load` and `import`) and kept in DIR for the next
//! run. The command's peak is its maximum resident size from wait4 (the kernel's VmHWM of a process
//! that has ended); the server's is VmHWM from /proc before and after the list.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const ORG: &str = "Bench Care Ltd";
const SERVICE: &str = "Bench Care - Zone 1 - Oxford";
/// Two half-hour calls a day, as in the guide's example week.
const CALLS: [(&str, &str); 2] = [("08:10", "08:40"), ("18:00", "18:30")];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rows: usize = arg("--rows").map(|r| r.replace('_', "").parse().expect("--rows N")).unwrap_or(1_000_000);
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| std::env::temp_dir().join("bench_control").display().to_string()));
    // The release binary beside this example (target/release/examples/..).
    let bin = arg("--bin").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(Path::parent).unwrap().join("gateway")
    });
    assert!(bin.exists(), "no {} (cargo build --release --bin gateway)", bin.display());
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!("[rules]\ntoday = 2024-06-01\n[sftp]\nhost_key = \"{}\"\n", dir.join("ssh_host_ed25519_key").display()),
    )
    .unwrap();
    let gateway = |extra: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--data").arg(&data).arg("--config").arg(&config).args(extra).env("RUST_LOG", "warn");
        c
    };

    let stored = dir.join(format!("stored-{rows}"));
    if !stored.exists() {
        let _ = std::fs::remove_dir_all(&data);
        let t = Instant::now();
        let (cplis, visits) = generate(&dir, rows);
        run_ok(gateway(&["cplis", "load", cplis.to_str().unwrap()]));
        run_ok(gateway(&["import", "--org", ORG, visits.to_str().unwrap()]));
        std::fs::write(&stored, "").unwrap();
        println!("stored {rows} visits in {:.1} s (kept in {} for the next run)", t.elapsed().as_secs_f64(), data.display());
    }
    let list = ["visits", "list", "--org", ORG];

    let stopped = measure(gateway(&list));

    let mut server = gateway(&["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let out = server.stdout.take().unwrap();
    for line in BufReader::new(out).lines() {
        if line.unwrap().contains("watching the inboxes") {
            break;
        }
    }
    let server_before = vm_hwm_kb(server.id());
    let served = measure(gateway(&list));
    let server_after = vm_hwm_kb(server.id());
    stop(&mut server);

    assert_eq!((stopped.bytes, stopped.hash), (served.bytes, served.hash), "the same list either way");
    println!("visits list --org '{ORG}' of {rows} stored visits ({:.0} MB of CSV)", stopped.bytes as f64 / 1e6);
    println!("{:<28} {:>9} {:>16} {:>22}", "", "seconds", "command peak MB", "server peak MB");
    println!("{:<28} {:>9.2} {:>16.1} {:>22}", "server stopped (one-shot)", stopped.secs, stopped.peak_kb as f64 / 1024.0, "-");
    println!(
        "{:<28} {:>9.2} {:>16.1} {:>22}",
        "through the control socket",
        served.secs,
        served.peak_kb as f64 / 1024.0,
        format!("{:.1} -> {:.1}", server_before as f64 / 1024.0, server_after as f64 / 1024.0)
    );
}

struct Run {
    secs: f64,
    bytes: u64,
    /// FNV-1a of the output, to show both ways print the same.
    hash: u64,
    peak_kb: u64,
}

/// Runs the command reading its whole stdout, and reaps it with wait4 for its peak resident size.
fn measure(mut c: Command) -> Run {
    let t = Instant::now();
    // Reaped by `wait4` below, which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut bytes, mut hash) = (0u64, 0xcbf29ce484222325u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        bytes += n as u64;
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    let (status, peak_kb) = wait4(&child);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(status, 0, "the command failed");
    Run { secs, bytes, hash, peak_kb }
}

/// The exit status and the peak resident size (ru_maxrss, KiB) of a child, reaped here.
fn wait4(child: &Child) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; both pointers live across the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4: {}", std::io::Error::last_os_error());
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64)
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn stop(server: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
    let _ = server.wait();
}

fn run_ok(mut c: Command) {
    let out = c.output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CPLI extract and a visits file of `rows` delivered visits, two a day per client over a year.
fn generate(dir: &Path, rows: usize) -> (PathBuf, PathBuf) {
    let clients = rows.div_ceil(2 * 364);
    let cplis = dir.join("cplis.csv");
    let mut c = BufWriter::new(std::fs::File::create(&cplis).unwrap());
    writeln!(c, "CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised").unwrap();
    for i in 0..clients {
        writeln!(c, "{},B{i:06},Client {i},,,,{ORG},,{SERVICE},LWAH,,Home Support,02/01/2023,,7,Hr,Weekly,23.77,Y", 500000 + i).unwrap();
    }
    c.flush().unwrap();
    let visits = dir.join("visits.csv");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&visits).unwrap());
    writeln!(w, "{}", gateway::ingest::visits::HEADINGS.join(",")).unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
    let mut n = 0;
    'out: for day in 0..364 {
        let date = (start + chrono::Duration::days(day)).format("%d/%m/%Y").to_string();
        for client in 0..clients {
            for (entry, exit) in CALLS {
                if n == rows {
                    break 'out;
                }
                n += 1;
                writeln!(w, "K{n:09},0,{date},{entry},{exit},DHF,{date},{entry},,,{exit},,,,,,B{client:06},,,Home Support,,,{SERVICE},,{ORG}").unwrap();
            }
        }
    }
    w.flush().unwrap();
    (cplis, visits)
}
