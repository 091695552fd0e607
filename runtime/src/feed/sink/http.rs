//! The HTTP client of the HEC and OTLP sinks: the workspace's reqwest over
//! the sink's rustls configuration, driven by a small runtime of the
//! sink's own (each sink runs on its own thread).

use std::sync::Arc;
use std::time::Duration;

use super::super::config::SinkConfig;
use super::super::FeedError;
use super::SinkError;

/// A blocking HTTP client for one sink.
#[derive(Debug)]
pub struct Http {
    /// The client.
    pub client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// Most bytes read of a receiver's answer.
const MAX_ANSWER: usize = 1 << 20;

impl Http {
    /// For `cfg`, trusting what `tls` trusts.
    pub fn new(cfg: &SinkConfig, tls: Arc<rustls::ClientConfig>) -> Result<Self, FeedError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FeedError::Read(format!("sink {}: {e}", cfg.name)))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FeedError::Read(format!("sink {}: {e}", cfg.name)))?;
        Ok(Self { client, rt })
    }

    /// Send `req`; the status, the content type and (at most 1 MiB of) the body.
    pub fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, String, Vec<u8>), SinkError> {
        self.rt.block_on(async {
            let mut resp = req.send().await.map_err(|e| SinkError::chain(what, &e))?;
            let status = resp.status();
            let ctype = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| SinkError::chain(what, &e))? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(SinkError(format!("{what}: the answer is over 1 MiB")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, ctype, body))
        })
    }
}
