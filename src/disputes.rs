//! Disputes (issue 12, SPEC 8): the council queries a visit, the provider answers or sends the visit
//! again, the council closes it. What a dispute is, its rules as pure functions, the desk every way
//! of raising, answering and closing one goes through (the council's disputes file, the provider's
//! responses file, the `dispute` commands), its lists and its emails.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::domain::{hh_mm, parse_guid, quote, uk_date, LockedUntil, Organisation, Slug, Visit, VisitTypes};
use crate::mail::contacts::Contact;
use crate::mail::outbox::{Notice, Queued};
use crate::outcome::{excel_safe, Code, Refusal};
use crate::pipeline::{Gateway, GatewayError, Result};
use crate::store::{Store, StoreError};

/// A dispute's id: `D` and a number the gateway gives, unique across organisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DisputeId(pub u64);

impl fmt::Display for DisputeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "D{}", self.0)
    }
}

impl DisputeId {
    /// `D12` (any case, spaces around ignored).
    pub fn parse(s: &str) -> Option<DisputeId> {
        crate::domain::parse_numbered(s, 'D').map(DisputeId)
    }
}

/// The guide's dispute types, numbered as the guide numbers them.
pub const TYPES: [&str; 10] = [
    "Invoice Case",
    "Reablement / Other Case",
    "Ceased Care Package",
    "Client Deceased",
    "Client Has Gone Private",
    "Client In Hospital",
    "Client In Respite Care",
    "Incorrect Data",
    "Client Disputes Visits Data",
    "Missing Comment",
];

/// Other names the guide gives a type: its Disputes screen shows Missing Comment as "No comments".
const ALIASES: [(&str, usize); 2] = [("No comments", 10), ("No comment", 10)];

/// One of [`TYPES`], by its number (1-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeType(u8);

impl DisputeType {
    /// `10`, `Missing Comment` or `10) Missing Comment` (names in any case and spacing).
    pub fn parse(s: &str) -> Option<DisputeType> {
        let s = s.trim();
        let number: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        let rest = s[number.len()..].trim_start_matches([')', '.', ' ', '-']).trim();
        // Letters and digits only, any case: "ClientInRespiteCare", "client-in-hospital".
        let key = |name: &str| name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>();
        let by_name = |name: &str| {
            TYPES.iter().position(|t| key(t) == key(name)).or_else(|| ALIASES.iter().find(|(a, _)| key(a) == key(name)).map(|(_, n)| n - 1))
        };
        let found = match (number.parse::<usize>().ok(), rest.is_empty()) {
            (Some(n), true) => Some(n.checked_sub(1)?),
            (Some(n), false) => by_name(rest).filter(|&i| i + 1 == n),
            (None, _) => by_name(rest),
        };
        found.filter(|&i| i < TYPES.len()).map(|i| DisputeType(i as u8 + 1))
    }

    pub fn number(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        TYPES[usize::from(self.0) - 1]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeStatus {
    InDispute,
    ResolutionRequested,
    Resolved,
}

impl DisputeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::InDispute => "In Dispute",
            DisputeStatus::ResolutionRequested => "Resolution Requested",
            DisputeStatus::Resolved => "Resolved",
        }
    }
}

/// An answer to a dispute: the provider's response, or the gateway's note that the visit was sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub on: NaiveDate,
    pub at: DateTime<Utc>,
    /// The file it came in, or the command.
    pub by: String,
    pub text: String,
}

/// Whether `given` (as a disputes file writes it: the name, the slug or the OrganisationRef) is `o`.
fn names(o: &Organisation, given: &str) -> bool {
    let by_ref = parse_guid(given);
    o.is_named(given) || (by_ref.is_some() && o.org_ref == by_ref)
}

/// One dispute as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: DisputeId,
    pub org: Slug,
    pub organisation: String,
    pub visit_ref: String,
    /// The visit as stored when the dispute was raised.
    pub visit: Visit,
    /// The client's name from the CPLI the visit matched; blank when it matched none.
    pub client_name: String,
    pub dispute_type: DisputeType,
    pub details: String,
    pub status: DisputeStatus,
    /// The gateway's day when raised (`rules.today`, or the local date).
    pub raised_on: NaiveDate,
    pub respond_by: NaiveDate,
    pub raised_at: DateTime<Utc>,
    pub raised_by: String,
    pub responses: Vec<Response>,
    pub resolved_on: Option<NaiveDate>,
    pub closed_by: Option<String>,
    pub note: Option<String>,
    /// Closed with `DeleteVisit`: the visit was deleted (the guide's reason 11).
    pub visit_deleted: bool,
}

impl Dispute {
    pub fn is_open(&self) -> bool {
        self.status != DisputeStatus::Resolved
    }

    /// In dispute, past its respond-by day, and never answered.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.status == DisputeStatus::InDispute && self.responses.is_empty() && today > self.respond_by
    }

    /// The status as every list shows it: `Overdue` in place of an overdue `In Dispute`.
    pub fn shown_status(&self, today: NaiveDate) -> &'static str {
        if self.is_overdue(today) { "Overdue" } else { self.status.as_str() }
    }

    /// Whether the provider's `disputes.csv` shows it: open, or resolved in the last `days` days.
    pub fn shown_to_provider(&self, today: NaiveDate, days: u32) -> bool {
        self.resolved_on.is_none_or(|on| on + chrono::Duration::days(i64::from(days)) >= today)
    }
}

/// Records an answer (SPEC 8): kept with who and when; with `request_resolution` the dispute moves
/// to Resolution Requested. A resolved dispute takes no answer.
pub fn respond(d: &mut Dispute, text: String, request_resolution: bool, by: &str, today: NaiveDate, at: DateTime<Utc>) -> std::result::Result<(), Refusal> {
    if !d.is_open() {
        return Err(closed(d));
    }
    d.responses.push(Response { on: today, at, by: by.to_string(), text });
    if request_resolution {
        d.status = DisputeStatus::ResolutionRequested;
    }
    Ok(())
}

/// A visits file sent the disputed VisitRef again (or deleted it): an open dispute is answered by
/// it, as if the provider had responded. Returns whether the dispute changed.
pub fn resubmitted(d: &mut Dispute, file: &str, deleted: bool, today: NaiveDate, at: DateTime<Utc>) -> bool {
    let text = format!("visit {} in {file}", if deleted { "deleted" } else { "resubmitted" });
    respond(d, text, true, "visits file", today, at).is_ok()
}

/// Closes a dispute (Resolved), with the council's note; `delete_visit` records that its visit is
/// deleted with it.
pub fn close(d: &mut Dispute, note: Option<String>, delete_visit: bool, by: &str, today: NaiveDate) -> std::result::Result<(), Refusal> {
    if !d.is_open() {
        return Err(closed(d));
    }
    d.status = DisputeStatus::Resolved;
    d.resolved_on = Some(today);
    d.closed_by = Some(by.to_string());
    d.note = note;
    d.visit_deleted = delete_visit;
    Ok(())
}

fn closed(d: &Dispute) -> Refusal {
    let on = d.resolved_on.map(|on| format!(" on {}", uk_date(on))).unwrap_or_default();
    Refusal { code: Code::DisputeClosed, field: Some("DisputeId"), message: format!("dispute {} (visit {}) was resolved{on}: a resolved dispute cannot change", d.id, d.visit_ref) }
}

/// The columns of the council's `disputes.csv` (SPEC 8); the provider's are the same without
/// Organisation ([`COLUMNS`]).
pub const COUNCIL_COLUMNS: [&str; 16] = [
    "Organisation",
    "DisputeId",
    "Status",
    "DisputeType",
    "Reason",
    "Details",
    "VisitRef",
    "SSRef",
    "Client",
    "VisitDate",
    "RaisedOn",
    "RespondBy",
    "Responses",
    "ResolvedOn",
    "Note",
    "VisitDeleted",
];

/// The columns of the provider's `disputes.csv`.
pub const COLUMNS: &[&str] = COUNCIL_COLUMNS.split_at(1).1;

/// `dispute list --format json`: the council's columns as snake_case keys (SPEC 6).
pub const LIST_KEYS: [&str; 16] = [
    "organisation",
    "dispute_id",
    "status",
    "dispute_type",
    "reason",
    "details",
    "visit_ref",
    "ssref",
    "client",
    "visit_date",
    "raised_on",
    "respond_by",
    "responses",
    "resolved_on",
    "note",
    "visit_deleted",
];

/// A dispute's row in `disputes.csv` (Excel-safe), without the organisation.
pub fn cells(d: &Dispute, today: NaiveDate) -> Vec<String> {
    let text = |s: &str| excel_safe(s).into_owned();
    let responses: Vec<String> = d.responses.iter().map(|r| format!("{} {}: {}", uk_date(r.on), r.by, r.text)).collect();
    vec![
        d.id.to_string(),
        d.shown_status(today).into(),
        d.dispute_type.number().to_string(),
        d.dispute_type.name().into(),
        text(&d.details),
        text(&d.visit_ref),
        text(d.visit.ssref.as_deref().unwrap_or_default()),
        text(&d.client_name),
        uk_date(d.visit.planned_date),
        uk_date(d.raised_on),
        uk_date(d.respond_by),
        text(&responses.join(" | ")),
        d.resolved_on.map(uk_date).unwrap_or_default(),
        d.note.as_deref().map(text).unwrap_or_default(),
        if d.visit_deleted { "Y" } else { "" }.into(),
    ]
}

/// `gateway dispute list`: one row per dispute, with the organisation.
pub fn list_rows(disputes: &[Dispute], today: NaiveDate) -> Vec<Vec<String>> {
    disputes
        .iter()
        .map(|d| {
            let mut row = vec![excel_safe(&d.organisation).into_owned()];
            row.extend(cells(d, today));
            row
        })
        .collect()
}

/// What the provider's contacts are told when a dispute is raised or closed.
pub fn notice(d: &Dispute) -> Notice {
    let v = &d.visit;
    let headline = match d.status {
        DisputeStatus::Resolved if d.visit_deleted => format!("Dispute {} resolved: visit {} deleted", d.id, d.visit_ref),
        DisputeStatus::Resolved => format!("Dispute {} resolved", d.id),
        _ => format!("Dispute {} on visit {}: {}, respond by {}", d.id, d.visit_ref, d.dispute_type.name(), uk_date(d.respond_by)),
    };
    let mut facts = vec![
        ("Dispute".to_string(), format!("{} ({} {})", d.id, d.dispute_type.number(), d.dispute_type.name())),
        ("Visit".into(), format!("{}: {} {}-{}, type {}", d.visit_ref, uk_date(v.planned_date), hh_mm(v.planned_entry), hh_mm(v.planned_exit), v.visit_type)),
        ("Client".into(), format!("{} {}", v.ssref.as_deref().unwrap_or_default(), d.client_name).trim().to_string()),
        ("Details".into(), d.details.clone()),
        ("Raised on".into(), uk_date(d.raised_on)),
        ("Respond by".into(), uk_date(d.respond_by)),
    ];
    if let Some(on) = d.resolved_on {
        facts.push(("Resolved on".into(), uk_date(on)));
        facts.push(("Council's note".into(), d.note.clone().unwrap_or_else(|| "-".into())));
    }
    let closing = if d.is_open() {
        "Answer with a dispute responses file (DisputeId, Response) in your inbox, or send the visit again with a comment in a visits file. Every dispute is in disputes.csv in your exports folder."
    } else {
        "Every dispute is in disputes.csv in your exports folder."
    };
    Notice { subject: format!("{}: {}", d.organisation, headline.replacen("Dispute", "dispute", 1)), headline, organisation: d.organisation.clone(), facts, closing: closing.into() }
}

/// The notice to each of the organisation's contacts.
pub fn emails(contacts: &[Contact], d: &Dispute, now: DateTime<Utc>) -> Vec<Queued> {
    crate::mail::outbox::notice_emails(contacts, &d.org, &format!("dispute-{}", d.id), &notice(d), now)
}

/// What one desk action comes to: the changed dispute's index, or the row's refusal; `Err` when
/// the store failed.
pub type Acted = std::result::Result<std::result::Result<usize, Refusal>, StoreError>;

/// What the council asks in one row or command: raise a dispute on a visit.
pub struct Raise<'a> {
    pub organisation: &'a str,
    pub visit_ref: &'a str,
    pub dispute_type: DisputeType,
    pub details: String,
}

/// Where disputes are raised, answered and closed: the store's disputes, loaded once, changed row by
/// row (each row stands alone), then saved with their emails in one batch. Every way in (the
/// council's file, the provider's file, the commands) goes through it, so each gets the same checks.
pub struct Desk<'s> {
    store: &'s Store,
    today: NaiveDate,
    respond_days: u32,
    locked: Option<LockedUntil>,
    orgs: Vec<Organisation>,
    disputes: Vec<Dispute>,
    seq: u64,
    /// Indexes into `disputes` of those changed, in order of first change.
    changed: Vec<usize>,
    emails: Vec<Queued>,
    contacts: HashMap<Slug, Vec<Contact>>,
    /// Each organisation's clients' names by CPLI id, read at its first raise.
    client_names: HashMap<Slug, HashMap<String, String>>,
    /// Visits to delete as their disputes close: organisation and VisitRef.
    deletions: Vec<(Slug, String)>,
    /// What the week totals of a deleted visit are kept by.
    visit_types: VisitTypes,
}

impl<'s> Desk<'s> {
    pub fn open(store: &'s Store, config: &Config) -> std::result::Result<Desk<'s>, StoreError> {
        Ok(Desk {
            store,
            today: config.rules.current_day(),
            respond_days: config.disputes.respond_days,
            locked: store.locked_until()?,
            orgs: store.orgs()?,
            disputes: store.disputes(None)?,
            seq: store.dispute_seq()?,
            changed: Vec::new(),
            emails: Vec::new(),
            contacts: HashMap::new(),
            client_names: HashMap::new(),
            deletions: Vec::new(),
            visit_types: config.rules.visit_types.clone(),
        })
    }

    /// Raises a dispute on a current visit; its index.
    pub fn raise(&mut self, r: Raise<'_>, by: &str, at: DateTime<Utc>) -> Acted {
        let Some(org) = self.orgs.iter().find(|o| names(o, r.organisation)).cloned() else {
            return Ok(Err(Refusal { code: Code::UnknownVisit, field: Some("Organisation"), message: format!("there is no organisation '{}': name it as in the CPLI extract, or by its OrganisationRef", quote(r.organisation)) }));
        };
        let deleting = self.deletions.iter().any(|(s, v)| *s == org.slug && v == r.visit_ref);
        let Some(visit) = self.store.current_visit(&org.slug, r.visit_ref)?.filter(|_| !deleting) else {
            return Ok(Err(Refusal { code: Code::UnknownVisit, field: Some("VisitRef"), message: format!("{} has no current visit '{}' (never sent, or deleted)", org.name, quote(r.visit_ref)) }));
        };
        if let Some(d) = self.disputes.iter().find(|d| d.is_open() && d.org == org.slug && d.visit_ref == visit.visit_ref && d.dispute_type == r.dispute_type) {
            return Ok(Err(Refusal {
                code: Code::AlreadyDisputed,
                field: Some("VisitRef"),
                message: format!("visit {} already has an open dispute of type {} ({}): {}, {}", d.visit_ref, r.dispute_type.number(), r.dispute_type.name(), d.id, d.status.as_str()),
            }));
        }
        if !self.client_names.contains_key(&org.slug) {
            let names = self.store.cplis_for_org(&org)?.into_iter().map(|c| (c.cpli_id, c.client_name)).collect();
            self.client_names.insert(org.slug.clone(), names);
        }
        let client_name = visit.cpli_id().and_then(|id| self.client_names[&org.slug].get(id)).cloned().unwrap_or_default();
        self.seq += 1;
        let d = Dispute {
            id: DisputeId(self.seq),
            org: org.slug.clone(),
            organisation: org.name.clone(),
            visit_ref: visit.visit_ref.clone(),
            visit,
            client_name,
            dispute_type: r.dispute_type,
            details: r.details,
            status: DisputeStatus::InDispute,
            raised_on: self.today,
            respond_by: self.today + chrono::Duration::days(i64::from(self.respond_days)),
            raised_at: at,
            raised_by: by.to_string(),
            responses: Vec::new(),
            resolved_on: None,
            closed_by: None,
            note: None,
            visit_deleted: false,
        };
        self.disputes.push(d);
        let i = self.disputes.len() - 1;
        self.changed(i, true, at)?;
        Ok(Ok(i))
    }

    /// The dispute with this id, of `org` when a provider asks (another's is unknown to it).
    fn find(&self, id: DisputeId, org: Option<&Slug>) -> std::result::Result<usize, Refusal> {
        self.disputes.iter().position(|d| d.id == id && org.is_none_or(|o| *o == d.org)).ok_or_else(|| Refusal {
            code: Code::UnknownDispute,
            field: Some("DisputeId"),
            message: format!("there is no dispute {id}{}: disputes.csv in the exports folder lists them", if org.is_some() { " of this organisation" } else { "" }),
        })
    }

    /// Closes a dispute; with `delete_visit` its visit is deleted too, as it is now (refused when
    /// that version is dated in a locked period), and every other open dispute on the visit is
    /// closed with it: what they queried is gone.
    pub fn close(&mut self, id: DisputeId, note: Option<String>, delete_visit: bool, by: &str, at: DateTime<Utc>) -> Acted {
        let i = match self.find(id, None) {
            Ok(i) => i,
            Err(r) => return Ok(Err(r)),
        };
        let mut d = self.disputes[i].clone();
        if let Err(r) = close(&mut d, note, delete_visit, by, self.today) {
            return Ok(Err(r));
        }
        if delete_visit {
            let current = self.store.current_visit(&d.org, &d.visit_ref)?;
            if let Some((v, lock)) = current.as_ref().zip(self.locked).filter(|(v, lock)| lock.locks(v.planned_date)) {
                return Ok(Err(Refusal {
                    code: Code::PeriodLocked,
                    field: Some("DeleteVisit"),
                    message: format!("visit {} is dated {}, in a locked period (everything up to {} is locked): it cannot be deleted; close the dispute without DeleteVisit", d.visit_ref, uk_date(v.planned_date), uk_date(lock.0)),
                }));
            }
            if current.is_some() {
                self.deletions.push((d.org.clone(), d.visit_ref.clone()));
            }
        }
        self.disputes[i] = d;
        self.changed(i, true, at)?;
        if delete_visit {
            let others: Vec<usize> = (0..self.disputes.len()).filter(|&o| o != i && self.disputes[o].is_open() && self.disputes[o].org == self.disputes[i].org && self.disputes[o].visit_ref == self.disputes[i].visit_ref).collect();
            for o in others {
                let note = format!("closed with dispute {}: the visit was deleted", id);
                if close(&mut self.disputes[o], Some(note), true, by, self.today).is_ok() {
                    self.changed(o, true, at)?;
                }
            }
        }
        Ok(Ok(i))
    }

    /// A provider's answer to one of its own disputes.
    pub fn respond(&mut self, org: &Slug, id: DisputeId, text: String, request_resolution: bool, by: &str, at: DateTime<Utc>) -> Acted {
        let i = match self.find(id, Some(org)) {
            Ok(i) => i,
            Err(r) => return Ok(Err(r)),
        };
        if let Err(r) = respond(&mut self.disputes[i], text, request_resolution, by, self.today, at) {
            return Ok(Err(r));
        }
        self.changed(i, false, at)?;
        Ok(Ok(i))
    }

    pub fn dispute(&self, i: usize) -> &Dispute {
        &self.disputes[i]
    }

    /// The VisitRef of dispute `id`, when there is one.
    pub fn visit_ref_of(&self, id: DisputeId) -> Option<&str> {
        self.find(id, None).ok().map(|i| self.disputes[i].visit_ref.as_str())
    }

    /// The organisation's name of dispute `id` when `given` (a name, slug or OrganisationRef) does
    /// not name it; `None` when it does, or there is no such dispute.
    pub fn other_org_of(&self, id: DisputeId, given: &str) -> Option<&str> {
        let d = &self.disputes[self.find(id, None).ok()?];
        let named = self.orgs.iter().any(|o| o.slug == d.org && names(o, given));
        (!named).then_some(d.organisation.as_str())
    }

    fn changed(&mut self, i: usize, notify: bool, at: DateTime<Utc>) -> std::result::Result<(), StoreError> {
        if !self.changed.contains(&i) {
            self.changed.push(i);
        }
        if notify {
            let org = self.disputes[i].org.clone();
            if !self.contacts.contains_key(&org) {
                self.contacts.insert(org.clone(), self.store.contacts(&org)?);
            }
            self.emails.extend(emails(&self.contacts[&org], &self.disputes[i], at));
        }
        Ok(())
    }

    /// What the desk changed, to be saved: the disputes, the id counter, the emails and the visits
    /// to delete.
    pub fn into_changes(self) -> Changes {
        let disputes = self.changed.iter().map(|&i| self.disputes[i].clone()).collect();
        Changes { disputes, seq: self.seq, emails: self.emails, deletions: self.deletions, visit_types: self.visit_types }
    }
}

/// What a desk changed.
#[derive(Default)]
pub struct Changes {
    pub disputes: Vec<Dispute>,
    pub seq: u64,
    pub emails: Vec<Queued>,
    pub deletions: Vec<(Slug, String)>,
    pub visit_types: VisitTypes,
}

impl Changes {
    /// Saves the changes all or nothing: the visits deleted are written first (each as the
    /// provider's deletion would, history kept), under a pending mark for each organisation; the
    /// disputes, the counter, the emails, the file's record and the removal of those marks then
    /// go in one batch. Cut short anywhere, the marks roll the deletions back (at the next start,
    /// or at once when the store refused a write).
    pub fn save(self, store: &Store, import_id: &str, record: crate::store::Record<'_>) -> std::result::Result<(), StoreError> {
        let mut marks = Vec::new();
        let saved = (|| {
            let mut by_org: std::collections::BTreeMap<&Slug, Vec<String>> = Default::default();
            for (slug, visit_ref) in &self.deletions {
                by_org.entry(slug).or_default().push(visit_ref.clone());
            }
            for (slug, refs) in by_org {
                let mark = format!("{import_id}.{slug}");
                marks.push(mark.clone());
                crate::ingest::visits::council_deletion(&self.visit_types, store, slug, &refs, &mark)?;
            }
            crate::fault::point("visits-deleted");
            store.save_disputes(&self.disputes, self.seq, &self.emails, record, &marks)
        })();
        if saved.is_err() && !marks.is_empty() {
            let _ = store.roll_back_unfinished();
        }
        saved
    }

    /// The organisations whose exports change.
    pub fn orgs(&self) -> Vec<Slug> {
        let mut orgs: Vec<Slug> = self.disputes.iter().map(|d| d.org.clone()).collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }
}

impl Gateway {
    /// Every dispute, of one organisation or all, in id order.
    pub fn disputes(&self, org: Option<&Organisation>) -> Result<Vec<Dispute>> {
        let mut all = self.store.disputes(org.map(|o| &o.slug))?;
        all.sort_by_key(|d| d.id);
        Ok(all)
    }

    /// `gateway dispute raise`: the same rule as a raise row of the council's disputes file.
    pub fn raise_dispute(&self, raise: Raise<'_>) -> Result<Dispute> {
        self.at_desk(|desk, at| desk.raise(raise, "gateway dispute raise", at))
    }

    /// `gateway dispute close`: the same rule as a close row of the council's disputes file.
    pub fn close_dispute(&self, id: DisputeId, note: Option<String>, delete_visit: bool) -> Result<Dispute> {
        self.at_desk(|desk, at| desk.close(id, note.filter(|n| !n.trim().is_empty()), delete_visit, "gateway dispute close", at))
    }

    fn at_desk(&self, act: impl FnOnce(&mut Desk<'_>, DateTime<Utc>) -> Acted) -> Result<Dispute> {
        let mut desk = Desk::open(&self.store, &self.config)?;
        let i = act(&mut desk, Utc::now())?.map_err(|r| GatewayError::Invalid(format!("{}: {}", r.code.as_str(), r.message)))?;
        let dispute = desk.dispute(i).clone();
        let changes = desk.into_changes();
        let orgs = changes.orgs();
        let import_id = format!("dispute-{}", uuid::Uuid::now_v7());
        changes.save(&self.store, &import_id, crate::store::Record::None)?;
        for org in orgs {
            // A dispute closed by deleting its visit changes the stay a pending claim is for.
            if let Some(o) = self.store.org_by_slug(&org)? {
                self.refigure_claims(&o)?;
            }
            self.mark_exports(crate::exports::Touched::Org(org));
        }
        Ok(dispute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MatchStatus;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2022, 10, d).unwrap()
    }

    pub(crate) fn dispute() -> Dispute {
        let at = DateTime::parse_from_rfc3339("2022-10-10T10:00:00Z").unwrap().with_timezone(&Utc);
        let t = |h| chrono::NaiveTime::from_hms_opt(h, 0, 0).unwrap();
        Dispute {
            id: DisputeId(1),
            org: Slug::parse("pearl-carers-ltd").unwrap(),
            organisation: "Pearl Carers Ltd".into(),
            visit_ref: "PS3".into(),
            visit: Visit {
                visit_ref: "PS3".into(),
                planned_date: day(5),
                planned_entry: t(8),
                planned_exit: t(9),
                visit_type: "U".into(),
                delivered: None,
                variance_reason: None,
                comments: None,
                client_ref: None,
                ssref: Some("A332295".into()),
                nhs_number: None,
                service_level_ref: None,
                service_level: Some("Personal Care".into()),
                carer_ref: None,
                service_ref: None,
                service_name: Some("Pearl Carers - DAPL Oxford".into()),
                matched: MatchStatus::Matched { cpli_id: "156040".into() },
            },
            client_name: "Mr Principal Skinner".into(),
            dispute_type: DisputeType::parse("10").unwrap(),
            details: "=missing comment".into(),
            status: DisputeStatus::InDispute,
            raised_on: day(10),
            respond_by: day(17),
            raised_at: at,
            raised_by: "disputes.csv".into(),
            responses: Vec::new(),
            resolved_on: None,
            closed_by: None,
            note: None,
            visit_deleted: false,
        }
    }

    #[test]
    fn dispute_ids_are_d_and_a_number() {
        assert_eq!(DisputeId(12).to_string(), "D12");
        assert_eq!(DisputeId::parse(" d12 "), Some(DisputeId(12)));
        for bad in ["12", "D", "D1x", "C12", "D-1"] {
            assert_eq!(DisputeId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dispute_types_are_the_guides_ten_by_number_or_name() {
        assert_eq!(DisputeType::parse("10").map(DisputeType::name), Some("Missing Comment"));
        assert_eq!(DisputeType::parse("missing  comment").map(DisputeType::number), Some(10));
        assert_eq!(DisputeType::parse("2) Reablement / Other Case").map(DisputeType::number), Some(2));
        assert_eq!(DisputeType::parse("Client In Hospital").map(DisputeType::number), Some(6));
        assert_eq!(DisputeType::parse("No comments").map(DisputeType::number), Some(10), "the guide's Disputes screen");
        assert_eq!(DisputeType::parse("ClientInRespiteCare").map(DisputeType::number), Some(7));
        assert_eq!(DisputeType::parse("client-in-hospital").map(DisputeType::number), Some(6));
        for bad in ["0", "11", "Invoice", "3) Client Deceased", ""] {
            assert_eq!(DisputeType::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unanswered_dispute_is_overdue_only_after_its_respond_by_day() {
        let d = dispute();
        assert_eq!(d.shown_status(day(17)), "In Dispute");
        assert_eq!(d.shown_status(day(18)), "Overdue");
        let mut answered = dispute();
        respond(&mut answered, "working on it".into(), false, "r.csv", day(12), Utc::now()).unwrap();
        assert_eq!(answered.shown_status(day(18)), "In Dispute", "an answer, even without asking for resolution, is not overdue");
    }

    #[test]
    fn a_response_requesting_resolution_moves_the_dispute_and_is_kept_with_who_and_when() {
        let mut d = dispute();
        respond(&mut d, "P33 marked as undeliverable".into(), true, "responses.csv", day(11), Utc::now()).unwrap();
        assert_eq!(d.status, DisputeStatus::ResolutionRequested);
        assert_eq!(cells(&d, day(11))[11], "11/10/2022 responses.csv: P33 marked as undeliverable");
    }

    #[test]
    fn a_resubmitted_visit_answers_an_open_dispute_by_itself() {
        let mut d = dispute();
        assert!(resubmitted(&mut d, "visits.csv", false, day(11), Utc::now()));
        assert_eq!((d.status, d.responses[0].text.as_str()), (DisputeStatus::ResolutionRequested, "visit resubmitted in visits.csv"));
        close(&mut d, None, false, "t", day(12)).unwrap();
        assert!(!resubmitted(&mut d, "again.csv", true, day(13), Utc::now()), "a resolved dispute is not moved");
        assert_eq!(d.responses.len(), 1);
    }

    #[test]
    fn a_resolved_dispute_cannot_be_answered_or_closed_again() {
        let mut d = dispute();
        close(&mut d, Some("All received, thanks.".into()), false, "t", day(12)).unwrap();
        assert_eq!(close(&mut d, None, true, "t", day(13)).unwrap_err().code, Code::DisputeClosed);
        let r = respond(&mut d, "late".into(), true, "r.csv", day(13), Utc::now()).unwrap_err();
        assert_eq!(r.code, Code::DisputeClosed);
        assert_eq!(r.message, "dispute D1 (visit PS3) was resolved on 12/10/2022: a resolved dispute cannot change");
        assert!(!d.visit_deleted && d.note.as_deref() == Some("All received, thanks."));
    }

    #[test]
    fn a_resolved_dispute_is_shown_to_the_provider_for_the_days_configured() {
        let mut d = dispute();
        assert!(d.shown_to_provider(day(30), 0));
        close(&mut d, None, false, "t", day(10)).unwrap();
        assert!(d.shown_to_provider(day(20), 10));
        assert!(!d.shown_to_provider(day(21), 10));
    }

    #[test]
    fn a_disputes_row_has_every_column_and_neutralises_cells_excel_would_run() {
        let row = cells(&dispute(), day(10));
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(&row[..4], ["D1", "In Dispute", "10", "Missing Comment"]);
        assert_eq!(row[4], "'=missing comment");
        assert_eq!(list_rows(&[dispute()], day(10))[0].len(), COUNCIL_COLUMNS.len());
        assert_eq!(LIST_KEYS.len(), COUNCIL_COLUMNS.len());
    }

    #[test]
    fn the_raised_and_closed_emails_say_what_and_by_when() {
        let mut d = dispute();
        assert_eq!(notice(&d).subject, "Pearl Carers Ltd: dispute D1 on visit PS3: Missing Comment, respond by 17/10/2022");
        close(&mut d, Some("All received".into()), true, "t", day(12)).unwrap();
        assert_eq!(notice(&d).subject, "Pearl Carers Ltd: dispute D1 resolved: visit PS3 deleted");
    }
}
