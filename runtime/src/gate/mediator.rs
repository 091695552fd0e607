//! The gate as the sandbox's `Mediator`: file accesses and connections made
//! by any sandboxed process are decided and logged with their session,
//! principal and the exec (tool call) they belong to.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use stele_audit::{Outcome, Status};
use stele_policy::canonical::{canonical_path, CanonicalHost};
use stele_policy::{Action, Resource, ToolArgs};
use stele_sandbox::{
    FileAccess, FileCloseReport, FileOp, FileRequest, Mediator, NetCloseReport, NetRequest,
    NetScheme, Ticket, Verdict,
};

use super::{ActionRequest, Authorization, Gate, Permit};

/// Mediates one sandboxed command (or a session's file tools) through the gate.
pub struct GateMediator {
    gate: Arc<Gate>,
    /// Index of the exec intent this belongs to, for reviewers to group entries.
    parent: Option<u64>,
    open: Mutex<HashMap<u64, Permit>>,
    /// Name lookups already decided: the kernel repeats them constantly and
    /// the answer cannot change within a session (the bundle is fixed).
    lookups: Mutex<HashMap<(FileAccess, String), Verdict>>,
    warned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for GateMediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateMediator")
            .field("session", &self.gate.session_id())
            .field("parent", &self.parent)
            .finish()
    }
}

impl GateMediator {
    /// A mediator for the command whose exec intent is `parent`.
    pub fn new(gate: Arc<Gate>, parent: Option<u64>) -> Self {
        Self {
            gate,
            parent,
            open: Mutex::new(HashMap::new()),
            lookups: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Intents still open (handles not yet closed); the caller closes them
    /// as interrupted if the command is killed.
    pub fn take_open(&self) -> Vec<Permit> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, p)| p)
            .collect()
    }

    /// Which command an access belongs to: the sandbox names its exec id
    /// (the runtime sets it to the `exec.start` index), else the parent.
    fn exec_ref(&self, requester: &stele_sandbox::Requester) -> serde_json::Value {
        match (&requester.exec_id, self.parent) {
            (Some(id), _) => serde_json::json!(id),
            (None, Some(p)) => serde_json::json!(p.to_string()),
            (None, None) => serde_json::Value::Null,
        }
    }

    fn data(&self, op: FileOp, requester: &stele_sandbox::Requester) -> serde_json::Value {
        serde_json::json!({
            "exec": self.exec_ref(requester),
            "op": format!("{op:?}").to_lowercase(),
            "pid": requester.pid,
        })
    }

    /// Keep the permit of an allowed handle or connection until it closes.
    fn hold(&self, what: &str, r: Result<Authorization, super::GateError>) -> Verdict {
        match r {
            Ok(Authorization::Permitted(p)) => {
                let t = Ticket(p.intent_seq());
                self.open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(t.0, p);
                Verdict::Allow(t)
            }
            Ok(Authorization::Denied(d)) => Verdict::Deny(d.reason),
            Err(e) => self.fail_closed(what, &e),
        }
    }

    fn fail_closed(&self, what: &str, e: &dyn std::fmt::Display) -> Verdict {
        // Audit failure means no effect; say so once per kind on stderr.
        let msg = format!("{what}: audit/policy failure, refusing: {e}");
        if self
            .warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(what.to_string())
        {
            tracing::error!("{msg}");
        }
        Verdict::Deny(msg)
    }
}

fn action_of(access: FileAccess) -> Action {
    match access {
        FileAccess::Read => Action::FileRead,
        FileAccess::Write => Action::FileWrite,
        FileAccess::Delete => Action::FileDelete,
        FileAccess::List => Action::FileList,
    }
}

impl Mediator for GateMediator {
    fn file_access(&self, req: &FileRequest) -> Verdict {
        let path = match canonical_path(&req.path) {
            Ok(p) => p,
            Err(e) => return Verdict::Deny(format!("path {:?} refused: {e}", req.path)),
        };
        let action = action_of(req.access);
        let mut ar = ActionRequest::new(action, Resource::File(path.clone()));
        ar.args = ToolArgs {
            path: Some(path),
            ..ToolArgs::default()
        };
        ar.data = Some(self.data(req.op, &req.requester));
        match req.op {
            // Handles: an intent now, the result (bytes, hash) when it closes.
            FileOp::Open | FileOp::Create | FileOp::Exec => {
                self.hold(action.as_str(), self.gate.authorize(ar))
            }
            FileOp::Lookup | FileOp::ReadDir => {
                let key = (req.access, req.path.clone());
                if let Some(v) = self
                    .lookups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                {
                    return v.clone();
                }
                let v = match self.gate.check(ar) {
                    Ok(Ok(seq)) => Verdict::Allow(Ticket(seq)),
                    Ok(Err(d)) => Verdict::Deny(d.reason),
                    Err(e) => return self.fail_closed(action.as_str(), &e),
                };
                self.lookups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, v.clone());
                v
            }
            // One-shot changes: one decision entry each, logged before the change.
            FileOp::Mkdir
            | FileOp::Unlink
            | FileOp::Rmdir
            | FileOp::Rename
            | FileOp::Link
            | FileOp::Symlink
            | FileOp::SetAttr => match self.gate.check(ar) {
                Ok(Ok(seq)) => Verdict::Allow(Ticket(seq)),
                Ok(Err(d)) => Verdict::Deny(d.reason),
                Err(e) => self.fail_closed(action.as_str(), &e),
            },
        }
    }

    fn file_closed(&self, report: &FileCloseReport) {
        let Some(permit) = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&report.ticket.0)
        else {
            return;
        };
        let mut o = Outcome::status(Status::Ok);
        o.bytes_in = Some(report.bytes_read);
        o.bytes_out = Some(report.bytes_written);
        let data = report
            .sha256_after_write
            .map(|h| serde_json::json!({ "sha256_after_write": hex::encode(h) }));
        if let Err(e) = self.gate.complete(permit, o, Vec::new(), data) {
            tracing::error!("could not record the close of {}: {e}", report.path);
        }
    }

    fn net_connect(&self, req: &NetRequest) -> Verdict {
        let scheme = match req.scheme {
            NetScheme::Connect => "https",
            NetScheme::Http => "http",
        };
        let host = match CanonicalHost::new(scheme, &req.host, Some(req.port)) {
            Ok(h) => h,
            Err(e) => return Verdict::Deny(format!("host {:?} refused: {e}", req.host)),
        };
        let mut ar = ActionRequest::new(Action::NetConnect, Resource::Host(host.clone()));
        ar.args = ToolArgs {
            host: Some(host.name().to_string()),
            port: Some(host.port()),
            ..ToolArgs::default()
        };
        ar.data = Some(
            serde_json::json!({ "exec": self.exec_ref(&req.requester), "pid": req.requester.pid }),
        );
        self.hold("net.connect", self.gate.authorize(ar))
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
        if let Err(e) = self.gate.complete(permit, o, Vec::new(), None) {
            tracing::error!("could not record the close of a connection: {e}");
        }
    }
}
