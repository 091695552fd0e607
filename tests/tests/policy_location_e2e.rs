#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Where `stele run` takes its policy from when none is given: never from the
//! current folder or the workspace; the user's config folder, else the
//! strict-default bundle compiled into the binary (written read-only under
//! the state folder). A configured bundle that is missing is an error.

use std::path::Path;

use serde_json::json;
use stele_tests::mock_model::{MockModel, Turn};
use stele_tests::{leaves_json, sandbox_available, Stele};

fn run(
    s: &Stele,
    ws: &Path,
    cwd_config: &Path,
    mock: &MockModel,
    extra: &[&str],
) -> std::process::Output {
    mock.push(
        Turn::new()
            .tool_use("t1", "final_answer", json!({"answer": "ok"}))
            .into(),
    );
    let mut args = vec![
        "run",
        "--workspace",
        ws.to_str().unwrap(),
        "--model",
        "anthropic:claude-sonnet-4-5",
    ];
    args.extend_from_slice(extra);
    args.push("Say ok");
    s.run_env(
        &args,
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test-policy"),
            ("ANTHROPIC_BASE_URL", &mock.base_url()),
            ("XDG_CONFIG_HOME", cwd_config.to_str().unwrap()),
            (
                "STELE_CONFIG",
                cwd_config.join("none.toml").to_str().unwrap(),
            ),
        ],
    )
    .unwrap()
}

fn last_start(s: &Stele) -> serde_json::Value {
    let leaves = leaves_json(s, &s.state.join("audit.db")).unwrap();
    leaves
        .into_iter()
        .rev()
        .find(|l| l["kind"] == "session.start")
        .unwrap()
}

#[test]
fn default_policy_search_order() {
    if !sandbox_available("default_policy_search_order") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = Stele::new(&d.path().join("state"));
    assert!(s.run(&["keys", "init"]).unwrap().status.success());
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // A bundle in the workspace is never picked up.
    std::fs::create_dir_all(ws.join("policies/strict-default")).unwrap();
    let xdg = d.path().join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let mock = MockModel::start().unwrap();

    // Nothing configured: the built-in strict-default, under the state folder. It allows
    // Anthropic models from Anthropic's API only: the mock on this machine is refused, and
    // the message says what to permit.
    let o = run(&s, &ws, &xdg, &mock, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(r#"Model::"anthropic/claude-sonnet-4-5""#)
            && err.contains(r#"resource.host == "127.0.0.1""#),
        "{err}"
    );
    let start = last_start(&s);
    assert_eq!(
        start["data"]["policy_source"], "built-in strict-default",
        "{start}"
    );
    let root = start["data"]["policy_root"].as_str().unwrap();
    assert!(root.starts_with(s.state.to_str().unwrap()), "{root}");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/strict-default");
    for f in ["org/strict.cedar", "members.toml", "schema.cedarschema"] {
        assert_eq!(
            std::fs::read(Path::new(root).join(f)).unwrap(),
            std::fs::read(template.join(f)).unwrap(),
            "{f}"
        );
    }

    // A bundle in the user's config folder wins over the built-in one.
    let user = xdg.join("stele/policy");
    stele_tests::template_for_mock("finance", &user);
    let o = run(&s, &ws, &xdg, &mock, &["--user", "alice"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let start = last_start(&s);
    assert_eq!(start["data"]["policy_source"], "user-config", "{start}");
    assert_eq!(start["data"]["policy_root"], user.to_str().unwrap());

    // A configured bundle that does not exist is an error, never a fallback.
    let missing = d.path().join("no-such-bundle");
    let o = run(
        &s,
        &ws,
        &xdg,
        &mock,
        &["--policy", missing.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("no-such-bundle") && err.contains("does not exist"),
        "{err}"
    );
}
