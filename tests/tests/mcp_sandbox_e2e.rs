#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sandboxed MCP servers end to end: `stele run` against the mock model
//! with stdio servers started in their own process sandbox
//! (`[mcp.NAME.sandbox]`): the real npm servers working through it, the
//! faulty server's `probe` tool trying to escape (files outside its grants,
//! `/etc/shadow`, the home directory, direct connections, hosts that are
//! not allowed) and every connection it makes decided and logged with the
//! server's name; the managed file requiring sandboxing; a sandbox that
//! cannot be set up keeping its server from starting.

#[path = "mcp_support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use stele_tests::mock_model::MockModel;
use stele_tests::sandbox_available;
use support::*;

/// The start and started entries of `server`.
fn lifecycle<'a>(leaves: &'a [Value], server: &str, phase: &str) -> &'a Value {
    leaves
        .iter()
        .find(|l| {
            l["kind"] == "mcp.list"
                && l["target"]["server"] == server
                && l["data"]["phase"] == phase
        })
        .unwrap_or_else(|| panic!("no {phase} entry for {server}"))
}

/// Add TOML to the end of the test's user config (sub-tables of servers
/// already defined there, or new servers).
fn append_config(e: &Env, toml: &str) {
    let mut cfg = std::fs::read_to_string(&e.config).unwrap();
    cfg.push('\n');
    cfg.push_str(toml);
    std::fs::write(&e.config, cfg).unwrap();
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn mcp_sandboxed_npm_servers_work_end_to_end() {
    if !sandbox_available("mcp_sandboxed_npm_servers_work_end_to_end") {
        return;
    }
    let e = env();
    let shared_now = e.shared.canonicalize().unwrap();
    // The same servers as the unsandboxed tests, each in its own sandbox;
    // server-filesystem gets its folder read-only.
    append_config(
        &e,
        &format!(
            "[mcp.everything.sandbox]\n\n[mcp.filesystem.sandbox]\nread = [{:?}]\n",
            shared_now.display().to_string()
        ),
    );
    let mock = MockModel::start().unwrap();
    mock.push(call(
        "s1",
        "mcp__everything__echo",
        json!({"message": "from the sandbox"}),
    ));
    mock.push(call(
        "s2",
        "mcp__filesystem__read_text_file",
        json!({"path": shared_now.join("hello.txt").display().to_string()}),
    ));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tool_result(&mock, 1, "s1").contains("from the sandbox"));
    assert!(tool_result(&mock, 2, "s2").contains("hello from the shared folder"));

    let (leaves, _) = session_leaves(&e);
    let nm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mcp-servers/node_modules")
        .canonicalize()
        .unwrap();
    for s in ["everything", "filesystem"] {
        let start = lifecycle(&leaves, s, "start");
        assert_eq!(start["decision"]["effect"], "allow");
        let grants = &start["data"]["sandbox"]["start"]["grants"];
        assert!(
            grants
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["path"] == nm.display().to_string() && g["why"] == "program"),
            "{s}: the package tree is granted read-only: {grants}"
        );
        let started = lifecycle(&leaves, s, "started");
        let sb = &started["data"]["sandbox"];
        assert_eq!(sb["network"], "egress proxy", "{started}");
        assert_eq!(sb["capabilities"], "none");
        assert!(sb["namespaces"].as_array().unwrap().contains(&json!("net")));
        if running_as_root() {
            assert_eq!(sb["uid"], stele_sandbox::process::UNPRIVILEGED_ID);
        }
        lifecycle(&leaves, s, "stopped");
    }
    let fs_grants =
        lifecycle(&leaves, "filesystem", "start")["data"]["sandbox"]["start"]["grants"].to_string();
    assert!(
        fs_grants.contains(&shared_now.display().to_string()) && fs_grants.contains("\"read\""),
        "{fs_grants}"
    );
    // The unsandboxed faulty server says so in its start entry.
    assert!(lifecycle(&leaves, "faulty", "start")["data"]["sandbox"].is_null());
    let v = e.stele.run(&["audit", "verify"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

/// A host HTTP server on 127.0.0.1 answering every request; counts them.
fn host_server() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nhello-from-host",
            );
        }
    });
    (port, n)
}

const NET_POLICY: &str = r#"
// The host the sandboxed faulty server may reach (it must also be in its
// configured hosts); blocked.example is configured but not permitted.
@id("t.net-local")
permit (principal, action == Action::"net.connect", resource)
when { resource.name == "127.0.0.1" };
"#;

#[test]
fn mcp_sandboxed_server_escapes_fail_and_connections_are_decided() {
    if !sandbox_available("mcp_sandboxed_server_escapes_fail_and_connections_are_decided") {
        return;
    }
    let (port, requests) = host_server();
    let e = env_full("", NET_POLICY);
    let d = e.dir.path().canonicalize().unwrap();
    let (rw, outside) = (d.join("rw"), d.join("outside"));
    for p in [&rw, &outside] {
        std::fs::create_dir(p).unwrap();
        // Writable by anyone on the host: what stops the server is its sandbox.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::write(outside.join("secret.txt"), "not granted\n").unwrap();
    append_config(
        &e,
        &format!(
            "[mcp.faulty.sandbox]\nhosts = [\"127.0.0.1:{port}\", \"blocked.example:443\"]\nwrite = [{:?}]\n",
            rw.display().to_string()
        ),
    );
    let private_tmp = format!("/tmp/stele-probe-private-{port}.txt");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let program_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-servers");
    let s = |p: &Path| p.display().to_string();
    let mock = MockModel::start().unwrap();
    mock.push(call(
        "p1",
        "mcp__faulty__probe",
        json!({
            "read": ["/etc/shadow", s(&outside.join("secret.txt")), s(&program_dir.join("package.json"))],
            "list": [home, s(&outside)],
            "write": [
                s(&rw.join("ok.txt")),
                s(&outside.join("escape.txt")),
                s(&program_dir.join("probe-escape.txt")),
                "/etc/probe-escape",
                private_tmp.clone(),
            ],
            "connect": [
                {"host": "127.0.0.1", "port": port},
                {"host": "example.com", "port": 443},
                {"host": "blocked.example", "port": 443},
            ],
            "direct": [{"host": "127.0.0.1", "port": port}],
        }),
    ));
    mock.push(call("p2", "mcp__faulty__env_check", json!({})));
    // A crash in the sandbox is noticed and the server restarted in a new one.
    mock.push(call("p3", "mcp__faulty__crash", json!({})));
    mock.push(call("p4", "mcp__faulty__echo", json!({"text": "again"})));
    finish(&mock);
    let o = run(&e, &mock, "deny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let told = tool_result(&mock, 1, "p1");
    let json_part = &told[told.find('{').unwrap()..=told.rfind('}').unwrap()];
    let r: Value =
        serde_json::from_str(json_part).unwrap_or_else(|_| panic!("probe answer: {told}"));
    eprintln!("{r:#}");
    let read = &r["read"];
    assert!(
        read["/etc/shadow"].as_str().unwrap().starts_with("error:"),
        "{r}"
    );
    assert_eq!(read[s(&outside.join("secret.txt"))], "error:ENOENT", "{r}");
    assert!(
        read[s(&program_dir.join("package.json"))]
            .as_str()
            .unwrap()
            .starts_with("ok:"),
        "{r}"
    );
    assert_eq!(r["list"][&home], "error:ENOENT", "the home directory: {r}");
    assert_eq!(r["list"][s(&outside)], "error:ENOENT", "{r}");
    let write = &r["write"];
    assert_eq!(write[s(&rw.join("ok.txt"))], "ok:written", "{r}");
    for p in [
        s(&outside.join("escape.txt")),
        s(&program_dir.join("probe-escape.txt")),
        "/etc/probe-escape".to_string(),
    ] {
        assert!(
            write[&p].as_str().unwrap().starts_with("error:"),
            "{p}: {r}"
        );
    }
    assert_eq!(write[&private_tmp], "ok:written", "{r}");
    let connect = &r["connect"];
    assert_eq!(
        connect[format!("127.0.0.1:{port}")],
        "ok:hello-from-host",
        "{r}"
    );
    for h in ["example.com:443", "blocked.example:443"] {
        assert!(
            connect[h]
                .as_str()
                .unwrap()
                .starts_with("refused:HTTP/1.1 403"),
            "{h}: {r}"
        );
    }
    assert!(
        r["direct"][format!("127.0.0.1:{port}")]
            .as_str()
            .unwrap()
            .starts_with("error:"),
        "{r}"
    );
    // On the host: only the granted write happened, only the proxied request arrived.
    assert_eq!(
        std::fs::read_to_string(rw.join("ok.txt")).unwrap(),
        "written by probe\n"
    );
    assert!(!outside.join("escape.txt").exists());
    assert!(!program_dir.join("probe-escape.txt").exists());
    assert!(!Path::new("/etc/probe-escape").exists());
    assert!(!Path::new(&private_tmp).exists());
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // The server's own credential reaches it in the sandbox; stele's does not.
    let env_check = tool_result(&mock, 2, "p2");
    assert!(
        env_check.contains("\"token_ok\":true") && env_check.contains("\"sees_model_key\":false"),
        "{env_check}"
    );

    assert!(tool_result(&mock, 3, "p3").contains("MCP call failed"));
    assert!(tool_result(&mock, 4, "p4").contains("echo: again"));

    let (leaves, _) = session_leaves(&e);
    assert_eq!(
        lifecycle(&leaves, "faulty", "crashed")["data"]["exit"],
        "exit status: 3"
    );
    assert!(lifecycle(&leaves, "faulty", "restart")["data"]["sandbox"].is_object());
    let start = lifecycle(&leaves, "faulty", "start");
    assert_eq!(
        start["data"]["sandbox"]["hosts"],
        json!([
            "127.0.0.1:".to_string() + &port.to_string(),
            "blocked.example:443"
        ])
    );
    // The allowed connection: a decision by policy, an intent, its close.
    let intent = leaves
        .iter()
        .find(|l| l["kind"] == "net.connect" && l["target"]["host"] == "127.0.0.1")
        .unwrap();
    assert_eq!(intent["data"]["mcp_server"], "faulty");
    assert_eq!(intent["decision"]["effect"], "allow");
    assert_eq!(intent["decision"]["policies"], json!(["t.net-local"]));
    assert_eq!(intent["target"]["port"], port);
    let close = leaves
        .iter()
        .find(|l| l["kind"] == "net.close" && l["refs"]["intent_seq"] == intent["seq"])
        .unwrap();
    assert!(
        close["outcome"]["bytes_in"].as_u64().unwrap() > 0,
        "{close}"
    );
    // A host outside the server's list: refused before policy, logged.
    let denied = |host: &str| {
        leaves
            .iter()
            .find(|l| {
                l["kind"] == "policy.decision"
                    && l["target"]["host"] == host
                    && l["decision"]["effect"] == "deny"
            })
            .unwrap_or_else(|| panic!("no denial for {host}"))
    };
    let other = denied("example.com");
    assert_eq!(other["data"]["mcp_server"], "faulty");
    assert_eq!(other["data"]["in_server_hosts"], false);
    let reason = other["decision"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("not among the hosts of [mcp.faulty.sandbox]"),
        "{reason}"
    );
    // A listed host that policy does not permit: denied by default.
    let blocked = denied("blocked.example");
    assert_eq!(blocked["data"]["mcp_server"], "faulty");
    assert_eq!(blocked["data"]["in_server_hosts"], true);
    assert!(
        blocked["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("denied by default"),
        "{blocked}"
    );
    // No other connection of the server was allowed.
    assert_eq!(
        leaves.iter().filter(|l| l["kind"] == "net.connect").count(),
        1
    );
    let v = e.stele.run(&["audit", "verify"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn mcp_managed_config_requires_sandboxing_and_a_broken_sandbox_keeps_the_server_off() {
    if !sandbox_available("mcp_managed_config_requires_sandboxing") {
        return;
    }
    if Path::new("/etc/stele/config.toml").exists() {
        eprintln!("SKIPPED: a real managed config is present");
        return;
    }
    // The user's file gives `everything` a grant that does not exist:
    // its sandbox cannot be set up, so it does not start.
    let e = env();
    let broken = "[mcp.everything.sandbox]\nread = [\"/nonexistent/stele-grant\"]\n";
    append_config(&e, broken);
    let managed = e.dir.path().join("managed.toml");
    std::fs::write(&managed, "[mcp_settings]\nrequire_sandbox = true\n").unwrap();
    let mock = MockModel::start().unwrap();
    mock.push(call("m1", "mcp__faulty__env_check", json!({})));
    finish(&mock);
    let o = e
        .stele
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
                "deny",
                "--model",
                "anthropic:claude-sonnet-4-5",
                "use the MCP tools",
            ],
            &[
                ("ANTHROPIC_API_KEY", KEY),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
                ("STELE_CONFIG", e.config.to_str().unwrap()),
                ("STELE_MANAGED_CONFIG", managed.to_str().unwrap()),
            ],
        )
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tool_result(&mock, 1, "m1").contains("\"token_ok\":true"));
    let tools = offered(&mock, 0);
    assert!(
        !tools.iter().any(|t| t.starts_with("mcp__everything__")),
        "{tools:?}"
    );
    let (leaves, _) = session_leaves(&e);
    // faulty configures no sandbox: the managed file put it in one.
    let start = lifecycle(&leaves, "faulty", "start");
    assert_eq!(
        start["data"]["sandbox"]["required_by"],
        managed.display().to_string()
    );
    assert!(lifecycle(&leaves, "faulty", "started")["data"]["sandbox"].is_object());
    let failed = lifecycle(&leaves, "everything", "start_failed");
    let detail = failed["outcome"]["detail"].as_str().unwrap();
    assert!(detail.contains("/nonexistent/stele-grant"), "{detail}");
    assert!(!leaves
        .iter()
        .any(|l| l["target"]["server"] == "everything" && l["data"]["phase"] == "started"));

    // A server that opts out is refused while the managed file requires it.
    let cfg = std::fs::read_to_string(&e.config)
        .unwrap()
        .replace(broken, "");
    std::fs::write(&e.config, cfg).unwrap();
    append_config(&e, "[mcp.opt-out]\ncommand = \"node\"\nsandbox = false\n");
    let o = e
        .stele
        .run_env(
            &[
                "run",
                "--workspace",
                e.ws.to_str().unwrap(),
                "--policy",
                e.policy.to_str().unwrap(),
                "--user",
                "alice",
                "--model",
                "anthropic:claude-sonnet-4-5",
                "x",
            ],
            &[
                ("ANTHROPIC_API_KEY", KEY),
                ("ANTHROPIC_BASE_URL", &mock.base_url()),
                ("STELE_CONFIG", e.config.to_str().unwrap()),
                ("STELE_MANAGED_CONFIG", managed.to_str().unwrap()),
            ],
        )
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[mcp.opt-out]") && err.contains("require_sandbox"),
        "{err}"
    );
}

/// Start-up time (spawn + `initialize`, the `started` entry's duration) of
/// the three test servers on the host and in their sandboxes, alternating
/// runs. Prints medians; run with
/// `cargo test -p stele-tests --test mcp_sandbox_e2e -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn mcp_sandbox_startup_overhead() {
    if !sandbox_available("mcp_sandbox_startup_overhead") {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let servers = ["faulty", "everything", "filesystem"];
    let mut times: std::collections::BTreeMap<(&str, bool), Vec<u64>> = Default::default();
    for _ in 0..rounds {
        for sandboxed in [false, true] {
            let e = env();
            if sandboxed {
                let shared = e.shared.canonicalize().unwrap();
                append_config(
                    &e,
                    &format!(
                        "[mcp.faulty.sandbox]\n[mcp.everything.sandbox]\n[mcp.filesystem.sandbox]\nread = [{:?}]\n",
                        shared.display().to_string()
                    ),
                );
            }
            let mock = MockModel::start().unwrap();
            finish(&mock);
            let o = run(&e, &mock, "deny");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let (leaves, _) = session_leaves(&e);
            for s in servers {
                let started = lifecycle(&leaves, s, "started");
                assert_eq!(started["data"]["sandbox"].is_object(), sandboxed);
                times
                    .entry((s, sandboxed))
                    .or_default()
                    .push(started["outcome"]["duration_ms"].as_u64().unwrap());
            }
        }
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    for s in servers {
        let mut host = times[&(s, false)].clone();
        let mut sb = times[&(s, true)].clone();
        let (h, b) = (median(&mut host), median(&mut sb));
        println!(
            "{s:<11} host {h:>4} ms  sandboxed {b:>4} ms  overhead {:>4} ms  (host {host:?}, sandboxed {sb:?})",
            b as i64 - h as i64
        );
    }
}
