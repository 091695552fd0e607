//! Splitting a request's authority into host and port.
//!
//! The host goes to the mediator exactly as the client wrote it. What it
//! *means* — IDNA, the numeric IPv4 spellings resolvers accept (`127.1`,
//! `0x7f.1`, `2130706433`), IPv4-mapped IPv6, trailing dots, the class of
//! the address — is decided by the mediator with the one canonicalisation
//! function `stele policy explain` uses too, so the two cannot disagree and
//! every refused spelling is a logged decision rather than a silent `400`.
//! Only what is not an authority at all is refused here.

/// Longest host accepted (a DNS name is at most 253 octets; this leaves room
/// for internationalised names before IDNA and for IPv6 literals).
pub(crate) const MAX_HOST_BYTES: usize = 512;

/// Split `host:port` (authority form; IPv6 literals in brackets). The port is
/// mandatory unless `default_port` is given. The host is returned as written.
pub(crate) fn parse_authority(raw: &str, default_port: Option<u16>) -> Option<(String, u16)> {
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
    plausible_host(host).then(|| (host.to_owned(), port))
}

/// Whether `host` can be a host at all: non-empty, bounded, no whitespace,
/// control characters or URL delimiters, brackets only around the whole.
fn plausible_host(host: &str) -> bool {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !inner.is_empty()
        && host.len() <= MAX_HOST_BYTES
        && !inner.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | '/' | '@' | '?' | '#')
        })
        // An unbracketed host with a colon is not an authority's host.
        && (host.starts_with('[') || !inner.contains(':'))
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

    fn host(raw: &str) -> Option<String> {
        parse_authority(raw, None).map(|(h, _)| h)
    }

    #[test]
    fn hosts_are_passed_as_written() {
        // Canonicalising is the mediator's job: every spelling reaches it.
        for raw in [
            "Example.COM.",
            "[::ffff:7f00:1]",
            "[::ffff:127.0.0.1]",
            "0x7f.1",
            "2130706433",
            "127.1",
            "Bücher.example",
            "%31%32%37.0.0.1",
            "exa_mple!.com",
        ] {
            assert_eq!(host(&format!("{raw}:443")).as_deref(), Some(raw), "{raw}");
        }
    }

    #[test]
    fn what_is_not_an_authority_is_refused() {
        for bad in [
            ":443",
            "[]:443",
            "[::1:443",
            "[::1]x:443",
            "::1:443",
            "a:b:80",
            "exa mple.com:443",
            "a/b:443",
            "u@a:443",
            "a?b:443",
            "x\r\n.com:443",
            "[[::1]]:443",
        ] {
            assert_eq!(parse_authority(bad, None), None, "{bad:?}");
        }
        assert_eq!(
            parse_authority(&format!("{}:443", "a".repeat(MAX_HOST_BYTES + 1)), None),
            None
        );
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_authority("Example.com:443", None),
            Some(("Example.com".into(), 443))
        );
        assert_eq!(parse_authority("example.com", None), None);
        assert_eq!(
            parse_authority("example.com", Some(80)),
            Some(("example.com".into(), 80))
        );
        assert_eq!(
            parse_authority("[::1]:8080", None),
            Some(("[::1]".into(), 8080))
        );
        assert_eq!(parse_authority("example.com:0", None), None);
        assert_eq!(parse_authority("example.com:70000", None), None);
        assert_eq!(parse_authority("example.com:+80", None), None);
    }
}
