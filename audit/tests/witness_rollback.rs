#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Witnesses over real HTTP on 127.0.0.1: cosignatures are stored, a
//! restored (rolled back) audit database is caught, and the witness keeps its
//! state across restarts.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::{Ed25519Signer, Signer};
use stele_audit::witness::{
    publish_to_witnesses, serve, PublishError, Witness, WitnessOutcome, WitnessTarget,
};
use stele_audit::Store;

struct Server {
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn start(w: Arc<Witness>) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { serve(listener, w).await });
    Server { url, _rt: rt }
}

fn copy_db(from: &Path, to: &Path) {
    for s in ["", "-wal", "-shm"] {
        let (a, b) = (
            format!("{}{s}", from.display()),
            format!("{}{s}", to.display()),
        );
        let _ = std::fs::remove_file(&b);
        if Path::new(&a).exists() {
            std::fs::copy(&a, &b).unwrap();
        }
    }
}

#[test]
fn rollback_of_the_audit_database_is_caught_by_the_witness() {
    let f = Fixture::new();
    let wkey: Arc<dyn Signer> =
        Arc::new(Ed25519Signer::from_seed("witness.test.invalid/w1", &[42; 32]).unwrap());
    let wv = CosignatureVerifier::of(wkey.as_ref());
    let witness = Arc::new(
        Witness::new(
            wkey.clone(),
            vec![f.verifier()],
            f.dir.path().join("witness.json"),
        )
        .unwrap(),
    );
    let server = start(witness);
    let targets = vec![WitnessTarget {
        url: server.url.clone(),
        key: wv.clone(),
    }];

    let log = f.create();
    sample_session(&log, "s-1");
    let r1 = publish_to_witnesses(&f.db, &f.verifier(), &targets).unwrap();
    assert_eq!(r1.cosigned, vec!["witness.test.invalid/w1".to_string()]);
    log.close().unwrap();
    let backup = f.dir.path().join("backup.db");
    copy_db(&f.db, &backup);

    let log = f.open().unwrap();
    sample_session(&log, "s-2");
    sample_session(&log, "s-3");
    let r2 = publish_to_witnesses(&f.db, &f.verifier(), &targets).unwrap();
    assert!(r2.size > r1.size);
    // The cosignature is stored and verifies against the checkpoint.
    let store = Store::open(&f.db).unwrap();
    let line: String = store
        .conn()
        .query_row(
            "SELECT line FROM cosignatures WHERE size = ?1",
            [r2.size as i64],
            |r| r.get(0),
        )
        .unwrap();
    let note = store.checkpoint_at(r2.size).unwrap().unwrap();
    let signed = stele_attest::SignedNote::parse(&format!("{note}{line}\n")).unwrap();
    assert!(wv.verify_note(&signed).is_ok());
    drop(store);
    log.close().unwrap();

    // Restore the older copy: the database itself looks fine…
    copy_db(&backup, &f.db);
    let log = f.open().unwrap();
    sample_session(&log, "after-restore");
    // …but the witness has seen more of this log.
    let e = publish_to_witnesses(&f.db, &f.verifier(), &targets).unwrap_err();
    match &e {
        PublishError::Rollback {
            witness_size,
            our_size,
            ..
        } => {
            assert_eq!(*witness_size, r2.size);
            assert!(*our_size < r2.size);
        }
        other => panic!("expected a rollback error, got {other}"),
    }
    assert!(e.to_string().contains("ROLLBACK DETECTED"), "{e}");
    log.close().unwrap();
}

#[test]
fn witness_checks_signature_proof_and_keeps_state() {
    let f = Fixture::new();
    let wkey: Arc<dyn Signer> =
        Arc::new(Ed25519Signer::from_seed("witness.test.invalid/w2", &[43; 32]).unwrap());
    let state = f.dir.path().join("w.json");
    let w = Witness::new(wkey.clone(), vec![f.verifier()], state.clone()).unwrap();
    let log = f.create();
    sample_session(&log, "s");
    let (size, note) = log.store().unwrap().latest_checkpoint().unwrap().unwrap();
    // Unknown key: a checkpoint for the same origin signed by another key.
    let other = Ed25519Signer::from_seed(ORIGIN, &[1; 32]).unwrap();
    let body_text = stele_attest::SignedNote::parse(&note).unwrap().text;
    let forged = stele_attest::SignedNote::sign(&body_text, &other)
        .unwrap()
        .to_text();
    assert!(matches!(
        w.add_checkpoint(&format!("old 0\n\n{forged}"), 1),
        WitnessOutcome::Refused(403, _)
    ));
    // Wrong old size → 409 with ours.
    assert_eq!(
        w.add_checkpoint(&format!("old 3\n\n{note}"), 1),
        WitnessOutcome::Conflict(0)
    );
    assert!(matches!(
        w.add_checkpoint(&format!("old 0\n\n{note}"), 1),
        WitnessOutcome::Cosigned(_)
    ));
    // A restarted witness remembers.
    drop(w);
    let w = Witness::new(wkey, vec![f.verifier()], state).unwrap();
    assert_eq!(
        w.add_checkpoint(&format!("old 0\n\n{note}"), 1),
        WitnessOutcome::Conflict(size)
    );
    // A bad consistency proof → 422.
    sample_session(&log, "t");
    let (_, note2) = log.store().unwrap().latest_checkpoint().unwrap().unwrap();
    let bogus = stele_audit::leaf::hash_b64(&[0; 32]);
    assert!(matches!(
        w.add_checkpoint(&format!("old {size}\n{bogus}\n\n{note2}"), 1),
        WitnessOutcome::Refused(422, _)
    ));
    log.close().unwrap();
}
