//! Mapping between policy requests/decisions and audit log records.

use stele_audit::{DecisionRecord, Effect as AuditEffect, EventKind, Target};
use stele_policy::{Action, Decision, Effect, Resource};

/// The intent kind an action is logged under, and the result kind that closes it.
pub fn kinds(action: Action) -> (EventKind, Option<EventKind>) {
    match action {
        Action::ModelRequest => (EventKind::ModelRequest, Some(EventKind::ModelResponse)),
        Action::ToolCall => (EventKind::ToolIntent, Some(EventKind::ToolResult)),
        Action::FileRead | Action::FileWrite | Action::FileList | Action::FileDelete => {
            (EventKind::FileOpen, Some(EventKind::FileClose))
        }
        Action::Exec => (EventKind::ExecStart, Some(EventKind::ExecEnd)),
        Action::NetConnect => (EventKind::NetConnect, Some(EventKind::NetClose)),
        Action::McpCall => (EventKind::McpCall, Some(EventKind::McpResult)),
        // Listing is recorded as one entry; there is nothing to close.
        Action::McpList => (EventKind::McpList, None),
    }
}

/// The decision as the log records it: effect, determining policy ids,
/// deciding layer, bundle digest, and a one-line reason.
pub fn decision_record(d: &Decision, action: Action) -> DecisionRecord {
    let effect = match d.effect {
        Effect::Allow => AuditEffect::Allow,
        Effect::Deny => AuditEffect::Deny,
        Effect::Ask => AuditEffect::Ask,
    };
    let policies: Vec<String> = d.determining.iter().map(|p| p.id.clone()).collect();
    let layer = d
        .determining
        .first()
        .map(|p| p.layer.to_string())
        .or_else(|| d.layer.map(|l| l.to_string()));
    DecisionRecord {
        bundle: d.bundle_digest.to_string(),
        effect,
        layer,
        policies,
        reason: Some(reason_text(d, action)),
    }
}

/// A short explanation naming the rule and its layer, for the log, the
/// user and the model.
pub fn reason_text(d: &Decision, action: Action) -> String {
    let rules: Vec<String> = d
        .determining
        .iter()
        .map(|p| format!("{} ({}, {}:{})", p.id, p.layer, p.file, p.line))
        .collect();
    match (d.effect, rules.is_empty()) {
        (Effect::Allow, _) => format!("{} permitted by {}", action.as_str(), rules.join(", ")),
        (Effect::Ask, _) => format!(
            "{} needs approval under {}",
            action.as_str(),
            rules.join(", ")
        ),
        (Effect::Deny, true) => {
            let layer = d
                .layer
                .map(|l| format!(" in the {l} layer"))
                .unwrap_or_default();
            format!(
                "{} denied by default: no policy permits it{layer}",
                action.as_str()
            )
        }
        (Effect::Deny, false) => format!("{} denied by {}", action.as_str(), rules.join(", ")),
    }
}

/// The audit target of a policy resource.
pub fn target(resource: &Resource, argv: &[String]) -> Target {
    let mut t = Target::default();
    match resource {
        Resource::File(p) => t.path = Some(p.as_str().to_string()),
        Resource::Program(p) => {
            t.program = Some(p.path().to_string());
            t.argv = Some(argv.to_vec());
        }
        Resource::Host(h) => {
            t.host = Some(h.name().to_string());
            t.port = Some(h.port());
            t.scheme = Some(h.scheme().to_string());
        }
        Resource::Model {
            provider,
            name,
            endpoint,
        } => {
            t.provider = Some(provider.clone());
            t.model = Some(name.clone());
            t.host = Some(endpoint.host().to_string());
            t.port = Some(endpoint.port());
            t.scheme = Some(endpoint.scheme().to_string());
        }
        Resource::McpServer { name } => t.server = Some(name.clone()),
        Resource::McpTool { server, tool } => {
            t.server = Some(server.clone());
            t.tool = Some(tool.clone());
        }
        Resource::Tool { name } => t.tool = Some(name.clone()),
    }
    t
}
