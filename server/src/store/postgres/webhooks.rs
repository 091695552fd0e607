//! [`WebhookStore`] on PostgreSQL: the `webhook_outbox` table.

use async_trait::async_trait;

use super::PgStore;
use crate::error::ServerError;
use crate::store::webhooks::{OutboxRecord, WebhookStore};

#[async_trait]
impl WebhookStore for PgStore {
    async fn add_delivery(&self, d: OutboxRecord) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO webhook_outbox (delivery, url, event, body, notice, attempts, next_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &d.delivery,
                &d.url,
                &d.event,
                &d.body,
                &d.notice,
                &i64::from(d.attempts),
                &d.next_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        delivery: &str,
        attempts: u32,
        next_at: i64,
    ) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE webhook_outbox SET attempts = $2, next_at = $3 WHERE delivery = $1",
            &[&delivery, &i64::from(attempts), &next_at],
        )
        .await?;
        Ok(())
    }

    async fn delivery_done(&self, delivery: &str) -> Result<(), ServerError> {
        let c = self.client().await?;
        c.execute(
            "DELETE FROM webhook_outbox WHERE delivery = $1",
            &[&delivery],
        )
        .await?;
        Ok(())
    }

    async fn deliveries(&self) -> Result<Vec<OutboxRecord>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT delivery, url, event, body, notice, attempts, next_at \
                 FROM webhook_outbox ORDER BY seq",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(OutboxRecord {
                delivery: r.try_get(0)?,
                url: r.try_get(1)?,
                event: r.try_get(2)?,
                body: r.try_get(3)?,
                notice: r.try_get(4)?,
                attempts: u32::try_from(r.try_get::<_, i64>(5)?).unwrap_or(u32::MAX),
                next_at: r.try_get(6)?,
            });
        }
        Ok(out)
    }
}
