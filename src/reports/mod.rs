//! What the council gets out (SPEC 5): actuals from visits, commissioned vs actuals, hospital
//! incentive, the commissioned care export. Pure functions over plain domain types; the store and
//! the files are read and written by the callers.

pub mod actuals;
pub mod export;
pub mod hospital;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

pub use actuals::{commissioned_vs_actuals, ActualsOptions, ActualsRow, ClientWeek, Source, WeekActuals};
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

/// Minutes as hours in words: "5 {unit}", "7.5 {unit}" where two decimals give them exactly, else
/// "5 h 5 min" (never 5.0833...).
pub fn hours_in_words(minutes: i64, unit: &str) -> String {
    if (minutes * 100) % 60 == 0 {
        format!("{} {unit}", quantity_text(hours(minutes)))
    } else {
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

/// Hours in `minutes`, exactly (as far as 28 digits go). Cannot overflow: any i64 divided by 60 fits.
pub fn hours(minutes: i64) -> Decimal {
    Decimal::from(minutes) / Decimal::from(60)
}

/// A report figure too large to compute (issue 9: it panicked). Extracts are bounded when loaded, so
/// only a CPLI stored before those bounds can cause it; the report names it instead of crashing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the report cannot be computed: the figures of CPLI {cpli_id} are too large (quantity {quantity}, unit cost {unit_cost}); \
     load a corrected CPLI extract (quantities and unit costs are at most 1,000,000)"
)]
pub struct Overflow {
    pub cpli_id: String,
    pub quantity: String,
    pub unit_cost: String,
}

impl Overflow {
    pub fn of(c: &crate::domain::Cpli) -> Overflow {
        use crate::domain::quote;
        Overflow {
            cpli_id: quote(&c.cpli_id).to_string(),
            quantity: quote(&c.quantity.amount.to_string()).to_string(),
            unit_cost: quote(&c.unit_cost.to_string()).to_string(),
        }
    }
}

/// A report as CSV: the SPEC 6 column names as headings, one row per line.
pub fn table_csv<R: AsRef<[String]>>(columns: &[&str], rows: impl IntoIterator<Item = R>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(columns);
    for r in rows {
        // A provider's text Excel would run (an SSRef `=X1`) is neutralised, as in every CSV out.
        let _ = w.write_record(r.as_ref().iter().map(|c| crate::outcome::excel_safe_cell(c).into_owned()));
    }
    w.into_inner().unwrap_or_default()
}

/// A report as a JSON array of objects keyed by the column names. Counts (`visits`, `working_days`,
/// `null` when there are none) are numbers;
/// quantities and money stay strings holding exact decimals (SPEC 6), so no reader turns them into floats.
pub fn table_json<R: AsRef<[String]>>(columns: &[&str], rows: impl IntoIterator<Item = R>) -> String {
    // Written by hand so the keys keep the report's column order.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = String::from("[");
    for (n, r) in rows.into_iter().enumerate() {
        out.push_str(if n == 0 { "\n  {" } else { ",\n  {" });
        for (i, (k, v)) in columns.iter().zip(r.as_ref()).enumerate() {
            let value = match (*k, v.parse::<u64>()) {
                ("visits" | "working_days", Ok(count)) => count.to_string(),
                // No working days: care not resumed.
                ("working_days", Err(_)) if v.is_empty() => "null".into(),
                _ => quote(v),
            };
            out.push_str(&format!("{}{}: {value}", if i == 0 { "" } else { ", " }, quote(k)));
        }
        out.push('}');
    }
    out.push_str("\n]");
    out
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

    #[test]
    fn json_reports_keep_money_as_exact_decimal_strings() {
        let rows = [vec!["A1".to_string(), "3".into(), "-22.06".into()]];
        let v: serde_json::Value = serde_json::from_str(&table_json(&["ssref", "visits", "diff_cost"], rows)).unwrap();
        assert_eq!(v, serde_json::json!([{"ssref": "A1", "visits": 3, "diff_cost": "-22.06"}]));
    }

    #[test]
    fn json_reports_give_working_days_as_a_number_or_null() {
        let rows = [vec!["5".to_string(), "47.54".into()], vec!["".to_string(), "0.00".into()]];
        let v: serde_json::Value = serde_json::from_str(&table_json(&["working_days", "amount"], rows)).unwrap();
        assert_eq!(v, serde_json::json!([{"working_days": 5, "amount": "47.54"}, {"working_days": null, "amount": "0.00"}]));
    }
}
