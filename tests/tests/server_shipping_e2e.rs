#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Workers ship their logs to the server (docs/server.md "Workers:
//! shipping"), end to end: a real `stele serve` on a temporary PostgreSQL
//! cluster, real `stele worker` processes, the mock model over the real
//! wire. A session run by a worker reaches the server's copy byte for byte,
//! its checkpoints cosigned by the server's witness key and kept in the
//! worker's log (its export carries them); a batch made by hand with one
//! byte changed, or with a checkpoint of another root, is refused with 422
//! naming the reason, nothing of it stored, an `audit.alert` recorded; a
//! revoked key (`stele workers revoke`) is refused; a worker cut off from
//! its server for a minute, then from PostgreSQL, goes on logging (its
//! session ends meanwhile) and ships its backlog after, with no gap.

mod e2e_common;
mod server_support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use server_support::api::{post, problem, start_session, wait_state};
use server_support::runtime;
use server_support::shipping::{
    b64, check_cosignature, local_bodies, local_entries, newest_cosignature, note_for, shipped,
    shipped_bodies, shipped_size, wait_shipped,
};
use server_support::worker::{
    database, free_listen, server, server_on, sleep_secs_then_finish, wait_event, Worker,
};
use stele_attest::{Checkpoint, Ed25519Signer, Signer as _};
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};
use stele_tests::postgres::TempCluster;
use stele_tests::sandbox_available;

/// The server's witness key, as the worker API gives it.
async fn witness_key(srv: &server_support::Server, wtoken: &str, origin: &str) -> String {
    let r = post(
        srv,
        wtoken,
        "/api/v1/worker/log/size",
        json!({ "origin": origin }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["witness"].as_str().unwrap().to_string()
}

#[test]
fn a_workers_log_reaches_the_server_whole_and_cosigned() {
    const NAME: &str = "a_workers_log_reaches_the_server_whole_and_cosigned";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "whole");
    let srv = server(&url, "", 30);
    let alice = srv.token("alice");
    let ada = srv.token_scoped("ada", "read,admin");
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w = Worker::start(&srv, "w1", &wtoken, 1);
    let origin = "w1.e2e.stele.invalid/log";
    sleep_secs_then_finish(&srv, 1);
    let rt = runtime();
    let (id, witness) = rt.block_on(async {
        let id = start_session(&srv, &alice, "a task").await;
        wait_state(&srv, &alice, &id, "ended").await;
        (id.clone(), witness_key(&srv, &wtoken, origin).await)
    });
    // Shipped while it runs: the session's entries are there before it stops.
    let db = w.s.state.join("audit.db");
    let running = local_entries(&db).len() as u64;
    wait_shipped(&cluster, "whole", origin, running, Duration::from_secs(20));
    assert!(
        w.signal("TERM", Duration::from_secs(40)).success(),
        "{}",
        w.stderr()
    );
    let local = local_entries(&db);
    let copy = shipped(&cluster, "whole", origin);
    assert_eq!(
        copy.len(),
        local.len(),
        "shipped {} of {} entries\n{}",
        copy.len(),
        local.len(),
        w.stderr()
    );
    for (i, (a, b)) in local.iter().zip(&copy).enumerate() {
        assert!(a == b, "entry {i} differs from the worker's");
    }
    assert_eq!(
        shipped_size(&cluster, "whole", origin),
        Some(local.len() as u64)
    );
    // The worker keeps the server's cosignature of its newest checkpoint.
    let (size, name, line, note) = newest_cosignature(&db).expect("no cosignature kept");
    assert_eq!(size, local.len() as u64);
    assert!(
        witness.starts_with(&format!("{name}+")),
        "{witness} / {name}"
    );
    check_cosignature(&witness, &note, &line);
    // Its log verifies with the kept checkpoints, and its export carries the cosignature.
    w.verify();
    let out = w.dir.path().join("export");
    let e =
        w.s.run(&["audit", "export", "--out", out.to_str().unwrap()])
            .unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let found = walk(&out).iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .contains(&format!("\u{2014} {name} "))
    });
    assert!(found, "no cosignature by {name} in the export");
    assert!(!w.stderr().contains("shipping refused"), "{}", w.stderr());
    // A reviewer finds the session's timeline among the shipped entries.
    let in_session = local
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            v["session"]["id"] == id.as_str()
        })
        .count();
    assert!(in_session > 2);
    // The session's payload bodies are on the server as the worker holds them.
    let seqs: Vec<u64> = (0..local.len() as u64)
        .filter(|&i| {
            let v: Value = serde_json::from_slice(&local[i as usize]).unwrap();
            v["session"]["id"] == id.as_str()
        })
        .collect();
    let bodies = local_bodies(&db, Some(&seqs));
    assert!(!bodies.is_empty(), "the session stored no payload body");
    assert_eq!(
        shipped_bodies(&cluster, "whole", origin, Some(&seqs)),
        bodies
    );
    assert_eq!(
        shipped_bodies(&cluster, "whole", origin, None),
        local_bodies(&db, None)
    );
    rt.block_on(async {
        let r =
            server_support::api::get(&srv, &ada, &format!("/api/v1/audit/shipped?session={id}"))
                .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let found = v["entries"].as_array().unwrap();
        assert_eq!(found.len(), in_session, "{v}");
        assert!(found
            .iter()
            .all(|e| e["origin"] == origin && e["leaf"]["session"]["id"] == id.as_str()));
        assert_eq!(found[0]["leaf"]["kind"], "session.start", "{v}");
        // A search field it does not know is refused.
        let r = server_support::api::get(&srv, &ada, "/api/v1/audit/shipped?colour=red").await;
        problem(r, 400).await;
        // Alice (a member) may not read the log.
        let r =
            server_support::api::get(&srv, &alice, &format!("/api/v1/audit/shipped?session={id}"))
                .await;
        assert_eq!(r.status(), 403);
    });
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn tampered_batches_and_a_revoked_key_are_refused_and_recorded() {
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "tamper");
    let mut srv = server(&url, "", 30);
    let ada = srv.token_scoped("ada", "read,admin");
    let wtoken = srv.token_scoped("ada", "worker");
    let intruder = srv.token_scoped("carol", "worker");
    // A log made here, by a "worker" that registers its key by a claim.
    let origin = "forger.e2e.stele.invalid/log";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::generate(origin).unwrap());
    let log = AuditLog::create(&db, signer.clone(), LogOptions::default()).unwrap();
    for _ in 0..4 {
        log.append_blocking(Event::new(EventKind::PolicyLoad, Actor::system()))
            .unwrap();
    }
    log.close().unwrap();
    let leaves = local_entries(&db);
    let n = leaves.len();
    let rt = runtime();
    rt.block_on(async {
        let r = post(
            &srv,
            &wtoken,
            "/api/v1/worker/claim",
            json!({"name": "forger", "verifier": signer.verifier().to_string()}),
        )
        .await;
        assert_eq!(r.status(), 204);
        let ship = |from: usize, leaves: Vec<Vec<u8>>, note: String| {
            post(
                &srv,
                &wtoken,
                "/api/v1/worker/log",
                json!({"worker": "forger", "origin": origin, "from": from,
                       "leaves": b64(&leaves), "checkpoint": note}),
            )
        };
        // One byte changed in entry 1 (signed over, so only the leaf check catches it).
        let mut bad = leaves.clone();
        let at = bad[1].len() / 2;
        bad[1][at] = if bad[1][at] == b'a' { b'b' } else { b'a' };
        let note = note_for(signer.as_ref(), &bad);
        let p = problem(ship(0, bad, note).await, 422).await;
        assert!(p["detail"].as_str().unwrap().contains("index 1"), "{p}");
        // The right leaves, a checkpoint of another root.
        let wrong = Checkpoint {
            origin: origin.into(),
            size: n as u64,
            root: [0; 32],
        }
        .sign(signer.as_ref())
        .unwrap()
        .to_text();
        let p = problem(ship(0, leaves.clone(), wrong).await, 422).await;
        assert!(p["detail"].as_str().unwrap().contains("root"), "{p}");
        // A checkpoint signed by another key of the same name.
        let forger = Ed25519Signer::generate(origin).unwrap();
        let p = problem(
            ship(0, leaves.clone(), note_for(&forger, &leaves)).await,
            422,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("checkpoint"), "{p}");
        // An origin no worker of this account registered.
        let stranger = Ed25519Signer::generate("stranger.e2e.stele.invalid/log").unwrap();
        let r = post(
            &srv,
            &wtoken,
            "/api/v1/worker/log",
            json!({"worker": "forger", "origin": "stranger.e2e.stele.invalid/log", "from": 0,
                   "leaves": [], "checkpoint": note_for(&stranger, &[])}),
        )
        .await;
        let p = problem(r, 422).await;
        assert!(
            p["detail"].as_str().unwrap().contains("unknown origin"),
            "{p}"
        );
        assert_eq!(shipped_size(&cluster, "tamper", origin), None);
        assert!(shipped(&cluster, "tamper", origin).is_empty());
        // The first two entries, whole: taken and cosigned.
        let r = ship(
            0,
            leaves[..2].to_vec(),
            note_for(signer.as_ref(), &leaves[..2]),
        )
        .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["size"], 2);
        check_cosignature(
            v["witness"].as_str().unwrap(),
            &note_for(signer.as_ref(), &leaves[..2]),
            v["cosignature"].as_str().unwrap(),
        );
        // Again from 0: the server says where it stands.
        let p = problem(
            ship(
                0,
                leaves[..2].to_vec(),
                note_for(signer.as_ref(), &leaves[..2]),
            )
            .await,
            409,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("holds 2"), "{p}");
        // Where it stands is told only to the account whose log it is.
        let body = json!({"origin": origin});
        let r = post(&srv, &wtoken, "/api/v1/worker/log/size", body.clone()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["size"], 2);
        let r = post(&srv, &intruder, "/api/v1/worker/log/size", body).await;
        let p = problem(r, 403).await;
        assert!(p["detail"].as_str().unwrap().contains(origin), "{p}");
    });
    // An admin revokes the worker's key (the CLI, through the API).
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, &ada).unwrap();
    let o = srv
        .s
        .run(&[
            "--server",
            &srv.base,
            "--token-file",
            token_file.to_str().unwrap(),
            "workers",
            "revoke",
            "forger",
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("revoked"));
    rt.block_on(async {
        let rest = leaves.to_vec();
        let r = post(
            &srv,
            &wtoken,
            "/api/v1/worker/log",
            json!({"worker": "forger", "origin": origin, "from": 2,
                   "leaves": b64(&rest[2..]), "checkpoint": note_for(signer.as_ref(), &rest)}),
        )
        .await;
        let p = problem(r, 422).await;
        assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    });
    assert_eq!(shipped(&cluster, "tamper", origin), leaves[..2].to_vec());
    // Each refusal is in the server's log, as is the revocation.
    srv.stop();
    let log = srv.leaves();
    let alerts: Vec<&Value> = log
        .iter()
        .filter(|l| l["kind"] == "audit.alert" && l["data"]["check"] == "shipping")
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    assert!(alerts[0]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("index 1"));
    assert_eq!(alerts[0]["data"]["index"], 1);
    let revoked = server_support::server_decisions(&log, "worker.revoke");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    srv.verify();
}

#[test]
fn a_cut_off_worker_goes_on_and_ships_its_backlog_with_no_gap() {
    const NAME: &str = "a_cut_off_worker_goes_on_and_ships_its_backlog_with_no_gap";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "cutoff");
    let listen = free_listen();
    // A lease longer than the outage: the claim outlives it (docs/server.md
    // "Workers: failover", a worker that was only cut off).
    let mut srv = server_on(&url, "", 120, &listen);
    let alice = srv.token("alice");
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w = Worker::start(&srv, "w1", &wtoken, 1);
    let origin = "w1.e2e.stele.invalid/log";
    let db = w.s.state.join("audit.db");
    sleep_secs_then_finish(&srv, 8);
    let rt = runtime();
    let id = rt.block_on(async {
        let id = start_session(&srv, &alice, "a long one").await;
        wait_event(&srv, &alice, &id, "tool_call").await;
        id
    });
    // The server goes away for a minute while the tool runs: the worker
    // finishes the session meanwhile, on its own log.
    let before = shipped_size(&cluster, "cutoff", origin).unwrap_or(0);
    srv.stop();
    std::thread::sleep(Duration::from_secs(60));
    let grown = local_entries(&db).len() as u64;
    assert!(
        grown > before,
        "the worker's log did not grow while cut off"
    );
    srv.spawn();
    // Then PostgreSQL restarts under the server.
    cluster.stop().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cluster.run().unwrap();
    rt.block_on(async {
        wait_state(&srv, &alice, &id, "ended").await;
    });
    assert!(
        w.signal("TERM", Duration::from_secs(40)).success(),
        "{}",
        w.stderr()
    );
    let local = local_entries(&db);
    assert!(local.len() as u64 > before);
    let copy = shipped(&cluster, "cutoff", origin);
    assert_eq!(copy.len(), local.len(), "{}", w.stderr());
    assert!(
        copy == local,
        "the shipped copy differs from the worker's log"
    );
    let (size, ..) = newest_cosignature(&db).unwrap();
    assert_eq!(size, local.len() as u64);
    w.verify();
    assert!(!w.stderr().contains("shipping refused"), "{}", w.stderr());
}

/// A worker's log key rotated between two runs (`stele keys rotate`, then
/// the new key file in place): the batch holding the rotation ends at its
/// boundary, whose checkpoint both keys signed; the server follows the new
/// key, and everything after ships under it, whole.
#[test]
fn a_worker_whose_key_rotates_ships_on_under_the_new_key() {
    const NAME: &str = "a_worker_whose_key_rotates_ships_on_under_the_new_key";
    if !sandbox_available(NAME) {
        return;
    }
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = database(&cluster, "rotate");
    let srv = server(&url, "", 30);
    let alice = srv.token("alice");
    let wtoken = srv.token_scoped("ada", "worker");
    let mut w = Worker::start(&srv, "w1", &wtoken, 1);
    let origin = "w1.e2e.stele.invalid/log";
    let db = w.s.state.join("audit.db");
    let rt = runtime();
    let run_one = |task: &str| {
        sleep_secs_then_finish(&srv, 1);
        rt.block_on(async {
            let id = start_session(&srv, &alice, task).await;
            wait_state(&srv, &alice, &id, "ended").await;
        });
    };
    run_one("under the first key");
    assert!(
        w.signal("TERM", Duration::from_secs(40)).success(),
        "{}",
        w.stderr()
    );
    let held = |c: &TempCluster| {
        c.psql(
            "rotate",
            &format!("SELECT verifier FROM shipped_logs WHERE origin = '{origin}'"),
        )
        .unwrap()
    };
    let first = held(&cluster);
    assert!(!first.is_empty());

    let new_key = w.dir.path().join("new.key");
    let nk = new_key.to_str().unwrap();
    for args in [
        vec!["keys", "init", "--key", nk, "--origin", origin],
        vec!["keys", "rotate", "--to-key", nk, "--reason", "yearly"],
    ] {
        let o = w.s.run(&args).unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::fs::copy(&new_key, w.s.state.join("keys").join("log.key")).unwrap();
    w.restart(&srv, &wtoken, 1);
    run_one("under the second key");
    assert!(
        w.signal("TERM", Duration::from_secs(40)).success(),
        "{}",
        w.stderr()
    );

    let local = local_entries(&db);
    let copy = shipped(&cluster, "rotate", origin);
    let kinds: Vec<String> = local
        .iter()
        .map(|l| serde_json::from_slice::<Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(copy.len(), local.len(), "{kinds:?}\n{}", w.stderr());
    assert!(
        copy == local,
        "the shipped copy differs from the worker's log"
    );
    let rotation: Value = local
        .iter()
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .find(|v| v["kind"] == "key.rotation")
        .expect("no key.rotation in the worker's log");
    assert_eq!(rotation["data"]["old"], first.as_str());
    assert_eq!(held(&cluster), rotation["data"]["new"].as_str().unwrap());
    assert!(!w.stderr().contains("shipping refused"), "{}", w.stderr());
}
