#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What the start-up check refuses, with the append-only triggers dropped
//! (an attacker holding the database file but not the key):
//!
//! - anything changed among the entries appended since the previous
//!   start-up — an edited leaf, a leaf rewritten with its hash, two rows
//!   swapped, a flipped bit of a payload's body or salt, an erased body —
//!   is refused at the next start, an `audit.alert` entry records it and
//!   the log stays refused;
//! - the same changes to older entries are refused by the full
//!   verification: before any write when it is overdue, or in the
//!   background (appends are then refused as soon as it finds them);
//! - a deleted or added row, a changed newest checkpoint: refused at once,
//!   nothing written.

mod common;

use std::time::Duration;

use common::*;
use stele_audit::leaf::Leaf;
use stele_audit::{AuditError, AuditLog, EventKind, FullVerification, LogOptions, Store};

fn drop_triggers(c: &rusqlite::Connection) {
    for t in [
        "entries_no_update",
        "entries_no_delete",
        "checkpoints_no_delete",
        "checkpoints_no_update",
        "payloads_redact_only",
        "payloads_no_delete",
        "tree_no_update",
        "tree_no_delete",
    ] {
        c.execute_batch(&format!("DROP TRIGGER IF EXISTS {t};"))
            .unwrap();
    }
}

/// A change an attacker makes to rows of index `>= lo` (and `< hi`).
type Tamper = fn(&rusqlite::Connection, u64, u64);

fn leaf(c: &rusqlite::Connection, seq: u64) -> (Vec<u8>, Vec<u8>) {
    c.query_row(
        "SELECT leaf, leaf_hash FROM entries WHERE seq = ?1",
        [seq as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn set_leaf(c: &rusqlite::Connection, seq: u64, bytes: &[u8], hash: &[u8]) {
    c.execute(
        "UPDATE entries SET leaf = ?1, leaf_hash = ?2 WHERE seq = ?3",
        rusqlite::params![bytes, hash, seq as i64],
    )
    .unwrap();
}

fn edit_bytes(c: &rusqlite::Connection, lo: u64, _: u64) {
    let (mut b, h) = leaf(c, lo + 1);
    let at = b.len() / 2;
    b[at] ^= 0x01;
    set_leaf(c, lo + 1, &b, &h);
}

fn rewrite_with_hash(c: &rusqlite::Connection, lo: u64, hi: u64) {
    for seq in lo..hi {
        let (b, _) = leaf(c, seq);
        let text = String::from_utf8(b).unwrap();
        if text.contains("alice") {
            let t = text.replace("alice", "mallo");
            let h = stele_audit::merkle::leaf_hash(t.as_bytes());
            set_leaf(c, seq, t.as_bytes(), &h);
            return;
        }
    }
    panic!("no leaf of alice in {lo}..{hi}");
}

fn swap_rows(c: &rusqlite::Connection, lo: u64, _: u64) {
    let (a, ha) = leaf(c, lo + 1);
    let (b, hb) = leaf(c, lo + 2);
    set_leaf(c, lo + 1, &b, &hb);
    set_leaf(c, lo + 2, &a, &ha);
}

fn payload_column(c: &rusqlite::Connection, lo: u64, column: &str) {
    let (cmt, mut v): (Vec<u8>, Vec<u8>) = c
        .query_row(
            &format!("SELECT cmt, {column} FROM payloads WHERE seq >= ?1 ORDER BY seq LIMIT 1"),
            [lo as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    v[0] ^= 0x80;
    c.execute(
        &format!("UPDATE payloads SET {column} = ?1 WHERE cmt = ?2"),
        rusqlite::params![v, cmt],
    )
    .unwrap();
}

fn flip_body(c: &rusqlite::Connection, lo: u64, _: u64) {
    payload_column(c, lo, "body");
}

fn flip_salt(c: &rusqlite::Connection, lo: u64, _: u64) {
    payload_column(c, lo, "salt");
}

fn erase_body(c: &rusqlite::Connection, lo: u64, _: u64) {
    c.execute(
        "UPDATE payloads SET body = NULL, salt = NULL WHERE cmt = (SELECT cmt FROM payloads WHERE seq >= ?1 ORDER BY seq LIMIT 1)",
        [lo as i64],
    )
    .unwrap();
}

fn delete_row(c: &rusqlite::Connection, lo: u64, _: u64) {
    c.execute("DELETE FROM entries WHERE seq = ?1", [(lo + 1) as i64])
        .unwrap();
}

/// Changes found by reading the entries (and recorded by an alert).
const ALTERATIONS: [(&str, Tamper); 6] = [
    ("a leaf byte edited", edit_bytes),
    ("a leaf rewritten with its hash", rewrite_with_hash),
    ("two rows swapped", swap_rows),
    ("a payload body bit flipped", flip_body),
    ("a payload salt bit flipped", flip_salt),
    ("a payload erased without redaction", erase_body),
];

/// Only what was appended since the previous start-up is re-read (no
/// fixed tail), so that what each check covers is what is tested.
fn opts(full: FullVerification) -> LogOptions {
    LogOptions {
        full_verification: full,
        recheck_tail: 0,
        ..Fixture::opts()
    }
}

const NOT_DUE: FullVerification = FullVerification {
    every: Duration::from_secs(3600),
    at_most: Duration::from_secs(7200),
    start_after: Duration::ZERO,
};
const OVERDUE: FullVerification = FullVerification {
    every: Duration::ZERO,
    at_most: Duration::ZERO,
    start_after: Duration::ZERO,
};
const BACKGROUND: FullVerification = FullVerification {
    every: Duration::ZERO,
    at_most: Duration::from_secs(7200),
    start_after: Duration::ZERO,
};

/// Three sessions with payloads; returns the size before and after them.
fn sessions(f: &Fixture, log: &AuditLog, prefix: &str) -> (u64, u64) {
    let before = Store::open(&f.db).unwrap().size().unwrap();
    for s in ["a", "b", "c"] {
        sample_session(log, &format!("{prefix}{s}"));
    }
    (before, Store::open(&f.db).unwrap().size().unwrap())
}

fn alerts(f: &Fixture) -> Vec<Leaf> {
    let store = Store::open(&f.db).unwrap();
    let mut out = Vec::new();
    store
        .for_each_entry(0, u64::MAX, |_, b, _| {
            let l = Leaf::parse_canonical(b).unwrap();
            if l.kind == EventKind::AuditAlert {
                out.push(l);
            }
            Ok(())
        })
        .unwrap();
    out
}

/// Refused with an alert in the log, and refused again at the next start.
fn assert_refused_and_recorded(f: &Fixture, r: Result<AuditLog, AuditError>, what: &str) {
    match r {
        Err(AuditError::Integrity { reason, .. }) => {
            assert!(reason.contains("altered"), "{what}: {reason}")
        }
        Err(e) => panic!("{what}: expected an integrity refusal, got {e}"),
        Ok(_) => panic!("{what}: the start-up check let it through"),
    }
    let a = alerts(f);
    assert_eq!(a.len(), 1, "{what}: one audit.alert entry");
    let data = a[0].data.as_ref().unwrap();
    assert!(data["reason"].as_str().unwrap().len() > 5, "{what}: {data}");
    match AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE)) {
        Err(AuditError::Integrity { reason, .. }) => {
            assert!(reason.contains("stays refused"), "{what}: {reason}")
        }
        other => panic!("{what}: reopened after an alert: {other:?}"),
    }
}

#[test]
fn changes_since_the_previous_start_are_refused_at_the_next() {
    for (what, tamper) in ALTERATIONS {
        let f = Fixture::new();
        let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
        let (lo, hi) = sessions(&f, &log, "s");
        log.close().unwrap();
        let c = raw(&f.db);
        drop_triggers(&c);
        tamper(&c, lo, hi);
        drop(c);
        let r = AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE));
        assert_refused_and_recorded(&f, r, what);
    }
}

#[test]
fn older_changes_are_refused_by_the_full_verification_when_it_is_due() {
    for (what, tamper) in ALTERATIONS {
        let f = Fixture::new();
        let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
        let (lo, hi) = sessions(&f, &log, "s");
        log.close().unwrap();
        // A start-up checks them and records them verified.
        let log = AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
        assert_eq!(log.checked_at_start(), hi - 1 + 1, "{what}");
        sessions(&f, &log, "t");
        log.close().unwrap();
        let c = raw(&f.db);
        drop_triggers(&c);
        tamper(&c, lo, hi);
        drop(c);
        // Overdue: verified in full before anything is written.
        let r = AuditLog::open(&f.db, f.signer.clone(), opts(OVERDUE));
        assert_refused_and_recorded(&f, r, what);
    }
}

#[test]
fn older_changes_stop_the_writer_when_the_background_verification_finds_them() {
    for (what, tamper) in ALTERATIONS {
        let f = Fixture::new();
        let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
        let (lo, hi) = sessions(&f, &log, "s");
        log.close().unwrap();
        AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE))
            .unwrap()
            .close()
            .unwrap();
        let c = raw(&f.db);
        drop_triggers(&c);
        tamper(&c, lo, hi);
        drop(c);
        let mut log = AuditLog::open(&f.db, f.signer.clone(), opts(BACKGROUND)).unwrap();
        assert!(
            log.wait_for_full_verification().unwrap(),
            "{what}: none ran"
        );
        let e = log
            .append_blocking(stele_audit::Event::new(EventKind::PolicyDecision, actor()))
            .unwrap_err();
        assert!(matches!(e, AuditError::Refused(_)), "{what}: {e}");
        assert!(e.to_string().contains("altered"), "{what}: {e}");
        drop(log);
        assert_refused_and_recorded(
            &f,
            Err(AuditError::Integrity {
                index: 0,
                reason: "altered (recorded in the background)".into(),
            }),
            what,
        );
    }
}

#[test]
fn the_newest_entries_are_rechecked_at_every_start() {
    for (what, tamper) in ALTERATIONS {
        let f = Fixture::new();
        let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
        let (lo, hi) = sessions(&f, &log, "s");
        log.close().unwrap();
        AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE))
            .unwrap()
            .close()
            .unwrap();
        let c = raw(&f.db);
        drop_triggers(&c);
        tamper(&c, lo, hi);
        drop(c);
        // Checked once already, but among the newest 1,024 (the default).
        let r = AuditLog::open(
            &f.db,
            f.signer.clone(),
            LogOptions {
                full_verification: NOT_DUE,
                ..Fixture::opts()
            },
        );
        assert_refused_and_recorded(&f, r, what);
    }
}

#[test]
fn an_intact_log_passes_every_check_and_records_them() {
    let f = Fixture::new();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
    let (_, hi) = sessions(&f, &log, "s");
    log.close().unwrap();
    let log = AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
    // Everything appended since the start-up at creation (which checked
    // the genesis entry): the three sessions and the log.close.
    assert_eq!(log.checked_at_start(), hi);
    log.close().unwrap();
    let mut log = AuditLog::open(&f.db, f.signer.clone(), opts(BACKGROUND)).unwrap();
    assert_eq!(log.checked_at_start(), 2, "log.open and log.close since");
    assert!(log.wait_for_full_verification().unwrap());
    sessions(&f, &log, "t");
    log.close().unwrap();
    let log = AuditLog::open(&f.db, f.signer.clone(), opts(OVERDUE)).unwrap();
    let size = log.store().unwrap().size().unwrap();
    assert_eq!(log.checked_at_start(), size - 1, "all but this log.open");
    log.close().unwrap();
    assert!(alerts(&f).is_empty());
    stele_audit::verify::verify_db(&f.db, &f.verifier(), None).unwrap();
}

#[test]
fn a_deleted_row_is_refused_and_an_added_one_refused_without_writing() {
    // A row deleted among the entries since the previous start: a gap.
    let f = Fixture::new();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
    let (lo, hi) = sessions(&f, &log, "s");
    log.close().unwrap();
    let c = raw(&f.db);
    drop_triggers(&c);
    delete_row(&c, lo, hi);
    drop(c);
    let r = AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE));
    if let Err(AuditError::Integrity { reason, .. }) = &r {
        assert!(reason.contains("missing"), "{reason}");
    }
    assert_refused_and_recorded(&f, r, "a deleted row");

    // A row added after the newest checkpoint: the tree no longer ends
    // where the signature says, so nothing may be appended.
    let f = Fixture::new();
    let log = AuditLog::create(&f.db, f.signer.clone(), opts(NOT_DUE)).unwrap();
    let (_, hi) = sessions(&f, &log, "s");
    log.close().unwrap();
    let c = raw(&f.db);
    let (b, h) = leaf(&c, hi - 1);
    c.execute(
        "INSERT INTO entries(seq, leaf, leaf_hash) VALUES (?1, ?2, ?3)",
        rusqlite::params![(hi + 1) as i64, b, h],
    )
    .unwrap();
    drop(c);
    let rows_before = Store::open(&f.db).unwrap().row_count().unwrap();
    match AuditLog::open(&f.db, f.signer.clone(), opts(NOT_DUE)) {
        Err(AuditError::Integrity { reason, .. }) => {
            assert!(reason.contains("covers"), "{reason}")
        }
        other => panic!("an added row was not refused: {other:?}"),
    }
    assert_eq!(
        Store::open(&f.db).unwrap().row_count().unwrap(),
        rows_before,
        "nothing written to a log whose tree is broken"
    );
    assert!(alerts(&f).is_empty());
}
