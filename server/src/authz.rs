//! Who may do what on the server: Cedar decisions in the team's bundle, on
//! the server's own actions (`session.start`, `session.view`, `audit.read`,
//! … — see `stele_policy::server_action`). The principal is the account
//! (name, teams, role), the resource the session, workspace, log or server.
//! The templates in `policies/` grant the roles member, approver, reviewer
//! and admin; a bundle that grants none refuses everything (deny by
//! default). Whether an approver's *grant* lifts a rule of a session is
//! still the gate's decision (segregation of duties). Every decision is
//! recorded, naming the policies that decided (see [`crate::record`]).

use stele_policy::{Account, Bundle, Decision, Effect, ServerRequest, ServerResource};

pub use stele_policy::ServerAction;

use crate::store::User;

/// A server decision and its reason in words.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The bundle's decision (Allow or Deny).
    pub decision: Decision,
    /// Why, for the log and the problem response.
    pub reason: String,
}

impl Decided {
    /// Whether the action may go ahead.
    pub fn allowed(&self) -> bool {
        match self.decision.effect {
            Effect::Allow => true,
            // Nothing parks a server action: an Ask cannot happen here,
            // and would be a refusal if it did (fail closed).
            Effect::Deny | Effect::Ask => false,
        }
    }

    /// The ids of the policies that decided.
    pub fn policies(&self) -> Vec<String> {
        self.decision.reasons().map(str::to_owned).collect()
    }
}

/// The account as the bundle sees it.
pub fn account(who: &User) -> Account {
    Account {
        name: who.name.clone(),
        teams: who.teams.clone(),
        role: who.role.as_str().to_owned(),
    }
}

/// Session `id` of `owner` in `workspace` of `teams`, as a resource.
pub fn session(id: &str, owner: &str, workspace: &str, teams: &[String]) -> ServerResource {
    ServerResource::Session {
        id: id.to_owned(),
        owner: owner.to_owned(),
        workspace: workspace.to_owned(),
        teams: teams.to_vec(),
    }
}

fn describe(r: &ServerResource) -> String {
    match r {
        ServerResource::Session {
            id,
            owner,
            workspace,
            teams,
        } => format!("{owner}'s session {id} in workspace {workspace} (teams {teams:?})"),
        ServerResource::Workspace { name, teams } => {
            format!("workspace {name} (teams {teams:?})")
        }
        ServerResource::AuditLog => "the audit log".into(),
        ServerResource::Server => "the server".into(),
    }
}

/// Decide `action` by `who` (authenticated through `method`) on `on`.
pub fn decide(
    bundle: &Bundle,
    who: &User,
    method: &str,
    action: ServerAction,
    on: ServerResource,
) -> Decided {
    let what = describe(&on);
    let decision = match ServerRequest::new(account(who), action, on, method) {
        Ok(req) => bundle.decide_server(&req),
        Err(e) => {
            return Decided {
                reason: format!("{action} refused: {e}"),
                decision: Decision {
                    effect: Effect::Deny,
                    determining: Vec::new(),
                    layer: None,
                    layers: Vec::new(),
                    errors: Vec::new(),
                    bundle_digest: *bundle.digest(),
                    schema_version: stele_policy::SCHEMA_VERSION,
                },
            }
        }
    };
    let ids = || decision.reasons().collect::<Vec<_>>().join(", ");
    let who_is = format!(
        "{} ({}, teams {:?})",
        who.name,
        who.role.as_str(),
        who.teams
    );
    let reason = match decision.effect {
        Effect::Allow => format!("{action} on {what} allowed by {}", ids()),
        Effect::Deny | Effect::Ask if !decision.errors.is_empty() => format!(
            "{who_is} may not {action} {what}: a policy failed to evaluate ({}), so it is refused",
            decision
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.policy, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Effect::Deny | Effect::Ask if !decision.determining.is_empty() => {
            format!("{who_is} may not {action} {what}: forbidden by {}", ids())
        }
        Effect::Deny | Effect::Ask if !bundle.permits_server_actions() => format!(
            "{who_is} may not {action} {what}: the policy bundle grants none of the server's \
             actions (deny by default); add the server roles (policies/README.md, \
             org/server.cedar in the templates)"
        ),
        Effect::Deny | Effect::Ask => {
            format!("{who_is} may not {action} {what}: no policy permits it (deny by default)")
        }
    };
    Decided { decision, reason }
}
