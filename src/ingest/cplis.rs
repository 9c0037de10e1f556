//! The council's CPLI extract (SPEC 1): upserted by CPLIID, creating the organisations and services it names.

use std::path::Path;

use rust_decimal::Decimal;

use crate::domain::{council_guid, parse_date, Cpli, Organisation, Quantity, Service};

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
        let date = |name: &str| {
            let v = get(name);
            parse_date(&v).or_else(|| chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok())
        };
        let decimal = |name: &str| get(name).trim_start_matches('£').replace(',', "").parse::<Decimal>().ok();
        for h in ["CPLIID", "SSRef", "OrganisationName", "ServiceName", "ServiceLevel"] {
            if get(h).is_empty() {
                bad(format!("{h} is required"));
            }
        }
        let start = date("StartDate");
        if start.is_none() {
            bad(format!("StartDate '{}' is not a date", get("StartDate")));
        }
        let end = match opt("EndDate") {
            None => None,
            Some(v) => {
                let d = date("EndDate");
                if d.is_none() {
                    bad(format!("EndDate '{v}' is not a date"));
                }
                d
            }
        };
        let quantity = decimal("Quantity");
        if quantity.is_none() {
            bad(format!("Quantity '{}' is not a number", get("Quantity")));
        }
        let unit_cost = decimal("UnitCost");
        if unit_cost.is_none() {
            bad(format!("UnitCost '{}' is not a number", get("UnitCost")));
        }
        let authorised = match get("Authorised").to_ascii_uppercase().as_str() {
            "Y" | "YES" | "1" | "TRUE" => Some(true),
            "N" | "NO" | "0" | "FALSE" | "" => Some(false),
            other => {
                bad(format!("Authorised '{other}' must be Y or N"));
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
    let mut touched: Vec<String> = Vec::new();
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
