//! `GET /healthz` (the process answers) and `GET /readyz` (its store
//! answers and its log is open for writing).

use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::Shared;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The server process answers", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The server can take work.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "The server can take work", body = String, content_type = "text/plain")))]
pub async fn readyz(State(state): State<Shared>) -> Result<&'static str, ApiError> {
    match state.store.user("").await {
        Ok(_) => Ok("ready\n"),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the server store does not answer: {e}"),
        )),
    }
}
