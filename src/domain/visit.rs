//! A visit once its row has been accepted: what was planned, what was delivered, and its CPLI match.

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use super::{Duration, Guid};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub visit_ref: String,
    pub planned_date: NaiveDate,
    pub planned_entry: NaiveTime,
    pub planned_exit: NaiveTime,
    /// The code as configured (upper case), e.g. `DHS`.
    pub visit_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Delivered>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<Guid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_level_ref: Option<Guid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carer_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<Guid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    pub matched: MatchStatus,
}

/// Delivered date and times, with the provider's overrides of times already submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub date: NaiveDate,
    pub entry: NaiveTime,
    pub exit: NaiveTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_override_reason: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub entry_overridden: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_override_reason: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exit_overridden: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum MatchStatus {
    Matched { cpli_id: String },
    Unmatched { reason: String },
}

impl MatchStatus {
    /// The same match: both matched to one CPLI, or both unmatched (whatever the reason says).
    pub fn same_match(&self, other: &MatchStatus) -> bool {
        match (self, other) {
            (MatchStatus::Matched { cpli_id: a }, MatchStatus::Matched { cpli_id: b }) => a == b,
            (MatchStatus::Unmatched { .. }, MatchStatus::Unmatched { .. }) => true,
            _ => false,
        }
    }
}

impl Visit {
    pub fn planned_duration(&self) -> Duration {
        Duration::between(self.planned_entry, self.planned_exit)
    }

    pub fn has_comment(&self) -> bool {
        self.comments.is_some() || self.variance_reason.is_some()
    }

    /// The guide suggests "[Double-Handed]" in the comment; providers write it many ways.
    pub fn says_double_handed(&self) -> bool {
        says_double_handed(self.comments.as_deref().unwrap_or(""))
    }

    /// The client as the file names it, for grouping a client's visits: SSRef, else ClientRef, else NHS number.
    pub fn client_key(&self) -> String {
        client_key(self.ssref.as_deref(), self.client_ref.as_ref(), self.nhs_number.as_deref())
    }

    pub fn cpli_id(&self) -> Option<&str> {
        match &self.matched {
            MatchStatus::Matched { cpli_id } => Some(cpli_id),
            MatchStatus::Unmatched { .. } => None,
        }
    }
}

pub fn says_double_handed(comment: &str) -> bool {
    let c = comment.to_lowercase();
    c.contains("double") && c.contains("hand")
}

pub fn client_key(ssref: Option<&str>, client_ref: Option<&Guid>, nhs: Option<&str>) -> String {
    match (ssref, client_ref, nhs) {
        (Some(s), _, _) => s.trim().to_uppercase(),
        (None, Some(g), _) => format!("ref:{g}"),
        (None, None, Some(n)) => format!("nhs:{}", n.replace(' ', "")),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_handed_is_recognised_however_it_is_written() {
        for c in ["[Double-Handed]", "Double-Handed - 2nd carer", "double handed call", "DOUBLE HANDED"] {
            assert!(says_double_handed(c), "{c}");
        }
        assert!(!says_double_handed("2nd carer"));
    }
}
