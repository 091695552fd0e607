//! What the mock answers: scripted turns and faults.

use std::time::Duration;

use serde_json::Value;

/// Which wire format a request used (from its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/chat/completions`.
    OpenAi,
}

/// One content block of a scripted turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text.
    Text(String),
    /// A tool call.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Tool input.
        input: Value,
    },
}

/// A scripted assistant turn. Streamed, text is sent in small pieces and tool input JSON in
/// fragments, as real servers do (larger fragments for large inputs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Turn {
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// Reported prompt tokens.
    pub input_tokens: u64,
    /// Reported generated tokens.
    pub output_tokens: u64,
    /// Leave tool-call ids out, as some OpenAI-compatible servers do.
    pub omit_ids: bool,
    /// The stop reason to report, in the wire's own word (`max_tokens`, `length`, `refusal`,
    /// `pause_turn`, `content_filter`, `stop_sequence`), instead of the natural one.
    pub stop: Option<String>,
    /// End the stream without its terminator (Anthropic `message_stop`, OpenAI
    /// `data: [DONE]`), the stop reason having been sent.
    pub no_terminator: bool,
    /// Send only this many characters of the last tool call's input (a reply cut by the output
    /// limit: give `stop` too).
    pub cut_input_at: Option<usize>,
}

impl Turn {
    /// An empty turn with usage 10 in / 5 out.
    pub fn new() -> Self {
        Self {
            input_tokens: 10,
            output_tokens: 5,
            ..Self::default()
        }
    }
    /// Leave tool-call ids out.
    pub fn without_ids(mut self) -> Self {
        self.omit_ids = true;
        self
    }
    /// Report this stop reason (the wire's own word).
    pub fn stop(mut self, reason: &str) -> Self {
        self.stop = Some(reason.into());
        self
    }
    /// End the stream without its terminator.
    pub fn without_terminator(mut self) -> Self {
        self.no_terminator = true;
        self
    }
    /// Cut the last tool call's input after `chars` characters.
    pub fn cut_input_at(mut self, chars: usize) -> Self {
        self.cut_input_at = Some(chars);
        self
    }
    /// Add a text block.
    pub fn text(mut self, t: &str) -> Self {
        self.blocks.push(Block::Text(t.to_string()));
        self
    }
    /// Add a tool call.
    pub fn tool_use(mut self, id: &str, name: &str, input: Value) -> Self {
        self.blocks.push(Block::ToolUse {
            id: id.into(),
            name: name.into(),
            input,
        });
        self
    }
    /// Set the reported usage.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }
    pub(crate) fn has_tools(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. }))
    }
    /// The stop reason this turn reports on `wire`.
    pub(crate) fn stop_reason(&self, wire: Wire) -> String {
        if let Some(s) = &self.stop {
            return s.clone();
        }
        match (wire, self.has_tools()) {
            (Wire::Anthropic, true) => "tool_use".into(),
            (Wire::Anthropic, false) => "end_turn".into(),
            (Wire::OpenAi, true) => "tool_calls".into(),
            (Wire::OpenAi, false) => "stop".into(),
        }
    }
    /// The input text of tool block `i` as sent (cut for the last call when asked).
    pub(crate) fn input_text(&self, i: usize, input: &Value) -> String {
        let text = input.to_string();
        let last = self
            .blocks
            .iter()
            .rposition(|b| matches!(b, Block::ToolUse { .. }));
        match self.cut_input_at {
            Some(n) if last == Some(i) => text.chars().take(n).collect(),
            _ => text,
        }
    }
}

/// What the server does with the next request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer with this turn (streamed if the request asked for it).
    Turn(Turn),
    /// Answer with an HTTP error in the wire's error format.
    Status {
        /// HTTP status.
        status: u16,
        /// A `Retry-After` header value to send.
        retry_after: Option<String>,
        /// The error type (`rate_limit_error`, `api_error`, …) for the body.
        kind: String,
        /// The error message for the body.
        message: String,
        /// OpenAI's `error.code` (e.g. `context_length_exceeded`).
        code: Option<String>,
    },
    /// 200 with a body (or first SSE event) that is not valid JSON.
    Malformed,
    /// Stream the turn but drop the connection after `after_events` SSE events (non-streamed: after
    /// half the body).
    Cut {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the cut.
        after_events: usize,
    },
    /// Stream the turn's first `after_events` events, then an in-stream error event (Anthropic
    /// `event: error`, OpenAI `data: {"error": …}`) and end the stream.
    StreamError {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the error.
        after_events: usize,
        /// The error type (`overloaded_error`, `api_error`, …).
        kind: String,
        /// The error message.
        message: String,
    },
    /// Stream the turn but stop sending after `after_events` events for `hold` (non-streamed: send
    /// the headers, then nothing for `hold`).
    Stall {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the stall.
        after_events: usize,
        /// How long nothing is sent.
        hold: Duration,
    },
    /// As `Stall`, but keep-alives are sent every `every` while holding (Anthropic `ping`
    /// events, OpenAI SSE comments): bytes, but no progress.
    PingStall {
        /// The turn being sent.
        turn: Turn,
        /// Events sent before the stall.
        after_events: usize,
        /// How long no content is sent.
        hold: Duration,
        /// The keep-alive interval.
        every: Duration,
    },
    /// Answer with one whole JSON body although the request asked for a stream (servers that
    /// ignore `stream: true`).
    Whole(Turn),
    /// The server goes away: this request's connection fails, then every connection is
    /// refused for `refused_for` (the port is closed), then it listens again.
    Outage {
        /// How long connections are refused.
        refused_for: Duration,
    },
}

impl From<Turn> for Reply {
    fn from(t: Turn) -> Self {
        Reply::Turn(t)
    }
}

impl Reply {
    pub(crate) fn status(status: u16, kind: &str, message: &str) -> Self {
        Reply::Status {
            status,
            retry_after: None,
            kind: kind.into(),
            message: message.into(),
            code: None,
        }
    }
    /// 429 with `Retry-After: <retry_after>`.
    pub fn rate_limited(retry_after: &str) -> Self {
        Reply::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
            kind: "rate_limit_error".into(),
            message: "mock: rate limited".into(),
            code: None,
        }
    }
    /// 503 with `Retry-After: <retry_after>` (servers send it on overload too).
    pub fn unavailable(retry_after: &str) -> Self {
        Reply::Status {
            status: 503,
            retry_after: Some(retry_after.into()),
            kind: "overloaded_error".into(),
            message: "mock: temporarily unavailable".into(),
            code: None,
        }
    }
    /// 500 internal server error.
    pub fn server_error() -> Self {
        Self::status(500, "api_error", "mock: internal server error")
    }
    /// 401 invalid key.
    pub fn unauthorized() -> Self {
        Self::status(401, "authentication_error", "mock: invalid x-api-key")
    }
    /// 400 because the prompt is too long, as each API words it.
    pub fn context_overflow() -> Self {
        Reply::Status {
            status: 400,
            retry_after: None,
            kind: "invalid_request_error".into(),
            message: "prompt is too long: 210000 tokens > 200000 maximum".into(),
            code: Some("context_length_exceeded".into()),
        }
    }
}
