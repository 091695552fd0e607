//! Security battery, part 3: escaping the mediated workspace from inside the
//! sandbox (symlinks, hard links, rename, `..`), with the attempts that reach
//! the file server asserted to have been put to the Mediator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;

use stele_sandbox::exec::ExitStatus;
use stele_sandbox::{FileAccess, FileOp};
use support::*;

/// A host directory beside the workspace holding a secret.
fn outside_secret() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("stele-outside-")
        .tempdir()
        .unwrap();
    std::fs::write(d.path().join("secret.txt"), "OUTSIDE-SECRET").unwrap();
    d
}

#[test]
fn symlink_escapes_resolve_inside_the_sandbox() {
    if !facilities_ok(true) {
        return;
    }
    let outside = outside_secret();
    let ws = workspace();
    // Links planted on the host side, pointing out of the workspace.
    symlink(
        outside.path().join("secret.txt"),
        ws.path().join("abs-link"),
    )
    .unwrap();
    symlink("../../../../../../etc/shadow", ws.path().join("rel-link")).unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let o = sh(
        &sb,
        &format!(
            "cat abs-link; cat rel-link; ln -s {} made-link && cat made-link; \
             ln -s /proc/self/root/etc/shadow p && cat p; echo done",
            outside.path().join("secret.txt").display()
        ),
    );
    let s = out(&o);
    assert!(s.contains("done"), "{s} {}", err(&o));
    assert!(!s.contains("OUTSIDE-SECRET"), "{s}");
    assert!(!s.contains("root:"), "{s}");
    // Creating the links inside went through the Mediator.
    let reqs = rec.files.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .any(|r| r.op == FileOp::Symlink && r.path == "made-link"),
        "{reqs:?}"
    );
    assert!(rec
        .asked(FileAccess::List)
        .contains(&"abs-link".to_string()));
}

#[test]
fn hard_links_and_renames_cannot_cross_the_workspace() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    std::fs::write(ws.path().join("mine.txt"), "workspace file").unwrap();
    // Writable by the sandbox's uid, so the kernel's protected_hardlinks
    // rule does not get in the way of the in-workspace link below.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ws.path().join("mine.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let o = sh(
        &sb,
        "ln /etc/passwd pw 2>&1; echo link_in=$?; \
         ln mine.txt /tmp/hl 2>&1; echo link_out=$?; \
         python3 -c \"import os; os.rename('mine.txt', '/tmp/moved')\" 2>&1; echo rename_out=$?; \
         python3 -c \"import os; os.rename('/etc/hostname', 'h')\" 2>&1; echo rename_in=$?; \
         ln mine.txt inside.txt; echo link_inside=$?; mv inside.txt moved.txt; echo mv_inside=$?",
    );
    let s = out(&o);
    for k in ["link_in", "link_out", "rename_out", "rename_in"] {
        assert!(!s.contains(&format!("{k}=0")), "{k} succeeded: {s}");
    }
    assert!(ws.path().join("mine.txt").exists(), "{s}");
    assert!(!ws.path().join("pw").exists());
    assert!(!ws.path().join("h").exists());
    // Links and renames within the workspace are fine, and mediated.
    assert!(
        s.contains("link_inside=0") && s.contains("mv_inside=0"),
        "{s} {}",
        err(&o)
    );
    let reqs = rec.files.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .any(|r| r.op == FileOp::Link && r.path == "inside.txt"),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.op == FileOp::Rename && r.path == "moved.txt"),
        "{reqs:?}"
    );
}

#[test]
fn dotdot_traversal_stays_in_the_sandbox_root() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    let sibling = ws
        .path()
        .parent()
        .unwrap()
        .join(format!("stele-sibling-{}", std::process::id()));
    std::fs::write(&sibling, "SIBLING-SECRET").unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let name = sibling.file_name().unwrap().to_string_lossy().into_owned();
    let o = sh(
        &sb,
        &format!(
            "cat ../{name} 2>&1; cat /workspace/../../../{name} 2>&1; \
             ls /workspace/.. ; cd ../../.. && pwd"
        ),
    );
    let _ = std::fs::remove_file(&sibling);
    let s = out(&o);
    assert!(!s.contains("SIBLING-SECRET"), "{s}");
    assert!(s.lines().last() == Some("/"), "{s}");
    assert!(!s.contains(&name) || s.contains("No such file"), "{s}");
}

#[test]
fn writes_denied_by_policy_never_reach_the_host() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    std::fs::write(ws.path().join("keep.txt"), "original").unwrap();
    let rec = Recorder::new(Rule::ReadOnly);
    let sb = mediated(ws.path(), rec.clone());
    let o = sh(
        &sb,
        "echo x > keep.txt; rm keep.txt; mv keep.txt k2; mkdir d; touch new; echo end",
    );
    assert_eq!(o.status, ExitStatus::Exit(0));
    assert!(out(&o).contains("end"));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("keep.txt")).unwrap(),
        "original"
    );
    assert!(!ws.path().join("k2").exists() && !ws.path().join("d").exists());
    assert!(!ws.path().join("new").exists());
    let denied_kinds: Vec<FileAccess> = rec
        .files
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.access)
        .filter(|a| matches!(a, FileAccess::Write | FileAccess::Delete))
        .collect();
    assert!(denied_kinds.contains(&FileAccess::Write));
    assert!(
        denied_kinds.contains(&FileAccess::Delete),
        "{denied_kinds:?}"
    );
}
