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
use crate::store::sqlite::SqliteStore;

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

/// Open everything the server needs; the shared state.
pub fn open(config: ServerConfig) -> Result<Arc<AppState>, ServerError> {
    let (db, key) = (config.db(), config.key());
    let signer = stele_runtime::cli::state::signing_key(&key)
        .map_err(|e| start_error("the log's signing key", e))?;
    let log = stele_runtime::session::open_log(&db, signer.clone())
        .map_err(|e| start_error("the audit log", e))?;
    let located = stele_runtime::policy_location::resolve(config.server.policy.as_deref())
        .map_err(|e| start_error("the policy bundle", e))?;
    let bundle =
        Arc::new(Bundle::load(&located.path).map_err(|e| {
            start_error(&format!("the policy bundle {}", located.path.display()), e)
        })?);
    let store = SqliteStore::open(&config.store_path())?;
    let oidc = config
        .oidc
        .clone()
        .map(crate::oidc::Oidc::new)
        .transpose()?;
    Ok(Arc::new(AppState {
        oidc,
        throttle: crate::auth::throttle::Throttle::default(),
        sessions: Manager::new(config.server.max_sessions),
        pending: Pending::default(),
        admin_changes: tokio::sync::Mutex::new(()),
        config,
        store: Arc::new(store),
        log,
        signer: crate::state::LogSigner(signer),
        bundle,
    }))
}

/// Run the server until SIGINT or SIGTERM.
pub fn serve(opts: ServeOptions) -> Result<(), ServerError> {
    let began = Instant::now();
    let mut config = load_config(opts.config.as_deref())?;
    if let Some(l) = opts.listen {
        config.server.listen = l;
    }
    let listen = config.server.listen;
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| start_error("the async runtime", e))?;
    let state = open(config)?;
    let hosted = crate::feed::HostedFeed::start(&state.config, &state.log)?;
    let serving = state.clone();
    let served = rt.block_on(async move {
        // Accounts and tokens made on the host while the server was down
        // are recorded before anyone can use them; then, while it runs, as
        // they come.
        crate::admin_record::record_admin_changes(&serving).await?;
        let watcher = serving.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::admin_record::POLL).await;
                if let Err(e) = crate::admin_record::record_admin_changes(&watcher).await {
                    tracing::warn!("recording account and token changes: {e}");
                }
            }
        });
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
            serving.config.store_path().display()
        );
        let app =
            crate::routes::router(serving).into_make_service_with_connect_info::<SocketAddr>();
        match tls {
            Some(tls) => serve_tls(listener, tls, app).await,
            None => axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await
                .map_err(|e| start_error("serving", e)),
        }
    });
    // The feed stops with the server (even when serving failed), before
    // the log is closed: it holds the log as the writer of its entries.
    if let Some(f) = hosted {
        f.stop();
    }
    served?;
    drop(rt);
    // Sessions still running keep their threads; pausing them resumably on
    // shutdown is a later part of issue 18. The log closes when the last
    // holder lets it go (the process exit closes its file either way).
    if let Ok(state) = Arc::try_unwrap(state) {
        if let Ok(log) = Arc::try_unwrap(state.log) {
            log.close()?;
        }
    }
    Ok(())
}

/// Serve HTTPS on `listener` until SIGINT or SIGTERM.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
) -> Result<(), ServerError> {
    let std = listener
        .into_std()
        .map_err(|e| start_error("the listening socket", e))?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown().await;
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

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
