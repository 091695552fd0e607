//! The API's OpenAPI 3.1 description, generated from the code: the
//! `#[utoipa::path]` of every handler and the protocol types' schemas
//! (`stele-protocol`'s `openapi` feature). Served at `GET
//! /api/v1/openapi.json` without authentication: it describes the shape of
//! the API, which is public in the source, and nothing of anyone's data.
//! Every operation's errors are RFC 9457 problems (`application/problem+json`).

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    admin_view, approvals, audit, audit_desk, audit_evidence, events, fleet_export, health, holds,
    login, login_link, login_methods, oidc, schedule_pause, schedules, session_control,
    session_outputs, sessions, shipped_search, worker, worker_log, worker_revoke, workspaces,
};

/// The document's definition: every route of [`crate::routes::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "stele server API",
        description = "The team server of stele (`stele serve`): sessions run headless over one \
                       audit log, approvals from anywhere, scheduled tasks, the log's entries and \
                       exports. Every decision the server makes is an entry in the log. Errors \
                       are RFC 9457 problem details. See docs/server.md."
    ),
    paths(
        health::healthz,
        health::readyz,
        login::login,
        login::setup,
        login::login_browser,
        login::logout,
        login_link::redeem,
        oidc::login,
        oidc::callback,
        sessions::list,
        sessions::start,
        sessions::get_one,
        events::stream,
        session_control::resume,
        session_control::stop,
        approvals::list,
        approvals::answer,
        workspaces::list,
        workspaces::files,
        workspaces::download,
        workspaces::upload,
        audit::entries,
        audit::export,
        audit::verify,
        audit_desk::sessions,
        audit_desk::timeline,
        audit_evidence::verify_session,
        audit_evidence::proof,
        audit_evidence::export_range,
        fleet_export::export,
        holds::place,
        holds::release,
        schedules::list,
        schedules::create,
        schedules::get_one,
        schedules::delete,
        schedules::runs,
        login_methods::methods,
        login_methods::me,
        session_outputs::outputs,
        schedule_pause::pause,
        schedule_pause::unpause,
        admin_view::users,
        admin_view::workspaces,
        admin_view::policy,
        admin_view::health,
        worker::list,
        worker::claim,
        worker::events,
        worker::heartbeat,
        worker::finish,
        worker_log::size,
        worker_log::ship,
        worker_revoke::revoke,
        shipped_search::search,
        openapi_json,
    ),
    components(schemas(stele_protocol::Problem)),
    modifiers(&Errors),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Logins (local accounts, OIDC), set-up links, logout"),
        (name = "sessions", description = "Sessions and their live events"),
        (name = "approvals", description = "The approvals queue"),
        (name = "workspaces", description = "Workspaces and their files, read and written through the gate"),
        (name = "audit", description = "The audit log: entries, verification, exports, holds"),
        (name = "schedules", description = "Scheduled tasks and their runs"),
        (name = "admin", description = "The admin page's read-only views (the `admin` decision)"),
        (name = "api", description = "This description"),
    )
)]
pub struct ApiDoc;

/// The security schemes, and the problem responses of every operation.
struct Errors;

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            stele_protocol::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

fn add_errors(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let r = &mut op.responses.responses;
    if secured {
        r.entry("401".into()).or_insert_with(|| {
            problem("No live credential (token or browser session); the refusal is logged").into()
        });
        r.entry("403".into()).or_insert_with(|| {
            problem("Policy refuses it, or the token lacks the scope; the refusal is logged").into()
        });
    }
    r.entry("default".into())
        .or_insert_with(|| problem("Any other error: bad input (400) names the field").into());
}

impl Modify for Errors {
    fn modify(&self, doc: &mut Document) {
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`stele token create`) or a login token"))
                    .build(),
            ),
        );
        comps.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::cookies::SESSION,
                "A browser session (`__Host-` prefixed under TLS); state-changing requests also \
                 need the CSRF token",
            ))),
        );
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                add_errors(op);
            }
        }
    }
}

/// This description.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "api",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", body = serde_json::Value)))]
pub async fn openapi_json() -> Json<Document> {
    Json(ApiDoc::openapi())
}
