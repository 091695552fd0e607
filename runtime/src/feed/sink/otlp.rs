//! OTLP logs over HTTP: an `ExportLogsServiceRequest` (protobuf) posted
//! to `<endpoint>/v1/logs`. A batch is delivered when the collector
//! answers 200 with an `ExportLogsServiceResponse` in protobuf that
//! rejects no record; anything else is a failure and the batch is sent
//! again.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::super::config::{Endpoint, SinkConfig};
use super::super::record::FeedRecord;
use super::super::FeedError;
use super::http::Http;
use super::{excerpt, Sink, SinkError};
use crate::provider::secret::Secret;

/// An OTLP/HTTP logs receiver.
#[derive(Debug)]
pub struct OtlpSink {
    http: Http,
    url: String,
    token: Option<Secret>,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

impl OtlpSink {
    /// For `cfg` (an HTTP endpoint).
    pub fn new(cfg: &SinkConfig, tls: Arc<rustls::ClientConfig>) -> Result<Self, FeedError> {
        let Endpoint::Http(base) = &cfg.endpoint else {
            return Err(FeedError::Config {
                file: "[[feed]]".into(),
                sink: cfg.name.clone(),
                field: "endpoint".into(),
                why: "OTLP needs a URL".into(),
            });
        };
        let base = base.strip_suffix("/v1/logs").unwrap_or(base);
        Ok(Self {
            http: Http::new(cfg, tls)?,
            url: format!("{base}/v1/logs"),
            token: cfg.token.clone(),
        })
    }

    /// The export request of `records`.
    pub fn request(records: &[FeedRecord], origin: &str) -> ExportLogsServiceRequest {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let log_records = records
            .iter()
            .map(|r| {
                let (sev, sev_text) = r.otlp_severity();
                LogRecord {
                    time_unix_nano: (r.time_ms.max(0) as u64).saturating_mul(1_000_000),
                    observed_time_unix_nano: now,
                    severity_number: sev,
                    severity_text: sev_text.into(),
                    body: Some(AnyValue {
                        value: Some(s(String::from_utf8_lossy(&r.json))),
                    }),
                    attributes: vec![
                        kv("stele.log.origin", s(origin)),
                        kv("stele.log.index", any_value::Value::IntValue(r.seq as i64)),
                        kv("stele.leaf.hash", s(hex::encode(r.leaf_hash))),
                        kv("stele.record", s(r.label())),
                    ],
                    event_name: r.label(),
                    ..Default::default()
                }
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("stele")),
                        kv("service.version", s(env!("CARGO_PKG_VERSION"))),
                        kv("host.name", s(super::host_name())),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "stele.audit.feed".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

impl Sink for OtlpSink {
    fn deliver(&mut self, records: &[FeedRecord], origin: &str) -> Result<(), SinkError> {
        let body = Self::request(records, origin).encode_to_vec();
        let mut req = self
            .http
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        if let Some(t) = &self.token {
            req = req.header(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", t.expose()),
            );
        }
        let url = &self.url;
        let (status, ctype, answer) = self.http.send(req, &format!("OTLP {url}"))?;
        if !status.is_success() {
            return Err(SinkError(format!(
                "OTLP {url} answered {status}: {}",
                excerpt(&answer)
            )));
        }
        if !ctype.starts_with("application/x-protobuf") {
            return Err(SinkError(format!(
                "OTLP {url} answered {status} with {ctype:?}, not an application/x-protobuf ExportLogsServiceResponse: {}",
                excerpt(&answer)
            )));
        }
        let r = ExportLogsServiceResponse::decode(answer.as_slice()).map_err(|e| {
            SinkError(format!(
                "OTLP {url} answered {status} but not with an ExportLogsServiceResponse: {e}"
            ))
        })?;
        match r.partial_success {
            Some(p) if p.rejected_log_records > 0 => Err(SinkError(format!(
                "OTLP {url} rejected {} of {} records: {}",
                p.rejected_log_records,
                records.len(),
                p.error_message
            ))),
            _ => Ok(()),
        }
    }
}
