//! What a policy lets one person do, as far as it can be computed: Cedar
//! rules are not a list, so stele asks the bundle about every name its
//! rules mention (each string literal, with `*` patterns probed by an
//! example) and about each built-in tool, and reports what is allowed or
//! asks a person first. A probe with a name no rule mentions tells "any
//! file" (or program, host, model) apart from a list. Models are probed at
//! each endpoint that matters here (the configured model's, the providers'
//! default APIs): policy sees where a model is served, not only its name.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use stele_policy::{Action, Bundle, Effect, ModelEndpoint, Request, Resource, SandboxFacts};

/// One thing the policy allows (or asks about) for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The action, e.g. `file.read`.
    pub action: String,
    /// The resource as the policy names it (`receipts/*`, `python3`,
    /// `anthropic/claude-* at https://api.anthropic.com:443`), or `*` for
    /// any (`* at ENDPOINT` for any model served there).
    pub resource: String,
    /// `allow`, or `ask` (a person approves each time).
    pub effect: GrantEffect,
    /// The rules that decided it.
    pub rules: Vec<String>,
}

/// Allowed outright, or after a person's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantEffect {
    /// Allowed.
    Allow,
    /// Allowed once a person approves it.
    Ask,
}

/// A name no policy would mention: allowed only by a rule for "any".
const UNLISTED: &str = "stele-doctor-unlisted";

/// The built-in tools (runtime/src/tools/specs.rs).
const TOOLS: [&str; 6] = [
    crate::tools::specs::FILE_READ,
    crate::tools::specs::FILE_WRITE,
    crate::tools::specs::FILE_EDIT,
    crate::tools::specs::FILE_LIST,
    crate::tools::specs::FILE_SEARCH,
    crate::tools::specs::EXEC,
];

/// Every string literal in the bundle's `.cedar` files.
pub fn literals(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for text in cedar_texts(root) {
        collect_strings(&text, &mut out);
    }
    out
}

/// The `"…"` strings of Cedar source, comments skipped.
fn collect_strings(text: &str, out: &mut BTreeSet<String>) {
    for line in text.lines() {
        let mut chars = line.chars().peekable();
        let mut current: Option<String> = None;
        while let Some(c) = chars.next() {
            match (&mut current, c) {
                (None, '/') if chars.peek() == Some(&'/') => break,
                (None, '"') => current = Some(String::new()),
                (Some(s), '"') => {
                    out.insert(std::mem::take(s));
                    current = None;
                }
                (Some(s), '\\') => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                (Some(s), c) => s.push(c),
                (None, _) => {}
            }
        }
    }
}

/// A literal as the example a probe uses: `receipts/*` → `receipts/example`.
fn example(pattern: &str) -> String {
    pattern.replace('*', "example")
}

/// Candidate resources for `action`, each with the name shown for it.
fn candidates(action: Action, lits: &BTreeSet<String>) -> Vec<(String, String)> {
    let uid = |ty: &str, id: &str| format!("{ty}::\"{id}\"");
    let mut v: Vec<(String, String)> = Vec::new();
    match action {
        Action::FileRead | Action::FileWrite | Action::FileList | Action::FileDelete => {
            v.push(("*".into(), uid("File", &format!("{UNLISTED}/{UNLISTED}"))));
            for l in lits
                .iter()
                .filter(|l| !l.contains("::") && !l.contains(' '))
            {
                v.push((l.clone(), uid("File", &example(l))));
            }
        }
        Action::Exec => {
            v.push(("*".into(), uid("Program", &format!("/usr/bin/{UNLISTED}"))));
            for l in lits.iter().filter(|l| is_name(l)) {
                let path = if l.starts_with('/') {
                    l.clone()
                } else {
                    format!("/usr/bin/{l}")
                };
                v.push((l.clone(), uid("Program", &path)));
            }
        }
        Action::NetConnect => {
            v.push((
                "*".into(),
                uid("Host", &format!("https://{UNLISTED}.example:443")),
            ));
            for l in lits.iter().filter(|l| l.contains('.') && is_name(l)) {
                let host = l.trim_start_matches("*.");
                v.push((l.clone(), uid("Host", &format!("https://{host}:443"))));
            }
        }
        Action::ModelRequest => {
            // Probed per endpoint by `probe` (see `model_candidates`).
        }
        Action::ToolCall => {
            for t in TOOLS {
                v.push((t.to_string(), uid("Tool", t)));
            }
        }
        Action::McpList | Action::McpCall => {
            for l in lits.iter().filter(|l| is_name(&l.replace('/', ""))) {
                let ty = if l.contains('/') {
                    "McpTool"
                } else {
                    "McpServer"
                };
                v.push((l.clone(), uid(ty, l)));
            }
        }
    }
    v
}

/// Candidate models served at `endpoint`, each with the name shown for it.
fn model_candidates(lits: &BTreeSet<String>, endpoint: &ModelEndpoint) -> Vec<(String, String)> {
    let uid = |id: &str| format!("Model::\"{id}\" at {endpoint}");
    let mut v = vec![(
        format!("* at {endpoint}"),
        uid(&format!("{UNLISTED}/{UNLISTED}")),
    )];
    for l in lits
        .iter()
        .filter(|l| l.split('/').count() == 2 && is_name(&l.replace(['/', '*'], "")))
    {
        v.push((format!("{l} at {endpoint}"), uid(&example(l))));
    }
    v
}

/// The providers' own APIs (`anthropic`, `openai`), probed besides the
/// configured endpoint and those the bundle names.
pub fn default_endpoints() -> Vec<ModelEndpoint> {
    ["https://api.anthropic.com", "https://api.openai.com"]
        .iter()
        .filter_map(|e| ModelEndpoint::parse(e).ok())
        .collect()
}

/// The endpoints the bundle's rules name: each `resource.host == "H"`, with
/// the `resource.scheme == "S"` and `resource.port == N` of the same rule
/// (https and the scheme's port when the rule names none).
pub fn policy_endpoints(root: &Path) -> Vec<ModelEndpoint> {
    let mut out = Vec::new();
    for text in cedar_texts(root) {
        for rule in text.split(';') {
            let Some(host) = quoted_after(rule, "resource.host ==") else {
                continue;
            };
            let scheme = quoted_after(rule, "resource.scheme ==").unwrap_or_else(|| "https".into());
            let port = after(rule, "resource.port ==").and_then(|r| {
                let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u16>().ok()
            });
            if let Ok(e) = ModelEndpoint::new(&scheme, &host, port) {
                out.push(e);
            }
        }
    }
    out
}

/// What follows `key` (and spaces) in `rule`.
fn after<'a>(rule: &'a str, key: &str) -> Option<&'a str> {
    rule.find(key).map(|i| rule[i + key.len()..].trim_start())
}

/// The `"…"` string right after `key` in `rule`.
fn quoted_after(rule: &str, key: &str) -> Option<String> {
    let rest = after(rule, key)?.strip_prefix('"')?;
    rest.split_once('"').map(|(v, _)| v.to_string())
}

/// The text of every `.cedar` file under `root` (tests excluded).
fn cedar_texts(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                // Policy tests hold requests, not rules.
                if p.file_name().is_some_and(|n| n != "tests") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "cedar") {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    // Comments are not rules.
                    let code: Vec<&str> = text
                        .lines()
                        .map(|l| l.split("//").next().unwrap_or(""))
                        .collect();
                    out.push(code.join("\n"));
                }
            }
        }
    }
    out
}

/// A plain name: letters, digits, `.`, `-`, `_`, `/` (no spaces, no patterns).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
}

/// What `bundle` lets `user` do, in a session with `facts`.
/// Models are probed at each of `endpoints` (duplicates ignored).
pub fn probe(
    bundle: &Bundle,
    user: &str,
    facts: SandboxFacts,
    endpoints: &[ModelEndpoint],
) -> Vec<Grant> {
    let lits = literals(bundle.root());
    let mut seen = BTreeSet::new();
    let endpoints: Vec<&ModelEndpoint> = endpoints
        .iter()
        .filter(|e| seen.insert(e.to_string()))
        .collect();
    let mut groups: Vec<(Action, Vec<(String, String)>)> = Vec::new();
    for action in Action::ALL {
        if action == Action::ModelRequest {
            for e in &endpoints {
                groups.push((action, model_candidates(&lits, e)));
            }
        } else {
            groups.push((action, candidates(action, &lits)));
        }
    }
    let mut out = Vec::new();
    for (action, group) in groups {
        let mut any = false;
        for (shown, uid) in group {
            let Ok(resource) = Resource::from_uid(&uid) else {
                continue;
            };
            if !action.accepts(&resource) {
                continue;
            }
            let Ok(request) = Request::builder(user, action, resource)
                .session("doctor")
                .sandbox(facts)
                .build()
            else {
                continue;
            };
            let d = bundle.decide(&request);
            let effect = match d.effect {
                Effect::Allow => GrantEffect::Allow,
                Effect::Ask => GrantEffect::Ask,
                Effect::Deny => continue,
            };
            if any && effect == GrantEffect::Allow {
                // "Any" was allowed already: the names add nothing.
                continue;
            }
            any |= (shown == "*" || shown.starts_with("* at ")) && effect == GrantEffect::Allow;
            out.push(Grant {
                action: action.as_str().to_string(),
                resource: shown,
                effect,
                rules: d.reasons().map(str::to_string).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_collected_outside_comments() {
        let mut s = BTreeSet::new();
        collect_strings(
            "// \"not this\"\npermit (principal, action, resource) when { resource.path like \"receipts/*\" }; // \"nor this\"\n[\"a\\\"b\", \"c\"]",
            &mut s,
        );
        let v: Vec<&str> = s.iter().map(String::as_str).collect();
        assert_eq!(v, ["a\"b", "c", "receipts/*"]);
    }

    #[test]
    fn endpoints_named_by_rules_are_found_with_their_scheme_and_port() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("org")).unwrap();
        std::fs::create_dir_all(d.path().join("tests")).unwrap();
        std::fs::write(
            d.path().join("org/a.cedar"),
            "permit (principal, action, resource) when { resource.scheme == \"http\" && \
             resource.host == \"127.0.0.1\" && resource.port == 11434 };\n\
             // permit (principal, action, resource) when { resource.host == \"commented.example\" };\n\
             permit (principal, action, resource) when { resource.host == \"llm.example\" };",
        )
        .unwrap();
        std::fs::write(
            d.path().join("tests/t.cedar"),
            "permit (principal, action, resource) when { resource.host == \"test.example\" };",
        )
        .unwrap();
        let mut got: Vec<String> = policy_endpoints(d.path())
            .iter()
            .map(ToString::to_string)
            .collect();
        got.sort();
        assert_eq!(got, ["http://127.0.0.1:11434", "https://llm.example:443"]);
    }

    #[test]
    fn patterns_are_probed_by_an_example() {
        assert_eq!(example("receipts/*"), "receipts/example");
        assert_eq!(example("."), ".");
    }
}
