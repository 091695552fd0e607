//! The workspace write quota: how many bytes a sandbox (one session) may
//! write into the workspace before writes fail with `EDQUOT`.
//!
//! What counts is what can take disk space: bytes written, the growth of a
//! file by `truncate`/`ftruncate` beyond its size, and ranges `fallocate`
//! reserves. Rewriting a file counts again, and deleting gives nothing back
//! (the quota bounds what a session can write, not what the disk holds at
//! one moment); truncating or punching holes costs nothing. A write that
//! would cross the limit is refused whole. Reserving is one atomic add on
//! the write path.

use std::sync::atomic::{AtomicU64, Ordering};

/// The quota a sandbox is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteQuota {
    /// At most this many bytes per session.
    Bytes(u64),
    /// No limit (the host's disk is the limit).
    Unlimited,
}

/// The default quota: 4 GiB per session.
pub const DEFAULT_WRITE_QUOTA: WriteQuota = WriteQuota::Bytes(4 << 30);

impl Default for WriteQuota {
    fn default() -> Self {
        DEFAULT_WRITE_QUOTA
    }
}

impl WriteQuota {
    /// The limit in bytes, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        match self {
            WriteQuota::Bytes(n) => Some(n),
            WriteQuota::Unlimited => None,
        }
    }
}

/// How much of the quota a sandbox has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteUsage {
    /// Bytes counted against the quota so far.
    pub bytes_written: u64,
    /// The quota.
    pub quota: WriteQuota,
    /// Writes refused because the quota was used up.
    pub refused_writes: u64,
}

/// The running count of a layer.
#[derive(Debug)]
pub(crate) struct QuotaCounter {
    /// The limit in bytes; `u64::MAX` is unlimited.
    limit: AtomicU64,
    used: AtomicU64,
    refused: AtomicU64,
}

const UNLIMITED: u64 = u64::MAX;

impl QuotaCounter {
    pub fn new(quota: WriteQuota) -> Self {
        QuotaCounter {
            limit: AtomicU64::new(quota.limit().unwrap_or(UNLIMITED)),
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Change the quota (before serving).
    pub fn set(&self, quota: WriteQuota) {
        self.limit
            .store(quota.limit().unwrap_or(UNLIMITED), Ordering::Release);
    }

    fn quota(&self) -> WriteQuota {
        match self.limit.load(Ordering::Acquire) {
            UNLIMITED => WriteQuota::Unlimited,
            n => WriteQuota::Bytes(n),
        }
    }

    /// Take `n` bytes of the quota; false (and nothing taken) when that
    /// would exceed it.
    pub fn reserve(&self, n: u64) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        if limit == UNLIMITED {
            self.used.fetch_add(n, Ordering::Relaxed);
            return true;
        }
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken.is_ok()
    }

    /// Give back `n` bytes reserved but not written.
    pub fn give_back(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// What has been used.
    pub fn usage(&self) -> WriteUsage {
        WriteUsage {
            bytes_written: self.used.load(Ordering::Acquire),
            quota: self.quota(),
            refused_writes: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_crossing_the_limit_is_refused_whole() {
        let q = QuotaCounter::new(WriteQuota::Bytes(100));
        assert!(q.reserve(60));
        assert!(!q.reserve(41));
        assert!(q.reserve(40));
        assert!(!q.reserve(1));
        assert_eq!(q.usage().bytes_written, 100);
        assert_eq!(q.usage().refused_writes, 2);
        q.give_back(10);
        assert!(q.reserve(10));
        assert!(!q.reserve(u64::MAX));
    }

    #[test]
    fn unlimited_counts_without_refusing() {
        let q = QuotaCounter::new(WriteQuota::Bytes(1));
        q.set(WriteQuota::Unlimited);
        assert!(q.reserve(u64::MAX / 2));
        assert_eq!(q.usage().quota, WriteQuota::Unlimited);
        assert_eq!(q.usage().bytes_written, u64::MAX / 2);
    }
}
