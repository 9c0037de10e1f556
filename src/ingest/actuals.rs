//! The actuals file (SPEC 2.2): one row per client, service and period (extra care housing,
//! placements), judged, matched to a CPLI and costed; the key is SSRef, ServiceLevel, ServiceName
//! and PeriodStart, and re-sending a key updates it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::cells::{columns, Column as _, Row};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::headings as h;
use super::kinds::{File, Judgement, Kind, Pending};
use super::matching::{CpliIndex, VisitKeys, Wanted};
use crate::outcome::{Code, FileKind, ImportResult, Issues};
use super::source::{heading_key, stable_hash, Header, Rows, ScanSpec};
use super::IngestError;
use crate::domain::number::QUANTITY_DECIMALS;
use crate::domain::{parse_date, quote, uk_date, Actual, Cpli, Guid, LockedUntil, MatchStatus, NameKey, Organisation, Period};
use crate::store::{ActualBatch, ActualChange, ActualKey, Overlap, Store, StoreError, StoredActual};

columns! {
    /// The headings: the first `REQUIRED` must be in the header, the others may be left out.
    pub enum Col by SsRef {
        Deleted: h::DELETED;
        SsRef: h::SS_REF;
        ServiceLevel: h::SERVICE_LEVEL;
        ServiceName: h::SERVICE_NAME;
        PeriodStart: "PeriodStart";
        PeriodEnd: "PeriodEnd";
        Planned: "Planned";
        Actual: "Actual";
        Frustrated: "Frustrated";
        Missed: "Missed";
        Extra: "Extra";
        Visits: "Visits";
        Comments: h::COMMENTS, free;
        ClientRef: h::CLIENT_REF;
        NhsNumber: h::NHS_NUMBER;
        ServiceLevelRef: h::SERVICE_LEVEL_REF;
        ServiceRef: h::SERVICE_REF;
        OrganisationRef: h::ORGANISATION_REF;
        OrganisationName: h::ORGANISATION_NAME;
    }
}
const REQUIRED: usize = 13;

/// The actuals file's entry in the table of kinds.
/// The lengths of an actuals row's period, in days: a week or a four-week payment period (SPEC 2.2).
const PERIOD_DAYS: [i64; 2] = [7, 28];

pub static KIND: Kind = Kind { kind: FileKind::Actuals, noun: "actuals", headings: HEADINGS, required: REQUIRED, detected_by: HEADINGS[Col::PeriodStart as usize], scan_spec, judge,
    missing_hint: None,
};

/// Judges every row on the engine; accepted rows are written as they are applied (issue 9: not
/// held in memory until the end).
fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let cplis = super::cpli_index(file.given_cplis, file.store, file.org)?;
    let ctx = Context {
        org: file.org,
        cplis: cplis.as_ref(),
        locked: file.store.map(|s| s.locked_until()).transpose()?.flatten(),
        periods: &file.config.periods,
        hours_step_minutes: file.config.rules.actuals_hours_step_minutes,
        visit_levels: file.config.rules.visit_service_levels.iter().map(|l| NameKey::new(l)).collect(),
        foreign: super::foreign_guids(file.store, file.org)?,
        store: file.stored(),
        import_id: &file.incoming.import_id,
        today: file.config.rules.current_day(),
    };
    let batch = match file.writer() {
        Some((s, slug)) => Some(s.begin_actuals(slug, &file.incoming.import_id)?),
        None => None,
    };
    let rules = ActualRules { ctx: &ctx, repeated: &file.scan.repeated_slots };
    let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
    let mut apply = Write { batch: batch.as_ref(), stored: ctx.store, sent: HashMap::new() };
    match engine::run(rows, &file.shape(), &rules, &mut apply, issues) {
        Ok(counts) => Ok((counts, Box::new(ActualsPending(batch)))),
        Err(e) => {
            if let Some(b) = batch {
                b.abort()?;
            }
            Err(e)
        }
    }
}

struct ActualRules<'a> {
    ctx: &'a Context<'a>,
    /// Keys (hashed) on more than one row.
    repeated: &'a hashbrown::HashSet<u64>,
}

impl Rules for ActualRules<'_> {
    type Col = Col;
    type Out = ActualChange;
    type Scratch = ();

    fn judge(&self, r: &mut Row<'_, Col>, _: &mut ()) -> Result<Option<ActualChange>, IngestError> {
        r.judge(self.repeated, self.ctx)
    }
}

/// Writes each accepted row in file order (`batch` `None`: validate, nothing written).
struct Write<'a, 's> {
    batch: Option<&'a ActualBatch<'s>>,
    /// Validating: the store judged against (with `--org`), and what this file has sent so far, by
    /// client, level and service: each period start's end, `None` where it was deleted; so that
    /// `OVERLAPPING_PERIOD` is judged as the import judges it (since 2026-12-03 validate never did).
    stored: Option<(&'a Store, &'a crate::domain::Slug)>,
    sent: HashMap<(String, NameKey, NameKey), BTreeMap<NaiveDate, Option<NaiveDate>>>,
}

/// A key's client, service level and service: the rows whose periods may overlap.
fn client_service(k: &ActualKey) -> (String, NameKey, NameKey) {
    (k.ssref.clone(), k.level.clone(), k.service.clone())
}

impl Write<'_, '_> {
    /// The periods this row's shares days with, earliest first: stored, or sent earlier in the file.
    fn overlapping(&self, k: &ActualKey, end: NaiveDate) -> Result<Vec<Overlap>, IngestError> {
        if let Some(b) = self.batch {
            return Ok(b.overlapping(k, end)?);
        }
        let sent = self.sent.get(&client_service(k));
        let mut found: Vec<Overlap> = sent
            .into_iter()
            .flatten()
            .filter_map(|(s, e)| e.filter(|e| *s != k.period_start && *s <= end && k.period_start <= *e).map(|e| Overlap { start: *s, end: e, in_file: true }))
            .collect();
        if let Some((store, slug)) = self.stored {
            let superseded = |start: NaiveDate| sent.is_some_and(|m| m.contains_key(&start));
            found.extend(store.overlapping_actuals(slug, k, end, "", superseded)?);
        }
        found.sort_by_key(|o| o.start);
        Ok(found)
    }
}

impl Apply<ActualChange> for Write<'_, '_> {
    fn apply(&mut self, j: &mut Judged<ActualChange>, change: ActualChange) -> Result<Applied, IngestError> {
        // A key sent again after its deletion is known: updated, as a visit is (SPEC 3.4; since
        // 2026-12-03 it was counted new).
        let applied = if change.previous.is_some() || change.was_deleted { Applied::Updated } else { Applied::New };
        if change.previous.is_none() && change.new.is_none() {
            // A deletion of a row deleted already (or, validating, of a row not looked up): counted
            // as updated (SPEC 3), nothing written.
            return Ok(Applied::Updated);
        }
        // In file order, against what is stored (this file's earlier rows and deletions too): a week
        // inside a stored four-week row, or the reverse, would pay those days twice.
        if let Some(new) = &change.new {
            let others = self.overlapping(&change.key, new.actual.period_end)?;
            if !others.is_empty() {
                // Every one named (since 2026-12-03; only the first was, and each took a round).
                let periods: Vec<String> =
                    others.iter().map(|o| format!("{} to {}{}", uk_date(o.start), uk_date(o.end), if o.in_file { " (on an earlier row of this file)" } else { "" })).collect();
                // A row earlier in the file can be neither replaced nor deleted by this file (its key
                // again is DUPLICATE_REF): only the stored ones can.
                let fix = if others.iter().any(|o| o.in_file) {
                    "send either the four weeks or the weeks in them, not both"
                } else {
                    "a row with the stored one's PeriodStart replaces it as it is (no deletion), and one with a new PeriodStart needs the stored ones deleted first (Deleted 1, on earlier rows of the file)"
                };
                let message = format!(
                    "client {}, '{}' at '{}' already has actuals for {}, which share days with this row's {} to {}: those days would be paid twice; send each day on one row only: {fix}",
                    new.actual.ssref, new.actual.service_level, new.actual.service_name, periods.join(", "), uk_date(new.actual.period_start), uk_date(new.actual.period_end)
                );
                let issue = j.issue(Code::OverlappingPeriod, Some(Col::PeriodStart.heading()), message);
                j.issues.retain(|i| i.severity == crate::outcome::Severity::Error);
                j.issues.push(issue);
                return Ok(Applied::Rejected);
            }
        }
        match self.batch {
            Some(b) => b.put(&change)?,
            None => {
                let k = &change.key;
                let end = change.new.as_ref().map(|n| n.actual.period_end);
                self.sent.entry(client_service(k)).or_default().insert(k.period_start, end);
            }
        }
        Ok(applied)
    }
}

/// `None` when nothing is written (validate).
struct ActualsPending<'s>(Option<ActualBatch<'s>>);

impl Pending for ActualsPending<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        self.0.map_or(Ok(()), |b| b.commit(result))
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.0.map_or(Ok(()), ActualBatch::abort)
    }
}

/// Why a period of the right length does not start where it should (SPEC 2.2, 5): a four-week row
/// is one payment period, and a week is a Monday-start week (the payment periods' weekday), as the
/// reports count them; otherwise rows of one client could overlap without sharing a start.
fn misaligned(start: NaiveDate, days: i64, periods: &crate::config::Periods) -> Option<String> {
    let period = Period::containing(start, periods.first_start, periods.length_days);
    if days == periods.length_days && period.start != start {
        return Some(format!("PeriodStart {}: a four-week row is one payment period; {} starts on {} (and the next on {})", uk_date(start), period.describe(), uk_date(period.start), uk_date(period.end + chrono::Duration::days(1))));
    }
    let week = week_of(start, periods);
    if days == 7 && week != start {
        return Some(format!("PeriodStart {} is a {}: a week's row starts on a {} (the weeks of the reports and payment periods); the week holding it starts on {}", uk_date(start), start.format("%A"), periods.first_start.format("%A"), uk_date(week)));
    }
    None
}

/// The first day of the week holding `day`, weeks starting on the payment periods' weekday.
fn week_of(day: NaiveDate, periods: &crate::config::Periods) -> NaiveDate {
    use chrono::Datelike;
    let week_day = periods.first_start.weekday();
    let back = (day.weekday().num_days_from_monday() as i64 - week_day.num_days_from_monday() as i64).rem_euclid(7);
    day - chrono::Duration::days(back)
}

/// The first pass finds keys used on more than one row, hashed from the raw cells as compared
/// (SSRef in upper case, names as `NameKey`, the period start as a date), so each such row is rejected.
pub fn scan_spec(header: &Header) -> ScanSpec {
    let pos = |c: Col| header.position(&heading_key(c.heading()));
    match (pos(Col::SsRef), pos(Col::ServiceLevel), pos(Col::ServiceName), pos(Col::PeriodStart)) {
        (Some(a), Some(b), Some(c), Some(d)) => ScanSpec { key: None, slot: Some(Box::new(move |rec| key_hash(rec, [a, b, c, d]))), loose: None },
        _ => ScanSpec::default(),
    }
}

fn key_hash(rec: &csv::ByteRecord, cols: [usize; 4]) -> Option<u64> {
    let cell = |i: usize| String::from_utf8_lossy(rec.get(i).unwrap_or_default().trim_ascii()).into_owned();
    let [s, l, n, p] = cols.map(cell);
    if [&s, &l, &n, &p].iter().any(|c| c.is_empty()) {
        return None;
    }
    let k = ActualKey::new(&s, &l, &n, parse_date(&p)?);
    Some(stable_hash((k.ssref, k.level.as_str(), k.service.as_str(), k.period_start)))
}

/// What the rows are judged against; a part left `None` is not known (offline `validate`).
pub struct Context<'a> {
    pub org: Option<&'a Organisation>,
    pub cplis: Option<&'a CpliIndex>,
    pub locked: Option<LockedUntil>,
    pub periods: &'a crate::config::Periods,
    /// Hours quantities must be whole multiples of this many minutes; 0: not checked.
    pub hours_step_minutes: i64,
    /// Other organisations' OrganisationRef and ServiceRef GUIDs.
    pub foreign: std::collections::HashSet<Guid>,
    /// The service levels that take visits (`rules.visit_service_levels`): no actuals row for them.
    pub visit_levels: std::collections::HashSet<NameKey>,
    /// The store and organisation folder, to tell new keys from updated ones.
    pub store: Option<(&'a Store, &'a crate::domain::Slug)>,
    pub import_id: &'a str,
    /// `rules.current_day`: a period ending after tomorrow is not over.
    pub today: NaiveDate,
}

/// The actuals rules, on the shared `Row` (cells, issues).
impl Row<'_, Col> {
    /// Planned, Actual, Frustrated, Missed and Extra (a bad one counts as 0), whether all of them
    /// were read, and Visits (required).
    fn amounts(&mut self) -> ([Decimal; 5], bool, u64) {
        let before = self.issues.len();
        let quantities = [Col::Planned, Col::Actual, Col::Frustrated, Col::Missed, Col::Extra].map(|c| self.decimal(c, QUANTITY_DECIMALS).unwrap_or(Decimal::ZERO));
        // Over-delivery is judged only on quantities that were read.
        let read = self.issues.len() == before;
        let visits = self.whole(Col::Visits).unwrap_or(0);
        self.require(Col::Visits, " on every row: the number of visits to the client (0 if none), for safeguarding");
        (quantities, read, visits)
    }

    /// Judges a row whose field count and characters the engine has checked.
    fn judge(&mut self, repeated: &hashbrown::HashSet<u64>, ctx: &Context<'_>) -> Result<Option<ActualChange>, IngestError> {
        // Blank is 0: a row is kept unless it says otherwise.
        let deleted = self.boolean(Col::Deleted).unwrap_or(false);
        let ssref = self.required_text(Col::SsRef, 50, "");
        let level = self.required_text(Col::ServiceLevel, 100, "");
        let service = self.required_text(Col::ServiceName, 112, "");
        let start = self.required_date(Col::PeriodStart, "");
        let (Some(ssref), Some(level), Some(service), Some(start)) = (ssref, level, service, start) else {
            // The row's other cells are told of too (since 2026-12-03: a blank PeriodStart hid a
            // blank PeriodEnd and Visits, found only once it was filled in).
            if !deleted {
                let _ = self.required_date(Col::PeriodEnd, "");
                let _ = self.amounts();
            }
            return Ok(None);
        };
        let key = ActualKey::new(&ssref, &level, &service, start);
        if !deleted && ctx.visit_levels.contains(&NameKey::new(&level)) {
            self.push(
                Code::NoActualsForServiceLevel,
                Some(Col::ServiceLevel),
                format!(
                    "{} '{}' takes visits: its actuals come from the visits file (guide: \"actuals are created by visits data\"), so an actuals row would pay the same care twice; actuals files are for extra care housing and care home placements",
                    h::SERVICE_LEVEL, quote(&level)
                ),
            );
        }
        if repeated.contains(&stable_hash((key.ssref.clone(), key.level.as_str(), key.service.as_str(), start))) {
            self.push(
                Code::DuplicateRef,
                Some(Col::PeriodStart),
                format!("client {ssref}, '{level}' at '{service}' from {} is on more than one row of this file; send each client, service and period once (a row replaces the one stored from the same PeriodStart without a deletion row), so all rows carrying it are rejected", uk_date(start)),
            );
        }
        if let Some(lock) = ctx.locked.filter(|l| l.locks(start)) {
            let p = Period::containing(start, ctx.periods.first_start, ctx.periods.length_days);
            self.push(
                Code::PeriodLocked,
                Some(Col::PeriodStart),
                format!(
                    "PeriodStart {} is in {}, which the council has locked (everything up to {}); contact the council's care payments team to change it",
                    uk_date(start), p.describe(), uk_date(lock.0)
                ),
            );
        }
        let previous = match ctx.store {
            Some((store, slug)) => store.current_actual(slug, &key)?,
            None => None,
        };
        if deleted {
            // A row deleted already (the same file sent again) is left as it is (SPEC 3).
            if let Some((store, slug)) = ctx.store.filter(|_| previous.is_none() && !self.has_errors()) {
                if !store.actual_has_history(slug, &key)? {
                    self.push(Code::DeleteUnknown, Some(Col::PeriodStart), format!("there is no actuals row for client {ssref}, '{level}' at '{service}' from {} to delete", uk_date(start)));
                }
            }
            return Ok(Some(ActualChange { key, previous, new: None, was_deleted: false }));
        }

        let end = self.required_date(Col::PeriodEnd, "");
        if let Some(end) = end {
            let days = (end - start).num_days() + 1;
            if end < start {
                self.push(Code::BadDate, Some(Col::PeriodEnd), format!("PeriodEnd {} is before PeriodStart {}: a period ends on or after the day it starts", uk_date(end), uk_date(start)));
            } else if !PERIOD_DAYS.contains(&days) {
                // SPEC 2.2: an actuals row is a week or a four-week payment period.
                let (week, period) = (week_of(start, ctx.periods), Period::containing(start, ctx.periods.first_start, ctx.periods.length_days));
                self.push(
                    Code::BadDate,
                    Some(Col::PeriodEnd),
                    format!(
                        "PeriodStart {} to PeriodEnd {} is {days} days: a row covers a week or a four-week payment period; the week holding {} is {} to {}, its payment period {} to {}",
                        uk_date(start), uk_date(end), uk_date(start), uk_date(week), uk_date(week + chrono::Duration::days(6)), uk_date(period.start), uk_date(period.end)
                    ),
                );
            } else if end > ctx.today + chrono::Duration::days(1) {
                // As a visit's DeliveredVisitDate: what was delivered is known once the period is
                // over (tomorrow allowed, for a server a time zone behind the provider).
                self.push(
                    Code::BadDate,
                    Some(Col::PeriodEnd),
                    format!(
                        "PeriodEnd {} is in the future (today is {}): a row gives the care delivered in a period, so send it once the period is over; a date years ahead is often a two-digit year read as 20YY",
                        uk_date(end), uk_date(ctx.today)
                    ),
                );
            } else if let Some(message) = misaligned(start, days, ctx.periods) {
                // After the future's check (since 2026-12-03): the Monday it named for a period
                // years ahead was refused in turn.
                self.push(Code::BadDate, Some(Col::PeriodStart), message);
            }
        }
        let ([planned, actual, frustrated, missed, extra], quantities_read, visits) = self.amounts();
        let comments = self.text(Col::Comments, 8000);
        let client_ref = self.guid(Col::ClientRef);
        let service_level_ref = self.guid(Col::ServiceLevelRef);
        let service_ref = self.guid(Col::ServiceRef);
        let org_ref = self.guid(Col::OrganisationRef);
        let nhs_number = self.text(Col::NhsNumber, 20);
        let org_name = self.opt(Col::OrganisationName).map(Cow::into_owned);
        self.check_own_organisation(ctx.org, org_ref.as_ref(), org_name.as_deref(), &ctx.foreign);
        if let Some(index) = ctx.cplis {
            for (heading, message) in index.ref_mismatches(Some(&ssref), client_ref.as_ref(), nhs_number.as_deref(), service_level_ref.as_ref(), Some(&level)) {
                self.push(Code::RefMismatch, Col::named(heading), message);
            }
        }
        let mut a = Actual {
            ssref,
            service_level: level,
            service_name: service,
            period_start: start,
            period_end: end.unwrap_or(start),
            planned,
            actual,
            frustrated,
            missed,
            extra,
            visits,
            comments,
            client_ref,
            nhs_number,
            service_level_ref,
            service_ref,
            matched: MatchStatus::Unmatched { reason: "not matched: validated without CPLIs".into() },
            total_cost: None,
        };
        if quantities_read && a.is_over_delivery() && a.comments.is_none() {
            let what = if a.actual > a.planned {
                format!("Actual {} is more than Planned {}", a.actual, a.planned)
            } else if a.actual.checked_add(a.extra).is_none_or(|sum| sum > a.planned) {
                format!("Actual {} and Extra {} come to more than Planned {}", a.actual, a.extra, a.planned)
            } else {
                format!("Actual {} and Frustrated {} come to more than Planned {} (Frustrated is planned care the client missed; both are paid)", a.actual, a.frustrated, a.planned)
            };
            self.push(Code::CommentRequired, Some(Col::Comments), format!("{what}: a comment is required when more care was delivered than planned (over-delivery); say why in {}", Col::Comments.heading()));
        }
        let matched = ctx.cplis.map(|index| match_actual(&a, index));
        // Hours in quarters are told with the row's other errors, not only once those are put right.
        if let Some((_, _, Some(cpli))) = &matched {
            if ctx.hours_step_minutes > 0 && is_hours(&cpli.quantity.unit) {
                self.check_hours_step(&a, ctx.hours_step_minutes);
            }
        }
        // A rejected row is not matched: nothing of it is stored, and its warnings would count as
        // data-quality issues of rows that were (SPEC 3).
        if !self.has_errors() {
            self.nhs_number(Col::NhsNumber, a.nhs_number.as_deref());
            if let (Some((status, field, cpli)), Some(index)) = (matched, ctx.cplis) {
                self.cost(&mut a, status, field, cpli, index, quantities_read);
            }
        }
        let new = StoredActual { import_id: ctx.import_id.to_string(), row: self.row, actual: a };
        // Looked up here, not where rows are written, so that `validate --org` counts it as `import`.
        let was_deleted = match ctx.store.filter(|_| previous.is_none()) {
            Some((store, slug)) => store.actual_has_history(slug, &key)?,
            None => false,
        };
        Ok(Some(ActualChange { key, previous, new: Some(new), was_deleted }))
    }

    fn check_own_organisation(&mut self, org: Option<&Organisation>, org_ref: Option<&Guid>, org_name: Option<&str>, foreign: &std::collections::HashSet<Guid>) {
        let Some(org) = org else { return };
        let name = org_name.map(|n| (n, org.is_named(n)));
        Row::check_organisation(self, org, (Col::OrganisationName, Col::OrganisationRef), name, org_ref, foreign, "actuals");
    }

    /// Gives an accepted row its match (`match_actual`) and its cost from the CPLI.
    fn cost(&mut self, a: &mut Actual, status: MatchStatus, field: Option<&'static str>, cpli: Option<&Cpli>, index: &CpliIndex, quantities_read: bool) {
        if let Some(cpli) = cpli.filter(|_| quantities_read) {
            self.check_planned(a, cpli, index);
        }
        a.total_cost = cpli.and_then(|c| cost_under(a, c, index));
        if let MatchStatus::Unmatched { reason } = &status {
            self.push(Code::Unmatched, field.and_then(Col::named), reason.clone());
        }
        a.matched = status;
    }

    /// Planned is "number of planned service units (according to the contract)" (the extra-care
    /// guide's actuals screen): the matched CPLI's quantity for the row's period (issue 11). Judged
    /// only where that quantity is exact: the CPLI covers the whole period and the period is a whole
    /// number of the CPLI's frequency (`Quantity::for_period`). A period holding more of the
    /// package than the matched CPLI is judged across it (`check_planned_across`).
    fn check_planned(&mut self, a: &Actual, cpli: &Cpli, index: &CpliIndex) {
        // Only CPLIs of the matched one's unit count with it (a weekly charge beside hours adds nothing).
        let package: Vec<&Cpli> = index
            .package_of(cpli)
            .filter(|c| c.authorised && c.quantity.same_unit(&cpli.quantity) && c.overlaps(a.period_start, a.period_end))
            .collect();
        if package.len() > 1 || !cpli.covers_all(a.period_start, a.period_end) {
            self.check_planned_across(a, &package, cpli);
            return;
        }
        let days = (a.period_end - a.period_start).num_days() + 1;
        let Some(expected) = cpli.quantity.for_period(days) else { return };
        if a.planned != expected {
            let q = &cpli.quantity;
            self.push(
                Code::PlannedDiffersFromCpli,
                Some(Col::Planned),
                format!(
                    "Planned {} differs from CPLI {}'s {} for {} to {} ({} {} {}); Planned is what the contract commissions: check it, or ask the council to vary the package",
                    a.planned.normalize(), cpli.cpli_id, expected.normalize(), uk_date(a.period_start), uk_date(a.period_end),
                    q.amount.normalize(), q.unit, q.frequency
                ),
            );
        }
    }

    /// Planned where the period holds more than the matched CPLI: a variation part-way through it,
    /// a temporary extra package, a package ending in it. Planned is then what those CPLIs
    /// commission for the days each is in force (as the report's Comm.), judged where that is a
    /// figure a file can give (four decimals).
    fn check_planned_across(&mut self, a: &Actual, package: &[&Cpli], cpli: &Cpli) {
        // A CPLI of a frequency not known here would count as nothing, and part of a fortnightly one
        // is not what a provider plans for those days: then nothing is judged.
        let days_of = |c: &Cpli| c.days_in_force(a.period_start, a.period_end);
        if package.iter().any(|c| !c.quantity.plans_pro_rata(days_of(c))) {
            return;
        }
        let Some((expected, _)) = crate::domain::cpli::commissioned(package.iter().copied(), a.period_start, a.period_end, &cpli.quantity).ok() else { return };
        if expected.is_zero() || expected != expected.round_dp(QUANTITY_DECIMALS) || a.planned == expected {
            return;
        }
        let parts: Vec<String> = package
            .iter()
            .map(|c| format!("CPLI {} {} {} {} for {} of its days", c.cpli_id, c.quantity.amount.normalize(), c.quantity.unit, c.quantity.frequency, days_of(c)))
            .collect();
        self.push(
            Code::PlannedDiffersFromCpli,
            Some(Col::Planned),
            format!(
                "Planned {} differs from the {} the client's CPLIs commission for {} to {} ({}); Planned is what the contract commissions: check it{}",
                a.planned.normalize(), expected.normalize(), uk_date(a.period_start), uk_date(a.period_end), parts.join(", "),
                if (a.period_end - a.period_start).num_days() > 6 { ", or send a row for each week" } else { "" }
            ),
        );
    }

    /// Hours are sent in quarters (SPEC 2.2, configurable).
    fn check_hours_step(&mut self, a: &Actual, step_minutes: i64) {
        for (col, message) in off_step(a, step_minutes) {
            self.push(Code::BadQuantity, Some(col), message);
        }
    }
}

/// The quantities of `a` that are not in whole steps of `step_minutes`, as hours are sent (SPEC
/// 2.2), each with its message.
fn off_step(a: &Actual, step_minutes: i64) -> Vec<(Col, String)> {
    let step = Decimal::from(step_minutes);
    [(Col::Planned, a.planned), (Col::Actual, a.actual), (Col::Frustrated, a.frustrated), (Col::Missed, a.missed), (Col::Extra, a.extra)]
        .into_iter()
        // Checked (issue 9): a figure too large to turn into minutes is not in whole steps either.
        .filter(|(_, q)| !q.checked_mul(Decimal::from(60)).and_then(|m| m.checked_rem(step)).is_some_and(|r| r.is_zero()))
        .map(|(col, q)| (col, format!("{} is {q} hours; hours are sent in steps of {} hours (e.g. 3.25, 3.5, 3.75)", col.heading(), (step / Decimal::from(60)).normalize())))
        .collect()
}

/// The CPLI an actuals row belongs to (or why none), with the column to look at.
fn match_actual<'i>(a: &Actual, index: &'i CpliIndex) -> (MatchStatus, Option<&'static str>, Option<&'i Cpli>) {
    let wanted = Wanted {
        ssref: Some(&a.ssref),
        client_ref: a.client_ref.as_ref(),
        nhs_number: a.nhs_number.as_deref(),
        service_level_ref: a.service_level_ref.as_ref(),
        service_level: Some(&a.service_level),
        service_ref: a.service_ref.as_ref(),
        service_name: Some(&a.service_name),
        date: a.period_start,
        until: Some(a.period_end),
        date_field: HEADINGS[Col::PeriodStart as usize],
    };
    let keys = VisitKeys {
        client: crate::domain::visit::client_key(Some(&a.ssref), None, None).into(),
        level: Some(NameKey::new(&a.service_level)),
        service: Some(NameKey::new(&a.service_name)),
    };
    let (status, field) = index.explain_wanted(&wanted, &keys);
    let cpli = match &status {
        MatchStatus::Matched { cpli_id } => index.cplis().find(|c| &c.cpli_id == cpli_id),
        MatchStatus::Unmatched { .. } => None,
    };
    (status, field, cpli)
}

/// A stored row matched again after CPLIs changed: its status and total cost. A row stored unmatched
/// whose hours are not in steps of `hours_step_minutes` (not checked while its unit was not known)
/// stays unmatched and unpaid once its CPLI turns out to count hours, saying why (since
/// 2026-12-03: 9.1 hours was paid as sent).
pub fn rematch(a: &Actual, index: &CpliIndex, hours_step_minutes: i64) -> (MatchStatus, Option<Decimal>) {
    let (status, _, cpli) = match_actual(a, index);
    let Some(c) = cpli else { return (status, None) };
    // A row accepted matched had its hours checked then: it stays paid whatever the setting now.
    let unchecked = matches!(a.matched, MatchStatus::Unmatched { .. });
    if unchecked && hours_step_minutes > 0 && is_hours(&c.quantity.unit) {
        if let Some((_, message)) = off_step(a, hours_step_minutes).into_iter().next() {
            let reason = format!("CPLI {} counts hours: {message}; send the row again", c.cpli_id);
            return (MatchStatus::Unmatched { reason }, None);
        }
    }
    (status, cost_under(a, c, index))
}

/// A row's cost under its CPLI: Actual + Frustrated at the rate its package commissions in the
/// period (`cpli::period_cost`: a variation part-way through it, or a temporary extra package, paid
/// for its share at its own cost; the CPLI's own unit cost otherwise).
fn cost_under(a: &Actual, cpli: &Cpli, index: &CpliIndex) -> Option<Decimal> {
    crate::domain::cpli::period_cost(a.actual.checked_add(a.frustrated)?, cpli, index.package_of(cpli), a.period_start, a.period_end)
}

fn is_hours(unit: &str) -> bool {
    matches!(unit.trim().to_ascii_lowercase().as_str(), "hr" | "hrs" | "hour" | "hours")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use crate::config::Config;
    use crate::domain::{Cpli, Quantity};
    use crate::ingest::{process, Incoming, Mode};
    use crate::outcome::{Code, FileKind, ImportResult, Severity, Status};

    const HEADER: &str = "Deleted,SSRef,ServiceLevel,ServiceName,PeriodStart,PeriodEnd,Planned,Actual,Frustrated,Missed,Extra,Visits,Comments";
    const LEVEL: &str = "Extra Care Housing - Planned Care";
    const SERVICE: &str = "Pearl Carers - Extra Care Oxford";

    /// A row for A401234's week from `start`: planned, actual, frustrated, extra, visits, comment.
    fn row(start: &str, planned: &str, actual: &str, frustrated: &str, extra: &str, visits: &str, comment: &str) -> String {
        let end = crate::domain::date_time::parse_date_cell(start).map_or(String::new(), |d| uk_date(d + chrono::Duration::days(6)));
        format!("0,A401234,{LEVEL},{SERVICE},{start},{end},{planned},{actual},{frustrated},0,{extra},{visits},{comment}")
    }

    fn file(rows: &[String]) -> String {
        let mut s = format!("{HEADER}\r\n");
        for r in rows {
            s.push_str(r);
            s.push_str("\r\n");
        }
        s
    }

    fn cpli() -> Cpli {
        Cpli {
            cpli_id: "156050".into(),
            ssref: "A401234".into(),
            client_name: "Mrs Agnes Skinner".into(),
            nhs_number: None,
            client_ref: None,
            organisation_ref: None,
            organisation_name: "Pearl Carers Ltd".into(),
            service_ref: None,
            service_name: SERVICE.into(),
            contract: "Spot".into(),
            service_level_ref: None,
            service_level: LEVEL.into(),
            start_date: NaiveDate::from_ymd_opt(2022, 10, 3).unwrap(),
            end_date: None,
            quantity: Quantity { amount: Decimal::from(10), unit: "Hr".into(), frequency: "Weekly".into() },
            unit_cost: "21.50".parse().unwrap(),
            authorised: true,
        }
    }

    fn org() -> Organisation {
        Organisation::new("Pearl Carers Ltd", None)
    }

    fn run(text: &str, mode: Mode<'_>) -> ImportResult {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actuals.csv");
        std::fs::write(&path, text).unwrap();
        let incoming = Incoming { path: &path, file_name: "actuals.csv".into(), import_id: uuid::Uuid::now_v7().to_string(), received_at: chrono::Utc::now(), attachments: None };
        process(&Config::default(), Some(&org()), &incoming, mode).unwrap()
    }

    fn judge(rows: &[String]) -> ImportResult {
        run(&file(rows), Mode::Validate { store: None, cplis: Some(vec![cpli()]) })
    }

    fn codes(r: &ImportResult) -> Vec<Code> {
        r.issues.iter().map(|i| i.code).collect()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        s.put_org(&org()).unwrap();
        s.upsert_cplis(&[cpli()]).unwrap();
        (dir, s)
    }

    #[test]
    fn a_clean_actuals_row_is_accepted_matched_and_costed() {
        let (_d, s) = store();
        let r = run(&file(&[row("03/10/2022", "10", "9.5", "0.5", "0", "14", "")]), Mode::Import(&s));
        assert_eq!((r.kind, r.status, r.counts.new, r.counts.rejected), (FileKind::Actuals, Status::Processed, 1, 0), "{:#?}", r.issues);
        let stored: Vec<StoredActual> = s.current_actuals(&org().slug).collect::<Result<_, _>>().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].actual.matched, MatchStatus::Matched { cpli_id: "156050".into() });
        assert_eq!(stored[0].actual.total_cost, Some("215.000".parse().unwrap()));
    }

    #[test]
    fn over_delivery_or_more_paid_than_planned_without_a_comment_is_rejected_comment_required() {
        let r = judge(&[
            row("03/10/2022", "10", "10.5", "0", "0", "14", ""),
            row("10/10/2022", "10", "10", "0", "1.25", "15", ""),
            row("17/10/2022", "10", "10", "10", "0", "14", ""),
        ]);
        assert_eq!(codes(&r), [Code::CommentRequired, Code::CommentRequired, Code::CommentRequired]);
        assert_eq!(r.counts.rejected, 3);
        assert!(r.issues[2].message.starts_with("Actual 10 and Frustrated 10 come to more than Planned 10 (Frustrated is planned care the client missed; both are paid)"), "{}", r.issues[2].message);
        let r = judge(&[row("03/10/2022", "10", "10.5", "0", "0", "14", "stayed with the client after a fall")]);
        assert_eq!((codes(&r), r.counts.new), (vec![], 1));
    }

    #[test]
    fn quantities_must_be_numbers_and_not_negative() {
        let r = judge(&[row("03/10/2022", "ten", "9", "0", "0", "14", ""), row("10/10/2022", "10", "-1", "0", "0", "14", ""), row("17/10/2022", "10", "9", "0", "0", "2.5", "")]);
        assert_eq!(codes(&r), [Code::BadNumber, Code::BadQuantity, Code::BadNumber]);
        assert_eq!(r.counts.rejected, 3);
    }

    #[test]
    fn a_quantity_above_a_million_or_with_more_than_four_decimals_is_rejected_naming_the_bound() {
        let max = "79228162514264337593543950335";
        let r = judge(&[row("03/10/2022", "10", max, "0", "0", "14", ""), row("10/10/2022", "10", "1", "0", max, "14", ""), row("17/10/2022", "10", "9.12345", "0", "0", "14", "")]);
        assert_eq!(codes(&r), [Code::BadQuantity, Code::BadQuantity, Code::BadQuantity]);
        assert_eq!(r.issues.iter().map(|i| i.field.as_deref().unwrap()).collect::<Vec<_>>(), ["Actual", "Extra", "Actual"]);
        assert!(r.issues[0].message.contains("from 0 to 1,000,000 with at most 4 decimal places"), "{}", r.issues[0].message);
        assert_eq!(r.counts.rejected, 3);
    }

    #[test]
    fn visits_above_a_million_are_rejected() {
        let r = judge(&[row("03/10/2022", "10", "9", "0", "0", "18446744073709551616", "")]);
        assert_eq!(codes(&r), [Code::BadQuantity]);
    }

    #[test]
    fn a_control_character_in_any_cell_rejects_the_row_and_line_breaks_in_comments_do_not() {
        let nul = row("03/10/2022", "10", "9", "0", "0", "14", "").replace("A401234", "A40\u{0}1234");
        let r = judge(&[nul, row("10/10/2022", "10", "9", "0", "0", "14", "\"fell,\nthen\trested\"")]);
        assert_eq!(codes(&r), [Code::ControlCharacter], "{:#?}", r.issues);
        assert_eq!((r.issues[0].field.as_deref(), r.issues[0].reference.as_deref()), (Some("SSRef"), Some("A40\\u{0}1234")));
        assert!(r.issues[0].message.contains("U+0000 (NUL)"), "{}", r.issues[0].message);
        assert_eq!((r.counts.rejected, r.counts.new), (1, 1));
    }

    /// A row for `start`..`end` with this Planned (Actual 0, so never an over-delivery).
    fn period(start: &str, end: &str, planned: &str) -> String {
        format!("0,A401234,{LEVEL},{SERVICE},{start},{end},{planned},0,0,0,0,1,")
    }

    #[test]
    fn planned_other_than_the_cplis_quantity_for_the_period_is_a_warning_giving_both_figures() {
        // CPLI 156050: 10 Hr Weekly.
        let r = judge(&[
            period("03/10/2022", "09/10/2022", "10"),
            period("10/10/2022", "16/10/2022", "12.5"),
            period("31/10/2022", "27/11/2022", "40"),
            period("28/11/2022", "25/12/2022", "10"),
        ]);
        assert_eq!(codes(&r), [Code::PlannedDiffersFromCpli, Code::PlannedDiffersFromCpli], "{:#?}", r.issues);
        assert_eq!((r.issues[0].row, r.issues[1].row), (Some(3), Some(5)));
        assert_eq!((r.issues[0].severity, r.issues[0].field.as_deref()), (Severity::Warning, Some("Planned")));
        let m = &r.issues[0].message;
        assert!(m.starts_with("Planned 12.5 differs from CPLI 156050's 10 for 10/10/2022 to 16/10/2022 (10 Hr Weekly)"), "{m}");
        assert!(r.issues[1].message.starts_with("Planned 10 differs from CPLI 156050's 40 for 28/11/2022 to 25/12/2022"), "{}", r.issues[1].message);
        assert_eq!((r.counts.new, r.counts.rejected, r.counts.data_quality_issues), (4, 0, 2));
    }

    #[test]
    fn planned_is_not_judged_where_the_cplis_quantity_for_the_period_is_not_exact() {
        // 10 days is not a whole number of weeks; the CPLI starts on 03/10/2022, after this period starts.
        let r = judge(&[period("03/10/2022", "12/10/2022", "3"), period("26/09/2022", "02/10/2022", "3")]);
        assert!(!codes(&r).contains(&Code::PlannedDiffersFromCpli), "{:#?}", r.issues);
    }

    #[test]
    fn hours_are_sent_in_quarters() {
        let r = judge(&[row("03/10/2022", "10", "9.3", "0", "0", "14", "")]);
        assert_eq!(codes(&r), [Code::BadQuantity]);
        assert_eq!(r.issues[0].field.as_deref(), Some("Actual"));
    }

    #[test]
    fn hours_not_in_quarters_are_told_with_the_rows_other_errors() {
        // An over-delivery without a comment, and 10.1 hours: both at once, not one after the other.
        let r = judge(&[row("31/10/2022", "10", "10.1", "0", "0", "14", "")]);
        assert_eq!(codes(&r), [Code::CommentRequired, Code::BadQuantity], "{:#?}", r.issues);
        assert_eq!(r.counts.rejected, 1);
    }

    #[test]
    fn a_row_without_its_key_is_told_of_every_blank_required_cell() {
        let r = judge(&["0,,Extra Care Housing - Planned Care,Pearl Carers - Extra Care Oxford,,,10,10,0,0,x,,".to_string()]);
        let fields: Vec<_> = r.issues.iter().map(|i| (i.code, i.field.as_deref())).collect();
        assert_eq!(
            fields,
            [(Code::Required, Some("SSRef")), (Code::Required, Some("PeriodStart")), (Code::Required, Some("PeriodEnd")), (Code::BadNumber, Some("Extra")), (Code::Required, Some("Visits"))],
            "{:#?}",
            r.issues
        );
    }

    #[test]
    fn a_row_refused_for_its_hours_gets_no_warning() {
        // Planned 10.1 is refused (quarters); its difference from the CPLI's 10 is not also told.
        let r = judge(&[row("14/11/2022", "10.1", "10", "0", "0", "3", "")]);
        assert_eq!(codes(&r), [Code::BadQuantity], "{:#?}", r.issues);
        assert_eq!((r.counts.rejected, r.counts.data_quality_issues), (1, 0));
    }

    #[test]
    fn a_period_ending_after_tomorrow_is_a_bad_date() {
        let today = Config::default().rules.current_day();
        let week = |monday: NaiveDate| row(&uk_date(monday), "10", "10", "0", "0", "14", "");
        // The weeks holding today + 8 days and today - 7 days (the periods' weeks start on Mondays).
        let monday = |d: NaiveDate| week_of(d, &Config::default().periods);
        let r = judge(&[week(monday(today + chrono::Duration::days(8))), week(monday(today - chrono::Duration::days(7)))]);
        assert_eq!(codes(&r).first(), Some(&Code::BadDate), "{:#?}", r.issues);
        assert_eq!((r.issues[0].row, r.issues[0].field.as_deref()), (Some(2), Some("PeriodEnd")));
        assert!(r.issues[0].message.contains("is in the future"), "{}", r.issues[0].message);
        assert_eq!(r.counts.rejected, 1, "last week's row is taken: {:#?}", r.issues);
    }

    #[test]
    fn a_period_in_the_future_is_told_so_before_the_weekday_it_should_start_on() {
        let r = judge(&[row("02/01/2099", "10", "10", "0", "0", "14", "")]);
        assert_eq!((codes(&r), r.issues[0].field.as_deref()), (vec![Code::BadDate], Some("PeriodEnd")), "{:#?}", r.issues);
        assert!(r.issues[0].message.contains("is in the future"), "{}", r.issues[0].message);
    }

    #[test]
    fn a_period_that_ends_before_it_starts_is_rejected() {
        let bad = row("10/10/2022", "10", "9", "0", "0", "14", "").replacen("10/10/2022,16/10/2022", "10/10/2022,09/10/2022", 1);
        let r = judge(&[bad]);
        assert_eq!(codes(&r), [Code::BadDate]);
        assert_eq!(r.issues[0].field.as_deref(), Some("PeriodEnd"));
    }

    #[test]
    fn a_four_week_row_is_a_payment_period_and_a_week_starts_on_a_monday() {
        // Payment periods from 03/10/2022, every 28 days: the guide's "20/02/23 - 19/03/23" is one.
        let guide = format!("0,A401234,{LEVEL},{SERVICE},20/02/2023,19/03/2023,40,40,0,0,0,56,");
        assert_eq!(judge(&[guide]).counts.rejected, 0);
        let late = format!("0,A401234,{LEVEL},{SERVICE},12/10/2022,08/11/2022,40,40,0,0,0,56,");
        let r = judge(&[late]);
        assert_eq!((codes(&r), r.issues[0].field.as_deref()), (vec![Code::BadDate], Some("PeriodStart")), "{:#?}", r.issues);
        assert!(r.issues[0].message.contains("a four-week row is one payment period; payment period 1 (03/10/2022 to 30/10/2022) starts on 03/10/2022 (and the next on 31/10/2022)"), "{}", r.issues[0].message);
        let wednesday = row("12/10/2022", "10", "10", "0", "0", "14", "");
        let r = judge(&[wednesday]);
        assert_eq!(codes(&r), [Code::BadDate]);
        assert!(r.issues[0].message.contains("PeriodStart 12/10/2022 is a Wednesday: a week's row starts on a Monday") && r.issues[0].message.contains("starts on 10/10/2022"), "{}", r.issues[0].message);
    }

    #[test]
    fn a_row_sharing_days_with_another_of_the_client_and_service_is_rejected_unless_that_one_is_deleted_first() {
        let (_d, s) = store();
        let month = format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,40,40,0,0,0,56,");
        run(&file(std::slice::from_ref(&month)), Mode::Import(&s));
        // A week inside the stored four weeks, and in one file a week and the four weeks holding it.
        let week = row("10/10/2022", "10", "10", "0", "0", "14", "");
        let r = run(&file(std::slice::from_ref(&week)), Mode::Import(&s));
        assert_eq!((r.counts.rejected, codes(&r)), (1, vec![Code::OverlappingPeriod]), "{:#?}", r.issues);
        assert!(r.issues[0].message.contains("already has actuals for 03/10/2022 to 30/10/2022, which share days with this row's 10/10/2022 to 16/10/2022"), "{}", r.issues[0].message);
        let next_month = format!("0,A401234,{LEVEL},{SERVICE},31/10/2022,27/11/2022,40,40,0,0,0,56,");
        let r = run(&file(&[row("07/11/2022", "10", "10", "0", "0", "14", ""), next_month]), Mode::Import(&s));
        assert_eq!((r.counts.new, r.counts.rejected, r.issues[0].row), (1, 1, Some(3)), "{:#?}", r.issues);
        // Weeks instead of the four weeks: the four-week row deleted on an earlier row of the file.
        let delete = format!("1,A401234,{LEVEL},{SERVICE},03/10/2022,,,,,,,,");
        let r = run(&file(&[delete, week]), Mode::Import(&s));
        assert_eq!((r.counts.new, r.counts.updated, r.counts.rejected), (1, 1, 0), "{:#?}", r.issues);
    }

    /// `validate` judges overlaps as `import` does: within the file offline, against the store too
    /// with `--org` (since 2026-12-03 it never did, and said clean to a file the import rejects).
    #[test]
    fn a_row_sharing_days_with_another_is_rejected_by_validate_too() {
        let month = format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,40,40,0,0,0,56,");
        let week = row("10/10/2022", "10", "10", "0", "0", "14", "");
        let r = judge(&[month.clone(), week.clone()]);
        assert_eq!((r.counts.new, r.counts.rejected, codes(&r)), (1, 1, vec![Code::OverlappingPeriod]), "{:#?}", r.issues);
        assert_eq!(r.issues[0].row, Some(3));
        // The other row is this file's: neither replacing nor deleting it can help (that is its key
        // again, DUPLICATE_REF), and the message says what can.
        assert!(r.issues[0].message.contains("03/10/2022 to 30/10/2022 (on an earlier row of this file)") && r.issues[0].message.ends_with("send either the four weeks or the weeks in them, not both"), "{}", r.issues[0].message);
        let delete = format!("1,A401234,{LEVEL},{SERVICE},03/10/2022,,,,,,,,");
        // With the store: a week inside the four weeks stored, unless the file deletes them first.
        let (_d, s) = store();
        run(&file(std::slice::from_ref(&month)), Mode::Import(&s));
        let with_store = |rows: &[String]| run(&file(rows), Mode::Validate { store: Some(&s), cplis: None });
        let r = with_store(std::slice::from_ref(&week));
        assert_eq!((r.counts.rejected, codes(&r)), (1, vec![Code::OverlappingPeriod]), "{:#?}", r.issues);
        assert_eq!(with_store(&[delete, week]).counts.rejected, 0);
    }

    #[test]
    fn an_overlap_names_every_stored_row_it_shares_days_with() {
        let (_d, s) = store();
        let weeks = [row("10/10/2022", "10", "10", "0", "0", "14", ""), row("17/10/2022", "10", "10", "0", "0", "14", "")];
        run(&file(&weeks), Mode::Import(&s));
        let month = format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,40,40,0,0,0,56,");
        let r = run(&file(&[month]), Mode::Import(&s));
        assert_eq!(codes(&r), [Code::OverlappingPeriod]);
        // Only the first was named (until 2026-12-03), and each took a round to clear.
        assert!(r.issues[0].message.contains("already has actuals for 10/10/2022 to 16/10/2022, 17/10/2022 to 23/10/2022, which share days"), "{}", r.issues[0].message);
        assert!(r.issues[0].message.contains("needs the stored ones deleted first"), "{}", r.issues[0].message);
    }

    #[test]
    fn a_period_is_a_week_or_a_four_week_payment_period() {
        let ending = |end: &str| row("03/10/2022", "10", "9", "0", "0", "14", "").replacen("03/10/2022,09/10/2022", &format!("03/10/2022,{end}"), 1);
        let four_weeks = row("31/10/2022", "40", "40", "0", "0", "56", "").replacen("31/10/2022,06/11/2022", "31/10/2022,27/11/2022", 1);
        let r = judge(&[ending("09/10/2022"), four_weeks]);
        assert!(!codes(&r).contains(&Code::BadDate), "7 and 28 days: {:#?}", r.issues);
        assert_eq!(r.counts.rejected, 0);
        let r = judge(&[ending("05/10/2022")]);
        assert_eq!(codes(&r), [Code::BadDate]);
        assert_eq!(r.issues[0].field.as_deref(), Some("PeriodEnd"));
        assert_eq!(
            r.issues[0].message,
            "PeriodStart 03/10/2022 to PeriodEnd 05/10/2022 is 3 days: a row covers a week or a four-week payment period; the week holding 03/10/2022 is 03/10/2022 to 09/10/2022, its payment period 03/10/2022 to 30/10/2022"
        );
        // A PeriodStart inside a week and a period: the rows that hold it, each of which is accepted.
        let tuesday = row("15/11/2022", "10", "9", "0", "0", "14", "").replacen("15/11/2022,21/11/2022", "15/11/2022,17/11/2022", 1);
        let m = judge(&[tuesday]).issues[0].message.clone();
        assert!(m.ends_with("the week holding 15/11/2022 is 14/11/2022 to 20/11/2022, its payment period 31/10/2022 to 27/11/2022"), "{m}");
        let week = row("14/11/2022", "10", "9", "0", "0", "14", "");
        let period = row("31/10/2022", "40", "40", "0", "0", "56", "").replacen("31/10/2022,06/11/2022", "31/10/2022,27/11/2022", 1);
        assert!(!codes(&judge(&[week, period])).contains(&Code::BadDate));
    }

    #[test]
    fn a_rejected_row_gets_only_its_errors_and_no_warning_counted_as_a_data_quality_issue() {
        let unknown = row("03/10/2022", "10", "9", "0", "0", "", "").replace("A401234", "A999999");
        let r = judge(&[unknown]);
        assert_eq!(codes(&r), [Code::Required], "no UNMATCHED for a row that is not stored");
        assert_eq!((r.counts.rejected, r.counts.data_quality_issues), (1, 0));
    }

    #[test]
    fn a_client_ref_or_nhs_number_the_cplis_give_another_client_is_a_ref_mismatch() {
        let mut other = cpli();
        (other.cpli_id, other.ssref) = ("156051".into(), "A123456".into());
        other.client_ref = crate::domain::parse_guid("2217BEAD-0000-0000-0000-000000000001");
        other.nhs_number = Some("943 476 5919".into());
        let header = format!("{HEADER},ClientRef,NHSNumber");
        let clean = row("03/10/2022", "10", "9", "0", "0", "14", "");
        let text = |client_ref: &str, nhs: &str| format!("{header}\r\n{clean},{client_ref},{nhs}\r\n");
        let run_with = |t: String| run(&t, Mode::Validate { store: None, cplis: Some(vec![cpli(), other.clone()]) });
        let r = run_with(text("2217BEAD-0000-0000-0000-000000000001", ""));
        assert_eq!(codes(&r), [Code::RefMismatch]);
        assert_eq!(r.issues[0].field.as_deref(), Some("ClientRef"));
        assert!(r.issues[0].message.contains("is client A123456, but SSRef says 'A401234'"), "{}", r.issues[0].message);
        let r = run_with(text("", "9434765919"));
        assert_eq!((codes(&r), r.issues[0].field.as_deref()), (vec![Code::RefMismatch], Some("NHSNumber")));
        assert_eq!(r.counts.rejected, 1);
    }

    #[test]
    fn visits_is_required_on_every_row() {
        let r = judge(&[row("03/10/2022", "10", "9", "0", "0", "", "")]);
        assert_eq!(codes(&r), [Code::Required]);
    }

    #[test]
    fn every_row_carrying_a_repeated_key_is_rejected_duplicate_ref() {
        // The same client, level, service and period, written differently.
        let twin = row("3/10/22", "10", "9", "0", "0", "14", "").replace("A401234", "a401234").replace(LEVEL, "extra care housing - planned care");
        let r = judge(&[row("03/10/2022", "10", "9", "0", "0", "14", ""), twin, row("10/10/2022", "10", "9", "0", "0", "14", "")]);
        assert_eq!(codes(&r), [Code::DuplicateRef, Code::DuplicateRef]);
        assert_eq!((r.counts.rejected, r.counts.new), (2, 1));
    }

    #[test]
    fn a_row_for_a_package_the_council_has_not_set_up_is_stored_unmatched() {
        let r = judge(&[row("03/10/2022", "10", "9", "0", "0", "14", "").replace(SERVICE, "Pearl Carers - Extra Care Banbury")]);
        assert_eq!(codes(&r), [Code::Unmatched]);
        assert!(r.issues[0].message.contains("did you mean ServiceName 'Pearl Carers - Extra Care Oxford'"), "{}", r.issues[0].message);
        let r = judge(&[row("26/09/2022", "10", "9", "0", "0", "14", "")]);
        assert!(r.issues[0].message.starts_with("PeriodStart 26/09/2022 is before CPLI 156050 starts"), "{}", r.issues[0].message);
    }

    #[test]
    fn only_the_optional_headings_may_be_left_out() {
        let r = run(&file(&[]).replace(",Visits", ""), Mode::Validate { store: None, cplis: None });
        assert_eq!((r.status, codes(&r)), (Status::Failed, vec![Code::MissingColumn]));
    }

    #[test]
    fn resending_a_key_updates_it_and_keeps_the_earlier_version() {
        let (_d, s) = store();
        let text = file(&[row("03/10/2022", "10", "9.5", "0.5", "0", "14", "")]);
        assert_eq!(run(&text, Mode::Import(&s)).counts.new, 1);
        let again = run(&text, Mode::Import(&s));
        assert_eq!((again.counts.read, again.counts.new, again.counts.updated), (1, 0, 1));
        assert_eq!(s.current_actuals(&org().slug).count(), 1);
        assert_eq!(s.actuals_history(&org().slug).count(), 1);
    }

    #[test]
    fn an_actuals_row_for_a_service_level_that_takes_visits_is_rejected() {
        let visits_level = row("03/10/2022", "5", "5", "0", "0", "5", "").replace(LEVEL, "personal care");
        let r = judge(&[visits_level]);
        assert_eq!((r.counts.rejected, codes(&r)), (1, vec![Code::NoActualsForServiceLevel]), "{:#?}", r.issues);
        assert!(r.issues[0].message.starts_with("ServiceLevel 'personal care' takes visits"), "{}", r.issues[0].message);
        assert_eq!(r.issues[0].field.as_deref(), Some("ServiceLevel"));
        // The guide's actuals levels are taken.
        assert_eq!(judge(&[row("03/10/2022", "10", "10", "0", "0", "14", "")]).counts.rejected, 0);
    }

    #[test]
    fn a_deletion_removes_the_row_sent_again_changes_nothing_and_an_unknown_one_is_rejected() {
        let (_d, s) = store();
        run(&file(&[row("03/10/2022", "10", "9.5", "0.5", "0", "14", "")]), Mode::Import(&s));
        let delete = format!("1,A401234,{LEVEL},{SERVICE},03/10/2022,,,,,,,,");
        let r = run(&file(std::slice::from_ref(&delete)), Mode::Import(&s));
        assert_eq!((r.counts.updated, codes(&r)), (1, vec![]));
        assert_eq!(s.current_actuals(&org().slug).count(), 0);
        let history = s.actuals_history(&org().slug).count();
        // Sent again: changes nothing, counted as updated (SPEC 3).
        let r = run(&file(std::slice::from_ref(&delete)), Mode::Import(&s));
        assert_eq!((r.counts.updated, r.counts.rejected, codes(&r)), (1, 0, vec![]));
        assert_eq!((s.current_actuals(&org().slug).count(), s.actuals_history(&org().slug).count()), (0, history));
        // Sent again after its deletion: updated, its key known (as a visit's is), validated as
        // imported.
        let checked = run(&file(&[row("03/10/2022", "10", "9.5", "0.5", "0", "14", "")]), Mode::Validate { store: Some(&s), cplis: None });
        assert_eq!((checked.counts.new, checked.counts.updated), (0, 1));
        let back = run(&file(&[row("03/10/2022", "10", "9.5", "0.5", "0", "14", "")]), Mode::Import(&s));
        assert_eq!((back.counts.new, back.counts.updated), (0, 1));
        // A row never sent cannot be deleted.
        let never = format!("1,A401234,{LEVEL},{SERVICE},10/10/2022,,,,,,,,");
        let r = run(&file(&[never]), Mode::Import(&s));
        assert_eq!(codes(&r), [Code::DeleteUnknown]);
    }

    #[test]
    fn a_period_starting_in_a_locked_period_is_rejected() {
        let (_d, s) = store();
        s.lock_until(NaiveDate::from_ymd_opt(2022, 10, 30).unwrap()).unwrap();
        let r = run(&file(&[row("24/10/2022", "10", "9", "0", "0", "14", ""), row("31/10/2022", "10", "9", "0", "0", "14", "")]), Mode::Import(&s));
        assert_eq!(codes(&r), [Code::PeriodLocked]);
        assert_eq!((r.counts.rejected, r.counts.new), (1, 1));
    }

    /// A156050-like CPLI `id` for A401234 from `start` to `end`: `hours` Hr Weekly at `cost`.
    fn cpli_of(id: &str, start: (i32, u32, u32), end: Option<(i32, u32, u32)>, hours: i64, cost: &str) -> Cpli {
        let day = |(y, m, d): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        Cpli {
            cpli_id: id.into(),
            start_date: day(start),
            end_date: end.map(day),
            quantity: Quantity { amount: Decimal::from(hours), unit: "Hr".into(), frequency: "Weekly".into() },
            unit_cost: cost.parse().unwrap(),
            ..cpli()
        }
    }

    /// Imports `rows` onto a store holding `cplis`: the result and the stored rows' costs.
    fn import_under(cplis: &[Cpli], rows: &[String]) -> (ImportResult, Vec<Option<Decimal>>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        s.put_org(&org()).unwrap();
        s.upsert_cplis(cplis).unwrap();
        let r = run(&file(rows), Mode::Import(&s));
        let costs = s.current_actuals(&org().slug).map(|a| a.unwrap().actual.total_cost.map(|c| c.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero))).collect();
        (r, costs)
    }

    #[test]
    fn a_period_across_a_variation_is_paid_for_each_part_at_its_own_cost() {
        // 10 h a week at 21.50 to 16/10, then 12 h at 22.00: the four weeks commission 20 + 24 h.
        let cplis = [cpli_of("156060", (2022, 10, 3), Some((2022, 10, 16)), 10, "21.50"), cpli_of("156061", (2022, 10, 17), None, 12, "22.00")];
        let (r, costs) = import_under(&cplis, &[format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,44,44,0,0,0,56,")]);
        assert_eq!((r.counts.new, r.issues.len()), (1, 0), "{:#?}", r.issues);
        assert_eq!(costs, [Some("958.00".parse().unwrap())], "20 h at 21.50 and 24 h at 22.00, not 44 h at 21.50 (946.00)");
        // Planned other than the 44 commissioned is told with both parts.
        let (r, _) = import_under(&cplis, &[format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,40,40,0,0,0,56,")]);
        assert_eq!(codes(&r), [Code::PlannedDiffersFromCpli], "{:#?}", r.issues);
        assert!(r.issues[0].message.starts_with("Planned 40 differs from the 44 the client's CPLIs commission for 03/10/2022 to 30/10/2022 (CPLI 156060 10 Hr Weekly for 14 of its days, CPLI 156061 12 Hr Weekly for 14 of its days)"), "{}", r.issues[0].message);
    }

    #[test]
    fn a_temporary_extra_package_counts_in_planned_and_is_paid_at_its_own_cost() {
        let cplis = [cpli_of("156070", (2022, 10, 3), None, 10, "21.50"), cpli_of("156071", (2022, 10, 10), Some((2022, 10, 23)), 5, "30")];
        let (r, costs) = import_under(&cplis, &[row("10/10/2022", "15", "15", "0", "0", "20", "")]);
        assert_eq!(r.issues.len(), 0, "Planned 15 is what the two commission: {:#?}", r.issues);
        assert_eq!(costs, [Some("365.00".parse().unwrap())], "10 h at 21.50 and 5 h at 30");
    }

    #[test]
    fn a_cpli_of_another_unit_beside_the_matched_one_is_not_part_of_planned() {
        let mut charge = cpli_of("156201", (2022, 10, 3), None, 1, "100");
        charge.quantity.unit = "Wk".into();
        let (r, _) = import_under(&[cpli_of("156200", (2022, 10, 3), None, 10, "20"), charge], &[row("10/10/2022", "9", "9", "0", "0", "7", "")]);
        assert_eq!(codes(&r), [Code::PlannedDiffersFromCpli], "{:#?}", r.issues);
        assert!(r.issues[0].message.starts_with("Planned 9 differs from CPLI 156200's 10 for 10/10/2022 to 16/10/2022 (10 Hr Weekly)"), "{}", r.issues[0].message);
    }

    #[test]
    fn a_penny_is_not_lost_paying_a_period_at_its_packages_rate() {
        // 2 h at 22.00 and a temporary 1 h at 23.225: 67.225, which rounds to 67.23.
        let cplis = [cpli_of("200021", (2022, 10, 3), None, 2, "22.00"), cpli_of("200022", (2022, 10, 10), Some((2022, 10, 16)), 1, "23.225")];
        let (_, costs) = import_under(&cplis, &[row("10/10/2022", "3", "3", "0", "0", "10", "")]);
        assert_eq!(costs, [Some("67.23".parse().unwrap())]);
    }

    #[test]
    fn a_package_holding_a_monthly_cpli_is_paid_at_the_matched_cplis_own_cost() {
        let mut monthly = cpli_of("400001", (2022, 10, 3), None, 40, "20");
        monthly.quantity.frequency = "Monthly".into();
        let cplis = [monthly, cpli_of("400002", (2022, 10, 10), Some((2022, 10, 16)), 2, "30")];
        let (_, costs) = import_under(&cplis, &[row("10/10/2022", "12", "12", "0", "0", "10", "")]);
        assert_eq!(costs, [Some("240.00".parse().unwrap())], "12 h at the Monthly CPLI's 20, not the temporary one's 30");
    }

    #[test]
    fn planned_is_not_judged_against_part_of_a_fortnightly_package() {
        let mut fortnightly = cpli_of("500010", (2022, 10, 3), None, 10, "20");
        fortnightly.quantity.frequency = "Fortnightly".into();
        let cplis = [fortnightly, cpli_of("500011", (2022, 10, 10), Some((2022, 10, 16)), 2, "20")];
        let (r, _) = import_under(&cplis, &[row("10/10/2022", "12", "12", "0", "0", "10", "")]);
        assert!(!codes(&r).contains(&Code::PlannedDiffersFromCpli), "{:#?}", r.issues);
    }

    #[test]
    fn planned_is_not_judged_across_a_package_of_a_frequency_not_known() {
        let mut monthly = cpli_of("156102", (2022, 10, 3), Some((2022, 10, 12)), 30, "20");
        monthly.quantity.frequency = "Monthly".into();
        let (r, _) = import_under(&[monthly], &[format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,28,28,0,0,0,20,")]);
        assert!(!codes(&r).contains(&Code::PlannedDiffersFromCpli), "{:#?}", r.issues);
    }

    #[test]
    fn planned_for_a_period_a_package_ends_in_is_what_it_commissions_for_its_days() {
        // 7 h a week until Wednesday 12/10: ten days of the four weeks, 10 h.
        let cplis = [cpli_of("156101", (2022, 10, 3), Some((2022, 10, 12)), 7, "20")];
        let (r, _) = import_under(&cplis, &[format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,28,28,0,0,0,20,")]);
        assert_eq!(codes(&r), [Code::PlannedDiffersFromCpli], "{:#?}", r.issues);
        assert!(r.issues[0].message.contains("differs from the 10 the client's CPLIs commission"), "{}", r.issues[0].message);
    }

    #[test]
    fn a_row_of_a_period_its_package_starts_in_part_way_through_is_matched_and_paid() {
        // 7 h a week from Wednesday 05/10: its first week commissions 5 h, its first four weeks 26.
        let cplis = [cpli_of("156110", (2022, 10, 5), None, 7, "20")];
        let (r, costs) = import_under(&cplis, &[row("03/10/2022", "5", "5", "0", "0", "10", "")]);
        assert_eq!((r.counts.new, r.issues.len()), (1, 0), "{:#?}", r.issues);
        assert_eq!(costs, [Some("100.00".parse().unwrap())]);
        let (r, costs) = import_under(&cplis, &[format!("0,A401234,{LEVEL},{SERVICE},03/10/2022,30/10/2022,26,26,0,0,0,20,")]);
        assert_eq!((r.counts.new, r.issues.len()), (1, 0), "{:#?}", r.issues);
        assert_eq!(costs, [Some("520.00".parse().unwrap())]);
        // A period wholly before it is still before it.
        let (r, _) = import_under(&cplis, &[row("26/09/2022", "5", "5", "0", "0", "10", "")]);
        assert_eq!(codes(&r), [Code::Unmatched]);
    }

    #[test]
    fn an_unmatched_row_is_matched_and_costed_when_its_package_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        run(&file(&[row("03/10/2022", "10", "9.5", "0.5", "0", "14", "")]), Mode::Import(&s));
        let stored = || s.current_actuals(&org().slug).next().unwrap().unwrap().actual;
        assert!(matches!(stored().matched, MatchStatus::Unmatched { .. }));
        s.upsert_cplis(&[cpli()]).unwrap();
        let index = CpliIndex::new(vec![cpli()]);
        assert_eq!(s.rematch_actuals(&org().slug, |a| rematch(a, &index, 15)).unwrap(), 1);
        assert_eq!((stored().matched, stored().total_cost), (MatchStatus::Matched { cpli_id: "156050".into() }, Some("215.000".parse().unwrap())));
    }

    #[test]
    fn an_unmatched_row_of_hours_not_in_quarters_stays_unpaid_when_its_package_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        run(&file(&[row("03/10/2022", "10", "9.1", "0.3", "0", "14", "")]), Mode::Import(&s));
        s.upsert_cplis(&[cpli()]).unwrap();
        let index = CpliIndex::new(vec![cpli()]);
        s.rematch_actuals(&org().slug, |a| rematch(a, &index, 15)).unwrap();
        let stored = s.current_actuals(&org().slug).next().unwrap().unwrap().actual;
        let MatchStatus::Unmatched { reason } = &stored.matched else { panic!("{:?}", stored.matched) };
        assert!(reason.starts_with("CPLI 156050 counts hours: Actual is 9.1 hours; hours are sent in steps of 0.25 hours"), "{reason}");
        assert_eq!(stored.total_cost, None);
        // A row accepted matched keeps its match and its pay, whatever the step is now.
        let (_d, s) = store();
        run(&file(&[row("03/10/2022", "10", "9.25", "0", "0", "14", "")]), Mode::Import(&s));
        s.rematch_actuals(&org().slug, |a| rematch(a, &index, 30)).unwrap();
        let stored = s.current_actuals(&org().slug).next().unwrap().unwrap().actual;
        assert_eq!((stored.matched, stored.total_cost), (MatchStatus::Matched { cpli_id: "156050".into() }, Some("198.875".parse().unwrap())));
    }

    #[test]
    fn a_file_with_an_error_row_stores_the_others_in_one_batch() {
        let (_d, s) = store();
        let r = run(&file(&[row("03/10/2022", "10", "11", "0", "0", "14", ""), row("10/10/2022", "10", "9", "0", "0", "14", "")]), Mode::Import(&s));
        assert_eq!((r.counts.rejected, r.counts.new), (1, 1));
        assert!(s.import_result(&r.import_id).unwrap().is_some());
        assert_eq!(s.current_actuals(&org().slug).count(), 1);
    }
}
