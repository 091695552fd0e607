//! `GET /api/v1/audit/shipped`: reviewers search the entries workers
//! shipped (docs/server.md "Workers: shipping") — a session's timeline
//! across every worker's log, or the decisions of a principal or a team
//! over a time range. The `AuditRead` decision on the audit log, and an
//! `audit.read` entry before anything is read, as for the server's own
//! entries.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use stele_audit::{Event, EventKind};
use stele_policy::ServerResource;

use super::audit::actor;
use super::authorize;
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::state::Shared;
use crate::store::shipping::ShippedQuery;

/// Most entries in one answer.
const MAX_PAGE: i64 = 1000;

/// The fields a search takes, as query parameters.
const FIELDS: &[&str] = &[
    "session",
    "principal",
    "team",
    "kind",
    "decision",
    "path",
    "since",
    "until",
    "limit",
];

/// Search the shipped entries.
#[utoipa::path(get, path = "/api/v1/audit/shipped", tag = "audit",
    params(
        ("session" = Option<String>, Query, description = "One session's entries"),
        ("principal" = Option<String>, Query, description = "One principal's entries"),
        ("team" = Option<String>, Query, description = "Entries of principals in this team"),
        ("kind" = Option<String>, Query, description = "One kind (`policy.decision`, …)"),
        ("decision" = Option<String>, Query, description = "Decisions with this effect: allow, deny or ask"),
        ("path" = Option<String>, Query, description = "Entries acting on this workspace path"),
        ("since" = Option<String>, Query, description = "At or after this time (`YYYY-MM-DDTHH:MM:SS.ffffffZ`)"),
        ("until" = Option<String>, Query, description = "Before this time"),
        ("limit" = Option<i64>, Query, description = "Most entries (1 to 1000; 100)"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "`{entries: [{origin, index, leaf}]}` by time", body = serde_json::Value)))]
pub async fn search(
    State(state): State<Shared>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(k) = q.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{k}: not a search field (fields: {})",
            FIELDS.join(", ")
        )));
    }
    let arg = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    for k in ["since", "until"] {
        if let Some(t) = arg(k) {
            stele_audit::rules::check_ts(&t)
                .map_err(|e| ApiError::bad_request(format!("{k}: {e}")))?;
        }
    }
    if let Some(d) = arg("decision") {
        if !matches!(d.as_str(), "allow" | "deny" | "ask") {
            return Err(ApiError::bad_request("decision: allow, deny or ask"));
        }
    }
    let limit = match arg("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("limit: 1 to {MAX_PAGE}")))?,
        None => 100,
    };
    let query = ShippedQuery {
        session: arg("session"),
        principal: arg("principal"),
        team: arg("team"),
        kind: arg("kind"),
        effect: arg("decision"),
        path: arg("path"),
        since: arg("since"),
        until: arg("until"),
        limit,
    };
    let mut what = serde_json::json!({
        "shipped": true, "session": query.session, "principal": query.principal,
        "team": query.team, "kind": query.kind, "decision": query.effect, "path": query.path,
        "since": query.since, "until": query.until, "limit": limit,
    });
    authorize(
        &state,
        &who,
        ServerAction::AuditRead,
        ServerResource::AuditLog,
        what.clone(),
    )
    .await?;
    // The read itself is recorded before anything is read.
    what["command"] = serde_json::json!("api shipped");
    what["method"] = serde_json::json!(who.method);
    let read = state
        .log
        .append(Event::new(EventKind::AuditRead, actor(&who)).with_data(what))
        .await
        .map_err(crate::error::ServerError::from)?;
    let found = state.store.search_shipped(&query).await?;
    let mut entries = Vec::with_capacity(found.len());
    for (origin, e) in found {
        let leaf: serde_json::Value = serde_json::from_slice(&e.leaf).map_err(|err| {
            crate::error::ServerError::Task(format!(
                "shipped entry {} of {origin} is not JSON: {err}",
                e.seq
            ))
        })?;
        entries.push(serde_json::json!({"origin": origin, "index": e.seq, "leaf": leaf}));
    }
    Ok(Json(
        serde_json::json!({"entries": entries, "read_entry": read.seq}),
    ))
}
