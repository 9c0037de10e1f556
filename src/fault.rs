//! Fault points for crash tests (issue 9): `GATEWAY_FAULT=NAME` makes the process stop at the point
//! named NAME as `kill -9` would, or behave there as a failure would. Read once; unset, a point costs
//! one comparison. The points (docs/results.md):
//! - stops: `before-commit`, `after-commit`, `after-result-csv`, `after-archive` (answering a file), `cplis-stored`
//!   (a CPLI load after its CPLIs are stored, before the stored visits are matched again);
//! - failures: `panic-judging` (a panic while judging), `no-space` (the first visits file's commit
//!   fails as a full disk would), `slow-answer` (2 s before an answer is put in place);
//! - the control socket (issue 10): `control-mid-reply` stops the server after the first part of a
//!   command's output is sent, before the command's end (docs/control.md).
//! - disputes (issue 12): `visits-deleted` stops after a dispute's visit is deleted, before the
//!   dispute is closed (the deletion is rolled back at the next start).

use std::sync::OnceLock;

/// Whether `GATEWAY_FAULT` names this point.
pub fn is(name: &str) -> bool {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("GATEWAY_FAULT").ok().filter(|s| !s.is_empty())).as_deref() == Some(name)
}

/// Aborts the process here if `GATEWAY_FAULT` names this point.
pub fn point(name: &str) {
    if is(name) {
        eprintln!("gateway: GATEWAY_FAULT={name}: stopping here");
        std::process::abort();
    }
}
