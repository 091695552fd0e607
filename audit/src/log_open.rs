//! Creating and opening a log: private files, the one-writer lock on the
//! database file, the start-up check, and the writer it resumes.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom as _, SystemRandom};
use rusqlite::{params, Connection, OpenFlags};
use stele_attest::private_fs;
use stele_attest::Signer;

use crate::clock::{ns_of_ts, ClockState, ClockWatch, Reason};
use crate::error::AuditError;
use crate::event::{Event, EventKind};
use crate::full_check::Background;
use crate::leaf::Leaf;
use crate::log::{AuditLog, LogOptions};
use crate::marker::{Finding, FullCheck, FULL_CHECK, VERIFIED_THROUGH};
use crate::merkle::Frontier;
use crate::schema::{configure, ARCHIVE_TRIGGERS, SCHEMA, SCHEMA_VERSION};
use crate::startup::{self, FullDue, Refusal};
use crate::store::Store;
use crate::writer::{Work, Writer};
use crate::writer_lock;

/// Whether a log was just created or already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    Fresh,
    Existing,
}

/// The database and the files SQLite keeps beside it.
const SIDE_FILES: [&str; 3] = ["", "-wal", "-shm"];

pub(crate) fn create(
    path: &Path,
    signer: Arc<dyn Signer>,
    opts: LogOptions,
) -> Result<AuditLog, AuditError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| AuditError::Io { path: p, source }
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(AuditError::Exists(path.to_path_buf()));
    }
    let name = path
        .file_name()
        .ok_or_else(|| AuditError::Invalid(format!("{} names no file", path.display())))?;
    let parent = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_fs::create_dir_all(parent).map_err(io(parent))?;
    let dir = writer_lock::canonical(parent)?;
    let path = dir.join(name);
    // One creator per folder at a time (a folder reached by two names is
    // one folder): the temporary name below is then ours alone.
    let dir_lock = File::open(&dir).map_err(io(&dir))?;
    lock_within(&dir_lock, opts.lock_wait).map_err(|e| match e {
        None => AuditError::Busy(path.clone()),
        Some(source) => AuditError::Io {
            path: dir.clone(),
            source,
        },
    })?;
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(AuditError::Exists(path));
    }
    // Built under a temporary name and moved into place only once the
    // genesis is committed: a crash during creation leaves no half-made
    // log behind (only a stale temporary file, removed next time).
    let tmp = dir.join(format!("{}.creating", name.to_string_lossy()));
    let remove_tmp = || {
        for suffix in SIDE_FILES {
            let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
        }
    };
    remove_tmp();
    // SQLite gives its side files the database file's mode: 0600 here.
    drop(private_fs::create_new_file(&tmp).map_err(io(&tmp))?);
    if let Err(e) = build_fresh(&tmp, signer.clone(), &opts) {
        remove_tmp();
        return Err(e);
    }
    if let Err(e) = rename_noreplace(&tmp, &path) {
        remove_tmp();
        return Err(match e.kind() {
            std::io::ErrorKind::AlreadyExists => AuditError::Exists(path),
            _ => AuditError::Io { path, source: e },
        });
    }
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    drop(dir_lock);
    start(&path, signer, opts, Opening::Fresh)
}

pub(crate) fn open(
    path: &Path,
    signer: Arc<dyn Signer>,
    opts: LogOptions,
) -> Result<AuditLog, AuditError> {
    if !path.exists() {
        return Err(AuditError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no audit log here"),
        });
    }
    let path = writer_lock::canonical(path)?;
    tighten(&path)?;
    start(&path, signer, opts, Opening::Existing)
}

/// Remove group and other permissions from the database and its side
/// files, saying so.
fn tighten(path: &Path) -> Result<(), AuditError> {
    for suffix in SIDE_FILES {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match private_fs::tighten(&p) {
            Ok(Some(old)) => tracing::warn!(
                "{} was readable by others (mode {old:o}); it holds prompts and file contents: now 0600",
                p.display()
            ),
            Ok(None) => {}
            Err(source) => return Err(AuditError::Io { path: p, source }),
        }
    }
    Ok(())
}

/// Lock, check, resume and start the sequencer (and, when one is due, the
/// background full verification).
fn start(
    path: &Path,
    signer: Arc<dyn Signer>,
    opts: LogOptions,
    opening: Opening,
) -> Result<AuditLog, AuditError> {
    let lock = writer_lock::acquire(path, opts.lock_wait)?;
    let verifier = signer.verifier();
    let (w, due, checked) = prepare(path, signer, &opts, opening)?;
    let origin = w.origin.clone();
    let committed = w.committed.clone();
    let (tx, rx) = mpsc::channel();
    let background = match due {
        FullDue::Background => Background::spawn(
            path.to_path_buf(),
            verifier.clone(),
            opts.anchor.clone(),
            opts.full_verification.start_after,
            tx.clone(),
        ),
        FullDue::No | FullDue::Done(_) => None,
    };
    let heartbeat = opts.heartbeat;
    let shared = Arc::new(crate::ordering::Shared::new(w, opts.max_batch));
    let actor = opts.system_actor.clone();
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("stele-audit-sequencer".into())
        .spawn(move || crate::sequencer::run(for_thread, rx, heartbeat, actor))
        .ok();
    Ok(AuditLog {
        tx: thread.as_ref().map(|_| tx),
        shared,
        thread,
        path: path.to_path_buf(),
        origin,
        verifier: std::sync::RwLock::new(verifier),
        background,
        checked_at_start: checked,
        committed,
        _lock: lock,
    })
}

/// Open the write connection, run the start-up check and build the writer
/// that continues the log (its `log.open` entry and verification markers
/// committed). The caller holds the writer lock.
pub(crate) fn prepare(
    path: &Path,
    signer: Arc<dyn Signer>,
    opts: &LogOptions,
    opening: Opening,
) -> Result<(Writer, FullDue, u64), AuditError> {
    let not_a_log = |e: rusqlite::Error| AuditError::NotALog {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(not_a_log)?;
    configure(&conn).map_err(not_a_log)?;
    let verifier = signer.verifier();
    let store = Store::from_conn(conn, path);
    store.check_is_log()?;
    crate::schema::upgrade(store.conn()).map_err(AuditError::sqlite(path))?;
    let now = crate::marker::now_secs();
    let checked = startup::check(
        &store,
        &verifier,
        opts.anchor.as_deref(),
        opts.full_verification,
        opts.recheck_tail,
        now,
    );
    let (resume, altered) = match checked {
        Ok(r) => (r, None),
        Err(Refusal::Broken(e)) => return Err(e),
        Err(Refusal::Altered {
            check,
            index,
            reason,
            resume,
        }) => (*resume, Some((check, index, reason))),
    };
    if resume.origin != signer.name() {
        return Err(AuditError::WrongKey {
            log_key: resume.origin,
            given: verifier.to_string(),
        });
    }
    let (due, checked) = (resume.full, resume.checked_entries);
    let verified = resume.verified;
    let previous_size = resume.frontier.size();
    let mut w = Writer::new(
        store.into_conn(),
        path,
        signer,
        resume.keys,
        resume.frontier,
        resume.last_hash,
        resume.open_intents,
        &resume.latest_note,
    )?;
    w.clock = opts.clock.0.clone();
    w.actor = opts.system_actor.clone();
    w.watch = newest_clock(&w.conn);
    if let Some((check, index, reason)) = altered {
        if let Err(e) = w.record_alteration(check, index, &reason, opts.system_actor.clone()) {
            tracing::error!("could not record the audit alert: {e}");
        }
        return Err(AuditError::Integrity {
            index: index.unwrap_or(0),
            reason: format!(
                "the {check} check found the log altered: {reason} (an audit.alert entry records it; the log refuses further writes)"
            ),
        });
    }
    w.pending_meta
        .push((VERIFIED_THROUGH, verified.sign(w.signer.as_ref())?));
    w.verified_size = verified.size;
    if let FullDue::Done(at) = due {
        let full = FullCheck {
            size: verified.size,
            root: verified.root,
            at,
            finding: Finding::Verified,
        };
        w.pending_meta
            .push((FULL_CHECK, full.sign(w.signer.as_ref())?));
    }
    match opening {
        // The genesis entry already marks the start of logging (and
        // carries the clock's state).
        Opening::Fresh => w.flush_meta()?,
        Opening::Existing => {
            // Logging starts with the clock's state (R16).
            let clock = w.watch.state_now(w.clock.as_ref(), Reason::Open);
            let open = Event::new(EventKind::LogOpen, opts.system_actor.clone())
                .with_data(serde_json::json!({ "previous_size": previous_size, "clock": clock }));
            first_result(w.commit_batch(vec![Work::Append(Box::new(open))]))?;
        }
    }
    Ok((w, due, checked))
}

/// Write schema, meta and the genesis entry into a new file, then fold
/// the WAL into the main file and close it.
fn build_fresh(path: &Path, signer: Arc<dyn Signer>, opts: &LogOptions) -> Result<(), AuditError> {
    let e = AuditError::sqlite(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&e)?;
    configure(&conn).map_err(&e)?;
    let origin = signer.name().to_string();
    let verifier = signer.verifier();
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| AuditError::Invalid("random source failed".into()))?;
    conn.execute_batch(&format!("BEGIN; {SCHEMA} {ARCHIVE_TRIGGERS}"))
        .map_err(&e)?;
    for (k, v) in [
        ("schema", SCHEMA_VERSION.to_string()),
        ("origin", origin),
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
    let mut w = Writer::new(
        conn,
        path,
        signer,
        crate::keys::KeySchedule::single(&verifier.to_string()),
        Frontier::new(),
        None,
        Default::default(),
        "",
    )?;
    w.clock = opts.clock.0.clone();
    if let Some(obj) = data.as_object_mut() {
        obj.insert(
            "clock".into(),
            w.watch.state_now(w.clock.as_ref(), Reason::Open),
        );
    }
    let genesis = Event::new(EventKind::LogGenesis, opts.system_actor.clone()).with_data(data);
    first_result(w.commit_batch(vec![Work::Append(Box::new(genesis))]))?;
    w.conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(&e)?;
    drop(w);
    Ok(())
}

fn first_result(
    mut v: Vec<Result<crate::writer::Receipt, AuditError>>,
) -> Result<crate::writer::Receipt, AuditError> {
    v.pop().unwrap_or(Err(AuditError::Stopped(None)))
}

/// The clock watch of a writer continuing the log: the time its newest
/// entry carries (a writer whose clock reads earlier logs a step) and, when
/// that entry is the genesis of a log just created, the clock state it
/// recorded.
fn newest_clock(conn: &Connection) -> ClockWatch {
    let leaf: Option<Vec<u8>> = conn
        .query_row(
            "SELECT leaf FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok();
    let Some(leaf) = leaf.and_then(|b| Leaf::parse_canonical(&b).ok()) else {
        return ClockWatch::new(None, None);
    };
    let logged = match leaf.kind {
        EventKind::LogGenesis => leaf
            .data
            .as_ref()
            .and_then(|d| d.get("clock"))
            .and_then(ClockState::of_data),
        _ => None,
    };
    ClockWatch::new(ns_of_ts(&leaf.ts), logged)
}

/// A new boot id: 16 lowercase hex digits.
pub(crate) fn new_boot_id() -> Result<String, AuditError> {
    let mut b = [0u8; 8];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| AuditError::Invalid("random source failed".into()))?;
    Ok(hex::encode(b))
}

/// `flock` `f`, waiting up to `wait`; `Err(None)` when still held then.
fn lock_within(f: &File, wait: Duration) -> Result<(), Option<std::io::Error>> {
    let deadline = Instant::now() + wait;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(Some(e)),
        }
    }
}

/// Rename `from` to `to` unless `to` exists (then `AlreadyExists`): a log
/// created meanwhile under the same name is never replaced.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
