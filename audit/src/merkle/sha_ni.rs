//! SHA-256 of leaves and tree nodes with the x86-64 SHA extensions, used
//! only for the hashes of the tree (`merkle::leaf_hash`, `node_hash`,
//! `LeafHashes`) when the CPU has them; everything else, and every CPU
//! without them, uses ring.
//!
//! Why not ring here: verification hashes every leaf (about 550 bytes)
//! and about one node per leaf. ring's block function is as fast as this
//! one, but each call goes through its streaming `Context` (the 1-byte
//! `0x00` prefix is buffered, the state copied out, the output formatted),
//! about 50 ns per leaf and 90 ns per node, a fifth of all hashing. And
//! ring hashes one message at a time, while SHA-NI's round instruction has
//! a latency that leaves room for a second, independent message: hashing
//! two leaves at once is 15–20% faster again. Both measured on the 1M-entry
//! bench log (docs/audit-format.md §6). The code is the standard SHA-NI
//! sequence (Intel's reference; the same as the `sha2` crate's), checked
//! against ring by property tests in `merkle::tests` and
//! `tests/merkle_vectors.rs` for every length up to several blocks.

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_extract_epi32, _mm_loadu_si128,
    _mm_set_epi32, _mm_set_epi64x, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32,
    _mm_sha256rnds2_epu32, _mm_shuffle_epi32, _mm_shuffle_epi8,
};

use super::Hash;

/// Proof that this CPU has the instructions the functions below use.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShaNi(());

impl ShaNi {
    /// `Some` when the CPU has SHA, SSSE3 and SSE4.1 (std caches the
    /// answer: a load and a test).
    #[inline]
    pub(super) fn detect() -> Option<Self> {
        (std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1"))
        .then_some(Self(()))
    }

    /// `SHA-256(prefix ‖ data)`.
    pub(super) fn prefixed(self, prefix: u8, data: &[u8]) -> Hash {
        let p = Padded::new(Some(prefix), data);
        let mut s = H0;
        for seg in p.segments() {
            // SAFETY: `self` exists only when `detect` found the features
            // `compress1` is compiled for.
            unsafe { compress1(&mut s, seg) };
        }
        output(&s)
    }

    /// `SHA-256(prefix ‖ a)` and `SHA-256(prefix ‖ b)`, computed together.
    pub(super) fn prefixed_pair(self, prefix: u8, a: &[u8], b: &[u8]) -> (Hash, Hash) {
        self.pair(&Padded::new(Some(prefix), a), &Padded::new(Some(prefix), b))
    }

    /// `SHA-256(a)` and `SHA-256(b)`, computed together.
    pub(super) fn plain_pair(self, a: &[u8], b: &[u8]) -> (Hash, Hash) {
        self.pair(&Padded::new(None, a), &Padded::new(None, b))
    }

    fn pair(self, pa: &Padded<'_>, pb: &Padded<'_>) -> (Hash, Hash) {
        let (sega, segb) = (pa.segments(), pb.segments());
        let (mut sa, mut sb) = (H0, H0);
        // Walk both block sequences in step, in runs that lie inside one
        // segment of each; the longer message finishes alone.
        let (mut ia, mut oa, mut ib, mut ob) = (0, 0, 0, 0);
        loop {
            while ia < 3 && oa == sega[ia].len() {
                (ia, oa) = (ia + 1, 0);
            }
            while ib < 3 && ob == segb[ib].len() {
                (ib, ob) = (ib + 1, 0);
            }
            if ia == 3 || ib == 3 {
                break;
            }
            let n = (sega[ia].len() - oa).min(segb[ib].len() - ob);
            // SAFETY: as in `prefixed`.
            unsafe {
                compress2(
                    &mut sa,
                    &sega[ia][oa..oa + n],
                    &mut sb,
                    &segb[ib][ob..ob + n],
                )
            };
            (oa, ob) = (oa + n, ob + n);
        }
        for (s, seg, i, o) in [(&mut sa, &sega, ia, oa), (&mut sb, &segb, ib, ob)] {
            if i < 3 {
                // SAFETY: as in `prefixed`.
                unsafe { compress1(s, &seg[i][o..]) };
                for rest in &seg[i + 1..] {
                    // SAFETY: as in `prefixed`.
                    unsafe { compress1(s, rest) };
                }
            }
        }
        (output(&sa), output(&sb))
    }

    /// `SHA-256(0x01 ‖ left ‖ right)`: two blocks, padding included.
    pub(super) fn node(self, left: &Hash, right: &Hash) -> Hash {
        let mut b = [0u8; 128];
        b[0] = 1;
        b[1..33].copy_from_slice(left);
        b[33..65].copy_from_slice(right);
        b[65] = 0x80;
        b[120..].copy_from_slice(&(65u64 * 8).to_be_bytes());
        let mut s = H0;
        // SAFETY: as in `prefixed`.
        unsafe { compress1(&mut s, &b) };
        output(&s)
    }
}

/// The padded message `prefix ‖ data ‖ 0x80 ‖ 0… ‖ bit length` as up to
/// three runs of whole blocks: the first block (copied when it starts with
/// a prefix), the middle ones read where they are, and the last one or two
/// (copied, with the padding).
struct Padded<'a> {
    head: [u8; 64],
    head_len: usize,
    mid: &'a [u8],
    tail: [u8; 128],
    tail_len: usize,
}

impl<'a> Padded<'a> {
    fn new(prefix: Option<u8>, data: &'a [u8]) -> Self {
        let total = data.len() as u64 + u64::from(prefix.is_some());
        let bits = total.wrapping_mul(8);
        let mut head = [0u8; 64];
        let mut tail = [0u8; 128];
        let (head_len, mid, rest, mut n) = match prefix {
            None => {
                let whole = data.len() - data.len() % 64;
                (0, &data[..whole], &data[whole..], 0)
            }
            Some(p) => match data.split_first_chunk::<63>() {
                Some((first, rest)) => {
                    head[0] = p;
                    head[1..].copy_from_slice(first);
                    let whole = rest.len() - rest.len() % 64;
                    (64, &rest[..whole], &rest[whole..], 0)
                }
                None => {
                    tail[0] = p;
                    (0, &data[..0], data, 1)
                }
            },
        };
        // `n + rest.len()` is at most 63, so the padding ends within the
        // 128 bytes.
        tail[n..n + rest.len()].copy_from_slice(rest);
        n += rest.len();
        tail[n] = 0x80;
        n += 1;
        let tail_len = if n + 8 <= 64 { 64 } else { 128 };
        tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
        Self {
            head,
            head_len,
            mid,
            tail,
            tail_len,
        }
    }

    fn segments(&self) -> [&[u8]; 3] {
        [
            &self.head[..self.head_len],
            self.mid,
            &self.tail[..self.tail_len],
        ]
    }
}

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The round constants, four per group of rounds.
const K: [[u32; 4]; 16] = [
    [0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5],
    [0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5],
    [0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3],
    [0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174],
    [0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc],
    [0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da],
    [0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7],
    [0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967],
    [0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13],
    [0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85],
    [0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3],
    [0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070],
    [0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5],
    [0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3],
    [0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208],
    [0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2],
];

fn output(s: &[u32; 8]) -> Hash {
    let mut h = [0u8; 32];
    for (out, w) in h.chunks_exact_mut(4).zip(s) {
        out.copy_from_slice(&w.to_be_bytes());
    }
    h
}

/// The state as the two registers SHA-NI works on (ABEF, CDGH).
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn load_state(s: &[u32; 8]) -> (__m128i, __m128i) {
    let lo = _mm_set_epi32(s[3] as i32, s[2] as i32, s[1] as i32, s[0] as i32);
    let hi = _mm_set_epi32(s[7] as i32, s[6] as i32, s[5] as i32, s[4] as i32);
    let cdab = _mm_shuffle_epi32(lo, 0xB1);
    let efgh = _mm_shuffle_epi32(hi, 0x1B);
    (
        _mm_alignr_epi8(cdab, efgh, 8),
        _mm_blend_epi16(efgh, cdab, 0xF0),
    )
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn store_state(s: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
    let feba = _mm_shuffle_epi32(abef, 0x1B);
    let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    let (dcba, hgef) = (
        _mm_blend_epi16(feba, dchg, 0xF0),
        _mm_alignr_epi8(dchg, feba, 8),
    );
    // Once per message: lane by lane, no store through a pointer needed.
    *s = [
        _mm_extract_epi32::<0>(dcba) as u32,
        _mm_extract_epi32::<1>(dcba) as u32,
        _mm_extract_epi32::<2>(dcba) as u32,
        _mm_extract_epi32::<3>(dcba) as u32,
        _mm_extract_epi32::<0>(hgef) as u32,
        _mm_extract_epi32::<1>(hgef) as u32,
        _mm_extract_epi32::<2>(hgef) as u32,
        _mm_extract_epi32::<3>(hgef) as u32,
    ];
}

/// Message words `4i..4i+4` of a block, as big-endian integers.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn words(block: &[u8; 64], i: usize) -> __m128i {
    let swap = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
    // SAFETY: bytes 16i..16i+16 of the 64-byte block are readable (i < 4
    // at every call site); the load is unaligned.
    let x = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * i).cast()) };
    _mm_shuffle_epi8(x, swap)
}

/// The next four message words from the previous sixteen.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
    let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
    _mm_sha256msg2_epu32(t, w3)
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn k(i: usize) -> __m128i {
    let k = K[i];
    _mm_set_epi32(k[3] as i32, k[2] as i32, k[1] as i32, k[0] as i32)
}

/// Four rounds on each of the given lanes `(abef, cdgh, words)`.
macro_rules! rounds4 {
    ($i:expr, $( ($abef:ident, $cdgh:ident, $w:ident) ),+) => {{
        let k = k($i);
        $(
            let t = _mm_add_epi32($w, k);
            $cdgh = _mm_sha256rnds2_epu32($cdgh, $abef, t);
            $abef = _mm_sha256rnds2_epu32($abef, $cdgh, _mm_shuffle_epi32(t, 0x0E));
        )+
    }};
}

/// All 64 rounds of one block on each lane `(abef, cdgh, [w0, w1, w2, w3])`,
/// the lanes' instructions interleaved.
macro_rules! block {
    ($( ($abef:ident, $cdgh:ident, [$w0:ident, $w1:ident, $w2:ident, $w3:ident]) ),+) => {{
        rounds4!(0, $(($abef, $cdgh, $w0)),+);
        rounds4!(1, $(($abef, $cdgh, $w1)),+);
        rounds4!(2, $(($abef, $cdgh, $w2)),+);
        rounds4!(3, $(($abef, $cdgh, $w3)),+);
        let mut i = 4;
        while i < 16 {
            $( $w0 = schedule($w0, $w1, $w2, $w3); )+
            rounds4!(i, $(($abef, $cdgh, $w0)),+);
            $( $w1 = schedule($w1, $w2, $w3, $w0); )+
            rounds4!(i + 1, $(($abef, $cdgh, $w1)),+);
            $( $w2 = schedule($w2, $w3, $w0, $w1); )+
            rounds4!(i + 2, $(($abef, $cdgh, $w2)),+);
            $( $w3 = schedule($w3, $w0, $w1, $w2); )+
            rounds4!(i + 3, $(($abef, $cdgh, $w3)),+);
            i += 4;
        }
    }};
}

/// Compress whole 64-byte blocks into `state` (a trailing partial block
/// is never passed: callers hand whole padded blocks).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress1(state: &mut [u32; 8], blocks: &[u8]) {
    let (mut abef, mut cdgh) = load_state(state);
    for b in blocks.chunks_exact(64) {
        let Ok(b) = <&[u8; 64]>::try_from(b) else {
            break;
        };
        let (abef0, cdgh0) = (abef, cdgh);
        let (mut w0, mut w1, mut w2, mut w3) = (words(b, 0), words(b, 1), words(b, 2), words(b, 3));
        block!((abef, cdgh, [w0, w1, w2, w3]));
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    store_state(state, abef, cdgh);
}

/// [`compress1`] on two messages at once (`a` and `b` of equal length).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress2(sa: &mut [u32; 8], a: &[u8], sb: &mut [u32; 8], b: &[u8]) {
    let (mut abef, mut cdgh) = load_state(sa);
    let (mut abef2, mut cdgh2) = load_state(sb);
    for (x, y) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
        let (Ok(x), Ok(y)) = (<&[u8; 64]>::try_from(x), <&[u8; 64]>::try_from(y)) else {
            break;
        };
        let (s0, s1, s2, s3) = (abef, cdgh, abef2, cdgh2);
        let (mut w0, mut w1, mut w2, mut w3) = (words(x, 0), words(x, 1), words(x, 2), words(x, 3));
        let (mut v0, mut v1, mut v2, mut v3) = (words(y, 0), words(y, 1), words(y, 2), words(y, 3));
        block!(
            (abef, cdgh, [w0, w1, w2, w3]),
            (abef2, cdgh2, [v0, v1, v2, v3])
        );
        abef = _mm_add_epi32(abef, s0);
        cdgh = _mm_add_epi32(cdgh, s1);
        abef2 = _mm_add_epi32(abef2, s2);
        cdgh2 = _mm_add_epi32(cdgh2, s3);
    }
    store_state(sa, abef, cdgh);
    store_state(sb, abef2, cdgh2);
}
