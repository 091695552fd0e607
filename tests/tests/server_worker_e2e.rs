#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sessions run by `stele worker` processes (`[workers] run = "remote"`),
//! end to end: a real `stele serve` on a temporary PostgreSQL cluster, real
//! workers each on its own log, the mock model over the real wire. Several
//! sessions spread over two workers and all end, their events reach the
//! server's API once each and in order, and each worker's log verifies; an
//! approval asked on a worker is answered in the server's API; SIGTERM
//! drains a worker (its session paused, exit 0); a worker killed before its
//! session reached for an effect has the session run by another once the
//! lease runs out; worker tokens and user tokens stay on their own routes.
//! A job's calls are refused (403, recorded) to any account but the one
//! whose worker claimed it; a worker goes on through a server killed and
//! replaced by another on the same database, and through a restart.

mod e2e_common;
mod server_support;

use std::time::Duration;

use serde_json::{json, Value};
use server_support::api::{answer, get, post, problem, start_session, wait_pending, wait_state};
use server_support::worker::{free_listen, Alternate, Worker};
use server_support::{parse_sse, runtime, server_decisions, Server};
use stele_tests::mock_model::{Reply, Turn, Wire};
use stele_tests::postgres::TempCluster;
use stele_tests::sandbox_available;

/// A migrated PostgreSQL database for one server; None (said loudly) when
/// the machine has no PostgreSQL.
fn database(cluster: &TempCluster, name: &str) -> String {
    let url = cluster.create_db(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, "");
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\npolicy = {policy:?}\ndb = {:?}\n[store]\nurl = {url:?}\n",
            s.state.join("audit.db")
        ),
    )
    .unwrap();
    let o = s
        .run(&["serve", "--migrate", "--config", cfg.to_str().unwrap()])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    url
}

/// A server on `url` whose sessions run on workers, leases of `lease` seconds.
fn server(url: &str, extra: &str, lease: u64) -> Server {
    server_on(url, extra, lease, "127.0.0.1:0")
}

/// [`server`] listening on `listen`.
fn server_on(url: &str, extra: &str, lease: u64, listen: &str) -> Server {
    let srv = Server::start_on(
        extra,
        &format!("[store]\nurl = {url:?}\n[workers]\nrun = \"remote\"\nlease_secs = {lease}\n"),
        listen,
    );
    let config = srv.config.to_str().unwrap().to_string();
    let o = srv
        .s
        .run(&[
            "user", "add", "ada", "--team", "ops", "--role", "admin", "--config", &config,
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    srv
}

/// The whole event stream of an ended session.
async fn events(srv: &Server, token: &str, id: &str) -> Vec<(u64, Value)> {
    let r = get(srv, token, &format!("/api/v1/sessions/{id}/events")).await;
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .expect("the event stream did not end with the session")
        .unwrap();
    parse_sse(&body)
}

/// Wait (at most 30 s) until session `id` has an event `kind`.
async fn wait_event(srv: &Server, token: &str, id: &str, kind: &str) {
    let began = std::time::Instant::now();
    loop {
        let mut r = get(srv, token, &format!("/api/v1/sessions/{id}/events")).await;
        let mut body = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(300), r.chunk()).await
        {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        if parse_sse(&body).iter().any(|(_, e)| e["event"] == kind) {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "session {id}: no {kind} event\n{}",
            srv.stderr()
        );
    }
}

/// Every event once, numbered 1, 2, … in order, one start and one end.
fn once_in_order(id: &str, evs: &[(u64, Value)]) {
    let ns: Vec<u64> = evs.iter().map(|(n, _)| *n).collect();
    let want: Vec<u64> = (1..=evs.len() as u64).collect();
    assert_eq!(ns, want, "session {id}: {evs:?}");
    for kind in ["start", "end"] {
        let n = evs.iter().filter(|(_, e)| e["event"] == kind).count();
        assert_eq!(n, 1, "session {id}: {kind} events: {evs:?}");
    }
    assert_eq!(evs.last().unwrap().1["event"], "end", "{evs:?}");
}

fn sleep_then_finish(srv: &Server, n: usize) {
    for _ in 0..n {
        srv.mock.push(
            Turn::new()
                .tool_use(
                    "x",
                    "exec",
                    json!({"argv": ["python3", "-c", "import time; time.sleep(1)"]}),
                )
                .into(),
        );
        srv.mock.push(
            Turn::new()
                .tool_use("f", "final_answer", json!({"answer": "done"}))
                .into(),
        );
    }
}

#[test]
fn sessions_spread_over_two_workers_and_reach_the_api_once_each() {
    const NAME: &str = "sessions_spread_over_two_workers_and_reach_the_api_once_each";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "spread");
    let srv = server(&url, "", 30);
    let (alice, ada) = (srv.token("alice"), srv.token_scoped("ada", "read,admin"));
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w1 = Worker::start(&srv, "w1", &wtoken, 1);
    let mut w2 = Worker::start(&srv, "w2", &wtoken, 1);
    sleep_then_finish(&srv, 4);
    let rt = runtime();
    let ids = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(start_session(&srv, &alice, &format!("task {i}")).await);
        }
        // Queued first: the row is there before any worker runs it.
        let first: Value = get(&srv, &alice, &format!("/api/v1/sessions/{}", ids[3]))
            .await
            .json()
            .await
            .unwrap();
        // Both workers are busy with the first two for a second at least.
        assert_eq!(first["state"], "starting", "{first}");
        assert_eq!(first["detail"], "queued for a worker", "{first}");
        for id in &ids {
            wait_state(&srv, &alice, id, "ended").await;
            once_in_order(id, &events(&srv, &alice, id).await);
        }
        // The admins' listing names both workers and their keys.
        let l: Value = get(&srv, &ada, "/api/v1/worker")
            .await
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = l["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["w1", "w2"],
            "{l}\n{}\n{}\n{}",
            w1.stderr(),
            w2.stderr(),
            srv.stderr()
        );
        for w in l["workers"].as_array().unwrap() {
            let name = w["name"].as_str().unwrap();
            assert!(
                w["verifier"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{name}.e2e.stele.invalid/log+")),
                "{w}"
            );
        }
        // A worker token opens the worker API only; a user token never does.
        for (m, p) in [
            ("GET", "/api/v1/sessions"),
            ("GET", "/api/v1/worker"),
            ("POST", "/api/v1/sessions"),
        ] {
            let r = if m == "GET" {
                get(&srv, &wtoken, p).await
            } else {
                post(&srv, &wtoken, p, json!({"workspace": "books", "task": "x"})).await
            };
            problem(r, 403).await;
        }
        for t in [&alice, &ada] {
            let r = post(
                &srv,
                t,
                "/api/v1/worker/claim",
                json!({"name": "intruder", "verifier": "x"}),
            )
            .await;
            problem(r, 403).await;
        }
        let r = get(&srv, &alice, "/api/v1/worker").await;
        problem(r, 403).await;
        ids
    });
    // A session in the middle of a tool when its worker gets SIGTERM: the
    // worker drains, the session is reported paused, the worker exits 0.
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "import time; time.sleep(2)"]}),
            )
            .into(),
    );
    let busy = rt.block_on(async {
        let id = start_session(&srv, &alice, "a long one").await;
        wait_event(&srv, &alice, &id, "tool_call").await;
        id
    });
    let ids: Vec<String> = ids.into_iter().chain([busy.clone()]).collect();
    for w in [&mut w1, &mut w2] {
        assert!(
            w.signal("TERM", Duration::from_secs(30)).success(),
            "{}",
            w.stderr()
        );
    }
    // A wrong token or a URL that is none: the worker stops at once, saying why.
    for (server, token, says) in [
        (
            srv.base.as_str(),
            "stl_not-a-token",
            "refused the worker token (401)",
        ),
        (
            srv.base.as_str(),
            alice.as_str(),
            "refused the worker token (403)",
        ),
        ("not a url", wtoken.as_str(), "--server \"not a url\""),
        ("http://127.0.0.1:9", wtoken.as_str(), "cannot be reached"),
    ] {
        let o =
            w1.s.run(&[
                "worker", "--server", server, "--token", token, "--name", "w9",
            ])
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{server} {token}: {err}");
        assert!(err.contains(says), "{server} {token}: {err}");
    }
    rt.block_on(async {
        let s = wait_state(&srv, &alice, &busy, "paused").await;
        assert!(s["detail"].as_str().unwrap().contains("stopping"), "{s}");
        let evs = events(&srv, &alice, &busy).await;
        once_in_order(&busy, &evs);
        assert_eq!(evs.last().unwrap().1["outcome"], "paused", "{evs:?}");
    });
    let (s1, s2) = (w1.sessions(), w2.sessions());
    assert!(
        !s1.is_empty() && !s2.is_empty(),
        "w1 ran {s1:?}, w2 ran {s2:?}"
    );
    let mut all: Vec<String> = s1.iter().chain(&s2).cloned().collect();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want, "each session ran once, on one worker");
    w1.verify();
    w2.verify();
    let start = w1
        .leaves()
        .into_iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap();
    assert_eq!(start["actor"]["principal"], "alice");
    assert_eq!(start["data"]["client"]["command"], "worker");
}

#[test]
fn a_worker_asks_through_the_server_and_drains_on_sigterm() {
    const NAME: &str = "a_worker_asks_through_the_server_and_drains_on_sigterm";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "asks");
    let srv = server(&url, e2e_common::EXEC_NEEDS_APPROVAL, 30);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w = Worker::start(&srv, "w1", &wtoken, 2);
    sleep_then_finish(&srv, 1);
    let rt = runtime();
    rt.block_on(async {
        // Asked on the worker, answered in the server's API, taken by the worker.
        let id = start_session(&srv, &alice, "compute").await;
        let a = wait_pending(&srv, &bob, &[]).await;
        assert_eq!(a["session"], id.as_str());
        wait_state(&srv, &alice, &id, "waiting_approval").await;
        let r = answer(&srv, &bob, &a, "granted").await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        wait_state(&srv, &alice, &id, "ended").await;
        let evs = events(&srv, &alice, &id).await;
        once_in_order(&id, &evs);
        assert!(
            evs.iter()
                .any(|(_, e)| e["event"] == "decision" && e["approver"] == "bob"),
            "{evs:?}"
        );
        // Granted twice: refused, the first answer stands.
        let r = answer(&srv, &bob, &a, "granted").await;
        problem(r, 409).await;
    });
    // A second session parks on its question; SIGTERM; the answer comes
    // while the worker drains; the session pauses and is reported paused.
    sleep_then_finish(&srv, 1);
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute again").await;
        wait_state(&srv, &alice, &id, "waiting_approval").await;
        id
    });
    let term = std::thread::scope(|sc| {
        let h = sc.spawn(|| w.signal("TERM", Duration::from_secs(60)));
        rt.block_on(async {
            // Still heartbeating while it drains: the answer reaches it.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let a = wait_pending(&srv, &bob, &[]).await;
            let r = answer(&srv, &bob, &a, "granted").await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        });
        h.join().unwrap()
    });
    assert!(term.success(), "{term:?}\n{}", w.stderr());
    assert!(w.stderr().contains("draining"), "{}", w.stderr());
    rt.block_on(async {
        let s = wait_state(&srv, &alice, &id, "paused").await;
        assert!(
            s["detail"].as_str().unwrap_or("").contains("stopping"),
            "{s}"
        );
        // Its log is on the worker: not resumed here (the next slice ships it).
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/sessions/{id}/resume"),
            json!({}),
        )
        .await;
        let p = problem(r, 422).await;
        assert!(
            p["detail"].as_str().unwrap().contains("ran on a worker"),
            "{p}"
        );
    });
    w.verify();
}

#[test]
fn a_session_whose_worker_died_before_any_effect_runs_on_another() {
    const NAME: &str = "a_session_whose_worker_died_before_any_effect_runs_on_another";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "lease");
    let srv = server(&url, "", 2);
    let alice = srv.token("alice");
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w1 = Worker::start(&srv, "w1", &wtoken, 1);
    // The model is down: the session waits to retry, no effect yet.
    srv.mock.push(Reply::Status {
        status: 503,
        retry_after: Some("30".into()),
        kind: "api_error".into(),
        message: "down for a moment".into(),
        code: None,
    });
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute").await;
        wait_state(&srv, &alice, &id, "running").await;
        let began = std::time::Instant::now();
        while srv.mock.requests().is_empty() {
            assert!(began.elapsed() < Duration::from_secs(30), "{}", w1.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        id
    });
    let killed = w1.signal("KILL", Duration::from_secs(10));
    assert!(!killed.success());
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    let w2 = Worker::start(&srv, "w2", &wtoken, 1);
    rt.block_on(async {
        wait_state(&srv, &alice, &id, "ended").await;
        let evs = events(&srv, &alice, &id).await;
        // The numbering goes on across claims: nothing taken twice.
        let ns: Vec<u64> = evs.iter().map(|(n, _)| *n).collect();
        assert_eq!(ns, (1..=evs.len() as u64).collect::<Vec<_>>(), "{evs:?}");
        assert_eq!(evs.last().unwrap().1["event"], "end");
    });
    assert!(w2.stderr().contains("claim 2"), "{}", w2.stderr());
    let mut w2 = w2;
    assert!(w2.signal("TERM", Duration::from_secs(30)).success());
    assert_eq!(w2.sessions(), vec![id.clone()]);
    w2.verify();
    w1.verify();
}

#[test]
fn a_session_whose_worker_died_after_an_effect_is_interrupted_not_rerun() {
    const NAME: &str = "a_session_whose_worker_died_after_an_effect_is_interrupted_not_rerun";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "interrupted");
    let srv = server(&url, "", 2);
    let alice = srv.token("alice");
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w1 = Worker::start(&srv, "w1", &wtoken, 1);
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "import time; time.sleep(20)"]}),
            )
            .into(),
    );
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute").await;
        // Its tool call has reached the server.
        wait_event(&srv, &alice, &id, "tool_call").await;
        id
    });
    assert!(!w1.signal("KILL", Duration::from_secs(10)).success());
    let mut w2 = Worker::start(&srv, "w2", &wtoken, 1);
    rt.block_on(async {
        let s = wait_state(&srv, &alice, &id, "failed").await;
        let detail = s["detail"].as_str().unwrap();
        assert!(
            detail.contains("interrupted") && detail.contains("worker"),
            "{s}"
        );
        // Never run again from the start elsewhere.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s: Value = get(&srv, &alice, &format!("/api/v1/sessions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(s["state"], "failed", "{s}");
    });
    assert!(w2.signal("TERM", Duration::from_secs(30)).success());
    assert!(w2.sessions().is_empty(), "{}", w2.stderr());
    w1.verify();
}

/// One turn that runs a command sleeping `secs`, then a final answer.
fn sleep_secs_then_finish(srv: &Server, secs: u32) {
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", &format!("import time; time.sleep({secs})")]}),
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
fn another_accounts_worker_is_refused_on_a_claimed_job_and_changes_nothing() {
    const NAME: &str = "another_accounts_worker_is_refused_on_a_claimed_job_and_changes_nothing";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "owner");
    let mut srv = server(&url, "", 30);
    let alice = srv.token("alice");
    let wtoken = srv.token_scoped("ada", "worker");
    let intruder = srv.token_scoped("carol", "worker");
    let mut w1 = Worker::start(&srv, "w1", &wtoken, 1);
    sleep_secs_then_finish(&srv, 3);
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute").await;
        wait_event(&srv, &alice, &id, "tool_call").await;
        // A fresh database: the session is job 1, claim 1.
        let calls = [
            ("heartbeat", json!({"attempt": 1, "verdicts": []})),
            (
                "events",
                json!({"attempt": 1, "from": 1, "messages": [
                    {"kind": "state", "state": "failed", "detail": "forged"}
                ]}),
            ),
            (
                "finish",
                json!({"attempt": 1, "outcome": "failed", "reason": "forged"}),
            ),
        ];
        for (call, body) in calls {
            let r = post(
                &srv,
                &intruder,
                &format!("/api/v1/worker/jobs/1/{call}"),
                body,
            )
            .await;
            let p = problem(r, 403).await;
            let detail = p["detail"].as_str().unwrap();
            assert!(
                detail.contains("claimed by worker w1 of account ada")
                    && detail.contains("account carol may not"),
                "{call}: {p}"
            );
        }
        // Nor may it claim under the first worker's name.
        let r = post(
            &srv,
            &intruder,
            "/api/v1/worker/claim",
            json!({"name": "w1", "verifier": "x"}),
        )
        .await;
        let p = problem(r, 403).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("registered by account ada"),
            "{p}"
        );
        // Nothing changed: the session runs on and ends on its worker.
        let row = wait_state(&srv, &alice, &id, "ended").await;
        assert_ne!(row["detail"], "forged", "{row}");
        let evs = events(&srv, &alice, &id).await;
        once_in_order(&id, &evs);
        id
    });
    assert!(w1.signal("TERM", Duration::from_secs(30)).success());
    assert_eq!(w1.sessions(), vec![id]);
    assert!(!w1.stderr().contains("no longer"), "{}", w1.stderr());
    w1.verify();
    srv.stop();
    // Each refusal is in the server's log, naming the call.
    let leaves = srv.leaves();
    let refused = server_decisions(&leaves, "worker");
    let calls: Vec<&str> = refused
        .iter()
        .map(|l| l["data"]["call"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        calls,
        ["heartbeat", "events", "finish", "claim"],
        "{refused:?}"
    );
    for l in &refused {
        assert_eq!(l["actor"]["principal"], "carol", "{l}");
        assert_eq!(l["decision"]["effect"], "deny", "{l}");
    }
}

#[test]
fn a_worker_goes_on_through_another_server_on_the_database_and_a_restart() {
    const NAME: &str = "a_worker_goes_on_through_another_server_on_the_database_and_a_restart";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "shared");
    let listen = free_listen();
    let mut a = server_on(&url, "", 10, &listen);
    let alice = a.token("alice");
    let wtoken = a.token_scoped("ada", "worker");
    // The worker calls `listen`, whichever server answers there; the model
    // it calls is the first server's mock (kept running).
    let mut w = Worker::start(&a, "w1", &wtoken, 1);
    sleep_secs_then_finish(&a, 3);
    sleep_secs_then_finish(&a, 3);
    let rt = runtime();
    // Server A takes the claim, then dies mid-tool; server B (its own
    // process, log and key, on the same database) takes over the port.
    let first = rt.block_on(async {
        let id = start_session(&a, &alice, "first").await;
        wait_event(&a, &alice, &id, "tool_call").await;
        id
    });
    assert!(!a.signal("KILL", Duration::from_secs(10)).success());
    let mut b = a.twin(&listen);
    b.spawn();
    let second = rt.block_on(async {
        wait_state(&b, &alice, &first, "ended").await;
        once_in_order(&first, &events(&b, &alice, &first).await);
        // Server B restarted mid-session: the worker goes on.
        let id = start_session(&b, &alice, "second").await;
        wait_event(&b, &alice, &id, "tool_call").await;
        id
    });
    b.stop();
    b.spawn();
    rt.block_on(async {
        wait_state(&b, &alice, &second, "ended").await;
        once_in_order(&second, &events(&b, &alice, &second).await);
    });
    let log = w.stderr();
    assert!(
        !log.contains("no longer") && !log.contains("409"),
        "the worker lost a claim:\n{log}"
    );
    assert!(w.signal("TERM", Duration::from_secs(30)).success());
    assert_eq!(w.sessions(), vec![first, second]);
    w.verify();
    b.stop();
    b.verify();
}

#[test]
fn a_worker_whose_calls_alternate_between_two_servers_finishes_its_sessions() {
    const NAME: &str = "a_worker_whose_calls_alternate_between_two_servers_finishes_its_sessions";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "alternate");
    let mut a = server(&url, "", 10);
    let mut b = a.twin("127.0.0.1:0");
    b.spawn();
    let alice = a.token("alice");
    let wtoken = a.token_scoped("ada", "worker");
    // Every request of the worker goes to the other server than the last.
    let lb = Alternate::start(&[a.base.clone(), b.base.clone()]);
    let mut w = Worker::start_at(&a, &lb.base, "w1", &wtoken, 2);
    sleep_then_finish(&a, 3);
    let rt = runtime();
    let ids = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(start_session(&a, &alice, &format!("task {i}")).await);
        }
        for id in &ids {
            wait_state(&b, &alice, id, "ended").await;
            // Either server shows every event once and in order.
            once_in_order(id, &events(&a, &alice, id).await);
            once_in_order(id, &events(&b, &alice, id).await);
        }
        ids
    });
    let counts = lb.counts();
    assert!(counts.iter().all(|&n| n >= 5), "{counts:?}");
    let log = w.stderr();
    assert!(
        !log.contains("no longer") && !log.contains("409"),
        "the worker lost a claim:\n{log}"
    );
    assert!(w.signal("TERM", Duration::from_secs(30)).success());
    let mut ran = w.sessions();
    ran.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(ran, want);
    w.verify();
    a.stop();
    b.stop();
}
