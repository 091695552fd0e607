//! Denials as a person should read them: the reason in words first (you
//! are not a member; this model is not one the policy allows you, and
//! these are), the rule that decided it second.

use stele_policy::{Bundle, SandboxFacts};

use super::doctor::grants::{probe, GrantEffect};
use crate::terminal_safe;

/// Why a run's model request was denied, for the person who ran it.
/// `reason` is the decision's own text (the rule and where it is written).
pub fn model_denied(bundle: &Bundle, principal: &str, teams: &[String], reason: &str) -> String {
    let p = terminal_safe::line(principal);
    let words = if teams.is_empty() && bundle.teams().next().is_some() {
        format!(
            "you ({p}) are not in this deployment's members list ({}); ask whoever maintains \
             the policy to add you to a team",
            terminal_safe::path(&bundle.root().join("members.toml"))
        )
    } else {
        let allowed: Vec<String> = probe(bundle, principal, SandboxFacts::default())
            .into_iter()
            .filter(|g| g.action == "model.request" && g.effect == GrantEffect::Allow)
            .map(|g| {
                if g.resource == "*" {
                    "any model".to_string()
                } else {
                    terminal_safe::line(&g.resource)
                }
            })
            .collect();
        if allowed.is_empty() {
            format!("the policy allows you ({p}) no model it names")
        } else {
            format!(
                "this model is not one the policy allows you ({p}); it allows: {} (give \
                 --model PROVIDER:NAME)",
                allowed.join(", ")
            )
        }
    };
    format!("{words}. Rule: {}", terminal_safe::line(reason))
}
