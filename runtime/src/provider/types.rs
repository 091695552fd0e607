//! Provider-neutral chat types.
//!
//! The agent loop speaks only these; each provider translates them to and from its wire format.
//! They serialise to JSON so a session's conversation can be persisted in the audit log's payload
//! store and read back on resume.

use serde::{Deserialize, Serialize};

/// One chat turn to send to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name as the provider knows it (e.g. `claude-sonnet-4-5`, `gpt-4o`, `llama3.1`).
    pub model: String,
    /// The system prompt.
    pub system: String,
    /// The conversation so far, oldest first; the last message is normally from the user.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Upper bound on the tokens the model may generate in this turn.
    pub max_tokens: u32,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The user, or the runtime speaking for it (tool results are sent as user content).
    User,
    /// The model.
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its content blocks, in order.
    pub content: Vec<Content>,
}

impl Message {
    /// A user message holding one text block.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![Content::Text(text.into())],
        }
    }

    /// An assistant message with the given blocks (normally a model's reply being appended).
    pub fn assistant(content: Vec<Content>) -> Self {
        Self {
            role: Role::Assistant,
            content,
        }
    }
}

/// Whether a tool call succeeded, as reported back to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolResultStatus {
    /// The tool ran and this is its output.
    Ok,
    /// The tool failed or was denied; the content says why.
    Error,
}

/// A content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Plain text.
    Text(#[serde(with = "text_field")] String),
    /// The model asks for a tool to be called.
    ToolUse {
        /// stele's id for this call, unique in the log (`call-<model.request index>-<n>`):
        /// results name it, the log records it, a resumed session pairs by it. Empty until the
        /// agent assigns it ([`assign_call_ids`]); providers never fill it.
        id: String,
        /// The id the provider gave the call, if it gave one. Never trusted for identity
        /// (servers omit ids, repeat them, reuse them across turns); sent back on the wire only
        /// where it names one call unambiguously in the request ([`WireIds`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wire_id: Option<String>,
        /// The tool's name.
        name: String,
        /// The tool's input, as the model wrote it. A JSON string instead of an object means
        /// the model's input was not valid JSON (or was cut short): the raw text, never run
        /// as given.
        input: serde_json::Value,
    },
    /// The result of a tool call, sent back to the model in a user message.
    ToolResult {
        /// The stele id of the `ToolUse` this answers.
        tool_use_id: String,
        /// The (possibly truncated) output shown to the model.
        content: String,
        /// Success or failure.
        status: ToolResultStatus,
    },
}

/// Internally tagged enums cannot hold a bare string, so text is stored as `{"type":"text","text":…}`.
mod text_field {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Text<T> {
        text: T,
    }

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        Text { text }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Text::<String>::deserialize(d)?.text)
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its input object.
    pub input_schema: serde_json::Value,
}

/// Why the model stopped generating, as the provider reported it (Anthropic `stop_reason`,
/// OpenAI `finish_reason`). The agent acts on each: see `docs/providers.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn (Anthropic `end_turn`, OpenAI `stop`).
    EndTurn,
    /// The model wants tool results before going on (`tool_use`, `tool_calls`).
    ToolUse,
    /// The reply hit the output-token limit (`max_tokens`, `length`): it is cut short.
    MaxTokens,
    /// A stop sequence was generated (Anthropic `stop_sequence`); stele sets none.
    StopSequence,
    /// The provider paused a long turn to be continued (Anthropic `pause_turn`).
    PauseTurn,
    /// The model declined to answer (Anthropic `refusal`).
    Refusal,
    /// The provider's content filter withheld output (OpenAI `content_filter`).
    ContentFilter,
    /// Anything else the provider reported, verbatim.
    Other(String),
}

impl StopReason {
    /// A stable name for the log and `--json` events (`end_turn`, `max_tokens`, …; an
    /// unknown reason as the provider wrote it).
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::PauseTurn => "pause_turn",
            StopReason::Refusal => "refusal",
            StopReason::ContentFilter => "content_filter",
            StopReason::Other(s) => s,
        }
    }
}

/// How a streamed reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// Not streamed: one whole body.
    Whole,
    /// With the wire's terminator (Anthropic `message_stop`, OpenAI `data: [DONE]`).
    Terminator,
    /// Without the terminator, but after the event that carries the stop reason (Anthropic
    /// `message_delta`, OpenAI a chunk with `finish_reason`): the content was complete, only
    /// trailing events (usage) may be missing.
    AfterStopReason,
}

/// Bulk content events of one large block left out of a recorded response body (the block's
/// assembled value is recorded once, elsewhere in the same entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elided {
    /// The content block (its position in [`ChatResponse::content`]).
    pub block: usize,
    /// Events left out.
    pub events: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Token counts for one turn, as reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

/// The model's reply to one [`ChatRequest`].
#[derive(Clone, PartialEq)]
pub struct ChatResponse {
    /// The assistant's content blocks, in order.
    pub content: Vec<Content>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Token usage.
    pub usage: Usage,
    /// The model that answered, as the provider reported it.
    pub model: String,
    /// The request body exactly as sent (never contains the API key: keys go only in headers).
    pub request_body: Vec<u8>,
    /// The response body exactly as received; for streaming, the concatenated SSE text.
    pub response_body: Vec<u8>,
    /// How many HTTP attempts this turn took (1 when no retry was needed).
    pub attempts: u32,
    /// How the reply's stream ended.
    pub stream_end: StreamEnd,
    /// Delta events of large blocks left out of `response_body` (empty: it is byte for byte).
    pub elided: Vec<Elided>,
}

impl std::fmt::Debug for ChatResponse {
    /// Bodies are shown by size: they are long, and the record is in the payload store.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatResponse")
            .field("content", &self.content)
            .field("stop", &self.stop)
            .field("usage", &self.usage)
            .field("model", &self.model)
            .field("request_body_len", &self.request_body.len())
            .field("response_body_len", &self.response_body.len())
            .field("attempts", &self.attempts)
            .field("stream_end", &self.stream_end)
            .field("elided", &self.elided)
            .finish()
    }
}

impl ChatResponse {
    /// The concatenated text blocks.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let Content::Text(t) = block {
                out.push_str(t);
            }
        }
        out
    }

    /// The tool calls in the reply, in order, as `(id, name, input)`.
    pub fn tool_uses(&self) -> Vec<(&str, &str, &serde_json::Value)> {
        self.content
            .iter()
            .filter_map(|c| match c {
                Content::ToolUse {
                    id, name, input, ..
                } => Some((id.as_str(), name.as_str(), input)),
                _ => None,
            })
            .collect()
    }
}

/// Give every tool call in `content` its stele id, `{prefix}-{n}` (n from 1, in order). What
/// the provider called it stays in `wire_id`.
pub fn assign_call_ids(content: &mut [Content], prefix: &str) {
    let mut n = 0;
    for c in content {
        if let Content::ToolUse { id, .. } = c {
            n += 1;
            *id = format!("{prefix}-{n}");
        }
    }
}

/// The ids tool calls carry on the wire in one request: the provider's own id where it names
/// exactly one call in the whole request and has the form every API accepts, else stele's id
/// (a server that sent no id, the same id twice, or one id in several turns is given ids that
/// pair each result with its call). Results use their call's wire id.
#[derive(Debug, Default)]
pub struct WireIds {
    by_call: std::collections::HashMap<String, String>,
}

impl WireIds {
    /// The mapping for `messages`.
    pub fn new(messages: &[Message]) -> Self {
        let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let calls = || {
            messages
                .iter()
                .flat_map(|m| &m.content)
                .filter_map(|c| match c {
                    Content::ToolUse { id, wire_id, .. } => Some((id, wire_id)),
                    _ => None,
                })
        };
        for (_, w) in calls() {
            if let Some(w) = w {
                *count.entry(w.as_str()).or_default() += 1;
            }
        }
        // A provider id that looks like one of stele's ids would collide with it.
        let ours: std::collections::HashSet<&str> = calls().map(|(id, _)| id.as_str()).collect();
        let by_call = calls()
            .map(|(id, w)| {
                let wire = match w {
                    Some(w)
                        if count.get(w.as_str()) == Some(&1)
                            && wire_safe(w)
                            && (!ours.contains(w.as_str()) || w == id) =>
                    {
                        w.clone()
                    }
                    _ => id.clone(),
                };
                (id.clone(), wire)
            })
            .collect();
        Self { by_call }
    }

    /// The wire id of the call stele knows as `id` (unknown ids pass unchanged).
    pub fn of<'a>(&'a self, id: &'a str) -> &'a str {
        self.by_call.get(id).map(String::as_str).unwrap_or(id)
    }
}

/// An id every tool-calling API accepts (Anthropic requires `^[a-zA-Z0-9_-]+$`).
fn wire_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, wire: Option<&str>) -> Content {
        Content::ToolUse {
            id: id.into(),
            wire_id: wire.map(str::to_string),
            name: "exec".into(),
            input: serde_json::json!({}),
        }
    }

    #[test]
    fn wire_ids_are_the_providers_only_where_they_name_one_call() {
        let messages = vec![
            Message::assistant(vec![call("call-1-1", None), call("call-1-2", Some("dup"))]),
            Message::assistant(vec![
                call("call-5-1", Some("dup")),
                call("call-5-2", Some("toolu_A")),
            ]),
            // A provider id that is one of stele's ids, and one no API accepts.
            Message::assistant(vec![
                call("call-9-1", Some("call-1-1")),
                call("call-9-2", Some("a b")),
            ]),
        ];
        let ids = WireIds::new(&messages);
        assert_eq!(ids.of("call-1-1"), "call-1-1", "no id from the server");
        assert_eq!(ids.of("call-1-2"), "call-1-2", "a repeated id");
        assert_eq!(ids.of("call-5-1"), "call-5-1");
        assert_eq!(ids.of("call-5-2"), "toolu_A", "a unique id is echoed");
        assert_eq!(ids.of("call-9-1"), "call-9-1", "a colliding id");
        assert_eq!(ids.of("call-9-2"), "call-9-2", "an id with a space");
        assert_eq!(ids.of("unknown"), "unknown");
        let mut all: Vec<&str> = [
            "call-1-1", "call-1-2", "call-5-1", "call-5-2", "call-9-1", "call-9-2",
        ]
        .iter()
        .map(|i| ids.of(i))
        .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 6, "distinct on the wire");
    }
}
