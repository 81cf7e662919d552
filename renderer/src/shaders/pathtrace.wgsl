// Tessera path tracer: the samples of each pixel of a tile (or band), one pixel per
// invocation (`main`, for CPUs) or one sample per invocation (`spread` then `gather`, for
// GPUs), with the same bytes either way.
//
// Determinism rules this file keeps (see the crate docs):
// - every random number is `rand(key, dim)` where `key` hashes (seed, frame, global pixel,
//   sample index) and `dim` is a fixed dimension number; nothing reads the invocation's
//   local id, the workgroup id, subgroups or atomics;
// - a pixel's samples are added in sample-index order into one f32 running sum, which a
//   following dispatch continues (so splitting the samples over dispatches, or computing
//   them in separate invocations and adding them in order afterwards, changes nothing);
// - BVH traversal visits hit children nearest first, the lower slot on a tie, so the
//   closest hit (and which of two equally near triangles wins) depends only on the ray;
// - textures are read with textureLoad only (integer texel fetch); wrapping, bilinear
//   filtering and sRGB decoding (exact table) are done here, never by a sampler.

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
const DIM_LOBE: u32 = 6u;
const DIM_SHADOW_PICK: u32 = 7u;
// Russian roulette starts at this path depth (number of bounces already taken).
const ROULETTE_DEPTH: u32 = 3u;
// Smallest GGX alpha (= roughness²): keeps D finite in f32 for mirror-like surfaces.
const MIN_ALPHA: f32 = 0.001;
// Energy tables of the GGX lobe in `luts` (renderer/src/energy.rs): E(μ, r) and the
// dielectric E_d(μ, r) are ENERGY_N × ENERGY_N (rows r = i/(N−1), columns √μ = j/(N−1)),
// E_avg(r) has ENERGY_N entries. They are uploaded from constants, not computed here; the
// BLAKE3 of their bytes is quoted here so that a table change is a shader change:
// energy tables blake3 = de688d1a7c4ee3e13fac2d96e766d276450a1ac86c22d9d9eebd46deb3b647d3
const ENERGY_N: u32 = 32u;
// E and E_d of each node as two 16-bit fixed-point values in one word (E low); then
// E_avg(r_i) and E_avg(r_{i+1}) in one word per row (energy.rs `lut_words`).
const LUT_E: u32 = 512u;
const LUT_E_AVG: u32 = 1536u;
// Schlick F0 of the glTF dielectric and the hemispherical average of Schlick's weight
// (1 − cos)⁵ against 2 cos: 1/21.
const DIELECTRIC_F0: f32 = 0.04;
const SCHLICK_AVG: f32 = 0.047619047619;

const LIGHT_POINT: u32 = 0u;
const LIGHT_SPOT: u32 = 1u;
const LIGHT_DIRECTIONAL: u32 = 2u;

const TRI_ALPHA: u32 = 3u;
const TRI_FLAT: u32 = 4u;
const TRI_TANGENTS: u32 = 8u;
const ALPHA_MASK: u32 = 1u;
const ALPHA_BLEND: u32 = 2u;

// Features a scene may leave unused, compiled out when it does (pipeline-overridable
// constants the renderer sets from the scene, so every node and verifier of a scene runs
// the same variant). A variant only drops branches the scene never takes: its bytes are
// those of the full shader (renderer/tests/parallelism.rs renders both).
// Any material with a texture.
override TEXTURES: bool = true;
// Any triangle with alpha MASK or BLEND.
override ALPHA: bool = true;
// An environment image (else the background is one colour and never sampled).
override ENV_IMAGE: bool = true;
// Any punctual light.
override PUNCTUAL: bool = true;
// Not a feature but a schedule, chosen by the renderer per scene (render.rs,
// `regenerates`): `main` runs its samples as one loop of path segments with path
// regeneration (see `main`). The bytes are the same either way.
override REGENERATE: bool = false;

const WRAP_REPEAT: u32 = 0u;
const WRAP_CLAMP: u32 = 1u;

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
    // 0 perspective, 1 orthographic.
    cam_kind: u32,
    // 0 constant colour, 1 equirectangular image.
    env_mode: u32,
    env_width: u32,
    env_height: u32,
    env_dist_w: u32,
    env_dist_h: u32,
    env_rows_per_layer: u32,
    // `main`'s b-th workgroup (row-major) renders block (b · block_stride) mod blocks.
    block_stride: u32,
    // Probability that next-event estimation samples the environment (0 = never).
    env_pick: f32,
    env_rot_cos: f32,
    env_rot_sin: f32,
    // 0: the band is the rectangle tile_origin + tile_size. 1: the band is a list of
    // tile_size.x pixels anywhere in the frame (`pixel_at`), e.g. a verifier's scattered
    // 8×8 blocks, rendered in one dispatch; tile_size.y is 1.
    pixel_list: u32,
    // rgb: colour × strength (constant mode); w: strength.
    env_color: vec4<f32>,
    // Camera basis in world space: `right` and `up` are scaled by the half extents of the
    // image plane (at distance 1 along `forward` for a perspective camera).
    cam_origin: vec4<f32>,
    cam_right: vec4<f32>,
    cam_up: vec4<f32>,
    cam_forward: vec4<f32>,
}

// A compressed 4-wide BVH node (renderer/src/bvh.rs, 48 bytes). Child slot k has a 4-bit
// kind: 0 (empty), INTERIOR, or a leaf's triangle count. The interior children are nodes
// child, child + 1, … and the leaves' triangles triangle, triangle + 1, …, both in slot
// order. Slot k's box on axis a is origin[a] + q · 2^(e_a − 127), with q byte k of its
// lower and upper plane words and e_a byte a of `exponents`.
struct Node {
    origin: vec3<f32>,
    // Bytes 0..3: grid exponents; bits 24..28, 28..32: the kinds of slots 0 and 1.
    exponents: u32,
    // Lower x, upper x, lower y, upper y.
    q_xy: vec4<u32>,
    // Lower z, upper z, first child | slot 2's kind << 28, first triangle | slot 3's kind << 28.
    q_z: vec4<u32>,
}

const INTERIOR: u32 = 15u;
const LEAF: u32 = 0x80000000u;

struct TexRef {
    // x, y, width, height of the image in its page.
    rect: vec4<u32>,
    // page, wrap_s | wrap_t << 8 | nearest << 16 | tex_coord << 24, present, mip levels
    // (1: the image alone; see `mip_rect`).
    info: vec4<u32>,
    // Rows of the 2×3 texture-coordinate transform.
    m0: vec4<f32>,
    m1: vec4<f32>,
}

struct Material {
    base_color: vec4<f32>,
    // rgb radiance; w = 1 when double-sided, else only the front face (counter-clockwise
    // winding, normal cross(e1, e2)) emits.
    emission: vec4<f32>,
    // metallic, roughness, normal scale, alpha cutoff.
    params: vec4<f32>,
    // x: alpha mode.
    mode: vec4<u32>,
    base_tex: TexRef,
    mr_tex: TexRef,
    normal_tex: TexRef,
    emissive_tex: TexRef,
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
    // rgb radiant intensity (W/sr) or irradiance (W/m², directional).
    intensity: vec4<f32>,
    // x cone scale, y cone offset (spot lights).
    cone: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> nodes: array<Node>;
// Per triangle: v0 (w: flag bits), e1 (w: emitter pick probability / area), e2 (w: the
// triangle's number in the BVH's leaf order, as bits).
@group(0) @binding(2) var<storage, read> tri_v0: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> tri_e1: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> tri_e2: array<vec4<f32>>;
// Per triangle: vertex indices, w material.
@group(0) @binding(5) var<storage, read> tri_idx: array<vec4<u32>>;
// Per vertex: TEXCOORD_0.xy, TEXCOORD_1.xy.
@group(0) @binding(6) var<storage, read> vert_uv: array<vec4<f32>>;
// Per vertex: octahedral normal, octahedral tangent (+ bitangent sign in bit 31).
@group(0) @binding(7) var<storage, read> vert_frame: array<vec2<u32>>;
@group(0) @binding(8) var<storage, read> materials: array<Material>;
@group(0) @binding(9) var<storage, read> emitters: array<Emitter>;
@group(0) @binding(10) var<storage, read> lights: array<Light>;
// Environment sampling: marginal CDF (env_dist_h), then conditional CDFs per row.
@group(0) @binding(11) var<storage, read> env_cdf: array<f32>;
// 0..256: sRGB code → linear; 256..512: code / 255 (f32 bits); then the energy tables
// (LUT_E…, 16-bit fixed-point pairs).
@group(0) @binding(12) var<storage, read> luts: array<u32>;
@group(0) @binding(13) var<storage, read_write> accum: array<vec4<f32>>;
@group(0) @binding(14) var tex_pages: texture_2d_array<u32>;
@group(0) @binding(15) var env_tex: texture_2d_array<f32>;
// Per-sample values of the `spread` pass (see `gather`).
@group(0) @binding(16) var<storage, read_write> samples: array<vec4<f32>>;
// With `pixel_list`: the frame pixel of each entry of the band, x | y << 16.
@group(0) @binding(17) var<storage, read> pixel_at: array<u32>;

// ---------------------------------------------------------------------------------------
// Random numbers: a counter-based integer hash (PCG output permutation).

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Hash of (seed, frame, global pixel): the pixel's key. Pixel coordinates are packed into
// one word (the renderer limits width and height to 65535), so no two pixels share a key.
fn pixel_key(px: u32, py: u32) -> u32 {
    var h = pcg(params.seed.x);
    h = pcg(h ^ params.seed.y);
    h = pcg(h ^ params.frame);
    return pcg(h ^ (px | (py << 16u)));
}

// A sample's key: the hash of (pixel key, sample index).
fn sample_key_of(pixel: u32, sample: u32) -> u32 {
    return pcg(pixel ^ sample);
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

fn luminance(c: vec3<f32>) -> f32 {
    return 0.2126 * c.x + 0.7152 * c.y + 0.0722 * c.z;
}

// Orthonormal basis (t, b, n) around n, same construction as `to_world`.
fn basis(n: vec3<f32>) -> mat3x3<f32> {
    let s = select(-1.0, 1.0, n.z >= 0.0);
    let a = -1.0 / (s + n.z);
    let b = n.x * n.y * a;
    let t = vec3<f32>(1.0 + s * n.x * n.x * a, s * b, -s * n.x);
    let bt = vec3<f32>(b, s + n.y * n.y * a, -n.y);
    return mat3x3<f32>(t, bt, n);
}

fn to_local(f: mat3x3<f32>, v: vec3<f32>) -> vec3<f32> {
    return vec3<f32>(dot(v, f[0]), dot(v, f[1]), dot(v, f[2]));
}

// ---------------------------------------------------------------------------------------
// Textures: integer texel fetches, wrapping and bilinear filtering by hand.

// i mod n in [0, n) (one integer division: a remainder below 0 is moved up by n).
fn floor_mod(i: i32, n: i32) -> i32 {
    let r = i % n;
    return select(r, r + n, r < 0);
}

fn wrap_coord(i: i32, n: i32, mode: u32) -> i32 {
    if (mode == WRAP_CLAMP) {
        return clamp(i, 0, n - 1);
    }
    if (mode == WRAP_REPEAT) {
        return floor_mod(i, n);
    }
    // MIRRORED_REPEAT: period 2n, the second half reversed.
    let period = 2 * n;
    let k = floor_mod(i, period);
    return select(k, period - 1 - k, k >= n);
}

// The wrapped indices of texels i and i + 1 (a bilinear footprint). With REPEAT the second
// follows from the first without another division (integer division runs lane by lane).
fn wrap_pair(i: i32, n: i32, mode: u32) -> vec2<i32> {
    if (mode == WRAP_REPEAT) {
        let a = floor_mod(i, n);
        return vec2<i32>(a, select(a + 1, 0, a + 1 == n));
    }
    return vec2<i32>(wrap_coord(i, n, mode), wrap_coord(i + 1, n, mode));
}

// The texel at `at` of `t`'s page decoded to linear: rgb through the sRGB table when
// `srgb`, alpha always linear.
fn page_texel(t: TexRef, at: vec2<i32>, srgb: bool) -> vec4<f32> {
    let raw = textureLoad(tex_pages, at, i32(t.info.x), 0);
    let off = select(256u, 0u, srgb);
    return bitcast<vec4<f32>>(vec4<u32>(luts[off + raw.x], luts[off + raw.y], luts[off + raw.z], luts[256u + raw.w]));
}

// Texel (x, y) of the image (level 0) of `t`.
fn texel(t: TexRef, x: i32, y: i32, srgb: bool) -> vec4<f32> {
    return page_texel(t, vec2<i32>(i32(t.rect.x) + x, i32(t.rect.y) + y), srgb);
}

// glTF texture coordinates through `t`'s KHR_texture_transform.
fn transformed_uv(t: TexRef, uv_in: vec2<f32>) -> vec2<f32> {
    let h = vec3<f32>(uv_in, 1.0);
    return vec2<f32>(dot(t.m0.xyz, h), dot(t.m1.xyz, h));
}

// Sample a texture at glTF texture coordinates (origin at the image's top-left corner):
// KHR_texture_transform, then nearest (magFilter NEAREST) or bilinear filtering between
// texel centres, wrapping each texel index by the sampler's modes. The image alone (level
// 0), read exactly: emissive textures and alpha. Shading points use `tex_lookup`.
fn tex_sample(t: TexRef, uv_in: vec2<f32>, srgb: bool) -> vec4<f32> {
    let uv = transformed_uv(t, uv_in);
    let size = vec2<i32>(t.rect.zw);
    let wrap_s = t.info.y & 0xffu;
    let wrap_t = (t.info.y >> 8u) & 0xffu;
    let p = clamp(uv * vec2<f32>(t.rect.zw), vec2<f32>(-1e7), vec2<f32>(1e7));
    if (((t.info.y >> 16u) & 1u) != 0u) {
        let i = vec2<i32>(floor(p));
        return texel(t, wrap_coord(i.x, size.x, wrap_s), wrap_coord(i.y, size.y, wrap_t), srgb);
    }
    let q = p - vec2<f32>(0.5);
    let q0 = floor(q);
    let f = q - q0;
    let i0 = vec2<i32>(q0);
    let xs = wrap_pair(i0.x, size.x, wrap_s);
    let ys = wrap_pair(i0.y, size.y, wrap_t);
    let top = mix(texel(t, xs.x, ys.x, srgb), texel(t, xs.y, ys.x, srgb), f.x);
    let bottom = mix(texel(t, xs.x, ys.y, srgb), texel(t, xs.y, ys.y, srgb), f.x);
    return mix(top, bottom, f.y);
}

fn tri_uv(idx: vec4<u32>, bary: vec3<f32>, uv_set: u32) -> vec2<f32> {
    let uv = vert_uv[idx.x] * bary.x + vert_uv[idx.y] * bary.y + vert_uv[idx.z] * bary.z;
    return select(uv.xy, uv.zw, uv_set == 1u);
}

fn tex_at(t: TexRef, idx: vec4<u32>, bary: vec3<f32>, srgb: bool) -> vec4<f32> {
    return tex_sample(t, tri_uv(idx, bary, t.info.y >> 24u), srgb);
}

// Origin in the page and size of mip level `l` of `t` (texture.rs `mip_rect`): level 0 is
// the image; level l >= 1 is (w >> l) × (h >> l) in a column right of it, at
// (w, h − (h >> (l − 1))) from the image's corner.
fn mip_rect(t: TexRef, l: u32) -> vec4<i32> {
    if (l == 0u) {
        return vec4<i32>(t.rect);
    }
    let w = t.rect.z;
    let h = t.rect.w;
    return vec4<i32>(vec4<u32>(t.rect.x + w, t.rect.y + h - (h >> (l - 1u)), w >> l, h >> l));
}

// The texture coordinates of a triangle's three vertices (`vert_uv`), read once per
// shading point for all of its texture lookups.
struct TriUv {
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
}

// A material texture seen by a path ray whose footprint is `lod_base` (log2 of the ray
// cone's width over the surface, per unit of the triangle's texture-coordinate area; see
// `shade`), at barycentrics `bary` of a triangle with vertex coordinates `uvs`, with
// uniform random numbers `r`.
// One texel is read: the mip level is picked between floor(λ) and floor(λ) + 1 with the
// weights of trilinear filtering (λ the footprint in texels, as a level), and within the
// level one texel of the bilinear footprint with its bilinear weight (stochastic texture
// filtering: the expected value over `r` is the trilinear lookup, and the path's
// samples average it). magFilter NEAREST reads the texel under the point instead.
fn tex_lookup(t: TexRef, uvs: TriUv, bary: vec3<f32>, srgb: bool, lod_base: f32, r: vec3<f32>) -> vec4<f32> {
    let a = uvs.a;
    let b = uvs.b;
    let c = uvs.c;
    let set1 = (t.info.y >> 24u) == 1u;
    let ua = select(a.xy, a.zw, set1);
    let ub = select(b.xy, b.zw, set1);
    let uc = select(c.xy, c.zw, set1);
    let uv = transformed_uv(t, ua * bary.x + ub * bary.y + uc * bary.z);
    var level = 0u;
    if (t.info.w > 1u) {
        // Texel area of the triangle (twice it, like the world area in lod_base).
        let d1 = ub - ua;
        let d2 = uc - ua;
        let det = abs(t.m0.x * t.m1.y - t.m0.y * t.m1.x);
        let texels = abs(d1.x * d2.y - d1.y * d2.x) * det * f32(t.rect.z) * f32(t.rect.w);
        // NaN (a degenerate triangle) and footprints under one texel read level 0.
        let lf = lod_base + 0.5 * log2(texels) + r.z;
        if (lf >= 1.0) {
            level = min(u32(min(lf, 31.0)), t.info.w - 1u);
        }
    }
    let m = mip_rect(t, level);
    let wrap_s = t.info.y & 0xffu;
    let wrap_t = (t.info.y >> 8u) & 0xffu;
    let p = clamp(uv * vec2<f32>(m.zw), vec2<f32>(-1e7), vec2<f32>(1e7));
    let nearest = ((t.info.y >> 16u) & 1u) != 0u;
    let i = vec2<i32>(floor(select(p - vec2<f32>(0.5) + r.xy, p, nearest)));
    let x = wrap_coord(i.x, m.z, wrap_s);
    let y = wrap_coord(i.y, m.w, wrap_t);
    return page_texel(t, vec2<i32>(m.x + x, m.y + y), srgb);
}

// alpha = baseColorFactor.a × baseColorTexture.a at barycentrics (u, v) of `tri`.
fn surface_alpha(tri: u32, u: f32, v: f32) -> f32 {
    let idx = tri_idx[tri];
    let m = materials[idx.w];
    var a = m.base_color.w;
    if (TEXTURES && m.base_tex.info.z != 0u) {
        a = a * tex_at(m.base_tex, idx, vec3<f32>(1.0 - u - v, u, v), true).w;
    }
    return a;
}

// Whether a ray of the path (`key`, `depth`) stops at this point of an alpha-flagged
// triangle: MASK keeps alpha >= cutoff; BLEND keeps the surface with probability alpha,
// decided by a hash of (sample key, depth, triangle), so the decision is reproducible.
fn alpha_keeps(tri: u32, u: f32, v: f32, mode: u32, key: u32, depth: u32) -> bool {
    let a = surface_alpha(tri, u, v);
    if (mode == ALPHA_MASK) {
        return a >= materials[tri_idx[tri].w].params.w;
    }
    // The triangle's number in the BVH's leaf order (tri_e2.w), which does not depend
    // on how the nodes are encoded.
    let id = bitcast<u32>(tri_e2[tri].w);
    return rand(pcg(key ^ pcg(id ^ 0x68bc21ebu)), 0x40000000u + depth) < a;
}

// ---------------------------------------------------------------------------------------
// Ray casting.

// The four bytes of `w` (byte k in lane k) as floats.
fn node_bytes(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u));
}

// Entry distances (clamped at 0) of the ray into the four child boxes of `node`, F32_MAX
// where it misses a box, enters it beyond tmax, or the slot is empty. The ray's direction
// signs pick each axis' near and far planes; a plane's distance is
// fma(q, step, origin − orig) · inv_dir (renderer/src/bvh.rs mirrors it).
fn hit_box(orig: vec3<f32>, inv_dir: vec3<f32>, tmax: f32, node: Node, kind: vec4<u32>) -> vec4<f32> {
    let step = vec3<f32>(
        bitcast<f32>((node.exponents << 23u) & 0x7f800000u),
        bitcast<f32>((node.exponents << 15u) & 0x7f800000u),
        bitcast<f32>((node.exponents << 7u) & 0x7f800000u)
    );
    let offset = node.origin - orig;
    let neg = inv_dir < vec3<f32>(0.0);
    let near_x = node_bytes(select(node.q_xy.x, node.q_xy.y, neg.x));
    let far_x = node_bytes(select(node.q_xy.y, node.q_xy.x, neg.x));
    let near_y = node_bytes(select(node.q_xy.z, node.q_xy.w, neg.y));
    let far_y = node_bytes(select(node.q_xy.w, node.q_xy.z, neg.y));
    let near_z = node_bytes(select(node.q_z.x, node.q_z.y, neg.z));
    let far_z = node_bytes(select(node.q_z.y, node.q_z.x, neg.z));
    let tn_x = fma(near_x, vec4<f32>(step.x), vec4<f32>(offset.x)) * inv_dir.x;
    let tf_x = fma(far_x, vec4<f32>(step.x), vec4<f32>(offset.x)) * inv_dir.x;
    let tn_y = fma(near_y, vec4<f32>(step.y), vec4<f32>(offset.y)) * inv_dir.y;
    let tf_y = fma(far_y, vec4<f32>(step.y), vec4<f32>(offset.y)) * inv_dir.y;
    let tn_z = fma(near_z, vec4<f32>(step.z), vec4<f32>(offset.z)) * inv_dir.z;
    let tf_z = fma(far_z, vec4<f32>(step.z), vec4<f32>(offset.z)) * inv_dir.z;
    let tn = max(max(tn_x, tn_y), max(tn_z, vec4<f32>(0.0)));
    let tf = min(min(tf_x, tf_y), min(tf_z, vec4<f32>(tmax)));
    return select(vec4<f32>(F32_MAX), tn, (tn <= tf) & (kind != vec4<u32>(0u)));
}

struct Hit {
    t: f32,
    triangle: u32,
    u: f32,
    v: f32,
}

// Möller–Trumbore. Updates `hit` when the triangle is strictly nearer than `hit.t` (and
// its alpha keeps it, for alpha-flagged triangles).
fn hit_triangle(orig: vec3<f32>, dir: vec3<f32>, tri: u32, hit: ptr<function, Hit>, key: u32, depth: u32) {
    let v0 = tri_v0[tri];
    let e1 = tri_e1[tri].xyz;
    let e2 = tri_e2[tri].xyz;
    let pvec = cross(dir, e2);
    let det = dot(e1, pvec);
    if (abs(det) < 1e-30) {
        return;
    }
    let inv_det = 1.0 / det;
    let tvec = orig - v0.xyz;
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
        let mode = bitcast<u32>(v0.w) & TRI_ALPHA;
        if (ALPHA && mode != 0u && !alpha_keeps(tri, u, v, mode, key, depth)) {
            return;
        }
        (*hit).t = t;
        (*hit).triangle = tri;
        (*hit).u = u;
        (*hit).v = v;
    }
}

// Closest hit along the ray in (0, tmax); with `any_hit` it returns at the first hit found.
// At each node the hit children are ordered by entry distance (the lower slot on a tie):
// the traversal goes on with the nearest (a leaf is tested in the same pass) and pushes
// the others far to near. So the order, and which of two equally near triangles wins,
// depend only on the ray. The build keeps the stack from overflowing (renderer/src/bvh.rs,
// STACK_LIMIT). Popped entries are not culled by distance: on lavapipe the stack writes
// and reads that would take cost more than the visits they save.
fn trace(orig: vec3<f32>, dir: vec3<f32>, tmax: f32, any_hit: bool, key: u32, depth: u32) -> Hit {
    var hit: Hit;
    hit.t = tmax;
    hit.triangle = NO_HIT;
    hit.u = 0.0;
    hit.v = 0.0;
    if (params.triangle_count == 0u) {
        return hit;
    }
    let inv_dir = safe_inverse(dir);
    var stack_ref: array<u32, STACK_SIZE>;
    var sp = 0u;
    var current = 0u;
    loop {
        loop_iterations = loop_iterations + 1u;
        var leaf = (current & LEAF) != 0u;
        if (!leaf) {
            let node = nodes[current];
            let kind = vec4<u32>(
                (node.exponents >> 24u) & 15u,
                node.exponents >> 28u,
                node.q_z.z >> 28u,
                node.q_z.w >> 28u
            );
            var d = hit_box(orig, inv_dir, hit.t, node, kind);
            // Each slot's reference: an interior child's node index, or
            // LEAF | (count − 1) << 28 | first triangle (garbage for an empty slot, which
            // misses). Indices are the node's bases plus the slots before.
            let interior = kind == vec4<u32>(INTERIOR);
            let ints = select(vec4<u32>(0u), vec4<u32>(1u), interior);
            let counts = select(kind, vec4<u32>(0u), interior);
            let child = (node.q_z.z & 0x0fffffffu)
                + vec4<u32>(0u, ints.x, ints.x + ints.y, ints.x + ints.y + ints.z);
            let first = (node.q_z.w & 0x0fffffffu)
                + vec4<u32>(0u, counts.x, counts.x + counts.y, counts.x + counts.y + counts.z);
            var r = select(vec4<u32>(LEAF) | ((counts - 1u) << vec4<u32>(28u)) | first, child, interior);
            var slot = vec4<u32>(0u, 1u, 2u, 3u);
            // Sorting network (0,1)(2,3), (0,2)(1,3), (1,2). The first two layers only
            // compare a lower slot group with a higher one, so a strict `<` keeps equal
            // distances in slot order; the last compares slots on a tie.
            var swap = d.yw < d.xz;
            d = vec4<f32>(select(d.xz, d.yw, swap), select(d.yw, d.xz, swap)).xzyw;
            r = vec4<u32>(select(r.xz, r.yw, swap), select(r.yw, r.xz, swap)).xzyw;
            slot = vec4<u32>(select(slot.xz, slot.yw, swap), select(slot.yw, slot.xz, swap)).xzyw;
            swap = d.zw < d.xy;
            d = vec4<f32>(select(d.xy, d.zw, swap), select(d.zw, d.xy, swap));
            r = vec4<u32>(select(r.xy, r.zw, swap), select(r.zw, r.xy, swap));
            slot = vec4<u32>(select(slot.xy, slot.zw, swap), select(slot.zw, slot.xy, swap));
            let mid = d.z < d.y || (d.z == d.y && slot.z < slot.y);
            d = vec4<f32>(d.x, select(d.y, d.z, mid), select(d.z, d.y, mid), d.w);
            r = vec4<u32>(r.x, select(r.y, r.z, mid), select(r.z, r.y, mid), r.w);
            // Push the hit children but the nearest, farthest first. A miss sorts last and
            // is written but not kept, one entry above the top (inside the stack: bvh.rs).
            stack_ref[sp] = r.w;
            sp = sp + select(0u, 1u, d.w < F32_MAX);
            stack_ref[sp] = r.z;
            sp = sp + select(0u, 1u, d.z < F32_MAX);
            stack_ref[sp] = r.y;
            sp = sp + select(0u, 1u, d.y < F32_MAX);
            current = r.x;
            leaf = (current & LEAF) != 0u;
            // An interior child is visited in the next pass.
            if (d.x < F32_MAX && !leaf) {
                continue;
            }
            leaf = leaf && d.x < F32_MAX;
        }
        if (leaf) {
            let first = current & 0x0fffffffu;
            let end = first + ((current >> 28u) & 7u) + 1u;
            for (var tri = first; tri < end; tri = tri + 1u) {
                loop_iterations = loop_iterations + 1u;
                hit_triangle(orig, dir, tri, &hit, key, depth);
            }
            if (any_hit && hit.triangle != NO_HIT) {
                return hit;
            }
        }
        if (sp == 0u) {
            break;
        }
        sp = sp - 1u;
        current = stack_ref[sp];
    }
    return hit;
}

// ---------------------------------------------------------------------------------------
// The glTF metallic-roughness BSDF (glTF 2.0 Appendix B, energy-corrected):
// mix(dielectric, metal, metallic) with dielectric = a Lambertian base under a GGX layer
// (Schlick f0 = 0.04) and metal = Schlick conductor Fresnel (f0 = base) × GGX;
// height-correlated Smith visibility. Both GGX lobes are scaled by the multiple-scattering
// compensation of Kulla & Conty / Turquin as Cycles applies it, and the base is weighted
// by what the specular layer leaves at the view direction (albedo scaling), instead of
// Appendix B's per-microfacet 1 − F(v·h), which creates energy at grazing views.

struct Surf {
    base: vec3<f32>,
    metallic: f32,
    alpha: f32,
    // Probability of sampling the specular lobe (the lobes' albedo ratio at n·wo).
    p_spec: f32,
    // Multiple-scattering scale of the dielectric's specular lobe, 1 + Fms (1 − E) / E.
    ms_dielectric: f32,
    // Weight of the Lambertian base: 1 − albedo of the (scaled) specular layer at n·wo.
    diffuse_weight: f32,
    // Multiple-scattering scale of the metal lobe, per channel.
    ms_metal: vec3<f32>,
}

struct Eval {
    f_cos: vec3<f32>,
    pdf: f32,
}

fn pow5(x: f32) -> f32 {
    let x2 = x * x;
    return x2 * x2 * x;
}

fn ggx_d(nh: f32, a2: f32) -> f32 {
    let d = nh * nh * (a2 - 1.0) + 1.0;
    return a2 / (PI * d * d);
}

fn smith_g1(nx: f32, a2: f32) -> f32 {
    return 2.0 * nx / (nx + sqrt(a2 + (1.0 - a2) * nx * nx));
}

// V = G2 / (4 n·l n·v), height-correlated Smith.
fn smith_vis(nl: f32, nv: f32, a2: f32) -> f32 {
    let gv = nl * sqrt(nv * nv * (1.0 - a2) + a2);
    let gl = nv * sqrt(nl * nl * (1.0 - a2) + a2);
    return 0.5 / (gv + gl);
}

// The two 16-bit fixed-point values of a table word: q / 65536, exact in f32.
fn unpack_fixed16(w: u32) -> vec2<f32> {
    return vec2<f32>(f32(w & 0xffffu), f32(w >> 16u)) * (1.0 / 65536.0);
}

// (E, E_d) at (n·wo = mu, roughness): bilinear in (√mu, roughness) between the nodes,
// each node one word of two fixed-point values.
fn energy_pair(mu: f32, rough: f32) -> vec2<f32> {
    let last = f32(ENERGY_N - 1u);
    let x = clamp(sqrt(max(mu, 0.0)), 0.0, 1.0) * last;
    let y = clamp(rough, 0.0, 1.0) * last;
    let x0 = min(u32(x), ENERGY_N - 2u);
    let y0 = min(u32(y), ENERGY_N - 2u);
    let fx = x - f32(x0);
    let fy = y - f32(y0);
    let i = LUT_E + y0 * ENERGY_N + x0;
    let a0 = unpack_fixed16(luts[i]);
    let a1 = unpack_fixed16(luts[i + 1u]);
    let b0 = unpack_fixed16(luts[i + ENERGY_N]);
    let b1 = unpack_fixed16(luts[i + ENERGY_N + 1u]);
    let a = a0 + (a1 - a0) * fx;
    let b = b0 + (b1 - b0) * fx;
    return a + (b - a) * fy;
}

// Linear lookup in the ENERGY_N-entry E_avg(r) table: one word holds both ends.
fn energy_avg(rough: f32) -> f32 {
    let y = clamp(rough, 0.0, 1.0) * f32(ENERGY_N - 1u);
    let y0 = min(u32(y), ENERGY_N - 2u);
    let fy = y - f32(y0);
    let ab = unpack_fixed16(luts[LUT_E_AVG + y0]);
    return ab.x + (ab.y - ab.x) * fy;
}

// Kulla & Conty's multiple-scattering Fresnel with one Fss cancelled (the scaled lobe
// already carries one Fresnel bounce): Fms = Fss E_avg / (1 − Fss (1 − E_avg)), where
// Fss is the hemispherical average of Schlick's F. The lobe scale is 1 + Fms (1 − E) / E:
// exactly 1 / E for a white conductor (its albedo becomes 1).
fn ms_scale(f0: vec3<f32>, missing: f32, e_avg: f32) -> vec3<f32> {
    let fss = f0 + (vec3<f32>(1.0) - f0) * SCHLICK_AVG;
    let fms = fss * e_avg / (vec3<f32>(1.0) - fss * (1.0 - e_avg));
    return vec3<f32>(1.0) + fms * missing;
}

// The view-dependent parts of the BSDF at n·wo = nv: compensation scales, the base's
// weight and the lobe-selection probability. Everything here depends on wo only, so the
// BSDF stays a fixed function of wi for light and BSDF samples alike.
fn prepare_surf(s: ptr<function, Surf>, nv: f32) {
    let mu = clamp(nv, 0.0, 1.0);
    let rough = sqrt((*s).alpha);
    let pair = energy_pair(mu, rough);
    let e = max(pair.x, 1e-3);
    let e_d = pair.y;
    let e_avg = energy_avg(rough);
    let missing = (1.0 - e) / e;
    let base = (*s).base;
    (*s).ms_metal = ms_scale(base, missing, e_avg);
    (*s).ms_dielectric = ms_scale(vec3<f32>(DIELECTRIC_F0), missing, e_avg).x;
    let spec_d = e_d * (*s).ms_dielectric;
    (*s).diffuse_weight = max(1.0 - spec_d, 0.0);
    // Schlick albedo is linear in f0: E_F = f0 E + (1 − f0) E5, with E5 recovered from E_d.
    let e5 = max((e_d - DIELECTRIC_F0 * e) / (1.0 - DIELECTRIC_F0), 0.0);
    let spec_m = (base * e + (vec3<f32>(1.0) - base) * e5) * (*s).ms_metal;
    let m = (*s).metallic;
    let spec = (1.0 - m) * spec_d + m * luminance(spec_m);
    let diff = (1.0 - m) * (*s).diffuse_weight * luminance(base);
    let total = spec + diff;
    (*s).p_spec = select(0.5, clamp(spec / total, 0.0, 1.0), total > 0.0);
}

// f·cos and the pdf of the full lobe mixture, both directions in the local frame (z = n).
// The compensation is a per-wo scale of each GGX lobe, so the lobes keep their shapes and
// the mixture pdf (p_spec × VNDF pdf + (1 − p_spec) × cosine pdf) is unchanged.
fn bsdf_eval(s: Surf, wo: vec3<f32>, wi: vec3<f32>) -> Eval {
    var out: Eval;
    out.f_cos = vec3<f32>(0.0);
    out.pdf = 0.0;
    let nv = wo.z;
    let nl = wi.z;
    if (nl <= 0.0 || nv <= 0.0) {
        return out;
    }
    let h = normalize(wo + wi);
    let vh = clamp(dot(wo, h), 0.0, 1.0);
    let a2 = s.alpha * s.alpha;
    let d = ggx_d(h.z, a2);
    let spec = d * smith_vis(nl, nv, a2);
    let fw = pow5(1.0 - vh);
    let f_d = DIELECTRIC_F0 + (1.0 - DIELECTRIC_F0) * fw;
    let f_m = s.base + (vec3<f32>(1.0) - s.base) * fw;
    let dielectric = s.diffuse_weight * s.base * INV_PI + vec3<f32>(s.ms_dielectric * f_d * spec);
    let f = (1.0 - s.metallic) * dielectric + s.metallic * s.ms_metal * f_m * spec;
    out.f_cos = f * nl;
    let pdf_spec = d * smith_g1(nv, a2) / (4.0 * nv);
    out.pdf = s.p_spec * pdf_spec + (1.0 - s.p_spec) * nl * INV_PI;
    return out;
}

// GGX visible-normal sampling with spherical caps (Dupuy & Benyoub 2023), isotropic.
fn sample_vndf(wo: vec3<f32>, alpha: f32, u1: f32, u2: f32) -> vec3<f32> {
    let wi_std = normalize(vec3<f32>(alpha * wo.x, alpha * wo.y, wo.z));
    let phi = 2.0 * PI * u1;
    let z = (1.0 - u2) * (1.0 + wi_std.z) - wi_std.z;
    let sin_t = sqrt(clamp(1.0 - z * z, 0.0, 1.0));
    let c = vec3<f32>(sin_t * cos(phi), sin_t * sin(phi), z);
    let h_std = c + wi_std;
    return normalize(vec3<f32>(alpha * h_std.x, alpha * h_std.y, max(h_std.z, 0.0)));
}

fn bsdf_sample(s: Surf, wo: vec3<f32>, r_lobe: f32, r1: f32, r2: f32) -> vec3<f32> {
    if (r_lobe < s.p_spec) {
        let h = sample_vndf(wo, s.alpha, r1, r2);
        return 2.0 * dot(wo, h) * h - wo;
    }
    let phi = 2.0 * PI * r1;
    let r = sqrt(r2);
    return vec3<f32>(r * cos(phi), r * sin(phi), sqrt(max(0.0, 1.0 - r2)));
}

// ---------------------------------------------------------------------------------------
// The environment.

fn env_rotate(d: vec3<f32>) -> vec3<f32> {
    return vec3<f32>(
        params.env_rot_cos * d.x + params.env_rot_sin * d.z,
        d.y,
        -params.env_rot_sin * d.x + params.env_rot_cos * d.z,
    );
}

fn env_texel(x: i32, y: i32) -> vec3<f32> {
    let rows = i32(params.env_rows_per_layer);
    return textureLoad(env_tex, vec2<i32>(x, y % rows), y / rows, 0).xyz;
}

// Radiance arriving from direction d (pointing away from the scene).
fn env_radiance(d: vec3<f32>) -> vec3<f32> {
    if (!ENV_IMAGE || params.env_mode == 0u) {
        return params.env_color.xyz;
    }
    let l = env_rotate(d);
    let u = 0.5 + atan2(l.z, l.x) * (0.5 * INV_PI);
    let t = acos(clamp(l.y, -1.0, 1.0)) * INV_PI;
    let w = i32(params.env_width);
    let h = i32(params.env_height);
    let p = vec2<f32>(u * f32(w), t * f32(h)) - vec2<f32>(0.5);
    let p0 = floor(p);
    let f = p - p0;
    let i0 = vec2<i32>(p0);
    let xs = wrap_pair(i0.x, w, WRAP_REPEAT);
    let y0 = clamp(i0.y, 0, h - 1);
    let y1 = clamp(i0.y + 1, 0, h - 1);
    let top = mix(env_texel(xs.x, y0), env_texel(xs.y, y0), f.x);
    let bottom = mix(env_texel(xs.x, y1), env_texel(xs.y, y1), f.x);
    return mix(top, bottom, f.y) * params.env_color.w;
}

// Index of the first of `count` CDF values at `base` that exceeds u (the last one is 1).
fn cdf_search(base: u32, count: u32, u: f32) -> u32 {
    var lo = 0u;
    var hi = count - 1u;
    while (lo < hi) {
        loop_iterations = loop_iterations + 1u;
        let mid = (lo + hi) / 2u;
        if (env_cdf[base + mid] > u) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    return lo;
}

fn cdf_at(base: u32, i: u32) -> vec2<f32> {
    let lo = select(0.0, env_cdf[base + i - 1u], i > 0u);
    return vec2<f32>(lo, env_cdf[base + i]);
}

// Density of the sampling distribution over (u, t) in cell (cx, cy).
fn env_cell_pdf(cx: u32, cy: u32) -> f32 {
    let dw = params.env_dist_w;
    let dh = params.env_dist_h;
    let m = cdf_at(0u, cy);
    let c = cdf_at(dh + cy * dw, cx);
    return (m.y - m.x) * (c.y - c.x) * f32(dw) * f32(dh);
}

// Solid-angle pdf of sampling direction d by `env_sample` (without the pick probability).
fn env_pdf(d: vec3<f32>) -> f32 {
    let l = env_rotate(d);
    let sin_t = sqrt(max(0.0, 1.0 - l.y * l.y));
    if (sin_t <= 0.0) {
        return 0.0;
    }
    let u = 0.5 + atan2(l.z, l.x) * (0.5 * INV_PI);
    let t = acos(clamp(l.y, -1.0, 1.0)) * INV_PI;
    let cx = min(u32(max(u, 0.0) * f32(params.env_dist_w)), params.env_dist_w - 1u);
    let cy = min(u32(max(t, 0.0) * f32(params.env_dist_h)), params.env_dist_h - 1u);
    return env_cell_pdf(cx, cy) / (2.0 * PI * PI * sin_t);
}

// A direction drawn from the environment's luminance × sin θ distribution; w = its pdf.
fn env_sample(r0: f32, r1: f32) -> vec4<f32> {
    let dw = params.env_dist_w;
    let dh = params.env_dist_h;
    let cy = cdf_search(0u, dh, r0);
    let m = cdf_at(0u, cy);
    let fy = clamp((r0 - m.x) / max(m.y - m.x, 1e-30), 0.0, 0.99999994);
    let base = dh + cy * dw;
    let cx = cdf_search(base, dw, r1);
    let c = cdf_at(base, cx);
    let fx = clamp((r1 - c.x) / max(c.y - c.x, 1e-30), 0.0, 0.99999994);
    let u = (f32(cx) + fx) / f32(dw);
    let t = (f32(cy) + fy) / f32(dh);
    let theta = PI * t;
    let phi = 2.0 * PI * (u - 0.5);
    let sin_t = sin(theta);
    let l = vec3<f32>(sin_t * cos(phi), cos(theta), sin_t * sin(phi));
    // Undo the rotation (R_y(rotation) transposed).
    let d = vec3<f32>(
        params.env_rot_cos * l.x - params.env_rot_sin * l.z,
        l.y,
        params.env_rot_sin * l.x + params.env_rot_cos * l.z,
    );
    var pdf = 0.0;
    if (sin_t > 0.0) {
        pdf = env_cell_pdf(cx, cy) / (2.0 * PI * PI * sin_t);
    }
    return vec4<f32>(d, pdf);
}

// ---------------------------------------------------------------------------------------
// Lights.

// Index of the emitter whose CDF interval holds u (binary search; the last CDF is 1).
fn pick_emitter(u: f32) -> u32 {
    var lo = 0u;
    var hi = params.emitter_count - 1u;
    while (lo < hi) {
        loop_iterations = loop_iterations + 1u;
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

// Emitted radiance of material m on triangle idx at barycentrics bary.
fn emitted(m: Material, idx: vec4<u32>, bary: vec3<f32>) -> vec3<f32> {
    var e = m.emission.xyz;
    if (TEXTURES && m.emissive_tex.info.z != 0u) {
        e = e * tex_at(m.emissive_tex, idx, bary, true).xyz;
    }
    return e;
}

// A shadow ray and what it carries: `value` is added when nothing blocks the ray in
// (0, tmax). Without a ray (`traced` false) the value is 0 and is added as it is.
struct Shadow {
    orig: vec3<f32>,
    tmax: f32,
    dir: vec3<f32>,
    traced: bool,
    value: vec3<f32>,
}

fn no_shadow() -> Shadow {
    var sd: Shadow;
    sd.orig = vec3<f32>(0.0);
    sd.tmax = 0.0;
    sd.dir = vec3<f32>(0.0, 0.0, 1.0);
    sd.traced = false;
    sd.value = vec3<f32>(0.0);
    return sd;
}

fn shadow_ray(orig: vec3<f32>, dir: vec3<f32>, tmax: f32, value: vec3<f32>) -> Shadow {
    var sd: Shadow;
    sd.orig = orig;
    sd.tmax = tmax;
    sd.dir = dir;
    sd.traced = true;
    sd.value = value;
    return sd;
}

// The shading point as the light sampling functions need it.
struct Shade {
    p: vec3<f32>,
    ng: vec3<f32>,
    frame: mat3x3<f32>,
    wo: vec3<f32>,
}

// Next-event estimation of one light sample (an emissive triangle or the environment),
// as the shadow ray that decides it. `mis` is false at the last path vertex, where no
// BSDF ray follows, so the light sample takes full weight.
fn light_sample(key: u32, dim: u32, sh: Shade, s: Surf, mis: bool) -> Shadow {
    let env_p = params.env_pick;
    if (params.emitter_count == 0u && env_p <= 0.0) {
        return no_shadow();
    }
    let origin = offset_ray(sh.p, sh.ng);
    let r = rand(key, dim + DIM_LIGHT_PICK);
    let r1 = rand(key, dim + DIM_LIGHT_POINT);
    let r2 = rand(key, dim + DIM_LIGHT_POINT + 1u);
    if (ENV_IMAGE && r < env_p) {
        let smp = env_sample(r1, r2);
        let wi = smp.xyz;
        let pdf_light = env_p * smp.w;
        if (pdf_light <= 0.0 || dot(sh.ng, wi) <= 0.0) {
            return no_shadow();
        }
        let ev = bsdf_eval(s, sh.wo, to_local(sh.frame, wi));
        if (ev.pdf <= 0.0) {
            return no_shadow();
        }
        var weight = 1.0;
        if (mis) {
            weight = power_heuristic(pdf_light, ev.pdf);
        }
        return shadow_ray(origin, wi, F32_MAX, ev.f_cos * env_radiance(wi) * (weight / pdf_light));
    }
    if (params.emitter_count == 0u) {
        return no_shadow();
    }
    let tri_p = 1.0 - env_p;
    let ru = min((r - env_p) / tri_p, 0.99999994);
    let tri = emitters[pick_emitter(ru)].triangle;
    let v0 = tri_v0[tri];
    let e1 = tri_e1[tri];
    let e2 = tri_e2[tri].xyz;
    let su = sqrt(r1);
    let bu = su * (1.0 - r2);
    let bv = su * r2;
    let x = v0.xyz + e1.xyz * bu + e2 * bv;
    let nl_raw = cross(e1.xyz, e2);
    let nl_len = length(nl_raw);
    if (nl_len <= 0.0) {
        return no_shadow();
    }
    let nl = nl_raw / nl_len;
    let to_light = x - origin;
    let dist2 = dot(to_light, to_light);
    if (dist2 <= 0.0) {
        return no_shadow();
    }
    let dist = sqrt(dist2);
    let wi = to_light / dist;
    // Positive when p sees the emitter's front face.
    let cos_front = -dot(nl, wi);
    let idx = tri_idx[tri];
    let m = materials[idx.w];
    let cos_l = select(cos_front, abs(cos_front), m.emission.w > 0.0);
    if (dot(sh.ng, wi) <= 0.0 || cos_l <= 1e-7) {
        return no_shadow();
    }
    var coverage = 1.0;
    let mode = select(0u, bitcast<u32>(v0.w) & TRI_ALPHA, ALPHA);
    if (mode == ALPHA_MASK) {
        coverage = select(0.0, 1.0, surface_alpha(tri, bu, bv) >= m.params.w);
    } else if (mode == ALPHA_BLEND) {
        coverage = surface_alpha(tri, bu, bv);
    }
    if (coverage <= 0.0) {
        return no_shadow();
    }
    let ev = bsdf_eval(s, sh.wo, to_local(sh.frame, wi));
    if (ev.pdf <= 0.0) {
        return no_shadow();
    }
    let pdf_light = tri_p * e1.w * dist2 / cos_l;
    var weight = 1.0;
    if (mis) {
        weight = power_heuristic(pdf_light, ev.pdf);
    }
    let radiance = emitted(m, idx, vec3<f32>(1.0 - bu - bv, bu, bv)) * coverage;
    // Stop just short of the emitter so its own surface does not count as a blocker.
    return shadow_ray(origin, wi, dist * 0.9999, ev.f_cos * radiance * (weight / pdf_light));
}

// The light punctual light `i` sends to the shading point, as its shadow ray.
fn punctual_light(i: u32, sh: Shade, s: Surf) -> Shadow {
    let origin = offset_ray(sh.p, sh.ng);
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
            return no_shadow();
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
    if (dot(sh.ng, wi) <= 0.0 || luminance_max(irradiance) <= 0.0) {
        return no_shadow();
    }
    let ev = bsdf_eval(s, sh.wo, to_local(sh.frame, wi));
    if (luminance_max(ev.f_cos) <= 0.0) {
        return no_shadow();
    }
    return shadow_ray(origin, wi, tmax, ev.f_cos * irradiance);
}

// ---------------------------------------------------------------------------------------
// Path vertices and the sampling loop.

fn decode_oct(o: vec2<f32>) -> vec3<f32> {
    var n = vec3<f32>(o.x, o.y, 1.0 - abs(o.x) - abs(o.y));
    if (n.z < 0.0) {
        let x = (1.0 - abs(n.y)) * select(-1.0, 1.0, n.x >= 0.0);
        let y = (1.0 - abs(n.x)) * select(-1.0, 1.0, n.y >= 0.0);
        n = vec3<f32>(x, y, n.z);
    }
    return n;
}

fn vertex_normal(i: u32) -> vec3<f32> {
    return decode_oct(unpack2x16snorm(vert_frame[i].x));
}

fn vertex_tangent(i: u32) -> vec3<f32> {
    let w = vert_frame[i].y;
    let x = f32(bitcast<i32>(w << 16u) >> 16u) * (1.0 / 32767.0);
    let y = f32(bitcast<i32>(w << 1u) >> 17u) * (1.0 / 16383.0);
    return decode_oct(vec2<f32>(x, y));
}

struct Ray {
    orig: vec3<f32>,
    dir: vec3<f32>,
}

// The camera ray of one sample of pixel (px, py).
fn camera_ray(px: u32, py: u32, key: u32) -> Ray {
    let size = vec2<f32>(params.image_size);
    let sx = 2.0 * (f32(px) + rand(key, 0u)) / size.x - 1.0;
    let sy = 1.0 - 2.0 * (f32(py) + rand(key, 1u)) / size.y;
    var ray: Ray;
    ray.orig = params.cam_origin.xyz;
    if (params.cam_kind == 1u) {
        ray.orig = ray.orig + params.cam_right.xyz * sx + params.cam_up.xyz * sy;
        ray.dir = params.cam_forward.xyz;
    } else {
        ray.dir = normalize(params.cam_forward.xyz + params.cam_right.xyz * sx + params.cam_up.xyz * sy);
    }
    return ray;
}

// One path vertex, as `main` keeps it while the vertex's shadow ray is traced.
struct Vertex {
    sh: Shade,
    s: Surf,
    // The light sample's shadow ray.
    light: Shadow,
    // Whether the path goes on, and its next segment.
    bounce: bool,
    next_pdf: f32,
    next_orig: vec3<f32>,
    next_dir: vec3<f32>,
    next_throughput: vec3<f32>,
    // How much the next segment's ray cone spreads more than this one's (radians).
    next_spread: f32,
}

// The vertex where the path ray (`dir`, at `depth`) hit: adds what it emits towards the
// path to `result`, samples a light and the BSDF.
fn shade(hit: Hit, dir: vec3<f32>, key: u32, depth: u32, throughput: vec3<f32>, prev_bsdf_pdf: f32, cone_width: f32, result: ptr<function, vec3<f32>>) -> Vertex {
    let tri = hit.triangle;
    let v0 = tri_v0[tri];
    let e1 = tri_e1[tri];
    let e2 = tri_e2[tri].xyz;
    let flags = bitcast<u32>(v0.w);
    let idx = tri_idx[tri];
    let m = materials[idx.w];
    let bary = vec3<f32>(1.0 - hit.u - hit.v, hit.u, hit.v);
    let p = v0.xyz + e1.xyz * hit.u + e2 * hit.v;
    let ng_raw = normalize(cross(e1.xyz, e2));
    let cos_hit = dot(ng_raw, dir);
    let back = cos_hit > 0.0;
    let ng = select(ng_raw, -ng_raw, back);
    let wo = -dir;
    // For the material's texture lookups, when it has any: the vertices' texture
    // coordinates; the footprint, the ray cone's width at the hit stretched by the
    // incidence angle, per unit of the triangle's area (both areas doubled; `tex_lookup`
    // adds the texel area), as log2 of a length; and three random numbers from a
    // dimension of their own: (seed, frame, pixel, sample, 0x50000000 + depth).
    var uvs: TriUv;
    var lod_base = 0.0;
    var tex_r = vec3<f32>(0.0);
    if (TEXTURES && (m.base_tex.info.z | m.mr_tex.info.z | m.normal_tex.info.z) != 0u) {
        uvs = TriUv(vert_uv[idx.x], vert_uv[idx.y], vert_uv[idx.z]);
        lod_base = log2(cone_width / max(abs(cos_hit), 1e-6)) - 0.5 * log2(length(cross(e1.xyz, e2)));
        let tex_bits = pcg(key ^ pcg((0x50000000u + depth) ^ 0x9e3779b9u));
        tex_r = vec3<f32>(
            f32(tex_bits & 0xffffu) * (1.0 / 65536.0),
            f32(tex_bits >> 16u) * (1.0 / 65536.0),
            f32(pcg(tex_bits) >> 8u) * (1.0 / 16777216.0),
        );
    }

    // Shading normal: interpolated vertex normals (face normal for flat primitives),
    // perturbed by the normal map, on the viewer's side of the surface.
    var ns = ng;
    if ((flags & TRI_FLAT) == 0u) {
        let n0 = vertex_normal(idx.x) * bary.x + vertex_normal(idx.y) * bary.y + vertex_normal(idx.z) * bary.z;
        let n0_len = length(n0);
        if (n0_len > 1e-12) {
            var n = n0 / n0_len;
            if ((flags & TRI_TANGENTS) != 0u && TEXTURES && m.normal_tex.info.z != 0u) {
                let t_raw = vertex_tangent(idx.x) * bary.x + vertex_tangent(idx.y) * bary.y + vertex_tangent(idx.z) * bary.z;
                let t_orth = t_raw - n * dot(n, t_raw);
                let t_len = length(t_orth);
                if (t_len > 1e-12) {
                    let t = t_orth / t_len;
                    let sign = select(1.0, -1.0, (vert_frame[idx.x].y >> 31u) != 0u);
                    let b = cross(n, t) * sign;
                    var tn = tex_lookup(m.normal_tex, uvs, bary, false, lod_base, tex_r).xyz * 2.0 - vec3<f32>(1.0);
                    tn = vec3<f32>(tn.xy * m.params.z, tn.z);
                    let mapped = t * tn.x + b * tn.y + n * tn.z;
                    let mapped_len = length(mapped);
                    if (mapped_len > 1e-12) {
                        n = mapped / mapped_len;
                    }
                }
            }
            ns = select(n, -n, dot(n, ng) < 0.0);
        }
    }
    if (dot(ns, wo) <= 1e-4) {
        ns = ng;
    }

    // Emission (front face, or both for double-sided materials). Seen from the camera
    // it counts fully; reached by a BSDF sample it is weighted against the light
    // sample taken at the previous vertex.
    let emits = m.emission.w > 0.0 || !back;
    if (emits && luminance_max(m.emission.xyz) > 0.0) {
        var weight = 1.0;
        let pdf_area = e1.w;
        if (depth > 0u && pdf_area > 0.0) {
            let pdf_light = (1.0 - params.env_pick) * pdf_area * hit.t * hit.t / max(abs(cos_hit), 1e-7);
            weight = power_heuristic(prev_bsdf_pdf, pdf_light);
        }
        *result = *result + throughput * emitted(m, idx, bary) * weight;
    }

    var base = m.base_color.xyz;
    if (TEXTURES && m.base_tex.info.z != 0u) {
        base = base * tex_lookup(m.base_tex, uvs, bary, true, lod_base, tex_r).xyz;
    }
    var metallic = m.params.x;
    var roughness = m.params.y;
    if (TEXTURES && m.mr_tex.info.z != 0u) {
        let mr = tex_lookup(m.mr_tex, uvs, bary, false, lod_base, tex_r);
        roughness = roughness * mr.y;
        metallic = metallic * mr.z;
    }
    var s: Surf;
    s.base = clamp(base, vec3<f32>(0.0), vec3<f32>(1.0));
    s.metallic = clamp(metallic, 0.0, 1.0);
    s.alpha = max(roughness * roughness, MIN_ALPHA);
    let frame = basis(ns);
    var sh: Shade;
    sh.p = p;
    sh.ng = ng;
    sh.frame = frame;
    sh.wo = to_local(frame, wo);
    prepare_surf(&s, sh.wo.z);
    var v: Vertex;
    v.s = s;
    v.sh = sh;

    let dim = 2u + depth * DIMS_PER_BOUNCE;
    let last = depth >= params.max_bounces;
    v.light = light_sample(key, dim, v.sh, v.s, !last);
    v.bounce = false;
    if (last) {
        return v;
    }
    let r_lobe = rand(key, dim + DIM_LOBE);
    let wi_local = bsdf_sample(v.s, v.sh.wo, r_lobe, rand(key, dim + DIM_BSDF), rand(key, dim + DIM_BSDF + 1u));
    // The ray cone widens by the sampled lobe: roughness × π/8 for the specular lobe,
    // π/8 for the diffuse one (as rough as it gets).
    v.next_spread = (PI / 8.0) * select(1.0, sqrt(v.s.alpha), r_lobe < v.s.p_spec);
    if (wi_local.z <= 0.0) {
        return v;
    }
    let wi = normalize(frame * wi_local);
    if (dot(ng, wi) <= 0.0) {
        return v;
    }
    let ev = bsdf_eval(v.s, v.sh.wo, wi_local);
    if (ev.pdf <= 0.0) {
        return v;
    }
    var next = throughput * ev.f_cos / ev.pdf;
    if (luminance_max(next) <= 0.0) {
        return v;
    }
    if (depth + 1u >= ROULETTE_DEPTH) {
        let survive = min(luminance_max(next), 0.95);
        if (rand(key, dim + DIM_ROULETTE) >= survive) {
            return v;
        }
        next = next / survive;
    }
    v.bounce = true;
    v.next_pdf = ev.pdf;
    v.next_orig = offset_ray(p, ng);
    v.next_dir = wi;
    v.next_throughput = next;
    return v;
}

// Loop iterations this invocation has run in the current dispatch: every loop body adds
// one. Mesa's llvmpipe (lavapipe) silently ends every loop of an invocation once 65535
// loop iterations have run in total (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS), which would
// drop path segments without an error; the host reads this count back and refuses a
// render that came near that limit. It never changes a pixel value.
var<private> loop_iterations: u32;

// One sample's path while it is traced: the ray of its next segment and what it carries.
struct Path {
    key: u32,
    depth: u32,
    orig: vec3<f32>,
    prev_bsdf_pdf: f32,
    dir: vec3<f32>,
    throughput: vec3<f32>,
    result: vec3<f32>,
    // The ray cone of the next segment: its width at the origin and its spread angle
    // (Akenine-Möller et al., "Texture Level of Detail Strategies for Real-Time Ray
    // Tracing"), which picks the mip levels of the textures it hits.
    cone_width: f32,
    cone_spread: f32,
}

// Sample `sample` of pixel (px, py) before its first segment: the camera ray.
fn path_start(px: u32, py: u32, pixel_key: u32, sample: u32) -> Path {
    var path: Path;
    path.key = sample_key_of(pixel_key, sample);
    let ray = camera_ray(px, py, path.key);
    path.orig = ray.orig;
    path.dir = ray.dir;
    path.throughput = vec3<f32>(1.0);
    path.result = vec3<f32>(0.0);
    path.prev_bsdf_pdf = 0.0;
    path.depth = 0u;
    // A camera ray's cone: a quarter of a pixel of the image plane wide (orthographic, in
    // world units) or a quarter of a pixel's angle (perspective, `cam_up` at distance 1).
    // A quarter, not a whole pixel: the samples of a pixel are already spread over it,
    // and a whole pixel's mip level blurred textures visibly against Cycles (blender-pbr's
    // ꟻLIP 0.065 against 0.058 at 64 spp).
    let pixel = 0.5 * length(params.cam_up.xyz) / f32(params.image_size.y);
    path.cone_width = select(0.0, pixel, params.cam_kind == 1u);
    path.cone_spread = select(pixel, 0.0, params.cam_kind == 1u);
    return path;
}

// One segment of a path: trace its ray; on a hit, shade the vertex, then trace one shadow
// ray (the light sample's or one punctual light's) and set up the BSDF sample's segment.
// Two traversal call sites in all. Returns whether the path ended.
fn path_step(path: ptr<function, Path>) -> bool {
    let key = (*path).key;
    let depth = (*path).depth;
    let dir = (*path).dir;
    let throughput = (*path).throughput;
    let hit = trace((*path).orig, dir, F32_MAX, false, key, depth);
    if (hit.triangle == NO_HIT) {
        // The background. Reached by a BSDF sample it is weighted against the
        // environment light sample taken at the previous vertex.
        var weight = 1.0;
        if (ENV_IMAGE && depth > 0u && params.env_pick > 0.0) {
            weight = power_heuristic((*path).prev_bsdf_pdf, params.env_pick * env_pdf(dir));
        }
        (*path).result = (*path).result + throughput * env_radiance(dir) * weight;
        return true;
    }
    var result = (*path).result;
    let cone_width = (*path).cone_width + (*path).cone_spread * hit.t;
    let v = shade(hit, dir, key, depth, throughput, (*path).prev_bsdf_pdf, cone_width, &result);
    // Next-event estimation traces one shadow ray per vertex. The candidates are the
    // light sample (candidate 0: an emitter or the environment) and each punctual light;
    // one is picked with probability proportional to the luminance of its unshadowed
    // contribution, by one random number rescaled from candidate to candidate (a
    // single-sample weighted reservoir), and its contribution is divided by that
    // probability. With one candidate the probability is exactly 1.
    let punctual_lights = select(0u, params.light_count, PUNCTUAL);
    var u = rand(key, 2u + depth * DIMS_PER_BOUNCE + DIM_SHADOW_PICK);
    var total = 0.0;
    var chosen = no_shadow();
    var chosen_weight = 0.0;
    for (var light = 0u; light <= punctual_lights; light = light + 1u) {
        loop_iterations = loop_iterations + 1u;
        var sd = v.light;
        if (light > 0u) {
            sd = punctual_light(light - 1u, v.sh, v.s);
        }
        let w = select(0.0, luminance(sd.value), sd.traced);
        if (w > 0.0) {
            total = total + w;
            let p = w / total;
            if (u < p) {
                chosen = sd;
                chosen_weight = w;
                u = u / p;
            } else {
                u = (u - p) / (1.0 - p);
            }
        }
    }
    if (chosen.traced) {
        let blocked = trace(chosen.orig, chosen.dir, chosen.tmax, true, key, depth).triangle != NO_HIT;
        if (!blocked) {
            result = result + throughput * (chosen.value * (total / chosen_weight));
        }
    }
    (*path).result = result;
    if (!v.bounce) {
        return true;
    }
    (*path).throughput = v.next_throughput;
    (*path).prev_bsdf_pdf = v.next_pdf;
    (*path).depth = depth + 1u;
    (*path).orig = v.next_orig;
    (*path).dir = v.next_dir;
    (*path).cone_width = cone_width;
    (*path).cone_spread = (*path).cone_spread + v.next_spread;
    return false;
}

// What an ended path adds to its pixel: a non-finite sample counts as black, the same
// way on every run.
fn path_value(path: Path) -> vec3<f32> {
    return select(vec3<f32>(0.0), path.result, is_finite3(path.result));
}

// One sample of pixel (px, py), its path one segment per turn.
fn sample_value(px: u32, py: u32, sample: u32) -> vec3<f32> {
    var path = path_start(px, py, pixel_key(px, py), sample);
    loop {
        loop_iterations = loop_iterations + 1u;
        if (path_step(&path)) {
            break;
        }
    }
    return path_value(path);
}

// The running sum of pixel `index` of the band and the most loop iterations it has run
// in one invocation (see `loop_iterations`), as earlier dispatches left them.
fn sum_so_far(index: u32) -> vec4<f32> {
    if (params.accumulate != 0u) {
        return accum[index];
    }
    return vec4<f32>(0.0);
}

// The frame pixel of entry `index` of a listed band (`pixel_list`).
fn listed_pixel(index: u32) -> vec2<u32> {
    let p = pixel_at[index];
    return vec2<u32>(p & 0xffffu, p >> 16u);
}

// Pixel per invocation, for CPU adapters (lavapipe): samples `sample_start ..` of one
// pixel of the band, added in sample order to its running sum; a few hundred invocations
// keep every core busy, and no per-sample values are stored. Each workgroup renders one
// 8×8 block of the band, in a scattered order (block_stride, render.rs) so that every
// contiguous run of workgroups, which llvmpipe gives to one thread, covers the whole band.
// With `pixel_list`, workgroup b renders entries 64·((b · block_stride) mod groups) .. of
// the list instead (the renderer lists a rect's pixels 8×8 block by block).
//
// Without REGENERATE each sample's path runs to its end before the next sample starts.
// With it the samples run as one loop of path segments with path regeneration: when a
// lane's path ends, the lane starts its pixel's next sample in the next turn instead of
// idling until the longest path of its SIMD group ends (llvmpipe runs 8 or 16 invocations
// as the lanes of one vector, and a loop turns while any lane is in it). That pays where
// paths are long and of very different lengths (closed rooms lit by emitters); where most
// paths are short, a lane's new camera ray is traced in the same loop as other lanes'
// incoherent bounces, and the loop turns for the slowest of both. Every sample is computed
// with the operations of `sample_value` and added in sample order either way, so the bytes
// are the same.
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var px: u32;
    var py: u32;
    var index: u32;
    if (params.pixel_list != 0u) {
        let groups = (params.tile_size.x + 63u) / 64u;
        index = ((wg.x * params.block_stride) % groups) * 64u + lid.y * 8u + lid.x;
        if (index >= params.tile_size.x) {
            return;
        }
        let p = listed_pixel(index);
        px = p.x;
        py = p.y;
    } else {
        let cols = (params.tile_size.x + 7u) / 8u;
        let blocks = cols * ((params.tile_size.y + 7u) / 8u);
        let block = ((wg.y * cols + wg.x) * params.block_stride) % blocks;
        let gid = vec2<u32>((block % cols) * 8u + lid.x, (block / cols) * 8u + lid.y);
        if (gid.x >= params.tile_size.x || gid.y >= params.tile_size.y) {
            return;
        }
        px = params.tile_origin.x + gid.x;
        py = params.tile_origin.y + gid.y;
        index = gid.y * params.tile_size.x + gid.x;
    }
    let prev = sum_so_far(index);
    var sum = prev.xyz;
    loop_iterations = 0u;
    if (!REGENERATE) {
        for (var i = 0u; i < params.sample_count; i = i + 1u) {
            loop_iterations = loop_iterations + 1u;
            sum = sum + sample_value(px, py, params.sample_start + i);
        }
    } else if (params.sample_count > 0u) {
        let pk = pixel_key(px, py);
        var i = 0u;
        var path = path_start(px, py, pk, params.sample_start);
        loop {
            loop_iterations = loop_iterations + 1u;
            if (path_step(&path)) {
                sum = sum + path_value(path);
                i = i + 1u;
                if (i >= params.sample_count) {
                    break;
                }
                path = path_start(px, py, pk, params.sample_start + i);
            }
        }
    }
    accum[index] = vec4<f32>(sum, bitcast<f32>(max(bitcast<u32>(prev.w), loop_iterations)));
}

// Sample per invocation, for GPUs, which need far more threads in flight than a tile has
// pixels: invocation (pixel i of the band, sample j) stores sample `sample_start + j` of
// pixel i in `samples[j × pixels + i]`; `gather` then adds them to each pixel's running
// sum in sample order, with the same additions as `main`, so the bytes are the same.
@compute @workgroup_size(64, 1, 1)
fn spread(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = params.tile_size.x * params.tile_size.y;
    if (gid.x >= pixels || gid.y >= params.sample_count) {
        return;
    }
    var px = params.tile_origin.x + gid.x % params.tile_size.x;
    var py = params.tile_origin.y + gid.x / params.tile_size.x;
    if (params.pixel_list != 0u) {
        let p = listed_pixel(gid.x);
        px = p.x;
        py = p.y;
    }
    loop_iterations = 0u;
    let value = sample_value(px, py, params.sample_start + gid.y);
    samples[gid.y * pixels + gid.x] = vec4<f32>(value, bitcast<f32>(loop_iterations));
}

@compute @workgroup_size(64, 1, 1)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = params.tile_size.x * params.tile_size.y;
    if (gid.x >= pixels) {
        return;
    }
    let prev = sum_so_far(gid.x);
    var sum = prev.xyz;
    var most = bitcast<u32>(prev.w);
    for (var j = 0u; j < params.sample_count; j = j + 1u) {
        let value = samples[j * pixels + gid.x];
        sum = sum + value.xyz;
        most = max(most, bitcast<u32>(value.w));
    }
    accum[gid.x] = vec4<f32>(sum, bitcast<f32>(most));
}
