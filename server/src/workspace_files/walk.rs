//! Finding a workspace file without ever leaving the workspace: the path
//! is checked as text (no `..`, not absolute, no NUL or control bytes),
//! then walked one component at a time with `openat(O_NOFOLLOW |
//! O_DIRECTORY)` from the workspace's own descriptor. A symbolic link
//! anywhere in the path fails the open itself (`ELOOP`/`ENOTDIR`), so a
//! link swapped in after a look is caught by the kernel, not by a check
//! made before it. What is then done to the final name is done relative
//! to the parent's descriptor (`openat`, `renameat`, `unlinkat`), again
//! without following a link.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use stele_sandbox::RefusalRule;

/// Why a path could not be reached.
#[derive(Debug)]
pub enum Unreachable {
    /// Refused: it would leave the workspace, or is not a file the server serves.
    Refused(RefusalRule, String),
    /// Some component does not exist.
    Missing(String),
    /// The file system failed.
    Io(String, std::io::Error),
}

/// A checked, `/`-separated, workspace-relative path (`""` is the root).
pub fn check(raw: &str) -> Result<String, Unreachable> {
    stele_sandbox::tools::path::normalize(raw)
        .map_err(|rule| Unreachable::Refused(rule, String::new()))
}

/// The workspace folder, opened (the one use of a path from the configuration).
pub fn open_root(root: &Path) -> Result<OwnedFd, Unreachable> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Unreachable::Io(root.display().to_string(), e.into()))
}

fn dir_error(e: Errno, parent: &OwnedFd, part: &str, so_far: &str) -> Unreachable {
    // O_DIRECTORY is checked before O_NOFOLLOW: a link to a folder fails
    // with ENOTDIR, so look at what the name is (without following it).
    let is_link = || {
        rustix::fs::statat(parent, part, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    };
    match e {
        Errno::NOTDIR if is_link() => Unreachable::Refused(
            RefusalRule::SymlinkEscape,
            format!("{so_far} is a symbolic link"),
        ),
        // O_NOFOLLOW on a link; O_DIRECTORY on a link to a file or on a file.
        Errno::LOOP => Unreachable::Refused(
            RefusalRule::SymlinkEscape,
            format!("{so_far} is a symbolic link"),
        ),
        Errno::NOTDIR => Unreachable::Refused(
            RefusalRule::NotRegular,
            format!("{so_far} is not a directory"),
        ),
        Errno::NOENT => Unreachable::Missing(so_far.to_string()),
        e => Unreachable::Io(so_far.to_string(), e.into()),
    }
}

/// Open directory `rel` (checked) under `root`, one component at a time,
/// following no link.
pub fn open_dir(root: &OwnedFd, rel: &str) -> Result<OwnedFd, Unreachable> {
    let mut here = rustix::io::dup(root).map_err(|e| Unreachable::Io(".".into(), e.into()))?;
    let mut so_far = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        so_far = stele_sandbox::tools::path::join(&so_far, part);
        here = rustix::fs::openat(
            &here,
            part,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| dir_error(e, &here, part, &so_far))?;
    }
    Ok(here)
}

/// `rel` split into its parent directory (opened) and its final name.
pub struct Located {
    /// The parent directory.
    pub parent: OwnedFd,
    /// The final name (one component).
    pub name: String,
    /// The whole path, as policy is asked about it.
    pub rel: String,
}

/// Open the parent of the file `rel` (checked, not the root).
pub fn locate(root: &OwnedFd, rel: &str) -> Result<Located, Unreachable> {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", rel),
    };
    if name.is_empty() {
        return Err(Unreachable::Refused(
            RefusalRule::NotRegular,
            "the workspace root is a directory".into(),
        ));
    }
    Ok(Located {
        parent: open_dir(root, dir)?,
        name: name.to_string(),
        rel: rel.to_string(),
    })
}

/// What a name is, without following it (`None`: it does not exist).
pub fn look(l: &Located) -> Result<Option<Stat>, Unreachable> {
    match rustix::fs::statat(&l.parent, l.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Unreachable::Io(l.rel.clone(), e.into())),
    }
}

/// What kind of thing `st` is, in words.
pub fn kind_name(st: &Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Unknown => "of an unknown kind",
    }
}

/// The refusal for a name that is not a regular file (a link is refused as
/// one, wherever it points).
pub fn not_regular(st: &Stat) -> Unreachable {
    let rule = match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => RefusalRule::SymlinkEscape,
        FileType::CharacterDevice | FileType::BlockDevice => RefusalRule::DeviceNode,
        _ => RefusalRule::NotRegular,
    };
    Unreachable::Refused(rule, kind_name(st).to_string())
}

/// Whether `st` is a regular file.
pub fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

/// Open the regular file `l` for reading: no link followed, no blocking
/// on a FIFO swapped in, and only if the descriptor is still the file `want`
/// that was looked at (a swap between look and open is refused).
pub fn open_read(l: &Located, want: &Stat) -> Result<std::fs::File, Unreachable> {
    let fd = rustix::fs::openat(
        &l.parent,
        l.name.as_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP => Unreachable::Refused(RefusalRule::SymlinkEscape, "a link".into()),
        Errno::NOENT => Unreachable::Missing(l.rel.clone()),
        e => Unreachable::Io(l.rel.clone(), e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Unreachable::Io(l.rel.clone(), e.into()))?;
    if !is_regular(&st) || st.st_dev != want.st_dev || st.st_ino != want.st_ino {
        return Err(Unreachable::Refused(
            RefusalRule::NotRegular,
            "replaced by another file after it was checked".into(),
        ));
    }
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn refused(r: Result<impl Sized, Unreachable>) -> RefusalRule {
        match r {
            Err(Unreachable::Refused(rule, _)) => rule,
            Err(Unreachable::Missing(p)) => panic!("missing {p}"),
            Err(Unreachable::Io(p, e)) => panic!("{p}: {e}"),
            Ok(_) => panic!("not refused"),
        }
    }

    #[test]
    fn links_anywhere_in_the_path_are_refused_by_the_open_itself() {
        let d = tempfile::tempdir().unwrap();
        let (ws, out) = (d.path().join("ws"), d.path().join("out"));
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("f"), "outside").unwrap();
        std::os::unix::fs::symlink(&out, ws.join("a/out")).unwrap();
        std::os::unix::fs::symlink(ws.join("a/b"), ws.join("a/in")).unwrap();
        std::os::unix::fs::symlink(out.join("f"), ws.join("a/b/f")).unwrap();
        let root = open_root(&ws).unwrap();
        assert!(open_dir(&root, "a/b").is_ok());
        // Out or in, a link is a link.
        assert_eq!(
            refused(open_dir(&root, "a/out")),
            RefusalRule::SymlinkEscape
        );
        assert_eq!(refused(open_dir(&root, "a/in")), RefusalRule::SymlinkEscape);
        assert_eq!(
            refused(locate(&root, "a/out/f")),
            RefusalRule::SymlinkEscape
        );
        // A link at the target: seen as one without following it.
        let l = locate(&root, "a/b/f").unwrap();
        let st = look(&l).unwrap().unwrap();
        assert_eq!(
            refused(Err::<(), _>(not_regular(&st))),
            RefusalRule::SymlinkEscape
        );
        // A file where a folder is meant.
        std::fs::write(ws.join("a/file"), "x").unwrap();
        assert_eq!(
            refused(open_dir(&root, "a/file/x")),
            RefusalRule::NotRegular
        );
        assert!(matches!(
            open_dir(&root, "a/none"),
            Err(Unreachable::Missing(_))
        ));
        assert_eq!(refused(locate(&root, "")), RefusalRule::NotRegular);
    }

    #[test]
    fn a_file_swapped_after_the_look_is_refused_on_its_descriptor() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("f"), "first").unwrap();
        let root = open_root(&ws).unwrap();
        let l = locate(&root, "f").unwrap();
        let st = look(&l).unwrap().unwrap();
        // Replaced by another file between the look and the open.
        std::fs::write(ws.join("g"), "second").unwrap();
        std::fs::rename(ws.join("g"), ws.join("f")).unwrap();
        assert_eq!(refused(open_read(&l, &st)), RefusalRule::NotRegular);
        // Replaced by a link: the open itself fails.
        std::fs::remove_file(ws.join("f")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", ws.join("f")).unwrap();
        assert_eq!(refused(open_read(&l, &st)), RefusalRule::SymlinkEscape);
        // The same file: opened.
        std::fs::remove_file(ws.join("f")).unwrap();
        std::fs::write(ws.join("f"), "third").unwrap();
        let st = look(&l).unwrap().unwrap();
        assert!(open_read(&l, &st).is_ok());
    }

    #[test]
    fn text_checks_name_their_rule() {
        for (p, rule) in [
            ("../x", RefusalRule::ParentDir),
            ("a/../../x", RefusalRule::ParentDir),
            ("/etc/passwd", RefusalRule::Absolute),
            ("a\0b", RefusalRule::ControlCharacter),
            ("a\nb", RefusalRule::ControlCharacter),
            ("a\u{85}b", RefusalRule::ControlCharacter),
        ] {
            assert_eq!(refused(check(p)), rule, "{p:?}");
        }
        assert_eq!(check("./a//b/").unwrap(), "a/b");
    }
}
