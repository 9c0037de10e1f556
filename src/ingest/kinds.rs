//! The table of file kinds (issue 11): each kind is one module declaring its headings, how it is
//! detected, its key and its row rules; `KINDS` lists them, and nothing else dispatches on a kind.
//!
//! Adding a kind: its module (a `Kind` and its `judge`, usually rules on `engine::run`) and one line
//! in `KINDS`, placed by detection precedence.

use crate::outcome::{Counts, FileKind, ImportResult, Issue};
use super::source::{find_columns, heading_key, Header, ScanSpec};
use super::{Incoming, IngestError, Issues};
use crate::config::Config;
use crate::domain::{Cpli, Organisation, Slug};
use crate::store::{Store, StoreError};

/// Every file kind a provider may send, in detection order: the first whose detecting heading is in
/// the header takes the file (a visits file holds CarerRef too, so carers come after visits).
pub static KINDS: &[&Kind] = &[&super::visits::KIND, &super::actuals::KIND, &super::carers::KIND, &super::claims::KIND, &super::dispute_responses::KIND];

/// A file kind: its headings, detection, key, and how a file of it is judged.
pub struct Kind {
    pub kind: FileKind,
    /// As messages name it: "visits", as in "a visits file".
    pub noun: &'static str,
    /// Every heading, the required ones first.
    pub headings: &'static [&'static str],
    /// How many of `headings` (from the start) must be in the header.
    pub required: usize,
    /// The heading whose presence says a file is of this kind.
    pub detected_by: &'static str,
    /// What a file missing a required heading is told, after "the heading X is missing; ";
    /// `None`: the required headings and the optional ones, listed (`missing_hint`).
    pub missing_hint: Option<&'static str>,
    /// What the first pass looks for: keys used on more than one row, and repeated slots.
    pub scan_spec: fn(&Header) -> ScanSpec,
    /// Judges (and, importing, writes as it goes) every row of the file; the counts and what
    /// commits or undoes the writes.
    pub judge: for<'a, 's> fn(&File<'a, 's>, &mut Issues) -> Judgement<'s>,
}

/// A judged file's counts and what commits or undoes what it wrote.
pub type Judgement<'s> = Result<(Counts, Box<dyn Pending + 's>), IngestError>;

/// Everything a kind judges a file against.
pub struct File<'a, 's> {
    pub config: &'a Config,
    pub org: Option<&'a Organisation>,
    pub incoming: &'a Incoming<'a>,
    pub scan: &'a super::source::Scan,
    /// Where each of the kind's headings is in this file (`None`: an optional heading left out).
    pub positions: Vec<Option<usize>>,
    /// The store to judge against (importing, or validating with `--org`).
    pub store: Option<&'s Store>,
    /// Whether accepted rows are written (`import`) or only judged (`validate`).
    pub write: bool,
    /// CPLIs given to `validate --cplis`, replacing the stored ones.
    pub given_cplis: Option<&'a [Cpli]>,
}

impl<'a, 's> File<'a, 's> {
    /// The store and the organisation's key in it: judging against what the organisation holds
    /// (an import, or `validate --org`); `None` offline.
    pub fn stored(&self) -> Option<(&'s Store, &'a Slug)> {
        self.store.zip(self.org.map(|o| &o.slug))
    }

    /// As `stored`, when accepted rows are written (importing only).
    pub fn writer(&self) -> Option<(&'s Store, &'a Slug)> {
        self.stored().filter(|_| self.write)
    }

    pub fn shape(&self) -> super::engine::Shape {
        super::engine::Shape { positions: self.positions.clone(), header_len: self.scan.header.names.len() }
    }
}

/// What a judged file wrote as it went, or holds to write: committed with the import record, or undone.
pub trait Pending {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError>;
    fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// The kind whose detecting heading the header holds, first in `KINDS` order.
pub fn detect(header: &Header) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| header.position(&heading_key(k.detected_by)).is_some())
}

/// Whether the header holds every heading the kind requires.
pub fn has_required(kind: &Kind, header: &Header) -> bool {
    kind.headings[..kind.required].iter().all(|h| header.position(&heading_key(h)).is_some())
}

/// The table's entry for a kind.
pub fn spec(kind: FileKind) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.kind == kind)
}

/// Where each of the kind's headings is, or the file-level issues that fail the file (a required
/// heading missing, one twice); unknown headings are warnings, pushed to `issues` either way.
pub fn positions(kind: &Kind, header: &Header, issues: &mut Issues) -> Option<Vec<Option<usize>>> {
    let mut warnings: Vec<Issue> = Vec::new();
    let found = find_columns(header, kind.noun, kind.headings, kind.required, &missing_hint(kind), &mut warnings);
    issues.append(&mut warnings);
    match found {
        Ok(p) => Some(p),
        Err(mut errors) => {
            issues.append(&mut errors);
            None
        }
    }
}

/// "an actuals file needs Deleted, SSRef, ... and Comments (ClientRef, ... may be left out)".
fn missing_hint(kind: &Kind) -> String {
    if let Some(hint) = kind.missing_hint {
        return hint.to_string();
    }
    let list = |h: &[&str]| match h.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    let (required, optional) = kind.headings.split_at(kind.required);
    let mut hint = format!("{} {} file needs {}", article(kind.noun), kind.noun, list(required));
    if !optional.is_empty() {
        hint.push_str(&format!(" ({} may be left out)", list(optional)));
    }
    hint
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// How each kind's file begins, for a header no kind takes: "a visits file (VisitRef, Deleted, ...)".
pub fn describe_all() -> String {
    let described: Vec<String> = KINDS
        .iter()
        .map(|k| {
            let first = k.detected_by;
            let mut shown: Vec<&str> = vec![first];
            shown.extend(k.headings[..k.required].iter().copied().filter(|h| *h != first).take(3));
            let more = if k.required > shown.len() { ", ..." } else { "" };
            format!("{} {} file ({}{more})", article(k.noun), k.noun, shown.join(", "))
        })
        .collect();
    match described.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Header {
        Header::from_names(names)
    }

    #[test]
    fn a_file_is_of_the_first_kind_in_the_table_whose_detecting_heading_it_holds() {
        assert_eq!(detect(&header(&["VisitRef", "CarerRef"])).map(|k| k.kind), Some(FileKind::Visits));
        assert_eq!(detect(&header(&["SSRef", "Period Start"])).map(|k| k.kind), Some(FileKind::Actuals));
        assert_eq!(detect(&header(&["carerref", "Forename"])).map(|k| k.kind), Some(FileKind::Carers));
        assert_eq!(detect(&header(&["ClaimRef", "AdmittedOn"])).map(|k| k.kind), Some(FileKind::Claims));
        assert_eq!(detect(&header(&["DisputeId", "Response"])).map(|k| k.kind), Some(FileKind::DisputeResponses));
        assert!(detect(&header(&["CPLIID", "SSRef"])).is_none());
    }

    #[test]
    fn every_kind_is_in_the_table_once_with_its_required_headings_among_its_headings() {
        for k in KINDS {
            assert_eq!(KINDS.iter().filter(|o| o.kind == k.kind).count(), 1, "{}", k.noun);
            assert!(k.required <= k.headings.len() && k.headings.contains(&k.detected_by), "{}", k.noun);
            assert!(spec(k.kind).is_some());
        }
    }

    #[test]
    fn a_file_missing_a_required_heading_is_told_every_heading_of_its_kind() {
        let actuals = spec(FileKind::Actuals).unwrap();
        assert_eq!(
            missing_hint(actuals),
            "an actuals file needs Deleted, SSRef, ServiceLevel, ServiceName, PeriodStart, PeriodEnd, Planned, Actual, Frustrated, Missed, Extra, Visits and Comments (ClientRef, NHSNumber, ServiceLevelRef, ServiceRef, OrganisationRef and OrganisationName may be left out)"
        );
        assert!(missing_hint(spec(FileKind::Visits).unwrap()).starts_with("all 25 visits headings must be present"));
    }

    #[test]
    fn a_header_no_kind_takes_is_told_how_each_kind_begins() {
        let all = describe_all();
        assert!(all.starts_with("a visits file (VisitRef, Deleted, PlannedVisitDate, PlannedEntryTime, ...), an actuals file (PeriodStart, "), "{all}");
        assert!(all.ends_with(", a claims file (ClaimRef, SSRef, ServiceName, AdmittedOn, ...) or a dispute responses file (Response, DisputeId)"), "{all}");
    }
}
