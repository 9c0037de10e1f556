//! A file's way through the gateway: claimed into the spool, judged and applied, answered in
//! `results/`, kept in the archive. `gateway import` and the inbox watcher both go through here.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;
use crate::data_dir::DataDir;
use crate::domain::{Organisation, Period};
use crate::ingest::cplis::{self, CpliError};
use crate::ingest::matching::CpliIndex;
use crate::ingest::{self, ImportResult, Incoming, IngestError, Mode};
use crate::reports::{self, hospital, ActualsOptions, ActualsRow, ClientWeek, HospitalRow, WeekActuals};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Cplis(#[from] CpliError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("there is no organisation '{name}'{}", known_list(.known))]
    UnknownOrganisation { name: String, known: Vec<String> },
    #[error("{0}")]
    Invalid(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; none exists yet: load the council's CPLI extract (`gateway cplis load FILE`) or `gateway org add --name NAME`".into()
    } else {
        format!("; known organisations: {}", known.join(", "))
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GatewayError {
    let context = context.into();
    move |source| GatewayError::Io { context, source }
}

pub type Result<T> = std::result::Result<T, GatewayError>;

/// The engine with its configuration, folders and store: what every command and the server share.
pub struct Gateway {
    pub config: Config,
    pub data: DataDir,
    pub store: Store,
}

/// What `cplis load` did.
#[derive(Debug)]
pub struct CpliLoad {
    pub cplis: usize,
    pub new: usize,
    pub organisations: Vec<String>,
    pub rematched: usize,
}

impl Gateway {
    pub fn open(config: Config, data_root: &Path) -> Result<Gateway> {
        let data = DataDir::new(data_root);
        fs::create_dir_all(data.root()).map_err(io(format!("creating {}", data.root().display())))?;
        let store = Store::open(&data.db())?;
        Ok(Gateway { config, data, store })
    }

    pub fn org(&self, name: &str) -> Result<Organisation> {
        match self.store.org(name)? {
            Some(o) => Ok(o),
            None => Err(GatewayError::UnknownOrganisation {
                name: name.into(),
                known: self.store.orgs()?.into_iter().map(|o| o.name).collect(),
            }),
        }
    }

    pub fn add_org(&self, name: &str, org_ref: Option<&str>) -> Result<Organisation> {
        if name.trim().is_empty() {
            return Err(GatewayError::Invalid("an organisation needs a name".into()));
        }
        let guid = match org_ref {
            Some(r) => Some(crate::domain::parse_guid(r).ok_or_else(|| GatewayError::Invalid(format!("'{r}' is not a GUID")))?),
            None => None,
        };
        let mut org = self.store.org(name)?.unwrap_or_else(|| Organisation::new(name, None));
        if guid.is_some() {
            org.org_ref = guid;
        }
        self.store.put_org(&org)?;
        self.store.flush()?;
        self.data.ensure_org(&org.slug).map_err(io("creating the organisation's folders"))?;
        self.write_commissioned_export(&org)?;
        Ok(org)
    }

    /// Loads the council's CPLI extract, creates what it names, and matches the affected
    /// organisations' visits again.
    pub fn load_cplis(&self, path: &Path) -> Result<CpliLoad> {
        let cplis = cplis::read_extract(path)?;
        let orgs = cplis::organisations(&cplis, self.store.orgs()?);
        for org in &orgs {
            self.store.put_org(org)?;
            self.data.ensure_org(&org.slug).map_err(io("creating the organisation's folders"))?;
        }
        let new = self.store.upsert_cplis(&cplis)?;
        self.store.flush()?;
        let mut rematched = 0;
        for org in &orgs {
            let index = CpliIndex::new(self.store.cplis_for_org(org)?);
            rematched += self.store.rematch_visits(&org.slug, |v| index.match_visit(v))?;
            rematched += self.store.rematch_actuals(&org.slug, |a| ingest::actuals::rematch(a, &index))?;
            self.write_commissioned_export(org)?;
        }
        Ok(CpliLoad { cplis: cplis.len(), new, organisations: orgs.into_iter().map(|o| o.name).collect(), rematched })
    }

    /// The organisation's commissioned care export (SPEC 5), as CSV.
    pub fn commissioned_export(&self, org: &Organisation) -> Result<Vec<u8>> {
        Ok(reports::commissioned_care_csv(&self.store.cplis_for_org(org)?))
    }

    /// Keeps `exports/commissioned-care.csv` current: rewritten atomically when its content changes,
    /// so a reader sees the old file or the new one, never half of one.
    pub fn write_commissioned_export(&self, org: &Organisation) -> Result<PathBuf> {
        let path = self.data.exports(&org.slug).join(COMMISSIONED_EXPORT);
        let body = self.commissioned_export(org)?;
        if fs::read(&path).ok().as_deref() != Some(body.as_slice()) {
            fs::create_dir_all(self.data.exports(&org.slug)).map_err(io("creating the exports folder"))?;
            self.data.write_atomically(&path, &body).map_err(io("writing the commissioned care export"))?;
        }
        Ok(path)
    }

    /// The commissioned vs actuals report, from the week totals kept as visits arrive (one record
    /// per client, service and week, not every visit).
    pub fn commissioned_vs_actuals(&self, org: &Organisation, opts: &ActualsOptions) -> Result<Vec<ActualsRow>> {
        check_range(opts.from, opts.to)?;
        let cplis = self.store.cplis_for_org(org)?;
        let mut actuals = WeekActuals::new(&cplis, &self.config.rules.visit_types, opts.from, opts.to);
        for week in self.store.weeks(&org.slug) {
            let (k, t) = week?;
            actuals.add_client_week(&ClientWeek {
                client: &k.client,
                level: &k.level,
                service: &k.service,
                monday: k.monday,
                visits: t.visits,
                paid_visits: t.paid_visits,
                actual_minutes: t.actual_minutes,
                frust_minutes: t.frust_minutes,
            });
        }
        reports::commissioned_vs_actuals(&cplis, &actuals, opts).map_err(|e| GatewayError::Invalid(e.to_string()))
    }

    /// Hospital incentive claims for stays that begin between `from` and `to`. Stays need every
    /// visit in order, so this reads each stored visit once (streamed, kept compact).
    pub fn hospital_incentive(&self, org: &Organisation, from: NaiveDate, to: NaiveDate) -> Result<Vec<HospitalRow>> {
        check_range(from, to)?;
        let cplis = self.store.cplis_for_org(org)?;
        let mut visits = hospital::HospitalVisits::new(&cplis, to);
        for fact in self.store.visit_facts(&org.slug) {
            visits.add(&fact?);
        }
        visits.claims(from, to).map_err(|e| GatewayError::Invalid(e.to_string()))
    }

    /// Writes a report into the organisation's `exports/` folder, atomically.
    pub fn write_export(&self, org: &Organisation, name: &str, body: &[u8]) -> Result<PathBuf> {
        let dir = self.data.exports(&org.slug);
        fs::create_dir_all(&dir).map_err(io("creating the exports folder"))?;
        let path = dir.join(name);
        self.data.write_atomically(&path, body).map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    pub fn lock_until(&self, date: chrono::NaiveDate) -> Result<Period> {
        self.store.lock_until(date)?;
        Ok(Period::containing(date, self.config.periods.first_start, self.config.periods.length_days))
    }

    /// `gateway import`: the file is copied into the organisation's spool exactly as an upload would
    /// be claimed, then processed.
    pub fn import_file(&self, org: &Organisation, path: &Path) -> Result<ImportResult> {
        let name = file_name(path)?;
        self.data.ensure_org(&org.slug).map_err(io("creating the organisation's folders"))?;
        let staged = self.data.staging().join(format!("{}.part", uuid::Uuid::new_v4()));
        fs::copy(path, &staged).map_err(io(format!("reading {}", path.display())))?;
        let spooled = self.spool_path(&org.slug, &name);
        fs::rename(&staged, &spooled).map_err(io("moving the file into the spool"))?;
        self.process_spooled(&spooled)
    }

    /// Claims a complete file from an inbox by renaming it into the spool (so it is taken once).
    pub fn claim(&self, slug: &str, path: &Path) -> Result<PathBuf> {
        self.claim_as(slug, path, &file_name(path)?)
    }

    /// Claims the file at `path` (an inbox file or a finished SFTP upload) as `name`.
    pub fn claim_as(&self, slug: &str, path: &Path, name: &str) -> Result<PathBuf> {
        fs::create_dir_all(self.data.spool(slug)).map_err(io("creating the spool"))?;
        let spooled = self.spool_path(slug, name);
        fs::rename(path, &spooled).map_err(io(format!("claiming {}", path.display())))?;
        Ok(spooled)
    }

    fn spool_path(&self, slug: &str, name: &str) -> PathBuf {
        // v7 ids sort by time, so a replay after a crash keeps the order files arrived in.
        self.data.spool(slug).join(format!("{}__{}", uuid::Uuid::now_v7(), name))
    }

    /// Judges and applies a spooled file, writes its result files, and archives it. Safe to call
    /// again for the same spooled file after a crash: an import already applied is not applied twice.
    pub fn process_spooled(&self, spooled: &Path) -> Result<ImportResult> {
        let (slug, import_id, name) = spool_parts(spooled)
            .ok_or_else(|| GatewayError::Invalid(format!("{} is not a spooled file", spooled.display())))?;
        let org = self.org(&slug)?;
        let received_at: DateTime<Utc> =
            fs::metadata(spooled).and_then(|m| m.modified()).map(DateTime::from).unwrap_or_else(|_| Utc::now());
        let incoming = Incoming { path: spooled, file_name: name.clone(), import_id: import_id.clone(), received_at };
        let result = ingest::process(&self.config, Some(&org), &incoming, Mode::Import(&self.store))?;
        if !self.store.answered(&import_id)? {
            self.write_results(&slug, &result)?;
            self.store.mark_answered(&import_id)?;
        }
        let archived = self.data.archive(&slug).join(format!("{import_id}__{name}"));
        fs::create_dir_all(self.data.archive(&slug)).map_err(io("creating the archive"))?;
        fs::rename(spooled, &archived).map_err(io("archiving the file"))?;
        tracing::info!(org = org.name, file = name, import_id, summary = result.summary(), "processed");
        Ok(result)
    }

    /// `results/NAME.result.json` and `.csv`, never overwriting an earlier result; each written
    /// aside and renamed in, so a client polling for it never reads half a file.
    fn write_results(&self, slug: &str, result: &ImportResult) -> Result<()> {
        let dir = self.data.results(slug);
        fs::create_dir_all(&dir).map_err(io("creating the results folder"))?;
        let stem = result.file.strip_suffix(".csv").or_else(|| result.file.strip_suffix(".CSV")).unwrap_or(&result.file);
        let (json, csv) = (1..)
            .map(|n| {
                let s = if n == 1 { stem.to_string() } else { format!("{stem}.{n}") };
                (dir.join(format!("{s}.result.json")), dir.join(format!("{s}.result.csv")))
            })
            .find(|(j, c)| !j.exists() && !c.exists())
            .expect("some number is free");
        self.data.write_atomically(&csv, &result.to_csv()).map_err(io("writing the result CSV"))?;
        let body = serde_json::to_vec_pretty(result).expect("results serialise");
        self.data.write_atomically(&json, &body).map_err(io("writing the result JSON"))?;
        Ok(())
    }

    /// Everything claimed but not finished (a crash, a stop): oldest first.
    pub fn spooled(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let root = self.data.spool_root();
        let Ok(orgs) = fs::read_dir(&root) else { return Ok(out) };
        for org in orgs.flatten() {
            for f in fs::read_dir(org.path()).map_err(io("reading the spool"))?.flatten() {
                if spool_parts(&f.path()).is_some() {
                    out.push(f.path());
                }
            }
        }
        out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(out)
    }

    /// Judges files without storing anything (`gateway validate`).
    pub fn validate(
        config: &Config,
        store: Option<&Store>,
        org: Option<&Organisation>,
        cplis: Option<Vec<crate::domain::Cpli>>,
        path: &Path,
    ) -> Result<ImportResult> {
        let incoming = Incoming { path, file_name: file_name(path)?, import_id: uuid::Uuid::now_v7().to_string(), received_at: Utc::now() };
        Ok(ingest::process(config, org, &incoming, Mode::Validate { store, cplis })?)
    }
}

/// The commissioned care export's name in `exports/`.
pub const COMMISSIONED_EXPORT: &str = "commissioned-care.csv";

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    if from > to {
        return Err(GatewayError::Invalid(format!("--from {from} is after --to {to}")));
    }
    Ok(())
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| GatewayError::Invalid(format!("{} is not a file", path.display())))
}

/// `spool/<slug>/<import id>__<name>` -> (slug, import id, name).
fn spool_parts(path: &Path) -> Option<(String, String, String)> {
    let name = path.file_name()?.to_str()?;
    let (id, original) = name.split_once("__")?;
    uuid::Uuid::parse_str(id).ok()?;
    let slug = path.parent()?.file_name()?.to_str()?;
    Some((slug.into(), id.into(), original.into()))
}

/// Whether a name in an inbox is a finished CSV: temporary names of SFTP clients and editors
/// (`*.filepart`, `*.part`, `*.tmp`, dot-names) wait until they are renamed to `*.csv`.
pub fn is_ready_name(name: &str) -> bool {
    !name.starts_with('.') && name.len() > 4 && name.to_ascii_lowercase().ends_with(".csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_upload_names_wait_for_the_rename() {
        assert!(is_ready_name("visits.csv"));
        assert!(is_ready_name("VISITS.CSV"));
        for n in ["visits.csv.filepart", "visits.csv.part", "visits.tmp", ".visits.csv", "visits.xlsx", ".csv"] {
            assert!(!is_ready_name(n), "{n}");
        }
    }

    #[test]
    fn spooled_names_carry_the_import_id_and_the_original_name() {
        let id = uuid::Uuid::now_v7();
        let p = PathBuf::from(format!("/d/spool/pearl-carers-ltd/{id}__my__visits.csv"));
        assert_eq!(spool_parts(&p), Some(("pearl-carers-ltd".into(), id.to_string(), "my__visits.csv".into())));
        assert_eq!(spool_parts(Path::new("/d/spool/x/visits.csv")), None);
    }
}
