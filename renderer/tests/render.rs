//! GPU tests: tile = crop, determinism, physical sanity, and renderer errors.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{cornell_box, decode, full, gpu, pose, GltfBuilder};
use serde_json::json;
use tessera_protocol::{tile_layout, RenderSettings, TileRect, TileRenderer};
use tessera_renderer::{LoadOptions, Scene, SceneRenderer};

fn load(builder: &GltfBuilder) -> (tempfile::TempDir, Scene) {
    let dir = tempfile::tempdir().unwrap();
    let path = builder.write_glb(dir.path(), "scene.glb");
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    (dir, scene)
}

fn renderer(builder: &GltfBuilder) -> SceneRenderer {
    let (_dir, scene) = load(builder);
    SceneRenderer::new(gpu(), &scene).unwrap()
}

fn settings(width: u32, height: u32, spp: u32, max_bounces: u32) -> RenderSettings {
    RenderSettings {
        width,
        height,
        spp,
        max_bounces,
        seed: 0x0123_4567_89ab_cdef,
        camera: None,
        frame_rate: Default::default(),
    }
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

fn mean_rgb(pixels: &[[f32; 4]]) -> [f64; 3] {
    let mut sum = [0.0f64; 3];
    for p in pixels {
        for k in 0..3 {
            sum[k] += f64::from(p[k]);
        }
    }
    sum.map(|s| s / pixels.len() as f64)
}

fn assert_close(actual: f64, expected: f64, rel: f64, what: &str) {
    let err = (actual - expected).abs() / expected.abs();
    assert!(
        err <= rel,
        "{what}: got {actual}, expected {expected} (relative error {err:.4} > {rel})"
    );
}

#[test]
fn renderer_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SceneRenderer>();
    check::<Scene>();
    check::<tessera_renderer::Gpu>();
}

#[test]
fn tile_equals_crop_of_full_frame() {
    let r = renderer(&cornell_box());
    let (w, h) = (48, 40);
    let s = settings(w, h, 4, 3);
    let frame = r.render_tile(&s, 7, full(w, h)).unwrap();
    assert_eq!(frame.len(), (w * h * 8) as usize);
    // Not a trivially uniform image.
    let pixels = decode(&frame);
    assert!(pixels.iter().any(|p| p[0] != pixels[0][0]));
    assert!(pixels.iter().all(|p| p[3] == 1.0));

    let mut layouts: Vec<Vec<TileRect>> = vec![tile_layout(w, h, 16), tile_layout(w, h, 7)];
    // Pseudo-random tiles of odd sizes, including 1×1, with a fixed LCG.
    let mut state = 0x9e37_79b9u32;
    let mut next = |n: u32| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) % n
    };
    let mut random = Vec::new();
    for _ in 0..12 {
        let tw = 1 + next(13);
        let th = 1 + next(11);
        random.push(TileRect {
            x: next(w - tw + 1),
            y: next(h - th + 1),
            w: tw,
            h: th,
        });
    }
    random.push(TileRect {
        x: 0,
        y: 0,
        w: 1,
        h: 1,
    });
    random.push(TileRect {
        x: w - 1,
        y: h - 1,
        w: 1,
        h: 1,
    });
    random.push(TileRect {
        x: 0,
        y: 17,
        w,
        h: 1,
    });
    layouts.push(random);
    for tiles in layouts {
        for rect in tiles {
            let tile = r.render_tile(&s, 7, rect).unwrap();
            assert!(
                tile == crop(&frame, w, rect),
                "tile {rect} differs from the crop of the full frame"
            );
        }
    }
}

#[test]
fn separate_renderers_agree_and_seed_frame_change_bytes() {
    let a = renderer(&cornell_box());
    let b = renderer(&cornell_box());
    let s = settings(24, 20, 2, 2);
    let rect = full(24, 20);
    let bytes_a = a.render_tile(&s, 0, rect).unwrap();
    assert_eq!(bytes_a, b.render_tile(&s, 0, rect).unwrap());
    assert_eq!(
        bytes_a,
        a.render_tile(&s, 0, rect).unwrap(),
        "re-render on the same renderer"
    );
    let other_seed = RenderSettings {
        seed: s.seed ^ 1,
        ..s.clone()
    };
    assert_ne!(
        bytes_a,
        a.render_tile(&other_seed, 0, rect).unwrap(),
        "seed must change the noise"
    );
    let high_seed = RenderSettings {
        seed: s.seed ^ (1 << 40),
        ..s.clone()
    };
    assert_ne!(
        bytes_a,
        a.render_tile(&high_seed, 0, rect).unwrap(),
        "high seed bits must count"
    );
    assert_ne!(
        bytes_a,
        a.render_tile(&s, 1, rect).unwrap(),
        "frame must change the noise"
    );
    assert_eq!(a.class(), b.class());
    assert!(a.class().renderer_build.starts_with("tessera-renderer "));
    assert_eq!(a.class().shader_hash.len(), 64);
}

#[test]
fn more_samples_split_over_dispatches_match_a_crop() {
    // 600 spp over 2 pixels is one dispatch; over the 40×40 frame it is split in several
    // (1 Mi path samples each), so this checks that accumulation across dispatches is
    // the same as one long loop.
    let mut b = GltfBuilder::new();
    let white = b.material("White", [0.8; 3], [0.0; 3], 1.0);
    let lamp = b.material("Lamp", [0.0; 3], [3.0; 3], 1.0);
    let floor = b.quad(
        "Floor",
        [
            [-5.0, 0.0, -5.0],
            [-5.0, 0.0, 5.0],
            [5.0, 0.0, 5.0],
            [5.0, 0.0, -5.0],
        ],
        white,
    );
    let light = b.quad(
        "Light",
        [
            [-0.5, 1.0, -0.5],
            [0.5, 1.0, -0.5],
            [0.5, 1.0, 0.5],
            [-0.5, 1.0, 0.5],
        ],
        lamp,
    );
    b.mesh_node(floor);
    b.mesh_node(light);
    b.camera(
        "Cam",
        0.9,
        [0.0, 0.6, 2.0],
        [0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
    );
    let r = renderer(&b);
    let s = settings(40, 40, 700, 1);
    let frame = r.render_tile(&s, 0, full(40, 40)).unwrap();
    let rect = TileRect {
        x: 19,
        y: 25,
        w: 2,
        h: 1,
    };
    assert_eq!(r.render_tile(&s, 0, rect).unwrap(), crop(&frame, 40, rect));
}

#[test]
fn emitter_seen_directly_returns_its_radiance() {
    let mut b = GltfBuilder::new();
    let glow = b.material("Glow", [0.0; 3], [0.5, 0.75, 1.0], 4.0);
    let quad = b.quad(
        "Wall",
        [
            [-5.0, -5.0, -2.0],
            [5.0, -5.0, -2.0],
            [5.0, 5.0, -2.0],
            [-5.0, 5.0, -2.0],
        ],
        glow,
    );
    b.mesh_node(quad);
    b.camera(
        "Cam",
        0.5,
        [0.0, 0.0, 0.0],
        [0.0, 0.0, -1.0],
        [0.0, 1.0, 0.0],
    );
    let r = renderer(&b);
    for bounces in [0, 2] {
        let pixels = decode(
            &r.render_tile(&settings(9, 7, 3, bounces), 0, full(9, 7))
                .unwrap(),
        );
        for p in pixels {
            assert_eq!(p, [2.0, 3.0, 4.0, 1.0], "bounces {bounces}");
        }
    }
}

#[test]
fn only_the_front_face_emits_unless_double_sided() {
    // The camera at the origin looks down +Z at a quad at z = 2.
    let render = |double_sided: bool, front_to_camera: bool, mirror: bool| {
        let mut b = GltfBuilder::new();
        let glow = b.material("Glow", [0.0; 3], [1.0; 3], 2.0);
        b.materials[glow]["doubleSided"] = json!(double_sided);
        let z = if mirror { -2.0 } else { 2.0 };
        let mut corners = [
            [-5.0, -5.0, z],
            [5.0, -5.0, z],
            [5.0, 5.0, z],
            [-5.0, 5.0, z],
        ];
        // As listed, the counter-clockwise side faces +Z.
        if front_to_camera != mirror {
            corners.reverse();
        }
        let quad = b.quad("Wall", corners, glow);
        if mirror {
            // Mirroring z moves the quad to z = 2; glTF turns its front face with it.
            b.node(json!({"mesh": quad, "scale": [1.0, 1.0, -1.0]}));
        } else {
            b.mesh_node(quad);
        }
        b.camera(
            "Cam",
            0.5,
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0],
        );
        let r = renderer(&b);
        mean_rgb(&decode(
            &r.render_tile(&settings(4, 4, 1, 1), 0, full(4, 4)).unwrap(),
        ))
    };
    assert_eq!(
        render(false, true, false),
        [2.0; 3],
        "front of a one-sided emitter"
    );
    assert_eq!(
        render(false, false, false),
        [0.0; 3],
        "back of a one-sided emitter"
    );
    assert_eq!(
        render(true, false, false),
        [2.0; 3],
        "back of a double-sided emitter"
    );
    assert_eq!(
        render(false, true, true),
        [2.0; 3],
        "front of a mirrored emitter"
    );
    assert_eq!(
        render(false, false, true),
        [0.0; 3],
        "back of a mirrored emitter"
    );
}

/// A large white-ish floor at y = 0 seen straight down through a narrow camera at y = 0.5.
fn floor_scene(albedo: f32) -> GltfBuilder {
    let mut b = GltfBuilder::new();
    let m = b.material("Floor", [albedo; 3], [0.0; 3], 1.0);
    let floor = b.quad(
        "Floor",
        [
            [-50.0, 0.0, -50.0],
            [-50.0, 0.0, 50.0],
            [50.0, 0.0, 50.0],
            [50.0, 0.0, -50.0],
        ],
        m,
    );
    b.mesh_node(floor);
    b.camera(
        "Down",
        0.02,
        [0.0, 0.5, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 0.0, -1.0],
    );
    b
}

/// The glTF metallic-roughness BRDF times π for a dielectric (metallic 0, roughness 1,
/// base colour `albedo`) seen along its normal and lit from an angle whose cosine is `cl`:
/// `w·albedo + s·F·D·V·π` with Schlick F (f0 = 0.04) at v·h, D = 1/π (α = 1) and the
/// height-correlated V = 0.5 / (n·l + n·v). Since the energy fix the base is weighted by
/// `w = 1 − s·E_d` (what the specular layer leaves at the view) instead of Appendix B's
/// `1 − F`, and the specular lobe carries the multiple-scattering scale
/// `s = 1 + Fms (1 − E) / E`; `E`, `E_d`, `E_avg` are the renderer's energy table values at
/// n·v = 1, roughness 1 (renderer/src/energy.rs). Radiance = this / π × E.
fn rough_dielectric_pi(albedo: f64, cl: f64) -> f64 {
    let (e, e_d, e_avg) = (0.30685472, 0.012306464, 0.4091401);
    let fss = 0.04 + 0.96 / 21.0;
    let fms = fss * e_avg / (1.0 - fss * (1.0 - e_avg));
    let s = 1.0 + fms * (1.0 - e) / e;
    let vh = ((1.0 + cl) / 2.0).sqrt();
    let f = 0.04 + 0.96 * (1.0 - vh).powi(5);
    (1.0 - s * e_d) * albedo + s * f * 0.5 / (cl + 1.0)
}

#[test]
fn point_spot_and_directional_lights_match_analytic_irradiance() {
    // glTF punctual intensities are photometric (cd, lux) and are divided by 683 lm/W
    // like Blender's importer does, so intensity 6830 cd is 10 W/sr and 2049 lux is
    // 3 W/m² (the values this test used before the unit change).
    let albedo = 0.8f64;
    let pi = std::f64::consts::PI;
    let s = settings(8, 8, 2, 0);
    let brdf = rough_dielectric_pi(albedo, 1.0) / pi;

    // Point light of 10 W/sr at height 2: E = 10 / 4.
    let mut b = floor_scene(albedo as f32);
    b.light(
        json!({"type": "point", "intensity": 6830.0, "color": [1.0, 0.5, 0.25]}),
        pose([0.0, 2.0, 0.0], [0.0, -1.0, 0.0]),
    );
    let r = renderer(&b);
    let m = mean_rgb(&decode(&r.render_tile(&s, 0, full(8, 8)).unwrap()));
    for (k, c) in [1.0, 0.5, 0.25].iter().enumerate() {
        assert_close(m[k], brdf * c * 10.0 / 4.0, 0.01, "point light");
    }

    // Spot light pointing down: the centre is inside the inner cone, so the same value.
    let mut b = floor_scene(albedo as f32);
    b.light(
        json!({"type": "spot", "intensity": 6830.0, "spot": {"innerConeAngle": 0.3, "outerConeAngle": 0.5}}),
        pose([0.0, 2.0, 0.0], [0.0, -1.0, 0.0]),
    );
    let r = renderer(&b);
    let m = mean_rgb(&decode(&r.render_tile(&s, 0, full(8, 8)).unwrap()));
    assert_close(m[0], brdf * 10.0 / 4.0, 0.01, "spot light");

    // Spot light tilted 60° away: the centre is outside the outer cone, so black.
    let mut b = floor_scene(albedo as f32);
    let tilt = [0.0, -0.5, -(3.0f32).sqrt() / 2.0];
    b.light(
        json!({"type": "spot", "intensity": 6830.0, "spot": {"outerConeAngle": 0.5}}),
        pose([0.0, 2.0, 0.0], tilt),
    );
    let r = renderer(&b);
    let m = mean_rgb(&decode(&r.render_tile(&s, 0, full(8, 8)).unwrap()));
    assert_eq!(m, [0.0; 3], "outside the cone");

    // Directional light of 3 W/m² 60° from the normal: E = 3 cos 60°.
    let mut b = floor_scene(albedo as f32);
    b.light(
        json!({"type": "directional", "intensity": 2049.0}),
        pose([0.0, 5.0, 0.0], tilt),
    );
    let r = renderer(&b);
    let m = mean_rgb(&decode(&r.render_tile(&s, 0, full(8, 8)).unwrap()));
    let brdf60 = rough_dielectric_pi(albedo, 0.5) / pi;
    assert_close(m[0], brdf60 * 3.0 * 0.5, 0.005, "directional light");
}

#[test]
fn one_shadow_ray_per_vertex_still_adds_up_every_light() {
    // Three punctual lights of different colours, strengths and angles: each vertex traces
    // the shadow ray of one of them, picked in proportion to its unshadowed contribution,
    // and divides by that probability, so the image's mean is still the sum of the three
    // lights' analytic values (32 × 32 pixels × 16 samples of one pick each).
    let albedo = 0.8f64;
    let pi = std::f64::consts::PI;
    let s = settings(32, 32, 16, 0);
    let mut b = floor_scene(albedo as f32);
    // 10 W/sr straight above at 2 m: E = 10 / 4, n·l = 1.
    b.light(
        json!({"type": "point", "intensity": 6830.0, "color": [1.0, 0.5, 0.25]}),
        pose([0.0, 2.0, 0.0], [0.0, -1.0, 0.0]),
    );
    // 20 W/sr at (1.5, 2, 0): distance 2.5, n·l = 0.8, E = 20 / 6.25 · 0.8.
    b.light(
        json!({"type": "point", "intensity": 13660.0, "color": [0.25, 0.5, 1.0]}),
        pose([1.5, 2.0, 0.0], [0.0, -1.0, 0.0]),
    );
    // 3 W/m² at 60° from the normal: E = 3 · 0.5.
    b.light(
        json!({"type": "directional", "intensity": 2049.0, "color": [0.5, 1.0, 0.5]}),
        pose([0.0, 5.0, 0.0], [0.0, -0.5, -(3.0f32).sqrt() / 2.0]),
    );
    let r = renderer(&b);
    let m = mean_rgb(&decode(&r.render_tile(&s, 0, full(32, 32)).unwrap()));
    let lights = [
        (rough_dielectric_pi(albedo, 1.0) * 2.5, [1.0, 0.5, 0.25]),
        (
            rough_dielectric_pi(albedo, 0.8) * 20.0 / 6.25 * 0.8,
            [0.25, 0.5, 1.0],
        ),
        (rough_dielectric_pi(albedo, 0.5) * 1.5, [0.5, 1.0, 0.5]),
    ];
    for k in 0..3 {
        let expected: f64 = lights.iter().map(|(v, c)| v * c[k] / pi).sum();
        assert_close(
            m[k],
            expected,
            0.04,
            &format!("channel {k} of three lights"),
        );
    }
}

#[test]
fn area_light_matches_analytic_irradiance_with_and_without_mis() {
    // Square emitter of radiance 4, half-size a = 0.5, at height h = 1 over the point seen.
    let (albedo, radiance, a, h) = (0.5f64, 4.0f64, 0.5f64, 1.0f64);
    let mut b = floor_scene(albedo as f32);
    let lamp = b.material("Lamp", [0.0; 3], [radiance as f32; 3], 1.0);
    let y = h as f32;
    let s = a as f32;
    let q = b.quad(
        "Lamp",
        [[-s, y, -s], [s, y, -s], [s, y, s], [-s, y, s]],
        lamp,
    );
    b.mesh_node(q);
    // Form factor from a point under the corner of an X×Y rectangle (in units of h).
    let corner = |x: f64, y: f64| {
        let (sx, sy) = ((1.0 + x * x).sqrt(), (1.0 + y * y).sqrt());
        (x / sx * (y / sx).atan() + y / sy * (x / sy).atan()) / (2.0 * std::f64::consts::PI)
    };
    let expected = albedo * radiance * 4.0 * corner(a / h, a / h);
    let r = renderer(&b);
    // Bounces 0: light sampling only. Bounces 1: light and BSDF samples combined by MIS.
    for bounces in [0, 1] {
        let m = mean_rgb(&decode(
            &r.render_tile(&settings(16, 16, 64, bounces), 0, full(16, 16))
                .unwrap(),
        ));
        assert_close(
            m[0],
            expected,
            0.02,
            &format!("area light, max_bounces {bounces}"),
        );
    }
}

#[test]
fn indirect_light_adds_energy() {
    let r = renderer(&cornell_box());
    let direct = mean_rgb(&decode(
        &r.render_tile(&settings(24, 24, 8, 0), 0, full(24, 24))
            .unwrap(),
    ));
    let indirect = mean_rgb(&decode(
        &r.render_tile(&settings(24, 24, 8, 3), 0, full(24, 24))
            .unwrap(),
    ));
    for k in 0..3 {
        assert!(
            indirect[k] > direct[k] * 1.1,
            "channel {k}: bounces 3 gives {} vs bounces 0 {}",
            indirect[k],
            direct[k]
        );
    }
}

#[test]
fn renders_from_several_threads() {
    let r = Arc::new(renderer(&cornell_box()));
    let s = settings(32, 16, 2, 2);
    let frame = r.render_tile(&s, 3, full(32, 16)).unwrap();
    let handles: Vec<_> = tile_layout(32, 16, 8)
        .into_iter()
        .map(|rect| {
            let (r, s) = (r.clone(), s.clone());
            std::thread::spawn(move || (rect, r.render_tile(&s, 3, rect).unwrap()))
        })
        .collect();
    for h in handles {
        let (rect, bytes) = h.join().unwrap();
        assert!(
            bytes == crop(&frame, 32, rect),
            "tile {rect} rendered on a thread differs"
        );
    }
}

#[test]
fn bad_settings_are_errors_naming_the_value() {
    let r = renderer(&cornell_box());
    let s = settings(16, 16, 1, 1);
    let err = r
        .render_tile(
            &s,
            0,
            TileRect {
                x: 10,
                y: 0,
                w: 8,
                h: 4,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("8x4+10+0") && err.contains("16x16"), "{err}");
    let err = r
        .render_tile(
            &RenderSettings {
                camera: Some("Nope".into()),
                ..s.clone()
            },
            0,
            full(16, 16),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"Nope\"") && err.contains("\"Main\""),
        "{err}"
    );
    let err = r
        .render_tile(
            &RenderSettings {
                spp: 0,
                ..s.clone()
            },
            0,
            full(16, 16),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("settings.spp = 0"), "{err}");
    let err = r
        .render_tile(
            &RenderSettings {
                width: 0,
                ..s.clone()
            },
            0,
            full(16, 16),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("settings.width = 0"), "{err}");
    // The named camera works.
    r.render_tile(
        &RenderSettings {
            camera: Some("Main".into()),
            ..s
        },
        0,
        full(16, 16),
    )
    .unwrap();
}

#[test]
fn sample_scene_cornell_box_if_present() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes/cornell-box.glb");
    if !path.exists() {
        eprintln!("skipped: {} does not exist yet", path.display());
        return;
    }
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    assert!(
        scene.triangle_count() > 0 && scene.emissive_triangle_count() + scene.light_count() > 0
    );
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let s = settings(32, 32, 4, 3);
    let frame = r.render_tile(&s, 0, full(32, 32)).unwrap();
    let m = mean_rgb(&decode(&frame));
    assert!(
        m.iter().all(|&c| c > 0.0),
        "the sample Cornell box renders black: {m:?}"
    );
    let rect = TileRect {
        x: 5,
        y: 9,
        w: 13,
        h: 7,
    };
    assert!(r.render_tile(&s, 0, rect).unwrap() == crop(&frame, 32, rect));
}

/// Timing only (run with `--ignored --nocapture`): 256×256, 64 spp, Cornell-like box.
#[test]
#[ignore]
fn cornell_timing_256_64spp() {
    let r = renderer(&cornell_box());
    let s = settings(256, 256, 64, 4);
    let started = Instant::now();
    let bytes = r.render_tile(&s, 0, full(256, 256)).unwrap();
    let elapsed = started.elapsed();
    let m = mean_rgb(&decode(&bytes));
    eprintln!(
        "cornell 256x256 64spp max_bounces 4 on {}: {:.2} s (mean rgb {:.3} {:.3} {:.3})",
        r.class(),
        elapsed.as_secs_f64(),
        m[0],
        m[1],
        m[2]
    );
    if let Ok(dir) = std::env::var("TESSERA_DUMP_DIR") {
        // Raw canonical bytes, for looking at the image by hand.
        std::fs::write(
            std::path::Path::new(&dir).join("cornell-256.rgba16f"),
            &bytes,
        )
        .unwrap();
    }
}

/// Timing only (run with `--ignored --nocapture`): the sample scenes in `scenes/`.
#[test]
#[ignore]
fn sample_scenes_timing() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes");
    for (name, size, spp) in [
        ("cornell-box.glb", 256, 64),
        ("displaced-sphere.glb", 256, 16),
        ("blender-studio.glb", 256, 16),
    ] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let started = Instant::now();
        let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
        let loaded = started.elapsed();
        let r = SceneRenderer::new(gpu(), &scene).unwrap();
        let s = settings(size, size, spp, 4);
        let started = Instant::now();
        let bytes = r.render_tile(&s, 0, full(size, size)).unwrap();
        eprintln!(
            "{name}: {} triangles, load {:.2} s, {size}x{size} {spp} spp: {:.2} s, warnings: {:?}",
            scene.triangle_count(),
            loaded.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            scene.warnings()
        );
        if let Ok(out) = std::env::var("TESSERA_DUMP_DIR") {
            std::fs::write(
                std::path::Path::new(&out).join(format!("{name}.rgba16f")),
                &bytes,
            )
            .unwrap();
        }
    }
}
