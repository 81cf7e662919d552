//! The metrics of a re-rendered tile against a committed one (the verifier's tolerant
//! comparison across determinism classes): diverged-pixel fraction and PSNR on the linear
//! values ([`tessera_protocol::tolerance::linear_metrics`]), and LDR ꟻLIP (the `nv-flip`
//! crate, NVIDIA's reference implementation) on the tone-mapped tiles. The bands these
//! metrics fall in are decided by the manifest's [`Tolerance`]; `tessera calibrate`
//! measures them on honest and forged tiles (docs/CALIBRATION.md).
//!
//! The tone mapping is the standard view transform of `tessera compare` and the PNG
//! writer: clamp to [0, 1], sRGB OETF, `floor(255·s + 0.5)`. Alpha is ignored (the
//! renderer always writes 1).

use tessera_protocol::canonical::tile_to_f32;
use tessera_protocol::tolerance::{linear_errors, LinearErrors, TileMetrics, Tolerance};
use tessera_protocol::TileRect;

/// Smallest edge ꟻLIP is run on. A smaller image (a tile at a frame edge can be 1 pixel
/// wide) is padded to this size by repeating its last column and row, and only the
/// original pixels' errors are kept. ꟻLIP's filters clamp their taps at the border, which
/// is the same edge replication, so padding changes no kept value; it only keeps the
/// C++ code away from degenerate image sizes.
pub const FLIP_MIN_EDGE: u32 = 8;

/// The standard view transform's sRGB OETF of one linear value, clamped to [0, 1] first
/// (non-finite values count as 0).
pub fn srgb_oetf(v: f32) -> f32 {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// `floor(255·s + 0.5)` of a display value, clamped to [0, 1] first.
pub fn quantize8(s: f32) -> u8 {
    (s.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// Linear values as 8-bit sRGB through the standard view transform, one byte per value.
pub fn srgb8(rgb: &[f32]) -> Vec<u8> {
    rgb.iter().map(|&v| quantize8(srgb_oetf(v))).collect()
}

/// Why two images cannot be compared with ꟻLIP ([`flip_map`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlipError {
    /// A side is zero.
    #[error("flip: empty {width}x{height} image")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A buffer is not `width × height × 3` bytes.
    #[error(
        "flip: a {width}x{height} RGB8 image has {want} bytes, got {reference} (reference) and \
         {test} (test)"
    )]
    Size {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The bytes such an image has.
        want: usize,
        /// The reference's bytes.
        reference: usize,
        /// The test image's bytes.
        test: usize,
    },
}

/// Why a tile's metrics cannot be computed ([`tile_metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A buffer is not the tile's canonical length.
    #[error(
        "tile {rect}: {want} canonical bytes expected, got {committed} committed and {rerender} \
         re-rendered"
    )]
    Length {
        /// The tile.
        rect: TileRect,
        /// Its canonical length.
        want: usize,
        /// The committed tile's bytes.
        committed: usize,
        /// The re-rendered tile's bytes.
        rerender: usize,
    },
    /// The tile has no pixels.
    #[error("tile {rect}: empty")]
    Empty {
        /// The tile.
        rect: TileRect,
    },
    /// ꟻLIP refused the tile's images.
    #[error("tile {rect}: {source}")]
    Flip {
        /// The tile.
        rect: TileRect,
        /// What ꟻLIP refused.
        source: FlipError,
    },
}

/// The LDR ꟻLIP error map (one value in [0, 1] per pixel, row-major) of `test` against
/// `reference`, both 8-bit sRGB RGB images of `width × height`, at the default 67.02
/// pixels per degree. Images smaller than [`FLIP_MIN_EDGE`] are padded (see there). Fails,
/// naming the sizes, when an image is empty or a buffer is not `width × height × 3` bytes.
pub fn flip_map(
    reference: &[u8],
    test: &[u8],
    width: u32,
    height: u32,
) -> Result<Vec<f32>, FlipError> {
    let want = width as usize * height as usize * 3;
    if width == 0 || height == 0 {
        return Err(FlipError::Empty { width, height });
    }
    if reference.len() != want || test.len() != want {
        return Err(FlipError::Size {
            width,
            height,
            want,
            reference: reference.len(),
            test: test.len(),
        });
    }
    let (ra, pw, ph) = pad(reference, width, height);
    let (rb, _, _) = pad(test, width, height);
    let r = nv_flip::FlipImageRgb8::with_data(pw, ph, &ra);
    let t = nv_flip::FlipImageRgb8::with_data(pw, ph, &rb);
    let map = nv_flip::flip(r, t, nv_flip::DEFAULT_PIXELS_PER_DEGREE).to_vec();
    if (pw, ph) == (width, height) {
        return Ok(map);
    }
    let (w, pw) = (width as usize, pw as usize);
    Ok((0..height as usize)
        .flat_map(|y| map[y * pw..y * pw + w].iter().copied())
        .collect())
}

/// The nearest-rank percentile `p` (in 0..=1) of `values` (sorted here): the
/// `⌈p·n⌉`-th smallest of the n values (the smallest when that rank is 0; 0 when empty).
pub fn percentile(values: &mut [f32], p: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// RGB of a canonical tile (alpha dropped).
fn rgb(canonical: &[u8]) -> Vec<f32> {
    tile_to_f32(canonical)
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// `rgb8` of a `w × h` image (both at least 1) padded to at least [`FLIP_MIN_EDGE`] on
/// each side by repeating the last column and row.
fn pad(rgb8: &[u8], w: u32, h: u32) -> (Vec<u8>, u32, u32) {
    let (pw, ph) = (w.max(FLIP_MIN_EDGE), h.max(FLIP_MIN_EDGE));
    if (pw, ph) == (w, h) {
        return (rgb8.to_vec(), w, h);
    }
    let mut out = Vec::with_capacity(pw as usize * ph as usize * 3);
    for y in 0..ph {
        let sy = y.min(h - 1) as usize;
        for x in 0..pw {
            let i = (sy * w as usize + x.min(w - 1) as usize) * 3;
            out.extend_from_slice(&rgb8[i..i + 3]);
        }
    }
    (out, pw, ph)
}

/// The metrics of `rerender` against `committed`, both canonical tile bytes of `rect`
/// (the committed tile is ꟻLIP's reference). Byte-identical tiles give
/// [`TileMetrics::IDENTICAL`] without computing anything. Fails, naming the tile and the
/// lengths, when a buffer is not `rect.canonical_len()` bytes or the tile is empty.
pub fn tile_metrics(
    t: &Tolerance,
    committed: &[u8],
    rerender: &[u8],
    rect: TileRect,
) -> Result<TileMetrics, MetricsError> {
    let want = rect.canonical_len();
    if committed.len() != want || rerender.len() != want {
        return Err(MetricsError::Length {
            rect,
            want,
            committed: committed.len(),
            rerender: rerender.len(),
        });
    }
    if rect.w == 0 || rect.h == 0 {
        return Err(MetricsError::Empty { rect });
    }
    if committed == rerender {
        return Ok(TileMetrics::IDENTICAL);
    }
    let (a, b) = (rgb(committed), rgb(rerender));
    let map = flip_map(&srgb8(&a), &srgb8(&b), rect.w, rect.h)
        .map_err(|source| MetricsError::Flip { rect, source })?;
    Ok(flip_metrics(linear_errors(t, &a, &b), map))
}

/// One sampled block to compare: the committed (delivered) bytes, the re-rendered bytes
/// and the block's rectangle.
#[derive(Clone, Copy, Debug)]
pub struct BlockPair<'a> {
    /// The delivered bytes (ꟻLIP's reference).
    pub committed: &'a [u8],
    /// The re-rendered bytes.
    pub rerender: &'a [u8],
    /// The block.
    pub rect: TileRect,
}

/// The metrics of each sampled block, and of all of them together (the aggregate: the
/// diverged pixels and squared errors summed over every block's pixels, the ꟻLIP mean
/// and 99th percentile over every block's ꟻLIP values). Identical blocks count as
/// pixels without error. Each block's ꟻLIP map is computed on the block alone (padded to
/// [`FLIP_MIN_EDGE`] as a small tile is), so a block's metrics do not depend on which
/// other blocks were sampled. Fails as [`tile_metrics`] does, naming the block.
pub fn blocks_metrics(
    t: &Tolerance,
    pairs: &[BlockPair<'_>],
) -> Result<(Vec<TileMetrics>, TileMetrics), MetricsError> {
    let mut each = Vec::with_capacity(pairs.len());
    let mut sums = LinearErrors::default();
    let mut flips: Vec<f32> = Vec::new();
    for p in pairs {
        let rect = p.rect;
        let want = rect.canonical_len();
        if p.committed.len() != want || p.rerender.len() != want {
            return Err(MetricsError::Length {
                rect,
                want,
                committed: p.committed.len(),
                rerender: p.rerender.len(),
            });
        }
        if rect.w == 0 || rect.h == 0 {
            return Err(MetricsError::Empty { rect });
        }
        if p.committed == p.rerender {
            sums.pixels += rect.pixels();
            flips.extend(std::iter::repeat_n(0.0, rect.pixels() as usize));
            each.push(TileMetrics::IDENTICAL);
            continue;
        }
        let (a, b) = (rgb(p.committed), rgb(p.rerender));
        let errors = linear_errors(t, &a, &b);
        sums.add(&errors);
        let map = flip_map(&srgb8(&a), &srgb8(&b), rect.w, rect.h)
            .map_err(|source| MetricsError::Flip { rect, source })?;
        each.push(flip_metrics(errors, map.clone()));
        flips.extend(map);
    }
    let aggregate = if pairs.iter().all(|p| p.committed == p.rerender) {
        TileMetrics::IDENTICAL
    } else {
        flip_metrics(sums, flips)
    };
    Ok((each, aggregate))
}

/// The four metrics from the linear sums and a ꟻLIP map.
fn flip_metrics(errors: LinearErrors, mut map: Vec<f32>) -> TileMetrics {
    let mean = if map.is_empty() {
        0.0
    } else {
        map.iter().map(|&v| f64::from(v)).sum::<f64>() / map.len() as f64
    };
    let p99 = f64::from(percentile(&mut map, 0.99));
    let ppm = |v: f64| (v * 1e6).round().clamp(0.0, 1e6) as u32;
    TileMetrics {
        diverged_ppm: errors.diverged_ppm(),
        psnr_cdb: errors.psnr_cdb(),
        flip_mean_ppm: ppm(mean),
        flip_p99_ppm: ppm(p99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_protocol::canonical::f32_to_tile;
    use tessera_protocol::tolerance::{Band, PSNR_CAP_CDB};

    fn tile(w: u32, h: u32, f: impl Fn(u32, u32) -> f32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let c = f(x, y);
                v.extend_from_slice(&[c, c * 0.8, c * 0.6, 1.0]);
            }
        }
        f32_to_tile(&v)
    }

    fn rect(w: u32, h: u32) -> TileRect {
        TileRect { x: 0, y: 0, w, h }
    }

    /// A deterministic value in [0, 1) per (x, y, salt).
    fn hash01(x: u32, y: u32, salt: u32) -> f32 {
        let mut h = x.wrapping_mul(0x9E37_79B9) ^ y.wrapping_mul(0x85EB_CA6B) ^ salt;
        h ^= h >> 15;
        h = h.wrapping_mul(0x2C1B_3C6D);
        h ^= h >> 12;
        (h & 0xFFFF) as f32 / 65536.0
    }

    #[test]
    fn identical_tiles_are_identical() {
        let a = tile(16, 16, |x, y| (x + y) as f32 / 32.0);
        let m = tile_metrics(&Tolerance::default(), &a, &a, rect(16, 16)).unwrap();
        assert_eq!(m, TileMetrics::IDENTICAL);
    }

    #[test]
    fn black_against_a_lit_tile_is_far() {
        let t = Tolerance::default();
        let a = tile(32, 32, |x, y| 0.2 + (x * y) as f32 / 1500.0);
        let b = tile(32, 32, |_, _| 0.0);
        let m = tile_metrics(&t, &a, &b, rect(32, 32)).unwrap();
        assert_eq!(m.diverged_ppm, 1_000_000);
        assert!(m.flip_mean_ppm > 100_000, "{m:?}");
        assert_eq!(t.band(false, &m), Band::Far);
    }

    #[test]
    fn one_odd_pixel_diverges_a_little() {
        let t = Tolerance::default();
        let a = tile(32, 32, |x, _| 0.3 + x as f32 / 200.0);
        let b = tile(32, 32, |x, y| {
            if (x, y) == (5, 5) {
                0.9
            } else {
                0.3 + x as f32 / 200.0
            }
        });
        let m = tile_metrics(&t, &a, &b, rect(32, 32)).unwrap();
        assert_eq!(m.diverged_ppm, 1_000_000_u32.div_ceil(1024));
        assert!(m.flip_mean_ppm > 0 && m.flip_mean_ppm < 10_000, "{m:?}");
    }

    #[test]
    fn small_noise_diverges_few_pixels_and_passes() {
        // ±0.05 % relative noise everywhere, and one pixel in 1024 off by 10 %.
        let t = Tolerance::default();
        let base = |x: u32, y: u32| 0.1 + 0.6 * hash01(x, y, 1);
        let a = tile(64, 64, base);
        let b = tile(64, 64, |x, y| {
            let jitter = 1.0 + (hash01(x, y, 2) - 0.5) * 1e-3;
            let odd = if (x * 64 + y) % 1024 == 7 { 1.1 } else { 1.0 };
            base(x, y) * jitter * odd
        });
        let m = tile_metrics(&t, &a, &b, rect(64, 64)).unwrap();
        assert_eq!(m.diverged_ppm, 1_000_000_u32.div_ceil(1024), "{m:?}");
        assert!(m.psnr_cdb > 4_000 && m.psnr_cdb < PSNR_CAP_CDB, "{m:?}");
        assert_eq!(t.band(false, &m), Band::Close, "{m:?}");
    }

    #[test]
    fn alpha_is_ignored() {
        let t = Tolerance::default();
        let a = tile(8, 8, |x, _| x as f32 / 8.0);
        let mut values = tile_to_f32(&a);
        for p in values.chunks_exact_mut(4) {
            p[3] = 0.25;
        }
        let b = f32_to_tile(&values);
        assert_ne!(a, b);
        assert_eq!(
            tile_metrics(&t, &a, &b, rect(8, 8)).unwrap(),
            TileMetrics::IDENTICAL
        );
    }

    #[test]
    fn tiny_tiles_and_wrong_lengths_do_not_panic() {
        let t = Tolerance::default();
        for (w, h) in [(1, 1), (1, 7), (7, 1), (3, 2), (8, 1), (1, 9)] {
            let a = tile(w, h, |x, y| 0.1 + (x + y) as f32 / 20.0);
            let b = tile(w, h, |_, _| 0.9);
            let m = tile_metrics(&t, &a, &b, rect(w, h)).unwrap();
            assert_eq!(m.diverged_ppm, 1_000_000, "{w}x{h}");
            assert!(m.flip_mean_ppm > 0, "{w}x{h}: {m:?}");
            assert_eq!(t.band(false, &m), Band::Far, "{w}x{h}");
        }
        let (a, b) = (tile(1, 1, |_, _| 0.5), tile(1, 1, |_, _| 0.1));
        let err = tile_metrics(&t, &a, &b[..4], rect(1, 1)).unwrap_err();
        assert_eq!(
            err,
            MetricsError::Length {
                rect: rect(1, 1),
                want: 8,
                committed: 8,
                rerender: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "tile 1x1+0+0: 8 canonical bytes expected, got 8 committed and 4 re-rendered"
        );
        assert_eq!(
            tile_metrics(&t, &[], &[], rect(0, 4)),
            Err(MetricsError::Empty { rect: rect(0, 4) })
        );
        assert_eq!(
            flip_map(&[0; 3], &[0; 6], 1, 1),
            Err(FlipError::Size {
                width: 1,
                height: 1,
                want: 3,
                reference: 3,
                test: 6
            })
        );
        assert_eq!(
            flip_map(&[], &[], 0, 0),
            Err(FlipError::Empty {
                width: 0,
                height: 0
            })
        );
    }

    #[test]
    fn padding_keeps_only_the_original_pixels_and_changes_none() {
        // A 5x3 image's map equals the top-left 5x3 of the map of the same image padded
        // by hand to 9x9, since ꟻLIP replicates edges itself.
        let img = |w: u32, h: u32, s: u32| -> Vec<u8> {
            (0..h)
                .flat_map(|y| {
                    (0..w).flat_map(move |x| {
                        let (x, y) = (x.min(4), y.min(2));
                        [0, 1, 2].map(|c| (hash01(x, y, s + c) * 255.0) as u8)
                    })
                })
                .collect()
        };
        let small = flip_map(&img(5, 3, 10), &img(5, 3, 20), 5, 3).unwrap();
        assert_eq!(small.len(), 15);
        let big = flip_map(&img(9, 9, 10), &img(9, 9, 20), 9, 9).unwrap();
        let crop: Vec<f32> = (0..3)
            .flat_map(|y| big[y * 9..y * 9 + 5].to_vec())
            .collect();
        assert_eq!(small, crop);
        assert!(small.iter().any(|&v| v > 0.0));
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<f32> = (1..=200).map(|i| i as f32).collect();
        assert_eq!(percentile(&mut v, 0.99), 198.0);
        assert_eq!(percentile(&mut [5.0], 0.99), 5.0);
        assert_eq!(percentile(&mut [], 0.99), 0.0);
    }
}
