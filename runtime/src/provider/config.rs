//! Choosing and configuring a provider: `PROVIDER:NAME` specs, base URLs, keys.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::ProviderError;
use super::http::Streaming;
use super::openai::TokenLimitField;
use super::retry::{RetryPolicy, Timeouts};
use super::secret::Secret;
use super::{AnthropicProvider, ModelProvider, OpenAiProvider, ProviderKind, ScriptedProvider};

/// Whether a provider refuses to start without an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRequirement {
    /// Hosted APIs: no key, no start (a clear error naming the variable).
    Required,
    /// Local servers (Ollama, vLLM, llama.cpp): a key is sent only if one is configured.
    Optional,
}

/// Everything needed to build a provider. Start from [`ProviderConfig::from_spec`] and override
/// fields from the config file or flags.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The wire format.
    pub kind: ProviderKind,
    /// The model name (`scripted` for the scripted provider).
    pub model: String,
    /// API base URL, without `/v1` (a trailing `/v1` is accepted).
    pub base_url: String,
    /// A key given directly (takes precedence over `api_key_env`).
    pub api_key: Option<Secret>,
    /// The environment variable the key is read from.
    pub api_key_env: Option<String>,
    /// Whether a key is required.
    pub key: KeyRequirement,
    /// Streamed or whole responses.
    pub streaming: Streaming,
    /// Network timeouts.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: RetryPolicy,
    /// The scripted provider's file.
    pub script: Option<PathBuf>,
    /// OpenAI wire only: the field for the output-token limit (`openai` defaults to
    /// `max_completion_tokens`, local servers to `max_tokens`).
    pub token_field: TokenLimitField,
}

impl ProviderConfig {
    /// Parse `PROVIDER:NAME`:
    ///
    /// | provider | wire | default base URL | key |
    /// |---|---|---|---|
    /// | `anthropic` | Anthropic | `https://api.anthropic.com` | `ANTHROPIC_API_KEY`, required |
    /// | `openai` | OpenAI | `https://api.openai.com` | `OPENAI_API_KEY`, required |
    /// | `openai-compat` | OpenAI | `http://127.0.0.1:8000` (set `base_url`) | `OPENAI_API_KEY`, optional |
    /// | `ollama` | OpenAI | `http://127.0.0.1:11434` | none |
    /// | `vllm` | OpenAI | `http://127.0.0.1:8000` | none |
    /// | `llamacpp` | OpenAI | `http://127.0.0.1:8080` | none |
    /// | `scripted` | — | NAME is the script file | — |
    ///
    /// The model name may itself contain colons (`ollama:llama3.1:8b`).
    pub fn from_spec(spec: &str) -> Result<Self, ProviderError> {
        let (provider, name) = spec.split_once(':').ok_or_else(|| ProviderError::Config {
            detail: format!("model {spec:?} is not PROVIDER:NAME (e.g. anthropic:claude-sonnet-4-5, ollama:llama3.1, scripted:demo.json)"),
        })?;
        if name.is_empty() {
            return Err(ProviderError::Config {
                detail: format!("model {spec:?} has no name after the colon"),
            });
        }
        let (kind, base, env, key) = match provider {
            "anthropic" => (ProviderKind::Anthropic, "https://api.anthropic.com", Some("ANTHROPIC_API_KEY"), KeyRequirement::Required),
            "openai" => (ProviderKind::OpenAi, "https://api.openai.com", Some("OPENAI_API_KEY"), KeyRequirement::Required),
            "openai-compat" => (ProviderKind::OpenAi, "http://127.0.0.1:8000", Some("OPENAI_API_KEY"), KeyRequirement::Optional),
            "ollama" => (ProviderKind::OpenAi, "http://127.0.0.1:11434", None, KeyRequirement::Optional),
            "vllm" => (ProviderKind::OpenAi, "http://127.0.0.1:8000", None, KeyRequirement::Optional),
            "llamacpp" | "llama.cpp" => (ProviderKind::OpenAi, "http://127.0.0.1:8080", None, KeyRequirement::Optional),
            "scripted" => {
                return Ok(Self {
                    kind: ProviderKind::Scripted,
                    model: "scripted".into(),
                    base_url: name.to_string(),
                    api_key: None,
                    api_key_env: None,
                    key: KeyRequirement::Optional,
                    streaming: Streaming::On,
                    timeouts: Timeouts::default(),
                    retry: RetryPolicy::default(),
                    script: Some(PathBuf::from(name)),
                    token_field: TokenLimitField::MaxTokens,
                })
            }
            other => {
                return Err(ProviderError::Config {
                    detail: format!("unknown provider {other:?}: use anthropic, openai, openai-compat, ollama, vllm, llamacpp or scripted"),
                })
            }
        };
        Ok(Self {
            kind,
            model: name.to_string(),
            base_url: base.to_string(),
            api_key: None,
            api_key_env: env.map(str::to_string),
            key,
            streaming: Streaming::On,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            script: None,
            token_field: if provider == "openai" {
                TokenLimitField::MaxCompletionTokens
            } else {
                TokenLimitField::MaxTokens
            },
        })
    }

    /// Take the base URL from the conventional environment variable, if set: `ANTHROPIC_BASE_URL`
    /// for `anthropic`, `OPENAI_BASE_URL` for the OpenAI wire. Not applied by
    /// [`from_spec`](Self::from_spec): the caller decides whether the environment may redirect
    /// model traffic (a managed configuration may pin the URL instead).
    pub fn base_url_from_env(&mut self) {
        let var = match self.kind {
            ProviderKind::Anthropic => "ANTHROPIC_BASE_URL",
            ProviderKind::OpenAi => "OPENAI_BASE_URL",
            ProviderKind::Scripted => return,
        };
        if let Ok(url) = std::env::var(var) {
            if !url.trim().is_empty() {
                self.base_url = url.trim().to_string();
            }
        }
    }

    /// The key to use: the one given, else the environment variable's value.
    pub fn resolve_key(&self) -> Result<Option<Secret>, ProviderError> {
        if let Some(k) = &self.api_key {
            return Ok(Some(k.clone()));
        }
        let from_env = self.api_key_env.as_deref().and_then(Secret::from_env);
        match (from_env, self.key) {
            (Some(k), _) => Ok(Some(k)),
            (None, KeyRequirement::Optional) => Ok(None),
            (None, KeyRequirement::Required) => Err(ProviderError::Config {
                detail: match &self.api_key_env {
                    Some(var) => {
                        format!("no API key: set {var} (or configure the key's variable name)")
                    }
                    None => "no API key configured".to_string(),
                },
            }),
        }
    }

    /// Build the provider.
    pub fn build(&self) -> Result<Arc<dyn ModelProvider>, ProviderError> {
        match self.kind {
            ProviderKind::Anthropic => {
                let key = self.resolve_key()?.ok_or_else(|| ProviderError::Config {
                    detail: "the Anthropic API needs a key (ANTHROPIC_API_KEY)".into(),
                })?;
                Ok(Arc::new(AnthropicProvider::new(
                    &self.base_url,
                    &self.model,
                    key,
                    self.streaming,
                    self.timeouts,
                    self.retry.clone(),
                )?))
            }
            ProviderKind::OpenAi => Ok(Arc::new(
                OpenAiProvider::new(
                    &self.base_url,
                    &self.model,
                    self.resolve_key()?,
                    self.streaming,
                    self.timeouts,
                    self.retry.clone(),
                )?
                .with_token_field(self.token_field),
            )),
            ProviderKind::Scripted => {
                let path = self
                    .script
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&self.base_url));
                Ok(Arc::new(ScriptedProvider::from_file(&path)?))
            }
        }
    }
}
