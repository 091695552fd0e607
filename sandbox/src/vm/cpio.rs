//! A writer for the `newc` cpio format the kernel unpacks as an initramfs.
//!
//! Archives may be concatenated: the kernel unpacks one after the other, so
//! the host appends a small archive holding the agent to the image's base
//! initramfs without rebuilding it.

use std::io::{self, Write};

/// Appends entries to an in-memory `newc` archive.
#[derive(Debug, Default)]
pub(crate) struct CpioWriter {
    out: Vec<u8>,
    ino: u32,
}

impl CpioWriter {
    /// A directory entry (parents must be added first).
    pub fn dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        self.entry(name, libc::S_IFDIR | mode, &[])
    }

    /// A regular file entry.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, libc::S_IFREG | mode, data)
    }

    /// A symbolic link entry.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, libc::S_IFLNK | 0o777, target.as_bytes())
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry too large"))?;
        let namesize = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio name too long"))?;
        self.ino += 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0];
        self.out.write_all(b"070701")?;
        for f in fields {
            write!(self.out, "{f:08x}")?;
        }
        self.out.write_all(name.as_bytes())?;
        self.out.push(0);
        self.pad();
        self.out.write_all(data)?;
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Close the archive and return its bytes.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.entry("TRAILER!!!", 0, &[])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_terminated() {
        let mut w = CpioWriter::default();
        w.dir("bin", 0o755).unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("#!/bin/sh"));
    }
}
