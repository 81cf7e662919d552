//! Sampling that nobody can steer: per-node seeds from revealed nonces, and the pixel
//! blocks drawn from a ChaCha20 stream. An auditor recomputes both from the bundle.

use crate::blocks::{block_at, n_blocks, BlockRef};
use crate::canonical::JobId;
use crate::keys::PublicKey;
use crate::types::{Digest, TileRect};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Derive-key context of sample seeds.
pub const SAMPLE_CONTEXT: &str = "tessera v1 sample";

/// The commitment to a nonce, as it goes into the manifest: plain BLAKE3 of the nonce.
pub fn nonce_commitment(nonce: &Digest) -> Digest {
    *blake3::hash(nonce).as_bytes()
}

/// Seed = BLAKE3-derive-key([`SAMPLE_CONTEXT`], round root ‖ nonce ‖ job id ‖ node key).
pub fn sample_seed(
    round_root: &Digest,
    nonce: &Digest,
    job_id: &JobId,
    node: &PublicKey,
) -> Digest {
    let mut h = blake3::Hasher::new_derive_key(SAMPLE_CONTEXT);
    h.update(round_root);
    h.update(nonce);
    h.update(job_id);
    h.update(&node.0);
    *h.finalize().as_bytes()
}

/// The blocks a node's round leaves hold: Σ over `tiles` (the node's leaves' rectangles,
/// in leaf order) of their block counts.
pub fn committed_blocks(tiles: &[TileRect]) -> u64 {
    tiles.iter().map(|&t| u64::from(n_blocks(t))).sum()
}

/// The blocks sampled from a node's round leaves (`tiles`: their rectangles, in leaf
/// order) for a check of size `k`, ascending by (leaf, block).
///
/// Every block when the leaves hold at most `k` blocks. Otherwise `k` pixels drawn
/// uniformly, with replacement, from all the leaves' pixels, and the distinct blocks
/// that hold them. So a node that forged a fraction `f` of its pixels (of its
/// pixel-work: every pixel has the job's spp) escapes with probability `(1 − f)^k`
/// exactly, however it placed them, and the verifier re-renders at most `k` blocks.
/// Drawing further (a larger `k` from the same seed) gives a superset.
///
/// Exact algorithm (so that other implementations agree): a ChaCha20 stream keyed by
/// `seed` (rand_chacha's `ChaCha20Rng::from_seed`, words little-endian); `k` times, a
/// uniform draw `p` in `0..W` (W = the leaves' pixels), where a uniform draw in `0..m`
/// takes `x = next_u64()` and rejects `x ≥ 2^64 − (2^64 mod m)`, else returns `x mod m`;
/// `p` is the pixel `p − P_i` of leaf `i` (P_i the pixels of the leaves before it),
/// row-major in the leaf's tile, and picks the block holding it
/// ([`crate::blocks::block_at`]).
pub fn sample_blocks(seed: &Digest, tiles: &[TileRect], k: u32) -> Vec<BlockRef> {
    if committed_blocks(tiles) <= u64::from(k) {
        return tiles
            .iter()
            .enumerate()
            .flat_map(|(leaf, &t)| {
                (0..n_blocks(t)).map(move |block| BlockRef {
                    leaf: leaf as u32,
                    block,
                })
            })
            .collect();
    }
    // starts[i] = pixels of the leaves before leaf i.
    let mut starts = Vec::with_capacity(tiles.len());
    let mut total = 0u64;
    for t in tiles {
        starts.push(total);
        total += t.pixels();
    }
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let mut picked = std::collections::BTreeSet::new();
    for _ in 0..k {
        let p = uniform_below(&mut rng, total);
        let leaf = starts.partition_point(|&s| s <= p) - 1;
        let t = tiles[leaf];
        let local = p - starts[leaf];
        let (x, y) = (
            (local % u64::from(t.w)) as u32,
            (local / u64::from(t.w)) as u32,
        );
        picked.insert(BlockRef {
            leaf: leaf as u32,
            block: block_at(t, x, y),
        });
    }
    picked.into_iter().collect()
}

fn uniform_below(rng: &mut ChaCha20Rng, m: u64) -> u64 {
    // zone = 2^64 - (2^64 mod m), computed without overflow.
    let rem = (u64::MAX % m + 1) % m;
    loop {
        let x = rng.next_u64();
        if rem == 0 || x < u64::MAX - rem + 1 {
            return x % m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tiles(sizes: &[(u32, u32)]) -> Vec<TileRect> {
        sizes
            .iter()
            .map(|&(w, h)| TileRect { x: 0, y: 0, w, h })
            .collect()
    }

    proptest! {
        #[test]
        fn blocks_are_distinct_sorted_in_range_and_grow_with_k(
            seed in any::<[u8; 32]>(),
            sizes in proptest::collection::vec((1u32..100, 1u32..100), 0..12),
            k in 0u32..200,
        ) {
            let t = tiles(&sizes);
            let picked = sample_blocks(&seed, &t, k);
            let n = committed_blocks(&t);
            if n <= u64::from(k) {
                prop_assert_eq!(picked.len() as u64, n);
            } else {
                prop_assert!(picked.len() <= k as usize);
                prop_assert_eq!(picked.is_empty(), k == 0);
            }
            prop_assert!(picked.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(picked.iter().all(|b| (b.leaf as usize) < t.len() && b.block < n_blocks(t[b.leaf as usize])));
            prop_assert_eq!(&picked, &sample_blocks(&seed, &t, k));
            // Drawing further keeps every block of the smaller draw (escalation's superset).
            let more = sample_blocks(&seed, &t, k.saturating_mul(3));
            prop_assert!(picked.iter().all(|b| more.contains(b)));
        }

        #[test]
        fn seed_depends_on_every_input(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), flip in 0usize..32) {
            let node = PublicKey([7; 32]);
            let base = sample_seed(&a, &b, &[1; 16], &node);
            let mut a2 = a; a2[flip] ^= 1;
            let mut b2 = b; b2[flip] ^= 1;
            let mut node2 = node; node2.0[flip] ^= 1;
            prop_assert_ne!(base, sample_seed(&a2, &b, &[1; 16], &node));
            prop_assert_ne!(base, sample_seed(&a, &b2, &[1; 16], &node));
            prop_assert_ne!(base, sample_seed(&a, &b, &[2; 16], &node));
            prop_assert_ne!(base, sample_seed(&a, &b, &[1; 16], &node2));
        }
    }

    /// Draws follow pixels, not blocks: of a leaf of 64 × 64 pixels (64 blocks) and one of
    /// 1 × 1 (1 block), the small one is drawn about 1/4097 of the time, not 1/65.
    #[test]
    fn draws_are_weighted_by_pixels() {
        let t = tiles(&[(64, 64), (1, 1)]);
        let mut small = 0;
        let mut counts = [0u32; 64];
        for s in 0u32..4000 {
            let seed = *blake3::hash(&s.to_le_bytes()).as_bytes();
            for b in sample_blocks(&seed, &t, 1) {
                if b.leaf == 1 {
                    small += 1;
                } else {
                    counts[b.block as usize] += 1;
                }
            }
        }
        assert!(
            small <= 5,
            "the 1-pixel leaf was drawn {small} times of 4000"
        );
        // Each block of the big leaf about 62 times.
        assert!(counts.iter().all(|&c| (30..100).contains(&c)), "{counts:?}");
    }

    /// A node that forged a fraction f of its pixels is caught (a forged pixel drawn) at
    /// the rate 1 − (1 − f)^k, whatever the shape of the forgery: here the forged pixels
    /// are whole blocks of the first leaf, f = 1/8, k = 8: 1 − (7/8)^8 ≈ 0.656.
    #[test]
    fn detection_follows_the_forged_pixel_fraction() {
        let t = tiles(&[(64, 64), (64, 64)]);
        // Forged: blocks 0..16 of leaf 0, 1024 of 8192 pixels.
        let forged = |b: &BlockRef| b.leaf == 0 && b.block < 16;
        let runs = 4000;
        let caught = (0u32..runs)
            .filter(|s| {
                let seed = *blake3::hash(&s.to_le_bytes()).as_bytes();
                sample_blocks(&seed, &t, 8).iter().any(forged)
            })
            .count() as f64
            / f64::from(runs);
        let want = 1.0 - (7.0f64 / 8.0).powi(8);
        // 99.9 % interval of a binomial proportion at n = 4000: ± 3.3 σ, σ ≈ 0.0075.
        assert!(
            (caught - want).abs() < 0.025,
            "caught {caught}, predicted {want}"
        );
    }
}
