//! The MCP servers of a session and the tools they offer the model.
//!
//! A tool's identity is the configured server name plus the tool's own
//! name; the model sees it as `mcp__SERVER__TOOL` (tool characters the
//! model APIs do not accept become `_`). Server names cannot contain `__`
//! and built-in tools never start with `mcp__`, so no server can offer a
//! tool under another server's name or a built-in name: the mapping back is
//! stele's table, never a parse of what the server said.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use stele_policy::{Action, Resource};

use super::client::McpError;
use super::config::ServerSpec;
use super::server::{NotRunning, Slot};
use crate::gate::{ActionRequest, Gate, GateError};
use crate::provider::ToolSpec;

/// Prefix of every model-facing MCP tool name.
pub const PREFIX: &str = "mcp__";

/// Longest tool name the model APIs accept.
const MAX_NAME: usize = 64;

/// One offered tool.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    /// Configured server name.
    pub server: String,
    /// The tool's name on the server.
    pub tool: String,
    /// Its input schema.
    pub input_schema: Value,
    /// What the model sees.
    pub spec: ToolSpec,
}

/// The MCP servers of one session.
pub struct McpRegistry {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    slots: BTreeMap<String, Mutex<Slot>>,
    /// Model-facing name → tool, for servers already listed.
    offered: Mutex<BTreeMap<String, OfferedTool>>,
    /// Servers whose listing is done (offered or refused).
    listed: Mutex<BTreeMap<String, ()>>,
}

impl std::fmt::Debug for McpRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpRegistry")
            .field("servers", &self.slots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The model-facing name of `tool` on `server`, unique among `taken`.
pub fn model_name(server: &str, tool: &str, taken: &BTreeMap<String, OfferedTool>) -> String {
    let clean: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base: String = format!("{PREFIX}{server}__{clean}")
        .chars()
        .take(MAX_NAME)
        .collect();
    if !taken.contains_key(&base) {
        return base;
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let keep = MAX_NAME.saturating_sub(suffix.len());
            format!("{}{suffix}", base.chars().take(keep).collect::<String>())
        })
        .find(|c| !taken.contains_key(c))
        .unwrap_or(base)
}

impl McpRegistry {
    /// The servers of a session (none started yet).
    pub fn new(servers: Vec<ServerSpec>) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stele-mcp")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        Ok(Self {
            rt: Some(rt),
            handle,
            slots: servers
                .into_iter()
                .map(|s| (s.name.clone(), Mutex::new(Slot::new(s))))
                .collect(),
            offered: Mutex::new(BTreeMap::new()),
            listed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The tools offered to the model. Servers not listed yet are started
    /// (first use) and their tools decided one by one (`mcp.list` per tool);
    /// a server that failed is tried again on a later call once its backoff
    /// has passed. Must be called from a blocking thread.
    pub fn specs(&self, gate: &Arc<Gate>) -> Result<Vec<ToolSpec>, GateError> {
        for (name, slot) in &self.slots {
            if self.is_listed(name) {
                continue;
            }
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.in_backoff() {
                continue;
            }
            self.list_server(gate, &mut slot)?;
        }
        Ok(self
            .offered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|t| t.spec.clone())
            .collect())
    }

    fn is_listed(&self, name: &str) -> bool {
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    fn list_server(&self, gate: &Arc<Gate>, slot: &mut Slot) -> Result<(), GateError> {
        let name = slot.spec.name.clone();
        match slot.ensure_running(gate, &self.handle)? {
            Ok(()) => {}
            Err(NotRunning::Denied(_)) => {
                self.mark_listed(&name);
                return Ok(());
            }
            Err(NotRunning::Failed(McpError::Unavailable(_))) => {
                self.mark_listed(&name);
                return Ok(());
            }
            Err(NotRunning::Failed(_)) => return Ok(()),
        }
        let Some(conn) = slot.connection() else {
            return Ok(());
        };
        let deadline = slot.spec.startup_timeout();
        let tools = match self.handle.block_on(conn.list_tools(deadline)) {
            Ok(t) => t,
            Err(e) => {
                if e.breaks_connection() {
                    slot.fail(gate, &self.handle, "list_failed", &e)?;
                } else {
                    slot.list_failed(gate, &e)?;
                    self.mark_listed(&name);
                }
                return Ok(());
            }
        };
        let mut offered_names = Vec::new();
        let mut hidden = Vec::new();
        let mut offered = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        for t in &tools {
            let Some(tool) = t.get("name").and_then(Value::as_str) else {
                hidden.push(Value::Null);
                continue;
            };
            let mut req = ActionRequest::new(
                Action::McpList,
                Resource::McpTool {
                    server: name.clone(),
                    tool: tool.to_string(),
                },
            );
            req.data = Some(serde_json::json!({ "phase": "offer" }));
            match gate.check(req)? {
                Err(_denial) => hidden.push(Value::from(tool)),
                Ok(_seq) => {
                    let model = model_name(&name, tool, &offered);
                    let input_schema = t
                        .get("inputSchema")
                        .filter(|s| s.is_object())
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({"type": "object"}));
                    let description = t
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let spec = ToolSpec {
                        name: model.clone(),
                        description: format!(
                            "[MCP server {name}, tool {tool}] {}",
                            description.chars().take(2000).collect::<String>()
                        ),
                        input_schema: input_schema.clone(),
                    };
                    offered_names.push(serde_json::json!({ "tool": tool, "as": model }));
                    offered.insert(
                        model,
                        OfferedTool {
                            server: name.clone(),
                            tool: tool.to_string(),
                            input_schema,
                            spec,
                        },
                    );
                }
            }
        }
        drop(offered);
        let mut ev_extra = serde_json::json!({ "offered": offered_names, "hidden": hidden });
        if let Some(o) = ev_extra.as_object_mut() {
            o.insert("tools".into(), tools.len().into());
        }
        slot.lifecycle(
            gate,
            "listed",
            stele_audit::Status::Ok,
            None,
            Some(ev_extra),
        )?;
        self.mark_listed(&name);
        Ok(())
    }

    fn mark_listed(&self, name: &str) {
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), ());
    }

    /// The model-facing names of the tools offered so far.
    pub fn offered_names(&self) -> Vec<String> {
        self.offered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The tool behind a model-facing name, if it was offered.
    pub fn lookup(&self, model_name: &str) -> Option<OfferedTool> {
        self.offered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model_name)
            .cloned()
    }

    /// Call a tool (the caller holds the permit): (re)start the server if
    /// needed, call with the server's deadline, and on a crash or a hung
    /// call stop it and set its backoff. Must be called from a blocking thread.
    pub fn call(
        &self,
        gate: &Arc<Gate>,
        tool: &OfferedTool,
        arguments: Option<serde_json::Map<String, Value>>,
    ) -> Result<Result<Value, McpError>, GateError> {
        let Some(slot) = self.slots.get(&tool.server) else {
            return Ok(Err(McpError::Unavailable(format!(
                "no server {:?} is configured",
                tool.server
            ))));
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.ensure_running(gate, &self.handle)? {
            Ok(()) => {}
            Err(NotRunning::Denied(reason)) => {
                return Ok(Err(McpError::Unavailable(format!(
                    "policy refuses to start the server: {reason}"
                ))))
            }
            Err(NotRunning::Failed(e)) => return Ok(Err(e)),
        }
        let Some(conn) = slot.connection() else {
            return Ok(Err(McpError::Unavailable("not running".into())));
        };
        let deadline = slot.spec.call_timeout();
        let result = self
            .handle
            .block_on(conn.call_tool(&tool.tool, arguments, deadline));
        // Whatever the error looked like, a server that is gone has crashed.
        let result = match result {
            Err(e) if !e.breaks_connection() => match slot.exited() {
                Some(status) => Err(McpError::Closed(format!(" ({status})"))),
                None => Err(e),
            },
            other => other,
        };
        if let Err(e) = &result {
            if e.breaks_connection() {
                let phase = match e {
                    McpError::Timeout(_) => "call_timed_out",
                    _ => "crashed",
                };
                slot.fail(gate, &self.handle, phase, e)?;
            }
        }
        Ok(result)
    }

    /// `text` with the credentials of `server` redacted.
    pub fn scrub(&self, server: &str, text: &str) -> String {
        match self.slots.get(server) {
            Some(slot) => slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .spec
                .scrub(text),
            None => text.to_string(),
        }
    }

    /// Stop every running server (end of session); each stop is logged.
    pub fn shutdown(&self, gate: &Gate) -> Result<(), GateError> {
        for slot in self.slots.values() {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stop(gate, &self.handle)?;
        }
        Ok(())
    }
}

impl Drop for McpRegistry {
    fn drop(&mut self) {
        // Children are killed on drop (kill_on_drop); this never blocks, so
        // it is safe in any context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_cleaned_and_unique() {
        let mut taken = BTreeMap::new();
        let a = model_name("files", "read file/v2", &taken);
        assert_eq!(a, "mcp__files__read_file_v2");
        let t = OfferedTool {
            server: "files".into(),
            tool: "read file/v2".into(),
            input_schema: Value::Null,
            spec: ToolSpec {
                name: a.clone(),
                description: String::new(),
                input_schema: Value::Null,
            },
        };
        taken.insert(a.clone(), t);
        assert_eq!(
            model_name("files", "read_file_v2", &taken),
            "mcp__files__read_file_v2_2"
        );
        let long = "x".repeat(200);
        assert_eq!(model_name("s", &long, &taken).len(), 64);
    }
}
