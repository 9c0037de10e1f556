//! The carers file's rules (issue 9): any bytes, as a carers file, judged as `gateway validate` judges them
//! (with or without the store, see `Env::validate`), matched against the examples' CPLIs; the result rendered as text, CSV and JSON.
#![no_main]

use gateway::outcome::FileKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = gateway_fuzz::env();
    let file = gateway_fuzz::as_kind(FileKind::Carers, data);
    let path = env.write_input("carers.csv", &file);
    env.validate(&path, file.len());
});
