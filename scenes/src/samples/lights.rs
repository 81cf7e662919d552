//! Punctual lights in photometric units (point, spot, directional) and an emissive
//! triangle over a floor with a few objects; black background.

use super::kit::{camera, light, object, LUMENS_PER_WATT};
use super::shapes::{cuboid, floor, ico_sphere};
use crate::builder::{Light, Material, MeshData, SceneBuilder};
use crate::SceneError;

/// Position of the point light `point` (m).
pub const POINT_POSITION: [f64; 3] = [-2.0, 2.5, 1.5];
/// Point light intensity (cd): irradiance 1.5 W/m² on the floor 2.5 m below.
pub const POINT_CANDELA: f32 = 1.5 * 2.5 * 2.5 * LUMENS_PER_WATT;
/// Position of the spot light `spot` (m); it points straight down.
pub const SPOT_POSITION: [f64; 3] = [2.2, 3.0, -1.5];
/// Spot intensity (cd): irradiance 3 W/m² at the centre of its pool of light.
pub const SPOT_CANDELA: f32 = 3.0 * 3.0 * 3.0 * LUMENS_PER_WATT;
/// Spot cone angles (radians): full intensity within 0.25, none beyond 0.4 (a pool of
/// radius ≈ 1.27 m on the floor).
pub const SPOT_CONE: (f32, f32) = (0.25, 0.4);
/// Sun illuminance (lux): irradiance 0.3 W/m².
pub const SUN_LUX: f32 = 0.3 * LUMENS_PER_WATT;
/// Corners of the emissive triangle (facing +Z).
pub const TRIANGLE: [[f32; 3]; 3] = [[-3.6, 0.2, -2.5], [-1.4, 0.2, -2.5], [-2.5, 2.0, -2.5]];
/// Emission of the triangle: colour × strength = radiance (6, 2.7, 1.2).
pub const TRIANGLE_EMISSION: ([f32; 3], f32) = ([1.0, 0.45, 0.2], 6.0);

/// Floor (10 m × 10 m), a box and a sphere, lights `point`, `spot`, `sun` and the
/// emissive triangle `emissive_triangle`; camera `camera`. 1 295 triangles.
pub fn lights() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(
        &mut b,
        "camera",
        0.7,
        [0.0, 3.0, 6.5],
        [0.0, 0.5, -0.5],
    )?];
    let grey = b.add_material(
        &Material::diffuse("floor", [0.6, 0.6, 0.6]).with_metallic_roughness(0.0, 0.7),
    )?;
    let white = b.add_material(
        &Material::diffuse("white", [0.8, 0.8, 0.8]).with_metallic_roughness(0.0, 0.5),
    )?;
    let blue = b.add_material(
        &Material::diffuse("blue_plastic", [0.1, 0.25, 0.8]).with_metallic_roughness(0.0, 0.3),
    )?;
    let (color, strength) = TRIANGLE_EMISSION;
    let glow = b.add_material(
        &Material::diffuse("emitter", [0.0, 0.0, 0.0]).with_emission(color, strength),
    )?;
    roots.push(object(
        &mut b,
        "floor",
        &floor(5.0, 5.0, 0.0, 1.0),
        grey,
        [0.0; 3],
    )?);
    roots.push(object(
        &mut b,
        "box",
        &cuboid([0.4, 0.4, 0.4]),
        white,
        [-1.0, 0.4, -0.3],
    )?);
    roots.push(object(
        &mut b,
        "sphere",
        &ico_sphere(0.5, 8),
        blue,
        [1.0, 0.5, 0.4],
    )?);
    let triangle = MeshData {
        positions: TRIANGLE.to_vec(),
        normals: Some(vec![[0.0, 0.0, 1.0]; 3]),
        indices: vec![0, 1, 2],
        ..MeshData::default()
    };
    roots.push(object(
        &mut b,
        "emissive_triangle",
        &triangle,
        glow,
        [0.0; 3],
    )?);
    roots.push(light(
        &mut b,
        &Light::point("point", [1.0, 0.8, 0.6], POINT_CANDELA),
        POINT_POSITION,
        [POINT_POSITION[0], 0.0, POINT_POSITION[2]],
        [0.0, 0.0, -1.0],
    )?);
    let (inner, outer) = SPOT_CONE;
    roots.push(light(
        &mut b,
        &Light::spot("spot", [0.6, 0.8, 1.0], SPOT_CANDELA, inner, outer),
        SPOT_POSITION,
        [SPOT_POSITION[0], 0.0, SPOT_POSITION[2]],
        [0.0, 0.0, -1.0],
    )?);
    roots.push(light(
        &mut b,
        &Light::directional("sun", [1.0, 1.0, 1.0], SUN_LUX),
        [4.0, 5.0, 3.0],
        [0.0; 3],
        [0.0, 1.0, 0.0],
    )?);
    b.add_scene("lights", &roots)?;
    Ok(b)
}
