//! What every request handler shares.

use std::sync::Arc;

use stele_audit::AuditLog;
use stele_policy::Bundle;

use crate::config::ServerConfig;
use crate::record::{record, record_decided, Deciders, ServerDecision};
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
    /// The log's signing key (it also signs the manifests of exports).
    pub signer: LogSigner,
    /// The witness key cosigning the workers' checkpoints it accepts.
    pub witness: LogSigner,
    /// The policy bundle in force (its digest is in the server's decisions).
    pub bundle: Arc<Bundle>,
    /// Running sessions.
    pub sessions: Manager,
    /// Approvals waiting for an answer.
    pub pending: Arc<Pending>,
    /// Held while host-side changes are recorded (`admin_record.rs`).
    pub admin_changes: tokio::sync::Mutex<()>,
    /// OIDC login, when `[oidc]` is configured.
    pub oidc: Option<crate::oidc::Oidc>,
    /// Failed-login counts.
    pub throttle: crate::auth::throttle::Throttle,
    /// Notifications by `[[webhook]]`.
    pub webhooks: crate::sessions::webhook::Webhooks,
    /// One-time login links handed out (`stele serve --open`).
    pub login_links: crate::auth::login_link::LoginLinks,
}

impl AppState {
    /// Record one server decision; its entry's index.
    pub async fn record(&self, d: ServerDecision) -> Result<u64, crate::error::ServerError> {
        record(&self.log, &self.bundle.digest().to_string(), d).await
    }

    /// Record one server decision the bundle made, naming its policies.
    pub async fn record_decided(
        &self,
        d: ServerDecision,
        by: Deciders,
    ) -> Result<u64, crate::error::ServerError> {
        record_decided(&self.log, &self.bundle.digest().to_string(), d, by).await
    }
}

/// The log's signing key (no `Debug` of its own: it prints its verifier).
#[derive(Clone)]
pub struct LogSigner(pub Arc<dyn stele_attest::Signer>);

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSigner({})", self.0.verifier())
    }
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;
