//! Browser sessions: the session cookie (HttpOnly, SameSite=Strict, and
//! under TLS `Secure` with the `__Host-` prefix, which browsers accept
//! only from a secure origin, for path `/`, without a domain), its CSRF
//! token, and the short-lived cookie binding an OIDC login to the browser
//! that started it (SameSite=Lax: it must come back on the provider's
//! cross-site redirect to the callback).

use axum::http::{HeaderMap, HeaderValue};

use crate::auth::tokens;
use crate::error::ServerError;
use crate::state::AppState;
use crate::store::credentials::WebSession;
use crate::store::User;

/// The session cookie's base name.
pub const SESSION: &str = "stele_session";
/// The CSRF cookie's base name (readable by the page's script, which echoes it).
pub const CSRF: &str = "stele_csrf";
/// The OIDC login's browser-binding cookie's base name.
pub const OIDC_BINDING: &str = "stele_oidc";
/// The header a cookie-authenticated state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a browser session was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// A local account's password.
    Password,
    /// The identity provider.
    Oidc,
    /// A one-time login link (`stele serve --open`).
    Link,
}

impl LoginMethod {
    /// Its name in the log and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Password => "password",
            LoginMethod::Oidc => "oidc",
            LoginMethod::Link => "link",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<LoginMethod> {
        [LoginMethod::Password, LoginMethod::Oidc, LoginMethod::Link]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Whether browsers reach the server over TLS (then cookies are `Secure`, `__Host-`).
pub fn secure(state: &AppState) -> bool {
    state.config.server.tls_cert.is_some()
        || state
            .config
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The cookie name for `base` on this server.
pub fn name(state: &AppState, base: &str) -> String {
    if secure(state) {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// The value of cookie `name` in the request, if sent once (a repeated name is ignored).
pub fn read<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = None;
    for h in headers.get_all(axum::http::header::COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        for pair in h.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        // Two cookies of one name (one planted by a sibling site): neither.
                        return None;
                    }
                    found = Some(v);
                }
            }
        }
    }
    found
}

/// Which SameSite a cookie gets.
#[derive(Debug, Clone, Copy)]
pub enum SameSite {
    /// Never sent on cross-site requests.
    Strict,
    /// Sent on cross-site top-level navigations (GET), not on cross-site posts or fetches.
    Lax,
}

/// What the scripts of the page may do with a cookie.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// HttpOnly: scripts cannot read it.
    Hidden,
    /// Readable (the CSRF token, which the page must echo in a header).
    Readable,
}

/// A `Set-Cookie` value.
pub fn set(
    state: &AppState,
    base: &str,
    value: &str,
    max_age: i64,
    same_site: SameSite,
    script: Script,
) -> Result<HeaderValue, ServerError> {
    let mut c = format!(
        "{}={value}; Path=/; Max-Age={max_age}; SameSite={}",
        name(state, base),
        match same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
        }
    );
    if matches!(script, Script::Hidden) {
        c.push_str("; HttpOnly");
    }
    if secure(state) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).map_err(|e| ServerError::Task(format!("a cookie: {e}")))
}

/// A new browser session for `user`: the `Set-Cookie` headers (session,
/// CSRF), the CSRF token and when it expires. Call after the login's entry
/// is in the log.
pub async fn open(
    state: &AppState,
    user: &User,
    method: LoginMethod,
) -> Result<(Vec<HeaderValue>, String, i64), ServerError> {
    let (cookie, cookie_hash) = tokens::generate()?;
    let (csrf, csrf_hash) = tokens::generate()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ttl = i64::try_from(state.config.server.login_ttl_secs).unwrap_or(0);
    let expires = now.saturating_add(ttl);
    state
        .store
        .add_web_session(WebSession {
            hash: cookie_hash,
            user: User {
                password_hash: None,
                ..user.clone()
            },
            method: method.as_str().into(),
            csrf_hash,
            created: now,
            expires,
        })
        .await?;
    let headers = vec![
        set(
            state,
            SESSION,
            &cookie,
            ttl,
            SameSite::Strict,
            Script::Hidden,
        )?,
        set(state, CSRF, &csrf, ttl, SameSite::Strict, Script::Readable)?,
    ];
    Ok((headers, csrf, expires))
}

/// `Set-Cookie` values that remove the session and CSRF cookies.
pub fn cleared(state: &AppState) -> Result<Vec<HeaderValue>, ServerError> {
    Ok(vec![
        set(state, SESSION, "", 0, SameSite::Strict, Script::Hidden)?,
        set(state, CSRF, "", 0, SameSite::Strict, Script::Readable)?,
    ])
}
