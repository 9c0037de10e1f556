//! Failed logins: counted per login and per source address; too many in the window and both are
//! refused for a while, even with the right password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Login(String),
    Address(IpAddr),
}

#[derive(Default)]
struct Record {
    failures: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// What the lockout says about a login attempt before its credentials are looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused without looking at the credentials; says which of the two is locked and until when.
    Locked { what: String, for_secs: u64 },
}

pub struct Lockout {
    max_failures: usize,
    window: Duration,
    lock_for: Duration,
    records: Mutex<HashMap<Subject, Record>>,
}

impl Lockout {
    pub fn new(max_failures: usize, window: Duration, lock_for: Duration) -> Lockout {
        Lockout { max_failures, window, lock_for, records: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, login: &str, addr: Option<IpAddr>, now: Instant) -> Verdict {
        let records = self.records.lock().expect("lockout lock");
        for subject in subjects(login, addr) {
            if let Some(until) = records.get(&subject).and_then(|r| r.locked_until).filter(|u| *u > now) {
                let what = match subject {
                    Subject::Login(l) => format!("login '{l}'"),
                    Subject::Address(a) => format!("address {a}"),
                };
                return Verdict::Locked { what, for_secs: (until - now).as_secs() + 1 };
            }
        }
        Verdict::Allowed
    }

    /// Counts a failure; returns true when it locked the login or the address.
    pub fn failed(&self, login: &str, addr: Option<IpAddr>, now: Instant) -> bool {
        let mut records = self.records.lock().expect("lockout lock");
        let mut locked = false;
        for subject in subjects(login, addr) {
            let r = records.entry(subject).or_default();
            r.failures.retain(|t| now.duration_since(*t) < self.window);
            r.failures.push(now);
            locked |= r.failures.len() >= self.max_failures;
        }
        // Either one's tally locks both: the login guessed from many addresses, the address that
        // guesses many logins.
        if locked {
            for subject in subjects(login, addr) {
                let r = records.entry(subject).or_default();
                r.locked_until = Some(now + self.lock_for);
                r.failures.clear();
            }
        }
        // Forget what is old, so the table cannot grow without bound under a scan.
        records.retain(|_, r| r.locked_until.is_some_and(|u| u > now) || r.failures.iter().any(|t| now.duration_since(*t) < self.window));
        locked
    }

    /// A successful login clears the login's count (not the address's: one good account must not
    /// reset a guesser's tally from the same address).
    pub fn succeeded(&self, login: &str) {
        self.records.lock().expect("lockout lock").remove(&Subject::Login(login.to_string()));
    }
}

fn subjects(login: &str, addr: Option<IpAddr>) -> impl Iterator<Item = Subject> {
    std::iter::once(Subject::Login(login.to_string())).chain(addr.map(Subject::Address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(5, Duration::from_secs(900), Duration::from_secs(900))
    }

    #[test]
    fn five_failures_lock_the_login_and_the_address() {
        let l = lockout();
        let t = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..4 {
            assert!(!l.failed("rota", Some(ip), t + Duration::from_secs(i)));
        }
        assert_eq!(l.check("rota", Some(ip), t + Duration::from_secs(5)), Verdict::Allowed);
        assert!(l.failed("rota", Some(ip), t + Duration::from_secs(5)));
        assert!(matches!(l.check("rota", None, t + Duration::from_secs(6)), Verdict::Locked { .. }));
        assert!(matches!(l.check("someone-else", Some(ip), t + Duration::from_secs(6)), Verdict::Locked { .. }));
        assert_eq!(l.check("someone-else", None, t + Duration::from_secs(6)), Verdict::Allowed);
    }

    #[test]
    fn a_login_guessed_from_many_addresses_locks_the_last_address_too() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..5u8 {
            l.failed("rota", Some(IpAddr::from([10, 0, 0, i])), t);
        }
        assert!(matches!(l.check("other", Some(IpAddr::from([10, 0, 0, 4])), t), Verdict::Locked { .. }));
        assert_eq!(l.check("other", Some(IpAddr::from([10, 0, 0, 3])), t), Verdict::Allowed);
    }

    #[test]
    fn the_lock_expires() {
        let l = lockout();
        let t = Instant::now();
        for _ in 0..5 {
            l.failed("rota", None, t);
        }
        assert!(matches!(l.check("rota", None, t + Duration::from_secs(899)), Verdict::Locked { .. }));
        assert_eq!(l.check("rota", None, t + Duration::from_secs(901)), Verdict::Allowed);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..4 {
            l.failed("rota", None, t + Duration::from_secs(i));
        }
        assert!(!l.failed("rota", None, t + Duration::from_secs(1000)));
        assert_eq!(l.check("rota", None, t + Duration::from_secs(1001)), Verdict::Allowed);
    }

    #[test]
    fn a_good_login_clears_the_logins_count() {
        let l = lockout();
        let t = Instant::now();
        for _ in 0..4 {
            l.failed("rota", None, t);
        }
        l.succeeded("rota");
        assert!(!l.failed("rota", None, t));
    }
}
