//! The one parallel judging engine every file kind runs on (issue 11): a reader thread parses rows in
//! chunks, workers judge them in parallel, and the calling thread applies judged rows in file order.
//! A small file is read, judged and applied on the calling thread alone, a mid-sized one judged on
//! one helper thread while the calling thread applies ([`Threads`]).
//!
//! Judging a row needs nothing from the rows before it (keys used twice were found by the first
//! pass), so it is a kind's pure per-row work (`Rules::judge`) and runs on `WORKERS` threads. What
//! depends on order (new or updated, repeated slots, running totals, the store) is the kind's
//! `Apply`, called here in file order. Every channel is bounded, so memory stays flat however long
//! the file is: at most about `(2 + 3 * WORKERS)` chunks of `CHUNK` rows are alive at once.

use std::sync::{mpsc, Arc, Mutex};

use super::cells::{row_issue, Column, Row};
use crate::outcome::{Code, Counts, Issue, Issues, Severity};
use super::source::{Encoding, Rows};
use super::IngestError;

/// Rows handed to a worker at a time.
pub const CHUNK: usize = 1024;
/// Judging threads; the calling thread applies their work in file order, a reader thread parses.
pub const WORKERS: usize = 2;

/// A file kind's row rules: what one row means, judged on its own.
pub trait Rules: Sync {
    type Col: Column;
    /// What an accepted row gives the in-order step (the row's change, ready to store).
    type Out: Send;
    /// Each worker's own reusable state (e.g. a cache of compared names).
    type Scratch: Default;

    /// Judges a row whose field count and characters are already checked. `None` (or any error
    /// issue pushed on `row`) rejects it.
    fn judge(&self, row: &mut Row<'_, Self::Col>, scratch: &mut Self::Scratch) -> Result<Option<Self::Out>, IngestError>;
}

/// What the in-order step made of an accepted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Updated,
    /// Refused after all by what only file order shows (e.g. the stored visit is locked); the row's
    /// issues say why.
    Rejected,
}

/// A kind's in-order step.
pub trait Apply<O> {
    /// Applies an accepted row (`out`) in file order; may add issues to `row.issues`.
    fn apply(&mut self, row: &mut Judged<O>, out: O) -> Result<Applied, IngestError>;

    /// Called after every `CHUNK` rows applied (`chunks` so far), e.g. to flush the store.
    fn chunk_done(&mut self, _chunks: usize) -> Result<(), IngestError> {
        Ok(())
    }
}

/// One row judged by a worker, to be applied in file order.
pub struct Judged<O> {
    pub row: u64,
    pub rec: csv::ByteRecord,
    pub enc: Encoding,
    pub reference: Option<String>,
    /// `None`: rejected by its rules.
    pub out: Option<O>,
    pub issues: Vec<Issue>,
}

impl<O> Judged<O> {
    /// An issue on this row.
    pub fn issue(&self, code: Code, field: Option<&str>, message: String) -> Issue {
        row_issue(self.row, self.reference.clone(), code, field, message, &self.rec, self.enc)
    }
}

/// Where a kind's columns are in this file.
pub struct Shape {
    /// For each of the kind's columns (in its heading order), its place in the file.
    pub positions: Vec<Option<usize>>,
    /// Cells in the header row.
    pub header_len: usize,
}

type Chunk = Vec<(u64, csv::ByteRecord)>;

/// Judges every row of `rows` with `rules` and applies the accepted ones with `apply`, in file order;
/// each row's issues go to `issues` in row order. Returns the counts.
pub fn run<K: Rules, A: Apply<K::Out>>(rows: Rows, shape: &Shape, rules: &K, apply: &mut A, issues: &mut Issues) -> Result<Counts, IngestError> {
    run_on(Threads::for_bytes(rows.bytes()), rows, shape, rules, apply, issues)
}

fn run_on<K: Rules, A: Apply<K::Out>>(threads: Threads, rows: Rows, shape: &Shape, rules: &K, apply: &mut A, issues: &mut Issues) -> Result<Counts, IngestError> {
    match threads {
        Threads::One => run_here(rows, shape, rules, apply, issues),
        Threads::Two => run_beside(rows, shape, rules, apply, issues),
        Threads::Many => run_parallel(rows, shape, rules, apply, issues),
    }
}

/// How many threads a file is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// Read, judged and applied on the calling thread.
    One,
    /// Read and judged on one helper thread, applied on the calling thread meanwhile.
    Two,
    /// A reader, `WORKERS` judges, and the calling thread applying.
    Many,
}

impl Threads {
    fn for_bytes(bytes: u64) -> Threads {
        if bytes <= ON_ONE_THREAD_BYTES {
            Threads::One
        } else if bytes <= ON_TWO_THREADS_BYTES {
            Threads::Two
        } else {
            Threads::Many
        }
    }
}

/// Files up to this size (about 110 visit rows) are read, judged and applied on the calling
/// thread: a thread started for them would cost about what it saves.
pub const ON_ONE_THREAD_BYTES: u64 = 16 * 1024;

/// Files up to this size (about 1,800 visit rows) are read and judged on one helper thread in chunks
/// of [`SMALL_CHUNK`] rows while the calling thread applies the chunks before them (issue 10: judging
/// and storing a 1,000-row file took turns on one core while a burst left the other idle). Their
/// rows would make one or two chunks of `CHUNK`, which `WORKERS` threads could not share, and three
/// threads a file (and their allocator heaps) were part of what a burst of small uploads cost.
pub const ON_TWO_THREADS_BYTES: u64 = 256 * 1024;

/// Rows handed from the helper to the calling thread at a time in a file of [`Threads::Two`]: small,
/// so that storing begins soon after judging does.
pub const SMALL_CHUNK: usize = 128;

/// [`run`] for a mid-sized file: one helper thread reads and judges, the calling thread applies.
fn run_beside<K: Rules, A: Apply<K::Out>>(mut rows: Rows, shape: &Shape, rules: &K, apply: &mut A, issues: &mut Issues) -> Result<Counts, IngestError> {
    let enc = rows.encoding;
    let (judged_tx, judged_rx) = mpsc::sync_channel::<Result<Vec<Judged<K::Out>>, IngestError>>(4);
    // Applied rows' records go back to the helper to be filled again, as in `run_parallel`.
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<csv::ByteRecord>>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let (mut scratch, mut pool) = (K::Scratch::default(), Vec::new());
            loop {
                let mut record = || recycled(&mut pool, &spare_rx);
                let (chunk, last) = read_chunk(&mut rows, SMALL_CHUNK, &mut record);
                if chunk.as_ref().is_ok_and(|c| c.is_empty()) {
                    return;
                }
                let judged = chunk.map_err(IngestError::from).and_then(|c| judge_chunk(c, shape, enc, rules, &mut scratch));
                let failed = judged.is_err();
                // The calling thread stopped (an error applying): so does this one.
                if judged_tx.send(judged).is_err() || last || failed {
                    return;
                }
            }
        });
        let mut counts = Counts::default();
        for (next, judged) in (1..).zip(judged_rx) {
            let spare = apply_chunk(judged?, apply, &mut counts, issues)?;
            let _ = spare_tx.send(spare);
            apply.chunk_done(next)?;
        }
        Ok(counts)
    })
}

/// [`run`] for a large file: a reader, `WORKERS` judges, the calling thread applying in order.
fn run_parallel<K: Rules, A: Apply<K::Out>>(rows: Rows, shape: &Shape, rules: &K, apply: &mut A, issues: &mut Issues) -> Result<Counts, IngestError> {
    let enc = rows.encoding;
    let (work_tx, work_rx) = mpsc::sync_channel::<(usize, std::io::Result<Chunk>)>(WORKERS);
    // Owned by the workers: when they stop early the reader's next send fails and it stops too.
    let work_rx = Arc::new(Mutex::new(work_rx));
    // Applied rows' records go back to the reader to be filled again: no record is allocated or
    // freed a row (issue 11), and none is freed on another thread than the one that made it.
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<csv::ByteRecord>>();
    std::thread::scope(|s| {
        s.spawn(move || read_chunks(rows, work_tx, spare_rx));
        let (done_tx, done_rx) = mpsc::sync_channel::<(usize, Result<Vec<Judged<K::Out>>, IngestError>)>(2 * WORKERS);
        for _ in 0..WORKERS {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            s.spawn(move || {
                let mut scratch = K::Scratch::default();
                loop {
                    let Ok((idx, chunk)) = work_rx.lock().expect("reader lock").recv() else { break };
                    let judged = chunk.map_err(IngestError::from).and_then(|c| judge_chunk(c, shape, enc, rules, &mut scratch));
                    if done_tx.send((idx, judged)).is_err() {
                        break;
                    }
                }
            });
        }
        drop((done_tx, work_rx));
        let mut counts = Counts::default();
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        for (idx, judged) in done_rx {
            waiting.insert(idx, judged);
            while let Some(judged) = waiting.remove(&next) {
                next += 1;
                let spare = apply_chunk(judged?, apply, &mut counts, issues)?;
                // The reader may have finished; its records are then simply dropped.
                let _ = spare_tx.send(spare);
                apply.chunk_done(next)?;
            }
        }
        Ok(counts)
    })
}

/// [`run`] without threads, for a small file: the same chunks judged and applied in turn.
fn run_here<K: Rules, A: Apply<K::Out>>(mut rows: Rows, shape: &Shape, rules: &K, apply: &mut A, issues: &mut Issues) -> Result<Counts, IngestError> {
    let (enc, mut scratch, mut counts) = (rows.encoding, K::Scratch::default(), Counts::default());
    let mut spare: Vec<csv::ByteRecord> = Vec::new();
    for next in 1.. {
        let mut record = || spare.pop().unwrap_or_else(|| csv::ByteRecord::with_capacity(256, 32));
        let (chunk, last) = read_chunk(&mut rows, CHUNK, &mut record);
        let chunk = chunk?;
        if chunk.is_empty() {
            break;
        }
        spare = apply_chunk(judge_chunk(chunk, shape, enc, rules, &mut scratch)?, apply, &mut counts, issues)?;
        apply.chunk_done(next)?;
        if last {
            break;
        }
    }
    Ok(counts)
}

/// Applies a judged chunk in file order; gives back its records to be filled again.
fn apply_chunk<O, A: Apply<O>>(judged: Vec<Judged<O>>, apply: &mut A, counts: &mut Counts, issues: &mut Issues) -> Result<Vec<csv::ByteRecord>, IngestError> {
    let mut spare = Vec::with_capacity(judged.len());
    for mut row in judged {
        counts.read += 1;
        let applied = match row.out.take() {
            None => Applied::Rejected,
            Some(out) => apply.apply(&mut row, out)?,
        };
        match applied {
            Applied::New => counts.new += 1,
            Applied::Updated => counts.updated += 1,
            Applied::Rejected => counts.rejected += 1,
        }
        issues.append(&mut row.issues);
        spare.push(row.rec);
    }
    Ok(spare)
}

/// A record to fill: one the applying thread gave back (`spare`), else a new one.
fn recycled(pool: &mut Vec<csv::ByteRecord>, spare: &mpsc::Receiver<Vec<csv::ByteRecord>>) -> csv::ByteRecord {
    if pool.is_empty() {
        *pool = spare.try_recv().unwrap_or_default();
    }
    pool.pop().unwrap_or_else(|| csv::ByteRecord::with_capacity(256, 32))
}

/// Up to `size` rows, and whether the file ended (or failed) with them.
fn read_chunk(rows: &mut Rows, size: usize, record: &mut impl FnMut() -> csv::ByteRecord) -> (std::io::Result<Chunk>, bool) {
    let mut chunk = Vec::with_capacity(size);
    let mut rec = record();
    loop {
        match rows.next(&mut rec) {
            Ok(Some(row)) => {
                chunk.push((row, std::mem::replace(&mut rec, record())));
                if chunk.len() == size {
                    return (Ok(chunk), false);
                }
            }
            Ok(None) => return (Ok(chunk), true),
            Err(e) => return (Err(e), true),
        }
    }
}

fn read_chunks(mut rows: Rows, tx: mpsc::SyncSender<(usize, std::io::Result<Chunk>)>, spare: mpsc::Receiver<Vec<csv::ByteRecord>>) {
    let mut pool: Vec<csv::ByteRecord> = Vec::new();
    let mut record = move || recycled(&mut pool, &spare);
    for idx in 0.. {
        let (chunk, last) = read_chunk(&mut rows, CHUNK, &mut record);
        if chunk.as_ref().is_ok_and(|c| c.is_empty()) {
            return;
        }
        if tx.send((idx, chunk)).is_err() || last {
            return;
        }
    }
}

fn judge_chunk<K: Rules>(chunk: Chunk, shape: &Shape, enc: Encoding, rules: &K, scratch: &mut K::Scratch) -> Result<Vec<Judged<K::Out>>, IngestError> {
    let mut out = Vec::with_capacity(chunk.len());
    for (row, rec) in chunk {
        super::note_row(row);
        let (reference, judged, issues) = {
            let mut r = Row::<K::Col>::new(row, &rec, enc, &shape.positions, shape.header_len);
            let judged = judge_row(&mut r, rules, scratch)?;
            let rejected = r.issues.iter().any(|i| i.severity == Severity::Error);
            (r.reference, judged.filter(|_| !rejected), r.issues)
        };
        out.push(Judged { row, rec, enc, reference, out: judged, issues });
    }
    Ok(out)
}

/// `WRONG_FIELD_COUNT`'s message for a row of `len` cells under `header_len` headings, if it is
/// wrong; empty cells after the last heading are tolerated (Excel adds them).
pub(super) fn wrong_field_count<'c>(len: usize, header_len: usize, cell: impl Fn(usize) -> &'c [u8]) -> Option<String> {
    let extra_filled = (header_len..len).any(|i| !cell(i).trim_ascii().is_empty());
    if len >= header_len && !extra_filled {
        return None;
    }
    let why = if len < header_len { "a comma is missing, or a quoted cell was not closed" } else { "a cell holds a comma without being in double quotes" };
    Some(format!("this row has {len} fields but the header has {header_len}: {why}"))
}

/// What every kind checks first: the row's reference, its field count, and control characters; a
/// row failing either is judged no further (its other messages would only repeat the fault).
fn judge_row<K: Rules>(r: &mut Row<'_, K::Col>, rules: &K, scratch: &mut K::Scratch) -> Result<Option<K::Out>, IngestError> {
    r.reference = r.opt(<K::Col as Column>::KEY).map(|v| super::cells::quoted(&v));
    if let Some(message) = wrong_field_count(r.rec.len(), r.header_len, |i| r.rec.get(i).unwrap_or_default()) {
        r.push(Code::WrongFieldCount, None, message);
        return Ok(None);
    }
    if r.check_controls() {
        return Ok(None);
    }
    rules.judge(r, scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::cells::columns;
    use crate::ingest::source::Rows;

    columns! {
        enum Col by Key {
            Key: "Key";
            Value: "Value";
        }
    }

    /// Accepts a row whose Value is a whole number; rejects it otherwise.
    struct Numbers;

    impl Rules for Numbers {
        type Col = Col;
        type Out = u64;
        type Scratch = usize;

        fn judge(&self, r: &mut Row<'_, Col>, rows_seen: &mut usize) -> Result<Option<u64>, IngestError> {
            *rows_seen += 1;
            Ok(r.whole(Col::Value))
        }
    }

    /// Records what it is given, in order; every even number is new, every odd one updated, and a
    /// value of 7 is refused in order.
    #[derive(Default)]
    struct Record {
        seen: Vec<u64>,
        chunks: usize,
    }

    impl Apply<u64> for Record {
        fn apply(&mut self, row: &mut Judged<u64>, n: u64) -> Result<Applied, IngestError> {
            self.seen.push(n);
            if n == 7 {
                let issue = row.issue(Code::PeriodLocked, Some("Value"), "seven is locked".into());
                row.issues.push(issue);
                return Ok(Applied::Rejected);
            }
            Ok(if n.is_multiple_of(2) { Applied::New } else { Applied::Updated })
        }

        fn chunk_done(&mut self, chunks: usize) -> Result<(), IngestError> {
            self.chunks = chunks;
            Ok(())
        }
    }

    fn run_text(text: &str, threads: Option<Threads>) -> (Counts, Record, Vec<Issue>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, text).unwrap();
        let rows = Rows::open(&path, Encoding::Utf8).unwrap();
        let mut issues = Issues::new(Some(dir.path())).unwrap();
        let mut record = Record::default();
        let shape = Shape { positions: vec![Some(0), Some(1)], header_len: 2 };
        let counts = match threads {
            Some(t) => run_on(t, rows, &shape, &Numbers, &mut record, &mut issues),
            None => run(rows, &shape, &Numbers, &mut record, &mut issues),
        }
        .unwrap();
        let log = issues.finish().unwrap();
        (counts, record, log.first(usize::MAX).unwrap())
    }

    /// `CHUNK * 5 + 17` rows, one in a thousand with a bad number; each key padded to `key_len`.
    fn chunks_of_rows(key_len: usize) -> (String, usize) {
        let n = CHUNK * 5 + 17;
        let mut text = String::from("Key,Value\n");
        for i in 0..n {
            let value = if i % 1000 == 999 { "x".to_string() } else { (i % 7 + i / 7 * 7).to_string() };
            text.push_str(&format!("K{i:0key_len$},{value}\n"));
        }
        (text, n)
    }

    fn applied_and_reported_in_file_order(text: &str, n: usize, threads: Threads) {
        let (counts, record, issues) = run_text(text, Some(threads));
        let bad = n / 1000;
        assert_eq!(counts.read, n as u64);
        assert_eq!(record.seen.len(), n - bad);
        assert!(record.seen.windows(2).all(|w| w[0] < w[1]), "applied in file order");
        let chunk = if threads == Threads::Two { SMALL_CHUNK } else { CHUNK };
        assert_eq!(record.chunks, n.div_ceil(chunk), "told of every chunk applied");
        let rows: Vec<u64> = issues.iter().map(|i| i.row.unwrap()).collect();
        assert!(rows.windows(2).all(|w| w[0] < w[1]), "issues in row order: {rows:?}");
        assert_eq!(issues.iter().filter(|i| i.code == Code::BadNumber).count(), bad);
        assert_eq!(issues.iter().filter(|i| i.code == Code::PeriodLocked).count(), 1);
        assert_eq!(counts.rejected, bad as u64 + 1);
        assert_eq!(counts.new + counts.updated + counts.rejected, counts.read);
    }

    #[test]
    fn rows_judged_in_parallel_are_applied_and_reported_in_file_order() {
        let (text, n) = chunks_of_rows(80);
        assert_eq!(Threads::for_bytes(text.len() as u64), Threads::Many, "a file large enough for the threads");
        applied_and_reported_in_file_order(&text, n, Threads::Many);
    }

    #[test]
    fn a_file_judged_beside_the_thread_applying_it_gives_the_same_rows_counts_and_issues() {
        let (text, n) = chunks_of_rows(1);
        assert_eq!(Threads::for_bytes(text.len() as u64), Threads::Two, "a mid-sized file");
        applied_and_reported_in_file_order(&text, n, Threads::Two);
    }

    #[test]
    fn a_small_file_judged_on_one_thread_gives_the_same_rows_counts_and_issues() {
        let (text, n) = chunks_of_rows(1);
        applied_and_reported_in_file_order(&text, n, Threads::One);
        assert_eq!(Threads::for_bytes(ON_ONE_THREAD_BYTES), Threads::One);
    }

    #[test]
    fn an_error_applying_a_row_stops_the_helper_thread_and_is_returned() {
        struct Failing;
        impl Apply<u64> for Failing {
            fn apply(&mut self, _: &mut Judged<u64>, n: u64) -> Result<Applied, IngestError> {
                if n == 300 {
                    return Err(std::io::Error::other("the store failed").into());
                }
                Ok(Applied::New)
            }
        }
        let (text, _) = chunks_of_rows(1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, text).unwrap();
        let shape = Shape { positions: vec![Some(0), Some(1)], header_len: 2 };
        for threads in [Threads::One, Threads::Two, Threads::Many] {
            let rows = Rows::open(&path, Encoding::Utf8).unwrap();
            let mut issues = Issues::new(Some(dir.path())).unwrap();
            let failed = run_on(threads, rows, &shape, &Numbers, &mut Failing, &mut issues);
            assert!(matches!(failed, Err(IngestError::Io(_))), "{threads:?}: {:?}", failed.err());
        }
    }

    #[test]
    fn a_row_with_a_missing_or_extra_filled_field_is_rejected_before_its_rules_see_it() {
        let (counts, record, issues) = run_text("Key,Value\nK1\nK2,2,,\nK3,3,oops\n", None);
        assert_eq!(record.seen, [2]);
        assert_eq!(issues.iter().map(|i| (i.row, i.code)).collect::<Vec<_>>(), [(Some(2), Code::WrongFieldCount), (Some(4), Code::WrongFieldCount)]);
        assert_eq!(issues[0].reference.as_deref(), Some("K1"));
        assert_eq!((counts.read, counts.rejected), (3, 2));
    }
}
