//! `stele-guest`, the agent inside the micro-VM.
//!
//! Started by the initramfs as PID 1 on the read-only root, it forks: PID 1
//! stays behind only to reap orphans (and powers the VM off if the agent
//! dies); the agent mounts the virtio-fs workspace, brings up loopback,
//! finds the virtio-serial port named `stele`, reports ready and then serves
//! the host's requests: commands (each under Landlock + seccomp + rlimits,
//! as an unprivileged user, with a deadline), file requests (through a
//! `cap-std` `Dir` handle on the workspace, `files.rs`) and proxy streams
//! (clients of the forwarder on 127.0.0.1:3128, carried to the host's
//! egress proxy).

mod confine;
pub(crate) use confine::GUEST_USER;
mod exec;
mod files;
mod forward;
mod groups;
mod spawn;
mod workers;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use super::protocol::{read_frame, write_frame, GuestMsg, HostMsg, ReadyReport, PORT_NAME};

/// Where virtio-fs is mounted, and its tag.
const WORKSPACE_TAG: &str = "stele-ws";

/// The kernel command-line word with which the host turns off address
/// space randomisation for guest commands (under TCG; see `qemu.rs`).
pub const ASLR_OFF: &str = "stele.aslr=off";

/// The write half of the channel, shared by every thread that reports.
#[derive(Clone)]
pub(crate) struct Sender {
    port: Arc<Mutex<File>>,
}

impl Sender {
    /// Send one message; a failed write means the host is gone, which the
    /// reader notices too, so errors are dropped here.
    pub fn send(&self, msg: &GuestMsg) {
        let mut port = self.port.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = write_frame(&mut *port, msg);
    }

    /// Send one message, reporting failure (`InvalidInput`: too large for
    /// a frame, nothing was sent).
    pub fn try_send(&self, msg: &GuestMsg) -> std::io::Result<()> {
        let mut port = self.port.lock().unwrap_or_else(PoisonError::into_inner);
        write_frame(&mut *port, msg)
    }
}

/// Proxy streams open in the guest, by id.
pub(crate) type Streams = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// The binary's entry point.
pub fn run() -> ExitCode {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        // SAFETY: single-threaded at this point; the child continues below.
        match unsafe { libc::fork() } {
            0 => {}
            pid if pid > 0 => reap_forever(pid),
            _ => {
                eprintln!(
                    "stele-guest: fork failed: {}",
                    std::io::Error::last_os_error()
                );
                power_off();
            }
        }
    }
    match agent() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stele-guest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// PID 1: reap every orphan; when the agent itself exits, power off.
fn reap_forever(agent: libc::pid_t) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: wait with a valid status pointer.
        let pid = unsafe { libc::wait(&mut status) };
        if pid == agent
            || (pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
        {
            eprintln!("stele-guest: agent exited (status {status}), powering off");
            power_off();
        }
    }
}

fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    std::process::exit(1)
}

fn agent() -> Result<(), String> {
    let mut errors = Vec::new();
    let workspace = match mount_workspace() {
        Ok(mounted) => mounted,
        Err(e) => {
            errors.push(e);
            false
        }
    };
    // The granted folder, opened once; every file request goes through it.
    let granted = match files::Granted::open(workspace.then_some(crate::exec::WORKSPACE_MOUNT)) {
        Ok(g) => g,
        Err(e) => {
            errors.push(e);
            files::Granted::none()
        }
    };
    let granted = Arc::new(granted);
    if !crate::process::loopback::lo_up() {
        errors.push(format!("loopback: {}", std::io::Error::last_os_error()));
    }
    // Before the seccomp filters (they deny mount): each command gets a
    // cgroup of its own under this hierarchy.
    if let Err(e) = groups::mount() {
        errors.push(e);
    }
    let groups = Arc::new(groups::Groups::default());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let aslr = !cmdline.split_whitespace().any(|w| w == ASLR_OFF);
    let confinement = match confine::Confinement::prepare(aslr) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    // From here on the agent runs under the commands' seccomp filters.
    if let Some(c) = &confinement {
        if let Err(e) = c.enter() {
            errors.push(e);
        }
    }
    let port_path = find_port()?;
    let port = File::options()
        .read(true)
        .write(true)
        .open(&port_path)
        .map_err(|e| format!("open {port_path}: {e}"))?;
    let reader = port.try_clone().map_err(|e| format!("dup port: {e}"))?;
    let sender = Sender {
        port: Arc::new(Mutex::new(port)),
    };
    let streams: Streams = Arc::default();
    if let Err(e) = forward::start(sender.clone(), streams.clone()) {
        errors.push(e);
    }
    sender.send(&GuestMsg::Ready(ReadyReport {
        agent: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: kernel_release(),
        landlock_abi: confinement.as_ref().map_or(0, |c| c.abi()),
        workspace,
        errors: errors.clone(),
    }));
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    loop {
        let msg: HostMsg = match read_frame(&mut reader) {
            Ok(Some(m)) => m,
            // The host closed the port: nothing more to do.
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("channel: {e}")),
        };
        match msg {
            HostMsg::Exec(spec) => match (&confinement, errors.is_empty()) {
                (Some(c), true) => exec::spawn(spec, c.clone(), groups.clone(), sender.clone()),
                _ => sender.send(&GuestMsg::Failed {
                    id: spec.id,
                    error: format!("guest set-up failed: {}", errors.join("; ")),
                    errno: None,
                }),
            },
            HostMsg::ProxyData { stream, data } => {
                forward::to_client(&streams, &sender, stream, &data.0)
            }
            HostMsg::ProxyClose { stream } => forward::close(&streams, stream),
            HostMsg::Fs { id, op } => files::spawn(id, op, granted.clone(), sender.clone()),
            HostMsg::Ping { id } => sender.send(&GuestMsg::Pong { id }),
            HostMsg::Shutdown => {
                // PID 1 powers off when the agent is gone (`reboot` is
                // among the calls the agent's filters deny).
                // SAFETY: sync has no preconditions.
                unsafe { libc::sync() };
                return Ok(());
            }
        }
    }
}

/// Mount the virtio-fs workspace when the host attached one (`stele.ws` on
/// the kernel command line).
fn mount_workspace() -> Result<bool, String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !cmdline.split_whitespace().any(|w| w == "stele.ws=1") {
        return Ok(false);
    }
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
    let (src, dst, fstype) = (
        c(WORKSPACE_TAG)?,
        c(crate::exec::WORKSPACE_MOUNT)?,
        c("virtiofs")?,
    );
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount virtio-fs workspace: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(true)
}

/// `/dev/vportNpM` of the port named [`PORT_NAME`].
fn find_port() -> Result<String, String> {
    for _ in 0..500 {
        if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in rd.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == PORT_NAME {
                    return Ok(format!("/dev/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("no virtio-serial port named {PORT_NAME}"))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
