//! The SHA-256 of the running executable, for session attestations.
//!
//! Hashed once, streaming (a release binary with debug information is
//! hundreds of megabytes: reading it whole cost ~200 ms and as much memory
//! on every one-shot command), and cached in a file keyed by what
//! identifies the file's content without reading it: device, inode, size,
//! modification time *and* change time (`ctime`). Rewriting the executable
//! in place changes `ctime`, which no unprivileged call can set back (unlike
//! `mtime`, which `utimes` can); a new file at a reused inode number gets a
//! new `ctime` too. The cache is trusted for nothing but speed: it is read
//! only when it is a regular file owned by this user and writable by no one
//! else, otherwise the executable is hashed again.
//!
//! The executable hashed is the running one (`/proc/self/exe`), even when
//! the file at its path was replaced by an upgrade since it started.

use std::io::{Read, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use stele_attest::private_fs;

use super::ExportError;

/// The cache file's name (in the folder the caller gives: stele's state).
pub const CACHE_FILE: &str = "binary-sha256.cache";
/// Entries kept (several stele binaries may share a state folder).
const KEEP: usize = 8;

/// What identifies the executable's content without reading it.
fn key(m: &std::fs::Metadata) -> String {
    format!(
        "v1 {} {} {} {}.{} {}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Hex SHA-256 of the running executable; cached in `cache_dir` when given.
pub fn binary_sha256(cache_dir: Option<&Path>) -> Result<String, ExportError> {
    let exe = running_executable();
    let mut f = std::fs::File::open(&exe).map_err(|e| ExportError::io(&exe, e))?;
    let meta = f.metadata().map_err(|e| ExportError::io(&exe, e))?;
    let k = key(&meta);
    let cache = cache_dir.map(|d| d.join(CACHE_FILE));
    let lines = cache.as_deref().map(read_trusted).unwrap_or_default();
    if let Some(hex) = lines.iter().find_map(|l| {
        l.strip_prefix(&k)
            .and_then(|rest| rest.strip_prefix(' '))
            .filter(|h| h.len() == 64 && h.bytes().all(crate::rules::is_lower_hex))
    }) {
        return Ok(hex.to_string());
    }
    let digest = hash_stream(&mut f).map_err(|e| ExportError::io(&exe, e))?;
    if let Some(c) = &cache {
        let mut keep: Vec<String> = lines
            .into_iter()
            .filter(|l| !l.starts_with(&k))
            .take(KEEP - 1)
            .collect();
        keep.insert(0, format!("{k} {digest}"));
        // Only a speed-up: failing to store it is not an error.
        if let Err(e) = write_cache(c, &keep) {
            tracing::debug!(
                "could not cache the executable's digest in {}: {e}",
                c.display()
            );
        }
    }
    Ok(digest)
}

fn running_executable() -> std::path::PathBuf {
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe().unwrap_or_else(|_| proc_exe.to_path_buf())
    }
}

fn hash_stream(f: &mut std::fs::File) -> std::io::Result<String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// The cache's lines, if the file may be believed (see the module docs).
fn read_trusted(path: &Path) -> Vec<String> {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Vec::new();
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.is_file() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Vec::new();
    }
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn write_cache(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = private_fs::create_file(&tmp)?;
    for l in lines {
        writeln!(f, "{l}")?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn sha_of_exe() -> String {
        let b = std::fs::read("/proc/self/exe").unwrap();
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &b).as_ref())
    }

    #[test]
    fn hashes_once_then_uses_the_cache_and_never_a_cache_it_cannot_trust() {
        let d = tempfile::tempdir().unwrap();
        let want = sha_of_exe();
        assert_eq!(binary_sha256(None).unwrap(), want);
        assert_eq!(binary_sha256(Some(d.path())).unwrap(), want);
        let cache = d.path().join(CACHE_FILE);
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&cache).unwrap();
        assert!(text.ends_with(&format!(" {want}\n")), "{text}");

        // A cache entry for this very file is used as it is (that is the
        // speed-up)...
        let lie = "0".repeat(64);
        let forged = text.replace(&want, &lie);
        std::fs::write(&cache, &forged).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(binary_sha256(Some(d.path())).unwrap(), lie);
        // ...but not when others may write the cache...
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(binary_sha256(Some(d.path())).unwrap(), want);
        // ...nor when the key no longer matches the file (a change of
        // ctime, size or inode makes a new key).
        let stale = forged.replacen("v1 ", "v1 9", 1);
        std::fs::write(&cache, &stale).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(binary_sha256(Some(d.path())).unwrap(), want);
        // A cache that is a symbolic link is not followed.
        std::fs::remove_file(&cache).unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::write(&elsewhere, forged).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &cache).unwrap();
        assert_eq!(binary_sha256(Some(d.path())).unwrap(), want);
    }

    #[test]
    fn the_key_changes_when_the_file_changes_in_place() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bin");
        std::fs::write(&p, b"one").unwrap();
        let before = key(&std::fs::metadata(&p).unwrap());
        // Same size, mtime put back: only ctime tells.
        let m = std::fs::metadata(&p).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"two").unwrap();
        let t = std::fs::FileTimes::new().set_modified(m.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_times(t)
            .unwrap();
        let after = key(&std::fs::metadata(&p).unwrap());
        assert_eq!(
            std::fs::metadata(&p).unwrap().mtime(),
            m.mtime(),
            "mtime restored"
        );
        assert_ne!(before, after, "ctime must differ");
    }
}
