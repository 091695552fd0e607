#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Approvals through the `stele` binary: on a real pseudo-terminal the
//! default is a prompt (answered y and n) whose exact text is what the log's
//! approval entries hash, with anything the model sent escaped rather than
//! interpreted; without a terminal the default refuses; `--json` progress
//! reports decisions and retries as typed JSON lines.

mod e2e_common;

use std::path::PathBuf;
use std::time::Duration;

use e2e_common::pty::{prompt_text, run_on_pty};
use e2e_common::{last_session, of_session, run_bounded, run_command, EXEC_NEEDS_APPROVAL};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Reply, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

/// An argument crafted to drive a terminal: set the window title, clear the
/// screen, colour, return to the line start, reverse the text direction.
const EVIL: &str = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\u{202e}gpj.exe";

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    s: Stele,
    ws: PathBuf,
    policy: PathBuf,
    mock: MockModel,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ws = e2e_common::workspace(dir.path());
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, EXEC_NEEDS_APPROVAL);
    Setup {
        s,
        ws,
        policy,
        mock: MockModel::start().unwrap(),
        _dir: dir,
    }
}

fn push_exec_then_finish(mock: &MockModel) {
    mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "import sys; print('argc', len(sys.argv))", EVIL]}),
            )
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
}

/// Approval entries of the last session: request and answer, with the hash
/// of what was shown, which must be the hash of `shown`.
fn check_approval(s: &Stele, answer_kind: &str, shown: &str) -> (Vec<Value>, String) {
    let leaves = leaves_json(s, &s.state.join("audit.db")).unwrap();
    let id = last_session(&leaves);
    intents_closed_once(&leaves, &id).unwrap();
    let mine = of_session(&leaves, &id);
    let request = mine
        .iter()
        .find(|l| l["kind"] == "approval.request")
        .expect("approval.request logged");
    let answer = mine
        .iter()
        .find(|l| l["kind"] == answer_kind)
        .unwrap_or_else(|| panic!("no {answer_kind}"));
    let hash = sha256_hex(shown.as_bytes());
    assert_eq!(request["data"]["shown_sha256"], hash.as_str(), "{request}");
    assert_eq!(answer["data"]["shown_sha256"], hash.as_str(), "{answer}");
    assert_eq!(answer["data"]["method"], "tty", "{answer}");
    assert_eq!(answer["data"]["approver"], "alice", "{answer}");
    (leaves, id)
}

fn assert_escaped(screen: &str, shown: &str) {
    assert!(
        !shown
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "raw control characters in the prompt: {shown:?}"
    );
    assert!(
        shown.contains(r"\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mred\r\u{202e}gpj.exe"),
        "{shown}"
    );
    assert!(
        shown.starts_with("Run in the sandbox: python3 -c "),
        "{shown}"
    );
    for raw in ["\x1b]0;pwned", "\x1b[2J", "\x1b[31m", "\u{202e}"] {
        assert!(
            !screen.contains(raw),
            "{raw:?} reached the terminal raw:\n{screen}"
        );
    }
}

fn pty_case(answer: Option<&str>) -> Option<(Setup, i32, String)> {
    let t = setup();
    push_exec_then_finish(&t.mock);
    // No --approve: on a terminal the default is to ask.
    let c = run_command(
        &t.s,
        &t.ws,
        &t.policy,
        Wire::Anthropic,
        &t.mock,
        &[],
        "Count",
    );
    let (code, screen) = run_on_pty(&c, answer)?;
    Some((t, code, screen))
}

#[test]
fn terminal_prompt_answered_yes_runs_and_hashes_what_was_shown() {
    if !sandbox_available("terminal_prompt_answered_yes_runs_and_hashes_what_was_shown") {
        return;
    }
    let Some((t, code, screen)) = pty_case(Some("y")) else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    let shown = prompt_text(&screen);
    assert_escaped(&screen, shown);
    assert!(screen.contains("argc 2"), "the command ran: {screen}");
    let (leaves, id) = check_approval(&t.s, "approval.grant", shown);
    assert!(of_session(&leaves, &id)
        .iter()
        .any(|l| l["kind"] == "exec.start"));
    // The run recorded the mode it used.
    let start = of_session(&leaves, &id)[0].clone();
    assert_eq!(start["kind"], "session.start");
    assert!(
        start.to_string().contains(r#""approve":"prompt""#),
        "{start}"
    );
}

#[test]
fn terminal_prompt_answered_no_is_a_logged_denial() {
    if !sandbox_available("terminal_prompt_answered_no_is_a_logged_denial") {
        return;
    }
    let Some((t, code, screen)) = pty_case(Some("n")) else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    let shown = prompt_text(&screen);
    assert_escaped(&screen, shown);
    assert!(screen.contains("✗ denied exec"), "{screen}");
    let (leaves, id) = check_approval(&t.s, "approval.deny", shown);
    assert!(!of_session(&leaves, &id)
        .iter()
        .any(|l| l["kind"] == "exec.start"));
    let reqs = t.mock.requests();
    assert!(reqs[1].text().contains("refused"), "{}", reqs[1].text());
}

#[test]
fn on_a_terminal_the_configured_answer_wins() {
    if !sandbox_available("on_a_terminal_the_configured_answer_wins") {
        return;
    }
    let t = setup();
    push_exec_then_finish(&t.mock);
    let config = t.s.state.join("config.toml");
    std::fs::create_dir_all(&t.s.state).unwrap();
    std::fs::write(&config, "approve = \"deny\"\n").unwrap();
    let mut c = run_command(
        &t.s,
        &t.ws,
        &t.policy,
        Wire::Anthropic,
        &t.mock,
        &[],
        "Count",
    );
    c.env("STELE_CONFIG", &config);
    let Some((code, screen)) = run_on_pty(&c, None) else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    assert_refused_and_nothing_ran(&t.s, "flag", "--approve=deny");
}

/// The last session's log: every intent closed once, started with approvals
/// refused, the ask refused in alice's name by `method` (`detail` saying
/// which setting), and nothing executed.
fn assert_refused_and_nothing_ran(s: &Stele, method: &str, detail: &str) {
    let leaves = leaves_json(s, &s.state.join("audit.db")).unwrap();
    let id = last_session(&leaves);
    intents_closed_once(&leaves, &id).unwrap();
    let mine = of_session(&leaves, &id);
    assert!(
        mine[0].to_string().contains(r#""approve":"deny""#),
        "{}",
        mine[0]
    );
    let refused = mine
        .iter()
        .find(|l| l["kind"] == "approval.deny")
        .expect("the refusal is logged");
    assert_eq!(refused["data"]["approver"], "alice", "{refused}");
    assert_eq!(refused["data"]["method"], method, "{refused}");
    assert!(
        refused["data"]["detail"].as_str().unwrap().contains(detail),
        "{refused}"
    );
    assert!(
        !mine.iter().any(|l| l["kind"] == "exec.start"),
        "never a silent allow"
    );
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

#[test]
fn without_a_terminal_json_progress_reports_decisions_and_retries() {
    if !sandbox_available("without_a_terminal_json_progress_reports_decisions_and_retries") {
        return;
    }
    let t = setup();
    // exec python3 asks (no terminal: refused); sh is not permitted at all;
    // the next model request is rate limited once.
    t.mock.push(
        Turn::new()
            .text("Counting.")
            .tool_use("a", "exec", json!({"argv": ["python3", "-c", "print(1)"]}))
            .tool_use("b", "exec", json!({"argv": ["sh", "-c", "echo hi"]}))
            .into(),
    );
    t.mock.push(Reply::rate_limited("1"));
    t.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "could not run"}))
            .into(),
    );
    let c = run_command(
        &t.s,
        &t.ws,
        &t.policy,
        Wire::Anthropic,
        &t.mock,
        &["--json"],
        "Count",
    );
    let o = run_bounded(c, Duration::from_secs(90));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    let lines = json_lines(&out);
    for e in [
        "step",
        "text",
        "tool_call",
        "tool_result",
        "decision",
        "retry",
        "end",
    ] {
        assert!(!events(&lines, e).is_empty(), "no {e} event in {out}");
    }
    let decisions = events(&lines, "decision");
    let kinds: Vec<&str> = decisions
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ask", "refused", "deny", "deny"], "{out}");
    assert!(decisions[0]["shown"]
        .as_str()
        .unwrap()
        .starts_with("Run in the sandbox: python3"));
    assert_eq!(decisions[1]["approver"], "alice");
    assert_eq!(decisions[1]["method"], "no-terminal");
    assert_eq!(decisions[2]["subject"], "exec");
    assert!(decisions[3]["policies"].is_array(), "{}", decisions[3]);
    assert!(decisions[3]["audit_entry"].is_u64(), "{}", decisions[3]);
    assert_eq!(events(&lines, "retry")[0]["wait_ms"], 1000);
    // Progress is on stdout only: nothing for a person on stderr but the session line.
    assert!(!err.contains("── step"), "{err}");

    assert_refused_and_nothing_ran(&t.s, "no-terminal", "no terminal");
}

#[test]
fn flag_allow_is_reported_and_logged_as_the_flag() {
    if !sandbox_available("flag_allow_is_reported_and_logged_as_the_flag") {
        return;
    }
    let t = setup();
    push_exec_then_finish(&t.mock);
    let c = run_command(
        &t.s,
        &t.ws,
        &t.policy,
        Wire::Anthropic,
        &t.mock,
        &["--approve", "allow"],
        "Count",
    );
    let o = run_bounded(c, Duration::from_secs(90));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // One line for the person, escaped like everything the model sent.
    let line = err
        .lines()
        .find(|l| l.contains("approval granted by alice"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("Run in the sandbox: python3"), "{line}");
    assert!(!err.contains('\x1b'), "{err}");
    let leaves = leaves_json(&t.s, &t.s.state.join("audit.db")).unwrap();
    let id = last_session(&leaves);
    intents_closed_once(&leaves, &id).unwrap();
    let grant = of_session(&leaves, &id)
        .into_iter()
        .find(|l| l["kind"] == "approval.grant")
        .unwrap();
    // In the name of the person who gave the flag, saying it was the flag.
    assert_eq!(grant["data"]["approver"], "alice");
    assert_eq!(grant["data"]["method"], "flag");
    assert_eq!(grant["data"]["detail"], "--approve=allow");
}
