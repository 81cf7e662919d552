//! Small f64 matrix helpers for scene loading.
//!
//! Transforms are composed in f64 with plain IEEE operations in a fixed order (no SIMD
//! reordering, no fused multiply-add), then rounded to f32 once, so the same scene gives
//! the same triangles on every CPU.

/// A column-major 4×4 matrix: `m[column][row]`.
pub(crate) type Mat4 = [[f64; 4]; 4];

pub(crate) const IDENTITY: Mat4 = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

pub(crate) fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for (col, out_col) in out.iter_mut().enumerate() {
        for (row, value) in out_col.iter_mut().enumerate() {
            *value = a[0][row] * b[col][0]
                + a[1][row] * b[col][1]
                + a[2][row] * b[col][2]
                + a[3][row] * b[col][3];
        }
    }
    out
}

/// The matrix of a glTF translation / rotation (x, y, z, w) / scale, i.e. T · R · S.
/// The quaternion is normalized; `None` when it has zero length.
#[cfg(test)]
pub(crate) fn from_trs(t: [f32; 3], r: [f32; 4], s: [f32; 3]) -> Option<Mat4> {
    from_trs64(t.map(f64::from), r.map(f64::from), s.map(f64::from))
}

/// [`from_trs`] in f64 (animated poses are sampled in f64).
pub(crate) fn from_trs64(t: [f64; 3], r: [f64; 4], s: [f64; 3]) -> Option<Mat4> {
    let [x, y, z, w] = r;
    let len = (x * x + y * y + z * z + w * w).sqrt();
    if len.is_nan() || len <= 0.0 {
        return None;
    }
    let (x, y, z, w) = (x / len, y / len, z / len, w / len);
    let rot = [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y + z * w),
            2.0 * (x * z - y * w),
        ],
        [
            2.0 * (x * y - z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z + x * w),
        ],
        [
            2.0 * (x * z + y * w),
            2.0 * (y * z - x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ];
    let mut m = IDENTITY;
    for col in 0..3 {
        for row in 0..3 {
            m[col][row] = rot[col][row] * s[col];
        }
    }
    m[3] = [t[0], t[1], t[2], 1.0];
    Some(m)
}

pub(crate) fn from_columns(m: &[f32; 16]) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for (i, v) in m.iter().enumerate() {
        out[i / 4][i % 4] = f64::from(*v);
    }
    out
}

pub(crate) fn is_finite(m: &Mat4) -> bool {
    m.iter().flatten().all(|v| v.is_finite())
}

pub(crate) fn point(m: &Mat4, p: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (row, value) in out.iter_mut().enumerate() {
        *value = m[0][row] * p[0] + m[1][row] * p[1] + m[2][row] * p[2] + m[3][row];
    }
    out
}

pub(crate) fn vector(m: &Mat4, v: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (row, value) in out.iter_mut().enumerate() {
        *value = m[0][row] * v[0] + m[1][row] * v[1] + m[2][row] * v[2];
    }
    out
}

/// The matrix that transforms normals: the inverse transpose of the upper 3×3, as the
/// cofactor matrix times the sign of the determinant (the scale is removed later by
/// normalizing). Column-major 3×3.
pub(crate) fn normal_matrix(m: &Mat4) -> [[f64; 3]; 3] {
    let a = |c: usize, r: usize| m[c][r];
    // Cofactor C[c][r] of the 3×3 block; the inverse transpose is C / det.
    let mut cof = [[0.0; 3]; 3];
    for (c, cof_col) in cof.iter_mut().enumerate() {
        for (r, value) in cof_col.iter_mut().enumerate() {
            let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
            let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
            *value = a(c1, r1) * a(c2, r2) - a(c1, r2) * a(c2, r1);
        }
    }
    let det = a(0, 0) * cof[0][0] + a(0, 1) * cof[0][1] + a(0, 2) * cof[0][2];
    let sign = if det < 0.0 { -1.0 } else { 1.0 };
    for value in cof.iter_mut().flatten() {
        *value *= sign;
    }
    cof
}

/// Determinant of the upper 3×3 block.
pub(crate) fn determinant3(m: &Mat4) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[2][1] * m[1][2])
        - m[1][0] * (m[0][1] * m[2][2] - m[2][1] * m[0][2])
        + m[2][0] * (m[0][1] * m[1][2] - m[1][1] * m[0][2])
}

pub(crate) fn mul3(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (row, value) in out.iter_mut().enumerate() {
        *value = m[0][row] * v[0] + m[1][row] * v[1] + m[2][row] * v[2];
    }
    out
}

pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn length(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// `v / |v|`, or `None` for a zero or non-finite vector.
pub(crate) fn normalize(v: [f64; 3]) -> Option<[f64; 3]> {
    let len = length(v);
    if len > 0.0 && len.is_finite() {
        Some([v[0] / len, v[1] / len, v[2] / len])
    } else {
        None
    }
}

pub(crate) fn to_f32(v: [f64; 3]) -> [f32; 3] {
    v.map(|x| x as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trs_rotates_like_gltf() {
        // 90° about +Y: +X goes to -Z.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let m = from_trs([1.0, 2.0, 3.0], [0.0, h, 0.0, h], [1.0, 1.0, 1.0]).unwrap();
        let p = point(&m, [1.0, 0.0, 0.0]);
        assert!(
            (p[0] - 1.0).abs() < 1e-6 && (p[1] - 2.0).abs() < 1e-6 && (p[2] - 2.0).abs() < 1e-6
        );
    }

    #[test]
    fn normal_matrix_keeps_normals_perpendicular() {
        let m = from_trs([0.0; 3], [0.0, 0.0, 0.0, 1.0], [2.0, 1.0, 1.0]).unwrap();
        // Plane x + y = 0 has normal (1, 1, 0); after scaling x by 2 it is (0.5, 1, 0).
        let n = normalize(mul3(&normal_matrix(&m), [1.0, 1.0, 0.0])).unwrap();
        let expected = normalize([0.5, 1.0, 0.0]).unwrap();
        assert!((0..3).all(|i| (n[i] - expected[i]).abs() < 1e-12));
    }
}
