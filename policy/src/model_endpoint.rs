//! Where a model is served: the endpoint of the `Model` resource (its `scheme`, `host` and
//! `port` attributes), so a policy that allows "Anthropic models" can also say *which server*
//! speaks for them. A base URL that points elsewhere (a redirected environment variable, a
//! look-alike host, plain http) is then a different resource.

use std::fmt;

use crate::canonical::CanonicalHost;
use crate::error::{CanonError, PolicyError};
use crate::request::Resource;

/// A model endpoint in canonical form (lowercase scheme, IDNA host or normalised IP literal,
/// explicit port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelEndpoint {
    scheme: String,
    host: String,
    port: u16,
}

impl ModelEndpoint {
    /// The endpoint of `scheme://host[:port]`; without a port, the scheme's default.
    pub fn new(scheme: &str, host: &str, port: Option<u16>) -> Result<Self, CanonError> {
        let h = CanonicalHost::new(scheme, host, port)?;
        Ok(Self {
            scheme: h.scheme().to_owned(),
            host: h.name().to_owned(),
            port: h.port(),
        })
    }

    /// Parse `scheme://host[:port]`.
    pub fn parse(endpoint: &str) -> Result<Self, CanonError> {
        let h = CanonicalHost::parse(endpoint)?;
        Ok(Self {
            scheme: h.scheme().to_owned(),
            host: h.name().to_owned(),
            port: h.port(),
        })
    }

    /// A model that is no server at all (stele's scripted provider replays a local file):
    /// `file://localhost`, port 0.
    pub fn local_file() -> Self {
        Self {
            scheme: "file".to_owned(),
            host: "localhost".to_owned(),
            port: 0,
        }
    }

    /// Lowercase scheme (`https`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
    /// Host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for ModelEndpoint {
    /// `scheme://host:port` (IPv6 in brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Parse a model resource as tests and `policy explain` write it: the entity uid and its
/// endpoint, `Model::"anthropic/claude-sonnet-4-5" at https://api.anthropic.com` (the port
/// defaults to the scheme's; `at file://localhost` is the scripted provider).
pub(crate) fn model_from_uid(uid: &str) -> Result<Resource, PolicyError> {
    let bad = |why: &str| PolicyError::Request(format!("resource `{uid}`: {why}"));
    let rest = uid
        .strip_prefix("Model::\"")
        .ok_or_else(|| bad("expected Model::\"provider/name\""))?;
    let (id, after) = rest
        .split_once('"')
        .ok_or_else(|| bad("missing closing quote"))?;
    if id.contains('\\') {
        return Err(bad("quotes and escapes are not supported in ids"));
    }
    let (provider, name) = id
        .split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| bad("model ids are \"provider/name\""))?;
    let endpoint = after.trim().strip_prefix("at ").map(str::trim).ok_or_else(|| {
        bad("a model is served from an endpoint: write `Model::\"provider/name\" at https://host[:port]`")
    })?;
    let endpoint = if endpoint == "file://localhost" {
        ModelEndpoint::local_file()
    } else {
        ModelEndpoint::parse(endpoint).map_err(|e| bad(&e.to_string()))?
    };
    Ok(Resource::Model {
        provider: provider.to_owned(),
        name: name.to_owned(),
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parsing_and_display() {
        let e = ModelEndpoint::parse("HTTPS://API.Anthropic.com").unwrap();
        assert_eq!(e.to_string(), "https://api.anthropic.com:443");
        let e = ModelEndpoint::new("http", "[::1]", Some(8000)).unwrap();
        assert_eq!((e.host(), e.port()), ("::1", 8000));
        let r =
            model_from_uid(r#"Model::"openai-compat/llama3:8b" at http://127.0.0.1:8000"#).unwrap();
        assert_eq!(r.entity_id(), "openai-compat/llama3:8b");
        for bad in [
            r#"Model::"anthropic/claude""#,
            r#"Model::"anthropic/claude" at api.anthropic.com"#,
            r#"Model::"anthropic" at https://api.anthropic.com"#,
            r#"Model::"a/b" at https://x.example/path"#,
        ] {
            assert!(model_from_uid(bad).is_err(), "{bad}");
        }
    }
}
