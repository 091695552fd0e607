//! `stele worker`: claims sessions from a server and runs up to `capacity`
//! of them at once on its own log (its own key and origin, under its state
//! folder): every effect is committed there before it happens and never
//! waits on the network. Each session's messages are sent on, numbered;
//! its lease is kept by heartbeats, which bring pause requests and answers
//! to its questions. SIGTERM drains: no more claims, running sessions
//! pause resumably and are reported paused, then the worker exits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stele_protocol::SessionState;
use stele_runtime::session;

use super::client::{Client, ClientError};
use super::shipper::Shipper;
use super::wire::{
    ClaimRequest, Claimed, DecisionWire, EventsAck, EventsRequest, FinishRequest, HeartbeatReply,
    HeartbeatRequest, Outcome, VerdictFor, VerdictWire, WireMsg,
};
use crate::sessions::approvals::{Candidate, Pending, Verdict};
use crate::sessions::events::WorkerMsg;
use crate::sessions::manager::Control;
use crate::sessions::run::{run_new, Host};
use crate::sessions::run_continue::run_continued;

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The server (`http(s)://HOST:PORT`).
    pub server: String,
    /// Its worker token.
    pub token: String,
    /// Most sessions at once.
    pub capacity: usize,
    /// The worker's name.
    pub name: String,
    /// Its audit database.
    pub db: PathBuf,
    /// Its signing key.
    pub key: PathBuf,
}

/// Seconds between claims when nothing is queued.
const POLL: Duration = Duration::from_millis(500);

/// How often a session parked on a question heartbeats.
const PARKED_BEAT: Duration = Duration::from_millis(500);

type Running = Arc<Mutex<HashMap<i64, Arc<Control>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Run the worker until SIGTERM (or Ctrl-C) has drained it.
pub fn run(opts: WorkerOptions) -> anyhow::Result<()> {
    let client = Client::new(&opts.server, &opts.token).map_err(anyhow::Error::msg)?;
    let signer = stele_runtime::cli::state::signing_key(&opts.key)?;
    let verifier = signer.verifier().to_string();
    let log = session::open_log(&opts.db, signer.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let shipper = Shipper::new(
        client.clone(),
        opts.db.clone(),
        signer.clone(),
        opts.name.clone(),
    );
    rt.block_on(async move {
        // The log ships beside the sessions, and last: after the log is
        // closed, so its closing entry goes too.
        let (ship_stop, stop) = tokio::sync::watch::channel(false);
        let wake = Arc::new(tokio::sync::Notify::new());
        let (registered_tx, registered) = tokio::sync::watch::channel(false);
        let shipping = tokio::spawn(shipper.run(stop, wake.clone(), registered));
        let hooks = Hooks {
            wake,
            registered: registered_tx,
        };
        let r = serve(opts.clone(), client, verifier, signer, log.clone(), hooks).await;
        let closing = log.clone();
        match tokio::task::spawn_blocking(move || closing.close_shared()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("closing the worker's log: {e}"),
            Err(e) => tracing::error!("closing the worker's log: {e}"),
        }
        if r.is_err() {
            // It never ran (refused, unreachable at start): nothing to wait for.
            shipping.abort();
            return r;
        }
        let _ = ship_stop.send(true);
        if let Err(e) = shipping.await {
            tracing::error!("the shipper stopped: {e}");
        }
        r
    })
}

async fn serve(
    opts: WorkerOptions,
    client: Client,
    verifier: String,
    signer: Arc<dyn stele_attest::Signer>,
    log: Arc<stele_audit::AuditLog>,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let (drain_tx, mut drain) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown::signalled().await;
        let _ = drain_tx.send(true);
    });
    claim_loop(opts, client, verifier, signer, log, &mut drain, &hooks).await
}

/// How the claim loop tells the shipper.
struct Hooks {
    /// A session ended: ship now.
    wake: Arc<tokio::sync::Notify>,
    /// A claim was answered: the worker's key is registered.
    registered: tokio::sync::watch::Sender<bool>,
}

async fn claim_loop(
    opts: WorkerOptions,
    client: Client,
    verifier: String,
    signer: Arc<dyn stele_attest::Signer>,
    log: Arc<stele_audit::AuditLog>,
    drain: &mut tokio::sync::watch::Receiver<bool>,
    hooks: &Hooks,
) -> anyhow::Result<()> {
    let running: Running = Arc::default();
    let pending = Arc::new(Pending::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut first = true;
    stele_runtime::errln!(
        "stele worker {}: claiming from {} (at most {} at once)",
        opts.name,
        opts.server,
        opts.capacity
    );
    loop {
        if *drain.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        let free = lock(&running).len() < opts.capacity;
        let claimed = if free {
            let req = ClaimRequest {
                name: opts.name.clone(),
                verifier: verifier.clone(),
            };
            match client
                .post::<_, Claimed>("/api/v1/worker/claim", &req)
                .await
            {
                Ok(c) => {
                    hooks.registered.send_replace(true);
                    c
                }
                Err(e) if first || matches!(e, ClientError::Refused { .. }) => {
                    return Err(anyhow::anyhow!("{e}"));
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            }
        } else {
            None
        };
        first = false;
        match claimed {
            Some(c) => {
                stele_runtime::errln!(
                    "stele worker {}: running session {} (job {}, claim {})",
                    opts.name,
                    c.payload.session,
                    c.job,
                    c.attempt
                );
                let control = Arc::new(Control::default());
                let _ = control.id.set(c.payload.session.clone());
                lock(&running).insert(c.job, control.clone());
                let host = Host {
                    log: log.clone(),
                    db: opts.db.clone(),
                    key: opts.key.clone(),
                    signer: signer.clone(),
                    policy: c.payload.policy.clone(),
                    members: c.payload.members.clone(),
                    ask_deadline: Duration::from_secs(c.payload.ask_deadline_secs),
                    pending: pending.clone(),
                    command: "worker",
                };
                let (client, running, wake) = (client.clone(), running.clone(), hooks.wake.clone());
                tasks.spawn(async move {
                    let job = c.job;
                    if let Err(e) = one(&client, host, c, control).await {
                        tracing::error!("job {job}: {e}");
                    }
                    lock(&running).remove(&job);
                    // Its last entries go now rather than at the next tick.
                    wake.notify_one();
                });
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = drain.changed() => {}
                }
            }
        }
    }
    let n = lock(&running).len();
    stele_runtime::errln!(
        "stele worker {}: draining: no more claims; pausing {n} running session(s)",
        opts.name
    );
    for c in lock(&running).values() {
        c.pause
            .request(&format!("worker {} is stopping (resumable)", opts.name));
    }
    while tasks.join_next().await.is_some() {}
    stele_runtime::errln!("stele worker {}: drained", opts.name);
    Ok(())
}

/// Pass a decision to the question waiting on it; its verdict is kept for
/// the next heartbeat.
fn offer(pending: &Pending, d: DecisionWire, verdicts: &Arc<Mutex<Vec<VerdictFor>>>) {
    let (reply, verdict) = tokio::sync::oneshot::channel();
    let c = Candidate {
        approver: d.approver,
        method: method_name(&d.method),
        outcome: d.outcome,
        ticket: d.ticket,
        reply,
    };
    let approval = d.approval;
    if pending.offer(&approval, c).is_err() {
        lock(verdicts).push(VerdictFor {
            approval,
            verdict: VerdictWire::Gone,
        });
        return;
    }
    let verdicts = verdicts.clone();
    tokio::spawn(async move {
        let verdict = match verdict.await {
            Ok(Verdict::Accepted) => VerdictWire::Accepted,
            Ok(Verdict::CannotLift) => VerdictWire::CannotLift,
            Err(_) => VerdictWire::Gone,
        };
        lock(&verdicts).push(VerdictFor { approval, verdict });
    });
}

/// How an approver authenticated, as the gate records it.
fn method_name(m: &str) -> &'static str {
    match m {
        "password" => "password",
        "oidc" => "oidc",
        "cookie" => "cookie",
        _ => "token",
    }
}

/// The server no longer holds this claim: the session pauses at its next
/// safe point (its log stays whole on this worker), and nothing more is sent.
async fn lost(
    e: ClientError,
    control: &Control,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<WorkerMsg>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<(), ClientError> {
    tracing::error!("{e}; pausing the session");
    control
        .pause
        .request("the server no longer holds this worker's claim (resumable)");
    if let Some(done) = done {
        let _ = done.await;
    }
    // What it said meanwhile is on this worker's log, not sent.
    while rx.try_recv().is_ok() {}
    Err(e)
}

/// Run one claimed session to its end and report it.
async fn one(
    client: &Client,
    host: Host,
    c: Claimed,
    control: Arc<Control>,
) -> Result<(), ClientError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    // Taken once the thread has said it is done (a oneshot is awaited once).
    let mut done = Some(done);
    let pending = host.pending.clone();
    {
        let (control, job, session, continuation) = (
            control.clone(),
            c.payload.job.clone(),
            c.payload.session.clone(),
            c.continuation.clone(),
        );
        std::thread::Builder::new()
            .name("stele-session".into())
            .spawn(move || {
                let ran = match &continuation {
                    Some(cont) => run_continued(&host, &job, &session, cont, &tx, &control),
                    None => run_new(&host, &job, Some(session), &tx, &control),
                };
                if let Err(e) = ran {
                    let why = format!("{e:#}");
                    let _ = tx.send(WorkerMsg::Failed(why.clone()));
                    let _ = tx.send(WorkerMsg::State(SessionState::Failed, Some(why)));
                }
                drop(tx);
                let _ = done_tx.send(());
            })
            .map_err(|e| ClientError::Other {
                what: "starting a session thread".into(),
                status: 0,
                why: e.to_string(),
            })?;
    }
    let base = format!("/api/v1/worker/jobs/{}", c.job);
    let beat = Duration::from_millis((c.lease_secs * 1000 / 3).max(300));
    let mut beat_at = tokio::time::Instant::now();
    let mut last_beat = beat_at;
    let verdicts: Arc<Mutex<Vec<VerdictFor>>> = Arc::default();
    let mut outbox: Vec<WireMsg> = Vec::new();
    let mut acked = 0u64;
    let mut last: Option<(SessionState, Option<String>)> = None;
    let mut finished = false;
    loop {
        // Take what the session said.
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    if let WorkerMsg::State(s, d) = &m {
                        last = Some((*s, d.clone()));
                    }
                    if let Some(w) = WireMsg::from_worker(m) {
                        outbox.push(w);
                    }
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    finished = true;
                    break;
                }
            }
        }
        if !outbox.is_empty() {
            let req = EventsRequest {
                attempt: c.attempt,
                from: acked + 1,
                messages: outbox.clone(),
            };
            match client
                .post::<_, EventsAck>(&format!("{base}/events"), &req)
                .await
            {
                Ok(Some(a)) => {
                    let took = usize::try_from(a.acked.saturating_sub(acked)).unwrap_or(0);
                    outbox.drain(..took.min(outbox.len()));
                    acked = a.acked;
                }
                Ok(None) => {}
                Err(e @ ClientError::Lost { .. }) => {
                    return lost(e, &control, rx, done.take()).await
                }
                // Kept, and sent again: the numbers make a retry harmless.
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if finished && outbox.is_empty() {
            break;
        }
        // A session waiting on a person heartbeats often: the answer comes with it.
        let due = if control.parked.load(std::sync::atomic::Ordering::SeqCst) {
            beat_at.min(last_beat + PARKED_BEAT)
        } else {
            beat_at
        };
        if tokio::time::Instant::now() >= due {
            last_beat = tokio::time::Instant::now();
            beat_at = last_beat + beat;
            let req = HeartbeatRequest {
                attempt: c.attempt,
                verdicts: std::mem::take(&mut *lock(&verdicts)),
            };
            match client
                .post::<_, HeartbeatReply>(&format!("{base}/heartbeat"), &req)
                .await
            {
                Ok(Some(r)) => {
                    if let Some(why) = r.pause {
                        control.pause.request(&why);
                    }
                    let quick = !r.decisions.is_empty();
                    for d in r.decisions {
                        offer(&pending, d, &verdicts);
                    }
                    if quick {
                        // The verdicts go back soon: the person waits on them.
                        beat_at = tokio::time::Instant::now() + Duration::from_millis(200);
                    }
                }
                Ok(None) => {}
                Err(e @ ClientError::Lost { .. }) => {
                    return lost(e, &control, rx, done.take()).await
                }
                Err(e) => {
                    lock(&verdicts).extend(req.verdicts);
                    tracing::warn!("{e}");
                }
            }
        }
        match done.as_mut() {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = d => {
                        // Everything it sent is in the channel now: take it, then finish.
                        done = None;
                    }
                }
            }
            None => {
                finished = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let (outcome, reason) = match last {
        Some((SessionState::Ended, _)) => (Outcome::Ended, None),
        Some((SessionState::Paused, d)) => (Outcome::Paused, d),
        Some((_, d)) => (
            Outcome::Failed,
            Some(d.unwrap_or_else(|| "the session stopped without saying why".into())),
        ),
        None => (Outcome::Failed, Some("the session said nothing".into())),
    };
    let req = FinishRequest {
        attempt: c.attempt,
        outcome,
        reason,
    };
    for _ in 0..20 {
        match client
            .post::<_, serde::de::IgnoredAny>(&format!("{base}/finish"), &req)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e @ (ClientError::Lost { .. } | ClientError::Refused { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!("{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err(ClientError::Other {
        what: format!("POST {base}/finish"),
        status: 0,
        why: "gave up after 20 tries".into(),
    })
}
