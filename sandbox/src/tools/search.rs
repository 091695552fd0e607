//! glob and content search: a walk of the workspace that asks before every
//! directory it lists and every file it reads, and never follows symlinks.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use super::path::{join, Glob};
use super::read::EntryKind;
use super::{ToolError, WorkspaceTools};
use crate::{FileAccess, FileOp, RefusalRule};

/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 64;
/// Largest file searched, in bytes.
const MAX_SEARCH_FILE: u64 = 8 << 20;

/// One line matching a content search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// Workspace-relative path.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// The line's text.
    pub text: String,
}

impl WorkspaceTools {
    /// Walk the workspace, calling `visit` for each file; directories the
    /// mediator refuses to list are skipped.
    fn walk(
        &self,
        dir: &str,
        depth: usize,
        visit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<bool, ToolError> {
        if depth > MAX_DEPTH {
            return Ok(true);
        }
        let ticket = match self.ask(FileAccess::List, FileOp::ReadDir, dir) {
            Ok(t) => t,
            Err(ToolError::Denied { .. }) => return Ok(true),
            Err(e) => return Err(e),
        };
        let entries = self.list_unmediated(dir);
        self.closed(ticket, dir, 0, 0, None);
        for e in entries? {
            // A name policy cannot see is skipped, and the refusal logged:
            // a lossy form of it would name another file.
            let Some(name) = e.name.to_str().filter(|n| !n.chars().any(char::is_control)) else {
                let raw = [dir.as_bytes(), b"/", e.name.as_bytes()].concat();
                let raw = if dir.is_empty() { &raw[1..] } else { &raw[..] };
                let rule = if e.name.to_str().is_some() {
                    RefusalRule::ControlCharacter
                } else {
                    RefusalRule::NotUtf8
                };
                let _ = self.refused_raw(FileAccess::List, FileOp::Lookup, raw, rule, "skipped");
                continue;
            };
            let p = join(dir, name);
            let go_on = match e.kind {
                EntryKind::Dir => self.walk(&p, depth + 1, visit)?,
                EntryKind::File => visit(&p),
                EntryKind::Symlink | EntryKind::Other => true,
            };
            if !go_on {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Files matching `pattern` (sorted, at most `max`).
    pub fn glob(&self, pattern: &str, max: usize) -> Result<Vec<String>, ToolError> {
        let g = Glob::new(pattern)?;
        let mut out = Vec::new();
        self.walk("", 0, &mut |p| {
            if g.matches(p) {
                out.push(p.to_string());
            }
            out.len() < max
        })?;
        out.sort();
        Ok(out)
    }

    /// Lines containing `needle` in files matching `pattern` (default all),
    /// at most `max` hits. Files the mediator refuses are skipped.
    pub fn search(
        &self,
        needle: &str,
        pattern: Option<&str>,
        max: usize,
    ) -> Result<Vec<SearchHit>, ToolError> {
        let g = pattern.map(Glob::new).transpose()?;
        let mut hits = Vec::new();
        let mut err = None;
        self.walk("", 0, &mut |p| {
            if g.as_ref().is_some_and(|g| !g.matches(p)) {
                return true;
            }
            match self.search_file(p, needle, max - hits.len().min(max)) {
                Ok(mut h) => hits.append(&mut h),
                // Refused files (each logged) are skipped, like files a
                // policy refuses, and so are files gone meanwhile.
                Err(
                    ToolError::Denied { .. } | ToolError::Refused { .. } | ToolError::NotFound(_),
                ) => {}
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            hits.len() < max
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        Ok(hits)
    }

    fn search_file(&self, p: &str, needle: &str, max: usize) -> Result<Vec<SearchHit>, ToolError> {
        let (access, op) = (FileAccess::Read, FileOp::Open);
        let (id, meta) = self.regular(access, op, p)?;
        let names = self.names(access, op, p, &meta)?;
        let mut tickets = Vec::with_capacity(names.len());
        for n in &names {
            match self.ask(access, op, n) {
                Ok(t) => tickets.push((t, n.clone())),
                Err(e) => {
                    for (t, n) in tickets {
                        self.closed(t, &n, 0, 0, None);
                    }
                    return Err(e);
                }
            }
        }
        let mut buf = Vec::new();
        let read = self.open_read(op, p, id).and_then(|f| {
            f.take(MAX_SEARCH_FILE)
                .read_to_end(&mut buf)
                .map_err(|e| ToolError::io(p, e))
        });
        for (t, n) in tickets {
            self.closed(t, &n, buf.len() as u64, 0, None);
        }
        read?;
        // Binary files (a NUL in the first block) are not searched.
        if buf.iter().take(8192).any(|b| *b == 0) {
            return Ok(Vec::new());
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .take(max)
            .map(|(i, l)| SearchHit {
                path: p.to_string(),
                line: i + 1,
                text: l.to_string(),
            })
            .collect())
    }
}
