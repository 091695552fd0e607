//! Helpers of the `FileSystem` implementation: which accesses an open asks
//! for, ownership translation of replies, closing decisions, and one-shot
//! changes (asked, performed, their outcome reported).

use std::ffi::CStr;
use std::io;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::layer::MediatedLayer;
use crate::file_refusal::RefusalRule;
use crate::{
    policy_path, ChangeOutcome, FileAccess, FileChangeReport, FileCloseReport, FileOp, Ticket,
};

/// Tickets of decisions, each with the name it was decided under.
pub(super) type Decided = Vec<(Ticket, String)>;

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

    /// Ask every access in `accesses` under every name in `names` for one
    /// requester; the serial of the requester's command comes back with the
    /// tickets. When one is refused, the handles already allowed are
    /// reported closed (nothing was opened).
    pub(super) fn ask_all(
        &self,
        ctx: &Context,
        accesses: &[FileAccess],
        op: FileOp,
        names: &[String],
    ) -> io::Result<(Decided, Option<u64>)> {
        let (requester, command) = self.requester(ctx)?;
        let mut tickets = Vec::with_capacity(accesses.len() * names.len());
        for path in names {
            for access in accesses {
                match self.ask_as(&requester, *access, op, path) {
                    Ok(t) => tickets.push((t, path.clone())),
                    Err(e) => {
                        for (t, p) in tickets {
                            self.closed_unused(t, &p);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok((tickets, command))
    }

    /// The names an access of `access` by `op` to `inode` is decided
    /// under (see `aliases.rs`); a hard-linked file whose names are not all
    /// known workspace paths is refused here.
    pub(super) fn names_to_decide(
        &self,
        ctx: &Context,
        inode: u64,
        access: FileAccess,
        op: FileOp,
    ) -> io::Result<Vec<String>> {
        match self.decision_names(inode)? {
            Ok(names) => Ok(names),
            Err(unresolved) => {
                let (path, _) = self.node(inode)?;
                Err(self.refuse(
                    ctx,
                    access,
                    op,
                    path.as_bytes(),
                    RefusalRule::HardLinkUnresolved,
                    unresolved.to_string(),
                ))
            }
        }
    }

    /// An allowed handle that was never opened (or a node made without
    /// one, like mknod): report it closed with nothing read or written.
    pub(super) fn closed_unused(&self, ticket: Ticket, path: &str) {
        self.mediator.file_closed(&FileCloseReport {
            ticket,
            path: policy_path(path).to_owned(),
            bytes_read: 0,
            bytes_written: 0,
            sha256_after_write: None,
        });
    }

    /// A one-shot change: ask each of `asks` (access, path) for `op`, run
    /// `act` only if all are allowed, and report its outcome against every
    /// ticket (the mediator's result entries), also when a later ask was
    /// refused after earlier ones were allowed.
    pub(super) fn change<T>(
        &self,
        ctx: &Context,
        op: FileOp,
        asks: &[(FileAccess, &str)],
        act: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        self.change_hashed(ctx, op, asks, || act().map(|t| (t, None)))
    }

    /// [`MediatedLayer::change`] for a change that may leave new contents:
    /// `act` gives the SHA-256 of the file after it, reported with the outcome.
    pub(super) fn change_hashed<T>(
        &self,
        ctx: &Context,
        op: FileOp,
        asks: &[(FileAccess, &str)],
        act: impl FnOnce() -> io::Result<(T, Option<[u8; 32]>)>,
    ) -> io::Result<T> {
        debug_assert!(op.is_change(), "{op:?} is not a one-shot change");
        let (requester, _) = self.requester(ctx)?;
        let mut tickets = Vec::with_capacity(asks.len());
        for (access, path) in asks {
            match self.ask_as(&requester, *access, op, path) {
                Ok(t) => tickets.push(t),
                Err(e) => {
                    self.report_change(&tickets, op, ChangeOutcome::Abandoned, None);
                    return Err(e);
                }
            }
        }
        match act() {
            Ok((t, sha)) => {
                self.report_change(&tickets, op, ChangeOutcome::Done, sha);
                Ok(t)
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                self.report_change(&tickets, op, ChangeOutcome::Failed(errno), None);
                Err(e)
            }
        }
    }

    /// RENAME: `file.delete` on the source and `file.write` on the target
    /// (both ways for an exchange), one change; the node map follows.
    /// `RENAME_WHITEOUT` (it leaves a device node behind) is refused.
    pub(super) fn rename_mediated(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let from = self.child_path(ctx, olddir, oldname, FileAccess::Delete, FileOp::Rename)?;
        let to = self.child_path(ctx, newdir, newname, FileAccess::Write, FileOp::Rename)?;
        if flags & libc::RENAME_WHITEOUT != 0 {
            return Err(self.refuse(
                ctx,
                FileAccess::Write,
                FileOp::Rename,
                from.as_bytes(),
                RefusalRule::DeviceNode,
                "RENAME_WHITEOUT leaves a whiteout device".into(),
            ));
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let mut moved = vec![(olddir, oldname, &from)];
        if exchange {
            moved.push((newdir, newname, &to));
        }
        for (dir, name, path) in moved {
            if let Some(detail) = self.setid_entry(ctx, dir, name)? {
                return Err(self.refuse(
                    ctx,
                    FileAccess::Write,
                    FileOp::Rename,
                    path.as_bytes(),
                    RefusalRule::PrivilegedMode,
                    detail,
                ));
            }
        }
        let plain = [
            (FileAccess::Delete, from.as_str()),
            (FileAccess::Write, &to),
        ];
        let both = [
            (FileAccess::Delete, from.as_str()),
            (FileAccess::Write, &to),
            (FileAccess::Delete, &to),
            (FileAccess::Write, &from),
        ];
        let asks: &[(FileAccess, &str)] = if exchange { &both } else { &plain };
        self.change(ctx, FileOp::Rename, asks, || {
            self.inner
                .rename(ctx, olddir, oldname, newdir, newname, flags)
        })?;
        self.nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rename(&from, &to, exchange);
        Ok(())
    }

    fn report_change(
        &self,
        tickets: &[Ticket],
        op: FileOp,
        outcome: ChangeOutcome,
        sha256_after: Option<[u8; 32]>,
    ) {
        for ticket in tickets {
            self.mediator.file_changed(&FileChangeReport {
                ticket: *ticket,
                op,
                outcome,
                sha256_after,
            });
        }
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
