//! The file server's descriptor budget.
//!
//! The passthrough holds an `O_PATH` descriptor for every inode the kernel
//! remembers, and one per open handle that is not pooled. The kernel keeps
//! inodes it has looked up for as long as memory allows, so a program that
//! stats every file of a large workspace would, unchecked, take a
//! descriptor per file until the process runs out — and with it every
//! other part of stele (the log, pipes to the next command).
//!
//! So:
//! * the limit is raised once (`raise_nofile_limit`: to the hard limit,
//!   and with `CAP_SYS_RESOURCE` the hard limit itself up to the kernel's
//!   `nr_open`, at most 2^20);
//! * the layer may name at most `max` inodes plus open handles together,
//!   leaving a reserve of descriptors ([`reserve_for`]) to the rest of the
//!   process; a lookup, create or open beyond it is refused with `ENFILE`
//!   (and reported) — once the evictor has had a round (below) to make
//!   room, while a standby reader takes the device (`standby.rs`) so the
//!   FORGETs that make the room reach the layer; a lookup or create in
//!   the very directory the evictor is stuck dropping an entry of goes
//!   ahead instead (`evict.rs`: the kernel holds that directory's lock
//!   for it, so the evictor waits for its reply); entries the kernel was
//!   asked to drop count as leaving (at most
//!   [`MAX_BORROWED`] of them, never more than a quarter of the budget:
//!   borrowed from the reserve, which is at least twice that, until their
//!   FORGETs are handled);
//! * above a high-water mark (`max` less a quarter of it, at least 2,048
//!   entries below it, but never below half of it) the /dev/fuse
//!   transport asks the kernel to drop the least recently used entries
//!   (`FUSE_NOTIFY_INVAL_ENTRY`, from a thread of its own: never from a
//!   request handler, where the kernel may hold the directory's lock); the
//!   kernel then forgets those inodes (`FORGET`) and their descriptors
//!   close, down to half the high-water mark. Entries with open handles are
//!   kept.
//!   The micro-VM's virtio-fs
//!   has no notification queue: its guest forgets under its own memory
//!   pressure, and the hard limit applies.
//!
//! Evicted entries cost a new `LOOKUP` when used again; decisions about
//! them are not asked again by the runtime's per-session lookup cache.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::evict::InvalInFlight;
use super::standby::Standby;

/// Descriptors kept for everything that is not the layer's, at least.
const MIN_RESERVE: usize = 1024;

/// Entries below the maximum where eviction starts, at least.
const MIN_SLACK: usize = 2048;

/// Most descriptors of entries on their way out (FORGET pending) that may be
/// borrowed from the reserve: half of [`MIN_RESERVE`], so the rest of the
/// process keeps at least as many whatever the limit.
const MAX_BORROWED: usize = MIN_RESERVE / 2;

/// How often a request waiting for room looks again without news.
const ROOM_POLL: Duration = Duration::from_millis(10);

/// Most descriptors asked for when raising the limit.
const NOFILE_CEILING: u64 = 1 << 20;

/// Descriptors left to the rest of the process under a limit of `limit`:
/// an eighth of it, and at least [`MIN_RESERVE`] — or half of it when the
/// limit is so low (stele started under a tight `ulimit -n`, without the
/// privilege to raise it) that [`MIN_RESERVE`] would leave the layer nothing.
pub(crate) fn reserve_for(limit: usize) -> usize {
    (limit / 8).max(MIN_RESERVE.min(limit / 2))
}

/// The soft `RLIMIT_NOFILE`, after raising it as far as allowed: the soft
/// limit to the hard one, and, with the privilege to (root), the hard limit
/// to the kernel's `nr_open` (at most 2^20). Never lowers anything.
pub(crate) fn raise_nofile_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(lim.rlim_max)
        .min(NOFILE_CEILING);
    if nr_open > lim.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: nr_open,
            rlim_max: nr_open,
        };
        // SAFETY: setrlimit reads the struct we pass. Raising the hard
        // limit needs CAP_SYS_RESOURCE; without it this fails harmlessly.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            return usize::try_from(nr_open).unwrap_or(usize::MAX);
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above; raising the soft limit up to the hard limit
        // needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// How many descriptors the layer may hold, and the eviction signal.
#[derive(Debug)]
pub(crate) struct Budget {
    max: AtomicUsize,
    /// Set when the evictor should look; with `wake`.
    pending: Mutex<bool>,
    wake: Condvar,
    stopped: AtomicBool,
    /// Whether a transport runs an evictor for this layer.
    evictor: AtomicBool,
    /// Eviction rounds finished; with `done`.
    rounds: Mutex<u64>,
    done: Condvar,
    /// The evictor's request to the kernel in flight (`evict.rs`).
    inval: InvalInFlight,
    /// Readers that take over the device while a request waits for room
    /// (`standby.rs`): the FORGETs that make the room arrive through it.
    standby: Standby,
}

impl Budget {
    /// The budget under the process's (raised) descriptor limit.
    pub fn new() -> Self {
        let limit = raise_nofile_limit();
        Budget::with_max(limit.saturating_sub(reserve_for(limit)))
    }

    /// A budget of `max` inodes and handles together.
    pub fn with_max(max: usize) -> Self {
        Budget {
            max: AtomicUsize::new(max.max(16)),
            pending: Mutex::new(false),
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
            evictor: AtomicBool::new(false),
            rounds: Mutex::new(0),
            done: Condvar::new(),
            inval: InvalInFlight::default(),
            standby: Standby::default(),
        }
    }

    /// Inodes and handles the layer may hold together.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Change the maximum (before serving).
    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(16), Ordering::Relaxed);
    }

    /// Above this many the least recently used entries are invalidated:
    /// the maximum less a slack of a quarter of it and at least
    /// [`MIN_SLACK`] (but never below half of it) — the room a fast program
    /// has while the kernel processes the invalidations and sends its
    /// FORGETs. Evicting costs the evicted entries a new lookup when they
    /// are used again, so it starts only this close to the limit.
    pub fn high_water(&self) -> usize {
        let max = self.max();
        let slack = (max / 4).max(MIN_SLACK);
        max.saturating_sub(slack).max(max / 2)
    }

    /// Whether `held` descriptors, of which `leaving` belong to entries
    /// the kernel was asked to drop (their FORGETs are on the way: a
    /// reader handles them between requests, or a standby reader while a
    /// request waits), leave room for one more. At most a quarter of the
    /// maximum, and at most [`MAX_BORROWED`], is counted as leaving: those
    /// are borrowed from the reserve.
    pub fn has_room(&self, held: usize, leaving: usize) -> bool {
        let borrowed = leaving.min(self.borrowable());
        held.saturating_sub(borrowed) < self.max()
    }

    /// Whether `held` descriptors leave room for one more for a request
    /// the evictor is stuck behind (`evict.rs`): whatever of the borrowable
    /// part of the reserve entries on their way out do not use — never
    /// more in all than [`Budget::has_room`] allows them.
    pub fn has_room_past_stuck(&self, held: usize) -> bool {
        held < self.max() + self.borrowable()
    }

    /// Descriptors that may be borrowed from the reserve: a quarter of the
    /// maximum, at most [`MAX_BORROWED`].
    fn borrowable(&self) -> usize {
        (self.max() / 4).min(MAX_BORROWED)
    }

    /// A transport runs an evictor for this layer (from now, or no longer).
    pub fn set_evictor(&self, running: bool) {
        self.evictor.store(running, Ordering::Release);
    }

    /// Whether a transport runs an evictor for this layer.
    pub fn has_evictor(&self) -> bool {
        self.evictor.load(Ordering::Acquire) && !self.stopped.load(Ordering::Acquire)
    }

    /// The evictor made progress (asked the kernel to drop some entries).
    pub fn progress(&self) {
        let mut r = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        *r += 1;
        self.done.notify_all();
    }

    /// Wake the evictor and wait until `room()` says there is room, each
    /// time the evictor reports progress, at most until `deadline`: a
    /// request with no room waits for the eviction rather than failing
    /// while a starved evictor has not run yet. Whether there is room.
    pub fn wait_for_room(&self, deadline: std::time::Instant, room: &dyn Fn() -> bool) -> bool {
        // A standby reader takes the device meanwhile: the FORGETs of the
        // entries being dropped reach only a thread that reads it.
        let _waiting = self.standby.waiting();
        loop {
            let mut r = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
            if room() {
                return true;
            }
            let seen = *r;
            {
                let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                *p = true;
                self.wake.notify_one();
            }
            while *r == seen {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || !self.has_evictor() {
                    drop(r);
                    return room();
                }
                // Polled as well: the room a stuck evictor leaves
                // (`evict.rs`) comes with no report of progress.
                let (again, waited) = self
                    .done
                    .wait_timeout(r, left.min(ROOM_POLL))
                    .unwrap_or_else(PoisonError::into_inner);
                r = again;
                if waited.timed_out() && room() {
                    return true;
                }
            }
        }
    }

    /// `held` are in use: wake the evictor if that is above the high-water mark.
    pub fn note(&self, held: usize) {
        if held > self.high_water() {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if !*p {
                *p = true;
                self.wake.notify_one();
            }
        }
    }

    /// Wait until eviction is wanted (true) or the server stops (false).
    pub fn wait(&self) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return false;
            }
            if *p {
                *p = false;
                return true;
            }
            p = self
                .wake
                .wait_timeout(p, Duration::from_secs(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The evictor's request to the kernel in flight (`evict.rs`).
    pub fn inval(&self) -> &InvalInFlight {
        &self.inval
    }

    /// The standby readers' gate (`standby.rs`).
    pub fn standby(&self) -> &Standby {
        &self.standby
    }

    /// End the evictor, and release the standby readers.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.standby.stop();
        {
            let _guard = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_all();
        }
        let _guard = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        self.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_reserve_is_an_eighth_and_at_least_a_thousand() {
        assert_eq!(reserve_for(20_000), 2_500);
        assert_eq!(reserve_for(4_096), 1_024);
        assert_eq!(reserve_for(1 << 20), 131_072);
        // A tight limit is shared half and half.
        assert_eq!(reserve_for(1_024), 512);
        assert_eq!(reserve_for(256), 128);
    }

    #[test]
    fn eviction_starts_near_the_limit_with_room_to_spare() {
        assert_eq!(Budget::with_max(17_500).high_water(), 13_125);
        assert_eq!(Budget::with_max(4_096).high_water(), 2_048);
        assert_eq!(Budget::with_max(917_504).high_water(), 688_128);
        assert_eq!(Budget::with_max(512).high_water(), 256);
    }

    #[test]
    fn room_and_high_water() {
        let b = Budget::with_max(100);
        assert!(b.has_room(99, 0));
        assert!(!b.has_room(100, 0));
        // Entries on their way out count, up to a quarter of the maximum.
        assert!(b.has_room(110, 20));
        assert!(!b.has_room(130, 40));
        // Never more than MAX_BORROWED, whatever the budget: the reserve
        // (at least MIN_RESERVE) keeps half of itself.
        let big = Budget::with_max(917_504);
        assert!(big.has_room(917_504 + MAX_BORROWED - 1, 200_000));
        assert!(!big.has_room(917_504 + MAX_BORROWED, 200_000));
        // Past a stuck evictor: the borrowable part of the reserve, and
        // not a descriptor more.
        assert!(b.has_room_past_stuck(124));
        assert!(!b.has_room_past_stuck(125));
        assert!(big.has_room_past_stuck(917_504 + MAX_BORROWED - 1));
        assert!(!big.has_room_past_stuck(917_504 + MAX_BORROWED));
        // Without an evictor, nobody is waited for.
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_secs(5);
        assert!(!b.wait_for_room(deadline, &|| false));
        assert!(started.elapsed() < Duration::from_secs(1));
        // With one, each report of progress is a chance to find room.
        let b = std::sync::Arc::new(Budget::with_max(100));
        b.set_evictor(true);
        let freed = std::sync::Arc::new(AtomicBool::new(false));
        let (b2, f2) = (b.clone(), freed.clone());
        let evictor = std::thread::spawn(move || {
            assert!(b2.wait());
            f2.store(true, Ordering::Release);
            b2.progress();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        assert!(b.wait_for_room(deadline, &|| freed.load(Ordering::Acquire)));
        evictor.join().unwrap();
        assert_eq!(b.high_water(), 50);
        b.note(51);
        assert!(b.wait());
        b.stop();
        assert!(!b.wait());
    }
}
