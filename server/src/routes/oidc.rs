//! `GET /api/v1/oidc/login` (send the browser to the identity provider)
//! and `GET /api/v1/oidc/callback` (its answer: a browser session, or a
//! refusal). Every login, success or failure, is an entry with method
//! `oidc`, written before the answer.
//!
//! Teams: the bundle's members file wins when it lists the user (it is
//! what the policy's own decisions use); otherwise the teams of the
//! groups claim (`oidc.groups_claim`) that are team folders in the bundle;
//! a person with no team is refused. Role: that of the local account of
//! the same name, if there is one, else `member`.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use stele_audit::Effect;

use super::login::open_browser_session;
use crate::auth::cookies::{self, LoginMethod, SameSite, Script};
use crate::error::ApiError;
use crate::oidc::{Identity, Refusal};
use crate::record::ServerDecision;
use crate::state::Shared;
use crate::store::{Role, User};

fn not_configured() -> ApiError {
    ApiError::not_found("OIDC login is not configured on this server ([oidc] in its configuration)")
}

/// Record an OIDC login refusal and answer it.
async fn refused(
    state: &Shared,
    who: Option<&str>,
    status: StatusCode,
    reason: String,
) -> ApiError {
    let recorded = state
        .record(ServerDecision {
            principal: who.unwrap_or("anonymous").to_string(),
            teams: Vec::new(),
            action: "login",
            effect: Effect::Deny,
            reason: reason.clone(),
            data: serde_json::json!({"method": "oidc", "status": status.as_u16()}),
        })
        .await;
    match recorded {
        Ok(seq) => ApiError::new(status, reason).logged(seq),
        Err(e) => e.into(),
    }
}

/// Start a login: 303 to the provider, with the browser-binding cookie.
#[utoipa::path(get, path = "/api/v1/oidc/login", tag = "auth",
    responses((status = 303, description = "Redirect to the identity provider (authorization code + PKCE)")))]
pub async fn login(State(state): State<Shared>) -> Result<Response, ApiError> {
    let oidc = state.oidc.as_ref().ok_or_else(not_configured)?;
    let (url, binding) = match oidc.begin().await {
        Ok(v) => v,
        Err(why) => return Err(refused(&state, None, StatusCode::BAD_GATEWAY, why).await),
    };
    let ttl = i64::try_from(oidc.config.login_timeout_secs).unwrap_or(600);
    let cookie = cookies::set(
        &state,
        cookies::OIDC_BINDING,
        &binding,
        ttl,
        SameSite::Lax,
        Script::Hidden,
    )?;
    let mut r = (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, url)]).into_response();
    r.headers_mut()
        .append(axum::http::header::SET_COOKIE, cookie);
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// The provider's redirect back.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The teams and role of a verified identity, or why it has none.
async fn account_of(state: &Shared, id: &Identity) -> Result<User, ApiError> {
    let listed: Vec<String> = state
        .bundle
        .members()
        .teams_of(&id.name)
        .map(str::to_string)
        .collect();
    let teams = if listed.is_empty() {
        let known: BTreeSet<&str> = state.bundle.teams().collect();
        id.groups
            .iter()
            .filter(|g| known.contains(g.as_str()))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        listed
    };
    if teams.is_empty() {
        return Err(refused(
            state,
            Some(&id.name),
            StatusCode::FORBIDDEN,
            format!(
                "{} is in no team: not in the bundle's members file, and no groups claim names \
                 a team of the bundle",
                id.name
            ),
        )
        .await);
    }
    let role = state
        .store
        .user(&id.name)
        .await?
        .map_or(Role::Member, |u| u.role);
    Ok(User {
        name: id.name.clone(),
        teams,
        role,
        password_hash: None,
    })
}

/// Finish a login: verify, map to teams, record, open a browser session.
#[utoipa::path(get, path = "/api/v1/oidc/callback", tag = "auth",
    params(
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("state" = Option<String>, Query, description = "The state the login began with"),
        ("error" = Option<String>, Query, description = "The provider's error"),
        ("error_description" = Option<String>, Query, description = "The provider's words for it"),
    ),
    responses((status = 200, description = "Logged in: a browser session is set; its JSON (user, teams, role, CSRF token)"),
              (status = 303, description = "Logged in, to a browser navigating (`Accept: text/html`): the session's cookies are set and the browser is sent to the web app (`/#/sessions`)")))]
pub async fn callback(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Result<Response, ApiError> {
    let oidc = state.oidc.as_ref().ok_or_else(not_configured)?;
    let unauthorized = StatusCode::UNAUTHORIZED;
    if let Some(e) = &q.error {
        let why = Refusal::Provider(format!(
            "{e}{}",
            q.error_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
        return Err(refused(&state, None, unauthorized, why.reason()).await);
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return Err(refused(&state, None, unauthorized, Refusal::Incomplete.reason()).await);
    };
    let binding_name = cookies::name(&state, cookies::OIDC_BINDING);
    let binding = cookies::read(&headers, &binding_name);
    let id = match oidc.finish(code, st, binding).await {
        Ok(id) => id,
        Err(r) => return Err(refused(&state, None, unauthorized, r.reason()).await),
    };
    let user = account_of(&state, &id).await?;
    state
        .record(ServerDecision {
            principal: user.name.clone(),
            teams: user.teams.clone(),
            action: "login",
            effect: Effect::Allow,
            reason: "ID token verified".into(),
            data: serde_json::json!({
                "method": "oidc",
                "status": 200,
                "grant": "cookie",
                "issuer": oidc.config.issuer,
                "subject": id.subject,
                "role": user.role.as_str(),
            }),
        })
        .await?;
    let clear = cookies::set(
        &state,
        cookies::OIDC_BINDING,
        "",
        0,
        SameSite::Lax,
        Script::Hidden,
    )?;
    let opened = open_browser_session(&state, &user, LoginMethod::Oidc, vec![clear]).await?;
    Ok(if navigating(&headers) {
        into_app(opened)
    } else {
        opened
    })
}

/// Whether a browser is navigating (it asks for a page), rather than a
/// script asking for the session's JSON.
fn navigating(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The browser session's answer as a 303 to the web app's sessions list,
/// with the same cookies (the page reads who it is from `GET /api/v1/me`).
fn into_app(opened: Response) -> Response {
    let (mut parts, _) = opened.into_parts();
    parts.status = StatusCode::SEE_OTHER;
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::LOCATION,
        axum::http::HeaderValue::from_static(AFTER_OIDC_LOGIN),
    );
    Response::from_parts(parts, axum::body::Body::empty())
}

/// Where a browser lands after signing in with the provider.
pub const AFTER_OIDC_LOGIN: &str = "/#/sessions";
