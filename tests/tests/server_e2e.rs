#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele serve` end to end: the real binary on 127.0.0.1, reqwest as the
//! client, the mock model over the real Anthropic wire, the process
//! sandbox. Refused requests (401/403) are logged; a session started over
//! the API runs to its end, its events stream as the CLI's `--json` does
//! and replay from an id; approvals are answered by a second person,
//! refused to the requester where the rule needs four eyes, refused with a
//! wrong `shown_sha256`, counted once, and expire refused; the log
//! verifies afterwards.

mod e2e_common;
mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::api::{post, problem, start_session};
use server_support::{parse_sse, runtime, server_decisions, Server};
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

async fn get(srv: &Server, token: Option<&str>, path: &str) -> reqwest::Response {
    let mut r = srv.http.get(srv.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// The whole event stream of a session (it ends when the session does).
async fn events(srv: &Server, token: &str, id: &str, last: Option<u64>) -> Vec<(u64, Value)> {
    let mut r = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{id}/events")))
        .bearer_auth(token);
    if let Some(n) = last {
        r = r.header("last-event-id", n.to_string());
    }
    let resp = r.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let body = tokio::time::timeout(Duration::from_secs(90), resp.text())
        .await
        .expect("the event stream did not end with the session")
        .unwrap();
    parse_sse(&body)
}

async fn wait_state(srv: &Server, token: &str, id: &str, want: &str) -> Value {
    let began = Instant::now();
    loop {
        let s: Value = get(srv, Some(token), &format!("/api/v1/sessions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if s["state"] == want {
            return s;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "session never {want}: {s}\n{}",
            srv.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pending_for(srv: &Server, token: &str) -> Vec<Value> {
    let began = Instant::now();
    loop {
        let l: Value = get(srv, Some(token), "/api/v1/approvals")
            .await
            .json()
            .await
            .unwrap();
        let a = l["approvals"].as_array().unwrap().clone();
        if !a.is_empty() {
            return a;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no approval appeared\n{}",
            srv.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn requests_without_a_live_token_are_refused_and_logged() {
    let mut srv = Server::start("", "");
    let dave = srv.token("dave");
    let alice = srv.token("alice");
    // Age dave's token: it expired a second after the epoch.
    let db = rusqlite::Connection::open(srv.store()).unwrap();
    assert_eq!(
        db.execute("UPDATE tokens SET expires = 1 WHERE user = 'dave'", [])
            .unwrap(),
        1
    );
    drop(db);
    let rt = runtime();
    let mut entries = Vec::new();
    rt.block_on(async {
        let bogus = format!("stl_{}", "A".repeat(43));
        let cases: Vec<(&str, Option<String>)> = vec![
            ("none", None),
            ("unknown", Some(format!("Bearer {bogus}"))),
            ("expired", Some(format!("Bearer {dave}"))),
            ("wrong scheme", Some(format!("Basic {alice}"))),
            ("empty", Some("Bearer ".into())),
            // A live token with one character changed is another token.
            (
                "altered",
                Some(format!("Bearer {}x", &alice[..alice.len() - 1])),
            ),
        ];
        for path in ["/api/v1/sessions", "/api/v1/approvals"] {
            for (what, header) in &cases {
                let mut r = srv.http.get(srv.url(path));
                if let Some(h) = header {
                    r = r.header("authorization", h);
                }
                let r = r.send().await.unwrap();
                assert!(
                    r.headers()["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .starts_with("Bearer"),
                    "{what}"
                );
                let p = problem(r, 401).await;
                entries.push((what.to_string(), p["audit_entry"].as_u64().unwrap()));
            }
        }
        // The live token works; health needs none.
        assert_eq!(
            get(&srv, Some(&alice), "/api/v1/sessions").await.status(),
            200
        );
        assert_eq!(get(&srv, None, "/healthz").await.status(), 200);
    });
    srv.stop();
    let leaves = srv.leaves();
    let refused = server_decisions(&leaves, "authenticate");
    assert_eq!(refused.len(), entries.len(), "one entry per refusal");
    for (what, seq) in &entries {
        let l = leaves
            .iter()
            .find(|l| l["seq"].as_u64() == Some(*seq))
            .unwrap_or_else(|| panic!("{what}: no entry {seq}"));
        assert_eq!(l["data"]["server_action"], "authenticate", "{what}: {l}");
        assert_eq!(l["decision"]["effect"], "deny", "{what}: {l}");
        assert_eq!(l["data"]["status"], 401, "{what}");
        let who = l["actor"]["principal"].as_str().unwrap();
        assert_eq!(who == "dave", what == "expired", "{what}: {who}");
    }
    srv.verify();
}

#[test]
fn a_session_over_the_api_runs_to_its_end_and_its_events_replay() {
    if !sandbox_available("a_session_over_the_api_runs_to_its_end_and_its_events_replay") {
        return;
    }
    let mut srv = Server::start("", "");
    srv.mock.push(
        Turn::new()
            .text("Reading the receipts.")
            .tool_use("l", "file_list", json!({"path": "receipts"}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "two receipts"}))
            .into(),
    );
    let (alice, bob, carol, dave) = (
        srv.token("alice"),
        srv.token("bob"),
        srv.token("carol"),
        srv.token("dave"),
    );
    let rt = runtime();
    let (id, all) = rt.block_on(async {
        let id = start_session(&srv, &alice, "count the receipts").await;
        let all = events(&srv, &alice, &id, None).await;
        (id, all)
    });
    // Numbered 1, 2, … with nothing missing; the first is start, the last end.
    let ids: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(all[0].1["event"], "start");
    assert_eq!(all[0].1["session"], id.as_str());
    assert_eq!(all[0].1["principal"], "alice");
    let end = &all.last().unwrap().1;
    assert_eq!(end["event"], "end", "{all:?}");
    assert_eq!(end["outcome"], "answered");
    assert_eq!(end["detail"], "two receipts");
    // Every event is a protocol event, serialised back to the same JSON.
    for (_, e) in &all {
        let typed: stele_protocol::SessionEvent = serde_json::from_value(e.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), e);
    }
    let kinds: Vec<&str> = all
        .iter()
        .map(|(_, e)| e["event"].as_str().unwrap())
        .collect();
    for k in ["step", "text", "tool_call", "tool_result"] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    rt.block_on(async {
        // Replay from an id: exactly what followed it, again.
        for from in [0, 2, all.len() as u64 - 1, all.len() as u64] {
            let again = events(&srv, &alice, &id, Some(from)).await;
            assert_eq!(again, all[from as usize..].to_vec(), "from {from}");
        }
        let q = srv
            .http
            .get(srv.url(&format!("/api/v1/sessions/{id}/events?after=3")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(parse_sse(&q), all[3..].to_vec());
        wait_state(&srv, &alice, &id, "ended").await;
        // Who sees it: the owner, a finance approver and reviewer; not another
        // member, not another team's approver.
        for (token, sees) in [
            (&alice, true),
            (&bob, true),
            (&dave, false),
            (&carol, false),
        ] {
            let l: Value = get(&srv, Some(token), "/api/v1/sessions")
                .await
                .json()
                .await
                .unwrap();
            let listed = l["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == id.as_str());
            assert_eq!(listed, sees);
            let one = get(&srv, Some(token), &format!("/api/v1/sessions/{id}")).await;
            let ev = get(&srv, Some(token), &format!("/api/v1/sessions/{id}/events")).await;
            if sees {
                assert_eq!(one.status(), 200);
                assert_eq!(ev.status(), 200);
            } else {
                assert!(problem(one, 403).await["audit_entry"].is_u64());
                assert!(problem(ev, 403).await["audit_entry"].is_u64());
            }
        }
        // Bad input: a clear 400 naming the field.
        let r = post(
            &srv,
            &alice,
            "/api/v1/sessions",
            json!({"workspace": "nope", "task": "x"}),
        )
        .await;
        assert!(problem(r, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("workspace"));
        let r = post(
            &srv,
            &alice,
            "/api/v1/sessions",
            json!({"workspace": "books"}),
        )
        .await;
        assert!(problem(r, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("task"));
        // carol's team has no right to the books workspace.
        let r = post(
            &srv,
            &carol,
            "/api/v1/sessions",
            json!({"workspace": "books", "task": "x"}),
        )
        .await;
        problem(r, 403).await;
    });
    srv.stop();
    let leaves = srv.leaves();
    stele_tests::intents_closed_once(&leaves, &id).unwrap();
    let views = server_decisions(&leaves, "session.view");
    assert!(views
        .iter()
        .any(|l| l["actor"]["principal"] == "carol" && l["decision"]["effect"] == "deny"));
    let start = leaves
        .iter()
        .find(|l| l["kind"] == "session.start" && l["session"]["id"] == id.as_str())
        .unwrap();
    assert_eq!(start["actor"]["principal"], "alice");
    assert_eq!(start["data"]["client"]["kind"], "server");
    srv.verify();
}

/// Makes `exec` of any permitted program ask a human first.
const EXEC_ASKS: &str = e2e_common::EXEC_NEEDS_APPROVAL;

fn push_exec_then_finish(srv: &Server) {
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "print(6*7)"]}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
}

#[test]
fn an_approval_by_a_second_user_unblocks_the_session_once() {
    if !sandbox_available("an_approval_by_a_second_user_unblocks_the_session_once") {
        return;
    }
    let mut srv = Server::start(EXEC_ASKS, "");
    push_exec_then_finish(&srv);
    let (alice, bob, carol, rita) = (
        srv.token("alice"),
        srv.token("bob"),
        srv.token("carol"),
        srv.token("rita"),
    );
    let rt = runtime();
    let (id, sha, all) = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute").await;
        let a = pending_for(&srv, &bob).await;
        assert_eq!(a.len(), 1);
        let a = &a[0];
        let (aid, sha) = (
            a["approval_id"].as_str().unwrap().to_string(),
            a["shown_sha256"].as_str().unwrap().to_string(),
        );
        assert_eq!(sha, sha256_hex(a["shown"].as_str().unwrap().as_bytes()));
        assert_eq!(a["requester"], "alice");
        assert_eq!(a["session"], id.as_str());
        assert!(a["shown"].as_str().unwrap().contains("python3"), "{a}");
        wait_state(&srv, &alice, &id, "waiting_approval").await;
        // Other team, a reviewer: not theirs to answer, and not listed for them.
        for t in [&carol, &rita] {
            let l: Value = get(&srv, Some(t), "/api/v1/approvals")
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(l["approvals"], json!([]));
            let r = post(
                &srv,
                t,
                &format!("/api/v1/approvals/{aid}"),
                json!({"shown_sha256": sha, "outcome": "granted"}),
            )
            .await;
            problem(r, 403).await;
        }
        // A wrong hash: refused, still pending. Unknown fields are refused too.
        for bad in [
            json!({"shown_sha256": sha256_hex(b"something else"), "outcome": "granted"}),
            json!({"shown_sha256": "", "outcome": "granted"}),
        ] {
            let r = post(&srv, &bob, &format!("/api/v1/approvals/{aid}"), bad).await;
            problem(r, 409).await;
        }
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{aid}"),
            json!({"shown_sha256": sha, "outcome": "granted", "approver": "alice"}),
        )
        .await;
        problem(r, 400).await;
        assert_eq!(pending_for(&srv, &bob).await.len(), 1);
        // bob grants.
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{aid}"),
            json!({"shown_sha256": sha, "outcome": "granted", "ticket": "CHG-7"}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let done: Value = r.json().await.unwrap();
        assert_eq!(done["state"], "granted");
        assert_eq!(done["approver"], "bob");
        // Replayed, by bob or anyone: counted once.
        for t in [&bob, &alice] {
            for outcome in ["granted", "refused"] {
                let r = post(
                    &srv,
                    t,
                    &format!("/api/v1/approvals/{aid}"),
                    json!({"shown_sha256": sha, "outcome": outcome}),
                )
                .await;
                problem(r, 409).await;
            }
        }
        let all = events(&srv, &alice, &id, None).await;
        wait_state(&srv, &alice, &id, "ended").await;
        (id, sha, all)
    });
    let kinds: Vec<String> = all
        .iter()
        .map(|(_, e)| {
            format!(
                "{}/{}",
                e["event"].as_str().unwrap(),
                e["decision"].as_str().unwrap_or("")
            )
        })
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k}: {kinds:?}"))
    };
    assert!(at("approval_requested/") > at("decision/ask"));
    assert!(at("decision/granted") > at("approval_requested/"));
    let granted = &all[at("decision/granted")].1;
    assert_eq!(
        (granted["approver"].as_str(), granted["method"].as_str()),
        (Some("bob"), Some("token"))
    );
    assert_eq!(all.last().unwrap().1["outcome"], "answered");
    srv.stop();
    let leaves = srv.leaves();
    stele_tests::intents_closed_once(&leaves, &id).unwrap();
    let mine = e2e_common::of_session(&leaves, &id);
    let grants: Vec<&&Value> = mine
        .iter()
        .filter(|l| l["kind"] == "approval.grant")
        .collect();
    assert_eq!(grants.len(), 1, "counted once");
    let g = grants[0];
    assert_eq!(g["data"]["approver"], "bob");
    assert_eq!(g["data"]["method"], "token");
    assert_eq!(g["data"]["ticket"], "CHG-7");
    assert_eq!(g["data"]["shown_sha256"], sha.as_str());
    let req = mine
        .iter()
        .find(|l| l["kind"] == "approval.request")
        .unwrap();
    assert_eq!(req["data"]["shown_sha256"], sha.as_str());
    // The program ran once, after the grant.
    let execs: Vec<&&Value> = mine.iter().filter(|l| l["kind"] == "exec.end").collect();
    assert_eq!(execs.len(), 1);
    // The refused answers are on record with who tried.
    let refused: Vec<&Value> = server_decisions(&leaves, "session.approve")
        .into_iter()
        .filter(|l| l["decision"]["effect"] == "deny")
        .collect();
    for who in ["carol", "rita", "bob", "alice"] {
        assert!(
            refused.iter().any(|l| l["actor"]["principal"] == who),
            "{who}"
        );
    }
    srv.verify();
}

#[test]
fn a_self_approval_under_the_finance_template_is_refused() {
    if !sandbox_available("a_self_approval_under_the_finance_template_is_refused") {
        return;
    }
    // The finance template unchanged: letters in outbox/ need another member's approval.
    let mut srv = Server::start("", "");
    srv.mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "outbox/letter.txt", "content": "Dear Acme"}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "sent"}))
            .into(),
    );
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "write the letter").await;
        // alice may answer her own session's asks (as at a terminal) ...
        let a = pending_for(&srv, &alice).await;
        let (aid, sha) = (
            a[0]["approval_id"].as_str().unwrap(),
            a[0]["shown_sha256"].clone(),
        );
        // ... but her grant cannot lift the four-eyes rule: refused, still open.
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/approvals/{aid}"),
            json!({"shown_sha256": sha, "outcome": "granted"}),
        )
        .await;
        let p = problem(r, 403).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("segregation of duties"),
            "{p}"
        );
        assert!(!srv.ws.join("outbox/letter.txt").exists());
        assert_eq!(pending_for(&srv, &bob).await[0]["approval_id"], aid);
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{aid}"),
            json!({"shown_sha256": sha, "outcome": "granted"}),
        )
        .await;
        assert_eq!(r.status(), 200);
        wait_state(&srv, &alice, &id, "ended").await;
        id
    });
    assert_eq!(
        std::fs::read_to_string(srv.ws.join("outbox/letter.txt")).unwrap(),
        "Dear Acme"
    );
    srv.stop();
    let leaves = srv.leaves();
    let mine = e2e_common::of_session(&leaves, &id);
    let grants: Vec<&&Value> = mine
        .iter()
        .filter(|l| l["kind"] == "approval.grant")
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["data"]["approver"], "bob");
    assert!(server_decisions(&leaves, "session.approve")
        .iter()
        .any(|l| { l["actor"]["principal"] == "alice" && l["decision"]["effect"] == "deny" }));
    srv.verify();
}

#[test]
fn an_unanswered_approval_expires_refused_and_logged() {
    if !sandbox_available("an_unanswered_approval_expires_refused_and_logged") {
        return;
    }
    let mut srv = Server::start(EXEC_ASKS, "ask_deadline_secs = 2\n");
    push_exec_then_finish(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute").await;
        let a = pending_for(&srv, &bob).await;
        let (aid, sha) = (
            a[0]["approval_id"].as_str().unwrap().to_string(),
            a[0]["shown_sha256"].clone(),
        );
        wait_state(&srv, &alice, &id, "ended").await;
        // Too late: the question was refused at its deadline.
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{aid}"),
            json!({"shown_sha256": sha, "outcome": "granted"}),
        )
        .await;
        assert!(problem(r, 409).await["detail"]
            .as_str()
            .unwrap()
            .contains("Expired"));
        id
    });
    srv.stop();
    let leaves = srv.leaves();
    let mine = e2e_common::of_session(&leaves, &id);
    let deny = mine.iter().find(|l| l["kind"] == "approval.deny").unwrap();
    assert_eq!(deny["data"]["method"], "deadline");
    assert!(
        mine.iter().all(|l| l["kind"] != "exec.start"),
        "nothing ran"
    );
    srv.verify();
}

/// Accounts and tokens made on the host (`stele user add`, `stele token
/// create`) are recorded in the log before they work: made while the server
/// is down they stay inert until its start records them; made while it runs
/// they are recorded at first use (or within the poll) — and no entry holds
/// the token itself.
#[test]
fn account_and_token_changes_are_recorded_before_they_work() {
    let mut srv = Server::start("", "");
    let store = |srv: &Server| rusqlite::Connection::open(srv.store()).unwrap();
    let queued = |srv: &Server| -> i64 {
        store(srv)
            .query_row("SELECT count(*) FROM admin_changes", [], |r| r.get(0))
            .unwrap()
    };
    let add_user = |srv: &Server, name: &str| {
        let o = srv
            .s
            .run(&[
                "user",
                "add",
                name,
                "--team",
                "finance",
                "--config",
                srv.config.to_str().unwrap(),
            ])
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // The accounts made before the start were recorded by it.
    assert_eq!(queued(&srv), 0);
    let rt = runtime();
    // Made while the server runs: works at its first use.
    let alice = srv.token("alice");
    rt.block_on(async {
        assert_eq!(
            get(&srv, Some(&alice), "/api/v1/sessions").await.status(),
            200
        );
    });
    // Made while it is down: inert in the store until the server records it.
    srv.stop();
    let rita = srv.token("rita");
    add_user(&srv, "erin");
    assert_eq!(queued(&srv), 2);
    let inert: i64 = store(&srv)
        .query_row(
            "SELECT count(*) FROM tokens WHERE user = 'rita' AND pending_change IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inert, 1);
    srv.spawn();
    assert_eq!(queued(&srv), 0, "the start records what was queued");
    rt.block_on(async {
        assert_eq!(
            get(&srv, Some(&rita), "/api/v1/sessions").await.status(),
            200
        );
    });
    // Made while it runs and never used: recorded within the poll.
    add_user(&srv, "frank");
    let began = Instant::now();
    while queued(&srv) > 0 {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "frank was never recorded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    srv.stop();
    let leaves = srv.leaves();
    let adds = server_decisions(&leaves, "account.add");
    let tokens = server_decisions(&leaves, "token.create");
    let subjects = |v: &[&Value]| -> Vec<String> {
        v.iter()
            .map(|l| l["data"]["subject"].as_str().unwrap().to_string())
            .collect()
    };
    let mut added = subjects(&adds);
    added.sort();
    let mut expected: Vec<String> = server_support::ACCOUNTS
        .iter()
        .map(|(n, _, _)| n.to_string())
        .chain(["erin".to_string(), "frank".to_string()])
        .collect();
    expected.sort();
    assert_eq!(added, expected);
    assert_eq!(subjects(&tokens), ["alice", "rita"]);
    for l in adds.iter().chain(&tokens) {
        assert_eq!(l["decision"]["effect"], "allow", "{l}");
        assert!(l["data"]["change_id"].as_u64().is_some(), "{l}");
        assert!(l["data"]["uid"].as_u64().is_some(), "{l}");
    }
    assert_eq!(adds[0]["data"]["role"], "member");
    // Each token's creation comes before the first request it made.
    for (who, token_entry) in [("alice", tokens[0]), ("rita", tokens[1])] {
        let first_use = leaves
            .iter()
            .find(|l| {
                l["data"]["server_action"] == "session.list" && l["actor"]["principal"] == who
            })
            .unwrap();
        assert!(
            token_entry["seq"].as_u64() < first_use["seq"].as_u64(),
            "{who}: {token_entry} after {first_use}"
        );
    }
    // The secrets are nowhere in the log.
    let all = serde_json::to_string(&leaves).unwrap();
    assert!(!all.contains(&alice) && !all.contains(&rita));
    srv.verify();
}
