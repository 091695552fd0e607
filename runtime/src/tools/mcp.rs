//! MCP tool calls through the gate: an `mcp.call` decision on the tool
//! (server + original name) with the arguments typed into the policy
//! context where the tool's schema allows, the approval text showing the
//! arguments, the intent logged with the arguments and the result with the
//! full answer as payloads.

use std::sync::Arc;

use serde_json::{Map, Value};
use stele_audit::{Disclosure, Outcome, PayloadInput, Status};
use stele_policy::canonical::{canonical_path, CanonicalHost};
use stele_policy::{Action, Resource, ToolArgs};

use super::Ran;
use crate::gate::{ActionRequest, Authorization, Gate, GateError};
use crate::mcp::{McpError, McpRegistry, OfferedTool};

/// How much of the arguments an approver is shown (the whole arguments are
/// in the log; the shown text is hashed there too).
const SHOWN_ARGS: usize = 4096;

/// The declared JSON type of a property in an input schema.
fn declared<'a>(schema: &'a Value, key: &str) -> Option<&'a str> {
    schema.get("properties")?.get(key)?.get("type")?.as_str()
}

/// The endpoint of a URL: scheme, host (after any user info) and port.
fn url_endpoint(url: &str) -> Option<CanonicalHost> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    CanonicalHost::parse(&format!("{scheme}://{host_port}")).ok()
}

/// The typed subset of `args` policies see as `context.args`: a value is
/// taken only when the tool's schema declares the property with that type
/// and the value has it (and, for paths and hosts, is canonical).
pub fn typed_args(schema: &Value, args: &Map<String, Value>) -> ToolArgs {
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
        t.host = stele_policy::canonical::canonical_host_name(h).ok();
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

/// The text of a tool result for the model: its text parts, other parts
/// summarised, structured content when there is no text.
pub fn result_text(result: &Value) -> String {
    let mut parts = Vec::new();
    for c in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match c.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(
                c.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            Some(kind) => parts.push(format!(
                "[{kind} content{}]",
                c.get("mimeType")
                    .and_then(Value::as_str)
                    .map(|m| format!(" {m}"))
                    .unwrap_or_default()
            )),
            None => parts.push("[unrecognised content]".into()),
        }
    }
    if parts.is_empty() {
        if let Some(s) = result.get("structuredContent") {
            parts.push(s.to_string());
        }
    }
    parts.join("\n")
}

fn shown(tool: &OfferedTool, input: &Value) -> String {
    let pretty = serde_json::to_string_pretty(input).unwrap_or_default();
    let mut cut = pretty.len().min(SHOWN_ARGS);
    while !pretty.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = if cut < pretty.len() {
        format!("\n[… {} more bytes]", pretty.len() - cut)
    } else {
        String::new()
    };
    format!(
        "MCP call\nServer:    {}\nTool:      {}\nArguments: {}{more}",
        tool.server,
        tool.tool,
        &pretty[..cut]
    )
}

/// Decide, log and run one MCP tool call.
pub(super) fn call(
    gate: &Arc<Gate>,
    registry: &McpRegistry,
    call_id: &str,
    tool: &OfferedTool,
    input: &Value,
) -> Result<Ran, GateError> {
    let arguments = match input {
        Value::Object(m) => Some(m.clone()),
        Value::Null => None,
        _ => None,
    };
    let mut req = ActionRequest::new(
        Action::McpCall,
        Resource::McpTool {
            server: tool.server.clone(),
            tool: tool.tool.clone(),
        },
    );
    req.args = typed_args(
        &tool.input_schema,
        arguments.as_ref().unwrap_or(&Map::new()),
    );
    req.payloads.push(PayloadInput {
        role: "args".into(),
        media: "application/json".into(),
        body: input.to_string().into_bytes(),
        disclosure: Disclosure::CommitmentOnly,
    });
    req.data = Some(serde_json::json!({
        "tool_use_id": call_id,
        "model_name": tool.spec.name,
    }));
    req.shown = Some(shown(tool, input));
    let permit = match gate.authorize(req)? {
        Authorization::Permitted(p) => p,
        Authorization::Denied(d) => return Ok(Ran::denied(&d)),
    };
    let ran = if !matches!(input, Value::Object(_) | Value::Null) {
        Err(McpError::Malformed(
            "the arguments must be a JSON object".into(),
        ))
    } else {
        registry.call(gate, tool, arguments)?
    };
    let (ran, payloads, data) = match ran {
        Ok(result) => {
            // A server's own credentials never reach the model or the log.
            let scrub = |t: &str| registry.scrub(&tool.server, t);
            let body = scrub(&result.to_string()).into_bytes();
            let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
            let text = scrub(&result_text(&result));
            let mut r = if is_error {
                Ran::error(text)
            } else {
                Ran::ok(text)
            };
            r.outcome.bytes_out = Some(body.len() as u64);
            let data = serde_json::json!({
                "tool_use_id": call_id,
                "is_error": is_error,
                "result_bytes": body.len(),
            });
            let p = vec![PayloadInput {
                role: "result".into(),
                media: "application/json".into(),
                body,
                disclosure: Disclosure::CommitmentOnly,
            }];
            (r, p, data)
        }
        Err(e) => {
            let mut r = Ran::error(format!("MCP call failed: {e}"));
            if matches!(e, McpError::Timeout(_)) {
                r.outcome.status = Status::Timeout;
            }
            let data = serde_json::json!({ "tool_use_id": call_id, "error": e.kind() });
            (r, Vec::new(), data)
        }
    };
    let outcome: Outcome = ran.outcome.clone();
    gate.complete(permit, outcome, payloads, Some(data))?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_are_typed_only_where_the_schema_says_so() {
        let schema = json!({"type":"object","properties":{
            "path":{"type":"string"}, "url":{"type":"string"}, "recursive":{"type":"boolean"},
            "overwrite":{"type":"string"}}});
        let args = json!({"path":"a/../b.txt","url":"https://user@Example.com:8443/x?q=1",
            "recursive":true,"overwrite":true,"host":"evil.example"});
        let t = typed_args(&schema, args.as_object().unwrap());
        assert_eq!(t.path.as_ref().map(|p| p.as_str()), Some("b.txt"));
        assert_eq!(t.host.as_deref(), Some("example.com"));
        assert_eq!(t.port, Some(8443));
        assert_eq!(t.recursive, Some(true));
        assert_eq!(t.overwrite, None, "declared string, given bool");
        assert!(t.size_bytes.unwrap() > 10);
    }

    #[test]
    fn result_text_takes_text_parts() {
        let r = json!({"content":[{"type":"text","text":"a"},{"type":"image","mimeType":"image/png","data":"…"}]});
        assert_eq!(result_text(&r), "a\n[image content image/png]");
        assert_eq!(
            result_text(&json!({"structuredContent":{"x":1}})),
            "{\"x\":1}"
        );
    }
}
