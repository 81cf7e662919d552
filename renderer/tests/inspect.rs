//! `Scene::inspect` and the scene budget (no GPU): inspect agrees with `Scene::load` on
//! every sample scene; decode bombs (image headers that claim huge sizes, accessors shared
//! by many primitives, many mesh instances) are refused by both before anything is
//! decoded, with an error naming the budget; inspect never decodes.

mod common;

use std::path::{Path, PathBuf};

use common::GltfBuilder;
use serde_json::{json, Value};
use tessera_renderer::{LoadOptions, Scene, SceneError, SceneInfo, SceneLimits};

fn sample_scenes() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes");
    let mut scenes: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "glb" || e == "gltf"))
        .collect();
    scenes.sort();
    scenes
}

fn with_limits(edit: impl FnOnce(&mut SceneLimits)) -> LoadOptions {
    let mut limits = SceneLimits::default();
    edit(&mut limits);
    LoadOptions { limits }
}

fn inspect(path: &Path, opts: &LoadOptions) -> SceneInfo {
    Scene::inspect(path, opts).unwrap_or_else(|e| panic!("inspecting {}: {e}", path.display()))
}

/// Both `inspect` and `load` refuse `path` with the same budget error naming `budget`;
/// returns the message.
fn refused_by_budget(path: &Path, opts: &LoadOptions, budget: &str) -> String {
    let inspected = Scene::inspect(path, opts).expect_err("inspect accepted a bomb");
    let loaded = Scene::load(path, opts).expect_err("load accepted a bomb");
    for err in [&inspected, &loaded] {
        match err {
            SceneError::Budget { budget: b, .. } if *b == budget => {}
            other => panic!("expected a {budget} budget error, got {other:?}: {other}"),
        }
    }
    let message = inspected.to_string();
    assert_eq!(message, loaded.to_string());
    assert!(message.contains(": scene budget: "), "{message}");
    message
}

#[test]
fn inspect_agrees_with_load_on_every_sample_scene() {
    let scenes = sample_scenes();
    assert!(scenes.len() >= 11, "sample scenes: {scenes:?}");
    let opts = LoadOptions::default();
    for path in &scenes {
        let name = path.file_name().unwrap().to_string_lossy();
        let scene = Scene::load(path, &opts).unwrap_or_else(|e| panic!("loading {name}: {e}"));
        let info = inspect(path, &opts);
        assert_eq!(
            info.content_hash,
            scene.content_hash(),
            "{name}: content hash"
        );
        assert_eq!(info.cameras, scene.camera_names(), "{name}: cameras");
        assert_eq!(info.files, scene.files(), "{name}: files");
        assert_eq!(
            info.triangles,
            scene.triangle_count() as u64,
            "{name}: triangles"
        );
        assert_eq!(info.animated, scene.is_animated(), "{name}: animated");
        assert!(info.primitives > 0 && info.vertices > 0, "{name}: {info:?}");
    }
    // The .gltf sample has external files (hashed as streams by inspect) and an
    // environment image (charged from its header).
    let env = inspect(&scenes[0].with_file_name("env-hdr.gltf"), &opts);
    assert_eq!(env.files.len(), 2);
    assert!(env.environment_pixels > 0 && env.texture_bytes >= 32 * env.environment_pixels);
}

/// A one-triangle scene with a material that uses texture 0 when `textured`, and a camera.
fn triangle_scene(textured: bool) -> GltfBuilder {
    let mut b = GltfBuilder::new();
    let material = if textured {
        b.raw_material(json!({"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}))
    } else {
        b.material("White", [1.0; 3], [0.0; 3], 1.0)
    };
    let uv: &[[f32; 2]] = &[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
    let tri = b.mesh_full(
        "Tri",
        &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        None,
        Some(uv),
        None,
        None,
        &[0, 1, 2],
        material,
    );
    b.mesh_node(tri);
    b.camera(
        "Cam",
        0.8,
        [0.0, 0.0, 3.0],
        [0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
    );
    b
}

/// The first bytes of a PNG: signature and IHDR (a zero CRC), then bytes that are not
/// image data: what a decoder would choke on, and what inspect must never read.
fn png_header_only(width: u32, height: u32, bit_depth: u8, colour_type: u8) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[bit_depth, colour_type, 0, 0, 0]);
    png.extend_from_slice(&[0; 4]);
    png.extend_from_slice(b"this is not a zlib stream of pixels");
    png
}

/// A Radiance HDR header claiming `width` × `height`, followed by a few garbage bytes.
fn hdr_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut hdr =
        format!("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n").into_bytes();
    hdr.extend_from_slice(&[0x02, 0x02, 0x7f, 0xff, 1, 2, 3, 4]);
    hdr
}

/// Write `b` as `scene.gltf` with its buffer in `scene.bin`, both in `dir`.
fn write_gltf(b: &GltfBuilder, dir: &Path) -> PathBuf {
    std::fs::write(dir.join("scene.bin"), &b.bin).unwrap();
    let path = dir.join("scene.gltf");
    std::fs::write(&path, b.gltf_json("scene.bin")).unwrap();
    path
}

#[test]
fn a_png_that_claims_a_huge_size_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    // 8192² RGBA8 is within MAX_IMAGE_SIDE and the pixel bound but decodes to 256 MiB.
    let bomb = png_header_only(8192, 8192, 8, 6);
    let opts = with_limits(|l| l.max_texture_bytes = 64 << 20);

    // Embedded in the GLB's BIN chunk (inspect reads it from the file in place)...
    let mut b = triangle_scene(true);
    let img = b.image_png(&bomb);
    b.texture(img, None);
    let glb = b.write_glb(dir.path(), "bomb.glb");
    let err = refused_by_budget(&glb, &opts, "max_texture_bytes");
    assert_eq!(
        err,
        "bomb.glb: images[0]: scene budget: textures decode to 268435456 bytes, more than \
         max_texture_bytes (67108864 bytes)"
    );

    // ... and as an external file.
    let mut b = triangle_scene(true);
    b.images.push(json!({"uri": "bomb.png"}));
    b.texture(0, None);
    std::fs::write(dir.path().join("bomb.png"), &bomb).unwrap();
    let gltf = write_gltf(&b, dir.path());
    refused_by_budget(&gltf, &opts, "max_texture_bytes");

    // A 16-bit RGB PNG costs 12 bytes a pixel (RGBA16 decoder output + the RGBA8 copy).
    let wide = png_header_only(4096, 2048, 16, 2);
    std::fs::write(dir.path().join("bomb.png"), wide).unwrap();
    let err = refused_by_budget(&gltf, &opts, "max_texture_bytes");
    assert!(err.contains("decode to 100663296 bytes"), "{err}");

    // An unused image is charged too: what a file holds is what it may cost.
    let mut b = triangle_scene(false);
    b.image_png(&bomb);
    let unused = b.write_glb(dir.path(), "unused.glb");
    refused_by_budget(&unused, &opts, "max_texture_bytes");

    // The pixel bound is a budget as well (16384² is allowed by the decoder's side limit).
    let mut b = triangle_scene(true);
    let img = b.image_png(&png_header_only(16384, 16384, 8, 6));
    b.texture(img, None);
    let big = b.write_glb(dir.path(), "big.glb");
    let err = refused_by_budget(
        &big,
        &with_limits(|l| l.max_texture_pixels = 1 << 20),
        "max_texture_pixels",
    );
    assert!(err.contains("images have 268435456 pixels"), "{err}");
}

#[test]
fn inspect_never_decodes_images() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions::default();
    // A 64 × 64 PNG whose body is garbage: within budget, so inspect accepts it, having
    // read only its header; load decodes it and fails.
    let mut b = triangle_scene(true);
    let img = b.image_png(&png_header_only(64, 64, 8, 6));
    b.texture(img, None);
    let path = b.write_glb(dir.path(), "garbage.glb");
    let info = inspect(&path, &opts);
    assert_eq!(info.texture_bytes, 64 * 64 * 4);
    assert_eq!((info.triangles, info.vertices, info.primitives), (1, 3, 1));
    assert_eq!(info.cameras, ["Cam"]);
    let err = Scene::load(&path, &opts).unwrap_err().to_string();
    assert!(
        err.contains("images[0]") && err.contains("cannot decode"),
        "{err}"
    );

    // The same with a garbage environment image body.
    let mut b = triangle_scene(false);
    b.scene_extras = Some(json!({"tessera_environment": {"image": "sky.hdr"}}));
    std::fs::write(dir.path().join("sky.hdr"), hdr_header_only(64, 32)).unwrap();
    let path = write_gltf(&b, dir.path());
    let info = inspect(&path, &opts);
    assert_eq!(info.environment_pixels, 64 * 32);
    assert_eq!(info.texture_bytes, 64 * 32 * 32);
    assert_eq!(
        info.files,
        [PathBuf::from("scene.bin"), PathBuf::from("sky.hdr")]
    );
    let err = Scene::load(&path, &opts).unwrap_err().to_string();
    assert!(
        err.contains("tessera_environment.image") && err.contains("cannot decode"),
        "{err}"
    );
}

#[test]
fn an_hdr_environment_that_claims_a_huge_size_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = triangle_scene(false);
    b.scene_extras = Some(json!({"tessera_environment": {"image": "sky.hdr", "strength": 1.0}}));
    let path = write_gltf(&b, dir.path());

    // 30000 × 15000 passes the decoder's side limit (65536) but not the default budget.
    std::fs::write(dir.path().join("sky.hdr"), hdr_header_only(30000, 15000)).unwrap();
    let err = refused_by_budget(&path, &LoadOptions::default(), "max_environment_pixels");
    assert_eq!(
        err,
        "scene.gltf: scenes[0].extras.tessera_environment.image: scene budget: the \
         environment image has 450000000 pixels, more than max_environment_pixels \
         (67108864 pixels)"
    );

    // 4096 × 2048 is within the pixel bounds but decodes to 256 MiB (32 bytes a pixel).
    std::fs::write(dir.path().join("sky.hdr"), hdr_header_only(4096, 2048)).unwrap();
    let opts = with_limits(|l| l.max_texture_bytes = 128 << 20);
    let err = refused_by_budget(&path, &opts, "max_texture_bytes");
    assert!(err.contains("decode to 268435456 bytes"), "{err}");
}

/// A mesh of `n_prims` triangle primitives that all use one POSITION accessor of
/// `n_vertices` vertices (no indices), instanced by `n_nodes` nodes.
fn shared_accessor_scene(n_vertices: usize, n_prims: usize, n_nodes: usize) -> GltfBuilder {
    let mut b = GltfBuilder::new();
    let material = b.material("White", [1.0; 3], [0.0; 3], 1.0);
    let positions: Vec<f32> = (0..n_vertices)
        .flat_map(|i| [i as f32, (i % 3) as f32, 0.0])
        .collect();
    let pos = b.float_accessor(&positions, 3);
    let prims: Vec<Value> = (0..n_prims)
        .map(|_| json!({"attributes": {"POSITION": pos}, "material": material}))
        .collect();
    b.meshes
        .push(json!({"name": "Shared", "primitives": prims}));
    for _ in 0..n_nodes {
        b.mesh_node(0);
    }
    b
}

#[test]
fn a_shared_accessor_is_charged_at_every_reference() {
    let dir = tempfile::tempdir().unwrap();
    // 300 vertices × 5 primitives × 2 nodes = 3000 vertices, 1000 triangles, 10 primitives.
    let path = shared_accessor_scene(300, 5, 2).write_glb(dir.path(), "shared.glb");
    let opts = LoadOptions::default();
    let info = inspect(&path, &opts);
    assert_eq!(
        (info.vertices, info.triangles, info.primitives),
        (3000, 1000, 10)
    );
    let scene = Scene::load(&path, &opts).unwrap();
    assert_eq!(scene.triangle_count(), 1000);
    assert_eq!(info.content_hash, scene.content_hash());

    let err = refused_by_budget(
        &path,
        &with_limits(|l| l.max_vertices = 2999),
        "max_vertices",
    );
    assert_eq!(
        err,
        "shared.glb: meshes[0].primitives[4]: scene budget: mesh instances have 3000 \
         vertices, more than max_vertices (2999 vertices)"
    );
    let err = refused_by_budget(
        &path,
        &with_limits(|l| l.max_primitives = 9),
        "max_primitives",
    );
    assert!(
        err.contains("have 10 primitives, more than max_primitives (9 primitives)"),
        "{err}"
    );

    // Many primitives on one accessor in one node: the 40-primitive case of the issue.
    let path = shared_accessor_scene(3000, 40, 1).write_glb(dir.path(), "many.glb");
    let opts = with_limits(|l| l.max_vertices = 100_000);
    let err = refused_by_budget(&path, &opts, "max_vertices");
    assert!(err.contains("have 102000 vertices"), "{err}");
}

#[test]
fn many_instances_are_charged_before_instantiating() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = triangle_scene(false);
    let cube = b.cuboid("Cube", [0.0; 3], [1.0; 3], 0);
    for _ in 0..100 {
        b.mesh_node(cube);
    }
    let path = b.write_glb(dir.path(), "instances.glb");
    let info = inspect(&path, &LoadOptions::default());
    assert_eq!(info.triangles, 1 + 100 * 12);
    assert_eq!(info.primitives, 101);
    let err = refused_by_budget(
        &path,
        &with_limits(|l| l.max_triangles = 1000),
        "max_triangles",
    );
    assert!(
        err.contains(
            "mesh instances have 1009 triangles, more than max_triangles (1000 triangles)"
        ),
        "{err}"
    );
}

#[test]
fn attributes_must_match_position_before_they_are_read() {
    // A NORMAL accessor that claims more elements than POSITION (and than its buffer view
    // holds) was allocated whole before either was compared; it is refused from the
    // counts instead.
    let dir = tempfile::tempdir().unwrap();
    let mut b = triangle_scene(false);
    b.accessors
        .push(json!({"bufferView": 0, "componentType": 5126, "count": 50_000_000, "type": "VEC3"}));
    let normals = b.accessors.len() - 1;
    b.meshes[0]["primitives"][0]["attributes"]["NORMAL"] = json!(normals);
    let path = b.write_glb(dir.path(), "normals.glb");
    let opts = LoadOptions::default();
    let expected = "normals.glb: meshes[0].primitives[0].attributes.NORMAL: has 50000000 \
                    elements but POSITION has 3";
    let inspected = Scene::inspect(&path, &opts).unwrap_err().to_string();
    let loaded = Scene::load(&path, &opts).unwrap_err().to_string();
    assert_eq!(inspected, expected);
    assert_eq!(loaded, expected);
}

#[test]
fn inspect_refuses_what_load_refuses_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("scene");
    std::fs::create_dir(&outer).unwrap();
    std::fs::write(dir.path().join("x.bin"), [0u8; 64]).unwrap();
    let b = triangle_scene(false);
    let opts = LoadOptions::default();
    let same = |path: &Path| {
        let inspected = Scene::inspect(path, &opts).unwrap_err().to_string();
        let loaded = Scene::load(path, &opts).unwrap_err().to_string();
        assert_eq!(inspected, loaded);
        inspected
    };
    for uri in [
        "../x.bin",
        "%2E%2E/x.bin",
        "/etc/passwd",
        "http://x/y.bin",
        "missing.bin",
    ] {
        let path = outer.join("scene.gltf");
        std::fs::write(&path, b.gltf_json(uri)).unwrap();
        let err = same(&path);
        assert!(err.starts_with("scene.gltf: buffers[0].uri"), "{err}");
    }
    // A node reached twice, a truncated GLB, a file over max_file_bytes.
    let mut cyclic = triangle_scene(false);
    cyclic.nodes[0]["children"] = json!([0]);
    let err = same(&cyclic.write_glb(&outer, "cycle.glb"));
    assert!(err.contains("nodes[0]: node is reached twice"), "{err}");
    let glb = b.glb();
    std::fs::write(outer.join("cut.glb"), &glb[..glb.len() - 9]).unwrap();
    let err = same(&outer.join("cut.glb"));
    assert!(
        err.starts_with("cut.glb: not a glTF 2.0 file: truncated GLB"),
        "{err}"
    );
    let small = with_limits(|l| l.max_file_bytes = 100);
    let path = b.write_glb(&outer, "big.glb");
    let inspected = Scene::inspect(&path, &small).unwrap_err().to_string();
    assert_eq!(
        inspected,
        Scene::load(&path, &small).unwrap_err().to_string()
    );
    assert!(
        inspected.starts_with("big.glb: file: file bytes"),
        "{inspected}"
    );
}

#[test]
fn cameras_are_named_as_load_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = triangle_scene(false);
    // Unnamed cameras: called by the node's name, else `cameras[i]`, in graph order.
    b.cameras
        .push(json!({"type": "perspective", "perspective": {"yfov": 0.5, "znear": 0.1}}));
    let child = b.node(json!({"camera": 1}));
    b.node(json!({"camera": 1, "name": "Rig"}));
    b.nodes[0]["children"] = json!([child]);
    b.roots = Some(vec![3, 0, 1]);
    let path = b.write_glb(dir.path(), "cameras.glb");
    let info = inspect(&path, &LoadOptions::default());
    let scene = Scene::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(info.cameras, scene.camera_names());
    assert_eq!(info.cameras, ["Rig", "cameras[1]", "Cam"]);
}
