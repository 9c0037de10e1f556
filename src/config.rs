//! `gateway.toml` -> `Config`. Every field has a working default, so `gateway serve` runs with no file.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::VisitTypes;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is not valid: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store, the organisations' folders, the spool and the archive live (`--data` overrides).
    pub data_dir: PathBuf,
    pub rules: Rules,
    pub periods: Periods,
    pub limits: Limits,
    pub watch: Watch,
    pub sftp: Sftp,
    pub mail: MailConfig,
    pub schedule: Schedule,
    pub hospital: Hospital,
    pub claims: Claims,
    pub disputes: Disputes,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            rules: Rules::default(),
            periods: Periods::default(),
            limits: Limits::default(),
            watch: Watch::default(),
            sftp: Sftp::default(),
            mail: MailConfig::default(),
            schedule: Schedule::default(),
            hospital: Hospital::default(),
            claims: Claims::default(),
            disputes: Disputes::default(),
        }
    }
}

/// The council's rules that change more often than the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Visit-type codes and what they mean (guide: "Visit Types").
    pub visit_types: VisitTypes,
    /// Service levels that take visits data (guide: "Service Levels").
    pub visit_service_levels: Vec<String>,
    /// Service levels that must not be on a visits file: such a row is rejected `NO_VISITS_FOR_SERVICE_LEVEL`.
    pub no_visit_service_levels: Vec<String>,
    /// A delivered visit this many minutes or more over its planned length needs a comment.
    pub over_planned_minutes: i64,
    /// Actuals quantities in hours must be whole multiples of this many minutes (SPEC 2.2: 0.25 h);
    /// 0 turns the check off.
    pub actuals_hours_step_minutes: i64,
    /// The gateway's day: what weeks are judged "finished" against (PLANNED_HOURS_DIFFER) and what
    /// dates disputes (raised, respond-by, overdue); unset = the local date.
    #[serde(deserialize_with = "toml_date::optional")]
    pub today: Option<NaiveDate>,
}

impl Rules {
    /// `today`, or the local date when it is not set.
    pub fn current_day(&self) -> NaiveDate {
        self.today.unwrap_or_else(|| chrono::Local::now().date_naive())
    }
}

impl Default for Rules {
    fn default() -> Self {
        let list = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Rules {
            visit_types: VisitTypes::default(),
            visit_service_levels: list(&[
                "Personal Care",
                "Continuing Care",
                "Medication Only",
                "Fast Track",
                "Home Support",
                "Home Support – Urgent Care",
                "HTLAH Maintenance",
                "HTLAH - Maintenance",
                "HTLAH - Developmental",
                "HTLAH Developmental",
            ]),
            no_visit_service_levels: list(&[
                "Live in care",
                "Extra care housing core charges",
                "Extra care housing block payments",
                "Reablement",
                "Reablement episodes",
            ]),
            over_planned_minutes: 60,
            actuals_hours_step_minutes: 15,
            today: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Periods {
    /// The first day of payment period 1; periods run `length_days` from there.
    #[serde(deserialize_with = "toml_date::required")]
    pub first_start: NaiveDate,
    pub length_days: i64,
}

impl Default for Periods {
    fn default() -> Self {
        Periods { first_start: NaiveDate::from_ymd_opt(2022, 10, 3).expect("valid date"), length_days: 28 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A larger file fails whole with `FILE_TOO_LARGE`.
    pub max_file_bytes: u64,
    /// A longer physical line makes the file `FILE_UNREADABLE` (no CSV row of the council's formats
    /// comes near it; it stops one line from filling memory).
    pub max_line_bytes: u64,
    /// A longer record (a row; quoted cells may span lines) makes the file `FILE_UNREADABLE`, so a
    /// cell is never held beyond it (issue 9: a quoted 450 MB cell cost 1.06 GB).
    pub max_record_bytes: u64,
    /// A header row with more cells makes the file `FILE_UNREADABLE`: a file whose line breaks were
    /// stripped reads as one header row of thousands of cells (issue 9).
    pub max_columns: usize,
    /// An SFTP upload is refused when it starts (at OPEN) if the data folder's file system has less
    /// free space than this (issue 9), so a full disk is met with a message rather than a broken file.
    pub min_free_disk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 512 * 1024 * 1024,
            max_line_bytes: 4 * 1024 * 1024,
            max_record_bytes: 1024 * 1024,
            max_columns: 200,
            min_free_disk_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Watch {
    /// After a file is closed (or renamed to `*.csv`) in an inbox, wait this long without another
    /// event on it before claiming it, so a writer that reopens to append is not cut short.
    pub settle_ms: u64,
}

impl Default for Watch {
    fn default() -> Self {
        Watch { settle_ms: 300 }
    }
}

/// The SFTP front door. The upload size limit is `limits.max_file_bytes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sftp {
    /// Where `gateway serve` listens for SSH (`serve --listen ADDR` overrides).
    pub listen: String,
    /// The ed25519 host key, made on first start (mode 0600) and reused afterwards. A relative path
    /// is under the data folder, whatever the working directory (issue 9).
    pub host_key: PathBuf,
    /// Files waiting in an inbox (pending temporary names and uploads in progress) before a new
    /// upload is refused.
    pub max_inbox_files: usize,
    pub max_sessions_per_login: usize,
    pub max_sessions: usize,
    /// This many wrong passwords for one login from one address within `failure_window_secs` refuse
    /// that login's passwords from that address for `lockout_secs`, even the right one. Keys are
    /// never refused by the lockout, and other addresses are not affected (issue 9).
    pub max_failed_logins: usize,
    /// This many failed passwords from one address, whatever the logins, refuse every password from
    /// that address for `lockout_secs`.
    pub max_failed_logins_per_address: usize,
    pub failure_window_secs: u64,
    pub lockout_secs: u64,
    /// Every refused login attempt takes at least this long, to slow guessing.
    pub failed_login_delay_ms: u64,
    /// A session idle this long is closed.
    pub idle_timeout_secs: u64,
    /// A connection not logged in this long after it was accepted is closed, whatever it sends
    /// meanwhile (OpenSSH's LoginGraceTime).
    pub login_grace_secs: u64,
    /// Connections not logged in yet, from one address and in all; one over either is closed at
    /// once (OpenSSH's PerSourceMaxStartups and MaxStartups).
    pub max_startups_per_source: usize,
    pub max_startups: usize,
}

/// Where the host key is kept unless `sftp.host_key` says otherwise: under the data folder.
pub const DEFAULT_HOST_KEY: &str = "keys/ssh_host_ed25519_key";

impl Default for Sftp {
    fn default() -> Self {
        Sftp {
            listen: "127.0.0.1:2222".into(),
            host_key: PathBuf::from(DEFAULT_HOST_KEY),
            max_inbox_files: 1000,
            max_sessions_per_login: 50,
            max_sessions: 500,
            max_failed_logins: 5,
            max_failed_logins_per_address: 20,
            failure_window_secs: 15 * 60,
            lockout_secs: 15 * 60,
            failed_login_delay_ms: 1000,
            idle_timeout_secs: 600,
            login_grace_secs: 120,
            max_startups_per_source: 10,
            max_startups: 100,
        }
    }
}

/// Email of results (issue 4). With no `smtp_host`, emails are written as `.eml` files to `outbox/`
/// under the data folder instead of being sent.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The sender, `Name <address>` or a bare address.
    pub from: String,
    /// The SMTP server; empty = no SMTP, `.eml` files in `outbox/`.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (upgrade a plain connection, the usual port 587), `tls` (TLS from the start, port
    /// 465) or `none` (plain text: only for a relay on the same machine or a test server).
    pub tls: MailTls,
    /// A PEM file of certificates to trust besides the bundled public roots: a private CA, or the
    /// SMTP server's own self-signed certificate (issue 9). Empty = the public roots only.
    pub ca_file: PathBuf,
    /// Login name; empty = no login.
    pub user: String,
    /// The password itself. Prefer `password_env`, which keeps it out of the file.
    pub password: String,
    /// The name of an environment variable holding the password (used when `password` is empty).
    pub password_env: String,
    /// The first retry after a failed send waits this long; each further one twice as long as the
    /// one before, up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often the outbox worker looks for mail that is due.
    pub poll_ms: u64,
    /// One SMTP conversation may take this long before it counts as failed.
    pub timeout_ms: u64,
    /// The daily digest goes out at this time (HH:MM or HH:MM:SS, the server's local time).
    pub digest_at: String,
    /// At most this many issues are spelt out in an email; the attached CSV has them all.
    pub max_issues: usize,
    /// A result CSV larger than this is not attached (the email says where it is instead).
    pub max_attachment_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    Starttls,
    Tls,
    None,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            from: "Provider file gateway <gateway@localhost>".into(),
            smtp_host: String::new(),
            smtp_port: 587,
            tls: MailTls::Starttls,
            ca_file: PathBuf::new(),
            user: String::new(),
            password: String::new(),
            password_env: String::new(),
            retry_initial_ms: 30_000,
            retry_max_ms: 30 * 60 * 1000,
            poll_ms: 1_000,
            timeout_ms: 30_000,
            digest_at: "17:00".into(),
            max_issues: 20,
            max_attachment_bytes: 5 * 1024 * 1024,
        }
    }
}

impl MailConfig {
    /// The password from the file, else from the named environment variable.
    pub fn password(&self) -> Option<String> {
        if !self.password.is_empty() {
            return Some(self.password.clone());
        }
        if self.password_env.is_empty() {
            return None;
        }
        std::env::var(&self.password_env).ok().filter(|p| !p.is_empty())
    }

    /// `digest_at` as a time of day (`HH:MM`, or `HH:MM:SS`).
    pub fn digest_time(&self) -> Result<chrono::NaiveTime, String> {
        time_of_day("mail.digest_at", &self.digest_at)
    }
}

// By hand, so the password never reaches a log line or an error message.
impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig")
            .field("from", &self.from)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "(hidden)" })
            .field("password_env", &self.password_env)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("poll_ms", &self.poll_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("digest_at", &self.digest_at)
            .field("max_issues", &self.max_issues)
            .field("max_attachment_bytes", &self.max_attachment_bytes)
            .finish()
    }
}

/// What the running gateway does on the council's clock (issue 10): payment periods locked a fixed
/// number of days after they end, and the council's daily summary email. Times are the server's
/// local time, as `mail.digest_at` is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Off by default: periods are locked by hand (`gateway period lock`) until the council turns it on.
    pub auto_lock: bool,
    /// A period is locked this many whole days after its last day, at `lock_at`. 14 is the
    /// extra-care guide's payment timetable: a period ending on a Sunday is finalised on the Monday
    /// two weeks later.
    pub lock_after_days: u32,
    /// The time of day (HH:MM or HH:MM:SS) a due lock is made.
    pub lock_at: String,
    /// The council's daily summary goes to its contacts at this time (HH:MM or HH:MM:SS).
    pub summary_at: String,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { auto_lock: false, lock_after_days: 14, lock_at: "00:00".into(), summary_at: "07:00".into() }
    }
}

impl Schedule {
    pub fn lock_time(&self) -> Result<chrono::NaiveTime, String> {
        time_of_day("schedule.lock_at", &self.lock_at)
    }

    pub fn summary_time(&self) -> Result<chrono::NaiveTime, String> {
        time_of_day("schedule.summary_at", &self.summary_at)
    }
}

/// The hospital incentive payment (issue 12): where the contracts and the guide leave a choice.
/// docs/claims.md says what each choice means.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hospital {
    /// Days that are not working days besides Saturdays and Sundays (DAPL: "discharged within 7
    /// Working Days of admission"). Default: the bank holidays of England and Wales, 2022 to 2027.
    #[serde(deserialize_with = "toml_date::list")]
    pub bank_holidays: Vec<NaiveDate>,
    /// DAPL pays a stay that ends (care resumed) within this many working days, the day of
    /// admission being the first.
    pub dapl_working_days: u32,
    /// What a longer DAPL stay is paid: `nothing` (the contract: "provided a Service User is
    /// discharged within 7 Working Days") or `first_working_days` (the guide's page: "for up to 7
    /// days": the missed visits of its first `dapl_working_days` working days).
    pub dapl_longer_stay: DaplLongerStay,
    /// LWAH holds the package open for up to this many days, the day of admission being the first,
    /// whether or not care resumes ("for up to fourteen days").
    pub lwah_days: u32,
    /// Whether the visits of the day the provider is told the client will stay in hospital are still
    /// paid (LWAH: the payment "will cease on the day the Provider is notified").
    pub lwah_notified_day_paid: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaplLongerStay {
    Nothing,
    FirstWorkingDays,
}

/// The bank holidays of England and Wales, 2022-2027 (gov.uk), the default `hospital.bank_holidays`.
pub const ENGLAND_AND_WALES_BANK_HOLIDAYS: &[(i32, u32, u32)] = &[
    (2022, 1, 3), (2022, 4, 15), (2022, 4, 18), (2022, 5, 2), (2022, 6, 2), (2022, 6, 3), (2022, 8, 29), (2022, 9, 19), (2022, 12, 26), (2022, 12, 27),
    (2023, 1, 2), (2023, 4, 7), (2023, 4, 10), (2023, 5, 1), (2023, 5, 8), (2023, 5, 29), (2023, 8, 28), (2023, 12, 25), (2023, 12, 26),
    (2024, 1, 1), (2024, 3, 29), (2024, 4, 1), (2024, 5, 6), (2024, 5, 27), (2024, 8, 26), (2024, 12, 25), (2024, 12, 26),
    (2025, 1, 1), (2025, 4, 18), (2025, 4, 21), (2025, 5, 5), (2025, 5, 26), (2025, 8, 25), (2025, 12, 25), (2025, 12, 26),
    (2026, 1, 1), (2026, 4, 3), (2026, 4, 6), (2026, 5, 4), (2026, 5, 25), (2026, 8, 31), (2026, 12, 25), (2026, 12, 28),
    (2027, 1, 1), (2027, 3, 26), (2027, 3, 29), (2027, 5, 3), (2027, 5, 31), (2027, 8, 30), (2027, 12, 27), (2027, 12, 28),
];

impl Default for Hospital {
    fn default() -> Self {
        Hospital {
            bank_holidays: ENGLAND_AND_WALES_BANK_HOLIDAYS.iter().map(|&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("valid date")).collect(),
            dapl_working_days: 7,
            dapl_longer_stay: DaplLongerStay::Nothing,
            lwah_days: 14,
            lwah_notified_day_paid: false,
        }
    }
}

/// One-off claims (issue 12, SPEC 9).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Claims {
    /// An attachment larger than this is refused (`BAD_ATTACHMENT`); an upload is also bounded by
    /// `limits.max_file_bytes`.
    pub max_attachment_bytes: u64,
}

impl Default for Claims {
    fn default() -> Self {
        Claims { max_attachment_bytes: 20 * 1024 * 1024 }
    }
}

/// Disputes (issue 12, SPEC 8).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Disputes {
    /// The provider answers within this many days of a dispute being raised (its RespondBy); past
    /// it with no answer the dispute is Overdue.
    pub respond_days: u32,
    /// A resolved dispute stays in the provider's `disputes.csv` this many days after it was closed.
    pub resolved_shown_days: u32,
}

impl Default for Disputes {
    fn default() -> Self {
        Disputes { respond_days: 7, resolved_shown_days: 90 }
    }
}

/// `HH:MM` or `HH:MM:SS`.
fn time_of_day(setting: &str, text: &str) -> Result<chrono::NaiveTime, String> {
    let t = text.trim();
    chrono::NaiveTime::parse_from_str(t, "%H:%M")
        .or_else(|_| chrono::NaiveTime::parse_from_str(t, "%H:%M:%S"))
        .map_err(|e| format!("{setting} '{text}' is not a time HH:MM: {e}"))
}

/// Dates written as TOML dates (`2022-10-03`) or as strings (`"2022-10-03"`).
mod toml_date {
    use chrono::NaiveDate;
    use serde::{de::Error, Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Toml(toml::value::Datetime),
        Text(String),
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = match Either::deserialize(d)? {
            Either::Toml(t) => t.to_string(),
            Either::Text(s) => s,
        };
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|e| D::Error::custom(format!("'{text}' is not a date YYYY-MM-DD: {e}")))
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        required(d).map(Some)
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
        Vec::<Either>::deserialize(d)?
            .into_iter()
            .map(|e| {
                let text = match e {
                    Either::Toml(t) => t.to_string(),
                    Either::Text(s) => s,
                };
                NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|e| D::Error::custom(format!("'{text}' is not a date YYYY-MM-DD: {e}")))
            })
            .collect()
    }
}

impl Config {
    /// Reads `path`, or returns the defaults when no path is given.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_configuration_file_gives_every_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.limits.max_file_bytes, 512 * 1024 * 1024);
        assert_eq!(c.periods.first_start, NaiveDate::from_ymd_opt(2022, 10, 3).unwrap());
        assert_eq!(c.rules.visit_types.0.len(), 7);
    }

    #[test]
    fn the_example_configuration_spells_out_exactly_the_defaults() {
        let text = include_str!("../examples/gateway.toml");
        let example: Config = toml::from_str(text).unwrap();
        assert_eq!(toml::to_string(&example).unwrap(), toml::to_string(&Config::default()).unwrap());
    }

    #[test]
    fn the_smtp_password_is_never_shown_by_debug() {
        let c: Config = toml::from_str("[mail]\nsmtp_host = \"smtp.example.org\"\npassword = \"hunter2\"\n").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("smtp.example.org"));
    }

    #[test]
    fn the_password_comes_from_the_named_environment_variable_when_the_file_has_none() {
        let mut m = MailConfig { password_env: "GATEWAY_TEST_SMTP_PASSWORD_XYZ".into(), ..MailConfig::default() };
        assert_eq!(m.password(), None);
        std::env::set_var("GATEWAY_TEST_SMTP_PASSWORD_XYZ", "s3cret");
        assert_eq!(m.password().as_deref(), Some("s3cret"));
        m.password = "in-file".into();
        assert_eq!(m.password().as_deref(), Some("in-file"));
    }

    #[test]
    fn the_default_bank_holidays_are_all_weekdays() {
        use chrono::Datelike;
        let h = Hospital::default();
        assert_eq!(h.bank_holidays.len(), ENGLAND_AND_WALES_BANK_HOLIDAYS.len());
        assert!(h.bank_holidays.iter().all(|d| d.weekday().number_from_monday() <= 5), "{:?}", h.bank_holidays);
    }

    #[test]
    fn unknown_configuration_keys_are_reported() {
        let err = toml::from_str::<Config>("[limits]\nmax_file_byte = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_file_byte"), "{err}");
    }
}
