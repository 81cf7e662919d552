//! GPU tests of the glTF material model, textures, alpha, environment, photometric light
//! units, orthographic cameras and animation; each fails without the feature it names.

mod common;

use common::{decode, exr, gpu, png, pose, srgb_to_linear, GltfBuilder};
use serde_json::{json, Value};
use tessera_protocol::{RenderSettings, TileRect, TileRenderer};
use tessera_renderer::{LoadOptions, Scene, SceneRenderer};

const PI: f64 = std::f64::consts::PI;

fn load(b: &GltfBuilder) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let path = b.write_glb(dir.path(), "scene.glb");
    Scene::load(&path, &LoadOptions::default()).unwrap()
}

fn load_err(b: &GltfBuilder) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = b.write_glb(dir.path(), "scene.glb");
    match Scene::load(&path, &LoadOptions::default()) {
        Ok(_) => panic!("the scene should be refused"),
        Err(e) => e.to_string(),
    }
}

fn settings(width: u32, height: u32, spp: u32, max_bounces: u32) -> RenderSettings {
    RenderSettings {
        width,
        height,
        spp,
        max_bounces,
        seed: 0x0005_eed0_f7e5_5e7a,
        camera: None,
        frame_rate: Default::default(),
    }
}

fn full(w: u32, h: u32) -> TileRect {
    TileRect { x: 0, y: 0, w, h }
}

fn render(b: &GltfBuilder, s: &RenderSettings) -> Vec<[f32; 4]> {
    let scene = load(b);
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    decode(&r.render_tile(s, 0, full(s.width, s.height)).unwrap())
}

fn env(value: Value) -> Option<Value> {
    Some(json!({ "tessera_environment": value }))
}

fn mean(pixels: &[[f32; 4]], k: usize) -> f64 {
    pixels.iter().map(|p| f64::from(p[k])).sum::<f64>() / pixels.len() as f64
}

/// An emissive quad filling an orthographic 2×2 view at z = 0, facing +Z, with UVs
/// (0,0) at the top-left corner and `uv_max` at the bottom-right, textured by `tex_info`
/// as its emissiveTexture. Base colour black and a black background: each pixel is the
/// texel value.
fn emissive_quad(b: &mut GltfBuilder, tex_info: Value, uv_max: f32, uv1: bool) -> usize {
    let m = b.raw_material(json!({
        "pbrMetallicRoughness": {"baseColorFactor": [0, 0, 0, 1], "metallicFactor": 0.0},
        "emissiveFactor": [1.0, 1.0, 1.0],
        "emissiveTexture": tex_info,
    }));
    let p = [
        [-1.0, 1.0, 0.0],
        [1.0, 1.0, 0.0],
        [1.0, -1.0, 0.0],
        [-1.0, -1.0, 0.0],
    ];
    let uv = [[0.0, 0.0], [uv_max, 0.0], [uv_max, uv_max], [0.0, uv_max]];
    let zeros = [[0.0f32; 2]; 4];
    let (uv0, uv1s) = if uv1 {
        (Some(&zeros[..]), Some(&uv[..]))
    } else {
        (Some(&uv[..]), None)
    };
    let mesh = b.mesh_full("Quad", &p, None, uv0, uv1s, None, &[0, 3, 2, 0, 2, 1], m);
    b.mesh_node(mesh);
    b.ortho_camera(
        "Ortho",
        1.0,
        1.0,
        [0.0, 0.0, 5.0],
        [0.0; 3],
        [0.0, 1.0, 0.0],
    );
    m
}

/// A 4×4 RGBA texture whose texel (x, y) has red = 16·x + 10, green = 16·y + 10.
fn gradient_png() -> Vec<u8> {
    let mut rgba = Vec::new();
    for y in 0..4u8 {
        for x in 0..4u8 {
            rgba.extend_from_slice(&[16 * x + 10, 16 * y + 10, 200, 255]);
        }
    }
    png(4, 4, &rgba)
}

/// Red and green codes of the texel each of the 8 pixel columns / rows shows.
fn texel_codes(pixels: &[[f32; 4]], width: usize) -> Vec<(u8, u8)> {
    let code = |v: f32| {
        (0..=255u8)
            .min_by_key(|&c| ((f64::from(srgb_to_linear(c)) - f64::from(v)).abs() * 1e9) as u64)
    };
    (0..width)
        .map(|i| {
            let p = pixels[i * width + i];
            (code(p[0]).unwrap(), code(p[1]).unwrap())
        })
        .collect()
}

#[test]
fn emissive_texture_shows_exact_texels_with_wrap_modes_transform_and_texcoord_1() {
    let s = settings(8, 8, 4, 0);
    let codes = |sampler: Value, extra: Value, uv_max: f32, uv1: bool| {
        let mut b = GltfBuilder::new();
        let img = b.image_png(&gradient_png());
        let tex = b.texture(img, Some(sampler));
        let mut info = json!({"index": tex});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                info[k] = v;
            }
        }
        emissive_quad(&mut b, info, uv_max, uv1);
        let pixels = render(&b, &s);
        // Every texel's sRGB value comes back exactly (nearest filtering, 2×2 pixels each).
        // (Canonical bytes are half floats, so the table value is compared after the
        // same rounding.)
        let half = |v: f32| half::f16::from_f32(v).to_f32();
        for p in &pixels {
            assert!(
                (0..=255u8).any(|c| half(srgb_to_linear(c)) == p[2]),
                "blue {} is not an sRGB code",
                p[2]
            );
        }
        texel_codes(&pixels, 8)
    };
    let nearest = |wrap: u32| json!({"magFilter": 9728, "wrapS": wrap, "wrapT": wrap});
    // UV 0..1: each texel covers 2×2 pixels along the diagonal.
    let plain = codes(nearest(10497), json!({}), 1.0, false);
    let expect =
        |xs: [u8; 8]| -> Vec<(u8, u8)> { xs.iter().map(|&x| (16 * x + 10, 16 * x + 10)).collect() };
    assert_eq!(plain, expect([0, 0, 1, 1, 2, 2, 3, 3]));
    // UV 0..2: REPEAT, CLAMP_TO_EDGE and MIRRORED_REPEAT differ in the second half.
    assert_eq!(
        codes(nearest(10497), json!({}), 2.0, false),
        expect([0, 1, 2, 3, 0, 1, 2, 3])
    );
    assert_eq!(
        codes(nearest(33071), json!({}), 2.0, false),
        expect([0, 1, 2, 3, 3, 3, 3, 3])
    );
    assert_eq!(
        codes(nearest(33648), json!({}), 2.0, false),
        expect([0, 1, 2, 3, 3, 2, 1, 0])
    );
    // KHR_texture_transform offset by half the texture (REPEAT).
    let shifted = codes(
        nearest(10497),
        json!({"extensions": {"KHR_texture_transform": {"offset": [0.5, 0.5]}}}),
        1.0,
        false,
    );
    assert_eq!(shifted, expect([2, 2, 3, 3, 0, 0, 1, 1]));
    // TEXCOORD_1 selected by texCoord (TEXCOORD_0 is all zeros), and by the transform.
    assert_eq!(
        codes(nearest(10497), json!({"texCoord": 1}), 1.0, true),
        plain
    );
    let via_transform = codes(
        nearest(10497),
        json!({"extensions": {"KHR_texture_transform": {"texCoord": 1}}}),
        1.0,
        true,
    );
    assert_eq!(via_transform, plain);
    assert_eq!(codes(nearest(10497), json!({}), 1.0, true), expect([0; 8]));
}

#[test]
fn bilinear_filtering_blends_decoded_texels() {
    // A 2×1 texture black | white, CLAMP_TO_EDGE, bilinear: the middle of the quad is
    // the average of the *linear* values (0.5), not of the sRGB codes.
    let mut b = GltfBuilder::new();
    let img = b.image_png(&png(2, 1, &[0, 0, 0, 255, 255, 255, 255, 255]));
    let tex = b.texture(img, Some(json!({"wrapS": 33071, "wrapT": 33071})));
    emissive_quad(&mut b, json!({"index": tex}), 1.0, false);
    // The view is 16 × 1 pixels: ymag 1/16 makes it exactly as wide as the quad.
    b.cameras[0]["orthographic"]["ymag"] = json!(0.0625);
    let s = settings(16, 1, 64, 0);
    let pixels = render(&b, &s);
    // Columns 7 and 8 straddle u = 0.5: their mean is 0.5 (to the jitter noise).
    let mid = (f64::from(pixels[7][0]) + f64::from(pixels[8][0])) / 2.0;
    assert!((mid - 0.5).abs() < 0.02, "middle {mid}");
    assert!(pixels[0][0] < 1e-6 && pixels[15][0] > 0.999, "{pixels:?}");
}

#[test]
fn bilinear_footprints_wrap_across_the_edges() {
    // A 2×1 texture white | black, bilinear. At the quad's left edge the footprint is
    // texels −1 and 0, at its right edge texels 1 and 2: REPEAT wraps them to 1, 0 and
    // 1, 0 (a blend of black and white at both edges), MIRRORED_REPEAT to 0, 0 and 1, 1
    // (white at the left, black at the right), CLAMP_TO_EDGE likewise.
    for (wrap, left, right) in [
        (10497, 0.5625, 0.4375),
        (33648, 1.0, 0.0),
        (33071, 1.0, 0.0),
    ] {
        let mut b = GltfBuilder::new();
        let img = b.image_png(&png(2, 1, &[255, 255, 255, 255, 0, 0, 0, 255]));
        let tex = b.texture(img, Some(json!({"wrapS": wrap, "wrapT": wrap})));
        emissive_quad(&mut b, json!({"index": tex}), 1.0, false);
        b.cameras[0]["orthographic"]["ymag"] = json!(0.0625);
        let pixels = render(&b, &settings(16, 1, 64, 0));
        // Pixel 0 covers u in [0, 1/16]: the footprint's weight on its second texel is
        // 0.5 to 0.625, 0.5625 on average (the jitter is uniform); pixel 15 mirrors it.
        let (l, r) = (f64::from(pixels[0][0]), f64::from(pixels[15][0]));
        assert!(
            (l - left).abs() < 0.02 && (r - right).abs() < 0.02,
            "wrap {wrap}: left {l} (want {left}), right {r} (want {right})"
        );
    }
}

fn furnace(material: Value) -> (f64, f64) {
    let mut b = GltfBuilder::new();
    let m = b.raw_material(material);
    let sphere = b.sphere("Ball", [0.0; 3], 1.0, m);
    b.mesh_node(sphere);
    b.camera("Cam", 0.5, [0.0, 0.0, 4.0], [0.0; 3], [0.0, 1.0, 0.0]);
    b.scene_extras = env(json!({"color": [1.0, 1.0, 1.0], "strength": 1.0}));
    let pixels = render(&b, &settings(24, 24, 64, 32));
    // The central 8×8 pixels see the sphere only (its image is ~15 px wide).
    let centre: Vec<[f32; 4]> = (8..16)
        .flat_map(|y| (8..16).map(move |x| (x, y)))
        .map(|(x, y)| pixels[y * 24 + x])
        .collect();
    (mean(&centre, 1), f64::from(pixels[0][1]))
}

#[test]
fn white_furnace_diffuse_sphere_matches_the_background() {
    // metallic 0, base colour 1, roughness 1 in a uniform white environment: a lossless
    // surface is invisible. (Before the energy fix the dielectric lost about 3 % here; the
    // base is now weighted by what the compensated specular layer leaves.)
    let (centre, corner) = furnace(json!({
        "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    }));
    assert_eq!(corner, 1.0, "the background is the environment colour");
    assert!(centre > 0.98 && centre < 1.01, "white furnace: {centre}");
}

#[test]
fn metal_furnace_never_creates_energy() {
    // A white metal sphere (shading normals interpolated over a tessellated sphere). With
    // the multiple-scattering compensation it is white at every roughness (before it, the
    // single-scattering albedo near normal incidence was about 0.91 at roughness 0.5 and
    // 0.31 at roughness 1).
    for roughness in [0.05, 0.5, 1.0] {
        let (centre, _) = furnace(json!({
            "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 1.0, "roughnessFactor": roughness}
        }));
        assert!(centre <= 1.01, "roughness {roughness}: {centre} > 1");
        assert!(centre >= 0.97, "roughness {roughness}: {centre} too dark");
    }
}

/// A white dielectric floor (1000 × 1000) seen straight down by an orthographic camera.
fn floor() -> GltfBuilder {
    let mut b = GltfBuilder::new();
    let m = b.raw_material(json!({
        "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    }));
    let q = b.quad(
        "Floor",
        [
            [-500.0, 0.0, -500.0],
            [-500.0, 0.0, 500.0],
            [500.0, 0.0, 500.0],
            [500.0, 0.0, -500.0],
        ],
        m,
    );
    b.mesh_node(q);
    b.ortho_camera(
        "Down",
        0.1,
        0.1,
        [0.0, 1.0, 0.0],
        [0.0; 3],
        [0.0, 0.0, -1.0],
    );
    b
}

/// π × the BRDF of the white rough dielectric viewed along the normal, lit from cos θ =
/// `cl`: `(1 − s·E_d) + s·F·D·V·π` with the energy terms of [`Albedo`] at n·v = 1,
/// roughness 1 (see render.rs's `rough_dielectric_pi`).
fn brdf_pi(cl: f64) -> f64 {
    let a = Albedo::new(1.0, 1.0);
    let s = a.ms_scale(0.04);
    let vh = ((1.0 + cl) / 2.0).sqrt();
    let f = 0.04 + 0.96 * (1.0 - vh).powi(5);
    (1.0 - s * a.schlick(0.04)) + s * f * 0.5 / (cl + 1.0)
}

#[test]
fn photometric_point_light_683_cd_at_1_m_gives_radiance_over_pi() {
    let mut b = floor();
    b.light(
        json!({"type": "point", "intensity": 683.0}),
        pose([0.0, 1.0, 0.0], [0.0, -1.0, 0.0]),
    );
    // Light at 1 m straight above the point seen: E = 683 cd / 683 lm/W / 1 m² = 1 W/m².
    let pixels = render(&b, &settings(4, 4, 4, 0));
    let expected = brdf_pi(1.0) / PI;
    let got = mean(&pixels, 0);
    assert!(
        (got / expected - 1.0).abs() < 0.01,
        "got {got}, expected {expected}"
    );
}

#[test]
fn environment_image_irradiance_matches_analytic_and_is_importance_sampled() {
    // 128×64 equirectangular: black except the top 4 rows (θ < π/16) at radiance 50.
    let (w, h, rows, l) = (128u32, 64u32, 4u32, 50.0f32);
    let mut rgb = vec![0.0f32; (w * h * 3) as usize];
    for v in rgb.iter_mut().take((w * rows * 3) as usize) {
        *v = l;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sky.exr"), exr(w, h, &rgb)).unwrap();
    let mut b = floor();
    b.scene_extras = env(json!({"image": "sky.exr", "rotation": 30.0}));
    let path = b.write_glb(dir.path(), "env.glb");
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    assert!(scene.stats().texture_bytes >= u64::from(w * h) * 16);
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let s = settings(8, 8, 16, 0);
    let pixels = decode(&r.render_tile(&s, 0, full(8, 8)).unwrap());
    // E = L π sin²θ_k for a cap of half-angle θ_k around the normal; the BRDF barely
    // varies inside the cap (cos θ ≥ 0.98).
    let theta_k = PI * f64::from(rows) / f64::from(h);
    let e = f64::from(l) * PI * theta_k.sin().powi(2);
    let expected = brdf_pi(theta_k.cos()) / PI * e;
    let got = mean(&pixels, 0);
    assert!(
        (got / expected - 1.0).abs() < 0.04,
        "got {got}, expected {expected}"
    );
    // Importance sampling: the per-pixel relative RMS deviation at 16 samples. A cosine
    // (BSDF-only) sampler finds the cap (cos-weighted probability p = sin²θ_k ≈ 0.038)
    // about 0.6 times in 16 samples: its relative standard deviation would be
    // sqrt((1 − p) / (16 p)) ≈ 1.26, far above this bound.
    let rms = (pixels
        .iter()
        .map(|p| (f64::from(p[0]) / expected - 1.0).powi(2))
        .sum::<f64>()
        / pixels.len() as f64)
        .sqrt();
    let uniform = ((1.0 - theta_k.sin().powi(2)) / (16.0 * theta_k.sin().powi(2))).sqrt();
    assert!(
        rms < 0.25 && rms < uniform / 5.0,
        "relative rms {rms} (cosine sampling: {uniform})"
    );
}

#[test]
fn camera_rays_that_miss_see_the_environment_mapped_like_blender() {
    // 4×2 image: columns are distinct colours; looking along glTF −Z (Blender +Y) must show
    // u = 0.25 (column 1), along +X u = 0.5 (column 2), along +Z u = 0.75 (column 3).
    let (w, h) = (4u32, 2u32);
    let mut rgb = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(&[x as f32 + 1.0, 0.0, 0.0]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sky.exr"), exr(w, h, &rgb)).unwrap();
    for (target, column) in [
        ([0.0, 0.0, -1.0], 1.0),
        ([1.0, 0.0, 0.0], 2.0),
        ([0.0, 0.0, 1.0], 3.0),
    ] {
        let mut b = GltfBuilder::new();
        b.camera("Cam", 0.001, [0.0; 3], target, [0.0, 1.0, 0.0]);
        b.scene_extras = env(json!({"image": "sky.exr"}));
        let path = b.write_glb(dir.path(), "env.glb");
        let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
        let r = SceneRenderer::new(gpu(), &scene).unwrap();
        let p = decode(&r.render_tile(&settings(1, 1, 1, 0), 0, full(1, 1)).unwrap());
        // Exactly between two texel centres horizontally: the bilinear mean of columns.
        let expected = column + 0.5;
        assert!(
            (f64::from(p[0][0]) - expected).abs() < 0.01,
            "{target:?}: {p:?}"
        );
    }
}

#[test]
fn alpha_mask_cuts_out_and_blend_is_stochastic() {
    // A black quad in a white environment, its texture's alpha 0 on the left half.
    let make = |mode: &str, alpha: f32| {
        let mut b = GltfBuilder::new();
        let img = b.image_png(&png(2, 1, &[0, 0, 0, 0, 0, 0, 0, 255]));
        let tex = b.texture(img, Some(json!({"magFilter": 9728, "wrapS": 33071})));
        let m = b.raw_material(json!({
            "pbrMetallicRoughness": {"baseColorFactor": [0, 0, 0, alpha], "metallicFactor": 0.0,
                                     "baseColorTexture": {"index": tex}},
            "alphaMode": mode,
        }));
        let p = [
            [-1.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
            [1.0, -1.0, 0.0],
            [-1.0, -1.0, 0.0],
        ];
        let uv = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let mesh = b.mesh_full(
            "Quad",
            &p,
            None,
            Some(&uv),
            None,
            None,
            &[0, 3, 2, 0, 2, 1],
            m,
        );
        b.mesh_node(mesh);
        b.ortho_camera(
            "Ortho",
            1.0,
            1.0,
            [0.0, 0.0, 5.0],
            [0.0; 3],
            [0.0, 1.0, 0.0],
        );
        b.scene_extras = env(json!({"color": [1, 1, 1]}));
        render(&b, &settings(8, 8, 64, 0))
    };
    let opaque = make("OPAQUE", 1.0);
    let masked = make("MASK", 1.0);
    let left = |p: &[[f32; 4]]| {
        mean(
            &(0..8)
                .flat_map(|y| (0..4).map(move |x| p[y * 8 + x]))
                .collect::<Vec<_>>(),
            0,
        )
    };
    let right = |p: &[[f32; 4]]| {
        mean(
            &(0..8)
                .flat_map(|y| (4..8).map(move |x| p[y * 8 + x]))
                .collect::<Vec<_>>(),
            0,
        )
    };
    assert!(
        left(&opaque) < 0.1,
        "opaque ignores alpha: {}",
        left(&opaque)
    );
    assert_eq!(left(&masked), 1.0, "the cut-out half shows the background");
    assert!(
        right(&masked) < 0.1,
        "the kept half stays dark: {}",
        right(&masked)
    );
    // BLEND with alpha 0.25 on the right half: 75 % of the camera rays pass through.
    let blended = make("BLEND", 0.25);
    let r = right(&blended);
    assert!((r - 0.75).abs() < 0.05, "blend coverage: {r}");
}

#[test]
fn normal_map_tilts_shading_as_predicted() {
    // A floor lit by a directional light 45° from its normal. A constant normal map that
    // tilts the normal 45° towards the light makes the diffuse term cos 0 instead of cos
    // 45°; a flat normal map changes nothing. With and without TANGENT (MikkTSpace).
    let shade = |texel: Option<[u8; 3]>, tangents: bool| {
        let mut b = GltfBuilder::new();
        let mut mat = json!({"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0}});
        if let Some(t) = texel {
            let img = b.image_png(&png(1, 1, &[t[0], t[1], t[2], 255]));
            let tex = b.texture(img, None);
            mat["normalTexture"] = json!({"index": tex});
        }
        let m = b.raw_material(mat);
        let p = [
            [-50.0, 0.0, -50.0],
            [-50.0, 0.0, 50.0],
            [50.0, 0.0, 50.0],
            [50.0, 0.0, -50.0],
        ];
        let n = [[0.0, 1.0, 0.0]; 4];
        // u along +X, v along +Z: tangent +X, bitangent +Z.
        let uv = [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]];
        let t = [[1.0, 0.0, 0.0, 1.0]; 4];
        let tan = tangents.then_some(&t[..]);
        let mesh = b.mesh_full(
            "Floor",
            &p,
            Some(&n),
            Some(&uv),
            None,
            tan,
            &[0, 1, 2, 0, 2, 3],
            m,
        );
        b.mesh_node(mesh);
        b.ortho_camera(
            "Down",
            0.1,
            0.1,
            [0.0, 1.0, 0.0],
            [0.0; 3],
            [0.0, 0.0, -1.0],
        );
        // Light from +X, 45° above the horizon; 683 lux = 1 W/m² at normal incidence.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        b.light(
            json!({"type": "directional", "intensity": 683.0}),
            pose([0.0, 5.0, 0.0], [-h, -h, 0.0]),
        );
        mean(&render(&b, &settings(4, 4, 4, 0)), 0)
    };
    let none = shade(None, false);
    let flat = shade(Some([128, 128, 255]), true);
    // Tangent-space (sin 45°, 0, cos 45°): towards +X (the tangent), i.e. the light.
    let tilted = [
        (0.5 + 0.5 * std::f32::consts::FRAC_1_SQRT_2) * 255.0,
        128.0,
        (0.5 + 0.5 * std::f32::consts::FRAC_1_SQRT_2) * 255.0,
    ]
    .map(|v: f32| v.round() as u8);
    let towards = shade(Some(tilted), true);
    let towards_mikk = shade(Some(tilted), false);
    assert!(
        (flat / none - 1.0).abs() < 0.01,
        "flat map {flat} vs none {none}"
    );
    let ratio = towards / none;
    assert!(
        ratio > 1.3 && ratio < 1.5,
        "tilted/flat = {ratio}, expected about √2"
    );
    assert!(
        (towards_mikk / towards - 1.0).abs() < 0.01,
        "mikktspace {towards_mikk} vs TANGENT {towards}"
    );
}

#[test]
fn orthographic_view_does_not_depend_on_distance() {
    let at = |z: f32| {
        let mut b = GltfBuilder::new();
        let img = b.image_png(&gradient_png());
        let tex = b.texture(img, Some(json!({"magFilter": 9728})));
        emissive_quad(&mut b, json!({"index": tex}), 1.0, false);
        // Replace the camera node's matrix: same direction, another distance.
        let last = b.nodes.len() - 1;
        b.nodes[last]["matrix"] = json!(common::look_at([0.0, 0.0, z], [0.0; 3], [0.0, 1.0, 0.0]));
        render(&b, &settings(8, 8, 2, 0))
    };
    let near = at(2.0);
    assert_eq!(near, at(50.0));
    assert!(near.iter().all(|p| p[2] > 0.5), "the quad fills the view");
}

#[test]
fn animated_node_moves_between_frames() {
    // An emissive quad translated from x = -10 (out of view) at t = 0 to x = 0 at t = 1 s.
    let mut b = GltfBuilder::new();
    let m = b.material("Glow", [0.0; 3], [1.0, 1.0, 1.0], 1.0);
    let q = b.quad(
        "Glow",
        [
            [-1.0, -1.0, 0.0],
            [1.0, -1.0, 0.0],
            [1.0, 1.0, 0.0],
            [-1.0, 1.0, 0.0],
        ],
        m,
    );
    let node = b.node(json!({"mesh": q, "translation": [-10.0, 0.0, 0.0]}));
    b.camera("Cam", 0.8, [0.0, 0.0, 3.0], [0.0; 3], [0.0, 1.0, 0.0]);
    let input = b.float_accessor(&[0.0, 1.0], 1);
    let output = b.float_accessor(&[-10.0, 0.0, 0.0, 0.0, 0.0, 0.0], 3);
    b.animations.push(
        json!({"channels": [{"sampler": 0, "target": {"node": node, "path": "translation"}}],
        "samplers": [{"input": input, "output": output}]}),
    );
    let scene = load(&b);
    assert!(scene.is_animated() && scene.stats().animated);
    assert!(
        !scene.warnings().iter().any(|w| w.contains("animation")),
        "{:?}",
        scene.warnings()
    );
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let s = settings(8, 8, 2, 0);
    let frame = |f: u32| mean(&decode(&r.render_tile(&s, f, full(8, 8)).unwrap()), 0);
    assert_eq!(frame(0), 0.0, "out of view at frame 0");
    let at_24 = frame(24); // 1 s at 24 fps
    assert!(at_24 > 0.5, "in view at frame 24: {at_24}");
    assert_eq!(frame(0), 0.0, "frame 0 again after frame 24");
    assert_eq!(frame(24), at_24, "frame 24 is deterministic");
}

#[test]
fn tile_equals_crop_with_textures_environment_and_alpha() {
    let mut b = GltfBuilder::new();
    let img = b.image_png(&gradient_png());
    let tex = b.texture(img, None);
    let m = b.raw_material(json!({
        "pbrMetallicRoughness": {"baseColorTexture": {"index": tex}, "metallicRoughnessTexture": {"index": tex},
                                 "metallicFactor": 0.7, "roughnessFactor": 0.6},
        "normalTexture": {"index": tex, "scale": 0.5},
        "alphaMode": "MASK", "alphaCutoff": 0.3,
    }));
    let ball = b.sphere("Ball", [0.0; 3], 1.0, m);
    b.mesh_node(ball);
    b.camera("Cam", 0.9, [0.3, 0.5, 3.0], [0.0; 3], [0.0, 1.0, 0.0]);
    let dir = tempfile::tempdir().unwrap();
    let mut rgb = Vec::new();
    for y in 0..16 {
        for x in 0..32 {
            rgb.extend_from_slice(&[x as f32 * 0.1, y as f32 * 0.2, 1.0]);
        }
    }
    std::fs::write(dir.path().join("sky.exr"), exr(32, 16, &rgb)).unwrap();
    b.scene_extras = env(json!({"image": "sky.exr", "strength": 2.0}));
    let path = b.write_glb(dir.path(), "t.glb");
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let (w, h) = (24, 20);
    let s = settings(w, h, 3, 3);
    let frame = r.render_tile(&s, 2, full(w, h)).unwrap();
    let mut state = 0x1234_5678u32;
    let mut next = |n: u32| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) % n
    };
    for _ in 0..6 {
        let tw = 1 + next(9);
        let th = 1 + next(9);
        let rect = TileRect {
            x: next(w - tw + 1),
            y: next(h - th + 1),
            w: tw,
            h: th,
        };
        let tile = r.render_tile(&s, 2, rect).unwrap();
        let mut crop = Vec::new();
        for row in rect.y..rect.y + rect.h {
            let start = (row * w + rect.x) as usize * 8;
            crop.extend_from_slice(&frame[start..start + rect.w as usize * 8]);
        }
        assert_eq!(tile, crop, "tile {rect:?}");
    }
}

#[test]
fn loader_rejections_name_the_field() {
    // Bad sampler enum.
    let mut b = GltfBuilder::new();
    let img = b.image_png(&gradient_png());
    let tex = b.texture(img, Some(json!({"wrapS": 1234})));
    emissive_quad(&mut b, json!({"index": tex}), 1.0, false);
    let err = load_err(&b);
    assert!(err.contains("samplers[0].wrapS"), "{err}");

    // Texture index out of range.
    let mut b = GltfBuilder::new();
    emissive_quad(&mut b, json!({"index": 7}), 1.0, false);
    let err = load_err(&b);
    assert!(err.contains("materials[0].emissiveTexture.index"), "{err}");

    // Corrupt PNG (valid header, truncated data).
    let mut b = GltfBuilder::new();
    let mut bad = gradient_png();
    bad.truncate(40);
    let img = b.image_png(&bad);
    let tex = b.texture(img, None);
    emissive_quad(&mut b, json!({"index": tex}), 1.0, false);
    let err = load_err(&b);
    assert!(
        err.contains("images[0]")
            && err.contains("cannot decode")
            && err.contains("materials[0].emissiveTexture"),
        "{err}"
    );

    // Missing environment image, and a bad environment field.
    let mut b = GltfBuilder::new();
    b.scene_extras = env(json!({"image": "nowhere.hdr"}));
    let err = load_err(&b);
    assert!(
        err.contains("scenes[0].extras.tessera_environment.image"),
        "{err}"
    );
    b.scene_extras = env(json!({"strength": "bright"}));
    let err = load_err(&b);
    assert!(
        err.contains("scenes[0].extras.tessera_environment.strength"),
        "{err}"
    );
    b.scene_extras = env(json!({"colour": [1, 1, 1]}));
    let err = load_err(&b);
    assert!(err.contains("unknown field \"colour\""), "{err}");
}

/// Albedo (rgb) of a large flat plane with `material` in a uniform white environment,
/// seen by an orthographic camera at `mu_o` = cos θ from the plane's normal: every pixel
/// sees the same view angle, so the mean is the directional albedo at μo (a plane cannot
/// see itself, so there is one bounce).
fn plane_furnace(material: Value, mu_o: f64, spp: u32) -> [f64; 3] {
    let mut b = GltfBuilder::new();
    let m = b.raw_material(material);
    let q = b.quad(
        "Plane",
        [
            [-500.0, 0.0, -500.0],
            [-500.0, 0.0, 500.0],
            [500.0, 0.0, 500.0],
            [500.0, 0.0, -500.0],
        ],
        m,
    );
    b.mesh_node(q);
    let sin_o = (1.0 - mu_o * mu_o).max(0.0).sqrt();
    let eye = [(10.0 * sin_o) as f32, (10.0 * mu_o) as f32, 0.0];
    b.ortho_camera("View", 0.05, 0.05, eye, [0.0; 3], [0.0, 0.0, -1.0]);
    b.scene_extras = env(json!({"color": [1.0, 1.0, 1.0], "strength": 1.0}));
    let pixels = render(&b, &settings(8, 8, spp, 4));
    [mean(&pixels, 0), mean(&pixels, 1), mean(&pixels, 2)]
}

fn pbr(base: [f64; 3], metallic: f64, roughness: f64) -> Value {
    json!({"pbrMetallicRoughness": {"baseColorFactor": [base[0], base[1], base[2], 1.0],
        "metallicFactor": metallic, "roughnessFactor": roughness}})
}

/// GGX energy terms at view cosine `mu` and glTF roughness `r`, by a quadrature that is
/// independent of the renderer's tables: half vectors drawn through the inverse CDF of
/// D(h)·(n·h) (midpoint rule), `E = ∫ G2 (o·h) / (μ (n·h))`, height-correlated Smith.
struct Albedo {
    /// Fresnel 1.
    e: f64,
    /// Weight (1 − o·h)⁵: Schlick albedo = f0 e + (1 − f0) e5.
    e5: f64,
    /// 2 ∫ E(μ) μ dμ.
    e_avg: f64,
}

fn ggx_terms(mu: f64, alpha: f64, n_xi: usize, n_phi: usize) -> (f64, f64) {
    let a2 = alpha * alpha;
    let sin_o = (1.0 - mu * mu).max(0.0).sqrt();
    let s_o = (a2 + (1.0 - a2) * mu * mu).sqrt();
    let (mut e, mut e5) = (0.0, 0.0);
    for i in 0..n_xi {
        let xi = (i as f64 + 0.5) / n_xi as f64;
        let cos2 = (1.0 - xi) / (1.0 + (a2 - 1.0) * xi);
        let (nh, sin_h) = (cos2.sqrt(), (1.0 - cos2).max(0.0).sqrt());
        for k in 0..n_phi {
            let phi = PI * (k as f64 + 0.5) / n_phi as f64;
            let h = [sin_h * phi.cos(), sin_h * phi.sin(), nh];
            let oh = sin_o * h[0] + mu * h[2];
            let mu_i = 2.0 * oh * h[2] - mu;
            if oh <= 0.0 || mu_i <= 0.0 {
                continue;
            }
            let s_i = (a2 + (1.0 - a2) * mu_i * mu_i).sqrt();
            // G2 / (μ_o) with G2 = 2 μo μi / (μi s_o + μo s_i).
            let g2_over_mu = 2.0 * mu_i / (mu_i * s_o + mu * s_i);
            let v = g2_over_mu * oh / nh;
            e += v;
            e5 += v * (1.0 - oh).powi(5);
        }
    }
    let n = (n_xi * n_phi) as f64;
    (e / n, e5 / n)
}

impl Albedo {
    fn new(mu: f64, roughness: f64) -> Albedo {
        let alpha = (roughness * roughness).max(0.001);
        let (e, e5) = ggx_terms(mu, alpha, 1024, 256);
        let n_mu = 64;
        let e_avg = (0..n_mu)
            .map(|j| {
                let m = (j as f64 + 0.5) / n_mu as f64;
                2.0 * ggx_terms(m, alpha, 256, 64).0 * m / n_mu as f64
            })
            .sum();
        Albedo { e, e5, e_avg }
    }

    /// Single-scattering albedo with Schlick F0 `f0`.
    fn schlick(&self, f0: f64) -> f64 {
        f0 * self.e + (1.0 - f0) * self.e5
    }

    /// Average Schlick Fresnel over the hemisphere (cosine-weighted): f0 + (1 − f0)/21.
    fn fss(f0: f64) -> f64 {
        f0 + (1.0 - f0) / 21.0
    }

    /// The lobe scale `1 + Fms (1 − E) / E`, Fms = Fss E_avg / (1 − Fss (1 − E_avg)).
    fn ms_scale(&self, f0: f64) -> f64 {
        let fss = Albedo::fss(f0);
        let fms = fss * self.e_avg / (1.0 - fss * (1.0 - self.e_avg));
        1.0 + fms * (1.0 - self.e) / self.e
    }
}

#[test]
fn dielectric_furnace_conserves_energy_at_every_roughness_and_view() {
    // White base, metallic 0, in a uniform white environment. Appendix B's fresnel_mix
    // weighted the base by 1 − F(v·h) per direction, which reflected up to 1.54 at grazing
    // views of smooth surfaces (roughness 0.05, μ = 0.1) and lost ~3 % at roughness 1; with
    // the base weighted by 1 − (compensated specular albedo at μo) it is 1 everywhere.
    for roughness in [0.05, 0.25, 0.5, 1.0] {
        for mu in [1.0, 0.5, 0.2, 0.1] {
            let a = plane_furnace(pbr([1.0; 3], 0.0, roughness), mu, 128)[1];
            assert!(
                a <= 1.01,
                "roughness {roughness}, μo {mu}: {a} creates energy"
            );
            assert!(
                a >= 0.97,
                "roughness {roughness}, μo {mu}: {a} loses energy"
            );
        }
    }
}

#[test]
fn metal_furnace_is_white_with_multiple_scattering() {
    // Before the compensation: 0.91 at roughness 0.5 and 0.31 at roughness 1 (μo = 1).
    for roughness in [0.05, 0.5, 1.0] {
        for mu in [1.0, 0.5, 0.2] {
            let a = plane_furnace(pbr([1.0; 3], 1.0, roughness), mu, 128)[1];
            assert!(
                a <= 1.01,
                "roughness {roughness}, μo {mu}: {a} creates energy"
            );
            assert!(
                a >= 0.97,
                "roughness {roughness}, μo {mu}: {a} loses energy"
            );
        }
    }
}

#[test]
fn coloured_metal_matches_the_compensated_albedo() {
    // Base (0.9, 0.6, 0.2), roughness 1: per channel, the single-scattering Schlick albedo
    // E_F times 1 + Fms (1 − E)/E (Kulla & Conty's Fms with one Fss cancelled, as Cycles
    // applies it). It never exceeds E_F + Fss (1 − E) (each extra bounce keeps at most the
    // average Fresnel), and the uncompensated renderer gave 0.28, 0.18, 0.06 at μo = 1.
    let base = [0.9, 0.6, 0.2];
    for mu in [1.0, 0.5] {
        let got = plane_furnace(pbr(base, 1.0, 1.0), mu, 256);
        let a = Albedo::new(mu, 1.0);
        for k in 0..3 {
            let f0 = base[k];
            let expected = a.schlick(f0) * a.ms_scale(f0);
            let bound = a.schlick(f0) + Albedo::fss(f0) * (1.0 - a.e);
            assert!(
                (got[k] - expected).abs() <= 0.02 * expected + 0.002,
                "μo {mu}, channel {k}: got {}, expected {expected}",
                got[k]
            );
            assert!(
                got[k] <= bound + 0.005,
                "μo {mu}, channel {k}: {} above the bound {bound}",
                got[k]
            );
            assert!(got[k] > a.schlick(f0) * 1.05, "channel {k} is compensated");
        }
    }
}

/// A 2 × 2 floor of material `m` (UV 0..1 along +X and +Z) under a directional light
/// straight above, seen from above by an orthographic camera that fits it into the frame.
fn lit_floor(b: &mut GltfBuilder, m: usize) {
    let p = [
        [-1.0, 0.0, -1.0],
        [-1.0, 0.0, 1.0],
        [1.0, 0.0, 1.0],
        [1.0, 0.0, -1.0],
    ];
    let n = [[0.0, 1.0, 0.0]; 4];
    let uv = [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]];
    let mesh = b.mesh_full(
        "Floor",
        &p,
        Some(&n),
        Some(&uv),
        None,
        None,
        &[0, 1, 2, 0, 2, 3],
        m,
    );
    b.mesh_node(mesh);
    b.ortho_camera(
        "Down",
        1.0,
        1.0,
        [0.0, 1.0, 0.0],
        [0.0; 3],
        [0.0, 0.0, -1.0],
    );
    b.light(
        json!({"type": "directional", "intensity": 683.0}),
        pose([0.0, 5.0, 0.0], [0.0, -1.0, 0.0]),
    );
}

/// A 2 × 2 floor under a light straight above, seen from above by an orthographic camera
/// that fits it into 8 × 8 pixels: each pixel covers 32 × 32 texels of a 256² base colour
/// texture (`texel(x, y)` gives its RGB code). Direct light only, one sample per pixel.
fn minified_floor(texel: Option<fn(u32, u32) -> u8>, sampler: Value, factor: f32) -> Vec<[f32; 4]> {
    let mut b = GltfBuilder::new();
    let mut pbr = json!({"baseColorFactor": [factor, factor, factor, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0});
    if let Some(texel) = texel {
        let mut rgba = Vec::new();
        for y in 0..256 {
            for x in 0..256 {
                let c = texel(x, y);
                rgba.extend_from_slice(&[c, c, c, 255]);
            }
        }
        let img = b.image_png(&png(256, 256, &rgba));
        let tex = b.texture(img, Some(sampler));
        pbr["baseColorTexture"] = json!({"index": tex});
    }
    let m = b.raw_material(json!({ "pbrMetallicRoughness": pbr }));
    lit_floor(&mut b, m);
    render(&b, &settings(8, 8, 1, 0))
}

#[test]
fn minified_textures_read_a_mip_chain_averaged_as_light() {
    // A checker of black and white texels, 32 × 32 of them per pixel. With mipmaps (the
    // sampler leaves minFilter unset) every sample reads level 5 or 6, where each texel
    // is half the light of white: all 64 pixels match a floor of base colour 0.5, to the
    // rounding of the sRGB code. (Averaging the codes instead of the light would give
    // code 128, 0.216: 43 % of it.)
    let checker: fn(u32, u32) -> u8 = |x, y| if (x + y) % 2 == 0 { 0 } else { 255 };
    let repeat = json!({"wrapS": 10497, "wrapT": 10497});
    let grey = minified_floor(None, json!({}), 0.5)[0][0];
    assert!(grey > 0.05, "the floor is lit: {grey}");
    for (i, p) in minified_floor(Some(checker), repeat.clone(), 1.0)
        .iter()
        .enumerate()
    {
        let ratio = p[0] / grey;
        assert!(
            (ratio - 1.0).abs() < 0.01,
            "pixel {i}: {} against {grey}",
            p[0]
        );
    }
    // minFilter LINEAR asks for no mipmaps: each sample reads one level-0 texel (picked
    // with its bilinear weight), black or white, so one sample per pixel is far from grey.
    let no_mips = json!({"wrapS": 10497, "wrapT": 10497, "minFilter": 9729});
    let pixels = minified_floor(Some(checker), no_mips, 1.0);
    let far = pixels
        .iter()
        .filter(|p| (p[0] / grey - 1.0).abs() > 0.5)
        .count();
    assert!(far > 48, "{far} of 64 pixels far from grey without mipmaps");
}

#[test]
fn stochastic_filtering_averages_to_the_bilinear_lookup() {
    // Magnified (one texel per 2 × 2 floor), a 256² texture's texel (0, 0) is white and
    // the rest black; minFilter LINEAR. The floor's pixel over the texel's corner (u, v
    // near 0 and 1, wrapped) reads with weights of bilinear filtering: over many samples
    // each picks one texel with its weight, and the mean is the bilinear value.
    let mut b = GltfBuilder::new();
    let mut rgba = vec![0u8; 2 * 2 * 4];
    rgba[0..4].copy_from_slice(&[255, 255, 255, 255]);
    for px in rgba.chunks_mut(4) {
        px[3] = 255;
    }
    let img = b.image_png(&png(2, 2, &rgba));
    let tex = b.texture(
        img,
        Some(json!({"minFilter": 9729, "wrapS": 33071, "wrapT": 33071})),
    );
    let m = b.raw_material(json!({"pbrMetallicRoughness": {
        "baseColorTexture": {"index": tex}, "metallicFactor": 0.0, "roughnessFactor": 1.0}}));
    lit_floor(&mut b, m);
    // 4 × 4 pixels, each a quarter texel wide. Pixel x spans texel coordinates
    // x/2 .. (x + 1)/2; the bilinear weight of texel (0, 0) along an axis is 1 up to the
    // centre of texel 0 (clamped), then falls linearly to 0 at the centre of texel 1:
    // averaged over a pixel, 1, 0.75, 0.25, 0 for x = 0..3. Axes are independent.
    let spp = 1024;
    let pixels = render(&b, &settings(4, 4, spp, 0));
    // The dielectric's specular layer adds the same light over black and white texels:
    // measure against pixel (3, 3), which reads black only.
    let (white, black) = (f64::from(pixels[0][0]), f64::from(pixels[15][0]));
    assert!(white > black + 0.05, "{pixels:?}");
    let axis = [1.0, 0.75, 0.25, 0.0];
    for y in 0..4 {
        for x in 0..4 {
            let want: f64 = axis[x] * axis[y];
            let got = (f64::from(pixels[y * 4 + x][0]) - black) / (white - black);
            // Each sample reads white or black: four standard deviations of the mean.
            let sigma = (want * (1.0 - want) / f64::from(spp)).sqrt();
            assert!(
                (got - want).abs() <= 4.0 * sigma + 1e-3,
                "pixel ({x}, {y}): {got}, bilinear {want}"
            );
        }
    }
}
