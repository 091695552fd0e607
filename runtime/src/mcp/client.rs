//! One live connection to an MCP server (rmcp client): a child process on
//! the host speaking JSON-RPC over stdin/stdout, or a streamable-HTTP
//! endpoint. Every wait has a deadline; every malformed or missing answer is
//! an [`McpError`], never a panic.

use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceError;
use tokio::process::{Child, Command};

use stele_sandbox::process::service::{ServiceProcess, ServiceSpec};

use super::config::{ServerSpec, Transport};
use super::stderr::StderrTail;

/// Largest single message accepted from a server (a line on stdio, an
/// event over HTTP). Larger answers are dropped by the transport and the
/// call then times out.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long a server that failed to start is given to exit on its own
/// (and its last stderr to be read) before it is killed.
const START_FAILURE_GRACE: Duration = Duration::from_secs(1);

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

/// A start that failed: why, and the server's exit status when it is known
/// (a server that exited during start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFailure {
    /// The error.
    pub error: McpError,
    /// How the server process ended, if it did.
    pub exit: Option<String>,
}

impl From<McpError> for OpenFailure {
    fn from(error: McpError) -> Self {
        Self { error, exit: None }
    }
}

/// How a stdio server is started.
#[derive(Debug)]
pub enum StdioLaunch {
    /// On the host, as stele's user, with a scrubbed environment.
    OnHost,
    /// In its own process sandbox.
    Sandboxed(Box<ServiceSpec>),
}

/// The server process behind a connection.
enum Process {
    /// A streamable-HTTP server: none of stele's.
    Remote,
    /// A child on the host.
    Host(Child),
    /// A sandboxed service.
    Sandboxed(ServiceProcess),
}

/// A running server connection.
pub struct Connection {
    service: RunningService<RoleClient, ()>,
    process: Process,
    stderr: StderrTail,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Start (stdio, as `launch` says) or connect to (HTTP) the server and
    /// initialise the session, within the server's start-up deadline. What
    /// a stdio server writes to stderr is kept in `stderr` from the start,
    /// so that a server failing during start-up leaves its last words.
    pub async fn open(
        spec: &ServerSpec,
        launch: StdioLaunch,
        stderr: &StderrTail,
    ) -> Result<Self, OpenFailure> {
        let deadline = spec.startup_timeout();
        match tokio::time::timeout(deadline, Self::open_inner(spec, launch, stderr)).await {
            Ok(r) => r,
            // Dropping the start kills a host child (kill_on_drop).
            Err(_) => Err(McpError::Timeout(deadline).into()),
        }
    }

    async fn open_inner(
        spec: &ServerSpec,
        launch: StdioLaunch,
        stderr: &StderrTail,
    ) -> Result<Self, OpenFailure> {
        match (&spec.transport, launch) {
            (Transport::Stdio { command, args }, StdioLaunch::OnHost) => {
                Self::open_stdio(spec, command, args, stderr).await
            }
            (Transport::Stdio { .. }, StdioLaunch::Sandboxed(service)) => {
                Self::open_sandboxed(*service, stderr).await
            }
            (Transport::Http { url }, _) => Ok(Self::open_http(spec, url).await?),
        }
    }

    /// Start the server in its process sandbox (fails closed: no sandbox,
    /// no server) and speak MCP over its pipes.
    async fn open_sandboxed(
        service: ServiceSpec,
        stderr: &StderrTail,
    ) -> Result<Self, OpenFailure> {
        let mut svc = tokio::task::spawn_blocking(move || ServiceProcess::start(service))
            .await
            .map_err(|e| McpError::Start(format!("sandbox start: {e}")))?
            .map_err(|e| McpError::Start(format!("sandbox: {e}")))?;
        let io = svc
            .take_io()
            .ok_or_else(|| McpError::Start("no pipes to the server".into()))?;
        let pipe_err = |e: std::io::Error| McpError::Start(format!("pipes to the server: {e}"));
        let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(io.stdin).map_err(pipe_err)?;
        let stdout =
            tokio::net::unix::pipe::Receiver::from_owned_fd(io.stdout).map_err(pipe_err)?;
        let err = tokio::net::unix::pipe::Receiver::from_owned_fd(io.stderr).map_err(pipe_err)?;
        stderr.follow(err);
        let transport =
            AsyncRwTransport::new(stdout, stdin).with_max_line_length(MAX_MESSAGE_BYTES);
        let service = match rmcp::service::serve_client((), transport).await {
            Ok(s) => s,
            Err(e) => {
                let exit = Some(stop_sandboxed(svc).await);
                return Err(OpenFailure {
                    error: McpError::Start(format!("initialisation failed: {e}")),
                    exit,
                });
            }
        };
        Ok(Self {
            service,
            process: Process::Sandboxed(svc),
            stderr: stderr.clone(),
        })
    }

    async fn open_stdio(
        spec: &ServerSpec,
        command: &str,
        args: &[String],
        stderr: &StderrTail,
    ) -> Result<Self, OpenFailure> {
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
            return Err(McpError::Start("no pipes to the server".into()).into());
        };
        if let Some(err) = child.stderr.take() {
            stderr.follow(err);
        }
        let transport =
            AsyncRwTransport::new(stdout, stdin).with_max_line_length(MAX_MESSAGE_BYTES);
        let service = match rmcp::service::serve_client((), transport).await {
            Ok(s) => s,
            Err(e) => {
                let exit = Some(stop_child(child, START_FAILURE_GRACE).await);
                return Err(OpenFailure {
                    error: McpError::Start(format!("initialisation failed: {e}")),
                    exit,
                });
            }
        };
        Ok(Self {
            service,
            process: Process::Host(child),
            stderr: stderr.clone(),
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
            process: Process::Remote,
            stderr: StderrTail::new(),
        })
    }

    /// Host process id of a stdio server.
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Remote => None,
            Process::Host(c) => c.id(),
            Process::Sandboxed(s) => Some(s.pid()),
        }
    }

    /// How a sandboxed server is confined, as set up; `None` on the host.
    pub fn sandbox_info(&self) -> Option<serde_json::Value> {
        match &self.process {
            Process::Sandboxed(s) => Some(s.info().to_json()),
            Process::Remote | Process::Host(_) => None,
        }
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

    /// The last lines the server wrote to stderr (shared: it stays
    /// readable after the connection is stopped).
    pub fn stderr_tail(&self) -> &StderrTail {
        &self.stderr
    }

    /// Whether the server process has exited or the connection closed;
    /// with the exit status when known.
    pub fn exited(&mut self) -> Option<String> {
        match &mut self.process {
            Process::Host(c) => {
                if let Ok(Some(status)) = c.try_wait() {
                    return Some(status.to_string());
                }
            }
            Process::Sandboxed(s) => {
                if let Some(e) = s.try_wait() {
                    return Some(e.to_string());
                }
            }
            Process::Remote => {}
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
        match std::mem::replace(&mut self.process, Process::Remote) {
            Process::Remote => None,
            Process::Sandboxed(s) => Some(stop_sandboxed(s).await),
            Process::Host(c) => Some(stop_child(c, Duration::from_secs(1)).await),
        }
    }
}

/// Give a host server `grace` to exit on its own, then kill its whole
/// process group; its exit status.
async fn stop_child(mut c: Child, grace: Duration) -> String {
    // Taken before waiting: a reaped child no longer reports its pid.
    let pid = c.id();
    let exited = tokio::time::timeout(grace, c.wait()).await;
    // Whatever the server left running in its group goes with it.
    if let Some(pid) = pid {
        signal_group(pid);
    }
    if let Ok(Ok(s)) = exited {
        return s.to_string();
    }
    let _ = c.start_kill();
    match tokio::time::timeout(Duration::from_secs(3), c.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "did not exit".into(),
    }
}

/// Give a sandboxed server a second to exit on the end of its input, then
/// kill it (its whole pid namespace) and wait until its connections are
/// reported. The waits block, so they run off the async workers.
async fn stop_sandboxed(s: ServiceProcess) -> String {
    let stopped = tokio::task::spawn_blocking(move || {
        let exited = s.wait_timeout(Duration::from_secs(1));
        s.stop().or(exited)
    })
    .await;
    match stopped {
        Ok(Some(e)) => e.to_string(),
        Ok(None) => "did not report an exit".into(),
        Err(e) => format!("stop failed: {e}"),
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
