//! The visits file's rules (issue 9): any bytes, as a visits file, judged as `gateway validate` judges them
//! (with or without the store, see `Env::validate`), matched against the examples' CPLIs; the result rendered as text, CSV and JSON.
#![no_main]

use gateway::outcome::FileKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = gateway_fuzz::env();
    let file = gateway_fuzz::as_kind(FileKind::Visits, data);
    let path = env.write_input("visits.csv", &file);
    env.validate(&path, file.len());
});
