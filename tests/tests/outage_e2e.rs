#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Outages ridden out: with the model's port closed (connections refused) or the server
//! stalling (with and without keep-alive pings), a run keeps retrying with capped backoff for
//! the configured patience, shows its state (`--json` retry events; one plain line per retry
//! without a terminal, no colour codes), records every attempt, and pauses resumably only
//! after the patience. The "3-minute outage" is scaled down through the configuration
//! (`[provider.NAME] patience_secs`, backoff, stall timeout) so each case takes seconds; the
//! mechanism is the same.

mod e2e_common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

const LIMIT: Duration = Duration::from_secs(120);

struct Case {
    dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    policy: PathBuf,
    mock: MockModel,
    wire: Wire,
}

impl Case {
    /// Patience, backoff and stall timeout from a user config file.
    fn new(wire: Wire, patience: f64, stall: f64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = e2e_common::workspace(dir.path());
        let s = e2e_common::setup(dir.path());
        let policy = e2e_common::policy(dir.path(), wire, "");
        let name = match wire {
            Wire::Anthropic => "anthropic",
            Wire::OpenAi => "openai",
        };
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "[provider.{name}]\npatience_secs = {patience}\ninitial_backoff_secs = 0.2\nmax_backoff_secs = 1\nstall_timeout_secs = {stall}\n"
            ),
        )
        .unwrap();
        Self {
            s,
            ws,
            policy,
            mock: MockModel::start().unwrap(),
            wire,
            dir,
        }
    }

    fn command(&self, extra: &[&str]) -> std::process::Command {
        let mut c = run_command(
            &self.s,
            &self.ws,
            &self.policy,
            self.wire,
            &self.mock,
            extra,
            "Sum the receipts",
        );
        c.env("STELE_CONFIG", self.dir.path().join("config.toml"));
        c
    }

    fn log(&self) -> (Vec<Value>, String) {
        let leaves = leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap();
        let id = last_session(&leaves);
        intents_closed_once(&leaves, &id).unwrap();
        (leaves, id)
    }
}

fn json_events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn finish() -> Reply {
    Turn::new()
        .tool_use("f", "final_answer", json!({"answer": "two receipts"}))
        .into()
}

fn responses<'a>(leaves: &'a [Value], id: &str) -> Vec<&'a Value> {
    of_session(leaves, id)
        .into_iter()
        .filter(|l| l["kind"] == "model.response")
        .collect()
}

/// The port closed for longer than the old ~6 s of retries, shorter than the patience: the
/// run waits it out and finishes; each attempt is in the log and in the events.
fn connection_refused_is_ridden_out(wire: Wire) {
    let c = Case::new(wire, 30.0, 5.0);
    c.mock.push(Reply::Outage {
        refused_for: Duration::from_secs(9),
    });
    c.mock.push(finish());
    let started = Instant::now();
    let o = run_bounded(c.command(&["--json"]), LIMIT);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(9));
    let retries: Vec<Value> = json_events(&o)
        .into_iter()
        .filter(|e| e["event"] == "retry")
        .collect();
    assert!(retries.len() >= 8, "{retries:?}");
    for (i, r) in retries.iter().enumerate() {
        assert_eq!(r["attempt"], i + 1);
        assert_eq!(r["state"], "waiting");
        assert_eq!(r["patience_ms"], 30_000);
        assert!(
            r["wait_ms"].as_u64().unwrap() <= 1000,
            "backoff capped: {r}"
        );
        assert!(r["next_try_at"].as_str().unwrap().ends_with('Z'));
    }
    assert!(retries.last().unwrap()["elapsed_ms"].as_u64().unwrap() >= 8000);
    assert!(
        retries
            .iter()
            .any(|r| r["reason"].as_str().unwrap().contains("network error")),
        "{retries:?}"
    );
    let (leaves, id) = c.log();
    let r = responses(&leaves, &id);
    assert_eq!(r[0]["outcome"]["status"], "ok");
    assert_eq!(
        r[0]["data"]["attempts"].as_u64().unwrap() as usize,
        retries.len() + 1
    );
    let failures = r[0]["data"]["failures"].as_array().unwrap();
    assert_eq!(
        failures.len(),
        retries.len(),
        "every failed attempt is in the entry"
    );
    assert!(
        failures.iter().skip(1).all(|f| f["error"] == "network"),
        "{failures:?}"
    );
}

/// Stalls — silent, and with pings every 100 ms — each caught by the stall timeout, retried
/// until the server answers.
fn stalls_are_ridden_out(wire: Wire) {
    let c = Case::new(wire, 30.0, 0.8);
    for i in 0..4 {
        let turn = Turn::new().text("late");
        c.mock.push(if i % 2 == 0 {
            Reply::Stall {
                turn,
                after_events: 0,
                hold: Duration::from_secs(60),
            }
        } else {
            Reply::PingStall {
                turn,
                after_events: 1,
                hold: Duration::from_secs(60),
                every: Duration::from_millis(100),
            }
        });
    }
    c.mock.push(finish());
    let started = Instant::now();
    let o = run_bounded(c.command(&[]), LIMIT);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "pings did not hold the call: {:?}",
        started.elapsed()
    );
    // Without a terminal: one plain line per retry, no escape codes, no raw tracing lines.
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(!err.contains("WARN"), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("waiting for the model"))
        .collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].contains("attempt 1")
            && lines[0].contains("of 0:30")
            && lines[0].contains("next try in"),
        "{}",
        lines[0]
    );
    let (leaves, id) = c.log();
    let r = responses(&leaves, &id);
    assert_eq!(r[0]["data"]["attempts"], 5);
    let failures = r[0]["data"]["failures"].as_array().unwrap();
    assert!(
        failures.iter().all(|f| f["error"] == "timeout"),
        "{failures:?}"
    );
}

/// Longer than the patience: the run pauses (exit 75) only after it, with the attempts in
/// the log; resumed once the server is back, it finishes.
fn an_outage_past_the_patience_pauses_then_resumes(wire: Wire) {
    let c = Case::new(wire, 4.0, 5.0);
    c.mock.push(Reply::Outage {
        refused_for: Duration::from_secs(12),
    });
    let started = Instant::now();
    let o = run_bounded(c.command(&["--json"]), LIMIT);
    let took = started.elapsed();
    assert_eq!(
        o.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(11),
        "{took:?}"
    );
    let ev = json_events(&o);
    let end = ev.iter().find(|e| e["event"] == "end").unwrap();
    assert_eq!(end["outcome"], "paused");
    assert_eq!(end["resumable"], true);
    assert!(
        end["detail"].as_str().unwrap().contains("attempts over"),
        "{end}"
    );
    let (leaves, id) = c.log();
    let r = responses(&leaves, &id);
    assert_eq!(r[0]["outcome"]["status"], "error");
    assert!(r[0]["data"]["attempts"].as_u64().unwrap() >= 4, "{}", r[0]);
    // The server comes back; the session goes on.
    std::thread::sleep(
        Duration::from_secs(12).saturating_sub(started.elapsed()) + Duration::from_millis(500),
    );
    c.mock.push(finish());
    let mut resume = std::process::Command::new(stele_tests::stele_bin());
    resume
        .args(["session", "resume", &id])
        .env("STELE_STATE_DIR", &c.s.state)
        .env("STELE_CONFIG", c.dir.path().join("config.toml"))
        .env("USER", "alice")
        .envs(e2e_common::env(wire, &c.mock));
    let o = run_bounded(resume, LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (leaves, _) = c.log();
    assert!(of_session(&leaves, &id)
        .iter()
        .any(|l| l["kind"] == "session.end" && l["outcome"]["status"] == "ok"));
}

macro_rules! on_both_wires {
    ($($name:ident),* $(,)?) => {
        mod anthropic {
            $(
                #[test]
                fn $name() {
                    if super::sandbox_available(concat!("anthropic::", stringify!($name))) {
                        super::$name(super::Wire::Anthropic);
                    }
                }
            )*
        }
        mod openai {
            $(
                #[test]
                fn $name() {
                    if super::sandbox_available(concat!("openai::", stringify!($name))) {
                        super::$name(super::Wire::OpenAi);
                    }
                }
            )*
        }
    };
}

on_both_wires!(
    connection_refused_is_ridden_out,
    stalls_are_ridden_out,
    an_outage_past_the_patience_pauses_then_resumes,
);
