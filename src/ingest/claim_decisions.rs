//! The council's claim decisions file (issue 12, SPEC 9), dropped into the council's `/inbox`: each
//! row accepts (at the claim's amount or an amended one) or rejects (with a note) one pending claim,
//! named by ClaimId or by Organisation and ClaimRef. Each row stands alone: a refused row is answered
//! and the others are applied, with an email to the provider's contacts for each decision.

use std::collections::HashMap;

use chrono::Utc;
use rust_decimal::Decimal;

use super::cells::{columns, Column as _, Row};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::kinds::{File, Judgement, Kind, Pending};
use super::source::{heading_key, Header, Rows, ScanSpec};
use super::IngestError;
use crate::claims::{self, Claim, ClaimId, Decision};
use crate::domain::{parse_guid, quote, Organisation};
use crate::mail::outbox::Queued;
use crate::outcome::{Code, FileKind, ImportResult, Issues, Refusal};
use crate::store::{Store, StoreError};

columns! {
    pub enum Col by ClaimId {
        Decision: "Decision";
        ClaimId: "ClaimId";
        Organisation: "Organisation";
        ClaimRef: "ClaimRef";
        Amount: "Amount";
        Note: "Note", free;
    }
}

/// The claim decisions file's entry in the table of the council's file kinds.
pub static KIND: Kind = Kind {
    kind: FileKind::ClaimDecisions,
    noun: "claim decisions",
    headings: HEADINGS,
    required: 1,
    detected_by: HEADINGS[Col::Decision as usize],
    missing_hint: Some("a claim decisions file needs Decision, and ClaimId or Organisation and ClaimRef (Amount and Note may be left out)"),
    scan_spec,
    judge,
};

/// A claim decisions file: a header with Decision and a ClaimId or ClaimRef heading.
pub fn detects(header: &Header) -> bool {
    let has = |h: &str| header.position(&heading_key(h)).is_some();
    has("Decision") && (has("ClaimId") || has("ClaimRef"))
}

fn scan_spec(_: &Header) -> ScanSpec {
    // A claim named twice is told by the second row's CLAIM_DECIDED: it was decided by the first.
    ScanSpec::default()
}

/// A row as its cells say.
pub struct DecisionRow {
    id: Option<ClaimId>,
    organisation: Option<String>,
    claim_ref: Option<String>,
    decision: Decision,
    amount: Option<Decimal>,
    note: Option<String>,
}

struct DecisionRules;

impl Rules for DecisionRules {
    type Col = Col;
    type Out = DecisionRow;
    type Scratch = ();

    fn judge(&self, r: &mut Row<'_, Col>, _: &mut ()) -> Result<Option<DecisionRow>, IngestError> {
        let decision = match r.opt(Col::Decision).map(|d| (Decision::parse(&d), d.into_owned())) {
            Some((Some(d), _)) => Some(d),
            Some((None, raw)) => {
                r.push(Code::BadDecision, Some(Col::Decision), format!("Decision '{}' is not Accepted or Rejected", quote(&raw)));
                None
            }
            None => {
                r.require(Col::Decision, ": Accepted or Rejected");
                None
            }
        };
        let id = match r.opt(Col::ClaimId).map(|v| v.into_owned()) {
            Some(v) => match ClaimId::parse(&v) {
                Some(id) => Some(id),
                None => {
                    r.push(Code::UnknownClaim, Some(Col::ClaimId), format!("ClaimId '{}' is not a claim id: C and a number, as in claims.csv", quote(&v)));
                    None
                }
            },
            None => None,
        };
        let organisation = r.text(Col::Organisation, 112);
        let claim_ref = r.text(Col::ClaimRef, 50);
        if r.is_blank(Col::ClaimId) && (organisation.is_none() || claim_ref.is_none()) && !r.has_errors() {
            let missing = if organisation.is_none() { Col::Organisation } else { Col::ClaimRef };
            r.require(missing, ": a claim is named by its ClaimId, or by Organisation and ClaimRef");
        }
        let amount = match r.opt(Col::Amount).map(|v| v.into_owned()) {
            Some(raw) => amended_amount(&raw).map_err(|refusal| r.push(refusal.code, Some(Col::Amount), refusal.message)).ok(),
            None => None,
        };
        let note = r.text(Col::Note, 8000);
        if r.has_errors() {
            return Ok(None);
        }
        Ok(decision.map(|decision| DecisionRow { id, organisation, claim_ref, decision, amount, note }))
    }
}

fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let store = file.store;
    let claims = match store {
        Some(s) => s.claims(None)?,
        None => Vec::new(),
    };
    let orgs = match store {
        Some(s) => s.orgs()?,
        None => Vec::new(),
    };
    let mut apply = Decide { store, orgs, claims, changed: Vec::new(), emails: Vec::new(), by: file.incoming.file_name.clone(), today: file.config.rules.current_day(), contacts: HashMap::new() };
    let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
    let counts = engine::run(rows, &file.shape(), &DecisionRules, &mut apply, issues)?;
    let decided: Vec<Claim> = apply.changed.iter().map(|&i| apply.claims[i].clone()).collect();
    let pending = DecisionsPending { store: store.filter(|_| file.write), claims: decided, emails: apply.emails };
    Ok((counts, Box::new(pending)))
}

struct Decide<'s> {
    store: Option<&'s Store>,
    orgs: Vec<Organisation>,
    claims: Vec<Claim>,
    /// Indexes into `claims` of those this file decided, in order.
    changed: Vec<usize>,
    emails: Vec<Queued>,
    by: String,
    /// The gateway's day, a decision's date.
    today: chrono::NaiveDate,
    contacts: HashMap<String, Vec<crate::mail::contacts::Contact>>,
}

impl Decide<'_> {
    /// The claim a row names, or why none.
    fn find(&self, row: &DecisionRow) -> Result<usize, (Col, String)> {
        let org = match &row.organisation {
            Some(name) => {
                let by_ref = parse_guid(name);
                let found = self.orgs.iter().find(|o| o.is_named(name) || o.slug.as_str() == name || (by_ref.is_some() && o.org_ref == by_ref));
                match found {
                    Some(o) => Some(o),
                    None => return Err((Col::Organisation, format!("there is no organisation '{}'", quote(name)))),
                }
            }
            None => None,
        };
        if let Some(id) = row.id {
            let Some(i) = self.claims.iter().position(|c| c.id == id) else {
                return Err((Col::ClaimId, format!("there is no claim {id}: claims.csv in the council's exports lists every claim")));
            };
            let c = &self.claims[i];
            if org.is_some_and(|o| o.slug != c.org) || row.claim_ref.as_deref().is_some_and(|r| r != c.claim_ref) {
                return Err((Col::ClaimId, format!("claim {id} is {}'s ClaimRef '{}', not the Organisation and ClaimRef on this row", c.organisation, quote(&c.claim_ref))));
            }
            return Ok(i);
        }
        let (Some(o), Some(r)) = (org, row.claim_ref.as_deref()) else {
            return Err((Col::ClaimId, "a claim is named by its ClaimId, or by Organisation and ClaimRef".into()));
        };
        self.claims
            .iter()
            .position(|c| c.org == o.slug && c.claim_ref == r)
            .ok_or_else(|| (Col::ClaimRef, format!("{} has no claim with ClaimRef '{}'", o.name, quote(r))))
    }
}

impl Apply<DecisionRow> for Decide<'_> {
    fn apply(&mut self, row: &mut Judged<DecisionRow>, d: DecisionRow) -> Result<Applied, IngestError> {
        let i = match self.find(&d) {
            Ok(i) => i,
            Err((col, message)) => {
                let issue = row.issue(Code::UnknownClaim, Some(col.heading()), message);
                row.issues.push(issue);
                return Ok(Applied::Rejected);
            }
        };
        let now = Utc::now();
        let mut claim = self.claims[i].clone();
        if let Err(refusal) = claims::decide(&mut claim, d.decision, d.amount, d.note, &self.by, (now, self.today)) {
            let mut issue = row.issue(refusal.code, refusal.field, refusal.message);
            // A row naming the claim by Organisation and ClaimRef is referred to by the claim's id.
            issue.reference.get_or_insert_with(|| claim.id.to_string());
            row.issues.push(issue);
            return Ok(Applied::Rejected);
        }
        if let Some(store) = self.store {
            if !self.contacts.contains_key(claim.org.as_str()) {
                self.contacts.insert(claim.org.to_string(), store.contacts(&claim.org)?);
            }
            self.emails.extend(claims::decision_emails(&self.contacts[claim.org.as_str()], &claim, now));
        }
        self.claims[i] = claim;
        self.changed.push(i);
        Ok(Applied::Updated)
    }
}

struct DecisionsPending<'s> {
    /// `None` when nothing is written.
    store: Option<&'s Store>,
    claims: Vec<Claim>,
    emails: Vec<Queued>,
}

impl Pending for DecisionsPending<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        match self.store {
            Some(s) => s.decide_claims(&self.claims, &self.emails, Some(result)),
            None => Ok(()),
        }
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An amended amount as the council writes it, in a claim decisions file or `claim decide
/// --amount`: pounds, more than £0, at most two decimal places, a leading `£` allowed.
pub fn amended_amount(raw: &str) -> Result<Decimal, Refusal> {
    super::cells::money("Amount", raw, "an amended amount is more than £0", "45.00").map_err(|p| Refusal { code: p.code, field: Some("Amount"), message: p.message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amended_amount_is_pounds_more_than_zero_with_at_most_two_decimals() {
        assert_eq!(amended_amount("45.5"), Ok(Decimal::new(455, 1)));
        assert_eq!(amended_amount(" £47.54 "), Ok(Decimal::new(4754, 2)));
        for (raw, code, says) in [
            ("0", Code::BadQuantity, "more than £0"),
            ("-5", Code::BadQuantity, "cannot be negative"),
            ("10.005", Code::BadQuantity, "2 decimal places"),
            ("2000000", Code::BadQuantity, "1,000,000"),
            ("forty", Code::BadNumber, "not an amount of money"),
        ] {
            let r = amended_amount(raw).unwrap_err();
            assert_eq!((r.code, r.field), (code, Some("Amount")), "{raw}");
            assert!(r.message.contains(says), "{raw}: {}", r.message);
        }
    }

    #[test]
    fn a_claim_decisions_file_has_a_decision_and_names_claims_by_id_or_by_reference() {
        assert!(detects(&Header::from_names(&["ClaimId", "Decision", "Amount", "Note"])));
        assert!(detects(&Header::from_names(&["organisation", "claim ref", "DECISION"])));
        assert!(!detects(&Header::from_names(&["ClaimRef", "SSRef", "AdmittedOn"])), "a provider's claims file");
        assert!(!detects(&Header::from_names(&["RequestId", "Decision", "Note"])), "another kind's decisions");
    }
}
