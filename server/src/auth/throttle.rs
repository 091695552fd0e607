//! Login throttling: failed logins are counted per account name (whether
//! or not the account exists, so the answer never tells) and per client
//! address. Past a few failures the name or address is locked out for a
//! time that doubles with each further failure; from an account's 10th
//! failure the lockout is 30 minutes (PCI DSS 8.3.4: at most 10 attempts,
//! then at least 30 minutes). While locked, logins are refused without
//! checking the password (429, logged). A success clears the account's
//! count, not the address's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an account name may have before it is locked.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures one client address may have (over all names) before it is locked.
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// An account's failures at which the lockout is the longest at once
/// (PCI DSS 8.3.4: not more than 10 attempts).
pub const ACCOUNT_FULL_LOCK_AT: u32 = 10;
/// The first lockout; each further failure doubles it.
const FIRST_LOCK: Duration = Duration::from_secs(30);
/// The longest lockout (PCI DSS 8.3.4: at least 30 minutes).
const MAX_LOCK: Duration = Duration::from_secs(30 * 60);
/// A count is forgotten after this long without failures.
const FORGET: Duration = Duration::from_secs(3600);
/// Most names and addresses tracked; past it, forgotten ones are pruned first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Why a login is not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// The account name has too many recent failures.
    Account(Duration),
    /// The client address has too many recent failures.
    Address(Duration),
}

impl Locked {
    /// How long until a login may be tried again.
    pub fn retry_after(self) -> Duration {
        match self {
            Locked::Account(d) | Locked::Address(d) => d,
        }
    }

    /// Which limit (logged; the client is told only to wait).
    pub fn scope(self) -> &'static str {
        match self {
            Locked::Account(_) => "account",
            Locked::Address(_) => "address",
        }
    }
}

/// The failure counts.
#[derive(Debug, Default)]
pub struct Throttle {
    counts: Mutex<HashMap<Key, Count>>,
}

/// When failures lock a name or an address, and when the lock is the longest.
#[derive(Debug, Clone, Copy)]
struct Limit {
    free: u32,
    full_lock_at: u32,
}

const ACCOUNT: Limit = Limit {
    free: ACCOUNT_FREE_FAILURES,
    full_lock_at: ACCOUNT_FULL_LOCK_AT,
};
// An address is shared by everyone behind one proxy or NAT: it only doubles.
const ADDRESS: Limit = Limit {
    free: ADDRESS_FREE_FAILURES,
    full_lock_at: u32::MAX,
};

fn lock_for(failures: u32, limit: Limit) -> Option<Duration> {
    if failures >= limit.full_lock_at {
        return Some(MAX_LOCK);
    }
    let over = failures.checked_sub(limit.free)?;
    let factor = 1u32.checked_shl(over.min(16)).unwrap_or(u32::MAX);
    Some(FIRST_LOCK.saturating_mul(factor).min(MAX_LOCK))
}

impl Throttle {
    /// Whether `account` from `address` may try to log in now.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), Locked> {
        let Ok(m) = self.counts.lock() else {
            // A poisoned lock fails closed.
            return Err(Locked::Address(MAX_LOCK));
        };
        let now = Instant::now();
        let left = |k: &Key| {
            m.get(k)
                .and_then(|c| c.locked_until)
                .and_then(|t| t.checked_duration_since(now))
                .filter(|d| !d.is_zero())
        };
        if let Some(d) = left(&Key::Account(account.to_string())) {
            return Err(Locked::Account(d));
        }
        if let Some(d) = address.and_then(|a| left(&Key::Address(a))) {
            return Err(Locked::Address(d));
        }
        Ok(())
    }

    /// A failed login of `account` from `address`.
    pub fn failed(&self, account: &str, address: Option<IpAddr>) {
        let Ok(mut m) = self.counts.lock() else {
            return;
        };
        let now = Instant::now();
        if m.len() >= MAX_TRACKED {
            m.retain(|_, c| now.duration_since(c.last) < FORGET);
        }
        let mut bump = |k: Key, limit: Limit| {
            let c = m.entry(k).or_insert(Count {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(c.last) >= FORGET {
                c.failures = 0;
            }
            c.failures = c.failures.saturating_add(1);
            c.last = now;
            c.locked_until = lock_for(c.failures, limit).map(|d| now + d);
        };
        bump(Key::Account(account.to_string()), ACCOUNT);
        if let Some(a) = address {
            bump(Key::Address(a), ADDRESS);
        }
    }

    /// A successful login of `account`: its count starts again.
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut m) = self.counts.lock() {
            m.remove(&Key::Account(account.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_start_after_the_free_failures_and_grow() {
        assert_eq!(lock_for(ACCOUNT_FREE_FAILURES - 1, ACCOUNT), None);
        let first = lock_for(ACCOUNT_FREE_FAILURES, ACCOUNT);
        let second = lock_for(ACCOUNT_FREE_FAILURES + 1, ACCOUNT);
        assert_eq!(first, Some(FIRST_LOCK));
        assert_eq!(second, Some(FIRST_LOCK * 2));
        assert_eq!(lock_for(u32::MAX, ADDRESS), Some(MAX_LOCK));
        assert_eq!(lock_for(ADDRESS_FREE_FAILURES - 1, ADDRESS), None);
    }

    #[test]
    fn an_account_is_locked_30_minutes_from_its_tenth_failure_pci_dss_8_3_4() {
        const { assert!(ACCOUNT_FULL_LOCK_AT <= 10) };
        assert!(MAX_LOCK >= Duration::from_secs(30 * 60));
        for n in 1..ACCOUNT_FULL_LOCK_AT {
            assert!(lock_for(n, ACCOUNT) < Some(MAX_LOCK), "failure {n}");
        }
        for n in [ACCOUNT_FULL_LOCK_AT, ACCOUNT_FULL_LOCK_AT + 1, 1000] {
            assert_eq!(lock_for(n, ACCOUNT), Some(MAX_LOCK), "failure {n}");
        }
        // Through the counter, as logins count them.
        let t = Throttle::default();
        for _ in 0..ACCOUNT_FULL_LOCK_AT {
            t.failed("alice", None);
        }
        let left = t.check("alice", None).unwrap_err().retry_after();
        assert!(left > MAX_LOCK - Duration::from_secs(5), "{left:?}");
    }

    #[test]
    fn names_and_addresses_are_counted_apart() {
        let t = Throttle::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..ACCOUNT_FREE_FAILURES - 1 {
            t.failed("alice", Some(ip));
        }
        assert_eq!(t.check("alice", Some(ip)), Ok(()));
        t.failed("alice", Some(ip));
        assert!(matches!(t.check("alice", None), Err(Locked::Account(_))));
        // Another name from the same address is still free (5 < 20).
        assert_eq!(t.check("bob", Some(ip)), Ok(()));
        for i in 0..ADDRESS_FREE_FAILURES {
            t.failed(&format!("n{i}"), Some(ip));
        }
        assert!(matches!(t.check("bob", Some(ip)), Err(Locked::Address(_))));
        assert_eq!(t.check("bob", Some([10, 0, 0, 2].into())), Ok(()));
    }
}
