//! `GET /api/v1/login/link/{secret}`: a one-time login link (`stele serve
//! --open`) redeemed by the browser that opens it. A live link opens a
//! browser session (the session and CSRF cookies) and redirects to the
//! app; a spent, expired or unknown one is refused. Either way the attempt
//! is recorded as a login with method `link` before the answer.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use stele_audit::Effect;

use super::login::ClientAddr;
use crate::auth::cookies::{self, LoginMethod};
use crate::auth::login_link::Redeemed;
use crate::error::ApiError;
use crate::record::ServerDecision;
use crate::state::Shared;

/// Where a redeemed link sends the browser.
pub const AFTER_LOGIN: &str = "/";

/// Redeem a login link.
#[utoipa::path(get, path = "/api/v1/login/link/{secret}", tag = "auth",
    params(("secret" = String, Path, description = "The one-time link's secret (`stele serve --open`)")),
    responses((status = 303, description = "Logged in: the session and CSRF cookies are set, then to `/` (a used, expired or unknown link is a 401 problem, logged)")))]
pub async fn redeem(
    State(state): State<Shared>,
    ClientAddr(addr): ClientAddr,
    Path(secret): Path<String>,
) -> Result<Response, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let address = addr.map(|a| a.to_string());
    let (who, why) = match state.login_links.redeem(&secret, now) {
        Redeemed::Valid(name) => {
            let user = state.store.user(&name).await?;
            match user {
                Some(user) => {
                    state
                        .record(ServerDecision {
                            principal: name,
                            teams: user.teams.clone(),
                            action: "login",
                            effect: Effect::Allow,
                            reason: "one-time login link".into(),
                            data: serde_json::json!({"method": "link", "status": 303,
                                "grant": "cookie", "address": address}),
                        })
                        .await?;
                    let (set, _, _) = cookies::open(&state, &user, LoginMethod::Link).await?;
                    let mut r = StatusCode::SEE_OTHER.into_response();
                    let h = r.headers_mut();
                    for v in set {
                        h.append(header::SET_COOKIE, v);
                    }
                    h.insert(header::LOCATION, HeaderValue::from_static(AFTER_LOGIN));
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    // The link must not follow the browser anywhere.
                    h.insert(
                        header::REFERRER_POLICY,
                        HeaderValue::from_static("no-referrer"),
                    );
                    return Ok(r);
                }
                // The account went away since the link was made.
                None => (name, "the link's account no longer works"),
            }
        }
        Redeemed::Spent(name) => (name, "the login link was used already"),
        Redeemed::Expired(name) => (name, "the login link has expired"),
        Redeemed::Unknown => ("anonymous".to_string(), "unknown login link"),
    };
    let seq = state
        .record(ServerDecision {
            principal: who,
            teams: Vec::new(),
            action: "login",
            effect: Effect::Deny,
            reason: why.into(),
            data: serde_json::json!({"method": "link", "status": 401, "grant": "cookie",
                "address": address}),
        })
        .await?;
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!("{why}: a login link works once, for a few minutes; restart `stele serve --open` for a new one"),
    )
    .logged(seq))
}
