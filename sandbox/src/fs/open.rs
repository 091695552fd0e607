//! Open handles of the layer: the handle numbers the kernel is given, the
//! inner (passthrough) handles behind them, and their release.
//!
//! The kernel gets the layer's own handle numbers. Each names one decided
//! open ([`OpenHandle`]: tickets, byte counts, close report); behind it is an
//! inner handle of the passthrough, which for read-only opens of regular
//! files may be shared with other opens of the same inode (`pool.rs`).

use std::ffi::CStr;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{CreateIn, OpenOptions};
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::guard::{creation_mode, WORKSPACE_UMASK};
use super::handles::OpenHandle;
use super::layer::MediatedLayer;
use super::room::LockedDir;
use crate::{FileAccess, FileOp};

/// What the passthrough's CREATE answers: the entry, the inner handle, the
/// open options and the passthrough's own extra.
type Created = (Entry, Option<u64>, OpenOptions, Option<u32>);

/// Whether a CREATE made the file or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// Made by this request.
    New,
    /// Made meanwhile by someone else (the program did not ask for `O_EXCL`).
    Existing,
}

/// Open flags a pooled descriptor may be shared under: read-only, nothing
/// that changes the file (`O_TRUNC`) or how the host descriptor behaves for
/// anyone but the opener. Everything else gets its own descriptor.
fn poolable(flags: u32) -> bool {
    let mode = flags & libc::O_ACCMODE as u32;
    mode == libc::O_RDONLY as u32 && flags & (libc::O_TRUNC | libc::O_DIRECT) as u32 == 0
}

impl MediatedLayer {
    /// Back the decided `open` with an inner handle (shared when `regular`
    /// says it is a regular file and the flags allow) and start tracking it;
    /// the handle number for the kernel, and the inner fs's open options.
    pub(super) fn open_tracked(
        &self,
        ctx: &Context,
        open: OpenHandle,
        flags: u32,
        fuse_flags: u32,
        regular: bool,
    ) -> io::Result<(u64, OpenOptions)> {
        let inode = open.inode;
        let pool = regular && poolable(flags);
        if pool {
            let hit = self
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .acquire(inode, flags);
            if let Some((inner, opts)) = hit {
                let opts = OpenOptions::from_bits_truncate(opts);
                return Ok((self.track(open.backed_by(inner, Some(flags))), opts));
            }
        }
        let access = if open.writable {
            FileAccess::Write
        } else {
            FileAccess::Read
        };
        if let Err(e) = self.fd_room(ctx, access, FileOp::Open, &open.path, LockedDir::None) {
            self.report_close(ctx, &open);
            return Err(e);
        }
        let (inner, opts, _) = match self.inner.open(ctx, inode, flags, fuse_flags) {
            Ok((Some(h), opts, passthrough)) => (h, opts, passthrough),
            Ok((None, _, _)) => {
                // The passthrough always hands out a handle when it opens.
                self.report_close(ctx, &open);
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            Err(e) => {
                // Allowed but failed: close the decision with an empty report.
                self.report_close(ctx, &open);
                return Err(e);
            }
        };
        let pooled = pool && self.pool_insert(ctx, inode, flags, inner, opts);
        let open = open.backed_by(inner, pooled.then_some(flags));
        Ok((self.track(open), opts))
    }

    /// CREATE of `name` (at workspace path `path`) in `parent`: decided,
    /// created with a sanitised mode, given to the workspace's owner,
    /// tracked as a writable handle of its own.
    pub(super) fn create_tracked(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        path: String,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let mut accesses = vec![FileAccess::Write];
        if args.flags & libc::O_ACCMODE as u32 == libc::O_RDWR as u32 {
            accesses.push(FileAccess::Read);
        }
        let names = [path.clone()];
        let (tickets, command) = self.ask_all(ctx, &accesses, FileOp::Create, &names)?;
        if let Err(e) = self.fd_room(
            ctx,
            FileAccess::Write,
            FileOp::Create,
            &path,
            LockedDir::Parent(parent),
        ) {
            let failed = OpenHandle::new(0, path, tickets, false, command);
            self.report_close(ctx, &failed);
            return Err(e);
        }
        let made = self.create_inner(ctx, parent, name, args);
        let ((entry, handle, opts, passthrough), fresh) = match made {
            Ok(r) => r,
            Err(e) => {
                // Allowed but failed (EEXIST, ENOSPC…): close the decision.
                let failed = OpenHandle::new(0, path, tickets, false, command);
                self.report_close(ctx, &failed);
                return Err(e);
            }
        };
        self.remember(parent, name, path.clone(), &entry);
        let open = OpenHandle::new(entry.inode, path, tickets, true, command);
        let truncates = args.flags & libc::O_TRUNC as u32 != 0;
        if fresh == Fresh::New || truncates {
            // Made (or emptied) by this handle: a change of contents, whose
            // close report carries a hash even when nothing is written.
            open.hash
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .truncated(0, true);
        }
        let handle = match handle {
            Some(h) => Some(self.track(open.backed_by(h, None))),
            // No handle means nothing will ever be released: report now so
            // every allowed decision gets its close report.
            None => {
                self.report_close(ctx, &open);
                None
            }
        };
        Ok((self.out_entry(entry), handle, opts, passthrough))
    }

    /// Create the file exclusively, so a new file is known to be ours (and
    /// is settled: owner, mode); when the name exists meanwhile (made on the
    /// host after the kernel's lookup) and the program did not ask for
    /// `O_EXCL`, open the existing file instead, which is then not given
    /// away but loses setuid/setgid bits before it is written.
    fn create_inner(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Created, Fresh)> {
        let excl = CreateIn {
            flags: args.flags | libc::O_EXCL as u32,
            mode: creation_mode(args.mode, args.umask, WORKSPACE_UMASK),
            umask: 0,
            fuse_flags: args.fuse_flags,
        };
        match self.inner.create(ctx, parent, name, excl) {
            Ok((entry, handle, opts, pt)) => {
                let inode = entry.inode;
                match self.settle_new(entry) {
                    Ok(entry) => Ok(((entry, handle, opts, pt), Fresh::New)),
                    Err(e) => {
                        if let Some(h) = handle {
                            let _ = self.inner.release(ctx, inode, 0, h, false, false, None);
                        }
                        Err(e)
                    }
                }
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EEXIST)
                    && args.flags & libc::O_EXCL as u32 == 0 =>
            {
                let existing = self.inner.lookup(ctx, parent, name)?;
                let inode = existing.inode;
                let aliased = existing.attr.st_nlink > 1;
                let kept = if aliased {
                    // Decided under one name only: an alias appeared in the
                    // meantime; let the program look it up and open it.
                    Err(io::Error::from_raw_os_error(libc::EEXIST))
                } else {
                    Ok(())
                };
                let kept = kept.and_then(|()| self.drop_setid(inode)).and_then(|()| {
                    let plain = CreateIn {
                        mode: excl.mode,
                        umask: 0,
                        ..args
                    };
                    self.inner.create(ctx, parent, name, plain)
                });
                // The lookup above took a reference the kernel never saw.
                self.inner.forget(ctx, inode, 1);
                kept.map(|created| (created, Fresh::Existing))
            }
            Err(e) => Err(e),
        }
    }

    /// Pool `inner` for (`inode`, `flags`) if the descriptor budget allows.
    fn pool_insert(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        inner: u64,
        opts: OpenOptions,
    ) -> bool {
        let others = self.known_inodes() + self.open_handles();
        let mut evicted = Vec::new();
        let pooled = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            pool.make_room(others, Instant::now(), &mut evicted)
                && pool.insert(inode, flags, inner, opts.bits())
        };
        self.release_evicted(ctx, evicted);
        pooled
    }

    /// Close inner handles the pool let go of.
    pub(super) fn release_evicted(&self, ctx: &Context, evicted: Vec<(u64, u64)>) {
        for (inode, inner) in evicted {
            let _ = self.inner.release(ctx, inode, 0, inner, false, false, None);
        }
    }

    /// The kernel forgot `inode`: close the idle pooled handles on it.
    pub(super) fn forgotten(&self, ctx: &Context, inode: u64) {
        let mut evicted = Vec::new();
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(inode, &mut evicted);
        self.release_evicted(ctx, evicted);
    }

    /// Start tracking `open`; the handle number to give the kernel.
    pub(super) fn track(&self, open: OpenHandle) -> u64 {
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(handle, Arc::new(open));
        handle
    }

    /// The tracked handle `handle`, if any.
    pub(super) fn handle(&self, handle: u64) -> Option<Arc<OpenHandle>> {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&handle)
            .cloned()
    }

    /// The inner handle behind the kernel's `handle`, if it is one of ours.
    pub(super) fn inner_handle(&self, handle: u64) -> Option<u64> {
        self.handle(handle).map(|h| h.inner)
    }

    /// Every tracked handle open on `inode`.
    pub(super) fn handles_on(&self, inode: u64) -> Vec<Arc<OpenHandle>> {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|h| h.inode == inode)
            .cloned()
            .collect()
    }

    pub(super) fn open_handles(&self) -> usize {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stop tracking `handle` and return it.
    pub(super) fn untrack(&self, handle: u64) -> Option<Arc<OpenHandle>> {
        let open = self
            .handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&handle);
        if open.as_ref().is_some_and(|o| o.command.is_some()) {
            // Taking the lock orders this wake-up after a waiter's check.
            drop(
                self.released
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            self.released.1.notify_all();
        }
        open
    }

    /// Let go of the inner handle behind `open` (it is no longer tracked):
    /// hand a shared one back to the pool, release an own one.
    pub(super) fn release_inner(&self, ctx: &Context, open: &OpenHandle) -> io::Result<()> {
        match open.pooled {
            Some(flags) => {
                self.pool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .release(open.inode, flags, Instant::now());
                Ok(())
            }
            None => self
                .inner
                .release(ctx, open.inode, 0, open.inner, false, false, None),
        }
    }

    fn has_handles_of(&self, command: u64) -> bool {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|h| h.command == Some(command))
    }

    /// A command served by a shared server has ended (all its processes are
    /// gone): wait up to `timeout` for the kernel to release the handles its
    /// processes left open (their `RELEASE`s are already on the way), then
    /// report any still tracked as closed, so every allowed open of the
    /// command has its close report before the command's end is recorded.
    pub fn settle_command(&self, command: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self
            .released
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while self.has_handles_of(command) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = self
                .released
                .1
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(guard);
        let stragglers: Vec<Arc<OpenHandle>> = {
            let mut handles = self.handles.write().unwrap_or_else(PoisonError::into_inner);
            let ids: Vec<u64> = handles
                .iter()
                .filter(|(_, h)| h.command == Some(command))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| handles.remove(&id))
                .collect()
        };
        let ctx = Context::default();
        for h in stragglers {
            self.report_close(&ctx, &h);
            // A later RELEASE for this handle finds nothing to release.
            let _ = self.release_inner(&ctx, &h);
        }
    }

    /// Report every handle the kernel never released (the connection went
    /// away with files still open), so no allowed open is left without its
    /// close report, and close the pool's idle handles. Called when the
    /// server stops.
    pub(crate) fn close_all(&self) {
        let open: Vec<Arc<OpenHandle>> = self
            .handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, h)| h)
            .collect();
        let ctx = Context::default();
        for h in open {
            self.report_close(&ctx, &h);
            let _ = self.release_inner(&ctx, &h);
        }
        let mut evicted = Vec::new();
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain_idle(&mut evicted);
        self.release_evicted(&ctx, evicted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_read_only_opens_are_pooled() {
        assert!(poolable(libc::O_RDONLY as u32));
        assert!(poolable((libc::O_RDONLY | libc::O_NONBLOCK) as u32));
        assert!(!poolable(libc::O_WRONLY as u32));
        assert!(!poolable(libc::O_RDWR as u32));
        assert!(!poolable((libc::O_RDONLY | libc::O_TRUNC) as u32));
        assert!(!poolable((libc::O_RDONLY | libc::O_DIRECT) as u32));
    }
}
