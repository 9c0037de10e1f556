//! A care package line item: what the council commissioned for one client from one service.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Guid, NameKey};

/// One CPLI as loaded from the council's extract (SPEC 1). Unit cost keeps every decimal given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpli {
    pub cpli_id: String,
    pub ssref: String,
    pub client_name: String,
    pub nhs_number: Option<String>,
    pub client_ref: Option<Guid>,
    pub organisation_ref: Option<Guid>,
    pub organisation_name: String,
    pub service_ref: Option<Guid>,
    pub service_name: String,
    pub contract: String,
    pub service_level_ref: Option<Guid>,
    pub service_level: String,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub quantity: Quantity,
    pub unit_cost: Decimal,
    pub authorised: bool,
}

/// `5` `Hr` `Weekly`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantity {
    pub amount: Decimal,
    pub unit: String,
    pub frequency: String,
}

impl Quantity {
    /// Hours a week where the CPLI is priced in hours: a day's × 7, a week's, a fortnight's ÷ 2, four
    /// weeks' ÷ 4 (the average week, exact). `None` for other units (visits, nights) or frequencies:
    /// they cannot be compared with visits' hours.
    pub fn weekly_hours(&self) -> Option<Decimal> {
        let hours = self.in_hours();
        let every = self.frequency_days().filter(|_| hours)?;
        self.amount.checked_mul(Decimal::from(7))?.checked_div(Decimal::from(every))
    }

    /// [`Quantity::weekly_hours`] where every week holds the same hours (Daily, Weekly): what one
    /// week's planned visits are held to. A fortnightly or four-weekly package may be planned
    /// unevenly across its weeks.
    pub fn exact_weekly_hours(&self) -> Option<Decimal> {
        self.frequency_days().filter(|d| *d <= 7).and_then(|_| self.weekly_hours())
    }

    fn in_hours(&self) -> bool {
        matches!(self.unit.trim().to_ascii_lowercase().as_str(), "hr" | "hrs" | "hour" | "hours")
    }

    /// Whether two quantities are in one unit (any case; `Hr`, `Hrs`, `Hour`, `Hours` are one), so
    /// that they may be added.
    pub fn same_unit(&self, other: &Quantity) -> bool {
        (self.in_hours() && other.in_hours()) || self.unit.trim().eq_ignore_ascii_case(other.unit.trim())
    }

    /// The days one frequency spans: Daily 1, Weekly 7, Fortnightly 14, 4 Weekly 28.
    fn frequency_days(&self) -> Option<i64> {
        let f: String = self.frequency.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        match f.as_str() {
            "daily" => Some(1),
            "weekly" => Some(7),
            "fortnightly" | "2weekly" | "twoweekly" => Some(14),
            "4weekly" | "fourweekly" => Some(28),
            _ => None,
        }
    }

    /// The quantity commissioned for a period of `days` days, in the CPLI's own unit (issue 11: an
    /// actuals row's Planned and the report's Comm. for it): Daily, Weekly, Fortnightly or 4 Weekly
    /// times the number of whole frequencies in the period. `None` when the frequency is another one
    /// or the period is not a whole number of them (a part would not be exact), or on overflow.
    pub fn for_period(&self, days: i64) -> Option<Decimal> {
        let every = self.frequency_days()?;
        (days > 0 && days % every == 0).then(|| self.amount.checked_mul(Decimal::from(days / every))).flatten()
    }

    /// Whether `days` days of this quantity, pro rata, are what a provider would plan for them: any
    /// days of a daily or weekly quantity (spread over the week), whole fortnights or four weeks of
    /// a fortnightly or four-weekly one (one week of 10 h a fortnight may hold all 10 h).
    pub fn plans_pro_rata(&self, days: i64) -> bool {
        match self.frequency_days() {
            Some(every) if every <= 7 => true,
            Some(every) => days % every == 0,
            None => false,
        }
    }

    /// The quantity commissioned for `days` days, pro rata to its frequency and exact (not rounded:
    /// `10` `Weekly` for 3 days is 30/7), in the CPLI's own unit. `None` for another frequency, or
    /// on overflow.
    pub fn pro_rata(&self, days: i64) -> Option<Decimal> {
        let every = self.frequency_days()?;
        self.amount.checked_mul(Decimal::from(days))?.checked_div(Decimal::from(every))
    }
}

impl Cpli {
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.covers_any(date, date)
    }

    /// In force on some day of `from..=to`.
    pub fn covers_any(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.start_date <= to && self.end_date.is_none_or(|end| from <= end)
    }

    /// In force on every day of `from..=to`.
    pub fn covers_all(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.covers(from) && self.covers(to)
    }

    /// The days of `from..=to` on which it is in force.
    pub fn days_in_force(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        let (start, end) = (from.max(self.start_date), self.end_date.map_or(to, |e| e.min(to)));
        ((end - start).num_days() + 1).max(0)
    }

    pub fn overlaps(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.start_date <= to && self.end_date.is_none_or(|end| end >= from)
    }

    pub fn level_key(&self) -> NameKey {
        NameKey::new(&self.service_level)
    }

    pub fn service_key(&self) -> NameKey {
        NameKey::new(&self.service_name)
    }

    /// The client, service level and service it commissions: CPLIs with one key are one package
    /// (variations of each other, or a temporary extra package beside the open one).
    pub fn package_key(&self) -> (String, NameKey, NameKey) {
        (super::visit::client_key(Some(&self.ssref), None, None), self.level_key(), self.service_key())
    }

    /// Whether `other` is a package of the same client, service level and service: a variation of
    /// this one, or a temporary extra package beside it.
    pub fn same_package(&self, other: &Cpli) -> bool {
        self.package_key() == other.package_key()
    }

    /// A Spot contract's care is invoiced, not paid from visits (issue 11, `INVOICE_CASE`).
    pub fn is_spot(&self) -> bool {
        self.contract.trim().eq_ignore_ascii_case("spot")
    }
}

/// What `cplis` commission from `from` to `to`: each for the days of it that it is in force, pro rata
/// to its frequency, at its own unit cost; only quantities in `like`'s unit count (a weekly charge
/// cannot be added to hours). `(quantity, cost)`, exact. On overflow, the CPLI whose own cost
/// overflowed, or `None` when the sum did.
pub fn commissioned<'a>(cplis: impl IntoIterator<Item = &'a Cpli>, from: NaiveDate, to: NaiveDate, like: &Quantity) -> Result<(Decimal, Decimal), Option<&'a Cpli>> {
    let (mut qty, mut cost) = (Decimal::ZERO, Decimal::ZERO);
    for c in cplis.into_iter().filter(|c| c.quantity.same_unit(like)) {
        let Some(q) = c.quantity.pro_rata(c.days_in_force(from, to)) else { continue };
        let own = q.checked_mul(c.unit_cost).ok_or(Some(c))?;
        qty = qty.checked_add(q).ok_or(None)?;
        cost = cost.checked_add(own).ok_or(None)?;
    }
    Ok((qty, cost))
}

/// The authorised CPLIs among `cplis` of `cpli`'s package, in its unit, in force some day of
/// `from..=to`.
fn package_in<'a>(cpli: &Cpli, cplis: impl IntoIterator<Item = &'a Cpli>, from: NaiveDate, to: NaiveDate) -> Vec<&'a Cpli> {
    cplis
        .into_iter()
        .filter(|c| c.authorised && c.same_package(cpli) && c.quantity.same_unit(&cpli.quantity) && c.overlaps(from, to))
        .collect()
}

/// The cost of `qty` of a period under `cpli` and the authorised packages `same_package` as it
/// among `cplis`: at what they commission in the period, cost over quantity, so that a variation
/// part-way through it, or a temporary extra package, is paid for its share at its own cost.
/// Multiplied before it is divided, so exact to the last digit kept (`67.225` for 3 h of a
/// package commissioning 3 h at `67.225`, not `67.22499...`). At `cpli`'s own unit cost where the
/// package commissions nothing, or holds a CPLI of a frequency that cannot be pro rata (`Monthly`):
/// its part could not be counted.
pub fn period_cost<'a>(qty: Decimal, cpli: &Cpli, cplis: impl IntoIterator<Item = &'a Cpli>, from: NaiveDate, to: NaiveDate) -> Option<Decimal> {
    let package = package_in(cpli, cplis, from, to);
    let own = || qty.checked_mul(cpli.unit_cost);
    if package.iter().any(|c| c.quantity.pro_rata(1).is_none()) {
        return own();
    }
    let (comm_qty, comm_cost) = commissioned(package, from, to, &cpli.quantity).ok()?;
    if comm_qty.is_zero() { own() } else { qty.checked_mul(comm_cost)?.checked_div(comm_qty) }
}

/// A week in which two CPLIs of `cpli`'s package are in force on one day (a temporary extra
/// package beside the open one, the guide's scenario 2): what the package commissions that week,
/// `(quantity, cost)`, so that its visits, which all match the earliest-starting CPLI, are paid at
/// the package's rate, cost over quantity (since 2026-12-03; they were paid at that CPLI's cost
/// alone: 8.5 h commissioned and delivered as 5 h at £23 and 3.5 h at £25 was paid £195.50, not
/// £202.50). `None` otherwise (a variation mid-week: each visit matches the CPLI of its day and is
/// paid at its cost), or when a CPLI of the package cannot be counted by the day (`Monthly`).
pub fn shared_week<'a>(cpli: &Cpli, cplis: impl IntoIterator<Item = &'a Cpli>, monday: NaiveDate) -> Option<(Decimal, Decimal)> {
    let sunday = monday + chrono::Duration::days(6);
    let mut package = package_in(cpli, cplis, monday, sunday);
    // A Spot package is invoiced, not paid from visits: its cost is no part of the rate.
    package.retain(|c| !c.is_spot());
    let shared = monday.iter_days().take(7).any(|d| package.iter().filter(|c| c.covers(d)).count() > 1);
    if !shared || package.iter().any(|c| c.quantity.pro_rata(1).is_none()) {
        return None;
    }
    commissioned(package, monday, sunday, &cpli.quantity).ok().filter(|(qty, _)| !qty.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(id: &str, start: NaiveDate, end: Option<NaiveDate>, hours: &str, cost: &str) -> Cpli {
        Cpli {
            cpli_id: id.into(), ssref: "A1".into(), client_name: String::new(), nhs_number: None, client_ref: None,
            organisation_ref: None, organisation_name: String::new(), service_ref: None, service_name: "S".into(),
            contract: "LWAH".into(), service_level_ref: None, service_level: "Home Support".into(), start_date: start, end_date: end,
            quantity: Quantity { amount: hours.parse().unwrap(), unit: "Hr".into(), frequency: "Weekly".into() }, unit_cost: cost.parse().unwrap(), authorised: true,
        }
    }

    #[test]
    fn a_week_shared_by_a_temporary_extra_package_is_paid_at_the_packages_rate_and_a_varied_week_is_not() {
        let d = |day: u32| NaiveDate::from_ymd_opt(2022, 10, day).unwrap();
        let open = weekly("1", d(3), None, "5", "23");
        let temporary = weekly("2", d(10), Some(d(16)), "3.5", "25");
        let both = [open.clone(), temporary.clone()];
        let (qty, cost) = shared_week(&open, &both, d(10)).unwrap();
        assert_eq!((qty, cost), ("8.5".parse().unwrap(), "202.5".parse().unwrap()), "5 h at £23 and 3.5 h at £25");
        assert_eq!(shared_week(&open, &both, d(3)), None, "the week before it: the open package alone");
        // Varied on Wednesday: each day has one CPLI.
        let (mut before, after) = (weekly("3", d(3), Some(d(11)), "5", "20"), weekly("4", d(12), None, "7", "22.50"));
        assert_eq!(shared_week(&before, &[before.clone(), after.clone()], d(10)), None);
        // A Spot package beside it is invoiced, not part of the rate.
        let mut spot = temporary.clone();
        spot.contract = "Spot".into();
        assert_eq!(shared_week(&open, &[open.clone(), spot], d(10)), None);
        // A CPLI counted by the month cannot be shared out by the day.
        before.end_date = None;
        before.quantity.frequency = "Monthly".into();
        assert_eq!(shared_week(&before, &[before.clone(), after], d(10)), None);
    }

    #[test]
    fn days_in_force_are_the_days_of_the_range_between_start_and_end() {
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2022, m, day).unwrap();
        let mut c = Cpli {
            cpli_id: "1".into(), ssref: "A1".into(), client_name: String::new(), nhs_number: None, client_ref: None,
            organisation_ref: None, organisation_name: String::new(), service_ref: None, service_name: String::new(),
            contract: String::new(), service_level_ref: None, service_level: String::new(), start_date: d(10, 10), end_date: None,
            quantity: Quantity { amount: Decimal::ONE, unit: "Hr".into(), frequency: "Weekly".into() }, unit_cost: Decimal::ONE, authorised: true,
        };
        assert_eq!(c.days_in_force(d(10, 3), d(10, 30)), 21);
        c.end_date = Some(d(10, 12));
        assert_eq!(c.days_in_force(d(10, 3), d(10, 30)), 3);
        assert_eq!(c.days_in_force(d(10, 13), d(10, 30)), 0, "ended before");
        assert_eq!(c.days_in_force(d(10, 3), d(10, 9)), 0, "starts after");
    }

    #[test]
    fn hours_per_week_are_comparable_and_other_units_are_not() {
        let q = |unit: &str, freq: &str| Quantity { amount: Decimal::new(35, 1), unit: unit.into(), frequency: freq.into() };
        assert_eq!(q("Hr", "Weekly").weekly_hours(), Some(Decimal::new(35, 1)));
        assert_eq!(q("Night", "Weekly").weekly_hours(), None);
        // The average week of a four-weekly, fortnightly or daily package, exact.
        assert_eq!(q("Hr", "4 Weekly").weekly_hours(), Some(Decimal::new(875, 3)));
        assert_eq!(q("Hours", "Fortnightly").weekly_hours(), Some(Decimal::new(175, 2)));
        assert_eq!(q("Hr", "Daily").weekly_hours(), Some(Decimal::new(245, 1)));
        assert_eq!(q("Visit", "Weekly").weekly_hours(), None);
        assert_eq!(q("Hr", "Monthly").weekly_hours(), None);
        // One week's planned visits are held only to an even package.
        assert_eq!(q("Hr", "Daily").exact_weekly_hours(), Some(Decimal::new(245, 1)));
        assert_eq!(q("Hr", "4 Weekly").exact_weekly_hours(), None);
    }

    #[test]
    fn the_quantity_for_a_period_is_the_quantity_per_frequency_times_whole_frequencies() {
        let q = |freq: &str| Quantity { amount: Decimal::new(35, 1), unit: "Hr".into(), frequency: freq.into() };
        assert_eq!(q("Weekly").for_period(7), Some(Decimal::new(35, 1)));
        assert_eq!(q("weekly").for_period(28), Some(Decimal::from(14)));
        assert_eq!(q("4 Weekly").for_period(28), Some(Decimal::new(35, 1)));
        assert_eq!(q("Daily").for_period(7), Some(Decimal::new(245, 1)));
        assert_eq!(q("Weekly").for_period(10), None);
        assert_eq!(q("Monthly").for_period(31), None);
        assert_eq!(q("Weekly").for_period(0), None);
    }
}
