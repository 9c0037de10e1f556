//! One integration-test binary: every module drives the real `gateway` binary.

mod helpers;

/// The guide's own examples: the example week, the deletion example, scenarios, disputes.
mod guide;
/// Malformed files: each gets a result with a clear message and none makes the gateway panic.
mod malformed;
/// The inbox watcher of `gateway serve`: complete files are taken once, temporary names wait.
mod inbox;
/// A gateway killed in the middle of an import leaves all of the file or none of it.
mod crash;
/// Command-line behaviour that is not tied to one guide example (validate, visits list, period lock).
mod cli;
/// The council's exports and reports: commissioned vs actuals, hospital incentive, the commissioned care export.
mod reports;
/// Actuals files (SPEC 2.2): judged, matched, stored, re-sent.
mod actuals;
