//! The TLS client configuration of every sink (rustls, ring): the CA file
//! when given and nothing else, else the Mozilla roots; a client
//! certificate for mutual TLS when configured.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::super::config::SinkConfig;
use super::super::FeedError;

fn bad(cfg: &SinkConfig, field: &str, why: String) -> FeedError {
    FeedError::Config {
        file: std::path::PathBuf::from("[[feed]]"),
        sink: cfg.name.clone(),
        field: field.into(),
        why,
    }
}

fn certs(
    cfg: &SinkConfig,
    field: &str,
    p: &Path,
) -> Result<Vec<CertificateDer<'static>>, FeedError> {
    let bytes = std::fs::read(p).map_err(|e| bad(cfg, field, format!("{}: {e}", p.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cfg, field, format!("{}: {e}", p.display())))?;
    if certs.is_empty() {
        return Err(bad(
            cfg,
            field,
            format!("{}: no PEM certificate in it", p.display()),
        ));
    }
    Ok(certs)
}

/// The client configuration of `cfg`.
pub fn client_config(cfg: &SinkConfig) -> Result<Arc<rustls::ClientConfig>, FeedError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(p) => {
            for c in certs(cfg, "ca_file", p)? {
                roots
                    .add(c)
                    .map_err(|e| bad(cfg, "ca_file", format!("{}: {e}", p.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(cfg, "endpoint", e.to_string()))?
    .with_root_certificates(roots);
    let config = match &cfg.client_auth {
        Some((cert, key)) => {
            let chain = certs(cfg, "client_cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(cfg, "client_key", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(cfg, "client_key", e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
