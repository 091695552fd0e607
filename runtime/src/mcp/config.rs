//! MCP servers in the configuration: `[mcp.NAME]` tables in the managed and
//! user files. A server's configured name is its identity in policy and in
//! the log; what the server calls itself is never used.
//!
//! ```toml
//! [mcp.files]
//! command = "node"
//! args = ["/opt/mcp/server-filesystem/dist/index.js", "/srv/shared"]
//! env = { LOG_LEVEL = "warn" }          # set for the server only
//! env_from_host = ["GMAIL_TOKEN"]       # copied from stele's environment
//! teams = ["finance"]                   # only for members of these teams
//! call_timeout_s = 60
//!
//! [mcp.tickets]
//! url = "https://mcp.example.com/mcp"
//! bearer_token_env = "TICKETS_TOKEN"    # read from stele's environment
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::sandbox_config::{self, McpSandboxConfig, SandboxSetting, SandboxSpec};
use crate::config::Layers;

/// One configured MCP server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Program to start (stdio transport); looked up in `PATH` when bare.
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory of the server process.
    pub cwd: Option<PathBuf>,
    /// Environment of the server process (credentials belong here or in
    /// `env_from_host`); nothing else of stele's environment is passed on
    /// except `PATH`, `HOME`, `LANG`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables copied from stele's own environment into the server's.
    #[serde(default)]
    pub env_from_host: Vec<String>,
    /// Streamable-HTTP endpoint (instead of `command`).
    pub url: Option<String>,
    /// Environment variable of stele holding a bearer token for `url`.
    pub bearer_token_env: Option<String>,
    /// Only principals in one of these teams get this server (empty: everyone).
    #[serde(default)]
    pub teams: Vec<String>,
    /// Seconds to start and initialise the server and list its tools [default 30].
    pub startup_timeout_s: Option<u64>,
    /// Seconds one tool call may take [default 60].
    pub call_timeout_s: Option<u64>,
    /// Restarts after a crash before the server is given up for the session [default 3].
    pub max_restarts: Option<u32>,
    /// Run the (stdio) server in its own process sandbox: `true` or a
    /// `[mcp.NAME.sandbox]` table (see `sandbox_config`).
    pub sandbox: Option<SandboxSetting>,
}

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
    },
    /// Streamable HTTP.
    Http {
        /// Endpoint.
        url: String,
    },
}

/// Why MCP configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum McpConfigError {
    /// A server entry is invalid.
    #[error("config {file}, [mcp.{server}]: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The server's table.
        server: String,
        /// What is wrong.
        message: String,
    },
}

/// A validated server: name, transport and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Configured name (the identity in policy: `McpServer::"NAME"`).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// The raw settings.
    pub config: McpServerConfig,
    /// Which file configured it.
    pub source: String,
    /// Its process sandbox; `None`: it runs on the host.
    pub sandbox: Option<SandboxSpec>,
}

impl ServerSpec {
    /// Start-up (spawn, initialise, list) deadline.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.config.startup_timeout_s.unwrap_or(30).clamp(1, 600))
    }

    /// Deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.config.call_timeout_s.unwrap_or(60).clamp(1, 3600))
    }

    /// Restarts allowed after crashes.
    pub fn max_restarts(&self) -> u32 {
        self.config.max_restarts.unwrap_or(3).min(100)
    }

    /// The credentials this server is given (its `env` values, the
    /// `env_from_host` values and the bearer token), by variable name.
    /// Values shorter than 6 characters are not treated as secrets.
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for k in self
            .config
            .env_from_host
            .iter()
            .chain(self.config.bearer_token_env.iter())
        {
            if let Ok(v) = std::env::var(k) {
                out.push((k.clone(), v));
            }
        }
        out.retain(|(_, v)| v.len() >= 6);
        // Longest first, so a secret containing another is replaced whole.
        out.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        out
    }

    /// `text` with every credential of this server replaced by
    /// `[redacted:NAME]`: what a server echoes of its own credentials (in a
    /// result or on stderr) reaches neither the model nor the log.
    pub fn scrub(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (name, value) in self.secrets() {
            if t.contains(&value) {
                t = t.replace(&value, &format!("[redacted:{name}]"));
            }
        }
        t
    }

    /// What the log records about the server: never environment values or tokens.
    pub fn describe(&self) -> serde_json::Value {
        let mut env_names: Vec<&String> = self.config.env.keys().collect();
        env_names.extend(self.config.env_from_host.iter());
        let (transport, target) = match &self.transport {
            Transport::Stdio { command, args } => (
                "stdio",
                serde_json::json!({ "command": command, "args": args }),
            ),
            Transport::Http { url } => ("http", serde_json::json!({ "url": url })),
        };
        serde_json::json!({
            "server": self.name,
            "transport": transport,
            "target": target,
            "env_names": env_names,
            "bearer_token_env": self.config.bearer_token_env,
            "teams": self.config.teams,
            "config_file": self.source,
            "startup_timeout_s": self.startup_timeout().as_secs(),
            "call_timeout_s": self.call_timeout().as_secs(),
            "max_restarts": self.max_restarts(),
            // null: started on the host, outside any sandbox.
            "sandbox": self.sandbox.as_ref().map(SandboxSpec::describe),
        })
    }
}

/// True for a valid server name: lowercase ASCII letters, digits, `-` and
/// single `_`, starting with a letter or digit, at most 32 characters. No
/// `__`, so `mcp__SERVER__TOOL` always splits back to the same server.
pub fn valid_server_name(name: &str) -> bool {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= 32
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The process sandbox of a stdio server: as configured, or with defaults
/// when `required_by` (a configuration file) requires one.
fn sandbox_of(
    cfg: &McpServerConfig,
    transport: &Transport,
    required_by: Option<&str>,
) -> Result<Option<SandboxSpec>, String> {
    if matches!(transport, Transport::Http { .. }) {
        return match cfg.sandbox {
            Some(_) => Err("sandbox applies to stdio servers only".into()),
            None => Ok(None),
        };
    }
    let required = required_by.map(str::to_string);
    match (&cfg.sandbox, required_by) {
        (Some(SandboxSetting::Off), Some(m)) => Err(format!(
            "{m} requires stdio servers to run sandboxed ([mcp_settings] require_sandbox); \
             sandbox = false is not allowed"
        )),
        (Some(SandboxSetting::Off), None) | (None, None) => Ok(None),
        (Some(SandboxSetting::On(c)), _) => sandbox_config::validate(c, required).map(Some),
        (None, Some(_)) => {
            sandbox_config::validate(&McpSandboxConfig::default(), required).map(Some)
        }
    }
}

fn validate(
    file: &str,
    name: &str,
    cfg: &McpServerConfig,
    sandbox_required_by: Option<&str>,
) -> Result<ServerSpec, McpConfigError> {
    let bad = |message: String| McpConfigError::Invalid {
        file: file.to_string(),
        server: name.to_string(),
        message,
    };
    if !valid_server_name(name) {
        return Err(bad(
            "server names are lowercase letters, digits, '-' and single '_' (at most 32)".into(),
        ));
    }
    let transport = match (&cfg.command, &cfg.url) {
        (Some(c), None) if !c.trim().is_empty() => Transport::Stdio {
            command: c.clone(),
            args: cfg.args.clone(),
        },
        (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
            Transport::Http { url: u.clone() }
        }
        (None, Some(u)) => {
            return Err(bad(format!(
                "url {u:?} must start with http:// or https://"
            )))
        }
        (Some(_), Some(_)) => return Err(bad("give either command or url, not both".into())),
        (Some(_), None) | (None, None) => {
            return Err(bad(
                "give command (stdio server) or url (HTTP server)".into()
            ))
        }
    };
    if matches!(transport, Transport::Http { .. })
        && (!cfg.args.is_empty() || !cfg.env.is_empty() || !cfg.env_from_host.is_empty())
    {
        return Err(bad("args and env apply to stdio servers only".into()));
    }
    if matches!(transport, Transport::Stdio { .. }) && cfg.bearer_token_env.is_some() {
        return Err(bad(
            "bearer_token_env applies to HTTP servers; give stdio servers env".into(),
        ));
    }
    let sandbox = sandbox_of(cfg, &transport, sandbox_required_by).map_err(bad)?;
    Ok(ServerSpec {
        name: name.to_string(),
        transport,
        config: cfg.clone(),
        source: file.to_string(),
        sandbox,
    })
}

/// The servers of the configuration layers: the managed file's, then the
/// user's (a name the managed file configures cannot be replaced by the
/// user). Servers limited to teams the principal is not in are left out.
pub fn servers(layers: &Layers, teams: &[String]) -> Result<Vec<ServerSpec>, McpConfigError> {
    let mut out: BTreeMap<String, ServerSpec> = BTreeMap::new();
    // A requirement to sandbox holds for every server of both files; the
    // user's file can add it for itself, never lift the managed one.
    let managed_req = layers
        .managed
        .as_ref()
        .filter(|(_, f, _)| f.mcp_settings.as_ref().is_some_and(|s| s.require_sandbox))
        .map(|(p, _, _)| p.display().to_string());
    let user_req = layers
        .user
        .as_ref()
        .filter(|(_, f)| f.mcp_settings.as_ref().is_some_and(|s| s.require_sandbox))
        .map(|(p, _)| p.display().to_string());
    let required_by = managed_req.or(user_req);
    let mut files = Vec::new();
    if let Some((path, f, _)) = &layers.managed {
        files.push((path.display().to_string(), f.mcp.clone()));
    }
    if let Some((path, f)) = &layers.user {
        files.push((path.display().to_string(), f.mcp.clone()));
    }
    for (file, table) in files {
        for (name, cfg) in table.unwrap_or_default() {
            let spec = validate(&file, &name, &cfg, required_by.as_deref())?;
            out.entry(name).or_insert(spec);
        }
    }
    Ok(out
        .into_values()
        .filter(|s| s.config.teams.is_empty() || s.config.teams.iter().any(|t| teams.contains(t)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_smuggle_separators() {
        assert!(valid_server_name("gmail"));
        assert!(valid_server_name("files-2"));
        assert!(valid_server_name("my_files"));
        assert!(!valid_server_name("a__b"));
        assert!(!valid_server_name("Gmail"));
        assert!(!valid_server_name("_x"));
        assert!(!valid_server_name(""));
        assert!(!valid_server_name("a/b"));
    }

    fn file(servers: &[(&str, &str, &[&str])]) -> crate::config::ConfigFile {
        crate::config::ConfigFile {
            mcp: Some(
                servers
                    .iter()
                    .map(|(name, cmd, teams)| {
                        (
                            name.to_string(),
                            McpServerConfig {
                                command: Some(cmd.to_string()),
                                teams: teams.iter().map(|t| t.to_string()).collect(),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn managed_names_win_and_teams_filter() {
        let layers = Layers {
            managed: Some((
                "/etc/stele/config.toml".into(),
                file(&[("gmail", "managed-gmail", &["finance"])]),
                String::new(),
            )),
            user: Some((
                "/home/a/.config/stele/config.toml".into(),
                file(&[("gmail", "my-gmail", &[]), ("notes", "notes-server", &[])]),
            )),
        };
        let finance = servers(&layers, &["finance".to_string()]).unwrap();
        let names: Vec<_> = finance
            .iter()
            .map(|s| (s.name.as_str(), s.source.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("gmail", "/etc/stele/config.toml"),
                ("notes", "/home/a/.config/stele/config.toml")
            ]
        );
        let other = servers(&layers, &["ops".to_string()]).unwrap();
        assert_eq!(other.len(), 1, "the managed gmail is for finance only");
        assert_eq!(other[0].name, "notes");
    }

    #[test]
    fn managed_file_can_require_sandboxing() {
        let mut managed = file(&[]);
        managed.mcp_settings = Some(super::super::sandbox_config::McpSettings {
            require_sandbox: true,
        });
        let mut user = file(&[("notes", "notes-server", &[])]);
        let layers = Layers {
            managed: Some(("/etc/stele/config.toml".into(), managed, String::new())),
            user: Some(("/home/a/.config/stele/config.toml".into(), user.clone())),
        };
        let s = servers(&layers, &[]).unwrap();
        let sb = s[0].sandbox.as_ref().expect("sandboxed by requirement");
        assert_eq!(sb.required_by.as_deref(), Some("/etc/stele/config.toml"));
        assert!(sb.hosts.is_empty());
        assert_eq!(
            s[0].describe()["sandbox"]["required_by"],
            "/etc/stele/config.toml"
        );
        // The user cannot opt out.
        if let Some(m) = user.mcp.as_mut() {
            if let Some(c) = m.get_mut("notes") {
                c.sandbox = Some(SandboxSetting::Off);
            }
        }
        let layers = Layers {
            user: Some(("/home/a/.config/stele/config.toml".into(), user)),
            ..layers
        };
        let e = servers(&layers, &[]).unwrap_err().to_string();
        assert!(
            e.contains("require_sandbox") && e.contains("[mcp.notes]"),
            "{e}"
        );
        // Without the requirement, a server runs on the host unless it asks.
        let plain = Layers {
            managed: None,
            user: Some(("/u.toml".into(), file(&[("notes", "notes-server", &[])]))),
        };
        assert!(servers(&plain, &[]).unwrap()[0].sandbox.is_none());
        assert!(servers(&plain, &[]).unwrap()[0].describe()["sandbox"].is_null());
    }

    #[test]
    fn sandbox_is_for_stdio_servers() {
        let c = McpServerConfig {
            url: Some("https://x.example/mcp".into()),
            sandbox: Some(SandboxSetting::On(McpSandboxConfig::default())),
            ..Default::default()
        };
        let e = validate("f.toml", "x", &c, None).unwrap_err().to_string();
        assert!(e.contains("stdio servers only"), "{e}");
        // HTTP servers are not processes stele starts: a requirement leaves them be.
        let c = McpServerConfig {
            url: Some("https://x.example/mcp".into()),
            ..Default::default()
        };
        assert!(validate("f.toml", "x", &c, Some("/etc/stele/config.toml"))
            .unwrap()
            .sandbox
            .is_none());
    }

    #[test]
    fn command_or_url() {
        let c = McpServerConfig {
            command: Some("node".into()),
            url: Some("http://x".into()),
            ..Default::default()
        };
        let e = validate("f.toml", "x", &c, None).unwrap_err().to_string();
        assert!(e.contains("f.toml") && e.contains("[mcp.x]"), "{e}");
        let c = McpServerConfig {
            url: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(validate("f.toml", "x", &c, None).is_err());
        let c = McpServerConfig {
            command: Some("node".into()),
            env: [("TOKEN".to_string(), "s3cret".to_string())].into(),
            ..Default::default()
        };
        let s = validate("f.toml", "x", &c, None).unwrap();
        assert!(!s.describe().to_string().contains("s3cret"));
    }
}
