//! Deciding the server's own requests ([`crate::server_action`]) with a
//! bundle: the same layers and combination as the gate's decisions (org,
//! the account's teams, project; forbids global; deny by default), with the
//! account's teams choosing the team layers. Never Ask.

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression};

use crate::bundle::Bundle;
use crate::cedar_req::{CedarInput, Facts, Names};
use crate::decision::Decision;
use crate::error::PolicyError;
use crate::layer::{LazyInput, Part};
use crate::server_action::{ServerRequest, ServerResource};

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

fn facts(names: &Names, r: &ServerRequest) -> Result<Facts, PolicyError> {
    let mut ancestors: Vec<EntityUid> = r
        .principal
        .teams
        .iter()
        .map(|t| names.team_uid(t))
        .collect();
    ancestors.push(names.role_uid(&r.principal.role));
    Ok(Facts {
        principal: names.user_uid(&r.principal.name),
        principal_ancestors: ancestors,
        resource: names.server_resource_uid(&r.resource)?,
        resource_ancestors: Vec::new(),
        approver: None,
    })
}

fn teams_set(names: &Names, teams: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        teams
            .iter()
            .map(|t| RestrictedExpression::new_entity_uid(names.team_uid(t))),
    )
}

fn input(
    names: &Names,
    r: &ServerRequest,
    f: &Facts,
    schema: Option<&cedar_policy::Schema>,
) -> Result<CedarInput, PolicyError> {
    let internal = |e: &dyn std::fmt::Display| PolicyError::Request(e.to_string());
    let user = Entity::new_no_attrs(
        f.principal.clone(),
        f.principal_ancestors
            .iter()
            .cloned()
            .collect::<HashSet<_>>(),
    );
    let mut attrs = HashMap::new();
    match &r.resource {
        ServerResource::Session {
            owner,
            workspace,
            teams,
            ..
        } => {
            attrs.insert(
                "owner".to_owned(),
                RestrictedExpression::new_entity_uid(names.user_uid(owner)),
            );
            attrs.insert("workspace".to_owned(), s(workspace));
            attrs.insert("teams".to_owned(), teams_set(names, teams));
        }
        ServerResource::Workspace { name, teams } => {
            attrs.insert("name".to_owned(), s(name));
            attrs.insert("teams".to_owned(), teams_set(names, teams));
        }
        ServerResource::AuditLog | ServerResource::Server => {}
    }
    let resource =
        Entity::new(f.resource.clone(), attrs, HashSet::new()).map_err(|e| internal(&e))?;
    let entities = Entities::from_entities([user, resource], schema).map_err(|e| internal(&e))?;
    let context = Context::from_pairs([
        (
            "is_owner".to_owned(),
            RestrictedExpression::new_bool(r.is_owner()),
        ),
        ("method".to_owned(), s(&r.method)),
    ])
    .map_err(|e| internal(&e))?;
    let request = cedar_policy::Request::new(
        f.principal.clone(),
        names.server_action(r.action)?.clone(),
        f.resource.clone(),
        context,
        schema,
    )
    .map_err(|e| internal(&e))?;
    Ok(CedarInput { request, entities })
}

impl Bundle {
    /// Decide a server request: Allow or Deny (never Ask), with the
    /// policies that decided. Never fails: an internal error is a Deny
    /// carrying it (fail closed).
    pub fn decide_server(&self, request: &ServerRequest) -> Decision {
        self.evaluate_server(request)
            .unwrap_or_else(|e| self.internal_deny(e))
    }

    /// Check a server request against the schema as Cedar sees it (tests).
    pub fn check_server_request(&self, request: &ServerRequest) -> Result<(), PolicyError> {
        let f = facts(&self.names, request)?;
        input(&self.names, request, &f, Some(&self.schema)).map(|_| ())
    }

    /// Whether any permit's scope covers a server action. A bundle
    /// without one refuses every server request (deny by default).
    pub fn permits_server_actions(&self) -> bool {
        std::iter::once(&self.org)
            .chain(self.teams.values())
            .chain(self.project.as_ref())
            .any(Part::has_server_permit)
    }

    fn evaluate_server(&self, request: &ServerRequest) -> Result<Decision, PolicyError> {
        let f = facts(&self.names, request)?;
        let build = || input(&self.names, request, &f, None);
        let mut lazy = LazyInput {
            build: &build,
            input: None,
        };
        // An account's teams, each once.
        let teams: BTreeSet<&str> = request.principal.teams.iter().map(String::as_str).collect();
        self.combine_layers(teams, |part| {
            part.evaluate_server(request.action, &f, &mut lazy)
        })
    }
}
