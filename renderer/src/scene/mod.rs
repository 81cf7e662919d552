//! Loading an untrusted glTF 2.0 scene into triangles, materials, lights, cameras and a BVH.
//!
//! Buffers and images are resolved here, never by `gltf::import`: base64 `data:` URIs,
//! the GLB `BIN` chunk, or relative paths that stay inside the scene's own folder. Every
//! size is bounded by [`SceneLimits`], and every refusal names the file and the glTF field.
//! Features the renderer does not draw yet are listed by name in [`Scene::warnings`].

mod accessor;
mod format;
mod math;
mod uri;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use bytemuck::{Pod, Zeroable};
use gltf::json::accessor::{ComponentType, Type};
use gltf::json::extensions::scene::khr_lights_punctual as khr_lights;
use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use gltf::json::Root;

use crate::bvh::{self, BvhNode};
use crate::error::SceneError;
use math::Mat4;
use uri::{ReadError, UriRefusal, UriTarget};

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

/// A perspective camera placed in the world.
#[derive(Clone, Debug)]
pub(crate) struct CameraDef {
    pub name: String,
    pub origin: [f64; 3],
    pub right: [f64; 3],
    pub up: [f64; 3],
    pub forward: [f64; 3],
    /// tan(yfov / 2).
    pub tan_half_fov: f64,
}

/// Triangle positions as the GPU intersects them (BVH order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuTriGeom {
    pub v0: [f32; 4],
    pub e1: [f32; 4],
    pub e2: [f32; 4],
}

/// Triangle shading data (BVH order): vertex normals; `n0[3]` = material index bits;
/// `n1[3]` = emitter pick probability / area (0 for non-emitters).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuTriShade {
    pub n0: [f32; 4],
    pub n1: [f32; 4],
    pub n2: [f32; 4],
}

/// A Lambertian material with emission.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuMaterial {
    pub base_color: [f32; 4],
    pub emission: [f32; 4],
}

/// An emissive triangle and the CDF value at its end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuEmitter {
    pub triangle: u32,
    pub cdf: f32,
}

/// A punctual light (see the shader's `Light`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuLight {
    pub position: [f32; 4],
    pub direction: [f32; 4],
    pub intensity: [f32; 4],
    pub cone: [f32; 4],
}

pub(crate) const LIGHT_POINT: u32 = 0;
pub(crate) const LIGHT_SPOT: u32 = 1;
pub(crate) const LIGHT_DIRECTIONAL: u32 = 2;

/// Everything the GPU needs, ready to upload.
pub(crate) struct GpuScene {
    pub nodes: Vec<BvhNode>,
    pub tri_geom: Vec<GpuTriGeom>,
    pub tri_shade: Vec<GpuTriShade>,
    pub materials: Vec<GpuMaterial>,
    pub emitters: Vec<GpuEmitter>,
    pub lights: Vec<GpuLight>,
}

/// A loaded scene: world-space triangles in a BVH, materials, lights and cameras.
pub struct Scene {
    name: String,
    content_hash: [u8; 32],
    warnings: Vec<String>,
    cameras: Vec<CameraDef>,
    emissive_triangles: usize,
    pub(crate) gpu: GpuScene,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("name", &self.name)
            .field("triangles", &self.triangle_count())
            .field("emissive_triangles", &self.emissive_triangles)
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
        let scene = Loader::new(path, &opts.limits)?.load()?;
        tracing::info!(
            scene = %scene.name,
            triangles = scene.triangle_count(),
            emissive = scene.emissive_triangles,
            lights = scene.light_count(),
            warnings = scene.warnings.len(),
            ms = started.elapsed().as_millis() as u64,
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
    /// (buffers by index, then images by index): the URI's length as u64 little-endian, the
    /// URI, the data's length as u64 little-endian, and the data.
    pub fn content_hash(&self) -> [u8; 32] {
        self.content_hash
    }

    /// Triangles after instancing.
    pub fn triangle_count(&self) -> usize {
        self.gpu.tri_geom.len()
    }

    /// Triangles that emit light (and have a non-zero area).
    pub fn emissive_triangle_count(&self) -> usize {
        self.emissive_triangles
    }

    /// Punctual (`KHR_lights_punctual`) lights placed in the scene.
    pub fn light_count(&self) -> usize {
        self.gpu.lights.len()
    }

    /// Names of the perspective cameras in scene order (the first one is the default).
    /// An unnamed camera is called by its node's name, else `cameras[i]`.
    pub fn camera_names(&self) -> Vec<String> {
        self.cameras.iter().map(|c| c.name.clone()).collect()
    }

    pub(crate) fn cameras(&self) -> &[CameraDef] {
        &self.cameras
    }
}

/// A triangle in world space before BVH ordering.
struct CpuTri {
    p: [[f32; 3]; 3],
    n: [[f32; 3]; 3],
    material: u32,
}

/// Decoded data of one mesh primitive (shared by all nodes that instance it).
struct PrimData {
    positions: Vec<[f64; 3]>,
    normals: Option<Vec<[f64; 3]>>,
    triangles: Vec<[u32; 3]>,
}

struct Loader<'a> {
    file: String,
    folder: std::path::PathBuf,
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

fn finite3(v: [f32; 3]) -> bool {
    v.iter().all(|x| x.is_finite())
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
        let buffers = self.load_buffers(&root, bin)?;
        self.check_images(&root, &buffers)?;
        self.warn_document_features(&root);
        let scene = self.build(&root, &buffers)?;
        Ok(scene)
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
            Ok(UriTarget::File(path)) => {
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

    fn check_images(&mut self, root: &Root, buffers: &[Vec<u8>]) -> Result<(), SceneError> {
        let mut total_pixels = 0u64;
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
        }
        Ok(())
    }

    fn warn_document_features(&mut self, root: &Root) {
        const RENDERED: [&str; 2] = ["KHR_lights_punctual", "KHR_materials_emissive_strength"];
        for ext in &root.extensions_used {
            if !RENDERED.contains(&ext.as_str()) {
                self.warn(format!("extension {ext:?} is not supported yet; ignored"));
            }
        }
        for (i, anim) in root.animations.iter().enumerate() {
            let name = label("animation", i, anim.name.as_deref());
            self.warn(format!(
                "{name}: animations are not supported yet; rendering the rest pose"
            ));
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

    fn node_matrix(&self, root: &Root, idx: usize) -> Result<Mat4, SceneError> {
        let node = &root.nodes[idx];
        let m = if let Some(matrix) = &node.matrix {
            math::from_columns(matrix)
        } else {
            let t = node.translation.unwrap_or([0.0; 3]);
            let r = node.rotation.map_or([0.0, 0.0, 0.0, 1.0], |q| q.0);
            let s = node.scale.unwrap_or([1.0; 3]);
            math::from_trs(t, r, s).ok_or_else(|| {
                self.invalid(format!("nodes[{idx}].rotation"), "zero-length quaternion")
            })?
        };
        if !math::is_finite(&m) {
            return Err(self.invalid(format!("nodes[{idx}]"), "transform has a non-finite value"));
        }
        Ok(m)
    }

    fn build(&mut self, root: &Root, buffers: &[Vec<u8>]) -> Result<Scene, SceneError> {
        // Walk the node tree depth first (children in array order) with world matrices.
        let roots = self.scene_roots(root);
        let mut visited = vec![false; root.nodes.len()];
        let mut stack: Vec<(usize, Mat4)> =
            roots.iter().rev().map(|&n| (n, math::IDENTITY)).collect();
        let mut mesh_instances: Vec<(usize, usize, Mat4)> = Vec::new();
        let mut cameras = Vec::new();
        let mut lights = Vec::new();
        while let Some((idx, parent)) = stack.pop() {
            if std::mem::replace(&mut visited[idx], true) {
                return Err(self.invalid(
                    format!("nodes[{idx}]"),
                    "node is reached twice (a cycle or a node with two parents)",
                ));
            }
            let world = math::mul(&parent, &self.node_matrix(root, idx)?);
            let node = &root.nodes[idx];
            let node_name = label("node", idx, node.name.as_deref());
            if node.skin.is_some() {
                self.warn(format!(
                    "{node_name}: skins are not supported yet; using the bind pose"
                ));
            }
            if let Some(mesh) = node.mesh {
                mesh_instances.push((idx, mesh.value(), world));
            }
            if let Some(cam) = node.camera {
                if let Some(c) = self.camera(root, cam.value(), idx, &world)? {
                    cameras.push(c);
                }
            }
            let light_ref = node
                .extensions
                .as_ref()
                .and_then(|e| e.khr_lights_punctual.as_ref());
            if let Some(light) = light_ref {
                lights.push(self.light(root, light.light.value(), idx, &world)?);
                if lights.len() as u64 > self.limits.max_lights {
                    return Err(SceneError::Limit {
                        file: self.file.clone(),
                        field: format!("nodes[{idx}].extensions.KHR_lights_punctual"),
                        what: "punctual lights",
                        value: lights.len() as u64,
                        limit: self.limits.max_lights,
                    });
                }
            }
            for child in node.children.iter().flatten().rev() {
                stack.push((child.value(), world));
            }
        }

        self.check_triangle_budget(root, &mesh_instances)?;
        let (tris, used_materials) = self.triangles(root, buffers, &mesh_instances)?;
        let materials = self.materials(root, &used_materials)?;
        if tris.is_empty() {
            self.warn("the scene has no triangles".into());
        }
        if cameras.is_empty() {
            self.warn("the scene has no perspective camera; it cannot be rendered".into());
        }

        let started = Instant::now();
        let positions: Vec<[[f32; 3]; 3]> = tris.iter().map(|t| t.p).collect();
        let built = bvh::build(&positions);
        tracing::info!(
            scene = %self.file,
            triangles = tris.len(),
            nodes = built.nodes.len(),
            ms = started.elapsed().as_millis() as u64,
            "bvh built"
        );

        // Emitters: power = luminance(emission) × area, summed in f64 in BVH order.
        let mut emitter_power = Vec::new();
        let mut pdf_area = vec![0.0f32; tris.len()];
        for (new_idx, &old) in built.order.iter().enumerate() {
            let t = &tris[old as usize];
            let e = materials[t.material as usize].emission;
            // A double-sided emitter radiates twice the power of a one-sided one.
            let sides = if e[3] > 0.0 { 2.0 } else { 1.0 };
            let lum = sides
                * (0.2126 * f64::from(e[0]) + 0.7152 * f64::from(e[1]) + 0.0722 * f64::from(e[2]));
            if lum <= 0.0 {
                continue;
            }
            let p = t.p.map(|v| v.map(f64::from));
            let area =
                0.5 * math::length(math::cross(math::sub(p[1], p[0]), math::sub(p[2], p[0])));
            if area > 0.0 && area.is_finite() {
                emitter_power.push((new_idx, lum, area));
            }
        }
        let total_power: f64 = emitter_power.iter().map(|&(_, lum, area)| lum * area).sum();
        let mut emitters = Vec::with_capacity(emitter_power.len());
        let mut running = 0.0f64;
        for (k, &(new_idx, lum, area)) in emitter_power.iter().enumerate() {
            running += lum * area;
            let cdf = if k + 1 == emitter_power.len() {
                1.0
            } else {
                (running / total_power) as f32
            };
            emitters.push(GpuEmitter {
                triangle: new_idx as u32,
                cdf,
            });
            // pick probability / area = lum·area / total / area.
            pdf_area[new_idx] = (lum / total_power) as f32;
        }

        let mut tri_geom = Vec::with_capacity(tris.len());
        let mut tri_shade = Vec::with_capacity(tris.len());
        for (new_idx, &old) in built.order.iter().enumerate() {
            let t = &tris[old as usize];
            let [a, b, c] = t.p;
            let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            tri_geom.push(GpuTriGeom {
                v0: [a[0], a[1], a[2], 0.0],
                e1: [e1[0], e1[1], e1[2], 0.0],
                e2: [e2[0], e2[1], e2[2], 0.0],
            });
            let [n0, n1, n2] = t.n;
            tri_shade.push(GpuTriShade {
                n0: [n0[0], n0[1], n0[2], f32::from_bits(t.material)],
                n1: [n1[0], n1[1], n1[2], pdf_area[new_idx]],
                n2: [n2[0], n2[1], n2[2], 0.0],
            });
        }

        let name = self.file.clone();
        let content_hash = *self.hasher.finalize().as_bytes();
        Ok(Scene {
            name,
            content_hash,
            warnings: std::mem::take(&mut self.warnings),
            cameras,
            emissive_triangles: emitters.len(),
            gpu: GpuScene {
                nodes: built.nodes,
                tri_geom,
                tri_shade,
                materials,
                emitters,
                lights,
            },
        })
    }

    fn camera(
        &mut self,
        root: &Root,
        cam_idx: usize,
        node_idx: usize,
        world: &Mat4,
    ) -> Result<Option<CameraDef>, SceneError> {
        let cam = &root.cameras[cam_idx];
        let node = &root.nodes[node_idx];
        let name = cam
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| node.name.clone().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| format!("cameras[{cam_idx}]"));
        let Some(p) = (match cam.type_ {
            Checked::Valid(gltf::json::camera::Type::Perspective) => cam.perspective.as_ref(),
            _ => None,
        }) else {
            self.warn(format!(
                "camera {name:?}: orthographic cameras are not supported yet; skipped"
            ));
            return Ok(None);
        };
        let yfov = f64::from(p.yfov);
        if !(yfov > 0.0 && yfov < std::f64::consts::PI) {
            return Err(self.invalid(
                format!("cameras[{cam_idx}].perspective.yfov"),
                format!("{} is not in (0, pi)", p.yfov),
            ));
        }
        let basis = |v: [f64; 3]| math::normalize(math::vector(world, v));
        let (Some(right), Some(up), Some(forward)) = (
            basis([1.0, 0.0, 0.0]),
            basis([0.0, 1.0, 0.0]),
            basis([0.0, 0.0, -1.0]),
        ) else {
            return Err(self.invalid(
                format!("nodes[{node_idx}]"),
                "camera transform is degenerate",
            ));
        };
        Ok(Some(CameraDef {
            name,
            origin: math::point(world, [0.0; 3]),
            right,
            up,
            forward,
            tan_half_fov: (yfov / 2.0).tan(),
        }))
    }

    fn light(
        &mut self,
        root: &Root,
        light_idx: usize,
        node_idx: usize,
        world: &Mat4,
    ) -> Result<GpuLight, SceneError> {
        let field = format!("extensions.KHR_lights_punctual.lights[{light_idx}]");
        let lights = root
            .extensions
            .as_ref()
            .and_then(|e| e.khr_lights_punctual.as_ref())
            .map_or(&[][..], |l| &l.lights[..]);
        let light = lights.get(light_idx).ok_or_else(|| {
            self.invalid(
                format!("nodes[{node_idx}].extensions.KHR_lights_punctual.light"),
                format!("light {light_idx} does not exist"),
            )
        })?;
        if !finite3(light.color) || light.color.iter().any(|&c| c < 0.0) {
            return Err(self.invalid(
                format!("{field}.color"),
                format!("{:?} is not a non-negative colour", light.color),
            ));
        }
        if !(light.intensity.is_finite() && light.intensity >= 0.0) {
            return Err(self.invalid(
                format!("{field}.intensity"),
                format!("{} is not a non-negative number", light.intensity),
            ));
        }
        let range = match light.range {
            None => 0.0,
            Some(r) if r.is_finite() && r > 0.0 => r,
            Some(r) => {
                return Err(self.invalid(
                    format!("{field}.range"),
                    format!("{r} is not a positive number"),
                ))
            }
        };
        let intensity = light.color.map(|c| c * light.intensity);
        let position = math::to_f32(math::point(world, [0.0; 3]));
        let direction =
            math::normalize(math::vector(world, [0.0, 0.0, -1.0])).ok_or_else(|| {
                self.invalid(
                    format!("nodes[{node_idx}]"),
                    "light transform is degenerate",
                )
            })?;
        let (kind, cone) = match light.type_ {
            Checked::Valid(khr_lights::Type::Point) => (LIGHT_POINT, [0.0; 4]),
            Checked::Valid(khr_lights::Type::Directional) => (LIGHT_DIRECTIONAL, [0.0; 4]),
            Checked::Valid(khr_lights::Type::Spot) => {
                let spot = light.spot.as_ref().ok_or_else(|| {
                    self.invalid(format!("{field}.spot"), "missing for a spot light")
                })?;
                let (inner, outer) = (
                    f64::from(spot.inner_cone_angle),
                    f64::from(spot.outer_cone_angle),
                );
                if !(inner >= 0.0 && inner < outer && outer <= std::f64::consts::FRAC_PI_2) {
                    return Err(self.invalid(
                        format!("{field}.spot"),
                        format!("cone angles inner {inner} / outer {outer} must satisfy 0 <= inner < outer <= pi/2"),
                    ));
                }
                let scale = 1.0 / (inner.cos() - outer.cos()).max(0.001);
                let offset = -outer.cos() * scale;
                (LIGHT_SPOT, [scale as f32, offset as f32, 0.0, 0.0])
            }
            Checked::Invalid => {
                return Err(self.invalid(format!("{field}.type"), "unknown light type"))
            }
        };
        Ok(GpuLight {
            position: [position[0], position[1], position[2], f32::from_bits(kind)],
            direction: [
                direction[0] as f32,
                direction[1] as f32,
                direction[2] as f32,
                range,
            ],
            intensity: [intensity[0], intensity[1], intensity[2], 0.0],
            cone,
        })
    }

    /// Count triangles from accessor counts before decoding anything.
    fn check_triangle_budget(
        &self,
        root: &Root,
        instances: &[(usize, usize, Mat4)],
    ) -> Result<(), SceneError> {
        let mut total = 0u64;
        for &(_, mesh_idx, _) in instances {
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

    fn primitive_data(
        &mut self,
        root: &Root,
        buffers: &[Vec<u8>],
        m: usize,
        p: usize,
    ) -> Result<Option<PrimData>, SceneError> {
        let mesh = &root.meshes[m];
        let prim = &mesh.primitives[p];
        let where_ = format!("{} primitive {p}", label("mesh", m, mesh.name.as_deref()));
        let field = format!("meshes[{m}].primitives[{p}]");
        let mode = match prim.mode {
            Checked::Valid(mode) => mode,
            Checked::Invalid => return Err(self.invalid(format!("{field}.mode"), "unknown mode")),
        };
        if !matches!(
            mode,
            Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan
        ) {
            self.warn(format!(
                "{where_}: mode {mode:?} is not supported (only triangles); skipped"
            ));
            return Ok(None);
        }
        if prim.targets.as_ref().is_some_and(|t| !t.is_empty()) {
            self.warn(format!(
                "{where_}: morph targets are not supported yet; using the base shape"
            ));
        }
        for semantic in prim.attributes.keys() {
            if let Checked::Valid(
                Semantic::Colors(_) | Semantic::Joints(_) | Semantic::Weights(_),
            ) = semantic
            {
                self.warn(format!(
                    "{where_}: attribute {} is not supported yet; ignored",
                    semantic_name(semantic)
                ));
            }
        }
        let max = self.limits.max_triangles.saturating_mul(3);
        let vec3 = |idx: usize, name: &str| -> Result<Vec<[f64; 3]>, SceneError> {
            let e = accessor::read(root, buffers, idx, Type::Vec3, &[ComponentType::F32], max)
                .map_err(|reason| self.invalid(format!("{field}.attributes.{name}"), reason))?;
            let out: Vec<[f64; 3]> = e
                .values
                .chunks_exact(e.components)
                .map(|c| [c[0], c[1], c[2]])
                .collect();
            if out.iter().flatten().any(|v| !v.is_finite()) {
                return Err(self.invalid(
                    format!("{field}.attributes.{name}"),
                    "has a non-finite value",
                ));
            }
            Ok(out)
        };
        let Some(pos_idx) = prim.attributes.get(&Checked::Valid(Semantic::Positions)) else {
            return Err(self.invalid(format!("{field}.attributes.POSITION"), "missing"));
        };
        let positions = vec3(pos_idx.value(), "POSITION")?;
        let normals = match prim.attributes.get(&Checked::Valid(Semantic::Normals)) {
            Some(idx) => {
                let n = vec3(idx.value(), "NORMAL")?;
                if n.len() != positions.len() {
                    return Err(self.invalid(
                        format!("{field}.attributes.NORMAL"),
                        format!(
                            "has {} elements but POSITION has {}",
                            n.len(),
                            positions.len()
                        ),
                    ));
                }
                Some(n)
            }
            None => None,
        };
        let indices: Vec<u32> = match prim.indices {
            Some(idx) => {
                let e = accessor::read(
                    root,
                    buffers,
                    idx.value(),
                    Type::Scalar,
                    &[ComponentType::U8, ComponentType::U16, ComponentType::U32],
                    max,
                )
                .map_err(|reason| self.invalid(format!("{field}.indices"), reason))?;
                let mut out = Vec::with_capacity(e.values.len());
                for (k, &v) in e.values.iter().enumerate() {
                    if v >= positions.len() as f64 {
                        return Err(self.invalid(
                            format!("{field}.indices"),
                            format!(
                                "index {k} = {v} is out of range ({} vertices)",
                                positions.len()
                            ),
                        ));
                    }
                    out.push(v as u32);
                }
                out
            }
            None => (0..positions.len() as u32).collect(),
        };
        let n = indices.len();
        let triangles: Vec<[u32; 3]> = match mode {
            Mode::Triangles => {
                if n % 3 != 0 {
                    self.warn(format!(
                        "{where_}: {} trailing vertices do not form a triangle; ignored",
                        n % 3
                    ));
                }
                indices
                    .chunks_exact(3)
                    .map(|c| [c[0], c[1], c[2]])
                    .collect()
            }
            Mode::TriangleStrip => (0..n.saturating_sub(2))
                .map(|i| {
                    if i % 2 == 0 {
                        [indices[i], indices[i + 1], indices[i + 2]]
                    } else {
                        [indices[i + 1], indices[i], indices[i + 2]]
                    }
                })
                .collect(),
            _ => (1..n.saturating_sub(1))
                .map(|i| [indices[i], indices[i + 1], indices[0]])
                .collect(),
        };
        Ok(Some(PrimData {
            positions,
            normals,
            triangles,
        }))
    }

    fn triangles(
        &mut self,
        root: &Root,
        buffers: &[Vec<u8>],
        instances: &[(usize, usize, Mat4)],
    ) -> Result<(Vec<CpuTri>, Vec<usize>), SceneError> {
        let default_material = root.materials.len() as u32;
        let mut cache: HashMap<(usize, usize), Option<std::rc::Rc<PrimData>>> = HashMap::new();
        let mut tris = Vec::new();
        let mut used = BTreeSet::new();
        for &(node_idx, m, ref world) in instances {
            let normal_m = math::normal_matrix(world);
            // A mirroring transform reverses the winding (glTF: the front face flips too),
            // so two vertices are swapped to keep cross(e1, e2) on the front side.
            let mirrored = math::determinant3(world) < 0.0;
            for (p, prim) in root.meshes[m].primitives.iter().enumerate() {
                let data = match cache.get(&(m, p)) {
                    Some(d) => d.clone(),
                    None => {
                        let d = self
                            .primitive_data(root, buffers, m, p)?
                            .map(std::rc::Rc::new);
                        cache.insert((m, p), d.clone());
                        d
                    }
                };
                let Some(data) = data else { continue };
                let material = prim.material.map_or(default_material, |i| i.value() as u32);
                used.insert(material as usize);
                let world_pos: Vec<[f32; 3]> = data
                    .positions
                    .iter()
                    .map(|&v| math::to_f32(math::point(world, v)))
                    .collect();
                if world_pos.iter().any(|v| !finite3(*v)) {
                    return Err(self.invalid(
                        format!("meshes[{m}].primitives[{p}].attributes.POSITION"),
                        format!(
                            "a position is not finite after the transform of nodes[{node_idx}]"
                        ),
                    ));
                }
                let world_nrm: Option<Vec<Option<[f32; 3]>>> = data.normals.as_ref().map(|ns| {
                    ns.iter()
                        .map(|&n| math::normalize(math::mul3(&normal_m, n)).map(math::to_f32))
                        .collect()
                });
                for tri in &data.triangles {
                    let tri = if mirrored {
                        [tri[0], tri[2], tri[1]]
                    } else {
                        *tri
                    };
                    let p3 = tri.map(|i| world_pos[i as usize]);
                    let pf = p3.map(|v| v.map(f64::from));
                    let face = math::normalize(math::cross(
                        math::sub(pf[1], pf[0]),
                        math::sub(pf[2], pf[0]),
                    ))
                    .map_or([0.0, 0.0, 1.0], math::to_f32);
                    let n3 = match &world_nrm {
                        Some(ns) => tri.map(|i| ns[i as usize].unwrap_or(face)),
                        None => [face; 3],
                    };
                    tris.push(CpuTri {
                        p: p3,
                        n: n3,
                        material,
                    });
                }
            }
        }
        Ok((tris, used.into_iter().collect()))
    }

    /// GPU materials for every material index (plus the default material at the end);
    /// warnings only for materials that instanced primitives use.
    fn materials(&mut self, root: &Root, used: &[usize]) -> Result<Vec<GpuMaterial>, SceneError> {
        let mut out = Vec::with_capacity(root.materials.len() + 1);
        for (i, mat) in root.materials.iter().enumerate() {
            let field = format!("materials[{i}]");
            let pbr = &mat.pbr_metallic_roughness;
            let base = pbr.base_color_factor.0;
            if base.iter().any(|v| !v.is_finite()) {
                return Err(self.invalid(
                    format!("{field}.pbrMetallicRoughness.baseColorFactor"),
                    format!("{base:?} is not finite"),
                ));
            }
            let emissive = mat.emissive_factor.0;
            if !finite3(emissive) || emissive.iter().any(|&v| v < 0.0) {
                return Err(self.invalid(
                    format!("{field}.emissiveFactor"),
                    format!("{emissive:?} is not a non-negative colour"),
                ));
            }
            let strength = mat
                .extensions
                .as_ref()
                .and_then(|e| e.emissive_strength.as_ref())
                .map_or(1.0, |s| s.emissive_strength.0);
            if !(strength.is_finite() && strength >= 0.0) {
                return Err(self.invalid(
                    format!("{field}.extensions.KHR_materials_emissive_strength.emissiveStrength"),
                    format!("{strength} is not a non-negative number"),
                ));
            }
            let emission = emissive.map(|e| e * strength);
            if emission.iter().any(|v| !v.is_finite()) {
                return Err(
                    self.invalid(format!("{field}.emissiveFactor"), "emission overflows f32")
                );
            }
            out.push(GpuMaterial {
                base_color: [
                    base[0].clamp(0.0, 1.0),
                    base[1].clamp(0.0, 1.0),
                    base[2].clamp(0.0, 1.0),
                    1.0,
                ],
                // w = 1 for a double-sided material (both faces emit).
                emission: [
                    emission[0],
                    emission[1],
                    emission[2],
                    f32::from(u8::from(mat.double_sided)),
                ],
            });
            if used.binary_search(&i).is_err() {
                continue;
            }
            let name = label("material", i, mat.name.as_deref());
            if base[..3].iter().any(|&v| !(0.0..=1.0).contains(&v)) {
                self.warn(format!(
                    "{name}: baseColorFactor {base:?} is outside [0, 1]; clamped"
                ));
            }
            let features = [
                (
                    pbr.base_color_texture.is_some(),
                    "baseColorTexture is not supported yet; using baseColorFactor",
                ),
                (
                    pbr.metallic_roughness_texture.is_some(),
                    "metallicRoughnessTexture is not supported yet; ignored",
                ),
                (
                    mat.normal_texture.is_some(),
                    "normalTexture is not supported yet; using vertex normals",
                ),
                (
                    mat.occlusion_texture.is_some(),
                    "occlusionTexture is not supported yet; ignored",
                ),
                (
                    mat.emissive_texture.is_some(),
                    "emissiveTexture is not supported yet; using emissiveFactor",
                ),
            ];
            for (present, message) in features {
                if present {
                    self.warn(format!("{name}: {message}"));
                }
            }
            if pbr.metallic_factor.0 != 0.0 {
                self.warn(format!(
                    "{name}: metallicFactor {} is not supported yet; rendered as a diffuse (Lambertian) surface",
                    pbr.metallic_factor.0
                ));
            }
            if pbr.roughness_factor.0 != 1.0 {
                self.warn(format!(
                    "{name}: roughnessFactor {} is not supported yet; rendered fully rough",
                    pbr.roughness_factor.0
                ));
            }
            match mat.alpha_mode {
                Checked::Valid(gltf::json::material::AlphaMode::Opaque) => {}
                Checked::Valid(mode) => self.warn(format!(
                    "{name}: alphaMode {mode:?} is not supported yet; rendered opaque"
                )),
                Checked::Invalid => {}
            }
        }
        // The glTF default material, as a white diffuse surface.
        out.push(GpuMaterial {
            base_color: [1.0, 1.0, 1.0, 1.0],
            emission: [0.0; 4],
        });
        Ok(out)
    }
}

fn semantic_name(semantic: &Checked<Semantic>) -> String {
    match semantic {
        Checked::Valid(Semantic::Positions) => "POSITION".into(),
        Checked::Valid(Semantic::Normals) => "NORMAL".into(),
        Checked::Valid(Semantic::Tangents) => "TANGENT".into(),
        Checked::Valid(Semantic::Colors(n)) => format!("COLOR_{n}"),
        Checked::Valid(Semantic::TexCoords(n)) => format!("TEXCOORD_{n}"),
        Checked::Valid(Semantic::Joints(n)) => format!("JOINTS_{n}"),
        Checked::Valid(Semantic::Weights(n)) => format!("WEIGHTS_{n}"),
        Checked::Valid(Semantic::Extras(name)) => format!("_{name}"),
        Checked::Invalid => "(invalid)".into(),
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
