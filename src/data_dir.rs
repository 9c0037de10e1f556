//! The folders under `--data`: who may see what, and where a file is on its way through.

use std::io;
use std::path::{Path, PathBuf};

use crate::domain::Slug;

/// `db/`, `orgs/<slug>/{inbox,results,exports}/`, `council/{inbox,results,exports}/`, `control.sock`, `staging/`, `spool/<slug>/`, `archive/<slug>/`, `users/`, `outbox/`.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    pub fn orgs(&self) -> PathBuf {
        self.root.join("orgs")
    }

    pub fn inbox(&self, slug: &Slug) -> PathBuf {
        self.orgs().join(slug).join("inbox")
    }

    pub fn results(&self, slug: &Slug) -> PathBuf {
        self.orgs().join(slug).join("results")
    }

    pub fn exports(&self, slug: &Slug) -> PathBuf {
        self.orgs().join(slug).join("exports")
    }

    /// The council's own folder (issue 10): `council/{inbox,results,exports}`, apart from every
    /// provider's `orgs/`.
    pub fn council(&self) -> PathBuf {
        self.root.join("council")
    }

    pub fn council_inbox(&self) -> PathBuf {
        self.council().join("inbox")
    }

    pub fn council_results(&self) -> PathBuf {
        self.council().join("results")
    }

    pub fn council_exports(&self) -> PathBuf {
        self.council().join("exports")
    }

    /// The running server's control socket (issue 10): commands run while `serve` holds the store go here.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// SFTP logins, one JSON file each (read at every login, so changes apply while serving).
    pub fn users(&self) -> PathBuf {
        self.root.join("users")
    }

    /// Files written here are complete before they are renamed into a folder anybody watches or reads.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Files claimed for processing; whatever is here at start-up is finished first.
    pub fn spool(&self, slug: &Slug) -> PathBuf {
        self.root.join("spool").join(slug)
    }

    pub fn spool_root(&self) -> PathBuf {
        self.root.join("spool")
    }

    /// Where a claimed file waits: `spool/<slug>/<import id>__<name>`.
    pub fn spooled(&self, file: &SpooledFile) -> PathBuf {
        self.spool(&file.org).join(file.file_name())
    }

    /// Where a finished file is kept: `archive/<slug>/<import id>__<name>`.
    pub fn archived(&self, file: &SpooledFile) -> PathBuf {
        self.archive(&file.org).join(file.file_name())
    }

    pub fn archive(&self, slug: &Slug) -> PathBuf {
        self.root.join("archive").join(slug)
    }

    /// Emails as `.eml` files, when no SMTP server is configured.
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }

    /// Creates the folders an organisation's users and the gateway need.
    pub fn ensure_org(&self, slug: &Slug) -> io::Result<()> {
        for dir in [self.inbox(slug), self.results(slug), self.exports(slug), self.spool(slug), self.archive(slug)] {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::create_dir_all(self.staging())
    }

    /// Writes `bytes` to `dest` so that a reader sees either nothing or the whole file: written in
    /// staging, flushed, then renamed in.
    pub fn write_atomically(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(self.staging())?;
        let tmp = self.staging().join(format!("{}.tmp", uuid::Uuid::new_v4()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dest).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// A file claimed into the spool: whose it is, the import it is, and the name the provider gave it
/// (shortened to one the gateway can answer under). Its path is made from these and parsed back
/// only when the spool is read at start-up (issue 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledFile {
    pub org: Slug,
    /// A v7 UUID: they sort by time, so files are replayed in the order they arrived.
    pub import_id: uuid::Uuid,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{} is not a spooled file (spool/<organisation>/<import id>__<name>)", .path.display())]
pub struct NotSpooled {
    pub path: PathBuf,
}

impl SpooledFile {
    pub fn new(org: Slug, import_id: uuid::Uuid, name: impl Into<String>) -> SpooledFile {
        SpooledFile { org, import_id, name: name.into() }
    }

    /// `spool/<slug>/<import id>__<name>` (or the same under `archive/`) -> its parts.
    pub fn from_path(path: &Path) -> Result<SpooledFile, NotSpooled> {
        let parts = || -> Option<SpooledFile> {
            let (id, name) = path.file_name()?.to_str()?.split_once("__")?;
            let import_id = uuid::Uuid::parse_str(id).ok()?;
            let org = Slug::parse(path.parent()?.file_name()?.to_str()?).ok()?;
            Some(SpooledFile { org, import_id, name: name.into() })
        };
        parts().ok_or_else(|| NotSpooled { path: path.to_path_buf() })
    }

    /// `<import id>__<name>`: the file's name in the spool and the archive.
    pub fn file_name(&self) -> String {
        format!("{}__{}", self.import_id, self.name)
    }

    /// The import id as stored and shown.
    pub fn import_id(&self) -> String {
        self.import_id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pearl() -> Slug {
        Slug::from_name("Pearl Carers Ltd")
    }

    #[test]
    fn a_spooled_file_is_found_again_from_its_path() {
        let data = DataDir::new("/d");
        for name in ["visits.csv", "my__visits.csv", "week 1. v2..csv", "Siân’s visits – 10.10.csv", "résumé 日本.csv", ""] {
            let file = SpooledFile::new(pearl(), uuid::Uuid::now_v7(), name);
            let path = data.spooled(&file);
            assert_eq!(path.parent(), Some(Path::new("/d/spool/pearl-carers-ltd")));
            assert_eq!(SpooledFile::from_path(&path).unwrap(), file, "{name:?}");
            assert_eq!(SpooledFile::from_path(&data.archived(&file)).unwrap(), file, "{name:?}");
        }
    }

    #[test]
    fn a_path_that_is_not_a_spooled_file_is_refused() {
        let id = uuid::Uuid::now_v7();
        for p in [
            "/d/spool/pearl-carers-ltd/visits.csv".to_string(),
            "/d/spool/pearl-carers-ltd/not-a-uuid__visits.csv".into(),
            format!("/d/spool/pearl-carers-ltd/{id}.result.json"),
            format!("/d/spool/Pearl Carers/{id}__visits.csv"),
            format!("{id}__visits.csv"),
        ] {
            assert!(SpooledFile::from_path(Path::new(&p)).is_err(), "{p}");
        }
    }
}
