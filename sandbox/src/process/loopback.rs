//! Bringing `lo` up in a fresh network namespace (raw system calls only, no
//! allocation, so it is also usable after fork).

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
