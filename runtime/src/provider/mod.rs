//! Model providers: the Anthropic Messages API, OpenAI-compatible Chat Completions (OpenAI,
//! Ollama, vLLM, llama.cpp server) and a scripted provider that replays turns from a file.
//!
//! The agent loop sees one trait, [`ModelProvider`], and provider-neutral [`types`]. Every reply
//! carries the exact request and response bodies so the runtime can store them in the audit
//! log's payload store; API keys travel only in HTTP headers, never in those bodies.
//!
//! Pick a provider with [`ProviderConfig::from_spec`] (`anthropic:MODEL`, `openai:MODEL`,
//! `ollama:MODEL`, `vllm:MODEL`, `llamacpp:MODEL`, `openai-compat:MODEL`, `scripted:FILE`), adjust
//! the public fields, then [`ProviderConfig::build`].

use std::time::Duration;

pub mod anthropic;
mod classify;
pub mod config;
pub mod error;
mod http;
pub mod openai;
mod openai_stream;
pub mod retry;
pub mod scripted;
pub mod secret;
pub mod settings;
mod sse;
pub mod types;

pub use anthropic::AnthropicProvider;
pub use config::{model_endpoint, KeyRequirement, PlainHttp, ProviderConfig};
pub use error::{ProviderError, Retry, TimeoutPhase};
pub use http::{block_size, Streaming, LARGE_BLOCK};
pub use openai::{OpenAiProvider, TokenLimitField};
pub use retry::{RetryPolicy, Timeouts};
pub use scripted::ScriptedProvider;
pub use secret::Secret;
pub use types::{
    assign_call_ids, ChatRequest, ChatResponse, Content, Elided, Message, Role, StopReason,
    StreamEnd, ToolResultStatus, ToolSpec, Usage, WireIds,
};

/// Progress reported while a turn is generated, for display only (the returned
/// [`ChatResponse`] is the record).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text from the model.
    TextDelta(String),
    /// The model started a tool call.
    ToolUseStart {
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's input JSON (a fragment, not valid JSON on its own).
    ToolInputDelta {
        /// The call's id.
        id: String,
        /// The fragment.
        partial_json: String,
    },
    /// The attempt failed and will be retried after `wait`; anything shown for the failed
    /// attempt is void (only attempts that showed nothing are retried).
    Retrying {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next attempt.
        wait: Duration,
        /// Why it failed.
        reason: String,
        /// The error's stable name (`network`, `timeout`, `server`, …).
        kind: &'static str,
        /// Time since the first failed attempt of this call.
        elapsed: Duration,
        /// How long failures are ridden out before the call gives up.
        patience: Duration,
    },
}

/// Which kind of provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The Anthropic Messages API.
    Anthropic,
    /// OpenAI-compatible Chat Completions.
    OpenAi,
    /// Replayed turns from a script file: not a model at all, and logged as such.
    Scripted,
}

/// What a provider is, for the audit log (`model.request` entries) and the policy's
/// `model` resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderInfo {
    /// The kind.
    pub kind: ProviderKind,
    /// The API base URL (for the scripted provider, the script's path).
    pub base_url: String,
    /// The model name.
    pub model: String,
}

/// A model that can run one chat turn.
#[async_trait::async_trait]
pub trait ModelProvider: Send + Sync {
    /// Run one turn: send `req`, report progress to `events` while the reply streams in, and
    /// return the complete reply. Retries and timeouts are handled inside; an error is final.
    async fn chat(
        &self,
        req: &ChatRequest,
        events: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<ChatResponse, ProviderError>;

    /// What this provider is.
    fn describe(&self) -> ProviderInfo;
}

/// `{base}/v1/{endpoint}`, accepting a base given with or without the `/v1` suffix.
pub(crate) fn endpoint(base_url: &str, endpoint: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/{endpoint}")
}
