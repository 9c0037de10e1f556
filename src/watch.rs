//! The inbox watcher, and `serve`, which runs it beside the mail outbox. The watcher takes a file from
//! an organisation's `inbox/` once it is complete, claims it into the spool, and feeds the pipeline
//! one file at a time. At start-up it finishes what the spool holds
//! and takes what was dropped into the inboxes while the gateway was down.
//!
//! inotify reports a close after writing (or a rename to `*.csv`); the file is claimed once no other
//! event has touched it for `watch.settle_ms`. It cannot tell a finished copy from one cut off
//! half-way, which is why README asks people who copy files in by other means to write under a
//! temporary name and rename.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::mail::outbox::Mailer;
use crate::pipeline::{is_ready_name, Gateway, GatewayError};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Notify { path: PathBuf, source: notify::Error },
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// `gateway serve`: the inbox watcher and the mail outbox side by side until `shutdown`; the mail
/// worker stops after the watcher, finishing the email it is sending.
pub async fn serve(gw: Arc<Gateway>, mailer: Mailer, shutdown: impl std::future::Future<Output = ()>) -> Result<(), WatchError> {
    let (stop, mut stopped) = tokio::sync::watch::channel(());
    let mail = tokio::spawn(mailer.run(gw.clone(), async move {
        let _ = stopped.changed().await;
    }));
    let watched = run(gw, shutdown).await;
    drop(stop);
    let _ = mail.await;
    watched
}

/// Runs until `shutdown` completes; the file being processed then is finished, the rest stay in the
/// spool for the next start.
pub async fn run(gw: Arc<Gateway>, shutdown: impl std::future::Future<Output = ()>) -> Result<(), WatchError> {
    let orgs_dir = gw.data.orgs();
    let orgs = gw.store.orgs().map_err(GatewayError::from)?;
    for org in &orgs {
        gw.data.ensure_org(&org.slug).map_err(|source| GatewayError::Io { context: "creating folders".into(), source })?;
    }
    std::fs::create_dir_all(&orgs_dir).map_err(|source| GatewayError::Io { context: "creating folders".into(), source })?;

    let stop = Arc::new(AtomicBool::new(false));
    let (work_tx, work_rx) = mpsc::unbounded_channel::<PathBuf>();
    let worker = tokio::spawn(work(gw.clone(), work_rx, stop.clone()));
    for spooled in gw.spooled()? {
        let _ = work_tx.send(spooled);
    }

    let (event_tx, mut event_rx) = mpsc::channel::<notify::Result<notify::Event>>(4096);
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = event_tx.blocking_send(ev);
    })
    .map_err(|source| WatchError::Notify { path: orgs_dir.clone(), source })?;
    watcher
        .watch(&orgs_dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Notify { path: orgs_dir.clone(), source })?;

    let settle = Duration::from_millis(gw.config.watch.settle_ms);
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    // Files dropped while the gateway was down are complete: they are taken now.
    scan_inboxes(&gw, &orgs_dir, &work_tx);
    println!("gateway: watching the inboxes of {} organisations under {}", orgs.len(), orgs_dir.display());
    tracing::info!(orgs = orgs.len(), dir = %orgs_dir.display(), "watching inboxes");

    tokio::pin!(shutdown);
    loop {
        let next = pending.values().min().copied();
        tokio::select! {
            _ = &mut shutdown => break,
            ev = event_rx.recv() => match ev {
                Some(Ok(ev)) => {
                    if ev.need_rescan() {
                        scan_inboxes(&gw, &orgs_dir, &work_tx);
                    }
                    on_event(&orgs_dir, &ev, &mut pending, settle);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watcher error; rescanning the inboxes");
                    scan_inboxes(&gw, &orgs_dir, &work_tx);
                }
                None => break,
            },
            _ = sleep_until(next) => {
                let now = Instant::now();
                let ripe: Vec<PathBuf> = pending.iter().filter(|(_, t)| **t <= now).map(|(p, _)| p.clone()).collect();
                for path in ripe {
                    pending.remove(&path);
                    claim(&gw, &orgs_dir, &path, &work_tx);
                }
            }
        }
    }
    drop(watcher);
    stop.store(true, Ordering::SeqCst);
    drop(work_tx);
    let _ = worker.await;
    tracing::info!("stopped");
    Ok(())
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One file at a time: the store applies files in the order they were claimed.
async fn work(gw: Arc<Gateway>, mut rx: mpsc::UnboundedReceiver<PathBuf>, stop: Arc<AtomicBool>) {
    while let Some(spooled) = rx.recv().await {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let gw = gw.clone();
        let path = spooled.clone();
        match tokio::task::spawn_blocking(move || gw.process_spooled(&path)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(file = %spooled.display(), error = %e, "could not process; the file stays in the spool for the next start"),
            Err(e) => tracing::error!(file = %spooled.display(), error = %e, "processing panicked; the file stays in the spool"),
        }
    }
}

/// `orgs/<slug>/inbox/<name>` -> slug, when the name is that of a finished CSV.
fn inbox_file(orgs_dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(orgs_dir).ok()?;
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [slug, "inbox", name] if is_ready_name(name) => Some(slug.to_string()),
        _ => None,
    }
}

fn on_event(orgs_dir: &Path, ev: &notify::Event, pending: &mut HashMap<PathBuf, Instant>, settle: Duration) {
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
        if inbox_file(orgs_dir, path).is_none() {
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

fn claim(gw: &Gateway, orgs_dir: &Path, path: &Path, work: &mpsc::UnboundedSender<PathBuf>) {
    let Some(slug) = inbox_file(orgs_dir, path) else { return };
    if !path.is_file() {
        return;
    }
    match gw.claim(&slug, path) {
        Ok(spooled) => {
            tracing::info!(org = slug, file = %path.display(), "received");
            let _ = work.send(spooled);
        }
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not claim"),
    }
}

fn scan_inboxes(gw: &Gateway, orgs_dir: &Path, work: &mpsc::UnboundedSender<PathBuf>) {
    let Ok(orgs) = std::fs::read_dir(orgs_dir) else { return };
    for org in orgs.flatten() {
        let Ok(files) = std::fs::read_dir(org.path().join("inbox")) else { continue };
        let mut files: Vec<PathBuf> = files.flatten().map(|f| f.path()).collect();
        files.sort();
        for f in files {
            claim(gw, orgs_dir, &f, work);
        }
    }
}
