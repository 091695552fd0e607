//! Files and folders only their owner may read: what stele writes on the host
//! holds prompts, file contents and keys.
//!
//! Folders stele creates are 0700 and files 0600 whatever the process umask
//! (a umask only removes bits, and an odd one such as 0277 would leave a key
//! its owner cannot write, so the mode is set explicitly after creation).
//! Existing files and folders that are more open are tightened by
//! [`tighten`] when stele opens them for writing; the caller says so.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of every folder stele creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file stele creates.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` and any missing parents; each folder created here gets mode
/// [`DIR_MODE`] (existing ones are left as they are: a parent such as
/// `/tmp` is not stele's to change).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)),
        // Created meanwhile by someone else: theirs, as it is.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create a new file (never an existing one) with mode [`FILE_MODE`],
/// open for writing.
pub fn create_new_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Create or truncate a file with mode [`FILE_MODE`] (a scratch or
/// temporary file about to be renamed into place), open for writing.
pub fn create_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Remove group and other permission bits from an existing file or folder.
/// Returns the old mode when it changed anything (the caller reports it),
/// `None` when it was already private or does not exist.
pub fn tighten(path: &Path) -> io::Result<Option<u32>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link (expected the file itself)",
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    let want = mode & 0o700;
    std::fs::set_permissions(path, Permissions::from_mode(want))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_folders_and_files_are_private_and_existing_ones_tightened() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&t.path().join(d)), DIR_MODE, "{d}");
        }
        let f = deep.join("f");
        drop(create_new_file(&f).unwrap());
        assert_eq!(mode(&f), FILE_MODE);
        assert!(create_new_file(&f).is_err(), "never an existing file");
        let g = deep.join("g");
        drop(create_file(&g).unwrap());
        assert_eq!(mode(&g), FILE_MODE);

        std::fs::set_permissions(&f, Permissions::from_mode(0o666)).unwrap();
        assert_eq!(tighten(&f).unwrap(), Some(0o666));
        assert_eq!(mode(&f), 0o600);
        assert_eq!(tighten(&f).unwrap(), None);
        std::fs::set_permissions(&deep, Permissions::from_mode(0o777)).unwrap();
        assert_eq!(tighten(&deep).unwrap(), Some(0o777));
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(tighten(&deep.join("missing")).unwrap(), None);
        std::os::unix::fs::symlink(&f, deep.join("link")).unwrap();
        assert!(tighten(&deep.join("link")).is_err());
    }
}
