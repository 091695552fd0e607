//! `GET /api/v1/login/methods` (public: how one may sign in here, so the
//! sign-in page offers "Sign in with PROVIDER" only when `[oidc]` is
//! configured) and `GET /api/v1/me` (who the credential is: the page learns
//! its reader after an OIDC or link sign-in, which answer with a redirect,
//! not a body). Neither reads anyone's data: the methods are the server's
//! configuration a login page shows anyway, and `me` tells the caller only
//! what their own credential says.

use axum::extract::State;
use axum::Json;

use crate::auth::Principal;
use crate::state::Shared;

/// An identity provider one may sign in with.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OidcMethod {
    /// Its name, for "Sign in with NAME" (`oidc.name`, else the issuer's host).
    pub name: String,
    /// Where the browser goes to start (`GET`, a redirect to the provider).
    pub login: String,
}

/// `GET /api/v1/login/methods`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LoginMethods {
    /// Local accounts with a password (`POST /api/v1/login/browser`).
    pub password: bool,
    /// The identity provider, when `[oidc]` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcMethod>,
}

/// How one may sign in to this server.
#[utoipa::path(get, path = "/api/v1/login/methods", tag = "auth",
    responses((status = 200, description = "The sign-in methods (no credential needed)", body = LoginMethods)))]
pub async fn methods(State(state): State<Shared>) -> Json<LoginMethods> {
    Json(LoginMethods {
        password: true,
        oidc: state.oidc.as_ref().map(|o| OidcMethod {
            name: o.config.display_name(),
            login: "/api/v1/oidc/login".into(),
        }),
    })
}

/// `GET /api/v1/me`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The user id.
    pub user: String,
    /// Their teams.
    pub teams: Vec<String>,
    /// Their role.
    pub role: String,
    /// How they signed in (`password`, `oidc`, `link`, `token`).
    pub method: String,
}

/// Who the request's credential is.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The caller's own name, teams, role and sign-in method", body = Me)))]
pub async fn me(who: Principal) -> Json<Me> {
    Json(Me {
        user: who.user.name.clone(),
        teams: who.user.teams.clone(),
        role: who.user.role.as_str().to_string(),
        method: who.method.to_string(),
    })
}
