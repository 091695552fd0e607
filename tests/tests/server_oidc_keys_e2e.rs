#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The identity provider rotates its signing keys while `stele serve`
//! runs: the real npm `oidc-provider` is restarted at the same issuer with
//! a new key (another key id). The next login's ID token names a key id
//! the server's cached JWKS lacks: the server refetches the JWKS once and
//! the login works. ID tokens naming a key id nobody published are refused
//! and recorded, and a flood of them does not make the server refetch the
//! JWKS again (rate-limited).

mod e2e_common;
mod server_support;

use serde_json::Value;
use server_support::oidc::{self, Provider};
use server_support::{runtime, server_decisions, Server};

async fn login(op: &Provider, srv: &Server, account: &str) -> reqwest::Response {
    let b = oidc::browser();
    op.next_login(&b, account).await;
    b.get(srv.url("/api/v1/oidc/login")).send().await.unwrap()
}

#[test]
fn a_rotated_provider_key_is_fetched_once_and_unknown_keys_are_refused() {
    let port = stele_tests::siem::free_port();
    let op_port = stele_tests::siem::free_port();
    let redirect = format!("http://127.0.0.1:{port}/api/v1/oidc/callback");
    let mut op = Provider::start_on(oidc::CLIENT, oidc::SECRET, &redirect, op_port, "key-2026-a");
    let dir = tempfile::tempdir().unwrap();
    let toml = oidc::config(&op.issuer, port, dir.path(), "");
    let mut srv = Server::start_on("", &toml, &format!("127.0.0.1:{port}"));
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(async {
        let r = login(&op, &srv, "alice").await;
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        assert_eq!(
            op.jwks_fetches(&http).await,
            1,
            "discovery fetches the JWKS"
        );
    });
    // The provider rotates: same issuer, a new key with a new id.
    op.stop();
    let op = Provider::start_on(oidc::CLIENT, oidc::SECRET, &redirect, op_port, "key-2026-b");
    rt.block_on(async {
        let r = login(&op, &srv, "alice").await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{body}\n{}", srv.stderr());
        assert_eq!(body["user"], "alice");
        assert_eq!(op.jwks_fetches(&http).await, 1, "refetched once");
        // With the new key cached, another login needs no refetch.
        assert_eq!(login(&op, &srv, "bob").await.status(), 200);
        assert_eq!(op.jwks_fetches(&http).await, 1);
        // Tokens naming a key id nobody published: refused, recorded, and
        // no refetch storm.
        op.tamper(&oidc::browser(), "unknown_kid").await;
        for _ in 0..5 {
            let r = login(&op, &srv, "alice").await;
            assert_eq!(r.status(), 401, "{}", srv.stderr());
            let p: Value = r.json().await.unwrap();
            let detail = p["detail"].as_str().unwrap();
            assert!(
                detail.contains("a-key-nobody-published") && detail.contains("does not publish"),
                "{p}"
            );
            assert!(p["audit_entry"].is_u64(), "{p}");
        }
        assert_eq!(op.jwks_fetches(&http).await, 1, "a flood refetches nothing");
        op.tamper(&oidc::browser(), "off").await;
        assert_eq!(login(&op, &srv, "alice").await.status(), 200);
    });
    srv.stop();
    let leaves = srv.leaves();
    let oidc_logins: Vec<&Value> = server_decisions(&leaves, "login")
        .into_iter()
        .filter(|l| l["data"]["method"] == "oidc")
        .collect();
    let effects: Vec<&str> = oidc_logins
        .iter()
        .map(|l| l["decision"]["effect"].as_str().unwrap())
        .collect();
    assert_eq!(
        effects,
        ["allow", "allow", "allow", "deny", "deny", "deny", "deny", "deny", "allow"]
    );
    for l in oidc_logins
        .iter()
        .filter(|l| l["decision"]["effect"] == "deny")
    {
        assert!(
            l.to_string().contains("a-key-nobody-published"),
            "the refusal names the key id: {l}"
        );
    }
    srv.verify();
}
