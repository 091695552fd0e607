//! MCP tool calls through the gate: an `mcp.call` decision on the tool
//! (server + original name) with the arguments typed into the policy
//! context where the tool's schema allows (`crate::mcp::args`), the approval text showing the
//! arguments, the intent logged with the arguments and the result with the
//! full answer as payloads.

use std::sync::Arc;

use serde_json::{Map, Value};
use stele_audit::{Disclosure, Outcome, PayloadInput, Status};
use stele_policy::{Action, Resource};

use super::Ran;
use crate::gate::{ActionRequest, Authorization, Gate, GateError};
use crate::mcp::args::{call_args, ArgValue};
use crate::mcp::{McpError, McpRegistry, OfferedTool};

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
    crate::gate::shown::mcp_call(&tool.server, &tool.tool, input)
}

/// Decide, log and run one MCP tool call.
pub(super) fn call(
    gate: &Arc<Gate>,
    registry: &McpRegistry,
    call: &super::CallRef,
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
    // The typed arguments policies see (`context.args`); see `mcp::args`.
    let seen = call_args(
        &tool.input_schema,
        arguments.as_ref().unwrap_or(&Map::new()),
    );
    req.args = stele_policy::ToolArgs {
        values: seen
            .values
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    ArgValue::Text(t) => stele_policy::ArgValue::Text(t),
                    ArgValue::Number(n) => stele_policy::ArgValue::Number(n),
                    ArgValue::Flag(b) => stele_policy::ArgValue::Flag(b),
                };
                (k, v)
            })
            .collect(),
        abs_paths: seen.abs_paths,
        ..seen.typed
    };
    call.args_into(&mut req, input);
    let mut data = call.data();
    data["model_name"] = serde_json::json!(tool.spec.name);
    req.data = Some(data);
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
            let mut data = call.data();
            data["is_error"] = serde_json::json!(is_error);
            data["result_bytes"] = serde_json::json!(body.len());
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
            let mut data = call.data();
            data["error"] = serde_json::json!(e.kind());
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
    fn result_text_takes_text_parts() {
        let r = json!({"content":[{"type":"text","text":"a"},{"type":"image","mimeType":"image/png","data":"…"}]});
        assert_eq!(result_text(&r), "a\n[image content image/png]");
        assert_eq!(
            result_text(&json!({"structuredContent":{"x":1}})),
            "{\"x\":1}"
        );
    }
}
