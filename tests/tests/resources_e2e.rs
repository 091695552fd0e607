//! Group limits end to end through the `stele` binary: `--limit` and the
//! `[resources]` configuration reach the sandbox, `exec.end` records the
//! command's and the session's figures (and `session.start` the resource
//! layer), `stele sandbox check` reports cgroups in plain JSON, and bad or
//! forbidden limits are refused with the file, key and value named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use stele_tests::{leaves_json, sandbox_available, share, Stele};

fn setup(dir: &Path) -> (Stele, std::path::PathBuf) {
    let s = Stele::new(&dir.join("state"));
    let o = s
        .run(&["keys", "init", "--origin", "e2e.stele.invalid/log"])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    share(&ws).unwrap();
    (s, ws)
}

fn json_out(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn of_kind<'a>(leaves: &'a [Value], kind: &str) -> Vec<&'a Value> {
    leaves.iter().filter(|l| l["kind"] == kind).collect()
}

#[test]
fn exec_end_records_the_group_figures_and_the_limit_hit() {
    if !sandbox_available("exec_end_records_the_group_figures_and_the_limit_hit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let script = "for i in 1 2 3; do python3 -c 'import time; x = b\"x\" * (120 << 20); time.sleep(1)' & done; wait; echo done";
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--workspace",
            ws.to_str().unwrap(),
            "--limit",
            "command_memory=256M",
            "--json",
            "--",
            "sh",
            "-c",
            script,
        ])
        .unwrap();
    let out = json_out(&o);
    let r = &out["resources"];
    assert_eq!(r["limits"]["memory_bytes"], 256u64 << 20, "{out}");
    assert!(r["oom_kills"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(r["limits_hit"], serde_json::json!(["memory"]), "{out}");
    assert!(
        r["memory_peak_bytes"].as_u64().unwrap() <= 256 << 20,
        "{out}"
    );
    assert!(out["session_resources"]["limits"]["memory_bytes"].is_u64());

    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    let end = of_kind(&leaves, "exec.end");
    let end = end.last().expect("an exec.end entry");
    let logged = &end["data"]["resources"];
    assert_eq!(logged["limits_hit"], serde_json::json!(["memory"]), "{end}");
    assert_eq!(logged["oom_kills"], r["oom_kills"]);
    assert!(
        logged["cpu_system_ms"].is_u64() && logged["processes_peak"].is_u64(),
        "{end}"
    );
    assert!(
        end["data"]["session_resources"]["memory_peak_bytes"].is_u64(),
        "{end}"
    );
    let start = of_kind(&leaves, "session.start");
    let res = &start.last().unwrap()["data"]["sandbox_resources"];
    assert!(res["cgroups"].is_string(), "{res}");
    assert_eq!(res["command_limits"]["memory_bytes"], 256u64 << 20);
    assert!(res["session_cgroup"]
        .as_str()
        .unwrap()
        .contains("stele.slice/session-"));
}

#[test]
fn the_resources_section_configures_the_limits() {
    if !sandbox_available("the_resources_section_configures_the_limits") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[resources]\ncommand_processes = 40\n").unwrap();
    let bomb = "import os, time\nn = 0\ntry:\n    while n < 500:\n        if os.fork() == 0:\n            time.sleep(20)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('refused', e.errno)\nprint(n)";
    let o = s
        .run_env(
            &[
                "sandbox",
                "exec",
                "--workspace",
                ws.to_str().unwrap(),
                "--json",
                "--",
                "python3",
                "-c",
                bomb,
            ],
            &[("STELE_CONFIG", cfg.to_str().unwrap())],
        )
        .unwrap();
    let out = json_out(&o);
    let stdout = out["stdout"].as_str().unwrap();
    assert!(stdout.contains("refused 11"), "{out}");
    let forked: u64 = stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(forked < 40, "{forked} forks under a 40-process limit");
    assert_eq!(out["resources"]["limits"]["processes"], 40);
    assert!(
        out["resources"]["limits_hit"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("processes")),
        "{out}"
    );

    // A value that is not one: refused before anything runs, file and key named.
    std::fs::write(&cfg, "[resources]\ncommand_memory = \"plenty\"\n").unwrap();
    let o = s
        .run_env(
            &[
                "sandbox",
                "exec",
                "--workspace",
                ws.to_str().unwrap(),
                "--",
                "true",
            ],
            &[("STELE_CONFIG", cfg.to_str().unwrap())],
        )
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(cfg.to_str().unwrap())
            && err.contains("command_memory")
            && err.contains("plenty"),
        "{err}"
    );
    // An unknown key too.
    std::fs::write(&cfg, "[resources]\nmemory = 1\n").unwrap();
    let o = s
        .run_env(
            &[
                "sandbox",
                "exec",
                "--workspace",
                ws.to_str().unwrap(),
                "--",
                "true",
            ],
            &[("STELE_CONFIG", cfg.to_str().unwrap())],
        )
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("memory"));
    // A bad flag.
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--workspace",
            ws.to_str().unwrap(),
            "--limit",
            "command_cpu=lots",
            "--",
            "true",
        ])
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("command_cpu") && err.contains("lots"), "{err}");
}

#[test]
fn a_managed_limit_cannot_be_raised_by_a_flag() {
    if !sandbox_available("a_managed_limit_cannot_be_raised_by_a_flag") {
        return;
    }
    if Path::new("/etc/stele/config.toml").exists() {
        eprintln!("SKIPPED: a real managed configuration is installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let managed = dir.path().join("managed.toml");
    std::fs::write(&managed, "[resources]\nsession_memory = \"1G\"\n").unwrap();
    let env = [("STELE_MANAGED_CONFIG", managed.to_str().unwrap())];
    let args = |limit: &'static str| {
        vec![
            "sandbox",
            "exec",
            "--workspace",
            ws.to_str().unwrap(),
            "--limit",
            limit,
            "--json",
            "--",
            "true",
        ]
    };
    let o = s.run_env(&args("session_memory=64G"), &env).unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("managed") && err.contains("session_memory"),
        "{err}"
    );
    // Asking for exactly the managed value, or another key, is fine.
    let o = s.run_env(&args("command_memory=512M"), &env).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = json_out(&o);
    assert_eq!(
        out["session_resources"]["limits"]["memory_bytes"],
        1u64 << 30
    );
    assert_eq!(out["resources"]["limits"]["memory_bytes"], 512u64 << 20);
}

#[test]
fn sandbox_check_reports_cgroups_in_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stele::new(&dir.path().join("state"));
    let o = s.run(&["sandbox", "check", "--json"]).unwrap();
    let v = json_out(&o);
    let c = &v["cgroup"];
    assert!(c["usable"].is_boolean(), "{c}");
    assert!(c["required"].is_boolean(), "{c}");
    for ctl in ["memory", "pids", "cpu"] {
        let h = &c["controllers"][ctl];
        assert!(h["used"].is_boolean(), "{c}");
        assert!(
            h["hierarchy"].is_string() || h.get("hierarchy").is_none(),
            "{c}"
        );
    }
    assert_eq!(c["command_limits"]["memory_bytes"], 4u64 << 30, "{c}");
    assert_eq!(c["session_limits"]["processes"], 1024, "{c}");
    // No Rust Debug text anywhere: every string is a plain value.
    assert!(
        v["landlock_tcp"].is_boolean() && v["landlock_scoping"].is_boolean(),
        "{v}"
    );
    let text = v.to_string();
    for debug in [
        "Enforced",
        "Available",
        "Some(",
        "Delegated",
        "NotSupportedByKernel",
    ] {
        assert!(!text.contains(debug), "{debug} in {text}");
    }
    if c["usable"] == true {
        assert!(c["layout"].is_string() && c["subtree"].is_string(), "{c}");
        assert_eq!(
            c["controllers"]["cpu"]["used"], false,
            "no CPU limit by default"
        );
        let t = s.run(&["sandbox", "check"]).unwrap();
        let text = String::from_utf8_lossy(&t.stdout);
        assert!(text.contains("cgroup                 active"), "{text}");
        assert!(
            text.contains("per command: memory 4 GiB, 512 processes"),
            "{text}"
        );
    }
}

#[test]
fn refused_network_attempts_are_decision_entries() {
    if !sandbox_available("refused_network_attempts_are_decision_entries") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let code = "import socket\nfor i in range(3):\n    try:\n        socket.create_connection(('1.2.3.4', 443), timeout=2)\n    except OSError as e:\n        print('tcp', e.errno)\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nexcept OSError as e:\n    print('udp', e.errno)\n";
    let o = s
        .run(&[
            "sandbox",
            "exec",
            "--workspace",
            ws.to_str().unwrap(),
            "--json",
            "--",
            "python3",
            "-c",
            code,
        ])
        .unwrap();
    let out = json_out(&o);
    let stdout = out["stdout"].as_str().unwrap();
    assert_eq!(stdout.matches("tcp 13").count(), 3, "{out}");
    assert!(stdout.contains("udp 13"), "{out}");
    let leaves = leaves_json(&s, &s.state.join("audit.db")).unwrap();
    let start = of_kind(&leaves, "exec.start");
    let exec_seq = start.last().unwrap()["seq"].as_u64().unwrap().to_string();
    let refusals: Vec<&Value> = leaves
        .iter()
        .filter(|l| l["kind"] == "policy.decision" && l["data"]["refused_by"] == "sandbox")
        .collect();
    assert_eq!(
        refusals.len(),
        2,
        "one entry per distinct attempt: {refusals:?}"
    );
    let tcp = refusals
        .iter()
        .find(|l| l["target"]["scheme"] == "tcp")
        .unwrap();
    assert_eq!(tcp["target"]["host"], "1.2.3.4", "{tcp}");
    assert_eq!(tcp["target"]["port"], 443);
    assert_eq!(tcp["decision"]["effect"], "deny");
    assert_eq!(tcp["outcome"]["status"], "denied");
    assert!(
        tcp["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("refused by the sandbox"),
        "{tcp}"
    );
    assert_eq!(tcp["data"]["exec"], exec_seq, "attributed to its command");
    let udp = refusals
        .iter()
        .find(|l| l["target"]["scheme"] == "udp")
        .unwrap();
    assert!(udp["target"].get("host").is_none(), "{udp}");
    let end = of_kind(&leaves, "exec.end");
    assert_eq!(end.last().unwrap()["data"]["network_refusals"], 4);
}

/// The predicate of the session attestation stored beside `db`.
fn attestation(db: &Path, session: &str) -> Value {
    use base64::Engine;
    let dir = std::path::PathBuf::from(format!("{}.attestations", db.display()));
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(session))
        .unwrap_or_else(|| panic!("no attestation for {session} in {}", dir.display()));
    let env: Value = serde_json::from_str(std::fs::read_to_string(file).unwrap().trim()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    statement["predicate"].clone()
}

#[test]
fn running_without_cgroups_only_when_configured_and_recorded() {
    if !sandbox_available("running_without_cgroups_only_when_configured_and_recorded") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, ws) = setup(dir.path());
    let cfg = dir.path().join("config.toml");
    // A parent that cannot be made (`cgroup.procs` is a file): no cgroups.
    std::fs::write(
        &cfg,
        "[resources]\ncgroup_parent = \"cgroup.procs/stele\"\n",
    )
    .unwrap();
    let env = [("STELE_CONFIG", cfg.to_str().unwrap())];
    let args = [
        "sandbox",
        "exec",
        "--workspace",
        ws.to_str().unwrap(),
        "--",
        "echo",
        "ran",
    ];
    let o = s.run_env(&args, &env).unwrap();
    assert!(
        !o.status.success(),
        "ran without cgroups though they are required"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cgroup") && err.contains("optional"), "{err}");
    std::fs::write(
        &cfg,
        "[resources]\ncgroup_parent = \"cgroup.procs/stele\"\ncgroups = \"optional\"\n",
    )
    .unwrap();
    let o = s.run_env(&args, &env).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("WARNING: running without cgroup limits"),
        "{err}"
    );
    let db = s.state.join("audit.db");
    let leaves = leaves_json(&s, &db).unwrap();
    let start = *of_kind(&leaves, "session.start").last().unwrap();
    let res = &start["data"]["sandbox_resources"];
    assert!(res.get("cgroups").is_none(), "{res}");
    assert!(
        res["without_cgroups"]
            .as_str()
            .unwrap()
            .contains("cgroup.procs"),
        "{res}"
    );
    assert_eq!(res["allowed_by"], "resources.cgroups = \"optional\"");
    let end = *of_kind(&leaves, "exec.end").last().unwrap();
    assert!(end["data"].get("resources").is_none(), "{end}");
    let session = start["session"]["id"].as_str().unwrap();
    let predicate = attestation(&db, session);
    let text = predicate.to_string();
    assert!(text.contains("without_cgroups"), "{text}");
}
