//! One-off claims in the store (issue 12): `j\0slug\0claim_ref` a claim (its id inside), and
//! `m\0claim_seq` the last claim id given. A claims file's claims and the counter go in the import's
//! own commit batch, so a replay never gives an id twice; a decision goes in one batch with the
//! provider's emails (and the council file's record when it came as a file).

use super::{encode, key, Result, Store};
use crate::claims::{Claim, ClaimId};
use crate::domain::Slug;
use crate::mail::outbox::Queued;
use crate::outcome::ImportResult;

const CLAIM_SEQ: &[u8] = b"claim_seq";

fn claim_key(slug: &Slug, claim_ref: &str) -> Vec<u8> {
    key(&[b"j", slug.as_bytes(), claim_ref.as_bytes()])
}

impl Store {
    /// Every claim of one organisation, or of all.
    pub fn claims(&self, slug: Option<&Slug>) -> Result<Vec<Claim>> {
        let prefix = match slug {
            Some(s) => key(&[b"j", s.as_bytes(), b""]),
            None => key(&[b"j", b""]),
        };
        self.scan::<Claim>(&prefix).map(|r| r.map(|(_, c)| c)).collect()
    }

    pub fn claim_by_id(&self, id: ClaimId) -> Result<Option<Claim>> {
        Ok(self.claims(None)?.into_iter().find(|c| c.id == id))
    }

    /// The last claim id given (0: none yet).
    pub fn claim_seq(&self) -> Result<u64> {
        Ok(self.get::<u64>(&key(&[b"m", CLAIM_SEQ]))?.unwrap_or(0))
    }

    /// A claims file: its claims, the id counter, its import record and emails, in one batch, flushed.
    pub fn commit_claims(&self, slug: &Slug, claims: &[Claim], seq: u64, result: &ImportResult) -> Result<()> {
        let mut batch = sled::Batch::default();
        for c in claims {
            batch.insert(claim_key(slug, &c.claim_ref), encode(c));
        }
        if seq > self.claim_seq()? {
            batch.insert(key(&[b"m", CLAIM_SEQ]), encode(&seq));
        }
        self.record_in(&mut batch, slug, result)?;
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Decided claims with their emails, and the council file's record when they came as one, in
    /// one batch, flushed.
    /// Stores claims as they now are (a pending claim's figure refigured), in one batch.
    pub fn put_claims(&self, claims: &[Claim]) -> Result<()> {
        self.decide_claims(claims, &[], None)
    }

    pub fn decide_claims(&self, claims: &[Claim], emails: &[Queued], council_file: Option<&ImportResult>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for c in claims {
            batch.insert(claim_key(&c.org, &c.claim_ref), encode(c));
        }
        for q in emails {
            self.queue_waiting(&mut batch, q);
        }
        if let Some(result) = council_file {
            self.council_record_in(&mut batch, result);
        }
        self.db.apply_batch(batch)?;
        self.flush()
    }
}
