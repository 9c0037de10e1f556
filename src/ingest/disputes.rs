//! The council's disputes file (issue 12, SPEC 8), dropped into the council's `/inbox`: each row
//! raises a dispute on a visit (Organisation, VisitRef, DisputeType, Details) or closes one (DisputeId,
//! Close = Y, a Note, and DeleteVisit = Y to delete the visit). Each row stands alone: a refused row
//! is answered and the others are applied, at the disputes desk (`crate::disputes::Desk`).

use chrono::Utc;

use super::cells::{columns, Column, Row};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::kinds::{File, Judgement, Kind, Pending};
use super::source::{heading_key, Header, Rows, ScanSpec};
use super::IngestError;
use crate::disputes::{Changes, Desk, DisputeId, DisputeType, Raise};
use crate::domain::{quote, Slug};
use crate::outcome::{Code, FileKind, ImportResult, Issues, Refusal};
use crate::store::{Record, Store, StoreError};

columns! {
    pub enum Col by VisitRef {
        Organisation: "Organisation";
        VisitRef: "VisitRef";
        DisputeType: "DisputeType";
        Details: "Details", free;
        DisputeId: "DisputeId";
        Close: "Close";
        Note: "Note", free;
        DeleteVisit: "DeleteVisit";
    }
}

/// The disputes file's entry in the table of the council's file kinds.
pub static KIND: Kind = Kind {
    kind: FileKind::Disputes,
    noun: "disputes",
    headings: HEADINGS,
    required: 0,
    detected_by: HEADINGS[Col::DisputeType as usize],
    missing_hint: Some("a disputes file raises with Organisation, VisitRef, DisputeType and Details, and closes with DisputeId, Close and optionally Note and DeleteVisit"),
    scan_spec,
    judge,
};

/// A disputes file: a header with DisputeType, or with DisputeId and Close.
pub fn detects(header: &Header) -> bool {
    let has = |h: &str| header.position(&heading_key(h)).is_some();
    has("DisputeType") || (has("DisputeId") && has("Close"))
}

fn scan_spec(_: &Header) -> ScanSpec {
    // A dispute closed twice is told by the second row's DISPUTE_CLOSED.
    ScanSpec::default()
}

/// A row as its cells say.
pub enum DisputeRow {
    Raise { organisation: String, visit_ref: String, dispute_type: DisputeType, details: String },
    /// `visit_ref`, `organisation`: a VisitRef or Organisation given on the row, which must be the
    /// dispute's.
    Close { id: DisputeId, note: Option<String>, delete_visit: bool, visit_ref: Option<String>, organisation: Option<String> },
}

struct DisputeRules;

impl Rules for DisputeRules {
    type Col = Col;
    type Out = DisputeRow;
    type Scratch = ();

    fn judge(&self, r: &mut Row<'_, Col>, _: &mut ()) -> Result<Option<DisputeRow>, IngestError> {
        // A close row names no visit: its issues are told by its DisputeId.
        if r.reference.is_none() {
            r.reference = r.opt(Col::DisputeId).map(|v| super::cells::quoted(&v));
        }
        let close = r.boolean(Col::Close).unwrap_or(false);
        let delete_visit = r.boolean(Col::DeleteVisit).unwrap_or(false);
        let note = r.text(Col::Note, 8000);
        if close || !r.is_blank(Col::DisputeId) {
            let id = dispute_id(r, Col::DisputeId, ": the dispute to close, as in disputes.csv (D and a number)");
            if !close && !r.has_errors() {
                r.push(Code::Required, Some(Col::Close), "Close must be Y on a row that names a DisputeId: such a row closes that dispute".into());
            }
            let visit_ref = r.text(Col::VisitRef, 50);
            let organisation = r.text(Col::Organisation, 112);
            return Ok(id.filter(|_| !r.has_errors()).map(|id| DisputeRow::Close { id, note, delete_visit, visit_ref, organisation }));
        }
        if delete_visit {
            r.push(Code::Required, Some(Col::Close), "DeleteVisit goes with Close = Y and the DisputeId of the dispute to close".into());
        }
        let organisation = r.required_text(Col::Organisation, 112, ": the organisation whose visit is disputed (its name or OrganisationRef)");
        let visit_ref = r.required_text(Col::VisitRef, 50, ": the VisitRef the provider sent");
        let dispute_type = match r.opt(Col::DisputeType).map(|v| v.into_owned()) {
            Some(v) => {
                let t = DisputeType::parse(&v);
                if t.is_none() {
                    r.push(Code::UnknownDisputeType, Some(Col::DisputeType), format!("DisputeType '{}' is not one of the guide's types: 1 to 10, or a name such as Missing Comment (docs/disputes.md lists them)", quote(&v)));
                }
                t
            }
            None => {
                r.require(Col::DisputeType, ": 1 to 10, or the type's name");
                None
            }
        };
        let details = r.required_text(Col::Details, 8000, ": what the council asks the provider");
        if r.has_errors() {
            return Ok(None);
        }
        Ok(match (organisation, visit_ref, dispute_type, details) {
            (Some(organisation), Some(visit_ref), Some(dispute_type), Some(details)) => Some(DisputeRow::Raise { organisation, visit_ref, dispute_type, details }),
            _ => None,
        })
    }
}

/// A DisputeId cell, required (`why` says what for), as an id.
pub(super) fn dispute_id<C: Column>(r: &mut Row<'_, C>, col: C, why: &str) -> Option<DisputeId> {
    let Some(v) = r.opt(col).map(|v| v.into_owned()) else {
        r.require(col, why);
        return None;
    };
    let id = DisputeId::parse(&v);
    if id.is_none() {
        r.push(Code::UnknownDispute, Some(col), format!("DisputeId '{}' is not a dispute id: D and a number, as in disputes.csv", quote(&v)));
    }
    id
}

fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let Some(store) = file.store else {
        // Judged only against the store (the council's inbox); no offline form.
        let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
        let counts = engine::run(rows, &file.shape(), &DisputeRules, &mut Offline, issues)?;
        return Ok((counts, Box::new(Saving { store: None, org: None, changes: Changes::default() })));
    };
    let mut apply = AtDesk { desk: Desk::open(store, file.config)?, by: file.incoming.file_name.clone() };
    let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
    let counts = engine::run(rows, &file.shape(), &DisputeRules, &mut apply, issues)?;
    let saving = Saving { store: Some(store).filter(|_| file.write), org: None, changes: apply.desk.into_changes() };
    Ok((counts, Box::new(saving)))
}

struct AtDesk<'s> {
    desk: Desk<'s>,
    by: String,
}

/// A row's refusal as its issue.
pub(super) fn refuse<O>(row: &mut Judged<O>, r: Refusal) -> Applied {
    let issue = row.issue(r.code, r.field, r.message);
    row.issues.push(issue);
    Applied::Rejected
}

impl Apply<DisputeRow> for AtDesk<'_> {
    fn apply(&mut self, row: &mut Judged<DisputeRow>, d: DisputeRow) -> Result<Applied, IngestError> {
        let at = Utc::now();
        let (acted, applied) = match d {
            DisputeRow::Raise { organisation, visit_ref, dispute_type, details } => {
                (self.desk.raise(Raise { organisation: &organisation, visit_ref: &visit_ref, dispute_type, details }, &self.by, at)?, Applied::New)
            }
            DisputeRow::Close { id, note, delete_visit, visit_ref, organisation } => {
                // Since 2026-12-03: a close row naming another organisation closed (and with
                // DeleteVisit deleted) the dispute's visit all the same.
                if let Some((given, theirs)) = organisation.as_deref().and_then(|g| Some(g).zip(self.desk.other_org_of(id, g))) {
                    let message = format!(
                        "Organisation '{g}' is not the organisation of dispute {id} ({theirs}): check the DisputeId, or leave Organisation blank on a row that closes a dispute",
                        g = quote(given)
                    );
                    return Ok(refuse(row, Refusal { code: Code::RefMismatch, field: Some("Organisation"), message }));
                }
                if let Some((given, theirs)) = visit_ref.as_deref().zip(self.desk.visit_ref_of(id)).filter(|(g, t)| g != t) {
                    let message = format!(
                        "VisitRef '{g}' is not the visit of dispute {id} ({theirs}): a row with a DisputeId and Close = Y closes that dispute; to raise a dispute on '{g}', send it on a row of its own with DisputeId and Close blank",
                        g = quote(given)
                    );
                    return Ok(refuse(row, Refusal { code: Code::RefMismatch, field: Some("VisitRef"), message }));
                }
                (self.desk.close(id, note, delete_visit, &self.by, at)?, Applied::Updated)
            }
        };
        Ok(match acted {
            Ok(_) => applied,
            Err(r) => refuse(row, r),
        })
    }
}

/// Without a store every well-formed row is taken as it reads.
struct Offline;

impl Apply<DisputeRow> for Offline {
    fn apply(&mut self, _: &mut Judged<DisputeRow>, d: DisputeRow) -> Result<Applied, IngestError> {
        Ok(match d {
            DisputeRow::Raise { .. } => Applied::New,
            DisputeRow::Close { .. } => Applied::Updated,
        })
    }
}

/// What a disputes or responses file changed, saved with the file's record.
pub(super) struct Saving<'s> {
    /// `None` when nothing is written.
    pub(super) store: Option<&'s Store>,
    /// The provider whose responses file it is; `None`: the council's disputes file.
    pub(super) org: Option<Slug>,
    pub(super) changes: Changes,
}

impl Pending for Saving<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        let Some(store) = self.store else { return Ok(()) };
        let record = match &self.org {
            Some(slug) => Record::Org(slug, result),
            None => Record::Council(result),
        };
        self.changes.save(store, &result.import_id, record)
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disputes_file_has_a_dispute_type_or_a_dispute_id_with_close() {
        assert!(detects(&Header::from_names(&["Organisation", "VisitRef", "DisputeType", "Details"])));
        assert!(detects(&Header::from_names(&["dispute id", "CLOSE", "Note"])));
        assert!(!detects(&Header::from_names(&["DisputeId", "Response"])), "a provider's responses file");
        assert!(!detects(&Header::from_names(&["ClaimId", "Decision"])));
    }
}
