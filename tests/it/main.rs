//! One integration-test binary: every module drives the real `gateway` binary.

mod helpers;
/// A running `gateway serve` on a free port with its own data folder.
mod server;

/// The guide's own examples: the example week, the deletion example, scenarios, disputes.
mod guide;
/// Malformed files: each gets a result with a clear message and none makes the gateway panic.
mod malformed;
/// The inbox watcher of `gateway serve`: complete files are taken once, temporary names wait.
mod inbox;
/// Email of results through a real SMTP server on loopback: counts, retries, restarts, contacts.
mod mail;
/// A gateway killed in the middle of an import leaves all of the file or none of it.
mod crash;
/// Command-line behaviour that is not tied to one guide example (validate, visits list, period lock).
mod cli;
/// The SFTP front door, driven by real clients: OpenSSH sftp and scp, curl, lftp, rclone, paramiko.
mod sftp;
/// Issue 10: the council's login and folder; the CPLI extract dropped into its inbox; isolation both ways.
mod council;
/// The council's exports and reports: commissioned vs actuals, hospital incentive, the commissioned care export.
mod reports;
/// Issue 10: the exports kept current in each organisation's and the council's `/exports`.
mod exports;
/// Actuals files (SPEC 2.2): judged, matched, stored, re-sent.
mod actuals;
/// A full disk: the gateway answers what it can and goes on once space returns.
mod disk;
/// Inputs the fuzz targets (fuzz/) crashed the gateway on: each is answered, never a panic.
mod fuzz_regressions;
/// Issue 11: dates, GUIDs through the export, extra-care actuals in the report, Planned against the CPLI.
mod rules_other;
/// Issue 11's visit rules (service levels, Spot, DHS/DHF, in hospital, planned hours) with hand-written files.
mod rules_visits;
/// Issue 10: locks on the council's schedule, council contacts, the council's daily summary email.
mod schedule;
/// Issue 10: commands sent to a running server through its control socket, uploads in flight meanwhile.
mod control;
/// Issue 12: one-off claims of the hospital incentive, by file both ways: checks, decisions, exports, emails.
mod claims;
/// Issue 12: disputes, by file both ways: raised, answered (or resubmitted), overdue, resolved, the visit deleted.
mod disputes;
