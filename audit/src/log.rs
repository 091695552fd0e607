//! The audit log handle: create or open (with the start-up check), append
//! durably through the one sequencer thread, redact, close.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use stele_attest::{NoteVerifier, Signer};
use tokio::sync::oneshot;

use crate::error::AuditError;
use crate::event::{Actor, Event};
use crate::full_check::Background;
use crate::sequencer::{Msg, ReplyTo};
use crate::store::Store;
use crate::writer::{Receipt, Sequenced, Work};
use crate::writer_lock::WriterLock;

pub use crate::startup::FullVerification;

/// How a log behaves.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Append a heartbeat when nothing was appended for this long.
    pub heartbeat: Option<Duration>,
    /// Most entries committed together.
    pub max_batch: usize,
    /// A checkpoint note held outside the database (witness, WORM copy, last
    /// export) that the log must be consistent with.
    pub anchor: Option<String>,
    /// The actor for entries the log writes itself (open, close, heartbeat).
    pub system_actor: Actor,
    /// When the whole log is verified again (in the background, or before
    /// any write when it is overdue): see `startup`.
    pub full_verification: FullVerification,
    /// How many of the newest entries the start-up check verifies in full
    /// even if an earlier start-up already did.
    pub recheck_tail: u64,
    /// How long to wait for another writer of the same database file to
    /// finish before answering [`AuditError::Busy`].
    pub lock_wait: Duration,
    /// Extra genesis fields (e.g. the policy digest) for a new log.
    pub genesis_data: Option<serde_json::Value>,
    /// Where entry times and the clock's synchronisation state come from
    /// (the machine's clocks; tests put a fake here).
    pub clock: crate::clock::ClockHandle,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            heartbeat: Some(Duration::from_secs(60)),
            max_batch: 1024,
            anchor: None,
            system_actor: Actor::system(),
            full_verification: FullVerification::default(),
            recheck_tail: 1024,
            lock_wait: Duration::from_secs(2),
            genesis_data: None,
            clock: crate::clock::ClockHandle::default(),
        }
    }
}

impl Actor {
    /// The runtime itself, on this host.
    pub fn system() -> Self {
        Self {
            host: host_name(),
            principal: "system".into(),
            runtime: format!("stele/{}", env!("CARGO_PKG_VERSION")),
            teams: Vec::new(),
        }
    }
}

/// This machine's host name (empty when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// An open, writable audit log.
pub struct AuditLog {
    pub(crate) tx: Option<mpsc::Sender<Msg>>,
    /// The ordering state the sequencer shares with released appends.
    pub(crate) shared: Arc<crate::ordering::Shared>,
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) path: PathBuf,
    pub(crate) origin: String,
    /// The current key's verifier (changed by a rotation).
    pub(crate) verifier: std::sync::RwLock<NoteVerifier>,
    pub(crate) background: Option<Background>,
    /// Entries the start-up check read in full (see `startup`).
    pub(crate) checked_at_start: u64,
    /// The committed size, for readers in this process.
    pub(crate) committed: crate::commit_watch::CommitWatch,
    pub(crate) _lock: WriterLock,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .finish()
    }
}

impl AuditLog {
    /// Create a new log at `path`, signed by `signer` (whose name is the
    /// origin). Folders it creates are 0700, the database and its side
    /// files 0600, whatever the umask.
    pub fn create(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
    ) -> Result<Self, AuditError> {
        crate::log_open::create(path, signer, opts)
    }

    /// Open an existing log for writing, after the start-up integrity check.
    /// Group and other permissions on the database and its side files are
    /// removed (a warning names each file tightened).
    pub fn open(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
    ) -> Result<Self, AuditError> {
        crate::log_open::open(path, signer, opts)
    }

    /// Open `path` if it exists, else create it (a log created meanwhile by
    /// another process is opened).
    pub fn open_or_create(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
    ) -> Result<Self, AuditError> {
        if path.exists() {
            return Self::open(path, signer, opts);
        }
        match Self::create(path, signer.clone(), opts.clone()) {
            Err(AuditError::Exists(_)) => Self::open(path, signer, opts),
            other => other,
        }
    }

    /// Append an event; resolves only after it is durably committed and
    /// covered by a signed checkpoint.
    pub async fn append(&self, ev: Event) -> Result<Receipt, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Work(Work::Append(Box::new(ev)), ReplyTo::Async(tx)))?;
        rx.await.map_err(|_| AuditError::Stopped(None))?
    }

    /// Blocking form of [`AuditLog::append`], for threads outside the async runtime.
    ///
    /// A caller alone in this call orders, writes and flushes its entry on
    /// its own thread (`crate::ordering`), with whatever released entries
    /// are pending; callers that come together go through the sequencer,
    /// which commits them together (group commit).
    pub fn append_blocking(&self, ev: Event) -> Result<Receipt, AuditError> {
        if self.tx.is_none() {
            return Err(AuditError::Stopped(None));
        }
        let (direct, _under_way) = self.shared.commit_if_alone(Work::Append(Box::new(ev)));
        let work = match direct {
            crate::ordering::Direct::Done(r) => return r,
            crate::ordering::Direct::Busy(work) => work,
        };
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Work(work, ReplyTo::Blocking(tx)))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
    }

    /// Append an event that takes effect only inside the sandbox (a read, a
    /// lookup, a listing, the close of a handle): resolves as soon as the
    /// entry has its place in the log's one sequence, without waiting for
    /// it to be durable. Anything appended later with [`AuditLog::append`]
    /// is durable only with everything ordered before it, so nothing that
    /// depends on this entry can leave the sandbox before it is durable
    /// (external synchrony; see SECURITY.md, "Durability").
    ///
    /// The entry is ordered on the caller's own thread (`crate::ordering`):
    /// it never waits for the sequencer thread, only, briefly, for the lock
    /// the sequencer holds while it writes a batch.
    pub async fn append_released(&self, ev: Event) -> Result<Sequenced, AuditError> {
        self.append_released_blocking(ev)
    }

    /// Blocking form of [`AuditLog::append_released`].
    pub fn append_released_blocking(&self, ev: Event) -> Result<Sequenced, AuditError> {
        let tx = self.tx.as_ref().ok_or(AuditError::Stopped(None))?;
        self.shared.order_released(Work::Append(Box::new(ev)), tx)
    }

    /// Erase the bodies of the given payload commitments and append a
    /// `redaction` entry naming them, who and why (one transaction).
    pub fn redact_blocking(
        &self,
        commits: Vec<String>,
        reason: String,
        actor: Actor,
    ) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Work(
            Work::Redact {
                commits,
                reason,
                actor,
            },
            ReplyTo::Blocking(tx),
        ))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
    }

    /// Rotate the log's signing key to `new` (named like the log: its
    /// origin). Appends a `key.rotation` entry in a commit of its own whose
    /// checkpoint the current key and `new` both sign; every later
    /// checkpoint is signed by `new`. Returns that entry's receipt.
    pub fn rotate_blocking(
        &self,
        new: Arc<dyn Signer>,
        reason: String,
        actor: Actor,
    ) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let verifier = new.verifier();
        self.send(Msg::Keys(
            crate::writer::KeyChange::Rotate { new, reason, actor },
            ReplyTo::Blocking(tx),
        ))?;
        let r = rx.recv().map_err(|_| AuditError::Stopped(None))??;
        *self
            .verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
        Ok(r)
    }

    /// Record that the former key `key` (verifier text form) must not be
    /// trusted for tree sizes `from_size` and above (it was compromised):
    /// appends a `key.revocation` entry. The current key cannot be revoked
    /// (rotate first).
    pub fn revoke_blocking(
        &self,
        key: String,
        from_size: u64,
        reason: String,
        actor: Actor,
    ) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Keys(
            crate::writer::KeyChange::Revoke {
                key,
                from_size,
                reason,
                actor,
            },
            ReplyTo::Blocking(tx),
        ))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
    }

    /// Erase payload bodies past their retention and append the
    /// `payload.expiry` entry naming them (one transaction; see
    /// [`crate::retention_plan`] for choosing them). Refused, erasing
    /// nothing, if any is held, already erased or made at or after the
    /// cut-off.
    pub fn expire_blocking(&self, req: crate::ExpiryRequest) -> Result<Receipt, AuditError> {
        self.work_blocking(Work::Expire(Box::new(req)))
    }

    /// Place a legal hold; its id is the receipt's index.
    pub fn place_hold_blocking(
        &self,
        scope: crate::holds::HoldScope,
        reason: String,
        config: Option<String>,
        actor: Actor,
    ) -> Result<Receipt, AuditError> {
        self.work_blocking(Work::PlaceHold {
            scope,
            reason,
            config,
            actor,
        })
    }

    /// Approve the release of hold `hold` as `actor`: the first approval
    /// is recorded; a second by a different principal releases the hold;
    /// the same principal twice is refused ([`AuditError::Denied`]).
    pub fn release_hold_blocking(
        &self,
        hold: u64,
        reason: String,
        config: Option<String>,
        actor: Actor,
    ) -> Result<Receipt, AuditError> {
        self.work_blocking(Work::ReleaseHold {
            hold,
            reason,
            config,
            actor,
        })
    }

    /// Archive the sealed prefix `0 … through−1` whose bundle (written
    /// and verified by the caller: [`crate::export::archive`]) has the
    /// given manifest digest: appends `log.archive` and removes the prefix
    /// in one transaction. Refused, changing nothing, if a session, intent,
    /// shared payload or legal hold crosses the boundary.
    pub fn archive_blocking(
        &self,
        req: crate::archive::ArchiveRequest,
    ) -> Result<Receipt, AuditError> {
        self.work_blocking(Work::Archive(Box::new(req)))
    }

    fn work_blocking(&self, w: Work) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Work(w, ReplyTo::Blocking(tx)))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
    }

    fn send(&self, m: Msg) -> Result<(), AuditError> {
        self.tx
            .as_ref()
            .ok_or(AuditError::Stopped(None))?
            .send(m)
            .map_err(|_| AuditError::Stopped(None))
    }

    /// Append `log.close` and stop the sequencer.
    pub fn close(mut self) -> Result<Receipt, AuditError> {
        self.shutdown()
    }

    /// Append `log.close` and stop the sequencer through a shared handle,
    /// while other handles may remain (a server thread parked for good on a
    /// question its shutdown withdrew, which will never write again). Every
    /// later append through any handle is refused (`Stopped`).
    pub fn close_shared(&self) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Close(ReplyTo::Blocking(tx)))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
    }

    fn shutdown(&mut self) -> Result<Receipt, AuditError> {
        if let Some(b) = self.background.take() {
            b.cancel();
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self.send(Msg::Close(ReplyTo::Blocking(tx)));
        self.tx = None;
        let r = match sent {
            Ok(()) => rx
                .recv()
                .map_err(|_| AuditError::Stopped(None))
                .and_then(|r| r),
            Err(e) => Err(e),
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        r
    }

    /// Wait until the background full verification started at opening
    /// (if one was due) has finished and its result is recorded; returns
    /// whether one ran. For tests and for callers that want the check done
    /// before they continue.
    pub fn wait_for_full_verification(&mut self) -> Result<bool, AuditError> {
        let Some(b) = self.background.take() else {
            return Ok(false);
        };
        b.join();
        // The result reached the sequencer before the thread ended; a
        // round trip through the sequencer makes sure it was handled.
        self.sync_blocking()?;
        Ok(true)
    }

    /// Wait until every entry appended before the call (released ones
    /// too) is written and durable; returns the newest checkpoint's receipt
    /// (the last entry, the size, the signed note).
    pub fn sync_blocking(&self) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Sync(ReplyTo::Blocking(tx)))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
    }

    /// How many entries the start-up check read in full when this log was
    /// opened (what was appended since the previous start-up, or all of
    /// them when a full verification was due).
    pub fn checked_at_start(&self) -> u64 {
        self.checked_at_start
    }

    /// The log's committed size, updated as each commit lands: readers in
    /// this process (the feed hosted by `stele serve`) wait on it instead
    /// of polling the database.
    pub fn commits(&self) -> crate::commit_watch::CommitWatch {
        self.committed.clone()
    }

    /// The database path (symbolic links resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier of the log's current key (the one that signs new
    /// checkpoints; see [`AuditLog::rotate_blocking`]).
    pub fn verifier(&self) -> NoteVerifier {
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A fresh read-only view of the database.
    pub fn store(&self) -> Result<Store, AuditError> {
        Store::open(&self.path)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let _ = self.shutdown();
        }
    }
}
