//! Shared helpers of the MCP end-to-end tests: a state directory with keys,
//! a policy bundle and a config naming the real npm servers and the faulty
//! server; `stele run` against the mock model; reading the log back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{intents_closed_once, leaves_json, Stele};

pub const KEY: &str = "sk-ant-test-SECRET-0123456789";
pub const TOKEN: &str = "tok-faulty-SECRET-42";

pub fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-servers")
}

pub fn npm_server(bin: &str) -> String {
    let p = servers_dir().join("node_modules/.bin").join(bin);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-mcp (scripts/setup does)",
        p.display()
    );
    p.display().to_string()
}

pub const POLICY: &str = r#"
@id("t.model")
permit (principal, action == Action::"model.request", resource);

@id("t.tools")
permit (principal, action == Action::"tool.call", resource is Tool);

// faulty: every tool offered except the one posing as a built-in.
@id("t.faulty-list")
permit (principal, action == Action::"mcp.list", resource in McpServer::"faulty");

@id("t.faulty-hide")
forbid (principal, action == Action::"mcp.list", resource == McpTool::"faulty/stele__file_read");

@id("t.faulty-call")
permit (principal, action == Action::"mcp.call", resource in McpServer::"faulty");

@id("t.send-asks")
@ask("human")
forbid (principal, action == Action::"mcp.call", resource == McpTool::"faulty/send_report")
unless { context has approval && context.approval.granted };

// everything: the server and two of its tools are offered; only echo may be called.
@id("t.everything-server")
permit (principal, action == Action::"mcp.list", resource == McpServer::"everything");

@id("t.everything-tools")
permit (principal, action == Action::"mcp.list", resource is McpTool)
when { resource.server == "everything" && ["echo", "get-sum"].contains(resource.tool) };

@id("t.everything-echo")
permit (principal, action == Action::"mcp.call", resource == McpTool::"everything/echo");

// filesystem: reading is offered and allowed; writing is not even offered.
@id("t.fs-list")
permit (principal, action == Action::"mcp.list", resource in McpServer::"filesystem")
unless { resource is McpTool && resource.tool like "*write*" };

// remote (streamable HTTP): echo only.
@id("t.remote-server")
permit (principal, action == Action::"mcp.list", resource == McpServer::"remote");

@id("t.remote-echo")
permit (principal, action in [Action::"mcp.list", Action::"mcp.call"], resource == McpTool::"remote/echo");

@id("t.fs-read")
permit (principal, action == Action::"mcp.call", resource == McpTool::"filesystem/read_text_file");
"#;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub stele: Stele,
    pub ws: PathBuf,
    pub policy: PathBuf,
    pub config: PathBuf,
    pub shared: PathBuf,
}

pub fn env() -> Env {
    env_with("")
}

pub fn env_with(extra_config: &str) -> Env {
    env_full(extra_config, "")
}

/// [`env_with`] plus `extra_policy` in the org layer.
pub fn env_full(extra_config: &str, extra_policy: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ws = d.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o777)).unwrap();
    let policy = d.join("policy");
    std::fs::create_dir_all(policy.join("org")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/schema/stele.cedarschema"),
        policy.join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::write(policy.join("members.toml"), "[users]\n").unwrap();
    std::fs::write(
        policy.join("org/mcp.cedar"),
        format!("{POLICY}\n{extra_policy}"),
    )
    .unwrap();
    let shared = d.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("hello.txt"), "hello from the shared folder\n").unwrap();
    let config = d.join("config.toml");
    let faulty = servers_dir().join("faulty-server.mjs");
    std::fs::write(
        &config,
        format!(
            r#"
[mcp.faulty]
command = "node"
args = [{faulty:?}]
env = {{ FAULTY_TOKEN = "{TOKEN}" }}
call_timeout_s = 4
max_restarts = 5

[mcp.everything]
command = {everything:?}
args = ["stdio"]

[mcp.filesystem]
command = {filesystem:?}
args = [{shared:?}]
{extra_config}
"#,
            faulty = faulty.display().to_string(),
            everything = npm_server("mcp-server-everything"),
            filesystem = npm_server("mcp-server-filesystem"),
            shared = shared.canonicalize().unwrap().display().to_string(),
        ),
    )
    .unwrap();
    let stele = Stele::new(&d.join("state"));
    let o = stele
        .run(&["keys", "init", "--origin", "mcp.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success());
    Env {
        dir,
        stele,
        ws,
        policy,
        config,
        shared,
    }
}

pub fn run(e: &Env, mock: &MockModel, approve: &str) -> std::process::Output {
    e.stele
        .run_env(
            &[
                "run",
                "--workspace",
                e.ws.to_str().unwrap(),
                "--policy",
                e.policy.to_str().unwrap(),
                "--user",
                "alice",
                "--approve",
                approve,
                "--model",
                "anthropic:claude-sonnet-4-5",
                "use the MCP tools",
            ],
            &[
                ("ANTHROPIC_API_KEY", KEY),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
                ("STELE_CONFIG", e.config.to_str().unwrap()),
            ],
        )
        .unwrap()
}

pub fn call(id: &str, name: &str, input: Value) -> stele_tests::mock_model::Reply {
    Turn::new().tool_use(id, name, input).into()
}

pub fn finish(mock: &MockModel) {
    mock.push(call("end", "final_answer", json!({"answer": "done"})));
}

/// The tool names offered in the model request `i`.
pub fn offered(mock: &MockModel, i: usize) -> Vec<String> {
    let body: Value = serde_json::from_str(&mock.requests()[i].text()).unwrap();
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The tool result the model got for `id` in request `i`.
pub fn tool_result(mock: &MockModel, i: usize, id: &str) -> String {
    let body: Value = serde_json::from_str(&mock.requests()[i].text()).unwrap();
    for m in body["messages"].as_array().unwrap() {
        for c in m["content"].as_array().into_iter().flatten() {
            if c["type"] == "tool_result" && c["tool_use_id"] == id {
                return match &c["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
            }
        }
    }
    panic!("no tool result {id} in request {i}")
}

pub fn session_leaves(e: &Env) -> (Vec<Value>, String) {
    let db = e.stele.state.join("audit.db");
    let leaves = leaves_json(&e.stele, &db).unwrap();
    let id = leaves
        .iter()
        .find(|l| l["kind"] == "session.start")
        .unwrap()["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let n = intents_closed_once(&leaves, &id).unwrap();
    assert!(n > 0);
    (leaves, id)
}

/// The `mcp.call` intent for `tool` and the `mcp.result` closing it.
pub fn call_pair<'a>(leaves: &'a [Value], server: &str, tool: &str) -> (&'a Value, &'a Value) {
    let intent = leaves
        .iter()
        .find(|l| {
            l["kind"] == "mcp.call"
                && l["target"]["server"] == server
                && l["target"]["tool"] == tool
        })
        .unwrap_or_else(|| panic!("no mcp.call for {server}/{tool}"));
    let result = leaves
        .iter()
        .find(|l| l["kind"] == "mcp.result" && l["refs"]["intent_seq"] == intent["seq"])
        .unwrap();
    (intent, result)
}

pub fn payload_roles(l: &Value) -> Vec<String> {
    l["payload"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["role"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub fn payload_body(e: &Env, seq: u64) -> Vec<Vec<u8>> {
    let c = rusqlite::Connection::open(e.stele.state.join("audit.db")).unwrap();
    let mut st = c
        .prepare("SELECT body FROM payloads WHERE seq = ?1")
        .unwrap();
    st.query_map([seq as i64], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `stele chat` with `first` as the first message, then `stdin` typed.
pub fn chat(e: &Env, mock: &MockModel, first: &str, stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(stele_tests::stele_bin())
        .args([
            "chat",
            "--workspace",
            e.ws.to_str().unwrap(),
            "--policy",
            e.policy.to_str().unwrap(),
            "--user",
            "alice",
            "--approve",
            "deny",
            "--model",
            "anthropic:claude-sonnet-4-5",
            first,
        ])
        .env("STELE_STATE_DIR", &e.stele.state)
        .env("USER", "alice")
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", mock.base_url())
        .env("STELE_CONFIG", &e.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The `mcp.list` entries of `server` in `phase`.
pub fn phases<'a>(leaves: &'a [Value], server: &str, phase: &str) -> Vec<&'a Value> {
    leaves
        .iter()
        .filter(|l| {
            l["kind"] == "mcp.list"
                && l["target"]["server"] == server
                && l["data"]["phase"] == phase
        })
        .collect()
}

/// A `[mcp.NAME]` table running the faulty server with `FAULTY_MODE=mode`.
pub fn faulty_as(name: &str, mode: &str, extra: &str) -> String {
    let faulty = servers_dir().join("faulty-server.mjs");
    format!(
        "\n[mcp.{name}]\ncommand = \"node\"\nargs = [{:?}]\nenv = {{ FAULTY_MODE = \"{mode}\" }}\n{extra}\n",
        faulty.display().to_string()
    )
}
