//! Continuing an unfinished session on a [`Host`]: resuming it from the
//! host's own log (the server after a restart or a pause), or — on a
//! worker — continuing one whose earlier worker stopped, from the bundle
//! the server wrote of that worker's shipped log (docs/server.md "Workers:
//! failover"). The bundle is verified with the stopped worker's key and
//! the server's, imported (a `session.start` whose `continues` names it,
//! its unknown intents and the server's key), then the session resumes
//! from the conversation it carries: nothing that may have run is run
//! again, and the model is told which results are unknown.

use std::io::Write as _;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::NoteVerifier;
use stele_protocol::{SessionState, UnattendedApprove};
use stele_runtime::session;
use stele_runtime::session_move_import::{import_session, Departure, ImportRequest};
use stele_runtime::session_resume::{self, LogAt};

use super::events::{WorkerMsg, WorkerTx};
use super::manager::Control;
use super::remote::wire::{Continuation, ContinuationBundle};
use super::run::{approver, backend, run_open, Host};
use super::worker::Job;

/// Resume the unfinished session `id` of `host`'s log and run it until it
/// ends or pauses; `model` when its record names none.
pub fn resume_on(
    host: &Host,
    id: &str,
    model: Option<&str>,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    let layers = stele_runtime::config::load()?;
    let rec = session_resume::recorded(&host.log, id)?;
    let spec = rec
        .model_spec
        .clone()
        .or_else(|| model.map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("session {id} names no model and none is configured"))?;
    let model = session::model_for(&layers, &spec)?;
    let at = LogAt {
        log: host.log.clone(),
        db: host.db.clone(),
        key: host.key.clone(),
        signer: host.signer.clone(),
    };
    // The id is known before the session reopens: an ask of the resumed
    // run is queued under it.
    let _ = control.id.set(id.to_string());
    let reopened = session_resume::reopen(
        &at,
        &rec,
        backend(&layers)?,
        approver(host, &rec.principal, unattended_of(&rec), tx, control),
    )?;
    let _ = tx.send(WorkerMsg::Resumed(id.to_string()));
    run_open(reopened.session, &model, reopened.from, None, tx, control)
}

/// How a resumed session answers asks: as its start record says (a
/// scheduled run under approve mode deny stays so after a restart).
fn unattended_of(rec: &session_resume::Recorded) -> Option<UnattendedApprove> {
    match rec.approve.as_deref() {
        Some("deny") => Some(UnattendedApprove::Deny),
        _ => None,
    }
}

/// Continue session `id` of `job` on this worker from `cont` (see the
/// module docs). A session already imported here (this worker took it
/// before, and stopped before finishing) resumes from this log instead.
pub fn run_continued(
    host: &Host,
    job: &Job,
    id: &str,
    cont: &Continuation,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    match &cont.from {
        Some(b) => {
            if session_resume::recorded(&host.log, id).is_err() {
                import(host, job, id, &cont.why, b)?;
            }
        }
        None => anyhow::ensure!(
            session_resume::recorded(&host.log, id).is_ok(),
            "session {id} was to resume from this worker's log, which does not hold it"
        ),
    }
    let _ = tx.send(WorkerMsg::State(
        SessionState::Running,
        Some(format!("continued here: {}", cont.why)),
    ));
    resume_on(host, id, Some(&job.model), tx, control)
}

/// Verify and import `cont`'s bundle into `host`'s log.
fn import(
    host: &Host,
    job: &Job,
    id: &str,
    why: &str,
    cont: &ContinuationBundle,
) -> anyhow::Result<()> {
    let bytes = B64.decode(&cont.bundle).map_err(|e| {
        anyhow::anyhow!("the continuation bundle of session {id} is not base64: {e}")
    })?;
    // A private file beside the log, removed once imported (the import
    // keeps its own copy).
    let dir = host
        .db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let path = dir.join(format!(
        ".continuation-{}-{}.tar",
        std::process::id(),
        stele_audit::export::attestation::file_stem(id)
    ));
    let _ = std::fs::remove_file(&path);
    let written = stele_attest::private_fs::create_new_file(&path)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        anyhow::bail!("{}: {e}", path.display());
    }
    let r = import_file(host, job, why, cont, &path);
    let _ = std::fs::remove_file(&path);
    r
}

fn import_file(
    host: &Host,
    job: &Job,
    why: &str,
    cont: &ContinuationBundle,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let vkey = NoteVerifier::parse(&cont.vkey)
        .map_err(|e| anyhow::anyhow!("the stopped worker's key does not parse: {e}"))?;
    let exporter = NoteVerifier::parse(&cont.exporter)
        .map_err(|e| anyhow::anyhow!("the server's export key does not parse: {e}"))?;
    let policy = match &host.policy {
        Some(p) => p.clone(),
        None => stele_runtime::policy_location::resolve(None)?.path,
    };
    let done = import_session(
        &host.log,
        &host.db,
        &ImportRequest {
            file,
            trusted: &[vkey],
            workspace: Some(job.path.clone()),
            policy: Some(policy),
            departure: Departure::WorkerStopped {
                exporter: &exporter,
                why,
            },
        },
    )?;
    tracing::info!(
        "session {}: continued from {} ({} entries there; {} messages carried)",
        done.id,
        done.origin,
        done.entries,
        done.messages
    );
    Ok(())
}
