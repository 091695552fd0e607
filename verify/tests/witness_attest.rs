#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Witness cosignatures travel in the export and meet a quorum; session
//! attestations are exported and checked against the entries.

use std::sync::Arc;

use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::attestation::{attest_session, SessionContext};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::witness::{publish_to_witnesses, serve, Witness, WitnessTarget};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_verify::{verify, Bundle, Options};

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "bob".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

fn session(log: &AuditLog, id: &str) {
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
        .unwrap();
    log.append_blocking(Event::new(EventKind::PolicyDecision, actor()).in_session(id))
        .unwrap();
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
        .unwrap();
}

#[test]
fn quorum_and_attestation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let key = Arc::new(Ed25519Signer::from_seed("audit.test.invalid/w", &[2; 32]).unwrap());
    let log = AuditLog::create(
        &db,
        key.clone(),
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
    session(&log, "s-1");
    let ctx = SessionContext {
        policy_digest: Some("sha256:00".into()),
        runtime_version: "0.1.0".into(),
        binary_sha256: stele_audit::export::attestation::binary_sha256(None).unwrap(),
        sandbox: serde_json::json!({"backend": "process", "network": "proxy"}),
    };
    attest_session(&log, key.as_ref(), "s-1", &ctx).unwrap();

    let wkey: Arc<dyn Signer> =
        Arc::new(Ed25519Signer::from_seed("witness.test.invalid/a", &[3; 32]).unwrap());
    let wv = CosignatureVerifier::of(wkey.as_ref());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let w = Arc::new(Witness::new(wkey, vec![key.verifier()], dir.path().join("w.json")).unwrap());
    rt.spawn(async move { serve(listener, w).await });
    let targets = vec![WitnessTarget {
        url,
        key: wv.clone(),
    }];
    let published = publish_to_witnesses(&db, &key.verifier(), &targets).unwrap();
    session(&log, "s-2");

    let out = dir.path().join("exp");
    let o = ExportOptions {
        selection: Selection::Session { id: "s-1".into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(&log, key.as_ref(), &o, &out).unwrap();
    assert!(out
        .join(format!("checkpoints/{}", published.size))
        .is_file());
    assert!(out.join("attestations/s-1.intoto.jsonl").is_file());

    let mut opts = Options {
        log_key: key.verifier(),
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key: None,
        witnesses: vec![wv],
        quorum: Some(1),
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    };
    let r = verify(&Bundle::open(&out).unwrap(), &opts).unwrap();
    assert_eq!(r.attestations, vec!["s-1".to_string()]);
    assert_eq!(
        r.cosigned,
        vec![("witness.test.invalid/a".to_string(), published.size)]
    );
    // A second trusted witness that never cosigned: quorum 2 is not met.
    let other = Ed25519Signer::from_seed("witness.test.invalid/b", &[4; 32]).unwrap();
    opts.witnesses.push(CosignatureVerifier::of(&other));
    opts.quorum = Some(2);
    let e = verify(&Bundle::open(&out).unwrap(), &opts).unwrap_err();
    assert!(
        e.reason.contains("witness quorum not met: 1 of the 2"),
        "{e}"
    );
    log.close().unwrap();
}
