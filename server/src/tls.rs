//! HTTPS from certificate files (`[server] tls_cert`, `tls_key`, PEM):
//! rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1 and HTTP/2.
//! A file that is missing or holds no certificate or key stops the
//! server with a message naming it (fail closed).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ServerError;

fn bad(field: &str, path: &Path, why: impl std::fmt::Display) -> ServerError {
    ServerError::Start(format!("server.{field} {}: {why}", path.display()))
}

/// The rustls configuration for `cert` (chain, leaf first) and `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("tls_cert", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("tls_cert", cert, e))?;
    if chain.is_empty() {
        return Err(bad("tls_cert", cert, "no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("tls_key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Start(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Start(format!("server.tls_cert/tls_key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
