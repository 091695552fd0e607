//! The inode → workspace-path map.
//!
//! The mediator decides on workspace-relative *paths*, but FUSE speaks in
//! inode numbers. Every reply that hands the kernel an inode (lookup, create,
//! mkdir, mknod, symlink, link) records the path it was reached by; `forget`
//! drops it again when the kernel's lookup count reaches zero; renames rewrite
//! the moved entry and everything below it.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;

use fuse_backend_rs::api::filesystem::ROOT_ID;

/// One inode the kernel currently knows.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Canonical workspace-relative path ("" for the root).
    pub path: String,
    /// `st_mode & S_IFMT` at the time the inode was handed out.
    pub kind: u32,
    /// Outstanding kernel lookup references.
    nlookup: u64,
}

/// Inode → path, kept in step with the kernel's view.
#[derive(Debug)]
pub(crate) struct NodeMap {
    nodes: HashMap<u64, Node>,
}

impl NodeMap {
    /// A map that knows only the root.
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_ID,
            Node {
                path: String::new(),
                kind: libc::S_IFDIR,
                // The root is never forgotten.
                nlookup: u64::MAX / 2,
            },
        );
        NodeMap { nodes }
    }

    /// The node for `inode`, or ENOENT when the kernel asks about an inode
    /// we never handed out (fail closed: no path, no decision, no access).
    pub fn get(&self, inode: u64) -> io::Result<&Node> {
        self.nodes
            .get(&inode)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// The path of `name` inside directory `parent`.
    pub fn child_path(&self, parent: u64, name: &CStr) -> io::Result<String> {
        let name = checked_name(name)?;
        let node = self.get(parent)?;
        if node.kind != libc::S_IFDIR {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(join(&node.path, name))
    }

    /// Record one more kernel reference to `inode`, reached at `path`.
    pub fn remember(&mut self, inode: u64, path: String, kind: u32) {
        if inode == 0 {
            return;
        }
        let node = self.nodes.entry(inode).or_insert(Node {
            path: String::new(),
            kind,
            nlookup: 0,
        });
        node.nlookup = node.nlookup.saturating_add(1);
        if inode != ROOT_ID {
            // A hard-linked inode is named by the last path it was reached by.
            node.path = path;
            node.kind = kind;
        }
    }

    /// The kernel dropped `count` references to `inode`; true when that was
    /// the last one (the kernel no longer knows the inode).
    pub fn forget(&mut self, inode: u64, count: u64) -> bool {
        if inode == ROOT_ID {
            return false;
        }
        if let Some(node) = self.nodes.get_mut(&inode) {
            node.nlookup = node.nlookup.saturating_sub(count);
            if node.nlookup == 0 {
                self.nodes.remove(&inode);
                return true;
            }
        }
        false
    }

    /// `from` was renamed to `to`: rewrite it and everything beneath it.
    /// With `exchange`, the two trees swap names.
    pub fn rename(&mut self, from: &str, to: &str, exchange: bool) {
        for node in self.nodes.values_mut() {
            if let Some(rest) = strip_tree(&node.path, from) {
                node.path = format!("{to}{rest}");
            } else if exchange {
                if let Some(rest) = strip_tree(&node.path, to) {
                    node.path = format!("{from}{rest}");
                }
            }
        }
    }

    /// Number of inodes currently known (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// If `path` is `prefix` or lies beneath it, the remainder (`""` or `/…`).
fn strip_tree<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Join a workspace-relative directory path and a checked name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Validate one path component from the kernel.
///
/// The kernel never sends `.`, `..` or names with `/` for a normal mount, but
/// a transport (a virtio-fs guest, a hostile client on the device) could; a
/// `..` would name something outside the canonical path space the policy sees,
/// so it is refused rather than interpreted. Names that are not UTF-8 are
/// refused too: the policy sees `String` paths and a lossy conversion could
/// make two different files look like one.
pub(crate) fn checked_name(name: &CStr) -> io::Result<&str> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    std::str::from_utf8(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EACCES))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rename_moves_subtree_only() {
        let mut m = NodeMap::new();
        m.remember(2, "a".into(), libc::S_IFDIR);
        m.remember(3, "a/x".into(), libc::S_IFREG);
        m.remember(4, "ab".into(), libc::S_IFREG);
        m.rename("a", "b/c", false);
        assert_eq!(m.get(2).unwrap().path, "b/c");
        assert_eq!(m.get(3).unwrap().path, "b/c/x");
        assert_eq!(m.get(4).unwrap().path, "ab");
    }

    #[test]
    fn forget_drops_at_zero() {
        let mut m = NodeMap::new();
        m.remember(2, "a".into(), libc::S_IFREG);
        m.remember(2, "a".into(), libc::S_IFREG);
        assert!(!m.forget(2, 1));
        assert!(m.get(2).is_ok());
        assert!(m.forget(2, 1));
        assert!(m.get(2).is_err());
        assert!(!m.forget(ROOT_ID, 100));
        assert!(m.get(ROOT_ID).is_ok());
    }

    #[test]
    fn names_are_checked() {
        assert!(checked_name(c"..").is_err());
        assert!(checked_name(c".").is_err());
        assert!(checked_name(c"a/b").is_err());
        assert!(checked_name(c"").is_err());
        assert_eq!(checked_name(c"ok.txt").unwrap(), "ok.txt");
    }
}
