//! Standby request readers: who reads /dev/fuse while a request waits.
//!
//! A request with no room in the descriptor budget (`budget.rs`) waits for
//! the kernel to forget the entries the evictor asked it to drop. The
//! kernel delivers those `FORGET`s only to a thread that reads the device,
//! and the file server normally has one reader (`server.rs` says why). So a
//! waiting reader would wait for messages only it could read, until its
//! deadline, and then refuse with `ENFILE` although room was on the way.
//!
//! The transport therefore keeps [`STANDBY_READERS`] threads parked on
//! this gate. The `n`th of them reads requests while more than `n` requests
//! wait: the first takes over when the regular reader waits, the second
//! when the first waits too. Parked, they cost nothing per request (they do
//! not poll the device, so a request wakes only the regular reader).

use std::sync::{Condvar, Mutex, PoisonError};

/// Readers parked until requests wait for room.
pub(super) const STANDBY_READERS: usize = 2;

/// How many requests wait, and the standby readers' wake-up.
#[derive(Debug, Default)]
pub(crate) struct Standby {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    waiting: usize,
    stopped: bool,
}

/// A request waiting for room, from [`Standby::waiting`] until dropped.
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a Standby);

impl Standby {
    /// A request starts waiting (until the returned guard is dropped):
    /// the next parked reader takes over the device.
    pub fn waiting(&self) -> Waiting<'_> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.waiting += 1;
        self.changed.notify_all();
        Waiting(self)
    }

    /// For the standby reader of rank `rank` (0 first): block until more
    /// than `rank` requests wait (true: read one request, then ask again)
    /// or the server stops (false).
    pub fn wanted(&self, rank: usize) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if s.stopped {
                return false;
            }
            if s.waiting > rank {
                return true;
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Release every standby reader for good.
    pub fn stop(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.stopped = true;
        self.changed.notify_all();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.waiting = s.waiting.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_rank_reads_only_while_more_requests_wait() {
        let gate = Arc::new(Standby::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let second = std::thread::spawn(move || {
            while g.wanted(1) {
                tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        let first = gate.waiting();
        // One request waits: the second standby reader stays parked.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        let also = gate.waiting();
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        drop((first, also));
        gate.stop();
        second.join().unwrap();
        assert!(!gate.wanted(0));
    }
}
