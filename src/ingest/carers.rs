//! The carers file (SPEC 2.3): the CarerRefs a visit may name, one organisation at a time.

use std::collections::HashSet;

use super::result::{Code, Counts, Issue};
use super::source::{find_columns, row_data, Header, Rows, Scan};
use super::IngestError;
use crate::domain::cell::describe_control;
use crate::domain::{date_message, forbidden_control, parse_date_cell, quote, Carer, TextKind};

const REQUIRED: [&str; 4] = ["CarerRef", "Forename", "Surname", "Deleted"];
const OPTIONAL: [&str; 4] = ["StartDate", "EndDate", "Email", "Mobile"];

/// The accepted rows of a carers file, to be stored in one batch.
#[derive(Default)]
pub struct CarerChanges {
    pub upserts: Vec<Carer>,
    pub deletes: Vec<String>,
}

/// Column positions, or the file-level issues that fail the file.
fn columns(header: &Header, warnings: &mut Vec<Issue>) -> Result<Vec<Option<usize>>, Vec<Issue>> {
    let all: Vec<&str> = REQUIRED.iter().chain(OPTIONAL.iter()).copied().collect();
    find_columns(header, "carers", &all, REQUIRED.len(), "a carers file needs CarerRef, Forename, Surname and Deleted", warnings)
}

/// Judges every row. `known` are the organisation's carers before this file.
pub fn judge(
    scan: &Scan,
    rows: &mut Rows,
    known: &HashSet<String>,
    issues: &mut super::Issues,
) -> Result<Result<(Counts, CarerChanges), ()>, IngestError> {
    let mut warnings = Vec::new();
    let found = columns(&scan.header, &mut warnings);
    issues.append(&mut warnings);
    let cols = match found {
        Ok(c) => c,
        Err(mut errs) => {
            issues.append(&mut errs);
            return Ok(Err(()));
        }
    };
    let mut counts = Counts::default();
    let mut changes = CarerChanges::default();
    let mut rec = csv::ByteRecord::new();
    let header_len = scan.header.names.len();
    while let Some(row) = rows.next(&mut rec)? {
        super::note_row(row);
        counts.read += 1;
        let field = |i: usize| cols[i].map(|c| rows.field(&rec, c).into_owned()).filter(|s| !s.is_empty());
        let carer_ref = field(0);
        let mut errs: Vec<(Code, &str, String)> = Vec::new();
        if rec.len() != header_len {
            errs.push((Code::WrongFieldCount, "", format!("this row has {} fields but the header has {header_len}", rec.len())));
        }
        // Issue 9: no control character is stored (a carers file has no free-text column).
        for (heading, col) in REQUIRED.iter().chain(OPTIONAL.iter()).copied().zip(&cols) {
            let value = col.map(|c| rows.field(&rec, c)).unwrap_or_default();
            if let Some((at, c)) = forbidden_control(&value, TextKind::Plain) {
                errs.push((Code::ControlCharacter, heading, format!("{heading} holds a control character, {}, at character {at}: remove it; a cell holds printable text only", describe_control(c))));
            }
        }
        // A row holding a control character is judged no further: its other messages would repeat it.
        let controls = errs.iter().any(|e| e.0 == Code::ControlCharacter);
        match &carer_ref {
            _ if controls => {}
            None => errs.push((Code::Required, "CarerRef", "CarerRef is required: the organisation's own id for the carer".into())),
            Some(r) if r.chars().count() > 100 => errs.push((Code::TooLong, "CarerRef", "CarerRef is longer than 100 characters".into())),
            Some(r) if scan.duplicate_keys.contains(r.as_bytes()) => {
                errs.push((Code::DuplicateRef, "CarerRef", format!("CarerRef '{r}' is on more than one row of this file; all rows carrying it are rejected")))
            }
            _ => {}
        }
        let deleted = match field(3).as_deref().map(str::to_ascii_uppercase).as_deref() {
            _ if controls => false,
            None | Some("0") | Some("N") => false,
            Some("1") | Some("Y") => true,
            Some(other) => {
                errs.push((Code::BadBoolean, "Deleted", format!("Deleted must be 0, 1, Y or N; found '{}'", quote(other))));
                false
            }
        };
        let mut date = |i: usize, name: &'static str| {
            let v = field(i).filter(|_| !controls)?;
            parse_date_cell(&v).map_err(|problem| errs.push((Code::BadDate, name, date_message(name, quote(&v), problem)))).ok()
        };
        let start_date = date(4, "StartDate");
        let end_date = date(5, "EndDate");
        let (forename, surname) = (field(1), field(2));
        if !deleted && !controls {
            if forename.is_none() {
                errs.push((Code::Required, "Forename", "Forename is required".into()));
            }
            if surname.is_none() {
                errs.push((Code::Required, "Surname", "Surname is required".into()));
            }
        }
        if let (Some(r), true) = (&carer_ref, deleted) {
            if !known.contains(r) && errs.is_empty() {
                errs.push((Code::DeleteUnknown, "CarerRef", format!("there is no carer '{r}' to delete")));
            }
        }
        if !errs.is_empty() {
            counts.rejected += 1;
            for (code, field, message) in errs {
                issues.push(Issue {
                    row: Some(row),
                    reference: carer_ref.as_deref().map(|r| quote(r).to_string()),
                    severity: code.severity(),
                    code,
                    field: (!field.is_empty()).then(|| field.to_string()),
                    message,
                    row_data: Some(row_data(rows.encoding, &rec)),
                });
            }
            continue;
        }
        let carer_ref = carer_ref.expect("checked above");
        if known.contains(&carer_ref) { counts.updated += 1 } else { counts.new += 1 }
        if deleted {
            changes.deletes.push(carer_ref);
        } else {
            changes.upserts.push(Carer {
                carer_ref,
                forename: forename.unwrap_or_default(),
                surname: surname.unwrap_or_default(),
                start_date,
                end_date,
                email: field(6),
                mobile: field(7),
            });
        }
    }
    Ok(Ok((counts, changes)))
}
