//! The server's errors: typed, and each maps to one RFC 9457 problem.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stele_protocol::{Problem, PROBLEM_JSON};

/// What can go wrong in the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration file is wrong.
    #[error("server configuration {file}: {why}")]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong, and where.
        why: String,
    },
    /// The store failed.
    #[error("server store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The store on PostgreSQL failed (the message never holds a password).
    #[error("server store (PostgreSQL): {0}")]
    Postgres(String),
    /// The store on PostgreSQL cannot answer now (connection lost, server
    /// shutting down or failing over, a serialization conflict): nothing
    /// was changed, and the same request may be made again.
    #[error("server store (PostgreSQL) unavailable, try again: {0}")]
    StoreUnavailable(String),
    /// The audit log failed: the action does not happen.
    #[error("audit log: {0}")]
    Audit(#[from] stele_audit::AuditError),
    /// Starting the server failed.
    #[error("{0}")]
    Start(String),
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// Which file, doing what.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// A shipped log does not hold what was asked of it (an entry beyond
    /// its size, a leaf hash missing).
    #[error("shipped log: {0}")]
    Shipped(String),
}

/// An error answered to an API client as a problem.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub detail: String,
    /// The audit entry recording a refusal.
    pub audit_entry: Option<u64>,
}

impl ApiError {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            audit_entry: None,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: nothing there (or nothing the caller may see).
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the state does not allow it (an approval already answered).
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// The refusal recorded at `entry`.
    pub fn logged(mut self, entry: u64) -> ApiError {
        self.audit_entry = Some(entry);
        self
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: Some(self.detail.clone()),
            instance: None,
            audit_entry: self.audit_entry,
        }
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> ApiError {
        // The server's own failures: logged here, said plainly to the client.
        tracing::error!("{e}");
        let status = match e {
            // A failover or restart of the database: the client retries
            // (503 with `Retry-After`), rather than taking it as final.
            ServerError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut r = (self.status, body).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(PROBLEM_JSON) {
            r.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"stele\""),
            );
        }
        r
    }
}
