//! The initramfs a VM boots with: the image's base initramfs followed by a
//! small archive holding the agent binary (`/stele-guest`), which the init
//! script copies onto the guest's root. Cached next to the image by the
//! hash of the agent, so an unchanged agent costs nothing per boot.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cpio::CpioWriter;
use super::error::VmError;
use super::image::{hex, GuestImage};

/// The combined initramfs for `image` and the agent at `agent`, and the
/// agent's SHA-256.
pub(crate) fn initrd_with_agent(
    image: &GuestImage,
    agent: &Path,
) -> Result<(PathBuf, String), VmError> {
    let file_err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| VmError::File {
            what,
            path: path.clone(),
            source,
        }
    };
    let bytes = std::fs::read(agent).map_err(file_err("guest agent", agent))?;
    let sha = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    let cache = image.dir.join("agents");
    let out = cache.join(format!("{}.cpio", &sha[..16]));
    if out.is_file() {
        return Ok((out, sha));
    }
    std::fs::create_dir_all(&cache).map_err(file_err("agent cache", &cache))?;
    // Debug symbols would only slow the guest's unpacking; strip a copy
    // when `strip` is there (it comes with the C toolchain Rust links with).
    let stripped = cache.join(format!(".{}.stripped", &sha[..16]));
    let agent_bytes = match Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(agent)
        .status()
    {
        Ok(s) if s.success() => {
            let b = std::fs::read(&stripped).map_err(file_err("guest agent", &stripped))?;
            let _ = std::fs::remove_file(&stripped);
            b
        }
        _ => bytes,
    };
    let mut cpio = CpioWriter::default();
    let cpio_err = file_err("initramfs", &out);
    cpio.file("stele-guest", 0o755, &agent_bytes)
        .map_err(&cpio_err)?;
    let tail = cpio.finish().map_err(&cpio_err)?;
    let mut all = std::fs::read(image.initrd()).map_err(file_err("initramfs", &image.initrd()))?;
    all.extend_from_slice(&tail);
    let tmp = cache.join(format!(".{}.tmp", &sha[..16]));
    std::fs::write(&tmp, all).map_err(file_err("initramfs", &tmp))?;
    std::fs::rename(&tmp, &out).map_err(file_err("initramfs", &out))?;
    Ok((out, sha))
}
