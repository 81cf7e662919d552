//! Test helpers: a tiny glTF writer (GLB or .gltf + .bin) and scene recipes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use tessera_protocol::TileRect;
use tessera_renderer::{Gpu, LoadOptions, Scene};

/// One GPU per test binary: compiling the shader on lavapipe takes a moment.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        Arc::new(Gpu::new().expect("a wgpu adapter (lavapipe) is needed for these tests"))
    })
    .clone()
}

/// A sample scene of `scenes/`, loaded with the default options.
pub fn scene(name: &str) -> Scene {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenes")
        .join(name);
    Scene::load(&path, &LoadOptions::default()).unwrap()
}

/// The whole frame as a tile.
pub fn full(width: u32, height: u32) -> TileRect {
    TileRect {
        x: 0,
        y: 0,
        w: width,
        h: height,
    }
}

/// Builds a glTF document with one binary buffer.
#[derive(Default)]
pub struct GltfBuilder {
    pub bin: Vec<u8>,
    pub buffer_views: Vec<Value>,
    pub accessors: Vec<Value>,
    pub meshes: Vec<Value>,
    pub materials: Vec<Value>,
    pub nodes: Vec<Value>,
    pub cameras: Vec<Value>,
    pub lights: Vec<Value>,
    pub extensions_used: Vec<String>,
    /// Extra top-level members merged into the JSON (e.g. animations, images).
    pub extra: serde_json::Map<String, Value>,
    /// Root nodes of the scene; `None` = every node.
    pub roots: Option<Vec<usize>>,
    /// `scenes[0].extras` (e.g. `tessera_environment`).
    pub scene_extras: Option<Value>,
    pub images: Vec<Value>,
    pub textures: Vec<Value>,
    pub samplers: Vec<Value>,
    pub animations: Vec<Value>,
}

fn align4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

impl GltfBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn use_extension(&mut self, name: &str) {
        if !self.extensions_used.iter().any(|e| e == name) {
            self.extensions_used.push(name.to_string());
        }
    }

    fn view(&mut self, bytes: &[u8]) -> usize {
        align4(&mut self.bin);
        let offset = self.bin.len();
        self.bin.extend_from_slice(bytes);
        self.buffer_views
            .push(json!({"buffer": 0, "byteOffset": offset, "byteLength": bytes.len()}));
        self.buffer_views.len() - 1
    }

    /// A float accessor of `n`-component elements (SCALAR, VEC2, VEC3, VEC4) with min/max.
    pub fn float_accessor(&mut self, values: &[f32], n: usize) -> usize {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = self.view(&bytes);
        let ty = ["SCALAR", "VEC2", "VEC3", "VEC4"][n - 1];
        let mut min = vec![f32::INFINITY; n];
        let mut max = vec![f32::NEG_INFINITY; n];
        for c in values.chunks_exact(n) {
            for k in 0..n {
                min[k] = min[k].min(c[k]);
                max[k] = max[k].max(c[k]);
            }
        }
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5126, "count": values.len() / n, "type": ty,
            "min": min, "max": max
        }));
        self.accessors.len() - 1
    }

    /// An image embedded in the binary buffer (PNG bytes); returns the image index.
    pub fn image_png(&mut self, png: &[u8]) -> usize {
        let view = self.view(png);
        self.images
            .push(json!({"bufferView": view, "mimeType": "image/png"}));
        self.images.len() - 1
    }

    /// A texture of `image` with an optional sampler object; returns the texture index.
    pub fn texture(&mut self, image: usize, sampler: Option<Value>) -> usize {
        let mut t = json!({"source": image});
        if let Some(s) = sampler {
            self.samplers.push(s);
            t["sampler"] = json!(self.samplers.len() - 1);
        }
        self.textures.push(t);
        self.textures.len() - 1
    }

    /// A raw material object; returns its index.
    pub fn raw_material(&mut self, m: Value) -> usize {
        self.materials.push(m);
        self.materials.len() - 1
    }

    /// A mesh with one triangle primitive and optional NORMAL, TEXCOORD_0/1 and TANGENT.
    #[allow(clippy::too_many_arguments)]
    pub fn mesh_full(
        &mut self,
        name: &str,
        positions: &[[f32; 3]],
        normals: Option<&[[f32; 3]]>,
        uv0: Option<&[[f32; 2]]>,
        uv1: Option<&[[f32; 2]]>,
        tangents: Option<&[[f32; 4]]>,
        indices: &[u32],
        material: usize,
    ) -> usize {
        let pos = self.vec3_accessor(positions);
        let mut attributes = json!({"POSITION": pos});
        if let Some(n) = normals {
            attributes["NORMAL"] = json!(self.vec3_accessor(n));
        }
        for (name, uv) in [("TEXCOORD_0", uv0), ("TEXCOORD_1", uv1)] {
            if let Some(uv) = uv {
                let flat: Vec<f32> = uv.iter().flatten().copied().collect();
                attributes[name] = json!(self.float_accessor(&flat, 2));
            }
        }
        if let Some(t) = tangents {
            let flat: Vec<f32> = t.iter().flatten().copied().collect();
            attributes["TANGENT"] = json!(self.float_accessor(&flat, 4));
        }
        let idx = self.index_accessor(indices);
        self.meshes.push(json!({"name": name, "primitives": [
            {"attributes": attributes, "indices": idx, "material": material}
        ]}));
        self.meshes.len() - 1
    }

    /// A UV sphere with smooth normals.
    pub fn sphere(&mut self, name: &str, center: [f32; 3], radius: f32, material: usize) -> usize {
        let (rings, segments) = (24u32, 48u32);
        let mut p = Vec::new();
        let mut n = Vec::new();
        for i in 0..=rings {
            let theta = std::f32::consts::PI * i as f32 / rings as f32;
            for j in 0..=segments {
                let phi = 2.0 * std::f32::consts::PI * j as f32 / segments as f32;
                let d = [
                    theta.sin() * phi.cos(),
                    theta.cos(),
                    theta.sin() * phi.sin(),
                ];
                n.push(d);
                p.push([
                    center[0] + radius * d[0],
                    center[1] + radius * d[1],
                    center[2] + radius * d[2],
                ]);
            }
        }
        let mut idx = Vec::new();
        for i in 0..rings {
            for j in 0..segments {
                let a = i * (segments + 1) + j;
                let b = a + segments + 1;
                idx.extend_from_slice(&[a, a + 1, b, a + 1, b + 1, b]);
            }
        }
        self.mesh(name, &p, Some(&n), Some(&idx), material)
    }

    /// An orthographic camera at `eye` looking at `target`.
    pub fn ortho_camera(
        &mut self,
        name: &str,
        xmag: f32,
        ymag: f32,
        eye: [f32; 3],
        target: [f32; 3],
        up: [f32; 3],
    ) -> usize {
        self.cameras
            .push(json!({"name": name, "type": "orthographic",
            "orthographic": {"xmag": xmag, "ymag": ymag, "znear": 0.01, "zfar": 100.0}}));
        let cam = self.cameras.len() - 1;
        self.node(json!({"camera": cam, "matrix": look_at(eye, target, up)}))
    }

    fn vec3_accessor(&mut self, values: &[[f32; 3]]) -> usize {
        let bytes: Vec<u8> = values
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = self.view(&bytes);
        let mut min = [f32::INFINITY; 3];
        let mut max = [f32::NEG_INFINITY; 3];
        for v in values {
            for k in 0..3 {
                min[k] = min[k].min(v[k]);
                max[k] = max[k].max(v[k]);
            }
        }
        self.accessors.push(json!({
            "bufferView": view, "componentType": 5126, "count": values.len(), "type": "VEC3",
            "min": min, "max": max
        }));
        self.accessors.len() - 1
    }

    pub fn index_accessor(&mut self, indices: &[u32]) -> usize {
        let bytes: Vec<u8> = indices.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = self.view(&bytes);
        self.accessors.push(json!({"bufferView": view, "componentType": 5125, "count": indices.len(), "type": "SCALAR"}));
        self.accessors.len() - 1
    }

    /// A Lambertian material; `emission` is the emissive factor, `strength` the
    /// KHR_materials_emissive_strength (omitted when 1).
    pub fn material(
        &mut self,
        name: &str,
        base: [f32; 3],
        emission: [f32; 3],
        strength: f32,
    ) -> usize {
        let mut m = json!({
            "name": name,
            "pbrMetallicRoughness": {"baseColorFactor": [base[0], base[1], base[2], 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0},
            "emissiveFactor": emission,
        });
        if strength != 1.0 {
            self.use_extension("KHR_materials_emissive_strength");
            m["extensions"] =
                json!({"KHR_materials_emissive_strength": {"emissiveStrength": strength}});
        }
        self.materials.push(m);
        self.materials.len() - 1
    }

    /// A mesh with one triangle-list primitive.
    pub fn mesh(
        &mut self,
        name: &str,
        positions: &[[f32; 3]],
        normals: Option<&[[f32; 3]]>,
        indices: Option<&[u32]>,
        material: usize,
    ) -> usize {
        let pos = self.vec3_accessor(positions);
        let mut attributes = json!({"POSITION": pos});
        if let Some(n) = normals {
            attributes["NORMAL"] = json!(self.vec3_accessor(n));
        }
        let mut prim = json!({"attributes": attributes, "material": material});
        if let Some(i) = indices {
            prim["indices"] = json!(self.index_accessor(i));
        }
        self.meshes
            .push(json!({"name": name, "primitives": [prim]}));
        self.meshes.len() - 1
    }

    /// A quad (two triangles) from four corners in order.
    pub fn quad(&mut self, name: &str, c: [[f32; 3]; 4], material: usize) -> usize {
        self.mesh(name, &c, None, Some(&[0, 1, 2, 0, 2, 3]), material)
    }

    /// An axis-aligned box (12 triangles) as one mesh.
    pub fn cuboid(&mut self, name: &str, min: [f32; 3], max: [f32; 3], material: usize) -> usize {
        let [x0, y0, z0] = min;
        let [x1, y1, z1] = max;
        let p = [
            [x0, y0, z0],
            [x1, y0, z0],
            [x1, y1, z0],
            [x0, y1, z0],
            [x0, y0, z1],
            [x1, y0, z1],
            [x1, y1, z1],
            [x0, y1, z1],
        ];
        let idx = [
            0, 2, 1, 0, 3, 2, 4, 5, 6, 4, 6, 7, 0, 1, 5, 0, 5, 4, 3, 7, 6, 3, 6, 2, 0, 4, 7, 0, 7,
            3, 1, 2, 6, 1, 6, 5,
        ];
        self.mesh(name, &p, None, Some(&idx), material)
    }

    pub fn node(&mut self, node: Value) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn mesh_node(&mut self, mesh: usize) -> usize {
        self.node(json!({"mesh": mesh}))
    }

    /// A perspective camera at `eye` looking at `target`.
    pub fn camera(
        &mut self,
        name: &str,
        yfov: f32,
        eye: [f32; 3],
        target: [f32; 3],
        up: [f32; 3],
    ) -> usize {
        self.cameras.push(json!({"name": name, "type": "perspective", "perspective": {"yfov": yfov, "znear": 0.01}}));
        let cam = self.cameras.len() - 1;
        self.node(json!({"camera": cam, "matrix": look_at(eye, target, up)}))
    }

    /// A KHR_lights_punctual light on a node with the given matrix.
    pub fn light(&mut self, light: Value, matrix: [f32; 16]) -> usize {
        self.use_extension("KHR_lights_punctual");
        self.lights.push(light);
        let idx = self.lights.len() - 1;
        self.node(json!({"matrix": matrix, "extensions": {"KHR_lights_punctual": {"light": idx}}}))
    }

    fn document(&self, buffer_uri: Option<&str>) -> Value {
        let mut buffer = json!({"byteLength": self.bin.len()});
        if let Some(uri) = buffer_uri {
            buffer["uri"] = json!(uri);
        }
        let mut doc = json!({
            "asset": {"version": "2.0", "generator": "tessera-renderer tests"},
            "scene": 0,
            "scenes": [{"nodes": self.roots.clone().unwrap_or_else(|| (0..self.nodes.len()).collect())}],
            "images": self.images,
            "textures": self.textures,
            "samplers": self.samplers,
            "animations": self.animations,
            "nodes": self.nodes,
            "meshes": self.meshes,
            "materials": self.materials,
            "accessors": self.accessors,
            "bufferViews": self.buffer_views,
            "buffers": [buffer],
        });
        if let Some(extras) = &self.scene_extras {
            doc["scenes"][0]["extras"] = extras.clone();
        }
        if !self.cameras.is_empty() {
            doc["cameras"] = json!(self.cameras);
        }
        if !self.lights.is_empty() {
            doc["extensions"] = json!({"KHR_lights_punctual": {"lights": self.lights}});
        }
        if !self.extensions_used.is_empty() {
            doc["extensionsUsed"] = json!(self.extensions_used);
        }
        for (k, v) in &self.extra {
            doc[k] = v.clone();
        }
        doc
    }

    /// The document as GLB bytes.
    pub fn glb(&self) -> Vec<u8> {
        glb_bytes(&self.document(None), &self.bin)
    }

    /// The document as .gltf JSON whose buffer has the given URI (the caller writes the
    /// binary data where the URI points).
    pub fn gltf_json(&self, buffer_uri: &str) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.document(Some(buffer_uri))).unwrap()
    }

    /// Write a .glb into `dir` and return its path.
    pub fn write_glb(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.glb()).unwrap();
        path
    }
}

/// Column-major camera-to-world matrix for a glTF camera (looks down its local -Z).
pub fn look_at(eye: [f32; 3], target: [f32; 3], up: [f32; 3]) -> [f32; 16] {
    let sub = |a: [f32; 3], b: [f32; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let cross = |a: [f32; 3], b: [f32; 3]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let norm = |a: [f32; 3]| {
        let l = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
        [a[0] / l, a[1] / l, a[2] / l]
    };
    let back = norm(sub(eye, target));
    let right = norm(cross(up, back));
    let true_up = cross(back, right);
    [
        right[0], right[1], right[2], 0.0, true_up[0], true_up[1], true_up[2], 0.0, back[0],
        back[1], back[2], 0.0, eye[0], eye[1], eye[2], 1.0,
    ]
}

/// A translation matrix, optionally rotated so that local -Z points along `dir`.
pub fn pose(position: [f32; 3], dir: [f32; 3]) -> [f32; 16] {
    let target = [
        position[0] + dir[0],
        position[1] + dir[1],
        position[2] + dir[2],
    ];
    let up = if dir[0].abs() < 0.9 {
        [1.0, 0.0, 0.0]
    } else {
        [0.0, 1.0, 0.0]
    };
    look_at(position, target, up)
}

/// A Cornell-like box: 2×2×2 room (y up), white/red/green walls, an emissive ceiling
/// quad, two white blocks, camera looking in through the open front.
pub fn cornell_box() -> GltfBuilder {
    let mut b = GltfBuilder::new();
    let white = b.material("White", [0.73, 0.73, 0.73], [0.0; 3], 1.0);
    let red = b.material("Red", [0.65, 0.05, 0.05], [0.0; 3], 1.0);
    let green = b.material("Green", [0.12, 0.45, 0.15], [0.0; 3], 1.0);
    let light = b.material("Light", [0.0; 3], [1.0, 0.85, 0.6], 12.0);
    let floor = b.quad(
        "Floor",
        [
            [-1.0, 0.0, -1.0],
            [-1.0, 0.0, 1.0],
            [1.0, 0.0, 1.0],
            [1.0, 0.0, -1.0],
        ],
        white,
    );
    let ceiling = b.quad(
        "Ceiling",
        [
            [-1.0, 2.0, -1.0],
            [1.0, 2.0, -1.0],
            [1.0, 2.0, 1.0],
            [-1.0, 2.0, 1.0],
        ],
        white,
    );
    let back = b.quad(
        "Back",
        [
            [-1.0, 0.0, -1.0],
            [1.0, 0.0, -1.0],
            [1.0, 2.0, -1.0],
            [-1.0, 2.0, -1.0],
        ],
        white,
    );
    let left = b.quad(
        "Left",
        [
            [-1.0, 0.0, -1.0],
            [-1.0, 2.0, -1.0],
            [-1.0, 2.0, 1.0],
            [-1.0, 0.0, 1.0],
        ],
        red,
    );
    let right = b.quad(
        "Right",
        [
            [1.0, 0.0, -1.0],
            [1.0, 0.0, 1.0],
            [1.0, 2.0, 1.0],
            [1.0, 2.0, -1.0],
        ],
        green,
    );
    let lamp = b.quad(
        "Lamp",
        [
            [-0.25, 1.98, -0.25],
            [0.25, 1.98, -0.25],
            [0.25, 1.98, 0.25],
            [-0.25, 1.98, 0.25],
        ],
        light,
    );
    let tall = b.cuboid("Tall", [-0.6, 0.0, -0.6], [-0.1, 1.2, -0.1], white);
    let short = b.cuboid("Short", [0.1, 0.0, 0.0], [0.6, 0.6, 0.5], white);
    for m in [floor, ceiling, back, left, right, lamp, tall, short] {
        b.mesh_node(m);
    }
    b.camera(
        "Main",
        0.69,
        [0.0, 1.0, 3.8],
        [0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0],
    );
    b
}

/// Decode canonical bytes into RGBA f32 values.
pub fn decode(bytes: &[u8]) -> Vec<[f32; 4]> {
    bytes
        .chunks_exact(8)
        .map(|p| {
            let c = |i: usize| half::f16::from_le_bytes([p[2 * i], p[2 * i + 1]]).to_f32();
            [c(0), c(1), c(2), c(3)]
        })
        .collect()
}

/// PNG bytes of an RGBA8 image.
pub fn png(width: u32, height: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbaImage::from_raw(width, height, rgba.to_vec())
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// OpenEXR bytes of an RGB f32 image (row 0 at the top).
pub fn exr(width: u32, height: u32, rgb: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb32F(
        image::Rgb32FImage::from_raw(width, height, rgb.to_vec()).unwrap(),
    )
    .write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::OpenExr,
    )
    .unwrap();
    out
}

/// sRGB code to linear, exactly as the renderer's table (IEC 61966-2-1 in f64).
pub fn srgb_to_linear(c: u8) -> f32 {
    let v = f64::from(c) / 255.0;
    (if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }) as f32
}

/// A GLB container of `json` and the binary chunk `bin` (both padded to 4 bytes).
pub fn glb_bytes(json: &Value, bin: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(json).unwrap();
    while !json.len().is_multiple_of(4) {
        json.push(b' ');
    }
    let mut bin = bin.to_vec();
    align4(&mut bin);
    let total = 12 + 8 + json.len() + 8 + bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&json);
    out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out.extend_from_slice(&bin);
    out
}
