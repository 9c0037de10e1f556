//! The carers file (SPEC 2.3): the CarerRefs a visit may name, one organisation at a time.

use std::collections::HashSet;

use super::cells::{columns, Column as _, Row};
use super::engine::{self, Applied, Apply, Judged, Rules};
use super::headings as h;
use super::kinds::{File, Judgement, Kind, Pending};
use crate::outcome::{Code, FileKind, ImportResult, Issues};
use super::source::{Header, ScanSpec};
use super::IngestError;
use crate::domain::{quote, Carer, Slug};
use crate::store::{Store, StoreError};

columns! {
    pub enum Col by CarerRef {
        CarerRef: h::CARER_REF;
        Forename: "Forename";
        Surname: "Surname";
        Deleted: h::DELETED;
        StartDate: h::START_DATE;
        EndDate: h::END_DATE;
        Email: "Email";
        Mobile: "Mobile";
    }
}

/// The carers file's entry in the table of kinds.
pub static KIND: Kind = Kind { kind: FileKind::Carers, noun: "carers", headings: HEADINGS, required: 4, detected_by: HEADINGS[Col::CarerRef as usize], scan_spec, judge,
    missing_hint: None,
};

/// The first pass looks for CarerRefs used on more than one row.
fn scan_spec(header: &Header) -> ScanSpec {
    ScanSpec { key: header.position(&super::source::heading_key(Col::CarerRef.heading())), ..ScanSpec::default() }
}

fn judge<'s>(file: &File<'_, 's>, issues: &mut Issues) -> Judgement<'s> {
    let (known, deleted) = match file.stored() {
        Some((s, slug)) => (Some(s.carer_refs(slug)?), s.deleted_carer_refs(slug)?),
        None => (None, HashSet::new()),
    };
    let rules = CarerRules { known: known.as_ref(), deleted: &deleted, duplicates: &file.scan.duplicate_keys };
    let mut changes = Changes { known: known.as_ref(), deleted: &deleted, upserts: Vec::new(), deletes: Vec::new() };
    let rows = super::source::Rows::open(file.incoming.path, file.scan.encoding)?;
    let counts = engine::run(rows, &file.shape(), &rules, &mut changes, issues)?;
    let pending = CarersPending { store: file.writer().map(|(s, slug)| (s, slug.clone())), upserts: changes.upserts, deletes: changes.deletes };
    Ok((counts, Box::new(pending)))
}

/// An accepted row.
pub enum Change {
    Upsert(Carer),
    Delete(String),
}

struct CarerRules<'a> {
    /// The organisation's carers before this file (`None`: validating without the store).
    known: Option<&'a HashSet<String>>,
    /// The ones it deleted before this file.
    deleted: &'a HashSet<String>,
    duplicates: &'a hashbrown::HashSet<Vec<u8>>,
}

impl Rules for CarerRules<'_> {
    type Col = Col;
    type Out = Change;
    type Scratch = ();

    fn judge(&self, r: &mut Row<'_, Col>, _: &mut ()) -> Result<Option<Change>, IngestError> {
        let carer_ref = r.text(Col::CarerRef, 100);
        r.require(Col::CarerRef, ": the organisation's own id for the carer");
        if let Some(c) = carer_ref.as_deref().filter(|c| self.duplicates.contains(c.as_bytes())) {
            r.push(Code::DuplicateRef, Some(Col::CarerRef), format!("{} '{}' is on more than one row of this file; all rows carrying it are rejected", Col::CarerRef.heading(), quote(c)));
        }
        let deleted = r.boolean(Col::Deleted).unwrap_or(false);
        let start_date = r.date(Col::StartDate);
        let end_date = r.date(Col::EndDate);
        if let (Some(start), Some(end), false) = (start_date, end_date, deleted) {
            if end < start {
                let message = format!("EndDate {} is before StartDate {}: a carer's end is on or after the day they start", crate::domain::uk_date(end), crate::domain::uk_date(start));
                r.push(Code::BadDate, Some(Col::EndDate), message);
            }
        }
        if !deleted {
            r.require(Col::Forename, "");
            r.require(Col::Surname, "");
        }
        let Some(carer_ref) = carer_ref else { return Ok(None) };
        if r.has_errors() {
            return Ok(None);
        }
        if deleted {
            // One deleted already (the same file sent again) is left as it is (SPEC 3).
            if self.known.is_some_and(|k| !k.contains(&carer_ref)) && !self.deleted.contains(&carer_ref) {
                r.push(Code::DeleteUnknown, Some(Col::CarerRef), format!("there is no carer '{}' to delete", quote(&carer_ref)));
                return Ok(None);
            }
            return Ok(Some(Change::Delete(carer_ref)));
        }
        let cell = |col| r.opt(col).map(|v| v.into_owned());
        Ok(Some(Change::Upsert(Carer {
            carer_ref,
            forename: cell(Col::Forename).unwrap_or_default(),
            surname: cell(Col::Surname).unwrap_or_default(),
            start_date,
            end_date,
            email: cell(Col::Email),
            mobile: cell(Col::Mobile),
        })))
    }
}

/// The accepted rows, in file order, to be stored in one batch with the import record.
struct Changes<'a> {
    known: Option<&'a HashSet<String>>,
    /// Carers deleted before: one sent again is updated, as a visit is (SPEC 3.4; since 2026-12-03
    /// it was counted new).
    deleted: &'a HashSet<String>,
    upserts: Vec<Carer>,
    deletes: Vec<String>,
}

impl Apply<Change> for Changes<'_> {
    fn apply(&mut self, _: &mut Judged<Change>, change: Change) -> Result<Applied, IngestError> {
        Ok(match change {
            Change::Upsert(c) => {
                let known = self.known.is_some_and(|k| k.contains(&c.carer_ref)) || self.deleted.contains(&c.carer_ref);
                let applied = if known { Applied::Updated } else { Applied::New };
                self.upserts.push(c);
                applied
            }
            // A deletion counts as updated (SPEC 3).
            Change::Delete(r) => {
                self.deletes.push(r);
                Applied::Updated
            }
        })
    }
}

struct CarersPending<'s> {
    /// `None` when nothing is written (validate).
    store: Option<(&'s Store, Slug)>,
    upserts: Vec<Carer>,
    deletes: Vec<String>,
}

impl Pending for CarersPending<'_> {
    fn commit(self: Box<Self>, result: &ImportResult) -> Result<(), StoreError> {
        match self.store {
            Some((s, slug)) => s.commit_carers(&slug, &self.upserts, &self.deletes, result),
            None => Ok(()),
        }
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::domain::Organisation;
    use crate::ingest::{process, Incoming, Mode};
    use crate::outcome::{Code, FileKind, ImportResult};
    use crate::store::Store;

    const HEADER: &str = "CarerRef,Forename,Surname,Deleted";

    fn run(rows: &[&str], mode: Mode<'_>) -> ImportResult {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carers.csv");
        std::fs::write(&path, format!("{HEADER}\r\n{}\r\n", rows.join("\r\n"))).unwrap();
        let incoming = Incoming { path: &path, file_name: "carers.csv".into(), import_id: uuid::Uuid::now_v7().to_string(), received_at: chrono::Utc::now(), attachments: None };
        let org = Organisation::new("Pearl Carers Ltd", None);
        process(&Config::default(), Some(&org), &incoming, mode).unwrap()
    }

    fn validate(rows: &[&str]) -> ImportResult {
        run(rows, Mode::Validate { store: None, cplis: None })
    }

    fn codes(r: &ImportResult) -> Vec<(Option<u64>, Code)> {
        r.issues.iter().map(|i| (i.row, i.code)).collect()
    }

    #[test]
    fn a_carer_needs_a_ref_a_forename_and_a_surname() {
        let r = validate(&["C1,Lisa,Simpson,0", ",Bart,Simpson,0", "C3,,Simpson,0", "C4,Maggie,,N"]);
        assert_eq!(codes(&r), [(Some(3), Code::Required), (Some(4), Code::Required), (Some(5), Code::Required)]);
        assert_eq!(r.issues.iter().map(|i| i.field.as_deref().unwrap()).collect::<Vec<_>>(), ["CarerRef", "Forename", "Surname"]);
        assert_eq!((r.kind, r.counts.read, r.counts.new, r.counts.rejected), (FileKind::Carers, 4, 1, 3));
    }

    #[test]
    fn every_row_carrying_a_carer_ref_used_twice_is_rejected() {
        let r = validate(&["C1,Lisa,Simpson,0", "C2,Bart,Simpson,0", "C1,Lisa,Simpson,0"]);
        assert_eq!(codes(&r), [(Some(2), Code::DuplicateRef), (Some(4), Code::DuplicateRef)]);
        assert_eq!(r.issues[0].reference.as_deref(), Some("C1"));
    }

    #[test]
    fn deleted_is_0_1_y_or_n_and_a_deletion_needs_no_names() {
        let (_d, store) = temp_store();
        run(&["C1,Lisa,Simpson,0"], Mode::Import(&store));
        let r = run(&["C1,,,1", "C2,Bart,Simpson,maybe"], Mode::Import(&store));
        assert_eq!(codes(&r), [(Some(3), Code::BadBoolean)]);
        assert_eq!((r.counts.updated, r.counts.rejected), (1, 1));
        assert!(store.carer_refs(&pearl()).unwrap().is_empty());
    }

    #[test]
    fn deleting_a_carer_the_organisation_does_not_have_is_rejected() {
        let (_d, store) = temp_store();
        let r = run(&["C9,,,Y"], Mode::Import(&store));
        assert_eq!(codes(&r), [(Some(2), Code::DeleteUnknown)]);
    }

    #[test]
    fn a_carers_deletion_sent_again_changes_nothing_and_counts_as_updated() {
        let (_d, store) = temp_store();
        run(&["C1,Lisa,Simpson,0"], Mode::Import(&store));
        run(&["C1,,,1"], Mode::Import(&store));
        let again = run(&["C1,,,1"], Mode::Import(&store));
        assert_eq!((again.counts.updated, again.counts.rejected), (1, 0), "{:#?}", again.issues);
        assert!(store.carer_refs(&pearl()).unwrap().is_empty());
        // Sent again as a carer, it is back, updated (its CarerRef is known, as a deleted visit's
        // VisitRef is); deleting it again works as the first time.
        let back = run(&["C1,Lisa,Simpson,0"], Mode::Import(&store));
        assert_eq!((back.counts.new, back.counts.updated, store.carer_refs(&pearl()).unwrap().len()), (0, 1, 1));
        assert!(store.deleted_carer_refs(&pearl()).unwrap().is_empty());
    }

    #[test]
    fn validating_a_carers_deletion_without_the_store_does_not_call_it_unknown() {
        let r = validate(&["C9,,,Y"]);
        assert_eq!((r.counts.updated, r.counts.rejected, codes(&r)), (1, 0, vec![]));
    }

    #[test]
    fn a_known_carer_ref_is_updated_and_a_new_one_added() {
        let (_d, store) = temp_store();
        run(&["C1,Lisa,Simpson,0"], Mode::Import(&store));
        let r = run(&["C1,Lisa,Simpson-Flanders,0", "C2,Bart,Simpson,0"], Mode::Import(&store));
        assert_eq!((r.counts.new, r.counts.updated, r.counts.rejected), (1, 1, 0), "{:#?}", r.issues);
        assert_eq!(store.carer_refs(&pearl()).unwrap().len(), 2);
    }

    #[test]
    fn a_carer_ref_longer_than_100_characters_is_too_long() {
        let long = format!("{},Lisa,Simpson,0", "C".repeat(101));
        assert_eq!(codes(&validate(&[&long])), [(Some(2), Code::TooLong)]);
    }

    #[test]
    fn a_control_character_rejects_the_row_naming_the_column_and_nothing_else_is_said_of_it() {
        let r = validate(&["C\u{1b}1,,Simpson,0"]);
        assert_eq!(codes(&r), [(Some(2), Code::ControlCharacter)]);
        assert_eq!(r.issues[0].field.as_deref(), Some("CarerRef"));
    }

    #[test]
    fn a_row_short_of_fields_is_rejected_and_empty_cells_after_the_last_heading_are_not() {
        let r = validate(&["C1,Lisa,Simpson", "C2,Bart,Simpson,0,,"]);
        assert_eq!(codes(&r), [(Some(2), Code::WrongFieldCount)]);
        assert_eq!((r.counts.new, r.counts.rejected), (1, 1));
    }

    #[test]
    fn dates_and_contact_details_are_optional_and_a_bad_date_is_rejected() {
        let r = validate_text("CarerRef,Forename,Surname,Deleted,StartDate,EndDate,Email,Mobile\nC1,Lisa,Simpson,0,01/08/2022,,l@example.org,07700 900000\nC2,Bart,Simpson,0,31/02/2022,,,\n");
        assert_eq!(codes(&r), [(Some(3), Code::BadDate)]);
        assert_eq!(r.issues[0].field.as_deref(), Some("StartDate"));
    }

    #[test]
    fn a_carers_end_date_before_their_start_date_is_a_bad_date() {
        let r = validate_text("CarerRef,Forename,Surname,Deleted,StartDate,EndDate\nC1,Lisa,Simpson,0,01/10/2022,01/09/2022\nC2,Bart,Simpson,0,01/10/2022,01/10/2022\n");
        assert_eq!(codes(&r), [(Some(2), Code::BadDate)]);
        assert_eq!(r.issues[0].field.as_deref(), Some("EndDate"));
        assert!(r.issues[0].message.starts_with("EndDate 01/09/2022 is before StartDate 01/10/2022"), "{}", r.issues[0].message);
    }

    /// A whole carers file's text (its own header), validated without a store or an organisation.
    fn validate_text(text: &str) -> ImportResult {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carers.csv");
        std::fs::write(&path, text).unwrap();
        let incoming = Incoming { path: &path, file_name: "carers.csv".into(), import_id: "i".into(), received_at: chrono::Utc::now(), attachments: None };
        process(&Config::default(), None, &incoming, Mode::Validate { store: None, cplis: None }).unwrap()
    }

    fn pearl() -> crate::domain::Slug {
        crate::domain::Slug::parse("pearl-carers-ltd").unwrap()
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }
}
