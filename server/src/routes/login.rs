//! `POST /api/v1/login` (a local account's password for a bearer token) and
//! `POST /api/v1/setup` (a one-time set-up secret for a password). Every
//! attempt is recorded, success or failure, with its method.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use stele_audit::Effect;
use stele_protocol::{LoginRequest, LoginResponse};

use super::{rfc3339, Body};
use crate::auth::{password, tokens};
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::state::Shared;

/// Exchange a password for a token that expires (`server.login_ttl_secs`).
pub async fn login(
    State(state): State<Shared>,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let mut user = state.store.user(&req.user).await?;
    // An account made on the host a moment ago works once it is recorded.
    if user.is_none() && crate::admin_record::record_admin_changes(&state).await? > 0 {
        user = state.store.user(&req.user).await?;
    }
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let pw = req.password.clone();
    // Verified even for an unknown account, so timing does not tell which names exist.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => password::verify(&pw, &h),
        None => {
            let dummy = DUMMY.get_or_init(|| {
                password::hash("a password nobody has, for timing").unwrap_or_default()
            });
            let _ = password::verify(&pw, dummy);
            false
        }
    })
    .await
    .map_err(|e| crate::error::ServerError::Task(e.to_string()))?;
    let teams = user.as_ref().map(|u| u.teams.clone()).unwrap_or_default();
    if !ok {
        let seq = state
            .record(ServerDecision {
                principal: req.user.clone(),
                teams,
                action: "login",
                effect: Effect::Deny,
                reason: "wrong name or password".into(),
                data: serde_json::json!({"method": "password", "status": 401}),
            })
            .await?;
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password").logged(seq));
    }
    let (token, token_hash) = tokens::generate()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expires =
        now.saturating_add(i64::try_from(state.config.server.login_ttl_secs).unwrap_or(0));
    // Recorded before the token is handed out.
    state
        .record(ServerDecision {
            principal: req.user.clone(),
            teams,
            action: "login",
            effect: Effect::Allow,
            reason: "password verified".into(),
            data: serde_json::json!({"method": "password", "status": 200, "expires": expires}),
        })
        .await?;
    state
        .store
        .add_token(&req.user, &token_hash, "login", (now, expires), None)
        .await?;
    Ok(Json(LoginResponse {
        token,
        expires: rfc3339(expires),
    }))
}

/// A hash verified for unknown accounts (made once).
static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `POST /api/v1/setup`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The secret from the set-up link.
    secret: String,
    /// The new password.
    password: String,
}

/// Spend a set-up secret on a password.
pub async fn setup(
    State(state): State<Shared>,
    Body(req): Body<SetupRequest>,
) -> Result<StatusCode, ApiError> {
    let pw = req.password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| crate::error::ServerError::Task(e.to_string()))?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let who = state
        .store
        .complete_setup(&tokens::hash(&req.secret), &hash, now)
        .await?;
    let (principal, effect, status) = match &who {
        Some(u) => (u.clone(), Effect::Allow, 204),
        None => ("anonymous".to_string(), Effect::Deny, 401),
    };
    let seq = state
        .record(ServerDecision {
            principal,
            teams: Vec::new(),
            action: "account.setup",
            effect,
            reason: if who.is_some() {
                "password set with a one-time set-up secret".into()
            } else {
                "unknown, spent or expired set-up secret".into()
            },
            data: serde_json::json!({"method": "setup-secret", "status": status}),
        })
        .await?;
    match who {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown, spent or expired set-up secret",
        )
        .logged(seq)),
    }
}
