//! Tessera's renderer: loads glTF 2.0 scenes and path-traces tiles on any wgpu adapter.
//!
//! The pipeline is [`Scene::load`] (untrusted glTF in, triangles + BVH out, with every
//! unsupported feature named in [`Scene::warnings`]) → [`Gpu::new`] (adapter, device and
//! the compiled path-tracing pipeline) → [`SceneRenderer::new`] (scene uploaded once) →
//! [`tessera_protocol::TileRenderer::render_tile`] (canonical tile bytes).
//!
//! # Guarantees
//! - **Tile = crop, bit for bit.** Every random number is a pure function of (seed,
//!   frame, global pixel, sample index, dimension); a pixel's samples are summed in
//!   sample order in f32; nothing depends on workgroup layout, dispatch order, subgroups
//!   or atomics. A tile's bytes therefore equal the same region of a full-frame render
//!   on the same adapter.
//! - **Canonical bytes**: linear RGBA, IEEE half floats (round to nearest even),
//!   little-endian, row-major, no header, `w × h × 8` bytes, alpha = 1. A pixel value is
//!   the f32 sum of its samples divided by the sample count; non-finite samples count as
//!   0, and finite values beyond the half range are clamped to ±65504.
//! - **Same code on every adapter**: one WGSL compute shader
//!   (`src/shaders/pathtrace.wgsl`), no hardware ray tracing, no optional features.
//!
//! # Light transport
//! Lambertian surfaces (base colour factor, shaded on both sides), emissive triangles as
//! area lights (radiance = emissive factor × `KHR_materials_emissive_strength`; only the
//! front face emits, i.e. the counter-clockwise side after the node transform, unless the
//! material is `doubleSided`), and `KHR_lights_punctual` lights, with a black
//! background. Emitters are
//! sampled by next-event estimation (triangle picked by a power-weighted CDF, point
//! uniform in area) and combined with BSDF sampling by multiple importance sampling
//! (power heuristic). Russian roulette starts after 3 bounces. `max_bounces` counts as
//! in Cycles: 0 = direct light only.
//!
//! Cameras: the glTF `yfov` is the vertical field of view and the aspect ratio is the
//! render's `width / height` (the camera's `aspectRatio` is not used); rays start at the
//! camera position (`znear`/`zfar` are not used). Pixel row 0 is the top of the image and
//! every sample is jittered uniformly inside its pixel.
//!
//! Punctual light units: the glTF intensity is used as a radiant quantity in the
//! renderer's units, with no photometric conversion. A point or spot light with colour
//! `c` and intensity `I` at distance `d` gives irradiance `c·I/d²` on a surface facing it
//! (times the glTF range window when `range` is set, and for a spot the glTF smooth cone
//! falloff `clamp(cosθ·s + o, 0, 1)²` with `s = 1/max(0.001, cos inner − cos outer)` and
//! `o = −cos outer · s`); a directional light gives irradiance `c·I`. A white Lambertian
//! surface lit by irradiance `E` therefore has radiance `E/π`.
#![warn(missing_docs)]

mod bvh;
mod error;
mod gpu;
mod render;
mod scene;

pub use error::{RenderError, SceneError};
pub use gpu::Gpu;
pub use render::{encode_canonical, SceneRenderer, MAX_BOUNCES, MAX_IMAGE_SIDE, MAX_SPP};
pub use scene::{LoadOptions, Scene, SceneLimits};

/// The WGSL source of the path tracer; its BLAKE3 hash is part of the determinism class.
pub const SHADER_SOURCE: &str = include_str!("shaders/pathtrace.wgsl");

/// The renderer build string recorded in determinism classes.
pub const RENDERER_BUILD: &str = concat!("tessera-renderer ", env!("CARGO_PKG_VERSION"));
