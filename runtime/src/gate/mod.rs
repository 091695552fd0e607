//! The gate: the one place every effect passes.
//!
//! decide (policy) → if Ask, ask a human and log request and answer →
//! append the intent with its decision, durably → hand out a [`Permit`] →
//! the caller acts → [`Gate::complete`] appends the result naming the intent.
//! A denial is logged and returned as a [`Denial`] naming the rule and its
//! layer. If the log cannot be written, no permit is created.

pub mod approval;
mod durability;
pub mod mediator;
pub mod net;
mod permit;
pub mod record;
pub mod shown;

#[cfg(test)]
mod approval_tests;

use std::sync::Arc;

use ring::digest::{digest, SHA256};
use stele_audit::{
    Actor, AuditError, AuditLog, Disclosure, Event, EventKind, Outcome, PayloadInput, Receipt,
    Refs, Status,
};
use stele_policy::{
    Action, Approval, ApprovalOutcome, Bundle, Decision, Effect, PolicyError, Request, Resource,
    SandboxFacts, ToolArgs,
};

pub use approval::{ApprovalAnswer, ApproveMode, Approver};
pub use durability::Durability;
pub use permit::Permit;

/// Why the gate could not decide or record; the action must not happen.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The audit log refused the entry (disk, integrity, …).
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The request could not be expressed to the policy engine.
    #[error("policy request: {0}")]
    Policy(#[from] PolicyError),
}

/// The member of the `data` given to [`Gate::start_session`] that holds the
/// task as the person gave it: it is taken out of `data` and committed as
/// the entry's `task` payload (so it can be redacted like any body), with
/// its size in `data.task_bytes`. An empty task is left out.
pub const TASK_MEMBER: &str = "task";

/// Who the session acts for.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// The human principal.
    pub principal: String,
    /// Their teams (from the bundle's members file).
    pub teams: Vec<String>,
}

/// One action to authorise.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    /// Policy action.
    pub action: Action,
    /// Canonical resource.
    pub resource: Resource,
    /// Program arguments (for exec).
    pub argv: Vec<String>,
    /// Typed tool arguments visible to policy.
    pub args: ToolArgs,
    /// Bodies to commit with the intent (tool arguments, request body).
    pub payloads: Vec<PayloadInput>,
    /// Bodies sealed by the caller (large values other bodies refer to; see `crate::payloads`).
    pub sealed: Vec<stele_audit::payload::SealedPayload>,
    /// Payloads of earlier entries this intent refers to again (stored once).
    pub shared: Vec<stele_audit::PayloadRef>,
    /// Extra fields for the intent entry.
    pub data: Option<serde_json::Value>,
    /// What an approver is shown; defaults to a description of the request.
    pub shown: Option<String>,
}

impl ActionRequest {
    /// A request with no arguments or payloads.
    pub fn new(action: Action, resource: Resource) -> Self {
        Self {
            action,
            resource,
            argv: Vec::new(),
            args: ToolArgs::default(),
            payloads: Vec::new(),
            sealed: Vec::new(),
            shared: Vec::new(),
            data: None,
            shown: None,
        }
    }
}

/// The bodies of a result entry.
#[derive(Debug, Default)]
pub struct Bodies {
    /// Bodies to commit.
    pub payloads: Vec<PayloadInput>,
    /// Bodies the caller sealed.
    pub sealed: Vec<stele_audit::payload::SealedPayload>,
    /// Payloads of earlier entries referred to again.
    pub shared: Vec<stele_audit::PayloadRef>,
}

/// A refusal, already logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Index of the entry that records the refusal.
    pub seq: u64,
    /// Determining policy ids (empty: nothing permitted it).
    pub policies: Vec<String>,
    /// Layer that decided.
    pub layer: Option<String>,
    /// Explanation naming the rule and layer (or the refusing approver).
    pub reason: String,
}

/// The gate's answer.
#[derive(Debug)]
pub enum Authorization {
    /// Go ahead, and report the result with this permit.
    Permitted(Permit),
    /// Refused; nothing happened.
    Denied(Denial),
}

/// The gate of one session.
pub struct Gate {
    log: Arc<AuditLog>,
    bundle: Arc<Bundle>,
    session: SessionInfo,
    approver: Box<dyn Approver>,
    sandbox: SandboxFacts,
    actor: Actor,
    // Index and leaf hash of the entry that opened this gate (session.start or policy.load).
    start_entry: (u64, stele_audit::merkle::Hash),
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

impl Gate {
    fn new(
        log: Arc<AuditLog>,
        bundle: Arc<Bundle>,
        session: SessionInfo,
        approver: Box<dyn Approver>,
        sandbox: SandboxFacts,
    ) -> Self {
        let mut actor = Actor::system();
        actor.principal = session.principal.clone();
        actor.teams = session.teams.clone();
        Self {
            log,
            bundle,
            session,
            approver,
            sandbox,
            actor,
            start_entry: (0, [0; 32]),
        }
    }

    /// Start a session: records `session.start` with the bundle digest, the
    /// sandbox facts and `data`.
    pub fn start_session(
        log: Arc<AuditLog>,
        bundle: Arc<Bundle>,
        session: SessionInfo,
        approver: Box<dyn Approver>,
        sandbox: SandboxFacts,
        data: serde_json::Value,
    ) -> Result<Self, GateError> {
        let mut gate = Self::new(log, bundle, session, approver, sandbox);
        let mut d = serde_json::json!({
            "policy_bundle": gate.bundle.digest().to_string(),
            "policy_root": gate.bundle.root().display().to_string(),
            "sandbox_backend": gate.sandbox.backend.as_str(),
        });
        if let (Some(o), serde_json::Value::Object(extra)) = (d.as_object_mut(), data) {
            o.extend(extra);
        }
        let task = d
            .as_object_mut()
            .and_then(|o| o.remove(TASK_MEMBER))
            .and_then(|t| t.as_str().map(str::to_owned))
            .filter(|t| !t.is_empty());
        let mut ev =
            Event::new(EventKind::SessionStart, gate.actor.clone()).in_session(&gate.session.id);
        if let Some(t) = task {
            d["task_bytes"] = serde_json::json!(t.len());
            ev = ev.with_payload(PayloadInput {
                role: "task".into(),
                media: "text/plain".into(),
                body: t.into_bytes(),
                disclosure: Disclosure::CommitmentOnly,
            });
        }
        let r = gate.log.append_blocking(ev.with_data(d))?;
        gate.start_entry = (r.seq, r.leaf_hash);
        Ok(gate)
    }

    /// Continue an existing, unfinished session: records a `policy.load`
    /// entry in the session with the bundle now in force (it may differ from
    /// the one the session started with; both digests are in the log), the
    /// sandbox facts now in force and `data`.
    pub fn resume_session(
        log: Arc<AuditLog>,
        bundle: Arc<Bundle>,
        session: SessionInfo,
        approver: Box<dyn Approver>,
        sandbox: SandboxFacts,
        data: serde_json::Value,
    ) -> Result<Self, GateError> {
        let mut gate = Self::new(log, bundle, session, approver, sandbox);
        let mut d = serde_json::json!({
            "resumed": true,
            "policy_bundle": gate.bundle.digest().to_string(),
            "policy_root": gate.bundle.root().display().to_string(),
            "sandbox_backend": gate.sandbox.backend.as_str(),
        });
        if let (Some(o), serde_json::Value::Object(extra)) = (d.as_object_mut(), data) {
            o.extend(extra);
        }
        let r = gate
            .log
            .append_blocking(gate.event(EventKind::PolicyLoad).with_data(d))?;
        gate.start_entry = (r.seq, r.leaf_hash);
        Ok(gate)
    }

    /// Index and leaf hash of the entry that opened this gate: `session.start`,
    /// or the `policy.load` of a resumption.
    pub fn start_entry(&self) -> (u64, stele_audit::merkle::Hash) {
        self.start_entry
    }

    /// Session id.
    pub fn session_id(&self) -> &str {
        &self.session.id
    }

    /// The principal.
    pub fn principal(&self) -> &str {
        &self.session.principal
    }

    /// The audit log.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// The policy bundle in force.
    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.bundle
    }

    /// The actor entries of this session carry.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The sandbox as an approver reads it: backend and network.
    pub fn sandbox_text(&self) -> String {
        let network = match self.sandbox.network {
            stele_policy::Network::Disabled => "no network",
            stele_policy::Network::ViaProxy => {
                "network only through stele's proxy, each connection decided"
            }
        };
        format!("{}, {network}", self.sandbox.backend.as_str())
    }

    fn request(&self, req: &ActionRequest) -> Result<Request, GateError> {
        Ok(
            Request::builder(&self.session.principal, req.action, req.resource.clone())
                .session(self.session.id.clone())
                .sandbox(self.sandbox)
                .argv(req.argv.iter().cloned())
                .args(req.args.clone())
                .build()?,
        )
    }

    fn event(&self, kind: EventKind) -> Event {
        Event::new(kind, self.actor.clone()).in_session(&self.session.id)
    }

    /// Decide, ask where policy says so, and log the intent before returning
    /// a permit. Denials are logged and returned.
    pub fn authorize(&self, req: ActionRequest) -> Result<Authorization, GateError> {
        let policy_req = self.request(&req)?;
        let mut decision = self.bundle.decide(&policy_req);
        if decision.effect == Effect::Ask {
            decision = match self.ask(&req, &policy_req, &decision)? {
                Ok(d) => d,
                Err(denial) => return Ok(Authorization::Denied(denial)),
            };
        }
        match decision.effect {
            Effect::Allow => self.intent(req, &decision).map(Authorization::Permitted),
            Effect::Deny | Effect::Ask => self.deny(&req, &decision).map(Authorization::Denied),
        }
    }

    /// Decide and record an action that has no separate result (a name
    /// lookup, a listing): one `policy.decision` entry either way.
    pub fn check(&self, req: ActionRequest) -> Result<Result<u64, Denial>, GateError> {
        let policy_req = self.request(&req)?;
        let decision = self.bundle.decide(&policy_req);
        match decision.effect {
            Effect::Allow => {
                let mut ev = self
                    .event(EventKind::PolicyDecision)
                    .with_target(record::target(&req.resource, &req.argv))
                    .with_decision(record::decision_record(&decision, req.action));
                ev.data = req.data;
                let r = self.append(ev, Durability::of(req.action))?;
                Ok(Ok(r.seq))
            }
            // Metadata operations do not interrupt a program to ask a human.
            Effect::Deny | Effect::Ask => self.deny(&req, &decision).map(Err),
        }
    }

    fn intent(&self, req: ActionRequest, decision: &Decision) -> Result<Permit, GateError> {
        let (kind, result_kind) = record::kinds(req.action);
        let mut ev = self
            .event(kind)
            .with_target(record::target(&req.resource, &req.argv))
            .with_decision(record::decision_record(decision, req.action));
        ev.payloads = req.payloads;
        ev.sealed = req.sealed;
        ev.shared = req.shared;
        let durability = Durability::of(req.action);
        ev.data = req.data;
        let r = self.append(ev, durability)?;
        Ok(Permit {
            intent_seq: r.seq,
            intent_leaf: r.leaf_hash,
            result_kind,
        })
    }

    fn deny(&self, req: &ActionRequest, decision: &Decision) -> Result<Denial, GateError> {
        let rec = record::decision_record(decision, req.action);
        let reason = rec.reason.clone().unwrap_or_default();
        let mut ev = self
            .event(EventKind::PolicyDecision)
            .with_target(record::target(&req.resource, &req.argv))
            .with_decision(rec.clone())
            .with_outcome(Outcome::status(Status::Denied));
        ev.data = req.data.clone();
        // A refusal has no effect; telling anyone outside about it is
        // itself recorded durably (a tool result, a command's end).
        let r = self.append(ev, Durability::of(req.action))?;
        Ok(Denial {
            seq: r.seq,
            policies: rec.policies,
            layer: rec.layer,
            reason,
        })
    }

    /// Record a refusal that no policy made, before policy is asked: a
    /// configured limit below policy (an MCP server's allowed hosts). It is
    /// a `policy.decision` entry with effect deny, no policies and
    /// `reason`, so every refused action is in the log like any other.
    pub fn refuse(&self, req: &ActionRequest, reason: String) -> Result<Denial, GateError> {
        let target = record::target(&req.resource, &req.argv);
        self.refuse_target(target, reason, req.data.clone())
    }

    /// [`Gate::refuse`] for a request without a canonical policy resource:
    /// a path refused *because* it cannot be canonicalised or leads out of
    /// the workspace, or a socket of a refused kind (no destination yet).
    /// `target` names it as given, made printable.
    pub fn refuse_target(
        &self,
        target: stele_audit::Target,
        reason: String,
        data: Option<serde_json::Value>,
    ) -> Result<Denial, GateError> {
        self.refuse_target_with(target, reason, data, Durability::Durable)
    }

    /// [`Gate::refuse_target`] for a refusal only the sandboxed program
    /// learns of (EACCES, a refused socket): it waits only for its place
    /// in the log, like a read.
    pub fn refuse_in_sandbox(
        &self,
        target: stele_audit::Target,
        reason: String,
        data: Option<serde_json::Value>,
    ) -> Result<Denial, GateError> {
        self.refuse_target_with(target, reason, data, Durability::Released)
    }

    fn refuse_target_with(
        &self,
        target: stele_audit::Target,
        reason: String,
        data: Option<serde_json::Value>,
        durability: Durability,
    ) -> Result<Denial, GateError> {
        let rec = stele_audit::DecisionRecord {
            bundle: self.bundle.digest().to_string(),
            effect: stele_audit::Effect::Deny,
            layer: None,
            policies: Vec::new(),
            reason: Some(reason.clone()),
        };
        let mut ev = self
            .event(EventKind::PolicyDecision)
            .with_target(target)
            .with_decision(rec)
            .with_outcome(Outcome::status(Status::Denied));
        ev.data = data;
        let r = self.append(ev, durability)?;
        Ok(Denial {
            seq: r.seq,
            policies: Vec::new(),
            layer: None,
            reason,
        })
    }

    /// Log the request for approval (with a hash of exactly what is shown),
    /// ask, log the answer (who, how, with what ticket), and re-decide with
    /// the real approval. When no approver this session can reach could
    /// lift the rule (it needs someone other than the requester, and only
    /// the requester is there), refuse without asking, saying so.
    fn ask(
        &self,
        req: &ActionRequest,
        policy_req: &Request,
        decision: &Decision,
    ) -> Result<Result<Decision, Denial>, GateError> {
        let reachable = self.approver.reachable();
        if !reachable.iter().any(|r| {
            self.bundle
                .could_grant(policy_req, decision, &r.approver, &r.method)
        }) {
            return self.refuse_unreachable(req, decision, &reachable).map(Err);
        }
        // Escaped for a terminal before hashing: the hash is of what is shown.
        let shown = approval::terminal_safe(&shown_text(req, decision), approval::Newlines::Keep);
        let shown_sha256 = hex::encode(digest(&SHA256, shown.as_bytes()));
        // The request's own fields (a tool call's ids) too, so the answer can be paired with it.
        let mut data =
            serde_json::json!({ "shown_sha256": shown_sha256, "shown_bytes": shown.len() });
        if let (Some(d), Some(serde_json::Value::Object(extra))) = (data.as_object_mut(), &req.data)
        {
            for (k, v) in extra {
                d.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let asked = self.log.append_blocking(
            self.event(EventKind::ApprovalRequest)
                .with_target(record::target(&req.resource, &req.argv))
                .with_decision(record::decision_record(decision, req.action))
                .with_data(data)
                .with_payload(PayloadInput {
                    role: "shown".into(),
                    media: "text/plain".into(),
                    body: shown.clone().into_bytes(),
                    disclosure: Disclosure::WithDigest,
                }),
        )?;
        let answer = self.approver.ask_checked(&shown, &|who, how| {
            self.bundle.could_grant(policy_req, decision, who, how)
        });
        let kind = match answer.outcome {
            ApprovalOutcome::Granted => EventKind::ApprovalGrant,
            ApprovalOutcome::Refused => EventKind::ApprovalDeny,
        };
        let mut data = serde_json::json!({
            "approver": answer.approver,
            "method": answer.method,
            "request_seq": asked.seq,
            "shown_sha256": shown_sha256,
        });
        if let Some(t) = &answer.ticket {
            data["ticket"] = serde_json::json!(t);
        }
        if let Some(d) = &answer.detail {
            data["detail"] = serde_json::json!(d);
        }
        let answered = self.log.append_blocking(self.event(kind).with_data(data))?;
        match answer.outcome {
            ApprovalOutcome::Refused => Ok(Err(Denial {
                seq: answered.seq,
                policies: decision.determining.iter().map(|p| p.id.clone()).collect(),
                layer: decision.determining.first().map(|p| p.layer.to_string()),
                reason: format!(
                    "{} needs approval and {} refused it ({})",
                    req.action.as_str(),
                    answer.approver,
                    answer.method
                ),
            })),
            ApprovalOutcome::Granted => {
                let approval = Approval {
                    outcome: ApprovalOutcome::Granted,
                    approver: answer.approver,
                    method: answer.method,
                    ticket: answer
                        .ticket
                        .unwrap_or_else(|| format!("audit:{}", answered.seq)),
                };
                Ok(Ok(self.bundle.decide_with_approval(policy_req, approval)))
            }
        }
    }

    /// Refuse an Ask that no reachable approver could lift, without asking:
    /// a `policy.decision` deny naming the rules and who could be reached.
    fn refuse_unreachable(
        &self,
        req: &ActionRequest,
        decision: &Decision,
        reachable: &[approval::Reachable],
    ) -> Result<Denial, GateError> {
        let who = if reachable.is_empty() {
            "no one".to_string()
        } else {
            reachable
                .iter()
                .map(|r| format!("{} ({})", r.approver, r.method))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reason = format!(
            "{}; no approver this session can reach may give that approval: an approval by \
             {who} would not lift the rule (it needs someone other than the requester, or \
             someone the rule names), so it was refused without asking",
            record::reason_text(decision, req.action)
        );
        let mut rec = record::decision_record(decision, req.action);
        rec.effect = stele_audit::Effect::Deny;
        rec.reason = Some(reason.clone());
        let mut data = req.data.clone().unwrap_or_else(|| serde_json::json!({}));
        if let Some(d) = data.as_object_mut() {
            d.insert(
                "approval_unreachable".into(),
                reachable
                    .iter()
                    .map(|r| serde_json::json!({"approver": r.approver, "method": r.method}))
                    .collect(),
            );
        }
        let r = self.log.append_blocking(
            self.event(EventKind::PolicyDecision)
                .with_target(record::target(&req.resource, &req.argv))
                .with_decision(rec.clone())
                .with_outcome(Outcome::status(Status::Denied))
                .with_data(data),
        )?;
        Ok(Denial {
            seq: r.seq,
            policies: rec.policies,
            layer: rec.layer,
            reason,
        })
    }

    /// Record the result of a permitted action, naming its intent.
    pub fn complete(
        &self,
        permit: Permit,
        outcome: Outcome,
        payloads: Vec<PayloadInput>,
        data: Option<serde_json::Value>,
    ) -> Result<Option<Receipt>, GateError> {
        self.complete_with(
            permit,
            outcome,
            Bodies {
                payloads,
                ..Bodies::default()
            },
            data,
        )
    }

    /// [`Gate::complete`] with bodies sealed by the caller and payloads of earlier entries
    /// referred to again (see `crate::payloads`).
    pub fn complete_with(
        &self,
        permit: Permit,
        outcome: Outcome,
        bodies: Bodies,
        data: Option<serde_json::Value>,
    ) -> Result<Option<Receipt>, GateError> {
        let Some(ev) = self.result_event(permit, outcome, bodies, data) else {
            return Ok(None);
        };
        Ok(Some(self.log.append_blocking(ev)?))
    }

    /// The result entry closing `permit`'s intent (`None`: the action has no result kind).
    fn result_event(
        &self,
        permit: Permit,
        outcome: Outcome,
        bodies: Bodies,
        data: Option<serde_json::Value>,
    ) -> Option<Event> {
        let kind = permit.result_kind?;
        let mut ev = self
            .event(kind)
            .with_refs(Refs {
                intent_leaf: stele_audit::leaf::hash_b64(&permit.intent_leaf),
                intent_seq: permit.intent_seq,
            })
            .with_outcome(outcome);
        ev.payloads = bodies.payloads;
        ev.sealed = bodies.sealed;
        ev.shared = bodies.shared;
        ev.data = data;
        Some(ev)
    }

    /// Record the end of the session.
    pub fn end_session(
        &self,
        status: Status,
        detail: Option<String>,
    ) -> Result<Receipt, GateError> {
        let mut o = Outcome::status(status);
        o.detail = detail;
        Ok(self
            .log
            .append_blocking(self.event(EventKind::SessionEnd).with_outcome(o))?)
    }
}

/// What an approver is shown: what the caller says would happen (else a
/// description of the request), then the rule that asks.
fn shown_text(req: &ActionRequest, decision: &Decision) -> String {
    let what = match &req.shown {
        Some(s) => s.trim_end().to_string(),
        None => describe(req),
    };
    format!(
        "{what}\nBecause:  {}",
        record::reason_text(decision, req.action)
    )
}

/// The default description of a request: the action, the resource, the
/// arguments, and what is known of its effect.
fn describe(req: &ActionRequest) -> String {
    let mut s = match (&req.resource, req.action) {
        // A connection: where it goes, part by part, and the address it
        // really goes to (a name as resolved, once).
        (Resource::Host(h), _) => {
            let mut s = format!(
                "Connect to: {}\nHost:     {}\nPort:     {}\nScheme:   {}",
                req.resource.entity_id(),
                h.name(),
                h.port(),
                h.scheme()
            );
            if let (Some(a), Some(c)) = (h.address(), h.class()) {
                s.push_str(&format!("\nAddress:  {a} ({c})"));
            }
            s
        }
        (Resource::File(p), Action::FileWrite) => shown::file_write_by_program(p.as_str())
            .trim_end()
            .to_string(),
        _ => format!(
            "Action:   {}\nResource: {}",
            req.action.as_str(),
            req.resource.entity_id()
        ),
    };
    if !req.argv.is_empty() {
        s.push_str(&format!("\nCommand:  {}", approval::shown_argv(&req.argv)));
    }
    s
}
