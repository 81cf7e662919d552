//! A noise-displaced geodesic sphere (128 000 triangles) in the Cornell room.

use super::cornell_box::{add_camera, add_room, add_room_materials};
use super::geometry::{add, geodesic_sphere, scale, to_f32, vertex_normals};
use super::noise::fbm;
use crate::builder::{MeshData, Node, SceneBuilder};
use crate::{Material, SceneError};

/// Subdivision frequency: 20 · 80² = 128 000 triangles, 64 002 vertices (fits u16 indices).
pub const SPHERE_FREQUENCY: u32 = 80;
/// Radius of the undisplaced sphere, metres.
pub const SPHERE_RADIUS: f64 = 0.15;
/// Peak displacement as a fraction of the radius (the noise sum stays within ±1).
pub const DISPLACEMENT: f64 = 0.14;
/// Noise frequency on the unit sphere.
const NOISE_SCALE: f64 = 1.6;
const NOISE_OCTAVES: u32 = 4;
const NOISE_GAIN: f64 = 0.5;
const NOISE_SEED: u32 = 0x7E55_E7A0;
/// Where the sphere stands: centre of the floor in x and z.
const FLOOR_SPOT: [f32; 2] = [0.278, 0.30];

/// Base colour of the sphere: a warm clay, non-metallic, semi-rough.
pub const SPHERE_COLOR: [f32; 3] = [0.80, 0.45, 0.22];

/// Displaced sphere mesh, centred on the origin.
fn sphere_mesh() -> MeshData {
    let (unit, indices) = geodesic_sphere(SPHERE_FREQUENCY);
    let positions: Vec<[f64; 3]> = unit
        .iter()
        .map(|&p| {
            let q = add(scale(p, NOISE_SCALE), [11.5, 3.25, 7.75]);
            let n = fbm(q, NOISE_OCTAVES, NOISE_GAIN, NOISE_SEED) / 1.875;
            // Fold the noise into ridges for a more sculpted look, then centre it.
            let ridged = 1.0 - 2.0 * n.abs();
            let r =
                SPHERE_RADIUS * (1.0 + DISPLACEMENT * (0.6 * n + 0.4 * ridged).clamp(-1.0, 1.0));
            scale(p, r)
        })
        .collect();
    let normals = vertex_normals(&positions, &indices);
    MeshData {
        positions: positions.into_iter().map(to_f32).collect(),
        normals: Some(normals.into_iter().map(to_f32).collect()),
        indices,
        ..MeshData::default()
    }
}

/// The Cornell room (no boxes) with a displaced clay sphere resting on the floor, the
/// same ceiling light and camera. 128 012 triangles.
pub fn displaced_sphere() -> Result<SceneBuilder, SceneError> {
    let mut builder = SceneBuilder::new();
    let materials = add_room_materials(&mut builder)?;
    let mut roots = add_room(&mut builder, materials)?;
    let clay = builder.add_material(
        &Material::diffuse("clay", SPHERE_COLOR).with_metallic_roughness(0.0, 0.55),
    )?;
    let mesh = sphere_mesh();
    // Rest the lowest vertex on the floor (y = 0).
    let lowest = mesh
        .positions
        .iter()
        .map(|p| p[1])
        .fold(f32::INFINITY, f32::min);
    let sphere = builder.add_mesh("displaced_sphere", &mesh, Some(clay))?;
    roots.push(
        builder.add_node(
            &Node::new("displaced_sphere")
                .with_mesh(sphere)
                .with_translation([FLOOR_SPOT[0], -lowest, FLOOR_SPOT[1]]),
        )?,
    );
    roots.push(add_camera(&mut builder)?);
    builder.add_scene("displaced-sphere", &roots)?;
    Ok(builder)
}
