//! stele's side of the seccomp user notifications for network attempts
//! (`seccomp::build_notify_filter`): every refused attempt is recorded
//! with the Mediator and answered `EACCES`; everything else continues.
//!
//! * `socket(2)` of a denied kind (UDP, raw, packet, vsock, …): refused.
//! * `connect(2)`, and `sendto(2)`/`sendmsg(2)` with `MSG_FASTOPEN`: the
//!   address is read from the program's memory. A unix address (or none)
//!   continues; the egress proxy's (127.0.0.1:3128) continues; any other
//!   IPv4 or IPv6 address is refused.
//!
//! A refusal is decided here, from memory the program can still change,
//! and that is safe: a refused call is not made at all. A call let
//! through (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`) is made by the kernel with
//! whatever the memory holds by then, so it is never trusted to stay the
//! address checked: what holds the sandbox in is still the network
//! namespace (only loopback) and Landlock (TCP connect to the proxy port
//! only). A program that swaps the address after the check therefore
//! reaches nothing more — only its attempt goes unrecorded.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::exec::PROXY_PORT;
use crate::{Mediator, NetAttempt, NetAttemptKind, Requester};

/// Refusals recorded per command (each distinct attempt once); beyond it
/// they are only counted, so a loop of attempts cannot flood the log.
const MAX_RECORDED: usize = 64;

/// One command's listener and what it refused.
pub(crate) struct NetNotify {
    listener: OwnedFd,
    mediator: Option<Arc<dyn Mediator>>,
    exec_id: String,
    recorded: HashSet<NetAttemptKind>,
    /// Attempts refused (recorded or not).
    pub refused: u64,
}

/// What to answer one notification.
enum Answer {
    Continue,
    Refuse(NetAttemptKind),
}

impl NetNotify {
    /// Serve `listener` for the command `exec_id`, recording with `mediator`.
    pub fn new(listener: OwnedFd, mediator: Option<Arc<dyn Mediator>>, exec_id: &str) -> Self {
        NetNotify {
            listener,
            mediator,
            exec_id: exec_id.to_string(),
            recorded: HashSet::new(),
            refused: 0,
        }
    }

    /// The descriptor to poll (readable: a notification is pending).
    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Receive and answer one notification (a no-op if the program that
    /// made it is gone meanwhile).
    pub fn handle(&mut self) {
        // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV fills `req`, a live local of the right type.
        let rc = unsafe {
            libc::ioctl(
                self.fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req as *mut libc::seccomp_notif,
            )
        };
        if rc < 0 {
            return;
        }
        let answer = self.decide(&req);
        // The memory read above belonged to this request only if the
        // program is still waiting in it.
        if !self.still_valid(req.id) {
            return;
        }
        // SAFETY: plain data, filled below.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        match &answer {
            Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Answer::Refuse(_) => resp.error = -libc::EACCES,
        }
        // SAFETY: SEND reads `resp`, a live local of the right type.
        let sent = unsafe {
            libc::ioctl(
                self.fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &resp as *const libc::seccomp_notif_resp,
            )
        };
        if let (Answer::Refuse(kind), true) = (answer, sent == 0) {
            self.record(kind, req.pid);
        }
    }

    fn still_valid(&self, id: u64) -> bool {
        // SAFETY: ID_VALID reads one u64 from a live local.
        unsafe {
            libc::ioctl(
                self.fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &id as *const u64,
            ) == 0
        }
    }

    fn decide(&self, req: &libc::seccomp_notif) -> Answer {
        let a = req.data.args;
        let pid = req.pid as libc::pid_t;
        match i64::from(req.data.nr) {
            libc::SYS_socket => Answer::Refuse(NetAttemptKind::Socket {
                family: a[0] as i32,
                socket_type: (a[1] & 0xf) as i32,
            }),
            libc::SYS_connect => address_answer(read_mem(pid, a[1], a[2])),
            libc::SYS_sendto if a[4] != 0 => address_answer(read_mem(pid, a[4], a[5])),
            libc::SYS_sendmsg => {
                // struct msghdr: msg_name at 0, msg_namelen at 8.
                let hdr = read_mem(pid, a[1], 16);
                match hdr.as_deref() {
                    Some(h) if h.len() == 16 => {
                        let name = u64::from_ne_bytes(h[0..8].try_into().unwrap_or([0; 8]));
                        let len = u32::from_ne_bytes(h[8..12].try_into().unwrap_or([0; 4]));
                        if name == 0 {
                            Answer::Continue
                        } else {
                            address_answer(read_mem(pid, name, u64::from(len)))
                        }
                    }
                    _ => Answer::Continue,
                }
            }
            _ => Answer::Continue,
        }
    }

    fn record(&mut self, kind: NetAttemptKind, host_pid: u32) {
        self.refused += 1;
        if self.recorded.len() >= MAX_RECORDED || !self.recorded.insert(kind) {
            return;
        }
        if let Some(m) = &self.mediator {
            m.net_refused(&NetAttempt {
                kind,
                requester: Requester {
                    pid: sandbox_pid(host_pid),
                    exec_id: Some(self.exec_id.clone()),
                },
            });
        }
    }
}

/// The answer for a connection to the address `raw` (a `struct sockaddr`).
fn address_answer(raw: Option<Vec<u8>>) -> Answer {
    match raw.as_deref().and_then(parse_inet) {
        Some(addr) if is_proxy(&addr) => Answer::Continue,
        Some(addr) => Answer::Refuse(NetAttemptKind::Connect(addr)),
        // Unix, unspecified, unreadable: the kernel decides (it fails an
        // unreadable address with EFAULT itself).
        None => Answer::Continue,
    }
}

/// An IPv4 or IPv6 `struct sockaddr`.
fn parse_inet(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// The egress proxy: 127.0.0.1:3128 (also as an IPv4-mapped IPv6 address).
fn is_proxy(a: &SocketAddr) -> bool {
    let v4 = match a.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    a.port() == PROXY_PORT && v4 == Some(Ipv4Addr::LOCALHOST)
}

/// Up to 128 bytes at `addr` in process `pid`'s memory.
fn read_mem(pid: libc::pid_t, addr: u64, len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len.min(128)).ok()?;
    if addr == 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes our buffer; the remote range is only read
    // by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The pid inside the sandbox's pid namespace of host process `pid`.
fn sandbox_pid(host_pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// In the init (after a raw clone: system calls only, no allocation):
/// install the notifying program with a listener, hand the listener to
/// the parent over `sock`, and keep no copy of it (nothing in the
/// sandbox may answer its own notifications). Done before READY (the init
/// still has every capability in its user namespace, so no-new-privs is
/// not needed yet), so the listener is there when the parent reads READY
/// and its wait loop needs no extra wake-up for it. Returns the failing
/// call's result (negative, errno set) or the bytes sent.
pub(crate) fn install_and_send(prog: &seccompiler::BpfProgram, sock: RawFd) -> libc::c_long {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at the plan's program, alive for the call.
    let listener = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if listener < 0 {
        return listener;
    }
    let listener = listener as libc::c_int;
    // One byte of data and the descriptor as SCM_RIGHTS, all on the stack.
    let mut byte = [b'L'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    // SAFETY (all): msghdr and cmsghdr are plain data on our stack; the
    // CMSG_* helpers compute offsets inside `control`, which is large
    // enough for one descriptor.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), listener);
        let sent = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
        libc::close(listener);
        libc::close(sock);
        sent as libc::c_long
    }
}

/// The listener the init sends over `sock` (`None` if the init ended
/// without sending one: a set-up failure, reported on its own pipe).
pub(crate) fn receive(sock: &OwnedFd) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    // SAFETY (all): msghdr is plain data pointing at live locals; the CMSG
    // helpers stay inside `control`; a received descriptor is ours.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n <= 0 {
            return None;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// A connected pair of unix sockets (parent's end, child's end).
pub(crate) fn socketpair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        b.extend(port.to_be_bytes());
        b.extend(ip);
        b.extend([0u8; 8]);
        b
    }

    #[test]
    fn addresses() {
        let proxy = parse_inet(&v4([127, 0, 0, 1], 3128)).unwrap();
        assert!(is_proxy(&proxy));
        let other = parse_inet(&v4([127, 0, 0, 1], 8080)).unwrap();
        assert!(!is_proxy(&other));
        let far = parse_inet(&v4([1, 2, 3, 4], 443)).unwrap();
        assert_eq!(far.to_string(), "1.2.3.4:443");
        let mut v6 = (libc::AF_INET6 as u16).to_ne_bytes().to_vec();
        v6.extend(3128u16.to_be_bytes());
        v6.extend([0u8; 4]);
        v6.extend(Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets());
        v6.extend([0u8; 4]);
        assert!(is_proxy(&parse_inet(&v6).unwrap()));
        let mut unix = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        unix.extend(b"/tmp/sock\0");
        assert!(parse_inet(&unix).is_none());
        assert!(parse_inet(&[2]).is_none());
        assert!(matches!(
            address_answer(Some(v4([10, 0, 0, 1], 22))),
            Answer::Refuse(_)
        ));
        assert!(matches!(address_answer(Some(unix)), Answer::Continue));
        assert!(matches!(address_answer(None), Answer::Continue));
    }
}
