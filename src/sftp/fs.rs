//! What one SFTP login sees: `/inbox` (upload, rename, remove its pending files, list), `/results` and
//! `/exports` (read and list), nothing else. Uploads are written in `staging/`, where nobody looks,
//! and handed to the engine when the client closes them; a temporary name waits in the inbox for its
//! rename to `*.csv`.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use crate::data_dir::Owner;
use crate::pipeline::{is_ready_name, Gateway};
use crate::queue::Queue;
use super::users::{Credential, Users};

/// Largest write and read the gateway offers (`limits@openssh.com`): OpenSSH's own values. Without
/// the extension OpenSSH clients write in 32 KB pieces, about 15% slower.
pub const MAX_WRITE: u64 = 255 * 1024;
pub const MAX_PACKET: u32 = 256 * 1024 + 1024;
const MAX_HANDLES: usize = 64;
const WRITE_BUFFER: usize = 1024 * 1024;
const LISTING_PAGE: usize = 100;

/// The three folders a login sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Inbox,
    Results,
    Exports,
}

impl Folder {
    fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Results => "results",
            Folder::Exports => "exports",
        }
    }

    fn parse(s: &str) -> Option<Folder> {
        [Folder::Inbox, Folder::Results, Folder::Exports].into_iter().find(|f| f.name() == s)
    }
}

/// A client's path, normalised inside the login's own root: `..` stops at `/`, as in a chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VPath {
    Root,
    Folder(Folder),
    File(Folder, String),
    /// Anything deeper, or a folder that does not exist: never found.
    Nowhere(String),
}

impl VPath {
    pub fn parse(path: &str) -> VPath {
        let mut parts: Vec<&str> = Vec::new();
        for p in path.split('/') {
            match p {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        match parts.as_slice() {
            [] => VPath::Root,
            [f] => Folder::parse(f).map(VPath::Folder).unwrap_or_else(|| VPath::Nowhere(format!("/{f}"))),
            [f, name] => match Folder::parse(f) {
                Some(folder) => VPath::File(folder, name.to_string()),
                None => VPath::Nowhere(format!("/{}", parts.join("/"))),
            },
            _ => VPath::Nowhere(format!("/{}", parts.join("/"))),
        }
    }

    pub fn display(&self) -> String {
        match self {
            VPath::Root => "/".into(),
            VPath::Folder(f) => format!("/{}", f.name()),
            VPath::File(f, n) => format!("/{}/{n}", f.name()),
            VPath::Nowhere(p) => p.clone(),
        }
    }
}

/// The longest name a client may give: the spool and archive prefix it with a 38-byte import id,
/// and the file system takes 255 bytes.
const MAX_NAME: usize = 200;

/// A name a client may create in `/inbox`: one plain component, no control characters, nothing
/// that changes how a name is shown.
fn check_new_name(name: &str) -> Result<(), StatusReply> {
    if name.len() > MAX_NAME {
        return Err(denied(format!("the file name is {} bytes long; the gateway takes names of up to {MAX_NAME} bytes", name.len())));
    }
    if name.is_empty() || name.contains('\\') {
        return Err(denied(format!("'{}' is not a usable file name: use letters, digits, '-', '_', '.' and end it in .csv", name.escape_default())));
    }
    if let Some(c) = name.chars().find(|c| hidden_char(*c)) {
        return Err(denied(format!(
            "'{}' is not a usable file name: it holds the invisible character U+{:04X} ({}); use letters, digits, '-', '_', '.' and end it in .csv",
            name.escape_default(),
            c as u32,
            hidden_char_kind(c)
        )));
    }
    Ok(())
}

/// Characters that are not shown, or that change how the rest of a name is shown: a right-to-left
/// override makes `visits\u{202E}vsc.exe` read as `visitsexe.csv` (issue 9).
fn hidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFFD}')
}

fn hidden_char_kind(c: char) -> &'static str {
    match c {
        '\u{FFFD}' => "a byte that is not UTF-8",
        c if c.is_control() => "a control character",
        '\u{2028}' | '\u{2029}' => "a line break",
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => "a zero-width character",
        _ => "a text-direction control",
    }
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

fn denied(msg: impl Into<String>) -> StatusReply {
    StatusCode::PermissionDenied.with_message(msg)
}

fn not_found(p: &VPath) -> StatusReply {
    StatusCode::NoSuchFile.with_message(format!("{}: no such file (this login sees /inbox, /results and /exports)", p.display()))
}

fn failure(msg: impl Into<String>) -> StatusReply {
    StatusCode::Failure.with_message(msg)
}

fn io_failure(what: &str, e: std::io::Error) -> StatusReply {
    tracing::warn!(error = %e, "{what}");
    match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile.with_message(format!("{what}: no such file")),
        std::io::ErrorKind::StorageFull => failure(format!("{what}: the gateway's disk is full; try again later")),
        _ => failure(format!("{what}: {e}")),
    }
}

/// An upload being written.
struct Upload {
    name: String,
    staged: PathBuf,
    out: BufWriter<fs::File>,
    pos: u64,
    size: u64,
    too_large: bool,
    /// Opened with APPEND: every write goes at the end, whatever offset the client sends.
    append: bool,
    /// The waiting inbox file this upload resumes: put back if the session breaks off.
    resumed_from: Option<PathBuf>,
}

enum Open {
    Upload(Box<Upload>),
    Read(fs::File),
    /// A listing, handed out a page per READDIR: one reply for a folder of thousands of results
    /// would pass the clients' packet limit.
    Dir { listing: std::vec::IntoIter<File> },
}

/// The names being uploaded right now, per organisation (and the council), across all sessions: a second writer of
/// the same name is refused, and the inbox limit counts every session's uploads.
pub type Writing = Arc<std::sync::Mutex<HashMap<Owner, std::collections::HashSet<String>>>>;

/// Who is on the other end; every log line about this session carries it.
#[derive(Debug, Clone)]
pub struct Who {
    /// Whose folders: an organisation's, or the council's (issue 10).
    pub owner: Owner,
    pub org_name: String,
    pub login: String,
    pub addr: String,
    /// What the login logged in with: a session goes on only while the login still has it.
    pub credential: Credential,
}

pub struct OrgFs {
    gw: Arc<Gateway>,
    who: Who,
    submit: Queue,
    writing: Writing,
    handles: HashMap<String, Open>,
    next_handle: u64,
    /// Uploads this session completed: they went to the engine at once, but a client that checks the
    /// size it wrote (paramiko's `put`) or sets the time (lftp, rclone) still finds them.
    completed: HashMap<String, FileAttributes>,
    /// Uploads this session refused at close, and why: a client that checks the file afterwards
    /// (paramiko ignores errors on CLOSE) is told the reason instead of "no such file".
    refused: HashMap<String, String>,
    initialised: bool,
    /// The logins, to see that this session's is still there; `None` for the demo login, which only
    /// the server knows.
    logins: Option<Users>,
}

impl OrgFs {
    pub fn new(gw: Arc<Gateway>, who: Who, submit: Queue, writing: Writing, logins: Option<Users>) -> OrgFs {
        OrgFs { gw, who, submit, writing, handles: HashMap::new(), next_handle: 0, completed: HashMap::new(), refused: HashMap::new(), initialised: false, logins }
    }

    /// A login removed (or given to another organisation, or no longer holding the key or password
    /// the session logged in with, as when it is removed and added again with a new key) while its
    /// session is open can do nothing more: checked before anything that opens, changes or hands on
    /// a file (since 2026-12-03; the session went on uploading until it closed).
    fn still_permitted(&self) -> Result<(), StatusReply> {
        let Some(logins) = &self.logins else { return Ok(()) };
        let who = &self.who;
        match logins.get(&who.login) {
            Ok(Some(user)) if user.org == who.owner && user.still_has(&who.credential) => Ok(()),
            Ok(_) => Err(denied(format!("the login '{}' has been removed, or its key or password changed: this session can do nothing more; log in again", who.login))),
            Err(e) => {
                tracing::error!(user = who.login, error = %e, "cannot read the login");
                Err(failure(format!("the gateway cannot read the login '{}' now; try again later", who.login)))
            }
        }
    }

    fn dir(&self, folder: Folder) -> PathBuf {
        let d = &self.gw.data;
        match folder {
            Folder::Inbox => d.inbox_of(&self.who.owner),
            Folder::Results => d.results_of(&self.who.owner),
            Folder::Exports => d.exports_of(&self.who.owner),
        }
    }

    /// The real path of a file a login names. Links are never followed (`lstat`, `O_NOFOLLOW`): a link
    /// placed inside an organisation's folder by anyone cannot lead out of it.
    fn real(&self, folder: Folder, name: &str) -> PathBuf {
        self.dir(folder).join(name)
    }

    fn check_handles(&self) -> Result<(), StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(denied(format!("too many open files in this session (limit {MAX_HANDLES}); close some first")));
        }
        Ok(())
    }

    /// Uploads are refused up front while the data folder's disk is below its reserve (issue 9).
    fn check_free_space(&self) -> Result<(), StatusReply> {
        let reserve = self.gw.config.limits.min_free_disk_bytes;
        if reserve == 0 {
            return Ok(());
        }
        match free_bytes(self.gw.data.root()) {
            Ok(free) if free < reserve => {
                Err(failure(format!(
                    "the gateway's disk is nearly full ({} MiB free, below its reserve of {} MiB): uploads are refused until space is freed; try again later",
                    free / (1024 * 1024),
                    reserve / (1024 * 1024)
                )))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free space of the data folder's disk; the upload goes ahead");
                Ok(())
            }
        }
    }

    fn add_handle(&mut self, open: Open) -> Result<String, StatusReply> {
        self.check_handles()?;
        self.next_handle += 1;
        let h = self.next_handle.to_string();
        self.handles.insert(h.clone(), open);
        Ok(h)
    }

    fn attrs_of(&self, p: &VPath) -> Result<FileAttributes, StatusReply> {
        match p {
            VPath::Root => Ok(dir_attrs(0o500)),
            VPath::Folder(Folder::Inbox) => Ok(dir_attrs(0o700)),
            VPath::Folder(_) => Ok(dir_attrs(0o500)),
            VPath::File(folder, name) => {
                if *folder == Folder::Inbox {
                    if let Some(a) = self.completed.get(name) {
                        return Ok(a.clone());
                    }
                    if let Some(why) = self.refused.get(name) {
                        return Err(failure(why.clone()));
                    }
                }
                match fs::symlink_metadata(self.real(*folder, name)) {
                    Ok(m) if m.is_file() => Ok(file_attrs(&m, *folder)),
                    _ => Err(not_found(p)),
                }
            }
            VPath::Nowhere(_) => Err(not_found(p)),
        }
    }

    fn listing(&self, p: &VPath) -> Result<Vec<File>, StatusReply> {
        let folder = match p {
            VPath::Root => {
                return Ok([Folder::Inbox, Folder::Results, Folder::Exports]
                    .into_iter()
                    .map(|f| File::new(f.name(), self.attrs_of(&VPath::Folder(f)).expect("folders exist")))
                    .collect())
            }
            VPath::Folder(f) => *f,
            _ => return Err(not_found(p)),
        };
        let dir = self.dir(folder);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_failure("listing the folder", e)),
        };
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else { continue };
            // Links and folders are never shown. Dot-names are: they count towards the inbox limit,
            // and a login must be able to see and remove what fills it (issue 9).
            if let Ok(m) = fs::symlink_metadata(e.path()) {
                if m.is_file() {
                    out.push(File::new(name, file_attrs(&m, folder)));
                }
            }
        }
        out.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(out)
    }

    fn open_upload(&mut self, name: &str, pflags: OpenFlags) -> Result<String, StatusReply> {
        check_new_name(name)?;
        // Refused before anything is made: a refused OPEN leaves nothing in staging (issue 9).
        self.check_handles()?;
        self.check_free_space()?;
        {
            let mut writing = self.writing.lock().expect("uploads lock");
            let names = writing.entry(self.who.owner.clone()).or_default();
            if names.contains(name) {
                // This session's own open upload of the name, or another's (since 2026-12-03 it is told
                // apart: "another session" was said of the session's own).
                let mine = self.handles.values().any(|h| matches!(h, Open::Upload(u) if u.name == name));
                let whose = if mine { "this session already has it open: close that upload first" } else { "another session is uploading it: wait for it, or use another name" };
                return Err(denied(format!("/inbox/{name}: {whose}")));
            }
            let (listed, uploading) = (waiting_files(&self.dir(Folder::Inbox)), names.len());
            let max = self.gw.config.sftp.max_inbox_files;
            if listed + uploading >= max {
                // Uploads in progress are not listed until closed: say so, rather than ask the login
                // to remove files it cannot see (since 2026-12-03).
                let what = match uploading {
                    0 => format!("/inbox already holds {listed} files waiting (limit {max}): rename or remove them first"),
                    n => format!(
                        "/inbox already holds {listed} files waiting and {n} uploads in progress, which are not listed until they are closed (limit {max} in all): remove files, or wait for the uploads to finish"
                    ),
                };
                return Err(denied(what));
            }
            names.insert(name.to_string());
        }
        let opened = self.start_upload(name, pflags);
        if opened.is_err() {
            self.done_writing(name);
        }
        opened
    }

    fn start_upload(&mut self, name: &str, pflags: OpenFlags) -> Result<String, StatusReply> {
        fs::create_dir_all(self.gw.data.staging()).map_err(|e| io_failure("preparing the upload", e))?;
        let staged = self.gw.data.staging().join(format!("{}.upload", uuid::Uuid::new_v4()));
        // Resuming a waiting temporary file (WinSCP, lftp `reput`) continues it; anything else starts afresh.
        let existing = self.real(Folder::Inbox, name);
        let resumed_from = (!pflags.contains(OpenFlags::TRUNCATE)
            && fs::symlink_metadata(&existing).is_ok_and(|m| m.is_file())
            && fs::rename(&existing, &staged).is_ok())
        .then_some(existing);
        let opened = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(resumed_from.is_none())
            .custom_flags(libc::O_NOFOLLOW)
            .open(&staged);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                if let Some(back) = &resumed_from {
                    let _ = fs::rename(&staged, back);
                }
                return Err(io_failure("starting the upload", e));
            }
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let append = pflags.contains(OpenFlags::APPEND);
        let upload = Upload { name: name.into(), staged, out: BufWriter::with_capacity(WRITE_BUFFER, file), pos: 0, size, too_large: false, append, resumed_from };
        self.add_handle(Open::Upload(Box::new(upload)))
    }

    fn done_writing(&self, name: &str) {
        if let Some(names) = self.writing.lock().expect("uploads lock").get_mut(&self.who.owner) {
            names.remove(name);
        }
    }

    fn write_at(&mut self, handle: &str, offset: u64, data: &[u8]) -> Result<(), StatusReply> {
        let max = self.gw.config.limits.max_file_bytes;
        let Some(Open::Upload(u)) = self.handles.get_mut(handle) else {
            return Err(denied("this handle is not open for writing"));
        };
        let offset = if u.append { u.size } else { offset };
        let end = offset.checked_add(data.len() as u64).filter(|end| *end <= max);
        let Some(end) = end.filter(|_| !u.too_large) else {
            u.too_large = true;
            return Err(denied(format!("{}: the file is larger than the gateway accepts (limit {max} bytes); nothing of it is processed", u.name)));
        };
        if offset != u.pos {
            u.out.seek(SeekFrom::Start(offset)).map_err(|e| io_failure("writing", e))?;
        }
        u.out.write_all(data).map_err(|e| io_failure("writing", e))?;
        u.pos = end;
        u.size = u.size.max(end);
        Ok(())
    }

    /// The client closed an upload: a finished `*.csv` is claimed into the spool before CLOSE is
    /// answered (a crash after that finds it there at the next start) and handed to the engine once it
    /// is on disk; a temporary name waits in the inbox for its rename. The engine's work never stalls
    /// the session.
    fn finish_upload(&mut self, u: Upload) -> Result<(), StatusReply> {
        let name = u.name.clone();
        let finished = self.keep_upload(u);
        self.done_writing(&name);
        finished
    }

    fn keep_upload(&mut self, u: Upload) -> Result<(), StatusReply> {
        let Upload { name, staged, out, size, too_large, .. } = u;
        if too_large {
            let _ = fs::remove_file(&staged);
            let why = format!("{name}: larger than the gateway accepts (limit {} bytes); not processed", self.gw.config.limits.max_file_bytes);
            self.refused.insert(name, why.clone());
            return Err(denied(why));
        }
        let file = match out.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&staged);
                return Err(io_failure("finishing the upload", e.into_error()));
            }
        };
        let who = &self.who;
        self.refused.remove(&name);
        if is_ready_name(&name) {
            let spooled = self.gw.claim_for(&who.owner, &staged, &name).map_err(|e| {
                let _ = fs::remove_file(&staged);
                failure(format!("{name}: the gateway could not take the file ({e}); send it again"))
            })?;
            tracing::info!(org = who.org_name, user = who.login, addr = who.addr, file = name, bytes = size, "upload complete");
            self.completed.insert(name, upload_attrs(size));
            let path = self.gw.data.spooled(&spooled);
            let synced = tokio::task::spawn_blocking(move || {
                // For the ordering test: the first upload's sync takes longer than the next ones'.
                static FIRST: std::sync::Once = std::sync::Once::new();
                if crate::fault::is("slow-first-sync") {
                    FIRST.call_once(|| std::thread::sleep(std::time::Duration::from_millis(500)));
                }
                if let Err(e) = file.sync_data() {
                    tracing::warn!(file = %path.display(), error = %e, "could not sync the upload to disk");
                }
            });
            self.submit.send(spooled, Some(synced));
        } else {
            let dest = self.real(Folder::Inbox, &name);
            if let Err(e) = fs::rename(&staged, &dest) {
                let _ = fs::remove_file(&staged);
                return Err(io_failure("keeping the upload", e));
            }
            // Issue 12: a PDF, PNG or JPEG waits in /inbox for the claims file that names it.
            let waits = if crate::ingest::claims::is_attachment_name(&name) { "upload complete; kept in /inbox for a claims file" } else { "upload complete; waits for its rename to *.csv" };
            tracing::info!(org = who.org_name, user = who.login, addr = who.addr, file = name, bytes = size, "{waits}");
            tokio::task::spawn_blocking(move || file.sync_data());
        }
        Ok(())
    }

    /// Renames inside `/inbox`. A rename to `*.csv` is the end of an upload under a temporary name:
    /// the file goes to the engine straight from its temporary name, so the watcher never sees it.
    fn rename(&mut self, from: &str, to: &str, overwrite: bool) -> Result<(), StatusReply> {
        self.still_permitted()?;
        let (src, dst) = (VPath::parse(from), VPath::parse(to));
        let (VPath::File(Folder::Inbox, old), VPath::File(Folder::Inbox, new)) = (&src, &dst) else {
            return Err(denied(format!("rename {} -> {}: only files in /inbox can be renamed, within /inbox", src.display(), dst.display())));
        };
        check_new_name(new)?;
        if let Some(names) = self.writing.lock().expect("uploads lock").get(&self.who.owner) {
            if let Some(busy) = [old, new].into_iter().find(|n| names.contains(*n)) {
                return Err(denied(format!("/inbox/{busy} is being uploaded; close it first")));
            }
        }
        let old_real = self.real(Folder::Inbox, old);
        match fs::symlink_metadata(&old_real) {
            Ok(m) if m.is_file() => {}
            _ if self.completed.contains_key(old) => {
                return Err(failure(format!("{}: already taken for processing; its result will be in /results", src.display())))
            }
            _ => return Err(not_found(&src)),
        }
        let new_real = self.real(Folder::Inbox, new);
        if !overwrite && fs::symlink_metadata(&new_real).is_ok() {
            return Err(failure(format!("{} already exists", dst.display())));
        }
        if is_ready_name(new) {
            let size = fs::metadata(&old_real).map(|m| m.len()).unwrap_or(0);
            let spooled = self.gw.claim_for(&self.who.owner, &old_real, new).map_err(|e| failure(format!("could not take the file: {e}")))?;
            tracing::info!(org = self.who.org_name, user = self.who.login, addr = self.who.addr, file = new.as_str(), bytes = size, "upload complete (renamed)");
            self.completed.insert(new.clone(), upload_attrs(size));
            self.submit.send(spooled, None);
        } else {
            fs::rename(&old_real, &new_real).map_err(|e| io_failure("renaming", e))?;
        }
        Ok(())
    }
}

/// The files waiting in an inbox, counted as the listing shows them: regular files, dot-names
/// included; links and folders neither shown nor counted.
fn waiting_files(inbox: &std::path::Path) -> usize {
    fs::read_dir(inbox).map(|d| d.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).count()).unwrap_or(0)
}

/// Bytes free for an unprivileged writer on the file system holding `path` (statvfs).
fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs that outlives the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn dir_attrs(perm: u32) -> FileAttributes {
    let mut a = FileAttributes { size: Some(0), permissions: Some(perm), ..Default::default() };
    a.set_dir(true);
    a
}

fn file_attrs(m: &fs::Metadata, folder: Folder) -> FileAttributes {
    let mut a = FileAttributes::from(m);
    a.uid = None;
    a.gid = None;
    a.permissions = Some(if folder == Folder::Inbox { 0o600 } else { 0o400 });
    a.set_regular(true);
    a
}

fn upload_attrs(size: u64) -> FileAttributes {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
    let mut a = FileAttributes { size: Some(size), permissions: Some(0o600), atime: Some(now), mtime: Some(now), ..Default::default() };
    a.set_regular(true);
    a
}

/// An SSH string (u32 length, bytes) from an extension's request data.
fn ssh_string(data: &mut &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let s = data.get(4..4 + len)?;
    *data = &data[4 + len..];
    String::from_utf8(s.to_vec()).ok()
}

impl Drop for OrgFs {
    /// A session that ends with uploads still open (a client killed, a connection cut) leaves nothing
    /// behind: the partial files are removed, never processed; a resumed waiting file goes back to
    /// the inbox, so the client can resume it again.
    fn drop(&mut self) {
        let handles: Vec<Open> = self.handles.drain().map(|(_, o)| o).collect();
        for open in handles {
            if let Open::Upload(u) = open {
                tracing::warn!(org = self.who.org_name, user = self.who.login, addr = self.who.addr, file = u.name, bytes = u.size, "upload broken off; not processed");
                let Upload { name, out, staged, resumed_from, .. } = *u;
                let (file, _) = out.into_parts();
                drop(file);
                match resumed_from {
                    Some(back) => {
                        let _ = fs::rename(&staged, back);
                    }
                    None => {
                        let _ = fs::remove_file(staged);
                    }
                }
                self.done_writing(&name);
            }
        }
    }
}

impl OrgFs {
    /// Opens a file for `open`: an upload into /inbox, or a read of /results or /exports.
    fn open_path(&mut self, filename: &str, pflags: OpenFlags, writing: bool) -> Result<String, StatusReply> {
        self.still_permitted()?;
        let p = VPath::parse(filename);
        let handle = match (&p, writing) {
            (VPath::File(Folder::Inbox, name), true) => self.open_upload(name, pflags)?,
            (VPath::File(Folder::Inbox, _), false) => {
                return Err(denied(format!("{}: files in /inbox are taken for processing and cannot be read back; results are in /results", p.display())))
            }
            (VPath::File(folder, name), false) => {
                self.attrs_of(&p)?;
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(self.real(*folder, name))
                    .map_err(|_| not_found(&p))?;
                self.add_handle(Open::Read(f))?
            }
            (VPath::File(folder, _), true) => {
                return Err(denied(format!("{}: /{} is read-only; upload files into /inbox", p.display(), folder.name())))
            }
            (VPath::Root | VPath::Folder(_) | VPath::Nowhere(_), true) => {
                return Err(denied(format!("{}: upload files into /inbox (e.g. put visits.csv /inbox/)", p.display())))
            }
            _ => return Err(not_found(&p)),
        };
        Ok(handle)
    }

    /// Removes a file waiting in /inbox, for `remove`.
    fn remove_pending(&mut self, filename: &str) -> Result<(), StatusReply> {
        self.still_permitted()?;
        let p = VPath::parse(filename);
        match &p {
            VPath::File(Folder::Inbox, name) => {
                let real = self.real(Folder::Inbox, name);
                match fs::symlink_metadata(&real) {
                    Ok(m) if m.is_file() => fs::remove_file(&real).map_err(|e| io_failure("removing", e))?,
                    _ if self.completed.contains_key(name) => {
                        return Err(failure(format!("{}: already taken for processing; it cannot be withdrawn", p.display())))
                    }
                    _ => return Err(not_found(&p)),
                }
                tracing::info!(org = self.who.org_name, user = self.who.login, addr = self.who.addr, file = name.as_str(), "pending file removed");
                Ok(())
            }
            VPath::File(folder, _) => Err(denied(format!("{}: /{} is read-only", p.display(), folder.name()))),
            _ => Err(denied(format!("{}: only files waiting in /inbox can be removed", p.display()))),
        }
    }

    /// Logs a refusal of an open, a rename, a removal, a folder or a link (a missing file is no
    /// refusal), with the reason the client was given (since 2026-12-03 every one; only an upload
    /// too large and the disk reserve were logged).
    fn logged<T>(&self, result: Result<T, StatusReply>) -> Result<T, StatusReply> {
        if let Err(e) = &result {
            if matches!(e.status_code, StatusCode::PermissionDenied | StatusCode::Failure | StatusCode::OpUnsupported) {
                let who = &self.who;
                tracing::warn!(org = who.org_name, user = who.login, addr = who.addr, reason = e.error_message, "refused");
            }
        }
        result
    }

    /// Every request before INIT is refused: a client that skipped it must not get a handle (issue 9).
    fn ready(&self) -> Result<(), StatusReply> {
        if self.initialised {
            Ok(())
        } else {
            Err(StatusCode::Failure.with_message("the SFTP session has not been initialised: a client sends INIT first"))
        }
    }
}

impl russh_sftp::server::Handler for OrgFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        StatusCode::OpUnsupported.with_message("not supported by the gateway")
    }

    async fn init(&mut self, _version: u32, _ext: HashMap<String, String>) -> Result<Version, StatusReply> {
        if self.initialised {
            return Err(StatusCode::ConnectionLost.into());
        }
        self.initialised = true;
        let mut v = Version::new();
        for ext in ["limits@openssh.com", "posix-rename@openssh.com", "fsync@openssh.com"] {
            v.extensions.insert(ext.into(), "1".into());
        }
        Ok(v)
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        self.ready()?;
        Ok(Name { id, files: vec![File::dummy(VPath::parse(&path).display())] })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        self.ready()?;
        Ok(Attrs { id, attrs: self.attrs_of(&VPath::parse(&path))? })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        self.ready()?;
        self.stat(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusReply> {
        self.ready()?;
        match self.handles.get(&handle) {
            Some(Open::Upload(u)) => Ok(Attrs { id, attrs: upload_attrs(u.size) }),
            Some(Open::Read(f)) => {
                let m = f.metadata().map_err(|e| io_failure("reading", e))?;
                Ok(Attrs { id, attrs: file_attrs(&m, Folder::Results) })
            }
            Some(Open::Dir { .. }) => Ok(Attrs { id, attrs: dir_attrs(0o500) }),
            None => Err(failure("no such handle")),
        }
    }

    /// Accepted and ignored, as SFTPGo and AWS Transfer do: clients that set times or modes after an
    /// upload must not fail, and nobody may change the gateway's modes.
    async fn setstat(&mut self, id: u32, _path: String, _attrs: FileAttributes) -> Result<Status, StatusReply> {
        self.ready()?;
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, _handle: String, _attrs: FileAttributes) -> Result<Status, StatusReply> {
        self.ready()?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusReply> {
        self.ready()?;
        let permitted = self.still_permitted();
        self.logged(permitted)?;
        let listing = self.listing(&VPath::parse(&path))?;
        let handle = self.add_handle(Open::Dir { listing: listing.into_iter() })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusReply> {
        self.ready()?;
        match self.handles.get_mut(&handle) {
            Some(Open::Dir { listing }) => {
                let files: Vec<File> = listing.by_ref().take(LISTING_PAGE).collect();
                if files.is_empty() {
                    Err(StatusCode::Eof.into())
                } else {
                    Ok(Name { id, files })
                }
            }
            _ => Err(failure("not a folder handle")),
        }
    }

    async fn open(&mut self, id: u32, filename: String, pflags: OpenFlags, _attrs: FileAttributes) -> Result<Handle, StatusReply> {
        self.ready()?;
        let writing = pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let opened = self.open_path(&filename, pflags, writing);
        let handle = self.logged(opened)?;
        Ok(Handle { id, handle })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, StatusReply> {
        self.ready()?;
        let Some(Open::Read(f)) = self.handles.get(&handle) else {
            return Err(denied("this handle is not open for reading"));
        };
        let mut buf = vec![0u8; len.min(MAX_WRITE as u32) as usize];
        let n = f.read_at(&mut buf, offset).map_err(|e| io_failure("reading", e))?;
        if n == 0 {
            return Err(StatusCode::Eof.into());
        }
        buf.truncate(n);
        Ok(Data { id, data: buf })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, StatusReply> {
        self.ready()?;
        self.write_at(&handle, offset, &data)?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusReply> {
        self.ready()?;
        match self.handles.remove(&handle) {
            Some(Open::Upload(u)) => {
                let finished = match self.still_permitted() {
                    Ok(()) => self.finish_upload(*u),
                    Err(refused) => {
                        let _ = fs::remove_file(&u.staged);
                        self.done_writing(&u.name);
                        // The reason is in the next stat (paramiko ignores errors on CLOSE).
                        self.refused.insert(u.name.clone(), refused.error_message.clone().unwrap_or_default());
                        Err(refused)
                    }
                };
                self.logged(finished)?
            }
            Some(_) => {}
            None => return Err(failure("no such handle")),
        }
        Ok(ok(id))
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, StatusReply> {
        self.ready()?;
        let removed = self.remove_pending(&filename);
        self.logged(removed).map(|()| ok(id))
    }

    async fn mkdir(&mut self, _id: u32, path: String, _attrs: FileAttributes) -> Result<Status, StatusReply> {
        self.ready()?;
        self.logged(Err(denied(format!("{}: folders cannot be made; the folders are /inbox, /results and /exports", VPath::parse(&path).display()))))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, StatusReply> {
        self.ready()?;
        self.logged(Err(denied(format!("{}: the gateway's folders cannot be removed", VPath::parse(&path).display()))))
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, StatusReply> {
        self.ready()?;
        let renamed = self.rename(&oldpath, &newpath, false);
        self.logged(renamed).map(|()| ok(id))
    }

    async fn symlink(&mut self, _id: u32, _linkpath: String, _targetpath: String) -> Result<Status, StatusReply> {
        self.ready()?;
        self.logged(Err(denied("links cannot be made on the gateway")))
    }

    async fn readlink(&mut self, _id: u32, path: String) -> Result<Name, StatusReply> {
        self.ready()?;
        Err(not_found(&VPath::parse(&path)))
    }

    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Result<Packet, StatusReply> {
        self.ready()?;
        let mut rest = data.as_slice();
        match request.as_str() {
            "limits@openssh.com" => {
                let limits = russh_sftp::extensions::LimitsExtension {
                    max_packet_len: MAX_PACKET as u64,
                    max_read_len: MAX_WRITE,
                    max_write_len: MAX_WRITE,
                    max_open_handles: MAX_HANDLES as u64,
                };
                let data = russh_sftp::ser::to_bytes(&limits).map_err(|e| failure(e.to_string()))?.to_vec();
                Ok(Packet::ExtendedReply(russh_sftp::protocol::ExtendedReply { id, data }))
            }
            "posix-rename@openssh.com" => {
                let (Some(from), Some(to)) = (ssh_string(&mut rest), ssh_string(&mut rest)) else {
                    return Err(StatusCode::BadMessage.into());
                };
                let renamed = self.rename(&from, &to, true);
                self.logged(renamed)?;
                Ok(Packet::Status(ok(id)))
            }
            "fsync@openssh.com" => {
                let handle = ssh_string(&mut rest).ok_or(StatusCode::BadMessage)?;
                if let Some(Open::Upload(u)) = self.handles.get_mut(&handle) {
                    u.out.flush().map_err(|e| io_failure("writing", e))?;
                    u.out.get_ref().sync_data().map_err(|e| io_failure("writing", e))?;
                }
                Ok(Packet::Status(ok(id)))
            }
            _ => Err(self.unimplemented()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined_to_the_logins_root() {
        assert_eq!(VPath::parse("/"), VPath::Root);
        assert_eq!(VPath::parse("."), VPath::Root);
        assert_eq!(VPath::parse("../../.."), VPath::Root);
        assert_eq!(VPath::parse("/inbox/../../etc/passwd"), VPath::Nowhere("/etc/passwd".into()));
        assert_eq!(VPath::parse("inbox//./a.csv"), VPath::File(Folder::Inbox, "a.csv".into()));
        assert_eq!(VPath::parse("/results/../inbox/a.csv"), VPath::File(Folder::Inbox, "a.csv".into()));
        assert_eq!(VPath::parse("/../other-org/inbox/a.csv"), VPath::Nowhere("/other-org/inbox/a.csv".into()));
        assert_eq!(VPath::parse("/inbox/a/b.csv"), VPath::Nowhere("/inbox/a/b.csv".into()));
    }

    #[test]
    fn names_with_control_characters_or_backslashes_are_refused() {
        assert!(check_new_name("visits.csv").is_ok());
        assert!(check_new_name("Zoë's visits.csv").is_ok());
        assert!(check_new_name(&"x".repeat(200)).is_ok());
        for bad in ["", "a\nb.csv", "..\\x.csv", &"x".repeat(201)] {
            assert!(check_new_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_with_direction_overrides_or_invisible_characters_are_refused() {
        for bad in ["visits\u{202E}vsc.exe", "a\u{2066}b.csv", "a\u{200F}.csv", "a\u{200B}.csv", "a\u{FEFF}.csv", "a\u{2028}.csv", "a\u{85}.csv", "caf\u{FFFD}.csv"] {
            assert!(check_new_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_new_name("visites-été-ß-日本.csv").is_ok());
    }

    #[test]
    fn extension_strings_are_decoded() {
        let mut data = Vec::new();
        for s in ["/inbox/a.filepart", "/inbox/a.csv"] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        let mut rest = data.as_slice();
        assert_eq!(ssh_string(&mut rest).as_deref(), Some("/inbox/a.filepart"));
        assert_eq!(ssh_string(&mut rest).as_deref(), Some("/inbox/a.csv"));
        assert_eq!(ssh_string(&mut rest), None);
    }
}
