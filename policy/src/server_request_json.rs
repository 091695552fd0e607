//! A server request ([`crate::server_action`]) from the strings and JSON of
//! a policy test case or of `stele policy explain`, so a team can test and
//! explain who may see, approve, export and administer before the server
//! decides it for real.
//!
//! The context of a server action is an object:
//!
//! ```json
//! {
//!   "method": "token",
//!   "account": {"teams": ["finance"], "role": "reviewer"},
//!   "resource": {"owner": "bob", "workspace": "receipts", "teams": ["finance"]}
//! }
//! ```
//!
//! `method` is how the account authenticated [default `token`]; `account`
//! is the server account [default: the principal's teams in `members.toml`,
//! role `member`]; `resource` carries the attributes of a `Session` (owner,
//! workspace, the workspace's teams — all required) or a `Workspace` (its
//! teams, required). `AuditLog::"log"` and `Server::"stele"` take none.
//! `context.is_owner` is derived, as the server derives it.

use std::str::FromStr;

use serde::Deserialize;

use crate::bundle::Bundle;
use crate::error::PolicyError;
use crate::request::parse_principal;
use crate::server_action::{Account, ServerAction, ServerRequest, ServerResource};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerContext {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    account: Option<AccountJson>,
    #[serde(default)]
    resource: Option<ResourceJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountJson {
    #[serde(default)]
    teams: Option<Vec<String>>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResourceJson {
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    teams: Option<Vec<String>>,
}

fn bad(m: String) -> PolicyError {
    PolicyError::Request(m)
}

/// Whether `action` names a server action (`session.view`,
/// `Action::"admin"`, …) rather than one the gate decides.
pub fn is_server_action(action: &str) -> bool {
    ServerAction::from_str(action).is_ok()
}

/// Build the server request a test case or `explain` describes.
pub fn server_request_from_parts(
    bundle: &Bundle,
    principal: &str,
    action: &str,
    resource: &str,
    context: Option<&serde_json::Value>,
) -> Result<ServerRequest, PolicyError> {
    let name = parse_principal(principal)?;
    let action = ServerAction::from_str(action)?;
    let ctx: ServerContext = match context {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| bad(format!("context of a server action: {e}")))?,
        None => ServerContext::default(),
    };
    let account = match ctx.account {
        Some(AccountJson { teams, role }) => Account {
            teams: teams.unwrap_or_else(|| members_teams(bundle, &name)),
            role: role.unwrap_or_else(|| "member".to_owned()),
            name,
        },
        None => Account {
            teams: members_teams(bundle, &name),
            role: "member".to_owned(),
            name,
        },
    };
    let resource = server_resource(resource, ctx.resource.unwrap_or_default())?;
    let method = ctx.method.unwrap_or_else(|| "token".to_owned());
    ServerRequest::new(account, action, resource, &method)
}

fn members_teams(bundle: &Bundle, user: &str) -> Vec<String> {
    bundle.members().teams_of(user).map(str::to_owned).collect()
}

fn server_resource(uid: &str, attrs: ResourceJson) -> Result<ServerResource, PolicyError> {
    let parsed = cedar_policy::EntityUid::from_str(uid)
        .map_err(|e| bad(format!("resource `{uid}` is not an entity uid: {e}")))?;
    let ty = parsed.type_name().to_string();
    let id = parsed.id().unescaped().to_owned();
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| bad(format!("a {ty} needs context.resource.{what}")))
    };
    let teams = |v: Option<Vec<String>>| {
        v.ok_or_else(|| {
            bad(format!(
                "a {ty} needs context.resource.teams (the workspace's teams)"
            ))
        })
    };
    let none = |a: &ResourceJson| {
        if a.owner.is_some() || a.workspace.is_some() || a.teams.is_some() {
            Err(bad(format!("a {ty} takes no context.resource attributes")))
        } else {
            Ok(())
        }
    };
    match ty.as_str() {
        "Session" => Ok(ServerResource::Session {
            id,
            owner: need(attrs.owner, "owner")?,
            workspace: need(attrs.workspace, "workspace")?,
            teams: teams(attrs.teams)?,
        }),
        "Workspace" => {
            if attrs.owner.is_some() || attrs.workspace.is_some() {
                return Err(bad(
                    "a Workspace takes only context.resource.teams (its name is the id)".into(),
                ));
            }
            Ok(ServerResource::Workspace {
                name: id,
                teams: teams(attrs.teams)?,
            })
        }
        "AuditLog" if id == "log" => none(&attrs).map(|()| ServerResource::AuditLog),
        "Server" if id == "stele" => none(&attrs).map(|()| ServerResource::Server),
        "AuditLog" => Err(bad(format!(
            "resource `{uid}`: the log is AuditLog::\"log\""
        ))),
        "Server" => Err(bad(format!(
            "resource `{uid}`: the server is Server::\"stele\""
        ))),
        other => Err(bad(format!(
            "resource `{uid}`: a server action is about a Session, a Workspace, \
             AuditLog::\"log\" or Server::\"stele\", not a {other}"
        ))),
    }
}
