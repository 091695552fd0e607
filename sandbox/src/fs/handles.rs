//! Open handles: the decision taken at open time and what happened since.
//!
//! A handle is decided once (at open/create); reads and writes on it only
//! bump counters, so the hot path costs an atomic add. Written data is hashed
//! incrementally while writes arrive in order from offset 0; anything else
//! (a seek, an append to existing content, a truncate to a middle size,
//! fallocate) drops the running hash and the file is re-hashed at close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use ring::digest::{Context as Sha, SHA256};

use crate::Ticket;

/// The SHA-256 of a handle's writes, kept while they are sequential.
pub(crate) struct WriteHash {
    /// Running hash of bytes `[0, next)`; `None` once writes stopped being sequential.
    running: Option<Sha>,
    /// The next offset a sequential write would start at.
    next: u64,
    /// Whether the handle changed the file's contents at all.
    changed: bool,
}

impl std::fmt::Debug for WriteHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHash")
            .field("running", &self.running.is_some())
            .field("next", &self.next)
            .field("changed", &self.changed)
            .finish()
    }
}

impl WriteHash {
    fn new() -> Self {
        WriteHash {
            running: Some(Sha::new(&SHA256)),
            next: 0,
            changed: false,
        }
    }

    /// Whether a write at `offset` can extend the running hash.
    pub fn is_sequential_at(&self, offset: u64) -> bool {
        self.running.is_some() && offset == self.next
    }

    /// `data` was written at `offset`.
    pub fn wrote(&mut self, offset: u64, data: &[u8]) {
        self.changed = true;
        match self.running.as_mut() {
            Some(sha) if offset == self.next => {
                sha.update(data);
                self.next += data.len() as u64;
            }
            _ => self.running = None,
        }
    }

    /// Bytes were written but not seen (non-sequential write passed straight through).
    pub fn wrote_unseen(&mut self) {
        self.changed = true;
        self.running = None;
    }

    /// The file was truncated (or extended) to `size`.
    pub fn truncated(&mut self, size: u64, by_this_handle: bool) {
        if by_this_handle {
            self.changed = true;
        }
        if size == 0 {
            self.running = Some(Sha::new(&SHA256));
            self.next = 0;
        } else if size != self.next {
            self.running = None;
        }
    }

    /// Contents were changed in a way the hash cannot follow (fallocate, …).
    pub fn invalidate(&mut self) {
        self.changed = true;
        self.running = None;
    }

    /// Whether this handle changed the file.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The finished hash if it covers exactly a file of `size` bytes.
    pub fn finish_if_covers(&mut self, size: u64) -> Option<[u8; 32]> {
        if size != self.next {
            return None;
        }
        let sha = self.running.take()?;
        sha.finish().as_ref().try_into().ok()
    }
}

/// One open file handle.
#[derive(Debug)]
pub(crate) struct OpenHandle {
    /// The inode it was opened on.
    pub inode: u64,
    /// The inner (passthrough) handle that does its I/O.
    pub inner: u64,
    /// The open flags it shares `inner` under, when pooled (see `pool.rs`);
    /// `None`: `inner` is its own.
    pub pooled: Option<u32>,
    /// Workspace-relative path at open time (the first of its names).
    pub path: String,
    /// Tickets of the decisions that allowed the open, with the name each
    /// was decided under (one per access and name asked).
    pub tickets: Vec<(Ticket, String)>,
    /// Whether it was opened for writing.
    pub writable: bool,
    /// The command that opened it, when the server is shared by several.
    pub command: Option<u64>,
    /// Bytes served to the kernel for reads on this handle.
    pub bytes_read: AtomicU64,
    /// Bytes written through this handle.
    pub bytes_written: AtomicU64,
    /// Hash of the writes; the lock also keeps hashed writes in order.
    pub hash: Mutex<WriteHash>,
    /// Set by the first close report (there is exactly one per handle).
    reported: AtomicBool,
    /// Set when a write was first refused for the quota (reported once).
    quota_hit: AtomicBool,
}

impl OpenHandle {
    /// A handle decided for `path` (not yet backed by an inner handle:
    /// see [`OpenHandle::backed_by`]).
    pub fn new(
        inode: u64,
        path: String,
        tickets: Vec<(Ticket, String)>,
        writable: bool,
        command: Option<u64>,
    ) -> Self {
        OpenHandle {
            inode,
            inner: 0,
            pooled: None,
            path,
            tickets,
            writable,
            command,
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            hash: Mutex::new(WriteHash::new()),
            reported: AtomicBool::new(false),
            quota_hit: AtomicBool::new(false),
        }
    }

    /// Whether this is the first write on the handle refused for the quota.
    pub fn first_quota_hit(&self) -> bool {
        !self.quota_hit.swap(true, Ordering::AcqRel)
    }

    /// The same handle, doing its I/O through inner handle `inner` (shared
    /// under `pooled` flags, or its own).
    pub fn backed_by(mut self, inner: u64, pooled: Option<u32>) -> Self {
        self.inner = inner;
        self.pooled = pooled;
        self
    }

    /// Claim the right to report this handle's close: true exactly once.
    pub fn claim_report(&self) -> bool {
        !self.reported.swap(true, Ordering::AcqRel)
    }

    /// Count `n` bytes read.
    pub fn add_read(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count `n` bytes written.
    pub fn add_written(&self, n: usize) {
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sha(data: &[u8]) -> [u8; 32] {
        ring::digest::digest(&SHA256, data)
            .as_ref()
            .try_into()
            .unwrap()
    }

    #[test]
    fn sequential_writes_hash_incrementally() {
        let mut h = WriteHash::new();
        h.wrote(0, b"hello ");
        h.wrote(6, b"world");
        assert!(h.changed());
        assert_eq!(h.finish_if_covers(11), Some(sha(b"hello world")));
    }

    #[test]
    fn gaps_and_size_mismatch_force_rehash() {
        let mut h = WriteHash::new();
        h.wrote(0, b"abc");
        assert_eq!(WriteHash::new().finish_if_covers(3), None);
        assert_eq!(h.finish_if_covers(10), None);
        let mut h = WriteHash::new();
        h.wrote(5, b"abc");
        assert_eq!(h.finish_if_covers(8), None);
    }

    #[test]
    fn truncate_to_zero_restarts() {
        let mut h = WriteHash::new();
        h.wrote(0, b"old");
        h.truncated(0, true);
        h.wrote(0, b"new");
        assert_eq!(h.finish_if_covers(3), Some(sha(b"new")));
    }
}
