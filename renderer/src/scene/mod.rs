//! Loading an untrusted glTF 2.0 scene: the document, buffers, decoded primitives,
//! materials, textures and environment are kept (shared, read-only); world-space geometry,
//! cameras and lights are instantiated per animation time ([`world`]).
//!
//! Buffers and images are resolved here, never by `gltf::import`: base64 `data:` URIs,
//! the GLB `BIN` chunk, or relative paths that stay inside the scene's own folder. Every
//! size is bounded by [`SceneLimits`], and every refusal names the file and the glTF field.
//! Features the renderer does not draw are listed by name in [`Scene::warnings`].

mod accessor;
mod animation;
pub(crate) mod environment;
mod format;
pub(crate) mod material;
mod math;
mod mesh;
pub(crate) mod texture;
mod uri;
pub(crate) mod world;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use gltf::json::Root;
use serde_json::Value;

use crate::error::SceneError;
use animation::Animations;
use environment::{EnvImage, Environment};
use material::GpuMaterial;
use mesh::semantic_name;
use mesh::PrimData;
use texture::TextureSet;
use uri::{ReadError, UriRefusal, UriTarget};
pub(crate) use world::{CameraDef, Projection, World};

/// Upper bounds on what a scene may contain; exceeding one is an error naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SceneLimits {
    /// Bytes of the scene file itself and of each external file.
    pub max_file_bytes: u64,
    /// Bytes of all buffers together (GLB BIN chunk, data URIs and external files).
    pub max_buffer_bytes: u64,
    /// Triangles after instancing (every node that uses a mesh adds its triangles).
    pub max_triangles: u64,
    /// Pixels of all images together (read from PNG/JPEG headers, never decoded).
    pub max_texture_pixels: u64,
    /// Punctual lights placed in the scene (each is sampled at every path vertex).
    pub max_lights: u64,
}

impl Default for SceneLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 30,
            max_buffer_bytes: 1 << 30,
            max_triangles: 20_000_000,
            max_texture_pixels: 268_435_456,
            max_lights: 1024,
        }
    }
}

/// Options for [`Scene::load`].
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
        let mut scene = Loader::new(path, &opts.limits)?.load()?;
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

struct Loader<'a> {
    file: String,
    folder: PathBuf,
    /// External files read so far, relative to `folder` (see [`Scene::files`]).
    files: Vec<PathBuf>,
    bytes: Vec<u8>,
    limits: &'a SceneLimits,
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
    fn new(path: &Path, limits: &'a SceneLimits) -> Result<Self, SceneError> {
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bytes = match uri::read_bounded(path, limits.max_file_bytes) {
            Ok(b) => b,
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
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        Ok(Self {
            file,
            folder,
            files: Vec::new(),
            bytes,
            limits,
            hasher,
            warnings: Vec::new(),
        })
    }

    fn invalid(&self, field: impl Into<String>, reason: impl Into<String>) -> SceneError {
        SceneError::Invalid {
            file: self.file.clone(),
            field: field.into(),
            reason: reason.into(),
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

    fn load(mut self) -> Result<Scene, SceneError> {
        let bytes = std::mem::take(&mut self.bytes);
        // A file cut inside the 4-byte magic is still a (truncated) GLB.
        let glb_magic =
            bytes.starts_with(b"glTF") || (!bytes.is_empty() && b"glTF".starts_with(&bytes));
        let (json, bin) = if glb_magic {
            let glb = format::parse_glb(&bytes).map_err(|reason| SceneError::NotGltf {
                file: self.file.clone(),
                reason,
            })?;
            (glb.json, glb.bin)
        } else {
            (&bytes[..], None)
        };
        let root = self.parse_json(json)?;
        // The typed document drops what the crate does not model (KHR_texture_transform,
        // scene extras); those are read from the raw JSON.
        let raw: Value = serde_json::from_slice(json).map_err(|e| SceneError::NotGltf {
            file: self.file.clone(),
            reason: format!("invalid JSON: {e}"),
        })?;
        let buffers = self.load_buffers(&root, bin)?;
        let (image_bytes, header_pixels) = self.check_images(&root, &buffers)?;
        self.warn_document_features(&root);
        self.build(root, &raw, buffers, image_bytes, header_pixels)
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

    /// Read the bytes behind a URI field, hashing external files.
    fn fetch(
        &mut self,
        field: &str,
        uri_text: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, SceneError> {
        let refuse = |reason: String| SceneError::Uri {
            file: self.file.clone(),
            field: field.to_string(),
            uri: shorten(uri_text),
            reason,
        };
        match uri::resolve(uri_text, &self.folder, max_bytes) {
            Err(UriRefusal(reason)) => Err(refuse(reason)),
            Ok(UriTarget::Data(data)) => Ok(data),
            Ok(UriTarget::File { path, relative }) => {
                let cap = max_bytes.min(self.limits.max_file_bytes);
                let data = match uri::read_bounded(&path, cap) {
                    Ok(d) => d,
                    Err(ReadError::Io(e)) => return Err(refuse(format!("cannot read: {e}"))),
                    Err(ReadError::TooLarge(n)) => {
                        return Err(refuse(format!(
                            "file has {n} bytes, more than the limit of {cap}"
                        )))
                    }
                };
                self.hasher.update(&(uri_text.len() as u64).to_le_bytes());
                self.hasher.update(uri_text.as_bytes());
                self.hasher.update(&(data.len() as u64).to_le_bytes());
                self.hasher.update(&data);
                let relative = PathBuf::from(relative);
                if !self.files.contains(&relative) {
                    self.files.push(relative);
                }
                Ok(data)
            }
        }
    }

    fn load_buffers(
        &mut self,
        root: &Root,
        bin: Option<&[u8]>,
    ) -> Result<Vec<Vec<u8>>, SceneError> {
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
                None => match bin {
                    Some(b) if i == 0 => b.to_vec(),
                    _ => {
                        return Err(self.invalid(
                            field,
                            "has no uri and is not the GLB BIN chunk (only buffers[0] of a .glb can be)",
                        ))
                    }
                },
            };
            if (data.len() as u64) < declared {
                return Err(self.invalid(
                    format!("{field}.byteLength"),
                    format!(
                        "declares {declared} bytes but the data has only {}",
                        data.len()
                    ),
                ));
            }
            data.truncate(declared as usize);
            total += declared;
            buffers.push(data);
        }
        Ok(buffers)
    }

    /// Read every image's bytes (hashing external files) and check the pixel budget from
    /// PNG/JPEG headers. Returns the bytes by image index and the header pixel total.
    fn check_images(
        &mut self,
        root: &Root,
        buffers: &[Vec<u8>],
    ) -> Result<(Vec<Vec<u8>>, u64), SceneError> {
        let mut total_pixels = 0u64;
        let mut all = Vec::with_capacity(root.images.len());
        for (i, image) in root.images.iter().enumerate() {
            let field = format!("images[{i}]");
            let data: Vec<u8> = if let Some(u) = &image.uri {
                self.fetch(&format!("{field}.uri"), u, self.limits.max_file_bytes)?
            } else if let Some(view) = image.buffer_view {
                let v = &root.buffer_views[view.value()];
                let buffer = &buffers[v.buffer.value()];
                let start = v.byte_offset.map_or(0, |o| o.0);
                let end = start.saturating_add(v.byte_length.0);
                if end > buffer.len() as u64 {
                    return Err(self.invalid(
                        format!("{field}.bufferView"),
                        format!("bufferViews[{}] lies outside its buffer", view.value()),
                    ));
                }
                buffer[start as usize..end as usize].to_vec()
            } else {
                return Err(self.invalid(field, "has neither uri nor bufferView"));
            };
            match format::image_size(&data) {
                Some(Ok((w, h))) => {
                    total_pixels = total_pixels.saturating_add(u64::from(w) * u64::from(h));
                    if total_pixels > self.limits.max_texture_pixels {
                        return Err(SceneError::Limit {
                            file: self.file.clone(),
                            field,
                            what: "texture pixels",
                            value: total_pixels,
                            limit: self.limits.max_texture_pixels,
                        });
                    }
                }
                Some(Err(reason)) => return Err(self.invalid(field, reason)),
                None => {
                    let name = label("image", i, image.name.as_deref());
                    self.warn(format!("{name}: not PNG or JPEG; its size was not checked"));
                }
            }
            all.push(data);
        }
        Ok((all, total_pixels))
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

    /// Mesh instances of the scene graph as (node, mesh), without transforms (the graph's
    /// shape does not change with time).
    fn mesh_instances(
        &self,
        root: &Root,
        roots: &[usize],
    ) -> Result<Vec<(usize, usize)>, SceneError> {
        let mut visited = vec![false; root.nodes.len()];
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        let mut out = Vec::new();
        while let Some(idx) = stack.pop() {
            if std::mem::replace(&mut visited[idx], true) {
                return Err(self.invalid(
                    format!("nodes[{idx}]"),
                    "node is reached twice (a cycle or a node with two parents)",
                ));
            }
            let node = &root.nodes[idx];
            if let Some(mesh) = node.mesh {
                out.push((idx, mesh.value()));
            }
            for child in node.children.iter().flatten().rev() {
                stack.push(child.value());
            }
        }
        Ok(out)
    }

    fn build(
        &mut self,
        root: Root,
        raw: &Value,
        buffers: Vec<Vec<u8>>,
        image_bytes: Vec<Vec<u8>>,
        header_pixels: u64,
    ) -> Result<Scene, SceneError> {
        let roots = self.scene_roots(&root);
        let instances = self.mesh_instances(&root, &roots)?;
        self.check_triangle_budget(&root, &instances)?;
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

        // Images that used materials read, decoded once.
        let mut image_users: Vec<Option<String>> = vec![None; root.images.len()];
        for &mi in &used_materials {
            if mi == default_material {
                continue;
            }
            for (_, info) in material::texture_infos(&root, raw, mi as usize) {
                if let Some(t) = root.textures.get(info.index) {
                    let img = t.source.value();
                    if img < image_users.len() && image_users[img].is_none() {
                        image_users[img] = Some(info.field.clone());
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
            decoded.push(Some(img));
        }
        drop(image_bytes);
        let sizes: Vec<Option<(u32, u32)>> = decoded
            .iter()
            .map(|d| d.as_ref().map(|d| (d.width, d.height)))
            .collect();
        let (page_side, pages, placements) = texture::pack(&sizes);
        let textures = TextureSet {
            page_side,
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

        let environment = self.environment(&root, raw, header_pixels)?;
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

    /// The background of the rendered scene (`scenes[s].extras.tessera_environment`).
    fn environment(
        &mut self,
        root: &Root,
        raw: &Value,
        header_pixels: u64,
    ) -> Result<Environment, SceneError> {
        if root.scenes.is_empty() {
            return Ok(Environment::default());
        }
        let s = root.scene.map_or(0, |s| s.value());
        let extras = raw
            .get("scenes")
            .and_then(|v| v.get(s))
            .and_then(|v| v.get("extras"));
        let Some(spec) = environment::parse_spec(s, extras).map_err(|e| self.field_error(e))?
        else {
            return Ok(Environment::default());
        };
        let mut env = Environment {
            color: spec.color,
            strength: spec.strength,
            rotation_deg: spec.rotation_deg,
            image: None,
        };
        if let Some(uri) = spec.image_uri {
            let field = format!("scenes[{s}].extras.tessera_environment.image");
            let bytes = self.fetch(&field, &uri, self.limits.max_file_bytes)?;
            let budget = self.limits.max_texture_pixels.saturating_sub(header_pixels);
            let (width, height, rgba) = environment::decode_hdr(&bytes, budget)
                .map_err(|reason| self.invalid(field.clone(), reason))?;
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

    fn check_triangle_budget(
        &self,
        root: &Root,
        instances: &[(usize, usize)],
    ) -> Result<(), SceneError> {
        let mut total = 0u64;
        for &(_, mesh_idx) in instances {
            for (p, prim) in root.meshes[mesh_idx].primitives.iter().enumerate() {
                let vertices = match prim.indices {
                    Some(i) => root.accessors[i.value()].count.0,
                    None => prim
                        .attributes
                        .get(&Checked::Valid(Semantic::Positions))
                        .map_or(0, |i| root.accessors[i.value()].count.0),
                };
                total = total.saturating_add(match prim.mode {
                    Checked::Valid(Mode::Triangles) => vertices / 3,
                    Checked::Valid(Mode::TriangleStrip | Mode::TriangleFan) => {
                        vertices.saturating_sub(2)
                    }
                    _ => 0,
                });
                if total > self.limits.max_triangles {
                    return Err(SceneError::Limit {
                        file: self.file.clone(),
                        field: format!("meshes[{mesh_idx}].primitives[{p}]"),
                        what: "triangles (after instancing)",
                        value: total,
                        limit: self.limits.max_triangles,
                    });
                }
            }
        }
        Ok(())
    }
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
