#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Archival on a real log: a sealed prefix goes into an archive bundle and
//! out of the database under one `log.archive` entry; the live log verifies
//! (full verification and the writer's start-up check) from the kept
//! frontier; every forged boundary (root, prev, frontier, bundle digest,
//! size, the `archived` row deleted, an entry or payload below the boundary
//! put back) is caught; a boundary that a session, intent, shared payload
//! or legal hold crosses is refused, removing nothing; `kill -9` at any
//! point leaves the log whole or archived, and it verifies either way.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use stele_audit::archive::ArchiveRequest;
use stele_audit::export::archive::{archive, manifest_digest, ArchiveOptions, ArchiveOutcome};
use stele_audit::holds::HoldScope;
use stele_audit::verify::{verify_db, VerifyFailure};
use stele_audit::{
    Actor, AuditError, AuditLog, Disclosure, Event, EventKind, PayloadInput, PayloadRef, Refs,
    Store,
};

fn as_user(name: &str) -> Actor {
    Actor {
        principal: name.into(),
        ..actor()
    }
}

fn opts(through: u64) -> ArchiveOptions {
    ArchiveOptions {
        through,
        reason: "retention schedule 2026-Q4".into(),
        actor: as_user("archivist"),
        tar: false,
    }
}

/// The bundle's own check here: its manifest is there and names the
/// checkpoint at the boundary (the full `stele-verify` check of archive
/// bundles is in `verify/tests/archive_chain.rs`).
fn manifest_exists(p: &Path) -> Result<(), String> {
    manifest_digest(p).map(|_| ()).map_err(|e| e.to_string())
}

fn run_archive(f: &Fixture, log: &AuditLog, through: u64) -> Result<ArchiveOutcome, String> {
    let out = f.dir.path().join(format!("archive-{through}"));
    archive(
        log,
        f.signer.as_ref(),
        f.signer.as_ref(),
        &opts(through),
        &out,
        &mut manifest_exists,
    )
    .map_err(|e| e.to_string())
}

fn verified(f: &Fixture) -> stele_audit::verify::VerifyReport {
    verify_db(&f.db, &f.verifier(), None).unwrap_or_else(|e| panic!("verify: {e}"))
}

fn tampered(f: &Fixture) -> (Option<u64>, String) {
    match verify_db(&f.db, &f.verifier(), None) {
        Err(VerifyFailure::Tampered { index, reason }) => (index, reason),
        other => panic!("expected TAMPERED, got {other:?}"),
    }
}

/// Two ended sessions with payloads; the boundary is the size after them.
fn sealed_log(f: &Fixture) -> (AuditLog, u64) {
    let log = f.create();
    sample_session(&log, "s1");
    sample_session(&log, "s2");
    let n = log.sync_blocking().unwrap().size;
    (log, n)
}

/// An archived log, closed, and its boundary.
fn archived_fixture() -> (Fixture, u64) {
    let f = Fixture::new();
    let (log, n) = sealed_log(&f);
    run_archive(&f, &log, n).unwrap();
    sample_session(&log, "s3");
    log.close().unwrap();
    (f, n)
}

fn count(db: &Path, sql: &str) -> i64 {
    raw(db).query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn an_archived_log_verifies_restarts_and_keeps_appending() {
    let f = Fixture::new();
    let (log, n) = sealed_log(&f);
    let before = verified(&f);
    let out = run_archive(&f, &log, n).unwrap();
    assert_eq!(out.through, n);
    assert!(out.archive_entry > n && out.export_entry >= n);
    assert_eq!(out.root, {
        let store = log.store().unwrap();
        store.archived().unwrap().unwrap().root
    });
    // The bundle's manifest digest is the one recorded.
    assert_eq!(
        manifest_digest(&f.dir.path().join(format!("archive-{n}"))).unwrap(),
        out.bundle
    );
    // Nothing below the boundary is stored any more.
    assert_eq!(
        count(
            &f.db,
            &format!("SELECT count(*) FROM entries WHERE seq < {n}")
        ),
        0
    );
    assert_eq!(
        count(
            &f.db,
            &format!("SELECT count(*) FROM payloads WHERE seq < {n}")
        ),
        0
    );
    assert_eq!(
        count(
            &f.db,
            "SELECT count(*) FROM sessions WHERE id IN ('s1','s2')"
        ),
        0
    );
    let rep = verified(&f);
    assert_eq!(rep.archived, n);
    assert!(rep.entries > before.entries);
    assert_eq!(
        rep.payloads_present, 0,
        "the prefix's payloads went with it"
    );
    // The log goes on: new sessions, new payloads, a restart.
    sample_session(&log, "s3");
    log.close().unwrap();
    let log = f.open().unwrap();
    sample_session(&log, "s4");
    log.close().unwrap();
    let rep = verified(&f);
    assert_eq!(rep.archived, n);
    assert_eq!(rep.payloads_present, 4);
    // The checkpoint at the boundary is kept for good.
    assert!(Store::open(&f.db)
        .unwrap()
        .checkpoint_at(n)
        .unwrap()
        .is_some());
}

#[test]
fn the_start_up_check_resumes_at_the_boundary_without_a_full_verification() {
    let (f, n) = archived_fixture();
    // A full verification was recorded at the last open; the next open
    // checks only the tail, which here begins at the boundary.
    let mut o = Fixture::opts();
    o.recheck_tail = 1_000_000;
    let log = AuditLog::open(&f.db, f.signer.clone(), o.clone()).unwrap();
    assert!(log.checked_at_start() > 0);
    log.close().unwrap();
    // A forged frontier is refused by that same start-up check.
    let c = raw(&f.db);
    c.execute_batch("DROP TRIGGER archived_no_update;").unwrap();
    c.execute(
        "UPDATE archived SET frontier = zeroblob(length(frontier)), root = zeroblob(32)",
        [],
    )
    .unwrap();
    drop(c);
    let e = AuditLog::open(&f.db, f.signer.clone(), o).unwrap_err();
    assert!(
        e.to_string().contains("altered") || e.to_string().contains("root"),
        "{e}"
    );
    let _ = n;
}

/// Each way of forging the boundary, on a fresh archived log.
#[test]
fn every_forged_boundary_is_caught() {
    type Forge = (&'static str, fn(&rusqlite::Connection, u64), &'static str);
    let cases: Vec<Forge> = vec![
        (
            "root",
            |c, _| {
                c.execute("UPDATE archived SET root = zeroblob(32)", [])
                    .unwrap();
            },
            "frontier's root differs",
        ),
        (
            "root and frontier together",
            |c, n| {
                // A frontier of another tree of the same size: its root
                // is not the signed checkpoint's.
                let k = stele_audit::merkle::Frontier::positions(n).len();
                let fake: Vec<u8> = (0..k * 32).map(|i| i as u8).collect();
                let mut fr = stele_audit::merkle::Frontier::from_parts(
                    n,
                    fake.chunks(32).map(|c| c.try_into().unwrap()).collect(),
                )
                .unwrap();
                let root = fr.root();
                let _ = &mut fr;
                c.execute(
                    "UPDATE archived SET frontier = ?1, root = ?2",
                    rusqlite::params![fake, &root[..]],
                )
                .unwrap();
            },
            "",
        ),
        (
            "prev",
            |c, _| {
                c.execute("UPDATE archived SET prev = zeroblob(32)", [])
                    .unwrap();
            },
            "hash chain broken",
        ),
        (
            "bundle digest",
            |c, _| {
                c.execute(
                    "UPDATE archived SET bundle = 'sha256:' || hex(zeroblob(32))",
                    [],
                )
                .unwrap();
            },
            "disagrees with its log.archive",
        ),
        (
            "size",
            |c, n| {
                c.execute("UPDATE archived SET size = ?1", [n as i64 - 1])
                    .unwrap();
            },
            "",
        ),
        (
            "row deleted",
            |c, _| {
                c.execute("DELETE FROM archived", []).unwrap();
            },
            "missing",
        ),
        (
            "an entry below the boundary put back",
            |c, n| {
                c.execute(
                    "INSERT INTO entries(seq, leaf, leaf_hash) SELECT ?1 - 1, leaf, leaf_hash FROM entries WHERE seq = ?1",
                    [n as i64],
                )
                .unwrap();
            },
            "below the archived size",
        ),
        (
            "a payload below the boundary put back",
            |c, n| {
                c.execute(
                    "INSERT INTO payloads(cmt, seq, media, size, salt, body) VALUES (zeroblob(32), ?1, 'text/plain', 1, x'00', x'00')",
                    [n as i64 - 2],
                )
                .unwrap();
            },
            "below the archived size",
        ),
    ];
    for (what, forge, says) in cases {
        let (f, n) = archived_fixture();
        verified(&f);
        let c = raw(&f.db);
        c.execute_batch(
            "DROP TRIGGER archived_no_update; DROP TRIGGER archived_no_delete; DROP TRIGGER entries_no_delete;",
        )
        .unwrap();
        forge(&c, n);
        drop(c);
        let (_, reason) = tampered(&f);
        assert!(reason.contains(says), "{what}: {reason}");
        // The writer refuses to start on it too.
        assert!(f.open().is_err(), "{what}: the writer opened a forged log");
    }
}

#[test]
fn the_triggers_let_nothing_but_an_archive_delete_rows() {
    let (f, n) = archived_fixture();
    let c = raw(&f.db);
    for sql in [
        format!("DELETE FROM entries WHERE seq = {n}"),
        format!("DELETE FROM payloads WHERE seq >= {n}"),
        "DELETE FROM archived".to_string(),
        "UPDATE archived SET bundle = 'x'".to_string(),
    ] {
        let e = c.execute(&sql, []).unwrap_err();
        assert!(
            e.to_string().contains("append-only") || e.to_string().contains("erased"),
            "{sql}: {e}"
        );
    }
    // A fresh log refuses any delete (no archived row yet).
    let g = Fixture::new();
    g.create().close().unwrap();
    let e = raw(&g.db)
        .execute("DELETE FROM entries WHERE seq = 0", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

fn payload(body: &str) -> PayloadInput {
    PayloadInput {
        role: "args".into(),
        media: "text/plain".into(),
        body: body.as_bytes().to_vec(),
        disclosure: Disclosure::CommitmentOnly,
    }
}

/// The archive is refused with `says` in the error, and nothing changed.
fn refused(f: &Fixture, log: &AuditLog, n: u64, says: &str) {
    let size = log.sync_blocking().unwrap().size;
    let e = run_archive(f, log, n).unwrap_err();
    assert!(e.contains(says), "expected {says:?}: {e}");
    assert!(
        !f.dir.path().join(format!("archive-{n}")).exists(),
        "no bundle is left"
    );
    assert_eq!(
        log.sync_blocking().unwrap().size,
        size,
        "nothing was appended"
    );
    // The writer's own check refuses too (a caller skipping the procedure).
    let e = log
        .archive_blocking(ArchiveRequest {
            through: n,
            bundle: format!("sha256:{}", "00".repeat(32)),
            reason: "direct".into(),
            actor: actor(),
            keys: Default::default(),
        })
        .unwrap_err();
    assert!(
        e.to_string().contains(says),
        "writer: expected {says:?}: {e}"
    );
    assert_eq!(verified(f).archived, 0);
}

#[test]
fn a_boundary_a_session_or_intent_crosses_is_refused() {
    // A session open across the boundary.
    let f = Fixture::new();
    let log = f.create();
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session("open"))
        .unwrap();
    let n = log.sync_blocking().unwrap().size;
    refused(
        &f,
        &log,
        n,
        "session open began before it and is still open",
    );
    // An ended session that goes on past the boundary.
    log.append_blocking(Event::new(EventKind::PolicyDecision, actor()).in_session("open"))
        .unwrap();
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session("open"))
        .unwrap();
    refused(&f, &log, n, "goes on to entry");
    // An intent without a result.
    let i = log
        .append_blocking(Event::new(EventKind::ToolIntent, actor()))
        .unwrap();
    refused(&f, &log, i.seq + 1, "intent");
    log.append_blocking(
        Event::new(EventKind::ToolResult, actor())
            .with_refs(Refs {
                intent_leaf: b64(&i.leaf_hash),
                intent_seq: i.seq,
            })
            .with_outcome(stele_audit::Outcome::status(stele_audit::Status::Ok)),
    )
    .unwrap();
    let m = log.sync_blocking().unwrap().size;
    // A payload below the boundary referred to from above it.
    let p = log
        .append_blocking(
            Event::new(EventKind::PolicyDecision, actor()).with_payload(payload("shared")),
        )
        .unwrap();
    let store = log.store().unwrap();
    let made = store
        .payloads()
        .unwrap()
        .into_iter()
        .find(|x| x.seq == p.seq)
        .unwrap();
    let commit = stele_audit::payload::commit_text(&made.cmt.clone().try_into().unwrap());
    let cut = log.sync_blocking().unwrap().size;
    log.append_blocking(
        Event::new(EventKind::PolicyDecision, actor()).with_shared_payload(PayloadRef {
            role: "args".into(),
            commit,
            media: "text/plain".into(),
            size: 6,
            sha256: None,
        }),
    )
    .unwrap();
    refused(&f, &log, cut, "shared payload");
    // Below all of that, the boundary is sealed and the archive proceeds.
    let _ = m;
    run_archive(&f, &log, 1).unwrap();
    log.close().unwrap();
    assert_eq!(verified(&f).archived, 1);
}

#[test]
fn a_held_prefix_is_refused_for_every_scope_until_released() {
    let scopes: Vec<(HoldScope, &str)> = vec![
        (HoldScope::Session("s1".into()), "legal hold"),
        (HoldScope::Principal("alice".into()), "legal hold"),
        (
            HoldScope::Range {
                from: "2000-01-01T00:00:00.000000Z".into(),
                until: "2100-01-01T00:00:00.000000Z".into(),
            },
            "legal hold",
        ),
    ];
    for (scope, says) in scopes {
        let f = Fixture::new();
        let (log, n) = sealed_log(&f);
        let hold = log
            .place_hold_blocking(scope.clone(), "matter 42".into(), None, as_user("officer1"))
            .unwrap();
        refused(&f, &log, n, says);
        log.release_hold_blocking(hold.seq, "closed".into(), None, as_user("officer1"))
            .unwrap();
        refused(&f, &log, n, says);
        log.release_hold_blocking(hold.seq, "closed".into(), None, as_user("officer2"))
            .unwrap();
        run_archive(&f, &log, n).unwrap();
        log.close().unwrap();
        let rep = verified(&f);
        assert_eq!(rep.archived, n, "{scope:?}");
    }
    // A hold in force placed below the boundary is refused even when it
    // covers nothing there: its record would leave the live log.
    let f = Fixture::new();
    let log = f.create();
    log.place_hold_blocking(
        HoldScope::Session("later".into()),
        "matter 7".into(),
        None,
        as_user("officer1"),
    )
    .unwrap();
    let n = log.sync_blocking().unwrap().size;
    refused(&f, &log, n, "was placed below it");
}

#[test]
fn a_second_archive_by_the_writer_chains_on_the_first() {
    let (f, n1) = archived_fixture();
    let log = f.open().unwrap();
    sample_session(&log, "s5");
    let n2 = log.sync_blocking().unwrap().size;
    // The writer checks the boundary and keeps both rows.
    let e = log
        .archive_blocking(ArchiveRequest {
            through: n1,
            bundle: format!("sha256:{}", "11".repeat(32)),
            reason: "again".into(),
            actor: actor(),
            keys: Default::default(),
        })
        .unwrap_err();
    assert!(e.to_string().contains("already archived"), "{e}");
    log.archive_blocking(ArchiveRequest {
        through: n2,
        bundle: format!("sha256:{}", "22".repeat(32)),
        reason: "second".into(),
        actor: actor(),
        keys: Default::default(),
    })
    .unwrap();
    sample_session(&log, "s6");
    log.close().unwrap();
    let rep = verified(&f);
    assert_eq!(rep.archived, n2);
    let rows = Store::open(&f.db).unwrap().archived_rows().unwrap();
    assert_eq!(
        rows.iter().map(|r| r.size).collect::<Vec<_>>(),
        vec![n1, n2]
    );
    f.open().unwrap().close().unwrap();
    // Deleting the newer row brings back a gap below it.
    let c = raw(&f.db);
    c.execute_batch("DROP TRIGGER archived_no_delete;").unwrap();
    c.execute("DELETE FROM archived WHERE size = ?1", [n2 as i64])
        .unwrap();
    drop(c);
    let (_, why) = tampered(&f);
    assert!(why.contains("missing"), "{why}");
}

const CHILD_ENV: &str = "STELE_ARCHIVE_KILL_CHILD";
const DELAY_ENV: &str = "STELE_ARCHIVE_KILL_DELAY_MS";

/// The archiving process (run as a child): archives the log's prefix,
/// saying when the bundle is written and when the archive is done; with a
/// delay set it lingers after writing the bundle, for the kill to land.
#[test]
fn archive_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let delay: u64 = std::env::var(DELAY_ENV)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let f = Fixture::new();
    let log = AuditLog::open(Path::new(&db), f.signer.clone(), Fixture::opts()).unwrap();
    let n: u64 = std::env::var("STELE_ARCHIVE_N").unwrap().parse().unwrap();
    let out = Path::new(&db).with_file_name("bundle");
    let mut stdout = std::io::stdout();
    archive(
        &log,
        f.signer.as_ref(),
        f.signer.as_ref(),
        &opts(n),
        &out,
        &mut |p| {
            writeln!(std::io::stdout(), "written").unwrap();
            std::io::stdout().flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay));
            manifest_exists(p)
        },
    )
    .unwrap();
    writeln!(stdout, "archived").unwrap();
    stdout.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn kill_9_at_any_point_leaves_the_log_whole_or_archived() {
    // (kill after the bundle is written; kill at once; kill a little
    // later, maybe inside the archive's transaction; kill after it.)
    for (delay, wait_for) in [
        (3000u64, "written"),
        (0, ""),
        (0, "written"),
        (0, "archived"),
    ] {
        let f = Fixture::new();
        let (log, n) = sealed_log(&f);
        for i in 0..200 {
            log.append_blocking(
                Event::new(EventKind::PolicyDecision, actor())
                    .with_payload(payload(&format!("p{i}"))),
            )
            .unwrap();
        }
        let n = n + 200;
        log.close().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "archive_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &f.db)
            .env(DELAY_ENV, delay.to_string())
            .env("STELE_ARCHIVE_N", n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        if !wait_for.is_empty() {
            loop {
                let l = lines.next().unwrap().unwrap();
                // (The harness may print `test archive_child ... ` first.)
                if l.trim().ends_with(wait_for) {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let rep = verified(&f);
        match wait_for {
            "archived" => assert_eq!(rep.archived, n),
            "written" if delay > 0 => {
                assert_eq!(
                    rep.archived, 0,
                    "killed before log.archive: the log is whole"
                );
            }
            _ => assert!(rep.archived == 0 || rep.archived == n, "{}", rep.archived),
        }
        // The writer starts on it, and a whole log can still be archived.
        let log = f.open().unwrap();
        if rep.archived == 0 {
            let out = f.dir.path().join("again");
            archive(
                &log,
                f.signer.as_ref(),
                f.signer.as_ref(),
                &opts(n),
                &out,
                &mut manifest_exists,
            )
            .unwrap();
        }
        log.close().unwrap();
        assert_eq!(verified(&f).archived, n);
    }
}

#[test]
fn bad_requests_are_refused_naming_what_is_wrong() {
    let f = Fixture::new();
    let (log, n) = sealed_log(&f);
    assert!(run_archive(&f, &log, 0)
        .unwrap_err()
        .contains("cannot archive 0"));
    assert!(run_archive(&f, &log, n + 100)
        .unwrap_err()
        .contains("the log holds"));
    let e = log
        .archive_blocking(ArchiveRequest {
            through: n,
            bundle: "md5:00".into(),
            reason: "x".into(),
            actor: actor(),
            keys: Default::default(),
        })
        .unwrap_err();
    assert!(
        matches!(e, AuditError::Invalid(_)) && e.to_string().contains("sha256"),
        "{e}"
    );
    // A plain append of log.archive is refused (only the writer's call).
    let e = log
        .append_blocking(Event::new(EventKind::LogArchive, actor()))
        .unwrap_err();
    assert!(e.to_string().contains("archive calls"), "{e}");
    // A bundle that fails its verification removes nothing.
    let out = f.dir.path().join("bad");
    let e = archive(
        &log,
        f.signer.as_ref(),
        f.signer.as_ref(),
        &opts(n),
        &out,
        &mut |_| Err("forced".into()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    log.close().unwrap();
    assert_eq!(verified(&f).archived, 0);
}
