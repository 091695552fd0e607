//! Helpers for end-to-end tests that run the `stele` binary as a user would.

pub mod mock_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `stele` binary built alongside the tests (`target/<profile>/stele`).
pub fn stele_bin() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_default();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("stele")
}

/// A scratch state directory and a way to run `stele` in it.
#[derive(Debug)]
pub struct Stele {
    /// The state directory (`STELE_STATE_DIR`).
    pub state: PathBuf,
}

impl Stele {
    /// Use `state` as the state directory.
    pub fn new(state: &Path) -> Self {
        Self { state: state.to_path_buf() }
    }

    /// Run `stele ARGS…` and collect its output.
    pub fn run(&self, args: &[&str]) -> std::io::Result<Output> {
        let bin = stele_bin();
        if !bin.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is missing: build it with `cargo build -p stele-runtime`", bin.display()),
            ));
        }
        Command::new(bin).args(args).env("STELE_STATE_DIR", &self.state).env("USER", "alice").output()
    }
}
