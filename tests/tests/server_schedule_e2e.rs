#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Scheduled tasks end to end: the real `stele serve`, reqwest, the mock
//! model over the real wire, the process sandbox. No clock is faked: live
//! runs use a 6-field (per-second) expression, missed runs a schedule whose
//! next run is set in the past in server.db while the server is down.
//! Covered: a run is a session of the owner that names its schedule and
//! ends; a run due while the previous one still runs is skipped (no
//! pile-up); an unattended ask under `queue` waits in the approvals queue
//! and under `deny` is refused at once; runs missed while down are each
//! recorded as missed, then run once or skipped per `catch_up`; at run time
//! a removed account or a revoked permission refuses the run, recorded; a
//! bad expression or zone is a 400 naming the field; a member the policy
//! does not let manage schedules gets 403, logged.

mod e2e_common;
mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::api::{delete, get, post, problem, wait_state};
use server_support::{runtime, server_decisions, Server};
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

/// Create a schedule; its id.
async fn create(srv: &Server, token: &str, spec: Value) -> String {
    let r = post(srv, token, "/api/v1/schedules", spec).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}\n{}", srv.stderr());
    body["id"].as_str().unwrap().to_string()
}

async fn runs(srv: &Server, token: &str, id: &str) -> Vec<Value> {
    let r = get(srv, token, &format!("/api/v1/schedules/{id}/runs")).await;
    assert_eq!(r.status(), 200);
    let l: Value = r.json().await.unwrap();
    l["runs"].as_array().unwrap().clone()
}

/// Wait until `ok` holds for the schedule's runs; them.
async fn runs_until(
    srv: &Server,
    token: &str,
    id: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let began = Instant::now();
    loop {
        let r = runs(srv, token, id).await;
        if ok(&r) {
            return r;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "runs never as wanted: {r:?}\n{}",
            srv.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn started(runs: &[Value]) -> Vec<&Value> {
    runs.iter().filter(|r| r["outcome"] == "started").collect()
}

/// A 6-field expression that fires once a minute, a few seconds from now.
fn in_a_few_seconds() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{} * * * * *", (now + 3) % 60)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn push_exec_then_finish(srv: &Server) {
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "print(6*7)"]}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
}

/// The `session.start` leaf of `session`.
fn session_start<'a>(leaves: &'a [Value], session: &str) -> &'a Value {
    leaves
        .iter()
        .find(|l| l["kind"] == "session.start" && l["session"]["id"] == session)
        .unwrap_or_else(|| panic!("no session.start for {session}"))
}

#[test]
fn an_unattended_ask_waits_in_the_queue_and_later_runs_do_not_pile_up() {
    if !sandbox_available("an_unattended_ask_waits_in_the_queue_and_later_runs_do_not_pile_up") {
        return;
    }
    let mut srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "");
    push_exec_then_finish(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let (sched, session) = rt.block_on(async {
        // Every second: the first run parks on its ask; the next ones find it running.
        let sched = create(
            &srv,
            &alice,
            json!({"cron": "* * * * * *", "workspace": "books", "task": "compute",
                   "approve": "queue"}),
        )
        .await;
        let r = runs_until(&srv, &alice, &sched, |r| {
            !started(r).is_empty()
                && r.iter().filter(|x| x["outcome"] == "skipped_busy").count() >= 2
        })
        .await;
        assert_eq!(started(&r).len(), 1, "one run at a time: {r:?}");
        let session = started(&r)[0]["session"].as_str().unwrap().to_string();
        // The ask waits for a person in the approvals queue.
        let began = Instant::now();
        let a = loop {
            let l: Value = get(&srv, &bob, "/api/v1/approvals")
                .await
                .json()
                .await
                .unwrap();
            if let Some(a) = l["approvals"].as_array().unwrap().first() {
                break a.clone();
            }
            assert!(began.elapsed() < Duration::from_secs(30), "no ask queued");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(a["session"], session.as_str());
        assert_eq!(a["requester"], "alice");
        let s = wait_state(&srv, &alice, &session, "waiting_approval").await;
        assert_eq!(s["owner"], "alice");
        // Removed: no more runs; the waiting one is answered and ends.
        assert_eq!(
            delete(&srv, &alice, &format!("/api/v1/schedules/{sched}"))
                .await
                .status(),
            204
        );
        let r = post(
            &srv,
            &bob,
            &format!("/api/v1/approvals/{}", a["approval_id"].as_str().unwrap()),
            json!({"shown_sha256": a["shown_sha256"], "outcome": "granted"}),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        wait_state(&srv, &alice, &session, "ended").await;
        // Deleted: gone from the API, its runs with it.
        assert_eq!(
            get(&srv, &alice, &format!("/api/v1/schedules/{sched}"))
                .await
                .status(),
            404
        );
        (sched, session)
    });
    srv.stop();
    let leaves = srv.leaves();
    let start = session_start(&leaves, &session);
    assert_eq!(start["actor"]["principal"], "alice");
    assert_eq!(start["data"]["schedule"]["id"], sched.as_str());
    assert_eq!(start["data"]["schedule"]["approve"], "queue");
    stele_tests::intents_closed_once(&leaves, &session).unwrap();
    let skipped: Vec<&Value> = server_decisions(&leaves, "schedule.run")
        .into_iter()
        .filter(|l| l["data"]["schedule"] == sched.as_str())
        .collect();
    assert!(skipped.len() >= 2, "{skipped:?}");
    assert!(skipped
        .iter()
        .all(|l| l["data"]["outcome"] == "skipped_busy" && l["decision"]["effect"] == "deny"));
    // Created and deleted with the whole spec in their entries.
    let manage = server_decisions(&leaves, "schedule.manage");
    let made = manage
        .iter()
        .find(|l| l["data"]["change"] == "create")
        .unwrap();
    assert_eq!(made["data"]["spec"]["cron"], "* * * * * *");
    assert_eq!(made["data"]["spec"]["task"], "compute");
    let gone = manage
        .iter()
        .find(|l| l["data"]["change"] == "delete")
        .unwrap();
    assert_eq!(gone["data"]["spec"]["workspace"], "books");
    srv.verify();
}

#[test]
fn an_unattended_ask_under_deny_is_refused_at_once() {
    if !sandbox_available("an_unattended_ask_under_deny_is_refused_at_once") {
        return;
    }
    let mut srv = Server::start(e2e_common::EXEC_NEEDS_APPROVAL, "");
    push_exec_then_finish(&srv);
    let (alice, bob) = (srv.token("alice"), srv.token("bob"));
    let rt = runtime();
    let session = rt.block_on(async {
        let sched = create(
            &srv,
            &alice,
            json!({"cron": in_a_few_seconds(), "timezone": "Europe/London",
                   "workspace": "books", "task": "compute", "approve": "deny"}),
        )
        .await;
        let r = runs_until(&srv, &alice, &sched, |r| !started(r).is_empty()).await;
        let session = started(&r)[0]["session"].as_str().unwrap().to_string();
        let s = wait_state(&srv, &alice, &session, "ended").await;
        assert_eq!(s["owner"], "alice");
        // Nobody was asked.
        let l: Value = get(&srv, &bob, "/api/v1/approvals")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(l["approvals"], json!([]));
        session
    });
    srv.stop();
    let leaves = srv.leaves();
    assert_eq!(
        session_start(&leaves, &session)["data"]["schedule"]["approve"],
        "deny"
    );
    let mine = e2e_common::of_session(&leaves, &session);
    let deny = mine.iter().find(|l| l["kind"] == "approval.deny").unwrap();
    assert_eq!(deny["data"]["method"], "unattended", "{deny}");
    assert!(mine.iter().all(|l| l["kind"] != "approval.grant"));
    assert!(
        mine.iter().all(|l| l["kind"] != "exec.start"),
        "nothing ran"
    );
    srv.verify();
}

#[test]
fn bad_schedules_are_a_400_naming_the_field_and_non_managers_a_logged_403() {
    // dave is a finance member whom the team's policy does not let manage schedules.
    let mut srv = Server::start(
        r#"
@id("test.no-schedules-for-dave")
forbid (principal == User::"dave", action == Action::"schedule.manage", resource);
"#,
        "",
    );
    let (alice, dave, rita, carol) = (
        srv.token("alice"),
        srv.token("dave"),
        srv.token("rita"),
        srv.token("carol"),
    );
    let rt = runtime();
    let entries = rt.block_on(async {
        let base = json!({"cron": "0 9 * * 1-5", "timezone": "Europe/London",
                          "workspace": "books", "task": "the morning report"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for (body, field, says) in [
            (with("cron", json!("0 9 * *")), "cron:", "4 fields"),
            (with("cron", json!("61 9 * * *")), "cron:", "61"),
            (with("cron", json!("0 9 31 2 *")), "cron:", "never"),
            (
                with("cron", json!("0 9 * * 1-5 *  2030")),
                "cron:",
                "fields",
            ),
            (
                with("timezone", json!("Europe/Londn")),
                "timezone:",
                "Londn",
            ),
            (with("timezone", json!("UTC+1")), "timezone:", "IANA"),
            (with("workspace", json!("nope")), "workspace:", "nope"),
            (with("task", json!(" ")), "task:", "task"),
            (with("approve", json!("allow")), "approve", "allow"),
            (with("catch_up", json!("always")), "catch_up", "always"),
        ] {
            let p = problem(
                post(&srv, &alice, "/api/v1/schedules", body.clone()).await,
                400,
            )
            .await;
            let d = p["detail"].as_str().unwrap();
            assert!(d.contains(field) && d.contains(says), "{body}: {d}");
        }
        // A good one, in London time, for alice.
        let id = create(&srv, &alice, base.clone()).await;
        let one: Value = get(&srv, &alice, &format!("/api/v1/schedules/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(one["owner"], "alice");
        assert_eq!(one["timezone"], "Europe/London");
        assert_eq!(one["approve"], "queue", "queue by default");
        assert_eq!(one["catch_up"], "skip", "skip by default");
        assert!(one["next_run"].as_str().is_some_and(|t| t.ends_with('Z')));
        // Those the policy does not let manage the workspace's schedules:
        // dave (forbidden), rita (a reviewer), carol (another team). dave
        // and rita may still see them and their runs (schedule.view, their
        // team's); carol sees nothing.
        let mut entries = Vec::new();
        for (t, sees) in [(&dave, true), (&rita, true), (&carol, false)] {
            let p = problem(post(&srv, t, "/api/v1/schedules", base.clone()).await, 403).await;
            entries.push((p["audit_entry"].as_u64().unwrap(), "schedule.manage"));
            for path in [
                format!("/api/v1/schedules/{id}"),
                format!("/api/v1/schedules/{id}/runs"),
            ] {
                let r = get(&srv, t, &path).await;
                if sees {
                    assert_eq!(r.status(), 200, "{path}");
                } else {
                    let p = problem(r, 403).await;
                    entries.push((p["audit_entry"].as_u64().unwrap(), "schedule.view"));
                }
            }
            let p = problem(
                delete(&srv, t, &format!("/api/v1/schedules/{id}")).await,
                403,
            )
            .await;
            entries.push((p["audit_entry"].as_u64().unwrap(), "schedule.manage"));
            let l: Value = get(&srv, t, "/api/v1/schedules")
                .await
                .json()
                .await
                .unwrap();
            let listed = l["schedules"].as_array().unwrap().len();
            assert_eq!(
                listed,
                usize::from(sees),
                "listed to them only if they may view: {l}"
            );
        }
        let l: Value = get(&srv, &alice, "/api/v1/schedules")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(l["schedules"].as_array().unwrap().len(), 1);
        // Still there after the refused deletes.
        assert_eq!(
            get(&srv, &alice, &format!("/api/v1/schedules/{id}"))
                .await
                .status(),
            200
        );
        entries
    });
    srv.stop();
    let leaves = srv.leaves();
    for (seq, action) in entries {
        let l = leaves
            .iter()
            .find(|l| l["seq"].as_u64() == Some(seq))
            .unwrap();
        assert_eq!(l["data"]["server_action"], action);
        assert_eq!(l["decision"]["effect"], "deny");
        assert_eq!(l["data"]["status"], 403);
    }
    // The reviewer's look was a decision of its own, allowed and recorded.
    assert!(server_decisions(&leaves, "schedule.view").iter().any(|l| {
        l["actor"]["principal"] == "rita"
            && l["decision"]["effect"] == "allow"
            && l["data"]["runs"] == true
    }));
    let dave_refused = server_decisions(&leaves, "schedule.manage")
        .into_iter()
        .find(|l| l["actor"]["principal"] == "dave")
        .unwrap();
    assert!(dave_refused["decision"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "test.no-schedules-for-dave"));
    srv.verify();
}

#[test]
fn runs_missed_while_down_are_recorded_then_caught_up_under_the_policy_of_now() {
    if !sandbox_available(
        "runs_missed_while_down_are_recorded_then_caught_up_under_the_policy_of_now",
    ) {
        return;
    }
    let mut srv = Server::start("", "");
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "caught up"}))
            .into(),
    );
    let (alice, dave, bob) = (srv.token("alice"), srv.token("dave"), srv.token("bob"));
    let rt = runtime();
    // Daily at midnight UTC: the next one is far enough away not to fire during the test.
    let daily = |catch_up: &str| {
        json!({"cron": "0 0 * * *", "workspace": "books", "task": "the report",
               "catch_up": catch_up})
    };
    let (run_once, skip, of_dave, of_bob) = rt.block_on(async {
        (
            create(&srv, &alice, daily("run_once")).await,
            create(&srv, &alice, daily("skip")).await,
            create(&srv, &dave, daily("run_once")).await,
            create(&srv, &bob, daily("run_once")).await,
        )
    });
    srv.stop();
    // While down: three midnights pass for every schedule; dave's account
    // is removed; bob becomes a reviewer (who may start nothing).
    const DAY: i64 = 86_400;
    let t0 = (unix_now() / DAY) * DAY - 2 * DAY;
    let db = rusqlite::Connection::open(srv.store()).unwrap();
    assert_eq!(
        db.execute("UPDATE schedules SET next_run = ?1", [t0])
            .unwrap(),
        4
    );
    db.execute("DELETE FROM tokens WHERE user = 'dave'", [])
        .unwrap();
    assert_eq!(
        db.execute("DELETE FROM users WHERE name = 'dave'", [])
            .unwrap(),
        1
    );
    assert_eq!(
        db.execute("UPDATE users SET role = 'reviewer' WHERE name = 'bob'", [])
            .unwrap(),
        1
    );
    drop(db);
    let before = unix_now();
    srv.spawn();
    let after = unix_now();
    let admin = srv.token("alice");
    let (caught, all) = rt.block_on(async {
        let r = runs_until(&srv, &admin, &run_once, |r| !started(r).is_empty()).await;
        let session = started(&r)[0]["session"].as_str().unwrap().to_string();
        wait_state(&srv, &admin, &session, "ended").await;
        let mut all = Vec::new();
        for id in [&run_once, &skip, &of_dave, &of_bob] {
            all.push(runs(&srv, &admin, id).await);
        }
        (session, all)
    });
    // Each schedule: the midnights from t0 to the restart, each missed.
    for runs in &all {
        let missed: Vec<i64> = runs
            .iter()
            .filter(|r| r["outcome"] == "missed")
            .map(|r| parse_rfc3339(r["due"].as_str().unwrap()))
            .collect();
        let want: Vec<i64> = (0..)
            .map(|k| t0 + DAY * k)
            .take_while(|t| *t <= after)
            .collect();
        assert!(want.len() >= 3);
        assert!(
            missed == want || (missed.len() + 1 == want.len() && want.last() > Some(&before)),
            "{missed:?} vs {want:?}"
        );
        assert!(runs.iter().all(|r| r["audit_entry"].is_u64()));
    }
    let outcomes = |runs: &[Value]| -> Vec<String> {
        runs.iter()
            .filter(|r| r["outcome"] != "missed")
            .map(|r| r["outcome"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(outcomes(&all[0]), ["started"], "run_once: one run now");
    assert!(outcomes(&all[1]).is_empty(), "skip: no run now");
    assert_eq!(outcomes(&all[2]), ["refused"], "dave's account is gone");
    assert!(all[2].last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("no account"));
    assert_eq!(
        outcomes(&all[3]),
        ["refused"],
        "bob may no longer start sessions"
    );
    srv.stop();
    let leaves = srv.leaves();
    let start = session_start(&leaves, &caught);
    assert_eq!(start["actor"]["principal"], "alice");
    assert_eq!(start["data"]["schedule"]["id"], run_once.as_str());
    stele_tests::intents_closed_once(&leaves, &caught).unwrap();
    // Every missed run is an entry of its own.
    let missed = server_decisions(&leaves, "schedule.run")
        .into_iter()
        .filter(|l| l["data"]["outcome"] == "missed")
        .count();
    assert_eq!(
        missed,
        all.iter()
            .flatten()
            .filter(|r| r["outcome"] == "missed")
            .count()
    );
    // The refusals are session.start decisions made at run time, for the owner.
    let refused: Vec<&Value> = server_decisions(&leaves, "session.start")
        .into_iter()
        .filter(|l| l["decision"]["effect"] == "deny" && l["data"]["method"] == "schedule")
        .collect();
    let who: Vec<&str> = refused
        .iter()
        .map(|l| l["actor"]["principal"].as_str().unwrap())
        .collect();
    assert_eq!(refused.len(), 2, "{who:?}");
    assert!(who.contains(&"dave") && who.contains(&"bob"), "{who:?}");
    srv.verify();
}

fn parse_rfc3339(s: &str) -> i64 {
    // YYYY-MM-DDTHH:MM:SSZ, as the server writes it.
    let d = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, day) = (d(0, 4), d(5, 7), d(8, 10));
    let (hh, mm, ss) = (d(11, 13), d(14, 16), d(17, 19));
    assert!(s.ends_with('Z'), "{s}");
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

#[test]
fn stele_schedule_add_list_rm_go_through_the_api_with_clear_errors() {
    let mut srv = Server::start("", "");
    let tokens = srv.dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let file = |who: &str| {
        let p = tokens.join(who);
        std::fs::write(&p, srv.token(who)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (alice, rita) = (file("alice"), file("rita"));
    let base = srv.base.clone();
    let stele = |token: &str, args: &[&str]| {
        let mut all = vec![args[0], args[1], "--server", &base, "--token-file", token];
        all.extend_from_slice(&args[2..]);
        let o = srv.s.run_env(&all, &[]).unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let add = [
        "schedule",
        "add",
        "--cron",
        "0 9 * * 1-5",
        "--tz",
        "Europe/London",
        "--workspace",
        "books",
        "--task",
        "the morning report",
        "--approve",
        "deny",
        "--catch-up",
        "run-once",
        "--json",
    ];
    let (code, out, err) = stele(&alice, &add);
    assert_eq!(code, 0, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["owner"], "alice");
    assert_eq!(made["approve"], "deny");
    assert_eq!(made["catch_up"], "run_once");
    assert_eq!(made["timezone"], "Europe/London");
    let (code, out, _) = stele(&alice, &["schedule", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("Europe/London"), "{out}");
    // The server's refusals, as errors naming what was wrong.
    let mut bad_tz = add.to_vec();
    bad_tz[5] = "Mars/Olympus";
    let (code, _, err) = stele(&alice, &bad_tz);
    assert_eq!(code, 1);
    assert!(
        err.contains("400") && err.contains("timezone") && err.contains("Mars/Olympus"),
        "{err}"
    );
    let mut bad_cron = add.to_vec();
    bad_cron[3] = "0 9 * *";
    let (code, _, err) = stele(&alice, &bad_cron);
    assert_eq!(code, 1);
    assert!(err.contains("cron") && err.contains("fields"), "{err}");
    let (code, _, err) = stele(&rita, &add);
    assert_eq!(code, 1);
    assert!(err.contains("403") && err.contains("audit entry"), "{err}");
    let (code, _, err) = stele(&rita, &["schedule", "rm", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    // Bad flags are usage errors before anything is sent.
    let mut bad_flag = add.to_vec();
    bad_flag[11] = "allow";
    let (code, _, err) = stele(&alice, &bad_flag);
    assert_eq!(code, 2, "{err}");
    // No server named: an error saying how to name one.
    let o = srv
        .s
        .run_env(&["schedule", "list", "--token-file", &alice], &[])
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--server"));
    // Removed once; a second time it is not there.
    let (code, out, err) = stele(&alice, &["schedule", "rm", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id));
    let (code, _, err) = stele(&alice, &["schedule", "rm", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains(&id), "{err}");
    let (_, out, _) = stele(&alice, &["schedule", "list"]);
    assert_eq!(out.trim(), "no schedules");
    srv.stop();
    srv.verify();
}
