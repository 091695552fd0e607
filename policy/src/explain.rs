//! Rendering a decision for people (`stele policy explain`, denial messages).

use std::fmt::Write as _;

use crate::decision::{Decision, Effect, PolicyEffect, Verdict};
use crate::request::{Request, Resource};
use crate::server_action::{ServerRequest, ServerResource};

/// A one-line reason suitable for a denial message to the model or user:
/// names the rule(s) and layer.
pub fn summary(d: &Decision) -> String {
    let rules: Vec<String> = d
        .determining
        .iter()
        .map(|p| format!("`{}` ({}, {}:{})", p.id, p.layer, p.file, p.line))
        .collect();
    match (d.effect, rules.is_empty()) {
        (Effect::Allow, _) => format!("allowed by {}", rules.join(", ")),
        (Effect::Ask, _) => format!("needs approval: {}", rules.join(", ")),
        (Effect::Deny, false) => format!("denied by {}", rules.join(", ")),
        (Effect::Deny, true) if !d.errors.is_empty() => {
            "denied: a policy failed to evaluate (fail closed)".to_owned()
        }
        (Effect::Deny, true) => match d.layer {
            Some(l) => format!("denied: no policy in the {l} layer permits this"),
            None => "denied: no policy permits this (deny by default)".to_owned(),
        },
    }
}

/// A multi-line explanation: decision, request, every layer's verdict, the
/// determining policies with their source and annotations, errors, digest.
pub fn render(request: &Request, d: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "decision: {}", d.effect);
    let _ = writeln!(out, "why:      {}", summary(d));
    let _ = writeln!(
        out,
        "request:  User::\"{}\" {} {}::\"{}\"",
        request.principal(),
        request.action(),
        request.resource().type_name(),
        request.resource().entity_id()
    );
    if let Resource::Host(h) = request.resource() {
        match (h.address(), h.class()) {
            (Some(a), Some(c)) => {
                let _ = writeln!(out, "address:  {a} (class {c})");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "address:  (not resolved: the decision by name alone, without \
                     resource.address and resource.class)"
                );
            }
        }
    }
    out.push_str(&body(d));
    out
}

/// [`render`] for one of the server's own requests: the account's teams,
/// role and method, and the resource's attributes, then the same verdicts.
pub fn render_server(request: &ServerRequest, d: &Decision) -> String {
    let mut out = String::new();
    let a = request.principal();
    let r = request.resource();
    let _ = writeln!(out, "decision: {}", d.effect);
    let _ = writeln!(out, "why:      {}", summary(d));
    let _ = writeln!(
        out,
        "request:  User::\"{}\" {} {}::\"{}\"",
        a.name,
        request.action(),
        r.type_name(),
        r.entity_id()
    );
    let _ = writeln!(
        out,
        "account:  teams [{}], role {}, method {}",
        a.teams.join(", "),
        a.role,
        request.method
    );
    match r {
        ServerResource::Session {
            owner,
            workspace,
            teams,
            ..
        } => {
            let _ = writeln!(
                out,
                "resource: owner {owner}, workspace {workspace}, teams [{}] (is_owner: {})",
                teams.join(", "),
                request.is_owner()
            );
        }
        ServerResource::Workspace { teams, .. } => {
            let _ = writeln!(out, "resource: teams [{}]", teams.join(", "));
        }
        ServerResource::AuditLog | ServerResource::Server => {}
    }
    out.push_str(&body(d));
    out
}

/// The verdicts of every layer, the determining policies, errors, digest.
fn body(d: &Decision) -> String {
    let mut out = String::new();
    let layers: Vec<String> = d
        .layers
        .iter()
        .map(|l| {
            let v = match l.verdict {
                Verdict::Allow => "allow",
                Verdict::Forbid => "forbid",
                Verdict::NoPermit => "no-permit",
                Verdict::Error => "error",
                Verdict::Abstain => "abstain",
            };
            format!("{}={v}", l.layer)
        })
        .collect();
    let _ = writeln!(out, "layers:   {}", layers.join(" "));
    if d.determining.is_empty() {
        let _ = writeln!(out, "policies: (none)");
    } else {
        let _ = writeln!(out, "policies:");
        for p in &d.determining {
            let eff = match p.effect {
                PolicyEffect::Permit => "permit",
                PolicyEffect::Forbid => "forbid",
            };
            let _ = writeln!(
                out,
                "  {eff} {}  [{}]  {}:{}",
                p.id, p.layer, p.file, p.line
            );
            let notes: Vec<String> = p
                .annotations
                .iter()
                .filter(|(k, _)| k.as_str() != "id")
                .map(|(k, v)| format!("@{k}({v:?})"))
                .collect();
            if !notes.is_empty() {
                let _ = writeln!(out, "    {}", notes.join(" "));
            }
        }
    }
    for e in &d.errors {
        let _ = writeln!(out, "error:    {}: {}", e.policy, e.message);
    }
    let _ = writeln!(
        out,
        "bundle:   {} (schema {})",
        d.bundle_digest, d.schema_version
    );
    out
}
