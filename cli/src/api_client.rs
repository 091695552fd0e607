//! A client of a stele server's HTTP API, for the commands that act on a
//! server (`stele --server URL run`, `stele schedule`): where the server
//! is, the caller's token, and problems (RFC 9457) turned into errors that
//! say what the server refused and why.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::de::DeserializeOwned;
use serde::Serialize;
use stele_protocol::Problem;

/// The environment variable naming the server when `--server` is not given.
pub const SERVER_ENV: &str = "STELE_SERVER";
/// The environment variable holding an API token (`stele token create`).
pub const TOKEN_ENV: &str = "STELE_TOKEN";
/// The environment variable naming a file holding the token.
pub const TOKEN_FILE_ENV: &str = "STELE_TOKEN_FILE";

/// Where the server is and how to authenticate to it, from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's URL (e.g. https://stele.example.com) [env: STELE_SERVER].
    #[arg(long)]
    pub server: Option<String>,
    /// A file holding an API token (`stele token create`) [env: STELE_TOKEN_FILE; or the
    /// token itself in STELE_TOKEN].
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// An authenticated client of one server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: reqwest::Url,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// The client `args` (or the environment) describe.
    pub fn from_args(args: &ServerArgs) -> anyhow::Result<ApiClient> {
        let server = match &args.server {
            Some(s) => s.clone(),
            None => std::env::var(SERVER_ENV)
                .with_context(|| format!("no server: pass --server URL or set {SERVER_ENV}"))?,
        };
        let token_file = args
            .token_file
            .clone()
            .or_else(|| std::env::var_os(TOKEN_FILE_ENV).map(PathBuf::from));
        let token = match token_file {
            Some(f) => read_token(&f)?,
            None => std::env::var(TOKEN_ENV).with_context(|| {
                format!(
                    "no API token: pass --token-file FILE or set {TOKEN_ENV} or \
                     {TOKEN_FILE_ENV} (`stele token create` makes one)"
                )
            })?,
        };
        ApiClient::new(&server, token.trim())
    }

    /// A client of the server at `server` with `token`.
    pub fn new(server: &str, token: &str) -> anyhow::Result<ApiClient> {
        let mut base = reqwest::Url::parse(server)
            .with_context(|| format!("--server {server:?} is not a URL"))?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            "http" => bail!(
                "--server {server}: plain http is only for a server on this machine (loopback); \
                 use https"
            ),
            other => bail!("--server {server}: scheme {other:?} is neither https nor http"),
        }
        if token.is_empty() {
            bail!("the API token is empty");
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("stele/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            base,
            token: token.to_string(),
            http,
        })
    }

    /// The server's URL, as given (for messages that say where to go).
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The absolute URL of `path` (relative to the server, e.g. `api/v1/sessions`).
    pub fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("{path:?} is not a path on the server"))
    }

    /// A request to `path`, authenticated.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(self
            .http
            .request(method, self.url(path)?)
            .bearer_auth(&self.token))
    }

    /// `GET path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.request(reqwest::Method::GET, path)?.send().await;
        json_of(path, resp).await
    }

    /// `POST path` with a JSON body, answered with JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self
            .request(reqwest::Method::POST, path)?
            .json(body)
            .send()
            .await;
        json_of(path, resp).await
    }

    /// `DELETE path`; success is any 2xx.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self.request(reqwest::Method::DELETE, path)?.send().await;
        checked(path, resp).await.map(|_| ())
    }
}

/// A response, or the server's problem as an error naming it.
pub async fn checked(
    path: &str,
    resp: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<reqwest::Response> {
    let resp = resp.map_err(|e| {
        let at = e
            .url()
            .map(|u| format!(" at {}", u.origin().ascii_serialization()));
        anyhow::Error::from(e).context(format!(
            "cannot reach the server{} for {path}",
            at.unwrap_or_default()
        ))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        bail!(
            "the server refused the API token for {path} (401): it is unknown, expired or \
             revoked; make a new one with `stele token create` on the server"
        );
    }
    match serde_json::from_str::<Problem>(&text) {
        Ok(p) => {
            let detail = p.detail.unwrap_or(p.title);
            match p.audit_entry {
                Some(seq) => bail!(
                    "the server refused {path}: {} {detail} (recorded as audit entry {seq})",
                    p.status
                ),
                None => bail!("the server refused {path}: {} {detail}", p.status),
            }
        }
        Err(_) => bail!(
            "the server answered {path} with {status}: {}",
            text.chars().take(300).collect::<String>()
        ),
    }
}

async fn json_of<T: DeserializeOwned>(
    path: &str,
    resp: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<T> {
    let resp = checked(path, resp).await?;
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("reading the server's answer to {path}"))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("the server's answer to {path} is not what this stele expects"))
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("reading the API token from {}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("{}: the token file is empty", path.display());
    }
    Ok(t)
}

/// A runtime for one command's requests.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(ApiClient::new("http://127.0.0.1:8650", "t").is_ok());
        assert!(ApiClient::new("http://localhost:8650", "t").is_ok());
        assert!(ApiClient::new("http://[::1]:8650", "t").is_ok());
        let e = ApiClient::new("http://stele.example.com", "t").unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(ApiClient::new("https://stele.example.com", "t").is_ok());
        assert!(ApiClient::new("ftp://x", "t").is_err());
        assert!(ApiClient::new("https://stele.example.com", "").is_err());
    }

    #[test]
    fn paths_join_under_a_prefix() {
        let c = ApiClient::new("https://example.com/stele", "t").unwrap();
        assert_eq!(
            c.url("/api/v1/sessions").unwrap().as_str(),
            "https://example.com/stele/api/v1/sessions"
        );
    }
}
