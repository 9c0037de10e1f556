//! Reading an uploaded file: size, encoding, header, duplicate keys (first pass), then rows (second pass).
//!
//! Two streaming passes keep memory flat: the first hashes the bytes, decides UTF-8 or Windows-1252,
//! reads the header and finds the keys used twice (so every row carrying one can be rejected before
//! anything is stored); the second judges rows one at a time.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::outcome::{Code, FileKind, Issue};
use crate::config::Limits;
use crate::domain::number::thousands;
use crate::domain::quote;

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// Excel's default "CSV" on Windows; every byte sequence decodes.
    Windows1252,
}

/// The header row: each heading normalised (case and spaces ignored) and as written.
#[derive(Debug, Clone)]
pub struct Header {
    /// As written, for messages: quoted (`quote`), so a 5 MB heading is never repeated whole (issue 9).
    pub names: Vec<String>,
    pub keys: Vec<String>,
}

impl Header {
    /// A header row that is not UTF-8 is Windows-1252, as the whole file then is (since
    /// 2026-12-03: it was read as UTF-8, so a heading with Excel's non-breaking space, byte A0, was
    /// unknown and the file failed).
    pub fn from_record(rec: &csv::ByteRecord) -> Header {
        let mut names = Vec::with_capacity(rec.len());
        let mut keys = Vec::with_capacity(rec.len());
        let encoding = if std::str::from_utf8(rec.as_slice()).is_ok() { Encoding::Utf8 } else { Encoding::Windows1252 };
        for f in rec.iter() {
            let text = decode(encoding, f.strip_prefix(BOM).unwrap_or(f));
            let name = text.trim();
            keys.push(heading_key(name));
            names.push(quote(name).to_string());
        }
        Header { names, keys }
    }

    pub fn position(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// The kind the table of kinds detects in this header.
    pub fn kind(&self) -> FileKind {
        super::kinds::detect(self).map_or(FileKind::Unknown, |k| k.kind)
    }

    #[cfg(test)]
    pub fn from_names(names: &[&str]) -> Header {
        Header::from_record(&csv::ByteRecord::from(names.to_vec()))
    }
}

/// Where each of a file kind's `headings` is. The first `required` must be there; a heading twice, or
/// a required one missing, fails the file (the `Err` issues); an unknown heading is a warning.
pub fn find_columns(
    header: &Header,
    kind: &str,
    headings: &[&str],
    required: usize,
    missing_hint: &str,
    warnings: &mut Vec<Issue>,
) -> Result<Vec<Option<usize>>, Vec<Issue>> {
    let keys: Vec<String> = headings.iter().map(|h| heading_key(h)).collect();
    let mut idx: Vec<Option<usize>> = vec![None; headings.len()];
    let mut errors = Vec::new();
    let mut unknown = 0usize;
    for (pos, key) in header.keys.iter().enumerate() {
        match keys.iter().position(|k| k == key) {
            Some(i) => match idx[i] {
                Some(first) => errors.push(Issue::file(
                    Code::DuplicateColumn,
                    Some(headings[i]),
                    format!("the heading {} appears twice (columns {} and {}); keep one", headings[i], first + 1, pos + 1),
                )),
                None => idx[i] = Some(pos),
            },
            None if key.is_empty() => {}
            None => {
                unknown += 1;
                if unknown <= MAX_UNKNOWN_COLUMN_WARNINGS {
                    warnings.push(Issue::file(
                        Code::UnknownColumn,
                        Some(&header.names[pos]),
                        format!("column {} '{}' is not one of the {kind} file's headings and is ignored", pos + 1, header.names[pos]),
                    ));
                }
            }
        }
    }
    if unknown > MAX_UNKNOWN_COLUMN_WARNINGS {
        let more = unknown - MAX_UNKNOWN_COLUMN_WARNINGS;
        warnings.push(Issue::file(
            Code::UnknownColumn,
            None,
            format!(
                "{} more columns are not {kind} headings and are ignored ({} unknown in all; only the first {MAX_UNKNOWN_COLUMN_WARNINGS} are listed); if the header row holds data, the file's line breaks may be missing",
                thousands(more as u64),
                thousands(unknown as u64)
            ),
        ));
    }
    for (h, _) in headings.iter().zip(&idx).take(required).filter(|(_, i)| i.is_none()) {
        errors.push(Issue::file(Code::MissingColumn, Some(h), format!("the heading {h} is missing; {missing_hint}")));
    }
    if errors.is_empty() { Ok(idx) } else { Err(errors) }
}

/// Unknown headings listed one by one; the rest are counted in one more warning (issue 9: a file
/// whose line breaks were stripped gave 48,600 of them).
pub const MAX_UNKNOWN_COLUMN_WARNINGS: usize = 20;

/// `DeliveredEntryTime IsOverridden` -> `deliveredentrytimeisoverridden`.
pub fn heading_key(name: &str) -> String {
    name.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// What the first pass learnt about a file.
#[derive(Debug)]
pub struct Scan {
    pub size: u64,
    pub sha256: String,
    pub encoding: Encoding,
    pub header: Header,
    pub kind: FileKind,
    /// Keys (trimmed bytes of the key column) that appear on more than one row.
    pub duplicate_keys: hashbrown::HashSet<Vec<u8>>,
    /// The least and the greatest key (trimmed bytes, as read), when any row has one.
    pub key_range: Option<(Vec<u8>, Vec<u8>)>,
    /// Slot hashes (see `ScanSpec::slot`) that more than one row has.
    pub repeated_slots: hashbrown::HashSet<u64>,
    /// Every hash `ScanSpec::loose` gave (visits: the planned date and time of a row naming its
    /// client other than by SSRef); as few as such rows.
    pub loose_slots: hashbrown::HashSet<u64>,
    pub data_rows: u64,
}

/// What the first pass looks for, once it has read the header.
#[derive(Default)]
pub struct ScanSpec {
    /// The key column: a value on two rows rejects both.
    pub key: Option<usize>,
    /// A row's slot (visits: client, planned date and entry time), hashed; `None` when it has none.
    pub slot: Option<SlotFn>,
    /// A second hash of some rows, every one kept (visits: the slot's time of a row whose client the
    /// first pass cannot name as the others do, by SSRef).
    pub loose: Option<SlotFn>,
}

pub type SlotFn = Box<dyn Fn(&csv::ByteRecord) -> Option<u64> + Send + Sync>;

/// Records handed from the reading thread to the hashing thread at a time.
const SCAN_CHUNK: usize = 1024;

/// Why a file cannot be read at all: a file-level issue, or an I/O error of ours.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{}", .0.message)]
    File(Issue),
    #[error("reading the file: {0}")]
    Io(#[from] io::Error),
}

fn file_issue(code: Code, message: impl Into<String>) -> ScanError {
    ScanError::File(Issue::file(code, None, message))
}

/// A fast hash that is the same in every pass (a fixed seed).
pub fn stable_hash(value: impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(value)
}

/// The first pass. Memory stays at 16 bytes a row: keys and slots are kept as hashes, sorted at the
/// end to find repeats; the few repeated key hashes are then checked exactly.
pub fn scan(path: &Path, limits: &Limits, spec: impl Fn(&Header, FileKind) -> ScanSpec) -> Result<Scan, ScanError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > limits.max_file_bytes {
        return Err(file_issue(
            Code::FileTooLarge,
            format!("the file is {} bytes; the limit is {} bytes: split it into smaller files", size, limits.max_file_bytes),
        ));
    }
    let mut head = vec![0u8; 8192.min(size as usize)];
    file.read_exact(&mut head)?;
    if let Some(what) = sniff_binary(&head) {
        return Err(file_issue(Code::FileUnreadable, not_csv_message(what)));
    }
    file.seek(SeekFrom::Start(0))?;

    // Three threads share the work: this one reads (checking UTF-8 and line lengths, parsing CSV),
    // one hashes the bytes (sha256), one hashes each row's key and slot. Record buffers go back and
    // forth, so nothing is allocated per row.
    std::thread::scope(|s| {
        let (bytes_tx, bytes_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let sha = s.spawn(move || {
            // aws-lc's SHA-256 (already built for russh and lettre) uses the CPU's SHA or AVX2
            // instructions; sha2's portable code, which this machine's CPU (no SHA extension) ran,
            // cost about 7,400 instructions a visit row (issue 11).
            let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            for bytes in bytes_rx {
                hash.update(&bytes);
            }
            hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
        });
        let record_start = std::rc::Rc::new(Cell::new(RecordStart::default()));
        let mut tee = Tee::new(file, limits.max_line_bytes, bytes_tx);
        tee.bound_records(limits.max_record_bytes, record_start.clone());
        let mut rdr = csv_reader(&mut tee);
        // Each record read moves the start of the next one, so the reader can bound what one record
        // may take (issue 9: a quoted 450 MB cell cost 1.06 GB).
        // After a record ending CRLF the reader has not yet counted its LF: the next record starts a
        // line further than its position says.
        let next_record = |rdr: &mut csv::Reader<&mut Tee<File>>, rec: &mut csv::ByteRecord| -> Result<bool, ScanError> {
            let more = read_record(rdr, rec, path)?;
            let pos = rdr.position();
            record_start.set(RecordStart { byte: pos.byte(), line: pos.line() });
            Ok(more)
        };
        let mut rec = csv::ByteRecord::new();
        let header = loop {
            if !next_record(&mut rdr, &mut rec)? {
                return Err(file_issue(Code::FileEmpty, "the file has no header row: it is empty or blank"));
            }
            if !is_blank(&rec) {
                break Header::from_record(&rec);
            }
        };
        if header.names.len() > limits.max_columns {
            return Err(file_issue(
                Code::FileUnreadable,
                format!(
                    "the header row has {} cells; a visits file has 25 headings and no file kind comes near {} (limits.max_columns): the file's line breaks seem to be missing, so the whole file reads as one long header row; save it again as CSV with one row per line",
                    thousands(header.names.len() as u64),
                    thousands(limits.max_columns as u64)
                ),
            ));
        }
        let kind = header.kind();
        let spec = spec(&header, kind);
        let guess = (size / 100) as usize;
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<csv::ByteRecord>, usize)>(2);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<csv::ByteRecord>>(3);
        // The chunks start empty and grow as records are read (issue 11: 3 x 1,024 records made up
        // front were half of a one-row file's scan); once grown they go round, so a long file
        // allocates no more than before.
        for _ in 0..3 {
            let _ = empty_tx.send(Vec::new());
        }
        let key_col = spec.key;
        let hasher = s.spawn(move || {
            let mut key_hashes: Vec<u64> = Vec::with_capacity(if spec.key.is_some() { guess } else { 0 });
            let mut slot_hashes: Vec<u64> = Vec::with_capacity(if spec.slot.is_some() { guess } else { 0 });
            let mut loose = hashbrown::HashSet::new();
            let mut key_range = None;
            let mut data_rows = 0u64;
            for (chunk, n) in full_rx {
                for rec in chunk[..n].iter().filter(|r| !is_blank(r)) {
                    data_rows += 1;
                    if let Some(k) = key_of(rec, spec.key) {
                        key_hashes.push(stable_hash(k));
                        widen(&mut key_range, k);
                    }
                    if let Some(h) = spec.slot.as_ref().and_then(|slot| slot(rec)) {
                        slot_hashes.push(h);
                    }
                    if let Some(h) = spec.loose.as_ref().and_then(|f| f(rec)) {
                        loose.insert(h);
                    }
                }
                let _ = empty_tx.send(chunk);
            }
            (key_hashes, slot_hashes, loose, key_range, data_rows)
        });
        let read = (|| {
            while let Ok(mut chunk) = empty_rx.recv() {
                let mut n = 0;
                while n < SCAN_CHUNK {
                    if n == chunk.len() {
                        chunk.push(csv::ByteRecord::new());
                    }
                    if !next_record(&mut rdr, &mut chunk[n])? {
                        break;
                    }
                    n += 1;
                }
                let last = n < SCAN_CHUNK;
                if full_tx.send((chunk, n)).is_err() || last {
                    break;
                }
            }
            Ok::<(), ScanError>(())
        })();
        drop(full_tx);
        let (key_hashes, slot_hashes, loose_slots, key_range, data_rows) = hasher.join().expect("the row-hashing thread does not panic");
        read?;
        drop(rdr);
        let utf8 = tee.finish()?;
        let sha256 = sha.join().expect("the sha256 thread does not panic");
        let repeated_keys = repeats(key_hashes);
        let repeated_slots = repeats(slot_hashes);
        let duplicate_keys =
            if repeated_keys.is_empty() { Default::default() } else { exact_duplicates(path, key_col, &repeated_keys)? };
        Ok(Scan {
            size,
            sha256,
            encoding: if utf8 { Encoding::Utf8 } else { Encoding::Windows1252 },
            header,
            kind,
            duplicate_keys,
            key_range,
            repeated_slots,
            loose_slots,
            data_rows,
        })
    })
}

fn key_of(rec: &csv::ByteRecord, col: Option<usize>) -> Option<&[u8]> {
    let k = rec.get(col?)?.trim_ascii();
    (!k.is_empty()).then_some(k)
}

/// Takes `key` into the range of keys seen.
fn widen(range: &mut Option<(Vec<u8>, Vec<u8>)>, key: &[u8]) {
    match range {
        None => *range = Some((key.to_vec(), key.to_vec())),
        Some((least, _)) if key < least.as_slice() => {
            least.clear();
            least.extend_from_slice(key);
        }
        Some((_, greatest)) if key > greatest.as_slice() => {
            greatest.clear();
            greatest.extend_from_slice(key);
        }
        Some(_) => {}
    }
}

/// The values that occur more than once.
fn repeats(mut hashes: Vec<u64>) -> hashbrown::HashSet<u64> {
    hashes.sort_unstable();
    hashes.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect()
}

/// Reads the key column once more, keeping only keys whose hash repeats, to tell real duplicates
/// from hash collisions.
fn exact_duplicates(path: &Path, col: Option<usize>, repeated: &hashbrown::HashSet<u64>) -> Result<hashbrown::HashSet<Vec<u8>>, ScanError> {
    let mut seen: hashbrown::HashMap<Vec<u8>, u32> = hashbrown::HashMap::new();
    let mut rdr = csv_reader(BufReader::new(File::open(path)?));
    let mut rec = csv::ByteRecord::new();
    let mut header = true;
    while read_record(&mut rdr, &mut rec, path)? {
        if is_blank(&rec) || std::mem::take(&mut header) {
            continue;
        }
        if let Some(k) = key_of(&rec, col).filter(|k| repeated.contains(&stable_hash(k))) {
            *seen.entry(k.to_vec()).or_default() += 1;
        }
    }
    Ok(seen.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k).collect())
}

fn csv_reader<R: Read>(r: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().has_headers(false).flexible(true).buffer_capacity(256 * 1024).from_reader(r)
}

/// Reads one record; a broken line guard surfaces as the file being unreadable.
fn read_record<R: Read>(rdr: &mut csv::Reader<R>, rec: &mut csv::ByteRecord, path: &Path) -> Result<bool, ScanError> {
    match rdr.read_byte_record(rec) {
        Ok(more) => Ok(more),
        Err(e) => match e.into_kind() {
            csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
                let message = match io.get_ref().and_then(|e| e.downcast_ref::<RecordTooLong>()) {
                    Some(long) => long.message(path),
                    None => io.to_string(),
                };
                Err(file_issue(Code::FileUnreadable, message))
            }
            csv::ErrorKind::Io(io) => Err(ScanError::Io(io)),
            other => Err(file_issue(Code::FileUnreadable, format!("the CSV cannot be read: {other:?}"))),
        },
    }
}

/// A row with no content at all (Excel writes `,,,,` for an empty row).
pub fn is_blank(rec: &csv::ByteRecord) -> bool {
    rec.as_slice().iter().all(u8::is_ascii_whitespace)
}

/// Spreadsheets, UTF-16 and other binary content, from the first bytes.
fn sniff_binary(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"%PDF-") {
        return Some("it is a PDF document");
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some("it looks like a spreadsheet workbook (Excel .xlsx, LibreOffice .ods) or another zip file");
    }
    if head.starts_with(b"\xD0\xCF\x11\xE0") {
        return Some("it looks like an old Excel .xls workbook");
    }
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Some("it is UTF-16 text; save it as CSV UTF-8");
    }
    let nuls = head.iter().filter(|b| **b == 0).count();
    // Text of ASCII characters in UTF-16 without a byte-order mark: every other byte is NUL.
    let every_other = |first: usize| head.iter().skip(first).step_by(2).all(|b| *b == 0);
    if head.len() >= 4 && nuls < head.len() && (every_other(0) || every_other(1)) {
        return Some("it is UTF-16 text; save it as CSV UTF-8");
    }
    if nuls * 100 > head.len() {
        return Some("it holds binary data");
    }
    None
}

/// Why a file is not CSV text, judged from its first 8 KiB as the first pass judges it, and what
/// to do; `None` when it may be.
pub fn not_csv(path: &Path) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(8192);
    File::open(path)?.take(8192).read_to_end(&mut head)?;
    Ok(sniff_binary(&head).map(not_csv_message))
}

fn not_csv_message(what: &str) -> String {
    format!("this is not a CSV text file ({what}); in Excel use File > Save As > \"CSV UTF-8 (Comma delimited)\"")
}

/// Where the record being read began, as the CSV reader counts it (bytes from the start, and line):
/// after the previous record, so before any blank lines (and the LF of a CRLF) that lead to it.
#[derive(Debug, Clone, Copy)]
struct RecordStart {
    byte: u64,
    line: u64,
}

impl Default for RecordStart {
    fn default() -> Self {
        RecordStart { byte: 0, line: 1 }
    }
}

/// A record past `limits.max_record_bytes` (the `Tee` finds it; its message reads the file again).
#[derive(Debug)]
struct RecordTooLong {
    start: RecordStart,
    max: u64,
}

impl RecordTooLong {
    /// Names the line the row starts on, as a text editor numbers the file's lines: the blank lines
    /// before it passed over (since 2026-12-03; the line after the previous row was named).
    fn message(&self, path: &Path) -> String {
        let mut head = Vec::new();
        let leading = File::open(path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(self.start.byte))?;
                f.take(64 * 1024).read_to_end(&mut head)
            })
            .map(|_| head.iter().take_while(|b| matches!(b, b'\r' | b'\n')).filter(|b| **b == b'\n').count() as u64)
            .unwrap_or(0);
        RecordTooLong { start: RecordStart { line: self.start.line + leading, ..self.start }, max: self.max }.to_string()
    }
}

impl fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the row starting on line {} is longer than {} bytes (limits.max_record_bytes); no row of a visits, actuals or carers file comes near that: a quoted cell is probably never closed, or a cell holds far more than its column allows",
            self.start.line,
            thousands(self.max)
        )
    }
}

impl std::error::Error for RecordTooLong {}

/// Bytes the CSV reader may have read ahead of the record it is parsing (its buffer, `csv_reader`).
const READ_AHEAD: u64 = 256 * 1024;

/// Hashes every byte, checks UTF-8 across chunk boundaries, and refuses a physical line or a record
/// longer than its limit so that neither can fill memory.
struct Tee<R> {
    inner: R,
    /// Every byte read goes here, to be hashed on another thread.
    bytes: std::sync::mpsc::SyncSender<Vec<u8>>,
    utf8: Utf8Check,
    line_len: u64,
    max_line: u64,
    line_no: u64,
    /// Bytes handed to the reader so far.
    delivered: u64,
    /// The largest record, and where the current one began (set by the read loop after each record).
    max_record: u64,
    record_start: std::rc::Rc<Cell<RecordStart>>,
}

impl<R: Read> Tee<R> {
    fn new(inner: R, max_line: u64, bytes: std::sync::mpsc::SyncSender<Vec<u8>>) -> Self {
        Tee {
            inner,
            bytes,
            utf8: Utf8Check::default(),
            line_len: 0,
            max_line,
            line_no: 1,
            delivered: 0,
            max_record: u64::MAX,
            record_start: Default::default(),
        }
    }

    /// Fails a read once the current record runs past `max` bytes (plus what the reader buffers
    /// ahead), so a record is never held beyond that whatever its line breaks.
    fn bound_records(&mut self, max: u64, start: std::rc::Rc<Cell<RecordStart>>) {
        self.max_record = max;
        self.record_start = start;
    }

    fn check_record(&self) -> io::Result<()> {
        let start = self.record_start.get();
        if self.delivered.saturating_sub(start.byte) > self.max_record.saturating_add(READ_AHEAD) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, RecordTooLong { start, max: self.max_record }));
        }
        Ok(())
    }

    /// Reads what is left (the CSV reader may stop early); whether the whole file was UTF-8.
    fn finish(mut self) -> io::Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok(self.utf8.is_utf8())
    }
}

/// Whether bytes fed in pieces are UTF-8, a character cut between two pieces included.
#[derive(Default)]
struct Utf8Check {
    broken: bool,
    carry: Vec<u8>,
}

impl Utf8Check {
    fn feed(&mut self, buf: &[u8]) {
        if self.broken {
            return;
        }
        let joined;
        let bytes = if self.carry.is_empty() {
            buf
        } else {
            joined = [self.carry.as_slice(), buf].concat();
            &joined
        };
        self.carry.clear();
        match std::str::from_utf8(bytes) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => self.carry = bytes[e.valid_up_to()..].to_vec(),
            Err(_) => self.broken = true,
        }
    }

    /// Everything fed was UTF-8 and no character was left unfinished.
    fn is_utf8(&self) -> bool {
        !self.broken && self.carry.is_empty()
    }
}

/// A file's encoding as the first pass finds it: UTF-8, else Windows-1252 (Excel's "CSV"), for files
/// read without a first pass (the council's CPLI extract).
pub fn encoding_of(path: &Path) -> io::Result<Encoding> {
    let mut file = File::open(path)?;
    let mut check = Utf8Check::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        check.feed(&buf[..n]);
    }
    Ok(if check.is_utf8() { Encoding::Utf8 } else { Encoding::Windows1252 })
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.delivered += n as u64;
        self.check_record()?;
        let chunk = &buf[..n];
        if n > 0 {
            // The hashing thread stops only when this sender is dropped, so this cannot fail.
            let _ = self.bytes.send(chunk.to_vec());
        }
        self.utf8.feed(chunk);
        // Only a chunk that could hold an over-long line is looked at line by line.
        if self.line_len + n as u64 > self.max_line {
            // A lone CR ends a line too (Excel for Mac), so its file is not one long line.
            for part in chunk.split_inclusive(|b| *b == b'\n' || *b == b'\r') {
                self.line_len += part.len() as u64;
                if self.line_len > self.max_line {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} bytes; no row of a visits, actuals or carers file is that long: is this a CSV file?",
                            self.line_no, self.max_line
                        ),
                    ));
                }
                if part.ends_with(b"\n") || part.ends_with(b"\r") {
                    self.line_len = 0;
                    self.line_no += u64::from(part.ends_with(b"\n"));
                }
            }
        } else {
            match chunk.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
                Some(last) => {
                    self.line_no += chunk.iter().filter(|b| **b == b'\n').count() as u64;
                    self.line_len = (n - last - 1) as u64;
                }
                None => self.line_len += n as u64,
            }
        }
        Ok(n)
    }
}

/// The second pass: every non-blank data row with its spreadsheet row number.
pub struct Rows {
    rdr: csv::Reader<BufReader<OneLf<File>>>,
    pub encoding: Encoding,
    /// The header row's cells, as read.
    pub header: csv::ByteRecord,
    /// Spreadsheet row of the last record read (header = 1; blank lines count as rows, as in Excel).
    row: u64,
    /// Lines taken by line breaks inside quoted cells so far: a spreadsheet shows such a cell in one row.
    extra_lines: u64,
    len: u64,
}

/// Reads every line break, CRLF, LF or a lone CR (Excel for Mac's "CSV (Macintosh)", a stray CR
/// before a CRLF), as one LF, and ends the file with one: the CSV reader then counts each line
/// break of the file once and each record's own with it, so rows are numbered as a spreadsheet
/// shows them whatever the line endings, mixed too (since 2026-12-03; the endings were guessed from
/// the file's first lines, and blank lines of lone CRs were not counted).
struct OneLf<R> {
    inner: R,
    /// A byte read ahead to see what follows a CR ending a read.
    peeked: Option<u8>,
    /// The last byte given out.
    last: Option<u8>,
    /// Whether the LF that ends the file was given out.
    closed: bool,
}

impl<R> OneLf<R> {
    fn new(inner: R) -> OneLf<R> {
        OneLf { inner, peeked: None, last: None, closed: false }
    }
}

impl<R: Read> Read for OneLf<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut n = 0;
            if let Some(b) = self.peeked.take() {
                buf[0] = b;
                n = 1;
            }
            n += self.inner.read(&mut buf[n..])?;
            if n == 0 {
                if self.closed || self.last.is_none_or(|b| b == b'\n') {
                    return Ok(0);
                }
                (buf[0], self.closed, self.last) = (b'\n', true, Some(b'\n'));
                return Ok(1);
            }
            let mut after = None;
            if buf[n - 1] == b'\r' {
                let mut one = [0u8];
                if self.inner.read(&mut one)? == 1 {
                    (after, self.peeked) = (Some(one[0]), Some(one[0]));
                }
            }
            // Each CR: dropped before an LF, an LF itself otherwise; the bytes between move down.
            let (mut r, mut w) = (0, 0);
            while let Some(off) = memchr::memchr(b'\r', &buf[r..n]) {
                let i = r + off;
                buf.copy_within(r..i, w);
                w += i - r;
                let next = if i + 1 < n { Some(buf[i + 1]) } else { after };
                if next != Some(b'\n') {
                    buf[w] = b'\n';
                    w += 1;
                }
                r = i + 1;
            }
            if r > 0 {
                buf.copy_within(r..n, w);
            }
            w += n - r;
            if w > 0 {
                self.last = Some(buf[w - 1]);
                return Ok(w);
            }
        }
    }
}

impl Rows {
    pub fn open(path: &Path, encoding: Encoding) -> io::Result<Rows> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = [0u8; 3];
        let n = file.read(&mut head)?;
        let skip = if head[..n] == *BOM { 3 } else { 0 };
        file.seek(SeekFrom::Start(skip))?;
        let rdr = csv_reader(BufReader::with_capacity(256 * 1024, OneLf::new(file)));
        let mut rows = Rows { rdr, encoding, header: csv::ByteRecord::new(), row: 0, extra_lines: 0, len };
        // Skip blank lines before the header and the header itself (the first pass read it).
        let mut rec = csv::ByteRecord::new();
        while rows.read(&mut rec)?.is_some_and(|_| is_blank(&rec)) {}
        rows.header = rec;
        Ok(rows)
    }

    fn read(&mut self, rec: &mut csv::ByteRecord) -> io::Result<Option<u64>> {
        if !self.rdr.read_byte_record(rec).map_err(io::Error::other)? {
            return Ok(None);
        }
        // Every record ends with an LF (`OneLf`), which the reader has counted: the record's last
        // line is the one before; its first, that less the line breaks inside its quoted cells.
        let last_line = self.rdr.position().line().saturating_sub(1);
        let inner = rec.as_slice().iter().filter(|b| **b == b'\n').count() as u64;
        let row = last_line.saturating_sub(inner).saturating_sub(self.extra_lines);
        self.extra_lines += inner;
        self.row = row.max(self.row + 1);
        Ok(Some(self.row))
    }

    /// The file's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Reads the next non-blank record into `rec`; returns its spreadsheet row.
    pub fn next(&mut self, rec: &mut csv::ByteRecord) -> io::Result<Option<u64>> {
        while let Some(row) = self.read(rec)? {
            if !is_blank(rec) {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// A field as text, trimmed.
    pub fn field<'r>(&self, rec: &'r csv::ByteRecord, i: usize) -> Cow<'r, str> {
        decode(self.encoding, rec.get(i).unwrap_or_default().trim_ascii())
    }
}

pub fn decode(encoding: Encoding, bytes: &[u8]) -> Cow<'_, str> {
    match encoding {
        // The first pass found the whole file valid UTF-8, so this never falls back.
        Encoding::Utf8 => std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), Cow::Borrowed),
        Encoding::Windows1252 => encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0,
    }
}

/// The row as the portal shows it ("Row Data"): its cells joined by commas, cut at 1,000 characters.
pub fn row_data(encoding: Encoding, rec: &csv::ByteRecord) -> String {
    let mut out = String::new();
    for (i, f) in rec.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = decode(encoding, f);
        // Control characters (refused in cells, issue 9) are shown as `\u{0}`, never copied.
        if cell.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
            for c in cell.chars() {
                if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                    out.extend(c.escape_unicode());
                } else {
                    out.push(c);
                }
            }
        } else {
            out.push_str(&cell);
        }
        if out.len() > 1000 {
            let cut = (0..=1000).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

/// A whole file's SHA-256 in hex, read apart from any pass (the council's files, and a file refused
/// before its rows were read: every result carries one, SPEC 4).
pub fn sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_match_ignoring_case_and_spaces() {
        assert_eq!(heading_key("DeliveredEntryTime IsOverridden"), "deliveredentrytimeisoverridden");
        assert_eq!(heading_key(" visitREF "), "visitref");
    }

    #[test]
    fn spreadsheets_and_utf16_are_recognised_as_not_csv() {
        assert!(sniff_binary(b"PK\x03\x04rest").is_some());
        assert!(sniff_binary(b"\xD0\xCF\x11\xE0rest").is_some());
        assert!(sniff_binary(b"\xFF\xFEV\0i\0").is_some());
        assert_eq!(sniff_binary(b"V\0i\0s\0i\0t\0"), Some("it is UTF-16 text; save it as CSV UTF-8"), "without a byte-order mark");
        assert_eq!(sniff_binary(b"\0V\0i\0s"), Some("it is UTF-16 text; save it as CSV UTF-8"), "big-endian");
        assert_eq!(sniff_binary(b"%PDF-1.7\n"), Some("it is a PDF document"));
        assert_eq!(sniff_binary(&[0u8; 4096]), Some("it holds binary data"), "nothing but NULs is not text");
        assert!(sniff_binary(b"VisitRef,Deleted\r\nV1,0\r\n").is_none());
    }

    #[test]
    fn every_line_break_is_read_as_one_lf_whatever_the_reads_it_falls_between() {
        /// Gives at most `step` bytes a read.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for (input, one_lf) in [(&b"h\r\r\nA\r\rB\r\n\r"[..], &b"h\n\nA\n\nB\n\n"[..]), (b"h\nA\r\n\"x\r\ny\"", b"h\nA\n\"x\ny\"\n"), (b"", b"")] {
            for step in 1..=input.len().max(1) {
                let mut out = Vec::new();
                OneLf::new(Trickle(input, step)).read_to_end(&mut out).unwrap();
                assert_eq!(out, one_lf, "{step} bytes a read");
                // Through reads of one byte, too.
                let (mut r, mut one, mut slow) = (OneLf::new(Trickle(input, step)), [0u8], Vec::new());
                while r.read(&mut one).unwrap() == 1 {
                    slow.push(one[0]);
                }
                assert_eq!(slow, one_lf, "{step} bytes a read, one at a time");
            }
        }
    }

    #[test]
    fn a_windows_1252_header_is_read_as_windows_1252_so_a_non_breaking_space_is_a_space() {
        let rec = csv::ByteRecord::from(vec![&b"\xEF\xBB\xBFVisitRef"[..], b"DeliveredEntryTime\xA0IsOverridden", b"Caf\xE9"]);
        let h = Header::from_record(&rec);
        assert_eq!(h.keys, ["visitref", "deliveredentrytimeisoverridden", "caf\u{e9}"]);
        assert_eq!(h.names[1], "DeliveredEntryTime\u{a0}IsOverridden");
        let utf8 = Header::from_record(&csv::ByteRecord::from(vec!["\u{feff}VisitRef", "Caf\u{e9}"]));
        assert_eq!(utf8.keys, ["visitref", "caf\u{e9}"]);
    }

    #[test]
    fn only_values_that_occur_twice_are_repeats() {
        let r = repeats(vec![5, 1, 5, 2, 3, 2, 5]);
        assert_eq!(r, [2, 5].into_iter().collect());
    }

    fn rows_of(data: &[u8]) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, data).unwrap();
        let mut rows = Rows::open(&path, Encoding::Utf8).unwrap();
        let mut rec = csv::ByteRecord::new();
        std::iter::from_fn(|| rows.next(&mut rec).unwrap()).collect()
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_shows_them() {
        // Header row 1; blank lines are rows; a cell spanning lines is one row.
        assert_eq!(rows_of(b"h\nA\nB\n\n\nC\n\"m\nm\"\nD\n"), [2, 3, 6, 7, 8]);
        assert_eq!(rows_of(b"h\r\nA\r\nB\r\n\r\n\r\nC\r\n\"m\r\nm\"\r\nD\r\n"), [2, 3, 6, 7, 8]);
        assert_eq!(rows_of(b"h\nA\nB"), [2, 3]);
        assert_eq!(rows_of(b"\xEF\xBB\xBFh\r\nA\r\nB"), [2, 3]);
        assert_eq!(rows_of(b"h\rA\rB\r"), [2, 3]);
        // A header whose line break differs from the rows'.
        assert_eq!(rows_of(b"h\r\nA\nB\n"), [2, 3]);
        assert_eq!(rows_of(b"h\nA\r\nB\r\n"), [2, 3]);
        assert_eq!(rows_of(b"h\r\nA\n\nB\n"), [2, 4]);
        // Excel's Alt+Enter: a bare LF inside a cell of a CRLF file's first row.
        assert_eq!(rows_of(b"h\r\n\"a\nb\"\r\nB\r\n\r\nC\r\n"), [2, 3, 5]);
        // Lone CRs: Excel for Mac's line breaks with blank lines; a stray CR before a CRLF.
        assert_eq!(rows_of(b"h\r\rA\r\r\rB\r"), [3, 6]);
        assert_eq!(rows_of(b"h\r\r\nA\r\nB\r\n\r\nC\r\n"), [3, 4, 6]);
        assert_eq!(rows_of(b"h\r\"a\rb\"\rB\r\rC"), [2, 3, 5]);
        // Mixed: a lone CR ending one row of a CRLF file; a quote inside an unquoted cell.
        assert_eq!(rows_of(b"h\r\nA\r\nB\rC\r\nD\r\n"), [2, 3, 4, 5]);
        assert_eq!(rows_of(b"h\n5\" of snow\nB\n\"x\r\ny\"\nD\n"), [2, 3, 4, 5]);
        assert_eq!(rows_of(b"h\r\nA\r\nB\nC\r\n\r\nD"), [2, 3, 4, 6]);
    }

    fn scan_text(data: &[u8], limits: &Limits) -> Result<Scan, ScanError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, data).unwrap();
        scan(&path, limits, |_, _| ScanSpec::default())
    }

    fn file_error(r: Result<Scan, ScanError>) -> Issue {
        match r {
            Err(ScanError::File(issue)) => issue,
            Err(e) => panic!("an I/O error: {e}"),
            Ok(s) => panic!("the file was read: {} rows", s.data_rows),
        }
    }

    #[test]
    fn a_record_longer_than_the_limit_fails_the_file_naming_its_line_whatever_its_line_breaks() {
        let limits = Limits { max_record_bytes: 64 * 1024, ..Limits::default() };
        // A quoted cell of 500 KB over 5,000 short lines: no line is long, the record is.
        let cell = "x".repeat(99) + "\n";
        let data = format!("VisitRef,Comments\nV1,ok\nV2,\"{}\"\nV3,ok\n", cell.repeat(5_000));
        let issue = file_error(scan_text(data.as_bytes(), &limits));
        assert_eq!(issue.code, Code::FileUnreadable);
        assert!(issue.message.contains("the row starting on line 3 is longer than 65,536 bytes (limits.max_record_bytes)"), "{}", issue.message);
        let issue = file_error(scan_text(data.replace('\n', "\r\n").as_bytes(), &limits));
        assert!(issue.message.contains("the row starting on line 3 is longer"), "CRLF: {}", issue.message);
        // Blank lines before it are passed over, with either line ending.
        let blanks = data.replacen("V1,ok\n", "V1,ok\n\n\n\n", 1);
        let issue = file_error(scan_text(blanks.as_bytes(), &limits));
        assert!(issue.message.contains("the row starting on line 6 is longer"), "{}", issue.message);
        let issue = file_error(scan_text(blanks.replace('\n', "\r\n").as_bytes(), &limits));
        assert!(issue.message.contains("the row starting on line 6 is longer"), "CRLF: {}", issue.message);
        // Its first row too.
        let issue = file_error(scan_text(format!("\n\n\"{}\"\n", cell.repeat(5_000)).as_bytes(), &limits));
        assert!(issue.message.contains("the row starting on line 3 is longer"), "{}", issue.message);
        // The same file is read when the limit allows it.
        assert_eq!(scan_text(data.as_bytes(), &Limits::default()).unwrap().data_rows, 3);
    }

    #[test]
    fn a_file_of_lone_cr_line_breaks_is_not_one_long_line() {
        let limits = Limits { max_line_bytes: 4096, ..Limits::default() };
        let data = format!("VisitRef,Comments\r{}", "V1,a comment of some length\r".repeat(1_000));
        assert_eq!(scan_text(data.as_bytes(), &limits).unwrap().data_rows, 1_000);
        let long = format!("VisitRef,Comments\rV1,{}\r", "x".repeat(5_000));
        assert!(file_error(scan_text(long.as_bytes(), &limits)).message.starts_with("line 1 is longer than 4096 bytes"));
    }

    #[test]
    fn a_header_with_more_cells_than_the_limit_is_a_file_whose_line_breaks_are_missing() {
        let row = "V1,0,01/08/2022,09:00,09:30,DHS,,";
        let data = format!("VisitRef,Deleted,PlannedVisitDate,PlannedEntryTime,PlannedExitTime,VisitType,Comments,{}", row.repeat(40));
        let issue = file_error(scan_text(data.as_bytes(), &Limits::default()));
        assert_eq!(issue.code, Code::FileUnreadable);
        assert!(issue.message.contains("the header row has 288 cells") && issue.message.contains("line breaks seem to be missing"), "{}", issue.message);
    }

    #[test]
    fn unknown_columns_are_listed_up_to_twenty_and_the_rest_counted_in_one_warning() {
        let names: Vec<String> = (0..150).map(|i| format!("Extra{i}")).collect();
        let header = Header::from_record(&csv::ByteRecord::from(["CarerRef".to_string()].into_iter().chain(names).collect::<Vec<_>>()));
        let mut warnings = Vec::new();
        find_columns(&header, "carers", &["CarerRef"], 1, "", &mut warnings).unwrap();
        assert_eq!(warnings.len(), MAX_UNKNOWN_COLUMN_WARNINGS + 1);
        assert!(warnings.iter().all(|w| w.code == Code::UnknownColumn));
        assert!(warnings[20].message.starts_with("130 more columns are not carers headings"), "{}", warnings[20].message);
    }

    #[test]
    fn a_huge_heading_is_quoted_by_its_first_characters_in_every_message() {
        let header = Header::from_record(&csv::ByteRecord::from(vec!["CarerRef".to_string(), "H".repeat(5_000_000)]));
        let mut warnings = Vec::new();
        find_columns(&header, "carers", &["CarerRef"], 1, "", &mut warnings).unwrap();
        let w = &warnings[0];
        assert!(w.message.len() < 200 && w.message.contains("… (5,000,000 characters)"), "{}", w.message);
        assert!(w.field.as_ref().unwrap().len() < 100);
    }

    #[test]
    fn row_data_shows_control_characters_escaped() {
        let rec = csv::ByteRecord::from(vec!["V\u{0}1", "line\nbreak"]);
        assert_eq!(row_data(Encoding::Utf8, &rec), "V\\u{0}1,line\nbreak");
    }

    #[test]
    fn utf8_split_across_reads_is_still_utf8() {
        let text = "Zoë £5".as_bytes();
        let (tx, _rx) = std::sync::mpsc::sync_channel(16);
        let mut t = Tee::new(io::empty(), 1 << 20, tx);
        t.utf8.feed(&text[..3]); // cuts 'ë' in half
        t.utf8.feed(&text[3..]);
        assert!(t.utf8.is_utf8());
        t.utf8.feed(b"caf\xE9 ");
        assert!(!t.utf8.is_utf8());
    }
}
