#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele serve` hosts the SIEM feed (docs/siem.md, "Hosted by stele
//! serve"): with `[[feed]]` sinks in the server's configuration the log it
//! writes reaches the HEC endpoint (tests/src/siem.rs, the real HEC wire)
//! while it runs, its metrics are served on `[server] metrics_listen`, it
//! stops cleanly with the server (cursor saved, log verifies), and bad feed
//! or metrics settings keep the server from starting.

mod e2e_common;
mod server_support;

use std::collections::HashMap;

use serde_json::Value;
use server_support::{runtime, Server};
use stele_tests::siem::{free_port, wait_for, HttpReceiver, Received};

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";

fn metrics(url: &str) -> HashMap<String, f64> {
    let body = runtime().block_on(async {
        match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    });
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            Some((
                n.strip_suffix("{sink=\"splunk\"}")?.to_string(),
                v.parse().ok()?,
            ))
        })
        .collect()
}

/// Entries received in order from 0, none missing: how many.
fn contiguous(got: &[Received]) -> u64 {
    let mut next = 0;
    for r in got.iter().filter(|r| !r.label.starts_with("finding.")) {
        if r.seq == next {
            next += 1;
        }
    }
    next
}

#[test]
fn the_server_feeds_its_log_serves_the_metrics_and_stops_cleanly() {
    let hec = HttpReceiver::start(TOKEN, 0).unwrap();
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let toml = format!(
        "metrics_listen = \"127.0.0.1:{port}\"\n\n[[feed]]\nname = \"splunk\"\nkind = \"hec\"\n\
         endpoint = \"{}\"\npoll_ms = 50\ntoken_file = \"{}\"\n",
        hec.url(),
        token.display()
    );
    let mut srv = Server::start("", &toml);
    let url = format!("http://127.0.0.1:{port}/metrics");
    // The log as it stood at start reaches the SIEM.
    assert!(
        wait_for(30, || contiguous(&hec.received()) >= 2),
        "nothing delivered: {}",
        srv.stderr()
    );
    // A refused request is logged by the server and then delivered live.
    let before = contiguous(&hec.received());
    let rt = runtime();
    let status = rt.block_on(async {
        srv.http
            .get(srv.url("/api/v1/sessions"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401);
    assert!(
        wait_for(30, || contiguous(&hec.received()) > before),
        "the server's new entry was not delivered: {}",
        srv.stderr()
    );
    let m = metrics(&url);
    assert!(
        wait_for(10, || {
            let m = metrics(&url);
            m.get("stele_feed_lag_entries") == Some(&0.0)
                && m.get("stele_feed_sink_up") == Some(&1.0)
        }),
        "metrics: {m:?}"
    );
    let m = metrics(&url);
    assert!(
        m["stele_feed_delivered_entries_total"] > before as f64,
        "{m:?}"
    );
    // A second feed for the same sink is refused while the server feeds it.
    let user_config = token_dir.path().join("config.toml");
    std::fs::write(&user_config, toml.split_once("\n\n").unwrap().1).unwrap();
    let o = srv
        .s
        .run_env(
            &["audit", "feed", "run", "--until-caught-up"],
            &[("STELE_CONFIG", user_config.to_str().unwrap())],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("already being fed by another process"),
        "{err}"
    );
    // The feed's own start is recorded in the server's log, by the server.
    let got = hec.received();
    let read = got
        .iter()
        .find(|r| r.label == "audit.read")
        .unwrap_or_else(|| panic!("no audit.read delivered: {got:?}"));
    assert_eq!(read.event["class_uid"], 6003);

    srv.stop();
    let err = srv.stderr();
    assert!(err.contains("feeding the log to splunk"), "{err}");
    assert!(err.contains("sink splunk: delivered"), "{err}");
    // The metrics endpoint went with it.
    assert!(metrics(&url).is_empty());
    // The cursor was saved and points into the log, which verifies.
    let cursor: Value = serde_json::from_str(
        &std::fs::read_to_string(srv.s.state.join("audit.db.feed/splunk.json")).unwrap(),
    )
    .unwrap();
    let leaves = srv.leaves();
    let c = cursor["cursor"].as_u64().unwrap();
    assert!(c > before && c <= leaves.len() as u64, "{cursor}");
    assert!(leaves
        .iter()
        .any(|l| l["kind"] == "audit.read" && l["data"]["sinks"][0]["name"] == "splunk"));
    srv.verify();
    // Started again, it resumes from the cursor: the entries written while
    // it was down and after reach the SIEM, none missing.
    srv.spawn();
    let n = leaves.len() as u64;
    rt.block_on(async {
        srv.http
            .get(srv.url("/api/v1/sessions"))
            .send()
            .await
            .unwrap()
    });
    assert!(
        wait_for(30, || contiguous(&hec.received()) > n),
        "not resumed past {n}: {}",
        srv.stderr()
    );
    srv.stop();
    srv.verify();
}

#[test]
fn bad_feed_or_metrics_settings_keep_the_server_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let s = e2e_common::setup(dir.path());
    let cases = [
        (
            "[[feed]]\nname = \"x\"\nkind = \"hec\"\nendpoint = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\ndrop = true\n",
            "drop",
        ),
        (
            "[[feed]]\nname = \"x\"\nkind = \"hec\"\nendpoint = \"http://192.0.2.1:8088\"\ntoken_env = \"T\"\n",
            "endpoint",
        ),
        ("[server]\nmetrics_listen = \"0.0.0.0:9464\"\n", "metrics_listen"),
    ];
    for (text, field) in cases {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let o = std::process::Command::new(stele_tests::stele_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("STELE_STATE_DIR", &s.state)
            .env("T", "tok")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{text} started");
        assert!(err.contains(field), "{text}: {err}");
    }
}

/// Under `stele serve` the feed wakes on each commit of the server's log,
/// not on its poll: with `poll_ms` at its longest (60 s), three entries the
/// server writes one after another each reach the SIEM long before a poll
/// could have found them (a polling feed delivers none of them within the
/// test's wait). Its own entries name the server as the command that ran it.
#[test]
fn the_hosted_feed_wakes_on_each_commit_and_its_entries_name_the_server() {
    let hec = HttpReceiver::start(TOKEN, 0).unwrap();
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    // backlog_limit 0: the log at start is over it, so the feed logs its
    // backlog alert through the server.
    let toml = format!(
        "[[feed]]\nname = \"splunk\"\nkind = \"hec\"\nendpoint = \"{}\"\npoll_ms = 60000\n\
         backlog_limit = 0\ntoken_file = \"{}\"\n",
        hec.url(),
        token.display()
    );
    let mut srv = Server::start("", &toml);
    let began = std::time::Instant::now();
    // The feed's start (audit.read) is written after its sink's first look
    // at the log: only a wake on that commit delivers it before the poll.
    assert!(
        wait_for(20, || hec
            .received()
            .iter()
            .any(|r| r.label == "audit.read")),
        "the feed's start was not delivered: {}",
        srv.stderr()
    );
    let rt = runtime();
    // The refusals of unauthenticated requests, as the SIEM received them.
    let refusals = || {
        hec.received()
            .iter()
            .filter(|r| {
                r.label == "policy.decision" && r.event["actor"]["user"]["name"] == "anonymous"
            })
            .count()
    };
    for round in 0..3 {
        let status = rt.block_on(async {
            srv.http
                .get(srv.url("/api/v1/sessions"))
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 401);
        assert!(
            wait_for(15, || refusals() > round),
            "round {round}: the server's new entry was not delivered on its commit: {}\n{:?}",
            srv.stderr(),
            hec.received()
                .iter()
                .map(|r| (r.seq, r.label.clone()))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(refusals(), 3, "each refusal once");
    // All of it well inside one poll interval: no poll did this.
    assert!(
        began.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}: the deliveries could have come from a poll",
        began.elapsed()
    );
    srv.stop();
    let leaves = srv.leaves();
    let read = leaves
        .iter()
        .find(|l| l["kind"] == "audit.read" && l["data"]["sinks"][0]["name"] == "splunk")
        .unwrap_or_else(|| panic!("no audit.read of the feed"));
    assert_eq!(read["data"]["command"], "serve", "{read}");
    let alert = leaves
        .iter()
        .find(|l| l["kind"] == "audit.alert" && l["data"]["check"] == "feed.backlog")
        .unwrap_or_else(|| panic!("no backlog alert"));
    let reason = alert["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("run by stele serve"), "{reason}");
    assert!(!reason.contains("audit feed run"), "{reason}");
    srv.verify();
}
