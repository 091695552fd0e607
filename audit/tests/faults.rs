#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A garbage database, a wrong key, a full disk: clear errors, nothing half-written.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use stele_attest::Ed25519Signer;
use stele_audit::verify::{verify_db, VerifyFailure};
use stele_audit::{AuditError, AuditLog, Disclosure, Event, EventKind, PayloadInput};

#[test]
fn garbage_database_is_refused_with_its_path() {
    let f = Fixture::new();
    std::fs::write(
        &f.db,
        b"this is not a database, it is a receipt for coffee".repeat(200),
    )
    .unwrap();
    let e = f.open().unwrap_err();
    assert!(matches!(e, AuditError::NotALog { .. }), "{e}");
    assert!(e.to_string().contains(&f.db.display().to_string()), "{e}");
    assert!(matches!(
        verify_db(&f.db, &f.verifier(), None),
        Err(VerifyFailure::Unreadable(_))
    ));
    // An SQLite file that is not ours.
    let other = f.dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x);")
        .unwrap();
    let e = AuditLog::open(&other, f.signer.clone(), Fixture::opts()).unwrap_err();
    assert!(matches!(e, AuditError::NotALog { .. }), "{e}");
}

#[test]
fn wrong_key_is_refused_and_nothing_written() {
    let f = Fixture::new();
    f.create().close().unwrap();
    // What the log holds: every entry and the signed head. (The bytes of
    // the database file may change: the log's write-ahead log outlives a
    // writer and the next connection to close copies it in.)
    let state = || {
        let s = stele_audit::Store::open(&f.db).unwrap();
        let mut entries = Vec::new();
        s.for_each_entry(0, u64::MAX, |_, b, _| {
            entries.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        (s.size().unwrap(), s.latest_checkpoint().unwrap(), entries)
    };
    let before = state();
    let wrong = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[1; 32]).unwrap());
    let e = AuditLog::open(&f.db, wrong, Fixture::opts()).unwrap_err();
    assert!(matches!(e, AuditError::WrongKey { .. }), "{e}");
    assert_eq!(state(), before);
    let renamed = Arc::new(Ed25519Signer::from_seed("another.origin/log", &[7; 32]).unwrap());
    assert!(AuditLog::open(&f.db, renamed, Fixture::opts()).is_err());
}

#[test]
fn full_disk_fails_appends_cleanly() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED full_disk_fails_appends_cleanly: needs root to mount a small tmpfs");
        return;
    }
    let f = Fixture::new();
    let mnt = f.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=400k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let db = mnt.join("audit.db");
    let log = AuditLog::create(&db, f.signer.clone(), Fixture::opts()).unwrap();
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..10_000 {
        let ev = Event::new(EventKind::PolicyDecision, actor()).with_payload(PayloadInput {
            role: "output".into(),
            media: "application/octet-stream".into(),
            body: vec![i as u8; 8 * 1024],
            disclosure: Disclosure::CommitmentOnly,
        });
        match log.append_blocking(ev) {
            Ok(r) => acked.push(r.seq),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("the disk never filled");
    assert!(
        e.to_string().to_lowercase().contains("full") || e.to_string().contains("disk"),
        "{e}"
    );
    drop(log);
    // Make room, then the log opens, verifies and holds every acknowledged append.
    assert!(Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    let log = AuditLog::open(&db, f.signer.clone(), Fixture::opts()).unwrap();
    log.append_blocking(Event::new(EventKind::PolicyDecision, actor()))
        .unwrap();
    log.close().unwrap();
    let rep = verify_db(&db, &f.verifier(), None).unwrap();
    let store = stele_audit::Store::open(&db).unwrap();
    for s in &acked {
        store.entry(*s).unwrap();
    }
    eprintln!(
        "disk full after {} appends ({e}); log verified with {} entries",
        acked.len(),
        rep.entries
    );
}
