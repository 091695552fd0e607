#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A writer process killed with SIGKILL at random points during heavy
//! appends: after restart the log opens, verifies, and holds every
//! acknowledged append.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use stele_audit::verify::verify_db;
use stele_audit::{AuditLog, Disclosure, Event, EventKind, PayloadInput, Store};

const CHILD_ENV: &str = "STELE_AUDIT_CRASH_CHILD";

/// The writer, run in a child process: appends from 8 threads forever and
/// prints `<seq> <leaf hash hex>` after each acknowledgement.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f = Fixture::new();
    let log = Arc::new(
        AuditLog::open_or_create(std::path::Path::new(&db), f.signer.clone(), Fixture::opts())
            .unwrap(),
    );
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            let out = out.clone();
            std::thread::spawn(move || loop {
                let ev =
                    Event::new(EventKind::PolicyDecision, actor()).with_payload(PayloadInput {
                        role: "args".into(),
                        media: "text/plain".into(),
                        body: format!("thread {t}").into_bytes(),
                        disclosure: Disclosure::CommitmentOnly,
                    });
                let r = log.append_blocking(ev).unwrap();
                let mut o = out.lock().unwrap();
                writeln!(o, "{} {}", r.seq, hex::encode(r.leaf_hash)).unwrap();
                o.flush().unwrap();
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_during_appends_loses_nothing_acknowledged() {
    let f = Fixture::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut acked: Vec<(u64, String)> = Vec::new();
    let iterations = 30;
    for it in 0..iterations {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Killed after a random number of acknowledgements plus a random
        // delay: a random point of the write path, however loaded the
        // machine is (a fixed time might pass before the first append).
        let after_acks = (seed >> 33) % 40;
        let then = Duration::from_millis((seed >> 20) % 30);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &f.db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = l
                    .split_once(' ')
                    .and_then(|(s, h)| Some((s.parse::<u64>().ok()?, h.to_string())));
                if let Some(a) = parsed {
                    if tx.send(a).is_err() {
                        break;
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut got = Vec::new();
        while (got.len() as u64) < after_acks && Instant::now() < deadline {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
                got.push(a);
            }
        }
        std::thread::sleep(then);
        // SIGKILL: no destructor, no log.close.
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        got.extend(rx.try_iter());
        acked.extend(got);
        // Killed before the log was created: nothing may have been acknowledged.
        if !f.db.exists() {
            assert!(acked.is_empty(), "iteration {it}: acks without a log");
            continue;
        }
        // The log opens (start-up check passes) and verifies after every crash.
        let log = f
            .open()
            .unwrap_or_else(|e| panic!("iteration {it}: reopen failed: {e}"));
        drop(log);
        verify_db(&f.db, &f.verifier(), None).unwrap_or_else(|e| panic!("iteration {it}: {e}"));
    }
    let store = Store::open(&f.db).unwrap();
    assert!(
        acked.len() > 100,
        "the writers made progress ({} acks; each run waits for its share)",
        acked.len()
    );
    for (seq, hash) in &acked {
        let e = store
            .entry(*seq)
            .unwrap_or_else(|e| panic!("acknowledged entry {seq} lost: {e}"));
        assert_eq!(
            &hex::encode(&e.leaf_hash),
            hash,
            "entry {seq} differs from what was acknowledged"
        );
    }
    eprintln!(
        "{} acknowledged appends across {iterations} kills, all present",
        acked.len()
    );
}
