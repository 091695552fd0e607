//! Denials as a person should read them: the reason in words first (you
//! are not a member; this model is not one the policy allows you, and
//! these are), the rule that decided it second.

use stele_policy::{Bundle, ModelEndpoint, SandboxFacts};

use super::doctor::grants::{default_endpoints, policy_endpoints, probe, GrantEffect};
use crate::terminal_safe;

/// Why a run's model request was denied, for the person who ran it.
/// `reason` is the decision's own text (the rule and where it is written).
/// Models are looked for at `endpoint` (the run's) and the providers' own APIs.
pub fn model_denied(
    bundle: &Bundle,
    principal: &str,
    teams: &[String],
    endpoint: Option<&ModelEndpoint>,
    reason: &str,
) -> String {
    let p = terminal_safe::line(principal);
    let words = if teams.is_empty() && bundle.teams().next().is_some() {
        format!(
            "you ({p}) are not in this deployment's members list ({}); ask whoever maintains \
             the policy to add you to a team",
            terminal_safe::path(&bundle.root().join("members.toml"))
        )
    } else {
        // The models allowed at the run's endpoint; when none, where they are.
        let at_run: Vec<ModelEndpoint> = endpoint.into_iter().cloned().collect();
        let elsewhere: Vec<ModelEndpoint> = at_run
            .iter()
            .cloned()
            .chain(default_endpoints())
            .chain(policy_endpoints(bundle.root()))
            .collect();
        let models = |endpoints: &[ModelEndpoint]| {
            probe(bundle, principal, SandboxFacts::default(), endpoints)
                .into_iter()
                .filter(|g| g.action == "model.request" && g.effect == GrantEffect::Allow)
                .collect::<Vec<_>>()
        };
        let mut grants = models(&at_run);
        if grants.is_empty() {
            grants = models(&elsewhere);
        }
        let allowed: Vec<String> = grants
            .into_iter()
            .filter(|g| g.action == "model.request" && g.effect == GrantEffect::Allow)
            .map(|g| match g.resource.strip_prefix("* at ") {
                Some(endpoint) => format!("any model at {}", terminal_safe::line(endpoint)),
                None => terminal_safe::line(&g.resource),
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
