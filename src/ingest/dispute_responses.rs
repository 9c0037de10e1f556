//! A provider's dispute responses file (issue 12, SPEC 8), dropped into its `/inbox`: each row answers
//! one of the organisation's own disputes (DisputeId, Response, RequestResolution Y/N, default Y).
//! Each row stands alone, at the disputes desk (`crate::disputes::Desk`).

use chrono::Utc;

use super::cells::{columns, Row};
use super::disputes::{dispute_id, refuse, Saving};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::kinds::{File, Judgement, Kind};
use super::source::{Header, Rows, ScanSpec};
use super::IngestError;
use crate::disputes::{Changes, Desk, DisputeId};
use crate::domain::Slug;
use crate::outcome::{FileKind, Issues};

columns! {
    pub enum Col by DisputeId {
        DisputeId: "DisputeId";
        Response: "Response", free;
        RequestResolution: "RequestResolution";
    }
}

/// The dispute responses file's entry in the table of kinds.
pub static KIND: Kind = Kind {
    kind: FileKind::DisputeResponses,
    noun: "dispute responses",
    headings: HEADINGS,
    required: 2,
    detected_by: HEADINGS[Col::Response as usize],
    missing_hint: None,
    scan_spec,
    judge,
};

fn scan_spec(_: &Header) -> ScanSpec {
    // Two answers to one dispute are both kept, in order.
    ScanSpec::default()
}

/// A row as its cells say.
pub struct ResponseRow {
    id: DisputeId,
    text: String,
    request_resolution: bool,
}

struct ResponseRules;

impl Rules for ResponseRules {
    type Col = Col;
    type Out = ResponseRow;
    type Scratch = ();

    fn judge(&self, r: &mut Row<'_, Col>, _: &mut ()) -> Result<Option<ResponseRow>, IngestError> {
        let id = dispute_id(r, Col::DisputeId, ": the dispute answered, as in disputes.csv in your exports folder");
        let text = r.required_text(Col::Response, 8000, ": your answer to the council's query");
        let request_resolution = r.boolean(Col::RequestResolution).unwrap_or(true);
        if r.has_errors() {
            return Ok(None);
        }
        Ok(id.zip(text).map(|(id, text)| ResponseRow { id, text, request_resolution }))
    }
}

fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let rows = Rows::open(file.incoming.path, file.scan.encoding)?;
    let Some((store, slug)) = file.stored() else {
        // Offline (`validate` without `--org`): the cells are judged, no dispute is known.
        let counts = engine::run(rows, &file.shape(), &ResponseRules, &mut Offline, issues)?;
        return Ok((counts, Box::new(Saving { store: None, org: None, changes: Changes::default() })));
    };
    let mut apply = Answer { desk: Desk::open(store, file.config)?, org: slug.clone(), by: file.incoming.file_name.clone() };
    let counts = engine::run(rows, &file.shape(), &ResponseRules, &mut apply, issues)?;
    let saving = Saving { store: Some(store).filter(|_| file.write), org: Some(slug.clone()), changes: apply.desk.into_changes() };
    Ok((counts, Box::new(saving)))
}

struct Answer<'s> {
    desk: Desk<'s>,
    org: Slug,
    by: String,
}

impl Apply<ResponseRow> for Answer<'_> {
    fn apply(&mut self, row: &mut Judged<ResponseRow>, r: ResponseRow) -> Result<Applied, IngestError> {
        Ok(match self.desk.respond(&self.org, r.id, r.text, r.request_resolution, &self.by, Utc::now())? {
            Ok(_) => Applied::Updated,
            Err(refusal) => refuse(row, refusal),
        })
    }
}

struct Offline;

impl Apply<ResponseRow> for Offline {
    fn apply(&mut self, _: &mut Judged<ResponseRow>, _: ResponseRow) -> Result<Applied, IngestError> {
        Ok(Applied::Updated)
    }
}
