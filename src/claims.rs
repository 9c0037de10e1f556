//! One-off claims of the hospital incentive (issue 12, SPEC 9): what a claim is, the council's
//! decision on it as a pure rule, the claims lists (`claim list`, the `claims.csv` exports) and the
//! email to the provider's contacts on each decision. The provider's claims file is
//! `ingest::claims`, the council's claim decisions file `ingest::claim_decisions`.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::{uk_date, Organisation, Slug};
use crate::mail::outbox::Queued;
use crate::outcome::{excel_safe, Code, Refusal};
use crate::pipeline::{Gateway, GatewayError, Result};
use crate::reports::money_text;

/// A claim's id: `C` and a number the gateway gives, unique across organisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClaimId(pub u64);

impl fmt::Display for ClaimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.0)
    }
}

impl ClaimId {
    /// `C12` (any case, spaces around ignored).
    pub fn parse(s: &str) -> Option<ClaimId> {
        crate::domain::parse_numbered(s, 'C').map(ClaimId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimStatus {
    Pending,
    Accepted,
    Rejected,
    /// Withdrawn by the provider (`Deleted` in a claims file) before a decision.
    Withdrawn,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Pending => "Pending",
            ClaimStatus::Accepted => "Accepted",
            ClaimStatus::Rejected => "Rejected",
            ClaimStatus::Withdrawn => "Withdrawn",
        }
    }

    /// Holds its stay against another claim for it (a rejected or withdrawn claim does not).
    pub fn holds_stay(self) -> bool {
        matches!(self, ClaimStatus::Pending | ClaimStatus::Accepted)
    }
}

/// A file kept with a claim: the name the provider gave it and where the gateway keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    /// The file's name in the organisation's attachments folder.
    pub kept_as: String,
    pub bytes: u64,
}

/// The council's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub at: DateTime<Utc>,
    /// The gateway's day it was decided on (`rules.current_day`, as a dispute's RaisedOn); `None`
    /// in a claim decided before 2026-12-03, whose day is its time's local date.
    #[serde(default)]
    pub on: Option<NaiveDate>,
    /// The amount accepted (the claim's, or the council's amended one); `None` when rejected.
    pub accepted_amount: Option<Decimal>,
    pub note: Option<String>,
    /// `claim-decisions.csv` (the council's file) or `gateway claim decide`.
    pub by: String,
}

/// One claim as stored: what the provider sent, the gateway's figure, and the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub id: ClaimId,
    pub org: Slug,
    pub organisation: String,
    pub claim_ref: String,
    pub ssref: String,
    pub client_name: String,
    pub service_name: String,
    pub admitted_on: NaiveDate,
    pub discharged_on: Option<NaiveDate>,
    pub notified_on: Option<NaiveDate>,
    pub amount: Decimal,
    pub description: String,
    pub attachment: Option<Attachment>,
    /// The CPLI in force on admission, and its contract (DAPL or LWAH).
    pub cpli_id: String,
    pub contract: String,
    /// The gateway's figure for the stay, exact, and its working ("4 h × £23.77 × 50% = £47.54").
    pub computed_amount: Decimal,
    pub working: String,
    /// The last day of the stay: its last H visit, and never before the stay's end as its H visits
    /// show it (claims stored before 2026-12-03 may hold the day care resumed): two claims whose
    /// stays overlap are one claim twice.
    pub stay_end: NaiveDate,
    pub status: ClaimStatus,
    pub submitted_at: DateTime<Utc>,
    /// The gateway's day it was first sent on, as [`Decided::on`].
    #[serde(default)]
    pub submitted_on: Option<NaiveDate>,
    pub updated_at: DateTime<Utc>,
    /// The file that last sent or withdrew it.
    pub file: String,
    pub decided: Option<Decided>,
}

/// The local date of a time stored before claims kept the gateway's day.
fn local_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono::Local).date_naive()
}

impl Decided {
    /// The day it was decided on: the gateway's day (since 2026-12-03; it was the UTC date, and
    /// ignored `rules.today`).
    pub fn day(&self) -> NaiveDate {
        self.on.unwrap_or_else(|| local_day(self.at))
    }
}

impl Claim {
    /// The day it was first sent on, as [`Decided::day`].
    pub fn submitted_day(&self) -> NaiveDate {
        self.submitted_on.unwrap_or_else(|| local_day(self.submitted_at))
    }

    /// Whether `other` claims the same client, service and stay.
    /// Whether this claim is for the stay of `ssref` at `service` from `from` to `to`, this claim's
    /// stay running to `end` (its `stay_end`, or later where its H visits now run on).
    pub fn same_stay(&self, ssref: &str, service: &crate::domain::NameKey, from: NaiveDate, to: NaiveDate, end: NaiveDate) -> bool {
        self.ssref.eq_ignore_ascii_case(ssref) && crate::domain::NameKey::new(&self.service_name) == *service && self.admitted_on <= to && from <= end
    }
}

/// What the council decides on one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accepted,
    Rejected,
}

impl Decision {
    /// `Accepted` or `Rejected` (also `accept`, `reject`), any case.
    pub fn parse(s: &str) -> Option<Decision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "accepted" | "accept" => Some(Decision::Accepted),
            "rejected" | "reject" => Some(Decision::Rejected),
            _ => None,
        }
    }
}

/// Decides a pending claim (SPEC 9): accepted at its own amount or the council's amended one, or
/// rejected with a note (a rejection without one is refused: the provider must be told why).
/// `at` and `on`: the time and the gateway's day.
pub fn decide(claim: &mut Claim, decision: Decision, amount: Option<Decimal>, note: Option<String>, by: &str, (at, on): (DateTime<Utc>, NaiveDate)) -> std::result::Result<(), Refusal> {
    if claim.status != ClaimStatus::Pending {
        let when = claim.decided.as_ref().map(|d| format!(" on {}", uk_date(d.day()))).unwrap_or_default();
        return Err(Refusal {
            code: Code::ClaimDecided,
            field: Some("Decision"),
            message: format!("claim {} ({}, ClaimRef '{}') is {}{when}: only a pending claim can be decided", claim.id, claim.organisation, claim.claim_ref, claim.status.as_str().to_lowercase()),
        });
    }
    let accepted_amount = match decision {
        Decision::Accepted => Some(amount.unwrap_or(claim.amount)),
        Decision::Rejected if amount.is_some() => {
            return Err(Refusal {
                code: Code::BadDecision,
                field: Some("Amount"),
                message: "an amended Amount goes with Accepted; leave Amount blank to reject the claim".into(),
            })
        }
        Decision::Rejected if note.is_none() => {
            return Err(Refusal { code: Code::Required, field: Some("Note"), message: "Note is required to reject a claim: the provider is told why".into() })
        }
        Decision::Rejected => None,
    };
    claim.status = if decision == Decision::Accepted { ClaimStatus::Accepted } else { ClaimStatus::Rejected };
    claim.updated_at = at;
    claim.decided = Some(Decided { at, on: Some(on), accepted_amount, note, by: by.to_string() });
    Ok(())
}

/// The columns of the council's `claims.csv` (SPEC 9); the provider's are the same without
/// Organisation ([`COLUMNS`]).
pub const COUNCIL_COLUMNS: [&str; 19] = [
    "Organisation",
    "ClaimRef",
    "ClaimId",
    "SSRef",
    "Client",
    "ServiceName",
    "Contract",
    "AdmittedOn",
    "DischargedOn",
    "Amount",
    "ComputedAmount",
    "Working",
    "Status",
    "AcceptedAmount",
    "Note",
    "SubmittedOn",
    "DecidedOn",
    "Attachment",
    "Description",
];

/// The columns of the provider's `claims.csv`.
pub const COLUMNS: &[&str] = COUNCIL_COLUMNS.split_at(1).1;

/// `claim list --format json`: the council's columns as snake_case keys (SPEC 6).
pub const LIST_KEYS: [&str; 19] = [
    "organisation",
    "claim_ref",
    "claim_id",
    "ssref",
    "client",
    "service_name",
    "contract",
    "admitted_on",
    "discharged_on",
    "amount",
    "computed_amount",
    "working",
    "status",
    "accepted_amount",
    "note",
    "submitted_on",
    "decided_on",
    "attachment",
    "description",
];

/// A claim's row in `claims.csv` (Excel-safe), without the organisation.
pub fn cells(c: &Claim) -> Vec<String> {
    let text = |s: &str| excel_safe(s).into_owned();
    let decided = c.decided.as_ref();
    vec![
        text(&c.claim_ref),
        c.id.to_string(),
        text(&c.ssref),
        text(&c.client_name),
        text(&c.service_name),
        c.contract.clone(),
        uk_date(c.admitted_on),
        c.discharged_on.map(uk_date).unwrap_or_default(),
        money_text(c.amount),
        money_text(c.computed_amount),
        text(&c.working),
        c.status.as_str().into(),
        decided.and_then(|d| d.accepted_amount).map(money_text).unwrap_or_default(),
        decided.and_then(|d| d.note.as_deref()).map(text).unwrap_or_default(),
        uk_date(c.submitted_day()),
        decided.map(|d| uk_date(d.day())).unwrap_or_default(),
        c.attachment.as_ref().map(|a| text(&a.name)).unwrap_or_default(),
        text(&c.description),
    ]
}

/// The email to each of the organisation's contacts when a claim is decided.
pub fn decision_emails(contacts: &[crate::mail::contacts::Contact], claim: &Claim, now: DateTime<Utc>) -> Vec<Queued> {
    crate::mail::outbox::notice_emails(contacts, &claim.org, &format!("claim-{}", claim.id), &decision_notice(claim), now)
}

/// What the decision email says.
pub fn decision_notice(c: &Claim) -> crate::mail::outbox::Notice {
    let d = c.decided.as_ref();
    let headline = match (c.status, d.and_then(|d| d.accepted_amount)) {
        (ClaimStatus::Accepted, Some(a)) if a != c.amount => {
            format!("Claim {} accepted at £{} (amended from £{})", c.id, money_text(a), money_text(c.amount))
        }
        (ClaimStatus::Accepted, Some(a)) => format!("Claim {} accepted: £{}", c.id, money_text(a)),
        _ => format!("Claim {} rejected", c.id),
    };
    let mut facts = vec![
        ("Claim".to_string(), format!("{} (your ClaimRef {})", c.id, c.claim_ref)),
        ("Client".into(), format!("{} {}", c.ssref, c.client_name).trim().to_string()),
        ("Service".into(), format!("{} ({})", c.service_name, c.contract)),
        ("Admitted".into(), uk_date(c.admitted_on)),
        ("Discharged".into(), c.discharged_on.map(uk_date).unwrap_or_else(|| "-".into())),
        ("Amount claimed".into(), format!("£{}", money_text(c.amount))),
        ("The gateway's figure".into(), c.working.clone()),
        ("Decision".into(), c.status.as_str().into()),
    ];
    if let Some(a) = d.and_then(|d| d.accepted_amount) {
        facts.push(("Amount accepted".into(), format!("£{}", money_text(a))));
    }
    if let Some(n) = d.and_then(|d| d.note.clone()) {
        facts.push(("Council's note".into(), n));
    }
    if let Some(d) = d {
        facts.push(("Decided on".into(), uk_date(d.day())));
    }
    crate::mail::outbox::Notice {
        subject: format!("{}: {headline}", c.organisation),
        headline,
        organisation: c.organisation.clone(),
        facts,
        closing: "Every claim and its status is in claims.csv in your exports folder. The council pays an accepted claim at the amount accepted; the gateway does not yet send payment items or remittance advice for it.".into(),
    }
}

/// `gateway claim list --format csv|json`: one row per claim, oldest first.
pub fn list_rows(claims: &[Claim]) -> Vec<Vec<String>> {
    claims
        .iter()
        .map(|c| {
            let mut row = vec![excel_safe(&c.organisation).into_owned()];
            row.extend(cells(c));
            row
        })
        .collect()
}

impl Gateway {
    /// Every claim, of one organisation or all, in id order.
    pub fn claims(&self, org: Option<&Organisation>) -> Result<Vec<Claim>> {
        let mut all = self.store.claims(org.map(|o| &o.slug))?;
        all.sort_by_key(|c| c.id);
        Ok(all)
    }

    /// `gateway claim decide`: the same rule as a row of the council's claim decisions file, stored
    /// with the provider's emails in one batch.
    /// `claim decide`: the claim decisions file's checks and codes for one claim, `amount` as typed.
    pub fn decide_claim(&self, id: ClaimId, decision: Decision, amount: Option<&str>, note: Option<String>) -> Result<Claim> {
        let refused = |r: Refusal| GatewayError::Invalid(format!("{}: {}", r.code.as_str(), r.message));
        let amount = amount.map(crate::ingest::claim_decisions::amended_amount).transpose().map_err(refused)?;
        let Some(mut claim) = self.store.claim_by_id(id)? else {
            return Err(GatewayError::Invalid(format!("UNKNOWN_CLAIM: there is no claim {id}: `gateway claim list` lists them")));
        };
        let now = Utc::now();
        let when = (now, self.config.rules.current_day());
        decide(&mut claim, decision, amount, note.filter(|n| !n.trim().is_empty()), "gateway claim decide", when).map_err(refused)?;
        let emails = decision_emails(&self.store.contacts(&claim.org)?, &claim, now);
        self.store.decide_claims(std::slice::from_ref(&claim), &emails, None)?;
        self.mark_exports(crate::exports::Touched::Org(claim.org.clone()));
        Ok(claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn claim(status: ClaimStatus) -> Claim {
        let at = DateTime::parse_from_rfc3339("2022-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        Claim {
            id: ClaimId(7),
            org: Slug::parse("pearl-carers-ltd").unwrap(),
            organisation: "Pearl Carers Ltd".into(),
            claim_ref: "HIP-1".into(),
            ssref: "A332295".into(),
            client_name: "Mr Principal Skinner".into(),
            service_name: "Pearl Carers - DAPL Oxford".into(),
            admitted_on: NaiveDate::from_ymd_opt(2022, 11, 21).unwrap(),
            discharged_on: NaiveDate::from_ymd_opt(2022, 11, 25),
            notified_on: None,
            amount: "47.54".parse().unwrap(),
            description: "=cmd".into(),
            attachment: None,
            cpli_id: "156040".into(),
            contract: "DAPL".into(),
            computed_amount: "47.54".parse().unwrap(),
            working: "4 h × £23.77 × 50% = £47.54".into(),
            stay_end: NaiveDate::from_ymd_opt(2022, 11, 25).unwrap(),
            status,
            submitted_at: at,
            submitted_on: None,
            updated_at: at,
            file: "claims.csv".into(),
            decided: None,
        }
    }

    #[test]
    fn claim_ids_are_c_and_a_number() {
        assert_eq!(ClaimId(12).to_string(), "C12");
        assert_eq!(ClaimId::parse(" c12 "), Some(ClaimId(12)));
        for bad in ["12", "C", "C1x", "D12", "C-1"] {
            assert_eq!(ClaimId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pending_claim_is_accepted_at_its_own_amount_or_the_councils_amended_one() {
        let now = Utc::now();
        let mut c = claim(ClaimStatus::Pending);
        decide(&mut c, Decision::Accepted, None, None, "t", (now, now.date_naive())).unwrap();
        assert_eq!((c.status, c.decided.as_ref().unwrap().accepted_amount), (ClaimStatus::Accepted, Some("47.54".parse().unwrap())));
        let mut c = claim(ClaimStatus::Pending);
        decide(&mut c, Decision::Accepted, Some("45".parse().unwrap()), Some("one visit was delivered".into()), "t", (now, now.date_naive())).unwrap();
        assert_eq!(decision_notice(&c).headline, "Claim C7 accepted at £45.00 (amended from £47.54)");
    }

    #[test]
    fn a_rejection_needs_a_note_and_no_amount() {
        let now = Utc::now();
        let mut c = claim(ClaimStatus::Pending);
        assert_eq!(decide(&mut c, Decision::Rejected, None, None, "t", (now, now.date_naive())).unwrap_err().code, Code::Required);
        assert_eq!(decide(&mut c, Decision::Rejected, Some(Decimal::ONE), Some("x".into()), "t", (now, now.date_naive())).unwrap_err().code, Code::BadDecision);
        assert_eq!(c.status, ClaimStatus::Pending, "a refused decision changes nothing");
        decide(&mut c, Decision::Rejected, None, Some("not enough detail".into()), "t", (now, now.date_naive())).unwrap();
        assert_eq!(c.status, ClaimStatus::Rejected);
    }

    #[test]
    fn only_a_pending_claim_can_be_decided() {
        for s in [ClaimStatus::Accepted, ClaimStatus::Rejected, ClaimStatus::Withdrawn] {
            let mut c = claim(s);
            let r = decide(&mut c, Decision::Accepted, None, None, "t", (Utc::now(), Utc::now().date_naive())).unwrap_err();
            assert_eq!((r.code, r.field), (Code::ClaimDecided, Some("Decision")));
            assert!(r.message.starts_with("claim C7 (Pearl Carers Ltd, ClaimRef 'HIP-1') is "), "{}", r.message);
        }
    }

    #[test]
    fn a_claims_row_neutralises_cells_excel_would_run() {
        let row = cells(&claim(ClaimStatus::Pending));
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(row.last().unwrap(), "'=cmd");
        assert_eq!(list_rows(&[claim(ClaimStatus::Pending)])[0].len(), COUNCIL_COLUMNS.len());
    }
}
