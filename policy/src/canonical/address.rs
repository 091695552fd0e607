//! IP addresses: one canonical form per address, and the class of an
//! address that policy sees (`resource.class`).
//!
//! Canonical forms: IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible
//! (`::a.b.c.d`) IPv6 addresses are the IPv4 address they carry; every
//! other address is written as Rust's `Display` writes it (dotted quad;
//! RFC 5952 for IPv6). The numeric IPv4 spellings resolvers accept (`127.1`,
//! `0x7f.0.0.1`, `0177.0.0.1`, `2130706433`) are parsed as the WHATWG URL
//! standard's IPv4 parser does, so each means the address a resolver would
//! have turned it into.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of destination an address is. Policies see it as
/// `resource.class` (the strings of [`AddressClass::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressClass {
    /// This host: `127.0.0.0/8`, `::1`, and the unspecified addresses
    /// (`0.0.0.0/8`, `::`), which reach this host when connected to.
    Loopback,
    /// Private and shared networks: `10/8`, `172.16/12`, `192.168/16`,
    /// `100.64/10` (carrier-grade NAT), `fc00::/7` (unique local),
    /// `fec0::/10` (old site-local), `64:ff9b:1::/48` (local NAT64).
    Private,
    /// Link-local: `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Multicast: `224/4`, `ff00::/8`.
    Multicast,
    /// The limited broadcast address `255.255.255.255`.
    Broadcast,
    /// Special-purpose or unallocated space that is not a destination on
    /// the internet: `192.0.0/24`, the documentation and benchmarking
    /// ranges, `240/4`, `100::/64`, `2001::/23`, `2001:db8::/32`,
    /// `3fff::/20`, `5f00::/16`, and IPv6 outside `2000::/3`.
    Reserved,
    /// Everything else: a destination on the internet.
    Public,
}

impl AddressClass {
    /// Every class, in a fixed order.
    pub const ALL: [AddressClass; 7] = [
        AddressClass::Loopback,
        AddressClass::Private,
        AddressClass::LinkLocal,
        AddressClass::Multicast,
        AddressClass::Broadcast,
        AddressClass::Reserved,
        AddressClass::Public,
    ];

    /// The value policies compare `resource.class` with.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
            AddressClass::Public => "public",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The canonical form of an address: an IPv4 address carried in IPv6
/// (mapped `::ffff:0:0/96`, or compatible `::/96` other than `::` and `::1`)
/// is that IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let compatible = s[..6].iter().all(|x| *x == 0) && (s[6] != 0 || s[7] > 1);
            if compatible {
                return IpAddr::V4(embedded_v4(s[6], s[7]));
            }
            ip
        }
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

/// The class of an address (canonicalised first).
pub fn classify(ip: IpAddr) -> AddressClass {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `addr` is inside `net/len`.
fn in_v4(addr: u32, net: [u8; 4], len: u32) -> bool {
    let net = u32::from_be_bytes(net);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    addr & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass as C;
    const TABLE: &[([u8; 4], u32, AddressClass)] = &[
        ([0, 0, 0, 0], 8, C::Loopback),
        ([127, 0, 0, 0], 8, C::Loopback),
        ([10, 0, 0, 0], 8, C::Private),
        ([172, 16, 0, 0], 12, C::Private),
        ([192, 168, 0, 0], 16, C::Private),
        ([100, 64, 0, 0], 10, C::Private),
        ([169, 254, 0, 0], 16, C::LinkLocal),
        ([224, 0, 0, 0], 4, C::Multicast),
        ([255, 255, 255, 255], 32, C::Broadcast),
        ([240, 0, 0, 0], 4, C::Reserved),
        ([192, 0, 0, 0], 24, C::Reserved),
        ([192, 0, 2, 0], 24, C::Reserved),
        ([192, 88, 99, 0], 24, C::Reserved),
        ([198, 18, 0, 0], 15, C::Reserved),
        ([198, 51, 100, 0], 24, C::Reserved),
        ([203, 0, 113, 0], 24, C::Reserved),
    ];
    let a = u32::from(ip);
    TABLE
        .iter()
        .find(|(net, len, _)| in_v4(a, *net, *len))
        .map_or(C::Public, |(_, _, c)| *c)
}

/// `addr` is inside `net/len`.
fn in_v6(addr: u128, net: [u16; 8], len: u32) -> bool {
    let net = u128::from(Ipv6Addr::from(net));
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    addr & mask == net & mask
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass as C;
    let a = u128::from(ip);
    let s = ip.segments();
    if a == 0 || a == 1 {
        return C::Loopback;
    }
    // Translation and tunnelling prefixes that carry an IPv4 address reach
    // (at most) what that address reaches: a NAT64 or 6to4 form of a
    // private address is as private as the address.
    let carried = if in_v6(a, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        Some(embedded_v4(s[6], s[7]))
    } else if in_v6(a, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        Some(embedded_v4(s[1], s[2]))
    } else {
        None
    };
    if let Some(v4) = carried {
        return match classify_v4(v4) {
            C::Public => C::Public,
            other => other,
        };
    }
    const TABLE: &[([u16; 8], u32, AddressClass)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, C::Private),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, C::Private),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, C::Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, C::LinkLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, C::Multicast),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, C::Reserved),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, C::Reserved),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, C::Reserved),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, C::Reserved),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, C::Reserved),
        ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, C::Public),
    ];
    TABLE
        .iter()
        .find(|(net, len, _)| in_v6(a, *net, *len))
        .map_or(C::Reserved, |(_, _, c)| *c)
}

/// Parse a host that ends in a number as an IPv4 address, the way the
/// WHATWG URL standard (and `inet_aton`) does: one to four parts, each
/// decimal, octal (leading `0`) or hexadecimal (`0x`), the last part
/// filling the remaining bytes. `None` if `host` is not such an address.
pub(crate) fn parse_ipv4_number_form(host: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if rest_bits < 64 && *last >= 1u64 << rest_bits {
        return None;
    }
    let mut v: u64 = *last;
    for (i, n) in init.iter().enumerate() {
        v += n << (8 * (3 - i as u32));
    }
    u32::try_from(v).ok().map(Ipv4Addr::from)
}

fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    // Bounded so that no spelling overflows (and none is silently wrapped).
    if digits.len() > 32 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 16 {
        return Some(u64::MAX);
    }
    u64::from_str_radix(if trimmed.is_empty() { "0" } else { trimmed }, radix)
        .ok()
        .or(Some(u64::MAX))
}

/// Whether a (lowercase ASCII) host "ends in a number" in the WHATWG sense:
/// its last label (after an optional trailing dot) is all digits or a
/// `0x` hexadecimal number. Such a host is an IPv4 address or invalid, never
/// a DNS name.
pub(crate) fn ends_in_a_number(host: &str) -> bool {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_and_compatible_are_ipv4() {
        for (v6, v4) in [
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::ffff:7f00:1", "127.0.0.1"),
            ("::ffff:a9fe:a9fe", "169.254.169.254"),
            ("::127.0.0.1", "127.0.0.1"),
            ("::7f00:1", "127.0.0.1"),
            ("::a00:1", "10.0.0.1"),
            ("::2", "0.0.0.2"),
        ] {
            assert_eq!(canonical_ip(ip(v6)), ip(v4), "{v6}");
        }
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        assert_eq!(canonical_ip(ip("::1")), ip("::1"));
        assert_eq!(canonical_ip(ip("::")), ip("::"));
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn classes() {
        use AddressClass as C;
        for (a, c) in [
            ("127.0.0.1", C::Loopback),
            ("127.255.0.9", C::Loopback),
            ("0.0.0.0", C::Loopback),
            ("0.1.2.3", C::Loopback),
            ("::1", C::Loopback),
            ("::", C::Loopback),
            ("::ffff:127.0.0.1", C::Loopback),
            ("::ffff:0.0.0.0", C::Loopback),
            ("10.1.2.3", C::Private),
            ("172.16.0.1", C::Private),
            ("172.31.255.255", C::Private),
            ("192.168.1.1", C::Private),
            ("100.64.0.1", C::Private),
            ("fc00::1", C::Private),
            ("fd12:3456::1", C::Private),
            ("fec0::1", C::Private),
            ("64:ff9b:1::a00:1", C::Private),
            ("64:ff9b::a00:1", C::Private),
            ("64:ff9b::7f00:1", C::Loopback),
            ("2002:c0a8:101::1", C::Private),
            ("2002:7f00:1::", C::Loopback),
            ("169.254.169.254", C::LinkLocal),
            ("fe80::1", C::LinkLocal),
            ("febf::1", C::LinkLocal),
            ("::ffff:169.254.169.254", C::LinkLocal),
            ("64:ff9b::a9fe:a9fe", C::LinkLocal),
            ("224.0.0.1", C::Multicast),
            ("239.255.255.250", C::Multicast),
            ("ff02::1", C::Multicast),
            ("255.255.255.255", C::Broadcast),
            ("240.0.0.1", C::Reserved),
            ("192.0.2.1", C::Reserved),
            ("198.51.100.7", C::Reserved),
            ("203.0.113.9", C::Reserved),
            ("198.18.0.1", C::Reserved),
            ("192.0.0.8", C::Reserved),
            ("2001:db8::1", C::Reserved),
            ("2001::1", C::Reserved),
            ("100::1", C::Reserved),
            ("3fff::1", C::Reserved),
            ("4000::1", C::Reserved),
            ("93.184.216.34", C::Public),
            ("172.32.0.1", C::Public),
            ("100.128.0.1", C::Public),
            ("2606:4700::1111", C::Public),
            ("64:ff9b::5db8:d822", C::Public),
            ("2002:5db8:d822::1", C::Public),
        ] {
            assert_eq!(classify(ip(a)), c, "{a}");
        }
    }

    #[test]
    fn ipv4_number_forms() {
        for (s, want) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0x7F.0.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("10.0x0.00.1", "10.0.0.1"),
            ("0xA9FEA9FE", "169.254.169.254"),
            ("4294967295", "255.255.255.255"),
        ] {
            assert_eq!(
                parse_ipv4_number_form(s),
                want.parse::<Ipv4Addr>().ok(),
                "{s}"
            );
        }
        for bad in [
            "",
            "4294967296",
            "256.0.0.1",
            "1.2.3.4.5",
            "1.256.0.0",
            "09.1.1.1",
            "0x1g",
            "1..2",
            "1.2.3.",
            "a.1",
            "0x100000000",
            "99999999999999999999999999999999999",
        ] {
            if bad == "1.2.3." {
                // A trailing dot is dropped: `1.2.3.` is `1.2.0.3`.
                assert_eq!(parse_ipv4_number_form(bad), "1.2.0.3".parse().ok());
                continue;
            }
            assert_eq!(parse_ipv4_number_form(bad), None, "{bad:?}");
        }
        assert!(ends_in_a_number("a.b.09"));
        assert!(ends_in_a_number("foo.0x"));
        assert!(ends_in_a_number("1.2.3.4."));
        assert!(!ends_in_a_number("example.com"));
        assert!(!ends_in_a_number("1.2.3.x"));
    }
}
