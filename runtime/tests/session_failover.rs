#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A session continued after the worker running it stopped
//! (export-format §8a, failover): the team server's bundle of what it held
//! of the worker's log — no end, its manifest signed by the server's key —
//! is imported into another log, whose `session.start` names the server's
//! key and the intents whose results are unknown. The continuing log's
//! session bundle then verifies across both logs, and each part of the
//! link is checked: a wrong list of unknown intents, a slice that ended,
//! or a manifest signed by another key fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_attest::{Ed25519Signer, NoteVerifier, Signer};
use stele_audit::export::earlier::{Continues, UnknownIntent};
use stele_audit::export::layout::Selection;
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, Outcome, PayloadInput, Refs, Status,
};
use stele_runtime::conversation;
use stele_runtime::provider::{ChatRequest, Content, Message};
use stele_runtime::session_move_import::{import_session, Departure, ImportRequest};
use stele_verify::{Arrival, Bundle, Options};

const ID: &str = "s-failover";

fn log(dir: &Path, seed: u8, origin: &str) -> (AuditLog, Arc<Ed25519Signer>) {
    std::fs::create_dir_all(dir).unwrap();
    let key = Arc::new(Ed25519Signer::from_seed(origin, &[seed; 32]).unwrap());
    let l = AuditLog::create(
        &dir.join("audit.db"),
        key.clone(),
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
    (l, key)
}

fn opts(key: NoteVerifier, export_key: Option<NoteVerifier>) -> Options {
    Options {
        log_key: key,
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    }
}

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default")
}

fn session_bundle(l: &AuditLog, signer: &dyn Signer, out: &Path, open: bool) {
    let o = ExportOptions {
        selection: Selection::Session { id: ID.into() },
        payloads: true,
        policies: vec![],
        exporter: Actor::system(),
        allow_open_session: open,
        tar: true,
    };
    export(l, signer, &o, out).unwrap();
}

/// Worker A's log: the session starts, a tool call's intent is written,
/// and then the worker stops (no result, no end). The server's bundle of
/// it, signed by the server's key.
struct Source {
    dir: tempfile::TempDir,
    key: Arc<Ed25519Signer>,
    server: Arc<Ed25519Signer>,
    file: PathBuf,
    intent: u64,
}

fn source(end: bool) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let (a, key) = log(&dir.path().join("a"), 41, "a.test.invalid/log");
    let server = Arc::new(Ed25519Signer::from_seed("server.test.invalid/log", &[43; 32]).unwrap());
    a.append_blocking(
        Event::new(EventKind::SessionStart, Actor::system())
            .in_session(ID)
            .with_data(serde_json::json!({"workspace": dir.path().display().to_string()}))
            .with_payload(PayloadInput {
                role: "task".into(),
                media: "text/plain".into(),
                body: b"Sum the receipts".to_vec(),
                disclosure: Disclosure::CommitmentOnly,
            }),
    )
    .unwrap();
    // A model turn asking for two calls; the first started (its intent
    // reached the server), the second left no entry there.
    let chat = ChatRequest {
        model: "m".into(),
        system: String::new(),
        messages: vec![Message::user_text("Sum the receipts")],
        tools: vec![],
        max_tokens: 100,
    };
    let req = a
        .append_blocking(
            Event::new(EventKind::ModelRequest, Actor::system())
                .in_session(ID)
                .with_payload(payload("conversation", serde_json::to_vec(&chat).unwrap())),
        )
        .unwrap();
    let calls = vec![call("call-1"), call("call-2")];
    a.append_blocking(
        Event::new(EventKind::ModelResponse, Actor::system())
            .in_session(ID)
            .with_refs(Refs {
                intent_leaf: stele_audit::leaf::hash_b64(&req.leaf_hash),
                intent_seq: req.seq,
            })
            .with_outcome(Outcome::status(Status::Ok))
            .with_payload(payload("assistant", serde_json::to_vec(&calls).unwrap())),
    )
    .unwrap();
    let intent = a
        .append_blocking(
            Event::new(EventKind::ToolIntent, Actor::system())
                .in_session(ID)
                .with_data(serde_json::json!({"tool": "exec", "call_id": "call-1"})),
        )
        .unwrap()
        .seq;
    if end {
        a.append_blocking(
            Event::new(EventKind::SessionEnd, Actor::system())
                .in_session(ID)
                .with_outcome(Outcome::status(Status::Ok)),
        )
        .unwrap();
    }
    let file = dir.path().join("server-slice.tar");
    session_bundle(&a, server.as_ref(), &file, true);
    a.close().unwrap();
    Source {
        dir,
        key,
        server,
        file,
        intent,
    }
}

fn payload(role: &str, body: Vec<u8>) -> PayloadInput {
    PayloadInput {
        role: role.into(),
        media: "application/json".into(),
        body,
        disclosure: Disclosure::CommitmentOnly,
    }
}

fn call(id: &str) -> Content {
    Content::ToolUse {
        id: id.into(),
        wire_id: None,
        name: "exec".into(),
        input: serde_json::json!({"argv": ["true"]}),
    }
}

fn import(
    src: &Source,
    into: &AuditLog,
    db: &Path,
    exporter: &NoteVerifier,
) -> Result<stele_runtime::session_move_import::Imported, String> {
    import_session(
        into,
        db,
        &ImportRequest {
            file: &src.file,
            trusted: &[src.key.verifier()],
            workspace: Some(src.dir.path().to_path_buf()),
            policy: Some(policy()),
            departure: Departure::WorkerStopped {
                exporter,
                why: "worker w1 stopped reporting",
            },
        },
    )
    .map_err(|e| e.to_string())
}

#[test]
fn a_session_continues_after_its_worker_stopped_and_verifies_across_both_logs() {
    let src = source(false);
    let bdir = src.dir.path().join("b");
    let (b, bkey) = log(&bdir, 42, "b.test.invalid/log");
    let db = bdir.join("audit.db");
    let done = import(&src, &b, &db, &src.server.verifier()).unwrap();
    assert_eq!(done.entries, 4);

    // The continuing start names the server's key and the unknown intent.
    let store = b.store().unwrap();
    let leaves = conversation::session_leaves(&store, ID).unwrap();
    let c = Continues::of(&leaves[0]).unwrap().unwrap();
    let fo = c.failover.clone().unwrap();
    assert_eq!(fo.exporter, src.server.verifier().to_string());
    assert_eq!(
        fo.unknown,
        vec![UnknownIntent {
            seq: src.intent,
            kind: "tool.intent".into()
        }]
    );
    assert_eq!(c.last.seq, src.intent);
    // The model is told the started call's result is unknown and the
    // other's start is unknown — never that it did not run.
    let conv = stele_runtime::session_resume::rebuilt(&b, ID).unwrap();
    let results: Vec<String> = conv
        .messages
        .iter()
        .flat_map(|m| m.content.iter())
        .filter_map(|c| match c {
            Content::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2, "{:?}", conv.messages);
    assert!(results[0].contains("result is unknown") && results[0].contains("NOT re-run"));
    assert!(
        results[1].contains("whether it started is not known"),
        "{}",
        results[1]
    );
    assert!(
        results.iter().all(|r| !r.contains("not run:")),
        "{results:?}"
    );

    b.append_blocking(
        Event::new(EventKind::SessionEnd, Actor::system())
            .in_session(ID)
            .with_outcome(Outcome::status(Status::Ok)),
    )
    .unwrap();
    let out = bdir.join("whole.tar");
    session_bundle(&b, bkey.as_ref(), &out, false);
    let report =
        stele_verify::verify(&Bundle::open(&out).unwrap(), &opts(bkey.verifier(), None)).unwrap();
    assert_eq!(report.earlier.len(), 1);
    let e = &report.earlier[0];
    assert_eq!(e.origin, "a.test.invalid/log");
    assert_eq!(e.entries, 4);
    assert!(
        matches!(&e.arrival, Arrival::Failover { unknown: 1, why } if why.contains("w1")),
        "{:?}",
        e.arrival
    );
    let text = report.to_string();
    assert!(
        text.contains("continued from: a.test.invalid/log after its worker stopped"),
        "{text}"
    );
}

#[test]
fn a_wrong_server_key_or_an_ended_slice_is_refused_at_import() {
    let src = source(false);
    let bdir = src.dir.path().join("b");
    let (b, _) = log(&bdir, 42, "b.test.invalid/log");
    let db = bdir.join("audit.db");
    let other = Ed25519Signer::from_seed("other.test.invalid/log", &[44; 32]).unwrap();
    let e = import(&src, &b, &db, &other.verifier()).unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
    // The same bundle as a moved one: it does not end with a move.
    let e = import_session(
        &b,
        &db,
        &ImportRequest {
            file: &src.file,
            trusted: &[src.key.verifier()],
            workspace: Some(src.dir.path().to_path_buf()),
            policy: Some(policy()),
            departure: Departure::Moved,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("does not verify") || e.contains("did not leave"),
        "{e}"
    );
    assert!(conversation::session_leaves(&b.store().unwrap(), ID)
        .unwrap()
        .is_empty());

    let ended = source(true);
    let cdir = ended.dir.path().join("c");
    let (c, _) = log(&cdir, 45, "c.test.invalid/log");
    let e = import(&ended, &c, &cdir.join("audit.db"), &ended.server.verifier()).unwrap_err();
    assert!(e.contains("ended in its worker's log"), "{e}");
}

#[test]
fn a_continuing_start_that_misnames_the_unknown_intents_fails_the_link() {
    let src = source(false);
    let bdir = src.dir.path().join("b");
    let (b, bkey) = log(&bdir, 42, "b.test.invalid/log");
    let db = bdir.join("audit.db");
    let done = import(&src, &b, &db, &src.server.verifier()).unwrap();
    let right = {
        let store = b.store().unwrap();
        let leaves = conversation::session_leaves(&store, ID).unwrap();
        Continues::of(&leaves[0]).unwrap().unwrap()
    };
    b.close().unwrap();
    // The same kept file, under a start that says nothing was unfinished
    // (or that the worker's slice was moved, not continued), in a fresh log.
    let mut none = right.clone();
    none.failover.as_mut().unwrap().unknown.clear();
    let mut moved = right.clone();
    moved.failover = None;
    for (c, want) in [
        (none, "unfinished intents"),
        (moved, "signature check failed"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let (t, tkey) = log(d.path(), 46, "t.test.invalid/log");
        let kept =
            stele_audit::export::earlier::imported_bundle_path(&d.path().join("audit.db"), ID);
        std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
        std::fs::copy(&done.kept, &kept).unwrap();
        t.append_blocking(
            Event::new(EventKind::SessionStart, Actor::system())
                .in_session(ID)
                .with_data(serde_json::json!({"workspace": "/w", "continues": c})),
        )
        .unwrap();
        t.append_blocking(
            Event::new(EventKind::SessionEnd, Actor::system())
                .in_session(ID)
                .with_outcome(Outcome::status(Status::Ok)),
        )
        .unwrap();
        let out = d.path().join("t.tar");
        session_bundle(&t, tkey.as_ref(), &out, false);
        let f = stele_verify::verify(&Bundle::open(&out).unwrap(), &opts(tkey.verifier(), None))
            .unwrap_err();
        assert!(
            f.reason.contains(want) || f.file.contains("earlier"),
            "{want}: {} {}",
            f.file,
            f.reason
        );
        assert!(f.reason.contains(want), "{want}: {}", f.reason);
    }
    let _ = bkey;
}
