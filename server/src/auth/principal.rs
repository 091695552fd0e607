//! The principal of a request: from its bearer token, or from its browser
//! session cookie. A request without a live credential is refused with
//! 401; a cookie-authenticated request that changes state without the
//! session's CSRF token is refused with 403. Every refusal is an audit
//! entry. Bearer requests need no CSRF token: browsers never attach an
//! `Authorization` header on their own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use stele_audit::Effect;

use crate::auth::cookies;
use crate::auth::scopes::{self, Scopes};
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::state::Shared;
use crate::store::credentials::WebSessionLookup;
use crate::store::{TokenLookup, User};

/// The credential a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token (its SHA-256).
    Token(String),
    /// A browser session cookie (its SHA-256).
    Cookie(String),
}

/// The authenticated person behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Their account.
    pub user: User,
    /// How they authenticated (`token`, or the browser session's login: `password`, `oidc`).
    pub method: &'static str,
    /// What they presented.
    pub credential: Credential,
    /// What the credential may be used for.
    pub scopes: Scopes,
}

/// What the request presents.
enum Presented {
    Bearer(String),
    Cookie(String),
}

/// The request's credential, or why it has none.
fn presented(parts: &Parts, session_cookie: &str) -> Result<Presented, &'static str> {
    let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return match cookies::read(&parts.headers, session_cookie) {
            Some(c) if !c.is_empty() => Ok(Presented::Cookie(c.to_string())),
            _ => Err("no credentials (send Authorization: Bearer TOKEN)"),
        };
    };
    let Ok(h) = h.to_str() else {
        return Err("the Authorization header is not text");
    };
    match h.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(Presented::Bearer(token.trim().to_string()))
        }
        _ => Err("the Authorization header is not `Bearer TOKEN`"),
    }
}

/// The token's owner; a token (or account) made on the host a moment ago
/// works once its creation is recorded, so an unknown token first has the
/// queued changes recorded and is looked up again.
async fn lookup(state: &Shared, hash: &str, now: i64) -> Result<TokenLookup, ApiError> {
    let found = state.store.token(hash, now).await?;
    // A revocation made on the host is in the log before the first refusal it causes.
    // Looked up again even when this request recorded nothing: a request
    // racing this one may have recorded the token's creation meanwhile.
    if matches!(found, TokenLookup::Unknown | TokenLookup::Revoked(_)) {
        crate::admin_record::record_admin_changes(state).await?;
        return Ok(state.store.token(hash, now).await?);
    }
    Ok(found)
}

/// Methods that change nothing (no CSRF token needed).
fn safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A refusal to record and answer.
struct Refused {
    who: String,
    teams: Vec<String>,
    action: &'static str,
    status: StatusCode,
    method: &'static str,
    reason: String,
}

impl Refused {
    /// 401 for `who`, by `method`.
    fn unauthenticated(who: String, method: &'static str, reason: String) -> Refused {
        Refused {
            who,
            teams: Vec::new(),
            action: "authenticate",
            status: StatusCode::UNAUTHORIZED,
            method,
            reason,
        }
    }
}

/// Record a refusal and answer it.
async fn refuse(state: &Shared, parts: &Parts, r: Refused) -> ApiError {
    let recorded = state
        .record(ServerDecision {
            principal: r.who,
            teams: r.teams,
            action: r.action,
            effect: Effect::Deny,
            reason: r.reason.clone(),
            data: serde_json::json!({
                "status": r.status.as_u16(),
                "method": r.method,
                "http": format!("{} {}", parts.method, parts.uri.path()),
            }),
        })
        .await;
    match recorded {
        Ok(seq) => ApiError::new(r.status, r.reason).logged(seq),
        Err(e) => e.into(),
    }
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let who = authenticate(parts, state).await?;
        let Some(need) = scopes::required(&parts.method, parts.uri.path()) else {
            return Ok(who);
        };
        if who.scopes.has(need) {
            return Ok(who);
        }
        let r = Refused {
            who: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "scope",
            status: StatusCode::FORBIDDEN,
            method: who.method,
            reason: format!(
                "this token lacks the `{}` scope (it has: {})",
                need.as_str(),
                who.scopes
            ),
        };
        Err(refuse(state, parts, r).await)
    }
}

/// Who the request's credential belongs to, or the recorded refusal.
async fn authenticate(parts: &Parts, state: &Shared) -> Result<Principal, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let session_cookie = cookies::name(state, cookies::SESSION);
    let token = match presented(parts, &session_cookie) {
        Err(why) => {
            let r = Refused::unauthenticated("anonymous".into(), "token", why.to_string());
            return Err(refuse(state, parts, r).await);
        }
        Ok(Presented::Cookie(c)) => return from_cookie(state, parts, &c, now).await,
        Ok(Presented::Bearer(t)) => t,
    };
    let hash = crate::auth::tokens::hash(&token);
    let (who, reason) = match lookup(state, &hash, now).await? {
        TokenLookup::Valid(user, scopes) => {
            return Ok(Principal {
                user,
                method: "token",
                credential: Credential::Token(hash),
                scopes,
            })
        }
        TokenLookup::Expired(user) => (user, "the token has expired".to_string()),
        TokenLookup::Revoked(user) => (user, "the token was revoked".to_string()),
        TokenLookup::Unknown => ("anonymous".to_string(), "unknown token".to_string()),
    };
    Err(refuse(state, parts, Refused::unauthenticated(who, "token", reason)).await)
}

/// The principal of a browser session cookie; state-changing requests must
/// carry the session's CSRF token in `X-CSRF-Token`.
async fn from_cookie(
    state: &Shared,
    parts: &Parts,
    cookie: &str,
    now: i64,
) -> Result<Principal, ApiError> {
    let hash = crate::auth::tokens::hash(cookie);
    let (who, reason) = match state.store.web_session(&hash, now).await? {
        WebSessionLookup::Live(s) => {
            let method = cookies::LoginMethod::parse(&s.method)
                .map_or("cookie", cookies::LoginMethod::as_str);
            if !safe(&parts.method) {
                let sent = parts
                    .headers
                    .get(cookies::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(crate::auth::tokens::hash);
                if sent.as_deref() != Some(s.csrf_hash.as_str()) {
                    let why = if sent.is_none() {
                        "a state-changing request by session cookie needs its CSRF token (X-CSRF-Token)"
                    } else {
                        "wrong CSRF token for this session"
                    };
                    let r = Refused {
                        who: s.user.name.clone(),
                        teams: s.user.teams.clone(),
                        action: "csrf",
                        status: StatusCode::FORBIDDEN,
                        method,
                        reason: why.into(),
                    };
                    return Err(refuse(state, parts, r).await);
                }
            }
            return Ok(Principal {
                user: s.user,
                method,
                credential: Credential::Cookie(hash),
                scopes: Scopes::all(),
            });
        }
        WebSessionLookup::Expired(u) => (u, "the session has expired".to_string()),
        WebSessionLookup::Revoked(u) => (u, "the session has ended (logged out)".to_string()),
        WebSessionLookup::Unknown => (
            "anonymous".to_string(),
            "unknown session cookie".to_string(),
        ),
    };
    Err(refuse(
        state,
        parts,
        Refused::unauthenticated(who, "cookie", reason),
    )
    .await)
}
