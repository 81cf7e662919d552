//! The cheat catalogue: every way Tessera forges tiles on purpose, in one place. Drill
//! nodes ([`crate::DishonestMode`]), the calibration's cheat corpus ([`Cheat`], used by
//! `tessera_verifier::calibrate`) and the detection simulation's forger take their
//! forgeries from here, so a black tile or a neighbour's region is the same bytes
//! everywhere.
//!
//! Every forgery is a pure function of its inputs: the same tile, rectangle and salt give
//! the same bytes (the calibration margins in docs/CALIBRATION.md and the drill tests rely
//! on it).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;
use tessera_protocol::blocks::{blocks_across, local_rect, n_blocks, BLOCK_SIZE};
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
    /// The honest tile with [`SPARSE_PIXELS`] pixels of every 8×8 block black (a node
    /// that skipped a few pixels everywhere: no block differs much, every block a little).
    Sparse,
    /// Every other block of the tile's 8×8 grid (checkerboard, the top-left block
    /// included) replaced by the block beside it: a forgery aligned to the block grid
    /// that leaves the other blocks' bytes honest ([`block_grid_source`]).
    BlockGrid,
}

impl Cheat {
    /// Every cheat of the corpus.
    pub const ALL: [Cheat; 12] = [
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
        Cheat::Sparse,
        Cheat::BlockGrid,
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
            Cheat::Sparse => "sparse",
            Cheat::BlockGrid => "block-grid",
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
/// Pixels the sparse cheat blackens in every block (all of a block with fewer).
pub const SPARSE_PIXELS: usize = 2;
/// Seed of the sparse cheat's positions (xor the scene and tile indices).
pub const SPARSE_SEED: u64 = 0x5a42_5e00_0000_0000;

/// The pixels the sparse cheat blackens in `rect` (tile `tile_idx` of scene
/// `scene_idx`): [`SPARSE_PIXELS`] distinct pixels of every block (every pixel of a block
/// with fewer), drawn from a ChaCha8 stream seeded with [`SPARSE_SEED`] ⊕ the indices, as
/// row-major indices into the tile, ascending.
pub fn sparse_pixels(rect: TileRect, scene_idx: usize, tile_idx: usize) -> Vec<usize> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(SPARSE_SEED ^ ((scene_idx as u64) << 32) ^ tile_idx as u64);
    let mut out = Vec::new();
    for b in 0..n_blocks(rect) {
        let Some(r) = local_rect(rect, b) else {
            continue;
        };
        let n = (r.w * r.h) as usize;
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < SPARSE_PIXELS.min(n) {
            let i = rng.gen_range(0..n);
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        out.extend(picked.into_iter().map(|i| {
            let (x, y) = (
                r.x as usize + i % r.w as usize,
                r.y as usize + i / r.w as usize,
            );
            y * rect.w as usize + x
        }));
    }
    out.sort_unstable();
    out
}

/// Where the block-grid cheat takes block `block` of `rect` from: `None` for the blocks it
/// keeps (those whose column + row is odd), else the offset in pixels (tile coordinates)
/// of the block beside it: one block to the right, else to the left, else down, else up
/// (`None` for a tile of one block). A source pixel outside the tile (a clipped block)
/// is clamped to the tile's edge.
pub fn block_grid_source(rect: TileRect, block: u32) -> Option<(i64, i64)> {
    let (across, down) = blocks_across(rect);
    let (bx, by) = (block % across.max(1), block / across.max(1));
    if block >= across * down || (bx + by) % 2 == 1 {
        return None;
    }
    let s = i64::from(BLOCK_SIZE);
    if bx + 1 < across {
        Some((s, 0))
    } else if bx > 0 {
        Some((-s, 0))
    } else if by + 1 < down {
        Some((0, s))
    } else if by > 0 {
        Some((0, -s))
    } else {
        None
    }
}

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
        Cheat::Sparse => {
            let mut v = tile_to_f32(&honest()?);
            for i in sparse_pixels(rect, scene_idx, tile_idx) {
                v[i * 4..i * 4 + 3].copy_from_slice(&[0.0; 3]);
            }
            Some(f32_to_tile(&v))
        }
        Cheat::BlockGrid => {
            let v = tile_to_f32(&honest()?);
            let mut out = v.clone();
            let mut forged = false;
            for b in 0..n_blocks(rect) {
                let (Some(r), Some((dx, dy))) = (local_rect(rect, b), block_grid_source(rect, b))
                else {
                    continue;
                };
                forged = true;
                for y in r.y..r.y + r.h {
                    for x in r.x..r.x + r.w {
                        let sx = (i64::from(x) + dx).clamp(0, w as i64 - 1) as usize;
                        let sy = (i64::from(y) + dy).clamp(0, h as i64 - 1) as usize;
                        let (d, s) = ((y as usize * w + x as usize) * 4, (sy * w + sx) * 4);
                        out[d..d + 3].copy_from_slice(&v[s..s + 3]);
                    }
                }
            }
            forged.then(|| f32_to_tile(&out))
        }
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

    /// The pixels (tile-relative, row-major) where `forged` differs from `honest`.
    fn changed(honest: &[f32], forged: &[f32]) -> Vec<usize> {
        (0..honest.len() / 4)
            .filter(|&i| honest[i * 4..i * 4 + 4] != forged[i * 4..i * 4 + 4])
            .collect()
    }

    #[test]
    fn sparse_blackens_two_pixels_of_every_block_and_nothing_else() {
        let frame = gradient(64, 32);
        let frames = frames(64, 32, &frame);
        // 21×13: blocks of 8×8, 5×8, 8×5 and 5×5 pixels.
        let rect = r(40, 16, 21, 13);
        let honest = tile_to_f32(&frames.cut(Source::Honest, rect).unwrap());
        let forged = tile_to_f32(&forge(Cheat::Sparse, &frames, 3, 5, rect).unwrap());
        let pixels = sparse_pixels(rect, 3, 5);
        assert_eq!(changed(&honest, &forged), pixels);
        assert_eq!(pixels.len(), 2 * 6);
        for &i in &pixels {
            assert_eq!(forged[i * 4..i * 4 + 4], [0.0, 0.0, 0.0, 1.0]);
        }
        for b in 0..n_blocks(rect) {
            let l = local_rect(rect, b).unwrap();
            let inside = pixels
                .iter()
                .filter(|&&i| {
                    let (x, y) = ((i % 21) as u32, (i / 21) as u32);
                    (l.x..l.x + l.w).contains(&x) && (l.y..l.y + l.h).contains(&y)
                })
                .count();
            assert_eq!(inside, 2, "block {b}");
        }
        // A 1×1 tile loses its one pixel; other tiles and scenes get other positions.
        assert_eq!(sparse_pixels(r(0, 0, 1, 1), 0, 0), [0]);
        assert_ne!(pixels, sparse_pixels(rect, 3, 6));
        assert_ne!(pixels, sparse_pixels(rect, 4, 5));
        assert_eq!(pixels, sparse_pixels(rect, 3, 5));
    }

    #[test]
    fn block_grid_copies_the_block_beside_every_other_block() {
        let frame = gradient(64, 32);
        let frames = frames(64, 32, &frame);
        // 21×13 at (40, 16): 3×2 blocks; the checkerboard forges blocks 0, 2 and 4.
        let rect = r(40, 16, 21, 13);
        let honest = tile_to_f32(&frames.cut(Source::Honest, rect).unwrap());
        let forged = tile_to_f32(&forge(Cheat::BlockGrid, &frames, 0, 0, rect).unwrap());
        let sources: Vec<_> = (0..6).map(|b| block_grid_source(rect, b)).collect();
        assert_eq!(
            sources,
            [Some((8, 0)), None, Some((-8, 0)), None, Some((8, 0)), None]
        );
        // Red is the frame's x, green its y: block 0 shows the block to its right, block 2
        // (the last column) the one to its left, block 4's right half is clamped to the
        // tile's last column (frame x 60).
        let px = |x: usize, y: usize| forged[(y * 21 + x) * 4..(y * 21 + x) * 4 + 2].to_vec();
        assert_eq!(px(0, 0), [48.0, 16.0]);
        assert_eq!(px(20, 7), [52.0, 23.0]);
        assert_eq!(px(8, 8), [56.0, 24.0]);
        assert_eq!(px(15, 12), [60.0, 28.0]);
        // Exactly the pixels of blocks 0, 2 and 4 changed (every source pixel differs).
        let in_forged = |i: usize| {
            let (x, y) = ((i % 21) as u32, (i / 21) as u32);
            [0, 2, 4].iter().any(|&b| {
                let l = local_rect(rect, b).unwrap();
                (l.x..l.x + l.w).contains(&x) && (l.y..l.y + l.h).contains(&y)
            })
        };
        let want: Vec<usize> = (0..21 * 13).filter(|&i| in_forged(i)).collect();
        assert_eq!(changed(&honest, &forged), want);
        // A tile of one block has no block beside it: nothing to forge.
        assert_eq!(forge(Cheat::BlockGrid, &frames, 0, 0, r(0, 0, 8, 8)), None);
        assert!(forge(Cheat::BlockGrid, &frames, 0, 0, r(0, 0, 8, 9)).is_some());
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
