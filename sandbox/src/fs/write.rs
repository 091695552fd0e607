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
use super::handles::OpenHandle;
use super::layer::MediatedLayer;
use crate::file_refusal::RefusalRule;
use crate::{FileAccess, FileOp};

/// SHA-256 of no bytes (a file truncated to zero).
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

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
        self.take_quota(ctx, &open, u64::from(size))?;
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
        let written = self.inner.write(
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
        );
        let n = written.inspect_err(|_| self.quota.give_back(u64::from(size)))?;
        self.quota
            .give_back(u64::from(size).saturating_sub(n as u64));
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

    /// Take `n` bytes of the write quota for a change through `open`;
    /// EDQUOT when it is used up (reported once per handle).
    pub(super) fn take_quota(&self, ctx: &Context, open: &OpenHandle, n: u64) -> io::Result<()> {
        if self.quota.reserve(n) {
            return Ok(());
        }
        if open.first_quota_hit() {
            let usage = self.quota.usage();
            return Err(self.refuse(
                ctx,
                FileAccess::Write,
                FileOp::Open,
                open.path.as_bytes(),
                RefusalRule::WriteQuota,
                quota_detail(n, usage),
            ));
        }
        Err(io::Error::from_raw_os_error(libc::EDQUOT))
    }

    /// FALLOCATE through the kernel's `handle`: setuid bits dropped, the
    /// reserved range counted against the quota (punching holes and
    /// collapsing ranges free space and cost nothing), the running hash
    /// dropped so the close report re-hashes the file.
    pub(super) fn fallocate_counted(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let open = self.handle(handle).ok_or_else(eacces)?;
        if !open.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let frees =
            mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_COLLAPSE_RANGE) as u32 != 0;
        let cost = if frees { 0 } else { length };
        self.take_quota(ctx, &open, cost)?;
        let done = self.drop_setid(inode).and_then(|()| {
            self.inner
                .fallocate(ctx, inode, open.inner, mode, offset, length)
        });
        if done.is_err() {
            self.quota.give_back(cost);
        }
        open.hash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .invalidate();
        done
    }

    /// SETATTR on `inode`: mode and owner changes checked (`guard.rs`),
    /// `file.write` asked (under every name of a hard-linked file) and its
    /// outcome reported as a one-shot change, with the SHA-256 of the file
    /// after a size change; growth counted against the quota; a size
    /// change passed on to the running hashes of open handles.
    pub(super) fn setattr_mediated(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let (path, kind) = self.node(inode)?;
        let mut attr = attr;
        let mut valid = valid;
        let refused = self.setattr_rule(inode, kind, &mut attr, &mut valid)?;
        if let Some(rule) = refused {
            let detail = format!("mode {:o}", attr.st_mode & 0o7777);
            let detail = match rule {
                RefusalRule::Ownership => format!("owner {}:{}", attr.st_uid, attr.st_gid),
                _ => detail,
            };
            return Err(self.refuse(
                ctx,
                FileAccess::Write,
                FileOp::SetAttr,
                path.as_bytes(),
                rule,
                detail,
            ));
        }
        let names = self.names_to_decide(ctx, inode, FileAccess::Write, FileOp::SetAttr)?;
        let asks: Vec<(FileAccess, &str)> = names
            .iter()
            .map(|n| (FileAccess::Write, n.as_str()))
            .collect();
        let resizes = valid.contains(SetattrValid::SIZE);
        let new_size = u64::try_from(attr.st_size).unwrap_or(0);
        let inner_handle = handle.and_then(|h| self.inner_handle(h));
        let mut grown = 0;
        if resizes {
            let (now, _) = self.inner.getattr(ctx, inode, None)?;
            grown = new_size.saturating_sub(u64::try_from(now.st_size).unwrap_or(0));
            if !self.quota.reserve(grown) {
                let usage = self.quota.usage();
                return Err(self.refuse(
                    ctx,
                    FileAccess::Write,
                    FileOp::SetAttr,
                    path.as_bytes(),
                    RefusalRule::WriteQuota,
                    quota_detail(grown, usage),
                ));
            }
        }
        let result = self.change_hashed(ctx, FileOp::SetAttr, &asks, || {
            if resizes {
                self.drop_setid(inode)?;
            }
            let out = self.inner.setattr(ctx, inode, attr, inner_handle, valid)?;
            let sha = match (resizes, new_size) {
                (false, _) => None,
                (true, 0) => Some(EMPTY_SHA256),
                (true, _) => self.rehash(ctx, inode).ok(),
            };
            Ok((out, sha))
        });
        let mut out = result.inspect_err(|_| self.quota.give_back(grown))?;
        self.out_attr(&mut out.0);
        if resizes {
            self.truncated(inode, handle, new_size);
        }
        Ok(out)
    }
}

/// What a quota refusal says: the size asked and the quota's state.
fn quota_detail(asked: u64, usage: super::quota::WriteUsage) -> String {
    match usage.quota.limit() {
        Some(limit) => format!(
            "{asked} more bytes asked; {} of {limit} bytes used",
            usage.bytes_written
        ),
        None => format!("{asked} more bytes asked"),
    }
}
