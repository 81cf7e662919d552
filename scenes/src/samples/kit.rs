//! Small helpers shared by the sample scene recipes: placing cameras, lights and meshes.

use super::geometry::Vec3;
use super::shapes::look_rotation;
use crate::builder::{
    Light, MaterialId, MeshData, Node, NodeId, OrthographicCamera, PerspectiveCamera, SceneBuilder,
};
use crate::SceneError;

/// Photometric-to-radiometric factor of `KHR_lights_punctual` as Blender (and the
/// renderer) use it: 683 lm/W. A point light of 683 cd gives irradiance 1 W/m² at 1 m.
pub const LUMENS_PER_WATT: f32 = 683.0;

/// Up direction used to aim cameras and lights that are not looking straight down.
pub(crate) const UP: Vec3 = [0.0, 1.0, 0.0];

/// Adds a perspective camera at `eye` looking at `target` (no fixed aspect ratio).
pub(crate) fn camera(
    builder: &mut SceneBuilder,
    name: &str,
    yfov: f32,
    eye: Vec3,
    target: Vec3,
) -> Result<NodeId, SceneError> {
    let camera = builder.add_camera(&PerspectiveCamera::new(name, yfov))?;
    builder.add_node(
        &Node::new(name)
            .with_camera(camera)
            .with_translation(eye.map(|c| c as f32))
            .with_rotation(look_rotation(eye, target, UP)),
    )
}

/// Adds an orthographic camera at `eye` looking at `target`.
pub(crate) fn orthographic_camera(
    builder: &mut SceneBuilder,
    camera: &OrthographicCamera,
    eye: Vec3,
    target: Vec3,
) -> Result<NodeId, SceneError> {
    let id = builder.add_orthographic_camera(camera)?;
    builder.add_node(
        &Node::new(&camera.name)
            .with_camera(id)
            .with_translation(eye.map(|c| c as f32))
            .with_rotation(look_rotation(eye, target, UP)),
    )
}

/// Adds a light on a node at `eye`, aimed (for spot and directional lights) at
/// `target`; `up` only matters when the light looks straight up or down.
pub(crate) fn light(
    builder: &mut SceneBuilder,
    light: &Light,
    eye: Vec3,
    target: Vec3,
    up: Vec3,
) -> Result<NodeId, SceneError> {
    let id = builder.add_light(light)?;
    builder.add_node(
        &Node::new(&light.name)
            .with_light(id)
            .with_translation(eye.map(|c| c as f32))
            .with_rotation(look_rotation(eye, target, up)),
    )
}

/// Adds a mesh and a node drawing it at `translation`.
pub(crate) fn object(
    builder: &mut SceneBuilder,
    name: &str,
    mesh: &MeshData,
    material: MaterialId,
    translation: Vec3,
) -> Result<NodeId, SceneError> {
    let mesh = builder.add_mesh(name, mesh, Some(material))?;
    builder.add_node(
        &Node::new(name)
            .with_mesh(mesh)
            .with_translation(translation.map(|c| c as f32)),
    )
}
