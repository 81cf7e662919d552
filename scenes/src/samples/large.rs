//! A large scene for the scale target (not committed): a 2-million-triangle terrain,
//! a field of spheres, and 134 MB of decoded textures, written as `.gltf` + `.bin` +
//! PNG files by `gen-scenes --large DIR`.

use super::geometry::{normalize, to_f32};
use super::kit::{camera, light, LUMENS_PER_WATT};
use super::noise::{fbm, hash3};
use super::shapes::ico_sphere;
use super::textures::Canvas;
use crate::builder::{
    Environment, Filter, Light, Material, MeshData, Node, Sampler, SceneBuilder, TextureRef, Wrap,
};
use crate::encode::PngEffort;
use crate::SceneError;

/// Terrain grid: `TERRAIN_CELLS²` quads, two triangles each (2 000 000 triangles).
pub const TERRAIN_CELLS: u32 = 1000;
/// Terrain side length (m).
const TERRAIN_SIZE: f64 = 200.0;
/// Terrain height amplitude (m).
const TERRAIN_HEIGHT: f64 = 9.0;
/// Number of textures and their side (RGBA, so 8 × 2048² × 4 = 134 217 728 bytes decoded).
pub const TEXTURES: u32 = 8;
/// Side of every texture (pixels).
pub const TEXTURE_SIDE: u32 = 2048;
/// Spheres in the field (8 × 8), each a geodesic sphere of 20 · 12² = 2 880 triangles.
const SPHERES: u32 = 64;

/// The built large scene and its size.
#[derive(Debug)]
pub struct LargeScene {
    /// The document; write it with [`SceneBuilder::to_gltf_files`].
    pub builder: SceneBuilder,
    /// Triangles (no instancing: every triangle is stored).
    pub triangles: usize,
    /// Decoded texture size: Σ width × height × 4 bytes.
    pub texture_bytes: u64,
}

fn terrain_height(x: f64, z: f64) -> f64 {
    let n = fbm([x * 0.015, 0.5, z * 0.015], 4, 0.5, 0x7E44_A1B2);
    TERRAIN_HEIGHT * n
}

fn terrain() -> MeshData {
    let n = TERRAIN_CELLS + 1;
    let step = TERRAIN_SIZE / f64::from(TERRAIN_CELLS);
    let half = TERRAIN_SIZE / 2.0;
    let mut heights = Vec::with_capacity((n * n) as usize);
    for j in 0..n {
        for i in 0..n {
            heights.push(terrain_height(
                f64::from(i) * step - half,
                f64::from(j) * step - half,
            ));
        }
    }
    let h = |i: u32, j: u32| heights[(j.min(n - 1) * n + i.min(n - 1)) as usize];
    let mut mesh = MeshData {
        normals: Some(Vec::with_capacity((n * n) as usize)),
        tex_coords_0: Some(Vec::with_capacity((n * n) as usize)),
        ..MeshData::default()
    };
    for j in 0..n {
        for i in 0..n {
            let (x, z) = (f64::from(i) * step - half, f64::from(j) * step - half);
            mesh.positions.push(to_f32([x, h(i, j), z]));
            let dx = (h(i + 1, j) - h(i.saturating_sub(1), j)) / (2.0 * step);
            let dz = (h(i, j + 1) - h(i, j.saturating_sub(1))) / (2.0 * step);
            mesh.normals
                .as_mut()
                .unwrap()
                .push(to_f32(normalize([-dx, 1.0, -dz])));
            mesh.tex_coords_0.as_mut().unwrap().push([
                (f64::from(i) / f64::from(TERRAIN_CELLS) * 16.0) as f32,
                (f64::from(j) / f64::from(TERRAIN_CELLS) * 16.0) as f32,
            ]);
        }
    }
    mesh.indices
        .reserve((6 * TERRAIN_CELLS * TERRAIN_CELLS) as usize);
    for j in 0..TERRAIN_CELLS {
        for i in 0..TERRAIN_CELLS {
            let a = j * n + i;
            let (b, c, d) = (a + 1, a + n, a + n + 1);
            // Counter-clockwise seen from above (+Y): a, c, b and b, c, d.
            mesh.indices.extend([a, c, b, b, c, d]);
        }
    }
    mesh
}

/// Texture `k`: blocky hashed tiles over smooth gradients (compressible, but every
/// texture differs), RGBA.
fn texture(k: u32) -> Canvas {
    let side = TEXTURE_SIDE;
    Canvas::paint(side, side, move |x, y| {
        let cell = hash3((x / 64) as i32, (y / 64) as i32, k as i32, 0x1A26_E5C3);
        let fine = hash3((x / 4) as i32, (y / 4) as i32, k as i32, 0x0BAD_5EED) & 0x1f;
        let gx = (x * 255 / side) as u8;
        let gy = (y * 255 / side) as u8;
        let r = ((cell & 0x7f) as u8)
            .wrapping_add(gx / 2)
            .wrapping_add(fine as u8);
        let g = (((cell >> 8) & 0x7f) as u8).wrapping_add(gy / 2);
        let b = (((cell >> 16) & 0x7f) as u8).wrapping_add(((k * 40) & 0xff) as u8 / 2);
        [r, g, b, 255]
    })
}

/// Builds the large scene (a few seconds in a release build).
pub fn large() -> Result<LargeScene, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![camera(
        &mut b,
        "camera",
        0.75,
        [0.0, 32.0, 105.0],
        [0.0, 0.0, 10.0],
    )?];
    // Mipmapped, as Blender exports linear interpolation: the terrain's textures are
    // minified at every hit.
    let sampler = b.add_sampler(&Sampler {
        min_filter: Filter::LinearMipmapLinear,
        ..Sampler::new("linear_mipmap", Filter::Linear, Wrap::Repeat)
    })?;
    let mut textures = Vec::new();
    let mut texture_bytes = 0u64;
    // Encode the textures on all cores; the bytes do not depend on the thread count.
    let pngs: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..TEXTURES)
            .map(|k| scope.spawn(move || texture(k).png(PngEffort::Fast)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("texture thread"))
            .collect()
    });
    for (k, png) in pngs.into_iter().enumerate() {
        let name = format!("large-tex-{k}");
        let image = b.add_image_file(&name, &format!("{name}.png"), png)?;
        textures.push(b.add_texture(&name, image, Some(sampler))?);
        texture_bytes += u64::from(TEXTURE_SIDE) * u64::from(TEXTURE_SIDE) * 4;
    }
    let terrain_mat = b.add_material(
        &Material::diffuse("terrain", [1.0, 1.0, 1.0])
            .with_metallic_roughness(1.0, 1.0)
            .with_base_color_texture(TextureRef::new(textures[0]))
            .with_metallic_roughness_texture(TextureRef::new(textures[1]))
            .with_normal_texture(TextureRef::new(textures[2]), 0.5),
    )?;
    let terrain = terrain();
    let mut triangles = terrain.triangle_count();
    let terrain_mesh = b.add_mesh("terrain", &terrain, Some(terrain_mat))?;
    drop(terrain);
    roots.push(b.add_node(&Node::new("terrain").with_mesh(terrain_mesh))?);

    // Spheres with UVs from their direction (planar), textured in turn with the five
    // remaining textures.
    let mut sphere = ico_sphere(1.5, 12);
    sphere.tex_coords_0 = Some(
        sphere
            .normals
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| [n[0] * 0.5 + 0.5, 0.5 - n[1] * 0.5])
            .collect(),
    );
    let mut materials = Vec::new();
    for (k, &tex) in textures[3..].iter().enumerate() {
        materials.push(
            b.add_material(
                &Material::diffuse(&format!("sphere_{k}"), [1.0, 1.0, 1.0])
                    .with_metallic_roughness(0.0, 0.4)
                    .with_base_color_texture(TextureRef::new(tex)),
            )?,
        );
    }
    for s in 0..SPHERES {
        let (gx, gz) = (f64::from(s % 8), f64::from(s / 8));
        let (x, z) = ((gx - 3.5) * 14.0, (gz - 3.5) * 14.0);
        let y = terrain_height(x, z) + 1.5;
        let material = materials[s as usize % materials.len()];
        // Separate meshes (no instancing), so every triangle is stored.
        let mesh = b.add_mesh(&format!("sphere_{s}"), &sphere, Some(material))?;
        triangles += sphere.triangle_count();
        roots.push(
            b.add_node(
                &Node::new(&format!("sphere_{s}"))
                    .with_mesh(mesh)
                    .with_translation(to_f32([x, y, z])),
            )?,
        );
    }
    roots.push(light(
        &mut b,
        &Light::directional("sun", [1.0, 0.96, 0.9], 3.0 * LUMENS_PER_WATT),
        [50.0, 80.0, 60.0],
        [0.0; 3],
        [0.0, 1.0, 0.0],
    )?);
    roots.push(light(
        &mut b,
        &Light::point("lamp", [1.0, 0.7, 0.4], 2.0 * 100.0 * LUMENS_PER_WATT),
        [0.0, terrain_height(0.0, 20.0) + 10.0, 20.0],
        [0.0; 3],
        [0.0, 1.0, 0.0],
    )?);
    let scene = b.add_scene("large", &roots)?;
    b.set_environment(scene, &Environment::uniform([0.3, 0.35, 0.45]))?;
    Ok(LargeScene {
        builder: b,
        triangles,
        texture_bytes,
    })
}
