//! Sampling that nobody can steer: per-node seeds from revealed nonces, and the tile indices
//! drawn from a ChaCha20 stream. An auditor recomputes both from the bundle.

use crate::canonical::JobId;
use crate::keys::PublicKey;
use crate::types::Digest;
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

/// Draw `min(k, n)` distinct indices in `0..n`, returned ascending.
///
/// Exact algorithm (so that other implementations agree): a ChaCha20 stream keyed by
/// `seed` (rand_chacha's `ChaCha20Rng::from_seed`, words little-endian); a partial
/// Fisher–Yates shuffle of `[0, 1, …, n−1]`: for `i` in `0..k`, draw `j` uniformly in
/// `i..n` and swap positions `i` and `j`; the first `k` entries, sorted, are the sample.
/// A uniform draw in `0..m` takes `x = next_u64()` and rejects `x ≥ 2^64 − (2^64 mod m)`,
/// else returns `x mod m`.
pub fn sample_indices(seed: &Digest, n: u32, k: u32) -> Vec<u32> {
    if k >= n {
        return (0..n).collect();
    }
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let mut pool: Vec<u32> = (0..n).collect();
    for i in 0..k as usize {
        let span = u64::from(n) - i as u64;
        let j = i + uniform_below(&mut rng, span) as usize;
        pool.swap(i, j);
    }
    let mut picked = pool[..k as usize].to_vec();
    picked.sort_unstable();
    picked
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

    proptest! {
        #[test]
        fn indices_are_distinct_sorted_in_range(seed in any::<[u8; 32]>(), n in 0u32..500, k in 0u32..200) {
            let idx = sample_indices(&seed, n, k);
            prop_assert_eq!(idx.len() as u32, k.min(n));
            prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(idx.iter().all(|&i| i < n));
            prop_assert_eq!(idx, sample_indices(&seed, n, k));
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

    #[test]
    fn draws_are_roughly_uniform() {
        // 4000 draws of 1 out of 10: each index about 400 times.
        let mut counts = [0u32; 10];
        for s in 0u32..4000 {
            let seed = *blake3::hash(&s.to_le_bytes()).as_bytes();
            counts[sample_indices(&seed, 10, 1)[0] as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (320..480).contains(&c)),
            "{counts:?}"
        );
    }
}
