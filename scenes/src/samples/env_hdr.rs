//! An equirectangular HDR sky (gradient plus a small, very bright sun) lighting a floor
//! and three spheres: a test of environment importance sampling.

use super::geometry::{dot, normalize, Vec3};
use super::kit::{camera, object};
use super::shapes::{ico_sphere, sin_cos, sin_cos_deg};
use crate::builder::{Environment, Material, SceneBuilder};
use crate::encode::radiance_hdr;
use crate::SceneError;

/// File name of the sky image, next to `env-hdr.gltf`.
pub const SKY_FILE: &str = "env-hdr-sky.hdr";
/// Size of the sky image (equirectangular, 2:1).
pub const SKY_SIZE: (u32, u32) = (512, 256);
/// Sun elevation above the horizon and azimuth from +X towards +Z (degrees, glTF axes).
pub const SUN_ELEVATION_AZIMUTH: (f64, f64) = (30.0, 20.0);
/// Angular radius of the sun disc (degrees).
pub const SUN_RADIUS_DEGREES: f64 = 1.5;
/// Radiance of the sun disc (linear RGB).
pub const SUN_RADIANCE: [f32; 3] = [3000.0, 2850.0, 2550.0];

/// Unit direction (glTF axes, Y up) towards the sun centre.
pub fn sun_direction() -> [f64; 3] {
    let (elevation, azimuth) = SUN_ELEVATION_AZIMUTH;
    let (se, ce) = sin_cos_deg(elevation);
    let (sa, ca) = sin_cos_deg(azimuth);
    [ce * ca, se, ce * sa]
}

/// glTF direction of the centre of pixel (x, y) in Blender's equirectangular mapping:
/// u = 0.5 − atan2(b_y, b_x)/2π, v = 0.5 + asin(b_z)/π (v up, so row 0 is the top),
/// with Blender axes b = (x, −z, y) of glTF.
fn pixel_direction(x: u32, y: u32, width: u32, height: u32) -> Vec3 {
    let u = (f64::from(x) + 0.5) / f64::from(width);
    let v = 1.0 - (f64::from(y) + 0.5) / f64::from(height);
    let azimuth = 2.0 * std::f64::consts::PI * (0.5 - u);
    let elevation = std::f64::consts::PI * (v - 0.5);
    let (sa, ca) = sin_cos(azimuth);
    let (se, ce) = sin_cos(elevation);
    let blender = [ce * ca, ce * sa, se];
    [blender[0], blender[2], -blender[1]]
}

/// Linear radiance of the sky in glTF direction `d` (unit): a horizon-to-zenith
/// gradient, a darker ground below the horizon, and the sun disc.
fn sky(d: Vec3, sun: Vec3, sun_cos: f64) -> [f32; 3] {
    if dot(d, sun) >= sun_cos {
        return SUN_RADIANCE;
    }
    let up = d[1];
    if up < 0.0 {
        let t = (-up).min(1.0);
        let g = 0.18 - 0.06 * t;
        return [g as f32, (g * 0.92) as f32, (g * 0.85) as f32];
    }
    let horizon = [0.95, 0.85, 0.75];
    let zenith = [0.18, 0.35, 0.85];
    let t = up.sqrt();
    let c = |k: usize| (horizon[k] + (zenith[k] - horizon[k]) * t) as f32;
    [c(0), c(1), c(2)]
}

/// The `.hdr` bytes of the sky.
pub fn sky_image() -> Vec<u8> {
    let (w, h) = SKY_SIZE;
    let sun = normalize(sun_direction());
    let (_, sun_cos) = sin_cos_deg(SUN_RADIUS_DEGREES);
    let mut pixels = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            pixels.push(sky(pixel_direction(x, y, w, h), sun, sun_cos));
        }
    }
    radiance_hdr(w, h, &pixels)
}

/// Floor, a white diffuse sphere at the origin (the sun lights its +X side, the
/// camera's right), a chrome and a red glossy sphere, camera `camera` at (0, 1, 4.5);
/// environment: [`SKY_FILE`] at strength 1. 6 002 triangles.
pub fn env_hdr() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(
        &mut b,
        "camera",
        0.6,
        [0.0, 1.0, 4.5],
        [0.0, 0.5, 0.0],
    )?];
    let ground = b.add_material(
        &Material::diffuse("ground", [0.45, 0.45, 0.45]).with_metallic_roughness(0.0, 0.9),
    )?;
    let white = b.add_material(&Material::diffuse("white", [0.9, 0.9, 0.9]))?;
    let chrome = b.add_material(
        &Material::diffuse("chrome", [0.95, 0.95, 0.95]).with_metallic_roughness(1.0, 0.05),
    )?;
    let red = b.add_material(
        &Material::diffuse("red_glossy", [0.7, 0.05, 0.04]).with_metallic_roughness(0.0, 0.3),
    )?;
    roots.push(object(
        &mut b,
        "floor",
        &super::shapes::floor(6.0, 6.0, 0.0, 1.0),
        ground,
        [0.0; 3],
    )?);
    roots.push(object(
        &mut b,
        "white_sphere",
        &ico_sphere(0.5, 10),
        white,
        [0.0, 0.5, 0.0],
    )?);
    roots.push(object(
        &mut b,
        "chrome_sphere",
        &ico_sphere(0.35, 10),
        chrome,
        [-1.3, 0.35, 0.3],
    )?);
    roots.push(object(
        &mut b,
        "red_sphere",
        &ico_sphere(0.35, 10),
        red,
        [1.3, 0.35, 0.3],
    )?);
    b.add_external_file(SKY_FILE, sky_image())?;
    let scene = b.add_scene("env-hdr", &roots)?;
    b.set_environment(scene, &Environment::image(SKY_FILE, 1.0))?;
    Ok(b)
}
