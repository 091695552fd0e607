#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One writer per database file, whatever name reaches it: a symlink to the
//! file or its folder, a bind mount of the folder or of the file, another
//! process, the same process twice. A second writer waits (bounded) and
//! then says the log is busy; a file with several hard links is refused
//! (SQLite keeps its write-ahead log beside the name used, so two names
//! could see two states of one log).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use stele_audit::verify::verify_db;
use stele_audit::{AuditError, AuditLog, Event, EventKind, LogOptions};

const CHILD_ENV: &str = "STELE_AUDIT_LOCK_CHILD";

fn quick() -> LogOptions {
    LogOptions {
        lock_wait: Duration::from_millis(200),
        ..Fixture::opts()
    }
}

fn second_writer(f: &Fixture, path: &Path) -> Result<AuditLog, AuditError> {
    AuditLog::open(path, f.signer.clone(), quick())
}

fn assert_busy(r: Result<AuditLog, AuditError>, what: &str) {
    match r {
        Err(e @ AuditError::Busy(_)) => {
            assert!(e.to_string().contains("busy"), "{what}: {e}");
        }
        Err(e) => panic!("{what}: expected busy, got {e}"),
        Ok(_) => panic!("{what}: a second writer was let in"),
    }
}

/// In a child process: open the log named by the environment, then report
/// `OPENED`, `BUSY` or the error on stdout; with `hold`, keep it open until
/// `<db>.hold` disappears.
#[test]
fn lock_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, db) = spec.split_once('|').unwrap();
    let f = Fixture::new();
    match AuditLog::open(Path::new(db), f.signer.clone(), quick()) {
        Ok(log) => {
            println!("OPENED");
            if mode == "hold" {
                let hold = PathBuf::from(format!("{db}.hold"));
                while hold.exists() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            log.append_blocking(Event::new(EventKind::PolicyDecision, actor()))
                .unwrap();
        }
        Err(AuditError::Busy(_)) => println!("BUSY"),
        Err(e) => println!("ERROR {e}"),
    }
}

fn child(mode: &str, db: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "lock_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD_ENV, format!("{mode}|{}", db.display()))
    .stdout(Stdio::piped());
    c
}

fn report(out: std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // The test harness prints `test lock_child ... ` before the word.
    text.lines()
        .find_map(|l| {
            let i = ["OPENED", "BUSY", "ERROR"]
                .iter()
                .filter_map(|w| l.find(w))
                .min()?;
            Some(l[i..].to_string())
        })
        .unwrap_or_else(|| panic!("child said nothing: {text}"))
}

#[test]
fn the_same_file_by_any_name_has_one_writer() {
    let f = Fixture::new();
    let first = f.create();
    // The same process, the same name.
    assert_busy(second_writer(&f, &f.db), "same path, same process");
    // A symlink to the file, a symlink to its folder, a path with `..`.
    let link = f.dir.path().join("link.db");
    std::os::unix::fs::symlink(&f.db, &link).unwrap();
    assert_busy(second_writer(&f, &link), "symlink to the file");
    let links = tempfile::tempdir().unwrap();
    let dir_link = links.path().join("alias");
    std::os::unix::fs::symlink(f.dir.path(), &dir_link).unwrap();
    assert_busy(
        second_writer(&f, &dir_link.join("audit.db")),
        "symlink to the folder",
    );
    let dotted = f.dir.path().join("sub/../audit.db");
    std::fs::create_dir(f.dir.path().join("sub")).unwrap();
    assert_busy(second_writer(&f, &dotted), "a path through ..");
    // Another process.
    assert_eq!(report(child("try", &link).output().unwrap()), "BUSY");
    drop(first);
    // Once the first writer is gone, any of the names opens it.
    for p in [&link, &dir_link.join("audit.db"), &f.db] {
        second_writer(&f, p).unwrap().close().unwrap();
    }
    verify_db(&f.db, &f.verifier(), None).unwrap();
}

#[test]
fn a_second_process_is_refused_while_the_first_writes() {
    let f = Fixture::new();
    f.create().close().unwrap();
    let hold = PathBuf::from(format!("{}.hold", f.db.display()));
    std::fs::write(&hold, b"").unwrap();
    let holder = child("hold", &f.db).spawn().unwrap();
    // Wait for the child to hold it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match second_writer(&f, &f.db) {
            Err(AuditError::Busy(_)) => break,
            Ok(log) => drop(log),
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "the child never held the log");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_busy(second_writer(&f, &f.db), "another process");
    std::fs::remove_file(&hold).unwrap();
    assert_eq!(report(holder.wait_with_output().unwrap()), "OPENED");
    verify_db(&f.db, &f.verifier(), None).unwrap();
}

#[test]
fn hard_links_are_refused() {
    let f = Fixture::new();
    let first = f.create();
    let other = f.dir.path().join("other-name.db");
    std::fs::hard_link(&f.db, &other).unwrap();
    for p in [&other, &f.db] {
        match second_writer(&f, p) {
            Err(e @ AuditError::HardLinked { links: 2, .. }) => {
                assert!(e.to_string().contains("hard links"), "{e}")
            }
            Err(e) => panic!("{}: expected a hard-link refusal, got {e}", p.display()),
            Ok(_) => panic!("{}: opened a hard-linked log", p.display()),
        }
    }
    drop(first);
    assert!(matches!(
        second_writer(&f, &other),
        Err(AuditError::HardLinked { .. })
    ));
    assert!(matches!(
        stele_audit::Store::open(&other),
        Err(AuditError::HardLinked { .. })
    ));
    std::fs::remove_file(&other).unwrap();
    second_writer(&f, &f.db).unwrap().close().unwrap();
}

#[test]
fn a_second_writer_waits_for_the_first_within_its_bound() {
    let f = Fixture::new();
    let first = f.create();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.close().unwrap();
    });
    let patient = LogOptions {
        lock_wait: Duration::from_secs(60),
        ..Fixture::opts()
    };
    let second = AuditLog::open(&f.db, f.signer.clone(), patient).unwrap();
    t.join().unwrap();
    second.close().unwrap();
    // Two creators of one new log: one creates, the other opens it after.
    let g = Arc::new(Fixture::new());
    let both: Vec<_> = (0..2)
        .map(|_| {
            let g = g.clone();
            std::thread::spawn(move || {
                let opts = LogOptions {
                    lock_wait: Duration::from_secs(60),
                    ..Fixture::opts()
                };
                let log = AuditLog::open_or_create(&g.db, g.signer.clone(), opts).unwrap();
                log.append_blocking(Event::new(EventKind::PolicyDecision, actor()))
                    .unwrap();
                log.close().unwrap();
            })
        })
        .collect();
    for t in both {
        t.join().unwrap();
    }
    let r = verify_db(&g.db, &g.verifier(), None).unwrap();
    assert!(
        r.entries >= 6,
        "genesis, 2 decisions, open, 2 closes: {}",
        r.entries
    );
}

/// A bind mount of the folder, and of the database file itself, in a
/// private mount namespace of a child (the host's mounts are untouched).
#[test]
fn bind_mounts_reach_the_same_lock() {
    let f = Fixture::new();
    let first = f.create();
    let alias_dir = f.dir.path().join("bound");
    std::fs::create_dir(&alias_dir).unwrap();
    let alias_file = f.dir.path().join("bound-file.db");
    std::fs::write(&alias_file, b"").unwrap();
    for (source, target, db) in [
        (
            f.dir.path().to_path_buf(),
            alias_dir.clone(),
            alias_dir.join("audit.db"),
        ),
        (f.db.clone(), alias_file.clone(), alias_file.clone()),
    ] {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && exec "$3" --exact lock_child --nocapture --test-threads 1"#)
            .args(["sh"])
            .arg(&source)
            .arg(&target)
            .arg(&exe)
            .env(CHILD_ENV, format!("try|{}", db.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the bind-mount child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(report(out), "BUSY", "through {}", db.display());
    }
    first.close().unwrap();
    verify_db(&f.db, &f.verifier(), None).unwrap();
}
