//! One live connection to an MCP server (rmcp client): a child process on
//! the host speaking JSON-RPC over stdin/stdout, or a streamable-HTTP
//! endpoint. Every wait has a deadline; every malformed or missing answer is
//! an [`McpError`], never a panic.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceError;
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, Command};

use super::config::{ServerSpec, Transport};

/// Largest single message accepted from a server (a line on stdio, an
/// event over HTTP). Larger answers are dropped by the transport and the
/// call then times out.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How much of a server's stderr is kept (the tail), for the log when it fails.
const STDERR_TAIL: usize = 8 * 1024;

/// The variables of stele's environment a stdio server inherits; everything
/// else (model API keys, …) stays out.
const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// Why an MCP operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum McpError {
    /// The server could not be started or reached.
    #[error("could not start server: {0}")]
    Start(String),
    /// The server did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server exited or the connection closed.
    #[error("the server exited or closed the connection{0}")]
    Closed(String),
    /// The server answered with something that is not a valid MCP message.
    #[error("malformed answer from the server: {0}")]
    Malformed(String),
    /// The server answered with a JSON-RPC error.
    #[error("the server returned an error: {0}")]
    Remote(String),
    /// The server was given up after too many crashes.
    #[error("server unavailable: {0}")]
    Unavailable(String),
}

impl McpError {
    /// A short machine-readable kind for the log.
    pub fn kind(&self) -> &'static str {
        match self {
            McpError::Start(_) => "start",
            McpError::Timeout(_) => "timeout",
            McpError::Closed(_) => "closed",
            McpError::Malformed(_) => "malformed",
            McpError::Remote(_) => "remote",
            McpError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the connection is no longer usable after this error.
    pub fn breaks_connection(&self) -> bool {
        match self {
            McpError::Closed(_) | McpError::Timeout(_) | McpError::Start(_) => true,
            McpError::Malformed(_) | McpError::Remote(_) | McpError::Unavailable(_) => false,
        }
    }
}

fn service_error(e: ServiceError) -> McpError {
    match e {
        ServiceError::McpError(d) => McpError::Remote(format!("{} ({:?})", d.message, d.code)),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
            McpError::Closed(String::new())
        }
        ServiceError::UnexpectedResponse => {
            McpError::Malformed("the answer does not have the shape of the request's result".into())
        }
        ServiceError::Timeout { timeout } => McpError::Timeout(timeout),
        other => McpError::Malformed(other.to_string()),
    }
}

/// A running server connection.
pub struct Connection {
    service: RunningService<RoleClient, ()>,
    child: Option<Child>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Start (stdio) or connect to (HTTP) the server and initialise the
    /// session, within the server's start-up deadline.
    pub async fn open(spec: &ServerSpec) -> Result<Self, McpError> {
        let deadline = spec.startup_timeout();
        match tokio::time::timeout(deadline, Self::open_inner(spec)).await {
            Ok(r) => r,
            Err(_) => Err(McpError::Timeout(deadline)),
        }
    }

    async fn open_inner(spec: &ServerSpec) -> Result<Self, McpError> {
        match &spec.transport {
            Transport::Stdio { command, args } => Self::open_stdio(spec, command, args).await,
            Transport::Http { url } => Self::open_http(spec, url).await,
        }
    }

    async fn open_stdio(
        spec: &ServerSpec,
        command: &str,
        args: &[String],
    ) -> Result<Self, McpError> {
        let mut cmd = Command::new(command);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a stop or a kill reaches what it spawned.
            .process_group(0);
        for k in INHERITED_ENV {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        for k in &spec.config.env_from_host {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.envs(&spec.config.env);
        if let Some(d) = &spec.config.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| McpError::Start(format!("{command}: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(McpError::Start("no pipes to the server".into()));
        };
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(mut err) = child.stderr.take() {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    t.extend(&buf[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL);
                    t.drain(..excess);
                }
            });
        }
        let transport =
            AsyncRwTransport::new(stdout, stdin).with_max_line_length(MAX_MESSAGE_BYTES);
        let service = rmcp::service::serve_client((), transport)
            .await
            .map_err(|e| McpError::Start(format!("initialisation failed: {e}")))?;
        Ok(Self {
            service,
            child: Some(child),
            stderr,
        })
    }

    async fn open_http(spec: &ServerSpec, url: &str) -> Result<Self, McpError> {
        // rustls needs a process-wide crypto provider; ring is the one the
        // workspace already uses. An error only means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_string())
            .max_sse_event_size(MAX_MESSAGE_BYTES);
        if let Some(var) = &spec.config.bearer_token_env {
            let token = std::env::var(var).map_err(|_| {
                McpError::Start(format!(
                    "bearer_token_env {var} is not set in stele's environment"
                ))
            })?;
            cfg = cfg.auth_header(token);
        }
        let transport = StreamableHttpClientTransport::from_config(cfg);
        let service = rmcp::service::serve_client((), transport)
            .await
            .map_err(|e| McpError::Start(format!("initialisation failed: {e}")))?;
        Ok(Self {
            service,
            child: None,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
        })
    }

    /// Process id of a stdio server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// What the server says it is (name, version), for the log.
    pub fn server_info(&self) -> serde_json::Value {
        let info = self
            .service
            .peer_info()
            .and_then(|i| serde_json::to_value(&*i).ok())
            .unwrap_or_default();
        serde_json::json!({
            "server_info": info.get("serverInfo"),
            "protocol": info.get("protocolVersion"),
        })
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&t.iter().copied().collect::<Vec<u8>>()).into_owned()
    }

    /// Whether the server process has exited or the connection closed;
    /// with the exit status when known.
    pub fn exited(&mut self) -> Option<String> {
        if let Some(c) = &mut self.child {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status.to_string());
            }
        }
        self.service
            .is_closed()
            .then(|| "the connection closed".to_string())
    }

    /// Every tool the server offers (all pages), as raw JSON objects.
    pub async fn list_tools(&self, deadline: Duration) -> Result<Vec<serde_json::Value>, McpError> {
        let tools = match tokio::time::timeout(deadline, self.service.list_all_tools()).await {
            Ok(r) => r.map_err(service_error)?,
            Err(_) => return Err(McpError::Timeout(deadline)),
        };
        tools
            .into_iter()
            .map(|t| serde_json::to_value(t).map_err(|e| McpError::Malformed(e.to_string())))
            .collect()
    }

    /// Call one tool; the result as raw JSON (`content`, `structuredContent`, `isError`).
    pub async fn call_tool(
        &self,
        tool: &str,
        arguments: Option<JsonObject>,
        deadline: Duration,
    ) -> Result<serde_json::Value, McpError> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = arguments;
        let result = match tokio::time::timeout(deadline, self.service.call_tool(params)).await {
            Ok(r) => r.map_err(service_error)?,
            Err(_) => return Err(McpError::Timeout(deadline)),
        };
        serde_json::to_value(result).map_err(|e| McpError::Malformed(e.to_string()))
    }

    /// Stop: close the session (a stdio server sees the end of its input and
    /// should exit), wait a moment, then kill its whole process group.
    pub async fn stop(mut self) -> Option<String> {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.service.close()).await;
        let mut c = self.child.take()?;
        // Taken before waiting: a reaped child no longer reports its pid.
        let pid = c.id();
        let exited = tokio::time::timeout(Duration::from_secs(1), c.wait()).await;
        // Whatever the server left running in its group goes with it.
        if let Some(pid) = pid {
            signal_group(pid);
        }
        if let Ok(Ok(s)) = exited {
            return Some(s.to_string());
        }
        let _ = c.start_kill();
        Some(
            match tokio::time::timeout(Duration::from_secs(3), c.wait()).await {
                Ok(Ok(s)) => s.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "did not exit".into(),
            },
        )
    }
}

/// Terminate the process group a stdio server leads.
fn signal_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; no
    // memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
