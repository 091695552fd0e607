//! Webhooks: a JSON POST to each `[[webhook]]` when an approval is
//! requested (and, if asked for, when a session ends or pauses), so a team
//! can wire approvals to chat or email. Each POST is signed with
//! HMAC-SHA256 under the hook's secret: the header
//! `Stele-Signature: t=UNIX_SECONDS,v1=HEX` carries the time and the MAC of
//! `"{t}.{body}"`; a receiver recomputes it, compares in constant time and
//! refuses a `t` outside its replay window (docs/server.md "Webhooks").
//! Deliveries run on a thread of their own and never hold up a session;
//! a failed one is retried with doubling backoff, each failure logged, and
//! one given up on is recorded in the audit log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use stele_audit::AuditLog;
use tokio::sync::mpsc;

/// What a hook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A session's step waits for an approval.
    ApprovalRequested,
    /// A session ended (done, failed or stopped).
    SessionEnded,
    /// A session paused (resumable).
    SessionPaused,
}

impl WebhookEvent {
    /// The name in payloads, headers and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::ApprovalRequested => "approval_requested",
            WebhookEvent::SessionEnded => "session_ended",
            WebhookEvent::SessionPaused => "session_paused",
        }
    }
}

/// `[[webhook]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST: `https://…`, or `http://` to a loopback address only.
    pub url: String,
    /// File holding the shared secret (mode 0600 or stricter, at least 16 bytes).
    pub secret_file: PathBuf,
    /// What to send [default: `["approval_requested"]`].
    #[serde(default = "default_events")]
    pub events: Vec<WebhookEvent>,
    /// Attempts per notification, the first included [default: 5].
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry, doubled for each further one [default: 1000 ms].
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Time allowed for one attempt [default: 10 s].
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The secret, read by [`WebhookConfig::load_secret`].
    #[serde(skip)]
    pub secret: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret_file", &self.secret_file)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

fn default_events() -> Vec<WebhookEvent> {
    vec![WebhookEvent::ApprovalRequested]
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    1000
}
fn default_timeout_secs() -> u64 {
    10
}

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

impl WebhookConfig {
    /// Check the `i`th `[[webhook]]`; the error names the field.
    pub fn check(&self, i: usize) -> Result<(), String> {
        let at = format!("webhook[{i}]");
        let url = url::Url::parse(&self.url).map_err(|e| format!("{at}.url: {e}"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            s => {
                return Err(format!(
                    "{at}.url: {s}:// is not allowed (https, or http to a loopback address)"
                ))
            }
        }
        if self.events.is_empty() {
            return Err(format!("{at}.events: name at least one event"));
        }
        if self.max_attempts == 0 {
            return Err(format!("{at}.max_attempts: must be at least 1"));
        }
        if self.timeout_secs == 0 {
            return Err(format!("{at}.timeout_secs: must be at least 1"));
        }
        Ok(())
    }

    /// Read the secret file: owned by nobody else to read (mode 0600 or
    /// stricter), at least [`MIN_SECRET_BYTES`] once a final newline is
    /// taken off.
    pub fn load_secret(&mut self, i: usize) -> Result<(), String> {
        let at = format!("webhook[{i}].secret_file");
        self.secret = Some(read_secret(&self.secret_file).map_err(|e| format!("{at}: {e}"))?);
        Ok(())
    }
}

fn read_secret(p: &Path) -> Result<Arc<[u8]>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = p.display();
    let meta = std::fs::metadata(p).map_err(|e| format!("{shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} has mode {mode:o}: others may read the secret (chmod 600 {shown})"
        ));
    }
    let mut bytes = std::fs::read(p).map_err(|e| format!("{shown}: {e}"))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{shown}: the secret is {} bytes; use at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
            bytes.len()
        ));
    }
    Ok(Arc::from(bytes))
}

/// The `Stele-Signature` value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// One notification to send.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What happened.
    pub event: WebhookEvent,
    /// The payload's own fields (`approval` or `session`).
    pub body: serde_json::Value,
}

/// The server's webhooks: [`Webhooks::notify`] hands a notice over and returns at once.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    tx: Option<mpsc::UnboundedSender<Notice>>,
}

/// What a delivery needs besides its hook.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) http: reqwest::Client,
    pub(crate) log: Arc<AuditLog>,
    pub(crate) bundle_digest: String,
    /// Where each delivery is kept until it is made or given up on.
    pub(crate) store: Arc<dyn crate::store::Store>,
}

impl Webhooks {
    /// Start delivering for `hooks` (none: nothing is sent); failures given
    /// up on are recorded in `log`. Deliveries kept in `store` by an earlier
    /// run (a receiver that was down) are retried first, with their backoff.
    pub fn start(
        hooks: &[WebhookConfig],
        log: Arc<AuditLog>,
        bundle_digest: String,
        store: Arc<dyn crate::store::Store>,
    ) -> Result<Webhooks, String> {
        // Started without hooks too: deliveries kept for a hook no longer
        // configured are given up on (recorded) at start.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("the webhooks' HTTP client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the webhooks' runtime: {e}"))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Notice>();
        let hooks: Vec<Arc<WebhookConfig>> = hooks.iter().cloned().map(Arc::new).collect();
        let ctx = Context {
            http,
            log,
            bundle_digest,
            store,
        };
        std::thread::Builder::new()
            .name("stele-webhooks".into())
            .spawn(move || {
                rt.block_on(async move {
                    crate::sessions::webhook_delivery::resume(&ctx, &hooks).await;
                    while let Some(n) = rx.recv().await {
                        for h in hooks.iter().filter(|h| h.events.contains(&n.event)) {
                            crate::sessions::webhook_delivery::enqueue(&ctx, h, &n).await;
                        }
                    }
                });
            })
            .map_err(|e| format!("the webhooks' thread: {e}"))?;
        Ok(Webhooks { tx: Some(tx) })
    }

    /// Send `n` to every hook that wants it, in the background.
    pub fn notify(&self, n: Notice) {
        if let Some(tx) = &self.tx {
            if tx.send(n).is_err() {
                tracing::error!("webhooks: the delivery thread has stopped; a notice was lost");
            }
        }
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The body of one notification.
pub(crate) fn payload(n: &Notice, delivery: &str) -> serde_json::Value {
    let mut p = serde_json::json!({
        "event": n.event.as_str(),
        "delivery": delivery,
        "created": now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    });
    if let (Some(o), serde_json::Value::Object(extra)) = (p.as_object_mut(), n.body.clone()) {
        o.extend(extra);
    }
    p
}

/// A link to `path` on the server, when `server.public_url` says where it is.
fn link(state: &crate::state::AppState, path: &str) -> serde_json::Value {
    match &state.config.server.public_url {
        Some(base) => serde_json::json!(format!("{}{path}", base.trim_end_matches('/'))),
        None => serde_json::Value::Null,
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The notice of approval `a`: what an approver needs to act — never the
/// shown text itself (it may quote what the session read), only its
/// SHA-256, which the answer must echo.
pub fn approval_requested(
    state: &crate::state::AppState,
    a: &crate::store::ApprovalRecord,
) -> Notice {
    Notice {
        event: WebhookEvent::ApprovalRequested,
        body: serde_json::json!({
            "approval": {
                "approval_id": a.id,
                "session": a.session,
                "requester": a.requester,
                "shown_sha256": a.shown_sha256,
                "deadline": rfc3339(a.deadline),
                "link": link(state, &format!("/api/v1/approvals/{}", a.id)),
                "session_link": link(state, &format!("/api/v1/sessions/{}", a.session)),
            }
        }),
    }
}

/// Notify a session's end or pause (other changes are not notified).
pub fn session_changed(
    state: &crate::state::AppState,
    id: &str,
    whose: &(String, String),
    to: stele_protocol::SessionState,
    detail: Option<&str>,
) {
    use stele_protocol::SessionState as S;
    if id.is_empty() {
        // It never started: nobody was told it had.
        return;
    }
    let event = match to {
        S::Ended | S::Failed => WebhookEvent::SessionEnded,
        S::Paused => WebhookEvent::SessionPaused,
        S::Starting | S::Running | S::WaitingApproval => return,
    };
    state.webhooks.notify(Notice {
        event,
        body: serde_json::json!({
            "session": {
                "id": id,
                "owner": whose.0,
                "workspace": whose.1,
                "state": to,
                "detail": detail,
                "link": link(state, &format!("/api/v1/sessions/{id}")),
            }
        }),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // RFC 4231 test case 2 ("what do ya want for nothing?"), split as t.body.
        let s = signature(b"Jefe", 0, b"what do ya want for nothing?");
        assert!(s.starts_with("t=0,v1="), "{s}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let want = ring::hmac::sign(&key, b"0.what do ya want for nothing?");
        assert_eq!(s, format!("t=0,v1={}", hex::encode(want.as_ref())));
        // A different time, body or secret gives a different MAC.
        assert_ne!(s, signature(b"Jefe", 1, b"what do ya want for nothing?"));
        assert_ne!(s, signature(b"Jeff", 0, b"what do ya want for nothing?"));
        assert_ne!(s, signature(b"Jefe", 0, b"what do ya want for nothing!"));
    }

    #[test]
    fn secrets_readable_by_others_or_short_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_secret(&p).unwrap_err();
            assert!(e.contains("chmod 600"), "{mode:o}: {e}");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&*read_secret(&p).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&p, "short\n").unwrap();
        assert!(read_secret(&p).unwrap_err().contains("at least 16"));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let mut h: WebhookConfig =
            toml::from_str("url = \"http://chat.example.com/hook\"\nsecret_file = \"/s\"\n")
                .unwrap();
        assert!(h.check(0).unwrap_err().contains("webhook[0].url"));
        for ok in [
            "https://chat.example.com/hook",
            "http://127.0.0.1:9/h",
            "http://[::1]:9/h",
        ] {
            h.url = ok.into();
            h.check(0).unwrap();
        }
        h.events.clear();
        assert!(h.check(0).unwrap_err().contains("webhook[0].events"));
    }
}
