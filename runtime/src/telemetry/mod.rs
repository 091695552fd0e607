//! OpenTelemetry traces over OTLP/HTTP, when configured.
//!
//! Off by default. On when the config has `[telemetry] otlp_endpoint`
//! (managed > user), else when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; `OTEL_SDK_DISABLED=true` turns it
//! off. Spans follow the GenAI semantic conventions ([`spans`]) and carry
//! the audit-log index and leaf hash of their entries; they carry metadata
//! only — never prompts, tool arguments, outputs, file contents or keys.
//! Spans are batched on a background thread and flushed when stele exits.

mod exporter;
pub mod spans;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The `[telemetry]` table of the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; spans are posted to
    /// `<otlp_endpoint>/v1/traces` (a URL already ending so is used as is).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource [default: stele].
    pub service_name: Option<String>,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The exporter could not be built (bad endpoint, …).
    #[error("telemetry: {0}")]
    Exporter(String),
    /// The export thread could not be started.
    #[error("telemetry: {0}")]
    Io(#[from] std::io::Error),
}

/// Where spans go, once settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A URL from the config (already ending in `/v1/traces`).
    Configured(String),
    /// Whatever the standard `OTEL_EXPORTER_OTLP_*` variables say.
    Environment,
}

/// Settle the endpoint from the config table and the environment.
pub fn endpoint(cfg: Option<&TelemetryConfig>) -> Option<Endpoint> {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        return None;
    }
    if let Some(url) = cfg
        .and_then(|c| c.otlp_endpoint.as_deref())
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let base = url.trim_end_matches('/');
        return Some(Endpoint::Configured(if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        }));
    }
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .then_some(Endpoint::Environment)
}

/// Installed telemetry; [`Telemetry::shutdown`] (or drop) flushes the spans.
pub struct Telemetry {
    provider: SdkTracerProvider,
    // Runs the HTTP requests of the export thread; dropped after the provider.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// Set up tracing export from the config layers and the environment;
/// `Ok(None)` when it is not configured.
pub fn init() -> Result<Option<Telemetry>, TelemetryError> {
    let layers = crate::config::load()?;
    let cfg = layers.pick("telemetry", None, |c| c.telemetry.clone())?;
    let Some(ep) = endpoint(cfg.as_ref()) else {
        return Ok(None);
    };
    let service = cfg
        .and_then(|c| c.service_name)
        .unwrap_or_else(|| "stele".into());
    start(ep, &service).map(Some)
}

/// Install an OTLP/HTTP (protobuf) exporter to `ep` as the global tracer provider.
pub fn start(ep: Endpoint, service: &str) -> Result<Telemetry, TelemetryError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("stele-otlp")
        .enable_all()
        .build()?;
    let client = exporter::OtlpHttpClient::new(runtime.handle().clone())
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client);
    if let Endpoint::Configured(url) = &ep {
        builder = builder.with_endpoint(url.clone());
    }
    let span_exporter = builder
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(service.to_string())
        .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Telemetry {
        provider,
        runtime: Some(runtime),
    })
}

impl Telemetry {
    /// Export every finished span and stop (bounded wait when the collector is down).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "telemetry: spans not all exported");
                crate::errln!("stele: warning: telemetry: spans not all exported: {e}");
            }
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configured_endpoint_gets_the_traces_path() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318/".into()),
            service_name: None,
        };
        assert_eq!(
            endpoint(Some(&cfg)),
            Some(Endpoint::Configured(
                "http://127.0.0.1:4318/v1/traces".into()
            ))
        );
        let full = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318/v1/traces".into()),
            service_name: None,
        };
        assert_eq!(
            endpoint(Some(&full)),
            Some(Endpoint::Configured("http://c:4318/v1/traces".into()))
        );
    }
}
