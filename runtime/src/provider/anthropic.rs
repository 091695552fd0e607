//! The Anthropic Messages API (`POST {base}/v1/messages`), with tool use and SSE streaming.

use std::collections::{BTreeMap, HashMap};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};

use super::classify::{classify_parts, status_for_error_type};
use super::error::ProviderError;
use super::http::{Assembled, Outgoing, Step, StreamAssembler, Streaming, Transport, Wire};
use super::retry::{RetryPolicy, Timeouts};
use super::secret::Secret;
use super::sse::SseEvent;
use super::types::{
    ChatRequest, ChatResponse, Content, Role, StopReason, ToolResultStatus, Usage, WireIds,
};
use super::{endpoint, ModelProvider, ProviderInfo, ProviderKind, StreamEvent};

/// The API version this client speaks.
pub const API_VERSION: &str = "2023-06-01";

/// A client of the Anthropic Messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    base_url: String,
    model: String,
    key: Secret,
    streaming: Streaming,
    transport: Transport,
}

impl AnthropicProvider {
    /// A provider for `model` at `base_url` (e.g. `https://api.anthropic.com`).
    pub fn new(
        base_url: &str,
        model: &str,
        key: Secret,
        streaming: Streaming,
        timeouts: Timeouts,
        retry: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let transport = Transport::new(base_url, timeouts, retry)?;
        Ok(Self {
            base_url: base_url.to_string(),
            model: model.to_string(),
            key,
            streaming,
            transport,
        })
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        let mut key =
            HeaderValue::from_str(self.key.expose()).map_err(|_| ProviderError::Config {
                detail: "the Anthropic API key contains characters not allowed in an HTTP header"
                    .into(),
            })?;
        key.set_sensitive(true);
        h.insert("x-api-key", key);
        h.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(h)
    }
}

/// The request body for `req` (no secrets: the key is a header).
pub fn request_body(req: &ChatRequest, streaming: Streaming) -> Value {
    let ids = WireIds::new(&req.messages);
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let content: Vec<Value> = m
                .content
                .iter()
                .filter_map(|c| match c {
                    // The API rejects empty text blocks.
                    Content::Text(t) if t.is_empty() => None,
                    Content::Text(t) => Some(json!({"type": "text", "text": t})),
                    Content::ToolUse {
                        id, name, input, ..
                    } => Some(json!({
                        "type": "tool_use", "id": ids.of(id), "name": name,
                        // The API takes only objects; raw text the model wrote (invalid or cut
                        // JSON, never run) goes back wrapped so the model sees what it sent.
                        "input": if input.is_object() { input.clone() } else { json!({"_raw_input": input}) },
                    })),
                    Content::ToolResult {
                        tool_use_id,
                        content,
                        status,
                    } => Some(json!({
                        "type": "tool_result",
                        "tool_use_id": ids.of(tool_use_id),
                        "content": content,
                        "is_error": *status == ToolResultStatus::Error,
                    })),
                })
                .collect();
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "messages": messages,
    });
    if !req.system.is_empty() {
        body["system"] = json!(req.system);
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
            .collect();
    }
    if streaming == Streaming::On {
        body["stream"] = json!(true);
    }
    body
}

#[async_trait::async_trait]
impl ModelProvider for AnthropicProvider {
    async fn chat(
        &self,
        req: &ChatRequest,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, ProviderError> {
        let body = serde_json::to_vec(&request_body(req, self.streaming)).map_err(|e| {
            ProviderError::Config {
                detail: format!("request encoding: {e}"),
            }
        })?;
        let out = Outgoing {
            url: endpoint(&self.base_url, "messages"),
            headers: self.headers()?,
            body,
            streaming: self.streaming,
            key: Some(&self.key),
        };
        self.transport.send(&AnthropicWire, &out, events).await
    }

    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: ProviderKind::Anthropic,
            base_url: self.base_url.clone(),
            model: self.model.clone(),
        }
    }
}

struct AnthropicWire;

impl Wire for AnthropicWire {
    fn assembler(&self) -> Box<dyn StreamAssembler> {
        Box::new(Assembler::default())
    }

    fn parse_full(&self, body: &[u8]) -> Result<Assembled, ProviderError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("response is not JSON: {e}")))?;
        let blocks = v
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("response has no `content` array".into()))?;
        let mut content = Vec::new();
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => content.push(Content::Text(str_field(b, "text")?)),
                Some("tool_use") => content.push(Content::ToolUse {
                    id: String::new(),
                    wire_id: b.get("id").and_then(Value::as_str).map(str::to_string),
                    name: str_field(b, "name")?,
                    input: b.get("input").cloned().unwrap_or_else(|| json!({})),
                }),
                // thinking and server-side blocks are not part of the neutral conversation
                _ => {}
            }
        }
        let usage = v.get("usage").map(usage_of).unwrap_or_default();
        let reason = v.get("stop_reason").and_then(Value::as_str);
        if reason == Some("max_tokens") {
            // A whole body does not show whether the limit cut the last call's input short:
            // it is kept as raw text, which is never run (the model is asked to send it again).
            if let Some(Content::ToolUse { input, .. }) = content.last_mut() {
                *input = Value::String(input.to_string());
            }
        }
        let stop = stop_of(reason, &content);
        let model = v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Assembled {
            content,
            stop,
            usage,
            model,
            positions: HashMap::new(),
        })
    }
}

fn malformed(detail: String) -> ProviderError {
    ProviderError::Malformed { detail }
}

fn str_field(v: &Value, name: &str) -> Result<String, ProviderError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            malformed(format!(
                "content block without string `{name}`: {}",
                super::error::clip(&v.to_string(), 200)
            ))
        })
}

fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
    }
}

/// The stop reasons of the Messages API (`end_turn`, `max_tokens`, `stop_sequence`,
/// `tool_use`, `pause_turn`, `refusal`); anything newer is kept verbatim.
fn stop_of(reason: Option<&str>, content: &[Content]) -> StopReason {
    match reason {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("pause_turn") => StopReason::PauseTurn,
        Some("refusal") => StopReason::Refusal,
        Some(other) => StopReason::Other(other.to_string()),
        None if content.iter().any(|c| matches!(c, Content::ToolUse { .. })) => StopReason::ToolUse,
        None => StopReason::EndTurn,
    }
}

/// A content block being streamed.
enum Block {
    Text(String),
    Tool {
        wire_id: Option<String>,
        name: String,
        json: String,
    },
    /// A block type this client does not model (thinking, server tools): skipped.
    Other,
}

#[derive(Default)]
struct Assembler {
    blocks: BTreeMap<u64, Block>,
    usage: Usage,
    model: String,
    stop: Option<String>,
    saw_content: bool,
    started: bool,
}

impl StreamAssembler for Assembler {
    fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Step, ProviderError> {
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| malformed(format!("stream event {:?} is not JSON: {e}", ev.event)))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(ev.event.as_str());
        let index = || {
            v.get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| malformed(format!("{kind} event without index")))
        };
        match kind {
            "message_start" => {
                self.started = true;
                let m = v.get("message").unwrap_or(&Value::Null);
                self.model = m
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Some(u) = m.get("usage") {
                    self.usage = usage_of(u);
                }
            }
            "content_block_start" => {
                let i = index()?;
                let cb = v.get("content_block").unwrap_or(&Value::Null);
                let block = match cb.get("type").and_then(Value::as_str) {
                    Some("text") => Block::Text(
                        cb.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    Some("tool_use") => {
                        // A server may leave the id out: stele names every call itself.
                        let wire_id = cb.get("id").and_then(Value::as_str).map(str::to_string);
                        let name = str_field(cb, "name")?;
                        self.saw_content = true;
                        out(StreamEvent::ToolUseStart {
                            id: wire_id.clone().unwrap_or_else(|| format!("#{i}")),
                            name: name.clone(),
                        });
                        Block::Tool {
                            wire_id,
                            name,
                            json: String::new(),
                        }
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(i, block);
            }
            "content_block_delta" => {
                let i = index()?;
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let block = self
                    .blocks
                    .get_mut(&i)
                    .ok_or_else(|| malformed(format!("delta for unknown content block {i}")))?;
                match (delta.get("type").and_then(Value::as_str), block) {
                    (Some("text_delta"), Block::Text(text)) => {
                        let piece = delta
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        text.push_str(piece);
                        self.saw_content = true;
                        out(StreamEvent::TextDelta(piece.to_string()));
                        return Ok(Step::Bulk(i));
                    }
                    (Some("input_json_delta"), Block::Tool { wire_id, json, .. }) => {
                        let piece = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        json.push_str(piece);
                        out(StreamEvent::ToolInputDelta {
                            id: wire_id.clone().unwrap_or_else(|| format!("#{i}")),
                            partial_json: piece.to_string(),
                        });
                        return Ok(Step::Bulk(i));
                    }
                    (Some("text_delta" | "input_json_delta"), _) => {
                        return Err(malformed(format!(
                            "delta type does not match content block {i}"
                        )))
                    }
                    // thinking/signature/citations deltas: the model is working
                    _ => {}
                }
            }
            "content_block_stop" => {}
            "message_delta" => {
                if let Some(r) = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop = Some(r.to_string());
                }
                if let Some(u) = v.get("usage") {
                    // output_tokens here is the running total for the message
                    if let Some(o) = u.get("output_tokens").and_then(Value::as_u64) {
                        self.usage.output_tokens = o;
                    }
                    if let Some(i) = u.get("input_tokens").and_then(Value::as_u64) {
                        self.usage.input_tokens = i;
                    }
                }
            }
            "message_stop" => {
                if !self.started {
                    return Err(malformed("message_stop without message_start".into()));
                }
                return Ok(Step::Done);
            }
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let etype = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                let message = e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error event in stream");
                let message = super::error::clip(message, 500);
                return Err(classify_parts(
                    status_for_error_type(etype),
                    etype,
                    "",
                    message,
                    None,
                ));
            }
            // ping, and event types added by later API versions: not progress
            _ => return Ok(Step::Idle),
        }
        Ok(Step::Progress)
    }

    fn saw_content(&self) -> bool {
        self.saw_content
    }

    fn stop_seen(&self) -> bool {
        self.started && self.stop.is_some()
    }

    fn finish(self: Box<Self>) -> Result<Assembled, ProviderError> {
        let cut = self.stop.as_deref() == Some("max_tokens");
        let last = self.blocks.keys().next_back().copied();
        let mut content = Vec::new();
        let mut positions = HashMap::new();
        for (i, block) in self.blocks {
            match block {
                Block::Text(t) => {
                    positions.insert(i, content.len());
                    content.push(Content::Text(t));
                }
                Block::Tool {
                    wire_id,
                    name,
                    json,
                } => {
                    positions.insert(i, content.len());
                    // A block the output limit cut before any input arrived is not an empty
                    // input: it is kept as (empty) raw text, which is never run.
                    let truncated_empty = cut && Some(i) == last && json.trim().is_empty();
                    content.push(Content::ToolUse {
                        id: String::new(),
                        wire_id,
                        name,
                        input: tool_input(&json, truncated_empty),
                    });
                }
                Block::Other => {}
            }
        }
        let stop = stop_of(self.stop.as_deref(), &content);
        Ok(Assembled {
            content,
            stop,
            usage: self.usage,
            model: self.model,
            positions,
        })
    }
}

/// A tool call's input from its streamed JSON: no fragments is `{}`, unless the reply was cut
/// there; text that is not JSON (the model's mistake, or the output limit cutting it) is kept
/// as a JSON string, never run as given.
pub(crate) fn tool_input(raw: &str, truncated_empty: bool) -> Value {
    if raw.trim().is_empty() {
        return if truncated_empty {
            Value::String(String::new())
        } else {
            json!({})
        };
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}
