//! The file server's descriptor budget on real FUSE mounts: a workspace far
//! larger than the budget can be walked and stat'ed whole, the layer never
//! holds more than its budget, and stele's own descriptors stay free.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use std::process::Command;

use fs_support::{fuse_available, Mounted, Recorder};
use stele_sandbox::RefusalRule;

/// `files` empty files in folders of 1,000.
fn populate(root: &std::path::Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir(&dir).unwrap();
        }
        std::fs::File::create(dir.join(format!("f{:04}", i % 1000))).unwrap();
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_100k_file_workspace_is_walked_within_the_budget() {
    if !fuse_available() {
        return;
    }
    const FILES: usize = 100_000;
    const MAX: usize = 4_096;
    let ws = tempfile::tempdir().unwrap();
    populate(ws.path(), FILES);
    let rec = std::sync::Arc::new(Recorder::with_recording(false));
    let m = Mounted::with(ws.path(), rec.clone(), |fs| fs.with_max_open(MAX));
    let before = open_fds();
    // Twice: the second walk finds entries evicted by the first.
    for _ in 0..2 {
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import os,sys\nn=0\nfor r,ds,fs in os.walk(sys.argv[1]):\n    for f in fs:\n        os.stat(os.path.join(r,f)); n+=1\nprint(n)",
            )
            .arg(&m.mountpoint)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            FILES.to_string()
        );
        let known = m.layer().known_inodes();
        assert!(known <= MAX, "the layer holds {known} inodes, budget {MAX}");
        // The descriptors behind them are bounded too (a few for the pool
        // and the test harness's own).
        let grown = open_fds().saturating_sub(before);
        assert!(
            grown <= MAX + 64,
            "{grown} descriptors more than before the walk"
        );
    }
    assert!(
        rec.refused(RefusalRule::OpenFiles).is_empty(),
        "eviction kept the walk under the budget: {:?}",
        rec.refused(RefusalRule::OpenFiles).first()
    );
}

#[test]
fn past_the_budget_lookups_fail_with_enfile_and_are_reported() {
    if !fuse_available() {
        return;
    }
    const MAX: usize = 64;
    let ws = tempfile::tempdir().unwrap();
    populate(ws.path(), 400);
    let rec = std::sync::Arc::new(Recorder::with_recording(false));
    let m = Mounted::with(ws.path(), rec.clone(), |fs| fs.with_max_open(MAX));
    // Hold more files open than the budget allows: open handles cannot be
    // evicted, so the budget must refuse rather than exhaust the process.
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import os,sys,errno\nfs=[]\ntry:\n    for i in range(400):\n        fs.append(open(os.path.join(sys.argv[1],'d000','f%04d'%i)))\nexcept OSError as e:\n    print(len(fs), errno.errorcode[e.errno])",
        )
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (opened, errno) = said.split_once(' ').expect(&said);
    assert_eq!(errno, "ENFILE", "{said}");
    let opened: usize = opened.parse().unwrap();
    assert!(opened < MAX, "{opened} files opened with a budget of {MAX}");
    assert!(m.layer().known_inodes() <= MAX);
    let refusals = rec.refused(RefusalRule::OpenFiles);
    assert!(!refusals.is_empty());
    assert!(
        refusals[0].1.contains(&format!("of {MAX} in use")),
        "{refusals:?}"
    );
}
