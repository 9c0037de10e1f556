//! Contacts, the mail outbox and pending digest lines in the store. An import's emails are queued
//! in the import's own commit batch (`queue_answers`), so a file is stored and answered together or
//! not at all, and a replay, which finds the import already committed, never queues them again.

use chrono::{DateTime, NaiveDate, Utc};

use super::{encode, key, Result, Store};
use crate::domain::Slug;
use crate::outcome::ImportResult;
use crate::mail::contacts::{Contact, Notify};
use crate::mail::outbox::{Letter, Queued};
use crate::schedule::CouncilSummary;

const WAITING: &[u8] = b"w";
/// A file's email until its result files are in place (issue 9).
const HELD: &[u8] = b"h";
const SENT: &[u8] = b"s";

fn contact_key(slug: &Slug, email_key: &str) -> Vec<u8> {
    key(&[b"k", slug.as_bytes(), email_key.as_bytes()])
}

/// A council contact: beside the organisations' contacts, under an empty organisation part that no
/// slug can be, so no organisation's scan meets it (issue 10).
fn council_contact_key(email_key: &str) -> Vec<u8> {
    key(&[b"k", b"", email_key.as_bytes()])
}

/// `m\0council_summary`: the last council summary queued.
const COUNCIL_SUMMARY: &[u8] = b"council_summary";

/// Which day's council summary was queued last, and the time it closed at (the next one covers
/// from there).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SummaryMark {
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
}

fn mail_key(state: &[u8], q: &Queued) -> Vec<u8> {
    key(&[b"e", state, q.id.as_bytes(), q.contact.email.key().as_bytes()])
}

fn digest_line_key(slug: &Slug, email_key: &str, import_id: &str) -> Vec<u8> {
    key(&[b"g", slug.as_bytes(), email_key.as_bytes(), import_id.as_bytes()])
}

impl Store {
    /// Adds a contact, or changes the name and choice of one already there (same address, any case).
    pub fn put_contact(&self, slug: &Slug, contact: &Contact) -> Result<()> {
        self.db.insert(contact_key(slug, &contact.email.key()), encode(contact))?;
        self.flush()
    }

    pub fn contacts(&self, slug: &Slug) -> Result<Vec<Contact>> {
        self.scan::<Contact>(&key(&[b"k", slug.as_bytes(), b""])).map(|r| r.map(|(_, c)| c)).collect()
    }

    /// Unsubscribes: the contact goes, with its digest lines and the emails still waiting for it.
    /// Returns whether there was such a contact.
    pub fn remove_contact(&self, slug: &Slug, email_key: &str) -> Result<bool> {
        let mut batch = sled::Batch::default();
        let ck = contact_key(slug, email_key);
        let found = self.db.contains_key(&ck)?;
        batch.remove(ck);
        for kv in self.db.scan_prefix(key(&[b"g", slug.as_bytes(), email_key.as_bytes(), b""])) {
            batch.remove(kv?.0);
        }
        for q in self.waiting()? {
            if q.slug.as_ref() == Some(slug) && q.contact.email.key() == email_key {
                batch.remove(mail_key(WAITING, &q));
            }
        }
        for r in self.scan::<Queued>(&key(&[b"e", HELD, b""])) {
            let (k, q) = r?;
            if q.slug.as_ref() == Some(slug) && q.contact.email.key() == email_key {
                batch.remove(k);
            }
        }
        self.db.apply_batch(batch)?;
        self.flush()?;
        Ok(found)
    }

    /// Adds a council contact (issue 10: an officer who gets the daily summary), or changes the name
    /// of one already there.
    pub fn put_council_contact(&self, contact: &Contact) -> Result<()> {
        self.db.insert(council_contact_key(&contact.email.key()), encode(contact))?;
        self.flush()
    }

    pub fn council_contacts(&self) -> Result<Vec<Contact>> {
        self.scan::<Contact>(&key(&[b"k", b"", b""])).map(|r| r.map(|(_, c)| c)).collect()
    }

    /// Unsubscribes a council contact, with the summaries still waiting for it. Returns whether
    /// there was such a contact.
    pub fn remove_council_contact(&self, email_key: &str) -> Result<bool> {
        let mut batch = sled::Batch::default();
        let ck = council_contact_key(email_key);
        let found = self.db.contains_key(&ck)?;
        batch.remove(ck);
        for q in self.waiting()? {
            if q.slug.is_none() && q.contact.email.key() == email_key {
                batch.remove(mail_key(WAITING, &q));
            }
        }
        self.db.apply_batch(batch)?;
        self.flush()?;
        Ok(found)
    }

    /// The last council summary queued.
    pub fn council_summary_mark(&self) -> Result<Option<SummaryMark>> {
        self.get(&key(&[b"m", COUNCIL_SUMMARY]))
    }

    /// Queues `day`'s council summary, closing at `due`, for every council contact, unless that
    /// day's (or a later one's) was queued already: the emails and the mark go in one batch, so a
    /// day's summary is queued once across restarts and crashes. `figures` is given the time the
    /// summary covers from (the previous one's close, else a day before `due`) and is not called
    /// when nobody is subscribed. Returns how many emails were queued.
    pub fn queue_council_summary(
        &self,
        due: DateTime<Utc>,
        day: NaiveDate,
        figures: impl FnOnce(DateTime<Utc>) -> Result<CouncilSummary>,
    ) -> Result<usize> {
        let mark = self.council_summary_mark()?;
        if mark.as_ref().is_some_and(|m| m.day >= day) {
            return Ok(0);
        }
        let from = mark.map_or(due - chrono::Duration::days(1), |m| m.at);
        let contacts = self.council_contacts()?;
        let mut batch = sled::Batch::default();
        if !contacts.is_empty() {
            let summary = Box::new(figures(from)?);
            let id = format!("council-summary-{}", uuid::Uuid::now_v7());
            for contact in &contacts {
                let q = Queued::to_council(id.clone(), contact.clone(), Letter::CouncilSummary(summary.clone()), Utc::now());
                batch.insert(mail_key(WAITING, &q), encode(&q));
            }
        }
        batch.insert(key(&[b"m", COUNCIL_SUMMARY]), encode(&SummaryMark { day, at: due }));
        self.db.apply_batch(batch)?;
        self.flush()?;
        Ok(contacts.len())
    }

    /// Adds to an import's commit batch one email per contact that wants this file now, and a digest
    /// line per digest contact.
    pub(super) fn queue_answers(&self, batch: &mut sled::Batch, slug: &Slug, result: &ImportResult) -> Result<()> {
        let now = Utc::now();
        for contact in self.contacts(slug)? {
            if contact.notify == Notify::Digest {
                batch.insert(digest_line_key(slug, &contact.email.key(), &result.import_id), encode(&now));
            } else if contact.notify.wants_now(result) {
                let q = Queued::new(result.import_id.clone(), slug, contact, Letter::File { import_id: result.import_id.clone() }, now);
                batch.insert(mail_key(HELD, &q), encode(&q));
            }
        }
        Ok(())
    }

    /// Adds an email, ready to send, to a batch (issue 12: a claim's decision).
    pub(super) fn queue_waiting(&self, batch: &mut sled::Batch, q: &Queued) {
        batch.insert(mail_key(WAITING, q), encode(q));
    }

    /// Adds to a batch the moves of an import's held emails to the waiting ones.
    pub(super) fn release_held(&self, batch: &mut sled::Batch, import_id: &str) -> Result<()> {
        for r in self.scan::<Queued>(&key(&[b"e", HELD, import_id.as_bytes(), b""])) {
            let (k, q) = r?;
            batch.remove(k);
            batch.insert(mail_key(WAITING, &q), encode(&q));
        }
        Ok(())
    }

    /// Every email not yet sent, in the order queued (ids are time-ordered v7 UUIDs).
    pub fn waiting(&self) -> Result<Vec<Queued>> {
        self.scan::<Queued>(&key(&[b"e", WAITING, b""])).map(|r| r.map(|(_, q)| q)).collect()
    }

    /// Every email sent, oldest first.
    pub fn sent(&self) -> Result<Vec<Queued>> {
        let mut sent: Vec<Queued> = self.scan::<Queued>(&key(&[b"e", SENT, b""])).map(|r| r.map(|(_, q)| q)).collect::<Result<_>>()?;
        sent.sort_by_key(|q| q.sent_at);
        Ok(sent)
    }

    /// Moves a sent email out of the queue, flushed, so it is never sent again.
    pub fn mark_sent(&self, q: &Queued, at: DateTime<Utc>) -> Result<()> {
        let mut sent = q.clone();
        sent.sent_at = Some(at);
        let mut batch = sled::Batch::default();
        batch.remove(mail_key(WAITING, q));
        batch.insert(mail_key(SENT, &sent), encode(&sent));
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Records a failed attempt (attempts, next attempt, error) on a waiting email, flushed. An
    /// email unsubscribed meanwhile is not brought back.
    pub fn record_attempt(&self, q: &Queued) -> Result<()> {
        let k = mail_key(WAITING, q);
        if let Some(old) = self.db.get(&k)? {
            let _ = self.db.compare_and_swap(&k, Some(old), Some(encode(q)))?;
        }
        // Flushed, so `outbox list` after a crash shows the attempts and the last error (issue 9).
        self.flush()
    }

    /// Rolls every digest line written before `due_before` into one waiting email per contact.
    /// Returns how many digests were queued.
    pub fn roll_digests(&self, due_before: DateTime<Utc>, day: chrono::NaiveDate) -> Result<usize> {
        let mut groups: std::collections::BTreeMap<(Slug, String), Vec<(sled::IVec, String)>> = Default::default();
        for r in self.scan::<DateTime<Utc>>(b"g\0") {
            let (k, at) = r?;
            if at >= due_before {
                continue;
            }
            let parts: Vec<&[u8]> = k.splitn(4, |b| *b == 0).collect();
            let [_, slug, email, import_id] = parts.as_slice() else { continue };
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let Ok(slug) = Slug::parse(&text(slug)) else { continue };
            groups.entry((slug, text(email))).or_default().push((k.clone(), text(import_id)));
        }
        let mut queued = 0;
        for ((slug, email_key), lines) in groups {
            let mut batch = sled::Batch::default();
            for (k, _) in &lines {
                batch.remove(k.clone());
            }
            // A contact removed meanwhile has had its lines removed too; this is only a race's leftovers.
            if let Some(contact) = self.get::<Contact>(&contact_key(&slug, &email_key))? {
                let import_ids = lines.into_iter().map(|(_, id)| id).collect();
                let id = format!("digest-{}", uuid::Uuid::now_v7());
                let q = Queued::new(id, &slug, contact, Letter::Digest { day, import_ids }, Utc::now());
                batch.insert(mail_key(WAITING, &q), encode(&q));
                queued += 1;
            }
            self.db.apply_batch(batch)?;
        }
        if queued > 0 {
            self.flush()?;
        }
        Ok(queued)
    }

    /// How many files wait for each digest contact: (slug, address, lines).
    pub fn digest_lines(&self) -> Result<Vec<(Slug, String, usize)>> {
        let mut out: Vec<(Slug, String, usize)> = Vec::new();
        for kv in self.db.scan_prefix(b"g\0") {
            let (k, _) = kv?;
            let parts: Vec<String> = k.splitn(4, |b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            let [_, slug, email, _] = parts.as_slice() else { continue };
            let Ok(slug) = Slug::parse(slug) else { continue };
            match out.last_mut() {
                Some((s, e, n)) if *s == slug && e == email => *n += 1,
                _ => out.push((slug, email.clone(), 1)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Counts, FileKind};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    fn contact(email: &str, notify: Notify) -> Contact {
        Contact { email: email.parse().unwrap(), name: None, notify }
    }

    fn result(import_id: &str, rejected: u64) -> ImportResult {
        let mut r = ImportResult::new("visits.csv", import_id, Some("Pearl Carers Ltd"), String::new());
        r.kind = FileKind::Visits;
        r.counts = Counts { read: 2, new: 2 - rejected, updated: 0, rejected, data_quality_issues: 0 };
        r
    }

    #[test]
    fn an_import_queues_one_email_per_contact_that_wants_it_in_its_commit_batch() {
        let (_d, s) = store();
        s.put_contact(&slug("pearl"), &contact("every@pearl.example.org", Notify::Every)).unwrap();
        s.put_contact(&slug("pearl"), &contact("problems@pearl.example.org", Notify::Problems)).unwrap();
        s.put_contact(&slug("pearl"), &contact("digest@pearl.example.org", Notify::Digest)).unwrap();
        s.put_contact(&slug("pearl"), &contact("off@pearl.example.org", Notify::Off)).unwrap();
        s.put_contact(&slug("other"), &contact("other@other.example.org", Notify::Every)).unwrap();
        s.commit_carers(&slug("pearl"), &[], &[], &result("imp-1", 0)).unwrap();
        s.record_import(&slug("pearl"), &result("imp-2", 1)).unwrap();
        assert!(s.waiting().unwrap().is_empty(), "held until the result files are in place");
        s.mark_answered(&slug("pearl"), "imp-1").unwrap();
        s.mark_answered(&slug("pearl"), "imp-2").unwrap();
        let to: Vec<(String, String)> = s.waiting().unwrap().into_iter().map(|q| (q.id, q.contact.email.to_string())).collect();
        assert_eq!(
            to,
            [
                ("imp-1".to_string(), "every@pearl.example.org".to_string()),
                ("imp-2".into(), "every@pearl.example.org".into()),
                ("imp-2".into(), "problems@pearl.example.org".into()),
            ]
        );
        assert_eq!(s.digest_lines().unwrap(), [(slug("pearl"), "digest@pearl.example.org".to_string(), 2)]);
    }

    #[test]
    fn a_sent_email_leaves_the_queue_and_a_failed_one_keeps_its_attempts() {
        let (_d, s) = store();
        s.put_contact(&slug("pearl"), &contact("a@pearl.example.org", Notify::Every)).unwrap();
        s.put_contact(&slug("pearl"), &contact("b@pearl.example.org", Notify::Every)).unwrap();
        s.record_import(&slug("pearl"), &result("imp-1", 0)).unwrap();
        s.mark_answered(&slug("pearl"), "imp-1").unwrap();
        let waiting = s.waiting().unwrap();
        s.mark_sent(&waiting[0], Utc::now()).unwrap();
        let mut failed = waiting[1].clone();
        failed.failed("connection refused".into(), Utc::now(), &crate::config::MailConfig::default());
        s.record_attempt(&failed).unwrap();
        let left = s.waiting().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].attempts, left[0].last_error.as_deref()), (1, Some("connection refused")));
        let sent = s.sent().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].contact.email.as_str(), "a@pearl.example.org");
        assert!(sent[0].sent_at.is_some());
    }

    #[test]
    fn unsubscribing_drops_the_contacts_waiting_mail_and_digest_lines() {
        let (_d, s) = store();
        s.put_contact(&slug("pearl"), &contact("a@pearl.example.org", Notify::Every)).unwrap();
        s.put_contact(&slug("pearl"), &contact("d@pearl.example.org", Notify::Digest)).unwrap();
        s.record_import(&slug("pearl"), &result("imp-1", 0)).unwrap();
        assert!(s.remove_contact(&slug("pearl"), "a@pearl.example.org").unwrap());
        assert!(s.remove_contact(&slug("pearl"), "d@pearl.example.org").unwrap());
        assert!(!s.remove_contact(&slug("pearl"), "d@pearl.example.org").unwrap());
        s.mark_answered(&slug("pearl"), "imp-1").unwrap();
        assert!(s.waiting().unwrap().is_empty());
        assert!(s.digest_lines().unwrap().is_empty());
        assert!(s.contacts(&slug("pearl")).unwrap().is_empty());
    }

    #[test]
    fn the_days_files_roll_into_one_digest_per_contact_and_later_ones_wait_for_the_next() {
        let (_d, s) = store();
        s.put_contact(&slug("pearl"), &contact("d@pearl.example.org", Notify::Digest)).unwrap();
        s.record_import(&slug("pearl"), &result("imp-1", 0)).unwrap();
        s.record_import(&slug("pearl"), &result("imp-2", 1)).unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(s.roll_digests(Utc::now() - chrono::Duration::hours(1), day).unwrap(), 0, "written after the digest time");
        assert_eq!(s.roll_digests(Utc::now() + chrono::Duration::seconds(1), day).unwrap(), 1);
        let waiting = s.waiting().unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].letter, Letter::Digest { day, import_ids: vec!["imp-1".into(), "imp-2".into()] });
        assert!(waiting[0].id.starts_with("digest-"));
        assert_eq!(s.roll_digests(Utc::now() + chrono::Duration::seconds(1), day).unwrap(), 0, "rolled once");
    }

    fn summary(day: NaiveDate, from: DateTime<Utc>, to: DateTime<Utc>) -> CouncilSummary {
        CouncilSummary { day, from, to, organisations: vec![], failed: vec![], locks: vec![], overdue: vec![] }
    }

    #[test]
    fn council_contacts_are_kept_apart_from_every_organisations() {
        let (_d, s) = store();
        s.put_council_contact(&contact("Officer@Council.example.org", Notify::Digest)).unwrap();
        s.put_contact(&slug("pearl"), &contact("zoe@pearl.example.org", Notify::Every)).unwrap();
        assert_eq!(s.council_contacts().unwrap().len(), 1);
        assert_eq!(s.contacts(&slug("pearl")).unwrap().len(), 1);
        s.record_import(&slug("pearl"), &result("imp-1", 0)).unwrap();
        s.mark_answered(&slug("pearl"), "imp-1").unwrap();
        let to: Vec<String> = s.waiting().unwrap().into_iter().map(|q| q.contact.email.to_string()).collect();
        assert_eq!(to, ["zoe@pearl.example.org"], "a council contact is not sent a provider's file");
        assert!(!s.remove_contact(&slug("pearl"), "officer@council.example.org").unwrap());
        assert!(s.remove_council_contact("officer@council.example.org").unwrap());
        assert!(s.council_contacts().unwrap().is_empty());
    }

    #[test]
    fn a_days_council_summary_is_queued_once_for_every_council_contact() {
        let (dir, s) = store();
        s.put_council_contact(&contact("a@council.example.org", Notify::Digest)).unwrap();
        s.put_council_contact(&contact("b@council.example.org", Notify::Digest)).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let due = Utc::now();
        let mut asked_from = None;
        let n = s.queue_council_summary(due, day, |from| {
            asked_from = Some(from);
            Ok(summary(day, from, due))
        });
        assert_eq!(n.unwrap(), 2);
        assert_eq!(asked_from, Some(due - chrono::Duration::days(1)), "the first summary covers the day before its time");
        assert_eq!(s.queue_council_summary(due, day, |_| panic!("figures read again")).unwrap(), 0);
        drop(s);
        // Across a restart too; the next day's covers from the previous one's close.
        let s = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(s.queue_council_summary(due, day, |_| panic!("figures read again")).unwrap(), 0);
        let waiting = s.waiting().unwrap();
        assert_eq!(waiting.len(), 2);
        assert!(waiting.iter().all(|q| q.slug.is_none() && matches!(&q.letter, Letter::CouncilSummary(c) if c.day == day)));
        let next = day.succ_opt().unwrap();
        let later = due + chrono::Duration::days(1);
        let mut from_next = None;
        s.queue_council_summary(later, next, |from| {
            from_next = Some(from);
            Ok(summary(next, from, later))
        })
        .unwrap();
        assert_eq!(from_next, Some(due));
        assert!(s.remove_council_contact("a@council.example.org").unwrap());
        assert_eq!(s.waiting().unwrap().len(), 2, "a's summaries went with it");
    }
}
