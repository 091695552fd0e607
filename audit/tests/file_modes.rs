#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every file and folder the audit and attest crates create is private to
//! its owner — folders 0700, files 0600 — whatever the umask; files left
//! more open by earlier versions are tightened when the log is opened for
//! writing (or the attestation folder written to).
//!
//! One test function in its own binary: the umask is process-wide, and it
//! is set to 0 here (the worst case: everything the kernel allows).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;
use stele_audit::export::attestation::{attest_session, SessionContext};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::AuditLog;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file and folder under `root` (not `root` itself).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

fn assert_private(root: &Path, what: &str) {
    let all = walk(root);
    assert!(
        !all.is_empty(),
        "{what}: nothing created under {}",
        root.display()
    );
    for p in all {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            mode(&p),
            want,
            "{what}: {} is {:o}, expected {want:o}",
            p.display(),
            mode(&p)
        );
    }
}

fn ctx() -> SessionContext {
    SessionContext {
        policy_digest: None,
        runtime_version: "test".into(),
        binary_sha256: "0".repeat(64),
        sandbox: serde_json::json!({}),
    }
}

#[test]
fn everything_created_is_private_whatever_the_umask() {
    // SAFETY: umask has no preconditions; this binary runs one test.
    unsafe { libc::umask(0) };
    let f = Fixture::new();
    let state = f.dir.path().join("state/nested");
    let db = state.join("audit.db");

    // The log, its side files (while open) and the folders made for it.
    let log = AuditLog::create(&db, f.signer.clone(), Fixture::opts()).unwrap();
    sample_session(&log, "s1");
    for side in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{side}", db.display()));
        assert!(p.exists(), "{} exists while the log is open", p.display());
    }
    assert_private(&f.dir.path().join("state"), "open log");

    // A session attestation (folder and file), the executable digest cache.
    attest_session(&log, f.signer.as_ref(), "s1", &ctx()).unwrap();
    stele_audit::export::attestation::binary_sha256(Some(&state)).unwrap();
    assert!(state.join("binary-sha256.cache").exists());

    // Exports, a folder and a tar file.
    let exports = f.dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    std::fs::set_permissions(&exports, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (name, tar) in [("bundle", false), ("bundle.tar", true)] {
        let o = ExportOptions {
            selection: Selection::Session { id: "s1".into() },
            payloads: true,
            policies: vec![],
            exporter: actor(),
            allow_open_session: false,
            tar,
        };
        export(&log, f.signer.as_ref(), &o, &exports.join(name)).unwrap();
    }
    log.close().unwrap();
    assert_private(&f.dir.path().join("state"), "closed log, attestations");
    assert_private(&exports, "exports");

    // A key file in folders made for it; a witness's state file.
    let keys = f.dir.path().join("keys/deeper");
    stele_attest::generate_key_file(&keys.join("log.key"), "audit.test.invalid/k").unwrap();
    assert_private(&f.dir.path().join("keys"), "key file");
    let witness = f.dir.path().join("witness");
    std::fs::create_dir(&witness).unwrap();
    std::fs::set_permissions(&witness, std::fs::Permissions::from_mode(0o700)).unwrap();
    stele_audit::witness::state::WitnessState::default()
        .save(&witness.join("state.json"))
        .unwrap();
    assert_private(&witness, "witness state");

    // Left too open by an earlier version: tightened when opened for
    // writing, and the attestation folder when written to.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let att = PathBuf::from(format!("{}.attestations", db.display()));
    std::fs::set_permissions(&att, std::fs::Permissions::from_mode(0o777)).unwrap();
    for e in std::fs::read_dir(&att).unwrap() {
        std::fs::set_permissions(e.unwrap().path(), std::fs::Permissions::from_mode(0o666))
            .unwrap();
    }
    let log = f_open(&f, &db);
    sample_session(&log, "s2");
    attest_session(&log, f.signer.as_ref(), "s2", &ctx()).unwrap();
    attest_session(&log, f.signer.as_ref(), "s1", &ctx()).unwrap();
    log.close().unwrap();
    assert_private(&f.dir.path().join("state"), "reopened log");
}

fn f_open(f: &Fixture, db: &Path) -> AuditLog {
    AuditLog::open(db, f.signer.clone(), Fixture::opts()).unwrap()
}
