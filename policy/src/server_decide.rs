//! Deciding the server's own requests ([`crate::server_action`]) with a
//! bundle: the same layers and combination as the gate's decisions (org,
//! the account's teams, project; forbids global; deny by default), with the
//! account's teams choosing the team layers. Never Ask.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression};

use crate::bundle::Bundle;
use crate::cedar_req::{CedarInput, Facts, Names};
use crate::decision::{combine, Decision, Effect, EvalError, LayerResult};
use crate::error::PolicyError;
use crate::layer::{LayerKind, LazyInput, Part};
use crate::schema::SCHEMA_VERSION;
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
        match self.evaluate_server(request) {
            Ok(d) => d,
            Err(e) => Decision {
                effect: Effect::Deny,
                determining: Vec::new(),
                layer: None,
                layers: Vec::new(),
                errors: vec![EvalError {
                    policy: String::new(),
                    message: e.to_string(),
                }],
                bundle_digest: self.digest,
                schema_version: SCHEMA_VERSION,
            },
        }
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
        let mut absorb = |acc: &mut LayerResult, part: &Part| -> Result<(), PolicyError> {
            let o = part.evaluate_server(request.action, &f, &mut lazy)?;
            acc.forbids.extend(o.forbids);
            acc.permits.extend(o.permits);
            acc.errors.extend(o.errors);
            acc.permit_in_scope |= o.permit_in_scope;
            Ok(())
        };
        let mut layers = Vec::with_capacity(3);
        let mut org = LayerResult::default();
        absorb(&mut org, &self.org)?;
        layers.push((LayerKind::Org, org));
        let mut team = LayerResult::default();
        let mut seen = HashSet::new();
        for t in &request.principal.teams {
            if let (true, Some(part)) = (seen.insert(t), self.teams.get(t)) {
                absorb(&mut team, part)?;
            }
        }
        layers.push((LayerKind::Team, team));
        if let Some(p) = &self.project {
            let mut project = LayerResult::default();
            absorb(&mut project, p)?;
            layers.push((LayerKind::Project, project));
        }
        let combined = combine(layers);
        let mut determining: Vec<_> = combined
            .reasons
            .iter()
            .filter_map(|id| self.info.get(id).map(|i| i.determining(id)))
            .collect();
        determining.sort_by(|a, b| (&a.layer, &a.id).cmp(&(&b.layer, &b.id)));
        determining.dedup_by(|a, b| a.id == b.id);
        Ok(Decision {
            effect: if combined.allowed {
                Effect::Allow
            } else {
                Effect::Deny
            },
            determining,
            layer: combined.layer,
            layers: combined.layers,
            errors: combined.errors,
            bundle_digest: self.digest,
            schema_version: SCHEMA_VERSION,
        })
    }
}
