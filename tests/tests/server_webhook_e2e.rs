#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Webhooks end to end: the real `stele serve` notifies real HTTP
//! receivers started by the test. A receiver that checks the signature
//! the way docs/server.md tells one to (HMAC-SHA256 over `t.body` with the
//! shared secret, in constant time, `t` within a replay window) accepts
//! the approval notice, and the test answers the approval with nothing but
//! what the notice carried; a receiver that fails twice gets the same
//! delivery a third time and takes it; a receiver that holds another
//! secret refuses every attempt, and the server gives up after its
//! attempts and records that in the log. A session never waits for a hook.
//! A secret file others may read stops the server from starting.

mod e2e_common;
mod server_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use server_support::api::{start_session, wait_pending};
use server_support::{runtime, server_decisions, Server};
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    event: String,
    delivery: String,
    t: i64,
    valid: bool,
    body: Value,
    answered: u16,
}

/// A receiver: the secret it checks with, how many requests it fails first.
struct Receiver {
    secret: Vec<u8>,
    fail_first: usize,
    got: Mutex<Vec<Got>>,
}

/// Verify `Stele-Signature: t=…,v1=…` over `t.body` as a receiver would.
fn verify(secret: &[u8], header: &str, body: &[u8], window: Duration) -> Result<i64, String> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or("no t")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).unsigned_abs() > window.as_secs() {
        return Err(format!("t={t} is outside the replay window"));
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    for sig in v1 {
        let Ok(mac) = (0..sig.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(sig.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
        else {
            continue;
        };
        // Constant time.
        if ring::hmac::verify(&key, &signed, &mac).is_ok() {
            return Ok(t);
        }
    }
    Err("no valid v1 signature".into())
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let checked = verify(
        &r.secret,
        &h("stele-signature"),
        &body,
        Duration::from_secs(300),
    );
    let mut got = r.got.lock().unwrap();
    let answered = if checked.is_err() {
        StatusCode::UNAUTHORIZED
    } else if got.len() < r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    got.push(Got {
        event: h("stele-event"),
        delivery: h("stele-delivery"),
        t: checked.as_ref().copied().unwrap_or_default(),
        valid: checked.is_ok(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: answered.as_u16(),
    });
    answered
}

/// Start a receiver on 127.0.0.1 (on a runtime of its own); its URL.
fn receiver(rt: &tokio::runtime::Runtime, r: Arc<Receiver>) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r);
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn secret_file(dir: &std::path::Path, name: &str, secret: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn new_receiver(secret: &str, fail_first: usize) -> Arc<Receiver> {
    Arc::new(Receiver {
        secret: secret.as_bytes().to_vec(),
        fail_first,
        got: Mutex::new(Vec::new()),
    })
}

fn wait_for(r: &Receiver, what: &str, ok: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let began = Instant::now();
    loop {
        let got = r.got.lock().unwrap().clone();
        if ok(&got) {
            return got;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{what}: {got:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const GOOD: &str = "6f1c0b9e7d3a5f2e8c4b1a0d9e8f7c6b";
const OTHER: &str = "a-different-secret-the-receiver-has";

#[test]
fn approvals_are_notified_signed_retried_and_refused_with_the_wrong_secret() {
    if !sandbox_available("approvals_are_notified_signed_retried_and_refused_with_the_wrong_secret")
    {
        return;
    }
    let hooks_rt = runtime();
    let (ok, flaky, wrong) = (
        new_receiver(GOOD, 0),
        new_receiver(GOOD, 2),
        new_receiver(OTHER, 0),
    );
    let (ok_url, flaky_url, wrong_url) = (
        receiver(&hooks_rt, ok.clone()),
        receiver(&hooks_rt, flaky.clone()),
        receiver(&hooks_rt, wrong.clone()),
    );
    // A receiver that accepts and never answers: no session may wait for it.
    let silent = hooks_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let silent_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = silent_calls.clone();
    hooks_rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(c);
        }
    });
    let secrets = tempfile::tempdir().unwrap();
    let s1 = secret_file(secrets.path(), "s1", GOOD, 0o600);
    let s2 = secret_file(secrets.path(), "s2", GOOD, 0o400);
    let toml = format!(
        "public_url = \"https://stele.example\"\n\
         [[webhook]]\nurl = {ok_url:?}\nsecret_file = {s1:?}\n\
         events = [\"approval_requested\", \"session_ended\"]\nbackoff_ms = 50\n\
         [[webhook]]\nurl = {flaky_url:?}\nsecret_file = {s2:?}\nbackoff_ms = 50\nmax_attempts = 4\n\
         [[webhook]]\nurl = {wrong_url:?}\nsecret_file = {s1:?}\nbackoff_ms = 50\nmax_attempts = 3\n\
         [[webhook]]\nurl = {silent_url:?}\nsecret_file = {s1:?}\ntimeout_secs = 600\n\
         events = [\"approval_requested\", \"session_ended\"]\n"
    );
    let mut srv = Server::start("", &toml);
    // The letter in outbox/ needs another finance member's approval.
    srv.mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "outbox/letter.txt", "content": "Dear Acme, the secret terms"}),
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
    let id = rt.block_on(async { start_session(&srv, &alice, "write the letter").await });

    // The notice, verified at the receiver, carries what an approver needs.
    let got = wait_for(&ok, "the approval notice", |g| {
        g.iter().any(|g| g.event == "approval_requested")
    });
    let n = got
        .iter()
        .find(|g| g.event == "approval_requested")
        .unwrap();
    assert!(n.valid, "{n:#?}");
    assert_eq!(n.answered, 200);
    let a = &n.body["approval"];
    assert_eq!(n.body["event"], "approval_requested");
    assert_eq!(n.body["delivery"], n.delivery);
    assert_eq!(a["session"], id);
    assert_eq!(a["requester"], "alice");
    assert!(a["deadline"].as_str().is_some_and(|d| !d.is_empty()), "{a}");
    let aid = a["approval_id"].as_str().unwrap().to_string();
    assert_eq!(
        a["link"],
        format!("https://stele.example/api/v1/approvals/{aid}")
    );
    // Not the shown text, nor what the session is writing.
    assert!(a.get("shown").is_none(), "{a}");
    assert!(!n.body.to_string().contains("secret terms"), "{}", n.body);

    // Answered with what the notice carried, and nothing else.
    rt.block_on(async {
        let r = srv
            .http
            .post(srv.url(&format!("/api/v1/approvals/{aid}")))
            .bearer_auth(&bob)
            .header("content-type", "application/json")
            .body(json!({"shown_sha256": a["shown_sha256"], "outcome": "granted"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    });
    // Neither the silent receiver (600 s timeout) nor the failing ones held it up.
    let began = Instant::now();
    let got = wait_for(&ok, "the session's end", |g| {
        g.iter().any(|g| g.event == "session_ended")
    });
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    // Both notices reach the silent receiver, which answers neither (each
    // delivery runs on its own: the second may land just after the end
    // reached the good receiver).
    let waited = Instant::now();
    while silent_calls.load(std::sync::atomic::Ordering::SeqCst) < 2
        && waited.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(silent_calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let end = got.iter().find(|g| g.event == "session_ended").unwrap();
    assert!(end.valid);
    assert_eq!(end.body["session"]["id"], id);
    assert_eq!(end.body["session"]["owner"], "alice");
    assert_eq!(end.body["session"]["state"], "ended");

    // The flaky receiver: two failures, then the same delivery taken; signed afresh each time.
    let got = wait_for(&flaky, "three attempts", |g| g.len() >= 3);
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [500, 500, 200],
        "{got:#?}"
    );
    assert!(got
        .iter()
        .all(|g| g.valid && g.event == "approval_requested"));
    assert!(got.iter().all(|g| g.delivery == got[0].delivery));
    assert!(got.windows(2).all(|w| w[0].t <= w[1].t));
    // It asked only for approvals: no session_ended.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(flaky.got.lock().unwrap().len(), 3);

    // The receiver with another secret: every attempt fails its check.
    let got = wait_for(&wrong, "three refused attempts", |g| g.len() >= 3);
    assert!(
        got.iter().all(|g| !g.valid && g.answered == 401),
        "{got:#?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wrong.got.lock().unwrap().len(), 3, "more than max_attempts");

    // Giving up is in the log.
    let began = Instant::now();
    while !srv.stderr().contains("not delivered after 3 attempts") {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "{}",
            srv.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.stop();
    let leaves = srv.leaves();
    let gave_up = server_decisions(&leaves, "webhook.deliver");
    assert_eq!(gave_up.len(), 1, "{gave_up:?}");
    assert_eq!(gave_up[0]["data"]["url"], wrong_url);
    assert_eq!(gave_up[0]["data"]["attempts"], 3);
    assert_eq!(gave_up[0]["data"]["notice"]["approval"]["approval_id"], aid);
    assert!(!gave_up[0].to_string().contains(GOOD));
    srv.verify();
}

#[test]
fn a_webhook_secret_others_may_read_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = e2e_common::setup(dir.path());
    for (mode, want) in [
        (0o644, "chmod 600"),
        (0o640, "chmod 600"),
        (0o604, "chmod 600"),
    ] {
        let secret = secret_file(dir.path(), "secret", GOOD, mode);
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!("[[webhook]]\nurl = \"https://chat.example/hook\"\nsecret_file = {secret:?}\n"),
        )
        .unwrap();
        let o = s
            .run(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                config.to_str().unwrap(),
            ])
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{mode:o}: started");
        assert!(
            err.contains("webhook[0].secret_file")
                && err.contains(want)
                && err.contains("server.toml"),
            "{mode:o}: {err}"
        );
    }
    // A short secret too.
    let secret = secret_file(dir.path(), "short", "tooshort", 0o600);
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("[[webhook]]\nurl = \"https://chat.example/hook\"\nsecret_file = {secret:?}\n"),
    )
    .unwrap();
    let o = s
        .run(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 16"));
}

#[test]
fn a_session_paused_by_a_provider_outage_is_notified() {
    if !sandbox_available("a_session_paused_by_a_provider_outage_is_notified") {
        return;
    }
    let hooks_rt = runtime();
    let ok = new_receiver(GOOD, 0);
    let url = receiver(&hooks_rt, ok.clone());
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "s", GOOD, 0o600);
    // A short patience: the outage below pauses the session within seconds.
    // (Inherited by every server this test binary starts; only outages read it.)
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[provider.anthropic]\npatience_secs = 1.0\ninitial_backoff_secs = 0.2\n\
         max_backoff_secs = 0.5\nstall_timeout_secs = 2.0\n",
    )
    .unwrap();
    std::env::set_var("STELE_CONFIG", &config);
    let toml = format!(
        "[[webhook]]\nurl = {url:?}\nsecret_file = {secret:?}\n\
         events = [\"session_paused\", \"session_ended\"]\n"
    );
    let srv = Server::start("", &toml);
    srv.mock.push(stele_tests::mock_model::Reply::Outage {
        refused_for: Duration::from_secs(60),
    });
    let alice = srv.token("alice");
    let rt = runtime();
    let id = rt.block_on(async { start_session(&srv, &alice, "sum the receipts").await });
    let got = wait_for(&ok, "the pause", |g| {
        g.iter().any(|g| g.event == "session_paused")
    });
    let p = got.iter().find(|g| g.event == "session_paused").unwrap();
    assert!(p.valid, "{p:#?}");
    assert_eq!(p.body["session"]["id"], id);
    assert_eq!(p.body["session"]["state"], "paused");
    assert_eq!(p.body["session"]["workspace"], "books");
    // The session link is null without server.public_url.
    assert!(p.body["session"]["link"].is_null(), "{}", p.body);
    // Paused is not ended, and no approval was asked for.
    assert!(got.iter().all(|g| g.event == "session_paused"), "{got:#?}");
}

#[test]
fn an_undelivered_webhook_survives_a_restart_and_is_delivered_once() {
    if !sandbox_available("an_undelivered_webhook_survives_a_restart_and_is_delivered_once") {
        return;
    }
    // The receiver is down: its port refuses connections.
    let hooks_rt = runtime();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}/hook");
    let secrets = tempfile::tempdir().unwrap();
    let s = secret_file(secrets.path(), "s", GOOD, 0o600);
    let toml = format!(
        "[[webhook]]\nurl = {url:?}\nsecret_file = {s:?}\nbackoff_ms = 300\nmax_attempts = 12\n"
    );
    let mut srv = Server::start("", &toml);
    srv.mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "outbox/letter.txt", "content": "Dear Acme"}),
            )
            .into(),
    );
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let asked = rt.block_on(async {
        start_session(&srv, &alice, "write the letter").await;
        wait_pending(&srv, &bob, &[]).await["approval_id"]
            .as_str()
            .unwrap()
            .to_string()
    });
    // At least two attempts fail while the receiver is down.
    let began = Instant::now();
    while !srv.stderr().contains("attempt 2 of 12 failed") {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "{}",
            srv.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.stop();
    // The receiver comes up on the same address, then the server restarts.
    let r = new_receiver(GOOD, 0);
    let listener = hooks_rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r.clone());
    hooks_rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    srv.spawn();
    wait_for(&r, "the kept delivery after the restart", |g| {
        g.iter()
            .any(|x| x.body["approval"]["approval_id"] == asked.as_str())
    });
    // Another moment: nothing of it arrives twice.
    std::thread::sleep(Duration::from_millis(1500));
    let got = r.got.lock().unwrap().clone();
    let kept: Vec<&Got> = got
        .iter()
        .filter(|x| x.body["approval"]["approval_id"] == asked.as_str())
        .collect();
    assert_eq!(kept.len(), 1, "delivered once: {got:#?}");
    assert!(kept[0].valid && kept[0].answered == 200, "{got:#?}");
    assert_eq!(kept[0].event, "approval_requested");
    assert!(kept[0].delivery.starts_with("d-"));
    // Every delivery the receiver took arrived once.
    let mut ids: Vec<&str> = got.iter().map(|x| x.delivery.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "{got:#?}");
    srv.stop();
    let leaves = srv.leaves();
    assert!(
        server_decisions(&leaves, "webhook.deliver").is_empty(),
        "nothing given up on"
    );
    srv.verify();
}
