//! Disputes in the store (issue 12): `d\0slug\0id` a dispute (id as 20 digits, so a scan is in id
//! order), and `m\0dispute_seq` the last dispute id given. Raised, answered or closed disputes go in
//! one batch with their emails and the file's record; a visits file that answers disputes puts them
//! in its own commit batch (`disputes_in`).

use std::collections::HashMap;

use super::{encode, key, Result, Store};
use crate::disputes::Dispute;
use crate::domain::Slug;
use crate::mail::outbox::Queued;
use crate::outcome::ImportResult;

const DISPUTE_SEQ: &[u8] = b"dispute_seq";

fn dispute_key(d: &Dispute) -> Vec<u8> {
    key(&[b"d", d.org.as_bytes(), format!("{:020}", d.id.0).as_bytes()])
}

/// Whose record a file's changes are saved with.
pub enum Record<'a> {
    /// A command: no file.
    None,
    /// The council's disputes file.
    Council(&'a ImportResult),
    /// A provider's responses file.
    Org(&'a Slug, &'a ImportResult),
}

impl Store {
    /// Every dispute of one organisation, or of all.
    pub fn disputes(&self, slug: Option<&Slug>) -> Result<Vec<Dispute>> {
        let prefix = match slug {
            Some(s) => key(&[b"d", s.as_bytes(), b""]),
            None => key(&[b"d", b""]),
        };
        self.scan::<Dispute>(&prefix).map(|r| r.map(|(_, d)| d)).collect()
    }

    /// The organisation's open disputes, by VisitRef (a visits file answers them).
    pub fn open_disputes_by_visit(&self, slug: &Slug) -> Result<HashMap<String, Vec<Dispute>>> {
        let mut by: HashMap<String, Vec<Dispute>> = HashMap::new();
        for d in self.disputes(Some(slug))?.into_iter().filter(Dispute::is_open) {
            by.entry(d.visit_ref.clone()).or_default().push(d);
        }
        Ok(by)
    }

    /// The last dispute id given (0: none yet).
    pub fn dispute_seq(&self) -> Result<u64> {
        Ok(self.get::<u64>(&key(&[b"m", DISPUTE_SEQ]))?.unwrap_or(0))
    }

    /// Disputes, the id counter, their emails and the file's record, in one batch, flushed; the
    /// batch also removes the pending marks (`marks`: import ids) of the visits deleted with them.
    pub fn save_disputes(&self, disputes: &[Dispute], seq: u64, emails: &[Queued], record: Record<'_>, marks: &[String]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for m in marks {
            batch.remove(key(&[b"p", m.as_bytes()]));
        }
        self.disputes_in(&mut batch, disputes);
        if seq > self.dispute_seq()? {
            batch.insert(key(&[b"m", DISPUTE_SEQ]), encode(&seq));
        }
        for q in emails {
            self.queue_waiting(&mut batch, q);
        }
        match record {
            Record::None => {}
            Record::Council(result) => self.council_record_in(&mut batch, result),
            Record::Org(slug, result) => self.record_in(&mut batch, slug, result)?,
        }
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Adds disputes to a commit batch.
    pub(crate) fn disputes_in(&self, batch: &mut sled::Batch, disputes: &[Dispute]) {
        for d in disputes {
            batch.insert(dispute_key(d), encode(d));
        }
    }
}
