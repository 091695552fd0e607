//! The gate as the sandbox's `Mediator`: file accesses and connections made
//! by any sandboxed process are decided and logged with their session,
//! principal and the exec (tool call) they belong to.
//!
//! Handles (open, create, exec) and one-shot changes (mkdir, unlink, rmdir,
//! rename, link, symlink, setattr) get an intent before the effect and a
//! result naming it after (the handle's close, the change's outcome); name
//! lookups and listings are one decision entry each. A refusal reaches the
//! sandbox as a [`Refusal`] carrying the logged [`Denial`] (rules, layer,
//! audit entry), which the file tools hand back to the model.
//!
//! Refusals the sandbox makes on its own (a name policy cannot see, an
//! escape, a device node, a privileged mode, the write quota:
//! [`Mediator::file_refused`]), and paths this mediator cannot canonicalise,
//! are `policy.decision` entries too: effect deny, status denied, no
//! policies, the reason naming the rule, and `data.refusal` with the rule's
//! name (`path.parent_dir`, `file.not_regular`, …) — so an auditor who
//! filters denials sees every refused action.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use stele_audit::{Outcome, Status, Target};
use stele_policy::canonical::{canonical_path, CanonicalHost};
use stele_policy::{Action, CanonError, Resource, SystemResolver, ToolArgs};
use stele_sandbox::{
    ChangeOutcome, FileAccess, FileChangeReport, FileCloseReport, FileOp, FileRefusal, FileRequest,
    Mediator, NetAttempt, NetAttemptKind, NetCloseReport, NetRequest, NetVerdict, Refusal,
    RefusalRule, Ticket, Verdict,
};

use super::net::Connection;
use super::{record, ActionRequest, Authorization, Denial, Gate, Permit};

/// Why every connection of a session without network is refused.
pub const NO_NETWORK: &str =
    "net.connect refused: this session has no network (--network none); every connection \
     is refused";

/// What the entries a mediator makes belong to, for reviewers to group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The whole session: the sandbox names each command (its exec id).
    Session,
    /// One command, by the index of its `exec.start` intent.
    Exec(u64),
    /// One built-in tool call, by the index of its `tool.intent`.
    ToolCall(u64),
}

/// What an approver of a write to a (canonical) path is shown, from the one
/// who knows the content (the file tools); `None`: the default text.
pub type ShowWrite = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Mediates a session's sandbox, one command, or one built-in tool call
/// through the gate.
pub struct GateMediator {
    gate: Arc<Gate>,
    parent: Parent,
    show_write: Option<ShowWrite>,
    open: Mutex<HashMap<u64, Permit>>,
    /// Name lookups already decided: the kernel repeats them constantly and
    /// the answer cannot change within a session (the bundle is fixed).
    lookups: Mutex<HashMap<(FileAccess, String), Verdict>>,
    /// Refused lookups and listings already logged (same reasoning).
    refused_lookups: Mutex<HashMap<(FileAccess, RefusalRule, String), Refusal>>,
    warned: Mutex<HashSet<String>>,
}

/// A refusal made before any policy was asked, as the file tools hand it
/// back: the logged denial and the rule that refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedBeforePolicy {
    /// The `policy.decision` entry that records it.
    pub denial: Denial,
    /// The rule's stable name (`path.absolute`, …).
    pub rule: &'static str,
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
    /// A mediator for the command whose exec intent is `parent`, or for the
    /// whole session with `None`.
    pub fn new(gate: Arc<Gate>, parent: Option<u64>) -> Self {
        Self::with_parent(gate, parent.map_or(Parent::Session, Parent::Exec))
    }

    /// A mediator whose entries belong to `parent`.
    pub fn with_parent(gate: Arc<Gate>, parent: Parent) -> Self {
        Self {
            gate,
            parent,
            show_write: None,
            open: Mutex::new(HashMap::new()),
            lookups: Mutex::new(HashMap::new()),
            refused_lookups: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Show approvers of this mediator's writes what `show` says (the
    /// content being written).
    pub fn showing_writes(mut self, show: ShowWrite) -> Self {
        self.show_write = Some(show);
        self
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
            (None, Parent::Exec(p)) => serde_json::json!(p.to_string()),
            (None, Parent::Session | Parent::ToolCall(_)) => serde_json::Value::Null,
        }
    }

    fn data(&self, op: FileOp, requester: &stele_sandbox::Requester) -> serde_json::Value {
        let mut d = serde_json::json!({
            "exec": self.exec_ref(requester),
            "op": op.recorded_name(),
            "pid": requester.pid,
        });
        match self.parent {
            Parent::ToolCall(seq) => d["tool_call"] = serde_json::json!(seq),
            Parent::Session | Parent::Exec(_) => {}
        }
        d
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
            Ok(Authorization::Denied(d)) => Verdict::Deny(d.into()),
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
        Verdict::Deny(Refusal::new(msg))
    }

    /// Decide a name lookup or listing once per session: one decision entry.
    fn lookup(&self, req: &FileRequest, ar: ActionRequest) -> Verdict {
        let key = (req.access, req.path.clone());
        if let Some(v) = self
            .lookups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return v.clone();
        }
        let action = ar.action;
        let v = match self.gate.check(ar) {
            Ok(Ok(seq)) => Verdict::Allow(Ticket(seq)),
            Ok(Err(d)) => Verdict::Deny(d.into()),
            Err(e) => return self.fail_closed(action.as_str(), &e),
        };
        self.lookups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, v.clone());
        v
    }

    fn take(&self, ticket: Ticket) -> Option<Permit> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ticket.0)
    }
}

/// The result entry's outcome for a one-shot change.
fn change_outcome(outcome: ChangeOutcome) -> Outcome {
    match outcome {
        ChangeOutcome::Done => Outcome::status(Status::Ok),
        ChangeOutcome::Failed(errno) => {
            let mut o = Outcome::status(Status::Error);
            o.code = Some(i64::from(errno));
            o.detail = Some(std::io::Error::from_raw_os_error(errno).to_string());
            o
        }
        ChangeOutcome::Abandoned => {
            let mut o = Outcome::status(Status::Denied);
            o.detail = Some("not attempted: another access the operation needs was refused".into());
            o
        }
    }
}

impl From<Denial> for Refusal {
    /// The sandbox's refusal, carrying the logged denial for the tools.
    fn from(d: Denial) -> Self {
        Refusal::with_detail(d.reason.clone(), d)
    }
}

/// The refusal rule for a path canonicalisation refused.
fn canon_rule(e: &CanonError) -> RefusalRule {
    match e {
        CanonError::Empty(_) => RefusalRule::EmptyName,
        CanonError::ControlCharacter(_) => RefusalRule::ControlCharacter,
        CanonError::AbsolutePath(_) => RefusalRule::Absolute,
        CanonError::EscapesWorkspace(_) => RefusalRule::ParentDir,
        // The host and program variants are never produced for a path.
        _ => RefusalRule::EmptyName,
    }
}

impl GateMediator {
    /// Log a refusal the sandbox (or canonicalisation) made: one
    /// `policy.decision` entry, status denied; lookups and listings once
    /// per session, like their decisions.
    fn log_refusal(&self, r: &FileRefusal) -> Refusal {
        let once = matches!(r.op, FileOp::Lookup | FileOp::ReadDir);
        let key = (r.access, r.rule, r.path.clone());
        if once {
            if let Some(done) = self
                .refused_lookups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
            {
                return done.clone();
            }
        }
        let mut data = self.data(r.op, &r.requester);
        data["refusal"] = serde_json::json!({
            "rule": r.rule.name(),
            "access": r.access.action(),
        });
        if !r.detail.is_empty() {
            data["refusal"]["detail"] = serde_json::json!(r.detail);
        }
        let target = Target {
            path: Some(r.path.clone()),
            ..Target::default()
        };
        let reason = r.reason();
        let refusal = match self
            .gate
            .refuse_in_sandbox(target, reason.clone(), Some(data))
        {
            Ok(denial) => Refusal::with_detail(
                reason,
                RefusedBeforePolicy {
                    denial,
                    rule: r.rule.name(),
                },
            ),
            Err(e) => match self.fail_closed(r.access.action(), &e) {
                Verdict::Deny(refusal) => refusal,
                Verdict::Allow(_) => Refusal::new(reason),
            },
        };
        if once {
            self.refused_lookups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, refusal.clone());
        }
        refusal
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
            Err(e) => {
                let refusal = FileRefusal::new(
                    req.access,
                    req.op,
                    req.path.as_bytes(),
                    canon_rule(&e),
                    req.requester.clone(),
                )
                .with_detail(e.to_string());
                return Verdict::Deny(self.log_refusal(&refusal));
            }
        };
        let action = action_of(req.access);
        let mut ar = ActionRequest::new(action, Resource::File(path.clone()));
        if let (Action::FileWrite, Some(show)) = (action, &self.show_write) {
            ar.shown = show(path.as_str());
        }
        ar.args = ToolArgs {
            path: Some(path),
            ..ToolArgs::default()
        };
        ar.data = Some(self.data(req.op, &req.requester));
        match req.op {
            // Handles: an intent now, the result (bytes, hash) when it closes.
            // One-shot changes: an intent now, the result (done or the errno)
            // when the sandbox reports the outcome.
            FileOp::Open
            | FileOp::Create
            | FileOp::Exec
            | FileOp::Mkdir
            | FileOp::Unlink
            | FileOp::Rmdir
            | FileOp::Rename
            | FileOp::Link
            | FileOp::Symlink
            | FileOp::SetAttr => self.hold(action.as_str(), self.gate.authorize(ar)),
            FileOp::Lookup | FileOp::ReadDir => self.lookup(req, ar),
        }
    }

    fn file_closed(&self, report: &FileCloseReport) {
        let Some(permit) = self.take(report.ticket) else {
            return;
        };
        let mut o = Outcome::status(Status::Ok);
        o.bytes_in = Some(report.bytes_read);
        o.bytes_out = Some(report.bytes_written);
        let data = report
            .sha256_after_write
            .map(|h| serde_json::json!({ "sha256_after_write": hex::encode(h) }));
        if let Err(e) = self.gate.complete_released(permit, o, data) {
            tracing::error!("could not record the close of {}: {e}", report.path);
        }
    }

    fn file_changed(&self, report: &FileChangeReport) {
        let Some(permit) = self.take(report.ticket) else {
            return;
        };
        let mut data = serde_json::json!({ "op": report.op.recorded_name() });
        if let Some(h) = report.sha256_after {
            data["sha256_after_write"] = serde_json::json!(hex::encode(h));
        }
        if let Err(e) = self.gate.complete(
            permit,
            change_outcome(report.outcome),
            Vec::new(),
            Some(data),
        ) {
            tracing::error!("could not record the outcome of a {:?}: {e}", report.op);
        }
    }

    fn file_refused(&self, refusal: &FileRefusal) -> Refusal {
        self.log_refusal(refusal)
    }

    fn net_connect(&self, req: &NetRequest) -> NetVerdict {
        let fail = |e: &dyn std::fmt::Display| match self.fail_closed("net.connect", e) {
            Verdict::Deny(r) => NetVerdict::Deny(r),
            Verdict::Allow(_) => NetVerdict::Deny(Refusal::new("net.connect: refusing")),
        };
        let data =
            serde_json::json!({ "exec": self.exec_ref(&req.requester), "pid": req.requester.pid });
        let attempt = match self.gate.net_attempt(req, data) {
            Ok(Ok(a)) => a,
            Ok(Err(d)) => return NetVerdict::Deny(d.into()),
            Err(e) => return fail(&e),
        };
        // `--network none`: the proxy is there so that every attempt is a
        // decision in the log, and every one is refused.
        if !self.gate.has_network() {
            return match self.gate.net_refuse(&attempt, NO_NETWORK.into()) {
                Ok(d) => NetVerdict::Deny(d.into()),
                Err(e) => fail(&e),
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
            Err(e) => fail(&e),
        }
    }

    fn net_refused(&self, attempt: &NetAttempt) {
        let reason = format!(
            "net.connect refused by the sandbox: {} (the only way out is stele's egress proxy)",
            attempt.kind.describe()
        );
        let data = serde_json::json!({
            "exec": self.exec_ref(&attempt.requester),
            "pid": attempt.requester.pid,
            "refused_by": "sandbox",
            "transport": attempt.kind.transport(),
        });
        let mut target = stele_audit::Target {
            scheme: Some(attempt.kind.transport()),
            ..stele_audit::Target::default()
        };
        if let NetAttemptKind::Connect(addr) = attempt.kind {
            // An IP literal, canonical as policy would have it (a mapped
            // IPv4 address as IPv4, …); a port 0 stays as given.
            match CanonicalHost::new("tcp", &addr.ip().to_string(), Some(addr.port())) {
                Ok(h) => target = record::target(&Resource::Host(h), &[]),
                Err(_) => {
                    target.host = Some(addr.ip().to_string());
                    target.port = Some(addr.port());
                }
            }
        }
        if let Err(e) = self.gate.refuse_in_sandbox(target, reason, Some(data)) {
            tracing::error!("could not record a refused network attempt: {e}");
        }
    }

    fn net_closed(&self, report: &NetCloseReport) {
        let Some(permit) = self.take(report.ticket) else {
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

#[cfg(test)]
#[path = "mediator_tests.rs"]
pub(crate) mod tests;
