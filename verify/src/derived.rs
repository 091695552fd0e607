//! The exporter's readable files (`SUMMARY.md`, the OCSF view) are prose
//! from the producer: a manifest re-signed over an edited summary would
//! pass every digest check. So the verifier recomputes both from the
//! verified entries, with the same code the exporter uses, and fails on the
//! first difference — naming the file, the line and, for OCSF, the entry
//! and field.

use std::io::Read as _;

use serde_json::Value;
use stele_audit::export::layout::{selection_text, OCSF, SUMMARY};
use stele_audit::export::ocsf::{self, OcsfOrigin};
use stele_audit::export::summary::SummaryBuilder;
use stele_audit::leaf::Leaf;
use stele_audit::leaf_view::LeafText;
use stele_audit::merkle::Hash;

use crate::manifest::Manifest;
use crate::{Bundle, Failure};

/// Recomputes the derived files while the selected entries stream past.
pub(crate) struct Derived {
    summary: SummaryBuilder,
    /// The exported OCSF view, decompressed as it is compared (absent when
    /// the export has none).
    ocsf: Option<OcsfStream>,
    origin: OcsfOrigin,
    origin_text: String,
    /// The mapping the manifest names (older exports: mapping 1).
    mapping: ocsf::OcsfMapping,
}

/// Decompressed bytes of the exported OCSF view, compared with the events
/// recomputed from the entries as they stream: no file is held
/// decompressed and no line is parsed unless it differs.
struct OcsfStream {
    /// Every gzip member, as a SIEM's `zcat` would read them: a member
    /// appended after the first is compared like the rest.
    gz: flate2::bufread::MultiGzDecoder<std::io::Cursor<Vec<u8>>>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    eof: bool,
    line_no: u64,
    /// The recomputed event of the current entry.
    want: Vec<u8>,
}

/// Bytes decompressed at a time.
const CHUNK: usize = 256 * 1024;

impl OcsfStream {
    /// Make at least `n` unread bytes available, unless the stream ends.
    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.end - self.pos < n && !self.eof {
            if self.pos > 0 && (self.pos >= self.buf.len() / 2 || self.end == self.buf.len()) {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() - self.end < CHUNK.min(n.max(4096)) {
                let len = (self.end + n.max(CHUNK)).max(self.buf.len());
                self.buf.resize(len, 0);
            }
            let got = self.gz.read(&mut self.buf[self.end..])?;
            if got == 0 {
                self.eof = true;
            }
            self.end += got;
        }
        Ok(())
    }

    /// The next line, without its newline (`None` at the end).
    fn line(&mut self) -> std::io::Result<Option<&[u8]>> {
        let mut from = self.pos;
        loop {
            if let Some(i) = self.buf[from..self.end].iter().position(|b| *b == b'\n') {
                let line = self.pos..from + i;
                self.pos = from + i + 1;
                return Ok(Some(&self.buf[line]));
            }
            if self.eof {
                if self.pos == self.end {
                    return Ok(None);
                }
                let line = self.pos..self.end;
                self.pos = self.end;
                return Ok(Some(&self.buf[line]));
            }
            let seen = self.end - self.pos;
            self.fill(seen + 1)?;
            from = self.pos + seen;
        }
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Derived")
            .field("ocsf", &self.ocsf.as_ref().map(|o| o.line_no))
            .finish()
    }
}

impl Derived {
    /// Open the exported OCSF view (its digest checked against the manifest).
    pub(crate) fn open(bundle: &Bundle, m: &Manifest) -> Result<Self, Failure> {
        let ocsf = if m.digests.contains_key(OCSF) {
            let gz = m.read(bundle, OCSF)?;
            Some(OcsfStream {
                gz: flate2::bufread::MultiGzDecoder::new(std::io::Cursor::new(gz)),
                buf: Vec::new(),
                pos: 0,
                end: 0,
                eof: false,
                line_no: 0,
                want: Vec::with_capacity(2048),
            })
        } else {
            None
        };
        Ok(Self {
            summary: SummaryBuilder::default(),
            ocsf,
            origin: OcsfOrigin::new(&m.predicate.origin).with_mapping(m.predicate.ocsf_mapping),
            origin_text: m.predicate.origin.clone(),
            mapping: m.predicate.ocsf_mapping,
        })
    }

    /// One selected, verified entry: its text as the checks read it (if
    /// they did), its bytes and leaf hash.
    pub(crate) fn add(
        &mut self,
        text: Option<&LeafText<'_>>,
        bytes: &[u8],
        seq: u64,
        hash: &Hash,
    ) -> Result<(), Failure> {
        // A leaf in an unusual spelling (one the scanner declines) through
        // the typed parse, printed the same way.
        let typed: Leaf;
        let read: LeafText<'_>;
        let text = match text {
            Some(t) => t,
            None => {
                read = match LeafText::scan(bytes) {
                    Some(t) => t,
                    None => {
                        typed = serde_json::from_slice(bytes).map_err(|e| {
                            Failure::new(OCSF, Some(seq), format!("entry {seq}: {e}"))
                        })?;
                        LeafText::of(&typed)
                    }
                };
                &read
            }
        };
        self.summary.add_text(text);
        let Some(o) = &mut self.ocsf else {
            return Ok(());
        };
        o.line_no += 1;
        o.want.clear();
        ocsf::write_event(text, hash, &self.origin, &mut o.want);
        o.want.push(b'\n');
        let n = o.want.len();
        let undecodable = |line_no: u64, e: std::io::Error| {
            Failure::new(
                OCSF,
                Some(seq),
                format!("line {line_no}: cannot be decompressed: {e}"),
            )
        };
        o.fill(n).map_err(|e| undecodable(o.line_no, e))?;
        // The exporter writes these bytes: equal bytes are the common case.
        if o.buf[o.pos..o.end].starts_with(&o.want) {
            o.pos += n;
            return Ok(());
        }
        let line_no = o.line_no;
        let Some(line) = o.line().map_err(|e| undecodable(line_no, e))? else {
            return Err(Failure::new(
                OCSF,
                Some(seq),
                format!("ends at line {line_no}, but entry {seq} is selected and has no event"),
            ));
        };
        // The same event written otherwise (key order, spacing: an export
        // from a binary whose JSON keeps insertion order) is the same
        // event: compared as JSON values, a difference named by its field.
        let got: Value = serde_json::from_slice(line).map_err(|e| {
            Failure::new(OCSF, Some(seq), format!("line {line_no} is not JSON: {e}"))
        })?;
        let leaf: Leaf = serde_json::from_slice(bytes)
            .map_err(|e| Failure::new(OCSF, Some(seq), format!("entry {seq}: {e}")))?;
        let want = ocsf::event_in(&leaf, hash, &self.origin_text, self.mapping);
        let Some(path) = first_difference(&got, &want, String::new()) else {
            return Ok(());
        };
        Err(Failure::new(
            OCSF,
            Some(seq),
            format!(
                "line {line_no} differs from the event recomputed from entry {seq} at `{path}` \
                 (exported {}, recomputed {})",
                short(pointer(&got, &path)),
                short(pointer(&want, &path)),
            ),
        ))
    }

    /// After the last entry: no OCSF events left over, and `SUMMARY.md`
    /// equal to the one recomputed.
    pub(crate) fn finish(mut self, bundle: &Bundle, m: &Manifest) -> Result<(), Failure> {
        if let Some(o) = &mut self.ocsf {
            o.fill(1)
                .map_err(|e| Failure::new(OCSF, None, format!("cannot be decompressed: {e}")))?;
            if o.pos < o.end {
                return Err(Failure::new(
                    OCSF,
                    None,
                    format!(
                        "line {} is one event too many: {} events are recomputed from the selected entries",
                        o.line_no + 1,
                        o.line_no
                    ),
                ));
            }
        }
        if m.digests.contains_key(SUMMARY) {
            let got = m.read(bundle, SUMMARY)?;
            let got = String::from_utf8_lossy(&got);
            let p = &m.predicate;
            let want = self
                .summary
                .render(&p.origin, p.tree_size, &selection_text(&p.range));
            compare_text(SUMMARY, &got, &want)?;
        }
        Ok(())
    }
}

/// The first line where two texts differ, as a failure.
fn compare_text(file: &str, got: &str, want: &str) -> Result<(), Failure> {
    if got == want {
        return Ok(());
    }
    let mut g = got.lines();
    let mut w = want.lines();
    let mut n = 0u64;
    loop {
        n += 1;
        match (g.next(), w.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                return Err(Failure::new(
                    file,
                    None,
                    format!(
                    "differs from the summary recomputed from the verified entries at line {n}: \
                         exported {}, recomputed {}",
                    a.map_or("(end of file)".to_string(), |a| format!("{a:?}")),
                    b.map_or("(end of file)".to_string(), |b| format!("{b:?}")),
                ),
                ))
            }
        }
    }
}

/// JSON pointer of the first place where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, format!("{at}/{k}")),
                _ => Some(format!("{at}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(if at.is_empty() { "/".into() } else { at }),
    }
}

fn pointer<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "/" {
        Some(v)
    } else {
        v.pointer(path)
    }
}

fn short(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 80 {
                format!("{}…", s.chars().take(80).collect::<String>())
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_difference_names_the_field() {
        let a = serde_json::json!({"a": 1, "b": {"c": [1, 2]}});
        let b = serde_json::json!({"a": 1, "b": {"c": [1, 3]}});
        assert_eq!(first_difference(&a, &b, String::new()).unwrap(), "/b/c/1");
        let c = serde_json::json!({"a": 1});
        assert_eq!(first_difference(&a, &c, String::new()).unwrap(), "/b");
        assert!(first_difference(&a, &a, String::new()).is_none());
    }

    #[test]
    fn text_difference_names_the_line() {
        let e = compare_text("S", "a\nb\nc\n", "a\nb\nd\n").unwrap_err();
        assert!(e.reason.contains("line 3"), "{}", e.reason);
        let e = compare_text("S", "a\n", "a\nb\n").unwrap_err();
        assert!(e.reason.contains("line 2") && e.reason.contains("end of file"));
        assert!(compare_text("S", "x", "x").is_ok());
    }
}
