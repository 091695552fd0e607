#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shipped templates load, and their own tests pass.

use std::path::PathBuf;

use stele_policy::tests_format::{run_tests, CaseOutcome};
use stele_policy::Bundle;

fn template(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name)
}

fn assert_template_tests_pass(name: &str, min_cases: usize) {
    let bundle = Bundle::load(template(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let report = run_tests(&bundle).unwrap();
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter_map(|c| match &c.outcome {
            CaseOutcome::Pass => None,
            CaseOutcome::Fail(why) => Some(format!("{} ({}): {why}", c.name, c.location)),
        })
        .collect();
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    assert!(
        report.cases.len() >= min_cases,
        "{name}: only {} cases",
        report.cases.len()
    );
}

#[test]
fn finance_template_tests_pass() {
    assert_template_tests_pass("finance", 20);
}

#[test]
fn strict_default_template_tests_pass() {
    assert_template_tests_pass("strict-default", 15);
}

#[test]
fn minimal_template_tests_pass() {
    assert_template_tests_pass("minimal", 20);
}

#[test]
fn desktop_template_tests_pass() {
    assert_template_tests_pass("desktop", 20);
}

#[test]
fn template_schema_copies_match_the_builtin_schema() {
    for name in ["finance", "strict-default", "minimal", "desktop"] {
        let text = std::fs::read_to_string(template(name).join("schema.cedarschema")).unwrap();
        assert_eq!(text, stele_policy::STELE_SCHEMA, "{name}");
    }
}
