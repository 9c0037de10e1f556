//! Actuals from visits and the commissioned vs actuals report (SPEC 5; guide: "Commissioned Vs Actuals").
//!
//! Per CPLI and Monday-start week: Actual = delivered time of the delivered-based types (DHS, DHF, E),
//! Frust. = planned time of the other paid types (C, U), Comm. = the CPLI's weekly hours; costs are
//! the quantities times the CPLI's unit cost, exact until they are written.
//!
//! Extra-care actuals rows (issue 11) are rows of their own, one per stored actuals row matched to a
//! CPLI: Actual and Frust. are the row's own Actual and Frustrated, Comm. the CPLI's quantity for the
//! row's period, in the CPLI's unit; `source` says which kind a row is.

use std::collections::{HashMap, HashSet};

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;

use super::{hours, money_text, quantity_text, Overflow, VisitFact};
use crate::domain::number::minutes_cost;
use crate::domain::visit::client_key;
use crate::domain::{week_start, Actual, Cpli, MatchStatus, NameKey, VisitTypes};

/// The guide's report options.
#[derive(Debug, Clone, Copy)]
pub struct ActualsOptions {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Only weeks where Actual + Frust. differ from Comm.
    pub differences_only: bool,
    /// Also weeks for which no visit was sent ("Include Weeks Without Actuals").
    pub include_empty_weeks: bool,
}

/// One CPLI's week, exact; `cells` rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualsRow {
    pub ssref: String,
    pub cpli_id: String,
    pub week: NaiveDate,
    /// Paid visits (delivered and frustrated) that week.
    pub visits: u64,
    pub comm_qty: Decimal,
    pub actual_qty: Decimal,
    pub frust_qty: Decimal,
    pub comm_cost: Decimal,
    pub actual_cost: Decimal,
    pub frust_cost: Decimal,
    /// Actual + Frust - Comm (negative: less was paid than commissioned).
    pub diff_qty: Decimal,
    pub diff_cost: Decimal,
    /// The last day the row covers: the week's Sunday, or an actuals row's PeriodEnd.
    pub period_end: NaiveDate,
    pub source: Source,
}

/// Where a report row's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The visits of a Monday-to-Sunday week.
    Visits,
    /// One extra-care actuals row (issue 11).
    Actuals,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Visits => "visits",
            Source::Actuals => "actuals",
        }
    }
}

/// The report's columns (SPEC 6 keys), in order; issue 11 appended `period_end` and `source`.
pub const COLUMNS: [&str; 14] = [
    "ssref", "cpli_id", "week", "visits", "comm_qty", "actual_qty", "frust_qty", "diff_qty", "comm_cost", "actual_cost", "frust_cost", "diff_cost",
    "period_end", "source",
];

impl ActualsRow {
    /// What `--differences-only` leaves out: no difference in quantity or, to the penny, in cost
    /// (since 2026-12-03; a week of the commissioned hours paid at other rates, a mid-week
    /// variation's hours on the cheaper days, was left out).
    fn differs_by_nothing(&self) -> bool {
        self.diff_qty.is_zero() && super::pennies(self.diff_cost).is_zero()
    }

    /// The row as written: quantities to 2 dp without trailing zeros, money to the penny, half-up.
    pub fn cells(&self) -> [String; 14] {
        [
            self.ssref.clone(),
            self.cpli_id.clone(),
            self.week.to_string(),
            self.visits.to_string(),
            quantity_text(self.comm_qty),
            quantity_text(self.actual_qty),
            quantity_text(self.frust_qty),
            quantity_text(self.diff_qty),
            money_text(self.comm_cost),
            money_text(self.actual_cost),
            money_text(self.frust_cost),
            money_text(self.diff_cost),
            self.period_end.to_string(),
            self.source.as_str().to_string(),
        ]
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    visits: u64,
    actual_minutes: i64,
    frust_minutes: i64,
}

/// A client's week for one service level and service, as totalled when its visits arrived (the
/// store's week totals): names as compared (`NameKey`), or `ref:GUID` where the visits gave only GUIDs.
#[derive(Debug, Clone, Copy)]
pub struct ClientWeek<'a> {
    pub client: &'a str,
    pub level: &'a str,
    pub service: &'a str,
    pub monday: NaiveDate,
    /// Visits of any type that week.
    pub visits: i64,
    pub paid_visits: i64,
    pub actual_minutes: i64,
    pub frust_minutes: i64,
}

/// Actuals from visits per CPLI and week, accumulated one visit (`add`) or one client week
/// (`add_client_week`) at a time, so millions of visits are never held.
pub struct WeekActuals<'c> {
    cplis: &'c [Cpli],
    ids: HashMap<&'c str, usize>,
    /// A client, service level and service, in every way a visit may name them -> the authorised
    /// CPLIs they name, earliest-starting first.
    by_names: HashMap<(String, String, String), Vec<usize>>,
    from: NaiveDate,
    to: NaiveDate,
    types: &'c VisitTypes,
    weeks: HashMap<(usize, NaiveDate), Acc>,
    /// Extra-care actuals rows, by CPLI (issue 11).
    periods: Vec<(usize, PeriodActual)>,
    /// The CPLI weeks an actuals row covers: an empty week there is the actuals row's, not a row of its own.
    covered: HashSet<(usize, NaiveDate)>,
    /// CPLI weeks in which a package of the client starts or ends: their visits are counted one by
    /// one as they matched (`add_matched`), not from the week totals, which hold the week's visits
    /// whether or not they matched (a visit before the start is unmatched and unpaid).
    partial: HashSet<(usize, NaiveDate)>,
}

/// What the report reads of one stored actuals row.
#[derive(Debug, Clone, Copy)]
struct PeriodActual {
    start: NaiveDate,
    end: NaiveDate,
    visits: u64,
    actual: Decimal,
    frustrated: Decimal,
}

impl<'c> WeekActuals<'c> {
    pub fn new(cplis: &'c [Cpli], types: &'c VisitTypes, from: NaiveDate, to: NaiveDate) -> Self {
        let ids = cplis.iter().enumerate().map(|(i, c)| (c.cpli_id.as_str(), i)).collect();
        let mut order: Vec<usize> = (0..cplis.len()).filter(|i| cplis[*i].authorised).collect();
        order.sort_by(|a, b| (cplis[*a].start_date, &cplis[*a].cpli_id).cmp(&(cplis[*b].start_date, &cplis[*b].cpli_id)));
        let mut by_names: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        for i in order {
            let c = &cplis[i];
            let clients = [
                Some(client_key(Some(&c.ssref), None, None)),
                c.client_ref.as_ref().map(|r| client_key(None, Some(r), None)),
                c.nhs_number.as_deref().map(|n| client_key(None, None, Some(n))),
            ];
            let levels = [Some(c.level_key().as_str().to_string()), c.service_level_ref.as_ref().map(|g| format!("ref:{g}"))];
            let services = [Some(c.service_key().as_str().to_string()), c.service_ref.as_ref().map(|g| format!("ref:{g}"))];
            for client in clients.iter().flatten() {
                for level in levels.iter().flatten() {
                    for service in services.iter().flatten() {
                        by_names.entry((client.clone(), level.clone(), service.clone())).or_default().push(i);
                    }
                }
            }
        }
        WeekActuals {
            cplis,
            ids,
            by_names,
            from: week_start(from),
            to: week_start(to),
            types,
            weeks: HashMap::new(),
            periods: Vec::new(),
            covered: HashSet::new(),
            partial: HashSet::new(),
        }
    }

    /// Counts an extra-care actuals row (issue 11): matched to an authorised CPLI, its period
    /// starting in a week of the report (as a visit counts in the week of its planned date).
    pub fn add_actual(&mut self, a: &Actual) {
        let monday = week_start(a.period_start);
        let MatchStatus::Matched { cpli_id } = &a.matched else { return };
        let Some(&cpli) = self.ids.get(cpli_id.as_str()).filter(|i| self.cplis[**i].authorised) else { return };
        // The weeks it covers are its, even those of a row begun before the report's first week
        // (not reported itself): no empty visits week beside it.
        let mut week = monday;
        while week <= a.period_end.min(self.to) {
            self.covered.insert((cpli, week));
            week += Duration::days(7);
        }
        if monday < self.from || monday > self.to {
            return;
        }
        let p = PeriodActual { start: a.period_start, end: a.period_end, visits: a.visits, actual: a.actual, frustrated: a.frustrated };
        self.periods.push((cpli, p));
    }

    /// Counts a client week into the CPLI its visits match: of the client's CPLIs for that service
    /// level and service, the earliest-starting one in force that week (as matching chooses).
    pub fn add_client_week(&mut self, w: &ClientWeek<'_>) {
        if w.visits <= 0 || w.monday < self.from || w.monday > self.to {
            return;
        }
        let key = (w.client.to_string(), w.level.to_string(), w.service.to_string());
        let Some(members) = self.by_names.get(&key) else { return };
        let sunday = w.monday + Duration::days(6);
        let Some(&cpli) = members.iter().find(|i| self.cplis[**i].overlaps(w.monday, sunday)) else { return };
        let acc = self.weeks.entry((cpli, w.monday)).or_default();
        // Every day's visits match the first package in force that week only if it covers the
        // whole week; otherwise the week's visits are counted as they matched.
        if !self.cplis[cpli].covers_all(w.monday, sunday) {
            let overlapping = members.iter().filter(|i| self.cplis[**i].overlaps(w.monday, sunday));
            self.partial.extend(overlapping.map(|i| (*i, w.monday)));
            return;
        }
        // A Spot package's visits are sent (the week shows) but none is paid; decided here, where a
        // week meets its CPLI, not in the stored week totals, which are kept whatever the match so
        // that a later CPLI load re-attributes them without rewriting them.
        if self.cplis[cpli].is_spot() {
            return;
        }
        acc.visits += w.paid_visits.max(0) as u64;
        acc.actual_minutes += w.actual_minutes;
        acc.frust_minutes += w.frust_minutes;
    }

    /// Whether some week's visits must be counted one by one ([`WeekActuals::add_matched`]).
    pub fn needs_visits(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Counts a matched visit of a week in which a package starts or ends (see `partial`); any other
    /// visit was counted with its week's totals.
    pub fn add_matched(&mut self, v: &VisitFact) {
        let Some(&cpli) = self.ids.get(v.cpli_id.as_str()) else { return };
        if self.partial.contains(&(cpli, week_start(v.planned_date))) {
            self.add(v);
        }
    }

    /// Counts one visit into its CPLI's week (the week of its planned date).
    pub fn add(&mut self, v: &VisitFact) {
        let monday = week_start(v.planned_date);
        if monday < self.from || monday > self.to {
            return;
        }
        let Some(&cpli) = self.ids.get(v.cpli_id.as_str()) else { return };
        let acc = self.weeks.entry((cpli, monday)).or_default();
        if self.cplis[cpli].is_spot() {
            return;
        }
        // A week with any visit, even an unpaid one (H, C24), has actuals: the provider sent it.
        let Some(t) = self.types.get(&v.visit_type).filter(|t| t.provider_paid) else { return };
        acc.visits += 1;
        if t.delivered_based {
            acc.actual_minutes += v.delivered_minutes.unwrap_or(0);
        } else {
            acc.frust_minutes += v.planned_minutes;
        }
    }
}

/// The guide's report over visits already counted into `actuals`. A client's CPLIs for the same
/// service level and service (a temporary extra package beside the open one) make one row a week:
/// Comm. is their sum, and the row carries the earliest-starting CPLI, the one visits match.
pub fn commissioned_vs_actuals(cplis: &[Cpli], actuals: &WeekActuals<'_>, opts: &ActualsOptions) -> Result<Vec<ActualsRow>, Overflow> {
    let mut groups: HashMap<(String, NameKey, NameKey), Vec<usize>> = HashMap::new();
    for (i, c) in cplis.iter().enumerate().filter(|(_, c)| c.authorised) {
        groups.entry(c.package_key()).or_default().push(i);
    }
    let mut rows = Vec::new();
    for members in groups.values_mut() {
        members.sort_by(|a, b| (cplis[*a].start_date, &cplis[*a].cpli_id).cmp(&(cplis[*b].start_date, &cplis[*b].cpli_id)));
        let mut monday = week_start(opts.from);
        while monday <= opts.to {
            let sunday = monday + Duration::days(6);
            if let Some(row) = group_week(cplis, members, actuals, monday, sunday, opts)? {
                rows.push(row);
            }
            monday += Duration::days(7);
        }
    }
    for (i, p) in &actuals.periods {
        let c = &cplis[*i];
        let members = groups.get(&c.package_key()).map(Vec::as_slice).unwrap_or_default();
        if let Some(row) = period_row(cplis, *i, members, p, opts)? {
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| (&a.ssref, &a.cpli_id, a.week, a.source).cmp(&(&b.ssref, &b.cpli_id, b.week, b.source)));
    Ok(rows)
}

/// An extra-care actuals row's line: Comm. is what the client's CPLIs of the level and service
/// (`members`: a temporary extra package beside the open one) commission for the days of the
/// period each is in force, pro rata to its frequency, in the row's CPLI's unit and each at its own
/// unit cost (a CPLI of another frequency or unit adds nothing); Actual and Frust. are the row's own, at its
/// CPLI's (`i`) cost, so Actual cost + Frust. cost is the row's stored total cost. Extra is not in
/// it, as it is not in the total cost (issue 5's choice).
fn period_row(cplis: &[Cpli], i: usize, members: &[usize], p: &PeriodActual, opts: &ActualsOptions) -> Result<Option<ActualsRow>, Overflow> {
    let c = &cplis[i];
    let over = || Overflow::of(c);
    // Quantities of another unit (a weekly charge beside hours) cannot be added to the row's.
    let package = members.iter().chain(std::iter::once(&i).filter(|_| !members.contains(&i))).map(|m| &cplis[*m]);
    let (comm_qty, comm_cost) = crate::domain::cpli::commissioned(package, p.start, p.end, &c.quantity).map_err(|m| m.map_or_else(over, Overflow::of))?;
    // Paid at the rate the package commissions in the period, as the row's stored cost
    // (`cpli::period_cost`: a variation part-way through it paid for its share at its own cost).
    let cost = |q: Decimal| crate::domain::cpli::period_cost(q, c, members.iter().map(|m| &cplis[*m]), p.start, p.end).ok_or_else(over);
    let (actual_cost, frust_cost) = (cost(p.actual)?, cost(p.frustrated)?);
    let diff = |a: Decimal, f: Decimal, m: Decimal| a.checked_add(f).and_then(|x| x.checked_sub(m)).ok_or_else(over);
    let diff_qty = diff(p.actual, p.frustrated, comm_qty)?;
    let row = ActualsRow {
        ssref: c.ssref.clone(),
        cpli_id: c.cpli_id.clone(),
        week: week_start(p.start),
        visits: p.visits,
        comm_qty,
        actual_qty: p.actual,
        frust_qty: p.frustrated,
        comm_cost,
        actual_cost,
        frust_cost,
        diff_qty,
        diff_cost: diff(actual_cost, frust_cost, comm_cost)?,
        period_end: p.end,
        source: Source::Actuals,
    };
    Ok(Some(row).filter(|r| !(opts.differences_only && r.differs_by_nothing())))
}

/// One group's week; every sum and product is checked (issue 9), an overflow naming its CPLI.
fn group_week(
    cplis: &[Cpli],
    members: &[usize],
    actuals: &WeekActuals<'_>,
    monday: NaiveDate,
    sunday: NaiveDate,
    opts: &ActualsOptions,
) -> Result<Option<ActualsRow>, Overflow> {
    let in_force: Vec<usize> = members.iter().copied().filter(|i| cplis[*i].overlaps(monday, sunday)).collect();
    let sent: Vec<(usize, Acc)> = members.iter().filter_map(|i| actuals.weeks.get(&(*i, monday)).map(|a| (*i, *a))).collect();
    if sent.is_empty() && (in_force.is_empty() || !opts.include_empty_weeks) {
        return Ok(None);
    }
    // Issue 11: a week an extra-care actuals row covers is that row's; an empty visits row beside it
    // would count its Comm. twice.
    if sent.is_empty() && members.iter().any(|i| actuals.covered.contains(&(*i, monday))) {
        return Ok(None);
    }
    let Some(primary) = in_force.first().or_else(|| sent.first().map(|(i, _)| i)).copied() else { return Ok(None) };
    let mut row = ActualsRow {
        ssref: cplis[primary].ssref.clone(),
        cpli_id: cplis[primary].cpli_id.clone(),
        week: monday,
        visits: 0,
        comm_qty: Decimal::ZERO,
        actual_qty: Decimal::ZERO,
        frust_qty: Decimal::ZERO,
        comm_cost: Decimal::ZERO,
        actual_cost: Decimal::ZERO,
        frust_cost: Decimal::ZERO,
        diff_qty: Decimal::ZERO,
        diff_cost: Decimal::ZERO,
        period_end: sunday,
        source: Source::Visits,
    };
    let add = |total: &mut Decimal, x: Option<Decimal>, i: usize| -> Result<(), Overflow> {
        *total = x.and_then(|x| total.checked_add(x)).ok_or_else(|| Overflow::of(&cplis[i]))?;
        Ok(())
    };
    for i in in_force {
        // Pro rata to the days of the week the CPLI is in force: a package varied mid-week (one CPLI
        // ending Tuesday, the next starting Wednesday) is commissioned once, not twice.
        let days = monday.iter_days().take(7).filter(|d| cplis[i].covers(*d)).count() as i64;
        let weekly = cplis[i].quantity.weekly_hours().unwrap_or(Decimal::ZERO);
        let qty = if days == 7 { Some(weekly) } else { weekly.checked_mul(Decimal::from(days)).and_then(|q| q.checked_div(Decimal::from(7))) };
        let cost = if days == 7 {
            weekly.checked_mul(cplis[i].unit_cost)
        } else {
            weekly.checked_mul(Decimal::from(days)).and_then(|q| q.checked_mul(cplis[i].unit_cost)).and_then(|c| c.checked_div(Decimal::from(7)))
        };
        add(&mut row.comm_qty, qty, i)?;
        add(&mut row.comm_cost, cost, i)?;
    }
    // A temporary extra package beside the open one: the week's visits (all matched to the
    // earliest) are paid at the package's rate, as `council_tail` pays each of them.
    let shared = crate::domain::cpli::shared_week(&cplis[primary], members.iter().map(|i| &cplis[*i]), monday);
    for (i, acc) in sent {
        row.visits += acc.visits;
        add(&mut row.actual_qty, Some(hours(acc.actual_minutes)), i)?;
        add(&mut row.frust_qty, Some(hours(acc.frust_minutes)), i)?;
        // Minutes times cost before dividing keeps the figure exact (183 min x 23.226 / 60 = 70.8393).
        let (cost, per) = shared.map_or((cplis[i].unit_cost, Decimal::ONE), |(qty, cost)| (cost, qty));
        let cost = |minutes: i64| minutes_cost(minutes, cost, per);
        add(&mut row.actual_cost, cost(acc.actual_minutes), i)?;
        add(&mut row.frust_cost, cost(acc.frust_minutes), i)?;
    }
    let diff = |a: Decimal, f: Decimal, c: Decimal| a.checked_add(f).and_then(|x| x.checked_sub(c)).ok_or_else(|| Overflow::of(&cplis[primary]));
    row.diff_qty = diff(row.actual_qty, row.frust_qty, row.comm_qty)?;
    row.diff_cost = diff(row.actual_cost, row.frust_cost, row.comm_cost)?;
    if opts.differences_only && row.differs_by_nothing() {
        return Ok(None);
    }
    Ok(Some(row))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::Quantity;

    pub fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    pub fn cpli(id: &str, ssref: &str, contract: &str, start: NaiveDate, end: Option<NaiveDate>, qty: &str, cost: &str) -> Cpli {
        Cpli {
            cpli_id: id.into(),
            ssref: ssref.into(),
            client_name: "Mr Principal Skinner".into(),
            nhs_number: None,
            client_ref: None,
            organisation_ref: None,
            organisation_name: "Pearl Carers Ltd".into(),
            service_ref: None,
            service_name: "Pearl Carers - DAPL Oxford".into(),
            contract: contract.into(),
            service_level_ref: None,
            service_level: "Personal Care".into(),
            start_date: start,
            end_date: end,
            quantity: Quantity { amount: qty.parse().unwrap(), unit: "Hr".into(), frequency: "Weekly".into() },
            unit_cost: cost.parse().unwrap(),
            authorised: true,
        }
    }

    pub fn visit(cpli: &str, date: NaiveDate, start: u32, code: &str, planned: i64, delivered: Option<i64>) -> VisitFact {
        VisitFact {
            cpli_id: cpli.into(),
            planned_date: date,
            planned_start: start,
            visit_type: code.into(),
            planned_minutes: planned,
            delivered_minutes: delivered,
        }
    }

    fn opts(from: NaiveDate, to: NaiveDate) -> ActualsOptions {
        ActualsOptions { from, to, differences_only: false, include_empty_weeks: false }
    }

    fn report(cplis: &[Cpli], visits: &[VisitFact], o: ActualsOptions) -> Vec<ActualsRow> {
        let types = VisitTypes::default();
        let mut acts = WeekActuals::new(cplis, &types, o.from, o.to);
        for v in visits {
            acts.add(v);
        }
        commissioned_vs_actuals(cplis, &acts, &o).unwrap()
    }

    /// The guide's example week: Skinner, 5 hours at 23.226, 3.05 hours delivered, 1 hour frustrated.
    fn guide_week() -> (Vec<Cpli>, Vec<VisitFact>) {
        let cplis = vec![cpli("156040", "A332295", "DAPL", d(2022, 10, 3), None, "5", "23.226")];
        let visits = vec![
            visit("156040", d(2022, 10, 3), 540, "DHS", 90, Some(90)),
            visit("156040", d(2022, 10, 5), 540, "E", 60, Some(93)),
            visit("156040", d(2022, 10, 6), 540, "C", 60, None),
            visit("156040", d(2022, 10, 7), 540, "H", 60, None),
        ];
        (cplis, visits)
    }

    #[test]
    fn the_guides_week_gives_comm_5_actual_3_05_frust_1_diff_minus_0_95() {
        let (cplis, visits) = guide_week();
        let rows = report(&cplis, &visits, opts(d(2022, 10, 3), d(2022, 10, 9)));
        assert_eq!(rows.len(), 1);
        let cells = rows[0].cells();
        assert_eq!(cells, ["A332295", "156040", "2022-10-03", "3", "5", "3.05", "1", "-0.95", "116.13", "70.84", "23.23", "-22.06", "2022-10-09", "visits"]);
    }

    #[test]
    fn delivered_based_types_are_paid_on_delivered_time() {
        let (cplis, _) = guide_week();
        let visits = [visit("156040", d(2022, 10, 3), 540, "DHF", 30, Some(45)), visit("156040", d(2022, 10, 4), 540, "E", 30, Some(90))];
        let row = &report(&cplis, &visits, opts(d(2022, 10, 3), d(2022, 10, 9)))[0];
        assert_eq!((row.actual_qty, row.frust_qty), (hours(135), Decimal::ZERO));
    }

    #[test]
    fn frustrated_hours_count_c_and_u_on_planned_time() {
        let (cplis, _) = guide_week();
        let visits = [
            visit("156040", d(2022, 10, 3), 540, "C", 30, None),
            visit("156040", d(2022, 10, 4), 540, "U", 45, None),
            visit("156040", d(2022, 10, 5), 540, "C24", 60, None),
            visit("156040", d(2022, 10, 6), 540, "H", 60, None),
        ];
        let row = &report(&cplis, &visits, opts(d(2022, 10, 3), d(2022, 10, 9)))[0];
        assert_eq!((row.actual_qty, row.frust_qty, row.visits), (Decimal::ZERO, hours(75), 2));
    }

    #[test]
    fn weeks_start_on_monday_and_a_sunday_visit_belongs_to_the_week_before() {
        let (cplis, _) = guide_week();
        let visits = [visit("156040", d(2022, 10, 9), 540, "DHS", 60, Some(60)), visit("156040", d(2022, 10, 10), 540, "DHS", 60, Some(60))];
        let rows = report(&cplis, &visits, opts(d(2022, 10, 3), d(2022, 10, 16)));
        assert_eq!(rows.iter().map(|r| r.week).collect::<Vec<_>>(), [d(2022, 10, 3), d(2022, 10, 10)]);
    }

    #[test]
    fn a_temporary_extra_package_adds_its_hours_to_the_weeks_commissioned_hours() {
        let mut cplis = guide_week().0;
        cplis.push(cpli("156090", "A332295", "DAPL", d(2022, 10, 10), Some(d(2022, 10, 23)), "3", "23.226"));
        let visits = [visit("156040", d(2022, 10, 4), 540, "DHS", 60, Some(60)), visit("156040", d(2022, 10, 11), 540, "DHS", 60, Some(60))];
        let rows = report(&cplis, &visits, opts(d(2022, 10, 3), d(2022, 10, 16)));
        let comm: Vec<_> = rows.iter().map(|r| (r.cpli_id.as_str(), r.week, quantity_text(r.comm_qty))).collect();
        assert_eq!(comm, [("156040", d(2022, 10, 3), "5".to_string()), ("156040", d(2022, 10, 10), "8".to_string())]);
        assert_eq!(money_text(rows[1].comm_cost), "185.81"); // 8 x 23.226 = 185.808
    }

    /// The reviewer's week: 5 h at £23 open, 3.5 h at £25 for one week; 8.5 h delivered. Every visit
    /// matches the open CPLI, and is paid at the package's rate: £202.50, what was commissioned.
    #[test]
    fn a_week_shared_with_a_temporary_package_is_paid_at_the_packages_rate() {
        let cplis = [
            cpli("900005", "A100004", "LWAH", d(2022, 10, 3), None, "5", "23"),
            cpli("900006", "A100004", "LWAH", d(2022, 10, 10), Some(d(2022, 10, 16)), "3.5", "25"),
        ];
        let mut visits: Vec<VisitFact> = (10..=16).map(|day| visit("900005", d(2022, 10, day), 540, "DHS", 60, Some(60))).collect();
        visits.push(visit("900005", d(2022, 10, 12), 840, "DHS", 90, Some(90)));
        visits.push(visit("900005", d(2022, 10, 4), 540, "DHS", 60, Some(60)));
        let rows = report(&cplis, &visits, opts(d(2022, 10, 3), d(2022, 10, 16)));
        let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells()[4..12].to_vec()).collect();
        assert_eq!(cells[0], ["5", "1", "0", "-4", "115.00", "23.00", "0.00", "-92.00"], "the week before: the open CPLI's own cost");
        assert_eq!(cells[1], ["8.5", "8.5", "0", "0", "202.50", "202.50", "0.00", "0.00"]);
        let mut o = opts(d(2022, 10, 3), d(2022, 10, 16));
        o.differences_only = true;
        assert_eq!(report(&cplis, &visits, o).iter().map(|r| r.week).collect::<Vec<_>>(), [d(2022, 10, 3)]);
    }

    /// Varied on Wednesday from £20 to £30 an hour, 7 h a week either side (2 h then 5 h of the
    /// week, £190): 7 h delivered, all on the cheaper days (£140), is the commissioned quantity at
    /// a lower cost, a difference.
    #[test]
    fn differences_only_keeps_a_week_that_differs_in_cost_alone() {
        let cplis = [
            cpli("900010", "A100005", "LWAH", d(2022, 10, 3), Some(d(2022, 10, 11)), "7", "20"),
            cpli("900011", "A100005", "LWAH", d(2022, 10, 12), None, "7", "30"),
        ];
        let visits: Vec<VisitFact> = [(10, 240), (11, 180)].map(|(day, m)| visit("900010", d(2022, 10, day), 540, "DHS", m, Some(m))).to_vec();
        let mut o = opts(d(2022, 10, 10), d(2022, 10, 16));
        o.differences_only = true;
        let rows = report(&cplis, &visits, o);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].cells()[4..12].to_vec(), ["7", "7", "0", "0", "190.00", "140.00", "0.00", "-50.00"]);
    }

    #[test]
    fn weeks_without_visits_are_left_out_unless_asked_for() {
        let (cplis, visits) = guide_week();
        let mut o = opts(d(2022, 10, 3), d(2022, 10, 23));
        assert_eq!(report(&cplis, &visits, o).len(), 1);
        o.include_empty_weeks = true;
        let rows = report(&cplis, &visits, o);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].cells()[4..12].to_vec(), ["5", "0", "0", "-5", "116.13", "0.00", "0.00", "-116.13"]);
    }

    #[test]
    fn differences_only_leaves_out_weeks_paid_as_commissioned() {
        let (cplis, _) = guide_week();
        let visits = [
            visit("156040", d(2022, 10, 3), 540, "DHS", 300, Some(300)),
            visit("156040", d(2022, 10, 10), 540, "DHS", 300, Some(240)),
        ];
        let mut o = opts(d(2022, 10, 3), d(2022, 10, 16));
        o.differences_only = true;
        let rows = report(&cplis, &visits, o);
        assert_eq!(rows.iter().map(|r| r.week).collect::<Vec<_>>(), [d(2022, 10, 10)]);
    }

    #[test]
    fn a_client_weeks_totals_give_the_same_report_as_its_visits() {
        let (cplis, visits) = guide_week();
        let o = opts(d(2022, 10, 3), d(2022, 10, 9));
        let types = VisitTypes::default();
        let mut acts = WeekActuals::new(&cplis, &types, o.from, o.to);
        let week = ClientWeek {
            client: "A332295",
            level: "personal care",
            service: "pearl carers - dapl oxford",
            monday: d(2022, 10, 3),
            visits: 4,
            paid_visits: 3,
            actual_minutes: 183,
            frust_minutes: 60,
        };
        acts.add_client_week(&week);
        assert_eq!(commissioned_vs_actuals(&cplis, &acts, &o).unwrap(), report(&cplis, &visits, o));
    }

    #[test]
    fn a_spot_packages_visits_are_invoiced_so_none_is_paid_from_visits() {
        // Issue 11: INVOICE_CASE visits are stored but not paid.
        let mut cplis = guide_week().0;
        cplis[0].contract = "Spot".into();
        let o = opts(d(2022, 10, 3), d(2022, 10, 9));
        let types = VisitTypes::default();
        let mut acts = WeekActuals::new(&cplis, &types, o.from, o.to);
        let week = ClientWeek {
            client: "A332295",
            level: "personal care",
            service: "pearl carers - dapl oxford",
            monday: d(2022, 10, 3),
            visits: 4,
            paid_visits: 3,
            actual_minutes: 183,
            frust_minutes: 60,
        };
        acts.add_client_week(&week);
        let rows = commissioned_vs_actuals(&cplis, &acts, &o).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cells()[3..8].to_vec(), ["0", "5", "0", "0", "-5"]);
        let (_, visits) = guide_week();
        assert_eq!(report(&cplis, &visits, o)[0].cells()[3..8].to_vec(), ["0", "5", "0", "0", "-5"]);
    }

    #[test]
    fn a_client_week_counts_into_the_earliest_package_in_force_and_comm_adds_the_temporary_one() {
        let mut cplis = guide_week().0;
        cplis.push(cpli("156090", "A332295", "DAPL", d(2022, 10, 10), Some(d(2022, 10, 16)), "3", "23.226"));
        let o = opts(d(2022, 10, 10), d(2022, 10, 16));
        let types = VisitTypes::default();
        let mut acts = WeekActuals::new(&cplis, &types, o.from, o.to);
        let week = ClientWeek {
            client: "A332295",
            level: "personal care",
            service: "pearl carers - dapl oxford",
            monday: d(2022, 10, 10),
            visits: 8,
            paid_visits: 8,
            actual_minutes: 480,
            frust_minutes: 0,
        };
        acts.add_client_week(&week);
        let rows = commissioned_vs_actuals(&cplis, &acts, &o).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cells()[1..8].to_vec(), ["156040", "2022-10-10", "8", "8", "8", "0", "0"]);
    }

    #[test]
    fn in_a_week_where_a_package_starts_or_ends_only_its_matched_visits_are_paid() {
        // 156040 (5 h) ends on Wednesday 12/10; 156091 (2 h at 30) starts on Friday 14/10. An hour
        // was delivered every day; Thursday's visit matched no package.
        let mut cplis = guide_week().0;
        cplis[0].end_date = Some(d(2022, 10, 12));
        cplis.push(cpli("156091", "A332295", "DAPL", d(2022, 10, 14), None, "2", "30"));
        let o = opts(d(2022, 10, 10), d(2022, 10, 16));
        let types = VisitTypes::default();
        let mut acts = WeekActuals::new(&cplis, &types, o.from, o.to);
        acts.add_client_week(&ClientWeek {
            client: "A332295",
            level: "personal care",
            service: "pearl carers - dapl oxford",
            monday: d(2022, 10, 10),
            visits: 7,
            paid_visits: 7,
            actual_minutes: 420,
            frust_minutes: 0,
        });
        assert!(acts.needs_visits());
        for day in [10, 11, 12, 14, 15, 16] {
            let id = if day <= 12 { "156040" } else { "156091" };
            acts.add_matched(&visit(id, d(2022, 10, day), 9 * 60, "DHS", 60, Some(60)));
        }
        let rows = commissioned_vs_actuals(&cplis, &acts, &o).unwrap();
        let got: Vec<Vec<String>> = rows.iter().map(|r| r.cells()[1..6].to_vec()).collect();
        // One row for the week (under the earliest package, Comm. adding both, each pro rata to its
        // days in force: 5 h x 3/7 + 2 h x 3/7 = 3 h): 6 visits, 6 hours.
        assert_eq!(got, [["156040", "2022-10-10", "6", "3", "6"]]);
        // A week the first package covers whole is still counted from its totals.
        let mut whole = WeekActuals::new(&cplis, &types, d(2022, 10, 3), d(2022, 10, 9));
        let client = "A332295";
        whole.add_client_week(&ClientWeek { client, level: "personal care", service: "pearl carers - dapl oxford", monday: d(2022, 10, 3), visits: 4, paid_visits: 3, actual_minutes: 183, frust_minutes: 60 });
        assert!(!whole.needs_visits());
    }

    #[test]
    fn a_package_varied_mid_week_is_commissioned_pro_rata_to_each_cplis_days_not_twice() {
        // 5 h at 20 to Tuesday 01/11, then 7 h at 22 from Wednesday 02/11: 5 x 2/7 + 7 x 5/7 hours.
        let cplis = vec![cpli("8001", "A332295", "DAPL", d(2022, 10, 3), Some(d(2022, 11, 1)), "5", "20"), cpli("8002", "A332295", "DAPL", d(2022, 11, 2), None, "7", "22")];
        let o = ActualsOptions { include_empty_weeks: true, ..opts(d(2022, 10, 31), d(2022, 11, 6)) };
        let types = VisitTypes::default();
        let acts = WeekActuals::new(&cplis, &types, o.from, o.to);
        let rows = commissioned_vs_actuals(&cplis, &acts, &o).unwrap();
        let cells = rows[0].cells();
        // Rounded once, at the end: 6.428571... h and 28.571428... + 110 = 138.571428... pounds.
        assert_eq!((cells[4].as_str(), cells[8].as_str()), ("6.43", "138.57"), "{cells:?}");
    }

    #[test]
    fn a_cpli_too_large_to_cost_fails_the_report_naming_it_instead_of_panicking() {
        let max = Decimal::MAX.to_string();
        let cplis = vec![cpli("999", "A332295", "DAPL", d(2022, 10, 3), None, &max, &max)];
        let visits = [visit("999", d(2022, 10, 3), 540, "DHS", 60, Some(60))];
        let types = VisitTypes::default();
        let o = opts(d(2022, 10, 3), d(2022, 10, 9));
        let mut acts = WeekActuals::new(&cplis, &types, o.from, o.to);
        acts.add(&visits[0]);
        let err = commissioned_vs_actuals(&cplis, &acts, &o).unwrap_err();
        assert_eq!(err.cpli_id, "999");
        assert!(err.to_string().contains("CPLI 999"), "{err}");
    }

    /// Mrs Skinner's extra care (examples/cplis.csv's CPLI 156050: 10 Hr Weekly at 21.50).
    fn extra_care() -> Cpli {
        let mut c = cpli("156050", "A401234", "Spot", d(2022, 10, 3), None, "10", "21.50");
        c.service_level = "Extra Care Housing - Planned Care".into();
        c
    }

    fn actual(cpli: Option<&str>, start: NaiveDate, end: NaiveDate, actual: &str, frustrated: &str, visits: u64) -> Actual {
        Actual {
            ssref: "A401234".into(),
            service_level: "Extra Care Housing - Planned Care".into(),
            service_name: "Pearl Carers - DAPL Oxford".into(),
            period_start: start,
            period_end: end,
            planned: "10".parse().unwrap(),
            actual: actual.parse().unwrap(),
            frustrated: frustrated.parse().unwrap(),
            missed: Decimal::ZERO,
            extra: Decimal::ZERO,
            visits,
            comments: None,
            client_ref: None,
            nhs_number: None,
            service_level_ref: None,
            service_ref: None,
            matched: match cpli {
                Some(id) => MatchStatus::Matched { cpli_id: id.into() },
                None => MatchStatus::Unmatched { reason: "no CPLI".into() },
            },
            total_cost: None,
        }
    }

    fn actuals_report(cplis: &[Cpli], rows: &[Actual], o: ActualsOptions) -> Vec<ActualsRow> {
        let types = VisitTypes::default();
        let mut acts = WeekActuals::new(cplis, &types, o.from, o.to);
        for a in rows {
            acts.add_actual(a);
        }
        commissioned_vs_actuals(cplis, &acts, &o).unwrap()
    }

    #[test]
    fn an_extra_care_actuals_row_is_a_row_of_its_own_with_comm_for_its_period() {
        let rows = actuals_report(
            &[extra_care()],
            &[actual(Some("156050"), d(2022, 10, 3), d(2022, 10, 9), "9.5", "0.5", 14), actual(Some("156050"), d(2022, 10, 17), d(2022, 11, 13), "38", "0", 56)],
            opts(d(2022, 10, 3), d(2022, 10, 23)),
        );
        let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells().to_vec()).collect();
        assert_eq!(cells, [
            ["A401234", "156050", "2022-10-03", "14", "10", "9.5", "0.5", "0", "215.00", "204.25", "10.75", "0.00", "2022-10-09", "actuals"],
            ["A401234", "156050", "2022-10-17", "56", "40", "38", "0", "-2", "860.00", "817.00", "0.00", "-43.00", "2022-11-13", "actuals"],
        ]);
    }

    #[test]
    fn an_unmatched_actuals_row_or_one_starting_outside_the_range_is_not_reported() {
        let rows = actuals_report(
            &[extra_care()],
            &[actual(None, d(2022, 10, 3), d(2022, 10, 9), "10", "0", 14), actual(Some("156050"), d(2022, 10, 10), d(2022, 10, 16), "10", "0", 14)],
            opts(d(2022, 10, 3), d(2022, 10, 9)),
        );
        assert!(rows.is_empty(), "{rows:?}");
    }

    #[test]
    fn a_week_an_actuals_row_covers_is_not_also_an_empty_visits_week() {
        let mut o = opts(d(2022, 10, 3), d(2022, 10, 16));
        o.include_empty_weeks = true;
        let rows = actuals_report(&[extra_care()], &[actual(Some("156050"), d(2022, 10, 3), d(2022, 10, 9), "10", "0", 14)], o);
        let got: Vec<(NaiveDate, Source)> = rows.iter().map(|r| (r.week, r.source)).collect();
        assert_eq!(got, [(d(2022, 10, 3), Source::Actuals), (d(2022, 10, 10), Source::Visits)]);
    }

    #[test]
    fn an_actuals_rows_comm_is_pro_rata_to_the_days_its_cpli_is_in_force() {
        let mut c = extra_care();
        c.end_date = Some(d(2022, 10, 16));
        let rows = actuals_report(&[c], &[actual(Some("156050"), d(2022, 10, 3), d(2022, 10, 30), "20", "0", 28)], opts(d(2022, 10, 3), d(2022, 10, 30)));
        let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells().to_vec()).collect();
        // In force 14 of the 28 days: 10 h a week for two weeks, 20 h, £430.00; nothing short.
        assert_eq!(cells, [["A401234", "156050", "2022-10-03", "28", "20", "20", "0", "0", "430.00", "430.00", "0.00", "0.00", "2022-10-30", "actuals"]]);
    }

    #[test]
    fn an_actuals_rows_comm_and_cost_add_a_temporary_extra_package_at_its_own_cost() {
        let mut extra = extra_care();
        (extra.cpli_id, extra.start_date, extra.end_date, extra.quantity.amount, extra.unit_cost) = ("156051".into(), d(2022, 10, 10), Some(d(2022, 10, 23)), Decimal::from(5), "22".parse().unwrap());
        let rows = actuals_report(&[extra_care(), extra], &[actual(Some("156050"), d(2022, 10, 10), d(2022, 10, 16), "15", "0", 14)], opts(d(2022, 10, 10), d(2022, 10, 16)));
        // Comm. 10 + 5 = 15 h at £215.00 + £110.00; the row's 15 h paid as commissioned, each
        // package's share at its own cost (it was 15 h at the first CPLI's £21.50, £322.50).
        let got: Vec<(String, String, String, String)> = rows.iter().map(|r| { let c = r.cells(); (c[4].clone(), c[8].clone(), c[9].clone(), c[11].clone()) }).collect();
        assert_eq!(got, [("15".to_string(), "325.00".to_string(), "325.00".to_string(), "0.00".to_string())]);
    }

    #[test]
    fn an_actuals_rows_comm_leaves_out_a_cpli_of_another_unit() {
        let mut weekly_charge = extra_care();
        (weekly_charge.cpli_id, weekly_charge.quantity.amount, weekly_charge.quantity.unit, weekly_charge.unit_cost) = ("156051".into(), Decimal::ONE, "Wk".into(), Decimal::from(100));
        let rows = actuals_report(&[extra_care(), weekly_charge], &[actual(Some("156050"), d(2022, 10, 3), d(2022, 10, 9), "10", "0", 14)], opts(d(2022, 10, 3), d(2022, 10, 9)));
        let got: Vec<(String, String, String)> = rows.iter().map(|r| { let c = r.cells(); (c[4].clone(), c[8].clone(), c[11].clone()) }).collect();
        assert_eq!(got, [("10".to_string(), "215.00".to_string(), "0.00".to_string())]);
    }

    #[test]
    fn a_week_of_an_actuals_row_begun_before_the_report_is_not_an_empty_visits_week() {
        let mut o = opts(d(2022, 10, 17), d(2022, 10, 30));
        o.include_empty_weeks = true;
        let rows = actuals_report(&[extra_care()], &[actual(Some("156050"), d(2022, 10, 3), d(2022, 10, 30), "40", "0", 56)], o);
        assert!(rows.is_empty(), "{rows:?}");
    }

    #[test]
    fn visits_outside_the_date_range_are_not_counted() {
        let (cplis, visits) = guide_week();
        assert!(report(&cplis, &visits, opts(d(2022, 10, 10), d(2022, 10, 16))).is_empty());
    }
}
