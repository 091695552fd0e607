//! Hard links: a file with several names is decided under all of them.
//!
//! An OPEN names an inode, not the name the program used, and a hard link
//! is an alias: a write through `reports/r1.csv` changes `receipts/r1.csv`
//! if both name one inode. So a file whose host link count is above one is
//! decided under *every* name it has in the workspace (each must allow the
//! access; each decision is logged), and the program's own name is always
//! among them. The names come from the node map when it holds them all;
//! otherwise the workspace is searched for the inode (host side, symbolic
//! links never followed, other file systems not entered) and the result
//! kept up to date by the layer's own link, unlink and rename. A file some
//! of whose names cannot be found in the workspace (linked from outside it,
//! or named in a way policy cannot see) is refused: no decision could cover
//! the names policy never sees.
//!
//! The search costs a walk of the workspace, once per hard-linked inode the
//! kernel remembers; files with one link (nearly all) cost nothing.

use cap_std::fs::MetadataExt as _;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::PoisonError;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::layer::MediatedLayer;
use super::paths::{checked_name, join};
use crate::{FileAccess, FileOp};

/// Directories deeper than this are not searched (the name would not fit
/// in a path anyway).
const MAX_DEPTH: usize = 256;

/// Why the names of a hard-linked file could not all be put to policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unresolved {
    /// Links the host reports.
    pub links: u64,
    /// Names found in the workspace.
    pub found: usize,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hard links, {} of them named inside the workspace",
            self.links, self.found
        )
    }
}

/// What a search found: the names of the inode, and whether some name
/// could not be used (not UTF-8, control characters, too deep).
struct Found {
    names: BTreeSet<String>,
    unusable: usize,
}

/// Search the tree under `root` (an open directory) for names of the
/// inode (`dev`, `ino`), stopping once `want` are found.
fn search(root: &File, dev: u64, ino: u64, want: u64) -> io::Result<Found> {
    let mut found = Found {
        names: BTreeSet::new(),
        unusable: 0,
    };
    // (directory, its workspace path or `None` when some component of it
    // cannot be put to policy, depth)
    let mut stack: Vec<(File, Option<String>, usize)> =
        vec![(root.try_clone()?, Some(String::new()), 0)];
    while let Some((dir, path, depth)) = stack.pop() {
        let cap = cap_std::fs::Dir::from_std_file(dir.try_clone()?);
        let Ok(entries) = cap.entries() else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let usable = CString::new(name.as_bytes())
                .ok()
                .and_then(|c| checked_name(&c).ok().map(str::to_owned));
            let child = match (&path, &usable) {
                (Some(p), Some(n)) => Some(join(p, n)),
                _ => None,
            };
            if meta.dev() == dev && meta.ino() == ino && !meta.is_dir() {
                match child {
                    Some(c) => {
                        found.names.insert(c);
                    }
                    None => found.unusable += 1,
                }
                if found.names.len() as u64 + found.unusable as u64 >= want {
                    return Ok(found);
                }
            } else if meta.is_dir() && meta.dev() == dev && depth < MAX_DEPTH {
                if let Ok(sub) = open_dir_nofollow(&dir, &name) {
                    stack.push((sub, child, depth + 1));
                }
            }
        }
    }
    Ok(found)
}

/// Open `name` in `dir` as a directory, never through a symbolic link.
fn open_dir_nofollow(dir: &File, name: &OsStr) -> io::Result<File> {
    let c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    open_at(dir, &c)
}

fn open_at(dir: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: openat reads the NUL-terminated name and returns a new fd or -1.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Every name under `root` of the host file `(dev, ino)` with `links`
/// links: all of them, or why not.
pub(crate) fn all_names(
    root: &File,
    dev: u64,
    ino: u64,
    links: u64,
) -> Result<Vec<String>, Unresolved> {
    let unresolved = |found| Unresolved { links, found };
    let found = search(root, dev, ino, links).map_err(|_| unresolved(0))?;
    if found.unusable > 0 || (found.names.len() as u64) < links {
        return Err(unresolved(found.names.len()));
    }
    Ok(found.names.into_iter().collect())
}

impl MediatedLayer {
    /// The names an access to `inode` must be decided under: its one name,
    /// or every name of a hard-linked file (searched for when not known).
    pub(super) fn decision_names(&self, inode: u64) -> io::Result<Result<Vec<String>, Unresolved>> {
        let (names, kind, nlink, complete) = {
            let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
            let n = nodes.get(inode)?;
            (n.names.clone(), n.kind, n.nlink, n.complete)
        };
        if kind == libc::S_IFDIR || nlink <= 1 || (complete && names.len() as u64 == nlink) {
            return Ok(Ok(names));
        }
        // The link count the host reports now, and which file to look for.
        let (st, _) = self.inner.getattr(&Context::default(), inode, None)?;
        let links = st.st_nlink;
        if links <= 1 {
            let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
            nodes.saw_nlink(inode, links);
            return Ok(Ok(names));
        }
        let found = all_names(&self.root_dir, st.st_dev, st.st_ino, links);
        if let Ok(all) = &found {
            self.nodes
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .set_names(inode, all.clone(), links);
        }
        Ok(found)
    }
}

impl MediatedLayer {
    /// LINK: a new name for `inode`. The new name is an alias through
    /// which every later write reaches the file under all its names, so
    /// the link needs `file.read` and `file.write` on each existing name,
    /// and `file.write` on the new one.
    pub(super) fn link_mediated(
        &self,
        ctx: &Context,
        inode: u64,
        newparent: u64,
        newname: &CStr,
    ) -> io::Result<Entry> {
        let path = self.child_path(ctx, newparent, newname, FileAccess::Write, FileOp::Link)?;
        if let Some(detail) = self.setid_file(inode)? {
            let (source, _) = self.node(inode)?;
            return Err(self.refuse(
                ctx,
                FileAccess::Write,
                FileOp::Link,
                source.as_bytes(),
                crate::file_refusal::RefusalRule::PrivilegedMode,
                detail,
            ));
        }
        let names = self.names_to_decide(ctx, inode, FileAccess::Read, FileOp::Link)?;
        let mut asks: Vec<(FileAccess, &str)> = Vec::with_capacity(names.len() * 2 + 1);
        for n in &names {
            asks.push((FileAccess::Read, n));
            asks.push((FileAccess::Write, n));
        }
        asks.push((FileAccess::Write, &path));
        self.fd_room(
            ctx,
            FileAccess::Write,
            FileOp::Link,
            &path,
            super::room::LockedDir::Parent(newparent),
        )?;
        let entry = self.change(ctx, FileOp::Link, &asks, || {
            self.inner.link(ctx, inode, newparent, newname)
        })?;
        self.remember(newparent, newname, path.clone(), &entry);
        let mut all = names;
        all.push(path);
        let links = entry.attr.st_nlink;
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_names(entry.inode, all, links);
        Ok(self.out_entry(entry))
    }

    /// `path` was unlinked or removed by the sandbox.
    pub(super) fn name_removed(&self, path: &str) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .unlinked(path);
    }

    /// A GETATTR reply: keep the link count current (a link made on the
    /// host makes the file's names incomplete).
    pub(super) fn saw_attr(&self, inode: u64, st: &stat64) {
        let nlink = st.st_nlink;
        let differs = self
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(inode)
            .is_ok_and(|n| n.kind != libc::S_IFDIR && n.nlink != nlink);
        if differs {
            self.nodes
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .saw_nlink(inode, nlink);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn every_name_of_a_hard_linked_file_is_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::create_dir_all(d.path().join("c")).unwrap();
        std::fs::write(d.path().join("a/b/f"), b"x").unwrap();
        std::fs::hard_link(d.path().join("a/b/f"), d.path().join("c/g")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("c/link")).unwrap();
        let m = std::fs::metadata(d.path().join("a/b/f")).unwrap();
        let root = File::open(d.path()).unwrap();
        let names = all_names(&root, m.dev(), m.ino(), m.nlink()).unwrap();
        assert_eq!(names, ["a/b/f", "c/g"]);
    }

    #[test]
    fn a_name_outside_the_tree_leaves_it_unresolved() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("ws")).unwrap();
        std::fs::write(d.path().join("ws/f"), b"x").unwrap();
        std::fs::hard_link(d.path().join("ws/f"), d.path().join("outside")).unwrap();
        let m = std::fs::metadata(d.path().join("ws/f")).unwrap();
        let root = File::open(d.path().join("ws")).unwrap();
        let err = all_names(&root, m.dev(), m.ino(), m.nlink()).unwrap_err();
        assert_eq!(err, Unresolved { links: 2, found: 1 });
    }

    #[test]
    fn a_name_policy_cannot_see_leaves_it_unresolved() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let odd = OsStr::from_bytes(b"bad\xffname");
        std::fs::hard_link(d.path().join("f"), d.path().join(odd)).unwrap();
        let m = std::fs::metadata(d.path().join("f")).unwrap();
        let root = File::open(d.path()).unwrap();
        assert!(all_names(&root, m.dev(), m.ino(), m.nlink()).is_err());
    }
}
