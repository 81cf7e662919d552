//! Plain value types shared by every crate: tiles, render settings, determinism classes.

use serde::{Deserialize, Serialize};

/// A 32-byte BLAKE3 digest, shown as lowercase hex on the wire and in files.
pub type Digest = [u8; 32];

/// Bytes per pixel of the canonical tile encoding (RGBA, IEEE half float each).
pub const BYTES_PER_PIXEL: usize = 8;

/// A rectangle of pixels inside a frame, in global pixel coordinates (origin top-left).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TileRect {
    /// Left column of the tile.
    pub x: u32,
    /// Top row of the tile.
    pub y: u32,
    /// Width in pixels (> 0).
    pub w: u32,
    /// Height in pixels (> 0).
    pub h: u32,
}

impl TileRect {
    /// Number of bytes of this tile's canonical encoding: `w × h × 8`.
    pub fn canonical_len(&self) -> usize {
        self.w as usize * self.h as usize * BYTES_PER_PIXEL
    }

    /// Number of pixels in the tile.
    pub fn pixels(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }

    /// True when the tile lies fully inside a `width × height` frame and is not empty.
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        self.w > 0
            && self.h > 0
            && u64::from(self.x) + u64::from(self.w) <= u64::from(width)
            && u64::from(self.y) + u64::from(self.h) <= u64::from(height)
    }
}

impl std::fmt::Display for TileRect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}+{}+{}", self.w, self.h, self.x, self.y)
    }
}

/// Cut a `width × height` frame into tiles of at most `tile × tile` pixels, in row-major
/// tile order. The index in the returned vector is the tile index used everywhere else.
pub fn tile_layout(width: u32, height: u32, tile: u32) -> Vec<TileRect> {
    let tile = tile.max(1);
    let mut tiles = Vec::new();
    let mut y = 0;
    while y < height {
        let h = tile.min(height - y);
        let mut x = 0;
        while x < width {
            let w = tile.min(width - x);
            tiles.push(TileRect { x, y, w, h });
            x += w;
        }
        y += h;
    }
    tiles
}

/// Everything that decides the pixels of a render besides the scene itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderSettings {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub spp: u32,
    /// Maximum number of bounces, counted as Blender Cycles counts them: 0 = direct
    /// light only (camera ray hits and light sampled at the first hit).
    pub max_bounces: u32,
    /// The render seed: every random number is a pure function of
    /// (seed, frame, global pixel, sample index, dimension).
    pub seed: u64,
    /// Name of the glTF camera to use; `None` = the first camera in the scene.
    pub camera: Option<String>,
    /// Frames per second: frame `f` shows the scene's animations at time
    /// `f × den / num` seconds. Older bundles without it mean 24 fps.
    #[serde(default)]
    pub frame_rate: FrameRate,
}

/// A frame rate as a fraction, so that rates such as 30000/1001 (29.97) are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRate {
    /// Frames…
    pub num: u32,
    /// …per this many seconds.
    pub den: u32,
}

impl Default for FrameRate {
    fn default() -> Self {
        Self { num: 24, den: 1 }
    }
}

impl FrameRate {
    /// The animation time of `frame` in seconds (`frame × den / num`), or `None` when the
    /// rate is not positive.
    pub fn time_of(self, frame: u32) -> Option<f64> {
        (self.num > 0 && self.den > 0)
            .then(|| f64::from(frame) * f64::from(self.den) / f64::from(self.num))
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// A [`FrameRate`]'s text that is not a positive rate like `24` or `30000/1001`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a frame rate like 24 or 30000/1001")]
pub struct BadFrameRate(pub String);

impl std::str::FromStr for FrameRate {
    type Err = BadFrameRate;
    /// `24`, or a fraction such as `30000/1001`.
    fn from_str(s: &str) -> Result<Self, BadFrameRate> {
        let (num, den) = s.split_once('/').unwrap_or((s, "1"));
        let parse = |x: &str| {
            x.trim()
                .parse::<u32>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| BadFrameRate(s.to_string()))
        };
        Ok(Self {
            num: parse(num)?,
            den: parse(den)?,
        })
    }
}

/// The identity of a render environment inside which re-renders match byte for byte:
/// (backend, adapter name, driver + version, renderer build, shader hash).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeterminismClass {
    /// wgpu backend, e.g. `vulkan`.
    pub backend: String,
    /// Adapter name as the driver reports it, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub adapter: String,
    /// Driver name, e.g. `llvmpipe`.
    pub driver: String,
    /// Driver version information, e.g. `Mesa 22.3.6 (LLVM 15.0.6)`; a CPU adapter adds the
    /// CPU features its shader compiler may use (`...; cpu sse4.1,avx,avx2,fma`).
    pub driver_info: String,
    /// Renderer build, e.g. `tessera-renderer 0.1.0`.
    pub renderer_build: String,
    /// Lowercase hex BLAKE3 of the shader source the renderer compiles.
    pub shader_hash: String,
}

impl DeterminismClass {
    /// The 32-byte class id that goes into leaves and signed statements: BLAKE3 in
    /// derive-key mode (context `"tessera v1 determinism class"`) over the six fields,
    /// each written as a little-endian u32 length followed by its UTF-8 bytes.
    pub fn id(&self) -> Digest {
        let mut h = blake3::Hasher::new_derive_key("tessera v1 determinism class");
        for field in [
            &self.backend,
            &self.adapter,
            &self.driver,
            &self.driver_info,
            &self.renderer_build,
            &self.shader_hash,
        ] {
            h.update(&(field.len() as u32).to_le_bytes());
            h.update(field.as_bytes());
        }
        *h.finalize().as_bytes()
    }
}

impl std::fmt::Display for DeterminismClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {} / {} {} / {} / shader {}",
            self.backend,
            self.adapter,
            self.driver,
            self.driver_info,
            self.renderer_build,
            &self.shader_hash[..self.shader_hash.len().min(12)]
        )
    }
}

/// Why a tile could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderFailure(pub String);

/// Something that turns (settings, frame, tile) into canonical tile bytes for one scene.
///
/// Implementations must be deterministic within their [`DeterminismClass`]: the same
/// inputs give the same bytes, and a tile equals the same region of a full-frame render.
pub trait TileRenderer: Send + Sync {
    /// The determinism class of this renderer.
    fn class(&self) -> &DeterminismClass;

    /// Render `rect` of `frame` and return its canonical bytes (`rect.canonical_len()`
    /// bytes: linear RGBA, IEEE half floats, little-endian, row-major, no header).
    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure>;

    /// Render every rect of `rects` (a task's tiles) of `frame`: their canonical bytes in
    /// order, each the bytes [`render_tile`](Self::render_tile) gives for it, or a failure
    /// with the index of a rect it concerns. Renderers that can do several tiles in one
    /// dispatch override it; this one renders them one by one.
    fn render_tiles(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rects: &[TileRect],
    ) -> Result<Vec<Vec<u8>>, (usize, RenderFailure)> {
        rects
            .iter()
            .enumerate()
            .map(|(i, &rect)| self.render_tile(settings, frame, rect).map_err(|e| (i, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_covers_frame_exactly_once() {
        let tiles = tile_layout(130, 70, 64);
        assert_eq!(tiles.len(), 3 * 2);
        let covered: u64 = tiles.iter().map(|t| t.pixels()).sum();
        assert_eq!(covered, 130 * 70);
        assert_eq!(
            tiles[2],
            TileRect {
                x: 128,
                y: 0,
                w: 2,
                h: 64
            }
        );
        assert_eq!(
            tiles[5],
            TileRect {
                x: 128,
                y: 64,
                w: 2,
                h: 6
            }
        );
        assert!(tiles.iter().all(|t| t.fits_in(130, 70)));
    }

    #[test]
    fn class_id_changes_with_every_field() {
        let base = DeterminismClass {
            backend: "vulkan".into(),
            adapter: "a".into(),
            driver: "d".into(),
            driver_info: "i".into(),
            renderer_build: "r".into(),
            shader_hash: "s".into(),
        };
        let mut other = base.clone();
        other.shader_hash = "t".into();
        assert_ne!(base.id(), other.id());
        // Length prefixes keep ("ab","c") apart from ("a","bc").
        let mut a = base.clone();
        a.backend = "ab".into();
        a.adapter = "c".into();
        let mut b = base.clone();
        b.backend = "a".into();
        b.adapter = "bc".into();
        assert_ne!(a.id(), b.id());
    }
}
