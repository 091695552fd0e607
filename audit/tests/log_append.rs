#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Appending, sessions, intents, payloads, redaction, heartbeats, reopening.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use stele_audit::leaf::Leaf;
use stele_audit::verify::verify_db;
use stele_audit::{AuditError, AuditLog, Event, EventKind, LogOptions, Refs, Store};

#[test]
fn append_returns_only_after_commit_with_signed_checkpoint() {
    let f = Fixture::new();
    let log = f.create();
    let r = log
        .append_blocking(Event::new(EventKind::PolicyDecision, actor()))
        .unwrap();
    assert_eq!(r.seq, 1, "genesis is entry 0");
    assert_eq!(r.size, 2);
    // The receipt's checkpoint verifies and covers the entry.
    let (cp, _) = stele_attest::Checkpoint::open(&r.checkpoint, &f.verifier()).unwrap();
    assert_eq!(cp.size, 2);
    // Another connection sees the entry and the checkpoint immediately.
    let store = Store::open(&f.db).unwrap();
    assert_eq!(store.size().unwrap(), 2);
    assert_eq!(
        store.latest_checkpoint().unwrap().unwrap().1,
        &*r.checkpoint
    );
    let e = store.entry(1).unwrap();
    assert_eq!(stele_audit::merkle::leaf_hash(&e.leaf), r.leaf_hash);
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(
        rep.entries, 3,
        "genesis, the decision, and log.close on drop"
    );
}

#[test]
fn sessions_chain_and_results_close_intents() {
    let f = Fixture::new();
    let log = f.create();
    let rs = sample_session(&log, "s1");
    let store = log.store().unwrap();
    let mut scratch = Vec::new();
    let leaf =
        |seq| Leaf::decode_canonical(&store.entry(seq).unwrap().leaf, &mut Vec::new()).unwrap();
    let l2 = leaf(rs[2].seq);
    let s = l2.session.unwrap();
    assert_eq!((s.id.as_str(), s.n), ("s1", 2));
    assert_eq!(s.prev.unwrap(), b64(&rs[1].leaf_hash));
    assert_eq!(l2.prev.unwrap(), b64(&rs[1].leaf_hash));
    assert_eq!(l2.payload.len(), 1);
    assert!(
        l2.payload[0].sha256.is_some(),
        "WithDigest discloses the plain hash"
    );
    assert!(leaf(rs[1].seq).payload[0].sha256.is_none());
    assert!(store.open_intents().unwrap().is_empty());
    let _ = Leaf::decode_canonical(&store.entry(0).unwrap().leaf, &mut scratch).unwrap();

    // Misuse is refused with a clear error and consumes no index.
    let before = store.size().unwrap();
    let e = log
        .append_blocking(Event::new(EventKind::ToolIntent, actor()).in_session("s1"))
        .unwrap_err();
    assert!(e.to_string().contains("has ended"), "{e}");
    let e = log
        .append_blocking(Event::new(EventKind::ToolIntent, actor()).in_session("nope"))
        .unwrap_err();
    assert!(e.to_string().contains("session.start"), "{e}");
    let e = log
        .append_blocking(Event::new(EventKind::ToolResult, actor()).with_refs(Refs {
            intent_leaf: b64(&rs[1].leaf_hash),
            intent_seq: rs[1].seq,
        }))
        .unwrap_err();
    assert!(e.to_string().contains("not an open intent"), "{e}");
    let e = log
        .append_blocking(Event::new(EventKind::ExecEnd, actor()))
        .unwrap_err();
    assert!(e.to_string().contains("must name its intent"), "{e}");
    let e = log
        .append_blocking(
            Event::new(EventKind::Heartbeat, actor()).with_data(serde_json::json!({"f": 0.5})),
        )
        .unwrap_err();
    assert!(matches!(e, AuditError::Leaf(_)), "{e}");
    assert_eq!(log.store().unwrap().size().unwrap(), before);
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(
        (rep.sessions, rep.open_sessions, rep.payloads_present),
        (1, 0, 2)
    );
}

#[test]
fn intents_survive_reopen_and_can_be_closed_as_interrupted() {
    let f = Fixture::new();
    let log = f.create();
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session("s"))
        .unwrap();
    let intent = log
        .append_blocking(Event::new(EventKind::ExecStart, actor()).in_session("s"))
        .unwrap();
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(rep.unfinished.len(), 1);
    assert_eq!(rep.unfinished[0].seq, intent.seq);

    let log = f.open().unwrap();
    let open = log.store().unwrap().open_intents().unwrap();
    assert_eq!(open.len(), 1);
    // The wrong kind of result is refused; `interrupted` closes any intent.
    let refs = Refs {
        intent_leaf: b64(&intent.leaf_hash),
        intent_seq: intent.seq,
    };
    assert!(log
        .append_blocking(
            Event::new(EventKind::ToolResult, actor())
                .in_session("s")
                .with_refs(refs.clone())
        )
        .is_err());
    log.append_blocking(
        Event::new(EventKind::Interrupted, actor())
            .in_session("s")
            .with_refs(refs),
    )
    .unwrap();
    log.append_blocking(Event::new(EventKind::SessionInterrupted, actor()).in_session("s"))
        .unwrap();
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert!(rep.unfinished.is_empty());
    assert_eq!(rep.interrupted, 1);
}

#[test]
fn redaction_erases_body_and_still_verifies() {
    let f = Fixture::new();
    let log = f.create();
    let rs = sample_session(&log, "s1");
    let store = log.store().unwrap();
    let leaf =
        Leaf::decode_canonical(&store.entry(rs[2].seq).unwrap().leaf, &mut Vec::new()).unwrap();
    let commit = leaf.payload[0].commit.clone();
    let r = log
        .redact_blocking(
            vec![commit.clone()],
            "GDPR Art. 17 request #42".into(),
            actor(),
        )
        .unwrap();
    let p = store
        .payload(&stele_audit::payload::parse_commit(&commit).unwrap())
        .unwrap()
        .unwrap();
    assert!(p.body.is_none() && p.salt.is_none());
    assert_eq!(p.redacted_seq, Some(r.seq));
    // Twice, or an unknown commitment, or no reason: refused.
    assert!(log
        .redact_blocking(vec![commit.clone()], "again".into(), actor())
        .is_err());
    assert!(log
        .redact_blocking(vec!["sha256s:AAAA".into()], "x".into(), actor())
        .is_err());
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!((rep.payloads_present, rep.payloads_redacted), (1, 1));
    assert_eq!(rep.redactions.len(), 1);
    assert_eq!(rep.redactions[0].reason, "GDPR Art. 17 request #42");
}

#[test]
fn heartbeats_when_idle() {
    let f = Fixture::new();
    let opts = LogOptions {
        heartbeat: Some(Duration::from_millis(50)),
        ..Fixture::opts()
    };
    let log = AuditLog::create(&f.db, f.signer.clone(), opts).unwrap();
    let beats = || {
        let store = Store::open(&f.db).unwrap();
        let mut beats = 0;
        store
            .for_each_entry(0, u64::MAX, |_, b, _| {
                if Leaf::decode_canonical(b, &mut Vec::new()).unwrap().kind == EventKind::Heartbeat
                {
                    beats += 1;
                }
                Ok(())
            })
            .unwrap();
        beats
    };
    // Waits for them rather than counting what a fixed time gave: on a
    // loaded machine the sequencer may not run every 50 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while beats() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than 3 heartbeats in 60 s at a 50 ms interval"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(log);
    assert!(beats() >= 3);
}

#[test]
fn concurrent_writers_group_commit() {
    let f = Fixture::new();
    let log = Arc::new(f.create());
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| {
                        log.append_blocking(Event::new(EventKind::PolicyDecision, actor()))
                            .unwrap()
                            .seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 800, "every append got its own index");
    let store = log.store().unwrap();
    let checkpoints = store.checkpoints().unwrap().len();
    assert!(
        checkpoints < 801,
        "commits were grouped ({checkpoints} checkpoints)"
    );
    drop(store);
    drop(log);
    assert_eq!(
        verify_db(&f.db, &f.verifier(), None).unwrap().entries,
        802,
        "genesis + 800 + log.close"
    );
}

#[tokio::test]
async fn async_append_and_writer_lock() {
    let f = Fixture::new();
    let log = f.create();
    let r = log
        .append(Event::new(EventKind::AuditRead, actor()))
        .await
        .unwrap();
    assert_eq!(r.seq, 1);
    // A second writer is refused while the first holds the lock.
    assert!(matches!(f.open(), Err(AuditError::Busy(_))));
    log.close().unwrap();
    let again = f.open().unwrap();
    again.close().unwrap();
    assert!(matches!(
        AuditLog::create(&f.db, f.signer.clone(), Fixture::opts()),
        Err(AuditError::Exists(_))
    ));
}

#[test]
fn proofs_verify_and_reject_other_keys() {
    let f = Fixture::new();
    let log = f.create();
    sample_session(&log, "s");
    let store = log.store().unwrap();
    let text = stele_audit::proof::make(&store, &f.verifier(), 2).unwrap();
    let p = stele_audit::proof::verify(&text, &f.verifier()).unwrap();
    assert_eq!(p.index, 2);
    let other = stele_attest::Ed25519Signer::from_seed(ORIGIN, &[9; 32]).unwrap();
    use stele_attest::Signer as _;
    assert!(stele_audit::proof::verify(&text, &other.verifier()).is_err());
    let tampered = text.replacen("index 2", "index 3", 1);
    assert!(stele_audit::proof::verify(&tampered, &f.verifier()).is_err());
}
