//! The sequencer's state and its group commit: everything that happens on the
//! one thread that owns the write connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ring::rand::SystemRandom;
use rusqlite::{Connection, OptionalExtension};
use stele_attest::Signer;

use crate::clock::{ClockSource, ClockWatch};
use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind, IntentRole};
use crate::leaf::{hash_b64, parse_hash_b64, Leaf, SessionLink, LEAF_VERSION};
use crate::leaf_view::LeafView;
use crate::merkle::{leaf_hash, CompletedNode, Frontier, Hash};
use crate::payload::{commit_text, parse_commit, seal, SealedPayload};

mod archive;
mod batch;
mod clock;
mod commit;
pub(crate) mod erasure;
mod rotate;

pub(crate) use batch::Prepared;
pub use batch::Sequenced;
pub(crate) use rotate::KeyChange;

/// What an acknowledged append returns: the entry is durable and covered by
/// the signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Index of the entry.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// Tree size of the checkpoint that covers it.
    pub size: u64,
    /// The signed checkpoint note committed with it.
    pub checkpoint: Arc<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct SessionState {
    pub n: u64,
    pub head: Hash,
    pub ended: bool,
}

/// Undo information for one batch, applied when its transaction fails.
#[derive(Default)]
pub(crate) struct Undo {
    frontier: Frontier,
    last_hash: Option<Hash>,
    sessions: Vec<(String, Option<SessionState>)>,
    intents_added: Vec<u64>,
    intents_removed: Vec<(u64, (EventKind, Hash))>,
    last_ts: String,
    /// The clock watch before the batch.
    watch: ClockWatch,
    /// Payload commitments of the batch's entries built so far (not yet in the table).
    batch_commits: HashMap<Hash, u64>,
    /// Payloads erased by the batch's entries built so far.
    batch_erased: std::collections::HashSet<Hash>,
    /// The legal holds before the batch first changed them.
    holds: Option<Option<crate::holds::HoldBook>>,
    /// Set by a `log.archive` in the batch: entries below it are going.
    archive_below: Option<u64>,
}

/// One entry built and validated, ready to insert.
pub(crate) struct Built {
    seq: u64,
    kind: EventKind,
    session: Option<(String, u64)>,
    closes: Option<u64>,
    leaf: Vec<u8>,
    hash: Hash,
    /// Internal tree nodes this leaf completes (hashed once, stored once).
    nodes: Vec<CompletedNode>,
    payloads: Vec<SealedPayload>,
    /// Payloads this entry erases (redaction, expiry).
    redactions: Vec<Hash>,
    /// A `hold.*` entry (indexed in `hold_entries`).
    hold_entry: bool,
    /// A `log.archive` entry: the row to keep; the prefix goes.
    archive: Option<crate::archive::ArchivedRow>,
}

/// The sequencer's state.
pub(crate) struct Writer {
    pub conn: Connection,
    pub path: PathBuf,
    pub signer: Arc<dyn Signer>,
    pub origin: String,
    /// The log's genesis verifier key, text form (the genesis entry names
    /// it; the rules check it there).
    pub log_key: String,
    /// Every key of the log with its range; the last one is `signer`'s.
    pub keys: crate::keys::KeySchedule,
    /// During a rotation's commit: the new key, which signs its checkpoint
    /// too (the boundary checkpoint carries both signatures).
    pub co_signer: Option<Arc<dyn Signer>>,
    pub boot: String,
    pub frontier: Frontier,
    pub last_hash: Option<Hash>,
    pub last_ts: String,
    pub sessions: HashMap<String, SessionState>,
    pub open_intents: HashMap<u64, (EventKind, Hash)>,
    pub rng: SystemRandom,
    pub latest_checkpoint: Arc<str>,
    /// `meta` notes to write with the next commit (verification markers).
    pub pending_meta: Vec<(&'static str, String)>,
    /// Set when the log was found altered: every append is refused.
    pub refused: Option<String>,
    /// Size of the newest verified-through marker recorded.
    pub verified_size: u64,
    /// Where the tree's internal nodes go.
    pub tree: crate::schema::TreeLayout,
    /// The legal holds (read from the log when first needed).
    pub holds: Option<crate::holds::HoldBook>,
    /// Where time comes from.
    pub clock: Arc<dyn ClockSource>,
    /// What the clock did so far (steps, logged state).
    pub watch: ClockWatch,
    /// The time the entries being built carry (read once per batch).
    now: String,
    /// The actor of entries the writer adds itself (`clock.*`).
    pub actor: Actor,
    /// Told the size after each commit (readers in this process wake on it).
    pub committed: crate::commit_watch::CommitWatch,
}

/// A request to the sequencer that needs an entry.
pub(crate) enum Work {
    Append(Box<Event>),
    Redact {
        commits: Vec<String>,
        reason: String,
        actor: Actor,
    },
    /// Erase payloads past their retention (`payload.expiry`).
    Expire(Box<crate::writer::erasure::ExpiryRequest>),
    /// Place a legal hold.
    PlaceHold {
        scope: crate::holds::HoldScope,
        reason: String,
        config: Option<String>,
        actor: Actor,
    },
    /// Approve the release of a legal hold (the second approval releases it).
    ReleaseHold {
        hold: u64,
        reason: String,
        config: Option<String>,
        actor: Actor,
    },
    /// A `key.rotation` or `key.revocation` entry built by the writer
    /// itself (`rotate`): the only way such an entry enters the log.
    Keys(Box<Event>),
    /// Archive a sealed prefix (`log.archive`).
    Archive(Box<crate::archive::ArchiveRequest>),
}

impl Writer {
    /// A writer continuing the tree `frontier` (empty for a new log),
    /// whose keys are `keys` (the current one `signer`'s).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: Connection,
        path: &std::path::Path,
        signer: Arc<dyn Signer>,
        keys: crate::keys::KeySchedule,
        frontier: Frontier,
        last_hash: Option<Hash>,
        open_intents: HashMap<u64, (EventKind, Hash)>,
        latest_note: &str,
    ) -> Result<Self, AuditError> {
        let tree = crate::schema::TreeLayout::of(&conn).map_err(AuditError::sqlite(path))?;
        let frontier_size = frontier.size();
        Ok(Self {
            tree,
            conn,
            path: path.to_path_buf(),
            origin: signer.name().to_string(),
            log_key: keys.first().to_string(),
            keys,
            co_signer: None,
            signer,
            boot: crate::log_open::new_boot_id()?,
            frontier,
            last_hash,
            last_ts: String::new(),
            sessions: HashMap::new(),
            open_intents,
            rng: SystemRandom::new(),
            latest_checkpoint: Arc::from(latest_note),
            pending_meta: Vec::new(),
            refused: None,
            verified_size: 0,
            holds: None,
            clock: crate::clock::ClockHandle::default().0,
            watch: ClockWatch::default(),
            now: String::new(),
            actor: Actor::system(),
            committed: crate::commit_watch::CommitWatch::new(frontier_size),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
        AuditError::sqlite(&self.path)
    }

    /// Validate one item and turn it into a leaf, advancing the in-memory
    /// state (recorded in `undo`). On error the state is untouched.
    pub(crate) fn build(&mut self, w: Work, undo: &mut Undo) -> Result<Built, AuditError> {
        let seq = self.frontier.size();
        let mut archive = None;
        let (mut ev, redactions) = match w {
            Work::Append(ev) => {
                if crate::writer::erasure::dedicated(ev.kind) {
                    return Err(AuditError::Invalid(format!(
                        "{} entries are written only by the log's own retention, hold and archive calls",
                        ev.kind
                    )));
                }
                if matches!(ev.kind, EventKind::KeyRotation | EventKind::KeyRevocation) {
                    return Err(AuditError::Invalid(format!(
                        "{} entries are written only by the log's own key rotation and revocation",
                        ev.kind
                    )));
                }
                (*ev, Vec::new())
            }
            Work::Keys(ev) => (*ev, Vec::new()),
            Work::Redact {
                commits,
                reason,
                actor,
            } => self.redaction_event(commits, reason, actor, seq, undo)?,
            Work::Expire(req) => self.expiry_event(*req, seq, undo)?,
            Work::PlaceHold {
                scope,
                reason,
                config,
                actor,
            } => (
                self.place_hold_event(scope, reason, config, actor)?,
                Vec::new(),
            ),
            Work::ReleaseHold {
                hold,
                reason,
                config,
                actor,
            } => (
                self.release_hold_event(hold, reason, config, actor, seq)?,
                Vec::new(),
            ),
            Work::Archive(req) => {
                let (ev, row) = self.archive_event(*req, seq, undo)?;
                archive = Some(row);
                (ev, Vec::new())
            }
        };
        let session = match &ev.session {
            Some(id) => Some(self.session_link(id, ev.kind)?),
            None => {
                if matches!(
                    ev.kind,
                    EventKind::SessionStart | EventKind::SessionEnd | EventKind::SessionInterrupted
                ) {
                    return Err(AuditError::Invalid(format!(
                        "{} needs a session id",
                        ev.kind
                    )));
                }
                None
            }
        };
        let closes = self.check_refs(&ev)?;
        if ev.kind == EventKind::SessionStart {
            self.clock_into_session_start(&mut ev)?;
        }
        let mut payloads = ev
            .payloads
            .into_iter()
            .map(|p| seal(&self.rng, p))
            .collect::<Result<Vec<_>, _>>()?;
        for p in &ev.sealed {
            self.check_sealed(p, undo)?;
        }
        payloads.extend(ev.sealed);
        for r in &ev.shared {
            self.check_shared(r, undo)?;
        }
        // Never earlier than the entry before: a clock that stepped back
        // is recorded by a `clock.step` entry (crate::clock), and the
        // entries carry the last time until it has caught up again.
        let ts = if self.now > self.last_ts {
            self.now.clone()
        } else {
            self.last_ts.clone()
        };
        let leaf = Leaf {
            actor: ev.actor,
            boot: self.boot.clone(),
            data: ev.data,
            decision: ev.decision,
            kind: ev.kind,
            log: self.origin.clone(),
            outcome: ev.outcome,
            payload: payloads
                .iter()
                .map(|p| p.reference.clone())
                .chain(ev.shared)
                .collect(),
            prev: self.last_hash.as_ref().map(hash_b64),
            refs: ev.refs,
            seq,
            session: session.clone(),
            target: ev.target,
            ts: ts.clone(),
            v: LEAF_VERSION,
        };
        let bytes = leaf.encode()?;
        // Never write what a verifier would reject.
        let view = match LeafView::scan(&bytes) {
            Some(v) => crate::rules::check_values(&v, &self.log_key),
            None => Leaf::parse_canonical(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|l| crate::rules::check_values(&LeafView::of(&l), &self.log_key)),
        };
        view.map_err(|why| AuditError::Invalid(format!("{}: {why}", ev.kind)))?;
        let hold_entry = matches!(ev.kind, EventKind::HoldPlace | EventKind::HoldRelease);
        if hold_entry {
            self.record_hold(ev.kind, seq, &leaf, undo)?;
        }
        let hash = leaf_hash(&bytes);
        // Validation is over: from here on, advance state.
        let mut nodes = Vec::new();
        self.frontier.push(hash, |n| nodes.push(n));
        self.last_hash = Some(hash);
        self.last_ts = ts;
        if let Some(link) = session.clone() {
            let old = self.sessions.get(&link.id).cloned();
            undo.sessions.push((link.id.clone(), old));
            let ended = matches!(
                ev.kind,
                EventKind::SessionEnd | EventKind::SessionInterrupted
            );
            self.sessions.insert(
                link.id,
                SessionState {
                    n: link.n,
                    head: hash,
                    ended,
                },
            );
        }
        if let Some(intent_seq) = closes {
            if let Some(v) = self.open_intents.remove(&intent_seq) {
                undo.intents_removed.push((intent_seq, v));
            }
        }
        if ev.kind.role() == IntentRole::Intent {
            self.open_intents.insert(seq, (ev.kind, hash));
            undo.intents_added.push(seq);
        }
        for p in &payloads {
            undo.batch_commits.insert(p.cmt, p.body.len() as u64);
        }
        undo.batch_erased.extend(redactions.iter().copied());
        let session = leaf.session.map(|s| (s.id, s.n));
        Ok(Built {
            seq,
            kind: ev.kind,
            session,
            closes,
            leaf: bytes,
            hash,
            nodes,
            payloads,
            redactions,
            hold_entry,
            archive,
        })
    }

    fn session_link(&mut self, id: &str, kind: EventKind) -> Result<SessionLink, AuditError> {
        if id.is_empty() || id.len() > 128 {
            return Err(AuditError::Invalid(
                "session id must be 1 to 128 characters".into(),
            ));
        }
        let state = match self.sessions.get(id) {
            Some(s) => Some(s.clone()),
            None => self.load_session(id)?,
        };
        match (kind, state) {
            (EventKind::SessionStart, None) => Ok(SessionLink {
                id: id.into(),
                n: 0,
                prev: None,
            }),
            (EventKind::SessionStart, Some(_)) => Err(AuditError::Invalid(format!(
                "session {id} has already started"
            ))),
            (_, None) => Err(AuditError::Invalid(format!(
                "session {id} is unknown: its first entry must be session.start"
            ))),
            (_, Some(s)) if s.ended => Err(AuditError::Invalid(format!("session {id} has ended"))),
            (_, Some(s)) => Ok(SessionLink {
                id: id.into(),
                n: s.n + 1,
                prev: Some(hash_b64(&s.head)),
            }),
        }
    }

    fn load_session(&mut self, id: &str) -> Result<Option<SessionState>, AuditError> {
        let row: Option<(i64, Vec<u8>, i64)> = self
            .conn
            .query_row(
                "SELECT n, head, ended FROM sessions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())?;
        let Some((n, head, ended)) = row else {
            return Ok(None);
        };
        let head: Hash = head.try_into().map_err(|_| AuditError::Integrity {
            index: 0,
            reason: format!("session {id}: stored head is not 32 bytes"),
        })?;
        let s = SessionState {
            n: n as u64,
            head,
            ended: ended != 0,
        };
        self.sessions.insert(id.to_string(), s.clone());
        Ok(Some(s))
    }

    /// For results and `interrupted`: the intent they close, checked against
    /// the open intents (kind pairing and leaf hash).
    fn check_refs(&self, ev: &Event) -> Result<Option<u64>, AuditError> {
        let closes_kind = match ev.kind.role() {
            IntentRole::Result(k) => Some(Some(k)),
            IntentRole::Intent | IntentRole::Plain if ev.kind == EventKind::Interrupted => {
                Some(None)
            }
            IntentRole::Intent | IntentRole::Plain => None,
        };
        let Some(want) = closes_kind else {
            return Ok(None);
        };
        let r = ev.refs.as_ref().ok_or_else(|| {
            AuditError::Invalid(format!("{} must name its intent (refs)", ev.kind))
        })?;
        let Some((kind, hash)) = self.open_intents.get(&r.intent_seq) else {
            return Err(AuditError::Invalid(format!(
                "{} names intent {} which is not an open intent",
                ev.kind, r.intent_seq
            )));
        };
        if let Some(w) = want {
            if *kind != w {
                return Err(AuditError::Invalid(format!(
                    "{} cannot close intent {} of kind {kind}",
                    ev.kind, r.intent_seq
                )));
            }
        }
        if parse_hash_b64(&r.intent_leaf) != Some(*hash) {
            return Err(AuditError::Invalid(format!(
                "{} names intent {} with the wrong leaf hash",
                ev.kind, r.intent_seq
            )));
        }
        Ok(Some(r.intent_seq))
    }

    /// A payload the caller sealed must match its commitment and be new.
    fn check_sealed(&self, p: &SealedPayload, undo: &Undo) -> Result<(), AuditError> {
        if crate::payload::commitment(&p.salt, &p.body) != p.cmt
            || p.reference.commit != commit_text(&p.cmt)
            || p.reference.size != p.body.len() as u64
        {
            return Err(AuditError::Invalid(
                "a sealed payload does not match its commitment".into(),
            ));
        }
        if undo.batch_commits.contains_key(&p.cmt) || self.stored_size(&p.cmt, None)?.is_some() {
            return Err(AuditError::Invalid(format!(
                "payload {} is already committed; refer to it instead",
                p.reference.commit
            )));
        }
        Ok(())
    }

    /// A shared payload must be committed already (earlier in this batch, or stored), with
    /// the size the reference gives.
    fn check_shared(&self, r: &crate::event::PayloadRef, undo: &Undo) -> Result<(), AuditError> {
        let h = parse_commit(&r.commit)
            .ok_or_else(|| AuditError::Invalid(format!("{:?} is not a commitment", r.commit)))?;
        let size = match undo.batch_commits.get(&h) {
            Some(s) => Some(*s),
            None => self.stored_size(&h, undo.archive_below)?,
        };
        match size {
            None => Err(AuditError::NotFound(format!(
                "payload {} (an entry can only refer to a payload an earlier entry committed)",
                r.commit
            ))),
            Some(s) if s != r.size => Err(AuditError::Invalid(format!(
                "payload {} has {s} bytes, not {}",
                r.commit, r.size
            ))),
            Some(_) => Ok(()),
        }
    }

    /// The stored size of payload `h`; one made below `archive_below` (an
    /// archive earlier in the batch removes it) counts as absent.
    fn stored_size(&self, h: &Hash, archive_below: Option<u64>) -> Result<Option<u64>, AuditError> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT size, seq FROM payloads WHERE cmt = ?1",
                [&h[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err())?;
        Ok(row
            .filter(|(_, seq)| archive_below.is_none_or(|n| *seq as u64 >= n))
            .map(|(s, _)| s as u64))
    }
}
