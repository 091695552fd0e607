//! The export bundle's file names and its signed predicate, shared by the
//! exporter and the offline verifier. See `docs/export-format.md`.

use serde::{Deserialize, Serialize};

/// Most inclusion proofs written per export (the tiles prove the rest).
pub const MAX_PROOFS: usize = 10_000;
/// in-toto predicate type of the manifest.
pub const PREDICATE_TYPE: &str = "https://stele.dev/audit-export/v1";
/// in-toto predicate type of session attestations.
pub const SESSION_PREDICATE_TYPE: &str = "https://stele.dev/session-attestation/v1";
/// The manifest file (DSSE envelope, one line).
pub const MANIFEST: &str = "manifest.intoto.jsonl";
/// The newest checkpoint.
pub const CHECKPOINT: &str = "checkpoint";
/// Folder of earlier (published) checkpoints, named by size.
pub const CHECKPOINTS_DIR: &str = "checkpoints/";
/// Folder of payloads, named by hex commitment, holding salt ‖ body.
pub const PAYLOADS_DIR: &str = "payloads/";
/// RFC 3161 timestamp tokens over checkpoints: `timestamps/<size>.tsr`.
pub const TIMESTAMPS_DIR: &str = "timestamps/";

/// Where the token over the checkpoint of `size` goes.
pub fn timestamp_path(size: u64) -> String {
    format!("{TIMESTAMPS_DIR}{size}.tsr")
}

/// The checkpoint size a `timestamps/<size>.tsr` name is for (decimal,
/// no leading zeros).
pub fn timestamp_size(name: &str) -> Option<u64> {
    let n = name.strip_prefix(TIMESTAMPS_DIR)?.strip_suffix(".tsr")?;
    let s: u64 = n.parse().ok()?;
    (s.to_string() == n).then_some(s)
}
/// Folder of tlog-proofs, named `<index>.tlog-proof`.
pub const PROOFS_DIR: &str = "proofs/";
/// Session bundles: folder of RFC 6962 consistency proofs, `<size>`, from
/// each earlier checkpoint in the bundle to `checkpoint` (one base64 hash
/// a line).
pub const CONSISTENCY_DIR: &str = "consistency/";
/// Session bundles: folder of the `key.rotation` and `key.revocation`
/// entries (outside the session) that set the keys of the bundle's
/// checkpoints, as `<index>.tlog-proof`.
pub const KEYS_DIR: &str = "keys/";
/// Session bundles: folder of the `redaction` entries (outside the
/// session) that erased payloads of session entries, as
/// `<index>.tlog-proof`.
pub const REDACTIONS_DIR: &str = "redactions/";
/// Folder of policy bundle copies, `policies/<name>/<relative path>`.
pub const POLICIES_DIR: &str = "policies/";
/// Folder of session attestations, `<session>.intoto.jsonl`.
pub const ATTESTATIONS_DIR: &str = "attestations/";
/// OCSF view: JSON Lines, one gzip member (SIEM collectors read it as is;
/// uncompressed it would be about twice the size of the entry bundles).
pub const OCSF: &str = "ocsf/events.jsonl.gz";
/// Human summary.
pub const SUMMARY: &str = "SUMMARY.md";
/// How to verify.
pub const VERIFY_MD: &str = "VERIFY.md";

/// How `SUMMARY.md` names a selection (the exporter writes it, the
/// verifier recomputes it).
pub fn selection_text(selection: &Selection) -> String {
    match selection {
        Selection::All => "all entries".to_string(),
        Selection::Session { id } => format!("session {id}"),
        Selection::Time { since, until } => format!("entries from {since} until {until}"),
    }
}

/// Which entries an export is about (payloads, proofs, OCSF, summary).
/// The tiles hold the whole prefix `[0, tree_size)`, or `[N, tree_size)`
/// for a bundle that starts at `N` (the predicate's `start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Selection {
    /// Every entry.
    All,
    /// The entries of one session.
    Session {
        /// Session id.
        id: String,
    },
    /// Entries with `since <= ts < until` (leaf time strings compare in time order).
    Time {
        /// Inclusive lower bound, leaf time format.
        since: String,
        /// Exclusive upper bound.
        until: String,
    },
}

impl Selection {
    /// Whether a leaf is selected.
    pub fn selects(&self, leaf: &crate::leaf::Leaf) -> bool {
        match self {
            Selection::All => true,
            Selection::Session { id } => leaf.session.as_ref().is_some_and(|s| &s.id == id),
            Selection::Time { since, until } => {
                leaf.ts.as_str() >= since.as_str() && leaf.ts.as_str() < until.as_str()
            }
        }
    }
}

/// What proves the selected entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleLayout {
    /// Every tile of the tree `[0, tree_size)`: the whole log prefix is
    /// recomputed (whole-log and time exports; session exports before
    /// session bundles). Not written in the predicate.
    #[default]
    Tiles,
    /// A session bundle: only the session's entries, each with its
    /// inclusion proof against `checkpoint` (`proofs/`), and no tiles.
    Session,
}

impl BundleLayout {
    /// Whether this is [`BundleLayout::Tiles`] (left out of the predicate).
    pub fn is_tiles(&self) -> bool {
        *self == Self::Tiles
    }
}

/// A session named by the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRange {
    /// Session id.
    pub id: String,
    /// Index of its `session.start`.
    pub first: u64,
    /// Index of its last entry in the export.
    pub last: u64,
    /// Its number of entries.
    pub entries: u64,
    /// Whether the last entry ends it.
    pub ended: bool,
}

/// A policy bundle copied into the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRecord {
    /// Folder name under `policies/`.
    pub name: String,
    /// `sha256:<hex>` over the copied files (see [`files_digest`]).
    pub files_digest: String,
    /// The policy engine's own bundle digest (as in leaves' `decision.bundle`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_digest: Option<String>,
}

/// Who exported, and the log entry recording it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exporter {
    /// Principal.
    pub principal: String,
    /// Host.
    pub host: String,
    /// Software.
    pub runtime: String,
    /// Index of the `audit.export` entry.
    pub entry: u64,
}

/// The manifest predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPredicate {
    /// Log origin.
    pub origin: String,
    /// The verifier key that signs `checkpoint` (the log's current key).
    pub log_key: String,
    /// Every key of the log with the checkpoint sizes it signs, when the
    /// log's key was ever rotated (absent: `log_key` alone, from size 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<crate::keys::KeyRange>,
    /// Former keys the log revoked (`key.revocation` entries): their
    /// signatures on checkpoints of size `from` and above are not trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<crate::keys::Revocation>,
    /// Entries in the tiles (= newest checkpoint size).
    pub tree_size: u64,
    /// Base64 root at `tree_size`.
    pub root: String,
    /// What was selected.
    pub range: Selection,
    /// Sessions the selection touches.
    pub sessions: Vec<SessionRange>,
    /// Number of selected entries.
    pub selected: u64,
    /// First and last timestamps of the selected entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_span: Option<(String, String)>,
    /// Who exported.
    pub exporter: Exporter,
    /// Policy bundles.
    pub policies: Vec<PolicyRecord>,
    /// False when payloads were left out on purpose (`--no-payloads`).
    pub payloads_included: bool,
    /// Sizes of the files under `checkpoints/`.
    pub checkpoints: Vec<u64>,
    /// What proves the selected entries (absent: tiles).
    #[serde(default, skip_serializing_if = "BundleLayout::is_tiles")]
    pub layout: BundleLayout,
    /// The entry → OCSF mapping `ocsf.jsonl.gz` follows (absent: mapping
    /// 1, as exports made before it was named).
    #[serde(default)]
    pub ocsf_mapping: super::ocsf::OcsfMapping,
    /// Where the entries begin when the log's prefix is archived (absent:
    /// at 0). The tiles then hold the entries from `start.size` on,
    /// numbered from there (see [`super::tiles::live_tile_paths`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<super::start::BundleStart>,
}

/// `sha256:<hex>` over files framed as `path NUL len(u64 BE) bytes`, sorted by
/// path (the same injective framing the policy engine uses).
pub fn files_digest(files: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    for (p, b) in sorted {
        c.update(p.as_bytes());
        c.update(&[0]);
        c.update(&(b.len() as u64).to_be_bytes());
        c.update(b);
    }
    format!("sha256:{}", hex::encode(c.finish().as_ref()))
}

/// Plain SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    h
}

impl ExportPredicate {
    /// The key schedule the predicate states (`log_key` alone when it
    /// lists none).
    pub fn key_schedule(&self) -> Result<crate::keys::KeySchedule, String> {
        if self.keys.is_empty() {
            return Ok(crate::keys::KeySchedule::single(&self.log_key));
        }
        let s = crate::keys::KeySchedule::from_ranges(self.keys.clone(), &self.origin)?;
        if s.current() != self.log_key {
            return Err("the last key of the schedule is not log_key".into());
        }
        Ok(s)
    }
}
