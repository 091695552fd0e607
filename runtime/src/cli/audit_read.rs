//! Reading the log, two ways (docs/runtime.md, "Reading the log"):
//!
//! - **Recorded** (the default, the log's operator on the live log): the
//!   read is appended to the log as an `audit.read` entry before anything is
//!   shown, so it needs the log's signing key and its writer lock.
//! - **Verified, read-only** (`--vkey`, a reviewer's copy or anyone who holds
//!   only the verifier key): nothing is written and no private key is used;
//!   the log is verified against the verifier key first and only the
//!   entries that verified are shown. stele says on stderr that the read is
//!   not recorded. (Whoever can open the database file can read it without
//!   stele; the file's mode, 0600 in a private folder, is what keeps others
//!   out. A recorded read is the operator's own account of looking.)

use std::path::Path;

use stele_attest::NoteVerifier;
use stele_audit::verify::{verify_db, VerifyFailure};
use stele_audit::{AuditLog, Store};

use super::exit;
use crate::terminal_safe;

/// An open log to read from.
pub enum Reader {
    /// Opened for writing; the read is in the log.
    Recorded(AuditLog),
    /// Opened read-only and verified up to `size` entries.
    Verified {
        /// The store.
        store: Store,
        /// Entries verified (nothing past them is shown).
        size: u64,
    },
}

/// Why a read-only read was refused.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NotVerified {
    /// What the verifier found.
    pub message: String,
    /// Its exit code (3 tampered, 4 unreadable).
    pub code: u8,
}

/// Open `db` for a read described by `what` (recorded), or, with `vkey`,
/// verified and read-only.
pub fn open(
    db: &Path,
    key: &Path,
    vkey: Option<&str>,
    user: Option<String>,
    what: serde_json::Value,
) -> anyhow::Result<Reader> {
    let Some(vkey) = vkey else {
        return Ok(Reader::Recorded(super::audit::open_for_read(
            db, key, user, what,
        )?));
    };
    super::state::existing_log(db)?;
    let verifier = NoteVerifier::parse(vkey).map_err(|e| {
        anyhow::anyhow!("--vkey: not a verifier key ({e}); `stele keys show` prints the log's")
    })?;
    let report = verify_db(db, &verifier, None).map_err(|f| {
        let code = match f {
            VerifyFailure::Tampered { .. } => exit::INTEGRITY,
            VerifyFailure::Unreadable(_) => exit::UNREADABLE,
        };
        NotVerified {
            message: format!(
                "{} does not verify against the given key, so nothing is shown: {f}",
                terminal_safe::path(db)
            ),
            code,
        }
    })?;
    crate::errln!(
        "stele: read-only: {} entries of {} verified against its verifier key; this read is \
         not recorded in the log (no signing key used)",
        report.entries,
        terminal_safe::line(&report.origin)
    );
    Ok(Reader::Verified {
        store: Store::open(db)?,
        size: report.entries,
    })
}

impl Reader {
    /// Run `f` over the store and the number of entries that may be shown.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&Store, u64) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match self {
            Reader::Recorded(log) => {
                let store = log.store()?;
                let size = store.size()?;
                f(&store, size)
            }
            Reader::Verified { store, size } => f(store, *size),
        }
    }

    /// Close the log (a recorded read appends nothing more).
    pub fn close(self) -> anyhow::Result<()> {
        match self {
            Reader::Recorded(log) => {
                log.close()?;
                Ok(())
            }
            Reader::Verified { .. } => Ok(()),
        }
    }
}
