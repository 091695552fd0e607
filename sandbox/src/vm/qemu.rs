//! Driving QEMU: the accelerator probe, the command line (`-M microvm`,
//! no defaults, QEMU's own seccomp sandbox, no network device), starting
//! it in its jail (`jail.rs`) from a keeper thread, and QMP for an orderly
//! quit.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::error::VmError;
use super::jail::{self, Identity, JailInfo, JAIL_INITRD, JAIL_KERNEL, JAIL_ROOTFS, JAIL_RUN};
use super::vmm::Vmm;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// How the guest's CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's translator: slow but available everywhere.
    Tcg,
}

impl Accel {
    /// The name used in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when the probe finds it usable, TCG otherwise.
    Auto,
    /// Only KVM.
    Kvm,
    /// Only TCG.
    Tcg,
}

/// What the KVM probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    /// /dev/kvm opens and the CPU has VMX/SVM.
    Usable,
    /// Not usable, and why.
    Unusable(String),
}

/// Probe /dev/kvm without booting anything. A software PVM (`kvm_pvm`)
/// answers the KVM ioctls but stock guest kernels hang on it, so it counts
/// as unusable; a boot with a timeout is still the final word.
pub fn probe_kvm() -> KvmProbe {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return KvmProbe::Unusable(
            "/dev/kvm is kvm_pvm (software PVM): stock kernels hang on it".into(),
        );
    }
    if let Err(e) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return KvmProbe::Unusable(format!("/dev/kvm: {e}"));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_vt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if has_vt {
        KvmProbe::Usable
    } else {
        KvmProbe::Unusable("the CPU reports no vmx/svm".into())
    }
}

/// `qemu-system-x86_64 --version`, first line, or why it cannot run.
pub fn qemu_version() -> Result<String, String> {
    let out = Command::new(QEMU)
        .arg("--version")
        .output()
        .map_err(|e| format!("{QEMU}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{QEMU} --version: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The host's TSC frequency in kHz (from /proc/cpuinfo), or 2 GHz.
fn host_tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("cpu MHz"))
                .and_then(|v| {
                    v.trim_start_matches([' ', '\t', ':'])
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .filter(|mhz| *mhz > 100.0)
        .map_or(2_000_000, |mhz| (mhz * 1000.0) as u64)
}

/// Everything the command line is built from.
#[derive(Debug, Clone)]
pub(crate) struct QemuSpec {
    pub accel: Accel,
    pub memory_mib: u32,
    /// Host paths of the kernel, initramfs and root image.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub rootfs: PathBuf,
    /// The VM's private run directory (root-only when stele is root).
    pub run_dir: PathBuf,
    pub virtiofs: bool,
    /// Who QEMU runs as.
    pub id: Identity,
}

/// File names in the share directory.
const AGENT_SOCK: &str = "agent.sock";
const QMP_SOCK: &str = "qmp.sock";
const FS_SOCK: &str = "fs.sock";
const CONSOLE_LOG: &str = "console.log";

impl QemuSpec {
    /// Whether guest commands get address space randomisation: not under
    /// TCG. TCG caches translated code by virtual address, so a program
    /// mapped at new addresses on every run has all of its code (and its
    /// libraries') translated again on every run: `/bin/true` took ~25 ms
    /// with randomisation and ~5 ms without. The commands are untrusted
    /// code by design, so randomisation inside the guest protects nothing
    /// the sandbox relies on; the guest kernel keeps KASLR, the agent its
    /// own randomised layout, and under KVM commands keep theirs.
    pub fn guest_aslr(&self) -> bool {
        self.accel != Accel::Tcg
    }

    /// The directory QEMU sees as its `/run/vm`: sockets and console log.
    pub fn share_dir(&self) -> PathBuf {
        self.run_dir.join("vm")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.share_dir().join(AGENT_SOCK)
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.share_dir().join(QMP_SOCK)
    }
    pub fn fs_socket(&self) -> PathBuf {
        self.share_dir().join(FS_SOCK)
    }
    pub fn console_log(&self) -> PathBuf {
        self.share_dir().join(CONSOLE_LOG)
    }
    pub fn stderr_log(&self) -> PathBuf {
        self.run_dir.join("qemu.stderr")
    }

    /// The command line, with paths as QEMU sees them in its jail (QEMU
    /// connects to our sockets as a client).
    pub fn args(&self) -> Vec<String> {
        let run = |name: &str| format!("{JAIL_RUN}/{name}");
        let mut cmdline = String::from("console=ttyS0 quiet panic=-1 reboot=t");
        if self.accel == Accel::Tcg {
            // Without a given TSC frequency, TCG boots hang at random
            // calibrating it. TCG's TSC is the host's, so with the host's
            // frequency and `tsc=reliable` the guest keeps accurate,
            // fine-grained time (otherwise it falls back to 4 ms jiffies).
            cmdline.push_str(&format!(" tsc_early_khz={} tsc=reliable", host_tsc_khz()));
        }
        if !self.guest_aslr() {
            cmdline.push(' ');
            cmdline.push_str(super::guest::ASLR_OFF);
        }
        if self.virtiofs {
            cmdline.push_str(" stele.ws=1");
        }
        let mem = self.memory_mib;
        let mut a: Vec<String> = vec![
            "-M".into(),
            "microvm,memory-backend=mem".into(),
            "-accel".into(),
            self.accel.name().into(),
        ];
        if self.accel == Accel::Kvm {
            a.extend(["-cpu".into(), "host,-arch-capabilities".into()]);
        }
        // Under TCG the default CPU model (qemu64) stays: `-cpu max` made
        // commands slower, and with qemu64 the guest kernel needs no page
        // table isolation, so `mitigations=off` (retpolines only) made no
        // measurable difference either (docs/microvm.md).
        a.extend([
            "-m".into(),
            format!("{mem}M"),
            "-smp".into(),
            "1".into(),
            // vhost-user devices need guest RAM the backend can map.
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-sandbox".into(),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
            "-kernel".into(),
            JAIL_KERNEL.into(),
            "-initrd".into(),
            JAIL_INITRD.into(),
            "-append".into(),
            cmdline,
            "-chardev".into(),
            format!("file,id=con,path={}", run(CONSOLE_LOG)),
            "-serial".into(),
            "chardev:con".into(),
            "-drive".into(),
            format!("id=root,file={JAIL_ROOTFS},format=raw,if=none,readonly=on"),
            "-device".into(),
            "virtio-blk-device,drive=root".into(),
            "-device".into(),
            "virtio-serial-device".into(),
            "-chardev".into(),
            format!("socket,id=agent,path={}", run(AGENT_SOCK)),
            "-device".into(),
            format!(
                "virtserialport,chardev=agent,name={}",
                super::protocol::PORT_NAME
            ),
            "-chardev".into(),
            format!("socket,id=qmp,path={}", run(QMP_SOCK)),
            "-mon".into(),
            "chardev=qmp,mode=control".into(),
        ]);
        if self.virtiofs {
            a.extend([
                "-chardev".into(),
                format!("socket,id=fs,path={}", run(FS_SOCK)),
                "-device".into(),
                "vhost-user-fs-device,chardev=fs,tag=stele-ws,queue-size=1024".into(),
            ]);
        }
        a
    }
}

/// A started QEMU and the thread that started it.
///
/// QEMU is killed when that thread ends (`PR_SET_PDEATHSIG` follows the
/// spawning *thread*), so a keeper thread lives as long as the VM: the VM
/// outlives whichever thread booted it, and dies with stele.
pub(crate) struct Spawned {
    pub vmm: Vmm,
    /// How QEMU is confined.
    pub jail: JailInfo,
    keeper: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Spawned {
    /// Let the keeper thread go (after QEMU has been reaped).
    pub fn release(&mut self) {
        if let Some((tx, t)) = self.keeper.take() {
            drop(tx);
            let _ = t.join();
        }
    }
}

/// Start QEMU in its jail on a keeper thread (see [`Spawned`]), in
/// `cgroup` when given.
pub(crate) fn spawn(
    spec: &QemuSpec,
    cgroup: Option<std::sync::Arc<crate::process::cgroup::LeafGroup>>,
) -> Result<Spawned, VmError> {
    let (child_tx, child_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let spec = spec.clone();
    let keeper = std::thread::Builder::new()
        .name("stele-vm-keeper".into())
        .spawn(move || {
            let spawned = spawn_here(&spec, cgroup.as_deref());
            let ok = spawned.is_ok();
            let _ = child_tx.send(spawned);
            if ok {
                // Returns when the sender is dropped.
                let _ = stop_rx.recv();
            }
        })
        .map_err(|e| VmError::Qemu(format!("keeper thread: {e}")))?;
    let (vmm, jail) = child_rx
        .recv()
        .map_err(|_| VmError::Qemu("keeper thread died".into()))??;
    Ok(Spawned {
        vmm,
        jail,
        keeper: Some((stop_tx, keeper)),
    })
}

/// Start QEMU in its jail from the calling thread; it dies with the
/// calling thread.
fn spawn_here(
    spec: &QemuSpec,
    cgroup: Option<&crate::process::cgroup::LeafGroup>,
) -> Result<(Vmm, JailInfo), VmError> {
    let stderr = std::fs::File::create(spec.stderr_log()).map_err(|e| VmError::File {
        what: "qemu log",
        path: spec.stderr_log(),
        source: e,
    })?;
    jail::spawn(jail::JailSpec {
        args: spec.args(),
        kernel: &spec.kernel,
        initrd: &spec.initrd,
        rootfs: &spec.rootfs,
        share_dir: &spec.share_dir(),
        kvm: spec.accel == Accel::Kvm,
        memory_mib: spec.memory_mib,
        stderr,
        id: spec.id,
        cgroup,
    })
}

/// Accept one connection on `listener` before `deadline`, giving up early
/// if QEMU exits.
pub(crate) fn accept(
    listener: &UnixListener,
    vmm: &mut Vmm,
    deadline: Instant,
    what: &str,
) -> Result<UnixStream, VmError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| VmError::Qemu(format!("{what} socket: {e}")))?;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)
                    .map_err(|e| VmError::Qemu(format!("{what} socket: {e}")))?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(VmError::Qemu(format!("{what} socket: {e}"))),
        }
        if let Some(status) = vmm.try_wait() {
            return Err(VmError::Qemu(format!(
                "exited ({status}) before connecting {what}"
            )));
        }
        if Instant::now() >= deadline {
            return Err(VmError::Qemu(format!("did not connect {what} in time")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The QMP connection, used to quit the VM.
pub(crate) struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Read the greeting and enter command mode.
    pub fn negotiate(stream: UnixStream, timeout: Duration) -> Result<Qmp, VmError> {
        let err = |e: std::io::Error| VmError::Qemu(format!("qmp: {e}"));
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        let reader = BufReader::new(stream.try_clone().map_err(err)?);
        let mut qmp = Qmp { stream, reader };
        qmp.read_line()?; // greeting
        qmp.command("qmp_capabilities")?;
        Ok(qmp)
    }

    fn read_line(&mut self) -> Result<String, VmError> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| VmError::Qemu(format!("qmp: {e}")))?;
        Ok(line)
    }

    /// Run one command and wait for its `return` (events are skipped).
    pub fn command(&mut self, name: &str) -> Result<(), VmError> {
        let msg = format!("{{\"execute\":\"{name}\"}}\n");
        self.stream
            .write_all(msg.as_bytes())
            .map_err(|e| VmError::Qemu(format!("qmp {name}: {e}")))?;
        for _ in 0..64 {
            let line = self.read_line()?;
            if line.is_empty() {
                // `quit` closes the connection once QEMU is on its way out.
                return Ok(());
            }
            if line.contains("\"return\"") {
                return Ok(());
            }
            if line.contains("\"error\"") {
                return Err(VmError::Qemu(format!("qmp {name}: {}", line.trim())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "qemu_tests.rs"]
mod tests;
