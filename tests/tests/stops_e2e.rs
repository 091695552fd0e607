#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every stop reason is acted on, with a clear outcome in the log, the `--json` events and
//! the exit code; a call the model did not finish is not run; an unknown tool is refused and
//! logged; an OpenAI stream without `data: [DONE]` (Anthropic without `message_stop`) is
//! complete once the stop reason came. On both wires.

mod e2e_common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

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

    fn run(&self) -> (Output, Vec<Value>) {
        let c = run_command(
            &self.s,
            &self.ws,
            &self.policy,
            self.wire,
            &self.mock,
            &["--json"],
            "Sum the receipts",
        );
        let o = run_bounded(c, LIMIT);
        let events = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (o, events)
    }

    /// The last session's leaves (every intent closed once).
    fn log(&self) -> (Vec<Value>, String) {
        let leaves = leaves_json(&self.s, &self.s.state.join("audit.db")).unwrap();
        let id = last_session(&leaves);
        intents_closed_once(&leaves, &id).unwrap();
        (leaves, id)
    }

    fn limit(&self) -> &'static str {
        match self.wire {
            Wire::Anthropic => "max_tokens",
            Wire::OpenAi => "length",
        }
    }
}

fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

fn kinds<'a>(leaves: &'a [Value], id: &str, kind: &str) -> Vec<&'a Value> {
    of_session(leaves, id)
        .into_iter()
        .filter(|l| l["kind"] == kind)
        .collect()
}

fn finish() -> Reply {
    Turn::new()
        .tool_use("f", "final_answer", json!({"answer": "done"}))
        .into()
}

/// A call cut by the output limit is not run: a refusal entry names it, the model is told
/// why and given a higher limit, and the next request carries it.
fn a_call_cut_by_the_limit_is_not_run(wire: Wire) {
    let c = Case::new(wire);
    let input = json!({"path": "reports/summary.csv", "content": "client,total\nAcme,10.50\n"});
    c.mock.push(
        Turn::new()
            .text("Writing the report.")
            .tool_use("w1", "file_write", input.clone())
            .stop(c.limit())
            .cut_input_at(30)
            .into(),
    );
    // And cut before any input at all: an empty input is not `{}`.
    c.mock.push(
        Turn::new()
            .tool_use("w2", "file_write", input.clone())
            .stop(c.limit())
            .cut_input_at(0)
            .into(),
    );
    c.mock.push(
        Turn::new()
            .tool_use("w3", "file_write", input.clone())
            .into(),
    );
    c.mock.push(finish());
    let (o, ev) = c.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!c.ws.join("reports/summary.csv.partial").exists());
    assert_eq!(
        std::fs::read_to_string(c.ws.join("reports/summary.csv")).unwrap(),
        "client,total\nAcme,10.50\n",
        "only the complete call wrote"
    );
    let reqs = c.mock.requests();
    let max = |i: usize| {
        let b = reqs[i].json();
        b["max_tokens"]
            .as_u64()
            .or(b["max_completion_tokens"].as_u64())
            .unwrap()
    };
    assert!(
        max(1) > max(0) && max(2) > max(1),
        "the limit is raised after each cut: {} {} {}",
        max(0),
        max(1),
        max(2)
    );
    assert!(
        reqs[1].text().contains("cut off at the output limit"),
        "{}",
        reqs[1].text()
    );
    let stops = events(&ev, "stop");
    assert_eq!(stops.len(), 2, "{ev:?}");
    assert_eq!(stops[0]["action"], "continue");
    let refused: Vec<&Value> = events(&ev, "decision")
        .into_iter()
        .filter(|e| e["decision"] == "deny")
        .collect();
    assert_eq!(refused.len(), 2, "{ev:?}");
    let (leaves, id) = c.log();
    let decisions: Vec<&Value> = kinds(&leaves, &id, "policy.decision")
        .into_iter()
        .filter(|l| l["data"]["refused"] == "input_cut")
        .collect();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["outcome"]["status"], "denied");
    assert!(decisions[0]["data"]["call_id"]
        .as_str()
        .unwrap()
        .starts_with("call-"));
    assert_eq!(
        kinds(&leaves, &id, "tool.intent").len(),
        1,
        "only the complete call ran"
    );
    let responses = kinds(&leaves, &id, "model.response");
    assert_eq!(responses[0]["data"]["stop"], "max_tokens");
    assert_eq!(responses[2]["data"]["stop"], "tool_use");
}

/// A text answer cut by the limit: the model is asked to go on, with a higher limit.
fn a_text_cut_by_the_limit_continues(wire: Wire) {
    let c = Case::new(wire);
    c.mock.push(
        Turn::new()
            .text("The totals are: Acme 10.50, Glo")
            .stop(c.limit())
            .into(),
    );
    c.mock.push(Turn::new().text("bex 4.00.").into());
    let (o, ev) = c.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reqs = c.mock.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].text().contains("Continue exactly where it stopped"));
    assert_eq!(events(&ev, "stop")[0]["reason"], "max_tokens");
    let end = events(&ev, "end")[0];
    assert_eq!(end["outcome"], "stopped");
}

/// `refusal` (Anthropic) and `content_filter` (OpenAI): the run ends, nothing the reply asked
/// for runs, exit 4, the session ends as denied with the reason.
fn a_refusal_ends_the_run(wire: Wire) {
    let c = Case::new(wire);
    let word = match wire {
        Wire::Anthropic => "refusal",
        Wire::OpenAi => "content_filter",
    };
    c.mock.push(
        Turn::new()
            .text("I can't help with that.")
            .tool_use("x", "file_read", json!({"path": "receipts/r1.txt"}))
            .stop(word)
            .into(),
    );
    let (o, ev) = c.run();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let end = events(&ev, "end")[0];
    assert_eq!(end["outcome"], "refused");
    assert!(end["detail"].as_str().unwrap().contains(word), "{end}");
    assert_eq!(events(&ev, "stop")[0]["action"], "end");
    let (leaves, id) = c.log();
    assert!(kinds(&leaves, &id, "tool.intent").is_empty(), "nothing ran");
    let end = kinds(&leaves, &id, "session.end")[0];
    assert_eq!(end["outcome"]["status"], "denied");
    assert!(end["outcome"]["detail"].as_str().unwrap().contains(word));
    assert_eq!(
        kinds(&leaves, &id, "model.response")[0]["data"]["stop"],
        word
    );
}

/// `pause_turn` (Anthropic): the turn is sent back for the model to go on (no user message
/// added).
#[test]
fn a_paused_turn_is_continued() {
    if !sandbox_available("a_paused_turn_is_continued") {
        return;
    }
    let c = Case::new(Wire::Anthropic);
    c.mock
        .push(Turn::new().text("Searching…").stop("pause_turn").into());
    c.mock.push(finish());
    let (o, ev) = c.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(events(&ev, "stop")[0]["action"], "resume");
    let second = c.mock.requests()[1].json();
    let last = second["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant", "{second}");
}

/// An unknown tool name: refused, with a `policy.decision` entry naming the call and the
/// name (escaped), and the model told which tools exist.
fn an_unknown_tool_is_refused_and_logged(wire: Wire) {
    let c = Case::new(wire);
    c.mock.push(
        Turn::new()
            .tool_use(
                "u1",
                "send_email\u{1b}[2J\u{202e}",
                json!({"to": "x@example.com"}),
            )
            .into(),
    );
    c.mock.push(finish());
    let (o, ev) = c.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let told = c.mock.requests()[1].text();
    assert!(
        told.contains("unknown_tool") && told.contains("file_read"),
        "{told}"
    );
    let deny = events(&ev, "decision")
        .into_iter()
        .find(|e| e["decision"] == "deny")
        .unwrap();
    assert!(
        deny["reason"].as_str().unwrap().contains("no tool named"),
        "{deny}"
    );
    let (leaves, id) = c.log();
    let d = kinds(&leaves, &id, "policy.decision")
        .into_iter()
        .find(|l| l["data"]["refused"] == "unknown_tool")
        .unwrap_or_else(|| panic!("no refusal entry"));
    assert_eq!(d["decision"]["effect"], "deny");
    assert_eq!(d["outcome"]["status"], "denied");
    let name = d["target"]["tool"].as_str().unwrap();
    assert!(
        !name.chars().any(|ch| ch.is_control() || ch == '\u{202e}'),
        "{name:?}"
    );
    assert!(name.starts_with("send_email"), "{name}");
    assert!(d["data"]["call_id"].is_string());
    assert!(!String::from_utf8_lossy(&o.stderr).contains('\u{1b}'));
}

/// A stream that ends after its stop reason without the terminator is a complete reply,
/// recorded as such; one cut before it is not.
fn a_stream_without_terminator_is_complete(wire: Wire) {
    let c = Case::new(wire);
    c.mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "receipts/r1.txt"}))
            .without_terminator()
            .into(),
    );
    c.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "10.50"}))
            .without_terminator()
            .into(),
    );
    let (o, _) = c.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(c.mock.requests().len(), 2, "not retried, not paused");
    let (leaves, id) = c.log();
    let r = kinds(&leaves, &id, "model.response");
    assert_eq!(r[0]["data"]["stream_end"], "after_stop_reason");
    assert_eq!(r[0]["data"]["attempts"], 1);
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
    a_call_cut_by_the_limit_is_not_run,
    a_text_cut_by_the_limit_continues,
    a_refusal_ends_the_run,
    an_unknown_tool_is_refused_and_logged,
    a_stream_without_terminator_is_complete,
);
