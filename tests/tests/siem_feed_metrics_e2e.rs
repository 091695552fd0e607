#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele audit feed run --metrics ADDR` serves the feed's lag and delivery
//! figures as Prometheus text on `GET /metrics` (docs/siem.md, "Metrics"):
//! scraped with a real HTTP client while the feed delivers to the HEC
//! endpoint, through an outage (lag grows, up = 0, failures counted) and
//! the recovery; a non-loopback address is refused unless allowed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions, Store};
use stele_tests::siem::{free_port, wait_for, HttpReceiver, Mode};
use stele_tests::{stele_bin, Stele};

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";

struct Setup {
    _dir: tempfile::TempDir,
    stele: Stele,
    db: PathBuf,
    key: PathBuf,
    config: PathBuf,
}

fn setup(hec: &HttpReceiver) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let stele = Stele::new(&dir.path().join("state"));
    let o = stele
        .run(&["keys", "init", "--origin", "metrics.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = stele.run(&["audit", "init"]).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = dir.path().join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[feed]]\nname = \"splunk\"\nkind = \"hec\"\nendpoint = \"{}\"\npoll_ms = 50\ntoken_file = \"{}\"\n",
            hec.url(),
            token.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    Setup {
        db: state.join("audit.db"),
        key: state.join("keys/log.key"),
        config,
        stele,
        _dir: dir,
    }
}

impl Setup {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STELE_CONFIG", self.config.display().to_string()),
            ("STELE_STATE_DIR", self.stele.state.display().to_string()),
            ("USER", "alice".into()),
        ]
    }

    fn feed(&self, args: &[&str]) -> Command {
        let mut c = Command::new(stele_bin());
        c.args(["audit", "feed", "run"]).args(args).envs(self.env());
        c
    }

    fn append(&self, n: u64) {
        let signer = Arc::new(stele_attest::load_key_file(&self.key).unwrap());
        let log = AuditLog::open(&self.db, signer, LogOptions::default()).unwrap();
        for i in 0..n {
            log.append_blocking(
                Event::new(EventKind::PolicyDecision, Actor::system()).with_data(json!({"n": i})),
            )
            .unwrap();
        }
        log.close().unwrap();
    }

    fn size(&self) -> f64 {
        Store::open(&self.db).unwrap().size().unwrap() as f64
    }
}

/// One scrape: the status line's code, the content type and every sample
/// of the `splunk` sink by metric name.
fn scrape(url: &str) -> Option<(u16, String, String, HashMap<String, f64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, ctype, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Some((status, ctype, r.text().await.ok()?))
    })?;
    let mut samples = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Some(name) = name_labels.strip_suffix("{sink=\"splunk\"}") {
            samples.insert(name.to_string(), value.parse::<f64>().unwrap());
        }
    }
    Some((status, ctype, body, samples))
}

fn samples(url: &str) -> HashMap<String, f64> {
    scrape(url).map(|s| s.3).unwrap_or_default()
}

fn kill(mut c: Child) -> String {
    c.kill().ok();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn metrics_show_the_lag_through_an_outage_and_the_recovery() {
    let hec = HttpReceiver::start(TOKEN, 0).unwrap();
    let s = setup(&hec);
    s.append(20);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let feed = s
        .feed(&["--metrics", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Caught up: no lag, everything delivered, up.
    let caught_up = |m: &HashMap<String, f64>| {
        let size = s.size();
        m.get("stele_feed_lag_entries") == Some(&0.0)
            && m.get("stele_feed_log_entries") == Some(&size)
            && m.get("stele_feed_last_delivered_index") == Some(&(size - 1.0))
            && m.get("stele_feed_delivered_entries_total") >= Some(&size)
            && m.get("stele_feed_sink_up") == Some(&1.0)
            && m.get("stele_feed_lag_seconds") == Some(&0.0)
    };
    let ok = wait_for(30, || caught_up(&samples(&url)));
    let (status, ctype, body, m) = scrape(&url).unwrap();
    assert!(ok, "never caught up: {m:?}\n{body}");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    for t in [
        "# TYPE stele_feed_lag_seconds gauge",
        "# TYPE stele_feed_lag_entries gauge",
        "# TYPE stele_feed_delivered_entries counter",
        "# TYPE stele_feed_delivery_failures counter",
        "# TYPE stele_feed_sink_up gauge",
    ] {
        assert!(body.contains(t), "{t} missing:\n{body}");
    }
    assert_eq!(m["stele_feed_delivery_failures_total"], 0.0);
    assert_eq!(m["stele_feed_sink_stopped"], 0.0);

    // The receiver goes down: the backlog and its age grow, up is 0.
    hec.set_mode(Mode::Busy);
    s.append(10);
    let down = wait_for(20, || {
        let m = samples(&url);
        m.get("stele_feed_sink_up") == Some(&0.0)
            && m.get("stele_feed_lag_entries") >= Some(&10.0)
            && m.get("stele_feed_delivery_failures_total") >= Some(&1.0)
    });
    let first = samples(&url);
    assert!(down, "the outage is not shown: {first:?}");
    let grew = wait_for(10, || {
        samples(&url).get("stele_feed_lag_seconds") > Some(&(first["stele_feed_lag_seconds"] + 1.0))
    });
    assert!(
        grew,
        "the lag did not grow: {first:?} then {:?}",
        samples(&url)
    );
    assert!(
        samples(&url)["stele_feed_delivered_entries_total"]
            == first["stele_feed_delivered_entries_total"]
    );

    // Back: the backlog ships, up again, no lag.
    hec.set_mode(Mode::Normal);
    let back = wait_for(60, || caught_up(&samples(&url)));
    let m = samples(&url);
    let err = kill(feed);
    assert!(back, "never recovered: {m:?} {err}");
    assert!(m["stele_feed_delivery_failures_total"] >= first["stele_feed_delivery_failures_total"]);
}

#[test]
fn metrics_beyond_loopback_need_an_explicit_flag() {
    let hec = HttpReceiver::start(TOKEN, 0).unwrap();
    let s = setup(&hec);
    s.append(2);
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:9464"] {
        let o = s
            .feed(&["--until-caught-up", "--metrics", addr])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{addr} served");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("not a loopback address"), "{addr}: {err}");
        assert_eq!(hec.count(), 0, "nothing delivered when refused");
    }
    // Asked for explicitly, it is served (and the feed runs).
    let o = s
        .feed(&[
            "--until-caught-up",
            "--metrics",
            "0.0.0.0:0",
            "--metrics-allow-remote",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("metrics on http://0.0.0.0:"), "{err}");
    assert!(hec.count() > 0);
    // The loopback forms are accepted without it.
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let o = s
            .feed(&["--until-caught-up", "--metrics", addr])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{addr}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
