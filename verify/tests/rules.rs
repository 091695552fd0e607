#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every rule of docs/audit-format.md, broken once in an otherwise valid
//! log that is *correctly signed* (chain, tree and checkpoint recomputed
//! with the log key, as the key holder or a buggy writer would produce it),
//! is rejected by both verifiers: `stele audit verify` (the database) and
//! `stele-verify` (an export bundle of the same leaves). The unchanged log
//! passes both, so each rejection is the rule's.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use stele_attest::intoto::{Statement, Subject};
use stele_attest::{Checkpoint, Ed25519Signer, Signer as _};
use stele_audit::export::layout::*;
use stele_audit::export::tiles::TileBuilder;
use stele_audit::merkle::{leaf_hash, Frontier, Hash};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, Outcome, PayloadInput, Refs, Status,
    Target,
};
use stele_verify::{verify, Bundle, Options};

const ORIGIN: &str = "audit.test.invalid/log";

#[derive(Clone)]
struct PayloadRow {
    cmt: Vec<u8>,
    seq: i64,
    media: String,
    size: i64,
    salt: Option<Vec<u8>>,
    body: Option<Vec<u8>>,
    redacted_seq: Option<i64>,
}

struct Base {
    leaves: Vec<Value>,
    payloads: Vec<PayloadRow>,
    key: Arc<Ed25519Signer>,
    dir: tempfile::TempDir,
}

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec!["finance".into()],
    }
}

fn payload(body: &str, d: Disclosure) -> PayloadInput {
    PayloadInput {
        role: "args".into(),
        media: "text/plain".into(),
        body: body.as_bytes().to_vec(),
        disclosure: d,
    }
}

/// A real log: a session with an intent and its result carrying payloads,
/// a redaction, a second writer start.
fn base() -> Base {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[7; 32]).unwrap());
    let db = dir.path().join("audit.db");
    let opts = LogOptions {
        heartbeat: None,
        ..LogOptions::default()
    };
    let log = AuditLog::create(&db, key.clone(), opts.clone()).unwrap();
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session("s"))
        .unwrap();
    let intent = log
        .append_blocking(
            Event::new(EventKind::ToolIntent, actor())
                .in_session("s")
                .with_target(Target {
                    tool: Some("file_read".into()),
                    path: Some("a.txt".into()),
                    port: Some(443),
                    ..Target::default()
                })
                .with_payload(payload("{\"path\":\"a.txt\"}", Disclosure::CommitmentOnly)),
        )
        .unwrap();
    let mut o = Outcome::status(Status::Ok);
    o.bytes_in = Some(12);
    o.code = Some(-1);
    log.append_blocking(
        Event::new(EventKind::ToolResult, actor())
            .in_session("s")
            .with_refs(Refs {
                intent_leaf: stele_audit::leaf::hash_b64(&intent.leaf_hash),
                intent_seq: intent.seq,
            })
            .with_outcome(o)
            .with_payload(payload("contents", Disclosure::WithDigest)),
    )
    .unwrap();
    log.append_blocking(
        Event::new(EventKind::PolicyDecision, actor())
            .in_session("s")
            .with_decision(stele_audit::DecisionRecord {
                bundle: "sha256:00".into(),
                effect: stele_audit::Effect::Deny,
                layer: None,
                policies: vec![],
                reason: None,
            })
            .with_payload(payload("secret", Disclosure::CommitmentOnly)),
    )
    .unwrap();
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session("s"))
        .unwrap();
    log.close().unwrap();
    let log = AuditLog::open(&db, key.clone(), opts).unwrap();
    let store = log.store().unwrap();
    let secret = store
        .payloads()
        .unwrap()
        .into_iter()
        .find(|p| p.body.as_deref() == Some(b"secret"))
        .unwrap();
    log.redact_blocking(
        vec![stele_audit::payload::commit_text(
            &secret.cmt.try_into().unwrap(),
        )],
        "erasure request".into(),
        actor(),
    )
    .unwrap();
    // Retention: a hold on another session, the expiry of the tool
    // result's body, and the hold's release by two principals.
    let contents = store
        .payloads()
        .unwrap()
        .into_iter()
        .find(|p| p.body.as_deref() == Some(b"contents"))
        .unwrap();
    let hold = log
        .place_hold_blocking(
            stele_audit::holds::HoldScope::Session("other".into()),
            "matter 7".into(),
            None,
            actor(),
        )
        .unwrap();
    log.expire_blocking(stele_audit::ExpiryRequest {
        commits: vec![stele_audit::payload::commit_text(
            &contents.cmt.try_into().unwrap(),
        )],
        class: "pci".into(),
        retention: "12mo".into(),
        before: "2999-01-01T00:00:00.000000Z".into(),
        config: format!("sha256:{}", "ab".repeat(32)),
        actor: actor(),
    })
    .unwrap();
    for who in ["alice", "bob"] {
        let mut a = actor();
        a.principal = who.into();
        log.release_hold_blocking(hold.seq, "settled".into(), None, a)
            .unwrap();
    }
    log.close().unwrap();
    let store = stele_audit::Store::open(&db).unwrap();
    let mut leaves = Vec::new();
    store
        .for_each_entry(0, u64::MAX, |_, b, _| {
            leaves.push(serde_json::from_slice(b).unwrap());
            Ok(())
        })
        .unwrap();
    let payloads = store
        .payloads()
        .unwrap()
        .into_iter()
        .map(|p| PayloadRow {
            cmt: p.cmt,
            seq: p.seq as i64,
            media: p.media,
            size: p.size as i64,
            salt: p.salt,
            body: p.body,
            redacted_seq: p.redacted_seq.map(|s| s as i64),
        })
        .collect();
    Base {
        leaves,
        payloads,
        key,
        dir,
    }
}

fn b64(h: &Hash) -> Value {
    Value::String(B64.encode(h))
}

/// Encode every leaf canonically, recomputing the chain links that follow
/// from the (changed) leaves before: `prev`, `session.prev`,
/// `refs.intent_leaf`. `bytes` changes the encoded bytes of one leaf.
/// A change to the bytes of the leaf at an index, after it is encoded.
type ByteEdit = Option<(usize, fn(&mut Vec<u8>))>;

fn rechain(vals: &mut [Value], bytes: ByteEdit) -> Vec<Vec<u8>> {
    let mut prev: Option<Hash> = None;
    let mut sessions: HashMap<String, Hash> = HashMap::new();
    let mut by_seq: HashMap<u64, Hash> = HashMap::new();
    let mut out = Vec::new();
    for (i, v) in vals.iter_mut().enumerate() {
        if let Some(p) = prev {
            v["prev"] = b64(&p);
        }
        let sid = v["session"]["id"].as_str().map(str::to_string);
        if let (Some(id), Some(n)) = (&sid, v["session"]["n"].as_u64()) {
            if n > 0 {
                if let Some(h) = sessions.get(id) {
                    v["session"]["prev"] = b64(h);
                }
            }
        }
        if let Some(s) = v["refs"]["intent_seq"].as_u64() {
            if let Some(h) = by_seq.get(&s) {
                v["refs"]["intent_leaf"] = b64(h);
            }
        }
        let mut b = serde_jcs::to_vec(v).unwrap();
        if let Some((at, f)) = bytes {
            if at == i {
                f(&mut b);
            }
        }
        let h = leaf_hash(&b);
        prev = Some(h);
        if let Some(id) = sid {
            sessions.insert(id, h);
        }
        by_seq.insert(i as u64, h);
        out.push(b);
    }
    out
}

type NoteHook = fn(&Checkpoint, &Ed25519Signer) -> String;

fn plain_note(cp: &Checkpoint, key: &Ed25519Signer) -> String {
    cp.sign(key).unwrap().to_text()
}

fn tree(leaves: &[Vec<u8>]) -> (Frontier, Vec<stele_audit::merkle::CompletedNode>) {
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    for l in leaves {
        f.push(leaf_hash(l), |n| nodes.push(n));
    }
    (f, nodes)
}

/// The database `stele audit verify` reads.
fn write_db(path: &Path, leaves: &[Vec<u8>], b: &Base, note: NoteHook) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(stele_audit::schema::SCHEMA).unwrap();
    for (k, v) in [
        ("schema", stele_audit::schema::SCHEMA_VERSION.to_string()),
        ("origin", ORIGIN.to_string()),
        ("vkey", b.key.verifier().to_string()),
    ] {
        c.execute("INSERT INTO meta(k, v) VALUES (?1, ?2)", [k, &v])
            .unwrap();
    }
    for (i, l) in leaves.iter().enumerate() {
        c.execute(
            "INSERT INTO entries(seq, leaf, leaf_hash) VALUES (?1, ?2, ?3)",
            rusqlite::params![i as i64, l, &leaf_hash(l)[..]],
        )
        .unwrap();
    }
    for p in &b.payloads {
        c.execute(
            "INSERT INTO payloads(cmt, seq, media, size, salt, body, redacted_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![p.cmt, p.seq, p.media, p.size, p.salt, p.body, p.redacted_seq],
        )
        .unwrap();
    }
    let (f, _) = tree(leaves);
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: f.size(),
        root: f.root(),
    };
    c.execute(
        "INSERT INTO checkpoints(size, note) VALUES (?1, ?2)",
        rusqlite::params![cp.size as i64, note(&cp, &b.key)],
    )
    .unwrap();
}

/// The export bundle `stele-verify` reads: tiles, checkpoint, payloads,
/// the derived files, a manifest signed with the log key.
fn write_bundle(dir: &Path, leaves: &[Vec<u8>], b: &Base, note: NoteHook) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tiles = TileBuilder::new();
    let mut done = Vec::new();
    let mut f = Frontier::new();
    for l in leaves {
        tiles.push_entry(l, &mut done);
        let h = leaf_hash(l);
        tiles.push_leaf_hash(&h, &mut done);
        let mut nodes = Vec::new();
        f.push(h, |n| nodes.push(n));
        for n in &nodes {
            tiles.push_completed(n, &mut done);
        }
    }
    tiles.finish(&mut done);
    files.extend(done);
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: f.size(),
        root: f.root(),
    };
    files.insert(CHECKPOINT.into(), note(&cp, &b.key).into_bytes());
    for p in b.payloads.iter().filter(|p| p.body.is_some()) {
        let mut v = p.salt.clone().unwrap();
        v.extend(p.body.clone().unwrap());
        files.insert(format!("{PAYLOADS_DIR}{}", hex::encode(&p.cmt)), v);
    }
    files.insert(VERIFY_MD.into(), b"how to verify".to_vec());
    // The readable views as the exporter makes them (stele-verify recomputes
    // and compares both): from every leaf that parses (a broken one is
    // rejected by its rule first).
    let mut summary = stele_audit::export::summary::SummaryBuilder::default();
    let mut ocsf = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in leaves {
        if let Ok(leaf) = serde_json::from_slice::<stele_audit::leaf::Leaf>(l) {
            summary.add(&leaf);
            let event = stele_audit::export::ocsf::event(&leaf, &leaf_hash(l), ORIGIN);
            serde_json::to_writer(&mut ocsf, &event).unwrap();
            std::io::Write::write_all(&mut ocsf, b"\n").unwrap();
        }
    }
    files.insert(
        SUMMARY.into(),
        summary
            .render(ORIGIN, f.size(), &selection_text(&Selection::All))
            .into_bytes(),
    );
    files.insert(OCSF.into(), ocsf.finish().unwrap());
    let predicate = ExportPredicate {
        origin: ORIGIN.into(),
        log_key: b.key.verifier().to_string(),
        keys: Vec::new(),
        revoked: Vec::new(),
        tree_size: f.size(),
        root: B64.encode(f.root()),
        range: Selection::All,
        sessions: vec![],
        selected: leaves.len() as u64,
        time_span: None,
        exporter: Exporter {
            principal: "alice".into(),
            host: "h".into(),
            runtime: "stele/test".into(),
            entry: 0,
        },
        policies: vec![],
        payloads_included: true,
        checkpoints: vec![],
        layout: Default::default(),
        ocsf_mapping: stele_audit::export::ocsf::OcsfMapping::CURRENT,
        start: None,
    };
    let subjects = files
        .iter()
        .map(|(n, v)| Subject::sha256(n.clone(), &sha256(v)))
        .collect();
    let env = Statement::new(
        subjects,
        PREDICATE_TYPE,
        serde_json::to_value(predicate).unwrap(),
    )
    .sign(b.key.as_ref())
    .unwrap();
    files.insert(
        MANIFEST.into(),
        (env.to_json().unwrap() + "\n").into_bytes(),
    );
    for (n, v) in files {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }
}

fn opts(b: &Base) -> Options {
    Options {
        log_key: b.key.verifier(),
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    }
}

/// Both verifiers' answers on the log made of `leaves`.
fn check_both(
    b: &Base,
    name: &str,
    leaves: &[Vec<u8>],
    note: NoteHook,
) -> (Result<(), String>, Result<(), String>) {
    let dir: PathBuf = b.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("audit.db");
    write_db(&db, leaves, b, note);
    let bundle = dir.join("bundle");
    write_bundle(&bundle, leaves, b, note);
    let by_db = stele_audit::verify::verify_db(&db, &b.key.verifier(), None)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let by_bundle = Bundle::open(&bundle)
        .and_then(|bd| verify(&bd, &opts(b)))
        .map(|_| ())
        .map_err(|e| e.to_string());
    (by_db, by_bundle)
}

fn index_of(b: &Base, kind: &str) -> usize {
    b.leaves
        .iter()
        .position(|l| l["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} leaf in the base log"))
}

/// One broken rule: which leaf, how, and a word both rejections must say.
struct Case {
    rule: &'static str,
    kind: &'static str,
    change: fn(&mut Value),
    expect: &'static str,
}

const CASES: &[Case] = &[
    Case {
        rule: "v is 1",
        kind: "session.start",
        change: |v| v["v"] = json!(2),
        expect: "version",
    },
    Case {
        rule: "ts has microseconds",
        kind: "session.start",
        change: |v| v["ts"] = json!("2026-01-01T00:00:00Z"),
        expect: "ts",
    },
    Case {
        rule: "ts is a date that exists",
        kind: "session.start",
        change: |v| v["ts"] = json!("2026-02-30T00:00:00.000000Z"),
        expect: "ts",
    },
    Case {
        rule: "ts is a time of day",
        kind: "session.start",
        change: |v| v["ts"] = json!("2026-01-01T24:00:00.000000Z"),
        expect: "ts",
    },
    Case {
        rule: "boot is 16 lowercase hex",
        kind: "session.start",
        change: |v| v["boot"] = json!(v["boot"].as_str().unwrap().to_uppercase()),
        expect: "boot",
    },
    Case {
        rule: "no null for an absent field",
        kind: "session.start",
        change: |v| v["outcome"] = Value::Null,
        expect: "spelling",
    },
    Case {
        rule: "teams absent when empty",
        kind: "session.start",
        change: |v| v["actor"]["teams"] = json!([]),
        expect: "spelling",
    },
    Case {
        rule: "payload absent when empty",
        kind: "session.start",
        change: |v| v["payload"] = json!([]),
        expect: "spelling",
    },
    Case {
        rule: "decision.policies present",
        kind: "policy.decision",
        change: |v| {
            v["decision"].as_object_mut().unwrap().remove("policies");
        },
        expect: "spelling",
    },
    Case {
        rule: "data is an object",
        kind: "session.start",
        change: |v| v["data"] = json!("text"),
        expect: "object",
    },
    Case {
        rule: "integers below 2^53",
        kind: "tool.result",
        change: |v| v["outcome"]["bytes_in"] = json!(9_007_199_254_740_992u64),
        expect: "2^53",
    },
    Case {
        rule: "negative integers above -2^53",
        kind: "tool.result",
        change: |v| v["outcome"]["code"] = json!(-9_007_199_254_740_992i64),
        expect: "2^53",
    },
    Case {
        rule: "target.port is 0..65535",
        kind: "tool.intent",
        change: |v| v["target"]["port"] = json!(70000),
        expect: "leaf",
    },
    Case {
        rule: "payload sha256 is lowercase hex",
        kind: "tool.result",
        change: |v| {
            let h = v["payload"][0]["sha256"].as_str().unwrap().to_uppercase();
            v["payload"][0]["sha256"] = json!(h)
        },
        expect: "sha256",
    },
    Case {
        rule: "a commitment is sha256s:<base64>",
        kind: "tool.intent",
        change: |v| {
            let c = v["payload"][0]["commit"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256s:")
                .to_string();
            let h = B64.decode(c).unwrap();
            v["payload"][0]["commit"] = json!(hex::encode(h))
        },
        expect: "commitment",
    },
    Case {
        rule: "refs only on results",
        kind: "policy.decision",
        change: |v| v["refs"] = json!({"intent_leaf": B64.encode([0u8; 32]), "intent_seq": 0}),
        expect: "refs",
    },
    Case {
        rule: "unknown fields",
        kind: "session.start",
        change: |v| v["extension"] = json!(1),
        expect: "extension",
    },
    Case {
        rule: "unknown kinds",
        kind: "policy.decision",
        change: |v| v["kind"] = json!("file.delete"),
        expect: "file.delete",
    },
    Case {
        rule: "genesis names the log's key",
        kind: "log.genesis",
        change: |v| v["data"]["vkey"] = json!("audit.test.invalid/log+00000000+AQ=="),
        expect: "vkey",
    },
    Case {
        rule: "genesis data is closed",
        kind: "log.genesis",
        change: |v| v["data"]["more"] = json!(1),
        expect: "more",
    },
    Case {
        rule: "genesis nonce is 32 hex",
        kind: "log.genesis",
        change: |v| v["data"]["nonce"] = json!("00"),
        expect: "nonce",
    },
    Case {
        rule: "log.open says the previous size",
        kind: "log.open",
        change: |v| {
            v["data"].as_object_mut().unwrap().remove("previous_size");
        },
        expect: "previous_size",
    },
    Case {
        rule: "redaction needs a reason",
        kind: "redaction",
        change: |v| v["data"]["reason"] = json!(" "),
        expect: "reason",
    },
    Case {
        rule: "redaction names commitments made before",
        kind: "redaction",
        change: |v| v["data"]["commits"] = json!([format!("sha256s:{}", B64.encode([9u8; 32]))]),
        expect: "committed",
    },
    Case {
        rule: "an expiry names only payloads made before its cut-off",
        kind: "payload.expiry",
        change: |v| v["data"]["before"] = json!("2000-01-01T00:00:00.000000Z"),
        expect: "cut-off",
    },
    Case {
        rule: "no erasure of a payload a hold in force covers",
        kind: "hold.place",
        change: |v| v["data"]["session"] = json!("s"),
        expect: "legal hold",
    },
    Case {
        rule: "a hold names exactly one scope",
        kind: "hold.place",
        change: |v| v["data"]["principal"] = json!("carol"),
        expect: "exactly one scope",
    },
    Case {
        rule: "a hold's release needs two different principals",
        kind: "hold.release",
        change: |v| v["actor"]["principal"] = json!("bob"),
        expect: "dual control",
    },
    Case {
        rule: "a release is approval 1 or 2",
        kind: "hold.release",
        change: |v| v["data"]["approval"] = json!(3),
        expect: "approval",
    },
    Case {
        rule: "expiry data is closed",
        kind: "payload.expiry",
        change: |v| v["data"]["note"] = json!("x"),
        expect: "note",
    },
    Case {
        rule: "an expiry states its configuration digest",
        kind: "payload.expiry",
        change: |v| v["data"]["config"] = json!("sha1:00"),
        expect: "config",
    },
    Case {
        rule: "the clock of log.genesis is a clock state",
        kind: "log.genesis",
        change: |v| v["data"]["clock"]["synced"] = json!("yes"),
        expect: "synced",
    },
    Case {
        rule: "a clock state is closed",
        kind: "log.genesis",
        change: |v| v["data"]["clock"]["ntp_server"] = json!("pool"),
        expect: "ntp_server",
    },
    Case {
        rule: "the clock of session.start is a clock state",
        kind: "session.start",
        change: |v| {
            v["data"]["clock"].as_object_mut().unwrap().remove("source");
        },
        expect: "source",
    },
    Case {
        rule: "a clock step goes back or forward",
        kind: "policy.decision",
        change: |v| {
            v["kind"] = json!("clock.step");
            let t = v["ts"].clone();
            v["data"] = json!({"across": "writer", "before": t, "by_us": 1, "carried": t,
                "direction": "sideways", "reading": t});
        },
        expect: "direction",
    },
    Case {
        rule: "a clock step's readings are times",
        kind: "policy.decision",
        change: |v| {
            v["kind"] = json!("clock.step");
            let t = v["ts"].clone();
            v["data"] = json!({"across": "writer", "before": "yesterday", "by_us": 1,
                "carried": t, "direction": "back", "reading": t});
        },
        expect: "before",
    },
    Case {
        rule: "a clock state says why it was written",
        kind: "policy.decision",
        change: |v| {
            v["kind"] = json!("clock.state");
            v["data"] = json!({"esterror_us": 0, "maxerror_us": 0, "reason": "whenever",
                "source": "tsc", "state": "ok", "status": 0, "synced": true});
        },
        expect: "reason",
    },
    Case {
        rule: "time does not go backwards in a boot",
        kind: "session.end",
        change: |v| v["ts"] = json!("2000-01-01T00:00:00.000000Z"),
        expect: "backwards",
    },
];

#[test]
fn every_rule_broken_once_is_rejected_by_both_verifiers() {
    let b = base();
    let mut all = b.leaves.clone();
    let (db, bundle) = check_both(&b, "control", &rechain(&mut all, None), plain_note);
    assert_eq!(db, Ok(()), "the unchanged log must pass stele audit verify");
    assert_eq!(bundle, Ok(()), "the unchanged log must pass stele-verify");
    let mut failures = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let mut leaves = b.leaves.clone();
        (c.change)(&mut leaves[index_of(&b, c.kind)]);
        let bytes = rechain(&mut leaves, None);
        let (db, bundle) = check_both(&b, &format!("case{i}"), &bytes, plain_note);
        for (who, r) in [("stele audit verify", db), ("stele-verify", bundle)] {
            match r {
                Ok(()) => failures.push(format!("{}: {who} accepted it", c.rule)),
                Err(e) if !e.to_lowercase().contains(&c.expect.to_lowercase()) => failures.push(
                    format!("{}: {who} rejected it for another reason: {e}", c.rule),
                ),
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn duplicate_commitments_and_non_canonical_bytes_are_rejected_by_both() {
    let b = base();
    // The same commitment twice in one leaf.
    let mut leaves = b.leaves.clone();
    let i = index_of(&b, "tool.intent");
    let copied = leaves[i]["payload"][0].clone();
    leaves[i]["payload"] = json!([copied.clone(), copied.clone()]);
    let (db, bundle) = check_both(&b, "dup", &rechain(&mut leaves, None), plain_note);
    for r in [db, bundle] {
        let e = r.unwrap_err();
        assert!(e.contains("listed twice in entry"), "{e}");
    }
    // A later leaf listing a commitment an earlier one made refers to the
    // same stored body (shared payloads): accepted by both.
    let mut leaves = b.leaves.clone();
    leaves[index_of(&b, "session.end")]["payload"] = json!([copied]);
    let (db, bundle) = check_both(&b, "shared", &rechain(&mut leaves, None), plain_note);
    assert_eq!((db, bundle), (Ok(()), Ok(())));
    // Valid JSON of the schema, not canonical (a space after a colon).
    let mut leaves = b.leaves.clone();
    let at = index_of(&b, "session.end");
    let bytes = rechain(
        &mut leaves,
        Some((at, |b: &mut Vec<u8>| {
            let p = b.windows(2).position(|w| w == b":\"").unwrap();
            b.insert(p + 1, b' ');
        })),
    );
    let (db, bundle) = check_both(&b, "ws", &bytes, plain_note);
    for r in [db, bundle] {
        let e = r.unwrap_err();
        assert!(e.contains("canonical"), "{e}");
    }
}

fn with_extension(cp: &Checkpoint, key: &Ed25519Signer) -> String {
    let body = format!("{}extension line\n", cp.body());
    stele_attest::SignedNote::sign(&body, key)
        .unwrap()
        .to_text()
}

fn torsion_r(cp: &Checkpoint, key: &Ed25519Signer) -> String {
    let note = cp.sign(key).unwrap().to_text();
    let (body, line) = note.split_once("\n\n").unwrap();
    let (head, sig) = line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = B64.decode(sig).unwrap();
    let r = curve25519_dalek::edwards::CompressedEdwardsY(raw[4..36].try_into().unwrap())
        .decompress()
        .unwrap();
    let t = curve25519_dalek::constants::EIGHT_TORSION[4];
    raw[4..36].copy_from_slice(&(r + t).compress().to_bytes());
    format!("{body}\n\n{head} {}\n", B64.encode(raw))
}

#[test]
fn checkpoints_with_extension_lines_or_non_strict_signatures_are_rejected_by_both() {
    let b = base();
    let mut leaves = b.leaves.clone();
    let bytes = rechain(&mut leaves, None);
    for (name, hook, word) in [
        ("ext", with_extension as NoteHook, "extension"),
        ("torsion", torsion_r as NoteHook, "signature"),
    ] {
        let (db, bundle) = check_both(&b, name, &bytes, hook);
        for (who, r) in [("stele audit verify", db), ("stele-verify", bundle)] {
            let e = r.expect_err(who);
            assert!(e.to_lowercase().contains(word), "{who}: {e}");
        }
    }
}

#[test]
fn the_derived_files_are_mandatory_in_a_bundle() {
    let b = base();
    let mut leaves = b.leaves.clone();
    let bytes = rechain(&mut leaves, None);
    for missing in [SUMMARY, VERIFY_MD, OCSF] {
        let dir = b
            .dir
            .path()
            .join(format!("m-{}", missing.replace('/', "_")));
        write_bundle(&dir, &bytes, &b, plain_note);
        // Removed and re-signed without it: still refused.
        std::fs::remove_file(dir.join(missing)).unwrap();
        resign(&dir, &b.key);
        let e = Bundle::open(&dir)
            .and_then(|bd| verify(&bd, &opts(&b)))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains(missing) && e.contains("required"), "{e}");
    }
}

fn resign(dir: &Path, key: &Ed25519Signer) {
    let env = stele_attest::dsse::Envelope::from_json(&std::fs::read(dir.join(MANIFEST)).unwrap())
        .unwrap();
    let st = Statement::open(&env, &key.verifier(), PREDICATE_TYPE).unwrap();
    let subjects = stele_audit::export::list_files(dir)
        .unwrap()
        .into_iter()
        .filter(|f| f != MANIFEST)
        .map(|f| Subject::sha256(f.clone(), &sha256(&std::fs::read(dir.join(&f)).unwrap())))
        .collect();
    let env = Statement::new(subjects, PREDICATE_TYPE, st.predicate)
        .sign(key)
        .unwrap();
    std::fs::write(dir.join(MANIFEST), env.to_json().unwrap() + "\n").unwrap();
}
