//! Provider settings from the configuration file: a `[provider.NAME]` table per provider name
//! (the part of `--model` before the colon), layered like the rest of the configuration (a
//! managed value wins and cannot be overridden, by a flag or by `ANTHROPIC_BASE_URL` /
//! `OPENAI_BASE_URL`).
//!
//! ```toml
//! [provider.anthropic]
//! base_url = "https://api.anthropic.com"
//! api_key_env = "ANTHROPIC_API_KEY"
//! max_tokens = 8192            # per response
//! max_tokens_limit = 32768     # raised up to this when a reply is cut by the limit
//! stall_timeout_secs = 90      # no progress (pings do not count) for this long: retry
//! request_timeout_secs = 1200  # one attempt, however steadily it streams
//! connect_timeout_secs = 10
//! patience_secs = 300          # ride out an outage this long, then pause (resumable)
//! initial_backoff_secs = 1
//! max_backoff_secs = 30
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::config::{PlainHttp, ProviderConfig};
use super::error::ProviderError;
use super::http::Streaming;
use super::openai::TokenLimitField;

/// A number of seconds in the configuration (fractions allowed: `0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

// Configuration files are compared for equality (managed versus flag); seconds are plain
// numbers read from TOML, never NaN after validation.
impl Eq for Seconds {}

impl Seconds {
    fn duration(self, field: &str, provider: &str) -> Result<Duration, ProviderError> {
        if !self.0.is_finite() || self.0 <= 0.0 || self.0 > 7.0 * 86_400.0 {
            return Err(ProviderError::Config {
                detail: format!(
                    "[provider.{provider}] {field} = {} must be a number of seconds above 0 and at most a week",
                    self.0
                ),
            });
        }
        Ok(Duration::from_secs_f64(self.0))
    }
}

/// The output-token field, as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenField {
    /// `max_tokens`.
    MaxTokens,
    /// `max_completion_tokens`.
    MaxCompletionTokens,
}

/// One `[provider.NAME]` table. Every field is optional; unset fields keep the provider's
/// defaults (see docs/providers.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// API base URL (with or without `/v1`).
    pub base_url: Option<String>,
    /// The environment variable the API key is read from.
    pub api_key_env: Option<String>,
    /// Output tokens allowed per response.
    pub max_tokens: Option<u32>,
    /// The most a response may be allowed when a reply cut by the limit is asked for again.
    pub max_tokens_limit: Option<u32>,
    /// Streamed (SSE) responses [default: true].
    pub streaming: Option<bool>,
    /// OpenAI wire: the request field of the output-token limit.
    pub token_field: Option<TokenField>,
    /// Opening the connection.
    pub connect_timeout_secs: Option<Seconds>,
    /// Longest time without progress (headers, or an event that advances the reply).
    pub stall_timeout_secs: Option<Seconds>,
    /// Longest time for one attempt.
    pub request_timeout_secs: Option<Seconds>,
    /// How long an outage is ridden out (retrying) before the run pauses.
    pub patience_secs: Option<Seconds>,
    /// First backoff between attempts (doubled each time, with jitter).
    pub initial_backoff_secs: Option<Seconds>,
    /// Cap on one backoff.
    pub max_backoff_secs: Option<Seconds>,
    /// Attempts in total at most [default: no limit but patience].
    pub max_attempts: Option<u32>,
    /// Allow a plain-http base URL that is not on this machine (prompts, files and the key
    /// would travel in clear) [default: false].
    pub allow_plain_http: Option<bool>,
}

/// Which layer gave the base URL, for the refusal of a contrary environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseUrlSource {
    /// The provider's built-in default.
    Default,
    /// The user's configuration file.
    User,
    /// The managed configuration file (pinned: nothing may override it).
    Managed(std::path::PathBuf),
    /// `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`.
    Environment(&'static str),
}

impl ProviderSettings {
    /// Managed values over the user's, field by field.
    pub fn layered(managed: Option<&Self>, user: Option<&Self>) -> Self {
        let (m, u) = (
            managed.cloned().unwrap_or_default(),
            user.cloned().unwrap_or_default(),
        );
        Self {
            base_url: m.base_url.or(u.base_url),
            api_key_env: m.api_key_env.or(u.api_key_env),
            max_tokens: m.max_tokens.or(u.max_tokens),
            max_tokens_limit: m.max_tokens_limit.or(u.max_tokens_limit),
            streaming: m.streaming.or(u.streaming),
            token_field: m.token_field.or(u.token_field),
            connect_timeout_secs: m.connect_timeout_secs.or(u.connect_timeout_secs),
            stall_timeout_secs: m.stall_timeout_secs.or(u.stall_timeout_secs),
            request_timeout_secs: m.request_timeout_secs.or(u.request_timeout_secs),
            patience_secs: m.patience_secs.or(u.patience_secs),
            initial_backoff_secs: m.initial_backoff_secs.or(u.initial_backoff_secs),
            max_backoff_secs: m.max_backoff_secs.or(u.max_backoff_secs),
            max_attempts: m.max_attempts.or(u.max_attempts),
            allow_plain_http: m.allow_plain_http.or(u.allow_plain_http),
        }
    }

    /// Apply to `cfg` (named `provider` in messages). Bad values are errors naming the table
    /// and the field.
    pub fn apply(&self, cfg: &mut ProviderConfig, provider: &str) -> Result<(), ProviderError> {
        let bad = |field: &str, why: &str| ProviderError::Config {
            detail: format!("[provider.{provider}] {field}: {why}"),
        };
        if let Some(u) = &self.base_url {
            super::config::check_base_url(u).map_err(|e| bad("base_url", &e))?;
            cfg.base_url = u.trim().to_string();
        }
        if let Some(v) = &self.api_key_env {
            let ok = !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !v.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(bad(
                    "api_key_env",
                    "must be an environment variable name (letters, digits, _)",
                ));
            }
            cfg.api_key_env = Some(v.clone());
        }
        if let Some(n) = self.max_tokens {
            if n == 0 {
                return Err(bad("max_tokens", "must be at least 1"));
            }
            cfg.max_tokens = n;
            cfg.max_tokens_limit = cfg.max_tokens_limit.max(n);
        }
        if let Some(n) = self.max_tokens_limit {
            if n < cfg.max_tokens {
                return Err(bad(
                    "max_tokens_limit",
                    &format!("{n} is below max_tokens ({})", cfg.max_tokens),
                ));
            }
            cfg.max_tokens_limit = n;
        }
        if let Some(s) = self.streaming {
            cfg.streaming = if s { Streaming::On } else { Streaming::Off };
        }
        if let Some(f) = self.token_field {
            cfg.token_field = match f {
                TokenField::MaxTokens => TokenLimitField::MaxTokens,
                TokenField::MaxCompletionTokens => TokenLimitField::MaxCompletionTokens,
            };
        }
        let d =
            |v: Option<Seconds>, field: &str| v.map(|s| s.duration(field, provider)).transpose();
        if let Some(t) = d(self.connect_timeout_secs, "connect_timeout_secs")? {
            cfg.timeouts.connect = t;
        }
        if let Some(t) = d(self.stall_timeout_secs, "stall_timeout_secs")? {
            cfg.timeouts.stall = t;
        }
        if let Some(t) = d(self.request_timeout_secs, "request_timeout_secs")? {
            cfg.timeouts.request = t;
        }
        if let Some(t) = d(self.patience_secs, "patience_secs")? {
            cfg.retry.patience = t;
        }
        if let Some(t) = d(self.initial_backoff_secs, "initial_backoff_secs")? {
            cfg.retry.initial_backoff = t;
        }
        if let Some(t) = d(self.max_backoff_secs, "max_backoff_secs")? {
            cfg.retry.max_backoff = t;
        }
        if cfg.retry.max_backoff < cfg.retry.initial_backoff {
            return Err(bad("max_backoff_secs", "is below initial_backoff_secs"));
        }
        if let Some(n) = self.max_attempts {
            if n == 0 {
                return Err(bad("max_attempts", "must be at least 1"));
            }
            cfg.retry.max_attempts = n;
        }
        if let Some(a) = self.allow_plain_http {
            cfg.plain_http = if a {
                PlainHttp::Allow
            } else {
                PlainHttp::Refuse
            };
        }
        Ok(())
    }
}

/// The environment variable that overrides a provider kind's base URL.
pub fn base_url_variable(kind: super::ProviderKind) -> Option<&'static str> {
    match kind {
        super::ProviderKind::Anthropic => Some("ANTHROPIC_BASE_URL"),
        super::ProviderKind::OpenAi => Some("OPENAI_BASE_URL"),
        super::ProviderKind::Scripted => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn layered_and_applied() {
        let managed: ProviderSettings =
            toml::from_str("base_url = \"https://api.anthropic.com\"\npatience_secs = 600")
                .unwrap();
        let user: ProviderSettings = toml::from_str(
            "base_url = \"http://127.0.0.1:9\"\npatience_secs = 5\nstall_timeout_secs = 0.5\nmax_tokens = 100",
        )
        .unwrap();
        let s = ProviderSettings::layered(Some(&managed), Some(&user));
        let mut cfg = ProviderConfig::from_spec("anthropic:claude-x").unwrap();
        s.apply(&mut cfg, "anthropic").unwrap();
        assert_eq!(cfg.base_url, "https://api.anthropic.com");
        assert_eq!(cfg.retry.patience, Duration::from_secs(600));
        assert_eq!(cfg.timeouts.stall, Duration::from_millis(500));
        assert_eq!(cfg.max_tokens, 100);
        for bad in [
            "stall_timeout_secs = 0",
            "patience_secs = -1",
            "max_tokens = 0",
            "max_tokens = 10\nmax_tokens_limit = 5",
            "api_key_env = \"A KEY\"",
            "base_url = \"ftp://x\"",
            "initial_backoff_secs = 10\nmax_backoff_secs = 1",
        ] {
            let s: ProviderSettings = toml::from_str(bad).unwrap();
            let e = s
                .apply(&mut cfg.clone(), "anthropic")
                .unwrap_err()
                .to_string();
            assert!(e.contains("[provider.anthropic]"), "{bad}: {e}");
        }
        assert!(toml::from_str::<ProviderSettings>("max_token = 5").is_err());
    }
}
