//! `POST /api/v1/login` (a local account's password for a bearer token) and
//! `POST /api/v1/setup` (a one-time set-up secret for a password). Every
//! attempt is recorded, success or failure, with its method.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use stele_audit::Effect;
use stele_protocol::{LoginRequest, LoginResponse};

use axum::response::{IntoResponse as _, Response};

use super::{rfc3339, Body};
use crate::auth::principal::Credential;
use crate::auth::{cookies, password, tokens, Principal};
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::state::Shared;
use crate::store::User;

/// The client's address (for throttling), when the server knows it.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Check a password login (throttled, every outcome recorded); the account
/// and the entry recording the success, or the refusal.
async fn check_password(
    state: &Shared,
    req: &LoginRequest,
    addr: Option<std::net::IpAddr>,
    grant: &'static str,
) -> Result<User, ApiError> {
    if let Err(locked) = state.throttle.check(&req.user, addr) {
        let wait = locked.retry_after().as_secs().max(1);
        let seq = state
            .record(ServerDecision {
                principal: req.user.clone(),
                teams: Vec::new(),
                action: "login",
                effect: Effect::Deny,
                reason: format!("throttled: too many failed logins ({})", locked.scope()),
                data: serde_json::json!({"method": "password", "status": 429, "grant": grant,
                    "retry_after": wait, "address": addr.map(|a| a.to_string())}),
            })
            .await?;
        // The same words whether or not the account exists.
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins: try again in {wait} s"),
        )
        .logged(seq));
    }
    let mut user = state.store.user(&req.user).await?;
    // An account made on the host a moment ago works once it is recorded.
    if user.is_none() && crate::admin_record::record_admin_changes(state).await? > 0 {
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
    match (ok, user) {
        (true, Some(user)) => {
            state.throttle.succeeded(&req.user);
            Ok(user)
        }
        _ => {
            state.throttle.failed(&req.user, addr);
            let seq = state
                .record(ServerDecision {
                    principal: req.user.clone(),
                    teams,
                    action: "login",
                    effect: Effect::Deny,
                    reason: "wrong name or password".into(),
                    data: serde_json::json!({"method": "password", "status": 401, "grant": grant,
                        "address": addr.map(|a| a.to_string())}),
                })
                .await?;
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password").logged(seq))
        }
    }
}

/// Exchange a password for a token that expires (`server.login_ttl_secs`).
#[utoipa::path(post, path = "/api/v1/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "A login token for scripts (shown once)", body = LoginResponse)))]
pub async fn login(
    State(state): State<Shared>,
    ClientAddr(addr): ClientAddr,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let user = check_password(&state, &req, addr, "token").await?;
    let (token, token_hash) = tokens::generate()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expires =
        now.saturating_add(i64::try_from(state.config.server.login_ttl_secs).unwrap_or(0));
    // Recorded before the token is handed out.
    state
        .record(ServerDecision {
            principal: req.user.clone(),
            teams: user.teams.clone(),
            action: "login",
            effect: Effect::Allow,
            reason: "password verified".into(),
            data: serde_json::json!({"method": "password", "status": 200, "grant": "token",
                "expires": expires}),
        })
        .await?;
    state
        .store
        .add_token(
            &req.user,
            &token_hash,
            "login",
            crate::auth::scopes::Scopes::all(),
            (now, expires),
            None,
        )
        .await?;
    Ok(Json(LoginResponse {
        token,
        expires: rfc3339(expires),
    }))
}

/// A browser session's answer: who, and the CSRF token to echo in `X-CSRF-Token`.
#[derive(Debug, serde::Serialize)]
pub struct BrowserLogin {
    /// The user id.
    pub user: String,
    /// Their teams.
    pub teams: Vec<String>,
    /// Their role.
    pub role: &'static str,
    /// How they logged in.
    pub method: &'static str,
    /// Echo in `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
    /// When the session ends (RFC 3339).
    pub expires: String,
}

/// Open a browser session for `user` (after its login entry) and answer with its cookies.
pub async fn open_browser_session(
    state: &Shared,
    user: &User,
    method: cookies::LoginMethod,
    extra: Vec<axum::http::HeaderValue>,
) -> Result<Response, ApiError> {
    let (set, csrf, expires) = cookies::open(state, user, method).await?;
    let mut r = Json(BrowserLogin {
        user: user.name.clone(),
        teams: user.teams.clone(),
        role: user.role.as_str(),
        method: method.as_str(),
        csrf_token: csrf,
        expires: rfc3339(expires),
    })
    .into_response();
    for v in set.into_iter().chain(extra) {
        r.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// `POST /api/v1/login/browser`: a password for a browser session (cookie + CSRF token).
#[utoipa::path(post, path = "/api/v1/login/browser", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "A browser session: the cookie is set, the body carries the CSRF token")))]
pub async fn login_browser(
    State(state): State<Shared>,
    ClientAddr(addr): ClientAddr,
    Body(req): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let user = check_password(&state, &req, addr, "cookie").await?;
    state
        .record(ServerDecision {
            principal: req.user.clone(),
            teams: user.teams.clone(),
            action: "login",
            effect: Effect::Allow,
            reason: "password verified".into(),
            data: serde_json::json!({"method": "password", "status": 200, "grant": "cookie"}),
        })
        .await?;
    open_browser_session(&state, &user, cookies::LoginMethod::Password, Vec::new()).await
}

/// `POST /api/v1/logout`: end the credential the request came with (the
/// browser session, or the bearer token), recorded first.
#[utoipa::path(post, path = "/api/v1/logout", tag = "auth",
    security(("token" = []), ("cookie" = [])),
    responses((status = 204, description = "The credential no longer works")))]
pub async fn logout(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let what = match &who.credential {
        Credential::Cookie(_) => "browser session",
        Credential::Token(_) => "token",
    };
    state
        .record(ServerDecision {
            principal: who.user.name.clone(),
            teams: who.user.teams.clone(),
            action: "logout",
            effect: Effect::Allow,
            reason: format!("{what} ended by its holder"),
            data: serde_json::json!({"method": who.method, "status": 204}),
        })
        .await?;
    match &who.credential {
        Credential::Cookie(h) => {
            state.store.revoke_web_session(h, now).await?;
        }
        Credential::Token(h) => {
            state.store.revoke_token(h, now).await?;
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    if matches!(who.credential, Credential::Cookie(_)) {
        for v in cookies::cleared(&state)? {
            r.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    Ok(r)
}

/// A hash verified for unknown accounts (made once).
static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `POST /api/v1/setup`.
#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The secret from the set-up link.
    secret: String,
    /// The new password.
    password: String,
}

/// Spend a set-up secret on a password.
#[utoipa::path(post, path = "/api/v1/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 204, description = "The password is set; the set-up secret is spent")))]
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
