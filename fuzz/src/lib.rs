//! What the fuzz targets share (issue 9): one data folder in /dev/shm holding the examples' CPLIs,
//! each input written to a file there, and the judging run exactly as `gateway validate` runs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gateway::config::Config;
use gateway::domain::{Cpli, Organisation};
use gateway::outcome::{Code, FileKind, ImportResult};
use gateway::pipeline::Gateway;

/// The examples' organisation (`examples/cplis.csv` creates it).
pub const PEARL: &str = "Pearl Carers Ltd";

pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

/// A data folder of this process with the examples' CPLIs loaded, opened once.
pub struct Env {
    pub gateway: Gateway,
    pub org: Organisation,
    pub cplis: Vec<Cpli>,
    dir: PathBuf,
}

pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        remove_stale_folders();
        let dir = PathBuf::from(format!("/dev/shm/gateway-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a folder in /dev/shm");
        let gateway = Gateway::open(Config::default(), &dir.join("data")).expect("a store in /dev/shm");
        gateway.load_cplis(&example("cplis.csv")).expect("examples/cplis.csv loads");
        let org = gateway.org(PEARL).expect("examples/cplis.csv creates Pearl Carers Ltd");
        let cplis = gateway::ingest::cplis::read_extract(&example("cplis.csv")).expect("examples/cplis.csv reads");
        Env { gateway, org, cplis, dir }
    })
}

/// Folders left by earlier fuzzing processes (libFuzzer ends with `exit`, so nothing cleans up).
fn remove_stale_folders() {
    let Ok(entries) = fs::read_dir("/dev/shm") else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("gateway-fuzz-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Env {
    /// Writes an input where the gateway reads files from (a fresh file each time, same name).
    pub fn write_input(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, data).expect("writing the input to /dev/shm");
        path
    }

    /// Judges the file as `gateway validate` does, one of two ways chosen by the input's length (so
    /// both are explored at half the cost, on a machine where executions are scarce):
    /// even, `validate --org "Pearl Carers Ltd" FILE` over a data folder holding the examples' CPLIs
    /// (carers, locked periods and stored actuals are read); odd, `validate --cplis examples/cplis.csv
    /// FILE` (no store, no organisation). An `Err` is a file the gateway would never answer.
    pub fn validate(&self, path: &Path, len: usize) -> ImportResult {
        let config = &self.gateway.config;
        let r = if len % 2 == 0 {
            Gateway::validate(config, Some(&self.gateway.store), Some(&self.org), None, path)
                .unwrap_or_else(|e| panic!("validate --org gave no result: {e}"))
        } else {
            Gateway::validate(config, None, None, Some(self.cplis.clone()), path)
                .unwrap_or_else(|e| panic!("validate --cplis gave no result: {e}"))
        };
        render(&r);
        r
    }
}

/// Everything `validate` prints and `serve` writes for a result: text, CSV and JSON, streamed from
/// its issues. A panic while judging is caught by `Gateway::validate` and answered `INTERNAL_ERROR`
/// (issue 9); that is still a crash here.
pub fn render(r: &ImportResult) {
    if let Some(i) = r.issues.iter().find(|i| i.code == Code::InternalError) {
        panic!("judging the file panicked: {}", i.message);
    }
    let _ = r.summary();
    let sink = &mut std::io::sink();
    r.write_text(sink).expect("the result as text");
    r.write_csv(sink).expect("the result as CSV");
    r.write_json(sink, "  ").expect("the result as JSON");
}

/// The input as a file of `kind`: if its first bytes do not name the kind's key heading, the guide's
/// header is put in front, so every input reaches that kind's rules (the `reader` target fuzzes headers).
pub fn as_kind(kind: FileKind, data: &[u8]) -> Vec<u8> {
    let (key, header) = match kind {
        FileKind::Visits => ("visitref", VISITS_HEADER),
        FileKind::Actuals => ("periodstart", ACTUALS_HEADER),
        FileKind::Carers => ("carerref", CARERS_HEADER),
        FileKind::Unknown => return data.to_vec(),
    };
    let head: Vec<u8> = data
        .iter()
        .take(4096)
        .take_while(|b| **b != b'\n')
        .filter(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect();
    if head.windows(key.len()).any(|w| w == key.as_bytes()) {
        data.to_vec()
    } else {
        let mut out = Vec::with_capacity(header.len() + 2 + data.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out
    }
}

pub const VISITS_HEADER: &str = "VisitRef,Deleted,PlannedVisitDate,PlannedEntryTime,PlannedExitTime,VisitType,DeliveredVisitDate,DeliveredEntryTime,DeliveredEntryTime IsOverridden,DeliveredEntryTime OverrideReason,DeliveredExitTime,DeliveredExitTime IsOverridden,DeliveredExitTime OverrideReason,VarianceReason,Comments,ClientRef,SSRef,NHSNumber,ServiceLevelRef,ServiceLevel,CarerRef,ServiceRef,ServiceName,OrganisationRef,OrganisationName";
pub const ACTUALS_HEADER: &str =
    "Deleted,SSRef,ServiceLevel,ServiceName,PeriodStart,PeriodEnd,Planned,Actual,Frustrated,Missed,Extra,Visits,Comments,ClientRef,NHSNumber,ServiceLevelRef,ServiceRef,OrganisationRef,OrganisationName";
pub const CARERS_HEADER: &str = "CarerRef,Forename,Surname,Deleted,StartDate,EndDate,Email,Mobile";
