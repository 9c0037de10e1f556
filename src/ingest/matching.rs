//! Matching a visit to the CPLI the council commissioned, and saying why when none fits (SPEC 3.3).

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::domain::visit::client_key;
use crate::domain::{uk_date, Cpli, MatchStatus, NameKey, Visit};

/// One organisation's CPLIs, found by any of the client's identifiers.
#[derive(Debug, Default)]
pub struct CpliIndex {
    cplis: Vec<Cpli>,
    by_client: HashMap<String, Vec<usize>>,
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
        CpliIndex { cplis, by_client }
    }

    pub fn is_empty(&self) -> bool {
        self.cplis.is_empty()
    }

    pub fn cplis(&self) -> &[Cpli] {
        &self.cplis
    }

    /// The client's CPLIs, whichever identifiers the visit gives.
    pub fn for_client(&self, ssref: Option<&str>, client_ref: Option<&crate::domain::Guid>, nhs: Option<&str>) -> Vec<&Cpli> {
        let mut idx: Vec<usize> = Vec::new();
        if let Some(s) = ssref {
            idx.extend(self.by_client.get(&client_key(Some(s), None, None)).into_iter().flatten());
        }
        if let Some(r) = client_ref {
            idx.extend(self.by_client.get(&client_key(None, Some(r), None)).into_iter().flatten());
        }
        if let Some(n) = nhs {
            idx.extend(self.by_client.get(&client_key(None, None, Some(n))).into_iter().flatten());
        }
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| &self.cplis[i]).collect()
    }

    fn visit_cplis(&self, v: &Visit) -> Vec<&Cpli> {
        self.for_client(v.ssref.as_deref(), v.client_ref.as_ref(), v.nhs_number.as_deref())
    }

    /// Matched to the first CPLI that fits every condition, or unmatched with the reason and, where
    /// one is near, the CPLI the provider probably meant.
    pub fn match_visit(&self, v: &Visit) -> MatchStatus {
        self.explain(v).0
    }

    /// The match, and for an unmatched visit the column the provider should look at.
    pub fn explain(&self, v: &Visit) -> (MatchStatus, Option<&'static str>) {
        let cands = self.visit_cplis(v);
        let client = v.ssref.clone().or_else(|| v.client_ref.as_ref().map(|g| g.to_string())).or_else(|| v.nhs_number.clone()).unwrap_or_default();
        if cands.is_empty() {
            let reason = format!(
                "no care package (CPLI) for client {client} with this organisation: the package may not be set up yet; the visit will match when it is"
            );
            return (MatchStatus::Unmatched { reason }, Some("SSRef"));
        }
        let level_ok = |c: &Cpli| level_fits(v, c);
        let service_ok = |c: &Cpli| service_fits(v, c);
        if let Some(c) = cands.iter().find(|c| level_ok(c) && service_ok(c) && c.covers(v.planned_date) && c.authorised) {
            return (MatchStatus::Matched { cpli_id: c.cpli_id.clone() }, None);
        }
        let date = v.planned_date;
        let (reason, field) = if let Some(c) = cands.iter().find(|c| level_ok(c) && service_ok(c) && c.covers(date)) {
            (format!("CPLI {} for client {client} is not authorised yet", c.cpli_id), None)
        } else if let Some(c) = nearest_by_date(cands.iter().copied().filter(|c| level_ok(c) && service_ok(c)), date) {
            let reason = if date < c.start_date {
                format!(
                    "PlannedVisitDate {} is before CPLI {} starts ({}): check the date, or the care package's start date with the council",
                    uk_date(date), c.cpli_id, uk_date(c.start_date)
                )
            } else {
                format!(
                    "PlannedVisitDate {} is after CPLI {} ended ({}): check the date, or whether the package was extended",
                    uk_date(date), c.cpli_id, c.end_date.map(uk_date).unwrap_or_default()
                )
            };
            (reason, Some("PlannedVisitDate"))
        } else if let Some(names) = suggest(cands.iter().filter(|c| level_ok(c)), date, |c| &c.service_name) {
            let reason = format!(
                "client {client} has no CPLI with ServiceName '{}' and ServiceLevel '{}': did you mean ServiceName {names}?",
                v.service_name.as_deref().unwrap_or(""), v.service_level.as_deref().unwrap_or(""),
            );
            (reason, Some("ServiceName"))
        } else if let Some(names) = suggest(cands.iter().filter(|c| service_ok(c)), date, |c| &c.service_level) {
            let reason = format!(
                "client {client} has no CPLI with ServiceLevel '{}' at '{}': did you mean ServiceLevel {names}?",
                v.service_level.as_deref().unwrap_or(""), v.service_name.as_deref().unwrap_or(""),
            );
            (reason, Some("ServiceLevel"))
        } else {
            let c = nearest_by_date(cands.iter().copied(), date).expect("candidates are not empty");
            let reason = format!(
                "client {client} has no CPLI with ServiceLevel '{}' and ServiceName '{}': did you mean ServiceLevel '{}' and ServiceName '{}' (CPLI {})?",
                v.service_level.as_deref().unwrap_or(""), v.service_name.as_deref().unwrap_or(""),
                c.service_level, c.service_name, c.cpli_id
            );
            (reason, Some("ServiceLevel"))
        };
        (MatchStatus::Unmatched { reason }, field)
    }

    /// Hours a week the client's CPLIs in force commission for a service level and service, when every
    /// one covers the whole week and is priced in hours per week; `None` when that cannot be said.
    pub fn weekly_hours(&self, client: &str, level: &str, service: &str, monday: NaiveDate) -> Option<(Decimal, Vec<String>)> {
        let sunday = monday + chrono::Duration::days(6);
        let in_week: Vec<&Cpli> = self
            .by_client
            .get(client)?
            .iter()
            .map(|i| &self.cplis[*i])
            .filter(|c| c.authorised && c.overlaps(monday, sunday))
            .filter(|c| level_key_matches(level, c) && service_key_matches(service, c))
            .collect();
        if in_week.is_empty() || in_week.iter().any(|c| !c.covers_all(monday, sunday)) {
            return None;
        }
        let mut total = Decimal::ZERO;
        for c in &in_week {
            total += c.quantity.weekly_hours()?;
        }
        Some((total, in_week.iter().map(|c| c.cpli_id.clone()).collect()))
    }
}

/// The key a visit's service level is grouped under: its name, else its GUID.
pub fn level_key(v: &Visit) -> String {
    match (&v.service_level, &v.service_level_ref) {
        (Some(n), _) => NameKey::new(n).as_str().to_string(),
        (None, Some(g)) => format!("ref:{g}"),
        _ => String::new(),
    }
}

pub fn service_key(v: &Visit) -> String {
    match (&v.service_name, &v.service_ref) {
        (Some(n), _) => NameKey::new(n).as_str().to_string(),
        (None, Some(g)) => format!("ref:{g}"),
        _ => String::new(),
    }
}

fn level_key_matches(key: &str, c: &Cpli) -> bool {
    match key.strip_prefix("ref:") {
        Some(g) => c.service_level_ref.as_ref().is_some_and(|r| r.as_str() == g),
        None => c.level_key().as_str() == key,
    }
}

fn service_key_matches(key: &str, c: &Cpli) -> bool {
    match key.strip_prefix("ref:") {
        Some(g) => c.service_ref.as_ref().is_some_and(|r| r.as_str() == g),
        None => c.service_key().as_str() == key,
    }
}

fn level_fits(v: &Visit, c: &Cpli) -> bool {
    v.service_level_ref.as_ref().is_none_or(|r| c.service_level_ref.as_ref() == Some(r))
        && v.service_level.as_deref().is_none_or(|n| NameKey::new(n) == c.level_key())
}

fn service_fits(v: &Visit, c: &Cpli) -> bool {
    v.service_ref.as_ref().is_none_or(|r| c.service_ref.as_ref() == Some(r))
        && v.service_name.as_deref().is_none_or(|n| NameKey::new(n) == c.service_key())
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
fn suggest<'c>(cplis: impl Iterator<Item = &'c &'c Cpli>, date: NaiveDate, name: impl Fn(&Cpli) -> &String) -> Option<String> {
    let mut cs: Vec<&Cpli> = cplis.copied().collect();
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
