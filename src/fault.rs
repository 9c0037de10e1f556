//! Fault points for crash tests: `GATEWAY_FAULT=NAME` makes the process abort (as `kill -9` would)
//! when it reaches the point named NAME. Read once; unset, a point costs one comparison.

use std::sync::OnceLock;

fn armed() -> Option<&'static str> {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("GATEWAY_FAULT").ok().filter(|s| !s.is_empty())).as_deref()
}

/// Aborts the process here if `GATEWAY_FAULT` names this point.
pub fn point(name: &str) {
    if armed() == Some(name) {
        eprintln!("gateway: fault point '{name}' reached (GATEWAY_FAULT): aborting");
        std::process::abort();
    }
}
