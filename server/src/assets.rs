//! The web app (`server/web/`), embedded in the binary and served at `/`:
//! no CDN, nothing fetched at run time. `GET /` is the page itself
//! (revalidated every time); its scripts and styles are under
//! `/static/{version}/…`, where the version is a digest of every embedded
//! file, so they are cached as immutable and a new build gets new URLs.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file: its path under `server/web/` and its bytes.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, bytes: include_bytes!(concat!("../web/", $path)) }),*]
    };
}

/// Every file of the app. A file added to `server/web/` is served once it is listed here.
static ASSETS: &[Asset] = assets![
    "index.html",
    "app.css",
    "app.js",
    "api.js",
    "dom.js",
    "events.js",
    "pages/login.js",
    "pages/sessions.js",
    "pages/session.js",
    "pages/approvals.js",
    "pages/review.js",
    "pages/review_download.js",
    "pages/timeline.js",
    "pages/files.js",
    "pages/schedules.js",
    "pages/admin.js",
];

/// What `{{VERSION}}` in `index.html` becomes: the start of the digest of all files.
const VERSION_MARK: &str = "{{VERSION}}";

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    hex::encode(ctx.finish().as_ref())
}

/// The version of this build's assets (16 hex digits of their digest).
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut parts: Vec<&[u8]> = Vec::new();
        for a in ASSETS {
            parts.push(a.path.as_bytes());
            parts.push(a.bytes);
        }
        sha256_hex(&parts)[..16].to_string()
    })
}

/// The page with its asset URLs versioned, and its ETag.
fn index() -> &'static (String, String) {
    static I: OnceLock<(String, String)> = OnceLock::new();
    I.get_or_init(|| {
        let raw = ASSETS
            .iter()
            .find(|a| a.path == "index.html")
            .map(|a| String::from_utf8_lossy(a.bytes).into_owned())
            .unwrap_or_default();
        let page = raw.replace(VERSION_MARK, version());
        let etag = format!("\"{}\"", &sha256_hex(&[page.as_bytes()])[..32]);
        (page, etag)
    })
}

/// The content type of a file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn respond(
    headers: &HeaderMap,
    body: &'static [u8],
    ctype: &str,
    etag: &str,
    cache: &'static str,
) -> Response {
    let status = if not_modified(headers, etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut r = if status == StatusCode::OK {
        body.into_response()
    } else {
        status.into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(ctype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// `GET /`: the app's page, revalidated on every load (its ETag).
pub async fn page(headers: HeaderMap) -> Response {
    let (page, etag) = index();
    respond(
        &headers,
        page.as_bytes(),
        content_type("index.html"),
        etag,
        "no-cache",
    )
}

/// `GET /static/{version}/{*path}`: one file of the app. The current
/// version's files are immutable; an old version's URL still answers with
/// the current file, but only revalidated (it may have changed).
pub async fn file(
    Path((v, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(a) = ASSETS
        .iter()
        .find(|a| a.path == path && a.path != "index.html")
    else {
        return Err(ApiError::not_found(format!(
            "no file {path:?} in the web app"
        )));
    };
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &sha256_hex(&[a.bytes])[..32]))
            .collect()
    });
    let i = ASSETS.iter().position(|x| x.path == a.path).unwrap_or(0);
    let etag = etags.get(i).map_or("\"\"", String::as_str);
    let cache = if v == version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(respond(
        &headers,
        a.bytes,
        content_type(a.path),
        etag,
        cache,
    ))
}

/// The total size in bytes of the files the app serves.
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_listed_file_has_a_known_type_and_the_page_names_this_version() {
        for a in ASSETS {
            assert_ne!(
                content_type(a.path),
                "application/octet-stream",
                "{}",
                a.path
            );
        }
        let (page, _) = index();
        assert!(page.contains(&format!("/static/{}/app.js", version())));
        assert!(!page.contains(VERSION_MARK));
    }

    #[test]
    fn no_file_holds_inline_script_handlers_or_html_sinks() {
        // The CSP forbids inline code; the app inserts data as text only.
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.bytes);
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                " onclick=",
                " onload=",
                " style=",
            ] {
                assert!(!text.contains(bad), "{} contains {bad}", a.path);
            }
            if a.path == "index.html" {
                assert!(!text.contains("<script>"), "inline script in index.html");
                assert!(!text.contains("<style"), "inline style in index.html");
            }
        }
    }
}
