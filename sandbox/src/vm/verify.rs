//! Re-hashing a built image against its manifest: what `stele sandbox
//! check` does to find an image changed after it was built (a cached image
//! is trusted at use by its owner and mode, and re-hashed on demand: hashing
//! the whole tree takes seconds, too long for every session).

use super::error::VmError;
use super::image::{sha256_file, GuestImage};
use super::tree::{changed_paths, listing, listing_hash, TREE_LIST_FILE};

/// Most changed paths an integrity report names.
const MAX_NAMED: usize = 20;

/// What re-hashing an image found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageIntegrity {
    /// Every component hashes as its manifest says.
    Intact,
    /// These components (and, for the tree, paths) differ from the manifest.
    Changed(Vec<String>),
}

impl GuestImage {
    /// Re-hash the kernel, initramfs, ext4 root and root tree and compare
    /// them with the manifest.
    pub fn verify(&self) -> Result<ImageIntegrity, VmError> {
        let want = &self.manifest.sha256;
        let mut changed = Vec::new();
        for (name, path, hash) in [
            ("kernel", self.kernel(), &want.kernel),
            ("initramfs", self.initrd(), &want.initrd),
            ("ext4 root", self.rootfs(), &want.rootfs),
        ] {
            if &sha256_file(&path)? != hash {
                changed.push(format!("{name} {}", path.display()));
            }
        }
        if let (Some(tree), Some(hash)) = (self.tree(), &want.tree) {
            let now = listing(&tree)?;
            if &listing_hash(&now) != hash {
                changed.push(format!("root tree {}", tree.display()));
                // The recorded listing only names what changed; the verdict
                // comes from the hash in the manifest.
                if let Ok(recorded) = std::fs::read_to_string(self.dir.join(TREE_LIST_FILE)) {
                    changed.extend(changed_paths(&recorded, &now, MAX_NAMED));
                }
            }
        }
        Ok(if changed.is_empty() {
            ImageIntegrity::Intact
        } else {
            ImageIntegrity::Changed(changed)
        })
    }
}

/// A small image on disk with a real manifest, for tests of what reads one.
#[cfg(test)]
pub(crate) mod fixture {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::super::image::{
        sha256_file, ComponentHashes, ImageStore, Manifest, INITRD_FILE, KERNEL_FILE,
        MANIFEST_FILE, ROOTFS_FILE,
    };
    use super::super::tree::{listing, listing_hash, TREE_DIR, TREE_LIST_FILE};

    /// A store at `root` whose current image `k1` has a tree with
    /// `usr/bin/tool` and `etc/passwd`.
    pub(crate) fn store(root: &Path) -> ImageStore {
        let dir = root.join("k1");
        let tree = dir.join(TREE_DIR);
        std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        std::fs::write(tree.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        for f in [KERNEL_FILE, INITRD_FILE, ROOTFS_FILE] {
            std::fs::write(dir.join(f), f.as_bytes()).unwrap();
        }
        let list = listing(&tree).unwrap();
        std::fs::write(dir.join(TREE_LIST_FILE), &list).unwrap();
        let sha256 = ComponentHashes {
            kernel: sha256_file(&dir.join(KERNEL_FILE)).unwrap(),
            initrd: sha256_file(&dir.join(INITRD_FILE)).unwrap(),
            rootfs: sha256_file(&dir.join(ROOTFS_FILE)).unwrap(),
            tree: Some(listing_hash(&list)),
        };
        let manifest = Manifest {
            key: "k1".into(),
            digest: sha256.digest(),
            kernel_package: "k".into(),
            kernel_release: "r".into(),
            suite: "bookworm".into(),
            packages: vec![],
            modules: vec![],
            sha256,
            build_seconds: 0,
        };
        std::fs::write(
            dir.join(MANIFEST_FILE),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
        let store = ImageStore::at(root);
        store.set_current("k1").unwrap();
        store
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn an_untouched_image_is_intact_and_every_tampering_is_found() {
        type Tamper = (&'static str, &'static str, fn(&std::path::Path));
        let cases: [Tamper; 4] = [
            ("tree file", "usr/bin/tool", |d| {
                std::fs::write(d.join("root/usr/bin/tool"), b"#!/bin/sh\nevil\n").unwrap()
            }),
            ("tree file added", "etc/ld.so.preload", |d| {
                std::fs::write(d.join("root/etc/ld.so.preload"), b"/tmp/x.so\n").unwrap()
            }),
            ("ext4", "ext4 root", |d| {
                std::fs::write(d.join("rootfs.ext4"), b"other").unwrap()
            }),
            ("kernel", "kernel", |d| {
                std::fs::write(d.join("vmlinuz"), b"other").unwrap()
            }),
        ];
        for (what, named, tamper) in cases {
            let t = tempfile::tempdir().unwrap();
            let store = fixture::store(t.path());
            let image = store.current().unwrap();
            assert_eq!(image.verify().unwrap(), ImageIntegrity::Intact);
            tamper(&image.dir);
            match image.verify().unwrap() {
                ImageIntegrity::Changed(list) => assert!(
                    list.iter().any(|l| l.contains(named)),
                    "{what}: {list:?} does not name {named}"
                ),
                ImageIntegrity::Intact => panic!("{what}: tampering not found"),
            }
        }
    }
}
