//! Every command that reports something prints, with `--json`, a shape
//! described by its schema in docs/json/ (generated from the types): real
//! output of each command validated against it, and no Rust debug
//! strings (`Foo(\"…\")`, `Some(…)`) anywhere in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use stele_tests::{check_json_shape, sandbox_available, Stele};

fn json_of(o: &std::process::Output) -> Value {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&o.stdout))
    })
}

/// No value anywhere in `v` looks like Rust's `{:?}` of an enum or option.
fn no_debug_strings(v: &Value) {
    match v {
        Value::String(s) => {
            let debugish = ["Some(", "None", "(\"", "Answered", "NotDelegated", "Truncated {"];
            for d in debugish {
                assert!(!s.starts_with(d) && !s.contains(&format!("{d}\\\"")), "debug string {s:?}");
            }
            assert!(!(s.contains("(\"") && s.ends_with("\")")), "debug string {s:?}");
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
    let init = json_of(&s.run(&["keys", "init", "--json", "--origin", "json.stele.invalid/log"]).unwrap());
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
    let export = json_of(&s.run(&["audit", "export", "--json", "--out", p(&out)]).unwrap());
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
        &s.run(&["sandbox", "exec", "--json", "--workspace", p(&ws), "--", "python3", "-c", "print('hi')"])
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
    let bench = json_of(&s.run(&["sandbox", "bench", "--json", "--runs", "3"]).unwrap());
    check("sandbox-bench", &bench);
    assert_eq!(bench["workspace"], "mediated");
    let gate = json_of(&s.run(&["bench", "gate", "--json", "--calls", "5"]).unwrap());
    check("bench-gate", &gate);
    assert_eq!(gate["calls"], 5);
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
    let o = s.run(&["doctor", "--json", "--offline", "--policy", p(&policy)]).unwrap();
    assert_eq!(o.status.code(), Some(13));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("doctor", &v);
    assert!(s.run(&["keys", "init"]).unwrap().status.success());
    let o = s
        .run_env(
            &["doctor", "--json", "--offline", "--policy", p(&policy), "--model", "anthropic:claude-sonnet-4-5"],
            &[("ANTHROPIC_API_KEY", "k")],
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check("doctor", &v);
    assert_eq!(v["ok"], sandbox_available("doctor_shape"), "{v}");
}
