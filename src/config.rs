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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            rules: Rules::default(),
            periods: Periods::default(),
            limits: Limits::default(),
            watch: Watch::default(),
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
    /// The day weeks are judged "finished" against (PLANNED_HOURS_DIFFER); unset = today.
    #[serde(deserialize_with = "toml_date::optional")]
    pub today: Option<NaiveDate>,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: 512 * 1024 * 1024, max_line_bytes: 4 * 1024 * 1024 }
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
    fn unknown_configuration_keys_are_reported() {
        let err = toml::from_str::<Config>("[limits]\nmax_file_byte = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_file_byte"), "{err}");
    }
}
