#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The OpenAPI description the real `stele serve` serves at
//! `/api/v1/openapi.json`: it is OpenAPI 3.1 (its required fields present), every
//! `$ref` resolves, every error response is an RFC 9457 problem, and it
//! names exactly the routes of the router — a route added to
//! `server/src/routes/mod.rs` without a `#[utoipa::path]` in the document
//! fails here, and so does a documented operation the server does not
//! answer.

mod e2e_common;
mod server_support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use server_support::{runtime, Server};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// (METHOD, path) of every `.route(…)` in the router's source.
fn router_routes() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src/routes/mod.rs"),
    )
    .unwrap();
    let body = &src[src.find("pub fn router(").expect("the router function")..];
    // Routers merged or nested from elsewhere would hide routes from this reading.
    for hidden in [".nest(", ".merge(", ".nest_service(", ".route_service("] {
        assert!(
            !body.contains(hidden),
            "the router uses {hidden}: teach this test to read the routes it adds"
        );
    }
    let mut out = BTreeSet::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The call's text, to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .unwrap()
            .0;
        let call = &rest[..end];
        // `{*rest}` in the router is `{rest}` in OpenAPI.
        let path = call.split('"').nth(1).unwrap().replace("{*", "{");
        // The web app's pages and files are not the API (docs/web.md).
        if path == "/" || path.starts_with("/static/") {
            continue;
        }
        let mut methods = 0;
        for m in METHODS {
            // `get(handler)` or `.post(handler)`, not a name that contains it.
            let found = call.match_indices(&format!("{m}(")).any(|(i, _)| {
                i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if found {
                out.insert((m.to_uppercase(), path.clone()));
                methods += 1;
            }
        }
        assert!(methods > 0, "no method read in .route({call})");
    }
    out
}

/// (METHOD, path) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, _) in item.as_object().unwrap() {
            assert!(
                METHODS.contains(&m.as_str()),
                "{path}: unexpected member {m}"
            );
            out.insert((m.to_uppercase(), path.clone()));
        }
    }
    out
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_is_valid_3_1_and_names_every_route() {
    let mut srv = Server::start("", "");
    let rt = runtime();
    let doc = rt.block_on(async {
        // No credential needed.
        let r = srv
            .http
            .get(srv.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
    });
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    // The fields OpenAPI 3.1 requires: info (title, version), and for each
    // operation its responses; each parameter names itself and where it is.
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(doc["info"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        for (m, op) in item.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{m} {path}: no responses");
            for p in op["parameters"].as_array().into_iter().flatten() {
                assert!(p["name"].is_string(), "{m} {path}: {p}");
                let at = p["in"].as_str().unwrap_or_default();
                assert!(
                    ["path", "query", "header", "cookie"].contains(&at),
                    "{m} {path}: {p}"
                );
                // A path parameter is in the path, and required.
                if at == "path" {
                    let name = p["name"].as_str().unwrap();
                    assert!(path.contains(&format!("{{{name}}}")), "{m} {path}: {p}");
                    assert_eq!(p["required"], true, "{m} {path}: {p}");
                }
            }
        }
    }

    // The router and the document name the same operations.
    let routed = router_routes();
    assert!(
        routed.len() >= 20,
        "the router's routes were not read: {routed:?}"
    );
    let docs = documented(&doc);
    let missing: Vec<_> = routed.difference(&docs).collect();
    assert!(
        missing.is_empty(),
        "routes without a #[utoipa::path] in server/src/openapi.rs: {missing:?}"
    );
    let extra: Vec<_> = docs.difference(&routed).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");

    // Every documented operation is answered by the real server (not its
    // fallback, not 405), without credentials.
    rt.block_on(async {
        for (m, path) in &docs {
            let url = srv.url(
                &path
                    .replace("{id}", "1")
                    .replace("{name}", "books")
                    .replace("{path}", "a.txt")
                    .replace("{secret}", "not-a-link"),
            );
            let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
            let r = srv.http.request(method, &url).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_ne!(status, 405, "{m} {path}: {body}");
            assert!(!body.contains("no such endpoint"), "{m} {path}: {body}");
            // What the document says needs a credential is refused without one.
            let secured = doc["paths"][path][m.to_lowercase()]
                .get("security")
                .is_some();
            // A login link is its own credential: a made-up one is a 401.
            let own_credential = path.contains("{secret}");
            assert_eq!(
                secured || own_credential,
                status == 401,
                "{m} {path}: {status} {body}"
            );
        }
        // The check can fail: a path the router lacks gets its fallback.
        let r = srv
            .http
            .get(srv.url("/api/v1/nothing-here"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert!(r.text().await.unwrap().contains("no such endpoint"));
    });

    // Every $ref resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    let required: Vec<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in ["type", "title", "status"] {
        assert!(required.contains(&f), "{problem}");
    }

    // Errors are problem details; authenticated operations say 401 and 403.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("default"), "{m} {path}");
            assert!(
                responses
                    .keys()
                    .any(|k| k.starts_with('2') || k.starts_with('3')),
                "{m} {path}: no success response"
            );
            for (code, resp) in responses {
                if code.starts_with('2') || code.starts_with('3') {
                    continue;
                }
                let content = resp["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{m} {path} {code}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{m} {path} {code}"
                );
            }
            let open = [
                "/healthz",
                "/readyz",
                "/api/v1/login",
                "/api/v1/login/browser",
                "/api/v1/setup",
                "/api/v1/oidc/login",
                "/api/v1/oidc/callback",
                "/api/v1/openapi.json",
                "/api/v1/login/link/{secret}",
                // How one may sign in: what a login page shows anyway.
                "/api/v1/login/methods",
            ];
            if open.contains(&path.as_str()) {
                assert!(op.get("security").is_none(), "{m} {path}");
            } else {
                assert!(
                    op["security"].as_array().is_some_and(|s| !s.is_empty()),
                    "{m} {path}: no security requirement"
                );
                assert!(
                    responses.contains_key("401") && responses.contains_key("403"),
                    "{m} {path}"
                );
            }
        }
    }
    srv.stop();
}
