//! `stele vm image build`: the guest image from Debian packages only.
//!
//! 1. the kernel: `apt-get download` of the package `linux-image-cloud-amd64`
//!    depends on (the cloud flavour boots ~2.5× faster under TCG), unpacked
//!    with `dpkg-deb -x`;
//! 2. the initramfs: busybox-static, `/init` and the virtio modules with
//!    their dependencies (read from each module's `.modinfo`), in load order;
//! 3. the root — the *tool image*: `mmdebstrap --variant=minbase` with the
//!    document toolbox ([`PACKAGES`]: python3 with pypdf, openpyxl,
//!    python-docx, reportlab, pandas and Pillow; poppler-utils; tesseract
//!    with English; nodejs and npm; bash, coreutils, file, jq, sqlite3), no
//!    recommends, the C.UTF-8 locale. The tree is kept (`root/`, the
//!    process backend's read-only root) and packed into a read-only ext4
//!    with `mke2fs -d` (the micro-VM's root): one tree, one digest, both
//!    backends.
//!
//! The directory is named by the hash of the inputs (builder version, suite,
//! packages, kernel package version, busybox version, init script), built
//! in a temporary directory and renamed into place when complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ring::digest::{digest, SHA256};

use super::cpio::CpioWriter;
use super::error::VmError;
use super::image::{
    hex, sha256_file, ComponentHashes, GuestImage, ImageStore, Manifest, INITRD_FILE, KERNEL_FILE,
    MANIFEST_FILE, ROOTFS_FILE,
};
use super::tree::{listing, listing_hash, TREE_DIR, TREE_LIST_FILE};

/// Bump when the recipe changes in a way the inputs below do not capture.
const BUILDER_VERSION: u32 = 2;
/// The kernel metapackage.
const KERNEL_META: &str = "linux-image-cloud-amd64";
/// Debian suite of the guest root (the host's release, so the agent binary runs as is).
const SUITE: &str = "bookworm";
/// Mirror of the root file system.
const MIRROR: &str = "http://deb.debian.org/debian";
/// Packages of the root besides minbase: the toolbox the system prompt
/// describes (`runtime`'s tool descriptions name them). Each one costs build
/// time on every fresh machine (CI included): add only what the document
/// workflow needs; anything else goes into the workspace (`.venv/`,
/// `node_modules/`), never here.
pub const PACKAGES: [&str; 20] = [
    "python3",
    // `python3 -m venv .venv` with its bundled pip: installing more goes
    // into the workspace.
    "python3-venv",
    "python3-pypdf",
    "python3-openpyxl",
    "python3-docx",
    "python3-reportlab",
    "python3-pandas",
    "python3-pil",
    "poppler-utils",
    "tesseract-ocr",
    "tesseract-ocr-eng",
    "nodejs",
    // `npm install` into the workspace's `node_modules/` (through the
    // egress proxy, like pip).
    "npm",
    "bash",
    "coreutils",
    "file",
    "jq",
    "sqlite3",
    "ca-certificates",
    "libc-bin",
];
/// mmdebstrap hooks run on the finished tree (part of the image key).
const CUSTOMIZE_HOOKS: [&str; 5] = [
    // Mount points of both backends.
    "mkdir -p \"$1/workspace\" \"$1/run\" \"$1/tmp\"",
    // Nothing in the tree writable by anyone but root: both backends mount
    // a private tmpfs over /tmp, and /var/tmp is not exposed.
    "chmod 0755 \"$1/tmp\" \"$1/var/tmp\"",
    // The fixed locale (C.UTF-8 is built into Debian's libc).
    "printf 'LANG=C.UTF-8\\n' > \"$1/etc/default/locale\"",
    // No build-host leftovers: apt lists and caches, the host's name and resolver.
    "rm -rf \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/* \"$1/etc/hostname\" \"$1/etc/resolv.conf\"",
    "printf '127.0.0.1 localhost\\n::1 localhost\\n' > \"$1/etc/hosts\"",
];
/// Modules the guest needs (their dependencies are added).
const WANTED_MODULES: [&str; 4] = ["virtio_mmio", "virtio_blk", "virtio_console", "virtiofs"];
/// The guest init script; `@MODULES@` is replaced by the load order.
const INIT_TEMPLATE: &str = include_str!("init.sh");

/// Everything an image is built from; its hash names the image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ImageInputs {
    builder: u32,
    suite: String,
    mirror: String,
    packages: Vec<String>,
    hooks: Vec<String>,
    kernel: String,
    busybox: String,
    modules: Vec<String>,
    init: String,
}

impl ImageInputs {
    /// This builder's recipe with the kernel package and busybox version
    /// found on the machine.
    fn recipe(kernel: &str, busybox: &str) -> ImageInputs {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        ImageInputs {
            builder: BUILDER_VERSION,
            suite: SUITE.to_owned(),
            mirror: MIRROR.to_owned(),
            packages: owned(&PACKAGES),
            hooks: owned(&CUSTOMIZE_HOOKS),
            kernel: kernel.to_owned(),
            busybox: busybox.to_owned(),
            modules: owned(&WANTED_MODULES),
            init: INIT_TEMPLATE.to_owned(),
        }
    }

    /// The image key: 24 hex digits of the SHA-256 of one `name=value`
    /// line per input, in a fixed order (the key must not depend on how a
    /// serializer happens to order map keys).
    fn key(&self) -> String {
        let inputs = [
            ("builder", self.builder.to_string()),
            ("suite", self.suite.clone()),
            ("mirror", self.mirror.clone()),
            ("packages", self.packages.join(",")),
            ("hooks", self.hooks.join("\n")),
            ("kernel", self.kernel.clone()),
            ("busybox-static", self.busybox.clone()),
            ("modules", self.modules.join(",")),
            ("init", self.init.clone()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect::<String>();
        hex(&digest(&SHA256, inputs.as_bytes()).as_ref()[..12])
    }
}

/// What the build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The image.
    pub image: GuestImage,
    /// True when the image was already built and nothing was done.
    pub cached: bool,
}

/// Build (or find) the image for the current inputs, and make it current.
pub fn build_image(
    store: &ImageStore,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, VmError> {
    let started = Instant::now();
    let kernel_pkg = kernel_package()?;
    let busybox = run_capture(
        "inputs",
        Command::new("dpkg-query").args(["-W", "-f=${Version}", "busybox-static"]),
    )?;
    let key = ImageInputs::recipe(&kernel_pkg, busybox.trim()).key();
    if let Some(image) = store.get(&key)? {
        store.set_current(&key)?;
        return Ok(BuildReport {
            image,
            cached: true,
        });
    }
    let root = store.root();
    mkdir(root)?;
    let work = root.join(format!(".build-{key}-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| file_err("build directory", &work, e))?;
    }
    mkdir(&work)?;
    let result = build_into(&work, &key, &kernel_pkg, progress, started);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    let dir = root.join(&key);
    // Only the finished files move into place; the scratch tree is dropped.
    let done = work.join("image");
    std::fs::rename(&done, &dir).map_err(|e| file_err("image directory", &dir, e))?;
    let _ = std::fs::remove_dir_all(&work);
    store.set_current(&key)?;
    Ok(BuildReport {
        image: GuestImage { dir, manifest },
        cached: false,
    })
}

fn build_into(
    work: &Path,
    key: &str,
    kernel_pkg: &str,
    progress: &mut dyn FnMut(&str),
    started: Instant,
) -> Result<Manifest, VmError> {
    let out = work.join("image");
    mkdir(&out)?;

    progress(&format!("kernel: downloading {kernel_pkg}"));
    let (pkg_name, _) = kernel_pkg.split_once('=').unwrap_or((kernel_pkg, ""));
    run(
        "kernel",
        Command::new("apt-get")
            .args(["download", "-q", kernel_pkg])
            .current_dir(work),
    )?;
    let deb = find_file(work, |n| n.starts_with(pkg_name) && n.ends_with(".deb"))?
        .ok_or_else(|| tool_err("kernel", "apt-get download", "no .deb was downloaded"))?;
    let kx = work.join("kernel");
    run(
        "kernel",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&kx),
    )?;
    let vmlinuz = find_file(&kx.join("boot"), |n| n.starts_with("vmlinuz-"))?
        .ok_or_else(|| tool_err("kernel", "dpkg-deb -x", "no /boot/vmlinuz-* in the package"))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_owned();
    copy(&vmlinuz, &out.join(KERNEL_FILE))?;

    progress("initramfs: busybox + modules");
    let moddir = kx.join("lib/modules").join(&release);
    let modules = super::modules::load_order(&moddir, &WANTED_MODULES)?;
    let init = INIT_TEMPLATE.replace(
        "@MODULES@",
        &modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let mut cpio = CpioWriter::default();
    let cpio_err = |e| file_err("initramfs", &out.join(INITRD_FILE), e);
    for d in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        cpio.dir(d, 0o755).map_err(cpio_err)?;
    }
    let busybox = std::fs::read("/bin/busybox")
        .map_err(|e| file_err("busybox-static", Path::new("/bin/busybox"), e))?;
    cpio.file("bin/busybox", 0o755, &busybox)
        .map_err(cpio_err)?;
    cpio.symlink("bin/sh", "busybox").map_err(cpio_err)?;
    cpio.file("init", 0o755, init.as_bytes())
        .map_err(cpio_err)?;
    for m in &modules {
        let data = std::fs::read(&m.path).map_err(|e| file_err("kernel module", &m.path, e))?;
        cpio.file(&format!("modules/{}.ko", m.name), 0o644, &data)
            .map_err(cpio_err)?;
    }
    let bytes = cpio.finish().map_err(cpio_err)?;
    std::fs::write(out.join(INITRD_FILE), bytes).map_err(cpio_err)?;

    progress(&format!(
        "root: mmdebstrap {SUITE} (minbase + {})",
        PACKAGES.join(", ")
    ));
    let rootdir = out.join(TREE_DIR);
    let include = format!("--include={}", PACKAGES.join(","));
    let mut mm = Command::new("mmdebstrap");
    mm.args(["--quiet", "--variant=minbase", "--mode=auto", &include])
        .args([
            "--aptopt=APT::Install-Recommends \"false\"",
            // dpkg fsyncs every file by default; the tree is hashed and
            // packed afterwards, and a crash mid-build leaves only a
            // scratch directory.
            "--dpkgopt=force-unsafe-io",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
        ])
        .args(
            CUSTOMIZE_HOOKS
                .iter()
                .map(|h| format!("--customize-hook={h}")),
        )
        .arg(SUITE)
        .arg(&rootdir)
        .arg(MIRROR);
    run("root", &mut mm)?;
    progress("root: mke2fs -d (read-only ext4)");
    let used = dir_bytes(&rootdir)?;
    let size_mib = used * 5 / 4 / (1 << 20) + 64;
    let rootfs = out.join(ROOTFS_FILE);
    run(
        "root",
        Command::new("mke2fs")
            .args([
                "-q",
                "-t",
                "ext4",
                "-O",
                "^has_journal",
                "-L",
                "stele-root",
                "-d",
            ])
            .arg(&rootdir)
            .arg(&rootfs)
            .arg(format!("{size_mib}M")),
    )?;

    progress("hashing");
    let tree_listing = listing(&rootdir)?;
    std::fs::write(out.join(TREE_LIST_FILE), &tree_listing)
        .map_err(|e| file_err("root tree listing", &out.join(TREE_LIST_FILE), e))?;
    let sha256 = ComponentHashes {
        kernel: sha256_file(&out.join(KERNEL_FILE))?,
        initrd: sha256_file(&out.join(INITRD_FILE))?,
        rootfs: sha256_file(&rootfs)?,
        tree: Some(listing_hash(&tree_listing)),
    };
    let manifest = Manifest {
        key: key.to_owned(),
        digest: sha256.digest(),
        kernel_package: kernel_pkg.to_owned(),
        kernel_release: release,
        suite: SUITE.to_owned(),
        packages: PACKAGES.iter().map(|p| (*p).to_owned()).collect(),
        modules: modules.iter().map(|m| m.name.clone()).collect(),
        sha256,
        build_seconds: started.elapsed().as_secs(),
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| VmError::Manifest {
        path: out.join(MANIFEST_FILE),
        detail: e.to_string(),
    })?;
    std::fs::write(out.join(MANIFEST_FILE), text)
        .map_err(|e| file_err("image manifest", &out.join(MANIFEST_FILE), e))?;
    Ok(manifest)
}

/// `name=version` of the kernel package the metapackage depends on.
fn kernel_package() -> Result<String, VmError> {
    let show = run_capture(
        "inputs",
        Command::new("apt-cache").args(["show", "--no-all-versions", KERNEL_META]),
    )?;
    let depends = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .ok_or_else(|| {
            tool_err(
                "inputs",
                "apt-cache show",
                "no Depends: line (run apt-get update?)",
            )
        })?;
    // "linux-image-6.1.0-41-cloud-amd64 (= 6.1.158-1)"
    let first = depends.split(',').next().unwrap_or_default().trim();
    let (name, version) = match first.split_once('(') {
        Some((n, v)) => (
            n.trim(),
            v.trim_end_matches(')')
                .trim()
                .trim_start_matches('=')
                .trim(),
        ),
        None => (first, ""),
    };
    if name.is_empty() {
        return Err(tool_err("inputs", "apt-cache show", "empty Depends: line"));
    }
    Ok(if version.is_empty() {
        name.to_owned()
    } else {
        format!("{name}={version}")
    })
}

fn dir_bytes(dir: &Path) -> Result<u64, VmError> {
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| file_err("root tree", &d, e))?;
        for entry in rd.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            use std::os::unix::fs::MetadataExt;
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

fn find_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<Option<PathBuf>, VmError> {
    let rd = std::fs::read_dir(dir).map_err(|e| file_err("directory", dir, e))?;
    Ok(rd
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pred)))
}

fn mkdir(p: &Path) -> Result<(), VmError> {
    std::fs::create_dir_all(p).map_err(|e| file_err("directory", p, e))
}

fn copy(from: &Path, to: &Path) -> Result<(), VmError> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| file_err("image file", to, e))
}

fn file_err(what: &'static str, path: &Path, source: std::io::Error) -> VmError {
    VmError::File {
        what,
        path: path.to_owned(),
        source,
    }
}

fn tool_err(step: &'static str, command: &str, detail: &str) -> VmError {
    VmError::Tool {
        step,
        command: command.to_owned(),
        detail: detail.to_owned(),
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(step: &'static str, cmd: &mut Command) -> Result<(), VmError> {
    run_capture(step, cmd).map(|_| ())
}

fn run_capture(step: &'static str, cmd: &mut Command) -> Result<String, VmError> {
    let out = cmd
        .output()
        .map_err(|e| tool_err(step, &describe(cmd), &e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(tool_err(
            step,
            &describe(cmd),
            &format!("{}: {}", out.status, tail.join(" | ")),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_key() {
        let a = ImageInputs::recipe(
            "linux-image-6.1.0-56-cloud-amd64=6.1.192-2",
            "1:1.35.0-4+b3",
        );
        let b = ImageInputs::recipe(
            "linux-image-6.1.0-56-cloud-amd64=6.1.192-2",
            "1:1.35.0-4+b3",
        );
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 24);
        assert!(a.key().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn any_changed_input_changes_the_key() {
        let base = ImageInputs::recipe(
            "linux-image-6.1.0-56-cloud-amd64=6.1.192-2",
            "1:1.35.0-4+b3",
        );
        type Change = (&'static str, fn(&mut ImageInputs));
        let changes: [Change; 10] = [
            ("builder", |i| i.builder += 1),
            ("suite", |i| i.suite = "trixie".into()),
            ("mirror", |i| i.mirror.push('/')),
            ("packages", |i| i.packages.push("git".into())),
            ("package order", |i| i.packages.reverse()),
            ("hooks", |i| i.hooks.push("true".into())),
            ("kernel", |i| i.kernel.push('1')),
            ("busybox", |i| i.busybox.push('1')),
            ("modules", |i| i.modules.push("vsock".into())),
            ("init", |i| i.init.push('\n')),
        ];
        let mut seen = std::collections::BTreeSet::from([base.key()]);
        for (what, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert!(
                seen.insert(changed.key()),
                "changing the {what} kept the key"
            );
        }
    }
}
