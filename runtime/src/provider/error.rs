//! Typed provider errors.
//!
//! Messages quote what the server said (truncated, with the key redacted) but never the key.

use std::time::Duration;

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the TCP/TLS connection.
    Connect,
    /// No progress: no headers, or no event that advances the reply (a stalled stream; pings
    /// do not count).
    Stall,
    /// One whole attempt took longer than the request timeout.
    Request,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Stall => "waiting for progress (the response stalled)",
            TimeoutPhase::Request => "the request timeout for one attempt",
        })
    }
}

/// Why a chat turn failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the credentials (HTTP 401/403). Not retried.
    #[error("authentication failed (HTTP {status}): {message}; check the API key")]
    Auth {
        /// HTTP status.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// Too many requests (HTTP 429), after the retries allowed.
    #[error("rate limited: {message}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// What the server said.
        message: String,
    },
    /// The prompt does not fit the model's context window. Not retried: the caller must shrink it.
    #[error("context overflow: {message}")]
    ContextOverflow {
        /// What the server said.
        message: String,
    },
    /// The server failed (5xx, 529 overloaded, or an error event in the stream), after retries.
    #[error("server error (HTTP {status}): {message}")]
    Server {
        /// HTTP status (500 when the error came as a stream event without one).
        status: u16,
        /// What the server said.
        message: String,
    },
    /// The server rejected the request (another 4xx). Not retried.
    #[error("request rejected (HTTP {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// The response could not be understood (bad JSON, missing fields, unknown shapes).
    #[error("malformed response: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// The connection ended in the middle of a streamed response.
    #[error("stream cut: {detail}")]
    StreamCut {
        /// Where it stopped.
        detail: String,
    },
    /// A deadline expired.
    #[error("timed out {phase} after {}s", after.as_secs_f64())]
    Timeout {
        /// Which deadline.
        phase: TimeoutPhase,
        /// How long was waited.
        after: Duration,
    },
    /// The request could not be sent (DNS, connection refused, reset before a response).
    #[error("network error: {detail}")]
    Network {
        /// What failed.
        detail: String,
    },
    /// The provider is misconfigured (missing key, bad URL, unknown provider name).
    #[error("provider configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// The scripted provider's file or script failed (bad file, exhausted, expectation unmet).
    #[error("scripted provider: {detail}")]
    Script {
        /// What failed, naming the file and position where it applies.
        detail: String,
    },
}

/// Whether an error may go away if the same request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Sending again may succeed (rate limit, server error, network, stream cut before content).
    Retryable,
    /// Sending again will fail the same way, or would duplicate output already shown.
    Final,
}

impl ProviderError {
    /// Whether the retry loop should try again after this error. A stream cut is retryable only
    /// when the caller has not yet seen content (the loop tracks that, see `retry.rs`).
    pub fn retry(&self) -> Retry {
        match self {
            ProviderError::RateLimited { .. }
            | ProviderError::Server { .. }
            | ProviderError::Network { .. }
            | ProviderError::StreamCut { .. } => Retry::Retryable,
            ProviderError::Timeout {
                phase: TimeoutPhase::Connect | TimeoutPhase::Stall | TimeoutPhase::Request,
                ..
            } => Retry::Retryable,
            ProviderError::Auth { .. }
            | ProviderError::ContextOverflow { .. }
            | ProviderError::Rejected { .. }
            | ProviderError::Malformed { .. }
            | ProviderError::Config { .. }
            | ProviderError::Script { .. } => Retry::Final,
        }
    }

    /// A short stable name for logs and audit entries (`auth`, `rate_limited`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Auth { .. } => "auth",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::ContextOverflow { .. } => "context_overflow",
            ProviderError::Server { .. } => "server",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::Malformed { .. } => "malformed",
            ProviderError::StreamCut { .. } => "stream_cut",
            ProviderError::Timeout { .. } => "timeout",
            ProviderError::Network { .. } => "network",
            ProviderError::Config { .. } => "config",
            ProviderError::Script { .. } => "script",
        }
    }
}

/// At most `max` characters of `s`, marking a cut; server messages can be whole HTML pages.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}
