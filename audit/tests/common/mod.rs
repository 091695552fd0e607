#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shared helpers for the audit integration tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_attest::{Ed25519Signer, NoteVerifier, Signer};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Receipt, Refs, Target,
};

pub const ORIGIN: &str = "audit.test.invalid/log";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub signer: Arc<Ed25519Signer>,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let seed = [7u8; 32];
        let signer = Arc::new(Ed25519Signer::from_seed(ORIGIN, &seed).unwrap());
        Self { dir, db, signer }
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    pub fn opts() -> LogOptions {
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        }
    }

    pub fn create(&self) -> AuditLog {
        AuditLog::create(&self.db, self.signer.clone(), Self::opts()).unwrap()
    }

    pub fn open(&self) -> Result<AuditLog, stele_audit::AuditError> {
        AuditLog::open(&self.db, self.signer.clone(), Self::opts())
    }
}

pub fn actor() -> Actor {
    Actor {
        host: "test-host".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec!["finance".into()],
    }
}

pub fn b64(h: &[u8; 32]) -> String {
    stele_audit::leaf::hash_b64(h)
}

/// A session with one tool intent and its result, carrying payloads.
pub fn sample_session(log: &AuditLog, id: &str) -> Vec<Receipt> {
    let mut out = Vec::new();
    out.push(
        log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
            .unwrap(),
    );
    let intent = log
        .append_blocking(
            Event::new(EventKind::ToolIntent, actor())
                .in_session(id)
                .with_target(Target {
                    tool: Some("file.read".into()),
                    path: Some("receipts/a.txt".into()),
                    ..Target::default()
                })
                .with_payload(PayloadInput {
                    role: "args".into(),
                    media: "application/json".into(),
                    body: br#"{"path":"receipts/a.txt"}"#.to_vec(),
                    disclosure: Disclosure::CommitmentOnly,
                }),
        )
        .unwrap();
    out.push(intent.clone());
    out.push(
        log.append_blocking(
            Event::new(EventKind::ToolResult, actor())
                .in_session(id)
                .with_refs(Refs {
                    intent_leaf: b64(&intent.leaf_hash),
                    intent_seq: intent.seq,
                })
                .with_outcome(stele_audit::Outcome::status(stele_audit::Status::Ok))
                .with_payload(PayloadInput {
                    role: "output".into(),
                    media: "text/plain".into(),
                    body: b"Coffee 3.50 EUR, client Acme".to_vec(),
                    disclosure: Disclosure::WithDigest,
                }),
        )
        .unwrap(),
    );
    out.push(
        log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
            .unwrap(),
    );
    out
}

/// Open the database with no protections, as an attacker with the file would.
pub fn raw(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
    c
}
