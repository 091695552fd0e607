//! Security battery, part 3: escaping the mediated workspace from inside the
//! sandbox (symlinks, hard links, rename, `..`), with the attempts that reach
//! the file server asserted to have been put to the Mediator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use stele_sandbox::exec::{ExitStatus, Sandbox};
use stele_sandbox::fs::WriteQuota;
use stele_sandbox::{FileAccess, FileOp, RefusalRule};
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

/// Whether the script's `echo NAME=$?` said NAME failed.
fn failed(said: &str, name: &str) -> bool {
    said.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}=")))
        .any(|code| code != "0")
}

/// The host user the test workspaces belong to (not stele's own).
const OWNER: (u32, u32) = (12345, 12346);

/// A workspace of [`OWNER`]'s, with these folders (also theirs).
fn owned_workspace(dirs: &[&str]) -> tempfile::TempDir {
    let ws = workspace();
    std::os::unix::fs::chown(ws.path(), Some(OWNER.0), Some(OWNER.1)).unwrap();
    for d in dirs {
        std::fs::create_dir_all(ws.path().join(d)).unwrap();
        std::os::unix::fs::chown(ws.path().join(d), Some(OWNER.0), Some(OWNER.1)).unwrap();
    }
    ws
}

fn host_mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn no_setuid_binary_can_be_planted_on_the_host() {
    if !facilities_ok(true) {
        return;
    }
    let ws = owned_workspace(&[]);
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    // The reproduction, and its variants.
    let o = sh(
        &sb,
        "cp /usr/bin/id ./myid && chmod 4755 ./myid; echo suid=$?; chmod 2755 myid; echo sgid=$?; \
         chmod 1755 myid; echo sticky=$?; mkdir -m 2777 d; echo mkdir=$?; \
         python3 -c \"import os; os.close(os.open('p', os.O_CREAT|os.O_WRONLY, 0o6777)); os.mkdir('q', 0o2777)\"; echo py=$?; \
         umask 0; echo x > plain; echo plain=$?",
    );
    let said = out(&o);
    for k in ["suid", "sgid", "sticky", "mkdir"] {
        assert!(failed(&said, k), "{k}: {said} {}", err(&o));
    }
    assert!(
        !failed(&said, "py") && !failed(&said, "plain"),
        "{said} {}",
        err(&o)
    );
    let w = ws.path();
    assert_eq!(
        host_mode(&w.join("myid")) & 0o7000,
        0,
        "{:o}",
        host_mode(&w.join("myid"))
    );
    assert_eq!(host_mode(&w.join("d")) & 0o7000, 0);
    assert_eq!(host_mode(&w.join("p")), 0o750);
    assert_eq!(host_mode(&w.join("q")), 0o750);
    assert_eq!(host_mode(&w.join("plain")), 0o640);
    for name in ["myid", "d", "p", "q", "plain"] {
        let m = std::fs::metadata(w.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), OWNER, "{name}");
    }
    assert!(rec
        .refused(RefusalRule::PrivilegedMode)
        .iter()
        .any(|(p, d)| p == "myid" && d == "mode 4755"));
}

#[test]
fn hard_links_cannot_reach_protected_files() {
    if !facilities_ok(true) {
        return;
    }
    let ws = owned_workspace(&["receipts", "reports"]);
    let w = ws.path();
    for (name, text) in [("r1.csv", "acme,10\n"), ("r2.csv", "globex,20\n")] {
        std::fs::write(w.join("receipts").join(name), text).unwrap();
        std::os::unix::fs::chown(w.join("receipts").join(name), Some(OWNER.0), Some(OWNER.1))
            .unwrap();
    }
    std::fs::hard_link(w.join("receipts/r2.csv"), w.join("reports/r2.csv")).unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    rec.protect("receipts");
    let sb = mediated(w, rec.clone());
    let o = sh(
        &sb,
        "python3 -c \"import os; os.link('receipts/r1.csv','reports/r1.csv')\"; echo link=$?; \
         echo tampered >> reports/r2.csv; echo write=$?; cat reports/r2.csv > /dev/null; echo read=$?",
    );
    let said = out(&o);
    assert!(failed(&said, "link") && failed(&said, "write"), "{said}");
    assert!(!failed(&said, "read"), "{said} {}", err(&o));
    assert_eq!(
        std::fs::read_to_string(w.join("receipts/r1.csv")).unwrap(),
        "acme,10\n"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("receipts/r2.csv")).unwrap(),
        "globex,20\n"
    );
    let writes = rec.asked(FileAccess::Write);
    assert!(
        writes.contains(&"receipts/r1.csv".to_string()),
        "{writes:?}"
    );
    assert!(
        writes.contains(&"receipts/r2.csv".to_string()),
        "{writes:?}"
    );
}

#[test]
fn the_root_lists_and_odd_names_are_refused_and_reported() {
    if !facilities_ok(true) {
        return;
    }
    let ws = owned_workspace(&["data"]);
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let o = sh(
        &sb,
        "ls -a . > /dev/null; echo root=$?; ls -a /workspace > /dev/null; echo abs=$?; \
         touch \"$(printf 'x\\033y')\"; echo esc=$?",
    );
    let said = out(&o);
    assert!(
        !failed(&said, "root") && !failed(&said, "abs"),
        "{said} {}",
        err(&o)
    );
    assert!(failed(&said, "esc"), "{said}");
    assert!(rec.asked(FileAccess::List).contains(&".".to_string()));
    assert!(rec
        .refused(RefusalRule::ControlCharacter)
        .iter()
        .any(|(p, _)| p == "x\\u{1b}y"));
}

#[test]
fn the_session_write_quota_holds() {
    if !facilities_ok(true) {
        return;
    }
    let ws = owned_workspace(&[]);
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated_with_quota(ws.path(), rec.clone(), WriteQuota::Bytes(1 << 20));
    let o = sh(
        &sb,
        "dd if=/dev/zero of=a bs=64k count=12 2>/dev/null; echo a=$?",
    );
    assert!(!failed(&out(&o), "a"), "{}", out(&o));
    // The quota is the session's: the next command has what is left.
    let o = sh(&sb, "dd if=/dev/zero of=b bs=64k count=12 2>&1; echo b=$?");
    assert!(failed(&out(&o), "b"), "{}", out(&o));
    assert!(out(&o).contains("quota exceeded"), "{}", out(&o));
    let usage = sb.workspace_usage().unwrap();
    assert_eq!(usage.bytes_written, 1 << 20);
    assert_eq!(usage.quota, WriteQuota::Bytes(1 << 20));
    let on_disk = std::fs::metadata(ws.path().join("a")).unwrap().len()
        + std::fs::metadata(ws.path().join("b")).unwrap().len();
    assert_eq!(on_disk, 1 << 20);
    assert_eq!(rec.refused(RefusalRule::WriteQuota).len(), 1);
}
