//! The stand-in renderers of `tessera simulate`: a memo around the CPU stub, a stand-in of
//! another determinism class, and the forging wrapper a cheating node renders through.
//! All are [`TileRenderer`]s, so the node, verifier and tolerance code they feed is the
//! real one.

use crate::stats::{digest, mix_unit, unit, unit_seed};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tessera_node::cheats::{black_tile as black, neighbour, quarter_spp};
use tessera_protocol::blocks::{block_rect, local_rect, n_blocks, BLOCK_SIZE};
use tessera_protocol::canonical::{crop, f32_to_tile, paste, tile_to_f32};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::{
    DeterminismClass, Digest, RenderFailure, RenderSettings, TileRect, TileRenderer,
};

/// Distinct tiles a [`Memo`] keeps before it starts over (a bound on its memory).
const MEMO_CAPACITY: usize = 1 << 16;

/// The render settings that decide a stand-in's bytes, with the frame and the tile.
type MemoKey = (u64, u32, u32, u32, u32, u32, TileRect);

/// Remembers every tile its inner renderer made. The stand-ins' bytes are a pure function
/// of (settings, frame, tile), and every simulated job renders the same settings, so each
/// distinct tile is computed once per worker: what the simulation times is the protocol
/// (hashing, Merkle trees, signatures, metrics), not the stand-in.
pub struct Memo {
    inner: Arc<dyn TileRenderer>,
    tiles: Mutex<HashMap<MemoKey, Vec<u8>>>,
}

impl Memo {
    /// A memo around `inner`.
    pub fn new(inner: Arc<dyn TileRenderer>) -> Self {
        Self {
            inner,
            tiles: Mutex::new(HashMap::new()),
        }
    }
}

impl TileRenderer for Memo {
    fn class(&self) -> &DeterminismClass {
        self.inner.class()
    }

    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        // Camera and frame rate are the same in every simulated job; the rest is the key.
        let key = (
            settings.seed,
            settings.spp,
            settings.width,
            settings.height,
            settings.max_bounces,
            frame,
            rect,
        );
        if let Some(t) = self.lock().get(&key) {
            return Ok(t.clone());
        }
        let bytes = self.inner.render_tile(settings, frame, rect)?;
        let mut tiles = self.lock();
        if tiles.len() >= MEMO_CAPACITY {
            tiles.clear();
        }
        tiles.insert(key, bytes.clone());
        Ok(bytes)
    }
}

impl Memo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MemoKey, Vec<u8>>> {
        self.tiles.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Share of tiles whose bytes differ between the two honest classes at all (the others
/// are byte-identical, as most tiles of the calibrated lavapipe classes are).
pub const OTHER_CLASS_DIFFERS: f64 = 0.05;
/// Share of tiles where the other class lands in the ambiguous band: a few pixels
/// diverged, just beyond the pass limit (an honest tile that still escalates).
pub const OTHER_CLASS_AMBIGUOUS: f64 = 0.0005;
/// How far a diverged pixel's channel moves (linear units): beyond the pixel tolerance
/// (0.002 + 2 % of the value), small enough that ꟻLIP stays inside the fail limits.
const DIVERGED_STEP: f32 = 0.03;

/// A stand-in of another determinism class: the inner renderer's tile, changed the way
/// another adapter's honest render differs (docs/CALIBRATION.md). Most tiles are
/// byte-identical; one in 20 differs by one half-float step in a few pixels, below the
/// pixel tolerance (close); one in [`OTHER_CLASS_AMBIGUOUS`]⁻¹ has just more diverged
/// pixels than the default tolerance's pass limit allows (ambiguous). Never anything a
/// cheat gives.
pub struct OtherClass {
    inner: Arc<dyn TileRenderer>,
    class: DeterminismClass,
    scene: Digest,
}

/// What the other class does to one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Nothing: the same bytes.
    None,
    /// Half-float steps below the pixel tolerance.
    Close,
    /// Diverged pixels between the pass and fail limits.
    Ambiguous,
}

/// Diverged pixels of an ambiguous tile of `pixels` pixels: one more than the default
/// tolerance's pass limit allows (one pixel of a 16 × 16 tile, 7 of a 64 × 64 one), which
/// stays inside its fail limit for every tile of 16 × 16 pixels or more.
pub fn ambiguous_pixels(pixels: u64) -> u64 {
    let pass = u64::from(Tolerance::default().pass.max_diverged_ppm);
    (pass * pixels / 1_000_000 + 1).min(pixels)
}

impl OtherClass {
    /// The other class around `inner`, rendering the scene `scene` (a renderer is bound
    /// to one scene; where this class drifts depends on it, as a real adapter's
    /// differences depend on what is rendered).
    pub fn new(inner: Arc<dyn TileRenderer>, scene: Digest) -> Self {
        let mut class = inner.class().clone();
        class.adapter = format!("{} (simulated other adapter)", class.adapter);
        class.driver = "stub-other".into();
        Self {
            inner,
            class,
            scene,
        }
    }

    fn key(&self, settings: &RenderSettings, frame: u32, rect: TileRect) -> Digest {
        digest(&[
            b"other class",
            &self.scene,
            &settings.seed.to_le_bytes(),
            &frame.to_le_bytes(),
            &rect.x.to_le_bytes(),
            &rect.y.to_le_bytes(),
        ])
    }

    /// How this class's render of a tile differs from the inner renderer's.
    pub fn drift(&self, settings: &RenderSettings, frame: u32, rect: TileRect) -> Drift {
        let d = self.key(settings, frame, rect);
        let u = unit(&d, 0);
        if u < OTHER_CLASS_AMBIGUOUS {
            Drift::Ambiguous
        } else if u < OTHER_CLASS_DIFFERS {
            Drift::Close
        } else {
            Drift::None
        }
    }
}

impl TileRenderer for OtherClass {
    fn class(&self) -> &DeterminismClass {
        &self.class
    }

    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        let mut bytes = self.inner.render_tile(settings, frame, rect)?;
        let pixels = rect.pixels() as usize;
        let d = self.key(settings, frame, rect);
        // Pixel `i` of the drift: spread over the tile by the key.
        let pixel = |i: usize| {
            let b = d[(2 + i) % 32] as usize | (d[(3 + 5 * i) % 32] as usize) << 8;
            (b + i * 7919) % pixels
        };
        match self.drift(settings, frame, rect) {
            Drift::None => {}
            Drift::Close => {
                for i in 0..4 {
                    step_half(&mut bytes, pixel(i), i % 3);
                }
            }
            Drift::Ambiguous => {
                // n distinct pixels, evenly spaced from a drawn start.
                let n = ambiguous_pixels(pixels as u64) as usize;
                let spacing = pixels / n;
                for i in 0..n {
                    diverge(&mut bytes, (pixel(0) + i * spacing) % pixels, i % 3);
                }
            }
        }
        Ok(bytes)
    }
}

/// Move channel `c` of pixel `p` by one half-float step (towards zero when at the top).
fn step_half(bytes: &mut [u8], p: usize, c: usize) {
    let at = p * 8 + c * 2;
    let v = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let stepped = if v & 0x7fff == 0 { v + 1 } else { v - 1 };
    bytes[at..at + 2].copy_from_slice(&stepped.to_le_bytes());
}

/// Move channel `c` of pixel `p` by [`DIVERGED_STEP`] (down when that stays ≥ 0).
fn diverge(bytes: &mut [u8], p: usize, c: usize) {
    let at = p * 8 + c * 2;
    let v = half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32();
    let moved = if v >= DIVERGED_STEP {
        v - DIVERGED_STEP
    } else {
        v + DIVERGED_STEP
    };
    bytes[at..at + 2].copy_from_slice(&half::f16::from_f32(moved).to_le_bytes());
}

/// How a cheater forges one region (a whole tile or one block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forgery {
    /// A quarter of the samples, the full count claimed.
    QuarterSpp,
    /// Black, nothing rendered.
    Black,
    /// The honest render with ±10 % noise (a "touched-up" render).
    Noise,
    /// The region beside it rendered and served for this one.
    Copy,
}

impl Forgery {
    /// Every kind, in the order a forged region's kind is drawn from.
    pub const ALL: [Forgery; 4] = [
        Forgery::QuarterSpp,
        Forgery::Black,
        Forgery::Noise,
        Forgery::Copy,
    ];

    /// The claimed samples of one pixel of this kind that are not behind its value: the
    /// three quarters skipped by [`Forgery::QuarterSpp`], every sample of the others
    /// (their value is made up, whatever was rendered on the way).
    pub fn forged_samples(self, spp: u32) -> u64 {
        match self {
            Forgery::QuarterSpp => u64::from(spp - quarter(spp)),
            _ => u64::from(spp),
        }
    }
}

/// The samples a quarter-spp forgery renders: a quarter, at least one
/// (`tessera_node::cheats::quarter_spp`).
fn quarter(spp: u32) -> u32 {
    (spp / 4).max(1)
}

/// The shape of a cheater's forgery (`tessera simulate --shape`): which pixels, and how
/// much of each pixel's work, it forges for a forged fraction f of its pixel-work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Whole tiles, each forged with probability f, its kind drawn from [`Forgery::ALL`].
    Tiles,
    /// Scattered blocks: each 8 × 8 block of the protocol's block grid forged
    /// independently with probability f (a kind of [`Forgery::ALL`] each, restricted to
    /// the block), the rest of the tile honest.
    Blocks,
    /// Lower spp everywhere: every tile rendered with spp − round(f · spp) samples, the
    /// full count claimed.
    Spp,
    /// Small patches in many tiles: one rectangle of about f of the tile's pixels in every
    /// tile, off the block grid, black or noise.
    Patches,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [Shape::Tiles, Shape::Blocks, Shape::Spp, Shape::Patches];

    /// The name `--shape` takes and the report prints.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Tiles => "tiles",
            Shape::Blocks => "blocks",
            Shape::Spp => "spp",
            Shape::Patches => "patches",
        }
    }

    /// The shape named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The samples per pixel the [`Shape::Spp`] forger leaves out: round(f · spp).
pub fn spp_dropped(fraction: f64, spp: u32) -> u32 {
    // Inside [0, spp] for every f in [0, 1]; the cast saturates on anything else.
    (fraction * f64::from(spp))
        .round()
        .clamp(0.0, f64::from(spp)) as u32
}

/// The edge lengths of a [`Shape::Patches`] patch in a `w` × `h` tile: about `fraction`
/// of its pixels, as square as the tile allows, at least one pixel.
pub fn patch_size(fraction: f64, w: u32, h: u32) -> (u32, u32) {
    let target = fraction.clamp(0.0, 1.0) * f64::from(w) * f64::from(h);
    let pw = (target.sqrt().round() as u32).clamp(1, w.max(1));
    let ph = ((target / f64::from(pw)).round() as u32).clamp(1, h.max(1));
    (pw, ph)
}

/// A patch position in `0..=room` off the block grid, from `u` in [0, 1): one of the
/// positions that are not a multiple of the block size, or 0 when there is none.
fn unaligned(room: u32, u: f64) -> u32 {
    let b = BLOCK_SIZE;
    let choices = room - room / b;
    if choices == 0 {
        return 0;
    }
    let i = ((u * f64::from(choices)) as u32).min(choices - 1);
    // The i-th positive position that is not a multiple of b.
    i + i / (b - 1) + 1
}

/// What a cheater does to one tile: a pure function of the job's salt, the frame and the
/// tile ([`Forger::plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TilePlan {
    /// Rendered honestly.
    Honest,
    /// The whole tile forged.
    Whole(Forgery),
    /// These blocks (index in the tile, ascending) forged, the rest honest.
    Blocks(Vec<(u32, Forgery)>),
    /// Every pixel rendered with this many samples (fewer than the job's), the job's
    /// claimed.
    Spp(u32),
    /// The pixels of `rect` (relative to the tile's corner) forged, the rest honest.
    Patch {
        /// The patch, relative to the tile's corner.
        rect: TileRect,
        /// Its content: [`Forgery::Black`] or [`Forgery::Noise`].
        kind: Forgery,
    },
}

impl TilePlan {
    /// Pixels of `tile` whose value is not the honest one.
    pub fn forged_pixels(&self, tile: TileRect) -> u64 {
        match self {
            TilePlan::Honest => 0,
            TilePlan::Whole(_) | TilePlan::Spp(_) => tile.pixels(),
            TilePlan::Blocks(blocks) => blocks
                .iter()
                .filter_map(|&(b, _)| local_rect(tile, b))
                .map(|r| r.pixels())
                .sum(),
            TilePlan::Patch { rect, .. } => rect.pixels(),
        }
    }

    /// Claimed pixel-samples of `tile` (at `spp` samples a pixel) that are not behind the
    /// delivered values: [`Forgery::forged_samples`] for each forged pixel, spp minus the
    /// samples rendered for each pixel of a lower-spp tile.
    pub fn forged_samples(&self, tile: TileRect, spp: u32) -> u64 {
        match self {
            TilePlan::Honest => 0,
            TilePlan::Whole(kind) => tile.pixels() * kind.forged_samples(spp),
            TilePlan::Spp(rendered) => tile.pixels() * u64::from(spp.saturating_sub(*rendered)),
            TilePlan::Blocks(blocks) => blocks
                .iter()
                .filter_map(|&(b, kind)| {
                    Some(local_rect(tile, b)?.pixels() * kind.forged_samples(spp))
                })
                .sum(),
            TilePlan::Patch { rect, kind } => rect.pixels() * kind.forged_samples(spp),
        }
    }

    /// Whether block `block` of `tile` holds a forged pixel.
    pub fn touches(&self, tile: TileRect, block: u32) -> bool {
        let Some(b) = local_rect(tile, block) else {
            return false;
        };
        match self {
            TilePlan::Honest => false,
            TilePlan::Whole(_) | TilePlan::Spp(_) => true,
            TilePlan::Blocks(blocks) => blocks.binary_search_by_key(&block, |&(i, _)| i).is_ok(),
            TilePlan::Patch { rect: p, .. } => {
                p.x < b.x + b.w && b.x < p.x + p.w && p.y < b.y + b.h && b.y < p.y + p.h
            }
        }
    }

    /// Pixels of `tile` that lie in blocks holding a forged pixel: what the block
    /// sampling can see of the forgery.
    pub fn touched_pixels(&self, tile: TileRect) -> u64 {
        (0..n_blocks(tile))
            .filter(|&b| self.touches(tile, b))
            .filter_map(|b| local_rect(tile, b))
            .map(|r| r.pixels())
            .sum()
    }
}

/// A cheater's renderer for one job: it forges the pixel-work of its tiles in the
/// job's [`Shape`] for the forged fraction `fraction`, and renders the rest honestly. It
/// claims the inner renderer's class and the node commits to whatever it returns, so
/// integrity holds and only a re-render can tell. What is forged is a pure function of
/// the job's salt, the frame and the tile ([`Forger::plan`]).
pub struct Forger {
    inner: Arc<dyn TileRenderer>,
    salt: Digest,
    fraction: f64,
    shape: Shape,
}

impl Forger {
    /// A forger around `inner` for one job (`salt`), forging `fraction` of its work in
    /// `shape`.
    pub fn new(inner: Arc<dyn TileRenderer>, salt: Digest, fraction: f64, shape: Shape) -> Self {
        Self {
            inner,
            salt,
            fraction,
            shape,
        }
    }

    fn key(&self, frame: u32, rect: TileRect) -> Digest {
        digest(&[
            b"forge",
            &self.salt,
            &frame.to_le_bytes(),
            &rect.x.to_le_bytes(),
            &rect.y.to_le_bytes(),
        ])
    }

    fn block_key(&self, frame: u32, rect: TileRect, block: u32) -> Digest {
        digest(&[
            b"forge block",
            &self.salt,
            &frame.to_le_bytes(),
            &rect.x.to_le_bytes(),
            &rect.y.to_le_bytes(),
            &block.to_le_bytes(),
        ])
    }

    /// What the forger does to tile `rect` of `frame` of a job rendered at `spp`.
    pub fn plan(&self, frame: u32, rect: TileRect, spp: u32) -> TilePlan {
        let draw = |d: &Digest| (unit(d, 0) < self.fraction).then(|| kind_of(d));
        match self.shape {
            Shape::Tiles => draw(&self.key(frame, rect)).map_or(TilePlan::Honest, TilePlan::Whole),
            Shape::Blocks => {
                let forged: Vec<_> = (0..n_blocks(rect))
                    .filter_map(|b| Some((b, draw(&self.block_key(frame, rect, b))?)))
                    .collect();
                if forged.is_empty() {
                    TilePlan::Honest
                } else {
                    TilePlan::Blocks(forged)
                }
            }
            Shape::Spp => match spp_dropped(self.fraction, spp) {
                0 => TilePlan::Honest,
                dropped => TilePlan::Spp(spp - dropped),
            },
            Shape::Patches => {
                if self.fraction <= 0.0 || rect.pixels() == 0 {
                    return TilePlan::Honest;
                }
                let d = self.key(frame, rect);
                let (w, h) = patch_size(self.fraction, rect.w, rect.h);
                TilePlan::Patch {
                    rect: TileRect {
                        x: unaligned(rect.w - w, unit(&d, 1)),
                        y: unaligned(rect.h - h, unit(&d, 2)),
                        w,
                        h,
                    },
                    kind: if d[8].is_multiple_of(2) {
                        Forgery::Black
                    } else {
                        Forgery::Noise
                    },
                }
            }
        }
    }

    /// The bytes of `region` (frame coordinates) forged as `kind`; `salt` seeds noise.
    fn forge_region(
        &self,
        kind: Forgery,
        settings: &RenderSettings,
        frame: u32,
        region: TileRect,
        salt: u64,
    ) -> Result<Vec<u8>, RenderFailure> {
        match kind {
            Forgery::QuarterSpp => self
                .inner
                .render_tile(&quarter_spp(settings), frame, region),
            Forgery::Black => Ok(black(region)),
            Forgery::Noise => Ok(noise(
                &self.inner.render_tile(settings, frame, region)?,
                salt,
            )),
            Forgery::Copy => match neighbour(region, settings.width, settings.height) {
                Some(source) => self.inner.render_tile(settings, frame, source),
                None => Ok(black(region)),
            },
        }
    }
}

/// A forged region's kind, drawn uniformly from [`Forgery::ALL`] by byte 8 of its digest.
fn kind_of(d: &Digest) -> Forgery {
    Forgery::ALL[d[8] as usize % Forgery::ALL.len()]
}

/// ±10 % multiplicative noise on the colour channels of canonical bytes (alpha untouched).
fn noise(bytes: &[u8], salt: u64) -> Vec<u8> {
    let mut values = tile_to_f32(bytes);
    for (i, v) in values.iter_mut().enumerate() {
        if i % 4 != 3 {
            *v *= 0.9 + 0.2 * mix_unit(salt, i as u64) as f32;
        }
    }
    f32_to_tile(&values)
}

impl TileRenderer for Forger {
    fn class(&self) -> &DeterminismClass {
        self.inner.class()
    }

    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        let paste_into = |tile: &mut Vec<u8>, local: TileRect, bytes: &[u8]| {
            if paste(tile, rect.w, rect.h, local, bytes) {
                Ok(())
            } else {
                Err(RenderFailure(format!(
                    "forger: {local} does not fit tile {rect}"
                )))
            }
        };
        match self.plan(frame, rect, settings.spp) {
            TilePlan::Honest => self.inner.render_tile(settings, frame, rect),
            TilePlan::Whole(kind) => {
                let salt = unit_seed(&self.key(frame, rect));
                self.forge_region(kind, settings, frame, rect, salt)
            }
            TilePlan::Blocks(blocks) => {
                let mut tile = self.inner.render_tile(settings, frame, rect)?;
                for (b, kind) in blocks {
                    let (Some(local), Some(global)) = (local_rect(rect, b), block_rect(rect, b))
                    else {
                        continue;
                    };
                    let salt = unit_seed(&self.block_key(frame, rect, b));
                    let bytes = self.forge_region(kind, settings, frame, global, salt)?;
                    paste_into(&mut tile, local, &bytes)?;
                }
                Ok(tile)
            }
            TilePlan::Spp(0) => Ok(black(rect)),
            TilePlan::Spp(rendered) => {
                let mut cheap = settings.clone();
                cheap.spp = rendered;
                self.inner.render_tile(&cheap, frame, rect)
            }
            TilePlan::Patch { rect: local, kind } => {
                let mut tile = self.inner.render_tile(settings, frame, rect)?;
                let bytes = match kind {
                    Forgery::Black => black(local),
                    _ => {
                        let honest = crop(&tile, rect.w, rect.h, local).ok_or_else(|| {
                            RenderFailure(format!("forger: patch {local} outside tile {rect}"))
                        })?;
                        noise(&honest, unit_seed(&self.key(frame, rect)))
                    }
                };
                paste_into(&mut tile, local, &bytes)?;
                Ok(tile)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_node::stub::HashRenderer;
    use tessera_protocol::tile_layout;
    use tessera_protocol::tolerance::Band;
    use tessera_verifier::tolerance::tile_metrics;

    fn settings() -> RenderSettings {
        RenderSettings {
            width: 64 * 16,
            height: 16,
            spp: 4,
            max_bounces: 0,
            seed: 3,
            camera: None,
            frame_rate: Default::default(),
        }
    }

    fn stub() -> Arc<dyn TileRenderer> {
        Arc::new(HashRenderer::new(std::time::Duration::ZERO))
    }

    /// The band the default tolerance puts `test` in against `reference`.
    fn band(reference: &[u8], test: &[u8], rect: TileRect) -> Band {
        let t = Tolerance::default();
        let m = tile_metrics(&t, reference, test, rect).unwrap();
        t.band(reference == test, &m)
    }

    #[test]
    fn every_forgery_is_far_and_honest_tiles_are_untouched() {
        let s = settings();
        let honest = stub();
        let mut kinds = std::collections::BTreeMap::new();
        for (job, fraction) in [(0u8, 0.0), (1, 1.0), (2, 0.3)] {
            let forger = Forger::new(honest.clone(), [job; 32], fraction, Shape::Tiles);
            assert_eq!(forger.class(), honest.class());
            for frame in 0..3 {
                for rect in tile_layout(s.width, s.height, 16) {
                    let want = honest.render_tile(&s, frame, rect).unwrap();
                    let got = forger.render_tile(&s, frame, rect).unwrap();
                    match forger.plan(frame, rect, s.spp) {
                        TilePlan::Honest => assert_eq!(got, want),
                        TilePlan::Whole(kind) => {
                            assert_eq!(band(&want, &got, rect), Band::Far, "{kind:?}");
                            *kinds.entry(kind).or_insert(0) += 1;
                        }
                        other => panic!("a tiles forger planned {other:?}"),
                    }
                }
            }
        }
        // Every kind is drawn, and only the forged fraction of tiles is forged.
        assert_eq!(kinds.len(), Forgery::ALL.len(), "{kinds:?}");
        let forged: u32 = kinds.values().sum();
        assert!((192 + 30..192 + 90).contains(&forged), "{forged}");
    }

    /// The pixels of `a` and `b` (canonical bytes of one tile) whose bytes differ.
    fn differing(a: &[u8], b: &[u8]) -> Vec<bool> {
        a.chunks_exact(8)
            .zip(b.chunks_exact(8))
            .map(|(x, y)| x != y)
            .collect()
    }

    /// Whether `x` successes of `n` trials are within 4.5 standard deviations of a
    /// Binomial(n, p) mean (a fixed draw; 4.5 σ keeps a fair forger inside, and a forger
    /// off by a fifth of f at these sizes outside).
    fn binomial_ok(x: u64, n: u64, p: f64) -> bool {
        let (n, x) = (n as f64, x as f64);
        (x - n * p).abs() <= 4.5 * (n * p * (1.0 - p)).sqrt()
    }

    /// Render `frames` frames of 64 tiles of `edge` × `edge` pixels at `spp` through a
    /// `shape` forger of `fraction`, and check, tile by tile, that the pixels whose bytes
    /// differ from the honest render are exactly those its plan says it forged and that
    /// the blocks they lie in are those it says it touched. Returns (forged pixels
    /// measured from the bytes, forged blocks (for [`Shape::Blocks`]), blocks, pixels).
    fn measure(
        shape: Shape,
        fraction: f64,
        edge: u32,
        spp: u32,
        frames: u32,
    ) -> (u64, u64, u64, u64) {
        let s = RenderSettings {
            width: 64 * edge,
            height: edge,
            spp,
            ..settings()
        };
        let honest = stub();
        let forger = Forger::new(honest.clone(), [shape as u8 + 40; 32], fraction, shape);
        let (mut forged_px, mut forged_blocks, mut blocks, mut pixels) = (0, 0, 0, 0);
        for frame in 0..frames {
            for rect in tile_layout(s.width, s.height, edge) {
                let want = honest.render_tile(&s, frame, rect).unwrap();
                let got = forger.render_tile(&s, frame, rect).unwrap();
                let plan = forger.plan(frame, rect, spp);
                let diff = differing(&want, &got);
                let measured = diff.iter().filter(|&&d| d).count() as u64;
                pixels += rect.pixels();
                blocks += u64::from(n_blocks(rect));
                forged_px += measured;
                match &plan {
                    TilePlan::Honest => assert_eq!(got, want, "{shape} {frame} {rect}"),
                    TilePlan::Spp(rendered) => {
                        // Exactly the honest samples up to `rendered`: a prefix of the
                        // honest render's.
                        let cheap = RenderSettings {
                            spp: *rendered,
                            ..s.clone()
                        };
                        assert_eq!(got, honest.render_tile(&cheap, frame, rect).unwrap());
                    }
                    _ => assert_eq!(
                        measured,
                        plan.forged_pixels(rect),
                        "{shape} {rect} {plan:?}"
                    ),
                }
                if let TilePlan::Blocks(b) = &plan {
                    forged_blocks += b.len() as u64;
                }
                // The blocks holding a differing pixel are the touched ones.
                for b in 0..n_blocks(rect) {
                    let r = local_rect(rect, b).unwrap();
                    let any = (r.y..r.y + r.h)
                        .any(|y| (r.x..r.x + r.w).any(|x| diff[(y * rect.w + x) as usize]));
                    if !matches!(plan, TilePlan::Spp(_)) {
                        assert_eq!(
                            any,
                            plan.touches(rect, b),
                            "{shape} {rect} block {b} {plan:?}"
                        );
                    }
                }
            }
        }
        (forged_px, forged_blocks, blocks, pixels)
    }

    #[test]
    fn whole_tiles_forge_f_of_the_pixels() {
        for f in [0.05, 0.2] {
            let (px, _, _, pixels) = measure(Shape::Tiles, f, 16, 8, 10);
            // 640 tiles of 256 pixels: forged tiles ~ Binomial(640, f).
            assert_eq!(px % 256, 0, "{px}");
            assert!(
                binomial_ok(px / 256, pixels / 256, f),
                "f {f}: {px} of {pixels} pixels"
            );
        }
    }

    #[test]
    fn scattered_blocks_forge_f_of_the_blocks_and_nothing_else() {
        for f in [0.01, 0.05, 0.2] {
            let (px, forged_blocks, blocks, pixels) = measure(Shape::Blocks, f, 16, 8, 10);
            // Every block of a 16 × 16 tile is 8 × 8: the bytes show whole blocks.
            assert_eq!(px, 64 * forged_blocks, "f {f}");
            assert!(
                binomial_ok(forged_blocks, blocks, f),
                "f {f}: {forged_blocks} of {blocks} blocks"
            );
            assert_eq!(blocks * 64, pixels);
        }
        // A clipped grid (tiles of 20 × 20: blocks of 8, 8 and 4 pixels across) forges
        // the clipped blocks too, and each forged block is far on its own.
        let (px, forged_blocks, blocks, _) = measure(Shape::Blocks, 0.2, 20, 4, 4);
        assert!(
            binomial_ok(forged_blocks, blocks, 0.2),
            "{forged_blocks} of {blocks}"
        );
        assert!(px > 0);
        let s = settings();
        let honest = stub();
        let forger = Forger::new(honest.clone(), [9; 32], 0.3, Shape::Blocks);
        let t = Tolerance::default();
        let mut kinds = std::collections::BTreeSet::new();
        for rect in tile_layout(s.width, s.height, 16) {
            let TilePlan::Blocks(blocks) = forger.plan(0, rect, s.spp) else {
                continue;
            };
            let (want, got) = (
                honest.render_tile(&s, 0, rect).unwrap(),
                forger.render_tile(&s, 0, rect).unwrap(),
            );
            for (b, kind) in blocks {
                let r = local_rect(rect, b).unwrap();
                let (w, g) = (
                    crop(&want, 16, 16, r).unwrap(),
                    crop(&got, 16, 16, r).unwrap(),
                );
                let m = tile_metrics(&t, &w, &g, r).unwrap();
                assert_eq!(t.block_band(false, &m), Band::Far, "{kind:?} {m:?}");
                kinds.insert(kind);
            }
        }
        assert_eq!(kinds.len(), Forgery::ALL.len(), "{kinds:?}");
    }

    #[test]
    fn lower_spp_forges_round_f_spp_samples_of_every_pixel() {
        for (f, spp) in [(0.01, 100), (0.05, 100), (0.2, 100), (0.25, 4)] {
            measure(Shape::Spp, f, 16, spp, 1);
            let dropped = spp_dropped(f, spp);
            let forger = Forger::new(stub(), [1; 32], f, Shape::Spp);
            let rect = TileRect {
                x: 16,
                y: 0,
                w: 16,
                h: 16,
            };
            let plan = forger.plan(0, rect, spp);
            assert_eq!(plan, TilePlan::Spp(spp - dropped));
            // The forged work is f exactly when spp resolves it.
            let work = plan.forged_samples(rect, spp) as f64 / (256 * u64::from(spp)) as f64;
            assert!((work - f).abs() < 1e-12, "{work} {f}");
        }
        assert_eq!(spp_dropped(0.05, 4), 0);
        let forger = Forger::new(stub(), [1; 32], 0.05, Shape::Spp);
        assert_eq!(
            forger.plan(
                0,
                TileRect {
                    x: 0,
                    y: 0,
                    w: 16,
                    h: 16
                },
                4
            ),
            TilePlan::Honest
        );
    }

    #[test]
    fn patches_forge_about_f_of_every_tile_off_the_block_grid() {
        for (f, edge) in [
            (0.01, 16),
            (0.05, 16),
            (0.2, 16),
            (0.01, 64),
            (0.05, 64),
            (0.2, 64),
        ] {
            let (px, _, _, pixels) = measure(Shape::Patches, f, edge, 4, 2);
            let (w, h) = patch_size(f, edge, edge);
            // One patch in each of the 128 tiles, about f of it.
            assert_eq!(px, 128 * u64::from(w * h), "f {f} edge {edge}");
            let share = px as f64 / pixels as f64;
            assert!((share - f).abs() <= 0.25 * f, "f {f} edge {edge}: {share}");
            assert!(w.abs_diff(h) <= 1, "{w} × {h}");
        }
        // The worked sizes: 1 % of 16 × 16 is 2.56 pixels → 2 × 1; 5 % 12.8 → 4 × 3;
        // 20 % of 64 × 64 is 819.2 → 29 × 28.
        assert_eq!(patch_size(0.01, 16, 16), (2, 1));
        assert_eq!(patch_size(0.05, 16, 16), (4, 3));
        assert_eq!(patch_size(0.2, 64, 64), (29, 28));
        assert_eq!(patch_size(1e-9, 16, 16), (1, 1));
        // Off the grid: no patch starts on a block boundary, and as many straddle one as
        // positions drawn uniformly off the grid give.
        for (f, edge) in [(0.05, 16), (0.05, 64)] {
            let forger = Forger::new(stub(), [3; 32], f, Shape::Patches);
            let s = RenderSettings {
                width: 64 * edge,
                height: edge,
                ..settings()
            };
            let (w, h) = patch_size(f, edge, edge);
            // The share of off-grid positions from which a patch of `len` crosses a line.
            let crossing = |len: u32| {
                let off: Vec<u32> = (0..=edge - len).filter(|p| p % 8 != 0).collect();
                off.iter().filter(|&&p| p % 8 + len > 8).count() as f64 / off.len() as f64
            };
            let p = 1.0 - (1.0 - crossing(w)) * (1.0 - crossing(h));
            let (mut straddle, mut n) = (0, 0);
            for frame in 0..4 {
                for rect in tile_layout(s.width, s.height, edge) {
                    let plan = forger.plan(frame, rect, s.spp);
                    let TilePlan::Patch { rect: q, kind } = plan else {
                        panic!("no patch in {rect}");
                    };
                    assert!(matches!(kind, Forgery::Black | Forgery::Noise), "{kind:?}");
                    assert!(q.x % 8 != 0 && q.y % 8 != 0, "{q}");
                    assert!(q.x + q.w <= edge && q.y + q.h <= edge, "{q}");
                    let touched = (0..n_blocks(rect))
                        .filter(|&b| plan.touches(rect, b))
                        .count();
                    straddle += u64::from(touched > 1);
                    n += 1;
                }
            }
            // 4 × 3 pixels in 16 × 16: 39 % straddle; 14 × 15 in 64 × 64: all.
            assert!(
                binomial_ok(straddle, n, p) || (p == 1.0 && straddle == n),
                "edge {edge}: {straddle} of {n}, p {p}"
            );
            assert!(edge == 16 || straddle == n);
        }
        let tiles = tile_layout(64 * 16, 16, 16);
        // Nothing forged at f = 0.
        let none = Forger::new(stub(), [3; 32], 0.0, Shape::Patches);
        assert_eq!(none.plan(0, tiles[0], 4), TilePlan::Honest);
    }

    #[test]
    fn unaligned_positions_skip_the_block_grid() {
        // Positions 0..=20 off the grid: 1..7, 9..15, 17..20 (18 of them).
        let all: Vec<u32> = (0..18)
            .map(|i| unaligned(20, (f64::from(i) + 0.5) / 18.0))
            .collect();
        let want: Vec<u32> = (1..=20).filter(|p| p % 8 != 0).collect();
        assert_eq!(all, want);
        assert_eq!(unaligned(0, 0.7), 0);
        assert_eq!(unaligned(8, 0.999), 7);
    }

    #[test]
    fn the_accounting_of_a_plan() {
        let tile = TileRect {
            x: 0,
            y: 0,
            w: 20,
            h: 20,
        };
        // A 20 × 20 tile has blocks of 8, 8 and 4 pixels across and down: block 2 is
        // 4 × 8 pixels, block 8 is 4 × 4.
        let plan = TilePlan::Blocks(vec![(2, Forgery::QuarterSpp), (8, Forgery::Black)]);
        assert_eq!(plan.forged_pixels(tile), 32 + 16);
        // Quarter-spp of 8 leaves 6 of 8 samples out; black all 8.
        assert_eq!(plan.forged_samples(tile, 8), 32 * 6 + 16 * 8);
        assert_eq!(plan.touched_pixels(tile), 48);
        // A 3 × 2 patch at (6, 7) lies in blocks 0, 1, 3 and 4 (x 6..8 and 8..9, y 7 and 8).
        let patch = TilePlan::Patch {
            rect: TileRect {
                x: 6,
                y: 7,
                w: 3,
                h: 2,
            },
            kind: Forgery::Noise,
        };
        let touched: Vec<u32> = (0..9).filter(|&b| patch.touches(tile, b)).collect();
        assert_eq!(touched, vec![0, 1, 3, 4]);
        assert_eq!(patch.forged_pixels(tile), 6);
        assert_eq!(patch.touched_pixels(tile), 4 * 64);
        assert_eq!(patch.forged_samples(tile, 100), 600);
        // Lower spp: every pixel, the samples left out.
        assert_eq!(TilePlan::Spp(95).forged_samples(tile, 100), 400 * 5);
        assert_eq!(TilePlan::Spp(95).touched_pixels(tile), 400);
        assert_eq!(TilePlan::Honest.touched_pixels(tile), 0);
    }

    #[test]
    fn the_other_class_is_close_or_ambiguous_never_far() {
        let s = settings();
        let same = stub();
        let other = OtherClass::new(same.clone(), [5; 32]);
        assert_ne!(other.class().id(), same.class().id());
        let mut seen = std::collections::BTreeMap::new();
        for frame in 0..40 {
            for rect in tile_layout(s.width, s.height, 16) {
                let a = same.render_tile(&s, frame, rect).unwrap();
                let b = other.render_tile(&s, frame, rect).unwrap();
                let drift = other.drift(&s, frame, rect);
                let want = match drift {
                    Drift::None => Band::Match,
                    Drift::Close => Band::Close,
                    Drift::Ambiguous => Band::Ambiguous,
                };
                assert_eq!(band(&a, &b, rect), want, "{drift:?} frame {frame} {rect}");
                *seen.entry(format!("{drift:?}")).or_insert(0) += 1;
            }
        }
        assert!(seen.len() >= 2, "{seen:?}");
    }

    #[test]
    fn the_drifts_keep_their_bands_at_every_allowed_tile_size() {
        let same = stub();
        let other = OtherClass::new(same.clone(), [6; 32]);
        for edge in [16u32, 17, 24, 31, 32, 64] {
            let rect = TileRect {
                x: 0,
                y: 0,
                w: edge,
                h: edge,
            };
            let s = RenderSettings {
                width: edge,
                height: edge,
                ..settings()
            };
            for (drift, want) in [
                (Drift::Close, Band::Close),
                (Drift::Ambiguous, Band::Ambiguous),
            ] {
                let frame = (0..1_000_000)
                    .find(|&f| other.drift(&s, f, rect) == drift)
                    .unwrap();
                let a = same.render_tile(&s, frame, rect).unwrap();
                let b = other.render_tile(&s, frame, rect).unwrap();
                assert_eq!(band(&a, &b, rect), want, "{edge}×{edge} {drift:?}");
            }
        }
        assert_eq!(ambiguous_pixels(256), 1);
        assert_eq!(ambiguous_pixels(4096), 7);
    }
}
