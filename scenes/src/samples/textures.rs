//! Procedural texture images for the sample scenes (8-bit pixels, then PNG).
//!
//! Colour images are written directly in sRGB bytes (glTF base colour and emissive
//! textures are sRGB); data images (metallic-roughness, normal maps) are linear.
//! Integer hashing and `+ − × ÷ sqrt floor` only, so the bytes are the same everywhere.

use super::noise::{fbm, hash3};
use crate::encode::{png, Channels, PngEffort};

/// An 8-bit image being painted.
pub(crate) struct Canvas {
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    pub pixels: Vec<u8>,
}

impl Canvas {
    /// Paints every pixel with `f(x, y)` (x right, y down, both 0-based).
    pub fn paint<const N: usize>(
        width: u32,
        height: u32,
        f: impl Fn(u32, u32) -> [u8; N],
    ) -> Canvas {
        let channels = match N {
            1 => Channels::Gray,
            3 => Channels::Rgb,
            4 => Channels::Rgba,
            _ => panic!("{N} channels"),
        };
        let mut pixels = Vec::with_capacity(width as usize * height as usize * N);
        for y in 0..height {
            for x in 0..width {
                pixels.extend_from_slice(&f(x, y));
            }
        }
        Canvas {
            width,
            height,
            channels,
            pixels,
        }
    }

    /// The image as a PNG file.
    pub fn png(&self, effort: PngEffort) -> Vec<u8> {
        png(self.width, self.height, self.channels, &self.pixels, effort)
    }
}

fn unit_hash(x: i32, y: i32, seed: u32) -> f64 {
    f64::from(hash3(x, y, 0, seed)) / f64::from(u32::MAX)
}

fn byte(v: f64) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8
}

fn mix(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Brick layout shared by the brick maps: `(in_mortar, brick_id_x, brick_id_y, u, v)`
/// for texel (x, y) of a `size`² tile holding 4 × 8 bricks, every other row offset by
/// half a brick; `u`, `v` are in 0..1 across the brick.
fn brick_at(x: u32, y: u32, size: u32) -> (bool, i32, i32, f64, f64) {
    let bw = f64::from(size) / 4.0;
    let bh = f64::from(size) / 8.0;
    let fy = f64::from(y) + 0.5;
    let row = (fy / bh).floor();
    let shift = if row as i64 % 2 == 1 { bw / 2.0 } else { 0.0 };
    let fx = f64::from(x) + 0.5 + shift;
    let col = (fx / bw).floor();
    let u = fx / bw - col;
    let v = fy / bh - row;
    let mortar_u = 0.04 * 2.0;
    let mortar_v = 0.08 * 2.0;
    let in_mortar = u < mortar_u / 2.0
        || u > 1.0 - mortar_u / 2.0
        || v < mortar_v / 2.0
        || v > 1.0 - mortar_v / 2.0;
    let cols = 4.0;
    (in_mortar, (col % cols) as i32, row as i32, u, v)
}

/// Height of the brick surface in 0..1 (mortar grooves at 0, bevelled brick tops at 1,
/// with a little noise).
fn brick_height(x: u32, y: u32, size: u32) -> f64 {
    let (_, bx, by, u, v) = brick_at(x, y, size);
    let edge = (u.min(1.0 - u) / 0.08).min(v.min(1.0 - v) / 0.16);
    let bevel = ((edge - 0.5) / 1.0).clamp(0.0, 1.0);
    let s = f64::from(size);
    let grain = fbm(
        [
            f64::from(x) * 12.0 / s,
            f64::from(y) * 12.0 / s,
            f64::from(bx * 7 + by),
        ],
        3,
        0.5,
        0xB71C,
    );
    (bevel * (0.85 + 0.1 * grain)).clamp(0.0, 1.0)
}

/// Brick base colour (sRGB): reddish bricks varying per brick, grey mortar.
pub(crate) fn brick_base_color(size: u32) -> Canvas {
    Canvas::paint(size, size, |x, y| {
        let (mortar, bx, by, _, _) = brick_at(x, y, size);
        if mortar {
            let n = unit_hash(x as i32, y as i32, 5) * 0.08;
            let g = byte(0.62 + n);
            return [g, g, byte(0.60 + n)];
        }
        let tone = unit_hash(bx, by, 11);
        let base = mix([0.62, 0.24, 0.16], [0.78, 0.42, 0.26], tone);
        let s = f64::from(size);
        let speck = fbm(
            [f64::from(x) * 20.0 / s, f64::from(y) * 20.0 / s, 3.5],
            2,
            0.5,
            77,
        ) * 0.08;
        [
            byte(base[0] + speck),
            byte(base[1] + speck),
            byte(base[2] + speck),
        ]
    })
}

/// Metallic-roughness map for the bricks (linear): roughness (green) 0.95 in the
/// mortar, 0.35–0.6 on bricks; metallic (blue) 1 on a round metal stud in every fourth
/// brick, else 0. Red is unused (0).
pub(crate) fn brick_metal_rough(size: u32) -> Canvas {
    Canvas::paint(size, size, |x, y| {
        let (mortar, bx, by, u, v) = brick_at(x, y, size);
        if mortar {
            return [0, byte(0.95), 0];
        }
        let du = (u - 0.5) * 2.0;
        let dv = v - 0.5;
        let stud = (bx + by) % 4 == 0 && du * du + dv * dv < 0.09;
        if stud {
            return [0, byte(0.2), 255];
        }
        let rough = 0.35 + 0.25 * unit_hash(bx, by, 23);
        [0, byte(rough), 0]
    })
}

/// Tangent-space normal map of the brick height field (OpenGL convention, +Y up in the
/// image, as glTF specifies).
pub(crate) fn brick_normal(size: u32) -> Canvas {
    let heights: Vec<f64> = (0..size * size)
        .map(|i| brick_height(i % size, i / size, size))
        .collect();
    let h = |x: i64, y: i64| {
        let s = i64::from(size);
        heights[(y.rem_euclid(s) * s + x.rem_euclid(s)) as usize]
    };
    let strength = f64::from(size) / 48.0;
    Canvas::paint(size, size, |x, y| {
        let (x, y) = (i64::from(x), i64::from(y));
        let dx = (h(x + 1, y) - h(x - 1, y)) * 0.5 * strength;
        let dy_down = (h(x, y + 1) - h(x, y - 1)) * 0.5 * strength;
        // Up in the image is −y: dh/dup = −dh/dy_down.
        let n = [-dx, dy_down, 1.0];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        [
            byte(n[0] / len * 0.5 + 0.5),
            byte(n[1] / len * 0.5 + 0.5),
            byte(n[2] / len * 0.5 + 0.5),
        ]
    })
}

/// A two-colour checker of `cells × cells` squares (sRGB).
pub(crate) fn checker(size: u32, cells: u32, a: [u8; 3], b: [u8; 3]) -> Canvas {
    Canvas::paint(size, size, |x, y| {
        if ((x * cells / size) + (y * cells / size)).is_multiple_of(2) {
            a
        } else {
            b
        }
    })
}

/// An asymmetric "F" glyph on a tile with a red left edge and a blue top edge, so
/// mirroring, rotation and clamping are all visible (sRGB).
pub(crate) fn glyph(size: u32) -> Canvas {
    let s = size as f64;
    Canvas::paint(size, size, |x, y| {
        let (u, v) = ((f64::from(x) + 0.5) / s, (f64::from(y) + 0.5) / s);
        if u < 0.06 {
            return [220, 30, 30];
        }
        if v < 0.06 {
            return [30, 60, 220];
        }
        let stem = (0.25..0.40).contains(&u) && (0.15..0.85).contains(&v);
        let top = (0.25..0.78).contains(&u) && (0.15..0.28).contains(&v);
        let mid = (0.25..0.64).contains(&u) && (0.44..0.56).contains(&v);
        if stem || top || mid {
            [250, 235, 60]
        } else {
            [40, 40, 48]
        }
    })
}

/// A tiny 8 × 8 image of hashed colours: magnified, NEAREST shows hard squares and
/// LINEAR smooth gradients (sRGB).
pub(crate) fn tiny_palette() -> Canvas {
    Canvas::paint(8, 8, |x, y| {
        let h = hash3(x as i32, y as i32, 1, 0x5EED);
        [
            (h & 0xff) as u8,
            ((h >> 8) & 0xff) as u8,
            ((h >> 16) & 0xff) as u8,
        ]
    })
}

/// Emissive sign (sRGB): a glowing 3 × 2 grid of rounded cells on black.
pub(crate) fn emissive_grid(width: u32, height: u32) -> Canvas {
    Canvas::paint(width, height, |x, y| {
        let u = (f64::from(x) + 0.5) / f64::from(width) * 3.0;
        let v = (f64::from(y) + 0.5) / f64::from(height) * 2.0;
        let (cu, cv) = (u - u.floor() - 0.5, v - v.floor() - 0.5);
        let r = (cu * cu + cv * cv).sqrt();
        let cell = (u.floor() + 3.0 * v.floor()) as u32;
        let colors = [
            [255, 120, 40],
            [60, 220, 255],
            [255, 255, 255],
            [120, 255, 90],
            [255, 60, 180],
            [255, 220, 80],
        ];
        if r < 0.36 {
            colors[cell as usize % 6]
        } else {
            [0, 0, 0]
        }
    })
}

/// Fence (sRGB + alpha): wooden bars along the border and through the middle in both
/// directions (width 1/8 of the tile each), leaving four square holes centred at
/// (¼, ¼), (¾, ¼), (¼, ¾), (¾, ¾) with alpha 0.
pub(crate) fn fence(size: u32) -> Canvas {
    let s = f64::from(size);
    Canvas::paint(size, size, |x, y| {
        let (u, v) = ((f64::from(x) + 0.5) / s, (f64::from(y) + 0.5) / s);
        let bar = |t: f64| !(1.0 / 16.0..=15.0 / 16.0).contains(&t) || (t - 0.5).abs() < 1.0 / 16.0;
        if bar(u) || bar(v) {
            let grain = unit_hash((f64::from(x) / 3.0) as i32, y as i32, 9) * 0.1;
            [
                byte(0.55 + grain),
                byte(0.38 + grain),
                byte(0.2 + grain),
                255,
            ]
        } else {
            [0, 0, 0, 0]
        }
    })
}
