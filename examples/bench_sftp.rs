//! SFTP benchmark, side by side on loopback with the same OpenSSH `sftp` client and the same file:
//! upload throughput to the gateway and to a real OpenSSH `sshd` (`internal-sftp`, started here on a
//! loopback port with its own configuration), with chacha20-poly1305 and aes256-gcm; login + `ls`
//! for both; and the gateway's time from upload closed to result file readable (p50, p95 over 100
//! uploads of a 1,000-row visits file).
//!
//! cargo run --release --example bench_sftp -- [--mb 500] [--uploads 100] [--dir /dev/shm/bench_sftp]
//!
//! Needs `sftp`, `ssh-keygen` and, for the comparison, `/usr/sbin/sshd` (Debian: openssh-server).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gateway::config::Config;
use gateway::pipeline::Gateway;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CIPHERS: [&str; 2] = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"];
const ORG: &str = "Bench Care Ltd";
const SERVICE: &str = "Bench Care - Zone 1 - Oxford";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
    };
    let mb: u64 = opt("--mb", "500").parse().expect("--mb N");
    let uploads: usize = opt("--uploads", "100").parse().expect("--uploads N");
    let dir = PathBuf::from(opt("--dir", "/dev/shm/bench_sftp"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let key = dir.join("client_ed25519");
    run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
    let blob = dir.join("blob.part");
    write_blob(&blob, mb);
    let (cplis, visits) = (dir.join("cplis.csv"), dir.join("visits-1000.csv"));
    write_visits(&cplis, &visits);

    let gw_port = free_port();
    let gw = start_gateway(&dir, &cplis, &key, gw_port);
    let sshd = start_sshd(&dir, &key);

    println!("upload of {mb} MB from /dev/shm, OpenSSH sftp client, loopback; login + ls subtracted; median of 3");
    println!("{:<32} {:>14} {:>14} {:>8}", "cipher", "gateway MB/s", "sshd MB/s", "ratio");
    let gw_target = Target { port: gw_port, user: "bench".into(), dir: "/inbox".into() };
    let sshd_target = sshd.as_ref().map(|(_, port, upload_dir)| Target {
        port: *port,
        user: whoami(),
        dir: upload_dir.display().to_string(),
    });
    let gw_login = login_ls(&gw_target, &key);
    let sshd_login = sshd_target.as_ref().map(|t| login_ls(t, &key));
    for cipher in CIPHERS {
        let g = throughput(&gw_target, &key, &blob, cipher, mb, gw_login);
        let s = sshd_target.as_ref().map(|t| throughput(t, &key, &blob, cipher, mb, sshd_login.unwrap()));
        match s {
            Some(s) => println!("{cipher:<32} {g:>14.0} {s:>14.0} {:>7.2}x", g / s),
            None => println!("{cipher:<32} {g:>14.0} {:>14} {:>8}", "(no sshd)", ""),
        }
    }
    println!();
    println!("login + ls (median of 10): gateway {:.0} ms, sshd {}", ms(gw_login), sshd_login.map(|d| format!("{:.0} ms", ms(d))).unwrap_or("(no sshd)".into()));

    let mut latencies = upload_to_result(&gw, &gw_target, &key, &visits, uploads);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1).min(latencies.len() - 1)];
    println!(
        "upload closed -> result readable, {uploads} uploads of a 1,000-row file: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(*latencies.last().unwrap())
    );
    if let Some((mut child, _, _)) = sshd {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}

struct Target {
    port: u16,
    user: String,
    dir: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn whoami() -> String {
    String::from_utf8(Command::new("whoami").output().unwrap().stdout).unwrap().trim().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_ok(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write_blob(path: &Path, mb: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for _ in 0..mb {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
}

/// Two clients, two calls a day for 250 days: 1,000 rows, all matched.
fn write_visits(cplis: &Path, visits: &Path) {
    let mut c = String::from("CPLIID,SSRef,ClientName,NHSNumber,ClientRef,OrganisationRef,OrganisationName,ServiceRef,ServiceName,Contract,ServiceLevelRef,ServiceLevel,StartDate,EndDate,Quantity,Unit,Frequency,UnitCost,Authorised\n");
    for i in 0..2 {
        c.push_str(&format!("{},B{i:06},Client {i},,,,{ORG},,{SERVICE},LWAH,,Home Support,02/01/2023,,7,Hr,Weekly,23.77,Y\n", 700000 + i));
    }
    std::fs::write(cplis, c).unwrap();
    let mut v = gateway::ingest::visits::HEADINGS.join(",");
    v.push('\n');
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
    let mut n = 0;
    for day in 0..250 {
        let date = (start + chrono::Duration::days(day)).format("%d/%m/%Y").to_string();
        for client in 0..2 {
            for (entry, exit) in [("08:10", "08:40"), ("18:00", "18:30")] {
                n += 1;
                v.push_str(&format!(
                    "L{n:06},0,{date},{entry},{exit},DHS,{date},{entry},,,{exit},,,,,,B{client:06},,,Home Support,,,{SERVICE},,{ORG}\n"
                ));
            }
        }
    }
    std::fs::write(visits, v).unwrap();
}

/// The gateway in this process, as `gateway serve` runs it, with its data on the same tmpfs.
fn start_gateway(dir: &Path, cplis: &Path, key: &Path, port: u16) -> Arc<Gateway> {
    let mut config = Config::default();
    config.sftp.host_key = dir.join("gateway_host_key");
    config.limits.max_file_bytes = 4 << 30;
    let gw = Arc::new(Gateway::open(config, &dir.join("gateway-data")).unwrap());
    let load = gw.load_cplis(cplis).unwrap();
    let org = gw.org(&load.organisations[0]).unwrap();
    let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    gateway::sftp::Users::new(gw.data.users()).add("bench", &org.slug, vec![public.trim().to_string()], None).unwrap();
    let serving = gw.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let options = gateway::serve::Options { listen: Some(format!("127.0.0.1:{port}")), demo: None };
        rt.block_on(gateway::serve::run(serving, options, std::future::pending(), |_| {})).unwrap();
    });
    wait_for_port(port);
    gw
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// OpenSSH's sshd with internal-sftp on a loopback port, its own host key and configuration.
fn start_sshd(dir: &Path, key: &Path) -> Option<(Child, u16, PathBuf)> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        eprintln!("no /usr/sbin/sshd (Debian: apt-get install openssh-server): the comparison is skipped");
        return None;
    }
    let _ = std::fs::create_dir_all("/run/sshd");
    let host_key = dir.join("sshd_host_key");
    run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key));
    std::fs::copy(format!("{}.pub", key.display()), dir.join("authorized_keys")).unwrap();
    let upload_dir = dir.join("sshd-upload");
    std::fs::create_dir_all(&upload_dir).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nLogLevel ERROR\n",
            host_key.display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display()
        ),
    )
    .unwrap();
    let child = Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(&config).stderr(Stdio::null()).spawn().ok()?;
    wait_for_port(port);
    Some((child, port, upload_dir))
}

fn sftp(t: &Target, key: &Path, cipher: Option<&str>, batch: &str) -> Duration {
    let mut c = Command::new("sftp");
    c.args(["-q", "-b", "-", "-P", &t.port.to_string(), "-i"]).arg(key);
    c.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]);
    if let Some(cipher) = cipher {
        c.args(["-c", cipher]);
    }
    c.arg(format!("{}@127.0.0.1", t.user)).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().expect("run sftp");
    child.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "sftp {batch:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn login_ls(t: &Target, key: &Path) -> Duration {
    median((0..10).map(|_| sftp(t, key, None, &format!("ls {}\n", t.dir))).collect())
}

fn throughput(t: &Target, key: &Path, blob: &Path, cipher: &str, mb: u64, login: Duration) -> f64 {
    let batch = format!("put {} {}/blob.part\n", blob.display(), t.dir);
    let took = median((0..3).map(|_| sftp(t, key, Some(cipher), &batch)).collect());
    (mb as f64 * 1.048576) / (took.saturating_sub(login)).as_secs_f64()
}

/// For each upload: the result's `received_at` (the upload's last write, at its close) to the moment
/// the result JSON can be read in `results/`.
fn upload_to_result(gw: &Gateway, t: &Target, key: &Path, visits: &Path, n: usize) -> Vec<Duration> {
    let org = gw.org(ORG).unwrap();
    let results = gw.data.results(&org.slug);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("lat-{i:03}");
        sftp(t, key, None, &format!("put {} /inbox/{name}.csv\n", visits.display()));
        let path = results.join(format!("{name}.result.json"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let (visible, text) = loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                break (SystemTime::now(), text);
            }
            assert!(Instant::now() < deadline, "no result for {name}");
            std::thread::sleep(Duration::from_micros(500));
        };
        let result: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(result["counts"]["read"], 1000, "{result}");
        let received: chrono::DateTime<chrono::Utc> = result["received_at"].as_str().unwrap().parse().unwrap();
        out.push(visible.duration_since(SystemTime::from(received)).unwrap_or_default());
    }
    out
}
