//! The principal of a request, from its bearer token. A request without a
//! live token is refused with 401, and the refusal is an audit entry.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use stele_audit::Effect;

use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::state::Shared;
use crate::store::{TokenLookup, User};

/// The authenticated person behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Their account.
    pub user: User,
    /// How they authenticated (`token`).
    pub method: &'static str,
}

/// Why a request was not authenticated.
fn missing(parts: &Parts) -> Result<String, &'static str> {
    let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Err("no credentials (send Authorization: Bearer TOKEN)");
    };
    let Ok(h) = h.to_str() else {
        return Err("the Authorization header is not text");
    };
    match h.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim().to_string())
        }
        _ => Err("the Authorization header is not `Bearer TOKEN`"),
    }
}

/// The token's owner; a token (or account) made on the host a moment ago
/// works once its creation is recorded, so an unknown token first has the
/// queued changes recorded and is looked up again.
async fn lookup(state: &Shared, hash: &str, now: i64) -> Result<TokenLookup, ApiError> {
    let found = state.store.token(hash, now).await?;
    if found == TokenLookup::Unknown && crate::admin_record::record_admin_changes(state).await? > 0
    {
        return Ok(state.store.token(hash, now).await?);
    }
    Ok(found)
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (who, reason) = match missing(parts) {
            Err(why) => ("anonymous".to_string(), why.to_string()),
            Ok(token) => match lookup(state, &crate::auth::tokens::hash(&token), now).await? {
                TokenLookup::Valid(user) => {
                    return Ok(Principal {
                        user,
                        method: "token",
                    })
                }
                TokenLookup::Expired(user) => (user, "the token has expired".to_string()),
                TokenLookup::Unknown => ("anonymous".to_string(), "unknown token".to_string()),
            },
        };
        let seq = state
            .record(ServerDecision {
                principal: who,
                teams: Vec::new(),
                action: "authenticate",
                effect: Effect::Deny,
                reason: reason.clone(),
                data: serde_json::json!({
                    "status": 401,
                    "method": "token",
                    "http": format!("{} {}", parts.method, parts.uri.path()),
                }),
            })
            .await?;
        Err(ApiError::new(StatusCode::UNAUTHORIZED, reason).logged(seq))
    }
}
