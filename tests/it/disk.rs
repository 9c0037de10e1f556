//! A full disk: the gateway answers what it can and goes on once space returns, without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{counts, example, TestEnv, PEARL, VISITS_HEADER};
use crate::server::{inbox, result_path, wait_for_json, Server};

/// A tmpfs of `mb` megabytes mounted on a fresh folder, unmounted when dropped. `None` where this
/// machine does not let the test mount one (not root, or in a container without the right).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// `n` valid visits for Mayor Quimby, one a day from 2 January 2023.
fn many_visits(path: &Path, n: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "{VISITS_HEADER}").unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
    for i in 0..n {
        let date = (start + chrono::Days::new(i as u64 / 4)).format("%d/%m/%Y");
        let (entry, exit) = [("08:00", "09:00"), ("12:00", "13:00"), ("17:00", "17:30"), ("21:00", "21:30")][i % 4];
        writeln!(w, "K{i:07},0,{date},{entry},{exit},DHS,{date},{entry},,,{exit},,,,,,A371849,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,,").unwrap();
    }
    w.flush().unwrap();
}

/// Issue 9: after sled met "no space" every later file failed until a restart (sled keeps its first
/// I/O error). Now the store is opened again once space returns, the cut-short import rolled back.
#[test]
fn a_full_disk_does_not_stop_later_files_once_space_returns() {
    let Some(disk) = SmallDisk::mount(24) else {
        eprintln!("SKIPPED: this machine does not let the test mount a tmpfs (run as root)");
        return;
    };
    let env = TestEnv { dir: tempfile::tempdir_in(disk.path()).unwrap() };
    env.ok(&["cplis", "load", example("cplis.csv").to_str().unwrap()]);
    let big = tempfile::tempdir().unwrap();
    many_visits(&big.path().join("big.csv"), 30_000);
    // Leave room for the file and 2 MB: not enough for the store to hold its 30,000 visits (at
    // least 160 bytes each, and their history and week totals), whatever their stored form.
    let file_len = std::fs::metadata(big.path().join("big.csv")).unwrap().len();
    let filler: PathBuf = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; (fs_free(disk.path()) - file_len - (2 << 20)) as usize]).unwrap();
    let _server = Server::start(&env);

    std::fs::copy(big.path().join("big.csv"), inbox(&env).join("big.part")).unwrap();
    std::fs::rename(inbox(&env).join("big.part"), inbox(&env).join("big.csv")).unwrap();
    // Space returns once the big file has filled the disk and the store has stopped writing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut last = u64::MAX;
    loop {
        assert!(std::time::Instant::now() < deadline, "the big file never filled the disk");
        std::thread::sleep(std::time::Duration::from_secs(2));
        let free = fs_free(disk.path());
        if free < 1 << 20 && free == last {
            break;
        }
        last = free;
    }
    std::fs::remove_file(&filler).unwrap();

    std::fs::copy(example("visits-week.csv"), inbox(&env).join("visits-week.csv")).unwrap();
    let week = wait_for_json(&result_path(&env, "visits-week.result.json"), 180);
    assert_eq!(counts(&week), (21, 21, 0, 0, 0), "{week}");
    // The big file is answered, once, as failed for want of space; none of it is stored.
    let big = wait_for_json(&result_path(&env, "big.result.json"), 30);
    assert_eq!(big["status"], "failed", "{big}");
    assert!(big["issues"][0]["message"].as_str().unwrap().contains("send it again"), "{big}");
    drop(_server);
    assert_eq!(env.visits(PEARL).len(), 21, "the big file's import was not rolled back");
    let results = crate::server::results(&env, crate::server::ORG_DIR);
    assert_eq!(results, ["big.result.json", "visits-week.result.json"], "one answer per file");
}

/// Free bytes on the file system holding `path`.
fn fs_free(path: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}
