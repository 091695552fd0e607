//! The OTLP exporter's HTTP client: the workspace's reqwest (rustls), run on
//! a small runtime of its own, so the export thread of the batch processor
//! needs no async runtime and no second HTTP or TLS stack is linked.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// Sends OTLP requests with reqwest on `handle`.
#[derive(Debug)]
pub(super) struct OtlpHttpClient {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

/// Responses from a collector are small; a larger one is refused.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

impl OtlpHttpClient {
    pub(super) fn new(handle: tokio::runtime::Handle) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { client, handle })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let send = async move {
            let (parts, body) = request.into_parts();
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            if body.len() > MAX_RESPONSE {
                return Err(HttpError::from("collector response too large"));
            }
            let mut out = Response::builder().status(status).body(body)?;
            *out.headers_mut() = headers;
            Ok::<_, HttpError>(out)
        };
        self.handle.spawn(send).await?
    }
}
