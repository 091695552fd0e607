#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What servers share about remote workers, end to end (a real `stele
//! serve` — or two — on a temporary PostgreSQL cluster, real `stele
//! worker`s): a job's calls are refused (403, recorded in the server's log)
//! to any account but the one whose worker claimed it, and change nothing;
//! a worker goes on through a server killed and replaced by another on the
//! same database, then through that server's restart; a worker whose every
//! request alternates between two servers finishes its sessions; a server
//! that stops leaves a remote session's question pending for the others,
//! and a server that starts leaves another server's running session alone.
//! Each session's events reach the API once and in order.

mod e2e_common;
mod server_support;

use std::time::Duration;

use serde_json::json;
use server_support::api::{answer, post, problem, start_session, wait_pending, wait_state};
use server_support::worker::{
    database, events, free_listen, once_in_order, server, server_on, sleep_secs_then_finish,
    sleep_then_finish, wait_event, Alternate, Worker,
};
use server_support::{runtime, server_decisions, Server};
use stele_tests::postgres::TempCluster;
use stele_tests::sandbox_available;

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

/// A server stopping expires the questions of its own sessions only: a
/// remote worker's session parked on a question stays answerable through
/// the other servers on the database.
#[test]
fn a_server_stopping_leaves_a_remote_sessions_question_to_the_others() {
    const NAME: &str = "a_server_stopping_leaves_a_remote_sessions_question_to_the_others";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "questions");
    let a = server(&url, e2e_common::EXEC_NEEDS_APPROVAL, 30);
    let (alice, bob) = (a.token("alice"), a.token("bob"));
    let wtoken = a.token_scoped("ada", "worker");
    let mut w = Worker::start(&a, "w1", &wtoken, 1);
    sleep_then_finish(&a, 1);
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&a, &alice, "compute").await;
        wait_state(&a, &alice, &id, "waiting_approval").await;
        id
    });
    // A second server on the same database comes and goes.
    let mut b = a.twin(&free_listen());
    b.spawn();
    b.stop();
    rt.block_on(async {
        let q = wait_pending(&a, &bob, &[]).await;
        assert_eq!(q["session"], id.as_str(), "{q}");
        let r = answer(&a, &bob, &q, "granted").await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        wait_state(&a, &alice, &id, "ended").await;
        once_in_order(&id, &events(&a, &alice, &id).await);
    });
    assert!(w.signal("TERM", Duration::from_secs(30)).success());
    w.verify();
}

/// Several servers running sessions themselves (`run = "local"`) on one
/// database: a server that starts resumes only the sessions its own log
/// records, never another server's (it could not, and used to mark them
/// paused), and withdraws none of their questions.
#[test]
fn a_starting_server_leaves_another_servers_local_session_alone() {
    const NAME: &str = "a_starting_server_leaves_another_servers_local_session_alone";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "local");
    let a = Server::start_on(
        e2e_common::EXEC_NEEDS_APPROVAL,
        &format!("[store]\nurl = {url:?}\n"),
        "127.0.0.1:0",
    );
    let (alice, bob) = (a.token("alice"), a.token("bob"));
    sleep_then_finish(&a, 1);
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&a, &alice, "compute").await;
        wait_state(&a, &alice, &id, "waiting_approval").await;
        id
    });
    let mut b = a.twin(&free_listen());
    b.spawn();
    rt.block_on(async {
        // B is up: its start-up has run. A's session is as A left it.
        let s = wait_state(&a, &alice, &id, "waiting_approval").await;
        assert!(
            s["detail"].is_null() || !s["detail"].as_str().unwrap_or("").contains("resumed"),
            "{s}"
        );
        let q = wait_pending(&a, &bob, &[]).await;
        assert_eq!(q["session"], id.as_str(), "{q}");
        let r = answer(&a, &bob, &q, "granted").await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        wait_state(&a, &alice, &id, "ended").await;
    });
    b.stop();
    b.verify();
}
