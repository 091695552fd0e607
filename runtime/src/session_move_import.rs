//! `stele session import` as a library call: verify a session bundle made
//! by [`crate::session_move::export_session`] with a trusted key of its
//! log (never only the key inside the file), and start the session again
//! in this log — a `session.start` at `n` = 0 with the same id, whose
//! `data.continues` links it to the bundle and whose `conversation`
//! payload holds the conversation so far — keeping the bundle beside the
//! database for later exports. The session then resumes as any other
//! (`stele session resume`, [`crate::session_resume`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stele_attest::NoteVerifier;
use stele_audit::event::{Actor, Disclosure, PayloadInput};
use stele_audit::export::earlier::{
    bundle_digest, imported_bundle_path, is_moved_end, is_session_end, unknown_intents, Continues,
    Failover, SliceCheckpoint, SliceLast, CONTINUES_MEMBER,
};
use stele_audit::leaf::hash_b64;
use stele_audit::merkle::Hash;
use stele_audit::{AuditLog, Event, EventKind};
use stele_verify::slice::SessionSlice;

use crate::conversation::{self, Bodies, Stopped};
use crate::session_move::{MoveError, CONVERSATION_ROLE};

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest<'a> {
    /// The bundle file (`.tar`) `stele session export` wrote.
    pub file: &'a Path,
    /// The source log keys trusted (`--vkey`); the bundle must verify with one.
    pub trusted: &'a [NoteVerifier],
    /// Where the session's workspace is on this machine (default: where
    /// it was on the source).
    pub workspace: Option<PathBuf>,
    /// The policy bundle to continue under (default: the copy in the file,
    /// which must be the one the session last ran with).
    pub policy: Option<PathBuf>,
    /// How the session left its source log.
    pub departure: Departure<'a>,
}

/// How a session left the log its bundle comes from.
#[derive(Debug, Clone, Copy)]
pub enum Departure<'a> {
    /// A person moved it (`stele session export`): the bundle ends with the
    /// source's moved `session.end`, its manifest signed by the source log key.
    Moved,
    /// The worker running it stopped: a team server wrote the bundle from
    /// what it held of that worker's log (its manifest signed by
    /// `exporter`), and the session ends nowhere in it. Calls whose result
    /// the bundle does not show are told to the model as unknown, never
    /// run again.
    WorkerStopped {
        /// The team server's export key.
        exporter: &'a NoteVerifier,
        /// Why, for people (which worker stopped).
        why: &'a str,
    },
}

/// What [`import_session`] did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The session id.
    pub id: String,
    /// The source log's origin.
    pub origin: String,
    /// The key the bundle verified with.
    pub key: NoteVerifier,
    /// The session's entries in the bundle.
    pub entries: u64,
    /// The `session.start` written here.
    pub start_entry: u64,
    /// Messages in the conversation carried over.
    pub messages: usize,
    /// The workspace it continues in.
    pub workspace: PathBuf,
    /// The policy bundle it continues under.
    pub policy: PathBuf,
    /// Where the bundle is kept.
    pub kept: PathBuf,
}

/// A key's short form for people: its name and C2SP key id.
pub fn fingerprint(k: &NoteVerifier) -> String {
    format!("{}+{}", k.name(), hex::encode(k.key_id()))
}

/// Import the session in `req.file` into `log` (whose database is `db`).
/// Refused, with nothing written to the log, when the file does not verify
/// with a trusted key, is not a session that moved, is already in this log,
/// or its workspace or policy cannot be used here.
pub fn import_session(
    log: &AuditLog,
    db: &Path,
    req: &ImportRequest<'_>,
) -> Result<Imported, MoveError> {
    let refused = |r: String| MoveError::Refused(r);
    let shown = req.file.display();
    if !req.file.is_file() {
        return Err(refused(format!(
            "{shown} is not a file (give the .tar that `stele session export` wrote)"
        )));
    }
    let bytes = std::fs::read(req.file).map_err(|e| refused(format!("{shown}: {e}")))?;
    let (key, slice) = verified(req.file, req.trusted, req.departure)?;
    let id = slice.id.clone();
    let last = match req.departure {
        Departure::Moved => slice.leaves.last().filter(|l| is_moved_end(l)).ok_or_else(|| {
            refused(format!(
                "{shown}: session {id} did not leave its log (its last entry is not a session.end that records a move): make the file with `stele session export` on the source machine"
            ))
        })?,
        Departure::WorkerStopped { .. } => {
            slice.leaves.last().filter(|l| !is_session_end(l)).ok_or_else(|| {
                refused(format!(
                    "{shown}: session {id} ended in its worker's log: there is nothing to continue"
                ))
            })?
        }
    };
    let store = log.store()?;
    if !conversation::session_leaves(&store, &id)?.is_empty() {
        return Err(refused(format!(
            "session {id} is already in this log (imported before, or it ran here): not imported again"
        )));
    }
    // The conversation as the source left it (without its moved end).
    let (before_end, stopped) = match req.departure {
        Departure::Moved => (&slice.leaves[..slice.leaves.len() - 1], Stopped::InThisLog),
        Departure::WorkerStopped { .. } => (&slice.leaves[..], Stopped::WorkerLost),
    };
    let from = crate::session_resume::conversation_of(
        &SliceBodies(&slice.bodies),
        &id,
        before_end,
        stopped,
    )
    .map_err(|e| {
        refused(format!(
            "{shown}: the conversation cannot be rebuilt: {e:#}"
        ))
    })?;
    let facts = Facts::of(&slice)?;
    let workspace = req.workspace.clone().unwrap_or(facts.workspace.clone());
    if !workspace.is_dir() {
        return Err(refused(format!(
            "the session's workspace {} is not a folder on this machine: give --workspace DIR (its files do not travel in the bundle)",
            workspace.display()
        )));
    }
    let kept = imported_bundle_path(db, &id);
    let policy = match &req.policy {
        Some(p) => p.clone(),
        None => unpack_policy(&slice, &kept, &facts)?,
    };
    let bundle = stele_policy::Bundle::load(&policy)
        .map_err(|e| refused(format!("policy bundle {}: {e}", policy.display())))?;
    keep(&kept, &bytes)?;
    let continues = Continues {
        origin: slice.origin.clone(),
        vkey: key.to_string(),
        checkpoint: SliceCheckpoint {
            size: slice.tree_size,
            root: slice.root.clone(),
        },
        last: SliceLast {
            seq: last.seq,
            hash: hash_b64(&slice.last_hash),
            n: last.session.as_ref().map_or(0, |s| s.n),
        },
        bundle: bundle_digest(&bytes),
        failover: match req.departure {
            Departure::Moved => None,
            Departure::WorkerStopped { exporter, why } => Some(Failover {
                exporter: exporter.to_string(),
                why: why.to_string(),
                unknown: unknown_intents(&slice.leaves),
            }),
        },
    };
    let mut data = facts.carried.clone();
    data.insert("workspace".into(), workspace.display().to_string().into());
    data.insert("policy_root".into(), policy.display().to_string().into());
    data.insert("policy_bundle".into(), bundle.digest().to_string().into());
    data.insert(
        CONTINUES_MEMBER.into(),
        serde_json::to_value(&continues).map_err(|e| refused(e.to_string()))?,
    );
    let mut actor = Actor::system();
    actor.principal = facts.principal.clone();
    actor.teams = bundle
        .members()
        .teams_of(&facts.principal)
        .map(str::to_string)
        .collect();
    let messages = from.messages.len();
    let body = serde_json::to_vec(&from.messages).map_err(|e| refused(e.to_string()))?;
    let r = log.append_blocking(
        Event::new(EventKind::SessionStart, actor)
            .in_session(&id)
            .with_data(serde_json::Value::Object(data))
            .with_payload(PayloadInput {
                role: CONVERSATION_ROLE.into(),
                media: "application/json".into(),
                body,
                disclosure: Disclosure::CommitmentOnly,
            }),
    )?;
    Ok(Imported {
        id,
        origin: slice.origin.clone(),
        key,
        entries: slice.leaves.len() as u64,
        start_entry: r.seq,
        messages,
        workspace,
        policy,
        kept,
    })
}

/// The bundle verified in full (the code `stele-verify` runs) with the
/// first trusted key it verifies with, and its session read back.
fn verified(
    file: &Path,
    trusted: &[NoteVerifier],
    departure: Departure<'_>,
) -> Result<(NoteVerifier, SessionSlice), MoveError> {
    let refused = |r: String| MoveError::Refused(r);
    let shown = file.display();
    if trusted.is_empty() {
        return Err(refused(format!(
            "{shown}: no trusted key for the source log: give its verifier key with --vkey (obtained from the source machine: `stele keys show`), never only the key inside the file"
        )));
    }
    let bundle = stele_verify::Bundle::open(file).map_err(|e| refused(format!("{shown}: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut first_failure = None;
    for k in trusted {
        let opts = stele_verify::Options {
            log_key: k.clone(),
            more_keys: Vec::new(),
            revoked: Vec::new(),
            export_key: match departure {
                Departure::Moved => None,
                Departure::WorkerStopped { exporter, .. } => Some(exporter.clone()),
            },
            witnesses: Vec::new(),
            quorum: None,
            anchors: Vec::new(),
            now,
            tsa: None,
        };
        let checked = match departure {
            Departure::Moved => {
                stele_verify::verify_producing(&bundle, &opts, stele_verify::Produce::Result)
            }
            Departure::WorkerStopped { .. } => stele_verify::verify_session_prefix(&bundle, &opts),
        };
        match checked {
            Ok(_) => {
                let slice = stele_verify::slice::read_session(&bundle, &opts)
                    .map_err(|e| refused(format!("{shown}: {e}")))?;
                return Ok((k.clone(), slice));
            }
            Err(e) => {
                first_failure.get_or_insert((k.clone(), e));
            }
        }
    }
    let (k, e) = first_failure.ok_or_else(|| refused("no key".into()))?;
    Err(refused(format!(
        "{shown} does not verify with the trusted key {}: {e}",
        fingerprint(&k)
    )))
}

/// What the source's `session.start` recorded that the session continues
/// with, and the policy bundle it last ran under.
struct Facts {
    principal: String,
    workspace: PathBuf,
    /// `model_spec`, `network`, `sandbox_backend`, `approve`, as recorded.
    carried: serde_json::Map<String, serde_json::Value>,
    /// The engine digest of the policy bundle it last ran with.
    policy_digest: Option<String>,
}

impl Facts {
    fn of(slice: &SessionSlice) -> Result<Self, MoveError> {
        let refused = |r: String| MoveError::Refused(r);
        let start = slice
            .leaves
            .first()
            .filter(|l| l.kind == EventKind::SessionStart)
            .ok_or_else(|| refused("the bundle's session has no session.start".into()))?;
        let data = start.data.clone().unwrap_or_default();
        let mut carried = serde_json::Map::new();
        for k in ["model_spec", "network", "sandbox_backend", "approve"] {
            if let Some(v) = data.get(k).filter(|v| v.is_string()) {
                carried.insert(k.into(), v.clone());
            }
        }
        let workspace = data
            .get("workspace")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
            .ok_or_else(|| refused("the session's session.start names no workspace".into()))?;
        let policy_digest = slice
            .leaves
            .iter()
            .rev()
            .filter(|l| matches!(l.kind, EventKind::PolicyLoad | EventKind::SessionStart))
            .find_map(|l| {
                l.data
                    .as_ref()?
                    .get("policy_bundle")?
                    .as_str()
                    .map(str::to_string)
            });
        Ok(Self {
            principal: start.actor.principal.clone(),
            workspace,
            carried,
            policy_digest,
        })
    }
}

/// The policy bundle copy in the file, written beside the kept bundle; it
/// must be the one the session last ran with (its engine digest).
fn unpack_policy(slice: &SessionSlice, kept: &Path, facts: &Facts) -> Result<PathBuf, MoveError> {
    let refused = |r: String| MoveError::Refused(r);
    let Some((_, files)) = slice.policies.iter().next() else {
        return Err(refused(
            "the file holds no copy of the session's policy bundle: give --policy DIR".into(),
        ));
    };
    let dir = kept.with_extension("policy");
    let _ = std::fs::remove_dir_all(&dir);
    for (rel, body) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            stele_attest::private_fs::create_dir_all(parent)
                .map_err(|e| refused(format!("{}: {e}", parent.display())))?;
        }
        use std::io::Write as _;
        stele_attest::private_fs::create_file(&p)
            .and_then(|mut f| f.write_all(body))
            .map_err(|e| refused(format!("{}: {e}", p.display())))?;
    }
    let b = stele_policy::Bundle::load(&dir)
        .map_err(|e| refused(format!("the policy bundle in the file does not load: {e}")))?;
    if facts.policy_digest.as_deref() != Some(&b.digest().to_string()) {
        return Err(refused(format!(
            "the policy bundle in the file ({}) is not the one the session last ran with ({}): give --policy DIR",
            b.digest(),
            facts.policy_digest.as_deref().unwrap_or("not recorded")
        )));
    }
    Ok(dir)
}

/// Write the bundle to `kept` durably (a temporary file, synced, renamed).
fn keep(kept: &Path, bytes: &[u8]) -> Result<(), MoveError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| MoveError::Refused(format!("keeping {}: {e}", kept.display()));
    let dir = kept.parent().unwrap_or(Path::new("."));
    stele_attest::private_fs::create_dir_all(dir).map_err(io)?;
    let tmp = kept.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = stele_attest::private_fs::create_new_file(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, kept).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Payload bodies from a bundle.
struct SliceBodies<'a>(&'a BTreeMap<Hash, Vec<u8>>);

impl Bodies for SliceBodies<'_> {
    fn body(&self, commit: &Hash) -> Result<Option<Vec<u8>>, stele_audit::AuditError> {
        Ok(self.0.get(commit).cloned())
    }
}
