//! The file reader (issue 9): both passes over any bytes, as the judging uses them. The first pass
//! either refuses the file with a file-level issue or the second pass reads every row to the end.
#![no_main]

use gateway::config::Limits;
use gateway::ingest::kinds;
use gateway::ingest::source::{self, Header, Rows, ScanError, ScanSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = gateway_fuzz::env();
    let path = env.write_input("reader.csv", data);
    // The key and slot columns each kind's first pass looks for, as `ingest::judge` asks the table for them.
    let spec = |header: &Header, kind| kinds::spec(kind).map_or_else(ScanSpec::default, |k| (k.scan_spec)(header));
    let scan = match source::scan(&path, &Limits::default(), spec) {
        Ok(s) => s,
        Err(ScanError::File(issue)) => {
            assert!(!issue.message.is_empty());
            return;
        }
        Err(ScanError::Io(e)) => panic!("the first pass failed on a file in /dev/shm: {e}"),
    };
    let _ = scan.header.kind();
    // A file the first pass accepted must read to its end: an error here leaves it unanswered.
    let mut rows = Rows::open(&path, scan.encoding).expect("the second pass opens the file");
    let mut rec = csv::ByteRecord::new();
    let mut last = 0;
    while let Some(row) = rows.next(&mut rec).unwrap_or_else(|e| panic!("the second pass failed after the first accepted the file: {e}")) {
        assert!(row > last, "rows are numbered in order ({row} after {last})");
        last = row;
        for i in 0..=rec.len() {
            let _ = rows.field(&rec, i);
        }
        let _ = source::row_data(scan.encoding, &rec);
    }
});
