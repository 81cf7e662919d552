//! Scale check: 2 million triangles with normals, UVs and tangents plus over 100 MB of
//! textures load, upload and render on one adapter (on lavapipe, every storage buffer is
//! capped at 128 MiB). `--nocapture` prints the timings.

mod common;

use std::time::Instant;

use common::{decode, gpu, png, GltfBuilder};
use serde_json::json;
use tessera_protocol::{RenderSettings, TileRect, TileRenderer};
use tessera_renderer::{LoadOptions, Scene, SceneRenderer};

#[test]
fn two_million_triangles_and_100_mb_of_textures() {
    let n = 1000u32; // n × n quads = 2n² triangles
    let mut b = GltfBuilder::new();
    let mut textures = Vec::new();
    for i in 0..7u8 {
        let side = 2048u32;
        let mut rgba = vec![0u8; (side * side * 4) as usize];
        for (k, px) in rgba.chunks_exact_mut(4).enumerate() {
            let (x, y) = (k as u32 % side, k as u32 / side);
            px.copy_from_slice(&[(x / 64) as u8 * 8, (y / 64) as u8 * 8, 40 * i, 255]);
        }
        let img = b.image_png(&png(side, side, &rgba));
        textures.push(b.texture(img, None));
    }
    let m = b.raw_material(json!({
        "pbrMetallicRoughness": {"baseColorTexture": {"index": textures[0]},
            "metallicRoughnessTexture": {"index": textures[1]}, "metallicFactor": 0.5},
        "normalTexture": {"index": textures[2]},
        "emissiveTexture": {"index": textures[3]}, "emissiveFactor": [0.1, 0.1, 0.1],
    }));
    // Other textures on a second material so that every image is decoded and uploaded.
    let m2 = b.raw_material(json!({
        "pbrMetallicRoughness": {"baseColorTexture": {"index": textures[4]},
            "metallicRoughnessTexture": {"index": textures[5]}},
        "emissiveTexture": {"index": textures[6]},
    }));
    let mut p = Vec::new();
    let mut nrm = Vec::new();
    let mut uv = Vec::new();
    let mut tan = Vec::new();
    for j in 0..=n {
        for i in 0..=n {
            let (x, z) = (
                i as f32 / n as f32 * 2.0 - 1.0,
                j as f32 / n as f32 * 2.0 - 1.0,
            );
            let y = 0.05 * (x * 40.0).sin() * (z * 40.0).cos();
            p.push([x, y, z]);
            nrm.push([0.0, 1.0, 0.0]);
            uv.push([i as f32 / n as f32, j as f32 / n as f32]);
            tan.push([1.0, 0.0, 0.0, 1.0]);
        }
    }
    let mut idx = Vec::new();
    for j in 0..n {
        for i in 0..n {
            let a = j * (n + 1) + i;
            idx.extend_from_slice(&[a, a + n + 1, a + 1, a + 1, a + n + 1, a + n + 2]);
        }
    }
    let mesh = b.mesh_full(
        "Terrain",
        &p,
        Some(&nrm),
        Some(&uv),
        None,
        Some(&tan),
        &idx,
        m,
    );
    b.mesh_node(mesh);
    let small = b.quad(
        "Small",
        [
            [2.0, 0.0, 2.0],
            [3.0, 0.0, 2.0],
            [3.0, 0.0, 3.0],
            [2.0, 0.0, 3.0],
        ],
        m2,
    );
    b.mesh_node(small);
    b.camera("Cam", 0.8, [0.0, 1.5, 2.0], [0.0; 3], [0.0, 1.0, 0.0]);
    b.scene_extras = Some(json!({"tessera_environment": {"color": [0.8, 0.9, 1.0]}}));
    let dir = tempfile::tempdir().unwrap();
    let path = b.write_glb(dir.path(), "big.glb");
    drop(b);

    let started = Instant::now();
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    let stats = scene.stats();
    println!("{stats:#?}");
    assert_eq!(stats.triangles, 2 * (n * n) as usize + 2);
    assert!(stats.texture_bytes >= 100 << 20);
    let started = Instant::now();
    let r = SceneRenderer::new(gpu(), &scene).unwrap();
    let upload_s = started.elapsed().as_secs_f64();
    let s = RenderSettings {
        width: 32,
        height: 32,
        spp: 2,
        max_bounces: 2,
        seed: 1,
        camera: None,
        frame_rate: Default::default(),
    };
    let started = Instant::now();
    let rect = TileRect {
        x: 0,
        y: 0,
        w: 32,
        h: 32,
    };
    let pixels = decode(&r.render_tile(&s, 0, rect).unwrap());
    let render_s = started.elapsed().as_secs_f64();
    println!(
        "load {load_s:.2} s (bvh {:.0} ms), upload {upload_s:.2} s, render 32x32 at 2 spp {render_s:.2} s",
        stats.bvh_build_ms
    );
    // The top corner looks past the terrain at the background; the centre sees the
    // textured terrain (a different colour than the sky).
    let sky = [0.8f32, 0.9, 1.0].map(|v| half::f16::from_f32(v).to_f32());
    let corner = pixels[0];
    assert_eq!(
        &corner[..3],
        &sky[..],
        "top-left pixel should be the background"
    );
    let centre = pixels[16 * 32 + 16];
    assert!(
        centre[..3]
            .iter()
            .zip(sky)
            .any(|(a, b)| (a - b).abs() > 0.05),
        "the centre should show the terrain, not the sky: {centre:?}"
    );
}
