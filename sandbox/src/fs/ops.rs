//! `FileSystem` for [`MediatedLayer`]: which operation asks which access.
//!
//! | FUSE op                      | asks                                       |
//! |------------------------------|--------------------------------------------|
//! | lookup                       | `file.list` on the child path              |
//! | opendir                      | `file.list` on the directory (root: `.`)   |
//! | open (read / write / rdwr)   | `file.read` / `file.write` / both          |
//! | open for exec                | `file.read`, op `Exec`                     |
//! | create, mknod                | `file.write` (+ `file.read` for O_RDWR)    |
//! | mkdir, symlink               | `file.write` on the new path               |
//! | link                         | `file.read` + `file.write` on every source name, `file.write` new name |
//! | unlink, rmdir                | `file.delete`                              |
//! | rename                       | `file.delete` source, `file.write` target  |
//! | setattr                      | `file.write`                               |
//! | setxattr, removexattr        | refused (`guard.rs`)                       |
//!
//! Opens, setattr and links of a hard-linked file ask under every name
//! (`aliases.rs`); what the workspace may never hold (setuid bits, device
//! nodes, other owners…) is refused before anything is asked (`guard.rs`),
//! and every refusal is reported to the mediator.
//!
//! Reads, writes, getattr, readlink, readdir on an already-decided inode or
//! handle are not asked again: the decision was made once, at lookup/open.
//!
//! Opens and creates are reported when their handle closes; one-shot
//! changes (mkdir, symlink, link, unlink, rmdir, rename, setattr and the
//! xattr calls) report their outcome — done, the errno, or abandoned when a
//! later ask was refused — right after the operation (`decide.rs`).

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::SetattrValid;
use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn, FsOptions, OpenOptions};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, GetxattrReply, IoctlData, ListxattrReply, ZeroCopyReader,
    ZeroCopyWriter,
};

use super::decide::{eacces, ebadf, open_accesses};
use super::guard::{creation_mode, is_device, with_private_umask, WORKSPACE_UMASK};
use super::handles::OpenHandle;
use super::layer::MediatedLayer;
use super::room::LockedDir;
use crate::file_refusal::RefusalRule;
use crate::{FileAccess, FileOp};

impl FileSystem for MediatedLayer {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let mut opts = with_private_umask(|| self.inner.init(capable))?;
        // READDIRPLUS would hand the kernel inodes (and attributes) for every
        // entry of a listed directory without a lookup, i.e. without asking
        // `file.list` per name. Plain READDIR + LOOKUP keeps mediation complete.
        opts.remove(FsOptions::DO_READDIRPLUS | FsOptions::READDIRPLUS_AUTO);
        // Let O_TRUNC travel with the open (one decided request instead of an
        // open plus a separately decided setattr).
        if capable.contains(FsOptions::ATOMIC_O_TRUNC) {
            opts |= FsOptions::ATOMIC_O_TRUNC;
        }
        for wanted in [FsOptions::PARALLEL_DIROPS, FsOptions::MAX_PAGES] {
            if capable.contains(wanted) {
                opts |= wanted;
            }
        }
        Ok(opts)
    }

    fn destroy(&self) {
        with_private_umask(|| self.inner.destroy())
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let path = self.child_path(ctx, parent, name, FileAccess::List, FileOp::Lookup)?;
        self.ask(ctx, FileAccess::List, FileOp::Lookup, &path)?;
        self.fd_room(
            ctx,
            FileAccess::List,
            FileOp::Lookup,
            &path,
            LockedDir::Parent(parent),
        )?;
        let entry = self.inner.lookup(ctx, parent, name)?;
        self.remember(parent, name, path, &entry);
        Ok(self.out_entry(entry))
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        let gone = self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget(inode, count);
        if gone {
            self.forgotten(ctx, inode);
        }
        self.inner.forget(ctx, inode, count)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        let gone: Vec<u64> = {
            let mut nodes = self
                .nodes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            requests
                .iter()
                .filter(|(inode, count)| nodes.forget(*inode, *count))
                .map(|(inode, _)| *inode)
                .collect()
        };
        for inode in gone {
            self.forgotten(ctx, inode);
        }
        self.inner.batch_forget(ctx, requests)
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let handle = handle.and_then(|h| self.inner_handle(h));
        let (mut st, timeout) = self.inner.getattr(ctx, inode, handle)?;
        self.saw_attr(inode, &st);
        self.out_attr(&mut st);
        Ok((st, timeout))
    }

    fn id_remap(&self, ctx: &mut Context) -> io::Result<()> {
        if let Some(map) = self.idmap.get() {
            map.requester_to_host(&mut ctx.uid, &mut ctx.gid);
        }
        Ok(())
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.setattr_mediated(ctx, inode, attr, handle, valid)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, inode)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let path = self.child_path(ctx, parent, name, FileAccess::Write, FileOp::Symlink)?;
        self.fd_room(
            ctx,
            FileAccess::Write,
            FileOp::Symlink,
            &path,
            LockedDir::Parent(parent),
        )?;
        let ask = [(FileAccess::Write, path.as_str())];
        let entry = self.change(ctx, FileOp::Symlink, &ask, || {
            let made = self.inner.symlink(ctx, linkname, parent, name)?;
            self.settle_new(made)
        })?;
        self.remember(parent, name, path, &entry);
        Ok(self.out_entry(entry))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let path = self.child_path(ctx, parent, name, FileAccess::Write, FileOp::Create)?;
        if is_device(mode) {
            let kind = if mode & libc::S_IFMT == libc::S_IFBLK {
                "a block device"
            } else {
                "a character device"
            };
            return Err(self.refuse(
                ctx,
                FileAccess::Write,
                FileOp::Create,
                path.as_bytes(),
                RefusalRule::DeviceNode,
                kind.into(),
            ));
        }
        let mode = creation_mode(mode, umask, WORKSPACE_UMASK);
        self.fd_room(
            ctx,
            FileAccess::Write,
            FileOp::Create,
            &path,
            LockedDir::Parent(parent),
        )?;
        let ticket = self.ask(ctx, FileAccess::Write, FileOp::Create, &path)?;
        let made = self
            .inner
            .mknod(ctx, parent, name, mode, rdev, 0)
            .and_then(|e| self.settle_new(e));
        // A node made without a handle: its decision closes now.
        self.closed_unused(ticket, &path);
        let entry = made?;
        self.remember(parent, name, path, &entry);
        Ok(self.out_entry(entry))
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let path = self.child_path(ctx, parent, name, FileAccess::Write, FileOp::Mkdir)?;
        let mode = creation_mode(libc::S_IFDIR | (mode & 0o7777), umask, WORKSPACE_UMASK) & 0o7777;
        self.fd_room(
            ctx,
            FileAccess::Write,
            FileOp::Mkdir,
            &path,
            LockedDir::Parent(parent),
        )?;
        let ask = [(FileAccess::Write, path.as_str())];
        let entry = self.change(ctx, FileOp::Mkdir, &ask, || {
            let made = self.inner.mkdir(ctx, parent, name, mode, 0)?;
            self.settle_new(made)
        })?;
        self.remember(parent, name, path, &entry);
        Ok(self.out_entry(entry))
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        let path = self.child_path(ctx, parent, name, FileAccess::Delete, FileOp::Unlink)?;
        let ask = [(FileAccess::Delete, path.as_str())];
        self.change(ctx, FileOp::Unlink, &ask, || {
            self.inner.unlink(ctx, parent, name)
        })?;
        self.name_removed(&path);
        Ok(())
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        let path = self.child_path(ctx, parent, name, FileAccess::Delete, FileOp::Rmdir)?;
        let ask = [(FileAccess::Delete, path.as_str())];
        self.change(ctx, FileOp::Rmdir, &ask, || {
            self.inner.rmdir(ctx, parent, name)
        })?;
        self.name_removed(&path);
        Ok(())
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.rename_mediated(ctx, olddir, oldname, newdir, newname, flags)
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        self.link_mediated(ctx, inode, newparent, newname)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let (path, kind) = self.node(inode)?;
        if kind == libc::S_IFLNK {
            // The kernel resolves symlinks itself; an OPEN on a link inode
            // would mean following it on the host side. Never.
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let (accesses, op, writable) = open_accesses(flags);
        let first = accesses.first().copied().unwrap_or(FileAccess::Read);
        if writable {
            // A write must not reach a name we do not know of: the host's
            // link count now, not when the kernel looked the file up.
            let (st, _) = self.inner.getattr(ctx, inode, None)?;
            self.saw_attr(inode, &st);
        }
        let names = self.names_to_decide(ctx, inode, first, op)?;
        let (tickets, command) = self.ask_all(ctx, &accesses, op, &names)?;
        if writable {
            // A setuid file written by the (privileged) server would keep
            // its bits: drop them first, as the kernel would.
            if let Err(e) = self.drop_setid(inode) {
                for (t, p) in tickets {
                    self.closed_unused(t, &p);
                }
                return Err(e);
            }
        }
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .touch(inode);
        let open = OpenHandle::new(inode, path, tickets, writable, command);
        if flags & libc::O_TRUNC as u32 != 0 {
            // Emptied by this open: a change with a hash after it, even if
            // nothing is written.
            open.hash
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .truncated(0, true);
        }
        let pool_ok = kind == libc::S_IFREG;
        let (handle, opts) = self.open_tracked(ctx, open, flags, fuse_flags, pool_ok)?;
        Ok((Some(handle), opts, None))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let path = self.child_path(ctx, parent, name, FileAccess::Write, FileOp::Create)?;
        self.create_tracked(ctx, parent, name, path, args)
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        let open = self.handle(handle).ok_or_else(eacces)?;
        let n = self
            .inner
            .read(ctx, inode, open.inner, w, size, offset, lock_owner, flags)?;
        open.add_read(n);
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.write_hashed(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(&self, _ctx: &Context, _inode: u64, _handle: u64, _lock_owner: u64) -> io::Result<()> {
        // Writes are synchronous (no writeback cache) and the kernel writes
        // back mmap'd pages before it would send FLUSH, so FLUSH has nothing
        // to do here; ENOSYS tells the kernel to stop sending it, saving a
        // round trip on every close(2).
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let inner = self.inner_handle(handle).ok_or_else(ebadf)?;
        self.inner.fsync(ctx, inode, datasync, inner)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.fallocate_counted(ctx, inode, handle, mode, offset, length)
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        // The passthrough takes no locks or flushes at release: the inner
        // handle's release needs none of the kernel's arguments.
        let _ = (inode, flags, flush, flock_release, lock_owner);
        self.close(ctx, handle)
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, inode)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        // Capabilities (`security.capability`), ACLs granting more than the
        // mode, and every other attribute: the workspace takes none.
        let _ = (value, flags);
        Err(self.xattr_refused(ctx, inode, name, "setxattr"))
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.inner.getxattr(ctx, inode, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.inner.listxattr(ctx, inode, size)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        Err(self.xattr_refused(ctx, inode, name, "removexattr"))
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let (path, _) = self.node(inode)?;
        self.ask(ctx, FileAccess::List, FileOp::ReadDir, &path)?;
        self.inner.opendir(ctx, inode, flags)
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner
            .readdir(ctx, inode, handle, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        _inode: u64,
        _handle: u64,
        _size: u32,
        _offset: u64,
        _add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        // Never negotiated (see `init`): it would bypass per-name lookups.
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.inner.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        self.inner.releasedir(ctx, inode, flags, handle)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        self.inner.access(ctx, inode, mask)
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _ctx: &Context,
        _inode: u64,
        _handle: u64,
        _flags: u32,
        _cmd: u32,
        _data: IoctlData,
        _out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        // Nothing in the workspace is a device: no ioctl has a meaning here.
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let inner = self.inner_handle(handle).ok_or_else(ebadf)?;
        self.inner.lseek(ctx, inode, inner, offset, whence)
    }
}
