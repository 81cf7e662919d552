//! The scene builder: meshes, materials, cameras, lights, nodes and scenes in, glTF out.

use crate::error::SceneError;
use crate::glb;
use crate::json;

/// Largest binary buffer a builder accepts, so that every GLB length field fits in 32 bits.
pub const MAX_BIN_BYTES: u64 = 3 << 30;

/// Generator string written to `asset.generator`. Fixed (no version number), so that a
/// release bump does not change the bytes of every generated file.
pub const GENERATOR: &str = "tessera-scenes";

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(usize);

        impl $name {
            /// Index of the item in its glTF array.
            pub fn index(self) -> usize {
                self.0
            }
        }
    };
}

id_type!(
    /// A mesh added with [`SceneBuilder::add_mesh`].
    MeshId
);
id_type!(
    /// A material added with [`SceneBuilder::add_material`].
    MaterialId
);
id_type!(
    /// A camera added with [`SceneBuilder::add_camera`].
    CameraId
);
id_type!(
    /// A light added with [`SceneBuilder::add_light`].
    LightId
);
id_type!(
    /// A node added with [`SceneBuilder::add_node`].
    NodeId
);
id_type!(
    /// A scene added with [`SceneBuilder::add_scene`].
    SceneId
);

/// Vertex and index data of one indexed triangle list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshData {
    /// Vertex positions, in the mesh's local frame (metres by convention).
    pub positions: Vec<[f32; 3]>,
    /// Per-vertex normals, one per position; normalised when the mesh is added.
    pub normals: Option<Vec<[f32; 3]>>,
    /// Triangle list: three indices per triangle, counter-clockwise seen from the front.
    pub indices: Vec<u32>,
}

impl MeshData {
    /// Number of triangles (`indices.len() / 3`).
    pub fn triangle_count(&self) -> usize {
        self.indices.len() / 3
    }
}

/// A metallic-roughness material with optional emission.
#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    /// Material name (written to `materials[i].name`).
    pub name: String,
    /// Linear RGBA base colour, each in `[0, 1]`.
    pub base_color_factor: [f32; 4],
    /// Metalness in `[0, 1]`; always written (glTF's default would be 1).
    pub metallic_factor: f32,
    /// Roughness in `[0, 1]`; always written.
    pub roughness_factor: f32,
    /// Linear RGB emissive colour, each in `[0, 1]`.
    pub emissive_factor: [f32; 3],
    /// `KHR_materials_emissive_strength` multiplier (≥ 0); `None` writes no extension.
    pub emissive_strength: Option<f32>,
    /// glTF `doubleSided`.
    pub double_sided: bool,
}

impl Material {
    /// A non-metallic, fully rough (diffuse-looking) material of the given linear colour.
    pub fn diffuse(name: &str, rgb: [f32; 3]) -> Self {
        Material {
            name: name.to_owned(),
            base_color_factor: [rgb[0], rgb[1], rgb[2], 1.0],
            metallic_factor: 0.0,
            roughness_factor: 1.0,
            emissive_factor: [0.0; 3],
            emissive_strength: None,
            double_sided: false,
        }
    }

    /// Sets metalness and roughness.
    pub fn with_metallic_roughness(mut self, metallic: f32, roughness: f32) -> Self {
        self.metallic_factor = metallic;
        self.roughness_factor = roughness;
        self
    }

    /// Makes the material emit `rgb × strength` (radiance, linear); `strength` goes
    /// into `KHR_materials_emissive_strength`.
    pub fn with_emission(mut self, rgb: [f32; 3], strength: f32) -> Self {
        self.emissive_factor = rgb;
        self.emissive_strength = Some(strength);
        self
    }

    /// Sets `doubleSided`.
    pub fn with_double_sided(mut self, double_sided: bool) -> Self {
        self.double_sided = double_sided;
        self
    }
}

/// A perspective camera (glTF cameras look down their local −Z with +Y up).
#[derive(Clone, Debug, PartialEq)]
pub struct PerspectiveCamera {
    /// Camera name.
    pub name: String,
    /// Vertical field of view in radians, in `(0, π)`.
    pub yfov: f32,
    /// Width / height; `None` lets the renderer use the image's aspect ratio.
    pub aspect_ratio: Option<f32>,
    /// Near clipping distance, > 0.
    pub znear: f32,
    /// Far clipping distance, > `znear`; `None` means infinite.
    pub zfar: Option<f32>,
}

impl PerspectiveCamera {
    /// A camera with the given vertical field of view (radians), `znear = 0.01`, infinite
    /// far plane and no fixed aspect ratio.
    pub fn new(name: &str, yfov: f32) -> Self {
        PerspectiveCamera {
            name: name.to_owned(),
            yfov,
            aspect_ratio: None,
            znear: 0.01,
            zfar: None,
        }
    }

    /// Fixes the aspect ratio (width / height).
    pub fn with_aspect_ratio(mut self, aspect_ratio: f32) -> Self {
        self.aspect_ratio = Some(aspect_ratio);
        self
    }

    /// Sets the clipping planes.
    pub fn with_clip(mut self, znear: f32, zfar: Option<f32>) -> Self {
        self.znear = znear;
        self.zfar = zfar;
        self
    }
}

/// The type of a `KHR_lights_punctual` light.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LightKind {
    /// Parallel light along the node's local −Z; intensity in lux.
    Directional,
    /// Point light at the node's origin; intensity in candela.
    Point,
    /// Spot light along the node's local −Z; intensity in candela.
    Spot {
        /// Angle (radians) where falloff starts, `0 ≤ inner < outer`.
        inner_cone_angle: f32,
        /// Angle (radians) where the light ends, `inner < outer ≤ π/2`.
        outer_cone_angle: f32,
    },
}

/// A `KHR_lights_punctual` light; attach it to a node to place it.
#[derive(Clone, Debug, PartialEq)]
pub struct Light {
    /// Light name.
    pub name: String,
    /// Directional, point or spot.
    pub kind: LightKind,
    /// Linear RGB colour, each in `[0, 1]`.
    pub color: [f32; 3],
    /// Brightness (lux for directional, candela otherwise), ≥ 0.
    pub intensity: f32,
    /// Cut-off distance (> 0) for point and spot lights; not written for directional ones.
    pub range: Option<f32>,
}

impl Light {
    /// A point light.
    pub fn point(name: &str, color: [f32; 3], intensity_cd: f32) -> Self {
        Self::new(name, LightKind::Point, color, intensity_cd)
    }

    /// A directional (sun) light.
    pub fn directional(name: &str, color: [f32; 3], intensity_lux: f32) -> Self {
        Self::new(name, LightKind::Directional, color, intensity_lux)
    }

    /// A spot light.
    pub fn spot(name: &str, color: [f32; 3], intensity_cd: f32, inner: f32, outer: f32) -> Self {
        let kind = LightKind::Spot {
            inner_cone_angle: inner,
            outer_cone_angle: outer,
        };
        Self::new(name, kind, color, intensity_cd)
    }

    fn new(name: &str, kind: LightKind, color: [f32; 3], intensity: f32) -> Self {
        Light {
            name: name.to_owned(),
            kind,
            color,
            intensity,
            range: None,
        }
    }

    /// Sets the cut-off distance.
    pub fn with_range(mut self, range: f32) -> Self {
        self.range = Some(range);
        self
    }
}

/// Translation, rotation (unit quaternion `[x, y, z, w]`) and scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trs {
    /// Translation.
    pub translation: [f32; 3],
    /// Unit quaternion `[x, y, z, w]`.
    pub rotation: [f32; 4],
    /// Scale.
    pub scale: [f32; 3],
}

impl Default for Trs {
    fn default() -> Self {
        Trs {
            translation: [0.0; 3],
            rotation: [0.0, 0.0, 0.0, 1.0],
            scale: [1.0; 3],
        }
    }
}

/// A node's local transform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transform {
    /// Translation, rotation, scale; identity parts are not written.
    Trs(Trs),
    /// Column-major 4×4 matrix; must be decomposable into TRS (glTF rule).
    Matrix([f32; 16]),
}

impl Default for Transform {
    fn default() -> Self {
        Transform::Trs(Trs::default())
    }
}

/// A node: a transform plus what hangs on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Local transform.
    pub transform: Transform,
    /// Mesh drawn at this node.
    pub mesh: Option<MeshId>,
    /// Camera placed at this node.
    pub camera: Option<CameraId>,
    /// Light placed at this node.
    pub light: Option<LightId>,
    /// Child nodes (added earlier, without a parent yet).
    pub children: Vec<NodeId>,
}

impl Node {
    /// An empty node with the identity transform.
    pub fn new(name: &str) -> Self {
        Node {
            name: name.to_owned(),
            ..Node::default()
        }
    }

    fn trs_mut(&mut self) -> &mut Trs {
        if let Transform::Matrix(_) = self.transform {
            self.transform = Transform::Trs(Trs::default());
        }
        match &mut self.transform {
            Transform::Trs(trs) => trs,
            Transform::Matrix(_) => unreachable!("replaced just above"),
        }
    }

    /// Sets the translation (replacing a matrix transform, if any, by TRS).
    pub fn with_translation(mut self, translation: [f32; 3]) -> Self {
        self.trs_mut().translation = translation;
        self
    }

    /// Sets the rotation, a unit quaternion `[x, y, z, w]`.
    pub fn with_rotation(mut self, rotation: [f32; 4]) -> Self {
        self.trs_mut().rotation = rotation;
        self
    }

    /// Sets the scale.
    pub fn with_scale(mut self, scale: [f32; 3]) -> Self {
        self.trs_mut().scale = scale;
        self
    }

    /// Uses a column-major matrix instead of TRS.
    pub fn with_matrix(mut self, matrix: [f32; 16]) -> Self {
        self.transform = Transform::Matrix(matrix);
        self
    }

    /// Attaches a mesh.
    pub fn with_mesh(mut self, mesh: MeshId) -> Self {
        self.mesh = Some(mesh);
        self
    }

    /// Attaches a camera.
    pub fn with_camera(mut self, camera: CameraId) -> Self {
        self.camera = Some(camera);
        self
    }

    /// Attaches a light.
    pub fn with_light(mut self, light: LightId) -> Self {
        self.light = Some(light);
        self
    }

    /// Sets the children.
    pub fn with_children(mut self, children: &[NodeId]) -> Self {
        self.children = children.to_vec();
        self
    }
}

/// Builds one glTF 2.0 document in memory and writes it as `.glb` or `.gltf` + `.bin`.
///
/// Guarantees: every item is validated when added (so the output is always a valid
/// document), and the output bytes depend only on the sequence of calls — same calls,
/// same bytes, on every run and platform (little-endian data, fixed JSON key order,
/// shortest round-trip float formatting, no timestamps).
#[derive(Clone, Debug, Default)]
pub struct SceneBuilder {
    bin: Vec<u8>,
    buffer_views: Vec<json::BufferView>,
    accessors: Vec<json::Accessor>,
    meshes: Vec<json::Mesh>,
    mesh_triangles: Vec<usize>,
    materials: Vec<json::Material>,
    cameras: Vec<json::Camera>,
    lights: Vec<json::Light>,
    nodes: Vec<json::Node>,
    parents: Vec<Option<usize>>,
    scenes: Vec<json::Scene>,
    default_scene: Option<usize>,
}

fn check_finite(what: impl FnOnce() -> String, value: f32) -> Result<(), SceneError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(SceneError::NotFinite {
            what: what(),
            value,
        })
    }
}

fn check_unit(what: impl FnOnce() -> String, value: f32) -> Result<(), SceneError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(SceneError::OutOfRange {
            what: what(),
            value,
            range: "[0, 1]",
        })
    }
}

fn check_positive(what: impl FnOnce() -> String, value: f32) -> Result<(), SceneError> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(SceneError::OutOfRange {
            what: what(),
            value,
            range: "(0, ∞)",
        })
    }
}

fn check_non_negative(what: impl FnOnce() -> String, value: f32) -> Result<(), SceneError> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(SceneError::OutOfRange {
            what: what(),
            value,
            range: "[0, ∞)",
        })
    }
}

fn non_empty(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

fn f32_bytes(values: &[[f32; 3]]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| v.iter().flat_map(|c| c.to_le_bytes()))
        .collect()
}

impl SceneBuilder {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total number of triangles over all meshes added (each counted once, however
    /// many nodes instance it).
    pub fn triangle_count(&self) -> usize {
        self.mesh_triangles.iter().sum()
    }

    /// Size in bytes of the binary buffer so far.
    pub fn bin_len(&self) -> usize {
        self.bin.len()
    }

    /// Adds a material.
    pub fn add_material(&mut self, material: &Material) -> Result<MaterialId, SceneError> {
        let name = &material.name;
        let what = |field: &str, i: usize| format!("material {name:?} {field}[{i}]");
        for (i, &c) in material.base_color_factor.iter().enumerate() {
            check_unit(|| what("baseColorFactor", i), c)?;
        }
        for (i, &c) in material.emissive_factor.iter().enumerate() {
            check_unit(|| what("emissiveFactor", i), c)?;
        }
        check_unit(
            || format!("material {name:?} metallicFactor"),
            material.metallic_factor,
        )?;
        check_unit(
            || format!("material {name:?} roughnessFactor"),
            material.roughness_factor,
        )?;
        if let Some(strength) = material.emissive_strength {
            check_non_negative(|| format!("material {name:?} emissiveStrength"), strength)?;
        }
        let emissive = material.emissive_factor != [0.0; 3];
        self.materials.push(json::Material {
            name: non_empty(name),
            pbr_metallic_roughness: json::PbrMetallicRoughness {
                base_color_factor: material.base_color_factor,
                metallic_factor: material.metallic_factor,
                roughness_factor: material.roughness_factor,
            },
            emissive_factor: emissive.then_some(material.emissive_factor),
            double_sided: material.double_sided,
            extensions: material.emissive_strength.map(|emissive_strength| {
                json::MaterialExtensions {
                    emissive_strength: json::EmissiveStrength { emissive_strength },
                }
            }),
        });
        Ok(MaterialId(self.materials.len() - 1))
    }

    /// Appends `bytes` to the binary buffer, 4-byte aligned, as a new buffer view.
    fn push_view(&mut self, bytes: &[u8], target: u32) -> usize {
        while self.bin.len() % 4 != 0 {
            self.bin.push(0);
        }
        self.buffer_views.push(json::BufferView {
            buffer: 0,
            byte_offset: self.bin.len(),
            byte_length: bytes.len(),
            target,
        });
        self.bin.extend_from_slice(bytes);
        self.buffer_views.len() - 1
    }

    /// Adds a single-primitive triangle mesh. Checks that every value is finite, every
    /// index is in range, normals (if any) match the positions one for one; normals are
    /// normalised. Positions get the accessor `min`/`max` the glTF specification
    /// requires. Indices are stored as `u16` when the mesh has fewer than 65 535
    /// vertices, else as `u32`.
    pub fn add_mesh(
        &mut self,
        name: &str,
        data: &MeshData,
        material: Option<MaterialId>,
    ) -> Result<MeshId, SceneError> {
        let vertex_count = data.positions.len();
        if vertex_count == 0 || data.indices.is_empty() {
            return Err(SceneError::EmptyMesh {
                mesh: name.to_owned(),
                positions: vertex_count,
                indices: data.indices.len(),
            });
        }
        if data.indices.len() % 3 != 0 {
            return Err(SceneError::IndexCount {
                mesh: name.to_owned(),
                count: data.indices.len(),
            });
        }
        if vertex_count >= u32::MAX as usize {
            return Err(SceneError::TooManyVertices {
                mesh: name.to_owned(),
                vertex_count,
            });
        }
        if let Some(material) = material {
            if material.0 >= self.materials.len() {
                return Err(SceneError::UnknownId {
                    kind: "material",
                    index: material.0,
                });
            }
        }
        if let Some((at, &index)) = data
            .indices
            .iter()
            .enumerate()
            .find(|(_, &i)| i as usize >= vertex_count)
        {
            return Err(SceneError::IndexOutOfRange {
                mesh: name.to_owned(),
                index,
                at,
                vertex_count,
            });
        }
        let mut min = [f32::INFINITY; 3];
        let mut max = [f32::NEG_INFINITY; 3];
        for (at, p) in data.positions.iter().enumerate() {
            for (axis, &c) in p.iter().enumerate() {
                check_finite(|| format!("mesh {name:?} position {at}"), c)?;
                min[axis] = min[axis].min(c);
                max[axis] = max[axis].max(c);
            }
        }
        let normals = match &data.normals {
            None => None,
            Some(normals) => {
                if normals.len() != vertex_count {
                    return Err(SceneError::NormalCount {
                        mesh: name.to_owned(),
                        normals: normals.len(),
                        positions: vertex_count,
                    });
                }
                let mut unit = Vec::with_capacity(normals.len());
                for (at, n) in normals.iter().enumerate() {
                    unit.push(normalize(*n).ok_or_else(|| SceneError::ZeroNormal {
                        mesh: name.to_owned(),
                        at,
                    })?);
                }
                Some(unit)
            }
        };
        let small = vertex_count < u16::MAX as usize;
        let index_bytes: Vec<u8> = if small {
            // In range: every index < vertex_count < 65 535.
            data.indices
                .iter()
                .flat_map(|&i| (i as u16).to_le_bytes())
                .collect()
        } else {
            data.indices.iter().flat_map(|&i| i.to_le_bytes()).collect()
        };
        let added = 3 * 4 * vertex_count as u64 * if normals.is_some() { 2 } else { 1 }
            + index_bytes.len() as u64
            + 12;
        let total = self.bin.len() as u64 + added;
        if total > MAX_BIN_BYTES {
            return Err(SceneError::BufferTooLarge { bytes: total });
        }

        let position_view = self.push_view(&f32_bytes(&data.positions), json::TARGET_ARRAY_BUFFER);
        self.accessors.push(json::Accessor {
            buffer_view: position_view,
            component_type: json::COMPONENT_F32,
            count: vertex_count,
            kind: "VEC3",
            min: Some(min.to_vec()),
            max: Some(max.to_vec()),
        });
        let position = self.accessors.len() - 1;
        let normal = normals.map(|normals| {
            let view = self.push_view(&f32_bytes(&normals), json::TARGET_ARRAY_BUFFER);
            self.accessors.push(json::Accessor {
                buffer_view: view,
                component_type: json::COMPONENT_F32,
                count: vertex_count,
                kind: "VEC3",
                min: None,
                max: None,
            });
            self.accessors.len() - 1
        });
        let index_view = self.push_view(&index_bytes, json::TARGET_ELEMENT_ARRAY_BUFFER);
        self.accessors.push(json::Accessor {
            buffer_view: index_view,
            component_type: if small {
                json::COMPONENT_U16
            } else {
                json::COMPONENT_U32
            },
            count: data.indices.len(),
            kind: "SCALAR",
            min: None,
            max: None,
        });
        let indices = self.accessors.len() - 1;
        self.meshes.push(json::Mesh {
            name: non_empty(name),
            primitives: vec![json::Primitive {
                attributes: json::Attributes { position, normal },
                indices,
                material: material.map(|m| m.0),
                mode: json::MODE_TRIANGLES,
            }],
        });
        self.mesh_triangles.push(data.triangle_count());
        Ok(MeshId(self.meshes.len() - 1))
    }

    /// Adds a perspective camera.
    pub fn add_camera(&mut self, camera: &PerspectiveCamera) -> Result<CameraId, SceneError> {
        let name = &camera.name;
        let yfov = camera.yfov;
        if !(yfov > 0.0 && yfov < std::f32::consts::PI) {
            return Err(SceneError::OutOfRange {
                what: format!("camera {name:?} yfov"),
                value: yfov,
                range: "(0, π)",
            });
        }
        check_positive(|| format!("camera {name:?} znear"), camera.znear)?;
        if let Some(aspect) = camera.aspect_ratio {
            check_positive(|| format!("camera {name:?} aspectRatio"), aspect)?;
        }
        if let Some(zfar) = camera.zfar {
            if !(zfar > camera.znear && zfar.is_finite()) {
                return Err(SceneError::OutOfRange {
                    what: format!("camera {name:?} zfar"),
                    value: zfar,
                    range: "(znear, ∞)",
                });
            }
        }
        self.cameras.push(json::Camera {
            name: non_empty(name),
            kind: "perspective",
            perspective: json::Perspective {
                aspect_ratio: camera.aspect_ratio,
                yfov,
                zfar: camera.zfar,
                znear: camera.znear,
            },
        });
        Ok(CameraId(self.cameras.len() - 1))
    }

    /// Adds a `KHR_lights_punctual` light.
    pub fn add_light(&mut self, light: &Light) -> Result<LightId, SceneError> {
        let name = &light.name;
        for (i, &c) in light.color.iter().enumerate() {
            check_unit(|| format!("light {name:?} color[{i}]"), c)?;
        }
        check_non_negative(|| format!("light {name:?} intensity"), light.intensity)?;
        let (kind, spot) = match light.kind {
            LightKind::Directional => ("directional", None),
            LightKind::Point => ("point", None),
            LightKind::Spot {
                inner_cone_angle,
                outer_cone_angle,
            } => {
                let ok = inner_cone_angle >= 0.0
                    && inner_cone_angle < outer_cone_angle
                    && outer_cone_angle <= std::f32::consts::FRAC_PI_2;
                if !ok {
                    return Err(SceneError::OutOfRange {
                        what: format!("light {name:?} spot cone angles ({inner_cone_angle} inner)"),
                        value: outer_cone_angle,
                        range: "0 ≤ inner < outer ≤ π/2",
                    });
                }
                let spot = json::Spot {
                    inner_cone_angle,
                    outer_cone_angle,
                };
                ("spot", Some(spot))
            }
        };
        let range = match light.kind {
            LightKind::Directional => None,
            _ => light.range,
        };
        if let Some(range) = range {
            check_positive(|| format!("light {name:?} range"), range)?;
        }
        self.lights.push(json::Light {
            name: non_empty(name),
            kind,
            color: light.color,
            intensity: light.intensity,
            range,
            spot,
        });
        Ok(LightId(self.lights.len() - 1))
    }

    /// Adds a node. Its mesh, camera, light and children must already exist, and each
    /// child must not have a parent yet (so the node graph stays a forest).
    pub fn add_node(&mut self, node: &Node) -> Result<NodeId, SceneError> {
        let name = &node.name;
        let unknown = |kind, index| SceneError::UnknownId { kind, index };
        if let Some(mesh) = node.mesh {
            if mesh.0 >= self.meshes.len() {
                return Err(unknown("mesh", mesh.0));
            }
        }
        if let Some(camera) = node.camera {
            if camera.0 >= self.cameras.len() {
                return Err(unknown("camera", camera.0));
            }
        }
        if let Some(light) = node.light {
            if light.0 >= self.lights.len() {
                return Err(unknown("light", light.0));
            }
        }
        for (i, child) in node.children.iter().enumerate() {
            if child.0 >= self.nodes.len() {
                return Err(unknown("node", child.0));
            }
            if let Some(parent) = self.parents[child.0] {
                return Err(SceneError::SecondParent {
                    node: child.0,
                    parent,
                });
            }
            if node.children[..i].contains(child) {
                return Err(SceneError::SecondParent {
                    node: child.0,
                    parent: self.nodes.len(),
                });
            }
        }
        let (matrix, translation, rotation, scale) = match node.transform {
            Transform::Matrix(m) => {
                for (i, &c) in m.iter().enumerate() {
                    check_finite(|| format!("node {name:?} matrix[{i}]"), c)?;
                }
                (Some(m), None, None, None)
            }
            Transform::Trs(trs) => {
                let all = trs
                    .translation
                    .iter()
                    .chain(&trs.rotation)
                    .chain(&trs.scale);
                for &c in all {
                    check_finite(|| format!("node {name:?} transform"), c)?;
                }
                let q = trs.rotation;
                let len = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
                if (len - 1.0).abs() > 1e-4 {
                    return Err(SceneError::OutOfRange {
                        what: format!("node {name:?} rotation length"),
                        value: len,
                        range: "1 ± 1e-4 (unit quaternion)",
                    });
                }
                let identity = Trs::default();
                (
                    None,
                    (trs.translation != identity.translation).then_some(trs.translation),
                    (trs.rotation != identity.rotation).then_some(trs.rotation),
                    (trs.scale != identity.scale).then_some(trs.scale),
                )
            }
        };
        let index = self.nodes.len();
        for child in &node.children {
            self.parents[child.0] = Some(index);
        }
        self.parents.push(None);
        self.nodes.push(json::Node {
            name: non_empty(name),
            children: node.children.iter().map(|c| c.0).collect(),
            matrix,
            translation,
            rotation,
            scale,
            mesh: node.mesh.map(|m| m.0),
            camera: node.camera.map(|c| c.0),
            extensions: node.light.map(|l| json::NodeExtensions {
                lights_punctual: json::NodeLight { light: l.0 },
            }),
        });
        Ok(NodeId(index))
    }

    /// Adds a scene with the given root nodes (which must have no parent). The first
    /// scene added becomes the default scene.
    pub fn add_scene(&mut self, name: &str, roots: &[NodeId]) -> Result<SceneId, SceneError> {
        for root in roots {
            if root.0 >= self.nodes.len() {
                return Err(SceneError::UnknownId {
                    kind: "node",
                    index: root.0,
                });
            }
            if let Some(parent) = self.parents[root.0] {
                return Err(SceneError::RootHasParent {
                    scene: name.to_owned(),
                    node: root.0,
                    parent,
                });
            }
        }
        self.scenes.push(json::Scene {
            name: non_empty(name),
            nodes: roots.iter().map(|r| r.0).collect(),
        });
        let index = self.scenes.len() - 1;
        self.default_scene.get_or_insert(index);
        Ok(SceneId(index))
    }

    /// Makes `scene` the default (`"scene"` in the JSON).
    pub fn set_default_scene(&mut self, scene: SceneId) -> Result<(), SceneError> {
        if scene.0 >= self.scenes.len() {
            return Err(SceneError::UnknownId {
                kind: "scene",
                index: scene.0,
            });
        }
        self.default_scene = Some(scene.0);
        Ok(())
    }

    fn root(&self, buffer_uri: Option<String>) -> json::Root {
        let uses_strength = self.materials.iter().any(|m| m.extensions.is_some());
        let uses_lights = !self.lights.is_empty();
        let mut extensions_used = Vec::new();
        if uses_lights {
            extensions_used.push(json::EXT_LIGHTS);
        }
        if uses_strength {
            extensions_used.push(json::EXT_EMISSIVE_STRENGTH);
        }
        let buffers = if self.bin.is_empty() {
            Vec::new()
        } else {
            vec![json::Buffer {
                byte_length: self.bin.len(),
                uri: buffer_uri,
            }]
        };
        json::Root {
            asset: json::Asset {
                version: "2.0",
                generator: GENERATOR,
            },
            extensions_used,
            extensions: uses_lights.then(|| json::RootExtensions {
                lights_punctual: json::LightList {
                    lights: self.lights.clone(),
                },
            }),
            scene: self.default_scene,
            scenes: self.scenes.clone(),
            nodes: self.nodes.clone(),
            meshes: self.meshes.clone(),
            materials: self.materials.clone(),
            cameras: self.cameras.clone(),
            accessors: self.accessors.clone(),
            buffer_views: self.buffer_views.clone(),
            buffers,
        }
    }

    fn json_bytes(&self, buffer_uri: Option<String>) -> Vec<u8> {
        // Serialising plain structs of numbers and strings into memory cannot fail.
        serde_json::to_vec(&self.root(buffer_uri)).unwrap_or_default()
    }

    /// The document as a binary glTF (`.glb`): 12-byte header, JSON chunk padded with
    /// spaces to 4 bytes, BIN chunk (if any mesh was added) padded with zeros.
    ///
    /// # Panics
    /// Only if the JSON alone exceeds about 1 GiB (millions of items): the binary part
    /// is kept under [`MAX_BIN_BYTES`] by [`SceneBuilder::add_mesh`] and GLB lengths
    /// are 32-bit.
    pub fn to_glb(&self) -> Vec<u8> {
        glb::write(&self.json_bytes(None), &self.bin)
    }

    /// The document as `.gltf` JSON text whose buffer points at `bin_uri` (a relative
    /// file name; characters outside `A–Z a–z 0–9 - . _ ~ /` are percent-encoded),
    /// plus the bytes of that `.bin` file.
    pub fn to_gltf_with_external_buffer(&self, bin_uri: &str) -> (String, Vec<u8>) {
        let json = self.json_bytes(Some(percent_encode(bin_uri)));
        (
            String::from_utf8_lossy(&json).into_owned(),
            self.bin.clone(),
        )
    }
}

fn normalize(n: [f32; 3]) -> Option<[f32; 3]> {
    let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    (len > 0.0 && len.is_finite()).then(|| [n[0] / len, n[1] / len, n[2] / len])
}

fn percent_encode(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    for byte in uri.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_safe_characters() {
        assert_eq!(percent_encode("a b/c.bin"), "a%20b/c.bin");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn normalize_rejects_zero_and_nan() {
        assert_eq!(normalize([0.0; 3]), None);
        assert_eq!(normalize([f32::NAN, 0.0, 0.0]), None);
        assert_eq!(normalize([0.0, 2.0, 0.0]), Some([0.0, 1.0, 0.0]));
    }
}
