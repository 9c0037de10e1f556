//! `gateway serve`: the SFTP front door and the inbox watcher feeding one work queue, the worker
//! that processes its files one at a time in the order they were claimed, and the mail outbox.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::data_dir::SpooledFile;
use crate::mail::outbox::Mailer;
use crate::pipeline::{Gateway, GatewayError};
use crate::sftp::{self, SftpError, User};
use crate::watch::{self, WatchError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Sftp(#[from] SftpError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error("the SFTP listener ended unexpectedly; the gateway stops so that its supervisor restarts it")]
    ListenerEnded,
}

/// How `serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Overrides `sftp.listen`.
    pub listen: Option<String>,
    /// The demo login (`serve --demo`); never stored.
    pub demo: Option<User>,
}

/// What the server tells its operator as it comes up. The library prints nothing (issue 11): the
/// `gateway` binary prints each on stdout, where tests and the soak example wait for them.
#[derive(Debug, Clone)]
pub enum Announcement {
    /// Listening for SFTP.
    Listening { addr: SocketAddr, host_key: String },
    /// `serve --demo`: the two commands a newcomer pastes.
    DemoCommands { addr: SocketAddr },
    /// The inboxes are watched and the files dropped while the gateway was down are taken.
    Watching(watch::Watching),
}

impl std::fmt::Display for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Announcement::Listening { addr, host_key } => write!(f, "gateway: SFTP on {addr}, host key {host_key}"),
            Announcement::DemoCommands { addr } => {
                let ssh = format!(
                    "-i {DEMO_KEY} -P {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                    addr.port()
                );
                let host = addr.ip();
                writeln!(f, "  upload the example week:  echo 'put examples/visits-week.csv /inbox/' | sftp -b - {ssh} {DEMO_LOGIN}@{host}")?;
                write!(f, "  fetch its result:         sftp {ssh} {DEMO_LOGIN}@{host}:/results/visits-week.result.json .")
            }
            Announcement::Watching(w) => write!(f, "gateway: watching the inboxes of {} organisations under {}", w.orgs, w.dir.display()),
        }
    }
}

/// Runs until `shutdown` completes; the file being processed then is finished, the rest stay in the
/// spool for the next start. `announce` is told of each step of coming up.
pub async fn run(
    gw: Arc<Gateway>,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
    announce: impl Fn(Announcement),
) -> Result<(), ServeError> {
    let mailer = Mailer::new(&gw)?;
    // Locks on the council's schedule (issue 10), before anything else starts so that a bad setting
    // stops nothing half-started; it stops when `run` returns.
    let _schedule = crate::schedule::start(gw.clone())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (work_tx, work_rx) = mpsc::unbounded_channel::<SpooledFile>();
    clean_staging(&gw);
    // Issue 10: exports are rewritten by the worker between files, and every one is checked once at
    // start (a deleted export is made again; one cut short by a crash is rewritten).
    gw.exports.defer();
    gw.mark_exports(crate::exports::Touched::All);
    // Under that one rewrite of every export: pending claims figured with this server's rules.
    gw.refigure_all_claims()?;
    let finished = Arc::new(crate::control::Finished::default());
    let worker = tokio::spawn(work(gw.clone(), work_rx, stop_rx.clone(), finished.clone()));
    // Issue 12: a new day can turn a dispute Overdue with no file sent; the exports follow.
    tokio::spawn(new_days(gw.clone(), stop_rx));
    // Reading the spool is file-system work: off the runtime, as everything slow is (issue 9).
    let spooled = {
        let gw = gw.clone();
        tokio::task::spawn_blocking(move || gw.spooled()).await.map_err(|e| GatewayError::Invalid(format!("reading the spool: {e}")))??
    };
    for spooled in spooled {
        let _ = work_tx.send(spooled);
    }
    // Every front door hands its files on through one queue, in the order they were finished.
    let queue = crate::queue::Queue::start(work_tx);
    // Commands sent while serving (issue 10) queue their imports behind the spool's files.
    let control = crate::control::start(gw.clone(), queue.clone(), finished)?;
    let listen = options.listen.clone().unwrap_or_else(|| gw.config.sftp.listen.clone());
    let demo = options.demo.is_some();
    let mut sftp = sftp::start(gw.clone(), &listen, options.demo, queue.clone()).await?;
    announce(Announcement::Listening { addr: sftp.addr, host_key: sftp.host_key.clone() });
    if demo {
        announce(Announcement::DemoCommands { addr: sftp.addr });
    }
    // A thread of its own: rendering and sending email never runs on the runtime (issue 9).
    let mail = mailer.spawn(gw.clone())?;
    // An email already on its way gets as long as one SMTP conversation may take.
    let mail_wait = std::time::Duration::from_millis(gw.config.mail.timeout_ms);
    let watched = tokio::select! {
        w = watch::run(gw, queue, shutdown, |w| announce(Announcement::Watching(w))) => w,
        _ = sftp.ended() => {
            tracing::error!("the SFTP listener ended; stopping");
            let _ = stop_tx.send(true);
            let _ = worker.await;
            let _ = tokio::task::spawn_blocking(move || mail.stop(mail_wait)).await;
            return Err(ServeError::ListenerEnded);
        }
    };
    sftp.shutdown().await;
    control.stop();
    // The worker finishes the file it is on; the mailer the email it is sending.
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = tokio::task::spawn_blocking(move || mail.stop(mail_wait)).await;
    tracing::info!("stopped");
    Ok(watched?)
}

/// Removes what a crash left in `staging/`: uploads cut off by kill -9 and `.tmp` files of
/// interrupted writes (issue 9). Only a process holding the store writes there (`serve`, `import`,
/// `cplis load`...), and `serve` holds it now, so nothing in it is anyone's work in progress.
fn clean_staging(gw: &Gateway) {
    let Ok(entries) = std::fs::read_dir(gw.data.staging()) else { return };
    let mut removed = 0u64;
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()) && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(files = removed, "removed files left in staging by an earlier run");
    }
}

/// One file at a time: the store applies files in the order they were claimed. While the store is
/// failed (a full disk), files wait in order and it is opened again every few seconds; a file on
/// which it failed, and whose failed answer could not be written then, is answered once it is back
/// (issue 9).
///
/// Exports (issue 10) are rewritten between files, coalesced: once the queue has stayed empty for
/// [`EXPORTS_QUIET`], or after [`EXPORTS_EVERY_FILES`] files or [`EXPORTS_AT_LEAST`] of a queue that
/// never empties, so a burst rewrites each export once and a constant stream still sees them.
async fn work(
    gw: Arc<Gateway>,
    mut rx: mpsc::UnboundedReceiver<SpooledFile>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    finished: Arc<crate::control::Finished>,
) {
    let mut waiting: std::collections::VecDeque<(SpooledFile, Option<String>)> = Default::default();
    let mut since_exports = (0usize, tokio::time::Instant::now());
    // The start's check of every export is left to the next start if nothing else changes.
    let marked_at_start = gw.exports.marks();
    loop {
        // Stopping: the files still queued stay in the spool for the next start (since 2026-12-03;
        // the whole queue was worked through first, 8.6 s for ten files of 3,000 rows).
        if *stop.borrow() {
            break;
        }
        let next = match waiting.pop_front() {
            Some(next) => Some(next),
            None => rx.try_recv().ok().map(|p| (p, None)),
        };
        let (spooled, failed) = match next {
            Some(next) => {
                if gw.exports.is_dirty() && (since_exports.0 >= EXPORTS_EVERY_FILES || since_exports.1.elapsed() >= EXPORTS_AT_LEAST) {
                    refresh_exports(&gw).await;
                    since_exports = (0, tokio::time::Instant::now());
                }
                next
            }
            None if gw.exports.is_dirty() => tokio::select! {
                biased;
                _ = stop.changed() => break,
                next = rx.recv() => match next {
                    Some(p) => (p, None),
                    None => break,
                },
                _ = tokio::time::sleep(EXPORTS_QUIET) => {
                    refresh_exports(&gw).await;
                    since_exports = (0, tokio::time::Instant::now());
                    continue;
                }
            },
            None => tokio::select! {
                biased;
                _ = stop.changed() => break,
                next = rx.recv() => match next {
                    Some(p) => (p, None),
                    None => break,
                },
                // A command over the control socket changed something between files.
                _ = gw.exports.changed() => continue,
            },
        };
        loop {
            let engine = gw.clone();
            if tokio::task::spawn_blocking(move || engine.ensure_store()).await.unwrap_or(false) {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = tokio::time::sleep(STORE_RETRY) => {}
            }
        }
        let (file, engine) = (spooled.clone(), gw.clone());
        let done = tokio::task::spawn_blocking(move || {
            let _turn = engine.turn();
            match failed {
                Some(reason) => engine.fail_spooled(&file, &reason),
                None => engine.process_spooled(&file),
            }
        })
        .await;
        since_exports.0 += 1;
        let path = gw.data.spooled(&spooled);
        // `gateway import` sent to the server waits for this (issue 10).
        finished.notify(&spooled, &done);
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if !gw.store.is_healthy() && path.exists() => {
                tracing::error!(file = %path.display(), error = %e, "the store failed; the file is answered once it is back");
                waiting.push_front((spooled, Some(e.to_string())));
            }
            Ok(Err(e)) => tracing::error!(file = %path.display(), error = %e, "could not process; the file stays in the spool for the next start"),
            Err(e) => tracing::error!(file = %path.display(), error = %e, "processing panicked; the file stays in the spool"),
        }
    }
    // Stopping within the quiet wait after a file or a command: its exports are written before
    // the server ends (since 2026-12-03; they waited for the next start, and a one-shot command
    // meanwhile joined the council's files from the stale parts). A stop before any change leaves
    // the start's own check of every export to the next start, as before.
    if gw.exports.is_dirty() && gw.exports.marks() != marked_at_start && gw.store.is_healthy() {
        refresh_exports(&gw).await;
    }
}

/// Marks every export for rewriting when the gateway's day changes (`rules.current_day`): what the
/// exports show depends on the day (a dispute past its respond-by day is Overdue). It looks at the
/// clock each local midnight, and at least hourly, so a clock set forward is noticed.
async fn new_days(gw: Arc<Gateway>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut day = gw.config.rules.current_day();
    loop {
        let now = chrono::Local::now();
        let midnight = (now.date_naive() + chrono::Duration::days(1)).and_hms_opt(0, 0, 1).unwrap_or_default();
        let wait = (midnight - now.naive_local()).to_std().unwrap_or_default().min(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let today = gw.config.rules.current_day();
        if today != day {
            day = today;
            tracing::info!(%day, "a new day: the exports are written again");
            gw.mark_exports(crate::exports::Touched::All);
        }
    }
}

/// Rewrites the exports waiting, holding the store's turn so they read one consistent store.
async fn refresh_exports(gw: &Arc<Gateway>) {
    let engine = gw.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _turn = engine.turn();
        engine.refresh_exports()
    })
    .await;
    match done {
        Ok(Ok(n)) => tracing::debug!(files = n, "exports rewritten"),
        Ok(Err(e)) => tracing::error!(error = %e, "could not rewrite the exports; tried again after the next file"),
        Err(e) => tracing::error!(error = %e, "rewriting the exports panicked"),
    }
}

/// How long the queue stays empty before the exports are rewritten: files of a burst arrive a few
/// milliseconds apart, and a rewrite between two of them would be wasted (issue 10).
const EXPORTS_QUIET: std::time::Duration = std::time::Duration::from_millis(200);
/// A queue that never empties still has its exports rewritten after this many files...
const EXPORTS_EVERY_FILES: usize = 200;
/// ...or this long, whichever comes first.
const EXPORTS_AT_LEAST: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a store closed by a failure is tried again while files wait.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The demo login's key pair, committed in `keys/` for `serve --demo` only.
pub const DEMO_LOGIN: &str = "demo";
pub const DEMO_KEY: &str = "keys/demo_ed25519";
const DEMO_PUBLIC_KEY: &str = include_str!("../keys/demo_ed25519.pub");
const DEMO_CPLIS: &[u8] = include_bytes!("../examples/cplis.csv");

/// The demo login and the organisation it is for.
#[derive(Debug, Clone)]
pub struct Demo {
    pub user: User,
    pub org_name: String,
}

impl std::fmt::Display for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gateway: DEMO login '{DEMO_LOGIN}' for {} (key {DEMO_KEY}; demo only, exists only while `serve --demo` runs)", self.org_name)
    }
}

/// `serve --demo`: the examples' CPLIs loaded (which makes Pearl Carers Ltd) and a login for it whose
/// private key is `keys/demo_ed25519`. The login lives only in this process; nothing is stored.
pub fn prepare_demo(gw: &Gateway) -> Result<Demo, ServeError> {
    let io = |context: &str| {
        let context = context.to_string();
        move |source| GatewayError::Io { context, source }
    };
    std::fs::create_dir_all(gw.data.staging()).map_err(io("creating the staging folder"))?;
    let extract = gw.data.staging().join("demo-cplis.csv");
    std::fs::write(&extract, DEMO_CPLIS).map_err(io("writing the demo CPLIs"))?;
    let load = gw.load_cplis(&extract);
    let _ = std::fs::remove_file(&extract);
    let load = load?;
    let org = gw.org(&load.organisations[0])?;
    // Git does not keep modes; OpenSSH refuses a private key others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(DEMO_KEY, std::fs::Permissions::from_mode(0o600));
    }
    let user = User { login: DEMO_LOGIN.into(), org: org.slug.into(), keys: vec![DEMO_PUBLIC_KEY.trim().to_string()], password_hash: None };
    Ok(Demo { user, org_name: org.name })
}
