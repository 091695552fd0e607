#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele serve` on PostgreSQL end to end: a temporary cluster
//! (`stele_tests::postgres`), `[store] url` in the server's configuration;
//! the server refuses to start on an unmigrated database and tells the
//! operator to run `--migrate`; after it, accounts and tokens made on the
//! host, a password login and a session over the API all land in
//! PostgreSQL (and no `server.db` is made); the database stopped and
//! started again is 503 with `Retry-After` meanwhile, then works. A store that cannot be reached
//! stops `stele serve` and `stele user add` with the file and field named
//! and the password hidden.

mod e2e_common;
mod server_support;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use server_support::api::{start_session, wait_state};
use server_support::{runtime, Server};
use stele_tests::mock_model::{Turn, Wire};
use stele_tests::postgres::TempCluster;
use stele_tests::sandbox_available;

const PASSWORD: &str = "a long passphrase for pat";

/// `stele ARGS` with the state folder `state`, its output.
fn stele(state: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(stele_tests::stele_bin())
        .args(args)
        .env("STELE_STATE_DIR", state)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    c.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A state folder with a key, a policy, and a `server.toml` naming `url`
/// as the store (everything `stele serve` opens before the store).
fn server_toml(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let s = e2e_common::setup(dir);
    let policy = e2e_common::policy(dir, Wire::Anthropic, "");
    let cfg = dir.join("server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\npolicy = {policy:?}\ndb = {:?}\n[store]\nurl = {url:?}\n",
            s.state.join("audit.db")
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_server_on_postgresql_migrates_then_keeps_its_state_there() {
    let Some(cluster) = TempCluster::start().unwrap() else {
        return;
    };
    let url = cluster.create_db("stele").unwrap();
    // Before `--migrate`: neither the server nor `stele user add` will use it.
    let pre = tempfile::tempdir().unwrap();
    let cfg = server_toml(pre.path(), &url);
    let state = pre.path().join("state");
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["serve", "--config", cfg],
        vec!["user", "add", "zed", "--team", "finance", "--config", cfg],
    ] {
        let o = stele(&state, &args, None);
        let out = text(&o);
        assert!(!o.status.success(), "{args:?}: {out}");
        assert!(
            out.contains("schema version 0") && out.contains("stele serve --migrate"),
            "{args:?}: {out}"
        );
    }
    let o = stele(&state, &["serve", "--migrate", "--config", cfg], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("from schema version 0 to"),
        "{}",
        text(&o)
    );
    let o = stele(&state, &["serve", "--migrate", "--config", cfg], None);
    assert!(
        o.status.success() && text(&o).contains("up to date"),
        "{}",
        text(&o)
    );
    assert!(!state.join("server.db").exists());

    // A server on it (its accounts made by `stele user add`).
    let mut srv = Server::prepare("", &format!("[store]\nurl = {url:?}\n"));
    let state = srv.s.state.clone();
    // The main server: a password account made on the host, then start.
    let config = srv.config.to_str().unwrap().to_string();
    let o = stele(
        &state,
        &[
            "user",
            "add",
            "pat",
            "--team",
            "finance",
            "--password-stdin",
            "--config",
            &config,
        ],
        Some(PASSWORD),
    );
    assert!(o.status.success(), "{}", text(&o));
    srv.spawn();
    assert!(
        srv.stderr().contains("store postgres://stele@"),
        "{}",
        srv.stderr()
    );
    let alice = srv.token("alice");
    let sandbox = sandbox_available("a_server_on_postgresql_migrates_then_keeps_its_state_there");
    if sandbox {
        srv.mock.push(
            Turn::new()
                .tool_use("f", "final_answer", json!({"answer": "done"}))
                .into(),
        );
    }
    let rt = runtime();
    let session = rt.block_on(async {
        let r = srv
            .http
            .post(srv.url("/api/v1/login"))
            .json(&json!({"user": "pat", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", srv.stderr());
        let pat = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        // Both tokens work (alice's once the server has recorded its creation).
        for t in [&pat, &alice] {
            let r = srv
                .http
                .get(srv.url("/api/v1/sessions"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", srv.stderr());
        }
        if !sandbox {
            return None;
        }
        let id = start_session(&srv, &alice, "say done").await;
        wait_state(&srv, &alice, &id, "ended").await;
        Some(id)
    });

    // The database going away (a restart, a failover) is "try again", not
    // a failure: 503 with `Retry-After`, then working again once it is back.
    let sessions = |srv: &Server, t: String| {
        let r = srv.http.get(srv.url("/api/v1/sessions")).bearer_auth(t);
        rt.block_on(async move { r.send().await.unwrap() })
    };
    cluster.stop().unwrap();
    let r = sessions(&srv, alice.clone());
    assert_eq!(r.status(), 503, "{}", srv.stderr());
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let detail = rt.block_on(r.json::<Value>()).unwrap()["detail"].clone();
    assert!(
        detail.as_str().unwrap().contains("unavailable, try again"),
        "{detail}"
    );
    cluster.run().unwrap();
    // Pooled connections broken by the restart are each one more 503.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let status = sessions(&srv, alice.clone()).status().as_u16();
        statuses.push(status);
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    srv.stop();

    // Everything is in PostgreSQL: the accounts (recorded, so working), the
    // tokens, the login's token, the session and its events.
    let q = |sql: &str| cluster.psql("stele", sql).unwrap();
    assert_eq!(
        q("SELECT string_agg(name, ',' ORDER BY name) FROM users WHERE pending_change IS NULL"),
        "alice,bob,carol,dave,pat,rita"
    );
    assert_eq!(q("SELECT count(*) FROM admin_changes"), "0");
    assert_eq!(
        q("SELECT string_agg(label, ',' ORDER BY seq) FROM tokens WHERE account IN ('alice', 'pat')"),
        "api,login"
    );
    if let Some(id) = session {
        assert_eq!(
            q(&format!(
                "SELECT owner, state FROM sessions WHERE id = '{id}'"
            )),
            "alice|ended"
        );
        let events: u64 = q(&format!(
            "SELECT count(*) FROM events WHERE session = '{id}'"
        ))
        .parse()
        .unwrap();
        assert!(events >= 2, "{events} events");
        let last: u64 = q(&format!("SELECT max(n) FROM events WHERE session = '{id}'"))
            .parse()
            .unwrap();
        assert_eq!(last, events, "event numbers are consecutive from 1");
    }
    assert!(
        !srv.store().exists(),
        "a server on PostgreSQL made {}",
        srv.store().display()
    );
    srv.verify();
}

#[test]
fn an_unreachable_store_stops_the_server_naming_the_field_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // A socket folder with no server in it.
    let host = dir.path().display().to_string().replace('/', "%2F");
    let cfg = server_toml(
        dir.path(),
        &format!("postgres://stele:hunter2@{host}:5999/stele"),
    );
    let cfg = cfg.to_str().unwrap();
    let state = dir.path().join("state");
    for args in [
        vec!["serve", "--config", cfg],
        vec!["serve", "--migrate", "--config", cfg],
        vec!["user", "add", "zed", "--team", "finance", "--config", cfg],
    ] {
        let o = stele(&state, &args, None);
        let out = text(&o);
        assert!(!o.status.success(), "{args:?}: {out}");
        assert!(
            out.contains("server.toml") && out.contains("store.url") && out.contains("stele:***@"),
            "{args:?}: {out}"
        );
        assert!(!out.contains("hunter2"), "{args:?}: {out}");
    }
    // Nothing was made for a store that was never reached.
    assert!(!state.join("server.db").exists());
}
