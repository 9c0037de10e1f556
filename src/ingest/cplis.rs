//! The council's CPLI extract (SPEC 1): upserted by CPLIID, creating the organisations and services it names.

use std::path::Path;

use rust_decimal::Decimal;

use crate::domain::cell::describe_control;
use crate::domain::number::{parse_bounded, thousands, MAX_AMOUNT, QUANTITY_DECIMALS, UNIT_COST_DECIMALS};
use crate::domain::{council_guid, forbidden_control, parse_date, quote, Cpli, Organisation, Quantity, Service, TextKind};

#[derive(Debug, thiserror::Error)]
pub enum CpliError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: csv::Error },
    #[error("the CPLI extract has problems; nothing was loaded:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

const REQUIRED: [&str; 11] = [
    "CPLIID", "SSRef", "OrganisationName", "ServiceName", "ServiceLevel", "StartDate", "Quantity", "Unit", "Frequency", "UnitCost", "Authorised",
];

/// Reads the whole extract; any bad row fails it (a council extract is loaded all or nothing).
pub fn read_extract(path: &Path) -> Result<Vec<Cpli>, CpliError> {
    let read_err = |source| CpliError::Read { path: path.display().to_string(), source };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(read_err)?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(read_err)?
        .iter()
        .map(|h| super::source::heading_key(h.trim_start_matches('\u{FEFF}')))
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == super::source::heading_key(name));
    let missing: Vec<String> = REQUIRED.iter().filter(|h| col(h).is_none()).map(|h| format!("the heading {h} is missing")).collect();
    if !missing.is_empty() {
        return Err(CpliError::Invalid(missing));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("row {row}: {e}"));
                continue;
            }
        };
        let get = |name: &str| col(name).and_then(|c| rec.get(c)).map(str::trim).unwrap_or("").to_string();
        let opt = |name: &str| Some(get(name)).filter(|s| !s.is_empty());
        let mut bad = |msg: String| problems.push(format!("row {row}: {msg}"));
        // Issue 9: no control character is stored from an extract either.
        for (i, cell) in rec.iter().enumerate() {
            if let Some((at, c)) = forbidden_control(cell, TextKind::Plain) {
                let heading = header.get(i).map_or(String::new(), |h| format!(" ({})", quote(h)));
                bad(format!("column {}{heading} holds a control character, {}, at character {at}", i + 1, describe_control(c)));
            }
        }
        let date = |name: &str| {
            let v = get(name);
            parse_date(&v).or_else(|| chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok())
        };
        // Bounded (issue 9): a quantity or unit cost of 7.9e28 made the reports' arithmetic panic.
        let amount = |name: &str, decimals: u32, bad: &mut dyn FnMut(String)| -> Option<Decimal> {
            let v = get(name);
            parse_bounded(v.trim_start_matches('£').replace(',', "").as_str(), decimals)
                .map_err(|e| {
                    bad(format!(
                        "{name} '{}' {e}: it must be a number from 0 to {} with at most {decimals} decimal places",
                        quote(&v),
                        thousands(MAX_AMOUNT.into())
                    ))
                })
                .ok()
        };
        for h in ["CPLIID", "SSRef", "OrganisationName", "ServiceName", "ServiceLevel"] {
            if get(h).is_empty() {
                bad(format!("{h} is required"));
            }
        }
        let start = date("StartDate");
        if start.is_none() {
            bad(format!("StartDate '{}' is not a date", quote(&get("StartDate"))));
        }
        let end = match opt("EndDate") {
            None => None,
            Some(v) => {
                let d = date("EndDate");
                if d.is_none() {
                    bad(format!("EndDate '{}' is not a date", quote(&v)));
                }
                d
            }
        };
        let quantity = amount("Quantity", QUANTITY_DECIMALS, &mut bad);
        let unit_cost = amount("UnitCost", UNIT_COST_DECIMALS, &mut bad);
        let authorised = match get("Authorised").to_ascii_uppercase().as_str() {
            "Y" | "YES" | "1" | "TRUE" => Some(true),
            "N" | "NO" | "0" | "FALSE" | "" => Some(false),
            other => {
                bad(format!("Authorised '{}' must be Y or N", quote(other)));
                None
            }
        };
        let (Some(start_date), Some(quantity), Some(unit_cost), Some(authorised)) = (start, quantity, unit_cost, authorised) else {
            continue;
        };
        out.push(Cpli {
            cpli_id: get("CPLIID"),
            ssref: get("SSRef").to_uppercase(),
            client_name: get("ClientName"),
            nhs_number: opt("NHSNumber").map(|n| n.replace(' ', "")),
            client_ref: council_guid(&get("ClientRef")),
            organisation_ref: council_guid(&get("OrganisationRef")),
            organisation_name: get("OrganisationName"),
            service_ref: council_guid(&get("ServiceRef")),
            service_name: get("ServiceName"),
            contract: get("Contract"),
            service_level_ref: council_guid(&get("ServiceLevelRef")),
            service_level: get("ServiceLevel"),
            start_date,
            end_date: end,
            quantity: Quantity { amount: quantity, unit: get("Unit"), frequency: get("Frequency") },
            unit_cost,
            authorised,
        });
    }
    if problems.is_empty() { Ok(out) } else { Err(CpliError::Invalid(problems)) }
}

/// The organisations the extract names, with their services, merged into what is already known.
pub fn organisations(cplis: &[Cpli], mut known: Vec<Organisation>) -> Vec<Organisation> {
    let mut touched: Vec<crate::domain::Slug> = Vec::new();
    for c in cplis {
        let pos = match known.iter().position(|o| o.is_named(&c.organisation_name)) {
            Some(p) => p,
            None => {
                known.push(Organisation::new(&c.organisation_name, None));
                known.len() - 1
            }
        };
        let org = &mut known[pos];
        if c.organisation_ref.is_some() {
            org.org_ref = c.organisation_ref.clone();
        }
        org.upsert_service(Service { name: c.service_name.clone(), service_ref: c.service_ref.clone(), contract: c.contract.clone() });
        if !touched.contains(&org.slug) {
            touched.push(org.slug.clone());
        }
    }
    known.retain(|o| touched.contains(&o.slug));
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "CPLIID,SSRef,OrganisationName,ServiceName,ServiceLevel,StartDate,Quantity,Unit,Frequency,UnitCost,Authorised";

    fn load(rows: &[&str]) -> Result<Vec<Cpli>, CpliError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        std::fs::write(&path, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
        read_extract(&path)
    }

    #[test]
    fn an_extract_row_with_a_quantity_or_unit_cost_out_of_range_refuses_the_whole_load() {
        let max = "79228162514264337593543950335";
        let ok = "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        assert_eq!(load(&[ok]).unwrap()[0].unit_cost, "23.226".parse::<Decimal>().unwrap());
        let huge = format!("2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,{max},Hr,Weekly,{max},Y");
        let Err(CpliError::Invalid(problems)) = load(&[ok, &huge]) else { panic!("a huge CPLI was loaded") };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("row 3: Quantity") && problems[0].contains("from 0 to 1,000,000"), "{problems:?}");
        assert!(problems[1].starts_with("row 3: UnitCost") && problems[1].contains("at most 6 decimal places"), "{problems:?}");
    }

    #[test]
    fn an_extract_row_with_a_control_character_is_refused() {
        let Err(CpliError::Invalid(problems)) = load(&["1,A\u{0}1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y"]) else {
            panic!("a NUL was loaded")
        };
        assert!(problems[0].contains("column 2 (ssref) holds a control character, U+0000 (NUL)"), "{problems:?}");
    }
}
