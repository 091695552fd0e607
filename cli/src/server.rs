//! `stele serve`, `stele user add`, `stele token create`: arguments and
//! terminal output over `stele_server`.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_server::store::Role;

/// Arguments of `stele serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen on this address (plain HTTP: loopback only) [default: `server.listen`, else 127.0.0.1:8650].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The server's configuration file (docs/server.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The desktop case: listen on loopback, log in the person running the
    /// server (the OS user's account, admin of team `local`, made if absent)
    /// with a one-time link printed and opened in the browser ($STELE_BROWSER,
    /// else xdg-open; empty: only print it). Without a configured workspace,
    /// workspace `local` is the folder it was started in (see --workspace);
    /// without a configured policy, the built-in desktop bundle decides
    /// (printed at start; docs/server.md "On your own machine").
    #[arg(long)]
    pub open: bool,
    /// With --open: the folder of workspace `local` (team `local`) [default:
    /// the folder `stele serve --open` was started in, when the
    /// configuration names no workspace]. Without a configured policy (and no
    /// ~/.config/stele/policy or /etc/stele/policy), the built-in desktop
    /// bundle decides (policies/desktop: the strict default's protections —
    /// secrets, stele's state and the network refused; deletes, outbox/
    /// writes and MCP calls ask first); the banner says which.
    #[arg(long, requires = "open")]
    pub workspace: Option<PathBuf>,
    /// With --open: seconds the login link works.
    #[arg(long, default_value_t = 300, requires = "open", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub link_ttl_secs: u64,
    /// Bring the store's schema up to date and exit (the only way a
    /// PostgreSQL store, `[store] url`, is migrated; docs/server.md "The store").
    #[arg(long, conflicts_with_all = ["open", "listen"])]
    pub migrate: bool,
}

/// Arguments of `stele user`.
#[derive(Debug, clap::Args)]
pub struct UserArgs {
    /// The server's configuration file (it says where server.db is).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// `stele user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a local account; prints a one-time set-up link unless --password-stdin.
    Add {
        /// The account name (the principal policies name).
        name: String,
        /// A team (repeat for several).
        #[arg(long = "team", required = true)]
        teams: Vec<String>,
        /// member, approver, reviewer or admin.
        #[arg(long, default_value = "member", value_parser = parse_role)]
        role: Role,
        /// Read the password from stdin instead of printing a set-up link.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Arguments of `stele token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The server's configuration file (it says where server.db is).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `stele token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token for an account; printed once, kept only as its SHA-256.
    Create {
        /// The account.
        #[arg(long)]
        user: String,
        /// Days it works.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// A name for it (what it is for).
        #[arg(long, default_value = "api")]
        name: String,
        /// What it may be used for: read, run, approve, admin (comma-separated),
        /// or `worker` alone (a `stele worker`'s token: the worker API only).
        #[arg(long, default_value = "read,run,approve")]
        scope: String,
    },
    /// List API tokens: id, account, label, scopes, created, expires, state
    /// (live, expired, revoked, unrecorded) — never a token or its hash.
    List {
        /// Only this account's tokens [default: every account's].
        #[arg(long)]
        user: Option<String>,
        /// One JSON object per token, one per line, on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token by its id (printed by `token create`, in its
    /// `token.create` entry): it stops working at once; the server records
    /// the revocation before the first request it refuses.
    Revoke {
        /// The token's id (12 hex digits).
        id: String,
    },
}

/// Where a token stands at `now`, in one word.
fn token_state(t: &stele_server::store::credentials::TokenInfo, now: i64) -> &'static str {
    if t.revoked.is_some() {
        "revoked"
    } else if !t.recorded {
        // Not yet in the log: it works once the server records it.
        "unrecorded"
    } else if t.expires <= now {
        "expired"
    } else {
        "live"
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?}: a role is member, approver, reviewer or admin"))
}

/// Run `stele serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.migrate {
        let m = stele_server::serve::migrate(args.config.as_deref())?;
        if m.from == m.to {
            stele_runtime::errln!(
                "stele serve: the store {} is up to date (schema version {})",
                m.store,
                m.to
            );
        } else {
            stele_runtime::errln!(
                "stele serve: migrated the store {} from schema version {} to {}",
                m.store,
                m.from,
                m.to
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let desktop = if args.open {
        stele_server::desktop::Desktop::Open {
            link_ttl: std::time::Duration::from_secs(args.link_ttl_secs),
            workspace: args.workspace,
        }
    } else {
        stele_server::desktop::Desktop::No
    };
    stele_server::serve_with(
        stele_server::ServeOptions {
            config: args.config,
            listen: args.listen,
        },
        desktop,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Run `stele user`.
pub fn user(args: UserArgs) -> anyhow::Result<ExitCode> {
    let config = stele_server::serve::load_config(args.config.as_deref())?;
    match args.command {
        UserCommand::Add {
            name,
            teams,
            role,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut p = String::new();
                std::io::stdin()
                    .read_to_string(&mut p)
                    .context("reading the password from stdin")?;
                Some(p.trim_end_matches(['\n', '\r']).to_string())
            } else {
                None
            };
            match stele_server::admin::add_user(&config, &name, teams, role, password.as_deref())? {
                stele_server::admin::Added::WithPassword => {
                    stele_runtime::errln!("stele: account {name} added, password set")
                }
                stele_server::admin::Added::SetupLink(link) => {
                    stele_runtime::errln!(
                        "stele: account {name} added; give them this one-time set-up link \
                         (valid 72 hours, shown only now):"
                    );
                    stele_runtime::outln!("{link}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `stele token`.
pub fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let config = stele_server::serve::load_config(args.config.as_deref())?;
    match args.command {
        TokenCommand::Create {
            user,
            days,
            name,
            scope,
        } => {
            let scopes = stele_server::auth::scopes::Scopes::parse(&scope)
                .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let (token, id, _) =
                stele_server::admin::create_token(&config, &user, &name, scopes, days)?;
            stele_runtime::errln!(
                "stele: token {id} for {user} ({scopes}), valid {days} days; shown only now, \
                 kept only as its hash:"
            );
            stele_runtime::outln!("{token}");
        }
        TokenCommand::List { user, json } => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let tokens = stele_server::admin::list_tokens(&config, user.as_deref())?;
            if !json && tokens.is_empty() {
                stele_runtime::errln!("stele: no tokens");
            }
            if !json && !tokens.is_empty() {
                stele_runtime::outln!(
                    "{:<12}  {:<16}  {:<16}  {:<22}  {:<20}  {:<20}  STATE",
                    "ID",
                    "USER",
                    "LABEL",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES"
                );
            }
            for t in tokens {
                let state = token_state(&t, now);
                if json {
                    let v = serde_json::json!({
                        "id": t.id, "user": t.user, "label": t.label,
                        "scopes": t.scopes.split(',').collect::<Vec<_>>(),
                        "created": rfc3339(t.created), "expires": rfc3339(t.expires),
                        "revoked": t.revoked.map(rfc3339), "state": state,
                    });
                    stele_runtime::outln!("{}", stele_runtime::terminal_safe::json_line(&v));
                } else {
                    // Labels and names were typed by people: shown escaped.
                    stele_runtime::outln!(
                        "{:<12}  {:<16}  {:<16}  {:<22}  {:<20}  {:<20}  {state}",
                        t.id,
                        stele_runtime::terminal_safe::line(&t.user),
                        stele_runtime::terminal_safe::line(&t.label),
                        t.scopes,
                        rfc3339(t.created),
                        rfc3339(t.expires)
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let user = stele_server::admin::revoke_token(&config, &id)?;
            stele_runtime::errln!(
                "stele: token {id} of {user} revoked (recorded by the server before it refuses it)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
