//! The sled store: one tree, keys prefixed by what they hold; a file is applied all or nothing.
//!
//! Keys (`\0` separates parts):
//! `o\0slug` organisation · `q\0cpli_id` CPLI · `v\0slug\0visit_ref` current visit (or its deletion) ·
//! `h\0slug\0visit_ref\0seq` an earlier version, replaced by import `seq` · `w\0slug\0client\0level\0service\0monday`
//! a client's planned minutes that week · `c\0slug\0carer_ref` carer · `i\0import_id` a finished import's
//! result (counts and first issues) · `r\0import_id` its result files in place · `u\0slug\0import_id` the
//! result file names an import committed but not yet answered holds · `p\0import_id` an import in progress ·
//! `m\0name` settings the council changes at run time (`m\0rematch`: organisations a cut-short CPLI
//! load has yet to match again) · `k\0slug\0email` a subscribed contact ·
//! (the council's files, issue 10, hold `_council` where a slug would be: no slug can be that) ·
//! `e\0h\0id\0email` a file's email held until its result files are in place · `e\0w\0id\0email` an
//! email waiting to be sent (id: the import id, or `digest-…`) · `e\0s\0id\0email`
//! one sent · `g\0slug\0email\0import_id` a file waiting for a contact's daily digest.
//! `l\0time\0until` a lock that moved the locked date forward (who, when) · `k\0\0email` a council
//! contact (no organisation: an empty slug part, which no organisation has) · `m\0council_summary` the
//! last council summary queued (issue 10).
//! `m\0name` settings the council changes at run time · `a\0slug\0SSREF\0level\0service\0period_start` current
//! actuals row (level and service as compared, period start `YYYY-MM-DD`) · `b\0slug\0SSREF\0level\0service\0period_start\0seq`
//! an earlier version of it, replaced by the import with batch number `seq`.
//! `j\0slug\0claim_ref` a one-off claim, `m\0claim_seq` the last claim id given (issue 12, `claims.rs`).
//! `d\0slug\0id` a dispute, `m\0dispute_seq` the last dispute id given (issue 12, `disputes.rs`).
//! `x\0slug\0carer_ref` a carer deleted (its deletion sent again is not DELETE_UNKNOWN).
//!
//! A visits file is too big for one sled batch in memory, so its rows are written as they are judged,
//! each tagged with the import id, and the import is committed by one small batch (the result, the
//! week totals, the pending marker removed) that is flushed before anybody is told. On opening, an
//! import still marked pending is rolled back from the history it wrote. The import's emails are
//! queued in that same commit batch (`mail.rs`).

mod claims;
mod db;
mod disputes;
mod mail;
mod actuals;
mod visits;
mod visit_codec;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{de::DeserializeOwned, Serialize};

use crate::data_dir::Owner;
use crate::domain::{Carer, Cpli, LockRecord, LockedBy, LockedUntil, Organisation, Slug};
use crate::outcome::{Answer, ImportResult};

pub use disputes::Record;
pub use actuals::{ActualBatch, ActualChange, ActualKey, Overlap, StoredActual};
pub use visits::{fact_of_visit, StoredVisit, VisitBatch, WeekKey, WeekTotals};
/// The store's sled cache, for benchmarks that compare with sled on its own.
pub use db::CACHE_BYTES as SLED_CACHE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another gateway process that takes no commands (another command, such as a long `import`, is running): try again when it has finished")]
    InUse { path: PathBuf },
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("the store holds an unreadable record at {key}: {source}")]
    Corrupt { key: String, source: serde_json::Error },
    #[error("the store holds an unreadable visit at {key}: {source}")]
    CorruptVisit { key: String, source: visit_codec::CodecError },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// `m\0rematch`: the organisations a CPLI load has yet to match again.
const REMATCH_PENDING: &[u8] = b"rematch";

#[derive(Clone)]
pub struct Store {
    db: db::Db,
    /// Each organisation's CPLIs as last read, until a CPLI load or an organisation changes them.
    cplis: std::sync::Arc<std::sync::Mutex<Kept<Slug, Vec<Cpli>>>>,
    /// Organisations' current visits of one type (the H visits), once read ([`visits::OfType`]).
    of_type: std::sync::Arc<std::sync::Mutex<visits::OfType>>,
}

/// What the store keeps in memory of what it read once, by key, for a process that reads it again
/// and again (`serve`). `generation` counts the changes that make it forget, so that what was read
/// while one happened is not kept.
pub(crate) struct Kept<K, V> {
    generation: u64,
    by: std::collections::HashMap<K, V>,
}

impl<K, V> Default for Kept<K, V> {
    fn default() -> Self {
        Kept { generation: 0, by: Default::default() }
    }
}

impl<K: Eq + std::hash::Hash, V: Clone> Kept<K, V> {
    /// What is kept for `k`, or the generation to hand to [`Kept::keep`] after reading it.
    fn get(&self, k: &K) -> std::result::Result<V, u64> {
        self.by.get(k).cloned().ok_or(self.generation)
    }

    /// Keeps what was read since `get` answered `generation`, unless something changed meanwhile.
    fn keep(&mut self, generation: u64, k: K, v: V) {
        if self.generation == generation {
            self.by.insert(k, v);
        }
    }

    fn forget(&mut self) {
        self.generation += 1;
        self.by.clear();
    }
}

pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn decode<T: DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|source| StoreError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), source })
}

/// `l\0<time>\0<until>`: the time as fixed-width RFC 3339 in UTC, so records sort by it.
fn lock_record_key(r: &LockRecord) -> Vec<u8> {
    let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    key(&[b"l", at.as_bytes(), r.until.to_string().as_bytes()])
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records serialise")
}

#[cfg(test)]
impl Store {
    /// Opens a store a test has just dropped: sled's flusher thread lets go of the file lock a
    /// moment after the store is dropped, so a second open at once can find it still held.
    pub(crate) fn open_after_drop(path: &Path) -> Store {
        let reopened = (0..250).find_map(|_| match Store::open(path) {
            Err(StoreError::InUse { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            other => Some(other),
        });
        reopened.expect("the store is let go within 5 s").expect("the store opens")
    }
}

impl Store {
    /// Opens (creating) the store and rolls back any import a crash left half-written.
    pub fn open(path: &Path) -> Result<Store> {
        let db = db::Db::open(path).map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                StoreError::InUse { path: path.to_path_buf() }
            }
            other => StoreError::Sled(other),
        })?;
        let store = Store { db, cplis: Default::default(), of_type: Default::default() };
        store.roll_back_pending()?;
        Ok(store)
    }

    /// Opens the database again after a failure (a full disk), clearing the error sled keeps until
    /// then, and rolls back the import that the failure cut short; without this every later file
    /// failed until a restart (issue 9). Fails while the database cannot be opened yet.
    pub fn recover(&self) -> Result<()> {
        self.db.reopen()?;
        self.forget_cplis();
        self.of_type().forget();
        let rolled_back = self.roll_back_pending().and_then(|()| self.flush());
        if rolled_back.is_err() {
            // Still failing (no space yet): closed again, so nothing is written half rolled back.
            self.db.close();
        }
        rolled_back
    }

    /// Whether the database is open and has met no I/O error since: after one (a full disk) it
    /// fails every call until [`Store::recover`] opens it again.
    pub fn is_healthy(&self) -> bool {
        self.db.is_healthy()
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        self.db.get(k)?.map(|v| decode(k, &v)).transpose()
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> impl Iterator<Item = Result<(sled::IVec, T)>> + '_ {
        self.db.scan_prefix(prefix).map(|kv| {
            let (k, v) = kv?;
            let t = decode(&k, &v)?;
            Ok((k, t))
        })
    }

    // Organisations.

    pub fn put_org(&self, org: &Organisation) -> Result<()> {
        let put = self.db.insert(key(&[b"o", org.slug.as_bytes()]), encode(org));
        self.forget_cplis();
        put?;
        Ok(())
    }

    /// By name (case, spaces and dash kind ignored) or by folder name.
    pub fn org(&self, name_or_slug: &str) -> Result<Option<Organisation>> {
        // A slug typed in capitals is the same folder's (slugs are lower case).
        if let Ok(slug) = Slug::parse(&name_or_slug.trim().to_ascii_lowercase()) {
            if let Some(o) = self.org_by_slug(&slug)? {
                return Ok(Some(o));
            }
        }
        Ok(self.orgs()?.into_iter().find(|o| o.is_named(name_or_slug)))
    }

    /// The organisation whose folders and keys are under `slug`.
    pub fn org_by_slug(&self, slug: &Slug) -> Result<Option<Organisation>> {
        self.get::<Organisation>(&key(&[b"o", slug.as_bytes()]))
    }

    pub fn orgs(&self) -> Result<Vec<Organisation>> {
        self.scan(b"o\0").map(|r| r.map(|(_, o)| o)).collect()
    }

    // CPLIs.

    /// Upserts by CPLIID, with the organisations the extract names, in one batch that also marks
    /// those organisations' stored rows as waiting to be matched again (cleared by
    /// [`Store::rematched`]), so a load cut short is finished by the next start (issue 9); returns
    /// how many CPLIs were new.
    pub fn store_extract(&self, orgs: &[Organisation], cplis: &[Cpli]) -> Result<usize> {
        let (batch, new) = self.extract_batch(orgs, cplis)?;
        let applied = self.db.apply_batch(batch);
        self.forget_cplis();
        applied?;
        Ok(new)
    }

    /// [`Store::store_extract`] for an extract the council dropped (issue 10), with the import's
    /// record in the same batch: a replay after a crash finds it and does not load the file again.
    /// No email is queued: the council hears of its files in its daily summary.
    pub fn store_council_extract(&self, orgs: &[Organisation], cplis: &[Cpli], result: &ImportResult) -> Result<usize> {
        let (mut batch, new) = self.extract_batch(orgs, cplis)?;
        self.council_record_in(&mut batch, result);
        let applied = self.db.apply_batch(batch);
        self.forget_cplis();
        applied?;
        Ok(new)
    }

    /// Records a council file's result (a refused extract, or the counts completed after matching
    /// again), flushed.
    pub fn record_council_import(&self, result: &ImportResult) -> Result<()> {
        let mut batch = sled::Batch::default();
        self.council_record_in(&mut batch, result);
        self.db.apply_batch(batch)?;
        self.flush()
    }

    fn council_record_in(&self, batch: &mut sled::Batch, result: &ImportResult) {
        let mut kept = result.clone();
        kept.issues.truncate(crate::outcome::KEPT_ISSUES);
        batch.insert(key(&[b"i", result.import_id.as_bytes()]), encode(&kept));
        if let Some(answer) = &result.answer {
            batch.insert(key(&[b"u", Owner::Council.folder_name().as_bytes(), result.import_id.as_bytes()]), encode(answer));
        }
    }

    /// How many of these CPLIs are stored already (a load updates them rather than adding them).
    pub fn cplis_stored(&self, cplis: &[Cpli]) -> Result<usize> {
        let mut stored = 0;
        for c in cplis {
            if self.db.contains_key(key(&[b"q", c.cpli_id.as_bytes()]))? {
                stored += 1;
            }
        }
        Ok(stored)
    }

    fn extract_batch(&self, orgs: &[Organisation], cplis: &[Cpli]) -> Result<(sled::Batch, usize)> {
        let mut batch = sled::Batch::default();
        let before = self.rematch_pending()?;
        let mut pending = before.clone();
        let mut wait = |slug: &Slug| {
            if !pending.contains(slug) {
                pending.push(slug.clone());
            }
        };
        for org in orgs {
            batch.insert(key(&[b"o", org.slug.as_bytes()]), encode(org));
            wait(&org.slug);
        }
        let known = self.orgs()?;
        let mut new = 0;
        for c in cplis {
            let k = key(&[b"q", c.cpli_id.as_bytes()]);
            match self.db.get(&k)? {
                None => new += 1,
                // A package moved to another organisation: the one it leaves has rows matched to
                // it, to be matched again too (and its exports rewritten).
                Some(old) => {
                    let old: Cpli = decode(&k, &old)?;
                    if let Some(former) = known.iter().find(|o| o.is_named(&old.organisation_name) && !o.is_named(&c.organisation_name)) {
                        wait(&former.slug);
                    }
                }
            }
            batch.insert(k, encode(c));
        }
        if pending != before {
            batch.insert(key(&[b"m", REMATCH_PENDING]), encode(&pending));
        }
        Ok((batch, new))
    }

    /// CPLIs alone, upserted by CPLIID in one batch; returns how many were new.
    pub fn upsert_cplis(&self, cplis: &[Cpli]) -> Result<usize> {
        self.store_extract(&[], cplis)
    }

    /// Organisations (slugs) whose stored visits and actuals rows still wait to be matched against
    /// the CPLIs of a load that was cut short.
    pub fn rematch_pending(&self) -> Result<Vec<Slug>> {
        Ok(self.get(&key(&[b"m", REMATCH_PENDING]))?.unwrap_or_default())
    }

    /// Every pending organisation has been matched again.
    pub fn rematched(&self) -> Result<()> {
        self.db.remove(key(&[b"m", REMATCH_PENDING]))?;
        self.flush()
    }

    /// The organisation's CPLIs. Finding them reads every stored CPLI (they are kept by CPLIID), so
    /// each organisation's are kept in memory once read, until the next CPLI load: a file costs no
    /// pass over the council's whole extract (issue 10, bursts).
    pub fn cplis_for_org(&self, org: &Organisation) -> Result<Vec<Cpli>> {
        let generation = match self.kept_cplis().get(&org.slug) {
            Ok(cplis) => return Ok(cplis),
            Err(generation) => generation,
        };
        let mut out = Vec::new();
        for r in self.scan::<Cpli>(b"q\0") {
            let (_, c) = r?;
            if org.is_named(&c.organisation_name) {
                out.push(c);
            }
        }
        self.kept_cplis().keep(generation, org.slug.clone(), out.clone());
        Ok(out)
    }

    fn kept_cplis(&self) -> std::sync::MutexGuard<'_, Kept<Slug, Vec<Cpli>>> {
        self.cplis.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After anything that changes which CPLIs an organisation has.
    fn forget_cplis(&self) {
        self.kept_cplis().forget();
    }

    // Settings the council changes at run time.

    pub fn locked_until(&self) -> Result<Option<LockedUntil>> {
        Ok(self.get::<NaiveDate>(&key(&[b"m", b"locked_until"]))?.map(LockedUntil))
    }

    /// Locks by hand (see [`Store::advance_lock`]).
    pub fn lock_until(&self, date: NaiveDate) -> Result<()> {
        self.advance_lock(date, LockedBy::Hand, chrono::Utc::now()).map(drop)
    }

    /// Moves the lock forward to `date`, recording who did it and when, in one batch, flushed. A
    /// lock never moves back (issue 10: a finalised period stays finalised): an earlier or equal
    /// date changes nothing and returns `None`.
    pub fn advance_lock(&self, date: NaiveDate, by: LockedBy, at: chrono::DateTime<chrono::Utc>) -> Result<Option<LockRecord>> {
        if self.locked_until()?.is_some_and(|l| l.locks(date)) {
            return Ok(None);
        }
        let record = LockRecord { at, until: date, by };
        let mut batch = sled::Batch::default();
        batch.insert(key(&[b"m", b"locked_until"]), encode(&date));
        batch.insert(lock_record_key(&record), encode(&record));
        self.db.apply_batch(batch)?;
        self.flush()?;
        Ok(Some(record))
    }

    /// The locks made at or after `from` and before `to`, oldest first.
    pub fn locks_between(&self, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> Result<Vec<LockRecord>> {
        let mut out = Vec::new();
        for r in self.scan::<LockRecord>(b"l\0") {
            let (_, l) = r?;
            if l.at >= from && l.at < to {
                out.push(l);
            }
        }
        Ok(out)
    }

    // Imports.

    pub fn import_result(&self, import_id: &str) -> Result<Option<ImportResult>> {
        self.get(&key(&[b"i", import_id.as_bytes()]))
    }

    /// Every finished import's recorded result (its first `KEPT_ISSUES` issues), oldest first: import
    /// ids are v7 UUIDs, which sort by time.
    pub fn imports(&self) -> impl Iterator<Item = Result<ImportResult>> + '_ {
        self.scan::<ImportResult>(&key(&[b"i", b""])).map(|r| r.map(|(_, i)| i))
    }

    // Carers.

    pub fn carer_refs(&self, slug: &Slug) -> Result<HashSet<String>> {
        self.scan::<Carer>(&key(&[b"c", slug.as_bytes(), b""])).map(|r| r.map(|(_, c)| c.carer_ref)).collect()
    }

    /// The CarerRefs the organisation deleted and has not sent again.
    pub fn deleted_carer_refs(&self, slug: &Slug) -> Result<HashSet<String>> {
        let prefix = key(&[b"x", slug.as_bytes(), b""]);
        self.db.scan_prefix(&prefix).map(|kv| Ok(String::from_utf8_lossy(&kv?.0[prefix.len()..]).into_owned())).collect()
    }

    pub fn has_carer(&self, slug: &Slug, carer_ref: &str) -> Result<bool> {
        Ok(self.db.contains_key(key(&[b"c", slug.as_bytes(), carer_ref.as_bytes()]))?)
    }

    /// A carers file in one batch with its import record and its emails, flushed.
    pub fn commit_carers(&self, slug: &Slug, upserts: &[Carer], deletes: &[String], result: &ImportResult) -> Result<()> {
        let mut batch = sled::Batch::default();
        for c in upserts {
            batch.insert(key(&[b"c", slug.as_bytes(), c.carer_ref.as_bytes()]), encode(c));
            batch.remove(key(&[b"x", slug.as_bytes(), c.carer_ref.as_bytes()]));
        }
        for d in deletes {
            batch.remove(key(&[b"c", slug.as_bytes(), d.as_bytes()]));
            batch.insert(key(&[b"x", slug.as_bytes(), d.as_bytes()]), &[]);
        }
        self.record_in(&mut batch, slug, result)?;
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Adds an import's record to its commit batch: the result (counts and first issues, never
    /// every issue: issue 9), the result file names it holds until answered, and its emails.
    pub(crate) fn record_in(&self, batch: &mut sled::Batch, slug: &Slug, result: &ImportResult) -> Result<()> {
        let mut kept = result.clone();
        kept.issues.truncate(crate::outcome::KEPT_ISSUES);
        batch.insert(key(&[b"i", result.import_id.as_bytes()]), encode(&kept));
        if let Some(answer) = &result.answer {
            batch.insert(key(&[b"u", slug.as_bytes(), result.import_id.as_bytes()]), encode(answer));
        }
        self.queue_answers(batch, slug, result)
    }

    /// Whether the result files of an import are in place (a replay must not write them twice).
    pub fn answered(&self, import_id: &str) -> Result<bool> {
        Ok(self.db.contains_key(key(&[b"r", import_id.as_bytes()]))?)
    }

    /// The result files are in place: the names are no longer held, and the import's emails, held
    /// until now so that none leaves before its result file exists (issue 9), may be sent.
    pub fn mark_answered(&self, slug: &Slug, import_id: &str) -> Result<()> {
        self.mark_answered_for(&Owner::Org(slug.clone()), import_id)
    }

    /// [`Store::mark_answered`] for an organisation's file or the council's.
    pub fn mark_answered_for(&self, owner: &Owner, import_id: &str) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(key(&[b"r", import_id.as_bytes()]), &[]);
        batch.remove(key(&[b"u", owner.folder_name().as_bytes(), import_id.as_bytes()]));
        self.release_held(&mut batch, import_id)?;
        // Not flushed on its own (issue 10: one fsync less per file in a burst): the next import's
        // flush, or sled's own within half a second, makes it durable. Lost in a crash, it is only
        // done again: the replay finds the result files in place and releases the emails once more
        // (once the file is archived, the next start does: `Gateway::mark_archived_answered`), and
        // an email whose sending was recorded had this mark flushed before it (one log, in order).
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Result file names held by imports of the organisation committed but not yet answered.
    pub fn held_answers(&self, slug: &Slug) -> Result<Vec<Answer>> {
        self.held_answers_for(&Owner::Org(slug.clone()))
    }

    /// [`Store::held_answers`] for an organisation's files or the council's.
    pub fn held_answers_for(&self, owner: &Owner) -> Result<Vec<Answer>> {
        self.scan::<Answer>(&key(&[b"u", owner.folder_name().as_bytes(), b""])).map(|r| r.map(|(_, a)| a)).collect()
    }

    /// Every import committed but not yet answered, whoever's file it is.
    pub fn held_answers_everywhere(&self) -> Result<Vec<(Owner, String, Answer)>> {
        let mut out = Vec::new();
        for kv in self.scan::<Answer>(b"u\0") {
            let (k, answer) = kv?;
            let mut parts = k[2..].split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned());
            if let (Some(owner), Some(import_id)) = (parts.next().as_deref().and_then(Owner::from_folder_name), parts.next()) {
                out.push((owner, import_id, answer));
            }
        }
        Ok(out)
    }

    /// Records a file that failed whole (nothing else is stored), so a replay does not judge it again,
    /// with its emails in the same batch.
    pub fn record_import(&self, slug: &Slug, result: &ImportResult) -> Result<()> {
        let mut batch = sled::Batch::default();
        self.record_in(&mut batch, slug, result)?;
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Undoes every import a failure left half-written (issue 9: at once, not at the next start).
    pub fn roll_back_unfinished(&self) -> Result<()> {
        self.roll_back_pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_never_moves_back_and_each_move_is_recorded_with_who_made_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let t0 = chrono::Utc::now();
        let first = s.advance_lock(d("2022-10-30"), LockedBy::Schedule, t0).unwrap();
        assert_eq!(first, Some(LockRecord { at: t0, until: d("2022-10-30"), by: LockedBy::Schedule }));
        let t1 = t0 + chrono::Duration::seconds(1);
        assert_eq!(s.advance_lock(d("2022-10-02"), LockedBy::Hand, t1).unwrap(), None, "earlier");
        assert_eq!(s.advance_lock(d("2022-10-30"), LockedBy::Hand, t1).unwrap(), None, "the same");
        assert_eq!(s.locked_until().unwrap(), Some(LockedUntil(d("2022-10-30"))));
        let t2 = t0 + chrono::Duration::seconds(2);
        assert!(s.advance_lock(d("2022-11-27"), LockedBy::Hand, t2).unwrap().is_some());
        let locks = s.locks_between(t0, t2 + chrono::Duration::seconds(1)).unwrap();
        assert_eq!(locks.iter().map(|l| (l.until, l.by)).collect::<Vec<_>>(), [(d("2022-10-30"), LockedBy::Schedule), (d("2022-11-27"), LockedBy::Hand)]);
        assert_eq!(s.locks_between(t1, t2).unwrap(), [], "the time's end is not in it");
    }

    #[test]
    fn an_organisation_is_found_by_its_name_or_its_slug_in_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        s.put_org(&Organisation::new("Pearl Carers Ltd", None)).unwrap();
        for asked in ["Pearl Carers Ltd", "pearl carers ltd", "pearl-carers-ltd", "PEARL-CARERS-LTD", " Pearl-Carers-Ltd "] {
            assert_eq!(s.org(asked).unwrap().map(|o| o.name), Some("Pearl Carers Ltd".to_string()), "{asked}");
        }
        assert_eq!(s.org("pearl-carers").unwrap(), None);
    }

    #[test]
    fn an_organisations_cplis_kept_in_memory_follow_every_load() {
        use crate::reports::actuals::tests::cpli;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let pearl = Organisation::new("Pearl Carers Ltd", None);
        let ids = |cplis: Vec<Cpli>| cplis.into_iter().map(|c| (c.cpli_id, c.unit_cost.to_string())).collect::<Vec<_>>();
        s.store_extract(std::slice::from_ref(&pearl), &[cpli("1", "A1", "DAPL", d(2022, 10, 3), None, "2", "20")]).unwrap();
        assert_eq!(ids(s.cplis_for_org(&pearl).unwrap()), [("1".into(), "20".into())]);
        // Read again from memory; then a load adds one and changes the other's unit cost.
        assert_eq!(ids(s.cplis_for_org(&pearl).unwrap()), [("1".into(), "20".into())]);
        s.store_extract(&[], &[cpli("1", "A1", "DAPL", d(2022, 10, 3), None, "2", "21.5"), cpli("2", "A2", "DAPL", d(2022, 10, 3), None, "1", "20")]).unwrap();
        assert_eq!(ids(s.cplis_for_org(&pearl).unwrap()), [("1".into(), "21.5".into()), ("2".into(), "20".into())]);
        let result = ImportResult::new("council.csv", "i1", None, chrono::Utc::now().to_rfc3339());
        s.store_council_extract(&[], &[cpli("3", "A3", "DAPL", d(2022, 10, 3), None, "1", "20")], &result).unwrap();
        assert_eq!(s.cplis_for_org(&pearl).unwrap().len(), 3, "a council extract dropped in its inbox too");
    }
}
