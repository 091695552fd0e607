//! The inode → workspace-names map.
//!
//! The mediator decides on workspace-relative *paths*, but FUSE speaks in
//! inode numbers, and an OPEN does not say which name the program used. So
//! the map keeps every name an inode is known by: every reply that hands the
//! kernel an inode (lookup, create, mkdir, mknod, symlink, link) adds the
//! path it was reached by, `unlink` and renames remove or rewrite names,
//! and `forget` drops the inode when the kernel's lookup count reaches zero.
//!
//! A file with one link has one name. A hard-linked file (host `st_nlink`
//! above one) is decided under *all* its names (see `aliases.rs`): the map
//! records how many links the host reported and whether its names were
//! completed by a search of the workspace.
//!
//! For the descriptor budget (`budget.rs`) each inode also remembers one
//! (parent inode, name) entry the kernel reached it by, and when it was last
//! handed out, so the least recently used can be invalidated.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use fuse_backend_rs::api::filesystem::ROOT_ID;

use crate::file_refusal::RefusalRule;

/// One inode the kernel currently knows.
#[derive(Debug)]
pub(crate) struct Node {
    /// Canonical workspace-relative names ("" for the root); directories
    /// and single-link files have exactly one.
    pub names: Vec<String>,
    /// `st_mode & S_IFMT` at the time the inode was handed out.
    pub kind: u32,
    /// Hard links the host reported when the inode was last seen.
    pub nlink: u64,
    /// Whether `names` holds every name of the inode in the workspace
    /// (found by a search and kept up to date since).
    pub complete: bool,
    /// A (parent inode, name) the kernel reached it by, for invalidation.
    pub entry: Option<(u64, String)>,
    /// When it was last handed to the kernel or opened (a counter, for
    /// LRU; atomic so an open can mark it under the map's read lock).
    pub last_used: AtomicU64,
    /// The kernel was asked to drop its entry; its FORGET is pending.
    evicted: bool,
    /// Outstanding kernel lookup references.
    nlookup: u64,
}

impl Node {
    /// The name decisions about the inode as a directory (and its
    /// children's paths) are made under: the first known name.
    pub fn path(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }
}

/// What a reply told the map about an inode it hands out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// `st_mode` of the reply.
    pub mode: u32,
    /// `st_nlink` of the reply.
    pub nlink: u64,
}

/// Inode → names, kept in step with the kernel's view.
#[derive(Debug)]
pub(crate) struct NodeMap {
    nodes: HashMap<u64, Node>,
    /// Name → inode, for every name in `nodes`.
    by_path: HashMap<String, u64>,
    clock: AtomicU64,
    /// Nodes whose entry the kernel was asked to drop, FORGET pending.
    evicted: usize,
}

impl NodeMap {
    /// A map that knows only the root.
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_ID,
            Node {
                names: vec![String::new()],
                kind: libc::S_IFDIR,
                nlink: 1,
                complete: true,
                entry: None,
                last_used: AtomicU64::new(0),
                evicted: false,
                // The root is never forgotten.
                nlookup: u64::MAX / 2,
            },
        );
        let mut by_path = HashMap::new();
        by_path.insert(String::new(), ROOT_ID);
        NodeMap {
            nodes,
            by_path,
            clock: AtomicU64::new(0),
            evicted: 0,
        }
    }

    /// The node for `inode`, or ENOENT when the kernel asks about an inode
    /// we never handed out (fail closed: no path, no decision, no access).
    pub fn get(&self, inode: u64) -> io::Result<&Node> {
        self.nodes
            .get(&inode)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// The path of `name` inside directory `parent`.
    pub fn child_path(&self, parent: u64, name: &CStr) -> Result<String, NameError> {
        let name = checked_name(name)?;
        let node = self.get(parent).map_err(NameError::Io)?;
        if node.kind != libc::S_IFDIR {
            return Err(NameError::Io(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        Ok(join(node.path(), name))
    }

    /// Record one more kernel reference to `inode`, reached as `name` in
    /// `parent` at `path`.
    pub fn remember(&mut self, inode: u64, parent: u64, name: &CStr, path: String, seen: Seen) {
        if inode == 0 {
            return;
        }
        let clock = self.tick();
        let kind = seen.mode & libc::S_IFMT;
        let entry = name
            .to_str()
            .ok()
            .map(|n| (parent, n.to_owned()))
            .filter(|_| inode != ROOT_ID);
        let node = self.nodes.entry(inode).or_insert(Node {
            names: Vec::new(),
            kind,
            nlink: seen.nlink,
            complete: false,
            entry: None,
            last_used: AtomicU64::new(clock),
            evicted: false,
            nlookup: 0,
        });
        node.nlookup = node.nlookup.saturating_add(1);
        if node.evicted {
            // Looked up again before the kernel forgot it: in use after all.
            node.evicted = false;
            self.evicted = self.evicted.saturating_sub(1);
        }
        node.last_used.store(clock, Ordering::Relaxed);
        if inode == ROOT_ID {
            return;
        }
        node.kind = kind;
        if entry.is_some() {
            node.entry = entry;
        }
        if node.nlink != seen.nlink {
            // Links were made or removed outside our sight: what we knew of
            // its other names is no longer complete.
            node.complete = false;
        }
        node.nlink = seen.nlink;
        if node.names.contains(&path) {
            return;
        }
        let stale: Vec<String> = if kind == libc::S_IFDIR || seen.nlink <= 1 {
            // One name only: an inode reached under another name was renamed
            // on the host; the old name is gone.
            std::mem::take(&mut node.names)
        } else {
            Vec::new()
        };
        node.names.push(path.clone());
        for old in stale {
            if self.by_path.get(&old) == Some(&inode) {
                self.by_path.remove(&old);
            }
        }
        if let Some(previous) = self.by_path.insert(path.clone(), inode) {
            if previous != inode {
                // The name now leads elsewhere (replaced on the host).
                if let Some(p) = self.nodes.get_mut(&previous) {
                    p.names.retain(|n| *n != path);
                    p.complete = false;
                }
            }
        }
    }

    /// The next value of the LRU clock.
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Mark `inode` used now (it was opened): needs only a read lock.
    pub fn touch(&self, inode: u64) {
        if let Some(n) = self.nodes.get(&inode) {
            n.last_used.store(self.tick(), Ordering::Relaxed);
        }
    }

    /// The host reported `nlink` links for `inode` (a getattr).
    pub fn saw_nlink(&mut self, inode: u64, nlink: u64) {
        if let Some(n) = self.nodes.get_mut(&inode) {
            if n.nlink != nlink {
                n.nlink = nlink;
                n.complete = false;
            }
        }
    }

    /// A search of the workspace found these to be all the names of
    /// `inode`, which has `nlink` links.
    pub fn set_names(&mut self, inode: u64, names: Vec<String>, nlink: u64) {
        let Some(node) = self.nodes.get_mut(&inode) else {
            return;
        };
        for old in std::mem::take(&mut node.names) {
            if self.by_path.get(&old) == Some(&inode) {
                self.by_path.remove(&old);
            }
        }
        node.complete = names.len() as u64 == nlink;
        node.nlink = nlink;
        node.names = names.clone();
        for n in names {
            self.by_path.insert(n, inode);
        }
    }

    /// The name `path` was removed (unlink, rmdir, or replaced by a rename).
    pub fn unlinked(&mut self, path: &str) {
        let Some(inode) = self.by_path.remove(path) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&inode) {
            node.names.retain(|n| n != path);
            node.nlink = node.nlink.saturating_sub(1);
        }
    }

    /// The kernel dropped `count` references to `inode`; true when that was
    /// the last one (the kernel no longer knows the inode).
    pub fn forget(&mut self, inode: u64, count: u64) -> bool {
        if inode == ROOT_ID {
            return false;
        }
        let gone = match self.nodes.get_mut(&inode) {
            Some(node) => {
                node.nlookup = node.nlookup.saturating_sub(count);
                node.nlookup == 0
            }
            None => false,
        };
        if gone {
            if let Some(node) = self.nodes.remove(&inode) {
                if node.evicted {
                    self.evicted = self.evicted.saturating_sub(1);
                }
                for n in node.names {
                    if self.by_path.get(&n) == Some(&inode) {
                        self.by_path.remove(&n);
                    }
                }
            }
        }
        gone
    }

    /// `from` was renamed to `to`: rewrite it and everything beneath it.
    /// With `exchange`, the two trees swap names. A plain rename over an
    /// existing `to` removes that name from the inode it belonged to.
    pub fn rename(&mut self, from: &str, to: &str, exchange: bool) {
        let same =
            self.by_path.contains_key(from) && self.by_path.get(from) == self.by_path.get(to);
        if from == to || same {
            // Two names of one file: rename(2) does nothing.
            return;
        }
        if !exchange {
            self.unlinked(to);
        }
        let mut moved = Vec::new();
        for (inode, node) in &mut self.nodes {
            for name in &mut node.names {
                let renamed = if let Some(rest) = strip_tree(name, from) {
                    Some(format!("{to}{rest}"))
                } else if exchange {
                    strip_tree(name, to).map(|rest| format!("{from}{rest}"))
                } else {
                    None
                };
                if let Some(new) = renamed {
                    moved.push((std::mem::replace(name, new.clone()), new, *inode));
                }
            }
        }
        for (old, _, inode) in &moved {
            if self.by_path.get(old) == Some(inode) {
                self.by_path.remove(old);
            }
        }
        for (_, new, inode) in moved {
            self.by_path.insert(new, inode);
        }
    }

    /// Number of inodes currently known (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The kernel was asked to drop these inodes' entries.
    pub fn mark_evicted(&mut self, inodes: &[u64]) {
        for ino in inodes {
            if let Some(n) = self.nodes.get_mut(ino) {
                if !n.evicted {
                    n.evicted = true;
                    self.evicted += 1;
                }
            }
        }
    }

    /// Inodes whose FORGET is pending after an eviction.
    pub fn evicted(&self) -> usize {
        self.evicted
    }

    /// Up to `n` inodes not used for longest, with the entry the kernel
    /// reached each by, skipping `busy` ones (open handles).
    pub fn least_recently_used(
        &self,
        n: usize,
        busy: &dyn Fn(u64) -> bool,
    ) -> Vec<(u64, u64, String)> {
        let mut all: Vec<(u64, u64, u64, &str)> = self
            .nodes
            .iter()
            .filter(|(ino, node)| **ino != ROOT_ID && !node.evicted && !busy(**ino))
            .filter_map(|(ino, node)| {
                let (parent, name) = node.entry.as_ref()?;
                Some((
                    node.last_used.load(Ordering::Relaxed),
                    *ino,
                    *parent,
                    name.as_str(),
                ))
            })
            .collect();
        if all.len() > n {
            all.select_nth_unstable_by_key(n, |e| e.0);
            all.truncate(n);
        }
        all.into_iter()
            .map(|(_, ino, parent, name)| (ino, parent, name.to_owned()))
            .collect()
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

/// Why a name from the kernel was not turned into a path.
#[derive(Debug)]
pub(crate) enum NameError {
    /// The name itself is refused by this rule (reported as a refusal).
    Refused(RefusalRule),
    /// The request is wrong in another way (unknown parent, not a
    /// directory): an errno, nothing to report.
    Io(io::Error),
}

/// Validate one path component from the kernel.
///
/// The kernel never sends `.`, `..` or names with `/` for a normal mount, but
/// a transport (a virtio-fs guest, a hostile client on the device) could; a
/// `..` would name something outside the canonical path space the policy sees,
/// so it is refused rather than interpreted. Names that are not UTF-8 are
/// refused too: the policy sees `String` paths and a lossy conversion could
/// make two different files look like one; so are names with control
/// characters, which policy canonicalisation refuses.
pub(crate) fn checked_name(name: &CStr) -> Result<&str, NameError> {
    let bytes = name.to_bytes();
    let rule = if bytes.is_empty() {
        Some(RefusalRule::EmptyName)
    } else if bytes == b"." || bytes == b".." {
        Some(RefusalRule::ParentDir)
    } else if bytes.contains(&b'/') {
        Some(RefusalRule::SlashInName)
    } else {
        None
    };
    if let Some(rule) = rule {
        return Err(NameError::Refused(rule));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| NameError::Refused(RefusalRule::NotUtf8))?;
    if s.chars().any(char::is_control) {
        return Err(NameError::Refused(RefusalRule::ControlCharacter));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(nlink: u64) -> Seen {
        Seen {
            mode: libc::S_IFREG | 0o644,
            nlink,
        }
    }

    fn dir() -> Seen {
        Seen {
            mode: libc::S_IFDIR | 0o755,
            nlink: 2,
        }
    }

    fn remember(m: &mut NodeMap, inode: u64, path: &str, seen: Seen) {
        let name = std::ffi::CString::new(path.rsplit('/').next().unwrap()).unwrap();
        m.remember(inode, ROOT_ID, &name, path.into(), seen);
    }

    #[test]
    fn rename_moves_subtree_only() {
        let mut m = NodeMap::new();
        remember(&mut m, 2, "a", dir());
        remember(&mut m, 3, "a/x", file(1));
        remember(&mut m, 4, "ab", file(1));
        m.rename("a", "b/c", false);
        assert_eq!(m.get(2).unwrap().names, ["b/c"]);
        assert_eq!(m.get(3).unwrap().names, ["b/c/x"]);
        assert_eq!(m.get(4).unwrap().names, ["ab"]);
    }

    #[test]
    fn forget_drops_at_zero() {
        let mut m = NodeMap::new();
        remember(&mut m, 2, "a", file(1));
        remember(&mut m, 2, "a", file(1));
        assert!(!m.forget(2, 1));
        assert!(m.get(2).is_ok());
        assert!(m.forget(2, 1));
        assert!(m.get(2).is_err());
        assert!(!m.forget(ROOT_ID, 100));
        assert!(m.get(ROOT_ID).is_ok());
    }

    #[test]
    fn evicted_entries_count_as_leaving_until_forgotten_or_used_again() {
        let mut m = NodeMap::new();
        remember(&mut m, 2, "a", file(1));
        remember(&mut m, 3, "b", file(1));
        remember(&mut m, 4, "c", file(1));
        m.mark_evicted(&[2, 3, 3, 99]);
        assert_eq!(m.evicted(), 2);
        // Entries already asked to leave are not asked again.
        let lru: Vec<u64> = m
            .least_recently_used(10, &|_| false)
            .into_iter()
            .map(|(ino, _, _)| ino)
            .collect();
        assert_eq!(lru, [4]);
        // Looked up again before the FORGET: in use, no longer leaving.
        remember(&mut m, 3, "b", file(1));
        assert_eq!(m.evicted(), 1);
        // Forgotten: gone, and no longer counted.
        assert!(m.forget(2, 1));
        assert_eq!(m.evicted(), 0);
        assert!(!m.forget(3, 1));
        assert!(m.forget(3, 1));
        assert_eq!(m.evicted(), 0);
    }

    #[test]
    fn a_hard_linked_inode_keeps_every_name() {
        let mut m = NodeMap::new();
        remember(&mut m, 5, "receipts/r1.csv", file(2));
        remember(&mut m, 5, "reports/r1.csv", file(2));
        assert_eq!(
            m.get(5).unwrap().names,
            ["receipts/r1.csv", "reports/r1.csv"]
        );
        // The directory path of a multi-name file is never swapped for the last.
        assert_eq!(m.get(5).unwrap().path(), "receipts/r1.csv");
        m.unlinked("receipts/r1.csv");
        assert_eq!(m.get(5).unwrap().names, ["reports/r1.csv"]);
        assert_eq!(m.get(5).unwrap().nlink, 1);
    }

    #[test]
    fn a_single_link_inode_under_a_new_name_drops_the_old() {
        let mut m = NodeMap::new();
        remember(&mut m, 6, "old", file(1));
        remember(&mut m, 6, "new", file(1));
        assert_eq!(m.get(6).unwrap().names, ["new"]);
        m.unlinked("old");
        assert_eq!(m.get(6).unwrap().names, ["new"]);
    }

    #[test]
    fn renaming_over_a_name_removes_it_from_its_inode() {
        let mut m = NodeMap::new();
        remember(&mut m, 7, "x", file(2));
        remember(&mut m, 7, "y", file(2));
        remember(&mut m, 8, "z", file(1));
        m.rename("z", "y", false);
        assert_eq!(m.get(7).unwrap().names, ["x"]);
        assert_eq!(m.get(8).unwrap().names, ["y"]);
    }

    #[test]
    fn renaming_a_name_onto_another_of_the_same_file_changes_nothing() {
        let mut m = NodeMap::new();
        remember(&mut m, 9, "a", file(2));
        remember(&mut m, 9, "b", file(2));
        m.rename("a", "b", false);
        assert_eq!(m.get(9).unwrap().names, ["a", "b"]);
        assert_eq!(m.get(9).unwrap().nlink, 2);
    }

    #[test]
    fn names_are_checked() {
        let refused = |n: &CStr| match checked_name(n) {
            Err(NameError::Refused(r)) => Some(r),
            _ => None,
        };
        assert_eq!(refused(c".."), Some(RefusalRule::ParentDir));
        assert_eq!(refused(c"."), Some(RefusalRule::ParentDir));
        assert_eq!(refused(c"a/b"), Some(RefusalRule::SlashInName));
        assert_eq!(refused(c""), Some(RefusalRule::EmptyName));
        assert_eq!(refused(c"a\x1bb"), Some(RefusalRule::ControlCharacter));
        assert_eq!(refused(c"a\xffb"), Some(RefusalRule::NotUtf8));
        assert_eq!(checked_name(c"ok.txt").unwrap(), "ok.txt");
    }

    #[test]
    fn least_recently_used_skips_busy_and_the_root() {
        let mut m = NodeMap::new();
        for i in 2..10u64 {
            remember(&mut m, i, &format!("f{i}"), file(1));
        }
        m.touch(2);
        let lru = m.least_recently_used(3, &|ino| ino == 3);
        let inodes: Vec<u64> = lru.iter().map(|e| e.0).collect();
        assert_eq!(inodes.len(), 3);
        assert!(!inodes.contains(&2) && !inodes.contains(&3) && !inodes.contains(&ROOT_ID));
    }
}
