//! The audit log handle: create or open (with the start-up check), append
//! durably through the one sequencer thread, redact, close.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ring::rand::{SecureRandom as _, SystemRandom};
use rusqlite::{params, Connection, OpenFlags};
use stele_attest::{NoteVerifier, Signer};
use tokio::sync::oneshot;

use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind};
use crate::merkle::Frontier;
use crate::schema::{configure, SCHEMA, SCHEMA_VERSION};
use crate::startup;
use crate::store::Store;
use crate::writer::{Receipt, Work, Writer};

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
    /// How many of the newest leaves to re-verify at start-up.
    pub recheck_tail: u64,
    /// Extra genesis fields (e.g. the policy digest) for a new log.
    pub genesis_data: Option<serde_json::Value>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            heartbeat: Some(Duration::from_secs(60)),
            max_batch: 1024,
            anchor: None,
            system_actor: Actor::system(),
            recheck_tail: 1024,
            genesis_data: None,
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

type Reply = ReplyTo;

enum ReplyTo {
    Async(oneshot::Sender<Result<Receipt, AuditError>>),
    Blocking(mpsc::SyncSender<Result<Receipt, AuditError>>),
}

impl ReplyTo {
    fn send(self, r: Result<Receipt, AuditError>) {
        // A caller that stopped waiting is not an error of the log.
        match self {
            ReplyTo::Async(tx) => drop(tx.send(r)),
            ReplyTo::Blocking(tx) => drop(tx.send(r)),
        }
    }
}

/// Whether a log was just created or already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Fresh,
    Existing,
}

enum Msg {
    Work(Work, Reply),
    Close(Reply),
}

/// An open, writable audit log.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    origin: String,
    verifier: NoteVerifier,
    _lock: File,
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
    /// Create a new log at `path`, signed by `signer` (whose name is the origin).
    pub fn create(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
    ) -> Result<Self, AuditError> {
        if path.exists() {
            return Err(AuditError::Exists(path.to_path_buf()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::Io {
                path: dir.into(),
                source,
            })?;
        }
        let lock = lock(path)?;
        // Built under a temporary name and renamed into place only once the
        // genesis is committed: a crash during creation leaves no half-made
        // log behind (only a stale temporary file, removed next time).
        let tmp = PathBuf::from(format!("{}.creating", path.display()));
        let remove_tmp = || {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
            }
        };
        remove_tmp();
        if let Err(e) = Self::build_fresh(&tmp, signer.clone(), &opts) {
            remove_tmp();
            return Err(e);
        }
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Self::open_locked(path, signer, opts, lock, Opening::Fresh)
    }

    /// Write schema, meta and the genesis entry into a new file, then fold
    /// the WAL into the main file and close it.
    fn build_fresh(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: &LogOptions,
    ) -> Result<(), AuditError> {
        let e = AuditError::sqlite(path);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&e)?;
        configure(&conn).map_err(&e)?;
        let origin = signer.name().to_string();
        let verifier = signer.verifier();
        let mut nonce = [0u8; 16];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AuditError::Invalid("random source failed".into()))?;
        conn.execute_batch(&format!("BEGIN; {SCHEMA}"))
            .map_err(&e)?;
        for (k, v) in [
            ("schema", SCHEMA_VERSION.to_string()),
            ("origin", origin.clone()),
            ("vkey", verifier.to_string()),
        ] {
            conn.execute("INSERT INTO meta(k, v) VALUES (?1, ?2)", params![k, v])
                .map_err(&e)?;
        }
        conn.execute_batch("COMMIT").map_err(&e)?;
        let mut data = serde_json::json!({
            "nonce": hex::encode(nonce),
            "software": opts.system_actor.runtime,
            "vkey": verifier.to_string(),
        });
        if let (Some(extra), Some(obj)) = (&opts.genesis_data, data.as_object_mut()) {
            obj.insert("extra".into(), extra.clone());
        }
        let mut w = Writer {
            conn,
            path: path.to_path_buf(),
            signer,
            origin,
            boot: new_boot_id()?,
            frontier: Frontier::new(),
            last_hash: None,
            last_ts: String::new(),
            sessions: Default::default(),
            open_intents: Default::default(),
            rng: SystemRandom::new(),
            latest_checkpoint: Arc::from(""),
        };
        let genesis = Event::new(EventKind::LogGenesis, opts.system_actor.clone()).with_data(data);
        first_result(w.commit_batch(vec![Work::Append(Box::new(genesis))]))?;
        w.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(&e)?;
        drop(w);
        Ok(())
    }

    /// Open an existing log for writing, after the start-up integrity check.
    pub fn open(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
    ) -> Result<Self, AuditError> {
        if !path.exists() {
            return Err(AuditError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no audit log here"),
            });
        }
        let lock = lock(path)?;
        Self::open_locked(path, signer, opts, lock, Opening::Existing)
    }

    fn open_locked(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
        lock: File,
        opening: Opening,
    ) -> Result<Self, AuditError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| AuditError::NotALog {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        configure(&conn).map_err(|e| AuditError::NotALog {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let verifier = signer.verifier();
        let store = Store::from_conn(conn, path);
        let resume = startup::check(&store, &verifier, opts.anchor.as_deref(), opts.recheck_tail)?;
        if resume.origin != signer.name() {
            return Err(AuditError::WrongKey {
                log_key: resume.origin,
                given: verifier.to_string(),
            });
        }
        let previous_size = resume.frontier.size();
        let mut w = Writer {
            conn: store_into_conn(store),
            path: path.to_path_buf(),
            signer,
            origin: resume.origin.clone(),
            boot: new_boot_id()?,
            frontier: resume.frontier,
            last_hash: resume.last_hash,
            last_ts: String::new(),
            sessions: Default::default(),
            open_intents: resume.open_intents,
            rng: SystemRandom::new(),
            latest_checkpoint: Arc::from(resume.latest_note.as_str()),
        };
        match opening {
            // The genesis entry already marks the start of logging.
            Opening::Fresh => {}
            Opening::Existing => {
                let open = Event::new(EventKind::LogOpen, opts.system_actor.clone())
                    .with_data(serde_json::json!({ "previous_size": previous_size }));
                first_result(w.commit_batch(vec![Work::Append(Box::new(open))]))?;
            }
        }
        Ok(Self::spawn(w, &opts, path, resume.origin, verifier, lock))
    }

    /// Open `path` if it exists, else create it.
    pub fn open_or_create(
        path: &Path,
        signer: Arc<dyn Signer>,
        opts: LogOptions,
    ) -> Result<Self, AuditError> {
        if path.exists() {
            Self::open(path, signer, opts)
        } else {
            Self::create(path, signer, opts)
        }
    }

    fn spawn(
        w: Writer,
        opts: &LogOptions,
        path: &Path,
        origin: String,
        verifier: NoteVerifier,
        lock: File,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let heartbeat = opts.heartbeat;
        let max_batch = opts.max_batch.max(1);
        let actor = opts.system_actor.clone();
        let thread = std::thread::Builder::new()
            .name("stele-audit-sequencer".into())
            .spawn(move || sequencer(w, rx, heartbeat, max_batch, actor))
            .ok();
        Self {
            tx: thread.as_ref().map(|_| tx),
            thread,
            path: path.to_path_buf(),
            origin,
            verifier,
            _lock: lock,
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
    pub fn append_blocking(&self, ev: Event) -> Result<Receipt, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Work(Work::Append(Box::new(ev)), ReplyTo::Blocking(tx)))?;
        rx.recv().map_err(|_| AuditError::Stopped(None))?
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

    fn shutdown(&mut self) -> Result<Receipt, AuditError> {
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

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
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

fn sequencer(
    mut w: Writer,
    rx: mpsc::Receiver<Msg>,
    heartbeat: Option<Duration>,
    max_batch: usize,
    actor: Actor,
) {
    loop {
        let first = match heartbeat {
            Some(d) => match rx.recv_timeout(d) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
        };
        let mut works = Vec::new();
        let mut replies: Vec<Option<Reply>> = Vec::new();
        let mut close = None;
        match first {
            None => {
                let secs = heartbeat.map(|d| d.as_secs()).unwrap_or(0);
                let hb = Event::new(EventKind::Heartbeat, actor.clone())
                    .with_data(serde_json::json!({ "interval_s": secs }));
                works.push(Work::Append(Box::new(hb)));
                replies.push(None);
            }
            Some(m) => {
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Work(wk, r) => {
                            works.push(wk);
                            replies.push(Some(r));
                        }
                        Msg::Close(r) => {
                            close = Some(r);
                            break;
                        }
                    }
                    if works.len() < max_batch {
                        next = rx.try_recv().ok();
                    }
                }
            }
        }
        if !works.is_empty() {
            for (r, res) in replies.into_iter().zip(w.commit_batch(works)) {
                if let Some(r) = r {
                    r.send(res);
                }
            }
        }
        if let Some(r) = close {
            let ev = Event::new(EventKind::LogClose, actor.clone());
            let res = first_result(w.commit_batch(vec![Work::Append(Box::new(ev))]));
            r.send(res);
            return;
        }
    }
}

fn first_result(mut v: Vec<Result<Receipt, AuditError>>) -> Result<Receipt, AuditError> {
    v.pop().unwrap_or(Err(AuditError::Stopped(None)))
}

fn store_into_conn(store: Store) -> Connection {
    store.into_conn()
}

fn new_boot_id() -> Result<String, AuditError> {
    let mut b = [0u8; 8];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| AuditError::Invalid("random source failed".into()))?;
    Ok(hex::encode(b))
}

/// Take the single-writer lock beside the database.
fn lock(path: &Path) -> Result<File, AuditError> {
    let lp = PathBuf::from(format!("{}.lock", path.display()));
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lp)
        .map_err(|source| AuditError::Io {
            path: lp.clone(),
            source,
        })?;
    // A fork in another thread shares this lock until the child execs
    // (close-on-exec), and a writer that is closing releases it a moment
    // later: wait briefly before calling the log busy.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Busy(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(AuditError::Io { path: lp, source })
            }
        }
    }
}
