//! A person's file access through the gate. Each request to the files API
//! is a short session of its own in the log, opened for the authenticated
//! person (`session.start` naming the person, how they authenticated and
//! the HTTP request), in which the read, write or listing is decided by the
//! same Cedar file actions as an agent's (`file.read`, `file.write`,
//! `file.list` on the canonical path) and recorded with the same entries:
//! the intent before, the result (bytes, content SHA-256) after, or the
//! refusal. A rule that asks for approval refuses: nobody is asked while
//! an upload waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stele_audit::{Outcome, Status, Target};
use stele_policy::canonical::canonical_path;
use stele_policy::CanonError;
use stele_policy::{Action, Resource, SandboxFacts, ToolArgs};
use stele_runtime::gate::approval::{ApprovalAnswer, Approver, Reachable};
use stele_runtime::gate::Permit;
use stele_runtime::gate::{ActionRequest, Authorization, Denial, Gate, GateError, SessionInfo};
use stele_sandbox::{FileAccess, FileOp, FileRefusal, RefusalRule, Requester};

use crate::state::AppState;

/// The rule name an upload over `server.max_upload_bytes` is refused by.
pub const UPLOAD_TOO_LARGE: &str = "upload.too_large";

/// Nobody is asked: an Ask on a person's file access is refused, naming why.
#[derive(Debug)]
struct NobodyAsked;

impl Approver for NobodyAsked {
    fn ask(&self, _text: &str) -> ApprovalAnswer {
        ApprovalAnswer {
            outcome: stele_policy::ApprovalOutcome::Refused,
            approver: "system".into(),
            method: "files-api".into(),
            ticket: None,
            detail: Some("uploads and downloads do not wait for approval".into()),
        }
    }

    fn reachable(&self) -> Vec<Reachable> {
        // The gate refuses without asking, saying no approver can be reached.
        Vec::new()
    }
}

/// Who asks, and through which request.
#[derive(Debug, Clone)]
pub struct Person {
    /// The account name (the principal policy sees).
    pub name: String,
    /// How they authenticated (`token`, `password`, `oidc`).
    pub method: &'static str,
    /// `METHOD /path` of the HTTP request.
    pub http: String,
}

/// The gate of one files-API request.
#[derive(Debug)]
pub struct PersonGate {
    gate: Arc<Gate>,
    person: Person,
    ended: AtomicBool,
}

impl Drop for PersonGate {
    /// A request dropped before it said how it ended (its task cancelled)
    /// still closes its session in the log.
    fn drop(&mut self) {
        if !self.ended.load(Ordering::SeqCst) {
            self.end(
                Ending::Failed,
                Some("the request stopped before it finished".into()),
            );
        }
    }
}

/// What a gated operation did, to close its session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Done.
    Done,
    /// Refused (by a rule, a check or a limit).
    Refused,
    /// Failed.
    Failed,
}

fn action_of(access: FileAccess) -> Action {
    match access {
        FileAccess::Read => Action::FileRead,
        FileAccess::Write => Action::FileWrite,
        FileAccess::Delete => Action::FileDelete,
        FileAccess::List => Action::FileList,
    }
}

impl PersonGate {
    /// Open the request's session in the log (blocking: it appends durably).
    pub fn open(
        state: &AppState,
        person: Person,
        workspace: &str,
        root: &std::path::Path,
    ) -> Result<PersonGate, GateError> {
        let teams = state
            .bundle
            .members()
            .teams_of(&person.name)
            .map(str::to_string)
            .collect();
        let info = SessionInfo {
            id: format!("s-{}", uuid::Uuid::new_v4().simple()),
            principal: person.name.clone(),
            teams,
        };
        let data = serde_json::json!({
            "workspace": root.display().to_string(),
            "server_workspace": workspace,
            "method": person.method,
            "http": person.http,
            "client": {
                "kind": "server", "command": "workspace.files",
                "version": env!("CARGO_PKG_VERSION"),
            },
        });
        let gate = Gate::start_session(
            state.log.clone(),
            state.bundle.clone(),
            info,
            Box::new(NobodyAsked),
            // Nothing runs: no sandbox and no network are involved.
            SandboxFacts::default(),
            data,
        )?;
        Ok(PersonGate {
            gate: Arc::new(gate),
            person,
            ended: AtomicBool::new(false),
        })
    }

    /// The session id of this request.
    pub fn session_id(&self) -> &str {
        self.gate.session_id()
    }

    fn data(&self, op: FileOp) -> serde_json::Value {
        serde_json::json!({
            "op": op.recorded_name(),
            "method": self.person.method,
            "http": self.person.http,
        })
    }

    /// Record a refusal made before policy was asked (an escape, a link,
    /// not a regular file, the size limit): a `policy.decision` deny with
    /// `data.refusal.rule`, as for an agent's.
    pub fn refuse(
        &self,
        access: FileAccess,
        op: FileOp,
        path: &[u8],
        rule: RefusalRule,
        detail: &str,
    ) -> Result<Denial, GateError> {
        let path = if path.is_empty() { b"." } else { path };
        let r = FileRefusal::new(access, op, path, rule, Requester::default()).with_detail(detail);
        let mut data = self.data(op);
        data["refusal"] = serde_json::json!({"rule": rule.name(), "access": access.action()});
        if !detail.is_empty() {
            data["refusal"]["detail"] = serde_json::json!(detail);
        }
        let target = Target {
            path: Some(r.path.clone()),
            ..Target::default()
        };
        self.gate.refuse_target(target, r.reason(), Some(data))
    }

    /// Record an upload refused for its size (`server.max_upload_bytes`):
    /// a `policy.decision` deny with `data.refusal.rule` `upload.too_large`.
    pub fn refuse_size(&self, rel: &str, detail: &str) -> Result<Denial, GateError> {
        let op = FileOp::Create;
        let mut data = self.data(op);
        data["refusal"] = serde_json::json!({
            "rule": UPLOAD_TOO_LARGE, "access": FileAccess::Write.action(), "detail": detail,
        });
        let target = Target {
            path: Some(stele_sandbox::printable_path(rel.as_bytes())),
            ..Target::default()
        };
        let reason = format!(
            "file.write on {:?} refused by rule {UPLOAD_TOO_LARGE}: larger than the server \
             accepts ({detail}); nothing of it was kept",
            rel
        );
        self.gate.refuse_target(target, reason, Some(data))
    }

    /// The gate's request for `access` to `rel` (checked), or the
    /// recorded refusal of a path policy cannot be asked about.
    fn request(
        &self,
        access: FileAccess,
        op: FileOp,
        rel: &str,
    ) -> Result<Result<ActionRequest, Denial>, GateError> {
        let shown = if rel.is_empty() { "." } else { rel };
        let path = match canonical_path(shown) {
            Ok(p) => p,
            Err(e) => {
                let rule = match &e {
                    CanonError::ControlCharacter(_) => RefusalRule::ControlCharacter,
                    CanonError::AbsolutePath(_) => RefusalRule::Absolute,
                    CanonError::EscapesWorkspace(_) => RefusalRule::ParentDir,
                    // Empty, and the host and program variants (never made for a path).
                    _ => RefusalRule::EmptyName,
                };
                return Ok(Err(self.refuse(
                    access,
                    op,
                    shown.as_bytes(),
                    rule,
                    &e.to_string(),
                )?));
            }
        };
        let mut ar = ActionRequest::new(action_of(access), Resource::File(path.clone()));
        ar.args = ToolArgs {
            path: Some(path),
            ..ToolArgs::default()
        };
        ar.data = Some(self.data(op));
        Ok(Ok(ar))
    }

    /// Decide `access` to `rel` (checked) by `op` and record the intent.
    pub fn authorize(
        &self,
        access: FileAccess,
        op: FileOp,
        rel: &str,
    ) -> Result<Result<Permit, Denial>, GateError> {
        let ar = match self.request(access, op, rel)? {
            Ok(ar) => ar,
            Err(d) => return Ok(Err(d)),
        };
        Ok(match self.gate.authorize(ar)? {
            Authorization::Permitted(p) => Ok(p),
            Authorization::Denied(d) => Err(d),
        })
    }

    /// Decide a listing of `rel`: one decision entry.
    pub fn check_list(&self, rel: &str) -> Result<Result<u64, Denial>, GateError> {
        let ar = match self.request(FileAccess::List, FileOp::ReadDir, rel)? {
            Ok(ar) => ar,
            Err(d) => return Ok(Err(d)),
        };
        self.gate.check(ar)
    }

    /// Record the result of a permitted access.
    pub fn complete(
        &self,
        permit: Permit,
        outcome: Outcome,
        data: serde_json::Value,
    ) -> Result<u64, GateError> {
        let seq = self
            .gate
            .complete(permit, outcome, Vec::new(), Some(data))?
            .map_or(0, |r| r.seq);
        Ok(seq)
    }

    /// Close the request's session (once; later calls do nothing).
    pub fn end(&self, ending: Ending, detail: Option<String>) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let status = match ending {
            Ending::Done => Status::Ok,
            Ending::Refused => Status::Denied,
            Ending::Failed => Status::Error,
        };
        if let Err(e) = self.gate.end_session(status, detail) {
            tracing::error!("closing files session {}: {e}", self.session_id());
        }
    }
}
