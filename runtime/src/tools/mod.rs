//! The agent's tools. Every call is a `tool.call` decision and a logged
//! intent/result pair; file tools then ask the gate per file (through a
//! Mediator of the call's own, so their entries name the call's intent)
//! and `exec` is an `exec` decision of its own.

pub mod exec;
pub(crate) mod files;
pub mod mcp;
pub mod specs;

use std::path::PathBuf;
use std::sync::Arc;

use stele_audit::{Disclosure, Outcome, PayloadInput, Status};
use stele_policy::{Action, Resource};
use stele_sandbox::exec::Sandbox;
use stele_sandbox::tools::WorkspaceTools;

use crate::gate::mediator::{GateMediator, Parent};
use crate::gate::{ActionRequest, Authorization, Denial, Gate, GateError};
use crate::mcp::McpRegistry;
use crate::provider::{ToolResultStatus, ToolSpec};

/// How much tool output the model sees; the full output stays in the payload store.
pub const MODEL_OUTPUT_CAP: usize = 16 * 1024;

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// Text for the model (possibly truncated) and whether it is an error.
    Output {
        /// The text.
        text: String,
        /// Ok or error.
        status: ToolResultStatus,
    },
    /// The model finished with this answer.
    Final(String),
}

/// One tool call as the log names it.
#[derive(Debug, Clone, Default)]
pub struct CallRef {
    /// stele's id for the call (`call-<model.request index>-<n>`): what results and the log
    /// name, and what a resumed session pairs by.
    pub call_id: String,
    /// The id the provider gave it, if any (recorded, never trusted for identity).
    pub tool_use_id: Option<String>,
    /// How to store the arguments when they are a large value already in the log (see
    /// [`crate::payloads`]); `None`: stored whole.
    pub args: Option<crate::payloads::Stored>,
}

impl CallRef {
    /// The ids for an entry's `data`: `call_id`, and `tool_use_id` when the provider gave one.
    pub fn data(&self) -> serde_json::Value {
        let mut d = serde_json::json!({ "call_id": self.call_id });
        if let Some(t) = &self.tool_use_id {
            d["tool_use_id"] = serde_json::json!(t);
        }
        d
    }

    /// Put the arguments `input` on `req`: whole, or as the stored large value.
    fn args_into(&self, req: &mut ActionRequest, input: &serde_json::Value) {
        match &self.args {
            Some(stored) => {
                req.payloads.extend(stored.payload.clone());
                req.shared.extend(stored.refers.iter().cloned());
            }
            None => req.payloads.push(PayloadInput {
                role: "args".into(),
                media: "application/json".into(),
                body: input.to_string().into_bytes(),
                disclosure: Disclosure::CommitmentOnly,
            }),
        }
    }
}

/// Why a tool call is not run, before any tool or policy sees it. Each is a `policy.decision`
/// entry (effect deny, no policies, the reason) naming the call, and a structured error for
/// the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The reply was cut by the output limit before the call's input was complete.
    InputCut {
        /// The limit the reply had.
        limit: u32,
        /// The limit the next reply has.
        next: u32,
    },
    /// The input the model wrote is not a JSON object.
    InputNotObject,
    /// No tool of that name is offered.
    UnknownTool,
}

impl Refusal {
    /// The stable name in the model's error and the log (`input_cut`, …).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InputCut { .. } => "input_cut",
            Refusal::InputNotObject => "input_not_object",
            Refusal::UnknownTool => "unknown_tool",
        }
    }

    fn reason(self, name: &str) -> String {
        match self {
            Refusal::InputCut { limit, next } => format!(
                "not run: the reply was cut off at the output limit ({limit} tokens) before the input of this {name} call was complete. \
                 The next reply may use up to {next} tokens: send the call again, and split a large input into smaller steps if it does not fit"
            ),
            Refusal::InputNotObject => format!(
                "not run: the input of this {name} call is not a JSON object; send it again as an object matching the tool's schema"
            ),
            Refusal::UnknownTool => format!("not run: there is no tool named {name}"),
        }
    }
}

/// A name from the model, safe to log and show: control, bidi and zero-width characters
/// escaped, at most 100 characters.
fn shown_name(name: &str) -> String {
    let safe = crate::gate::approval::terminal_safe(name, crate::gate::approval::Newlines::Escape);
    let mut out: String = safe.chars().take(100).collect();
    if safe.chars().count() > 100 {
        out.push('…');
    }
    out
}

/// Called with the `tool.intent` index once a tool call's intent is durable (for timing
/// measurements: `stele bench agent`).
pub type IntentObserver = Box<dyn Fn(u64) + Send + Sync>;

/// The tools of one session.
pub struct ToolBox {
    gate: Arc<Gate>,
    files: WorkspaceTools,
    // The workspace for stele's own look at a file a write replaces (to
    // show an approver the changes), never the agent's.
    dir: Arc<cap_std::fs::Dir>,
    sandbox: Arc<dyn Sandbox>,
    workspace: PathBuf,
    mcp: Option<Arc<McpRegistry>>,
    observer: std::sync::OnceLock<IntentObserver>,
}

impl std::fmt::Debug for ToolBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolBox")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

/// A tool's own result before it is recorded.
pub(crate) struct Ran {
    pub(crate) text: String,
    pub(crate) status: ToolResultStatus,
    pub(crate) outcome: Outcome,
}

impl Ran {
    pub(crate) fn ok(text: String) -> Self {
        Self {
            text,
            status: ToolResultStatus::Ok,
            outcome: Outcome::status(Status::Ok),
        }
    }

    pub(crate) fn error(text: String) -> Self {
        let mut outcome = Outcome::status(Status::Error);
        outcome.detail = Some(text.chars().take(200).collect());
        Self {
            text,
            status: ToolResultStatus::Error,
            outcome,
        }
    }

    pub(crate) fn denied(d: &Denial) -> Self {
        let mut outcome = Outcome::status(Status::Denied);
        outcome.detail = Some(d.reason.clone());
        Self {
            text: denial_text(d),
            status: ToolResultStatus::Error,
            outcome,
        }
    }
}

/// The structured error the model receives for a denial: the rule and layer.
pub fn denial_text(d: &Denial) -> String {
    denial_json(d).to_string()
}

/// [`denial_text`] as a JSON object, for callers that add fields.
pub(crate) fn denial_json(d: &Denial) -> serde_json::Value {
    serde_json::json!({
        "error": "denied_by_policy",
        "policies": d.policies,
        "layer": d.layer,
        "reason": d.reason,
        "audit_entry": d.seq,
    })
}

impl ToolBox {
    /// Tools over `workspace`, running commands in `sandbox`. Each file
    /// tool call's accesses are mediated by the gate on behalf of that call.
    pub fn new(
        gate: Arc<Gate>,
        workspace: PathBuf,
        sandbox: Arc<dyn Sandbox>,
    ) -> Result<Self, stele_sandbox::tools::ToolError> {
        // Each call runs the tools with a mediator of its own (see
        // `run_file_tool`); this one, for the session, is never asked.
        let files = WorkspaceTools::open(
            &workspace,
            Arc::new(GateMediator::with_parent(gate.clone(), Parent::Session)),
            stele_sandbox::Requester::default(),
        )?;
        let dir = cap_std::fs::Dir::open_ambient_dir(&workspace, cap_std::ambient_authority())
            .map_err(|e| stele_sandbox::tools::ToolError::Io {
                path: workspace.display().to_string(),
                source: e,
            })?;
        Ok(Self {
            gate,
            files,
            dir: Arc::new(dir),
            sandbox,
            workspace,
            mcp: None,
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Be told each tool call's `tool.intent` index as soon as it is durable (once per box).
    pub fn observe_intents(&self, observer: IntentObserver) {
        let _ = self.observer.set(observer);
    }

    /// Refuse a call without running it: a `policy.decision` entry (deny, no policies, the
    /// reason, the call's ids and the tool's name escaped) and the model's structured error.
    pub fn refuse(
        &self,
        call: &CallRef,
        name: &str,
        why: Refusal,
    ) -> Result<ToolOutcome, GateError> {
        let shown = shown_name(name);
        let mut req = ActionRequest::new(
            Action::ToolCall,
            Resource::Tool {
                name: shown.clone(),
            },
        );
        let mut data = call.data();
        data["refused"] = serde_json::json!(why.code());
        data["tool"] = serde_json::json!(shown);
        req.data = Some(data);
        let reason = why.reason(&format!("{shown:?}"));
        let d = self.gate.refuse(&req, reason.clone())?;
        crate::telemetry::spans::note_denied(d.seq);
        let mut text = serde_json::json!({
            "error": why.code(),
            "tool": shown,
            "reason": reason,
            "audit_entry": d.seq,
        });
        if why == Refusal::UnknownTool {
            let mut names: Vec<String> = specs::all().into_iter().map(|s| s.name).collect();
            if let Some(m) = &self.mcp {
                names.extend(m.offered_names());
            }
            text["available"] = serde_json::json!(names);
        }
        Ok(ToolOutcome::Output {
            text: text.to_string(),
            status: ToolResultStatus::Error,
        })
    }

    /// Offer the tools of these MCP servers too.
    pub fn with_mcp(mut self, registry: Arc<McpRegistry>) -> Self {
        self.mcp = (!registry.is_empty()).then_some(registry);
        self
    }

    /// The tools offered to the model: the built-in ones, then the MCP
    /// tools policy lets this principal see (starting servers on first
    /// use). Blocking: call from a blocking thread.
    pub fn specs(&self) -> Result<Vec<ToolSpec>, GateError> {
        let mut all = specs::all();
        if let Some(m) = &self.mcp {
            all.extend(m.specs(&self.gate)?);
        }
        Ok(all)
    }

    /// Stop the MCP servers (end of session; each stop is logged).
    pub fn shutdown(&self) -> Result<(), GateError> {
        match &self.mcp {
            Some(m) => m.shutdown(&self.gate),
            None => Ok(()),
        }
    }

    /// Run one tool call: decide `tool.call`, log the intent with the
    /// arguments, run, log the result with the full output.
    pub fn call(
        &self,
        call: &CallRef,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<ToolOutcome, GateError> {
        if name == specs::FINAL_ANSWER {
            let answer = input
                .get("answer")
                .and_then(|a| a.as_str())
                .unwrap_or_default()
                .to_string();
            return Ok(ToolOutcome::Final(answer));
        }
        // MCP tools: only names stele itself offered map to a server and tool.
        if let Some(registry) = &self.mcp {
            if let Some(tool) = registry.lookup(name) {
                let ran = mcp::call(&self.gate, registry, call, &tool, input)?;
                return Ok(ToolOutcome::Output {
                    text: for_model(ran.text.as_bytes()),
                    status: ran.status,
                });
            }
        }
        if !specs::all().iter().any(|s| s.name == name) {
            return self.refuse(call, name, Refusal::UnknownTool);
        }
        let mut req = ActionRequest::new(
            Action::ToolCall,
            Resource::Tool {
                name: name.to_string(),
            },
        );
        call.args_into(&mut req, input);
        req.data = Some(call.data());
        req.shown = Some(format!("Tool call: {name}\nArguments: {input}"));
        let permit = match self.gate.authorize(req)? {
            Authorization::Permitted(p) => p,
            Authorization::Denied(d) => {
                crate::telemetry::spans::note_denied(d.seq);
                return Ok(ToolOutcome::Output {
                    text: denial_text(&d),
                    status: ToolResultStatus::Error,
                });
            }
        };
        crate::telemetry::spans::note_intent(permit.intent_seq(), &permit.intent_leaf());
        if let Some(o) = self.observer.get() {
            o(permit.intent_seq());
        }
        let ran = match name {
            specs::EXEC => exec::run(
                &self.gate,
                self.sandbox.as_ref(),
                permit.intent_seq(),
                input,
            )?,
            _ => self.run_file_tool(permit.intent_seq(), name, input)?,
        };
        let full = ran.text.into_bytes();
        crate::telemetry::spans::note_outcome(ran.outcome.status);
        let receipt = self.gate.complete(
            permit,
            ran.outcome,
            vec![PayloadInput {
                role: "output".into(),
                media: "text/plain".into(),
                body: full.clone(),
                disclosure: Disclosure::CommitmentOnly,
            }],
            Some(call.data()),
        )?;
        if let Some(r) = &receipt {
            crate::telemetry::spans::note_result(r);
        }
        Ok(ToolOutcome::Output {
            text: for_model(&full),
            status: ran.status,
        })
    }
}

impl ToolBox {
    /// Run a built-in file tool whose `tool.intent` is `intent`: its file
    /// entries name that intent. Any access left open (none, unless a tool
    /// forgot to report a close) is closed as interrupted.
    fn run_file_tool(
        &self,
        intent: u64,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<Ran, GateError> {
        let mut mediator = GateMediator::with_parent(self.gate.clone(), Parent::ToolCall(intent));
        if let Some(show) = files::show_write(&self.dir, name, input) {
            mediator = mediator.showing_writes(show);
        }
        let mediator = Arc::new(mediator);
        let files = self
            .files
            .with_mediator(mediator.clone(), stele_sandbox::Requester::default());
        let ran = files::run(&files, name, input);
        for permit in mediator.take_open() {
            self.gate.complete(
                permit,
                Outcome::status(Status::Interrupted),
                Vec::new(),
                None,
            )?;
        }
        Ok(ran)
    }
}

/// Truncate long output for the model, saying so.
pub(crate) fn for_model(full: &[u8]) -> String {
    let text = String::from_utf8_lossy(full);
    if text.len() <= MODEL_OUTPUT_CAP {
        return text.into_owned();
    }
    let mut cut = MODEL_OUTPUT_CAP;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n[… output truncated: {} of {} bytes shown; the full output is in the audit log]",
        &text[..cut],
        cut,
        text.len()
    )
}
