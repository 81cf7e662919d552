//! Tessera's renderer: loads glTF 2.0 scenes and path-traces tiles on any wgpu adapter.
//!
//! The pipeline is [`Scene::load`] (untrusted glTF in, the decoded scene and its frame-0
//! instance out, with every unsupported feature named in [`Scene::warnings`]) →
//! [`Gpu::new`] (adapter, device and the compiled path-tracing pipeline) →
//! [`SceneRenderer::new`] (materials, textures and environment uploaded once, geometry
//! per frame) → [`tessera_protocol::TileRenderer::render_tile`] (canonical tile bytes).
//! [`Scene::inspect`] is the cheap check a service runs before accepting a scene: the
//! same structural checks, scene budget ([`SceneLimits`]), content hash, cameras and
//! file list as [`Scene::load`], without decoding images or vertex data.
//!
//! # Determinism rules
//! These are what verification relies on; every change to the renderer must keep them.
//! - Every random number is a pure function of (seed, frame, global pixel, sample index,
//!   dimension): `rand(key, dim)` with `key = hash(seed, frame, pixel, sample)`. Stochastic
//!   alpha (BLEND) hashes (key, path depth, the triangle's number in the BVH's leaf
//!   order, which the node encoding does not change); stochastic texture filtering hashes
//!   (key, dimension 0x50000000 + path depth).
//! - Nothing depends on workgroup layout, dispatch order, subgroups or atomics; there are
//!   no float atomics. A pixel's samples are summed in sample order in f32, and splitting
//!   the samples over dispatches, the rows over bands, or the samples over invocations
//!   ([`Parallelism`]: a pixel per invocation on CPUs, a sample per invocation on GPUs,
//!   whose stored values a second pass adds in order) changes nothing.
//! - BVH traversal tie-breaks are fixed: of a 4-wide node's children the ray hits, the
//!   nearest first, the lower slot on a tie; the BVH build is deterministic (binned SAH
//!   with fixed bin/axis/plane tie rules and sequential partitions, then a collapse into
//!   4-wide nodes that pulls up the largest-area child first, the lowest slot on a tie,
//!   with child boxes quantized outwards). Emitters are listed in the BVH's leaf order.
//! - Which workgroup or thread renders which pixels is free: on CPU adapters the 8×8
//!   blocks are handed out in a scattered order so that llvmpipe's static split of a
//!   dispatch between its threads gives each a fair share of the image; a task's
//!   neighbouring tiles are rendered as one rectangle and cut apart, and rects that make
//!   no one rectangle (a verifier's scattered 8×8 blocks) as one list of pixels in one
//!   dispatch ([`SceneRenderer::render_batch`]). None of this changes a byte.
//! - CPU-side sums (emitter power CDF, environment CDFs) are in f64 in a fixed order and
//!   rounded to f32 once; transforms are composed in f64 in a fixed order; MikkTSpace runs
//!   with libm maths (no platform `acos`).
//! - Textures are read only with `textureLoad` (integer texel fetch from `rgba8uint` /
//!   `rgba32float` arrays); wrapping, filtering, the mip level (from a ray cone carried by
//!   the path, not from derivatives) and sRGB decoding (exact 256-entry table) happen in
//!   the shader. Mip chains are built on the CPU with integer and f32 arithmetic in a
//!   fixed order. No hardware samplers, no derivatives.
//!
//! # Guarantees
//! - **Tile = crop, bit for bit.** By the rules above, a tile's bytes equal the same
//!   region of a full-frame render on the same adapter.
//! - **Canonical bytes**: linear RGBA, IEEE half floats (round to nearest even),
//!   little-endian, row-major, no header, `w × h × 8` bytes, alpha = 1. A pixel value is
//!   the f32 sum of its samples divided by the sample count; non-finite samples count as
//!   0, and finite values beyond the half range are clamped to ±65504.
//! - **Same code on every adapter**: one WGSL compute shader
//!   (`src/shaders/pathtrace.wgsl`), no hardware ray tracing, no optional features.
//!
//! # Materials (glTF 2.0 metallic-roughness, Appendix B, energy-corrected)
//! `mix(dielectric, metal, metallic)`: dielectric = a Lambertian base under a GGX specular
//! layer (ior 1.5, Schlick `F = 0.04 + 0.96 (1 − v·h)⁵`): `w(μo)·baseColor/π + s_d(μo)·F·D·V`;
//! metal = `s_m(μo)·(baseColor + (1 − baseColor)(1 − v·h)⁵)·D·V`. `D` is GGX with
//! `α = roughness²` (clamped to ≥ 0.001), `V` the height-correlated Smith visibility,
//! `μo = n·v`. Two corrections to Appendix B, both functions of the view direction only:
//! - **Multiple scattering** (Kulla & Conty 2017, applied as a lobe scale like Cycles'
//!   multiscatter GGX, i.e. Turquin 2019 with Kulla & Conty's Fresnel term): each GGX lobe
//!   is scaled by `s = 1 + F_ms (1 − E) / E`, `F_ms = F_ss E_avg / (1 − F_ss (1 − E_avg))`,
//!   `F_ss = F0 + (1 − F0)/21` (the cosine-weighted mean of Schlick's F), per channel for
//!   the metal. A white metal then reflects exactly what it receives (`s = 1/E`); coloured
//!   metals get the saturated inter-reflection of Kulla & Conty (one `F_ss` cancelled, as
//!   the scaled lobe already carries one Fresnel bounce).
//! - **Layering by albedo scaling**: the base is weighted by `w = 1 − s_d·E_d(μo)`, what the
//!   (compensated) specular layer leaves at the view direction, instead of Appendix B's
//!   `1 − F(v·h)` per light direction, which reflected up to 1.5× the incoming light at
//!   grazing views of smooth dielectrics. A white dielectric now reflects exactly 1 at
//!   every roughness and view. The one-sided form (view direction only) is Cycles' choice
//!   for its Principled BSDF; the reciprocal form `(1 − E(μo))(1 − E(μi)) / (1 − E_avg)`
//!   would also conserve energy but changes the base's angular shape against Cycles, and
//!   a unidirectional path tracer does not need reciprocity.
//!
//! `E(μ, r)` (GGX albedo, Fresnel 1), `E_d(μ, r)` (Schlick F0 = 0.04) and `E_avg(r)` are
//! 32×32 / 32-entry tables (axes `√μ` and roughness) committed as constants in
//! `src/energy.rs`, computed by a deterministic f64 quadrature that uses only `+ − × ÷ sqrt`
//! (a test regenerates them bit for bit and checks them against an independent
//! quadrature). They are uploaded after the texture tables in the same storage buffer, as
//! 16-bit fixed-point pairs (`E` and `E_d` of a node in one word, `E_avg` of a row and the
//! next in one word: half the storage reads; decoded by an exact multiply by 2⁻¹⁶), and interpolated bilinearly by hand; the shader source quotes their BLAKE3, so they are part
//! of the determinism class through the shader hash. Sampling: a lobe is chosen with
//! probability proportional to the lobes' albedos at `μo` from the tables (specular
//! `(1−m)·s_d E_d + m·lum(s_m E_F)` against diffuse `(1−m)·w·lum(base)`, with
//! `E_F = F0 E + (1 − F0) E5`); the specular lobe samples GGX visible normals (Dupuy &
//! Benyoub 2023), the diffuse lobe a cosine. The compensation scales whole lobes, so the
//! lobes' pdfs are unchanged: the path weight always uses the full mixture pdf
//! `p_spec·pdf_VNDF + (1 − p_spec)·cos/π`, and light samples are combined with BSDF
//! samples by the power heuristic.
//! Shading normals: interpolated vertex normals, perturbed by the normal map; every
//! light and BSDF direction must also lie above the *geometric* normal (no light leaks).
//! Reflection only (no transmission); both faces of every triangle are shaded.
//!
//! Textures: baseColorTexture and emissiveTexture are sRGB (decoded per texel with an
//! exact 256-entry table, then filtered), metallicRoughnessTexture (B = metallic,
//! G = roughness) and normalTexture (tangent space × `scale` on x, y) are linear.
//! occlusionTexture is ignored without a warning: a path tracer computes occlusion.
//! Tangents come from TANGENT (w = bitangent sign), else MikkTSpace (`bevy_mikktspace`)
//! on the normal texture's UV set. Each textureInfo's `texCoord` (TEXCOORD_0 or
//! TEXCOORD_1) and KHR_texture_transform (offset, rotation, scale, texCoord override;
//! `uv' = T·R·S·uv`) apply. UV (0, 0) is the image's top-left corner. Samplers: wrapS /
//! wrapT REPEAT, CLAMP_TO_EDGE, MIRRORED_REPEAT; magFilter NEAREST gives nearest-texel
//! lookups, anything else bilinear between texel centres. minFilter NEAREST or LINEAR
//! reads the image alone; unset or a `*_MIPMAP_*` mode adds a mip chain (2×2 box, colour
//! averaged as light: `texture::build_mips`), whose level a ray cone picks at each path
//! vertex (Akenine-Möller et al. 2019: a quarter of a pixel's angle from the camera, as
//! a pixel's samples already cover the pixel, widened by π/8 × roughness at each bounce,
//! π/8 for a diffuse one). The base colour,
//! metallic-roughness and normal textures of a shading point are read by stochastic
//! texture filtering (Pharr et al. 2024, "Filtering after shading with stochastic texture
//! filtering"): one texel per lookup, the level picked between floor(λ) and floor(λ) + 1
//! and the texel within the bilinear footprint with their trilinear weights, so the
//! samples of a pixel average to the trilinear lookup; emissive textures and alpha read
//! the image alone, bilinearly, exactly. Images are PNG or JPEG,
//! decoded to 8-bit RGBA (16-bit PNGs are reduced) under `max_texture_pixels` and
//! `max_texture_bytes` (charged from the headers before decoding), and
//! shelf-packed into `rgba8uint` array layers of one shape: the width and height (each
//! at most 4096, or the largest image side) that take the fewest texels in all, so small
//! scenes get one small page and 3072 × 2048 images (2048² with their mip chains) fill
//! 3072 × 4096 pages without a gap.
//!
//! Alpha: `alpha = baseColorFactor.a × baseColorTexture.a`. MASK: where alpha < alphaCutoff
//! the surface does not exist for any ray (camera, bounce, shadow): traversal evaluates
//! alpha for triangles flagged as masked only, so opaque triangles pay nothing. BLEND:
//! stochastic transparency: a ray passes through with probability 1 − alpha, decided by
//! a hash of (sample key, path depth, triangle index), so renders stay deterministic;
//! light samples on a blended emitter are weighted by its alpha. OPAQUE ignores alpha.
//!
//! # Lights and units (as Blender imports glTF)
//! Emissive triangles: radiance = emissiveFactor × KHR_materials_emissive_strength ×
//! emissiveTexture (evaluated at the hit or sampled point; Blender emission strength 1 =
//! radiance 1). Only the front face emits (counter-clockwise after the node transform)
//! unless the material is `doubleSided`. The emitter pick probability is proportional to
//! luminance(emissive factors) × area (× 2 when double-sided), summed in f64.
//!
//! KHR_lights_punctual intensities are photometric and are divided by 683 lm/W, what
//! Blender's glTF importer does in its default lighting mode (`PBR_WATTS_TO_LUMENS`):
//! a point or spot light of `I` cd is a radiant intensity of `I/683` W/sr (Blender power
//! `4π·I/683` W), so it gives irradiance `c·I/683/d²` on a surface facing it at distance
//! `d`; a directional light of `E` lux gives `c·E/683` W/m² (Blender sun strength `E/683`).
//! A 683 cd point light 1 m above a white Lambertian surface thus gives radiance 1/π.
//! The glTF `range` window `clamp(1 − (d/range)⁴, 0, 1)²` applies when set (Blender
//! ignores range). Spot cones: Blender imports `spot_size = 2 × outerConeAngle` and
//! `spot_blend = 1 − innerConeAngle / outerConeAngle`; this renderer uses glTF's own
//! smooth falloff `clamp(cos θ · s + o, 0, 1)²` with `s = 1/max(0.001, cos inner − cos
//! outer)`, `o = −cos outer · s`, which has the same cone edge but a different blend curve
//! than Cycles' smoothstep. Punctual lights are deltas: next-event estimation only.
//! Each path vertex traces one shadow ray, as Cycles does: its candidates are the light
//! sample (an emitter or the environment, above) and every punctual light; one is picked
//! with probability proportional to the luminance of its unshadowed contribution and its
//! light divided by that probability (a scene with one candidate traces it with
//! probability 1). The BSDF side's power heuristic keeps the light sample's own pdf, so
//! the weights still sum to 1 and the estimate stays unbiased.
//!
//! # Background / environment
//! `scenes[s].extras.tessera_environment = {"color": [r, g, b], "strength": s, "image":
//! "uri.hdr|.exr", "rotation": degrees}` (defaults: black, 1, none, 0). Radiance =
//! strength × (bilinear image texel, or colour). The image URI follows the loader's URI
//! rules (relative inside the scene folder, or `data:`) and is hashed into the content
//! hash after the glTF images. Mapping = Blender's Environment Texture with its default
//! vector (Cycles `direction_to_equirectangular`), with Blender's (x, y, z) = glTF's
//! (x, −z, y): the direction `d` is turned by `rotation` about +Y (`R_y(rotation)·d`, i.e.
//! Blender's Mapping node, type Point, rotation Z = `rotation`), then `u = 0.5 +
//! atan2(d.z, d.x)/2π` (columns left to right) and `t = acos(d.y)/π` (rows top to bottom:
//! the first row of the file is straight up). So glTF −Z (Blender +Y) looks at u = 0.25,
//! +X at u = 0.5. Filtering wraps in u and clamps in t. The image is an `rgba32float`
//! array (rows split into layers beyond the adapter's largest side). Image environments
//! are importance-sampled: a piecewise-constant 2D distribution (marginal rows ×
//! conditional columns) of luminance (dilated to the 3×3 max so it covers the bilinear
//! footprint) × sin θ, built on the CPU in f64 in a fixed order (averaged down for images
//! above 2²¹ texels), searched by binary search in the shader; next-event estimation
//! picks the environment with probability 1/2 when there are also emissive triangles (1
//! otherwise), and MIS weights it against BSDF samples. A constant colour is reached by
//! BSDF sampling only (for a uniform background BSDF sampling is already proportional to
//! the integrand's cosine-weighted part). Camera rays that miss see the background.
//!
//! # Cameras
//! Perspective: `yfov` is the vertical field of view and the aspect ratio is the render's
//! `width / height` (the camera's `aspectRatio` is not used). Orthographic: `ymag` is the
//! half height of the view and the half width is `ymag × width / height` (`xmag` is only
//! validated). Rays start at the camera (perspective) or on its plane (orthographic);
//! `znear`/`zfar` are not used. Cameras are selected by name (`RenderSettings::camera`);
//! an unnamed camera is named after its node. Pixel row 0 is the top of the image and
//! every sample is jittered uniformly inside its pixel. Russian roulette starts after 3
//! bounces; `max_bounces` counts as in Cycles (0 = direct light only).
//!
//! # Animation and scale
//! The loader keeps the parsed document, decoded primitives, materials and textures;
//! world-space geometry, cameras and lights are instantiated per frame at time
//! `RenderSettings::frame_rate.time_of(frame)` (a static scene once). [`SceneRenderer`]
//! keeps the last two instantiated frames uploaded. Per-triangle and per-vertex data live
//! in separate storage buffers (positions/edges 3 × 16 B and indices 16 B per triangle;
//! UVs 16 B and octahedral normal + tangent 8 B per vertex; 4-wide BVH nodes of 48 B, about
//! 0.3 nodes per triangle on the sample scenes), so that no single buffer exceeds 128 MiB
//! (lavapipe's binding limit) up to about 8 million triangles of indexed meshes (the
//! per-triangle arrays are then the largest).
#![warn(missing_docs)]

mod batch;
pub mod bench;
pub mod bench_run;
pub mod bench_table;
mod bvh;
pub mod class_child;
pub mod class_render;
mod energy;
mod error;
mod gpu;
mod render;
mod scene;
pub mod scene_dir;

pub use error::{RenderError, SceneError};
pub use gpu::{Gpu, ShaderFeatures};
pub use render::{
    encode_canonical, GpuWork, Parallelism, SceneRenderer, GPU_THREADS_PER_PASS, MAX_BOUNCES,
    MAX_IMAGE_SIDE, MAX_SPP,
};
pub use scene::{LoadOptions, Scene, SceneInfo, SceneLimits, SceneStats};

/// The WGSL source of the path tracer; its BLAKE3 hash is part of the determinism class.
pub const SHADER_SOURCE: &str = include_str!("shaders/pathtrace.wgsl");

/// The renderer build string recorded in determinism classes.
pub const RENDERER_BUILD: &str = concat!("tessera-renderer ", env!("CARGO_PKG_VERSION"));
