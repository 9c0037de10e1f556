//! An organisation's subscribed contacts (the guide's "Email Notifications: subscribe and
//! unsubscribe") and what each chooses to receive.

use serde::{Deserialize, Serialize};

use crate::outcome::{ImportResult, Status};

/// What a contact receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    /// One email for every processed file.
    Every,
    /// One email only for a file with rejected rows, data-quality issues, or that failed.
    Problems,
    /// One email a day listing the day's files, so a rostering system that sends every 15 minutes
    /// does not bury a manager in mail.
    Digest,
    /// Kept on the list but sent nothing (`--no-notify`).
    Off,
}

impl Notify {
    pub fn as_str(self) -> &'static str {
        match self {
            Notify::Every => "every",
            Notify::Problems => "problems",
            Notify::Digest => "digest",
            Notify::Off => "off",
        }
    }

    /// Whether this file is mailed to such a contact on its own (digest contacts get it later).
    pub fn wants_now(self, result: &ImportResult) -> bool {
        match self {
            Notify::Every => true,
            Notify::Problems => has_problems(result),
            Notify::Digest | Notify::Off => false,
        }
    }
}

pub fn has_problems(result: &ImportResult) -> bool {
    result.status == Status::Failed || result.counts.rejected > 0 || result.counts.data_quality_issues > 0
}

/// An email address checked when it is added: `local@domain` as SMTP takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(lettre::Address);

#[derive(Debug, thiserror::Error)]
#[error("'{address}' is not an email address ({reason}); write it as name@example.org")]
pub struct BadAddress {
    pub address: String,
    reason: String,
}

impl std::str::FromStr for EmailAddress {
    type Err = BadAddress;

    fn from_str(s: &str) -> Result<Self, BadAddress> {
        let s = s.trim();
        let bad = |reason: String| BadAddress { address: s.to_string(), reason };
        let address: lettre::Address = s.parse().map_err(|e: lettre::address::AddressError| bad(e.to_string()))?;
        // lettre accepts `name@localhost`; a provider's contact needs a domain mail can reach.
        if !address.domain().contains('.') && !address.domain().starts_with('[') {
            return Err(bad("the domain has no dot".into()));
        }
        Ok(EmailAddress(address))
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = BadAddress;
    fn try_from(s: String) -> Result<Self, BadAddress> {
        s.parse()
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0.to_string()
    }
}

impl EmailAddress {
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    pub fn address(&self) -> &lettre::Address {
        &self.0
    }

    /// The same mailbox whatever the case it was typed in: the key a contact is stored under.
    pub fn key(&self) -> String {
        self.as_str().to_lowercase()
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub email: EmailAddress,
    pub name: Option<String>,
    pub notify: Notify,
}

impl Contact {
    /// `Siân Jones <sian@example.org>` as an email header takes it (lettre encodes non-ASCII names).
    pub fn mailbox(&self) -> lettre::message::Mailbox {
        lettre::message::Mailbox::new(self.name.clone(), self.email.address().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Counts, FileKind};

    #[test]
    fn addresses_are_checked_when_added() {
        assert!("sian.jones@pearlcarers.co.uk".parse::<EmailAddress>().is_ok());
        assert!(" Zoe@Example.org ".parse::<EmailAddress>().is_ok());
        for bad in ["", "sian", "sian@", "@example.org", "two@@example.org", "a b@example.org", "sian@localhost"] {
            let err = bad.parse::<EmailAddress>().unwrap_err();
            assert!(err.to_string().contains("is not an email address"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_same_address_in_another_case_is_the_same_contact() {
        let a: EmailAddress = "Zoe@Example.org".parse().unwrap();
        let b: EmailAddress = "zoe@example.org".parse().unwrap();
        assert_eq!(a.key(), b.key());
    }

    fn result(status: Status, rejected: u64, dq: u64) -> ImportResult {
        ImportResult {
            kind: FileKind::Visits,
            status,
            counts: Counts { read: 3, new: 3, updated: 0, rejected, data_quality_issues: dq },
            ..ImportResult::new("visits.csv", "x", Some("Pearl Carers Ltd"), String::new())
        }
    }

    #[test]
    fn a_problems_only_contact_hears_of_rejections_warnings_and_failures_only() {
        assert!(!Notify::Problems.wants_now(&result(Status::Processed, 0, 0)));
        assert!(Notify::Problems.wants_now(&result(Status::Processed, 1, 0)));
        assert!(Notify::Problems.wants_now(&result(Status::Processed, 0, 2)));
        assert!(Notify::Problems.wants_now(&result(Status::Failed, 0, 0)));
        assert!(Notify::Every.wants_now(&result(Status::Processed, 0, 0)));
        assert!(!Notify::Digest.wants_now(&result(Status::Failed, 0, 0)));
        assert!(!Notify::Off.wants_now(&result(Status::Failed, 0, 0)));
    }
}
