//! Where stele keeps its own files by default (XDG base directories), and
//! how it creates its private folders.
//!
//! Every location is absolute: a relative `STELE_STATE_DIR` is taken
//! against the current folder, and XDG variables that are empty or relative
//! are ignored (as the XDG specification asks), so that where stele's state
//! lives never depends on which folder a command was started in.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// An XDG base-directory variable: set, non-empty and absolute.
fn xdg(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// `p` made absolute against the current folder (lexically: `..` and
/// symlinks are resolved later, by whoever compares paths).
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// `$HOME`, when set and absolute.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The state directory: `$STELE_STATE_DIR`, else `$XDG_STATE_HOME/stele`,
/// else `$HOME/.local/state/stele`, else `./.stele-state` (made absolute).
pub fn state_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_STATE_DIR").filter(|p| !p.is_empty()) {
        return absolute(PathBuf::from(p));
    }
    if let Some(p) = xdg("XDG_STATE_HOME") {
        return p.join("stele");
    }
    if let Some(home) = home() {
        return home.join(".local/state/stele");
    }
    absolute(PathBuf::from(".stele-state"))
}

/// Default audit database path.
pub fn default_db() -> PathBuf {
    state_dir().join("audit.db")
}

/// Default signing key path.
pub fn default_key() -> PathBuf {
    state_dir().join("keys/log.key")
}

/// The user's configuration folder: `$XDG_CONFIG_HOME/stele`, else
/// `~/.config/stele` (the user's `config.toml` and `policy/` live here).
pub fn user_config_dir() -> Option<PathBuf> {
    if let Some(p) = xdg("XDG_CONFIG_HOME") {
        return Some(p.join("stele"));
    }
    home().map(|h| h.join(".config/stele"))
}

/// The micro-VM image store: `$STELE_VM_IMAGES`, else `$STATE/vm/images`.
pub fn vm_image_store() -> PathBuf {
    match std::env::var_os("STELE_VM_IMAGES").filter(|p| !p.is_empty()) {
        Some(p) => absolute(PathBuf::from(p)),
        None => state_dir().join("vm/images"),
    }
}

/// Where `stele demo` puts its folders when given no `--dir`:
/// `$XDG_DATA_HOME/stele/demo`, else `~/.local/share/stele/demo`. Not under
/// the state directory: a demo's workspace is granted to a sandbox, and no
/// workspace may lie inside stele's state.
pub fn demo_base() -> PathBuf {
    if let Some(p) = xdg("XDG_DATA_HOME") {
        return p.join("stele/demo");
    }
    match home() {
        Some(h) => h.join(".local/share/stele/demo"),
        None => absolute(PathBuf::from("stele-demo")),
    }
}

/// Mode of stele's private folders (state, keys, exports, demo state).
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of stele's private files (keys, databases, scripts, policies it writes).
pub const PRIVATE_FILE: u32 = 0o600;

/// Create `dir` and any missing parents as private folders (0700 whatever
/// the umask: the mode is set explicitly after creation, since a running
/// file server may have set this process's umask to 0). Folders that
/// already exist are left as they are.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match std::fs::create_dir(p) {
            Ok(()) => std::fs::set_permissions(p, std::fs::Permissions::from_mode(PRIVATE_DIR))?,
            // Made by someone else meanwhile: theirs, left alone.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write `contents` to a new private file (0600 whatever the umask).
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_private(path, contents)?.sync_all()
}

/// [`write_private_file`] without the flush: for caches that a crash may
/// lose (they are rebuilt from the log).
pub fn write_private_cache(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_private(path, contents).map(drop)
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<std::fs::File> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    // The mode given to open(2) is masked by the umask, and an existing
    // file keeps its own: set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    f.write_all(contents)?;
    Ok(f)
}

/// Set the process's umask to 0077 (files 0600, folders 0700 at most) for
/// commands that create files through other crates and start no sandbox
/// (`keys init`, `audit init`, `audit export`, `witness serve`): a
/// permissive umask cannot make what they write readable by others.
pub fn private_umask() {
    // SAFETY: umask(2) only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn private_dirs_and_files_get_explicit_modes() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        // The usual umask (022) would give 0755 folders and 0644 files;
        // the modes are set explicitly. (Changing the umask here would
        // race with the other tests of this binary: the end-to-end test
        // file_modes_e2e runs stele under umask 0000.)
        ensure_private_dir(&deep).unwrap();
        let f = d.path().join("a/b/c/f");
        write_private_file(&f, b"x").unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            let m = std::fs::metadata(d.path().join(p))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o700, "{p}");
        }
        let m = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o600);
        // An existing folder is left alone.
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&open).unwrap();
        let m = std::fs::metadata(&open).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o755);
    }
}
