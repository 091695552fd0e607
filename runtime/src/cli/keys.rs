//! `stele keys init|show`: the log signing key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::{generate_key_file, load_key_file, Signer as _};

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
    },
    /// Print the verifier key in signed-note form (give this to reviewers).
    Show {
        /// Key file [default: $STATE/keys/log.key].
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// Run `stele keys`.
pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Init { key, origin } => {
            // The key's folders are private (0700) and the key 0600,
            // whatever the umask.
            paths::private_umask();
            let path = std::path::absolute(key.unwrap_or_else(paths::default_key))?;
            let origin = match origin {
                Some(o) => {
                    check_origin(&o)?;
                    o
                }
                None => default_origin()?,
            };
            if let Some(dir) = path.parent() {
                paths::ensure_private_dir(dir)
                    .with_context(|| format!("creating {}", terminal_safe::path(dir)))?;
            }
            let signer = generate_key_file(&path, &origin)
                .with_context(|| format!("creating key {}", terminal_safe::path(&path)))?;
            crate::outln!("created {}", terminal_safe::path(&path));
            crate::outln!(
                "verifier key: {}",
                terminal_safe::line(&signer.verifier().to_string())
            );
        }
        KeysCommand::Show { key } => {
            let path = key.unwrap_or_else(paths::default_key);
            let signer = load_key_file(&path)?;
            crate::outln!("{}", terminal_safe::line(&signer.verifier().to_string()));
        }
    }
    Ok(ExitCode::SUCCESS)
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
