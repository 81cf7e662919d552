//! The numbers of `tessera simulate`: deterministic draws, the Wilson score interval, the
//! predicted detection rate, and the counters a job adds to.

use serde::Serialize;
use tessera_protocol::tolerance::{Band, TileMetrics};
use tessera_protocol::Digest;

/// BLAKE3 of the parts, each prefixed by its length (so that no two lists of parts
/// collide).
pub fn digest(parts: &[&[u8]]) -> Digest {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
        buf.extend_from_slice(p);
    }
    *blake3::hash(&buf).as_bytes()
}

/// A uniform number in [0, 1) from the 8 bytes of `d` at word `word` (0..4), with 53 bits.
pub fn unit(d: &Digest, word: usize) -> f64 {
    let at = (word % 4) * 8;
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A 64-bit seed from a digest, for [`mix_unit`].
pub fn unit_seed(d: &Digest) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// A uniform number in [0, 1) for item `i` of a stream seeded by `seed` (SplitMix64's
/// finalizer: cheap, for per-value noise where a BLAKE3 call per value is too slow).
pub fn mix_unit(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// z of a two-sided 99 % normal interval.
pub const Z_99: f64 = 2.575_829_303_548_900_4;

/// The Wilson score interval of `successes` out of `trials` at normal quantile `z`:
/// (low, high), inside [0, 1]. No trials: (0, 1).
pub fn wilson(successes: u64, trials: u64, z: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At the ends the interval reaches 0 or 1 exactly; rounding must not cut it short.
    let low = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if successes >= trials {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

/// The expectation of [`catch_probability`] for whole tiles forged at random (the
/// `tiles` shape, before the forgeries are drawn): the chance that a check of `k` draws
/// catches a node that committed `n` tiles of the same size, `blocks` blocks in all, and
/// forged each tile independently with probability `f`. Given m forged tiles the forged fraction of its work is m/n, and the
/// sampling (`sampling::sample_blocks`: k pixels drawn with replacement) misses it with
/// probability (1 − m/n)^k; so 1 − Σ_m C(n, m) f^m (1 − f)^(n−m) (1 − m/n)^k. When the node
/// committed at most k blocks every block is checked: 1 − (1 − f)^n. Per job the
/// guarantee is DESIGN.md's: a forged fraction ≥ f of the work is caught with probability
/// ≥ 1 − (1 − f)^k; the sum is that averaged over the jobs' forged fractions.
pub fn predicted_detection(f: f64, k: u32, n: u32, blocks: u64) -> f64 {
    if n == 0 || f <= 0.0 {
        return 0.0;
    }
    if f >= 1.0 {
        return 1.0;
    }
    if blocks <= u64::from(k) {
        return 1.0 - (1.0 - f).powi(n as i32);
    }
    // P(m) by the binomial recursion, in logs so that large n do not underflow.
    let (ln_f, ln_q) = (f.ln(), (1.0 - f).ln());
    let mut ln_pm = f64::from(n) * ln_q;
    let mut missed = 0.0;
    for m in 0..=n {
        if m > 0 {
            ln_pm += (f64::from(n - m + 1) / f64::from(m)).ln() + ln_f - ln_q;
        }
        let escape = (1.0 - f64::from(m) / f64::from(n)).powi(k as i32);
        missed += ln_pm.exp() * escape;
    }
    (1.0 - missed).clamp(0.0, 1.0)
}

/// The chance that a check drawing `k` pixels catches a node whose forged pixels lie in
/// blocks covering `touched` of the `committed` pixels it committed in the round
/// (`committed_blocks` blocks): 1 − (1 − q)^k with q = touched / committed, since
/// `sampling::sample_blocks` draws k pixels uniformly with replacement and re-renders the
/// blocks holding them; 1 when every block is taken (`committed_blocks` ≤ k) and a
/// forged pixel exists; 0 when none does. Exact for the sampling; it assumes the
/// comparison flags every sampled block that holds a forged pixel.
pub fn catch_probability(touched: u64, committed: u64, k: u32, committed_blocks: u64) -> f64 {
    if touched == 0 || committed == 0 {
        return 0.0;
    }
    if committed_blocks <= u64::from(k) || touched >= committed {
        return 1.0;
    }
    let q = touched as f64 / committed as f64;
    // 1 − (1 − q)^k without the cancellation of a tiny q.
    -(f64::from(k) * (-q).ln_1p()).exp_m1()
}

/// Fixed-point scale of the per-job catch probabilities a [`Tally`] sums (2^53: every
/// f64 in [0, 1] to its last bit), so that the sum does not depend on the order jobs
/// are added in.
pub const CATCH_SCALE: f64 = 9_007_199_254_740_992.0;

/// Sample tiles by the band the verifier put them in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bands {
    /// Byte-identical.
    pub r#match: u64,
    /// Different bytes inside the pass limits.
    pub close: u64,
    /// Between the limits.
    pub ambiguous: u64,
    /// Beyond the fail limits.
    pub far: u64,
}

impl Bands {
    /// Count one sample of `band`.
    pub fn add_one(&mut self, band: Band) {
        match band {
            Band::Match => self.r#match += 1,
            Band::Close => self.close += 1,
            Band::Ambiguous => self.ambiguous += 1,
            Band::Far => self.far += 1,
        }
    }

    fn add(&mut self, o: &Bands) {
        self.r#match += o.r#match;
        self.close += o.close;
        self.ambiguous += o.ambiguous;
        self.far += o.far;
    }
}

/// Sums of the metrics of some sampled blocks or verdict aggregates, and their bands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricSums {
    /// How many.
    pub n: u64,
    /// By band.
    pub bands: Bands,
    /// Sum of the diverged-pixel fractions, ppm.
    pub diverged_ppm: u64,
    /// Sum of the PSNRs, centi-dB.
    pub psnr_cdb: u64,
    /// Sum of the ꟻLIP means, ppm.
    pub flip_mean_ppm: u64,
}

impl MetricSums {
    /// Count one block or aggregate.
    pub fn add_one(&mut self, band: Band, m: &TileMetrics) {
        self.n += 1;
        self.bands.add_one(band);
        self.diverged_ppm += u64::from(m.diverged_ppm);
        self.psnr_cdb += u64::from(m.psnr_cdb);
        self.flip_mean_ppm += u64::from(m.flip_mean_ppm);
    }

    fn add(&mut self, o: &MetricSums) {
        self.n += o.n;
        self.bands.add(&o.bands);
        self.diverged_ppm += o.diverged_ppm;
        self.psnr_cdb += o.psnr_cdb;
        self.flip_mean_ppm += o.flip_mean_ppm;
    }

    /// The bands and mean metrics.
    pub fn judged(&self) -> Judged {
        let mean = |x: u64| {
            if self.n == 0 {
                0.0
            } else {
                x as f64 / self.n as f64
            }
        };
        Judged {
            n: self.n,
            bands: self.bands,
            mean_diverged_ppm: mean(self.diverged_ppm),
            mean_psnr_db: mean(self.psnr_cdb) / 100.0,
            mean_flip_mean_ppm: mean(self.flip_mean_ppm),
        }
    }
}

/// How some sampled blocks or verdict aggregates were judged: their bands and mean
/// metrics (the tolerance's limits are on these metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Judged {
    /// How many.
    pub n: u64,
    /// By band.
    pub bands: Bands,
    /// Mean diverged-pixel fraction, ppm.
    pub mean_diverged_ppm: f64,
    /// Mean PSNR, dB (100 for identical bytes).
    pub mean_psnr_db: f64,
    /// Mean of the ꟻLIP means, ppm.
    pub mean_flip_mean_ppm: f64,
}

/// What the cheaters forged, over all jobs, counted over the tiles each committed in
/// round 0 (the work its first check samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forged {
    /// Pixels committed.
    pub committed_pixels: u64,
    /// Pixel-samples committed (pixels × spp).
    pub committed_samples: u64,
    /// Tiles holding a forged pixel.
    pub tiles: u64,
    /// Pixels whose value is not the honest one.
    pub pixels: u64,
    /// Claimed pixel-samples not behind the delivered values.
    pub samples: u64,
    /// Committed pixels in blocks that hold a forged pixel.
    pub touched_pixels: u64,
    /// Sum over jobs of the chance that the first check samples a forged pixel
    /// ([`catch_probability`]), in units of 1 / [`CATCH_SCALE`].
    pub catch_fixed: u128,
}

impl Forged {
    fn add(&mut self, o: &Forged) {
        self.committed_pixels += o.committed_pixels;
        self.committed_samples += o.committed_samples;
        self.tiles += o.tiles;
        self.pixels += o.pixels;
        self.samples += o.samples;
        self.touched_pixels += o.touched_pixels;
        self.catch_fixed += o.catch_fixed;
    }
}

/// Ledger totals over every job, micro-credits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Money {
    /// Clients' escrows.
    pub escrowed: u64,
    /// Paid to nodes on a pass.
    pub paid_on_pass: u64,
    /// Held back, then released at the end of the job.
    pub held_back: u64,
    /// Released hold-backs.
    pub released: u64,
    /// Slashed stake.
    pub slashed: u64,
    /// Escrow refunded for tiles never accepted.
    pub refunded: u64,
    /// Slashed from cheaters.
    pub slashed_cheaters: u64,
    /// Earned (paid + released) by cheaters.
    pub earned_by_cheaters: u64,
    /// Jobs whose ledger did not sum to zero (must be 0).
    pub unbalanced_jobs: u64,
    /// Sum of every job's ledger balances (must be 0).
    pub total: i64,
}

impl Money {
    fn add(&mut self, o: &Money) {
        self.escrowed += o.escrowed;
        self.paid_on_pass += o.paid_on_pass;
        self.held_back += o.held_back;
        self.released += o.released;
        self.slashed += o.slashed;
        self.refunded += o.refunded;
        self.slashed_cheaters += o.slashed_cheaters;
        self.earned_by_cheaters += o.earned_by_cheaters;
        self.unbalanced_jobs += o.unbalanced_jobs;
        self.total += o.total;
    }
}

/// What jobs add up to; integers only, so the sum is the same in any order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs run.
    pub jobs: u64,
    /// Cheaters whose round ended in a fail.
    pub detected: u64,
    /// Cheaters whose round ended inconclusive.
    pub cheater_inconclusive: u64,
    /// Cheaters that forged no pixel at all (drawn so; counted among the cheaters).
    pub cheaters_without_forgery: u64,
    /// Tiles cheaters forged a pixel of.
    pub forged_tiles: u64,
    /// What the cheaters forged, and the predicted chance to sample it.
    pub forged: Forged,
    /// Cheaters whose first check sampled a block holding a forged pixel.
    pub forged_sampled: u64,
    /// The sampled blocks holding a forged pixel, every check of a cheater.
    pub forged_blocks: MetricSums,
    /// The aggregates of the cheaters' first checks that sampled a forged pixel.
    pub forged_first_aggregates: MetricSums,
    /// The aggregates of the cheaters' escalated checks.
    pub escalated_aggregates: MetricSums,
    /// Forged tiles accepted (their cheater passed).
    pub forged_accepted: u64,
    /// Honest node-rounds judged.
    pub honest_rounds: u64,
    /// Honest node-rounds that ended in a fail.
    pub honest_fails: u64,
    /// Honest node-rounds that ended inconclusive.
    pub honest_inconclusive: u64,
    /// Honest node-rounds of the other class.
    pub other_class_rounds: u64,
    /// First checks that escalated.
    pub escalations: u64,
    /// … of them on honest nodes.
    pub honest_escalations: u64,
    /// Pixels nodes rendered (every round, forged ones included; every pixel has the
    /// job's spp, so this is pixel-samples / spp).
    pub rendered: u64,
    /// Pixels verifiers re-rendered (the sampled blocks of every check, escalations
    /// included).
    pub rerendered: u64,
    /// Rounds beyond the first (re-renders of failed nodes' tiles).
    pub extra_rounds: u64,
    /// Samples by band, every check.
    pub bands: Bands,
    /// Samples of the honest other-class node by band.
    pub other_class_bands: Bands,
    /// Ledger totals.
    pub money: Money,
}

impl Tally {
    /// Add another tally.
    pub fn add(&mut self, o: &Tally) {
        self.jobs += o.jobs;
        self.detected += o.detected;
        self.cheater_inconclusive += o.cheater_inconclusive;
        self.cheaters_without_forgery += o.cheaters_without_forgery;
        self.forged_tiles += o.forged_tiles;
        self.forged.add(&o.forged);
        self.forged_sampled += o.forged_sampled;
        self.forged_blocks.add(&o.forged_blocks);
        self.forged_first_aggregates.add(&o.forged_first_aggregates);
        self.escalated_aggregates.add(&o.escalated_aggregates);
        self.forged_accepted += o.forged_accepted;
        self.honest_rounds += o.honest_rounds;
        self.honest_fails += o.honest_fails;
        self.honest_inconclusive += o.honest_inconclusive;
        self.other_class_rounds += o.other_class_rounds;
        self.escalations += o.escalations;
        self.honest_escalations += o.honest_escalations;
        self.rendered += o.rendered;
        self.rerendered += o.rerendered;
        self.extra_rounds += o.extra_rounds;
        self.bands.add(&o.bands);
        self.other_class_bands.add(&o.other_class_bands);
        self.money.add(&o.money);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 50 of 100 at 95 %: 0.4038..0.5962 (Wilson 1927; any statistics table).
        let (lo, hi) = wilson(50, 100, 1.959_963_984_540_054);
        assert!(
            (lo - 0.403_831).abs() < 1e-5 && (hi - 0.596_169).abs() < 1e-5,
            "{lo} {hi}"
        );
        // 9950 of 10000 at 99 %: 0.992826..0.996517.
        let (lo, hi) = wilson(9_950, 10_000, Z_99);
        assert!(
            (lo - 0.992_826).abs() < 1e-6 && (hi - 0.996_517).abs() < 1e-6,
            "{lo} {hi}"
        );
    }

    #[test]
    fn wilson_reaches_the_ends_and_stays_inside() {
        assert_eq!(wilson(0, 0, Z_99), (0.0, 1.0));
        let (lo, hi) = wilson(0, 2_000, Z_99);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.0 && hi < 0.005, "{hi}");
        let (lo, hi) = wilson(2_000, 2_000, Z_99);
        assert_eq!(hi, 1.0);
        assert!(lo > 0.995 && lo < 1.0, "{lo}");
        for x in [1, 7, 500, 1999] {
            let (lo, hi) = wilson(x, 2_000, Z_99);
            let p = x as f64 / 2_000.0;
            assert!(0.0 <= lo && lo < p && p < hi && hi <= 1.0);
        }
    }

    #[test]
    fn prediction_is_the_sampling_formula_averaged_over_forged_tiles() {
        assert_eq!(predicted_detection(0.0, 135, 160, 640), 0.0);
        assert_eq!(predicted_detection(1.0, 1, 160, 640), 1.0);
        // Values of the sum worked out apart (Python, exact binomials).
        let p = predicted_detection(0.05, 135, 160, 640);
        assert!((p - 0.990_606_414_6).abs() < 1e-9, "{p}");
        let p = predicted_detection(0.01, 135, 160, 640);
        assert!((p - 0.600_502_129_0).abs() < 1e-9, "{p}");
        // Few blocks: all are checked, and only a node that forged nothing escapes.
        let p = predicted_detection(0.05, 135, 10, 40);
        assert!((p - (1.0 - 0.95f64.powi(10))).abs() < 1e-12, "{p}");
        // With many tiles the sum tends to DESIGN.md's 1 − (1 − f)^k (0.999 at f = 0.05,
        // k = 135): the forged fraction concentrates on f.
        let p = predicted_detection(0.05, 135, 100_000, 400_000);
        assert!(p > 0.9989 && p < 0.9991, "{p}");
    }

    #[test]
    fn the_catch_probability_is_the_sampling_formula() {
        // Values worked out apart: Python, exact rationals, 1 - (1 - Fraction(t, n))**k
        // printed with 40 digits.
        for (touched, committed, k, want) in [
            // Three blocks of 64 pixels of 160 tiles of 16 × 16 pixels.
            (192, 163_840, 135, 0.146_402_830_219_051_6),
            // 32 whole tiles of the 160: q = 5 %, DESIGN.md's 1 − 0.95^135.
            (8_192, 163_840, 135, 0.999_016_698_472_089_4),
            // One block of 160 tiles of 64 × 64, and one pixel (a tiny q).
            (64, 655_360, 135, 0.013_097_706_163_330_34),
            (1, 655_360, 135, 0.000_205_972_594_236_580_2),
            // 10 tiles of 64 × 64 at a new node's k.
            (40_960, 655_360, 270, 0.999_999_972_945_181_3),
        ] {
            let p = catch_probability(touched, committed, k, committed / 64);
            assert!(
                (p - want).abs() <= 1e-15 * want.max(1e-3),
                "{touched}/{committed} k {k}: {p}, want {want}"
            );
        }
        // Nothing forged is never caught; every block taken catches any forgery.
        assert_eq!(catch_probability(0, 163_840, 135, 640), 0.0);
        assert_eq!(catch_probability(1, 8_192, 135, 128), 1.0);
        assert_eq!(catch_probability(5, 5, 1, 640), 1.0);
    }

    #[test]
    fn draws_are_uniform_enough() {
        let mut below = 0;
        for i in 0u32..20_000 {
            if unit(&digest(&[b"t", &i.to_le_bytes()]), 0) < 0.05 {
                below += 1;
            }
        }
        // 1000 expected; 99.99 % of draws fall within ±4σ (σ ≈ 31).
        assert!((875..1125).contains(&below), "{below}");
        let mean: f64 = (0..10_000).map(|i| mix_unit(7, i)).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
