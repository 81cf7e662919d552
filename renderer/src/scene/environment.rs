//! The world background: `scenes[s].extras.tessera_environment`, a constant colour or an
//! equirectangular HDR/EXR image, and the image's importance-sampling distribution.
//!
//! Mapping (equal to Blender's Environment Texture node with its default vector, Cycles'
//! `direction_to_equirectangular`): a world direction `d` (glTF axes) is first turned by
//! `rotation` degrees about +Y (`d' = R_y(rotation) · d`, which is Blender's Mapping node of
//! type Point with rotation Z = `rotation`, since Blender's (x, y, z) = glTF's (x, −z, y)),
//! then `u = 0.5 + atan2(d'.z, d'.x) / 2π` (left to right in the file) and
//! `t = acos(d'.y) / π` (top to bottom in the file: the image's first row is straight up).

use std::io::{BufReader, Read, Seek, SeekFrom};

use serde_json::Value;

use super::material::FieldError;
use super::texture::ImageError;

/// Largest side of the importance-sampling grid; bigger images are averaged down by an
/// integer factor for the distribution only (radiance is still read at full resolution).
const MAX_DIST_CELLS: u64 = 1 << 21;

/// The parsed environment.
#[derive(Clone, Debug)]
pub(crate) struct Environment {
    /// Linear colour (used when there is no image).
    pub color: [f32; 3],
    pub strength: f32,
    pub rotation_deg: f64,
    pub image: Option<EnvImage>,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            color: [0.0; 3],
            strength: 1.0,
            rotation_deg: 0.0,
            image: None,
        }
    }
}

/// A decoded equirectangular image (linear RGB, row 0 = up) with its sampling tables.
#[derive(Clone, Debug)]
pub(crate) struct EnvImage {
    /// The URI as written in the scene (for messages).
    #[allow(dead_code)]
    pub uri: String,
    pub width: u32,
    pub height: u32,
    /// RGBA f32, row-major (alpha = 1).
    pub rgba: Vec<f32>,
    /// Distribution grid size (cells), and its tables: `marginal` (dist_h CDF values, the
    /// last 1), then `conditional` (dist_w CDF values per row, each row's last 1). Empty
    /// when the image is black.
    pub dist_w: u32,
    pub dist_h: u32,
    pub cdf: Vec<f32>,
}

/// The raw `tessera_environment` fields, validated; the image (if any) is only named.
pub(crate) struct EnvSpec {
    pub color: [f32; 3],
    pub strength: f32,
    pub rotation_deg: f64,
    pub image_uri: Option<String>,
}

/// Validate `extras.tessera_environment` of scene `s` (`value` is the scene's `extras`).
pub(crate) fn parse_spec(s: usize, extras: Option<&Value>) -> Result<Option<EnvSpec>, FieldError> {
    let Some(env) = extras.and_then(|e| e.get("tessera_environment")) else {
        return Ok(None);
    };
    let base = format!("scenes[{s}].extras.tessera_environment");
    let obj = env
        .as_object()
        .ok_or_else(|| (base.clone(), format!("{env} is not an object")))?;
    let mut spec = EnvSpec {
        color: [0.0; 3],
        strength: 1.0,
        rotation_deg: 0.0,
        image_uri: None,
    };
    for (key, v) in obj {
        let field = format!("{base}.{key}");
        let number = |v: &Value| -> Result<f64, FieldError> {
            v.as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| (field.clone(), format!("{v} is not a finite number")))
        };
        match key.as_str() {
            "color" => {
                let arr = v
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .ok_or_else(|| (field.clone(), format!("{v} is not an array of 3 numbers")))?;
                for (k, c) in arr.iter().enumerate() {
                    let c = number(c)?;
                    if !(0.0..=f64::from(f32::MAX)).contains(&c) {
                        return Err((
                            field.clone(),
                            format!("component {k} = {c} is negative or too large"),
                        ));
                    }
                    spec.color[k] = c as f32;
                }
            }
            "strength" => {
                let x = number(v)?;
                if !(0.0..=1e30).contains(&x) {
                    return Err((field, format!("{x} is not in [0, 1e30]")));
                }
                spec.strength = x as f32;
            }
            "rotation" => spec.rotation_deg = number(v)?,
            "image" => {
                let uri = v
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| (field.clone(), format!("{v} is not a non-empty uri string")))?;
                spec.image_uri = Some(uri.to_string());
            }
            other => {
                return Err((
                    field,
                    format!("unknown field {other:?} (known: color, strength, image, rotation)"),
                ))
            }
        }
    }
    Ok(Some(spec))
}

/// Width and height of a Radiance HDR or OpenEXR image from its header, reading nothing
/// else; only the sides are bounded here (by the decoder's limit), the pixels are charged
/// to the scene budget by the caller.
pub(crate) fn read_header<R: Read + Seek>(mut data: R) -> Result<(u32, u32), ImageError> {
    let mut magic = Vec::with_capacity(32);
    (&mut data)
        .take(32)
        .read_to_end(&mut magic)
        .and_then(|_| data.seek(SeekFrom::Start(0)))
        .map_err(ImageError::Read)?;
    let format = environment_format(&magic)?;
    let mut reader = image::ImageReader::with_format(BufReader::new(data), format);
    reader.limits(limits_for(u64::MAX));
    reader
        .into_dimensions()
        .map_err(|source| ImageError::Header { format, source })
}

fn environment_format(magic: &[u8]) -> Result<image::ImageFormat, ImageError> {
    match image::guess_format(magic) {
        Ok(f @ (image::ImageFormat::Hdr | image::ImageFormat::OpenExr)) => Ok(f),
        Ok(other) => Err(ImageError::NotEnvironmentFormat(other)),
        Err(_) => Err(ImageError::UnknownEnvironmentFormat),
    }
}

/// Decode a Radiance HDR or OpenEXR image to linear RGBA f32 (`max_pixels` bounds it).
pub(crate) fn decode_hdr(
    bytes: &[u8],
    max_pixels: u64,
) -> Result<(u32, u32, Vec<f32>), ImageError> {
    let format = environment_format(bytes)?;
    let (w, h) = read_header(std::io::Cursor::new(bytes))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(ImageError::OverBudget {
            width: w,
            height: h,
            budget: max_pixels,
        });
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(limits_for(max_pixels));
    let img = reader
        .decode()
        .map_err(|source| ImageError::Decode { format, source })?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(ImageError::Empty);
    }
    let mut rgba = img.into_rgba32f().into_raw();
    for px in rgba.chunks_exact_mut(4) {
        for c in &mut px[..3] {
            // Negative or non-finite radiance has no meaning; it would break sampling.
            if !c.is_finite() || *c < 0.0 {
                *c = 0.0;
            }
        }
        px[3] = 1.0;
    }
    Ok((w, h, rgba))
}

fn limits_for(max_pixels: u64) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(1 << 16);
    limits.max_image_height = Some(1 << 16);
    limits.max_alloc = Some(max_pixels.saturating_mul(32).max(1 << 20));
    limits
}

/// Build the importance-sampling tables of an image: cell weight = mean over the cell of
/// the texels' luminance (Rec. 709, dilated to the 3×3 max) × sin θ at the cell centre; marginal CDF over rows, conditional
/// CDF over the columns of each row, all sums in f64 in index order.
pub(crate) fn distribution(width: u32, height: u32, rgba: &[f32]) -> (u32, u32, Vec<f32>) {
    let mut k = 1u32;
    while u64::from(width.div_ceil(k)) * u64::from(height.div_ceil(k)) > MAX_DIST_CELLS {
        k += 1;
    }
    let (dw, dh) = (width.div_ceil(k), height.div_ceil(k));
    // Luminance of each texel, dilated to the max over its 3×3 neighbourhood (wrapping
    // in x, clamped in y): bilinear filtering spreads a texel's radiance half a texel
    // into its neighbours, and light sampling must reach everywhere there is radiance.
    let (w, h) = (width as usize, height as usize);
    let lum: Vec<f64> = rgba
        .chunks_exact(4)
        .map(|p| 0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2]))
        .collect();
    let mut dilated = vec![0.0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut m = 0.0f64;
            for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for dx in [w - 1, 0, 1] {
                    m = m.max(lum[yy * w + (x + dx) % w]);
                }
            }
            dilated[y * w + x] = m;
        }
    }
    let mut weights = vec![0.0f64; (dw * dh) as usize];
    for cy in 0..dh {
        let theta = std::f64::consts::PI * (f64::from(cy) + 0.5) / f64::from(dh);
        let sin_t = theta.sin();
        for cx in 0..dw {
            let mut sum = 0.0f64;
            let mut n = 0u32;
            for y in cy * k..((cy + 1) * k).min(height) {
                for x in cx * k..((cx + 1) * k).min(width) {
                    sum += dilated[(y * width + x) as usize];
                    n += 1;
                }
            }
            weights[(cy * dw + cx) as usize] = sum / f64::from(n.max(1)) * sin_t;
        }
    }
    let row_sums: Vec<f64> = weights
        .chunks_exact(dw as usize)
        .map(|r| r.iter().sum())
        .collect();
    let total: f64 = row_sums.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return (dw, dh, Vec::new());
    }
    let mut cdf = Vec::with_capacity((dh + dw * dh) as usize);
    let mut running = 0.0f64;
    for (i, s) in row_sums.iter().enumerate() {
        running += s;
        cdf.push(if i + 1 == dh as usize {
            1.0
        } else {
            (running / total) as f32
        });
    }
    for (row, s) in weights.chunks_exact(dw as usize).zip(&row_sums) {
        let mut running = 0.0f64;
        for (j, w) in row.iter().enumerate() {
            running += w;
            cdf.push(if j + 1 == dw as usize {
                1.0
            } else if *s > 0.0 {
                (running / s) as f32
            } else {
                ((j + 1) as f64 / f64::from(dw)) as f32
            });
        }
    }
    (dw, dh, cdf)
}
