//! Security headers on every response, the web app's and the API's: a
//! strict Content-Security-Policy (scripts, styles and connections only from
//! the server itself; no inline code, no eval; no framing; no `<base>`;
//! forms post only here), no referrer, no MIME sniffing, a browsing
//! context of its own. A header a handler set itself is kept.

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The headers and their values.
pub const HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// Add the security headers to `r` (those it does not set already).
pub async fn add(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in HEADERS {
        let name = HeaderName::from_static(name);
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    r
}
