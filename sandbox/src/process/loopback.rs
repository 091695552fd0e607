//! Inside the sandbox's network namespace, before privileges are dropped:
//! bring `lo` up and, when the egress proxy is used, open its listener on
//! 127.0.0.1:3128 (the parent takes it over with `pidfd_getfd`).
//!
//! Runs in the cloned child: raw system calls only, no allocation.

use std::ptr;

use crate::exec::PROXY_PORT;

/// Bring `lo` up. Returns `false` (errno set) on failure.
pub(crate) fn lo_up() -> bool {
    // SAFETY (all): a socket we create and close; ifreq is plain data on our stack.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut ok = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) == 0;
        if ok {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            ok = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) == 0;
        }
        libc::close(fd);
        ok
    }
}

/// Open a listening TCP socket on 127.0.0.1:PROXY_PORT; the fd, or -1.
pub(crate) fn proxy_listener() -> libc::c_int {
    // SAFETY (all): plain socket calls on a local sockaddr.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return -1;
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: PROXY_PORT.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, ptr::addr_of!(addr).cast(), len) < 0 || libc::listen(fd, 128) < 0 {
            libc::close(fd);
            return -1;
        }
        fd
    }
}
