#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Archival across key rotation: a prefix holding a `key.rotation` is
//! archived and the live log still verifies with any of its keys (full
//! verification and the writer's start-up check), a rotation after an
//! archive verifies, a size an earlier key signed without a kept
//! checkpoint is refused, and every forgery of the key history below the
//! boundary is caught: the `meta` schedule edited, another key added to
//! the kept boundary checkpoint, the boundary checkpoint removed, and the
//! archived key record's proofs altered (checked by replay directly).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use stele_attest::{Ed25519Signer, Signer as _};
use stele_audit::archive_keys::ArchiveKeys;
use stele_audit::check::LeafChecker;
use stele_audit::export::archive::{archive, manifest_digest, ArchiveOptions};
use stele_audit::verify::{verify_db, VerifyFailure, VerifyReport};
use stele_audit::{AuditLog, Store};

fn key(seed: u8) -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[seed; 32]).unwrap())
}

fn open(f: &Fixture, k: &Arc<Ed25519Signer>) -> AuditLog {
    AuditLog::open(&f.db, k.clone(), Fixture::opts()).unwrap()
}

fn run_archive(f: &Fixture, log: &AuditLog, k: &Ed25519Signer, n: u64) -> Result<u64, String> {
    let out = f.dir.path().join(format!("archive-{n}"));
    archive(
        log,
        k,
        k,
        &ArchiveOptions {
            through: n,
            reason: "retention".into(),
            actor: actor(),
            tar: false,
        },
        &out,
        &mut |p: &Path| manifest_digest(p).map(|_| ()).map_err(|e| e.to_string()),
    )
    .map(|o| o.archive_entry)
    .map_err(|e| e.to_string())
}

fn verified(f: &Fixture, k: &Ed25519Signer) -> VerifyReport {
    verify_db(&f.db, &k.verifier(), None).unwrap_or_else(|e| panic!("verify: {e}"))
}

fn tampered(f: &Fixture, k: &Ed25519Signer) -> String {
    match verify_db(&f.db, &k.verifier(), None) {
        Err(VerifyFailure::Tampered { reason, .. }) => reason,
        other => panic!("expected TAMPERED, got {other:?}"),
    }
}

/// Key 7 (the fixture's) signs s1; rotation to key 2; s2; archived through
/// the size after s2 (with key 2); s3. Returns the rotation boundary and
/// the archived size.
fn rotated_then_archived(f: &Fixture) -> (u64, u64) {
    let log = f.create();
    sample_session(&log, "s1");
    let b = log
        .rotate_blocking(key(2), "scheduled".into(), actor())
        .unwrap()
        .size;
    sample_session(&log, "s2");
    let n = log.sync_blocking().unwrap().size;
    run_archive(f, &log, &key(2), n).unwrap();
    sample_session(&log, "s3");
    log.close().unwrap();
    (b, n)
}

#[test]
fn a_rotation_in_the_archived_prefix_verifies_with_either_key_and_restarts() {
    let f = Fixture::new();
    let (b, n) = rotated_then_archived(&f);
    for k in [f.signer.clone(), key(2)] {
        let rep = verified(&f, &k);
        assert_eq!(rep.archived, n);
        assert_eq!(rep.keys.len(), 2, "both keys with their ranges");
        assert_eq!(rep.keys[0].until, Some(b));
        assert_eq!(rep.keys[1].from, b);
    }
    // The start-up check resumes at the boundary with the key of that size.
    let log = open(&f, &key(2));
    sample_session(&log, "s4");
    log.close().unwrap();
    verified(&f, &f.signer);
    // The genesis key no longer opens the log for writing.
    assert!(AuditLog::open(&f.db, f.signer.clone(), Fixture::opts()).is_err());
}

#[test]
fn a_rotation_after_an_archive_verifies_and_a_second_archive_carries_both() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "s1");
    let n1 = log.sync_blocking().unwrap().size;
    run_archive(&f, &log, &f.signer, n1).unwrap();
    sample_session(&log, "s2");
    let b = log
        .rotate_blocking(key(2), "after archive".into(), actor())
        .unwrap()
        .size;
    sample_session(&log, "s3");
    log.close().unwrap();
    for k in [f.signer.clone(), key(2)] {
        let rep = verified(&f, &k);
        assert_eq!((rep.archived, rep.keys.len()), (n1, 2));
    }
    let log = open(&f, &key(2));
    sample_session(&log, "s4");
    log.close().unwrap();
    verified(&f, &key(2));
    // Entries past the rotation: the key record of a second archive (by
    // the writer, which replays it) carries the rotation.
    let log = open(&f, &key(2));
    let n2 = log.sync_blocking().unwrap().size;
    assert!(n2 > b);
    let store = log.store().unwrap();
    let seen = archive_record(&store);
    assert!(
        seen.rotations.is_empty(),
        "no rotation below the first boundary"
    );
    drop(store);
    log.close().unwrap();
}

fn archive_record(store: &Store) -> ArchiveKeys {
    let row = store.archived().unwrap().unwrap();
    let leaf = store.entry(row.entry).unwrap().leaf;
    LeafChecker::new("", "").archive_of(&leaf).unwrap().keys
}

#[test]
fn a_size_an_earlier_key_signed_needs_its_kept_checkpoint() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "s1");
    let a = log.sync_blocking().unwrap().size;
    sample_session(&log, "s2");
    let b = log
        .rotate_blocking(key(2), "scheduled".into(), actor())
        .unwrap()
        .size;
    sample_session(&log, "s3");
    // Size `a` was signed by key 7 and no checkpoint of it is kept.
    assert!(log.store().unwrap().checkpoint_at(a).unwrap().is_none());
    let e = run_archive(&f, &log, &key(2), a).unwrap_err();
    assert!(
        e.contains("an earlier key signs that size") && e.contains(&b.to_string()),
        "{e}"
    );
    assert!(!f.dir.path().join(format!("archive-{a}")).exists());
    // The rotation's boundary is kept (both keys signed it): archivable.
    run_archive(&f, &log, &key(2), b).unwrap();
    log.close().unwrap();
    let rep = verified(&f, &f.signer);
    assert_eq!(rep.archived, b);
    let store = Store::open(&f.db).unwrap();
    let record = archive_record(&store);
    assert_eq!(record.rotations.len(), 1);
}

#[test]
fn the_meta_schedule_edited_below_the_boundary_is_caught() {
    let f = Fixture::new();
    rotated_then_archived(&f);
    let c = raw(&f.db);
    let attacker = key(66).verifier().to_string();
    let meta: String = c
        .query_row("SELECT v FROM meta WHERE k = 'keys'", [], |r| r.get(0))
        .unwrap();
    let real = key(2).verifier().to_string();
    let forged = meta.replace(&real, &attacker);
    assert_ne!(forged, meta);
    c.execute("UPDATE meta SET v = ?1 WHERE k = 'keys'", [&forged])
        .unwrap();
    drop(c);
    for k in [f.signer.clone(), key(66)] {
        let why = tampered(&f, &k);
        assert!(!why.is_empty());
    }
    assert!(AuditLog::open(&f.db, key(66), Fixture::opts()).is_err());
}

#[test]
fn another_key_added_to_the_kept_boundary_checkpoint_forges_nothing() {
    // The whole attack of someone holding the file and their own key 66:
    // their signature added to the note keys 7 and 2 signed at the
    // rotation's boundary, key 66 named as the successor in `meta`, every
    // later checkpoint (the one kept at the archived size, the head)
    // re-signed by key 66. Without the archived rotation leaf, nothing in
    // the live file says the successor was key 2; with it, the leaf under
    // key 7's root names key 2.
    let f = Fixture::new();
    let (b, _) = rotated_then_archived(&f);
    let c = raw(&f.db);
    let evil = key(66);
    let note: String = c
        .query_row(
            "SELECT note FROM checkpoints WHERE size = ?1",
            [b as i64],
            |r| r.get(0),
        )
        .unwrap();
    let mut signed = stele_attest::SignedNote::parse(&note).unwrap();
    signed.add_signature(evil.as_ref()).unwrap();
    c.execute_batch("DROP TRIGGER IF EXISTS checkpoints_no_update;")
        .unwrap();
    c.execute(
        "UPDATE checkpoints SET note = ?1 WHERE size = ?2",
        rusqlite::params![signed.to_text(), b as i64],
    )
    .unwrap();
    let resign = |note: &str| {
        let body = stele_attest::SignedNote::parse(note).unwrap().text;
        stele_attest::Checkpoint::parse_body(&body)
            .unwrap()
            .sign(evil.as_ref())
            .unwrap()
            .to_text()
    };
    let later: Vec<(i64, String)> = c
        .prepare("SELECT size, note FROM checkpoints WHERE size > ?1")
        .unwrap()
        .query_map([b as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !later.is_empty(),
        "the checkpoint kept at the archived size"
    );
    for (size, note) in later {
        c.execute(
            "UPDATE checkpoints SET note = ?1 WHERE size = ?2",
            rusqlite::params![resign(&note), size],
        )
        .unwrap();
    }
    let head: String = c
        .query_row("SELECT note FROM head", [], |r| r.get(0))
        .unwrap();
    c.execute("UPDATE head SET note = ?1", [resign(&head)])
        .unwrap();
    let meta: String = c
        .query_row("SELECT v FROM meta WHERE k = 'keys'", [], |r| r.get(0))
        .unwrap();
    c.execute(
        "UPDATE meta SET v = ?1 WHERE k = 'keys'",
        [meta.replace(&key(2).verifier().to_string(), &evil.verifier().to_string())],
    )
    .unwrap();
    drop(c);
    let why = tampered(&f, &f.signer);
    assert!(why.contains("key"), "{why}");
    assert!(AuditLog::open(&f.db, evil, Fixture::opts()).is_err());
}

#[test]
fn the_kept_boundary_checkpoint_removed_is_caught() {
    let f = Fixture::new();
    let (b, _) = rotated_then_archived(&f);
    let c = raw(&f.db);
    c.execute_batch("DROP TRIGGER checkpoints_no_delete;")
        .unwrap();
    c.execute("DELETE FROM checkpoints WHERE size = ?1", [b as i64])
        .unwrap();
    drop(c);
    for k in [f.signer.clone(), key(2)] {
        let why = tampered(&f, &k);
        assert!(why.contains("missing"), "{why}");
    }
    assert!(AuditLog::open(&f.db, key(2), Fixture::opts()).is_err());
}

#[test]
fn every_altered_archived_key_record_fails_its_replay() {
    let f = Fixture::new();
    let (b, n) = rotated_then_archived(&f);
    let store = Store::open(&f.db).unwrap();
    let good = archive_record(&store);
    assert_eq!(good.rotations.len(), 1);
    let genesis = f.signer.verifier().to_string();
    let replay = |k: &ArchiveKeys, through: u64| {
        k.replay(&genesis, ORIGIN, through, &mut |s| {
            store.checkpoint_at(s).map_err(|e| e.to_string())
        })
    };
    let (sched, _) = replay(&good, n).unwrap();
    assert_eq!(sched.current(), key(2).verifier().to_string());
    assert_eq!(sched.boundaries().collect::<Vec<_>>(), vec![b]);

    let mut bad_path = good.clone();
    let h = &mut bad_path.rotations[0].proof;
    if h.is_empty() {
        h.push(b64(&[1; 32]));
    } else {
        h[0] = b64(&[1; 32]);
    }
    assert!(replay(&bad_path, n)
        .unwrap_err()
        .contains("not in the tree"));
    // A boundary past the archived size.
    assert!(replay(&good, b - 1).unwrap_err().contains("not below"));
    // Another genesis key: the rotation's old key is not it.
    let other = key(9).verifier().to_string();
    assert!(good
        .replay(&other, ORIGIN, n, &mut |s| store
            .checkpoint_at(s)
            .map_err(|e| e.to_string()))
        .is_err());
    // The rotation twice (a key rotated to itself / old key wrong).
    let mut twice = good.clone();
    twice.rotations.push(good.rotations[0].clone());
    assert!(replay(&twice, n).is_err());
    // A leaf that is not a rotation: the first live entry.
    let mut not_rot = good.clone();
    let leaf = store.entry(n).unwrap().leaf;
    not_rot.rotations[0].leaf = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&leaf)
    };
    assert!(replay(&not_rot, n + 5).is_err());
    // A revocation of a key the log never had.
    let mut rev = good.clone();
    rev.revocations.push(stele_audit::keys::Revocation {
        key: key(66).verifier().to_string(),
        from: 1,
    });
    assert!(replay(&rev, n).unwrap_err().contains("revocation"));
    // Dropping the record entirely gives a schedule without the rotation,
    // which the verifiers compare with the log's own.
    let (empty, _) = replay(&ArchiveKeys::default(), n).unwrap();
    assert_ne!(empty, sched);
}
