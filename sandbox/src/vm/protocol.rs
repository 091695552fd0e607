//! The host↔guest protocol over the virtio-serial port `stele`: frames of a
//! 4-byte big-endian length followed by one JSON message. Byte payloads are
//! base64 strings. Exec output and proxy traffic are multiplexed by id;
//! file requests (`fsproto.rs`) are answered by id.

use std::io::{self, Read, Write};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use super::fsproto::*;

/// The name of the virtio-serial port carrying the protocol.
pub const PORT_NAME: &str = "stele";
/// Largest frame accepted (a corrupted length must not allocate gigabytes).
pub const MAX_FRAME: usize = 8 << 20;
/// Largest payload per output or proxy frame.
pub const CHUNK: usize = 64 << 10;

/// Bytes carried as base64 in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// One resource limit as `setrlimit` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A command for the guest, fully resolved by the host (environment,
/// working directory and limits are decided host-side, as for the process
/// backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Host-assigned id, unique per VM.
    pub id: u64,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Absolute working directory in the guest.
    pub cwd: String,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Standard input.
    pub stdin: Bytes,
    /// Wall-clock limit in milliseconds.
    pub wall_ms: u64,
    /// SIGTERM → SIGKILL grace in milliseconds.
    pub kill_grace_ms: u64,
    /// Output bytes kept per stream (the rest is counted, not sent).
    pub output_bytes: u64,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// Limits on the command's whole process tree (its cgroup in the guest).
    #[serde(default)]
    pub group: GroupSpec,
}

/// Limits on a guest command's cgroup (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Memory of all its processes together, bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads at once.
    pub processes: Option<u64>,
    /// CPU bandwidth in thousandths of a CPU.
    pub cpu_millicpus: Option<u32>,
}

impl From<&crate::resources::GroupLimits> for GroupSpec {
    fn from(l: &crate::resources::GroupLimits) -> Self {
        GroupSpec {
            memory_bytes: l.memory_bytes,
            processes: l.processes,
            cpu_millicpus: l.cpu.map(|c| c.0),
        }
    }
}

impl From<GroupSpec> for crate::resources::GroupLimits {
    fn from(g: GroupSpec) -> Self {
        crate::resources::GroupLimits {
            memory_bytes: g.memory_bytes,
            processes: g.processes,
            cpu: g.cpu_millicpus.map(crate::resources::MilliCpus),
        }
    }
}

/// What a guest command's cgroup accounted (see
/// [`crate::resources::GroupUsage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    /// Peak memory of the whole tree, bytes.
    pub memory_peak_bytes: Option<u64>,
    /// Most processes at once (where the guest kernel tracks it).
    pub processes_peak: Option<u64>,
    /// User CPU, microseconds.
    pub cpu_user_us: u64,
    /// System CPU, microseconds.
    pub cpu_system_us: u64,
    /// Time throttled by the CPU limit, microseconds.
    pub cpu_throttled_us: u64,
    /// Periods throttled.
    pub cpu_throttled_periods: u64,
    /// Processes OOM-killed.
    pub oom_kills: u64,
    /// Times the memory limit was reached.
    pub memory_limit_events: u64,
    /// Forks refused at the process limit.
    pub process_limit_events: u64,
    /// Processes still in the group after the command ended, which the
    /// agent killed before reporting (0: none outlived it).
    pub leftover_processes: u64,
}

impl GroupReport {
    /// From what the guest's cgroup layer read.
    pub fn from_usage(u: &crate::resources::GroupUsage, leftover_processes: u64) -> Self {
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        GroupReport {
            memory_peak_bytes: u.memory_peak_bytes,
            processes_peak: u.processes_peak,
            cpu_user_us: us(u.cpu_user),
            cpu_system_us: us(u.cpu_system),
            cpu_throttled_us: us(u.cpu_throttled),
            cpu_throttled_periods: u.cpu_throttled_periods,
            oom_kills: u.oom_kills,
            memory_limit_events: u.memory_limit_events,
            process_limit_events: u.process_limit_events,
            leftover_processes,
        }
    }

    /// As the host reports it, with the limits that applied.
    pub fn usage(&self, limits: crate::resources::GroupLimits) -> crate::resources::GroupUsage {
        let d = std::time::Duration::from_micros;
        crate::resources::GroupUsage {
            limits: Some(limits),
            memory_peak_bytes: self.memory_peak_bytes,
            processes_peak: self.processes_peak,
            cpu_user: d(self.cpu_user_us),
            cpu_system: d(self.cpu_system_us),
            cpu_throttled: d(self.cpu_throttled_us),
            cpu_throttled_periods: self.cpu_throttled_periods,
            oom_kills: self.oom_kills,
            memory_limit_events: self.memory_limit_events,
            process_limit_events: self.process_limit_events,
        }
    }
}

/// Messages from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum HostMsg {
    /// Run a command.
    Exec(ExecSpec),
    /// Bytes for a proxy stream (to the client in the guest).
    ProxyData {
        /// Stream id (from `ProxyOpen`).
        stream: u64,
        /// The bytes.
        data: Bytes,
    },
    /// The host side of a proxy stream closed.
    ProxyClose {
        /// Stream id.
        stream: u64,
    },
    /// A file operation on the workspace, answered by `FsDone`.
    Fs {
        /// Host-assigned id, unique per VM.
        id: u64,
        /// The operation.
        op: FsOp,
    },
    /// Answer with `Pong` at once (measures the channel alone).
    Ping {
        /// Echoed back.
        id: u64,
    },
    /// Flush and power off.
    Shutdown,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a guest command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum GuestStatus {
    /// Exit code.
    Exit(i32),
    /// Killed by a signal.
    Signal(i32),
    /// Killed at the wall-clock deadline.
    TimedOut,
}

/// What a finished command reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    /// The command.
    pub id: u64,
    /// How it ended.
    pub status: GuestStatus,
    /// Bytes written to stdout in total.
    pub stdout_total: u64,
    /// Bytes written to stderr in total.
    pub stderr_total: u64,
    /// User CPU, microseconds.
    pub user_cpu_us: u64,
    /// System CPU, microseconds.
    pub system_cpu_us: u64,
    /// Largest RSS, bytes.
    pub max_rss_bytes: u64,
    /// Spawn to exit, microseconds.
    pub duration_us: u64,
    /// The command's cgroup (its whole tree, ended before this report).
    #[serde(default)]
    pub group: Option<GroupReport>,
}

/// What the agent reports once it is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReport {
    /// The agent's version.
    pub agent: String,
    /// The guest kernel release.
    pub kernel: String,
    /// Landlock ABI of the guest kernel (0 = none).
    pub landlock_abi: u8,
    /// Whether the virtio-fs workspace is mounted at `/workspace`.
    pub workspace: bool,
    /// Set-up problems that make the agent refuse commands.
    pub errors: Vec<String>,
}

/// Messages from the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum GuestMsg {
    /// The agent is up.
    Ready(ReadyReport),
    /// Output of a command.
    Output {
        /// The command.
        id: u64,
        /// Which stream.
        stream: StreamKind,
        /// The bytes.
        data: Bytes,
    },
    /// A command finished.
    Exited(ExitReport),
    /// A command could not be started.
    Failed {
        /// The command.
        id: u64,
        /// Why.
        error: String,
        /// errno of the failure when it is one (ENOENT: no such program).
        errno: Option<i32>,
    },
    /// A client in the guest connected to the proxy forwarder.
    ProxyOpen {
        /// New stream id.
        stream: u64,
    },
    /// Bytes from the guest client.
    ProxyData {
        /// Stream id.
        stream: u64,
        /// The bytes.
        data: Bytes,
    },
    /// The guest client closed.
    ProxyClose {
        /// Stream id.
        stream: u64,
    },
    /// Answer to `Ping`.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// Answer to `Fs`.
    FsDone {
        /// The request's id.
        id: u64,
        /// What came of it.
        outcome: FsOutcome,
    },
}

/// Write one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Read one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let msg = GuestMsg::Output {
            id: 7,
            stream: StreamKind::Stderr,
            data: Bytes(vec![0, 1, 2, 255]),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg).unwrap();
        let back: Option<GuestMsg> = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, Some(msg));
        let none: Option<GuestMsg> = read_frame(&mut &[][..]).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut buf = (u32::MAX).to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        let r: io::Result<Option<HostMsg>> = read_frame(&mut buf.as_slice());
        assert!(r.is_err());
    }
}
