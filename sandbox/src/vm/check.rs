//! What `stele sandbox check` reports about the micro-VM backend: QEMU,
//! KVM (probed; a software PVM counts as unusable), TCG, the guest image
//! and the agent binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::ImageStore;
use super::qemu::{probe_kvm, qemu_version, KvmProbe, QEMU};

/// The micro-VM backend's state on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmReport {
    /// QEMU's version line, or why it cannot run.
    pub qemu: Result<String, String>,
    /// Hardware KVM.
    pub kvm: KvmProbe,
    /// Whether QEMU lists the TCG accelerator.
    pub tcg: bool,
    /// The current image's digest and kernel, or why there is none.
    pub image: Result<(String, String), String>,
    /// The agent binary, or where it was looked for.
    pub agent: Result<PathBuf, String>,
}

impl VmReport {
    /// Probe this host; `agent` is where `stele-guest` should be.
    pub fn probe(store: &ImageStore, agent: &Path) -> VmReport {
        let qemu = qemu_version();
        let tcg = qemu.is_ok()
            && Command::new(QEMU)
                .args(["-accel", "help"])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| l.trim() == "tcg")
                })
                .unwrap_or(false);
        let image = store
            .current()
            .map(|i| (i.manifest.digest, i.manifest.kernel_release))
            .map_err(|e| e.to_string());
        let agent = if agent.is_file() {
            Ok(agent.to_owned())
        } else {
            Err(format!("{} not found", agent.display()))
        };
        VmReport {
            qemu,
            kvm: probe_kvm(),
            tcg,
            image,
            agent,
        }
    }

    /// Whether a VM can be booted (with TCG at least).
    pub fn ready(&self) -> bool {
        self.qemu.is_ok()
            && (self.tcg || self.kvm == KvmProbe::Usable)
            && self.image.is_ok()
            && self.agent.is_ok()
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
        row(
            "qemu",
            match &self.qemu {
                Ok(v) => v.clone(),
                Err(e) => format!("MISSING ({e})"),
            },
        );
        row(
            "kvm (hardware)",
            match &self.kvm {
                KvmProbe::Usable => "usable".into(),
                KvmProbe::Unusable(why) => format!("not usable ({why})"),
            },
        );
        row(
            "tcg (emulation)",
            if self.tcg {
                "available".into()
            } else {
                "MISSING".into()
            },
        );
        row(
            "guest image",
            match &self.image {
                Ok((digest, kernel)) => format!("{digest} (kernel {kernel})"),
                Err(e) => format!("MISSING ({e})"),
            },
        );
        row(
            "guest agent",
            match &self.agent {
                Ok(p) => p.display().to_string(),
                Err(e) => format!("MISSING ({e})"),
            },
        );
        out
    }
}
