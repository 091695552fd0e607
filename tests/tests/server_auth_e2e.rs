#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Identity on `stele serve`, end to end against the real binary: OIDC
//! login with a real OpenID Provider (npm `oidc-provider`) and a
//! browser-like client following its redirects; ID tokens that are
//! altered, forged, for another audience, with another nonce, expired,
//! from another issuer or unsigned are refused; a login state is single
//! use, bound to its browser and expires; browser sessions by cookie need
//! their CSRF token for anything that changes state, and a forged, expired
//! or logged-out cookie is refused; failed logins are throttled per
//! account and per address without telling which accounts exist. Every
//! refusal is an entry in the log, found by the problem's `audit_entry`.

mod e2e_common;
mod server_support;

use std::time::Duration;

use serde_json::{json, Value};
use server_support::oidc::{self, Provider};
use server_support::{runtime, server_decisions, Server};

/// A problem answer with `status`; its body.
async fn problem(r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let p: Value = r.json().await.unwrap();
    assert_eq!(got, status, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p
}

/// The leaf at `seq`.
fn leaf(leaves: &[Value], seq: u64) -> &Value {
    leaves
        .iter()
        .find(|l| l["seq"].as_u64() == Some(seq))
        .unwrap_or_else(|| panic!("no entry {seq}"))
}

/// A provider and a server that trusts it, stele on a port known in advance.
fn oidc_server(extra: &str) -> (Provider, Server, tempfile::TempDir) {
    let port = stele_tests::siem::free_port();
    let redirect = format!("http://127.0.0.1:{port}/api/v1/oidc/callback");
    let op = Provider::start(oidc::CLIENT, oidc::SECRET, &redirect);
    let dir = tempfile::tempdir().unwrap();
    let toml = oidc::config(&op.issuer, port, dir.path(), extra);
    let srv = Server::start_on("", &toml, &format!("127.0.0.1:{port}"));
    (op, srv, dir)
}

/// The whole login in a fresh browser as `account`; the callback's response.
async fn login_as(op: &Provider, srv: &Server, account: &str) -> (reqwest::Client, reqwest::Response) {
    let b = oidc::browser();
    op.next_login(&b, account).await;
    let r = b.get(srv.url("/api/v1/oidc/login")).send().await.unwrap();
    (b, r)
}

#[test]
fn oidc_login_maps_people_to_teams_and_opens_a_browser_session() {
    let (op, mut srv, _d) = oidc_server("");
    let rt = runtime();
    let mut refused = Vec::new();
    rt.block_on(async {
        // alice: the members file (finance) wins over her groups claim (ops).
        let (b, r) = login_as(&op, &srv, "alice").await;
        assert_eq!(r.url().path(), "/api/v1/oidc/callback");
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let session = cookies.iter().find(|c| c.starts_with("stele_session=")).unwrap();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(session.contains(attr), "{session}");
        }
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["user"], "alice");
        assert_eq!(body["teams"], json!(["finance"]));
        assert_eq!(body["method"], "oidc");
        assert_eq!(body["role"], "member");
        // The session works: the cookie is the credential.
        let l = b.get(srv.url("/api/v1/sessions")).send().await.unwrap();
        assert_eq!(l.status(), 200);

        // erin is not in the members file: her groups claim gives finance
        // (a group that is no team of the bundle is ignored).
        let (_b, r) = login_as(&op, &srv, "erin").await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["teams"], json!(["finance"]), "{body}");
        // bob: members file, and the role of his local account.
        let (_b, r) = login_as(&op, &srv, "bob").await;
        let body: Value = r.json().await.unwrap();
        assert_eq!((&body["teams"], &body["role"]), (&json!(["finance"]), &json!("approver")));
        // mallory: no team anywhere: refused, logged.
        let (_b, r) = login_as(&op, &srv, "mallory").await;
        let p = problem(r, 403).await;
        refused.push(("no team", p["audit_entry"].as_u64().unwrap()));
    });
    srv.stop();
    let leaves = srv.leaves();
    let logins = server_decisions(&leaves, "login");
    let ok: Vec<_> = logins
        .iter()
        .filter(|l| l["decision"]["effect"] == "allow" && l["data"]["method"] == "oidc")
        .map(|l| l["actor"]["principal"].as_str().unwrap())
        .collect();
    assert_eq!(ok, ["alice", "erin", "bob"]);
    for (what, seq) in refused {
        let l = leaf(&leaves, seq);
        assert_eq!(l["data"]["method"], "oidc", "{what}: {l}");
        assert_eq!(l["decision"]["effect"], "deny", "{what}");
        assert_eq!(l["actor"]["principal"], "mallory", "{what}");
    }
    srv.verify();
}

#[test]
fn bad_id_tokens_are_refused_and_logged() {
    let (op, mut srv, _d) = oidc_server("");
    let rt = runtime();
    let modes = [
        ("altered", "signature"),
        ("forged", "signature"),
        ("wrong_aud", "audience"),
        ("wrong_nonce", "nonce"),
        ("expired", "expired"),
        ("wrong_iss", "issuer"),
        ("none", ""),
    ];
    let mut refused = Vec::new();
    rt.block_on(async {
        for (mode, _) in &modes {
            op.tamper(&oidc::browser(), mode).await;
            let (b, r) = login_as(&op, &srv, "alice").await;
            assert_eq!(r.url().path(), "/api/v1/oidc/callback", "{mode}");
            assert!(
                !r.headers()
                    .get_all("set-cookie")
                    .iter()
                    .any(|c| c.to_str().unwrap().starts_with("stele_session=")),
                "{mode}: a session cookie for a bad ID token"
            );
            let p = problem(r, 401).await;
            refused.push((mode, p["detail"].as_str().unwrap().to_string(), p["audit_entry"].as_u64().unwrap()));
            // Nothing to authenticate with afterwards.
            let l = b.get(srv.url("/api/v1/sessions")).send().await.unwrap();
            assert_eq!(l.status(), 401, "{mode}");
        }
        // The same provider without tampering: the login works.
        op.tamper(&oidc::browser(), "off").await;
        let (_b, r) = login_as(&op, &srv, "alice").await;
        assert_eq!(r.status(), 200);
    });
    srv.stop();
    let leaves = srv.leaves();
    for ((mode, detail, seq), (_, word)) in refused.iter().zip(modes) {
        assert!(detail.contains("ID token"), "{mode}: {detail}");
        assert!(detail.to_lowercase().contains(word), "{mode}: {detail}");
        let l = leaf(&leaves, *seq);
        assert_eq!(l["data"]["server_action"], "login", "{mode}");
        assert_eq!(l["data"]["method"], "oidc", "{mode}");
        assert_eq!(l["decision"]["effect"], "deny", "{mode}");
        assert_eq!(l["data"]["status"], 401, "{mode}");
    }
    srv.verify();
}

#[test]
fn a_login_state_is_single_use_bound_to_its_browser_and_expires() {
    let (op, mut srv, _d) = oidc_server("login_timeout_secs = 2\n");
    let rt = runtime();
    let mut refused = Vec::new();
    rt.block_on(async {
        // Replayed: the callback URL works once.
        let b = oidc::browser_stopping_at_callback();
        op.next_login(&b, "alice").await;
        let r = b.get(srv.url("/api/v1/oidc/login")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let callback = r.headers()["location"].to_str().unwrap().to_string();
        assert!(callback.contains("code=") && callback.contains("state="), "{callback}");
        assert_eq!(b.get(&callback).send().await.unwrap().status(), 200);
        let p = problem(b.get(&callback).send().await.unwrap(), 401).await;
        assert!(p["detail"].as_str().unwrap().contains("already used"), "{p}");
        refused.push(("replayed", p["audit_entry"].as_u64().unwrap()));

        // Another browser (no binding cookie): login CSRF refused, and the state is spent.
        let b = oidc::browser_stopping_at_callback();
        op.next_login(&b, "alice").await;
        let r = b.get(srv.url("/api/v1/oidc/login")).send().await.unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_string();
        let p = problem(srv.http.get(&callback).send().await.unwrap(), 401).await;
        assert!(p["detail"].as_str().unwrap().contains("another browser"), "{p}");
        refused.push(("other browser", p["audit_entry"].as_u64().unwrap()));
        let p = problem(b.get(&callback).send().await.unwrap(), 401).await;
        refused.push(("after other browser", p["audit_entry"].as_u64().unwrap()));

        // Expired: the state outlived login_timeout_secs.
        let b = oidc::browser_stopping_at_callback();
        op.next_login(&b, "alice").await;
        let r = b.get(srv.url("/api/v1/oidc/login")).send().await.unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let p = problem(b.get(&callback).send().await.unwrap(), 401).await;
        assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
        refused.push(("expired", p["audit_entry"].as_u64().unwrap()));

        // A made-up state, and a callback without one.
        let p = problem(
            b.get(srv.url("/api/v1/oidc/callback?code=x&state=made-up")).send().await.unwrap(),
            401,
        )
        .await;
        refused.push(("made up", p["audit_entry"].as_u64().unwrap()));
        let p = problem(b.get(srv.url("/api/v1/oidc/callback?code=x")).send().await.unwrap(), 401).await;
        refused.push(("no state", p["audit_entry"].as_u64().unwrap()));
    });
    srv.stop();
    let leaves = srv.leaves();
    for (what, seq) in refused {
        let l = leaf(&leaves, seq);
        assert_eq!(l["data"]["server_action"], "login", "{what}");
        assert_eq!(l["data"]["method"], "oidc", "{what}");
        assert_eq!(l["decision"]["effect"], "deny", "{what}");
    }
    srv.verify();
}
