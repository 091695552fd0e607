//! [`WebhookStore`] on SQLite: the `webhook_outbox` table.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::webhooks::{OutboxRecord, WebhookStore};

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn add_delivery(&self, d: OutboxRecord) -> Result<(), ServerError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO webhook_outbox (delivery, url, event, body, notice, attempts, next_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![d.delivery, d.url, d.event, d.body, d.notice, d.attempts, d.next_at],
            )
            .map(|_| ())
        })
        .await
    }

    async fn delivery_failed(
        &self,
        delivery: &str,
        attempts: u32,
        next_at: i64,
    ) -> Result<(), ServerError> {
        let delivery = delivery.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE webhook_outbox SET attempts = ?2, next_at = ?3 WHERE delivery = ?1",
                params![delivery, attempts, next_at],
            )
            .map(|_| ())
        })
        .await
    }

    async fn delivery_done(&self, delivery: &str) -> Result<(), ServerError> {
        let delivery = delivery.to_string();
        self.call(move |c| {
            c.execute(
                "DELETE FROM webhook_outbox WHERE delivery = ?1",
                params![delivery],
            )
            .map(|_| ())
        })
        .await
    }

    async fn deliveries(&self) -> Result<Vec<OutboxRecord>, ServerError> {
        self.call(|c| {
            let mut st = c.prepare(
                "SELECT delivery, url, event, body, notice, attempts, next_at \
                 FROM webhook_outbox ORDER BY rowid",
            )?;
            let rows = st.query_map([], |r| {
                Ok(OutboxRecord {
                    delivery: r.get(0)?,
                    url: r.get(1)?,
                    event: r.get(2)?,
                    body: r.get(3)?,
                    notice: r.get(4)?,
                    attempts: r.get(5)?,
                    next_at: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
