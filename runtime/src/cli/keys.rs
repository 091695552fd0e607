//! `stele keys init|show|rotate|revoke`: the log signing key, in a file or
//! in a PKCS#11 token (docs/keys.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::{generate_key_file, Signer};

use crate::paths;
use crate::terminal_safe;

/// Arguments of `stele keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `stele keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new signing key (file mode 0600); refuses to overwrite.
    Init {
        /// Key file [default: $STATE/keys/log.key].
        #[arg(long)]
        key: Option<PathBuf>,
        /// Log origin / key name, e.g. audit.example.org/agent-runtime/prod-1
        /// [default: stele/<host>/<random>].
        #[arg(long)]
        origin: Option<String>,
        /// Print the new key's file, origin and verifier key as JSON.
        #[arg(long)]
        json: bool,
        /// Make the key inside a PKCS#11 token (non-extractable) instead of
        /// a file; the token fields not given come from `[signing.pkcs11]`.
        #[command(flatten)]
        pkcs11: Pkcs11Flags,
    },
    /// Print the verifier key in signed-note form (give this to reviewers).
    Show {
        /// Key file [default: $STATE/keys/log.key].
        #[arg(long)]
        key: Option<PathBuf>,
        /// Print the key file, origin and verifier key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rotate the log to a new key: a `key.rotation` entry signed by both
    /// keys; later checkpoints are signed by the new key only.
    Rotate(super::keys_rotate::RotateArgs),
    /// Record that a former key must not be trusted from a tree size on
    /// (it may have been copied): a `key.revocation` entry.
    Revoke(super::keys_rotate::RevokeArgs),
}

/// Where a PKCS#11 key is, as flags (each falls back to the
/// configuration's `[signing.pkcs11]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Pkcs11Flags {
    /// Use a PKCS#11 token.
    #[arg(long)]
    pub pkcs11: bool,
    /// The PKCS#11 module (absolute path of the shared library).
    #[arg(long, requires = "pkcs11")]
    pub module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, requires = "pkcs11")]
    pub token: Option<String>,
    /// The key's label in the token.
    #[arg(long, requires = "pkcs11")]
    pub label: Option<String>,
    /// A file (mode 0600) holding the user PIN.
    #[arg(long, requires = "pkcs11", conflicts_with = "pin_env")]
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the user PIN.
    #[arg(long, requires = "pkcs11")]
    pub pin_env: Option<String>,
}

impl Pkcs11Flags {
    /// The key these flags name, the missing fields taken from the
    /// configuration's `[signing.pkcs11]`; errors name the missing flag.
    pub fn config(&self) -> anyhow::Result<stele_hsm::Pkcs11Config> {
        let layers = crate::config::load()?;
        let base = layers.signing_pkcs11().map(|(_, c)| c.clone());
        let pick = |flag: &Option<String>, conf: Option<&String>, name: &str| {
            flag.clone().or_else(|| conf.cloned()).with_context(|| {
                format!("--{name} is missing (and [signing.pkcs11] sets no {name})")
            })
        };
        let module = self
            .module
            .clone()
            .or_else(|| base.as_ref().map(|b| b.module.clone()))
            .context("--module is missing (and [signing.pkcs11] sets no module)")?;
        let token = pick(&self.token, base.as_ref().map(|b| &b.token), "token")?;
        let label = pick(&self.label, base.as_ref().map(|b| &b.label), "label")?;
        let (pin_file, pin_env) = if self.pin_file.is_some() || self.pin_env.is_some() {
            (self.pin_file.clone(), self.pin_env.clone())
        } else {
            base.as_ref()
                .map(|b| (b.pin_file.clone(), b.pin_env.clone()))
                .unwrap_or_default()
        };
        let cfg = stele_hsm::Pkcs11Config {
            module,
            token,
            label,
            pin_file,
            pin_env,
        };
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("--pkcs11: {e}"))?;
        Ok(cfg)
    }
}

/// How a token key is named where a key file's path would be shown.
pub fn pkcs11_uri(cfg: &stele_hsm::Pkcs11Config) -> String {
    format!(
        "pkcs11:token={};object={} (module {})",
        cfg.token,
        cfg.label,
        cfg.module.display()
    )
}

/// Run `stele keys`.
pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Init {
            key,
            origin,
            json,
            pkcs11,
        } => {
            let origin = match origin {
                Some(o) => {
                    check_origin(&o)?;
                    o
                }
                None => default_origin()?,
            };
            if pkcs11.pkcs11 {
                anyhow::ensure!(
                    key.is_none(),
                    "--key names a key file; a --pkcs11 key lives in the token"
                );
                return init_pkcs11(&pkcs11, &origin, json);
            }
            // The key's folders are private (0700) and the key 0600,
            // whatever the umask.
            paths::private_umask();
            let path = std::path::absolute(key.unwrap_or_else(paths::default_key))?;
            if let Some(dir) = path.parent() {
                paths::ensure_private_dir(dir)
                    .with_context(|| format!("creating {}", terminal_safe::path(dir)))?;
            }
            let signer = generate_key_file(&path, &origin)
                .with_context(|| format!("creating key {}", terminal_safe::path(&path)))?;
            if json {
                super::json::pretty(&key_info(&path.display().to_string(), &signer, true))?;
            } else {
                crate::outln!("created {}", terminal_safe::path(&path));
                crate::outln!(
                    "verifier key: {}",
                    terminal_safe::line(&signer.verifier().to_string())
                );
            }
        }
        KeysCommand::Show { key, json } => {
            let path = key.unwrap_or_else(paths::default_key);
            let signer = super::state::signing_key(&path)?;
            let shown = match crate::config::load()?.signing_pkcs11() {
                Some((_, cfg)) => pkcs11_uri(cfg),
                None => path.display().to_string(),
            };
            if json {
                super::json::pretty(&key_info(&shown, signer.as_ref(), false))?;
            } else {
                crate::outln!("{}", terminal_safe::line(&signer.verifier().to_string()));
            }
        }
        KeysCommand::Rotate(a) => return super::keys_rotate::rotate(a),
        KeysCommand::Revoke(a) => return super::keys_rotate::revoke(a),
    }
    Ok(ExitCode::SUCCESS)
}

/// `stele keys init --pkcs11`: a key pair made in the token.
fn init_pkcs11(flags: &Pkcs11Flags, origin: &str, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = flags.config()?;
    let signer = stele_hsm::generate(&cfg, origin).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shown = pkcs11_uri(&cfg);
    if json {
        super::json::pretty(&key_info(&shown, &signer, true))?;
    } else {
        crate::outln!("created {} (not extractable)", terminal_safe::line(&shown));
        crate::outln!(
            "verifier key: {}",
            terminal_safe::line(&signer.verifier().to_string())
        );
        crate::outln!(
            "to sign the log with it, add [signing.pkcs11] with this module, token and label \
             to the configuration (docs/keys.md)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn key_info(shown: &str, signer: &dyn Signer, created: bool) -> super::json::KeyInfo {
    let verifier = signer.verifier();
    let text = verifier.to_string();
    super::json::KeyInfo {
        key_file: shown.to_string(),
        // The signed-note verifier key is NAME+HASH+KEY; names hold no '+'.
        origin: text.split('+').next().unwrap_or_default().to_string(),
        verifier: text,
        created,
    }
}

/// A log origin is shown to every reviewer (checkpoints, `audit verify`):
/// no whitespace, no `+` (the signed-note key syntax) and nothing a
/// terminal would act on or hide.
fn check_origin(origin: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!origin.is_empty(), "--origin: the log origin is empty");
    for (i, c) in origin.chars().enumerate() {
        if let Some(h) = terminal_safe::hazard(c) {
            anyhow::bail!(
                "--origin: the log origin \"{}\" contains {} (U+{:04X} at character {})",
                terminal_safe::line(origin),
                h.describe(),
                c as u32,
                i + 1
            );
        }
        anyhow::ensure!(
            !c.is_whitespace() && c != '+',
            "--origin: the log origin \"{}\" contains {:?} at character {} (no whitespace or '+')",
            terminal_safe::line(origin),
            c,
            i + 1
        );
    }
    Ok(())
}

/// `stele/<host>/<8 hex>`: unique per deployment without leaking more.
pub fn default_origin() -> anyhow::Result<String> {
    let mut b = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| anyhow::anyhow!("system random source failed"))?;
    let host: String = stele_audit::log::host_name()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let host = if host.is_empty() {
        "host".to_string()
    } else {
        host
    };
    Ok(format!("stele/{host}/{}", hex::encode(b)))
}
