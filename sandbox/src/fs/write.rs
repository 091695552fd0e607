//! Changes through decided handles: the byte count and the running
//! SHA-256 of writes, and what a truncate does to the running hashes;
//! SETATTR (a one-shot change, decided and reported on its own).

use std::io;
use std::sync::{Arc, PoisonError};

use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, SetattrValid};
use fuse_backend_rs::api::filesystem::{Context, FileSystem, ZeroCopyReader};

use super::bufio::SliceReader;
use super::decide::eacces;
use super::layer::MediatedLayer;
use crate::{FileAccess, FileOp};

impl MediatedLayer {
    /// A WRITE on the kernel's `handle`: refused unless it was opened for
    /// writing; counted; hashed while writes arrive in order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_hashed(
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
        let open = self.handle(handle).ok_or_else(eacces)?;
        if !open.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let mut hash = open
            .hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // While writes are sequential, copy each one out once so it can be
        // hashed as it is written; otherwise let it flow straight through.
        let sequential = hash.is_sequential_at(offset);
        let mut data = Vec::new();
        let mut copied;
        let reader: &mut dyn ZeroCopyReader = if sequential {
            data = vec![0u8; size as usize];
            io::Read::read_exact(r, &mut data)?;
            copied = SliceReader::new(&mut data);
            &mut copied
        } else {
            r
        };
        let n = self.inner.write(
            ctx,
            inode,
            open.inner,
            reader,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )?;
        if sequential {
            hash.wrote(offset, data.get(..n).unwrap_or_default());
        } else {
            hash.wrote_unseen();
        }
        drop(hash);
        open.add_written(n);
        Ok(n)
    }

    /// `inode` was truncated (or extended) to `size`, through the kernel's
    /// `handle` if given: every handle's running hash learns of it.
    pub(super) fn truncated(&self, inode: u64, handle: Option<u64>, size: u64) {
        for open in self.handles_on(inode) {
            let mine =
                handle.is_some_and(|h| self.handle(h).is_some_and(|o| Arc::ptr_eq(&o, &open)));
            open.hash
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .truncated(size, mine);
        }
    }

    /// SETATTR on `inode`: `file.write` asked and its outcome reported as a
    /// one-shot change; ownership translated to the host; a size change
    /// passed on to the running hashes.
    pub(super) fn setattr_mediated(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let (path, _) = self.node(inode)?;
        let mut attr = attr;
        let ask = [(FileAccess::Write, path.as_str())];
        let mut out = self.change(ctx, FileOp::SetAttr, &ask, || {
            if let Some(map) = self.idmap.get() {
                let uid = valid.contains(SetattrValid::UID).then_some(attr.st_uid);
                let gid = valid.contains(SetattrValid::GID).then_some(attr.st_gid);
                let (uid, gid) = map.chown_to_host(uid, gid)?;
                attr.st_uid = uid.unwrap_or(attr.st_uid);
                attr.st_gid = gid.unwrap_or(attr.st_gid);
            }
            let inner_handle = handle.and_then(|h| self.inner_handle(h));
            self.inner.setattr(ctx, inode, attr, inner_handle, valid)
        })?;
        self.out_attr(&mut out.0);
        if valid.contains(SetattrValid::SIZE) {
            self.truncated(inode, handle, u64::try_from(attr.st_size).unwrap_or(0));
        }
        Ok(out)
    }
}
