//! A deterministic CPU stand-in for the GPU renderer, for daemons under test, drills and
//! queue benchmarks: no scene, no adapter, but the properties verification relies on
//! (deterministic bytes, tile == crop, fewer samples give other bytes).

use std::sync::Arc;
use std::time::Duration;
use tessera_protocol::canonical::{f32_to_tile, tile_to_f32};
use tessera_protocol::{DeterminismClass, RenderFailure, RenderSettings, TileRect, TileRenderer};

/// A renderer whose pixel (x, y) of `frame` is the mean over samples `0..spp` of the first
/// three bytes of BLAKE3(seed ‖ frame ‖ x ‖ y ‖ sample) (all little-endian) as colour, with
/// alpha 1. It ignores the scene, so every scene renders the same; it can sleep per tile
/// so that a test can stop a node in the middle of a task.
#[derive(Clone, Debug)]
pub struct HashRenderer {
    class: DeterminismClass,
    delay_per_tile: Duration,
}

impl HashRenderer {
    /// A stub renderer that sleeps `delay_per_tile` before each tile (zero: no sleep).
    pub fn new(delay_per_tile: Duration) -> Self {
        Self {
            class: Self::stub_class(),
            delay_per_tile,
        }
    }

    /// The determinism class every stub renderer reports (`cpu` / `stub-hash`), the same in
    /// every process of this build.
    pub fn stub_class() -> DeterminismClass {
        DeterminismClass {
            backend: "cpu".into(),
            adapter: "stub-hash".into(),
            driver: "stub".into(),
            driver_info: "blake3 mean".into(),
            renderer_build: format!("tessera-node {}", env!("CARGO_PKG_VERSION")),
            shader_hash: "00".into(),
        }
    }
}

impl TileRenderer for HashRenderer {
    fn class(&self) -> &DeterminismClass {
        &self.class
    }

    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        if settings.spp == 0 {
            return Err(RenderFailure(
                "stub renderer: spp must be at least 1".into(),
            ));
        }
        if !self.delay_per_tile.is_zero() {
            std::thread::sleep(self.delay_per_tile);
        }
        let mut input = [0u8; 24];
        input[..8].copy_from_slice(&settings.seed.to_le_bytes());
        input[8..12].copy_from_slice(&frame.to_le_bytes());
        let mut values = Vec::with_capacity(rect.pixels() as usize * 4);
        for y in rect.y..rect.y + rect.h {
            input[16..20].copy_from_slice(&y.to_le_bytes());
            for x in rect.x..rect.x + rect.w {
                input[12..16].copy_from_slice(&x.to_le_bytes());
                let mut sum = [0f32; 3];
                for sample in 0..settings.spp {
                    input[20..24].copy_from_slice(&sample.to_le_bytes());
                    let h = blake3::hash(&input);
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += f32::from(h.as_bytes()[c]) / 255.0;
                    }
                }
                values.extend(sum.map(|s| s / settings.spp as f32));
                values.push(1.0);
            }
        }
        Ok(f32_to_tile(&values))
    }
}

/// A stand-in for an honest renderer of another determinism class: the inner renderer's
/// output, with every value scaled by `1 + 1e-4` (rounding differences) and a fixed,
/// pseudo-random `diverged_ppm` of the pixels off by 25 % (paths that took another turn).
/// Which pixels diverge is a pure function of (frame, global pixel), so a tile equals
/// the crop of a frame, as for a real renderer.
pub struct OtherClass {
    inner: Arc<dyn TileRenderer>,
    class: DeterminismClass,
    diverged_ppm: u32,
}

impl OtherClass {
    /// `inner` as class `name`, with `diverged_ppm` of its pixels diverged.
    pub fn new(inner: Arc<dyn TileRenderer>, name: &str, diverged_ppm: u32) -> Self {
        let mut class = inner.class().clone();
        class.adapter = format!("{} ({name})", class.adapter);
        Self {
            inner,
            class,
            diverged_ppm,
        }
    }

    fn diverges(&self, frame: u32, x: u32, y: u32) -> bool {
        let mut input = [0u8; 12];
        input[..4].copy_from_slice(&frame.to_le_bytes());
        input[4..8].copy_from_slice(&x.to_le_bytes());
        input[8..].copy_from_slice(&y.to_le_bytes());
        let h = blake3::hash(&input);
        let v = u32::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1], h.as_bytes()[2], 0]);
        u64::from(v) * 1_000_000 < u64::from(self.diverged_ppm) << 24
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
        let mut v = tile_to_f32(&self.inner.render_tile(settings, frame, rect)?);
        for (i, px) in v.chunks_exact_mut(4).enumerate() {
            let (x, y) = (rect.x + i as u32 % rect.w, rect.y + i as u32 / rect.w);
            let f = if self.diverges(frame, x, y) {
                1.25
            } else {
                1.0001
            };
            for c in &mut px[..3] {
                *c *= f;
            }
        }
        Ok(f32_to_tile(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(spp: u32) -> RenderSettings {
        RenderSettings {
            width: 40,
            height: 24,
            spp,
            max_bounces: 2,
            seed: 9,
            camera: None,
            frame_rate: Default::default(),
        }
    }

    #[test]
    fn tile_equals_crop_of_the_full_frame() {
        let r = HashRenderer::new(Duration::ZERO);
        let s = settings(3);
        let full = r
            .render_tile(
                &s,
                2,
                TileRect {
                    x: 0,
                    y: 0,
                    w: 40,
                    h: 24,
                },
            )
            .unwrap();
        for rect in [
            TileRect {
                x: 0,
                y: 0,
                w: 16,
                h: 16,
            },
            TileRect {
                x: 32,
                y: 16,
                w: 8,
                h: 8,
            },
            TileRect {
                x: 5,
                y: 7,
                w: 1,
                h: 13,
            },
        ] {
            let tile = r.render_tile(&s, 2, rect).unwrap();
            assert_eq!(tile.len(), rect.canonical_len());
            let mut crop = Vec::new();
            for y in rect.y..rect.y + rect.h {
                let start = ((y * 40 + rect.x) * 8) as usize;
                crop.extend_from_slice(&full[start..start + rect.w as usize * 8]);
            }
            assert_eq!(tile, crop, "{rect}");
        }
    }

    #[test]
    fn another_class_diverges_in_about_the_asked_fraction_of_pixels() {
        let inner: Arc<dyn TileRenderer> = Arc::new(HashRenderer::new(Duration::ZERO));
        let other = OtherClass::new(inner.clone(), "b", 50_000);
        assert_ne!(other.class().id(), inner.class().id());
        let rect = TileRect {
            x: 0,
            y: 0,
            w: 40,
            h: 24,
        };
        let a = tile_to_f32(&inner.render_tile(&settings(2), 0, rect).unwrap());
        let b = tile_to_f32(&other.render_tile(&settings(2), 0, rect).unwrap());
        let off = a
            .chunks_exact(4)
            .zip(b.chunks_exact(4))
            .filter(|(p, q)| (q[0] - p[0]).abs() > 0.1 * p[0])
            .count();
        // 5 % of 960 pixels, give or take.
        assert!((20..=80).contains(&off), "{off} pixels diverged");
    }

    #[test]
    fn samples_frame_and_seed_change_the_bytes() {
        let r = HashRenderer::new(Duration::ZERO);
        let rect = TileRect {
            x: 8,
            y: 8,
            w: 8,
            h: 8,
        };
        let base = r.render_tile(&settings(8), 0, rect).unwrap();
        assert_eq!(base, r.render_tile(&settings(8), 0, rect).unwrap());
        assert_ne!(base, r.render_tile(&settings(2), 0, rect).unwrap());
        assert_ne!(base, r.render_tile(&settings(8), 1, rect).unwrap());
        let mut other_seed = settings(8);
        other_seed.seed += 1;
        assert_ne!(base, r.render_tile(&other_seed, 0, rect).unwrap());
        assert!(r.render_tile(&settings(0), 0, rect).is_err());
    }
}
