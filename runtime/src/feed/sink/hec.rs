//! Splunk HTTP Event Collector: batched JSON events posted to
//! `<endpoint>/services/collector/event` with `Authorization: Splunk
//! <token>`. A batch is delivered when HEC answers 200 with `"code": 0`;
//! when it answers with an `ackId` (indexer acknowledgement is on for the
//! token), only once `/services/collector/ack` says that id is indexed.
//! Anything else (another status, another code, a body that is not HEC's
//! JSON) is a failure and the batch is sent again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::config::{Endpoint, SinkConfig};
use super::super::record::FeedRecord;
use super::super::FeedError;
use super::http::Http;
use super::{excerpt, Sink, SinkError};
use crate::provider::secret::Secret;

/// A HEC receiver.
#[derive(Debug)]
pub struct HecSink {
    http: Http,
    url: String,
    ack_url: String,
    token: Secret,
    channel: String,
    index: Option<String>,
    host: String,
    timeout: Duration,
}

impl HecSink {
    /// For `cfg` (an HTTP endpoint and a token).
    pub fn new(cfg: &SinkConfig, tls: Arc<rustls::ClientConfig>) -> Result<Self, FeedError> {
        let (Endpoint::Http(base), Some(token)) = (&cfg.endpoint, &cfg.token) else {
            return Err(FeedError::Config {
                file: "[[feed]]".into(),
                sink: cfg.name.clone(),
                field: "endpoint".into(),
                why: "HEC needs a URL and a token".into(),
            });
        };
        let base = base
            .strip_suffix("/services/collector/event")
            .unwrap_or(base);
        Ok(Self {
            http: Http::new(cfg, tls)?,
            url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack"),
            token: token.clone(),
            channel: uuid::Uuid::new_v4().to_string(),
            index: cfg.index.clone(),
            host: super::host_name(),
            timeout: cfg.timeout,
        })
    }

    /// The request body: one HEC event object per record, newline-separated.
    pub fn body(&self, records: &[FeedRecord], origin: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.iter().map(|r| r.json.len() + 300).sum());
        for r in records {
            let mut head = serde_json::json!({
                "time": r.time_ms as f64 / 1000.0,
                "host": self.host,
                "source": format!("stele:{origin}"),
                "sourcetype": "ocsf:stele",
                "fields": {
                    "stele_origin": origin,
                    "stele_seq": r.seq.to_string(),
                    "stele_leaf_hash": hex::encode(r.leaf_hash),
                    "stele_record": r.label(),
                },
            });
            if let (Some(i), Some(o)) = (&self.index, head.as_object_mut()) {
                o.insert("index".into(), Value::String(i.clone()));
            }
            // The event is the OCSF line as written, spliced in unparsed.
            let mut h = serde_json::to_vec(&head).unwrap_or_default();
            h.pop();
            out.extend_from_slice(&h);
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(&r.json);
            out.extend_from_slice(b"}\n");
        }
        out
    }

    fn post(&self, url: &str, body: Vec<u8>) -> Result<Value, SinkError> {
        let req = self
            .http
            .client
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Splunk {}", self.token.expose()),
            )
            .header("X-Splunk-Request-Channel", &self.channel)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (status, _, answer) = self.http.send(req, &format!("HEC {url}"))?;
        let v: Option<Value> = serde_json::from_slice(&answer).ok();
        let code = v
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64);
        let text = v
            .as_ref()
            .and_then(|v| v.get("text"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if !status.is_success() {
            return Err(SinkError(format!(
                "HEC {url} answered {status}{}",
                match (code, text) {
                    (Some(c), Some(t)) => format!(" (code {c}: {t})"),
                    _ => format!(": {}", excerpt(&answer)),
                }
            )));
        }
        v.ok_or_else(|| {
            SinkError(format!(
                "HEC {url} answered {status} but not with HEC's JSON: {}",
                excerpt(&answer)
            ))
        })
    }
}

impl Sink for HecSink {
    fn deliver(&mut self, records: &[FeedRecord], origin: &str) -> Result<(), SinkError> {
        let v = self.post(&self.url, self.body(records, origin))?;
        match v.get("code").and_then(Value::as_i64) {
            Some(0) => {}
            other => {
                return Err(SinkError(format!(
                    "HEC {} did not accept the batch: code {}, {}",
                    self.url,
                    other.map_or("missing".into(), |c| c.to_string()),
                    excerpt(v.to_string().as_bytes())
                )))
            }
        }
        let Some(ack) = v.get("ackId").and_then(Value::as_u64) else {
            return Ok(());
        };
        // Indexer acknowledgement: poll until HEC says the batch is indexed.
        let start = Instant::now();
        let mut wait = Duration::from_millis(20);
        loop {
            let body = serde_json::to_vec(&serde_json::json!({"acks": [ack]})).unwrap_or_default();
            let a = self.post(&self.ack_url, body)?;
            if a.pointer(&format!("/acks/{ack}")).and_then(Value::as_bool) == Some(true) {
                return Ok(());
            }
            if start.elapsed() > self.timeout {
                return Err(SinkError(format!(
                    "HEC did not acknowledge ackId {ack} within {} s",
                    self.timeout.as_secs()
                )));
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}
