//! The server's API as the end-to-end tests call it: requests with a
//! token, a session started in `books`, waiting for a session's state or
//! for a question in the approvals queue, and RFC 9457 problems.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Server;

/// `GET path` with `token`.
pub async fn get(srv: &Server, token: &str, path: &str) -> reqwest::Response {
    srv.http
        .get(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// `POST path` with `token` and the JSON `body`.
pub async fn post(srv: &Server, token: &str, path: &str, body: Value) -> reqwest::Response {
    srv.http
        .post(srv.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// `DELETE path` with `token`.
pub async fn delete(srv: &Server, token: &str, path: &str) -> reqwest::Response {
    srv.http
        .delete(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The problem document of `r`, which must have `status` (RFC 9457: its
/// media type, the same status in the body, a detail).
pub async fn problem(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], status, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p
}

/// Start a session on `task` in workspace `books`; its id.
pub async fn start_session(srv: &Server, token: &str, task: &str) -> String {
    let r = post(
        srv,
        token,
        "/api/v1/sessions",
        json!({"workspace": "books", "task": task}),
    )
    .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}\n{}", srv.stderr());
    body["id"].as_str().unwrap().to_string()
}

/// A session's detail.
pub async fn session(srv: &Server, token: &str, id: &str) -> Value {
    get(srv, token, &format!("/api/v1/sessions/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// Wait (at most 90 s) until session `id` is in state `want`; its detail.
pub async fn wait_state(srv: &Server, token: &str, id: &str, want: &str) -> Value {
    let began = Instant::now();
    loop {
        let s = session(srv, token, id).await;
        if s["state"] == want {
            return s;
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "session never {want}: {s}\n{}",
            srv.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The questions `token`'s account may answer now.
pub async fn pending(srv: &Server, token: &str) -> Vec<Value> {
    let l: Value = get(srv, token, "/api/v1/approvals")
        .await
        .json()
        .await
        .unwrap();
    l["approvals"].as_array().unwrap().clone()
}

/// Wait (at most 60 s) for a question other than those in `not`; it.
pub async fn wait_pending(srv: &Server, token: &str, not: &[String]) -> Value {
    let began = Instant::now();
    loop {
        if let Some(a) = pending(srv, token)
            .await
            .into_iter()
            .find(|a| !not.iter().any(|n| a["approval_id"] == n.as_str()))
        {
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

/// Answer question `a` (as listed) with `outcome` (`granted`, `refused`).
pub async fn answer(srv: &Server, token: &str, a: &Value, outcome: &str) -> reqwest::Response {
    post(
        srv,
        token,
        &format!("/api/v1/approvals/{}", a["approval_id"].as_str().unwrap()),
        json!({"shown_sha256": a["shown_sha256"], "outcome": outcome}),
    )
    .await
}
