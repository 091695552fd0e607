//! A single-pass check that bytes are RFC 8785 (JCS) canonical JSON, for the
//! subset leaves use: no floats (integers only), ASCII object keys.
//!
//! Verification must reject any leaf that is not byte-for-byte canonical.
//! Parsing and re-serialising costs about as much as everything else in
//! verification together; this check allocates nothing. A property test
//! checks it against `serde_jcs` output and against mutated encodings.

/// Why bytes are not canonical, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonical at byte {offset}: {what}")]
pub struct CanonicalError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

const MAX_DEPTH: usize = 32;

/// Check that `b` is one canonical JSON value (UTF-8, no whitespace, object
/// keys ASCII and strictly increasing, minimal string escapes, integers
/// without leading zeros, fractions or exponents).
pub fn check(b: &[u8]) -> Result<(), CanonicalError> {
    let mut c = Cursor::new(b, Ints::Any);
    c.value(0)?;
    c.end()
}

/// [`check`], and every integer's magnitude at most 2^53 − 1 (what leaves
/// allow anywhere); an integer beyond is reported as [`UNSAFE_INTEGER`].
pub fn check_safe(b: &[u8]) -> Result<(), CanonicalError> {
    let mut c = Cursor::new(b, Ints::Safe);
    c.value(0)?;
    c.end()
}

/// The `what` of an integer beyond 2^53 − 1.
pub const UNSAFE_INTEGER: &str = "integer beyond 2^53 - 1";

/// Which integers a value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ints {
    /// Any length (RFC 8785 only asks for the shortest spelling).
    Any,
    /// Magnitude at most 2^53 - 1 (what leaf `data` allows).
    Safe,
}

/// A position in bytes being checked. UTF-8 is validated inside strings only:
/// outside them every accepted byte is ASCII, so that covers the whole input.
pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
    ints: Ints,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `b`.
    pub(crate) fn new(b: &'a [u8], ints: Ints) -> Self {
        Self { b, i: 0, ints }
    }

    /// Require that everything was consumed.
    pub(crate) fn end(&self) -> Result<(), CanonicalError> {
        if self.i != self.b.len() {
            return self.fail("trailing bytes");
        }
        Ok(())
    }

    /// Which integers are accepted from now on.
    pub(crate) fn set_ints(&mut self, ints: Ints) {
        self.ints = ints;
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, CanonicalError> {
        Err(CanonicalError {
            offset: self.i,
            what,
        })
    }

    /// The next byte.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Consume `c` if it is next.
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// One canonical value at nesting `depth`.
    pub(crate) fn value(&mut self, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => self.fail("expected a value"),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), CanonicalError> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            self.fail("bad literal")
        }
    }

    fn number(&mut self) -> Result<(), CanonicalError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = self.i - digits;
        if n == 0 {
            return self.fail("expected digits");
        }
        if n > 1 && self.b[digits] == b'0' {
            return Err(CanonicalError {
                offset: digits,
                what: "leading zero",
            });
        }
        if self.b[start] == b'-' && n == 1 && self.b[digits] == b'0' {
            return Err(CanonicalError {
                offset: start,
                what: "negative zero",
            });
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return self.fail("only integers are allowed");
        }
        if self.ints == Ints::Safe && !safe_magnitude(&self.b[digits..self.i]) {
            return Err(CanonicalError {
                offset: start,
                what: UNSAFE_INTEGER,
            });
        }
        Ok(())
    }

    /// A string (the cursor is on its opening quote); returns its raw
    /// content, between the quotes, escapes not decoded.
    pub(crate) fn string(&mut self) -> Result<&'a [u8], CanonicalError> {
        self.string_escaped().map(|(s, _)| s)
    }

    /// [`Cursor::string`], and whether the content holds an escape.
    pub(crate) fn string_escaped(&mut self) -> Result<(&'a [u8], bool), CanonicalError> {
        self.i += 1; // opening quote
        let start = self.i;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.peek() {
                None => return self.fail("unterminated string"),
                Some(b'"') => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Ok((s, escaped));
                }
                Some(0x00..=0x1f) => return self.fail("control character must be escaped"),
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(lead) => self.non_ascii(lead)?,
            }
        }
    }

    /// Skip printable ASCII other than `"` and `\` (the hot path: most
    /// leaf bytes are string content).
    fn skip_plain(&mut self) {
        self.i = skip_plain(self.b, self.i);
    }

    /// One non-ASCII character: must be well-formed UTF-8.
    fn non_ascii(&mut self, lead: u8) -> Result<(), CanonicalError> {
        let width = match lead {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return self.fail("not UTF-8"),
        };
        match self.b.get(self.i..self.i + width) {
            Some(ch) if std::str::from_utf8(ch).is_ok() => {
                self.i += width;
                Ok(())
            }
            _ => self.fail("not UTF-8"),
        }
    }

    fn escape(&mut self) -> Result<(), CanonicalError> {
        match self.b.get(self.i + 1) {
            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 2;
                Ok(())
            }
            Some(b'u') => {
                let h = self.b.get(self.i + 2..self.i + 6).ok_or(CanonicalError {
                    offset: self.i,
                    what: "short \\u escape",
                })?;
                let lower_hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
                if !(h[0] == b'0' && h[1] == b'0' && h.iter().all(lower_hex)) {
                    return self.fail("\\u escape only for control characters, in lowercase hex");
                }
                let v = (hex_val(h[2]) << 4) | hex_val(h[3]);
                if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return self.fail("character escaped that must not be, or has a short escape");
                }
                self.i += 6;
                Ok(())
            }
            _ => self.fail("escape not used by the canonical form"),
        }
    }

    /// An array (the cursor is on `[`).
    pub(crate) fn array(&mut self, depth: usize) -> Result<(), CanonicalError> {
        self.i += 1;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.fail("expected ',' or ']'"),
            }
        }
    }

    /// An object (the cursor is on `{`).
    pub(crate) fn object(&mut self, depth: usize) -> Result<(), CanonicalError> {
        self.i += 1;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut prev: Option<&[u8]> = None;
        loop {
            if self.peek() != Some(b'"') {
                return self.fail("expected a key");
            }
            let at = self.i;
            let key = self.string()?;
            if key.iter().any(|c| *c == b'\\' || !c.is_ascii()) {
                return Err(CanonicalError {
                    offset: at,
                    what: "object keys must be plain ASCII",
                });
            }
            if prev.is_some_and(|p| p >= key) {
                return Err(CanonicalError {
                    offset: at,
                    what: "object keys not in sorted order, or repeated",
                });
            }
            prev = Some(key);
            if self.peek() != Some(b':') {
                return self.fail("expected ':'");
            }
            self.i += 1;
            self.value(depth + 1)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.fail("expected ',' or '}'"),
            }
        }
    }
}

/// The first index at or after `i` whose byte is `"`, `\\`, a control
/// character or not ASCII, or `b.len()` if there is none.
pub(crate) fn skip_plain(b: &[u8], i: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the build targets SSE2 (the cfg above; every x86-64 CPU has
    // it), which is all the function requires.
    let i = match unsafe { sse2::skip_plain(b, i) } {
        Ok(found) => return found,
        Err(rest) => rest,
    };
    skip_plain_swar(b, i)
}

/// [`skip_plain`] eight bytes at a time, then byte by byte (the reference
/// for the vector version, and the only one off x86-64).
pub(crate) fn skip_plain_swar(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Flags bytes below n (n <= 128). Bytes above a flagged one may be
    // flagged wrongly, never below it: the lowest flag is exact.
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w8 = [0u8; 8];
        w8.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w8);
        let special = below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | (w & HIGH);
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c) {
            return i;
        }
        i += 1;
    }
    i
}

/// Sixteen bytes at a time with SSE2, which every x86-64 CPU has (no
/// runtime detection needed). Strings in leaves are mostly 10 to 70 bytes:
/// wider vectors would mostly be cut short by the closing quote.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// `Ok(index)` of the first special byte found, or `Err(index)` where
    /// fewer than 16 bytes are left to look at.
    #[target_feature(enable = "sse2")]
    pub(super) fn skip_plain(b: &[u8], mut i: usize) -> Result<usize, usize> {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let space = _mm_set1_epi8(0x20);
        while let Some(chunk) = b.get(i..i + 16) {
            // SAFETY: `chunk` is 16 readable bytes and an unaligned load
            // has no alignment requirement.
            let x = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
            // Signed compare: below 0x20 as i8 is both the control
            // characters (0x00..=0x1f) and every byte >= 0x80.
            let special = _mm_or_si128(
                _mm_cmplt_epi8(x, space),
                _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
            );
            let bits = _mm_movemask_epi8(special) as u32;
            if bits != 0 {
                return Ok(i + bits.trailing_zeros() as usize);
            }
            i += 16;
        }
        Err(i)
    }
}

/// Whether decimal `digits` (no sign, no leading zero) are at most 2^53 - 1.
fn safe_magnitude(digits: &[u8]) -> bool {
    digits.len() < 16
        || (digits.len() == 16
            && digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
                <= crate::leaf::MAX_SAFE_INT)
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use proptest::prelude::*;

    /// Bytes that are mostly plain, with every kind of special byte.
    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                8 => 0x20u8..0x7f,
                1 => Just(b'"'),
                1 => Just(b'\\'),
                1 => 0u8..0x20,
                1 => 0x7fu8..=0xff,
            ],
            0..80,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The vector scan stops exactly where the eight-byte one and the
        /// byte-by-byte definition do, from every start.
        #[test]
        fn skip_plain_agrees_with_the_reference(b in arb_bytes(), from in any::<prop::sample::Index>()) {
            let i = from.index(b.len() + 1);
            let want = (i..b.len())
                .find(|&j| matches!(b[j], b'"' | b'\\' | 0..=0x1f | 0x80..=0xff))
                .unwrap_or(b.len());
            prop_assert_eq!(super::skip_plain_swar(&b, i), want);
            prop_assert_eq!(super::skip_plain(&b, i), want);
        }
    }

    #[test]
    fn accepts_canonical() {
        for ok in [
            r#"{"a":1,"b":[true,false,null,"x\n\u001f\"\\"],"c":{}}"#,
            "-5",
            "0",
            r#""é""#,
            "[]",
            r#"{"":0}"#,
        ] {
            assert!(check(ok.as_bytes()).is_ok(), "{ok}");
        }
        assert!(check("\"\u{7f}\"".as_bytes()).is_ok());
    }

    #[test]
    fn rejects_non_canonical() {
        for bad in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"a": 1}"#,
            " 1",
            "1 ",
            "01",
            "-0",
            "1.0",
            "1e3",
            r#""\/""#,
            r#""\u0041""#,
            r#""\u007f""#,
            r#""\u000a""#,
            r#""\u001F""#,
            "\"\t\"",
            r#"{"\u0061":1}"#,
            "[1,]",
            "{",
            "tru",
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
