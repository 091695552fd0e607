//! Guards: cheap necessary conditions read off a policy's `when` clause, so
//! a decision only hands Cedar the policies that can possibly be satisfied.
//!
//! A guard is taken from the leading conjuncts of the first condition, and
//! only while those conjuncts are of a shape that cannot raise an error
//! (`resource.ATTR like "lit*…"`, `resource.ATTR == "lit"`,
//! `["a", "b"].contains(resource.ATTR)`). Cedar evaluates `&&` left to
//! right and stops at the first false operand, so when a guard is false the
//! policy is not satisfied *and* raises no error: skipping it is exactly
//! what Cedar would conclude. Anything not understood yields no guard, and
//! the policy is always evaluated. A differential test checks decisions
//! with and without guards agree.

use cedar_policy::Policy;
use serde_json::Value;

use crate::request::Resource;

/// A necessary condition on one string attribute of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Guard {
    /// `resource.attr like "prefix*…"`: the value starts with `prefix`.
    Prefix { attr: String, prefix: String },
    /// `resource.attr == "v"` or `[…].contains(resource.attr)`.
    OneOf { attr: String, values: Vec<String> },
}

impl Guard {
    /// Whether the guard may hold for `resource`. Unknown attributes say
    /// yes (conservative).
    pub fn may_hold(&self, resource: &Resource) -> bool {
        match self {
            Guard::Prefix { attr, prefix } => {
                resource_attr(resource, attr).is_none_or(|v| v.starts_with(prefix.as_str()))
            }
            Guard::OneOf { attr, values } => {
                resource_attr(resource, attr).is_none_or(|v| values.iter().any(|x| x == v))
            }
        }
    }
}

/// The string attributes of a resource, as the schema defines them.
fn resource_attr<'a>(resource: &'a Resource, attr: &str) -> Option<&'a str> {
    match (resource, attr) {
        (Resource::File(p), "path") => Some(p.as_str()),
        (Resource::Program(p), "name") => Some(p.name()),
        (Resource::Program(p), "path") => Some(p.path()),
        (Resource::Host(h), "name") => Some(h.name()),
        (Resource::Host(h), "scheme") => Some(h.scheme()),
        (Resource::Model { provider, .. }, "provider") => Some(provider),
        (Resource::Model { name, .. }, "name") => Some(name),
        (Resource::McpServer { name }, "name") | (Resource::Tool { name }, "name") => Some(name),
        (Resource::McpTool { server, .. }, "server") => Some(server),
        (Resource::McpTool { tool, .. }, "tool") => Some(tool),
        _ => None,
    }
}

/// Whether the policy has no `when`/`unless` at all (then a matching scope
/// means it is satisfied, and it cannot error).
pub(crate) fn unconditional(est: &Value) -> bool {
    est.get("conditions")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
}

/// The policy's JSON (EST) form, if it can be produced.
pub(crate) fn est(policy: &Policy) -> Option<Value> {
    policy.to_json().ok()
}

/// Guards from the leading, error-free conjuncts of the first condition
/// (only if it is a `when`).
pub(crate) fn guards(est: &Value) -> Vec<Guard> {
    let Some(first) = est
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Vec::new();
    };
    if first.get("kind").and_then(Value::as_str) != Some("when") {
        return Vec::new();
    }
    let Some(body) = first.get("body") else {
        return Vec::new();
    };
    let mut conjuncts = Vec::new();
    flatten_and(body, &mut conjuncts);
    let mut out = Vec::new();
    for c in conjuncts {
        match guard_of(c) {
            Some(Some(g)) => out.push(g),
            // Error-free but not useful (e.g. `like "*x"`): keep going.
            Some(None) => {}
            // Could error or is not understood: later conjuncts are not safe.
            None => break,
        }
    }
    out
}

fn flatten_and<'a>(e: &'a Value, out: &mut Vec<&'a Value>) {
    match e.get("&&") {
        Some(and) => {
            if let (Some(l), Some(r)) = (and.get("left"), and.get("right")) {
                flatten_and(l, out);
                flatten_and(r, out);
            } else {
                out.push(e);
            }
        }
        None => out.push(e),
    }
}

/// `resource.ATTR` → `ATTR`.
fn resource_attr_expr(e: &Value) -> Option<String> {
    let dot = e.get(".")?;
    let var = dot.get("left")?.get("Var")?.as_str()?;
    if var != "resource" {
        return None;
    }
    Some(dot.get("attr")?.as_str()?.to_owned())
}

fn string_value(e: &Value) -> Option<String> {
    e.get("Value")?.as_str().map(str::to_owned)
}

/// `None`: not a known error-free shape. `Some(None)`: error-free, no guard.
fn guard_of(e: &Value) -> Option<Option<Guard>> {
    if let Some(like) = e.get("like") {
        let attr = resource_attr_expr(like.get("left")?)?;
        let mut prefix = String::new();
        for piece in like.get("pattern")?.as_array()? {
            match piece.get("Literal").and_then(Value::as_str) {
                Some(lit) => prefix.push_str(lit),
                None => break,
            }
        }
        if prefix.is_empty() {
            return Some(None);
        }
        return Some(Some(Guard::Prefix { attr, prefix }));
    }
    if let Some(eq) = e.get("==") {
        let (l, r) = (eq.get("left")?, eq.get("right")?);
        let (attr, v) = match (resource_attr_expr(l), resource_attr_expr(r)) {
            (Some(a), None) => (a, string_value(r)?),
            (None, Some(a)) => (a, string_value(l)?),
            _ => return None,
        };
        return Some(Some(Guard::OneOf {
            attr,
            values: vec![v],
        }));
    }
    if let Some(contains) = e.get("contains") {
        let attr = resource_attr_expr(contains.get("right")?)?;
        let set = contains.get("left")?.get("Set")?.as_array()?;
        let values = set.iter().map(string_value).collect::<Option<Vec<_>>>()?;
        return Some(Some(Guard::OneOf { attr, values }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn g(src: &str) -> Vec<Guard> {
        guards(&est(&Policy::from_str(src).unwrap()).unwrap())
    }

    #[test]
    fn reads_leading_guards() {
        let v = g(r#"permit (principal, action, resource is File)
            when { resource.path like "dir/a*b" && ["x"].contains(resource.path) && context.argv.contains("q") && resource.path == "z" };"#);
        assert_eq!(
            v,
            vec![
                Guard::Prefix { attr: "path".into(), prefix: "dir/a".into() },
                Guard::OneOf { attr: "path".into(), values: vec!["x".into()] },
            ]
        );
    }

    #[test]
    fn no_guards_after_an_unknown_conjunct_or_from_unless() {
        assert!(g(r#"permit (principal, action, resource is File) when { context.args.size_bytes > 1 && resource.path == "a" };"#).is_empty());
        assert!(g(r#"permit (principal, action, resource is File) unless { resource.path == "a" };"#).is_empty());
        assert!(g(r#"permit (principal, action, resource is File) when { resource.path == "a" || resource.path == "b" };"#).is_empty());
    }
}
