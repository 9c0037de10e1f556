//! Inputs the fuzz targets (fuzz/, issue 9) made the gateway crash on, kept in `tests/fixtures/fuzz/`:
//! each is validated as the fuzz targets judged it (with a store holding the examples' CPLIs, and
//! offline with `--cplis`) and must get a result and exit 0 or 1, never a panic (101) or a signal.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::{example, fixture, TestEnv, PEARL};

/// `validate --format json` with these arguments; the one result, or why there is none.
fn answer(env: &TestEnv, args: &[&str], file: &Path) -> Result<Value, String> {
    let mut all = vec!["validate", "--format", "json"];
    all.extend_from_slice(args);
    all.push(file.to_str().unwrap());
    let out = env.run(&all);
    let said = || format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&out.status) {
        return Err(format!("killed by signal {signal}\n{}", said()));
    }
    match out.status.code() {
        Some(0 | 1) => {}
        Some(101) => return Err(format!("PANICKED (exit 101)\n{}", said())),
        other => return Err(format!("exited {other:?}, expected 0 or 1\n{}", said())),
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout is not JSON ({e})\n{}", said()))?;
    if v["status"].as_str().is_none() || !v["issues"].is_array() {
        return Err(format!("not a section-4 result: {v}"));
    }
    Ok(v)
}

/// Both ways the fuzz targets judge a file; every failure, one per line.
fn failures(file: &Path) -> Vec<String> {
    let cplis = example("cplis.csv");
    let offline = TestEnv::new();
    let stored = TestEnv::with_example_cplis();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    [
        ("validate --cplis examples/cplis.csv", answer(&offline, &["--cplis", cplis.to_str().unwrap()], file)),
        ("validate --org (store with the examples' CPLIs)", answer(&stored, &["--org", PEARL], file)),
    ]
    .into_iter()
    .filter_map(|(how, r)| r.err().map(|e| format!("{name}, {how}: {e}")))
    .collect()
}

fn assert_answered(fixture_name: &str) {
    let f = failures(&fixture(&format!("fuzz/{fixture_name}")));
    assert!(f.is_empty(), "{}", f.join("\n\n"));
}

fn committed() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture("fuzz"))
        .expect("tests/fixtures/fuzz exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
}

/// Every fixture, including any added later without a test of its own.
#[test]
fn every_input_a_fuzz_target_crashed_on_is_answered() {
    let files = committed();
    assert!(!files.is_empty(), "tests/fixtures/fuzz holds the crash inputs");
    let all: Vec<String> = files.iter().flat_map(|f| failures(f)).collect();
    assert!(all.is_empty(), "{} failure(s):\n{}", all.len(), all.join("\n\n"));
}

/// Issue 9, item 4: `Actual` of 79228162514264337593543950335 panicked in `check_hours_step` (`q * 60`).
#[test]
fn an_actuals_row_whose_actual_is_the_largest_decimal_is_answered() {
    assert_answered("actuals_actual_is_the_largest_decimal.csv");
}

/// Issue 9, item 4: `Extra` of 79228162514264337593543950335 panicked in `Actual::is_over_delivery` (`actual + extra`).
#[test]
fn an_actuals_row_whose_extra_is_the_largest_decimal_is_answered() {
    assert_answered("actuals_extra_is_the_largest_decimal.csv");
}
