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

/// The quota a sandbox is built with. In configuration files it is a
/// string such as `"4GiB"` or `"unlimited"` (see its `FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
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

/// Why a quota could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid write quota {given:?}: expected a size such as 512MiB, 4GiB or 1073741824 (bytes), or \"unlimited\"")]
pub struct QuotaParseError {
    /// What was given.
    pub given: String,
}

impl std::str::FromStr for WriteQuota {
    type Err = QuotaParseError;

    /// `unlimited`, or a number of bytes with an optional binary unit:
    /// `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` (case-insensitive; `B`
    /// alone is bytes).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuotaParseError {
            given: s.to_owned(),
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(WriteQuota::Unlimited);
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kib" => 10,
            "m" | "mib" => 20,
            "g" | "gib" => 30,
            "t" | "tib" => 40,
            _ => return Err(bad()),
        };
        n.checked_mul(1u64 << shift)
            .map(WriteQuota::Bytes)
            .ok_or_else(bad)
    }
}

impl TryFrom<String> for WriteQuota {
    type Error = QuotaParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for WriteQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            WriteQuota::Unlimited => f.write_str("unlimited"),
            WriteQuota::Bytes(n) => {
                for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
                    if n >= 1 << shift && n % (1 << shift) == 0 {
                        return write!(f, "{} {unit}", n >> shift);
                    }
                }
                write!(f, "{n} bytes")
            }
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
    fn quotas_parse_and_print() {
        for (text, q) in [
            ("4GiB", WriteQuota::Bytes(4 << 30)),
            ("4g", WriteQuota::Bytes(4 << 30)),
            ("512 MiB", WriteQuota::Bytes(512 << 20)),
            ("1024", WriteQuota::Bytes(1024)),
            ("10KiB", WriteQuota::Bytes(10 << 10)),
            ("unlimited", WriteQuota::Unlimited),
        ] {
            assert_eq!(text.parse::<WriteQuota>(), Ok(q), "{text}");
        }
        for bad in ["", "4 gigabytes", "-1", "1.5G", "99999999999T"] {
            assert!(bad.parse::<WriteQuota>().is_err(), "{bad}");
        }
        assert_eq!(WriteQuota::Bytes(4 << 30).to_string(), "4 GiB");
        assert_eq!(WriteQuota::Bytes(1000).to_string(), "1000 bytes");
        assert_eq!(DEFAULT_WRITE_QUOTA.to_string(), "4 GiB");
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
