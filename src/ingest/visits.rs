//! The visits file (SPEC 2.1; guide "Visits File Headings" and "Visits File Data Format"): every row
//! judged, matched and written, with the data-quality checks that need the whole file.

use hashbrown::HashSet;
use std::sync::Arc;

use hashbrown::HashMap;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::cells::{columns, Column as _, Row};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::headings as h;
use super::kinds::{File, Judgement, Kind, Pending};
use super::matching::{level_key, service_key, Contract, CpliIndex, VisitKeys};
use crate::outcome::{Code, Counts, FileKind, ImportResult, Issue, Issues, Severity};
use super::source::{heading_key, Header, Rows, ScanSpec};
use super::IngestError;
use crate::domain::{
    parse_date, parse_guid, parse_time, quote, uk_date, week_start, Cpli, Delivered, Duration, Guid, LockedUntil,
    NameKey, NameKeys, Organisation, Period, Slug, Visit, VisitType, VisitTypes,
};
use crate::disputes::{self, Dispute};
use crate::store::{Store, StoreError, VisitBatch, WeekKey, WeekTotals};

columns! {
    /// The 25 headings, in the guide's order. All must be present.
    pub enum Col by VisitRef {
        VisitRef: h::VISIT_REF;
        Deleted: h::DELETED;
        PlannedVisitDate: h::PLANNED_VISIT_DATE;
        PlannedEntryTime: h::PLANNED_ENTRY_TIME;
        PlannedExitTime: h::PLANNED_EXIT_TIME;
        VisitType: h::VISIT_TYPE;
        DeliveredVisitDate: h::DELIVERED_VISIT_DATE;
        DeliveredEntryTime: h::DELIVERED_ENTRY_TIME;
        EntryOverridden: "DeliveredEntryTime IsOverridden";
        EntryOverrideReason: "DeliveredEntryTime OverrideReason", free;
        DeliveredExitTime: h::DELIVERED_EXIT_TIME;
        ExitOverridden: "DeliveredExitTime IsOverridden";
        ExitOverrideReason: "DeliveredExitTime OverrideReason", free;
        VarianceReason: "VarianceReason", free;
        Comments: h::COMMENTS, free;
        ClientRef: h::CLIENT_REF;
        SsRef: h::SS_REF;
        NhsNumber: h::NHS_NUMBER;
        ServiceLevelRef: h::SERVICE_LEVEL_REF;
        ServiceLevel: h::SERVICE_LEVEL;
        CarerRef: h::CARER_REF;
        ServiceRef: h::SERVICE_REF;
        ServiceName: h::SERVICE_NAME;
        OrganisationRef: h::ORGANISATION_REF;
        OrganisationName: h::ORGANISATION_NAME;
    }
}

/// What the rows are judged against: the uploading organisation and what the council holds for it.
/// A part left `None` is not known (offline `validate`) and its checks are skipped.
pub struct Context<'a> {
    pub org: Option<&'a Organisation>,
    pub cplis: Option<&'a CpliIndex>,
    pub carers: Option<&'a std::collections::HashSet<String>>,
    pub locked: Option<LockedUntil>,
    pub rules: &'a crate::config::Rules,
    pub periods: &'a crate::config::Periods,
    /// Weeks ending before this day are finished and their planned hours are judged.
    pub today: NaiveDate,
    /// `rules.no_visit_service_levels` as compared.
    pub no_visit_levels: HashSet<NameKey>,
    /// `rules.visit_service_levels` as compared; empty turns the check off (issue 11).
    pub visit_levels: HashSet<NameKey>,
    /// Other organisations' OrganisationRef and ServiceRef GUIDs.
    pub foreign: std::collections::HashSet<Guid>,
}

impl Context<'_> {
    /// The uploading organisation's name as compared.
    fn org_key(&self) -> Option<NameKey> {
        self.org.map(|o| NameKey::new(&o.name))
    }
}

/// Where the cells that make a visit's slot are, for the first pass.
#[derive(Clone, Copy)]
struct SlotCols {
    ssref: usize,
    client_ref: usize,
    nhs: usize,
    date: usize,
    entry: usize,
}

impl SlotCols {
    fn find(header: &Header) -> Option<SlotCols> {
        let at = |c: Col| header.position(&heading_key(c.heading()));
        Some(SlotCols {
            ssref: at(Col::SsRef)?,
            client_ref: at(Col::ClientRef)?,
            nhs: at(Col::NhsNumber)?,
            date: at(Col::PlannedVisitDate)?,
            entry: at(Col::PlannedEntryTime)?,
        })
    }

    /// The row's client (as `Visit::client_key` names it), planned date and entry time, hashed from
    /// the raw cells so that both passes agree whatever the encoding.
    fn hash(&self, rec: &csv::ByteRecord) -> Option<u64> {
        let (date, entry) = self.date_and_entry(rec)?;
        self.hash_of(rec, date, entry)
    }

    fn date_and_entry(&self, rec: &csv::ByteRecord) -> Option<(NaiveDate, NaiveTime)> {
        let cell = |i: usize| rec.get(i).map(<[u8]>::trim_ascii).filter(|b| !b.is_empty());
        let date = parse_date(std::str::from_utf8(cell(self.date)?).ok()?)?;
        let entry = parse_time(std::str::from_utf8(cell(self.entry)?).ok()?)?;
        Some((date, entry))
    }

    fn names_by_ssref(&self, rec: &csv::ByteRecord) -> bool {
        rec.get(self.ssref).is_some_and(|b| !b.trim_ascii().is_empty())
    }

    /// For a row naming its client by ClientRef or NHS number only: its slot's date and time
    /// (`loose_time`). The first pass cannot tell whose client that is (the CPLIs can), so every
    /// row of an SSRef at such a time is remembered in order too (issue: two rows of one client, one
    /// by SSRef and one by NHS number, were not seen as one slot).
    fn loose(&self, rec: &csv::ByteRecord) -> Option<u64> {
        if self.names_by_ssref(rec) {
            return None;
        }
        let (date, entry) = self.date_and_entry(rec)?;
        Some(loose_time(date, entry))
    }

    /// As `hash`, given the row's planned date and entry time as parsed from those same cells: the
    /// judging worker has them already (issue 11: the in-order step parsed them a third time).
    fn hash_of(&self, rec: &csv::ByteRecord, date: NaiveDate, entry: NaiveTime) -> Option<u64> {
        use std::hash::{BuildHasher, Hash, Hasher};
        let cell = |i: usize| rec.get(i).map(<[u8]>::trim_ascii).filter(|b| !b.is_empty());
        let mut h = foldhash::fast::FixedState::with_seed(0x5107).build_hasher();
        match (cell(self.ssref), cell(self.client_ref), cell(self.nhs)) {
            (Some(s), _, _) => return Some(ssref_slot(s, date, entry)),
            (None, Some(g), _) => {
                h.write_u8(1);
                parse_guid(std::str::from_utf8(g).ok()?)?.as_str().hash(&mut h);
            }
            (None, None, Some(n)) => {
                h.write_u8(2);
                n.iter().filter(|b| **b != b' ').for_each(|b| h.write_u8(*b));
            }
            _ => return None,
        }
        (date, entry).hash(&mut h);
        Some(h.finish())
    }
}

/// A slot of a client named by SSRef (as `client_key` writes it, upper case), hashed.
fn ssref_slot(ssref: &[u8], date: NaiveDate, entry: NaiveTime) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x5107).build_hasher();
    // One write of the upper-cased reference instead of a write a byte.
    let mut buf = [0u8; 64];
    match buf.get_mut(..ssref.len()) {
        Some(upper) => {
            upper.iter_mut().zip(ssref).for_each(|(u, b)| *u = b.to_ascii_uppercase());
            h.write(upper);
        }
        None => ssref.iter().for_each(|b| h.write_u8(b.to_ascii_uppercase())),
    }
    (date, entry).hash(&mut h);
    h.finish()
}

/// A slot's date and time alone, hashed (`SlotCols::loose`).
fn loose_time(date: NaiveDate, entry: NaiveTime) -> u64 {
    super::source::stable_hash((0x1005e_u32, date, entry))
}

/// What the first pass of a visits file looks for: repeated VisitRefs and repeated slots.
pub fn scan_spec(header: &Header) -> ScanSpec {
    let slot = SlotCols::find(header);
    ScanSpec {
        key: header.position(&heading_key(Col::VisitRef.heading())),
        slot: slot.map(|c| Box::new(move |rec: &csv::ByteRecord| c.hash(rec)) as super::source::SlotFn),
        loose: slot.map(|c| Box::new(move |rec: &csv::ByteRecord| c.loose(rec)) as super::source::SlotFn),
    }
}

/// sled keeps what it has not flushed in memory: flushing as the file goes keeps memory flat (the
/// rows only count once the import commits, so this flush promises nothing to anybody).
const FLUSH_EVERY_CHUNKS: usize = 64;

/// The visits file's entry in the table of kinds.
pub static KIND: Kind = Kind { kind: FileKind::Visits, noun: "visits", headings: HEADINGS, required: HEADINGS.len(), detected_by: HEADINGS[Col::VisitRef as usize], scan_spec, judge,
    missing_hint: Some("all 25 visits headings must be present even when the column is left blank (guide: Visits File Headings)"),
};

/// Judges, matches and writes every row and the week totals it changes.
fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let config = file.config;
    let cplis = super::cpli_index(file.given_cplis, file.store, file.org)?;
    let carers = match file.stored() {
        Some((s, slug)) => Some(s.carer_refs(slug)?),
        None => None,
    };
    let ctx = Context {
        org: file.org,
        cplis: cplis.as_ref(),
        carers: carers.as_ref(),
        locked: file.store.map(|s| s.locked_until()).transpose()?.flatten(),
        rules: &config.rules,
        periods: &config.periods,
        today: config.rules.current_day(),
        no_visit_levels: config.rules.no_visit_service_levels.iter().map(|l| NameKey::new(l)).collect(),
        visit_levels: config.rules.visit_service_levels.iter().map(|l| NameKey::new(l)).collect(),
        foreign: super::foreign_guids(file.store, file.org)?,
    };
    let mut batch = match file.stored() {
        Some((s, slug)) => s.begin_visits(slug, &file.incoming.import_id, file.write)?,
        None => VisitBatch::offline(),
    };
    if let Some((least, greatest)) = &file.scan.key_range {
        batch.expect_refs(least, greatest, file.scan.data_rows)?;
    }
    // Issue 12: the organisation's open disputes, answered by sending their visits again.
    let disputes = match file.writer() {
        Some((s, slug)) => s.open_disputes_by_visit(slug)?,
        None => OpenDisputes::new(),
    };
    match import(file, &ctx, &batch, disputes, issues) {
        Ok((counts, disputes)) => Ok((counts, Box::new(VisitsPending { batch, disputes }))),
        Err(e) => {
            batch.abort()?;
            Err(e)
        }
    }
}

/// A visits file's writes, and the disputes it answered (committed with it).
struct VisitsPending<'s> {
    batch: VisitBatch<'s>,
    disputes: Vec<Dispute>,
}

impl Pending for VisitsPending<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        self.batch.commit(result, &self.disputes)
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.batch.abort()
    }
}

/// Deletes visits for the council (a dispute closed with DeleteVisit, issue 12): each goes to the
/// history as a provider's deletion does, and the week totals follow. Written under the pending
/// mark `mark`, which the caller removes in the batch that makes the change count
/// (`disputes::Changes::save`); until then a crash or a failure rolls it back.
pub fn council_deletion(types: &VisitTypes, store: &Store, slug: &Slug, refs: &[String], mark: &str) -> Result<usize, StoreError> {
    let batch = store.begin_visits(slug, mark, true)?;
    let mut weeks: HashMap<WeekKey, (WeekTotals, Sent)> = HashMap::new();
    let mut deleted = 0;
    for visit_ref in refs {
        let Some((raw, stored)) = batch.current(visit_ref)? else { continue };
        let Some(old) = stored.visit.as_ref() else { continue };
        add_week(&mut weeks, old, &VisitKeys::of(old), types, -1, None);
        batch.put(Some(&raw), visit_ref, batch.encode(visit_ref, 0, None))?;
        deleted += 1;
    }
    for (key, (delta, _)) in weeks {
        let before = batch.week(&key)?;
        batch.put_week(&key, before.unwrap_or_default().plus(delta), before)?;
    }
    batch.flush()?;
    Ok(deleted)
}

/// Judges the rows on the engine, then adds the file's changes to the week totals. Returns the
/// counts and the disputes the file answered.
fn import(file: &File<'_, '_>, ctx: &Context<'_>, batch: &VisitBatch<'_>, disputes: OpenDisputes, issues: &mut Issues) -> Result<(Counts, Vec<Dispute>), IngestError> {
    let rules = VisitRules {
        ctx,
        batch,
        duplicates: &file.scan.duplicate_keys,
        org_key: ctx.org_key(),
        slot_cols: SlotCols::find(&file.scan.header),
        repeated_slots: &file.scan.repeated_slots,
        loose_slots: &file.scan.loose_slots,
    };
    // The spill goes beside the spooled file when importing, as the issues' does.
    let spill_dir = file.writer().and(file.incoming.path.parent());
    let answering = Answering { file: &file.incoming.file_name, at: file.incoming.received_at, open: disputes, answered: Vec::new() };
    let mut apply = VisitApply { ctx, batch, slots: Slots::default(), weeks: HashMap::new(), hospital: Hospital::new(spill_dir)?, disputes: answering };
    let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
    let counts = engine::run(rows, &file.shape(), &rules, &mut apply, issues)?;
    judge_weeks(batch, apply.weeks, ctx, issues)?;
    judge_hospital(apply.hospital, batch, ctx, issues)?;
    Ok((counts, apply.disputes.answered))
}

/// An organisation's open disputes, by VisitRef.
type OpenDisputes = std::collections::HashMap<String, Vec<Dispute>>;

/// The organisation's open disputes by VisitRef, and those this file answered by sending or
/// deleting their visit (SPEC 8).
struct Answering<'a> {
    file: &'a str,
    at: chrono::DateTime<chrono::Utc>,
    open: OpenDisputes,
    answered: Vec<Dispute>,
}

impl Answering<'_> {
    fn visit_sent(&mut self, visit_ref: &str, deleted: bool, today: NaiveDate) {
        let Some(open) = self.open.remove(visit_ref) else { return };
        // Only a file received after the dispute was raised answers it (SPEC 8).
        for mut d in open.into_iter().filter(|d| d.raised_at <= self.at) {
            if disputes::resubmitted(&mut d, self.file, deleted, today, self.at) {
                self.answered.push(d);
            }
        }
    }
}

/// The row rules, run on the engine's workers.
struct VisitRules<'a, 's> {
    ctx: &'a Context<'a>,
    batch: &'a VisitBatch<'s>,
    duplicates: &'a hashbrown::HashSet<Vec<u8>>,
    /// The uploading organisation's name as compared, once for the file.
    org_key: Option<NameKey>,
    slot_cols: Option<SlotCols>,
    /// Only slots the first pass saw on more than one row need remembering in order...
    repeated_slots: &'a hashbrown::HashSet<u64>,
    /// ...and those at the time of a row naming its client other than by SSRef.
    loose_slots: &'a hashbrown::HashSet<u64>,
}

impl VisitRules<'_, '_> {
    /// The row's slot when it must be remembered in order (`Slots`): its client as the CPLIs name
    /// them, so that one client given by SSRef on one row and by NHS number or ClientRef on another
    /// is one slot (SPEC 4: "same client and planned slot twice").
    fn slot(&self, cols: SlotCols, rec: &csv::ByteRecord, v: &Visit, keys: &VisitKeys) -> Option<u64> {
        let (date, entry) = (v.planned_date, v.planned_entry);
        if cols.names_by_ssref(rec) {
            let h = cols.hash_of(rec, date, entry)?;
            let loose = || !self.loose_slots.is_empty() && self.loose_slots.contains(&loose_time(date, entry));
            return (self.repeated_slots.contains(&h) || loose()).then_some(h);
        }
        match self.ctx.cplis.and_then(|i| i.client_ssref(&keys.client)) {
            Some(ssref) => Some(ssref_slot(ssref.trim().as_bytes(), date, entry)),
            // A client no CPLI knows: its rows are one slot as the file names them.
            None => cols.hash_of(rec, date, entry).filter(|h| self.repeated_slots.contains(h)),
        }
    }
}

/// An accepted row, with its stored form encoded by the worker.
struct Accepted {
    outcome: Outcome,
    encoded: Vec<u8>,
    /// The row's slot, when the first pass saw it on more than one row.
    slot: Option<u64>,
}

impl Rules for VisitRules<'_, '_> {
    type Col = Col;
    type Out = Accepted;
    type Scratch = NameKeys;

    fn judge(&self, r: &mut Row<'_, Col>, names: &mut NameKeys) -> Result<Option<Accepted>, IngestError> {
        let (row, rec) = (r.row, r.rec);
        let mut j = RowJudge { r, ctx: self.ctx, names, org_key: &self.org_key };
        let outcome = j.judge(self.duplicates, self.batch)?;
        let (encoded, slot) = match &outcome {
            Outcome::Rejected => return Ok(None),
            Outcome::Accept(v, keys) => {
                let slot = self.slot_cols.and_then(|c| self.slot(c, rec, v, keys));
                (self.batch.encode(&v.visit_ref, row, Some(v)), slot)
            }
            Outcome::Delete { stored, .. } => (self.batch.encode(&stored.visit_ref, row, None), None),
            Outcome::AlreadyDeleted => (Vec::new(), None),
        };
        Ok(Some(Accepted { outcome, encoded, slot }))
    }
}

/// What depends on the order of rows: duplicate slots, week totals, and the store.
struct VisitApply<'a, 's> {
    ctx: &'a Context<'a>,
    batch: &'a VisitBatch<'s>,
    slots: Slots,
    weeks: HashMap<WeekKey, (WeekTotals, Sent)>,
    hospital: Hospital,
    disputes: Answering<'a>,
}

impl Apply<Accepted> for VisitApply<'_, '_> {
    fn apply(&mut self, j: &mut Judged<Accepted>, accepted: Accepted) -> Result<Applied, IngestError> {
        let (ctx, batch) = (self.ctx, self.batch);
        match accepted.outcome {
            Outcome::Rejected => Ok(Applied::Rejected),
            Outcome::AlreadyDeleted => Ok(Applied::Updated),
            Outcome::Delete { previous, stored } => {
                if let Some(old) = stored.visit.as_ref() {
                    add_week(&mut self.weeks, old, &VisitKeys::of(old), &ctx.rules.visit_types, -1, None);
                }
                batch.put(Some(&previous), &stored.visit_ref, accepted.encoded)?;
                self.disputes.visit_sent(&stored.visit_ref, true, ctx.today);
                Ok(Applied::Updated)
            }
            Outcome::Accept(visit, keys) => {
                let previous = batch.current(&visit.visit_ref)?;
                let old = previous.as_ref().and_then(|(_, sv)| sv.visit.as_ref());
                // A visit stored in a locked period cannot be changed, nor moved out of it.
                if let Some(message) = old.and_then(|o| stored_locked_message(ctx, o)) {
                    j.issues.retain(|i| i.severity == Severity::Error);
                    let issue = j.issue(Code::PeriodLocked, Some(Col::PlannedVisitDate.heading()), message);
                    j.issues.push(issue);
                    return Ok(Applied::Rejected);
                }
                // The client as the CPLIs name it, looked up only for a row whose slot is remembered.
                let client = || ctx.cplis.and_then(|i| i.client_ssref(&keys.client)).unwrap_or(&keys.client);
                if let Some(message) = accepted.slot.and_then(|h| self.slots.check(h, j.row, &visit, client)) {
                    let issue = j.issue(Code::PossibleDuplicate, Some(Col::PlannedEntryTime.heading()), message);
                    j.issues.push(issue);
                }
                if let Some(old) = old {
                    add_week(&mut self.weeks, old, &VisitKeys::of(old), &ctx.rules.visit_types, -1, None);
                }
                // A VisitRef deleted before is known to the organisation all the same (SPEC 3.4: "a
                // known one is updated", its deletion kept in history).
                let applied = if previous.is_some() { Applied::Updated } else { Applied::New };
                add_week(&mut self.weeks, &visit, &keys, &ctx.rules.visit_types, 1, Some(old.is_none()));
                self.hospital.note(&visit, &keys, j.row, ctx)?;
                batch.put(previous.as_ref().map(|(raw, _)| raw), &visit.visit_ref, accepted.encoded)?;
                self.disputes.visit_sent(&visit.visit_ref, false, ctx.today);
                Ok(applied)
            }
        }
    }

    fn chunk_done(&mut self, chunks: usize) -> Result<(), IngestError> {
        if chunks.is_multiple_of(FLUSH_EVERY_CHUNKS) {
            self.batch.flush()?;
        }
        Ok(())
    }
}

/// Why a date cannot be sent any more, when it is in a locked period.
fn locked_message(ctx: &Context<'_>, date: NaiveDate) -> Option<String> {
    let lock = ctx.locked.filter(|l| l.locks(date))?;
    let p = Period::containing(date, ctx.periods.first_start, ctx.periods.length_days);
    Some(format!(
        "PlannedVisitDate {} is in {}, which the council has locked (everything up to {}); contact the council's care payments team to change it",
        uk_date(date), p.describe(), uk_date(lock.0)
    ))
}

/// [`locked_message`] for the visit already stored, whose date the row may not give.
fn stored_locked_message(ctx: &Context<'_>, stored: &Visit) -> Option<String> {
    locked_message(ctx, stored.planned_date).map(|m| format!("the visit already stored is dated in a locked period: {m}"))
}

enum Outcome {
    Rejected,
    Delete { previous: sled::IVec, stored: Box<crate::store::StoredVisit> },
    /// The visit is deleted already (the same file sent again): counted as updated, nothing written.
    AlreadyDeleted,
    Accept(Box<Visit>, VisitKeys),
}

/// A visits row being judged: the shared `Row` (cells, issues) and what visits are judged against.
struct RowJudge<'a, 'r, 'c> {
    r: &'a mut Row<'r, Col>,
    ctx: &'a Context<'c>,
    names: &'a mut NameKeys,
    org_key: &'a Option<NameKey>,
}

impl<'r> std::ops::Deref for RowJudge<'_, 'r, '_> {
    type Target = Row<'r, Col>;
    fn deref(&self) -> &Row<'r, Col> {
        self.r
    }
}

impl std::ops::DerefMut for RowJudge<'_, '_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.r
    }
}

impl RowJudge<'_, '_, '_> {
    /// Judges a row whose field count and characters the engine has checked.
    fn judge(&mut self, duplicates: &hashbrown::HashSet<Vec<u8>>, batch: &VisitBatch<'_>) -> Result<Outcome, IngestError> {
        let (len, header_len) = (self.rec.len(), self.header_len);
        let visit_ref = self.required_text(Col::VisitRef, 50, ": your own reference for the visit, unique in the file and kept when it is sent again, e.g. V-A123456-20221010-0800");
        if let Some(v) = &visit_ref {
            if duplicates.contains(v.as_bytes()) {
                self.push(
                    Code::DuplicateRef,
                    Some(Col::VisitRef),
                    format!("VisitRef '{v}' is used on more than one row of this file; every row needs its own VisitRef, so all rows carrying it are rejected"),
                );
            }
        }
        let deleted = self.boolean(Col::Deleted);
        if deleted.is_none() && self.opt(Col::Deleted).is_none() {
            self.require(Col::Deleted, ": 0 for a visit, 1 to delete the visit with this VisitRef");
        }
        let Some(visit_ref) = visit_ref else { return Ok(Outcome::Rejected) };
        if self.has_errors() {
            return Ok(Outcome::Rejected);
        }
        if deleted == Some(true) {
            return self.judge_deletion(visit_ref, batch);
        }
        match self.judge_visit(visit_ref) {
            Some((v, k)) => Ok(Outcome::Accept(Box::new(v), k)),
            None => {
                if len > header_len {
                    // Empty extra cells are tolerated (Excel adds them), but when the row is wrong
                    // the likeliest cause is a comma that shifted every cell after it.
                    self.push(
                        Code::WrongFieldCount,
                        None,
                        format!("this row has {len} fields but the header has {header_len}: a cell probably holds a comma without being in double quotes, shifting the cells after it"),
                    );
                    // The other errors are the shifted cells' and would only mislead.
                    self.issues.retain(|i| i.code == Code::WrongFieldCount);
                }
                Ok(Outcome::Rejected)
            }
        }
    }

    /// "If Deleted is true no field other than VisitRef is required" and the visit must have been
    /// sent. One deleted already is left as it is and counted as updated: SPEC 3, the same file sent
    /// twice "changes nothing the second time except counting those rows as updated".
    fn judge_deletion(&mut self, visit_ref: String, batch: &VisitBatch<'_>) -> Result<Outcome, IngestError> {
        // Offline `validate` cannot tell whether the visit was sent: the deletion is taken as it
        // reads (counted as updated), as DELETE_UNKNOWN is not judged without the store.
        if batch.is_offline() {
            return Ok(Outcome::AlreadyDeleted);
        }
        let current = batch.current(&visit_ref)?;
        if current.as_ref().is_some_and(|(_, sv)| sv.visit.is_none()) {
            return Ok(Outcome::AlreadyDeleted);
        }
        let Some((previous, stored)) = current else {
            self.push(
                Code::DeleteUnknown,
                Some(Col::VisitRef),
                format!("there is no visit '{visit_ref}' to delete: check the VisitRef used when the visit was first sent"),
            );
            return Ok(Outcome::Rejected);
        };
        // The date is the stored visit's: a deletion may leave PlannedVisitDate blank (since
        // 2026-12-03 the message says so, as an update's does).
        if let Some(message) = stored.visit.as_ref().and_then(|v| stored_locked_message(self.ctx, v)) {
            self.push(Code::PeriodLocked, Some(Col::PlannedVisitDate), message);
        }
        if self.has_errors() { Ok(Outcome::Rejected) } else { Ok(Outcome::Delete { previous, stored: Box::new(stored) }) }
    }

    /// Flags a date in a locked period.
    fn check_locked(&mut self, date: NaiveDate) {
        if let Some(message) = locked_message(self.ctx, date) {
            self.push(Code::PeriodLocked, Some(Col::PlannedVisitDate), message);
        }
    }

    fn judge_visit(&mut self, visit_ref: String) -> Option<(Visit, VisitKeys)> {
        let rules = self.ctx.rules;
        let planned_date = self.date(Col::PlannedVisitDate);
        self.require(Col::PlannedVisitDate, ": the day the visit was planned for, e.g. 10/10/2022");
        let planned_entry = self.time(Col::PlannedEntryTime);
        self.require(Col::PlannedEntryTime, ": the planned start, e.g. 08:00");
        let planned_exit = self.time(Col::PlannedExitTime);
        self.require(Col::PlannedExitTime, ": the planned end, e.g. 08:30");

        let vt_text = self.opt(Col::VisitType);
        let visit_type: Option<&VisitType> = match &vt_text {
            None => {
                self.push(Code::Required, Some(Col::VisitType), format!("VisitType is required: one of {}", rules.visit_types.codes()));
                None
            }
            Some(code) => {
                let t = rules.visit_types.get(code);
                if t.is_none() {
                    self.push(
                        Code::UnknownVisitType,
                        Some(Col::VisitType),
                        format!("VisitType '{}' is not one of the council's codes: {}", quote(code), rules.visit_types.codes()),
                    );
                }
                t
            }
        };

        let delivered_cols = [Col::DeliveredVisitDate, Col::DeliveredEntryTime, Col::DeliveredExitTime];
        let delivered_date = self.date(Col::DeliveredVisitDate);
        // A visit is delivered once it has taken place: a date after tomorrow is a mistake (a
        // two-digit year read as 20YY, a planned date copied in). Tomorrow is allowed, so that a
        // visit just after midnight where the provider is is never refused by a server a time zone behind.
        let today = self.ctx.today;
        if let Some(d) = delivered_date.filter(|d| *d > today + chrono::Duration::days(1)) {
            self.push(
                Code::BadDate,
                Some(Col::DeliveredVisitDate),
                format!("DeliveredVisitDate {} is in the future (today is {}): give the date the visit took place, and send it once it has", uk_date(d), uk_date(today)),
            );
        }
        let delivered_entry = self.time(Col::DeliveredEntryTime);
        let delivered_exit = self.time(Col::DeliveredExitTime);
        if let Some(t) = visit_type {
            for col in delivered_cols {
                let present = self.opt(col).is_some();
                if t.delivered_based && !present {
                    self.push(
                        Code::DeliveredRequired,
                        Some(col),
                        format!("{} is required for VisitType {} ({}): give the date and times the visit took place", col.heading(), t.code, t.meaning),
                    );
                } else if !t.delivered_based && present {
                    self.push(
                        Code::DeliveredNotAllowed,
                        Some(col),
                        format!("{} must be blank for VisitType {} ({}): no visit was delivered", col.heading(), t.code, t.meaning),
                    );
                }
            }
        }
        let entry_overridden = self.boolean(Col::EntryOverridden).unwrap_or(false);
        let entry_override_reason = self.text(Col::EntryOverrideReason, 8000);
        let exit_overridden = self.boolean(Col::ExitOverridden).unwrap_or(false);
        let exit_override_reason = self.text(Col::ExitOverrideReason, 8000);
        let variance_reason = self.text(Col::VarianceReason, 8000);
        let comments = self.text(Col::Comments, 8000);

        let client_ref = self.guid(Col::ClientRef);
        let ssref = self.text(Col::SsRef, 50);
        let nhs_number = self.text(Col::NhsNumber, 20);
        if self.opt(Col::SsRef).is_none() && self.opt(Col::ClientRef).is_none() && self.opt(Col::NhsNumber).is_none() {
            let why = format!(" (the council's client id, e.g. A123456, shown on the CPLI); {} or {} may stand in", h::CLIENT_REF, h::NHS_NUMBER);
            self.require(Col::SsRef, &why);
        }
        let service_level_ref = self.guid(Col::ServiceLevelRef);
        let service_level = self.text(Col::ServiceLevel, 100);
        if self.opt(Col::ServiceLevel).is_none() && self.opt(Col::ServiceLevelRef).is_none() {
            self.require(Col::ServiceLevel, ": the service level on the CPLI, e.g. Personal Care or Home Support");
        }
        let client = match &ssref {
            Some(s) => self.names.upper(s),
            None => crate::domain::visit::client_key(None, client_ref.as_ref(), nhs_number.as_deref()).into(),
        };
        let keys = VisitKeys {
            client,
            level: service_level.as_deref().map(|l| self.names.get(l)),
            service: self.opt(Col::ServiceName).map(|n| self.names.get(&n)),
        };
        self.check_service_level(service_level.as_deref(), keys.level.as_ref(), service_level_ref.as_ref());
        let carer_ref = self.text(Col::CarerRef, 100);
        if let (Some(c), Some(known)) = (&carer_ref, self.ctx.carers) {
            if !known.contains(c) {
                self.push(
                    Code::UnknownCarer,
                    Some(Col::CarerRef),
                    format!("{} '{c}' is not one of this organisation's carers: send it in a carers file first, or leave {} blank", h::CARER_REF, h::CARER_REF),
                );
            }
        }
        let service_ref = self.guid(Col::ServiceRef);
        let service_name = self.text(Col::ServiceName, 112);
        if self.opt(Col::ServiceName).is_none() && self.opt(Col::ServiceRef).is_none() {
            self.require(Col::ServiceName, ": the service on the CPLI, e.g. Pearl Carers - Zone 6 - Oxford");
        }
        let organisation_ref = self.guid(Col::OrganisationRef);
        let organisation_name = self.text(Col::OrganisationName, 112);
        self.check_organisation(organisation_ref.as_ref(), organisation_name.as_deref(), service_ref.as_ref(), service_name.as_deref());
        self.check_refs(client_ref.as_ref(), nhs_number.as_deref(), ssref.as_deref(), service_level_ref.as_ref(), service_level.as_deref());
        if let Some(d) = planned_date {
            self.check_locked(d);
        }
        if self.has_errors() {
            return None;
        }

        let visit_type = visit_type?;
        // Before the flags go into `Delivered`, which a type with no delivered time has none of.
        self.override_reasons([(entry_overridden, entry_override_reason.is_none(), Col::EntryOverrideReason), (exit_overridden, exit_override_reason.is_none(), Col::ExitOverrideReason)]);
        let delivered = match (delivered_date, delivered_entry, delivered_exit) {
            (Some(date), Some(entry), Some(exit)) if visit_type.delivered_based => Some(Delivered {
                date,
                entry,
                exit,
                entry_overridden,
                entry_override_reason,
                exit_overridden,
                exit_override_reason,
            }),
            _ => None,
        };
        let mut visit = Visit {
            visit_ref,
            planned_date: planned_date?,
            planned_entry: planned_entry?,
            planned_exit: planned_exit?,
            visit_type: visit_type.code.clone(),
            delivered,
            variance_reason,
            comments,
            client_ref,
            ssref,
            nhs_number,
            service_level_ref,
            service_level,
            carer_ref,
            service_ref,
            service_name,
            matched: crate::domain::MatchStatus::Unmatched { reason: String::new() },
        };
        self.warnings(&visit, visit_type);
        if let Some(index) = self.ctx.cplis {
            // The same CPLI `explain` would name; only an unmatched row pays for the reason.
            visit.matched = match index.matched(&super::matching::Wanted::of_visit(&visit), &keys) {
                Some(c) => {
                    self.check_contract(&visit, c);
                    crate::domain::MatchStatus::Matched { cpli_id: c.cpli_id.clone() }
                }
                None => {
                    let (status, field) = index.explain(&visit, &keys);
                    if let crate::domain::MatchStatus::Unmatched { reason } = &status {
                        let col = field.and_then(Col::named);
                        self.push(Code::Unmatched, col, format!("the visit is stored but matches no CPLI: {reason}"));
                    }
                    status
                }
            };
        } else {
            visit.matched = crate::domain::MatchStatus::Unmatched { reason: "not matched: validated without CPLIs".into() };
        }
        Some((visit, keys))
    }

    /// A level the guide lists as taking no visits keeps its own message; any other level outside
    /// `rules.visit_service_levels` is refused naming that list (issue 11). A row naming its level
    /// only by ServiceLevelRef is judged by the name the CPLIs give that GUID.
    fn check_service_level(&mut self, level: Option<&str>, key: Option<&NameKey>, level_ref: Option<&Guid>) {
        let from_ref;
        let (level, key) = match (level, key) {
            (Some(l), Some(k)) => (l, k.clone()),
            _ => match level_ref.and_then(|g| self.ctx.cplis?.level_named(g)) {
                Some(l) => {
                    from_ref = l.to_string();
                    (from_ref.as_str(), NameKey::new(l))
                }
                None => return,
            },
        };
        let col = if self.opt(Col::ServiceLevel).is_some() { Col::ServiceLevel } else { Col::ServiceLevelRef };
        if self.ctx.no_visit_levels.contains(&key) {
            self.push(
                Code::NoVisitsForServiceLevel,
                Some(col),
                format!("the council takes no visits data for {} '{level}'; leave such packages off the visits file (guide: Service Levels)", h::SERVICE_LEVEL),
            );
        } else if !self.ctx.visit_levels.is_empty() && !self.ctx.visit_levels.contains(&key) {
            let message = format!(
                "the council takes visits data only for the service levels {}; {} '{}' is not one of them: use the level on the CPLI, or leave such packages off the visits file (guide: Service Levels)",
                self.ctx.rules.visit_service_levels.join(", "),
                h::SERVICE_LEVEL,
                quote(level)
            );
            self.push(Code::NoVisitsForServiceLevel, Some(col), message);
        }
    }

    /// Rules that read the matched CPLI's contract (issue 11): a Spot package is invoiced, not sent
    /// as visits; LWAH takes DHF for a delivered visit and the home-support contracts DHS.
    fn check_contract(&mut self, v: &Visit, cpli: &Cpli) {
        let contract = Contract::of(cpli);
        if contract == Contract::Spot {
            self.push(
                Code::InvoiceCase,
                Some(Col::ServiceName),
                format!(
                    "CPLI {} for client {} is under a Spot contract: Spot packages are invoiced to the council, not sent as visits, so this visit is stored but not paid; send an invoice and delete the visit (guide: Provider Portal; dispute type 1, Invoice Case)",
                    cpli.cpli_id, cpli.ssref
                ),
            );
            return;
        }
        let Some(right) = contract.delivered_type() else { return };
        let given = v.visit_type.as_str();
        let wrong = match right {
            "DHF" => given.eq_ignore_ascii_case("DHS"),
            _ => given.eq_ignore_ascii_case("DHF"),
        };
        if wrong {
            let name = if contract == Contract::Lwah { "the Live Well at Home contract" } else { "a home-support contract" };
            self.push(
                Code::WrongDeliveredType,
                Some(Col::VisitType),
                format!(
                    "VisitType {} is not the delivered type for CPLI {}, which is under {name} ({}): use VisitType {right} (guide: Visit Types)",
                    given.to_ascii_uppercase(), cpli.cpli_id, cpli.contract
                ),
            );
        }
    }

    fn check_organisation(&mut self, org_ref: Option<&Guid>, org_name: Option<&str>, service_ref: Option<&Guid>, service_name: Option<&str>) {
        let Some(org) = self.ctx.org else { return };
        // The name compared through the worker's cache of compared names.
        let name = org_name.map(|n| (n, Some(self.names.get(n)) == *self.org_key || n == org.slug.as_str()));
        self.r.check_organisation(org, (Col::OrganisationName, Col::OrganisationRef), name, org_ref, &self.ctx.foreign, "visits");
        if let Some(sref) = service_ref {
            let known: Vec<_> = org.services.iter().filter(|s| s.service_ref.is_some()).collect();
            match known.iter().find(|s| s.service_ref.as_ref() == Some(sref)) {
                Some(s) => {
                    if let Some(n) = service_name.filter(|n| NameKey::new(n) != NameKey::new(&s.name)) {
                        self.push(
                            Code::RefMismatch,
                            Some(Col::ServiceRef),
                            format!("{r} {sref} is the service '{}', but {} says '{n}'; correct one or leave {r} blank", s.name, h::SERVICE_NAME, r = h::SERVICE_REF),
                        );
                    }
                }
                None if !known.is_empty() => self.push(
                    Code::WrongOrganisation,
                    Some(Col::ServiceRef),
                    format!("{} {sref} is not a service of {}; leave it blank if unsure", h::SERVICE_REF, org.name),
                ),
                None if self.ctx.foreign.contains(sref) => self.r.foreign_guid(Col::ServiceRef, sref, org),
                None => {}
            }
        }
    }

    fn check_refs(&mut self, client_ref: Option<&Guid>, nhs: Option<&str>, ssref: Option<&str>, level_ref: Option<&Guid>, level: Option<&str>) {
        let Some(index) = self.ctx.cplis else { return };
        for (heading, message) in index.ref_mismatches(ssref, client_ref, nhs, level_ref, level) {
            self.push(Code::RefMismatch, Col::named(heading), message);
        }
    }

    /// An override marked without its reason (SPEC 4: "an override without its reason"), on any
    /// row: a cancelled or missed visit sent over one already submitted may be marked overridden
    /// too (the guide: "Only used if you are overriding a visit already submitted"; since
    /// 2026-12-03, it was looked at only where the row had delivered times).
    fn override_reasons(&mut self, marks: [(bool, bool, Col); 2]) {
        for (overridden, no_reason, col) in marks {
            if overridden && no_reason {
                self.push(Code::MissingComment, Some(col), format!("the time is marked overridden but {} is blank: say why it was changed", col.heading()));
            }
        }
    }

    /// Data-quality warnings on an accepted row (SPEC 4).
    fn warnings(&mut self, v: &Visit, t: &VisitType) {
        let commented = v.has_comment();
        if t.comment_expected && !commented {
            self.push(
                Code::MissingComment,
                Some(Col::Comments),
                format!("VisitType {} ({}) needs a comment saying why; without one the council will raise a dispute", t.code, t.meaning),
            );
        }
        self.nhs_number(Col::NhsNumber, v.nhs_number.as_deref());
        let planned = v.planned_duration();
        if planned.minutes == 0 {
            self.push(Code::ZeroDuration, Some(Col::PlannedExitTime), "PlannedExitTime equals PlannedEntryTime: the planned visit lasts no time; give the planned end, e.g. 08:30 for a half-hour visit from 08:00".into());
        }
        let Some(d) = &v.delivered else { return };
        let delivered = Duration::between(d.entry, d.exit);
        if delivered.minutes == 0 {
            self.push(Code::ZeroDuration, Some(Col::DeliveredExitTime), "DeliveredExitTime equals DeliveredEntryTime: the delivered visit lasts no time; give the time the carer left".into());
        }
        if commented {
            return;
        }
        let over = delivered.minutes - planned.minutes;
        if !t.comment_expected && over >= self.ctx.rules.over_planned_minutes {
            self.push(
                Code::OverPlannedNoComment,
                Some(Col::Comments),
                format!(
                    "delivered {} against {} planned, {} over, without a comment: say why, or use VisitType E for an emergency",
                    delivered.hours_text(), planned.hours_text(), Duration { minutes: over }.hours_text()
                ),
            );
        }
        let (p_start, p_end) = interval(v.planned_date, v.planned_entry, v.planned_exit);
        let (d_start, d_end) = interval(d.date, d.entry, d.exit);
        if !(d_start < p_end && p_start < d_end) && planned.minutes > 0 && delivered.minutes > 0 {
            self.push(
                Code::TimesDoNotTally,
                Some(Col::DeliveredEntryTime),
                format!(
                    "delivered {} {}-{} does not overlap the planned {} {}-{} and there is no comment: correct the times or explain in {}",
                    uk_date(d.date), d.entry.format("%H:%M"), d.exit.format("%H:%M"),
                    uk_date(v.planned_date), v.planned_entry.format("%H:%M"), v.planned_exit.format("%H:%M"), Col::Comments.heading()
                ),
            );
        }
    }
}

fn interval(date: NaiveDate, entry: NaiveTime, exit: NaiveTime) -> (NaiveDateTime, NaiveDateTime) {
    let start = date.and_time(entry);
    let end = start + chrono::Duration::minutes(Duration::between(entry, exit).minutes);
    (start, end)
}

/// The same client and planned slot twice in a file, neither row saying double-handed.
#[derive(Default)]
struct Slots {
    /// Slot hash -> the first accepted row holding it that does not say double-handed.
    seen: HashMap<u64, u64>,
}

impl Slots {
    /// The warning for a row not saying double-handed whose slot an earlier such row already holds.
    /// A row saying it explains one other (the guide writes it on the second carer's row only), so a
    /// third row of the slot saying nothing is a duplicate of the first (since 2026-12-03; a slot
    /// with any row saying double-handed was never warned of).
    fn check<'c>(&mut self, key: u64, row: u64, v: &Visit, client: impl FnOnce() -> &'c str) -> Option<String> {
        if v.says_double_handed() {
            return None;
        }
        let first_row = *self.seen.entry(key).or_insert(row);
        (first_row != row).then(|| {
            format!(
                "client {} already has a visit planned {} at {} on row {}: if two carers attended, say [Double-Handed] in {}; otherwise one row is a duplicate",
                client(), uk_date(v.planned_date), v.planned_entry.format("%H:%M"), first_row, Col::Comments.heading()
            )
        })
    }
}

/// A week's planned time for `PLANNED_HOURS_DIFFER`: "1 hour", "7.5 hours", "5 h 5 min".
fn planned_in_words(minutes: i64) -> String {
    crate::reports::hours_in_words(minutes, if minutes == 60 { "hour" } else { "hours" })
}

/// "1 hour", else "N hours".
fn one_or_hours(n: String) -> String {
    format!("{n} {}", if n == "1" { "hour" } else { "hours" })
}

/// What this file sent into a week key: rows (new or updated visits now dated in it), and how many
/// of them were new to the organisation (issue 11: a file that only corrects or deletes a few of a
/// week's visits does not have the week judged).
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    rows: i64,
    new: i64,
}

/// `sent`: for the version this file brings, whether its VisitRef is new; `None` for a version
/// taken away (updated or deleted).
fn add_week(weeks: &mut HashMap<WeekKey, (WeekTotals, Sent)>, v: &Visit, keys: &VisitKeys, types: &VisitTypes, sign: i64, sent: Option<bool>) {
    let key = WeekKey { client: keys.client.clone(), level: level_key(v, keys), service: service_key(v, keys), monday: week_start(v.planned_date) };
    let (t, s) = weeks.entry(key).or_default();
    if let Some(new) = sent {
        s.rows += 1;
        s.new += i64::from(new);
    }
    t.planned_minutes += sign * v.planned_duration().minutes;
    if v.visit_type.eq_ignore_ascii_case("E") && v.has_comment() {
        t.commented_exceptional += sign;
    }
    // Actuals from visits (SPEC 5): delivered-based types paid on delivered time, the other paid
    // types (C, U) frustrated on planned time.
    t.visits += sign;
    if let Some(vt) = types.get(&v.visit_type).filter(|vt| vt.provider_paid) {
        t.paid_visits += sign;
        match (&v.delivered, vt.delivered_based) {
            (Some(d), true) => t.actual_minutes += sign * Duration::between(d.entry, d.exit).minutes,
            (None, true) => {}
            (_, false) => t.frust_minutes += sign * v.planned_duration().minutes,
        }
    }
}

/// Makes every organisation's week totals again from its current visits, once: weeks stored before
/// visit lengths were counted to the nearest minute dropped a time's seconds, and taking such a visit
/// away at the new rounding would leave its week a minute out for good. Returns the weeks written.
pub fn round_stored_weeks_once(store: &Store, types: &VisitTypes) -> Result<usize, IngestError> {
    if store.weeks_rounded()? {
        return Ok(0);
    }
    let mut written = 0;
    for org in store.orgs()? {
        let mut weeks: HashMap<WeekKey, (WeekTotals, Sent)> = HashMap::new();
        for sv in store.current_visits(&org.slug) {
            if let Some(v) = sv?.visit {
                add_week(&mut weeks, &v, &VisitKeys::of(&v), types, 1, None);
            }
        }
        written += store.replace_weeks(&org.slug, weeks.into_iter().map(|(k, (t, _))| (k, t)))?;
    }
    store.mark_weeks_rounded()?;
    Ok(written)
}

/// Adds the file's changes to the stored week totals and flags finished weeks whose planned hours
/// differ from what the CPLIs in force commission.
///
/// Issue 11: a week is judged as one group per client, service level and service as the CPLIs name
/// them, adding up every key its rows were filed under (SSRef, ClientRef or NHS number; names or
/// GUIDs), so a row given by NHSNumber does not make a second group and a second warning. And a week
/// is judged only when this file sends it: at least one visit new to the organisation, or the
/// week's whole current set; a file that only corrects or deletes some of a week's visits leaves
/// the week unjudged (it was judged when it was sent).
fn judge_weeks(batch: &VisitBatch<'_>, mut after: HashMap<WeekKey, (WeekTotals, Sent)>, ctx: &Context<'_>, issues: &mut super::Issues) -> Result<(), IngestError> {
    // Written in key order; each week's change becomes its new total in place, so the weeks are
    // held once (issue 11: a sorted copy and a second map of them rose ~30 MB at a million rows).
    let mut order: Vec<WeekKey> = after.keys().cloned().collect();
    order.sort_by(|a, b| (&a.client, a.monday, &a.level, &a.service).cmp(&(&b.client, b.monday, &b.level, &b.service)));
    for key in &order {
        let Some((delta, _)) = after.get_mut(key) else { continue };
        let before = batch.week(key)?;
        let total = before.unwrap_or_default().plus(*delta);
        batch.put_week(key, total, before)?;
        *delta = total;
    }
    drop(order);
    let Some(index) = ctx.cplis else { return Ok(()) };
    // Each group once, in the order of its first key.
    let mut keys: Vec<&WeekKey> = after.keys().filter(|k| k.monday + chrono::Duration::days(6) < ctx.today).collect();
    keys.sort_by(|a, b| (&a.client, a.monday, &a.level, &a.service).cmp(&(&b.client, b.monday, &b.level, &b.service)));
    let mut seen = HashSet::new();
    for key in keys {
        // A Spot package's visits are an INVOICE_CASE already; its planned hours are not judged.
        let Some(group) = index.week_group(&key.client, &key.level, &key.service).filter(|g| g.contract != Contract::Spot) else { continue };
        if !seen.insert((group.client.clone(), group.level.clone(), group.service.clone(), key.monday)) {
            continue;
        }
        let (mut total, mut sent) = (WeekTotals::default(), Sent::default());
        for (client, level, service) in &group.aliases {
            let alias = WeekKey { client: client.clone(), level: level.clone(), service: service.clone(), monday: key.monday };
            let (t, s) = match after.get(&alias) {
                Some(ts) => *ts,
                None => (batch.week(&alias)?.unwrap_or_default(), Sent::default()),
            };
            total = total.plus(t);
            sent.rows += s.rows;
            sent.new += s.new;
        }
        let sends_week = sent.new > 0 || (total.visits > 0 && sent.rows >= total.visits);
        if !sends_week || total.commented_exceptional != 0 || total.planned_minutes <= 0 {
            continue;
        }
        let Some((hours, ids)) = index.weekly_hours(&group.client, &group.level, &group.service, key.monday) else { continue };
        let planned = crate::reports::hours(total.planned_minutes);
        if planned != hours {
            let sunday = key.monday + chrono::Duration::days(6);
            let mut issue = Issue::file(
                Code::PlannedHoursDiffer,
                None,
                format!(
                    "week {} to {}: client {} has {} planned, but the CPLI{} in force ({}) commission{} {} a week; the planned visits should match the CPLI (guide: Planned Hours of Care & CPLIs)",
                    uk_date(key.monday), uk_date(sunday), group.client, planned_in_words(total.planned_minutes),
                    if ids.len() > 1 { "s" } else { "" }, ids.join(", "), if ids.len() > 1 { "" } else { "s" }, one_or_hours(hours.normalize().to_string())
                ),
            );
            issue.reference = Some(group.client.to_string());
            issues.push(issue);
        }
    }
    Ok(())
}

/// The H (in hospital) and delivered visits of a file. A large file is mostly delivered visits, so
/// each is written to an unlinked temporary file as it is applied and read back once at the end:
/// memory stays flat however long the file is (issue 11: kept in memory they took ~30 bytes a
/// delivered row, 30 MB at a million rows).
struct Hospital {
    clients: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    /// Clients with an H visit in this file.
    in_file: HashSet<u32>,
    /// (client, date, planned start in minutes) of every H visit.
    stays: Vec<(u32, NaiveDate, u16)>,
    /// Every delivered visit, as `DeliveredAt::write` puts it.
    delivered: std::io::BufWriter<std::fs::File>,
    any_delivered: bool,
}

struct DeliveredAt {
    client: u32,
    date: NaiveDate,
    start: u16,
    row: u64,
    visit_ref: String,
}

impl DeliveredAt {
    /// client, day number, start, row, the VisitRef's length and bytes; little-endian. (A VisitRef
    /// is at most 50 characters.)
    fn write(w: &mut impl std::io::Write, client: u32, date: NaiveDate, start: u16, row: u64, visit_ref: &str) -> std::io::Result<()> {
        use chrono::Datelike;
        let len = u16::try_from(visit_ref.len()).unwrap_or(u16::MAX);
        w.write_all(&client.to_le_bytes())?;
        w.write_all(&date.num_days_from_ce().to_le_bytes())?;
        w.write_all(&start.to_le_bytes())?;
        w.write_all(&row.to_le_bytes())?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&visit_ref.as_bytes()[..usize::from(len)])
    }

    /// The next one written whose client `wanted` takes (the others are passed over without being
    /// made), `None` at the end. `visit_ref` is room for reading, kept between calls.
    fn read(r: &mut impl std::io::Read, visit_ref: &mut Vec<u8>, wanted: impl Fn(u32) -> bool) -> std::io::Result<Option<DeliveredAt>> {
        let mut head = [0u8; 20];
        loop {
            match r.read_exact(&mut head) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                other => other?,
            }
            let len = usize::from(u16::from_le_bytes([head[18], head[19]]));
            visit_ref.resize(len, 0);
            r.read_exact(visit_ref)?;
            if wanted(u32::from_le_bytes([head[0], head[1], head[2], head[3]])) {
                return Self::made(&head, visit_ref).map(Some);
            }
        }
    }

    fn made(head: &[u8; 20], visit_ref: &[u8]) -> std::io::Result<DeliveredAt> {
        let num = |a: &[u8]| -> [u8; 4] { a.try_into().unwrap_or_default() };
        let days = i32::from_le_bytes(num(&head[4..8]));
        Ok(DeliveredAt {
            client: u32::from_le_bytes(num(&head[..4])),
            date: NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| std::io::Error::other("a day number written by this file is not a date"))?,
            start: u16::from_le_bytes([head[8], head[9]]),
            row: u64::from_le_bytes(head[10..18].try_into().unwrap_or_default()),
            visit_ref: String::from_utf8_lossy(visit_ref).into_owned(),
        })
    }
}

/// The visit type that says the client is in hospital (guide: "Visit Types").
const HOSPITAL: &str = "H";

impl Hospital {
    /// Its delivered visits spill into `dir` (the spool's, when importing), as the issues do.
    fn new(dir: Option<&std::path::Path>) -> std::io::Result<Hospital> {
        let file = crate::data_dir::unnamed_file(dir, "delivered")?;
        Ok(Hospital {
            clients: HashMap::new(),
            names: Vec::new(),
            in_file: HashSet::new(),
            stays: Vec::new(),
            delivered: std::io::BufWriter::with_capacity(64 * 1024, file),
            any_delivered: false,
        })
    }

    /// One client whichever identifier the row gave: the SSRef the CPLIs know it by.
    fn client(&mut self, keys: &VisitKeys, ctx: &Context<'_>) -> u32 {
        // A row given by SSRef is already named so; only a ClientRef or NHS number is looked up.
        let by_other = keys.client.starts_with("ref:") || keys.client.starts_with("nhs:");
        let mapped = ctx.cplis.filter(|_| by_other).and_then(|i| i.client_ssref(&keys.client));
        if let Some(&c) = self.clients.get(mapped.unwrap_or(&keys.client)) {
            // The usual case, a client seen before under the same name: nothing allocated.
            if mapped.is_none_or(|m| m.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_lowercase())) {
                return c;
            }
        }
        let name: Arc<str> = match mapped {
            Some(s) => s.trim().to_uppercase().into(),
            None => keys.client.clone(),
        };
        let next = self.names.len() as u32;
        *self.clients.entry(name.clone()).or_insert_with(|| {
            self.names.push(name);
            next
        })
    }

    fn note(&mut self, v: &Visit, keys: &VisitKeys, row: u64, ctx: &Context<'_>) -> std::io::Result<()> {
        use chrono::Timelike;
        let start = (v.planned_entry.num_seconds_from_midnight() / 60) as u16;
        if v.visit_type.eq_ignore_ascii_case(HOSPITAL) {
            let c = self.client(keys, ctx);
            self.in_file.insert(c);
            self.stays.push((c, v.planned_date, start));
        } else if ctx.rules.visit_types.get(&v.visit_type).is_some_and(|t| t.delivered_based) {
            let client = self.client(keys, ctx);
            DeliveredAt::write(&mut self.delivered, client, v.planned_date, start, row, &v.visit_ref)?;
            self.any_delivered = true;
        }
        Ok(())
    }
}

/// Flags a visit marked delivered that lies between two H visits of its client, each on the same
/// day or the day next to it (issue 11; dispute type 6, "Client In Hospital"). H marks every visit
/// missed while the client is in hospital, so a delivered visit with H visits on both sides is
/// inside a stay; the day of admission (delivered, then H) and of discharge (H, then delivered) are
/// not. Only clients with an H visit in this file are judged; their H visits already stored count too.
fn judge_hospital(mut h: Hospital, batch: &VisitBatch<'_>, ctx: &Context<'_>, issues: &mut super::Issues) -> Result<(), IngestError> {
    if h.in_file.is_empty() || !h.any_delivered {
        return Ok(());
    }
    use chrono::Timelike;
    for v in batch.current_of_type(HOSPITAL)? {
        let keys = VisitKeys::of(&v);
        let name: &str = ctx.cplis.and_then(|i| i.client_ssref(&keys.client)).unwrap_or(&keys.client);
        if let Some(&c) = h.clients.get(name.trim().to_uppercase().as_str()).filter(|c| h.in_file.contains(*c)) {
            h.stays.push((c, v.planned_date, (v.planned_entry.num_seconds_from_midnight() / 60) as u16));
        }
    }
    h.stays.sort_unstable();
    h.stays.dedup();
    let day = chrono::Duration::days(1);
    let mut spill = h.delivered.into_inner().map_err(|e| e.into_error())?;
    std::io::Seek::rewind(&mut spill)?;
    let mut delivered = std::io::BufReader::with_capacity(64 * 1024, spill);
    let mut room = Vec::new();
    while let Some(d) = DeliveredAt::read(&mut delivered, &mut room, |client| h.in_file.contains(&client))? {
        let at = h.stays.partition_point(|s| (s.0, s.1, s.2) < (d.client, d.date, d.start));
        let before = at.checked_sub(1).map(|i| h.stays[i]).filter(|s| s.0 == d.client && s.1 + day >= d.date);
        let after = h.stays[at..].iter().find(|s| (s.1, s.2) != (d.date, d.start)).copied().filter(|s| s.0 == d.client && s.1 <= d.date + day);
        let (Some(b), Some(a)) = (before, after) else { continue };
        let time = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        issues.push(Issue {
            row: Some(d.row),
            reference: Some(d.visit_ref),
            severity: Code::ClientInHospital.severity(),
            code: Code::ClientInHospital,
            field: Some(Col::VisitType.heading().to_string()),
            message: format!(
                "the visit is marked delivered, but client {} has H (in hospital) visits either side of it, {} {} and {} {}: if the client was in hospital use VisitType H, otherwise correct the H visits (dispute type 6, Client In Hospital)",
                h.names[d.client as usize], uk_date(b.1), time(b.2), uk_date(a.1), time(a.2)
            ),
            row_data: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::{Cpli, Quantity};
    use crate::ingest::{process, Incoming, Mode};
    use crate::outcome::{Code, ImportResult, Status};
    use rust_decimal::Decimal;
    use crate::store::Store;

    /// A valid DHS row for client A1 with `changes` applied, as a CSV line in `HEADINGS` order.
    fn row(changes: &[(&str, &str)]) -> String {
        let mut cells: Vec<String> = HEADINGS
            .iter()
            .map(|h| match *h {
                "VisitRef" => "V1",
                "Deleted" => "0",
                "PlannedVisitDate" | "DeliveredVisitDate" => "03/10/2022",
                "PlannedEntryTime" | "DeliveredEntryTime" => "08:00",
                "PlannedExitTime" | "DeliveredExitTime" => "09:00",
                "VisitType" => "DHS",
                "SSRef" => "A1",
                "ServiceLevel" => "Personal Care",
                "ServiceName" => "Pearl Carers - Zone 6 - Oxford",
                _ => "",
            })
            .map(String::from)
            .collect();
        let set = |cells: &mut Vec<String>, h: &str, v: &str| {
            let i = HEADINGS.iter().position(|x| *x == h).unwrap_or_else(|| panic!("no heading {h}"));
            cells[i] = v.to_string();
        };
        for (h, v) in changes {
            set(&mut cells, h, v);
            // A moved planned slot is delivered as planned unless the change says otherwise.
            if let Some(d) = h.strip_prefix("Planned").map(|rest| format!("Delivered{rest}")) {
                if !changes.iter().any(|(c, _)| *c == d) && HEADINGS.contains(&d.as_str()) {
                    set(&mut cells, &d, v);
                }
            }
        }
        cells.iter().map(|c| if c.contains(',') { format!("\"{c}\"") } else { c.clone() }).collect::<Vec<_>>().join(",")
    }

    fn file(rows: &[String]) -> String {
        let mut s = HEADINGS.join(",");
        for r in rows {
            s.push_str("\r\n");
            s.push_str(r);
        }
        s.push_str("\r\n");
        s
    }

    fn cpli(id: &str, service: &str, start: (i32, u32, u32), hours: i64) -> Cpli {
        Cpli {
            cpli_id: id.into(),
            ssref: "A1".into(),
            client_name: "Mrs A".into(),
            nhs_number: None,
            client_ref: None,
            organisation_ref: None,
            organisation_name: "Pearl Carers Ltd".into(),
            service_ref: None,
            service_name: service.into(),
            // A home-support contract, whose delivered type is the rows' DHS (issue 11).
            contract: "DAPL".into(),
            service_level_ref: None,
            service_level: "Personal Care".into(),
            start_date: NaiveDate::from_ymd_opt(start.0, start.1, start.2).unwrap(),
            end_date: None,
            quantity: Quantity { amount: Decimal::new(hours, 0), unit: "Hr".into(), frequency: "Weekly".into() },
            unit_cost: Decimal::new(2377, 2),
            authorised: true,
        }
    }

    fn config(today: (i32, u32, u32)) -> Config {
        let mut c = Config::default();
        c.rules.today = NaiveDate::from_ymd_opt(today.0, today.1, today.2);
        c
    }

    fn org() -> Organisation {
        Organisation::new("Pearl Carers Ltd", None)
    }

    fn run_bytes(bytes: &[u8], config: &Config, mode: Mode<'_>) -> ImportResult {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.csv");
        std::fs::write(&path, bytes).unwrap();
        let incoming = Incoming {
            path: &path,
            file_name: "visits.csv".into(),
            import_id: uuid::Uuid::now_v7().to_string(),
            received_at: chrono::Utc::now(),
            attachments: None,
        };
        process(config, Some(&org()), &incoming, mode).unwrap()
    }

    /// Judges rows offline against one CPLI (A1, Personal Care, Zone 6, 1 hour a week from 03/10/2022),
    /// on a day when that week is not finished.
    fn judge(rows: &[String]) -> ImportResult {
        let cplis = vec![cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 10, 3), 1)];
        run_bytes(file(rows).as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: Some(cplis) })
    }

    fn codes(r: &ImportResult) -> Vec<Code> {
        r.issues.iter().map(|i| i.code).collect()
    }

    fn only(r: &ImportResult, code: Code) -> &Issue {
        let found: Vec<&Issue> = r.issues.iter().filter(|i| i.code == code).collect();
        assert_eq!(found.len(), 1, "expected one {code:?} in {:#?}", r.issues);
        found[0]
    }

    #[test]
    fn planned_hours_differ_gives_the_weeks_planned_time_in_words_never_a_long_decimal() {
        assert_eq!(planned_in_words(300), "5 hours");
        assert_eq!(planned_in_words(60), "1 hour", "not 1 hours (until 2026-12-03)");
        assert_eq!(one_or_hours("1".into()), "1 hour");
        assert_eq!(one_or_hours("0.5".into()), "0.5 hours");
        assert_eq!(planned_in_words(450), "7.5 hours");
        assert_eq!(planned_in_words(303), "5.05 hours");
        assert_eq!(planned_in_words(305), "5 h 5 min");
        assert_eq!(planned_in_words(35), "0 h 35 min");
    }

    #[test]
    fn a_clean_delivered_visit_is_accepted_and_matched() {
        let r = judge(&[row(&[])]);
        assert_eq!(r.issues, vec![]);
        assert_eq!((r.counts.read, r.counts.new, r.counts.rejected), (1, 1, 0));
    }

    #[test]
    fn every_heading_must_be_present() {
        let text = file(&[row(&[])]).replacen("CarerRef,", "", 1);
        let r = run_bytes(text.as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None });
        assert_eq!(r.status, Status::Failed);
        assert_eq!(only(&r, Code::MissingColumn).field.as_deref(), Some("CarerRef"));
        assert_eq!(r.counts, Counts::default());
    }

    #[test]
    fn headings_match_in_any_order_case_and_spacing() {
        let mut headings: Vec<String> = HEADINGS.iter().map(|h| h.to_uppercase().replace(' ', "")).collect();
        headings.swap(0, 24);
        let mut cells: Vec<String> = row(&[]).split(',').map(String::from).collect();
        cells.swap(0, 24);
        let text = format!("{}\n{}\n", headings.join(","), cells.join(","));
        let r = run_bytes(text.as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None });
        assert_eq!((r.status, r.counts.new), (Status::Processed, 1), "{:#?}", r.issues);
    }

    #[test]
    fn a_repeated_heading_fails_the_file() {
        let text = file(&[row(&[])]).replacen("Comments", "VisitRef", 1);
        let r = run_bytes(text.as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None });
        assert_eq!(r.status, Status::Failed);
        assert!(codes(&r).contains(&Code::DuplicateColumn));
    }

    #[test]
    fn an_unknown_extra_column_is_a_warning() {
        let text = file(&[row(&[])]).replacen("OrganisationName", "OrganisationName,Rota", 1).replacen("Oxford,,", "Oxford,,,", 1);
        let r = run_bytes(text.as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None });
        assert_eq!(r.status, Status::Processed);
        assert_eq!(only(&r, Code::UnknownColumn).field.as_deref(), Some("Rota"));
    }

    #[test]
    fn visit_ref_is_required_and_at_most_50_characters() {
        let r = judge(&[row(&[("VisitRef", "")]), row(&[("VisitRef", &"V".repeat(51))])]);
        assert_eq!(codes(&r), [Code::Required, Code::TooLong]);
        assert_eq!(r.counts.rejected, 2);
    }

    #[test]
    fn every_row_carrying_a_duplicated_visit_ref_is_rejected() {
        let r = judge(&[row(&[]), row(&[("VisitRef", "V2"), ("PlannedEntryTime", "10:00")]), row(&[("PlannedEntryTime", "12:00")])]);
        assert_eq!(codes(&r), [Code::DuplicateRef, Code::DuplicateRef]);
        assert_eq!(r.issues.iter().map(|i| i.row).collect::<Vec<_>>(), [Some(2), Some(4)]);
        assert_eq!((r.counts.read, r.counts.new, r.counts.rejected), (3, 1, 2));
    }

    #[test]
    fn deleted_takes_0_1_y_n_in_any_case_and_nothing_else() {
        let ok = judge(&[row(&[("Deleted", "n")]), row(&[("VisitRef", "V2"), ("Deleted", "N"), ("PlannedEntryTime", "10:00")])]);
        assert_eq!(ok.counts.rejected, 0, "{:#?}", ok.issues);
        let bad = judge(&[row(&[("Deleted", "yes")]), row(&[("VisitRef", "V2"), ("Deleted", "")])]);
        assert_eq!(codes(&bad), [Code::BadBoolean, Code::Required]);
    }

    #[test]
    fn a_delivered_date_after_tomorrow_is_a_bad_date() {
        // `judge` runs on 05/10/2022.
        for (date, bad) in [("05/10/2022", false), ("06/10/2022", false), ("07/10/2022", true), ("03/10/30", true)] {
            let r = judge(&[row(&[("PlannedVisitDate", date), ("DeliveredVisitDate", date)])]);
            let refused = r.issues.iter().find(|i| i.code == Code::BadDate && i.field.as_deref() == Some("DeliveredVisitDate"));
            assert_eq!(refused.is_some(), bad, "{date}: {:#?}", r.issues);
            if let Some(i) = refused {
                assert!(i.message.contains("is in the future (today is 05/10/2022)"), "{}", i.message);
            }
        }
    }

    #[test]
    fn delivered_visit_types_need_delivered_date_and_times() {
        let r = judge(&[row(&[("VisitType", "E"), ("Comments", "fell"), ("DeliveredVisitDate", ""), ("DeliveredExitTime", "")])]);
        assert_eq!(codes(&r), [Code::DeliveredRequired, Code::DeliveredRequired]);
        assert_eq!(r.issues[0].field.as_deref(), Some("DeliveredVisitDate"));
    }

    #[test]
    fn visit_types_not_delivered_must_leave_delivered_times_blank() {
        let r = judge(&[row(&[("VisitType", "C24"), ("Comments", "cancelled by family")])]);
        assert_eq!(codes(&r), [Code::DeliveredNotAllowed; 3]);
        let ok = judge(&[row(&[("VisitType", "h"), ("DeliveredVisitDate", ""), ("DeliveredEntryTime", ""), ("DeliveredExitTime", "")])]);
        assert_eq!(ok.issues, vec![]);
    }

    #[test]
    fn an_unknown_visit_type_is_rejected_naming_the_codes() {
        let r = judge(&[row(&[("VisitType", "DEL")])]);
        assert!(only(&r, Code::UnknownVisitType).message.contains("C24, C, E, U, DHS, DHF, H"));
    }

    #[test]
    fn dates_and_times_must_be_real_and_in_the_guides_forms() {
        let r = judge(&[
            row(&[("PlannedVisitDate", "31/02/2022"), ("DeliveredVisitDate", "03/10/2022")]),
            row(&[("VisitRef", "V2"), ("PlannedExitTime", "9.00"), ("DeliveredExitTime", "09:00")]),
        ]);
        assert_eq!(codes(&r), [Code::BadDate, Code::BadTime]);
        assert_eq!(r.issues[0].field.as_deref(), Some("PlannedVisitDate"));
    }

    #[test]
    fn the_client_is_named_by_ssref_clientref_or_nhs_number() {
        let r = judge(&[row(&[("SSRef", "")])]);
        assert_eq!(only(&r, Code::Required).field.as_deref(), Some("SSRef"));
        let r = judge(&[row(&[("SSRef", ""), ("NHSNumber", "9434765919")])]);
        assert!(!codes(&r).contains(&Code::Required), "{:#?}", r.issues);
    }

    #[test]
    fn an_nhs_number_the_cplis_give_another_client_than_the_ssref_is_a_ref_mismatch() {
        let mut c = cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), 7);
        c.nhs_number = Some("943 476 5919".into());
        let run = |rows: &[String]| run_bytes(file(rows).as_bytes(), &config((2022, 11, 1)), Mode::Validate { store: None, cplis: Some(vec![c.clone()]) });
        let r = run(&[row(&[("SSRef", "B2"), ("NHSNumber", "9434765919")])]);
        assert_eq!(codes(&r), [Code::RefMismatch]);
        assert_eq!(r.issues[0].field.as_deref(), Some("NHSNumber"));
        assert_eq!(r.issues[0].message, "NHSNumber 9434765919 is client A1, but SSRef says 'B2'; correct one or leave NHSNumber blank");
        let r = run(&[row(&[("SSRef", "a1"), ("NHSNumber", "9434765919")])]);
        assert!(!codes(&r).contains(&Code::RefMismatch), "{:#?}", r.issues);
    }

    #[test]
    fn a_service_level_that_takes_no_visits_is_rejected() {
        let r = judge(&[row(&[("ServiceLevel", "Live in care")])]);
        assert_eq!(codes(&r), [Code::NoVisitsForServiceLevel]);
    }

    #[test]
    fn both_htlah_levels_take_visits_written_with_or_without_the_dash() {
        for level in ["HTLAH Maintenance", "HTLAH - Maintenance", "HTLAH Developmental", "HTLAH - Developmental"] {
            let r = judge(&[row(&[("ServiceLevel", level)])]);
            assert!(!codes(&r).contains(&Code::NoVisitsForServiceLevel), "{level}: {:#?}", r.issues);
        }
    }

    #[test]
    fn another_organisations_name_is_rejected() {
        let r = judge(&[row(&[("OrganisationName", "Diamond Home Care Ltd")]), row(&[("VisitRef", "V2"), ("OrganisationName", "pearl carers ltd"), ("PlannedEntryTime", "10:00")])]);
        assert_eq!(codes(&r), [Code::WrongOrganisation]);
        assert_eq!(r.issues[0].row, Some(2));
    }

    #[test]
    fn a_malformed_guid_is_rejected() {
        let r = judge(&[row(&[("ClientRef", "not-a-guid")])]);
        assert_eq!(codes(&r), [Code::BadGuid]);
    }

    #[test]
    fn text_longer_than_its_column_allows_is_rejected() {
        let r = judge(&[row(&[("Comments", &"x".repeat(8001))])]);
        assert_eq!(only(&r, Code::TooLong).field.as_deref(), Some("Comments"));
    }

    #[test]
    fn a_bad_nhs_number_is_a_warning_and_the_row_is_kept() {
        let r = judge(&[row(&[("NHSNumber", "9434765918")])]);
        assert_eq!(codes(&r), [Code::BadNhsNumber]);
        assert_eq!(r.counts.new, 1);
    }

    #[test]
    fn exceptional_undeliverable_and_cancelled_visits_without_a_comment_are_flagged() {
        let blank = [("DeliveredVisitDate", ""), ("DeliveredEntryTime", ""), ("DeliveredExitTime", "")];
        let with = |vt: &'static str, r: &'static str, t: &'static str| {
            let mut c: Vec<(&str, &str)> = vec![("VisitType", vt), ("VisitRef", r), ("PlannedEntryTime", t)];
            if vt != "E" {
                c.extend(blank);
            }
            row(&c)
        };
        let r = judge(&[with("E", "V1", "08:00"), with("U", "V2", "10:00"), with("C", "V3", "12:00"), with("C24", "V4", "14:00")]);
        assert_eq!(codes(&r), [Code::MissingComment; 4]);
        assert_eq!(r.counts.new, 4);
    }

    #[test]
    fn an_overridden_time_without_its_reason_is_flagged() {
        let r = judge(&[row(&[("DeliveredEntryTime IsOverridden", "Y")])]);
        assert_eq!(only(&r, Code::MissingComment).field.as_deref(), Some("DeliveredEntryTime OverrideReason"));
    }

    #[test]
    fn an_override_without_its_reason_is_flagged_on_a_visit_type_with_no_delivered_time() {
        let cancelled = [("VisitType", "C"), ("DeliveredVisitDate", ""), ("DeliveredEntryTime", ""), ("DeliveredExitTime", ""), ("Comments", "client rang at 07:30")];
        let r = judge(&[row(&[cancelled.as_slice(), &[("DeliveredExitTime IsOverridden", "1")]].concat())]);
        assert_eq!(only(&r, Code::MissingComment).field.as_deref(), Some("DeliveredExitTime OverrideReason"));
        let r = judge(&[row(&[cancelled.as_slice(), &[("DeliveredExitTime IsOverridden", "1"), ("DeliveredExitTime OverrideReason", "was sent as delivered")]].concat())]);
        assert_eq!(r.issues, vec![]);
    }

    #[test]
    fn delivered_an_hour_or_more_over_planned_without_a_comment_is_flagged() {
        let r = judge(&[row(&[("DeliveredExitTime", "10:00")]), row(&[("VisitRef", "V2"), ("PlannedEntryTime", "12:00"), ("PlannedExitTime", "13:00"), ("DeliveredEntryTime", "12:00"), ("DeliveredExitTime", "13:59")])]);
        assert_eq!(codes(&r), [Code::OverPlannedNoComment]);
        let commented = judge(&[row(&[("DeliveredExitTime", "10:00"), ("Comments", "waited for the district nurse")])]);
        assert_eq!(commented.issues, vec![]);
    }

    #[test]
    fn delivered_times_that_do_not_overlap_the_planned_ones_are_flagged() {
        // The guide's dispute example 3: planned 8-9, delivered 10-10:30.
        let r = judge(&[row(&[("DeliveredEntryTime", "10:00"), ("DeliveredExitTime", "10:30")])]);
        assert_eq!(codes(&r), [Code::TimesDoNotTally]);
        let next_day = judge(&[row(&[("DeliveredVisitDate", "04/10/2022")])]);
        assert_eq!(codes(&next_day), [Code::TimesDoNotTally]);
    }

    #[test]
    fn a_visit_past_midnight_is_judged_across_the_two_days() {
        let r = judge(&[row(&[("PlannedEntryTime", "22:00"), ("PlannedExitTime", "01:00"), ("DeliveredEntryTime", "23:30"), ("DeliveredExitTime", "00:45")])]);
        assert_eq!(r.issues, vec![]);
    }

    #[test]
    fn a_visit_of_no_length_is_flagged() {
        let r = judge(&[row(&[("PlannedExitTime", "08:00"), ("DeliveredExitTime", "08:00"), ("Comments", "x")])]);
        assert_eq!(codes(&r), [Code::ZeroDuration, Code::ZeroDuration]);
    }

    #[test]
    fn the_same_client_and_slot_twice_is_a_possible_duplicate_unless_double_handed() {
        let r = judge(&[row(&[]), row(&[("VisitRef", "V2")])]);
        assert_eq!(only(&r, Code::PossibleDuplicate).row, Some(3));
        let dh = judge(&[row(&[]), row(&[("VisitRef", "V2"), ("Comments", "[Double-Handed]")])]);
        assert_eq!(dh.issues, vec![]);
    }

    #[test]
    fn a_third_row_of_a_slot_not_saying_double_handed_is_a_possible_duplicate_of_the_first() {
        let dh = [("VisitRef", "V2"), ("Comments", "[Double-Handed] 2nd carer")];
        let r = judge(&[row(&[]), row(&dh), row(&[("VisitRef", "V3")])]);
        let warned = only(&r, Code::PossibleDuplicate);
        assert_eq!(warned.row, Some(4));
        assert!(warned.message.contains("on row 2"), "{}", warned.message);
        // The carer's row saying it first, then the other carer's: explained.
        let r = judge(&[row(&dh), row(&[("VisitRef", "V3")])]);
        assert_eq!(r.issues, vec![]);
        // Three carers, two rows saying so: explained.
        let r = judge(&[row(&[]), row(&dh), row(&[("VisitRef", "V3"), ("Comments", "[Double-Handed] 3rd carer")])]);
        assert_eq!(r.issues, vec![]);
    }

    #[test]
    fn one_client_named_by_ssref_nhs_number_or_client_ref_in_one_slot_twice_is_a_possible_duplicate() {
        let guid = "5AFFB229-0F7B-4A22-9E2A-3D1D2E8F0A11";
        let mut c = cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 10, 3), 1);
        (c.nhs_number, c.client_ref) = (Some("2527601898".into()), crate::domain::parse_guid(guid));
        let judge = |rows: &[String]| run_bytes(file(rows).as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: Some(vec![c.clone()]) });
        let by_nhs = row(&[("VisitRef", "V2"), ("SSRef", ""), ("NHSNumber", "2527601898")]);
        let by_ref = row(&[("VisitRef", "V3"), ("SSRef", ""), ("ClientRef", guid)]);
        for (rows, second) in [(vec![row(&[]), by_nhs.clone()], 3), (vec![by_nhs.clone(), row(&[])], 3), (vec![by_ref.clone(), by_nhs.clone()], 3)] {
            let r = judge(&rows);
            let dup = only(&r, Code::PossibleDuplicate);
            assert_eq!(dup.row, Some(second), "{:#?}", r.issues);
            assert!(dup.message.starts_with("client A1 already has a visit planned 03/10/2022 at 08:00 on row 2"), "{}", dup.message);
        }
        // Another client at the same time is not.
        let other = row(&[("VisitRef", "V4"), ("SSRef", ""), ("NHSNumber", "4010232137")]);
        assert!(!codes(&judge(&[row(&[]), other])).contains(&Code::PossibleDuplicate));
    }

    #[test]
    fn an_unmatched_visit_whose_service_ref_is_wrong_names_the_service_ref_not_the_same_service_name() {
        let mut c = cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), 7);
        c.service_ref = crate::domain::parse_guid("8D116ECE-1738-F7D9-3D9C-172411E20B8F");
        let wrong = "36F675CC-81E7-4EF5-E8E2-5D940ED90475";
        let r = run_bytes(file(&[row(&[("ServiceRef", wrong)])]).as_bytes(), &config((2022, 11, 1)), Mode::Validate { store: None, cplis: Some(vec![c]) });
        let i = only(&r, Code::Unmatched);
        assert_eq!(i.field.as_deref(), Some("ServiceRef"));
        assert_eq!(
            i.message,
            format!("the visit is stored but matches no CPLI: ServiceRef {wrong} is not the service of client A1's CPLI 100 at 'Pearl Carers - Zone 6 - Oxford', whose ServiceRef is 8D116ECE-1738-F7D9-3D9C-172411E20B8F: correct ServiceRef or leave it blank")
        );
    }

    #[test]
    fn an_unmatched_visit_names_the_service_the_provider_probably_meant() {
        let r = judge(&[row(&[("ServiceName", "Pearl Carers - Zone 7 - Farrington")])]);
        let i = only(&r, Code::Unmatched);
        assert_eq!(i.field.as_deref(), Some("ServiceName"));
        assert!(i.message.contains("did you mean ServiceName 'Pearl Carers - Zone 6 - Oxford'?"), "{}", i.message);
        assert_eq!(r.counts.new, 1);
    }

    #[test]
    fn an_unmatched_visit_giving_its_level_by_guid_alone_is_told_of_that_guid_not_of_a_blank_level() {
        let (personal, home) = ("D23F0824-128B-2F33-0C5C-7FD0A6A3A450", "5AFFB229-0F7B-4A22-9E2A-3D1D2E8F0A11");
        let mut zone6 = cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 10, 3), 1);
        zone6.service_level_ref = crate::domain::parse_guid(personal);
        let mut zone7 = cpli("101", "Pearl Carers - Zone 7 - Farrington", (2022, 10, 3), 1);
        (zone7.service_level, zone7.service_level_ref) = ("Home Support".into(), crate::domain::parse_guid(home));
        let rows = [row(&[("ServiceLevel", ""), ("ServiceLevelRef", home)])];
        let r = run_bytes(file(&rows).as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: Some(vec![zone6, zone7]) });
        let i = only(&r, Code::Unmatched);
        assert!(
            i.message.contains(&format!("client A1 has no CPLI with ServiceName 'Pearl Carers - Zone 6 - Oxford' and ServiceLevelRef {home} ('Home Support'): did you mean ServiceName 'Pearl Carers - Zone 7 - Farrington'?")),
            "{}",
            i.message
        );
    }

    #[test]
    fn a_visit_before_its_cpli_starts_is_unmatched_naming_the_start() {
        let r = judge(&[row(&[("PlannedVisitDate", "02/10/2022"), ("DeliveredVisitDate", "02/10/2022")])]);
        assert!(only(&r, Code::Unmatched).message.contains("before CPLI 100 starts (03/10/2022)"));
    }

    #[test]
    fn a_visit_for_a_client_with_no_cpli_is_unmatched() {
        let r = judge(&[row(&[("SSRef", "A999")])]);
        assert!(only(&r, Code::Unmatched).message.contains("no care package (CPLI) for client A999"));
    }

    fn week_of_visits(hours: usize, extra: &[(&str, &str)]) -> Vec<String> {
        (0..hours)
            .map(|d| {
                let date = format!("{:02}/10/2022", 3 + d);
                let mut c = vec![("VisitRef", format!("W{d}")), ("PlannedVisitDate", date.clone()), ("DeliveredVisitDate", date)];
                c.extend(extra.iter().map(|(a, b)| (*a, b.to_string())));
                row(&c.iter().map(|(a, b)| (*a, b.as_str())).collect::<Vec<_>>())
            })
            .collect()
    }

    fn judge_finished_week(rows: &[String], hours: i64) -> ImportResult {
        let cplis = vec![cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), hours)];
        run_bytes(file(rows).as_bytes(), &config((2022, 11, 1)), Mode::Validate { store: None, cplis: Some(cplis) })
    }

    #[test]
    fn planned_hours_that_differ_from_the_cpli_in_a_finished_week_are_flagged() {
        let r = judge_finished_week(&week_of_visits(5, &[]), 7);
        let i = only(&r, Code::PlannedHoursDiffer);
        assert_eq!((i.row, i.reference.as_deref()), (None, Some("A1")));
        assert!(i.message.contains("5 hours planned") && i.message.contains("7 hours a week"), "{}", i.message);
        assert_eq!(judge_finished_week(&week_of_visits(7, &[]), 7).issues, vec![]);
    }

    #[test]
    fn a_week_holding_a_commented_exceptional_visit_is_not_judged() {
        let mut rows = week_of_visits(7, &[]);
        rows.push(row(&[("VisitRef", "EX"), ("VisitType", "E"), ("PlannedEntryTime", "12:00"), ("PlannedExitTime", "12:45"), ("DeliveredEntryTime", "12:00"), ("DeliveredExitTime", "12:47"), ("Comments", "Extra emergency visit agreed with social worker")]));
        assert_eq!(judge_finished_week(&rows, 7).issues, vec![]);
    }

    #[test]
    fn a_week_not_yet_finished_is_not_judged() {
        let cplis = vec![cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), 7)];
        let r = run_bytes(file(&week_of_visits(5, &[])).as_bytes(), &config((2022, 10, 9)), Mode::Validate { store: None, cplis: Some(cplis) });
        assert_eq!(r.issues, vec![]);
    }

    #[test]
    fn two_cplis_in_force_the_same_week_add_up() {
        // Scenario 2: an open package of 7 hours and a temporary one of 3.5 for the same week.
        let mut cplis = vec![cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), 7), cpli("101", "Pearl Carers - Zone 6 - Oxford", (2022, 10, 3), 0)];
        cplis[1].quantity.amount = Decimal::new(35, 1);
        cplis[1].end_date = NaiveDate::from_ymd_opt(2022, 10, 9);
        let mut rows = week_of_visits(7, &[]);
        rows.extend(week_of_visits(7, &[("PlannedEntryTime", "12:00"), ("PlannedExitTime", "12:30"), ("DeliveredEntryTime", "12:00"), ("DeliveredExitTime", "12:30")]).into_iter().enumerate().map(|(i, r)| r.replacen(&format!("W{i},"), &format!("X{i},"), 1)));
        let r = run_bytes(file(&rows).as_bytes(), &config((2022, 11, 1)), Mode::Validate { store: None, cplis: Some(cplis) });
        assert_eq!(r.issues, vec![]);
        assert_eq!(r.counts.new, 14);
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_rejected_and_trailing_blank_fields_are_not() {
        let r = judge(&[row(&[]).rsplitn(3, ',').nth(2).unwrap().to_string(), format!("{},", row(&[("VisitRef", "V2"), ("PlannedEntryTime", "10:00")]))]);
        assert_eq!(codes(&r), [Code::WrongFieldCount]);
        assert_eq!((r.counts.rejected, r.counts.new), (1, 1));
    }

    #[test]
    fn a_control_character_in_any_cell_rejects_the_row_but_tabs_and_line_breaks_in_comments_do_not() {
        let r = judge(&[
            row(&[("VisitRef", "V\u{0}1")]),
            row(&[("VisitRef", "V2"), ("CarerRef", "C\t1")]),
            row(&[("VisitRef", "V3"), ("PlannedEntryTime", "10:00"), ("DeliveredEntryTime", "10:00"), ("Comments", "fell,\r\nrested\tthen ate")]),
        ]);
        assert_eq!(codes(&r), [Code::ControlCharacter, Code::ControlCharacter], "{:#?}", r.issues);
        assert_eq!((r.issues[0].field.as_deref(), r.issues[0].reference.as_deref()), (Some("VisitRef"), Some("V\\u{0}1")));
        assert!(r.issues[1].message.starts_with("CarerRef holds a control character, U+0009 (tab), at character 2"), "{}", r.issues[1].message);
        assert_eq!((r.counts.rejected, r.counts.new), (2, 1));
    }

    #[test]
    fn a_windows_1252_file_is_read_with_a_warning() {
        let mut bytes = file(&[row(&[("Comments", "CAFE")])]).into_bytes();
        let at = bytes.windows(4).position(|w| w == b"CAFE").unwrap();
        bytes[at + 3] = 0xC9; // 'É' in Windows-1252, invalid alone in UTF-8
        let cplis = vec![cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 10, 3), 1)];
        let r = run_bytes(&bytes, &config((2022, 10, 5)), Mode::Validate { store: None, cplis: Some(cplis) });
        assert_eq!(codes(&r), [Code::EncodingGuessed]);
        assert_eq!(r.counts.new, 1);
    }

    #[test]
    fn a_utf8_byte_order_mark_is_not_part_of_the_first_heading() {
        let text = format!("\u{FEFF}{}", file(&[row(&[])]).replace("\r\n", "\n"));
        let r = run_bytes(text.as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None });
        assert_eq!((r.status, r.issues.len()), (Status::Processed, 0), "{:#?}", r.issues);
    }

    /// Imports into a fresh store (kept in `dir`).
    fn import(store: &Store, rows: &[String]) -> ImportResult {
        run_bytes(file(rows).as_bytes(), &config((2022, 10, 5)), Mode::Import(store))
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_known_visit_ref_is_updated_and_its_earlier_version_kept() {
        let (_d, store) = temp_store();
        assert_eq!(import(&store, &[row(&[])]).counts.new, 1);
        let again = import(&store, &[row(&[("DeliveredExitTime", "09:10")])]);
        assert_eq!((again.counts.new, again.counts.updated), (0, 1));
        let history = store.visit_history(&org().slug, "V1").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].visit.as_ref().unwrap().delivered.as_ref().unwrap().exit, NaiveTime::from_hms_opt(9, 0, 0).unwrap());
    }

    #[test]
    fn a_deletion_removes_the_visit_and_keeps_it_in_history() {
        let (_d, store) = temp_store();
        import(&store, &[row(&[])]);
        let del = import(&store, &[format!("V1,1{}", ",".repeat(23))]);
        assert_eq!((del.counts.read, del.counts.updated, del.counts.rejected), (1, 1, 0), "{:#?}", del.issues);
        assert_eq!(store.current_visits(&org().slug).count(), 0);
        assert_eq!(store.visit_history(&org().slug, "V1").unwrap().len(), 1);
    }

    #[test]
    fn a_visit_sent_again_after_its_deletion_is_updated_not_new() {
        let (_d, store) = temp_store();
        import(&store, &[row(&[])]);
        import(&store, &[format!("V1,1{}", ",".repeat(23))]);
        let again = import(&store, &[row(&[])]);
        assert_eq!((again.counts.new, again.counts.updated), (0, 1), "{:#?}", again.issues);
        assert_eq!(store.current_visits(&org().slug).count(), 1);
        assert_eq!(store.visit_history(&org().slug, "V1").unwrap().len(), 2, "the first version and the deletion");
    }

    #[test]
    fn another_organisations_guid_is_refused_while_the_uploaders_own_is_not_known() {
        let (_d, store) = temp_store();
        let other_ref = crate::domain::parse_guid("6513270E-269E-0D37-F2A7-4DE452E6B438").unwrap();
        let other_service = crate::domain::parse_guid("36F675CC-81E7-4EF5-E8E2-5D940ED90475").unwrap();
        let mut other = Organisation::new("Other Care Ltd", Some(other_ref));
        other.upsert_service(crate::domain::Service { name: "Other - Oxford".into(), service_ref: Some(other_service), contract: "DAPL".into() });
        store.put_org(&other).unwrap();
        let r = import(&store, &[row(&[("OrganisationRef", "6513270E-269E-0D37-F2A7-4DE452E6B438")]), row(&[("VisitRef", "V2"), ("ServiceRef", "36F675CC-81E7-4EF5-E8E2-5D940ED90475")])]);
        assert_eq!(codes(&r), [Code::WrongOrganisation, Code::WrongOrganisation], "{:#?}", r.issues);
        assert!(r.issues[0].message.contains("is another organisation's GUID in the council's CPLIs, not one of Pearl Carers Ltd"), "{}", r.issues[0].message);
        assert_eq!((r.issues[0].field.as_deref(), r.issues[1].field.as_deref()), (Some("OrganisationRef"), Some("ServiceRef")));
        // A GUID nobody has is not judged while the uploader's own is not known.
        let r = import(&store, &[row(&[("VisitRef", "V3"), ("OrganisationRef", "11111111-2222-3333-4444-555555555555")])]);
        assert_eq!(r.counts.rejected, 0, "{:#?}", r.issues);
    }

    #[test]
    fn a_deletion_sent_again_changes_nothing_and_counts_as_updated() {
        let (_d, store) = temp_store();
        import(&store, &[row(&[])]);
        let del = format!("V1,1{}", ",".repeat(23));
        import(&store, std::slice::from_ref(&del));
        let again = import(&store, &[del]);
        assert_eq!((again.counts.read, again.counts.updated, again.counts.rejected), (1, 1, 0), "{:#?}", again.issues);
        assert_eq!(store.current_visits(&org().slug).count(), 0);
        // Nothing written: the history holds the visit once, as the first deletion left it.
        assert_eq!(store.visit_history(&org().slug, "V1").unwrap().len(), 1);
    }

    #[test]
    fn validating_a_deletion_without_the_store_does_not_call_it_unknown() {
        let del = format!("V1,1{}", ",".repeat(23));
        let r = judge(&[del]);
        assert_eq!((r.counts.updated, r.counts.rejected, codes(&r)), (1, 0, vec![]));
    }

    #[test]
    fn deleting_a_visit_that_does_not_exist_is_rejected() {
        let (_d, store) = temp_store();
        let r = import(&store, &[format!("V404,1{}", ",".repeat(23))]);
        assert_eq!(codes(&r), [Code::DeleteUnknown]);
    }

    #[test]
    fn rows_in_a_locked_period_are_rejected_deletions_included() {
        let (_d, store) = temp_store();
        import(&store, &[row(&[])]);
        store.lock_until(NaiveDate::from_ymd_opt(2022, 10, 30).unwrap()).unwrap();
        let r = import(&store, &[row(&[("DeliveredExitTime", "09:05")]), format!("V1,1{}", ",".repeat(23))]);
        assert_eq!(codes(&r), [Code::DuplicateRef, Code::DuplicateRef]);
        let r = import(&store, &[row(&[("DeliveredExitTime", "09:05")])]);
        let i = only(&r, Code::PeriodLocked);
        assert!(i.message.contains("payment period 1 (03/10/2022 to 30/10/2022)"), "{}", i.message);
        let r = import(&store, &[format!("V1,1{}", ",".repeat(23))]);
        let i = only(&r, Code::PeriodLocked);
        // The deletion leaves PlannedVisitDate blank: the date is the stored visit's, and it says so.
        assert!(i.message.starts_with("the visit already stored is dated in a locked period: PlannedVisitDate 03/10/2022"), "{}", i.message);
    }

    #[test]
    fn a_visit_stored_in_a_locked_period_cannot_be_moved_out_of_it() {
        let (_d, store) = temp_store();
        import(&store, &[row(&[])]);
        store.lock_until(NaiveDate::from_ymd_opt(2022, 10, 30).unwrap()).unwrap();
        // On 05/11/2022, after the lock, so that the visit of 01/11/2022 is not in the future.
        let r = run_bytes(file(&[row(&[("PlannedVisitDate", "01/11/2022")])]).as_bytes(), &config((2022, 11, 5)), Mode::Import(&store));
        assert_eq!(codes(&r), [Code::PeriodLocked], "{:#?}", r.issues);
        assert_eq!((r.counts.updated, r.counts.rejected), (0, 1));
    }

    #[test]
    fn a_carer_ref_must_name_one_of_the_organisations_carers() {
        let (_d, store) = temp_store();
        let r = import(&store, &[row(&[("CarerRef", "C1")])]);
        assert_eq!(codes(&r), [Code::UnknownCarer]);
        let carers = run_bytes(b"CarerRef,Forename,Surname,Deleted\nC1,Si\xC3\xA2n,Jones,0\n", &config((2022, 10, 5)), Mode::Import(&store));
        assert_eq!((carers.kind, carers.counts.new), (crate::outcome::FileKind::Carers, 1), "{:#?}", carers.issues);
        assert!(!codes(&import(&store, &[row(&[("CarerRef", "C1")])])).contains(&Code::UnknownCarer));
    }

    #[test]
    fn an_import_interrupted_part_way_is_rolled_back_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        {
            let store = Store::open(&db).unwrap();
            import(&store, &[row(&[])]);
            // Write like an import that never reached its commit.
            let batch = store.begin_visits(&org().slug, "crashed", true).unwrap();
            let prev = batch.current("V1").unwrap().map(|(raw, _)| raw);
            batch.put(prev.as_ref(), "V1", batch.encode("V1", 2, None)).unwrap();
            batch.put(None, "V2", batch.encode("V2", 3, None)).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open_after_drop(&db);
        let current: Vec<_> = store.current_visits(&org().slug).map(|v| v.unwrap().visit_ref).collect();
        assert_eq!(current, ["V1"]);
        assert_eq!(store.visit_history(&org().slug, "V1").unwrap().len(), 0);
    }

    #[test]
    fn week_totals_keep_the_weeks_actuals_and_follow_updates_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cfg = config((2022, 10, 5));
        let cancelled = [("VisitRef", "V2"), ("VisitType", "C"), ("Comments", "cancelled late"), ("DeliveredVisitDate", ""), ("DeliveredEntryTime", ""), ("DeliveredExitTime", "")];
        let hospital = [("VisitRef", "V3"), ("VisitType", "H"), ("DeliveredVisitDate", ""), ("DeliveredEntryTime", ""), ("DeliveredExitTime", "")];
        let first = file(&[row(&[("DeliveredExitTime", "09:30")]), row(&cancelled), row(&hospital)]);
        run_bytes(first.as_bytes(), &cfg, Mode::Import(&store));
        let week = || store.weeks(&org().slug).map(|w| w.unwrap().1).collect::<Vec<_>>();
        let t = week();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].visits, t[0].paid_visits, t[0].actual_minutes, t[0].frust_minutes), (3, 2, 90, 60));
        // V1 delivered for 60 minutes now; V2 deleted.
        let delete = row(&[("VisitRef", "V2"), ("Deleted", "1")]);
        run_bytes(file(&[row(&[]), delete]).as_bytes(), &cfg, Mode::Import(&store));
        let t = week();
        assert_eq!((t[0].visits, t[0].paid_visits, t[0].actual_minutes, t[0].frust_minutes), (2, 1, 60, 0));
    }

    #[test]
    fn week_totals_stored_before_lengths_were_rounded_are_made_again_once_from_the_visits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.put_org(&org()).unwrap();
        let cfg = config((2022, 10, 5));
        // 08:00:00 to 08:30:50 and 09:30:00: 31 and 90 minutes.
        let rows = [row(&[("PlannedExitTime", "08:30:50"), ("DeliveredExitTime", "08:30:50")]), row(&[("VisitRef", "V2"), ("PlannedEntryTime", "10:00"), ("PlannedExitTime", "11:30")])];
        run_bytes(file(&rows).as_bytes(), &cfg, Mode::Import(&store));
        let weeks = || store.weeks(&org().slug).map(|w| w.unwrap()).collect::<Vec<_>>();
        let right = weeks();
        assert_eq!(right[0].1.planned_minutes, 121);
        // As a week written before: the seconds dropped.
        let (key, mut old) = right[0].clone();
        old.planned_minutes -= 1;
        old.actual_minutes -= 1;
        store.replace_weeks(&org().slug, [(key, old)]).unwrap();
        assert_eq!(round_stored_weeks_once(&store, &cfg.rules.visit_types).unwrap(), 1);
        assert_eq!(weeks(), right);
        // Once: a week changed after it is left to the imports.
        store.replace_weeks(&org().slug, [(right[0].0.clone(), old)]).unwrap();
        assert_eq!(round_stored_weeks_once(&store, &cfg.rules.visit_types).unwrap(), 0);
        assert_eq!(weeks()[0].1, old);
    }

    // Issue 11: the visit rules the guides state.

    fn judge_against(cplis: Vec<Cpli>, rows: &[String]) -> ImportResult {
        run_bytes(file(rows).as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: Some(cplis) })
    }

    fn with_contract(contract: &str) -> Cpli {
        let mut c = cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 10, 3), 1);
        c.contract = contract.into();
        c
    }

    fn h_row(vref: &str, date: &str, entry: &str) -> String {
        let exit = format!("{}:30", &entry[..2]);
        row(&[
            ("VisitRef", vref), ("VisitType", "H"), ("PlannedVisitDate", date), ("PlannedEntryTime", entry), ("PlannedExitTime", &exit),
            ("DeliveredVisitDate", ""), ("DeliveredEntryTime", ""), ("DeliveredExitTime", ""), ("Comments", "in hospital"),
        ])
    }

    fn dhs_row(vref: &str, date: &str, entry: &str) -> String {
        let exit = format!("{}:30", &entry[..2]);
        row(&[("VisitRef", vref), ("PlannedVisitDate", date), ("PlannedEntryTime", entry), ("PlannedExitTime", &exit)])
    }

    #[test]
    fn a_service_level_outside_the_list_of_levels_that_take_visits_is_rejected_naming_the_list() {
        let r = judge(&[row(&[("ServiceLevel", "Hospital Incentive Payment")]), row(&[("VisitRef", "V2"), ("ServiceLevel", "Extra Care Housing - Planned Care"), ("PlannedEntryTime", "10:00")])]);
        assert_eq!(codes(&r), [Code::NoVisitsForServiceLevel; 2]);
        assert_eq!(r.counts.rejected, 2);
        let m = &r.issues[0].message;
        assert!(m.contains("Personal Care, Continuing Care, Medication Only") && m.contains("'Hospital Incentive Payment'"), "{m}");
        // Case, runs of spaces and the kind of dash do not refuse a good row.
        let ok = judge(&[row(&[("ServiceLevel", "personal  CARE")]), row(&[("VisitRef", "V2"), ("ServiceLevel", "Home Support - Urgent Care"), ("PlannedEntryTime", "10:00")])]);
        assert!(!codes(&ok).contains(&Code::NoVisitsForServiceLevel), "{:#?}", ok.issues);
        assert_eq!(ok.counts.rejected, 0);
    }

    #[test]
    fn a_level_the_guide_says_takes_no_visits_keeps_its_own_message() {
        let r = judge(&[row(&[("ServiceLevel", "Reablement")])]);
        assert!(only(&r, Code::NoVisitsForServiceLevel).message.contains("takes no visits data for ServiceLevel 'Reablement'"));
    }

    #[test]
    fn a_level_given_only_by_its_service_level_ref_is_judged_by_the_name_the_cplis_give_it() {
        let guid = "D23F0824-128B-2F33-0C5C-7FD0A6A3A450";
        let mut c = with_contract("DAPL");
        c.service_level = "Hospital Incentive Payment".into();
        c.service_level_ref = parse_guid(guid);
        let r = judge_against(vec![c], &[row(&[("ServiceLevel", ""), ("ServiceLevelRef", guid)])]);
        assert_eq!(only(&r, Code::NoVisitsForServiceLevel).field.as_deref(), Some("ServiceLevelRef"));
    }

    #[test]
    fn a_service_level_ref_given_where_the_cpli_has_none_is_matched_by_the_levels_name() {
        // The extract left this client's ServiceLevelRef blank; another CPLI gives the level's GUID.
        let guid = "97D54925-1C23-4C40-8B4D-2A1E7C3B5F60";
        let mut other = with_contract("DAPL");
        (other.cpli_id, other.ssref, other.service_level_ref) = ("200".into(), "B2".into(), parse_guid(guid));
        let r = judge_against(vec![with_contract("DAPL"), other], &[row(&[("ServiceLevelRef", guid)])]);
        assert_eq!(r.issues, vec![]);
    }

    #[test]
    fn a_service_level_ref_that_is_not_the_councils_guid_for_the_level_is_a_ref_mismatch() {
        let (theirs, given) = ("97D54925-1C23-4C40-8B4D-2A1E7C3B5F60", "CCCCCCCC-1111-2222-3333-444444444444");
        let mut c = with_contract("DAPL");
        c.service_level_ref = parse_guid(theirs);
        let r = judge_against(vec![c.clone()], &[row(&[("ServiceLevelRef", given)])]);
        let i = only(&r, Code::RefMismatch);
        assert_eq!(i.field.as_deref(), Some("ServiceLevelRef"));
        assert!(i.message.contains(theirs) && i.message.contains("CPLI 100") && i.message.contains("leave it blank"), "{}", i.message);
        assert_eq!(r.counts.rejected, 1);
        assert_eq!(judge_against(vec![c], &[row(&[("ServiceLevelRef", theirs)])]).issues, vec![]);
    }

    #[test]
    fn a_client_ref_and_an_nhs_number_of_two_clients_without_an_ssref_are_a_ref_mismatch() {
        let client_ref = "2217BEAD-DBC4-96CB-8E81-973E0BECD7B0";
        let mut a = with_contract("DAPL");
        a.client_ref = parse_guid(client_ref);
        let mut b = with_contract("DAPL");
        (b.cpli_id, b.ssref, b.nhs_number) = ("200".into(), "B2".into(), Some("9434765919".into()));
        let r = judge_against(vec![a, b], &[row(&[("SSRef", ""), ("ClientRef", client_ref), ("NHSNumber", "9434765919")])]);
        let i = only(&r, Code::RefMismatch);
        assert_eq!(i.field.as_deref(), Some("NHSNumber"));
        assert!(i.message.contains("is client B2") && i.message.contains("is client A1"), "{}", i.message);
        assert_eq!(r.counts.rejected, 1);
    }

    #[test]
    fn an_unmatched_client_given_only_by_nhs_number_points_at_nhs_number() {
        let r = judge_against(vec![with_contract("DAPL")], &[row(&[("SSRef", ""), ("NHSNumber", "9434765919")])]);
        assert_eq!(only(&r, Code::Unmatched).field.as_deref(), Some("NHSNumber"));
    }

    #[test]
    fn a_visit_matching_a_spot_cpli_is_an_invoice_case_and_is_still_stored() {
        let r = judge_against(vec![with_contract("Spot")], &[row(&[])]);
        let i = only(&r, Code::InvoiceCase);
        assert_eq!(i.severity, Severity::Warning);
        assert!(i.message.contains("CPLI 100") && i.message.contains("Invoice Case"), "{}", i.message);
        assert_eq!(r.counts.new, 1);
        assert_eq!(judge_against(vec![with_contract("DAPL")], &[row(&[])]).issues, vec![]);
    }

    #[test]
    fn dhs_on_a_live_well_at_home_cpli_and_dhf_on_a_home_support_one_are_the_wrong_delivered_type() {
        let r = judge_against(vec![with_contract("LWAH")], &[row(&[])]);
        let i = only(&r, Code::WrongDeliveredType);
        assert!(i.message.contains("use VisitType DHF"), "{}", i.message);
        assert_eq!(i.field.as_deref(), Some("VisitType"));
        for contract in ["DAPL", "APL", "HTLAH"] {
            let r = judge_against(vec![with_contract(contract)], &[row(&[("VisitType", "dhf")])]);
            assert!(only(&r, Code::WrongDeliveredType).message.contains("use VisitType DHS"));
            assert_eq!(judge_against(vec![with_contract(contract)], &[row(&[])]).issues, vec![]);
        }
        assert_eq!(judge_against(vec![with_contract("LWAH")], &[row(&[("VisitType", "DHF")])]).issues, vec![]);
    }

    #[test]
    fn a_visit_marked_delivered_between_the_clients_hospital_visits_is_flagged() {
        let r = judge(&[
            // Admitted after Monday's morning call: delivered, then H.
            dhs_row("D1", "03/10/2022", "08:00"),
            h_row("H1", "03/10/2022", "18:00"),
            dhs_row("D2", "04/10/2022", "08:00"),
            h_row("H2", "04/10/2022", "18:00"),
            // Discharged: H, then delivered.
            dhs_row("D3", "05/10/2022", "08:00"),
        ]);
        let i = only(&r, Code::ClientInHospital);
        assert_eq!((i.row, i.reference.as_deref()), (Some(4), Some("D2")));
        assert!(i.message.contains("03/10/2022 18:00 and 04/10/2022 18:00"), "{}", i.message);
        assert_eq!(r.counts.new, 5);
    }

    #[test]
    fn h_visits_already_stored_put_the_client_in_hospital_too() {
        let (_d, store) = temp_store();
        import(&store, &[h_row("H1", "03/10/2022", "18:00")]);
        let r = import(&store, &[dhs_row("D2", "04/10/2022", "08:00"), h_row("H2", "04/10/2022", "18:00")]);
        assert_eq!(only(&r, Code::ClientInHospital).reference.as_deref(), Some("D2"));
    }

    #[test]
    fn planned_hours_differ_is_judged_once_for_a_client_named_by_ssref_on_some_rows_and_nhs_number_on_others() {
        let mut c = cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), 7);
        c.nhs_number = Some("9434765919".into());
        let mut rows = week_of_visits(5, &[]);
        for d in 5..7 {
            let date = format!("{:02}/10/2022", 3 + d);
            rows.push(row(&[("VisitRef", &format!("N{d}")), ("SSRef", ""), ("NHSNumber", "9434765919"), ("PlannedVisitDate", &date)]));
        }
        let r = run_bytes(file(&rows).as_bytes(), &config((2022, 11, 1)), Mode::Validate { store: None, cplis: Some(vec![c.clone()]) });
        assert_eq!(r.issues, vec![]);
        rows.pop();
        let r = run_bytes(file(&rows).as_bytes(), &config((2022, 11, 1)), Mode::Validate { store: None, cplis: Some(vec![c]) });
        let i = only(&r, Code::PlannedHoursDiffer);
        assert!(i.message.contains("6 hours planned") && i.reference.as_deref() == Some("A1"), "{}", i.message);
    }

    #[test]
    fn a_file_that_only_corrects_or_deletes_some_of_a_weeks_visits_does_not_judge_the_week() {
        let (_d, store) = temp_store();
        store.upsert_cplis(&[cpli("100", "Pearl Carers - Zone 6 - Oxford", (2022, 9, 5), 7)]).unwrap();
        let cfg = config((2022, 11, 1));
        let send = |rows: &[String]| run_bytes(file(rows).as_bytes(), &cfg, Mode::Import(&store));
        assert_eq!(send(&week_of_visits(7, &[])).issues, vec![]);
        let longer = row(&[("VisitRef", "W0"), ("PlannedExitTime", "09:30"), ("DeliveredExitTime", "09:30")]);
        assert_eq!(send(std::slice::from_ref(&longer)).issues, vec![]);
        assert_eq!(send(&[row(&[("VisitRef", "W1"), ("Deleted", "1")])]).issues, vec![]);
        // Re-sending the week's whole current set judges it again.
        let mut week = week_of_visits(7, &[]);
        week.remove(1);
        week[0] = longer;
        let r = send(&week);
        assert!(only(&r, Code::PlannedHoursDiffer).message.contains("6.5 hours planned"));
    }

    #[test]
    fn a_visit_ref_in_the_files_range_is_read_only_when_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let sent = store.begin_visits(&org().slug, "sent", true).unwrap();
        for r in ["V1", "V3", "V9"] {
            sent.put(None, r, sent.encode(r, 2, None)).unwrap();
        }
        sent.commit(&run_bytes(file(&[]).as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None }), &[]).unwrap();
        let stored = |b: &VisitBatch<'_>, r: &str| b.current(r).unwrap().is_some();
        let mut batch = store.begin_visits(&org().slug, "next", true).unwrap();
        batch.expect_refs(b"V1", b"V4", 4).unwrap();
        assert!(stored(&batch, "V1") && stored(&batch, "V3"));
        assert!(!stored(&batch, "V2") && !stored(&batch, "V4"));
        // Outside the file's range nothing was walked: read as before.
        assert!(stored(&batch, "V9"));
        // What the import itself writes is found again.
        batch.put(None, "V2", batch.encode("V2", 3, None)).unwrap();
        assert!(stored(&batch, "V2"));
        // More stored in the range than the file has rows: nothing kept, every VisitRef read.
        let mut crowded = store.begin_visits(&org().slug, "crowded", false).unwrap();
        crowded.expect_refs(b"V1", b"V9", 2).unwrap();
        assert!(stored(&crowded, "V9") && !stored(&crowded, "V5"));
    }

    #[test]
    fn week_totals_written_by_an_interrupted_import_are_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let week = WeekKey { client: "A1".into(), level: "personal care".into(), service: "s".into(), monday: NaiveDate::from_ymd_opt(2022, 10, 3).unwrap() };
        let t = |m| WeekTotals { planned_minutes: m, ..WeekTotals::default() };
        let other = WeekKey { service: "other".into(), ..week.clone() };
        {
            let store = Store::open(&db).unwrap();
            let done = store.begin_visits(&org().slug, "done", true).unwrap();
            // Weeks are written with visits (an organisation with none is known to have no week).
            done.put(None, "V1", done.encode("V1", 2, None)).unwrap();
            done.put_week(&week, t(60), None).unwrap();
            done.commit(&run_bytes(file(&[]).as_bytes(), &config((2022, 10, 5)), Mode::Validate { store: None, cplis: None }), &[]).unwrap();
            let crashed = store.begin_visits(&org().slug, "crashed", true).unwrap();
            crashed.put_week(&week, t(120), Some(t(60))).unwrap();
            crashed.put_week(&other, t(30), None).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open_after_drop(&db);
        let read = store.begin_visits(&org().slug, "reader", false).unwrap();
        assert_eq!(read.week(&week).unwrap(), Some(t(60)));
        assert_eq!(read.week(&other).unwrap(), None);
    }
}
