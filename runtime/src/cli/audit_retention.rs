//! `stele audit expire` and `stele audit hold …`: retention expiry and legal
//! holds (docs/retention.md). The classes and the hold officers come only
//! from the managed configuration: a `[retention]` table in the user's file
//! is refused, so a user can neither shorten retention nor appoint
//! themselves.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stele_audit::holds::HoldScope;
use stele_audit::retention::{leaf_time, parse_time, Retention, RetentionConfig};
use stele_audit::{AuditLog, LogOptions, Store};

use super::audit::{human_actor, LogArgs};
use crate::terminal_safe;

/// Arguments of `stele audit expire`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExpireArgs {
    /// Say what would be erased, erase nothing (and write nothing).
    #[arg(long)]
    pub dry_run: bool,
    /// Who runs the expiry [default: $USER] (a timer: e.g. `--user retention`).
    #[arg(long)]
    pub user: Option<String>,
    /// Print the plan and what was done as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

/// `stele audit hold` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold: blocks expiry, redaction and archival of what it
    /// covers until it is released.
    Place(PlaceArgs),
    /// Approve the release of a hold; the second approval, by a different
    /// hold officer, releases it (dual control).
    Release(ReleaseArgs),
    /// List the holds and their state (recorded as an audit read).
    List {
        /// Who is reading [default: $USER].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        /// The log.
        log: LogArgs,
    },
}

/// Arguments of `stele audit hold place`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlaceArgs {
    /// Hold one session's payloads.
    #[arg(long, conflicts_with_all = ["principal", "from"])]
    pub session: Option<String>,
    /// Hold every payload of one principal.
    #[arg(long, conflicts_with = "from")]
    pub principal: Option<String>,
    /// Hold payloads made from this time (YYYY-MM-DD or RFC 3339)…
    #[arg(long, requires = "until")]
    pub from: Option<String>,
    /// …until this time, exclusive.
    #[arg(long, requires = "from")]
    pub until: Option<String>,
    /// Why (matter, court order, ticket).
    #[arg(long)]
    pub reason: String,
    /// Who places it [default: $USER]; must be a hold officer.
    #[arg(long)]
    pub user: Option<String>,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

/// Arguments of `stele audit hold release`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReleaseArgs {
    /// The hold's id (the index of its `hold.place` entry).
    pub hold: u64,
    /// Why it may be released.
    #[arg(long)]
    pub reason: String,
    /// Who approves [default: $USER]; must be a hold officer.
    #[arg(long)]
    pub user: Option<String>,
    #[command(flatten)]
    /// The log.
    pub log: LogArgs,
}

/// The retention settings in force: the managed file's `[retention]` and
/// its digest. A `[retention]` in the user's file is an error.
fn managed_retention() -> anyhow::Result<(RetentionConfig, String, PathBuf)> {
    let layers = crate::config::load()?;
    if let Some((p, u)) = &layers.user {
        if u.retention.is_some() {
            anyhow::bail!(
                "{}: [retention] is set only in the managed configuration ({}); a user's file cannot change retention or hold officers",
                terminal_safe::path(p),
                crate::config::MANAGED_PATH
            );
        }
    }
    let Some((path, file, digest)) = layers.managed else {
        anyhow::bail!(
            "no managed configuration ({}): retention classes and hold officers are set only there (docs/retention.md)",
            crate::config::MANAGED_PATH
        );
    };
    let Some(r) = file.retention else {
        anyhow::bail!(
            "{}: no [retention] table: retention classes and hold officers are set there (docs/retention.md)",
            terminal_safe::path(&path)
        );
    };
    Ok((r, format!("sha256:{digest}"), path))
}

/// Refuse unless `principal` is a hold officer of the managed configuration.
fn officer(cfg: &RetentionConfig, principal: &str, path: &std::path::Path) -> anyhow::Result<()> {
    if cfg.hold_officers.iter().any(|o| o == principal) {
        return Ok(());
    }
    anyhow::bail!(
        "{} is not a hold officer: only the principals in retention.hold_officers of {} may place or release legal holds",
        terminal_safe::line(principal),
        terminal_safe::path(path)
    )
}

fn open_log(log: &LogArgs) -> anyhow::Result<AuditLog> {
    let (db, key) = (log.db(), log.key());
    let signer = super::state::signing_key(&key)?;
    super::state::existing_log(&db)?;
    Ok(AuditLog::open(&db, signer, LogOptions::default())?)
}

/// Run `stele audit expire`.
pub fn expire(a: ExpireArgs) -> anyhow::Result<ExitCode> {
    let (cfg, digest, path) = managed_retention()?;
    let retention = Retention::new(&cfg, digest)
        .map_err(|e| anyhow::anyhow!("{}: {e}", terminal_safe::path(&path)))?;
    let actor = human_actor(a.user.clone())?;
    let now = time::OffsetDateTime::now_utc();
    let plan = if a.dry_run {
        let db = a.log.db();
        super::state::existing_log(&db)?;
        stele_audit::retention_plan::plan(&Store::open(&db)?, &retention, now)?
    } else {
        // The plan is made on the writer's own state (nothing else can
        // write meanwhile: one writer).
        let log = open_log(&a.log)?;
        let plan = stele_audit::retention_plan::plan(&log.store()?, &retention, now)?;
        let receipts = stele_audit::retention_plan::execute(&log, &plan, &actor);
        log.close()?;
        let receipts = receipts?;
        report(&plan, a.json, Some(&receipts))?;
        return Ok(ExitCode::SUCCESS);
    };
    report(&plan, a.json, None)?;
    Ok(ExitCode::SUCCESS)
}

fn report(
    plan: &stele_audit::retention_plan::Plan,
    json: bool,
    done: Option<&[stele_audit::Receipt]>,
) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({
            "now": plan.now,
            "config": plan.config,
            "dry_run": done.is_none(),
            "unclassed": plan.unclassed,
            "classes": plan.classes.iter().map(|c| serde_json::json!({
                "class": c.class,
                "retention": c.retention,
                "before": c.before,
                "due": c.due.len(),
                "held": c.held.iter().map(|(d, h)| serde_json::json!({"commit": d.commit, "entry": d.maker, "hold": h})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "entries": done.map(|r| r.iter().map(|r| r.seq).collect::<Vec<_>>()),
        });
        return super::json::line(&v);
    }
    let verb = if done.is_some() {
        "erased"
    } else {
        "would erase"
    };
    if plan.classes.is_empty() {
        crate::outln!("nothing is past its retention ({})", plan.now);
    }
    for c in &plan.classes {
        crate::outln!(
            "class {} ({}): {verb} {} payload(s) made before {}; {} held",
            terminal_safe::line(&c.class),
            terminal_safe::line(&c.retention),
            c.due.len(),
            c.before,
            c.held.len()
        );
        for (d, h) in &c.held {
            crate::outln!(
                "  kept under legal hold {h}: {} (entry {})",
                terminal_safe::line(&d.commit),
                d.maker
            );
        }
    }
    if let Some(r) = done {
        let seqs: Vec<String> = r.iter().map(|r| r.seq.to_string()).collect();
        if !seqs.is_empty() {
            crate::outln!("payload.expiry entries: {}", seqs.join(", "));
        }
    }
    Ok(())
}

/// Run `stele audit hold …`.
pub fn hold(cmd: HoldCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HoldCommand::Place(a) => {
            let (cfg, digest, path) = managed_retention()?;
            let actor = human_actor(a.user.clone())?;
            officer(&cfg, &actor.principal, &path)?;
            let scope = match (a.session, a.principal, a.from, a.until) {
                (Some(s), None, None, None) => HoldScope::Session(s),
                (None, Some(p), None, None) => HoldScope::Principal(p),
                (None, None, Some(f), Some(u)) => {
                    let t = |s: &str, flag: &str| {
                        parse_time(s)
                            .map(leaf_time)
                            .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
                    };
                    HoldScope::Range {
                        from: t(&f, "from")?,
                        until: t(&u, "until")?,
                    }
                }
                _ => anyhow::bail!(
                    "name what to hold: --session ID, --principal NAME, or --from TIME --until TIME"
                ),
            };
            let log = open_log(&a.log)?;
            let r = log.place_hold_blocking(scope.clone(), a.reason, Some(digest), actor);
            log.close()?;
            let r = r?;
            crate::outln!(
                "legal hold {} placed on {}",
                r.seq,
                terminal_safe::line(&scope.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        HoldCommand::Release(a) => {
            let (cfg, digest, path) = managed_retention()?;
            let actor = human_actor(a.user.clone())?;
            officer(&cfg, &actor.principal, &path)?;
            let log = open_log(&a.log)?;
            let r = log.release_hold_blocking(a.hold, a.reason, Some(digest), actor);
            log.close()?;
            let r = r?;
            let book = stele_audit::retention_plan::holds_of(&Store::open(&a.log.db())?)?;
            let released = book
                .holds
                .get(&a.hold)
                .is_some_and(|h| h.released.is_some());
            if released {
                crate::outln!("legal hold {} released (entry {})", a.hold, r.seq);
            } else {
                crate::outln!(
                    "release of legal hold {} approved (entry {}); a second hold officer must approve it too",
                    a.hold,
                    r.seq
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        HoldCommand::List { user, log } => {
            let (db, key) = (log.db(), log.key());
            let l = super::audit::open_for_read(
                &db,
                &key,
                user,
                serde_json::json!({"command": "hold list"}),
            )?;
            let book = stele_audit::retention_plan::holds_of(&l.store()?)
                .context("reading the legal holds")?;
            l.close()?;
            if book.holds.is_empty() {
                crate::outln!("no legal holds");
            }
            for h in book.holds.values() {
                let state = match (&h.released, &h.first_approval) {
                    (Some(r), _) => format!("released by entry {r}"),
                    (None, Some((p, at))) => format!(
                        "in force; release approved once, by {} (entry {at})",
                        terminal_safe::line(p)
                    ),
                    (None, None) => "in force".to_string(),
                };
                crate::outln!(
                    "hold {} on {} by {}: {} — {}",
                    h.id,
                    terminal_safe::line(&h.scope.to_string()),
                    terminal_safe::line(&h.placed_by),
                    terminal_safe::line(&h.reason),
                    state
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
