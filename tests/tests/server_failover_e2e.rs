#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Failover, end to end (two real `stele serve` on one temporary
//! PostgreSQL cluster, three real `stele worker`s): a session's worker is
//! killed with SIGKILL while its tool call runs; once its lease runs out
//! the session continues on another worker from the servers' copy of the
//! dead worker's log — the tool call is not run again, the model is told
//! its result is unknown — and ends there. Each worker's log verifies, the
//! events are numbered on without a gap, and the session's export from
//! either server (the slice of each log it ran in, each under its own key,
//! the manifest under the server's) verifies offline with stele-verify,
//! which names the failover; a period's fleet export holds the server's
//! log and the session's bundle, each verifying. When the killed worker comes back, what its
//! recovery writes of the session after the continuation point is shipped
//! and flagged in the server's log.

mod e2e_common;
mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::api::{get, start_session, wait_state};
use server_support::runtime;
use server_support::worker::{database, events, free_listen, server, wait_event, Worker};
use stele_tests::mock_model::Turn;
use stele_tests::postgres::TempCluster;
use stele_tests::sandbox_available;

/// The tool call: note that it ran (one line per run), then take long.
const TOOL: &str = "open('reports/ran.txt','a').write('ran\\n'); import time; time.sleep(60)";

#[test]
fn a_killed_workers_session_continues_on_another_and_nothing_runs_twice() {
    const NAME: &str = "a_killed_workers_session_continues_on_another_and_nothing_runs_twice";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "failover");
    let a = server(&url, "", 3);
    let mut b = a.twin(&free_listen());
    b.spawn();
    let alice = a.token("alice");
    let ada = a.token_scoped("ada", "read,admin");
    let wtoken = a.token_scoped("ada", "worker");
    let mut w1 = Worker::start(&a, "w1", &wtoken, 1);
    tool_then_finish(&a, TOOL);
    let rt = runtime();
    let marker = a.ws.join("reports/ran.txt");
    let id = rt.block_on(async {
        let id = start_session(&a, &alice, "compute").await;
        wait_event(&a, &alice, &id, "tool_call").await;
        // The tool is running, and its intent has reached the servers.
        let began = Instant::now();
        loop {
            let r = get(
                &a,
                &ada,
                &format!("/api/v1/audit/shipped?session={id}&kind=tool.intent"),
            )
            .await;
            let v: Value = r.json().await.unwrap();
            if marker.exists() && !v["entries"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "{v}\n{}",
                w1.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        id
    });
    let killed_at = Instant::now();
    assert!(!w1.signal("KILL", Duration::from_secs(10)).success());
    // Two workers left, one calling each server.
    let mut w2 = Worker::start_at(&a, &b.base, "w2", &wtoken, 1);
    let mut w3 = Worker::start(&a, "w3", &wtoken, 1);
    let (continued_after, s) = rt.block_on(async {
        let began = Instant::now();
        let continued_after = loop {
            let s: Value = get(&a, &alice, &format!("/api/v1/sessions/{id}"))
                .await
                .json()
                .await
                .unwrap();
            // Running again elsewhere (its last turn is quick: it may have
            // ended by the time it is looked at).
            let detail = s["detail"].as_str().unwrap_or("");
            if detail.starts_with("continued here") || s["state"] == "ended" {
                break killed_at.elapsed();
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "{s}\n{}\n{}",
                w2.stderr(),
                w3.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        (continued_after, wait_state(&b, &alice, &id, "ended").await)
    });
    eprintln!(
        "figure: failover time (SIGKILL to the session running again on another worker, lease 3 s): {:.2} s",
        continued_after.as_secs_f64()
    );
    assert_eq!(s["state"], "ended", "{s}");
    // The tool ran once; the model was told its result is unknown.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
    let last = a.mock.requests().last().cloned().unwrap();
    let text = String::from_utf8_lossy(&last.body).to_string();
    assert!(
        text.contains("result is unknown") && text.contains("NOT re-run"),
        "{text}"
    );
    rt.block_on(async {
        let evs = events(&a, &alice, &id).await;
        let ns: Vec<u64> = evs.iter().map(|(n, _)| *n).collect();
        assert_eq!(ns, (1..=evs.len() as u64).collect::<Vec<_>>(), "{evs:?}");
        assert_eq!(evs.last().unwrap().1["event"], "end");
    });
    // One of the two continued it; each log verifies.
    assert!(w2.signal("TERM", Duration::from_secs(30)).success());
    assert!(w3.signal("TERM", Duration::from_secs(30)).success());
    let mut took: Vec<&Worker> = [&w2, &w3]
        .into_iter()
        .filter(|w| w.sessions().contains(&id))
        .collect();
    assert_eq!(took.len(), 1, "{}\n{}", w2.stderr(), w3.stderr());
    let cont = took.remove(0);
    // The killed worker comes back: its recovery closes the intent it
    // left open, in its own log, after the point the session continued
    // from; shipped, that entry is kept and flagged.
    w1.restart(&a, &wtoken, 1);
    let alert = rt.block_on(async {
        let began = Instant::now();
        loop {
            let r = get(&a, &ada, "/api/v1/audit/entries?kind=audit.alert").await;
            let v: Value = r.json().await.unwrap();
            let found = v["entries"].as_array().unwrap().iter().find(|e| {
                let l = if e["leaf"].is_object() {
                    &e["leaf"]
                } else {
                    *e
                };
                l["data"]["check"] == "failover"
                    && l["data"]["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains(id.as_str())
            });
            if let Some(e) = found {
                break if e["leaf"].is_object() {
                    e["leaf"].clone()
                } else {
                    e.clone()
                };
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "{v}\n{}\n{}",
                w1.stderr(),
                a.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let reason = alert["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("worker w1") && reason.contains("w1.e2e.stele.invalid/log"),
        "{alert}"
    );
    assert!(alert["data"]["index"].as_u64().is_some(), "{alert}");
    assert!(w1.signal("TERM", Duration::from_secs(30)).success());
    for w in [&w1, &w2, &w3] {
        w.verify();
    }
    // The reviewer's timeline spans both logs, in time order, paged.
    rt.block_on(async {
        let path = format!("/api/v1/audit/sessions/{id}/timeline?limit=500");
        let v: Value = get(&b, &ada, &path).await.json().await.unwrap();
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(entries.len() as u64, v["total"].as_u64().unwrap(), "{v}");
        let origins: Vec<&str> = v["origins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(origins.len(), 2, "{v}");
        assert!(origins.contains(&"w1.e2e.stele.invalid/log"), "{v}");
        let starts = entries
            .iter()
            .filter(|e| e["leaf"]["kind"] == "session.start")
            .count();
        assert_eq!(starts, 2, "{v}");
        assert_eq!(entries[0]["leaf"]["kind"], "session.start", "{v}");
        let page: Value = get(
            &b,
            &ada,
            &format!("/api/v1/audit/sessions/{id}/timeline?limit=2"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(page["entries"].as_array().unwrap().len(), 2);
        assert_eq!(page["next"], 2);
        assert_eq!(page["entries"][1], entries[1]);
        // The reviewer's list counts it from the shipped logs too.
        let list: Value = get(&b, &ada, "/api/v1/audit/sessions")
            .await
            .json()
            .await
            .unwrap();
        let row = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(row["entries"], v["total"], "{row}");
    });
    // A period's evidence across the fleet: the server's own log and the
    // session's bundle, each verified with the keys fleet.json names.
    let pack = rt.block_on(async {
        let r = get(
            &a,
            &ada,
            "/api/v1/audit/fleet-export?since=2000-01-01&until=2100-01-01",
        )
        .await;
        assert_eq!(r.status(), 200, "{}", a.stderr());
        r.bytes().await.unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.tar"), &pack).unwrap();
    let untar = std::process::Command::new("tar")
        .args(["-xf", "fleet.tar"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("fleet.json")).unwrap()).unwrap();
    let files = index["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{index}");
    assert_eq!(files[0]["file"], "server.tar", "{index}");
    assert_eq!(files[1]["session"], id.as_str(), "{index}");
    assert!(index["left_out"].as_array().unwrap().is_empty(), "{index}");
    for f in files {
        let mut cmd = std::process::Command::new(e2e_common::demo_session::verify_bin());
        cmd.arg(dir.path().join(f["file"].as_str().unwrap()))
            .args(["--key", f["key"].as_str().unwrap()]);
        if let Some(k) = f["export_key"].as_str() {
            cmd.args(["--export-key", k]);
        }
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{f}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // The session's export, from either server, verifies offline across both logs.
    for srv in [&a, &b] {
        let (out, wkey) = export_verified(&rt, srv, &ada, &id);
        let shown = cont.s.run(&["keys", "show"]).unwrap();
        assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), wkey);
        assert!(
            out.contains("continued from: w1.e2e.stele.invalid/log after its worker stopped"),
            "{out}"
        );
    }
}

/// A session paused by its worker's drain resumes, at a person's word, on
/// another worker: from the servers' copy of the first worker's log, the
/// tool's recorded output carried to the model, nothing run again.
#[test]
fn a_session_paused_by_a_drain_resumes_on_another_worker() {
    const NAME: &str = "a_session_paused_by_a_drain_resumes_on_another_worker";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "resume");
    let a = server(&url, "", 30);
    let alice = a.token("alice");
    let ada = a.token_scoped("ada", "read,admin");
    let wtoken = a.token_scoped("ada", "worker");
    let mut w1 = Worker::start(&a, "w1", &wtoken, 1);
    let tool = "open('reports/ran.txt','a').write('ran\\n'); import time; time.sleep(3); print('sum-4217')";
    tool_then_finish(&a, tool);
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&a, &alice, "compute").await;
        wait_event(&a, &alice, &id, "tool_call").await;
        id
    });
    // The worker drains: the session pauses once the tool is done.
    assert!(
        w1.signal("TERM", Duration::from_secs(40)).success(),
        "{}",
        w1.stderr()
    );
    let mut w2 = Worker::start(&a, "w2", &wtoken, 1);
    rt.block_on(async {
        wait_state(&a, &alice, &id, "paused").await;
        let r = server_support::api::post(
            &a,
            &alice,
            &format!("/api/v1/sessions/{id}/resume"),
            json!({}),
        )
        .await;
        let status = r.status();
        assert_eq!(status, 200, "{}\n{}", r.text().await.unwrap(), a.stderr());
        wait_state(&a, &alice, &id, "ended").await;
    });
    assert_eq!(
        std::fs::read_to_string(a.ws.join("reports/ran.txt")).unwrap(),
        "ran\n"
    );
    let last = a.mock.requests().last().cloned().unwrap();
    let text = String::from_utf8_lossy(&last.body).to_string();
    assert!(text.contains("sum-4217"), "{text}");
    assert!(w2.signal("TERM", Duration::from_secs(30)).success());
    assert_eq!(w2.sessions(), vec![id.clone()]);
    w1.verify();
    w2.verify();
    let (out, _) = export_verified(&rt, &a, &ada, &id);
    assert!(
        out.contains("resumed after it paused on worker w1"),
        "{out}"
    );
    assert!(out.contains("0 unfinished intent(s)"), "{out}");
}

/// One turn running `tool` (Python), then a final answer.
fn tool_then_finish(srv: &server_support::Server, tool: &str) {
    srv.mock.push(
        Turn::new()
            .tool_use("x", "exec", json!({"argv": ["python3", "-c", tool]}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
}

/// Session `id`'s export from `srv`, verified offline with the keys its
/// headers name; stele-verify's output, and the worker's key.
fn export_verified(
    rt: &tokio::runtime::Runtime,
    srv: &server_support::Server,
    token: &str,
    id: &str,
) -> (String, String) {
    let (bytes, wkey, skey) = rt.block_on(async {
        let r = get(srv, token, &format!("/api/v1/audit/sessions/{id}/export")).await;
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        let h = |n: &str| r.headers()[n].to_str().unwrap().to_string();
        let (wkey, skey) = (h("x-stele-verifier"), h("x-stele-export-key"));
        (r.bytes().await.unwrap(), wkey, skey)
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.tar");
    std::fs::write(&file, &bytes).unwrap();
    let verify = |export_key: &str| {
        std::process::Command::new(e2e_common::demo_session::verify_bin())
            .arg(&file)
            .args(["--key", &wkey, "--export-key", export_key])
            .output()
            .unwrap()
    };
    let o = verify(&skey);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The worker's key in place of the server's: the manifest does not verify.
    assert!(!verify(&wkey).status.success());
    (out, wkey)
}
