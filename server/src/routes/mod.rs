//! The HTTP API. Routes only extract and check input, decide with
//! [`crate::authz`], record, and call the services; errors are RFC 9457
//! problems.

pub(crate) mod admin_view;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod audit_desk;
pub(crate) mod audit_desk_shipped;
pub(crate) mod audit_evidence;
pub(crate) mod audit_facts;
pub(crate) mod events;
pub(crate) mod fleet_export;
pub(crate) mod health;
pub(crate) mod holds;
pub(crate) mod login;
pub(crate) mod login_link;
pub(crate) mod login_methods;
pub(crate) mod oidc;
pub(crate) mod schedule_pause;
pub(crate) mod schedules;
pub(crate) mod session_control;
pub(crate) mod session_outputs;
pub(crate) mod sessions;
pub(crate) mod shipped_export;
pub(crate) mod shipped_search;
pub(crate) mod worker;
pub(crate) mod worker_log;
pub(crate) mod worker_revoke;
pub(crate) mod workspaces;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
use axum::Router;
use stele_audit::Effect;

use crate::auth::Principal;
use crate::authz::{self, ServerAction};
use crate::error::ApiError;
use crate::record::{Deciders, ServerDecision};
use crate::state::Shared;
use stele_policy::ServerResource;

/// The whole API.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/login", post(login::login))
        .route("/api/v1/setup", post(login::setup))
        .route("/api/v1/login/browser", post(login::login_browser))
        .route("/api/v1/logout", post(login::logout))
        .route("/api/v1/login/link/{secret}", get(login_link::redeem))
        .route("/api/v1/oidc/login", get(oidc::login))
        .route("/api/v1/oidc/callback", get(oidc::callback))
        .route(
            "/api/v1/sessions",
            get(sessions::list).post(sessions::start),
        )
        .route("/api/v1/sessions/{id}", get(sessions::get_one))
        .route("/api/v1/sessions/{id}/events", get(events::stream))
        .route(
            "/api/v1/sessions/{id}/resume",
            post(session_control::resume),
        )
        .route("/api/v1/sessions/{id}/stop", post(session_control::stop))
        .route("/api/v1/approvals", get(approvals::list))
        .route("/api/v1/approvals/{id}", post(approvals::answer))
        .route("/api/v1/workspaces", get(workspaces::list))
        .route("/api/v1/workspaces/{name}/files", get(workspaces::files))
        .route(
            "/api/v1/workspaces/{name}/files/{*path}",
            get(workspaces::download).put(workspaces::upload),
        )
        .route("/api/v1/audit/entries", get(audit::entries))
        .route("/api/v1/audit/sessions/{id}/export", get(audit::export))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/audit/shipped", get(shipped_search::search))
        .route("/api/v1/audit/sessions", get(audit_desk::sessions))
        .route(
            "/api/v1/audit/sessions/{id}/timeline",
            get(audit_desk::timeline),
        )
        .route(
            "/api/v1/audit/sessions/{id}/verify",
            get(audit_evidence::verify_session),
        )
        .route(
            "/api/v1/audit/entries/{index}/proof",
            get(audit_evidence::proof),
        )
        .route("/api/v1/audit/export", get(audit_evidence::export_range))
        .route("/api/v1/audit/fleet-export", get(fleet_export::export))
        .route("/api/v1/audit/holds", post(holds::place))
        .route("/api/v1/audit/holds/{id}/release", post(holds::release))
        .route(
            "/api/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/api/v1/schedules/{id}",
            get(schedules::get_one).delete(schedules::delete),
        )
        .route("/api/v1/schedules/{id}/runs", get(schedules::runs))
        // The web app's operations (docs/web.md): sign-in methods, who am I,
        // a session's outputs, schedule pauses, the admin page's reads.
        .route("/api/v1/login/methods", get(login_methods::methods))
        .route("/api/v1/me", get(login_methods::me))
        .route(
            "/api/v1/sessions/{id}/outputs",
            get(session_outputs::outputs),
        )
        .route("/api/v1/schedules/{id}/pause", post(schedule_pause::pause))
        .route(
            "/api/v1/schedules/{id}/unpause",
            post(schedule_pause::unpause),
        )
        .route("/api/v1/admin/users", get(admin_view::users))
        .route("/api/v1/admin/workspaces", get(admin_view::workspaces))
        .route("/api/v1/admin/policy", get(admin_view::policy))
        .route("/api/v1/admin/health", get(admin_view::health))
        // The worker API (docs/server.md "Workers").
        .route("/api/v1/worker", get(worker::list))
        .route("/api/v1/worker/claim", post(worker::claim))
        .route("/api/v1/worker/jobs/{id}/events", post(worker::events))
        .route(
            "/api/v1/worker/jobs/{id}/heartbeat",
            post(worker::heartbeat),
        )
        .route("/api/v1/worker/jobs/{id}/finish", post(worker::finish))
        .route("/api/v1/worker/log/size", post(worker_log::size))
        .route(
            "/api/v1/worker/log",
            post(worker_log::ship)
                .layer(axum::extract::DefaultBodyLimit::max(worker_log::MAX_BODY)),
        )
        .route(
            "/api/v1/admin/workers/{name}/revoke",
            post(worker_revoke::revoke),
        )
        .route("/api/v1/openapi.json", get(crate::openapi::openapi_json))
        // The web app (docs/web.md).
        .route("/", get(crate::assets::page))
        .route("/static/{v}/{*path}", get(crate::assets::file))
        .fallback(|| async { ApiError::not_found("no such endpoint (the API is under /api/v1)") })
        .layer(axum::middleware::map_response(crate::security_headers::add))
        .with_state(state)
}

/// A JSON body whose rejection is a problem naming what was wrong.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            // serde's message names the field and the position.
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Decide `action` for `who` on `on` with the bundle and record the
/// decision, naming the policies that decided; a refusal is a 403 naming
/// its entry.
pub async fn authorize(
    state: &Shared,
    who: &Principal,
    action: ServerAction,
    on: ServerResource,
    data: serde_json::Value,
) -> Result<u64, ApiError> {
    let decided = authz::decide(&state.bundle, &who.user, who.method, action, on);
    let allowed = decided.allowed();
    let mut data = data;
    data["method"] = serde_json::json!(who.method);
    data["status"] = serde_json::json!(if allowed { 200 } else { 403 });
    let seq = state
        .record_decided(
            ServerDecision {
                principal: who.user.name.clone(),
                teams: who.user.teams.clone(),
                action: action.as_str(),
                effect: if allowed { Effect::Allow } else { Effect::Deny },
                reason: decided.reason.clone(),
                data,
            },
            Deciders {
                layer: decided.decision.layer.map(|l| l.to_string()),
                policies: decided.policies(),
            },
        )
        .await?;
    if allowed {
        Ok(seq)
    } else {
        Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, decided.reason).logged(seq))
    }
}

/// Whether `who` may `action` `on`, without recording (for filtering a
/// listing, which records one entry naming what it showed).
pub fn may(state: &Shared, who: &Principal, action: ServerAction, on: ServerResource) -> bool {
    authz::decide(&state.bundle, &who.user, who.method, action, on).allowed()
}

/// A time as RFC 3339.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
