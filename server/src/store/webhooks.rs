//! Webhook deliveries not yet made: each notice is kept here, per hook,
//! before its first attempt and until it is delivered or given up on, so
//! a restart retries what a receiver that was down never got.

use async_trait::async_trait;

use crate::error::ServerError;

/// One delivery waiting to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// The delivery id (`Stele-Delivery`), the same on every attempt.
    pub delivery: String,
    /// The hook's URL (which `[[webhook]]` it is for).
    pub url: String,
    /// The event's name (`approval_requested`, …).
    pub event: String,
    /// The JSON body, exactly as sent on every attempt.
    pub body: String,
    /// The notice's own fields, for the give-up entry.
    pub notice: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt.
    pub next_at: i64,
}

/// Where undelivered webhooks are kept (part of every [`super::Store`]).
#[async_trait]
pub trait WebhookStore {
    /// Keep a delivery before its first attempt.
    async fn add_delivery(&self, d: OutboxRecord) -> Result<(), ServerError>;
    /// After a failed attempt: how many were made and when the next is due.
    async fn delivery_failed(
        &self,
        delivery: &str,
        attempts: u32,
        next_at: i64,
    ) -> Result<(), ServerError>;
    /// Delivered or given up on: forget it.
    async fn delivery_done(&self, delivery: &str) -> Result<(), ServerError>;
    /// Every delivery still waiting, oldest first.
    async fn deliveries(&self) -> Result<Vec<OutboxRecord>, ServerError>;
}
