//! Textured shapes (UVs and tangents), rotations and a portable `sin`/`cos` for the
//! sample scenes.
//!
//! Like `geometry.rs`, everything here uses only `+ − × ÷`, `sqrt` and `floor`: `sin`
//! and `cos` are Taylor series after an exact-enough range reduction, so the bytes do
//! not depend on the platform's libm.

use super::geometry::{cross, dot, geodesic_sphere, normalize, scale, sub, to_f32, Vec3};
use crate::builder::MeshData;

/// `(sin x, cos x)` from Taylor series on `[−π/4, π/4]` after reduction by multiples
/// of π/2: accurate to about 1e-16 for |x| < 100, and identical on every platform.
pub(crate) fn sin_cos(x: f64) -> (f64, f64) {
    let half_pi = std::f64::consts::FRAC_PI_2;
    let k = (x / half_pi + 0.5).floor();
    let r = x - k * half_pi;
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut term_s, mut term_c) = (r, 1.0);
    for n in 0..12 {
        s += term_s;
        c += term_c;
        let n = f64::from(n);
        term_s *= -r2 / ((2.0 * n + 2.0) * (2.0 * n + 3.0));
        term_c *= -r2 / ((2.0 * n + 1.0) * (2.0 * n + 2.0));
    }
    match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// `(sin, cos)` of an angle in degrees.
pub(crate) fn sin_cos_deg(degrees: f64) -> (f64, f64) {
    sin_cos(degrees * (std::f64::consts::PI / 180.0))
}

/// Unit quaternion `[x, y, z, w]` for a rotation of `degrees` about `axis`.
pub(crate) fn axis_angle(axis: Vec3, degrees: f64) -> [f64; 4] {
    let a = normalize(axis);
    let (s, c) = sin_cos_deg(degrees / 2.0);
    [a[0] * s, a[1] * s, a[2] * s, c]
}

/// A quaternion as f32, renormalised in f32 so that it passes the unit-length check.
pub(crate) fn quat_f32(q: [f64; 4]) -> [f32; 4] {
    let len = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    q.map(|c| (c / len) as f32)
}

/// Rotation that turns a glTF camera or spot light (looking down local −Z, +Y up) at
/// `eye` towards `target`, keeping `up` as close to its +Y as possible.
pub(crate) fn look_rotation(eye: Vec3, target: Vec3, up: Vec3) -> [f32; 4] {
    let back = normalize(sub(eye, target));
    let right = normalize(cross(up, back));
    let true_up = cross(back, right);
    // Columns of the rotation matrix: right, true_up, back.
    let m = [right, true_up, back];
    let at = |row: usize, col: usize| m[col][row];
    let trace = at(0, 0) + at(1, 1) + at(2, 2);
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            (at(2, 1) - at(1, 2)) / s,
            (at(0, 2) - at(2, 0)) / s,
            (at(1, 0) - at(0, 1)) / s,
            0.25 * s,
        ]
    } else if at(0, 0) > at(1, 1) && at(0, 0) > at(2, 2) {
        let s = (1.0 + at(0, 0) - at(1, 1) - at(2, 2)).sqrt() * 2.0;
        [
            0.25 * s,
            (at(0, 1) + at(1, 0)) / s,
            (at(0, 2) + at(2, 0)) / s,
            (at(2, 1) - at(1, 2)) / s,
        ]
    } else if at(1, 1) > at(2, 2) {
        let s = (1.0 + at(1, 1) - at(0, 0) - at(2, 2)).sqrt() * 2.0;
        [
            (at(0, 1) + at(1, 0)) / s,
            0.25 * s,
            (at(1, 2) + at(2, 1)) / s,
            (at(0, 2) - at(2, 0)) / s,
        ]
    } else {
        let s = (1.0 + at(2, 2) - at(0, 0) - at(1, 1)).sqrt() * 2.0;
        [
            (at(0, 2) + at(2, 0)) / s,
            (at(1, 2) + at(2, 1)) / s,
            0.25 * s,
            (at(1, 0) - at(0, 1)) / s,
        ]
    };
    quat_f32(q)
}

/// Appends `other` to `mesh` (indices shifted). Attributes present in only one of the
/// two are not allowed (a caller's bug).
pub(crate) fn append(mesh: &mut MeshData, other: &MeshData) {
    fn join<T: Clone>(a: &mut Option<Vec<T>>, b: &Option<Vec<T>>, first: bool) {
        match (a.as_mut(), b) {
            (Some(a), Some(b)) => a.extend_from_slice(b),
            (None, Some(b)) if first => *a = Some(b.clone()),
            (None, None) => {}
            _ => panic!("appending meshes with different attributes"),
        }
    }
    let first = mesh.positions.is_empty();
    let base = mesh.positions.len() as u32;
    mesh.positions.extend_from_slice(&other.positions);
    join(&mut mesh.normals, &other.normals, first);
    join(&mut mesh.tangents, &other.tangents, first);
    join(&mut mesh.tex_coords_0, &other.tex_coords_0, first);
    join(&mut mesh.tex_coords_1, &other.tex_coords_1, first);
    mesh.indices.extend(other.indices.iter().map(|i| i + base));
}

/// A flat quad centred on `center`, spanning `±u_half` and `±v_half`, facing
/// `u_half × v_half`. Texture coordinates run from `uv_min` at the (−u, +v) corner to
/// `uv_max` at the (+u, −v) corner (glTF's v grows downwards in the image, so the image
/// appears upright with +v_half up); tangents point along +u (w = 1).
pub(crate) fn quad(
    center: Vec3,
    u_half: Vec3,
    v_half: Vec3,
    uv_min: [f32; 2],
    uv_max: [f32; 2],
) -> MeshData {
    let normal = to_f32(normalize(cross(u_half, v_half)));
    let t = to_f32(normalize(u_half));
    let corner = |su: f64, sv: f64| {
        to_f32([
            center[0] + su * u_half[0] + sv * v_half[0],
            center[1] + su * u_half[1] + sv * v_half[1],
            center[2] + su * u_half[2] + sv * v_half[2],
        ])
    };
    MeshData {
        positions: vec![
            corner(-1.0, -1.0),
            corner(1.0, -1.0),
            corner(1.0, 1.0),
            corner(-1.0, 1.0),
        ],
        normals: Some(vec![normal; 4]),
        tangents: Some(vec![[t[0], t[1], t[2], 1.0]; 4]),
        tex_coords_0: Some(vec![
            [uv_min[0], uv_max[1]],
            [uv_max[0], uv_max[1]],
            [uv_max[0], uv_min[1]],
            [uv_min[0], uv_min[1]],
        ]),
        tex_coords_1: None,
        indices: vec![0, 1, 2, 0, 2, 3],
    }
}

/// A horizontal floor of `2·half_x × 2·half_z` at height `y`, facing up, UVs `0..uv_scale`.
pub(crate) fn floor(half_x: f64, half_z: f64, y: f64, uv_scale: f32) -> MeshData {
    quad(
        [0.0, y, 0.0],
        [half_x, 0.0, 0.0],
        [0.0, 0.0, -half_z],
        [0.0, 0.0],
        [uv_scale, uv_scale],
    )
}

/// An axis-aligned box centred on the origin with the given half extents: 6 faces of
/// 4 vertices, each face textured 0..1 upright (side faces) with tangents.
pub(crate) fn cuboid(half: Vec3) -> MeshData {
    let [hx, hy, hz] = half;
    let faces: [(Vec3, Vec3, Vec3); 6] = [
        ([0.0, 0.0, hz], [hx, 0.0, 0.0], [0.0, hy, 0.0]), // +Z
        ([0.0, 0.0, -hz], [-hx, 0.0, 0.0], [0.0, hy, 0.0]), // −Z
        ([hx, 0.0, 0.0], [0.0, 0.0, -hz], [0.0, hy, 0.0]), // +X
        ([-hx, 0.0, 0.0], [0.0, 0.0, hz], [0.0, hy, 0.0]), // −X
        ([0.0, hy, 0.0], [hx, 0.0, 0.0], [0.0, 0.0, -hz]), // +Y
        ([0.0, -hy, 0.0], [hx, 0.0, 0.0], [0.0, 0.0, hz]), // −Y
    ];
    let mut mesh = MeshData::default();
    for (center, u, v) in faces {
        append(&mut mesh, &quad(center, u, v, [0.0, 0.0], [1.0, 1.0]));
    }
    mesh
}

/// A UV sphere of `radius` around the origin: `segments` around +Y, `rings` from the
/// north pole (v = 0) to the south pole (v = 1), the u seam at −Z (so the front, +Z,
/// shows u = 0.5). Smooth normals, tangents along increasing u (w = 1), TEXCOORD_0.
/// `2·segments·(rings − 1)` triangles (no degenerate ones at the poles).
pub(crate) fn uv_sphere(radius: f64, segments: u32, rings: u32) -> MeshData {
    let mut mesh = MeshData {
        normals: Some(Vec::new()),
        tangents: Some(Vec::new()),
        tex_coords_0: Some(Vec::new()),
        ..MeshData::default()
    };
    let cols = segments + 1;
    for i in 0..=rings {
        let theta = std::f64::consts::PI * f64::from(i) / f64::from(rings);
        let (st, ct) = sin_cos(theta);
        for j in 0..=segments {
            let phi = 2.0 * std::f64::consts::PI * f64::from(j) / f64::from(segments);
            let (sp, cp) = sin_cos(phi);
            let n = [-st * sp, ct, -st * cp];
            mesh.positions.push(to_f32(scale(n, radius)));
            // At the poles the position is the same for every j; the normal is the pole.
            mesh.normals.as_mut().unwrap().push(to_f32(n));
            mesh.tangents
                .as_mut()
                .unwrap()
                .push([-cp as f32, 0.0, sp as f32, 1.0]);
            mesh.tex_coords_0.as_mut().unwrap().push([
                (f64::from(j) / f64::from(segments)) as f32,
                (f64::from(i) / f64::from(rings)) as f32,
            ]);
        }
    }
    for i in 0..rings {
        for j in 0..segments {
            let a = i * cols + j;
            let b = a + cols;
            // Counter-clockwise seen from outside: a (top-left), b (bottom-left),
            // b+1 (bottom-right), a+1 (top-right) in (u right, v down).
            if i != 0 {
                mesh.indices.extend([a, b + 1, a + 1]);
            }
            if i + 1 != rings {
                mesh.indices.extend([a, b, b + 1]);
            }
        }
    }
    orient_outwards(&mut mesh);
    mesh
}

/// Flips every triangle whose geometric normal points towards the centre (the UV
/// sphere's winding is derived once here rather than by hand).
fn orient_outwards(mesh: &mut MeshData) {
    let p = |i: u32| mesh.positions[i as usize].map(f64::from);
    let mut flips = Vec::new();
    for (t, tri) in mesh.indices.chunks_exact(3).enumerate() {
        let (a, b, c) = (p(tri[0]), p(tri[1]), p(tri[2]));
        let n = cross(sub(b, a), sub(c, a));
        let centroid = [a[0] + b[0] + c[0], a[1] + b[1] + c[1], a[2] + b[2] + c[2]];
        if dot(n, centroid) < 0.0 {
            flips.push(t);
        }
    }
    for t in flips {
        mesh.indices.swap(3 * t + 1, 3 * t + 2);
    }
}

/// A geodesic sphere of `radius` (`20·frequency²` triangles) with smooth normals and
/// no texture coordinates.
pub(crate) fn ico_sphere(radius: f64, frequency: u32) -> MeshData {
    let (unit, indices) = geodesic_sphere(frequency);
    MeshData {
        positions: unit.iter().map(|&p| to_f32(scale(p, radius))).collect(),
        normals: Some(unit.iter().map(|&p| to_f32(p)).collect()),
        indices,
        ..MeshData::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_std_closely() {
        for i in -400..400 {
            let x = f64::from(i) * 0.0371;
            let (s, c) = sin_cos(x);
            assert!((s - x.sin()).abs() < 1e-14, "sin {x}");
            assert!((c - x.cos()).abs() < 1e-14, "cos {x}");
        }
        assert_eq!(sin_cos_deg(90.0).0, 1.0);
    }

    #[test]
    fn look_rotation_points_minus_z_at_the_target() {
        let q = look_rotation([1.0, 2.0, 3.0], [0.0, 0.5, -1.0], [0.0, 1.0, 0.0]).map(f64::from);
        // Rotate −Z by q: v' = v + 2w(q×v) + 2 q×(q×v).
        let (u, w) = ([q[0], q[1], q[2]], q[3]);
        let v = [0.0, 0.0, -1.0];
        let t = scale(cross(u, v), 2.0);
        let r = [
            v[0] + w * t[0] + cross(u, t)[0],
            v[1] + w * t[1] + cross(u, t)[1],
            v[2] + w * t[2] + cross(u, t)[2],
        ];
        let want = normalize(sub([0.0, 0.5, -1.0], [1.0, 2.0, 3.0]));
        assert!(dot(r, want) > 1.0 - 1e-6, "{r:?} vs {want:?}");
    }

    #[test]
    fn uv_sphere_faces_outwards_with_consistent_tangents() {
        let mesh = uv_sphere(1.0, 16, 8);
        assert_eq!(mesh.indices.len() / 3, 2 * 16 * 7);
        let p = |i: u32| mesh.positions[i as usize].map(f64::from);
        for tri in mesh.indices.chunks_exact(3) {
            let n = cross(sub(p(tri[1]), p(tri[0])), sub(p(tri[2]), p(tri[0])));
            assert!(dot(n, p(tri[0])) > 0.0);
        }
        let tangents = mesh.tangents.as_ref().unwrap();
        let normals = mesh.normals.as_ref().unwrap();
        for (t, n) in tangents.iter().zip(normals) {
            let t3 = [t[0], t[1], t[2]].map(f64::from);
            assert!(dot(t3, n.map(f64::from)).abs() < 1e-6);
        }
    }
}
