//! The earlier slice of a session that moved between logs
//! (docs/export-format.md §8a): the session bundle it was imported from,
//! held as `earlier/0.tar`, verified in full with the source log's key
//! that the importing log recorded (`session.start` data `continues`), and
//! linked: the slice must be exactly the bundle the import named (its
//! digest), of the same session, at the checkpoint named, ending with the
//! leaf named — the source's `session.end` that says the session moved;
//! or, for a session a team server continued after its worker stopped
//! (`continues.failover`), the prefix of the session the server held,
//! its manifest signed by the server's key, ending with no end, its
//! unfinished intents exactly those the continuing log names.

use std::sync::atomic::{AtomicU64, Ordering};

use stele_attest::NoteVerifier;
use stele_audit::export::earlier::{
    bundle_digest, is_moved_end, is_session_end, unknown_intents, Continues, UnknownIntent,
    EARLIER_FILE,
};
use stele_audit::export::layout::{Selection, PROOFS_DIR};
use stele_audit::leaf::{hash_b64, Leaf};
use stele_audit::merkle::leaf_hash;

use crate::manifest::Manifest;
use crate::{Bundle, Failure, Options};

/// One verified earlier slice, as the report lists it (oldest last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierSlice {
    /// The source log's origin.
    pub origin: String,
    /// The key it was verified with.
    pub key: String,
    /// Its checkpoint's size.
    pub tree_size: u64,
    /// Its root (base64).
    pub root: String,
    /// The session's entries in it.
    pub entries: u64,
    /// How the session left that log.
    pub arrival: Arrival,
}

/// How a session left an earlier log for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// A person moved it (`stele session export`): the slice ends with
    /// the source's moved `session.end`.
    Moved,
    /// The worker running it stopped and a team server continued it from
    /// what it held of that worker's log: the slice ends where that copy
    /// ended; what the worker wrote later is not in it.
    Failover {
        /// Why (which worker stopped), as the continuing log recorded it.
        why: String,
        /// Intents of the session whose results are unknown (never re-run).
        unknown: u64,
    },
}

fn seqs(v: &[UnknownIntent]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|u| format!("#{} {}", u.seq, u.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Verify the earlier slice `c` names, inside the session bundle `m` of
/// session `id`; returns it and the slices it holds in turn.
pub(crate) fn verify(
    bundle: &Bundle,
    m: &Manifest,
    id: &str,
    c: &Continues,
    opts: &Options,
) -> Result<Vec<EarlierSlice>, Failure> {
    let f = |r: String| Failure::new(EARLIER_FILE, None, r);
    if !m.digests.contains_key(EARLIER_FILE) {
        return Err(f(format!(
            "missing: session {id} continues a session of {} (its session.start names it), but the bundle holds no earlier slice",
            c.origin
        )));
    }
    let bytes = m.read(bundle, EARLIER_FILE)?;
    if bundle_digest(&bytes) != c.bundle {
        return Err(f(format!(
            "is not the bundle the session was imported from: its digest is {}, session.start names {}",
            bundle_digest(&bytes),
            c.bundle
        )));
    }
    let key = NoteVerifier::parse(&c.vkey).map_err(|e| {
        f(format!(
            "the source key session.start names does not parse: {e}"
        ))
    })?;
    let inner = open_bytes(&bytes).map_err(|e| f(format!("cannot open: {e}")))?;
    let exporter = match &c.failover {
        Some(fo) => Some(NoteVerifier::parse(&fo.exporter).map_err(|e| {
            f(format!(
                "the server key that signed the slice (session.start continues.failover.exporter) does not parse: {e}"
            ))
        })?),
        None => None,
    };
    let inner_opts = Options {
        log_key: key,
        more_keys: Vec::new(),
        revoked: Vec::new(),
        export_key: exporter,
        witnesses: Vec::new(),
        quorum: None,
        anchors: Vec::new(),
        now: opts.now,
        tsa: None,
    };
    let within = |x: Failure| {
        Failure::new(
            format!("{EARLIER_FILE}: {}", x.file),
            x.index,
            format!("earlier slice (log {}): {}", c.origin, x.reason),
        )
    };
    let report = match c.failover {
        Some(_) => crate::verify_session_prefix(&inner, &inner_opts),
        None => crate::verify(&inner, &inner_opts),
    }
    .map_err(within)?;
    let im = crate::manifest::check(&inner, &inner_opts).map_err(within)?;
    link(&inner, &im, id, c).map_err(f)?;
    let arrival = match &c.failover {
        Some(fo) => {
            let leaves = crate::slice::read_session(&inner, &inner_opts)
                .map_err(within)?
                .leaves;
            let open = unknown_intents(&leaves);
            if open != fo.unknown {
                return Err(f(format!(
                    "broken link to the earlier slice: its unfinished intents are {}, session.start names {}",
                    seqs(&open),
                    seqs(&fo.unknown)
                )));
            }
            Arrival::Failover {
                why: fo.why.clone(),
                unknown: open.len() as u64,
            }
        }
        None => Arrival::Moved,
    };
    let mut out = vec![EarlierSlice {
        origin: im.predicate.origin.clone(),
        key: c.vkey.clone(),
        tree_size: im.predicate.tree_size,
        root: im.predicate.root.clone(),
        entries: report.selected,
        arrival,
    }];
    out.extend(report.earlier);
    Ok(out)
}

/// The link: the slice is of session `id`, at the checkpoint `c` names,
/// and its last entry is the leaf `c` names, a `session.end` that moved.
fn link(inner: &Bundle, im: &Manifest, id: &str, c: &Continues) -> Result<(), String> {
    let p = &im.predicate;
    let broken = |what: String| format!("broken link to the earlier slice: {what}");
    if !matches!(&p.range, Selection::Session { id: x } if x == id) {
        return Err(broken(format!("it is not a bundle of session {id}")));
    }
    if p.origin != c.origin {
        return Err(broken(format!(
            "its log is {}, session.start names {}",
            p.origin, c.origin
        )));
    }
    if p.tree_size != c.checkpoint.size || p.root != c.checkpoint.root {
        return Err(broken(format!(
            "its checkpoint is size {} root {}, session.start names size {} root {}",
            p.tree_size, p.root, c.checkpoint.size, c.checkpoint.root
        )));
    }
    let [s] = p.sessions.as_slice() else {
        return Err(broken("it describes no single session".into()));
    };
    if s.last != c.last.seq || s.entries != c.last.n + 1 {
        return Err(broken(format!(
            "its session ends at entry {} (n={}), session.start names entry {} (n={})",
            s.last,
            s.entries.saturating_sub(1),
            c.last.seq,
            c.last.n
        )));
    }
    let name = format!("{PROOFS_DIR}{}.tlog-proof", s.last);
    let text = String::from_utf8(im.read(inner, &name).map_err(|e| e.to_string())?)
        .map_err(|_| format!("{name} is not UTF-8"))?;
    let proof = stele_audit::proof::parse(&text)?;
    let h = hash_b64(&leaf_hash(&proof.leaf));
    if h != c.last.hash {
        return Err(broken(format!(
            "its last leaf hashes to {h}, session.start names {}",
            c.last.hash
        )));
    }
    let leaf = Leaf::parse_canonical(&proof.leaf).map_err(|e| e.to_string())?;
    match &c.failover {
        None if !is_moved_end(&leaf) => Err(broken(
            "its last entry is not a session.end recording that the session moved".into(),
        )),
        Some(_) if is_session_end(&leaf) => Err(broken(
            "the session ended in that log, yet session.start says it continued after its worker stopped".into(),
        )),
        _ => Ok(()),
    }
}

/// A bundle over `bytes` (a tar file): written to a private temporary
/// file, opened, and unlinked at once (the open file stays readable).
fn open_bytes(bytes: &[u8]) -> Result<Bundle, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        ".stele-verify-earlier-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let written = f.write_all(bytes).and_then(|()| f.flush());
    let opened = written
        .map_err(|e| e.to_string())
        .and_then(|()| Bundle::open(&path).map_err(|e| e.to_string()));
    let _ = std::fs::remove_file(&path);
    opened
}
