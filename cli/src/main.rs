//! The `stele` binary: argument parsing and terminal output over the
//! runtime (`stele run`, `chat`, `audit`, …) and the server (`stele serve`,
//! `user`, `token`).
#![deny(clippy::print_stdout, clippy::print_stderr)]

// Used by the server-client commands (`--server URL run`, `schedule`).
#[allow(dead_code)]
mod api_client;
mod remote_approve;
mod remote_print;
mod remote_run;
mod schedule;
mod server;
mod sse;
mod worker;
mod workers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stele_runtime::cli::{self, Command};

/// stele: an audit-first agent runtime.
#[derive(Debug, Parser)]
#[command(
    name = "stele",
    version,
    about = "stele: an agent that works in a folder you grant it, under policy, and proves \
             afterwards what it did (every model request, tool call and file access decided \
             and signed into an append-only log before it happens)",
    after_help = "First time here? `stele doctor` says what is set up and what is missing; \
                  `stele demo` runs the whole product with no model account.",
    long_about = None
)]
struct Cli {
    /// A stele server to act on (docs/server.md).
    #[command(flatten)]
    server: Remote,
    /// What to do.
    #[command(subcommand)]
    command: Top,
}

/// `stele --server URL run|watch …`.
#[derive(Debug, clap::Args)]
struct Remote {
    /// Run `run` on this stele server instead of here, and follow `watch ID` there (e.g.
    /// https://stele.example.com; `watch` also reads STELE_SERVER, `run` never does).
    #[arg(long)]
    server: Option<String>,
    /// With --server: a file holding an API token (`stele token create`) [env:
    /// STELE_TOKEN_FILE; or the token itself in STELE_TOKEN].
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

impl Remote {
    /// Whether a server or token was named on the command line.
    fn named(&self) -> bool {
        self.server.is_some() || self.token_file.is_some()
    }

    fn args(&self) -> api_client::ServerArgs {
        api_client::ServerArgs {
            server: self.server.clone(),
            token_file: self.token_file.clone(),
        }
    }
}

/// The runtime's commands and the server's.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Top {
    #[command(flatten)]
    Local(Command),
    /// Run the team server: sessions over an HTTP API, approvals from anywhere (docs/server.md).
    Serve(server::ServeArgs),
    /// Manage the server's local accounts.
    User(server::UserArgs),
    /// Manage the server's API tokens.
    Token(server::TokenArgs),
    /// Follow a session on a server (`stele --server URL watch ID`): its events
    /// from the start, then live, until it ends; Ctrl-C detaches.
    Watch(remote_run::WatchArgs),
    /// Manage scheduled tasks on a server (through its API).
    Schedule(schedule::ScheduleArgs),
    /// Run sessions a server queues (`[workers] run = "remote"`), on this
    /// machine's own log; SIGTERM drains (docs/server.md "Workers").
    Worker(worker::WorkerArgs),
    /// Manage a server's workers (through its API): `revoke NAME` revokes a
    /// worker's log key (docs/server.md "Workers: shipping").
    Workers(workers::WorkersArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let command = match cli.command {
        Top::Watch(a) => return finish(remote_run::watch(&cli.server.args(), a)),
        // Only an explicit --server sends `run` elsewhere: a plain `stele run` runs here.
        Top::Local(Command::Run(a)) if cli.server.server.is_some() => {
            return finish(remote_run::run(&cli.server.args(), a))
        }
        Top::Schedule(a) => return finish(schedule::run(a, &cli.server.args())),
        Top::Workers(a) => return finish(workers::run(a, &cli.server.args())),
        Top::Worker(a) if !cli.server.named() => return finish(worker::worker(a)),
        _ if cli.server.named() => {
            return finish(Err(anyhow::anyhow!(
                "--server and --token-file go with `run`, `watch` and `schedule`, and `run` goes to a server \
                 only with --server (`stele --server URL run --workspace NAME \"task\"`)"
            )))
        }
        Top::Local(c) => c,
        Top::Serve(a) => return finish(server::serve(a)),
        Top::User(a) => return finish(server::user(a)),
        Top::Token(a) => return finish(server::token(a)),
        Top::Worker(a) => return finish(worker::worker(a)),
    };
    // Only commands that run an agent produce spans.
    let traced = matches!(
        command,
        Command::Run(_) | Command::Chat(_) | Command::Demo(_) | Command::Session(_)
    );
    let telemetry = if traced { init_telemetry() } else { None };
    let result = match command {
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Keys(args) => cli::keys::run(args),
        Command::Audit(args) => cli::audit::run(args),
        Command::Policy(args) => cli::policy::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Chat(args) => cli::chat::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Session(args) => cli::session::run(args),
        Command::Sandbox(args) => cli::sandbox::run(args),
        Command::Vm(args) => cli::vm::run(args),
        Command::Witness(args) => cli::witness::run(args),
    };
    // Flush the spans before exiting.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    finish(result)
}

/// The exit status of a command's result, its error printed.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    // Output that could not be written (other than to a closed pipe) must
    // not pass for a complete answer.
    if let Some(why) = stele_runtime::printing::failure() {
        stele_runtime::errln!("stele: error: {why}");
        return ExitCode::from(stele_runtime::printing::EXIT_OUTPUT_FAILED);
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            // Errors quote paths, names and text from the log, the model
            // and the workspace: shown escaped, on one line.
            stele_runtime::errln!(
                "stele: error: {}",
                stele_runtime::terminal_safe::line(&format!("{err:#}"))
            );
            // Each failure's code is in docs/exit-codes.md.
            ExitCode::from(cli::exit::code_of(&err))
        }
    }
}

/// OpenTelemetry export when configured; a problem with it is a warning, not fatal.
fn init_telemetry() -> Option<stele_runtime::telemetry::Telemetry> {
    match stele_runtime::telemetry::init() {
        Ok(t) => t,
        // The command itself reports a configuration it cannot read.
        Err(stele_runtime::telemetry::TelemetryError::Config(_)) => None,
        Err(e) => {
            stele_runtime::errln!("stele: warning: traces are not exported: {e}");
            None
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STELE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,fuse_backend_rs::transport=off")
    });
    // Colour codes only for a terminal: a log file or a pipe gets plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
