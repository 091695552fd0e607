//! Small adapters between byte buffers and fuse-backend-rs's zero-copy
//! reader/writer traits, used where the policy layer must *see* the bytes
//! (hashing written data) rather than let them flow fd-to-fd.

use std::io;

use fuse_backend_rs::api::filesystem::{ZeroCopyReader, ZeroCopyWriter};
use fuse_backend_rs::file_buf::FileVolatileSlice;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;

/// A `ZeroCopyReader` over an owned buffer: the data of one FUSE write that
/// the layer has already copied out (to hash it) and now hands to the inner
/// file system.
pub(crate) struct SliceReader<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceReader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceReader { buf, pos: 0 }
    }
}

impl io::Read for SliceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl ZeroCopyReader for SliceReader<'_> {
    fn read_to(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let end = self.pos.saturating_add(count).min(self.buf.len());
        let Some(chunk) = self.buf.get_mut(self.pos..end) else {
            return Ok(0);
        };
        if chunk.is_empty() {
            return Ok(0);
        }
        // SAFETY: `chunk` is an exclusive borrow of memory this reader owns for
        // the duration of the call; nothing else reads or writes it meanwhile,
        // so the volatile-access requirement holds trivially.
        let slice = unsafe { FileVolatileSlice::from_mut_slice(chunk) };
        let n = f.write_at_volatile(slice, off)?;
        self.pos += n;
        Ok(n)
    }
}

/// A `ZeroCopyWriter` that feeds whatever the inner file system reads into a
/// SHA-256 context (used to re-hash a file at close).
pub(crate) struct HashingSink<'a> {
    ctx: &'a mut ring::digest::Context,
    buf: Vec<u8>,
    /// Bytes fed so far.
    pub total: u64,
}

impl<'a> HashingSink<'a> {
    /// A sink with a scratch buffer of `chunk` bytes.
    pub fn new(ctx: &'a mut ring::digest::Context, chunk: usize) -> Self {
        HashingSink {
            ctx,
            buf: vec![0; chunk],
            total: 0,
        }
    }
}

impl io::Write for HashingSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.ctx.update(data);
        self.total += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for HashingSink<'_> {
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let n = count.min(self.buf.len());
        let Some(chunk) = self.buf.get_mut(..n) else {
            return Ok(0);
        };
        // SAFETY: the scratch buffer is owned by this sink and exclusively
        // borrowed here; no other access happens while the file reads into it.
        let slice = unsafe { FileVolatileSlice::from_mut_slice(chunk) };
        let got = f.read_at_volatile(slice, off)?;
        let data = self.buf.get(..got).unwrap_or_default();
        self.ctx.update(data);
        self.total += got as u64;
        Ok(got)
    }

    fn available_bytes(&self) -> usize {
        self.buf.len()
    }
}
