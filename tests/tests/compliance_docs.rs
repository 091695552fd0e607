#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! docs/compliance.md is an auditor's map: every requirement R1–R25 has
//! its feature, configuration, proof and limits, and every test it cites as
//! proof exists under that name in that file (a renamed or deleted test
//! breaks this, not the map's credibility), as does every document it cites.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn map() -> String {
    std::fs::read_to_string(root().join("docs/compliance.md")).unwrap()
}

/// Every `` `dir/tests/file.rs::name` `` in the text.
fn cited_tests(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| code.split_once(".rs::"))
        .map(|(file, name)| (format!("{file}.rs"), name.to_string()))
        .collect()
}

#[test]
fn every_requirement_has_feature_configuration_proof_and_limits() {
    let text = map();
    let sections: Vec<&str> = text.split("\n### ").skip(1).collect();
    for r in 1..=25 {
        let heads: Vec<&&str> = sections
            .iter()
            .filter(|s| s.starts_with(&format!("R{r} — ")))
            .collect();
        assert_eq!(heads.len(), 1, "R{r}: {} sections", heads.len());
        let body = heads[0].split("\n## ").next().unwrap();
        for part in [
            "**Feature.**",
            "**Configure.**",
            "**Proof.**",
            "**Not covered.**",
        ] {
            assert!(body.contains(part), "R{r} has no {part}");
        }
        let proof = body
            .split("**Proof.**")
            .nth(1)
            .unwrap()
            .split("**Not covered.**")
            .next()
            .unwrap();
        assert!(
            !cited_tests(proof).is_empty() || proof.contains("See R"),
            "R{r} cites no test as proof"
        );
    }
}

#[test]
fn every_cited_test_exists_in_its_file() {
    let text = map();
    let cited = cited_tests(&text);
    assert!(cited.len() > 40, "only {} tests cited", cited.len());
    let mut missing = Vec::new();
    for (file, name) in &cited {
        let path = root().join(file);
        let src = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{file} (cited for {name}): {e}"));
        // The function, marked as a test just above it.
        let decl = src.find(&format!("fn {name}("));
        let is_test = decl.is_some_and(|at| {
            let before = &src[..at];
            let attr = before.rfind("#[").unwrap_or(0);
            before[attr..].starts_with("#[test]") || before[attr..].starts_with("#[tokio::test")
        });
        if !is_test {
            missing.push(format!("{file}::{name}"));
        }
    }
    assert!(missing.is_empty(), "cited but not a test: {missing:?}");
}

#[test]
fn every_cited_document_exists() {
    let text = map();
    let mut missing = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || "()`,;[]".contains(c)) {
        let word = word.trim_end_matches(['.', ':']);
        if word.ends_with(".md") && !word.contains("://") {
            let p = if word.starts_with("docs/") || word == "SECURITY.md" || word == "README.md" {
                root().join(word)
            } else {
                root().join("docs").join(word)
            };
            if !p.exists() {
                missing.push(word.to_string());
            }
        }
    }
    assert!(missing.is_empty(), "cited documents missing: {missing:?}");
}
