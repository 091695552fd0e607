#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The micro-VM image is built when the VM backend is first asked for, not
//! before: a session with `--backend vm` and no image in its store builds
//! it (here the builder finds the inputs' image already made, as a second
//! machine of the same inputs would from a cache, so the test takes seconds),
//! says so, and runs; `vm_image_build = "never"` refuses instead (see
//! vm_e2e.rs). Needs the image `scripts/setup-vm` built.

use std::path::{Path, PathBuf};

use stele_tests::Stele;

/// The image store `scripts/setup-vm` filled.
fn image_store() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_VM_IMAGES") {
        return PathBuf::from(p);
    }
    let state = if let Some(p) = std::env::var_os("STELE_STATE_DIR") {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(p).join("stele")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/state/stele")
    };
    state.join("vm/images")
}

/// `from` into `to`, files hard-linked (the image is large), else copied.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            link_tree(&e.path(), &dst);
        } else if std::fs::hard_link(e.path(), &dst).is_err() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn a_vm_session_builds_a_missing_image_on_first_use() {
    let images = image_store();
    let current = std::fs::read_to_string(images.join("current")).unwrap_or_else(|e| {
        panic!(
            "no guest image in {} ({e}); scripts/setup-vm builds it",
            images.display()
        )
    });
    let key = current.trim();
    // A store with the image's files but no current image: what a machine
    // that never used the VM backend has, once the builder has run.
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("images");
    link_tree(&images.join(key), &store.join(key));
    let s = Stele::new(&d.path().join("state"));
    assert!(s.run(&["keys", "init"]).unwrap().status.success());
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    stele_tests::share(&ws).unwrap();
    let o = s
        .run_env(
            &[
                "sandbox",
                "exec",
                "--backend",
                "vm",
                "--workspace",
                ws.to_str().unwrap(),
                "--",
                "python3",
                "-c",
                "print('in the vm')",
            ],
            &[("STELE_VM_IMAGES", store.to_str().unwrap())],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("the micro-VM backend has no guest image yet; building it now"),
        "the build is announced: {err}"
    );
    assert!(
        err.contains("vm image: ["),
        "each step with its time: {err}"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "in the vm\n");
    assert_eq!(
        std::fs::read_to_string(store.join("current"))
            .unwrap()
            .trim(),
        key,
        "the image is current afterwards"
    );
    // The second session finds it: no build.
    let o = s
        .run_env(
            &[
                "sandbox",
                "exec",
                "--backend",
                "vm",
                "--workspace",
                ws.to_str().unwrap(),
                "--",
                "true",
            ],
            &[("STELE_VM_IMAGES", store.to_str().unwrap())],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("building it now"), "{err}");
}
