//! Errors of the micro-VM backend.

use std::path::PathBuf;

/// Errors of the micro-VM backend: image building, booting, the guest channel.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// An external tool (apt-get, mmdebstrap, mke2fs, …) failed.
    #[error("{step}: `{command}` failed: {detail}")]
    Tool {
        /// The build step.
        step: &'static str,
        /// The command line run.
        command: String,
        /// Exit status and the tail of its standard error.
        detail: String,
    },
    /// A file of the image or of the VM's run directory could not be used.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No guest image has been built (run `stele vm image build`).
    #[error("no guest image under {0} (run `stele vm image build`)")]
    NoImage(PathBuf),
    /// The image manifest is malformed.
    #[error("image manifest {path}: {detail}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// QEMU's jail could not be set up (QEMU is not started without it).
    #[error("QEMU jail: {0}")]
    Jail(String),
    /// QEMU could not be started or stopped.
    #[error("qemu: {0}")]
    Qemu(String),
    /// The guest agent did not report ready in time.
    #[error("the VM did not come up within {timeout_ms} ms ({detail})")]
    BootTimeout {
        /// The boot timeout.
        timeout_ms: u128,
        /// What was seen (console tail, QEMU exit status).
        detail: String,
    },
    /// The host↔guest channel failed or carried a malformed frame.
    #[error("guest channel: {0}")]
    Channel(String),
    /// The guest agent reported an error.
    #[error("guest agent: {0}")]
    Guest(String),
    /// The vhost-user-fs (virtio-fs) backend failed.
    #[error("virtio-fs backend: {0}")]
    VirtioFs(String),
}
