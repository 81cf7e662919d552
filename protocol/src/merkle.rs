//! The domain-separated BLAKE3 Merkle tree, on top of rs_merkle with a custom hasher.
//!
//! Leaves are already domain-separated ([`crate::canonical::LEAF_CONTEXT`]); inner nodes are
//! BLAKE3 derive-key [`NODE_CONTEXT`] over `left ‖ right`. rs_merkle promotes the last node
//! of an odd level unchanged, so the root of one leaf is that leaf: every signed statement
//! therefore carries the leaf count too.

use crate::types::Digest;
use rs_merkle::{MerkleProof, MerkleTree};

/// Derive-key context of inner Merkle nodes.
pub const NODE_CONTEXT: &str = "tessera v1 merkle node";

/// rs_merkle hasher for inner nodes.
#[derive(Clone)]
pub struct NodeHasher;

impl rs_merkle::Hasher for NodeHasher {
    type Hash = Digest;

    fn hash(data: &[u8]) -> Digest {
        blake3::derive_key(NODE_CONTEXT, data)
    }
}

/// Root over `leaves` in the given order; `None` for no leaves.
pub fn root(leaves: &[Digest]) -> Option<Digest> {
    MerkleTree::<NodeHasher>::from_leaves(leaves).root()
}

/// A multi-proof for leaves at `indices` (ascending, distinct) of `leaves`:
/// the sibling hashes rs_merkle needs, in its order.
pub fn prove(leaves: &[Digest], indices: &[usize]) -> Vec<Digest> {
    MerkleTree::<NodeHasher>::from_leaves(leaves)
        .proof(indices)
        .proof_hashes()
        .to_vec()
}

/// Check that `leaf_hashes` sit at `indices` (ascending, distinct, same length) in a tree
/// of `total` leaves whose root is `root`.
pub fn verify(
    root: &Digest,
    indices: &[usize],
    leaf_hashes: &[Digest],
    total: usize,
    proof: &[Digest],
) -> bool {
    if indices.len() != leaf_hashes.len()
        || indices.is_empty()
        || indices.windows(2).any(|w| w[0] >= w[1])
        || indices.last().is_some_and(|&i| i >= total)
    {
        return false;
    }
    MerkleProof::<NodeHasher>::new(proof.to_vec()).verify(*root, indices, leaf_hashes, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n as u32)
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect()
    }

    #[test]
    fn inner_nodes_are_domain_separated() {
        let l = leaves(2);
        let mut cat = l[0].to_vec();
        cat.extend_from_slice(&l[1]);
        assert_eq!(root(&l).unwrap(), blake3::derive_key(NODE_CONTEXT, &cat));
        assert_ne!(root(&l).unwrap(), *blake3::hash(&cat).as_bytes());
    }

    proptest! {
        #[test]
        fn proofs_verify_and_tampering_fails(n in 1usize..200, picks in proptest::collection::btree_set(0usize..200, 1..8), flip in 0usize..32) {
            let l = leaves(n);
            let idx: Vec<usize> = picks.into_iter().filter(|&i| i < n).collect();
            prop_assume!(!idx.is_empty());
            let r = root(&l).unwrap();
            let proof = prove(&l, &idx);
            let picked: Vec<Digest> = idx.iter().map(|&i| l[i]).collect();
            prop_assert!(verify(&r, &idx, &picked, n, &proof));
            // A changed leaf fails.
            let mut bad = picked.clone();
            bad[0][flip] ^= 1;
            prop_assert!(!verify(&r, &idx, &bad, n, &proof));
            // A changed root fails.
            let mut bad_root = r;
            bad_root[flip] ^= 0x80;
            prop_assert!(!verify(&bad_root, &idx, &picked, n, &proof));
            // A changed proof hash fails.
            if !proof.is_empty() {
                let mut bad_proof = proof.clone();
                bad_proof[0][flip] ^= 1;
                prop_assert!(!verify(&r, &idx, &picked, n, &bad_proof));
            }
        }

        #[test]
        fn root_changes_with_order_and_count(n in 2usize..100) {
            let l = leaves(n);
            let mut swapped = l.clone();
            swapped.swap(0, n - 1);
            prop_assert_ne!(root(&l), root(&swapped));
            prop_assert_ne!(root(&l), root(&l[..n - 1]));
        }
    }
}
