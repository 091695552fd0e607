//! OIDC login (authorization code + PKCE). The server discovers the
//! provider, sends the browser there with a fresh state, nonce and PKCE
//! challenge (kept server-side, single use, short-lived, bound to the
//! browser by a cookie), exchanges the code and accepts the ID token only
//! when its signature checks against the provider's JWKS and its issuer,
//! audience, expiry and nonce are right (`openidconnect`'s verifier). Who
//! the person is comes only from that verified token.

mod config;
pub mod jwks;
pub mod pending;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse as _,
};

pub use config::OidcConfig;
use pending::{Pending, PendingLogin, StateRefusal};

use crate::error::ServerError;

/// How long discovered provider metadata (and its JWKS) is used before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// Scopes asked for besides `openid`.
const SCOPES: &[&str] = &["profile", "groups"];

/// The verified identity from an ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The username claim's value.
    pub name: String,
    /// The groups claim's values (empty without a groups claim).
    pub groups: Vec<String>,
    /// The provider's subject id.
    pub subject: String,
}

/// Why an OIDC login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The callback's state (see [`StateRefusal`]).
    State(StateRefusal),
    /// The provider answered with an error instead of a code.
    Provider(String),
    /// The callback lacks `code` or `state`.
    Incomplete,
    /// The code exchange failed.
    Exchange(String),
    /// The token response has no ID token.
    NoIdToken,
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce).
    IdToken(String),
    /// The username claim is missing or not a usable name.
    Username(String),
}

impl Refusal {
    /// Why, in words (logged and answered).
    pub fn reason(&self) -> String {
        match self {
            Refusal::State(s) => s.reason().to_string(),
            Refusal::Provider(e) => format!("the identity provider refused: {e}"),
            Refusal::Incomplete => "the callback lacks code or state".into(),
            Refusal::Exchange(e) => format!("exchanging the code failed: {e}"),
            Refusal::NoIdToken => "the provider's token response has no ID token".into(),
            Refusal::IdToken(e) => format!("the ID token is not valid: {e}"),
            Refusal::Username(e) => e.clone(),
        }
    }
}

/// The OIDC side of the server.
pub struct Oidc {
    /// `[oidc]`.
    pub config: OidcConfig,
    secret: ClientSecret,
    redirect: RedirectUrl,
    issuer: IssuerUrl,
    http: reqwest::Client,
    metadata: tokio::sync::Mutex<Option<(Arc<CoreProviderMetadata>, Instant)>>,
    pending: Pending,
    refetch: jwks::RefetchLimit,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Set up from `[oidc]`: the client secret is read now (a missing file stops the server).
    pub fn new(config: OidcConfig) -> Result<Oidc, ServerError> {
        let bad = |why: String| ServerError::Start(why);
        let text = std::fs::read_to_string(&config.client_secret_file).map_err(|e| {
            bad(format!(
                "oidc.client_secret_file {}: {e}",
                config.client_secret_file.display()
            ))
        })?;
        let secret = text.lines().next().unwrap_or_default().trim().to_string();
        if secret.is_empty() {
            return Err(bad(format!(
                "oidc.client_secret_file {}: empty",
                config.client_secret_file.display()
            )));
        }
        let redirect = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| bad(format!("oidc.redirect_url: {e}")))?;
        let issuer =
            IssuerUrl::new(config.issuer.clone()).map_err(|e| bad(format!("oidc.issuer: {e}")))?;
        // No redirects: a provider endpoint that redirects is an error, not a hop (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| bad(format!("the OIDC HTTP client: {e}")))?;
        Ok(Oidc {
            config,
            secret: ClientSecret::new(secret),
            redirect,
            issuer,
            http,
            metadata: tokio::sync::Mutex::new(None),
            pending: Pending::default(),
            refetch: jwks::RefetchLimit::default(),
        })
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.config.login_timeout_secs)
    }

    /// The provider's discovery document and JWKS (fetched, then kept for an hour).
    async fn metadata(&self) -> Result<Arc<CoreProviderMetadata>, String> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref() {
            if at.elapsed() < METADATA_TTL {
                return Ok(m.clone());
            }
        }
        let m = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| format!("discovering the provider {}: {e}", self.config.issuer))?;
        let m = Arc::new(m);
        *cached = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    /// The provider's metadata with a key set that has key `kid`: the cached
    /// one if it has it, else refetched (rate-limited: [`jwks::MIN_REFETCH_INTERVAL`]).
    async fn keys_with(&self, kid: &str) -> Result<Arc<CoreProviderMetadata>, Refusal> {
        let unknown = |why: &str| {
            Refusal::IdToken(format!(
                "it is signed with key id {}, which the provider does not publish ({why})",
                jwks::shown(kid)
            ))
        };
        let mut cached = self.metadata.lock().await;
        let Some((meta, at)) = cached.clone() else {
            return Err(Refusal::Exchange("the provider's metadata is gone".into()));
        };
        // Another login may have refetched it meanwhile.
        if jwks::knows(&meta, kid) {
            return Ok(meta);
        }
        if !self.refetch.allow(Instant::now()) {
            tracing::warn!(
                "oidc: an ID token names key id {}, not in the provider's key set; not \
                 refetched (the last refetch was under {} s ago)",
                jwks::shown(kid),
                jwks::MIN_REFETCH_INTERVAL.as_secs()
            );
            return Err(unknown("its key set was refetched moments ago"));
        }
        let keys = CoreJsonWebKeySet::fetch_async(meta.jwks_uri(), &self.http)
            .await
            .map_err(|e| {
                Refusal::IdToken(format!(
                    "refetching the provider's key set: {}",
                    error_chain(&e)
                ))
            })?;
        let fresh = Arc::new((*meta).clone().set_jwks(keys));
        *cached = Some((fresh.clone(), at));
        let found = jwks::knows(&fresh, kid);
        tracing::warn!(
            "oidc: an ID token names key id {}, not in the cached key set: refetched it ({} \
             keys; {})",
            jwks::shown(kid),
            fresh.jwks().keys().len(),
            if found { "found" } else { "still unknown" }
        );
        if found {
            Ok(fresh)
        } else {
            Err(unknown("not even in its key set fetched just now"))
        }
    }

    /// Start a login: the provider URL to send the browser to, and the
    /// secret for the browser's binding cookie.
    pub async fn begin(&self) -> Result<(String, String), String> {
        let meta = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            (*meta).clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret.clone()),
        )
        .set_redirect_uri(self.redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in SCOPES {
            req = req.add_scope(Scope::new((*s).to_string()));
        }
        let (url, state, nonce) = req.url();
        let binding = CsrfToken::new_random().secret().clone();
        let login = PendingLogin {
            nonce,
            verifier,
            binding_hash: crate::auth::tokens::hash(&binding),
            began: Instant::now(),
        };
        if !self
            .pending
            .insert(state.secret().clone(), login, self.ttl())
        {
            return Err("too many logins in progress; try again shortly".into());
        }
        Ok((url.to_string(), binding))
    }

    /// Finish a login from the callback's `code` and `state` and the
    /// browser's binding cookie: the verified identity, or why not.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        binding: Option<&str>,
    ) -> Result<Identity, Refusal> {
        let binding_hash = binding.map(crate::auth::tokens::hash);
        let login = self
            .pending
            .take(state, binding_hash.as_deref(), self.ttl())
            .map_err(Refusal::State)?;
        let meta = self.metadata().await.map_err(Refusal::Exchange)?;
        let client = CoreClient::from_provider_metadata(
            (*meta).clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(self.secret.clone()),
        )
        .set_redirect_uri(self.redirect.clone());
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| Refusal::Exchange(e.to_string()))?
            .set_pkce_verifier(login.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| Refusal::Exchange(error_chain(&e)))?;
        let id_token = token.id_token().ok_or(Refusal::NoIdToken)?;
        // A key id the cached key set lacks: the provider may have rotated its keys.
        let client = match jwks::header_kid(&id_token.to_string()) {
            Some(kid) if !jwks::knows(&meta, &kid) => CoreClient::from_provider_metadata(
                (*self.keys_with(&kid).await?).clone(),
                ClientId::new(self.config.client_id.clone()),
                Some(self.secret.clone()),
            )
            .set_redirect_uri(self.redirect.clone()),
            _ => client,
        };
        let claims = id_token
            .claims(&client.id_token_verifier(), &login.nonce)
            .map_err(|e| Refusal::IdToken(e.to_string()))?;
        // The payload of the token whose signature and claims were just verified.
        let payload = payload(&id_token.to_string()).map_err(Refusal::IdToken)?;
        let claim = &self.config.username_claim;
        let name = payload
            .get(claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| Refusal::Username(format!("the ID token has no `{claim}` claim")))?;
        if !usable_name(name) {
            return Err(Refusal::Username(format!(
                "the ID token's `{claim}` ({name:?}) is not a usable user id \
                 (letters, digits, - _ . @)"
            )));
        }
        let groups = self
            .config
            .groups_claim
            .as_ref()
            .and_then(|g| payload.get(g))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Identity {
            name: name.to_string(),
            groups,
            subject: claims.subject().to_string(),
        })
    }
}

/// The JSON payload of a compact JWS.
fn payload(jwt: &str) -> Result<serde_json::Value, String> {
    let part = jwt.split('.').nth(1).ok_or("not a compact JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| format!("payload: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("payload: {e}"))
}

/// Whether `name` can be a principal (as the members file allows).
fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// An error with its causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
