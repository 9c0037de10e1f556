//! An actuals row once accepted (SPEC 2.2): what was planned, delivered, frustrated, missed and
//! extra for one client, service and period, its CPLI match and its total cost.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Guid, MatchStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    pub ssref: String,
    pub service_level: String,
    pub service_name: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub planned: Decimal,
    pub actual: Decimal,
    pub frustrated: Decimal,
    pub missed: Decimal,
    pub extra: Decimal,
    pub visits: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<Guid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_level_ref: Option<Guid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<Guid>,
    pub matched: MatchStatus,
    /// (Actual + Frustrated) x the matched CPLI's unit cost, exact; `None` while unmatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cost: Option<Decimal>,
}

impl Actual {
    /// Over-delivery needs a comment (guide: "Compulsory if there has been an over delivery of
    /// planned care"). SPEC 2.2 names Actual or Extra above Planned; Extra is delivered "in addition
    /// to those planned", so Actual + Extra above Planned is over-delivery too (it covers both).
    /// A sum too large to compute is more than any Planned (issue 9: it panicked). Frustrated units
    /// are planned units the client missed ("originally planned but missed"), so Actual +
    /// Frustrated above Planned is paid for more than was planned: over-delivery too (since
    /// 2026-12-03; Planned 10, Actual 10, Frustrated 10 was paid 20 without a word).
    pub fn is_over_delivery(&self) -> bool {
        let over = |with: Decimal| self.actual.checked_add(with).is_none_or(|sum| sum > self.planned);
        over(self.extra) || over(self.frustrated)
    }

    /// The guide's "Total Cost" on Actual + Frustrated. The CPLI extract does not say which packages
    /// pay on planned quantity instead, so every package is costed on what was delivered. `None` when
    /// the figure is beyond what can be computed (values are bounded when read, so only a CPLI stored
    /// before the bounds of issue 9 can get here).
    pub fn cost_at(&self, unit_cost: Decimal) -> Option<Decimal> {
        self.actual.checked_add(self.frustrated)?.checked_mul(unit_cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actual(planned: &str, actual: &str, extra: &str) -> Actual {
        let q = |s: &str| s.parse::<Decimal>().unwrap();
        Actual {
            ssref: "A401234".into(),
            service_level: "Extra Care Housing - Planned Care".into(),
            service_name: "Pearl Carers - Extra Care Oxford".into(),
            period_start: NaiveDate::from_ymd_opt(2022, 10, 3).unwrap(),
            period_end: NaiveDate::from_ymd_opt(2022, 10, 9).unwrap(),
            planned: q(planned),
            actual: q(actual),
            frustrated: q("0.5"),
            missed: Decimal::ZERO,
            extra: q(extra),
            visits: 14,
            comments: None,
            client_ref: None,
            nhs_number: None,
            service_level_ref: None,
            service_ref: None,
            matched: MatchStatus::Unmatched { reason: String::new() },
            total_cost: None,
        }
    }

    #[test]
    fn actual_with_extra_or_frustrated_above_planned_is_over_delivery() {
        assert!(actual("10", "10.5", "0").is_over_delivery());
        assert!(actual("1", "0", "1.25").is_over_delivery());
        assert!(actual("10", "10", "1.25").is_over_delivery());
        assert!(!actual("10", "9.5", "0").is_over_delivery(), "9.5 and Frustrated 0.5: as planned");
        assert!(!actual("10", "8", "1").is_over_delivery());
        let mut paid_twice = actual("10", "10", "0");
        paid_twice.frustrated = Decimal::from(10);
        assert!(paid_twice.is_over_delivery(), "Actual + Frustrated above Planned");
        paid_twice.actual = Decimal::ZERO;
        assert!(!paid_twice.is_over_delivery(), "every planned unit frustrated");
    }

    #[test]
    fn total_cost_is_actual_plus_frustrated_times_the_unit_cost() {
        assert_eq!(actual("10", "9.5", "0").cost_at("21.50".parse().unwrap()), Some("215.000".parse::<Decimal>().unwrap()));
    }

    #[test]
    fn figures_too_large_to_add_are_over_delivery_and_have_no_cost_instead_of_panicking() {
        let max = Decimal::MAX.to_string();
        assert!(actual("10", &max, &max).is_over_delivery());
        assert_eq!(actual("10", &max, "0").cost_at(Decimal::TWO), None);
    }
}
