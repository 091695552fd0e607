//! `stele serve`: open the log, the policy, the store; listen; answer until
//! SIGINT or SIGTERM. Anything that does not open refuses to start (fail
//! closed), with a message naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use stele_policy::Bundle;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::sessions::approvals::Pending;
use crate::sessions::manager::Manager;
use crate::state::AppState;

/// How `stele serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The server's configuration file [default: built-in defaults, no workspaces].
    pub config: Option<PathBuf>,
    /// Listen here instead of `server.listen`.
    pub listen: Option<SocketAddr>,
}

/// The configuration `opts` names.
pub fn load_config(config: Option<&std::path::Path>) -> Result<ServerConfig, ServerError> {
    match config {
        Some(p) => ServerConfig::load(p),
        None => Ok(ServerConfig::default()),
    }
}

fn start_error(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Start(format!("{what}: {e:#}"))
}

/// Open everything the server needs; the shared state. The store's
/// connections (PostgreSQL) live on `rt`, the runtime that serves.
pub fn open(
    config: ServerConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<Arc<AppState>, ServerError> {
    let (db, key) = (config.db(), config.key());
    let signer = stele_runtime::cli::state::signing_key(&key)
        .map_err(|e| start_error("the log's signing key", e))?;
    let log = stele_runtime::session::open_log(&db, signer.clone())
        .map_err(|e| start_error("the audit log", e))?;
    let witness = witness_key(&key, signer.name())?;
    let located = stele_runtime::policy_location::resolve(config.server.policy.as_deref())
        .map_err(|e| start_error("the policy bundle", e))?;
    let bundle =
        Arc::new(Bundle::load(&located.path).map_err(|e| {
            start_error(&format!("the policy bundle {}", located.path.display()), e)
        })?);
    let store = rt.block_on(crate::store::open::open(&config))?;
    let oidc = config
        .oidc
        .clone()
        .map(crate::oidc::Oidc::new)
        .transpose()?;
    let webhooks = crate::sessions::webhook::Webhooks::start(
        &config.webhook,
        log.clone(),
        bundle.digest().to_string(),
        store.clone(),
    )
    .map_err(|e| start_error("webhooks", e))?;
    Ok(Arc::new(AppState {
        webhooks,
        oidc,
        throttle: crate::auth::throttle::Throttle::default(),
        login_links: Default::default(),
        sessions: Manager::new(config.server.max_sessions),
        pending: Arc::new(Pending::default()),
        admin_changes: tokio::sync::Mutex::new(()),
        config,
        store,
        log,
        signer: crate::state::LogSigner(signer),
        witness: crate::state::LogSigner(witness),
        bundle,
    }))
}

/// The server's witness key, next to its log key (`<key>.witness`), made
/// on first start: it cosigns the checkpoints of the workers' logs it
/// accepts (docs/server.md "Workers: shipping").
fn witness_key(
    key: &std::path::Path,
    origin: &str,
) -> Result<Arc<dyn stele_attest::Signer>, ServerError> {
    let mut path = key.as_os_str().to_os_string();
    path.push(".witness");
    let path = std::path::PathBuf::from(path);
    let signer = if path.exists() {
        stele_attest::load_key_file(&path)
    } else {
        stele_attest::generate_key_file(&path, &format!("{origin}/witness"))
    }
    .map_err(|e| start_error("the server's witness key", e))?;
    Ok(Arc::new(signer))
}

/// `stele serve --migrate`: bring the store's schema up to date and exit
/// (the only way a PostgreSQL store is migrated; SQLite's is also migrated
/// whenever it is opened).
pub fn migrate(
    config: Option<&std::path::Path>,
) -> Result<crate::store::open::Migrated, ServerError> {
    let config = load_config(config)?;
    host_runtime()?.block_on(crate::store::open::migrate(&config))
}

/// A one-thread runtime for a command run on the server's host
/// (`--migrate`, `stele user`, `stele token`): the store's connections live
/// on it for the command's length.
pub(crate) fn host_runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| start_error("the async runtime", e))
}

/// Run the server until SIGINT or SIGTERM.
pub fn serve(opts: ServeOptions) -> Result<(), ServerError> {
    serve_with(opts, crate::desktop::Desktop::No)
}

/// [`serve`], for the person running it too when `desktop` says so
/// (`stele serve --open`: loopback only, a one-time login link opened in
/// the browser).
pub fn serve_with(opts: ServeOptions, desktop: crate::desktop::Desktop) -> Result<(), ServerError> {
    let began = Instant::now();
    let mut config = load_config(opts.config.as_deref())?;
    if let Some(l) = opts.listen {
        config.server.listen = l;
    }
    let listen = config.server.listen;
    if desktop != crate::desktop::Desktop::No && !listen.ip().is_loopback() {
        return Err(ServerError::Start(format!(
            "--open: the desktop server listens on loopback only (127.0.0.1, ::1), not {listen}; \
             give --listen 127.0.0.1:PORT"
        )));
    }
    // Read before anything opens: a bad certificate or key stops the server.
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(ServerError::Start(format!(
            "--listen {listen}: plain HTTP is served only on loopback (127.0.0.1, ::1), for a \
             reverse proxy that terminates TLS; elsewhere set server.tls_cert and server.tls_key"
        )));
    }
    let defaults = match &desktop {
        crate::desktop::Desktop::Open { workspace, .. } => {
            Some(crate::desktop::defaults(&mut config, workspace.as_deref())?)
        }
        crate::desktop::Desktop::No => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| start_error("the async runtime", e))?;
    let state = open(config, &rt)?;
    refresh_exports_index(&state.config.db());
    let hosted = crate::feed::HostedFeed::start(&state.config, &state.log)?;
    let serving = state.clone();
    let served = rt.block_on(async move {
        // Accounts and tokens made on the host while the server was down
        // are recorded before anyone can use them; then, while it runs, as
        // they come.
        crate::admin_record::record_admin_changes(&serving).await?;
        // SIGTERM and SIGINT are caught from here on (also while sessions resume).
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::shutdown::signalled().await;
            let _ = stop_tx.send(true);
        });
        let watcher = serving.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::admin_record::POLL).await;
                if let Err(e) = crate::admin_record::record_admin_changes(&watcher).await {
                    tracing::warn!("recording account and token changes: {e}");
                }
            }
        });
        // Sessions the server was running when it stopped resume now, from
        // the log, before anyone can ask for them.
        let resumed = crate::sessions::restart::resume_at_start(&serving).await?;
        if resumed > 0 {
            stele_runtime::errln!(
                "stele serve: resumed {resumed} session(s) that were running when the server stopped"
            );
        }
        // Runs missed while the server was down are recorded before it listens.
        crate::scheduler::start(serving.clone()).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| start_error(&format!("listening on {listen}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| start_error("the listening address", e))?;
        if !serving.bundle.permits_server_actions() {
            // Deny by default: the server runs, and refuses every request.
            stele_runtime::errln!(
                "stele serve: warning: the policy bundle grants none of the server's actions \
                 (session.start, session.view, …): every request will be refused (403); add \
                 the server roles (policies/README.md)"
            );
        }
        stele_runtime::errln!(
            "stele serve: listening on {}://{bound} (ready after {} ms; log {}, store {})",
            if tls.is_some() { "https" } else { "http" },
            began.elapsed().as_millis(),
            serving.config.db().display(),
            serving.config.store_shown()
        );
        if let crate::desktop::Desktop::Open { link_ttl, .. } = desktop {
            banner(&serving, defaults.as_ref());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let user = crate::desktop::account(&serving).await?;
            let url =
                crate::desktop::link(&serving, &user, &format!("{scheme}://{bound}"), link_ttl)
                    .await?;
            stele_runtime::errln!(
                "stele serve: log in as {} with this one-time link (it works once, for {} s):",
                user.name,
                link_ttl.as_secs()
            );
            stele_runtime::outln!("{url}");
            if !crate::desktop::open_browser(&url) {
                stele_runtime::errln!(
                    "stele serve: no program to open a browser with ({}); open the link yourself",
                    crate::desktop::BROWSER_ENV
                );
            }
        }
        let app = crate::routes::router(serving.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let stopped = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut serving_http = match tls {
            Some(tls) => tokio::spawn(serve_tls(listener, tls, app, stopped)),
            // No Nagle delay: a streamed answer (a download, an event) goes
            // out in several writes, and would otherwise wait for the
            // client's delayed ACK (~40 ms) between them.
            None => tokio::spawn(async move {
                axum::serve(
                    axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::warn!("TCP_NODELAY: {e}");
                        }
                    }),
                    app,
                )
                .with_graceful_shutdown(stopped)
                    .await
                    .map_err(|e| start_error("serving", e))
            }),
        };
        let mut signal = stop_rx;
        let mut served = None;
        tokio::select! {
            r = &mut serving_http => served = Some(r),
            _ = signal.wait_for(|s| *s) => {}
        }
        if !*signal.borrow() {
            // Serving ended by itself: that is an error, nothing to pause for.
            return served.map_or(Ok(()), joined);
        }
        // The listener stops accepting; the sessions pause at their safe points.
        let grace = std::time::Duration::from_secs(serving.config.server.shutdown_grace_secs);
        let paused = crate::shutdown::pause_sessions(&serving, grace).await;
        stele_runtime::errln!(
            "stele serve: stopping; {paused} session(s) paused, resumable (they resume when the server starts)"
        );
        if let Some(r) = served {
            return joined(r);
        }
        // Event streams of parked sessions never end by themselves: they get
        // a moment, then the connections are dropped.
        match tokio::time::timeout(std::time::Duration::from_secs(2), &mut serving_http).await {
            Ok(r) => joined(r),
            Err(_) => {
                serving_http.abort();
                Ok(())
            }
        }
    });
    // The feed stops with the server (even when serving failed), before
    // the log is closed: it holds the log as the writer of its entries.
    if let Some(f) = hosted {
        f.stop();
    }
    served?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // Every session that reached a safe point has let the log go, and it is
    // closed (`log.close`). A session parked on an approval keeps its thread
    // on the question the shutdown withdrew (recorded, its intent closed:
    // [`crate::sessions::withdraw`]); that thread never writes again, so the
    // log is closed through the shared handle and the process exit ends it.
    match Arc::try_unwrap(state) {
        Ok(state) => match Arc::try_unwrap(state.log) {
            Ok(log) => {
                log.close()?;
            }
            Err(log) => {
                log.close_shared()?;
            }
        },
        Err(state) => {
            state.log.close_shared()?;
        }
    }
    Ok(())
}

/// The desktop server's banner: the workspaces the person may use and the
/// policy deciding what their sessions may do (nothing silently widens).
fn banner(state: &AppState, defaults: Option<&crate::desktop::DesktopDefaults>) {
    use crate::desktop::WorkspaceOrigin;
    let added = defaults.and_then(|d| d.workspace.as_ref());
    for (name, ws) in &state.config.workspace {
        let from = match added {
            Some((p, WorkspaceOrigin::Flag)) if *p == ws.path => " (--workspace)",
            Some((p, WorkspaceOrigin::StartedIn)) if *p == ws.path => {
                " (the folder `stele serve --open` was started in; --workspace DIR to choose)"
            }
            _ => " (from the configuration)",
        };
        stele_runtime::errln!(
            "stele serve: workspace {name}: {}{from}, teams {:?}",
            ws.path.display(),
            ws.teams
        );
    }
    if state.config.workspace.is_empty() {
        stele_runtime::errln!(
            "stele serve: no workspace: the configuration names none (add [workspace.NAME])"
        );
    }
    match defaults.and_then(|d| d.policy.as_ref()) {
        Some(dir) => stele_runtime::errln!(
            "stele serve: policy: the built-in desktop bundle ({}): {}",
            dir.display(),
            crate::desktop::DESKTOP_POLICY_SUMMARY
        ),
        None => stele_runtime::errln!(
            "stele serve: policy: {} (its rules decide what sessions may do)",
            state.config.server.policy.as_ref().map_or_else(
                || "the search order's bundle".to_string(),
                |p| p.display().to_string()
            )
        ),
    }
}

/// The result of the serving task.
fn joined(r: Result<Result<(), ServerError>, tokio::task::JoinError>) -> Result<(), ServerError> {
    r.map_err(|e| ServerError::Task(e.to_string()))?
}

/// Bring the log's exports index (`<db>.exports`) up to date, on its own
/// thread. Every session's workspace check reads that index and scans the
/// entries after it; only an ending session advanced it, so on a log grown
/// since (by other commands, or a large log this server had not seen) each
/// session start scanned all of it: ~7 s per start at 1,000,000 entries
/// on the 2-core test machine (`scripts/bench-server`). Off the start-up
/// path: sessions started before it is done scan as before.
fn refresh_exports_index(db: &std::path::Path) {
    let db = db.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("exports-index".into())
        .spawn(move || stele_runtime::isolation::exports::refresh_index(&db));
    if let Err(e) = spawned {
        tracing::warn!("the exports index is not refreshed at start: {e}");
    }
}

/// Serve HTTPS on `listener` until SIGINT or SIGTERM.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let std = listener
        .into_std()
        .map_err(|e| start_error("the listening socket", e))?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        stopped.await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    axum_server::tls_rustls::from_tcp_rustls(std, config)
        .map_err(|e| start_error("the listening socket", e))?
        .handle(handle)
        .serve(app)
        .await
        .map_err(|e| start_error("serving", e))
}
