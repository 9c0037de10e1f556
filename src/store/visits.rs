//! Visits in the store: the current set, every earlier version, week totals, and all-or-nothing imports.

use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{decode, encode, key, visit_codec, Result, Store, StoreError};
use crate::domain::{Duration, MatchStatus, Slug, Visit};
use crate::reports::VisitFact;
use crate::outcome::ImportResult;

/// A visit as stored: the import that wrote it, and the visit, or `None` once deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVisit {
    pub visit_ref: String,
    pub import_id: String,
    /// The row of that import's file it came from.
    pub row: u64,
    pub visit: Option<Visit>,
}

/// A client's planned time for one service level and service in one Monday-start week.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeekKey {
    pub client: Arc<str>,
    pub level: Arc<str>,
    pub service: Arc<str>,
    pub monday: NaiveDate,
}

impl WeekKey {
    fn bytes(&self, slug: &Slug) -> Vec<u8> {
        let monday = self.monday.to_string();
        key(&[b"w", slug.as_bytes(), self.client.as_bytes(), self.level.as_bytes(), self.service.as_bytes(), monday.as_bytes()])
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekTotals {
    pub planned_minutes: i64,
    /// Visits of type E that carry a comment: such a week is explained and not judged.
    pub commented_exceptional: i64,
    // The week's actuals (SPEC 5), kept here as visits arrive so the reports read one record per
    // client and week instead of every visit (issue 5: the report over 2 million visits in < 2 s).
    /// Visits of any type: a week with none has no actuals.
    #[serde(default)]
    pub visits: i64,
    /// Visits of a type the provider is paid for.
    #[serde(default)]
    pub paid_visits: i64,
    /// Delivered minutes of the paid delivered-based types (DHS, DHF, E).
    #[serde(default)]
    pub actual_minutes: i64,
    /// Planned minutes of the paid types that were not delivered (C, U).
    #[serde(default)]
    pub frust_minutes: i64,
}

impl WeekTotals {
    pub fn plus(self, d: WeekTotals) -> WeekTotals {
        WeekTotals {
            planned_minutes: self.planned_minutes + d.planned_minutes,
            commented_exceptional: self.commented_exceptional + d.commented_exceptional,
            visits: self.visits + d.visits,
            paid_visits: self.paid_visits + d.paid_visits,
            actual_minutes: self.actual_minutes + d.actual_minutes,
            frust_minutes: self.frust_minutes + d.frust_minutes,
        }
    }
}

/// Week totals as stored: like visits, written as the file goes and tagged with the import, with the
/// totals they replaced so an interrupted import can be rolled back.
/// The mark that the week totals count visit lengths to the nearest minute (`Store::weeks_rounded`).
const WEEKS_ROUNDED: &[u8] = b"weeks_rounded";

#[derive(Serialize, Deserialize)]
struct StoredWeek {
    import_id: String,
    totals: WeekTotals,
    before: Option<WeekTotals>,
}

/// An import in progress (visits or actuals): what a rollback needs.
#[derive(Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) slug: Slug,
    pub(super) seq: u64,
}

/// One visits file being applied. Rows are written as they come; `commit` makes them count.
/// With `write` false (validate) nothing is written and reads see the store as it is.
pub struct VisitBatch<'s> {
    /// The store and the organisation's slug; `None` for offline validation: nothing is known and
    /// nothing is written.
    at: Option<(&'s Store, Slug)>,
    import_id: String,
    seq: [u8; 8],
    write: bool,
    /// The organisation held no visit when the import began. No row of the file can then find a
    /// stored one (a VisitRef on two rows rejects both), so none is looked up: issue 11, a sled
    /// read that finds nothing cost more than the write (12,300 instructions a row against 8,400).
    fresh: bool,
    /// The stored VisitRefs between the file's least and greatest, when they were few enough to
    /// walk ([`VisitBatch::expect_refs`]): a VisitRef in that range and not among them is known to
    /// be new without a read.
    known: Option<Known>,
}

/// The VisitRefs stored from `least` to `greatest`, as hashes, and those this import has written.
struct Known {
    least: Vec<u8>,
    greatest: Vec<u8>,
    refs: std::sync::Mutex<hashbrown::HashSet<u64>>,
}

impl Known {
    fn hash(visit_ref: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(0x5eed).hash_one(visit_ref)
    }

    /// Whether the VisitRef is surely not stored (a hash shared with a stored one only costs a read).
    fn rules_out(&self, visit_ref: &str) -> bool {
        let r = visit_ref.as_bytes();
        (self.least.as_slice()..=self.greatest.as_slice()).contains(&r)
            && !self.refs.lock().unwrap_or_else(|p| p.into_inner()).contains(&Self::hash(r))
    }

    fn wrote(&self, visit_ref: &str) {
        self.refs.lock().unwrap_or_else(|p| p.into_inner()).insert(Self::hash(visit_ref.as_bytes()));
    }
}

/// Organisations' current visits of one type (by organisation and type code, then VisitRef), as
/// [`VisitBatch::current_of_type`] found them, kept current by [`VisitBatch::put`]; forgotten when
/// visits change otherwise (an import rolled back, visits matched again).
pub(super) type OfType = super::Kept<(Slug, String), std::collections::BTreeMap<String, Visit>>;

impl OfType {
    /// A visit of `slug` was written (`encoded`; empty for none): each kept list of the organisation
    /// follows it.
    fn wrote(&mut self, slug: &Slug, visit_ref: &str, encoded: &[u8]) {
        if !self.by.keys().any(|(s, _)| s == slug) {
            return;
        }
        // Its type alone first: a visit of a type not kept (nearly every one) is not decoded.
        let written_type = if encoded.is_empty() { Ok(None) } else { visit_codec::visit_type(encoded) };
        let kept_type = written_type.map(|t| t.filter(|t| self.by.keys().any(|(s, code)| s == slug && code == t)));
        let visit = match kept_type.map(|t| t.map(|_| visit_codec::decode(encoded))) {
            Ok(None) => None,
            Ok(Some(Ok(stored))) => stored.visit,
            // Not readable as written: read from the store again next time.
            Err(_) | Ok(Some(Err(_))) => return self.forget(),
        };
        for ((_, code), visits) in self.by.iter_mut().filter(|((s, _), _)| s == slug) {
            match visit.as_ref().filter(|v| &v.visit_type == code) {
                Some(v) => visits.insert(visit_ref.to_string(), v.clone()),
                None => visits.remove(visit_ref),
            };
        }
    }
}

impl Store {
    pub(super) fn of_type(&self) -> std::sync::MutexGuard<'_, OfType> {
        self.of_type.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn begin_visits(&self, slug: &Slug, import_id: &str, write: bool) -> Result<VisitBatch<'_>> {
        let seq = self.db.generate_id()?;
        if write {
            self.db.insert(key(&[b"p", import_id.as_bytes()]), encode(&Pending { slug: slug.clone(), seq }))?;
            // The marker must be on disk before any row it covers.
            self.flush()?;
        }
        let fresh = self.db.scan_prefix(key(&[b"v", slug.as_bytes(), b""])).next().is_none();
        Ok(VisitBatch { at: Some((self, slug.clone())), import_id: import_id.into(), seq: seq.to_be_bytes(), write, fresh, known: None })
    }

    /// Undoes imports a crash interrupted: each row they wrote goes back to its earlier version.
    pub(super) fn roll_back_pending(&self) -> Result<()> {
        let pending: Vec<(sled::IVec, Pending)> = self.scan(b"p\0").collect::<Result<_>>()?;
        if !pending.is_empty() {
            self.of_type().forget();
        }
        for (pkey, p) in pending {
            let import_id = String::from_utf8_lossy(&pkey[2..]).into_owned();
            let seq = p.seq.to_be_bytes();
            let prefix = key(&[b"v", p.slug.as_bytes(), b""]);
            for kv in self.db.scan_prefix(&prefix) {
                let (k, v) = kv?;
                let sv = decode_visit(&k, &v)?;
                if sv.import_id != import_id {
                    continue;
                }
                let hkey = key(&[b"h", p.slug.as_bytes(), sv.visit_ref.as_bytes(), &seq]);
                let mut batch = sled::Batch::default();
                match self.db.get(&hkey)? {
                    Some(prev) => {
                        batch.insert(k, prev);
                        batch.remove(hkey);
                    }
                    None => batch.remove(k),
                }
                self.db.apply_batch(batch)?;
            }
            for kv in self.db.scan_prefix(key(&[b"w", p.slug.as_bytes(), b""])) {
                let (k, v) = kv?;
                let week: StoredWeek = decode(&k, &v)?;
                if week.import_id != import_id {
                    continue;
                }
                match week.before {
                    Some(totals) => self.db.insert(k, encode(&StoredWeek { import_id: String::new(), totals, before: None }))?,
                    None => self.db.remove(k)?,
                };
            }
            self.roll_back_actuals(&p.slug, &import_id, &seq)?;
            self.db.remove(pkey)?;
            self.flush()?;
            tracing::warn!(import_id, org = %p.slug, "rolled back an import that a stop interrupted");
        }
        Ok(())
    }

    /// Whether the stored week totals count visit lengths to the nearest minute (as
    /// `Duration::between` has since 2026-12-03): weeks written before dropped a time's seconds, and
    /// an old visit taken away at the new rounding would leave them a minute out for good.
    pub fn weeks_rounded(&self) -> Result<bool> {
        Ok(self.db.contains_key(key(&[b"m", WEEKS_ROUNDED]))?)
    }

    /// Replaces every stored week of the organisation with `weeks` (made again from its current
    /// visits), in one batch.
    pub fn replace_weeks(&self, slug: &Slug, weeks: impl IntoIterator<Item = (WeekKey, WeekTotals)>) -> Result<usize> {
        let mut batch = sled::Batch::default();
        for kv in self.db.scan_prefix(key(&[b"w", slug.as_bytes(), b""])) {
            batch.remove(kv?.0);
        }
        let mut n = 0;
        for (week, totals) in weeks {
            batch.insert(week.bytes(slug), encode(&StoredWeek { import_id: String::new(), totals, before: None }));
            n += 1;
        }
        self.db.apply_batch(batch)?;
        Ok(n)
    }

    /// Marks the week totals as counted to the nearest minute (`weeks_rounded`).
    pub fn mark_weeks_rounded(&self) -> Result<()> {
        self.db.insert(key(&[b"m", WEEKS_ROUNDED]), &b"1"[..])?;
        self.flush()
    }

    /// Every stored week of the organisation with its totals, streamed.
    pub fn weeks(&self, slug: &Slug) -> impl Iterator<Item = Result<(WeekKey, WeekTotals)>> + '_ {
        let prefix = key(&[b"w", slug.as_bytes(), b""]);
        let skip = prefix.len();
        self.scan::<StoredWeek>(&prefix).filter_map(move |r| {
            let (k, week) = match r {
                Ok(kw) => kw,
                Err(e) => return Some(Err(e)),
            };
            let text = std::str::from_utf8(&k[skip..]).ok()?;
            let mut parts = text.split('\0');
            let (client, level, service, monday) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let monday = monday.parse::<NaiveDate>().ok()?;
            Some(Ok((WeekKey { client: client.into(), level: level.into(), service: service.into(), monday }, week.totals)))
        })
    }

    /// The organisation's current visits (deletions left out), in VisitRef order.
    pub fn current_visits(&self, slug: &Slug) -> impl Iterator<Item = Result<StoredVisit>> + '_ {
        self.db
            .scan_prefix(key(&[b"v", slug.as_bytes(), b""]))
            .map(|kv| kv.map_err(StoreError::from).and_then(|(k, v)| decode_visit(&k, &v)))
            .filter(|r| !matches!(r, Ok(StoredVisit { visit: None, .. })))
    }

    /// Each current visit's planned date and whether it is unmatched, without decoding the rest.
    pub fn visit_glances(&self, slug: &Slug) -> impl Iterator<Item = Result<(NaiveDate, bool)>> + '_ {
        self.db.scan_prefix(key(&[b"v", slug.as_bytes(), b""])).filter_map(|kv| {
            let glanced = (|| {
                let (k, v) = kv?;
                if visit_codec::is_binary(&v) {
                    return visit_codec::glance(&v).map_err(|source| StoreError::CorruptVisit { key: String::from_utf8_lossy(&k).into_owned(), source });
                }
                Ok(decode_visit(&k, &v)?.visit.map(|v| (v.planned_date, matches!(v.matched, MatchStatus::Unmatched { .. }))))
            })();
            glanced.transpose()
        })
    }

    /// The organisation's current visit with this VisitRef (`None`: never sent, or deleted).
    pub fn current_visit(&self, slug: &Slug, visit_ref: &str) -> Result<Option<Visit>> {
        let k = key(&[b"v", slug.as_bytes(), visit_ref.as_bytes()]);
        Ok(self.db.get(&k)?.map(|v| decode_visit(&k, &v)).transpose()?.and_then(|sv| sv.visit))
    }

    /// Every earlier version of a visit, oldest first.
    pub fn visit_history(&self, slug: &Slug, visit_ref: &str) -> Result<Vec<StoredVisit>> {
        let prefix = key(&[b"h", slug.as_bytes(), visit_ref.as_bytes(), b""]);
        self.db
            .scan_prefix(&prefix)
            .filter(|r| r.as_ref().map_or(true, |(k, _)| k.len() == prefix.len() + 8))
            .map(|kv| kv.map_err(StoreError::from).and_then(|(k, v)| decode_visit(&k, &v)))
            .collect()
    }

    /// Sets new match statuses on current visits (CPLIs changed); no new version: the provider's data
    /// did not change. Returns how many changed.
    pub fn rematch_visits(&self, slug: &Slug, mut rematch: impl FnMut(&Visit) -> MatchStatus) -> Result<usize> {
        // The kept visits of one type carry their match: read again after this (before, too, should
        // this stop part-way).
        self.of_type().forget();
        let changed = self.rematch_each(slug, &mut rematch);
        self.of_type().forget();
        changed
    }

    fn rematch_each(&self, slug: &Slug, rematch: &mut impl FnMut(&Visit) -> MatchStatus) -> Result<usize> {
        let mut changed = 0;
        for kv in self.db.scan_prefix(key(&[b"v", slug.as_bytes(), b""])) {
            let (k, v) = kv?;
            let mut sv = decode_visit(&k, &v)?;
            let Some(visit) = sv.visit.as_mut() else { continue };
            let status = rematch(visit);
            if status != visit.matched {
                // Counted when the match itself changed, not only the reason's words.
                let counts = !status.same_match(&visit.matched);
                visit.matched = status;
                // Only if nobody wrote the visit since it was read.
                let new = visit_codec::encode(&sv.visit_ref, &sv.import_id, sv.row, sv.visit.as_ref());
                if self.db.compare_and_swap(&k, Some(v), Some(new))?.is_ok() && counts {
                    changed += 1;
                }
            }
        }
        self.flush()?;
        Ok(changed)
    }
}

impl VisitBatch<'_> {
    /// Judging without a store (offline `validate`): every visit is new, nothing is written.
    pub fn offline() -> VisitBatch<'static> {
        VisitBatch { at: None, import_id: String::new(), seq: [0; 8], write: false, fresh: true, known: None }
    }

    /// Judging without a store (offline `validate`): nothing stored can be looked up.
    pub fn is_offline(&self) -> bool {
        self.at.is_none()
    }

    /// The store and slug when this batch writes.
    fn writing(&self) -> Option<(&Store, &Slug)> {
        self.at.as_ref().filter(|_| self.write).map(|(store, slug)| (*store, slug))
    }

    /// Reads once which VisitRefs are stored from `least` to `greatest` (a file's least and greatest
    /// keys), so that [`VisitBatch::current`] needs no read for a new one in between; nothing is
    /// kept when more than `rows` are stored there (the file's VisitRefs are among many others, and
    /// reading each is cheaper). Issue 10: a sled read that finds nothing was a quarter of the
    /// instructions of a burst's file of new visits.
    pub fn expect_refs(&mut self, least: &[u8], greatest: &[u8], rows: u64) -> Result<()> {
        let Some((store, slug)) = self.at.as_ref().filter(|_| !self.fresh) else { return Ok(()) };
        let prefix = key(&[b"v", slug.as_bytes(), b""]);
        let mut refs = hashbrown::HashSet::new();
        for kv in store.db.range(&key(&[b"v", slug.as_bytes(), least]), &key(&[b"v", slug.as_bytes(), greatest])) {
            if refs.len() as u64 >= rows {
                return Ok(());
            }
            refs.insert(Known::hash(&kv?.0[prefix.len()..]));
        }
        self.known = Some(Known { least: least.to_vec(), greatest: greatest.to_vec(), refs: std::sync::Mutex::new(refs) });
        Ok(())
    }

    /// The visit as stored now (possibly a deletion), with its raw bytes for the history.
    pub fn current(&self, visit_ref: &str) -> Result<Option<(sled::IVec, StoredVisit)>> {
        let Some((store, slug)) = self.at.as_ref().filter(|_| !self.fresh) else { return Ok(None) };
        if self.known.as_ref().is_some_and(|k| k.rules_out(visit_ref)) {
            return Ok(None);
        }
        let k = key(&[b"v", slug.as_bytes(), visit_ref.as_bytes()]);
        store.db.get(&k)?.map(|v| decode_visit(&k, &v).map(|sv| (v, sv))).transpose()
    }

    /// The stored form of a visit (or of its deletion) written by this import; empty when nothing
    /// will be written.
    pub fn encode(&self, visit_ref: &str, row: u64, visit: Option<&Visit>) -> Vec<u8> {
        if !self.write {
            return Vec::new();
        }
        visit_codec::encode(visit_ref, &self.import_id, row, visit)
    }

    /// Writes a new version (from `encode`); the one it replaces goes into the history.
    pub fn put(&self, previous: Option<&sled::IVec>, visit_ref: &str, encoded: Vec<u8>) -> Result<()> {
        let Some((store, org)) = self.writing() else { return Ok(()) };
        let slug = org.as_bytes();
        if let Some(prev) = previous {
            store.db.insert(key(&[b"h", slug, visit_ref.as_bytes(), &self.seq]), prev.clone())?;
        }
        if let Some(known) = &self.known {
            known.wrote(visit_ref);
        }
        let written = store.db.insert(key(&[b"v", slug, visit_ref.as_bytes()]), encoded.as_slice());
        // Whether or not the write failed: the kept visits follow what may now be stored.
        store.of_type().wrote(org, visit_ref, &encoded);
        written?;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        match self.writing() {
            Some((store, _)) => store.flush(),
            None => Ok(()),
        }
    }

    /// Undoes what this import wrote so far (a failure part-way through a file).
    pub fn abort(self) -> Result<()> {
        match self.writing() {
            Some((store, _)) => store.roll_back_pending(),
            None => Ok(()),
        }
    }

    /// The organisation's current visits of one visit type (issue 11: the H visits that put a
    /// client in hospital). Called only for a file that holds such a visit. For an organisation
    /// that held no visit when the import began, none: what is stored is the file's own.
    ///
    /// Finding them reads every stored visit's type, so what is found is kept in memory ([`OfType`])
    /// and kept current by every visit this store writes: a serving gateway reads an organisation's
    /// visits once for them, not once for every file that holds an H visit.
    pub fn current_of_type(&self, code: &str) -> Result<Vec<Visit>> {
        // Of a fresh organisation's visits, only this file's own are stored, and the caller has them.
        let Some((store, slug)) = self.at.as_ref().filter(|_| !self.fresh) else { return Ok(Vec::new()) };
        let key_of = (slug.clone(), code.to_string());
        let generation = match store.of_type().get(&key_of) {
            Ok(visits) => return Ok(visits.into_values().collect()),
            Err(generation) => generation,
        };
        let mut found = std::collections::BTreeMap::new();
        for kv in store.db.scan_prefix(key(&[b"v", slug.as_bytes(), b""])) {
            let (k, v) = kv?;
            // A binary visit of another type is passed over without being decoded (issue 11).
            if visit_codec::is_binary(&v) {
                let t = visit_codec::visit_type(&v).map_err(|source| StoreError::CorruptVisit { key: String::from_utf8_lossy(&k).into_owned(), source })?;
                if t != Some(code) {
                    continue;
                }
            }
            if let Some(visit) = decode_visit(&k, &v)?.visit.filter(|v| v.visit_type == code) {
                found.insert(visit.visit_ref.clone(), visit);
            }
        }
        let out = found.values().cloned().collect();
        store.of_type().keep(generation, key_of, found);
        Ok(out)
    }

    /// A week's stored totals, if any.
    pub fn week(&self, week: &WeekKey) -> Result<Option<WeekTotals>> {
        match &self.at {
            // Weeks are written with visits (and rolled back with them): an organisation that held
            // no visit when the import began holds no week either.
            Some(_) if self.fresh => Ok(None),
            Some((store, slug)) => Ok(store.get::<StoredWeek>(&week.bytes(slug))?.map(|w| w.totals)),
            None => Ok(None),
        }
    }

    /// Writes a week's new totals (`before`: what they replace).
    pub fn put_week(&self, week: &WeekKey, totals: WeekTotals, before: Option<WeekTotals>) -> Result<()> {
        let Some((store, slug)) = self.writing() else { return Ok(()) };
        let stored = StoredWeek { import_id: self.import_id.clone(), totals, before };
        store.db.insert(week.bytes(slug), encode(&stored))?;
        Ok(())
    }

    /// Makes the file count: its result recorded, its emails queued, the disputes it answered
    /// (issue 12) and the pending mark removed in one batch, flushed. Everything else was written as
    /// the file went, so this batch is small whatever the file's size.
    pub fn commit(self, result: &ImportResult, disputes: &[crate::disputes::Dispute]) -> Result<()> {
        let Some((store, slug)) = self.writing() else { return Ok(()) };
        let mut batch = sled::Batch::default();
        store.record_in(&mut batch, slug, result)?;
        store.disputes_in(&mut batch, disputes);
        batch.remove(key(&[b"p", self.import_id.as_bytes()]));
        store.db.apply_batch(batch)?;
        store.flush()
    }

}

/// What reports read of a stored visit; the other fields are skipped, not decoded.
#[derive(Deserialize)]
struct FactRecord {
    visit: Option<FactVisit>,
}

#[derive(Deserialize)]
struct FactVisit {
    planned_date: NaiveDate,
    planned_entry: chrono::NaiveTime,
    planned_exit: chrono::NaiveTime,
    visit_type: String,
    #[serde(default)]
    delivered: Option<FactDelivered>,
    matched: FactMatch,
}

/// `MatchStatus` as stored (`{"status": "Matched", "cpli_id": ...}`), read as a plain struct: an
/// internally tagged enum is buffered before it is decoded, which doubled the time of a full scan.
#[derive(Deserialize)]
struct FactMatch {
    #[serde(default)]
    cpli_id: Option<String>,
}

#[derive(Deserialize)]
struct FactDelivered {
    entry: chrono::NaiveTime,
    exit: chrono::NaiveTime,
}

impl Store {
    /// The organisation's current visits that are matched to a CPLI, as reports see them, in
    /// VisitRef order; streamed.
    pub fn visit_facts(&self, slug: &Slug) -> impl Iterator<Item = Result<VisitFact>> + '_ {
        self.db.scan_prefix(key(&[b"v", slug.as_bytes(), b""])).filter_map(|kv| {
            let fact = (|| {
                let (k, v) = kv?;
                if visit_codec::is_binary(&v) {
                    return Ok(decode_visit(&k, &v)?.visit.as_ref().and_then(fact_of_visit));
                }
                let rec: FactRecord = decode(&k, &v)?;
                Ok(rec.visit.and_then(fact_of))
            })();
            fact.transpose()
        })
    }
}

/// What a report needs of a visit: `None` when it is not matched.
pub fn fact_of_visit(v: &Visit) -> Option<VisitFact> {
    let MatchStatus::Matched { cpli_id } = &v.matched else { return None };
    Some(fact(cpli_id.clone(), v.planned_date, v.planned_entry, v.planned_exit, v.visit_type.clone(), v.delivered.as_ref().map(|d| (d.entry, d.exit))))
}

fn fact_of(v: FactVisit) -> Option<VisitFact> {
    let cpli_id = v.matched.cpli_id?;
    Some(fact(cpli_id, v.planned_date, v.planned_entry, v.planned_exit, v.visit_type, v.delivered.map(|d| (d.entry, d.exit))))
}

/// What a report needs of a matched visit, from either stored form.
fn fact(
    cpli_id: String,
    planned_date: NaiveDate,
    entry: chrono::NaiveTime,
    exit: chrono::NaiveTime,
    visit_type: String,
    delivered: Option<(chrono::NaiveTime, chrono::NaiveTime)>,
) -> VisitFact {
    use chrono::Timelike;
    VisitFact {
        cpli_id,
        planned_date,
        planned_start: entry.num_seconds_from_midnight() / 60,
        visit_type,
        planned_minutes: Duration::between(entry, exit).minutes,
        delivered_minutes: delivered.map(|(entry, exit)| Duration::between(entry, exit).minutes),
    }
}

/// A stored visit in either form: the compact binary one written since issue 11, or the JSON of a
/// store written before.
pub(super) fn decode_visit(k: &[u8], v: &[u8]) -> Result<StoredVisit> {
    if visit_codec::is_binary(v) {
        visit_codec::decode(v).map_err(|source| StoreError::CorruptVisit { key: String::from_utf8_lossy(k).into_owned(), source })
    } else {
        decode(k, v)
    }
}
