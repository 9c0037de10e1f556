//! The hospital incentive payment as the contracts say it (issue 12; guide: "One-Off Claims –
//! Hospital Incentive Payment"): 50% of the planned cost of the visits missed because the client was
//! in hospital (type H). DAPL pays a stay only when the provider picks up the care upon discharge
//! within 7 working days of admission; LWAH holds the package open for up to 14 days whether or not
//! care resumes, until the day the provider is told the client stays in hospital; APL, HTLAH and
//! Spot pay nothing. `report hospital-incentive`, the `hospital-incentive.csv` export and a claim's
//! `CLAIM_AMOUNT_DIFFERS` all use `figure`.

use std::collections::{BTreeSet, HashMap};

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;

use super::{money_text, pennies, quantity_text, Overflow, VisitFact};
use crate::config::{DaplLongerStay, Hospital};
use crate::domain::number::minutes_times;
use crate::domain::{uk_date, Cpli};

/// The code of the hospital visit type.
pub const HOSPITAL: &str = "H";

/// How long after the last day a report asks about its visits are kept, to see care resume after a
/// stay that began by then (a stay without care resumed in that time is reported as not resumed).
const RESUME_HORIZON_DAYS: i64 = 92;

/// The contracts with a hospital incentive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Dapl,
    Lwah,
}

impl Scheme {
    /// `None`: APL, HTLAH, Spot (the guide's summary: no hospital incentive payment).
    pub fn of(contract: &str) -> Option<Scheme> {
        match contract.trim().to_ascii_uppercase().as_str() {
            "DAPL" => Some(Scheme::Dapl),
            "LWAH" => Some(Scheme::Lwah),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Dapl => "DAPL",
            Scheme::Lwah => "LWAH",
        }
    }
}

/// Working days as the DAPL contract counts them: Monday to Friday, not a bank holiday.
pub struct Calendar {
    bank_holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    pub fn new(rules: &Hospital) -> Calendar {
        Calendar { bank_holidays: rules.bank_holidays.iter().copied().collect() }
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        d.weekday().number_from_monday() <= 5 && !self.bank_holidays.contains(&d)
    }

    /// Working days from `from` to `to`, both counted.
    pub fn working_days(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        from.iter_days().take_while(|d| *d <= to).filter(|d| self.is_working_day(*d)).count() as u32
    }

    /// The `n`th working day counting `from` as the first when it is one (`n` >= 1).
    pub fn nth_working_day(&self, from: NaiveDate, n: u32) -> NaiveDate {
        from.iter_days().filter(|d| self.is_working_day(*d)).nth(n.max(1) as usize - 1).unwrap_or(NaiveDate::MAX)
    }
}

/// One hospital stay of a client's package: the client's CPLIs for one service (a package varied
/// mid-stay is still one stay, each missed visit costed at its own CPLI's unit cost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stay {
    /// The day of admission (the claim's AdmittedOn; for the report, the first H visit's day).
    pub admitted: NaiveDate,
    /// The day the provider picked up the care (discharge, then a delivered visit); `None`: not
    /// (yet) resumed.
    pub resumed: Option<NaiveDate>,
    /// A claim's DischargedOn, when it lies between the stay's last H visit and the day care resumed
    /// (discharged at 4 pm, care picked up the next morning): the day DAPL's "discharged within 7
    /// working days of admission" counts to (since 2026-12-03; it counted to the day care resumed
    /// whatever the claim said). `None` for the report, which has no claim.
    pub discharged: Option<NaiveDate>,
    /// LWAH: the day the provider was told the client will stay in hospital longer.
    pub notified: Option<NaiveDate>,
}

/// A visit missed in hospital (type H): its day, planned minutes and CPLI (an index into the
/// caller's list, for its unit cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    pub date: NaiveDate,
    pub minutes: i64,
    pub cpli: u32,
}

/// What the contract pays for a stay, exact (rounded once, when written), with its working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub scheme: Scheme,
    /// Working days from admission to the discharge (`Stay::discharged`, else the day care resumed),
    /// both counted.
    pub working_days: Option<u32>,
    pub paid_visits: u64,
    pub paid_minutes: i64,
    /// The last missed visit paid.
    pub last_paid: Option<NaiveDate>,
    /// The unit cost of the CPLI in force at admission.
    pub unit_cost: Decimal,
    /// The paid minutes at each unit cost, in the order the costs first apply: more than one when
    /// the package's cost changed during the stay.
    pub parts: Vec<(i64, Decimal)>,
    pub amount: Decimal,
    /// Why nothing (or only part) is paid, in the contract's words; `None` when every missed visit is.
    pub limit: Option<String>,
}

impl Figure {
    /// "4 h × £23.77 × 50% = £47.54", with why a part is not paid.
    pub fn working(&self) -> String {
        let times = |(minutes, cost): &(i64, Decimal)| format!("{} × £{}", hours_words(*minutes), cost.normalize());
        let sum = match self.parts.as_slice() {
            [_, _, ..] => format!("({}) × 50% = £{}", self.parts.iter().map(times).collect::<Vec<_>>().join(" + "), money_text(self.amount)),
            _ => format!("{} × 50% = £{}", times(&(self.paid_minutes, self.unit_cost)), money_text(self.amount)),
        };
        match &self.limit {
            Some(why) if self.paid_visits == 0 => format!("nothing: {why}"),
            Some(why) => format!("{sum} ({why})"),
            None => sum,
        }
    }

    /// The amount to the penny, half-up.
    pub fn rounded(&self) -> Decimal {
        pennies(self.amount)
    }
}

/// `4 h`, `0.5 h`, `1 h 20 min`: hours as a provider writes them, exact.
pub fn hours_words(minutes: i64) -> String {
    super::hours_in_words(minutes, "h")
}

/// What `scheme` pays for `stay`, from the visits it missed (any order), each at its CPLI's unit
/// cost (`cost`). `None` on overflow (a CPLI too large to cost, issue 9).
pub fn figure(rules: &Hospital, cal: &Calendar, scheme: Scheme, stay: &Stay, missed: &[Missed], cost: impl Fn(u32) -> Decimal) -> Option<Figure> {
    let working_days = stay.discharged.or(stay.resumed).map(|r| cal.working_days(stay.admitted, r));
    let (until, limit): (Option<NaiveDate>, Option<String>) = match scheme {
        Scheme::Dapl => {
            let n = rules.dapl_working_days;
            match (stay.resumed, working_days) {
                (Some(resumed), Some(wd)) if wd <= n => (Some(resumed), None),
                (resumed, _) => {
                    let why = match (resumed, working_days) {
                        (Some(r), Some(wd)) => format!(
                            "{} after {wd} working days; DAPL pays a stay only when the client is discharged within {n} working days of admission",
                            match stay.discharged {
                                Some(d) => format!("discharged on {} (care resumed {})", uk_date(d), uk_date(r)),
                                None => format!("care resumed on {}", uk_date(r)),
                            }
                        ),
                        _ => "care has not resumed after the stay (no delivered visit after it); DAPL pays only when the provider picks up the care upon discharge".into(),
                    };
                    match (rules.dapl_longer_stay, resumed) {
                        (DaplLongerStay::FirstWorkingDays, Some(_)) => {
                            let last = cal.nth_working_day(stay.admitted, n);
                            (Some(last), Some(format!("{why}: its first {n} working days, to {}, are paid", uk_date(last))))
                        }
                        _ => (None, Some(why)),
                    }
                }
            }
        }
        Scheme::Lwah => {
            let days = rules.lwah_days.max(1);
            let mut until = stay.admitted.checked_add_signed(Duration::days(i64::from(days) - 1)).unwrap_or(NaiveDate::MAX);
            let mut limit = Some(format!("LWAH holds the package open for up to {days} days, to {}", uk_date(until)));
            if let Some(r) = stay.resumed.filter(|r| *r <= until) {
                until = r;
                limit = None;
            }
            if let Some(n) = stay.notified {
                let last = if rules.lwah_notified_day_paid { n } else { n.pred_opt().unwrap_or(n) };
                if last < until {
                    until = last;
                    limit = Some(format!("the payment ceases on the day the provider was notified the client stays in hospital, {}", uk_date(n)));
                }
            }
            (Some(until), limit)
        }
    };
    let paid: Vec<&Missed> = match until {
        Some(until) => missed.iter().filter(|m| m.date >= stay.admitted && m.date <= until).collect(),
        None => Vec::new(),
    };
    let paid_minutes: i64 = paid.iter().map(|m| m.minutes).sum();
    let mut parts: Vec<(i64, Decimal)> = Vec::new();
    let mut in_order = paid.clone();
    in_order.sort_by_key(|m| m.date);
    for m in in_order {
        let c = cost(m.cpli);
        match parts.iter_mut().find(|(_, pc)| *pc == c) {
            Some((minutes, _)) => *minutes += m.minutes,
            None => parts.push((m.minutes, c)),
        }
    }
    let mut amount = Decimal::ZERO;
    for (minutes, c) in &parts {
        amount = amount.checked_add(minutes_times(*minutes, *c, 120)?)?;
    }
    let admission = missed.iter().min_by_key(|m| m.date).map(|m| cost(m.cpli)).unwrap_or_default();
    let all_paid = paid.len() == missed.len();
    Some(Figure {
        scheme,
        working_days,
        paid_visits: paid.len() as u64,
        paid_minutes,
        last_paid: paid.iter().map(|m| m.date).max(),
        unit_cost: admission,
        parts,
        amount,
        limit: if all_paid && !paid.is_empty() { None } else { limit },
    })
}

/// One visit of a client's package, as small as it can be: a year of an organisation's visits is
/// millions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compact {
    pub date: NaiveDate,
    pub start: u32,
    pub minutes: i64,
    /// Its CPLI, an index into the caller's list.
    pub cpli: u32,
    pub hospital: bool,
    /// A delivered visit (delivered times, DHS, DHF or E): care given.
    pub delivered: bool,
}

impl Compact {
    pub fn of(v: &VisitFact, cpli: u32) -> Compact {
        Compact {
            date: v.planned_date,
            start: v.planned_start,
            minutes: v.planned_minutes,
            cpli,
            hospital: v.visit_type == HOSPITAL,
            delivered: v.delivered_minutes.is_some(),
        }
    }

    fn missed(&self) -> Missed {
        Missed { date: self.date, minutes: self.minutes, cpli: self.cpli }
    }
}

/// The package a CPLI belongs to for the hospital incentive: its client and service, as compared.
/// A stay runs on across the client's CPLIs of one service (a variation, a change of cost).
pub fn package_key(c: &Cpli) -> (String, crate::domain::NameKey) {
    (c.ssref.trim().to_uppercase(), c.service_key())
}

/// A stay found in one package's visits (in planned order): its H visits from the first at or after
/// `from` up to the first delivered visit after it (care resumed), which the stay does not include.
/// A cancelled or undeliverable visit in between does not end it: the client may still be in hospital.
/// Returns the missed visits, the day care resumed, and where to look for the next stay.
pub fn stay_in(visits: &[Compact], from: usize) -> Option<(Vec<Missed>, Option<NaiveDate>, usize)> {
    let first = from + visits[from..].iter().position(|v| v.hospital)?;
    let mut missed = Vec::new();
    for (i, v) in visits.iter().enumerate().skip(first) {
        if v.delivered {
            return Some((missed, Some(v.date), i + 1));
        }
        if v.hospital {
            missed.push(v.missed());
        }
    }
    Some((missed, None, visits.len()))
}

/// A claimed stay (issue 12): the stay as the client's visits of the package (in planned order)
/// show it, the one holding `admitted`: from its first H visit (H visits before `admitted` with no
/// delivered visit between count: the stay had begun) up to the first delivered visit after it,
/// as `stay_in` and so the report find it. The claim's AdmittedOn is the admission when it is
/// earlier than that first H visit with no care delivered between (admitted after the day's last
/// call). A claim's DischargedOn does not shorten the stay (since 2026-12-03: a DischargedOn before
/// H visits that run on, or an AdmittedOn after the first H visits, gave a figure the visits
/// contradict); a stay whose first H visit is after it is not the claim's, nor one whose H visits
/// end before it. `None`: no such stay.
pub fn claimed_stay(visits: &[Compact], admitted: NaiveDate, discharged: Option<NaiveDate>, notified: Option<NaiveDate>) -> Option<(Stay, Vec<Missed>)> {
    let at = visits.iter().position(|v| v.date >= admitted).unwrap_or(visits.len());
    // Care delivered from the admission day before its first H visit (the day a stay's care
    // resumed, and the next began): the stay begins there, not in the H visits before.
    // No H visit from the admission day: no stay of the claim's (SPEC 9: "H visits are stored for
    // that client and service from AdmittedOn"; since 2026-12-03, the walk back below found the
    // stay before it).
    let next_h = at + visits[at..].iter().position(|v| v.hospital)?;
    let mut start = at;
    if !visits[at..next_h].iter().any(|v| v.delivered) {
        while start > 0 && !visits[start - 1].delivered {
            start -= 1;
        }
    }
    let (missed, resumed, end) = stay_in(visits, start)?;
    let first = missed.first()?.date;
    if discharged.is_some_and(|d| first > d) {
        return None;
    }
    let delivered_between = visits[at..].iter().take_while(|v| v.date < first).any(|v| v.delivered);
    let admitted = if delivered_between { first } else { admitted.min(first) };
    let last_h = missed.iter().map(|m| m.date).max()?;
    // The provider picked up the care upon discharge (the guide): the delivered visit that ended
    // the stay is the next after its last H visit, no cancelled or missed call between.
    let picked_up = resumed.is_some() && visits[..end - 1].iter().rposition(|v| v.hospital).is_some_and(|last| last + 2 == end);
    let discharged = discharged.filter(|d| picked_up && *d >= last_h && resumed.is_some_and(|r| *d <= r));
    Some((Stay { admitted, resumed, discharged, notified }, missed))
}

/// One stay's line of the report, exact; `cells` rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HospitalRow {
    pub ssref: String,
    pub cpli_id: String,
    pub contract: String,
    /// The first missed visit of the stay.
    pub from: NaiveDate,
    /// The last missed visit paid (the stay's last when none is).
    pub to: NaiveDate,
    pub figure: Figure,
    pub resumed: Option<NaiveDate>,
}

pub const COLUMNS: [&str; 12] =
    ["ssref", "cpli_id", "contract", "from", "to", "visits", "missed_hours", "unit_cost", "amount", "care_resumed", "working_days", "working"];

impl HospitalRow {
    pub fn amount(&self) -> Decimal {
        self.figure.amount
    }

    pub fn cells(&self) -> [String; 12] {
        let f = &self.figure;
        [
            self.ssref.clone(),
            self.cpli_id.clone(),
            self.contract.clone(),
            self.from.to_string(),
            self.to.to_string(),
            f.paid_visits.to_string(),
            quantity_text(super::hours(f.paid_minutes)),
            f.unit_cost.normalize().to_string(),
            money_text(f.amount),
            self.resumed.map(|d| d.to_string()).unwrap_or_default(),
            f.working_days.map(|n| n.to_string()).unwrap_or_default(),
            f.working(),
        ]
    }
}

/// The visits of CPLIs under a contract with a hospital incentive, collected as they stream past.
pub struct HospitalVisits<'c> {
    cplis: Vec<&'c Cpli>,
    ids: HashMap<&'c str, u32>,
    /// Each CPLI's package ([`package_key`]), numbered.
    package_of: Vec<u32>,
    /// Each visit with its package.
    visits: Vec<(u32, Compact)>,
    /// Visits after this day are not needed for a stay that begins by the report's last day.
    until: NaiveDate,
}

impl<'c> HospitalVisits<'c> {
    pub fn new(cplis: &'c [Cpli], to: NaiveDate) -> Self {
        let cplis: Vec<&Cpli> = cplis.iter().filter(|c| Scheme::of(&c.contract).is_some()).collect();
        let ids = cplis.iter().enumerate().map(|(i, c)| (c.cpli_id.as_str(), i as u32)).collect();
        let mut packages = HashMap::new();
        let package_of = cplis.iter().map(|c| {
            let n = packages.len() as u32;
            *packages.entry(package_key(c)).or_insert(n)
        });
        let package_of = package_of.collect();
        let until = to.checked_add_signed(Duration::days(RESUME_HORIZON_DAYS)).unwrap_or(NaiveDate::MAX);
        HospitalVisits { cplis, ids, package_of, visits: Vec::new(), until }
    }

    pub fn add(&mut self, v: &VisitFact) {
        // Earlier visits are kept: they tell whether a stay began before `from`.
        if v.planned_date > self.until {
            return;
        }
        if let Some(&cpli) = self.ids.get(v.cpli_id.as_str()) {
            self.visits.push((self.package_of[cpli as usize], Compact::of(v, cpli)));
        }
    }

    /// A line for each stay that begins between `from` and `to`, what it pays or why nothing. A
    /// stay begins on its first H visit's day, as near the admission as the visits file can say.
    /// Every amount is checked (issue 9): a CPLI too large to cost fails the report, naming it.
    pub fn claims(mut self, rules: &Hospital, from: NaiveDate, to: NaiveDate) -> Result<Vec<HospitalRow>, Overflow> {
        let cal = Calendar::new(rules);
        self.visits.sort_unstable_by_key(|(package, v)| (*package, v.date, v.start));
        let mut rows = Vec::new();
        for group in self.visits.chunk_by(|a, b| a.0 == b.0) {
            let visits: Vec<Compact> = group.iter().map(|(_, v)| *v).collect();
            let mut at = 0;
            while let Some((missed, resumed, next)) = stay_in(&visits, at) {
                at = next;
                let admitted = missed[0].date;
                if admitted < from || admitted > to {
                    continue;
                }
                // The stay is the CPLI's in force at admission (its contract decides the scheme).
                let cpli = self.cplis[missed[0].cpli as usize];
                let scheme = Scheme::of(&cpli.contract).expect("only eligible CPLIs are kept");
                let stay = Stay { admitted, resumed, discharged: None, notified: None };
                let cost = |i: u32| self.cplis[i as usize].unit_cost;
                let figure = figure(rules, &cal, scheme, &stay, &missed, cost).ok_or_else(|| Overflow::of(cpli))?;
                let last = missed.iter().map(|m| m.date).max().unwrap_or(admitted);
                rows.push(HospitalRow {
                    ssref: cpli.ssref.clone(),
                    cpli_id: cpli.cpli_id.clone(),
                    contract: cpli.contract.clone(),
                    from: admitted,
                    to: figure.last_paid.unwrap_or(last),
                    figure,
                    resumed,
                });
            }
        }
        rows.sort_by(|a, b| (&a.ssref, &a.cpli_id, a.from).cmp(&(&b.ssref, &b.cpli_id, b.from)));
        Ok(rows)
    }
}

/// Lines for stays that begin between `from` and `to` (see `HospitalVisits::claims`).
pub fn hospital_incentive(
    rules: &Hospital,
    cplis: &[Cpli],
    visits: impl IntoIterator<Item = VisitFact>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<HospitalRow>, Overflow> {
    let mut collected = HospitalVisits::new(cplis, to);
    for v in visits {
        collected.add(&v);
    }
    collected.claims(rules, from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::actuals::tests::{cpli, d, visit};

    fn rules() -> Hospital {
        Hospital::default()
    }

    /// Example 1: Mr Flanders, one 14:00-15:00 call on Saturdays and Sundays; admitted Thursday
    /// 10/11/22, missed Saturday's call, care resumed with Sunday's.
    #[test]
    fn the_guides_first_example_claims_11_89() {
        let cplis = [cpli("156024", "A352035", "DAPL", d(2022, 10, 3), None, "2", "23.77")];
        let visits = [
            visit("156024", d(2022, 11, 6), 840, "DHS", 60, Some(60)),
            visit("156024", d(2022, 11, 12), 840, "H", 60, None),
            visit("156024", d(2022, 11, 13), 840, "DHS", 60, Some(60)),
        ];
        let rows = hospital_incentive(&rules(), &cplis, visits, d(2022, 11, 1), d(2022, 11, 30)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].cells(),
            ["A352035", "156024", "DAPL", "2022-11-12", "2022-11-12", "1", "1", "23.77", "11.89", "2022-11-13", "0", "1 h × £23.77 × 50% = £11.89"]
        );
    }

    /// The first example as claimed: admitted on the Thursday, so the stay is Thursday to Sunday,
    /// 2 working days.
    #[test]
    fn the_guides_first_example_as_a_claim_from_its_admission_day() {
        let v = |day, code: &str| Compact::of(&visit("1", d(2022, 11, day), 840, code, 60, (code == "DHS").then_some(60)), 0);
        let visits = [v(6, "DHS"), v(12, "H"), v(13, "DHS")];
        let (stay, missed) = claimed_stay(&visits, d(2022, 11, 10), None, None).unwrap();
        assert_eq!(stay.resumed, Some(d(2022, 11, 13)));
        let f = figure(&rules(), &Calendar::new(&rules()), Scheme::Dapl, &stay, &missed, |_| "23.77".parse().unwrap()).unwrap();
        assert_eq!((f.working_days, f.rounded().to_string(), f.working()), (Some(2), "11.89".into(), "1 h × £23.77 × 50% = £11.89".into()));
    }

    /// Example 2: Mr Skinner, 12:00-12:30 and 18:00-18:30 daily; admitted Monday 21/11 after the
    /// lunch call, care resumed with Friday 25/11's evening call: 4 hours missed.
    fn skinner() -> Vec<VisitFact> {
        let mut visits = vec![visit("156040", d(2022, 11, 21), 720, "DHS", 30, Some(30))];
        visits.push(visit("156040", d(2022, 11, 21), 1080, "H", 30, None));
        for day in 22..=24 {
            visits.push(visit("156040", d(2022, 11, day), 720, "H", 30, None));
            visits.push(visit("156040", d(2022, 11, day), 1080, "H", 30, None));
        }
        visits.push(visit("156040", d(2022, 11, 25), 720, "H", 30, None));
        visits.push(visit("156040", d(2022, 11, 25), 1080, "DHS", 30, Some(30)));
        visits
    }

    #[test]
    fn the_guides_second_example_claims_47_54() {
        let cplis = [cpli("156040", "A332295", "DAPL", d(2022, 10, 3), None, "7", "23.77")];
        let rows = hospital_incentive(&rules(), &cplis, skinner(), d(2022, 11, 1), d(2022, 11, 30)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].cells()[3..].to_vec(),
            ["2022-11-21", "2022-11-25", "8", "4", "23.77", "47.54", "2022-11-25", "5", "4 h × £23.77 × 50% = £47.54"]
        );
    }

    /// DAPL: H visits every weekday from Monday 21/11 to Friday 2/12, care resumed Monday 5/12 (11
    /// working days): nothing, however the claim's dates are chosen.
    #[test]
    fn a_claimed_stay_is_the_stay_the_visits_show_whatever_the_claims_dates() {
        let v = |m, day, code: &str| Compact::of(&visit("1", d(2022, m, day), 540, code, 60, (code == "DHS").then_some(60)), 0);
        let mut visits = vec![v(11, 18, "DHS")];
        visits.extend([21, 22, 23, 24, 25, 28, 29, 30].map(|day| v(11, day, "H")));
        visits.extend([v(12, 1, "H"), v(12, 2, "H"), v(12, 5, "DHS")]);
        let dapl = |admitted, discharged| {
            let (stay, missed) = claimed_stay(&visits, admitted, discharged, None).unwrap();
            let f = figure(&rules(), &Calendar::new(&rules()), Scheme::Dapl, &stay, &missed, |_| "23.77".parse().unwrap()).unwrap();
            (stay.admitted, stay.resumed, missed.len(), money_text(f.amount))
        };
        let whole = (d(2022, 11, 21), Some(d(2022, 12, 5)), 10, "0.00".to_string());
        assert_eq!(dapl(d(2022, 11, 21), Some(d(2022, 11, 25))), whole, "a DischargedOn of 25/11 changes nothing: the H visits run on");
        assert_eq!(dapl(d(2022, 11, 25), None), whole, "admitted on the 25th, the H visits from the 21st are the same stay");
        assert_eq!(dapl(d(2022, 11, 19), None).0, d(2022, 11, 19), "an admission before the first H visit counts from the claim's day");
        assert_eq!(dapl(d(2022, 11, 17), None).0, d(2022, 11, 21), "care delivered on the 18th: the stay's admission is its first H visit");
        assert_eq!(claimed_stay(&visits, d(2022, 11, 1), Some(d(2022, 11, 3)), None), None, "no stay from 1/11 to 3/11");
    }

    /// DAPL, one call a day: H from Monday 9/1/2023 to Tuesday 17/1 (the 7th working day), care
    /// resumed Wednesday 18/1 (the 8th). Discharged on the 17th at 4 pm, as the claim says: within 7
    /// working days, so paid; without a DischargedOn (the report), or with one the H visits run past,
    /// or one after care resumed, the test counts to the day care resumed: nothing.
    #[test]
    fn dapl_counts_working_days_to_the_claims_discharge_when_the_visits_allow_it() {
        let v = |m, day, code: &str| Compact::of(&visit("1", d(2023, m, day), 540, code, 30, (code == "DHS").then_some(30)), 0);
        let mut visits = vec![v(1, 6, "DHS")];
        visits.extend((9..=17).map(|day| v(1, day, "H")));
        visits.push(v(1, 18, "DHS"));
        let amount = |visits: &[Compact], discharged| {
            let (stay, missed) = claimed_stay(visits, d(2023, 1, 9), discharged, None).unwrap();
            let f = figure(&rules(), &Calendar::new(&rules()), Scheme::Dapl, &stay, &missed, |_| "23.77".parse().unwrap()).unwrap();
            (f.working_days, money_text(f.amount))
        };
        assert_eq!(amount(&visits, Some(d(2023, 1, 17))), (Some(7), "53.48".to_string()), "9 × 0.5 h × £23.77 × 50%");
        assert_eq!(amount(&visits, None), (Some(8), "0.00".to_string()));
        assert_eq!(amount(&visits, Some(d(2023, 1, 16))), (Some(8), "0.00".to_string()), "an H visit on the 17th: not discharged on the 16th");
        assert_eq!(amount(&visits, Some(d(2023, 1, 19))), (Some(8), "0.00".to_string()), "after care resumed: the visits say the 18th");
        // A call between the last H visit and the one care resumed with (cancelled, missed): the
        // care was not picked up upon discharge, so the discharge is not the claim's to name.
        visits.insert(visits.len() - 1, v(1, 18, "C"));
        assert_eq!(amount(&visits, Some(d(2023, 1, 17))), (Some(8), "0.00".to_string()));
    }

    /// H visits to Friday 2/12 and none after, care not resumed: a claim admitted on Monday 5/12 has
    /// no H visit from its admission (it was figured as the stay before, SPEC 9: NO_HOSPITAL_VISITS).
    #[test]
    fn a_claim_admitted_after_the_last_h_visit_has_no_stay() {
        let v = |m, day, code: &str| Compact::of(&visit("1", d(2022, m, day), 540, code, 60, (code == "DHS").then_some(60)), 0);
        let mut visits = vec![v(11, 18, "DHS")];
        visits.extend([21, 22, 23, 24, 25, 28, 29, 30].map(|day| v(11, day, "H")));
        visits.extend([v(12, 1, "H"), v(12, 2, "H")]);
        assert_eq!(claimed_stay(&visits, d(2022, 12, 5), None, None), None);
        assert!(claimed_stay(&visits, d(2022, 12, 2), None, None).is_some(), "admitted on the day of the last H visit");
    }

    /// Two stays: H from Monday 7/11 evening, care resumed Wednesday 9/11 at lunch, H again that
    /// evening to Friday lunch, care resumed Friday evening. A claim admitted on the 9th is the
    /// second stay's, not the first's.
    #[test]
    fn a_claim_admitted_the_day_a_stays_care_resumed_is_the_next_stays() {
        let v = |day, start, code: &str| Compact::of(&visit("1", d(2022, 11, day), start, code, 30, (code == "DHS").then_some(30)), 0);
        let visits = [
            v(4, 720, "DHS"), v(7, 720, "DHS"), v(7, 1080, "H"), v(8, 720, "H"), v(8, 1080, "H"),
            v(9, 720, "DHS"), v(9, 1080, "H"), v(10, 720, "H"), v(10, 1080, "H"), v(11, 720, "H"), v(11, 1080, "DHS"),
        ];
        let (first, missed) = claimed_stay(&visits, d(2022, 11, 7), Some(d(2022, 11, 9)), None).unwrap();
        assert_eq!((first.admitted, first.resumed, missed.len()), (d(2022, 11, 7), Some(d(2022, 11, 9)), 3));
        let (second, missed) = claimed_stay(&visits, d(2022, 11, 9), Some(d(2022, 11, 11)), None).unwrap();
        assert_eq!((second.admitted, second.resumed, missed.len()), (d(2022, 11, 9), Some(d(2022, 11, 11)), 4));
    }

    #[test]
    fn the_guides_second_example_as_a_claim_claims_47_54() {
        let visits: Vec<Compact> = skinner().iter().map(|v| Compact::of(v, 0)).collect();
        let (stay, missed) = claimed_stay(&visits, d(2022, 11, 21), Some(d(2022, 11, 25)), None).unwrap();
        assert_eq!((stay.resumed, missed.len()), (Some(d(2022, 11, 25)), 8));
        let f = figure(&rules(), &Calendar::new(&rules()), Scheme::Dapl, &stay, &missed, |_| "23.77".parse().unwrap()).unwrap();
        assert_eq!(money_text(f.amount), "47.54");
    }

    /// A stay of one 1-hour H visit a day at £20 from Monday 3 October 2022 for `days` calendar
    /// days, care resumed (a delivered visit) the day after when `resumed`.
    fn stay_of(contract: &str, admitted: NaiveDate, days: i64, resumed: bool, r: &Hospital) -> Figure {
        let missed: Vec<Missed> = (0..days).map(|i| Missed { date: admitted + Duration::days(i), minutes: 60, cpli: 0 }).collect();
        let stay = Stay { admitted, resumed: resumed.then(|| admitted + Duration::days(days)), discharged: None, notified: None };
        figure(r, &Calendar::new(r), Scheme::of(contract).unwrap(), &stay, &missed, |_| Decimal::from(20)).unwrap()
    }

    /// Calendar days from Monday 3/10/2022 (no bank holiday near) to the day care resumes so the
    /// stay, resumed day counted, has `wd` working days.
    fn days_for_working_days(wd: u32) -> i64 {
        let cal = Calendar::new(&rules());
        let admitted = d(2022, 10, 3);
        (cal.nth_working_day(admitted, wd) - admitted).num_days()
    }

    #[test]
    fn working_days_skip_weekends_and_the_configured_bank_holidays() {
        let cal = Calendar::new(&rules());
        // Friday 23/12/2022 to Friday 30/12/2022: Boxing Day and the Christmas substitute are off.
        assert_eq!(cal.working_days(d(2022, 12, 23), d(2022, 12, 30)), 4);
        assert_eq!(cal.nth_working_day(d(2022, 12, 23), 2), d(2022, 12, 28));
        let none = Hospital { bank_holidays: vec![], ..rules() };
        assert_eq!(Calendar::new(&none).working_days(d(2022, 12, 23), d(2022, 12, 30)), 6);
        assert_eq!(cal.working_days(d(2022, 11, 12), d(2022, 11, 13)), 0, "a weekend");
    }

    #[test]
    fn dapl_pays_stays_of_3_5_and_7_working_days_whole_when_care_resumes() {
        for wd in [3, 5, 7] {
            let days = days_for_working_days(wd);
            let f = stay_of("DAPL", d(2022, 10, 3), days, true, &rules());
            assert_eq!((f.working_days, f.paid_visits, f.limit.clone()), (Some(wd), days as u64, None), "{wd} working days");
            assert_eq!(f.amount, Decimal::from(10 * days));
        }
        // 7 working days from Monday 3/10 is Tuesday 11/10: the weekend's visits are paid too.
        assert_eq!(days_for_working_days(7), 8);
    }

    #[test]
    fn dapl_pays_nothing_for_stays_of_8_or_20_working_days_unless_set_to_pay_their_first_7() {
        for wd in [8, 20] {
            let days = days_for_working_days(wd);
            let f = stay_of("DAPL", d(2022, 10, 3), days, true, &rules());
            assert_eq!((f.working_days, f.paid_visits, f.amount), (Some(wd), 0, Decimal::ZERO), "{wd} working days");
            assert!(f.working().starts_with("nothing: care resumed on "), "{}", f.working());
            assert!(f.working().contains(&format!("after {wd} working days; DAPL pays a stay only when the client is discharged within 7 working days")));
            let first = Hospital { dapl_longer_stay: DaplLongerStay::FirstWorkingDays, ..rules() };
            let f = stay_of("DAPL", d(2022, 10, 3), days, true, &first);
            // Monday 3/10 to Tuesday 11/10: 9 calendar days, 7 working days.
            assert_eq!((f.paid_visits, f.last_paid, money_text(f.amount)), (9, Some(d(2022, 10, 11)), "90.00".to_string()), "{wd}");
            // 8 working days: the 8th is the day care resumed, so every missed visit is in the first 7.
            assert_eq!(f.working().starts_with("9 h × £20 × 50% = £90.00 (care resumed on "), wd == 20, "{}", f.working());
        }
    }

    #[test]
    fn dapl_pays_nothing_when_care_never_resumes_however_short_the_stay() {
        for wd in [3, 5, 7, 8, 20] {
            let f = stay_of("DAPL", d(2022, 10, 3), days_for_working_days(wd), false, &rules());
            assert_eq!((f.paid_visits, f.working_days), (0, None));
            assert_eq!(f.working(), "nothing: care has not resumed after the stay (no delivered visit after it); DAPL pays only when the provider picks up the care upon discharge");
            let first = Hospital { dapl_longer_stay: DaplLongerStay::FirstWorkingDays, ..rules() };
            assert_eq!(stay_of("DAPL", d(2022, 10, 3), days_for_working_days(wd), false, &first).paid_visits, 0);
        }
    }

    #[test]
    fn a_bank_holiday_lengthens_the_dapl_week_a_stay_may_last() {
        // Thursday 22/12/2022 to Tuesday 3/1/2023: 6 working days (22, 23, 28, 29, 30/12 and 3/1;
        // Boxing Day, the 27th and the 2nd are bank holidays): 12 days missed, paid whole.
        let admitted = d(2022, 12, 22);
        let days = (d(2023, 1, 3) - admitted).num_days();
        let f = stay_of("DAPL", admitted, days, true, &rules());
        assert_eq!((f.working_days, f.paid_visits), (Some(6), 12));
        let none = Hospital { bank_holidays: vec![], ..rules() };
        let f = stay_of("DAPL", admitted, days, true, &none);
        assert_eq!((f.working_days, f.paid_visits), (Some(9), 0), "without bank holidays it is 9 working days");
    }

    #[test]
    fn lwah_pays_the_first_14_days_of_any_stay_resumed_or_not() {
        for wd in [3, 5, 7, 8, 20] {
            let days = days_for_working_days(wd);
            for resumed in [true, false] {
                let f = stay_of("LWAH", d(2022, 10, 3), days, resumed, &rules());
                assert_eq!(f.paid_visits, days.min(14) as u64, "{wd} working days, resumed {resumed}");
                assert_eq!(f.amount, Decimal::from(10 * days.min(14)));
                assert_eq!(f.limit.is_some(), days > 14, "{wd}: {:?}", f.limit);
            }
        }
        // The guide's second claim example: in hospital from 07/10/22, still there on 01/12/22.
        let f = stay_of("LWAH", d(2022, 10, 7), 55, false, &rules());
        assert_eq!((f.paid_visits, f.last_paid), (14, Some(d(2022, 10, 20))));
        assert_eq!(f.working(), "14 h × £20 × 50% = £140.00 (LWAH holds the package open for up to 14 days, to 20/10/2022)");
    }

    #[test]
    fn lwah_payment_ceases_on_the_day_the_provider_is_notified() {
        let r = rules();
        let missed: Vec<Missed> = (0..20).map(|i| Missed { date: d(2022, 10, 3) + Duration::days(i), minutes: 60, cpli: 0 }).collect();
        let stay = Stay { admitted: d(2022, 10, 3), resumed: None, discharged: None, notified: Some(d(2022, 10, 8)) };
        let f = figure(&r, &Calendar::new(&r), Scheme::Lwah, &stay, &missed, |_| Decimal::from(20)).unwrap();
        assert_eq!((f.paid_visits, f.last_paid), (5, Some(d(2022, 10, 7))));
        assert!(f.working().contains("ceases on the day the provider was notified the client stays in hospital, 08/10/2022"), "{}", f.working());
        let paid_that_day = Hospital { lwah_notified_day_paid: true, ..rules() };
        assert_eq!(figure(&paid_that_day, &Calendar::new(&r), Scheme::Lwah, &stay, &missed, |_| Decimal::from(20)).unwrap().paid_visits, 6);
    }

    #[test]
    fn a_cancelled_visit_inside_a_stay_does_not_end_it_and_a_delivered_one_does() {
        let cplis = [cpli("1", "A1", "DAPL", d(2022, 10, 3), None, "7", "20")];
        let visits = [
            visit("1", d(2022, 10, 10), 600, "H", 60, None),
            visit("1", d(2022, 10, 11), 600, "U", 60, None),
            visit("1", d(2022, 10, 12), 600, "H", 60, None),
            visit("1", d(2022, 10, 13), 600, "DHS", 60, Some(60)),
            visit("1", d(2022, 10, 17), 600, "H", 60, None),
            visit("1", d(2022, 10, 18), 600, "H", 60, None),
        ];
        let rows = hospital_incentive(&rules(), &cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.from, r.figure.paid_visits, r.resumed, money_text(r.amount()))).collect();
        assert_eq!(got, [(d(2022, 10, 10), 2, Some(d(2022, 10, 13)), "20.00".into()), (d(2022, 10, 17), 0, None, "0.00".into())]);
    }

    #[test]
    fn a_stay_runs_on_across_a_variation_of_the_package_each_missed_visit_at_its_own_cplis_cost() {
        let cplis = [cpli("1", "A1", "LWAH", d(2022, 10, 3), Some(d(2022, 11, 17)), "7", "20"), cpli("2", "A1", "LWAH", d(2022, 11, 18), None, "7", "30")];
        let visits = (10..=30).map(|day| visit(if day < 18 { "1" } else { "2" }, d(2022, 11, day), 540, "H", 60, None));
        let rows = hospital_incentive(&rules(), &cplis, visits, d(2022, 11, 1), d(2022, 11, 30)).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.cpli_id.as_str(), r.from, r.figure.paid_visits, money_text(r.amount()))).collect();
        assert_eq!(got, [("1", d(2022, 11, 10), 14, "170.00".to_string())]);
        assert!(rows[0].figure.working().starts_with("(8 h × £20 + 6 h × £30) × 50% = £170.00"), "{}", rows[0].figure.working());
    }

    #[test]
    fn a_stay_too_large_to_cost_fails_the_report_naming_its_cpli_instead_of_panicking() {
        let max = Decimal::MAX.to_string();
        let cplis = [cpli("777", "A1", "LWAH", d(2022, 10, 3), None, "7", &max)];
        let visits = [visit("777", d(2022, 10, 10), 600, "H", 60, None)];
        let err = hospital_incentive(&rules(), &cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap_err();
        assert_eq!(err.cpli_id, "777");
    }

    #[test]
    fn apl_htlah_and_spot_contracts_get_no_hospital_incentive() {
        let cplis: Vec<Cpli> = ["APL", "HTLAH", "Spot"]
            .iter()
            .enumerate()
            .map(|(i, c)| cpli(&i.to_string(), "A1", c, d(2022, 10, 3), None, "7", "20"))
            .collect();
        let visits = (0..3).map(|i| visit(&i.to_string(), d(2022, 10, 10), 600, "H", 60, None));
        assert!(hospital_incentive(&rules(), &cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap().is_empty());
    }

    #[test]
    fn hours_are_written_exactly() {
        assert_eq!(hours_words(240), "4 h");
        assert_eq!(hours_words(30), "0.5 h");
        assert_eq!(hours_words(45), "0.75 h");
        assert_eq!(hours_words(80), "1 h 20 min");
    }
}
