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
//!
//! This module does no IO: rendering the classes (each in its own process, because the
//! drivers read their environment when they load) and printing are the binary's.

use crate::tolerance::tile_metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_node::cheats::{forge, Cheat, NodeFrames, Source};
use tessera_protocol::canonical::crop;
use tessera_protocol::tolerance::{Band, Limits, TileMetrics, Tolerance, PSNR_CAP_CDB};
use tessera_protocol::{tile_layout, DeterminismClass, TileRect};

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
    /// Seconds of the whole run.
    pub runtime_s: f64,
    /// Every compared pair (with `--records`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<PairRecord>,
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
    block_far: Limits::block_far_default(),
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
    loop {
        // For each forgery not caught: its cheapest tightening (factor, metric, limit).
        let mut hardest: Option<(f64, usize, u32)> = None;
        for (kind, m) in forgeries {
            if best_beyond(m, &t.fail).0 >= CHEAT_MARGIN {
                continue;
            }
            let cheapest = (0..4)
                .filter_map(|i| {
                    let l = limit_catching(i, metric(m, i))?;
                    let factor = 1.0 / beyond(i, limit(&t.fail, i), l).max(1.0);
                    Some((factor, i, l))
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
        let Some((_, i, l)) = hardest else { break };
        set_limit(&mut t.fail, i, l);
    }
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
    for m in honest {
        for (i, name) in METRICS.iter().enumerate() {
            let (v, pass) = (metric(m, i), limit(&t.pass, i));
            if beyond(i, v, pass) * HONEST_MARGIN > 1.0 + 1e-9 {
                return Err(DeriveError::HonestTooClose {
                    metric: name,
                    value: v,
                    pass,
                });
            }
        }
    }
    t.check().map_err(DeriveError::Invalid)?;
    Ok(t)
}

/// Margins of `t` on `honest` pairs and `forgeries` (`(kind, scene, tile, metrics)`).
pub fn margins(
    t: &Tolerance,
    honest: &[TileMetrics],
    forgeries: &[(String, String, TileRect, TileMetrics)],
) -> Margins {
    let mut out = Margins::default();
    for (i, name) in METRICS.iter().enumerate() {
        let values = honest.iter().map(|m| metric(m, i));
        let worst = if i == PSNR {
            values.min()
        } else {
            values.max()
        };
        let pass = limit(&t.pass, i);
        let ratio = worst.and_then(|w| {
            let r = 1.0 / beyond(i, w, pass);
            r.is_finite().then_some(r)
        });
        out.honest.push(HonestMargin {
            metric: name.to_string(),
            worst,
            pass,
            ratio,
            db: worst
                .filter(|_| i == PSNR)
                .map(|w| (f64::from(w) - f64::from(pass)) / 100.0),
        });
    }
    for cheat in Cheat::ALL {
        let of_kind: Vec<_> = forgeries.iter().filter(|f| f.0 == cheat.name()).collect();
        let least = of_kind
            .iter()
            .map(|f| (best_beyond(&f.3, &t.fail), f))
            .min_by(|a, b| a.0 .0.total_cmp(&b.0 .0));
        if let Some(((ratio, i), (_, scene, tile, m))) = least {
            let (value, fail) = (metric(m, i), limit(&t.fail, i));
            out.cheats.push(CheatMargin {
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
        let node_frames = NodeFrames {
            width: fw,
            height: fh,
            frames: Source::ALL
                .into_iter()
                .filter_map(|src| Some((src, frames.first()?.get(si)?.get(src.name())?.as_slice())))
                .collect(),
        };
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
            let differing: Vec<&TileMetrics> = of_kind
                .iter()
                .filter(|r| !r.bytes_equal)
                .map(|r| &r.metrics)
                .collect();
            // Honest pairs: the largest distance; forgeries: the smallest.
            let pick = |i: usize| {
                let v = differing.iter().map(|m| metric(m, i));
                if (kind == HONEST) == (i == PSNR) {
                    v.min()
                } else {
                    v.max()
                }
            };
            let extreme = (!differing.is_empty()).then(|| TileMetrics {
                diverged_ppm: pick(0).unwrap_or(0),
                psnr_cdb: pick(1).unwrap_or(PSNR_CAP_CDB),
                flip_mean_ppm: pick(2).unwrap_or(0),
                flip_p99_ppm: pick(3).unwrap_or(0),
            });
            let mut bands = BTreeMap::new();
            for r in &of_kind {
                *bands.entry(band_name(r.band).to_string()).or_insert(0) += 1;
            }
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
    let (derived, derive_error) = match derive_tolerance(&PRIOR, &honest, &kinds) {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let t = Tolerance::default();
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
        runtime_s: 0.0,
        records: if keep_records { records } else { Vec::new() },
    })
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
        let with = report(&s, vec!["scene".into()], classes, &frames, true).unwrap();
        assert!(with.records.iter().any(|p| p.kind == HONEST));
        // A class without its frames is named.
        let e = report(&s, vec!["scene".into()], vec![class("a", "01")], &[], false);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("class a: scene scene: no honest frame"));
    }
}
