#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The payload bodies a shipped batch carries (docs/server.md "Workers:
//! shipping"), end to end on a real `stele serve` over a temporary
//! PostgreSQL cluster: a body that does not match its commitment, or whose
//! commitment no leaf of the batch lists, is refused with 422 naming the
//! commitment, and nothing of the batch is stored; the same batch with the
//! bodies the worker holds is stored, a redacted body absent; a body
//! redacted on the worker after it was shipped is erased on the server when
//! the redaction entry is shipped; a request over the route's limit is a
//! 413 naming it.

mod e2e_common;
mod server_support;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use server_support::api::{post, problem};
use server_support::runtime;
use server_support::shipping::{
    b64, local_bodies, local_entries, note_for, shipped_bodies, shipped_size, Body,
};
use server_support::worker::{database, server};
use stele_attest::{Ed25519Signer, Signer as _};
use stele_audit::event::{Disclosure, PayloadInput};
use stele_audit::payload::{commit_text, commitment};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_tests::postgres::TempCluster;

fn wire(b: &Body) -> Value {
    json!({"cmt": B64.encode(&b.0), "media": b.1, "salt": B64.encode(&b.2), "body": B64.encode(&b.3)})
}

#[test]
fn bodies_are_checked_against_the_batch_and_stored_with_it() {
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "bodies");
    let srv = server(&url, "", 30);
    let wtoken = srv.token_scoped("ada", "worker");
    let origin = "bodies.e2e.stele.invalid/log";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::generate(origin).unwrap());
    let log = AuditLog::create(&db, signer.clone(), LogOptions::default()).unwrap();
    let with_body = |text: &str| {
        Event::new(EventKind::PolicyLoad, Actor::system()).with_payload(PayloadInput {
            role: "args".into(),
            media: "text/plain".into(),
            body: text.as_bytes().to_vec(),
            disclosure: Disclosure::CommitmentOnly,
        })
    };
    log.append_blocking(with_body("kept")).unwrap();
    log.append_blocking(with_body("redacted later")).unwrap();
    log.append_blocking(Event::new(EventKind::PolicyLoad, Actor::system()))
        .unwrap();
    let erased = local_bodies(&db, None)
        .into_iter()
        .find(|b| b.3 == b"redacted later")
        .unwrap();
    log.redact_blocking(
        vec![commit_text(&erased.0.clone().try_into().unwrap())],
        "a test".into(),
        Actor::system(),
    )
    .unwrap();
    log.close().unwrap();
    let leaves = local_entries(&db);
    let held = local_bodies(&db, None);
    assert_eq!(held.len(), 1, "one body left after the redaction");
    let kept = held[0].clone();
    let note = note_for(signer.as_ref(), &leaves);
    let rt = runtime();
    rt.block_on(async {
        let r = post(
            &srv,
            &wtoken,
            "/api/v1/worker/claim",
            json!({"name": "bodies", "verifier": signer.verifier().to_string()}),
        )
        .await;
        assert_eq!(r.status(), 204);
        let ship = |payloads: Vec<Value>| {
            post(
                &srv,
                &wtoken,
                "/api/v1/worker/log",
                json!({"worker": "bodies", "origin": origin, "from": 0,
                       "leaves": b64(&leaves), "checkpoint": note.clone(), "payloads": payloads}),
            )
        };
        let named = commit_text(&kept.0.clone().try_into().unwrap());
        // One byte of the body changed: it no longer matches its commitment.
        let mut bad = kept.clone();
        bad.3[0] ^= 1;
        let p = problem(ship(vec![wire(&bad)]).await, 422).await;
        let d = p["detail"].as_str().unwrap();
        assert!(d.contains(&named) && d.contains("does not match"), "{p}");
        // A body (true to its own commitment) that no leaf of the batch lists.
        let salt = [7u8; 32];
        let stray: Body = (
            commitment(&salt, b"stray").to_vec(),
            "text/plain".into(),
            salt.to_vec(),
            b"stray".to_vec(),
        );
        let p = problem(ship(vec![wire(&kept), wire(&stray)]).await, 422).await;
        let d = p["detail"].as_str().unwrap();
        let stray_named = commit_text(&stray.0.clone().try_into().unwrap());
        assert!(d.contains(&stray_named) && d.contains("lists"), "{p}");
        // Nothing of either batch was stored.
        assert_eq!(shipped_size(&cluster, "bodies", origin), None);
        assert!(shipped_bodies(&cluster, "bodies", origin, None).is_empty());
        // Over the route's limit: 413 naming it, nothing stored.
        let huge = B64.encode(vec![0u8; 25 << 20]);
        let big = Value::Array(vec![
            json!({"cmt": B64.encode(&kept.0), "media": "text/plain", "salt": "", "body": huge}),
        ]);
        let r = post(
            &srv,
            &wtoken,
            "/api/v1/worker/log",
            json!({"worker": "bodies", "origin": origin, "from": 0,
                   "leaves": b64(&leaves), "checkpoint": note.clone(), "payloads": big}),
        )
        .await;
        let p = problem(r, 413).await;
        assert!(p["detail"].as_str().unwrap().contains("at most"), "{p}");
        assert_eq!(shipped_size(&cluster, "bodies", origin), None);
        // The batch with the body the worker holds (the redacted one absent).
        let r = ship(vec![wire(&kept)]).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    });
    assert_eq!(
        shipped_size(&cluster, "bodies", origin),
        Some(leaves.len() as u64)
    );
    assert_eq!(
        shipped_bodies(&cluster, "bodies", origin, None),
        vec![kept.clone()]
    );
    // Redacted on the worker after it was shipped: the redaction entry,
    // shipped, erases the server's copy too.
    let log = AuditLog::open(&db, signer.clone(), LogOptions::default()).unwrap();
    log.redact_blocking(
        vec![commit_text(&kept.0.clone().try_into().unwrap())],
        "after shipping".into(),
        Actor::system(),
    )
    .unwrap();
    log.close().unwrap();
    let all = local_entries(&db);
    let note = note_for(signer.as_ref(), &all);
    rt.block_on(async {
        let r = post(
            &srv,
            &wtoken,
            "/api/v1/worker/log",
            json!({"worker": "bodies", "origin": origin, "from": leaves.len(),
                   "leaves": b64(&all[leaves.len()..]), "checkpoint": note}),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    });
    assert_eq!(
        shipped_size(&cluster, "bodies", origin),
        Some(all.len() as u64)
    );
    assert!(shipped_bodies(&cluster, "bodies", origin, None).is_empty());
}
