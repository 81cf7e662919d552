//! The white furnace: a white Lambertian sphere and a white metal sphere inside a
//! uniform white environment, no lights.

use super::kit::{camera, object};
use super::shapes::ico_sphere;
use crate::builder::{Environment, Material, SceneBuilder};
use crate::SceneError;

/// Centre of the diffuse sphere (m).
pub const DIFFUSE_CENTER: [f64; 3] = [-1.2, 0.0, 0.0];
/// Centre of the metal sphere (m).
pub const METAL_CENTER: [f64; 3] = [1.2, 0.0, 0.0];
/// Radius of both spheres (m).
pub const RADIUS: f64 = 0.6;
/// Roughness of the metal sphere.
pub const METAL_ROUGHNESS: f32 = 0.25;

/// Two geodesic spheres (2 880 triangles each) at [`DIFFUSE_CENTER`] and
/// [`METAL_CENTER`], camera `camera` at (0, 0, 5) looking at the origin, environment
/// colour (1, 1, 1). An energy-conserving renderer shows the diffuse sphere exactly at
/// the background value (1, 1, 1): every path off a convex albedo-1 surface escapes to
/// the white environment.
pub fn furnace() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(&mut b, "camera", 0.6, [0.0, 0.0, 5.0], [0.0; 3])?];
    let white = b.add_material(&Material::diffuse("white_diffuse", [1.0, 1.0, 1.0]))?;
    let metal = b.add_material(
        &Material::diffuse("white_metal", [1.0, 1.0, 1.0])
            .with_metallic_roughness(1.0, METAL_ROUGHNESS),
    )?;
    let sphere = ico_sphere(RADIUS, 12);
    roots.push(object(
        &mut b,
        "diffuse_sphere",
        &sphere,
        white,
        DIFFUSE_CENTER,
    )?);
    roots.push(object(
        &mut b,
        "metal_sphere",
        &sphere,
        metal,
        METAL_CENTER,
    )?);
    let scene = b.add_scene("furnace", &roots)?;
    b.set_environment(scene, &Environment::uniform([1.0, 1.0, 1.0]))?;
    Ok(b)
}
