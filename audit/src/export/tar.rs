//! A minimal POSIX ustar writer and reader for single-file exports: regular
//! files and directories only, no links, no extensions. Enough for a bundle
//! whose names the exporter chooses; the reader rejects anything else.

use std::io::Write;

const BLOCK: usize = 512;

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// Why a name cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The name does not fit ustar's 100 + 155 bytes.
    #[error("name too long for a tar header: {0}")]
    NameTooLong(String),
    /// The archive is malformed or uses a feature the reader refuses.
    #[error("malformed tar archive at offset {offset}: {reason}")]
    Malformed {
        /// Byte offset of the header.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error("writing the tar archive: {0}")]
    Io(#[from] std::io::Error),
}

fn header(name: &str, size: u64) -> Result<[u8; BLOCK], TarError> {
    let mut h = [0u8; BLOCK];
    let (prefix, base) = if name.len() <= 100 {
        ("", name)
    } else {
        let cut = name[..name.len().min(156)]
            .rfind('/')
            .ok_or_else(|| TarError::NameTooLong(name.into()))?;
        (&name[..cut], &name[cut + 1..])
    };
    if base.len() > 100 || prefix.len() > 155 {
        return Err(TarError::NameTooLong(name.into()));
    }
    h[..base.len()].copy_from_slice(base.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Append one regular file.
pub fn write_file(w: &mut impl Write, name: &str, data: &[u8]) -> Result<(), TarError> {
    w.write_all(&header(name, data.len() as u64)?)?;
    w.write_all(data)?;
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    w.write_all(&vec![0u8; pad])?;
    Ok(())
}

/// Write the end-of-archive marker.
pub fn finish(w: &mut impl Write) -> Result<(), TarError> {
    w.write_all(&[0u8; BLOCK * 2])?;
    Ok(())
}

/// The regular files of an archive: `(name, byte range of the contents)`.
pub fn read_index(data: &[u8]) -> Result<Vec<(String, std::ops::Range<usize>)>, TarError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let bad = |offset: usize, r: &str| TarError::Malformed {
        offset,
        reason: r.to_string(),
    };
    loop {
        let h = data
            .get(off..off + BLOCK)
            .ok_or_else(|| bad(off, "archive ends without the end marker (truncated)"))?;
        if h.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        let mut check = h.to_vec();
        check[148..156].copy_from_slice(b"        ");
        let sum: u64 = check.iter().map(|b| u64::from(*b)).sum();
        let field =
            std::str::from_utf8(&h[148..156]).map_err(|_| bad(off, "bad checksum field"))?;
        let stored = u64::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|_| bad(off, "bad checksum field"))?;
        if stored != sum {
            return Err(bad(off, "header checksum mismatch"));
        }
        let cstr = |b: &[u8]| -> Result<String, TarError> {
            let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
            String::from_utf8(b[..end].to_vec()).map_err(|_| bad(off, "name is not UTF-8"))
        };
        let base = cstr(&h[..100])?;
        let prefix = cstr(&h[345..500])?;
        let name = if prefix.is_empty() {
            base
        } else {
            format!("{prefix}/{base}")
        };
        let size_s = std::str::from_utf8(&h[124..136]).map_err(|_| bad(off, "bad size"))?;
        let size = usize::from_str_radix(size_s.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|_| bad(off, "bad size"))?;
        match h[156] {
            b'0' | 0 => {}
            b'5' => {
                off += BLOCK;
                continue;
            }
            t => {
                return Err(bad(
                    off,
                    &format!(
                        "entry type {:?} is not allowed (only regular files)",
                        t as char
                    ),
                ))
            }
        }
        let start = off + BLOCK;
        let end = start
            .checked_add(size)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| bad(off, "file runs past the end (truncated)"))?;
        out.push((name, start..end));
        off = start + size.div_ceil(BLOCK) * BLOCK;
    }
}
