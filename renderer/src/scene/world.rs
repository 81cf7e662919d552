//! Instantiating a loaded scene at one time: node transforms (with animation poses),
//! world-space triangles and vertices in the GPU layout, the BVH, emitters, punctual
//! lights and cameras.
//!
//! Everything here is a pure function of the loaded document and the time, computed in
//! f64 in a fixed order and rounded to f32 once, so every machine builds the same bytes.

use std::time::Instant;

use bytemuck::{Pod, Zeroable};
use gltf::json::extensions::scene::khr_lights_punctual as khr_lights;
use gltf::json::validation::Checked;
use gltf::json::Root;

use super::material::FieldError;
use super::math::{self, Mat4};
use super::SceneData;
use crate::bvh::{self, BvhNode};

/// Lumens per watt used to turn glTF's photometric light units into Blender's radiometric
/// ones (Blender's glTF importer, `PBR_WATTS_TO_LUMENS`).
pub(crate) const WATTS_TO_LUMENS: f64 = 683.0;

/// Triangle flag bits (low bits of `tri_v0[i].w`).
/// Bits 0-1: alpha mode of the material (0 opaque, 1 mask, 2 blend).
pub(crate) const TRI_ALPHA: u32 = 3;
pub(crate) const TRI_FLAT: u32 = 4; // no vertex normals: shade with the face normal
pub(crate) const TRI_TANGENTS: u32 = 8; // vertices have a tangent frame (normal map)

pub(crate) const LIGHT_POINT: u32 = 0;
pub(crate) const LIGHT_SPOT: u32 = 1;
pub(crate) const LIGHT_DIRECTIONAL: u32 = 2;

/// A camera placed in the world.
#[derive(Clone, Debug)]
pub(crate) struct CameraDef {
    pub name: String,
    pub origin: [f64; 3],
    pub right: [f64; 3],
    pub up: [f64; 3],
    pub forward: [f64; 3],
    pub projection: Projection,
}

/// How a camera projects.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Projection {
    /// tan(yfov / 2).
    Perspective { tan_half_fov: f64 },
    /// Half height of the view (glTF `ymag`).
    Orthographic { ymag: f64 },
}

/// An emissive triangle and the CDF value at its end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuEmitter {
    pub triangle: u32,
    pub cdf: f32,
}

/// A punctual light (see the shader's `Light`), in radiometric units.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GpuLight {
    pub position: [f32; 4],
    pub direction: [f32; 4],
    pub intensity: [f32; 4],
    pub cone: [f32; 4],
}

/// The scene at one time, in the GPU layout.
pub(crate) struct World {
    pub cameras: Vec<CameraDef>,
    pub lights: Vec<GpuLight>,
    pub nodes: Vec<BvhNode>,
    /// Per triangle (BVH order): v0 (w = flag bits), e1 (w = emitter pick probability /
    /// area), e2 (w = bits of the triangle's number in the BVH's leaf order, which
    /// seeds its stochastic alpha), vertex indices (w = material).
    pub tri_v0: Vec<[f32; 4]>,
    pub tri_e1: Vec<[f32; 4]>,
    pub tri_e2: Vec<[f32; 4]>,
    pub tri_idx: Vec<[u32; 4]>,
    /// Per vertex: TEXCOORD_0.xy, TEXCOORD_1.xy.
    pub vert_uv: Vec<[f32; 4]>,
    /// Per vertex: octahedral normal (2 × snorm16), octahedral tangent (snorm16 x,
    /// snorm15 y, bitangent sign in bit 31).
    pub vert_frame: Vec<[u32; 2]>,
    pub emitters: Vec<GpuEmitter>,
    pub bvh_build_ms: f64,
}

impl World {
    /// GPU bytes of the geometry arrays.
    pub fn geometry_bytes(&self) -> u64 {
        (std::mem::size_of_val(&self.nodes[..])
            + 16 * 4 * self.tri_v0.len()
            + std::mem::size_of_val(&self.vert_uv[..])
            + std::mem::size_of_val(&self.vert_frame[..])
            + std::mem::size_of_val(&self.emitters[..])) as u64
    }
}

fn label(kind: &str, idx: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{kind} {n:?}"),
        _ => format!("{kind}s[{idx}]"),
    }
}

/// Octahedral encoding of a unit vector into two snorm16 values.
fn oct(v: [f64; 3]) -> [f64; 2] {
    let l1 = v[0].abs() + v[1].abs() + v[2].abs();
    if l1 <= 0.0 || !l1.is_finite() {
        return [0.0, 0.0];
    }
    let (x, y) = (v[0] / l1, v[1] / l1);
    if v[2] >= 0.0 {
        [x, y]
    } else {
        let sx = if x >= 0.0 { 1.0 } else { -1.0 };
        let sy = if y >= 0.0 { 1.0 } else { -1.0 };
        [(1.0 - y.abs()) * sx, (1.0 - x.abs()) * sy]
    }
}

fn snorm(v: f64, max: f64) -> u32 {
    ((v.clamp(-1.0, 1.0) * max).round() as i32) as u32
}

fn pack_normal(n: [f64; 3]) -> u32 {
    let o = oct(n);
    (snorm(o[0], 32767.0) & 0xffff) | (snorm(o[1], 32767.0) << 16)
}

fn pack_tangent(t: [f64; 3], sign: f64) -> u32 {
    let o = oct(t);
    (snorm(o[0], 32767.0) & 0xffff)
        | ((snorm(o[1], 16383.0) & 0x7fff) << 16)
        | (u32::from(sign < 0.0) << 31)
}

pub(crate) fn node_matrix(
    root: &Root,
    idx: usize,
    pose: Option<&super::animation::NodePose>,
) -> Result<Mat4, FieldError> {
    let node = &root.nodes[idx];
    let m = if let Some(matrix) = &node.matrix {
        math::from_columns(matrix)
    } else {
        let t = node.translation.unwrap_or([0.0; 3]).map(f64::from);
        let r = node
            .rotation
            .map_or([0.0, 0.0, 0.0, 1.0], |q| q.0)
            .map(f64::from);
        let s = node.scale.unwrap_or([1.0; 3]).map(f64::from);
        let (t, r, s) = match pose {
            Some(p) => (
                p.translation.unwrap_or(t),
                p.rotation.unwrap_or(r),
                p.scale.unwrap_or(s),
            ),
            None => (t, r, s),
        };
        math::from_trs64(t, r, s).ok_or_else(|| {
            (
                format!("nodes[{idx}].rotation"),
                "zero-length quaternion".into(),
            )
        })?
    };
    if !math::is_finite(&m) {
        return Err((
            format!("nodes[{idx}]"),
            "transform has a non-finite value".into(),
        ));
    }
    Ok(m)
}

/// Build the world at `time_s` (seconds). Warnings are only reported by the caller that
/// wants them (the load-time instantiation).
pub(crate) fn instantiate(
    data: &SceneData,
    time_s: f64,
    warn: &mut dyn FnMut(String),
) -> Result<World, FieldError> {
    let root = &data.root;
    let poses = if data.animations.is_empty() {
        Vec::new()
    } else {
        data.animations.sample(time_s)
    };
    let mut pose_of: Vec<Option<usize>> = vec![None; root.nodes.len()];
    for (k, p) in poses.iter().enumerate() {
        if p.node < pose_of.len() {
            pose_of[p.node] = Some(k);
        }
    }
    // Walk the node tree depth first (children in array order) with world matrices.
    let mut visited = vec![false; root.nodes.len()];
    let mut stack: Vec<(usize, Mat4)> = data
        .roots
        .iter()
        .rev()
        .map(|&n| (n, math::IDENTITY))
        .collect();
    let mut instances: Vec<(usize, usize, Mat4)> = Vec::new();
    let mut cameras = Vec::new();
    let mut lights = Vec::new();
    while let Some((idx, parent)) = stack.pop() {
        if std::mem::replace(&mut visited[idx], true) {
            return Err((
                format!("nodes[{idx}]"),
                "node is reached twice (a cycle or a node with two parents)".into(),
            ));
        }
        let pose = pose_of[idx].map(|k| &poses[k]);
        let world = math::mul(&parent, &node_matrix(root, idx, pose)?);
        let node = &root.nodes[idx];
        if node.skin.is_some() {
            let name = label("node", idx, node.name.as_deref());
            warn(format!(
                "{name}: skins are not supported yet; using the bind pose"
            ));
        }
        if let Some(mesh) = node.mesh {
            instances.push((idx, mesh.value(), world));
        }
        if let Some(cam) = node.camera {
            if let Some(c) = camera(root, cam.value(), idx, &world, warn)? {
                cameras.push(c);
            }
        }
        let light_ref = node
            .extensions
            .as_ref()
            .and_then(|e| e.khr_lights_punctual.as_ref());
        if let Some(light_ref) = light_ref {
            lights.push(light(root, light_ref.light.value(), idx, &world)?);
            if lights.len() as u64 > data.max_lights {
                return Err(too_many_lights(idx, lights.len() as u64, data.max_lights));
            }
        }
        for child in node.children.iter().flatten().rev() {
            stack.push((child.value(), world));
        }
    }

    // Geometry in instance order.
    let mut positions: Vec<[[f32; 3]; 3]> = Vec::new();
    let mut tri_info: Vec<[u32; 4]> = Vec::new(); // vertex indices + material
    let mut tri_flags: Vec<u32> = Vec::new();
    let mut vert_uv: Vec<[f32; 4]> = Vec::new();
    let mut vert_frame: Vec<[u32; 2]> = Vec::new();
    for &(node_idx, m, ref world) in &instances {
        let normal_m = math::normal_matrix(world);
        // A mirroring transform reverses the winding (glTF: the front face flips too), so
        // two vertices are swapped to keep cross(e1, e2) on the front side; the bitangent
        // sign flips with it.
        let mirrored = math::determinant3(world) < 0.0;
        for (p, prim) in data.prims[m].iter().enumerate() {
            let Some(prim) = prim else { continue };
            let material = &data.materials[prim.material as usize];
            let base = vert_uv.len() as u32;
            let world_pos: Vec<[f32; 3]> = prim
                .positions
                .iter()
                .map(|&v| math::to_f32(math::point(world, v)))
                .collect();
            if world_pos.iter().flatten().any(|v| !v.is_finite()) {
                return Err((
                    format!("meshes[{m}].primitives[{p}].attributes.POSITION"),
                    format!("a position is not finite after the transform of nodes[{node_idx}]"),
                ));
            }
            let normals: Option<Vec<[f64; 3]>> = prim.normals.as_ref().map(|ns| {
                ns.iter()
                    .map(|&n| math::normalize(math::mul3(&normal_m, n)).unwrap_or([0.0, 0.0, 0.0]))
                    .collect()
            });
            let use_tangents = prim.tangents.is_some() && material.normal_tex.info[2] != 0;
            for k in 0..prim.positions.len() {
                vert_uv.push(prim.uv[k]);
                let n = normals.as_ref().map_or(0, |ns| pack_normal(ns[k]));
                let t = match (&prim.tangents, use_tangents) {
                    (Some(ts), true) => {
                        let t = ts[k];
                        let tw = math::normalize(math::vector(world, [t[0], t[1], t[2]]))
                            .unwrap_or([1.0, 0.0, 0.0]);
                        let sign = if mirrored { -t[3] } else { t[3] };
                        pack_tangent(tw, sign)
                    }
                    _ => 0,
                };
                vert_frame.push([n, t]);
            }
            let mut flags = material.triangle_alpha_flag();
            if normals.is_none() {
                flags |= TRI_FLAT;
            }
            if use_tangents {
                flags |= TRI_TANGENTS;
            }
            for tri in &prim.triangles {
                let tri = if mirrored {
                    [tri[0], tri[2], tri[1]]
                } else {
                    *tri
                };
                positions.push(tri.map(|i| world_pos[i as usize]));
                tri_info.push([tri[0] + base, tri[1] + base, tri[2] + base, prim.material]);
                tri_flags.push(flags);
            }
        }
    }

    if positions.len() > bvh::MAX_TRIANGLES {
        return Err((
            "meshes".into(),
            format!(
                "{} triangles exceed the BVH's limit of {}",
                positions.len(),
                bvh::MAX_TRIANGLES
            ),
        ));
    }
    let started = Instant::now();
    let built = bvh::build(&positions);
    let bvh_build_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(
        triangles = positions.len(),
        nodes = built.nodes.len(),
        ms = bvh_build_ms,
        "bvh built"
    );

    // Emitters: power = luminance(emission factor) × area (× 2 when double-sided),
    // listed and summed in f64 in the BVH's leaf order, which does not depend on the node
    // encoding.
    let mut position = vec![0u32; positions.len()];
    for (new_idx, &old) in built.order.iter().enumerate() {
        position[old as usize] = new_idx as u32;
    }
    let mut leaf_position = vec![0u32; positions.len()];
    for (i, &old) in built.leaf_order.iter().enumerate() {
        leaf_position[old as usize] = i as u32;
    }
    let mut emitter_power = Vec::new();
    let mut pdf_area = vec![0.0f32; positions.len()];
    for &old in &built.leaf_order {
        let new_idx = position[old as usize] as usize;
        let e = data.materials[tri_info[old as usize][3] as usize].emission;
        let sides = if e[3] > 0.0 { 2.0 } else { 1.0 };
        let lum = sides
            * (0.2126 * f64::from(e[0]) + 0.7152 * f64::from(e[1]) + 0.0722 * f64::from(e[2]));
        if lum <= 0.0 {
            continue;
        }
        let p = positions[old as usize].map(|v| v.map(f64::from));
        let area = 0.5 * math::length(math::cross(math::sub(p[1], p[0]), math::sub(p[2], p[0])));
        if area > 0.0 && area.is_finite() {
            emitter_power.push((new_idx, lum, area));
        }
    }
    let total_power: f64 = emitter_power.iter().map(|&(_, lum, area)| lum * area).sum();
    let mut emitters = Vec::with_capacity(emitter_power.len());
    let mut running = 0.0f64;
    for (k, &(new_idx, lum, area)) in emitter_power.iter().enumerate() {
        running += lum * area;
        let cdf = if k + 1 == emitter_power.len() {
            1.0
        } else {
            (running / total_power) as f32
        };
        emitters.push(GpuEmitter {
            triangle: new_idx as u32,
            cdf,
        });
        pdf_area[new_idx] = (lum / total_power) as f32;
    }

    let n = positions.len();
    let mut tri_v0 = Vec::with_capacity(n);
    let mut tri_e1 = Vec::with_capacity(n);
    let mut tri_e2 = Vec::with_capacity(n);
    let mut tri_idx = Vec::with_capacity(n);
    for (new_idx, &old) in built.order.iter().enumerate() {
        let [a, b, c] = positions[old as usize];
        tri_v0.push([a[0], a[1], a[2], f32::from_bits(tri_flags[old as usize])]);
        tri_e1.push([b[0] - a[0], b[1] - a[1], b[2] - a[2], pdf_area[new_idx]]);
        tri_e2.push([
            c[0] - a[0],
            c[1] - a[1],
            c[2] - a[2],
            f32::from_bits(leaf_position[old as usize]),
        ]);
        tri_idx.push(tri_info[old as usize]);
    }
    Ok(World {
        cameras,
        lights,
        nodes: built.nodes,
        tri_v0,
        tri_e1,
        tri_e2,
        tri_idx,
        vert_uv,
        vert_frame,
        emitters,
        bvh_build_ms,
    })
}

/// The refusal of the light on node `node_idx`, the `count`th, above `max_lights`.
pub(crate) fn too_many_lights(node_idx: usize, count: u64, max_lights: u64) -> FieldError {
    (
        format!("nodes[{node_idx}].extensions.KHR_lights_punctual"),
        format!("punctual lights {count} exceed the limit of {max_lights}"),
    )
}

/// The name camera `cam_idx` placed by node `node_idx` goes by: its own, else its node's,
/// else `cameras[i]`.
pub(crate) fn camera_name(root: &Root, cam_idx: usize, node_idx: usize) -> String {
    let cam = &root.cameras[cam_idx];
    let node = &root.nodes[node_idx];
    cam.name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| node.name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| format!("cameras[{cam_idx}]"))
}

/// The validated projection of camera `cam_idx` (called `name`); `None`, with a warning,
/// for a camera of an unknown type, which is skipped.
pub(crate) fn projection(
    root: &Root,
    cam_idx: usize,
    name: &str,
    warn: &mut dyn FnMut(String),
) -> Result<Option<Projection>, FieldError> {
    let cam = &root.cameras[cam_idx];
    Ok(Some(match cam.type_ {
        Checked::Valid(gltf::json::camera::Type::Perspective) => {
            let Some(p) = cam.perspective.as_ref() else {
                return Err((
                    format!("cameras[{cam_idx}].perspective"),
                    "missing for a perspective camera".into(),
                ));
            };
            let yfov = f64::from(p.yfov);
            if !(yfov > 0.0 && yfov < std::f64::consts::PI) {
                return Err((
                    format!("cameras[{cam_idx}].perspective.yfov"),
                    format!("{} is not in (0, pi)", p.yfov),
                ));
            }
            Projection::Perspective {
                tan_half_fov: (yfov / 2.0).tan(),
            }
        }
        Checked::Valid(gltf::json::camera::Type::Orthographic) => {
            let Some(o) = cam.orthographic.as_ref() else {
                return Err((
                    format!("cameras[{cam_idx}].orthographic"),
                    "missing for an orthographic camera".into(),
                ));
            };
            for (field, v) in [("xmag", o.xmag), ("ymag", o.ymag)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err((
                        format!("cameras[{cam_idx}].orthographic.{field}"),
                        format!("{v} is not a positive number"),
                    ));
                }
            }
            Projection::Orthographic {
                ymag: f64::from(o.ymag),
            }
        }
        Checked::Invalid => {
            warn(format!("camera {name:?}: unknown camera type; skipped"));
            return Ok(None);
        }
    }))
}

fn camera(
    root: &Root,
    cam_idx: usize,
    node_idx: usize,
    world: &Mat4,
    warn: &mut dyn FnMut(String),
) -> Result<Option<CameraDef>, FieldError> {
    let name = camera_name(root, cam_idx, node_idx);
    let Some(projection) = projection(root, cam_idx, &name, warn)? else {
        return Ok(None);
    };
    let basis = |v: [f64; 3]| math::normalize(math::vector(world, v));
    let (Some(right), Some(up), Some(forward)) = (
        basis([1.0, 0.0, 0.0]),
        basis([0.0, 1.0, 0.0]),
        basis([0.0, 0.0, -1.0]),
    ) else {
        return Err((
            format!("nodes[{node_idx}]"),
            "camera transform is degenerate".into(),
        ));
    };
    Ok(Some(CameraDef {
        name,
        origin: math::point(world, [0.0; 3]),
        right,
        up,
        forward,
        projection,
    }))
}

fn light(
    root: &Root,
    light_idx: usize,
    node_idx: usize,
    world: &Mat4,
) -> Result<GpuLight, FieldError> {
    let field = format!("extensions.KHR_lights_punctual.lights[{light_idx}]");
    let lights = root
        .extensions
        .as_ref()
        .and_then(|e| e.khr_lights_punctual.as_ref())
        .map_or(&[][..], |l| &l.lights[..]);
    let light = lights.get(light_idx).ok_or_else(|| {
        (
            format!("nodes[{node_idx}].extensions.KHR_lights_punctual.light"),
            format!("light {light_idx} does not exist"),
        )
    })?;
    if light.color.iter().any(|c| !c.is_finite() || *c < 0.0) {
        return Err((
            format!("{field}.color"),
            format!("{:?} is not a non-negative colour", light.color),
        ));
    }
    if !(light.intensity.is_finite() && light.intensity >= 0.0) {
        return Err((
            format!("{field}.intensity"),
            format!("{} is not a non-negative number", light.intensity),
        ));
    }
    let range = match light.range {
        None => 0.0,
        Some(r) if r.is_finite() && r > 0.0 => r,
        Some(r) => {
            return Err((
                format!("{field}.range"),
                format!("{r} is not a positive number"),
            ))
        }
    };
    // Photometric (cd or lux) to radiometric (W/sr or W/m²), as Blender imports them.
    let radiometric = f64::from(light.intensity) / WATTS_TO_LUMENS;
    let intensity = light.color.map(|c| (f64::from(c) * radiometric) as f32);
    let position = math::to_f32(math::point(world, [0.0; 3]));
    let direction = math::normalize(math::vector(world, [0.0, 0.0, -1.0])).ok_or_else(|| {
        (
            format!("nodes[{node_idx}]"),
            "light transform is degenerate".to_string(),
        )
    })?;
    let (kind, cone) = match light.type_ {
        Checked::Valid(khr_lights::Type::Point) => (LIGHT_POINT, [0.0; 4]),
        Checked::Valid(khr_lights::Type::Directional) => (LIGHT_DIRECTIONAL, [0.0; 4]),
        Checked::Valid(khr_lights::Type::Spot) => {
            let spot = light.spot.as_ref().ok_or_else(|| {
                (
                    format!("{field}.spot"),
                    "missing for a spot light".to_string(),
                )
            })?;
            let (inner, outer) = (
                f64::from(spot.inner_cone_angle),
                f64::from(spot.outer_cone_angle),
            );
            if !(inner >= 0.0 && inner < outer && outer <= std::f64::consts::FRAC_PI_2) {
                return Err((
                    format!("{field}.spot"),
                    format!(
                        "cone angles inner {inner} / outer {outer} must satisfy 0 <= inner < outer <= pi/2"
                    ),
                ));
            }
            let scale = 1.0 / (inner.cos() - outer.cos()).max(0.001);
            let offset = -outer.cos() * scale;
            (LIGHT_SPOT, [scale as f32, offset as f32, 0.0, 0.0])
        }
        Checked::Invalid => return Err((format!("{field}.type"), "unknown light type".into())),
    };
    Ok(GpuLight {
        position: [position[0], position[1], position[2], f32::from_bits(kind)],
        direction: [
            direction[0] as f32,
            direction[1] as f32,
            direction[2] as f32,
            range,
        ],
        intensity: [intensity[0], intensity[1], intensity[2], 0.0],
        cone,
    })
}
