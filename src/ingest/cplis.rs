//! The council's CPLI extract (SPEC 1): upserted by CPLIID, creating the organisations and services it names.

use std::path::Path;

use rust_decimal::Decimal;

use super::headings as h;
use crate::domain::cell::describe_control;
use crate::domain::number::{parse_bounded, thousands, MAX_AMOUNT, QUANTITY_DECIMALS, UNIT_COST_DECIMALS};
use crate::domain::{date_message, forbidden_control, parse_date_cell, parse_guid, quote, Cpli, DateProblem, Guid, Organisation, Quantity, Service, TextKind};

#[derive(Debug, thiserror::Error)]
pub enum CpliError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: csv::Error },
    #[error("the CPLI extract has problems; nothing was loaded:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// The heading that makes a file a CPLI extract.
pub const CPLI_ID: &str = "CPLIID";

const REQUIRED: [&str; 11] = [
    CPLI_ID, h::SS_REF, h::ORGANISATION_NAME, h::SERVICE_NAME, h::SERVICE_LEVEL, h::START_DATE, "Quantity", h::UNIT, h::FREQUENCY, "UnitCost", "Authorised",
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
        let date = |name: &str, bad: &mut dyn FnMut(String)| {
            let v = get(name);
            parse_date_cell(&v).map_err(|problem: DateProblem| bad(date_message(name, quote(&v), problem))).ok()
        };
        // Issue 11: the extract's GUIDs are checked as a visits file checks them and kept in that one
        // form, so a GUID copied from the commissioned care export is always accepted back (the guide's
        // own export holds "SF54B181-...", which no visits file could send).
        let guid = |name: &str, bad: &mut dyn FnMut(String)| -> Option<Guid> {
            let v = get(name);
            if v.is_empty() {
                return None;
            }
            let g = parse_guid(&v);
            if g.is_none() {
                let at = col(name).map_or(String::new(), |c| format!("column {} ", c + 1));
                bad(format!(
                    "{at}({name}) '{}' is not a GUID: 32 hex digits (0-9, A-F) as 8-4-4-4-12; providers copy it from the commissioned care export into their files, which accept only GUIDs",
                    quote(&v)
                ));
            }
            g
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
        for h in [CPLI_ID, h::SS_REF, h::ORGANISATION_NAME, h::SERVICE_NAME, h::SERVICE_LEVEL] {
            if get(h).is_empty() {
                bad(format!("{h} is required"));
            }
        }
        let start = date(h::START_DATE, &mut bad);
        let end = opt(h::END_DATE).and_then(|_| date(h::END_DATE, &mut bad));
        let [client_ref, organisation_ref, service_ref, service_level_ref] =
            [h::CLIENT_REF, h::ORGANISATION_REF, h::SERVICE_REF, h::SERVICE_LEVEL_REF].map(|h| guid(h, &mut bad));
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
            cpli_id: get(CPLI_ID),
            ssref: get(h::SS_REF).to_uppercase(),
            client_name: get("ClientName"),
            nhs_number: opt(h::NHS_NUMBER).map(|n| n.replace(' ', "")),
            client_ref,
            organisation_ref,
            organisation_name: get(h::ORGANISATION_NAME),
            service_ref,
            service_name: get(h::SERVICE_NAME),
            contract: get("Contract"),
            service_level_ref,
            service_level: get(h::SERVICE_LEVEL),
            start_date,
            end_date: end,
            quantity: Quantity { amount: quantity, unit: get(h::UNIT), frequency: get(h::FREQUENCY) },
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

    fn load_with(header: &str, rows: &[&str]) -> Result<Vec<Cpli>, CpliError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        read_extract(&path)
    }

    const WITH_REFS: &str = "CPLIID,SSRef,OrganisationName,ServiceName,ServiceLevel,StartDate,Quantity,Unit,Frequency,UnitCost,Authorised,OrganisationRef,ServiceRef";

    #[test]
    fn an_extract_guid_that_a_visits_file_could_not_send_refuses_the_load_naming_row_and_column() {
        // The guide's own export shows this OrganisationRef: an S where a hex digit belongs.
        let row = "1,A1,Diamond Home Care Ltd,S,Home Support,03/10/2022,7,Hr,Weekly,23.77,Y,SF54B181-1C7B-469E-B37C-4B93FA9EBE1E,";
        let Err(CpliError::Invalid(problems)) = load_with(WITH_REFS, &["1,A0,Diamond Home Care Ltd,S,Home Support,03/10/2022,7,Hr,Weekly,23.77,Y,,", row]) else {
            panic!("a GUID no visits file can send was loaded")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("row 3: column 12 (OrganisationRef) 'SF54B181-1C7B-469E-B37C-4B93FA9EBE1E' is not a GUID"), "{problems:?}");
    }

    #[test]
    fn extract_guids_are_kept_in_the_one_form_a_visits_file_sends() {
        let row = "1,A1,Pearl Carers Ltd,S,Home Support,03/10/2022,7,Hr,Weekly,23.77,Y,{6513270e-269e-0d37-f2a7-4de452e6b438},36F675CC81E74EF5E8E25D940ED90475";
        let c = &load_with(WITH_REFS, &[row]).unwrap()[0];
        assert_eq!(c.organisation_ref.as_ref().unwrap().as_str(), "6513270E-269E-0D37-F2A7-4DE452E6B438");
        assert_eq!(c.service_ref.as_ref().unwrap().as_str(), "36F675CC-81E7-4EF5-E8E2-5D940ED90475");
    }

    #[test]
    fn extract_dates_take_every_form_a_provider_file_takes() {
        for date in ["2022-10-03", "3 Oct 22", "03/10/2022 00:00:00"] {
            let row = format!("1,A1,Pearl Carers Ltd,S,Home Support,{date},7,Hr,Weekly,23.77,Y");
            assert_eq!(load(&[&row]).unwrap()[0].start_date, chrono::NaiveDate::from_ymd_opt(2022, 10, 3).unwrap(), "{date}");
        }
        let Err(CpliError::Invalid(problems)) = load(&["1,A1,Pearl Carers Ltd,S,Home Support,03/10/2022 09:30,7,Hr,Weekly,23.77,Y"]) else {
            panic!("a start date with a time of day was loaded")
        };
        assert!(problems[0].starts_with("row 2: StartDate '03/10/2022 09:30' holds a time of day (09:30)"), "{problems:?}");
    }

    #[test]
    fn an_extract_row_with_a_control_character_is_refused() {
        let Err(CpliError::Invalid(problems)) = load(&["1,A\u{0}1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y"]) else {
            panic!("a NUL was loaded")
        };
        assert!(problems[0].contains("column 2 (ssref) holds a control character, U+0000 (NUL)"), "{problems:?}");
    }
}
