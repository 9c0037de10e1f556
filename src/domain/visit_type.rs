//! Visit types: what the code on a visit means for payment, charging and the delivered times.

use serde::{Deserialize, Serialize};

/// One visit type (guide: "Visit Types"). The table is configuration; `VisitTypes::default` is the guide's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitType {
    pub code: String,
    pub meaning: String,
    pub provider_paid: bool,
    pub client_charged: bool,
    /// Paid and charged on the delivered times (DHS, DHF, E); such a visit must carry them, others must not.
    pub delivered_based: bool,
    /// A comment is expected (E, U, C, C24): without one the visit is flagged `MISSING_COMMENT`.
    pub comment_expected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VisitTypes(pub Vec<VisitType>);

impl VisitTypes {
    /// Looks a code up in any case.
    pub fn get(&self, code: &str) -> Option<&VisitType> {
        self.0.iter().find(|t| t.code.eq_ignore_ascii_case(code))
    }

    pub fn codes(&self) -> String {
        self.0.iter().map(|t| t.code.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl Default for VisitTypes {
    fn default() -> Self {
        let t = |code: &str, meaning: &str, paid: bool, delivered: bool, comment: bool| VisitType {
            code: code.into(),
            meaning: meaning.into(),
            provider_paid: paid,
            client_charged: paid,
            delivered_based: delivered,
            comment_expected: comment,
        };
        VisitTypes(vec![
            t("C24", "cancelled with more than 24 hours' notice", false, false, true),
            t("C", "cancelled with less than 24 hours' notice", true, false, true),
            t("E", "exceptional: significantly over time, or an agreed extra visit", true, true, true),
            t("U", "undeliverable: attempted, no care delivered", true, false, true),
            t("DHS", "delivered, home support", true, true, false),
            t("DHF", "delivered, Live Well at Home contract", true, true, false),
            t("H", "client in hospital", false, false, false),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visit_type_codes_match_in_any_case() {
        let types = VisitTypes::default();
        assert_eq!(types.get("dhs").unwrap().code, "DHS");
        assert_eq!(types.get("c24").unwrap().code, "C24");
        assert!(types.get("X").is_none());
    }

    #[test]
    fn only_delivered_types_take_delivered_times() {
        let types = VisitTypes::default();
        let delivered: Vec<_> = types.0.iter().filter(|t| t.delivered_based).map(|t| t.code.as_str()).collect();
        assert_eq!(delivered, ["E", "DHS", "DHF"]);
    }
}
