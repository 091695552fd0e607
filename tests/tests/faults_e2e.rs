#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Provider faults through the `stele` binary, on both the Anthropic and the
//! OpenAI wire: 429 with Retry-After (honoured), 500 then success, a
//! malformed body, a stream cut before and after content. Each run either
//! retries and finishes, or pauses (exit 75) with a clear message and a
//! resumable session; none hangs, and every intent in the log has exactly
//! one result after it.

mod e2e_common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::json;
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

/// Longest a faulty run may take: the retries' waits plus start-up.
const LIMIT: Duration = Duration::from_secs(90);

struct Case {
    _dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    policy: PathBuf,
    mock: MockModel,
    wire: Wire,
}

impl Case {
    fn new(wire: Wire) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = e2e_common::workspace(dir.path());
        let s = e2e_common::setup(dir.path());
        let policy = e2e_common::policy(dir.path(), wire, "");
        Self {
            s,
            ws,
            policy,
            mock: MockModel::start().unwrap(),
            wire,
            _dir: dir,
        }
    }

    fn run(&self, extra: &[&str]) -> Output {
        let c = run_command(
            &self.s,
            &self.ws,
            &self.policy,
            self.wire,
            &self.mock,
            extra,
            "Summarise the receipts",
        );
        run_bounded(c, LIMIT)
    }

    /// The log's leaves; every intent of the last session closed once.
    fn checked_log(&self) -> (Vec<serde_json::Value>, String) {
        let leaves = leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap();
        let id = last_session(&leaves);
        let n = intents_closed_once(&leaves, &id).unwrap();
        assert!(n >= 1, "no intents in session {id}");
        (leaves, id)
    }
}

fn finish_turn() -> Turn {
    Turn::new().tool_use("fin", "final_answer", json!({"answer": "two receipts"}))
}

fn finish() -> Reply {
    finish_turn().into()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn model_responses<'a>(leaves: &'a [serde_json::Value], id: &str) -> Vec<&'a serde_json::Value> {
    of_session(leaves, id)
        .into_iter()
        .filter(|l| l["kind"] == "model.response")
        .collect()
}

fn assert_ended_ok(leaves: &[serde_json::Value], id: &str) {
    let end = of_session(leaves, id)
        .into_iter()
        .find(|l| l["kind"] == "session.end")
        .unwrap_or_else(|| panic!("session {id} not ended"));
    assert_eq!(end["outcome"]["status"], "ok", "{end}");
}

/// Paused: exit 75, a message naming the fault and how to resume, the
/// failed request recorded as an error, the session left open.
fn assert_paused(c: &Case, o: &Output, fault: &str, kind: &str) -> String {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("paused:") && err.contains(fault), "{err}");
    assert!(err.contains("stele session resume"), "{err}");
    let (leaves, id) = c.checked_log();
    let failed = *model_responses(&leaves, &id).last().unwrap();
    assert_eq!(failed["outcome"]["status"], "error", "{failed}");
    assert_eq!(failed["data"]["error"], kind, "{failed}");
    assert!(
        !of_session(&leaves, &id)
            .iter()
            .any(|l| l["kind"] == "session.end"),
        "a paused session stays open"
    );
    id
}

fn rate_limit_retry_after_is_honoured(wire: Wire) {
    let c = Case::new(wire);
    c.mock.push(Reply::rate_limited("2"));
    c.mock.push(finish());
    let o = c.run(&["--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let reqs = c.mock.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(10),
        "Retry-After: 2 not honoured: retried after {gap:?}"
    );
    assert_eq!(reqs[0].body, reqs[1].body, "the same request is sent again");
    let retry: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "retry")
        .unwrap_or_else(|| panic!("no retry event in {out}"));
    assert_eq!(retry["wait_ms"], 2000, "{retry}");
    assert!(
        retry["reason"].as_str().unwrap().contains("rate limited"),
        "{retry}"
    );
    let (leaves, id) = c.checked_log();
    let responses = model_responses(&leaves, &id);
    assert_eq!(responses.len(), 1, "retries are one logged request");
    assert_eq!(responses[0]["outcome"]["status"], "ok");
    assert_ended_ok(&leaves, &id);
}

fn server_error_then_success(wire: Wire) {
    let c = Case::new(wire);
    c.mock.push(Reply::server_error());
    c.mock.push(
        Turn::new()
            .text("Reading the first receipt.")
            .tool_use("r1", "file_read", json!({"path": "receipts/r1.txt"}))
            .into(),
    );
    c.mock.push(finish());
    let o = c.run(&[]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("waiting for the model") && err.contains("next try in"),
        "the retry is shown: {err}"
    );
    let reqs = c.mock.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body, reqs[1].body);
    assert!(
        reqs[2].text().contains("Client: Acme"),
        "the task continued"
    );
    let (leaves, id) = c.checked_log();
    assert_eq!(model_responses(&leaves, &id).len(), 2);
    assert_ended_ok(&leaves, &id);
}

fn malformed_json_pauses(wire: Wire) {
    let c = Case::new(wire);
    c.mock.push(Reply::Malformed);
    let o = c.run(&[]);
    assert_eq!(
        c.mock.requests().len(),
        1,
        "a malformed body is not retried"
    );
    assert_paused(&c, &o, "malformed response", "malformed");
}

fn stream_cut_before_content_is_retried(wire: Wire) {
    let c = Case::new(wire);
    // Anthropic: message_start and ping; OpenAI: the role chunk. No content yet.
    let before = match wire {
        Wire::Anthropic => 2,
        Wire::OpenAi => 1,
    };
    c.mock.push(Reply::Cut {
        turn: finish_turn(),
        after_events: before,
    });
    c.mock.push(finish());
    let o = c.run(&[]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stream cut"), "{err}");
    assert_eq!(c.mock.requests().len(), 2);
    let (leaves, id) = c.checked_log();
    assert_ended_ok(&leaves, &id);
}

fn stream_cut_mid_answer_pauses_then_resumes(wire: Wire) {
    let c = Case::new(wire);
    // Cut after the first piece of text: content has arrived, so it is not retried.
    let mid = match wire {
        Wire::Anthropic => 4,
        Wire::OpenAi => 2,
    };
    c.mock.push(Reply::Cut {
        turn: Turn::new()
            .text("Let me look at the receipts first.")
            .tool_use("l", "file_list", json!({"path": "receipts"})),
        after_events: mid,
    });
    let o = c.run(&[]);
    assert_eq!(c.mock.requests().len(), 1);
    let id = assert_paused(&c, &o, "stream cut", "stream_cut");

    // The session continues where it stopped.
    c.mock.push(finish());
    let mut r = std::process::Command::new(stele_tests::stele_bin());
    r.args(["session", "resume", &id])
        .env("STELE_STATE_DIR", &c.s.state)
        .env("USER", "alice")
        .envs(e2e_common::env(wire, &c.mock));
    let o = run_bounded(r, LIMIT);
    assert!(o.status.success(), "{}", text(&o).1);
    let reqs = c.mock.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].text().contains("Summarise the receipts"));
    let leaves = leaves_json(&c.s, &c.s.state.join("audit.db")).unwrap();
    intents_closed_once(&leaves, &id).unwrap();
    assert_ended_ok(&leaves, &id);
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
    rate_limit_retry_after_is_honoured,
    server_error_then_success,
    malformed_json_pauses,
    stream_cut_before_content_is_retried,
    stream_cut_mid_answer_pauses_then_resumes,
);
