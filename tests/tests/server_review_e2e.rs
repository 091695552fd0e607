#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The reviewer's desk over the API (the web pages use these routes): the
//! session list with reviewer filters, a session's timeline paged by entry
//! index both ways, inclusion proofs that the verifier's check accepts and
//! refuses when one byte changes, the time-range export that `stele-verify`
//! checks, and the verification a reviewer of one session may run. Real
//! server, mock model over the real wire, process sandbox.

mod e2e_common;
mod server_support;

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use server_support::{runtime, Server};
use stele_attest::NoteVerifier;
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

const NO_PAYROLL: &str = r#"
@id("test.no-payroll")
forbid (principal, action == Action::"file.read", resource is File)
when { resource.path like "receipts/payroll*" };
"#;

async fn get(srv: &Server, token: &str, path: &str) -> (u16, Value) {
    let r = srv
        .http
        .get(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Start a session as `token`'s user and wait for its end (the stream ends with it).
async fn run_session(srv: &Server, token: &str, task: &str) -> String {
    let r = srv
        .http
        .post(srv.url("/api/v1/sessions"))
        .bearer_auth(token)
        .json(&json!({"workspace": "books", "task": task}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", srv.stderr());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("\"end\""), "{body}");
    id
}

/// A server with a denial rule, an admin (adam), and two ended sessions of
/// alice: one with a denial, one without.
fn desk() -> (Server, String, String) {
    let mut srv = Server::prepare(NO_PAYROLL, "");
    let config = srv.config.to_str().unwrap().to_string();
    let o = srv
        .s
        .run(&[
            "user", "add", "adam", "--team", "finance", "--role", "admin", "--config", &config,
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    srv.spawn();
    std::fs::write(srv.ws.join("receipts/payroll.txt"), "salaries\n").unwrap();
    // Denied: the read of payroll.
    srv.mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "receipts/payroll.txt"}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "refused"}))
            .into(),
    );
    // Clean: a plain answer.
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "hello"}))
            .into(),
    );
    let alice = srv.token("alice");
    let (denied, clean) = runtime().block_on(async {
        let a = run_session(&srv, &alice, "read the payroll").await;
        let b = run_session(&srv, &alice, "say hello").await;
        (a, b)
    });
    (srv, denied, clean)
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn review_the_session_list_filters_by_denials_user_outcome_and_team() {
    if !sandbox_available("review_the_session_list_filters_by_denials_user_outcome_and_team") {
        return;
    }
    let (mut srv, denied, clean) = desk();
    let (rita, carol) = (srv.token("rita"), srv.token("carol"));
    runtime().block_on(async {
        let (s, all) = get(&srv, &rita, "/api/v1/audit/sessions").await;
        assert_eq!(s, 200, "{all}");
        assert_eq!(ids(&all), BTreeSet::from([denied.clone(), clean.clone()]));
        let of = |id: &str| {
            all["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .unwrap()
                .clone()
        };
        assert!(of(&denied)["denials"].as_u64().unwrap() >= 1, "{all}");
        assert_eq!(of(&clean)["denials"], 0, "{all}");
        assert!(of(&clean)["entries"].as_u64().unwrap() >= 3, "{all}");
        for (q, want) in [
            ("denials=yes", vec![&denied]),
            ("denials=no", vec![&clean]),
            ("approvals=yes", vec![]),
            ("approvals=no", vec![&denied, &clean]),
            ("user=alice&denials=yes", vec![&denied]),
            ("user=bob", vec![]),
            ("outcome=ended", vec![&denied, &clean]),
            ("outcome=failed", vec![]),
            ("since=2000-01-01&until=2999-01-01", vec![&denied, &clean]),
            ("until=2000-01-01", vec![]),
        ] {
            let (s, v) = get(&srv, &rita, &format!("/api/v1/audit/sessions?{q}")).await;
            assert_eq!(s, 200, "{q}: {v}");
            let want: BTreeSet<String> = want.into_iter().cloned().collect();
            assert_eq!(ids(&v), want, "{q}");
        }
        // Paging: one per page, the cursor walks both.
        let (_, p1) = get(&srv, &rita, "/api/v1/audit/sessions?limit=1").await;
        let next = p1["next"].as_u64().unwrap();
        let (_, p2) = get(
            &srv,
            &rita,
            &format!("/api/v1/audit/sessions?limit=1&from={next}"),
        )
        .await;
        assert!(p2["next"].is_null(), "{p2}");
        let both: BTreeSet<String> = ids(&p1).union(&ids(&p2)).cloned().collect();
        assert_eq!(both.len(), 2);
        // Bad filters are named.
        for (q, names) in [
            ("denials=maybe", "denials"),
            ("outcome=happy", "outcome"),
            ("since=yesterday", "since"),
            ("colour=red", "colour"),
            ("limit=0", "limit"),
        ] {
            let (s, v) = get(&srv, &rita, &format!("/api/v1/audit/sessions?{q}")).await;
            assert_eq!(s, 400, "{q}");
            assert!(v["detail"].as_str().unwrap().starts_with(names), "{q}: {v}");
        }
        // Another team's reviewer-like reader sees none of them.
        let (s, v) = get(&srv, &carol, "/api/v1/audit/sessions").await;
        assert_eq!(s, 200);
        assert!(ids(&v).is_empty(), "{v}");
        let (s, _) = get(
            &srv,
            &carol,
            &format!("/api/v1/audit/sessions/{denied}/timeline"),
        )
        .await;
        assert_eq!(s, 403);
    });
    srv.stop();
    let leaves = srv.leaves();
    // Each listing is a recorded decision naming what it showed.
    let lists = server_support::server_decisions(&leaves, "session.list");
    assert!(lists
        .iter()
        .any(|l| l["actor"]["principal"] == "rita" && l["data"]["denials"] == "yes"));
    srv.verify();
}

#[test]
fn review_a_timeline_pages_by_entry_index_both_ways_and_is_the_sessions_entries() {
    if !sandbox_available(
        "review_a_timeline_pages_by_entry_index_both_ways_and_is_the_sessions_entries",
    ) {
        return;
    }
    let (mut srv, denied, clean) = desk();
    let rita = srv.token("rita");
    let (forward, backward, deny_rule) = runtime().block_on(async {
        let base = format!("/api/v1/audit/sessions/{denied}/timeline?limit=3");
        let mut forward = Vec::new();
        let mut url = base.clone();
        loop {
            let (s, p) = get(&srv, &rita, &url).await;
            assert_eq!(s, 200, "{p}");
            assert!(p["entries"].as_array().unwrap().len() <= 3);
            for e in p["entries"].as_array().unwrap() {
                forward.push(e.clone());
            }
            match p["next"].as_u64() {
                Some(n) => url = format!("{base}&from={n}"),
                None => break,
            }
        }
        let (_, first) = get(&srv, &rita, &base).await;
        let last = first["last"].as_u64().unwrap();
        assert_eq!(
            first["total"].as_u64().unwrap(),
            forward.len() as u64,
            "{first:#}"
        );
        let mut backward = Vec::new();
        let mut url = format!("{base}&before={}", last + 1);
        loop {
            let (s, p) = get(&srv, &rita, &url).await;
            assert_eq!(s, 200, "{p}");
            let mut page = p["entries"].as_array().unwrap().clone();
            page.append(&mut backward);
            backward = page;
            match p["prev"].as_u64() {
                Some(b) => url = format!("{base}&before={b}"),
                None => break,
            }
        }
        let rule = forward
            .iter()
            .find(|e| e["leaf"]["decision"]["effect"] == "deny")
            .map(|e| e["leaf"]["decision"]["policies"][0].clone());
        // Both cursors at once, or a bad one, are refused by name.
        let (s, v) = get(&srv, &rita, &format!("{base}&from=1&before=9")).await;
        assert_eq!(s, 400, "{v}");
        let (s, _) = get(&srv, &rita, &format!("{base}&limit=501")).await;
        assert_eq!(s, 400);
        (forward, backward, rule)
    });
    assert_eq!(deny_rule, Some(json!("test.no-payroll")));
    srv.stop();
    let leaves = srv.leaves();
    let want: Vec<u64> = leaves
        .iter()
        .filter(|l| l["session"]["id"] == denied.as_str())
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    let got: Vec<u64> = forward
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        got, want,
        "forward pages are the session's entries, in order, once"
    );
    let back: Vec<u64> = backward
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(back, want, "backward pages too");
    // Each entry is the log's leaf, not a rendering of it.
    for e in &forward {
        let i = e["index"].as_u64().unwrap() as usize;
        assert_eq!(e["leaf"], leaves[i]);
    }
    assert!(!got
        .iter()
        .any(|i| leaves[*i as usize]["session"]["id"] == clean.as_str()));
    // Every page read is an audit.read entry naming the reader.
    let reads = leaves
        .iter()
        .filter(|l| {
            l["kind"] == "audit.read"
                && l["actor"]["principal"] == "rita"
                && l["data"]["command"] == "api timeline"
        })
        .count();
    assert!(reads >= 4, "{reads}");
    srv.verify();
}

/// `text` with the byte at `at` of its `extra` leaf, or of line `line`, changed.
fn tamper_leaf(text: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut leaf = B64
        .decode(lines[1].strip_prefix("extra ").unwrap())
        .unwrap();
    let at = leaf.len() / 2;
    leaf[at] ^= 0x01;
    lines[1] = format!("extra {}", B64.encode(leaf));
    lines.join("\n")
}

fn tamper_path(text: &str) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut h = B64.decode(lines.get(3)?).ok()?;
    if h.len() != 32 {
        return None;
    }
    h[0] ^= 0x01;
    lines[3] = B64.encode(h);
    Some(lines.join("\n"))
}

fn tamper_root(text: &str) -> String {
    let (head, note) = text.split_once("\n\n").unwrap();
    let mut l: Vec<String> = note.split('\n').map(str::to_string).collect();
    let mut root = B64.decode(&l[2]).unwrap();
    root[5] ^= 0x01;
    l[2] = B64.encode(root);
    format!("{head}\n\n{}", l.join("\n"))
}

#[test]
fn review_an_inclusion_proof_checks_with_the_verifier_and_fails_with_one_byte_changed() {
    if !sandbox_available(
        "review_an_inclusion_proof_checks_with_the_verifier_and_fails_with_one_byte_changed",
    ) {
        return;
    }
    let (mut srv, denied, _) = desk();
    let (rita, carol) = (srv.token("rita"), srv.token("carol"));
    runtime().block_on(async {
        let (_, page) = get(
            &srv,
            &rita,
            &format!("/api/v1/audit/sessions/{denied}/timeline"),
        )
        .await;
        let entries = page["entries"].as_array().unwrap();
        let deny = entries
            .iter()
            .find(|e| e["leaf"]["decision"]["effect"] == "deny")
            .unwrap();
        // The first, the denial and the last entry of the session.
        let picks = [
            entries[0]["index"].as_u64().unwrap(),
            deny["index"].as_u64().unwrap(),
            entries.last().unwrap()["index"].as_u64().unwrap(),
        ];
        for index in picks {
            let (s, p) = get(&srv, &rita, &format!("/api/v1/audit/entries/{index}/proof")).await;
            assert_eq!(s, 200, "{p}");
            let v = NoteVerifier::parse(p["verifier"].as_str().unwrap()).unwrap();
            let text = p["proof"].as_str().unwrap();
            let ok = stele_audit::proof::verify(text, &v).unwrap();
            assert_eq!(ok.index, index);
            assert_eq!(p["index"], index);
            // The parts are the proof's: the entry, its leaf hash, the path, the note.
            let leaf_bytes = B64
                .decode(
                    text.split('\n')
                        .nth(1)
                        .unwrap()
                        .strip_prefix("extra ")
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(
                p["leaf_hash"].as_str().unwrap(),
                B64.encode(stele_audit::merkle::leaf_hash(&leaf_bytes))
            );
            assert_eq!(
                p["leaf"],
                serde_json::from_slice::<Value>(&leaf_bytes).unwrap()
            );
            assert!(text.ends_with(p["checkpoint"].as_str().unwrap()));
            assert_eq!(
                p["path"].as_array().unwrap().len(),
                text.split("\n\n").next().unwrap().lines().count() - 3
            );
            // One byte changed anywhere: refused.
            assert!(stele_audit::proof::verify(&tamper_leaf(text), &v).is_err());
            assert!(stele_audit::proof::verify(&tamper_root(text), &v).is_err());
            if let Some(t) = tamper_path(text) {
                assert!(stele_audit::proof::verify(&t, &v).is_err());
            }
            // The download is the same proof text, as a file.
            let r = srv
                .http
                .get(srv.url(&format!("/api/v1/audit/entries/{index}/proof?format=tlog")))
                .bearer_auth(&rita)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let cd = r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(cd.contains(&format!("entry-{index}.tlog-proof")), "{cd}");
            let file = r.text().await.unwrap();
            assert!(stele_audit::proof::verify(&file, &v).is_ok());
            // Another team may not have it.
            let (s, _) = get(
                &srv,
                &carol,
                &format!("/api/v1/audit/entries/{index}/proof"),
            )
            .await;
            assert_eq!(s, 403);
        }
        // No such entry is a 404 naming it; an entry of no session is the log's (admins).
        let (s, _) = get(&srv, &rita, "/api/v1/audit/entries/99999999/proof").await;
        assert_eq!(s, 404);
        let (s, _) = get(&srv, &rita, "/api/v1/audit/entries/0/proof").await;
        assert_eq!(
            s, 403,
            "the genesis belongs to no session: the log's readers only"
        );
        let adam = srv.token("adam");
        let (s, _) = get(&srv, &adam, "/api/v1/audit/entries/0/proof").await;
        assert_eq!(s, 200);
        let (s, _) = get(&srv, &rita, "/api/v1/audit/entries/1/proof?format=pdf").await;
        assert_eq!(s, 400);
    });
    srv.stop();
    // Every proof handed out is an audit.read entry naming the reader and the entry.
    let leaves = srv.leaves();
    let proofs: Vec<&Value> = leaves
        .iter()
        .filter(|l| {
            l["kind"] == "audit.read"
                && l["actor"]["principal"] == "rita"
                && l["data"]["command"] == "api proof"
        })
        .collect();
    assert_eq!(proofs.len(), 6, "three entries, as JSON and as a file");
    assert!(proofs.iter().all(|l| l["data"]["entry"].is_u64()));
    srv.verify();
}

#[test]
fn review_a_time_range_export_verifies_offline_and_a_reviewer_verifies_the_log() {
    if !sandbox_available(
        "review_a_time_range_export_verifies_offline_and_a_reviewer_verifies_the_log",
    ) {
        return;
    }
    let (mut srv, denied, _) = desk();
    let (rita, adam, carol) = (srv.token("rita"), srv.token("adam"), srv.token("carol"));
    let out = srv.dir.path().join("range.tar");
    let (verifier, command) = runtime().block_on(async {
        // A reviewer verifies the log from their session.
        let (s, v) = get(
            &srv,
            &rita,
            &format!("/api/v1/audit/sessions/{denied}/verify"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["verified"], true, "{v}");
        assert!(v["entries"].as_u64().unwrap() > 10);
        assert!(v["checkpoint"]["size"].as_u64().unwrap() > 0);
        assert_eq!(v["checkpoint"]["signers"][0]["role"], "log", "{v}");
        assert!(v["session"]["entries"].as_u64().unwrap() >= 3);
        let (s, _) = get(
            &srv,
            &carol,
            &format!("/api/v1/audit/sessions/{denied}/verify"),
        )
        .await;
        assert_eq!(s, 403);
        // A time range is the whole log's: refused to the team reviewer, given to the admin.
        let q = "/api/v1/audit/export?since=2000-01-01&until=2999-12-31";
        let (s, v) = get(&srv, &rita, q).await;
        assert_eq!(s, 403, "{v}");
        let r = srv
            .http
            .get(srv.url(q))
            .bearer_auth(&adam)
            .send()
            .await
            .unwrap();
        let h = r.headers().clone();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        std::fs::write(&out, r.bytes().await.unwrap()).unwrap();
        for (q, name) in [
            ("since=2000-01-01", "until"),
            ("since=2001-01-01&until=2000-01-01", "until"),
            ("since=x&until=2000-01-01", "since"),
        ] {
            let (s, v) = get(&srv, &adam, &format!("/api/v1/audit/export?{q}")).await;
            assert_eq!(s, 400, "{q}");
            assert!(v["detail"].as_str().unwrap().starts_with(name), "{q}: {v}");
        }
        (
            h["x-stele-verifier"].to_str().unwrap().to_string(),
            h["x-stele-verify-command"].to_str().unwrap().to_string(),
        )
    });
    assert!(
        command.starts_with("stele-verify stele-entries-"),
        "{command}"
    );
    assert!(
        command.ends_with(&format!("--key '{verifier}'")),
        "{command}"
    );
    let verify = |p: &std::path::Path| {
        std::process::Command::new(e2e_common::demo_session::verify_bin())
            .arg(p)
            .args(["--key", &verifier])
            .output()
            .unwrap()
    };
    let o = verify(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes
        .windows(7)
        .position(|w| w == b"payroll")
        .expect("the denial's entry is in the range");
    bytes[at] ^= 0x20;
    let bad = srv.dir.path().join("range-tampered.tar");
    std::fs::write(&bad, bytes).unwrap();
    assert!(!verify(&bad).status.success(), "a changed byte must fail");
    srv.stop();
    srv.verify();
}
