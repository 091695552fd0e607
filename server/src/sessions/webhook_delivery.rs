//! Making webhook deliveries: each notice is kept in the server's store
//! (per hook, with its delivery id and the exact body) before its first
//! attempt; attempts back off, doubling, and each failure updates the kept
//! row, so a restart picks the delivery up where it stopped — at its next
//! due time, with the attempts it has left. A 2xx answer forgets it; so
//! does giving up, which is recorded in the audit log (`webhook.deliver`,
//! effect deny). A delivery kept for a hook no longer configured is given
//! up on at start, recorded the same way.

use std::sync::Arc;
use std::time::Duration;

use stele_audit::Effect;

use super::webhook::{payload, signature, Context, Notice, WebhookConfig};
use crate::record::{record, ServerDecision};
use crate::store::webhooks::OutboxRecord;

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// The wait after attempt `n` (1-based) failed: the hook's backoff,
/// doubled for each further attempt, at most five minutes.
fn backoff(hook: &WebhookConfig, n: u32) -> Duration {
    let first = Duration::from_millis(hook.backoff_ms);
    let doubled = first.saturating_mul(1u32 << n.saturating_sub(1).min(16));
    doubled.min(Duration::from_secs(300))
}

/// Keep `n` for `hook` and start delivering it.
pub(crate) async fn enqueue(ctx: &Context, hook: &Arc<WebhookConfig>, n: &Notice) {
    let delivery = format!("d-{}", uuid::Uuid::new_v4().simple());
    let rec = OutboxRecord {
        body: payload(n, &delivery).to_string(),
        delivery,
        url: hook.url.clone(),
        event: n.event.as_str().to_string(),
        notice: n.body.to_string(),
        attempts: 0,
        next_at: now_ms(),
    };
    if let Err(e) = ctx.store.add_delivery(rec.clone()).await {
        // Still attempted now; only a restart would lose it.
        tracing::error!(
            "webhook {}: keeping delivery {}: {e}",
            hook.url,
            rec.delivery
        );
    }
    tokio::spawn(deliver(ctx.clone(), hook.clone(), rec));
}

/// Pick up the deliveries an earlier run kept: each for a configured hook
/// goes on at its due time; the others are given up on, recorded.
pub(crate) async fn resume(ctx: &Context, hooks: &[Arc<WebhookConfig>]) {
    let kept = match ctx.store.deliveries().await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("webhooks: reading the deliveries kept at the last stop: {e}");
            return;
        }
    };
    for rec in kept {
        match hooks.iter().find(|h| h.url == rec.url) {
            Some(h) => {
                tokio::spawn(deliver(ctx.clone(), h.clone(), rec));
            }
            None => {
                let why = format!(
                    "webhook {} not delivered: the hook is no longer configured (after {} attempts)",
                    rec.url, rec.attempts
                );
                give_up(ctx, &rec, why).await;
            }
        }
    }
}

/// Attempt `rec` until a 2xx answer or the hook's attempts are spent.
async fn deliver(ctx: Context, hook: Arc<WebhookConfig>, mut rec: OutboxRecord) {
    let Some(secret) = hook.secret.clone() else {
        tracing::error!("webhook {}: no secret loaded; not sent", hook.url);
        return;
    };
    let mut last = String::from("not attempted");
    while rec.attempts < hook.max_attempts {
        let due = rec.next_at.saturating_sub(now_ms());
        if due > 0 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(due).unwrap_or(0))).await;
        }
        rec.attempts += 1;
        // Signed afresh each time: a retry is not a replay of an old timestamp.
        let t = time::OffsetDateTime::now_utc().unix_timestamp();
        let sent = ctx
            .http
            .post(&hook.url)
            .timeout(Duration::from_secs(hook.timeout_secs))
            .header("content-type", "application/json")
            .header("stele-event", &rec.event)
            .header("stele-delivery", &rec.delivery)
            .header(
                "stele-signature",
                signature(&secret, t, rec.body.as_bytes()),
            )
            .body(rec.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                if let Err(e) = ctx.store.delivery_done(&rec.delivery).await {
                    tracing::error!(
                        "webhook {}: forgetting delivered {}: {e}",
                        hook.url,
                        rec.delivery
                    );
                }
                return;
            }
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => last = format!("{e}"),
        }
        tracing::warn!(
            "webhook {} ({} {}): attempt {} of {} failed: {last}",
            hook.url,
            rec.event,
            rec.delivery,
            rec.attempts,
            hook.max_attempts
        );
        let wait = i64::try_from(backoff(&hook, rec.attempts).as_millis()).unwrap_or(i64::MAX);
        rec.next_at = now_ms().saturating_add(wait);
        if let Err(e) = ctx
            .store
            .delivery_failed(&rec.delivery, rec.attempts, rec.next_at)
            .await
        {
            tracing::error!(
                "webhook {}: keeping delivery {}: {e}",
                hook.url,
                rec.delivery
            );
        }
    }
    let why = format!(
        "webhook {} not delivered after {} attempts: {last}",
        hook.url, rec.attempts
    );
    give_up(&ctx, &rec, why).await;
}

/// Record that `rec` is given up on, then forget it.
async fn give_up(ctx: &Context, rec: &OutboxRecord, reason: String) {
    tracing::error!("{reason} ({} {})", rec.event, rec.delivery);
    let notice: serde_json::Value =
        serde_json::from_str(&rec.notice).unwrap_or(serde_json::Value::Null);
    let d = ServerDecision {
        principal: "system".into(),
        teams: Vec::new(),
        action: "webhook.deliver",
        effect: Effect::Deny,
        reason,
        data: serde_json::json!({
            "event": rec.event,
            "delivery": rec.delivery,
            "url": rec.url,
            "attempts": rec.attempts,
            "notice": notice,
        }),
    };
    if let Err(e) = record(&ctx.log, &ctx.bundle_digest, d).await {
        // Kept: the next start tries to record it again.
        tracing::error!("recording an undelivered webhook: {e}");
        return;
    }
    if let Err(e) = ctx.store.delivery_done(&rec.delivery).await {
        tracing::error!("webhook {}: forgetting {}: {e}", rec.url, rec.delivery);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let hook = WebhookConfig {
            url: "https://h/".into(),
            secret_file: "/s".into(),
            events: Vec::new(),
            max_attempts: 40,
            backoff_ms: 1000,
            timeout_secs: 1,
            secret: None,
        };
        let waits: Vec<u64> = (1..=4).map(|n| backoff(&hook, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(backoff(&hook, 30), Duration::from_secs(300));
    }
}
