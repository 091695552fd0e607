#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Verifying a log while another process appends to it: every verification
//! reads one consistent state and reports the intact log as verified —
//! never a false tamper alarm (checkpoints and entries used to be read
//! outside one snapshot: `TAMPERED … entries after the newest signed
//! checkpoint`).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use stele_audit::verify::verify_db;
use stele_audit::{AuditLog, Disclosure, Event, EventKind, PayloadInput, Store};

const CHILD_ENV: &str = "STELE_AUDIT_LIVE_WRITER";

/// The writer, in a child process: appends from 8 threads (so commits are
/// groups of varying size) until the parent removes the file `<db>.run`.
#[test]
fn live_writer_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = std::path::PathBuf::from(db);
    let f = Fixture::new();
    let log = Arc::new(AuditLog::open(&db, f.signer.clone(), Fixture::opts()).unwrap());
    let run = std::path::PathBuf::from(format!("{}.run", db.display()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            let run = run.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while run.exists() {
                    let mut ev = Event::new(EventKind::PolicyDecision, actor());
                    if i.is_multiple_of(5) {
                        ev = ev.with_payload(PayloadInput {
                            role: "args".into(),
                            media: "text/plain".into(),
                            body: format!("thread {t} entry {i}").into_bytes(),
                            disclosure: Disclosure::CommitmentOnly,
                        });
                    }
                    log.append_blocking(ev).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn verifying_a_live_log_never_raises_a_false_alarm() {
    let f = Fixture::new();
    f.create().close().unwrap();
    let run = std::path::PathBuf::from(format!("{}.run", f.db.display()));
    std::fs::write(&run, b"").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "live_writer_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &f.db)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let size = || Store::open(&f.db).unwrap().size().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while size() < 200 {
        assert!(Instant::now() < deadline, "the writer made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sizes: Vec<u64> = Vec::new();
    let mut failure = None;
    // Until the verifications have seen the log grow often enough (each
    // one overlapping appends), however fast or loaded the machine.
    let grew = |s: &[u64]| s.windows(2).filter(|w| w[1] > w[0]).count();
    while grew(&sizes) < 10 && sizes.len() < 2000 {
        match verify_db(&f.db, &f.verifier(), None) {
            Ok(r) => sizes.push(r.entries),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    std::fs::remove_file(&run).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the writer failed");
    if let Some(e) = failure {
        panic!("an intact log being written was reported as: {e}");
    }
    // The verifications really overlapped the writes: they saw the log grow.
    assert!(
        grew(&sizes) >= 10,
        "the log grew between only {} of {} verifications",
        grew(&sizes),
        sizes.len()
    );
    verify_db(&f.db, &f.verifier(), None).unwrap();
}
