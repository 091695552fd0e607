//! Canonical destination names: what the mediator is asked about must be
//! exactly what the proxy then connects to.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A destination host the proxy will accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A DNS name: lowercase, no trailing dot, letters/digits/hyphens.
    Name(String),
    /// An IPv4 literal in dotted-quad form.
    V4(Ipv4Addr),
    /// An IPv6 literal (written in brackets in requests).
    V6(Ipv6Addr),
}

impl Host {
    /// The canonical text the mediator sees (IPv6 without brackets).
    pub fn canonical(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }
}

/// Parse and canonicalise a host as written in a request (`example.COM.`,
/// `10.0.0.1`, `[::1]`). Anything that is not a plain DNS name or a strict IP
/// literal is refused, including numeric forms like `2130706433` or
/// `0x7f.1` that resolvers would silently turn into addresses the policy
/// never saw.
pub(crate) fn parse_host(raw: &str) -> Option<Host> {
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        return inner.parse::<Ipv6Addr>().ok().map(Host::V6);
    }
    if let Ok(v4) = raw.parse::<Ipv4Addr>() {
        return Some(Host::V4(v4));
    }
    let lower = raw.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ok_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return None;
        }
    }
    let last = labels.last()?;
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && last.bytes().skip(2).all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return None;
    }
    Some(Host::Name(name.to_owned()))
}

/// Split `host:port` (authority form). The port is mandatory unless
/// `default_port` is given.
pub(crate) fn parse_authority(raw: &str, default_port: Option<u16>) -> Option<(Host, u16)> {
    let (host, port) = if raw.starts_with('[') {
        let close = raw.find(']')?;
        let (h, rest) = raw.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let port = match port {
        Some(p) => parse_port(p)?,
        None => default_port?,
    };
    Some((parse_host(host)?, port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_names() {
        assert_eq!(
            parse_host("Example.COM.").map(|h| h.canonical()),
            Some("example.com".into())
        );
        assert_eq!(
            parse_host("[::1]").map(|h| h.canonical()),
            Some("::1".into())
        );
        assert_eq!(
            parse_host("127.0.0.1").map(|h| h.canonical()),
            Some("127.0.0.1".into())
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "exa mple.com",
            "a_b.com",
            "2130706433",
            "0x7f.1",
            "127.1",
            "1.2.3",
            "[::1",
            "::1",
            "é.com",
            "a.com..",
            "x\r\n.com",
        ] {
            assert_eq!(parse_host(bad), None, "{bad:?}");
        }
        assert_eq!(parse_host(&"a".repeat(64)), None);
    }

    #[test]
    fn authorities() {
        assert_eq!(
            parse_authority("Example.com:443", None),
            Some((Host::Name("example.com".into()), 443))
        );
        assert_eq!(parse_authority("example.com", None), None);
        assert_eq!(
            parse_authority("example.com", Some(80)),
            Some((Host::Name("example.com".into()), 80))
        );
        assert_eq!(
            parse_authority("[::1]:8080", None).map(|(h, p)| (h.canonical(), p)),
            Some(("::1".into(), 8080))
        );
        assert_eq!(parse_authority("example.com:0", None), None);
        assert_eq!(parse_authority("example.com:70000", None), None);
        assert_eq!(parse_authority("example.com:+80", None), None);
        assert_eq!(parse_authority("a:b:80", None), None);
    }
}
