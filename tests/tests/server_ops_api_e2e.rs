#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The API the web app's operations pages use, against the real `stele
//! serve` without a browser: schedule pause/unpause (`schedule.manage`,
//! recorded, conflicts named, the `run` scope), the admin views (`admin`,
//! recorded, refused to everyone the policy does not make an admin and to
//! tokens without the `admin` scope), a session's outputs (what its log
//! records as written, seen only by who may view the session), the sign-in
//! methods and `me`.

mod e2e_common;
mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{runtime, server_decisions, Server};
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

async fn call(
    srv: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = srv.http.request(m, srv.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn new_schedule() -> Value {
    json!({"cron": "0 7 * * 1-5", "timezone": "Europe/Paris", "workspace": "books", "task": "morning report"})
}

#[test]
fn a_schedule_is_paused_and_unpaused_by_who_may_manage_it_each_change_recorded() {
    let mut srv = Server::start("", "");
    let (alice, dave, carol, rita) = (
        srv.token("alice"),
        srv.token("dave"),
        srv.token("carol"),
        srv.token("rita"),
    );
    let read_only = srv.token_scoped("alice", "read");
    let id = runtime().block_on(async {
        let (s, created) = call(
            &srv,
            &alice,
            "POST",
            "/api/v1/schedules",
            Some(new_schedule()),
        )
        .await;
        assert_eq!(s, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        assert!(created.get("paused").is_none(), "{created}");
        let pause = format!("/api/v1/schedules/{id}/pause");
        let unpause = format!("/api/v1/schedules/{id}/unpause");
        // Another team's approver and a reviewer may not; nor a read-only token.
        for t in [&carol, &rita] {
            assert_eq!(call(&srv, t, "POST", &pause, None).await.0, 403);
        }
        assert_eq!(call(&srv, &read_only, "POST", &pause, None).await.0, 403);
        let (s, paused) = call(&srv, &alice, "POST", &pause, None).await;
        assert_eq!(s, 200, "{paused}");
        assert_eq!(paused["paused"]["by"], "alice", "{paused}");
        assert!(paused.get("next_run").is_none(), "{paused}");
        // As the store keeps it.
        let (_, again) = call(
            &srv,
            &alice,
            "GET",
            &format!("/api/v1/schedules/{id}"),
            None,
        )
        .await;
        assert_eq!(again["paused"], paused["paused"]);
        // Twice is a conflict, named.
        let (s, p) = call(&srv, &dave, "POST", &pause, None).await;
        assert_eq!(s, 409, "{p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("paused already (by alice)"),
            "{p}"
        );
        // A member of the team may unpause it (members manage their teams' schedules).
        let (s, running) = call(&srv, &dave, "POST", &unpause, None).await;
        assert_eq!(s, 200, "{running}");
        assert!(running.get("paused").is_none(), "{running}");
        assert!(running["next_run"].is_string(), "{running}");
        let (s, p) = call(&srv, &alice, "POST", &unpause, None).await;
        assert_eq!(s, 409, "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains("is not paused"),
            "{p}"
        );
        assert_eq!(
            call(
                &srv,
                &alice,
                "POST",
                "/api/v1/schedules/sch-nope/pause",
                None
            )
            .await
            .0,
            404
        );
        id
    });
    srv.stop();
    let leaves = srv.leaves();
    let decided: Vec<(String, String, String)> = server_decisions(&leaves, "schedule.manage")
        .into_iter()
        .filter(|l| l["data"]["schedule"] == id.as_str())
        .map(|l| {
            (
                l["actor"]["principal"].as_str().unwrap().to_string(),
                l["data"]["change"].as_str().unwrap().to_string(),
                l["decision"]["effect"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, c, _)| c != "none")
        .collect();
    let want: Vec<(String, String, String)> = [
        ("alice", "create", "allow"),
        ("carol", "pause", "deny"),
        ("rita", "pause", "deny"),
        ("alice", "pause", "allow"),
        ("dave", "pause", "allow"),
        ("dave", "unpause", "allow"),
        ("alice", "unpause", "allow"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(
        decided, want,
        "every attempt is decided and recorded before it acts"
    );
    srv.verify();
}

#[test]
fn the_admin_views_are_for_admins_with_the_admin_scope_and_every_read_is_recorded() {
    let mut srv = Server::start("", "");
    let o = srv
        .s
        .run(&[
            "user",
            "add",
            "ada",
            "--team",
            "finance",
            "--role",
            "admin",
            "--config",
            srv.config.to_str().unwrap(),
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Recorded at the next start.
    srv.stop();
    srv.spawn();
    // Tokens that may be used for administration: the policy decides who is an admin.
    let (ada, alice, rita) = (
        srv.token_scoped("ada", "read,admin"),
        srv.token_scoped("alice", "read,admin"),
        srv.token_scoped("rita", "read,admin"),
    );
    // An admin's token without the admin scope.
    let ada_read = srv.token_scoped("ada", "read");
    runtime().block_on(async {
        for what in ["users", "workspaces", "policy", "health"] {
            let path = format!("/api/v1/admin/{what}");
            for t in [&alice, &rita] {
                let (s, p) = call(&srv, t, "GET", &path, None).await;
                assert_eq!(s, 403, "{what}: {p}");
                assert!(p["audit_entry"].is_u64(), "{p}");
            }
            let (s, p) = call(&srv, &ada_read, "GET", &path, None).await;
            assert_eq!(s, 403, "{what} with a read-only token: {p}");
            let (s, v) = call(&srv, &ada, "GET", &path, None).await;
            assert_eq!(s, 200, "{what}: {v}");
        }
        let (_, users) = call(&srv, &ada, "GET", "/api/v1/admin/users", None).await;
        let names: Vec<&str> = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        for n in ["ada", "alice", "bob", "carol", "dave", "rita"] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(
            !users.to_string().contains("argon2"),
            "no password hash leaves: {users}"
        );
        let (_, policy) = call(&srv, &ada, "GET", "/api/v1/admin/policy", None).await;
        let files: Vec<&str> = policy["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert!(files.contains(&"members.toml"), "{files:?}");
        assert!(files.contains(&"teams/finance/finance.cedar"), "{files:?}");
        assert!(
            policy["digest"].as_str().unwrap().starts_with("sha256:"),
            "{policy}"
        );
        let (_, health) = call(&srv, &ada, "GET", "/api/v1/admin/health", None).await;
        assert_eq!(health["ready"], true, "{health}");
        assert!(health["log_entries"].as_u64().unwrap() > 0, "{health}");
        let (_, ws) = call(&srv, &ada, "GET", "/api/v1/admin/workspaces", None).await;
        assert_eq!(ws["workspaces"][0]["name"], "books", "{ws}");
    });
    srv.stop();
    let leaves = srv.leaves();
    let admin = server_decisions(&leaves, "admin");
    let count = |who: &str, effect: &str| {
        admin
            .iter()
            .filter(|l| l["actor"]["principal"] == who && l["decision"]["effect"] == effect)
            .count()
    };
    // Four views read by ada (plus the extra reads above), four refusals each for alice and rita.
    assert_eq!(count("ada", "allow"), 8);
    assert_eq!((count("alice", "deny"), count("rita", "deny")), (4, 4));
    srv.verify();
}

async fn wait_ended(srv: &Server, token: &str, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = call(srv, token, "GET", &format!("/api/v1/sessions/{id}"), None).await;
        if s["state"] == "ended" || s["state"] == "failed" {
            return s;
        }
        assert!(
            Instant::now() < until,
            "the session did not end: {s}\n{}",
            srv.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_sessions_outputs_are_the_writes_its_log_records_and_only_its_viewers_see_them() {
    if !sandbox_available(
        "a_sessions_outputs_are_the_writes_its_log_records_and_only_its_viewers_see_them",
    ) {
        return;
    }
    let mut srv = Server::start("", "");
    for t in [
        // Written twice: listed once, as last written.
        Turn::new().tool_use(
            "a",
            "file_write",
            json!({"path": "reports/a.txt", "content": "one\n"}),
        ),
        Turn::new().tool_use(
            "b",
            "file_write",
            json!({"path": "reports/b.txt", "content": "two\n"}),
        ),
        Turn::new().tool_use(
            "c",
            "file_write",
            json!({"path": "reports/a.txt", "content": "three\n"}),
        ),
        // Refused by policy: never an output.
        Turn::new().tool_use(
            "d",
            "file_write",
            json!({"path": "receipts/forged.txt", "content": "x\n"}),
        ),
        // Read only: never an output.
        Turn::new().tool_use("e", "file_read", json!({"path": "reports/b.txt"})),
        Turn::new().tool_use("f", "final_answer", json!({"answer": "done"})),
    ] {
        srv.mock.push(t.into());
    }
    let (alice, dave, bob, carol) = (
        srv.token("alice"),
        srv.token("dave"),
        srv.token("bob"),
        srv.token("carol"),
    );
    let id = runtime().block_on(async {
        let (s, started) = call(
            &srv,
            &alice,
            "POST",
            "/api/v1/sessions",
            Some(json!({"workspace": "books", "task": "write two reports"})),
        )
        .await;
        assert_eq!(s, 201, "{started}");
        let id = started["id"].as_str().unwrap().to_string();
        wait_ended(&srv, &alice, &id).await;
        let path = format!("/api/v1/sessions/{id}/outputs");
        let (s, o) = call(&srv, &alice, "GET", &path, None).await;
        assert_eq!(s, 200, "{o}");
        assert_eq!(o["workspace"], "books");
        let files: Vec<&str> = o["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(files, ["reports/b.txt", "reports/a.txt"], "{o}");
        let a = &o["files"][1];
        assert!(
            a["result_entry"].as_u64() > a["intent_entry"].as_u64(),
            "{a}"
        );
        // Its team's approver sees them; another member and another team do not.
        assert_eq!(call(&srv, &bob, "GET", &path, None).await.0, 200);
        for t in [&dave, &carol] {
            let (s, p) = call(&srv, t, "GET", &path, None).await;
            assert_eq!(s, 403, "{p}");
        }
        // Another session's write is its own output, never this one's.
        srv.mock.push(
            Turn::new()
                .tool_use(
                    "g",
                    "file_write",
                    json!({"path": "reports/c.txt", "content": "c\n"}),
                )
                .into(),
        );
        srv.mock.push(
            Turn::new()
                .tool_use("h", "final_answer", json!({"answer": "c"}))
                .into(),
        );
        let (_, other) = call(
            &srv,
            &alice,
            "POST",
            "/api/v1/sessions",
            Some(json!({"workspace": "books", "task": "write c"})),
        )
        .await;
        let other = other["id"].as_str().unwrap().to_string();
        wait_ended(&srv, &alice, &other).await;
        let (_, o2) = call(
            &srv,
            &alice,
            "GET",
            &format!("/api/v1/sessions/{other}/outputs"),
            None,
        )
        .await;
        assert_eq!(o2["files"].as_array().unwrap().len(), 1, "{o2}");
        assert_eq!(o2["files"][0]["path"], "reports/c.txt", "{o2}");
        let (_, again) = call(&srv, &alice, "GET", &path, None).await;
        assert_eq!(
            again["files"], o["files"],
            "the first session's outputs did not change"
        );
        assert_eq!(
            call(&srv, &alice, "GET", "/api/v1/sessions/s-nope/outputs", None)
                .await
                .0,
            404
        );
        id
    });
    assert_eq!(
        std::fs::read_to_string(srv.ws.join("reports/a.txt")).unwrap(),
        "three\n"
    );
    assert!(!srv.ws.join("receipts/forged.txt").exists());
    srv.stop();
    let leaves = srv.leaves();
    let views: Vec<&Value> = server_decisions(&leaves, "session.view")
        .into_iter()
        .filter(|l| l["data"]["outputs"] == true && l["data"]["session"] == id.as_str())
        .collect();
    assert_eq!(
        views.len(),
        5,
        "each look at the outputs is decided and recorded"
    );
    srv.verify();
}

#[test]
fn sign_in_methods_are_public_and_me_is_the_credentials_own() {
    let srv = Server::start("", "");
    let alice = srv.token("alice");
    runtime().block_on(async {
        let r = srv
            .http
            .get(srv.url("/api/v1/login/methods"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"password": true}));
        let (s, me) = call(&srv, &alice, "GET", "/api/v1/me", None).await;
        assert_eq!(s, 200, "{me}");
        assert_eq!(
            me,
            json!({"user": "alice", "teams": ["finance"], "role": "member", "method": "token"})
        );
        let r = srv.http.get(srv.url("/api/v1/me")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    });
}

/// The new state-changing routes are guarded like every other: a browser
/// session's request without its CSRF token (what a forged cross-site
/// request carries: the cookies, by themselves) is refused and changes
/// nothing; with it, it works.
#[test]
fn pausing_from_a_browser_session_needs_its_csrf_token() {
    use std::io::Write as _;
    let srv = Server::start("", "");
    let password = "a long passphrase for pat";
    let mut c = std::process::Command::new(stele_tests::stele_bin())
        .args([
            "user", "add", "pat", "--team", "finance", "--role", "member",
        ])
        .args(["--password-stdin", "--config"])
        .arg(&srv.config)
        .env("STELE_STATE_DIR", &srv.s.state)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
    let alice = srv.token("alice");
    runtime().block_on(async {
        let (_, created) = call(
            &srv,
            &alice,
            "POST",
            "/api/v1/schedules",
            Some(new_schedule()),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_string();
        let b = server_support::oidc::browser();
        let r = b
            .post(srv.url("/api/v1/login/browser"))
            .json(&json!({"user": "pat", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
            .as_str()
            .unwrap()
            .to_string();
        for what in ["pause", "unpause"] {
            let url = srv.url(&format!("/api/v1/schedules/{id}/{what}"));
            for bad in [None, Some("stl_wrong")] {
                let mut r = b.post(&url);
                if let Some(t) = bad {
                    r = r.header("x-csrf-token", t);
                }
                let r = r.send().await.unwrap();
                assert_eq!(r.status(), 403, "{what} with {bad:?}");
                let (_, s) = call(
                    &srv,
                    &alice,
                    "GET",
                    &format!("/api/v1/schedules/{id}"),
                    None,
                )
                .await;
                assert_eq!(
                    s["paused"].is_object(),
                    what == "unpause",
                    "{what} with {bad:?} changed it: {s}"
                );
            }
            let r = b
                .post(&url)
                .header("x-csrf-token", &csrf)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{what} with the token");
        }
    });
}
