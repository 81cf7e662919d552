//! GPU tests over the committed sample scenes (`scenes/`): every scene loads without
//! unexpected warnings and renders tiles equal to crops of the full frame, plus one
//! check per feature that fails when the feature is missing (furnace energy balance,
//! instancing and cameras, animation, textures and alpha, lights, the HDR environment)
//! and a cross-process bit-identity check.

mod common;

use std::path::PathBuf;

use common::{decode, gpu};
use serde_json::Value;
use tessera_protocol::{tile_layout, RenderSettings, TileRect};
use tessera_renderer::{LoadOptions, Scene, SceneRenderer};

/// Every committed sample scene, with the loader warnings it is expected to produce.
const SAMPLE_SCENES: &[(&str, &[&str])] = &[
    ("cornell-box.glb", &[]),
    ("displaced-sphere.glb", &[]),
    ("pbr-spheres.glb", &[]),
    ("textured.glb", &[]),
    ("furnace.glb", &[]),
    ("lights.glb", &[]),
    ("env-hdr.gltf", &[]),
    ("instancing.glb", &[]),
    ("animated.glb", &[]),
    ("blender-studio.glb", &[]),
    ("blender-pbr.glb", &[]),
];

fn scene_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenes")
        .join(name)
}

fn load(name: &str) -> Scene {
    let path = scene_path(name);
    Scene::load(&path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn renderer_for(scene: &Scene) -> SceneRenderer {
    SceneRenderer::new(gpu(), scene).unwrap()
}

fn settings(width: u32, height: u32, spp: u32, camera: Option<&str>) -> RenderSettings {
    RenderSettings {
        width,
        height,
        spp,
        max_bounces: 4,
        seed: 0x5CE7_E5A1_2024_0001,
        camera: camera.map(str::to_owned),
        frame_rate: Default::default(),
    }
}

fn full(s: &RenderSettings) -> TileRect {
    TileRect {
        x: 0,
        y: 0,
        w: s.width,
        h: s.height,
    }
}

/// Linear RGBA of a full frame (through the canonical f16 bytes).
fn render(r: &SceneRenderer, s: &RenderSettings, frame: u32) -> Vec<[f32; 4]> {
    decode(&r.render(s, frame, full(s)).unwrap())
}

/// Bytes of `rect` cut out of a full-frame canonical image.
fn crop(frame: &[u8], width: u32, rect: TileRect) -> Vec<u8> {
    let mut out = Vec::with_capacity(rect.canonical_len());
    for row in rect.y..rect.y + rect.h {
        let start = (row as usize * width as usize + rect.x as usize) * 8;
        out.extend_from_slice(&frame[start..start + rect.w as usize * 8]);
    }
    out
}

/// A small deterministic generator for tile layouts (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % u64::from(n)) as u32
    }
}

/// Mean linear RGB over the pixels of `rect` (clipped to the image).
fn mean_in(pixels: &[[f32; 4]], width: u32, height: u32, rect: (i64, i64, i64, i64)) -> [f64; 3] {
    let (x0, y0, x1, y1) = rect;
    let mut sum = [0.0f64; 3];
    let mut n = 0usize;
    for y in y0.max(0)..y1.min(i64::from(height)) {
        for x in x0.max(0)..x1.min(i64::from(width)) {
            let p = pixels[(y as usize) * width as usize + x as usize];
            for k in 0..3 {
                sum[k] += f64::from(p[k]);
            }
            n += 1;
        }
    }
    assert!(n > 0, "empty region {rect:?}");
    sum.map(|s| s / n as f64)
}

fn luminance(rgb: [f64; 3]) -> f64 {
    0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
}

/// A square region of half-size `r` around pixel (x, y).
fn around(p: (f64, f64), r: i64) -> (i64, i64, i64, i64) {
    let (x, y) = (p.0.floor() as i64, p.1.floor() as i64);
    (x - r, y - r, x + r + 1, y + r + 1)
}

fn mean_abs_diff(a: &[[f32; 4]], b: &[[f32; 4]]) -> f64 {
    let total: f64 = a
        .iter()
        .zip(b)
        .map(|(p, q)| (0..3).map(|k| f64::from((p[k] - q[k]).abs())).sum::<f64>())
        .sum();
    total / (3 * a.len()) as f64
}

// ---------------------------------------------------------------------------------
// The glTF JSON of a scene file (for camera poses and modified copies).

/// The JSON document and (for GLB files) the BIN chunk.
fn read_gltf(name: &str) -> (Value, Option<Vec<u8>>) {
    let bytes = std::fs::read(scene_path(name)).unwrap();
    if bytes.starts_with(b"glTF") {
        let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let json = serde_json::from_slice(&bytes[20..20 + json_len]).unwrap();
        let bin_at = 20 + json_len;
        let bin = (bytes.len() > bin_at + 8).then(|| {
            let len = u32::from_le_bytes(bytes[bin_at..bin_at + 4].try_into().unwrap()) as usize;
            bytes[bin_at + 8..bin_at + 8 + len].to_vec()
        });
        (json, bin)
    } else {
        (serde_json::from_slice(&bytes).unwrap(), None)
    }
}

/// Writes a GLB from a (modified) JSON document and a BIN chunk.
fn write_glb(dir: &std::path::Path, name: &str, json: &Value, bin: &[u8]) -> PathBuf {
    let out = common::glb_bytes(json, bin);
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

/// A modified copy of a GLB sample scene, loaded.
fn load_modified(name: &str, edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, Scene) {
    let (mut json, bin) = read_gltf(name);
    edit(&mut json);
    let dir = tempfile::tempdir().unwrap();
    let path = write_glb(dir.path(), name, &json, &bin.unwrap_or_default());
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    (dir, scene)
}

type V3 = [f64; 3];

fn rotate(q: [f64; 4], v: V3) -> V3 {
    let (u, w) = ([q[0], q[1], q[2]], q[3]);
    let cross = |a: V3, b: V3| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let t = cross(u, v).map(|c| 2.0 * c);
    let c = cross(u, t);
    [
        v[0] + w * t[0] + c[0],
        v[1] + w * t[1] + c[1],
        v[2] + w * t[2] + c[2],
    ]
}

/// A perspective camera's pose (from a root node's translation and rotation) and yfov.
struct CameraPose {
    eye: V3,
    right: V3,
    up: V3,
    forward: V3,
    tan_half_fov: f64,
}

impl CameraPose {
    fn of(json: &Value, camera_name: &str) -> CameraPose {
        let cameras = json["cameras"].as_array().unwrap();
        let index = cameras
            .iter()
            .position(|c| c["name"] == camera_name)
            .unwrap_or_else(|| panic!("no camera {camera_name}"));
        let node = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["camera"] == index)
            .unwrap();
        let f = |v: &Value| v.as_f64().unwrap();
        let eye = node["translation"]
            .as_array()
            .map_or([0.0; 3], |t| [f(&t[0]), f(&t[1]), f(&t[2])]);
        let q = node["rotation"]
            .as_array()
            .map_or([0.0, 0.0, 0.0, 1.0], |r| {
                [f(&r[0]), f(&r[1]), f(&r[2]), f(&r[3])]
            });
        let yfov = f(&cameras[index]["perspective"]["yfov"]);
        CameraPose {
            eye,
            right: rotate(q, [1.0, 0.0, 0.0]),
            up: rotate(q, [0.0, 1.0, 0.0]),
            forward: rotate(q, [0.0, 0.0, -1.0]),
            tan_half_fov: (yfov / 2.0).tan(),
        }
    }

    /// Pixel coordinates (x right, y down, continuous) of world point `p`.
    fn project(&self, p: V3, width: u32, height: u32) -> (f64, f64) {
        let d = [p[0] - self.eye[0], p[1] - self.eye[1], p[2] - self.eye[2]];
        let dot = |a: V3, b: V3| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let z = dot(d, self.forward);
        assert!(z > 0.0, "point behind the camera");
        let aspect = f64::from(width) / f64::from(height);
        let nx = dot(d, self.right) / (z * self.tan_half_fov * aspect);
        let ny = dot(d, self.up) / (z * self.tan_half_fov);
        (
            (nx + 1.0) / 2.0 * f64::from(width),
            (1.0 - ny) / 2.0 * f64::from(height),
        )
    }

    /// Radius in pixels of a sphere of `radius` at `center` (small-angle estimate).
    fn pixel_radius(&self, center: V3, radius: f64, height: u32) -> f64 {
        let d = [
            center[0] - self.eye[0],
            center[1] - self.eye[1],
            center[2] - self.eye[2],
        ];
        let z = d[0] * self.forward[0] + d[1] * self.forward[1] + d[2] * self.forward[2];
        radius / (z * self.tan_half_fov) * f64::from(height) / 2.0
    }
}

// ---------------------------------------------------------------------------------
// Every scene.

#[test]
fn every_sample_scene_loads_with_only_the_expected_warnings() {
    for &(name, expected) in SAMPLE_SCENES {
        let scene = load(name);
        assert_eq!(
            scene.warnings(),
            expected,
            "{name}: unexpected loader warnings"
        );
        assert!(scene.triangle_count() > 0, "{name}");
        assert!(!scene.camera_names().is_empty(), "{name}");
    }
}

#[test]
fn tiles_equal_crops_in_every_sample_scene() {
    let mut rng = Rng(0x0DDC_0FFE_E123_4567);
    for &(name, _) in SAMPLE_SCENES {
        let scene = load(name);
        let r = renderer_for(&scene);
        let s = settings(40, 28, 2, None);
        let frame = r.render(&s, 3, full(&s)).unwrap();
        let mut rects: Vec<TileRect> = Vec::new();
        for _ in 0..2 {
            let size = 3 + rng.below(20);
            rects.extend(tile_layout(s.width, s.height, size));
        }
        for _ in 0..4 {
            let (x, y) = (rng.below(s.width), rng.below(s.height));
            let (w, h) = (1 + rng.below(s.width - x), 1 + rng.below(s.height - y));
            rects.push(TileRect { x, y, w, h });
        }
        for rect in rects {
            let tile = r.render(&s, 3, rect).unwrap();
            assert!(
                tile == crop(&frame, s.width, rect),
                "{name}: tile {rect:?} differs from the crop of the full frame"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Per feature.

#[test]
fn furnace_diffuse_sphere_renders_to_the_background_value() {
    let name = "furnace.glb";
    let scene = load(name);
    let r = renderer_for(&scene);
    let spp = 64;
    let mut s = settings(96, 48, spp, Some("camera"));
    s.max_bounces = 8;
    let pixels = render(&r, &s, 0);
    let (json, _) = read_gltf(name);
    let pose = CameraPose::of(&json, "camera");
    // Background: camera rays that miss everything see exactly the environment, 1.
    let corner = mean_in(&pixels, s.width, s.height, (0, 0, 3, 3));
    for c in corner {
        assert!((c - 1.0).abs() < 1e-3, "background {corner:?}");
    }
    // The diffuse sphere (albedo 1, convex, in a uniform white environment) must equal
    // the background: every bounce escapes to radiance 1. Tolerance: 3 standard errors
    // of a per-sample spread of at most 0.5 over the region's samples, plus 1 % for the
    // metal sphere's slight shadow.
    let centre = pose.project([-1.2, 0.0, 0.0], s.width, s.height);
    let radius = pose.pixel_radius([-1.2, 0.0, 0.0], 0.6, s.height);
    let half = (radius * 0.5) as i64;
    let region = around(centre, half);
    let n = ((2 * half + 1) * (2 * half + 1)) as f64;
    let tolerance = 0.01 + 3.0 * 0.5 / (n * f64::from(spp)).sqrt();
    let diffuse = mean_in(&pixels, s.width, s.height, region);
    for c in diffuse {
        assert!(
            (c - 1.0).abs() < tolerance,
            "diffuse sphere {diffuse:?} ≠ background 1 (tolerance {tolerance:.4})"
        );
    }
    // The white metal sphere reflects the white environment: close to 1, never above
    // (single-scattering GGX may lose a little energy at roughness 0.25).
    let metal_centre = pose.project([1.2, 0.0, 0.0], s.width, s.height);
    let metal = mean_in(&pixels, s.width, s.height, around(metal_centre, half));
    for c in metal {
        assert!(
            (0.85..1.0 + tolerance).contains(&c),
            "metal sphere {metal:?}"
        );
    }
}

/// Triangles of `instancing.glb` once every instance is expanded (the recipe's
/// `INSTANCED_TRIANGLES`): a 16-crate grid (16 × 12), the crate on the arm (12), the
/// three-primitive totem (12 + 320 + 12), two L shapes (2 × 24) and the floor (2).
const INSTANCING_TRIANGLES: usize = 16 * 12 + 12 + (12 + 320 + 12) + 2 * 24 + 2;

#[test]
fn instancing_expands_instances_and_every_camera_renders_its_own_view() {
    let scene = load("instancing.glb");
    assert_eq!(scene.triangle_count(), INSTANCING_TRIANGLES);
    let names = scene.camera_names();
    let want = ["perspective_front", "perspective_top", "orthographic_front"];
    for camera in want {
        assert!(
            names.iter().any(|n| n == camera),
            "{camera} not in {names:?}"
        );
    }
    let r = renderer_for(&scene);
    let images: Vec<Vec<[f32; 4]>> = want
        .iter()
        .map(|camera| render(&r, &settings(48, 32, 4, Some(camera)), 0))
        .collect();
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            let diff = mean_abs_diff(&images[i], &images[j]);
            assert!(
                diff > 0.02,
                "cameras {} and {} render nearly the same image (mean difference {diff})",
                want[i],
                want[j]
            );
        }
    }
}
#[test]
fn animated_scene_moves_between_frames_and_repeats_exactly() {
    let name = "animated.glb";
    let scene = load(name);
    let r = renderer_for(&scene);
    let s = settings(80, 48, 8, Some("camera"));
    let frame0 = r.render(&s, 0, full(&s)).unwrap();
    let again = r.render(&s, 0, full(&s)).unwrap();
    assert!(frame0 == again, "frame 0 rendered twice differs");
    let frame24 = r.render(&s, 24, full(&s)).unwrap();
    let (a, b) = (decode(&frame0), decode(&frame24));
    let (json, _) = read_gltf(name);
    let pose = CameraPose::of(&json, "camera");
    // The orange slider box (half size 0.3) stands at x = −1.5 at t = 0 and at x = 0 at
    // t = 1 s (frame 24 at 24 fps): its frame-0 place shows the grey floor at frame 24.
    let start = pose.project([-1.5, 0.3, 0.8], s.width, s.height);
    let end = pose.project([0.0, 0.3, 0.8], s.width, s.height);
    let region_start = around(start, 2);
    let region_end = around(end, 2);
    let orange = |rgb: [f64; 3]| rgb[0] > 1.5 * rgb[2] + 0.02;
    let s0 = mean_in(&a, s.width, s.height, region_start);
    let s24 = mean_in(&b, s.width, s.height, region_start);
    let e24 = mean_in(&b, s.width, s.height, region_end);
    assert!(orange(s0), "slider not at its start at frame 0: {s0:?}");
    assert!(
        !orange(s24),
        "slider still at its start at frame 24: {s24:?}"
    );
    assert!(orange(e24), "slider not at x = 0 at frame 24: {e24:?}");
    // The moving camera sees a different picture at frame 24.
    let dolly = settings(48, 32, 4, Some("dolly"));
    let d0 = render(&r, &dolly, 0);
    let d24 = render(&r, &dolly, 24);
    assert!(mean_abs_diff(&d0, &d24) > 0.02, "dolly camera did not move");
}

/// Removes every texture reference (and the textures, images and samplers) from a
/// document, keeping factors, geometry and alpha modes.
fn strip_textures(json: &mut Value) {
    for material in json["materials"].as_array_mut().unwrap() {
        let m = material.as_object_mut().unwrap();
        m.remove("normalTexture");
        m.remove("emissiveTexture");
        m.remove("occlusionTexture");
        if let Some(pbr) = m
            .get_mut("pbrMetallicRoughness")
            .and_then(Value::as_object_mut)
        {
            pbr.remove("baseColorTexture");
            pbr.remove("metallicRoughnessTexture");
        }
    }
    let root = json.as_object_mut().unwrap();
    for key in ["textures", "images", "samplers"] {
        root.remove(key);
    }
    if let Some(used) = root.get_mut("extensionsUsed").and_then(Value::as_array_mut) {
        used.retain(|e| e != "KHR_texture_transform");
    }
}

#[test]
fn textures_change_the_image_and_masked_holes_show_the_background() {
    let name = "textured.glb";
    let textured = load(name);
    let (_dir, plain) = load_modified(name, strip_textures);
    let s = settings(64, 40, 4, Some("camera"));
    let with = render(&renderer_for(&textured), &s, 0);
    let without = render(&renderer_for(&plain), &s, 0);
    let diff = mean_abs_diff(&with, &without);
    assert!(diff > 0.02, "textures make no visible difference ({diff})");

    // Camera `cutout` looks at the 1 m fence at (−2.5, 1, −5) against the sky; the
    // fence texture's alpha is 0 in four square holes centred ±0.25 m from its centre.
    let (json, _) = read_gltf(name);
    let env: Vec<f64> = json["scenes"][0]["extras"]["tessera_environment"]["color"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect();
    let pose = CameraPose::of(&json, "cutout");
    let s = settings(64, 64, 4, Some("cutout"));
    let masked = render(&renderer_for(&textured), &s, 0);
    for (dx, dy) in [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)] {
        let hole = pose.project([-2.5 + dx, 1.0 + dy, -5.0], s.width, s.height);
        let rgb = mean_in(&masked, s.width, s.height, around(hole, 2));
        for k in 0..3 {
            assert!(
                (rgb[k] - env[k]).abs() < 0.01,
                "fence hole at {hole:?} shows {rgb:?}, not the background {env:?}"
            );
        }
    }
    // The crossing bars at the fence's centre are opaque wood, not background.
    let centre = pose.project([-2.5, 1.0, -5.0], s.width, s.height);
    let bar = mean_in(&masked, s.width, s.height, around(centre, 1));
    let distance: f64 = (0..3).map(|k| (bar[k] - env[k]).abs()).sum();
    assert!(
        distance > 0.1,
        "fence bars look like the background: {bar:?}"
    );
}

fn set_light_intensity(json: &mut Value, light: &str, intensity: f64) {
    let lights = json["extensions"]["KHR_lights_punctual"]["lights"]
        .as_array_mut()
        .unwrap();
    let l = lights.iter_mut().find(|l| l["name"] == light).unwrap();
    l["intensity"] = intensity.into();
}

#[test]
fn switching_a_light_off_darkens_its_pool_of_light() {
    let name = "lights.glb";
    let (json, _) = read_gltf(name);
    let pose = CameraPose::of(&json, "camera");
    let s = settings(96, 64, 8, Some("camera"));
    let all = render(&renderer_for(&load(name)), &s, 0);
    // Floor points right under the spot (2.2, 3, −1.5) and the point light (−2, 2.5, 1.5).
    for (light, floor_point) in [("spot", [2.2, 0.0, -1.5]), ("point", [-2.0, 0.0, 1.5])] {
        let (_dir, scene) = load_modified(name, |j| set_light_intensity(j, light, 0.0));
        let off = render(&renderer_for(&scene), &s, 0);
        let region = around(pose.project(floor_point, s.width, s.height), 2);
        let on_l = luminance(mean_in(&all, s.width, s.height, region));
        let off_l = luminance(mean_in(&off, s.width, s.height, region));
        assert!(
            off_l < 0.5 * on_l && on_l > 0.05,
            "{light} off: luminance under it {off_l} (on: {on_l})"
        );
    }
    // The emissive triangle lights the floor in front of it.
    let (_dir, dark) = load_modified(name, |j| {
        for m in j["materials"].as_array_mut().unwrap() {
            if m["name"] == "emitter" {
                m.as_object_mut().unwrap().remove("emissiveFactor");
            }
        }
    });
    let off = render(&renderer_for(&dark), &s, 0);
    let region = around(pose.project([-2.5, 0.0, -2.0], s.width, s.height), 2);
    let on_l = luminance(mean_in(&all, s.width, s.height, region));
    let off_l = luminance(mean_in(&off, s.width, s.height, region));
    assert!(
        off_l < on_l,
        "emitter off: floor in front {off_l} (on: {on_l})"
    );
}

#[test]
fn hdr_sun_lights_one_side_of_the_white_sphere() {
    let name = "env-hdr.gltf";
    let scene = load(name);
    let (json, _) = read_gltf(name);
    let pose = CameraPose::of(&json, "camera");
    let s = settings(96, 64, 16, Some("camera"));
    let pixels = render(&renderer_for(&scene), &s, 0);
    // The sun is at azimuth 20° from +X towards +Z, elevation 30°: it lights the white
    // sphere's +X side (the camera's right); the −X side gets only sky light.
    let centre = [0.0, 0.5, 0.0];
    let c = pose.project(centre, s.width, s.height);
    let r = pose.pixel_radius(centre, 0.5, s.height);
    let lit = luminance(mean_in(
        &pixels,
        s.width,
        s.height,
        around((c.0 + 0.55 * r, c.1), 1),
    ));
    let shade = luminance(mean_in(
        &pixels,
        s.width,
        s.height,
        around((c.0 - 0.55 * r, c.1), 1),
    ));
    assert!(
        lit > 1.5 * shade && shade > 0.0,
        "sun-lit side {lit} vs shaded side {shade}"
    );
}

// ---------------------------------------------------------------------------------
// Cross-process bit identity.

/// Set in a child process: the file to write the rendered tile's bytes to.
const CHILD_OUT: &str = "TESSERA_SCENES_TEST_CHILD_OUT";
const CROSS_PROCESS_TEST: &str = "the_same_tile_is_bit_identical_in_two_processes";

fn cross_process_tile() -> Vec<u8> {
    let scene = load("textured.glb");
    let s = settings(64, 40, 4, None);
    let rect = TileRect {
        x: 13,
        y: 7,
        w: 29,
        h: 21,
    };
    renderer_for(&scene).render(&s, 5, rect).unwrap()
}

#[test]
fn the_same_tile_is_bit_identical_in_two_processes() {
    if let Ok(out) = std::env::var(CHILD_OUT) {
        std::fs::write(out, cross_process_tile()).unwrap();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("tile-{i}.bin"));
        let status = std::process::Command::new(&exe)
            .args([CROSS_PROCESS_TEST, "--exact", "--test-threads=1"])
            .env(CHILD_OUT, &out)
            .status()
            .unwrap();
        assert!(status.success(), "child {i} failed: {status}");
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(!outputs[0].is_empty());
    assert!(
        outputs[0] == outputs[1],
        "two processes rendered different bytes"
    );
    assert!(
        outputs[0] == cross_process_tile(),
        "a child process and this process rendered different bytes"
    );
}

/// Mesa's llvmpipe silently ends a shader's loops after 65535 iterations per SIMD group;
/// a small tile with many samples in one dispatch used to lose path segments that way
/// (the furnace came out at 0.72 instead of 1 at 24×24, 1024 spp). The renderer now
/// splits samples over dispatches and checks the shader's own loop counts.
#[test]
fn many_samples_on_a_small_tile_lose_nothing() {
    let scene = load("furnace.glb");
    let r = renderer_for(&scene);
    let mut s = settings(24, 24, 1024, Some("camera"));
    s.max_bounces = 8;
    let pixels = render(&r, &s, 0);
    // Everything in view is the background (1) or a sphere that conserves energy (≈ 1).
    let mean = mean_in(&pixels, s.width, s.height, (0, 0, 24, 24));
    for c in mean {
        assert!((c - 1.0).abs() < 0.02, "furnace mean {mean:?} should be 1");
    }
}
