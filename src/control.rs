//! The control socket (issue 10): while `serve` holds the store, every other command is sent to the
//! running server over `data/control.sock`, runs there between files, and its answer streams back.
//!
//! The protocol, in frames of one tag byte, a big-endian u32 length and that many bytes:
//! - the client sends `C` (the command as JSON, its files made absolute) and `I` (what it read from
//!   standard input for `--password-stdin`, else nothing);
//! - the server answers with any number of `O` (standard output bytes) and `E` (standard error bytes)
//!   frames, then one `X` whose one byte is the exit status. A connection that ends before `X` is an
//!   answer cut short, never taken for a whole one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::cli::{self, Command, Format, Io};
use crate::data_dir::{DataDir, SpooledFile};
use crate::fault;
use crate::outcome::ImportResult;
use crate::pipeline::{Gateway, GatewayError};
use crate::queue::Queue;

/// What the client says when the server's answer stops before its end.
pub const CUT_SHORT: &str =
    "the gateway server stopped before it finished answering; the command may or may not have been applied; see its log";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nobody listens on the socket (no server, or one from before issue 10).
    #[error("no gateway server answers on {path}: {source}")]
    Unreachable { path: PathBuf, source: std::io::Error },
    #[error("{CUT_SHORT}")]
    CutShort,
    #[error("another gateway server is running: its control socket {path} answers")]
    AnotherServer { path: PathBuf },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("the control socket carried {0}")]
    Protocol(String),
    #[error("cannot listen on the control socket {}: binding it takes a path of {len} bytes in the data folder, and a Unix socket's may be at most {SOCKET_PATH_MAX}; give the gateway a data folder with a shorter path", .path.display())]
    PathTooLong { path: PathBuf, len: usize },
}

/// The longest path a Unix domain socket may be bound at (`sun_path` less its closing NUL).
const SOCKET_PATH_MAX: usize = 107;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
    let context = context.into();
    move |source| ControlError::Io { context, source }
}

const COMMAND: u8 = b'C';
const INPUT: u8 = b'I';
const STDOUT: u8 = b'O';
const STDERR: u8 = b'E';
const EXIT: u8 = b'X';

/// Output is sent in frames of at most this many bytes: what either side holds of an answer at once.
const FRAME_BYTES: usize = 64 * 1024;
/// A request (a command and a password line) is small; anything larger is not one.
const MAX_REQUEST_FRAME: usize = 1024 * 1024;

fn write_frame(w: &mut dyn Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too long"))?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(payload)
}

/// The next frame, or `None` at a clean end of the stream (before any byte of a frame).
fn read_frame(r: &mut dyn Read, max: usize) -> Result<Option<(u8, Vec<u8>)>, ControlError> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ControlError::CutShort),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(ControlError::CutShort),
            Err(e) => return Err(ControlError::Io { context: "reading from the control socket".into(), source: e }),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(ControlError::Protocol(format!("a frame of {len} bytes (at most {max} expected)")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => ControlError::CutShort,
        _ => ControlError::Io { context: "reading from the control socket".into(), source: e },
    })?;
    Ok(Some((head[0], payload)))
}

// ---------------------------------------------------------------------------------------------
// The client

/// Sends `command` to the server listening in `data` and writes its answer to `io` as it comes;
/// returns the command's exit status. `Unreachable` when no server answers on the socket.
pub fn forward(data: &DataDir, command: Command, io: &mut Io) -> Result<u8, ControlError> {
    let path = data.control_socket();
    let stream = UnixStream::connect(&path).map_err(|source| ControlError::Unreachable { path: path.clone(), source })?;
    let cwd = std::env::current_dir().map_err(io_err("reading the current folder"))?;
    let command = command.with_absolute_paths(&cwd);
    let mut input = Vec::new();
    if command.reads_input() {
        let mut line = String::new();
        io.input.read_line(&mut line).map_err(io_err("reading the password"))?;
        input = line.into_bytes();
    }
    let json = serde_json::to_vec(&command).map_err(|e| ControlError::Protocol(format!("a command it could not write: {e}")))?;
    let mut w = BufWriter::new(&stream);
    let sent = write_frame(&mut w, COMMAND, &json).and_then(|_| write_frame(&mut w, INPUT, &input)).and_then(|_| w.flush());
    drop(w);
    if sent.is_err() {
        return Err(ControlError::CutShort);
    }
    let mut r = BufReader::with_capacity(FRAME_BYTES, &stream);
    let output = |source| ControlError::Io { context: "writing the output".into(), source };
    loop {
        match read_frame(&mut r, FRAME_BYTES)? {
            None => return Err(ControlError::CutShort),
            Some((STDOUT, bytes)) => io.out.write_all(&bytes).and_then(|_| io.out.flush()).map_err(output)?,
            Some((STDERR, bytes)) => io.err.write_all(&bytes).and_then(|_| io.err.flush()).map_err(output)?,
            Some((EXIT, code)) if code.len() == 1 => return Ok(code[0]),
            Some((tag, _)) => return Err(ControlError::Protocol(format!("an unknown frame '{}'", tag.escape_ascii()))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// Completion notices of spooled files by import id: the control server's `import` waits on them
/// while the serve worker processes its files (issue 10).
#[derive(Default)]
pub struct Finished {
    waiting: Mutex<HashMap<uuid::Uuid, std::sync::mpsc::Sender<Result<ImportResult, String>>>>,
}

impl Finished {
    /// The worker is done with this file (answered, or failed with the gateway's own error). Only a
    /// file somebody waits for costs more than a look-up.
    pub fn notify(&self, file: &SpooledFile, done: &Result<crate::pipeline::Result<ImportResult>, tokio::task::JoinError>) {
        let Some(tx) = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&file.import_id) else { return };
        let outcome = match done {
            Ok(Ok(result)) => Ok(result.clone()),
            Ok(Err(e)) => Err(failure_message(e)),
            Err(e) => Err(format!("processing {} failed: {e}", file.name)),
        };
        let _ = tx.send(outcome);
    }

    fn expect(&self, file: &SpooledFile) -> std::sync::mpsc::Receiver<Result<ImportResult, String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(file.import_id, tx);
        rx
    }
}

/// The message `cli::report_failure` prints, without its `gateway: ` and line end.
fn failure_message(e: &GatewayError) -> String {
    let mut buf = Vec::new();
    cli::report_failure(e, &mut buf);
    String::from_utf8_lossy(&buf).trim_start_matches("gateway: ").trim_end().to_string()
}

/// The listening control socket; removed when stopped or dropped.
pub struct Server {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Listens on `data/control.sock` (mode 0600) and runs each connection's command on a thread of its
/// own. A socket left by a killed server (connecting to it fails) is replaced; one that answers is
/// another server's, and this one refuses to start.
pub fn start(gw: Arc<Gateway>, queue: Queue, finished: Arc<Finished>) -> Result<Server, ControlError> {
    let path = gw.data.control_socket();
    if UnixStream::connect(&path).is_ok() {
        return Err(ControlError::AnotherServer { path });
    }
    let listener = bind_private(&gw.data, &path)?;
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = stopping.clone();
    let thread = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let stream = match conn {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors, for instance: the socket stays, the next accept may succeed.
                        tracing::warn!(error = %e, "control socket: accept failed");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                };
                let (gw, queue, finished) = (gw.clone(), queue.clone(), finished.clone());
                let spawned = std::thread::Builder::new().name("control-command".into()).spawn(move || {
                    if let Err(e) = serve_connection(&gw, &queue, &finished, stream) {
                        tracing::warn!(error = %e, "control socket: a command's connection ended early");
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "control socket: no thread for a command");
                }
            }
        })
        .map_err(io_err("starting the control socket's thread"))?;
    tracing::info!(socket = %path.display(), "commands are taken on the control socket");
    Ok(Server { path, stopping, thread: Some(thread) })
}

/// Binds the socket inside a fresh 0700 folder, makes it 0600 and renames it into place, so it is
/// never reachable with wider permissions, not even for an instant; the rename also replaces a stale
/// socket in one step.
fn bind_private(data: &DataDir, path: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // Only the process holding the store gets here, so a fixed name is nobody else's.
    let private = data.root().join(".control.tmp");
    // Said plainly (since 2026-12-03: std's reason, twice, about the folder it is first bound in).
    let longest = path.as_os_str().len().max(private.join("s").as_os_str().len());
    if longest > SOCKET_PATH_MAX {
        return Err(ControlError::PathTooLong { path: path.to_path_buf(), len: longest });
    }
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(io_err(format!("creating {}", private.display())))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&staged).map_err(io_err(format!("listening on {}", staged.display())))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).map_err(io_err(format!("setting the mode of {}", staged.display())))?;
        std::fs::rename(&staged, path).map_err(io_err(format!("putting the control socket at {}", path.display())))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
}

impl Server {
    /// Stops taking commands and removes the socket; commands already running finish on their threads.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept so the thread sees it is stopping.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
        let _ = thread.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut();
    }
}

/// How long a command's answer waits for a client that stopped reading (a paused pager) before the
/// rest of it goes to a file instead: the command holds the store's turn, and uploads wait behind it.
const STALLED_READER: std::time::Duration = std::time::Duration::from_millis(500);

/// Where a command's answer goes: the socket while the client keeps up; once a write has waited
/// [`STALLED_READER`], an unnamed file in `staging/`, sent on after the command has let go of the
/// store's turn. So a client that stops reading never holds up the files queued behind its command,
/// and the answer is still whole and in order.
struct Outlet {
    socket: UnixStream,
    staging: PathBuf,
    spill: Option<BufWriter<std::fs::File>>,
}

impl Outlet {
    fn new(socket: UnixStream, staging: PathBuf) -> std::io::Result<Outlet> {
        socket.set_write_timeout(Some(STALLED_READER))?;
        Ok(Outlet { socket, staging, spill: None })
    }

    fn spill(&mut self) -> std::io::Result<&mut BufWriter<std::fs::File>> {
        if self.spill.is_none() {
            std::fs::create_dir_all(&self.staging)?;
            let file = crate::data_dir::unnamed_file(Some(&self.staging), "reply")?;
            tracing::info!("control socket: the client stopped reading; the rest of the answer is kept on disk until the command is done");
            self.spill = Some(BufWriter::with_capacity(FRAME_BYTES, file));
        }
        Ok(self.spill.as_mut().expect("just made"))
    }

    /// Sends what was kept on disk, waiting for the client as long as it takes (the turn is let go).
    fn drain(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        let Some(spill) = self.spill.take() else { return Ok(()) };
        let mut file = spill.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.socket.set_write_timeout(None)?;
        std::io::copy(&mut file, &mut self.socket)?;
        Ok(())
    }
}

impl Write for Outlet {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(spill) = &mut self.spill {
            return spill.write(buf);
        }
        match self.socket.write(buf) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                self.spill()?.write_all(buf)?;
                Ok(buf.len())
            }
            sent => sent,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.spill {
            Some(spill) => spill.flush(),
            None => self.socket.flush(),
        }
    }
}

/// The answer's side of a connection: stdout bytes gathered into frames of `FRAME_BYTES`, stderr
/// notes sent as they come (after the stdout bytes before them), then the exit status.
struct Reply {
    stream: BufWriter<Outlet>,
    out: Vec<u8>,
    sent_stdout: bool,
}

impl Reply {
    fn send_out(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        write_frame(&mut self.stream, STDOUT, &self.out)?;
        self.out.clear();
        self.stream.flush()?;
        if !self.sent_stdout {
            self.sent_stdout = true;
            // Issue 10's test of a server that dies mid-reply.
            fault::point("control-mid-reply");
        }
        Ok(())
    }
}

struct ReplyOut<'a>(&'a RefCell<Reply>);
struct ReplyErr<'a>(&'a RefCell<Reply>);

impl Write for ReplyOut<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut r = self.0.borrow_mut();
        let n = buf.len().min(FRAME_BYTES - r.out.len());
        r.out.extend_from_slice(&buf[..n]);
        if r.out.len() == FRAME_BYTES {
            r.send_out()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().send_out()
    }
}

impl Write for ReplyErr<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut r = self.0.borrow_mut();
        r.send_out()?;
        let n = buf.len().min(FRAME_BYTES);
        write_frame(&mut r.stream, STDERR, &buf[..n])?;
        r.stream.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn serve_connection(gw: &Gateway, queue: &Queue, finished: &Finished, stream: UnixStream) -> Result<(), ControlError> {
    let mut r = BufReader::new(stream.try_clone().map_err(io_err("cloning the control connection"))?);
    let mut request = |want: u8| match read_frame(&mut r, MAX_REQUEST_FRAME)? {
        Some((tag, payload)) if tag == want => Ok(payload),
        Some((tag, _)) => Err(ControlError::Protocol(format!("frame '{}' where '{}' was expected", tag.escape_ascii(), want.escape_ascii()))),
        None => Err(ControlError::CutShort),
    };
    let json = request(COMMAND)?;
    let input = request(INPUT)?;
    let outlet = Outlet::new(stream, gw.data.staging()).map_err(io_err("setting up the control connection"))?;
    let reply = RefCell::new(Reply { stream: BufWriter::new(outlet), out: Vec::new(), sent_stdout: false });
    let (mut out, mut err) = (ReplyOut(&reply), ReplyErr(&reply));
    let code = match serde_json::from_slice::<Command>(&json) {
        // A client of another version of the gateway, most likely.
        Err(e) => cli::report_failure(&GatewayError::Invalid(format!("the server could not read the command ({e}); is this `gateway` the same version as the one serving?")), &mut err),
        Ok(command) => {
            tracing::info!(?command, "control socket: a command");
            let mut io = Io { out: &mut out, err: &mut err, input: &mut &input[..] };
            let ran = match command {
                Command::Import { org, format, files } => match import(gw, queue, finished, &org, format, &files, &mut io) {
                    Some(ran) => ran,
                    // The server is stopping with the file still queued: it is processed at the
                    // next start, and the client says the answer was cut short.
                    None => return Ok(()),
                },
                command => {
                    let _turn = gw.turn();
                    cli::execute(gw, command, &mut io)
                }
            };
            let code = ran.unwrap_or_else(|e| cli::report_failure(&e, io.err));
            // A closed pipe at the client: nobody reads the rest.
            if let Err(e) = io.out.flush() {
                return Err(ControlError::Io { context: "answering a command".into(), source: e });
            }
            code
        }
    };
    let mut reply = reply.into_inner();
    reply
        .send_out()
        .and_then(|_| write_frame(&mut reply.stream, EXIT, &[code]))
        .and_then(|_| reply.stream.flush())
        .and_then(|_| reply.stream.get_mut().drain())
        .map_err(io_err("answering a command"))
}

/// `import` while serving: each file is claimed into the spool (copied, as the one-shot `import`
/// does), handed to the server's queue behind what SFTP and the watcher gave it, and its result
/// awaited, one file after another as the one-shot `import` processes them; the results print as
/// there. The store's turn is not held while waiting: the worker needs it. `None` when the server
/// stops first.
fn import(
    gw: &Gateway,
    queue: &Queue,
    finished: &Finished,
    org: &str,
    format: Format,
    files: &[PathBuf],
    io: &mut Io,
) -> Option<Result<u8, GatewayError>> {
    let org = match gw.org(org) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    // As the one-shot `import`: every file readable before any is spooled (the client checked
    // them too, but one may have gone since).
    if let Err(e) = cli::readable(files) {
        return Some(Err(e));
    }
    let mut results = Vec::new();
    for f in files {
        let spooled = match gw.spool_copy(&org, f) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let done = finished.expect(&spooled);
        queue.send(spooled, None).then_some(())?;
        match done.recv().ok()? {
            Ok(result) => results.push(result),
            Err(message) => return Some(Err(GatewayError::Invalid(message))),
        }
    }
    Some(cli::print_results(&results, format, io.out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_cut_in_the_middle_is_an_answer_cut_short() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, STDOUT, b"visit_ref,status\n").unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(matches!(read_frame(&mut &bytes[..], FRAME_BYTES), Err(ControlError::CutShort)));
    }

    #[test]
    fn frames_come_back_as_written_and_a_clean_end_is_none() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, STDERR, b"note").unwrap();
        write_frame(&mut bytes, EXIT, &[1]).unwrap();
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r, FRAME_BYTES).unwrap(), Some((STDERR, b"note".to_vec())));
        assert_eq!(read_frame(&mut r, FRAME_BYTES).unwrap(), Some((EXIT, vec![1])));
        assert_eq!(read_frame(&mut r, FRAME_BYTES).unwrap(), None);
    }

    #[test]
    fn a_frame_longer_than_the_reader_allows_is_refused_before_it_is_read() {
        let bytes = [STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut &bytes[..], FRAME_BYTES), Err(ControlError::Protocol(_))));
    }

    #[test]
    fn a_command_sent_names_its_files_absolutely() {
        use clap::Parser;
        let cli = cli::Cli::parse_from(["gateway", "import", "--org", "Pearl", "week.csv", "/tmp/other.csv"]);
        let Command::Import { files, .. } = cli.command.with_absolute_paths(Path::new("/home/council")) else { panic!() };
        assert_eq!(files, [PathBuf::from("/home/council/week.csv"), PathBuf::from("/tmp/other.csv")]);
    }
}
