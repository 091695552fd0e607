//! The exporter's readable files (`SUMMARY.md`, the OCSF view) are prose
//! from the producer: a manifest re-signed over an edited summary would
//! pass every digest check. So the verifier recomputes both from the
//! verified entries, with the same code the exporter uses, and fails on the
//! first difference — naming the file, the line and, for OCSF, the entry
//! and field.

use std::io::BufRead as _;

use serde_json::Value;
use stele_audit::export::layout::{selection_text, OCSF, SUMMARY};
use stele_audit::export::ocsf;
use stele_audit::export::summary::SummaryBuilder;
use stele_audit::leaf::Leaf;
use stele_audit::merkle::Hash;

use crate::manifest::Manifest;
use crate::{Bundle, Failure};

/// Recomputes the derived files while the selected entries stream past.
pub(crate) struct Derived {
    summary: SummaryBuilder,
    /// The exported OCSF view, decompressed as it is read (absent when the
    /// export has none).
    ocsf: Option<OcsfLines>,
}

struct OcsfLines {
    reader: std::io::BufReader<flate2::read::GzDecoder<std::io::Cursor<Vec<u8>>>>,
    line_no: u64,
    buf: String,
    want: Vec<u8>,
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
            Some(OcsfLines {
                reader: std::io::BufReader::new(flate2::read::GzDecoder::new(
                    std::io::Cursor::new(gz),
                )),
                line_no: 0,
                buf: String::new(),
                want: Vec::with_capacity(2048),
            })
        } else {
            None
        };
        Ok(Self {
            summary: SummaryBuilder::default(),
            ocsf,
        })
    }

    /// One selected, verified entry.
    pub(crate) fn add(&mut self, leaf: &Leaf, hash: &Hash, origin: &str) -> Result<(), Failure> {
        self.summary.add(leaf);
        let Some(o) = &mut self.ocsf else {
            return Ok(());
        };
        o.line_no += 1;
        o.buf.clear();
        let n = o.reader.read_line(&mut o.buf).map_err(|e| {
            Failure::new(
                OCSF,
                Some(leaf.seq),
                format!("line {}: cannot be decompressed: {e}", o.line_no),
            )
        })?;
        if n == 0 {
            return Err(Failure::new(
                OCSF,
                Some(leaf.seq),
                format!(
                    "ends at line {}, but entry {} is selected and has no event",
                    o.line_no, leaf.seq
                ),
            ));
        }
        let want = ocsf::event(leaf, hash, origin);
        // The exporter writes this serialisation (keys sorted): equal bytes
        // are the common case and cheap; anything else is compared as JSON
        // values, and a difference named by its field.
        let line = o.buf.strip_suffix('\n').unwrap_or(&o.buf);
        o.want.clear();
        if serde_json::to_writer(&mut o.want, &want).is_ok() && o.want == line.as_bytes() {
            return Ok(());
        }
        let got: Value = serde_json::from_str(line).map_err(|e| {
            Failure::new(
                OCSF,
                Some(leaf.seq),
                format!("line {} is not JSON: {e}", o.line_no),
            )
        })?;
        // The same event written otherwise (key order, spacing: an export
        // from a binary whose JSON keeps insertion order) is the same event.
        let Some(path) = first_difference(&got, &want, String::new()) else {
            return Ok(());
        };
        Err(Failure::new(
            OCSF,
            Some(leaf.seq),
            format!(
                "line {} differs from the event recomputed from entry {} at `{path}` \
                 (exported {}, recomputed {})",
                o.line_no,
                leaf.seq,
                short(pointer(&got, &path)),
                short(pointer(&want, &path)),
            ),
        ))
    }

    /// After the last entry: no OCSF events left over, and `SUMMARY.md`
    /// equal to the one recomputed.
    pub(crate) fn finish(mut self, bundle: &Bundle, m: &Manifest) -> Result<(), Failure> {
        if let Some(o) = &mut self.ocsf {
            o.buf.clear();
            let n = o
                .reader
                .read_line(&mut o.buf)
                .map_err(|e| Failure::new(OCSF, None, format!("cannot be decompressed: {e}")))?;
            if n > 0 {
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
