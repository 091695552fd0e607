//! Shared host descriptors for read-only opens.
//!
//! Every OPEN is decided and tracked as its own handle (own ticket, own byte
//! counts, own close report), but the *host* descriptor behind a read-only
//! handle need not be a fresh one: reopening through `/proc/self/fd` and
//! closing again were the two most expensive system calls of a small-file
//! read. Handles of the same inode opened with the same flags share one
//! inner (passthrough) handle; reads use `pread` at the handle's offsets, so
//! sharing changes no byte anyone reads. When the last user releases it, the
//! inner handle stays open (idle) until the kernel forgets the inode, or
//! until the descriptor budget needs it back.
//!
//! The budget: the passthrough already holds one `O_PATH` descriptor per
//! inode the kernel knows, so pooled descriptors are limited to what the
//! layer's descriptor budget (`budget.rs`, which keeps a reserve for the
//! rest of the process) leaves after those and the open handles. A new entry may displace an idle one only if that has
//! been idle for [`MIN_IDLE_TO_DISPLACE`]; otherwise the open gets a
//! descriptor of its own, as without the pool. (Displacing the oldest idle
//! entry unconditionally would make a working set slightly larger than the
//! budget miss every time, as a cyclic scan through it does.) When the
//! passthrough needs descriptors for new inodes, idle entries give way
//! regardless of age ([`ReadPool::shed`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long an idle entry is kept against newcomers when the budget is full.
pub(crate) const MIN_IDLE_TO_DISPLACE: Duration = Duration::from_secs(10);

/// An inner handle shared by read-only opens of one inode with one set of flags.
#[derive(Debug)]
struct Shared {
    flags: u32,
    inner: u64,
    /// The `OpenOptions` bits the inner fs answered the first open with.
    opts: u32,
    users: u32,
    /// Bumped whenever the entry goes idle, to recognise stale queue slots.
    idle_gen: u64,
}

/// The pool; callers hold it under a lock.
#[derive(Debug)]
pub(crate) struct ReadPool {
    by_inode: HashMap<u64, Vec<Shared>>,
    /// Idle entries, oldest first: (inode, flags, idle_gen when queued, since).
    idle: VecDeque<(u64, u32, u64, Instant)>,
    /// Pooled inner handles (in use or idle).
    pooled: usize,
    /// Of those, idle.
    idle_count: usize,
    next_gen: u64,
    /// Descriptors the pool may hold, before subtracting the inode fds.
    fd_budget: usize,
}

/// Room new inodes may take before idle entries are shed for them: the pool
/// stops growing this far below the budget, so a lookup of an inode the
/// passthrough already holds (which takes no descriptor) sheds nothing.
const SLACK: usize = 256;

impl ReadPool {
    /// A pool whose descriptors, together with the inodes and handles the
    /// layer holds, stay within `fd_budget` (the layer's budget: `budget.rs`).
    pub fn with_budget(fd_budget: usize) -> Self {
        ReadPool {
            by_inode: HashMap::new(),
            idle: VecDeque::new(),
            pooled: 0,
            idle_count: 0,
            next_gen: 0,
            fd_budget,
        }
    }

    /// Take a user of the shared inner handle for (`inode`, `flags`), if
    /// any: the inner handle and the open options to answer with.
    pub fn acquire(&mut self, inode: u64, flags: u32) -> Option<(u64, u32)> {
        let entry = self
            .by_inode
            .get_mut(&inode)?
            .iter_mut()
            .find(|s| s.flags == flags)?;
        if entry.users == 0 {
            self.idle_count -= 1;
        }
        entry.users += 1;
        Some((entry.inner, entry.opts))
    }

    /// Whether one more pooled descriptor fits next to `others` descriptors
    /// (inode fds of the inner fs, open handles), displacing idle entries
    /// idle since before `now - MIN_IDLE_TO_DISPLACE`; those are handed back
    /// in `evicted` for the caller to release.
    pub fn make_room(
        &mut self,
        others: usize,
        now: Instant,
        evicted: &mut Vec<(u64, u64)>,
    ) -> bool {
        while self.pooled + others + 1 + SLACK > self.fd_budget {
            let old_enough = self
                .oldest_idle_since()
                .is_some_and(|since| now.saturating_duration_since(since) >= MIN_IDLE_TO_DISPLACE);
            if !old_enough {
                return false;
            }
            match self.pop_idle() {
                Some(old) => evicted.push(old),
                None => return false,
            }
        }
        true
    }

    /// Give back idle entries until one more descriptor fits next to
    /// `others` (the inner fs is about to need one for a new inode).
    pub fn shed(&mut self, others: usize, evicted: &mut Vec<(u64, u64)>) {
        while self.pooled > 0 && self.pooled + others + 1 > self.fd_budget {
            match self.pop_idle() {
                Some(old) => evicted.push(old),
                None => return,
            }
        }
    }

    /// Since when the oldest live idle entry is idle (drops stale slots).
    fn oldest_idle_since(&mut self) -> Option<Instant> {
        while let Some(&(inode, flags, gen, since)) = self.idle.front() {
            if self.is_idle(inode, flags, gen) {
                return Some(since);
            }
            self.idle.pop_front();
        }
        None
    }

    fn is_idle(&self, inode: u64, flags: u32, gen: u64) -> bool {
        self.by_inode.get(&inode).is_some_and(|l| {
            l.iter()
                .any(|s| s.flags == flags && s.users == 0 && s.idle_gen == gen)
        })
    }

    /// Pool a freshly opened inner handle, with one user. False (and nothing
    /// pooled) when the key is already pooled: the caller keeps its handle
    /// to itself.
    pub fn insert(&mut self, inode: u64, flags: u32, inner: u64, opts: u32) -> bool {
        let list = self.by_inode.entry(inode).or_default();
        if list.iter().any(|s| s.flags == flags) {
            return false;
        }
        list.push(Shared {
            flags,
            inner,
            opts,
            users: 1,
            idle_gen: 0,
        });
        self.pooled += 1;
        true
    }

    /// A user of (`inode`, `flags`) is done (at `now`). The entry stays
    /// pooled, idle.
    pub fn release(&mut self, inode: u64, flags: u32, now: Instant) {
        let Some(entry) = self
            .by_inode
            .get_mut(&inode)
            .and_then(|l| l.iter_mut().find(|s| s.flags == flags))
        else {
            return;
        };
        entry.users = entry.users.saturating_sub(1);
        if entry.users == 0 {
            self.next_gen += 1;
            entry.idle_gen = self.next_gen;
            self.idle.push_back((inode, flags, self.next_gen, now));
            self.idle_count += 1;
        }
    }

    /// The kernel forgot `inode`: its idle entries go (no handle can be open
    /// on a forgotten inode, so there are no others).
    pub fn forget(&mut self, inode: u64, evicted: &mut Vec<(u64, u64)>) {
        let Some(list) = self.by_inode.remove(&inode) else {
            return;
        };
        for s in list {
            if s.users == 0 {
                self.idle_count -= 1;
                self.pooled -= 1;
                evicted.push((inode, s.inner));
            } else {
                // Cannot happen (see above); keep it rather than close a
                // descriptor that is in use.
                self.by_inode.entry(inode).or_default().push(s);
            }
        }
    }

    /// Every idle entry (the server is stopping).
    pub fn drain_idle(&mut self, evicted: &mut Vec<(u64, u64)>) {
        while let Some(old) = self.pop_idle() {
            evicted.push(old);
        }
    }

    /// Remove the oldest idle entry: (inode, inner handle).
    fn pop_idle(&mut self) -> Option<(u64, u64)> {
        while let Some((inode, flags, gen, _)) = self.idle.pop_front() {
            let Some(list) = self.by_inode.get_mut(&inode) else {
                continue;
            };
            let Some(pos) = list
                .iter()
                .position(|s| s.flags == flags && s.users == 0 && s.idle_gen == gen)
            else {
                continue;
            };
            let s = list.swap_remove(pos);
            if list.is_empty() {
                self.by_inode.remove(&inode);
            }
            self.idle_count -= 1;
            self.pooled -= 1;
            return Some((inode, s.inner));
        }
        None
    }

    /// Pooled inner handles (in use or idle).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pooled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later(t: Instant) -> Instant {
        t + MIN_IDLE_TO_DISPLACE
    }

    #[test]
    fn shared_by_same_flags_only() {
        let now = Instant::now();
        let mut p = ReadPool::with_budget(100);
        assert_eq!(p.acquire(5, 0), None);
        assert!(p.insert(5, 0, 50, 0));
        assert!(
            !p.insert(5, 0, 51, 0),
            "second handle of the same key stays private"
        );
        assert_eq!(p.acquire(5, 0), Some((50, 0)));
        assert_eq!(p.acquire(5, 0o4000), None);
        p.release(5, 0, now);
        p.release(5, 0, now);
        // Idle, still pooled, reusable.
        assert_eq!(p.acquire(5, 0), Some((50, 0)));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn full_budget_displaces_only_long_idle_entries() {
        let t0 = Instant::now();
        let mut p = ReadPool::with_budget(4 + SLACK);
        let mut out = Vec::new();
        for ino in 1..=3 {
            assert!(p.make_room(0, t0, &mut out));
            assert!(p.insert(ino, 0, ino * 10, 0));
        }
        p.release(2, 0, t0);
        p.release(1, 0, t0);
        // Three pooled + one other fill the budget: recently idle
        // entries are kept, the newcomer goes without.
        assert!(!p.make_room(1, t0, &mut out));
        assert!(out.is_empty());
        // Long idle: the oldest gives way.
        assert!(p.make_room(1, later(t0), &mut out));
        assert_eq!(out, vec![(2, 20)]);
        assert!(p.insert(4, 0, 40, 0));
        out.clear();
        assert!(p.make_room(1, later(t0), &mut out));
        assert_eq!(out, vec![(1, 10)]);
        assert!(p.insert(5, 0, 50, 0));
        out.clear();
        assert!(
            !p.make_room(1, later(t0), &mut out),
            "only busy entries left"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn shedding_for_new_inodes_ignores_age() {
        let t0 = Instant::now();
        let mut p = ReadPool::with_budget(3);
        let mut out = Vec::new();
        assert!(p.insert(1, 0, 10, 0));
        assert!(p.insert(2, 0, 20, 0));
        p.release(1, 0, t0);
        p.shed(1, &mut out);
        assert_eq!(out, vec![(1, 10)]);
        out.clear();
        p.shed(1, &mut out);
        assert!(out.is_empty(), "busy entries stay");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn reuse_after_idle_is_not_evicted_by_its_stale_slot() {
        let t0 = Instant::now();
        let mut p = ReadPool::with_budget(2 + SLACK);
        let mut out = Vec::new();
        assert!(p.insert(1, 0, 10, 0));
        p.release(1, 0, t0);
        assert_eq!(p.acquire(1, 0), Some((10, 0)));
        // Its queue slot is stale now: nothing idle to evict.
        assert!(!p.make_room(1, later(t0), &mut out));
        p.release(1, 0, t0);
        assert!(p.make_room(1, later(t0), &mut out));
        assert_eq!(out, vec![(1, 10)]);
    }

    #[test]
    fn forget_closes_idle_entries() {
        let now = Instant::now();
        let mut p = ReadPool::with_budget(10);
        let mut out = Vec::new();
        assert!(p.insert(7, 0, 70, 0));
        assert!(p.insert(7, 1, 71, 0));
        p.release(7, 0, now);
        p.release(7, 1, now);
        p.forget(7, &mut out);
        out.sort_unstable();
        assert_eq!(out, vec![(7, 70), (7, 71)]);
        assert_eq!(p.len(), 0);
        assert_eq!(p.acquire(7, 0), None);
    }
}
