//! `stele bench tool-call`: how long the gate takes from the model's last streamed event of a
//! tool call to (a) the call's `tool.intent` being durable and (b) the sandboxed program's
//! first instruction — the whole path a real call takes: SSE parsing, the `model.response`
//! entry, the `tool.call` decision and intent, the `exec` decision and `exec.start`, the
//! process sandbox.
//!
//! A local server speaks the Anthropic wire over loopback and answers each turn with one call
//! `exec ["date", "+%s%N"]`: `date` reads the clock as its first act, so its output is the
//! program's start (plus the dynamic loader). The server notes the time just before it sends
//! the last event of the turn; a tool-box observer notes when the intent is durable; the next
//! request carries the program's time. One clock (the host's), one session, `--calls` turns.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::run::{agent_for, Model};
use super::setup::{self, NetworkChoice, SessionSpec};
use crate::agent::{Budget, RunEnd};
use crate::gate::approval::FlagApprover;
use crate::provider::{Message, ProviderConfig, Secret};

/// Times of one call, nanoseconds since the epoch.
#[derive(Debug, Default, Clone, Copy)]
struct Call {
    last_event: u128,
    intent: u128,
    program: u128,
}

#[derive(Default)]
struct Shared {
    calls: Vec<Call>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run the benchmark and print its figures.
pub fn run(calls: usize) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(calls >= 2, "--calls must be at least 2");
    let dir = std::env::temp_dir().join(format!("stele-bench-tool-call-{}", std::process::id()));
    let result = bench(&dir, calls);
    let _ = std::fs::remove_dir_all(&dir);
    let times = result?;
    let (intent, program): (Vec<u128>, Vec<u128>) = times
        .iter()
        .map(|c| {
            (
                c.intent.saturating_sub(c.last_event),
                c.program.saturating_sub(c.last_event),
            )
        })
        .unzip();
    crate::outln!(
        "stele bench tool-call ({} calls: Anthropic wire over loopback, finance policy, process sandbox, `date +%s%N`)",
        times.len()
    );
    for (what, v) in [
        ("last SSE event → tool.intent durable", intent),
        ("last SSE event → program's first instruction", program),
    ] {
        let mut v = v;
        v.sort_unstable();
        let pct = |p: f64| {
            let i = ((v.len().saturating_sub(1)) as f64 * p).round() as usize;
            v.get(i).copied().unwrap_or(0) as f64 / 1e6
        };
        crate::outln!(
            "  {what:<46} p50 {:>7.2} ms   p99 {:>7.2} ms",
            pct(0.5),
            pct(0.99)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(dir: &Path, calls: usize) -> anyhow::Result<Vec<Call>> {
    let ws = dir.join("workspace");
    std::fs::create_dir_all(&ws)?;
    let policy = dir.join("policy");
    write_policy(&policy)?;
    let key = dir.join("log.key");
    stele_attest::generate_key_file(&key, "bench.stele.invalid/tool-call")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))?;
    let addr = listener.local_addr()?;
    let server = rt.spawn(serve(listener, shared.clone(), calls + 1));
    let mut cfg = ProviderConfig::from_spec("anthropic:claude-sonnet-4-5")?;
    cfg.base_url = format!("http://{addr}");
    cfg.api_key = Some(Secret::new("sk-bench-local"));
    let model = Model {
        provider: cfg.build()?,
        max_tokens: 1024,
        max_tokens_limit: 1024,
        base_url_source: "bench".into(),
    };
    let session = setup::open(
        SessionSpec {
            workspace: &ws,
            policy: Some(&policy),
            user: Some("alice"),
            db: Some(&dir.join("audit.db")),
            key: Some(&key),
            network: NetworkChoice::None,
            backend: super::backend::BackendSpec::process(),
            data: json!({"bench": "tool-call"}),
        },
        Box::new(FlagApprover::new(
            stele_policy::ApprovalOutcome::Refused,
            "bench",
            "flag",
            "stele bench tool-call answers no approval",
        )),
    )?;
    let agent = agent_for(&session, &model, Default::default())?;
    let seen = shared.clone();
    agent.tools.observe_intents(Box::new(move |_| {
        let t = now_ns();
        let mut s = lock(&seen);
        if let Some(c) = s.calls.iter_mut().rev().find(|c| c.intent == 0) {
            c.intent = t;
        }
    }));
    let mut messages = vec![Message::user_text("Tell the time, again and again.")];
    let budget = Budget {
        max_steps: u32::try_from(calls + 2).unwrap_or(u32::MAX),
        ..Budget::default()
    };
    let end = rt.block_on(agent.run(&mut messages, budget, &mut |_| {}));
    agent.tools.shutdown()?;
    drop(agent);
    session.release_sandbox();
    let end = end?;
    let _ = session
        .gate
        .end_session(stele_audit::Status::Ok, Some("bench".into()));
    session.close()?;
    server.abort();
    anyhow::ensure!(
        matches!(end, RunEnd::Answered(_)),
        "the benchmark session did not finish: {end:?}"
    );
    let calls: Vec<Call> = lock(&shared).calls.clone();
    // The first call pays for warming up (the sandbox's first start).
    Ok(calls
        .into_iter()
        .skip(1)
        .filter(|c| c.intent > 0 && c.program > 0)
        .collect())
}

/// The finance template, with its model pin moved to the bench's local server and `date`
/// allowed to run.
fn write_policy(dir: &Path) -> anyhow::Result<()> {
    super::demo::write_template(dir, |name, text| {
        match name {
        "org/ceilings.cedar" => text.replace(
            r#"resource.scheme == "https" && resource.host == "api.anthropic.com" && resource.port == 443"#,
            r#"resource.scheme == "http" && resource.host == "127.0.0.1""#,
        ),
        "teams/finance/finance.cedar" => format!(
            "{text}\n@id(\"bench.date\")\npermit (principal in Team::\"finance\", action == Action::\"exec\", resource is Program)\nwhen {{ resource.name == \"date\" }};\n"
        ),
        _ => text.to_string(),
    }
    })
}

/// Answer `turns` requests: each a tool call to `date`, the last a final answer; note when
/// each turn's last event leaves, and the program's time from each next request.
async fn serve(listener: tokio::net::TcpListener, shared: Arc<Mutex<Shared>>, turns: usize) {
    for turn in 0..turns {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let Some(body) = read_request(&mut sock).await else {
            return;
        };
        if let Some(t) = program_time(&body) {
            if let Some(c) = lock(&shared).calls.last_mut() {
                c.program = t;
            }
        }
        let last = turn + 1 == turns;
        let (first, end) = events(turn, last);
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err()
            || sock.write_all(first.as_bytes()).await.is_err()
            || sock.flush().await.is_err()
        {
            return;
        }
        if !last {
            lock(&shared).calls.push(Call {
                last_event: now_ns(),
                ..Call::default()
            });
        }
        let _ = sock.write_all(end.as_bytes()).await;
        let _ = sock.shutdown().await;
    }
}

/// A request's body (headers read to their end, then `content-length` bytes).
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let header_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    serde_json::from_slice(&buf[header_end..header_end + len]).ok()
}

/// The time `date +%s%N` printed, from the last tool result of a request.
fn program_time(body: &Value) -> Option<u128> {
    let last = body["messages"].as_array()?.last()?;
    let result = last["content"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "tool_result")?;
    let text = result["content"].as_str()?;
    let out = text.split("--- stdout ---").nth(1)?;
    out.split_whitespace().next()?.parse().ok()
}

/// The SSE events of one turn: everything but the last event, and the last.
fn events(turn: usize, last: bool) -> (String, String) {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_{turn}"), "type": "message", "role": "assistant", "content": [], "model": "bench", "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    );
    let (block, input, stop) = if last {
        (
            json!({"type": "tool_use", "id": format!("toolu_{turn}"), "name": "final_answer", "input": {}}),
            json!({"answer": "done"}),
            "tool_use",
        )
    } else {
        (
            json!({"type": "tool_use", "id": format!("toolu_{turn}"), "name": "exec", "input": {}}),
            json!({"argv": ["date", "+%s%N"]}),
            "tool_use",
        )
    };
    s += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
    );
    s += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
    );
    s += &ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    s += &ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}),
    );
    (s, ev("message_stop", json!({"type": "message_stop"})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn program_time_is_read_from_the_tool_result() {
        let body = json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x",
            "content": "exit: code 0\n--- stdout ---\n1767225600123456789\n\n--- stderr ---\n"}]}]});
        assert_eq!(program_time(&body), Some(1_767_225_600_123_456_789));
    }
}
