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
    /// The provider's name from the spec (`anthropic`, `openai-compat`, `ollama`, …): the
    /// `[provider.NAME]` table that configures it.
    pub provider: String,
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
    /// Output tokens allowed per response (hosted APIs 8192, local servers 4096).
    pub max_tokens: u32,
    /// The most a response may be allowed when a reply cut by the limit is asked for again
    /// (hosted 32768, local 8192).
    pub max_tokens_limit: u32,
    /// Whether a plain-http base URL off this machine is refused (the default).
    pub plain_http: PlainHttp,
}

/// Whether a plain-http endpoint that is not on this machine may be used: prompts, workspace
/// files and the API key would cross the network in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// Refuse to start (the default).
    Refuse,
    /// Allowed by configuration (`allow_plain_http = true`).
    Allow,
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
                    provider: provider.to_string(),
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
                    max_tokens: 4096,
                    max_tokens_limit: 8192,
                    plain_http: PlainHttp::Refuse,
                })
            }
            other => {
                return Err(ProviderError::Config {
                    detail: format!("unknown provider {other:?}: use anthropic, openai, openai-compat, ollama, vllm, llamacpp or scripted"),
                })
            }
        };
        let hosted = key == KeyRequirement::Required;
        Ok(Self {
            provider: provider.to_string(),
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
            // Local servers often have small context windows: a large limit is refused there.
            max_tokens: if hosted { 8192 } else { 4096 },
            max_tokens_limit: if hosted { 32768 } else { 8192 },
            plain_http: PlainHttp::Refuse,
        })
    }

    /// Take the base URL from the conventional environment variable, if set: `ANTHROPIC_BASE_URL`
    /// for `anthropic`, `OPENAI_BASE_URL` for the OpenAI wire. Not applied by
    /// [`from_spec`](Self::from_spec): the caller decides whether the environment may redirect
    /// model traffic (a managed configuration may pin the URL instead: see
    /// [`ProviderConfig::configure`]). Returns the variable used, if any.
    pub fn base_url_from_env(&mut self) -> Option<&'static str> {
        let var = super::settings::base_url_variable(self.kind)?;
        let url = std::env::var(var).ok()?;
        if url.trim().is_empty() {
            return None;
        }
        self.base_url = url.trim().to_string();
        Some(var)
    }

    /// The provider for `spec` with the configuration applied: the `[provider.NAME]` settings
    /// (managed over user), then the base-URL environment variable, which a managed
    /// `base_url` pins: a different value there is refused, naming both.
    pub fn configure(
        spec: &str,
        managed: Option<(&std::path::Path, &super::settings::ProviderSettings)>,
        user: Option<&super::settings::ProviderSettings>,
    ) -> Result<(Self, super::settings::BaseUrlSource), ProviderError> {
        use super::settings::{BaseUrlSource, ProviderSettings};
        let mut cfg = Self::from_spec(spec)?;
        let provider = spec.split_once(':').map(|(p, _)| p).unwrap_or(spec);
        let layered = ProviderSettings::layered(managed.map(|(_, m)| m), user);
        layered.apply(&mut cfg, provider)?;
        let mut source = match (
            managed.and_then(|(p, m)| m.base_url.as_ref().map(|_| p)),
            user.and_then(|u| u.base_url.as_ref()),
        ) {
            (Some(path), _) => BaseUrlSource::Managed(path.to_path_buf()),
            (None, Some(_)) => BaseUrlSource::User,
            (None, None) => BaseUrlSource::Default,
        };
        let pinned = cfg.base_url.clone();
        let before = cfg.base_url.clone();
        if let Some(var) = cfg.base_url_from_env() {
            if let BaseUrlSource::Managed(path) = &source {
                if cfg.base_url.trim_end_matches('/') != pinned.trim_end_matches('/') {
                    return Err(ProviderError::Config {
                        detail: format!(
                            "the base URL of provider {provider} is pinned to {pinned} by the managed configuration {}; {var}={} is not allowed",
                            path.display(),
                            cfg.base_url
                        ),
                    });
                }
            } else if cfg.base_url != before {
                check_base_url(&cfg.base_url).map_err(|e| ProviderError::Config {
                    detail: format!("{var}: {e}"),
                })?;
                source = BaseUrlSource::Environment(var);
            }
        }
        Ok((cfg, source))
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
                    Some(var) => format!(
                        "no API key: set {var} (or name another variable with `api_key_env` under [provider.{}] in the configuration)",
                        self.provider
                    ),
                    None => "no API key configured: set `api_key_env` under [provider.NAME] in the configuration".to_string(),
                },
            }),
        }
    }

    /// Build the provider. A plain-http base URL that is not on this machine is refused unless
    /// [`PlainHttp::Allow`] is configured.
    pub fn build(&self) -> Result<Arc<dyn ModelProvider>, ProviderError> {
        if self.kind != ProviderKind::Scripted {
            check_base_url(&self.base_url).map_err(|e| ProviderError::Config { detail: e })?;
            let clear = self
                .base_url
                .trim()
                .to_ascii_lowercase()
                .starts_with("http://")
                && !is_loopback_url(&self.base_url)?;
            if clear && self.plain_http == PlainHttp::Refuse {
                return Err(ProviderError::Config {
                    detail: format!(
                        "refusing {}: plain http to another machine would carry the conversation, workspace files and the API key in clear. Use https, or allow it with `allow_plain_http = true` under [provider.{}] in the configuration",
                        self.base_url,
                        self.provider
                    ),
                });
            }
        }
        match self.kind {
            ProviderKind::Anthropic => {
                let key = self.resolve_key()?.ok_or_else(|| ProviderError::Config {
                    detail: format!(
                        "the Anthropic API needs a key: set {}",
                        self.api_key_env.as_deref().unwrap_or("ANTHROPIC_API_KEY")
                    ),
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

/// Why `url` cannot be a base URL (not a URL, not http(s), no host, credentials in it), or Ok.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("base URL {url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("base URL {url:?} must be http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("base URL {url:?} has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "base URL {url:?} carries credentials: give the key through its environment variable"
        ));
    }
    Ok(())
}

/// Whether `url`'s host is this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_url(url: &str) -> Result<bool, ProviderError> {
    let u = reqwest::Url::parse(url.trim()).map_err(|e| ProviderError::Config {
        detail: format!("base URL {url:?} is not a URL: {e}"),
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ProviderError::Config {
            detail: format!("base URL {url:?} must be http or https"),
        });
    }
    let host = u
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback()))
}

/// The endpoint of a provider as policy sees it (the `Model` resource's `scheme`, `host` and
/// `port`): the base URL's origin; for the scripted provider, `file://localhost`.
pub fn model_endpoint(
    info: &super::ProviderInfo,
) -> Result<stele_policy::ModelEndpoint, ProviderError> {
    if info.kind == ProviderKind::Scripted {
        return Ok(stele_policy::ModelEndpoint::local_file());
    }
    let u = reqwest::Url::parse(info.base_url.trim()).map_err(|e| ProviderError::Config {
        detail: format!("base URL {:?} is not a URL: {e}", info.base_url),
    })?;
    let host = u.host_str().unwrap_or_default();
    stele_policy::ModelEndpoint::new(u.scheme(), host, u.port_or_known_default()).map_err(|e| {
        ProviderError::Config {
            detail: format!("base URL {:?}: {e}", info.base_url),
        }
    })
}
