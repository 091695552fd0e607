//! The JSON form of a request context, used by policy tests and
//! `stele policy explain --context`. It mirrors the schema's `Ctx`, except
//! that `command` is derived from `argv` and every field is optional:
//! `session_id` defaults to `"test"`, `sandbox` to
//! `{"backend": "process", "network": false}`, `argv` to `[]`, `args` to `{}`;
//! an `approval` needs `granted` and `approver` (a user id, as policies see
//! it: `User::"<approver>"`), its `method` and `ticket` default to `""`.

use serde::Deserialize;

use crate::canonical::{canonical_host_name, canonical_path};
use crate::error::PolicyError;
use crate::request::{
    Approval, ApprovalOutcome, Network, RequestContext, SandboxBackend, SandboxFacts, ToolArgs,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ctx {
    session_id: Option<String>,
    sandbox: Option<Sandbox>,
    argv: Option<Vec<String>>,
    args: Option<Args>,
    approval: Option<ApprovalJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sandbox {
    backend: SandboxBackend,
    network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    size_bytes: Option<u64>,
    recursive: Option<bool>,
    overwrite: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalJson {
    granted: bool,
    approver: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    ticket: String,
}

/// Parse a JSON context; values are canonicalised (and refused if they
/// cannot be), exactly as an enforcement point would.
pub fn context_from_json(value: &serde_json::Value) -> Result<RequestContext, PolicyError> {
    let ctx: Ctx = serde_json::from_value(value.clone())
        .map_err(|e| PolicyError::Request(format!("context: {e}")))?;
    let args = match ctx.args {
        None => ToolArgs::default(),
        Some(a) => ToolArgs {
            path: a.path.as_deref().map(canonical_path).transpose()?,
            host: a.host.as_deref().map(canonical_host_name).transpose()?,
            port: a.port,
            size_bytes: a.size_bytes,
            recursive: a.recursive,
            overwrite: a.overwrite,
            ..ToolArgs::default()
        },
    };
    Ok(RequestContext {
        session_id: ctx.session_id.unwrap_or_else(|| "test".to_owned()),
        sandbox: ctx
            .sandbox
            .map_or_else(SandboxFacts::default, |s| SandboxFacts {
                backend: s.backend,
                network: if s.network {
                    Network::ViaProxy
                } else {
                    Network::Disabled
                },
            }),
        argv: ctx.argv.unwrap_or_default(),
        args,
        approval: ctx.approval.map(|a| Approval {
            outcome: if a.granted {
                ApprovalOutcome::Granted
            } else {
                ApprovalOutcome::Refused
            },
            approver: a.approver,
            method: a.method,
            ticket: a.ticket,
        }),
    })
}
