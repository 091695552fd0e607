//! What the benchmark appends: the shape of a real session's entries —
//! sessions, intents and the results that close them, decisions, payloads —
//! so that whatever grows with the log (sessions, payload commitments,
//! open intents, the tree) is exercised, not only the entries table.
//!
//! Each writer runs one session: `session.start`, then `file.open` intents
//! each closed by its `file.close` result; one intent in eight carries a
//! 256-byte payload (a salted commitment in the payload table), one result
//! in four the content hash a write leaves.

use crate::event::{
    Actor, DecisionRecord, Disclosure, Effect, Event, EventKind, Outcome, PayloadInput, Refs,
    Status, Target,
};
use crate::leaf::hash_b64;
use crate::merkle::Hash;

/// Version of this shape, part of the cached log's name: a changed shape
/// never reuses a log built with another.
pub(crate) const SHAPE: &str = "v1";

fn actor(w: usize) -> Actor {
    Actor {
        host: "bench-host".into(),
        principal: format!("user{w}@example.org"),
        runtime: "stele/bench".into(),
        teams: vec!["finance".into()],
    }
}

/// The session id of writer `w` in run `run`.
pub(crate) fn session_id(run: &str, w: usize) -> String {
    format!("bench-{run}-{w:04}")
}

/// `session.start` of writer `w`.
pub(crate) fn start(run: &str, w: usize) -> Event {
    Event::new(EventKind::SessionStart, actor(w))
        .in_session(session_id(run, w))
        .with_data(serde_json::json!({ "bench": true }))
}

/// `session.end` of writer `w`.
pub(crate) fn end(run: &str, w: usize) -> Event {
    Event::new(EventKind::SessionEnd, actor(w))
        .in_session(session_id(run, w))
        .with_outcome(Outcome::status(Status::Ok))
}

/// The `i`-th intent of writer `w`.
pub(crate) fn intent(run: &str, w: usize, i: u64) -> Event {
    let mut ev = Event::new(EventKind::FileOpen, actor(w))
        .in_session(session_id(run, w))
        .with_target(Target {
            path: Some(format!("receipts/2026/{w:03}/{i:08}.pdf")),
            tool: Some("fs.open".into()),
            ..Target::default()
        })
        .with_decision(DecisionRecord {
            bundle: "sha256:8f14e45fceea167a5a36dedd4bea2543cf8f4b2a7f3c6d1e0b9a8c7d6e5f4a3b"
                .into(),
            effect: Effect::Allow,
            layer: Some("team:finance".into()),
            policies: vec!["finance.read-receipts".into()],
            reason: None,
        })
        .with_data(serde_json::json!({ "op": if i.is_multiple_of(3) { "write" } else { "read" } }));
    if i.is_multiple_of(8) {
        let mut body = format!("{{\"path\":\"receipts/{w}/{i}\",\"pad\":\"").into_bytes();
        body.resize(255, b'x');
        body.push(b'}');
        ev = ev.with_payload(PayloadInput {
            role: "args".into(),
            media: "application/json".into(),
            body,
            disclosure: Disclosure::CommitmentOnly,
        });
    }
    ev
}

/// The result closing intent `(seq, hash)`, the `i`-th of writer `w`.
pub(crate) fn result(run: &str, w: usize, i: u64, seq: u64, hash: &Hash) -> Event {
    let mut o = Outcome::status(Status::Ok);
    o.bytes_in = Some(4096 + i % 1000);
    o.bytes_out = Some(0);
    let mut ev = Event::new(EventKind::FileClose, actor(w))
        .in_session(session_id(run, w))
        .with_refs(Refs {
            intent_leaf: hash_b64(hash),
            intent_seq: seq,
        })
        .with_outcome(o);
    if i.is_multiple_of(4) {
        let digest = hex::encode(crate::payload::commitment(&i.to_be_bytes(), b"bench"));
        ev = ev.with_data(serde_json::json!({ "sha256_after_write": digest }));
    }
    ev
}
