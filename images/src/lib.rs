//! Frame files: OpenEXR (linear RGBA half floats: exactly the committed canonical bytes,
//! never touched by the view transform) and PNG (8-bit sRGB through a view transform).
//! Also reads EXR and PNG files back as linear RGB for `tessera compare`.
//!
//! # View transforms (PNG only)
//! A linear value `x` (each of R, G, B; alpha is written linearly, clamped) is first
//! scaled by `2^exposure`, then:
//! - `standard` (Blender's "Standard"): `y = clamp(x, 0, 1)`, then the exact sRGB OETF
//!   (IEC 61966-2-1): `12.92·y` for `y ≤ 0.0031308`, else `1.055·y^(1/2.4) − 0.055`.
//! - `filmic`: the ACES filmic fit by Krzysztof Narkowicz (2015, "ACES Filmic Tone
//!   Mapping Curve"), per channel: `y = clamp(x(2.51x + 0.03) / (x(2.43x + 0.59) + 0.14),
//!   0, 1)`, then the same sRGB OETF. The fit is used as published, without the 0.6
//!   input pre-scale that the post mentions for matching the reference ACES RRT+ODT
//!   (`--exposure -0.737` applies that scale: log2 0.6 = −0.737).
//!
//! The encoded value `s ∈ [0, 1]` becomes the 8-bit code `floor(255·s + 0.5)` (round half
//! up). Non-finite values count as 0. The maths is in f32.
//!
//! The sRGB OETF and the 8-bit quantizer are the verifier's
//! ([`tessera_verifier::tolerance`]), so the tolerant comparison tone-maps exactly as PNGs
//! are written.

#![warn(missing_docs)]

pub mod paths;

use half::f16;
use std::path::{Path, PathBuf};
pub use tessera_verifier::compare::LinearImage;

/// Why a frame file could not be written or read. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Writing an OpenEXR file failed.
    #[error("writing {}", path.display())]
    WriteExr {
        /// The file.
        path: PathBuf,
        /// What the EXR encoder said.
        #[source]
        source: exr::error::Error,
    },
    /// Writing a PNG file failed.
    #[error("writing {}", path.display())]
    WritePng {
        /// The file.
        path: PathBuf,
        /// What the PNG encoder said.
        #[source]
        source: image::ImageError,
    },
    /// An OpenEXR file could not be read.
    #[error("reading EXR image {}", path.display())]
    ReadExr {
        /// The file.
        path: PathBuf,
        /// What the EXR decoder said.
        #[source]
        source: exr::error::Error,
    },
    /// A PNG file could not be decoded.
    #[error("decoding PNG image {}", path.display())]
    DecodePng {
        /// The file.
        path: PathBuf,
        /// What the PNG decoder said.
        #[source]
        source: image::ImageError,
    },
    /// A file could not be opened.
    #[error("opening {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// An image has no pixels.
    #[error("{format} image {} is empty", path.display())]
    Empty {
        /// `EXR` or `PNG`.
        format: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A file is shorter than any image's signature.
    #[error("{}: too short to be an image", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
    },
    /// A file is neither OpenEXR nor PNG.
    #[error("{}: neither an OpenEXR nor a PNG file (by its first bytes)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
}

/// What the functions of this crate return.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

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
        .map_err(|source| ImageError::WriteExr {
            path: path.into(),
            source,
        })
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
    .map_err(|source| ImageError::ReadExr {
        path: path.into(),
        source,
    })?;
    let size = image.layer_data.size;
    let (_, buf) = image.layer_data.channel_data.pixels;
    if size.width() == 0 || size.height() == 0 {
        return Err(ImageError::Empty {
            format: "EXR",
            path: path.into(),
        });
    }
    Ok((size.width() as u32, size.height() as u32, buf))
}

/// How linear values become display values in the PNG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum View {
    /// Clamp to [0, 1], then the sRGB OETF (Blender's "Standard").
    Standard,
    /// Narkowicz's ACES filmic fit, then the sRGB OETF.
    Filmic,
}

/// A view transform with its exposure: what the PNG of a linear frame looks like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewTransform {
    /// The tone curve.
    pub view: View,
    /// Exposure in stops: linear values are multiplied by `2^exposure` before the curve.
    pub exposure: f32,
}

impl Default for ViewTransform {
    fn default() -> Self {
        ViewTransform {
            view: View::Standard,
            exposure: 0.0,
        }
    }
}

/// The exact sRGB OETF (IEC 61966-2-1) and the 8-bit quantizer are the verifier's, so the
/// tolerant comparison tone-maps exactly as PNGs are written.
pub use tessera_verifier::tolerance::{quantize8, srgb_oetf};

/// The inverse of [`srgb_oetf`]: an sRGB-encoded value in [0, 1] back to linear.
pub fn srgb_eotf(s: f32) -> f32 {
    if s <= 0.040_45 {
        s / 12.92
    } else {
        ((s + 0.055) / 1.055).powf(2.4)
    }
}

/// Narkowicz's 2015 ACES filmic fit, clamped to [0, 1].
pub fn aces_narkowicz(x: f32) -> f32 {
    let x = x.max(0.0);
    ((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0.0, 1.0)
}

/// An exposure beyond [`MAX_EXPOSURE`] stops either way, or not a number.
#[derive(Debug, thiserror::Error)]
#[error("--exposure {0}: must be within -64..=64 stops")]
pub struct ExposureError(pub f32);

/// The largest exposure, in stops either way, that a PNG may be written with.
pub const MAX_EXPOSURE: f32 = 64.0;

impl ViewTransform {
    /// `view` at `exposure` stops, which must be finite and within [`MAX_EXPOSURE`].
    pub fn new(view: View, exposure: f32) -> std::result::Result<Self, ExposureError> {
        if !exposure.is_finite() || exposure.abs() > MAX_EXPOSURE {
            return Err(ExposureError(exposure));
        }
        Ok(ViewTransform { view, exposure })
    }

    /// The display-encoded value in [0, 1] (before 8-bit rounding) of one linear colour
    /// channel value.
    pub fn encode(&self, linear: f32) -> f32 {
        let x = if linear.is_finite() { linear } else { 0.0 };
        let x = x * self.exposure.exp2();
        match self.view {
            View::Standard => srgb_oetf(x),
            View::Filmic => srgb_oetf(aces_narkowicz(x)),
        }
    }

    /// The 8-bit code of one linear colour channel value.
    pub fn encode8(&self, linear: f32) -> u8 {
        quantize8(self.encode(linear))
    }
}

/// Write canonical RGBA16F bytes as an 8-bit sRGB PNG through `view` (alpha kept linear,
/// clamped, and not exposed).
pub fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    pixels: &[u8],
    view: &ViewTransform,
) -> Result<()> {
    let n = width as usize * height as usize;
    let mut rgba = Vec::with_capacity(n * 4);
    for p in 0..n {
        for c in 0..4 {
            let v = half_at(pixels, p * 4 + c).to_f32();
            rgba.push(if c == 3 {
                quantize8(if v.is_finite() { v } else { 0.0 })
            } else {
                view.encode8(v)
            });
        }
    }
    image::save_buffer(path, &rgba, width, height, image::ColorType::Rgba8).map_err(|source| {
        ImageError::WritePng {
            path: path.into(),
            source,
        }
    })
}

/// Write 8-bit RGB values (row-major, 3 per pixel, e.g. a coloured error map) as a PNG.
pub fn write_rgb8_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    image::save_buffer(path, rgb, width, height, image::ColorType::Rgb8).map_err(|source| {
        ImageError::WritePng {
            path: path.into(),
            source,
        }
    })
}

/// Read an image for comparison: an OpenEXR file (first RGBA layer; any sample type; A
/// may be missing) as the linear values it holds, or a PNG (8 or 16 bit) decoded through
/// the sRGB EOTF to linear. Chosen by the file's first bytes, not its name.
pub fn read_linear(path: &Path) -> Result<LinearImage> {
    let mut head = [0u8; 8];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|source| ImageError::Open {
            path: path.into(),
            source,
        })?;
        let n = f.read(&mut head).map_err(|source| ImageError::Read {
            path: path.into(),
            source,
        })?;
        if n < 4 {
            return Err(ImageError::TooShort { path: path.into() });
        }
    }
    if head[..4] == [0x76, 0x2f, 0x31, 0x01] {
        read_exr_linear(path)
    } else if head == [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a] {
        read_png_linear(path)
    } else {
        Err(ImageError::UnknownFormat { path: path.into() })
    }
}

fn read_exr_linear(path: &Path) -> Result<LinearImage> {
    let image = exr::prelude::read_first_rgba_layer_from_file(
        path,
        |res, _| (res.width(), vec![0f32; res.width() * res.height() * 3]),
        |(w, buf): &mut (usize, Vec<f32>), pos, (r, g, b, _a): (f32, f32, f32, f32)| {
            let i = (pos.y() * *w + pos.x()) * 3;
            buf[i] = r;
            buf[i + 1] = g;
            buf[i + 2] = b;
        },
    )
    .map_err(|source| ImageError::ReadExr {
        path: path.into(),
        source,
    })?;
    let size = image.layer_data.size;
    let (_, rgb) = image.layer_data.channel_data.pixels;
    if size.width() == 0 || size.height() == 0 {
        return Err(ImageError::Empty {
            format: "EXR",
            path: path.into(),
        });
    }
    Ok(LinearImage {
        width: size.width() as u32,
        height: size.height() as u32,
        rgb,
    })
}

fn read_png_linear(path: &Path) -> Result<LinearImage> {
    let img = image::ImageReader::open(path)
        .map_err(|source| ImageError::Open {
            path: path.into(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| ImageError::Read {
            path: path.into(),
            source,
        })?
        .decode()
        .map_err(|source| ImageError::DecodePng {
            path: path.into(),
            source,
        })?;
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            format: "PNG",
            path: path.into(),
        });
    }
    let rgb: Vec<f32> = match img {
        image::DynamicImage::ImageLuma16(_)
        | image::DynamicImage::ImageLumaA16(_)
        | image::DynamicImage::ImageRgb16(_)
        | image::DynamicImage::ImageRgba16(_) => img
            .into_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| srgb_eotf(f32::from(v) / 65535.0))
            .collect(),
        _ => {
            // 256-entry table: the same code always gives the same linear value.
            let lut: Vec<f32> = (0..=255u8)
                .map(|v| srgb_eotf(f32::from(v) / 255.0))
                .collect();
            img.into_rgb8()
                .into_raw()
                .into_iter()
                .map(|v| lut[usize::from(v)])
                .collect()
        }
    };
    Ok(LinearImage { width, height, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exposure_is_finite_and_bounded() {
        let v = ViewTransform::new(View::Filmic, -64.0).unwrap();
        assert_eq!((v.view, v.exposure), (View::Filmic, -64.0));
        let e = ViewTransform::new(View::Standard, 64.5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--exposure 64.5: must be within -64..=64 stops"
        );
        assert!(ViewTransform::new(View::Standard, f32::NAN).is_err());
    }

    fn vt(view: View, exposure: f32) -> ViewTransform {
        ViewTransform { view, exposure }
    }

    #[test]
    fn standard_view_maps_known_linear_values() {
        // sRGB OETF: 0.25 → 0.53708 → 136.96 → 137; 0.5 → 0.73536 → 187.52 → 188.
        let s = vt(View::Standard, 0.0);
        assert_eq!(s.encode8(0.0), 0);
        assert_eq!(s.encode8(0.001), 3); // linear segment: 12.92 × 0.001 × 255 = 3.29
        assert_eq!(s.encode8(0.125), 99);
        assert_eq!(s.encode8(0.25), 137);
        assert_eq!(s.encode8(0.5), 188);
        assert_eq!(s.encode8(1.0), 255);
        assert_eq!(s.encode8(7.0), 255);
        assert_eq!(s.encode8(-1.0), 0);
        assert_eq!(s.encode8(f32::NAN), 0);
        assert_eq!(s.encode8(f32::INFINITY), 0);
    }

    #[test]
    fn filmic_view_maps_known_linear_values() {
        // ACES fit: 0.25 → 0.37411 → sRGB 0.64538 → 164.57 → 165;
        // 1.0 → 0.80380 → 231.60 → 232; 4.0 → 0.97342 → 252.00 → 252.
        let f = vt(View::Filmic, 0.0);
        assert_eq!(f.encode8(0.0), 0);
        assert_eq!(f.encode8(0.125), 115);
        assert_eq!(f.encode8(0.25), 165);
        assert_eq!(f.encode8(0.5), 206);
        assert_eq!(f.encode8(1.0), 232);
        assert_eq!(f.encode8(4.0), 252);
        assert!((aces_narkowicz(1.0) - 0.803_797_5).abs() < 1e-6);
    }

    #[test]
    fn exposure_plus_one_doubles_linear_before_the_curve() {
        for view in [View::Standard, View::Filmic] {
            for x in [0.01f32, 0.1, 0.25, 0.3, 1.5] {
                assert_eq!(vt(view, 1.0).encode(x), vt(view, 0.0).encode(2.0 * x));
                assert_eq!(vt(view, -1.0).encode(x), vt(view, 0.0).encode(0.5 * x));
            }
        }
        assert_eq!(vt(View::Standard, 1.0).encode8(0.25), 188);
    }

    #[test]
    fn eotf_inverts_oetf() {
        for code in 0..=255u8 {
            let s = f32::from(code) / 255.0;
            assert_eq!(quantize8(srgb_oetf(srgb_eotf(s))), code);
        }
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn exr_files_give_back_the_canonical_bytes_and_unknown_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 2 * 4)
            .flat_map(|i| f16::from_f32(i as f32 / 7.0).to_le_bytes())
            .collect();
        let exr = dir.path().join("a.exr");
        write_exr(&exr, 3, 2, &pixels).unwrap();
        assert_eq!(read_exr(&exr).unwrap(), (3, 2, pixels.clone()));
        let png = dir.path().join("a.png");
        write_png(&png, 3, 2, &pixels, &ViewTransform::default()).unwrap();
        let linear = read_linear(&png).unwrap();
        assert_eq!((linear.width, linear.height, linear.rgb.len()), (3, 2, 18));
        let text = dir.path().join("a.txt");
        std::fs::write(&text, "not an image").unwrap();
        let e = read_linear(&text).unwrap_err().to_string();
        assert!(
            e.ends_with("neither an OpenEXR nor a PNG file (by its first bytes)"),
            "{e}"
        );
    }
}
