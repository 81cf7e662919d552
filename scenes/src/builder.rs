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
id_type!(
    /// An image added with [`SceneBuilder::add_image_png`] or [`SceneBuilder::add_image_file`].
    ImageId
);
id_type!(
    /// A sampler added with [`SceneBuilder::add_sampler`].
    SamplerId
);
id_type!(
    /// A texture added with [`SceneBuilder::add_texture`].
    TextureId
);
id_type!(
    /// An animation added with [`SceneBuilder::add_animation`].
    AnimationId
);

/// Vertex and index data of one indexed triangle list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshData {
    /// Vertex positions, in the mesh's local frame (metres by convention).
    pub positions: Vec<[f32; 3]>,
    /// Per-vertex normals, one per position; normalised when the mesh is added.
    pub normals: Option<Vec<[f32; 3]>>,
    /// Per-vertex tangents `[x, y, z, w]` (`TANGENT`), one per position: xyz is
    /// normalised when the mesh is added, `w` (the bitangent sign) must be ±1. Needs
    /// normals.
    pub tangents: Option<Vec<[f32; 4]>>,
    /// First texture coordinate set (`TEXCOORD_0`), one per position.
    pub tex_coords_0: Option<Vec<[f32; 2]>>,
    /// Second texture coordinate set (`TEXCOORD_1`), one per position; needs `TEXCOORD_0`.
    pub tex_coords_1: Option<Vec<[f32; 2]>>,
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
    /// Base colour texture (sRGB-encoded RGBA), multiplied by `base_color_factor`.
    pub base_color_texture: Option<TextureRef>,
    /// Metallic (blue channel) and roughness (green channel) texture, multiplied by the
    /// factors.
    pub metallic_roughness_texture: Option<TextureRef>,
    /// Tangent-space normal map.
    pub normal_texture: Option<TextureRef>,
    /// `normalTexture.scale` (written only when it is not 1).
    pub normal_scale: f32,
    /// Emissive texture (sRGB), multiplied by `emissive_factor` and the strength.
    pub emissive_texture: Option<TextureRef>,
    /// How alpha (base colour alpha × texture alpha) is used.
    pub alpha_mode: AlphaMode,
}

/// glTF `alphaMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum AlphaMode {
    /// Alpha is ignored (the glTF default; nothing is written).
    #[default]
    Opaque,
    /// Fully opaque where alpha ≥ `cutoff`, fully transparent elsewhere.
    Mask {
        /// `alphaCutoff`, ≥ 0.
        cutoff: f32,
    },
    /// Alpha blends the surface with what is behind it.
    Blend,
}

/// A reference from a material to a texture (`textureInfo`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextureRef {
    /// The texture.
    pub texture: TextureId,
    /// Which `TEXCOORD_n` set the texture reads (0 or 1).
    pub tex_coord: u32,
    /// `KHR_texture_transform` applied to the coordinates, if any.
    pub transform: Option<TextureTransform>,
}

impl TextureRef {
    /// Reads `texture` with `TEXCOORD_0` and no transform.
    pub fn new(texture: TextureId) -> Self {
        TextureRef {
            texture,
            tex_coord: 0,
            transform: None,
        }
    }

    /// Reads `TEXCOORD_<set>` instead.
    pub fn with_tex_coord(mut self, set: u32) -> Self {
        self.tex_coord = set;
        self
    }

    /// Adds a `KHR_texture_transform`.
    pub fn with_transform(mut self, transform: TextureTransform) -> Self {
        self.transform = Some(transform);
        self
    }
}

/// `KHR_texture_transform`: `uv' = T(offset) · R(rotation) · S(scale) · uv`, where the
/// rotation is counter-clockwise in UV space by `rotation` radians.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextureTransform {
    /// UV offset.
    pub offset: [f32; 2],
    /// Rotation in radians.
    pub rotation: f32,
    /// UV scale.
    pub scale: [f32; 2],
    /// Overrides the texture reference's coordinate set.
    pub tex_coord: Option<u32>,
}

impl Default for TextureTransform {
    fn default() -> Self {
        TextureTransform {
            offset: [0.0; 2],
            rotation: 0.0,
            scale: [1.0; 2],
            tex_coord: None,
        }
    }
}

/// Texture filtering: magnification, and minification without or with mipmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `NEAREST` (9728).
    Nearest,
    /// `LINEAR` (9729).
    Linear,
    /// `LINEAR_MIPMAP_LINEAR` (9987), minification only: trilinear filtering, what
    /// Blender's exporter writes for linear interpolation.
    LinearMipmapLinear,
}

impl Filter {
    fn code(self) -> u32 {
        match self {
            Filter::Nearest => 9728,
            Filter::Linear => 9729,
            Filter::LinearMipmapLinear => 9987,
        }
    }
}

/// Texture coordinate wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// `REPEAT` (10497).
    Repeat,
    /// `MIRRORED_REPEAT` (33648).
    MirroredRepeat,
    /// `CLAMP_TO_EDGE` (33071).
    ClampToEdge,
}

impl Wrap {
    fn code(self) -> u32 {
        match self {
            Wrap::Repeat => 10497,
            Wrap::MirroredRepeat => 33648,
            Wrap::ClampToEdge => 33071,
        }
    }
}

/// A texture sampler; all four fields are always written.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampler {
    /// Sampler name.
    pub name: String,
    /// Magnification filter.
    pub mag_filter: Filter,
    /// Minification filter.
    pub min_filter: Filter,
    /// Wrapping of u.
    pub wrap_s: Wrap,
    /// Wrapping of v.
    pub wrap_t: Wrap,
}

impl Sampler {
    /// The same filter and wrap mode in both directions.
    pub fn new(name: &str, filter: Filter, wrap: Wrap) -> Self {
        Sampler {
            name: name.to_owned(),
            mag_filter: filter,
            min_filter: filter,
            wrap_s: wrap,
            wrap_t: wrap,
        }
    }
}

/// An orthographic camera (looks down its local −Z with +Y up).
#[derive(Clone, Debug, PartialEq)]
pub struct OrthographicCamera {
    /// Camera name.
    pub name: String,
    /// Half the width of the view, > 0.
    pub xmag: f32,
    /// Half the height of the view, > 0.
    pub ymag: f32,
    /// Near clipping distance, ≥ 0.
    pub znear: f32,
    /// Far clipping distance, > `znear`.
    pub zfar: f32,
}

impl OrthographicCamera {
    /// A camera showing `2·xmag × 2·ymag` metres, clipping at 0.01 and `zfar`.
    pub fn new(name: &str, xmag: f32, ymag: f32, zfar: f32) -> Self {
        OrthographicCamera {
            name: name.to_owned(),
            xmag,
            ymag,
            znear: 0.01,
            zfar,
        }
    }
}

/// What an animation channel drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnimationPath {
    /// The node's translation (3 values per key).
    Translation,
    /// The node's rotation, unit quaternions `[x, y, z, w]` (4 values per key).
    Rotation,
    /// The node's scale (3 values per key).
    Scale,
}

impl AnimationPath {
    fn components(self) -> usize {
        match self {
            AnimationPath::Rotation => 4,
            _ => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            AnimationPath::Translation => "translation",
            AnimationPath::Rotation => "rotation",
            AnimationPath::Scale => "scale",
        }
    }
}

/// Keyframe interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Linear (spherical linear for rotations).
    Linear,
    /// Constant until the next key.
    Step,
    /// Cubic Hermite spline: each key has in-tangent, value, out-tangent (in that order).
    CubicSpline,
}

impl Interpolation {
    fn name(self) -> &'static str {
        match self {
            Interpolation::Linear => "LINEAR",
            Interpolation::Step => "STEP",
            Interpolation::CubicSpline => "CUBICSPLINE",
        }
    }
}

/// One animated property of one node, with its own keyframes.
#[derive(Clone, Debug, PartialEq)]
pub struct AnimationChannel {
    /// The animated node.
    pub node: NodeId,
    /// The property.
    pub path: AnimationPath,
    /// How values between keys are found.
    pub interpolation: Interpolation,
    /// Key times in seconds, ≥ 0 and strictly increasing.
    pub times: Vec<f32>,
    /// Flat key values: `times.len() × components` (× 3 for cubic splines: in-tangent,
    /// value, out-tangent per key).
    pub values: Vec<f32>,
}

/// A named set of channels played together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Animation {
    /// Animation name.
    pub name: String,
    /// The channels; at most one per (node, path).
    pub channels: Vec<AnimationChannel>,
}

/// The background of a scene, written to `scenes[i].extras.tessera_environment` (a
/// Tessera convention: `color` linear RGB × `strength` is the radiance seen in every
/// direction unless `image`, an equirectangular `.hdr`/`.exr` in Blender's Environment
/// Texture mapping, replaces it; `rotation` turns the image about +Y, in degrees).
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    /// Linear RGB radiance, each ≥ 0.
    pub color: [f32; 3],
    /// Multiplier, ≥ 0.
    pub strength: f32,
    /// URI of an equirectangular image, relative to the glTF file.
    pub image: Option<String>,
    /// Rotation of the image about +Y in degrees (written only when not 0).
    pub rotation_degrees: f32,
}

impl Environment {
    /// A uniform background of the given linear colour, strength 1.
    pub fn uniform(color: [f32; 3]) -> Self {
        Environment {
            color,
            strength: 1.0,
            image: None,
            rotation_degrees: 0.0,
        }
    }

    /// An equirectangular image background at the given strength.
    pub fn image(uri: &str, strength: f32) -> Self {
        Environment {
            color: [0.0; 3],
            strength,
            image: Some(uri.to_owned()),
            rotation_degrees: 0.0,
        }
    }
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
            base_color_texture: None,
            metallic_roughness_texture: None,
            normal_texture: None,
            normal_scale: 1.0,
            emissive_texture: None,
            alpha_mode: AlphaMode::Opaque,
        }
    }

    /// Sets the linear RGBA base colour factor.
    pub fn with_base_color_factor(mut self, rgba: [f32; 4]) -> Self {
        self.base_color_factor = rgba;
        self
    }

    /// Sets the base colour texture.
    pub fn with_base_color_texture(mut self, texture: TextureRef) -> Self {
        self.base_color_texture = Some(texture);
        self
    }

    /// Sets the metallic-roughness texture.
    pub fn with_metallic_roughness_texture(mut self, texture: TextureRef) -> Self {
        self.metallic_roughness_texture = Some(texture);
        self
    }

    /// Sets the normal map and its `scale`.
    pub fn with_normal_texture(mut self, texture: TextureRef, scale: f32) -> Self {
        self.normal_texture = Some(texture);
        self.normal_scale = scale;
        self
    }

    /// Sets the emissive texture.
    pub fn with_emissive_texture(mut self, texture: TextureRef) -> Self {
        self.emissive_texture = Some(texture);
        self
    }

    /// Sets the alpha mode.
    pub fn with_alpha_mode(mut self, alpha_mode: AlphaMode) -> Self {
        self.alpha_mode = alpha_mode;
        self
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
    /// Per mesh, per primitive: bit `n` set when the primitive has `TEXCOORD_n`.
    mesh_uv_sets: Vec<Vec<u32>>,
    materials: Vec<json::Material>,
    /// Per material: bit `n` set when one of its textures reads `TEXCOORD_n`.
    material_uv_sets: Vec<u32>,
    images: Vec<json::Image>,
    samplers: Vec<json::Sampler>,
    textures: Vec<json::Texture>,
    cameras: Vec<json::Camera>,
    lights: Vec<json::Light>,
    nodes: Vec<json::Node>,
    parents: Vec<Option<usize>>,
    animations: Vec<json::Animation>,
    scenes: Vec<json::Scene>,
    default_scene: Option<usize>,
    external_files: Vec<(String, Vec<u8>)>,
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

fn f32_bytes<const N: usize>(values: &[[f32; N]]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| v.iter().flat_map(|c| c.to_le_bytes()))
        .collect()
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A primitive checked by [`SceneBuilder::check_primitive`], ready to be written.
struct CheckedPrimitive {
    min: [f32; 3],
    max: [f32; 3],
    normals: Option<Vec<[f32; 3]>>,
    tangents: Option<Vec<[f32; 4]>>,
    uv_sets: u32,
    bytes: u64,
}

fn check_texture_transform(
    what: impl Fn() -> String,
    transform: &TextureTransform,
) -> Result<(), SceneError> {
    for &c in transform
        .offset
        .iter()
        .chain(&transform.scale)
        .chain([&transform.rotation])
    {
        check_finite(&what, c)?;
    }
    if let Some(set) = transform.tex_coord {
        check_tex_coord_set(&what, set)?;
    }
    Ok(())
}

fn check_tex_coord_set(what: impl Fn() -> String, set: u32) -> Result<(), SceneError> {
    if set <= 1 {
        Ok(())
    } else {
        Err(SceneError::OutOfRange {
            what: format!("{} texCoord", what()),
            value: set as f32,
            range: "{0, 1}",
        })
    }
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
        check_finite(
            || format!("material {name:?} normalTexture.scale"),
            material.normal_scale,
        )?;
        let (alpha_mode, alpha_cutoff) = match material.alpha_mode {
            AlphaMode::Opaque => (None, None),
            AlphaMode::Mask { cutoff } => {
                check_non_negative(|| format!("material {name:?} alphaCutoff"), cutoff)?;
                (Some("MASK"), Some(cutoff))
            }
            AlphaMode::Blend => (Some("BLEND"), None),
        };
        let mut uv_sets = 0u32;
        let mut info = |slot: &str, texture: &Option<TextureRef>| {
            let Some(texture) = texture else {
                return Ok(None);
            };
            let what = || format!("material {name:?} {slot}");
            if texture.texture.0 >= self.textures.len() {
                return Err(SceneError::UnknownId {
                    kind: "texture",
                    index: texture.texture.0,
                });
            }
            check_tex_coord_set(what, texture.tex_coord)?;
            let mut set = texture.tex_coord;
            if let Some(transform) = &texture.transform {
                check_texture_transform(|| format!("{} KHR_texture_transform", what()), transform)?;
                set = transform.tex_coord.unwrap_or(set);
            }
            uv_sets |= 1 << set;
            Ok(Some(json::TextureInfo {
                index: texture.texture.0,
                tex_coord: texture.tex_coord,
                extensions: texture.transform.map(|t| json::TextureInfoExtensions {
                    texture_transform: json::TextureTransform {
                        offset: (t.offset != [0.0; 2]).then_some(t.offset),
                        rotation: (t.rotation != 0.0).then_some(t.rotation),
                        scale: (t.scale != [1.0; 2]).then_some(t.scale),
                        tex_coord: t.tex_coord,
                    },
                }),
            }))
        };
        let base_color_texture = info("baseColorTexture", &material.base_color_texture)?;
        let metallic_roughness_texture = info(
            "metallicRoughnessTexture",
            &material.metallic_roughness_texture,
        )?;
        let normal_texture =
            info("normalTexture", &material.normal_texture)?.map(|t| json::NormalTextureInfo {
                index: t.index,
                tex_coord: t.tex_coord,
                scale: (material.normal_scale != 1.0).then_some(material.normal_scale),
                extensions: t.extensions,
            });
        let emissive_texture = info("emissiveTexture", &material.emissive_texture)?;
        let emissive = material.emissive_factor != [0.0; 3];
        self.materials.push(json::Material {
            name: non_empty(name),
            pbr_metallic_roughness: json::PbrMetallicRoughness {
                base_color_factor: material.base_color_factor,
                metallic_factor: material.metallic_factor,
                roughness_factor: material.roughness_factor,
                base_color_texture,
                metallic_roughness_texture,
            },
            normal_texture,
            emissive_texture,
            emissive_factor: emissive.then_some(material.emissive_factor),
            alpha_mode,
            alpha_cutoff,
            double_sided: material.double_sided,
            extensions: material.emissive_strength.map(|emissive_strength| {
                json::MaterialExtensions {
                    emissive_strength: json::EmissiveStrength { emissive_strength },
                }
            }),
        });
        self.material_uv_sets.push(uv_sets);
        Ok(MaterialId(self.materials.len() - 1))
    }

    /// Adds an image embedded in the binary buffer. `png` must be a PNG file (its
    /// signature is checked; see [`crate::encode::png_rgba8`] for a deterministic
    /// encoder).
    pub fn add_image_png(&mut self, name: &str, png: &[u8]) -> Result<ImageId, SceneError> {
        if !png.starts_with(PNG_SIGNATURE) {
            return Err(SceneError::NotPng {
                image: name.to_owned(),
            });
        }
        let total = self.bin.len() as u64 + png.len() as u64 + 4;
        if total > MAX_BIN_BYTES {
            return Err(SceneError::BufferTooLarge { bytes: total });
        }
        let view = self.push_view(png, None);
        self.images.push(json::Image {
            name: non_empty(name),
            uri: None,
            buffer_view: Some(view),
            mime_type: Some("image/png"),
        });
        Ok(ImageId(self.images.len() - 1))
    }

    /// Adds an image stored in its own file next to the glTF file: `uri` (relative,
    /// percent-encoded when written) names it, and `bytes` (a PNG) are kept in
    /// [`SceneBuilder::external_files`] for the caller to write.
    pub fn add_image_file(
        &mut self,
        name: &str,
        uri: &str,
        png: Vec<u8>,
    ) -> Result<ImageId, SceneError> {
        if !png.starts_with(PNG_SIGNATURE) {
            return Err(SceneError::NotPng {
                image: name.to_owned(),
            });
        }
        self.add_external_file(uri, png)?;
        self.images.push(json::Image {
            name: non_empty(name),
            uri: Some(percent_encode(uri)),
            buffer_view: None,
            mime_type: None,
        });
        Ok(ImageId(self.images.len() - 1))
    }

    /// Registers a file that belongs beside the glTF file (an image, or the
    /// environment map named by [`Environment::image`]). `uri` must be a relative path
    /// of plain characters, unique within the builder.
    pub fn add_external_file(&mut self, uri: &str, bytes: Vec<u8>) -> Result<(), SceneError> {
        let plain = !uri.is_empty()
            && !uri.starts_with('/')
            && !uri.split('/').any(|part| part.is_empty() || part == "..")
            && uri
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
        if !plain || self.external_files.iter().any(|(u, _)| u == uri) {
            return Err(SceneError::BadUri {
                uri: uri.to_owned(),
            });
        }
        self.external_files.push((uri.to_owned(), bytes));
        Ok(())
    }

    /// The files added with [`SceneBuilder::add_image_file`] and
    /// [`SceneBuilder::add_external_file`], as (relative path, bytes), in the order added.
    pub fn external_files(&self) -> &[(String, Vec<u8>)] {
        &self.external_files
    }

    /// Adds a sampler.
    pub fn add_sampler(&mut self, sampler: &Sampler) -> Result<SamplerId, SceneError> {
        if sampler.mag_filter == Filter::LinearMipmapLinear {
            return Err(SceneError::MipmapMagFilter {
                sampler: sampler.name.clone(),
            });
        }
        self.samplers.push(json::Sampler {
            name: non_empty(&sampler.name),
            mag_filter: sampler.mag_filter.code(),
            min_filter: sampler.min_filter.code(),
            wrap_s: sampler.wrap_s.code(),
            wrap_t: sampler.wrap_t.code(),
        });
        Ok(SamplerId(self.samplers.len() - 1))
    }

    /// Adds a texture: an image read through a sampler (`None`: glTF's default, repeat
    /// wrapping and filtering of the renderer's choice).
    pub fn add_texture(
        &mut self,
        name: &str,
        image: ImageId,
        sampler: Option<SamplerId>,
    ) -> Result<TextureId, SceneError> {
        if image.0 >= self.images.len() {
            return Err(SceneError::UnknownId {
                kind: "image",
                index: image.0,
            });
        }
        if let Some(sampler) = sampler {
            if sampler.0 >= self.samplers.len() {
                return Err(SceneError::UnknownId {
                    kind: "sampler",
                    index: sampler.0,
                });
            }
        }
        self.textures.push(json::Texture {
            name: non_empty(name),
            sampler: sampler.map(|s| s.0),
            source: image.0,
        });
        Ok(TextureId(self.textures.len() - 1))
    }

    /// Appends `bytes` to the binary buffer, 4-byte aligned, as a new buffer view.
    fn push_view(&mut self, bytes: &[u8], target: Option<u32>) -> usize {
        while !self.bin.len().is_multiple_of(4) {
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
    /// index is in range, every vertex attribute matches the positions one for one;
    /// normals are normalised. Positions get the accessor `min`/`max` the glTF
    /// specification requires. Indices are stored as `u16` when the mesh has fewer than
    /// 65 535 vertices, else as `u32`. A material whose textures read `TEXCOORD_n` needs
    /// that attribute.
    pub fn add_mesh(
        &mut self,
        name: &str,
        data: &MeshData,
        material: Option<MaterialId>,
    ) -> Result<MeshId, SceneError> {
        self.add_mesh_primitives(name, &[(data, material)])
    }

    /// Adds a mesh of several primitives, each with its own material; the same checks as
    /// [`SceneBuilder::add_mesh`] for each. Nothing is added if any primitive is invalid.
    pub fn add_mesh_primitives(
        &mut self,
        name: &str,
        primitives: &[(&MeshData, Option<MaterialId>)],
    ) -> Result<MeshId, SceneError> {
        if primitives.is_empty() {
            return Err(SceneError::EmptyMesh {
                mesh: name.to_owned(),
                positions: 0,
                indices: 0,
            });
        }
        let mut checked = Vec::with_capacity(primitives.len());
        let mut total = self.bin.len() as u64;
        for (data, material) in primitives {
            let primitive = self.check_primitive(name, data, *material)?;
            total += primitive.bytes;
            checked.push(primitive);
        }
        if total > MAX_BIN_BYTES {
            return Err(SceneError::BufferTooLarge { bytes: total });
        }
        let mut json_primitives = Vec::with_capacity(primitives.len());
        let mut uv_sets = Vec::with_capacity(primitives.len());
        let mut triangles = 0;
        for ((data, material), checked) in primitives.iter().zip(checked) {
            uv_sets.push(checked.uv_sets);
            triangles += data.triangle_count();
            json_primitives.push(self.write_primitive(data, *material, checked));
        }
        self.meshes.push(json::Mesh {
            name: non_empty(name),
            primitives: json_primitives,
        });
        self.mesh_triangles.push(triangles);
        self.mesh_uv_sets.push(uv_sets);
        Ok(MeshId(self.meshes.len() - 1))
    }

    /// Adds a mesh that shares the vertex and index data of `source` (no new binary
    /// data) but draws its primitives with other materials, one per primitive.
    pub fn add_mesh_variant(
        &mut self,
        name: &str,
        source: MeshId,
        materials: &[Option<MaterialId>],
    ) -> Result<MeshId, SceneError> {
        let Some(mesh) = self.meshes.get(source.0) else {
            return Err(SceneError::UnknownId {
                kind: "mesh",
                index: source.0,
            });
        };
        if materials.len() != mesh.primitives.len() {
            return Err(SceneError::PrimitiveCount {
                mesh: name.to_owned(),
                materials: materials.len(),
                primitives: mesh.primitives.len(),
            });
        }
        let uv_sets = self.mesh_uv_sets[source.0].clone();
        for (&material, &sets) in materials.iter().zip(&uv_sets) {
            self.check_material_fits(name, material, sets)?;
        }
        let mut primitives = mesh.primitives.clone();
        for (primitive, material) in primitives.iter_mut().zip(materials) {
            primitive.material = material.map(|m| m.0);
        }
        self.meshes.push(json::Mesh {
            name: non_empty(name),
            primitives,
        });
        self.mesh_triangles.push(self.mesh_triangles[source.0]);
        self.mesh_uv_sets.push(uv_sets);
        Ok(MeshId(self.meshes.len() - 1))
    }

    /// Number of triangles of one mesh (all its primitives).
    pub fn mesh_triangle_count(&self, mesh: MeshId) -> Option<usize> {
        self.mesh_triangles.get(mesh.0).copied()
    }

    fn check_material_fits(
        &self,
        mesh: &str,
        material: Option<MaterialId>,
        uv_sets: u32,
    ) -> Result<(), SceneError> {
        let Some(material) = material else {
            return Ok(());
        };
        let Some(&needed) = self.material_uv_sets.get(material.0) else {
            return Err(SceneError::UnknownId {
                kind: "material",
                index: material.0,
            });
        };
        let missing = needed & !uv_sets;
        if missing != 0 {
            return Err(SceneError::MissingAttribute {
                mesh: mesh.to_owned(),
                attribute: if missing & 1 != 0 {
                    "TEXCOORD_0"
                } else {
                    "TEXCOORD_1"
                },
                needed_by: format!("material {}", material.0),
            });
        }
        Ok(())
    }

    fn check_primitive(
        &self,
        name: &str,
        data: &MeshData,
        material: Option<MaterialId>,
    ) -> Result<CheckedPrimitive, SceneError> {
        let vertex_count = data.positions.len();
        if vertex_count == 0 || data.indices.is_empty() {
            return Err(SceneError::EmptyMesh {
                mesh: name.to_owned(),
                positions: vertex_count,
                indices: data.indices.len(),
            });
        }
        if !data.indices.len().is_multiple_of(3) {
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
        let count = |attribute: &'static str, count: usize| {
            if count == vertex_count {
                Ok(())
            } else {
                Err(SceneError::AttributeCount {
                    mesh: name.to_owned(),
                    attribute,
                    count,
                    positions: vertex_count,
                })
            }
        };
        let tangents = match &data.tangents {
            None => None,
            Some(tangents) => {
                count("TANGENT", tangents.len())?;
                if normals.is_none() {
                    return Err(SceneError::MissingAttribute {
                        mesh: name.to_owned(),
                        attribute: "NORMAL",
                        needed_by: "TANGENT".to_owned(),
                    });
                }
                let mut unit = Vec::with_capacity(tangents.len());
                for (at, t) in tangents.iter().enumerate() {
                    let xyz =
                        normalize([t[0], t[1], t[2]]).ok_or_else(|| SceneError::ZeroNormal {
                            mesh: format!("{name} (tangent)"),
                            at,
                        })?;
                    if t[3] != 1.0 && t[3] != -1.0 {
                        return Err(SceneError::OutOfRange {
                            what: format!("mesh {name:?} tangent {at} w"),
                            value: t[3],
                            range: "{−1, 1}",
                        });
                    }
                    unit.push([xyz[0], xyz[1], xyz[2], t[3]]);
                }
                Some(unit)
            }
        };
        let mut uv_sets = 0;
        for (set, uvs) in [&data.tex_coords_0, &data.tex_coords_1].iter().enumerate() {
            let Some(uvs) = uvs else { continue };
            let attribute = if set == 0 { "TEXCOORD_0" } else { "TEXCOORD_1" };
            count(attribute, uvs.len())?;
            for (at, uv) in uvs.iter().enumerate() {
                for &c in uv {
                    check_finite(|| format!("mesh {name:?} {attribute} {at}"), c)?;
                }
            }
            uv_sets |= 1 << set;
        }
        if uv_sets == 2 {
            return Err(SceneError::MissingAttribute {
                mesh: name.to_owned(),
                attribute: "TEXCOORD_0",
                needed_by: "TEXCOORD_1".to_owned(),
            });
        }
        self.check_material_fits(name, material, uv_sets)?;
        let vertex_bytes = 12 * normals.is_some() as u64
            + 16 * tangents.is_some() as u64
            + 8 * uv_sets.count_ones() as u64
            + 12;
        let index_bytes = if vertex_count < u16::MAX as usize {
            2
        } else {
            4
        };
        let bytes =
            vertex_bytes * vertex_count as u64 + index_bytes * data.indices.len() as u64 + 24;
        Ok(CheckedPrimitive {
            min,
            max,
            normals,
            tangents,
            uv_sets,
            bytes,
        })
    }

    fn push_vertex_accessor(&mut self, bytes: &[u8], count: usize, kind: &'static str) -> usize {
        let view = self.push_view(bytes, Some(json::TARGET_ARRAY_BUFFER));
        self.accessors.push(json::Accessor {
            buffer_view: view,
            component_type: json::COMPONENT_F32,
            count,
            kind,
            min: None,
            max: None,
        });
        self.accessors.len() - 1
    }

    fn write_primitive(
        &mut self,
        data: &MeshData,
        material: Option<MaterialId>,
        checked: CheckedPrimitive,
    ) -> json::Primitive {
        let vertex_count = data.positions.len();
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
        let position_view =
            self.push_view(&f32_bytes(&data.positions), Some(json::TARGET_ARRAY_BUFFER));
        self.accessors.push(json::Accessor {
            buffer_view: position_view,
            component_type: json::COMPONENT_F32,
            count: vertex_count,
            kind: "VEC3",
            min: Some(checked.min.to_vec()),
            max: Some(checked.max.to_vec()),
        });
        let position = self.accessors.len() - 1;
        let normal = checked
            .normals
            .map(|n| self.push_vertex_accessor(&f32_bytes(&n), vertex_count, "VEC3"));
        let tangent = checked
            .tangents
            .map(|t| self.push_vertex_accessor(&f32_bytes(&t), vertex_count, "VEC4"));
        let texcoord_0 = data
            .tex_coords_0
            .as_ref()
            .map(|uv| self.push_vertex_accessor(&f32_bytes(uv), vertex_count, "VEC2"));
        let texcoord_1 = data
            .tex_coords_1
            .as_ref()
            .map(|uv| self.push_vertex_accessor(&f32_bytes(uv), vertex_count, "VEC2"));
        let index_view = self.push_view(&index_bytes, Some(json::TARGET_ELEMENT_ARRAY_BUFFER));
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
        json::Primitive {
            attributes: json::Attributes {
                position,
                normal,
                tangent,
                texcoord_0,
                texcoord_1,
            },
            indices,
            material: material.map(|m| m.0),
            mode: json::MODE_TRIANGLES,
        }
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
            perspective: Some(json::Perspective {
                aspect_ratio: camera.aspect_ratio,
                yfov,
                zfar: camera.zfar,
                znear: camera.znear,
            }),
            orthographic: None,
        });
        Ok(CameraId(self.cameras.len() - 1))
    }

    /// Adds an orthographic camera.
    pub fn add_orthographic_camera(
        &mut self,
        camera: &OrthographicCamera,
    ) -> Result<CameraId, SceneError> {
        let name = &camera.name;
        check_positive(|| format!("camera {name:?} xmag"), camera.xmag)?;
        check_positive(|| format!("camera {name:?} ymag"), camera.ymag)?;
        check_non_negative(|| format!("camera {name:?} znear"), camera.znear)?;
        if !(camera.zfar > camera.znear && camera.zfar.is_finite()) {
            return Err(SceneError::OutOfRange {
                what: format!("camera {name:?} zfar"),
                value: camera.zfar,
                range: "(znear, ∞)",
            });
        }
        self.cameras.push(json::Camera {
            name: non_empty(name),
            kind: "orthographic",
            perspective: None,
            orthographic: Some(json::Orthographic {
                xmag: camera.xmag,
                ymag: camera.ymag,
                zfar: camera.zfar,
                znear: camera.znear,
            }),
        });
        Ok(CameraId(self.cameras.len() - 1))
    }

    /// Adds an animation. Checks every channel: the node exists, key times are finite,
    /// ≥ 0 and strictly increasing, the value count matches (× 3 for cubic splines),
    /// values are finite, rotation keys are unit quaternions, and no two channels drive
    /// the same property of the same node. Channels with equal key times share one
    /// input accessor.
    pub fn add_animation(&mut self, animation: &Animation) -> Result<AnimationId, SceneError> {
        let name = &animation.name;
        let bad = |channel: usize, reason: String| SceneError::InvalidAnimation {
            animation: name.clone(),
            channel,
            reason,
        };
        if animation.channels.is_empty() {
            return Err(bad(0, "no channels".to_owned()));
        }
        for (i, channel) in animation.channels.iter().enumerate() {
            if channel.node.0 >= self.nodes.len() {
                return Err(SceneError::UnknownId {
                    kind: "node",
                    index: channel.node.0,
                });
            }
            if animation.channels[..i]
                .iter()
                .any(|c| c.node == channel.node && c.path == channel.path)
            {
                return Err(bad(
                    i,
                    format!(
                        "node {} {} is already animated",
                        channel.node.0,
                        channel.path.name()
                    ),
                ));
            }
            if channel.times.is_empty() {
                return Err(bad(i, "no keys".to_owned()));
            }
            let mut previous = -1.0f32;
            for (k, &t) in channel.times.iter().enumerate() {
                if !(t.is_finite() && t >= 0.0 && t > previous) {
                    return Err(bad(
                        i,
                        format!("key time {k} ({t}) is not finite, ≥ 0 and increasing"),
                    ));
                }
                previous = t;
            }
            let per_key = channel.path.components()
                * if channel.interpolation == Interpolation::CubicSpline {
                    3
                } else {
                    1
                };
            let expected = per_key * channel.times.len();
            if channel.values.len() != expected {
                return Err(bad(
                    i,
                    format!(
                        "{} values for {} keys (expected {expected})",
                        channel.values.len(),
                        channel.times.len()
                    ),
                ));
            }
            if let Some(v) = channel.values.iter().find(|v| !v.is_finite()) {
                return Err(bad(i, format!("value {v} is not finite")));
            }
            if channel.path == AnimationPath::Rotation {
                let cubic = channel.interpolation == Interpolation::CubicSpline;
                for (k, key) in channel.values.chunks_exact(per_key).enumerate() {
                    let q = if cubic { &key[4..8] } else { &key[0..4] };
                    let len = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
                    if (len - 1.0).abs() > 1e-4 {
                        return Err(bad(i, format!("rotation key {k} has length {len}, not 1")));
                    }
                }
            }
        }
        let mut inputs: Vec<(&[f32], usize)> = Vec::new();
        let mut channels = Vec::with_capacity(animation.channels.len());
        let mut samplers = Vec::with_capacity(animation.channels.len());
        for (i, channel) in animation.channels.iter().enumerate() {
            let input = match inputs.iter().find(|(t, _)| *t == channel.times.as_slice()) {
                Some(&(_, accessor)) => accessor,
                None => {
                    let bytes: Vec<u8> =
                        channel.times.iter().flat_map(|t| t.to_le_bytes()).collect();
                    let view = self.push_view(&bytes, None);
                    let first = channel.times[0];
                    let last = channel.times[channel.times.len() - 1];
                    self.accessors.push(json::Accessor {
                        buffer_view: view,
                        component_type: json::COMPONENT_F32,
                        count: channel.times.len(),
                        kind: "SCALAR",
                        min: Some(vec![first]),
                        max: Some(vec![last]),
                    });
                    let accessor = self.accessors.len() - 1;
                    inputs.push((&channel.times, accessor));
                    accessor
                }
            };
            let bytes: Vec<u8> = channel
                .values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let view = self.push_view(&bytes, None);
            let components = channel.path.components();
            self.accessors.push(json::Accessor {
                buffer_view: view,
                component_type: json::COMPONENT_F32,
                count: channel.values.len() / components,
                kind: if components == 4 { "VEC4" } else { "VEC3" },
                min: None,
                max: None,
            });
            samplers.push(json::AnimationSampler {
                input,
                interpolation: channel.interpolation.name(),
                output: self.accessors.len() - 1,
            });
            channels.push(json::AnimationChannel {
                sampler: i,
                target: json::AnimationTarget {
                    node: channel.node.0,
                    path: channel.path.name(),
                },
            });
        }
        self.animations.push(json::Animation {
            name: non_empty(name),
            channels,
            samplers,
        });
        Ok(AnimationId(self.animations.len() - 1))
    }

    /// Sets the background of `scene` (`extras.tessera_environment`).
    pub fn set_environment(
        &mut self,
        scene: SceneId,
        environment: &Environment,
    ) -> Result<(), SceneError> {
        let Some(target) = self.scenes.get_mut(scene.0) else {
            return Err(SceneError::UnknownId {
                kind: "scene",
                index: scene.0,
            });
        };
        for (i, &c) in environment.color.iter().enumerate() {
            check_non_negative(|| format!("environment color[{i}]"), c)?;
        }
        check_non_negative(|| "environment strength".to_owned(), environment.strength)?;
        check_finite(
            || "environment rotation".to_owned(),
            environment.rotation_degrees,
        )?;
        target.extras = Some(json::SceneExtras {
            tessera_environment: json::Environment {
                color: environment.color,
                strength: environment.strength,
                image: environment.image.as_deref().map(percent_encode),
                rotation: (environment.rotation_degrees != 0.0)
                    .then_some(environment.rotation_degrees),
            },
        });
        Ok(())
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
            extras: None,
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
        let uses_transform = self.materials.iter().any(|m| {
            let pbr = &m.pbr_metallic_roughness;
            [
                &pbr.base_color_texture,
                &pbr.metallic_roughness_texture,
                &m.emissive_texture,
            ]
            .iter()
            .any(|t| t.as_ref().is_some_and(|t| t.extensions.is_some()))
                || m.normal_texture
                    .as_ref()
                    .is_some_and(|t| t.extensions.is_some())
        });
        if uses_transform {
            extensions_used.push(json::EXT_TEXTURE_TRANSFORM);
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
            textures: self.textures.clone(),
            images: self.images.clone(),
            samplers: self.samplers.clone(),
            cameras: self.cameras.clone(),
            animations: self.animations.clone(),
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

    /// Every file of the `.gltf` form: `(gltf_name, JSON)`, `(bin_name, buffer)` (when
    /// there is binary data), then [`SceneBuilder::external_files`], as (relative path,
    /// bytes) to write into one folder.
    pub fn to_gltf_files(&self, gltf_name: &str, bin_name: &str) -> Vec<(String, Vec<u8>)> {
        let (json, bin) = self.to_gltf_with_external_buffer(bin_name);
        let mut files = vec![(gltf_name.to_owned(), json.into_bytes())];
        if !bin.is_empty() {
            files.push((bin_name.to_owned(), bin));
        }
        files.extend(self.external_files.iter().cloned());
        files
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
