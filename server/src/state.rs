//! What every request handler shares.

use std::sync::Arc;

use stele_audit::AuditLog;
use stele_policy::Bundle;

use crate::config::ServerConfig;
use crate::record::{record, ServerDecision};
use crate::sessions::approvals::Pending;
use crate::sessions::manager::Manager;
use crate::store::Store;

/// The server's shared state.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: ServerConfig,
    /// The server's working state.
    pub store: Arc<dyn Store>,
    /// The one audit log every session and the server itself write.
    pub log: Arc<AuditLog>,
    /// The policy bundle in force (its digest is in the server's decisions).
    pub bundle: Arc<Bundle>,
    /// Running sessions.
    pub sessions: Manager,
    /// Approvals waiting for an answer.
    pub pending: Pending,
    /// Held while host-side changes are recorded (`admin_record.rs`).
    pub admin_changes: tokio::sync::Mutex<()>,
    /// OIDC login, when `[oidc]` is configured.
    pub oidc: Option<crate::oidc::Oidc>,
    /// Failed-login counts.
    pub throttle: crate::auth::throttle::Throttle,
}

impl AppState {
    /// Record one server decision; its entry's index.
    pub async fn record(&self, d: ServerDecision) -> Result<u64, crate::error::ServerError> {
        record(&self.log, &self.bundle.digest().to_string(), d).await
    }
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;
