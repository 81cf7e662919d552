//! The tolerance calibration (`tessera calibrate`, docs/CALIBRATION.md): given honest
//! renders of every sample scene in two or more determinism classes, and what the
//! cheating node's class renders for the cheat corpus, compare every honest pair and every
//! forgery ([`tessera_node::cheats::Cheat`]) against each class's re-render, band them
//! under `Tolerance::default()`, derive thresholds from the measurements
//! ([`derive_tolerance`]) and report the margins.
//!
//! Method:
//! 1. Every class renders the honest frame of every scene ([`render_jobs`]); the first
//!    class is the cheating node's and also renders what the cheats need (half and
//!    quarter spp, frame + 1, seed + 1).
//! 2. Honest pairs: every tile committed in class A and re-rendered in class B, for every
//!    ordered pair of classes (A ≠ B).
//! 3. Cheats: per scene and tile, the node's class forges the tile and every class
//!    re-renders it (its own class included: same-class checks compare metrics too when
//!    bytes differ). A cheat that changes fewer than 1 % of the tile's pixels
//!    ([`FORGERY_MIN_CHANGED_PPM`]; e.g. a neighbour's pixels pasted over a flat wall, or
//!    any cheat in a tile that is already converged) forged nothing the metrics can see:
//!    it is listed apart with its bands, and never counted as caught.
//! 4. Every pair gets [`tile_metrics`] and its band under `Tolerance::default()`;
//!    [`derive_tolerance`] derives thresholds from the measurements, and the report gives
//!    the margins and whether the defaults agree with the derived thresholds.
//! 5. Blocks, as protocol v3 verifies ([`measure_blocks`]): every 8×8 block of every
//!    honest pair of frames and of every forged frame (the node's class forges every
//!    tile), judged as the verifier judges (per-block band, aggregate band, decision of a
//!    first and an escalated check: [`BlockCheck`]) on samples drawn by
//!    `sample_blocks` for the tiers' k; and every forged block alone among honest ones.
//!    [`derive_block_far`] derives the per-block far limits from the honest blocks and
//!    the block forgeries ([`BLOCK_FORGERY_MIN_CHANGED_PPM`]), and [`block_report`] gives
//!    the margins and which checks the defaults misjudge.
//!
//! This module does no IO: rendering the classes (each in its own process, because the
//! drivers read their environment when they load) and printing are the binary's.

use crate::tolerance::{blocks_metrics, tile_metrics, BlockPair, MetricsError};
use crate::verify::{decision_for, Evidence};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_node::cheats::{forge, Cheat, NodeFrames, Source};
use tessera_protocol::blocks::{block_hash, block_rect, n_blocks, BLOCK_SIZE};
use tessera_protocol::canonical::{crop, paste, tile_to_f32};
use tessera_protocol::sampling::sample_blocks;
use tessera_protocol::statements::{CheckKind, Decision, SampleCheck};
use tessera_protocol::tolerance::{
    linear_errors, Band, Limits, LinearErrors, TileMetrics, Tolerance, PSNR_CAP_CDB,
};
use tessera_protocol::{tile_layout, DeterminismClass, Digest, TileRect};

/// Why a calibration could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// A class is missing a frame it should have rendered.
    #[error("class {class}: scene {scene}: no {frame} frame")]
    MissingFrame {
        /// The class (preset name).
        class: String,
        /// The scene.
        scene: String,
        /// The frame's name ([`Source::name`]).
        frame: &'static str,
    },
    /// A tile of the layout does not fit a frame (a frame of the wrong size).
    #[error("tile {rect} does not fit the {width}x{height} frame")]
    TileOutsideFrame {
        /// The tile.
        rect: TileRect,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// Two tiles could not be compared.
    #[error("{scene}: {kind}: {reason}")]
    Metrics {
        /// The scene.
        scene: String,
        /// `honest` or the cheat's name.
        kind: String,
        /// What `tile_metrics` said.
        reason: crate::tolerance::MetricsError,
    },
}

/// Why no thresholds can be derived from a corpus ([`derive_tolerance`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DeriveError {
    /// No limit on the ladder catches a forgery.
    #[error("a {kind} forgery ({metrics:?}) is within every limit the ladder has")]
    Uncatchable {
        /// The cheat's name.
        kind: String,
        /// The forgery's metrics.
        metrics: TileMetrics,
    },
    /// An honest pair is too close to the pass limit the forgeries allow.
    #[error(
        "an honest pair has {metric} = {value}, not inside the pass limit {pass} by the \
         margin {HONEST_MARGIN} that the forgeries leave room for"
    )]
    HonestTooClose {
        /// The metric's name ([`METRICS`]).
        metric: &'static str,
        /// The honest pair's value.
        value: u32,
        /// The derived pass limit.
        pass: u32,
    },
    /// The derived limits are not a valid tolerance.
    #[error("{0}")]
    Invalid(tessera_protocol::tolerance::ToleranceError),
}

/// The name of the honest kind of pair in reports (the cheats' are [`Cheat::name`]).
pub const HONEST: &str = "honest";

/// One frame a class renders for every scene.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderJob {
    /// The frame's name ([`Source::name`]), also its file name.
    pub name: String,
    /// Samples per pixel.
    pub spp: u32,
    /// Render seed.
    pub seed: u64,
    /// Frame number.
    pub frame: u32,
}

/// What class `class_idx` renders: the honest frame, and for the node's class (the first)
/// what its cheats need.
pub fn render_jobs(s: &ReportSettings, class_idx: usize) -> Vec<RenderJob> {
    let job = |source: Source, spp: u32, seed: u64, frame: u32| RenderJob {
        name: source.name().into(),
        spp,
        seed,
        frame,
    };
    let mut jobs = vec![job(Source::Honest, s.spp, s.seed, s.frame)];
    if class_idx == 0 {
        jobs.extend([
            job(Source::HalfSpp, s.spp / 2, s.seed, s.frame),
            job(Source::QuarterSpp, s.spp / 4, s.seed, s.frame),
            job(Source::NextFrame, s.spp, s.seed, s.frame + 1),
            job(Source::Replay, s.spp, s.seed + 1, s.frame),
        ]);
    }
    jobs
}

/// The frames one class rendered: `[scene][job name]`, each `width × height` canonical
/// bytes.
pub type ClassFrames = Vec<BTreeMap<String, Vec<u8>>>;

/// One class as the report shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassReport {
    /// Preset name (`--classes`).
    pub name: String,
    /// What the preset is.
    pub about: String,
    /// Environment variables the child process got.
    pub env: BTreeMap<String, String>,
    /// The determinism class the renderer reported.
    pub class: DeterminismClass,
    /// Its id (hex).
    pub id: String,
    /// Seconds to open the adapter and compile the path tracer.
    pub gpu_init_s: f64,
    /// Seconds rendering (and loading) every scene.
    pub render_s: f64,
}

/// One compared pair: a committed tile against a re-render (only in the report with
/// `--records`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairRecord {
    /// Scene file name.
    pub scene: String,
    /// The tile.
    pub tile: TileRect,
    /// `honest`, or the cheat's name.
    pub kind: String,
    /// The class (preset name) that committed the tile.
    pub node: String,
    /// The class that re-rendered it.
    pub verifier: String,
    /// Whether the two classes have the same id.
    pub same_class: bool,
    /// Whether the committed bytes equal the re-render.
    pub bytes_equal: bool,
    /// The metrics of the re-render against the committed tile.
    pub metrics: TileMetrics,
    /// The band under `Tolerance::default()`.
    pub band: Band,
}

/// A cheat left out of the corpus because it forged (almost) nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NotForged {
    /// Scene file name.
    pub scene: String,
    /// The tile.
    pub tile: TileRect,
    /// The cheat's name.
    pub kind: String,
    /// Pixels of the forged tile that diverge from the node's honest tile, ppm (0 when
    /// the bytes are equal).
    pub changed_ppm: u32,
    /// Whether the forged bytes equal the honest tile.
    pub byte_identical: bool,
    /// Its band under the defaults against each class's re-render, in class order.
    pub bands: Vec<Band>,
}

/// The whole report (`--json`, `--out`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `tessera-calibration/1`.
    pub format: String,
    /// The render settings.
    pub settings: ReportSettings,
    /// The classes, the node's first.
    pub classes: Vec<ClassReport>,
    /// Per pair of classes, how many honest tiles were byte-identical.
    pub class_pairs: Vec<ClassPair>,
    /// The scenes (file names).
    pub scenes: Vec<String>,
    /// A forged tile counts as a forgery only when at least this many ppm of its pixels
    /// diverge from the node's honest tile.
    pub forgery_min_changed_ppm: u32,
    /// Cheats left out of the corpus: they change fewer pixels than that.
    pub not_forged: Vec<NotForged>,
    /// Per scene and kind (`honest` and each cheat): counts, extreme metrics, bands.
    pub summary: Vec<KindSummary>,
    /// The starting point of the derivation: the design's limits before measurement.
    pub prior: Tolerance,
    /// The thresholds derived from these measurements ([`derive_tolerance`]).
    pub derived: Option<Tolerance>,
    /// Why no thresholds could be derived, if so.
    pub derive_error: Option<String>,
    /// `Tolerance::default()`, which bands every pair.
    pub default_tolerance: Tolerance,
    /// Whether the derived thresholds equal the defaults.
    pub defaults_agree: bool,
    /// Margins of the defaults: honest pairs against the pass limits, forgeries against
    /// the fail limits.
    pub margins: Margins,
    /// Whether the defaults pass every honest pair and reject every forgery.
    pub separated: bool,
    /// The block checks (protocol v3): measurements, margins, `block_far` derived.
    pub blocks: BlockReport,
    /// Seconds of the whole run.
    pub runtime_s: f64,
    /// Every compared pair (with `--records`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<PairRecord>,
    /// Every compared block (with `--records`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_records: Vec<BlockRecord>,
    /// Every block check (with `--records`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_records: Vec<CheckRecord>,
}

/// The render settings of a calibration (what every class renders, and the report says).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportSettings {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Honest samples per pixel.
    pub spp: u32,
    /// Tile edge.
    pub tile: u32,
    /// Maximum bounces.
    pub max_bounces: u32,
    /// Honest render seed.
    pub seed: u64,
    /// The frame (the other-frame cheat renders the next).
    pub frame: u32,
}

/// Two classes' honest renders compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassPair {
    /// One class (preset name).
    pub a: String,
    /// The other.
    pub b: String,
    /// Whether their ids are equal (so their bytes must be too).
    pub same_id: bool,
    /// Tiles compared.
    pub tiles: usize,
    /// Tiles with equal bytes.
    pub byte_identical: usize,
    /// Scenes with at least one differing tile.
    pub differing_scenes: Vec<String>,
}

/// One kind of pair in one scene, summed up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindSummary {
    /// Scene file name.
    pub scene: String,
    /// `honest` or the cheat's name.
    pub kind: String,
    /// Pairs compared (forgeries only for a cheat).
    pub pairs: usize,
    /// Pairs with equal bytes.
    pub bytes_equal: usize,
    /// Over the pairs with different bytes, each metric's most honest-looking value for a
    /// cheat, its most distant value for honest pairs (the worst case either way).
    pub extreme: Option<TileMetrics>,
    /// Count per band under the defaults.
    pub bands: BTreeMap<String, usize>,
}

/// Margins of a tolerance on a corpus.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Margins {
    /// Per metric: the worst honest value against the pass limit.
    pub honest: Vec<HonestMargin>,
    /// Per cheat kind: the least separated forgery's best metric against its fail limit.
    pub cheats: Vec<CheatMargin>,
}

/// How far inside the pass limit the worst honest pair is, for one metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HonestMargin {
    /// `diverged_ppm`, `psnr_cdb`, `flip_mean_ppm` or `flip_p99_ppm`.
    pub metric: String,
    /// The worst honest value (over pairs with different bytes; none when all match).
    pub worst: Option<u32>,
    /// The pass limit.
    pub pass: u32,
    /// pass / worst for the ppm metrics, the MSE ratio `10^(dB/10)` for PSNR; `None`
    /// when unbounded (no honest pair differs, or the worst is 0).
    pub ratio: Option<f64>,
    /// For PSNR: worst − pass in dB.
    pub db: Option<f64>,
}

/// How far beyond a fail limit the least separated forgery of one cheat is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheatMargin {
    /// The cheat's name.
    pub kind: String,
    /// Forgeries (pairs) measured.
    pub pairs: usize,
    /// Where the least separated one is.
    pub scene: String,
    /// Its tile.
    pub tile: TileRect,
    /// The metric that separates it best.
    pub metric: String,
    /// Its value.
    pub value: u32,
    /// The fail limit.
    pub fail: u32,
    /// value / fail for the ppm metrics, the MSE ratio for PSNR; below 1: not rejected.
    pub ratio: f64,
    /// For PSNR: fail − value in dB.
    pub db: Option<f64>,
}

/// Metric names in reports, in [`TileMetrics`] field order.
pub const METRICS: [&str; 4] = ["diverged_ppm", "psnr_cdb", "flip_mean_ppm", "flip_p99_ppm"];
/// Index of PSNR in [`METRICS`], the one metric where smaller is worse.
pub const PSNR: usize = 1;

/// Metric `i` ([`METRICS`] order) of `m`.
pub fn metric(m: &TileMetrics, i: usize) -> u32 {
    [m.diverged_ppm, m.psnr_cdb, m.flip_mean_ppm, m.flip_p99_ppm][i]
}

/// The limit of metric `i` ([`METRICS`] order) in `l`.
pub fn limit(l: &Limits, i: usize) -> u32 {
    [
        l.max_diverged_ppm,
        l.min_psnr_cdb,
        l.max_flip_mean_ppm,
        l.max_flip_p99_ppm,
    ][i]
}

fn set_limit(l: &mut Limits, i: usize, v: u32) {
    *[
        &mut l.max_diverged_ppm,
        &mut l.min_psnr_cdb,
        &mut l.max_flip_mean_ppm,
        &mut l.max_flip_p99_ppm,
    ][i] = v;
}

/// How far `value` is beyond `limit` on the bad side, as a ratio: value / limit for the
/// ppm metrics, the MSE ratio `10^((limit − value)/1000)` for PSNR (centi-dB).
fn beyond(i: usize, value: u32, limit: u32) -> f64 {
    if i == PSNR {
        10f64.powf((f64::from(limit) - f64::from(value)) / 1000.0)
    } else if limit == 0 {
        f64::INFINITY
    } else {
        f64::from(value) / f64::from(limit)
    }
}

/// The best separation of `m` from the limits `l`: (ratio, metric index).
fn best_beyond(m: &TileMetrics, l: &Limits) -> (f64, usize) {
    (0..4)
        .map(|i| (beyond(i, metric(m, i), limit(l, i)), i))
        .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// The margin every honest pair must keep inside the pass limits: a factor of 4 (6 dB
/// for PSNR).
pub const HONEST_MARGIN: f64 = 4.0;
/// The margin every forgery must keep beyond some fail limit: a factor of 2 (3 dB).
pub const CHEAT_MARGIN: f64 = 2.0;
/// A forged tile is a forgery when at least 1 % of its pixels diverge from the honest
/// tile. Fewer is below the resolution of the metrics: ꟻLIP p99 ignores the worst 1 % by
/// definition, and the pass limit must let honest classes differ in a few pixels.
pub const FORGERY_MIN_CHANGED_PPM: u32 = 10_000;

/// The design's limits before any measurement: what the tolerance started from, and what
/// [`derive_tolerance`] tightens where the corpus requires it.
pub const PRIOR: Tolerance = Tolerance {
    pixel_abs_ppm: 2_000,
    pixel_rel_ppm: 20_000,
    pass: Limits {
        max_diverged_ppm: 20_000,
        min_psnr_cdb: 4_000,
        max_flip_mean_ppm: 10_000,
        max_flip_p99_ppm: 150_000,
    },
    fail: Limits {
        max_diverged_ppm: 60_000,
        min_psnr_cdb: 3_000,
        max_flip_mean_ppm: 25_000,
        max_flip_p99_ppm: 400_000,
    },
    // Set by reasoning before any block was measured (more than half a block's pixels
    // diverged, or a ꟻLIP mean over 0.15; PSNR and p99 of 64 pixels are one pixel's error).
    block_far: Limits {
        max_diverged_ppm: 500_000,
        min_psnr_cdb: 0,
        max_flip_mean_ppm: 150_000,
        max_flip_p99_ppm: 1_000_000,
    },
    escalation_multiplier: 2,
};

/// The ppm values limits are rounded to: 1, 1.5, 2, 3, 5, 7 × 10^k, 10 to 700 000.
fn ppm_ladder() -> impl DoubleEndedIterator<Item = u32> {
    (1..=5).flat_map(|k| {
        let p = 10u32.pow(k);
        [p, p * 3 / 2, 2 * p, 3 * p, 5 * p, 7 * p]
    })
}

/// The loosest limit of metric `i` that has `value` beyond it by [`CHEAT_MARGIN`]: a ladder
/// value for ppm, a whole dB for PSNR; `None` when no limit can.
fn limit_catching(i: usize, value: u32) -> Option<u32> {
    if i == PSNR {
        // value ≤ limit − 3.01 dB, rounded up to whole dB.
        let need = f64::from(value) + 1000.0 * CHEAT_MARGIN.log10();
        let cdb = ((need / 100.0).ceil() * 100.0) as u32;
        (cdb < PSNR_CAP_CDB).then_some(cdb)
    } else {
        ppm_ladder()
            .rev()
            .find(|&l| f64::from(value) >= CHEAT_MARGIN * f64::from(l))
    }
}

/// Derive thresholds from honest pairs and forgeries (metrics of pairs with different
/// bytes), starting from `prior`:
/// 1. While some forgery is not beyond a fail limit by [`CHEAT_MARGIN`], take the one that
///    needs the most tightening, and tighten the one fail limit that catches it with the
///    least tightening (a ladder value: 1, 1.5, 2, 3, 5, 7 × 10^k ppm, whole dB).
/// 2. Each pass limit keeps the prior's ratio to its fail limit (rounded down to the
///    ladder; PSNR: the prior's dB offset).
/// 3. Every honest pair must lie inside the pass limits by [`HONEST_MARGIN`].
///
/// Limits are only ever tightened, so a corpus that the prior already separates keeps it.
/// `Err` names the forgery or honest pair that cannot be separated.
pub fn derive_tolerance(
    prior: &Tolerance,
    honest: &[TileMetrics],
    forgeries: &[(String, TileMetrics)],
) -> Result<Tolerance, DeriveError> {
    let mut t = *prior;
    t.fail = tighten(&prior.fail, forgeries)?;
    for i in 0..4 {
        let (pp, pf) = (limit(&prior.pass, i), limit(&prior.fail, i));
        let fail = limit(&t.fail, i);
        let pass = if i == PSNR {
            (fail + pp.saturating_sub(pf)).min(PSNR_CAP_CDB)
        } else {
            let scaled = u64::from(fail) * u64::from(pp) / u64::from(pf.max(1));
            ppm_ladder()
                .rev()
                .find(|&v| u64::from(v) <= scaled)
                .unwrap_or(0)
                .min(limit(&prior.pass, i))
        };
        set_limit(&mut t.pass, i, pass);
    }
    inside_by_margin(&t.pass, honest)?;
    t.check().map_err(DeriveError::Invalid)?;
    Ok(t)
}

/// Tighten `limits` until every forgery is beyond one of them by [`CHEAT_MARGIN`]: while
/// some is not, take the one that needs the most tightening and tighten the one limit that
/// catches it with the least (a ladder value: 1, 1.5, 2, 3, 5, 7 × 10^k ppm, whole dB).
fn tighten(limits: &Limits, forgeries: &[(String, TileMetrics)]) -> Result<Limits, DeriveError> {
    let mut l = *limits;
    loop {
        // For each forgery not caught: its cheapest tightening (factor, metric, limit).
        let mut hardest: Option<(f64, usize, u32)> = None;
        for (kind, m) in forgeries {
            if best_beyond(m, &l).0 >= CHEAT_MARGIN {
                continue;
            }
            let cheapest = (0..4)
                .filter_map(|i| {
                    let to = limit_catching(i, metric(m, i))?;
                    let factor = 1.0 / beyond(i, limit(&l, i), to).max(1.0);
                    Some((factor, i, to))
                })
                .fold(None::<(f64, usize, u32)>, |a, b| match a {
                    Some(a) if a.0 >= b.0 => Some(a),
                    _ => Some(b),
                })
                .ok_or_else(|| DeriveError::Uncatchable {
                    kind: kind.clone(),
                    metrics: *m,
                })?;
            if hardest.is_none_or(|h| cheapest.0 < h.0) {
                hardest = Some(cheapest);
            }
        }
        let Some((_, i, to)) = hardest else {
            return Ok(l);
        };
        set_limit(&mut l, i, to);
    }
}

/// Whether every honest value lies inside `l` by [`HONEST_MARGIN`]; `Err` names the
/// first that does not.
fn inside_by_margin(l: &Limits, honest: &[TileMetrics]) -> Result<(), DeriveError> {
    for m in honest {
        for (i, name) in METRICS.iter().enumerate() {
            let (v, pass) = (metric(m, i), limit(l, i));
            if beyond(i, v, pass) * HONEST_MARGIN > 1.0 + 1e-9 {
                return Err(DeriveError::HonestTooClose {
                    metric: name,
                    value: v,
                    pass,
                });
            }
        }
    }
    Ok(())
}

/// Margins of `t` on `honest` pairs and `forgeries` (`(kind, scene, tile, metrics)`):
/// honest pairs against the pass limits, forgeries against the fail limits.
pub fn margins(
    t: &Tolerance,
    honest: &[TileMetrics],
    forgeries: &[(String, String, TileRect, TileMetrics)],
) -> Margins {
    Margins {
        honest: honest_margins(&t.pass, honest),
        cheats: cheat_margins(&t.fail, forgeries),
    }
}

/// Per metric, the worst of `honest` against the limit in `l`.
pub fn honest_margins(l: &Limits, honest: &[TileMetrics]) -> Vec<HonestMargin> {
    METRICS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values = honest.iter().map(|m| metric(m, i));
            let worst = if i == PSNR {
                values.min()
            } else {
                values.max()
            };
            let pass = limit(l, i);
            let ratio = worst.and_then(|w| {
                let r = 1.0 / beyond(i, w, pass);
                r.is_finite().then_some(r)
            });
            HonestMargin {
                metric: name.to_string(),
                worst,
                pass,
                ratio,
                db: worst
                    .filter(|_| i == PSNR)
                    .map(|w| (f64::from(w) - f64::from(pass)) / 100.0),
            }
        })
        .collect()
}

/// Per cheat, the least separated of `forgeries` (`(kind, scene, rect, metrics)`) with
/// its best metric against the limit in `l`.
pub fn cheat_margins(
    l: &Limits,
    forgeries: &[(String, String, TileRect, TileMetrics)],
) -> Vec<CheatMargin> {
    let mut out = Vec::new();
    for cheat in Cheat::ALL {
        let of_kind: Vec<_> = forgeries.iter().filter(|f| f.0 == cheat.name()).collect();
        let least = of_kind
            .iter()
            .map(|f| (best_beyond(&f.3, l), f))
            .min_by(|a, b| a.0 .0.total_cmp(&b.0 .0));
        if let Some(((ratio, i), (_, scene, tile, m))) = least {
            let (value, fail) = (metric(m, i), limit(l, i));
            out.push(CheatMargin {
                kind: cheat.name().to_string(),
                pairs: of_kind.len(),
                scene: scene.clone(),
                tile: *tile,
                metric: METRICS[i].to_string(),
                value,
                fail,
                ratio,
                db: (i == PSNR).then(|| (f64::from(fail) - f64::from(value)) / 100.0),
            });
        }
    }
    out
}

/// Compare every honest pair and every cheat of every tile of every scene: the pairs
/// counted (honest pairs and forgeries), and the cheats left out because they forged
/// (almost) nothing. `frames[c]` are class `c`'s frames, the node's first.
pub fn measure(
    s: &ReportSettings,
    scenes: &[String],
    classes: &[ClassReport],
    frames: &[ClassFrames],
) -> Result<(Vec<PairRecord>, Vec<NotForged>), CalibrationError> {
    let t = Tolerance::default();
    let (fw, fh) = (s.width, s.height);
    let honest_tile = |class: usize, scene: usize, rect: TileRect| {
        let frame = frame_of(classes, frames, class, scenes, scene, Source::Honest)?;
        crop(frame, fw, fh, rect).ok_or(CalibrationError::TileOutsideFrame {
            rect,
            width: fw,
            height: fh,
        })
    };
    let mut records = Vec::new();
    let mut not_forged = Vec::new();
    let pair = |scene: &str, rect, kind: &str, node: usize, verifier: usize, a: &[u8], b: &[u8]| {
        let metrics = tile_metrics(&t, a, b, rect).map_err(|reason| CalibrationError::Metrics {
            scene: scene.to_string(),
            kind: kind.to_string(),
            reason,
        })?;
        let bytes_equal = a == b;
        Ok::<_, CalibrationError>(PairRecord {
            scene: scene.to_string(),
            tile: rect,
            kind: kind.to_string(),
            node: classes[node].name.clone(),
            verifier: classes[verifier].name.clone(),
            same_class: classes[node].id == classes[verifier].id,
            bytes_equal,
            metrics,
            band: t.band(bytes_equal, &metrics),
        })
    };
    for (si, name) in scenes.iter().enumerate() {
        let node_frames = node_frames(s, frames, si);
        for (tile_idx, &rect) in tile_layout(fw, fh, s.tile).iter().enumerate() {
            let rerenders: Vec<Vec<u8>> = (0..classes.len())
                .map(|c| honest_tile(c, si, rect))
                .collect::<Result<_, _>>()?;
            for a in 0..classes.len() {
                for b in (0..classes.len()).filter(|&b| b != a) {
                    records.push(pair(
                        name,
                        rect,
                        HONEST,
                        a,
                        b,
                        &rerenders[a],
                        &rerenders[b],
                    )?);
                }
            }
            for cheat in Cheat::ALL {
                let Some(forged) = forge(cheat, &node_frames, si, tile_idx, rect) else {
                    continue;
                };
                let own = pair(name, rect, cheat.name(), 0, 0, &forged, &rerenders[0])?;
                let checks: Vec<PairRecord> = (0..classes.len())
                    .map(|b| pair(name, rect, cheat.name(), 0, b, &forged, &rerenders[b]))
                    .collect::<Result<_, _>>()?;
                if own.bytes_equal || own.metrics.diverged_ppm < FORGERY_MIN_CHANGED_PPM {
                    not_forged.push(NotForged {
                        scene: name.clone(),
                        tile: rect,
                        kind: cheat.name().into(),
                        changed_ppm: own.metrics.diverged_ppm,
                        byte_identical: own.bytes_equal,
                        bands: checks.iter().map(|r| r.band).collect(),
                    });
                } else {
                    records.extend(checks);
                }
            }
        }
    }
    Ok((records, not_forged))
}

/// The frames the node's class (the first) rendered for scene `scene`, for the cheats.
fn node_frames<'a>(s: &ReportSettings, frames: &'a [ClassFrames], scene: usize) -> NodeFrames<'a> {
    NodeFrames {
        width: s.width,
        height: s.height,
        frames: Source::ALL
            .into_iter()
            .filter_map(|src| Some((src, frames.first()?.get(scene)?.get(src.name())?.as_slice())))
            .collect(),
    }
}

/// Frame `source` of scene `scene` as class `class` rendered it.
fn frame_of<'a>(
    classes: &[ClassReport],
    frames: &'a [ClassFrames],
    class: usize,
    scenes: &[String],
    scene: usize,
    source: Source,
) -> Result<&'a [u8], CalibrationError> {
    frames
        .get(class)
        .and_then(|f| f.get(scene))
        .and_then(|f| f.get(source.name()))
        .map(Vec::as_slice)
        .ok_or_else(|| CalibrationError::MissingFrame {
            class: classes
                .get(class)
                .map_or_else(|| class.to_string(), |c| c.name.clone()),
            scene: scenes.get(scene).cloned().unwrap_or_default(),
            frame: source.name(),
        })
}

/// Per pair of classes: how many honest tiles are byte-identical.
pub fn class_pairs(
    s: &ReportSettings,
    scenes: &[String],
    classes: &[ClassReport],
    frames: &[ClassFrames],
) -> Result<Vec<ClassPair>, CalibrationError> {
    let (fw, fh) = (s.width, s.height);
    let tiles = tile_layout(fw, fh, s.tile);
    let mut out = Vec::new();
    for a in 0..classes.len() {
        for b in a + 1..classes.len() {
            let mut pair = ClassPair {
                a: classes[a].name.clone(),
                b: classes[b].name.clone(),
                same_id: classes[a].id == classes[b].id,
                tiles: 0,
                byte_identical: 0,
                differing_scenes: Vec::new(),
            };
            for (si, name) in scenes.iter().enumerate() {
                let fa = frame_of(classes, frames, a, scenes, si, Source::Honest)?;
                let fb = frame_of(classes, frames, b, scenes, si, Source::Honest)?;
                for &rect in &tiles {
                    pair.tiles += 1;
                    if crop(fa, fw, fh, rect) == crop(fb, fw, fh, rect) {
                        pair.byte_identical += 1;
                    } else if !pair.differing_scenes.contains(name) {
                        pair.differing_scenes.push(name.clone());
                    }
                }
            }
            out.push(pair);
        }
    }
    Ok(out)
}

/// Per scene and kind (`honest` and each cheat): counts, the worst-case metrics, and the
/// bands.
pub fn summarize(scenes: &[String], records: &[PairRecord]) -> Vec<KindSummary> {
    let mut out = Vec::new();
    for scene in scenes {
        for kind in std::iter::once(HONEST).chain(Cheat::ALL.iter().map(|c| c.name())) {
            let of_kind: Vec<&PairRecord> = records
                .iter()
                .filter(|r| r.kind == kind && &r.scene == scene)
                .collect();
            // Honest pairs: the largest distance; forgeries: the smallest.
            let differing = of_kind
                .iter()
                .filter(|r| !r.bytes_equal)
                .map(|r| &r.metrics);
            let extreme = extreme_of(differing, kind == HONEST);
            let bands = count(of_kind.iter().map(|r| band_name(r.band)));
            out.push(KindSummary {
                scene: scene.clone(),
                kind: kind.to_string(),
                pairs: of_kind.len(),
                bytes_equal: of_kind.iter().filter(|r| r.bytes_equal).count(),
                extreme,
                bands,
            });
        }
    }
    out
}

/// A band's name in reports.
pub fn band_name(b: Band) -> &'static str {
    match b {
        Band::Match => "match",
        Band::Close => "close",
        Band::Ambiguous => "ambiguous",
        Band::Far => "far",
    }
}

/// Measure everything ([`measure`]), derive thresholds ([`derive_tolerance`] from
/// [`PRIOR`]) and put the report together; `runtime_s` is left 0 for the caller. With
/// `keep_records`, every compared pair goes into the report.
pub fn report(
    settings: &ReportSettings,
    scenes: Vec<String>,
    classes: Vec<ClassReport>,
    frames: &[ClassFrames],
    keep_records: bool,
) -> Result<Report, CalibrationError> {
    let (records, not_forged) = measure(settings, &scenes, &classes, frames)?;
    let honest: Vec<TileMetrics> = records
        .iter()
        .filter(|r| r.kind == HONEST && !r.bytes_equal)
        .map(|r| r.metrics)
        .collect();
    let forgeries: Vec<(String, String, TileRect, TileMetrics)> = records
        .iter()
        .filter(|r| r.kind != HONEST && !r.bytes_equal)
        .map(|r| (r.kind.clone(), r.scene.clone(), r.tile, r.metrics))
        .collect();
    let kinds: Vec<(String, TileMetrics)> = forgeries.iter().map(|f| (f.0.clone(), f.3)).collect();
    let t = Tolerance::default();
    let (block_records, check_records) = measure_blocks(settings, &scenes, &classes, frames)?;
    let blocks = block_report(settings, &t, &block_records, &check_records);
    let (derived, derive_error) = match (derive_tolerance(&PRIOR, &honest, &kinds), blocks.derived)
    {
        (Ok(d), Some(block_far)) => (Some(Tolerance { block_far, ..d }), None),
        (Err(e), _) => (None, Some(e.to_string())),
        (Ok(_), None) => (None, blocks.derive_error.clone()),
    };
    let separated = records.iter().all(|r| match r.kind.as_str() {
        HONEST => matches!(r.band, Band::Match | Band::Close),
        _ => r.band == Band::Far,
    });
    Ok(Report {
        format: "tessera-calibration/1".into(),
        settings: settings.clone(),
        class_pairs: class_pairs(settings, &scenes, &classes, frames)?,
        classes,
        summary: summarize(&scenes, &records),
        scenes,
        forgery_min_changed_ppm: FORGERY_MIN_CHANGED_PPM,
        not_forged,
        prior: PRIOR,
        defaults_agree: derived == Some(t),
        derived,
        derive_error,
        default_tolerance: t,
        margins: margins(&t, &honest, &forgeries),
        separated,
        blocks,
        runtime_s: 0.0,
        records: if keep_records { records } else { Vec::new() },
        block_records: if keep_records {
            block_records
        } else {
            Vec::new()
        },
        check_records: if keep_records {
            check_records
        } else {
            Vec::new()
        },
    })
}

// Blocks (protocol v3): the verifier re-renders sampled 8×8 blocks and judges each block
// (match, close, or far beyond `Tolerance::block_far`) and their aggregate (the tile
// limits). What follows measures both on the same frames as the tiles above.

/// The node's base sample sizes the block checks are measured at: the priority tier's k
/// (P = 0.999 against f = 0.05) and the economy tier's 3·k. An escalated check draws
/// `escalation_multiplier` times as many from the same seed.
pub const BLOCK_KS: [u32; 2] = [135, 405];
/// Samples drawn per scene, pair of classes and k (seeds `0..BLOCK_SEEDS`).
pub const BLOCK_SEEDS: u64 = 8;

/// The blocks of a check, judged with the verifier's own functions ([`blocks_metrics`],
/// [`Tolerance::block_band`], [`Tolerance::band`]) the way `Verifier::handle_request`
/// judges the blocks it re-rendered; [`BlockCheck::decision`] applies [`decision_for`].
#[derive(Clone, Debug)]
pub struct BlockCheck {
    /// Each block as a verdict records it.
    pub samples: Vec<SampleCheck>,
    /// The metrics over all the blocks.
    pub aggregate: TileMetrics,
    /// The aggregate's band under the tile limits.
    pub aggregate_band: Band,
}

impl BlockCheck {
    /// Judge the blocks `pairs` (delivered bytes that hash to their commitment) under `t`.
    pub fn judge(t: &Tolerance, pairs: &[BlockPair<'_>]) -> Result<BlockCheck, MetricsError> {
        let (each, aggregate) = blocks_metrics(t, pairs)?;
        let samples: Vec<SampleCheck> = pairs
            .iter()
            .zip(each)
            .map(|(p, m)| {
                let matched = p.committed == p.rerender;
                let metrics = if matched { TileMetrics::IDENTICAL } else { m };
                SampleCheck {
                    leaf_index: 0,
                    block: 0,
                    frame: 0,
                    tile_index: 0,
                    committed_hash: block_hash(p.committed),
                    rerender_hash: block_hash(p.rerender),
                    delivered_ok: true,
                    matched,
                    metrics,
                    band: t.block_band(matched, &metrics),
                }
            })
            .collect();
        let all_matched = samples.iter().all(|s| s.matched);
        let aggregate = if all_matched {
            TileMetrics::IDENTICAL
        } else {
            aggregate
        };
        Ok(BlockCheck {
            aggregate_band: t.band(all_matched, &aggregate),
            samples,
            aggregate,
        })
    }

    /// The decision of a check of kind `check` on these blocks (a verifier of another
    /// class than the node's: calibration compares classes, so only the tolerance judges).
    pub fn decision(&self, check: CheckKind) -> Decision {
        decision_for(
            check,
            &self.samples,
            self.aggregate_band,
            Evidence::Tolerance,
        )
    }

    /// Blocks beyond the per-block far limits.
    pub fn far_blocks(&self) -> usize {
        self.samples.iter().filter(|s| s.band == Band::Far).count()
    }
}

/// One block of a frame, as the report shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Scene file name.
    pub scene: String,
    /// `honest`, or the cheat's name.
    pub kind: String,
    /// The class that committed it.
    pub node: String,
    /// The class that re-rendered it.
    pub verifier: String,
    /// The block in frame coordinates.
    pub rect: TileRect,
    /// Whether the committed bytes equal the re-render.
    pub bytes_equal: bool,
    /// Pixels of the committed block that diverge from the node's honest block, ppm (0
    /// for honest blocks): how much of it the cheat forged.
    pub changed_ppm: u32,
    /// The re-render against the committed block.
    pub metrics: TileMetrics,
    /// Its band under the defaults' per-block far limits.
    pub band: Band,
    /// For a forged block: the first and the escalated check of a node that forged this
    /// block alone (every other sampled block honest).
    pub alone: Option<[Decision; 2]>,
}

/// One check of a node's blocks (and the escalated check from the same seed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckRecord {
    /// Scene file name.
    pub scene: String,
    /// `honest`, or the cheat's name (the node forged every tile of the frame).
    pub kind: String,
    /// The class that committed the frame.
    pub node: String,
    /// The class that re-rendered the blocks.
    pub verifier: String,
    /// The node's base k.
    pub k: u32,
    /// The sample seed's index.
    pub seed: u64,
    /// Pixels of the first check's blocks that the cheat changed, ppm.
    pub changed_ppm: u32,
    /// Blocks of the first check and of the escalated one.
    pub blocks: [usize; 2],
    /// Their aggregate metrics.
    pub aggregate: [TileMetrics; 2],
    /// Their aggregate bands.
    pub aggregate_band: [Band; 2],
    /// Their blocks beyond the per-block far limits.
    pub far_blocks: [usize; 2],
    /// Their decisions.
    pub decision: [Decision; 2],
}

impl CheckRecord {
    /// Whether the decision rule catches the node: the first check does not pass and the
    /// escalated check fails.
    pub fn caught(&self) -> bool {
        self.decision[0] != Decision::Pass && self.decision[1] == Decision::Fail
    }
}

/// The sample seed of block check `seed` in scene `scene` (every pair of classes and
/// every kind draws the same blocks).
fn block_seed(scene: usize, seed: u64) -> Digest {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(b"tessera\0");
    d[8..16].copy_from_slice(&(scene as u64).to_le_bytes());
    d[16..24].copy_from_slice(&seed.to_le_bytes());
    d
}

/// Linear RGB of canonical bytes (alpha dropped).
fn rgb_of(canonical: &[u8]) -> Vec<f32> {
    tile_to_f32(canonical)
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// The bytes of each block of a frame, in [`FrameBlocks`] order.
type BlockBytes = Vec<Vec<u8>>;

/// A frame's blocks in leaf order (tile by tile, each tile's blocks row-major): their
/// rectangles, and the index of each tile's first block.
struct FrameBlocks {
    tiles: Vec<TileRect>,
    first: Vec<usize>,
    rects: Vec<TileRect>,
}

impl FrameBlocks {
    fn new(s: &ReportSettings) -> FrameBlocks {
        let tiles = tile_layout(s.width, s.height, s.tile);
        let (mut first, mut rects) = (Vec::new(), Vec::new());
        for &t in &tiles {
            first.push(rects.len());
            rects.extend((0..n_blocks(t)).filter_map(|b| block_rect(t, b)));
        }
        FrameBlocks {
            tiles,
            first,
            rects,
        }
    }

    /// Every block's bytes cut from a frame.
    fn cut(&self, s: &ReportSettings, frame: &[u8]) -> Result<BlockBytes, CalibrationError> {
        self.rects
            .iter()
            .map(|&rect| {
                crop(frame, s.width, s.height, rect).ok_or(CalibrationError::TileOutsideFrame {
                    rect,
                    width: s.width,
                    height: s.height,
                })
            })
            .collect()
    }

    /// The indices of the blocks `sample_blocks` draws for a node that committed this
    /// frame's tiles, with `seed` and `k`.
    fn sample(&self, seed: &Digest, k: u32) -> Vec<usize> {
        sample_blocks(seed, &self.tiles, k)
            .into_iter()
            .map(|r| self.first[r.leaf as usize] + r.block as usize)
            .collect()
    }
}

/// The per-block records and the check records of every block check.
pub type BlockMeasurements = (Vec<BlockRecord>, Vec<CheckRecord>);

/// Measure the block checks: for every scene, every honest ordered pair of classes and
/// every cheat (the node's class forges every tile of the frame; every class
/// re-renders), the metrics of every block, and the checks of [`BLOCK_SEEDS`] samples for
/// each of [`BLOCK_KS`] with their escalated checks. For every forged block, also the
/// checks of a node that forged that block alone: the first sample of the smallest k and
/// its escalated sample, each with that block added.
pub fn measure_blocks(
    s: &ReportSettings,
    scenes: &[String],
    classes: &[ClassReport],
    frames: &[ClassFrames],
) -> Result<BlockMeasurements, CalibrationError> {
    let t = Tolerance::default();
    let fb = FrameBlocks::new(s);
    let all: Vec<usize> = (0..fb.rects.len()).collect();
    let (first, escalated) = (CheckKind::FIRST, CheckKind::FIRST.escalate());
    let mut blocks = Vec::new();
    let mut checks = Vec::new();
    for (si, name) in scenes.iter().enumerate() {
        let honest: Vec<BlockBytes> = (0..classes.len())
            .map(|c| fb.cut(s, frame_of(classes, frames, c, scenes, si, Source::Honest)?))
            .collect::<Result<_, _>>()?;
        // (k, seed, first sample, escalated sample), the same for every kind and pair.
        let samples: Vec<(u32, u64, Vec<usize>, Vec<usize>)> = BLOCK_KS
            .iter()
            .flat_map(|&k| (0..BLOCK_SEEDS).map(move |seed| (k, seed)))
            .map(|(k, seed)| {
                let d = block_seed(si, seed);
                let esc = k.saturating_mul(t.escalation_multiplier);
                (k, seed, fb.sample(&d, k), fb.sample(&d, esc))
            })
            .collect();
        // Every kind: its name, the committing class, and (cheats) the forged blocks.
        let node_frames = node_frames(s, frames, si);
        let mut kinds: Vec<(&str, usize, Option<BlockBytes>)> =
            (0..classes.len()).map(|a| (HONEST, a, None)).collect();
        for cheat in Cheat::ALL {
            let mut forged = frame_of(classes, frames, 0, scenes, si, Source::Honest)?.to_vec();
            for (tile_idx, &rect) in fb.tiles.iter().enumerate() {
                if let Some(bytes) = forge(cheat, &node_frames, si, tile_idx, rect) {
                    paste(&mut forged, s.width, s.height, rect, &bytes);
                }
            }
            kinds.push((cheat.name(), 0, Some(fb.cut(s, &forged)?)));
        }
        for (kind, node, forged) in &kinds {
            let own = &honest[*node];
            let committed = forged.as_ref().unwrap_or(own);
            // How much of each block the cheat changed.
            let changed: Vec<LinearErrors> = match forged {
                Some(f) => f
                    .iter()
                    .zip(own)
                    .map(|(c, h)| linear_errors(&t, &rgb_of(h), &rgb_of(c)))
                    .collect(),
                None => vec![LinearErrors::default(); all.len()],
            };
            let metrics_error = |reason| CalibrationError::Metrics {
                scene: name.clone(),
                kind: kind.to_string(),
                reason,
            };
            for v in (0..classes.len()).filter(|&v| forged.is_some() || v != *node) {
                // The blocks `at`, all committed as forged, or only block `alone`.
                let judge = |at: &[usize], alone: Option<usize>| {
                    let pairs: Vec<BlockPair<'_>> = at
                        .iter()
                        .map(|&i| BlockPair {
                            committed: match alone {
                                Some(j) if j != i => &own[i],
                                _ => &committed[i],
                            },
                            rerender: &honest[v][i],
                            rect: fb.rects[i],
                        })
                        .collect();
                    BlockCheck::judge(&t, &pairs).map_err(metrics_error)
                };
                let whole = judge(&all, None)?;
                let (_, _, s0, e0) = &samples[0];
                for (i, &rect) in fb.rects.iter().enumerate() {
                    let alone = if committed[i] != own[i] {
                        let with = |at: &[usize]| {
                            let mut at = at.to_vec();
                            if !at.contains(&i) {
                                at.push(i);
                            }
                            judge(&at, Some(i))
                        };
                        Some([with(s0)?.decision(first), with(e0)?.decision(escalated)])
                    } else {
                        None
                    };
                    blocks.push(BlockRecord {
                        scene: name.clone(),
                        kind: kind.to_string(),
                        node: classes[*node].name.clone(),
                        verifier: classes[v].name.clone(),
                        rect,
                        bytes_equal: committed[i] == honest[v][i],
                        changed_ppm: changed[i].diverged_ppm(),
                        metrics: whole.samples[i].metrics,
                        band: whole.samples[i].band,
                        alone,
                    });
                }
                for (k, seed, at, esc) in &samples {
                    let judged = |at: &Vec<usize>| match at.len() == all.len() {
                        true => Ok(whole.clone()),
                        false => judge(at, None),
                    };
                    let (a, b) = (judged(at)?, judged(esc)?);
                    let mut sum = LinearErrors::default();
                    for &i in at {
                        sum.add(&changed[i]);
                    }
                    checks.push(CheckRecord {
                        scene: name.clone(),
                        kind: kind.to_string(),
                        node: classes[*node].name.clone(),
                        verifier: classes[v].name.clone(),
                        k: *k,
                        seed: *seed,
                        changed_ppm: sum.diverged_ppm(),
                        blocks: [at.len(), esc.len()],
                        aggregate: [a.aggregate, b.aggregate],
                        aggregate_band: [a.aggregate_band, b.aggregate_band],
                        far_blocks: [a.far_blocks(), b.far_blocks()],
                        decision: [a.decision(first), b.decision(escalated)],
                    });
                }
            }
        }
    }
    Ok((blocks, checks))
}

/// A forged block is a block forgery, which the per-block far test must reject on its
/// own, when at least this many ppm of its pixels diverge from the node's honest block.
pub const BLOCK_FORGERY_MIN_CHANGED_PPM: u32 = 250_000;

/// The block part of the report: the honest per-block envelope, what the checks of
/// [`BLOCK_KS`] decide for honest pairs and forged frames, and `block_far` derived.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockReport {
    /// The block edge in pixels.
    pub block_size: u32,
    /// The node's base sample sizes measured.
    pub ks: Vec<u32>,
    /// Samples per scene, pair and k.
    pub seeds: u64,
    /// An escalated check samples this many times k.
    pub escalation_multiplier: u32,
    /// A forged block is a block forgery from this many ppm of changed pixels.
    pub block_forgery_min_changed_ppm: u32,
    /// `honest` first, then each cheat.
    pub kinds: Vec<BlockKindSummary>,
    /// The per-block far limits before measurement.
    pub prior: Limits,
    /// The per-block far limits derived from this run ([`derive_block_far`]).
    pub derived: Option<Limits>,
    /// Why none could be derived, if so.
    pub derive_error: Option<String>,
    /// `Tolerance::default().block_far`, which bands every block.
    pub default_block_far: Limits,
    /// Margins under the defaults.
    pub margins: BlockMargins,
    /// Honest checks that did not pass at once and counted forged checks that were not
    /// caught (the first [`MISJUDGED_LISTED`]).
    pub misjudged: Vec<CheckRecord>,
    /// How many there were.
    pub misjudged_count: usize,
    /// Whether every honest check passes at once, every counted forged frame is caught
    /// (the first check does not pass, the escalated one fails), and so is every block
    /// forgery that is a node's only forged block.
    pub separated: bool,
}

/// At most this many misjudged checks are listed in a report.
pub const MISJUDGED_LISTED: usize = 50;

/// One kind of block pair (`honest` or a cheat) over every scene and pair of classes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockKindSummary {
    /// `honest` or the cheat's name.
    pub kind: String,
    /// Blocks compared (block × re-rendering class).
    pub blocks: usize,
    /// Of those, byte-identical to the re-render.
    pub bytes_equal: usize,
    /// Blocks whose committed bytes differ from the node's honest block.
    pub forged: usize,
    /// Forged blocks that change at least [`BLOCK_FORGERY_MIN_CHANGED_PPM`] of their pixels.
    pub block_forgeries: usize,
    /// Count per band of every block under the defaults.
    pub bands: BTreeMap<String, usize>,
    /// Block forgeries beyond the per-block far limits.
    pub far_forgeries: usize,
    /// Honest: each metric's worst value over the blocks with different bytes; a cheat:
    /// its most honest-looking value over the block forgeries.
    pub extreme: Option<TileMetrics>,
    /// A node that forged one block alone, for every forged block: how often the
    /// escalated check fails (`caught`), is inconclusive, or the node is paid.
    pub alone: BTreeMap<String, usize>,
    /// The same for the block forgeries only.
    pub alone_forgeries: BTreeMap<String, usize>,
    /// The checks of the forged (or honest) frames, per k.
    pub checks: Vec<BlockChecksSummary>,
}

/// The checks of one kind at one k.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockChecksSummary {
    /// The node's base k.
    pub k: u32,
    /// Checks counted (for a cheat: those whose first sample changed at least
    /// [`FORGERY_MIN_CHANGED_PPM`] of its pixels).
    pub checks: usize,
    /// Cheat checks not counted: the sampled blocks changed fewer pixels than that.
    pub not_forged: usize,
    /// Mean blocks of the first and of the escalated check.
    pub mean_blocks: [f64; 2],
    /// Count per band of the first check's aggregate.
    pub aggregate_bands: BTreeMap<String, usize>,
    /// Count per decision of the first check.
    pub first: BTreeMap<String, usize>,
    /// Count per decision of the escalated check.
    pub escalated: BTreeMap<String, usize>,
    /// Counted checks whose first check does not pass and whose escalated check fails.
    pub caught: usize,
    /// The first check's aggregate: each metric's worst value (honest) or most
    /// honest-looking one (cheat) over the counted checks.
    pub extreme_aggregate: Option<TileMetrics>,
}

/// Margins of the block checks under the defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BlockMargins {
    /// Per metric: the worst honest block against the per-block far limit.
    pub honest_blocks: Vec<HonestMargin>,
    /// Per metric: the worst honest first-check aggregate against the pass limit.
    pub honest_aggregates: Vec<HonestMargin>,
    /// Per cheat: the least separated block forgery against the per-block far limits.
    pub cheat_blocks: Vec<CheatMargin>,
    /// Per cheat: the least separated counted first-check aggregate against the fail
    /// limits (its `tile` is the whole frame the blocks were sampled from).
    pub cheat_aggregates: Vec<CheatMargin>,
}

/// A decision's name in reports.
pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "pass",
        Decision::Fail => "fail",
        Decision::Escalate => "escalate",
        Decision::Inconclusive => "inconclusive",
    }
}

/// What a node that forged one block alone comes to: `caught` when the first check does
/// not pass and the escalated one fails, else the decision that ends the round for it.
fn alone_outcome(d: [Decision; 2]) -> &'static str {
    match d {
        [Decision::Pass, _] | [_, Decision::Pass] => "pass",
        [_, Decision::Fail] => "caught",
        [_, other] => decision_name(other),
    }
}

/// Each metric's worst value over `m` (`worst`: the largest distance, PSNR the smallest)
/// or its most honest-looking one.
fn extreme_of<'a>(
    m: impl Iterator<Item = &'a TileMetrics> + Clone,
    worst: bool,
) -> Option<TileMetrics> {
    let pick = |i: usize| {
        let v = m.clone().map(|x| metric(x, i));
        if worst == (i == PSNR) {
            v.min()
        } else {
            v.max()
        }
    };
    Some(TileMetrics {
        diverged_ppm: pick(0)?,
        psnr_cdb: pick(1)?,
        flip_mean_ppm: pick(2)?,
        flip_p99_ppm: pick(3)?,
    })
}

fn count<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in names {
        *out.entry(n.to_string()).or_insert(0) += 1;
    }
    out
}

/// Whether a check of `kind` counts: honest checks always; a cheat's when its first
/// sample changed at least [`FORGERY_MIN_CHANGED_PPM`] of the pixels.
fn counted(c: &CheckRecord) -> bool {
    c.kind == HONEST || c.changed_ppm >= FORGERY_MIN_CHANGED_PPM
}

/// Whether a counted check is misjudged: an honest one that does not pass at once, a
/// forged one that is not caught.
fn misjudged(c: &CheckRecord) -> bool {
    if c.kind == HONEST {
        c.decision[0] != Decision::Pass
    } else {
        counted(c) && !c.caught()
    }
}

/// Whether a block record is a block forgery.
fn is_block_forgery(b: &BlockRecord) -> bool {
    b.kind != HONEST && b.changed_ppm >= BLOCK_FORGERY_MIN_CHANGED_PPM
}

/// Sum up one kind's blocks and checks.
fn summarize_blocks(
    kind: &str,
    blocks: &[BlockRecord],
    checks: &[CheckRecord],
) -> BlockKindSummary {
    let of: Vec<&BlockRecord> = blocks.iter().filter(|b| b.kind == kind).collect();
    let forgeries: Vec<&BlockRecord> = of.iter().copied().filter(|b| is_block_forgery(b)).collect();
    let extreme = if kind == HONEST {
        extreme_of(
            of.iter().filter(|b| !b.bytes_equal).map(|b| &b.metrics),
            true,
        )
    } else {
        extreme_of(forgeries.iter().map(|b| &b.metrics), false)
    };
    let checks = BLOCK_KS
        .iter()
        .map(|&k| {
            let all: Vec<&CheckRecord> = checks
                .iter()
                .filter(|c| c.kind == kind && c.k == k)
                .collect();
            let c: Vec<&CheckRecord> = all.iter().copied().filter(|c| counted(c)).collect();
            let mean = |j: usize| {
                c.iter().map(|c| c.blocks[j] as f64).sum::<f64>() / c.len().max(1) as f64
            };
            BlockChecksSummary {
                k,
                checks: c.len(),
                not_forged: all.len() - c.len(),
                mean_blocks: [mean(0), mean(1)],
                aggregate_bands: count(c.iter().map(|c| band_name(c.aggregate_band[0]))),
                first: count(c.iter().map(|c| decision_name(c.decision[0]))),
                escalated: count(c.iter().map(|c| decision_name(c.decision[1]))),
                caught: c.iter().filter(|c| c.caught()).count(),
                extreme_aggregate: extreme_of(c.iter().map(|c| &c.aggregate[0]), kind == HONEST),
            }
        })
        .collect();
    BlockKindSummary {
        kind: kind.to_string(),
        blocks: of.len(),
        bytes_equal: of.iter().filter(|b| b.bytes_equal).count(),
        forged: of.iter().filter(|b| b.alone.is_some()).count(),
        block_forgeries: forgeries.len(),
        bands: count(of.iter().map(|b| band_name(b.band))),
        far_forgeries: forgeries.iter().filter(|b| b.band == Band::Far).count(),
        extreme,
        alone: count(of.iter().filter_map(|b| b.alone).map(alone_outcome)),
        alone_forgeries: count(forgeries.iter().filter_map(|b| b.alone).map(alone_outcome)),
        checks,
    }
}

/// Derive the per-block far limits from the honest blocks and the block forgeries
/// (metrics of blocks with different bytes), starting from `prior`: tightened until every
/// block forgery is beyond one of them by [`CHEAT_MARGIN`] (as the fail limits are in
/// [`derive_tolerance`]), and every honest block must lie inside them by
/// [`HONEST_MARGIN`]. `Err` names the block that cannot be separated.
pub fn derive_block_far(
    prior: &Limits,
    honest: &[TileMetrics],
    forgeries: &[(String, TileMetrics)],
) -> Result<Limits, DeriveError> {
    let l = tighten(prior, forgeries)?;
    inside_by_margin(&l, honest)?;
    Ok(l)
}

/// The block part of the report from the measurements, under `t`.
pub fn block_report(
    s: &ReportSettings,
    t: &Tolerance,
    blocks: &[BlockRecord],
    checks: &[CheckRecord],
) -> BlockReport {
    let kinds: Vec<BlockKindSummary> = std::iter::once(HONEST)
        .chain(Cheat::ALL.iter().map(|c| c.name()))
        .map(|k| summarize_blocks(k, blocks, checks))
        .collect();
    let honest: Vec<TileMetrics> = blocks
        .iter()
        .filter(|b| b.kind == HONEST && !b.bytes_equal)
        .map(|b| b.metrics)
        .collect();
    let forgeries: Vec<(String, String, TileRect, TileMetrics)> = blocks
        .iter()
        .filter(|b| is_block_forgery(b) && !b.bytes_equal)
        .map(|b| (b.kind.clone(), b.scene.clone(), b.rect, b.metrics))
        .collect();
    let by_kind: Vec<(String, TileMetrics)> =
        forgeries.iter().map(|f| (f.0.clone(), f.3)).collect();
    let (derived, derive_error) = match derive_block_far(&PRIOR.block_far, &honest, &by_kind) {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let honest_aggregates: Vec<TileMetrics> = checks
        .iter()
        .filter(|c| c.kind == HONEST)
        .map(|c| c.aggregate[0])
        .collect();
    let cheat_aggregates: Vec<(String, String, TileRect, TileMetrics)> = checks
        .iter()
        .filter(|c| c.kind != HONEST && counted(c))
        .map(|c| {
            let frame = TileRect {
                x: 0,
                y: 0,
                w: s.width,
                h: s.height,
            };
            let at = format!(
                "{}, re-rendered by {}, k {} seed {}",
                c.scene, c.verifier, c.k, c.seed
            );
            (c.kind.clone(), at, frame, c.aggregate[0])
        })
        .collect();
    let wrong: Vec<&CheckRecord> = checks.iter().filter(|c| misjudged(c)).collect();
    let alone_ok = blocks
        .iter()
        .filter(|b| is_block_forgery(b))
        .all(|b| b.alone.is_some_and(|d| alone_outcome(d) == "caught"));
    BlockReport {
        block_size: BLOCK_SIZE,
        ks: BLOCK_KS.to_vec(),
        seeds: BLOCK_SEEDS,
        escalation_multiplier: t.escalation_multiplier,
        block_forgery_min_changed_ppm: BLOCK_FORGERY_MIN_CHANGED_PPM,
        kinds,
        prior: PRIOR.block_far,
        derived,
        derive_error,
        default_block_far: t.block_far,
        margins: BlockMargins {
            honest_blocks: honest_margins(&t.block_far, &honest),
            honest_aggregates: honest_margins(&t.pass, &honest_aggregates),
            cheat_blocks: cheat_margins(&t.block_far, &forgeries),
            cheat_aggregates: cheat_margins(&t.fail, &cheat_aggregates),
        },
        misjudged: wrong
            .iter()
            .take(MISJUDGED_LISTED)
            .map(|c| (*c).clone())
            .collect(),
        misjudged_count: wrong.len(),
        separated: wrong.is_empty() && alone_ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(d: u32, p: u32, fm: u32, f99: u32) -> TileMetrics {
        TileMetrics {
            diverged_ppm: d,
            psnr_cdb: p,
            flip_mean_ppm: fm,
            flip_p99_ppm: f99,
        }
    }

    #[test]
    fn the_prior_is_kept_when_it_separates_the_corpus() {
        let honest = [metrics(0, 9_000, 10, 100)];
        let black = [(
            "black".to_string(),
            metrics(900_000, 1_000, 600_000, 900_000),
        )];
        assert_eq!(derive_tolerance(&PRIOR, &honest, &black), Ok(PRIOR));
        assert_eq!(derive_tolerance(&PRIOR, &[], &[]), Ok(PRIOR));
    }

    #[test]
    fn a_forgery_inside_the_prior_tightens_the_cheapest_limit() {
        // 3 % diverged is caught by a 1.5 % fail limit (a quarter of the prior's 6 %);
        // PSNR 45 dB would need 49 dB (19 dB tighter), FLIP far more.
        let f = [("replay".to_string(), metrics(30_000, 4_500, 2_000, 40_000))];
        let t = derive_tolerance(&PRIOR, &[], &f).unwrap();
        assert_eq!(t.fail.max_diverged_ppm, 15_000);
        assert_eq!(t.pass.max_diverged_ppm, 5_000);
        assert_eq!((t.pass.min_psnr_cdb, t.fail.min_psnr_cdb), (4_000, 3_000));
        assert_eq!(t.band(false, &f[0].1), Band::Far);
        // Only PSNR can catch this one: the fail limit rises to value + 3 dB, whole dB.
        let f = [("blur".to_string(), metrics(0, 3_562, 0, 0))];
        let t = derive_tolerance(&PRIOR, &[], &f).unwrap();
        assert_eq!(t.fail.min_psnr_cdb, 3_900);
        assert_eq!(t.pass.min_psnr_cdb, 4_900);
    }

    #[test]
    fn honest_pairs_too_close_to_the_forgeries_are_an_error() {
        let f = [("replay".to_string(), metrics(30_000, 10_000, 0, 0))];
        // The derived pass limit is 0.5 % diverged; 0.2 % is not inside it by 4x.
        let err = derive_tolerance(&PRIOR, &[metrics(2_000, 9_000, 0, 0)], &f)
            .unwrap_err()
            .to_string();
        assert!(err.contains("diverged_ppm = 2000"), "{err}");
        let err = derive_tolerance(&PRIOR, &[], &[("x".into(), metrics(5, 10_000, 5, 5))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("within every limit"), "{err}");
    }

    #[test]
    fn margins_name_the_least_separated_forgery() {
        let rect = TileRect {
            x: 0,
            y: 0,
            w: 8,
            h: 8,
        };
        let f = [
            (
                "noise".to_string(),
                "a".to_string(),
                rect,
                metrics(900_000, 2_000, 0, 0),
            ),
            (
                "noise".to_string(),
                "b".to_string(),
                rect,
                metrics(120_000, 3_500, 0, 0),
            ),
        ];
        let m = margins(&PRIOR, &[metrics(100, 8_000, 0, 0)], &f);
        assert_eq!(m.honest[0].ratio, Some(200.0));
        assert_eq!(m.honest[1].db, Some(40.0));
        assert_eq!(m.honest[2].ratio, None);
        assert_eq!(m.cheats.len(), 1);
        let c = &m.cheats[0];
        assert_eq!(
            (c.scene.as_str(), c.metric.as_str(), c.value),
            ("b", "diverged_ppm", 120_000)
        );
        assert!((c.ratio - 2.0).abs() < 1e-12);
    }

    fn class(name: &str, id: &str) -> ClassReport {
        ClassReport {
            name: name.into(),
            about: String::new(),
            env: BTreeMap::new(),
            class: DeterminismClass {
                backend: "test".into(),
                adapter: name.into(),
                driver: String::new(),
                driver_info: String::new(),
                renderer_build: String::new(),
                shader_hash: String::new(),
            },
            id: id.into(),
            gpu_init_s: 0.0,
            render_s: 0.0,
        }
    }

    /// A frame whose pixel (x, y) has red x/w + offset, green y/h, blue 0.25.
    fn gradient(width: u32, height: u32, offset: f32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
                v.extend_from_slice(&[fx + offset, fy, 0.25, 1.0]);
            }
        }
        tessera_protocol::canonical::f32_to_tile(&v)
    }

    #[test]
    fn a_report_counts_every_pair_and_keeps_records_only_when_asked() {
        let s = ReportSettings {
            width: 32,
            height: 16,
            spp: 8,
            tile: 16,
            max_bounces: 4,
            seed: 1,
            frame: 0,
        };
        let node: BTreeMap<String, Vec<u8>> = render_jobs(&s, 0)
            .into_iter()
            .map(|j| (j.name, gradient(32, 16, 0.0)))
            .collect();
        assert_eq!(node.len(), 5);
        let other: BTreeMap<String, Vec<u8>> = render_jobs(&s, 1)
            .into_iter()
            .map(|j| (j.name, gradient(32, 16, 0.0)))
            .collect();
        assert_eq!(other.keys().collect::<Vec<_>>(), [HONEST]);
        let classes = vec![class("a", "01"), class("b", "02")];
        let frames = vec![vec![node], vec![other]];
        let r = report(&s, vec!["scene".into()], classes.clone(), &frames, false).unwrap();
        assert_eq!(r.class_pairs.len(), 1);
        assert_eq!(
            (r.class_pairs[0].tiles, r.class_pairs[0].byte_identical),
            (2, 2)
        );
        assert!(r.records.is_empty());
        // Every frame source is the same picture, so only the cheats that change pixels
        // are forgeries: black, noise, blur, neighbour, the patches.
        assert!(r.summary.iter().any(|k| k.kind == "black" && k.pairs == 4));
        assert!(r
            .not_forged
            .iter()
            .any(|n| n.kind == "half-spp" && n.byte_identical));
        // Blocks: 2 tiles of 2×2 blocks, each checked whole (k is larger than 8 blocks).
        let kind = |k: &str| r.blocks.kinds.iter().find(|s| s.kind == k).unwrap();
        let honest = kind(HONEST);
        assert_eq!(
            (honest.blocks, honest.bytes_equal, honest.forged),
            (16, 16, 0)
        );
        assert_eq!(
            honest.checks[0].first.get("pass"),
            Some(&(BLOCK_SEEDS as usize * 2))
        );
        assert_eq!(honest.checks[0].mean_blocks, [8.0, 8.0]);
        // A black frame: every block forged, far on its own, and every check caught.
        let black = kind("black");
        assert_eq!(
            (black.blocks, black.forged, black.far_forgeries),
            (16, 16, 16)
        );
        assert_eq!(black.alone.get("caught"), Some(&16));
        assert!(black
            .checks
            .iter()
            .all(|c| c.caught == c.checks && c.checks > 0));
        // Block-grid forges every other block of each tile's grid: 4 of 8, per verifier.
        assert_eq!(kind("block-grid").forged, 8);
        assert_eq!(kind("sparse").forged, 16);
        assert_eq!(kind("sparse").block_forgeries, 0);
        assert!(r
            .blocks
            .margins
            .cheat_blocks
            .iter()
            .any(|c| c.kind == "black"));
        let with = report(&s, vec!["scene".into()], classes, &frames, true).unwrap();
        assert!(with.records.iter().any(|p| p.kind == HONEST));
        assert_eq!(with.block_records.len(), 16 * (1 + Cheat::ALL.len()));
        assert_eq!(
            with.check_records.len(),
            2 * BLOCK_KS.len() * BLOCK_SEEDS as usize * (1 + Cheat::ALL.len())
        );
        // A class without its frames is named.
        let e = report(&s, vec!["scene".into()], vec![class("a", "01")], &[], false);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("class a: scene scene: no honest frame"));
    }

    #[test]
    fn block_far_is_tightened_for_block_forgeries_and_keeps_honest_blocks_inside() {
        let prior = PRIOR.block_far;
        // A quarter of a block changed: 25 % diverged needs a far limit of 12.5 % or less
        // (ladder: 10 %); ꟻLIP mean 0.024 would need 0.01 (15× tighter than 5×).
        let f = [(
            "half-spp".to_string(),
            metrics(250_000, 3_600, 24_000, 82_000),
        )];
        let l = derive_block_far(&prior, &[metrics(15_625, 5_000, 3_000, 50_000)], &f).unwrap();
        assert_eq!(
            l,
            Limits {
                max_diverged_ppm: 100_000,
                ..prior
            }
        );
        assert!(!l.holds(&f[0].1));
        // Without forgeries inside it, the prior stays.
        assert_eq!(derive_block_far(&prior, &[], &[]), Ok(prior));
        // An honest block with 2 of 64 pixels diverged is not inside 10 % by 4×.
        let err = derive_block_far(&prior, &[metrics(31_250, 5_000, 0, 0)], &f)
            .unwrap_err()
            .to_string();
        assert!(err.contains("diverged_ppm = 31250"), "{err}");
        assert!(err.contains("pass limit 100000"), "{err}");
    }

    /// An 8×8 grey block, `f(x, y)` at each pixel.
    fn block(f: impl Fn(u32, u32) -> f32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..8 {
            for x in 0..8 {
                let c = f(x, y);
                v.extend_from_slice(&[c, c, c, 1.0]);
            }
        }
        tessera_protocol::canonical::f32_to_tile(&v)
    }

    #[test]
    fn block_checks_follow_the_verifiers_rule() {
        let t = Tolerance::default();
        let rect = TileRect {
            x: 0,
            y: 0,
            w: 8,
            h: 8,
        };
        let lit = block(|x, y| 0.2 + (x + y) as f32 / 40.0);
        let black = block(|_, _| 0.0);
        // One pixel off by 0.02 (beyond the pixel tolerance): a close block.
        let speck =
            block(|x, y| 0.2 + (x + y) as f32 / 40.0 + if (x, y) == (3, 3) { 0.02 } else { 0.0 });
        let same = BlockPair {
            committed: &lit,
            rerender: &lit,
            rect,
        };
        let (first, escalated) = (CheckKind::FIRST, CheckKind::FIRST.escalate());
        let all_match = BlockCheck::judge(&t, &[same; 4]).unwrap();
        assert_eq!(all_match.aggregate, TileMetrics::IDENTICAL);
        assert_eq!(all_match.decision(first), Decision::Pass);
        // One black block among 200 identical ones: the aggregate alone is not far
        // (64 of 12 864 pixels diverged, just under 0.5 %), the block is.
        let mut pairs = vec![same; 200];
        pairs.push(BlockPair {
            rerender: &black,
            ..same
        });
        let one_black = BlockCheck::judge(&t, &pairs).unwrap();
        assert_eq!(one_black.far_blocks(), 1);
        assert_eq!(one_black.decision(first), Decision::Escalate);
        assert_eq!(one_black.decision(escalated), Decision::Fail);
        // One pixel off among 4 blocks: 1 of 256 pixels diverged (0.39 %), ambiguous;
        // no block is far, so the escalated check is inconclusive.
        let mut pairs = vec![same; 3];
        pairs.push(BlockPair {
            rerender: &speck,
            ..same
        });
        let speck_check = BlockCheck::judge(&t, &pairs).unwrap();
        assert_eq!(speck_check.far_blocks(), 0);
        assert_eq!(speck_check.aggregate_band, Band::Ambiguous);
        assert_eq!(speck_check.decision(escalated), Decision::Inconclusive);
        // What a node that forged that block alone comes to.
        assert_eq!(
            alone_outcome([Decision::Escalate, Decision::Fail]),
            "caught"
        );
        assert_eq!(
            alone_outcome([Decision::Escalate, Decision::Inconclusive]),
            "inconclusive"
        );
        assert_eq!(alone_outcome([Decision::Pass, Decision::Fail]), "pass");
    }
}
