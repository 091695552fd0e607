//! `POST /api/v1/admin/workers/{name}/revoke`: an admin revokes a worker's
//! log key. From then on the server refuses every batch of that log (what
//! it holds stays, as shipped); the revocation is recorded in the server's
//! log. A worker that should ship again needs a new key (a new origin).

use axum::extract::{Path, State};
use axum::Json;
use stele_attest::NoteVerifier;
use stele_audit::Effect;
use stele_policy::ServerResource;

use super::authorize;
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::sessions::remote::log_wire::Revoked;
use crate::sessions::run::now;
use crate::state::Shared;
use crate::store::shipping::ShippedLog;

/// Revoke worker `name`'s log key.
#[utoipa::path(post, path = "/api/v1/admin/workers/{name}/revoke", tag = "admin",
    params(("name" = String, Path, description = "The worker's name")),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Its key is revoked (recorded)", body = Revoked)))]
pub async fn revoke(
    State(state): State<Shared>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    authorize(
        &state,
        &who,
        ServerAction::Admin,
        ServerResource::Server,
        serde_json::json!({"admin": "worker.revoke", "worker": name}),
    )
    .await?;
    let Some(w) = state
        .store
        .workers()
        .await?
        .into_iter()
        .find(|w| w.name == name)
    else {
        return Err(ApiError::not_found(format!("no worker named {name:?}")));
    };
    let key = NoteVerifier::parse(&w.verifier).map_err(|e| {
        ApiError::bad_request(format!(
            "worker {name} has no usable log key to revoke: {e}"
        ))
    })?;
    let origin = key.name().to_string();
    let t = now();
    let log = ShippedLog {
        origin: origin.clone(),
        verifier: w.verifier.clone(),
        account: w.account.clone(),
        worker: w.name.clone(),
        size: 0,
        root: stele_audit::merkle::empty_root().to_vec(),
        frontier: Vec::new(),
        last_hash: None,
        last_time: None,
        checkpoint: String::new(),
        updated: t,
        revoked_at: Some(t),
    };
    let newly = state.store.revoke_shipped(&log, t).await?;
    let seq = state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "worker.revoke",
            effect: Effect::Allow,
            reason: format!(
                "worker {name}'s log key {} (log {origin}) revoked{}",
                w.verifier,
                if newly {
                    ""
                } else {
                    " (it was revoked already)"
                }
            ),
            data: serde_json::json!({"method": who.method, "worker": name, "origin": origin,
                "verifier": w.verifier, "status": 200}),
        })
        .await?;
    tracing::warn!(
        "worker {name}: its log key was revoked by {} (entry {seq})",
        who.user.name
    );
    Ok(Json(Revoked {
        worker: name,
        origin,
        verifier: w.verifier,
        newly,
    }))
}
