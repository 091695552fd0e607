//! `stele witness …`: run a C2SP tlog-witness for stele logs, and print a
//! witness key's verifier form (type 0x04) for `stele-verify --witness`.
//!
//! A witness cosigns a log's checkpoint only after checking it is consistent
//! with the newest one it cosigned before, and it persists that newest
//! checkpoint before answering, so a log cannot later show it a shorter or
//! different history (rollback, fork) without being refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::{load_key_file, NoteVerifier, Signer};
use stele_audit::witness::{serve, Witness};

/// Arguments of `stele witness`.
#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WitnessCommand,
}

/// `stele witness` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Serve POST /add-checkpoint.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:7380.
        #[arg(long)]
        listen: String,
        /// The witness's private key file (its name is the witness name).
        #[arg(long)]
        key: PathBuf,
        /// Verifier key of a log this witness accepts; repeatable.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
        /// State file (newest checkpoint per log) [default: <key>.state.json].
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Print the witness verifier key (cosignature/v1) of a key file.
    Vkey {
        /// The witness's private key file.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Run `stele witness`.
pub fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WitnessCommand::Vkey { key } => {
            let k = load_key_file(&key)?;
            crate::outln!(
                "{}",
                crate::terminal_safe::line(&CosignatureVerifier::of(&k).to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Serve {
            listen,
            key,
            logs,
            state,
        } => {
            // The witness's state (the newest checkpoint of each log it
            // cosigned) is private whatever the umask.
            crate::paths::private_umask();
            let signer: Arc<dyn Signer> = Arc::new(load_key_file(&key)?);
            let logs = logs
                .iter()
                .map(|l| NoteVerifier::parse(l))
                .collect::<Result<Vec<_>, _>>()
                .context("--log")?;
            let state = state.unwrap_or_else(|| {
                let mut s = key.clone().into_os_string();
                s.push(".state.json");
                PathBuf::from(s)
            });
            if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::paths::ensure_private_dir(dir)?;
            }
            let vkey = CosignatureVerifier::of(signer.as_ref());
            let w = Arc::new(
                Witness::new(signer, logs, state.clone())
                    .with_context(|| format!("loading {}", crate::terminal_safe::path(&state)))?,
            );
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                crate::errln!(
                    "stele witness {} listening on {}",
                    crate::terminal_safe::line(&vkey.to_string()),
                    listener.local_addr()?
                );
                tokio::select! {
                    r = serve(listener, w) => r.context("serving"),
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
