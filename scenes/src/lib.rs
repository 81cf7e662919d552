//! Deterministic glTF 2.0 scene building (`.glb`, or `.gltf` + `.bin` + files) and Tessera's sample scenes.
//!
//! [`SceneBuilder`] collects meshes (one or more primitives with normals, tangents and
//! two UV sets), materials (metallic-roughness with base colour, metallic-roughness,
//! normal and emissive textures, `KHR_texture_transform`, alpha modes, emission with
//! `KHR_materials_emissive_strength`), embedded or external PNG images, samplers,
//! perspective and orthographic cameras, `KHR_lights_punctual` lights, nodes,
//! animations (LINEAR, STEP, CUBICSPLINE) and scenes with a background
//! (`extras.tessera_environment`), validating each as it is added, and writes them out
//! byte-for-byte reproducibly. [`encode`] writes the PNG and Radiance `.hdr` files. [`samples`] builds the scenes committed in the `scenes/` folder; the
//! `gen-scenes` program writes or checks them.
//!
//! ```
//! use tessera_scenes::{Material, MeshData, Node, SceneBuilder};
//! let mut scene = SceneBuilder::new();
//! let red = scene.add_material(&Material::diffuse("red", [0.63, 0.065, 0.05])).unwrap();
//! let triangle = MeshData {
//!     positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
//!     indices: vec![0, 1, 2],
//!     ..MeshData::default()
//! };
//! let mesh = scene.add_mesh("triangle", &triangle, Some(red)).unwrap();
//! let node = scene.add_node(&Node::new("triangle").with_mesh(mesh)).unwrap();
//! scene.add_scene("main", &[node]).unwrap();
//! let glb = scene.to_glb();
//! assert_eq!(&glb[0..4], b"glTF");
//! ```
#![warn(missing_docs)]

mod builder;
pub mod encode;
mod error;
pub mod glb;
mod json;
pub mod samples;

pub use builder::{
    AlphaMode, Animation, AnimationChannel, AnimationId, AnimationPath, CameraId, Environment,
    Filter, ImageId, Interpolation, Light, LightId, LightKind, Material, MaterialId, MeshData,
    MeshId, Node, NodeId, OrthographicCamera, PerspectiveCamera, Sampler, SamplerId, SceneBuilder,
    SceneId, TextureId, TextureRef, TextureTransform, Transform, Trs, Wrap, GENERATOR,
    MAX_BIN_BYTES,
};
pub use error::SceneError;
