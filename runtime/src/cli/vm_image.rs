//! The micro-VM guest image, built when the VM backend is first asked for
//! rather than as a precondition of everything else (`scripts/demo` runs
//! in the process sandbox and never waits for it). The same entry point
//! serves `stele vm image build`, a session's `--backend vm`, and later any
//! other backend that runs on an image of this builder.
//!
//! A deployment that must run only a vetted image sets
//! `vm_image_build = "never"` (managed config): a missing image is then an
//! error naming `stele vm image build`, never a build at session time.

use std::time::Instant;

use serde::Deserialize;
use stele_sandbox::vm::{build_image, GuestImage, ImageStore, VmError};

use super::ticker::{elapsed_text, Ticker};

/// Whether a missing guest image is built when a session needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmImageBuild {
    /// Build it then, with progress (the default).
    #[default]
    Auto,
    /// Refuse; the image is built only by `stele vm image build`.
    Never,
}

/// The Debian packages the builder needs (scripts/setup-vm installs them).
pub const BUILDER_PACKAGES: &str = "qemu-system-x86 mmdebstrap e2fsprogs busybox-static cpio gzip";

/// Why the image was built (for the first progress line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `stele vm image build`.
    Asked,
    /// A session asked for the VM backend and there was no image.
    FirstUse,
}

/// What [`build`] did.
#[derive(Debug)]
pub struct Built {
    /// The image.
    pub image: GuestImage,
    /// It was already built for these inputs.
    pub cached: bool,
    /// Seconds the build took.
    pub seconds: f64,
}

/// The current image of `store`; when there is none and the configuration
/// allows it (`vm_image_build`, default `auto`), build it first.
pub fn current_or_build(store: &ImageStore) -> anyhow::Result<GuestImage> {
    match store.current() {
        Ok(image) => Ok(image),
        Err(VmError::NoImage(_)) => {
            let policy = crate::config::load()?
                .pick("vm_image_build", None, |c| c.vm_image_build)?
                .unwrap_or_default();
            match policy {
                VmImageBuild::Never => Err(anyhow::anyhow!(
                    "no guest image under {} (the configuration says vm_image_build = \
                     \"never\": build it with `stele vm image build`)",
                    crate::terminal_safe::path(store.root())
                )),
                VmImageBuild::Auto => Ok(build(store, Why::FirstUse)?.image),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Build (or find, cached by the hash of its inputs) the image, showing
/// each step with the time since the start, and a live line on a terminal.
pub fn build(store: &ImageStore, why: Why) -> anyhow::Result<Built> {
    // A new store is private (0700); the images inside stay readable by
    // the jailed QEMU, which gets them as mounts.
    crate::paths::ensure_private_dir(store.root())?;
    if why == Why::FirstUse {
        crate::errln!(
            "stele: the micro-VM backend has no guest image yet; building it now from Debian \
             packages (first use only: several minutes; cached in {})",
            crate::terminal_safe::path(store.root())
        );
    }
    let started = Instant::now();
    let ticker = Ticker::start("vm image: resolving inputs");
    let report = build_image(store, &mut |step| {
        ticker.println(&format!(
            "vm image: [{}] {}",
            elapsed_text(started.elapsed()),
            crate::terminal_safe::line(step)
        ));
        ticker.set(&format!("vm image: {step}"));
    });
    if let Ok(r) = &report {
        if r.cached {
            ticker.println(&format!(
                "vm image: [{}] the image of these inputs is in the store already ({})",
                elapsed_text(started.elapsed()),
                crate::terminal_safe::path(&r.image.dir)
            ));
        }
    }
    drop(ticker);
    let report = report.map_err(|e| {
        anyhow::anyhow!(
            "building the micro-VM image failed: {e}; the builder needs root and the Debian \
             packages {BUILDER_PACKAGES} (scripts/setup-vm installs them)"
        )
    })?;
    Ok(Built {
        image: report.image,
        cached: report.cached,
        seconds: started.elapsed().as_secs_f64(),
    })
}
