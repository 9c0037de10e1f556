//! The compact binary form of a stored visit (issue 11: JSON took ~430 bytes a visit and made
//! `import` write twice what sled needs); stores written before it hold JSON, read as before.
//!
//! A record starts with [`BINARY_V1`]; JSON always starts with `{`, so the first byte tells the two
//! forms apart and no migration is needed. Strings are a varint length then UTF-8; an optional
//! string is a varint of length + 1 (0: none); dates are days from 1 January of year 1 (CE) and
//! times seconds from midnight then nanoseconds, as varints.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use serde::Deserialize;

use super::visits::StoredVisit;
use crate::domain::{Delivered, Guid, MatchStatus, Visit};

/// First byte of a binary stored visit, version 1.
pub(super) const BINARY_V1: u8 = 1;

/// Why a binary stored visit could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the record ends before its {0}")]
    Truncated(&'static str),
    #[error("its {0} is not valid")]
    Invalid(&'static str),
    #[error("it starts with byte {0}, which is neither JSON nor a known binary version")]
    UnknownVersion(u8),
}

/// Whether a stored visit is in the binary form (else it is the JSON of stores written before).
pub(super) fn is_binary(v: &[u8]) -> bool {
    v.first() != Some(&b'{')
}

pub(super) fn encode(visit_ref: &str, import_id: &str, row: u64, visit: Option<&Visit>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(BINARY_V1);
    put_str(&mut out, visit_ref);
    put_str(&mut out, import_id);
    put_var(&mut out, row);
    match visit {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_visit(&mut out, v);
        }
    }
    out
}

fn put_visit(out: &mut Vec<u8>, v: &Visit) {
    // An exhaustive pattern: a field added to `Visit` fails to compile here until it is stored.
    let Visit {
        visit_ref,
        planned_date,
        planned_entry,
        planned_exit,
        visit_type,
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
        matched,
    } = v;
    put_str(out, visit_ref);
    put_date(out, *planned_date);
    put_time(out, *planned_entry);
    put_time(out, *planned_exit);
    put_str(out, visit_type);
    match delivered {
        None => out.push(0),
        Some(d) => {
            let Delivered { date, entry, exit, entry_override_reason, entry_overridden, exit_override_reason, exit_overridden } = d;
            out.push(1);
            put_date(out, *date);
            put_time(out, *entry);
            put_time(out, *exit);
            put_opt(out, entry_override_reason.as_deref());
            out.push(*entry_overridden as u8);
            put_opt(out, exit_override_reason.as_deref());
            out.push(*exit_overridden as u8);
        }
    }
    put_opt(out, variance_reason.as_deref());
    put_opt(out, comments.as_deref());
    put_opt(out, client_ref.as_ref().map(Guid::as_str));
    put_opt(out, ssref.as_deref());
    put_opt(out, nhs_number.as_deref());
    put_opt(out, service_level_ref.as_ref().map(Guid::as_str));
    put_opt(out, service_level.as_deref());
    put_opt(out, carer_ref.as_deref());
    put_opt(out, service_ref.as_ref().map(Guid::as_str));
    put_opt(out, service_name.as_deref());
    match matched {
        MatchStatus::Matched { cpli_id } => {
            out.push(0);
            put_str(out, cpli_id);
        }
        MatchStatus::Unmatched { reason } => {
            out.push(1);
            put_str(out, reason);
        }
    }
}

fn put_var(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_var(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            put_var(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn put_date(out: &mut Vec<u8>, d: NaiveDate) {
    // Days from CE are positive for every date a file can hold (years 1000 to 9999).
    put_var(out, d.num_days_from_ce().max(0) as u64);
}

fn put_time(out: &mut Vec<u8>, t: NaiveTime) {
    put_var(out, t.num_seconds_from_midnight() as u64);
    put_var(out, t.nanosecond() as u64);
}

/// Reads a binary stored visit.
pub(super) fn decode(v: &[u8]) -> Result<StoredVisit, CodecError> {
    let mut r = Reader(v);
    match r.byte("version")? {
        BINARY_V1 => {}
        other => return Err(CodecError::UnknownVersion(other)),
    }
    let visit_ref = r.string("VisitRef")?;
    let import_id = r.string("import id")?;
    let row = r.var("row")?;
    let visit = match r.byte("visit mark")? {
        0 => None,
        1 => Some(r.visit()?),
        _ => return Err(CodecError::Invalid("visit mark")),
    };
    if !r.0.is_empty() {
        return Err(CodecError::Invalid("length (bytes follow the visit)"));
    }
    Ok(StoredVisit { visit_ref, import_id, row, visit })
}

/// The VisitType of a binary stored visit, read without decoding the rest (`None`: a deletion).
/// Issue 11: finding a file's clients' H visits decoded every visit of the organisation in full.
pub(super) fn visit_type(v: &[u8]) -> Result<Option<&str>, CodecError> {
    let mut r = Reader(v);
    match r.byte("version")? {
        BINARY_V1 => {}
        other => return Err(CodecError::UnknownVersion(other)),
    }
    for what in ["VisitRef", "import id"] {
        let len = r.var(what)?;
        r.bytes(len, what)?;
    }
    r.var("row")?;
    match r.byte("visit mark")? {
        0 => return Ok(None),
        1 => {}
        _ => return Err(CodecError::Invalid("visit mark")),
    }
    let len = r.var("visit's VisitRef")?;
    r.bytes(len, "visit's VisitRef")?;
    r.date("PlannedVisitDate")?;
    r.time("PlannedEntryTime")?;
    r.time("PlannedExitTime")?;
    let len = r.var("VisitType")?;
    Ok(Some(r.bytes(len, "VisitType")?))
}

/// A binary stored visit's planned date and whether it is unmatched, read without decoding the
/// rest (`None`: a deletion). The exports that need only these (`unmatched.csv` to choose its
/// visits, the council's `submissions.csv`) decoded every visit in full.
pub(super) fn glance(v: &[u8]) -> Result<Option<(NaiveDate, bool)>, CodecError> {
    let mut r = Reader(v);
    match r.byte("version")? {
        BINARY_V1 => {}
        other => return Err(CodecError::UnknownVersion(other)),
    }
    r.skip_str("VisitRef")?;
    r.skip_str("import id")?;
    r.var("row")?;
    match r.byte("visit mark")? {
        0 => return Ok(None),
        1 => {}
        _ => return Err(CodecError::Invalid("visit mark")),
    }
    r.skip_str("visit's VisitRef")?;
    let planned_date = r.date("PlannedVisitDate")?;
    r.time("PlannedEntryTime")?;
    r.time("PlannedExitTime")?;
    r.skip_str("VisitType")?;
    match r.byte("delivered mark")? {
        0 => {}
        1 => {
            r.date("DeliveredVisitDate")?;
            r.time("DeliveredEntryTime")?;
            r.time("DeliveredExitTime")?;
            r.skip_opt("entry override reason")?;
            r.flag("entry overridden")?;
            r.skip_opt("exit override reason")?;
            r.flag("exit overridden")?;
        }
        _ => return Err(CodecError::Invalid("delivered mark")),
    }
    for what in ["VarianceReason", "Comments", "ClientRef", "SSRef", "NHSNumber", "ServiceLevelRef", "ServiceLevel", "CarerRef", "ServiceRef", "ServiceName"] {
        r.skip_opt(what)?;
    }
    match r.byte("match status")? {
        0 => Ok(Some((planned_date, false))),
        1 => Ok(Some((planned_date, true))),
        _ => Err(CodecError::Invalid("match status")),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let (&b, rest) = self.0.split_first().ok_or(CodecError::Truncated(what))?;
        self.0 = rest;
        Ok(b)
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.byte(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid(what)),
        }
    }

    fn var(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(CodecError::Invalid(what))
    }

    fn bytes(&mut self, len: u64, what: &'static str) -> Result<&'a str, CodecError> {
        let len = usize::try_from(len).map_err(|_| CodecError::Invalid(what))?;
        if len > self.0.len() {
            return Err(CodecError::Truncated(what));
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|_| CodecError::Invalid(what))
    }

    fn skip_str(&mut self, what: &'static str) -> Result<(), CodecError> {
        let len = usize::try_from(self.var(what)?).map_err(|_| CodecError::Invalid(what))?;
        self.0 = self.0.get(len..).ok_or(CodecError::Truncated(what))?;
        Ok(())
    }

    fn skip_opt(&mut self, what: &'static str) -> Result<(), CodecError> {
        let len = usize::try_from(self.var(what)?).map_err(|_| CodecError::Invalid(what))?;
        self.0 = self.0.get(len.saturating_sub(1)..).ok_or(CodecError::Truncated(what))?;
        Ok(())
    }

    fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = self.var(what)?;
        Ok(self.bytes(len, what)?.to_owned())
    }

    fn opt(&mut self, what: &'static str) -> Result<Option<String>, CodecError> {
        match self.var(what)? {
            0 => Ok(None),
            n => Ok(Some(self.bytes(n - 1, what)?.to_owned())),
        }
    }

    fn guid(&mut self, what: &'static str) -> Result<Option<Guid>, CodecError> {
        // `Guid` is a transparent string: read back exactly as it was written.
        self.opt(what)?
            .map(|s| Guid::deserialize(serde::de::value::StringDeserializer::<serde::de::value::Error>::new(s)))
            .transpose()
            .map_err(|_| CodecError::Invalid(what))
    }

    fn date(&mut self, what: &'static str) -> Result<NaiveDate, CodecError> {
        let days = i32::try_from(self.var(what)?).map_err(|_| CodecError::Invalid(what))?;
        NaiveDate::from_num_days_from_ce_opt(days).ok_or(CodecError::Invalid(what))
    }

    fn time(&mut self, what: &'static str) -> Result<NaiveTime, CodecError> {
        let secs = u32::try_from(self.var(what)?).map_err(|_| CodecError::Invalid(what))?;
        let nanos = u32::try_from(self.var(what)?).map_err(|_| CodecError::Invalid(what))?;
        NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).ok_or(CodecError::Invalid(what))
    }

    fn visit(&mut self) -> Result<Visit, CodecError> {
        let visit_ref = self.string("visit's VisitRef")?;
        let planned_date = self.date("PlannedVisitDate")?;
        let planned_entry = self.time("PlannedEntryTime")?;
        let planned_exit = self.time("PlannedExitTime")?;
        let visit_type = self.string("VisitType")?;
        let delivered = match self.byte("delivered mark")? {
            0 => None,
            1 => Some(Delivered {
                date: self.date("DeliveredVisitDate")?,
                entry: self.time("DeliveredEntryTime")?,
                exit: self.time("DeliveredExitTime")?,
                entry_override_reason: self.opt("entry override reason")?,
                entry_overridden: self.flag("entry overridden")?,
                exit_override_reason: self.opt("exit override reason")?,
                exit_overridden: self.flag("exit overridden")?,
            }),
            _ => return Err(CodecError::Invalid("delivered mark")),
        };
        Ok(Visit {
            visit_ref,
            planned_date,
            planned_entry,
            planned_exit,
            visit_type,
            delivered,
            variance_reason: self.opt("VarianceReason")?,
            comments: self.opt("Comments")?,
            client_ref: self.guid("ClientRef")?,
            ssref: self.opt("SSRef")?,
            nhs_number: self.opt("NHSNumber")?,
            service_level_ref: self.guid("ServiceLevelRef")?,
            service_level: self.opt("ServiceLevel")?,
            carer_ref: self.opt("CarerRef")?,
            service_ref: self.guid("ServiceRef")?,
            service_name: self.opt("ServiceName")?,
            matched: match self.byte("match status")? {
                0 => MatchStatus::Matched { cpli_id: self.string("CPLI id")? },
                1 => MatchStatus::Unmatched { reason: self.string("unmatched reason")? },
                _ => return Err(CodecError::Invalid("match status")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{key, Store};

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn guid(s: &str) -> Guid {
        Guid::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s)).unwrap()
    }

    /// Every optional field set, so each one is written and read back.
    fn full_visit() -> Visit {
        Visit {
            visit_ref: "V1".into(),
            planned_date: NaiveDate::from_ymd_opt(2024, 5, 6).unwrap(),
            planned_entry: time(8, 0),
            planned_exit: time(8, 30),
            visit_type: "DHS".into(),
            delivered: Some(Delivered {
                date: NaiveDate::from_ymd_opt(2024, 5, 6).unwrap(),
                entry: time(8, 5),
                exit: NaiveTime::from_hms_nano_opt(8, 41, 7, 5).unwrap(),
                entry_override_reason: Some("carer's phone was flat".into()),
                entry_overridden: true,
                exit_override_reason: Some("".into()),
                exit_overridden: false,
            }),
            variance_reason: Some("traffic".into()),
            comments: Some("[Double-Handed] café, naïve \u{1F600}".into()),
            client_ref: Some(guid("6F9619FF-8B86-D011-B42D-00C04FC964FF")),
            ssref: Some("B000001".into()),
            nhs_number: Some("9434765919".into()),
            service_level_ref: Some(guid("7F9619FF-8B86-D011-B42D-00C04FC964FF")),
            service_level: Some("Home Support".into()),
            carer_ref: Some("C1".into()),
            service_ref: Some(guid("8F9619FF-8B86-D011-B42D-00C04FC964FF")),
            service_name: Some("Pearl Carers - Zone 1".into()),
            matched: MatchStatus::Matched { cpli_id: "500001".into() },
        }
    }

    fn bare_visit() -> Visit {
        Visit {
            delivered: None,
            variance_reason: None,
            comments: None,
            client_ref: None,
            ssref: None,
            nhs_number: None,
            service_level_ref: None,
            service_level: None,
            carer_ref: None,
            service_ref: None,
            service_name: None,
            matched: MatchStatus::Unmatched { reason: "no CPLI for client B1".into() },
            ..full_visit()
        }
    }

    #[test]
    fn a_visit_written_in_the_binary_form_reads_back_field_for_field() {
        for (row, visit) in [(2, Some(full_visit())), (300_000, Some(bare_visit())), (7, None)] {
            let bytes = encode("V1", "imp-1", row, visit.as_ref());
            assert!(is_binary(&bytes));
            let back = decode(&bytes).unwrap();
            assert_eq!(back, StoredVisit { visit_ref: "V1".into(), import_id: "imp-1".into(), row, visit });
        }
    }

    #[test]
    fn a_visits_type_is_read_without_decoding_it_and_agrees_with_the_full_reading() {
        for (row, visit) in [(2, Some(full_visit())), (300_000, Some(bare_visit())), (7, None)] {
            let bytes = encode("V1", "imp-1", row, visit.as_ref());
            assert_eq!(visit_type(&bytes).unwrap(), visit.as_ref().map(|v| v.visit_type.as_str()));
        }
        let bytes = encode("V1", "imp-1", 2, Some(&full_visit()));
        assert!(visit_type(&bytes[..20]).is_err());
    }

    #[test]
    fn a_visits_date_and_match_are_read_without_decoding_it_and_agree_with_the_full_reading() {
        let mut unmatched = full_visit();
        unmatched.matched = MatchStatus::Unmatched { reason: "no CPLI".into() };
        for (row, visit) in [(2, Some(full_visit())), (300_000, Some(bare_visit())), (5, Some(unmatched)), (7, None)] {
            let bytes = encode("V1", "imp-1", row, visit.as_ref());
            let expected = visit.as_ref().map(|v| (v.planned_date, matches!(v.matched, MatchStatus::Unmatched { .. })));
            assert_eq!(glance(&bytes).unwrap(), expected);
            // Cut short, it is an error, never a panic or another answer (the CPLI id or reason
            // after the match status is not read).
            for cut in 1..bytes.len() {
                let cut_short = glance(&bytes[..cut]);
                assert!(cut_short.is_err() || cut_short.unwrap() == expected, "cut at {cut} of {}", bytes.len());
            }
        }
    }

    #[test]
    fn a_binary_visit_is_less_than_half_the_size_of_its_json() {
        let visit = full_visit();
        let json = serde_json::to_vec(&StoredVisit { visit_ref: "V1".into(), import_id: "imp-1".into(), row: 2, visit: Some(visit.clone()) }).unwrap();
        let binary = encode("V1", "imp-1", 2, Some(&visit));
        assert!(binary.len() * 2 < json.len(), "binary {} bytes, JSON {}", binary.len(), json.len());
    }

    #[test]
    fn a_cut_short_or_altered_binary_visit_is_an_error_not_a_panic() {
        let bytes = encode("V1", "imp-1", 2, Some(&full_visit()));
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "read {len} of {} bytes", bytes.len());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut unknown = bytes;
        unknown[0] = 9;
        assert!(matches!(decode(&unknown), Err(CodecError::UnknownVersion(9))));
    }

    /// A current visit and one earlier version exactly as a store written before issue 11 holds
    /// them (JSON, as today's main writes them).
    const OLD_CURRENT: &str = r#"{"visit_ref":"V1","import_id":"imp-old-2","row":3,"visit":{"visit_ref":"V1","planned_date":"2024-05-06","planned_entry":"08:00:00","planned_exit":"08:30:00","visit_type":"DHS","delivered":{"date":"2024-05-06","entry":"08:05:00","exit":"08:40:00"},"ssref":"B000001","service_level":"Home Support","service_name":"Pearl Carers - Zone 1","matched":{"status":"Matched","cpli_id":"500001"}}}"#;
    const OLD_EARLIER: &str = r#"{"visit_ref":"V1","import_id":"imp-old-1","row":2,"visit":{"visit_ref":"V1","planned_date":"2024-05-06","planned_entry":"08:00:00","planned_exit":"08:30:00","visit_type":"C","ssref":"B000001","matched":{"status":"Unmatched","reason":"no CPLI"}}}"#;

    #[test]
    fn a_store_written_before_issue_11_still_reads_and_rolls_back_to_its_json_visits() {
        let dir = tempfile::tempdir().unwrap();
        let slug = &crate::domain::Slug::parse("pearl-carers-ltd").unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.db.insert(key(&[b"v", slug.as_bytes(), b"V1"]), OLD_CURRENT.as_bytes()).unwrap();
            store.db.insert(key(&[b"h", slug.as_bytes(), b"V1", &7u64.to_be_bytes()]), OLD_EARLIER.as_bytes()).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open_after_drop(dir.path());
        let old: StoredVisit = serde_json::from_str(OLD_CURRENT).unwrap();
        let current: Vec<_> = store.current_visits(slug).map(Result::unwrap).collect();
        assert_eq!(current, vec![old.clone()]);
        assert_eq!(current[0].visit.as_ref().unwrap().delivered.as_ref().unwrap().exit, time(8, 40));
        let history = store.visit_history(slug, "V1").unwrap();
        assert_eq!(history.iter().map(|h| h.import_id.as_str()).collect::<Vec<_>>(), ["imp-old-1"]);
        let facts: Vec<_> = store.visit_facts(slug).map(Result::unwrap).collect();
        assert_eq!((facts.len(), facts[0].cpli_id.as_str(), facts[0].delivered_minutes), (1, "500001", Some(35)));

        // A new import replaces it in the binary form, keeping the JSON one as history; a failure
        // part-way rolls back to the JSON one.
        let batch = store.begin_visits(slug, "imp-new", true).unwrap();
        let (raw, stored) = batch.current("V1").unwrap().unwrap();
        assert_eq!(stored, old);
        let mut changed = full_visit();
        changed.planned_exit = time(9, 0);
        batch.put(Some(&raw), "V1", batch.encode("V1", 2, Some(&changed))).unwrap();
        let now: Vec<_> = store.current_visits(slug).map(Result::unwrap).collect();
        assert_eq!(now[0].visit.as_ref().unwrap().planned_exit, time(9, 0));
        assert_eq!(store.visit_history(slug, "V1").unwrap().len(), 2);
        assert_eq!(store.visit_facts(slug).map(Result::unwrap).next().unwrap().planned_minutes, 60);
        batch.abort().unwrap();
        assert_eq!(store.current_visits(slug).map(Result::unwrap).collect::<Vec<_>>(), vec![old]);

        // Matching again rewrites a JSON visit's status.
        let n = store.rematch_visits(slug, |_| MatchStatus::Unmatched { reason: "CPLI ended".into() }).unwrap();
        assert_eq!(n, 1);
        let visit = store.current_visits(slug).next().unwrap().unwrap().visit.unwrap();
        assert_eq!(visit.matched, MatchStatus::Unmatched { reason: "CPLI ended".into() });
        assert_eq!(visit.delivered.unwrap().entry, time(8, 5));
    }

    /// The H visits a file is judged against are read from the store once, then kept as visits are
    /// written; an import rolled back and visits matched again make them read afresh.
    #[test]
    fn an_organisations_visits_of_one_type_kept_in_memory_follow_every_write_roll_back_and_rematch() {
        let dir = tempfile::tempdir().unwrap();
        let slug = &crate::domain::Slug::parse("pearl-carers-ltd").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let of = |r: &str, t: &str| Visit { visit_ref: r.into(), visit_type: t.into(), ..bare_visit() };
        let h = |batch: &crate::store::VisitBatch<'_>| batch.current_of_type("H").unwrap().into_iter().map(|v| (v.visit_ref, v.matched)).collect::<Vec<_>>();
        let unmatched = bare_visit().matched;
        let first = store.begin_visits(slug, "imp-1", true).unwrap();
        for v in [of("V1", "H"), of("V2", "DHS"), of("V3", "H")] {
            first.put(None, &v.visit_ref, first.encode(&v.visit_ref, 2, Some(&v))).unwrap();
        }
        first.commit(&crate::outcome::ImportResult::new("one.csv", "imp-1", None, "2024-05-07T09:00:00Z".into()), &[]).unwrap();
        let second = store.begin_visits(slug, "imp-2", true).unwrap();
        assert_eq!(h(&second), [("V1".into(), unmatched.clone()), ("V3".into(), unmatched.clone())], "read from the store");
        // Kept, and following the writes: V2 becomes H, V1 stops being one, V3 is deleted.
        for (r, row, v) in [("V2", 3, Some(of("V2", "H"))), ("V1", 4, Some(of("V1", "DHS"))), ("V3", 5, None)] {
            let (previous, _) = second.current(r).unwrap().unwrap();
            second.put(Some(&previous), r, second.encode(r, row, v.as_ref())).unwrap();
        }
        assert_eq!(h(&second), [("V2".into(), unmatched.clone())]);
        // Rolled back: as the first import left them.
        second.abort().unwrap();
        let third = store.begin_visits(slug, "imp-3", false).unwrap();
        assert_eq!(h(&third), [("V1".into(), unmatched.clone()), ("V3".into(), unmatched)]);
        // Matched again: the kept ones carry the new match.
        let matched = MatchStatus::Matched { cpli_id: "500001".into() };
        store.rematch_visits(slug, |_| matched.clone()).unwrap();
        assert_eq!(h(&third), [("V1".into(), matched.clone()), ("V3".into(), matched)]);
    }
}
