//! Connections that have not logged in yet (issue 9): capped per source address and in all, as
//! OpenSSH's PerSourceMaxStartups and MaxStartups, and cut at the login grace time whatever the
//! client sends meanwhile (russh's inactivity timeout is reset by every SSH_MSG_IGNORE).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Unauthenticated connections, per source address and in all.
#[derive(Debug)]
pub struct Startups {
    per_source: usize,
    total: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per: HashMap<IpAddr, usize>,
}

impl Startups {
    pub fn new(per_source: usize, total: usize) -> Arc<Startups> {
        Arc::new(Startups { per_source, total, counts: Mutex::new(Counts::default()) })
    }

    /// A place for a new connection from `ip`, or why there is none. The place is given back when
    /// the connection logs in or ends.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Pending, String> {
        let mut c = self.counts.lock().expect("startups lock");
        let mine = c.per.get(&ip).copied().unwrap_or(0);
        if mine >= self.per_source {
            return Err(format!("{mine} connections from this address not logged in yet (limit {} per address)", self.per_source));
        }
        if c.total >= self.total {
            return Err(format!("{} connections not logged in yet (limit {} in all)", c.total, self.total));
        }
        c.total += 1;
        *c.per.entry(ip).or_default() += 1;
        Ok(Pending { startups: self.clone(), ip })
    }

    fn release(&self, ip: IpAddr) {
        let mut c = self.counts.lock().expect("startups lock");
        c.total -= 1;
        if let Some(n) = c.per.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.per.remove(&ip);
            }
        }
    }
}

/// One connection's place among the unauthenticated ones; dropping it gives the place back.
#[derive(Debug)]
pub struct Pending {
    startups: Arc<Startups>,
    ip: IpAddr,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.startups.release(self.ip);
    }
}

/// Shared by a connection's task (which enforces the grace time) and its SSH handler (which
/// knows when the login succeeded).
pub struct LoginState {
    authenticated: AtomicBool,
    pending: Mutex<Option<Pending>>,
}

impl LoginState {
    pub fn new(pending: Pending) -> Arc<LoginState> {
        Arc::new(LoginState { authenticated: AtomicBool::new(false), pending: Mutex::new(Some(pending)) })
    }

    /// The login succeeded: the grace time no longer applies and the place is given back.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::SeqCst);
        self.pending.lock().expect("login state lock").take();
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::SeqCst)
    }

    /// Gives the place back at once (the connection is being cut).
    pub fn release(&self) {
        self.pending.lock().expect("login state lock").take();
    }
}

/// A switch that makes a [`Cuttable`] stream fail from now on, waking whoever waits on it.
#[derive(Default)]
pub struct Cut {
    cut: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Cut {
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for w in self.wakers.lock().expect("cut lock").drain(..) {
            w.wake();
        }
    }

    /// Err once cut; otherwise remembers who to wake.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "login grace time passed"));
        }
        let mut wakers = self.wakers.lock().expect("cut lock");
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            // Only the session's reader and writer wait here; keep the list from growing.
            if wakers.len() >= 4 {
                wakers.remove(0);
            }
            wakers.push(cx.waker().clone());
        }
        drop(wakers);
        // Cut between the first look and registering: seen now.
        if self.cut.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "login grace time passed"));
        }
        Ok(())
    }
}

/// The connection's socket as russh sees it: once cut, every read and write fails, which ends the
/// session's task wherever it waits (russh's own task cannot be aborted from outside).
pub struct Cuttable<S> {
    inner: S,
    cut: Arc<Cut>,
}

impl<S> Cuttable<S> {
    pub fn new(inner: S, cut: Arc<Cut>) -> Cuttable<S> {
        Cuttable { inner, cut }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_at_its_cap_does_not_keep_another_address_out() {
        let s = Startups::new(2, 3);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let _a1 = s.admit(a).unwrap();
        let _a2 = s.admit(a).unwrap();
        assert!(s.admit(a).unwrap_err().contains("limit 2 per address"));
        let b1 = s.admit(b).unwrap();
        assert!(s.admit(b).unwrap_err().contains("limit 3 in all"));
        drop(b1);
        assert!(s.admit(b).is_ok());
    }

    #[test]
    fn a_login_gives_its_place_back() {
        let s = Startups::new(1, 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let state = LoginState::new(s.admit(ip).unwrap());
        assert!(s.admit(ip).is_err());
        state.authenticated();
        assert!(state.is_authenticated());
        assert!(s.admit(ip).is_ok());
    }
}
