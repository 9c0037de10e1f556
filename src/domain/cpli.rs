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
    /// Hours a week, where the CPLI is priced in hours per week (others cannot be compared with visits).
    pub fn weekly_hours(&self) -> Option<Decimal> {
        let hours = matches!(self.unit.to_ascii_lowercase().as_str(), "hr" | "hrs" | "hour" | "hours");
        (hours && self.frequency.eq_ignore_ascii_case("weekly")).then_some(self.amount)
    }
}

impl Cpli {
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.start_date <= date && self.end_date.is_none_or(|end| date <= end)
    }

    /// In force on every day of `from..=to`.
    pub fn covers_all(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.covers(from) && self.covers(to)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_per_week_are_comparable_and_other_units_are_not() {
        let q = |unit: &str, freq: &str| Quantity { amount: Decimal::new(35, 1), unit: unit.into(), frequency: freq.into() };
        assert_eq!(q("Hr", "Weekly").weekly_hours(), Some(Decimal::new(35, 1)));
        assert_eq!(q("Night", "Weekly").weekly_hours(), None);
        assert_eq!(q("Hr", "4 Weekly").weekly_hours(), None);
    }
}
