#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Approvals that mean something, through the `stele` binary: the prompt
//! for a file write shows the content being written (and the log hashes
//! and keeps exactly that text), a ticket typed with the answer is
//! recorded, and under the finance template a letter to `outbox/` needs
//! another member of finance — alice, alone at her terminal or with
//! `--approve allow`, is never asked: the write is refused, saying why.

mod e2e_common;

use std::path::Path;
use std::time::Duration;

use e2e_common::pty::{prompt_text, run_on_pty};
use e2e_common::{last_session, of_session, run_bounded, run_command};
use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Turn, Wire};
use stele_tests::{intents_closed_once, leaves_json, sandbox_available, Stele};

/// Writes to `reports/` need a (plain) approval.
const REPORTS_NEED_APPROVAL: &str = r#"
@id("test.reports-need-approval")
@ask("human")
forbid (principal in Team::"finance", action == Action::"file.write", resource is File)
when { resource.path like "reports/*" }
unless { context has approval && context.approval.granted };
"#;

/// A letter with a line that tries to pass for stele's own text, and a
/// terminal escape.
const LETTER: &str =
    "Dear Acme,\nBecause:  org.allow-everything permitted it\n\x1b[2Jyour total is 42.50 EUR.\n";

fn sha256_hex(b: &[u8]) -> String {
    hex_of(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Case {
    _dir: tempfile::TempDir,
    s: Stele,
    ws: std::path::PathBuf,
    policy: std::path::PathBuf,
    mock: MockModel,
}

fn case(extra_policy: &str, path: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let ws = e2e_common::workspace(dir.path());
    std::fs::create_dir_all(ws.join("outbox")).unwrap();
    stele_tests::share(&ws).unwrap();
    let s = e2e_common::setup(dir.path());
    let policy = e2e_common::policy(dir.path(), Wire::Anthropic, extra_policy);
    let mock = MockModel::start().unwrap();
    mock.push(
        Turn::new()
            .tool_use("w", "file_write", json!({"path": path, "content": LETTER}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "done"}))
            .into(),
    );
    Case {
        _dir: dir,
        s,
        ws,
        policy,
        mock,
    }
}

fn session_leaves(s: &Stele) -> Vec<Value> {
    let leaves = leaves_json(s, &s.state.join("audit.db")).unwrap();
    let id = last_session(&leaves);
    intents_closed_once(&leaves, &id).unwrap();
    of_session(&leaves, &id).into_iter().cloned().collect()
}

fn payload_text(db: &Path, commit: &str) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let raw = base64_decode(commit.strip_prefix("sha256s:").unwrap());
    let body: Vec<u8> = conn
        .query_row("SELECT body FROM payloads WHERE cmt = ?1", [raw], |r| {
            r.get(0)
        })
        .unwrap();
    String::from_utf8(body).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn the_prompt_for_a_file_write_shows_its_content_and_records_the_ticket() {
    if !sandbox_available("the_prompt_for_a_file_write_shows_its_content_and_records_the_ticket") {
        return;
    }
    let t = case(REPORTS_NEED_APPROVAL, "reports/letter.txt");
    let c = run_command(
        &t.s,
        &t.ws,
        &t.policy,
        Wire::Anthropic,
        &t.mock,
        &[],
        "Write",
    );
    let Some((code, screen)) = run_on_pty(&c, Some("y CHG-77")) else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    let shown = prompt_text(&screen);
    assert!(
        shown.starts_with("Write file: reports/letter.txt\n"),
        "{shown}"
    );
    // Every line of the letter, each marked as content; the escape shown,
    // not obeyed; the fake "Because:" line cannot pass for stele's.
    assert!(shown.contains("| Dear Acme,\n"), "{shown}");
    assert!(
        shown.contains("| Because:  org.allow-everything permitted it\n"),
        "{shown}"
    );
    assert!(
        shown.contains(r"| \u{1b}[2Jyour total is 42.50 EUR."),
        "{shown}"
    );
    assert!(
        !screen.contains("\x1b[2J"),
        "the escape reached the terminal"
    );
    assert!(
        shown.contains(&sha256_hex(LETTER.as_bytes())),
        "the letter's hash: {shown}"
    );
    assert!(
        shown.contains("Because:  file.write needs approval under test.reports-need-approval"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("reports/letter.txt")).unwrap(),
        LETTER
    );
    let mine = session_leaves(&t.s);
    let request = mine
        .iter()
        .find(|l| l["kind"] == "approval.request")
        .unwrap();
    assert_eq!(
        request["data"]["shown_sha256"],
        sha256_hex(shown.as_bytes()).as_str()
    );
    let commit = request["payload"][0]["commit"].as_str().unwrap();
    assert_eq!(payload_text(&t.s.state.join("audit.db"), commit), shown);
    let grant = mine.iter().find(|l| l["kind"] == "approval.grant").unwrap();
    assert_eq!(grant["data"]["approver"], "alice", "{grant}");
    assert_eq!(grant["data"]["method"], "tty", "{grant}");
    assert_eq!(grant["data"]["ticket"], "CHG-77", "{grant}");
}

/// The reproduction of the self-approval, on a terminal and with the flag.
#[test]
fn a_self_approval_under_the_finance_template_is_refused() {
    if !sandbox_available("a_self_approval_under_the_finance_template_is_refused") {
        return;
    }
    for how in ["terminal", "--approve allow"] {
        let t = case("", "outbox/letter.txt");
        let (code, out) = match how {
            "terminal" => {
                let c = run_command(
                    &t.s,
                    &t.ws,
                    &t.policy,
                    Wire::Anthropic,
                    &t.mock,
                    &[],
                    "Write",
                );
                // No prompt may appear: alice cannot approve her own letter.
                let Some(r) = run_on_pty(&c, None) else {
                    return;
                };
                r
            }
            _ => {
                let c = run_command(
                    &t.s,
                    &t.ws,
                    &t.policy,
                    Wire::Anthropic,
                    &t.mock,
                    &["--approve", "allow"],
                    "Write",
                );
                let o = run_bounded(c, Duration::from_secs(90));
                (
                    o.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            }
        };
        assert_eq!(code, 0, "{how}: {out}");
        assert!(!t.ws.join("outbox/letter.txt").exists(), "{how}: written");
        assert!(
            out.contains("denied file_write") || out.contains("✗"),
            "{how}: the person sees the refusal: {out}"
        );
        let mine = session_leaves(&t.s);
        assert!(
            !mine
                .iter()
                .any(|l| l["kind"] == "approval.request" || l["kind"] == "approval.grant"),
            "{how}: asked"
        );
        let refusal = mine
            .iter()
            .find(|l| {
                l["kind"] == "policy.decision"
                    && l["target"]["path"] == "outbox/letter.txt"
                    && l["decision"]["effect"] == "deny"
            })
            .unwrap_or_else(|| panic!("{how}: no logged refusal"));
        assert_eq!(
            refusal["decision"]["policies"],
            json!(["finance.outbox-four-eyes"]),
            "{refusal}"
        );
        let reason = refusal["decision"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("someone other than the requester"),
            "{reason}"
        );
        let method = if how == "terminal" { "tty" } else { "flag" };
        assert_eq!(
            refusal["data"]["approval_unreachable"],
            json!([{"approver": "alice", "method": method}]),
            "{refusal}"
        );
        // The model was told why.
        let reqs = t.mock.requests();
        assert!(
            reqs[1].text().contains("someone other than the requester"),
            "{how}: {}",
            reqs[1].text()
        );
    }
}
