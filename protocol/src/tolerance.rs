//! Cross-class tolerance: how a re-render is judged when its bytes differ from the
//! committed tile (another determinism class, or a defect inside one class).
//!
//! The verifier measures four numbers per tile ([`TileMetrics`], computed in
//! `tessera-verifier`'s `tolerance` module) and this module sorts them into a [`Band`]
//! with the thresholds of a [`Tolerance`], which the signed job manifest carries. Every
//! number is an integer (parts per million, centi-decibels) so that a verdict signs them
//! exactly and an auditor re-derives each band from the bundle alone.
//!
//! The default thresholds come from `tessera calibrate` (docs/CALIBRATION.md gives the
//! measurements and the margins).

use crate::canonical::FieldWriter;
use serde::{Deserialize, Serialize};

/// PSNR reported for identical tiles (and the cap for all others), in centi-dB: 100 dB.
pub const PSNR_CAP_CDB: u32 = 10_000;

/// The metrics of one re-rendered tile against the tile it is checked against.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TileMetrics {
    /// Pixels whose linear RGB diverged beyond the pixel tolerance, parts per million of
    /// the tile's pixels.
    pub diverged_ppm: u32,
    /// PSNR of the linear RGB values (peak 1.0), centi-dB, capped at [`PSNR_CAP_CDB`].
    pub psnr_cdb: u32,
    /// Mean of the LDR ꟻLIP error map of the tone-mapped tiles, parts per million.
    pub flip_mean_ppm: u32,
    /// 99th percentile (nearest rank) of the ꟻLIP error map, parts per million.
    pub flip_p99_ppm: u32,
}

impl TileMetrics {
    /// The metrics of two identical tiles.
    pub const IDENTICAL: TileMetrics = TileMetrics {
        diverged_ppm: 0,
        psnr_cdb: PSNR_CAP_CDB,
        flip_mean_ppm: 0,
        flip_p99_ppm: 0,
    };

    pub(crate) fn write_fields(&self, w: &mut FieldWriter) {
        w.u32(self.diverged_ppm)
            .u32(self.psnr_cdb)
            .u32(self.flip_mean_ppm)
            .u32(self.flip_p99_ppm);
    }
}

/// One side of the bands: a tile is inside these limits when every metric is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Largest diverged-pixel fraction, ppm.
    pub max_diverged_ppm: u32,
    /// Smallest PSNR, centi-dB.
    pub min_psnr_cdb: u32,
    /// Largest ꟻLIP mean, ppm.
    pub max_flip_mean_ppm: u32,
    /// Largest ꟻLIP 99th percentile, ppm.
    pub max_flip_p99_ppm: u32,
}

impl Limits {
    /// The default per-block far limits ([`Tolerance::block_far`]), derived by
    /// `tessera calibrate` as of commit 2a92f0b (docs/CALIBRATION.md "Blocks";
    /// benches/results/calibration-mesa25.json, the Mesa 25 run): a block is far when
    /// more than 10 % of its pixels diverged (7 of 64) or its ꟻLIP mean exceeds 0.15.
    /// The starting point set by reasoning, 50 % diverged, let block forgeries through:
    /// of 48,860 blocks with a quarter or more of their pixels forged (fewer or cheaper
    /// samples, a blurred, replayed, copied or next-frame block), a node that forged one
    /// alone was paid for 960 and inconclusive for 3,716, since ~100 sampled blocks dilute
    /// 16 pixels below the aggregate's limits. At 10 % every one is far (×2.5 at the
    /// least) and caught. The honest lavapipe classes measured differ in no pixel of any
    /// block; the tile pass limit (6 pixels of a 64×64 tile: 9.4 % of one block) fits
    /// inside. PSNR and the ꟻLIP 99th percentile of 64 pixels are one pixel's error,
    /// which an honest firefly can reach, so they never make a block far on their own.
    pub const fn block_far_default() -> Limits {
        Limits {
            max_diverged_ppm: 100_000,
            min_psnr_cdb: 0,
            max_flip_mean_ppm: 150_000,
            max_flip_p99_ppm: 1_000_000,
        }
    }

    /// Whether every metric of `m` is within these limits.
    pub fn holds(&self, m: &TileMetrics) -> bool {
        m.diverged_ppm <= self.max_diverged_ppm
            && m.psnr_cdb >= self.min_psnr_cdb
            && m.flip_mean_ppm <= self.max_flip_mean_ppm
            && m.flip_p99_ppm <= self.max_flip_p99_ppm
    }

    fn write_fields(&self, w: &mut FieldWriter) {
        w.u32(self.max_diverged_ppm)
            .u32(self.min_psnr_cdb)
            .u32(self.max_flip_mean_ppm)
            .u32(self.max_flip_p99_ppm);
    }
}

/// How a re-render compares with the committed tile.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    /// Byte-identical.
    Match,
    /// Different bytes, every metric inside the pass limits: what two honest classes give.
    Close,
    /// Neither close nor far: escalated (more samples, a second verifier), never slashed on
    /// its own.
    Ambiguous,
    /// Some metric beyond the fail limits: what the cheat corpus gives.
    Far,
}

impl Band {
    /// The byte written when a verdict is signed.
    pub fn code(self) -> u8 {
        match self {
            Band::Match => 0,
            Band::Close => 1,
            Band::Ambiguous => 2,
            Band::Far => 3,
        }
    }
}

/// The tolerance policy: when a pixel counts as diverged, the two limits that cut the
/// bands, and how an ambiguous result escalates. Part of the signed job manifest.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tolerance {
    /// A pixel diverges when some channel has `|a − b| > abs + rel · max(|a|, |b|)`:
    /// the absolute part, ppm of 1.0.
    pub pixel_abs_ppm: u32,
    /// The relative part, ppm.
    pub pixel_rel_ppm: u32,
    /// Inside these limits a tile is [`Band::Close`].
    pub pass: Limits,
    /// Outside these limits (any metric) a tile, or a verdict's aggregate over its
    /// sampled blocks, is [`Band::Far`].
    pub fail: Limits,
    /// Outside these limits (any metric) one sampled block is [`Band::Far`] on its own:
    /// the per-block far test, which catches a forgery concentrated in a few blocks that
    /// the aggregate over all of a node's sampled blocks would dilute. Looser than `fail`
    /// (a block has 64 pixels; one honest firefly that two classes trace differently is
    /// 1.6 % of it).
    #[serde(default = "Limits::block_far_default")]
    pub block_far: Limits,
    /// An escalated check samples this many times the first k.
    pub escalation_multiplier: u32,
}

impl Default for Tolerance {
    /// The calibrated defaults: `tessera calibrate` on every sample scene in three
    /// lavapipe classes (docs/CALIBRATION.md; benches/results/calibration.json; the
    /// per-block far limits from benches/results/calibration-mesa25.json). The
    /// design's starting limits separate every forgery but sample-level cheats in nearly
    /// converged tiles (half spp in the white furnace changes 1 to 4 % of the pixels), so
    /// the diverged-pixel limits are tightened to catch those by a factor 2: honest classes
    /// may differ in 0.15 % of a tile's pixels. The lavapipe classes differ in none, so the
    /// pass limits are not measured on GPUs yet.
    fn default() -> Self {
        Self {
            pixel_abs_ppm: 2_000,
            pixel_rel_ppm: 20_000,
            pass: Limits {
                max_diverged_ppm: 1_500,
                min_psnr_cdb: 4_000,
                max_flip_mean_ppm: 10_000,
                max_flip_p99_ppm: 150_000,
            },
            fail: Limits {
                max_diverged_ppm: 5_000,
                min_psnr_cdb: 3_000,
                max_flip_mean_ppm: 25_000,
                max_flip_p99_ppm: 400_000,
            },
            block_far: Limits::block_far_default(),
            escalation_multiplier: 2,
        }
    }
}

/// Why a [`Tolerance`] is not a usable one ([`Tolerance::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ToleranceError {
    /// A pass limit is looser than its fail limit (the ambiguous band would be negative).
    #[error("tolerance: the pass limits must lie inside the fail limits")]
    PassOutsideFail,
    /// The escalation multiplier is under 2.
    #[error("tolerance: escalation_multiplier must be at least 2")]
    EscalationTooSmall {
        /// The multiplier found.
        multiplier: u32,
    },
}

impl Tolerance {
    /// The band of a tile: [`Band::Match`] when the bytes are equal, else by its metrics.
    pub fn band(&self, bytes_equal: bool, m: &TileMetrics) -> Band {
        if bytes_equal {
            Band::Match
        } else if self.pass.holds(m) {
            Band::Close
        } else if self.fail.holds(m) {
            Band::Ambiguous
        } else {
            Band::Far
        }
    }

    /// The band of one sampled block: [`Band::Match`] when the bytes are equal,
    /// [`Band::Far`] beyond the per-block far limits, else [`Band::Close`] (the verdict's
    /// aggregate over all sampled blocks judges what is neither).
    pub fn block_band(&self, bytes_equal: bool, m: &TileMetrics) -> Band {
        if bytes_equal {
            Band::Match
        } else if self.block_far.holds(m) {
            Band::Close
        } else {
            Band::Far
        }
    }

    /// Whether the pass limits lie inside the fail limits (the ambiguous band is not
    /// negative) and the escalation multiplier is at least 2.
    pub fn check(&self) -> Result<(), ToleranceError> {
        let (p, f) = (&self.pass, &self.fail);
        if p.max_diverged_ppm > f.max_diverged_ppm
            || p.min_psnr_cdb < f.min_psnr_cdb
            || p.max_flip_mean_ppm > f.max_flip_mean_ppm
            || p.max_flip_p99_ppm > f.max_flip_p99_ppm
        {
            return Err(ToleranceError::PassOutsideFail);
        }
        if self.escalation_multiplier < 2 {
            return Err(ToleranceError::EscalationTooSmall {
                multiplier: self.escalation_multiplier,
            });
        }
        Ok(())
    }

    /// Whether one channel pair diverges.
    pub fn diverges(&self, a: f32, b: f32) -> bool {
        let (a, b) = (finite(a), finite(b));
        let abs = f64::from(self.pixel_abs_ppm) / 1e6;
        let rel = f64::from(self.pixel_rel_ppm) / 1e6;
        (a - b).abs() > abs + rel * a.abs().max(b.abs())
    }

    pub(crate) fn write_fields(&self, w: &mut FieldWriter) {
        w.u32(self.pixel_abs_ppm).u32(self.pixel_rel_ppm);
        self.pass.write_fields(w);
        self.fail.write_fields(w);
        self.block_far.write_fields(w);
        w.u32(self.escalation_multiplier);
    }
}

fn finite(v: f32) -> f64 {
    if v.is_finite() {
        f64::from(v)
    } else {
        0.0
    }
}

/// The pure part of the metrics: diverged-pixel fraction and PSNR of `b` against `a`,
/// both linear RGB triples (the same length, a multiple of 3). ꟻLIP is computed by the
/// verifier crate, which links the reference implementation.
pub fn linear_metrics(t: &Tolerance, a: &[f32], b: &[f32]) -> (u32, u32) {
    let e = linear_errors(t, a, b);
    (e.diverged_ppm(), e.psnr_cdb())
}

/// The sums behind [`linear_metrics`], which add up over several images (a verdict's
/// aggregate over its sampled blocks).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinearErrors {
    /// Pixels compared.
    pub pixels: u64,
    /// Pixels that diverged ([`Tolerance::diverges`] in some channel).
    pub diverged: u64,
    /// Sum of squared differences over the RGB channels.
    pub squared: f64,
}

impl LinearErrors {
    /// Both sums together.
    pub fn add(&mut self, other: &LinearErrors) {
        self.pixels += other.pixels;
        self.diverged += other.diverged;
        self.squared += other.squared;
    }

    /// Diverged pixels, ppm of the pixels compared (rounded up; 0 when none).
    pub fn diverged_ppm(&self) -> u32 {
        if self.pixels == 0 {
            return 0;
        }
        (self.diverged * 1_000_000).div_ceil(self.pixels) as u32
    }

    /// PSNR (peak 1.0) in centi-dB, capped at [`PSNR_CAP_CDB`].
    pub fn psnr_cdb(&self) -> u32 {
        let mse = if self.pixels == 0 {
            0.0
        } else {
            self.squared / (self.pixels * 3) as f64
        };
        if mse <= 0.0 {
            PSNR_CAP_CDB
        } else {
            let db = 10.0 * (1.0 / mse).log10();
            (db * 100.0).floor().clamp(0.0, f64::from(PSNR_CAP_CDB)) as u32
        }
    }
}

/// The diverged pixels and squared differences of `b` against `a` (linear RGB triples).
pub fn linear_errors(t: &Tolerance, a: &[f32], b: &[f32]) -> LinearErrors {
    let mut e = LinearErrors::default();
    for (pa, pb) in a.chunks_exact(3).zip(b.chunks_exact(3)) {
        let mut d = false;
        for c in 0..3 {
            d |= t.diverges(pa[c], pb[c]);
            e.squared += (finite(pa[c]) - finite(pb[c])).powi(2);
        }
        e.pixels += 1;
        e.diverged += u64::from(d);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_limits() {
        let t = Tolerance::default();
        t.check().unwrap();
        assert_eq!(t.band(true, &TileMetrics::default()), Band::Match);
        assert_eq!(t.band(false, &TileMetrics::IDENTICAL), Band::Close);
        let mut m = TileMetrics::IDENTICAL;
        m.diverged_ppm = t.pass.max_diverged_ppm + 1;
        assert_eq!(t.band(false, &m), Band::Ambiguous);
        m.diverged_ppm = t.fail.max_diverged_ppm + 1;
        assert_eq!(t.band(false, &m), Band::Far);
        let mut m = TileMetrics::IDENTICAL;
        m.psnr_cdb = t.fail.min_psnr_cdb - 1;
        assert_eq!(t.band(false, &m), Band::Far);
    }

    #[test]
    fn linear_metrics_count_diverged_pixels_and_psnr() {
        let t = Tolerance::default();
        let a = vec![0.5f32; 300];
        let mut b = a.clone();
        assert_eq!(linear_metrics(&t, &a, &b), (0, PSNR_CAP_CDB));
        // One pixel of 100 off by 0.5 in one channel: 1 % diverged; MSE = 0.25/300.
        b[0] = 1.0;
        let (d, p) = linear_metrics(&t, &a, &b);
        assert_eq!(d, 10_000);
        assert_eq!(p, (1000.0 * (1200f64).log10()).floor() as u32);
        // A tiny relative difference is not divergence.
        let c: Vec<f32> = a.iter().map(|v| v * 1.001).collect();
        assert_eq!(linear_metrics(&t, &a, &c).0, 0);
    }

    #[test]
    fn an_inverted_tolerance_is_refused() {
        let mut t = Tolerance::default();
        t.pass.max_flip_mean_ppm = t.fail.max_flip_mean_ppm + 1;
        assert_eq!(t.check(), Err(ToleranceError::PassOutsideFail));
        let t = Tolerance {
            escalation_multiplier: 1,
            ..Tolerance::default()
        };
        assert_eq!(
            t.check(),
            Err(ToleranceError::EscalationTooSmall { multiplier: 1 })
        );
    }
}
