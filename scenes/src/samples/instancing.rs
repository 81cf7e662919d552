//! Node hierarchy and instancing: one mesh drawn by many nodes under transformed
//! parents, a mesh of several primitives and materials, a mirrored (negative-scale)
//! instance, and three named cameras (two perspective, one orthographic).

use super::kit::{camera, orthographic_camera, LUMENS_PER_WATT};
use super::shapes::{append, axis_angle, cuboid, floor, ico_sphere, quat_f32};
use crate::builder::{
    Environment, Light, Material, MeshData, Node, OrthographicCamera, SceneBuilder,
};
use crate::SceneError;

/// Instances of `crate` in the grid (4 × 4).
pub const GRID_INSTANCES: usize = 16;
/// Triangles the renderer must see after instancing: grid 16 × 12, the crate on the arm
/// 12, the totem 12 + 320 + 12, two L shapes 2 × 24, the floor 2.
pub const INSTANCED_TRIANGLES: usize = 16 * 12 + 12 + (12 + 320 + 12) + 2 * 24 + 2;
/// Camera names, in the order of `cameras` in the file.
pub const CAMERAS: [&str; 3] = ["perspective_front", "perspective_top", "orthographic_front"];

fn translated(mut mesh: MeshData, by: [f32; 3]) -> MeshData {
    for p in &mut mesh.positions {
        for k in 0..3 {
            p[k] += by[k];
        }
    }
    mesh
}

/// The instancing scene; [`INSTANCED_TRIANGLES`] triangles once every instance is
/// expanded (from 1 + 12 + 344 + 24 + 2 stored triangles).
pub fn instancing() -> Result<SceneBuilder, SceneError> {
    let mut b = SceneBuilder::new();
    let mut roots = vec![
        camera(&mut b, CAMERAS[0], 0.7, [0.0, 2.5, 7.0], [0.0, 0.6, 0.0])?,
        camera(&mut b, CAMERAS[1], 0.9, [0.5, 9.0, 0.6], [0.0, 0.0, 0.0])?,
        orthographic_camera(
            &mut b,
            &OrthographicCamera::new(CAMERAS[2], 4.5, 2.6, 50.0),
            [0.0, 1.5, 10.0],
            [0.0, 1.5, 0.0],
        )?,
    ];
    let ground = b.add_material(&Material::diffuse("ground", [0.45, 0.45, 0.42]))?;
    let wood = b.add_material(
        &Material::diffuse("wood", [0.55, 0.35, 0.18]).with_metallic_roughness(0.0, 0.6),
    )?;
    let red = b.add_material(&Material::diffuse("red", [0.75, 0.1, 0.08]))?;
    let green = b.add_material(
        &Material::diffuse("green", [0.1, 0.6, 0.15]).with_metallic_roughness(0.0, 0.35),
    )?;
    let blue = b.add_material(
        &Material::diffuse("blue", [0.1, 0.2, 0.8]).with_metallic_roughness(0.6, 0.3),
    )?;
    let ivory = b.add_material(&Material::diffuse("ivory", [0.85, 0.8, 0.7]))?;

    let floor_mesh = b.add_mesh("floor", &floor(6.0, 6.0, 0.0, 1.0), Some(ground))?;
    roots.push(b.add_node(&Node::new("floor").with_mesh(floor_mesh))?);

    // One crate mesh, 16 instances in a grid whose parent is rotated 30° and scaled 0.8.
    let crate_mesh = b.add_mesh("crate", &cuboid([0.25, 0.25, 0.25]), Some(wood))?;
    let mut grid_children = Vec::new();
    for i in 0..GRID_INSTANCES {
        let (gx, gz) = ((i % 4) as f32, (i / 4) as f32);
        let spin = quat_f32(axis_angle([0.0, 1.0, 0.0], 15.0 * i as f64));
        grid_children.push(
            b.add_node(
                &Node::new(&format!("crate_{i}"))
                    .with_mesh(crate_mesh)
                    .with_translation([(gx - 1.5) * 0.8, 0.25, (gz - 1.5) * 0.8])
                    .with_rotation(spin),
            )?,
        );
    }
    roots.push(
        b.add_node(
            &Node::new("grid")
                .with_translation([-2.6, 0.0, -1.0])
                .with_rotation(quat_f32(axis_angle([0.0, 1.0, 0.0], 30.0)))
                .with_scale([0.8, 0.8, 0.8])
                .with_children(&grid_children),
        )?,
    );

    // Three levels: turntable (rotated, scaled 1.5) → arm (rotated about Z) → crate.
    let on_arm = b.add_node(
        &Node::new("crate_on_arm")
            .with_mesh(crate_mesh)
            .with_translation([0.6, 0.0, 0.0]),
    )?;
    let arm = b.add_node(
        &Node::new("arm")
            .with_translation([0.0, 0.6, 0.0])
            .with_rotation(quat_f32(axis_angle([0.0, 0.0, 1.0], 35.0)))
            .with_children(&[on_arm]),
    )?;
    roots.push(
        b.add_node(
            &Node::new("turntable")
                .with_translation([2.6, 0.0, -1.2])
                .with_rotation(quat_f32(axis_angle([0.0, 1.0, 0.0], -40.0)))
                .with_scale([1.5, 1.5, 1.5])
                .with_children(&[arm]),
        )?,
    );

    // A totem of three primitives with three materials in one mesh.
    let bottom = translated(cuboid([0.35, 0.3, 0.35]), [0.0, 0.3, 0.0]);
    let middle = translated(ico_sphere(0.32, 4), [0.0, 0.92, 0.0]);
    let top = translated(cuboid([0.2, 0.2, 0.2]), [0.0, 1.44, 0.0]);
    let totem = b.add_mesh_primitives(
        "totem",
        &[
            (&bottom, Some(red)),
            (&middle, Some(green)),
            (&top, Some(blue)),
        ],
    )?;
    roots.push(
        b.add_node(
            &Node::new("totem")
                .with_mesh(totem)
                .with_translation([0.0, 0.0, 0.2]),
        )?,
    );

    // An L shape (foot towards +X) and its mirror image (scale x = −1).
    let mut ell = translated(cuboid([0.15, 0.5, 0.15]), [0.0, 0.5, 0.0]);
    append(
        &mut ell,
        &translated(cuboid([0.35, 0.12, 0.15]), [0.5, 0.12, 0.0]),
    );
    let ell_mesh = b.add_mesh("ell", &ell, Some(ivory))?;
    roots.push(
        b.add_node(
            &Node::new("ell")
                .with_mesh(ell_mesh)
                .with_translation([1.2, 0.0, 1.6]),
        )?,
    );
    roots.push(
        b.add_node(
            &Node::new("ell_mirrored")
                .with_mesh(ell_mesh)
                .with_translation([-1.2, 0.0, 1.6])
                .with_scale([-1.0, 1.0, 1.0]),
        )?,
    );

    let sun = b.add_light(&Light::directional(
        "sun",
        [1.0, 0.97, 0.9],
        2.5 * LUMENS_PER_WATT,
    ))?;
    roots.push(b.add_node(&Node::new("sun").with_light(sun).with_rotation(
        super::shapes::look_rotation([-2.0, 5.0, 3.0], [0.0; 3], [0.0, 1.0, 0.0]),
    ))?);
    let scene = b.add_scene("instancing", &roots)?;
    b.set_environment(scene, &Environment::uniform([0.25, 0.28, 0.33]))?;
    Ok(b)
}
