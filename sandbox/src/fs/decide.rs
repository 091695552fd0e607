//! Helpers of the `FileSystem` implementation: which accesses an open asks
//! for, ownership translation of replies, closing decisions.

use std::io;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, Entry};

use super::layer::MediatedLayer;
use crate::{FileAccess, FileOp};

/// `__FMODE_EXEC`: set in the open flags the kernel forwards for execve.
const FMODE_EXEC: u32 = 0x20;

pub(super) fn eacces() -> io::Error {
    io::Error::from_raw_os_error(libc::EACCES)
}

pub(super) fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// The accesses an open with `flags` needs, and the op to record.
pub(super) fn open_accesses(flags: u32) -> (Vec<FileAccess>, FileOp, bool) {
    let mode = flags & libc::O_ACCMODE as u32;
    let truncates = flags & libc::O_TRUNC as u32 != 0;
    let mut accesses = Vec::with_capacity(2);
    if mode == libc::O_RDONLY as u32 || mode == libc::O_RDWR as u32 {
        accesses.push(FileAccess::Read);
    }
    let writable = mode == libc::O_WRONLY as u32 || mode == libc::O_RDWR as u32 || truncates;
    if writable {
        accesses.push(FileAccess::Write);
    }
    let op = if flags & FMODE_EXEC != 0 {
        FileOp::Exec
    } else {
        FileOp::Open
    };
    (accesses, op, writable)
}

impl MediatedLayer {
    /// Ownership in a reply, as the sandbox's user namespace should see it.
    pub(super) fn out_attr(&self, st: &mut stat64) {
        if let Some(map) = self.idmap.get() {
            map.apply_to_reply(st);
        }
    }

    pub(super) fn out_entry(&self, mut entry: Entry) -> Entry {
        self.out_attr(&mut entry.attr);
        entry
    }

    /// Ask every access in `accesses` for one requester; the serial of the
    /// requester's command comes back with the tickets.
    pub(super) fn ask_all(
        &self,
        ctx: &Context,
        accesses: &[FileAccess],
        op: FileOp,
        path: &str,
    ) -> io::Result<(Vec<crate::Ticket>, Option<u64>)> {
        let (requester, command) = self.requester(ctx)?;
        let tickets = accesses
            .iter()
            .map(|a| self.ask_as(&requester, *a, op, path))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((tickets, command))
    }

    /// The kernel released `handle`: report it and let go of its inner
    /// handle. An unknown handle (already settled) has nothing left to do.
    pub(super) fn close(&self, ctx: &Context, handle: u64) -> io::Result<()> {
        // Report before untracking: a finished command waits until its
        // handles are untracked, and their reports must be in by then.
        let Some(open) = self.handle(handle) else {
            return Ok(());
        };
        self.report_close(ctx, &open);
        match self.untrack(handle) {
            Some(open) => self.release_inner(ctx, &open),
            // Settled meanwhile: whoever untracked it released it.
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_map_to_accesses() {
        let (a, op, w) = open_accesses(libc::O_RDONLY as u32);
        assert_eq!((a, op, w), (vec![FileAccess::Read], FileOp::Open, false));
        let (a, _, w) = open_accesses(libc::O_WRONLY as u32);
        assert_eq!((a, w), (vec![FileAccess::Write], true));
        let (a, _, w) = open_accesses(libc::O_RDWR as u32);
        assert_eq!((a, w), (vec![FileAccess::Read, FileAccess::Write], true));
        let (a, _, w) = open_accesses((libc::O_RDONLY | libc::O_TRUNC) as u32);
        assert_eq!((a, w), (vec![FileAccess::Read, FileAccess::Write], true));
        let (_, op, _) = open_accesses(libc::O_RDONLY as u32 | FMODE_EXEC);
        assert_eq!(op, FileOp::Exec);
    }
}
