#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A payload committed once and referred to by later entries: stored once, verified, exported
//! once, redacted once; references to payloads the log does not hold are refused.

mod common;

use common::*;
use ring::rand::SystemRandom;
use stele_audit::payload::seal;
use stele_audit::verify::verify_db;
use stele_audit::{AuditError, Disclosure, Event, EventKind, PayloadInput, PayloadRef};

fn big() -> PayloadInput {
    PayloadInput {
        role: "tool_input".into(),
        media: "application/json".into(),
        body: vec![b'x'; 200_000],
        disclosure: Disclosure::CommitmentOnly,
    }
}

fn payload_bytes(f: &Fixture) -> (i64, i64) {
    raw(&f.db)
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM payloads",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn a_sealed_payload_is_stored_once_and_shared() {
    let f = Fixture::new();
    let log = f.create();
    let (n0, b0) = payload_bytes(&f);
    let sealed = seal(&SystemRandom::new(), big()).unwrap();
    let commit = sealed.reference.commit.clone();
    let first = log
        .append_blocking(
            Event::new(EventKind::PolicyDecision, actor()).with_sealed_payload(sealed.clone()),
        )
        .unwrap();
    let mut again = sealed.reference.clone();
    again.role = "args".into();
    for _ in 0..3 {
        log.append_blocking(
            Event::new(EventKind::PolicyDecision, actor()).with_shared_payload(again.clone()),
        )
        .unwrap();
    }
    let (n, b) = payload_bytes(&f);
    assert_eq!((n - n0, b - b0), (1, 200_000), "one row, one body");
    // The leaves list it, under the role each gave.
    let store = log.store().unwrap();
    let leaf =
        |seq| stele_audit::leaf::Leaf::parse_canonical(&store.entry(seq).unwrap().leaf).unwrap();
    assert_eq!(leaf(first.seq).payload[0].commit, commit);
    assert_eq!(leaf(first.seq + 1).payload[0].role, "args");
    assert_eq!(leaf(first.seq + 3).payload[0].commit, commit);
    // The same sealed payload twice is refused (refer to it instead).
    let e = log
        .append_blocking(Event::new(EventKind::PolicyDecision, actor()).with_sealed_payload(sealed))
        .unwrap_err();
    assert!(matches!(e, AuditError::Invalid(_)), "{e}");
    drop(store);
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(
        rep.payloads_present, n as u64,
        "one payload, however many entries list it"
    );

    // Redacting it once erases it for every entry that lists it; the log still verifies.
    let log = f.open().unwrap();
    log.redact_blocking(vec![commit.clone()], "erasure request".into(), actor())
        .unwrap();
    drop(log);
    let rep = verify_db(&f.db, &f.verifier(), None).unwrap();
    assert_eq!(rep.payloads_redacted, 1);
}

#[test]
fn references_must_name_a_stored_payload_of_the_right_size() {
    let f = Fixture::new();
    let log = f.create();
    let sealed = seal(&SystemRandom::new(), big()).unwrap();
    // Never committed: refused.
    let e = log
        .append_blocking(
            Event::new(EventKind::PolicyDecision, actor())
                .with_shared_payload(sealed.reference.clone()),
        )
        .unwrap_err();
    assert!(matches!(e, AuditError::NotFound(_)), "{e}");
    log.append_blocking(
        Event::new(EventKind::PolicyDecision, actor()).with_sealed_payload(sealed.clone()),
    )
    .unwrap();
    // Committed, but the reference lies about the size.
    let lie = PayloadRef {
        size: 5,
        ..sealed.reference.clone()
    };
    let e = log
        .append_blocking(Event::new(EventKind::PolicyDecision, actor()).with_shared_payload(lie))
        .unwrap_err();
    assert!(matches!(e, AuditError::Invalid(_)), "{e}");
    // A sealed payload whose body does not match its commitment is refused.
    let mut forged = seal(&SystemRandom::new(), big()).unwrap();
    forged.body[0] = b'y';
    let e = log
        .append_blocking(Event::new(EventKind::PolicyDecision, actor()).with_sealed_payload(forged))
        .unwrap_err();
    assert!(matches!(e, AuditError::Invalid(_)), "{e}");
    drop(log);
    verify_db(&f.db, &f.verifier(), None).unwrap();
}

/// The start-up check reads only what was appended since the previous
/// start-up (and a fixed tail): a reference there to a payload made before
/// it is not "missing" (a false alarm would refuse an intact log).
#[test]
fn the_start_up_check_accepts_references_to_payloads_made_before_it_looks() {
    use std::time::Duration;
    use stele_audit::{AuditLog, FullVerification, LogOptions};
    let f = Fixture::new();
    // No full verification in the way: only the start-up check looks.
    let opts = || LogOptions {
        recheck_tail: 0,
        full_verification: FullVerification {
            every: Duration::from_secs(3600),
            at_most: Duration::from_secs(7200),
            start_after: Duration::from_secs(3600),
        },
        ..Fixture::opts()
    };
    let log = AuditLog::create(&f.db, f.signer.clone(), opts()).unwrap();
    let sealed = seal(&SystemRandom::new(), big()).unwrap();
    log.append_blocking(
        Event::new(EventKind::PolicyDecision, actor()).with_sealed_payload(sealed.clone()),
    )
    .unwrap();
    log.close().unwrap();
    // Checked once, then referred to by an entry the next start-up reads.
    let log = AuditLog::open(&f.db, f.signer.clone(), opts()).unwrap();
    log.append_blocking(
        Event::new(EventKind::PolicyDecision, actor()).with_shared_payload(sealed.reference),
    )
    .unwrap();
    log.close().unwrap();
    AuditLog::open(&f.db, f.signer.clone(), opts())
        .unwrap()
        .close()
        .unwrap();
    verify_db(&f.db, &f.verifier(), None).unwrap();
    // The fixed tail reaching back over both entries: the same answer.
    AuditLog::open(&f.db, f.signer.clone(), Fixture::opts())
        .unwrap()
        .close()
        .unwrap();
}
