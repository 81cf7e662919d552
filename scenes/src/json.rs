//! The glTF 2.0 JSON document as plain serde structs.
//!
//! Field order in these structs is the key order in the output, and there are no maps
//! whose iteration order could vary, so serialising the same document always gives the
//! same bytes.

use serde::Serialize;

/// `ARRAY_BUFFER`: vertex attributes.
pub(crate) const TARGET_ARRAY_BUFFER: u32 = 34962;
/// `ELEMENT_ARRAY_BUFFER`: indices.
pub(crate) const TARGET_ELEMENT_ARRAY_BUFFER: u32 = 34963;
/// `FLOAT` component type.
pub(crate) const COMPONENT_F32: u32 = 5126;
/// `UNSIGNED_SHORT` component type.
pub(crate) const COMPONENT_U16: u32 = 5123;
/// `UNSIGNED_INT` component type.
pub(crate) const COMPONENT_U32: u32 = 5125;
/// `TRIANGLES` primitive mode.
pub(crate) const MODE_TRIANGLES: u32 = 4;

pub(crate) const EXT_LIGHTS: &str = "KHR_lights_punctual";
pub(crate) const EXT_EMISSIVE_STRENGTH: &str = "KHR_materials_emissive_strength";
pub(crate) const EXT_TEXTURE_TRANSFORM: &str = "KHR_texture_transform";

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Root {
    pub asset: Asset,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions_used: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<RootExtensions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scenes: Vec<Scene>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Node>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meshes: Vec<Mesh>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<Material>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub textures: Vec<Texture>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samplers: Vec<Sampler>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<Camera>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub animations: Vec<Animation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accessors: Vec<Accessor>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buffer_views: Vec<BufferView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buffers: Vec<Buffer>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Asset {
    pub version: &'static str,
    pub generator: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct RootExtensions {
    #[serde(rename = "KHR_lights_punctual")]
    pub lights_punctual: LightList,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct LightList {
    pub lights: Vec<Light>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Light {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub color: [f32; 3],
    pub intensity: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot: Option<Spot>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spot {
    pub inner_cone_angle: f32,
    pub outer_cone_angle: f32,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Scene {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub nodes: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extras: Option<SceneExtras>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct SceneExtras {
    pub tessera_environment: Environment,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Environment {
    pub color: [f32; 3],
    pub strength: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<f32>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Node {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<[f32; 16]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translation: Option<[f32; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<[f32; 4]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f32; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<NodeExtensions>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct NodeExtensions {
    #[serde(rename = "KHR_lights_punctual")]
    pub lights_punctual: NodeLight,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct NodeLight {
    pub light: usize,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Mesh {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub primitives: Vec<Primitive>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Primitive {
    pub attributes: Attributes,
    pub indices: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub material: Option<usize>,
    pub mode: u32,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Attributes {
    #[serde(rename = "POSITION")]
    pub position: usize,
    #[serde(rename = "NORMAL", skip_serializing_if = "Option::is_none")]
    pub normal: Option<usize>,
    #[serde(rename = "TANGENT", skip_serializing_if = "Option::is_none")]
    pub tangent: Option<usize>,
    #[serde(rename = "TEXCOORD_0", skip_serializing_if = "Option::is_none")]
    pub texcoord_0: Option<usize>,
    #[serde(rename = "TEXCOORD_1", skip_serializing_if = "Option::is_none")]
    pub texcoord_1: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Material {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub pbr_metallic_roughness: PbrMetallicRoughness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_texture: Option<NormalTextureInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emissive_texture: Option<TextureInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emissive_factor: Option<[f32; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_cutoff: Option<f32>,
    #[serde(skip_serializing_if = "is_false")]
    pub double_sided: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<MaterialExtensions>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PbrMetallicRoughness {
    pub base_color_factor: [f32; 4],
    pub metallic_factor: f32,
    pub roughness_factor: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_color_texture: Option<TextureInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metallic_roughness_texture: Option<TextureInfo>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TextureInfo {
    pub index: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub tex_coord: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<TextureInfoExtensions>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NormalTextureInfo {
    pub index: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub tex_coord: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<TextureInfoExtensions>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct TextureInfoExtensions {
    #[serde(rename = "KHR_texture_transform")]
    pub texture_transform: TextureTransform,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TextureTransform {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<[f32; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f32; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tex_coord: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Texture {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<usize>,
    pub source: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Image {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_view: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Sampler {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub mag_filter: u32,
    pub min_filter: u32,
    pub wrap_s: u32,
    pub wrap_t: u32,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Animation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub channels: Vec<AnimationChannel>,
    pub samplers: Vec<AnimationSampler>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct AnimationChannel {
    pub sampler: usize,
    pub target: AnimationTarget,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct AnimationTarget {
    pub node: usize,
    pub path: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct AnimationSampler {
    pub input: usize,
    pub interpolation: &'static str,
    pub output: usize,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct MaterialExtensions {
    #[serde(rename = "KHR_materials_emissive_strength")]
    pub emissive_strength: EmissiveStrength,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmissiveStrength {
    pub emissive_strength: f32,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Camera {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perspective: Option<Perspective>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orthographic: Option<Orthographic>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Orthographic {
    pub xmag: f32,
    pub ymag: f32,
    pub zfar: f32,
    pub znear: f32,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Perspective {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<f32>,
    pub yfov: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zfar: Option<f32>,
    pub znear: f32,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accessor {
    pub buffer_view: usize,
    pub component_type: u32,
    pub count: usize,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Vec<f32>>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BufferView {
    pub buffer: usize,
    pub byte_offset: usize,
    pub byte_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Buffer {
    pub byte_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}
