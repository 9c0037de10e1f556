//! Plain domain types with no I/O: what a field of a provider's file means once it has been parsed.

pub mod actual;
pub mod carer;
pub mod cell;
pub mod cpli;
pub mod date_time;
pub mod ident;
pub mod name;
pub mod number;
pub mod organisation;
pub mod period;
pub mod slug;
pub mod visit;
pub mod visit_type;

pub use actual::Actual;
pub use carer::Carer;
pub use cell::{forbidden_control, quote, TextKind};
pub use cpli::{Cpli, Quantity};
pub use date_time::{date_message, hh_mm, parse_date, parse_date_cell, parse_time, uk_date, DateProblem, Duration};
pub use ident::{is_valid_nhs_number, parse_guid, parse_numbered, Guid};
pub use name::{NameKey, NameKeys};
pub use organisation::{Organisation, Service};
pub use period::{week_start, LockRecord, LockedBy, LockedUntil, Period};
pub use slug::{Slug, SlugError};
pub use visit::{Delivered, MatchStatus, Visit};
pub use visit_type::{VisitType, VisitTypes};
