//! Tests of the builder API: round trips through the `gltf` crate and rejection of invalid items.

use gltf::khr_lights_punctual::Kind;
use tessera_scenes::{
    Filter, Light, Material, MeshData, Node, PerspectiveCamera, Sampler, SceneBuilder, SceneError,
    Wrap,
};

fn triangle() -> MeshData {
    MeshData {
        positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, -1.0]],
        normals: Some(vec![[0.0, 0.0, 3.0]; 3]),
        indices: vec![0, 1, 2],
        ..MeshData::default()
    }
}

fn parse(builder: &SceneBuilder) -> (gltf::Document, Vec<gltf::buffer::Data>) {
    let glb = builder.to_glb();
    let (document, buffers, _) = gltf::import_slice(&glb).expect("valid glb");
    (document, buffers)
}

#[test]
fn lights_cameras_and_transforms_round_trip() {
    let mut b = SceneBuilder::new();
    let metal = b
        .add_material(
            &Material::diffuse("metal", [0.9, 0.9, 0.9]).with_metallic_roughness(1.0, 0.2),
        )
        .unwrap();
    let mesh = b.add_mesh("tri", &triangle(), Some(metal)).unwrap();
    let point = b
        .add_light(&Light::point("bulb", [1.0, 0.9, 0.8], 40.0).with_range(5.0))
        .unwrap();
    let sun = b
        .add_light(&Light::directional("sun", [1.0, 1.0, 1.0], 3.0).with_range(9.0))
        .unwrap();
    let spot = b
        .add_light(&Light::spot("spot", [1.0, 1.0, 1.0], 100.0, 0.2, 0.6))
        .unwrap();
    let camera = b
        .add_camera(&PerspectiveCamera::new("cam", 0.8).with_clip(0.1, Some(100.0)))
        .unwrap();

    let mut matrix = [0.0; 16];
    for i in 0..4 {
        matrix[i * 5] = 1.0;
    }
    matrix[12] = 2.0;
    let n_mesh = b
        .add_node(&Node::new("mesh").with_mesh(mesh).with_matrix(matrix))
        .unwrap();
    let n_point = b
        .add_node(
            &Node::new("bulb")
                .with_light(point)
                .with_translation([0.0, 3.0, 0.0]),
        )
        .unwrap();
    let n_sun = b.add_node(&Node::new("sun").with_light(sun)).unwrap();
    let n_spot = b
        .add_node(
            &Node::new("spot")
                .with_light(spot)
                .with_scale([2.0, 2.0, 2.0]),
        )
        .unwrap();
    let n_cam = b.add_node(&Node::new("cam").with_camera(camera)).unwrap();
    let group = b
        .add_node(&Node::new("group").with_children(&[n_point, n_sun, n_spot]))
        .unwrap();
    b.add_scene("main", &[n_mesh, group, n_cam]).unwrap();
    assert_eq!(b.triangle_count(), 1);

    let (document, buffers) = parse(&b);
    let used: Vec<_> = document.extensions_used().collect();
    assert_eq!(used, ["KHR_lights_punctual"]);
    let lights: Vec<_> = document.lights().unwrap().collect();
    assert_eq!(lights.len(), 3);
    assert!(matches!(lights[0].kind(), Kind::Point));
    assert_eq!(lights[0].range(), Some(5.0));
    assert_eq!(lights[0].intensity(), 40.0);
    assert!(matches!(lights[1].kind(), Kind::Directional));
    assert_eq!(lights[1].range(), None, "directional lights carry no range");
    match lights[2].kind() {
        Kind::Spot {
            inner_cone_angle,
            outer_cone_angle,
        } => assert_eq!((inner_cone_angle, outer_cone_angle), (0.2, 0.6)),
        _ => panic!("expected a spot light"),
    }
    let scene = document.default_scene().unwrap();
    assert_eq!(scene.nodes().count(), 3);
    let group = document
        .nodes()
        .find(|n| n.name() == Some("group"))
        .unwrap();
    let children: Vec<_> = group
        .children()
        .map(|c| c.light().unwrap().index())
        .collect();
    assert_eq!(children, [0, 1, 2]);
    let mesh_node = document.nodes().find(|n| n.name() == Some("mesh")).unwrap();
    assert!(matches!(
        mesh_node.transform(),
        gltf::scene::Transform::Matrix { .. }
    ));

    let material = document.materials().next().unwrap();
    assert_eq!(material.pbr_metallic_roughness().metallic_factor(), 1.0);
    assert_eq!(material.pbr_metallic_roughness().roughness_factor(), 0.2);
    assert_eq!(material.emissive_strength(), None);

    let primitive = document
        .meshes()
        .next()
        .unwrap()
        .primitives()
        .next()
        .unwrap();
    let reader = primitive.reader(|b| Some(&buffers[b.index()]));
    let normals: Vec<_> = reader.read_normals().unwrap().collect();
    assert_eq!(normals[0], [0.0, 0.0, 1.0], "normals are normalised");
    let bounds = primitive.bounding_box();
    assert_eq!(bounds.min, [0.0, 0.0, -1.0]);
    assert_eq!(bounds.max, [1.0, 2.0, 0.0]);
}

#[test]
fn large_meshes_use_u32_indices() {
    let n = 70_000u32;
    let positions: Vec<[f32; 3]> = (0..n).map(|i| [i as f32, (i % 7) as f32, 0.0]).collect();
    let indices: Vec<u32> = (0..n - 2).flat_map(|i| [i, i + 1, i + 2]).collect();
    let mut b = SceneBuilder::new();
    let mesh = b
        .add_mesh(
            "strip",
            &MeshData {
                positions,
                normals: None,
                indices,
                ..MeshData::default()
            },
            None,
        )
        .unwrap();
    let node = b.add_node(&Node::new("strip").with_mesh(mesh)).unwrap();
    b.add_scene("s", &[node]).unwrap();
    let (document, buffers) = parse(&b);
    let primitive = document
        .meshes()
        .next()
        .unwrap()
        .primitives()
        .next()
        .unwrap();
    assert_eq!(
        primitive.indices().unwrap().data_type(),
        gltf::accessor::DataType::U32
    );
    let reader = primitive.reader(|b| Some(&buffers[b.index()]));
    let max = reader.read_indices().unwrap().into_u32().max().unwrap();
    assert_eq!(max, n - 1);
}

#[test]
fn emissive_strength_is_written_only_when_set() {
    let mut b = SceneBuilder::new();
    b.add_material(&Material::diffuse("plain", [0.5; 3]))
        .unwrap();
    b.add_material(&Material::diffuse("glow", [0.5; 3]).with_emission([1.0, 0.5, 0.25], 4.0))
        .unwrap();
    let (document, _) = parse(&b);
    let used: Vec<_> = document.extensions_used().collect();
    assert_eq!(used, ["KHR_materials_emissive_strength"]);
    let materials: Vec<_> = document.materials().collect();
    assert_eq!(materials[0].emissive_strength(), None);
    assert_eq!(materials[0].emissive_factor(), [0.0; 3]);
    assert_eq!(materials[1].emissive_strength(), Some(4.0));
    assert_eq!(materials[1].emissive_factor(), [1.0, 0.5, 0.25]);
}

#[test]
fn same_calls_same_bytes() {
    let build = || {
        let mut b = SceneBuilder::new();
        let m = b
            .add_material(&Material::diffuse("m", [0.1, 0.2, 0.3]))
            .unwrap();
        let mesh = b.add_mesh("t", &triangle(), Some(m)).unwrap();
        let node = b.add_node(&Node::new("t").with_mesh(mesh)).unwrap();
        b.add_scene("s", &[node]).unwrap();
        b
    };
    assert_eq!(build().to_glb(), build().to_glb());
    assert_eq!(
        build().to_gltf_with_external_buffer("t.bin"),
        build().to_gltf_with_external_buffer("t.bin")
    );
}

#[test]
fn invalid_meshes_are_rejected_with_names() {
    let mut b = SceneBuilder::new();
    let mut bad = triangle();
    bad.indices = vec![0, 1, 3];
    let err = b.add_mesh("floor", &bad, None).unwrap_err();
    assert_eq!(
        err,
        SceneError::IndexOutOfRange {
            mesh: "floor".into(),
            index: 3,
            at: 2,
            vertex_count: 3
        }
    );
    assert!(err.to_string().contains("floor"));

    bad = triangle();
    bad.indices = vec![0, 1];
    assert!(matches!(
        b.add_mesh("m", &bad, None),
        Err(SceneError::IndexCount { count: 2, .. })
    ));

    bad = triangle();
    bad.positions[1][2] = f32::NAN;
    let err = b.add_mesh("m", &bad, None).unwrap_err();
    assert!(matches!(err, SceneError::NotFinite { .. }), "{err}");
    assert!(err.to_string().contains("position 1"), "{err}");

    bad = triangle();
    bad.normals = Some(vec![[0.0, 1.0, 0.0]; 2]);
    assert!(matches!(
        b.add_mesh("m", &bad, None),
        Err(SceneError::NormalCount { normals: 2, .. })
    ));

    bad = triangle();
    bad.normals = Some(vec![[0.0; 3]; 3]);
    assert!(matches!(
        b.add_mesh("m", &bad, None),
        Err(SceneError::ZeroNormal { at: 0, .. })
    ));

    assert!(matches!(
        b.add_mesh("m", &MeshData::default(), None),
        Err(SceneError::EmptyMesh { .. })
    ));

    // An id from another builder.
    let mut other = SceneBuilder::new();
    let foreign = other
        .add_material(&Material::diffuse("x", [0.5; 3]))
        .unwrap();
    assert!(matches!(
        b.add_mesh("m", &triangle(), Some(foreign)),
        Err(SceneError::UnknownId {
            kind: "material",
            index: 0
        })
    ));
    assert_eq!(b.triangle_count(), 0, "nothing was added");
    assert_eq!(b.bin_len(), 0);
}

#[test]
fn invalid_items_are_rejected() {
    let mut b = SceneBuilder::new();
    let too_bright = Material::diffuse("red", [1.5, 0.0, 0.0]);
    let err = b.add_material(&too_bright).unwrap_err();
    assert!(err.to_string().contains("baseColorFactor[0]"), "{err}");
    let negative = Material::diffuse("glow", [0.5; 3]).with_emission([1.0; 3], -1.0);
    assert!(b.add_material(&negative).is_err());

    assert!(b.add_camera(&PerspectiveCamera::new("c", 0.0)).is_err());
    assert!(b.add_camera(&PerspectiveCamera::new("c", 4.0)).is_err());
    assert!(b
        .add_camera(&PerspectiveCamera::new("c", 1.0).with_clip(0.0, None))
        .is_err());
    assert!(b
        .add_camera(&PerspectiveCamera::new("c", 1.0).with_clip(1.0, Some(0.5)))
        .is_err());
    assert!(b
        .add_camera(&PerspectiveCamera::new("c", 1.0).with_aspect_ratio(-1.0))
        .is_err());

    assert!(b
        .add_light(&Light::spot("s", [1.0; 3], 1.0, 0.6, 0.2))
        .is_err());
    assert!(b
        .add_light(&Light::spot("s", [1.0; 3], 1.0, 0.1, 2.0))
        .is_err());
    assert!(b.add_light(&Light::point("p", [1.0; 3], -1.0)).is_err());
    assert!(b
        .add_light(&Light::point("p", [1.0; 3], 1.0).with_range(0.0))
        .is_err());

    // A mipmap mode is a minification filter only; as minFilter it is written.
    let bad = Sampler {
        mag_filter: Filter::LinearMipmapLinear,
        ..Sampler::new("bad", Filter::Linear, Wrap::Repeat)
    };
    assert!(matches!(
        b.add_sampler(&bad),
        Err(SceneError::MipmapMagFilter { sampler }) if sampler == "bad"
    ));
    let mipmapped = Sampler {
        min_filter: Filter::LinearMipmapLinear,
        ..Sampler::new("mip", Filter::Linear, Wrap::Repeat)
    };
    b.add_sampler(&mipmapped).unwrap();

    let err = b
        .add_node(&Node::new("n").with_rotation([0.0, 0.0, 0.0, 2.0]))
        .unwrap_err();
    assert!(err.to_string().contains("rotation"), "{err}");

    let child = b.add_node(&Node::new("child")).unwrap();
    let parent = b
        .add_node(&Node::new("parent").with_children(&[child]))
        .unwrap();
    assert!(matches!(
        b.add_node(&Node::new("other").with_children(&[child])),
        Err(SceneError::SecondParent { node: 0, parent: 1 })
    ));
    let lone = b.add_node(&Node::new("lone")).unwrap();
    assert!(b
        .add_node(&Node::new("twice").with_children(&[lone, lone]))
        .is_err());
    assert!(matches!(
        b.add_scene("s", &[parent, child]),
        Err(SceneError::RootHasParent {
            node: 0,
            parent: 1,
            ..
        })
    ));
    let scene = b.add_scene("s", &[parent, lone]).unwrap();
    b.set_default_scene(scene).unwrap();
    let (document, _) = parse(&b);
    assert_eq!(document.nodes().count(), 3);
    let sampler = document.samplers().next().unwrap();
    assert_eq!(
        sampler.min_filter(),
        Some(gltf::texture::MinFilter::LinearMipmapLinear)
    );
}

#[test]
fn empty_builder_writes_a_valid_glb_without_bin_chunk() {
    let glb = SceneBuilder::new().to_glb();
    assert!(gltf::Gltf::from_slice(&glb).is_ok());
    let json_len = u32::from_le_bytes(glb[12..16].try_into().unwrap()) as usize;
    assert_eq!(glb.len(), 20 + json_len);
}
