//! The Cornell box, from the measured geometry published by the Cornell University
//! Program of Computer Graphics, in metres (published values are millimetres).

use super::geometry::{centroid, push_quads, sub, Vec3};
use crate::builder::{MaterialId, MeshData, Node, NodeId, PerspectiveCamera, SceneBuilder};
use crate::{Material, SceneError};

/// Diffuse white of the floor, ceiling, back wall and boxes (linear RGB).
pub const WHITE: [f32; 3] = [0.725, 0.71, 0.68];
/// Diffuse red of the left wall (linear RGB).
pub const RED: [f32; 3] = [0.63, 0.065, 0.05];
/// Diffuse green of the right wall (linear RGB).
pub const GREEN: [f32; 3] = [0.14, 0.45, 0.091];
/// Emissive colour of the ceiling light; × [`LIGHT_STRENGTH`] gives radiance (17, 12, 4).
pub const LIGHT_COLOR: [f32; 3] = [1.0, 12.0 / 17.0, 4.0 / 17.0];
/// `KHR_materials_emissive_strength` of the ceiling light.
pub const LIGHT_STRENGTH: f32 = 17.0;
/// Vertical field of view of the original camera: 2·atan(12.5 mm / 35 mm) ≈ 39.31°.
/// Written as a literal so that no platform's `atan` can change the bytes.
pub const CAMERA_YFOV: f32 = 0.686_047_85;
/// Camera position (metres): 278, 273, −800 mm, looking along +Z through the open side.
pub const CAMERA_POSITION: [f32; 3] = [0.278, 0.273, -0.8];
/// Rotation turning glTF's −Z view direction to +Z (180° about Y), `[x, y, z, w]`.
pub const CAMERA_ROTATION: [f32; 4] = [0.0, 1.0, 0.0, 0.0];

/// Millimetres → metres.
fn mm(points: [[f64; 3]; 4]) -> [Vec3; 4] {
    points.map(|p| p.map(|c| c / 1000.0))
}

const FLOOR: [[f64; 3]; 4] = [
    [552.8, 0.0, 0.0],
    [0.0, 0.0, 0.0],
    [0.0, 0.0, 559.2],
    [549.6, 0.0, 559.2],
];
const CEILING: [[f64; 3]; 4] = [
    [556.0, 548.8, 0.0],
    [556.0, 548.8, 559.2],
    [0.0, 548.8, 559.2],
    [0.0, 548.8, 0.0],
];
const BACK_WALL: [[f64; 3]; 4] = [
    [549.6, 0.0, 559.2],
    [0.0, 0.0, 559.2],
    [0.0, 548.8, 559.2],
    [556.0, 548.8, 559.2],
];
/// Red; on the camera's left (+X, the camera looks along +Z with +Y up).
const LEFT_WALL: [[f64; 3]; 4] = [
    [552.8, 0.0, 0.0],
    [549.6, 0.0, 559.2],
    [556.0, 548.8, 559.2],
    [556.0, 548.8, 0.0],
];
/// Green; on the camera's right (x = 0).
const RIGHT_WALL: [[f64; 3]; 4] = [
    [0.0, 0.0, 559.2],
    [0.0, 0.0, 0.0],
    [0.0, 548.8, 0.0],
    [0.0, 548.8, 559.2],
];
/// The published light is coplanar with the ceiling (y = 548.8); it is lowered by
/// 0.5 mm here so that the two surfaces never coincide.
const LIGHT: [[f64; 3]; 4] = [
    [343.0, 548.3, 227.0],
    [343.0, 548.3, 332.0],
    [213.0, 548.3, 332.0],
    [213.0, 548.3, 227.0],
];
const SHORT_BOX: [[[f64; 3]; 4]; 5] = [
    [
        [130.0, 165.0, 65.0],
        [82.0, 165.0, 225.0],
        [240.0, 165.0, 272.0],
        [290.0, 165.0, 114.0],
    ],
    [
        [290.0, 0.0, 114.0],
        [290.0, 165.0, 114.0],
        [240.0, 165.0, 272.0],
        [240.0, 0.0, 272.0],
    ],
    [
        [130.0, 0.0, 65.0],
        [130.0, 165.0, 65.0],
        [290.0, 165.0, 114.0],
        [290.0, 0.0, 114.0],
    ],
    [
        [82.0, 0.0, 225.0],
        [82.0, 165.0, 225.0],
        [130.0, 165.0, 65.0],
        [130.0, 0.0, 65.0],
    ],
    [
        [240.0, 0.0, 272.0],
        [240.0, 165.0, 272.0],
        [82.0, 165.0, 225.0],
        [82.0, 0.0, 225.0],
    ],
];
const TALL_BOX: [[[f64; 3]; 4]; 5] = [
    [
        [423.0, 330.0, 247.0],
        [265.0, 330.0, 296.0],
        [314.0, 330.0, 456.0],
        [472.0, 330.0, 406.0],
    ],
    [
        [423.0, 0.0, 247.0],
        [423.0, 330.0, 247.0],
        [472.0, 330.0, 406.0],
        [472.0, 0.0, 406.0],
    ],
    [
        [472.0, 0.0, 406.0],
        [472.0, 330.0, 406.0],
        [314.0, 330.0, 456.0],
        [314.0, 0.0, 456.0],
    ],
    [
        [314.0, 0.0, 456.0],
        [314.0, 330.0, 456.0],
        [265.0, 330.0, 296.0],
        [265.0, 0.0, 296.0],
    ],
    [
        [265.0, 0.0, 296.0],
        [265.0, 330.0, 296.0],
        [423.0, 330.0, 247.0],
        [423.0, 0.0, 247.0],
    ],
];

/// Centre of the room, which every wall faces.
const ROOM_CENTER: Vec3 = [0.278, 0.2744, 0.2796];

/// The materials every Cornell-style room uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoomMaterials {
    pub white: MaterialId,
    pub red: MaterialId,
    pub green: MaterialId,
    pub light: MaterialId,
}

pub(crate) fn add_room_materials(builder: &mut SceneBuilder) -> Result<RoomMaterials, SceneError> {
    Ok(RoomMaterials {
        white: builder.add_material(&Material::diffuse("white", WHITE))?,
        red: builder.add_material(&Material::diffuse("red", RED))?,
        green: builder.add_material(&Material::diffuse("green", GREEN))?,
        light: builder.add_material(
            &Material::diffuse("light", [0.78, 0.78, 0.78])
                .with_emission(LIGHT_COLOR, LIGHT_STRENGTH),
        )?,
    })
}

fn add_part(
    builder: &mut SceneBuilder,
    name: &str,
    quads: &[[Vec3; 4]],
    facing: impl Fn(&[Vec3; 4]) -> Vec3,
    material: MaterialId,
) -> Result<NodeId, SceneError> {
    let mut mesh = MeshData::default();
    push_quads(&mut mesh, quads, facing);
    let mesh = builder.add_mesh(name, &mesh, Some(material))?;
    builder.add_node(&Node::new(name).with_mesh(mesh))
}

/// Adds the empty room (floor, ceiling, back, left and right walls) and the ceiling
/// light, one mesh and one node each, walls facing inwards, the light facing down.
pub(crate) fn add_room(
    builder: &mut SceneBuilder,
    materials: RoomMaterials,
) -> Result<Vec<NodeId>, SceneError> {
    let inward = |quad: &[Vec3; 4]| sub(ROOM_CENTER, centroid(quad));
    let walls = [
        ("floor", FLOOR, materials.white),
        ("ceiling", CEILING, materials.white),
        ("back_wall", BACK_WALL, materials.white),
        ("left_wall", LEFT_WALL, materials.red),
        ("right_wall", RIGHT_WALL, materials.green),
    ];
    let mut nodes = Vec::new();
    for (name, quad, material) in walls {
        nodes.push(add_part(builder, name, &[mm(quad)], inward, material)?);
    }
    nodes.push(add_part(
        builder,
        "light",
        &[mm(LIGHT)],
        |_| [0.0, -1.0, 0.0],
        materials.light,
    )?);
    Ok(nodes)
}

/// Adds the original camera (through the open side, aspect 1) and returns its node.
pub(crate) fn add_camera(builder: &mut SceneBuilder) -> Result<NodeId, SceneError> {
    let camera = builder
        .add_camera(&PerspectiveCamera::new("camera", CAMERA_YFOV).with_aspect_ratio(1.0))?;
    builder.add_node(
        &Node::new("camera")
            .with_camera(camera)
            .with_translation(CAMERA_POSITION)
            .with_rotation(CAMERA_ROTATION),
    )
}

/// The classic Cornell box: room, ceiling light, short and tall box, camera.
/// 32 triangles; materials `white`, `red`, `green`, `light`.
pub fn cornell_box() -> Result<SceneBuilder, SceneError> {
    let mut builder = SceneBuilder::new();
    let materials = add_room_materials(&mut builder)?;
    let mut roots = add_room(&mut builder, materials)?;
    for (name, faces) in [("short_box", SHORT_BOX), ("tall_box", TALL_BOX)] {
        let faces = faces.map(mm);
        let all: Vec<Vec3> = faces.iter().flatten().copied().collect();
        let center = centroid(&all);
        let outward = |quad: &[Vec3; 4]| sub(centroid(quad), center);
        roots.push(add_part(
            &mut builder,
            name,
            &faces,
            outward,
            materials.white,
        )?);
    }
    roots.push(add_camera(&mut builder)?);
    builder.add_scene("cornell-box", &roots)?;
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yfov_literal_matches_the_published_camera() {
        let exact = 2.0 * (12.5_f64 / 35.0).atan();
        assert!((CAMERA_YFOV as f64 - exact).abs() < 1e-7);
    }

    #[test]
    fn light_radiance_is_17_12_4() {
        let radiance = LIGHT_COLOR.map(|c| c * LIGHT_STRENGTH);
        for (got, want) in radiance.iter().zip([17.0, 12.0, 4.0]) {
            assert!((got - want).abs() < 1e-5, "{radiance:?}");
        }
    }
}
