//! Configuration in TOML, in layers: a managed file (enforced; present but
//! invalid means stele refuses to start) over the user's file over flags.
//! Nothing is ever read from the workspace, so the agent cannot loosen it.
//!
//! A value in the managed file wins; a flag that asks for something else is
//! refused rather than silently ignored. The user's file only supplies
//! defaults that flags override.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::setup::NetworkChoice;
use crate::gate::ApproveMode;

/// The managed file. `STELE_MANAGED_CONFIG` is honoured only when this file
/// does not exist (for tests and unmanaged machines): it can never replace a
/// managed file that is present.
pub const MANAGED_PATH: &str = "/etc/stele/config.toml";

/// One configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Policy bundle folder.
    pub policy: Option<PathBuf>,
    /// Model as PROVIDER:NAME.
    pub model: Option<String>,
    /// Answer when no person can be asked.
    pub approve: Option<ApproveMode>,
    /// The sandbox's network.
    pub network: Option<NetworkChoice>,
    /// The sandbox backend (`process` or `vm`) [default: process].
    pub backend: Option<crate::cli::backend::BackendChoice>,
    /// When the micro-VM does not come up: `none` (refuse, the default) or
    /// `process` (run in the process sandbox instead; warned and logged).
    pub vm_fallback: Option<crate::cli::backend::VmFallback>,
    /// The process sandbox's system directories: `image` (the tool image
    /// `stele vm image build` makes, the default) or `host` (the host's own;
    /// recorded as such).
    pub sandbox_root: Option<crate::cli::backend::RootChoice>,
    /// Seconds the micro-VM may take to come up [default: 60].
    pub vm_boot_timeout_secs: Option<u64>,
    /// Whether a missing micro-VM image is built when a session first asks
    /// for the VM backend (`auto`, the default) or refused (`never`).
    pub vm_image_build: Option<crate::cli::vm_image::VmImageBuild>,
    /// Bytes one session's sandboxed commands may write into the workspace,
    /// together (`"4GiB"`, `"512MiB"`, `"unlimited"`) [default: 4GiB].
    pub workspace_write_quota: Option<stele_sandbox::fs::WriteQuota>,
    /// Audit database.
    pub db: Option<PathBuf>,
    /// Signing key.
    pub key: Option<PathBuf>,
    /// Where the log's signing key is (`[signing]`): a file (`key`, the
    /// default) or a key in a PKCS#11 token (`pkcs11 = { … }`; see
    /// docs/keys.md). A managed value wins over the user's.
    pub signing: Option<SigningConfig>,
    /// Most model turns per run.
    pub max_steps: Option<u32>,
    /// MCP servers (`[mcp.NAME]`; see docs/mcp.md).
    pub mcp: Option<std::collections::BTreeMap<String, crate::mcp::McpServerConfig>>,
    /// Rules for all MCP servers (`[mcp_settings]`; see docs/mcp.md).
    pub mcp_settings: Option<crate::mcp::sandbox_config::McpSettings>,
    /// Witnesses the log's checkpoints are sent to (`[[witness]]`).
    pub witness: Option<Vec<crate::witnessing::WitnessEntry>>,
    /// Cosignatures required at session start and end (0: best effort).
    pub witness_quorum: Option<u32>,
    /// Live SIEM feeds (`[[feed]]`; see docs/siem.md). The managed file's
    /// list, when it has one, replaces the user's.
    pub feed: Option<Vec<crate::feed::config::FeedEntry>>,
    /// RFC 3161 timestamps on checkpoints (`[tsa]`; see docs/runtime.md).
    pub tsa: Option<crate::timestamping::TsaConfig>,
    /// OpenTelemetry export (`[telemetry]`).
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
    /// Memory, process and CPU limits per command and per session
    /// (`[resources]`; see docs/sandbox.md).
    pub resources: Option<crate::cli::resources::ResourcesConfig>,
    /// Model provider settings (`[provider.NAME]`, NAME as in `--model NAME:MODEL`: base URL,
    /// API key variable, output tokens, timeouts, retries; see docs/providers.md). A managed
    /// value pins that field.
    pub provider:
        Option<std::collections::BTreeMap<String, crate::provider::settings::ProviderSettings>>,
    /// Retention classes and hold officers (`[retention]`; managed file
    /// only, see docs/retention.md).
    pub retention: Option<stele_audit::retention::RetentionConfig>,
}

/// The `[signing]` section: which key signs the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// A key in a PKCS#11 token (module, token, label, pin_file | pin_env).
    pub pkcs11: Option<stele_hsm::Pkcs11Config>,
}

/// Why configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A flag asks for something the managed configuration fixes.
    #[error("{field} is set to {managed} by the managed configuration {path}; --{field} {given} is not allowed")]
    Managed {
        /// The setting.
        field: &'static str,
        /// The managed value.
        managed: String,
        /// The flag's value.
        given: String,
        /// The managed file.
        path: PathBuf,
    },
}

/// The loaded layers.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// The managed file and its contents, if present.
    pub managed: Option<(PathBuf, ConfigFile, String)>,
    /// The user's file and its contents, if present.
    pub user: Option<(PathBuf, ConfigFile)>,
}

/// Parse one file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<(ConfigFile, String)>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: e.message().to_string(),
        }
    })?;
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
    Ok(Some((file, digest)))
}

/// The user's file: `$STELE_CONFIG`, else `config.toml` in
/// [`crate::paths::user_config_dir`].
pub fn user_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STELE_CONFIG").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return Some(std::path::absolute(&p).unwrap_or(p));
    }
    crate::paths::user_config_dir().map(|d| d.join("config.toml"))
}

/// The managed file in force: [`MANAGED_PATH`] when it exists, else
/// `$STELE_MANAGED_CONFIG`.
pub fn managed_path() -> Option<PathBuf> {
    if Path::new(MANAGED_PATH).exists() {
        Some(PathBuf::from(MANAGED_PATH))
    } else {
        std::env::var_os("STELE_MANAGED_CONFIG").map(PathBuf::from)
    }
}

/// Load the managed and user files.
pub fn load() -> Result<Layers, ConfigError> {
    let managed = match managed_path() {
        Some(p) => read(&p)?.map(|(f, d)| (p, f, d)),
        None => None,
    };
    let user = match user_path() {
        Some(p) => read(&p)?.map(|(f, _)| (p, f)),
        None => None,
    };
    Ok(Layers { managed, user })
}

impl Layers {
    /// The value to use for `field`: managed (a differing flag is an
    /// error), else the flag, else the user's file.
    pub fn pick<T: PartialEq + Clone + std::fmt::Debug>(
        &self,
        field: &'static str,
        flag: Option<T>,
        get: impl Fn(&ConfigFile) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        if let Some((path, m, _)) = &self.managed {
            if let Some(v) = get(m) {
                if let Some(f) = &flag {
                    if *f != v {
                        return Err(ConfigError::Managed {
                            field,
                            managed: format!("{v:?}"),
                            given: format!("{f:?}"),
                            path: path.clone(),
                        });
                    }
                }
                return Ok(Some(v));
            }
        }
        Ok(flag.or_else(|| self.user.as_ref().and_then(|(_, u)| get(u))))
    }

    /// The `[provider.NAME]` settings of the managed file (with its path) and of the user's.
    pub fn provider_settings(
        &self,
        name: &str,
    ) -> (
        Option<(&Path, &crate::provider::settings::ProviderSettings)>,
        Option<&crate::provider::settings::ProviderSettings>,
    ) {
        let managed = self.managed.as_ref().and_then(|(p, m, _)| {
            m.provider
                .as_ref()
                .and_then(|t| t.get(name))
                .map(|s| (p.as_path(), s))
        });
        let user = self
            .user
            .as_ref()
            .and_then(|(_, u)| u.provider.as_ref().and_then(|t| t.get(name)));
        (managed, user)
    }

    /// The `[signing] pkcs11` key in force (managed file first, else the
    /// user's) and the file that names it.
    pub fn signing_pkcs11(&self) -> Option<(&Path, &stele_hsm::Pkcs11Config)> {
        let managed = self
            .managed
            .as_ref()
            .and_then(|(p, m, _)| m.signing.as_ref().map(|s| (p.as_path(), s.pkcs11.as_ref())));
        if let Some((p, k)) = managed {
            // A managed `[signing]` section decides, even without pkcs11
            // (then the file key is meant).
            return k.map(|k| (p, k));
        }
        self.user.as_ref().and_then(|(p, u)| {
            u.signing
                .as_ref()
                .and_then(|s| s.pkcs11.as_ref())
                .map(|k| (p.as_path(), k))
        })
    }

    /// Where the configuration came from, for `session.start`.
    pub fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "managed": self.managed.as_ref().map(|(p, _, _)| p.display().to_string()),
            "managed_sha256": self.managed.as_ref().map(|(_, _, d)| d.clone()),
            "user": self.user.as_ref().map(|(p, _)| p.display().to_string()),
        })
    }
}
