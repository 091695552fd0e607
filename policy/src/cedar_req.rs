//! Translation of a typed [`Request`] into Cedar's request and entity store.
//! The entity store is tiny and built per request: the principal (with its
//! teams as parents) and the resource (with its attributes, and for an MCP
//! tool its server as parent).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};

use crate::error::PolicyError;
use crate::request::{Action, ApprovalOutcome, ArgValue, Network, Request, Resource};
use crate::server_action::{ServerAction, ServerResource};

/// Pre-parsed Cedar names, built once per bundle so that deciding does not
/// re-parse type names.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub user: EntityTypeName,
    pub team: EntityTypeName,
    pub role: EntityTypeName,
    resource_types: HashMap<&'static str, EntityTypeName>,
    actions: Vec<EntityUid>,
    server_actions: Vec<EntityUid>,
}

fn type_name(s: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(s).map_err(|e| PolicyError::Internal(e.to_string()))
}

impl Names {
    pub fn new() -> Result<Self, PolicyError> {
        let mut resource_types = HashMap::new();
        for t in [
            "ArgText",
            "ArgNumber",
            "ArgFlag",
            "File",
            "Program",
            "Host",
            "Model",
            "McpServer",
            "McpTool",
            "Tool",
            "Session",
            "Workspace",
            "AuditLog",
            "Server",
        ] {
            resource_types.insert(t, type_name(t)?);
        }
        let action_type = type_name("Action")?;
        let actions = Action::ALL
            .iter()
            .map(|a| {
                EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.as_str()))
            })
            .collect();
        let server_actions = ServerAction::ALL
            .iter()
            .map(|a| {
                EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.as_str()))
            })
            .collect();
        Ok(Self {
            user: type_name("User")?,
            team: type_name("Team")?,
            role: type_name("Role")?,
            resource_types,
            actions,
            server_actions,
        })
    }

    pub fn server_action(&self, a: ServerAction) -> Result<&EntityUid, PolicyError> {
        self.server_actions
            .get(a.index())
            .ok_or_else(|| PolicyError::Internal("server action index out of range".into()))
    }

    pub fn server_action_of(&self, uid: &EntityUid) -> Option<ServerAction> {
        ServerAction::ALL
            .into_iter()
            .find(|a| self.server_actions.get(a.index()) == Some(uid))
    }

    pub fn role_uid(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.role.clone(), EntityId::new(id))
    }

    /// The uid of a server resource.
    pub fn server_resource_uid(&self, r: &ServerResource) -> Result<EntityUid, PolicyError> {
        Ok(EntityUid::from_type_name_and_id(
            self.resource_type(r.type_name())?,
            EntityId::new(r.entity_id()),
        ))
    }

    pub fn action(&self, a: Action) -> Result<&EntityUid, PolicyError> {
        self.actions
            .get(a.index())
            .ok_or_else(|| PolicyError::Internal("action index out of range".into()))
    }

    pub fn action_of(&self, uid: &EntityUid) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| self.actions.get(a.index()) == Some(uid))
    }

    pub fn user_uid(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(id))
    }

    pub fn team_uid(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.team.clone(), EntityId::new(id))
    }

    /// The uid of the entity holding the arguments of `attr` (of type `ty`).
    fn arg_uid(&self, ty: &'static str, attr: &str) -> Result<EntityUid, PolicyError> {
        Ok(EntityUid::from_type_name_and_id(
            self.resource_type(ty)?,
            EntityId::new(attr),
        ))
    }

    fn resource_type(&self, t: &'static str) -> Result<EntityTypeName, PolicyError> {
        self.resource_types
            .get(t)
            .cloned()
            .ok_or_else(|| PolicyError::Internal(format!("unknown resource type {t}")))
    }
}

/// The request's identities, cheap to compute: enough to match policy
/// scopes without building Cedar's entity store.
pub(crate) struct Facts {
    pub principal: EntityUid,
    pub principal_ancestors: Vec<EntityUid>,
    pub resource: EntityUid,
    pub resource_ancestors: Vec<EntityUid>,
    /// The approver of a recorded approval, with their teams (so that
    /// `context.approval.approver in Team::"…"` sees them), when it is
    /// someone other than the principal.
    pub approver: Option<(EntityUid, Vec<EntityUid>)>,
}

/// The Cedar request and entity store, built only when some policy
/// actually needs Cedar to evaluate it.
pub(crate) struct CedarInput {
    pub request: cedar_policy::Request,
    pub entities: Entities,
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

fn long<T: TryInto<i64>>(v: T) -> RestrictedExpression {
    // Saturate: a value beyond i64 is still "more than any limit".
    RestrictedExpression::new_long(v.try_into().unwrap_or(i64::MAX))
}

fn record(pairs: Vec<(&str, RestrictedExpression)>) -> Result<RestrictedExpression, PolicyError> {
    RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| PolicyError::Internal(e.to_string()))
}

fn resource_uid(
    names: &Names,
    resource: &Resource,
) -> Result<(EntityUid, Vec<EntityUid>), PolicyError> {
    let uid = EntityUid::from_type_name_and_id(
        names.resource_type(resource.type_name())?,
        EntityId::new(resource.entity_id()),
    );
    let parents = match resource {
        Resource::McpTool { server, .. } => vec![EntityUid::from_type_name_and_id(
            names.resource_type("McpServer")?,
            EntityId::new(server),
        )],
        _ => Vec::new(),
    };
    Ok((uid, parents))
}

fn resource_attrs(resource: &Resource) -> HashMap<String, RestrictedExpression> {
    let mut attrs = HashMap::new();
    match resource {
        Resource::File(p) => {
            attrs.insert("path".to_owned(), s(p.as_str()));
        }
        Resource::Program(p) => {
            attrs.insert("name".to_owned(), s(p.name()));
            attrs.insert("path".to_owned(), s(p.path()));
        }
        Resource::Host(h) => {
            attrs.insert("name".to_owned(), s(h.name()));
            attrs.insert("port".to_owned(), long(h.port()));
            attrs.insert("scheme".to_owned(), s(h.scheme()));
            // Absent until known: a name before it is resolved.
            if let (Some(a), Some(c)) = (h.address(), h.class()) {
                attrs.insert("address".to_owned(), s(&a.to_string()));
                attrs.insert("class".to_owned(), s(c.as_str()));
            }
        }
        Resource::Model {
            provider,
            name,
            endpoint,
        } => {
            attrs.insert("provider".to_owned(), s(provider));
            attrs.insert("name".to_owned(), s(name));
            attrs.insert("scheme".to_owned(), s(endpoint.scheme()));
            attrs.insert("host".to_owned(), s(endpoint.host()));
            attrs.insert("port".to_owned(), long(endpoint.port()));
        }
        Resource::McpServer { name } | Resource::Tool { name } => {
            attrs.insert("name".to_owned(), s(name));
        }
        Resource::McpTool { server, tool } => {
            attrs.insert("server".to_owned(), s(server));
            attrs.insert("tool".to_owned(), s(tool));
        }
    }
    attrs
}

/// The tag-holding entities of `context.args`: attribute and entity type.
const ARG_ENTITIES: [(&str, &str); 4] = [
    ("text", "ArgText"),
    ("number", "ArgNumber"),
    ("flag", "ArgFlag"),
    ("abs_path", "ArgText"),
];

/// The entities holding the arguments by name, as tags.
fn arg_entities(names: &Names, req: &Request) -> Result<Vec<Entity>, PolicyError> {
    let a = &req.context.args;
    let mut tags: [Vec<(String, RestrictedExpression)>; 4] = Default::default();
    for (k, v) in &a.values {
        let (i, e) = match v {
            ArgValue::Text(t) => (0, s(t)),
            ArgValue::Number(n) => (1, RestrictedExpression::new_long(*n)),
            ArgValue::Flag(b) => (2, RestrictedExpression::new_bool(*b)),
        };
        tags[i].push((k.clone(), e));
    }
    tags[3] = a.abs_paths.iter().map(|(k, p)| (k.clone(), s(p))).collect();
    // An entity without tags is left out of the store (every request that
    // is not an MCP call): `hasTag` on it is false all the same, and each
    // entity costs a schema check per decision.
    ARG_ENTITIES
        .iter()
        .zip(tags)
        .filter(|(_, tags)| !tags.is_empty())
        .map(|((attr, ty), tags)| {
            Entity::new_with_tags(names.arg_uid(ty, attr)?, [], [], tags)
                .map_err(|e| PolicyError::Internal(e.to_string()))
        })
        .collect()
}

fn context(names: &Names, req: &Request) -> Result<Context, PolicyError> {
    let c = &req.context;
    let sandbox = record(vec![
        ("backend", s(c.sandbox.backend.as_str())),
        (
            "network",
            RestrictedExpression::new_bool(match c.sandbox.network {
                Network::Disabled => false,
                Network::ViaProxy => true,
            }),
        ),
    ])?;
    let mut args = Vec::new();
    if let Some(p) = &c.args.path {
        args.push(("path", s(p.as_str())));
    }
    if let Some(h) = &c.args.host {
        args.push(("host", s(h)));
    }
    if let Some(p) = c.args.port {
        args.push(("port", long(p)));
    }
    if let Some(n) = c.args.size_bytes {
        args.push(("size_bytes", long(n)));
    }
    if let Some(b) = c.args.recursive {
        args.push(("recursive", RestrictedExpression::new_bool(b)));
    }
    if let Some(b) = c.args.overwrite {
        args.push(("overwrite", RestrictedExpression::new_bool(b)));
    }
    for (attr, ty) in ARG_ENTITIES {
        let uid = names.arg_uid(ty, attr)?;
        args.push((attr, RestrictedExpression::new_entity_uid(uid)));
    }
    let mut pairs = vec![
        ("session_id".to_owned(), s(&c.session_id)),
        ("sandbox".to_owned(), sandbox),
        (
            "argv".to_owned(),
            RestrictedExpression::new_set(c.argv.iter().map(|a| s(a))),
        ),
        ("command".to_owned(), s(&c.command_line(&req.resource))),
        ("args".to_owned(), record(args)?),
    ];
    if let Some(a) = &c.approval {
        let granted = match a.outcome {
            ApprovalOutcome::Granted => true,
            ApprovalOutcome::Refused => false,
        };
        pairs.push((
            "approval".to_owned(),
            record(vec![
                ("granted", RestrictedExpression::new_bool(granted)),
                (
                    "approver",
                    RestrictedExpression::new_entity_uid(names.user_uid(&a.approver)),
                ),
                ("method", s(&a.method)),
                ("ticket", s(&a.ticket)),
            ])?,
        ));
    }
    Context::from_pairs(pairs).map_err(|e| PolicyError::Internal(e.to_string()))
}

/// The request's identities; `teams_of` gives a user's team uids.
pub(crate) fn facts<'t>(
    names: &Names,
    req: &Request,
    teams_of: impl Fn(&str) -> &'t [EntityUid],
) -> Result<Facts, PolicyError> {
    let (resource, resource_ancestors) = resource_uid(names, &req.resource)?;
    let approver = req
        .context
        .approval
        .as_ref()
        .filter(|a| a.approver != req.principal)
        .map(|a| (names.user_uid(&a.approver), teams_of(&a.approver).to_vec()));
    Ok(Facts {
        principal: names.user_uid(&req.principal),
        principal_ancestors: teams_of(&req.principal).to_vec(),
        resource,
        resource_ancestors,
        approver,
    })
}

/// Build the Cedar request and entities. `schema` is only passed by tools
/// and tests, to double-check that typed requests match the schema.
pub(crate) fn cedar_input(
    names: &Names,
    req: &Request,
    facts: &Facts,
    schema: Option<&cedar_policy::Schema>,
) -> Result<CedarInput, PolicyError> {
    let user = Entity::new_no_attrs(
        facts.principal.clone(),
        facts
            .principal_ancestors
            .iter()
            .cloned()
            .collect::<HashSet<_>>(),
    );
    let res_entity = Entity::new(
        facts.resource.clone(),
        resource_attrs(&req.resource),
        facts
            .resource_ancestors
            .iter()
            .cloned()
            .collect::<HashSet<_>>(),
    )
    .map_err(|e| PolicyError::Internal(e.to_string()))?;
    let mut all = vec![user, res_entity];
    if let Some((uid, teams)) = &facts.approver {
        all.push(Entity::new_no_attrs(
            uid.clone(),
            teams.iter().cloned().collect::<HashSet<_>>(),
        ));
    }
    all.extend(arg_entities(names, req)?);
    let entities =
        Entities::from_entities(all, schema).map_err(|e| PolicyError::Request(e.to_string()))?;
    let request = cedar_policy::Request::new(
        facts.principal.clone(),
        names.action(req.action)?.clone(),
        facts.resource.clone(),
        context(names, req)?,
        schema,
    )
    .map_err(|e| PolicyError::Request(e.to_string()))?;
    Ok(CedarInput { request, entities })
}
