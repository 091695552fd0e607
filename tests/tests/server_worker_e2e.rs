#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sessions run by `stele worker` processes (`[workers] run = "remote"`),
//! end to end: a real `stele serve` on a temporary PostgreSQL cluster, real
//! workers each on its own log, the mock model over the real wire. Several
//! sessions spread over two workers and all end, their events reach the
//! server's API once each and in order, and each worker's log verifies; an
//! approval asked on a worker is answered in the server's API; SIGTERM
//! drains a worker (its session paused, exit 0); a worker killed before its
//! session reached for an effect has the session run by another once the
//! lease runs out; a killed worker whose key an admin revoked has its
//! session failed, never continued from its log nor run again; worker
//! tokens and user tokens stay on their own routes. (Failover from a
//! shipped log: `server_failover_e2e.rs`.)
//! (What servers share about workers: `server_worker_shared_e2e.rs`.)

mod e2e_common;
mod server_support;

use std::time::Duration;

use serde_json::{json, Value};
use server_support::api::{answer, get, post, problem, start_session, wait_pending, wait_state};
use server_support::runtime;
use server_support::worker::{
    database, events, once_in_order, server, sleep_then_finish, wait_event, Worker,
};
use stele_tests::mock_model::{Reply, Turn};
use stele_tests::postgres::TempCluster;
use stele_tests::sandbox_available;

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
        // It ran on a worker: resuming queues it for whichever worker claims
        // it next (server_failover_e2e follows one through), none here yet.
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/sessions/{id}/resume"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let s = wait_state(&srv, &alice, &id, "starting").await;
        assert!(
            s["detail"]
                .as_str()
                .unwrap_or("")
                .contains("queued to resume on a worker"),
            "{s}"
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
fn a_session_whose_revoked_worker_died_after_an_effect_is_interrupted_not_rerun() {
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
    let ada = srv.token_scoped("ada", "read,admin");
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "compute").await;
        // Its tool call has reached the server, and its intent the shipped log.
        wait_event(&srv, &alice, &id, "tool_call").await;
        let began = std::time::Instant::now();
        loop {
            let path = format!("/api/v1/audit/shipped?session={id}&kind=tool.intent");
            let v: Value = get(&srv, &ada, &path).await.json().await.unwrap();
            if !v["entries"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(began.elapsed() < Duration::from_secs(30), "{v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        id
    });
    assert!(!w1.signal("KILL", Duration::from_secs(10)).success());
    // Its key is revoked: its shipped log is not trusted to continue from.
    rt.block_on(async {
        let r = post(&srv, &ada, "/api/v1/admin/workers/w1/revoke", json!({})).await;
        assert_eq!(r.status(), 200, "{}", srv.stderr());
    });
    let mut w2 = Worker::start(&srv, "w2", &wtoken, 1);
    rt.block_on(async {
        let s = wait_state(&srv, &alice, &id, "failed").await;
        let detail = s["detail"].as_str().unwrap();
        assert!(
            detail.contains("interrupted") && detail.contains("revoked"),
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
