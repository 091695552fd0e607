//! Sending the log's checkpoints to witnesses from the runtime.
//!
//! Configured by `[[witness]]` entries (url, verifier key, optional name) and
//! `witness_quorum` in the config layers. A session publishes its log's
//! newest checkpoint when it starts (so a rolled-back database is caught
//! before the agent acts) and again when the log is closed at its end (done,
//! paused, or ended in error); cosignatures are stored in the database, where
//! `stele audit export` picks them up.
//!
//! - A witness that holds a longer or different history for this log
//!   (rollback, fork) is always fatal: the session is stopped before any
//!   action, and stele exits 3.
//! - A witness that cannot be reached or refuses is a warning, unless
//!   `witness_quorum = k` is set: then fewer than k cosignatures refuses to
//!   start a session, and at the end makes the command fail (exit 3).

use std::path::Path;

use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::NoteVerifier;
use stele_audit::witness::{publish_to_witness, Cosigned, PublishError, WitnessTarget};

/// One `[[witness]]` entry of the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// Base URL (requests go to `<url>/add-checkpoint`).
    pub url: String,
    /// The witness's verifier key (`stele witness vkey`), `name+id+key`.
    pub key: String,
    /// Optional label; when given it must equal the key's name.
    pub name: Option<String>,
}

/// When a checkpoint is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Before the session's first action.
    SessionStart,
    /// After the log was closed at the session's end.
    SessionEnd,
}

impl Moment {
    fn as_str(self) -> &'static str {
        match self {
            Self::SessionStart => "session start",
            Self::SessionEnd => "session end",
        }
    }
}

/// Why witnessing stops stele.
#[derive(Debug, thiserror::Error)]
pub enum WitnessingError {
    /// A witness has seen a different history of this log: rolled back or forked.
    #[error("{0}")]
    HistoryConflict(PublishError),
    /// Fewer cosignatures than `witness_quorum`.
    #[error(
        "witness quorum not met at {moment}: {got} of {quorum} required cosignatures ({detail})"
    )]
    QuorumNotMet {
        /// When.
        moment: &'static str,
        /// Cosignatures obtained.
        got: usize,
        /// Required.
        quorum: u32,
        /// What went wrong per witness.
        detail: String,
    },
    /// A `[[witness]]` entry is not valid.
    #[error("config [[witness]] {index}: {message}")]
    Config {
        /// 1-based entry.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The configuration could not be read.
    #[error(transparent)]
    Load(#[from] crate::config::ConfigError),
}

/// The witnesses of this installation and the quorum.
#[derive(Debug, Clone, Default)]
pub struct Witnessing {
    targets: Vec<WitnessTarget>,
    quorum: u32,
}

/// What one publication achieved.
#[derive(Debug, Default)]
pub struct Published {
    /// Witnesses that cosigned (name, size).
    pub cosigned: Vec<Cosigned>,
    /// Witnesses that could not (warnings).
    pub failed: Vec<PublishError>,
}

impl Witnessing {
    /// The witnesses from the config layers (managed list wins over the user's).
    pub fn load() -> Result<Self, WitnessingError> {
        let layers = crate::config::load()?;
        let entries = layers
            .pick("witness", None, |c| c.witness.clone())?
            .unwrap_or_default();
        let quorum = layers
            .pick("witness_quorum", None, |c| c.witness_quorum)?
            .unwrap_or(0);
        Self::from_entries(&entries, quorum)
    }

    /// Witnesses from parsed entries.
    pub fn from_entries(entries: &[WitnessEntry], quorum: u32) -> Result<Self, WitnessingError> {
        let mut targets = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let bad = |message: String| WitnessingError::Config {
                index: i + 1,
                message,
            };
            let key = CosignatureVerifier::parse(e.key.trim())
                .map_err(|err| bad(format!("key: {err}")))?;
            if let Some(n) = &e.name {
                if n != key.name() {
                    return Err(bad(format!(
                        "name {n:?} differs from the key's name {:?}",
                        key.name()
                    )));
                }
            }
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(bad(format!("url {:?} is not http(s)", e.url)));
            }
            targets.push(WitnessTarget {
                url: e.url.clone(),
                key,
            });
        }
        if quorum as usize > targets.len() {
            return Err(WitnessingError::Config {
                index: 0,
                message: format!(
                    "witness_quorum {quorum} exceeds the {} configured witness(es)",
                    targets.len()
                ),
            });
        }
        Ok(Self { targets, quorum })
    }

    /// True when no witness is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Publish the newest checkpoint of the log at `db` to every witness (in
    /// parallel), store the cosignatures, and judge the outcome: a history
    /// conflict is fatal, other failures are warnings unless the quorum is
    /// not met.
    pub fn publish(
        &self,
        db: &Path,
        log_key: &NoteVerifier,
        moment: Moment,
    ) -> Result<Published, WitnessingError> {
        if self.targets.is_empty() {
            return Ok(Published::default());
        }
        let results: Vec<Result<Cosigned, PublishError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .targets
                .iter()
                .map(|t| s.spawn(move || publish_to_witness(db, log_key, t)))
                .collect();
            handles
                .into_iter()
                .zip(&self.targets)
                .map(|(h, t)| {
                    h.join().unwrap_or_else(|_| {
                        Err(PublishError::Witness {
                            witness: t.key.name().to_string(),
                            detail: "publishing thread failed".into(),
                        })
                    })
                })
                .collect()
        });
        let mut out = Published::default();
        for r in results {
            match r {
                Ok(c) => out.cosigned.push(c),
                Err(e) if e.is_history_conflict() => {
                    shout(&e, moment);
                    return Err(WitnessingError::HistoryConflict(e));
                }
                Err(e) => out.failed.push(e),
            }
        }
        if out.cosigned.len() < self.quorum as usize {
            return Err(WitnessingError::QuorumNotMet {
                moment: moment.as_str(),
                got: out.cosigned.len(),
                quorum: self.quorum,
                detail: out
                    .failed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        for e in &out.failed {
            tracing::warn!(error = %e, moment = moment.as_str(), "witness did not cosign");
            crate::errln!(
                "stele: warning: {} (checkpoint not witnessed by it at {})",
                crate::terminal_safe::line(&e.to_string()),
                moment.as_str()
            );
        }
        Ok(out)
    }
}

/// A history conflict is printed so that nobody can miss it.
fn shout(e: &PublishError, moment: Moment) {
    let bar = "=".repeat(72);
    tracing::error!(error = %e, moment = moment.as_str(), "witness reports a history conflict");
    crate::errln!(
        "stele: {bar}\nstele: {}\nstele: detected at {}; refusing to append further actions to this log.\nstele: {bar}",
        crate::terminal_safe::line(&e.to_string()),
        moment.as_str()
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stele_attest::Ed25519Signer;

    fn vkey(name: &str) -> String {
        CosignatureVerifier::of(&Ed25519Signer::generate(name).unwrap()).to_string()
    }

    #[test]
    fn entries_are_checked() {
        let good = WitnessEntry {
            url: "http://127.0.0.1:1".into(),
            key: vkey("w1.example"),
            name: Some("w1.example".into()),
        };
        assert!(Witnessing::from_entries(std::slice::from_ref(&good), 1).is_ok());
        let e = Witnessing::from_entries(std::slice::from_ref(&good), 2).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let mut wrong_name = good.clone();
        wrong_name.name = Some("other".into());
        let e = Witnessing::from_entries(&[wrong_name], 0).unwrap_err();
        assert!(e.to_string().contains("[[witness]] 1"), "{e}");
        let mut bad_key = good.clone();
        bad_key.key = "nonsense".into();
        assert!(Witnessing::from_entries(&[bad_key], 0).is_err());
        let mut bad_url = good;
        bad_url.url = "ftp://x".into();
        assert!(Witnessing::from_entries(&[bad_url], 0).is_err());
    }
}
