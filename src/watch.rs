//! The inbox watcher: takes a file from an organisation's `inbox/` (or the council's, issue 10) once
//! it is complete, claims it into the spool, and hands it to the work queue. At start-up it takes what
//! was dropped into the inboxes while the gateway was down.
//!
//! inotify reports a close after writing (or a rename to `*.csv`); the file is claimed once no other
//! event has touched it for `watch.settle_ms`. It cannot tell a finished copy from one cut off
//! half-way, which is why README asks people who copy files in by other means to write under a
//! temporary name and rename.
//!
//! Only the event loop runs on the async runtime; claiming, scanning and the store are blocking
//! work on the blocking pool (issue 9).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::data_dir::Owner;
use crate::domain::Slug;
use crate::pipeline::{is_ready_name, Gateway, GatewayError};
use crate::queue::Queue;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Notify { path: PathBuf, source: notify::Error },
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// The watcher is ready: the inboxes of `orgs` organisations under `dir` are watched, and what
/// was dropped into them while the gateway was down has been taken.
#[derive(Debug, Clone)]
pub struct Watching {
    pub orgs: usize,
    pub dir: PathBuf,
}

/// Watches until `shutdown` completes, sending each claimed file to `work_tx`; `ready` is told
/// once the inboxes are watched.
pub async fn run(
    gw: Arc<Gateway>,
    work_tx: Queue,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(Watching),
) -> Result<(), WatchError> {
    let (orgs, inboxes) = {
        let gw = gw.clone();
        blocking(move || prepare(&gw)).await??
    };
    let orgs_dir = inboxes.orgs.clone();

    let (event_tx, mut event_rx) = mpsc::channel::<notify::Result<notify::Event>>(4096);
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = event_tx.blocking_send(ev);
    })
    .map_err(|source| WatchError::Notify { path: orgs_dir.clone(), source })?;
    watcher
        .watch(&orgs_dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Notify { path: orgs_dir.clone(), source })?;
    watcher
        .watch(&inboxes.council, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Notify { path: inboxes.council.clone(), source })?;

    let settle = Duration::from_millis(gw.config.watch.settle_ms);
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    // Files dropped while the gateway was down are complete: they are taken now.
    scan_off_runtime(&gw, &inboxes, &work_tx).await?;
    tracing::info!(orgs, dir = %orgs_dir.display(), "watching inboxes");
    ready(Watching { orgs, dir: orgs_dir.clone() });

    tokio::pin!(shutdown);
    loop {
        let next = pending.values().min().copied();
        tokio::select! {
            _ = &mut shutdown => break,
            ev = event_rx.recv() => match ev {
                Some(Ok(ev)) => {
                    if ev.need_rescan() {
                        scan_off_runtime(&gw, &inboxes, &work_tx).await?;
                    }
                    on_event(&inboxes, &ev, &mut pending, settle);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watcher error; rescanning the inboxes");
                    scan_off_runtime(&gw, &inboxes, &work_tx).await?;
                }
                None => break,
            },
            _ = sleep_until(next) => {
                let now = Instant::now();
                let mut ripe: Vec<PathBuf> = pending.iter().filter(|(_, t)| **t <= now).map(|(p, _)| p.clone()).collect();
                ripe.sort();
                for path in &ripe {
                    pending.remove(path);
                }
                // Claiming is a rename per file and may meet a slow disk: off the runtime, in the
                // order the files became ready (issue 9).
                let (gw, inboxes, work_tx) = (gw.clone(), inboxes.clone(), work_tx.clone());
                blocking(move || {
                    for path in ripe {
                        claim(&gw, &inboxes, &path, &work_tx);
                    }
                })
                .await?;
            }
        }
    }
    drop(watcher);
    Ok(())
}

/// The watched folders, absolute: inotify reports absolute paths, and a relative `--data` (the
/// default `data`) must be made absolute to recognise them.
#[derive(Debug, Clone)]
struct Inboxes {
    /// `orgs/`: every organisation's `inbox/` below it.
    orgs: PathBuf,
    /// `council/inbox/` (issue 10).
    council: PathBuf,
}

/// The organisations' folders and the council's made: (organisations, the watched folders).
fn prepare(gw: &Gateway) -> Result<(usize, Inboxes), WatchError> {
    let orgs = gw.store.orgs().map_err(GatewayError::from)?;
    let folders = |source| GatewayError::Io { context: "creating folders".into(), source };
    for org in &orgs {
        gw.data.ensure_org(&org.slug).map_err(folders)?;
    }
    std::fs::create_dir_all(gw.data.orgs()).map_err(folders)?;
    gw.data.ensure_council().map_err(folders)?;
    let inboxes = Inboxes {
        orgs: std::fs::canonicalize(gw.data.orgs()).map_err(folders)?,
        council: std::fs::canonicalize(gw.data.council_inbox()).map_err(folders)?,
    };
    Ok((orgs.len(), inboxes))
}

/// Runs file-system and store work on the blocking pool, not on the runtime's own threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, WatchError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| WatchError::Gateway(GatewayError::Invalid(format!("the watcher's file work failed: {e}"))))
}

async fn scan_off_runtime(gw: &Arc<Gateway>, inboxes: &Inboxes, work: &Queue) -> Result<(), WatchError> {
    let (gw, inboxes, work) = (gw.clone(), inboxes.clone(), work.clone());
    blocking(move || scan_inboxes(&gw, &inboxes, &work)).await
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `orgs/<slug>/inbox/<name>` -> the organisation, `council/inbox/<name>` -> the council, when the
/// name is that of a finished CSV. A folder whose name no organisation could have (made by hand) is
/// not an inbox (issue 11). Anything else is left where it is: a claim's attachment (a PDF, PNG or
/// JPEG) waits there for the claims file that names it, which keeps it (issue 12).
fn inbox_file(inboxes: &Inboxes, path: &Path) -> Option<Owner> {
    if path.parent() == Some(inboxes.council.as_path()) {
        return path.file_name()?.to_str().filter(|n| is_ready_name(n)).map(|_| Owner::Council);
    }
    let rel = path.strip_prefix(&inboxes.orgs).ok()?;
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [slug, "inbox", name] if is_ready_name(name) => Slug::parse(slug).ok().map(Owner::Org),
        _ => None,
    }
}

fn on_event(inboxes: &Inboxes, ev: &notify::Event, pending: &mut HashMap<PathBuf, Instant>, settle: Duration) {
    let complete = matches!(
        ev.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both | RenameMode::Any))
    );
    let targets: Vec<&PathBuf> = match ev.kind {
        // `Both` carries [from, to]: only the new name can be a finished file.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => ev.paths.iter().skip(1).collect(),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
            for p in &ev.paths {
                pending.remove(p);
            }
            return;
        }
        _ => ev.paths.iter().collect(),
    };
    for path in targets {
        if inbox_file(inboxes, path).is_none() {
            continue;
        }
        if complete {
            pending.insert(path.clone(), Instant::now() + settle);
        } else if let Some(t) = pending.get_mut(path) {
            // Written again after a close (a writer that reopens to append): wait for the next close.
            if matches!(ev.kind, EventKind::Modify(ModifyKind::Data(_)) | EventKind::Access(AccessKind::Open(_))) {
                pending.remove(path);
            } else {
                *t = Instant::now() + settle;
            }
        }
    }
}

fn claim(gw: &Gateway, inboxes: &Inboxes, path: &Path, work: &Queue) {
    let Some(owner) = inbox_file(inboxes, path) else { return };
    // A link dropped into an inbox is never taken: it could point anywhere on the host.
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return;
    }
    let claimed = path.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| GatewayError::Invalid(format!("{} is not a file", path.display())));
    match claimed.and_then(|name| gw.claim_for(&owner, path, &name)) {
        Ok(spooled) => {
            tracing::info!(org = %owner, file = %path.display(), "received");
            work.send(spooled, None);
        }
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not claim"),
    }
}

fn scan_inboxes(gw: &Gateway, inboxes: &Inboxes, work: &Queue) {
    let org_inboxes = std::fs::read_dir(&inboxes.orgs).into_iter().flatten().flatten().map(|org| org.path().join("inbox"));
    for inbox in org_inboxes.chain([inboxes.council.clone()]) {
        let Ok(files) = std::fs::read_dir(inbox) else { continue };
        let mut files: Vec<PathBuf> = files.flatten().map(|f| f.path()).collect();
        files.sort();
        for f in files {
            claim(gw, inboxes, &f, work);
        }
    }
}
