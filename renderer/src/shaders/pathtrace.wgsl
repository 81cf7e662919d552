// Tessera path tracer: one compute invocation renders every sample of one pixel of a tile.
//
// Determinism rules this file keeps (see the crate docs):
// - every random number is `rand(key, dim)` where `key` hashes (seed, frame, global pixel,
//   sample index) and `dim` is a fixed dimension number; nothing reads the invocation's
//   local id, the workgroup id, subgroups or atomics;
// - a pixel's samples are added in sample-index order into one f32 running sum, which a
//   following dispatch continues (so splitting the samples over dispatches changes nothing);
// - BVH traversal visits the nearer child first, the left child on a tie, so the closest
//   hit (and which of two equally near triangles wins) depends only on the ray.

const PI: f32 = 3.14159265358979;
const INV_PI: f32 = 0.318309886183791;
const F32_MAX: f32 = 3.40282e38;
const NO_HIT: u32 = 0xffffffffu;
// BVH depth is capped on the CPU well below this, so the stack never overflows.
const STACK_SIZE: u32 = 64u;
// Random dimensions: 0 and 1 jitter the pixel, then each path vertex owns 8 dimensions.
const DIMS_PER_BOUNCE: u32 = 8u;
const DIM_LIGHT_PICK: u32 = 0u;
const DIM_LIGHT_POINT: u32 = 1u; // and 2
const DIM_BSDF: u32 = 3u; // and 4
const DIM_ROULETTE: u32 = 5u;
// Russian roulette starts at this path depth (number of bounces already taken).
const ROULETTE_DEPTH: u32 = 3u;

const LIGHT_POINT: u32 = 0u;
const LIGHT_SPOT: u32 = 1u;
const LIGHT_DIRECTIONAL: u32 = 2u;

struct Params {
    tile_origin: vec2<u32>,
    tile_size: vec2<u32>,
    image_size: vec2<u32>,
    seed: vec2<u32>,
    frame: u32,
    sample_start: u32,
    sample_count: u32,
    max_bounces: u32,
    triangle_count: u32,
    emitter_count: u32,
    light_count: u32,
    accumulate: u32,
    // Camera basis in world space: `right` and `up` are scaled by the half extents of the
    // image plane at distance 1 along `forward`.
    cam_origin: vec4<f32>,
    cam_right: vec4<f32>,
    cam_up: vec4<f32>,
    cam_forward: vec4<f32>,
}

struct Node {
    bmin: vec3<f32>,
    // Interior: index of the left child (the right child follows it). Leaf: first triangle.
    left_first: u32,
    bmax: vec3<f32>,
    // 0 for an interior node, else the number of triangles in the leaf.
    count: u32,
}

struct TriGeom {
    v0: vec4<f32>,
    e1: vec4<f32>,
    e2: vec4<f32>,
}

struct TriShade {
    // xyz: vertex normals; n0.w: material index (bits); n1.w: emitter pick probability
    // divided by the triangle's area (0 when it is not an emitter).
    n0: vec4<f32>,
    n1: vec4<f32>,
    n2: vec4<f32>,
}

struct Material {
    base_color: vec4<f32>,
    // rgb radiance; w = 1 when double-sided, else only the front face (counter-clockwise
    // winding, normal cross(e1, e2)) emits.
    emission: vec4<f32>,
}

struct Emitter {
    triangle: u32,
    cdf: f32,
}

struct Light {
    // xyz position, w kind (bits).
    position: vec4<f32>,
    // xyz direction the light points to, w range (0 = infinite).
    direction: vec4<f32>,
    // rgb color times intensity.
    intensity: vec4<f32>,
    // x cone scale, y cone offset (spot lights).
    cone: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> nodes: array<Node>;
@group(0) @binding(2) var<storage, read> tri_geom: array<TriGeom>;
@group(0) @binding(3) var<storage, read> tri_shade: array<TriShade>;
@group(0) @binding(4) var<storage, read> materials: array<Material>;
@group(0) @binding(5) var<storage, read> emitters: array<Emitter>;
@group(0) @binding(6) var<storage, read> lights: array<Light>;
@group(0) @binding(7) var<storage, read_write> accum: array<vec4<f32>>;

// ---------------------------------------------------------------------------------------
// Random numbers: a counter-based integer hash (PCG output permutation).

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Hash of (seed, frame, global pixel, sample index). Pixel coordinates are packed into one
// word (the renderer limits width and height to 65535), so no two pixels share a key.
fn sample_key(px: u32, py: u32, sample: u32) -> u32 {
    var h = pcg(params.seed.x);
    h = pcg(h ^ params.seed.y);
    h = pcg(h ^ params.frame);
    h = pcg(h ^ (px | (py << 16u)));
    h = pcg(h ^ sample);
    return h;
}

// Uniform float in [0, 1) with 24 random bits.
fn rand(key: u32, dim: u32) -> f32 {
    let h = pcg(key ^ pcg(dim ^ 0x9e3779b9u));
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

// ---------------------------------------------------------------------------------------
// Geometry helpers.

fn is_finite3(v: vec3<f32>) -> bool {
    // Bit test: an all-ones exponent is Inf or NaN. Comparisons could be folded away.
    let bits = bitcast<vec3<u32>>(v) & vec3<u32>(0x7f800000u);
    return all(bits != vec3<u32>(0x7f800000u));
}

fn safe_inverse(d: vec3<f32>) -> vec3<f32> {
    let tiny = vec3<f32>(1e-30);
    let big = select(vec3<f32>(1e30), vec3<f32>(-1e30), d < vec3<f32>(0.0));
    return select(vec3<f32>(1.0) / d, big, abs(d) < tiny);
}

// Move a ray origin off a surface by a few floats along the normal (Wächter & Binder,
// "A Fast and Robust Method for Avoiding Self-Intersection", Ray Tracing Gems, 2019).
fn offset_ray(p: vec3<f32>, n: vec3<f32>) -> vec3<f32> {
    let of_i = vec3<i32>(256.0 * n);
    let p_i = bitcast<vec3<f32>>(bitcast<vec3<i32>>(p) + select(of_i, -of_i, p < vec3<f32>(0.0)));
    let p_f = p + (1.0 / 65536.0) * n;
    return select(p_i, p_f, abs(p) < vec3<f32>(1.0 / 32.0));
}

// Orthonormal basis around n (Duff et al., "Building an Orthonormal Basis, Revisited").
fn to_world(n: vec3<f32>, v: vec3<f32>) -> vec3<f32> {
    let s = select(-1.0, 1.0, n.z >= 0.0);
    let a = -1.0 / (s + n.z);
    let b = n.x * n.y * a;
    let t = vec3<f32>(1.0 + s * n.x * n.x * a, s * b, -s * n.x);
    let bt = vec3<f32>(b, s + n.y * n.y * a, -n.y);
    return t * v.x + bt * v.y + n * v.z;
}

fn luminance_max(c: vec3<f32>) -> f32 {
    return max(c.x, max(c.y, c.z));
}

// ---------------------------------------------------------------------------------------
// Ray casting.

// Distance to the box entry (clamped at 0), or F32_MAX on a miss or beyond tmax.
fn hit_box(orig: vec3<f32>, inv_dir: vec3<f32>, tmax: f32, bmin: vec3<f32>, bmax: vec3<f32>) -> f32 {
    let t0 = (bmin - orig) * inv_dir;
    let t1 = (bmax - orig) * inv_dir;
    let tlo = min(t0, t1);
    let thi = max(t0, t1);
    let tn = max(max(tlo.x, tlo.y), max(tlo.z, 0.0));
    let tf = min(min(thi.x, thi.y), min(thi.z, tmax));
    return select(F32_MAX, tn, tn <= tf);
}

struct Hit {
    t: f32,
    triangle: u32,
    u: f32,
    v: f32,
}

// Möller–Trumbore. Updates `hit` when the triangle is strictly nearer than `hit.t`.
fn hit_triangle(orig: vec3<f32>, dir: vec3<f32>, tri: u32, hit: ptr<function, Hit>) {
    let g = tri_geom[tri];
    let e1 = g.e1.xyz;
    let e2 = g.e2.xyz;
    let pvec = cross(dir, e2);
    let det = dot(e1, pvec);
    if (abs(det) < 1e-30) {
        return;
    }
    let inv_det = 1.0 / det;
    let tvec = orig - g.v0.xyz;
    let u = dot(tvec, pvec) * inv_det;
    if (u < 0.0 || u > 1.0) {
        return;
    }
    let qvec = cross(tvec, e1);
    let v = dot(dir, qvec) * inv_det;
    if (v < 0.0 || u + v > 1.0) {
        return;
    }
    let t = dot(e2, qvec) * inv_det;
    if (t > 0.0 && t < (*hit).t) {
        (*hit).t = t;
        (*hit).triangle = tri;
        (*hit).u = u;
        (*hit).v = v;
    }
}

// Closest hit along the ray in (0, tmax); with `any_hit` it returns at the first hit found.
fn trace(orig: vec3<f32>, dir: vec3<f32>, tmax: f32, any_hit: bool) -> Hit {
    var hit: Hit;
    hit.t = tmax;
    hit.triangle = NO_HIT;
    hit.u = 0.0;
    hit.v = 0.0;
    if (params.triangle_count == 0u) {
        return hit;
    }
    let inv_dir = safe_inverse(dir);
    let root = nodes[0];
    if (hit_box(orig, inv_dir, hit.t, root.bmin, root.bmax) == F32_MAX) {
        return hit;
    }
    var stack: array<u32, STACK_SIZE>;
    var sp = 0u;
    var current = 0u;
    loop {
        let node = nodes[current];
        if (node.count > 0u) {
            for (var i = 0u; i < node.count; i = i + 1u) {
                hit_triangle(orig, dir, node.left_first + i, &hit);
            }
            if (any_hit && hit.triangle != NO_HIT) {
                return hit;
            }
            if (sp == 0u) {
                break;
            }
            sp = sp - 1u;
            current = stack[sp];
            continue;
        }
        let left = node.left_first;
        let right = left + 1u;
        let nl = nodes[left];
        let nr = nodes[right];
        var d_near = hit_box(orig, inv_dir, hit.t, nl.bmin, nl.bmax);
        var d_far = hit_box(orig, inv_dir, hit.t, nr.bmin, nr.bmax);
        var near = left;
        var far = right;
        if (d_far < d_near) {
            let d = d_near;
            d_near = d_far;
            d_far = d;
            near = right;
            far = left;
        }
        if (d_near == F32_MAX) {
            if (sp == 0u) {
                break;
            }
            sp = sp - 1u;
            current = stack[sp];
            continue;
        }
        current = near;
        if (d_far != F32_MAX && sp < STACK_SIZE) {
            stack[sp] = far;
            sp = sp + 1u;
        }
    }
    return hit;
}

fn occluded(orig: vec3<f32>, dir: vec3<f32>, tmax: f32) -> bool {
    return trace(orig, dir, tmax, true).triangle != NO_HIT;
}

// ---------------------------------------------------------------------------------------
// Lights.

// Index of the emitter whose CDF interval holds u (binary search; the last CDF is 1).
fn pick_emitter(u: f32) -> u32 {
    var lo = 0u;
    var hi = params.emitter_count - 1u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (emitters[mid].cdf > u) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    return lo;
}

fn power_heuristic(a: f32, b: f32) -> f32 {
    let a2 = a * a;
    return a2 / (a2 + b * b);
}

// Light from emissive triangles reaching p, by next-event estimation. `mis` is false at the
// last path vertex, where no BSDF ray follows, so the light sample takes full weight.
fn sample_emitters(key: u32, dim: u32, p: vec3<f32>, ng: vec3<f32>, ns: vec3<f32>, albedo: vec3<f32>, mis: bool) -> vec3<f32> {
    if (params.emitter_count == 0u) {
        return vec3<f32>(0.0);
    }
    let e = emitters[pick_emitter(rand(key, dim + DIM_LIGHT_PICK))];
    let g = tri_geom[e.triangle];
    let s = tri_shade[e.triangle];
    let r1 = rand(key, dim + DIM_LIGHT_POINT);
    let r2 = rand(key, dim + DIM_LIGHT_POINT + 1u);
    let su = sqrt(r1);
    let x = g.v0.xyz + g.e1.xyz * (su * (1.0 - r2)) + g.e2.xyz * (su * r2);
    let nl_raw = cross(g.e1.xyz, g.e2.xyz);
    let nl_len = length(nl_raw);
    if (nl_len <= 0.0) {
        return vec3<f32>(0.0);
    }
    let nl = nl_raw / nl_len;
    let origin = offset_ray(p, ng);
    let to_light = x - origin;
    let dist2 = dot(to_light, to_light);
    if (dist2 <= 0.0) {
        return vec3<f32>(0.0);
    }
    let dist = sqrt(dist2);
    let wi = to_light / dist;
    let cos_s = dot(ns, wi);
    // Positive when p sees the emitter's front face.
    let cos_front = -dot(nl, wi);
    let material = materials[bitcast<u32>(s.n0.w)];
    let cos_l = select(cos_front, abs(cos_front), material.emission.w > 0.0);
    if (cos_s <= 0.0 || dot(ng, wi) <= 0.0 || cos_l <= 1e-7) {
        return vec3<f32>(0.0);
    }
    // Stop just short of the emitter so its own surface does not count as a blocker.
    if (occluded(origin, wi, dist * 0.9999)) {
        return vec3<f32>(0.0);
    }
    let pdf_light = s.n1.w * dist2 / cos_l;
    var weight = 1.0;
    if (mis) {
        weight = power_heuristic(pdf_light, cos_s * INV_PI);
    }
    return albedo * INV_PI * material.emission.xyz * (cos_s * weight / pdf_light);
}

// Light from punctual lights reaching p (each light once, in order).
fn sample_punctual(p: vec3<f32>, ng: vec3<f32>, ns: vec3<f32>, albedo: vec3<f32>) -> vec3<f32> {
    var sum = vec3<f32>(0.0);
    let origin = offset_ray(p, ng);
    for (var i = 0u; i < params.light_count; i = i + 1u) {
        let light = lights[i];
        let kind = bitcast<u32>(light.position.w);
        var wi: vec3<f32>;
        var tmax = F32_MAX;
        var irradiance = light.intensity.xyz;
        if (kind == LIGHT_DIRECTIONAL) {
            wi = -light.direction.xyz;
        } else {
            let to_light = light.position.xyz - origin;
            let dist2 = dot(to_light, to_light);
            if (dist2 <= 0.0) {
                continue;
            }
            let dist = sqrt(dist2);
            wi = to_light / dist;
            tmax = dist;
            var attenuation = 1.0 / dist2;
            let range = light.direction.w;
            if (range > 0.0) {
                // The glTF range window: smooth falloff to 0 at `range`.
                let ratio = dist / range;
                let window = clamp(1.0 - ratio * ratio * ratio * ratio, 0.0, 1.0);
                attenuation = attenuation * window * window;
            }
            if (kind == LIGHT_SPOT) {
                let cd = dot(light.direction.xyz, -wi);
                let a = clamp(cd * light.cone.x + light.cone.y, 0.0, 1.0);
                attenuation = attenuation * a * a;
            }
            irradiance = irradiance * attenuation;
        }
        let cos_s = dot(ns, wi);
        if (cos_s <= 0.0 || dot(ng, wi) <= 0.0 || luminance_max(irradiance) <= 0.0) {
            continue;
        }
        if (occluded(origin, wi, tmax)) {
            continue;
        }
        sum = sum + albedo * INV_PI * irradiance * cos_s;
    }
    return sum;
}

// ---------------------------------------------------------------------------------------
// One path.

fn camera_ray_dir(px: u32, py: u32, jx: f32, jy: f32) -> vec3<f32> {
    let size = vec2<f32>(params.image_size);
    let sx = 2.0 * (f32(px) + jx) / size.x - 1.0;
    let sy = 1.0 - 2.0 * (f32(py) + jy) / size.y;
    return normalize(params.cam_forward.xyz + params.cam_right.xyz * sx + params.cam_up.xyz * sy);
}

fn radiance(px: u32, py: u32, sample: u32) -> vec3<f32> {
    let key = sample_key(px, py, sample);
    var orig = params.cam_origin.xyz;
    var dir = camera_ray_dir(px, py, rand(key, 0u), rand(key, 1u));
    var throughput = vec3<f32>(1.0);
    var result = vec3<f32>(0.0);
    var prev_bsdf_pdf = 0.0;
    var depth = 0u;
    loop {
        let hit = trace(orig, dir, F32_MAX, false);
        if (hit.triangle == NO_HIT) {
            break; // black background
        }
        let g = tri_geom[hit.triangle];
        let s = tri_shade[hit.triangle];
        let material = materials[bitcast<u32>(s.n0.w)];
        let p = g.v0.xyz + g.e1.xyz * hit.u + g.e2.xyz * hit.v;
        let ng_raw = normalize(cross(g.e1.xyz, g.e2.xyz));
        let cos_hit = dot(ng_raw, dir);
        let ng = select(ng_raw, -ng_raw, cos_hit > 0.0);
        var ns = s.n0.xyz * (1.0 - hit.u - hit.v) + s.n1.xyz * hit.u + s.n2.xyz * hit.v;
        let ns_len = length(ns);
        if (ns_len > 1e-12) {
            ns = ns / ns_len;
            ns = select(ns, -ns, dot(ns, ng) < 0.0);
        } else {
            ns = ng;
        }

        // Emission (front face, or both for double-sided materials). Seen from the camera
        // it counts fully; reached by a BSDF sample it is weighted against the light
        // sample taken at the previous vertex.
        let emission = material.emission.xyz;
        let emits = material.emission.w > 0.0 || cos_hit < 0.0;
        if (emits && luminance_max(emission) > 0.0) {
            var weight = 1.0;
            let pdf_area = s.n1.w;
            if (depth > 0u && pdf_area > 0.0) {
                let pdf_light = pdf_area * hit.t * hit.t / max(abs(cos_hit), 1e-7);
                weight = power_heuristic(prev_bsdf_pdf, pdf_light);
            }
            result = result + throughput * emission * weight;
        }

        let albedo = material.base_color.xyz;
        let dim = 2u + depth * DIMS_PER_BOUNCE;
        let last = depth >= params.max_bounces;
        if (luminance_max(albedo) > 0.0) {
            result = result + throughput * sample_emitters(key, dim, p, ng, ns, albedo, !last);
            result = result + throughput * sample_punctual(p, ng, ns, albedo);
        }
        if (last) {
            break;
        }

        // Lambertian: cosine-weighted direction; f * cos / pdf = albedo.
        let r1 = rand(key, dim + DIM_BSDF);
        let r2 = rand(key, dim + DIM_BSDF + 1u);
        let phi = 2.0 * PI * r1;
        let r = sqrt(r2);
        let local = vec3<f32>(r * cos(phi), r * sin(phi), sqrt(max(0.0, 1.0 - r2)));
        let wi = normalize(to_world(ns, local));
        let cos_i = dot(ns, wi);
        if (dot(ng, wi) <= 0.0 || cos_i <= 0.0) {
            break;
        }
        throughput = throughput * albedo;
        if (luminance_max(throughput) <= 0.0) {
            break;
        }
        prev_bsdf_pdf = cos_i * INV_PI;
        depth = depth + 1u;
        if (depth >= ROULETTE_DEPTH) {
            let survive = min(luminance_max(throughput), 0.95);
            if (rand(key, dim + DIM_ROULETTE) >= survive) {
                break;
            }
            throughput = throughput / survive;
        }
        orig = offset_ray(p, ng);
        dir = wi;
    }
    return result;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.tile_size.x || gid.y >= params.tile_size.y) {
        return;
    }
    let px = params.tile_origin.x + gid.x;
    let py = params.tile_origin.y + gid.y;
    let index = gid.y * params.tile_size.x + gid.x;
    var sum = vec3<f32>(0.0);
    if (params.accumulate != 0u) {
        sum = accum[index].xyz;
    }
    for (var i = 0u; i < params.sample_count; i = i + 1u) {
        let value = radiance(px, py, params.sample_start + i);
        // A non-finite sample counts as black, the same way on every run.
        sum = sum + select(vec3<f32>(0.0), value, is_finite3(value));
    }
    accum[index] = vec4<f32>(sum, 0.0);
}
