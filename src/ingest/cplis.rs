//! The council's CPLI extract (SPEC 1): upserted by CPLIID, creating the organisations and services it names.

use std::path::Path;

use rust_decimal::Decimal;

use super::headings as h;
use crate::domain::cell::describe_control;
use crate::domain::number::{parse_bounded, thousands, without_thousands_commas, MAX_AMOUNT, QUANTITY_DECIMALS, UNIT_COST_DECIMALS};
use crate::domain::{date_message, forbidden_control, parse_date_cell, parse_guid, quote, uk_date, Cpli, DateProblem, Guid, Organisation, Quantity, Service, TextKind};
use crate::outcome::{Code, Issue};

#[derive(Debug, thiserror::Error)]
pub enum CpliError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the CPLI extract has problems; nothing was loaded:\n{}", lines(.0))]
    Invalid(Vec<CpliProblem>),
}

fn lines(problems: &[CpliProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// One refused row (or a missing heading) of an extract: where it is, what is wrong and what would
/// be right. Every bad row is found, not only the first (issue 10), and any one refuses the load.
#[derive(Debug, Clone, PartialEq)]
pub struct CpliProblem {
    /// The spreadsheet row (header = 1); `None` for a missing heading.
    pub row: Option<u64>,
    /// The row's CPLIID, when it has one.
    pub cpli_id: Option<String>,
    pub code: Code,
    /// The heading the problem is in.
    pub field: Option<String>,
    pub message: String,
    /// The row's cells, as a provider's result shows a rejected row.
    pub row_data: Option<String>,
}

impl std::fmt::Display for CpliProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            Some(row) => write!(f, "row {row}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl CpliProblem {
    /// The problem as a result file's issue.
    pub fn to_issue(&self) -> Issue {
        Issue {
            row: self.row,
            reference: self.cpli_id.clone(),
            severity: self.code.severity(),
            code: self.code,
            field: self.field.clone(),
            message: self.message.clone(),
            row_data: self.row_data.clone(),
        }
    }
}

/// The contracts the council commissions under (SPEC 1); a CPLI's Contract, when given, is one of
/// them, written as here.
pub const CONTRACTS: [&str; 5] = ["DAPL", "LWAH", "APL", "HTLAH", "Spot"];

/// `Contract` as the extract gives it -> the council's spelling; blank stays blank (extracts made
/// before the contract rules carried none, and a CPLI without one is matched all the same).
fn contract(given: &str) -> Result<String, String> {
    if given.is_empty() {
        return Ok(String::new());
    }
    CONTRACTS.iter().find(|c| c.eq_ignore_ascii_case(given)).map(|c| c.to_string()).ok_or_else(|| {
        format!("Contract '{}' is not a contract the council commissions under: it must be one of {}", quote(given), CONTRACTS.join(", "))
    })
}

/// The heading that makes a file a CPLI extract.
pub const CPLI_ID: &str = "CPLIID";

const REQUIRED: [&str; 11] = [
    CPLI_ID, h::SS_REF, h::ORGANISATION_NAME, h::SERVICE_NAME, h::SERVICE_LEVEL, h::START_DATE, "Quantity", h::UNIT, h::FREQUENCY, "UnitCost", "Authorised",
];

/// The other headings the load reads.
const OPTIONAL: [&str; 8] = [h::END_DATE, "ClientName", h::NHS_NUMBER, h::CLIENT_REF, h::ORGANISATION_REF, h::SERVICE_REF, h::SERVICE_LEVEL_REF, "Contract"];

/// The first row that gave a CPLIID.
struct FirstRow {
    row: u64,
    row_data: Option<String>,
    refused: bool,
}

/// Reads the whole extract; any bad row fails it (a council extract is loaded all or nothing).
/// `known`: the organisations stored already, whose folders another name must not take.
/// Whether the extract can be read at all, with the error [`read_extract`] would give (a command
/// sent to a running server checks this where it was typed).
pub fn check_readable(path: &Path) -> Result<(), CpliError> {
    super::source::not_csv(path).map(drop).map_err(|source| CpliError::Read { path: path.display().to_string(), source })
}

pub fn read_extract(path: &Path, known: &[Organisation]) -> Result<Vec<Cpli>, CpliError> {
    let read_err = |source: std::io::Error| CpliError::Read { path: path.display().to_string(), source };
    // Read as a provider's file is: UTF-8 or Windows-1252 (an extract saved by Excel), each row
    // numbered as a spreadsheet shows it (blank lines and cells over several lines counted).
    let file_problem = |code: Code, field: Option<&str>, message: String| CpliProblem { row: None, cpli_id: None, code, field: field.map(String::from), message, row_data: None };
    // Since 2026-12-03 as a provider's file is: a workbook, UTF-16, a PDF or an empty file is told
    // for what it is (they were answered with eleven missing headings).
    if let Some(message) = super::source::not_csv(path).map_err(read_err)? {
        return Err(CpliError::Invalid(vec![file_problem(Code::FileUnreadable, None, message)]));
    }
    let encoding = super::source::encoding_of(path).map_err(read_err)?;
    let mut rows = super::source::Rows::open(path, encoding).map_err(read_err)?;
    let header: Vec<String> = (0..rows.header.len()).map(|i| super::source::heading_key(rows.field(&rows.header, i).trim_start_matches('\u{FEFF}'))).collect();
    if header.iter().all(String::is_empty) {
        return Err(CpliError::Invalid(vec![file_problem(Code::FileEmpty, None, "the extract has no header row: it is empty or blank".into())]));
    }
    let col = |name: &str| header.iter().position(|h| *h == super::source::heading_key(name));
    let mut missing: Vec<CpliProblem> = REQUIRED
        .iter()
        .filter(|h| col(h).is_none())
        .map(|h| file_problem(Code::MissingColumn, Some(h), format!("the heading {h} is missing; a CPLI extract has the headings {}", REQUIRED.join(", "))))
        .collect();
    // A heading the load reads, twice: which column holds the CPLI's figure? (The first was taken.)
    for h in REQUIRED.iter().chain(&OPTIONAL) {
        let key = super::source::heading_key(h);
        let at: Vec<usize> = header.iter().enumerate().filter(|(_, k)| **k == key).map(|(i, _)| i + 1).collect();
        if let [first, second, ..] = at[..] {
            missing.push(file_problem(Code::DuplicateColumn, Some(h), format!("the heading {h} appears twice (columns {first} and {second}); keep one")));
        }
    }
    if !missing.is_empty() {
        return Err(CpliError::Invalid(missing));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    // CPLIID -> the first row that gave it: a CPLIID twice in one extract is refused on both rows.
    let mut seen: std::collections::HashMap<String, FirstRow> = std::collections::HashMap::new();
    let mut repeated_firsts = Vec::new();
    // The organisations named so far, by folder: two names of one folder are one organisation only
    // when they differ in case, spaces and dashes alone.
    let mut named: Vec<Organisation> = known.to_vec();
    // Each OrganisationRef given so far, with its organisation's name and the first row giving it:
    // within one extract a GUID has one name and a name one GUID (since 2026-12-03; a GUID under
    // two names made two organisations with one GUID).
    let mut given_refs: Vec<(Guid, Organisation, u64)> = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while let Some(row) = rows.next(&mut rec).map_err(read_err)? {
        let cells: Vec<String> = (0..rec.len()).map(|i| super::source::decode(encoding, rec.get(i).unwrap_or_default()).into_owned()).collect();
        let get = |name: &str| col(name).and_then(|c| cells.get(c)).map(|v| v.trim()).unwrap_or("").to_string();
        let opt = |name: &str| Some(get(name)).filter(|s| !s.is_empty());
        let cpli_id = opt(CPLI_ID);
        let row_data = Some(super::source::row_data(encoding, &rec));
        let mut bad = |code: Code, field: &str, message: String| {
            let field = (!field.is_empty()).then(|| field.to_string());
            problems.push(CpliProblem { row: Some(row), cpli_id: cpli_id.clone(), code, field, message, row_data: row_data.clone() });
        };
        // A row of more or fewer cells than headings is read no further: its cells are in the wrong columns.
        if let Some(message) = super::engine::wrong_field_count(rec.len(), header.len(), |i| rec.get(i).unwrap_or_default()) {
            bad(Code::WrongFieldCount, "", message);
            continue;
        }
        // Issue 9: no control character is stored from an extract either.
        for (i, cell) in cells.iter().enumerate() {
            if let Some((at, c)) = forbidden_control(cell, TextKind::Plain) {
                let heading = header.get(i).map_or(String::new(), |h| format!(" ({})", quote(h)));
                let field = header.get(i).cloned().unwrap_or_default();
                bad(Code::ControlCharacter, &field, format!("column {}{heading} holds a control character, {}, at character {at}", i + 1, describe_control(c)));
            }
        }
        let date = |name: &str, bad: &mut dyn FnMut(Code, &str, String)| {
            let v = get(name);
            parse_date_cell(&v).map_err(|problem: DateProblem| bad(Code::BadDate, name, date_message(name, quote(&v), problem))).ok()
        };
        // Issue 11: the extract's GUIDs are checked as a visits file checks them and kept in that one
        // form, so a GUID copied from the commissioned care export is always accepted back (the guide's
        // own export holds "SF54B181-...", which no visits file could send).
        let guid = |name: &str, bad: &mut dyn FnMut(Code, &str, String)| -> Option<Guid> {
            let v = get(name);
            if v.is_empty() {
                return None;
            }
            let g = parse_guid(&v);
            if g.is_none() {
                let at = col(name).map_or(String::new(), |c| format!("column {} ", c + 1));
                bad(Code::BadGuid, name, format!(
                    "{at}({name}) '{}' is not a GUID: 32 hex digits (0-9, A-F) as 8-4-4-4-12; providers copy it from the commissioned care export into their files, which accept only GUIDs",
                    quote(&v)
                ));
            }
            g
        };
        // Bounded (issue 9): a quantity or unit cost of 7.9e28 made the reports' arithmetic panic.
        let amount = |name: &str, decimals: u32, bad: &mut dyn FnMut(Code, &str, String)| -> Option<Decimal> {
            let v = get(name);
            // Since 2026-12-03: every comma was dropped, so a decimal comma ("23,77") loaded 2377.
            let Some(plain) = without_thousands_commas(v.trim_start_matches('£').trim_start()) else {
                bad(Code::BadNumber, name, format!(
                    "{name} '{}' is not a number: a comma may only separate thousands (1,234.50); write decimals with a point (23.77)",
                    quote(&v)
                ));
                return None;
            };
            parse_bounded(&plain, decimals)
                .map_err(|e| {
                    let code = if e.is_not_a_number() { Code::BadNumber } else { Code::BadQuantity };
                    bad(code, name, format!(
                        "{name} '{}' {e}: it must be a number from 0 to {} with at most {decimals} decimal places",
                        quote(&v),
                        thousands(MAX_AMOUNT.into())
                    ))
                })
                .ok()
        };
        for (h, what) in [
            (CPLI_ID, "the finance system's id of the care package line item"),
            (h::SS_REF, "the client's id, e.g. A123456"),
            (h::ORGANISATION_NAME, "the provider's name, e.g. Pearl Carers Ltd"),
            (h::SERVICE_NAME, "the provider's service, e.g. Pearl Carers - DAPL South"),
            (h::SERVICE_LEVEL, "e.g. Personal Care"),
        ] {
            if get(h).is_empty() {
                bad(Code::Required, h, format!("{h} is required: {what}"));
            }
        }
        let org_name = get(h::ORGANISATION_NAME);
        if !org_name.is_empty() {
            match named.iter().find_map(|o| o.folder_clash(&org_name)) {
                Some(clash) => bad(Code::WrongOrganisation, h::ORGANISATION_NAME, format!("{}: {clash}", h::ORGANISATION_NAME)),
                None if !named.iter().any(|o| o.is_named(&org_name)) => named.push(Organisation::new(&org_name, None)),
                None => {}
            }
        }
        if let Some(id) = &cpli_id {
            match seen.get_mut(id) {
                Some(first) => {
                    bad(Code::DuplicateRef, CPLI_ID, format!("CPLIID {} is also on row {}: each CPLI is on one row of an extract", quote(id), first.row));
                    // The first row is refused too, once, naming the first repeat.
                    if !first.refused {
                        first.refused = true;
                        let message = format!("CPLIID {} is also on row {row}: each CPLI is on one row of an extract", quote(id));
                        let (row, row_data) = (Some(first.row), first.row_data.clone());
                        repeated_firsts.push(CpliProblem { row, cpli_id: cpli_id.clone(), code: Code::DuplicateRef, field: Some(CPLI_ID.into()), message, row_data });
                    }
                }
                None => {
                    seen.insert(id.clone(), FirstRow { row, row_data: row_data.clone(), refused: false });
                }
            }
        }
        let start = date(h::START_DATE, &mut bad);
        let end = opt(h::END_DATE).and_then(|_| date(h::END_DATE, &mut bad));
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                bad(Code::BadDate, h::END_DATE, format!("EndDate {} is before StartDate {}: a CPLI ends on or after the day it starts (a blank EndDate is open)", uk_date(e), uk_date(s)));
            }
        }
        let [client_ref, organisation_ref, service_ref, service_level_ref] =
            [h::CLIENT_REF, h::ORGANISATION_REF, h::SERVICE_REF, h::SERVICE_LEVEL_REF].map(|h| guid(h, &mut bad));
        // A stored organisation's GUID under another name: a rename would make a second
        // organisation (another folder, no logins) and leave the first one's visits unmatched.
        let holders: Vec<&Organisation> = organisation_ref.as_ref().map(|g| known.iter().filter(|o| o.org_ref.as_ref() == Some(g)).collect()).unwrap_or_default();
        if let Some(o) = holders.first().filter(|_| !org_name.is_empty() && !holders.iter().any(|o| o.is_named(&org_name))) {
            bad(
                Code::WrongOrganisation,
                h::ORGANISATION_REF,
                format!(
                    "{} {} is the organisation '{}', but {} says '{}': the gateway does not rename an organisation (its folder and logins go by the name); give the name '{}', or correct {}",
                    h::ORGANISATION_REF,
                    o.org_ref.as_ref().map(|g| g.to_string()).unwrap_or_default(),
                    o.name,
                    h::ORGANISATION_NAME,
                    quote(&org_name),
                    o.name,
                    h::ORGANISATION_REF
                ),
            );
        }
        if let (Some(g), false) = (&organisation_ref, org_name.is_empty()) {
            let clash = given_refs.iter().find(|(given, o, _)| (given == g) != o.is_named(&org_name));
            match clash {
                Some((given, o, first)) if given == g => bad(
                    Code::WrongOrganisation,
                    h::ORGANISATION_REF,
                    format!(
                        "{} {g} is the organisation '{}' on row {first} of this extract, but {} here says '{}': an organisation has one name; give the name '{}', or correct {}",
                        h::ORGANISATION_REF,
                        o.name,
                        h::ORGANISATION_NAME,
                        quote(&org_name),
                        o.name,
                        h::ORGANISATION_REF
                    ),
                ),
                Some((given, o, first)) => bad(
                    Code::WrongOrganisation,
                    h::ORGANISATION_REF,
                    format!(
                        "{} {g} is given for '{}', which row {first} of this extract gives {} {given}: an organisation has one GUID; give the same {} on every row of the organisation",
                        h::ORGANISATION_REF,
                        o.name,
                        h::ORGANISATION_REF,
                        h::ORGANISATION_REF
                    ),
                ),
                None if !given_refs.iter().any(|(given, _, _)| given == g) => given_refs.push((g.clone(), Organisation::new(&org_name, None), row)),
                None => {}
            }
        }
        let quantity = amount("Quantity", QUANTITY_DECIMALS, &mut bad);
        let unit_cost = amount("UnitCost", UNIT_COST_DECIMALS, &mut bad);
        let authorised_text = get("Authorised");
        let authorised = match authorised_text.to_ascii_uppercase().as_str() {
            "Y" | "YES" | "1" | "TRUE" => Some(true),
            "N" | "NO" | "0" | "FALSE" | "" => Some(false),
            _ => {
                bad(Code::BadBoolean, "Authorised", format!("Authorised '{}' must be Y or N (Yes, No, 1, 0, True and False are read too; blank is N)", quote(&authorised_text)));
                None
            }
        };
        let contract = contract(&get("Contract")).map_err(|message| bad(Code::UnknownContract, "Contract", message)).ok();
        let (Some(start_date), Some(quantity), Some(unit_cost), Some(authorised), Some(contract)) = (start, quantity, unit_cost, authorised, contract) else {
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
            contract,
            service_level_ref,
            service_level: get(h::SERVICE_LEVEL),
            start_date,
            end_date: end,
            quantity: Quantity { amount: quantity, unit: get(h::UNIT), frequency: get(h::FREQUENCY) },
            unit_cost,
            authorised,
        });
    }
    problems.extend(repeated_firsts);
    if out.is_empty() && problems.is_empty() {
        problems.push(file_problem(Code::FileEmpty, None, "the extract has a header row but no CPLI rows: there is nothing to load".into()));
    }
    // In row order, as a provider's result lists its issues (the sort keeps a row's own order).
    problems.sort_by_key(|p| p.row);
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
        read_extract(&path, &[])
    }

    #[test]
    fn an_organisation_name_that_would_share_another_organisations_folder_refuses_the_load() {
        let pearl = "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        let shouting = "2,A2,PEARL CARERS LTD,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        assert_eq!(load(&[pearl, shouting]).unwrap().len(), 2);
        // Within the extract: "A&B Care" and "A B Care" would be one folder, a-b-care.
        let ab = "3,A3,A&B Care,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        let a_b = "4,A4,A B Care,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        let Err(CpliError::Invalid(problems)) = load(&[ab, a_b]) else { panic!("two organisations were merged") };
        assert_eq!((problems.len(), problems[0].row, problems[0].code), (1, Some(3), Code::WrongOrganisation), "{problems:?}");
        assert!(problems[0].message.contains("'A B Care' would share the folder a-b-care with the organisation 'A&B Care'"), "{problems:?}");
        // Against the organisations stored.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        std::fs::write(&path, format!("{HEADER}\n1,A1,\"Pearl Carers, Ltd.\",S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y\n")).unwrap();
        let known = [Organisation::new("Pearl Carers Ltd", None)];
        let Err(CpliError::Invalid(problems)) = read_extract(&path, &known) else { panic!("a stored organisation was renamed") };
        assert_eq!(problems[0].field.as_deref(), Some("OrganisationName"), "{problems:?}");
        assert!(read_extract(&path, &[]).is_ok());
    }

    #[test]
    fn one_organisation_ref_has_one_name_and_one_name_one_organisation_ref_within_an_extract() {
        let (alpha, beta) = ("AAAAAAAA-1111-2222-3333-444444444444", "BBBBBBBB-1111-2222-3333-444444444444");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        let load = |rows: &[(&str, &str)]| {
            let body: String = rows.iter().enumerate().map(|(i, (name, guid))| format!("{i},A{i},{name},S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y,{guid}\n")).collect();
            std::fs::write(&path, format!("{HEADER},OrganisationRef\n{body}")).unwrap();
            read_extract(&path, &[])
        };
        let Err(CpliError::Invalid(problems)) = load(&[("Pearl Carers Ltd", alpha), ("Other Carers", alpha)]) else { panic!("one GUID made two organisations") };
        assert_eq!((problems.len(), problems[0].row, problems[0].code), (1, Some(3), Code::WrongOrganisation), "{problems:?}");
        assert!(problems[0].message.contains("is the organisation 'Pearl Carers Ltd' on row 2 of this extract, but OrganisationName here says 'Other Carers'"), "{problems:?}");
        let Err(CpliError::Invalid(problems)) = load(&[("Pearl Carers Ltd", alpha), ("Pearl Carers Ltd", beta)]) else { panic!("one organisation took two GUIDs") };
        assert_eq!((problems.len(), problems[0].row, problems[0].field.as_deref()), (1, Some(3), Some("OrganisationRef")), "{problems:?}");
        // One name written two ways, and two organisations with GUIDs of their own, load.
        assert_eq!(load(&[("Pearl Carers Ltd", alpha), ("PEARL CARERS LTD", alpha), ("Other Carers", beta)]).unwrap().len(), 3);
    }

    #[test]
    fn a_stored_organisations_guid_under_another_name_refuses_the_load_rather_than_making_a_second_one() {
        let guid = "AAAAAAAA-1111-2222-3333-444444444444";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        let header = format!("{HEADER},OrganisationRef");
        std::fs::write(&path, format!("{header}\n1,A1,Alpha Care Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y,{guid}\n")).unwrap();
        let mut alpha = Organisation::new("Alpha Care", None);
        alpha.org_ref = crate::domain::parse_guid(guid);
        let Err(CpliError::Invalid(problems)) = read_extract(&path, std::slice::from_ref(&alpha)) else { panic!("the organisation was renamed") };
        assert_eq!((problems[0].code, problems[0].field.as_deref()), (Code::WrongOrganisation, Some("OrganisationRef")), "{problems:?}");
        assert!(problems[0].message.contains("is the organisation 'Alpha Care', but OrganisationName says 'Alpha Care Ltd'"), "{problems:?}");
        // Its own name with its GUID, and a new organisation with a GUID of its own, load.
        std::fs::write(&path, format!("{header}\n1,A1,alpha care,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y,{guid}\n2,A2,Beta Care,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y,BBBBBBBB-1111-2222-3333-444444444444\n")).unwrap();
        assert_eq!(read_extract(&path, &[alpha]).unwrap().len(), 2);
    }

    #[test]
    fn an_extract_row_with_a_quantity_or_unit_cost_out_of_range_refuses_the_whole_load() {
        let max = "79228162514264337593543950335";
        let ok = "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        assert_eq!(load(&[ok]).unwrap()[0].unit_cost, "23.226".parse::<Decimal>().unwrap());
        let huge = format!("2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,{max},Hr,Weekly,{max},Y");
        let Err(CpliError::Invalid(problems)) = load(&[ok, &huge]) else { panic!("a huge CPLI was loaded") };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].to_string().starts_with("row 3: Quantity") && problems[0].to_string().contains("from 0 to 1,000,000"), "{problems:?}");
        assert!(problems[1].to_string().starts_with("row 3: UnitCost") && problems[1].to_string().contains("at most 6 decimal places"), "{problems:?}");
    }

    fn load_with(header: &str, rows: &[&str]) -> Result<Vec<Cpli>, CpliError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        read_extract(&path, &[])
    }

    const WITH_REFS: &str = "CPLIID,SSRef,OrganisationName,ServiceName,ServiceLevel,StartDate,Quantity,Unit,Frequency,UnitCost,Authorised,OrganisationRef,ServiceRef";

    #[test]
    fn an_extract_guid_that_a_visits_file_could_not_send_refuses_the_load_naming_row_and_column() {
        // The guide's own export shows this OrganisationRef: an S where a hex digit belongs.
        let row = "1,A1,Diamond Home Care Ltd,S,Home Support,03/10/2022,7,Hr,Weekly,23.77,Y,SF54B181-1C7B-469E-B37C-4B93FA9EBE1E,";
        let Err(CpliError::Invalid(problems)) = load_with(WITH_REFS, &["2,A0,Diamond Home Care Ltd,S,Home Support,03/10/2022,7,Hr,Weekly,23.77,Y,,", row]) else {
            panic!("a GUID no visits file can send was loaded")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].to_string().starts_with("row 3: column 12 (OrganisationRef) 'SF54B181-1C7B-469E-B37C-4B93FA9EBE1E' is not a GUID"), "{problems:?}");
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
        assert!(problems[0].to_string().starts_with("row 2: StartDate '03/10/2022 09:30' holds a time of day (09:30)"), "{problems:?}");
    }

    #[test]
    fn an_extract_row_with_a_control_character_is_refused() {
        let Err(CpliError::Invalid(problems)) = load(&["1,A\u{0}1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y"]) else {
            panic!("a NUL was loaded")
        };
        assert!(problems[0].to_string().contains("column 2 (ssref) holds a control character, U+0000 (NUL)"), "{problems:?}");
    }

    const WITH_CONTRACT: &str = "CPLIID,SSRef,OrganisationName,ServiceName,ServiceLevel,StartDate,Quantity,Unit,Frequency,UnitCost,Authorised,Contract";

    /// Each problem's row, code and column.
    fn found(problems: &[CpliProblem]) -> Vec<(Option<u64>, Code, Option<&str>)> {
        problems.iter().map(|p| (p.row, p.code, p.field.as_deref())).collect()
    }

    fn refused(r: Result<Vec<Cpli>, CpliError>) -> Vec<CpliProblem> {
        match r {
            Err(CpliError::Invalid(problems)) => problems,
            other => panic!("the extract was not refused: {other:?}"),
        }
    }

    #[test]
    fn an_extract_row_with_a_contract_the_council_does_not_use_is_refused_naming_the_contracts() {
        let problems = refused(load_with(WITH_CONTRACT, &["1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y,Block"]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!((p.row, p.code, p.field.as_deref(), p.cpli_id.as_deref()), (Some(2), Code::UnknownContract, Some("Contract"), Some("1")));
        assert!(p.message.contains("'Block'") && p.message.contains("DAPL, LWAH, APL, HTLAH, Spot"), "{}", p.message);
    }

    #[test]
    fn extract_contracts_are_kept_in_the_councils_spelling_and_may_be_blank() {
        let rows = ["1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y,spot", "2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y,"];
        let cplis = load_with(WITH_CONTRACT, &rows).unwrap();
        assert_eq!((cplis[0].contract.as_str(), cplis[1].contract.as_str()), ("Spot", ""));
    }

    #[test]
    fn every_bad_row_of_an_extract_is_reported_not_only_the_first() {
        let problems = refused(load(&[
            "1,A1,Pearl Carers Ltd,S,Personal Care,31/02/2022,7,Hr,Weekly,20,Y",
            "2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y",
            "3,,Pearl Carers Ltd,S,Personal Care,03/10/2022,seven,Hr,Weekly,20,Maybe",
        ]));
        let found = found(&problems);
        assert_eq!(
            found,
            [
                (Some(2), Code::BadDate, Some("StartDate")),
                (Some(4), Code::Required, Some("SSRef")),
                (Some(4), Code::BadNumber, Some("Quantity")),
                (Some(4), Code::BadBoolean, Some("Authorised")),
            ],
            "{problems:?}"
        );
        assert!(problems[1].message.contains("the client's id"), "what would be right: {}", problems[1].message);
        assert_eq!(problems[0].to_issue().row_data.as_deref(), Some("1,A1,Pearl Carers Ltd,S,Personal Care,31/02/2022,7,Hr,Weekly,20,Y"));
    }

    #[test]
    fn an_extract_row_with_more_or_fewer_cells_than_headings_is_refused_with_wrong_field_count() {
        let ok = "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        // Excel's empty cells after the last heading are tolerated.
        assert_eq!(load(&[&format!("{ok},,")]).unwrap().len(), 1);
        let short = "2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226";
        let long = "3,A3,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,£1,000.50,Y";
        let Err(CpliError::Invalid(problems)) = load(&[ok, short, long]) else { panic!("rows in the wrong columns were loaded") };
        let got: Vec<(Option<u64>, Code)> = problems.iter().map(|p| (p.row, p.code)).collect();
        assert_eq!(got, [(Some(3), Code::WrongFieldCount), (Some(4), Code::WrongFieldCount)]);
        assert!(problems[0].message.contains("this row has 10 fields but the header has 11"), "{}", problems[0].message);
        assert!(problems[1].message.contains("a cell holds a comma without being in double quotes"), "{}", problems[1].message);
    }

    #[test]
    fn an_extract_is_read_as_a_providers_file_is_rows_numbered_as_a_spreadsheet_and_windows_1252_taken() {
        let ok = "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        let bad = "2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,lots,Y";
        // A blank line counts as a row (it was skipped, and every later row numbered one too low).
        let Err(CpliError::Invalid(problems)) = load(&[ok, "", bad]) else { panic!("loaded") };
        assert_eq!(problems.iter().map(|p| p.row).collect::<Vec<_>>(), [Some(4)]);
        // Saved by Excel: Windows-1252, an ë as the byte EB.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        let mut bytes = format!("{HEADER},ClientName\r\n{ok},Mrs Zo").into_bytes();
        bytes.extend_from_slice(b"\xEB\r\n");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_extract(&path, &[]).unwrap()[0].client_name, "Mrs Zoë");
    }

    #[test]
    fn an_extract_row_ending_before_it_starts_is_refused() {
        let row = "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,23.226,Y";
        let with_end = |end: &str| load_with(&format!("{HEADER},EndDate"), &[&format!("{row},{end}")]);
        assert_eq!(with_end("03/10/2022").unwrap()[0].end_date, chrono::NaiveDate::from_ymd_opt(2022, 10, 3), "one day");
        let Err(CpliError::Invalid(problems)) = with_end("02/10/2022") else { panic!("loaded") };
        assert_eq!((problems[0].code, problems[0].field.as_deref()), (Code::BadDate, Some("EndDate")));
        assert_eq!(problems[0].message, "EndDate 02/10/2022 is before StartDate 03/10/2022: a CPLI ends on or after the day it starts (a blank EndDate is open)");
    }

    #[test]
    fn a_cpliid_on_two_rows_of_one_extract_refuses_both_rows() {
        let problems = refused(load(&[
            "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y",
            "2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y",
            "1,A3,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y",
        ]));
        let found: Vec<(Option<u64>, Code)> = problems.iter().map(|p| (p.row, p.code)).collect();
        assert_eq!(found, [(Some(2), Code::DuplicateRef), (Some(4), Code::DuplicateRef)], "{problems:?}");
        assert!(problems[0].message.contains("also on row 4") && problems[1].message.contains("also on row 2"), "{problems:?}");
    }

    #[test]
    fn an_extract_cost_or_quantity_with_a_decimal_comma_is_refused_not_read_a_hundred_times_larger() {
        let problems = refused(load(&[
            "1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,\"3,5\",Hr,Weekly,\"23,77\",Y",
            "2,A2,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,\"£1,234.50\",Y",
            "3,A3,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,\"£ 1,234.50\",Y",
        ]));
        let found = found(&problems);
        assert_eq!(found, [(Some(2), Code::BadNumber, Some("Quantity")), (Some(2), Code::BadNumber, Some("UnitCost"))], "thousands are still read: {problems:?}");
        assert_eq!(problems[1].message, "UnitCost '23,77' is not a number: a comma may only separate thousands (1,234.50); write decimals with a point (23.77)");
    }

    #[test]
    fn an_extract_heading_it_reads_given_twice_refuses_the_load() {
        let problems = refused(load_with(&format!("{HEADER},UnitCost"), &["1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,0.01,Y,23.77"]));
        assert_eq!((problems[0].code, problems[0].field.as_deref()), (Code::DuplicateColumn, Some("UnitCost")), "{problems:?}");
        assert_eq!(problems[0].message, "the heading UnitCost appears twice (columns 10 and 12); keep one");
        // A column the load does not read may repeat.
        assert_eq!(load_with(&format!("{HEADER},Notes,Notes"), &["1,A1,Pearl Carers Ltd,S,Personal Care,03/10/2022,7,Hr,Weekly,20,Y,a,b"]).unwrap().len(), 1);
    }

    #[test]
    fn an_empty_extract_or_one_that_is_not_csv_is_told_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cplis.csv");
        for (bytes, code, says) in [
            (&b""[..], Code::FileEmpty, "the extract has no header row"),
            (&b"\r\n\r\n"[..], Code::FileEmpty, "the extract has no header row"),
            (HEADER.as_bytes(), Code::FileEmpty, "the extract has a header row but no CPLI rows"),
            (&b"PK\x03\x04rest of a workbook"[..], Code::FileUnreadable, "this is not a CSV text file (it looks like a spreadsheet workbook"),
            (&b"\xFF\xFEC\0P\0"[..], Code::FileUnreadable, "this is not a CSV text file (it is UTF-16 text"),
            (&b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"[..], Code::FileUnreadable, "this is not a CSV text file (it is a PDF document)"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let problems = refused(read_extract(&path, &[]));
            assert_eq!((problems.len(), problems[0].code), (1, code), "{problems:?}");
            assert!(problems[0].message.starts_with(says), "{}", problems[0].message);
        }
    }

    #[test]
    fn an_extract_missing_headings_names_each_and_no_row() {
        let problems = refused(load_with("CPLIID,SSRef,OrganisationName,ServiceName,ServiceLevel,StartDate,Quantity,Unit,Frequency", &["1,A1,P,S,L,03/10/2022,7,Hr,Weekly"]));
        let found = found(&problems);
        assert_eq!(found, [(None, Code::MissingColumn, Some("UnitCost")), (None, Code::MissingColumn, Some("Authorised"))]);
    }
}
