//! Text from the log, the model or the workspace, made safe to show on a
//! terminal. One rule for every printing command (approval prompts, `audit
//! show`, `session list`, run and chat output, denials, error messages):
//!
//! - control characters (C0 but a kept line feed, DEL, C1 such as the
//!   single-character CSI U+009B), bidirectional embeddings, overrides,
//!   isolates and marks, zero-width and other invisible or format
//!   characters, line and paragraph separators are shown as escapes
//!   (`\u{1b}`, `\r`, `\t`, `\n`), never sent raw to be interpreted;
//! - bytes that are not UTF-8 (file names) are shown as `\xff`;
//! - in JSON output the same characters are written as JSON `\uXXXX`
//!   escapes: a JSON reader decodes them to exactly the same text (the
//!   output stays faithful), but a terminal showing the raw JSON sees only
//!   ASCII escapes.
//!
//! The escaped text contains none of the characters it escapes, so
//! escaping twice changes nothing (an approval's hash and its prompt agree).

use std::path::Path;

/// What [`terminal_safe`] does with a line feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newlines {
    /// Keep `\n` (the layout of a multi-line text stays).
    Keep,
    /// Show it as `\n` too (one line: a field cannot forge another line).
    Escape,
}

/// Why a character is not shown raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hazard {
    /// A C0 or C1 control character or DEL (escape sequences, carriage
    /// return, backspace, bell…).
    Control,
    /// A bidirectional embedding, override, isolate or mark: it reorders
    /// what is shown.
    Bidi,
    /// A line or paragraph separator: it breaks a line without a `\n`.
    LineBreak,
    /// A zero-width, invisible or format character (ZWSP, joiners, BOM,
    /// soft hyphen, variation selectors, tags…): shown as nothing.
    Invisible,
}

impl Hazard {
    /// In words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Hazard::Control => "a control character",
            Hazard::Bidi => "a bidirectional control character",
            Hazard::LineBreak => "a line or paragraph separator",
            Hazard::Invisible => "an invisible (zero-width or format) character",
        }
    }
}

/// Why `c` cannot be shown raw, or `None` when it can. Covers every
/// character of the Unicode categories Cc (controls), Cf (format), Zl and
/// Zp (separators), and the default-ignorable code points.
pub fn hazard(c: char) -> Option<Hazard> {
    if c.is_control() {
        return Some(Hazard::Control);
    }
    match c {
        '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => Some(Hazard::Bidi),
        '\u{2028}' | '\u{2029}' => Some(Hazard::LineBreak),
        '\u{00ad}'
        | '\u{034f}'
        | '\u{0600}'..='\u{0605}'
        | '\u{06dd}'
        | '\u{070f}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08e2}'
        | '\u{115f}'..='\u{1160}'
        | '\u{17b4}'..='\u{17b5}'
        | '\u{180b}'..='\u{180f}'
        | '\u{200b}'..='\u{200d}'
        | '\u{2060}'..='\u{2065}'
        | '\u{206a}'..='\u{206f}'
        | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{feff}'
        | '\u{ffa0}'
        | '\u{fff0}'..='\u{fffb}'
        | '\u{fffe}'..='\u{ffff}'
        | '\u{110bd}'
        | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}' => Some(Hazard::Invisible),
        _ => None,
    }
}

/// True when `c` is shown escaped.
pub fn unsafe_on_terminal(c: char) -> bool {
    hazard(c).is_some()
}

/// `text` made safe to show on a terminal (see the module docs).
pub fn terminal_safe(text: &str, newlines: Newlines) -> String {
    let mut out = String::with_capacity(text.len());
    push_safe(&mut out, text, newlines);
    out
}

fn push_safe(out: &mut String, text: &str, newlines: Newlines) {
    for c in text.chars() {
        match c {
            '\n' if newlines == Newlines::Keep => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_on_terminal(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
}

/// One field on one line: [`terminal_safe`] with line feeds escaped.
pub fn line(text: &str) -> String {
    terminal_safe(text, Newlines::Escape)
}

/// A multi-line text: [`terminal_safe`] keeping line feeds.
pub fn block(text: &str) -> String {
    terminal_safe(text, Newlines::Keep)
}

/// Bytes that should be UTF-8 (a file name, a program's output): valid
/// parts as [`terminal_safe`], every invalid byte as `\xNN`.
pub fn bytes(raw: &[u8], newlines: Newlines) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        push_safe(&mut out, chunk.valid(), newlines);
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path on one line, its non-UTF-8 bytes as `\xNN` (where `display()`
/// would show two different names alike).
pub fn path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    bytes(p.as_os_str().as_bytes(), Newlines::Escape)
}

/// JSON text with every character [`hazard`] names written as a JSON
/// `\uXXXX` escape (surrogate pairs above U+FFFF). Valid JSON stays valid
/// and decodes to the same value: such characters can only occur inside
/// strings, where the escape means the same character; the structural
/// whitespace of pretty output (`\n`, `\t`, `\r`) is left alone.
pub fn json_text(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if unsafe_on_terminal(c) && !matches!(c, '\n' | '\t' | '\r') {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as one line of terminal-safe JSON (see [`json_text`]).
pub fn json_line(v: &serde_json::Value) -> String {
    json_text(&v.to_string())
}

/// A value as pretty-printed terminal-safe JSON (see [`json_text`]).
pub fn json_pretty(v: &serde_json::Value) -> String {
    json_text(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// One sample of every class, including the edges of each range.
    const DANGEROUS: &[char] = &[
        '\0',
        '\x07',
        '\x08',
        '\x1b',
        '\r',
        '\x7f',
        '\u{80}',
        '\u{85}',
        '\u{9b}',
        '\u{9f}',
        '\u{61c}',
        '\u{200e}',
        '\u{200f}',
        '\u{202a}',
        '\u{202e}',
        '\u{2066}',
        '\u{2069}',
        '\u{2028}',
        '\u{2029}',
        '\u{ad}',
        '\u{34f}',
        '\u{200b}',
        '\u{200c}',
        '\u{200d}',
        '\u{2060}',
        '\u{2064}',
        '\u{180e}',
        '\u{3164}',
        '\u{fe0f}',
        '\u{feff}',
        '\u{fff9}',
        '\u{e0001}',
        '\u{e0041}',
        '\u{e007f}',
        '\u{e01ef}',
        '\u{1d173}',
    ];

    #[test]
    fn control_characters_are_shown_escaped() {
        let evil = "rm \x1b[2K\x1b]0;title\x07\r\u{9b}31m\u{7f}\u{202e}txt.exe\u{200b}\tend";
        let safe = terminal_safe(evil, Newlines::Keep);
        assert_eq!(
            safe,
            "rm \\u{1b}[2K\\u{1b}]0;title\\u{7}\\r\\u{9b}31m\\u{7f}\\u{202e}txt.exe\\u{200b}\\tend"
        );
        assert!(!safe.chars().any(unsafe_on_terminal));
        assert_eq!(terminal_safe(&safe, Newlines::Keep), safe, "idempotent");
        assert_eq!(terminal_safe("a\nb", Newlines::Keep), "a\nb");
        assert_eq!(terminal_safe("a\nb", Newlines::Escape), "a\\nb");
        assert_eq!(terminal_safe("Grüße — ok", Newlines::Keep), "Grüße — ok");
    }

    #[test]
    fn every_class_is_escaped_in_text_bytes_and_json() {
        for &c in DANGEROUS {
            let text = format!("a{c}b");
            assert!(hazard(c).is_some(), "{:x}", c as u32);
            let shown = line(&text);
            assert!(!shown.chars().any(unsafe_on_terminal), "{shown:?}");
            assert!(shown.is_ascii(), "{shown:?}");
            assert_eq!(line(&shown), shown, "idempotent for {:x}", c as u32);
            let json = json_line(&serde_json::json!({ "k": text }));
            assert!(json.is_ascii(), "{json:?}");
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back["k"], text, "JSON stays faithful for {:x}", c as u32);
        }
        // Ordinary text, including non-Latin scripts and emoji, is shown as is.
        for ok in ["Grüße", "日本語", "שלום", "مرحبا", "🙂", "a-b_c.d@e"] {
            assert_eq!(line(ok), ok);
            assert!(ok.chars().all(|c| hazard(c).is_none()), "{ok}");
        }
    }

    #[test]
    fn invalid_utf8_bytes_are_shown_as_hex() {
        assert_eq!(
            bytes(b"ok\xff\xfe\x1b[2J", Newlines::Escape),
            "ok\\xff\\xfe\\u{1b}[2J"
        );
        use std::os::unix::ffi::OsStrExt as _;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/w/r\xe9sum\xe9\n.txt"));
        assert_eq!(path(p), "/w/r\\xe9sum\\xe9\\n.txt");
    }

    #[test]
    fn pretty_json_keeps_its_layout_and_escapes_astral_characters() {
        let v = serde_json::json!({"a": ["\u{e0041}\u{202e}", 1]});
        let p = json_pretty(&v);
        assert!(p.contains('\n'), "layout kept: {p}");
        assert!(p.contains("\\udb40\\udc41\\u202e"), "{p}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&p).unwrap(), v);
    }
}
