//! The arguments of an MCP call as policies see them (`context.args`).
//!
//! Only what the tool's input schema declares is taken, and only with the
//! declared type: a value of another type is left out, never coerced. Three
//! views are computed:
//!
//! - the fixed typed subset every tool shares ([`ToolArgs`]: `path` as a
//!   canonical relative path, `host`/`port` from `host`, `url` or `port`,
//!   `recursive`, `overwrite`, `size_bytes`);
//! - every top-level scalar argument (schema type `string`, `integer`,
//!   `number`, `boolean`), by a safe name ([`CallArgs::values`]);
//! - every string argument that is an absolute path, lexically normalised
//!   ([`CallArgs::abs_paths`]), so that a policy can confine a server that
//!   takes host paths (as `server-filesystem` does) without being fooled by
//!   `..`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use stele_policy::canonical::{canonical_host_name, canonical_path, CanonicalHost};
use stele_policy::ToolArgs;

/// Longest string value given to policies; longer ones are left out (they
/// are in the log, not in the decision).
pub const MAX_TEXT_BYTES: usize = 1024;

/// Most arguments given to policies by name; the rest (in name order) are left out.
pub const MAX_VALUES: usize = 64;

/// Longest argument name (after making it safe).
const MAX_NAME: usize = 64;

/// Words Cedar reserves: never used as argument names.
const RESERVED: [&str; 14] = [
    "true",
    "false",
    "if",
    "then",
    "else",
    "in",
    "like",
    "has",
    "is",
    "principal",
    "action",
    "resource",
    "context",
    "__cedar",
];

/// One scalar argument, typed per the tool's input schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A `string` argument.
    Text(String),
    /// An `integer` argument, or a `number` argument with an integral value.
    Number(i64),
    /// A `boolean` argument.
    Flag(bool),
}

/// The arguments of one MCP call as policies see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallArgs {
    /// The fixed typed subset shared with the built-in tools.
    pub typed: ToolArgs,
    /// Every top-level scalar argument whose declared type it has, by safe
    /// name: ASCII letters, digits and `_`, not starting with a digit, at
    /// most 64 characters, not a Cedar keyword; other characters become `_`.
    /// Names that become equal are all left out (a policy never sees one
    /// argument's value under another's name).
    pub values: BTreeMap<String, ArgValue>,
    /// Every string argument (by the same safe name) whose value is an
    /// absolute path, lexically normalised (`.`, `..`, repeated `/`
    /// resolved; symlinks are not, stele does not look at the server's
    /// files). The raw value stays in [`CallArgs::values`].
    pub abs_paths: BTreeMap<String, String>,
}

/// The declared JSON type of a property in an input schema: `"string"`,
/// or `["string", "null"]` (one type besides `null`).
fn declared<'a>(schema: &'a Value, key: &str) -> Option<&'a str> {
    match schema.get("properties")?.get(key)?.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => {
            let mut ts = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null");
            let t = ts.next()?;
            ts.next().is_none().then_some(t)
        }
        _ => None,
    }
}

/// The endpoint of a URL: scheme, host (after any user info) and port.
fn url_endpoint(url: &str) -> Option<CanonicalHost> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    CanonicalHost::parse(&format!("{scheme}://{host_port}")).ok()
}

/// `name` made safe for policies, if it can be.
pub fn safe_name(name: &str) -> Option<String> {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && !RESERVED.contains(&s.as_str())
        && s.chars().any(|c| c != '_');
    ok.then_some(s)
}

/// An absolute path with `.`, `..` and repeated separators resolved
/// lexically (`..` at the root stays at the root); `None` for a relative
/// path or one containing NUL.
pub fn normalise_abs_path(p: &str) -> Option<String> {
    if !p.starts_with('/') || p.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// The scalar value of `v` if it has the declared type `ty`.
fn scalar(ty: &str, v: &Value) -> Option<ArgValue> {
    match (ty, v) {
        ("string", Value::String(s)) if s.len() <= MAX_TEXT_BYTES => {
            Some(ArgValue::Text(s.clone()))
        }
        ("boolean", Value::Bool(b)) => Some(ArgValue::Flag(*b)),
        ("integer" | "number", Value::Number(n)) => {
            n.as_i64().map(ArgValue::Number).or_else(|| {
                // 3.0 is an integral number; 3.5 and 1e300 have no Long.
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| ArgValue::Number(f as i64))
            })
        }
        _ => None,
    }
}

/// The fixed typed subset of `args` (see [`CallArgs::typed`]).
fn fixed(schema: &Value, args: &Map<String, Value>) -> ToolArgs {
    let mut t = ToolArgs::default();
    let string = |k: &str| {
        (declared(schema, k) == Some("string"))
            .then(|| args.get(k).and_then(Value::as_str))
            .flatten()
    };
    let boolean = |k: &str| {
        (declared(schema, k) == Some("boolean"))
            .then(|| args.get(k).and_then(Value::as_bool))
            .flatten()
    };
    if let Some(p) = string("path") {
        t.path = canonical_path(p).ok();
    }
    if let Some(h) = string("host") {
        t.host = canonical_host_name(h).ok();
    }
    if let Some(h) = string("url").and_then(url_endpoint) {
        t.host = Some(h.name().to_string());
        t.port = Some(h.port());
    }
    if declared(schema, "port") == Some("integer") {
        if let Some(p) = args.get("port").and_then(Value::as_u64) {
            t.port = u16::try_from(p).ok();
        }
    }
    t.recursive = boolean("recursive");
    t.overwrite = boolean("overwrite");
    t.size_bytes = Some(Value::Object(args.clone()).to_string().len() as u64);
    t
}

/// The arguments of a call to a tool with input schema `schema`, as
/// policies see them.
pub fn call_args(schema: &Value, args: &Map<String, Value>) -> CallArgs {
    // Safe names two declared properties share belong to neither.
    let mut declared_as: BTreeMap<String, u32> = BTreeMap::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    for k in properties.into_iter().flat_map(|p| p.keys()) {
        if let Some(name) = safe_name(k) {
            *declared_as.entry(name).or_default() += 1;
        }
    }
    let mut named: BTreeMap<String, ArgValue> = BTreeMap::new();
    for (k, v) in args {
        let Some(name) = safe_name(k).filter(|n| declared_as.get(n) == Some(&1)) else {
            continue;
        };
        if let Some(value) = declared(schema, k).and_then(|ty| scalar(ty, v)) {
            named.insert(name, value);
        }
    }
    let mut out = CallArgs {
        typed: fixed(schema, args),
        ..CallArgs::default()
    };
    for (name, value) in named.into_iter().take(MAX_VALUES) {
        if let ArgValue::Text(s) = &value {
            if let Some(p) = normalise_abs_path(s) {
                out.abs_paths.insert(name.clone(), p);
            }
        }
        out.values.insert(name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_fixed_subset_is_typed_only_where_the_schema_says_so() {
        let schema = json!({"type":"object","properties":{
            "path":{"type":"string"}, "url":{"type":"string"}, "recursive":{"type":"boolean"},
            "overwrite":{"type":"string"}}});
        let a = args(
            json!({"path":"a/../b.txt","url":"https://user@Example.com:8443/x?q=1",
            "recursive":true,"overwrite":true,"host":"evil.example"}),
        );
        let t = call_args(&schema, &a).typed;
        assert_eq!(t.path.as_ref().map(|p| p.as_str()), Some("b.txt"));
        assert_eq!(t.host.as_deref(), Some("example.com"));
        assert_eq!(t.port, Some(8443));
        assert_eq!(t.recursive, Some(true));
        assert_eq!(t.overwrite, None, "declared string, given bool");
        assert!(t.size_bytes.unwrap_or_default() > 10);
    }

    #[test]
    fn every_declared_scalar_is_given_with_its_type() {
        let schema = json!({"type":"object","properties":{
            "to":{"type":"string"}, "count":{"type":"integer"}, "ratio":{"type":"number"},
            "whole":{"type":"number"}, "dryRun":{"type":"boolean"}, "note":{"type":["string","null"]},
            "tags":{"type":"array"}, "opts":{"type":"object"}, "n":{"type":"integer"}}});
        let a = args(
            json!({"to":"cfo@example.com","count":3,"ratio":0.5,"whole":2.0,
            "dryRun":false,"note":"hi","tags":["a"],"opts":{"x":1},"n":"7","undeclared":"x"}),
        );
        let c = call_args(&schema, &a);
        let want: BTreeMap<String, ArgValue> = [
            ("count", ArgValue::Number(3)),
            ("dryRun", ArgValue::Flag(false)),
            ("note", ArgValue::Text("hi".into())),
            ("to", ArgValue::Text("cfo@example.com".into())),
            ("whole", ArgValue::Number(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            c.values, want,
            "no arrays, objects, fractions, wrong types or undeclared"
        );
        assert!(c.abs_paths.is_empty());
    }

    #[test]
    fn absolute_paths_are_kept_normalised_beside_the_raw_value() {
        let schema = json!({"type":"object","properties":{
            "path":{"type":"string"}, "source":{"type":"string"}, "destination":{"type":"string"}}});
        let a = args(json!({"path":"/srv/shared/../../etc//passwd",
            "source":"/srv/shared/./a.txt","destination":"b.txt"}));
        let c = call_args(&schema, &a);
        assert_eq!(c.typed.path, None, "not a workspace path");
        assert_eq!(c.abs_paths["path"], "/etc/passwd");
        assert_eq!(c.abs_paths["source"], "/srv/shared/a.txt");
        assert!(!c.abs_paths.contains_key("destination"));
        assert_eq!(
            c.values["path"],
            ArgValue::Text("/srv/shared/../../etc//passwd".into())
        );
        assert_eq!(normalise_abs_path("/../.."), Some("/".into()));
        assert_eq!(normalise_abs_path("a/b"), None);
        assert_eq!(normalise_abs_path("/a\0b"), None);
    }

    #[test]
    fn names_are_made_safe_and_collisions_left_out() {
        assert_eq!(safe_name("file-path").as_deref(), Some("file_path"));
        assert_eq!(safe_name("2fa").as_deref(), Some("_2fa"));
        assert_eq!(safe_name("context"), None);
        assert_eq!(safe_name("--"), None);
        assert_eq!(safe_name(&"x".repeat(65)), None);
        let schema = json!({"type":"object","properties":{
            "a-b":{"type":"string"}, "a_b":{"type":"string"}, "c":{"type":"string"}}});
        let a = args(json!({"a-b":"one","a_b":"two","c":"x".repeat(MAX_TEXT_BYTES + 1)}));
        let c = call_args(&schema, &a);
        assert!(c.values.is_empty(), "{:?}", c.values);
        // Declared twice: left out even when only one of them is given.
        let c = call_args(&schema, &args(json!({"a-b":"one"})));
        assert!(c.values.is_empty(), "{:?}", c.values);
    }
}
