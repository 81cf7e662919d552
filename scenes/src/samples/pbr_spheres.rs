//! Rows of spheres sweeping metalness (0, 1) × roughness (0.05 … 1), on a floor, lit by
//! a uniform environment and a sun.

use super::kit::{camera, light, object, LUMENS_PER_WATT};
use super::shapes::{floor, ico_sphere};
use crate::builder::{Environment, Light, Material, Node, SceneBuilder};
use crate::SceneError;

/// Roughness of the spheres, left to right.
pub const ROUGHNESS: [f32; 6] = [0.05, 0.2, 0.35, 0.5, 0.75, 1.0];
/// Base colour of the dielectric (front) row: a saturated red.
pub const DIELECTRIC_COLOR: [f32; 3] = [0.8, 0.12, 0.08];
/// Base colour of the metal (back) row: gold's F0.
pub const METAL_COLOR: [f32; 3] = [1.0, 0.766, 0.336];
/// Uniform environment radiance (linear RGB).
pub const ENVIRONMENT: [f32; 3] = [0.3, 0.35, 0.45];
/// Sun illuminance in lux: irradiance 2 W/m² after the 683 lm/W conversion.
pub const SUN_LUX: f32 = 2.0 * LUMENS_PER_WATT;
/// Sphere radius (m) and spacing of the columns (m).
const RADIUS: f64 = 0.4;
const SPACING: f64 = 1.0;

/// Two rows of six spheres (one geodesic mesh, 1 280 triangles, shared by twelve mesh
/// variants), a grey floor, camera `camera`, sun `sun`, environment colour
/// [`ENVIRONMENT`]. 15 362 triangles.
pub fn pbr_spheres() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(
        &mut b,
        "camera",
        0.6,
        [0.0, 3.4, 5.0],
        [0.0, 0.2, -0.1],
    )?];
    let grey = b.add_material(
        &Material::diffuse("floor", [0.5, 0.5, 0.5]).with_metallic_roughness(0.0, 0.8),
    )?;
    roots.push(object(
        &mut b,
        "floor",
        &floor(6.0, 4.0, 0.0, 1.0),
        grey,
        [0.0; 3],
    )?);
    let sphere = ico_sphere(RADIUS, 8);
    let mut shared = None;
    for (row, (metallic, color, z)) in [(0.0, DIELECTRIC_COLOR, 0.6), (1.0, METAL_COLOR, -0.6)]
        .into_iter()
        .enumerate()
    {
        for (col, &roughness) in ROUGHNESS.iter().enumerate() {
            let kind = if row == 0 { "dielectric" } else { "metal" };
            let name = format!("{kind}_r{roughness}");
            let material = b.add_material(
                &Material::diffuse(&name, color).with_metallic_roughness(metallic, roughness),
            )?;
            let mesh = match shared {
                None => {
                    let mesh = b.add_mesh(&name, &sphere, Some(material))?;
                    shared = Some(mesh);
                    mesh
                }
                Some(source) => b.add_mesh_variant(&name, source, &[Some(material)])?,
            };
            let x = (col as f64 - 2.5) * SPACING;
            roots.push(
                b.add_node(&Node::new(&name).with_mesh(mesh).with_translation([
                    x as f32,
                    RADIUS as f32,
                    z,
                ]))?,
            );
        }
    }
    roots.push(light(
        &mut b,
        &Light::directional("sun", [1.0, 0.98, 0.95], SUN_LUX),
        [-3.0, 5.0, 4.0],
        [0.0; 3],
        [0.0, 1.0, 0.0],
    )?);
    let scene = b.add_scene("pbr-spheres", &roots)?;
    b.set_environment(scene, &Environment::uniform(ENVIRONMENT))?;
    Ok(b)
}
