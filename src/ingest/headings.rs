//! The headings more than one file kind uses, each written once (issue 11); a heading only one kind
//! has is written in that kind's module.

pub const CARER_REF: &str = "CarerRef";
pub const DELETED: &str = "Deleted";
pub const START_DATE: &str = "StartDate";
pub const END_DATE: &str = "EndDate";
