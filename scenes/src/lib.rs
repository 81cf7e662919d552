//! Deterministic glTF 2.0 scene building (`.glb`, or `.gltf` + `.bin`) and Tessera's sample scenes.
//!
//! [`SceneBuilder`] collects meshes, materials (metallic-roughness, emission with
//! `KHR_materials_emissive_strength`), perspective cameras, `KHR_lights_punctual` lights,
//! nodes and scenes, validating each as it is added, and writes them out byte-for-byte
//! reproducibly. [`samples`] builds the scenes committed in the `scenes/` folder; the
//! `gen-scenes` program writes or checks them.
//!
//! ```
//! use tessera_scenes::{Material, MeshData, Node, SceneBuilder};
//! let mut scene = SceneBuilder::new();
//! let red = scene.add_material(&Material::diffuse("red", [0.63, 0.065, 0.05])).unwrap();
//! let triangle = MeshData {
//!     positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
//!     normals: None,
//!     indices: vec![0, 1, 2],
//! };
//! let mesh = scene.add_mesh("triangle", &triangle, Some(red)).unwrap();
//! let node = scene.add_node(&Node::new("triangle").with_mesh(mesh)).unwrap();
//! scene.add_scene("main", &[node]).unwrap();
//! let glb = scene.to_glb();
//! assert_eq!(&glb[0..4], b"glTF");
//! ```
#![warn(missing_docs)]

mod builder;
mod error;
pub mod glb;
mod json;
pub mod samples;

pub use builder::{
    CameraId, Light, LightId, LightKind, Material, MaterialId, MeshData, MeshId, Node, NodeId,
    PerspectiveCamera, SceneBuilder, SceneId, Transform, Trs, GENERATOR, MAX_BIN_BYTES,
};
pub use error::SceneError;
