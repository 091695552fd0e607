//! A real OpenID Provider (npm `oidc-provider`, installed by
//! `scripts/setup-oidc`) on 127.0.0.1 for the server's OIDC tests: see
//! tests/oidc-provider/provider.mjs for its accounts, scripted login and
//! ID-token tampering switches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running provider.
pub struct Provider {
    /// Its issuer URL.
    pub issuer: String,
    child: Child,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

impl Provider {
    /// Start the provider with one confidential client.
    pub fn start(client_id: &str, secret: &str, redirect: &str) -> Provider {
        Self::start_with(client_id, secret, redirect, &[])
    }

    /// [`Provider::start`] on `port` with a fresh signing key named `kid`
    /// (the same port and another kid: the provider rotated its keys).
    pub fn start_on(
        client_id: &str,
        secret: &str,
        redirect: &str,
        port: u16,
        kid: &str,
    ) -> Provider {
        Self::start_with(client_id, secret, redirect, &[&port.to_string(), kid])
    }

    fn start_with(client_id: &str, secret: &str, redirect: &str, more: &[&str]) -> Provider {
        let d = dir();
        assert!(
            d.join("node_modules/oidc-provider/package.json").is_file(),
            "the OIDC provider is not installed: run scripts/setup-oidc"
        );
        let mut child = Command::new("node")
            .arg(d.join("provider.mjs"))
            .args([client_id, secret, redirect])
            .args(more)
            .current_dir(&d)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (scripts/setup-oidc installs what the provider needs)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("listening on ") {
                        break u.trim().to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("the OIDC provider ended before listening");
                }
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Provider { issuer, child }
    }

    /// Log in as `account` at the next interaction.
    pub async fn next_login(&self, http: &reqwest::Client, account: &str) {
        let r = http
            .get(format!("{}/__test/next?account={account}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// How many times its JWKS was fetched.
    pub async fn jwks_fetches(&self, http: &reqwest::Client) -> u64 {
        let v: serde_json::Value = http
            .get(format!("{}/__test/stats", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["jwks"].as_u64().unwrap()
    }

    /// Stop it (a test that restarts it on the same port).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Rewrite the ID tokens of the next token responses (`off` to stop).
    pub async fn tamper(&self, http: &reqwest::Client, mode: &str) {
        let r = http
            .get(format!("{}/__test/tamper?mode={mode}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser-like client: a cookie jar, following redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// A browser-like client that stops at the redirect to stele's callback
/// (the test then has the callback URL in hand).
pub fn browser_stopping_at_callback() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|a| {
            if a.url().path() == "/api/v1/oidc/callback" {
                a.stop()
            } else {
                a.follow()
            }
        }))
        .build()
        .unwrap()
}

/// The `[oidc]` section for a provider, with the client secret in a file under `dir`.
pub fn config(issuer: &str, port: u16, dir: &Path, extra: &str) -> String {
    let secret = dir.join("oidc-client-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    format!(
        "[oidc]\nissuer = {issuer:?}\nclient_id = {CLIENT:?}\nclient_secret_file = {secret:?}\n\
         redirect_url = \"http://127.0.0.1:{port}/api/v1/oidc/callback\"\n\
         groups_claim = \"groups\"\n{extra}\n"
    )
}

/// The client id stele has at the provider.
pub const CLIENT: &str = "stele-server";
/// Its secret.
pub const SECRET: &str = "a-client-secret-for-tests-only";
