//! Building the account from leaves, in log order. Results (closes, ends,
//! answers) are joined to their intents by the intent's index, which the
//! verified chain guarantees comes first.

use std::collections::HashMap;

use stele_audit::event::{DecisionRecord, Effect, EventKind, Status};
use stele_audit::leaf::Leaf;

use super::{
    Approval, CommandRun, Connection, Denial, FileAccess, McpCall, ModelUse, PayloadText,
    Redaction, RetentionEvent, Rule, SessionAccount, TimelineItem, MAX_TIMELINE,
};

/// Where an intent's result belongs.
#[derive(Debug, Clone, Copy)]
enum Slot {
    File(usize),
    Command(usize),
    Connection(usize),
    Model(usize),
    Mcp(usize),
    Approval(usize),
}

/// Collects the account while verified leaves stream past.
#[derive(Debug, Default)]
pub struct AccountBuilder {
    sessions: Vec<SessionAccount>,
    by_id: HashMap<String, usize>,
    /// Intent index → (session, slot).
    intents: HashMap<u64, (usize, Slot)>,
    /// Payload commitments whose text the report shows: (session, which).
    wanted: Vec<(String, usize, Wanted)>,
    redactions: Vec<Redaction>,
    retention: Vec<RetentionEvent>,
}

/// Which text a wanted payload fills in.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    Task,
    Shown(usize),
}

fn rule(d: Option<&DecisionRecord>) -> Rule {
    match d {
        None => Rule::default(),
        Some(d) => Rule {
            effect: effect_text(d.effect).into(),
            policies: d.policies.clone(),
            layer: d.layer.clone(),
            reason: d.reason.clone(),
        },
    }
}

fn effect_text(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Ask => "ask",
    }
}

fn status_text(s: Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{s:?}"))
}

fn data_str(l: &Leaf, key: &str) -> Option<String> {
    l.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// What a leaf concerns, in a few words.
pub(super) fn target_text(l: &Leaf) -> String {
    let Some(t) = &l.target else {
        return String::new();
    };
    let mut parts: Vec<String> = Vec::new();
    for v in [&t.tool, &t.path, &t.program, &t.model, &t.server]
        .into_iter()
        .flatten()
    {
        parts.push(v.clone());
    }
    if let Some(h) = &t.host {
        parts.push(match t.port {
            Some(p) => format!("{h}:{p}"),
            None => h.clone(),
        });
    }
    parts.join(" ")
}

impl AccountBuilder {
    fn session(&mut self, l: &Leaf) -> Option<usize> {
        let id = &l.session.as_ref()?.id;
        if let Some(&i) = self.by_id.get(id) {
            return Some(i);
        }
        let i = self.sessions.len();
        self.sessions.push(SessionAccount {
            id: id.clone(),
            principal: l.actor.principal.clone(),
            teams: l.actor.teams.clone(),
            started: l.ts.clone(),
            ..Default::default()
        });
        self.by_id.insert(id.clone(), i);
        Some(i)
    }

    /// Add one selected, verified leaf.
    pub fn add(&mut self, l: &Leaf) {
        if let Some(detail) = retention_detail(l) {
            self.retention.push(RetentionEvent {
                seq: l.seq,
                ts: l.ts.clone(),
                actor: l.actor.principal.clone(),
                kind: l.kind.as_str().to_string(),
                detail,
            });
        }
        if l.kind == EventKind::Redaction {
            let d = l.data.as_ref();
            self.redactions.push(Redaction {
                seq: l.seq,
                ts: l.ts.clone(),
                actor: l.actor.principal.clone(),
                count: d
                    .and_then(|d| d.get("commits"))
                    .and_then(|c| c.as_array())
                    .map_or(0, Vec::len),
                reason: data_str(l, "reason").unwrap_or_default(),
            });
        }
        let Some(si) = self.session(l) else {
            return;
        };
        let s = &mut self.sessions[si];
        s.entries += 1;
        if s.timeline.len() < MAX_TIMELINE {
            s.timeline.push(TimelineItem {
                seq: l.seq,
                ts: l.ts.clone(),
                kind: l.kind.as_str().into(),
                target: target_text(l),
                outcome: match (&l.decision, &l.outcome) {
                    (Some(d), _) => effect_text(d.effect).into(),
                    (None, Some(o)) => status_text(o.status),
                    (None, None) => String::new(),
                },
            });
        }
        let denied = l
            .decision
            .as_ref()
            .is_some_and(|d| d.effect == Effect::Deny);
        if denied {
            s.denials.push(Denial {
                seq: l.seq,
                ts: l.ts.clone(),
                kind: l.kind.as_str().into(),
                target: target_text(l),
                rule: rule(l.decision.as_ref()),
            });
        }
        let result_of = l.refs.as_ref().map(|r| r.intent_seq);
        self.by_kind(si, l, result_of);
    }

    fn by_kind(&mut self, si: usize, l: &Leaf, result_of: Option<u64>) {
        let slot = result_of.and_then(|i| self.intents.get(&i).copied());
        let s = &mut self.sessions[si];
        let t = l.target.clone().unwrap_or_default();
        match l.kind {
            EventKind::SessionStart => {
                s.client = l.data.as_ref().and_then(|d| d.get("client")).cloned();
                s.authentication = data_str(l, "authentication").or_else(|| data_str(l, "auth"));
                s.network = data_str(l, "network");
                s.sandbox = data_str(l, "sandbox_backend");
                s.policy_bundle = data_str(l, "policy_bundle");
                if let Some(p) = l.payload.iter().find(|p| p.role == "task") {
                    self.wanted.push((p.commit.clone(), si, Wanted::Task));
                }
            }
            EventKind::SessionEnd | EventKind::SessionInterrupted => {
                s.ended = Some(l.ts.clone());
                s.end_status = Some(match (&l.outcome, l.kind) {
                    (Some(o), _) => status_text(o.status),
                    (None, EventKind::SessionInterrupted) => "interrupted".into(),
                    (None, _) => "ended".into(),
                });
                s.end_detail = l.outcome.as_ref().and_then(|o| o.detail.clone());
            }
            EventKind::ModelRequest => {
                let model = t.model.clone().unwrap_or_default();
                let endpoint = data_str(l, "endpoint");
                let i = match s.models.iter().position(|m| {
                    m.model == model && m.provider == t.provider && m.endpoint == endpoint
                }) {
                    Some(i) => i,
                    None => {
                        s.models.push(ModelUse {
                            model,
                            provider: t.provider.clone(),
                            endpoint,
                            ..Default::default()
                        });
                        s.models.len() - 1
                    }
                };
                s.models[i].requests += 1;
                if l.decision
                    .as_ref()
                    .is_some_and(|d| d.effect == Effect::Deny)
                {
                    s.models[i].denied += 1;
                }
                self.intents.insert(l.seq, (si, Slot::Model(i)));
            }
            EventKind::FileOpen | EventKind::PolicyDecision if t.path.is_some() => {
                let reason = l.decision.as_ref().and_then(|d| d.reason.as_deref());
                let op = data_str(l, "op");
                let access = match (reason, op.as_deref()) {
                    (Some(r), _) if r.starts_with("file.write") => "write",
                    (Some(r), _) if r.starts_with("file.read") => "read",
                    (_, Some("create" | "write" | "truncate" | "unlink" | "rename")) => "write",
                    (Some(r), _) if r.starts_with("file.") => return, // listings, lookups
                    _ if l.kind == EventKind::PolicyDecision => return,
                    _ => "read",
                };
                s.files.push(FileAccess {
                    seq: l.seq,
                    ts: l.ts.clone(),
                    path: t.path.clone().unwrap_or_default(),
                    access: access.into(),
                    op,
                    rule: rule(l.decision.as_ref()),
                    ..Default::default()
                });
                let i = s.files.len() - 1;
                self.intents.insert(l.seq, (si, Slot::File(i)));
            }
            EventKind::ExecStart => {
                s.commands.push(CommandRun {
                    seq: l.seq,
                    ts: l.ts.clone(),
                    program: t.program.clone(),
                    argv: t.argv.clone().unwrap_or_default(),
                    cwd: data_str(l, "cwd"),
                    rule: rule(l.decision.as_ref()),
                    ..Default::default()
                });
                let i = s.commands.len() - 1;
                self.intents.insert(l.seq, (si, Slot::Command(i)));
            }
            EventKind::NetConnect | EventKind::PolicyDecision if t.host.is_some() => {
                s.connections.push(Connection {
                    seq: l.seq,
                    ts: l.ts.clone(),
                    host: t.host.clone(),
                    port: t.port,
                    scheme: t.scheme.clone(),
                    rule: rule(l.decision.as_ref()),
                    ..Default::default()
                });
                let i = s.connections.len() - 1;
                self.intents.insert(l.seq, (si, Slot::Connection(i)));
            }
            EventKind::McpCall => {
                s.mcp_calls.push(McpCall {
                    seq: l.seq,
                    ts: l.ts.clone(),
                    server: t.server.clone(),
                    tool: t.tool.clone(),
                    rule: rule(l.decision.as_ref()),
                    ..Default::default()
                });
                let i = s.mcp_calls.len() - 1;
                self.intents.insert(l.seq, (si, Slot::Mcp(i)));
            }
            EventKind::ApprovalRequest => {
                s.approvals.push(Approval {
                    seq: l.seq,
                    ts: l.ts.clone(),
                    requester: l.actor.principal.clone(),
                    target: target_text(l),
                    rule: rule(l.decision.as_ref()),
                    shown_sha256: data_str(l, "shown_sha256"),
                    answer: "unanswered".into(),
                    ..Default::default()
                });
                let i = s.approvals.len() - 1;
                if let Some(p) = l.payload.iter().find(|p| p.role == "shown") {
                    self.wanted.push((p.commit.clone(), si, Wanted::Shown(i)));
                }
                self.intents.insert(l.seq, (si, Slot::Approval(i)));
            }
            EventKind::ApprovalGrant | EventKind::ApprovalDeny => {
                let req = l
                    .data
                    .as_ref()
                    .and_then(|d| d.get("request_seq"))
                    .and_then(|v| v.as_u64());
                if let Some(&(_, Slot::Approval(i))) = req.and_then(|r| self.intents.get(&r)) {
                    let a = &mut self.sessions[si].approvals[i];
                    a.answer = if l.kind == EventKind::ApprovalGrant {
                        "granted"
                    } else {
                        "denied"
                    }
                    .into();
                    a.approver = data_str(l, "approver");
                    a.method = data_str(l, "method");
                    a.detail = data_str(l, "detail").or_else(|| data_str(l, "reason"));
                    a.answered = Some(l.ts.clone());
                }
            }
            _ => self.result(si, l, slot),
        }
    }

    /// A result entry: fill in its intent's line.
    fn result(&mut self, si: usize, l: &Leaf, slot: Option<(usize, Slot)>) {
        let (Some(o), Some((owner, slot))) = (&l.outcome, slot) else {
            return;
        };
        if owner != si {
            return;
        }
        let s = &mut self.sessions[si];
        match (l.kind, slot) {
            (EventKind::FileClose, Slot::File(i)) => {
                let f = &mut s.files[i];
                f.bytes_read = o.bytes_in;
                f.bytes_written = o.bytes_out;
                f.sha256_after_write = data_str(l, "sha256_after_write");
                if f.sha256_after_write.is_some() {
                    f.access = "write".into();
                }
            }
            (EventKind::ExecEnd, Slot::Command(i)) => {
                let c = &mut s.commands[i];
                c.exit = o.code;
                c.status = Some(status_text(o.status));
                c.duration_ms = o.duration_ms;
            }
            (EventKind::NetClose | EventKind::NetConnect, Slot::Connection(i)) => {
                let c = &mut s.connections[i];
                c.bytes_in = o.bytes_in;
                c.bytes_out = o.bytes_out;
            }
            (EventKind::ModelResponse, Slot::Model(i)) => {
                let m = &mut s.models[i];
                m.tokens_in += o.tokens_in.unwrap_or(0);
                m.tokens_out += o.tokens_out.unwrap_or(0);
            }
            (EventKind::McpResult, Slot::Mcp(i)) => {
                s.mcp_calls[i].status = Some(status_text(o.status));
            }
            _ => {}
        }
    }

    /// The sessions and redactions, with payload texts filled in by
    /// `text` (commitment → what the export holds).
    pub fn finish(
        mut self,
        text: impl Fn(&str) -> PayloadText,
    ) -> (Vec<SessionAccount>, Vec<Redaction>, Vec<RetentionEvent>) {
        for (commit, si, w) in &self.wanted {
            let t = text(commit);
            let s = &mut self.sessions[*si];
            match w {
                Wanted::Task => s.task = t,
                Wanted::Shown(i) => s.approvals[*i].shown = t,
            }
        }
        (self.sessions, self.redactions, self.retention)
    }
}

/// What a retention, hold or archive entry did, in words (`None` for
/// every other kind).
fn retention_detail(l: &Leaf) -> Option<String> {
    let d = l.data.as_ref();
    let s = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let n = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    };
    Some(match l.kind {
        EventKind::PayloadExpiry => format!(
            "{} payload(s) erased: retention class {} ({}), made before {} (configuration {})",
            d.and_then(|d| d.get("commits"))
                .and_then(|c| c.as_array())
                .map_or(0, Vec::len),
            s("class"),
            s("retention"),
            s("before"),
            s("config")
        ),
        EventKind::HoldPlace => {
            let scope = match (s("session"), s("principal")) {
                (x, _) if !x.is_empty() => format!("session {x}"),
                (_, p) if !p.is_empty() => format!("principal {p}"),
                _ => format!("time range {} .. {}", s("from"), s("until")),
            };
            format!("legal hold {} placed on {scope}: {}", l.seq, s("reason"))
        }
        EventKind::HoldRelease => format!(
            "approval {} of 2 to release legal hold {}{}: {}",
            n("approval"),
            n("hold"),
            if n("approval") == 2 {
                " (released)"
            } else {
                ""
            },
            s("reason")
        ),
        EventKind::LogArchive => format!(
            "entries 0..{} moved to archive bundle {}: {}",
            n("through"),
            s("bundle"),
            s("reason")
        ),
        _ => return None,
    })
}
