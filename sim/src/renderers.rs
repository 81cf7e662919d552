//! The stand-in renderers of `tessera simulate`: a memo around the CPU stub, a stand-in of
//! another determinism class, and the forging wrapper a cheating node renders through.
//! All are [`TileRenderer`]s, so the node, verifier and tolerance code they feed is the
//! real one.

use crate::stats::{digest, mix_unit, unit, unit_seed};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tessera_node::cheats::{black_tile as black, neighbour};
use tessera_protocol::canonical::{f32_to_tile, tile_to_f32};
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

/// How a cheater forges one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forgery {
    /// A quarter of the samples, the full count claimed.
    QuarterSpp,
    /// A black tile, nothing rendered.
    Black,
    /// The honest tile with ±10 % noise (a "touched-up" render).
    Noise,
    /// A neighbouring tile's render served for this one.
    Copy,
}

impl Forgery {
    /// Every kind, in the order a forged tile's kind is drawn from.
    pub const ALL: [Forgery; 4] = [
        Forgery::QuarterSpp,
        Forgery::Black,
        Forgery::Noise,
        Forgery::Copy,
    ];
}

/// A cheater's renderer: each tile is forged independently with probability `fraction`
/// (the kind drawn uniformly from [`Forgery::ALL`]), the rest rendered honestly. It claims
/// the inner renderer's class and the node commits to whatever it returns, so integrity
/// holds and only a re-render can tell. Which tiles are forged is a pure function of the
/// job's salt, the frame and the tile.
pub struct Forger {
    inner: Arc<dyn TileRenderer>,
    salt: Digest,
    fraction: f64,
}

impl Forger {
    /// A forger around `inner` for one job (`salt`), forging `fraction` of its tiles.
    pub fn new(inner: Arc<dyn TileRenderer>, salt: Digest, fraction: f64) -> Self {
        Self {
            inner,
            salt,
            fraction,
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

    /// Whether and how the tile `rect` of `frame` is forged.
    pub fn forgery(&self, frame: u32, rect: TileRect) -> Option<Forgery> {
        let d = self.key(frame, rect);
        (unit(&d, 0) < self.fraction).then(|| Forgery::ALL[d[8] as usize % Forgery::ALL.len()])
    }
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
        let Some(kind) = self.forgery(frame, rect) else {
            return self.inner.render_tile(settings, frame, rect);
        };
        match kind {
            Forgery::QuarterSpp => {
                let mut cheap = settings.clone();
                cheap.spp = (cheap.spp / 4).max(1);
                self.inner.render_tile(&cheap, frame, rect)
            }
            Forgery::Black => Ok(black(rect)),
            Forgery::Noise => {
                let mut values = tile_to_f32(&self.inner.render_tile(settings, frame, rect)?);
                let salt = unit_seed(&self.key(frame, rect));
                for (i, v) in values.iter_mut().enumerate() {
                    if i % 4 != 3 {
                        *v *= 0.9 + 0.2 * mix_unit(salt, i as u64) as f32;
                    }
                }
                Ok(f32_to_tile(&values))
            }
            Forgery::Copy => match neighbour(rect, settings.width, settings.height) {
                Some(source) => self.inner.render_tile(settings, frame, source),
                None => Ok(black(rect)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_node::stub::HashRenderer;
    use tessera_protocol::tile_layout;
    use tessera_protocol::tolerance::{Band, Tolerance};
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
            let forger = Forger::new(honest.clone(), [job; 32], fraction);
            assert_eq!(forger.class(), honest.class());
            for frame in 0..3 {
                for rect in tile_layout(s.width, s.height, 16) {
                    let want = honest.render_tile(&s, frame, rect).unwrap();
                    let got = forger.render_tile(&s, frame, rect).unwrap();
                    match forger.forgery(frame, rect) {
                        None => assert_eq!(got, want),
                        Some(kind) => {
                            assert_eq!(band(&want, &got, rect), Band::Far, "{kind:?}");
                            *kinds.entry(kind).or_insert(0) += 1;
                        }
                    }
                }
            }
        }
        // Every kind is drawn, and only the forged fraction of tiles is forged.
        assert_eq!(kinds.len(), Forgery::ALL.len(), "{kinds:?}");
        let forged: u32 = kinds.values().sum();
        assert!((192 + 30..192 + 90).contains(&forged), "{forged}");
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
