//! The lifecycle of one configured server in a session: started on first
//! use (a `mcp.list` decision on the server each time), restarted after a
//! crash or a hung call with exponential backoff, given up after too many
//! failures, stopped at the end of the session. Every step is a log entry.

use std::time::{Duration, Instant};

use stele_audit::{Disclosure, Event, EventKind, Outcome, PayloadInput, Status};
use stele_policy::{Action, Resource};

use std::sync::Arc;

use stele_sandbox::process::service::ServiceNetwork;

use super::client::{Connection, McpError, OpenFailure, StdioLaunch};
use super::config::ServerSpec;
use super::net::McpNetMediator;
use super::sandboxed;
use super::stderr::StderrTail;
use crate::gate::{ActionRequest, Authorization, Gate, GateError};

/// First backoff after a failure; doubled per further failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the end of a failed server's stderr is waited for.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// Why a server is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunning {
    /// Policy refuses to start it (`mcp.list` on the server); logged.
    Denied(String),
    /// It failed and may be retried after the backoff, or was given up.
    Failed(McpError),
}

/// One server's state in a session.
#[derive(Debug)]
pub struct Slot {
    /// Its configuration.
    pub spec: ServerSpec,
    conn: Option<Connection>,
    starts: u32,
    failures: u32,
    not_before: Option<Instant>,
    given_up: Option<String>,
    denied: Option<String>,
}

impl Slot {
    /// A server not yet started.
    pub fn new(spec: ServerSpec) -> Self {
        Self {
            spec,
            conn: None,
            starts: 0,
            failures: 0,
            not_before: None,
            given_up: None,
            denied: None,
        }
    }

    /// The running connection, if any.
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// Whether the running server has exited (with its status).
    pub fn exited(&mut self) -> Option<String> {
        self.conn.as_mut().and_then(Connection::exited)
    }

    /// Whether a start would have to wait for the backoff to elapse.
    pub fn in_backoff(&self) -> bool {
        self.not_before.is_some_and(|t| Instant::now() < t)
    }

    /// Make sure the server runs: notice a crash, wait out the backoff,
    /// decide `mcp.list` on the server, start it and log the outcome.
    pub fn ensure_running(
        &mut self,
        gate: &Arc<Gate>,
        rt: &tokio::runtime::Handle,
    ) -> Result<Result<(), NotRunning>, GateError> {
        if let Some(reason) = &self.denied {
            return Ok(Err(NotRunning::Denied(reason.clone())));
        }
        if let Some(conn) = &mut self.conn {
            match conn.exited() {
                None => return Ok(Ok(())),
                Some(status) => {
                    let err = McpError::Closed(format!(" ({status})"));
                    self.fail(gate, rt, "crashed", &err)?;
                }
            }
        }
        if let Some(why) = &self.given_up {
            return Ok(Err(NotRunning::Failed(McpError::Unavailable(why.clone()))));
        }
        let restart = self.starts > 0;
        if restart && self.starts > self.spec.max_restarts() {
            let why = format!(
                "{} failed {} time(s); restarts are limited to {}",
                self.spec.name,
                self.failures,
                self.spec.max_restarts()
            );
            self.lifecycle(gate, "gave_up", Status::Error, Some(why.clone()), None)?;
            self.given_up = Some(why.clone());
            return Ok(Err(NotRunning::Failed(McpError::Unavailable(why))));
        }
        let wait = self
            .not_before
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        let mut req = ActionRequest::new(
            Action::McpList,
            Resource::McpServer {
                name: self.spec.name.clone(),
            },
        );
        // A sandboxed server's grants are worked out now, so the start
        // entry records exactly what it will be given.
        let prepared = self
            .spec
            .sandbox
            .as_ref()
            .map(|sb| sandboxed::prepare(&self.spec, sb));
        let mut data = self.spec.describe();
        if let Some(o) = data.as_object_mut() {
            o.insert(
                "phase".into(),
                (if restart { "restart" } else { "start" }).into(),
            );
            o.insert("attempt".into(), (self.starts + 1).into());
            o.insert("backoff_ms".into(), (wait.as_millis() as u64).into());
            if let (Some(p), Some(serde_json::Value::Object(sb))) =
                (&prepared, o.get_mut("sandbox"))
            {
                match p {
                    Ok(p) => sb.insert("start".into(), p.describe()),
                    Err(e) => sb.insert("error".into(), e.clone().into()),
                };
            }
        }
        req.data = Some(data);
        req.shown = Some(format!(
            "Start the MCP server {:?} ({}) and list its tools",
            self.spec.name,
            self.spec.describe()["target"]
        ));
        match gate.authorize(req)? {
            Authorization::Denied(d) => {
                self.denied = Some(d.reason.clone());
                return Ok(Err(NotRunning::Denied(d.reason)));
            }
            Authorization::Permitted(_decided) => {}
        }
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        self.starts += 1;
        let started = Instant::now();
        let launch = match self.launch(gate, prepared) {
            Ok(l) => l,
            Err(e) => {
                self.fail(gate, rt, "start_failed", &e)?;
                return Ok(Err(NotRunning::Failed(e)));
            }
        };
        let stderr = StderrTail::new();
        match rt.block_on(Connection::open(&self.spec, launch, &stderr)) {
            Ok(conn) => {
                let mut o = Outcome::status(Status::Ok);
                o.duration_ms = Some(started.elapsed().as_millis() as u64);
                let data = serde_json::json!({
                    "phase": "started",
                    "server": self.spec.name,
                    "pid": conn.pid(),
                    "server_info": conn.server_info(),
                    "attempt": self.starts,
                    // How it is confined, as set up (null: on the host).
                    "sandbox": conn.sandbox_info(),
                });
                self.conn = Some(conn);
                gate.log()
                    .append_blocking(self.event(gate).with_outcome(o).with_data(data))?;
                Ok(Ok(()))
            }
            Err(OpenFailure { error, exit }) => {
                // No connection is left, but what the server said is.
                let tail = rt.block_on(stderr.settled(STDERR_GRACE));
                self.record_failure(gate, "start_failed", &error, exit, &tail)?;
                Ok(Err(NotRunning::Failed(error)))
            }
        }
    }

    /// How to start this server: on the host, or in its sandbox with its
    /// connections decided by an [`McpNetMediator`] (allowed hosts + policy).
    fn launch(
        &self,
        gate: &Arc<Gate>,
        prepared: Option<Result<sandboxed::Prepared, String>>,
    ) -> Result<StdioLaunch, McpError> {
        let (Some(sandbox), Some(prepared)) = (&self.spec.sandbox, prepared) else {
            return Ok(StdioLaunch::OnHost);
        };
        let prepared = prepared.map_err(|e| McpError::Start(format!("sandbox: {e}")))?;
        let mediator = McpNetMediator::new(
            gate.clone(),
            &self.spec.name,
            &self.spec.source,
            sandbox.clone(),
        );
        let network = ServiceNetwork::EgressProxy(Arc::new(mediator));
        let id = format!("mcp:{}", self.spec.name);
        Ok(StdioLaunch::Sandboxed(Box::new(
            prepared.service(&id, network),
        )))
    }

    /// Record a failure (crash, failed start, hung call): stop what is
    /// left, log it with the stderr tail, and set the backoff.
    pub fn fail(
        &mut self,
        gate: &Gate,
        rt: &tokio::runtime::Handle,
        phase: &str,
        err: &McpError,
    ) -> Result<(), GateError> {
        let (stderr, status) = match self.conn.take() {
            Some(c) => {
                let tail = c.stderr_tail().clone();
                let status = rt.block_on(c.stop());
                // Stopped: what it wrote last is in the pipe.
                (rt.block_on(tail.settled(STDERR_GRACE)), status)
            }
            None => (String::new(), None),
        };
        self.record_failure(gate, phase, err, status, &stderr)
    }

    /// Log a failure of the server (which is no longer running) with its
    /// exit status and stderr tail, and set the backoff.
    fn record_failure(
        &mut self,
        gate: &Gate,
        phase: &str,
        err: &McpError,
        status: Option<String>,
        stderr: &str,
    ) -> Result<(), GateError> {
        self.failures += 1;
        let backoff = BACKOFF_START
            .saturating_mul(1u32 << (self.failures - 1).min(10))
            .min(BACKOFF_MAX);
        self.not_before = Some(Instant::now() + backoff);
        let mut o = Outcome::status(match err {
            McpError::Timeout(_) => Status::Timeout,
            _ => Status::Error,
        });
        o.detail = Some(err.to_string());
        let mut ev = self
            .event(gate)
            .with_outcome(o)
            .with_data(serde_json::json!({
                "phase": phase,
                "server": self.spec.name,
                "error": err.kind(),
                "exit": status,
                "failures": self.failures,
                "next_start_after_ms": backoff.as_millis() as u64,
            }));
        if let Some(p) = self.stderr_payload(stderr) {
            ev = ev.with_payload(p);
        }
        gate.log().append_blocking(ev)?;
        Ok(())
    }

    /// The server's stderr tail as a payload, its credentials redacted;
    /// none when it wrote nothing.
    fn stderr_payload(&self, stderr: &str) -> Option<PayloadInput> {
        (!stderr.is_empty()).then(|| PayloadInput {
            role: "stderr".into(),
            media: "text/plain".into(),
            body: self.spec.scrub(stderr).into_bytes(),
            disclosure: Disclosure::CommitmentOnly,
        })
    }

    /// Log that the running server's tool list could not be used (a
    /// malformed or refused answer that leaves the connection up): a
    /// `list_failed` entry with the stderr tail so far. The server keeps
    /// running; its tools are not offered.
    pub fn list_failed(&self, gate: &Gate, err: &McpError) -> Result<(), GateError> {
        let mut o = Outcome::status(Status::Error);
        o.detail = Some(err.to_string());
        let mut ev = self
            .event(gate)
            .with_outcome(o)
            .with_data(serde_json::json!({
                "phase": "list_failed",
                "server": self.spec.name,
                "error": err.kind(),
            }));
        let tail = self.conn.as_ref().map(|c| c.stderr_tail().text());
        if let Some(p) = tail.and_then(|t| self.stderr_payload(&t)) {
            ev = ev.with_payload(p);
        }
        gate.log().append_blocking(ev)?;
        Ok(())
    }

    /// Stop the server at the end of the session (logged when it ran).
    pub fn stop(&mut self, gate: &Gate, rt: &tokio::runtime::Handle) -> Result<(), GateError> {
        let Some(c) = self.conn.take() else {
            return Ok(());
        };
        let status = rt.block_on(c.stop());
        self.lifecycle(gate, "stopped", Status::Ok, status, None)
    }

    /// A plain `mcp.list` entry about this server.
    pub fn lifecycle(
        &self,
        gate: &Gate,
        phase: &str,
        status: Status,
        detail: Option<String>,
        extra: Option<serde_json::Value>,
    ) -> Result<(), GateError> {
        let mut o = Outcome::status(status);
        o.detail = detail;
        let mut data = serde_json::json!({ "phase": phase, "server": self.spec.name });
        if let (Some(d), Some(serde_json::Value::Object(x))) = (data.as_object_mut(), extra) {
            d.extend(x);
        }
        gate.log()
            .append_blocking(self.event(gate).with_outcome(o).with_data(data))?;
        Ok(())
    }

    fn event(&self, gate: &Gate) -> Event {
        let t = stele_audit::Target {
            server: Some(self.spec.name.clone()),
            ..Default::default()
        };
        Event::new(EventKind::McpList, gate.actor().clone())
            .in_session(gate.session_id())
            .with_target(t)
    }
}
