//! Sessions that moved between logs (`stele session export` / `import`,
//! docs/export-format.md §8a). The `session.start` a session begins with in
//! the log it moved to carries a `continues` object naming the session
//! bundle it was imported from: the source log's origin and key, the
//! bundle's checkpoint, the source's last session leaf and the bundle
//! file's digest. The importing log keeps that bundle beside its database
//! ([`imported_bundle_path`]); a session export of the moved session holds
//! it as [`EARLIER_FILE`], and a verifier checks it with the key named and
//! checks the link.

#[cfg(feature = "store")]
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::leaf::Leaf;

/// The `session.start` data member naming what a session continues.
pub const CONTINUES_MEMBER: &str = "continues";
/// The earlier slice in a session bundle: the bundle the session was
/// imported from, byte for byte (itself a session bundle, which may hold
/// its own earlier slice).
pub const EARLIER_FILE: &str = "earlier/0.tar";
/// The folder of earlier slices (only [`EARLIER_FILE`] is allowed in it).
pub const EARLIER_DIR: &str = "earlier/";
/// The `session.end` data member that says the session left this log to
/// continue on another (its outcome is `interrupted`): nothing more of it
/// is written here.
pub const MOVED_MEMBER: &str = "moved";

/// What an imported session continues (the `continues` member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continues {
    /// The source log's origin.
    pub origin: String,
    /// The source log's verifier key (the one the importer trusted).
    pub vkey: String,
    /// The source bundle's checkpoint.
    pub checkpoint: SliceCheckpoint,
    /// The source's last leaf of the session (its moved `session.end`).
    pub last: SliceLast,
    /// `sha256:<hex>` of the bundle file as imported.
    pub bundle: String,
    /// Present when the session did not leave its source log on purpose:
    /// the worker running it stopped, and a team server continued it from
    /// what it held of that worker's log (the slice ends where that copy
    /// ended, not at a moved `session.end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// How a session continued after the worker running it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// The key that signed the slice's manifest: the team server's export
    /// key (note verifier form). The slice was written by the server from
    /// the worker's shipped log, so the worker's key signs its checkpoint
    /// and entries, and this key only the manifest.
    pub exporter: String,
    /// Why the session continued here, for people (which worker stopped).
    pub why: String,
    /// The session's intents at the slice's end that have no result in it:
    /// whether they ran is unknown, and they were not run again.
    pub unknown: Vec<UnknownIntent>,
}

/// An intent of the session with no result in the slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownIntent {
    /// Its index in the source log.
    pub seq: u64,
    /// Its kind (`tool.intent`, `model.request`, …).
    pub kind: String,
}

/// The intents among `leaves` (a session's entries, in order) that no
/// later leaf among them closes, in order.
pub fn unknown_intents(leaves: &[Leaf]) -> Vec<UnknownIntent> {
    use crate::event::IntentRole;
    let closed: std::collections::HashSet<u64> = leaves
        .iter()
        .filter_map(|l| l.refs.as_ref().map(|r| r.intent_seq))
        .collect();
    leaves
        .iter()
        .filter(|l| l.kind.role() == IntentRole::Intent && !closed.contains(&l.seq))
        .map(|l| UnknownIntent {
            seq: l.seq,
            kind: l.kind.as_str().to_string(),
        })
        .collect()
}

/// Whether `leaf` ends its session (nothing of it may follow).
pub fn is_session_end(leaf: &Leaf) -> bool {
    matches!(
        leaf.kind,
        crate::event::EventKind::SessionEnd | crate::event::EventKind::SessionInterrupted
    )
}

/// A checkpoint's size and root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash, base64.
    pub root: String,
}

/// A session's last leaf in the source log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceLast {
    /// Its index in the source log.
    pub seq: u64,
    /// Its leaf hash, base64.
    pub hash: String,
    /// Its position in the session.
    pub n: u64,
}

impl Continues {
    /// The `continues` member of a `session.start` leaf, if it has one.
    pub fn of(leaf: &Leaf) -> Result<Option<Self>, String> {
        let Some(v) = leaf.data.as_ref().and_then(|d| d.get(CONTINUES_MEMBER)) else {
            return Ok(None);
        };
        serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("session.start data.{CONTINUES_MEMBER} is malformed: {e}"))
    }
}

/// Whether `leaf` is a `session.end` recording that the session moved.
pub fn is_moved_end(leaf: &Leaf) -> bool {
    leaf.kind == crate::event::EventKind::SessionEnd
        && leaf
            .data
            .as_ref()
            .is_some_and(|d| d.get(MOVED_MEMBER).is_some())
}

/// Where the log at `db` keeps the bundle session `id` was imported from.
#[cfg(feature = "store")]
pub fn imported_bundle_path(db: &Path, id: &str) -> PathBuf {
    PathBuf::from(format!("{}.imports", db.display()))
        .join(format!("{}.bundle.tar", super::attestation::file_stem(id)))
}

/// `sha256:<hex>` of `bytes`.
pub fn bundle_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(super::layout::sha256(bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn continues_round_trips_and_refuses_unknown_members() {
        let c = Continues {
            origin: "a.example/log".into(),
            vkey: "a.example/log+0+x".into(),
            checkpoint: SliceCheckpoint {
                size: 9,
                root: "cm9vdA==".into(),
            },
            last: SliceLast {
                seq: 8,
                hash: "aGFzaA==".into(),
                n: 4,
            },
            bundle: "sha256:00".into(),
            failover: None,
        };
        let mut v = serde_json::to_value(&c).unwrap();
        let back: Continues = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, c);
        v["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Continues>(v).is_err());
        #[cfg(feature = "store")]
        assert!(imported_bundle_path(Path::new("/s/audit.db"), "s-1")
            .ends_with("audit.db.imports/s-1.bundle.tar"));
    }
}
