//! `stele keys init|show`: the log signing key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_attest::{generate_key_file, load_key_file, Signer as _};

use crate::paths;

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
            let path = key.unwrap_or_else(paths::default_key);
            let origin = match origin {
                Some(o) => o,
                None => default_origin()?,
            };
            let signer = generate_key_file(&path, &origin)
                .with_context(|| format!("creating key {}", path.display()))?;
            println!("created {}", path.display());
            println!("verifier key: {}", signer.verifier());
        }
        KeysCommand::Show { key } => {
            let path = key.unwrap_or_else(paths::default_key);
            let signer = load_key_file(&path)?;
            println!("{}", signer.verifier());
        }
    }
    Ok(ExitCode::SUCCESS)
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
