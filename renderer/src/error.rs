//! Error types: every message names the file or object and the offending value.

use tessera_protocol::{RenderFailure, TileRect};

/// Why a scene could not be loaded. Messages start with the scene file name and name the
/// glTF field at fault, e.g. `scene.gltf: buffers[0].uri "../x.bin": points outside the
/// scene folder`.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file (or resource) that failed.
        file: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not glTF 2.0 (neither a GLB container nor glTF JSON), or is truncated.
    #[error("{file}: not a glTF 2.0 file: {reason}")]
    NotGltf {
        /// The scene file.
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// A field of the scene is invalid.
    #[error("{file}: {field}: {reason}")]
    Invalid {
        /// The scene file.
        file: String,
        /// The glTF field, e.g. `meshes[0].primitives[1].indices`.
        field: String,
        /// What was wrong, with the value.
        reason: String,
    },
    /// An external or data URI was refused.
    #[error("{file}: {field} {uri:?}: {reason}")]
    Uri {
        /// The scene file.
        file: String,
        /// The glTF field holding the URI, e.g. `buffers[0].uri`.
        field: String,
        /// The URI as written in the file (truncated when very long).
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// A size bound of [`crate::SceneLimits`] was exceeded.
    #[error("{file}: {field}: {what} {value} exceeds the limit of {limit}")]
    Limit {
        /// The scene file.
        file: String,
        /// The glTF field where the bound was crossed.
        field: String,
        /// Which quantity, e.g. `file bytes`, `triangles`.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The configured bound.
        limit: u64,
    },
    /// The scene would cost more than a budget of [`crate::SceneLimits`] allows; charged
    /// from headers and accessor counts before anything is decoded, e.g. `bomb.glb:
    /// images[0]: scene budget: textures decode to 2147483648 bytes, more than
    /// max_texture_bytes (1073741824 bytes)`.
    #[error(
        "{file}: {field}: scene budget: {what} {value}{unit}, more than {budget} ({limit}{unit})"
    )]
    Budget {
        /// The scene file.
        file: String,
        /// The glTF field whose charge crossed the budget.
        field: String,
        /// What was counted, e.g. `textures decode to`.
        what: &'static str,
        /// The total charged so far, this field included.
        value: u64,
        /// The unit of `value` and `limit` with a leading space, e.g. ` bytes`.
        unit: &'static str,
        /// The [`crate::SceneLimits`] field, e.g. `max_texture_bytes`.
        budget: &'static str,
        /// Its configured value.
        limit: u64,
    },
}

/// Why the GPU could not be set up or a tile could not be rendered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// No usable adapter exists on this machine.
    #[error(
        "no gpu adapter with compute shaders found ({details}); on a machine without a gpu \
         install Mesa's lavapipe with `apt-get install -y mesa-vulkan-drivers libvulkan1`"
    )]
    NoAdapter {
        /// What wgpu reported.
        details: String,
    },
    /// `WGPU_ADAPTER_NAME` matched no adapter.
    #[error("WGPU_ADAPTER_NAME {wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound {
        /// The requested name (substring, case-insensitive).
        wanted: String,
        /// The adapters that exist, comma separated.
        available: String,
    },
    /// The adapter refused to create a device.
    #[error("adapter {adapter:?}: cannot create a device: {reason}")]
    Device {
        /// The adapter's name.
        adapter: String,
        /// What wgpu reported.
        reason: String,
    },
    /// A GPU operation failed (validation, out of memory, device lost, mapping).
    #[error("gpu: {context}: {reason}")]
    Gpu {
        /// What the renderer was doing.
        context: &'static str,
        /// What wgpu reported.
        reason: String,
    },
    /// Mesa llvmpipe's shader loop limit was reached even with one sample per dispatch.
    #[error(
        "adapter {adapter:?} (Mesa llvmpipe) ends shader loops after {limit} iterations per \
         SIMD group, and one sample of this tile needs up to {needed}: its paths are too \
         long for this driver (fewer punctual lights or bounces, or a GPU, would do)"
    )]
    LoopLimit {
        /// The adapter's name.
        adapter: String,
        /// Loop iterations one SIMD group needed.
        needed: u64,
        /// Loop iterations allowed (with a margin).
        limit: u64,
    },
    /// A scene array is larger than the adapter allows in one buffer.
    #[error(
        "scene {buffer} needs {bytes} bytes but the adapter allows {limit} bytes per storage \
         buffer"
    )]
    SceneTooLarge {
        /// Which array, e.g. `triangles`.
        buffer: &'static str,
        /// Its size in bytes.
        bytes: u64,
        /// The adapter's limit.
        limit: u64,
    },
    /// The textures do not fit the adapter's texture limits.
    #[error(
        "{what} need a {width}x{height} texture with {layers} layers but the adapter allows \
         {max_side} texels per side and {max_layers} layers"
    )]
    TextureTooLarge {
        /// Which texture, e.g. `material textures`.
        what: &'static str,
        /// Width of a layer.
        width: u32,
        /// Height of a layer.
        height: u32,
        /// Number of layers.
        layers: u32,
        /// The adapter's `max_texture_dimension_2d`.
        max_side: u32,
        /// The adapter's `max_texture_array_layers`.
        max_layers: u32,
    },
    /// An animated frame could not be instantiated (e.g. a transform that becomes
    /// degenerate at that time).
    #[error("frame {frame}: {field}: {reason}")]
    Instantiate {
        /// The frame.
        frame: u32,
        /// The glTF field at fault.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// `settings.camera` names no camera of the scene.
    #[error("camera {name:?} not found; the scene has: {available}")]
    UnknownCamera {
        /// The requested name.
        name: String,
        /// The scene's cameras, comma separated (or `no cameras`).
        available: String,
    },
    /// The scene has no camera to render from.
    #[error("the scene has no camera")]
    NoCamera,
    /// A render setting is out of range.
    #[error("settings.{field} = {value}: {reason}")]
    InvalidSettings {
        /// The field of `RenderSettings`.
        field: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        reason: String,
    },
    /// The tile does not lie inside the frame.
    #[error("tile {rect} does not fit in a {width}x{height} frame")]
    TileOutside {
        /// The requested tile.
        rect: TileRect,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
}

impl From<RenderError> for RenderFailure {
    fn from(err: RenderError) -> Self {
        RenderFailure(err.to_string())
    }
}
