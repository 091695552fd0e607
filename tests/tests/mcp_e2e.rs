#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! MCP end to end: `stele run` against the mock model, which calls tools of
//! real MCP servers from npm (`@modelcontextprotocol/server-everything`,
//! `@modelcontextprotocol/server-filesystem`, installed by `scripts/setup-mcp`)
//! and of a small faulty server (`tests/mcp-servers/faulty-server.mjs`).
//! Asserts what the model was offered and told, and the log: decisions,
//! intent/result pairs, payloads, lifecycle entries.

#[path = "mcp_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use stele_tests::mock_model::MockModel;
use stele_tests::sandbox_available;
use support::*;

#[test]
fn mcp_listing_filtered_and_calls_decided_on_real_servers() {
    if !sandbox_available("mcp_listing_filtered_and_calls_decided_on_real_servers") {
        return;
    }
    let e = env();
    let mock = MockModel::start().unwrap();
    mock.push(call(
        "c1",
        "mcp__everything__echo",
        json!({"message": "hi there"}),
    ));
    mock.push(call(
        "c2",
        "mcp__everything__get-sum",
        json!({"a": 1, "b": 2}),
    ));
    let hello = e.shared.canonicalize().unwrap().join("hello.txt");
    mock.push(call(
        "c3",
        "mcp__filesystem__read_text_file",
        json!({"path": hello.display().to_string()}),
    ));
    mock.push(call("c4", "mcp__faulty__stele__file_read", json!({})));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Offered: built-ins, the allowed MCP tools; not the hidden ones.
    let tools = offered(&mock, 0);
    for t in [
        "file_read",
        "mcp__everything__echo",
        "mcp__everything__get-sum",
        "mcp__filesystem__read_text_file",
        "mcp__faulty__echo",
        "mcp__faulty__crash",
    ] {
        assert!(tools.contains(&t.to_string()), "{t} not offered: {tools:?}");
    }
    for t in [
        "mcp__faulty__stele__file_read",
        "mcp__filesystem__write_file",
    ] {
        assert!(!tools.contains(&t.to_string()), "{t} offered: {tools:?}");
    }
    assert!(
        !tools.iter().any(|t| t.starts_with("mcp__everything__")
            && t != "mcp__everything__echo"
            && t != "mcp__everything__get-sum"),
        "{tools:?}"
    );

    // What the model was told.
    assert!(tool_result(&mock, 1, "c1").contains("hi there"));
    assert!(tool_result(&mock, 2, "c2").contains("denied_by_policy"));
    assert!(tool_result(&mock, 3, "c3").contains("hello from the shared folder"));
    assert!(tool_result(&mock, 4, "c4").contains("unknown_tool"));

    let (leaves, _id) = session_leaves(&e);
    // The allowed call: decision, args payload, result payload.
    let (intent, result) = call_pair(&leaves, "everything", "echo");
    assert_eq!(intent["decision"]["effect"], "allow");
    assert_eq!(intent["decision"]["policies"][0], "t.everything-echo");
    assert_eq!(payload_roles(intent), vec!["args"]);
    assert_eq!(result["outcome"]["status"], "ok");
    assert_eq!(payload_roles(result), vec!["result"]);
    let body = payload_body(&e, result["seq"].as_u64().unwrap());
    assert!(String::from_utf8_lossy(&body[0]).contains("hi there"));
    let (_, fs_result) = call_pair(&leaves, "filesystem", "read_text_file");
    assert_eq!(fs_result["outcome"]["status"], "ok");
    // The denied call: a denial entry, no intent.
    assert!(leaves.iter().any(|l| l["kind"] == "policy.decision"
        && l["target"]["tool"] == "get-sum"
        && l["decision"]["effect"] == "deny"));
    assert!(!leaves
        .iter()
        .any(|l| l["kind"] == "mcp.call" && l["target"]["tool"] == "get-sum"));
    // Listing: a start decision per server, per-tool decisions, a summary.
    for s in ["everything", "filesystem", "faulty"] {
        assert!(leaves.iter().any(|l| l["kind"] == "mcp.list"
            && l["target"]["server"] == s
            && l["data"]["phase"] == "start"
            && l["decision"]["effect"] == "allow"));
        assert!(leaves.iter().any(|l| l["kind"] == "mcp.list"
            && l["target"]["server"] == s
            && l["data"]["phase"] == "stopped"));
    }
    assert!(leaves.iter().any(|l| l["kind"] == "policy.decision"
        && l["target"]["tool"] == "stele__file_read"
        && l["decision"]["policies"][0] == "t.faulty-hide"));
    let listed = leaves
        .iter()
        .find(|l| l["data"]["phase"] == "listed" && l["target"]["server"] == "faulty")
        .unwrap();
    assert_eq!(listed["data"]["hidden"], json!(["stele__file_read"]));
    let v = e.stele.run(&["audit", "verify"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

fn ask(approve: &str) -> (Env, MockModel) {
    let e = env();
    let mock = MockModel::start().unwrap();
    mock.push(call(
        "s1",
        "mcp__faulty__send_report",
        json!({"to": "cfo@example.com", "body": "Q3 numbers"}),
    ));
    finish(&mock);
    let o = run(&e, &mock, approve);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (e, mock)
}

fn shown_text(e: &Env, leaves: &[Value]) -> String {
    let req = leaves
        .iter()
        .find(|l| l["kind"] == "approval.request" && l["target"]["tool"] == "send_report")
        .unwrap();
    assert_eq!(req["decision"]["policies"][0], "t.send-asks");
    let body = payload_body(e, req["seq"].as_u64().unwrap());
    String::from_utf8(body[0].clone()).unwrap()
}

#[test]
fn mcp_ask_then_approve() {
    if !sandbox_available("mcp_ask_then_approve") {
        return;
    }
    let (e, mock) = ask("allow");
    assert!(tool_result(&mock, 1, "s1").contains("sent to cfo@example.com"));
    let (leaves, _) = session_leaves(&e);
    let shown = shown_text(&e, &leaves);
    assert!(
        shown.contains("send_report")
            && shown.contains("cfo@example.com")
            && shown.contains("Q3 numbers"),
        "{shown}"
    );
    assert!(leaves.iter().any(|l| l["kind"] == "approval.grant"));
    let (intent, result) = call_pair(&leaves, "faulty", "send_report");
    assert_eq!(intent["decision"]["effect"], "allow");
    assert_eq!(result["outcome"]["status"], "ok");
}

#[test]
fn mcp_ask_then_deny() {
    if !sandbox_available("mcp_ask_then_deny") {
        return;
    }
    let (e, mock) = ask("deny");
    let told = tool_result(&mock, 1, "s1");
    assert!(
        told.contains("denied_by_policy") && told.contains("refused"),
        "{told}"
    );
    let (leaves, _) = session_leaves(&e);
    let shown = shown_text(&e, &leaves);
    assert!(shown.contains("cfo@example.com"), "{shown}");
    assert!(leaves.iter().any(|l| l["kind"] == "approval.deny"));
    assert!(!leaves
        .iter()
        .any(|l| l["kind"] == "mcp.call" && l["target"]["tool"] == "send_report"));
}

#[test]
fn mcp_faults_crash_big_garbage_hang_and_credentials() {
    if !sandbox_available("mcp_faults_crash_big_garbage_hang_and_credentials") {
        return;
    }
    let e = env();
    let mock = MockModel::start().unwrap();
    mock.push(call("f0", "mcp__faulty__leak", json!({})));
    mock.push(call("f1", "mcp__faulty__crash", json!({})));
    mock.push(call(
        "f2",
        "mcp__faulty__echo",
        json!({"text": "back again"}),
    ));
    mock.push(call(
        "f3",
        "mcp__faulty__big",
        json!({"bytes": 10 * 1024 * 1024}),
    ));
    mock.push(call("f4", "mcp__faulty__garbage", json!({})));
    mock.push(call("f5", "mcp__faulty__hang", json!({})));
    mock.push(call("f6", "mcp__faulty__env_check", json!({})));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A server echoing its own credential: redacted for the model (and the log).
    let leak = tool_result(&mock, 1, "f0");
    assert!(
        leak.contains("the token is [redacted:FAULTY_TOKEN]"),
        "{leak}"
    );
    // Crash mid-call: an error for the model, then a restart that works.
    assert!(tool_result(&mock, 2, "f1").contains("MCP call failed"));
    assert!(tool_result(&mock, 3, "f2").contains("echo: back again"));
    // 10 MB: the model gets a cut version, the log the whole answer.
    let big = tool_result(&mock, 4, "f3");
    assert!(
        big.len() < 64 * 1024 && big.contains("output truncated"),
        "{}",
        big.len()
    );
    // Garbage and a hang: errors, never a panic.
    assert!(tool_result(&mock, 5, "f4").contains("MCP call failed"));
    let hang = tool_result(&mock, 6, "f5");
    assert!(hang.contains("no answer within"), "{hang}");
    // Credentials from the config reach the server; stele's model key does not.
    let env_check = tool_result(&mock, 7, "f6");
    assert!(
        env_check.contains("\"token_ok\":true") && env_check.contains("\"sees_model_key\":false"),
        "{env_check}"
    );

    let (leaves, _) = session_leaves(&e);
    let (_, crash) = call_pair(&leaves, "faulty", "crash");
    assert_eq!(crash["outcome"]["status"], "error");
    assert_eq!(crash["data"]["error"], "closed");
    let crashed = leaves
        .iter()
        .find(|l| l["kind"] == "mcp.list" && l["data"]["phase"] == "crashed")
        .unwrap();
    assert_eq!(crashed["data"]["exit"], "exit status: 3");
    assert!(payload_roles(crashed).contains(&"stderr".to_string()));
    // The stderr tail is kept, with the credential the server printed redacted.
    let stderr =
        String::from_utf8(payload_body(&e, crashed["seq"].as_u64().unwrap())[0].clone()).unwrap();
    assert!(stderr.contains("crashing on purpose"), "{stderr}");
    assert!(
        stderr.contains("my token is [redacted:FAULTY_TOKEN]"),
        "{stderr}"
    );
    assert!(leaves.iter().any(|l| l["kind"] == "mcp.list"
        && l["data"]["phase"] == "restart"
        && l["decision"]["effect"] == "allow"));
    let (_, big) = call_pair(&leaves, "faulty", "big");
    assert_eq!(big["outcome"]["status"], "ok");
    assert!(big["data"]["result_bytes"].as_u64().unwrap() > 10 * 1024 * 1024);
    // Garbage: a malformed answer, reported as such at once (not a timeout).
    let (_, garbage) = call_pair(&leaves, "faulty", "garbage");
    assert_eq!(garbage["outcome"]["status"], "error");
    assert_eq!(garbage["data"]["error"], "malformed");
    let (_, hang) = call_pair(&leaves, "faulty", "hang");
    assert_eq!(hang["outcome"]["status"], "timeout");
    assert!(leaves
        .iter()
        .any(|l| l["kind"] == "mcp.list" && l["data"]["phase"] == "call_timed_out"));
    // The credential is in no entry (it is not in the payloads either).
    let all = leaves.iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains(TOKEN));
    let c = rusqlite::Connection::open(e.stele.state.join("audit.db")).unwrap();
    let hits: i64 = c
        .query_row(
            "SELECT count(*) FROM payloads WHERE instr(body, ?1) > 0",
            [TOKEN.as_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hits, 0, "the server's credential is in a payload");
    for r in mock.requests() {
        assert!(!r.text().contains(TOKEN));
    }
}

/// `mcp-server-everything streamableHttp` on a free loopback port, killed on drop.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server() -> HttpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(npm_server("mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = HttpServer { child, port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the HTTP MCP server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server
}

#[test]
fn mcp_streamable_http_server() {
    if !sandbox_available("mcp_streamable_http_server") {
        return;
    }
    let server = http_server();
    let e = env_with(&format!(
        "[mcp.remote]\nurl = \"http://127.0.0.1:{}/mcp\"\n",
        server.port
    ));
    let mock = MockModel::start().unwrap();
    mock.push(call(
        "h1",
        "mcp__remote__echo",
        json!({"message": "over http"}),
    ));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tools = offered(&mock, 0);
    assert!(
        tools.contains(&"mcp__remote__echo".to_string()),
        "{tools:?}"
    );
    assert!(
        !tools.contains(&"mcp__remote__get-sum".to_string()),
        "{tools:?}"
    );
    assert!(tool_result(&mock, 1, "h1").contains("over http"));
    let (leaves, _) = session_leaves(&e);
    let start = leaves
        .iter()
        .find(|l| l["data"]["phase"] == "start" && l["target"]["server"] == "remote")
        .unwrap();
    assert_eq!(start["data"]["transport"], "http");
    let (_, result) = call_pair(&leaves, "remote", "echo");
    assert_eq!(result["outcome"]["status"], "ok");
}
