//! Actuals rows in the store: the current row for each key, every earlier version, and a whole file
//! applied in one batch with its import record.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{decode, encode, key, Result, Store};
use rust_decimal::Decimal;

use crate::domain::{Actual, MatchStatus, NameKey, Slug};
use crate::outcome::ImportResult;

/// An actuals row's key (SPEC 2.2): client, service level, service and period start, as compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActualKey {
    pub ssref: String,
    pub level: NameKey,
    pub service: NameKey,
    pub period_start: NaiveDate,
}

impl ActualKey {
    pub fn new(ssref: &str, level: &str, service: &str, period_start: NaiveDate) -> ActualKey {
        ActualKey { ssref: ssref.trim().to_uppercase(), level: NameKey::new(level), service: NameKey::new(service), period_start }
    }

    fn parts(&self) -> [Vec<u8>; 4] {
        [
            self.ssref.as_bytes().to_vec(),
            self.level.as_str().as_bytes().to_vec(),
            self.service.as_str().as_bytes().to_vec(),
            self.period_start.to_string().into_bytes(),
        ]
    }

    fn current(&self, slug: &Slug) -> Vec<u8> {
        let p = self.parts();
        key(&[b"a", slug.as_bytes(), &p[0], &p[1], &p[2], &p[3]])
    }

    fn history(&self, slug: &Slug, seq: &[u8; 8]) -> Vec<u8> {
        let p = self.parts();
        key(&[b"b", slug.as_bytes(), &p[0], &p[1], &p[2], &p[3], seq])
    }
}

/// An actuals row as stored, with the import and file row that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredActual {
    pub import_id: String,
    pub row: u64,
    pub actual: Actual,
}

/// A current row whose period shares days with another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Sent earlier in the file being applied, not stored before it.
    pub in_file: bool,
}

/// One accepted row: the row it replaces (raw, for the history) and what replaces it (`None`: deleted).
pub struct ActualChange {
    pub key: ActualKey,
    pub previous: Option<sled::IVec>,
    pub new: Option<StoredActual>,
    /// No current row, but one was stored under the key and deleted: the key is known.
    pub was_deleted: bool,
}

impl Store {
    /// The current rows of `k`'s client, service level and service, of another period start than
    /// `k`'s and not `superseded` (validate: a start the file has sent or deleted since), whose period
    /// shares a day with `k.period_start..=end`, earliest first; `import_id`'s own rows are `in_file`.
    pub fn overlapping_actuals(&self, slug: &Slug, k: &ActualKey, end: NaiveDate, import_id: &str, superseded: impl Fn(NaiveDate) -> bool) -> Result<Vec<Overlap>> {
        let p = k.parts();
        let prefix = key(&[b"a", slug.as_bytes(), &p[0], &p[1], &p[2], b""]);
        let mut found = Vec::new();
        for r in self.scan::<StoredActual>(&prefix) {
            let (_, a) = r?;
            let (s, e) = (a.actual.period_start, a.actual.period_end);
            if s != k.period_start && s <= end && k.period_start <= e && !superseded(s) {
                found.push(Overlap { start: s, end: e, in_file: a.import_id == import_id });
            }
        }
        found.sort_by_key(|o| o.start);
        Ok(found)
    }

    /// The current row under a key, raw (it goes into the history unchanged when replaced).
    pub fn current_actual(&self, slug: &Slug, k: &ActualKey) -> Result<Option<sled::IVec>> {
        Ok(self.db.get(k.current(slug))?)
    }

    /// Whether an earlier version of the row under `k` is kept: with no current row, it was sent and
    /// deleted.
    pub fn actual_has_history(&self, slug: &Slug, k: &ActualKey) -> Result<bool> {
        let p = k.parts();
        let prefix = key(&[b"b", slug.as_bytes(), &p[0], &p[1], &p[2], &p[3], b""]);
        Ok(self.db.scan_prefix(prefix).next().transpose()?.is_some())
    }

    /// The organisation's current actuals rows, in key order.
    pub fn current_actuals(&self, slug: &Slug) -> impl Iterator<Item = Result<StoredActual>> + '_ {
        self.scan::<StoredActual>(&key(&[b"a", slug.as_bytes(), b""])).map(|r| r.map(|(_, a)| a))
    }

    /// Earlier versions of the organisation's actuals rows, oldest import first within a key.
    pub fn actuals_history(&self, slug: &Slug) -> impl Iterator<Item = Result<StoredActual>> + '_ {
        self.scan::<StoredActual>(&key(&[b"b", slug.as_bytes(), b""])).map(|r| r.map(|(_, a)| a))
    }

    /// Sets new match statuses and costs on current rows (CPLIs changed); no new version: the
    /// provider's data did not change. Returns how many changed match or cost.
    pub fn rematch_actuals(&self, slug: &Slug, mut rematch: impl FnMut(&Actual) -> (MatchStatus, Option<Decimal>)) -> Result<usize> {
        let mut changed = 0;
        for kv in self.db.scan_prefix(key(&[b"a", slug.as_bytes(), b""])) {
            let (k, v) = kv?;
            let mut sa: StoredActual = decode(&k, &v)?;
            let (status, cost) = rematch(&sa.actual);
            if status != sa.actual.matched || cost != sa.actual.total_cost {
                // Counted when the match or the cost changed, not only the reason's words.
                let counts = !status.same_match(&sa.actual.matched) || cost != sa.actual.total_cost;
                sa.actual.matched = status;
                sa.actual.total_cost = cost;
                // Only if nobody wrote the row since it was read.
                if self.db.compare_and_swap(&k, Some(v), Some(encode(&sa)))?.is_ok() && counts {
                    changed += 1;
                }
            }
        }
        self.flush()?;
        Ok(changed)
    }

    /// Starts an actuals file: its rows are written as they are judged, tagged with the import id,
    /// under a pending mark that a crash or a failure rolls back (as a visits file's; issue 9: a whole
    /// file's rows held for one batch took 1.44 GB for 100,000 rows).
    pub fn begin_actuals(&self, slug: &Slug, import_id: &str) -> Result<ActualBatch<'_>> {
        let seq = self.db.generate_id()?;
        self.db.insert(key(&[b"p", import_id.as_bytes()]), encode(&super::visits::Pending { slug: slug.clone(), seq }))?;
        // The mark must be on disk before any row it covers.
        self.flush()?;
        Ok(ActualBatch { store: self, slug: slug.clone(), import_id: import_id.into(), seq: seq.to_be_bytes(), written: std::cell::Cell::new(0) })
    }

    /// Undoes the actuals rows of an interrupted import `seq`: the rows it replaced come back from
    /// the history, the rows it added go.
    pub(super) fn roll_back_actuals(&self, slug: &Slug, import_id: &str, seq: &[u8; 8]) -> Result<()> {
        for kv in self.db.scan_prefix(key(&[b"b", slug.as_bytes(), b""])) {
            let (k, prev) = kv?;
            let n = k.len();
            if n > 9 && k[n - 9] == 0 && &k[n - 8..] == seq {
                let mut current = k[..n - 9].to_vec();
                current[0] = b'a';
                let mut batch = sled::Batch::default();
                batch.insert(current, prev);
                batch.remove(k);
                self.db.apply_batch(batch)?;
            }
        }
        for kv in self.db.scan_prefix(key(&[b"a", slug.as_bytes(), b""])) {
            let (k, v) = kv?;
            if decode::<StoredActual>(&k, &v)?.import_id == import_id {
                self.db.remove(k)?;
            }
        }
        Ok(())
    }
}

/// Rows written between flushes: sled keeps what it has not flushed in memory.
const FLUSH_EVERY: u64 = 10_000;

/// One actuals file being applied; `commit` makes its rows count.
pub struct ActualBatch<'s> {
    store: &'s Store,
    slug: Slug,
    import_id: String,
    seq: [u8; 8],
    written: std::cell::Cell<u64>,
}

impl ActualBatch<'_> {
    /// A current row of the same client, service level and service, of another period start, whose
    /// period shares a day with `start..=end` (this file's earlier rows included: they are written).
    pub fn overlapping(&self, k: &ActualKey, end: NaiveDate) -> Result<Vec<Overlap>> {
        self.store.overlapping_actuals(&self.slug, k, end, &self.import_id, |_| false)
    }

    /// Writes one accepted row; the row it replaces goes into the history.
    pub fn put(&self, c: &ActualChange) -> Result<()> {
        let (store, slug) = (self.store, &self.slug);
        if let Some(prev) = &c.previous {
            // Only readable records go into the history.
            decode::<StoredActual>(&c.key.current(slug), prev)?;
            store.db.insert(c.key.history(slug, &self.seq), prev.clone())?;
        }
        match &c.new {
            Some(a) => store.db.insert(c.key.current(slug), encode(a))?,
            None => store.db.remove(c.key.current(slug))?,
        };
        self.written.set(self.written.get() + 1);
        if self.written.get().is_multiple_of(FLUSH_EVERY) {
            store.flush()?;
        }
        Ok(())
    }

    /// Makes the file count: its import record and emails, and the pending mark removed, in one
    /// batch, flushed.
    pub fn commit(self, result: &ImportResult) -> Result<()> {
        let mut batch = sled::Batch::default();
        self.store.record_in(&mut batch, &self.slug, result)?;
        batch.remove(key(&[b"p", self.import_id.as_bytes()]));
        self.store.db.apply_batch(batch)?;
        self.store.flush()
    }

    /// Undoes what this file wrote so far.
    pub fn abort(self) -> Result<()> {
        self.store.roll_back_pending()
    }
}
