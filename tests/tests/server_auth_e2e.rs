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
async fn login_as(
    op: &Provider,
    srv: &Server,
    account: &str,
) -> (reqwest::Client, reqwest::Response) {
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
        let session = cookies
            .iter()
            .find(|c| c.starts_with("stele_session="))
            .unwrap();
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
        assert_eq!(
            (&body["teams"], &body["role"]),
            (&json!(["finance"]), &json!("approver"))
        );
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
            refused.push((
                mode,
                p["detail"].as_str().unwrap().to_string(),
                p["audit_entry"].as_u64().unwrap(),
            ));
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
        assert!(
            callback.contains("code=") && callback.contains("state="),
            "{callback}"
        );
        assert_eq!(b.get(&callback).send().await.unwrap().status(), 200);
        let p = problem(b.get(&callback).send().await.unwrap(), 401).await;
        assert!(
            p["detail"].as_str().unwrap().contains("already used"),
            "{p}"
        );
        refused.push(("replayed", p["audit_entry"].as_u64().unwrap()));

        // Another browser (no binding cookie): login CSRF refused, and the state is spent.
        let b = oidc::browser_stopping_at_callback();
        op.next_login(&b, "alice").await;
        let r = b.get(srv.url("/api/v1/oidc/login")).send().await.unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_string();
        let p = problem(srv.http.get(&callback).send().await.unwrap(), 401).await;
        assert!(
            p["detail"].as_str().unwrap().contains("another browser"),
            "{p}"
        );
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
            b.get(srv.url("/api/v1/oidc/callback?code=x&state=made-up"))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        refused.push(("made up", p["audit_entry"].as_u64().unwrap()));
        let p = problem(
            b.get(srv.url("/api/v1/oidc/callback?code=x"))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
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

/// Add an account with a password (`stele user add --password-stdin`).
fn add_with_password(srv: &Server, name: &str, password: &str) {
    use std::io::Write as _;
    let mut c = std::process::Command::new(stele_tests::stele_bin())
        .args([
            "user",
            "add",
            name,
            "--team",
            "finance",
            "--password-stdin",
            "--config",
        ])
        .arg(&srv.config)
        .env("STELE_STATE_DIR", &srv.s.state)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const PASSWORD: &str = "a long passphrase for pat";

/// Log `user` in for a browser session: the client (with the cookies), the
/// CSRF token and the session cookie's value.
async fn browser_login(srv: &Server, user: &str) -> (reqwest::Client, String, String) {
    let b = oidc::browser();
    let r = b
        .post(srv.url("/api/v1/login/browser"))
        .json(&json!({"user": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", srv.stderr());
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find_map(|c| c.strip_prefix("stele_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["method"], "password");
    (b, body["csrf_token"].as_str().unwrap().to_string(), cookie)
}

#[test]
fn browser_sessions_need_their_csrf_token_and_end_at_logout() {
    let mut srv = Server::start("", "");
    add_with_password(&srv, "pat", PASSWORD);
    let rt = runtime();
    // (what, entry, action the entry must record)
    let mut refused: Vec<(&str, u64, &str)> = Vec::new();
    rt.block_on(async {
        let (b, csrf, cookie) = browser_login(&srv, "pat").await;
        assert_eq!(
            b.get(srv.url("/api/v1/sessions"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let start = json!({"workspace": "books", "task": "t"});
        // The CSRF cookie travels by itself, as a forged cross-site
        // request's would: not enough.
        let p = problem(
            b.post(srv.url("/api/v1/sessions"))
                .json(&start)
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
        refused.push(("no csrf header", p["audit_entry"].as_u64().unwrap(), "csrf"));
        let p = problem(
            b.post(srv.url("/api/v1/sessions"))
                .header("x-csrf-token", "stl_wrong")
                .json(&start)
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
        refused.push(("wrong csrf", p["audit_entry"].as_u64().unwrap(), "csrf"));
        // Another live session's CSRF token is not this one's.
        let (_b2, csrf2, _) = browser_login(&srv, "pat").await;
        let p = problem(
            b.post(srv.url("/api/v1/sessions"))
                .header("x-csrf-token", &csrf2)
                .json(&start)
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
        refused.push((
            "other session's csrf",
            p["audit_entry"].as_u64().unwrap(),
            "csrf",
        ));
        // Logout changes state too.
        let p = problem(b.post(srv.url("/api/v1/logout")).send().await.unwrap(), 403).await;
        refused.push((
            "logout without csrf",
            p["audit_entry"].as_u64().unwrap(),
            "csrf",
        ));

        // Forged, doubled and expired cookies.
        let forged = format!("stele_session=stl_{}", "A".repeat(43));
        let p = problem(
            srv.http
                .get(srv.url("/api/v1/sessions"))
                .header("cookie", forged)
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        refused.push((
            "forged cookie",
            p["audit_entry"].as_u64().unwrap(),
            "authenticate",
        ));
        let doubled = format!(
            "stele_session={cookie}; stele_session=stl_{}",
            "B".repeat(43)
        );
        let p = problem(
            srv.http
                .get(srv.url("/api/v1/sessions"))
                .header("cookie", doubled)
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        refused.push((
            "doubled cookie",
            p["audit_entry"].as_u64().unwrap(),
            "authenticate",
        ));
        let (b3, _, _) = browser_login(&srv, "pat").await;
        let db = rusqlite::Connection::open(srv.store()).unwrap();
        assert_eq!(
            db.execute(
                "UPDATE web_sessions SET expires = 1 \
                 WHERE rowid = (SELECT max(rowid) FROM web_sessions)",
                [],
            )
            .unwrap(),
            1
        );
        drop(db);
        let p = problem(
            b3.get(srv.url("/api/v1/sessions")).send().await.unwrap(),
            401,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
        refused.push((
            "expired cookie",
            p["audit_entry"].as_u64().unwrap(),
            "authenticate",
        ));

        // Logout with the token ends the session; the old cookie is dead.
        let r = b
            .post(srv.url("/api/v1/logout"))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(r.headers().get_all("set-cookie").iter().any(|c| {
            let c = c.to_str().unwrap();
            c.starts_with("stele_session=;") && c.contains("Max-Age=0")
        }));
        let p = problem(
            srv.http
                .get(srv.url("/api/v1/sessions"))
                .header("cookie", format!("stele_session={cookie}"))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("logged out"), "{p}");
        refused.push((
            "after logout",
            p["audit_entry"].as_u64().unwrap(),
            "authenticate",
        ));

        // Bearer requests need no CSRF token; logout with one revokes it.
        let r = srv
            .http
            .post(srv.url("/api/v1/login"))
            .json(&json!({"user": "pat", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let token = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = srv
            .http
            .post(srv.url("/api/v1/logout"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let p = problem(
            srv.http
                .get(srv.url("/api/v1/sessions"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
        refused.push((
            "revoked token",
            p["audit_entry"].as_u64().unwrap(),
            "authenticate",
        ));
    });
    srv.stop();
    let leaves = srv.leaves();
    for (what, seq, action) in &refused {
        let l = leaf(&leaves, *seq);
        assert_eq!(l["data"]["server_action"], *action, "{what}: {l}");
        assert_eq!(l["decision"]["effect"], "deny", "{what}");
    }
    assert_eq!(server_decisions(&leaves, "csrf").len(), 4);
    assert_eq!(server_decisions(&leaves, "logout").len(), 2);
    srv.verify();
}

#[test]
fn failed_logins_are_throttled_per_account_and_address_alike_for_unknown_names() {
    let mut srv = Server::start("", "");
    add_with_password(&srv, "pat", PASSWORD);
    let rt = runtime();
    let mut throttled = Vec::new();
    rt.block_on(async {
        let login = |user: String, pw: &'static str| {
            let srv = &srv;
            async move {
                srv.http
                    .post(srv.url("/api/v1/login"))
                    .json(&json!({"user": user, "password": pw}))
                    .send()
                    .await
                    .unwrap()
            }
        };
        // An existing and an unknown name go through the same steps.
        for name in ["pat", "nobody"] {
            for _ in 0..5 {
                problem(login(name.into(), "wrong password!").await, 401).await;
            }
            // Locked: even the right password is not tried.
            let p = problem(login(name.into(), PASSWORD).await, 429).await;
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("too many failed logins"),
                "{p}"
            );
            throttled.push((name.to_string(), p["audit_entry"].as_u64().unwrap()));
        }
        // 10 failures so far from 127.0.0.1; 10 more over fresh names lock the address.
        for i in 0..10 {
            problem(login(format!("u{i}"), "wrong password!").await, 401).await;
        }
        let p = problem(login("someone-new".into(), "wrong password!").await, 429).await;
        throttled.push(("someone-new".into(), p["audit_entry"].as_u64().unwrap()));
        // Browser logins share the limits.
        let p = problem(
            srv.http
                .post(srv.url("/api/v1/login/browser"))
                .json(&json!({"user": "pat", "password": PASSWORD}))
                .send()
                .await
                .unwrap(),
            429,
        )
        .await;
        throttled.push(("pat".into(), p["audit_entry"].as_u64().unwrap()));
    });
    srv.stop();
    let leaves = srv.leaves();
    let scopes: Vec<_> = throttled
        .iter()
        .map(|(who, seq)| {
            let l = leaf(&leaves, *seq);
            assert_eq!(l["data"]["server_action"], "login");
            assert_eq!(l["data"]["status"], 429);
            assert_eq!(l["decision"]["effect"], "deny");
            assert_eq!(l["actor"]["principal"], who.as_str());
            l["decision"]["reason"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        scopes[0].contains("(account)") && scopes[1].contains("(account)"),
        "{scopes:?}"
    );
    assert!(scopes[2].contains("(address)"), "{scopes:?}");
    let failures = server_decisions(&leaves, "login")
        .into_iter()
        .filter(|l| l["data"]["status"] == 401)
        .inspect(|l| assert_eq!(l["data"]["address"], "127.0.0.1", "{l}"))
        .count();
    assert_eq!(failures, 20);
    srv.verify();
}

/// `stele token ARGS… --config CFG`: (success, stdout, stderr).
fn token_cmd(srv: &Server, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", srv.config.to_str().unwrap()]);
    let o = srv.s.run(&all).unwrap();
    (
        o.status.success(),
        String::from_utf8(o.stdout).unwrap().trim().to_string(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn token_scopes_are_enforced_per_route_and_revocation_is_recorded_before_it_refuses() {
    let mut srv = Server::start("", "");
    let scoped = |scope: &str| {
        let (ok, token, err) = token_cmd(&srv, &["create", "--user", "alice", "--scope", scope]);
        assert!(ok, "{err}");
        token
    };
    let (read, run, approve) = (scoped("read"), scoped("run"), scoped("approve"));
    let (ok, _, err) = token_cmd(
        &srv,
        &["create", "--user", "alice", "--scope", "read,write"],
    );
    assert!(
        !ok && err.contains("--scope") && err.contains("write"),
        "{err}"
    );
    let (ok, full, err) = token_cmd(&srv, &["create", "--user", "alice"]);
    assert!(ok);
    let id = err
        .split("token ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 12, "{err}");
    let rt = runtime();
    let mut refused = Vec::new();
    let mut revoked_refusal = 0;
    rt.block_on(async {
        let start = json!({"workspace": "books", "task": "t"});
        let get = |t: &str| {
            srv.http
                .get(srv.url("/api/v1/sessions"))
                .bearer_auth(t.to_string())
                .send()
        };
        let post = |t: &str, path: &str, body: &Value| {
            srv.http
                .post(srv.url(path))
                .bearer_auth(t.to_string())
                .json(body)
                .send()
        };
        assert_eq!(get(&read).await.unwrap().status(), 200);
        for (what, r, scope) in [
            (
                "read token starts",
                post(&read, "/api/v1/sessions", &start).await.unwrap(),
                "run",
            ),
            (
                "read token answers",
                post(&read, "/api/v1/approvals/1", &json!({}))
                    .await
                    .unwrap(),
                "approve",
            ),
            ("run token lists", get(&run).await.unwrap(), "read"),
            (
                "run token answers",
                post(&run, "/api/v1/approvals/1", &json!({})).await.unwrap(),
                "approve",
            ),
            (
                "approve token starts",
                post(&approve, "/api/v1/sessions", &start).await.unwrap(),
                "run",
            ),
            (
                "approve token reads events",
                srv.http
                    .get(srv.url("/api/v1/sessions/x/events"))
                    .bearer_auth(&approve)
                    .send()
                    .await
                    .unwrap(),
                "read",
            ),
        ] {
            let p = problem(r, 403).await;
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{scope}` scope")),
                "{what}: {p}"
            );
            refused.push((what, p["audit_entry"].as_u64().unwrap()));
        }
        // Revoked on the host: refused at once, and the revocation is logged first.
        assert_eq!(get(&full).await.unwrap().status(), 200);
        let (ok, _, err) = token_cmd(&srv, &["revoke", &id]);
        assert!(ok, "{err}");
        let p = problem(get(&full).await.unwrap(), 401).await;
        assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
        revoked_refusal = p["audit_entry"].as_u64().unwrap();
        let (ok, _, err) = token_cmd(&srv, &["revoke", &id]);
        assert!(!ok && err.contains("no live token"), "{err}");
        let (ok, _, err) = token_cmd(&srv, &["revoke", "../etc"]);
        assert!(!ok && err.contains("ID"), "{err}");
    });
    srv.stop();
    let leaves = srv.leaves();
    for (what, seq) in refused {
        let l = leaf(&leaves, seq);
        assert_eq!(l["data"]["server_action"], "scope", "{what}: {l}");
        assert_eq!(l["decision"]["effect"], "deny", "{what}");
        assert_eq!(l["actor"]["principal"], "alice", "{what}");
    }
    let revokes = server_decisions(&leaves, "token.revoke");
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0]["data"]["token_id"], id.as_str());
    assert_eq!(revokes[0]["data"]["subject"], "alice");
    assert!(revokes[0]["seq"].as_u64().unwrap() < revoked_refusal);
    let created = server_decisions(&leaves, "token.create");
    assert!(created.iter().any(|c| c["data"]["scopes"] == "read"));
    srv.verify();
}
