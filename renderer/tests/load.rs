//! Scene loading tests (no GPU): accepted inputs, refusals naming the field, warnings.

mod common;

use std::path::Path;

use common::{cornell_box, GltfBuilder};
use serde_json::{json, Value};
use tessera_renderer::{LoadOptions, Scene, SceneError, SceneLimits};

fn load(path: &Path) -> Result<Scene, SceneError> {
    Scene::load(path, &LoadOptions::default())
}

fn load_err(path: &Path) -> String {
    match load(path) {
        Ok(_) => panic!("{} loaded but should have been refused", path.display()),
        Err(e) => e.to_string(),
    }
}

/// A one-triangle scene written as `scene.gltf` with the given buffer URI (the binary
/// data is written to `bin_name` inside the folder when given).
fn gltf_with_uri(dir: &Path, uri: &str, bin_name: Option<&str>) -> std::path::PathBuf {
    let mut b = GltfBuilder::new();
    let m = b.material("White", [1.0; 3], [0.0; 3], 1.0);
    let mesh = b.mesh(
        "Tri",
        &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        None,
        None,
        m,
    );
    b.mesh_node(mesh);
    if let Some(name) = bin_name {
        std::fs::write(dir.join(name), &b.bin).unwrap();
    }
    let path = dir.join("scene.gltf");
    std::fs::write(&path, b.gltf_json(uri)).unwrap();
    path
}

fn data_uri(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("data:application/octet-stream;base64,");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn loads_cornell_box_with_counts_names_and_stable_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = cornell_box().write_glb(dir.path(), "box.glb");
    let scene = load(&path).unwrap();
    assert_eq!(scene.triangle_count(), 6 * 2 + 2 * 12);
    assert_eq!(scene.emissive_triangle_count(), 2);
    assert_eq!(scene.light_count(), 0);
    assert_eq!(scene.camera_names(), vec!["Main".to_string()]);
    assert!(scene.warnings().is_empty(), "{:?}", scene.warnings());
    let again = load(&path).unwrap();
    assert_eq!(scene.content_hash(), again.content_hash());
    assert_eq!(
        scene.content_hash(),
        *blake3::hash(&std::fs::read(&path).unwrap()).as_bytes()
    );
}

#[test]
fn external_and_data_uri_buffers_load_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = gltf_with_uri(dir.path(), "mesh%20data.bin", Some("mesh data.bin"));
    let scene = load(&path).unwrap();
    assert_eq!(scene.triangle_count(), 1);
    // The hash covers the external file: changing it changes the hash.
    let mut bin = std::fs::read(dir.path().join("mesh data.bin")).unwrap();
    let before = scene.content_hash();
    bin[0] ^= 1;
    std::fs::write(dir.path().join("mesh data.bin"), &bin).unwrap();
    assert_ne!(load(&path).unwrap().content_hash(), before);

    let dir = tempfile::tempdir().unwrap();
    let mut b = GltfBuilder::new();
    let m = b.material("White", [1.0; 3], [0.0; 3], 1.0);
    let mesh = b.mesh(
        "Tri",
        &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        None,
        Some(&[0, 1, 2]),
        m,
    );
    b.mesh_node(mesh);
    let uri = data_uri(&b.bin);
    let path = dir.path().join("embedded.gltf");
    std::fs::write(&path, b.gltf_json(&uri)).unwrap();
    assert_eq!(load(&path).unwrap().triangle_count(), 1);
}

#[test]
fn refuses_uris_outside_the_scene_folder() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("scene");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(outer.path().join("x.bin"), [0u8; 64]).unwrap();
    let cases = [
        ("../x.bin", "points outside the scene folder"),
        ("sub/../../x.bin", "points outside the scene folder"),
        ("%2E%2E/x.bin", "points outside the scene folder"),
        ("/etc/passwd", "absolute paths are not allowed"),
        (
            "http://example.com/x.bin",
            "uri scheme \"http\" is not allowed",
        ),
        ("file:///etc/passwd", "uri scheme \"file\" is not allowed"),
        ("missing.bin", "cannot open"),
    ];
    for (uri, reason) in cases {
        let path = gltf_with_uri(&dir, uri, None);
        let err = load_err(&path);
        let expected = format!("scene.gltf: buffers[0].uri {uri:?}: {reason}");
        assert!(
            err.starts_with(&expected),
            "uri {uri}: got {err:?}, expected it to start with {expected:?}"
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outer.path().join("x.bin"), dir.join("link.bin")).unwrap();
        let err = load_err(&gltf_with_uri(&dir, "link.bin", None));
        assert!(err.contains("through a symbolic link"), "{err}");
    }
}

#[test]
fn refuses_files_that_are_not_gltf_or_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.gltf");
    std::fs::write(&text, "hello, I am not a scene").unwrap();
    let err = load_err(&text);
    assert!(err.starts_with("notes.gltf: not a glTF 2.0 file"), "{err}");

    let png = dir.path().join("image.glb");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\0").unwrap();
    assert!(load_err(&png).starts_with("image.glb: not a glTF 2.0 file"));

    let glb = cornell_box().glb();
    for cut in [3, 11, 20, 100, glb.len() / 2, glb.len() - 1] {
        let path = dir.path().join("cut.glb");
        std::fs::write(&path, &glb[..cut]).unwrap();
        let err = load_err(&path);
        assert!(
            err.starts_with("cut.glb: not a glTF 2.0 file: truncated GLB"),
            "cut at {cut}: {err}"
        );
    }

    let json = cornell_box().gltf_json("box.bin");
    let path = dir.path().join("cut.gltf");
    std::fs::write(&path, &json[..json.len() / 2]).unwrap();
    let err = load_err(&path);
    assert!(
        err.starts_with("cut.gltf: not a glTF 2.0 file: invalid glTF JSON"),
        "{err}"
    );

    let empty = dir.path().join("empty.glb");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_err(&empty).starts_with("empty.glb: not a glTF 2.0 file"));

    let missing = dir.path().join("missing.glb");
    assert!(load_err(&missing).starts_with("missing.glb: cannot read"));
}

/// Edit the JSON of a one-triangle .gltf (with its buffer embedded) and load it.
fn load_edited(edit: impl FnOnce(&mut Value)) -> Result<Scene, SceneError> {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GltfBuilder::new();
    let m = b.material("White", [1.0; 3], [0.0; 3], 1.0);
    let mesh = b.mesh(
        "Tri",
        &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        None,
        Some(&[0, 1, 2]),
        m,
    );
    b.mesh_node(mesh);
    let mut doc: Value = serde_json::from_slice(&b.gltf_json(&data_uri(&b.bin))).unwrap();
    edit(&mut doc);
    let path = dir.path().join("edited.gltf");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    load(&path)
}

#[test]
fn invalid_fields_are_named() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|d| d["buffers"][0]["byteLength"] = json!(4096)), "edited.gltf: buffers[0].byteLength: declares 4096 bytes"),
        (Box::new(|d| d["accessors"][1]["count"] = json!(30)), "edited.gltf: meshes[0].primitives[0].indices: accessors[1] (30 elements"),
        (Box::new(|d| d["accessors"][0]["componentType"] = json!(5123)), "edited.gltf: meshes[0].primitives[0].attributes.POSITION: accessors[0] is Vec3 of U16"),
        (Box::new(|d| d["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = json!(9)), "edited.gltf: meshes[0].primitives[0].attributes.POSITION: accessor 9 does not exist"),
        (Box::new(|d| d["nodes"][0]["mesh"] = json!(5)), "edited.gltf: nodes[0].mesh: index out of bounds"),
        (Box::new(|d| d["nodes"][0]["children"] = json!([0])), "edited.gltf: nodes[0]: node is reached twice"),
        (Box::new(|d| d["asset"]["version"] = json!("1.0")), "edited.gltf: not a glTF 2.0 file: asset.version is \"1.0\""),
        (Box::new(|d| d["buffers"][0]["uri"] = json!("data:application/octet-stream;base64,@@@@")), "edited.gltf: buffers[0].uri \"data:application/octet-stream;base64,@@@@\": invalid base64"),
    ];
    for (edit, expected) in cases {
        let err = match load_edited(edit) {
            Ok(_) => panic!("accepted; expected {expected:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with(expected),
            "got {err:?}, expected it to start with {expected:?}"
        );
    }
    // Out-of-range index values.
    let err = load_edited(|d| {
        let uri = d["buffers"][0]["uri"].as_str().unwrap().to_string();
        let mut bin = decode_b64(&uri[uri.find(',').unwrap() + 1..]);
        bin[36..40].copy_from_slice(&7u32.to_le_bytes());
        d["buffers"][0]["uri"] = json!(data_uri(&bin));
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("meshes[0].primitives[0].indices: index 0 = 7 is out of range (3 vertices)"),
        "{err}"
    );
}

fn decode_b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let s: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn limits_are_enforced_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = cornell_box().write_glb(dir.path(), "box.glb");
    let tight = |f: fn(&mut SceneLimits)| {
        let mut limits = SceneLimits::default();
        f(&mut limits);
        Scene::load(&path, &LoadOptions { limits })
            .unwrap_err()
            .to_string()
    };
    let err = tight(|l| l.max_triangles = 20);
    assert!(
        err.starts_with("box.glb: meshes[")
            && err.contains(": scene budget: mesh instances have 2")
            && err.contains("triangles, more than max_triangles (20 triangles)"),
        "{err}"
    );
    let err = tight(|l| l.max_file_bytes = 100);
    assert!(
        err.starts_with("box.glb: file: file bytes") && err.contains("limit of 100"),
        "{err}"
    );
    let err = tight(|l| l.max_buffer_bytes = 100);
    assert!(
        err.starts_with("box.glb: buffers[0].byteLength: buffer bytes"),
        "{err}"
    );
}

#[test]
fn unsupported_features_are_warned_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = cornell_box();
    // A textured, metallic, blended material on an extra triangle.
    b.materials.push(json!({
        "name": "Wood",
        "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 1.0, "roughnessFactor": 0.4},
        "normalTexture": {"index": 0},
        "alphaMode": "BLEND",
    }));
    let wood = b.materials.len() - 1;
    let tri = b.mesh(
        "Shelf",
        &[[0.0, 0.5, 0.0], [0.2, 0.5, 0.0], [0.0, 0.5, 0.2]],
        None,
        None,
        wood,
    );
    b.mesh_node(tri);
    // A line primitive, an orthographic camera, an animation, and an unknown extension.
    let pos = b.meshes[tri]["primitives"][0]["attributes"]["POSITION"].clone();
    b.meshes.push(
        json!({"name": "Wire", "primitives": [{"attributes": {"POSITION": pos}, "mode": 1}]}),
    );
    let wire = b.meshes.len() - 1;
    b.mesh_node(wire);
    b.cameras.push(json!({"name": "Plan", "type": "orthographic", "orthographic": {"xmag": 1, "ymag": 1, "znear": 0.1, "zfar": 10}}));
    let ortho = b.cameras.len() - 1;
    b.node(json!({"camera": ortho}));
    // A real 1×1 PNG: material textures are decoded.
    let mut png = Vec::new();
    image::RgbaImage::from_pixel(1, 1, image::Rgba([200, 150, 100, 255]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(dir.path().join("wood.png"), &png).unwrap();
    b.extra
        .insert("images".into(), json!([{"uri": "wood.png"}]));
    b.extra.insert("textures".into(), json!([{"source": 0}]));
    b.extensions_used.push("KHR_materials_clearcoat".into());
    let path = b.write_glb(dir.path(), "warn.glb");
    let scene = load(&path).unwrap();
    let warnings = scene.warnings().join("\n");
    // Textures, metallic-roughness, alpha modes, orthographic cameras and animations
    // are rendered now; the normal map on a primitive without NORMAL is named.
    for expected in [
        "mesh \"Shelf\" primitive 0: the normal map needs NORMAL",
        "mesh \"Wire\" primitive 0: mode Lines is not supported",
        "extension \"KHR_materials_clearcoat\" is not supported yet",
    ] {
        assert!(
            warnings.contains(expected),
            "missing warning {expected:?} in:\n{warnings}"
        );
    }
    // The unsupported parts did not stop the rest from loading; the image is hashed.
    assert_eq!(scene.triangle_count(), 36 + 1);
    assert_eq!(
        scene.camera_names(),
        vec!["Main".to_string(), "Plan".to_string()]
    );
    for unexpected in ["texture", "metallic", "alphaMode", "orthographic"] {
        assert!(
            !warnings.contains(unexpected),
            "{unexpected} in:\n{warnings}"
        );
    }
    assert_ne!(
        scene.content_hash(),
        *blake3::hash(&std::fs::read(&path).unwrap()).as_bytes()
    );
}

#[test]
fn hierarchy_instancing_lights_and_cameras() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GltfBuilder::new();
    let m = b.material("White", [1.0; 3], [0.0; 3], 1.0);
    let mesh = b.mesh(
        "Tri",
        &[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        None,
        None,
        m,
    );
    let leaf = b.mesh_node(mesh);
    // A parent instancing the same mesh as its child, with a TRS transform.
    let parent = b.node(json!({"mesh": mesh, "translation": [0, 0, -3], "rotation": [0, std::f32::consts::FRAC_1_SQRT_2, 0, std::f32::consts::FRAC_1_SQRT_2], "scale": [2, 2, 2], "children": [leaf]}));
    let l1 = b.light(
        json!({"type": "point", "intensity": 5.0}),
        common::pose([0.0, 3.0, 0.0], [0.0, -1.0, 0.0]),
    );
    let l2 = b.light(
        json!({"type": "directional", "intensity": 1.0}),
        common::pose([0.0, 3.0, 0.0], [0.0, -1.0, 0.0]),
    );
    b.cameras
        .push(json!({"type": "perspective", "perspective": {"yfov": 0.8, "znear": 0.1}}));
    let c1 = b.node(json!({"camera": 0, "name": "Rig"}));
    b.cameras.push(
        json!({"name": "Wide", "type": "perspective", "perspective": {"yfov": 1.2, "znear": 0.1}}),
    );
    let c2 = b.node(json!({"camera": 1}));
    b.roots = Some(vec![parent, l1, l2, c1, c2]);
    let scene = load(&b.write_glb(dir.path(), "tree.glb")).unwrap();
    assert_eq!(scene.triangle_count(), 2);
    assert_eq!(scene.light_count(), 2);
    assert_eq!(scene.emissive_triangle_count(), 0);
    assert_eq!(
        scene.camera_names(),
        vec!["Rig".to_string(), "Wide".to_string()]
    );

    // Listing the child as a root too makes it reachable twice, which glTF forbids.
    b.roots = Some(vec![parent, leaf]);
    let err = load_err(&b.write_glb(dir.path(), "twice.glb"));
    assert!(
        err.starts_with("twice.glb: nodes[0]: node is reached twice"),
        "{err}"
    );

    // A spot light without cone angles uses the glTF defaults; bad values are named.
    let mut bad = GltfBuilder::new();
    bad.light(
        json!({"type": "point", "intensity": -1.0}),
        common::pose([0.0; 3], [0.0, -1.0, 0.0]),
    );
    let err = load_err(&bad.write_glb(dir.path(), "light.glb"));
    assert!(
        err.starts_with("light.glb: extensions.KHR_lights_punctual.lights[0].intensity: -1"),
        "{err}"
    );
}
