//! Where stele keeps its state by default (XDG base directories).

use std::path::PathBuf;

/// The state directory: `$STELE_STATE_DIR`, else `$XDG_STATE_HOME/stele`,
/// else `$HOME/.local/state/stele`, else `./.stele-state`.
pub fn state_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STELE_STATE_DIR") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(p).join("stele");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/state/stele");
    }
    PathBuf::from(".stele-state")
}

/// Default audit database path.
pub fn default_db() -> PathBuf {
    state_dir().join("audit.db")
}

/// Default signing key path.
pub fn default_key() -> PathBuf {
    state_dir().join("keys/log.key")
}
