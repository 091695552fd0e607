#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! docs/policy-guide.md shows rules of `policies/minimal` (the minimum
//! working team, the recipe "approve writes to a folder") and names the
//! built-in tools: what it shows must be what the template and the runtime
//! have, or a policy author copies something that does not work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Rules by `@id`, with whitespace collapsed and comments dropped.
fn rules_by_id(text: &str) -> BTreeMap<String, String> {
    let code: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect();
    let code = code.join(" ");
    let mut out = BTreeMap::new();
    for part in code.split("@id(\"").skip(1) {
        let (id, rest) = part.split_once("\")").unwrap();
        let rule = rest.split_inclusive(';').next().unwrap();
        let words: Vec<&str> = rule.split_whitespace().collect();
        out.insert(id.to_string(), words.join(" "));
    }
    out
}

/// The ```cedar blocks of a Markdown file.
fn cedar_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match (&mut cur, line.trim_start()) {
            (None, l) if l.starts_with("```cedar") => cur = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.push(cur.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[test]
fn the_guides_minimal_rules_are_the_templates() {
    let guide = std::fs::read_to_string(root().join("docs/policy-guide.md")).unwrap();
    let template =
        std::fs::read_to_string(root().join("policies/minimal/teams/dev/dev.cedar")).unwrap();
    let have = rules_by_id(&template);
    let mut shown = BTreeMap::new();
    for b in cedar_blocks(&guide) {
        shown.extend(
            rules_by_id(&b)
                .into_iter()
                .filter(|(id, _)| id.starts_with("dev.")),
        );
    }
    // The three a team cannot do without, and the recipe's two.
    for id in [
        "dev.model",
        "dev.tools",
        "dev.list",
        "dev.outbox",
        "dev.outbox-needs-approval",
    ] {
        assert!(shown.contains_key(id), "the guide no longer shows {id}");
    }
    // (Other `dev.` examples in the guide, e.g. `dev.internet`, are not the template's.)
    for (id, rule) in shown.iter().filter(|(id, _)| have.contains_key(*id)) {
        assert_eq!(
            rule, &have[id],
            "{id}: the guide and policies/minimal differ"
        );
    }
}

#[test]
fn the_docs_name_the_built_in_tools_as_the_runtime_does() {
    let specs = std::fs::read_to_string(root().join("runtime/src/tools/specs.rs")).unwrap();
    // `pub const FILE_READ: &str = "file_read";`
    let tools: Vec<String> = specs
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const") && l.contains(": &str = \""))
        .map(|l| l.split('"').nth(1).unwrap().to_string())
        .collect();
    for t in [
        "file_read",
        "file_write",
        "file_edit",
        "file_list",
        "file_search",
        "exec",
    ] {
        assert!(
            tools.contains(&t.to_string()),
            "{t} is no longer a built-in tool: {tools:?}"
        );
    }
    let guide = std::fs::read_to_string(root().join("docs/policy-guide.md")).unwrap();
    let listed = guide
        .split("The built-in tools (`tool.call` on `Tool::\"…\"`) are ")
        .nth(1)
        .expect("the guide lists the built-in tools")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for t in tools.iter().filter(|t| *t != "final_answer") {
        assert!(
            listed.contains(&format!("`{t}`")),
            "the guide's list lacks {t}: {listed}"
        );
    }
    // Tool names the model could be told, as the docs write them in scripts and examples.
    for doc in [
        "docs/providers.md",
        "docs/policy-guide.md",
        "README.md",
        "docs/runtime.md",
    ] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for (i, chunk) in text.split("\"name\": \"").enumerate().skip(1) {
            let name = chunk.split('"').next().unwrap();
            let is_tool_use = text
                .split("\"name\": \"")
                .nth(i - 1)
                .unwrap()
                .contains("tool_use");
            if is_tool_use {
                assert!(
                    tools.iter().any(|t| t == name) || name == "final_answer" || name.contains('/'),
                    "{doc}: a tool_use names `{name}`, which is no built-in tool ({tools:?})"
                );
            }
        }
    }
}
