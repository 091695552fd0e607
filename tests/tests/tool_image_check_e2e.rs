//! `stele sandbox check` on a tampered tool image, end to end: the current
//! image is copied into a private image store (its files hard-linked, so
//! the ~1 GB is not copied; a tampered file is replaced, never written
//! through the link, and the shared store is never touched), then one file
//! of the root tree is changed, or one added. The untouched copy passes;
//! each tampered copy fails with the sandbox-unavailable exit (69), naming
//! the image (digest and tree) and the path that differs, in text and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stele_sandbox::vm::ImageStore;
use stele_tests::{sandbox_available, vm_images, Stele};

/// A private store holding a copy of the shared store's current image.
struct PrivateStore {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The copied image's directory.
    image: PathBuf,
    digest: String,
}

impl PrivateStore {
    fn copy_current() -> PrivateStore {
        let shared = ImageStore::at(vm_images());
        let current = shared
            .current()
            .expect("the tool image must be built by scripts/setup-vm");
        let key = current.dir.file_name().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        // The store and the image directory must be owner-only writable, as
        // `SystemRoot::image` demands (the tempdir is 0700).
        std::fs::create_dir(&root).unwrap();
        let image = root.join(&key);
        // Hard links where the store shares a file system with the temp
        // folder (the copy costs seconds), else a reflink/full copy.
        let linked = Command::new("cp")
            .arg("-al")
            .arg(&current.dir)
            .arg(&image)
            .status()
            .unwrap();
        if !linked.success() {
            let _ = std::fs::remove_dir_all(&image);
            let copied = Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&current.dir)
                .arg(&image)
                .status()
                .unwrap();
            assert!(copied.success(), "copying {}", current.dir.display());
        }
        std::fs::write(root.join("current"), format!("{}\n", key.to_string_lossy())).unwrap();
        PrivateStore {
            _dir: dir,
            root,
            image,
            digest: current.manifest.digest,
        }
    }

    fn tree(&self) -> PathBuf {
        self.image.join("root")
    }

    /// Replace `rel` (a regular file of the tree) with other content: the
    /// link is removed first, so the shared image's file is not changed.
    fn change(&self, rel: &str) {
        let p = self.tree().join(rel);
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert!(meta.is_file(), "{rel} is not a regular file in the image");
        let mut text = std::fs::read(&p).unwrap();
        text.extend_from_slice(b"tampered\n");
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, &text).unwrap();
        // Same mode and owner: only the content differs.
        std::fs::set_permissions(
            &p,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )
        .unwrap();
        std::os::unix::fs::chown(&p, Some(meta.uid()), Some(meta.gid())).unwrap();
    }

    fn add(&self, rel: &str) {
        let p = self.tree().join(rel);
        assert!(!p.exists(), "{rel} already in the image");
        std::fs::write(&p, b"#!/bin/sh\necho extra\n").unwrap();
    }

    fn check(&self, s: &Stele, json: bool) -> (Option<i32>, String) {
        let mut args = vec!["sandbox", "check"];
        if json {
            args.push("--json");
        }
        let o = s
            .run_env(&args, &[("STELE_VM_IMAGES", self.root.to_str().unwrap())])
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    }
}

/// The file of the tree the first case changes (in every Debian root).
const CHANGED: &str = "etc/debian_version";
/// The file the second case adds.
const ADDED: &str = "usr/local/bin/stele-extra";

fn shared_file_untouched(rel: &str, before: &[u8]) {
    let shared = ImageStore::at(vm_images()).current().unwrap();
    let now = std::fs::read(shared.dir.join("root").join(rel)).unwrap();
    assert_eq!(now, before, "the shared image's {rel} changed");
}

#[test]
fn sandbox_check_names_a_changed_and_an_added_file_and_passes_the_untouched_copy() {
    if !sandbox_available("sandbox_check_names_a_changed_and_an_added_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Stele::new(&dir.path().join("state"));
    let shared = ImageStore::at(vm_images()).current().unwrap();
    let original = std::fs::read(shared.dir.join("root").join(CHANGED)).unwrap();

    // The untouched copy passes: the same digest, re-hashed intact.
    let untouched = PrivateStore::copy_current();
    let (code, out) = untouched.check(&s, false);
    assert_eq!(code, Some(0), "the untouched copy failed:\n{out}");
    assert!(
        out.contains(&format!("{} (re-hashed: intact)", untouched.digest)),
        "{out}"
    );
    let (code, out) = untouched.check(&s, true);
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["root"]["image_integrity"], "intact", "{v}");
    assert_eq!(v["root"]["image_digest"], untouched.digest.as_str());
    assert_eq!(v["root"]["ready"], true);
    drop(untouched);

    // One file changed, one added: each alone is found and named.
    type Tamper = (&'static str, fn(&PrivateStore), &'static str);
    let cases: [Tamper; 2] = [
        ("changed", |p| p.change(CHANGED), CHANGED),
        ("added", |p| p.add(ADDED), ADDED),
    ];
    for (what, tamper, rel) in cases {
        let copy = PrivateStore::copy_current();
        tamper(&copy);
        let (code, out) = copy.check(&s, false);
        assert_eq!(code, Some(69), "{what}: the tampered copy passed:\n{out}");
        let tree = copy.tree();
        for want in [
            copy.digest.as_str(),
            "CHANGED SINCE BUILT",
            tree.to_str().unwrap(),
            &format!("{what} \"{rel}\""),
        ] {
            assert!(out.contains(want), "{what}: {want:?} not in:\n{out}");
        }
        assert!(
            out.contains("process sandbox: REFUSES TO START"),
            "{what}:\n{out}"
        );

        let (code, out) = copy.check(&s, true);
        assert_eq!(code, Some(69), "{what}: {out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let root = &v["root"];
        assert_eq!(root["image_integrity"], "changed", "{what}: {root}");
        assert_eq!(root["ready"], false, "{what}: {root}");
        assert_eq!(root["image_digest"], copy.digest.as_str(), "{root}");
        let changed: Vec<&str> = root["image_changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        // Exactly the tree and the one path: the kernel, initramfs and ext4
        // still hash as built.
        assert_eq!(
            changed,
            [
                format!("root tree {}", tree.display()),
                format!("{what} \"{rel}\""),
            ],
            "{what}: {root}"
        );
        shared_file_untouched(CHANGED, &original);
    }
    assert!(
        !shared.dir.join("root").join(ADDED).exists(),
        "the shared image gained {ADDED}"
    );
}

/// The private store is refused as a sandbox root when others may write it,
/// as the shared one would be (so the copy is a faithful stand-in).
#[test]
fn the_private_store_is_guarded_like_the_shared_one() {
    if !sandbox_available("the_private_store_is_guarded_like_the_shared_one") {
        return;
    }
    let copy = PrivateStore::copy_current();
    let image_mode = std::fs::metadata(&copy.image).unwrap().mode() & 0o777;
    assert_eq!(image_mode & 0o022, 0, "{image_mode:o}");
    std::fs::set_permissions(
        &copy.root,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Stele::new(&dir.path().join("state"));
    let (code, out) = copy.check(&s, false);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("writable by group or others"), "{out}");
    assert!(Path::new(&copy.root).exists());
}
