//! Decoding mesh primitives (positions, normals, texture coordinates, tangents, indices)
//! once per primitive, and generating MikkTSpace tangents where a normal map needs them.

use std::collections::HashMap;

use gltf::json::accessor::{ComponentType, Type};
use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use gltf::json::Root;

use super::accessor;
use super::material::FieldError;

/// Decoded data of one mesh primitive (shared by all nodes that instance it). After
/// tangent generation a vertex may be split where MikkTSpace gives its corners different
/// tangents, so all per-vertex arrays have the same length.
pub(crate) struct PrimData {
    pub positions: Vec<[f64; 3]>,
    pub normals: Option<Vec<[f64; 3]>>,
    /// TEXCOORD_0 and TEXCOORD_1 (zeros when absent).
    pub uv: Vec<[f32; 4]>,
    /// xyz tangent, w = bitangent sign (+1 or −1); `None` = no usable tangent frame.
    pub tangents: Option<Vec<[f64; 4]>>,
    pub triangles: Vec<[u32; 3]>,
    pub material: u32,
}

pub(crate) fn semantic_name(semantic: &Checked<Semantic>) -> String {
    match semantic {
        Checked::Valid(Semantic::Positions) => "POSITION".into(),
        Checked::Valid(Semantic::Normals) => "NORMAL".into(),
        Checked::Valid(Semantic::Tangents) => "TANGENT".into(),
        Checked::Valid(Semantic::Colors(n)) => format!("COLOR_{n}"),
        Checked::Valid(Semantic::TexCoords(n)) => format!("TEXCOORD_{n}"),
        Checked::Valid(Semantic::Joints(n)) => format!("JOINTS_{n}"),
        Checked::Valid(Semantic::Weights(n)) => format!("WEIGHTS_{n}"),
        Checked::Valid(Semantic::Extras(name)) => format!("_{name}"),
        Checked::Invalid => "(invalid)".into(),
    }
}

fn label(kind: &str, idx: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{kind} {n:?}"),
        _ => format!("{kind}s[{idx}]"),
    }
}

/// Refuse a triangle primitive whose NORMAL, TEXCOORD_0/1 or TANGENT (the attributes
/// [`decode`] reads) has another count than POSITION, from the accessors' declared counts:
/// checked before anything is read, so the vertex budget on POSITION also bounds what the
/// other attributes allocate. Other primitives are skipped by [`decode`] and not checked.
pub(crate) fn check_counts(root: &Root, m: usize, p: usize) -> Result<(), FieldError> {
    let prim = &root.meshes[m].primitives[p];
    if !matches!(
        prim.mode,
        Checked::Valid(Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan)
    ) {
        return Ok(());
    }
    let attr = |s: Semantic| prim.attributes.get(&Checked::Valid(s)).map(|i| i.value());
    let Some(pos_idx) = attr(Semantic::Positions) else {
        return Ok(());
    };
    let count = |idx: usize| root.accessors.get(idx).map_or(0, |a| a.count.0);
    let n_vertices = count(pos_idx);
    let has_normals = attr(Semantic::Normals).is_some();
    for (semantic, name) in [
        (Semantic::Normals, "NORMAL"),
        (Semantic::TexCoords(0), "TEXCOORD_0"),
        (Semantic::TexCoords(1), "TEXCOORD_1"),
        (Semantic::Tangents, "TANGENT"),
    ] {
        if semantic == Semantic::Tangents && !has_normals {
            continue;
        }
        if let Some(idx) = attr(semantic) {
            let len = count(idx);
            if len != n_vertices {
                return Err((
                    format!("meshes[{m}].primitives[{p}].attributes.{name}"),
                    format!("has {len} elements but POSITION has {n_vertices}"),
                ));
            }
        }
    }
    Ok(())
}

/// Decode primitive `p` of mesh `m`. `normal_uv` is the texture coordinate set of the
/// material's normal texture (tangents are needed only then). `Ok(None)` = skipped (not
/// triangles), with a warning.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode(
    root: &Root,
    buffers: &[Vec<u8>],
    m: usize,
    p: usize,
    material: u32,
    normal_uv: Option<u32>,
    max_triangles: u64,
    warn: &mut dyn FnMut(String),
) -> Result<Option<PrimData>, FieldError> {
    let mesh = &root.meshes[m];
    let prim = &mesh.primitives[p];
    let where_ = format!("{} primitive {p}", label("mesh", m, mesh.name.as_deref()));
    let field = format!("meshes[{m}].primitives[{p}]");
    let mode = match prim.mode {
        Checked::Valid(mode) => mode,
        Checked::Invalid => return Err((format!("{field}.mode"), "unknown mode".into())),
    };
    if !matches!(
        mode,
        Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan
    ) {
        warn(format!(
            "{where_}: mode {mode:?} is not supported (only triangles); skipped"
        ));
        return Ok(None);
    }
    if prim.targets.as_ref().is_some_and(|t| !t.is_empty()) {
        warn(format!(
            "{where_}: morph targets are not supported yet; using the base shape"
        ));
    }
    for semantic in prim.attributes.keys() {
        match semantic {
            Checked::Valid(Semantic::Colors(_) | Semantic::Joints(_) | Semantic::Weights(_)) => {
                warn(format!(
                    "{where_}: attribute {} is not supported yet; ignored",
                    semantic_name(semantic)
                ))
            }
            Checked::Valid(Semantic::TexCoords(n)) if *n > 1 => warn(format!(
                "{where_}: attribute TEXCOORD_{n} is not used (only TEXCOORD_0 and TEXCOORD_1 are)"
            )),
            _ => {}
        }
    }
    let max = max_triangles.saturating_mul(3);
    let read = |idx: usize, name: &str, ty: Type, comps: &[ComponentType]| {
        accessor::read(root, buffers, idx, ty, comps, max)
            .map_err(|reason| (format!("{field}.attributes.{name}"), reason.to_string()))
    };
    let attr = |s: Semantic| prim.attributes.get(&Checked::Valid(s)).map(|i| i.value());
    let Some(pos_idx) = attr(Semantic::Positions) else {
        return Err((format!("{field}.attributes.POSITION"), "missing".into()));
    };
    let finite = |values: &[f64], name: &str| -> Result<(), FieldError> {
        if values.iter().any(|v| !v.is_finite()) {
            return Err((
                format!("{field}.attributes.{name}"),
                "has a non-finite value".into(),
            ));
        }
        Ok(())
    };
    let pos = read(pos_idx, "POSITION", Type::Vec3, &[ComponentType::F32])?;
    finite(&pos.values, "POSITION")?;
    let positions: Vec<[f64; 3]> = pos
        .values
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let n_vertices = positions.len();
    let same_len = |len: usize, name: &str| -> Result<(), FieldError> {
        if len != n_vertices {
            return Err((
                format!("{field}.attributes.{name}"),
                format!("has {len} elements but POSITION has {n_vertices}"),
            ));
        }
        Ok(())
    };
    let normals = match attr(Semantic::Normals) {
        Some(idx) => {
            let e = read(idx, "NORMAL", Type::Vec3, &[ComponentType::F32])?;
            finite(&e.values, "NORMAL")?;
            let n: Vec<[f64; 3]> = e
                .values
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect();
            same_len(n.len(), "NORMAL")?;
            Some(n)
        }
        None => None,
    };
    let mut uv = vec![[0.0f32; 4]; n_vertices];
    let mut has_uv = [false; 2];
    for set in 0..2u32 {
        let Some(idx) = attr(Semantic::TexCoords(set)) else {
            continue;
        };
        let name = format!("TEXCOORD_{set}");
        let e = read(
            idx,
            &name,
            Type::Vec2,
            &[ComponentType::F32, ComponentType::U8, ComponentType::U16],
        )?;
        finite(&e.values, &name)?;
        same_len(e.values.len() / 2, &name)?;
        let acc = &root.accessors[idx];
        let scale = match acc.component_type {
            Checked::Valid(ct) if ct.0 == ComponentType::U8 => 1.0 / 255.0,
            Checked::Valid(ct) if ct.0 == ComponentType::U16 => 1.0 / 65535.0,
            _ => 1.0,
        };
        if scale != 1.0 && !acc.normalized {
            return Err((
                format!("{field}.attributes.{name}"),
                "integer texture coordinates must be normalized".into(),
            ));
        }
        for (k, c) in e.values.chunks_exact(2).enumerate() {
            uv[k][2 * set as usize] = (c[0] * scale) as f32;
            uv[k][2 * set as usize + 1] = (c[1] * scale) as f32;
        }
        has_uv[set as usize] = true;
    }
    let given_tangents = match attr(Semantic::Tangents) {
        Some(idx) if normals.is_some() => {
            let e = read(idx, "TANGENT", Type::Vec4, &[ComponentType::F32])?;
            finite(&e.values, "TANGENT")?;
            let t: Vec<[f64; 4]> = e
                .values
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], if c[3] < 0.0 { -1.0 } else { 1.0 }])
                .collect();
            same_len(t.len(), "TANGENT")?;
            Some(t)
        }
        _ => None,
    };
    let indices: Vec<u32> = match prim.indices {
        Some(idx) => {
            let e = accessor::read(
                root,
                buffers,
                idx.value(),
                Type::Scalar,
                &[ComponentType::U8, ComponentType::U16, ComponentType::U32],
                max,
            )
            .map_err(|reason| (format!("{field}.indices"), reason.to_string()))?;
            let mut out = Vec::with_capacity(e.values.len());
            for (k, &v) in e.values.iter().enumerate() {
                if v >= n_vertices as f64 {
                    return Err((
                        format!("{field}.indices"),
                        format!("index {k} = {v} is out of range ({n_vertices} vertices)"),
                    ));
                }
                out.push(v as u32);
            }
            out
        }
        None => (0..n_vertices as u32).collect(),
    };
    let n = indices.len();
    let triangles: Vec<[u32; 3]> = match mode {
        Mode::Triangles => {
            if !n.is_multiple_of(3) {
                warn(format!(
                    "{where_}: {} trailing vertices do not form a triangle; ignored",
                    n % 3
                ));
            }
            indices
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect()
        }
        Mode::TriangleStrip => (0..n.saturating_sub(2))
            .map(|i| {
                if i % 2 == 0 {
                    [indices[i], indices[i + 1], indices[i + 2]]
                } else {
                    [indices[i + 1], indices[i], indices[i + 2]]
                }
            })
            .collect(),
        _ => (1..n.saturating_sub(1))
            .map(|i| [indices[i], indices[i + 1], indices[0]])
            .collect(),
    };
    let mut data = PrimData {
        positions,
        normals,
        uv,
        tangents: None,
        triangles,
        material,
    };
    if let Some(set) = normal_uv {
        if given_tangents.is_some() {
            data.tangents = given_tangents;
        } else if data.normals.is_none() {
            warn(format!(
                "{where_}: the normal map needs NORMAL (and TEXCOORD_{set}); it is ignored on this primitive"
            ));
        } else if !has_uv[set as usize] {
            warn(format!(
                "{where_}: the normal map reads TEXCOORD_{set}, which the primitive lacks; ignored on this primitive"
            ));
        } else if !generate_tangents(&mut data, set as usize) {
            warn(format!(
                "{where_}: MikkTSpace could not generate tangents; the normal map is ignored on this primitive"
            ));
        }
    }
    Ok(Some(data))
}

struct MikkInput<'a> {
    data: &'a PrimData,
    set: usize,
    /// Tangent per triangle corner.
    out: Vec<[f32; 4]>,
}

impl bevy_mikktspace::Geometry for MikkInput<'_> {
    fn num_faces(&self) -> usize {
        self.data.triangles.len()
    }
    fn num_vertices_of_face(&self, _face: usize) -> usize {
        3
    }
    fn position(&self, face: usize, vert: usize) -> [f32; 3] {
        let v = self.data.positions[self.data.triangles[face][vert] as usize];
        [v[0] as f32, v[1] as f32, v[2] as f32]
    }
    fn normal(&self, face: usize, vert: usize) -> [f32; 3] {
        let n = self.data.normals.as_ref().map_or([0.0, 0.0, 1.0], |ns| {
            ns[self.data.triangles[face][vert] as usize]
        });
        [n[0] as f32, n[1] as f32, n[2] as f32]
    }
    fn tex_coord(&self, face: usize, vert: usize) -> [f32; 2] {
        let uv = self.data.uv[self.data.triangles[face][vert] as usize];
        [uv[2 * self.set], uv[2 * self.set + 1]]
    }
    fn set_tangent_encoded(&mut self, tangent: [f32; 4], face: usize, vert: usize) {
        self.out[face * 3 + vert] = tangent;
    }
}

/// MikkTSpace tangents (glTF's reference choice when TANGENT is absent), computed per
/// triangle corner; vertices whose corners disagree are split, deterministically (first
/// corner keeps the vertex, later differing corners get new vertices in corner order).
fn generate_tangents(data: &mut PrimData, set: usize) -> bool {
    let corners = data.triangles.len() * 3;
    let mut input = MikkInput {
        data,
        set,
        out: vec![[0.0; 4]; corners],
    };
    if !bevy_mikktspace::generate_tangents(&mut input) {
        return false;
    }
    let out = input.out;
    let n = data.positions.len();
    let mut assigned: Vec<Option<[f32; 4]>> = vec![None; n];
    let mut splits: HashMap<(u32, [u32; 4]), u32> = HashMap::new();
    let mut tangents: Vec<[f64; 4]> = vec![[1.0, 0.0, 0.0, 1.0]; n];
    for (c, t) in out.iter().enumerate() {
        let tri = c / 3;
        let k = c % 3;
        let v = data.triangles[tri][k];
        let t = [t[0], t[1], t[2], if t[3] < 0.0 { -1.0 } else { 1.0 }];
        match assigned[v as usize] {
            None => {
                assigned[v as usize] = Some(t);
                tangents[v as usize] = t.map(f64::from);
            }
            Some(prev) if prev.map(f32::to_bits) == t.map(f32::to_bits) => {}
            Some(_) => {
                let key = (v, t.map(f32::to_bits));
                let new = *splits.entry(key).or_insert_with(|| {
                    let new = data.positions.len() as u32;
                    data.positions.push(data.positions[v as usize]);
                    if let Some(ns) = data.normals.as_mut() {
                        ns.push(ns[v as usize]);
                    }
                    data.uv.push(data.uv[v as usize]);
                    tangents.push(t.map(f64::from));
                    new
                });
                data.triangles[tri][k] = new;
            }
        }
    }
    data.tangents = Some(tangents);
    true
}
