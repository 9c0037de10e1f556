//! Matching a visit to the CPLI the council commissioned, and saying why when none fits (SPEC 3.3).

use std::borrow::Cow;

use hashbrown::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::headings as h;
use crate::domain::visit::client_key;
use std::sync::Arc;

use crate::domain::{uk_date, Cpli, Guid, MatchStatus, NameKey, NameKeys, Visit};

/// One organisation's CPLIs, found by any of the client's identifiers.
#[derive(Debug, Default)]
pub struct CpliIndex {
    entries: Vec<Entry>,
    by_client: HashMap<String, Vec<usize>>,
}

/// A CPLI with its service level and service name as compared, computed once.
#[derive(Debug)]
struct Entry {
    cpli: Cpli,
    level: NameKey,
    service: NameKey,
}

/// A visit's client, service level and service name as compared with CPLIs.
pub struct VisitKeys {
    pub client: Arc<str>,
    pub level: Option<NameKey>,
    pub service: Option<NameKey>,
}

impl VisitKeys {
    pub fn of(v: &Visit) -> VisitKeys {
        VisitKeys {
            client: v.client_key().into(),
            level: v.service_level.as_deref().map(NameKey::new),
            service: v.service_name.as_deref().map(NameKey::new),
        }
    }
}

/// What a row asks to be matched on.
pub struct Wanted<'a> {
    pub ssref: Option<&'a str>,
    pub client_ref: Option<&'a Guid>,
    pub nhs_number: Option<&'a str>,
    pub service_level_ref: Option<&'a Guid>,
    pub service_level: Option<&'a str>,
    pub service_ref: Option<&'a Guid>,
    pub service_name: Option<&'a str>,
    pub date: NaiveDate,
    /// The last day of a row that covers a period (an actuals row's PeriodEnd): a CPLI in force on
    /// any day of it fits (since 2026-12-03: a package starting on a Wednesday matched no row of
    /// its first week, whose PeriodStart is a Monday). `None`: the row is of `date` alone.
    pub until: Option<NaiveDate>,
    /// The heading the date came from, for the reason (`PlannedVisitDate`, `PeriodStart`).
    pub date_field: &'static str,
}

impl<'a> Wanted<'a> {
    /// Whether `c` is in force on the row's day, or on any day of its period.
    fn in_force(&self, c: &Cpli) -> bool {
        c.covers_any(self.date, self.until.unwrap_or(self.date))
    }

    pub fn of_visit(v: &'a Visit) -> Wanted<'a> {
        Wanted {
            ssref: v.ssref.as_deref(),
            client_ref: v.client_ref.as_ref(),
            nhs_number: v.nhs_number.as_deref(),
            service_level_ref: v.service_level_ref.as_ref(),
            service_level: v.service_level.as_deref(),
            service_ref: v.service_ref.as_ref(),
            service_name: v.service_name.as_deref(),
            date: v.planned_date,
            until: None,
            date_field: super::visits::HEADINGS[super::visits::Col::PlannedVisitDate as usize],
        }
    }
}

impl CpliIndex {
    pub fn new(mut cplis: Vec<Cpli>) -> CpliIndex {
        // The earliest-starting package wins where two fit (scenario 2's open package before its
        // temporary extra one); CPLIID breaks ties so the choice never changes between runs.
        cplis.sort_by(|a, b| (a.start_date, &a.cpli_id).cmp(&(b.start_date, &b.cpli_id)));
        let mut by_client: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in cplis.iter().enumerate() {
            let mut keys = vec![client_key(Some(&c.ssref), None, None)];
            if let Some(r) = &c.client_ref {
                keys.push(client_key(None, Some(r), None));
            }
            if let Some(n) = &c.nhs_number {
                keys.push(client_key(None, None, Some(n)));
            }
            keys.sort();
            keys.dedup();
            for k in keys {
                by_client.entry(k).or_default().push(i);
            }
        }
        let entries = cplis.into_iter().map(|c| Entry { level: c.level_key(), service: c.service_key(), cpli: c }).collect();
        CpliIndex { entries, by_client }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn cplis(&self) -> impl Iterator<Item = &Cpli> {
        self.entries.iter().map(|e| &e.cpli)
    }

    /// The CPLIs of `cpli`'s package (`Cpli::same_package`: its variations and a temporary extra
    /// package beside it, itself included), found through its client.
    pub fn package_of<'a>(&'a self, cpli: &'a Cpli) -> impl Iterator<Item = &'a Cpli> + 'a {
        let (level, service) = (cpli.level_key(), cpli.service_key());
        self.client_indices(Some(&cpli.ssref), None, None)
            .into_owned()
            .into_iter()
            .map(|i| &self.entries[i])
            .filter(move |e| e.level == level && e.service == service)
            .map(|e| &e.cpli)
    }

    /// The client's CPLIs, whichever identifiers are given.
    fn for_client(&self, ssref: Option<&str>, client_ref: Option<&Guid>, nhs: Option<&str>) -> Vec<&Entry> {
        self.client_indices(ssref, client_ref, nhs).iter().map(|i| &self.entries[*i]).collect()
    }

    /// Where the client's CPLIs are in `entries`, in order. A row giving only an SSRef written as
    /// the index keeps it (upper case, trimmed) is looked up as it is: no key built, nothing
    /// allocated (issue 11: building keys and lists cost ~900 instructions a visit row).
    fn client_indices(&self, ssref: Option<&str>, client_ref: Option<&Guid>, nhs: Option<&str>) -> Cow<'_, [usize]> {
        if let (Some(s), None, None) = (ssref, client_ref, nhs) {
            let as_key = !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_lowercase());
            let found = if as_key { self.by_client.get(s) } else { self.by_client.get(&client_key(Some(s), None, None)) };
            return found.map_or(Cow::Borrowed(&[][..]), |v| Cow::Borrowed(v.as_slice()));
        }
        let mut idx: Vec<usize> = Vec::new();
        for key in [
            ssref.map(|s| client_key(Some(s), None, None)),
            client_ref.map(|r| client_key(None, Some(r), None)),
            nhs.map(|n| client_key(None, None, Some(n))),
        ]
        .into_iter()
        .flatten()
        {
            idx.extend(self.by_client.get(&key).into_iter().flatten());
        }
        idx.sort_unstable();
        idx.dedup();
        Cow::Owned(idx)
    }

    /// The CPLI a row matches (the one `explain` names), for the rules that read its contract.
    pub fn matched(&self, v: &Wanted<'_>, keys: &VisitKeys) -> Option<&Cpli> {
        self.client_indices(v.ssref, v.client_ref, v.nhs_number)
            .iter()
            .map(|i| &self.entries[*i])
            .find(|e| e.level_fits(v, keys) && e.service_fits(v, keys) && v.in_force(&e.cpli) && e.cpli.authorised)
            .map(|e| &e.cpli)
    }

    /// The service level a ServiceLevelRef names on the organisation's CPLIs.
    pub fn level_named(&self, level_ref: &Guid) -> Option<&str> {
        self.entries.iter().find(|e| e.cpli.service_level_ref.as_ref() == Some(level_ref)).map(|e| e.cpli.service_level.as_str())
    }

    /// The client's SSRef (upper case) on its CPLIs, whichever identifier `client` (a client key)
    /// is: one client whether a row gave its SSRef, ClientRef or NHS number (issue 11).
    pub fn client_ssref(&self, client: &str) -> Option<&str> {
        self.by_client.get(client)?.first().map(|i| self.entries[*i].cpli.ssref.as_str())
    }

    /// A client week's group as the CPLIs name it (issue 11): the week keys a row may have been
    /// filed under (SSRef, ClientRef or NHS number; a level or service by name or GUID) all belong to
    /// one group, named by the SSRef and the CPLI's level and service names. `None` when no CPLI
    /// fits the key.
    pub fn week_group(&self, client: &str, level: &str, service: &str) -> Option<WeekGroup> {
        let e = self
            .by_client
            .get(client)?
            .iter()
            .map(|i| &self.entries[*i])
            .find(|e| key_matches(level, e.cpli.service_level_ref.as_ref(), &e.level) && key_matches(service, e.cpli.service_ref.as_ref(), &e.service))?;
        let c = &e.cpli;
        let mut clients = vec![client_key(Some(&c.ssref), None, None)];
        clients.extend(c.client_ref.as_ref().map(|r| client_key(None, Some(r), None)));
        clients.extend(c.nhs_number.as_deref().map(|n| client_key(None, None, Some(n))));
        let mut levels: Vec<String> = vec![e.level.as_str().to_string()];
        levels.extend(c.service_level_ref.as_ref().map(|g| format!("ref:{g}")));
        let mut services: Vec<String> = vec![e.service.as_str().to_string()];
        services.extend(c.service_ref.as_ref().map(|g| format!("ref:{g}")));
        let mut aliases = Vec::new();
        for cl in &clients {
            for l in &levels {
                for s in &services {
                    aliases.push((Arc::<str>::from(cl.as_str()), Arc::<str>::from(l.as_str()), Arc::<str>::from(s.as_str())));
                }
            }
        }
        Some(WeekGroup {
            client: clients[0].as_str().into(),
            level: levels[0].as_str().into(),
            service: services[0].as_str().into(),
            aliases,
            contract: Contract::of(c),
        })
    }

    pub fn match_visit(&self, v: &Visit) -> MatchStatus {
        self.explain(v, &VisitKeys::of(v)).0
    }

    /// Matched to the first CPLI that fits every condition, or unmatched with the reason, the CPLI
    /// the provider probably meant where one is near, and the column to look at.
    pub fn explain(&self, v: &Visit, keys: &VisitKeys) -> (MatchStatus, Option<&'static str>) {
        self.explain_wanted(&Wanted::of_visit(v), keys)
    }

    /// As `explain`, for any row that names a client, service level, service and date (a visit,
    /// an actuals row).
    pub fn explain_wanted(&self, v: &Wanted<'_>, keys: &VisitKeys) -> (MatchStatus, Option<&'static str>) {
        let cands = self.for_client(v.ssref, v.client_ref, v.nhs_number);
        let level_ok = |e: &Entry| e.level_fits(v, keys);
        let service_ok = |e: &Entry| e.service_fits(v, keys);
        let date = v.date;
        let date_field = v.date_field;
        if let Some(e) = cands.iter().find(|e| level_ok(e) && service_ok(e) && v.in_force(&e.cpli) && e.cpli.authorised) {
            return (MatchStatus::Matched { cpli_id: e.cpli.cpli_id.clone() }, None);
        }
        let client = v.ssref.map(String::from).or_else(|| v.client_ref.map(|g| g.to_string())).or_else(|| v.nhs_number.map(String::from)).unwrap_or_default();
        // The level and the service as the row gave them: by name, else by GUID (since 2026-12-03;
        // a row giving only a ServiceLevelRef was told of "ServiceLevel ''").
        let level = match (v.service_level, v.service_level_ref) {
            (Some(l), _) => format!("{} '{l}'", h::SERVICE_LEVEL),
            (None, Some(g)) => match self.level_named(g) {
                Some(named) => format!("{} {g} ('{named}')", h::SERVICE_LEVEL_REF),
                None => format!("{} {g}", h::SERVICE_LEVEL_REF),
            },
            (None, None) => format!("no {}", h::SERVICE_LEVEL),
        };
        let service = match (v.service_name, v.service_ref) {
            (Some(n), _) => format!("{} '{n}'", h::SERVICE_NAME),
            (None, Some(g)) => format!("{} {g}", h::SERVICE_REF),
            (None, None) => format!("no {}", h::SERVICE_NAME),
        };
        let (reason, field) = if cands.is_empty() {
            // The column the row named the client in (a row may give only its NHS number).
            let named_by = if v.ssref.is_some() { h::SS_REF } else if v.client_ref.is_some() { h::CLIENT_REF } else { h::NHS_NUMBER };
            (
                format!("no care package (CPLI) for client {client} with this organisation: the package may not be set up yet; the row will match when it is"),
                Some(named_by),
            )
        } else if let Some(e) = cands.iter().find(|e| level_ok(e) && service_ok(e) && v.in_force(&e.cpli)) {
            (format!("CPLI {} for client {client} is not authorised yet", e.cpli.cpli_id), None)
        } else if let Some(c) = nearest_by_date(cands.iter().filter(|e| level_ok(e) && service_ok(e)).map(|e| &e.cpli), date) {
            let reason = if date < c.start_date {
                format!(
                    "{date_field} {} is before CPLI {} starts ({}): check the date, or the care package's start date with the council",
                    uk_date(date), c.cpli_id, uk_date(c.start_date)
                )
            } else {
                format!(
                    "{date_field} {} is after CPLI {} ended ({}): check the date, or whether the package was extended",
                    uk_date(date), c.cpli_id, c.end_date.map(uk_date).unwrap_or_default()
                )
            };
            (reason, Some(date_field))
        } else if let Some((r, e)) = v.service_ref.and_then(|r| {
            // The service named right, its GUID not: "did you mean" the same name would not help.
            cands.iter().find(|e| level_ok(e) && keys.service.as_ref().is_none_or(|k| *k == e.service) && e.cpli.service_ref.as_ref() != Some(r)).map(|e| (r, e))
        }) {
            let theirs = e.cpli.service_ref.as_ref().map_or_else(|| "blank".to_string(), |g| g.to_string());
            (
                format!(
                    "{sr} {r} is not the service of client {client}'s CPLI {} at '{}', whose {sr} is {theirs}: correct {sr} or leave it blank",
                    e.cpli.cpli_id, e.cpli.service_name, sr = h::SERVICE_REF
                ),
                Some(h::SERVICE_REF),
            )
        } else if let Some(names) = suggest(cands.iter().filter(|e| level_ok(e)).map(|e| &e.cpli), date, |c| &c.service_name) {
            (
                format!("client {client} has no CPLI with {service} and {level}: did you mean {n} {names}?", n = h::SERVICE_NAME),
                Some(h::SERVICE_NAME),
            )
        } else if let Some(names) = suggest(cands.iter().filter(|e| service_ok(e)).map(|e| &e.cpli), date, |c| &c.service_level) {
            (
                format!("client {client} has no CPLI with {level} at {service}: did you mean {l} {names}?", l = h::SERVICE_LEVEL),
                Some(h::SERVICE_LEVEL),
            )
        } else {
            let c = nearest_by_date(cands.iter().map(|e| &e.cpli), date).expect("candidates are not empty");
            (
                format!(
                    "client {client} has no CPLI with {level} and {service}: did you mean {l} '{}' and {n} '{}' (CPLI {})?",
                    c.service_level, c.service_name, c.cpli_id, l = h::SERVICE_LEVEL, n = h::SERVICE_NAME
                ),
                Some(h::SERVICE_LEVEL),
            )
        };
        (MatchStatus::Unmatched { reason }, field)
    }

    /// The identifiers a row gives that the CPLIs give to another client or service level than the
    /// names beside them (SPEC 2.1: "when given they must agree with the names"), as (heading,
    /// message). The matcher pools the CPLIs each client identifier finds, so an NHS number or a
    /// ClientRef of another client would have the row paid against that client's package.
    pub fn ref_mismatches(&self, ssref: Option<&str>, client_ref: Option<&Guid>, nhs: Option<&str>, level_ref: Option<&Guid>, level: Option<&str>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let (None, Some(g), Some(n)) = (ssref, client_ref, nhs) {
            // No SSRef: the ClientRef and the NHS number must be one client's.
            let client_of = |key: String| self.by_client.get(&key).and_then(|ids| ids.first()).map(|i| self.entries[*i].cpli.ssref.as_str());
            if let (Some(a), Some(b)) = (client_of(client_key(None, Some(g), None)), client_of(client_key(None, None, Some(n)))) {
                if !a.eq_ignore_ascii_case(b) {
                    out.push((h::NHS_NUMBER, format!("{} {n} is client {b}, but {} {g} is client {a}; correct one, or give the client's SSRef", h::NHS_NUMBER, h::CLIENT_REF)));
                }
            }
        }
        if let Some(s) = ssref {
            // Looked up as matching looks them up (`by_client`), not by reading every CPLI a row.
            let given = [
                (h::NHS_NUMBER, nhs.map(|n| (n.to_string(), client_key(None, None, Some(n))))),
                (h::CLIENT_REF, client_ref.map(|g| (g.to_string(), client_key(None, Some(g), None)))),
            ];
            for (heading, (given, key)) in given.into_iter().filter_map(|(heading, g)| g.map(|g| (heading, g))) {
                let first = self.by_client.get(&key).and_then(|ids| ids.first()).map(|i| &self.entries[*i].cpli);
                if let Some(c) = first.filter(|c| !c.ssref.eq_ignore_ascii_case(s)) {
                    out.push((heading, format!("{heading} {given} is client {}, but {} says '{s}'; correct one or leave {heading} blank", c.ssref, h::SS_REF)));
                }
            }
        }
        if let (Some(g), Some(l)) = (level_ref, level) {
            let r = h::SERVICE_LEVEL_REF;
            let named = NameKey::new(l);
            if let Some(c) = self.cplis().find(|c| c.service_level_ref.as_ref() == Some(g)).filter(|c| c.level_key() != named) {
                out.push((r, format!("{r} {g} is '{}', but {} says '{l}'; correct one or leave {r} blank", c.service_level, h::SERVICE_LEVEL)));
            } else {
                // The client's CPLIs of that level give it another GUID: the row would be left
                // unmatched for a GUID the council does not use for it.
                let of_level: Vec<&Entry> = self.for_client(ssref, client_ref, nhs).into_iter().filter(|e| e.level == named).collect();
                let theirs = of_level.iter().find_map(|e| e.cpli.service_level_ref.as_ref().map(|t| (t, &e.cpli.cpli_id)));
                if let Some((t, id)) = theirs.filter(|_| !of_level.iter().any(|e| e.cpli.service_level_ref.as_ref() == Some(g))) {
                    out.push((r, format!("{r} {g} is not the council's GUID for {} '{l}', which is {t} (CPLI {id}); correct {r} or leave it blank", h::SERVICE_LEVEL)));
                }
            }
        }
        out
    }

    /// Hours a week the client's CPLIs in force commission for a service level and service, when every
    /// one covers the whole week and is priced in hours per week; `None` when that cannot be said.
    pub fn weekly_hours(&self, client: &str, level: &str, service: &str, monday: NaiveDate) -> Option<(Decimal, Vec<String>)> {
        let sunday = monday + chrono::Duration::days(6);
        let in_week: Vec<&Cpli> = self
            .by_client
            .get(client)?
            .iter()
            .map(|i| &self.entries[*i])
            .filter(|e| e.cpli.authorised && e.cpli.overlaps(monday, sunday))
            .filter(|e| key_matches(level, e.cpli.service_level_ref.as_ref(), &e.level) && key_matches(service, e.cpli.service_ref.as_ref(), &e.service))
            .map(|e| &e.cpli)
            .collect();
        if in_week.is_empty() || in_week.iter().any(|c| !c.covers_all(monday, sunday)) {
            return None;
        }
        let hours: Option<Vec<Decimal>> = in_week.iter().map(|c| c.quantity.exact_weekly_hours()).collect();
        // Checked (issue 9): a sum too large to compute is not judged, rather than a panic.
        let total = crate::domain::number::sum(hours?)?;
        Some((total, in_week.iter().map(|c| c.cpli_id.clone()).collect()))
    }
}

/// One client's week for a service level and service, however the rows named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeekGroup {
    pub client: Arc<str>,
    pub level: Arc<str>,
    pub service: Arc<str>,
    /// Every (client, level, service) week key that belongs to the group, this one included.
    pub aliases: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
    /// The contract of the CPLI that named the group.
    pub contract: Contract,
}

/// The key a visit's service level is grouped under: its name, else its GUID.
pub fn level_key(v: &Visit, keys: &VisitKeys) -> Arc<str> {
    group_key(keys.level.as_ref(), v.service_level_ref.as_ref())
}

pub fn service_key(v: &Visit, keys: &VisitKeys) -> Arc<str> {
    group_key(keys.service.as_ref(), v.service_ref.as_ref())
}

fn group_key(name: Option<&NameKey>, guid: Option<&Guid>) -> Arc<str> {
    match (name, guid) {
        (Some(n), _) => NameKeys::as_str(n),
        (None, Some(g)) => format!("ref:{g}").into(),
        _ => "".into(),
    }
}

impl Entry {
    /// The row's service level is this CPLI's: a ServiceLevelRef given is the CPLI's, or the CPLI
    /// has none and the row names the level (the extract left the GUID blank: matched by the
    /// name); a name given is the CPLI's.
    fn level_fits(&self, v: &Wanted<'_>, keys: &VisitKeys) -> bool {
        part_fits(v.service_level_ref, keys.level.as_ref(), self.cpli.service_level_ref.as_ref(), &self.level)
    }

    /// As [`Entry::level_fits`], for the service (ServiceRef and ServiceName).
    fn service_fits(&self, v: &Wanted<'_>, keys: &VisitKeys) -> bool {
        part_fits(v.service_ref, keys.service.as_ref(), self.cpli.service_ref.as_ref(), &self.service)
    }
}

fn part_fits(guid: Option<&Guid>, name: Option<&NameKey>, theirs: Option<&Guid>, their_name: &NameKey) -> bool {
    let guid_fits = match (guid, theirs) {
        (None, _) => true,
        (Some(g), Some(t)) => g == t,
        (Some(_), None) => name.is_some(),
    };
    guid_fits && name.is_none_or(|k| k == their_name)
}

/// A week key part (a name, or `ref:GUID`) against a CPLI's GUID and name.
fn key_matches(key: &str, guid: Option<&Guid>, name: &NameKey) -> bool {
    match key.strip_prefix("ref:") {
        Some(g) => guid.is_some_and(|r| r.as_str() == g),
        None => name.as_str() == key,
    }
}

fn nearest_by_date<'c>(cplis: impl Iterator<Item = &'c Cpli>, date: NaiveDate) -> Option<&'c Cpli> {
    cplis.min_by_key(|c| {
        if date < c.start_date {
            (c.start_date - date).num_days()
        } else {
            c.end_date.map_or(0, |e| (date - e).num_days().max(0))
        }
    })
}

/// `'A'`, or `'A' or 'B'`: the distinct names of the near CPLIs, those in force on the date first.
fn suggest<'c>(cplis: impl Iterator<Item = &'c Cpli>, date: NaiveDate, name: impl Fn(&Cpli) -> &String) -> Option<String> {
    let mut cs: Vec<&Cpli> = cplis.collect();
    cs.sort_by_key(|c| !c.covers(date));
    let mut names: Vec<String> = Vec::new();
    for c in cs {
        let n = format!("'{}'", name(c));
        if !names.contains(&n) {
            names.push(n);
        }
    }
    (!names.is_empty()).then(|| names.join(" or "))
}

/// What a CPLI's contract means for its visits (issue 11; guide: "Provider Portal" and "Visit Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// Invoiced to the council: its visits are not sent, nor paid.
    Spot,
    /// Live Well at Home: a delivered visit is DHF.
    Lwah,
    /// The home-support contracts (DAPL, APL, HTLAH): a delivered visit is DHS.
    HomeSupport,
    /// Anything else the extract says: no rule reads it.
    Other,
}

impl Contract {
    pub fn of(c: &Cpli) -> Contract {
        match c.contract.trim().to_ascii_uppercase().as_str() {
            "SPOT" => Contract::Spot,
            "LWAH" => Contract::Lwah,
            "DAPL" | "APL" | "HTLAH" => Contract::HomeSupport,
            _ => Contract::Other,
        }
    }

    /// The delivered visit type the contract takes.
    pub fn delivered_type(self) -> Option<&'static str> {
        match self {
            Contract::Lwah => Some("DHF"),
            Contract::HomeSupport => Some("DHS"),
            Contract::Spot | Contract::Other => None,
        }
    }
}
