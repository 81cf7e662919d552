//! Tests of the feature sample scenes (textures, lights, environment, instancing,
//! animation) through the `gltf` crate, and of the builder's checks for those features.

use std::collections::BTreeSet;

use gltf::animation::{Interpolation as GltfInterpolation, Property};
use gltf::khr_lights_punctual::Kind;
use serde_json::Value;
use tessera_scenes::encode::decode_radiance_hdr;
use tessera_scenes::samples::{env_hdr, instancing, SampleScene, LUMENS_PER_WATT, SAMPLE_SCENES};
use tessera_scenes::{
    Animation, AnimationChannel, AnimationPath, Filter, Interpolation, Material, MeshData, Node,
    Sampler, SceneBuilder, SceneError, TextureRef, Wrap,
};

fn sample(file_name: &str) -> &'static SampleScene {
    SAMPLE_SCENES
        .iter()
        .find(|s| s.file_name == file_name)
        .unwrap_or_else(|| panic!("no sample scene {file_name}"))
}

/// Writes a sample's files into a temporary folder and imports them with `gltf::import`
/// (which resolves external buffers and decodes every image).
fn import(
    file_name: &str,
) -> (
    gltf::Document,
    Vec<gltf::buffer::Data>,
    Vec<gltf::image::Data>,
    Value,
) {
    let dir = tempfile::tempdir().unwrap();
    let files = sample(file_name).files().unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let (document, buffers, images) =
        gltf::import(dir.path().join(file_name)).unwrap_or_else(|e| panic!("{file_name}: {e}"));
    // The raw JSON (the gltf crate drops extensions it was not built with).
    let main = &files[0].1;
    let json_bytes = if main.starts_with(b"glTF") {
        let len = u32::from_le_bytes(main[12..16].try_into().unwrap()) as usize;
        &main[20..20 + len]
    } else {
        &main[..]
    };
    let json = serde_json::from_slice(json_bytes).unwrap();
    (document, buffers, images, json)
}

fn environment(json: &Value) -> &Value {
    &json["scenes"][0]["extras"]["tessera_environment"]
}

#[test]
fn every_sample_imports_with_the_gltf_crate() {
    for scene in SAMPLE_SCENES {
        let (document, _, _, _) = import(scene.file_name);
        assert!(document.default_scene().is_some(), "{}", scene.file_name);
        assert!(document.cameras().count() >= 1, "{}", scene.file_name);
    }
}

#[test]
fn textured_uses_every_texture_feature() {
    let (document, _, images, json) = import("textured.glb");
    assert!(images.len() >= 8, "{} images", images.len());
    let used: Vec<_> = document.extensions_used().collect();
    assert!(used.contains(&"KHR_texture_transform"), "{used:?}");
    let wraps: BTreeSet<String> = document
        .samplers()
        .map(|s| format!("{:?}", s.wrap_s()))
        .collect();
    assert_eq!(wraps.len(), 3, "{wraps:?}");
    let filters: BTreeSet<String> = document
        .samplers()
        .filter_map(|s| s.mag_filter())
        .map(|f| format!("{f:?}"))
        .collect();
    assert_eq!(filters.len(), 2, "{filters:?}");
    let mut slots = BTreeSet::new();
    let mut modes = BTreeSet::new();
    for m in document.materials() {
        let pbr = m.pbr_metallic_roughness();
        if let Some(t) = pbr.base_color_texture() {
            slots.insert("baseColor");
            if t.tex_coord() == 1 {
                slots.insert("texCoord1");
            }
        }
        if pbr.metallic_roughness_texture().is_some() {
            slots.insert("metallicRoughness");
        }
        if m.normal_texture().is_some() {
            slots.insert("normal");
        }
        if m.emissive_texture().is_some() {
            slots.insert("emissive");
        }
        modes.insert(format!("{:?}", m.alpha_mode()));
    }
    assert_eq!(slots.len(), 5, "{slots:?}");
    assert_eq!(modes.len(), 3, "{modes:?}");
    let materials = json["materials"].as_array().unwrap();
    assert!(materials.iter().any(
        |m| m["pbrMetallicRoughness"]["baseColorTexture"]["extensions"]["KHR_texture_transform"]
            ["rotation"]
            .is_number()
    ));
    // A normal-mapped primitive with TANGENT and one without.
    let tangent_flags: BTreeSet<bool> = document
        .meshes()
        .flat_map(|m| m.primitives())
        .filter(|p| p.material().normal_texture().is_some())
        .map(|p| p.get(&gltf::Semantic::Tangents).is_some())
        .collect();
    assert_eq!(tangent_flags.len(), 2);
    assert!(document
        .meshes()
        .flat_map(|m| m.primitives())
        .any(|p| p.get(&gltf::Semantic::TexCoords(1)).is_some()));
    assert_eq!(
        environment(&json)["color"],
        serde_json::json!([0.25, 0.35, 0.55])
    );
}

#[test]
fn furnace_is_white_and_unlit() {
    let (document, _, _, json) = import("furnace.glb");
    assert_eq!(
        environment(&json)["color"],
        serde_json::json!([1.0, 1.0, 1.0])
    );
    assert_eq!(environment(&json)["strength"], serde_json::json!(1.0));
    assert!(document.lights().is_none());
    for m in document.materials() {
        assert_eq!(m.pbr_metallic_roughness().base_color_factor(), [1.0; 4]);
    }
}

#[test]
fn lights_are_photometric() {
    let (document, _, _, json) = import("lights.glb");
    let lights: Vec<_> = document.lights().unwrap().collect();
    let kind = |name: &str| {
        let l = lights.iter().find(|l| l.name() == Some(name)).unwrap();
        (l.kind(), l.intensity())
    };
    assert!(matches!(kind("point").0, Kind::Point));
    assert!(matches!(kind("spot").0, Kind::Spot { .. }));
    assert!(matches!(kind("sun").0, Kind::Directional));
    // 1.5 W/m² at 2.5 m below the point light, after ÷ 683.
    let irradiance = kind("point").1 / LUMENS_PER_WATT / (2.5 * 2.5);
    assert!((irradiance - 1.5).abs() < 1e-4);
    assert!(
        json["scenes"][0].get("extras").is_none(),
        "black background"
    );
    assert!(document
        .materials()
        .any(|m| m.emissive_strength().is_some_and(|s| s > 1.0)));
}

#[test]
fn env_hdr_sky_has_the_sun_where_documented() {
    let (_, _, _, json) = import("env-hdr.gltf");
    let env = environment(&json);
    assert_eq!(env["image"], "env-hdr-sky.hdr");
    let hdr = env_hdr::sky_image();
    let (w, h, pixels) = decode_radiance_hdr(&hdr).unwrap();
    assert_eq!((w, h), env_hdr::SKY_SIZE);
    let (at, brightest) = pixels
        .iter()
        .enumerate()
        .max_by(|a, b| a.1[0].total_cmp(&b.1[0]))
        .unwrap();
    assert!(brightest[0] > 1000.0, "{brightest:?}");
    // Blender mapping: u = 0.5 − atan2(b_y, b_x)/2π with b = (x, −z, y); the sun at
    // azimuth 20° towards +Z is at u = 0.5 + 20/360, elevation 30° at v = 2/3.
    let (x, y) = ((at as u32 % w) as f64, (at as u32 / w) as f64);
    let u = (x + 0.5) / f64::from(w);
    let v = 1.0 - (y + 0.5) / f64::from(h);
    assert!((u - (0.5 + 20.0 / 360.0)).abs() < 0.01, "u = {u}");
    assert!((v - 2.0 / 3.0).abs() < 0.02, "v = {v}");
    let sun_pixels = pixels.iter().filter(|p| p[0] > 1000.0).count();
    assert!((4..=40).contains(&sun_pixels), "{sun_pixels} sun pixels");
}

/// Triangles after expanding every node of the default scene.
fn instanced_triangles(document: &gltf::Document) -> usize {
    fn walk(node: gltf::Node) -> usize {
        let own = node.mesh().map_or(0, |m| {
            m.primitives()
                .map(|p| p.indices().unwrap().count() / 3)
                .sum()
        });
        own + node.children().map(walk).sum::<usize>()
    }
    document.default_scene().unwrap().nodes().map(walk).sum()
}

#[test]
fn instancing_counts_cameras_and_mirror() {
    let (document, _, _, _) = import("instancing.glb");
    assert_eq!(
        instanced_triangles(&document),
        instancing::INSTANCED_TRIANGLES
    );
    let names: Vec<_> = document
        .cameras()
        .map(|c| c.name().unwrap().to_owned())
        .collect();
    assert_eq!(names, instancing::CAMERAS);
    assert!(document
        .cameras()
        .any(|c| matches!(c.projection(), gltf::camera::Projection::Orthographic(_))));
    assert!(document
        .nodes()
        .any(|n| n.transform().decomposed().2[0] < 0.0));
    assert!(document.meshes().any(|m| m.primitives().count() == 3));
    let crate_users = document
        .nodes()
        .filter(|n| n.mesh().is_some_and(|m| m.name() == Some("crate")))
        .count();
    assert_eq!(crate_users, instancing::GRID_INSTANCES + 1);
}

#[test]
fn animated_has_every_interpolation_and_a_moving_camera() {
    let (document, _, _, _) = import("animated.glb");
    let mut seen = BTreeSet::new();
    let mut camera_animated = false;
    for animation in document.animations() {
        for channel in animation.channels() {
            let interpolation = channel.sampler().interpolation();
            let property = channel.target().property();
            seen.insert(format!("{property:?} {interpolation:?}"));
            camera_animated |= channel.target().node().camera().is_some();
            let max = channel.sampler().input().max().unwrap();
            assert!(max[0].as_f64().unwrap() <= 2.0);
        }
    }
    for want in [
        (Property::Translation, GltfInterpolation::Linear),
        (Property::Rotation, GltfInterpolation::Linear),
        (Property::Scale, GltfInterpolation::Step),
        (Property::Translation, GltfInterpolation::CubicSpline),
    ] {
        assert!(
            seen.contains(&format!("{:?} {:?}", want.0, want.1)),
            "{seen:?}"
        );
    }
    assert!(camera_animated);
}

fn textured_quad() -> MeshData {
    MeshData {
        positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]],
        normals: Some(vec![[0.0, 0.0, 1.0]; 3]),
        tex_coords_0: Some(vec![[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]),
        indices: vec![0, 1, 2],
        ..MeshData::default()
    }
}

#[test]
fn builder_rejects_a_texture_without_its_uv_set() {
    let mut b = SceneBuilder::new();
    let png = tessera_scenes::encode::png(
        1,
        1,
        tessera_scenes::encode::Channels::Rgb,
        &[255, 0, 0],
        tessera_scenes::encode::PngEffort::Small,
    );
    let image = b.add_image_png("red", &png).unwrap();
    let sampler = b
        .add_sampler(&Sampler::new("s", Filter::Nearest, Wrap::Repeat))
        .unwrap();
    let texture = b.add_texture("red", image, Some(sampler)).unwrap();
    let uv1 = b
        .add_material(
            &Material::diffuse("uv1", [1.0; 3])
                .with_base_color_texture(TextureRef::new(texture).with_tex_coord(1)),
        )
        .unwrap();
    let err = b.add_mesh("quad", &textured_quad(), Some(uv1)).unwrap_err();
    assert!(
        matches!(
            err,
            SceneError::MissingAttribute {
                attribute: "TEXCOORD_1",
                ..
            }
        ),
        "{err}"
    );
    assert!(b.add_image_png("bad", b"not a png").is_err());
    let uv0 = b
        .add_material(
            &Material::diffuse("uv0", [1.0; 3]).with_base_color_texture(TextureRef::new(texture)),
        )
        .unwrap();
    b.add_mesh("quad", &textured_quad(), Some(uv0)).unwrap();
    let mut no_uv = textured_quad();
    no_uv.tex_coords_0 = None;
    assert!(b.add_mesh("bare", &no_uv, Some(uv0)).is_err());
}

#[test]
fn builder_checks_animations() {
    let mut b = SceneBuilder::new();
    let node = b.add_node(&Node::new("n")).unwrap();
    let channel = |times: Vec<f32>, values: Vec<f32>| AnimationChannel {
        node,
        path: AnimationPath::Translation,
        interpolation: Interpolation::Linear,
        times,
        values,
    };
    let bad_times = Animation {
        name: "a".into(),
        channels: vec![channel(vec![0.0, 0.0], vec![0.0; 6])],
    };
    assert!(b.add_animation(&bad_times).is_err());
    let bad_count = Animation {
        name: "a".into(),
        channels: vec![channel(vec![0.0, 1.0], vec![0.0; 5])],
    };
    assert!(b.add_animation(&bad_count).is_err());
    let bad_quat = Animation {
        name: "a".into(),
        channels: vec![AnimationChannel {
            path: AnimationPath::Rotation,
            ..channel(vec![0.0], vec![0.0, 0.0, 0.0, 2.0])
        }],
    };
    assert!(b.add_animation(&bad_quat).is_err());
    let good = Animation {
        name: "a".into(),
        channels: vec![channel(vec![0.0, 1.0], vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0])],
    };
    b.add_animation(&good).unwrap();
    b.add_scene("s", &[node]).unwrap();
    let glb = b.to_glb();
    let (document, _, _) = gltf::import_slice(&glb).unwrap();
    assert_eq!(document.animations().count(), 1);
}
