//! The provider's claims file (issue 12, SPEC 9): one-off claims of the hospital incentive, judged
//! against the stored CPLIs and visits: the contract (DAPL or LWAH), H visits in the stay, one claim
//! per client and stay, and the gateway's own figure beside the provider's (`reports::hospital`).
//! A named attachment (PDF, PNG or JPEG) waiting in `/inbox` is kept with the claim.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;

use super::cells::{columns, Column as _, Row};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::headings as h;
use super::kinds::{File, Judgement, Kind, Pending};
use super::source::{Header, Rows, ScanSpec};
use super::IngestError;
use crate::claims::{Attachment, Claim, ClaimId, ClaimStatus};
use crate::config::{Claims as ClaimsConfig, Hospital};
use crate::domain::{quote, uk_date, Cpli, NameKey, Organisation, Slug};
use crate::outcome::{Code, FileKind, ImportResult, Issues};
use crate::reports::hospital::{self, Calendar, Compact, Scheme};
use crate::reports::money_text;
use crate::store::{Store, StoreError};

columns! {
    pub enum Col by ClaimRef {
        ClaimRef: "ClaimRef";
        SsRef: h::SS_REF;
        ServiceName: h::SERVICE_NAME;
        AdmittedOn: "AdmittedOn";
        Amount: "Amount";
        Description: "Description", free;
        DischargedOn: "DischargedOn";
        NotifiedOn: "NotifiedOn";
        Attachment: "Attachment";
        Deleted: h::DELETED;
    }
}

/// The claims file's entry in the table of kinds.
pub static KIND: Kind = Kind {
    kind: FileKind::Claims,
    noun: "claims",
    headings: HEADINGS,
    required: 6,
    detected_by: HEADINGS[Col::ClaimRef as usize],
    missing_hint: None,
    scan_spec,
    judge,
};

/// The types of file a claim may keep, by extension, with the bytes such a file begins with.
const ATTACHMENT_TYPES: &[(&str, &str, &[u8])] =
    &[("pdf", "PDF", b"%PDF-"), ("png", "PNG", b"\x89PNG\r\n\x1a\n"), ("jpg", "JPEG", b"\xFF\xD8\xFF"), ("jpeg", "JPEG", b"\xFF\xD8\xFF")];

/// Whether a name in an inbox is one a claim may keep (issue 12): such a file waits in `/inbox`
/// until a claims file names it, and is never judged as a file of its own.
pub fn is_attachment_name(name: &str) -> bool {
    !name.starts_with('.') && attachment_type(name).is_some()
}

fn attachment_type(name: &str) -> Option<&'static (&'static str, &'static str, &'static [u8])> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    ATTACHMENT_TYPES.iter().find(|(e, _, _)| *e == ext)
}

/// The first pass looks for ClaimRefs used on more than one row.
fn scan_spec(header: &Header) -> ScanSpec {
    ScanSpec { key: header.position(&super::source::heading_key(Col::ClaimRef.heading())), ..ScanSpec::default() }
}

/// A row as its cells say, before the store is consulted.
pub struct ClaimRow {
    claim_ref: String,
    deleted: bool,
    ssref: String,
    service_name: String,
    admitted_on: NaiveDate,
    discharged_on: Option<NaiveDate>,
    notified_on: Option<NaiveDate>,
    amount: Decimal,
    description: String,
    attachment: Option<String>,
}

struct ClaimRules<'a> {
    duplicates: &'a hashbrown::HashSet<Vec<u8>>,
}

impl Rules for ClaimRules<'_> {
    type Col = Col;
    type Out = ClaimRow;
    type Scratch = ();

    fn judge(&self, r: &mut Row<'_, Col>, _: &mut ()) -> Result<Option<ClaimRow>, IngestError> {
        let claim_ref = r.required_text(Col::ClaimRef, 50, ": the organisation's own reference for the claim");
        if let Some(c) = claim_ref.as_deref().filter(|c| self.duplicates.contains(c.as_bytes())) {
            r.push(Code::DuplicateRef, Some(Col::ClaimRef), format!("ClaimRef '{}' is on more than one row of this file; all rows carrying it are rejected", quote(c)));
        }
        let deleted = r.boolean(Col::Deleted).unwrap_or(false);
        if deleted {
            return Ok(claim_ref.filter(|_| !r.has_errors()).map(|claim_ref| ClaimRow {
                claim_ref,
                deleted,
                ssref: String::new(),
                service_name: String::new(),
                admitted_on: NaiveDate::MIN,
                discharged_on: None,
                notified_on: None,
                amount: Decimal::ZERO,
                description: String::new(),
                attachment: None,
            }));
        }
        let ssref = r.required_text(Col::SsRef, 50, ": the client's id, as on the CPLI");
        let service_name = r.required_text(Col::ServiceName, 112, ": the service the client's CPLI is for");
        let admitted_on = r.required_date(Col::AdmittedOn, ": the day the client was admitted to hospital");
        let discharged_on = r.date(Col::DischargedOn);
        let notified_on = r.date(Col::NotifiedOn);
        for (col, date) in [(Col::DischargedOn, discharged_on), (Col::NotifiedOn, notified_on)] {
            if let (Some(a), Some(d)) = (admitted_on, date) {
                if d < a {
                    r.push(Code::BadDate, Some(col), format!("{} {} is before AdmittedOn {}", col.heading(), uk_date(d), uk_date(a)));
                }
            }
        }
        let amount = money(r, Col::Amount);
        let description = r.required_text(Col::Description, 8000, ": the guide asks for the dates of the stay, the hours missed and the working");
        let attachment = r.text(Col::Attachment, 200);
        if let Some(a) = attachment.as_deref().filter(|a| a.contains(['/', '\\'])) {
            // Since 2026-12-03 the folder is what the message names; it asked for a PDF of a PDF.
            r.push(Code::BadAttachment, Some(Col::Attachment), format!("Attachment '{}' names a folder: give the file's name alone, as uploaded to /inbox (e.g. evidence.pdf)", quote(a)));
        } else if let Some(a) = attachment.as_deref().filter(|a| !is_attachment_name(a)) {
            r.push(Code::BadAttachment, Some(Col::Attachment), format!("Attachment '{}' must name a PDF, PNG or JPEG file (.pdf, .png, .jpg, .jpeg) uploaded to /inbox", quote(a)));
        }
        if r.has_errors() {
            return Ok(None);
        }
        let (Some(claim_ref), Some(ssref), Some(service_name), Some(admitted_on), Some(amount), Some(description)) =
            (claim_ref, ssref, service_name, admitted_on, amount, description)
        else {
            return Ok(None);
        };
        Ok(Some(ClaimRow { claim_ref, deleted, ssref, service_name, admitted_on, discharged_on, notified_on, amount, description, attachment }))
    }
}

/// Money in pounds, more than 0, at most two decimals; a leading `£` is allowed.
fn money(r: &mut Row<'_, Col>, col: Col) -> Option<Decimal> {
    let Some(raw) = r.opt(col).map(|v| v.into_owned()) else {
        r.require(col, ": the amount claimed in pounds, e.g. 47.54");
        return None;
    };
    super::cells::money(col.heading(), &raw, "a claim is for more than £0", "47.54").map_err(|p| r.push(p.code, Some(col), p.message)).ok()
}

/// What the in-order step judges a claim against: the organisation's CPLIs and visits.
struct Stored<'a> {
    org: &'a Organisation,
    cplis: Vec<Cpli>,
    /// The visits of each package ([`hospital::package_key`]: a client's CPLIs of one service) under
    /// DAPL or LWAH, in planned order; each visit's `cpli` indexes `cplis`.
    visits: HashMap<(String, NameKey), Vec<Compact>>,
}

impl Stored<'_> {
    /// The visits of `cpli`'s package, in planned order.
    fn package_visits(&self, cpli: &Cpli) -> &[Compact] {
        self.visits.get(&hospital::package_key(cpli)).map(Vec::as_slice).unwrap_or_default()
    }

    fn unit_cost(&self, cpli: u32) -> Decimal {
        self.cplis[cpli as usize].unit_cost
    }
}

fn stored_context<'a>(file: &File<'a, '_>) -> Result<Option<Stored<'a>>, IngestError> {
    let (Some((store, _)), Some(org)) = (file.stored(), file.org) else { return Ok(None) };
    let cplis = match file.given_cplis {
        Some(given) => given.iter().filter(|c| org.is_named(&c.organisation_name)).cloned().collect(),
        None => store.cplis_for_org(org)?,
    };
    stored_of(store, org, cplis).map(Some)
}

/// The organisation's CPLIs and the stored visits of those under DAPL or LWAH.
fn stored_of<'a>(store: &Store, org: &'a Organisation, cplis: Vec<Cpli>) -> Result<Stored<'a>, IngestError> {
    let slug = &org.slug;
    let eligible: HashMap<&str, u32> = cplis.iter().enumerate().filter(|(_, c)| Scheme::of(&c.contract).is_some()).map(|(i, c)| (c.cpli_id.as_str(), i as u32)).collect();
    let mut visits: HashMap<(String, NameKey), Vec<Compact>> = HashMap::new();
    for fact in store.visit_facts(slug) {
        let fact = fact?;
        if let Some(&i) = eligible.get(fact.cpli_id.as_str()) {
            visits.entry(hospital::package_key(&cplis[i as usize])).or_default().push(Compact::of(&fact, i));
        }
    }
    for v in visits.values_mut() {
        v.sort_unstable_by_key(|c| (c.date, c.start));
    }
    Ok(Stored { org, cplis, visits })
}

/// The last day of a claimed stay: its last H visit (`claimed_stay` runs a stay on past a
/// DischargedOn earlier than H visits that continue, so one stay cannot be split into two claims).
/// Not the day care resumed (since 2026-12-03): the next stay may begin that day (care resumed at
/// lunch, readmitted that evening), and its claim was refused as this one's.
fn stay_end(missed: &[hospital::Missed], admitted: NaiveDate) -> NaiveDate {
    missed.iter().map(|m| m.date).max().unwrap_or(admitted)
}

/// The last H visit of the stay from `admitted` as the visits show it. `None`: no H visit from that day.
fn shown_end(visits: &[Compact], admitted: NaiveDate) -> Option<NaiveDate> {
    hospital::claimed_stay(visits, admitted, None, None).and_then(|(_, m)| m.iter().map(|m| m.date).max())
}

/// The organisation's pending claims whose figure is no longer the gateway's for their stay (its
/// visits or CPLIs changed since the claim was sent), with the figure of today: a pending claim is
/// shown, and decided, against the visits as they now are. Decided claims keep the figure they were
/// decided on; a claim whose CPLI is gone keeps its own.
pub fn refigured(store: &Store, org: &Organisation, rules: &Hospital) -> Result<Vec<Claim>, IngestError> {
    let pending: Vec<Claim> = store.claims(Some(&org.slug))?.into_iter().filter(|c| c.status == ClaimStatus::Pending).collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let stored = stored_of(store, org, store.cplis_for_org(org)?)?;
    let calendar = Calendar::new(rules);
    let mut changed = Vec::new();
    for mut c in pending {
        let Some((amount, working, end)) = figured_now(&c, org, &stored, rules, &calendar) else { continue };
        // The contract shown beside the figure is the CPLI's as it now is (since 2026-12-03; it
        // stayed the one of the day the claim was sent while the working said it had changed).
        let contract = stored.cplis.iter().find(|p| p.cpli_id == c.cpli_id).map_or_else(|| c.contract.clone(), |p| p.contract.clone());
        if (amount, &working, end, &contract) != (c.computed_amount, &c.working, c.stay_end, &c.contract) {
            (c.computed_amount, c.working, c.stay_end, c.contract) = (amount, working, end, contract);
            changed.push(c);
        }
    }
    Ok(changed)
}

/// A pending claim's figure, working and stay end from the stored visits and CPLIs as they now are;
/// `None` leaves it as it is.
fn figured_now(c: &Claim, org: &Organisation, stored: &Stored<'_>, rules: &Hospital, calendar: &Calendar) -> Option<(Decimal, String, NaiveDate)> {
    // A package the council has since given to another organisation (or taken out of its extract),
    // or put under a contract without the incentive, pays nothing now: the figure says so rather
    // than keeping one made from a package no longer the provider's.
    let Some(cpli) = stored.cplis.iter().find(|p| p.cpli_id == c.cpli_id) else {
        return Some((Decimal::ZERO, format!("nothing: CPLI {} is no longer one of {}'s packages in the council's extract", c.cpli_id, org.name), c.stay_end));
    };
    let Some(scheme) = Scheme::of(&cpli.contract) else {
        let contract = if cpli.contract.is_empty() { "blank" } else { &cpli.contract };
        return Some((Decimal::ZERO, format!("nothing: CPLI {}'s contract is now {contract}, which has no hospital incentive (only DAPL and LWAH have one)", c.cpli_id), c.stay_end));
    };
    let visits = stored.package_visits(cpli);
    match hospital::claimed_stay(visits, c.admitted_on, c.discharged_on, c.notified_on) {
        Some((stay, missed)) => {
            let figure = hospital::figure(rules, calendar, scheme, &stay, &missed, |i| stored.unit_cost(i))?;
            Some((figure.amount, figure.working(), stay_end(&missed, stay.admitted)))
        }
        None => Some((Decimal::ZERO, "nothing: no H (in hospital) visit is stored for this stay now".to_string(), c.stay_end)),
    }
}

fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let stored = stored_context(file)?;
    let (claims, seq) = match file.stored() {
        Some((s, slug)) => (s.claims(Some(slug))?.into_iter().map(|c| (c.claim_ref.clone(), c)).collect(), s.claim_seq()?),
        None => (HashMap::new(), 0),
    };
    let rules = ClaimRules { duplicates: &file.scan.duplicate_keys };
    let mut apply = ClaimsApply {
        stored: stored.as_ref(),
        hospital: &file.config.hospital,
        calendar: Calendar::new(&file.config.hospital),
        today: file.config.rules.current_day(),
        limits: &file.config.claims,
        attachments: file.incoming.attachments.as_ref(),
        write: file.write,
        file_name: &file.incoming.file_name,
        claims,
        changed: Vec::new(),
        seq,
        copies: Vec::new(),
        originals: Vec::new(),
    };
    let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
    let counts = match engine::run(rows, &file.shape(), &rules, &mut apply, issues) {
        Ok(c) => c,
        Err(e) => {
            remove_all(&apply.copies);
            return Err(e);
        }
    };
    let changed: Vec<Claim> = apply.changed.iter().filter_map(|r| apply.claims.get(r).cloned()).collect();
    let pending = ClaimsPending {
        store: file.writer().map(|(s, slug)| (s, slug.clone())),
        claims: changed,
        seq: apply.seq,
        copies: apply.copies,
        originals: apply.originals,
    };
    Ok((counts, Box::new(pending)))
}

/// Where a claims file's attachments are found and kept (issue 12): the organisation's inbox, and a
/// folder of its own under the data folder that no login sees.
#[derive(Debug, Clone)]
pub struct AttachmentDirs {
    pub inbox: PathBuf,
    pub kept: PathBuf,
}

struct ClaimsApply<'a> {
    /// `None` offline: only the cells are judged.
    stored: Option<&'a Stored<'a>>,
    hospital: &'a Hospital,
    calendar: Calendar,
    /// The gateway's day, a claim's SubmittedOn.
    today: NaiveDate,
    limits: &'a ClaimsConfig,
    attachments: Option<&'a AttachmentDirs>,
    write: bool,
    file_name: &'a str,
    /// The organisation's claims by ClaimRef, with this file's applied so far.
    claims: HashMap<String, Claim>,
    /// ClaimRefs this file changed, in order.
    changed: Vec<String>,
    seq: u64,
    /// Attachments copied into the kept folder (undone if the file is not committed).
    copies: Vec<PathBuf>,
    /// Their originals in the inbox, removed once the file is committed.
    originals: Vec<PathBuf>,
}

impl ClaimsApply<'_> {
    fn refuse(row: &mut Judged<ClaimRow>, code: Code, field: Option<Col>, message: String) -> Result<Applied, IngestError> {
        let issue = row.issue(code, field.map(|c| c.heading()), message);
        row.issues.push(issue);
        Ok(Applied::Rejected)
    }

    fn note(&mut self, claim: Claim) -> Applied {
        let applied = if self.claims.contains_key(&claim.claim_ref) { Applied::Updated } else { Applied::New };
        if !self.changed.contains(&claim.claim_ref) {
            self.changed.push(claim.claim_ref.clone());
        }
        self.claims.insert(claim.claim_ref.clone(), claim);
        applied
    }

    fn withdraw(&mut self, row: &mut Judged<ClaimRow>, claim_ref: &str) -> Result<Applied, IngestError> {
        let Some(mut claim) = self.claims.get(claim_ref).cloned() else {
            return Self::refuse(row, Code::DeleteUnknown, Some(Col::ClaimRef), format!("there is no claim with ClaimRef '{}' to withdraw", quote(claim_ref)));
        };
        match claim.status {
            ClaimStatus::Accepted | ClaimStatus::Rejected => {
                let message = format!("claim {} (ClaimRef '{}') was {}: a decided claim cannot be withdrawn", claim.id, quote(claim_ref), claim.status.as_str().to_lowercase());
                Self::refuse(row, Code::ClaimDecided, Some(Col::Deleted), message)
            }
            ClaimStatus::Pending | ClaimStatus::Withdrawn => {
                claim.status = ClaimStatus::Withdrawn;
                claim.updated_at = Utc::now();
                claim.file = self.file_name.to_string();
                Ok(self.note(claim))
            }
        }
    }

    /// The claim's attachment checked (and, importing, copied to be kept): `Err` is the message.
    fn attachment(&mut self, name: &str, id: ClaimId, earlier: Option<&Attachment>) -> Result<Option<Attachment>, String> {
        let Some(dirs) = self.attachments else { return Ok(None) };
        let src = dirs.inbox.join(name);
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => m,
            // Sent again without the file: the one kept with the claim stays.
            _ if earlier.is_some_and(|a| a.name == name) => return Ok(earlier.cloned()),
            _ => {
                // The same name in another case (Windows does not tell them apart; the gateway does).
                let near = std::fs::read_dir(&dirs.inbox).ok().and_then(|d| {
                    d.filter_map(|e| e.ok()?.file_name().into_string().ok()).find(|n| n != name && n.eq_ignore_ascii_case(name))
                });
                return Err(match near {
                    Some(n) => format!("Attachment '{}' is not in /inbox, but '{}' is: names must match exactly, case included; write Attachment as '{}'", quote(name), quote(&n), quote(&n)),
                    None => format!("Attachment '{}' is not in /inbox: upload it to /inbox before the claims file, which keeps it with the claim", quote(name)),
                });
            }
        };
        let max = self.limits.max_attachment_bytes;
        if meta.len() > max {
            return Err(format!("Attachment '{}' is {} bytes; an attachment may be at most {max} bytes", quote(name), meta.len()));
        }
        let (_, kind, magic) = attachment_type(name).ok_or_else(|| format!("Attachment '{}' must be a PDF, PNG or JPEG file", quote(name)))?;
        let mut head = vec![0u8; magic.len()];
        let read = std::fs::File::open(&src).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
        if read.is_err() || head != *magic {
            return Err(format!("Attachment '{}' is not a {kind} file (it does not begin as one): upload the document itself", quote(name)));
        }
        let kept_as = format!("{id}-{name}");
        if self.write {
            std::fs::create_dir_all(&dirs.kept).and_then(|()| std::fs::copy(&src, dirs.kept.join(&kept_as))).map_err(|e| format!("Attachment '{}' could not be kept ({e}); send the claims file again", quote(name)))?;
            self.copies.push(dirs.kept.join(&kept_as));
            if !self.originals.contains(&src) {
                self.originals.push(src);
            }
        }
        Ok(Some(Attachment { name: name.to_string(), kept_as, bytes: meta.len() }))
    }
}

impl Apply<ClaimRow> for ClaimsApply<'_> {
    fn apply(&mut self, row: &mut Judged<ClaimRow>, c: ClaimRow) -> Result<Applied, IngestError> {
        let Some(stored) = self.stored else { return Ok(Applied::New) };
        if c.deleted {
            return self.withdraw(row, &c.claim_ref);
        }
        let earlier = self.claims.get(&c.claim_ref).cloned();
        if let Some(e) = earlier.as_ref().filter(|e| matches!(e.status, ClaimStatus::Accepted | ClaimStatus::Rejected)) {
            let message = format!(
                "claim {} (ClaimRef '{}') was {}: a decided claim cannot change; send a new claim with a new ClaimRef",
                e.id,
                quote(&c.claim_ref),
                e.status.as_str().to_lowercase()
            );
            return Self::refuse(row, Code::ClaimDecided, Some(Col::ClaimRef), message);
        }
        let service = NameKey::new(&c.service_name);
        let of_client: Vec<&Cpli> = stored.cplis.iter().filter(|p| p.ssref.eq_ignore_ascii_case(&c.ssref)).collect();
        let for_service: Vec<&Cpli> = of_client.iter().copied().filter(|p| p.service_key() == service).collect();
        // An authorised CPLI in force wins over an unauthorised one (a temporary package not yet
        // authorised beside the open one).
        let in_force = || for_service.iter().copied().filter(|p| p.covers(c.admitted_on));
        let Some(cpli) = in_force().find(|p| p.authorised).or_else(|| in_force().next()) else {
            let message = match (of_client.is_empty(), for_service.first()) {
                (true, _) => format!("client {} has no CPLI with {}: check SSRef", quote(&c.ssref), stored.org.name),
                (false, None) => {
                    let mut names: Vec<&str> = of_client.iter().map(|p| p.service_name.as_str()).collect();
                    names.dedup();
                    format!("client {} has no CPLI with ServiceName '{}'; their CPLIs are for '{}'", quote(&c.ssref), quote(&c.service_name), names.join("', '"))
                }
                (false, Some(p)) => format!(
                    "client {}'s CPLI {} for '{}' is not in force on AdmittedOn {} (it runs from {}{})",
                    quote(&c.ssref),
                    p.cpli_id,
                    p.service_name,
                    uk_date(c.admitted_on),
                    uk_date(p.start_date),
                    p.end_date.map(|e| format!(" to {}", uk_date(e))).unwrap_or_default()
                ),
            };
            return Self::refuse(row, Code::NoCpli, Some(Col::ServiceName), message);
        };
        if !cpli.authorised {
            let message = format!(
                "client {}'s CPLI {} for '{}' is not authorised yet: its visits stay unmatched and nothing is paid under it until the council authorises it; send the claim again then",
                quote(&c.ssref),
                cpli.cpli_id,
                cpli.service_name
            );
            return Self::refuse(row, Code::NoCpli, Some(Col::ServiceName), message);
        }
        let Some(scheme) = Scheme::of(&cpli.contract) else {
            let contract = match cpli.contract.trim() {
                "" => "no contract recorded (its Contract is blank in the council's extract; ask the council which contract it is under)".to_string(),
                named => format!("the {named} contract"),
            };
            let message = format!(
                "client {}'s CPLI {} for '{}' is under {contract}: the hospital incentive is paid only under DAPL and LWAH contracts (the guide's One-Off Claims page)",
                quote(&c.ssref),
                cpli.cpli_id,
                cpli.service_name,
            );
            return Self::refuse(row, Code::ClaimNotEligible, Some(Col::ServiceName), message);
        };
        let visits = stored.package_visits(cpli);
        let Some((stay, missed)) = hospital::claimed_stay(visits, c.admitted_on, c.discharged_on, c.notified_on) else {
            let until = c.discharged_on.map(|d| format!(" to DischargedOn {}", uk_date(d))).unwrap_or_default();
            let message = format!(
                "no H (in hospital) visit is stored for client {} and '{}' from AdmittedOn {}{until}: send the visits file with the missed visits marked H first",
                quote(&c.ssref),
                cpli.service_name,
                uk_date(c.admitted_on)
            );
            return Self::refuse(row, Code::NoHospitalVisits, Some(Col::AdmittedOn), message);
        };
        let Some(figure) = hospital::figure(self.hospital, &self.calendar, scheme, &stay, &missed, |i| stored.unit_cost(i)) else {
            let message = crate::reports::Overflow::of(cpli).to_string();
            return Self::refuse(row, Code::BadQuantity, Some(Col::Amount), message);
        };
        let stay_end = stay_end(&missed, stay.admitted);
        let twin = self
            .claims
            .values()
            .filter(|o| o.claim_ref != c.claim_ref && o.status.holds_stay() && o.ssref.eq_ignore_ascii_case(&c.ssref))
            // A decided claim keeps the stay end it was decided on; its H visits may run on since.
            .filter(|o| o.same_stay(&c.ssref, &service, stay.admitted, stay_end, o.stay_end.max(shown_end(visits, o.admitted_on).unwrap_or(o.stay_end))))
            .min_by_key(|o| o.id);
        if let Some(o) = twin {
            let message = format!(
                "claim {} (ClaimRef '{}', admitted {}) is already for this stay of client {}: one claim per client and stay; to correct it, send its ClaimRef again",
                o.id,
                quote(&o.claim_ref),
                uk_date(o.admitted_on),
                quote(&c.ssref)
            );
            return Self::refuse(row, Code::DuplicateClaim, Some(Col::AdmittedOn), message);
        }
        let id = earlier.as_ref().map_or(ClaimId(self.seq + 1), |e| e.id);
        let attachment = match c.attachment.as_deref() {
            Some(name) => match self.attachment(name, id, earlier.as_ref().and_then(|e| e.attachment.as_ref())) {
                Ok(a) => a,
                Err(message) => return Self::refuse(row, Code::BadAttachment, Some(Col::Attachment), message),
            },
            // Sent again with Attachment blank: the one kept with the claim stays (since
            // 2026-12-03; the council lost sight of the evidence).
            None => earlier.as_ref().and_then(|e| e.attachment.clone()),
        };
        if earlier.is_none() {
            self.seq += 1;
        }
        let computed = figure.rounded();
        if computed != c.amount {
            let resumed = match (stay.discharged, stay.resumed, figure.working_days) {
                (Some(d), Some(r), Some(wd)) => format!("discharged {}, {wd} working days, care resumed {}", uk_date(d), uk_date(r)),
                (None, Some(r), Some(wd)) => format!("care resumed {}, {wd} working days", uk_date(r)),
                _ => "care not resumed".into(),
            };
            let message = format!(
                "the claim is for £{}; the gateway's figure for this stay is £{}: {} ({}, admitted {}, {resumed}, {} H visits)",
                money_text(c.amount),
                money_text(computed),
                figure.working(),
                scheme.name(),
                uk_date(c.admitted_on),
                missed.len()
            );
            let issue = row.issue(Code::ClaimAmountDiffers, Some(Col::Amount.heading()), message);
            row.issues.push(issue);
        }
        let now = Utc::now();
        let claim = Claim {
            id,
            org: stored.org.slug.clone(),
            organisation: stored.org.name.clone(),
            claim_ref: c.claim_ref,
            ssref: cpli.ssref.clone(),
            client_name: cpli.client_name.clone(),
            service_name: cpli.service_name.clone(),
            admitted_on: c.admitted_on,
            discharged_on: c.discharged_on,
            notified_on: c.notified_on,
            amount: c.amount,
            description: c.description,
            attachment,
            cpli_id: cpli.cpli_id.clone(),
            contract: cpli.contract.clone(),
            computed_amount: figure.amount,
            working: figure.working(),
            stay_end,
            status: ClaimStatus::Pending,
            submitted_at: earlier.as_ref().map_or(now, |e| e.submitted_at),
            submitted_on: earlier.as_ref().map_or(Some(self.today), |e| e.submitted_on),
            updated_at: now,
            file: self.file_name.to_string(),
            decided: None,
        };
        Ok(self.note(claim))
    }
}

fn remove_all(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

struct ClaimsPending<'s> {
    /// `None` when nothing is written (validate).
    store: Option<(&'s Store, Slug)>,
    claims: Vec<Claim>,
    seq: u64,
    copies: Vec<PathBuf>,
    originals: Vec<PathBuf>,
}

impl Pending for ClaimsPending<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        let Some((s, slug)) = self.store else { return Ok(()) };
        if let Err(e) = s.commit_claims(&slug, &self.claims, self.seq, result) {
            remove_all(&self.copies);
            return Err(e);
        }
        // Kept with their claims now: the inbox no longer holds them (a crash before this leaves
        // them there, harmless; the claims keep their copies).
        for o in &self.originals {
            if let Err(e) = std::fs::remove_file(o) {
                tracing::warn!(file = %o.display(), error = %e, "could not remove an attachment kept with its claim from the inbox");
            }
        }
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        remove_all(&self.copies);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::ingest::{process, Incoming, Mode};
    use crate::outcome::{Code, FileKind, ImportResult};

    fn validate(rows: &[&str]) -> ImportResult {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.csv");
        let header = "ClaimRef,SSRef,ServiceName,AdmittedOn,DischargedOn,Amount,Description,Attachment,Deleted";
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        let incoming = Incoming { path: &path, file_name: "claims.csv".into(), import_id: "i".into(), received_at: chrono::Utc::now(), attachments: None };
        process(&Config::default(), None, &incoming, Mode::Validate { store: None, cplis: None }).unwrap()
    }

    fn codes(r: &ImportResult) -> Vec<(Option<u64>, Code, Option<&str>)> {
        r.issues.iter().map(|i| (i.row, i.code, i.field.as_deref())).collect()
    }

    #[test]
    fn a_claims_file_is_recognised_by_its_claim_ref_heading_and_counted_as_claims() {
        let r = validate(&["H1,A1,S,21/11/2022,25/11/2022,47.54,Admitted 21.11.22,,"]);
        assert_eq!((r.kind, r.counts.read, r.counts.new), (FileKind::Claims, 1, 1), "{:#?}", r.issues);
        assert_eq!(r.summary(), "claims.csv: 1 claims read, 1 new, 0 updated, 0 rejected, 0 data-quality issues");
    }

    #[test]
    fn the_amount_is_pounds_and_pence_above_zero_with_an_optional_pound_sign_and_thousands_commas() {
        let r = validate(&[
            "H1,A1,S,21/11/2022,,£47.54,d,,",
            "H2,A1,S,21/11/2022,,0,d,,",
            "H3,A1,S,21/11/2022,,47.545,d,,",
            "H4,A1,S,21/11/2022,,forty,d,,",
            "H5,A1,S,21/11/2022,,-3,d,,",
            "H6,A2,S,21/11/2022,,\"£1,234.56\",d,,",
            "H7,A3,S,21/11/2022,,\"47,54\",d,,",
            "H8,A4,S,21/11/2022,,\"1,234.567\",d,,",
        ]);
        assert_eq!(
            codes(&r),
            [
                (Some(3), Code::BadQuantity, Some("Amount")),
                (Some(4), Code::BadQuantity, Some("Amount")),
                (Some(5), Code::BadNumber, Some("Amount")),
                (Some(6), Code::BadQuantity, Some("Amount")),
                (Some(8), Code::BadNumber, Some("Amount")),
                (Some(9), Code::BadQuantity, Some("Amount"))
            ],
            "thousands commas are read, a decimal comma is not"
        );
        assert_eq!(r.issues[2].message, "Amount 'forty' is not an amount of money: write pounds and pence such as 47.54");
        assert!(r.issues[5].message.starts_with("Amount '1,234.567' has more than 2 decimal places"), "as written: {}", r.issues[5].message);
    }

    #[test]
    fn a_claim_needs_its_client_service_admission_amount_and_description_and_dates_in_order() {
        let r = validate(&[",A1,,,,,,,", "H2,A1,S,21/11/2022,20/11/2022,10,d,,"]);
        let fields: Vec<_> = codes(&r).into_iter().map(|(row, code, f)| (row, code, f.unwrap())).collect();
        assert_eq!(
            fields,
            [
                (Some(2), Code::Required, "ClaimRef"),
                (Some(2), Code::Required, "ServiceName"),
                (Some(2), Code::Required, "AdmittedOn"),
                (Some(2), Code::Required, "Amount"),
                (Some(2), Code::Required, "Description"),
                (Some(3), Code::BadDate, "DischargedOn")
            ]
        );
        assert_eq!(r.issues[5].message, "DischargedOn 20/11/2022 is before AdmittedOn 21/11/2022");
    }

    #[test]
    fn a_withdrawal_needs_only_its_claim_ref_and_a_claim_ref_twice_rejects_both_rows() {
        let r = validate(&["H1,,,,,,,,Y", "H2,A1,S,21/11/2022,,10,d,,", "H2,A1,S,22/11/2022,,10,d,,"]);
        assert_eq!(codes(&r), [(Some(3), Code::DuplicateRef, Some("ClaimRef")), (Some(4), Code::DuplicateRef, Some("ClaimRef"))]);
        assert_eq!((r.counts.new, r.counts.rejected), (1, 2));
    }

    #[test]
    fn an_attachment_must_be_named_as_a_pdf_png_or_jpeg() {
        assert!(super::is_attachment_name("Discharge Letter.PDF") && super::is_attachment_name("a.jpeg") && super::is_attachment_name("b.png"));
        assert!(!super::is_attachment_name("a.docx") && !super::is_attachment_name(".pdf") && !super::is_attachment_name("claims.csv"));
        let r = validate(&["H1,A1,S,21/11/2022,,10,d,letter.docx,", "H2,A1,S,21/11/2022,,10,d,../x.pdf,"]);
        assert_eq!(codes(&r), [(Some(2), Code::BadAttachment, Some("Attachment")), (Some(3), Code::BadAttachment, Some("Attachment"))]);
        // A folder in the name is what is wrong with it (it asked for a PDF of a PDF until 2026-12-03).
        assert!(r.issues[1].message.starts_with("Attachment '../x.pdf' names a folder: give the file's name alone"), "{}", r.issues[1].message);
        let r = validate(&["H1,A1,S,21/11/2022,,10,d,C:\\letters\\x.pdf,"]);
        assert!(r.issues[0].message.contains("names a folder"), "{}", r.issues[0].message);
    }
}
