//! The sled database behind the store, reopened in place after a failure: sled keeps the first I/O
//! error it meets (a full disk) and fails every later call with it until the database is opened
//! again, so without this one "no space" stopped every later file until a restart (issue 9).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use sled::{Batch, IVec, Iter};

/// sled's page cache. Its real footprint is several times this: at 32 MB a million inserts peaked
/// at 146 MB, at 16 MB at 118 MB, no slower (issue 11, `bench_ingest`'s raw phase); reports read
/// visits in key order, which a smaller cache does not slow.
pub const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// A shared handle: every clone sees the database reopened by any of them.
#[derive(Clone)]
pub(crate) struct Db {
    path: PathBuf,
    inner: Arc<RwLock<Option<sled::Db>>>,
    /// Set when sled answers with an I/O error: from then on it fails every call until reopened.
    failed: Arc<AtomicBool>,
}

fn closed() -> sled::Error {
    sled::Error::Io(std::io::Error::other("the store was closed after a failure and could not be opened again yet"))
}

impl Db {
    pub fn open(path: &Path) -> sled::Result<Db> {
        let db = Self::open_sled(path)?;
        Ok(Db { path: path.to_path_buf(), inner: Arc::new(RwLock::new(Some(db))), failed: Default::default() })
    }

    fn open_sled(path: &Path) -> sled::Result<sled::Db> {
        sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open()
    }

    /// Closes the database and opens it again, clearing the error sled keeps. Fails (and stays
    /// closed, every call answering that it is) while something still holds the old one, or while
    /// opening fails; call again later.
    pub fn reopen(&self) -> sled::Result<()> {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        // The old database must be gone before the new one takes the file lock.
        drop(guard.take());
        *guard = Some(Self::open_sled(&self.path)?);
        self.failed.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Closes it: every call answers that it is closed until [`Db::reopen`] succeeds.
    pub fn close(&self) {
        drop(self.inner.write().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Whether it is open and sled has met no I/O error since it was opened.
    pub fn is_healthy(&self) -> bool {
        !self.failed.load(Ordering::SeqCst) && self.inner.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn with<T>(&self, f: impl FnOnce(&sled::Db) -> sled::Result<T>) -> sled::Result<T> {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let out = f(guard.as_ref().ok_or_else(closed)?);
        note_failure(&self.failed, &out);
        out
    }

    pub fn get<K: AsRef<[u8]>>(&self, k: K) -> sled::Result<Option<IVec>> {
        self.with(|db| db.get(k))
    }

    pub fn contains_key<K: AsRef<[u8]>>(&self, k: K) -> sled::Result<bool> {
        self.with(|db| db.contains_key(k))
    }

    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, k: K, v: V) -> sled::Result<Option<IVec>> {
        self.with(|db| db.insert(k, v))
    }

    pub fn remove<K: AsRef<[u8]>>(&self, k: K) -> sled::Result<Option<IVec>> {
        self.with(|db| db.remove(k))
    }

    pub fn compare_and_swap<K, OV, NV>(
        &self,
        k: K,
        old: Option<OV>,
        new: Option<NV>,
    ) -> sled::Result<std::result::Result<(), sled::CompareAndSwapError>>
    where
        K: AsRef<[u8]>,
        OV: AsRef<[u8]>,
        NV: Into<IVec>,
    {
        self.with(|db| db.compare_and_swap(k, old, new))
    }

    pub fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        self.with(|db| db.apply_batch(batch))
    }

    pub fn generate_id(&self) -> sled::Result<u64> {
        self.with(|db| db.generate_id())
    }

    pub fn flush(&self) -> sled::Result<usize> {
        self.with(|db| db.flush())
    }

    /// The records from `from` to `to` (both included), in key order; as `scan_prefix`.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Scan {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(db) => Scan::Open(Box::new(db.range(from..=to)), self.failed.clone()),
            None => Scan::Closed(Some(closed())),
        }
    }

    /// The records under `prefix`, in key order. The iterator holds the database it was made on;
    /// on a closed store it yields the one error that says so.
    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Scan {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(db) => Scan::Open(Box::new(db.scan_prefix(prefix)), self.failed.clone()),
            None => Scan::Closed(Some(closed())),
        }
    }
}

fn note_failure<T>(failed: &AtomicBool, out: &sled::Result<T>) {
    if let Err(sled::Error::Io(_)) = out {
        failed.store(true, Ordering::SeqCst);
    }
}

pub(crate) enum Scan {
    Open(Box<Iter>, Arc<AtomicBool>),
    Closed(Option<sled::Error>),
}

impl Iterator for Scan {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Scan::Open(it, failed) => {
                let next = it.next();
                if let Some(out) = &next {
                    note_failure(failed, out);
                }
                next
            }
            Scan::Closed(e) => e.take().map(Err),
        }
    }
}
