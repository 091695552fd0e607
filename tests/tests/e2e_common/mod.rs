//! Shared set-up for the fault, approval and progress end-to-end tests: a
//! workspace, a finance policy for either model wire, and a bounded run of
//! `stele` (a run that hangs fails the test instead of hanging it).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod demo_session;
pub mod pty;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use stele_tests::mock_model::{MockModel, Wire};
use stele_tests::Stele;

/// The API key given to the mock (it must never appear in a request body).
pub const KEY: &str = "sk-test-SECRET-0123456789";

/// The model each wire is driven with (allowed by [`policy`]).
pub fn model(wire: Wire) -> &'static str {
    match wire {
        Wire::Anthropic => "anthropic:claude-sonnet-4-5",
        Wire::OpenAi => "openai:gpt-4.1",
    }
}

/// The environment that points `wire` at the mock.
pub fn env(wire: Wire, mock: &MockModel) -> Vec<(String, String)> {
    let (key, url) = match wire {
        Wire::Anthropic => ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
        Wire::OpenAi => ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    };
    vec![
        (key.to_string(), KEY.to_string()),
        (url.to_string(), mock.base_url()),
    ]
}

/// A workspace with two receipts and a reports folder.
pub fn workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    for d in ["receipts", "reports"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(
        ws.join("receipts/r1.txt"),
        "Client: Acme\nAmount: 10.50 EUR\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("receipts/r2.txt"),
        "Client: Globex\nAmount: 4.00 EUR\n",
    )
    .unwrap();
    stele_tests::share(&ws).unwrap();
    ws
}

/// A state directory with a fresh log key.
pub fn setup(dir: &Path) -> Stele {
    let s = Stele::new(&dir.join("state"));
    let o = s
        .run(&["keys", "init", "--origin", "e2e.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} no longer has {from}",
        path.display()
    );
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// The finance bundle (alice is in finance), allowing [`model`]`(wire)` served by
/// the mock, with `extra` Cedar appended to the finance team's policies.
pub fn policy(dir: &Path, wire: Wire, extra: &str) -> PathBuf {
    // The template pins Anthropic's API; this bundle allows the mock on this machine.
    let dst = stele_tests::template_for_mock("finance", &dir.join("policy"));
    let team = dst.join("teams/finance/finance.cedar");
    if wire == Wire::OpenAi {
        replace_in(
            &team,
            r#"Model::"anthropic/claude-sonnet-4-5""#,
            r#"Model::"openai/gpt-4.1""#,
        );
        replace_in(
            &dst.join("org/ceilings.cedar"),
            r#"resource.provider == "anthropic""#,
            r#"resource.provider == "openai""#,
        );
    }
    let mut text = std::fs::read_to_string(&team).unwrap();
    text.push_str(extra);
    std::fs::write(&team, text).unwrap();
    dst
}

/// Makes `exec` of any permitted program ask a human first.
pub const EXEC_NEEDS_APPROVAL: &str = r#"
@id("test.exec-needs-approval")
@ask("human")
forbid (principal in Team::"finance", action == Action::"exec", resource is Program)
unless { context has approval && context.approval.granted };
"#;

/// `stele run` for alice in `ws` under `policy` against the mock on `wire`.
pub fn run_command(
    s: &Stele,
    ws: &Path,
    policy: &Path,
    wire: Wire,
    mock: &MockModel,
    extra: &[&str],
    task: &str,
) -> Command {
    let mut c = Command::new(stele_tests::stele_bin());
    c.args(["run", "--workspace", ws.to_str().unwrap()])
        .args(["--policy", policy.to_str().unwrap()])
        .args(["--user", "alice", "--model", model(wire)])
        .args(extra)
        .arg(task)
        .env("STELE_STATE_DIR", &s.state)
        .env("USER", "alice")
        .envs(env(wire, mock));
    c
}

/// Run `c` without a terminal (stdin is empty); fail the test if it takes
/// longer than `limit` (it is killed then).
pub fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("stele hung: still running after {limit:?}\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The id of the last session started in `leaves`.
pub fn last_session(leaves: &[serde_json::Value]) -> String {
    leaves
        .iter()
        .rev()
        .find(|l| l["kind"] == "session.start")
        .unwrap()["session"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The leaves of `session`.
pub fn of_session<'a>(
    leaves: &'a [serde_json::Value],
    session: &str,
) -> Vec<&'a serde_json::Value> {
    leaves
        .iter()
        .filter(|l| l["session"]["id"].as_str() == Some(session))
        .collect()
}
