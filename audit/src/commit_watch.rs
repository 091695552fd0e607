//! A notification of the log's committed size, for readers in the same
//! process (the SIEM feed hosted by `stele serve`): they wake when an entry
//! is committed instead of polling the database for its size.
//!
//! Plain `Mutex` + `Condvar` rather than an async channel: its waiters are
//! the feed's own threads, outside any async runtime.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    size: Mutex<u64>,
    changed: Condvar,
}

/// The size of the log as of its newest commit (entries and their signed
/// checkpoint visible to readers). Clones share one value.
#[derive(Debug, Clone, Default)]
pub struct CommitWatch(Arc<Inner>);

impl CommitWatch {
    /// A watch starting at `size`.
    pub(crate) fn new(size: u64) -> Self {
        let w = Self::default();
        w.publish(size);
        w
    }

    /// The sequencer committed the log up to `size`: wake every waiter.
    pub(crate) fn publish(&self, size: u64) {
        let mut s = self.0.size.lock().unwrap_or_else(PoisonError::into_inner);
        if size > *s {
            *s = size;
            self.0.changed.notify_all();
        }
    }

    /// The committed size now.
    pub fn size(&self) -> u64 {
        *self.0.size.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until the committed size is above `seen`, or `timeout` passed;
    /// the committed size then. Returns at once when it already is (so a
    /// commit between reading a size and waiting is never missed).
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut s = self.0.size.lock().unwrap_or_else(PoisonError::into_inner);
        while *s <= seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = self
                .0
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_waiter_wakes_on_a_commit_past_what_it_saw() {
        let w = CommitWatch::new(3);
        assert_eq!(w.wait_past(5, Duration::from_millis(1)), 3);
        // Already past: no wait at all.
        assert_eq!(w.wait_past(2, Duration::from_secs(3600)), 3);
        let publisher = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            publisher.publish(2); // not past: ignored
            publisher.publish(9);
        });
        // An hour's timeout: only the commit can end this wait.
        assert_eq!(w.wait_past(3, Duration::from_secs(3600)), 9);
        t.join().unwrap();
        assert_eq!(w.size(), 9);
    }
}
