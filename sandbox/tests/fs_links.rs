//! Hard links on a real FUSE mount: a file with several names is decided
//! under every one of them, a link needs the right to write the file under
//! all its names, and a file linked from outside the workspace is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use fs_support::{fuse_available, Mounted, Recorder};
use stele_sandbox::{FileAccess, RefusalRule};

/// Whether the script's `echo NAME=$?` said NAME failed (any status but 0).
fn failed(said: &str, name: &str) -> bool {
    said.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}=")))
        .any(|code| code != "0")
}

fn sh(dir: &Path, script: &str) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The finance layout: receipts (read-only to the agent) and reports.
fn finance(ws: &Path) {
    fs::create_dir(ws.join("receipts")).unwrap();
    fs::create_dir(ws.join("reports")).unwrap();
    fs::write(ws.join("receipts/r1.csv"), "client,amount\nacme,10\n").unwrap();
}

#[test]
fn a_new_link_to_a_protected_file_is_refused() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    finance(ws.path());
    let rec = Recorder::new();
    rec.deny(Some(FileAccess::Write), "receipts");
    rec.deny(Some(FileAccess::Delete), "receipts");
    let m = Mounted::new(ws.path(), rec.clone());
    // The reproduction: os.link receipts -> reports, then write reports.
    let said = sh(
        &m.mountpoint,
        "python3 -c \"import os; os.link('receipts/r1.csv','reports/r1.csv')\"; echo link=$?; \
         echo tampered >> reports/r1.csv; echo write=$?",
    );
    assert!(failed(&said, "link"), "{said}");
    // The append made a file of its own; the protected one has one link.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(ws.path().join("receipts/r1.csv"))
            .unwrap()
            .nlink(),
        1
    );
    assert_eq!(
        fs::read_to_string(ws.path().join("receipts/r1.csv")).unwrap(),
        "client,amount\nacme,10\n"
    );
    // The link asked to write the source under its own name, and was denied.
    let asked = rec.requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|r| r.access == FileAccess::Write && r.path == "receipts/r1.csv"),
        "{asked:?}"
    );
}

#[test]
fn a_pre_existing_link_is_decided_under_both_names() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    finance(ws.path());
    fs::hard_link(
        ws.path().join("receipts/r1.csv"),
        ws.path().join("reports/r1.csv"),
    )
    .unwrap();
    let rec = Recorder::new();
    rec.deny(Some(FileAccess::Write), "receipts");
    let m = Mounted::new(ws.path(), rec.clone());
    let said = sh(
        &m.mountpoint,
        "echo tampered >> reports/r1.csv; echo append=$?; true > reports/r1.csv; echo trunc=$?; \
         truncate -s 0 reports/r1.csv; echo truncate=$?; chmod 600 reports/r1.csv; echo chmod=$?; \
         cat reports/r1.csv > /dev/null; echo read=$?",
    );
    for k in ["append", "trunc", "truncate", "chmod"] {
        assert!(failed(&said, k), "{k}: {said}");
    }
    // Reading is allowed under both names.
    assert!(said.contains("read=0"), "{said}");
    assert_eq!(
        fs::read_to_string(ws.path().join("receipts/r1.csv")).unwrap(),
        "client,amount\nacme,10\n"
    );
    let writes: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.access == FileAccess::Write)
        .map(|r| r.path.clone())
        .collect();
    assert!(
        writes.contains(&"receipts/r1.csv".to_string()),
        "{writes:?}"
    );
    let reads: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.access == FileAccess::Read)
        .map(|r| r.path.clone())
        .collect();
    assert!(
        reads.contains(&"receipts/r1.csv".to_string())
            && reads.contains(&"reports/r1.csv".to_string()),
        "{reads:?}"
    );
}

#[test]
fn a_read_is_never_decided_under_another_name_alone() {
    if !fuse_available() {
        return;
    }
    // The layer used to name an inode by the last path it was looked up by:
    // look up the allowed name, then read the denied one.
    let ws = tempfile::tempdir().unwrap();
    fs::create_dir(ws.path().join("secret")).unwrap();
    fs::create_dir(ws.path().join("public")).unwrap();
    fs::write(ws.path().join("secret/key"), "PRIVATE").unwrap();
    fs::hard_link(ws.path().join("secret/key"), ws.path().join("public/key")).unwrap();
    let rec = Recorder::new();
    rec.deny(Some(FileAccess::Read), "secret");
    let m = Mounted::new(ws.path(), rec.clone());
    let said = sh(
        &m.mountpoint,
        "stat public/key > /dev/null; cat secret/key; echo secret=$?; cat public/key; echo public=$?",
    );
    assert!(!said.contains("PRIVATE"), "{said}");
    assert!(failed(&said, "secret") && failed(&said, "public"), "{said}");
    // Every read decision that was asked named secret/key too, and the
    // denial is recorded under the name policy protects.
    let reads: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.access == FileAccess::Read)
        .map(|r| r.path.clone())
        .collect();
    assert!(reads.contains(&"secret/key".to_string()), "{reads:?}");
}

#[test]
fn a_file_linked_from_outside_the_workspace_is_refused() {
    if !fuse_available() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let ws = base.path().join("ws");
    fs::create_dir(&ws).unwrap();
    fs::write(base.path().join("outside.txt"), "OUTSIDE").unwrap();
    fs::hard_link(base.path().join("outside.txt"), ws.join("inside.txt")).unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(&ws, rec.clone());
    let said = sh(
        &m.mountpoint,
        "cat inside.txt; echo read=$?; echo x >> inside.txt; echo write=$?",
    );
    assert!(!said.contains("OUTSIDE"), "{said}");
    assert!(failed(&said, "read") && failed(&said, "write"), "{said}");
    assert_eq!(
        fs::read_to_string(base.path().join("outside.txt")).unwrap(),
        "OUTSIDE"
    );
    let refused = rec.refused(RefusalRule::HardLinkUnresolved);
    assert!(
        refused
            .iter()
            .any(|(p, d)| p == "inside.txt"
                && d == "2 hard links, 1 of them named inside the workspace"),
        "{refused:?}"
    );
}

#[test]
fn links_made_and_removed_in_the_workspace_are_followed() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("a"), "one\n").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    // A link and its writes, all allowed, then the link removed and renamed.
    let said = sh(
        &m.mountpoint,
        "ln a b; echo two >> b; echo w=$?; mv b c; echo three >> c; rm a; echo four >> c; echo end=$?",
    );
    assert!(said.contains("w=0") && said.contains("end=0"), "{said}");
    assert_eq!(
        fs::read_to_string(ws.path().join("c")).unwrap(),
        "one\ntwo\nthree\nfour\n"
    );
    let writes: Vec<String> = rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.access == FileAccess::Write)
        .map(|r| r.path.clone())
        .collect();
    // Writes through b were decided under a too; after the rename under c
    // and a; after a was removed, under c alone.
    assert!(
        writes.iter().filter(|p| *p == "a").count() >= 2,
        "{writes:?}"
    );
    assert!(writes.contains(&"c".to_string()), "{writes:?}");
    assert!(rec.refused(RefusalRule::HardLinkUnresolved).is_empty());
}
