//! `stele workers revoke NAME`: an admin revokes a worker's log key on a
//! server (through its API; recorded there). The server then refuses every
//! batch of that worker's log (docs/server.md "Workers: shipping").

use std::process::ExitCode;

use stele_runtime::outln;
use stele_server::sessions::remote::log_wire::Revoked;

use crate::api_client::{runtime, ApiClient, ServerArgs};

/// Arguments of `stele workers`.
#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WorkersCommand,
}

/// `stele workers` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WorkersCommand {
    /// Revoke a worker's log key: the server takes no more of its log.
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        /// The worker's name (as `GET /api/v1/worker` lists it).
        name: String,
    },
}

/// Run `stele workers`.
pub fn run(args: WorkersArgs, top: &ServerArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match args.command {
        WorkersCommand::Revoke { server, name } => {
            let client = ApiClient::from_args(&ServerArgs {
                server: server.server.or_else(|| top.server.clone()),
                token_file: server.token_file.or_else(|| top.token_file.clone()),
            })?;
            let path = format!("/api/v1/admin/workers/{name}/revoke");
            let r: Revoked = rt.block_on(client.post(&path, &serde_json::json!({})))?;
            outln!(
                "stele: worker {}'s log key revoked{} (log {}, key {}); the server refuses its batches",
                r.worker,
                if r.newly { "" } else { " already" },
                r.origin,
                r.verifier
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
