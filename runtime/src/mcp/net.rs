//! The `Mediator` of a sandboxed MCP server: its egress proxy asks here
//! about every connection the server opens.
//!
//! A destination must be among the server's configured `hosts` *and* be
//! permitted `net.connect` by policy. A host outside the list is refused
//! before policy is asked, with a `policy.decision` (deny) entry naming the
//! server and its configuration; a listed one goes through the gate like a
//! connection from the agent's sandbox (decision, `net.connect` intent,
//! `net.close` result with bytes and duration). Every entry carries
//! `data.mcp_server`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use stele_audit::{Outcome, Status};
use stele_policy::SystemResolver;
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Ticket, Verdict,
};

use super::sandbox_config::SandboxSpec;
use crate::gate::net::Connection;
use crate::gate::{Gate, Permit};

/// Decides the connections of one sandboxed MCP server.
pub struct McpNetMediator {
    gate: Arc<Gate>,
    server: String,
    /// The configuration file that names the server (for refusals).
    source: String,
    sandbox: SandboxSpec,
    open: Mutex<HashMap<u64, Permit>>,
}

impl std::fmt::Debug for McpNetMediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpNetMediator")
            .field("server", &self.server)
            .field("hosts", &self.sandbox.hosts)
            .finish_non_exhaustive()
    }
}

impl McpNetMediator {
    /// The mediator of server `server` (configured in `source`).
    pub fn new(gate: Arc<Gate>, server: &str, source: &str, sandbox: SandboxSpec) -> Self {
        Self {
            gate,
            server: server.to_string(),
            source: source.to_string(),
            sandbox,
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Mediator for McpNetMediator {
    fn file_access(&self, _req: &FileRequest) -> Verdict {
        // A service has no mediated workspace; nothing asks this.
        Verdict::Deny("an MCP server's sandbox has no workspace".into())
    }

    fn file_closed(&self, _report: &FileCloseReport) {}

    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        let refuse = |e: &dyn std::fmt::Display| {
            tracing::error!("net.connect of MCP server {}: refusing: {e}", self.server);
            NetVerdict::Deny(format!("audit/policy failure, refusing: {e}").into())
        };
        let data = serde_json::json!({
            "mcp_server": self.server,
            "exec": req.requester.exec_id,
        });
        // The host as the server's client wrote it, canonicalised as the
        // agent's proxy and `stele policy explain` do; refusals are logged.
        let mut attempt = match self.gate.net_attempt(req, data) {
            Ok(Ok(a)) => a,
            Ok(Err(d)) => return NetVerdict::Deny(d.into()),
            Err(e) => return refuse(&e),
        };
        let listed = self
            .sandbox
            .allows(attempt.host.name(), attempt.host.port());
        attempt.data["in_server_hosts"] = serde_json::json!(listed);
        if !listed {
            let reason = format!(
                "net.connect to {}:{} denied: not among the hosts of [mcp.{}.sandbox] ({})",
                attempt.host.name(),
                attempt.host.port(),
                self.server,
                self.source
            );
            return match self.gate.net_refuse(&attempt, reason.clone()) {
                Ok(d) => NetVerdict::Deny(d.into()),
                Err(e) => {
                    tracing::error!("could not record a refused MCP connection: {e}");
                    NetVerdict::Deny(reason.into())
                }
            };
        }
        match self.gate.net_connect(attempt, &SystemResolver) {
            Ok(Connection::Permitted { permit, address }) => {
                let ticket = Ticket(permit.intent_seq());
                self.open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(ticket.0, permit);
                NetVerdict::Allow { ticket, address }
            }
            Ok(Connection::Denied(d)) => NetVerdict::Deny(d.into()),
            // The log cannot be written: no connection.
            Err(e) => refuse(&e),
        }
    }

    fn net_closed(&self, report: &NetCloseReport) {
        let Some(permit) = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&report.ticket.0)
        else {
            return;
        };
        let mut o = Outcome::status(if report.error.is_some() {
            Status::Error
        } else {
            Status::Ok
        });
        o.bytes_in = Some(report.bytes_in);
        o.bytes_out = Some(report.bytes_out);
        o.duration_ms = Some(report.duration.as_millis() as u64);
        o.detail = report.error.clone();
        let data = serde_json::json!({ "mcp_server": self.server });
        if let Err(e) = self.gate.complete(permit, o, Vec::new(), Some(data)) {
            tracing::error!("could not record the close of an MCP server's connection: {e}");
        }
    }
}
