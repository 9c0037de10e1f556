//! The folders under `--data`: who may see what, and where a file is on its way through.

use std::io;
use std::path::{Path, PathBuf};

/// `db/`, `orgs/<slug>/{inbox,results,exports}/`, `staging/`, `spool/<slug>/`, `archive/<slug>/`, `users/`, `outbox/`.
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

    pub fn inbox(&self, slug: &str) -> PathBuf {
        self.orgs().join(slug).join("inbox")
    }

    pub fn results(&self, slug: &str) -> PathBuf {
        self.orgs().join(slug).join("results")
    }

    pub fn exports(&self, slug: &str) -> PathBuf {
        self.orgs().join(slug).join("exports")
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
    pub fn spool(&self, slug: &str) -> PathBuf {
        self.root.join("spool").join(slug)
    }

    pub fn spool_root(&self) -> PathBuf {
        self.root.join("spool")
    }

    pub fn archive(&self, slug: &str) -> PathBuf {
        self.root.join("archive").join(slug)
    }

    /// Emails as `.eml` files, when no SMTP server is configured.
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }

    /// Creates the folders an organisation's users and the gateway need.
    pub fn ensure_org(&self, slug: &str) -> io::Result<()> {
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
