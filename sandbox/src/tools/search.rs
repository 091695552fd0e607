//! glob and content search: a walk of the workspace that asks before every
//! directory it lists and every file it reads, and never follows symlinks.

use std::io::Read;

use super::path::{join, Glob};
use super::read::EntryKind;
use super::{ToolError, WorkspaceTools};
use crate::{FileAccess, FileOp};

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
            let p = join(dir, &e.name);
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
                Err(ToolError::Denied { .. }) => {}
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
        let ticket = self.ask(FileAccess::Read, FileOp::Open, p)?;
        let mut buf = Vec::new();
        let read = self
            .dir
            .open(p)
            .and_then(|f| f.take(MAX_SEARCH_FILE).read_to_end(&mut buf))
            .map_err(|e| ToolError::io(p, e));
        self.closed(ticket, p, buf.len() as u64, 0, None);
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
