//! Host-side account and token changes (`stele user add`, `stele token
//! create`) into the audit log. Those commands run beside the server,
//! which holds the log's writer lock, so they queue the change in the store
//! together with what it creates, inert; the server records each queued
//! change as an entry and only then lets the account or token work — at its
//! start, every few seconds while it runs, and at once when someone
//! presents a credential that is still waiting (PCI DSS 10.2.1.5: changes to
//! credentials are logged; invariant 1: recorded before it takes effect).
//!
//! Each entry carries the change's queue id: should the server die between
//! the entry and marking the change recorded, the next run records it again
//! under the same id (at least once; a reviewer sees the repeat as such).

use std::time::Duration;

use stele_audit::Effect;

use crate::error::ServerError;
use crate::record::ServerDecision;
use crate::state::AppState;

/// How often a running server looks for changes made on its host.
pub const POLL: Duration = Duration::from_secs(2);

/// Record every queued change, oldest first, then let what it made work;
/// how many were recorded. One caller at a time (the others wait and then
/// find the queue empty), so a change is not recorded twice by one server.
pub async fn record_admin_changes(state: &AppState) -> Result<usize, ServerError> {
    let _one = state.admin_changes.lock().await;
    let pending = state.store.pending_admin_changes().await?;
    for (id, ch) in &pending {
        let mut data = serde_json::json!({
            "subject": ch.subject,
            "change_id": id,
            "made_at": ch.at,
            "via": "host",
        });
        if let (Some(o), serde_json::Value::Object(extra)) = (data.as_object_mut(), &ch.detail) {
            o.extend(extra.clone());
        }
        state
            .record(ServerDecision {
                principal: ch.by.clone(),
                teams: Vec::new(),
                action: ch.action.as_str(),
                effect: Effect::Allow,
                reason: format!(
                    "{} on the server's host by {}",
                    match ch.action {
                        crate::store::AdminAction::AccountAdd => "account added",
                        crate::store::AdminAction::TokenCreate => "API token created",
                        crate::store::AdminAction::TokenRevoke => "API token revoked",
                    },
                    ch.by
                ),
                data,
            })
            .await?;
        state.store.admin_change_recorded(*id).await?;
    }
    Ok(pending.len())
}
