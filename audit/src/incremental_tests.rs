//! The incremental verifier on a real log: batches that continue one
//! another pass, and each check fails on its own fault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use stele_attest::{Checkpoint, Ed25519Signer, Signer};

use super::*;
use crate::event::{Actor, Event};
use crate::merkle::leaf_hash;
use crate::{AuditLog, LogOptions, Store};

const ORIGIN: &str = "worker.test.invalid/log";

/// A log of `n` entries after genesis; its key and its leaves.
fn log(n: usize) -> (Arc<Ed25519Signer>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::generate(ORIGIN).unwrap());
    let log = AuditLog::create(&db, signer.clone(), LogOptions::default()).unwrap();
    for _ in 0..n {
        log.append_blocking(Event::new(EventKind::PolicyLoad, Actor::system()))
            .unwrap();
    }
    log.close().unwrap();
    let store = Store::open(&db).unwrap();
    let mut leaves = Vec::new();
    store
        .for_each_entry(0, u64::MAX, |_, l, _| {
            leaves.push(l.to_vec());
            Ok(())
        })
        .unwrap();
    (signer, leaves)
}

/// A checkpoint signed by `signer` over `state` followed by `leaves`.
fn note(signer: &dyn Signer, state: &ShippedState, leaves: &[Vec<u8>]) -> String {
    let mut f = Frontier::from_parts(state.size, state.frontier.clone()).unwrap();
    for l in leaves {
        f.push(leaf_hash(l), |_| {});
    }
    Checkpoint {
        origin: signer.name().to_string(),
        size: f.size(),
        root: f.root(),
    }
    .sign(signer)
    .unwrap()
    .to_text()
}

fn key(signer: &Ed25519Signer) -> NoteVerifier {
    signer.verifier()
}

#[test]
fn batches_that_continue_each_other_are_accepted() {
    let (signer, leaves) = log(6);
    let k = key(&signer);
    let mut state = ShippedState::default();
    let mut got_nodes = Vec::new();
    let mut got_hashes = Vec::new();
    for chunk in leaves.chunks(3) {
        let n = note(signer.as_ref(), &state, chunk);
        let b = check_batch(ORIGIN, &k, &state, chunk, &n).unwrap();
        assert_eq!(b.entries.len(), chunk.len());
        assert_eq!(b.entries[0].seq, state.size);
        assert!(b.body.starts_with(ORIGIN));
        got_hashes.extend(b.entries.iter().map(|e| e.hash));
        got_nodes.extend(b.nodes);
        state = b.state;
    }
    assert_eq!(state.size, leaves.len() as u64);
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    hashes.iter().for_each(|h| f.push(*h, |n| nodes.push(n)));
    // Across batches, every node a whole tree completes, and the leaf hashes.
    assert_eq!(got_hashes, hashes);
    assert!(nodes.len() >= leaves.len() - 2, "{} nodes", nodes.len());
    assert_eq!(got_nodes, nodes);
    assert_eq!(state.frontier, f.nodes());
    assert_eq!(state.last_hash, hashes.last().copied());
    // An empty batch re-checks the checkpoint at the same size.
    let n = note(signer.as_ref(), &state, &[]);
    assert_eq!(
        check_batch(ORIGIN, &k, &state, &[], &n).unwrap().state,
        state
    );
}

#[test]
fn each_check_fails_on_its_own_fault() {
    let (signer, leaves) = log(4);
    let k = key(&signer);
    let s0 = ShippedState::default();
    let first = check_batch(
        ORIGIN,
        &k,
        &s0,
        &leaves[..2],
        &note(signer.as_ref(), &s0, &leaves[..2]),
    )
    .unwrap()
    .state;

    // A changed byte in a leaf (its data no longer canonical or its chain broken).
    let mut bad = leaves[2..].to_vec();
    let at = bad[0].iter().position(|b| *b == b'"').unwrap() + 1;
    bad[0][at] ^= 0x01;
    let e = check_batch(
        ORIGIN,
        &k,
        &first,
        &bad,
        &note(signer.as_ref(), &first, &bad),
    )
    .unwrap_err();
    assert_eq!(e.index, Some(2), "{e}");

    // A leaf left out: the next one claims another index.
    let gap = leaves[3..].to_vec();
    let e = check_batch(
        ORIGIN,
        &k,
        &first,
        &gap,
        &note(signer.as_ref(), &first, &gap),
    )
    .unwrap_err();
    assert_eq!(e.index, Some(2), "{e}");
    assert!(e.reason.contains("index 3"), "{e}");

    // Leaves shipped against the wrong previous leaf (a state of another prefix).
    let mut other = first.clone();
    other.last_hash = Some([7; 32]);
    let rest = leaves[2..].to_vec();
    let e = check_batch(
        ORIGIN,
        &k,
        &other,
        &rest,
        &note(signer.as_ref(), &other, &rest),
    )
    .unwrap_err();
    assert!(e.reason.contains("hash chain"), "{e}");

    // A checkpoint whose root is not the batch's.
    let wrong = Checkpoint {
        origin: ORIGIN.into(),
        size: first.size + rest.len() as u64,
        root: [9; 32],
    }
    .sign(signer.as_ref())
    .unwrap()
    .to_text();
    let e = check_batch(ORIGIN, &k, &first, &rest, &wrong).unwrap_err();
    assert_eq!(e.index, None);
    assert!(e.reason.contains("root"), "{e}");

    // A checkpoint at another size.
    let short = note(signer.as_ref(), &first, &rest[..1]);
    let e = check_batch(ORIGIN, &k, &first, &rest, &short).unwrap_err();
    assert!(e.reason.contains("size 3 but"), "{e}");

    // A checkpoint signed by another key of the same name.
    let forger = Ed25519Signer::generate(ORIGIN).unwrap();
    let e = check_batch(ORIGIN, &k, &first, &rest, &note(&forger, &first, &rest)).unwrap_err();
    assert!(e.reason.starts_with("checkpoint"), "{e}");

    // Leaves of another log.
    let e = check_batch(
        "other.invalid/log",
        &k,
        &first,
        &rest,
        &note(signer.as_ref(), &first, &rest),
    )
    .unwrap_err();
    assert_eq!(e.index, Some(2), "{e}");

    // A frontier that does not fit the size.
    let mut broken = first.clone();
    broken.frontier.push([0; 32]);
    assert_eq!(
        check_batch(ORIGIN, &k, &broken, &rest, "")
            .unwrap_err()
            .index,
        None
    );

    // The whole rest is accepted, untouched.
    check_batch(
        ORIGIN,
        &k,
        &first,
        &rest,
        &note(signer.as_ref(), &first, &rest),
    )
    .unwrap();
}

#[test]
fn time_order_holds_across_batches() {
    let (signer, leaves) = log(3);
    let k = key(&signer);
    let s0 = ShippedState::default();
    let first = check_batch(
        ORIGIN,
        &k,
        &s0,
        &leaves[..3],
        &note(signer.as_ref(), &s0, &leaves[..3]),
    )
    .unwrap()
    .state;
    // The next leaf, in the same boot, dated before the last one accepted.
    let text = String::from_utf8(leaves[3].clone()).unwrap();
    let ts_at = text.find("\"ts\":\"").unwrap() + 6;
    let earlier = format!(
        "{}2000-01-01T00:00:00.000000Z{}",
        &text[..ts_at],
        &text[ts_at + 27..]
    );
    let batch = vec![earlier.into_bytes()];
    let e = check_batch(
        ORIGIN,
        &k,
        &first,
        &batch,
        &note(signer.as_ref(), &first, &batch),
    )
    .unwrap_err();
    assert_eq!(e.index, Some(3));
    assert!(e.reason.contains("time went backwards"), "{e}");
    // Without the carried time the same leaf would pass: the state is what catches it.
    let mut forgetful = first.clone();
    forgetful.last_time = None;
    check_batch(
        ORIGIN,
        &k,
        &forgetful,
        &batch,
        &note(signer.as_ref(), &forgetful, &batch),
    )
    .unwrap();
}

#[test]
fn a_key_rotation_is_followed_only_at_its_boundary_with_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let old = Arc::new(Ed25519Signer::generate(ORIGIN).unwrap());
    let log = AuditLog::create(&db, old.clone(), LogOptions::default()).unwrap();
    for _ in 0..3 {
        log.append_blocking(Event::new(EventKind::PolicyLoad, Actor::system()))
            .unwrap();
    }
    let new = Arc::new(Ed25519Signer::generate(ORIGIN).unwrap());
    let r = log
        .rotate_blocking(new.clone(), "scheduled".into(), Actor::system())
        .unwrap();
    for _ in 0..3 {
        log.append_blocking(Event::new(EventKind::PolicyLoad, Actor::system()))
            .unwrap();
    }
    log.close().unwrap();
    let store = Store::open(&db).unwrap();
    let mut leaves = Vec::new();
    store
        .for_each_entry(0, u64::MAX, |_, l, _| {
            leaves.push(l.to_vec());
            Ok(())
        })
        .unwrap();
    let b = usize::try_from(r.seq + 1).unwrap();
    let boundary = store.checkpoint_at(r.seq + 1).unwrap().unwrap();
    let s0 = ShippedState::default();

    // A batch running past the rotation: refused at the rotation.
    let e = check_batch(
        ORIGIN,
        &key(&old),
        &s0,
        &leaves,
        &note(new.as_ref(), &s0, &leaves),
    )
    .unwrap_err();
    assert_eq!(e.index, Some(r.seq), "{e}");
    assert!(e.reason.contains("last entry of its batch"), "{e}");
    // Ending at the boundary with one key's signature only: the new key
    // alone (the old one never vouched for it), or the old key alone.
    for one in [&new, &old] {
        let e = check_batch(
            ORIGIN,
            &key(&old),
            &s0,
            &leaves[..b],
            &note(one.as_ref(), &s0, &leaves[..b]),
        )
        .unwrap_err();
        assert!(e.reason.contains("checkpoint"), "{e}");
    }
    // The kept boundary checkpoint, signed by both: accepted, and the new
    // key holds from here on.
    let first = check_batch(ORIGIN, &key(&old), &s0, &leaves[..b], &boundary).unwrap();
    assert_eq!(first.key, new.verifier().to_string());
    // After it, held as the log's key, the new key alone signs: a batch
    // signed by the old key (the one rotated out) is refused.
    let rest = &leaves[b..];
    let then = NoteVerifier::parse(&first.key).unwrap();
    let e = check_batch(
        ORIGIN,
        &then,
        &first.state,
        rest,
        &note(old.as_ref(), &first.state, rest),
    )
    .unwrap_err();
    assert!(e.reason.contains("checkpoint"), "{e}");
    let second = check_batch(
        ORIGIN,
        &then,
        &first.state,
        rest,
        &note(new.as_ref(), &first.state, rest),
    )
    .unwrap();
    assert_eq!(second.state.size, leaves.len() as u64);
    assert_eq!(second.key, first.key);
}
