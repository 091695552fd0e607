//! The tool image's root tree, kept beside the ext4 built from it: the
//! process backend mounts it read-only as its root, the micro-VM boots the
//! ext4. Its identity is a listing — one line per entry with type, mode,
//! owner, size and content hash (or link target) — whose SHA-256 is part of
//! the image digest, so a file changed after the build changes the digest
//! `stele sandbox check` recomputes.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ring::digest::{digest, SHA256};

use super::error::VmError;
use super::image::{hex, sha256_file};

/// The tree's directory inside an image directory.
pub(crate) const TREE_DIR: &str = "root";
/// The listing written at build time (to name what changed, not to trust).
pub(crate) const TREE_LIST_FILE: &str = "root.list";

/// The listing of the tree at `root`: entries in byte order of their paths.
pub(crate) fn listing(root: &Path) -> Result<String, VmError> {
    let mut out = String::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// SHA-256 (hex) of a listing.
pub(crate) fn listing_hash(listing: &str) -> String {
    hex(digest(&SHA256, listing.as_bytes()).as_ref())
}

/// Paths whose lines differ between two listings (at most `max`).
pub(crate) fn changed_paths(recorded: &str, now: &str, max: usize) -> Vec<String> {
    // The path is the first tab-separated field (quoted: a tab in a name
    // is escaped, so it cannot forge a field).
    let path_of = |l: &str| l.split('\t').next().unwrap_or(l).to_owned();
    let a: std::collections::BTreeMap<String, &str> =
        recorded.lines().map(|l| (path_of(l), l)).collect();
    let b: std::collections::BTreeMap<String, &str> =
        now.lines().map(|l| (path_of(l), l)).collect();
    let mut out = Vec::new();
    for (p, l) in &a {
        match b.get(p) {
            Some(m) if m == l => {}
            Some(_) => out.push(format!("changed {p}")),
            None => out.push(format!("removed {p}")),
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("added {p}"));
    }
    out.truncate(max);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut String) -> Result<(), VmError> {
    let err = |p: &Path, source| VmError::File {
        what: "image root tree",
        path: p.to_owned(),
        source,
    };
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(dir, e))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let ft = meta.file_type();
        let (kind, what) = if ft.is_symlink() {
            let t = std::fs::read_link(&path).map_err(|e| err(&path, e))?;
            ('l', format!("{:?}", t.to_string_lossy()))
        } else if ft.is_dir() {
            ('d', "-".to_owned())
        } else if ft.is_file() {
            ('f', sha256_file(&path)?)
        } else {
            // Device nodes, fifos, sockets: identified by their rdev.
            ('s', format!("rdev={}", meta.rdev()))
        };
        let size = if ft.is_file() { meta.len() } else { 0 };
        let _ = writeln!(
            out,
            "{:?}\t{kind}\t{:o}\t{}:{}\t{size}\t{what}",
            rel.to_string_lossy(),
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
        );
        if ft.is_dir() {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        std::fs::write(t.path().join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("usr/bin", t.path().join("bin")).unwrap();
        t
    }

    #[test]
    fn every_kind_of_change_changes_the_hash_and_is_named() {
        type Change = (&'static str, fn(&Path));
        let changes: [Change; 5] = [
            ("content", |r| {
                std::fs::write(r.join("usr/bin/tool"), b"#!/bin/sh\nid\n").unwrap()
            }),
            ("mode", |r| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    r.join("usr/bin/tool"),
                    std::fs::Permissions::from_mode(0o4755),
                )
                .unwrap()
            }),
            ("added file", |r| {
                std::fs::write(r.join("usr/bin/extra"), b"x").unwrap()
            }),
            ("removed file", |r| {
                std::fs::remove_file(r.join("usr/bin/tool")).unwrap()
            }),
            ("symlink target", |r| {
                std::fs::remove_file(r.join("bin")).unwrap();
                std::os::unix::fs::symlink("/tmp", r.join("bin")).unwrap();
            }),
        ];
        for (what, change) in changes {
            let t = tree();
            let before = listing(t.path()).unwrap();
            change(t.path());
            let after = listing(t.path()).unwrap();
            assert_ne!(
                listing_hash(&before),
                listing_hash(&after),
                "{what} kept the hash"
            );
            assert!(
                !changed_paths(&before, &after, 10).is_empty(),
                "{what} named no path"
            );
        }
    }

    #[test]
    fn an_unchanged_tree_lists_the_same() {
        let t = tree();
        let a = listing(t.path()).unwrap();
        assert_eq!(a, listing(t.path()).unwrap());
        assert!(changed_paths(&a, &a, 10).is_empty());
        assert_eq!(a.lines().count(), 4, "{a}");
    }
}
