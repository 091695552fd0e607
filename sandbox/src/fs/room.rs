//! Room in the descriptor budget (`budget.rs`): whether the inner file
//! system may take one more descriptor, waiting for the evictor
//! (`evict.rs`) when not, and the bookkeeping of entries on their way out.

use std::io;
use std::sync::PoisonError;

use fuse_backend_rs::api::filesystem::Context;

use super::layer::MediatedLayer;
use crate::file_refusal::RefusalRule;
use crate::{FileAccess, FileOp};

/// How long a request with no descriptor left waits for an eviction round.
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The directory whose lock the kernel holds while it waits for a request.
#[derive(Debug, Clone, Copy)]
pub(super) enum LockedDir {
    /// This directory (a LOOKUP or CREATE in it).
    Parent(u64),
    /// None that matters (an OPEN: the kernel has let go of the
    /// directory by then).
    None,
}

impl MediatedLayer {
    /// The inner fs is about to take a descriptor (a new inode or an own
    /// handle) for `access` by `op` on `path`: make the pool give back idle
    /// descriptors if the budget needs them, and refuse (reported, ENFILE)
    /// when the budget is used up even so. `locked` is the directory whose
    /// lock the kernel holds while it waits for this request, if any
    /// (`budget.rs` says why that matters).
    pub(super) fn fd_room(
        &self,
        ctx: &Context,
        access: FileAccess,
        op: FileOp,
        path: &str,
        locked: LockedDir,
    ) -> io::Result<()> {
        let held = self.known_inodes() + self.open_handles();
        let mut evicted = Vec::new();
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shed(held, &mut evicted);
        self.release_evicted(ctx, evicted);
        let room = || {
            let held = self.known_inodes() + self.open_handles();
            self.budget.has_room(held, self.leaving())
                || match locked {
                    LockedDir::Parent(dir) => {
                        self.budget.inval().stuck_in(dir) && self.budget.has_room_past_stuck(held)
                    }
                    LockedDir::None => false,
                }
        };
        // The common case, on every lookup and open: the count just taken.
        if self.budget.has_room(held, self.leaving()) || room() {
            return Ok(());
        }
        if self.budget.has_evictor() {
            // Let the evictor (a thread that may not have had the CPU yet)
            // make room before refusing.
            let deadline = std::time::Instant::now() + EVICTION_WAIT;
            if self.budget.wait_for_room(deadline, &room) {
                return Ok(());
            }
        }
        let held = self.known_inodes() + self.open_handles();
        Err(self.refuse(
            ctx,
            access,
            op,
            path.as_bytes(),
            RefusalRule::OpenFiles,
            format!("{held} of {} in use", self.budget.max()),
        ))
    }

    /// Entries the kernel should be asked to drop, least recently used
    /// first, to bring the layer back to half its high-water mark:
    /// (inode, parent inode, name). Inodes with open handles are kept.
    pub(crate) fn eviction_victims(&self) -> Vec<(u64, u64, String)> {
        let known = self.known_inodes().saturating_sub(self.leaving());
        let high = self.budget.high_water();
        if known + self.open_handles() <= high {
            return Vec::new();
        }
        let busy: std::collections::HashSet<u64> = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|h| h.inode)
            .collect();
        let n = known.saturating_sub(high / 2);
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .least_recently_used(n, &|ino| busy.contains(&ino))
    }

    /// Inodes the kernel was asked to drop whose FORGET is pending.
    fn leaving(&self) -> usize {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .evicted()
    }

    /// The kernel was asked to drop these inodes' entries (the evictor).
    pub(crate) fn evicted(&self, inodes: &[u64]) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .mark_evicted(inodes);
        self.budget.progress();
    }
}
