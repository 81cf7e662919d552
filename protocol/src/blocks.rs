//! Pixel blocks: the unit a verifier samples, proves and re-renders.
//!
//! A tile is cut into blocks of [`BLOCK_SIZE`] × [`BLOCK_SIZE`] pixels on its own grid
//! (from its top-left corner, the last row and column of blocks clipped at the tile's
//! edge), numbered row-major. A block's hash is BLAKE3 derive-key [`BLOCK_CONTEXT`] over
//! its canonical bytes; a tile's hash (what its commitment leaf binds) is the Merkle root
//! over its blocks' hashes in block order, with inner nodes BLAKE3 derive-key
//! [`BLOCK_NODE_CONTEXT`] over `left ‖ right` (domain-separated from leaves, from block
//! hashes and from the batch tree's nodes). The block count follows from the tile's
//! width and height, which the leaf binds, so one sampled block is proved against the
//! signed batch root with its bytes, its block proof and its leaf's proof, without the
//! tile's other pixels.

use crate::canonical::crop;
use crate::types::{Digest, TileRect};
use rs_merkle::{MerkleProof, MerkleTree};
use serde::{Deserialize, Serialize};

/// The side of a block, in pixels.
pub const BLOCK_SIZE: u32 = 8;

/// Derive-key context of block hashes.
pub const BLOCK_CONTEXT: &str = "tessera v3 block";

/// Derive-key context of the inner nodes of a tile's block tree.
pub const BLOCK_NODE_CONTEXT: &str = "tessera v3 block node";

/// rs_merkle hasher for the inner nodes of a tile's block tree.
#[derive(Clone)]
pub struct BlockNodeHasher;

impl rs_merkle::Hasher for BlockNodeHasher {
    type Hash = Digest;

    fn hash(data: &[u8]) -> Digest {
        blake3::derive_key(BLOCK_NODE_CONTEXT, data)
    }
}

/// One block of a node's round: the leaf (its index among the node's leaves of the
/// round, ordered by batch id then position) and the block's index in that leaf's tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    /// Index among the node's leaves of the round.
    pub leaf: u32,
    /// Index of the block in its tile (row-major).
    pub block: u32,
}

impl std::fmt::Display for BlockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leaf {} block {}", self.leaf, self.block)
    }
}

/// Blocks across and down a tile.
pub fn blocks_across(tile: TileRect) -> (u32, u32) {
    (tile.w.div_ceil(BLOCK_SIZE), tile.h.div_ceil(BLOCK_SIZE))
}

/// How many blocks a tile has.
pub fn n_blocks(tile: TileRect) -> u32 {
    let (bx, by) = blocks_across(tile);
    bx * by
}

/// Block `block` of `tile`, relative to the tile's top-left corner; `None` when the tile
/// has no such block.
pub fn local_rect(tile: TileRect, block: u32) -> Option<TileRect> {
    let (bx, by) = blocks_across(tile);
    if block >= bx * by {
        return None;
    }
    let (x, y) = ((block % bx) * BLOCK_SIZE, (block / bx) * BLOCK_SIZE);
    Some(TileRect {
        x,
        y,
        w: BLOCK_SIZE.min(tile.w - x),
        h: BLOCK_SIZE.min(tile.h - y),
    })
}

/// Block `block` of `tile` in frame coordinates (what a renderer renders); `None` when
/// the tile has no such block.
pub fn block_rect(tile: TileRect, block: u32) -> Option<TileRect> {
    local_rect(tile, block).map(|r| TileRect {
        x: tile.x + r.x,
        y: tile.y + r.y,
        ..r
    })
}

/// The block of `tile` holding the pixel at `(x, y)` relative to the tile's corner
/// (which must lie inside the tile).
pub fn block_at(tile: TileRect, x: u32, y: u32) -> u32 {
    let (bx, _) = blocks_across(tile);
    (y / BLOCK_SIZE) * bx + x / BLOCK_SIZE
}

/// The canonical bytes of block `block`, cut from the canonical bytes of `tile`; `None`
/// when the bytes are not the tile's length or the block does not exist.
pub fn block_bytes(tile_bytes: &[u8], tile: TileRect, block: u32) -> Option<Vec<u8>> {
    crop(tile_bytes, tile.w, tile.h, local_rect(tile, block)?)
}

/// The hash of one block's canonical bytes.
pub fn block_hash(block_bytes: &[u8]) -> Digest {
    blake3::derive_key(BLOCK_CONTEXT, block_bytes)
}

/// The hashes of all of a tile's blocks, in block order; `None` when the bytes are not
/// `tile.canonical_len()` long (or the tile is empty).
pub fn block_hashes(tile_bytes: &[u8], tile: TileRect) -> Option<Vec<Digest>> {
    if tile_bytes.len() != tile.canonical_len() || tile.w == 0 || tile.h == 0 {
        return None;
    }
    (0..n_blocks(tile))
        .map(|b| block_bytes(tile_bytes, tile, b).map(|bytes| block_hash(&bytes)))
        .collect()
}

/// The root over block hashes in block order; `None` for none.
pub fn block_root(hashes: &[Digest]) -> Option<Digest> {
    MerkleTree::<BlockNodeHasher>::from_leaves(hashes).root()
}

/// A tile's hash: the root over its blocks' hashes; `None` when the bytes are not the
/// tile's canonical length.
pub fn tile_hash(tile_bytes: &[u8], tile: TileRect) -> Option<Digest> {
    block_root(&block_hashes(tile_bytes, tile)?)
}

/// The proof of block `block` among `hashes` (a tile's block hashes): the sibling hashes
/// rs_merkle needs, in its order; `None` when the tile has no such block. (The proof of
/// the one block of a one-block tile is empty, so an empty proof cannot stand for "no
/// block".)
pub fn prove_block(hashes: &[Digest], block: u32) -> Option<Vec<Digest>> {
    if block as usize >= hashes.len() {
        return None;
    }
    Some(
        MerkleTree::<BlockNodeHasher>::from_leaves(hashes)
            .proof(&[block as usize])
            .proof_hashes()
            .to_vec(),
    )
}

/// Whether `hash` is block `block` of a tile whose hash is `tile_hash` and which has
/// `n` blocks.
pub fn verify_block(
    tile_hash: &Digest,
    block: u32,
    hash: &Digest,
    n: u32,
    proof: &[Digest],
) -> bool {
    if block >= n {
        return false;
    }
    MerkleProof::<BlockNodeHasher>::new(proof.to_vec()).verify(
        *tile_hash,
        &[block as usize],
        &[*hash],
        n as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that differ from block to block (a hash of the position).
    fn bytes_of(tile: TileRect, salt: u8) -> Vec<u8> {
        (0..tile.canonical_len())
            .map(|i| blake3::hash(&(i as u64).to_le_bytes()).as_bytes()[0] ^ salt)
            .collect()
    }

    #[test]
    fn blocks_are_clipped_at_the_tile_edge() {
        let tile = TileRect {
            x: 64,
            y: 128,
            w: 20,
            h: 9,
        };
        assert_eq!(blocks_across(tile), (3, 2));
        assert_eq!(n_blocks(tile), 6);
        assert_eq!(
            block_rect(tile, 2),
            Some(TileRect {
                x: 80,
                y: 128,
                w: 4,
                h: 8
            })
        );
        assert_eq!(
            block_rect(tile, 5),
            Some(TileRect {
                x: 80,
                y: 136,
                w: 4,
                h: 1
            })
        );
        assert_eq!(block_rect(tile, 6), None);
        assert_eq!(block_at(tile, 19, 8), 5);
        assert_eq!(block_at(tile, 0, 7), 0);
    }

    #[test]
    fn a_tile_of_one_block_hashes_like_its_block_and_not_like_plain_blake3() {
        let tile = TileRect {
            x: 0,
            y: 0,
            w: 5,
            h: 3,
        };
        let b = bytes_of(tile, 1);
        assert_eq!(tile_hash(&b, tile), Some(block_hash(&b)));
        assert_ne!(block_hash(&b), *blake3::hash(&b).as_bytes());
        assert_eq!(tile_hash(&b[1..], tile), None);
    }

    /// The one block of a one-block tile has an empty proof; a block the tile does not
    /// have has none at all, not an empty one.
    #[test]
    fn a_missing_block_has_no_proof_and_a_lone_block_an_empty_one() {
        let tile = TileRect {
            x: 0,
            y: 0,
            w: 8,
            h: 8,
        };
        let hashes = block_hashes(&bytes_of(tile, 2), tile).unwrap();
        assert_eq!(hashes.len(), 1);
        let lone = prove_block(&hashes, 0).unwrap();
        assert!(lone.is_empty());
        assert!(verify_block(&hashes[0], 0, &hashes[0], 1, &lone));
        assert_eq!(prove_block(&hashes, 1), None);
        assert_eq!(prove_block(&[], 0), None);
    }

    proptest! {
        /// Every block's bytes, proved alone, reach the tile hash; the blocks cover the
        /// tile exactly once; any changed byte, block index or proof hash fails.
        #[test]
        fn every_block_proves_against_its_tile(w in 1u32..70, h in 1u32..70, flip in 0usize..4096, salt in any::<u8>()) {
            let tile = TileRect { x: 16, y: 8, w, h };
            let bytes = bytes_of(tile, salt);
            let hashes = block_hashes(&bytes, tile).unwrap();
            let n = n_blocks(tile);
            prop_assert_eq!(hashes.len() as u32, n);
            let root = tile_hash(&bytes, tile).unwrap();
            let mut covered = 0u64;
            for b in 0..n {
                let r = block_rect(tile, b).unwrap();
                covered += r.pixels();
                let bb = block_bytes(&bytes, tile, b).unwrap();
                prop_assert_eq!(bb.len(), r.canonical_len());
                let proof = prove_block(&hashes, b).unwrap();
                prop_assert!(verify_block(&root, b, &block_hash(&bb), n, &proof));
                let mut bad = bb.clone();
                let i = flip % bad.len();
                bad[i] ^= 1;
                prop_assert!(!verify_block(&root, b, &block_hash(&bad), n, &proof));
                if n > 1 {
                    prop_assert!(!verify_block(&root, (b + 1) % n, &block_hash(&bb), n, &proof));
                    let mut bad_proof = proof.clone();
                    bad_proof[0][i % 32] ^= 1;
                    prop_assert!(!verify_block(&root, b, &block_hash(&bb), n, &bad_proof));
                }
                for (y, x) in (0..r.h).flat_map(|y| (0..r.w).map(move |x| (y, x))) {
                    prop_assert_eq!(block_at(tile, r.x - tile.x + x, r.y - tile.y + y), b);
                }
            }
            prop_assert_eq!(covered, tile.pixels());
            prop_assert_eq!(prove_block(&hashes, n), None);
            // A changed byte anywhere changes the tile hash.
            let mut changed = bytes.clone();
            let i = flip % changed.len();
            changed[i] ^= 0x80;
            prop_assert_ne!(tile_hash(&changed, tile), Some(root));
        }
    }
}
