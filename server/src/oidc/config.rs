//! `[oidc]` in the server's configuration: the identity provider people
//! log in with (authorization code + PKCE).

use std::path::PathBuf;

use serde::Deserialize;

/// `[oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is under it).
    pub issuer: String,
    /// This server's client id at the provider.
    pub client_id: String,
    /// A file holding the client secret (first line; mode 0600 advised).
    pub client_secret_file: PathBuf,
    /// Where the provider sends the browser back: `https://HOST/api/v1/oidc/callback`.
    pub redirect_url: String,
    /// A claim listing the person's groups, used as teams when the members
    /// file does not list them [default: no groups claim].
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// The claim naming the person as policies name principals.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Seconds a started login (state, nonce, PKCE verifier) stays usable.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
    /// The provider's name on the web app's sign-in page ("Sign in with
    /// NAME") [default: the issuer's host].
    #[serde(default)]
    pub name: Option<String>,
}

fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_login_timeout() -> u64 {
    600
}

impl OidcConfig {
    /// The name the sign-in page shows for the provider.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            url::Url::parse(&self.issuer)
                .ok()
                .and_then(|u| {
                    u.host_str().map(|h| {
                        u.port()
                            .map_or_else(|| h.to_string(), |p| format!("{h}:{p}"))
                    })
                })
                .unwrap_or_else(|| self.issuer.clone())
        })
    }

    /// What is wrong with the section, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let issuer =
            url::Url::parse(&self.issuer).map_err(|e| format!("oidc.issuer: not a URL ({e})"))?;
        let redirect = url::Url::parse(&self.redirect_url)
            .map_err(|e| format!("oidc.redirect_url: not a URL ({e})"))?;
        for (field, u) in [("oidc.issuer", &issuer), ("oidc.redirect_url", &redirect)] {
            let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
                return Err(format!(
                    "{field}: must be https (plain http only on loopback, for tests)"
                ));
            }
        }
        if self.client_id.is_empty() {
            return Err("oidc.client_id: empty".into());
        }
        if self.login_timeout_secs == 0 {
            return Err("oidc.login_timeout_secs: must be at least 1".into());
        }
        if self.username_claim.is_empty() {
            return Err("oidc.username_claim: empty".into());
        }
        Ok(())
    }
}
