//! The micro-VM backend: commands run in a QEMU `-M microvm` guest with its
//! own kernel, driven by the guest agent `stele-guest` over virtio-serial;
//! the workspace reaches the guest through the mediated file layer served
//! over vhost-user-fs (virtio-fs), and the network only through the egress
//! proxy, carried over the same channel.
//!
//! * `build.rs`, `modules.rs`, `cpio.rs`, `image.rs`, `tree.rs`, `verify.rs`
//!   — the guest image (the tool image both backends run on);
//! * `qemu.rs` — the VMM process, accelerator probe, QMP;
//! * `jail.rs`, `vmm.rs` — QEMU's jail (stele is its jailer), its process;
//! * `agent.rs` — the per-agent initramfs;
//! * `virtiofs.rs` — the vhost-user-fs backend over the mediated layer;
//! * `channel.rs`, `protocol.rs` — the host↔guest channel;
//! * `fsproto.rs`, `files.rs` — file requests to the agent ([`GuestFiles`]);
//! * `boot.rs` — booting one VM and stopping it;
//! * `sandbox.rs` — [`VmSandbox`], the `Sandbox` implementation;
//! * `check.rs` — what `stele sandbox check` reports;
//! * `guest/` — the agent itself.
//!
//! See `docs/microvm.md`.

mod agent;
mod boot;
mod build;
mod channel;
mod check;
mod cpio;
mod error;
mod files;
mod fsproto;
pub mod guest;
mod image;
mod jail;
mod modules;
pub mod protocol;
mod qemu;
mod sandbox;
mod tree;
pub(crate) mod verify;
mod virtiofs;
mod vmm;

pub use build::{build_image, BuildReport, PACKAGES};
pub use check::VmReport;
pub use error::VmError;
pub use files::{GuestFiles, GuestFsError, WriteOptions};
pub use image::{ComponentHashes, GuestImage, ImageStore, Manifest};
pub use jail::JailInfo;
pub use qemu::{probe_kvm, qemu_version, Accel, AccelChoice, KvmProbe};
pub use sandbox::{VmInfo, VmSandbox, VmSandboxConfig};
pub use verify::ImageIntegrity;
