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
        /// The provider's id for this call; the result must name it.
        id: String,
        /// The tool's name.
        name: String,
        /// The tool's input, as the model wrote it.
        input: serde_json::Value,
    },
    /// The result of a tool call, sent back to the model in a user message.
    ToolResult {
        /// The id of the `ToolUse` this answers.
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

/// Why the model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// The model wants tool results before going on.
    ToolUse,
    /// The turn hit `max_tokens`.
    MaxTokens,
    /// Anything else the provider reported (stop sequence, content filter, …), verbatim.
    Other(String),
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
                Content::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
                _ => None,
            })
            .collect()
    }
}
