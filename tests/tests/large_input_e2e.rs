#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A large tool input is stored once: the model writes an 8 MB file; the value is committed
//! once (with the reply that brought it) and every other entry that carries it — the raw
//! response, the model's answer, the call's arguments, the next conversation and request,
//! and a resumed session's — refers to that commitment. The log verifies; an export holds
//! the value once; a resumed session sends the exact value again.

mod e2e_common;

use std::path::Path;
use std::time::Duration;

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available};

const LIMIT: Duration = Duration::from_secs(180);
const MB: usize = 1 << 20;

/// Payload rows and the bytes of their bodies.
fn stored(db: &Path) -> (i64, i64) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM payloads",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// The tool input the request's assistant message carries (either wire).
fn sent_input(body: &Value) -> Option<Value> {
    body["messages"].as_array()?.iter().find_map(|m| {
        let anthropic = m["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .map(|b| b["input"].clone());
        let openai = m["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok());
        anthropic.or(openai)
    })
}

fn a_large_input_is_stored_once(wire: Wire) {
    let dir = tempfile::tempdir().unwrap();
    let ws = e2e_common::workspace(dir.path());
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), wire, "");
    let mock = MockModel::start().unwrap();
    let line = "north,2026-03-01,Acme \"café\",12.50\n";
    // STELE_LARGE_INPUT_MB=50 reproduces the figure (8 by default, to stay quick).
    let mb: usize = std::env::var("STELE_LARGE_INPUT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let content = line.repeat(mb * MB / line.len());
    let input = json!({"path": "reports/big.csv", "content": content});
    let size = input.to_string().len();
    mock.push(
        Turn::new()
            .text("Writing the table.")
            .tool_use("w1", "file_write", input.clone())
            .into(),
    );
    // The next reply fails for good: the session pauses, to be resumed.
    mock.push(Reply::Malformed);
    let c = run_command(&s, &ws, &policy, wire, &mock, &[], "Write the big table");
    let o = run_bounded(c, LIMIT);
    assert_eq!(
        o.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("reports/big.csv")).unwrap(),
        content
    );
    let db = s.state.join("audit.db");
    let (rows, bytes) = stored(&db);
    eprintln!("{wire:?}: tool input of {size} bytes; {rows} payloads of {bytes} bytes in all");
    assert!(
        (bytes as usize) < size + size / 10,
        "{bytes} bytes of payloads for an input of {size}: stored more than once"
    );
    // The second request carried the whole input (it is the conversation), exactly.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sent_input(&reqs[1].json()), Some(input.clone()));

    // Resume: the conversation is rebuilt from the spliced bodies and sent again.
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "written"}))
            .into(),
    );
    let leaves = leaves_json(&s, &db).unwrap();
    let id = last_session(&leaves);
    let mut r = std::process::Command::new(stele_tests::stele_bin());
    r.args(["session", "resume", &id])
        .env("STELE_STATE_DIR", &s.state)
        .env("USER", "alice")
        .envs(e2e_common::env(wire, &mock));
    let o = run_bounded(r, LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reqs = mock.requests();
    assert_eq!(
        reqs[2].body, reqs[1].body,
        "the resumed request is the same request, byte for byte"
    );
    let (_, after) = stored(&db);
    assert!(
        ((after - bytes) as usize) < size / 10,
        "the resumed session stored the input again: {bytes} -> {after}"
    );

    // Which entries list it: the reply's, the call's, each request's.
    let leaves = leaves_json(&s, &db).unwrap();
    intents_closed_once(&leaves, &id).unwrap();
    let resp = of_session(&leaves, &id)
        .into_iter()
        .find(|l| l["kind"] == "model.response")
        .unwrap();
    let blob = resp["payload"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "tool_input")
        .unwrap_or_else(|| panic!("no tool_input payload: {resp}"));
    let commit = blob["commit"].as_str().unwrap();
    let listing: Vec<(&str, &str)> = of_session(&leaves, &id)
        .into_iter()
        .flat_map(|l| {
            l["payload"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["commit"] == commit)
                .map(move |p| (l["kind"].as_str().unwrap(), p["role"].as_str().unwrap()))
        })
        .collect();
    assert!(listing.contains(&("tool.intent", "args")), "{listing:?}");
    assert!(
        listing
            .iter()
            .filter(|(k, _)| *k == "model.request")
            .count()
            >= 2,
        "{listing:?}"
    );
    assert!(resp["data"]["elided"][0]["block"] == 1, "{}", resp["data"]);
    let spliced = |l: &Value| {
        l["payload"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["media"] == "application/vnd.stele.spliced+json")
    };
    assert!(spliced(resp), "{resp}");

    // The log verifies; an export of the session holds the value once.
    let v = s
        .run(&["audit", "verify", "--db", db.to_str().unwrap()])
        .unwrap();
    assert!(
        v.status.success(),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let out = dir.path().join("export");
    let e = s
        .run(&[
            "audit",
            "export",
            "--db",
            db.to_str().unwrap(),
            "--session",
            &id,
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let big: Vec<u64> = std::fs::read_dir(out.join("payloads"))
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .filter(|n| *n as usize > MB)
        .collect();
    assert_eq!(big.len(), 1, "{big:?}");
}

#[test]
fn anthropic_a_large_input_is_stored_once() {
    if sandbox_available("anthropic_a_large_input_is_stored_once") {
        a_large_input_is_stored_once(Wire::Anthropic);
    }
}

#[test]
fn openai_a_large_input_is_stored_once() {
    if sandbox_available("openai_a_large_input_is_stored_once") {
        a_large_input_is_stored_once(Wire::OpenAi);
    }
}
