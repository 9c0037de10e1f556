//! The folders under `--data`: who may see what, and where a file is on its way through.

use std::io;
use std::path::{Path, PathBuf};

use crate::domain::Slug;

/// A scratch file in `dir` (the system's temporary folder without one), read and write, unlinked at
/// once: it lives as long as the handle, and a crash leaves nothing behind.
pub fn unnamed_file(dir: Option<&Path>, what: &str) -> io::Result<std::fs::File> {
    let dir = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let path = dir.join(format!(".{what}-{}.tmp", uuid::Uuid::new_v4()));
    let file = std::fs::File::options().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// `db/`, `orgs/<slug>/{inbox,results,exports}/`, `council/{inbox,results,exports}/`, `control.sock`, `staging/`, `spool/<slug>/`, `spool/_council/`, `archive/<slug>/`, `archive/_council/`, `users/`, `outbox/`, `attachments/<slug>/`, `export-parts/<slug>/`.
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

    /// An organisation's part of the council's exports, made by the same pass over its visits as
    /// its own exports, so the council's are joined from the parts rather than made from every
    /// stored visit again: no login sees this folder.
    pub fn export_parts(&self, slug: &Slug) -> PathBuf {
        self.root.join("export-parts").join(slug)
    }

    /// The files kept with an organisation's claims (issue 12): no login sees this folder.
    pub fn attachments(&self, slug: &Slug) -> PathBuf {
        self.root.join("attachments").join(slug)
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

    /// Creates the council's folder and the folders its files go through (issue 10).
    pub fn ensure_council(&self) -> io::Result<()> {
        let council = Owner::Council;
        for dir in [self.council_inbox(), self.council_results(), self.council_exports(), self.spool_of(&council), self.archive_of(&council)] {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::create_dir_all(self.staging())
    }

    /// The inbox of whoever owns it: an organisation's or the council's.
    pub fn inbox_of(&self, owner: &Owner) -> PathBuf {
        match owner {
            Owner::Org(slug) => self.inbox(slug),
            Owner::Council => self.council_inbox(),
        }
    }

    pub fn results_of(&self, owner: &Owner) -> PathBuf {
        match owner {
            Owner::Org(slug) => self.results(slug),
            Owner::Council => self.council_results(),
        }
    }

    pub fn exports_of(&self, owner: &Owner) -> PathBuf {
        match owner {
            Owner::Org(slug) => self.exports(slug),
            Owner::Council => self.council_exports(),
        }
    }

    /// `spool/<slug>/` or `spool/_council/`.
    pub fn spool_of(&self, owner: &Owner) -> PathBuf {
        self.spool_root().join(owner.folder_name())
    }

    /// `archive/<slug>/` or `archive/_council/`.
    pub fn archive_of(&self, owner: &Owner) -> PathBuf {
        self.root.join("archive").join(owner.folder_name())
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

    /// Where a claimed file waits: `spool/<slug or _council>/<import id>__<name>`.
    pub fn spooled(&self, file: &SpooledFile) -> PathBuf {
        self.spool_of(&file.owner).join(file.file_name())
    }

    /// Where a finished file is kept: `archive/<slug or _council>/<import id>__<name>`.
    pub fn archived(&self, file: &SpooledFile) -> PathBuf {
        self.archive_of(&file.owner).join(file.file_name())
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

/// Whose folders a login sees and whose a file is: an organisation's, or the council's (issue 10).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    Org(Slug),
    Council,
}

/// The council's folder name under `spool/` and `archive/`, and its part of store keys: a slug has
/// only lower-case letters, digits and dashes, so no organisation can ever have it.
pub const COUNCIL_FOLDER: &str = "_council";

impl Owner {
    /// Its folder under `spool/` and `archive/`, and its part of store keys.
    pub fn folder_name(&self) -> &str {
        match self {
            Owner::Org(slug) => slug.as_str(),
            Owner::Council => COUNCIL_FOLDER,
        }
    }

    /// A folder name under `spool/` or `archive/` back to its owner.
    pub fn from_folder_name(name: &str) -> Option<Owner> {
        if name == COUNCIL_FOLDER {
            return Some(Owner::Council);
        }
        Slug::parse(name).ok().map(Owner::Org)
    }

    pub fn org(&self) -> Option<&Slug> {
        match self {
            Owner::Org(slug) => Some(slug),
            Owner::Council => None,
        }
    }

    pub fn is_council(&self) -> bool {
        matches!(self, Owner::Council)
    }
}

impl From<Slug> for Owner {
    fn from(slug: Slug) -> Owner {
        Owner::Org(slug)
    }
}

impl From<&Slug> for Owner {
    fn from(slug: &Slug) -> Owner {
        Owner::Org(slug.clone())
    }
}

/// An organisation's slug, or `(council)`: never a slug, so `user list` cannot mistake one for the other.
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Org(slug) => write!(f, "{slug}"),
            Owner::Council => f.write_str("(council)"),
        }
    }
}

impl Owner {
    /// In a sentence: the organisation's slug, or "the council".
    pub fn in_words(&self) -> String {
        match self {
            Owner::Org(slug) => slug.to_string(),
            Owner::Council => "the council".into(),
        }
    }
}

/// A file claimed into the spool: whose it is, the import it is, and the name the provider gave it
/// (shortened to one the gateway can answer under). Its path is made from these and parsed back
/// only when the spool is read at start-up (issue 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledFile {
    pub owner: Owner,
    /// A v7 UUID: they sort by time, so files are replayed in the order they arrived.
    pub import_id: uuid::Uuid,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{} is not a spooled file (spool/<organisation or _council>/<import id>__<name>)", .path.display())]
pub struct NotSpooled {
    pub path: PathBuf,
}

impl SpooledFile {
    pub fn new(owner: impl Into<Owner>, import_id: uuid::Uuid, name: impl Into<String>) -> SpooledFile {
        SpooledFile { owner: owner.into(), import_id, name: name.into() }
    }

    /// `spool/<slug>/<import id>__<name>` (or the same under `archive/`) -> its parts.
    pub fn from_path(path: &Path) -> Result<SpooledFile, NotSpooled> {
        let parts = || -> Option<SpooledFile> {
            let (id, name) = path.file_name()?.to_str()?.split_once("__")?;
            let import_id = uuid::Uuid::parse_str(id).ok()?;
            let owner = Owner::from_folder_name(path.parent()?.file_name()?.to_str()?)?;
            Some(SpooledFile { owner, import_id, name: name.into() })
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
    fn a_council_file_is_spooled_apart_from_every_organisation_and_found_again() {
        let data = DataDir::new("/d");
        let file = SpooledFile::new(Owner::Council, uuid::Uuid::now_v7(), "cplis.csv");
        let path = data.spooled(&file);
        assert_eq!(path.parent(), Some(Path::new("/d/spool/_council")));
        assert!(Slug::parse(COUNCIL_FOLDER).is_err(), "no organisation can have the council's folder");
        assert_eq!(SpooledFile::from_path(&path).unwrap(), file);
        assert_eq!(SpooledFile::from_path(&data.archived(&file)).unwrap(), file);
        // An organisation named "Council" is an organisation, not the council.
        let org = SpooledFile::new(Slug::from_name("Council"), uuid::Uuid::now_v7(), "cplis.csv");
        assert_eq!(SpooledFile::from_path(&data.spooled(&org)).unwrap().owner, Owner::Org(Slug::from_name("Council")));
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
