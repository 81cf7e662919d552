//! Tests of the generated sample scenes: determinism, validity, contents, and freshness of the committed files.

use std::path::{Path, PathBuf};

use gltf::khr_lights_punctual::Kind;
use tessera_scenes::samples::{cornell_box, SampleScene, SAMPLE_SCENES};

fn scenes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample(file_name: &str) -> &'static SampleScene {
    SAMPLE_SCENES
        .iter()
        .find(|s| s.file_name == file_name)
        .unwrap_or_else(|| panic!("no sample scene {file_name}"))
}

/// Parses GLB bytes (validating the JSON with the `gltf` crate) and loads its buffers.
fn import(bytes: &[u8]) -> (gltf::Document, Vec<gltf::buffer::Data>) {
    gltf::Gltf::from_slice(bytes).expect("gltf::Gltf::from_slice accepts the file");
    let (document, buffers, _images) = gltf::import_slice(bytes).expect("gltf::import_slice");
    (document, buffers)
}

fn triangle_count(document: &gltf::Document) -> usize {
    document
        .meshes()
        .flat_map(|m| m.primitives())
        .map(|p| {
            assert_eq!(p.mode(), gltf::mesh::Mode::Triangles);
            p.indices().expect("indexed").count() / 3
        })
        .sum()
}

fn material_names(document: &gltf::Document) -> Vec<String> {
    document
        .materials()
        .map(|m| m.name().unwrap_or("").to_owned())
        .collect()
}

/// Checks the ceiling light: emissive colour × strength = radiance (17, 12, 4).
fn assert_cornell_light(document: &gltf::Document) {
    let light = document
        .materials()
        .find(|m| m.name() == Some("light"))
        .expect("material \"light\"");
    let strength = light
        .emissive_strength()
        .expect("KHR_materials_emissive_strength");
    assert_eq!(strength, 17.0);
    let radiance = light.emissive_factor().map(|c| c * strength);
    for (got, want) in radiance.iter().zip([17.0, 12.0, 4.0]) {
        assert!((got - want).abs() < 1e-4, "radiance {radiance:?}");
    }
}

/// Checks the one camera: perspective, yfov ≈ 39.3°, aspect 1, at (0.278, 0.273, −0.8).
fn assert_cornell_camera(document: &gltf::Document) {
    let cameras: Vec<_> = document.cameras().collect();
    assert_eq!(cameras.len(), 1);
    let gltf::camera::Projection::Perspective(p) = cameras[0].projection() else {
        panic!("camera is not perspective");
    };
    assert!(
        (p.yfov().to_degrees() - 39.3077).abs() < 1e-3,
        "yfov {}",
        p.yfov()
    );
    assert_eq!(p.aspect_ratio(), Some(1.0));
    let node = document
        .nodes()
        .find(|n| n.camera().is_some())
        .expect("a node holds the camera");
    let (translation, rotation, _) = node.transform().decomposed();
    assert_eq!(translation, [0.278, 0.273, -0.8]);
    assert_eq!(rotation, [0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn generation_is_deterministic() {
    for scene in SAMPLE_SCENES {
        let first = scene.files().unwrap();
        let second = scene.files().unwrap();
        assert!(
            first == second,
            "{} differs between two runs",
            scene.file_name
        );
    }
}

#[test]
fn committed_scenes_match_the_generator() {
    for scene in SAMPLE_SCENES {
        for (name, generated) in scene.files().unwrap() {
            let path = scenes_dir().join(&name);
            let on_disk =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            assert!(
                on_disk == generated,
                "{} is stale ({} bytes on disk, {} generated): run \
                 `cargo run --release -p tessera-scenes --bin gen-scenes`",
                path.display(),
                on_disk.len(),
                generated.len()
            );
        }
    }
}

#[test]
fn scenes_are_small() {
    for scene in SAMPLE_SCENES {
        let len: usize = scene.files().unwrap().iter().map(|(_, b)| b.len()).sum();
        assert!(len < 3 << 20, "{} is {len} bytes", scene.file_name);
    }
}

#[test]
fn cornell_box_contents() {
    let (document, buffers) = import(&sample("cornell-box.glb").to_glb().unwrap());
    assert_eq!(triangle_count(&document), 32);
    assert_eq!(
        material_names(&document),
        ["white", "red", "green", "light"]
    );
    assert_cornell_light(&document);
    assert_cornell_camera(&document);

    let names: Vec<_> = document.nodes().filter_map(|n| n.name()).collect();
    for part in [
        "floor",
        "ceiling",
        "back_wall",
        "left_wall",
        "right_wall",
        "short_box",
        "tall_box",
        "light",
    ] {
        let node = document
            .nodes()
            .find(|n| n.name() == Some(part))
            .unwrap_or_else(|| panic!("no node {part:?} in {names:?}"));
        let mesh = node
            .mesh()
            .unwrap_or_else(|| panic!("node {part:?} has no mesh"));
        assert_eq!(mesh.name(), Some(part));
    }
    let wall_material = |wall: &str| {
        let node = document.nodes().find(|n| n.name() == Some(wall)).unwrap();
        let primitive = node.mesh().unwrap().primitives().next().unwrap();
        primitive.material().name().unwrap().to_owned()
    };
    assert_eq!(wall_material("left_wall"), "red");
    assert_eq!(wall_material("right_wall"), "green");
    assert_eq!(wall_material("floor"), "white");

    // Everything inside the published bounds (metres), accessor min/max exact.
    for primitive in document.meshes().flat_map(|m| m.primitives()) {
        let reader = primitive.reader(|b| Some(&buffers[b.index()]));
        let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
        let bounds = primitive.bounding_box();
        for axis in 0..3 {
            let min = positions
                .iter()
                .map(|p| p[axis])
                .fold(f32::INFINITY, f32::min);
            let max = positions
                .iter()
                .map(|p| p[axis])
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!((bounds.min[axis], bounds.max[axis]), (min, max));
        }
        for p in &positions {
            assert!((0.0..=0.556).contains(&p[0]) && (0.0..=0.5488).contains(&p[1]));
            assert!((0.0..=0.5592).contains(&p[2]));
        }
    }
}

#[test]
fn cornell_walls_face_the_inside_and_the_light_faces_down() {
    let (document, buffers) = import(&sample("cornell-box.glb").to_glb().unwrap());
    let center = [0.278, 0.2744, 0.2796];
    for node in document.nodes() {
        let Some(mesh) = node.mesh() else { continue };
        let name = node.name().unwrap();
        for primitive in mesh.primitives() {
            let reader = primitive.reader(|b| Some(&buffers[b.index()]));
            let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
            let normals: Vec<[f32; 3]> = reader.read_normals().unwrap().collect();
            let indices: Vec<u32> = reader.read_indices().unwrap().into_u32().collect();
            for tri in indices.chunks_exact(3) {
                let [a, b, c] = [tri[0], tri[1], tri[2]].map(|i| positions[i as usize]);
                let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
                let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
                let n = [
                    e1[1] * e2[2] - e1[2] * e2[1],
                    e1[2] * e2[0] - e1[0] * e2[2],
                    e1[0] * e2[1] - e1[1] * e2[0],
                ];
                let shading = normals[tri[0] as usize];
                let agree = n[0] * shading[0] + n[1] * shading[1] + n[2] * shading[2];
                assert!(agree > 0.0, "{name}: winding disagrees with normal");
                let to_center = [center[0] - a[0], center[1] - a[1], center[2] - a[2]];
                let facing = n[0] * to_center[0] + n[1] * to_center[1] + n[2] * to_center[2];
                match name {
                    "light" => assert!(n[1] < 0.0, "light must face down"),
                    "short_box" | "tall_box" => {}
                    _ => assert!(facing > 0.0, "{name} faces away from the room"),
                }
            }
        }
    }
}

#[test]
fn displaced_sphere_contents() {
    let (document, buffers) = import(&sample("displaced-sphere.glb").to_glb().unwrap());
    let triangles = triangle_count(&document);
    assert!(
        (100_000..=250_000).contains(&triangles),
        "{triangles} triangles"
    );
    let names = material_names(&document);
    for wanted in ["white", "red", "green", "light", "clay"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "no material {wanted} in {names:?}"
        );
    }
    assert_cornell_light(&document);
    assert_cornell_camera(&document);

    // The sphere rests on the floor and stays inside the room.
    let node = document
        .nodes()
        .find(|n| n.name() == Some("displaced_sphere"))
        .expect("node displaced_sphere");
    let (t, _, _) = node.transform().decomposed();
    let primitive = node.mesh().unwrap().primitives().next().unwrap();
    let reader = primitive.reader(|b| Some(&buffers[b.index()]));
    let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
    assert!(positions.len() < 65_535, "expected u16 indices");
    let lowest = positions
        .iter()
        .map(|p| p[1] + t[1])
        .fold(f32::INFINITY, f32::min);
    assert!(lowest.abs() < 1e-6, "lowest point at y = {lowest}");
    for p in &positions {
        let world = [p[0] + t[0], p[1] + t[1], p[2] + t[2]];
        assert!(world[0] > 0.0 && world[0] < 0.55, "{world:?}");
        assert!(
            world[1] < 0.5 && world[2] > 0.0 && world[2] < 0.55,
            "{world:?}"
        );
    }
    // Displaced: radii vary by several percent around the base radius.
    let radii: Vec<f32> = positions
        .iter()
        .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
        .collect();
    let min = radii.iter().copied().fold(f32::INFINITY, f32::min);
    let max = radii.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(max / min > 1.1, "radius only varies {min}..{max}");
}

#[test]
fn glb_layout_follows_the_spec() {
    for scene in SAMPLE_SCENES {
        let glb = scene.to_glb().unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(glb[at..at + 4].try_into().unwrap());
        assert_eq!(&glb[0..4], b"glTF");
        assert_eq!(u32_at(4), 2);
        assert_eq!(u32_at(8) as usize, glb.len());
        let json_len = u32_at(12) as usize;
        assert_eq!(json_len % 4, 0);
        assert_eq!(&glb[16..20], b"JSON");
        let json = &glb[20..20 + json_len];
        let end = json.iter().rposition(|&b| b == b'}').unwrap() + 1;
        assert!(
            json[end..].iter().all(|&b| b == b' '),
            "JSON padding must be spaces"
        );
        let value: serde_json::Value = serde_json::from_slice(&json[..end]).unwrap();
        let bin_at = 20 + json_len;
        let bin_len = u32_at(bin_at) as usize;
        assert_eq!(bin_len % 4, 0);
        assert_eq!(&glb[bin_at + 4..bin_at + 8], b"BIN\0");
        assert_eq!(bin_at + 8 + bin_len, glb.len());
        let byte_length = value["buffers"][0]["byteLength"].as_u64().unwrap() as usize;
        assert!(byte_length <= bin_len && bin_len - byte_length < 4);
        assert!(glb[bin_at + 8 + byte_length..].iter().all(|&b| b == 0));
        // Vertex and index views carry a target; image and animation views must not.
        let mut untargeted = std::collections::BTreeSet::new();
        for image in value["images"].as_array().into_iter().flatten() {
            untargeted.extend(image["bufferView"].as_u64());
        }
        for animation in value["animations"].as_array().into_iter().flatten() {
            for sampler in animation["samplers"].as_array().unwrap() {
                for key in ["input", "output"] {
                    let accessor = sampler[key].as_u64().unwrap() as usize;
                    untargeted.extend(value["accessors"][accessor]["bufferView"].as_u64());
                }
            }
        }
        for (i, view) in value["bufferViews"].as_array().unwrap().iter().enumerate() {
            assert_eq!(view["byteOffset"].as_u64().unwrap() % 4, 0);
            assert_eq!(
                view["target"].is_u64(),
                !untargeted.contains(&(i as u64)),
                "{}: bufferView {i} target",
                scene.file_name
            );
        }
        for accessor in value["accessors"].as_array().unwrap() {
            assert!(accessor["count"].as_u64().unwrap() > 0);
        }
        for mesh in value["meshes"].as_array().unwrap() {
            let position = mesh["primitives"][0]["attributes"]["POSITION"]
                .as_u64()
                .unwrap();
            let accessor = &value["accessors"][position as usize];
            assert!(accessor["min"].is_array() && accessor["max"].is_array());
        }
    }
}

#[test]
fn external_buffer_form_loads_from_disk() {
    let builder = cornell_box().unwrap();
    let (json, bin) = builder.to_gltf_with_external_buffer("cornell box.bin");
    assert!(json.contains("\"uri\":\"cornell%20box.bin\""), "{json}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cornell-box.gltf"), &json).unwrap();
    std::fs::write(dir.path().join("cornell box.bin"), &bin).unwrap();
    let (document, buffers, _) = gltf::import(dir.path().join("cornell-box.gltf")).unwrap();
    assert_eq!(buffers[0].len(), bin.len());
    assert_eq!(triangle_count(&document), 32);
    // Same document as the GLB apart from the buffer's uri.
    let glb = builder.to_glb();
    let glb_json_len = u32::from_le_bytes(glb[12..16].try_into().unwrap()) as usize;
    let glb_json = std::str::from_utf8(&glb[20..20 + glb_json_len])
        .unwrap()
        .trim_end();
    assert_eq!(json.replace(",\"uri\":\"cornell%20box.bin\"", ""), glb_json);
}

#[test]
fn gen_scenes_writes_then_checks() {
    let bin = env!("CARGO_BIN_EXE_gen-scenes");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env_remove("TESSERA_SCENES_OUT")
            .output()
            .unwrap()
    };
    let out_arg = out.to_str().unwrap();
    assert_eq!(
        run(&["--check", "--out", out_arg]).status.code(),
        Some(1),
        "missing files"
    );
    assert_eq!(run(&["--out", out_arg]).status.code(), Some(0));
    for scene in SAMPLE_SCENES {
        for (name, _) in scene.files().unwrap() {
            assert!(Path::new(&out).join(name).is_file());
        }
    }
    assert_eq!(run(&["--check", "--out", out_arg]).status.code(), Some(0));
    let cornell = out.join("cornell-box.glb");
    let mut bytes = std::fs::read(&cornell).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&cornell, &bytes).unwrap();
    let stale = run(&["--check", "--out", out_arg]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stdout).contains("stale"));
    // An unwritable target is an error naming the path, not a panic.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let failed = run(&["--out", blocker.join("sub").to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("sub"));
}

#[test]
fn blender_studio_has_lights_camera_and_emissive_strength() {
    let path = scenes_dir().join("blender-studio.glb");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (document, _buffers) = import(&bytes);
    let used: Vec<_> = document.extensions_used().collect();
    assert!(
        used.contains(&"KHR_materials_emissive_strength"),
        "{used:?}"
    );
    assert!(used.contains(&"KHR_lights_punctual"), "{used:?}");
    assert!(document.cameras().count() >= 1);
    let kinds: Vec<Kind> = document.lights().unwrap().map(|l| l.kind()).collect();
    assert!(
        kinds.iter().any(|k| matches!(k, Kind::Point)),
        "no point light"
    );
    assert!(
        kinds.iter().any(|k| matches!(k, Kind::Directional)),
        "no sun light"
    );
    assert!(document
        .materials()
        .any(|m| m.emissive_strength().is_some_and(|s| s > 1.0)));
    assert!(triangle_count(&document) > 1000);
    assert!(bytes.len() < 4 << 20);
}
