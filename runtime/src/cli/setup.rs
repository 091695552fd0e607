//! Opening a session for a command (`run`, `sandbox exec`): the audit log,
//! the policy bundle, the principal's teams, the sandbox (built before the
//! session starts, so that `session.start` names the backend that runs;
//! see `backend.rs`), and the gate. Any failure refuses to start (fail
//! closed).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use stele_audit::{AuditLog, LogOptions};
use stele_policy::{Bundle, Network, SandboxBackend, SandboxFacts};
use stele_sandbox::exec::Sandbox;
use stele_sandbox::process::NetworkMode;
use stele_sandbox::Mediator;

use super::backend::{self, BackendChoice, BackendSpec, Built, DeferredMediator};
use crate::gate::approval::Approver;
use crate::gate::mediator::{GateMediator, Parent};
use crate::gate::{Gate, SessionInfo};
use crate::paths;
use crate::timestamping::periodic::PeriodicStamps;
use crate::timestamping::Timestamping;
use crate::witnessing::{Moment, Witnessing};

/// The sandbox's network for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkChoice {
    /// No way out at all (the default).
    None,
    /// Through stele's egress proxy; every connection is a `net.connect` decision.
    Proxy,
}

/// What a session is opened with.
#[derive(Debug)]
pub struct SessionSpec<'a> {
    /// Granted folder.
    pub workspace: &'a Path,
    /// Policy bundle [default: the search order of `crate::policy_location`].
    pub policy: Option<&'a Path>,
    /// Principal [default: $USER].
    pub user: Option<&'a str>,
    /// Audit database [default: $STATE/audit.db].
    pub db: Option<&'a Path>,
    /// Signing key [default: $STATE/keys/log.key].
    pub key: Option<&'a Path>,
    /// Sandbox network.
    pub network: NetworkChoice,
    /// Sandbox backend and its fallback.
    pub backend: BackendSpec,
    /// Extra `session.start` fields.
    pub data: serde_json::Value,
}

/// An open session.
pub struct OpenSession {
    /// The session's gate.
    pub gate: Arc<Gate>,
    /// The log (closed by [`OpenSession::close`]).
    pub log: Arc<AuditLog>,
    /// Canonical workspace path.
    pub workspace: PathBuf,
    /// Audit database path.
    pub db: PathBuf,
    /// Signing key file.
    pub key: PathBuf,
    network: NetworkChoice,
    /// The session's sandbox (one for the whole session: a VM stays warm)
    /// until [`OpenSession::release_sandbox`].
    sandbox: Mutex<Option<Arc<dyn Sandbox>>>,
    /// The gate as the sandbox's mediator.
    mediator: Arc<dyn Mediator>,
    /// The attestation's sandbox settings.
    attestation: serde_json::Value,
    signer: Arc<dyn stele_attest::Signer>,
    /// Whether closing the session closes the log.
    owner: LogOwner,
    /// The configured TSA (`[tsa]`), checked when the session started.
    timestamping: Option<Timestamping>,
    /// Stamps while the session runs (`[tsa] every_secs`).
    stamps: Option<PeriodicStamps>,
}

/// Who closes a session's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOwner {
    /// The session opened the log for itself (a CLI command) and closes it.
    Session,
    /// The caller holds the log for many sessions (the server) and closes it.
    Caller,
}

impl LogOwner {
    /// Close `log` if this owner says the session does, and no one else holds it.
    fn close(self, log: Arc<AuditLog>) -> Result<(), stele_audit::AuditError> {
        match self {
            LogOwner::Session => match Arc::try_unwrap(log) {
                Ok(l) => l.close().map(|_| ()),
                Err(_) => Ok(()),
            },
            LogOwner::Caller => Ok(()),
        }
    }
}

/// The sandbox's network. Under `--network none` the egress proxy is there
/// too, so that a program's attempt is a refused, logged `net.connect`
/// decision rather than a silent connection error; the gate refuses every
/// connection of a session whose facts say it has no network.
fn network_mode(n: NetworkChoice) -> NetworkMode {
    match n {
        NetworkChoice::None | NetworkChoice::Proxy => NetworkMode::EgressProxy,
    }
}

fn facts(backend: BackendChoice, network: NetworkChoice) -> SandboxFacts {
    SandboxFacts {
        backend: match backend {
            BackendChoice::Process => SandboxBackend::Process,
            BackendChoice::Vm => SandboxBackend::Microvm,
        },
        network: match network {
            NetworkChoice::None => Network::Disabled,
            NetworkChoice::Proxy => Network::ViaProxy,
        },
    }
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(o), serde_json::Value::Object(extra)) = (into.as_object_mut(), from) {
        o.extend(extra);
    }
}

/// The principal: the flag, else `$USER`, else `$LOGNAME`, each checked
/// where it enters (see [`crate::principal`]).
pub fn principal(user: Option<&str>) -> anyhow::Result<String> {
    Ok(crate::principal::from_flag_or_env(user, "unknown")?)
}

/// Open (or create) the log and close any intents a crashed run left open.
pub fn open_log(db: &Path, signer: Arc<dyn stele_attest::Signer>) -> anyhow::Result<Arc<AuditLog>> {
    // The folder holding a new log is private (0700), whatever the umask.
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        paths::ensure_private_dir(dir)
            .with_context(|| format!("creating {}", crate::terminal_safe::path(dir)))?;
    }
    let log = Arc::new(AuditLog::open_or_create(db, signer, LogOptions::default())?);
    let closed = crate::recovery::close_interrupted(&log)?;
    if !closed.is_empty() {
        crate::errln!(
            "stele: {} action(s) of an earlier run never recorded a result (crash or kill); closed as interrupted, not re-run: entries {:?}",
            closed.len(),
            closed
        );
    }
    Ok(log)
}

/// Open the log, load the policy, start the session.
pub fn open(spec: SessionSpec<'_>, approver: Box<dyn Approver>) -> anyhow::Result<OpenSession> {
    let data = spec.data.clone();
    prepare(&spec)?.start(data, approver)
}

/// Everything a session needs checked, before anything is written: the
/// workspace, the principal, the isolation of stele's own files, the
/// policy bundle and the signing key. A caller checks its own inputs (a
/// model's API key) after these, so that one mistake does not hide another.
pub struct Prepared {
    workspace: PathBuf,
    user: String,
    teams: Vec<String>,
    witnessing: Witnessing,
    timestamping: Option<Timestamping>,
    db: PathBuf,
    key: PathBuf,
    signer: Arc<dyn stele_attest::Signer>,
    bundle: Arc<Bundle>,
    origin: &'static str,
    network: NetworkChoice,
    backend: BackendSpec,
    session_id: Option<String>,
}

/// Check what `spec` names (see [`Prepared`]); nothing is written.
pub fn prepare(spec: &SessionSpec<'_>) -> anyhow::Result<Prepared> {
    let workspace = spec
        .workspace
        .canonicalize()
        .with_context(|| format!("workspace {}", crate::terminal_safe::path(spec.workspace)))?;
    anyhow::ensure!(
        workspace.is_dir(),
        "workspace {} is not a folder",
        crate::terminal_safe::path(&workspace)
    );
    let user = principal(spec.user)?;
    let witnessing = Witnessing::load()?;
    // A bad `[tsa]` stops the session here, not at its end.
    let timestamping = Timestamping::load()?;
    let db = spec
        .db
        .map(Path::to_path_buf)
        .unwrap_or_else(paths::default_db);
    let key = spec
        .key
        .map(Path::to_path_buf)
        .unwrap_or_else(paths::default_key);
    // Before anything is written (the built-in policy is written under the
    // state folder, which the check covers as a whole).
    crate::isolation::check_session(&crate::isolation::SessionPaths {
        workspace: &workspace,
        db: &db,
        key: &key,
        policy: &spec
            .policy
            .map_or_else(|| paths::state_dir().join("policies"), Path::to_path_buf),
    })?;
    let located = crate::policy_location::resolve(spec.policy)?;
    let policy = located.path;
    let bundle = Arc::new(
        Bundle::load(&policy)
            .with_context(|| format!("policy bundle {}", crate::terminal_safe::path(&policy)))?,
    );
    let teams: Vec<String> = bundle
        .members()
        .teams_of(&user)
        .map(str::to_string)
        .collect();
    if teams.is_empty() && bundle.teams().next().is_some() {
        // Said before anything runs: every denial that follows has this cause
        // (a bundle without teams, like the strict default, has no members).
        crate::errln!(
            "stele: warning: you ({}) are not in this policy's members list ({}): rules \
             written for teams will not apply to you; ask whoever maintains the policy to add \
             you, or give --user",
            crate::terminal_safe::line(&user),
            crate::terminal_safe::path(&policy.join("members.toml"))
        );
    }
    let signer = super::state::signing_key(&key)?;
    Ok(Prepared {
        workspace,
        user,
        teams,
        witnessing,
        timestamping,
        db,
        key,
        signer,
        bundle,
        origin: located.origin.as_str(),
        network: spec.network,
        backend: spec.backend.clone(),
        session_id: None,
    })
}

impl Prepared {
    /// Start the session under `id` instead of a fresh one: a server that
    /// queues a session for a remote worker names it before the worker
    /// opens it, so the queued row and the worker's log agree.
    pub fn with_session_id(mut self, id: String) -> Prepared {
        self.session_id = Some(id);
        self
    }

    /// Open the log, build the sandbox and start the session, with `extra`
    /// fields in `session.start`.
    pub fn start(
        self,
        extra: serde_json::Value,
        approver: Box<dyn Approver>,
    ) -> anyhow::Result<OpenSession> {
        let log = open_log(&self.db, self.signer.clone())?;
        self.start_on(log, LogOwner::Session, extra, approver)
    }

    /// Start the session on `log`, which the caller already holds (the
    /// server holds one log for all its sessions); `owner` says whether
    /// closing the session closes the log.
    pub fn start_on(
        self,
        log: Arc<AuditLog>,
        owner: LogOwner,
        extra: serde_json::Value,
        approver: Box<dyn Approver>,
    ) -> anyhow::Result<OpenSession> {
        let Prepared {
            workspace,
            user,
            teams,
            witnessing,
            timestamping,
            db,
            key,
            signer,
            bundle,
            origin,
            network,
            backend: backend_spec,
            session_id,
        } = self;
        let id = session_id.unwrap_or_else(|| format!("s-{}", uuid::Uuid::new_v4().simple()));
        let mut data = serde_json::json!({
            "workspace": workspace.display().to_string(),
            "network": format!("{:?}", network).to_lowercase(),
            "policy_source": origin,
        });
        merge(&mut data, extra);
        let info = SessionInfo {
            id,
            principal: user,
            teams,
        };
        let deferred = Arc::new(DeferredMediator::default());
        let built = match backend::build(
            &backend_spec,
            &workspace,
            deferred.clone(),
            network_mode(network),
        ) {
            Ok(b) => b,
            Err(e) => {
                // The refusal is in the log too: a session that ran nothing.
                data["sandbox_error"] = serde_json::json!(format!("{e:#}"));
                let facts = facts(backend_spec.requested, network);
                if let Ok(gate) =
                    Gate::start_session(log.clone(), bundle, info, approver, facts, data)
                {
                    let _ = gate.end_session(stele_audit::Status::Error, Some(format!("{e:#}")));
                }
                let _ = owner.close(log);
                return Err(e);
            }
        };
        let Built {
            sandbox,
            ran,
            record,
            attestation,
        } = built;
        // Which backend runs the commands (and, for the VM, its image, jail…).
        merge(&mut data, record);
        let gate = Arc::new(Gate::start_session(
            log.clone(),
            bundle,
            info,
            approver,
            facts(ran, network),
            data,
        )?);
        let (gate, log) = witnessed_start(&witnessing, gate, log, &db, owner)?;
        let mediator: Arc<dyn Mediator> =
            Arc::new(GateMediator::with_parent(gate.clone(), Parent::Session));
        deferred.bind(mediator.clone());
        let stamps = periodic_stamps(timestamping.as_ref(), &db, &log)?;
        Ok(OpenSession {
            gate,
            log,
            workspace,
            db,
            key,
            network,
            sandbox: Mutex::new(Some(sandbox)),
            mediator,
            attestation,
            signer,
            owner,
            timestamping,
            stamps,
        })
    }
}

/// The thread that stamps the session's log while it runs, when `[tsa]`
/// says `every_secs`.
fn periodic_stamps(
    t: Option<&Timestamping>,
    db: &Path,
    log: &AuditLog,
) -> anyhow::Result<Option<PeriodicStamps>> {
    match t {
        Some(t) => PeriodicStamps::start(t, db.to_path_buf(), log.verifier().clone())
            .context("starting the [tsa] every_secs stamping thread"),
        None => Ok(None),
    }
}

/// Publish the log's checkpoint to the configured witnesses before the
/// session's first action; on a history conflict (rollback, fork) or an unmet
/// quorum, end the session in error, close the log, and refuse.
fn witnessed_start(
    witnessing: &Witnessing,
    gate: Arc<Gate>,
    log: Arc<AuditLog>,
    db: &Path,
    owner: LogOwner,
) -> anyhow::Result<(Arc<Gate>, Arc<AuditLog>)> {
    match witnessing.publish(db, &log.verifier(), Moment::SessionStart) {
        Ok(_) => Ok((gate, log)),
        Err(e) => {
            let _ = gate.end_session(
                stele_audit::Status::Error,
                Some(format!("refused by witnessing: {e}")),
            );
            drop(gate);
            let _ = owner.close(log);
            Err(e.into())
        }
    }
}

/// An open audit log with where it lives and the key that signs it.
pub struct OpenedLog {
    /// The log.
    pub log: Arc<AuditLog>,
    /// Its database.
    pub db: PathBuf,
    /// Its signing key file.
    pub key: PathBuf,
    /// Its signing key.
    pub signer: Arc<dyn stele_attest::Signer>,
}

/// Reopen an unfinished session recorded in `opened`, in the sandbox
/// backend `backend` asks for (the one the session used); `owner` says
/// whether closing the session closes the log (the server keeps its log).
#[allow(clippy::too_many_arguments)]
pub fn resume(
    opened: OpenedLog,
    owner: LogOwner,
    bundle: Arc<Bundle>,
    info: SessionInfo,
    workspace: PathBuf,
    network: NetworkChoice,
    backend: BackendSpec,
    approver: Box<dyn Approver>,
) -> anyhow::Result<OpenSession> {
    let witnessing = Witnessing::load()?;
    let timestamping = Timestamping::load()?;
    let OpenedLog {
        log,
        db,
        key,
        signer,
    } = opened;
    let deferred = Arc::new(DeferredMediator::default());
    // A sandbox that cannot be built leaves the session open (resumable
    // later), with nothing run.
    let Built {
        sandbox,
        ran,
        record,
        attestation,
    } = backend::build(
        &backend,
        &workspace,
        deferred.clone(),
        network_mode(network),
    )?;
    let gate = Arc::new(Gate::resume_session(
        log.clone(),
        bundle,
        info,
        approver,
        facts(ran, network),
        record,
    )?);
    let (gate, log) = witnessed_start(&witnessing, gate, log, &db, owner)?;
    let mediator: Arc<dyn Mediator> =
        Arc::new(GateMediator::with_parent(gate.clone(), Parent::Session));
    deferred.bind(mediator.clone());
    let stamps = periodic_stamps(timestamping.as_ref(), &db, &log)?;
    Ok(OpenSession {
        gate,
        log,
        workspace,
        db,
        key,
        network,
        sandbox: Mutex::new(Some(sandbox)),
        mediator,
        attestation,
        signer,
        owner,
        timestamping,
        stamps,
    })
}

impl OpenSession {
    /// The session's sandbox, mediated by its gate (the same one on every
    /// call: a micro-VM stays warm for the whole session).
    pub fn sandbox(&self) -> anyhow::Result<(Arc<dyn Sandbox>, Arc<dyn Mediator>)> {
        let sandbox = self
            .sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .context("the session's sandbox has been released")?;
        Ok((sandbox, self.mediator.clone()))
    }

    /// Let the sandbox go before the session ends, so that a VM's shutdown
    /// (and the closes of files its guest still held) is recorded inside
    /// the session. It stops once no tool holds it any more.
    pub fn release_sandbox(&self) {
        let sandbox = self
            .sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(sandbox);
    }

    /// Sign the session attestation (entries, checkpoint, policy digest,
    /// runtime binary, sandbox settings) once the session has ended; it is
    /// stored beside the database and included in exports.
    pub fn attest(&self) -> anyhow::Result<()> {
        use stele_audit::export::attestation::{attest_session, binary_sha256, SessionContext};
        let ctx = SessionContext {
            policy_digest: Some(self.gate.bundle().digest().to_string()),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            binary_sha256: binary_sha256(self.log.path().parent())?,
            sandbox: {
                let mut v = self.attestation.clone();
                v["network"] = serde_json::json!(format!("{:?}", self.network).to_lowercase());
                v
            },
        };
        attest_session(
            &self.log,
            self.signer.as_ref(),
            self.gate.session_id(),
            &ctx,
        )?;
        Ok(())
    }

    /// Close the log (appends `log.close`).
    /// Then send the final checkpoint to the configured witnesses.
    pub fn close(self) -> anyhow::Result<()> {
        self.release_sandbox();
        // The session's last checkpoint is stamped below, not by the thread.
        drop(self.stamps);
        drop(self.mediator);
        drop(self.gate);
        let verifier = self.log.verifier().clone();
        self.owner.close(self.log)?;
        // Keeps the next session's workspace check from rescanning this one.
        crate::isolation::exports::refresh_index(&self.db);
        let published = Witnessing::load()?.publish(&self.db, &verifier, Moment::SessionEnd)?;
        if let Some(t) = &self.timestamping {
            crate::timestamping::report(&t.stamp(&self.db, &verifier));
        }
        if let Some(c) = published.cosigned.first() {
            let names: Vec<String> = published
                .cosigned
                .iter()
                .map(|c| crate::terminal_safe::line(&c.witness))
                .collect();
            crate::errln!(
                "stele: checkpoint {} cosigned by {}",
                c.size,
                names.join(", ")
            );
        }
        Ok(())
    }
}
