//! Every command that reports something prints, with `--json`, a shape
//! described by its schema in docs/json/ (generated from the types): real
//! output of each command validated against it, and no Rust debug
//! strings (`Foo(\"…\")`, `Some(…)`) anywhere in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e_common;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stele_tests::{check_json_shape, sandbox_available, Stele};

fn json_of(o: &std::process::Output) -> Value {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// No value anywhere in `v` looks like Rust's `{:?}` of an enum or option.
fn no_debug_strings(v: &Value) {
    match v {
        Value::String(s) => {
            let debugish = [
                "Some(",
                "None",
                "(\"",
                "Answered",
                "NotDelegated",
                "Truncated {",
            ];
            for d in debugish {
                assert!(
                    !s.starts_with(d) && !s.contains(&format!("{d}\\\"")),
                    "debug string {s:?}"
                );
            }
            assert!(
                !(s.contains("(\"") && s.ends_with("\")")),
                "debug string {s:?}"
            );
        }
        Value::Array(a) => a.iter().for_each(no_debug_strings),
        Value::Object(o) => o.values().for_each(no_debug_strings),
        _ => {}
    }
}

fn check(name: &str, v: &Value) {
    check_json_shape(name, v).unwrap();
    no_debug_strings(v);
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keys_log_and_export_shapes() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let init = json_of(
        &s.run(&[
            "keys",
            "init",
            "--json",
            "--origin",
            "json.stele.invalid/log",
        ])
        .unwrap(),
    );
    check("keys", &init);
    assert_eq!(init["created"], true);
    assert_eq!(init["origin"], "json.stele.invalid/log");
    let show = json_of(&s.run(&["keys", "show", "--json"]).unwrap());
    check("keys", &show);
    assert_eq!(show["verifier"], init["verifier"]);
    assert_eq!(show["created"], false);
    assert!(s.run(&["audit", "init"]).unwrap().status.success());
    let verified = json_of(&s.run(&["audit", "verify", "--json"]).unwrap());
    check("audit-verify", &verified);
    assert_eq!(verified["result"], "verified");
    // A tampered log's report has the same schema.
    let db = s.state.join("audit.db");
    let copy = d.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    c.execute_batch("DROP TRIGGER entries_no_update;").unwrap();
    c.execute(
        "UPDATE entries SET leaf = CAST(replace(CAST(leaf AS TEXT), '\"ts\":\"2', '\"ts\":\"1') AS BLOB) WHERE seq = 1",
        [],
    )
    .unwrap();
    drop(c);
    let o = s
        .run(&["audit", "verify", "--json", "--db", p(&copy)])
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let tampered: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("audit-verify", &tampered);
    assert_eq!(tampered["result"], "tampered");
    let out = d.path().join("export");
    let export = json_of(
        &s.run(&["audit", "export", "--json", "--out", p(&out)])
            .unwrap(),
    );
    check("audit-export", &export);
    assert_eq!(export["out"], p(&out));
    assert_eq!(export["verifier"], init["verifier"]);
    // session list: JSON Lines, one session each (none yet: no lines).
    let o = s.run(&["session", "list", "--json"]).unwrap();
    assert!(o.status.success());
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        check("session-list", &serde_json::from_str(line).unwrap());
    }
}

#[test]
fn sandbox_and_session_shapes() {
    if !sandbox_available("sandbox_and_session_shapes") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    assert!(s.run(&["keys", "init"]).unwrap().status.success());
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    stele_tests::share(&ws).unwrap();
    let exec = json_of(
        &s.run(&[
            "sandbox",
            "exec",
            "--json",
            "--workspace",
            p(&ws),
            "--",
            "python3",
            "-c",
            "print('hi')",
        ])
        .unwrap(),
    );
    check("sandbox-exec", &exec);
    assert_eq!(exec["stdout"], "hi\n");
    assert_eq!(exec["exit_code"], 0);
    let o = s.run(&["session", "list", "--json"]).unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    check("session-list", &lines[0]);
    assert_eq!(lines[0]["state"], "ok");
    // session show --json: the log's own leaves, each parseable.
    let id = lines[0]["id"].as_str().unwrap();
    let o = s.run(&["session", "show", id, "--json"]).unwrap();
    assert!(o.status.success());
    let leaves: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(leaves.iter().any(|l| l["kind"] == "session.start"));
    assert!(leaves.iter().all(|l| l["session"]["id"] == id));
    let bench = json_of(
        &s.run(&["sandbox", "bench", "--json", "--runs", "3"])
            .unwrap(),
    );
    check("sandbox-bench", &bench);
    assert_eq!(bench["workspace"], "mediated");
    let gate = json_of(&s.run(&["bench", "gate", "--json", "--calls", "5"]).unwrap());
    check("bench-gate", &gate);
    assert_eq!(gate["calls"], 5);
    // A small workload through the real gate and log: one measured run of each.
    let wl = json_of(
        &s.run(&[
            "bench", "workload", "--json", "--files", "40", "--writes", "4", "--runs", "1",
        ])
        .unwrap(),
    );
    check("bench-workload", &wl);
    assert_eq!(wl["stele_ms"].as_array().unwrap().len(), 1);
    // Each run reads and writes through the gate: every file is an entry at least.
    assert!(wl["entries_per_run"].as_u64().unwrap() >= 44, "{wl}");
    // One-shot exec on a fresh log and on one already holding entries.
    let ex = json_of(
        &s.run(&[
            "bench",
            "exec",
            "--json",
            "--runs",
            "2",
            "--existing",
            "0,300",
        ])
        .unwrap(),
    );
    check("bench-exec", &ex);
    let sizes = ex["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 2, "{ex}");
    assert_eq!(sizes[0]["entries_before"], 0);
    assert!(sizes[1]["entries_before"].as_u64().unwrap() >= 300, "{ex}");
    for z in sizes {
        assert_eq!(z["wall_ms"].as_array().unwrap().len(), 2, "{ex}");
        assert!(z["max_rss_kib"].as_u64().unwrap() > 1000, "{ex}");
    }
    // vm check reports either way (ready or not) with the same shape.
    let o = s.run(&["vm", "check", "--json"]).unwrap();
    let vm: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("vm-check", &vm);
}

#[test]
fn doctor_shape() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    // With problems (no key, no model) and without: the same schema.
    let o = s
        .run(&["doctor", "--json", "--offline", "--policy", p(&policy)])
        .unwrap();
    assert_eq!(o.status.code(), Some(13));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("doctor", &v);
    assert!(s.run(&["keys", "init"]).unwrap().status.success());
    let o = s
        .run_env(
            &[
                "doctor",
                "--json",
                "--offline",
                "--policy",
                p(&policy),
                "--model",
                "anthropic:claude-sonnet-4-5",
            ],
            &[("ANTHROPIC_API_KEY", "k")],
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("doctor", &v);
    assert_eq!(v["ok"], sandbox_available("doctor_shape"), "{v}");
}

#[test]
fn policy_validate_and_test_shapes() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let finance = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    let v = json_of(
        &s.run(&["policy", "validate", "--json", p(&finance)])
            .unwrap(),
    );
    check("policy-validate", &v);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"), "{v}");
    assert!(v["tests"].as_u64().unwrap() > 0, "{v}");
    let t = json_of(&s.run(&["policy", "test", "--json", p(&finance)]).unwrap());
    check("policy-test", &t);
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["failed"], 0);
    assert_eq!(
        t["passed"].as_u64().unwrap() as usize,
        t["cases"].as_array().unwrap().len()
    );

    // A copy whose test expects the wrong decision: exit 1, the same shape,
    // the case named with why.
    let bad = d.path().join("bad");
    copy_dir(&finance, &bad);
    let tests = bad.join("tests/finance.json");
    let text = std::fs::read_to_string(&tests).unwrap();
    let mut cases: Value = serde_json::from_str(&text).unwrap();
    let first = &mut cases[0];
    let flipped = if first["decision"] == "allow" {
        "deny"
    } else {
        "allow"
    };
    first["decision"] = Value::from(flipped);
    let name = first["name"].as_str().unwrap().to_string();
    std::fs::write(&tests, serde_json::to_string(&cases).unwrap()).unwrap();
    let o = s.run(&["policy", "test", "--json", p(&bad)]).unwrap();
    assert_eq!(o.status.code(), Some(1));
    let t: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("policy-test", &t);
    assert_eq!(t["ok"], false);
    assert_eq!(t["failed"], 1);
    let failed: Vec<&Value> = t["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], name.as_str());
    assert!(
        failed[0]["why"].as_str().is_some_and(|w| !w.is_empty()),
        "{t}"
    );

    // A bundle that does not load: exit 1, the error with its file.
    std::fs::write(
        bad.join("org/broken.cedar"),
        "permit (principal, action, resource) when {",
    )
    .unwrap();
    let o = s.run(&["policy", "validate", "--json", p(&bad)]).unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("policy-validate", &v);
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("broken.cedar"), "{v}");
    assert_eq!(v["digest"], Value::Null);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// `stele run --json`: the first event says which session (before anything
/// else happens), the last one ends the same session; no event carries a
/// Rust debug string.
#[test]
fn run_events_start_with_the_session() {
    if !sandbox_available("run_events_start_with_the_session") {
        return;
    }
    use stele_tests::mock_model::{MockModel, Turn, Wire};
    let d = tempfile::tempdir().unwrap();
    let s = e2e_common::setup(d.path());
    let ws = e2e_common::workspace(d.path());
    let bundle = e2e_common::policy(d.path(), Wire::Anthropic, "");
    let mock = MockModel::start().unwrap();
    mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "receipts/r1.txt"}))
            .into(),
    );
    mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "10.50"}))
            .into(),
    );
    let c = e2e_common::run_command(&s, &ws, &bundle, Wire::Anthropic, &mock, &["--json"], "Sum");
    let o = e2e_common::run_bounded(c, Duration::from_secs(120));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &events[0];
    check("run-start", first);
    assert_eq!(first["event"], "start");
    assert_eq!(first["principal"], "alice");
    let id = first["session"].as_str().unwrap();
    assert!(id.starts_with("s-"), "{first}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "end");
    assert_eq!(last["session"], id);
    assert_eq!(last["outcome"], "answered");
    for e in &events {
        no_debug_strings(e);
    }
}

/// The benches' figures as JSON (small runs: the shape, not the speed).
#[test]
fn bench_shapes() {
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    let a = json_of(
        &s.run(&[
            "audit",
            "bench",
            "--json",
            "--writers",
            "2",
            "--entries",
            "200",
            "--serial",
            "20",
        ])
        .unwrap(),
    );
    check("audit-bench", &a);
    assert_eq!(a["writers"], 2);
    assert_eq!(a["entries"], 200);
    assert!(a["appends_per_s"].as_f64().unwrap() > 0.0, "{a}");
    assert_eq!(a["kept"], Value::Null);
    let p = json_of(
        &s.run(&[
            "policy",
            "bench",
            "--json",
            "--policies",
            "100",
            "--decisions",
            "500",
        ])
        .unwrap(),
    );
    check("policy-bench", &p);
    assert_eq!(p["decisions"], 500);
    let effects: u64 = ["allow", "deny", "ask"]
        .iter()
        .map(|k| p[k].as_u64().unwrap())
        .sum();
    assert_eq!(effects, 500, "{p}");
    if sandbox_available("bench_shapes (tool-call)") {
        let t = json_of(
            &s.run(&["bench", "tool-call", "--json", "--calls", "3"])
                .unwrap(),
        );
        check("bench-tool-call", &t);
        assert!(t["calls"].as_u64().unwrap() >= 2, "{t}");
        let (i, p) = (
            t["intent_p50_ms"].as_f64().unwrap(),
            t["program_p50_ms"].as_f64().unwrap(),
        );
        assert!(
            i > 0.0 && p >= i,
            "the program starts after its intent is durable: {t}"
        );
    }
}
