//! glTF keyframe animations: parsing and validating untrusted samplers, and sampling the
//! animated translation / rotation / scale of nodes at a time, in f64, deterministically.
//!
//! Semantics (glTF 2.0, "Animations" and Appendix C "Interpolation"):
//! - Every animation of the document plays at once, all starting at t = 0 s; a time is a
//!   glTF time in seconds, not an offset from the first keyframe.
//! - Before its first keyframe a channel holds its first value, after its last keyframe
//!   its last value (glTF clamps; nothing loops).
//! - When two channels animate the same node and property, the later one (by animation
//!   index, then channel index) wins, with a warning naming both.
//! - Morph target `weights` channels are not supported (one warning per animation), and a
//!   channel that targets a node with a `matrix` is ignored with a warning: glTF forbids
//!   animating such a node.
//! - Only samplers that a supported channel uses are read and validated.
//!
//! Sampling uses no platform maths library: `sin` and `acos` are evaluated here with
//! plain IEEE additions, multiplications, divisions and square roots in a fixed order, so
//! every CPU computes the same bits for the same scene and time.

use std::collections::BTreeMap;

use gltf::json::accessor::{ComponentType, Type};
use gltf::json::animation::{Interpolation, Property, Sampler};
use gltf::json::validation::Checked;
use gltf::json::Root;

use super::accessor::{self, AccessorError};

/// Accessor elements that all samplers together may read: each input time and each output
/// element counts one (a cubic-spline keyframe has three output elements). It bounds the
/// memory an untrusted file can make the loader allocate (at most ~0.5 GB of f64).
pub(crate) const MAX_KEYFRAMES: u64 = 10_000_000;

/// Component types allowed for rotation outputs (glTF 2.0, "animation.sampler.output"):
/// float, or one of these integer types with `normalized: true`.
const ROTATION_COMPONENTS: [ComponentType; 5] = [
    ComponentType::F32,
    ComponentType::I8,
    ComponentType::U8,
    ComponentType::I16,
    ComponentType::U16,
];

/// Below this `1 - |cos θ|` two keyframe quaternions are treated as parallel and
/// interpolated by normalized lerp (its error, about θ³, is then below 1e-17).
const NLERP_BELOW: f64 = 1e-12;

/// The animated TRS components of one node at one time. Components that no channel
/// animates are `None`: the loader keeps the node's own value for them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NodePose {
    /// Index into `root.nodes`.
    pub node: usize,
    pub translation: Option<[f64; 3]>,
    /// A unit quaternion, x y z w.
    pub rotation: Option<[f64; 4]>,
    pub scale: Option<[f64; 3]>,
}

/// Every supported channel of every animation of a document, validated.
#[derive(Clone, Debug, Default)]
pub(crate) struct Animations {
    /// Keyframe data, one per (animation, sampler) that a supported channel uses.
    tracks: Vec<Track>,
    /// The winning channel of each animated (node, property), sorted by node then property.
    bindings: Vec<Binding>,
    /// First and last keyframe time over all tracks.
    range: Option<(f64, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TrsPath {
    Translation,
    Rotation,
    Scale,
}

impl TrsPath {
    fn name(self) -> &'static str {
        match self {
            TrsPath::Translation => "translation",
            TrsPath::Rotation => "rotation",
            TrsPath::Scale => "scale",
        }
    }

    fn width(self) -> usize {
        match self {
            TrsPath::Rotation => 4,
            TrsPath::Translation | TrsPath::Scale => 3,
        }
    }
}

#[derive(Clone, Debug)]
struct Binding {
    node: usize,
    path: TrsPath,
    track: usize,
}

/// One validated sampler: strictly increasing finite times and finite values.
#[derive(Clone, Debug)]
struct Track {
    interpolation: Interpolation,
    rotation: bool,
    /// Components per element: 3 or 4.
    width: usize,
    times: Vec<f64>,
    /// `times.len()` elements (LINEAR, STEP; rotations normalized) or `3 × times.len()`
    /// (CUBICSPLINE: in-tangent, value, out-tangent per keyframe), `width` each.
    values: Vec<f64>,
}

/// Where a time falls among a track's keyframes.
enum Position {
    /// Exactly on keyframe `k`, or clamped to the first or last keyframe.
    Key(usize),
    /// Between keyframes `k` and `k + 1`, at fraction `s` in [0, 1).
    Segment(usize, f64),
}

fn anim_label(idx: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("animations[{idx}] {n:?}"),
        _ => format!("animations[{idx}]"),
    }
}

impl Animations {
    /// Parse and validate every animation of the document. Errors are (glTF field path,
    /// reason), e.g. `("animations[0].samplers[1].output", "...")`.
    pub(crate) fn parse(
        root: &Root,
        buffers: &[Vec<u8>],
        warn: &mut dyn FnMut(String),
    ) -> Result<Animations, (String, String)> {
        let mut tracks: Vec<Track> = Vec::new();
        let mut track_of: BTreeMap<(usize, usize, TrsPath), usize> = BTreeMap::new();
        // (node, path) → (track, animation index, channel index) of the current winner.
        let mut winners: BTreeMap<(usize, TrsPath), (usize, usize, usize)> = BTreeMap::new();
        let mut budget = MAX_KEYFRAMES;
        for (a, anim) in root.animations.iter().enumerate() {
            let label = anim_label(a, anim.name.as_deref());
            let mut warned_weights = false;
            for c in 0..anim.channels.len() {
                let Some(ChannelTarget {
                    sampler: s,
                    node,
                    path,
                }) = channel_target(root, a, c, &label, &mut warned_weights, warn)?
                else {
                    continue;
                };
                let sampler = &anim.samplers[s];
                let track = match track_of.get(&(a, s, path)) {
                    Some(&t) => t,
                    None => {
                        tracks.push(read_track(root, buffers, a, s, sampler, path, &mut budget)?);
                        track_of.insert((a, s, path), tracks.len() - 1);
                        tracks.len() - 1
                    }
                };
                if let Some((_, pa, pc)) = winners.insert((node, path), (track, a, c)) {
                    let previous = anim_label(pa, root.animations[pa].name.as_deref());
                    warn(format!(
                        "{previous} channels[{pc}] and {label} channels[{c}] both animate the {} \
                         of nodes[{node}]; using {label} channels[{c}]",
                        path.name()
                    ));
                }
            }
        }
        let range = tracks.iter().fold(None, |range: Option<(f64, f64)>, t| {
            let (first, last) = (t.times[0], t.times[t.times.len() - 1]);
            Some(range.map_or((first, last), |(lo, hi)| (lo.min(first), hi.max(last))))
        });
        let bindings = winners
            .into_iter()
            .map(|((node, path), (track, _, _))| Binding { node, path, track })
            .collect();
        Ok(Animations {
            tracks,
            bindings,
            range,
        })
    }

    /// True when no node is animated.
    pub(crate) fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Time span [start, end] in seconds covered by all supported channels, overridden
    /// ones included (None if there are none). Times before `start` or after `end` give
    /// the first or last keyframes.
    pub(crate) fn time_range(&self) -> Option<(f64, f64)> {
        self.range
    }

    /// The animated TRS components of every animated node at `time_s`, sorted by node
    /// index. A NaN time gives the first keyframes. Pure and deterministic.
    pub(crate) fn sample(&self, time_s: f64) -> Vec<NodePose> {
        let mut poses: Vec<NodePose> = Vec::new();
        for binding in &self.bindings {
            if poses.last().is_none_or(|p| p.node != binding.node) {
                poses.push(NodePose {
                    node: binding.node,
                    translation: None,
                    rotation: None,
                    scale: None,
                });
            }
            let pose = poses.last_mut().expect("a pose was just pushed");
            let v = self.tracks[binding.track].sample(time_s);
            match binding.path {
                TrsPath::Translation => pose.translation = Some([v[0], v[1], v[2]]),
                TrsPath::Rotation => pose.rotation = Some(v),
                TrsPath::Scale => pose.scale = Some([v[0], v[1], v[2]]),
            }
        }
        poses
    }
}

/// Whether any node is animated: [`Animations::parse`] of the same document, when it
/// succeeds, gives non-empty animations exactly when this is true. Channels are checked
/// and warned about as `parse` does; keyframe data is not read.
pub(crate) fn animates_nodes(
    root: &Root,
    warn: &mut dyn FnMut(String),
) -> Result<bool, (String, String)> {
    let mut animated = false;
    for (a, anim) in root.animations.iter().enumerate() {
        let label = anim_label(a, anim.name.as_deref());
        let mut warned_weights = false;
        for c in 0..anim.channels.len() {
            animated |= channel_target(root, a, c, &label, &mut warned_weights, warn)?.is_some();
        }
    }
    Ok(animated)
}

/// What a rendered channel animates, and with which sampler of its animation.
struct ChannelTarget {
    sampler: usize,
    node: usize,
    path: TrsPath,
}

/// Channel `c` of animation `a`, or `None` (with a warning) for
/// a channel that is not rendered: morph target weights (warned once per animation,
/// through `warned_weights`) and channels on nodes with a matrix.
fn channel_target(
    root: &Root,
    a: usize,
    c: usize,
    label: &str,
    warned_weights: &mut bool,
    warn: &mut dyn FnMut(String),
) -> Result<Option<ChannelTarget>, (String, String)> {
    let anim = &root.animations[a];
    let channel = &anim.channels[c];
    let field = |rest: &str| format!("animations[{a}].channels[{c}].{rest}");
    let s = channel.sampler.value();
    if s >= anim.samplers.len() {
        return Err((
            field("sampler"),
            format!(
                "sampler {s} does not exist ({} samplers)",
                anim.samplers.len()
            ),
        ));
    }
    let node = channel.target.node.value();
    if node >= root.nodes.len() {
        return Err((
            field("target.node"),
            format!("node {node} does not exist ({} nodes)", root.nodes.len()),
        ));
    }
    let path = match channel.target.path {
        Checked::Valid(Property::Translation) => TrsPath::Translation,
        Checked::Valid(Property::Rotation) => TrsPath::Rotation,
        Checked::Valid(Property::Scale) => TrsPath::Scale,
        Checked::Valid(Property::MorphTargetWeights) => {
            if !std::mem::replace(warned_weights, true) {
                warn(format!(
                    "{label}: morph target weights are not supported; ignored"
                ));
            }
            return Ok(None);
        }
        Checked::Invalid => {
            return Err((field("target.path"), "unknown target path".into()));
        }
    };
    if root.nodes[node].matrix.is_some() {
        warn(format!(
            "{label}: channels[{c}] animates the {} of nodes[{node}], which has a \
             matrix (glTF forbids animating it); ignored",
            path.name()
        ));
        return Ok(None);
    }
    Ok(Some(ChannelTarget {
        sampler: s,
        node,
        path,
    }))
}

/// Read and validate sampler `s` of animation `a` as the keyframes of `path`.
fn read_track(
    root: &Root,
    buffers: &[Vec<u8>],
    a: usize,
    s: usize,
    sampler: &Sampler,
    path: TrsPath,
    budget: &mut u64,
) -> Result<Track, (String, String)> {
    let field = |rest: &str| format!("animations[{a}].samplers[{s}].{rest}");
    let Checked::Valid(interpolation) = sampler.interpolation else {
        return Err((
            field("interpolation"),
            "unknown interpolation (expected LINEAR, STEP or CUBICSPLINE)".into(),
        ));
    };

    let input_idx = sampler.input.value();
    let input = read_bounded(
        root,
        buffers,
        input_idx,
        Type::Scalar,
        &[ComponentType::F32],
        budget,
    )
    .map_err(|reason| (field("input"), reason.to_string()))?;
    let times = input.values;
    if times.is_empty() {
        return Err((
            field("input"),
            format!("accessors[{input_idx}] has no keyframes"),
        ));
    }
    for (i, &t) in times.iter().enumerate() {
        if !t.is_finite() {
            return Err((
                field("input"),
                format!("accessors[{input_idx}] time {i} is not finite ({t})"),
            ));
        }
        if i > 0 && t <= times[i - 1] {
            return Err((
                field("input"),
                format!(
                    "accessors[{input_idx}] times must increase strictly: time {i} ({t}) follows \
                     time {} ({})",
                    i - 1,
                    times[i - 1]
                ),
            ));
        }
    }

    let output_idx = sampler.output.value();
    let rotation = path == TrsPath::Rotation;
    let (ty, components): (Type, &[ComponentType]) = if rotation {
        (Type::Vec4, &ROTATION_COMPONENTS)
    } else {
        (Type::Vec3, &[ComponentType::F32])
    };
    let output = read_bounded(root, buffers, output_idx, ty, components, budget)
        .map_err(|reason| (field("output"), reason.to_string()))?;
    let width = path.width();
    let per_key = if interpolation == Interpolation::CubicSpline {
        3
    } else {
        1
    };
    let n_out = output.values.len() / width;
    if n_out != per_key * times.len() {
        let what = if per_key == 3 {
            "three times the number of"
        } else {
            "the number of"
        };
        return Err((
            field("output"),
            format!(
                "accessors[{output_idx}] has {n_out} elements; {} needs {what} input times \
                 ({})",
                interpolation_name(interpolation),
                times.len()
            ),
        ));
    }
    let mut values = output.values;
    let acc = &root.accessors[output_idx];
    if let Checked::Valid(ct) = acc.component_type {
        if ct.0 != ComponentType::F32 {
            if !acc.normalized {
                return Err((
                    field("output"),
                    format!(
                        "accessors[{output_idx}] holds {:?} rotations that are not normalized",
                        ct.0
                    ),
                ));
            }
            for v in &mut values {
                *v = dequantize(*v, ct.0);
            }
        }
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err((
            field("output"),
            format!(
                "accessors[{output_idx}] element {} is not finite ({})",
                i / width,
                values[i]
            ),
        ));
    }
    if rotation {
        // Keyframe values must be usable rotations; cubic-spline tangents need not be.
        for (e, q) in values.chunks_exact_mut(4).enumerate() {
            if per_key == 3 && e % 3 != 1 {
                continue;
            }
            let Some(unit) = normalize4([q[0], q[1], q[2], q[3]]) else {
                return Err((
                    field("output"),
                    format!("accessors[{output_idx}] element {e} is a zero-length quaternion"),
                ));
            };
            // A cubic spline interpolates the keyframes as given; LINEAR and STEP use unit
            // quaternions so that slerp is a rotation.
            if per_key == 1 {
                q.copy_from_slice(&unit);
            }
        }
    }
    Ok(Track {
        interpolation,
        rotation,
        width,
        times,
        values,
    })
}

fn interpolation_name(interpolation: Interpolation) -> &'static str {
    match interpolation {
        Interpolation::Linear => "LINEAR",
        Interpolation::Step => "STEP",
        Interpolation::CubicSpline => "CUBICSPLINE",
    }
}

/// `accessor::read` with the shared keyframe budget applied before anything is allocated.
fn read_bounded(
    root: &Root,
    buffers: &[Vec<u8>],
    idx: usize,
    ty: Type,
    components: &[ComponentType],
    budget: &mut u64,
) -> Result<accessor::Elements, AccessorError> {
    let count = root
        .accessors
        .get(idx)
        .ok_or(AccessorError::Missing { accessor: idx })?
        .count
        .0;
    if count > *budget {
        return Err(AccessorError::KeyframeBudget {
            accessor: idx,
            count,
            limit: MAX_KEYFRAMES,
        });
    }
    let elements = accessor::read(root, buffers, idx, ty, components, *budget)?;
    *budget -= count;
    Ok(elements)
}

/// A normalized integer component as a float (glTF 2.0, "Animations": the table of
/// normalized integer encodings).
fn dequantize(c: f64, ty: ComponentType) -> f64 {
    match ty {
        ComponentType::I8 => (c / 127.0).max(-1.0),
        ComponentType::U8 => c / 255.0,
        ComponentType::I16 => (c / 32767.0).max(-1.0),
        ComponentType::U16 => c / 65535.0,
        ComponentType::U32 | ComponentType::F32 => c,
    }
}

impl Track {
    fn locate(&self, t: f64) -> Position {
        let times = &self.times;
        let last = times.len() - 1;
        // NaN goes to the first keyframe too.
        if t.is_nan() || t <= times[0] {
            return Position::Key(0);
        }
        if t >= times[last] {
            return Position::Key(last);
        }
        // times[0] < t < times[last], so 1 ≤ k + 1 ≤ last.
        let k = times.partition_point(|&x| x <= t) - 1;
        let s = (t - times[k]) / (times[k + 1] - times[k]);
        Position::Segment(k, s)
    }

    /// Element `e` of the output, padded to four components.
    fn element(&self, e: usize) -> [f64; 4] {
        let mut out = [0.0; 4];
        out[..self.width].copy_from_slice(&self.values[e * self.width..(e + 1) * self.width]);
        out
    }

    /// The value of keyframe `k` (the middle element of a cubic-spline triple).
    fn key_value(&self, k: usize) -> [f64; 4] {
        if self.interpolation == Interpolation::CubicSpline {
            self.element(3 * k + 1)
        } else {
            self.element(k)
        }
    }

    /// The value at time `t`: translation/scale in the first three components, or a unit
    /// quaternion.
    fn sample(&self, t: f64) -> [f64; 4] {
        let (k, s) = match self.locate(t) {
            Position::Key(k) => return self.finish(self.key_value(k), k),
            Position::Segment(k, s) => (k, s),
        };
        match self.interpolation {
            Interpolation::Step => self.key_value(k),
            Interpolation::Linear if self.rotation => {
                slerp(self.key_value(k), self.key_value(k + 1), s)
            }
            Interpolation::Linear => lerp4(self.key_value(k), self.key_value(k + 1), s),
            Interpolation::CubicSpline => {
                let dt = self.times[k + 1] - self.times[k];
                let v0 = self.element(3 * k + 1);
                let out_tangent = self.element(3 * k + 2);
                let in_tangent = self.element(3 * k + 3);
                let v1 = self.element(3 * k + 4);
                let p = hermite(v0, out_tangent, v1, in_tangent, dt, s);
                let nearest = if s < 0.5 { k } else { k + 1 };
                self.finish(p, nearest)
            }
        }
    }

    /// Normalize a cubic-spline rotation; where the spline passes through zero (possible
    /// only with crafted tangents) use keyframe `fallback` instead.
    fn finish(&self, value: [f64; 4], fallback: usize) -> [f64; 4] {
        if !self.rotation || self.interpolation != Interpolation::CubicSpline {
            return value;
        }
        normalize4(value)
            .or_else(|| normalize4(self.key_value(fallback)))
            .expect("keyframe rotations were checked to be non-zero")
    }
}

/// `(1 - s)·a + s·b` per component: exact at s = 0 and s = 1.
fn lerp4(a: [f64; 4], b: [f64; 4], s: f64) -> [f64; 4] {
    std::array::from_fn(|i| (1.0 - s) * a[i] + s * b[i])
}

/// The glTF cubic Hermite spline between keyframe values `v0` and `v1`, with out-tangent
/// `b0` of the first and in-tangent `a1` of the second, over a keyframe delta `dt`.
fn hermite(v0: [f64; 4], b0: [f64; 4], v1: [f64; 4], a1: [f64; 4], dt: f64, s: f64) -> [f64; 4] {
    let s2 = s * s;
    let s3 = s2 * s;
    let h00 = 2.0 * s3 - 3.0 * s2 + 1.0;
    let h10 = (s3 - 2.0 * s2 + s) * dt;
    let h01 = -2.0 * s3 + 3.0 * s2;
    let h11 = (s3 - s2) * dt;
    std::array::from_fn(|i| h00 * v0[i] + h10 * b0[i] + h01 * v1[i] + h11 * a1[i])
}

fn dot4(a: [f64; 4], b: [f64; 4]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]
}

/// `q / |q|`, or `None` for a zero or non-finite quaternion.
fn normalize4(q: [f64; 4]) -> Option<[f64; 4]> {
    let len = dot4(q, q).sqrt();
    if len > 0.0 && len.is_finite() {
        Some(q.map(|x| x / len))
    } else {
        None
    }
}

/// Spherical linear interpolation between unit quaternions along the shortest arc, as
/// glTF Appendix C specifies; normalized lerp when they are (nearly) parallel.
fn slerp(a: [f64; 4], b: [f64; 4], s: f64) -> [f64; 4] {
    let d = dot4(a, b);
    // q and -q are the same rotation: flip `b` to the hemisphere of `a`.
    let (b, d) = if d < 0.0 { (b.map(|x| -x), -d) } else { (b, d) };
    let d = d.min(1.0);
    let weighted = if 1.0 - d < NLERP_BELOW {
        lerp4(a, b, s)
    } else {
        let angle = acos_unit(d);
        // sin(acos d), with (1 - d) exact for d in [0.5, 1].
        let sin_angle = ((1.0 - d) * (1.0 + d)).sqrt();
        let wa = sin_quarter_turn(angle * (1.0 - s)) / sin_angle;
        let wb = sin_quarter_turn(angle * s) / sin_angle;
        std::array::from_fn(|i| wa * a[i] + wb * b[i])
    };
    // Both weights are ≥ 0 and `a`, `b` lie within 90° of each other, so this is non-zero.
    normalize4(weighted).unwrap_or(a)
}

/// sin(x) for x in [0, π/2], as a nested Taylor series (truncation error below 1e-21).
fn sin_quarter_turn(x: f64) -> f64 {
    let x2 = x * x;
    let mut r = 1.0;
    for k in (1..=12).rev() {
        let n = f64::from(2 * k);
        r = 1.0 - x2 / (n * (n + 1.0)) * r;
    }
    x * r
}

/// acos(d) for d in [0, 1], as 2·asin(√((1 - d) / 2)) with a nested Taylor series for asin
/// on [0, √½] (truncation error below 1e-18).
fn acos_unit(d: f64) -> f64 {
    let x = ((1.0 - d) * 0.5).sqrt();
    let x2 = x * x;
    let mut r = 1.0;
    for k in (1..=64).rev() {
        let m = f64::from(2 * k - 1);
        let n = f64::from(2 * k);
        r = 1.0 + x2 * (m * m) / (n * (n + 1.0)) * r;
    }
    2.0 * x * r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const H: f64 = std::f64::consts::FRAC_1_SQRT_2;

    /// A document under construction: one buffer of accessor data, one view per accessor.
    #[derive(Default)]
    struct Doc {
        bin: Vec<u8>,
        views: Vec<Value>,
        accessors: Vec<Value>,
    }

    impl Doc {
        fn raw(&mut self, bytes: &[u8], count: usize, ty: &str, ct: u32, normalized: bool) -> u32 {
            while !self.bin.len().is_multiple_of(4) {
                self.bin.push(0);
            }
            self.views.push(json!({
                "buffer": 0, "byteOffset": self.bin.len(), "byteLength": bytes.len()
            }));
            self.bin.extend_from_slice(bytes);
            self.accessors.push(json!({
                "bufferView": self.views.len() - 1, "componentType": ct, "count": count,
                "type": ty, "normalized": normalized
            }));
            (self.accessors.len() - 1) as u32
        }

        fn floats(&mut self, data: &[f32], ty: &str) -> u32 {
            let width = match ty {
                "SCALAR" => 1,
                "VEC3" => 3,
                "VEC4" => 4,
                _ => unreachable!(),
            };
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.raw(&bytes, data.len() / width, ty, 5126, false)
        }

        /// A sampler of `times` and `values` (widths from `ty`) with an interpolation.
        fn sampler(&mut self, times: &[f32], values: &[f32], ty: &str, interp: &str) -> Value {
            let input = self.floats(times, "SCALAR");
            let output = self.floats(values, ty);
            json!({ "input": input, "output": output, "interpolation": interp })
        }

        fn root(&self, nodes: Value, animations: Value) -> Root {
            let doc = json!({
                "asset": { "version": "2.0" },
                "buffers": [{ "byteLength": self.bin.len() }],
                "bufferViews": self.views,
                "accessors": self.accessors,
                "nodes": nodes,
                "animations": animations,
            });
            gltf::json::deserialize::from_value(doc).expect("test document parses")
        }

        fn parse(
            &self,
            nodes: Value,
            animations: Value,
        ) -> (Result<Animations, (String, String)>, Vec<String>) {
            let root = self.root(nodes, animations);
            let mut warnings = Vec::new();
            let result = Animations::parse(&root, std::slice::from_ref(&self.bin), &mut |w| {
                warnings.push(w)
            });
            (result, warnings)
        }
    }

    /// One animation with one sampler driving `path` of node 0 (of `n_nodes` plain nodes).
    fn single(times: &[f32], values: &[f32], path: &str, interp: &str) -> Animations {
        let mut doc = Doc::default();
        let ty = if path == "rotation" { "VEC4" } else { "VEC3" };
        let sampler = doc.sampler(times, values, ty, interp);
        let anims = json!([{
            "samplers": [sampler],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": path } }]
        }]);
        let (result, warnings) = doc.parse(json!([{}]), anims);
        assert!(warnings.is_empty(), "{warnings:?}");
        result.expect("valid animation")
    }

    fn only_pose(anims: &Animations, t: f64) -> NodePose {
        let poses = anims.sample(t);
        assert_eq!(poses.len(), 1);
        poses[0].clone()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    fn assert_unit(q: [f64; 4]) {
        assert!((dot4(q, q).sqrt() - 1.0).abs() < 1e-14, "{q:?} is not unit");
    }

    fn expect_err(result: Result<Animations, (String, String)>, field: &str, words: &[&str]) {
        let Err((f, reason)) = result else {
            panic!("the document was accepted");
        };
        assert_eq!(f, field, "{reason}");
        for w in words {
            assert!(reason.contains(w), "{reason:?} lacks {w:?}");
        }
    }

    #[test]
    fn linear_translation_midpoint() {
        let a = single(
            &[0.0, 2.0],
            &[0.0, 0.0, 0.0, 4.0, -2.0, 1.0],
            "translation",
            "LINEAR",
        );
        let pose = only_pose(&a, 1.0);
        assert_eq!(pose.translation, Some([2.0, -1.0, 0.5]));
        assert_eq!((pose.rotation, pose.scale), (None, None));
        assert_eq!(only_pose(&a, 0.5).translation, Some([1.0, -0.5, 0.25]));
        assert_eq!(a.time_range(), Some((0.0, 2.0)));
        assert!(!a.is_empty());
    }

    #[test]
    fn step_holds_until_the_next_key() {
        let a = single(
            &[0.0, 1.0, 2.0],
            &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0],
            "scale",
            "STEP",
        );
        assert_eq!(only_pose(&a, 0.999).scale, Some([1.0; 3]));
        assert_eq!(only_pose(&a, 1.0).scale, Some([2.0; 3]));
        assert_eq!(only_pose(&a, 1.5).scale, Some([2.0; 3]));
        assert_eq!(only_pose(&a, 2.0).scale, Some([3.0; 3]));
    }

    #[test]
    fn slerp_of_a_quarter_turn_is_an_eighth_turn() {
        let h = H as f32;
        // Identity to 90° about +Z.
        let a = single(
            &[0.0, 1.0],
            &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, h, h],
            "rotation",
            "LINEAR",
        );
        let q = only_pose(&a, 0.5).rotation.unwrap();
        let half = std::f64::consts::FRAC_PI_8; // half of the 45° rotation angle
        assert!(
            close(&q, &[0.0, 0.0, half.sin(), half.cos()], 1e-12),
            "{q:?}"
        );
        assert_unit(q);
        // A quarter of the way: 22.5°, which lerp-then-normalize would get wrong by ~1e-3.
        let q = only_pose(&a, 0.25).rotation.unwrap();
        let half = std::f64::consts::PI / 16.0;
        assert!(
            close(&q, &[0.0, 0.0, half.sin(), half.cos()], 1e-12),
            "{q:?}"
        );
        assert_unit(q);
    }

    #[test]
    fn slerp_takes_the_shortest_arc() {
        let h = H as f32;
        // The second key is -(90° about +Z): the same rotation, so the path is 90°, not 270°.
        let a = single(
            &[0.0, 1.0],
            &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -h, -h],
            "rotation",
            "LINEAR",
        );
        let q = only_pose(&a, 0.5).rotation.unwrap();
        let half = std::f64::consts::FRAC_PI_8;
        assert!(
            close(&q, &[0.0, 0.0, half.sin(), half.cos()], 1e-12),
            "{q:?}"
        );
        assert_unit(q);
    }

    #[test]
    fn slerp_of_equal_keys_is_that_key() {
        let q = slerp([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], 0.3);
        assert_eq!(q, [0.0, 0.0, 0.0, 1.0]);
        let q = slerp([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, -1.0], 0.3);
        assert_eq!(q, [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn cubic_spline_with_zero_tangents_eases() {
        // Keys (in-tangent, value, out-tangent): 0 at t = 0, 10 at t = 2, zero tangents.
        #[rustfmt::skip]
        let values = [
            0.0, 0.0, 0.0,  0.0, 0.0, 0.0,  0.0, 0.0, 0.0,
            0.0, 0.0, 0.0,  10.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let a = single(&[0.0, 2.0], &values, "translation", "CUBICSPLINE");
        // s = 0.25: -2s³ + 3s² = -0.03125 + 0.1875 = 0.15625.
        assert_eq!(only_pose(&a, 0.5).translation, Some([1.5625, 0.0, 0.0]));
        assert_eq!(only_pose(&a, 1.0).translation, Some([5.0, 0.0, 0.0]));
        assert_eq!(only_pose(&a, 2.0).translation, Some([10.0, 0.0, 0.0]));
    }

    #[test]
    fn cubic_spline_scales_tangents_by_the_key_interval() {
        // Key 0 at t = 1: in 100 (unused), value 1, out 1. Key 1 at t = 3: in 3, value 4,
        // out -50 (unused). At t = 2 (s = 0.5, dt = 2):
        // h00 = 0.5, h10 = 0.125, h01 = 0.5, h11 = -0.125, so
        // 0.5·1 + 2·0.125·1 + 0.5·4 + 2·(-0.125)·3 = 0.5 + 0.25 + 2 - 0.75 = 2.
        #[rustfmt::skip]
        let values = [
            100.0, 0.0, 0.0,  1.0, 0.0, 0.0,  1.0, 0.0, 0.0,
            3.0, 0.0, 0.0,    4.0, 0.0, 0.0,  -50.0, 0.0, 0.0,
        ];
        let a = single(&[1.0, 3.0], &values, "translation", "CUBICSPLINE");
        assert_eq!(only_pose(&a, 2.0).translation, Some([2.0, 0.0, 0.0]));
        // s = 0.25: h00 = 0.84375, h10 = 0.140625, h01 = 0.15625, h11 = -0.046875.
        let expected = 0.84375 + 2.0 * 0.140625 + 0.15625 * 4.0 - 2.0 * 0.046875 * 3.0;
        assert_eq!(only_pose(&a, 1.5).translation, Some([expected, 0.0, 0.0]));
    }

    #[test]
    fn cubic_spline_rotation_is_normalized() {
        let h = H as f32;
        #[rustfmt::skip]
        let values = [
            0.0, 0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 1.0,  0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0,  0.0, 0.0, h, h,      0.0, 0.0, 0.0, 0.0,
        ];
        let a = single(&[0.0, 1.0], &values, "rotation", "CUBICSPLINE");
        // With zero tangents the midpoint is (v0 + v1) / 2, normalized: 45° about +Z.
        let q = only_pose(&a, 0.5).rotation.unwrap();
        let half = std::f64::consts::FRAC_PI_8;
        assert!(
            close(&q, &[0.0, 0.0, half.sin(), half.cos()], 1e-7),
            "{q:?}"
        );
        assert_unit(q);
    }

    #[test]
    fn values_are_clamped_outside_the_keys() {
        let a = single(
            &[1.0, 2.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "translation",
            "LINEAR",
        );
        assert_eq!(only_pose(&a, 0.5).translation, Some([1.0, 2.0, 3.0]));
        assert_eq!(only_pose(&a, -7.0).translation, Some([1.0, 2.0, 3.0]));
        assert_eq!(only_pose(&a, f64::NAN).translation, Some([1.0, 2.0, 3.0]));
        assert_eq!(only_pose(&a, 100.0).translation, Some([4.0, 5.0, 6.0]));
        assert_eq!(
            only_pose(&a, f64::INFINITY).translation,
            Some([4.0, 5.0, 6.0])
        );
        assert_eq!(a.time_range(), Some((1.0, 2.0)));
    }

    #[test]
    fn normalized_ubyte_rotations_are_dequantized() {
        let mut doc = Doc::default();
        let input = doc.floats(&[0.0, 1.0], "SCALAR");
        // Identity, then (0, 0, 1, 1)·255/255 → 90° about +Z once normalized.
        let output = doc.raw(&[0, 0, 0, 255, 0, 0, 255, 255], 2, "VEC4", 5121, true);
        let anims = json!([{
            "samplers": [{ "input": input, "output": output, "interpolation": "STEP" }],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "rotation" } }]
        }]);
        let a = doc.parse(json!([{}]), anims).0.unwrap();
        assert_eq!(only_pose(&a, 0.0).rotation, Some([0.0, 0.0, 0.0, 1.0]));
        let q = only_pose(&a, 1.0).rotation.unwrap();
        assert!(close(&q, &[0.0, 0.0, H, H], 1e-15), "{q:?}");
    }

    #[test]
    fn normalized_short_rotations_clamp_minus_32768() {
        let mut doc = Doc::default();
        let input = doc.floats(&[0.0], "SCALAR");
        let shorts: [i16; 4] = [0, 0, -32768, 32767];
        let bytes: Vec<u8> = shorts.iter().flat_map(|v| v.to_le_bytes()).collect();
        let output = doc.raw(&bytes, 1, "VEC4", 5122, true);
        let anims = json!([{
            "samplers": [{ "input": input, "output": output }],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "rotation" } }]
        }]);
        let a = doc.parse(json!([{}]), anims).0.unwrap();
        // -32768 / 32767 is clamped to -1, so this is (0, 0, -1, 1) normalized: -90° about
        // +Z. Unclamped it would be off by ~1e-5.
        let q = only_pose(&a, 0.0).rotation.unwrap();
        assert!(close(&q, &[0.0, 0.0, -H, H], 1e-15), "{q:?}");
    }

    #[test]
    fn normalized_integers_follow_the_gltf_table() {
        assert_eq!(dequantize(-128.0, ComponentType::I8), -1.0);
        assert_eq!(dequantize(-127.0, ComponentType::I8), -1.0);
        assert_eq!(dequantize(127.0, ComponentType::I8), 1.0);
        assert_eq!(dequantize(255.0, ComponentType::U8), 1.0);
        assert_eq!(dequantize(51.0, ComponentType::U8), 0.2);
        assert_eq!(dequantize(-32768.0, ComponentType::I16), -1.0);
        assert_eq!(dequantize(32767.0, ComponentType::I16), 1.0);
        assert_eq!(dequantize(65535.0, ComponentType::U16), 1.0);
        assert_eq!(dequantize(0.5, ComponentType::F32), 0.5);
    }

    #[test]
    fn unnormalized_integer_rotations_are_refused() {
        let mut doc = Doc::default();
        let input = doc.floats(&[0.0], "SCALAR");
        let output = doc.raw(&[0, 0, 0, 255], 1, "VEC4", 5121, false);
        let anims = json!([{
            "samplers": [{ "input": input, "output": output }],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "rotation" } }]
        }]);
        expect_err(
            doc.parse(json!([{}]), anims).0,
            "animations[0].samplers[0].output",
            &["accessors[1]", "not normalized"],
        );
    }

    fn refuse_single(
        times: &[f32],
        values: &[f32],
        ty: &str,
        path: &str,
        interp: &str,
    ) -> Result<Animations, (String, String)> {
        let mut doc = Doc::default();
        let sampler = doc.sampler(times, values, ty, interp);
        let anims = json!([{
            "samplers": [sampler],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": path } }]
        }]);
        doc.parse(json!([{}]), anims).0
    }

    #[test]
    fn non_increasing_times_are_refused() {
        let r = refuse_single(&[0.0, 1.0, 1.0], &[0.0; 9], "VEC3", "translation", "LINEAR");
        expect_err(
            r,
            "animations[0].samplers[0].input",
            &["accessors[0]", "time 2", "time 1"],
        );
        let r = refuse_single(&[0.0, 2.0, 1.0], &[0.0; 9], "VEC3", "translation", "STEP");
        expect_err(r, "animations[0].samplers[0].input", &["time 2"]);
    }

    #[test]
    fn wrong_output_counts_are_refused() {
        let r = refuse_single(&[0.0, 1.0], &[0.0; 9], "VEC3", "translation", "LINEAR");
        expect_err(
            r,
            "animations[0].samplers[0].output",
            &["accessors[1]", "3 elements"],
        );
        // CUBICSPLINE needs 3 elements per key, not 1.
        let r = refuse_single(&[0.0, 1.0], &[0.0; 6], "VEC3", "scale", "CUBICSPLINE");
        expect_err(
            r,
            "animations[0].samplers[0].output",
            &["2 elements", "CUBICSPLINE needs three times"],
        );
    }

    #[test]
    fn wrong_output_types_are_refused() {
        // A VEC3 output for a rotation, and a VEC4 output for a translation.
        let r = refuse_single(&[0.0], &[0.0; 3], "VEC3", "rotation", "LINEAR");
        expect_err(r, "animations[0].samplers[0].output", &["Vec3", "Vec4"]);
        let r = refuse_single(
            &[0.0],
            &[0.0, 0.0, 0.0, 1.0],
            "VEC4",
            "translation",
            "LINEAR",
        );
        expect_err(r, "animations[0].samplers[0].output", &["Vec4", "Vec3"]);
        // An input that is not SCALAR.
        let mut doc = Doc::default();
        let input = doc.floats(&[0.0, 0.0, 0.0], "VEC3");
        let output = doc.floats(&[0.0, 0.0, 0.0], "VEC3");
        let anims = json!([{
            "samplers": [{ "input": input, "output": output }],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "scale" } }]
        }]);
        expect_err(
            doc.parse(json!([{}]), anims).0,
            "animations[0].samplers[0].input",
            &["Scalar"],
        );
    }

    #[test]
    fn non_finite_keys_are_refused() {
        let r = refuse_single(
            &[0.0, 1.0],
            &[0.0, 0.0, 0.0, f32::NAN, 0.0, 0.0],
            "VEC3",
            "translation",
            "LINEAR",
        );
        expect_err(
            r,
            "animations[0].samplers[0].output",
            &["element 1", "not finite"],
        );
        let r = refuse_single(&[0.0, f32::INFINITY], &[0.0; 6], "VEC3", "scale", "STEP");
        expect_err(
            r,
            "animations[0].samplers[0].input",
            &["time 1", "not finite"],
        );
    }

    #[test]
    fn zero_rotation_keys_are_refused() {
        let r = refuse_single(&[0.0], &[0.0; 4], "VEC4", "rotation", "STEP");
        expect_err(r, "animations[0].samplers[0].output", &["zero-length"]);
    }

    #[test]
    fn out_of_range_targets_are_refused() {
        let mut doc = Doc::default();
        let sampler = doc.sampler(&[0.0], &[0.0; 3], "VEC3", "LINEAR");
        let anims = json!([{
            "samplers": [sampler],
            "channels": [
                { "sampler": 0, "target": { "node": 0, "path": "scale" } },
                { "sampler": 0, "target": { "node": 2, "path": "translation" } }
            ]
        }]);
        expect_err(
            doc.parse(json!([{}, {}]), anims.clone()).0,
            "animations[0].channels[1].target.node",
            &["node 2", "2 nodes"],
        );
        let mut anims = anims;
        anims[0]["channels"][1] = json!({ "sampler": 1, "target": { "node": 0, "path": "scale" } });
        expect_err(
            doc.parse(json!([{}]), anims).0,
            "animations[0].channels[1].sampler",
            &["sampler 1"],
        );
    }

    #[test]
    fn weights_are_warned_once_and_skipped() {
        let mut doc = Doc::default();
        let input = doc.floats(&[0.0, 1.0], "SCALAR");
        let weights = doc.floats(&[0.0, 1.0], "SCALAR");
        let anims = json!([{
            "name": "Blink",
            "samplers": [{ "input": input, "output": weights }],
            "channels": [
                { "sampler": 0, "target": { "node": 0, "path": "weights" } },
                { "sampler": 0, "target": { "node": 1, "path": "weights" } }
            ]
        }]);
        let (result, warnings) = doc.parse(json!([{}, {}]), anims);
        let a = result.unwrap();
        assert!(a.is_empty());
        assert_eq!(a.time_range(), None);
        assert!(a.sample(0.5).is_empty());
        assert_eq!(
            warnings,
            ["animations[0] \"Blink\": morph target weights are not supported; ignored"]
        );
    }

    #[test]
    fn matrix_nodes_are_not_animated() {
        let mut doc = Doc::default();
        let sampler = doc.sampler(&[0.0], &[1.0, 2.0, 3.0], "VEC3", "LINEAR");
        let anims = json!([{
            "samplers": [sampler],
            "channels": [
                { "sampler": 0, "target": { "node": 0, "path": "translation" } },
                { "sampler": 0, "target": { "node": 1, "path": "translation" } }
            ]
        }]);
        let matrix = json!([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
        let (result, warnings) = doc.parse(json!([{ "matrix": matrix }, {}]), anims);
        let poses = result.unwrap().sample(0.0);
        assert_eq!(poses.len(), 1);
        assert_eq!(poses[0].node, 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("nodes[0]") && warnings[0].contains("matrix"));
    }

    #[test]
    fn later_channels_win_with_a_warning() {
        let mut doc = Doc::default();
        let first = doc.sampler(&[0.0], &[1.0, 1.0, 1.0], "VEC3", "STEP");
        let second = doc.sampler(&[0.0, 4.0], &[2.0, 2.0, 2.0, 2.0, 2.0, 2.0], "VEC3", "STEP");
        let h = H as f32;
        let spin = doc.sampler(
            &[-1.0, 1.0],
            &[0.0, 0.0, 0.0, 1.0, h, 0.0, 0.0, h],
            "VEC4",
            "LINEAR",
        );
        let anims = json!([
            {
                "name": "Walk",
                "samplers": [first, spin],
                "channels": [
                    { "sampler": 0, "target": { "node": 2, "path": "translation" } },
                    { "sampler": 1, "target": { "node": 0, "path": "rotation" } }
                ]
            },
            {
                "samplers": [second],
                "channels": [{ "sampler": 0, "target": { "node": 2, "path": "translation" } }]
            }
        ]);
        let (result, warnings) = doc.parse(json!([{}, {}, {}]), anims);
        let a = result.unwrap();
        assert_eq!(
            warnings,
            [
                "animations[0] \"Walk\" channels[0] and animations[1] channels[0] both animate \
              the translation of nodes[2]; using animations[1] channels[0]"
            ]
        );
        let poses = a.sample(1.0);
        assert_eq!(poses.len(), 2);
        assert_eq!((poses[0].node, poses[1].node), (0, 2));
        let q = poses[0].rotation.unwrap();
        assert!(close(&q, &[H, 0.0, 0.0, H], 1e-15), "{q:?}");
        assert_eq!(poses[1].translation, Some([2.0; 3]));
        assert_eq!((poses[1].rotation, poses[1].scale), (None, None));
        // The overridden channel still counts towards the range; all start at t = 0.
        assert_eq!(a.time_range(), Some((-1.0, 4.0)));
    }

    #[test]
    fn the_keyframe_budget_is_enforced() {
        let mut doc = Doc::default();
        let sampler = doc.sampler(&[0.0], &[0.0; 3], "VEC3", "LINEAR");
        // Claim more elements than the budget; the data is never read.
        doc.accessors[1]["count"] = json!(MAX_KEYFRAMES);
        let anims = json!([{
            "samplers": [sampler],
            "channels": [{ "sampler": 0, "target": { "node": 0, "path": "scale" } }]
        }]);
        expect_err(
            doc.parse(json!([{}]), anims).0,
            "animations[0].samplers[0].output",
            &["at most 10000000"],
        );
    }

    #[test]
    fn trig_matches_the_platform_library() {
        for i in 0..=1000 {
            let x = std::f64::consts::FRAC_PI_2 * f64::from(i) / 1000.0;
            assert!((sin_quarter_turn(x) - x.sin()).abs() < 4e-16, "sin {x}");
            let d = f64::from(i) / 1000.0;
            assert!((acos_unit(d) - d.acos()).abs() < 1e-15, "acos {d}");
        }
        assert_eq!(acos_unit(1.0), 0.0);
    }
}
