//! The SFTP front door (russh + russh-sftp): the host key, the listener, and what is shared by every
//! connection. A completed upload is handed to the same queue the inbox watcher feeds.

mod fs;
mod lockout;
mod session;
mod startups;
pub mod users;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, HashAlg, PrivateKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

pub use users::{User, UserError, Users};

use crate::pipeline::Gateway;
use lockout::Lockout;
use session::{Sessions, Shared, SshSession};
use startups::{Cut, Cuttable, LoginState, Pending, Startups};

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
    /// The host key's SHA-256 fingerprint, as `ssh-keygen -lf` shows it.
    pub host_key: String,
    stop: broadcast::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(self) {
        let _ = self.stop.send("the gateway is stopping".into());
        let _ = self.task.await;
    }

    /// Completes only if the listener ends without being asked to (a panic in its loop): `serve`
    /// then fails, so a supervisor restarts the process (issue 9).
    pub async fn ended(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// `sftp.host_key` as a path: a relative one is under the data folder, so `serve` started from
/// another working directory finds the same key (issue 9).
pub fn host_key_path(gw: &Gateway) -> PathBuf {
    gw.data.root().join(&gw.config.sftp.host_key)
}

/// The key at the new default place, or one copied there from where earlier versions kept it by
/// default (`keys/` under the working directory), so clients that saved its fingerprint keep trusting
/// the gateway after an upgrade.
fn adopt_old_default_key(gw: &Gateway, path: &Path) {
    let old = Path::new(crate::config::DEFAULT_HOST_KEY);
    if gw.config.sftp.host_key != old || path.exists() || !old.is_file() || old.canonicalize().ok() == path.canonicalize().ok() {
        return;
    }
    let copied = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|_| {
        use std::os::unix::fs::OpenOptionsExt;
        let bytes = std::fs::read(old)?;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        std::io::Write::write_all(&mut f, &bytes)
    });
    match copied {
        Ok(()) => tracing::info!(from = %old.display(), to = %path.display(), "host key copied from its old default place"),
        Err(e) => tracing::warn!(from = %old.display(), to = %path.display(), error = %e, "could not copy the host key from its old default place"),
    }
}

/// Binds `listen` and serves until shut down. Completed uploads are sent to `submit`.
pub async fn start(
    gw: Arc<Gateway>,
    listen: &str,
    demo: Option<User>,
    submit: crate::queue::Queue,
) -> Result<Running, SftpError> {
    let cfg = gw.config.sftp.clone();
    // The council's folder exists before its first login (issue 10); the watcher makes it too.
    if let Err(e) = gw.data.ensure_council() {
        tracing::warn!(error = %e, "cannot create the council's folder yet");
    }
    let key_path = host_key_path(&gw);
    adopt_old_default_key(&gw, &key_path);
    let key = host_key(&key_path)?;
    let fingerprint = fingerprint(&key);
    let config = Arc::new(russh::server::Config {
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
        // Only the methods a login can have: russh offers hostbased and keyboard-interactive too,
        // which OpenSSH then listed ("Permission denied (password,publickey,hostbased,...)") and
        // a client could try in vain (since 2026-12-03).
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey, russh::MethodKind::Password][..]),
        ..Default::default()
    });
    let shared = Arc::new(Shared {
        users: Users::new(gw.data.users()),
        demo,
        lockout: Lockout::new(
            cfg.max_failed_logins,
            cfg.max_failed_logins_per_address,
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
    let (stop, _) = broadcast::channel(1);
    let startups = Startups::new(cfg.max_startups_per_source, cfg.max_startups);
    let grace = Duration::from_secs(cfg.login_grace_secs);
    let task = tokio::spawn(accept_loop(listener, config, shared, startups, grace, stop.clone()));
    tracing::info!(%addr, host_key = fingerprint, "listening for SFTP");
    Ok(Running { addr, host_key: fingerprint, stop, task })
}

/// After a failed `accept()` (EMFILE, ENFILE, ENOBUFS...) the loop waits this long and goes on.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until told to stop. Our own loop rather than russh's `run_on_socket`, which
/// returns at the first failed `accept()`: out of descriptors, the listener ended for good (issue 9).
async fn accept_loop(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    startups: Arc<Startups>,
    grace: Duration,
    stop: broadcast::Sender<String>,
) {
    let mut stopped = stop.subscribe();
    let mut refused = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            _ = stopped.recv() => return,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an SFTP connection; trying again shortly");
                tokio::select! {
                    _ = stopped.recv() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // Over the caps: closed at once, before anything is read or spent on it.
        let pending = match startups.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                refused.refused(peer.ip(), &why);
                drop(socket);
                continue;
            }
        };
        tokio::spawn(connection(config.clone(), shared.clone(), socket, peer, pending, grace, stop.subscribe()));
    }
}

/// One connection, from accept to its end: the SSH session runs in russh's task; this one cuts it
/// at the login grace time unless it has logged in, and ends it when the gateway stops.
async fn connection(
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
    pending: Pending,
    grace: Duration,
    mut stop: broadcast::Receiver<String>,
) {
    let deadline = tokio::time::Instant::now() + grace;
    if config.nodelay {
        let _ = socket.set_nodelay(true);
    }
    let login = LoginState::new(pending);
    let cut = Arc::new(Cut::default());
    let handler = SshSession::new(shared, Some(peer), login.clone());
    let started = tokio::time::timeout_at(deadline, russh::server::run_stream(config, Cuttable::new(socket, cut.clone()), handler));
    let session = match started.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(addr = %peer.ip(), error = %e, "SSH connection setup failed");
            return;
        }
        Err(_) => {
            tracing::info!(addr = %peer.ip(), secs = grace.as_secs(), "connection closed: not logged in within the login grace time");
            return;
        }
    };
    let handle = session.handle();
    let grace_over = async {
        tokio::time::sleep_until(deadline).await;
        if login.is_authenticated() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(session);
    tokio::select! {
        reason = stop.recv() => {
            let reason = reason.unwrap_or_default();
            let _ = handle.disconnect(russh::Disconnect::ByApplication, reason, String::new()).await;
        }
        _ = grace_over => {
            tracing::info!(addr = %peer.ip(), secs = grace.as_secs(), "connection closed: not logged in within the login grace time");
            login.release();
            cut.cut();
            let _ = session.await;
        }
        result = &mut session => {
            if let Err(e) = result {
                tracing::debug!(addr = %peer.ip(), error = %e, "SSH connection ended with an error");
            }
        }
    }
}

/// Refused connections are logged at most once a second, with how many there were: a flood must
/// not become a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    since: Option<std::time::Instant>,
    count: u64,
}

impl RefusalLog {
    fn refused(&mut self, ip: std::net::IpAddr, why: &str) {
        self.count += 1;
        let now = std::time::Instant::now();
        if self.since.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            tracing::warn!(addr = %ip, refused = self.count, reason = why, "connections closed before login: over the limit on connections not logged in");
            self.since = Some(now);
            self.count = 0;
        }
    }
}
