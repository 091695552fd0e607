//! `stele schedule add|list|rm`: scheduled tasks on a stele server, through
//! its API (docs/server.md, "Scheduled tasks"). The server checks the
//! expression and zone and decides who may manage schedules; its refusals
//! come back as errors naming what was wrong (non-zero exit).

use std::process::ExitCode;

use stele_protocol::{CatchUp, NewSchedule, Schedule, ScheduleList, UnattendedApprove};
use stele_runtime::outln;

use crate::api_client::{runtime, ApiClient, ServerArgs};

/// Arguments of `stele schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

/// `stele schedule` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule: each run is a session of yours, under the policy in force then.
    Add(AddArgs),
    /// List the schedules you may manage.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON (`ScheduleList`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule (its past runs stay on record).
    Rm {
        #[command(flatten)]
        server: ServerArgs,
        /// The schedule's id (`stele schedule list`).
        id: String,
    },
}

/// `stele schedule add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Cron expression: 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first).
    #[arg(long)]
    cron: String,
    /// IANA time zone the expression is read in (e.g. Europe/London) [default: UTC].
    #[arg(long)]
    tz: Option<String>,
    /// The server's workspace to run in.
    #[arg(long)]
    workspace: String,
    /// The task each run starts.
    #[arg(long)]
    task: String,
    /// Model as PROVIDER:NAME [default: the server's].
    #[arg(long)]
    model: Option<String>,
    /// Most model turns per run.
    #[arg(long)]
    max_steps: Option<u32>,
    /// An ask in an unattended run: queue (waits for a person until its deadline) or deny.
    #[arg(long, value_enum, default_value_t = Approve::Queue)]
    approve: Approve,
    /// Runs missed while the server was down: skip, or run-once now.
    #[arg(long, value_enum, default_value_t = CatchUpArg::Skip)]
    catch_up: CatchUpArg,
    /// Print the server's JSON (`Schedule`) instead of a line.
    #[arg(long)]
    json: bool,
}

/// `--approve`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Approve {
    Queue,
    Deny,
}

/// `--catch-up`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CatchUpArg {
    Skip,
    RunOnce,
}

const PATH: &str = "api/v1/schedules";

/// Run `stele schedule …`.
///
/// `top` is `stele --server URL --token-file F schedule …`: used where the
/// subcommand names no server or token of its own.
pub fn run(args: ScheduleArgs, top: &ServerArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let or_top = |own: &ServerArgs| ServerArgs {
        server: own.server.clone().or_else(|| top.server.clone()),
        token_file: own.token_file.clone().or_else(|| top.token_file.clone()),
    };
    match args.command {
        ScheduleCommand::Add(a) => {
            let client = ApiClient::from_args(&or_top(&a.server))?;
            let spec = NewSchedule {
                cron: a.cron,
                timezone: a.tz,
                workspace: a.workspace,
                task: a.task,
                model: a.model,
                max_steps: a.max_steps,
                approve: match a.approve {
                    Approve::Queue => UnattendedApprove::Queue,
                    Approve::Deny => UnattendedApprove::Deny,
                },
                catch_up: match a.catch_up {
                    CatchUpArg::Skip => CatchUp::Skip,
                    CatchUpArg::RunOnce => CatchUp::RunOnce,
                },
            };
            let s: Schedule = rt.block_on(client.post(PATH, &spec))?;
            if a.json {
                outln!("{}", serde_json::to_string(&s)?);
            } else {
                outln!(
                    "stele: schedule {} added: {:?} in {}, next run {}",
                    s.id,
                    s.spec.cron,
                    s.spec.timezone.as_deref().unwrap_or("UTC"),
                    s.next_run.as_deref().unwrap_or("never")
                );
            }
        }
        ScheduleCommand::List { server, json } => {
            let client = ApiClient::from_args(&or_top(&server))?;
            let l: ScheduleList = rt.block_on(client.get(PATH))?;
            if json {
                outln!("{}", serde_json::to_string(&l)?);
            } else if l.schedules.is_empty() {
                outln!("no schedules");
            } else {
                for s in &l.schedules {
                    outln!(
                        "{}  {}  {:?} {}  {}  next {}  {}",
                        s.id,
                        s.owner,
                        s.spec.cron,
                        s.spec.timezone.as_deref().unwrap_or("UTC"),
                        s.spec.workspace,
                        s.next_run.as_deref().unwrap_or("never"),
                        stele_runtime::terminal_safe::line(&s.spec.task)
                    );
                }
            }
        }
        ScheduleCommand::Rm { server, id } => {
            let client = ApiClient::from_args(&or_top(&server))?;
            if id.is_empty() || id.contains('/') {
                anyhow::bail!("{id:?} is not a schedule id (see `stele schedule list`)");
            }
            rt.block_on(client.delete(&format!("{PATH}/{id}")))?;
            outln!("stele: schedule {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
