//! What the council gets out (SPEC 5): actuals from visits, commissioned vs actuals, hospital
//! incentive, the commissioned care export. Pure functions over plain domain types; the store and
//! the files are read and written by the callers.

pub mod actuals;
pub mod export;
pub mod hospital;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

pub use actuals::{commissioned_vs_actuals, ActualsOptions, ActualsRow, WeekActuals};
pub use export::commissioned_care_csv;
pub use hospital::{hospital_incentive, HospitalRow};

/// What a report needs of one stored visit: its CPLI, when, what kind, and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitFact {
    pub cpli_id: String,
    pub planned_date: NaiveDate,
    /// Minutes after midnight the visit was planned to start; orders a day's visits.
    pub planned_start: u32,
    /// The visit type's code as stored (upper case).
    pub visit_type: String,
    pub planned_minutes: i64,
    /// `None` for a visit type that is not delivered-based.
    pub delivered_minutes: Option<i64>,
}

/// Money to the penny, half-up (11.885 -> 11.89), applied once to the exact figure.
pub fn pennies(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Money as written in a report: always two decimals (`116.13`, `-22.06`).
pub fn money_text(d: Decimal) -> String {
    format!("{:.2}", pennies(d))
}

/// A quantity as written in a report: to two decimals half-up, without trailing zeros (`5`, `3.05`).
pub fn quantity_text(d: Decimal) -> String {
    pennies(d).normalize().to_string()
}

/// Hours in `minutes`, exactly (as far as 28 digits go).
pub fn hours(minutes: i64) -> Decimal {
    Decimal::from(minutes) / Decimal::from(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_rounded_half_up_to_the_penny() {
        assert_eq!(money_text("11.885".parse().unwrap()), "11.89");
        assert_eq!(money_text("-22.0647".parse().unwrap()), "-22.06");
        assert_eq!(money_text("-0.005".parse().unwrap()), "-0.01");
        assert_eq!(money_text("116.130".parse().unwrap()), "116.13");
        assert_eq!(money_text(Decimal::from(5)), "5.00");
    }

    #[test]
    fn quantities_are_written_without_trailing_zeros() {
        assert_eq!(quantity_text(Decimal::from(5)), "5");
        assert_eq!(quantity_text(hours(183)), "3.05");
        assert_eq!(quantity_text("-0.950".parse().unwrap()), "-0.95");
        assert_eq!(quantity_text(hours(10)), "0.17");
    }
}
