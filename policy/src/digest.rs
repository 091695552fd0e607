//! The bundle digest: SHA-256 over the canonical bundle contents.
//!
//! Canonical form: the decision-relevant files (schema, members, every
//! `.cedar` file; not tests or READMEs), sorted by bundle-relative path with
//! `/` separators, each framed as `path NUL length(u64, big endian) bytes`.
//! The framing makes the encoding injective: no two different bundles hash
//! the same input. Bytes are taken as they are on disk.

use std::fmt;

use ring::digest::{Context, SHA256};

/// SHA-256 of a bundle; displayed as `sha256:<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BundleDigest([u8; 32]);

impl BundleDigest {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Digest a list of `(relative path, contents)`; order does not matter.
    pub(crate) fn of_files(files: &[(String, Vec<u8>)]) -> Self {
        let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ctx = Context::new(&SHA256);
        for (path, bytes) in sorted {
            ctx.update(path.as_bytes());
            ctx.update(&[0]);
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }
}

impl fmt::Display for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_framed() {
        let a = vec![
            ("a".to_owned(), b"x".to_vec()),
            ("b".to_owned(), b"y".to_vec()),
        ];
        let b = vec![
            ("b".to_owned(), b"y".to_vec()),
            ("a".to_owned(), b"x".to_vec()),
        ];
        assert_eq!(BundleDigest::of_files(&a), BundleDigest::of_files(&b));
        // Moving a byte between path and content must change the digest.
        let c = vec![
            ("ax".to_owned(), b"".to_vec()),
            ("b".to_owned(), b"y".to_vec()),
        ];
        assert_ne!(BundleDigest::of_files(&a), BundleDigest::of_files(&c));
        assert!(BundleDigest::of_files(&a)
            .to_string()
            .starts_with("sha256:"));
    }
}
