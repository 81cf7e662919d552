//! The cheat catalogue: every way Tessera forges tiles on purpose, in one place. Drill
//! nodes ([`crate::DishonestMode`]), the calibration's cheat corpus ([`Cheat`], used by
//! `tessera_verifier::calibrate`) and the detection simulation's forger take their
//! forgeries from here, so a black tile or a neighbour's region is the same bytes
//! everywhere.
//!
//! Every forgery is a pure function of its inputs: the same tile, rectangle and salt give
//! the same bytes (the calibration margins in docs/CALIBRATION.md and the drill tests rely
//! on it).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;
use tessera_protocol::canonical::{crop, f32_to_tile, tile_to_f32};
use tessera_protocol::{RenderSettings, TileRect};

/// A side of a rectangle, where a forger looks for a region to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// One rectangle width to the left.
    Left,
    /// One rectangle width to the right.
    Right,
    /// One rectangle height up.
    Up,
    /// One rectangle height down.
    Down,
}

/// Where drill nodes and the simulation's forger look for a neighbour: left, right, up,
/// down.
pub const DRILL_ORDER: [Side; 4] = [Side::Left, Side::Right, Side::Up, Side::Down];

/// Where the calibration corpus looks for a neighbour (docs/CALIBRATION.md): right, left,
/// down, up.
pub const CORPUS_ORDER: [Side; 4] = [Side::Right, Side::Left, Side::Down, Side::Up];

/// A region of `rect`'s size beside it (left, right, up, down: [`DRILL_ORDER`]) that lies
/// inside a `width` × `height` frame, if there is one.
pub fn neighbour(rect: TileRect, width: u32, height: u32) -> Option<TileRect> {
    neighbour_in(DRILL_ORDER, rect, width, height)
}

/// The first region of `rect`'s size beside it, looking at the sides in `order`, that lies
/// inside a `width` × `height` frame, if there is one.
pub fn neighbour_in(order: [Side; 4], rect: TileRect, width: u32, height: u32) -> Option<TileRect> {
    order
        .into_iter()
        .filter_map(|side| {
            let (x, y) = match side {
                Side::Left => (rect.x.checked_sub(rect.w)?, rect.y),
                Side::Right => (rect.x.checked_add(rect.w)?, rect.y),
                Side::Up => (rect.x, rect.y.checked_sub(rect.h)?),
                Side::Down => (rect.x, rect.y.checked_add(rect.h)?),
            };
            Some(TileRect { x, y, ..rect })
        })
        .find(|r| r.fits_in(width, height))
}

/// A black, opaque tile of `rect`'s size.
pub fn black_tile(rect: TileRect) -> Vec<u8> {
    let mut values = vec![0.0f32; rect.pixels() as usize * 4];
    values.iter_mut().skip(3).step_by(4).for_each(|a| *a = 1.0);
    f32_to_tile(&values)
}

/// The settings a low-spp drill renders with: a quarter of the samples (at least one),
/// while it claims all of them.
pub fn quarter_spp(settings: &RenderSettings) -> RenderSettings {
    let mut cheap = settings.clone();
    cheap.spp = (cheap.spp / 4).max(1);
    cheap
}

/// A partial drill forges one tile in this many (its 1st, 21st, 41st, …).
pub const PARTIAL_EVERY: u64 = 20;

/// The noise drill: ±10 % multiplicative noise on the colour channels of a canonical tile,
/// from a tiny integer hash of the value index and `salt` (alpha untouched).
pub fn hash_noise(tile: &[u8], salt: u32) -> Vec<u8> {
    let mut values = tile_to_f32(tile);
    for (i, v) in values.iter_mut().enumerate() {
        if i % 4 == 3 {
            continue;
        }
        let mut h = (i as u32).wrapping_mul(0x9E37_79B9) ^ salt.wrapping_mul(0x85EB_CA6B);
        h ^= h >> 15;
        h = h.wrapping_mul(0x2C1B_3C6D);
        h ^= h >> 12;
        let r = (h & 0xFFFF) as f32 / 65535.0; // 0..1
        *v *= 0.9 + 0.2 * r;
    }
    f32_to_tile(&values)
}

/// The forgeries of the calibration corpus. Each is made by the cheating node's class from
/// its own renders ([`Source`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// Rendered with half the samples, claiming all of them.
    HalfSpp,
    /// Rendered with a quarter of the samples.
    QuarterSpp,
    /// The honest tile plus Gaussian noise, σ = 5 % of the value + 0.01 (fixed seed).
    Noise,
    /// The honest tile through a 3×3 box blur (clamped at the tile's edges).
    Blur,
    /// A neighbouring region of the same size (one tile width right, else left, else one
    /// tile height down, else up: [`CORPUS_ORDER`]).
    Neighbour,
    /// The same tile of the next frame.
    OtherFrame,
    /// Black.
    Black,
    /// The honest tile with a 16×16 mid-grey (0.5) square at its centre.
    PatchGrey,
    /// The honest tile with the neighbour's pixels in that 16×16 square.
    PatchNeighbour,
    /// The same tile rendered with another seed (a tile replayed from an earlier job).
    Replay,
}

impl Cheat {
    /// Every cheat of the corpus.
    pub const ALL: [Cheat; 10] = [
        Cheat::HalfSpp,
        Cheat::QuarterSpp,
        Cheat::Noise,
        Cheat::Blur,
        Cheat::Neighbour,
        Cheat::OtherFrame,
        Cheat::Black,
        Cheat::PatchGrey,
        Cheat::PatchNeighbour,
        Cheat::Replay,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Cheat::HalfSpp => "half-spp",
            Cheat::QuarterSpp => "quarter-spp",
            Cheat::Noise => "noise",
            Cheat::Blur => "blur",
            Cheat::Neighbour => "neighbour",
            Cheat::OtherFrame => "other-frame",
            Cheat::Black => "black",
            Cheat::PatchGrey => "patch-grey",
            Cheat::PatchNeighbour => "patch-neighbour",
            Cheat::Replay => "replay",
        }
    }
}

/// A full frame the cheating node renders for the corpus to forge from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The honest frame (every class renders it).
    Honest,
    /// Half the samples.
    HalfSpp,
    /// A quarter of the samples.
    QuarterSpp,
    /// The next frame.
    NextFrame,
    /// Seed + 1.
    Replay,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 5] = [
        Source::Honest,
        Source::HalfSpp,
        Source::QuarterSpp,
        Source::NextFrame,
        Source::Replay,
    ];

    /// The name of the frame (in file names and render specs).
    pub fn name(self) -> &'static str {
        match self {
            Source::Honest => "honest",
            Source::HalfSpp => "half-spp",
            Source::QuarterSpp => "quarter-spp",
            Source::NextFrame => "next-frame",
            Source::Replay => "replay",
        }
    }
}

/// One scene's full frames (canonical bytes) as the cheating node's class rendered them.
#[derive(Clone, Debug)]
pub struct NodeFrames<'a> {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// The frames; a cheat whose source is missing forges nothing.
    pub frames: BTreeMap<Source, &'a [u8]>,
}

impl NodeFrames<'_> {
    /// `rect` of the `source` frame, if there is that frame and `rect` fits it.
    pub fn cut(&self, source: Source, rect: TileRect) -> Option<Vec<u8>> {
        crop(self.frames.get(&source)?, self.width, self.height, rect)
    }
}

/// Edge of the forged square of the patch cheats.
pub const PATCH: u32 = 16;
/// Seed of the noise cheat's generator (xor the scene and tile indices).
pub const NOISE_SEED: u64 = 0x7e55_e4a0_0000_0000;

/// The forged bytes of `cheat` for `rect` (tile `tile_idx` of scene `scene_idx`, which
/// salt the noise), made from the node class's `frames`; `None` when the cheat does not
/// apply (no neighbour in a one-tile frame) or a frame it needs is missing.
pub fn forge(
    cheat: Cheat,
    frames: &NodeFrames,
    scene_idx: usize,
    tile_idx: usize,
    rect: TileRect,
) -> Option<Vec<u8>> {
    let (fw, fh) = (frames.width, frames.height);
    let honest = || frames.cut(Source::Honest, rect);
    let (w, h) = (rect.w as usize, rect.h as usize);
    // The patch: PATCH×PATCH (clipped to the tile) at the tile's centre, tile coordinates.
    let (pw, ph) = (rect.w.min(PATCH) as usize, rect.h.min(PATCH) as usize);
    let (px, py) = ((w - pw) / 2, (h - ph) / 2);
    let in_patch = |i: usize| {
        let (x, y) = (i % w, i / w);
        (px..px + pw).contains(&x) && (py..py + ph).contains(&y)
    };
    match cheat {
        Cheat::HalfSpp => frames.cut(Source::HalfSpp, rect),
        Cheat::QuarterSpp => frames.cut(Source::QuarterSpp, rect),
        Cheat::OtherFrame => frames.cut(Source::NextFrame, rect),
        Cheat::Replay => frames.cut(Source::Replay, rect),
        Cheat::Neighbour => frames.cut(Source::Honest, neighbour_in(CORPUS_ORDER, rect, fw, fh)?),
        Cheat::Black => Some(black_tile(rect)),
        Cheat::Noise => {
            let mut v = tile_to_f32(&honest()?);
            let mut rng = ChaCha8Rng::seed_from_u64(
                NOISE_SEED ^ ((scene_idx as u64) << 32) ^ tile_idx as u64,
            );
            for (i, x) in v.iter_mut().enumerate() {
                if i % 4 != 3 {
                    let n: f64 = StandardNormal.sample(&mut rng);
                    *x += (n * (0.05 * f64::from(x.abs()) + 0.01)) as f32;
                }
            }
            Some(f32_to_tile(&v))
        }
        Cheat::Blur => {
            let v = tile_to_f32(&honest()?);
            let mut out = v.clone();
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let (mut sum, mut n) = (0f32, 0f32);
                        for yy in y.saturating_sub(1)..(y + 2).min(h) {
                            for xx in x.saturating_sub(1)..(x + 2).min(w) {
                                sum += v[(yy * w + xx) * 4 + c];
                                n += 1.0;
                            }
                        }
                        out[(y * w + x) * 4 + c] = sum / n;
                    }
                }
            }
            Some(f32_to_tile(&out))
        }
        Cheat::PatchGrey => {
            let mut v = tile_to_f32(&honest()?);
            for (i, p) in v.chunks_exact_mut(4).enumerate() {
                if in_patch(i) {
                    p[..3].copy_from_slice(&[0.5; 3]);
                }
            }
            Some(f32_to_tile(&v))
        }
        Cheat::PatchNeighbour => {
            let mut v = tile_to_f32(&honest()?);
            let source = neighbour_in(CORPUS_ORDER, rect, fw, fh)?;
            let n = tile_to_f32(&frames.cut(Source::Honest, source)?);
            for (i, (p, q)) in v.chunks_exact_mut(4).zip(n.chunks_exact(4)).enumerate() {
                if in_patch(i) {
                    p.copy_from_slice(q);
                }
            }
            Some(f32_to_tile(&v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_protocol::tile_layout;

    fn r(x: u32, y: u32, w: u32, h: u32) -> TileRect {
        TileRect { x, y, w, h }
    }

    #[test]
    fn neighbours_stay_inside_the_frame() {
        for order in [DRILL_ORDER, CORPUS_ORDER] {
            let n = |rect, width, height| neighbour_in(order, rect, width, height);
            assert_eq!(n(r(0, 0, 32, 32), 128, 64), Some(r(32, 0, 32, 32)));
            assert_eq!(n(r(96, 0, 32, 32), 128, 64), Some(r(64, 0, 32, 32)));
            assert_eq!(n(r(0, 0, 64, 32), 64, 64), Some(r(0, 32, 64, 32)));
            assert_eq!(n(r(0, 32, 64, 32), 64, 64), Some(r(0, 0, 64, 32)));
            assert_eq!(n(r(0, 0, 64, 64), 64, 64), None);
            // An edge tile narrower than the others still gets a region of its own size.
            assert_eq!(n(r(64, 0, 16, 64), 80, 64), Some(r(48, 0, 16, 64)));
        }
    }

    #[test]
    fn the_orders_differ_only_where_both_sides_fit() {
        // A middle tile: drills copy the left one, the corpus the right one.
        assert_eq!(neighbour(r(32, 0, 32, 32), 128, 32), Some(r(0, 0, 32, 32)));
        assert_eq!(
            neighbour_in(CORPUS_ORDER, r(32, 0, 32, 32), 128, 32),
            Some(r(64, 0, 32, 32))
        );
        // A middle row of a one-column frame: drills go up, the corpus down.
        assert_eq!(neighbour(r(0, 32, 32, 32), 32, 128), Some(r(0, 0, 32, 32)));
        assert_eq!(
            neighbour_in(CORPUS_ORDER, r(0, 32, 32, 32), 32, 128),
            Some(r(0, 64, 32, 32))
        );
    }

    #[test]
    fn black_is_opaque_black() {
        let v = tile_to_f32(&black_tile(r(0, 0, 3, 2)));
        assert_eq!(v.len(), 24);
        assert!(v.chunks_exact(4).all(|p| p == [0.0, 0.0, 0.0, 1.0]));
    }

    /// Every source frame: pixel (x, y) has red x, green y, blue 0.25.
    fn gradient(width: u32, height: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..height {
            for x in 0..width {
                v.extend_from_slice(&[x as f32, y as f32, 0.25, 1.0]);
            }
        }
        f32_to_tile(&v)
    }

    fn frames(width: u32, height: u32, frame: &[u8]) -> NodeFrames<'_> {
        NodeFrames {
            width,
            height,
            frames: Source::ALL.into_iter().map(|s| (s, frame)).collect(),
        }
    }

    #[test]
    fn every_cheat_forges_every_tile_size_without_panicking() {
        let frame = gradient(37, 21);
        let frames = frames(37, 21, &frame);
        for (i, rect) in tile_layout(37, 21, 16).into_iter().enumerate() {
            for cheat in Cheat::ALL {
                if let Some(bytes) = forge(cheat, &frames, 0, i, rect) {
                    assert_eq!(bytes.len(), rect.canonical_len(), "{cheat:?} {rect}");
                }
            }
        }
    }

    #[test]
    fn patches_sit_at_the_tile_centre() {
        let frame = gradient(64, 32);
        let frames = frames(64, 32, &frame);
        let rect = r(32, 0, 32, 32);
        let grey = tile_to_f32(&forge(Cheat::PatchGrey, &frames, 0, 1, rect).unwrap());
        let px = |v: &[f32], x: usize, y: usize| v[(y * 32 + x) * 4];
        assert_eq!(px(&grey, 8, 8), 0.5);
        assert_eq!(px(&grey, 23, 23), 0.5);
        assert_eq!(px(&grey, 7, 8), 39.0); // global x = 32 + 7
        assert_eq!(px(&grey, 24, 23), 56.0);
        // The neighbour of the right tile is the left one: its red is 32 lower.
        let copied = tile_to_f32(&forge(Cheat::PatchNeighbour, &frames, 0, 1, rect).unwrap());
        assert_eq!(px(&copied, 8, 8), 8.0);
        assert_eq!(px(&copied, 7, 8), 39.0);
        let black = tile_to_f32(&forge(Cheat::Black, &frames, 0, 1, rect).unwrap());
        assert!(black.chunks_exact(4).all(|p| p == [0.0, 0.0, 0.0, 1.0]));
        // Noise is reproducible.
        let a = forge(Cheat::Noise, &frames, 0, 1, rect);
        assert_eq!(a, forge(Cheat::Noise, &frames, 0, 1, rect));
        assert_ne!(a, forge(Cheat::Noise, &frames, 0, 0, rect));
    }

    #[test]
    fn a_missing_source_forges_nothing() {
        let frame = gradient(64, 32);
        let mut frames = frames(64, 32, &frame);
        frames.frames.remove(&Source::Replay);
        assert_eq!(forge(Cheat::Replay, &frames, 0, 0, r(0, 0, 32, 32)), None);
        assert!(forge(Cheat::HalfSpp, &frames, 0, 0, r(0, 0, 32, 32)).is_some());
    }
}
