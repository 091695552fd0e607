#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sessions that survive the server (issue 18): the real `stele serve`, the
//! mock model over the real wire, the process sandbox. Killed (SIGKILL)
//! during three running sessions, the server comes back with all three
//! resumed from the log, no tool effect run twice, events numbered on across
//! the restart; stopped (SIGTERM), it exits 0 with the running session
//! paused in the log and the store, and resumes it at start; a question
//! parked across a restart is never answered by it — asked again, answered
//! or refused at its deadline; a session paused by a stop stays paused
//! across a restart and is resumed only by someone the policy lets; a
//! provider outage shows as retry events and a paused, resumable session.

mod e2e_common;
mod server_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::api::{post, session, start_session, wait_pending, wait_state};
use server_support::{parse_sse, runtime, server_decisions, Server};
use stele_tests::mock_model::{RecordedRequest, Reply, Turn};
use stele_tests::{intents_closed_once, sandbox_available};

/// The whole event stream of a session after `last` (it ends when the session does).
async fn events(srv: &Server, token: &str, id: &str, last: u64) -> Vec<(u64, Value)> {
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{id}/events")))
        .bearer_auth(token)
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(90), resp.text())
        .await
        .expect("the event stream did not end with the session")
        .unwrap();
    parse_sse(&body)
}

/// Wait until the tool call of `tag` has written its line.
fn wait_effect(srv: &Server, tag: &str) {
    let p = effect(srv, tag);
    let began = Instant::now();
    while runs(srv, tag) == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{} never written\n{}",
            p.display(),
            srv.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines an effect file holds: how many times the tool call ran.
fn runs(srv: &Server, tag: &str) -> usize {
    std::fs::read_to_string(effect(srv, tag))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn effect(srv: &Server, tag: &str) -> std::path::PathBuf {
    srv.ws.join(format!("reports/effect-{tag}.txt"))
}

/// The text of every tool result in a request.
fn tool_results(r: &RecordedRequest) -> Vec<String> {
    let mut out = Vec::new();
    for m in r.json()["messages"].as_array().into_iter().flatten() {
        for c in m["content"].as_array().into_iter().flatten() {
            if c["type"] == "tool_result" {
                out.push(c["content"].to_string());
            }
        }
    }
    out
}

/// The tag (`TASK-x`) of the task a request belongs to.
fn tag_of(r: &RecordedRequest) -> String {
    let t = r.text();
    let at = t.find("TASK-").expect("a request without a task tag");
    t[at + 5..at + 6].to_string()
}

/// A tool call that appends one line to its effect file, then sleeps `secs`.
fn effect_call(tag: &str, secs: u32) -> Reply {
    let code = format!(
        "open('reports/effect-{tag}.txt','a').write('ran\\n'); import time; time.sleep({secs})"
    );
    Turn::new()
        .tool_use("x", "exec", json!({"argv": ["python3", "-c", code]}))
        .into()
}

fn finish(what: &str) -> Reply {
    Turn::new()
        .tool_use("f", "final_answer", json!({"answer": what}))
        .into()
}

/// The model: a task's first request calls the effect tool; any request
/// that carries a tool result (recorded, or "interrupted … NOT re-run")
/// finishes.
fn effect_then_finish(srv: &Server, secs: u32) {
    srv.mock.respond_with(move |r| {
        if tool_results(r).is_empty() {
            effect_call(&tag_of(r), secs)
        } else {
            finish("done")
        }
    });
}

/// The numbers of the events the store kept for `id` (the server is down).
fn kept_events(srv: &Server, id: &str) -> Vec<u64> {
    let c = rusqlite::Connection::open(srv.store()).unwrap();
    let mut st = c
        .prepare("SELECT n FROM events WHERE session = ?1 ORDER BY n")
        .unwrap();
    let v: Vec<u64> = st
        .query_map([id], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|n| u64::try_from(n.unwrap()).unwrap())
        .collect();
    v
}

/// The store's row of `id`: (state, detail).
fn row(srv: &Server, id: &str) -> (String, Option<String>) {
    let c = rusqlite::Connection::open(srv.store()).unwrap();
    c.query_row(
        "SELECT state, detail FROM sessions WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn approval_state(srv: &Server, id: &str) -> String {
    let c = rusqlite::Connection::open(srv.store()).unwrap();
    c.query_row("SELECT state FROM approvals WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

fn of_kind<'a>(mine: &[&'a Value], kind: &str) -> Vec<&'a Value> {
    mine.iter().filter(|l| l["kind"] == kind).copied().collect()
}

/// The model of the three-session kill: A calls a program that writes its
/// effect and sleeps; B's first reply stalls mid-stream; C writes a letter to
/// outbox/ (another finance member must approve). Told a call was
/// interrupted or not run, C calls again; anything else with a result finishes.
fn three_kinds_of_work(srv: &Server) {
    let b_asked = AtomicUsize::new(0);
    srv.mock.respond_with(move |r| {
        let results = tool_results(r);
        match (tag_of(r).as_str(), results.last()) {
            ("A", None) => effect_call("A", 60),
            ("B", None) if b_asked.fetch_add(1, Ordering::SeqCst) == 0 => Reply::Stall {
                turn: Turn::new().text("thinking about it"),
                after_events: 2,
                hold: Duration::from_secs(120),
            },
            ("C", None) => letter(),
            ("C", Some(t)) if t.contains("NOT re-run") || t.contains("not run") => letter(),
            _ => finish("done"),
        }
    });
}

fn letter() -> Reply {
    Turn::new()
        .tool_use(
            "w",
            "file_write",
            json!({"path": "outbox/letter-C.txt", "content": "Dear client\n"}),
        )
        .into()
}

/// Three sessions — one mid-tool-call, one mid-model-stream, one parked on
/// an approval — and the server killed: all three come back resumed, no
/// effect runs twice, nothing is approved by the restart, events number on,
/// the log verifies.
#[test]
fn a_killed_server_resumes_its_three_sessions_without_rerunning_an_effect() {
    if !sandbox_available("a_killed_server_resumes_its_three_sessions_without_rerunning_an_effect")
    {
        return;
    }
    let mut srv = Server::start("", "");
    three_kinds_of_work(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for tag in ["A", "B", "C"] {
            ids.push(start_session(&srv, &alice, &format!("TASK-{tag}: do the work")).await);
        }
        wait_effect(&srv, "A");
        let asked = wait_pending(&srv, &bob, &[]).await;
        assert_eq!(asked["session"], ids[2].as_str());
        ids
    });
    let began = Instant::now();
    while !srv.mock.requests().iter().any(|r| tag_of(r) == "B") {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "B never asked the model"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = srv.signal("KILL", Duration::from_secs(10));
    assert!(!killed.success());
    let before: Vec<Vec<u64>> = ids.iter().map(|id| kept_events(&srv, id)).collect();
    for (id, kept) in ids.iter().zip(&before) {
        assert!(!kept.is_empty(), "no events kept for {id}");
        assert_ne!(row(&srv, id).0, "paused", "{id}: a kill pauses nothing");
    }
    srv.spawn();
    rt.block_on(async {
        // C asks again; the restart answered nothing.
        let again = wait_pending(&srv, &bob, &[]).await;
        assert_eq!(again["session"], ids[2].as_str());
        let r = post(
            &srv,
            &bob,
            &format!(
                "/api/v1/approvals/{}",
                again["approval_id"].as_str().unwrap()
            ),
            json!({"shown_sha256": again["shown_sha256"], "outcome": "granted"}),
        )
        .await;
        assert_eq!(r.status(), 200);
        for (id, kept) in ids.iter().zip(&before) {
            wait_state(&srv, &alice, id, "ended").await;
            let last = *kept.last().unwrap();
            // Replay from the last event kept before the kill: numbering goes on.
            let after = events(&srv, &alice, id, last).await;
            let ns: Vec<u64> = after.iter().map(|(n, _)| *n).collect();
            let want: Vec<u64> = (last + 1..=last + ns.len() as u64).collect();
            assert_eq!(ns, want, "{id}: events after the restart");
            assert_eq!(after[0].1["event"], "start", "{id}: {after:?}");
            assert_eq!(after.last().unwrap().1["event"], "end");
            assert_eq!(after.last().unwrap().1["outcome"], "answered");
            // The whole stream replays from 1 without a gap.
            let all = events(&srv, &alice, id, 0).await;
            let ns: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
            assert_eq!(ns, (1..=ns.len() as u64).collect::<Vec<_>>());
        }
    });
    assert_eq!(runs(&srv, "A"), 1, "A's program ran once, never again");
    assert_eq!(
        std::fs::read_to_string(srv.ws.join("outbox/letter-C.txt")).unwrap(),
        "Dear client\n"
    );
    srv.stop();
    let leaves = srv.leaves();
    let mine: Vec<Vec<&Value>> = ids
        .iter()
        .map(|id| e2e_common::of_session(&leaves, id))
        .collect();
    let closed_interrupted = |m: &[&Value], kinds: &[&str]| {
        leaves.iter().any(|l| {
            l["kind"] == "interrupted"
                && m.iter().any(|x| {
                    x["seq"] == l["refs"]["intent_seq"]
                        && kinds.contains(&x["kind"].as_str().unwrap())
                })
        })
    };
    // A: its program started once; the open call closed as interrupted.
    assert_eq!(of_kind(&mine[0], "exec.start").len(), 1);
    assert!(closed_interrupted(&mine[0], &["tool.intent", "exec.start"]));
    // B: the model request cut by the kill closed as interrupted, asked again once.
    assert!(closed_interrupted(&mine[1], &["model.request"]));
    assert_eq!(of_kind(&mine[1], "model.request").len(), 2);
    // C: asked twice, granted once (by bob, after the restart), written once.
    assert_eq!(of_kind(&mine[2], "approval.request").len(), 2);
    let grants = of_kind(&mine[2], "approval.grant");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["data"]["approver"], "bob");
    assert!(of_kind(&mine[2], "approval.deny").is_empty());
    let writes: Vec<&&Value> = mine[2]
        .iter()
        .filter(|l| l["kind"] == "tool.result" && l["outcome"]["status"] == "ok")
        .collect();
    assert_eq!(writes.len(), 1, "the letter was written once");
    for (id, m) in ids.iter().zip(&mine) {
        assert!(m
            .iter()
            .any(|l| l["kind"] == "policy.load" && l["data"]["resumed"] == true));
        assert_eq!(of_kind(m, "session.end").len(), 1);
        intents_closed_once(&leaves, id).unwrap();
        let resumes: Vec<&Value> = server_decisions(&leaves, "session.resume")
            .into_iter()
            .filter(|l| l["data"]["session"] == id.as_str())
            .collect();
        assert_eq!(resumes.len(), 1, "{id}");
        assert_eq!(resumes[0]["decision"]["effect"], "allow");
        assert_eq!(resumes[0]["data"]["trigger"], "restart");
    }
    srv.verify();
}

/// SIGTERM with a session mid-tool-call: the call finishes, the session
/// pauses at the next safe point (log and store), the server exits 0; at
/// start it resumes and finishes, the effect run once.
#[test]
fn sigterm_pauses_a_running_session_and_the_restart_finishes_it() {
    if !sandbox_available("sigterm_pauses_a_running_session_and_the_restart_finishes_it") {
        return;
    }
    let mut srv = Server::start("", "");
    effect_then_finish(&srv, 2);
    let alice = srv.token("alice");
    let rt = runtime();
    let id = rt.block_on(start_session(&srv, &alice, "TASK-T: write the effect"));
    wait_effect(&srv, "T");
    let began = Instant::now();
    let st = srv.signal("TERM", Duration::from_secs(30));
    assert!(st.success(), "exit {st:?}\n{}", srv.stderr());
    assert!(
        began.elapsed() < Duration::from_secs(12),
        "bounded by the grace"
    );
    let (state, detail) = row(&srv, &id);
    assert_eq!(state, "paused");
    assert!(
        detail
            .as_deref()
            .unwrap()
            .starts_with("paused by the server's shutdown"),
        "{detail:?}"
    );
    let kept = kept_events(&srv, &id);
    let leaves = srv.leaves();
    {
        let mine = e2e_common::of_session(&leaves, &id);
        // The call finished and its result is in the log; the session did not end.
        assert_eq!(of_kind(&mine, "tool.result").len(), 1);
        assert!(of_kind(&mine, "session.end").is_empty());
        assert!(leaves.iter().all(|l| l["kind"] != "interrupted"));
        // It paused before asking the model again: one request, its result recorded.
        assert_eq!(of_kind(&mine, "model.request").len(), 1);
        let pauses = server_decisions(&leaves, "session.pause");
        assert_eq!(pauses.len(), 1);
        assert_eq!(pauses[0]["data"]["session"], id.as_str());
        assert_eq!(pauses[0]["data"]["at"], "between_steps");
        // Then the log was closed (`log.close`; reading it since adds entries).
        assert!(
            leaves
                .iter()
                .any(|l| l["kind"] == "log.close" && l["seq"].as_u64() > pauses[0]["seq"].as_u64()),
            "the log closed after the pause"
        );
    }
    srv.spawn();
    rt.block_on(async {
        wait_state(&srv, &alice, &id, "ended").await;
        let after = events(&srv, &alice, &id, *kept.last().unwrap()).await;
        assert_eq!(after[0].0, kept.last().unwrap() + 1);
        assert_eq!(after.last().unwrap().1["outcome"], "answered");
    });
    assert_eq!(runs(&srv, "T"), 1);
    // The model went on from the recorded result, not an interruption.
    let last = srv.mock.requests().last().map(tool_results).unwrap();
    assert!(last.iter().all(|t| !t.contains("NOT re-run")), "{last:?}");
    srv.stop();
    let leaves = srv.leaves();
    intents_closed_once(&leaves, &id).unwrap();
    srv.verify();
}

/// The model for a parked question: call the effect tool (which asks);
/// told the call was interrupted or not run (the question went away with
/// the server), call it again; after the real result or a refusal, finish.
fn ask_again_then_finish(srv: &Server) {
    srv.mock.respond_with(move |r| {
        let results = tool_results(r);
        match results.last() {
            None => effect_call(&tag_of(r), 0),
            Some(t) if t.contains("not run") || t.contains("NOT re-run") => {
                effect_call(&tag_of(r), 0)
            }
            Some(_) => finish("done"),
        }
    });
}

/// A question parked when the server stops (SIGTERM: exit 0, promptly;
/// SIGKILL) is never answered by the stop: its old id is refused, the
/// resumed session asks again, and that question is answered once.
fn parked_question_across(signal: &str) {
    let mut srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "");
    ask_again_then_finish(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let (id, old) = rt.block_on(async {
        let id = start_session(&srv, &alice, "TASK-P: write the effect").await;
        let a = wait_pending(&srv, &bob, &[]).await;
        wait_state(&srv, &alice, &id, "waiting_approval").await;
        (id, a)
    });
    let old_id = old["approval_id"].as_str().unwrap().to_string();
    let began = Instant::now();
    let st = srv.signal(signal, Duration::from_secs(30));
    if signal == "TERM" {
        assert!(st.success(), "exit {st:?}\n{}", srv.stderr());
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "a parked session is at a safe point"
        );
        let (state, detail) = row(&srv, &id);
        assert_eq!(state, "paused");
        assert!(detail.unwrap().contains("waiting for an approval"));
        assert_eq!(approval_state(&srv, &old_id), "expired");
    }
    let interrupted_before = {
        let leaves = srv.leaves();
        let mine = e2e_common::of_session(&leaves, &id);
        if signal == "TERM" {
            // A clean close: the withdrawn question recorded, the action
            // that asked closed as interrupted with that reason, the
            // session paused, then `log.close` — in that order, last.
            let kinds: Vec<&str> = leaves.iter().map(|l| l["kind"].as_str().unwrap()).collect();
            // (Reading the log appends its own `log.open` and `audit.read`.)
            let close = kinds.iter().rposition(|k| *k == "log.close").unwrap();
            assert_eq!(kinds[close + 1..], ["log.open", "audit.read"], "{kinds:?}");
            let at = |pred: &dyn Fn(&Value) -> bool| {
                leaves
                    .iter()
                    .rposition(pred)
                    .unwrap_or_else(|| panic!("missing"))
            };
            let withdrawn = at(&|l| {
                l["data"]["server_action"] == "approval.withdraw"
                    && l["data"]["approval"] == old_id.as_str()
            });
            let closed = at(&|l| {
                l["kind"] == "interrupted"
                    && l["session"]["id"] == id.as_str()
                    && l["outcome"]["detail"]
                        .as_str()
                        .unwrap_or("")
                        .contains("withdrawn")
            });
            let paused = at(&|l| {
                l["data"]["server_action"] == "session.pause" && l["data"]["session"] == id.as_str()
            });
            assert!(
                withdrawn < closed && closed < paused && paused < close,
                "{kinds:?}"
            );
        }
        assert_eq!(of_kind(&mine, "approval.request").len(), 1);
        assert!(
            of_kind(&mine, "approval.grant").is_empty(),
            "never answered by the stop"
        );
        assert!(
            of_kind(&mine, "approval.deny").is_empty(),
            "never answered by the stop"
        );
        of_kind(&mine, "interrupted").len()
    };
    srv.spawn();
    if signal == "TERM" {
        // The restart finds nothing to recover: no crash message.
        assert!(
            !srv.stderr().contains("never recorded a result"),
            "{}",
            srv.stderr()
        );
    }
    assert_eq!(approval_state(&srv, &old_id), "expired");
    rt.block_on(async {
        // The old question is gone: answering it is refused, nothing runs.
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{old_id}"),
            json!({"shown_sha256": old["shown_sha256"], "outcome": "granted"}),
        )
        .await;
        assert_eq!(r.status(), 409);
        // The resumed session asks again; bob answers that.
        let new = wait_pending(&srv, &bob, std::slice::from_ref(&old_id)).await;
        assert_eq!(new["session"], id.as_str());
        assert_eq!(new["shown"], old["shown"]);
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{}", new["approval_id"].as_str().unwrap()),
            json!({"shown_sha256": new["shown_sha256"], "outcome": "granted"}),
        )
        .await;
        assert_eq!(r.status(), 200);
        wait_state(&srv, &alice, &id, "ended").await;
    });
    assert_eq!(runs(&srv, "P"), 1);
    srv.stop();
    let leaves = srv.leaves();
    let mine = e2e_common::of_session(&leaves, &id);
    assert_eq!(of_kind(&mine, "approval.request").len(), 2);
    let grants = of_kind(&mine, "approval.grant");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["data"]["approver"], "bob");
    assert_eq!(of_kind(&mine, "exec.start").len(), 1);
    // After a SIGTERM the restart wrote no `interrupted` entry of its own;
    // after a SIGKILL its crash recovery closed the open action.
    let interrupted = of_kind(&mine, "interrupted");
    assert_eq!(
        interrupted.len(),
        interrupted_before.max(1),
        "{interrupted:?}"
    );
    if signal == "KILL" {
        assert_eq!(interrupted_before, 0);
    }
    intents_closed_once(&leaves, &id).unwrap();
    srv.verify();
}

#[test]
fn a_question_parked_across_a_sigterm_is_asked_again_never_answered_by_it() {
    if !sandbox_available("a_question_parked_across_a_sigterm_is_asked_again_never_answered_by_it")
    {
        return;
    }
    parked_question_across("TERM");
}

#[test]
fn a_question_parked_across_a_sigkill_is_asked_again_never_answered_by_it() {
    if !sandbox_available("a_question_parked_across_a_sigkill_is_asked_again_never_answered_by_it")
    {
        return;
    }
    parked_question_across("KILL");
}

/// After the restart nobody answers the question asked again: its deadline
/// refuses it, and nothing runs.
#[test]
fn a_question_asked_again_after_a_restart_is_refused_at_its_deadline() {
    if !sandbox_available("a_question_asked_again_after_a_restart_is_refused_at_its_deadline") {
        return;
    }
    let mut srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "ask_deadline_secs = 4\n");
    ask_again_then_finish(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "TASK-D: write the effect").await;
        wait_pending(&srv, &bob, &[]).await;
        id
    });
    srv.signal("KILL", Duration::from_secs(10));
    srv.spawn();
    rt.block_on(async {
        wait_state(&srv, &alice, &id, "ended").await;
    });
    assert_eq!(runs(&srv, "D"), 0, "nothing ran");
    srv.stop();
    let leaves = srv.leaves();
    let mine = e2e_common::of_session(&leaves, &id);
    let denies = of_kind(&mine, "approval.deny");
    assert_eq!(denies.len(), 1);
    assert_eq!(denies[0]["data"]["method"], "deadline");
    assert!(of_kind(&mine, "approval.grant").is_empty());
    assert!(of_kind(&mine, "exec.start").is_empty());
    srv.verify();
}

/// A session paused by a stop stays paused across a restart; only someone
/// the policy lets may resume it (others: 403, logged); resumed, it finishes.
#[test]
fn a_stopped_session_stays_paused_and_only_its_owner_resumes_it() {
    if !sandbox_available("a_stopped_session_stays_paused_and_only_its_owner_resumes_it") {
        return;
    }
    let mut srv = Server::start("", "");
    effect_then_finish(&srv, 2);
    let (alice, dave, carol, rita) = (
        srv.token("alice"),
        srv.token("dave"),
        srv.token("carol"),
        srv.token("rita"),
    );
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "TASK-S: write the effect").await;
        // Someone else may not stop it.
        for t in [&dave, &carol, &rita] {
            let r = post(&srv, t, &format!("/api/v1/sessions/{id}/stop"), json!({})).await;
            assert_eq!(r.status(), 403);
        }
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/sessions/{id}/stop"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let s = wait_state(&srv, &alice, &id, "paused").await;
        assert!(
            s["detail"].as_str().unwrap().contains("stopped by alice"),
            "{s}"
        );
        id
    });
    assert_eq!(runs(&srv, "S"), 1);
    srv.signal("TERM", Duration::from_secs(30));
    srv.spawn();
    rt.block_on(async {
        let s = session(&srv, &alice, &id).await;
        assert_eq!(s["state"], "paused", "a stopped session stays paused: {s}");
        // Not theirs to resume: another member, another team's approver, a reviewer.
        for t in [&dave, &carol, &rita] {
            let r = post(&srv, t, &format!("/api/v1/sessions/{id}/resume"), json!({})).await;
            assert_eq!(r.status(), 403);
            assert_eq!(session(&srv, &alice, &id).await["state"], "paused");
        }
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/sessions/{id}/resume"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        wait_state(&srv, &alice, &id, "ended").await;
        // Ended: nothing more to resume.
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/sessions/{id}/resume"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 409);
    });
    assert_eq!(runs(&srv, "S"), 1);
    srv.stop();
    let leaves = srv.leaves();
    let refused: Vec<&Value> = server_decisions(&leaves, "session.approve")
        .into_iter()
        .chain(server_decisions(&leaves, "session.start"))
        .filter(|l| l["data"]["resume"] == id.as_str() && l["decision"]["effect"] == "deny")
        .collect();
    for who in ["dave", "carol", "rita"] {
        assert!(
            refused.iter().any(|l| l["actor"]["principal"] == who),
            "{who}'s refused resume is logged"
        );
    }
    assert!(
        server_decisions(&leaves, "session.resume").is_empty(),
        "no restart resume"
    );
    intents_closed_once(&leaves, &id).unwrap();
    srv.verify();
}

/// A provider outage: the session shows its retries (events, and its state's
/// detail), pauses resumably after the patience, stays paused across a
/// restart, and is resumed on request once the provider is back.
#[test]
fn a_provider_outage_shows_retries_pauses_and_resumes_on_request() {
    if !sandbox_available("a_provider_outage_shows_retries_pauses_and_resumes_on_request") {
        return;
    }
    let mut srv = Server::prepare("", "");
    let cfg = srv.dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[provider.anthropic]\npatience_secs = 2\ninitial_backoff_secs = 0.2\nmax_backoff_secs = 0.5\n",
    )
    .unwrap();
    srv.env
        .push(("STELE_CONFIG".into(), cfg.display().to_string()));
    srv.spawn();
    srv.mock.respond_with(|_| Reply::unavailable("0"));
    let alice = srv.token("alice");
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "TASK-O: anything").await;
        let s = wait_state(&srv, &alice, &id, "paused").await;
        assert!(!s["detail"]
            .as_str()
            .unwrap()
            .starts_with("paused by the server"));
        let ev = events(&srv, &alice, &id, 0).await;
        assert!(
            ev.iter().filter(|(_, e)| e["event"] == "retry").count() >= 2,
            "{ev:?}"
        );
        let end = &ev.last().unwrap().1;
        assert_eq!(end["outcome"], "paused");
        assert_eq!(end["resumable"], true);
        id
    });
    srv.signal("TERM", Duration::from_secs(30));
    srv.spawn();
    srv.mock.respond_with(|_| finish("back"));
    rt.block_on(async {
        assert_eq!(session(&srv, &alice, &id).await["state"], "paused");
        let r = post(
            &srv,
            &alice,
            &format!("/api/v1/sessions/{id}/resume"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        wait_state(&srv, &alice, &id, "ended").await;
    });
    srv.stop();
    intents_closed_once(&srv.leaves(), &id).unwrap();
    srv.verify();
}
