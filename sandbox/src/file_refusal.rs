//! Refusals the sandbox makes itself, before (or instead of) a policy
//! decision: names that cannot be put to policy, escapes, objects the
//! workspace must not hold (device nodes, privileged mode bits, other
//! owners), aliases whose names are not all known, and the write quota.
//!
//! Each is reported to the [`Mediator`](crate::Mediator) with
//! [`file_refused`](crate::Mediator::file_refused), so the runtime records
//! it like any other denial: every refused action is in the log, with the
//! rule that refused it.

use std::fmt::Write as _;

use crate::{FileAccess, FileOp, Requester};

/// The rule that refused an access. [`RefusalRule::name`] is the stable
/// name the log records (`data.refusal.rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalRule {
    /// An empty name or path that does not mean the workspace root.
    EmptyName,
    /// A name with a NUL or another control character.
    ControlCharacter,
    /// A name that is not UTF-8 (a lossy conversion would let two files
    /// look like one to the policy).
    NotUtf8,
    /// `..` (or `.` from a transport), climbing out of where a name must stay.
    ParentDir,
    /// An absolute path where a workspace-relative one is required.
    Absolute,
    /// A name with `/` in it where one component is required.
    SlashInName,
    /// A symbolic link that resolves outside the workspace.
    SymlinkEscape,
    /// Not a regular file (FIFO, socket, device, directory) where the
    /// operation needs one.
    NotRegular,
    /// A hard-linked file whose other names are not all inside the
    /// workspace (or could not be found): no decision could cover them.
    HardLinkUnresolved,
    /// A mode with setuid, setgid or sticky bits.
    PrivilegedMode,
    /// A change of ownership to anyone but the workspace's owner.
    Ownership,
    /// Creating a device node.
    DeviceNode,
    /// Setting or removing an extended attribute (capabilities, ACLs, …).
    ExtendedAttribute,
    /// The session's workspace write quota is used up.
    WriteQuota,
    /// The file server's descriptors (remembered inodes and open files)
    /// are all in use; more would take those the rest of stele needs.
    OpenFiles,
}

impl RefusalRule {
    /// The stable name recorded in the log.
    pub fn name(self) -> &'static str {
        match self {
            RefusalRule::EmptyName => "path.empty",
            RefusalRule::ControlCharacter => "path.control_character",
            RefusalRule::NotUtf8 => "path.not_utf8",
            RefusalRule::ParentDir => "path.parent_dir",
            RefusalRule::Absolute => "path.absolute",
            RefusalRule::SlashInName => "path.slash_in_name",
            RefusalRule::SymlinkEscape => "path.symlink_escape",
            RefusalRule::NotRegular => "file.not_regular",
            RefusalRule::HardLinkUnresolved => "file.hard_link_unresolved",
            RefusalRule::PrivilegedMode => "file.privileged_mode",
            RefusalRule::Ownership => "file.ownership",
            RefusalRule::DeviceNode => "file.device_node",
            RefusalRule::ExtendedAttribute => "file.extended_attribute",
            RefusalRule::WriteQuota => "workspace.write_quota",
            RefusalRule::OpenFiles => "workspace.open_files",
        }
    }

    /// What the rule says, for people.
    pub fn describe(self) -> &'static str {
        match self {
            RefusalRule::EmptyName => "an empty name is not a workspace path",
            RefusalRule::ControlCharacter => "names with control characters are refused",
            RefusalRule::NotUtf8 => "names that are not UTF-8 are refused",
            RefusalRule::ParentDir => "`..` would leave the workspace's canonical paths",
            RefusalRule::Absolute => "paths must be relative to the workspace",
            RefusalRule::SlashInName => "a name must be one path component",
            RefusalRule::SymlinkEscape => "a symbolic link leads out of the workspace",
            RefusalRule::NotRegular => "not a regular file",
            RefusalRule::HardLinkUnresolved => {
                "a hard-linked file is used only when all its names are known workspace paths"
            }
            RefusalRule::PrivilegedMode => "setuid, setgid and sticky bits are refused",
            RefusalRule::Ownership => "files stay owned by the workspace's owner",
            RefusalRule::DeviceNode => "device nodes are refused",
            RefusalRule::ExtendedAttribute => "extended attributes cannot be set or removed",
            RefusalRule::WriteQuota => "the session's workspace write quota is used up",
            RefusalRule::OpenFiles => "the file server's descriptors are all in use",
        }
    }
}

/// A file access the sandbox refused on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRefusal {
    /// The access that was wanted.
    pub access: FileAccess,
    /// The operation that wanted it.
    pub op: FileOp,
    /// The path as the program gave it (workspace-relative where the
    /// sandbox knows it), made printable with [`printable_path`]; `.` is
    /// the workspace root.
    pub path: String,
    /// The rule that refused it.
    pub rule: RefusalRule,
    /// Particulars beyond the rule (`"3 links, 1 found"`), or empty.
    pub detail: String,
    /// Who asked.
    pub requester: Requester,
}

impl FileRefusal {
    /// A refusal of `access` by `op` on `path` (raw bytes, made printable).
    pub fn new(
        access: FileAccess,
        op: FileOp,
        path: &[u8],
        rule: RefusalRule,
        requester: Requester,
    ) -> Self {
        FileRefusal {
            access,
            op,
            path: printable_path(path),
            rule,
            detail: String::new(),
            requester,
        }
    }

    /// The same refusal with particulars.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// One line for people: the action, the path, the rule and why.
    pub fn reason(&self) -> String {
        let mut s = format!(
            "{} on \"{}\" refused by rule {}: {}",
            self.access.action(),
            self.path,
            self.rule.name(),
            self.rule.describe()
        );
        if !self.detail.is_empty() {
            let _ = write!(s, " ({})", self.detail);
        }
        s
    }
}

/// `bytes` as text that is safe to log and print: valid UTF-8 is kept
/// except control characters, bidirectional and zero-width format
/// characters and backslashes, which are escaped (`\u{1b}`, `\\`); bytes
/// that are not UTF-8 become `\xNN`. Two different inputs never give the
/// same output.
pub fn printable_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() || is_format_char(c) {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Invisible characters that change how text around them reads
/// (bidirectional overrides and isolates, zero-width characters, BOM).
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_paths_escape_what_could_deceive() {
        assert_eq!(printable_path(b"reports/q1.csv"), "reports/q1.csv");
        assert_eq!(printable_path(b"a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable_path(b"bad\xffname"), "bad\\xffname");
        assert_eq!(
            printable_path("x\u{202e}gpj.exe".as_bytes()),
            "x\\u{202e}gpj.exe"
        );
        assert_eq!(
            printable_path("zero\u{200b}width".as_bytes()),
            "zero\\u{200b}width"
        );
        assert_eq!(printable_path("Bücher".as_bytes()), "Bücher");
        // An escape sequence typed literally cannot pass for an escaped byte.
        assert_ne!(printable_path(b"\\xff"), printable_path(b"\xff"));
        assert_eq!(printable_path(b"\\xff"), "\\\\xff");
    }

    #[test]
    fn reasons_name_the_rule() {
        let r = FileRefusal::new(
            FileAccess::Read,
            FileOp::Open,
            b"fifo",
            RefusalRule::NotRegular,
            Requester::default(),
        )
        .with_detail("a FIFO");
        assert_eq!(
            r.reason(),
            "file.read on \"fifo\" refused by rule file.not_regular: not a regular file (a FIFO)"
        );
    }
}
