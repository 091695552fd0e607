#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! RFC 6962 test vectors and differential tests against `ct-merkle` and `tlog_tiles`.

use base64::Engine as _;
use proptest::prelude::*;
use stele_audit::memory_tree::MemoryTree;
use stele_audit::merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, root_of, verify_consistency,
    verify_inclusion, Hash, ProofError,
};

fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// The leaves of the RFC 6962 §2.1.3 / certificate-transparency test tree.
fn rfc_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect()
}

fn tree(leaves: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(leaf_hash(l));
    }
    t
}

#[test]
fn empty_and_hello_world() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        b64(&leaf_hash(b"hello world")),
        "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0="
    );
}

#[test]
fn rfc6962_roots() {
    // Roots of the first n leaves (from the certificate-transparency reference tests).
    let expected = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves = rfc_leaves();
    for (n, want) in expected.iter().enumerate() {
        let hashes: Vec<Hash> = leaves[..=n].iter().map(|l| leaf_hash(l)).collect();
        assert_eq!(
            hex::encode(root_of(&hashes)),
            *want,
            "root of {} leaves",
            n + 1
        );
    }
}

#[test]
fn rfc6962_inclusion_paths() {
    let t = tree(&rfc_leaves());
    let cases: &[(u64, u64, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let leaves = rfc_leaves();
    for (idx, size, want) in cases {
        let p = inclusion_proof(&t, *idx, *size).unwrap();
        let got: Vec<String> = p.iter().map(hex::encode).collect();
        assert_eq!(got, *want, "path({idx}, {size})");
        let hashes: Vec<Hash> = leaves[..*size as usize]
            .iter()
            .map(|l| leaf_hash(l))
            .collect();
        let root = root_of(&hashes);
        verify_inclusion(&leaf_hash(&leaves[*idx as usize]), *idx, *size, &p, &root).unwrap();
    }
}

#[test]
fn rfc6962_consistency_proofs() {
    let t = tree(&rfc_leaves());
    let cases: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let leaves = rfc_leaves();
    let root_n = |n: u64| {
        root_of(
            &leaves[..n as usize]
                .iter()
                .map(|l| leaf_hash(l))
                .collect::<Vec<_>>(),
        )
    };
    for (m, n, want) in cases {
        let p = consistency_proof(&t, *m, *n).unwrap();
        let got: Vec<String> = p.iter().map(hex::encode).collect();
        assert_eq!(got, *want, "proof({m}, {n})");
        verify_consistency(*m, *n, &root_n(*m), &root_n(*n), &p).unwrap();
    }
}

#[test]
fn wrong_proofs_fail() {
    let t = tree(&rfc_leaves());
    let leaves = rfc_leaves();
    let root = t.root();
    let mut p = inclusion_proof(&t, 3, 8).unwrap();
    assert!(verify_inclusion(&leaf_hash(&leaves[3]), 3, 8, &p, &root).is_ok());
    assert_eq!(
        verify_inclusion(&leaf_hash(&leaves[4]), 3, 8, &p, &root),
        Err(ProofError::RootMismatch)
    );
    assert!(verify_inclusion(&leaf_hash(&leaves[3]), 8, 8, &p, &root).is_err());
    p.pop();
    assert!(verify_inclusion(&leaf_hash(&leaves[3]), 3, 8, &p, &root).is_err());
}

/// tlog_tiles stores hashes in Go's layout; we only need its reader.
struct TlogStore(Vec<tlog_tiles::tlog::Hash>);

impl tlog_tiles::tlog::HashReader for TlogStore {
    fn read_hashes(
        &self,
        idx: &[u64],
    ) -> Result<Vec<tlog_tiles::tlog::Hash>, tlog_tiles::tlog::Error> {
        Ok(idx.iter().map(|i| self.0[*i as usize]).collect())
    }
}

fn data(i: u64) -> Vec<u8> {
    format!("leaf-{i}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn differential_against_ct_merkle_and_tlog_tiles(size in 1u64..3000, a in any::<u64>(), b in any::<u64>()) {
        let mut ours = MemoryTree::new();
        let mut ct: ct_merkle::mem_backed_tree::MemoryBackedTree<sha2::Sha256, Vec<u8>> = ct_merkle::mem_backed_tree::MemoryBackedTree::new();
        let mut tl = TlogStore(Vec::new());
        for i in 0..size {
            ours.push(leaf_hash(&data(i)));
            ct.push(data(i));
            let new = tlog_tiles::tlog::stored_hashes(i, &data(i), &tl).unwrap();
            tl.0.extend(new);
        }
        let root = ours.root();
        let ct_root = ct.root();
        prop_assert_eq!(&root[..], &ct_root.as_bytes()[..]);
        prop_assert_eq!(root, tlog_tiles::tlog::tree_hash(size, &tl).unwrap().0);

        let idx = a % size;
        let p = inclusion_proof(&ours, idx, size).unwrap();
        let flat: Vec<u8> = p.iter().flatten().copied().collect();
        let ct_p = ct.prove_inclusion(idx as usize);
        prop_assert_eq!(&flat[..], ct_p.as_bytes());
        let tp: Vec<[u8; 32]> = tlog_tiles::tlog::prove_record(size, idx, &tl).unwrap().into_iter().map(|h| h.0).collect();
        prop_assert_eq!(&p, &tp);
        prop_assert!(verify_inclusion(&leaf_hash(&data(idx)), idx, size, &p, &root).is_ok());

        let old = 1 + b % size;
        let c = consistency_proof(&ours, old, size).unwrap();
        let tc: Vec<[u8; 32]> = tlog_tiles::tlog::prove_tree(size, old, &tl).unwrap().into_iter().map(|h| h.0).collect();
        prop_assert_eq!(&c, &tc);
        if old < size {
            let flat: Vec<u8> = c.iter().flatten().copied().collect();
            let ct_c = ct.prove_consistency((size - old) as usize);
            prop_assert_eq!(&flat[..], ct_c.as_bytes());
        }
        let old_root = root_of(&(0..old).map(|i| leaf_hash(&data(i))).collect::<Vec<_>>());
        prop_assert!(verify_consistency(old, size, &old_root, &root, &c).is_ok());
        if old < size {
            let mut bad = root;
            bad[0] ^= 1;
            prop_assert!(verify_consistency(old, size, &old_root, &bad, &c).is_err());
        }
    }
}

/// The reference hashes: ring and, independently, the `sha2` crate.
fn reference_leaf(l: &[u8]) -> Hash {
    use sha2::Digest as _;
    let ring = stele_audit::merkle::ring_leaf_hash(l);
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(l);
    assert_eq!(ring.as_slice(), h.finalize().as_slice());
    ring
}

/// Every length across the padding boundaries of the first few blocks
/// (the fast path copies the first and last blocks and reads the middle in
/// place), one at a time and in pairs of every two lengths; plain
/// SHA-256 of pairs likewise.
#[test]
fn leaf_and_node_hashes_match_ring_at_every_length() {
    let msgs: Vec<Vec<u8>> = (0..300usize)
        .map(|n| (0..n).map(|i| (i * 7 + n) as u8).collect())
        .collect();
    for a in &msgs {
        assert_eq!(leaf_hash(a), reference_leaf(a), "length {}", a.len());
    }
    for a in &msgs {
        for b in msgs.iter().step_by(7) {
            let (ha, hb) = stele_audit::merkle::leaf_hash_pair(a, b);
            assert_eq!((ha, hb), (reference_leaf(a), reference_leaf(b)));
        }
    }
    let plain = |m: &[u8]| stele_audit::export::layout::sha256(m);
    for a in &msgs {
        for b in msgs.iter().step_by(5) {
            let (ha, hb) = stele_audit::merkle::sha256_pair(a, b);
            assert_eq!((ha, hb), (plain(a), plain(b)), "{} {}", a.len(), b.len());
        }
    }
    let (l, r) = ([7u8; 32], [9u8; 32]);
    assert_eq!(
        stele_audit::merkle::node_hash(&l, &r),
        stele_audit::merkle::ring_node_hash(&l, &r)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Leaf hashes, alone and in pairs, plain SHA-256 in pairs and node
    /// hashes agree with ring
    /// for any bytes, up to leaves of several kilobytes.
    #[test]
    fn fast_hashes_agree_with_ring(
        a in proptest::collection::vec(any::<u8>(), 0..5000),
        b in proptest::collection::vec(any::<u8>(), 0..700),
        l in any::<[u8; 32]>(), r in any::<[u8; 32]>(),
    ) {
        prop_assert_eq!(leaf_hash(&a), reference_leaf(&a));
        let (ha, hb) = stele_audit::merkle::leaf_hash_pair(&a, &b);
        prop_assert_eq!(ha, reference_leaf(&a));
        prop_assert_eq!(hb, reference_leaf(&b));
        let (hb2, ha2) = stele_audit::merkle::leaf_hash_pair(&b, &a);
        prop_assert_eq!((ha2, hb2), (ha, hb));
        let (pa, pb) = stele_audit::merkle::sha256_pair(&a, &b);
        prop_assert_eq!(pa, stele_audit::export::layout::sha256(&a));
        prop_assert_eq!(pb, stele_audit::export::layout::sha256(&b));
        prop_assert_eq!(
            stele_audit::merkle::node_hash(&l, &r),
            stele_audit::merkle::ring_node_hash(&l, &r)
        );
    }
}
