//! Workspace-relative paths and glob patterns.

use super::error::ToolError;
use crate::RefusalRule;

/// Normalise a workspace-relative path: `/`-separated, no leading `/`, no
/// `.`/`..`, no empty components. The workspace root is `""` here (`""`,
/// `.`, `./` all name it); policy is asked about it as `.`.
///
/// `..` is refused outright rather than resolved: a caller that needs it
/// is trying to leave a directory, and the policy must see the final name.
/// So are absolute paths and control characters (NUL included); the rule
/// that refused comes back.
pub fn normalize(path: &str) -> Result<String, RefusalRule> {
    if path.chars().any(char::is_control) {
        return Err(RefusalRule::ControlCharacter);
    }
    if path.starts_with('/') {
        return Err(RefusalRule::Absolute);
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(RefusalRule::ParentDir),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Join a normalised directory path and a child name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A glob pattern over workspace-relative paths: `*` and `?` match within one
/// component, `**` matches any number of components.
#[derive(Debug, Clone)]
pub struct Glob {
    parts: Vec<String>,
}

impl Glob {
    /// Parse a pattern (workspace-relative, no `..`).
    pub fn new(pattern: &str) -> Result<Glob, ToolError> {
        let norm =
            normalize(pattern).map_err(|_| ToolError::InvalidPattern(pattern.to_string()))?;
        if norm.is_empty() {
            return Err(ToolError::InvalidPattern(pattern.to_string()));
        }
        Ok(Glob {
            parts: norm.split('/').map(str::to_string).collect(),
        })
    }

    /// Whether `path` (normalised) matches.
    pub fn matches(&self, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        match_parts(&self.parts, &comps)
    }
}

fn match_parts(pat: &[String], comps: &[&str]) -> bool {
    match pat.split_first() {
        None => comps.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=comps.len()).any(|skip| match_parts(rest, &comps[skip..]))
        }
        Some((p, rest)) => match comps.split_first() {
            Some((c, crest)) => {
                match_component(p.as_bytes(), c.as_bytes()) && match_parts(rest, crest)
            }
            None => false,
        },
    }
}

fn match_component(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', prest)) => (0..=s.len()).any(|i| match_component(prest, &s[i..])),
        Some((b'?', prest)) => !s.is_empty() && match_component(prest, &s[1..]),
        Some((c, prest)) => s.first() == Some(c) && match_component(prest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn normalize_rejects_escapes() {
        assert_eq!(normalize("a/./b//c").unwrap(), "a/b/c");
        for root in ["", ".", "./", ".//./"] {
            assert_eq!(normalize(root).unwrap(), "", "{root:?}");
        }
        assert_eq!(normalize("/etc/passwd"), Err(RefusalRule::Absolute));
        assert_eq!(normalize("a/../../b"), Err(RefusalRule::ParentDir));
        assert_eq!(normalize("a\0b"), Err(RefusalRule::ControlCharacter));
        assert_eq!(normalize("a\u{1b}[2J"), Err(RefusalRule::ControlCharacter));
    }

    #[test]
    fn glob_matching() {
        let g = Glob::new("**/*.rs").unwrap();
        assert!(g.matches("a.rs"));
        assert!(g.matches("src/x/y.rs"));
        assert!(!g.matches("src/x/y.rsx"));
        let g = Glob::new("src/?.txt").unwrap();
        assert!(g.matches("src/a.txt"));
        assert!(!g.matches("src/ab.txt"));
        assert!(!g.matches("other/a.txt"));
    }
}
