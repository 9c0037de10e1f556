//! Failed passwords, counted as OpenSSH's PerSourcePenalties count them (issue 9): per (login,
//! source address) and per source address. Too many and passwords from there are refused for a
//! while, even the right one; keys are never refused by it, and other addresses are not affected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    /// One login tried from one address: the usual guesser, and the usual forgetful user.
    LoginAt(String, IpAddr),
    /// Every login tried from one address: a scan of login names.
    Address(IpAddr),
}

#[derive(Default)]
struct Record {
    failures: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// What the lockout says about a password attempt before the password is looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused without looking at the password; says what is locked and for how long.
    Locked { what: String, for_secs: u64 },
}

pub struct Lockout {
    per_login_address: usize,
    per_address: usize,
    window: Duration,
    lock_for: Duration,
    records: Mutex<HashMap<Subject, Record>>,
}

impl Lockout {
    pub fn new(per_login_address: usize, per_address: usize, window: Duration, lock_for: Duration) -> Lockout {
        Lockout { per_login_address, per_address, window, lock_for, records: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, login: &str, addr: IpAddr, now: Instant) -> Verdict {
        let records = self.records.lock().expect("lockout lock");
        for subject in subjects(login, addr) {
            if let Some(until) = records.get(&subject).and_then(|r| r.locked_until).filter(|u| *u > now) {
                return Verdict::Locked { what: describe(&subject), for_secs: (until - now).as_secs() + 1 };
            }
        }
        Verdict::Allowed
    }

    /// Counts a failed password; returns what it locked, if anything. Each count locks only itself:
    /// a login guessed from one address is not locked at another.
    pub fn failed(&self, login: &str, addr: IpAddr, now: Instant) -> Option<String> {
        let mut records = self.records.lock().expect("lockout lock");
        let mut locked = None;
        for subject in subjects(login, addr) {
            let max = match subject {
                Subject::LoginAt(..) => self.per_login_address,
                Subject::Address(_) => self.per_address,
            };
            let r = records.entry(subject.clone()).or_default();
            r.failures.retain(|t| now.duration_since(*t) < self.window);
            r.failures.push(now);
            if r.failures.len() >= max {
                r.locked_until = Some(now + self.lock_for);
                r.failures.clear();
                locked.get_or_insert_with(|| describe(&subject));
            }
        }
        // Forget what is old, so the table cannot grow without bound under a scan.
        records.retain(|_, r| r.locked_until.is_some_and(|u| u > now) || r.failures.iter().any(|t| now.duration_since(*t) < self.window));
        locked
    }

    /// A successful login clears that login's count from that address (not the address's: one good
    /// account must not reset a guesser's tally from the same address).
    pub fn succeeded(&self, login: &str, addr: IpAddr) {
        self.records.lock().expect("lockout lock").remove(&Subject::LoginAt(login.to_string(), addr));
    }

    /// `gateway user unlock`: the login's counts and locks from every address, and the locks of the
    /// addresses it was locked from, are cleared. Returns how many addresses that was.
    pub fn unlock(&self, login: &str) -> usize {
        let mut records = self.records.lock().expect("lockout lock");
        let addrs: Vec<IpAddr> = records
            .keys()
            .filter_map(|s| match s {
                Subject::LoginAt(l, a) if l == login => Some(*a),
                _ => None,
            })
            .collect();
        for a in &addrs {
            records.remove(&Subject::LoginAt(login.to_string(), *a));
            records.remove(&Subject::Address(*a));
        }
        addrs.len()
    }
}

fn subjects(login: &str, addr: IpAddr) -> [Subject; 2] {
    [Subject::LoginAt(login.to_string(), addr), Subject::Address(addr)]
}

fn describe(s: &Subject) -> String {
    match s {
        Subject::LoginAt(l, a) => format!("login '{l}' from {a}"),
        Subject::Address(a) => format!("address {a}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(5, 20, Duration::from_secs(900), Duration::from_secs(900))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn five_failures_lock_the_login_at_that_address_only() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..4 {
            assert_eq!(l.failed("rota", ip(1), t + Duration::from_secs(i)), None);
        }
        assert_eq!(l.check("rota", ip(1), t + Duration::from_secs(5)), Verdict::Allowed);
        assert_eq!(l.failed("rota", ip(1), t + Duration::from_secs(5)).as_deref(), Some("login 'rota' from 10.0.0.1"));
        assert!(matches!(l.check("rota", ip(1), t + Duration::from_secs(6)), Verdict::Locked { .. }));
        assert_eq!(l.check("rota", ip(2), t + Duration::from_secs(6)), Verdict::Allowed, "another address");
        assert_eq!(l.check("someone-else", ip(1), t + Duration::from_secs(6)), Verdict::Allowed, "another login");
    }

    #[test]
    fn an_address_trying_six_unknown_logins_is_not_locked_out_of_a_valid_one() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..6 {
            l.failed(&format!("guess{i}"), ip(1), t);
        }
        assert_eq!(l.check("rota", ip(1), t), Verdict::Allowed);
    }

    #[test]
    fn an_address_scanning_many_logins_is_locked_at_its_own_limit() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..19 {
            assert_eq!(l.failed(&format!("guess{i}"), ip(1), t), None);
        }
        assert_eq!(l.failed("guess19", ip(1), t).as_deref(), Some("address 10.0.0.1"));
        assert!(matches!(l.check("rota", ip(1), t), Verdict::Locked { .. }));
        assert_eq!(l.check("rota", ip(2), t), Verdict::Allowed);
    }

    #[test]
    fn the_lock_expires() {
        let l = lockout();
        let t = Instant::now();
        for _ in 0..5 {
            l.failed("rota", ip(1), t);
        }
        assert!(matches!(l.check("rota", ip(1), t + Duration::from_secs(899)), Verdict::Locked { .. }));
        assert_eq!(l.check("rota", ip(1), t + Duration::from_secs(901)), Verdict::Allowed);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..4 {
            l.failed("rota", ip(1), t + Duration::from_secs(i));
        }
        assert_eq!(l.failed("rota", ip(1), t + Duration::from_secs(1000)), None);
        assert_eq!(l.check("rota", ip(1), t + Duration::from_secs(1001)), Verdict::Allowed);
    }

    #[test]
    fn a_good_login_clears_the_logins_count_from_that_address() {
        let l = lockout();
        let t = Instant::now();
        for _ in 0..4 {
            l.failed("rota", ip(1), t);
        }
        l.succeeded("rota", ip(1));
        assert_eq!(l.failed("rota", ip(1), t), None);
    }

    #[test]
    fn unlock_clears_the_login_everywhere_and_the_addresses_it_was_locked_from() {
        let l = lockout();
        let t = Instant::now();
        for i in 0..20 {
            l.failed(if i < 5 { "rota" } else { "other" }, ip(1), t);
        }
        for _ in 0..5 {
            l.failed("rota", ip(2), t);
        }
        assert_eq!(l.unlock("rota"), 2);
        assert_eq!(l.check("rota", ip(1), t), Verdict::Allowed);
        assert_eq!(l.check("rota", ip(2), t), Verdict::Allowed);
        assert_eq!(l.check("third", ip(1), t), Verdict::Allowed, "the address lock went with it");
    }
}
