//! stele's own files as commands meet them: the signing key and the log,
//! with an error that says how to create what is missing (not the system's
//! "No such file or directory" on its own).

use std::path::Path;
use std::sync::Arc;

use stele_attest::{load_key_file, AttestError, Signer};

use super::exit::Stop;
use crate::terminal_safe;

/// The log's signing key: the PKCS#11 key of the configuration's
/// `[signing] pkcs11` when there is one (managed file first), else the key
/// file at `path`. Every command that signs or opens the log for writing
/// comes here, so a configured token key is used by all of them.
pub fn signing_key(path: &Path) -> anyhow::Result<Arc<dyn Signer>> {
    let layers = crate::config::load()?;
    match layers.signing_pkcs11() {
        Some((file, cfg)) => Ok(Arc::new(pkcs11_key(file, cfg)?)),
        None => Ok(file_key(path)?),
    }
}

/// Open the token key `cfg` that the configuration `file` names; errors
/// name the file and the `[signing.pkcs11]` field.
pub fn pkcs11_key(
    file: &Path,
    cfg: &stele_hsm::Pkcs11Config,
) -> anyhow::Result<stele_hsm::Pkcs11Signer> {
    let at = || {
        format!(
            "config {}, [signing.pkcs11] (token {:?}, label {:?})",
            terminal_safe::path(file),
            terminal_safe::line(&cfg.token),
            terminal_safe::line(&cfg.label)
        )
    };
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
    stele_hsm::Pkcs11Signer::open(cfg).map_err(|e| anyhow::anyhow!("{}: {e}", at()))
}

/// The key file at `path`; a missing key is [`Stop::NotSetUp`] naming
/// `stele keys init`.
pub fn file_key(path: &Path) -> anyhow::Result<Arc<dyn Signer>> {
    match load_key_file(path) {
        Ok(k) => Ok(Arc::new(k)),
        Err(AttestError::KeyIo { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Stop::NotSetUp {
                what: format!(
                    "no audit signing key at {} (this machine has none yet)",
                    terminal_safe::path(path)
                ),
                fix: "create one with `stele keys init` (or give the key with --key FILE)".into(),
            }
            .into())
        }
        // Its message names the file and the cause once (no repeated chain).
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// Refuse a log that does not exist yet, saying how it comes to be.
pub fn existing_log(db: &Path) -> anyhow::Result<()> {
    if db.exists() {
        return Ok(());
    }
    Err(Stop::NotSetUp {
        what: format!("no audit log at {} yet", terminal_safe::path(db)),
        fix: "stele creates it with the first session (`stele run`, `stele sandbox exec`), \
              or create it now with `stele audit init` (or give the log with --db FILE)"
            .into(),
    }
    .into())
}
