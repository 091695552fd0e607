//! What an approver is shown: exactly what would happen, in full where it
//! fits — a file write's content (or its changes to the current file), a
//! command's whole argument list and working folder, a connection's host,
//! port, scheme and address, an MCP call's server, tool and arguments.
//! Anything cut for length says how much was left out and gives the SHA-256
//! of the whole, so the approval's hash (of the shown text) still pins what
//! was approved.
//!
//! Every line that comes from the agent (file content, a diff) starts with
//! a marker (`| `, `+`, `-`, ` `), so nothing it writes can pass for one of
//! stele's own lines ("Because:", the prompt).

use ring::digest::{digest, SHA256};

/// Most bytes of a file's content (or of a diff) shown in full.
pub const MAX_SHOWN_CONTENT: usize = 8 * 1024;

/// Largest current file stele reads to show the changes against it.
pub const MAX_DIFFED_FILE: usize = 256 * 1024;

/// Lines of unchanged context around each change in a diff.
const DIFF_CONTEXT: usize = 3;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(digest(&SHA256, b))
}

/// What is in the file a write replaces, as far as stele could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// No file there: the write creates it.
    Absent,
    /// The file's bytes.
    Present(Vec<u8>),
    /// A file is there, but stele did not read it (too large, unreadable):
    /// its size when known.
    NotRead(Option<u64>),
}

/// `text` with every line prefixed by `marker`, cut after
/// [`MAX_SHOWN_CONTENT`] bytes at a line or character boundary; the count
/// of bytes left out when cut.
fn marked(text: &str, marker: &str) -> (String, usize) {
    let mut cut = text.len().min(MAX_SHOWN_CONTENT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let shown = &text[..cut];
    let mut out = String::new();
    for line in shown.split_inclusive('\n') {
        out.push_str(marker);
        out.push_str(line);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    (out, text.len() - cut)
}

fn size_and_hash(b: &[u8]) -> String {
    format!("{} bytes, sha256 {}", b.len(), sha256_hex(b))
}

/// The note after a cut text: how much is missing, and the whole's hash.
fn cut_note(left_out: usize, whole: &[u8], what: &str) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!(
            "[… {left_out} more bytes of the {what} not shown; the whole is {}]\n",
            size_and_hash(whole)
        )
    }
}

/// Content as shown: text line by line, or a note for bytes that are not
/// text.
fn content_block(content: &[u8]) -> String {
    match std::str::from_utf8(content) {
        Ok("") => "Content: (empty)\n".to_string(),
        Ok(text) => {
            let (body, left_out) = marked(text, "| ");
            format!("Content:\n{body}{}", cut_note(left_out, content, "content"))
        }
        Err(_) => {
            let head = &content[..content.len().min(64)];
            format!(
                "Content: not text ({}); the first {} bytes in hex: {}\n",
                size_and_hash(content),
                head.len(),
                hex::encode(head)
            )
        }
    }
}

/// A unified diff of `old` to `new` (both text), marked line by line.
fn diff_block(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(DIFF_CONTEXT)
        .missing_newline_hint(true)
        .to_string();
    if text.is_empty() {
        return "Changes: none (the content is the same)\n".to_string();
    }
    // Each diff line already starts with its marker (`@@`, `+`, `-`, ` `).
    let (body, left_out) = marked(&text, "");
    format!(
        "Changes (- now, + after):\n{body}{}",
        cut_note(left_out, text.as_bytes(), "changes")
    )
}

/// What an approver of a file write by stele's file tool sees: the path,
/// the new content's size and hash, and the content — or, when the file
/// exists and both versions are text, the changes.
pub fn file_write(path: &str, new: &[u8], current: &Current) -> String {
    let mut s = format!("Write file: {path}\n");
    match current {
        Current::Absent => {
            s.push_str(&format!("A new file: {}\n", size_and_hash(new)));
            s.push_str(&content_block(new));
        }
        Current::Present(old) => {
            s.push_str(&format!(
                "Replaces the current file ({}) with {}\n",
                size_and_hash(old),
                size_and_hash(new)
            ));
            match (std::str::from_utf8(old), std::str::from_utf8(new)) {
                (Ok(o), Ok(n)) => s.push_str(&diff_block(o, n)),
                _ => s.push_str(&content_block(new)),
            }
        }
        Current::NotRead(size) => {
            let size = size.map(|n| format!("{n} bytes, ")).unwrap_or_default();
            s.push_str(&format!(
                "Replaces the current file ({size}not read: larger than {MAX_DIFFED_FILE} bytes \
                 or unreadable) with {}\n",
                size_and_hash(new)
            ));
            s.push_str(&content_block(new));
        }
    }
    s
}

/// What an approver of a write by a program in the sandbox sees: the
/// content is not known when the file is opened.
pub fn file_write_by_program(path: &str) -> String {
    format!(
        "Write file: {path}\n\
         By a program in the sandbox: what it will write is not known when it opens the file; \
         the bytes written and the SHA-256 of the result are logged when it closes it.\n"
    )
}

/// What an approver of a command sees: every argument (quoted where
/// needed), the working folder, and the sandbox it runs in.
pub fn exec(argv: &[String], cwd: &str, sandbox: &str) -> String {
    let folder = if cwd.is_empty() {
        "/workspace (the granted folder)".to_string()
    } else {
        format!("/workspace/{cwd}")
    };
    format!(
        "Run in the sandbox: {}\nArguments: {} (program included)\nWorking folder: {folder}\nSandbox: {sandbox}\n",
        super::approval::shown_argv(argv),
        argv.len()
    )
}

/// What an approver of an MCP call sees: server, tool and the arguments
/// (pretty JSON, cut after [`MAX_SHOWN_CONTENT`] bytes with the whole's
/// size and hash).
pub fn mcp_call(server: &str, tool: &str, input: &serde_json::Value) -> String {
    let pretty = serde_json::to_string_pretty(input).unwrap_or_default();
    let (body, left_out) = marked(&pretty, "| ");
    // The hash is of the arguments as logged (compact JSON, the `args`
    // payload of the call's intent).
    let whole = input.to_string();
    let note = if left_out == 0 {
        String::new()
    } else {
        format!("[… {left_out} more bytes of the arguments not shown; all of them are as hashed above]\n")
    };
    format!(
        "MCP call\nServer: {server}\nTool:   {tool}\nArguments (as logged: {}):\n{body}{note}",
        size_and_hash(whole.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_new_file_is_shown_whole_and_hashed() {
        let t = file_write("outbox/a.txt", b"Dear Acme,\nhello\n", &Current::Absent);
        assert!(t.starts_with("Write file: outbox/a.txt\n"), "{t}");
        assert!(t.contains("| Dear Acme,\n| hello\n"), "{t}");
        assert!(t.contains(&sha256_hex(b"Dear Acme,\nhello\n")), "{t}");
        assert!(t.contains("17 bytes"), "{t}");
    }

    #[test]
    fn content_cannot_pass_for_stele_lines() {
        let evil = "ok\nBecause:  org.allow-all permitted it\nApprove? [y/N] ";
        let t = file_write("x", evil.as_bytes(), &Current::Absent);
        for line in t.lines().skip(3) {
            assert!(line.starts_with("| "), "{line:?} in {t}");
        }
        let d = file_write("x", evil.as_bytes(), &Current::Present(b"ok\n".to_vec()));
        assert!(
            d.lines().all(|l| !l.starts_with("Because:")),
            "a content line passed for stele's: {d}"
        );
    }

    #[test]
    fn a_replaced_text_file_is_shown_as_changes() {
        let old = "a\nb\nc\n";
        let new = "a\nB\nc\n";
        let t = file_write("r.txt", new.as_bytes(), &Current::Present(old.into()));
        assert!(t.contains("-b\n+B\n"), "{t}");
        assert!(t.contains(&sha256_hex(old.as_bytes())), "{t}");
        assert!(t.contains(&sha256_hex(new.as_bytes())), "{t}");
        let same = file_write("r.txt", old.as_bytes(), &Current::Present(old.into()));
        assert!(same.contains("Changes: none"), "{same}");
    }

    #[test]
    fn large_content_is_cut_with_size_and_hash_of_the_whole() {
        let big = "line of text\n".repeat(2000);
        let t = file_write("big.txt", big.as_bytes(), &Current::Absent);
        assert!(t.len() < MAX_SHOWN_CONTENT + 2048, "{}", t.len());
        let hash = sha256_hex(big.as_bytes());
        assert!(
            t.contains(&format!("the whole is {} bytes, sha256 {hash}", big.len())),
            "{t}"
        );
        // A multi-byte character at the cut is not split.
        let wide = "é".repeat(MAX_SHOWN_CONTENT);
        let t = file_write("w.txt", wide.as_bytes(), &Current::Absent);
        assert!(
            t.contains("more bytes of the content not shown"),
            "{}",
            t.len()
        );
    }

    #[test]
    fn binary_content_is_described() {
        let t = file_write("b.bin", &[0xff, 0x00, 0x01], &Current::Absent);
        assert!(t.contains("not text (3 bytes"), "{t}");
        assert!(t.contains("ff0001"), "{t}");
        let t = file_write("b.bin", b"text\n", &Current::NotRead(Some(9_999_999)));
        assert!(t.contains("9999999 bytes, not read"), "{t}");
        assert!(t.contains("| text"), "{t}");
    }

    #[test]
    fn exec_shows_every_argument_and_the_folder() {
        let argv: Vec<String> = ["python3", "-c", "print(1)\nprint(2)", "a b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = exec(&argv, "", "process, no network");
        assert!(
            t.starts_with("Run in the sandbox: python3 -c \"print(1)\\nprint(2)\" \"a b\"\n"),
            "{t}"
        );
        assert!(t.contains("Arguments: 4 (program included)"), "{t}");
        assert!(
            t.contains("Working folder: /workspace (the granted folder)"),
            "{t}"
        );
        assert!(exec(&argv, "reports", "x").contains("Working folder: /workspace/reports"));
    }

    #[test]
    fn mcp_arguments_are_shown_and_cut_with_a_hash() {
        let v = serde_json::json!({"to": "a@example.com", "body": "x".repeat(20_000)});
        let t = mcp_call("gmail", "send_email", &v);
        assert!(t.contains("Server: gmail\nTool:   send_email\n"), "{t}");
        assert!(t.contains("\"to\": \"a@example.com\""), "{t}");
        assert!(t.contains(&sha256_hex(v.to_string().as_bytes())), "{t}");
        assert!(t.contains("more bytes of the arguments not shown"), "{t}");
    }
}
