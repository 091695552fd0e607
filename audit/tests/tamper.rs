#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every kind of tampering is detected, naming the index concerned; the
//! start-up check refuses to write to a tampered log.

mod common;

use common::*;
use stele_attest::{Checkpoint, Ed25519Signer, Signer as _};
use stele_audit::verify::{verify_db, VerifyFailure};
use stele_audit::{AuditError, Event, EventKind};

/// A closed log with three sessions (≈ 15 entries) and its verifier.
fn populated() -> Fixture {
    let f = Fixture::new();
    let log = f.create();
    for s in ["a", "b", "c"] {
        sample_session(&log, s);
    }
    log.close().unwrap();
    assert!(verify_db(&f.db, &f.verifier(), None).is_ok());
    f
}

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
        c.execute_batch(&format!("DROP TRIGGER {t};")).unwrap();
    }
}

fn tampered_at(f: &Fixture, anchor: Option<&str>) -> (Option<u64>, String) {
    match verify_db(&f.db, &f.verifier(), anchor) {
        Err(VerifyFailure::Tampered { index, reason }) => (index, reason),
        other => panic!("expected tampering to be detected, got {other:?}"),
    }
}

#[test]
fn triggers_refuse_update_and_delete() {
    let f = populated();
    let c = raw(&f.db);
    let e = c
        .execute("UPDATE entries SET leaf = x'00' WHERE seq = 1", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    assert!(c.execute("DELETE FROM entries WHERE seq = 1", []).is_err());
    assert!(c.execute("DELETE FROM tree_nodes", []).is_err());
    assert!(c.execute("UPDATE tree_nodes SET h = x'00'", []).is_err());
    assert!(c.execute("UPDATE payloads SET body = x'00'", []).is_err());
}

#[test]
fn any_changed_byte_of_any_leaf_is_detected_at_its_index() {
    let f = populated();
    let n: u64 = raw(&f.db)
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    // Flip a byte at several positions in every leaf, one at a time.
    for seq in 0..n {
        let c = raw(&f.db);
        let leaf: Vec<u8> = c
            .query_row("SELECT leaf FROM entries WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .unwrap();
        for pos in [0, leaf.len() / 3, leaf.len() / 2, leaf.len() - 1] {
            let mut bad = leaf.clone();
            bad[pos] ^= 0x01;
            c.execute_batch("DROP TRIGGER IF EXISTS entries_no_update")
                .unwrap();
            c.execute(
                "UPDATE entries SET leaf = ?1 WHERE seq = ?2",
                rusqlite::params![bad, seq],
            )
            .unwrap();
            let (index, reason) = tampered_at(&f, None);
            assert_eq!(index, Some(seq), "byte {pos} of leaf {seq}: {reason}");
            c.execute(
                "UPDATE entries SET leaf = ?1 WHERE seq = ?2",
                rusqlite::params![leaf, seq],
            )
            .unwrap();
        }
    }
    assert!(
        verify_db(&f.db, &f.verifier(), None).is_ok(),
        "restored log verifies again"
    );
}

#[test]
fn rewritten_leaf_with_recomputed_hash_is_caught_by_the_chain() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    let seq = 5u64;
    let leaf: Vec<u8> = c
        .query_row("SELECT leaf FROM entries WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap();
    let text = String::from_utf8(leaf).unwrap().replace("alice", "mallory");
    let h = stele_audit::merkle::leaf_hash(text.as_bytes());
    c.execute(
        "UPDATE entries SET leaf = ?1, leaf_hash = ?2 WHERE seq = ?3",
        rusqlite::params![text.as_bytes(), &h[..], seq],
    )
    .unwrap();
    let (index, reason) = tampered_at(&f, None);
    // The next leaf's `prev` no longer names it (the signed root would not
    // match either).
    assert_eq!(index, Some(seq + 1), "{reason}");
    assert!(reason.contains("chain"), "{reason}");
}

#[test]
fn deleted_row_is_detected() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    c.execute("DELETE FROM entries WHERE seq = 4", []).unwrap();
    let (index, reason) = tampered_at(&f, None);
    assert_eq!(index, Some(4), "{reason}");
    assert!(reason.contains("missing"), "{reason}");
    assert!(matches!(f.open(), Err(AuditError::Integrity { .. })));
}

/// Rows are read two at a time (their hashes computed together): whatever
/// the position in a pair, the first problem in index order is the one
/// reported.
#[test]
fn the_first_problem_is_reported_wherever_it_falls_in_a_pair() {
    let flip = |c: &rusqlite::Connection, seq: u64| {
        let mut leaf: Vec<u8> = c
            .query_row("SELECT leaf FROM entries WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .unwrap();
        let at = leaf.len() / 2;
        leaf[at] ^= 0x01;
        c.execute(
            "UPDATE entries SET leaf = ?1 WHERE seq = ?2",
            rusqlite::params![leaf, seq],
        )
        .unwrap();
    };
    for k in 2..8u64 {
        // A missing row, at either position of a pair.
        let f = populated();
        let c = raw(&f.db);
        drop_triggers(&c);
        c.execute("DELETE FROM entries WHERE seq = ?1", [k])
            .unwrap();
        let (index, reason) = tampered_at(&f, None);
        assert_eq!(index, Some(k), "{reason}");
        assert!(reason.contains("missing"), "{reason}");
        // An altered leaf followed by a missing row: the leaf comes first.
        let f = populated();
        let c = raw(&f.db);
        drop_triggers(&c);
        flip(&c, k);
        c.execute("DELETE FROM entries WHERE seq = ?1", [k + 1])
            .unwrap();
        let (index, reason) = tampered_at(&f, None);
        assert_eq!(index, Some(k), "{reason}");
        assert!(!reason.contains("missing"), "{reason}");
        // Two altered leaves in a row.
        let f = populated();
        let c = raw(&f.db);
        drop_triggers(&c);
        flip(&c, k);
        flip(&c, k + 1);
        let (index, reason) = tampered_at(&f, None);
        assert_eq!(index, Some(k), "{reason}");
    }
}

#[test]
fn reordered_rows_are_detected() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    let a: Vec<u8> = c
        .query_row("SELECT leaf FROM entries WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    let b: Vec<u8> = c
        .query_row("SELECT leaf FROM entries WHERE seq = 7", [], |r| r.get(0))
        .unwrap();
    let ha = stele_audit::merkle::leaf_hash(&a);
    let hb = stele_audit::merkle::leaf_hash(&b);
    c.execute(
        "UPDATE entries SET leaf = ?1, leaf_hash = ?2 WHERE seq = 3",
        rusqlite::params![b, &hb[..]],
    )
    .unwrap();
    c.execute(
        "UPDATE entries SET leaf = ?1, leaf_hash = ?2 WHERE seq = 7",
        rusqlite::params![a, &ha[..]],
    )
    .unwrap();
    let (index, reason) = tampered_at(&f, None);
    assert_eq!(index, Some(3), "{reason}");
}

#[test]
fn truncated_tail_is_caught_by_a_checkpoint_kept_outside() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "a");
    // A checkpoint someone kept (a receipt, a published one): an attacker
    // who holds it can cut the log back to it...
    let (cut, older) = log.store().unwrap().latest_checkpoint().unwrap().unwrap();
    sample_session(&log, "b");
    log.close().unwrap();
    let (size, outside) = stele_audit::Store::open(&f.db)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    // Cut without a signed checkpoint for the shorter size: the stored
    // newest checkpoint no longer matches.
    let c = raw(&f.db);
    drop_triggers(&c);
    c.execute("DELETE FROM entries WHERE seq >= ?1", [size - 2])
        .unwrap();
    let (_, reason) = tampered_at(&f, None);
    assert!(reason.contains("only"), "{reason}");
    // Cut back to the kept checkpoint, installed as the newest.
    c.execute("DELETE FROM entries WHERE seq >= ?1", [cut])
        .unwrap();
    c.execute("DELETE FROM payloads WHERE seq >= ?1", [cut])
        .unwrap();
    c.execute(
        "UPDATE head SET size = ?1, note = ?2",
        rusqlite::params![cut as i64, older],
    )
    .unwrap();
    // ...a valid prefix on its own...
    verify_db(&f.db, &f.verifier(), None).unwrap();
    // ...but not against the checkpoint kept elsewhere.
    let (index, reason) = tampered_at(&f, Some(&outside));
    assert_eq!(index, Some(cut), "{reason}");
    assert!(reason.contains("truncated"), "{reason}");
    let opts = stele_audit::LogOptions {
        anchor: Some(outside),
        ..Fixture::opts()
    };
    let e = stele_audit::AuditLog::open(&f.db, f.signer.clone(), opts).unwrap_err();
    assert!(e.to_string().contains("truncated or rolled back"), "{e}");
}

#[test]
fn replaced_by_an_older_copy_is_caught() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "a");
    log.close().unwrap();
    let old = f.dir.path().join("old.db");
    std::fs::copy(&f.db, &old).unwrap();
    let log = f.open().unwrap();
    sample_session(&log, "b");
    log.close().unwrap();
    let (_, newest) = stele_audit::Store::open(&f.db)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", f.db.display()));
    }
    std::fs::copy(&old, &f.db).unwrap();
    let (_, reason) = tampered_at(&f, Some(&newest));
    assert!(reason.contains("rolled back"), "{reason}");
    let opts = stele_audit::LogOptions {
        anchor: Some(newest),
        ..Fixture::opts()
    };
    assert!(matches!(
        stele_audit::AuditLog::open(&f.db, f.signer.clone(), opts),
        Err(AuditError::Integrity { .. })
    ));
}

#[test]
fn forked_history_contradicting_the_anchor_is_caught() {
    let f = populated();
    let (_, outside) = stele_audit::Store::open(&f.db)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    // Rebuild a different log with the same key (a key-holding attacker rewriting history).
    let g = Fixture::new();
    let log = g.create();
    sample_session(&log, "x");
    for _ in 0..20 {
        log.append_blocking(Event::new(EventKind::PolicyDecision, actor()))
            .unwrap();
    }
    log.close().unwrap();
    let (_, reason) = tampered_at(&g, Some(&outside));
    assert!(
        reason.contains("differs") || reason.contains("fork"),
        "{reason}"
    );
}

#[test]
fn checkpoint_forged_with_another_key_is_detected() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    let (size, note) = stele_audit::Store::open(&f.db)
        .unwrap()
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    let (cp, _) = Checkpoint::open(&note, &f.verifier()).unwrap();
    let evil = Ed25519Signer::generate(common::ORIGIN).unwrap();
    let forged = cp.sign(&evil).unwrap().to_text();
    c.execute(
        "UPDATE head SET note = ?1 WHERE size = ?2",
        rusqlite::params![forged, size],
    )
    .unwrap();
    let (index, reason) = tampered_at(&f, None);
    assert_eq!(index, Some(size - 1), "{reason}");
    assert!(reason.contains("does not verify"), "{reason}");
    let e = f.open().unwrap_err();
    assert!(matches!(e, AuditError::Integrity { .. }), "{e}");
    // A verifier given the attacker's key is told the log names another key.
    assert!(matches!(
        verify_db(&f.db, &evil.verifier(), None),
        Err(VerifyFailure::Tampered { .. })
    ));
}

#[test]
fn edited_payload_body_is_detected_at_its_entry() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    let seq: u64 = c
        .query_row(
            "SELECT seq FROM payloads ORDER BY seq LIMIT 1 OFFSET 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    c.execute(
        "UPDATE payloads SET body = CAST('Coffee 35.00 EUR, client Acme' AS BLOB) WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    let (index, reason) = tampered_at(&f, None);
    assert_eq!(index, Some(seq), "{reason}");
    assert!(reason.contains("commitment"), "{reason}");
}

#[test]
fn payload_erased_without_redaction_entry_is_detected() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    let seq: u64 = c
        .query_row("SELECT seq FROM payloads ORDER BY seq LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    c.execute(
        "UPDATE payloads SET body = NULL, salt = NULL WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    let (index, reason) = tampered_at(&f, None);
    assert_eq!(index, Some(seq), "{reason}");
    assert!(reason.contains("without a redaction"), "{reason}");
}

#[test]
fn startup_check_refuses_a_tampered_tail() {
    let f = populated();
    let c = raw(&f.db);
    drop_triggers(&c);
    let n: u64 = c
        .query_row("SELECT max(seq) FROM entries", [], |r| r.get(0))
        .unwrap();
    c.execute("UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'alice', 'alicf') AS BLOB) WHERE seq = ?1", [n - 1])
        .unwrap();
    match f.open() {
        Err(AuditError::Integrity { index, reason }) => assert_eq!(index, n - 1, "{reason}"),
        other => panic!("expected refusal, got {other:?}"),
    }
}
