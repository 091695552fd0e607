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
    /// `A || B || …`: holds when any of them may (the templates' `path ==
    /// ".stele" || path like ".stele/*"` is one).
    AnyOf(Vec<Guard>),
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
            Guard::AnyOf(alternatives) => alternatives.iter().any(|g| g.may_hold(resource)),
        }
    }
}

/// The string attributes of a resource, as the schema defines them.
///
/// `address` and `class` of a host are not listed: they are optional (a
/// guard on them must not skip a policy Cedar would find in error), and
/// `address` is not stored as text.
fn resource_attr<'a>(resource: &'a Resource, attr: &str) -> Option<&'a str> {
    match (resource, attr) {
        (Resource::File(p), "path") => Some(p.as_str()),
        (Resource::Program(p), "name") => Some(p.name()),
        (Resource::Program(p), "path") => Some(p.path()),
        (Resource::Host(h), "name") => Some(h.name()),
        (Resource::Host(h), "scheme") => Some(h.scheme()),
        (Resource::Model { provider, .. }, "provider") => Some(provider),
        (Resource::Model { name, .. }, "name") => Some(name),
        (Resource::Model { endpoint, .. }, "scheme") => Some(endpoint.scheme()),
        (Resource::Model { endpoint, .. }, "host") => Some(endpoint.host()),
        (Resource::McpServer { name }, "name") | (Resource::Tool { name }, "name") => Some(name),
        (Resource::McpTool { server, .. }, "server") => Some(server),
        (Resource::McpTool { tool, .. }, "tool") => Some(tool),
        _ => None,
    }
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
    flatten(e, "&&", out);
}

/// The operands of a chain of the binary operator `op` (`&&` or `||`).
fn flatten<'a>(e: &'a Value, op: &str, out: &mut Vec<&'a Value>) {
    match e.get(op) {
        Some(node) => {
            if let (Some(l), Some(r)) = (node.get("left"), node.get("right")) {
                flatten(l, op, out);
                flatten(r, op, out);
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
    if e.get("||").is_some() {
        let mut alternatives = Vec::new();
        flatten(e, "||", &mut alternatives);
        let mut guards = Vec::with_capacity(alternatives.len());
        let mut useful = true;
        for a in alternatives {
            // Every alternative must be error-free (Cedar may evaluate each);
            // one that always may hold makes the whole unhelpful.
            match guard_of(a)? {
                Some(g) => guards.push(g),
                None => useful = false,
            }
        }
        return Some(useful.then_some(Guard::AnyOf(guards)));
    }
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(&'static str),
}

/// Tokenise Cedar source well enough to find guards. Returns `None` on
/// anything unexpected (then no guards are used). String tokens keep their
/// raw contents; a string containing a backslash is never used as a guard
/// value, so escapes need no decoding.
fn tokenize(src: &str) -> Option<Vec<Tok>> {
    const PUNCT: [&str; 22] = [
        "&&", "||", "==", "!=", "<=", ">=", "::", "(", ")", "{", "}", "[", "]", ",", ";", ".", "@",
        "<", ">", "!", "-", "+",
    ];
    let mut out = Vec::new();
    let mut rest = src;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(out);
        }
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
            continue;
        }
        if let Some(r) = rest.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in r.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end?;
            out.push(Tok::Str(r.get(..end)?.to_owned()));
            rest = r.get(end + 1..)?;
            continue;
        }
        let c = rest.chars().next()?;
        if c.is_alphanumeric() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(Tok::Ident(rest.get(..end)?.to_owned()));
            rest = rest.get(end..)?;
            continue;
        }
        let p = PUNCT.iter().find(|p| rest.starts_with(**p))?;
        out.push(Tok::Punct(p));
        rest = rest.get(p.len()..)?;
    }
}

fn is(t: Option<&Tok>, p: &str) -> bool {
    matches!(t, Some(Tok::Punct(q)) if *q == p)
}

/// Index just past the bracket group opening at `open`.
fn skip_group(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct("(" | "[" | "{") => depth += 1,
            Tok::Punct(")" | "]" | "}") => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Guards read from the policy's source text, with the same rules as
/// [`guards`] (which reads Cedar's JSON form and is the reference in tests).
/// Reading text avoids re-parsing every policy at load time.
pub(crate) fn guards_from_text(src: &str) -> Vec<Guard> {
    text_guards(src).unwrap_or_default()
}

fn text_guards(src: &str) -> Option<Vec<Guard>> {
    let toks = tokenize(src)?;
    let mut i = 0;
    // Annotations: @name or @name("…").
    while is(toks.get(i), "@") {
        i += 2;
        if is(toks.get(i), "(") {
            i = skip_group(&toks, i)?;
        }
    }
    match toks.get(i) {
        Some(Tok::Ident(e)) if e == "permit" || e == "forbid" => i += 1,
        _ => return None,
    }
    if !is(toks.get(i), "(") {
        return None;
    }
    i = skip_group(&toks, i)?;
    if toks.get(i) != Some(&Tok::Ident("when".into())) || !is(toks.get(i + 1), "{") {
        return Some(Vec::new());
    }
    let end = skip_group(&toks, i + 1)?;
    let body = toks.get(i + 2..end - 1)?;
    if matches!(body.first(), Some(Tok::Ident(k)) if k == "if") {
        return Some(Vec::new());
    }
    // Split at top-level `&&`; any top-level `||` means no conjunct is necessary.
    let mut conjuncts: Vec<&[Tok]> = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (j, t) in body.iter().enumerate() {
        match t {
            Tok::Punct("(" | "[" | "{") => depth += 1,
            Tok::Punct(")" | "]" | "}") => depth = depth.checked_sub(1)?,
            Tok::Punct("||") if depth == 0 => return Some(Vec::new()),
            Tok::Punct("&&") if depth == 0 => {
                conjuncts.push(body.get(start..j)?);
                start = j + 1;
            }
            _ => {}
        }
    }
    conjuncts.push(body.get(start..)?);
    let mut out = Vec::new();
    for c in conjuncts {
        match text_guard_of(c) {
            Some(Some(g)) => out.push(g),
            Some(None) => {}
            None => break,
        }
    }
    Some(out)
}

fn res_attr(t: &[Tok]) -> Option<String> {
    match t {
        [Tok::Ident(r), Tok::Punct("."), Tok::Ident(a)] if r == "resource" => Some(a.clone()),
        _ => None,
    }
}

fn clean(s: &str) -> Option<String> {
    (!s.contains('\\')).then(|| s.to_owned())
}

/// Same contract as [`guard_of`], on tokens.
fn text_guard_of(c: &[Tok]) -> Option<Option<Guard>> {
    match c {
        [a @ .., Tok::Ident(op), Tok::Str(pat)] if op == "like" && a.len() == 3 => {
            let attr = res_attr(a)?;
            let literal = pat.split(['*', '\\']).next().unwrap_or("");
            if literal.is_empty() {
                return Some(None);
            }
            Some(Some(Guard::Prefix {
                attr,
                prefix: literal.to_owned(),
            }))
        }
        [a @ .., Tok::Punct("=="), Tok::Str(v)] if a.len() == 3 => {
            let attr = res_attr(a)?;
            Some(clean(v).map(|v| Guard::OneOf {
                attr,
                values: vec![v],
            }))
        }
        [Tok::Str(v), Tok::Punct("=="), a @ ..] if a.len() == 3 => {
            let attr = res_attr(a)?;
            Some(clean(v).map(|v| Guard::OneOf {
                attr,
                values: vec![v],
            }))
        }
        [Tok::Punct("["), rest @ ..] => {
            let close = rest.iter().position(|t| is(Some(t), "]"))?;
            let (items, tail) = rest.split_at(close);
            let attr = match tail {
                [Tok::Punct("]"), Tok::Punct("."), Tok::Ident(m), Tok::Punct("("), a @ .., Tok::Punct(")")]
                    if m == "contains" && a.len() == 3 =>
                {
                    res_attr(a)?
                }
                _ => return None,
            };
            let mut values = Vec::new();
            for (k, t) in items.iter().enumerate() {
                match (k % 2, t) {
                    (0, Tok::Str(s)) => values.push(s),
                    (1, Tok::Punct(",")) => {}
                    _ => return None,
                }
            }
            if values.is_empty() {
                return None;
            }
            match values.iter().map(|s| clean(s)).collect::<Option<Vec<_>>>() {
                Some(values) => Some(Some(Guard::OneOf { attr, values })),
                None => Some(None),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// Guards via Cedar's JSON form, checked against the text reader.
    fn g(src: &str) -> Vec<Guard> {
        let from_est = guards(&est(&Policy::from_str(src).unwrap()).unwrap());
        // Every text guard must be implied by a guard Cedar's form yields
        // (equal, or a shorter prefix when escapes are involved).
        for t in guards_from_text(src) {
            let implied = from_est.iter().any(|e| match (&t, e) {
                (Guard::Prefix { attr: a, prefix: p }, Guard::Prefix { attr: b, prefix: q }) => {
                    a == b && q.starts_with(p.as_str())
                }
                (x, y) => x == y,
            });
            assert!(
                implied,
                "text guard {t:?} not implied by {from_est:?} for {src}"
            );
        }
        from_est
    }

    #[test]
    fn text_reader_agrees_with_cedar_on_tricky_policies() {
        for src in [
            r#"@id("x") @ask permit (principal, action, resource is File) when { resource.path like "a*" };"#,
            r#"permit (principal, action, resource is File) when { resource.path like "a\*b*" && resource.path == "q\"x" };"#,
            r#"permit (principal, action, resource is File) when { (resource.path like "a*") && resource.path like "b*" };"#,
            r#"permit (principal, action, resource is File) when { resource.path like "a*" && resource.path like "b*" || true };"#,
            r#"permit (principal, action, resource is File) when { if true then resource.path like "a*" else false };"#,
            r#"permit (principal, action, resource is File) when { resource.path like "*a" && "x" == resource.path && ["a", "b",].contains(resource.path) };"#,
            r#"permit (principal, action, resource is File) when { {a: 1}.a == 1 && resource.path == "z" };"#,
            r#"permit (principal, action, resource is File) when { resource.path like "a*" } when { resource.path == "b" };"#,
            r#"permit (principal, action, resource is File) unless { resource.path like "a*" } when { resource.path == "b" };"#,
            "// c \"x\" && ||\npermit (principal, action, resource is File) when { resource.path // c || \n == \"a\" };",
            r#"permit (principal, action, resource is File) when { resource.path == "a" && context.argv.contains("x") && resource.path like "b*" };"#,
            r#"permit (principal, action, resource is File) when { resource["path"] == "a" };"#,
            r#"permit (principal, action, resource is File) when { !(resource.path like "a*") && resource.path like "dir/*" };"#,
            r#"permit (principal == User::"a", action in [Action::"file.read"], resource is File) when { resource.path like "dir/*" };"#,
        ] {
            if Policy::from_str(src).is_ok() {
                g(src);
            }
        }
    }

    #[test]
    fn reads_leading_guards() {
        let v = g(r#"permit (principal, action, resource is File)
            when { resource.path like "dir/a*b" && ["x"].contains(resource.path) && context.argv.contains("q") && resource.path == "z" };"#);
        assert_eq!(
            v,
            vec![
                Guard::Prefix {
                    attr: "path".into(),
                    prefix: "dir/a".into()
                },
                Guard::OneOf {
                    attr: "path".into(),
                    values: vec!["x".into()]
                },
            ]
        );
    }

    #[test]
    fn no_guards_after_an_unknown_conjunct_or_from_unless() {
        assert!(g(r#"permit (principal, action, resource is File) when { context.args.size_bytes > 1 && resource.path == "a" };"#).is_empty());
        assert!(g(
            r#"permit (principal, action, resource is File) unless { resource.path == "a" };"#
        )
        .is_empty());
        // A `||` with an operand that could raise an error gives no guard.
        assert!(g(r#"permit (principal, action, resource is File) when { resource.path == "a" || context.args.size_bytes > 1 };"#).is_empty());
    }

    #[test]
    fn a_disjunction_of_error_free_shapes_is_one_guard() {
        let path = |p: &str| Resource::File(crate::canonical::canonical_path(p).unwrap());
        let v = g(
            r#"forbid (principal, action, resource is File) when { resource.path == ".stele" || resource.path like ".stele/*" };"#,
        );
        assert_eq!(
            v,
            vec![Guard::AnyOf(vec![
                Guard::OneOf {
                    attr: "path".into(),
                    values: vec![".stele".into()]
                },
                Guard::Prefix {
                    attr: "path".into(),
                    prefix: ".stele/".into()
                },
            ])]
        );
        assert!(v[0].may_hold(&path(".stele")));
        assert!(v[0].may_hold(&path(".stele/keys/log.key")));
        assert!(!v[0].may_hold(&path(".stelex")));
        assert!(!v[0].may_hold(&path("in/0/f1.txt")));
        // Nested and parenthesised chains flatten; an operand with no prefix
        // makes the whole unhelpful but still error-free, so later conjuncts
        // still count.
        let v = g(
            r#"forbid (principal, action, resource is File) when { (resource.path == "a" || (resource.path like "b/*" || ["c"].contains(resource.path))) && resource.path like "*x" };"#,
        );
        assert!(
            matches!(&v[..], [Guard::AnyOf(alts)] if alts.len() == 3),
            "{v:?}"
        );
        // `&&` binds tighter: an operand that is a conjunction is not read.
        assert!(g(r#"forbid (principal, action, resource is File) when { resource.path == "a" && resource.path like "*x" || resource.path == "z" };"#).is_empty());
        let v = g(
            r#"forbid (principal, action, resource is File) when { (resource.path like "*a" || resource.path == "b") && resource.path like "d/*" };"#,
        );
        assert_eq!(
            v,
            vec![Guard::Prefix {
                attr: "path".into(),
                prefix: "d/".into()
            }]
        );
        // An attribute the resource does not have may hold (Cedar must
        // raise the error itself).
        let v = g(
            r#"forbid (principal, action, resource) when { resource.path == "a" || resource.name == "b" };"#,
        );
        assert!(v[0].may_hold(&path("q")));
    }
}
