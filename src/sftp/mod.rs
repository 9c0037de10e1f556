//! The SFTP front door (russh + russh-sftp): the host key, the listener, and what is shared by every
//! connection. A completed upload is handed to the same queue the inbox watcher feeds.

mod fs;
mod lockout;
mod session;
pub mod users;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, HashAlg, PrivateKey};
use russh::server::Server as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use users::{User, UserError, Users};

use crate::pipeline::Gateway;
use lockout::Lockout;
use session::{Sessions, Shared, SshSession};

#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("cannot listen for SFTP on {addr}: {source} (is another gateway running? `serve --listen ADDR` picks another address)")]
    Listen { addr: String, source: std::io::Error },
    #[error("the host key {path}: {reason}")]
    HostKey { path: PathBuf, reason: String },
}

/// The host key at `path`, made (ed25519, mode 0600) on first start and reused afterwards, so clients
/// that saved its fingerprint keep trusting it.
pub fn host_key(path: &Path) -> Result<PrivateKey, SftpError> {
    let err = |reason: String| SftpError::HostKey { path: path.to_path_buf(), reason };
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| err(e.to_string()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its folder: {e}")))?;
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| err(e.to_string()))?;
    // ssh-key writes private keys with mode 0600.
    key.write_openssh_file(path, russh::keys::ssh_key::LineEnding::LF).map_err(|e| err(e.to_string()))?;
    tracing::info!(path = %path.display(), "made a new SSH host key");
    Ok(key)
}

pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// A running SFTP server; dropping the handle does not stop it, `shutdown` does.
pub struct Running {
    pub addr: SocketAddr,
    handle: russh::server::RunningServerHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(self) {
        self.handle.shutdown("the gateway is stopping".into());
        let _ = self.task.await;
    }
}

#[derive(Clone)]
struct Server(Arc<Shared>);

impl russh::server::Server for Server {
    type Handler = SshSession;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> SshSession {
        SshSession::new(self.0.clone(), peer)
    }
}

/// Binds `listen` and serves until shut down. Completed uploads are sent to `submit`.
pub async fn start(
    gw: Arc<Gateway>,
    listen: &str,
    demo: Option<User>,
    submit: mpsc::UnboundedSender<PathBuf>,
) -> Result<Running, SftpError> {
    let cfg = gw.config.sftp.clone();
    let key = host_key(&cfg.host_key)?;
    let fingerprint = fingerprint(&key);
    let config = russh::server::Config {
        // OpenSSH first tries the `none` method; delaying that refusal cost every login a second.
        auth_rejection_time_initial: Some(Duration::ZERO),
        auth_rejection_time: Duration::from_millis(cfg.failed_login_delay_ms),
        // Off by default in russh; it cost about 45% of upload throughput.
        nodelay: true,
        // A 16 MiB receive window instead of russh's 2 MiB: about 1.5x the upload throughput on
        // loopback (bench_sftp), the client no longer waiting for window adjustments.
        window_size: 16 * 1024 * 1024,
        inactivity_timeout: Some(Duration::from_secs(cfg.idle_timeout_secs)),
        keys: vec![key],
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        users: Users::new(gw.data.users()),
        demo,
        lockout: Lockout::new(
            cfg.max_failed_logins,
            Duration::from_secs(cfg.failure_window_secs),
            Duration::from_secs(cfg.lockout_secs),
        ),
        sessions: Sessions::default(),
        submit,
        writing: Default::default(),
        password_checks: tokio::sync::Semaphore::new(4),
        gw,
    });
    let listener = TcpListener::bind(listen).await.map_err(|source| SftpError::Listen { addr: listen.into(), source })?;
    let addr = listener.local_addr().map_err(|source| SftpError::Listen { addr: listen.into(), source })?;
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut server = Server(shared);
        let running = server.run_on_socket(Arc::new(config), &listener);
        let _ = handle_tx.send(running.handle());
        if let Err(e) = running.await {
            tracing::error!(error = %e, "the SFTP listener failed");
        }
    });
    let handle = handle_rx.await.expect("the server task starts");
    println!("gateway: SFTP on {addr}, host key {fingerprint}");
    tracing::info!(%addr, host_key = fingerprint, "listening for SFTP");
    Ok(Running { addr, handle, task })
}
