//! Single-file exports as POSIX ustar archives (the `tar` crate): regular
//! files only, written with fixed metadata (mode 0600, owner 0, time 0) so
//! the same bundle always makes the same archive. The reader indexes the
//! members without loading the archive and refuses anything but regular
//! files and directories.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt as _;

/// Why an archive cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The name does not fit a ustar header.
    #[error("name cannot be stored in a tar header: {0}")]
    BadName(String),
    /// The archive is malformed or uses a feature the reader refuses.
    #[error("malformed tar archive at offset {offset}: {reason}")]
    Malformed {
        /// Byte offset of the member's header (or of the failure).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("tar archive: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes an archive of regular files.
pub struct TarWriter<W: Write> {
    inner: ::tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    /// Start an archive on `w`.
    pub fn new(w: W) -> Self {
        let mut inner = ::tar::Builder::new(w);
        inner.mode(::tar::HeaderMode::Deterministic);
        Self { inner }
    }

    /// Append one regular file.
    pub fn file(&mut self, name: &str, data: &[u8]) -> Result<(), TarError> {
        self.file_from(name, data.len() as u64, data)
    }

    /// Append one regular file of `len` bytes read from `data` (without
    /// holding it in memory). Fewer bytes than `len` is an error.
    pub fn file_from(&mut self, name: &str, len: u64, data: impl Read) -> Result<(), TarError> {
        let mut h = ::tar::Header::new_ustar();
        h.set_path(name)
            .map_err(|e| TarError::BadName(format!("{name}: {e}")))?;
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_size(len);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        let mut counted = Counted {
            inner: data.take(len),
            n: 0,
        };
        self.inner.append(&h, &mut counted)?;
        if counted.n != len {
            return Err(TarError::Malformed {
                offset: counted.n,
                reason: format!("{name}: {} of {len} bytes to archive", counted.n),
            });
        }
        Ok(())
    }

    /// Write the end-of-archive marker and hand back the writer.
    pub fn finish(self) -> Result<W, TarError> {
        Ok(self.inner.into_inner()?)
    }
}

/// A reader that counts what it gave.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.inner.read(buf)?;
        self.n += got as u64;
        Ok(got)
    }
}

impl<W: Write> std::fmt::Debug for TarWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TarWriter")
    }
}

/// The regular files of an archive: `(name, byte range of the contents)`.
/// Reads headers only. A member whose contents run past the end of the file,
/// or a missing end-of-archive marker, is a truncated archive: an error.
pub fn read_index(file: &mut File) -> Result<Vec<(String, Range<u64>)>, TarError> {
    let len = file.metadata()?.len();
    file.rewind()?;
    let mut out = Vec::new();
    let mut offset = 0u64;
    // Where the end-of-archive marker must start: after the last member.
    let mut next = 0u64;
    {
        let mut archive = ::tar::Archive::new(&mut *file);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| TarError::Malformed {
                offset,
                reason: e.to_string(),
            })?;
        for entry in entries {
            let entry = entry.map_err(|e| TarError::Malformed {
                offset: next,
                reason: format!("{e} (truncated or not a tar archive)"),
            })?;
            let start = entry.raw_file_position();
            offset = start.saturating_sub(512);
            let bad = |reason: String| TarError::Malformed { offset, reason };
            let size = entry
                .header()
                .entry_size()
                .map_err(|e| bad(e.to_string()))?;
            next = start.saturating_add(size.div_ceil(512).saturating_mul(512));
            match entry.header().entry_type() {
                ::tar::EntryType::Regular => {}
                ::tar::EntryType::Directory => continue,
                t => {
                    return Err(bad(format!(
                        "entry type {t:?} is not allowed (only regular files)"
                    )))
                }
            }
            let name = std::str::from_utf8(&entry.path_bytes())
                .map_err(|_| bad("name is not UTF-8".into()))?
                .to_string();
            let end = start
                .checked_add(size)
                .filter(|e| *e <= len)
                .ok_or_else(|| bad(format!("{name} runs past the end of the file (truncated)")))?;
            out.push((name, start..end));
        }
    }
    // Two zero blocks end an archive; without them it was cut short.
    let mut marker = [0u8; 1024];
    let ended = next.checked_add(1024).is_some_and(|e| e <= len)
        && file.read_exact_at(&mut marker, next).is_ok()
        && marker.iter().all(|b| *b == 0);
    if !ended {
        return Err(TarError::Malformed {
            offset: next,
            reason: "archive ends without the end-of-archive marker (truncated)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.tar");
        let mut w = TarWriter::new(File::create(&p).unwrap());
        for (n, b) in files {
            w.file(n, b).unwrap();
        }
        w.finish().unwrap();
        (d, p)
    }

    fn contents(p: &std::path::Path, r: &Range<u64>) -> Vec<u8> {
        let b = std::fs::read(p).unwrap();
        b[r.start as usize..r.end as usize].to_vec()
    }

    #[test]
    fn round_trip_with_long_names_and_same_bytes_every_time() {
        let long = format!("tile/entries/{}x.p/7", "x123/".repeat(25));
        let files: [(&str, &[u8]); 3] = [("a", b"one"), (&long, b""), ("b/c", &[7u8; 1000])];
        let (_d, p) = archive(&files);
        let idx = read_index(&mut File::open(&p).unwrap()).unwrap();
        assert_eq!(idx.len(), 3);
        for ((name, body), (got, r)) in files.iter().zip(&idx) {
            assert_eq!(name, got);
            assert_eq!(&contents(&p, r), body);
        }
        let (_d2, p2) = archive(&files);
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&p2).unwrap());
    }

    #[test]
    fn a_member_read_from_a_reader_is_the_same_and_a_short_one_is_an_error() {
        let body = vec![9u8; 70_000];
        let mut a = TarWriter::new(Vec::new());
        a.file("x", &body).unwrap();
        let mut b = TarWriter::new(Vec::new());
        b.file_from("x", body.len() as u64, &body[..]).unwrap();
        assert_eq!(a.finish().unwrap(), b.finish().unwrap());
        // Fewer bytes than the header says: never a silently short member.
        let mut c = TarWriter::new(Vec::new());
        let e = c.file_from("short", 10, &b"abc"[..]).unwrap_err();
        assert!(e.to_string().contains("short: 3 of 10 bytes"), "{e}");
        // More bytes than said: only `len` are taken.
        let mut d = TarWriter::new(Vec::new());
        d.file_from("x", 3, &b"abcdef"[..]).unwrap();
        let mut e2 = TarWriter::new(Vec::new());
        e2.file("x", b"abc").unwrap();
        assert_eq!(d.finish().unwrap(), e2.finish().unwrap());
    }

    #[test]
    fn truncation_and_links_are_refused() {
        let (_d, p) = archive(&[("a", b"one"), ("b", &[1u8; 600])]);
        let full = std::fs::read(&p).unwrap();
        for cut in [full.len() - 1024, full.len() - 512, 1024 + 300, 100] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let e = read_index(&mut File::open(&p).unwrap()).unwrap_err();
            assert!(e.to_string().contains("truncated"), "{cut}: {e}");
        }
        let mut b = ::tar::Builder::new(Vec::new());
        let mut h = ::tar::Header::new_ustar();
        h.set_entry_type(::tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "l", "/etc/shadow").unwrap();
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        let e = read_index(&mut File::open(&p).unwrap()).unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
    }
}
