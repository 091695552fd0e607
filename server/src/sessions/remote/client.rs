//! A worker's HTTP client for the worker API: every request carries the
//! worker token; an answer the server refuses is an error naming the
//! request and the server's reason.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("{what}: the server at {url} cannot be reached: {why}")]
    Unreachable {
        /// The request.
        what: String,
        /// The server.
        url: String,
        /// Why.
        why: String,
    },
    /// The token was refused (401/403): the worker cannot go on.
    #[error("{what}: the server refused the worker token ({status}): {why}")]
    Refused {
        /// The request.
        what: String,
        /// The status.
        status: u16,
        /// The server's reason.
        why: String,
    },
    /// The claim is no longer this worker's (409).
    #[error("{what}: {why}")]
    Lost {
        /// The request.
        what: String,
        /// The server's reason.
        why: String,
    },
    /// Anything else the server answered.
    #[error("{what}: the server answered {status}: {why}")]
    Other {
        /// The request.
        what: String,
        /// The status.
        status: u16,
        /// Its reason.
        why: String,
    },
}

/// The worker API at one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of the server at `base` (`http(s)://HOST:PORT`).
    pub fn new(base: &str, token: &str) -> Result<Client, String> {
        let url = url::Url::parse(base).map_err(|e| format!("--server {base:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("--server {base:?}: not an http(s) URL"));
        }
        if token.trim().is_empty() {
            return Err("--token: empty".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    /// POST `body` to `path`; the answer (None: 204).
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<R>, ClientError> {
        let what = format!("POST {path}");
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                what: what.clone(),
                url: self.base.clone(),
                why: e.to_string(),
            })?;
        let status = r.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        if (200..300).contains(&status) {
            return r
                .json::<R>()
                .await
                .map(Some)
                .map_err(|e| ClientError::Other {
                    what,
                    status,
                    why: format!("an answer that is not what the worker API sends: {e}"),
                });
        }
        let text = r.text().await.unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(match status {
            401 | 403 => ClientError::Refused { what, status, why },
            409 => ClientError::Lost { what, why },
            _ => ClientError::Other { what, status, why },
        })
    }
}
