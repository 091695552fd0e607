#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The JSON test runner reports wrong decisions and wrong reasons.

mod common;

use common::{bundle, ORG_ALLOW_ALL_FILES};
use stele_policy::tests_format::{run_tests, CaseOutcome};
use stele_policy::{Bundle, PolicyError};

const TESTS: &str = r#"[
  {"name": "right", "request": {"principal": "User::\"a\"", "action": "Action::\"file.read\"",
    "resource": "File::\"x\"", "context": {}}, "entities": [], "decision": "allow",
    "reason": ["org.files"], "num_errors": 0},
  {"name": "wrong decision", "request": {"principal": "User::\"a\"", "action": "Action::\"file.read\"",
    "resource": "File::\"x\"", "context": {}}, "decision": "deny", "reason": ["org.files"]},
  {"name": "wrong reason", "request": {"principal": "User::\"a\"", "action": "Action::\"file.read\"",
    "resource": "File::\"x\"", "context": {}}, "decision": "allow", "reason": []},
  {"name": "extra reason", "request": {"principal": "User::\"a\"", "action": "Action::\"file.read\"",
    "resource": "File::\"x\"", "context": {}}, "decision": "allow", "reason": ["org.files", "org.other"]},
  {"name": "bad resource", "request": {"principal": "User::\"a\"", "action": "Action::\"file.read\"",
    "resource": "File::\"/etc/passwd\"", "context": {}}, "decision": "deny", "reason": []},
  {"name": "bad context", "request": {"principal": "User::\"a\"", "action": "Action::\"file.read\"",
    "resource": "File::\"x\"", "context": {"sandbox": {"backend": "docker", "network": false}}},
    "decision": "allow", "reason": ["org.files"]}
]"#;

#[test]
fn failures_are_reported_per_case() {
    let dir = bundle(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("tests/t.json", TESTS),
    ]);
    let b = Bundle::load(dir.path()).unwrap();
    let r = run_tests(&b).unwrap();
    let outcome = |name: &str| {
        r.cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
            .outcome
            .clone()
    };
    assert_eq!(outcome("right"), CaseOutcome::Pass);
    for (name, needle) in [
        ("wrong decision", "expected deny, got allow"),
        ("wrong reason", "expected reason []"),
        ("extra reason", "org.other"),
        ("bad resource", "absolute"),
        ("bad context", "docker"),
    ] {
        match outcome(name) {
            CaseOutcome::Fail(why) => assert!(why.contains(needle), "{name}: {why}"),
            CaseOutcome::Pass => panic!("{name} should fail"),
        }
    }
    assert_eq!((r.passed(), r.failed()), (1, 5));
    let wrong = r.cases.iter().find(|c| c.name == "wrong decision").unwrap();
    assert_eq!(wrong.location.file, "tests/t.json");
    assert_eq!(wrong.location.line, Some(5));
}

#[test]
fn malformed_test_file_is_an_error_with_line() {
    let dir = bundle(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        (
            "tests/t.json",
            "[\n  {\"name\": \"x\",\n   \"decision\": \"maybe\"}\n]",
        ),
    ]);
    let b = Bundle::load(dir.path()).unwrap();
    match run_tests(&b) {
        Err(PolicyError::TestFile { location, .. }) => {
            assert_eq!(location.file, "tests/t.json");
            assert_eq!(location.line, Some(3));
        }
        other => panic!("expected a test file error, got {other:?}"),
    }
}
