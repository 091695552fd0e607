//! Changes through decided handles: the byte count and the running
//! SHA-256 of writes, and what a truncate does to the running hashes.

use std::io;
use std::sync::{Arc, PoisonError};

use fuse_backend_rs::api::filesystem::{Context, FileSystem, ZeroCopyReader};

use super::bufio::SliceReader;
use super::decide::eacces;
use super::layer::MediatedLayer;

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
}
