#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The web app's figures (docs/web.md "Figures", issue 19), in Debian's
//! chromium driven by Playwright (tests/web/web_bench.py) against the real
//! `stele serve`:
//!
//! - the live session page of a 2,000-step session (first paint, first
//!   contentful paint, first step shown, every step shown);
//! - the reviewer's timeline of a 100,000-entry session (first page, the
//!   last page in one click, the page before it, scrolling a page) and the
//!   reviewer's list with that session in it;
//! - the total size of the served assets, raw and gzipped.
//!
//! The 2,000-step session is a real session's step events (a scripted
//! model over the real wire, the process sandbox: one `file_read` step,
//! then the answer) repeated 2,000 times in the server's event store and
//! renumbered; the 100,000-entry session is written to the log with the
//! log's own writer before the server opens it (file opens with their
//! decisions — one in 100 refused — each closed by its result). Figures,
//! not assertions.
//!
//! cargo build -p stele-cli --bin stele && cargo run -p stele-tests --example web_bench [STEPS] [ENTRIES]

#[path = "../tests/e2e_common/mod.rs"]
mod e2e_common;
#[path = "../tests/server_support/mod.rs"]
mod server_support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use server_support::{runtime, Server};
use stele_audit::event::{
    Actor, DecisionRecord, Effect, Event, EventKind, Outcome, Refs, Status, Target,
};
use stele_audit::{AuditLog, LogOptions};
use stele_tests::mock_model::Turn;

const PASSWORD: &str = "a long passphrase for the web figures";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One real session: a `file_read` step, then the answer. Its id.
fn real_session(srv: &Server) -> String {
    srv.mock.push(
        Turn::new()
            .text("Reading the receipt.")
            .tool_use("r", "file_read", json!({"path": "receipts/r1.txt"}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let alice = srv.token("alice");
    runtime().block_on(async {
        let r = srv
            .http
            .post(srv.url("/api/v1/sessions"))
            .bearer_auth(&alice)
            .json(&json!({"workspace": "books", "task": "read r1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // The stream ends with the session.
        srv.http
            .get(srv.url(&format!("/api/v1/sessions/{id}/events")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        id
    })
}

/// A copy of session `real` in the server's store whose step is repeated `steps` times.
fn many_steps(db: &std::path::Path, real: &str, id: &str, steps: u64) {
    let c = rusqlite::Connection::open(db).unwrap();
    let events: Vec<Value> = c
        .prepare("SELECT json FROM events WHERE session = ?1 ORDER BY n")
        .unwrap()
        .query_map([real], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
        .collect();
    let steps_at: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "step")
        .map(|(i, _)| i)
        .collect();
    assert!(steps_at.len() >= 2, "{events:?}");
    let (head, step, tail) = (
        &events[..steps_at[0]],
        &events[steps_at[0]..steps_at[1]],
        &events[steps_at[1]..],
    );
    let mut out: Vec<Value> = head.to_vec();
    for k in 1..=steps {
        for e in step {
            let mut e = e.clone();
            if e["event"] == "step" {
                e["n"] = json!(k);
            }
            out.push(e);
        }
    }
    for e in tail {
        let mut e = e.clone();
        if e["event"] == "step" {
            e["n"] = json!(steps + 1);
        }
        out.push(e);
    }
    c.execute(
        "INSERT INTO sessions (id, owner, workspace, state, detail, created, updated) \
         SELECT ?2, owner, workspace, state, detail, created, updated FROM sessions WHERE id = ?1",
        [real, id],
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for (n, e) in out.iter().enumerate() {
        tx.execute(
            "INSERT INTO events (session, n, json) VALUES (?1, ?2, ?3)",
            rusqlite::params![id, n as i64 + 1, e.to_string()],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    println!("session {id}: {} events ({steps} steps)", out.len());
}

/// A session of `entries` entries written to the log, and its row in the store.
fn big_session(srv: &Server, real: &str, id: &str, entries: u64) {
    let key = srv.s.state.join("keys/log.key");
    let signer = stele_runtime::cli::state::file_key(&key).unwrap();
    let log = AuditLog::open(&srv.s.state.join("audit.db"), signer, LogOptions::default()).unwrap();
    let actor = Actor {
        host: "bench-host".into(),
        principal: "alice".into(),
        runtime: "stele/bench".into(),
        teams: vec!["finance".into()],
    };
    let t = Instant::now();
    log.append_blocking(
        Event::new(EventKind::SessionStart, actor.clone())
            .in_session(id)
            .with_data(json!({"bench": true})),
    )
    .unwrap();
    let pairs = entries.saturating_sub(2) / 2;
    for i in 0..pairs {
        let denied = i % 100 == 99;
        let intent = Event::new(EventKind::FileOpen, actor.clone())
            .in_session(id)
            .with_target(Target {
                path: Some(format!("receipts/2026/{i:08}.pdf")),
                tool: Some("file_read".into()),
                ..Target::default()
            })
            .with_decision(DecisionRecord {
                bundle: "sha256:8f14e45fceea167a5a36dedd4bea2543cf8f4b2a7f3c6d1e0b9a8c7d6e5f4a3b"
                    .into(),
                effect: if denied { Effect::Deny } else { Effect::Allow },
                layer: Some("team:finance".into()),
                policies: vec![if denied {
                    "finance.no-payroll"
                } else {
                    "finance.read-receipts"
                }
                .into()],
                reason: None,
            })
            .with_data(json!({"op": "read"}));
        let s = log.append_released_blocking(intent).unwrap();
        let mut o = Outcome::status(if denied { Status::Denied } else { Status::Ok });
        o.bytes_in = Some(4096);
        log.append_released_blocking(
            Event::new(EventKind::FileClose, actor.clone())
                .in_session(id)
                .with_refs(Refs {
                    intent_leaf: stele_audit::leaf::hash_b64(&s.leaf_hash),
                    intent_seq: s.seq,
                })
                .with_outcome(o),
        )
        .unwrap();
    }
    log.append_blocking(
        Event::new(EventKind::SessionEnd, actor)
            .in_session(id)
            .with_outcome(Outcome::status(Status::Ok)),
    )
    .unwrap();
    log.close().unwrap();
    println!(
        "session {id}: {} entries written to the log in {:.1} s",
        pairs * 2 + 2,
        t.elapsed().as_secs_f64()
    );
    let c = rusqlite::Connection::open(srv.store()).unwrap();
    c.execute(
        "INSERT INTO sessions (id, owner, workspace, state, detail, created, updated) \
         SELECT ?2, owner, workspace, state, detail, created, updated FROM sessions WHERE id = ?1",
        [real, id],
    )
    .unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let steps: u64 = args.next().map_or(2000, |a| a.parse().unwrap());
    let entries: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let mut srv = Server::prepare("", "");
    // A reviewer of finance with a password, for the browser.
    let mut c = Command::new(stele_tests::stele_bin())
        .args([
            "user", "add", "rev", "--team", "finance", "--role", "reviewer",
        ])
        .args(["--password-stdin", "--config"])
        .arg(&srv.config)
        .env("STELE_STATE_DIR", &srv.s.state)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
    srv.spawn();
    let real = real_session(&srv);
    srv.stop();
    let (steps_id, big_id) = ("s-bench-steps".to_string(), "s-bench-log".to_string());
    many_steps(&srv.store(), &real, &steps_id, steps);
    big_session(&srv, &real, &big_id, entries);
    srv.spawn();
    let venv = std::env::var_os("STELE_WEB_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/stele-web-venv"));
    let o = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/web/web_bench.py"))
        .env("STELE_WEB_BASE", &srv.base)
        .env("STELE_WEB_PASSWORD", PASSWORD)
        .env("STELE_BENCH_USER", "rev")
        .env("STELE_BENCH_STEPS_SESSION", &steps_id)
        .env("STELE_BENCH_LOG_SESSION", &big_id)
        .env("STELE_WEB_DIR", repo().join("server/web"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "web_bench.py failed:\n{out}\n{}",
        srv.stderr()
    );
    let f: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let s = &f["session_page"];
    let t = &f["timeline"];
    let a = &f["assets"];
    println!(
        "median of {} runs, chromium headless, dev build of stele serve:",
        f["runs"]["session_page"].as_array().unwrap().len()
    );
    println!(
        "session page, {steps} steps: first paint {} ms, first contentful paint {} ms, first step {} ms, all {} steps shown {} ms ({} DOM nodes)",
        s["first_paint_ms"], s["first_contentful_paint_ms"], s["first_step_ms"], s["steps_on_page"], s["all_steps_ms"], s["dom_nodes"]
    );
    println!(
        "timeline, {entries}-entry session: first page {} ms, last page {} ms (one click), previous page {} ms, scroll to the end of a page {} ms ({} rows per page); reviewer's list with it {} ms",
        t["first_page_ms"], t["last_page_ms"], t["previous_page_ms"], t["scroll_to_end_of_page_ms"], t["rows_per_page"], t["review_list_ms"]
    );
    println!("  ({})", f["timeline_state"].as_str().unwrap_or_default());
    // The first list reads the session's 100,000 entries to count them; later ones reuse the counts.
    let lists: Vec<String> = f["runs"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{:.0} ms", r["review_list_ms"].as_f64().unwrap_or_default()))
        .collect();
    println!(
        "reviewer's list, run by run (the first counts the entries): {}",
        lists.join(", ")
    );
    println!(
        "served assets: {} files, {} bytes ({} bytes gzipped)",
        a["files"], a["raw_bytes"], a["gzip_bytes"]
    );
    srv.stop();
}
