//! Loading an untrusted glTF 2.0 scene: the document, buffers, decoded primitives,
//! materials, textures and environment are kept (shared, read-only); world-space geometry,
//! cameras and lights are instantiated per animation time ([`world`]).
//!
//! Buffers and images are resolved here, never by `gltf::import`: base64 `data:` URIs,
//! the GLB `BIN` chunk, or relative paths that stay inside the scene's own folder. Every
//! size is bounded by [`SceneLimits`], and every refusal names the file and the glTF field.
//! Features the renderer does not draw are listed by name in [`Scene::warnings`].
//!
//! [`Scene::load`] and [`Scene::inspect`] share one front half ([`Loader::prepare`]):
//! parsing and structural checks, URI confinement, hashing, and charging the scene budget
//! ([`budget`]) from image headers and accessor counts. Only `load` then decodes.

mod accessor;
mod animation;
mod budget;
pub(crate) mod environment;
mod format;
pub(crate) mod material;
mod math;
mod mesh;
mod source;
pub(crate) mod texture;
mod uri;
pub(crate) mod world;

use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gltf::json::Root;
use serde_json::Value;

use crate::error::SceneError;
use animation::Animations;
use budget::{Budget, Exceeded};
use environment::{EnvImage, EnvSpec, Environment};
use format::ImageInfo;
use material::GpuMaterial;
use mesh::semantic_name;
use mesh::PrimData;
use source::Blob;
use texture::TextureSet;
use uri::{ReadError, UriRefusal, UriTarget};
pub(crate) use world::{CameraDef, Projection, World};

/// Upper bounds on what a scene may contain and cost; exceeding one is an error naming
/// the glTF field and the bound.
///
/// The `max_texture_*`, `max_environment_pixels`, `max_vertices`, `max_primitives` and
/// `max_triangles` fields are the scene budget: they are charged from image headers and
/// accessor counts before anything is decoded, by [`Scene::load`] and [`Scene::inspect`]
/// alike, and a refusal is a [`SceneError::Budget`] naming the field. The defaults admit
/// every sample scene and large production scenes (an 8K × 4K HDR environment with
/// fourteen 4K textures, 20 million triangles after instancing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SceneLimits {
    /// Bytes of the scene file itself and of each external file. Default 1 GiB.
    pub max_file_bytes: u64,
    /// Bytes of all buffers together (GLB BIN chunk, data URIs and external files).
    /// Default 1 GiB.
    pub max_buffer_bytes: u64,
    /// Triangles after instancing: every node that uses a mesh adds its primitives'
    /// triangles, counted from the index (else POSITION) accessor counts. Default 20
    /// million.
    pub max_triangles: u64,
    /// Vertices after instancing: every node that uses a mesh adds each primitive's
    /// POSITION count, so an accessor shared by several primitives or nodes is counted at
    /// each reference (each is decoded and instantiated on its own). Default 60 million
    /// (a 20-million-triangle soup without indices).
    pub max_vertices: u64,
    /// Primitive references: mesh instances × their primitives. Default 1 million.
    pub max_primitives: u64,
    /// Pixels of all images together, the environment image included (from the image
    /// headers). Default 2²⁸ (16 images of 4096²).
    pub max_texture_pixels: u64,
    /// Bytes that all images together decode to, material textures and the environment
    /// image, from their headers: a PNG's decoder output by colour type and bit depth
    /// plus its RGBA8 copy (4 bytes per pixel for 8-bit RGBA, 8 for RGB, 12 for 16-bit
    /// RGBA), a JPEG 3 per component plus 4 (13 for colour), the environment 32 per pixel
    /// (its RGBA f32 copy and the decoder's f32 output or the sampling tables). Default
    /// 4 GiB: the pixel bound's worth of 8-bit RGB PNGs (2²⁸ × 8 bytes = 2 GiB) plus an
    /// 8K × 4K environment (2²⁵ × 32 bytes = 1 GiB), with room for 16-bit PNGs.
    pub max_texture_bytes: u64,
    /// Pixels of the environment image (`scenes[s].extras.tessera_environment.image`),
    /// from its HDR/EXR header. Default 2²⁶ (twice an 8K × 4K panorama).
    pub max_environment_pixels: u64,
    /// Punctual lights placed in the scene (each is sampled at every path vertex).
    /// Default 1024.
    pub max_lights: u64,
}

impl Default for SceneLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 30,
            max_buffer_bytes: 1 << 30,
            max_triangles: 20_000_000,
            max_vertices: 60_000_000,
            max_primitives: 1_000_000,
            max_texture_pixels: 268_435_456,
            max_texture_bytes: 4 << 30,
            max_environment_pixels: 1 << 26,
            max_lights: 1024,
        }
    }
}

/// Options for [`Scene::load`] and [`Scene::inspect`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Size bounds.
    pub limits: SceneLimits,
}

/// Size and cost figures of a loaded scene (for logs, benchmarks and capacity planning).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SceneStats {
    /// Triangles after instancing.
    pub triangles: usize,
    /// Nodes of the BVH.
    pub bvh_nodes: usize,
    /// Milliseconds the BVH build of the first instantiated frame took.
    pub bvh_build_ms: f64,
    /// Milliseconds [`Scene::load`] took (parsing, decoding, first instantiation).
    pub load_ms: f64,
    /// GPU bytes of the BVH and the triangle and vertex data of one frame.
    pub geometry_bytes: u64,
    /// GPU bytes of textures: the packed material texture pages and the environment
    /// image with its sampling tables.
    pub texture_bytes: u64,
    /// Number of images decoded for material textures (plus 1 for an environment image).
    pub texture_count: usize,
    /// Whether the scene has animations (geometry is instantiated per frame).
    pub animated: bool,
}

/// What [`Scene::inspect`] finds out about a scene without decoding it. For a scene that
/// [`Scene::load`] accepts, every field equals what the loaded scene reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SceneInfo {
    /// [`Scene::content_hash`].
    pub content_hash: [u8; 32],
    /// [`Scene::camera_names`]: names in scene order, the first is the default.
    pub cameras: Vec<String>,
    /// [`Scene::is_animated`].
    pub animated: bool,
    /// Triangles after instancing ([`Scene::triangle_count`]), charged to `max_triangles`.
    pub triangles: u64,
    /// Vertices after instancing, charged to `max_vertices` (see [`SceneLimits`]).
    pub vertices: u64,
    /// Primitive references, charged to `max_primitives`.
    pub primitives: u64,
    /// Decoded bytes of all images, charged to `max_texture_bytes`.
    pub texture_bytes: u64,
    /// Pixels of the environment image (0 without one), charged to
    /// `max_environment_pixels`.
    pub environment_pixels: u64,
    /// [`Scene::files`]: the external files, in load order.
    pub files: Vec<PathBuf>,
}

/// What the loader keeps of a scene: everything that does not depend on the time.
pub(crate) struct SceneData {
    pub root: Root,
    pub animations: Animations,
    /// Root nodes of the rendered scene.
    pub roots: Vec<usize>,
    /// Decoded primitives, `prims[mesh][primitive]` (`None` = not instanced or skipped).
    pub prims: Vec<Vec<Option<PrimData>>>,
    /// One per glTF material, then the glTF default material.
    pub materials: Vec<GpuMaterial>,
    pub textures: TextureSet,
    pub environment: Environment,
    pub max_lights: u64,
}

/// A loaded scene: the decoded document plus its instantiation at time 0.
pub struct Scene {
    name: String,
    content_hash: [u8; 32],
    files: Vec<PathBuf>,
    warnings: Vec<String>,
    stats: SceneStats,
    pub(crate) data: Arc<SceneData>,
    pub(crate) world0: Arc<World>,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("name", &self.name)
            .field("triangles", &self.triangle_count())
            .field("emissive_triangles", &self.emissive_triangle_count())
            .field("lights", &self.light_count())
            .field("cameras", &self.camera_names())
            .field("warnings", &self.warnings.len())
            .finish()
    }
}

impl Scene {
    /// Load a `.glb` or `.gltf` file. External resources are read only from the file's own
    /// folder; all sizes are checked against `opts.limits`.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Scene, SceneError> {
        let started = Instant::now();
        let mut scene = Loader::new(path, &opts.limits, Mode::Load)?.load()?;
        scene.stats.load_ms = started.elapsed().as_secs_f64() * 1e3;
        let s = &scene.stats;
        tracing::info!(
            scene = %scene.name,
            triangles = s.triangles,
            emissive = scene.emissive_triangle_count(),
            lights = scene.light_count(),
            bvh_nodes = s.bvh_nodes,
            bvh_ms = s.bvh_build_ms,
            geometry_bytes = s.geometry_bytes,
            texture_bytes = s.texture_bytes,
            textures = s.texture_count,
            animated = s.animated,
            warnings = scene.warnings.len(),
            ms = s.load_ms,
            "scene loaded"
        );
        Ok(scene)
    }

    /// Check a `.glb` or `.gltf` file cheaply, without decoding it: what [`Scene::load`]
    /// checks before it decodes (the JSON and its structure, URI confinement, the sizes of
    /// `opts.limits`, the whole scene budget from image headers and accessor counts, the
    /// cameras' projections and the animation channels), and the same content hash,
    /// cameras and file list. Images and vertex data are not decoded, the world is not
    /// instantiated and no BVH is built; external files (and a GLB's body) are hashed as
    /// streams through a fixed buffer and only image headers are read from them.
    ///
    /// What only decoding finds (a corrupt image body, a non-finite position, an
    /// out-of-range index, an invalid material value or keyframe) can still make a scene
    /// that passes inspection fail to load.
    pub fn inspect(path: &Path, opts: &LoadOptions) -> Result<SceneInfo, SceneError> {
        let started = Instant::now();
        let loader = Loader::new(path, &opts.limits, Mode::Inspect)?;
        let file = loader.file.clone();
        let info = loader.inspect()?;
        tracing::info!(
            scene = %file,
            triangles = info.triangles,
            vertices = info.vertices,
            primitives = info.primitives,
            texture_bytes = info.texture_bytes,
            environment_pixels = info.environment_pixels,
            cameras = info.cameras.len(),
            animated = info.animated,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "scene inspected"
        );
        Ok(info)
    }

    /// The scene file's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every feature of the scene that is not rendered (or rendered approximately), by name,
    /// each once, in a fixed order.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// BLAKE3 over the main file's bytes, then for each external file in load order
    /// (buffers by index, then images by index, then the environment image): the URI's
    /// length as u64 little-endian, the URI, the data's length as u64 little-endian, and
    /// the data.
    pub fn content_hash(&self) -> [u8; 32] {
        self.content_hash
    }

    /// The external files the scene read (buffers, images, the environment image), each
    /// once, in load order, relative to the scene file's folder as its URIs name them
    /// (percent-decoded, `.` segments dropped). The scene file itself is not listed;
    /// `data:` URIs and the GLB `BIN` chunk are not files. The files at these paths beside
    /// the scene file, and nothing else, make up its [`Scene::content_hash`].
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Triangles after instancing (at time 0).
    pub fn triangle_count(&self) -> usize {
        self.world0.tri_v0.len()
    }

    /// Triangles that emit light (and have a non-zero area), at time 0.
    pub fn emissive_triangle_count(&self) -> usize {
        self.world0.emitters.len()
    }

    /// Punctual (`KHR_lights_punctual`) lights placed in the scene.
    pub fn light_count(&self) -> usize {
        self.world0.lights.len()
    }

    /// Names of the cameras (perspective and orthographic) in scene order (the first one
    /// is the default). An unnamed camera is called by its node's name, else `cameras[i]`.
    pub fn camera_names(&self) -> Vec<String> {
        self.world0.cameras.iter().map(|c| c.name.clone()).collect()
    }

    /// Whether the scene has node animations (each frame is instantiated separately).
    pub fn is_animated(&self) -> bool {
        !self.data.animations.is_empty()
    }

    /// The time span in seconds that the scene's animation channels cover (`None` for a
    /// static scene); before and after it every channel holds its first or last key.
    pub fn animation_range(&self) -> Option<(f64, f64)> {
        self.data.animations.time_range()
    }

    /// Size and timing figures of the scene.
    pub fn stats(&self) -> SceneStats {
        self.stats.clone()
    }
}

/// How the loader treats the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Read everything into memory and decode it ([`Scene::load`]).
    Load,
    /// Hash external files and a GLB's body as streams and read only headers
    /// ([`Scene::inspect`]).
    Inspect,
}

/// The scene file: read whole, or (a GLB under inspect) hashed and left on disk.
enum MainFile {
    Memory(Vec<u8>),
    Glb { len: u64 },
}

/// What the rendered scene graph places, in the depth-first order (children in array
/// order) that [`world::instantiate`] walks; the graph's shape does not change with time.
struct Graph {
    /// (node, mesh) of every mesh instance.
    meshes: Vec<(usize, usize)>,
    /// (node, camera) of every node with a camera.
    cameras: Vec<(usize, usize)>,
}

/// The environment as the scene specifies it, its image (if any) fetched, hashed and
/// charged from its header but not decoded: (field, bytes).
struct EnvSource {
    spec: EnvSpec,
    image: Option<(String, Blob)>,
}

/// A document checked, hashed and charged to the budget: what load and inspect share.
struct Prepared {
    root: Root,
    raw: Value,
    buffers: Vec<Blob>,
    /// The bytes of every image, by index.
    images: Vec<Blob>,
    environment: Option<EnvSource>,
    /// Root nodes of the rendered scene.
    roots: Vec<usize>,
    graph: Graph,
}

struct Loader<'a> {
    file: String,
    path: PathBuf,
    folder: PathBuf,
    mode: Mode,
    main: MainFile,
    /// External files read so far, relative to `folder` (see [`Scene::files`]).
    files: Vec<PathBuf>,
    limits: &'a SceneLimits,
    budget: Budget<'a>,
    hasher: blake3::Hasher,
    warnings: Vec<String>,
}

fn label(kind: &str, idx: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{kind} {n:?}"),
        _ => format!("{kind}s[{idx}]"),
    }
}

impl<'a> Loader<'a> {
    /// Read (or, for a GLB under inspect, stream) and hash the scene file.
    fn new(path: &Path, limits: &'a SceneLimits, mode: Mode) -> Result<Self, SceneError> {
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut hasher = blake3::Hasher::new();
        let main = match read_main(path, limits.max_file_bytes, mode, &mut hasher) {
            Ok(main) => main,
            Err(ReadError::Io(source)) => return Err(SceneError::Io { file, source }),
            Err(ReadError::TooLarge(value)) => {
                return Err(SceneError::Limit {
                    file,
                    field: "file".into(),
                    what: "file bytes",
                    value,
                    limit: limits.max_file_bytes,
                })
            }
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let folder = std::fs::canonicalize(parent).map_err(|source| SceneError::Io {
            file: parent.display().to_string(),
            source,
        })?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            folder,
            mode,
            main,
            files: Vec::new(),
            limits,
            budget: Budget::new(limits),
            hasher,
            warnings: Vec::new(),
        })
    }

    fn invalid(&self, field: impl Into<String>, reason: impl std::fmt::Display) -> SceneError {
        SceneError::Invalid {
            file: self.file.clone(),
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            tracing::warn!(scene = %self.file, "{message}");
            self.warnings.push(message);
        }
    }

    fn field_error(&self, (field, reason): (String, String)) -> SceneError {
        self.invalid(field, reason)
    }

    fn exceeded(&self, e: Exceeded) -> SceneError {
        SceneError::Budget {
            file: self.file.clone(),
            field: e.field,
            what: e.what,
            value: e.value,
            unit: e.unit,
            budget: e.budget,
            limit: e.limit,
        }
    }

    /// A read error on bytes the loader already holds or has hashed (`what` names them).
    fn read_error(&self, what: &str, source: std::io::Error) -> SceneError {
        SceneError::Io {
            file: format!("{}: {what}", self.file),
            source,
        }
    }

    fn load(mut self) -> Result<Scene, SceneError> {
        let prepared = self.prepare()?;
        self.build(prepared)
    }

    fn inspect(mut self) -> Result<SceneInfo, SceneError> {
        let prepared = self.prepare()?;
        let root = &prepared.root;
        let mut warnings = Vec::new();
        let mut cameras = Vec::new();
        for &(node, cam) in &prepared.graph.cameras {
            let name = world::camera_name(root, cam, node);
            let projection = world::projection(root, cam, &name, &mut |w| warnings.push(w))
                .map_err(|e| self.field_error(e))?;
            if projection.is_some() {
                cameras.push(name);
            }
        }
        let animated = animation::animates_nodes(root, &mut |w| warnings.push(w))
            .map_err(|e| self.field_error(e))?;
        for w in warnings {
            self.warn(w);
        }
        let used = self.budget.used();
        Ok(SceneInfo {
            content_hash: *self.hasher.finalize().as_bytes(),
            cameras,
            animated,
            triangles: used.triangles,
            vertices: used.vertices,
            primitives: used.primitives,
            texture_bytes: used.texture_bytes,
            environment_pixels: used.environment_pixels,
            files: std::mem::take(&mut self.files),
        })
    }

    /// Everything before decoding: the document and its structure, buffers and images
    /// fetched (and hashed) in load order, the environment image's header, the scene
    /// graph, and the whole budget charged.
    fn prepare(&mut self) -> Result<Prepared, SceneError> {
        let (root, raw, bin) = self.document()?;
        let buffers = self.load_buffers(&root, bin)?;
        let images = self.check_images(&root, &buffers)?;
        self.warn_document_features(&root);
        let environment = self.environment_source(&root, &raw)?;
        let roots = self.scene_roots(&root);
        let graph = self.scene_graph(&root, &roots)?;
        self.budget
            .charge_geometry(&root, &graph.meshes)
            .map_err(|e| self.exceeded(e))?;
        let used_meshes: BTreeSet<usize> = graph.meshes.iter().map(|&(_, m)| m).collect();
        for &m in &used_meshes {
            for p in 0..root.meshes[m].primitives.len() {
                mesh::check_counts(&root, m, p).map_err(|e| self.field_error(e))?;
            }
        }
        Ok(Prepared {
            root,
            raw,
            buffers,
            images,
            environment,
            roots,
            graph,
        })
    }

    /// The typed and the raw JSON document, and the GLB `BIN` chunk.
    fn document(&mut self) -> Result<(Root, Value, Option<Blob>), SceneError> {
        let not_gltf = |file: &str, reason: String| SceneError::NotGltf {
            file: file.to_string(),
            reason,
        };
        let (json, bin) = match std::mem::replace(&mut self.main, MainFile::Memory(Vec::new())) {
            MainFile::Memory(bytes) => {
                // A file cut inside the 4-byte magic is still a (truncated) GLB.
                let glb_magic = bytes.starts_with(b"glTF")
                    || (!bytes.is_empty() && b"glTF".starts_with(&bytes));
                if glb_magic {
                    let glb = format::parse_glb(&bytes)
                        .map_err(|r| not_gltf(&self.file, r.to_string()))?;
                    (glb.json.to_vec(), glb.bin.map(|b| Blob::Memory(b.to_vec())))
                } else {
                    (bytes, None)
                }
            }
            MainFile::Glb { len } => {
                let whole = Blob::File {
                    path: self.path.clone(),
                    offset: 0,
                    len,
                };
                let mut reader = whole
                    .reader()
                    .map_err(|e| self.read_error("GLB header", e))?;
                let layout = format::glb_layout(len, &mut reader);
                if let Some(e) = reader.take_error() {
                    return Err(self.read_error("GLB header", e));
                }
                let layout = layout.map_err(|r| not_gltf(&self.file, r.to_string()))?;
                let json = whole
                    .range(layout.json.start, layout.json.end - layout.json.start)
                    .into_vec()
                    .map_err(|e| self.read_error("GLB JSON chunk", e))?;
                let bin = layout.bin.map(|r| whole.range(r.start, r.end - r.start));
                (json, bin)
            }
        };
        let root = self.parse_json(&json)?;
        // The typed document drops what the crate does not model (KHR_texture_transform,
        // scene extras); those are read from the raw JSON.
        let raw: Value = serde_json::from_slice(&json).map_err(|e| SceneError::NotGltf {
            file: self.file.clone(),
            reason: format!("invalid JSON: {e}"),
        })?;
        Ok((root, raw, bin))
    }

    fn parse_json(&mut self, json: &[u8]) -> Result<Root, SceneError> {
        let file = self.file.clone();
        let not_gltf = |reason: String| SceneError::NotGltf {
            file: file.clone(),
            reason,
        };
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(not_gltf("neither a GLB container nor a JSON object".into()));
        }
        let mut root: Root = gltf::json::deserialize::from_slice(json)
            .map_err(|e| not_gltf(format!("invalid glTF JSON: {e}")))?;
        if !root.asset.version.starts_with("2.") {
            return Err(not_gltf(format!(
                "asset.version is {:?}; only 2.x is supported",
                root.asset.version
            )));
        }
        // Required extensions the crate does not know fail validation; the renderer would
        // ignore them anyway, so name them and go on.
        let supported = gltf::json::extensions::ENABLED_EXTENSIONS;
        let required = std::mem::take(&mut root.extensions_required);
        for ext in required {
            if supported.contains(&ext.as_str()) {
                root.extensions_required.push(ext);
            } else {
                self.warn(format!(
                    "extension {ext:?} is required by the scene but not supported yet; rendering without it"
                ));
            }
        }
        // The crate's validation indexes POSITION accessors before checking them.
        for (m, mesh) in root.meshes.iter().enumerate() {
            for (p, prim) in mesh.primitives.iter().enumerate() {
                for (semantic, idx) in &prim.attributes {
                    if idx.value() >= root.accessors.len() {
                        return Err(self.invalid(
                            format!(
                                "meshes[{m}].primitives[{p}].attributes.{}",
                                semantic_name(semantic)
                            ),
                            format!(
                                "accessor {} does not exist ({} accessors)",
                                idx.value(),
                                root.accessors.len()
                            ),
                        ));
                    }
                }
            }
        }
        let validated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gltf::Document::from_json(root)
        }));
        match validated {
            Ok(Ok(doc)) => Ok(doc.into_json()),
            Ok(Err(gltf::Error::Validation(errors))) => {
                let more = if errors.len() > 1 {
                    format!(" (and {} more)", errors.len() - 1)
                } else {
                    String::new()
                };
                let (path, error) = &errors[0];
                Err(self.invalid(
                    path.to_string(),
                    format!("{}{more}", validation_reason(error)),
                ))
            }
            Ok(Err(e)) => Err(not_gltf(e.to_string())),
            Err(_) => Err(not_gltf(
                "the glTF validator failed on this document".into(),
            )),
        }
    }

    /// Fetch the bytes behind a URI field, hashing external files: read into memory under
    /// load, streamed through the hasher and left on disk under inspect.
    fn fetch(&mut self, field: &str, uri_text: &str, max_bytes: u64) -> Result<Blob, SceneError> {
        let refuse = |reason: String| SceneError::Uri {
            file: self.file.clone(),
            field: field.to_string(),
            uri: shorten(uri_text),
            reason,
        };
        match uri::resolve(uri_text, &self.folder, max_bytes) {
            Err(UriRefusal(reason)) => Err(refuse(reason)),
            Ok(UriTarget::Data(data)) => Ok(Blob::Memory(data)),
            Ok(UriTarget::File { path, relative }) => {
                let cap = max_bytes.min(self.limits.max_file_bytes);
                let read = match self.mode {
                    Mode::Load => uri::read_bounded(&path, cap).map(|data| {
                        self.hasher.update(&(uri_text.len() as u64).to_le_bytes());
                        self.hasher.update(uri_text.as_bytes());
                        self.hasher.update(&(data.len() as u64).to_le_bytes());
                        self.hasher.update(&data);
                        Blob::Memory(data)
                    }),
                    Mode::Inspect => {
                        self.hasher.update(&(uri_text.len() as u64).to_le_bytes());
                        self.hasher.update(uri_text.as_bytes());
                        source::hash_file(&path, cap, &mut self.hasher).map(|len| Blob::File {
                            path,
                            offset: 0,
                            len,
                        })
                    }
                };
                let blob = match read {
                    Ok(blob) => blob,
                    Err(ReadError::Io(e)) => return Err(refuse(format!("cannot read: {e}"))),
                    Err(ReadError::TooLarge(n)) => {
                        return Err(refuse(format!(
                            "file has {n} bytes, more than the limit of {cap}"
                        )))
                    }
                };
                let relative = PathBuf::from(relative);
                if !self.files.contains(&relative) {
                    self.files.push(relative);
                }
                Ok(blob)
            }
        }
    }

    fn load_buffers(
        &mut self,
        root: &Root,
        mut bin: Option<Blob>,
    ) -> Result<Vec<Blob>, SceneError> {
        let mut buffers = Vec::with_capacity(root.buffers.len());
        let mut total = 0u64;
        for (i, buffer) in root.buffers.iter().enumerate() {
            let declared = buffer.byte_length.0;
            let field = format!("buffers[{i}]");
            if total.saturating_add(declared) > self.limits.max_buffer_bytes {
                return Err(SceneError::Limit {
                    file: self.file.clone(),
                    field: format!("{field}.byteLength"),
                    what: "buffer bytes",
                    value: total.saturating_add(declared),
                    limit: self.limits.max_buffer_bytes,
                });
            }
            let remaining = self.limits.max_buffer_bytes - total;
            let mut data = match &buffer.uri {
                Some(u) => self.fetch(&format!("{field}.uri"), u, remaining)?,
                None => match bin.take() {
                    Some(b) if i == 0 => b,
                    _ => {
                        return Err(self.invalid(
                            field,
                            "has no uri and is not the GLB BIN chunk (only buffers[0] of a .glb can be)",
                        ))
                    }
                },
            };
            if data.len() < declared {
                return Err(self.invalid(
                    format!("{field}.byteLength"),
                    format!(
                        "declares {declared} bytes but the data has only {}",
                        data.len()
                    ),
                ));
            }
            data.truncate(declared);
            total += declared;
            buffers.push(data);
        }
        Ok(buffers)
    }

    /// Fetch every image's bytes (hashing external files) and charge each to the budget
    /// from its PNG/JPEG header. Returns the bytes by image index.
    fn check_images(&mut self, root: &Root, buffers: &[Blob]) -> Result<Vec<Blob>, SceneError> {
        let mut all = Vec::with_capacity(root.images.len());
        for (i, image) in root.images.iter().enumerate() {
            let field = format!("images[{i}]");
            let data = if let Some(u) = &image.uri {
                self.fetch(&format!("{field}.uri"), u, self.limits.max_file_bytes)?
            } else if let Some(view) = image.buffer_view {
                let v = &root.buffer_views[view.value()];
                let buffer = &buffers[v.buffer.value()];
                let start = v.byte_offset.map_or(0, |o| o.0);
                let end = start.saturating_add(v.byte_length.0);
                if end > buffer.len() {
                    return Err(self.invalid(
                        format!("{field}.bufferView"),
                        format!("bufferViews[{}] lies outside its buffer", view.value()),
                    ));
                }
                buffer.range(start, v.byte_length.0)
            } else {
                return Err(self.invalid(field, "has neither uri nor bufferView"));
            };
            match self.image_header(&field, &data)? {
                Some(Ok(info)) => self
                    .budget
                    .charge_image(&field, &info)
                    .map_err(|e| self.exceeded(e))?,
                Some(Err(reason)) => return Err(self.invalid(field, reason)),
                None => {
                    let name = label("image", i, image.name.as_deref());
                    self.warn(format!("{name}: not PNG or JPEG; its size was not checked"));
                }
            }
            all.push(data);
        }
        Ok(all)
    }

    /// The PNG/JPEG header of an image (`None` for other formats), read without the rest.
    fn image_header(
        &self,
        field: &str,
        data: &Blob,
    ) -> Result<Option<Result<ImageInfo, format::HeaderError>>, SceneError> {
        let mut reader = data.reader().map_err(|e| self.read_error(field, e))?;
        let header = format::image_header(&mut reader);
        match reader.take_error() {
            Some(e) => Err(self.read_error(field, e)),
            None => Ok(header),
        }
    }

    /// The background the scene specifies (`scenes[s].extras.tessera_environment`), its
    /// image fetched and charged from its header.
    fn environment_source(
        &mut self,
        root: &Root,
        raw: &Value,
    ) -> Result<Option<EnvSource>, SceneError> {
        if root.scenes.is_empty() {
            return Ok(None);
        }
        let s = root.scene.map_or(0, |s| s.value());
        let extras = raw
            .get("scenes")
            .and_then(|v| v.get(s))
            .and_then(|v| v.get("extras"));
        let Some(spec) = environment::parse_spec(s, extras).map_err(|e| self.field_error(e))?
        else {
            return Ok(None);
        };
        let image = match &spec.image_uri {
            None => None,
            Some(uri) => {
                let field = format!("scenes[{s}].extras.tessera_environment.image");
                let data = self.fetch(&field, uri, self.limits.max_file_bytes)?;
                let mut reader = data.reader().map_err(|e| self.read_error(&field, e))?;
                let header = environment::read_header(&mut reader);
                if let Some(e) = reader.take_error() {
                    return Err(self.read_error(&field, e));
                }
                let (width, height) =
                    header.map_err(|reason| self.invalid(field.clone(), reason))?;
                self.budget
                    .charge_environment(&field, width, height)
                    .map_err(|e| self.exceeded(e))?;
                Some((field, data))
            }
        };
        Ok(Some(EnvSource { spec, image }))
    }

    fn warn_document_features(&mut self, root: &Root) {
        const RENDERED: [&str; 3] = [
            "KHR_lights_punctual",
            "KHR_materials_emissive_strength",
            "KHR_texture_transform",
        ];
        for ext in &root.extensions_used {
            if !RENDERED.contains(&ext.as_str()) {
                self.warn(format!("extension {ext:?} is not supported yet; ignored"));
            }
        }
    }

    fn scene_roots(&mut self, root: &Root) -> Vec<usize> {
        if root.scenes.is_empty() {
            let mut is_child = vec![false; root.nodes.len()];
            for node in &root.nodes {
                for child in node.children.iter().flatten() {
                    is_child[child.value()] = true;
                }
            }
            if !root.nodes.is_empty() {
                self.warn("the file defines no scene; rendering all root nodes".into());
            }
            return (0..root.nodes.len()).filter(|&i| !is_child[i]).collect();
        }
        let chosen = root.scene.map_or(0, |s| s.value());
        if root.scenes.len() > 1 {
            let name = label("scene", chosen, root.scenes[chosen].name.as_deref());
            self.warn(format!(
                "the file has {} scenes; rendering {name} only",
                root.scenes.len()
            ));
        }
        root.scenes[chosen]
            .nodes
            .iter()
            .map(|n| n.value())
            .collect()
    }

    /// Walk the scene graph from `roots`, refusing cycles, nodes with two parents and more
    /// punctual lights than `max_lights`.
    fn scene_graph(&self, root: &Root, roots: &[usize]) -> Result<Graph, SceneError> {
        let mut visited = vec![false; root.nodes.len()];
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        let mut graph = Graph {
            meshes: Vec::new(),
            cameras: Vec::new(),
        };
        let mut lights = 0u64;
        while let Some(idx) = stack.pop() {
            if std::mem::replace(&mut visited[idx], true) {
                return Err(self.invalid(
                    format!("nodes[{idx}]"),
                    "node is reached twice (a cycle or a node with two parents)",
                ));
            }
            let node = &root.nodes[idx];
            if let Some(mesh) = node.mesh {
                graph.meshes.push((idx, mesh.value()));
            }
            if let Some(cam) = node.camera {
                graph.cameras.push((idx, cam.value()));
            }
            let has_light = node
                .extensions
                .as_ref()
                .is_some_and(|e| e.khr_lights_punctual.is_some());
            if has_light {
                lights += 1;
                if lights > self.limits.max_lights {
                    return Err(self.field_error(world::too_many_lights(
                        idx,
                        lights,
                        self.limits.max_lights,
                    )));
                }
            }
            for child in node.children.iter().flatten().rev() {
                stack.push(child.value());
            }
        }
        Ok(graph)
    }

    fn build(&mut self, prepared: Prepared) -> Result<Scene, SceneError> {
        let Prepared {
            root,
            raw,
            buffers,
            images,
            environment,
            roots,
            graph,
        } = prepared;
        let raw = &raw;
        let instances = graph.meshes;
        let buffers = buffers
            .into_iter()
            .map(Blob::into_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.read_error("buffers", e))?;
        let image_bytes = images
            .into_iter()
            .map(Blob::into_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.read_error("images", e))?;
        let default_material = root.materials.len() as u32;
        let mut used_meshes = BTreeSet::new();
        let mut used_materials = BTreeSet::new();
        for &(_, m) in &instances {
            if used_meshes.insert(m) {
                for prim in &root.meshes[m].primitives {
                    used_materials
                        .insert(prim.material.map_or(default_material, |i| i.value() as u32));
                }
            }
        }

        // Images that used materials read, decoded once; which of them a shading lookup
        // reads through mip levels, and whether such a lookup reads them as colour (base
        // colour, slot 0) or as data (how their mip chains average).
        let mut image_users: Vec<Option<String>> = vec![None; root.images.len()];
        let mut colour_mips = vec![false; root.images.len()];
        let mut data_mips = vec![false; root.images.len()];
        for &mi in &used_materials {
            if mi == default_material {
                continue;
            }
            for (slot, info) in material::texture_infos(&root, raw, mi as usize) {
                if let Some(t) = root.textures.get(info.index) {
                    let img = t.source.value();
                    if img < image_users.len() {
                        if image_users[img].is_none() {
                            image_users[img] = Some(info.field.clone());
                        }
                        if material::texture_reads_mips(&root, slot, info.index) {
                            if slot == 0 {
                                colour_mips[img] = true;
                            } else {
                                data_mips[img] = true;
                            }
                        }
                    }
                }
            }
        }
        let mut budget = self.limits.max_texture_pixels;
        let mut decoded = Vec::with_capacity(root.images.len());
        for (i, user) in image_users.iter().enumerate() {
            let Some(user) = user else {
                decoded.push(None);
                continue;
            };
            let img = texture::decode_rgba8(&image_bytes[i], budget).map_err(|reason| {
                self.invalid(format!("images[{i}]"), format!("{reason} (used by {user})"))
            })?;
            budget = budget.saturating_sub(u64::from(img.width) * u64::from(img.height));
            let mut img = img;
            if colour_mips[i] || data_mips[i] {
                let space = if data_mips[i] {
                    texture::MipSpace::Linear
                } else {
                    texture::MipSpace::Srgb
                };
                texture::build_mips(&mut img, space);
            }
            decoded.push(Some(img));
        }
        drop(image_bytes);
        // Each image is packed with its mip chain, if it has one; its placement names the
        // image itself.
        let sizes: Vec<Option<(u32, u32)>> = decoded
            .iter()
            .map(|d| d.as_ref().map(texture::DecodedImage::packed_size))
            .collect();
        let texture::Packing {
            size: page_size,
            pages,
            mut placements,
        } = texture::pack(&sizes);
        for (place, img) in placements.iter_mut().zip(&decoded) {
            if let Some(img) = img {
                place.width = img.width;
                place.height = img.height;
            }
        }
        let textures = TextureSet {
            page_size,
            pages,
            images: decoded,
            placements,
        };

        let mut materials = Vec::with_capacity(root.materials.len() + 1);
        for i in 0..root.materials.len() {
            if !used_materials.contains(&(i as u32)) {
                materials.push(GpuMaterial::gltf_default());
                continue;
            }
            let m = material::build(&root, raw, &textures, i).map_err(|e| self.field_error(e))?;
            let name = label("material", i, root.materials[i].name.as_deref());
            let base = root.materials[i].pbr_metallic_roughness.base_color_factor.0;
            if base.iter().any(|&v| !(0.0..=1.0).contains(&v)) {
                self.warn(format!(
                    "{name}: baseColorFactor {base:?} is outside [0, 1]; clamped"
                ));
            }
            materials.push(m);
        }
        materials.push(GpuMaterial::gltf_default());

        // Primitives of instanced meshes, decoded once.
        let mut prims: Vec<Vec<Option<PrimData>>> = root
            .meshes
            .iter()
            .map(|m| m.primitives.iter().map(|_| None).collect())
            .collect();
        for &m in &used_meshes {
            #[allow(clippy::needless_range_loop)] // `p` names the primitive in messages too.
            for p in 0..root.meshes[m].primitives.len() {
                let mat = root.meshes[m].primitives[p]
                    .material
                    .map_or(default_material, |i| i.value() as u32);
                let normal_tex = &materials[mat as usize].normal_tex;
                let normal_uv = (normal_tex.info[2] != 0).then_some(normal_tex.info[1] >> 24);
                let mut warnings = Vec::new();
                let decoded = mesh::decode(
                    &root,
                    &buffers,
                    m,
                    p,
                    mat,
                    normal_uv,
                    self.limits.max_triangles,
                    &mut |w| warnings.push(w),
                )
                .map_err(|e| self.field_error(e))?;
                for w in warnings {
                    self.warn(w);
                }
                prims[m][p] = decoded;
            }
        }

        let environment = self.decode_environment(environment)?;
        let mut warnings = Vec::new();
        let animations = Animations::parse(&root, &buffers, &mut |w| warnings.push(w))
            .map_err(|e| self.field_error(e))?;
        for w in warnings {
            self.warn(w);
        }
        drop(buffers);

        let data = SceneData {
            root,
            animations,
            roots,
            prims,
            materials,
            textures,
            environment,
            max_lights: self.limits.max_lights,
        };
        let mut warnings = Vec::new();
        let world0 = world::instantiate(&data, 0.0, &mut |w| warnings.push(w))
            .map_err(|e| self.field_error(e))?;
        for w in warnings {
            self.warn(w);
        }
        if world0.tri_v0.is_empty() {
            self.warn("the scene has no triangles".into());
        }
        if world0.cameras.is_empty() {
            self.warn("the scene has no camera; it cannot be rendered".into());
        }
        let env_bytes = data
            .environment
            .image
            .as_ref()
            .map_or(0, |img| (img.rgba.len() * 4 + img.cdf.len() * 4) as u64);
        let stats = SceneStats {
            triangles: world0.tri_v0.len(),
            bvh_nodes: world0.nodes.len(),
            bvh_build_ms: world0.bvh_build_ms,
            load_ms: 0.0,
            geometry_bytes: world0.geometry_bytes(),
            texture_bytes: data.textures.gpu_bytes() + env_bytes,
            texture_count: data.textures.image_count()
                + usize::from(data.environment.image.is_some()),
            animated: !data.animations.is_empty(),
        };
        Ok(Scene {
            name: self.file.clone(),
            content_hash: *self.hasher.finalize().as_bytes(),
            files: std::mem::take(&mut self.files),
            warnings: std::mem::take(&mut self.warnings),
            stats,
            data: Arc::new(data),
            world0: Arc::new(world0),
        })
    }

    /// Decode the environment image (already charged to the budget) and build its
    /// sampling tables.
    fn decode_environment(&self, source: Option<EnvSource>) -> Result<Environment, SceneError> {
        let Some(EnvSource { spec, image }) = source else {
            return Ok(Environment::default());
        };
        let mut env = Environment {
            color: spec.color,
            strength: spec.strength,
            rotation_deg: spec.rotation_deg,
            image: None,
        };
        if let (Some((field, data)), Some(uri)) = (image, spec.image_uri) {
            let bytes = data.into_vec().map_err(|e| self.read_error(&field, e))?;
            let used = self.budget.used();
            let image_pixels = used.texture_pixels - used.environment_pixels;
            let budget = self.limits.max_texture_pixels.saturating_sub(image_pixels);
            let (width, height, rgba) = environment::decode_hdr(&bytes, budget)
                .map_err(|reason| self.invalid(field, reason))?;
            let (dist_w, dist_h, cdf) = environment::distribution(width, height, &rgba);
            env.image = Some(EnvImage {
                uri,
                width,
                height,
                rgba,
                dist_w,
                dist_h,
                cdf,
            });
        }
        Ok(env)
    }
}

/// Read the scene file into `hasher`: whole into memory, except a GLB under inspect,
/// which is streamed through the hasher and left on disk.
fn read_main(
    path: &Path,
    max_bytes: u64,
    mode: Mode,
    hasher: &mut blake3::Hasher,
) -> Result<MainFile, ReadError> {
    if mode == Mode::Inspect {
        let mut file = std::fs::File::open(path).map_err(ReadError::Io)?;
        let len = file.metadata().map_err(ReadError::Io)?.len();
        if len > max_bytes {
            return Err(ReadError::TooLarge(len));
        }
        let mut magic = Vec::with_capacity(4);
        (&mut file)
            .take(4)
            .read_to_end(&mut magic)
            .and_then(|_| file.rewind())
            .map_err(ReadError::Io)?;
        if magic == b"glTF" {
            let len =
                source::hash_stream(file.take(max_bytes + 1), hasher).map_err(ReadError::Io)?;
            if len > max_bytes {
                return Err(ReadError::TooLarge(len));
            }
            return Ok(MainFile::Glb { len });
        }
    }
    let bytes = uri::read_bounded(path, max_bytes)?;
    hasher.update(&bytes);
    Ok(MainFile::Memory(bytes))
}

fn validation_reason(error: &gltf::json::validation::Error) -> &'static str {
    use gltf::json::validation::Error;
    match error {
        Error::IndexOutOfBounds => "index out of bounds",
        Error::Invalid => "invalid value",
        Error::Missing => "missing",
        Error::Oversize => "size exceeds the system's limits",
        Error::Unsupported => "not supported",
    }
}

/// Keep messages readable when a URI is a huge data URI.
fn shorten(uri: &str) -> String {
    const MAX: usize = 120;
    if uri.len() <= MAX {
        return uri.to_string();
    }
    let mut end = MAX;
    while !uri.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &uri[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenes")
            .join(name)
    }

    #[test]
    fn files_lists_buffers_and_the_environment_image() {
        let scene = Scene::load(&sample("env-hdr.gltf"), &LoadOptions::default()).unwrap();
        assert_eq!(
            scene.files(),
            [
                PathBuf::from("env-hdr.bin"),
                PathBuf::from("env-hdr-sky.hdr")
            ]
        );
        let glb = Scene::load(&sample("cornell-box.glb"), &LoadOptions::default()).unwrap();
        assert!(glb.files().is_empty());
    }

    #[test]
    fn files_are_listed_once_and_make_up_the_hash_from_a_copy() {
        let tmp = std::env::temp_dir().join(format!("tessera-files-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("data")).unwrap();
        std::fs::copy(sample("env-hdr.bin"), tmp.join("data/geo.bin")).unwrap();
        std::fs::copy(sample("env-hdr-sky.hdr"), tmp.join("sky.hdr")).unwrap();
        let mut doc: Value =
            serde_json::from_slice(&std::fs::read(sample("env-hdr.gltf")).unwrap()).unwrap();
        doc["buffers"][0]["uri"] = "./data/geo.bin".into();
        let buffer = doc["buffers"][0].clone();
        doc["buffers"].as_array_mut().unwrap().push(buffer);
        doc["scenes"][0]["extras"]["tessera_environment"]["image"] = "sky%2Ehdr".into();
        let entry = tmp.join("scene.gltf");
        std::fs::write(&entry, serde_json::to_vec(&doc).unwrap()).unwrap();
        let scene = Scene::load(&entry, &LoadOptions::default()).unwrap();
        assert_eq!(
            scene.files(),
            [PathBuf::from("data/geo.bin"), PathBuf::from("sky.hdr")]
        );
        // The listed files beside the entry are all the scene needs.
        let copy = tmp.join("copy");
        for f in scene.files() {
            std::fs::create_dir_all(copy.join(f).parent().unwrap()).unwrap();
            std::fs::copy(tmp.join(f), copy.join(f)).unwrap();
        }
        std::fs::copy(&entry, copy.join("scene.gltf")).unwrap();
        let again = Scene::load(&copy.join("scene.gltf"), &LoadOptions::default()).unwrap();
        assert_eq!(again.content_hash(), scene.content_hash());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
