//! Frame files: OpenEXR (linear RGBA half floats: exactly the committed canonical bytes) and
//! PNG (8-bit sRGB through the standard view transform: clamp, sRGB curve).

use anyhow::{bail, Context, Result};
use half::f16;
use std::path::Path;

fn half_at(pixels: &[u8], i: usize) -> f16 {
    f16::from_le_bytes([pixels[2 * i], pixels[2 * i + 1]])
}

/// Write canonical RGBA16F bytes as a half-float RGBA OpenEXR file. Chunks are compressed
/// and written in order on one thread, so the same pixels always give the same file bytes.
pub fn write_exr(path: &Path, width: u32, height: u32, pixels: &[u8]) -> Result<()> {
    use exr::prelude::*;
    let w = width as usize;
    let channels = SpecificChannels::rgba(|Vec2(x, y): Vec2<usize>| {
        let i = (y * w + x) * 4;
        (
            half_at(pixels, i),
            half_at(pixels, i + 1),
            half_at(pixels, i + 2),
            half_at(pixels, i + 3),
        )
    });
    Image::from_channels((w, height as usize), channels)
        .write()
        .non_parallel()
        .to_file(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Read an RGBA OpenEXR file back to canonical RGBA16F bytes (exact for half-float files).
pub fn read_exr(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let image = exr::prelude::read_first_rgba_layer_from_file(
        path,
        |res, _| (res.width(), vec![0u8; res.width() * res.height() * 8]),
        |(w, buf): &mut (usize, Vec<u8>), pos, (r, g, b, a): (f16, f16, f16, f16)| {
            let i = (pos.y() * *w + pos.x()) * 8;
            for (k, v) in [r, g, b, a].into_iter().enumerate() {
                buf[i + 2 * k..i + 2 * k + 2].copy_from_slice(&v.to_le_bytes());
            }
        },
    )
    .with_context(|| format!("reading EXR image {}", path.display()))?;
    let size = image.layer_data.size;
    let (_, buf) = image.layer_data.channel_data.pixels;
    if size.width() == 0 || size.height() == 0 {
        bail!("EXR image {} is empty", path.display());
    }
    Ok((size.width() as u32, size.height() as u32, buf))
}

fn linear_to_srgb8(v: f32) -> u8 {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let s = if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    };
    (s * 255.0 + 0.5) as u8
}

/// Write canonical RGBA16F bytes as an 8-bit sRGB PNG (alpha kept linear).
pub fn write_png(path: &Path, width: u32, height: u32, pixels: &[u8]) -> Result<()> {
    let n = width as usize * height as usize;
    let mut rgba = Vec::with_capacity(n * 4);
    for p in 0..n {
        for c in 0..4 {
            let v = half_at(pixels, p * 4 + c).to_f32();
            rgba.push(if c == 3 {
                (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            } else {
                linear_to_srgb8(v)
            });
        }
    }
    image::save_buffer(path, &rgba, width, height, image::ColorType::Rgba8)
        .with_context(|| format!("writing {}", path.display()))
}
