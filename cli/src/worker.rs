//! `stele worker`: run sessions a server queues (docs/server.md "Workers").

use std::process::ExitCode;

/// Arguments of `stele worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The server whose queued sessions this worker runs (e.g. https://stele.example.com).
    #[arg(long)]
    pub server: String,
    /// A worker token (`stele token create --user ACCOUNT --scope worker`).
    #[arg(long, env = "STELE_WORKER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Most sessions run at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub capacity: u64,
    /// The worker's name, as the server lists it [default: the host's name].
    #[arg(long)]
    pub name: Option<String>,
}

/// Run `stele worker` until SIGTERM has drained it.
pub fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let name = match args.name {
        Some(n) => n,
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".into()),
    };
    stele_server::sessions::remote::agent::run(
        stele_server::sessions::remote::agent::WorkerOptions {
            server: args.server,
            token: args.token,
            capacity: usize::try_from(args.capacity)?,
            name,
            db: stele_runtime::paths::default_db(),
            key: stele_runtime::paths::default_key(),
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
