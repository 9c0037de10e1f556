//! The engine's work queue as the server's front doors feed it: every file handed on in the order it
//! was finished (an SFTP CLOSE or rename answered, a command's import, a file the watcher claimed),
//! each once it is on disk.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::data_dir::SpooledFile;

/// Hands files to the engine's queue one after another, in the order they were given, an upload
/// once its sync is done: the syncs run side by side, the hand-offs in order. Since 2026-12-03;
/// each upload's sync handed its file on as it finished, and commands and the watcher went straight
/// to the queue, so files sent one after another could be applied out of order: an older version of
/// a visit (or of a CPLI) overwrote a newer one.
#[derive(Clone)]
pub struct Queue(mpsc::UnboundedSender<(SpooledFile, Option<JoinHandle<()>>)>);

impl Queue {
    /// Forwards to `engine` (the worker's channel) on a task of its own.
    pub fn start(engine: mpsc::UnboundedSender<SpooledFile>) -> Queue {
        let (tx, mut rx) = mpsc::unbounded_channel::<(SpooledFile, Option<JoinHandle<()>>)>();
        tokio::spawn(async move {
            while let Some((spooled, synced)) = rx.recv().await {
                if let Some(synced) = synced {
                    let _ = synced.await;
                }
                if engine.send(spooled).is_err() {
                    break;
                }
            }
        });
        Queue(tx)
    }

    /// `spooled` goes to the engine after every file given before it, and once `synced` is done.
    /// `false` when the server is stopping (the file is in the spool for the next start).
    pub fn send(&self, spooled: SpooledFile, synced: Option<JoinHandle<()>>) -> bool {
        self.0.send((spooled, synced)).is_ok()
    }
}
