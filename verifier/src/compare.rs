//! How far apart two frames are (`tessera compare`), by PSNR on linear RGB and by
//! NVIDIA's ꟻLIP (LDR) on their sRGB encodings.
//!
//! Definitions (the README's "Benchmark" section repeats them):
//! - **Exposure match** (optional): B is multiplied by `mean(A) / mean(B)`, the means
//!   taken over every R, G and B value of each image, before both metrics. This removes a
//!   global brightness difference (e.g. a light-unit convention) so the metrics show the
//!   rest.
//! - **PSNR** = `10·log10(peak² / MSE)` with `peak = 1.0` (linear display white) and MSE
//!   over every R, G and B value, on the linear values as stored (no clamping, so HDR
//!   values above 1 count fully). Identical images have MSE 0 and PSNR +∞ (`null` in
//!   JSON, `inf` in text).
//! - **FLIP**: LDR ꟻLIP (the `nv-flip` crate, the reference C++ implementation) with A as
//!   the reference, at 67.02 pixels per degree (its default: a 0.7 m viewing distance
//!   from a 24" 4K screen), on 8-bit sRGB images made with the standard view transform
//!   (clamp, sRGB OETF, `floor(255·s + 0.5)`). Reported: the mean of the error map and its
//!   99th percentile by nearest rank (the `⌈0.99·n⌉`-th smallest of the n pixel errors).
//!
//! The sRGB encoding, the ꟻLIP call and the percentile are the tolerance's
//! ([`crate::tolerance`]), so `compare` measures exactly what verification does.

use crate::tolerance::{flip_map, percentile, srgb8};

/// A frame as linear RGB f32 values (row-major, 3 per pixel), whatever file it came from
/// (`tessera_images::read_linear` reads EXR and PNG files into one).
#[derive(Clone, Debug)]
pub struct LinearImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Linear R, G, B per pixel.
    pub rgb: Vec<f32>,
}

/// Why two images could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The images have different sizes.
    #[error("image sizes differ: A is {a_width}x{a_height}, B is {b_width}x{b_height}")]
    SizeMismatch {
        /// A's width.
        a_width: u32,
        /// A's height.
        a_height: u32,
        /// B's width.
        b_width: u32,
        /// B's height.
        b_height: u32,
    },
    /// ꟻLIP refused the images.
    #[error("{0}")]
    Flip(crate::tolerance::FlipError),
}

/// Metrics of B against the reference A.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// The factor B was multiplied by (1 without exposure matching).
    pub exposure_scale: f64,
    /// Mean over every linear R, G, B value of A.
    pub mean_a: f64,
    /// Mean over every linear R, G, B value of B, before scaling.
    pub mean_b: f64,
    /// Mean squared error over linear R, G, B.
    pub mse: f64,
    /// The peak used by PSNR (1.0: linear display white).
    pub psnr_peak: f64,
    /// PSNR in dB; `None` (JSON `null`) when the images are identical.
    pub psnr_db: Option<f64>,
    /// Mean of the LDR ꟻLIP error map.
    pub flip_mean: f64,
    /// 99th percentile (nearest rank) of the LDR ꟻLIP error map.
    pub flip_p99: f64,
    /// Largest value of the LDR ꟻLIP error map.
    pub flip_max: f64,
}

fn mean(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter()
        .map(|&x| if x.is_finite() { f64::from(x) } else { 0.0 })
        .sum::<f64>()
        / v.len() as f64
}

/// Compare `b` against the reference `a`. With `exposure_match`, `b` is first scaled by
/// `mean(a) / mean(b)` (left as is when mean(b) is 0). Returns the metrics and the ꟻLIP
/// error map (one value in [0, 1] per pixel, row-major).
pub fn compare(
    a: &LinearImage,
    b: &LinearImage,
    exposure_match: bool,
) -> Result<(Comparison, Vec<f32>), CompareError> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(CompareError::SizeMismatch {
            a_width: a.width,
            a_height: a.height,
            b_width: b.width,
            b_height: b.height,
        });
    }
    let (mean_a, mean_b) = (mean(&a.rgb), mean(&b.rgb));
    let scale = if exposure_match && mean_b > 0.0 {
        mean_a / mean_b
    } else {
        1.0
    };
    let b_rgb: Vec<f32> = if scale == 1.0 {
        b.rgb.clone()
    } else {
        b.rgb
            .iter()
            .map(|&v| (f64::from(v) * scale) as f32)
            .collect()
    };
    let finite = |v: f32| if v.is_finite() { f64::from(v) } else { 0.0 };
    let mse = a
        .rgb
        .iter()
        .zip(&b_rgb)
        .map(|(&x, &y)| (finite(x) - finite(y)).powi(2))
        .sum::<f64>()
        / a.rgb.len() as f64;
    let psnr_peak = 1.0;
    let psnr_db = (mse > 0.0).then(|| 10.0 * (psnr_peak * psnr_peak / mse).log10());

    let error_map =
        flip_map(&srgb8(&a.rgb), &srgb8(&b_rgb), a.width, a.height).map_err(CompareError::Flip)?;
    let flip_mean = mean(&error_map);
    let mut sorted = error_map.clone();
    let flip_p99 = f64::from(percentile(&mut sorted, 0.99));
    let flip_max = f64::from(sorted.last().copied().unwrap_or(0.0));
    Ok((
        Comparison {
            width: a.width,
            height: a.height,
            exposure_scale: scale,
            mean_a,
            mean_b,
            mse,
            psnr_peak,
            psnr_db,
            flip_mean,
            flip_p99,
            flip_max,
        },
        error_map,
    ))
}

/// The ꟻLIP error map as RGB8 through the magma colour map (black = no error).
pub fn error_map_rgb8(error_map: &[f32], width: u32, height: u32) -> Vec<u8> {
    let map = nv_flip::FlipImageFloat::with_data(width, height, error_map);
    map.apply_color_lut(&nv_flip::magma_lut()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, v: f32) -> LinearImage {
        LinearImage {
            width: w,
            height: h,
            rgb: vec![v; (w * h * 3) as usize],
        }
    }

    #[test]
    fn identical_images_have_infinite_psnr_and_zero_flip() {
        let mut a = flat(32, 24, 0.2);
        for (i, v) in a.rgb.iter_mut().enumerate() {
            *v = (i % 97) as f32 / 50.0;
        }
        let (c, map) = compare(&a, &a.clone(), false).unwrap();
        assert_eq!(c.mse, 0.0);
        assert_eq!(c.psnr_db, None);
        assert_eq!(c.flip_mean, 0.0);
        assert_eq!(c.flip_p99, 0.0);
        assert_eq!(map.len(), 32 * 24);
    }

    #[test]
    fn constant_offset_gives_the_expected_psnr() {
        // 1/64 everywhere: MSE = 2^-12, PSNR = 20·log10(64) = 36.1236 dB.
        let a = flat(16, 16, 0.25);
        let b = flat(16, 16, 0.25 + 1.0 / 64.0);
        let (c, _) = compare(&a, &b, false).unwrap();
        assert!((c.psnr_db.unwrap() - 20.0 * 64f64.log10()).abs() < 1e-6);
        assert!(c.flip_mean > 0.0);
        // Exposure matching removes a pure scale entirely.
        let (m, _) = compare(&a, &flat(16, 16, 0.5), true).unwrap();
        assert!((m.exposure_scale - 0.5).abs() < 1e-12);
        assert_eq!(m.psnr_db, None);
        assert_eq!(m.flip_mean, 0.0);
    }

    #[test]
    fn sizes_must_match() {
        let err = compare(&flat(4, 4, 0.0), &flat(4, 5, 0.0), false).unwrap_err();
        assert_eq!(err.to_string(), "image sizes differ: A is 4x4, B is 4x5");
    }
}
