//! Deterministic image files for scenes: PNG textures (through the `image` crate) and
//! Radiance `.hdr` environment maps (written here, run-length encoded).
//!
//! Same pixels in, same bytes out: the PNG encoder is pure integer code, and the RGBE
//! conversion uses only exact operations (bit manipulation, multiplication by powers of
//! two, truncation).

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

/// How hard the PNG encoder tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PngEffort {
    /// Smallest files (for committed scenes).
    Small,
    /// Fastest encoding (for generated-on-demand large scenes).
    Fast,
}

/// Channel layout of 8-bit pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// One byte per pixel (grey).
    Gray,
    /// Three bytes per pixel.
    Rgb,
    /// Four bytes per pixel (straight alpha).
    Rgba,
}

impl Channels {
    /// Bytes per pixel.
    pub fn count(self) -> usize {
        match self {
            Channels::Gray => 1,
            Channels::Rgb => 3,
            Channels::Rgba => 4,
        }
    }
}

/// Encodes 8-bit pixels (row-major, top row first) as a PNG file.
///
/// # Panics
/// If `pixels.len() != width × height × channels` or a side is 0 (a caller's bug).
pub fn png(
    width: u32,
    height: u32,
    channels: Channels,
    pixels: &[u8],
    effort: PngEffort,
) -> Vec<u8> {
    assert!(width > 0 && height > 0, "empty image {width}×{height}");
    assert_eq!(
        pixels.len(),
        width as usize * height as usize * channels.count(),
        "pixel buffer size for {width}×{height}×{}",
        channels.count()
    );
    let (compression, filter) = match effort {
        PngEffort::Small => (CompressionType::Best, FilterType::Adaptive),
        PngEffort::Fast => (CompressionType::Fast, FilterType::Adaptive),
    };
    let color = match channels {
        Channels::Gray => ExtendedColorType::L8,
        Channels::Rgb => ExtendedColorType::Rgb8,
        Channels::Rgba => ExtendedColorType::Rgba8,
    };
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, compression, filter)
        .write_image(pixels, width, height, color)
        .expect("encoding a PNG into memory with matching dimensions cannot fail");
    out
}

/// Converts a linear RGB value to Radiance RGBE (shared exponent), as Greg Ward's
/// `float2rgbe`: mantissas are truncated; values below 1e-32 become black.
pub fn rgbe(rgb: [f32; 3]) -> [u8; 4] {
    let v = f64::from(rgb[0].max(rgb[1]).max(rgb[2]));
    if v.is_nan() || v < 1e-32 {
        return [0; 4];
    }
    let v = v.min(1e30);
    // frexp: v = m · 2^e with m in [0.5, 1), from the bits (exact).
    let e = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1022;
    let scale = f64::from_bits(((1023 - e + 8) as u64) << 52); // 256 / 2^e, exact
    let byte = |c: f32| (f64::from(c.max(0.0)) * scale).min(255.0) as u8;
    [byte(rgb[0]), byte(rgb[1]), byte(rgb[2]), (e + 128) as u8]
}

/// Decodes one RGBE pixel to linear RGB (the inverse of [`rgbe`] up to truncation,
/// with Ward's half-step offset: `(byte + 0.5) · 2^(e − 136)`).
pub fn rgbe_to_rgb(p: [u8; 4]) -> [f32; 3] {
    if p[3] == 0 {
        return [0.0; 3];
    }
    let scale = f64::from_bits(((i32::from(p[3]) - 136 + 1023) as u64) << 52);
    [0, 1, 2].map(|i| ((f64::from(p[i]) + 0.5) * scale) as f32)
}

/// Encodes a linear RGB image (row-major, top row first) as a Radiance `.hdr` file:
/// `#?RADIANCE` header, `FORMAT=32-bit_rle_rgbe`, `-Y height +X width`, then new-style
/// run-length-encoded scanlines (flat scanlines when `width` is outside 8..32768, as the
/// format requires).
///
/// # Panics
/// If `pixels.len() != width × height` or a side is 0.
pub fn radiance_hdr(width: u32, height: u32, pixels: &[[f32; 3]]) -> Vec<u8> {
    assert!(width > 0 && height > 0, "empty image {width}×{height}");
    assert_eq!(pixels.len(), width as usize * height as usize);
    let mut out = Vec::with_capacity(pixels.len() * 4 + 128);
    out.extend_from_slice(b"#?RADIANCE\n# made by tessera-scenes\nFORMAT=32-bit_rle_rgbe\n\n");
    out.extend_from_slice(format!("-Y {height} +X {width}\n").as_bytes());
    let w = width as usize;
    let rle = (8..32768).contains(&width);
    let mut channel = vec![0u8; w];
    for row in pixels.chunks_exact(w) {
        let encoded: Vec<[u8; 4]> = row.iter().map(|&p| rgbe(p)).collect();
        if !rle {
            out.extend(encoded.iter().flatten());
            continue;
        }
        out.extend_from_slice(&[2, 2, (width >> 8) as u8, (width & 0xff) as u8]);
        for c in 0..4 {
            for (dst, px) in channel.iter_mut().zip(&encoded) {
                *dst = px[c];
            }
            rle_channel(&channel, &mut out);
        }
    }
    out
}

/// Length of the run of equal bytes starting at `at`, at most 127.
fn run_length(data: &[u8], at: usize) -> usize {
    let mut n = 1;
    while at + n < data.len() && n < 127 && data[at + n] == data[at] {
        n += 1;
    }
    n
}

/// One channel of a new-style RLE scanline: runs of ≥ 4 equal bytes as
/// `(128 + n, byte)`, everything else as literal dumps `(n ≤ 128, bytes…)`.
fn rle_channel(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let run = run_length(data, i);
        if run >= 4 {
            out.push(128 + run as u8);
            out.push(data[i]);
            i += run;
            continue;
        }
        let start = i;
        while i < data.len() && i - start < 128 && run_length(data, i) < 4 {
            i += 1;
        }
        out.push((i - start) as u8);
        out.extend_from_slice(&data[start..i]);
    }
}

/// Decodes a file written by [`radiance_hdr`] (used by tests; handles only the
/// header and scanline forms that [`radiance_hdr`] writes).
pub fn decode_radiance_hdr(bytes: &[u8]) -> Option<(u32, u32, Vec<[f32; 3]>)> {
    let text_end = bytes.windows(2).position(|w| w == b"\n\n")? + 2;
    let line_end = text_end + bytes[text_end..].iter().position(|&b| b == b'\n')?;
    let size = std::str::from_utf8(&bytes[text_end..line_end]).ok()?;
    let parts: Vec<&str> = size.split_whitespace().collect();
    if parts.len() != 4 || parts[0] != "-Y" || parts[2] != "+X" {
        return None;
    }
    let height: u32 = parts[1].parse().ok()?;
    let width: u32 = parts[3].parse().ok()?;
    let w = width as usize;
    let mut at = line_end + 1;
    let mut pixels = Vec::with_capacity(w * height as usize);
    let mut scan = vec![[0u8; 4]; w];
    for _ in 0..height {
        let head = bytes.get(at..at + 4)?;
        if head[0] == 2 && head[1] == 2 && (8..32768).contains(&width) {
            at += 4;
            for c in 0..4 {
                let mut x = 0;
                while x < w {
                    let n = *bytes.get(at)? as usize;
                    at += 1;
                    if n > 128 {
                        let value = *bytes.get(at)?;
                        at += 1;
                        for px in scan.get_mut(x..x + n - 128)? {
                            px[c] = value;
                        }
                        x += n - 128;
                    } else {
                        if n == 0 {
                            return None;
                        }
                        for (px, &value) in scan
                            .get_mut(x..x + n)?
                            .iter_mut()
                            .zip(bytes.get(at..at + n)?)
                        {
                            px[c] = value;
                        }
                        at += n;
                        x += n;
                    }
                }
            }
        } else {
            for px in scan.iter_mut() {
                px.copy_from_slice(bytes.get(at..at + 4)?);
                at += 4;
            }
        }
        pixels.extend(scan.iter().map(|&p| rgbe_to_rgb(p)));
    }
    Some((width, height, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgbe_matches_ward() {
        assert_eq!(rgbe([0.0; 3]), [0; 4]);
        // 1.0 = 0.5 · 2^1: mantissa byte 128, exponent 129.
        assert_eq!(rgbe([1.0, 0.5, 0.25]), [128, 64, 32, 129]);
        assert_eq!(rgbe([1000.0, 0.0, 0.0]), [250, 0, 0, 138]);
        let back = rgbe_to_rgb(rgbe([3.0, 1.5, 0.1]));
        assert!((back[0] - 3.0).abs() < 3.0 / 128.0, "{back:?}");
    }

    #[test]
    fn hdr_round_trips_through_rle() {
        let (w, h) = (40, 3);
        let pixels: Vec<[f32; 3]> = (0..w * h)
            .map(|i| {
                let x = i % w;
                if x < 20 {
                    [1.0, 1.0, 1.0]
                } else {
                    [x as f32, 0.5, (i % 3) as f32]
                }
            })
            .collect();
        let bytes = radiance_hdr(w, h, &pixels);
        let (dw, dh, decoded) = decode_radiance_hdr(&bytes).unwrap();
        assert_eq!((dw, dh), (w, h));
        for (a, b) in pixels.iter().zip(&decoded) {
            assert_eq!(rgbe(*a), rgbe(*b).map(|x| x), "{a:?} {b:?}");
        }
    }

    #[test]
    fn png_is_deterministic_and_decodes() {
        let pixels: Vec<u8> = (0..16 * 8 * 4).map(|i| (i * 7 % 251) as u8).collect();
        let a = png(16, 8, Channels::Rgba, &pixels, PngEffort::Small);
        let b = png(16, 8, Channels::Rgba, &pixels, PngEffort::Small);
        assert_eq!(a, b);
        let decoded = image::load_from_memory(&a).unwrap().to_rgba8();
        assert_eq!(decoded.as_raw(), &pixels);
    }
}
