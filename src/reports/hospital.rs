//! The hospital incentive payment (SPEC 5; guide: "One-Off Claims – Hospital Incentive Payment"):
//! 50% of the planned cost of the visits missed because the client was in hospital (type H), over the
//! first 7 days (DAPL) or 14 days (LWAH) of each stay; nothing under APL, HTLAH or Spot.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;

use super::{hours, money_text, quantity_text, Overflow, VisitFact};
use crate::domain::number::minutes_times;
use crate::domain::Cpli;

/// The code of the hospital visit type.
pub const HOSPITAL: &str = "H";

/// Days of a stay the incentive covers under a contract, counting the first day; `None`: no incentive.
pub fn covered_days(contract: &str) -> Option<i64> {
    match contract.trim().to_ascii_uppercase().as_str() {
        "DAPL" => Some(7),
        "LWAH" => Some(14),
        _ => None,
    }
}

/// One stay's claim, exact; `cells` rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HospitalRow {
    pub ssref: String,
    pub cpli_id: String,
    pub contract: String,
    /// The first missed visit of the stay.
    pub from: NaiveDate,
    /// The last missed visit the incentive covers.
    pub to: NaiveDate,
    pub visits: u64,
    pub missed_minutes: i64,
    pub unit_cost: Decimal,
    /// 50% of the missed visits' planned cost (1 h x 23.77 x 50% = 11.885 -> £11.89), exact.
    pub amount: Decimal,
}

pub const COLUMNS: [&str; 9] = ["ssref", "cpli_id", "contract", "from", "to", "visits", "missed_hours", "unit_cost", "amount"];

impl HospitalRow {
    pub fn missed_hours(&self) -> Decimal {
        hours(self.missed_minutes)
    }

    pub fn cells(&self) -> [String; 9] {
        [
            self.ssref.clone(),
            self.cpli_id.clone(),
            self.contract.clone(),
            self.from.to_string(),
            self.to.to_string(),
            self.visits.to_string(),
            quantity_text(self.missed_hours()),
            self.unit_cost.normalize().to_string(),
            money_text(self.amount),
        ]
    }
}

/// One visit of an eligible CPLI, as small as it can be: a year of an organisation's visits is
/// millions of them.
#[derive(Debug, Clone, Copy)]
struct Compact {
    cpli: u32,
    date: NaiveDate,
    start: u32,
    minutes: i64,
    hospital: bool,
}

/// The visits of CPLIs under a contract with a hospital incentive, collected as they stream past.
pub struct HospitalVisits<'c> {
    cplis: Vec<&'c Cpli>,
    ids: HashMap<&'c str, u32>,
    visits: Vec<Compact>,
    /// Visits after this day cannot belong to a stay that begins by `to`.
    until: NaiveDate,
}

impl<'c> HospitalVisits<'c> {
    pub fn new(cplis: &'c [Cpli], to: NaiveDate) -> Self {
        let cplis: Vec<&Cpli> = cplis.iter().filter(|c| covered_days(&c.contract).is_some()).collect();
        let ids = cplis.iter().enumerate().map(|(i, c)| (c.cpli_id.as_str(), i as u32)).collect();
        HospitalVisits { cplis, ids, visits: Vec::new(), until: to + Duration::days(14) }
    }

    pub fn add(&mut self, v: &VisitFact) {
        // Earlier visits are kept: they tell whether a stay began before `from`.
        if v.planned_date > self.until {
            return;
        }
        if let Some(&cpli) = self.ids.get(v.cpli_id.as_str()) {
            let hospital = v.visit_type == HOSPITAL;
            self.visits.push(Compact { cpli, date: v.planned_date, start: v.planned_start, minutes: v.planned_minutes, hospital });
        }
    }

    /// Claims for stays that begin between `from` and `to`. A stay is a run of H visits of one
    /// CPLI, in planned order, that no other visit of that CPLI interrupts (care resumed); it begins
    /// on its first H visit's date, which is as near the admission as the visits file can say.
    /// Every amount is checked (issue 9): a CPLI too large to cost fails the report, naming it.
    pub fn claims(mut self, from: NaiveDate, to: NaiveDate) -> Result<Vec<HospitalRow>, Overflow> {
        self.visits.sort_unstable_by_key(|v| (v.cpli, v.date, v.start));
        let mut rows = Vec::new();
        let mut stay: Option<HospitalRow> = None;
        let mut current = u32::MAX;
        for v in &self.visits {
            if v.cpli != current || !v.hospital {
                rows.extend(stay.take());
                current = v.cpli;
            }
            if !v.hospital {
                continue;
            }
            let cpli = self.cplis[v.cpli as usize];
            let days = covered_days(&cpli.contract).expect("only eligible CPLIs are kept");
            let s = stay.get_or_insert_with(|| HospitalRow {
                ssref: cpli.ssref.clone(),
                cpli_id: cpli.cpli_id.clone(),
                contract: cpli.contract.clone(),
                from: v.date,
                to: v.date,
                visits: 0,
                missed_minutes: 0,
                unit_cost: cpli.unit_cost,
                amount: Decimal::ZERO,
            });
            if v.date < s.from + Duration::days(days) {
                s.to = v.date;
                s.visits += 1;
                s.missed_minutes += v.minutes;
            }
        }
        rows.extend(stay);
        rows.retain(|r| r.from >= from && r.from <= to);
        for r in &mut rows {
            let cpli = self.cplis.iter().find(|c| c.cpli_id == r.cpli_id);
            r.amount = minutes_times(r.missed_minutes, r.unit_cost, 120).ok_or_else(|| match cpli {
                Some(c) => Overflow::of(c),
                None => Overflow { cpli_id: r.cpli_id.clone(), quantity: String::new(), unit_cost: r.unit_cost.to_string() },
            })?;
        }
        rows.sort_by(|a, b| (&a.ssref, &a.cpli_id, a.from).cmp(&(&b.ssref, &b.cpli_id, b.from)));
        Ok(rows)
    }
}

/// Claims for stays that begin between `from` and `to` (see `HospitalVisits::claims`).
pub fn hospital_incentive(cplis: &[Cpli], visits: impl IntoIterator<Item = VisitFact>, from: NaiveDate, to: NaiveDate) -> Result<Vec<HospitalRow>, Overflow> {
    let mut collected = HospitalVisits::new(cplis, to);
    for v in visits {
        collected.add(&v);
    }
    collected.claims(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::actuals::tests::{cpli, d, visit};

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
        let rows = hospital_incentive(&cplis, visits, d(2022, 11, 1), d(2022, 11, 30)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cells(), ["A352035", "156024", "DAPL", "2022-11-12", "2022-11-12", "1", "1", "23.77", "11.89"]);
    }

    /// Example 2: Mr Skinner, 12:00-12:30 and 18:00-18:30 daily; admitted Monday 21/11 after the
    /// lunch call, care resumed with Friday 25/11's evening call: 4 hours missed.
    #[test]
    fn the_guides_second_example_claims_47_54() {
        let cplis = [cpli("156040", "A332295", "DAPL", d(2022, 10, 3), None, "7", "23.77")];
        let mut visits = vec![visit("156040", d(2022, 11, 21), 720, "DHS", 30, Some(30))];
        visits.push(visit("156040", d(2022, 11, 21), 1080, "H", 30, None));
        for day in 22..=24 {
            visits.push(visit("156040", d(2022, 11, day), 720, "H", 30, None));
            visits.push(visit("156040", d(2022, 11, day), 1080, "H", 30, None));
        }
        visits.push(visit("156040", d(2022, 11, 25), 720, "H", 30, None));
        visits.push(visit("156040", d(2022, 11, 25), 1080, "DHS", 30, Some(30)));
        let rows = hospital_incentive(&cplis, visits, d(2022, 11, 1), d(2022, 11, 30)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cells()[3..].to_vec(), ["2022-11-21", "2022-11-25", "8", "4", "23.77", "47.54"]);
    }

    #[test]
    fn dapl_covers_the_first_7_days_of_a_stay_and_lwah_the_first_14() {
        let cplis = [
            cpli("1", "A1", "DAPL", d(2022, 10, 3), None, "7", "20"),
            cpli("2", "A2", "LWAH", d(2022, 10, 3), None, "7", "20"),
        ];
        let mut visits = Vec::new();
        for day in 0..20 {
            for id in ["1", "2"] {
                visits.push(visit(id, d(2022, 10, 10) + Duration::days(day), 600, "H", 60, None));
            }
        }
        let rows = hospital_incentive(&cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.contract.as_str(), r.visits, r.to, money_text(r.amount))).collect();
        assert_eq!(got, [("DAPL", 7, d(2022, 10, 16), "70.00".to_string()), ("LWAH", 14, d(2022, 10, 23), "140.00".to_string())]);
    }

    #[test]
    fn a_stay_too_large_to_cost_fails_the_report_naming_its_cpli_instead_of_panicking() {
        let max = Decimal::MAX.to_string();
        let cplis = [cpli("777", "A1", "DAPL", d(2022, 10, 3), None, "7", &max)];
        let visits = [visit("777", d(2022, 10, 10), 600, "H", 60, None)];
        let err = hospital_incentive(&cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap_err();
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
        assert!(hospital_incentive(&cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap().is_empty());
    }

    #[test]
    fn care_resuming_ends_a_stay_and_the_next_admission_starts_a_new_one() {
        let cplis = [cpli("1", "A1", "DAPL", d(2022, 10, 3), None, "7", "20")];
        let visits = [
            visit("1", d(2022, 10, 10), 600, "H", 60, None),
            visit("1", d(2022, 10, 11), 600, "DHS", 60, Some(60)),
            visit("1", d(2022, 10, 14), 600, "H", 60, None),
            visit("1", d(2022, 10, 15), 600, "H", 60, None),
        ];
        let rows = hospital_incentive(&cplis, visits, d(2022, 10, 1), d(2022, 10, 31)).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.from, r.visits)).collect();
        assert_eq!(got, [(d(2022, 10, 10), 1), (d(2022, 10, 14), 2)]);
    }
}
