//! The store's URL (`[store] url = "postgres://user:password@host:port/db"`):
//! read into a connection configuration, and shown only with its password
//! replaced by `***` (in errors, logs and the start-up line).

use std::str::FromStr as _;

/// The URL with any password hidden: the one in `user:password@` and any
/// `password=` query parameter. Everything else is kept (the host, port,
/// user and database are what an operator needs to see).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    // The authority ends at the first '/' or '?'; userinfo is before its last '@'.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// `text` with every PostgreSQL URL in it redacted (a TOML error quoting
/// the line a URL is on, say).
pub fn redact_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("postgres") {
        let (before, at) = rest.split_at(i);
        out.push_str(before);
        let end = at
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .unwrap_or(at.len());
        let (url, after) = at.split_at(end);
        out.push_str(&redact(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Read `url` (a `postgres://` or `postgresql://` URL); what is wrong with
/// it, in words that never hold the password.
pub fn parse(url: &str) -> Result<tokio_postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{}: not a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE)",
            redact(url)
        ));
    }
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| format!("{}: {}", redact(url), scrub(&e.to_string(), url)))?;
    if config.get_hosts().is_empty() {
        return Err(format!(
            "{}: names no host (a name, an address, or a socket folder as %2Fpath)",
            redact(url)
        ));
    }
    if config.get_dbname().is_none() {
        return Err(format!(
            "{}: names no database (…/DATABASE at the end)",
            redact(url)
        ));
    }
    Ok(config)
}

/// `message` with the URL's password (if any) cut out, in case a parser
/// quoted it back.
pub fn scrub(message: &str, url: &str) -> String {
    match tokio_postgres::Config::from_str(url)
        .ok()
        .and_then(|c| c.get_password().map(<[u8]>::to_vec))
        .and_then(|p| String::from_utf8(p).ok())
        .filter(|p| !p.is_empty())
    {
        Some(p) => message.replace(&p, "***"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (url, want) in [
            (
                "postgres://stele:s3cret@db.example.com:5432/stele",
                "postgres://stele:***@db.example.com:5432/stele",
            ),
            (
                "postgresql://stele@db/stele?password=s3cret&sslmode=disable",
                "postgresql://stele@db/stele?password=***&sslmode=disable",
            ),
            (
                "postgres://st%40le:s3:cr@t@%2Ftmp%2Fpg/stele",
                "postgres://st%40le:***@%2Ftmp%2Fpg/stele",
            ),
            ("postgres://db/stele", "postgres://db/stele"),
        ] {
            assert_eq!(redact(url), want);
            assert!(!redact(url).contains("s3"), "{url}");
        }
    }

    #[test]
    fn urls_in_a_message_are_redacted() {
        let m = "line 2: url = \"postgres://u:s3cret@db/x\nnext postgresql://a:b@c/d end";
        let r = redact_in(m);
        assert!(!r.contains("s3cret") && !r.contains(":b@"), "{r}");
        assert!(r.contains("postgres://u:***@db/x") && r.contains("postgresql://a:***@c/d end"));
    }

    #[test]
    fn what_is_wrong_is_said_without_the_password() {
        for (url, want) in [
            ("mysql://u:s3cret@db/x", "not a PostgreSQL URL"),
            ("postgres://u:s3cret@db:notaport/x", "u:***@db"),
            ("postgres://u:s3cret@db:5432", "names no database"),
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.contains(want) && !e.contains("s3cret"), "{url}: {e}");
        }
        let c = parse("postgres://stele@%2Ftmp%2Fpg/stele").unwrap();
        assert_eq!(c.get_dbname(), Some("stele"));
        assert!(matches!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Unix(p)] if p.as_os_str() == "/tmp/pg"
        ));
    }
}
