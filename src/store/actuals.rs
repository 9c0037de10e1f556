//! Actuals rows in the store: the current row for each key, every earlier version, and a whole file
//! applied in one batch with its import record.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{decode, encode, key, Result, Store};
use rust_decimal::Decimal;

use crate::domain::{Actual, MatchStatus, NameKey};
use crate::ingest::ImportResult;

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

    fn current(&self, slug: &str) -> Vec<u8> {
        let p = self.parts();
        key(&[b"a", slug.as_bytes(), &p[0], &p[1], &p[2], &p[3]])
    }

    fn history(&self, slug: &str, seq: &[u8; 8]) -> Vec<u8> {
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

/// One accepted row: the row it replaces (raw, for the history) and what replaces it (`None`: deleted).
pub struct ActualChange {
    pub key: ActualKey,
    pub previous: Option<sled::IVec>,
    pub new: Option<StoredActual>,
}

impl Store {
    /// The current row under a key, raw (it goes into the history unchanged when replaced).
    pub fn current_actual(&self, slug: &str, k: &ActualKey) -> Result<Option<sled::IVec>> {
        Ok(self.db.get(k.current(slug))?)
    }

    /// The organisation's current actuals rows, in key order.
    pub fn current_actuals(&self, slug: &str) -> impl Iterator<Item = Result<StoredActual>> + '_ {
        self.scan::<StoredActual>(&key(&[b"a", slug.as_bytes(), b""])).map(|r| r.map(|(_, a)| a))
    }

    /// Earlier versions of the organisation's actuals rows, oldest import first within a key.
    pub fn actuals_history(&self, slug: &str) -> impl Iterator<Item = Result<StoredActual>> + '_ {
        self.scan::<StoredActual>(&key(&[b"b", slug.as_bytes(), b""])).map(|r| r.map(|(_, a)| a))
    }

    /// Sets new match statuses and costs on current rows (CPLIs changed); no new version: the
    /// provider's data did not change. Returns how many changed.
    pub fn rematch_actuals(&self, slug: &str, mut rematch: impl FnMut(&Actual) -> (MatchStatus, Option<Decimal>)) -> Result<usize> {
        let mut changed = 0;
        for kv in self.db.scan_prefix(key(&[b"a", slug.as_bytes(), b""])) {
            let (k, v) = kv?;
            let mut sa: StoredActual = decode(&k, &v)?;
            let (status, cost) = rematch(&sa.actual);
            if status != sa.actual.matched || cost != sa.actual.total_cost {
                sa.actual.matched = status;
                sa.actual.total_cost = cost;
                // Only if nobody wrote the row since it was read.
                if self.db.compare_and_swap(&k, Some(v), Some(encode(&sa)))?.is_ok() {
                    changed += 1;
                }
            }
        }
        self.flush()?;
        Ok(changed)
    }

    /// A whole actuals file in one batch with its import record, flushed: all of it or none.
    /// An actuals file holds a row per client and period, so its changes fit one batch in memory.
    pub fn commit_actuals(&self, slug: &str, changes: &[ActualChange], result: &ImportResult) -> Result<()> {
        let seq = self.db.generate_id()?.to_be_bytes();
        let mut batch = sled::Batch::default();
        for c in changes {
            if let Some(prev) = &c.previous {
                // Only readable records go into the history.
                decode::<StoredActual>(&c.key.current(slug), prev)?;
                batch.insert(c.key.history(slug, &seq), prev.clone());
            }
            match &c.new {
                Some(a) => batch.insert(c.key.current(slug), encode(a)),
                None => batch.remove(c.key.current(slug)),
            }
        }
        self.record_in(&mut batch, slug, result)?;
        self.db.apply_batch(batch)?;
        self.flush()
    }
}
