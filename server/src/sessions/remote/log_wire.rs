//! What a worker and the server say about the worker's log as it is
//! shipped (`POST /api/v1/worker/log/size`, `POST /api/v1/worker/log`) and
//! what an admin says to revoke a worker's key.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/worker/log/size`: where shipping starts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSizeRequest {
    /// The worker's log's origin.
    pub origin: String,
}

/// What the server holds of an origin, and its witness key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogSize {
    /// Entries held (the next batch starts there).
    pub size: u64,
    /// The server's witness key (cosignature/v1 verifier form).
    pub witness: String,
}

/// `POST /api/v1/worker/log`: a batch of the worker's log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipRequest {
    /// The worker's name (registered by its claims, with its log key).
    pub worker: String,
    /// Its log's origin.
    pub origin: String,
    /// The index of the first leaf (the size the server holds).
    pub from: u64,
    /// The leaves, each its exact stored bytes in standard base64.
    pub leaves: Vec<String>,
    /// The log's signed checkpoint at `from + leaves.len()`.
    pub checkpoint: String,
    /// The payload bodies the leaves commit to that the worker still holds
    /// (a redacted, erased or expired one is absent: a bundle says it is
    /// withheld). Older workers send none.
    #[serde(default)]
    pub payloads: Vec<ShipPayload>,
}

/// A payload body as the worker stores it, each field in standard base64
/// (`media` as text).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShipPayload {
    /// Its commitment, `SHA-256(salt ‖ body)` (32 bytes).
    pub cmt: String,
    /// Its media type.
    pub media: String,
    /// The salt.
    pub salt: String,
    /// The body.
    pub body: String,
}

/// A batch taken: the new size and the server's cosignature.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shipped {
    /// Entries held now.
    pub size: u64,
    /// The server's witness key (cosignature/v1 verifier form).
    pub witness: String,
    /// Its cosignature line of the checkpoint (C2SP tlog-witness).
    pub cosignature: String,
}

/// A worker's key, revoked (`POST /api/v1/admin/workers/{name}/revoke`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revoked {
    /// The worker.
    pub worker: String,
    /// Its log's origin.
    pub origin: String,
    /// The key revoked (note verifier form).
    pub verifier: String,
    /// False when it was revoked already.
    pub newly: bool,
}
