//! Helpers for end-to-end tests that run the `stele` binary as a user would.

use std::path::PathBuf;

/// Path of the `stele` binary built alongside the tests.
pub fn stele_bin() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_default();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("stele")
}
