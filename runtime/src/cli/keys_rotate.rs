//! `stele keys rotate` and `stele keys revoke`: changing the key that signs
//! the log, and distrusting a former one, over `AuditLog::rotate_blocking`
//! and `revoke_blocking` (docs/keys.md). The log is opened with the key
//! that signs it now (the configuration's `[signing.pkcs11]`, else the key
//! file), so a rotation is refused unless its holder can sign.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use stele_attest::{load_key_file, Signer};
use stele_audit::{AuditLog, LogOptions};

use super::audit::LogArgs;
use super::keys::{pkcs11_uri, Pkcs11Flags};
use crate::terminal_safe;

/// Arguments of `stele keys rotate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_key", "to_pkcs11_label"])))]
pub struct RotateArgs {
    /// The log, and the key file that signs it now (unless the
    /// configuration names a PKCS#11 key).
    #[command(flatten)]
    pub log: LogArgs,
    /// The new key: a key file (made with `stele keys init --key FILE
    /// --origin ORIGIN`, ORIGIN the log's).
    #[arg(long, value_name = "FILE")]
    pub to_key: Option<PathBuf>,
    /// The new key: this label in a PKCS#11 token (made with `stele keys
    /// init --pkcs11 --label L --origin ORIGIN`); module, token and PIN
    /// from the flags below, else from `[signing.pkcs11]`.
    #[arg(long, value_name = "LABEL")]
    pub to_pkcs11_label: Option<String>,
    /// The new key's PKCS#11 module.
    #[arg(long, requires = "to_pkcs11_label")]
    pub module: Option<PathBuf>,
    /// The new key's token label.
    #[arg(long, requires = "to_pkcs11_label")]
    pub token: Option<String>,
    /// A file (mode 0600) holding the new key's token PIN.
    #[arg(long, requires = "to_pkcs11_label", conflicts_with = "pin_env")]
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the new key's token PIN.
    #[arg(long, requires = "to_pkcs11_label")]
    pub pin_env: Option<String>,
    /// Why (recorded in the `key.rotation` entry).
    #[arg(long, default_value = "scheduled rotation")]
    pub reason: String,
    /// Who rotates [default: $STELE_USER, else the login name].
    #[arg(long)]
    pub user: Option<String>,
}

/// Arguments of `stele keys revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The former key, in signed-note verifier form (NAME+HASH+KEY).
    #[arg(value_name = "KEY")]
    pub revoked: String,
    /// The first tree size the key may have signed after its compromise.
    #[arg(long)]
    pub from_size: u64,
    /// Why (recorded in the `key.revocation` entry).
    #[arg(long)]
    pub reason: String,
    /// The log and its current key.
    #[command(flatten)]
    pub log: LogArgs,
    /// Who revokes [default: $STELE_USER, else the login name].
    #[arg(long)]
    pub user: Option<String>,
}

fn open(log: &LogArgs) -> anyhow::Result<AuditLog> {
    let (db, key) = (log.db(), log.key());
    super::state::existing_log(&db)?;
    let signer = super::state::signing_key(&key)?;
    AuditLog::open(&db, signer, LogOptions::default())
        .with_context(|| format!("opening {}", terminal_safe::path(&db)))
}

/// Run `stele keys rotate`.
pub fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let actor = super::audit::human_actor(a.user.clone())?;
    let (new, shown): (Arc<dyn Signer>, String) = match (&a.to_key, &a.to_pkcs11_label) {
        (Some(file), None) => (
            Arc::new(load_key_file(file).map_err(|e| anyhow::anyhow!("--to-key: {e}"))?),
            file.display().to_string(),
        ),
        (None, Some(label)) => {
            let cfg = Pkcs11Flags {
                pkcs11: true,
                module: a.module.clone(),
                token: a.token.clone(),
                label: Some(label.clone()),
                pin_file: a.pin_file.clone(),
                pin_env: a.pin_env.clone(),
            }
            .config()?;
            let s = stele_hsm::Pkcs11Signer::open(&cfg)
                .map_err(|e| anyhow::anyhow!("--to-pkcs11-label: {e}"))?;
            (Arc::new(s), pkcs11_uri(&cfg))
        }
        _ => anyhow::bail!("give exactly one of --to-key and --to-pkcs11-label"),
    };
    let log = open(&a.log)?;
    let old = log.verifier().to_string();
    let r = log
        .rotate_blocking(new.clone(), a.reason, actor)
        .context("rotating the log's key (nothing changed: the old key still signs)")?;
    log.close()?;
    crate::outln!(
        "rotated: entry {} (key.rotation); checkpoints from size {} are signed by {}",
        r.seq,
        r.seq + 1,
        terminal_safe::line(&shown)
    );
    crate::outln!("old key: {}", terminal_safe::line(&old));
    crate::outln!(
        "new key: {}",
        terminal_safe::line(&new.verifier().to_string())
    );
    crate::outln!(
        "the log now opens only with the new key: point --key or [signing] at it (docs/keys.md)"
    );
    Ok(ExitCode::SUCCESS)
}

/// Run `stele keys revoke`.
pub fn revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let actor = super::audit::human_actor(a.user.clone())?;
    anyhow::ensure!(!a.reason.trim().is_empty(), "--reason is empty");
    let log = open(&a.log)?;
    let r = log
        .revoke_blocking(a.revoked.clone(), a.from_size, a.reason, actor)
        .context("recording the revocation")?;
    log.close()?;
    crate::outln!(
        "revoked {} from size {}: entry {} (key.revocation); tell reviewers --revoked {}@{}",
        terminal_safe::line(&a.revoked),
        a.from_size,
        r.seq,
        terminal_safe::line(&a.revoked),
        a.from_size
    );
    Ok(ExitCode::SUCCESS)
}
