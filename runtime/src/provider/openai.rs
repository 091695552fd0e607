//! OpenAI-compatible Chat Completions (`POST {base}/v1/chat/completions`): OpenAI, Ollama, vLLM,
//! llama.cpp server. Tool calls carry their arguments as JSON *strings*; streamed tool calls
//! arrive as fragments keyed by `index`.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

use super::classify::{classify_parts, status_for_error_type};
use super::error::{clip, ProviderError};
use super::http::{Assembled, Outgoing, StreamAssembler, Streaming, Transport, Wire};
use super::retry::{RetryPolicy, Timeouts};
use super::secret::Secret;
use super::types::{
    ChatRequest, ChatResponse, Content, Role, StopReason, ToolResultStatus, Usage, WireIds,
};
use super::{endpoint, ModelProvider, ProviderInfo, ProviderKind, StreamEvent};

/// A client of an OpenAI-compatible Chat Completions endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    base_url: String,
    model: String,
    key: Option<Secret>,
    streaming: Streaming,
    token_field: TokenLimitField,
    transport: Transport,
}

/// Which request field carries the output-token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLimitField {
    /// `max_tokens`: understood by every OpenAI-compatible server (Ollama, vLLM, llama.cpp).
    MaxTokens,
    /// `max_completion_tokens`: required by OpenAI's newer models, which reject `max_tokens`.
    MaxCompletionTokens,
}

impl TokenLimitField {
    fn name(self) -> &'static str {
        match self {
            TokenLimitField::MaxTokens => "max_tokens",
            TokenLimitField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

impl OpenAiProvider {
    /// A provider for `model` at `base_url`; `key` is sent as a bearer token when present (local
    /// servers such as Ollama need none).
    pub fn new(
        base_url: &str,
        model: &str,
        key: Option<Secret>,
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
            token_field: TokenLimitField::MaxTokens,
            transport,
        })
    }

    /// Use `field` for the output-token limit (default `max_tokens`).
    pub fn with_token_field(mut self, field: TokenLimitField) -> Self {
        self.token_field = field;
        self
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        if let Some(key) = &self.key {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    ProviderError::Config {
                        detail: "the API key contains characters not allowed in an HTTP header"
                            .into(),
                    }
                })?;
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(h)
    }
}

/// Tool errors have no flag in this API, so the content says it.
const ERROR_PREFIX: &str = "ERROR: ";

/// The request body for `req` (no secrets: the key is a header).
pub fn request_body(
    req: &ChatRequest,
    streaming: Streaming,
    token_field: TokenLimitField,
) -> Value {
    let ids = WireIds::new(&req.messages);
    let mut messages = Vec::new();
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system}));
    }
    for m in &req.messages {
        let mut text = String::new();
        let mut calls = Vec::new();
        for c in &m.content {
            match c {
                Content::Text(t) => text.push_str(t),
                Content::ToolUse {
                    id, name, input, ..
                } => calls.push(json!({
                    "id": ids.of(id),
                    "type": "function",
                    // Raw text the model wrote (invalid or cut JSON, never run) goes back as it was.
                    "function": {"name": name, "arguments": match input {
                        Value::String(raw) => raw.clone(),
                        other => other.to_string(),
                    }},
                })),
                // Tool results are messages of their own and must directly follow the assistant
                // message that asked for them, before any user text.
                Content::ToolResult {
                    tool_use_id,
                    content,
                    status,
                } => {
                    let content = match status {
                        ToolResultStatus::Ok => content.clone(),
                        ToolResultStatus::Error => format!("{ERROR_PREFIX}{content}"),
                    };
                    messages.push(
                        json!({"role": "tool", "tool_call_id": ids.of(tool_use_id), "content": content}),
                    );
                }
            }
        }
        match m.role {
            Role::User if !text.is_empty() => {
                messages.push(json!({"role": "user", "content": text}))
            }
            Role::User => {}
            Role::Assistant => {
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
        }
    }
    let mut body = json!({
        "model": req.model,
        "messages": messages,
    });
    body[token_field.name()] = json!(req.max_tokens);
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}))
            .collect();
    }
    if streaming == Streaming::On {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[async_trait::async_trait]
impl ModelProvider for OpenAiProvider {
    async fn chat(
        &self,
        req: &ChatRequest,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, ProviderError> {
        let body = serde_json::to_vec(&request_body(req, self.streaming, self.token_field))
            .map_err(|e| ProviderError::Config {
                detail: format!("request encoding: {e}"),
            })?;
        let out = Outgoing {
            url: endpoint(&self.base_url, "chat/completions"),
            headers: self.headers()?,
            body,
            streaming: self.streaming,
            key: self.key.as_ref(),
        };
        self.transport.send(&OpenAiWire, &out, events).await
    }

    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: ProviderKind::OpenAi,
            base_url: self.base_url.clone(),
            model: self.model.clone(),
        }
    }
}

pub(super) fn malformed(detail: String) -> ProviderError {
    ProviderError::Malformed { detail }
}

/// Tool arguments as the model wrote them. Small local models sometimes write invalid JSON; that
/// is passed on as a JSON string so the tool layer rejects it and the model can correct itself,
/// instead of failing the whole turn (see `anthropic::tool_input`).
pub(super) fn arguments(raw: &str, truncated_empty: bool) -> Value {
    super::anthropic::tool_input(raw, truncated_empty)
}

pub(super) fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("prompt_tokens"),
        output_tokens: n("completion_tokens"),
    }
}

/// The finish reasons of Chat Completions (`stop`, `length`, `tool_calls`, `content_filter`,
/// the older `function_call`); anything else is kept verbatim.
pub(super) fn stop_of(reason: Option<&str>, content: &[Content]) -> StopReason {
    let has_calls = content.iter().any(|c| matches!(c, Content::ToolUse { .. }));
    match reason {
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        // Some servers say "stop" even when the reply is tool calls.
        _ if has_calls => StopReason::ToolUse,
        Some("stop") | None => StopReason::EndTurn,
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some(other) => StopReason::Other(other.to_string()),
    }
}

/// An error object inside a 200 response or stream chunk.
pub(super) fn embedded_error(v: &Value) -> Option<ProviderError> {
    let e = v.get("error")?;
    if e.is_null() {
        return None;
    }
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| e.to_string());
    let etype = e
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("server_error");
    let code = match e.get("code") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|s| (400..600).contains(s))
        .unwrap_or_else(|| status_for_error_type(etype));
    Some(classify_parts(
        status,
        etype,
        &code,
        clip(&message, 500),
        None,
    ))
}

struct OpenAiWire;

impl Wire for OpenAiWire {
    fn assembler(&self) -> Box<dyn StreamAssembler> {
        Box::new(super::openai_stream::Assembler::default())
    }

    fn parse_full(&self, body: &[u8]) -> Result<Assembled, ProviderError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("response is not JSON: {e}")))?;
        if let Some(e) = embedded_error(&v) {
            return Err(e);
        }
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| malformed("response has no choices".into()))?;
        let msg = choice
            .get("message")
            .ok_or_else(|| malformed("choice has no message".into()))?;
        let mut content = Vec::new();
        if let Some(t) = msg.get("content").and_then(Value::as_str) {
            if !t.is_empty() {
                content.push(Content::Text(t.to_string()));
            }
        }
        let finish = choice.get("finish_reason").and_then(Value::as_str);
        let calls: Vec<&Value> = msg
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        for (n, call) in calls.iter().enumerate() {
            let f = call
                .get("function")
                .ok_or_else(|| malformed("tool call without function".into()))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("tool call without name".into()))?;
            let truncated_empty = finish == Some("length") && n + 1 == calls.len();
            let input = match f.get("arguments") {
                Some(Value::String(s)) => arguments(s, truncated_empty),
                Some(other) => other.clone(), // some servers send an object
                None => arguments("", truncated_empty),
            };
            content.push(Content::ToolUse {
                id: String::new(),
                wire_id: call.get("id").and_then(Value::as_str).map(str::to_string),
                name: name.to_string(),
                input,
            });
        }
        let stop = stop_of(finish, &content);
        let usage = v.get("usage").map(usage_of).unwrap_or_default();
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
