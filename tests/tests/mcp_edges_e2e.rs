#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! MCP end to end, the edges: servers failing at start-up and while
//! listing (their stderr kept), a server given up after `max_restarts`,
//! tools named like built-ins or other servers' tools, `stele chat` ending
//! in an error (its servers still stopped and logged), and policies on the
//! arguments of a call (`context.args`) on a real server.

#[path = "mcp_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use stele_tests::mock_model::MockModel;
use stele_tests::sandbox_available;
use support::*;

fn stderr_of(e: &Env, entry: &Value) -> String {
    assert!(
        payload_roles(entry).contains(&"stderr".to_string()),
        "no stderr payload: {entry}"
    );
    String::from_utf8(payload_body(e, entry["seq"].as_u64().unwrap())[0].clone()).unwrap()
}

#[test]
fn mcp_start_and_list_failures_keep_stderr_and_restarts_give_up() {
    if !sandbox_available("mcp_start_and_list_failures_keep_stderr_and_restarts_give_up") {
        return;
    }
    let config = [
        faulty_as("broken", "exit_at_start", "startup_timeout_s = 10"),
        faulty_as("badlist", "bad_list", "startup_timeout_s = 10"),
        faulty_as("flaky", "", "max_restarts = 1"),
    ]
    .concat();
    let policy = r#"
@id("t.edges")
permit (principal, action in [Action::"mcp.list", Action::"mcp.call"], resource)
when { resource in [McpServer::"broken", McpServer::"badlist", McpServer::"flaky"] };
"#;
    let e = env_full(&config, policy);
    let mock = MockModel::start().unwrap();
    mock.push(call("k1", "mcp__flaky__crash", json!({})));
    mock.push(call("k2", "mcp__flaky__crash", json!({})));
    mock.push(call("k3", "mcp__flaky__echo", json!({"text": "anyone?"})));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let tools = offered(&mock, 0);
    assert!(
        !tools
            .iter()
            .any(|t| t.starts_with("mcp__broken__") || t.starts_with("mcp__badlist__")),
        "{tools:?}"
    );
    assert!(tool_result(&mock, 1, "k1").contains("MCP call failed"));
    assert!(tool_result(&mock, 2, "k2").contains("MCP call failed"));
    let gone = tool_result(&mock, 3, "k3");
    assert!(gone.contains("server unavailable"), "{gone}");

    let (leaves, _) = session_leaves(&e);
    // A server dying before `initialize`: its exit status and its last words.
    let failed = phases(&leaves, "broken", "start_failed");
    assert!(!failed.is_empty());
    assert_eq!(failed[0]["data"]["exit"], "exit status: 2", "{}", failed[0]);
    assert_eq!(failed[0]["data"]["error"], "start");
    let said = stderr_of(&e, failed[0]);
    assert!(said.contains("no licence file"), "{said}");
    // A tool list of the wrong shape: malformed, with the stderr so far.
    let bad = phases(&leaves, "badlist", "list_failed");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["data"]["error"], "malformed", "{}", bad[0]);
    let said = stderr_of(&e, bad[0]);
    assert!(said.contains("starting with a broken tool list"), "{said}");
    // Two crashes with max_restarts = 1: given up, and the next call fails at once.
    assert_eq!(phases(&leaves, "flaky", "crashed").len(), 2);
    assert_eq!(phases(&leaves, "flaky", "restart").len(), 1);
    let gave_up = phases(&leaves, "flaky", "gave_up");
    assert_eq!(gave_up.len(), 1);
    assert!(gave_up[0]["outcome"]["detail"]
        .as_str()
        .unwrap()
        .contains("restarts are limited to 1"));
    let (_, echo) = call_pair(&leaves, "flaky", "echo");
    assert_eq!(echo["data"]["error"], "unavailable");
    assert!(!leaves.iter().any(|l| l["kind"] == "mcp.list"
        && l["target"]["server"] == "flaky"
        && l["seq"].as_u64() > gave_up[0]["seq"].as_u64()
        && l["data"]["phase"] == "restart"));
}

#[test]
fn mcp_tools_named_like_builtins_or_other_servers_keep_their_identity() {
    if !sandbox_available("mcp_tools_named_like_builtins_or_other_servers_keep_their_identity") {
        return;
    }
    let policy = r#"
@id("t.spoofer")
permit (principal, action in [Action::"mcp.list", Action::"mcp.call"], resource in McpServer::"spoofer");

@id("t.read")
permit (principal, action == Action::"file.read", resource);
"#;
    let e = env_full(&faulty_as("spoofer", "spoof", ""), policy);
    std::fs::write(e.ws.join("note.txt"), "a note in the workspace\n").unwrap();
    let mock = MockModel::start().unwrap();
    mock.push(call("p1", "mcp__spoofer__file_read", json!({})));
    mock.push(call("p2", "file_read", json!({"path": "note.txt"})));
    mock.push(call(
        "p3",
        "mcp__everything__echo",
        json!({"message": "the real one"}),
    ));
    mock.push(call("p4", "mcp__spoofer__mcp__everything__echo", json!({})));
    mock.push(call("p5", "everything__echo", json!({})));
    mock.push(call("p6", "mcp__spoofer__final_answer", json!({})));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Offered under the server's prefix; the built-in and real names once each.
    let tools = offered(&mock, 0);
    for t in [
        "mcp__spoofer__file_read",
        "mcp__spoofer__final_answer",
        "mcp__spoofer__everything__echo",
        "mcp__spoofer__mcp__everything__echo",
    ] {
        assert!(tools.contains(&t.to_string()), "{t} not offered: {tools:?}");
    }
    for t in ["file_read", "final_answer", "mcp__everything__echo"] {
        assert_eq!(
            tools.iter().filter(|n| *n == t).count(),
            1,
            "{t}: {tools:?}"
        );
    }
    assert!(!tools.contains(&"everything__echo".to_string()));

    // Each name reaches exactly the tool it names.
    assert!(tool_result(&mock, 1, "p1").contains("called file_read"));
    let builtin = tool_result(&mock, 2, "p2");
    assert!(
        builtin.contains("a note in the workspace") && !builtin.contains("called"),
        "{builtin}"
    );
    let real = tool_result(&mock, 3, "p3");
    assert!(
        real.contains("the real one") && !real.contains("called"),
        "{real}"
    );
    assert!(tool_result(&mock, 4, "p4").contains("called mcp__everything__echo"));
    assert!(tool_result(&mock, 5, "p5").contains("unknown_tool"));
    assert!(tool_result(&mock, 6, "p6").contains("called final_answer"));
    assert_eq!(
        mock.requests().len(),
        7,
        "the server's final_answer ended the run"
    );

    // In the log: every MCP call under the identity of the server that offers it.
    let (leaves, _) = session_leaves(&e);
    let calls: Vec<(String, String)> = leaves
        .iter()
        .filter(|l| l["kind"] == "mcp.call")
        .map(|l| {
            (
                l["target"]["server"].as_str().unwrap().to_string(),
                l["target"]["tool"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("spoofer", "file_read"),
        ("everything", "echo"),
        ("spoofer", "mcp__everything__echo"),
        ("spoofer", "final_answer"),
    ]
    .iter()
    .map(|(s, t)| (s.to_string(), t.to_string()))
    .collect();
    assert_eq!(calls, want);
    let (intent, _) = call_pair(&leaves, "spoofer", "file_read");
    assert_eq!(intent["decision"]["policies"][0], "t.spoofer");
    let (intent, _) = call_pair(&leaves, "everything", "echo");
    assert_eq!(intent["decision"]["policies"][0], "t.everything-echo");
}

#[test]
fn mcp_chat_ending_in_an_error_still_stops_its_servers() {
    if !sandbox_available("mcp_chat_ending_in_an_error_still_stops_its_servers") {
        return;
    }
    let e = env();
    let mock = MockModel::start().unwrap();
    mock.push(call(
        "c1",
        "mcp__faulty__echo",
        json!({"text": "in a chat"}),
    ));
    finish(&mock);
    // The first message runs; the next line is not UTF-8: reading it fails
    // and the chat ends with an error.
    let o = chat(&e, &mock, "use the MCP tools", b"\xff\xfe\n");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("UTF-8"), "{err}");
    assert!(tool_result(&mock, 1, "c1").contains("echo: in a chat"));

    let (leaves, _) = session_leaves(&e);
    for s in ["faulty", "everything", "filesystem"] {
        let started = phases(&leaves, s, "started");
        let stopped = phases(&leaves, s, "stopped");
        assert_eq!(started.len(), 1, "{s}");
        assert_eq!(stopped.len(), 1, "{s} was not stopped in the session");
    }
    let end = leaves
        .iter()
        .find(|l| l["kind"] == "session.end")
        .expect("the session is ended");
    assert_eq!(end["outcome"]["status"], "error");
    let last_stop = leaves
        .iter()
        .filter(|l| l["data"]["phase"] == "stopped")
        .map(|l| l["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(last_stop < end["seq"].as_u64().unwrap());
    let v = e.stele.run(&["audit", "verify"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn mcp_policy_on_call_arguments_permits_one_call_and_forbids_another() {
    if !sandbox_available("mcp_policy_on_call_arguments_permits_one_call_and_forbids_another") {
        return;
    }
    let policy = r#"
@id("t.fs-public-only")
forbid (principal, action == Action::"mcp.call", resource == McpTool::"filesystem/read_text_file")
unless { context.args has path && context.args.path like "public/*" };
"#;
    let e = env_full("", policy);
    for (dir, text) in [("public", "open to all"), ("private", "eyes only")] {
        std::fs::create_dir_all(e.shared.join(dir)).unwrap();
        std::fs::write(e.shared.join(dir).join("a.txt"), format!("{text}\n")).unwrap();
    }
    let abs = e.shared.canonicalize().unwrap().join("public/a.txt");
    let mock = MockModel::start().unwrap();
    let read = "mcp__filesystem__read_text_file";
    mock.push(call("a1", read, json!({"path": "public/a.txt"})));
    mock.push(call("a2", read, json!({"path": "private/a.txt"})));
    mock.push(call("a3", read, json!({"path": "public/../private/a.txt"})));
    // An absolute path is not a workspace path: `context.args.path` is
    // absent and the forbid holds.
    mock.push(call("a4", read, json!({"path": abs.display().to_string()})));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    assert!(tool_result(&mock, 1, "a1").contains("open to all"));
    for (i, id) in [(2, "a2"), (3, "a3"), (4, "a4")] {
        let told = tool_result(&mock, i, id);
        assert!(
            told.contains("denied_by_policy") && !told.contains("eyes only"),
            "{id}: {told}"
        );
    }
    let (leaves, _) = session_leaves(&e);
    let calls: Vec<&Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "mcp.call" && l["target"]["tool"] == "read_text_file")
        .collect();
    assert_eq!(calls.len(), 1, "only the permitted call was made");
    assert_eq!(calls[0]["decision"]["effect"], "allow");
    let denials: Vec<&Value> = leaves
        .iter()
        .filter(|l| {
            l["kind"] == "policy.decision"
                && l["target"]["tool"] == "read_text_file"
                && l["decision"]["effect"] == "deny"
        })
        .collect();
    assert_eq!(denials.len(), 3);
    for d in denials {
        assert_eq!(d["decision"]["policies"][0], "t.fs-public-only", "{d}");
    }
}

#[test]
fn mcp_policy_on_absolute_paths_and_named_arguments() {
    if !sandbox_available("mcp_policy_on_absolute_paths_and_named_arguments") {
        return;
    }
    let e = env();
    let shared = e.shared.canonicalize().unwrap();
    let policy = format!(
        r#"
@id("t.fs-abs-public")
forbid (principal, action == Action::"mcp.call", resource == McpTool::"filesystem/read_text_file")
unless {{ context.args.abs_path.hasTag("path")
  && context.args.abs_path.getTag("path") like "{}/public/*" }};

@id("t.echo-no-secrets")
forbid (principal, action == Action::"mcp.call", resource == McpTool::"everything/echo")
when {{ context.args.text.hasTag("message") && context.args.text.getTag("message") like "*secret*" }};

@id("t.small-sums")
permit (principal, action == Action::"mcp.call", resource == McpTool::"everything/get-sum")
when {{ context.args.number.hasTag("a") && context.args.number.getTag("a") < 10 }};
"#,
        shared.display()
    );
    std::fs::write(e.policy.join("org/args.cedar"), policy).unwrap();
    for (dir, text) in [("public", "open to all"), ("private", "eyes only")] {
        std::fs::create_dir_all(shared.join(dir)).unwrap();
        std::fs::write(shared.join(dir).join("a.txt"), format!("{text}\n")).unwrap();
    }
    let abs = |p: &str| format!("{}/{p}", shared.display());
    let read = "mcp__filesystem__read_text_file";
    let mock = MockModel::start().unwrap();
    mock.push(call("b1", read, json!({"path": abs("public/a.txt")})));
    mock.push(call(
        "b2",
        read,
        json!({"path": abs("public/../private/a.txt")}),
    ));
    mock.push(call("b3", read, json!({"path": abs("private/a.txt")})));
    mock.push(call(
        "b4",
        "mcp__everything__echo",
        json!({"message": "hello"}),
    ));
    mock.push(call(
        "b5",
        "mcp__everything__echo",
        json!({"message": "my secret"}),
    ));
    mock.push(call(
        "b6",
        "mcp__everything__get-sum",
        json!({"a": 2, "b": 3}),
    ));
    mock.push(call(
        "b7",
        "mcp__everything__get-sum",
        json!({"a": 200, "b": 3}),
    ));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    assert!(tool_result(&mock, 1, "b1").contains("open to all"));
    assert!(tool_result(&mock, 4, "b4").contains("hello"));
    assert!(tool_result(&mock, 6, "b6").contains('5'));
    for (i, id) in [(2, "b2"), (3, "b3"), (5, "b5"), (7, "b7")] {
        let told = tool_result(&mock, i, id);
        assert!(
            told.contains("denied_by_policy") && !told.contains("eyes only"),
            "{id}: {told}"
        );
    }
    let (leaves, _) = session_leaves(&e);
    let denied_by = |tool: &str| -> Vec<String> {
        leaves
            .iter()
            .filter(|l| {
                l["kind"] == "policy.decision"
                    && l["target"]["tool"] == tool
                    && l["decision"]["effect"] == "deny"
            })
            .map(|l| {
                l["decision"]["policies"][0]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        denied_by("read_text_file"),
        ["t.fs-abs-public", "t.fs-abs-public"]
    );
    assert_eq!(denied_by("echo"), ["t.echo-no-secrets"]);
    assert_eq!(denied_by("get-sum").len(), 1);
    let (intent, _) = call_pair(&leaves, "everything", "get-sum");
    assert_eq!(intent["decision"]["policies"][0], "t.small-sums");
}
