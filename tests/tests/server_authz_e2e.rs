#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The server's own actions as Cedar decisions, end to end: the real
//! `stele serve` under the finance template's roles (org/server.cedar),
//! reqwest as the client. Every role × every endpoint answered as the
//! template says, each decision logged naming its policy, wrong-team
//! requests 403 and logged; the audit endpoints (entries with filters and
//! pages, each read an `audit.read` entry; a session export that
//! stele-verify accepts; the log's verification); a bundle without the
//! server's actions refuses everything; a permit-everything in a team
//! neither lifts the gate's four-eyes rule nor widens the roles; a forbid on
//! viewing hides sessions from listings.

mod e2e_common;
mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{runtime, server_decisions, Server};
use stele_tests::mock_model::Turn;
use stele_tests::{sandbox_available, stele_bin};

async fn get(srv: &Server, token: &str, path: &str) -> reqwest::Response {
    srv.http
        .get(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post(srv: &Server, token: &str, path: &str, body: Value) -> reqwest::Response {
    srv.http
        .post(srv.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn start(srv: &Server, token: &str) -> reqwest::Response {
    post(
        srv,
        token,
        "/api/v1/sessions",
        json!({"workspace": "books", "task": "count the receipts"}),
    )
    .await
}

fn finish_at_once(srv: &Server) {
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
}

/// Start a session as `token` and wait until it ended.
async fn ended_session(srv: &Server, token: &str) -> String {
    let r = start(srv, token).await;
    assert_eq!(r.status(), 201, "{}", srv.stderr());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let began = Instant::now();
    loop {
        let s: Value = get(srv, token, &format!("/api/v1/sessions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if s["state"] == "ended" {
            return id;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Add an account after start (recorded when its token is first used).
fn add_account(srv: &Server, name: &str, team: &str, role: &str) {
    let o = srv
        .s
        .run(&[
            "user",
            "add",
            name,
            "--team",
            team,
            "--role",
            role,
            "--config",
            srv.config.to_str().unwrap(),
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The refusals and allowances of `principal` for `action` in the log.
fn decisions<'a>(leaves: &'a [Value], action: &str, principal: &str) -> Vec<&'a Value> {
    server_decisions(leaves, action)
        .into_iter()
        .filter(|l| l["actor"]["principal"] == principal)
        .collect()
}

#[test]
fn every_role_meets_every_endpoint_as_the_template_says_and_each_decision_is_logged() {
    if !sandbox_available(
        "every_role_meets_every_endpoint_as_the_template_says_and_each_decision_is_logged",
    ) {
        return;
    }
    let mut srv = Server::start("", "");
    add_account(&srv, "adam", "finance", "admin");
    finish_at_once(&srv);
    let tok = |n: &str| srv.token(n);
    let names = ["alice", "dave", "bob", "rita", "carol", "adam"];
    let tokens: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), tok(n))).collect();
    let token = |n: &str| tokens.iter().find(|(m, _)| m == n).unwrap().1.clone();
    let rt = runtime();
    let (id, export_path, verifier) = rt.block_on(async {
        let id = ended_session(&srv, &token("alice")).await;
        let view = format!("/api/v1/sessions/{id}");
        let read = format!("/api/v1/audit/entries?session={id}");
        let export = format!("/api/v1/audit/sessions/{id}/export");
        // (who, view, read this session, export it, read the whole log, verify)
        let table = [
            ("alice", 200, 403, 403, 403, 403),
            ("dave", 403, 403, 403, 403, 403),
            ("bob", 200, 403, 403, 403, 403),
            ("rita", 200, 200, 200, 403, 403),
            ("carol", 403, 403, 403, 403, 403),
            ("adam", 200, 200, 200, 200, 200),
        ];
        let mut export_bytes = None;
        let mut verifier = String::new();
        for (who, v, r, e, all, ver) in table {
            let t = token(who);
            for (path, want) in [
                (view.as_str(), v),
                (read.as_str(), r),
                (export.as_str(), e),
                ("/api/v1/audit/entries", all),
                ("/api/v1/audit/verify", ver),
            ] {
                let resp = get(&srv, &t, path).await;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap();
                assert_eq!(
                    status,
                    want,
                    "{who} GET {path}: {}",
                    String::from_utf8_lossy(&body)
                );
                if status == 403 {
                    let p: Value = serde_json::from_slice(&body).unwrap();
                    assert!(p["audit_entry"].is_u64(), "{p}");
                    assert!(p["detail"].as_str().unwrap().contains(who), "{p}");
                }
                if status == 200 && path == export && who == "rita" {
                    assert_eq!(headers["content-type"], "application/x-tar");
                    verifier = headers["x-stele-verifier"].to_str().unwrap().to_string();
                    export_bytes = Some(body.to_vec());
                }
            }
        }
        // Starting: members and approvers in their teams' workspaces only.
        for (who, want) in [("rita", 403), ("carol", 403), ("dave", 201)] {
            if want == 201 {
                finish_at_once(&srv);
            }
            assert_eq!(start(&srv, &token(who)).await.status(), want, "{who}");
        }
        let path = srv.dir.path().join("session.tar");
        std::fs::write(&path, export_bytes.unwrap()).unwrap();
        // The server streamed the bundle and keeps no copy of it.
        let tmp = srv.s.state.join("exports.tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "the server kept {left:?}");
        (id, path, verifier)
    });
    // The exported session verifies offline with stele-verify.
    let verify_bin = stele_bin().with_file_name("stele-verify");
    assert!(verify_bin.exists(), "build it: cargo build -p stele-verify");
    let o = std::process::Command::new(&verify_bin)
        .arg(&export_path)
        .args(["--key", &verifier])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    srv.stop();
    let leaves = srv.leaves();
    // Each decision is in the log, naming the policy that decided.
    let rita_reads = decisions(&leaves, "audit.read", "rita");
    assert!(rita_reads.iter().any(|l| {
        l["decision"]["effect"] == "allow"
            && l["decision"]["policies"][0] == "server.reviewer-team-sessions"
            && l["data"]["session"] == id.as_str()
    }));
    assert!(rita_reads
        .iter()
        .any(|l| l["decision"]["effect"] == "deny" && l["data"]["status"] == 403));
    for who in ["alice", "dave", "bob", "carol"] {
        let refused = decisions(&leaves, "audit.export", who);
        assert!(
            refused
                .iter()
                .any(|l| l["decision"]["effect"] == "deny" && l["data"]["status"] == 403),
            "{who}: {refused:?}"
        );
    }
    // The wrong team's view: refused and logged.
    assert!(decisions(&leaves, "session.view", "carol")
        .iter()
        .any(|l| l["decision"]["effect"] == "deny" && l["data"]["session"] == id.as_str()));
    assert!(decisions(&leaves, "session.start", "carol")
        .iter()
        .any(|l| l["decision"]["effect"] == "deny"));
    let adam = decisions(&leaves, "admin", "adam");
    assert!(adam.is_empty());
    assert!(decisions(&leaves, "audit.export", "adam")
        .iter()
        .any(|l| l["decision"]["policies"][0] == "server.admin"));
    // Each read of entries is itself an audit.read entry, as the CLI's are.
    let reads: Vec<&Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "audit.read" && l["actor"]["principal"] == "rita")
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["data"]["session"], id.as_str());
    // The export wrote its own entry, naming the exporter.
    assert!(leaves
        .iter()
        .any(|l| l["kind"] == "audit.export" && l["actor"]["principal"] == "rita"));
    srv.verify();
}

#[test]
fn entries_are_filtered_and_paged_and_bad_filters_are_named() {
    if !sandbox_available("entries_are_filtered_and_paged_and_bad_filters_are_named") {
        return;
    }
    let srv = Server::start("", "");
    add_account(&srv, "adam", "finance", "admin");
    finish_at_once(&srv);
    let (alice, adam) = (srv.token("alice"), srv.token("adam"));
    runtime().block_on(async {
        let id = ended_session(&srv, &alice).await;
        let whole: Value = get(&srv, &adam, &format!("/api/v1/audit/entries?session={id}"))
            .await
            .json()
            .await
            .unwrap();
        let all = whole["entries"].as_array().unwrap().clone();
        assert!(all.len() > 3, "{whole}");
        assert!(all
            .iter()
            .all(|e| e["leaf"]["session"]["id"] == id.as_str()));
        // Page by page, one entry at a time: the same entries, in order.
        let mut paged = Vec::new();
        let mut from = 0u64;
        loop {
            let p: Value = get(
                &srv,
                &adam,
                &format!("/api/v1/audit/entries?session={id}&limit=1&from={from}"),
            )
            .await
            .json()
            .await
            .unwrap();
            paged.extend(p["entries"].as_array().unwrap().clone());
            match p["next"].as_u64() {
                Some(n) => from = n,
                None => break,
            }
        }
        assert_eq!(paged, all);
        // Filters: kind and decision.
        let starts: Value = get(
            &srv,
            &adam,
            &format!("/api/v1/audit/entries?session={id}&kind=session.start"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(starts["entries"].as_array().unwrap().len(), 1);
        let denied: Value = get(
            &srv,
            &adam,
            "/api/v1/audit/entries?kind=policy.decision&decision=deny",
        )
        .await
        .json()
        .await
        .unwrap();
        assert!(denied["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["leaf"]["decision"]["effect"] == "deny"));
        // Bad filters: a 400 naming the parameter, nothing read.
        for (q, names) in [
            ("since=yesterday", "since"),
            ("decision=maybe", "decision"),
            ("kind=file.opne", "kind"),
            ("path=/etc", "path"),
            ("limit=0", "limit"),
            ("limit=many", "limit"),
            ("sessoin=x", "sessoin"),
        ] {
            let r = get(&srv, &adam, &format!("/api/v1/audit/entries?{q}")).await;
            assert_eq!(r.status(), 400, "{q}");
            let p: Value = r.json().await.unwrap();
            assert!(p["detail"].as_str().unwrap().starts_with(names), "{q}: {p}");
        }
    });
}

#[test]
fn a_bundle_without_the_server_actions_refuses_every_request() {
    let mut srv = Server::start("", "");
    srv.stop();
    std::fs::remove_file(srv.dir.path().join("policy/org/server.cedar")).unwrap();
    srv.spawn();
    assert!(
        srv.stderr().contains("grants none of the server's actions"),
        "{}",
        srv.stderr()
    );
    add_account(&srv, "adam", "finance", "admin");
    let tokens: Vec<String> = ["alice", "bob", "rita", "adam"]
        .iter()
        .map(|n| srv.token(n))
        .collect();
    runtime().block_on(async {
        for t in &tokens {
            for path in [
                "/api/v1/sessions",
                "/api/v1/audit/entries",
                "/api/v1/audit/verify",
            ] {
                let r = get(&srv, t, path).await;
                assert_eq!(r.status(), 403, "{path}");
                let p: Value = r.json().await.unwrap();
                assert!(
                    p["detail"]
                        .as_str()
                        .unwrap()
                        .contains("grants none of the server's actions"),
                    "{p}"
                );
            }
            assert_eq!(start(&srv, t).await.status(), 403);
        }
    });
    srv.stop();
    let leaves = srv.leaves();
    for action in ["session.list", "session.start", "audit.read"] {
        let d = server_decisions(&leaves, action);
        assert!(d.len() >= 4, "{action}");
        assert!(
            d.iter().all(|l| l["decision"]["effect"] == "deny"),
            "{action}"
        );
    }
}

#[test]
fn a_permit_everything_in_a_team_lifts_neither_the_gates_rules_nor_the_roles() {
    if !sandbox_available(
        "a_permit_everything_in_a_team_lifts_neither_the_gates_rules_nor_the_roles",
    ) {
        return;
    }
    let srv = Server::start(
        "\n@id(\"team.everything\")\npermit (principal, action, resource);\n",
        "",
    );
    // alice writes to outbox/: the org's four-eyes rule still asks, and
    // her own grant still cannot lift it.
    srv.mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "outbox/letter.txt", "content": "Dear Acme"}),
            )
            .into(),
    );
    let (alice, dave) = (srv.token("alice"), srv.token("dave"));
    runtime().block_on(async {
        let r = start(&srv, &alice).await;
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let began = Instant::now();
        let a = loop {
            let l: Value = get(&srv, &alice, "/api/v1/approvals")
                .await
                .json()
                .await
                .unwrap();
            if let Some(a) = l["approvals"].as_array().unwrap().first() {
                break a.clone();
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "{}",
                srv.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/approvals/{}", a["approval_id"].as_str().unwrap()),
            json!({"shown_sha256": a["shown_sha256"], "outcome": "granted"}),
        )
        .await;
        assert_eq!(r.status(), 403);
        assert!(!srv.ws.join("outbox/letter.txt").exists());
        // And the roles are not widened: dave (member) still may not see,
        // read or export alice's session.
        for path in [
            format!("/api/v1/sessions/{id}"),
            format!("/api/v1/audit/entries?session={id}"),
            format!("/api/v1/audit/sessions/{id}/export"),
        ] {
            assert_eq!(get(&srv, &dave, &path).await.status(), 403, "{path}");
        }
    });
}

#[test]
fn a_forbid_on_viewing_hides_sessions_from_listings_too() {
    if !sandbox_available("a_forbid_on_viewing_hides_sessions_from_listings_too") {
        return;
    }
    let mut srv = Server::start(
        "\n@id(\"team.hide-books\")\nforbid (principal, action == Action::\"session.view\", \
         resource is Session) when { resource.workspace == \"books\" && !context.is_owner };\n",
        "",
    );
    finish_at_once(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let id = runtime().block_on(async {
        let id = ended_session(&srv, &alice).await;
        let listed = |l: Value| {
            l["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == id.as_str())
        };
        // alice (the owner) still sees it; bob, an approver of her team, no longer.
        let l: Value = get(&srv, &alice, "/api/v1/sessions")
            .await
            .json()
            .await
            .unwrap();
        assert!(listed(l));
        let l: Value = get(&srv, &bob, "/api/v1/sessions")
            .await
            .json()
            .await
            .unwrap();
        assert!(!listed(l));
        let r = get(&srv, &bob, &format!("/api/v1/sessions/{id}")).await;
        assert_eq!(r.status(), 403);
        let p: Value = r.json().await.unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains("team.hide-books"),
            "{p}"
        );
        id
    });
    srv.stop();
    let leaves = srv.leaves();
    assert!(decisions(&leaves, "session.view", "bob").iter().any(|l| {
        l["decision"]["policies"][0] == "team.hide-books" && l["data"]["session"] == id.as_str()
    }));
    let bob_list = decisions(&leaves, "session.list", "bob");
    assert_eq!(bob_list[0]["data"]["hidden"], 1);
}

#[test]
fn legal_holds_over_the_api_need_audit_hold_and_two_principals_to_release() {
    let mut srv = Server::start("", "");
    add_account(&srv, "adam", "finance", "admin");
    add_account(&srv, "ada", "finance", "admin");
    // Holds are audit administration: the officers' tokens carry `admin`.
    let (adam, ada) = (
        srv.token_scoped("adam", "read,admin"),
        srv.token_scoped("ada", "read,admin"),
    );
    let (rita, adam_plain) = (srv.token("rita"), srv.token("adam"));
    let hold = runtime().block_on(async {
        let body = json!({"principal": "alice", "reason": "matter 42"});
        // An admin's token without the `admin` scope: refused (scope).
        let r = post(&srv, &adam_plain, "/api/v1/audit/holds", body.clone()).await;
        assert_eq!(r.status(), 403);
        // A reviewer has no audit.hold in the template: refused and logged.
        let r = post(&srv, &rita, "/api/v1/audit/holds", body.clone()).await;
        assert_eq!(r.status(), 403);
        // Bad bodies are named.
        for bad in [
            json!({"reason": "x"}),
            json!({"session": "s", "principal": "p", "reason": "x"}),
            json!({"principal": "alice", "reason": " "}),
            json!({"principal": "alice", "reason": "x", "user": "ada"}),
        ] {
            let r = post(&srv, &adam, "/api/v1/audit/holds", bad.clone()).await;
            assert_eq!(r.status(), 400, "{bad}");
        }
        let r = post(&srv, &adam, "/api/v1/audit/holds", body).await;
        assert_eq!(r.status(), 201);
        let hold = r.json::<Value>().await.unwrap()["hold"].as_u64().unwrap();
        let release = format!("/api/v1/audit/holds/{hold}/release");
        let why = json!({"reason": "matter closed"});
        assert_eq!(post(&srv, &rita, &release, why.clone()).await.status(), 403);
        let first: Value = post(&srv, &adam, &release, why.clone())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(first["released"], false, "{first}");
        // The same principal twice: dual control refuses it.
        let r = post(&srv, &adam, &release, why.clone()).await;
        assert_eq!(r.status(), 409);
        let second: Value = post(&srv, &ada, &release, why).await.json().await.unwrap();
        assert_eq!(second["released"], true, "{second}");
        hold
    });
    srv.stop();
    let leaves = srv.leaves();
    let place: Vec<&Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "hold.place")
        .collect();
    assert_eq!(place.len(), 1);
    assert_eq!(place[0]["actor"]["principal"], "adam");
    let releases: Vec<&Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "hold.release")
        .map(|l| &l["actor"]["principal"])
        .collect();
    assert_eq!(releases, [&json!("adam"), &json!("ada")]);
    assert!(decisions(&leaves, "audit.hold", "rita")
        .iter()
        .all(|l| l["decision"]["effect"] == "deny"));
    assert!(hold > 0);
    srv.verify();
}
