//! One SSH connection: who logs in (keys, passwords, the lockout, session limits), then the `sftp`
//! subsystem on that login's own folders. Nothing else: no shell, no exec, no forwarding.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::keys::Algorithm;
use russh::{Channel, ChannelId, MethodKind, MethodSet};

use super::fs::{OrgFs, Who, Writing};
use super::lockout::{Lockout, Verdict};
use super::startups::LoginState;
use super::users::{Credential, User, Users};
use crate::data_dir::Owner;
use crate::pipeline::Gateway;

/// What every connection shares.
pub struct Shared {
    pub gw: Arc<Gateway>,
    pub users: Users,
    /// The demo login, only with `serve --demo`.
    pub demo: Option<User>,
    pub lockout: Lockout,
    pub sessions: Sessions,
    /// Where finished uploads go, in order.
    pub submit: crate::queue::Queue,
    /// Names being uploaded, per organisation, across sessions.
    pub writing: Writing,
    /// Password checks at once: argon2 takes ~19 MiB and tens of milliseconds each, so a burst of
    /// logins must queue rather than exhaust memory.
    pub password_checks: tokio::sync::Semaphore,
}

/// Open sessions, in all and per login, for the limits.
#[derive(Default)]
pub struct Sessions {
    total: AtomicUsize,
    per_login: Mutex<HashMap<String, usize>>,
}

impl Sessions {
    fn enter(&self, login: &str, max_total: usize, max_per_login: usize) -> Result<(), String> {
        let mut per = self.per_login.lock().expect("sessions lock");
        let mine = per.get(login).copied().unwrap_or(0);
        if mine >= max_per_login {
            return Err(format!("login '{login}' already has {mine} sessions open (limit {max_per_login} per login); close one and try again"));
        }
        let total = self.total.load(Ordering::SeqCst);
        if total >= max_total {
            return Err(format!("the gateway has {total} sessions open (limit {max_total} in all); try again shortly"));
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        *per.entry(login.to_string()).or_default() += 1;
        Ok(())
    }

    fn leave(&self, login: &str) {
        let mut per = self.per_login.lock().expect("sessions lock");
        if let Some(n) = per.get_mut(login) {
            *n -= 1;
            if *n == 0 {
                per.remove(login);
            }
            self.total.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

pub struct SshSession {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    /// Who logged in: set once, when the login is accepted.
    who: Option<Who>,
    /// Set when the login succeeded but a session limit refused it; said on the channel's stderr.
    refusal: Option<String>,
    entered: bool,
    /// One SFTP subsystem per connection, so the session limits are limits on open file systems.
    sftp_started: bool,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Told when the login succeeds, which ends the login grace time.
    login: Arc<LoginState>,
}

impl SshSession {
    pub fn new(shared: Arc<Shared>, peer: Option<SocketAddr>, login: Arc<LoginState>) -> SshSession {
        SshSession { shared, peer, who: None, refusal: None, entered: false, sftp_started: false, channels: HashMap::new(), login }
    }

    fn addr(&self) -> String {
        self.peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "unknown".into())
    }

    fn lookup(&self, login: &str) -> Option<User> {
        if let Some(demo) = self.shared.demo.as_ref().filter(|d| d.login == login) {
            return Some(demo.clone());
        }
        match self.shared.users.get(login) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(user = login, error = %e, "cannot read the login");
                None
            }
        }
    }

    fn ip(&self) -> IpAddr {
        self.peer.map(|p| p.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Whether passwords for `login` from this address are refused for now. Keys never ask: a
    /// password guesser must not be able to keep a key-only rostering system out (issue 9).
    fn locked(&self, login: &str) -> bool {
        // `gateway user unlock` leaves a stamp in the users folder: the running server reads it here.
        if self.shared.users.take_unlock(login) {
            let cleared = self.shared.lockout.unlock(login);
            tracing::info!(user = login, addresses = cleared, "login unlocked by `gateway user unlock`");
        }
        match self.shared.lockout.check(login, self.ip(), Instant::now()) {
            Verdict::Allowed => false,
            Verdict::Locked { what, for_secs } => {
                tracing::warn!(user = login, addr = self.addr(), locked = what, for_secs, "login refused: locked after repeated failures");
                true
            }
        }
    }

    fn accept(&mut self, user: User, method: &str, credential: Credential) -> Auth {
        let cfg = &self.shared.gw.config.sftp;
        let org = match &user.org {
            Owner::Org(slug) => self.shared.gw.store.org_by_slug(slug).ok().flatten().map(|o| o.name).unwrap_or_else(|| slug.to_string()),
            Owner::Council => "the council".to_string(),
        };
        self.shared.lockout.succeeded(&user.login, self.ip());
        self.login.authenticated();
        let who = Who { owner: user.org.clone(), org_name: org.clone(), login: user.login.clone(), addr: self.addr(), credential };
        match self.shared.sessions.enter(&user.login, cfg.max_sessions, cfg.max_sessions_per_login) {
            Ok(()) => {
                self.entered = true;
                tracing::info!(org, user = user.login, addr = self.addr(), method, "login");
            }
            Err(why) => {
                tracing::warn!(org, user = user.login, addr = self.addr(), reason = why, "session refused");
                self.refusal = Some(why);
            }
        }
        self.who = Some(who);
        Auth::Accept
    }

    fn refuse(&self, login: &str, method: &str, reason: &str, counts: bool) -> Auth {
        let org = self.lookup(login).map(|u| u.org.to_string());
        tracing::warn!(org, user = login, addr = self.addr(), method, reason, "login refused");
        if counts {
            if let Some(what) = self.shared.lockout.failed(login, self.ip(), Instant::now()) {
                let mins = self.shared.gw.config.sftp.lockout_secs / 60;
                tracing::warn!(user = login, addr = self.addr(), minutes = mins, locked = what, "too many failed passwords: passwords refused for a while");
            }
        }
        Auth::Reject { proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..])), partial_success: false }
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if let (true, Some(u)) = (self.entered, &self.who) {
            self.shared.sessions.leave(&u.login);
            tracing::info!(user = u.login, addr = self.addr(), "logout");
        }
    }
}

impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // SHA-1 RSA signatures are refused, as OpenSSH does since 8.8.
        let sha1 = matches!(offer.public_key.algorithm(), Algorithm::Rsa { .. }) && offer.algorithm.as_str() == "ssh-rsa";
        if sha1 || !self.lookup(user).is_some_and(|u| u.has_key(offer.public_key)) {
            return Ok(Auth::reject());
        }
        Ok(Auth::Accept)
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        match self.lookup(user) {
            Some(u) if u.has_key(key.public_key) => Ok(self.accept(u, "publickey", Credential::Key(key.public_key.clone()))),
            _ => Ok(self.refuse(user, "publickey", "unknown key", false)),
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.locked(user) {
            return Ok(self.refuse(user, "password", "locked", false));
        }
        let found = self.lookup(user);
        // Hashing takes tens of milliseconds: off the session's task.
        let password = password.to_string();
        let verified = match found.clone() {
            Some(u) if u.password_hash.is_some() => {
                let _permit = self.shared.password_checks.acquire().await;
                tokio::task::spawn_blocking(move || u.password_matches(&password)).await.unwrap_or(false)
            }
            _ => false,
        };
        // Looked at again: parallel attempts may have locked the login while this one was checked.
        if self.locked(user) {
            return Ok(self.refuse(user, "password", "locked", false));
        }
        match (found, verified) {
            (Some(u), true) => {
                let hash = u.password_hash.clone().unwrap_or_default();
                Ok(self.accept(u, "password", Credential::Password(hash)))
            }
            (None, _) => Ok(self.refuse(user, "password", "unknown login", true)),
            (Some(_), false) => Ok(self.refuse(user, "password", "wrong password", true)),
        }
    }

    async fn channel_open_session(&mut self, channel: Channel<Msg>, reply: ChannelOpenHandle, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(&mut self, channel_id: ChannelId, name: &str, session: &mut Session) -> Result<(), Self::Error> {
        let Some(channel) = self.channels.remove(&channel_id) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        if let Some(why) = &self.refusal {
            // Accepted, told why on stderr, then ended: a client prints stderr only for a channel it has.
            session.channel_success(channel_id)?;
            session.extended_data(channel_id, 1, format!("gateway: {why}\r\n").into_bytes())?;
            session.exit_status_request(channel_id, 1)?;
            session.eof(channel_id)?;
            session.close(channel_id)?;
            return Ok(());
        }
        if name == "sftp" && self.sftp_started {
            session.extended_data(channel_id, 1, b"gateway: one SFTP session per connection; open another connection\r\n".to_vec())?;
            session.channel_failure(channel_id)?;
            return Ok(());
        }
        match (name, self.who.clone()) {
            ("sftp", Some(who)) => {
                self.sftp_started = true;
                session.channel_success(channel_id)?;
                let demo = self.shared.demo.as_ref().is_some_and(|d| d.login == who.login);
                let logins = (!demo).then(|| self.shared.users.clone());
                let fs = OrgFs::new(self.shared.gw.clone(), who, self.shared.submit.clone(), self.shared.writing.clone(), logins);
                let cfg = russh_sftp::server::Config { max_client_packet_len: super::fs::MAX_PACKET };
                russh_sftp::server::run_with_config(channel.into_stream(), fs, cfg).await;
            }
            _ => {
                session.extended_data(channel_id, 1, b"gateway: only the sftp subsystem is offered\r\n".to_vec())?;
                session.channel_failure(channel_id)?;
            }
        }
        Ok(())
    }

    /// No shell and no commands (rclone asks for `md5sum`, legacy `scp -O` for `scp`): refused, so
    /// clients fall back to plain SFTP.
    async fn exec_request(&mut self, channel: ChannelId, _data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.extended_data(channel, 1, b"gateway: this is an SFTP-only service; use sftp, scp or an SFTP client\r\n".to_vec())?;
        session.channel_failure(channel)?;
        Ok(())
    }

    /// OpenSSH `scp` (SFTP mode) exits 1 unless the server sends an exit status when the channel ends.
    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}
