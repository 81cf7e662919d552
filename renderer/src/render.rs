//! Rendering tiles of a scene on the GPU and encoding them as canonical bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytemuck::{Pod, Zeroable};
use tessera_protocol::{DeterminismClass, RenderFailure, RenderSettings, TileRect, TileRenderer};
use wgpu::util::DeviceExt;

use crate::batch;
use crate::energy;
use crate::error::RenderError;
use crate::gpu::{Gpu, ShaderFeatures};
use crate::scene::texture::{self, decode_table};
use crate::scene::world::{self, World, TRI_ALPHA};
use crate::scene::{CameraDef, Projection, Scene, SceneData};

/// Largest frame width or height: the shader packs pixel coordinates into 16 bits each.
pub const MAX_IMAGE_SIDE: u32 = 65535;
/// Largest samples-per-pixel count accepted.
pub const MAX_SPP: u32 = 1 << 20;
/// Largest `max_bounces` accepted: a job's limit (`tessera_protocol::limits`), which the
/// shader's bounce loop is bounded by.
pub use tessera_protocol::limits::MAX_BOUNCES;

/// Path samples per dispatch; keeps each GPU submission short on real GPUs (watchdogs).
/// The split does not change the result: samples are always added in order.
const SAMPLES_PER_DISPATCH: u64 = 1 << 20;
/// Largest accumulation buffer per band of rows (further capped by the adapter).
const MAX_BAND_BYTES: u64 = 64 << 20;
const WORKGROUP: u32 = 8;
const BYTES_PER_SUM: u64 = 16;
/// Invocations per workgroup of `spread` and `gather`.
const LINEAR_WORKGROUP: u32 = 64;
/// Invocations a sample-per-invocation pass aims at on a GPU: about four waves of the
/// largest GPUs today (an H200 keeps 132 SMs × 2,048 = 270,336 threads resident), so
/// every core stays busy while a pass's slowest paths finish.
pub const GPU_THREADS_PER_PASS: u32 = 1 << 20;
/// Largest per-sample buffer of one pass (further capped by the adapter's limits).
const MAX_SAMPLE_BYTES: u64 = 256 << 20;
/// Most samples per pixel in one sample-per-invocation pass on llvmpipe, whose loop limit
/// also counts `gather`'s loop (lanes × samples must stay far below 65,535).
const LLVMPIPE_SAMPLES_PER_PASS: u32 = 256;

/// How a band's samples are spread over GPU invocations. Either way each pixel's samples
/// are added in sample order with the same operations, so the bytes do not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// One invocation per pixel, looping over its samples (`main`). What CPU adapters
    /// (lavapipe) run: a band keeps every core busy, and nothing per sample is stored.
    PixelPerInvocation,
    /// One invocation per (pixel, sample), about `threads` invocations per pass; a second
    /// pass adds each pixel's samples in order (`spread`, then `gather`). What GPUs run:
    /// a 64×64 farm tile is 4,096 pixels, about 1.5 % of what an H200 keeps in flight.
    SamplePerInvocation {
        /// Invocations to aim at per pass (at least one sample of every pixel).
        threads: u32,
    },
}

impl Parallelism {
    /// What suits `gpu`: a pixel per invocation on a CPU adapter, else a sample per
    /// invocation with [`GPU_THREADS_PER_PASS`].
    pub fn for_gpu(gpu: &Gpu) -> Parallelism {
        if gpu.is_cpu {
            Parallelism::PixelPerInvocation
        } else {
            Parallelism::SamplePerInvocation {
                threads: GPU_THREADS_PER_PASS,
            }
        }
    }
}

/// Uniform block of one dispatch; mirrors `Params` in the shader (192 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct Params {
    tile_origin: [u32; 2],
    tile_size: [u32; 2],
    image_size: [u32; 2],
    seed: [u32; 2],
    frame: u32,
    sample_start: u32,
    sample_count: u32,
    max_bounces: u32,
    triangle_count: u32,
    emitter_count: u32,
    light_count: u32,
    accumulate: u32,
    cam_kind: u32,
    env_mode: u32,
    env_width: u32,
    env_height: u32,
    env_dist_w: u32,
    env_dist_h: u32,
    env_rows_per_layer: u32,
    /// `main`'s `b`th workgroup (row-major) renders 8×8 pixel block
    /// `(b × block_stride) mod blocks` of the band (see [`block_stride`]).
    block_stride: u32,
    env_pick: f32,
    env_rot_cos: f32,
    env_rot_sin: f32,
    /// 1 when the band is a list of pixels (`pixel_at`, binding 17), see [`Band`].
    pixel_list: u32,
    env_color: [f32; 4],
    cam_origin: [f32; 4],
    cam_right: [f32; 4],
    cam_up: [f32; 4],
    cam_forward: [f32; 4],
}

/// The pixels one dispatch (or run of dispatches) renders: the accumulation buffer holds
/// one sum per pixel in this order.
#[derive(Clone, Copy, Debug)]
enum Band<'a> {
    /// A rectangle of the frame, row-major.
    Rect(TileRect),
    /// Pixels anywhere in the frame, `x | y << 16` each (the shader's `pixel_at`), in
    /// list order: rects that do not make one rectangle, rendered together.
    List(&'a [u32]),
}

impl Band<'_> {
    fn pixels(&self) -> u64 {
        match self {
            Band::Rect(rect) => rect.pixels(),
            Band::List(list) => list.len() as u64,
        }
    }
}

/// GPU work a [`SceneRenderer`] has issued since it was made: for tests and benchmarks
/// that check how renders are batched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuWork {
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Compute dispatches (`main`, or `spread` and `gather`, each counts one).
    pub dispatches: u64,
    /// Accumulation buffers mapped and read back.
    pub readbacks: u64,
}

/// Encode linear RGBA pixels as canonical tile bytes: IEEE half floats (round to nearest
/// even), little-endian, in the given (row-major) order. Non-finite values become 0 and
/// finite values beyond the half range are clamped to ±65504, so the bytes never hold
/// Inf or NaN.
pub fn encode_canonical(pixels: &[[f32; 4]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels.len() * 8);
    for pixel in pixels {
        for &v in pixel {
            let v = if v.is_finite() {
                v.clamp(-65504.0, 65504.0)
            } else {
                0.0
            };
            out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    }
    out
}

/// The geometry of one instantiated frame, on the GPU.
struct FrameGeometry {
    /// `f64::to_bits` of the animation time (unused for static scenes).
    time_bits: u64,
    world: Arc<World>,
    buffers: [wgpu::Buffer; 9],
    /// The shader features this frame uses.
    features: ShaderFeatures,
}

/// The shader features a frame of a scene uses (see [`ShaderFeatures`]), and whether its
/// paths are regenerated ([`regenerates`], with the renderer's `forced` choice).
fn features_of(
    data: &SceneData,
    statics: &StaticResources,
    world: &World,
    forced: Option<bool>,
) -> ShaderFeatures {
    let env_mode = statics.env_mode;
    ShaderFeatures {
        textures: data.materials.iter().any(|m| {
            [m.base_tex, m.mr_tex, m.normal_tex, m.emissive_tex]
                .iter()
                .any(|t| t.info[2] != 0)
        }),
        alpha: world.tri_v0.iter().any(|v| v[3].to_bits() & TRI_ALPHA != 0),
        env_image: env_mode != 0,
        punctual: !world.lights.is_empty(),
        regenerate: regenerates(lit_by_emitters_alone(statics, world), forced),
    }
}

/// Whether a frame's only light is emissive triangles in a black world: no punctual light,
/// no environment image and a black background colour.
fn lit_by_emitters_alone(statics: &StaticResources, world: &World) -> bool {
    let black = statics.env_color[..3].iter().all(|&c| c == 0.0);
    world.lights.is_empty() && statics.env_mode == 0 && black && !world.emitters.is_empty()
}

/// Whether `main` regenerates paths for a frame ([`ShaderFeatures::regenerate`]): when the
/// frame is lit by emitters alone, unless `forced` ([`forced_regeneration`]). The bytes are
/// the same either way. The rule is what was measured on lavapipe (instructions of the
/// render, regenerating / not, benches/results/render-experiments-2026-12-07.md): it pays
/// on the scenes lit by emitters alone and costs on the others.
fn regenerates(emitters_alone: bool, forced: Option<bool>) -> bool {
    forced.unwrap_or(emitters_alone)
}

/// The value of `TESSERA_PATH_REGENERATION` (for measuring the choice): `on` or `off`
/// forces path regeneration on or off for every frame; unset, or anything else (with a
/// warning), leaves it to the scene. Read once per renderer.
fn forced_regeneration(value: Option<&str>) -> Option<bool> {
    match value {
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(other) => {
            tracing::warn!(
                value = other,
                "TESSERA_PATH_REGENERATION is neither `on` nor `off`; choosing by the scene"
            );
            None
        }
        None => None,
    }
}

/// What does not change between frames: materials, textures, environment, tables.
struct StaticResources {
    materials: wgpu::Buffer,
    env_cdf: wgpu::Buffer,
    luts: wgpu::Buffer,
    _textures: wgpu::Texture,
    textures_view: wgpu::TextureView,
    _env: wgpu::Texture,
    env_view: wgpu::TextureView,
    /// Environment fields of [`Params`].
    env_mode: u32,
    env_size: [u32; 2],
    env_dist: [u32; 2],
    env_rows_per_layer: u32,
    env_has_dist: bool,
    env_color: [f32; 4],
    env_rot: [f32; 2],
    /// A one-entry pixel list, bound when the band is a rectangle (bindings may not be
    /// left out).
    no_pixel_list: wgpu::Buffer,
}

/// Frames of an animated scene kept uploaded (tiles of neighbouring frames interleave).
const CACHED_FRAMES: usize = 2;

/// A scene uploaded to a GPU, ready to render tiles of any frame and resolution.
///
/// Static data (materials, textures, environment) is uploaded once. The geometry of a
/// static scene is uploaded once too; an animated scene is instantiated and uploaded
/// again when a tile of a frame that is not among the last [`CACHED_FRAMES`] comes.
///
/// `Send + Sync`: tiles may be requested from several threads and render concurrently;
/// instantiating and uploading a frame's geometry is serialized by an internal lock.
pub struct SceneRenderer {
    gpu: Arc<Gpu>,
    scene_name: String,
    data: Arc<SceneData>,
    animated: bool,
    statics: StaticResources,
    /// Path regeneration forced on or off (`TESSERA_PATH_REGENERATION`), else chosen per
    /// frame.
    regeneration: Option<bool>,
    /// Most recently used first.
    frames: Mutex<Vec<Arc<FrameGeometry>>>,
    /// Mesa llvmpipe's shader loop limit, when this adapter has one.
    loop_limit: Option<LoopLimit>,
    /// Most samples per pixel in one dispatch that stayed under `loop_limit` so far.
    dispatch_cap: std::sync::atomic::AtomicU32,
    parallelism: Parallelism,
    /// Compile every shader feature in, used or not (tests compare the two).
    full_shader: bool,
    /// What [`SceneRenderer::gpu_work`] reports.
    submissions: AtomicU64,
    dispatches: AtomicU64,
    readbacks: AtomicU64,
}

/// Mesa's llvmpipe (the CPU driver behind lavapipe) ends every loop of a shader once
/// 65535 loop iterations have run in one SIMD group of invocations
/// (`LP_MAX_TGSI_LOOP_ITERATIONS` in gallivm), without any error: path segments would be
/// silently dropped. The shader counts its own loop iterations per invocation (`w` of the
/// accumulation buffer); the sum over a SIMD group bounds what the driver counted.
#[derive(Clone, Copy, Debug)]
struct LoopLimit {
    /// Invocations that run together (the vector width in 32-bit lanes).
    lanes: u32,
    /// Most loop iterations allowed per SIMD group, with a margin.
    iterations: u64,
}

/// Samples per pixel per dispatch to start with on llvmpipe; halved whenever a dispatch
/// comes near the loop limit (results do not depend on the split).
const LLVMPIPE_FIRST_CAP: u32 = 16;

impl LoopLimit {
    fn of(class: &DeterminismClass) -> Option<LoopLimit> {
        let name = class.adapter.to_ascii_lowercase();
        if !(name.contains("llvmpipe") || class.driver.to_ascii_lowercase().contains("llvmpipe")) {
            return None;
        }
        // The adapter name says e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"; without it assume
        // the widest vectors (512 bits), which gives the tightest bound.
        let bits = name
            .find(" bits")
            .and_then(|at| {
                let head = &name[..at];
                let start = head
                    .rfind(|c: char| !c.is_ascii_digit())
                    .map_or(0, |i| i + 1);
                head[start..].parse::<u32>().ok()
            })
            .unwrap_or(512);
        Some(LoopLimit {
            lanes: (bits / 32).clamp(1, 64),
            iterations: 65_535 - 1_024,
        })
    }

    /// The largest per-group sum of loop iterations in a band rendered with `WORKGROUP`²
    /// workgroups (invocations grouped by local index, `lanes` at a time). A rectangle's
    /// workgroups are its 8×8 blocks; a list's are runs of 64 consecutive entries.
    fn worst_group(&self, sums: &[f32], band: Band<'_>) -> u64 {
        let (wg_size, side) = ((WORKGROUP * WORKGROUP) as usize, WORKGROUP as usize);
        let lanes = self.lanes as usize;
        let per_wg = wg_size.div_ceil(lanes);
        let workgroups = match band {
            Band::Rect(r) => (r.w.div_ceil(WORKGROUP) * r.h.div_ceil(WORKGROUP)) as usize,
            Band::List(list) => list.len().div_ceil(wg_size),
        };
        let mut groups = vec![0u64; workgroups * per_wg];
        for (i, px) in sums.chunks_exact(4).enumerate() {
            // The pixel's workgroup and local invocation index.
            let (wg, local) = match band {
                Band::Rect(r) => {
                    let (x, y) = (i % r.w as usize, i / r.w as usize);
                    let wg_x = r.w.div_ceil(WORKGROUP) as usize;
                    ((y / side) * wg_x + x / side, (y % side) * side + x % side)
                }
                Band::List(_) => (i / wg_size, i % wg_size),
            };
            groups[wg * per_wg + local / lanes] += u64::from(px[3].to_bits());
        }
        groups.into_iter().max().unwrap_or(0)
    }
}

impl std::fmt::Debug for SceneRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SceneRenderer")
            .field("scene", &self.scene_name)
            .field("animated", &self.animated)
            .field("class", self.gpu.class_ref())
            .finish()
    }
}

fn pop_scopes(
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
    context: &'static str,
) -> Result<(), RenderError> {
    // Scopes pop in reverse order of pushing (validation was pushed first).
    let o = pollster::block_on(oom.pop());
    let v = pollster::block_on(validation.pop());
    match v.or(o) {
        Some(err) => Err(RenderError::Gpu {
            context,
            reason: err.to_string(),
        }),
        None => Ok(()),
    }
}

fn storage_limit(gpu: &Gpu) -> u64 {
    gpu.limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size)
}

/// Upload one storage array (an empty one gets one zeroed element: bindings may not be
/// empty), refusing arrays beyond the adapter's binding size.
fn upload(
    gpu: &Gpu,
    name: &'static str,
    bytes: &[u8],
    elem: usize,
) -> Result<wgpu::Buffer, RenderError> {
    let limit = storage_limit(gpu);
    if bytes.len() as u64 > limit {
        return Err(RenderError::SceneTooLarge {
            buffer: name,
            bytes: bytes.len() as u64,
            limit,
        });
    }
    let zeros = vec![0u8; elem];
    let contents = if bytes.is_empty() { &zeros[..] } else { bytes };
    Ok(gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents,
            usage: wgpu::BufferUsages::STORAGE,
        }))
}

fn upload_world(gpu: &Gpu, world: &World) -> Result<[wgpu::Buffer; 9], RenderError> {
    let device = &gpu.device;
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let result = (|| {
        Ok([
            upload(
                gpu,
                "bvh nodes",
                bytemuck::cast_slice(&world.nodes),
                std::mem::size_of::<crate::bvh::BvhNode>(),
            )?,
            upload(
                gpu,
                "triangle vertices",
                bytemuck::cast_slice(&world.tri_v0),
                16,
            )?,
            upload(
                gpu,
                "triangle edges 1",
                bytemuck::cast_slice(&world.tri_e1),
                16,
            )?,
            upload(
                gpu,
                "triangle edges 2",
                bytemuck::cast_slice(&world.tri_e2),
                16,
            )?,
            upload(
                gpu,
                "triangle indices",
                bytemuck::cast_slice(&world.tri_idx),
                16,
            )?,
            upload(
                gpu,
                "vertex texture coordinates",
                bytemuck::cast_slice(&world.vert_uv),
                16,
            )?,
            upload(
                gpu,
                "vertex normals",
                bytemuck::cast_slice(&world.vert_frame),
                8,
            )?,
            upload(gpu, "emitters", bytemuck::cast_slice(&world.emitters), 8)?,
            upload(gpu, "lights", bytemuck::cast_slice(&world.lights), 64)?,
        ])
    })();
    pop_scopes(oom, validation, "uploading the scene geometry")?;
    result
}

fn texture_array(
    gpu: &Gpu,
    label: &'static str,
    format: wgpu::TextureFormat,
    side: [u32; 2],
    layers: u32,
) -> Result<wgpu::Texture, RenderError> {
    let limits = &gpu.limits;
    // wgpu's GL backend guesses a texture's view dimension from its layer count and binds
    // a one-layer texture as `D2`, not the `D2Array` the shader declares, so it samples
    // black: give it a second (unused) layer there.
    let layers = if gpu.class_ref().backend == "gl" {
        layers.max(2)
    } else {
        layers.max(1)
    };
    let max_side = side[0].max(side[1]);
    if max_side > limits.max_texture_dimension_2d || layers > limits.max_texture_array_layers {
        return Err(RenderError::TextureTooLarge {
            what: label,
            width: side[0],
            height: side[1],
            layers,
            max_side: limits.max_texture_dimension_2d,
            max_layers: limits.max_texture_array_layers,
        });
    }
    Ok(gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: side[0].max(1),
            height: side[1].max(1),
            depth_or_array_layers: layers,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    }))
}

fn write_layer_region(
    gpu: &Gpu,
    texture: &wgpu::Texture,
    origin: [u32; 3],
    size: [u32; 2],
    bytes_per_texel: u32,
    data: &[u8],
) {
    gpu.queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture,
            mip_level: 0,
            origin: wgpu::Origin3d {
                x: origin[0],
                y: origin[1],
                z: origin[2],
            },
            aspect: wgpu::TextureAspect::All,
        },
        data,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(size[0] * bytes_per_texel),
            rows_per_image: Some(size[1]),
        },
        wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        },
    );
}

fn upload_statics(gpu: &Gpu, data: &SceneData) -> Result<StaticResources, RenderError> {
    let device = &gpu.device;
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let result = (|| {
        let materials = upload(gpu, "materials", bytemuck::cast_slice(&data.materials), 320)?;
        // Texture decoding (512 entries), then the GGX energy tables at LUT_OFFSET.
        let mut lut_words: Vec<u32> = decode_table().iter().map(|v| v.to_bits()).collect();
        debug_assert_eq!(lut_words.len(), energy::LUT_OFFSET);
        lut_words.extend(energy::lut_words());
        let luts = upload(
            gpu,
            "decode and energy tables",
            bytemuck::cast_slice(&lut_words),
            4,
        )?;
        // Material textures: rgba8uint pages.
        let t = &data.textures;
        let textures = texture_array(
            gpu,
            "material textures",
            wgpu::TextureFormat::Rgba8Uint,
            t.page_size,
            t.pages,
        )?;
        for (img, place) in t.images.iter().zip(&t.placements) {
            if let Some(img) = img {
                if img.width > 0 && img.height > 0 {
                    write_layer_region(
                        gpu,
                        &textures,
                        [place.x, place.y, place.layer],
                        [img.width, img.height],
                        4,
                        &img.rgba,
                    );
                    for (level, texels) in (1u32..).zip(&img.mips) {
                        let [dx, dy, w, h] = texture::mip_rect(img.width, img.height, level);
                        write_layer_region(
                            gpu,
                            &textures,
                            [place.x + dx, place.y + dy, place.layer],
                            [w, h],
                            4,
                            texels,
                        );
                    }
                }
            }
        }
        // The environment image: rgba32float, rows split over layers when taller than
        // the adapter's largest texture side.
        let env = &data.environment;
        let strength = env.strength;
        let rot = env.rotation_deg.to_radians();
        let d2_array = wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2Array),
            ..Default::default()
        };
        let placeholder = texture_array(
            gpu,
            "environment",
            wgpu::TextureFormat::Rgba32Float,
            [1, 1],
            1,
        )?;
        let mut out = StaticResources {
            materials,
            env_cdf: upload(gpu, "environment distribution", &[], 4)?,
            luts,
            env_view: placeholder.create_view(&d2_array),
            _env: placeholder,
            textures_view: textures.create_view(&d2_array),
            _textures: textures,
            env_mode: 0,
            env_size: [0, 0],
            env_dist: [0, 0],
            env_rows_per_layer: 1,
            env_has_dist: false,
            env_color: [
                env.color[0] * strength,
                env.color[1] * strength,
                env.color[2] * strength,
                strength,
            ],
            env_rot: [rot.cos() as f32, rot.sin() as f32],
            no_pixel_list: upload(gpu, "pixel list", &[], 4)?,
        };
        if let Some(img) = &env.image {
            let max_side = gpu.limits.max_texture_dimension_2d;
            let rows = img.height.min(max_side).max(1);
            let layers = img.height.div_ceil(rows);
            let tex = texture_array(
                gpu,
                "environment",
                wgpu::TextureFormat::Rgba32Float,
                [img.width, rows],
                layers,
            )?;
            let row_floats = img.width as usize * 4;
            for layer in 0..layers {
                let y0 = layer * rows;
                let h = rows.min(img.height - y0);
                let slice = &img.rgba[y0 as usize * row_floats..(y0 + h) as usize * row_floats];
                write_layer_region(
                    gpu,
                    &tex,
                    [0, 0, layer],
                    [img.width, h],
                    16,
                    bytemuck::cast_slice(slice),
                );
            }
            out.env_cdf = upload(
                gpu,
                "environment distribution",
                bytemuck::cast_slice(&img.cdf),
                4,
            )?;
            out.env_view = tex.create_view(&d2_array);
            out._env = tex;
            out.env_mode = 1;
            out.env_size = [img.width, img.height];
            out.env_dist = [img.dist_w, img.dist_h];
            out.env_rows_per_layer = rows;
            out.env_has_dist = !img.cdf.is_empty();
        }
        Ok(out)
    })();
    pop_scopes(oom, validation, "uploading textures and materials")?;
    result
}

impl SceneRenderer {
    /// Upload `scene` to `gpu`. Fails when a scene array exceeds the adapter's storage
    /// buffer limits (e.g. 128 MiB per buffer on lavapipe), naming the array, or when the
    /// texture pages exceed its texture limits.
    pub fn new(gpu: Arc<Gpu>, scene: &Scene) -> Result<Self, RenderError> {
        let statics = upload_statics(&gpu, &scene.data)?;
        let buffers = upload_world(&gpu, &scene.world0)?;
        let regeneration =
            forced_regeneration(std::env::var("TESSERA_PATH_REGENERATION").ok().as_deref());
        let first = FrameGeometry {
            time_bits: 0f64.to_bits(),
            features: features_of(&scene.data, &statics, &scene.world0, regeneration),
            world: scene.world0.clone(),
            buffers,
        };
        Ok(SceneRenderer {
            scene_name: scene.name().to_string(),
            data: scene.data.clone(),
            animated: scene.is_animated(),
            statics,
            regeneration,
            frames: Mutex::new(vec![Arc::new(first)]),
            loop_limit: LoopLimit::of(gpu.class_ref()),
            dispatch_cap: std::sync::atomic::AtomicU32::new(LLVMPIPE_FIRST_CAP),
            parallelism: Parallelism::for_gpu(&gpu),
            full_shader: false,
            submissions: AtomicU64::new(0),
            dispatches: AtomicU64::new(0),
            readbacks: AtomicU64::new(0),
            gpu,
        })
    }

    /// Render with `parallelism` instead of what suits the adapter
    /// ([`Parallelism::for_gpu`]); the bytes are the same either way.
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Render with the full shader instead of the variant without the features the scene
    /// leaves unused ([`ShaderFeatures`]); the bytes are the same either way.
    pub fn with_full_shader(mut self) -> Self {
        self.full_shader = true;
        self
    }

    /// How this renderer spreads samples over invocations.
    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    /// The shader variant the most recently used frame renders with (a static scene has
    /// one frame): its features and whether it regenerates paths. What
    /// [`with_full_shader`](Self::with_full_shader) replaces.
    pub fn shader_features(&self) -> ShaderFeatures {
        self.frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .first()
            .map_or(ShaderFeatures::ALL, |f| f.features)
    }

    /// The GPU this renderer draws on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The GPU work this renderer has issued so far (all threads together).
    pub fn gpu_work(&self) -> GpuWork {
        GpuWork {
            submissions: self.submissions.load(Ordering::Relaxed),
            dispatches: self.dispatches.load(Ordering::Relaxed),
            readbacks: self.readbacks.load(Ordering::Relaxed),
        }
    }

    /// Render `rect` of `frame` and return its canonical bytes (`rect.canonical_len()`).
    pub fn render(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderError> {
        let pixels = self.render_linear(settings, frame, rect)?;
        Ok(encode_canonical(&pixels))
    }

    /// Render every rect of `rects` of `frame` and return their canonical bytes, in order;
    /// the bytes are those of [`render`](Self::render) for each rect. Rects that exactly
    /// tile one rectangle (a task's neighbouring tiles, or a single rect) are rendered as
    /// that rectangle and cut apart ([`crate::batch`]); any other list (a verifier's
    /// scattered blocks, tiles that make several rectangles) is rendered as one list of
    /// pixels: one dispatch per pass for all of them, one readback, split only where the
    /// adapter's limits or the sample slicing of long renders require it. A failure names
    /// the index of the rect it concerns (0 for invalid settings; the first rect of the
    /// rectangle or band of the list that failed to render).
    pub fn render_batch(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rects: &[TileRect],
    ) -> Result<Vec<Vec<u8>>, (usize, RenderError)> {
        check_settings(settings).map_err(|e| (0, e))?;
        for (i, &rect) in rects.iter().enumerate() {
            check_rect(settings, rect).map_err(|e| (i, e))?;
        }
        let groups = batch::merge(rects);
        if let [(outer, members)] = &groups[..] {
            let pixels = self
                .render_linear(settings, frame, *outer)
                .map_err(|e| (members.iter().copied().min().unwrap_or(0), e))?;
            return Ok(rects
                .iter()
                .map(|&rect| encode_canonical(&batch::cut(&pixels, *outer, rect)))
                .collect());
        }
        let pixels = self.render_listed(settings, frame, rects)?;
        Ok(pixels.iter().map(|p| encode_canonical(p)).collect())
    }

    /// Render `rects` (checked to lie in the frame) as one list of pixels, each rect's in
    /// [`batch::block_order`], cut into bands only beyond [`band_pixels`](Self::band_pixels),
    /// and return each rect's linear pixels, row-major.
    fn render_listed(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rects: &[TileRect],
    ) -> Result<Vec<Vec<[f32; 4]>>, (usize, RenderError)> {
        if rects.is_empty() {
            return Ok(Vec::new());
        }
        let _span = tracing::debug_span!(
            "render_list",
            scene = %self.scene_name,
            frame,
            rects = rects.len()
        )
        .entered();
        let (geometry, base) = self.frame_params(settings, frame).map_err(|e| (0, e))?;
        let list: Vec<u32> = rects
            .iter()
            .flat_map(|&rect| batch::block_order(rect))
            .map(|(x, y)| x | y << 16)
            .collect();
        // The list index of each rect's first pixel, to name the rect a band starts in.
        let starts: Vec<usize> = rects
            .iter()
            .scan(0usize, |at, rect| {
                let start = *at;
                *at += rect.pixels() as usize;
                Some(start)
            })
            .collect();
        let band = self.band_pixels() as usize;
        let mut sums = Vec::with_capacity(list.len() * 4);
        for (k, chunk) in list.chunks(band).enumerate() {
            let first_rect = starts.partition_point(|&start| start <= k * band) - 1;
            let band_sums = self
                .render_band(&geometry, &base, Band::List(chunk), settings.spp)
                .map_err(|e| (first_rect, e))?;
            sums.extend(band_sums);
        }
        let spp = settings.spp as f32;
        let mut listed = sums.chunks_exact(4);
        Ok(rects
            .iter()
            .map(|&rect| {
                let mut pixels = vec![[0.0; 4]; rect.pixels() as usize];
                for ((x, y), s) in batch::block_order(rect).zip(&mut listed) {
                    let at = (y - rect.y) as usize * rect.w as usize + (x - rect.x) as usize;
                    pixels[at] = [s[0] / spp, s[1] / spp, s[2] / spp, 1.0];
                }
                pixels
            })
            .collect())
    }

    /// The uploaded geometry of the frame at `time_s`, instantiating and uploading it when
    /// it is not cached. Called with the frames lock held.
    fn frame_geometry(
        &self,
        frames: &mut Vec<Arc<FrameGeometry>>,
        frame: u32,
        time_s: f64,
    ) -> Result<Arc<FrameGeometry>, RenderError> {
        if !self.animated {
            return Ok(frames[0].clone());
        }
        let bits = time_s.to_bits();
        if let Some(pos) = frames.iter().position(|f| f.time_bits == bits) {
            let hit = frames.remove(pos);
            frames.insert(0, hit.clone());
            return Ok(hit);
        }
        let started = std::time::Instant::now();
        let world =
            world::instantiate(&self.data, time_s, &mut |_| {}).map_err(|(field, reason)| {
                RenderError::Instantiate {
                    frame,
                    field,
                    reason,
                }
            })?;
        let buffers = upload_world(&self.gpu, &world)?;
        tracing::debug!(
            scene = %self.scene_name,
            frame,
            triangles = world.tri_v0.len(),
            bvh_ms = world.bvh_build_ms,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "frame instantiated"
        );
        let geometry = Arc::new(FrameGeometry {
            time_bits: bits,
            features: features_of(&self.data, &self.statics, &world, self.regeneration),
            world: Arc::new(world),
            buffers,
        });
        frames.insert(0, geometry.clone());
        frames.truncate(CACHED_FRAMES);
        Ok(geometry)
    }

    /// Render `rect` of `frame` and return its linear RGBA values (row-major, alpha = 1)
    /// before half-float encoding.
    pub fn render_linear(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<[f32; 4]>, RenderError> {
        check_settings(settings)?;
        check_rect(settings, rect)?;
        let _span =
            tracing::debug_span!("render_tile", scene = %self.scene_name, frame, tile = %rect)
                .entered();
        let (geometry, base) = self.frame_params(settings, frame)?;
        // Bands of full-width rows keep the accumulation buffer within the adapter's
        // limits; a band is just a smaller tile, so the bytes are the same.
        let rows = (self.band_pixels() / u64::from(rect.w)).clamp(1, u64::from(rect.h)) as u32;
        let mut out = Vec::with_capacity(rect.pixels() as usize);
        let mut y = 0;
        while y < rect.h {
            let h = rows.min(rect.h - y);
            let band = TileRect {
                x: rect.x,
                y: rect.y + y,
                w: rect.w,
                h,
            };
            let sums = self.render_band(&geometry, &base, Band::Rect(band), settings.spp)?;
            let spp = settings.spp as f32;
            out.extend(
                sums.chunks_exact(4)
                    .map(|s| [s[0] / spp, s[1] / spp, s[2] / spp, 1.0]),
            );
            y += h;
        }
        Ok(out)
    }

    /// Most pixels of one band: its accumulation buffer within the adapter's limits, and a
    /// linear pass over it (pixels / 64 workgroups) within one dispatch dimension.
    fn band_pixels(&self) -> u64 {
        let limits = &self.gpu.limits;
        let band_bytes = MAX_BAND_BYTES
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size);
        (band_bytes / BYTES_PER_SUM).min(
            u64::from(limits.max_compute_workgroups_per_dimension) * u64::from(LINEAR_WORKGROUP),
        )
    }

    /// The uploaded geometry of `frame` (of checked `settings`) and the [`Params`] its
    /// dispatches share; the band and sample fields are filled in per dispatch.
    fn frame_params(
        &self,
        settings: &RenderSettings,
        frame: u32,
    ) -> Result<(Arc<FrameGeometry>, Params), RenderError> {
        let time_s = frame_time(settings, frame)?;
        // One lock serializes instantiation and uploads; rendering does not hold it, so
        // tiles requested from several threads (a node's slots) render concurrently.
        let geometry = {
            let mut frames = self
                .frames
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.frame_geometry(&mut frames, frame, time_s)?
        };
        let camera = camera(&geometry.world.cameras, settings.camera.as_deref())?;

        let aspect = f64::from(settings.width) / f64::from(settings.height);
        let scaled =
            |v: [f64; 3], s: f64| [(v[0] * s) as f32, (v[1] * s) as f32, (v[2] * s) as f32, 0.0];
        let (cam_kind, half_h) = match camera.projection {
            Projection::Perspective { tan_half_fov } => (0, tan_half_fov),
            Projection::Orthographic { ymag } => (1, ymag),
        };
        let st = &self.statics;
        let world = &geometry.world;
        let env_pick = match (st.env_has_dist, world.emitters.is_empty()) {
            (false, _) => 0.0,
            (true, true) => 1.0,
            (true, false) => 0.5,
        };
        let base = Params {
            tile_origin: [0, 0],
            tile_size: [0, 0],
            image_size: [settings.width, settings.height],
            seed: [settings.seed as u32, (settings.seed >> 32) as u32],
            frame,
            sample_start: 0,
            sample_count: 0,
            max_bounces: settings.max_bounces,
            triangle_count: world.tri_v0.len() as u32,
            emitter_count: world.emitters.len() as u32,
            light_count: world.lights.len() as u32,
            accumulate: 0,
            cam_kind,
            env_mode: st.env_mode,
            env_width: st.env_size[0],
            env_height: st.env_size[1],
            env_dist_w: st.env_dist[0],
            env_dist_h: st.env_dist[1],
            env_rows_per_layer: st.env_rows_per_layer,
            block_stride: 1,
            env_pick,
            env_rot_cos: st.env_rot[0],
            env_rot_sin: st.env_rot[1],
            pixel_list: 0,
            env_color: st.env_color,
            cam_origin: scaled(camera.origin, 1.0),
            cam_right: scaled(camera.right, half_h * aspect),
            cam_up: scaled(camera.up, half_h),
            cam_forward: scaled(camera.forward, 1.0),
        };
        Ok((geometry, base))
    }

    /// Per-pixel f32 sums of all samples of `band` (4 floats per pixel; `w` holds loop
    /// counts). On llvmpipe the samples are split into dispatches small enough to stay
    /// under the driver's loop limit, checked after the fact and redone smaller if needed.
    fn render_band(
        &self,
        geometry: &FrameGeometry,
        base: &Params,
        band: Band<'_>,
        spp: u32,
    ) -> Result<Vec<f32>, RenderError> {
        if let Parallelism::SamplePerInvocation { threads } = self.parallelism {
            let per_pass = self.samples_per_pass(band, spp, threads);
            let sums = self.render_band_split(geometry, base, band, spp, per_pass, true)?;
            if let Some(limit) = self.loop_limit {
                let worst = limit.worst_group(&sums, band);
                if worst > limit.iterations {
                    return Err(RenderError::LoopLimit {
                        adapter: self.gpu.class_ref().adapter.clone(),
                        needed: worst,
                        limit: limit.iterations,
                    });
                }
            }
            return Ok(sums);
        }
        let natural = (SAMPLES_PER_DISPATCH / band.pixels()).clamp(1, u64::from(spp)) as u32;
        let Some(limit) = self.loop_limit else {
            return self.render_band_split(geometry, base, band, spp, natural, false);
        };
        loop {
            let cap = self.dispatch_cap.load(Ordering::Relaxed).max(1);
            let per_dispatch = natural.min(cap);
            let sums = self.render_band_split(geometry, base, band, spp, per_dispatch, false)?;
            let worst = limit.worst_group(&sums, band);
            if worst <= limit.iterations {
                return Ok(sums);
            }
            if per_dispatch == 1 {
                return Err(RenderError::LoopLimit {
                    adapter: self.gpu.class_ref().adapter.clone(),
                    needed: worst,
                    limit: limit.iterations,
                });
            }
            tracing::debug!(
                per_dispatch,
                worst,
                "near llvmpipe's loop limit; rendering the band again with fewer samples per dispatch"
            );
            self.dispatch_cap
                .fetch_min((per_dispatch / 2).max(1), Ordering::Relaxed);
        }
    }

    /// Samples per pixel of one sample-per-invocation pass over `band`: about `threads`
    /// invocations, within the adapter's buffer and dispatch limits.
    fn samples_per_pass(&self, band: Band<'_>, spp: u32, threads: u32) -> u32 {
        let limits = &self.gpu.limits;
        let bytes = MAX_SAMPLE_BYTES
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size);
        let by_memory = bytes / (band.pixels() * BYTES_PER_SUM);
        let mut per_pass = (u64::from(threads) / band.pixels())
            .min(by_memory)
            .min(u64::from(limits.max_compute_workgroups_per_dimension))
            .clamp(1, u64::from(spp)) as u32;
        if self.loop_limit.is_some() {
            per_pass = per_pass.min(LLVMPIPE_SAMPLES_PER_PASS);
        }
        per_pass
    }

    /// Per-pixel f32 sums of all samples of `band`, `per_dispatch` samples at a time: a
    /// pixel per invocation (`main`), or with `per_sample` a sample per invocation
    /// (`spread`, then `gather` adds them in order).
    fn render_band_split(
        &self,
        geometry: &FrameGeometry,
        base: &Params,
        band: Band<'_>,
        spp: u32,
        per_dispatch: u32,
        per_sample: bool,
    ) -> Result<Vec<f32>, RenderError> {
        let gpu = &*self.gpu;
        let device = &gpu.device;
        let features = if self.full_shader {
            ShaderFeatures::ALL
        } else {
            geometry.features
        };
        let variant = gpu.variant(features)?;
        let passes = if per_sample {
            Some(variant.per_sample(gpu)?)
        } else {
            None
        };
        let bytes = band.pixels() * BYTES_PER_SUM;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let accum = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("accum"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // Per-sample values of one pass; a pixel per invocation stores none (the binding
        // still needs a buffer).
        let samples = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("samples"),
            size: if per_sample {
                bytes * u64::from(per_dispatch)
            } else {
                BYTES_PER_SUM
            },
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let listed;
        let pixel_at = match band {
            Band::Rect(_) => &self.statics.no_pixel_list,
            Band::List(list) => {
                listed = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("pixel list"),
                    contents: bytemuck::cast_slice(list),
                    usage: wgpu::BufferUsages::STORAGE,
                });
                &listed
            }
        };
        let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let st = &self.statics;
        let g = &geometry.buffers;
        let buffers: [&wgpu::Buffer; 13] = [
            &params_buf,
            &g[0],
            &g[1],
            &g[2],
            &g[3],
            &g[4],
            &g[5],
            &g[6],
            &st.materials,
            &g[7],
            &g[8],
            &st.env_cdf,
            &st.luts,
        ];
        let mut entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: 13,
            resource: accum.as_entire_binding(),
        });
        entries.push(wgpu::BindGroupEntry {
            binding: 14,
            resource: wgpu::BindingResource::TextureView(&st.textures_view),
        });
        entries.push(wgpu::BindGroupEntry {
            binding: 15,
            resource: wgpu::BindingResource::TextureView(&st.env_view),
        });
        entries.push(wgpu::BindGroupEntry {
            binding: 16,
            resource: samples.as_entire_binding(),
        });
        entries.push(wgpu::BindGroupEntry {
            binding: 17,
            resource: pixel_at.as_entire_binding(),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pathtrace"),
            layout: &gpu.bind_group_layout,
            entries: &entries,
        });
        // `main`'s workgroups: a rectangle's 8×8 blocks, or a list's runs of 64 entries
        // (band_pixels keeps a list's within one dispatch dimension).
        let (groups, tile_origin, tile_size, pixel_list) = match band {
            Band::Rect(r) => (
                (r.w.div_ceil(WORKGROUP), r.h.div_ceil(WORKGROUP)),
                [r.x, r.y],
                [r.w, r.h],
                0,
            ),
            Band::List(list) => {
                let n = list.len() as u32;
                ((n.div_ceil(WORKGROUP * WORKGROUP), 1), [0, 0], [n, 1], 1)
            }
        };
        let linear_groups = band.pixels().div_ceil(u64::from(LINEAR_WORKGROUP)) as u32;
        let mut start = 0u32;
        while start < spp {
            let count = per_dispatch.min(spp - start);
            let params = Params {
                tile_origin,
                tile_size,
                pixel_list,
                block_stride: block_stride(groups.0 * groups.1),
                sample_start: start,
                sample_count: count,
                accumulate: u32::from(start > 0),
                ..*base
            };
            gpu.queue
                .write_buffer(&params_buf, 0, bytemuck::bytes_of(&params));
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pathtrace"),
            });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("pathtrace"),
                    timestamp_writes: None,
                });
                pass.set_bind_group(0, &bind_group, &[]);
                let dispatches = match passes {
                    None => {
                        pass.set_pipeline(&variant.main);
                        pass.dispatch_workgroups(groups.0, groups.1, 1);
                        1
                    }
                    Some(p) => {
                        pass.set_pipeline(&p.spread);
                        pass.dispatch_workgroups(linear_groups, count, 1);
                        pass.set_pipeline(&p.gather);
                        pass.dispatch_workgroups(linear_groups, 1, 1);
                        2
                    }
                };
                self.dispatches.fetch_add(dispatches, Ordering::Relaxed);
            }
            start += count;
            if start == spp {
                encoder.copy_buffer_to_buffer(&accum, 0, &readback, 0, bytes);
            }
            gpu.queue.submit([encoder.finish()]);
            self.submissions.fetch_add(1, Ordering::Relaxed);
        }
        pop_scopes(oom, validation, "rendering a tile")?;

        let (tx, rx) = mpsc::channel();
        readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = tx.send(result);
            });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| RenderError::Gpu {
                context: "waiting for the tile",
                reason: e.to_string(),
            })?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(RenderError::Gpu {
                    context: "reading the tile back",
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(RenderError::Gpu {
                    context: "reading the tile back",
                    reason: "mapping never finished".into(),
                })
            }
        }
        let sums = {
            let view = readback
                .slice(..)
                .get_mapped_range()
                .map_err(|e| RenderError::Gpu {
                    context: "reading the tile back",
                    reason: e.to_string(),
                })?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        readback.unmap();
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        Ok(sums)
    }
}

/// The stride that scatters a band's `blocks` workgroups over its 8×8 pixel blocks: the
/// smallest number from `blocks` × 0.618 up that is coprime with `blocks` (1 where the
/// shader's `b × stride` could pass `u32::MAX`; bands are far smaller).
///
/// llvmpipe gives each of its threads one contiguous run of a dispatch's workgroups
/// (`iter_per_thread` in `lp_cs_tpool.c`), so with blocks in image order one thread would
/// render the top of the image and another the bottom, and the cheaper half would wait
/// for the other (blender-studio used 1.25 of 2 cores). Multiples of a golden-ratio
/// stride modulo `blocks` are spread evenly over the band at every run length, down to
/// the 64 blocks of a 64×64 tile. Which workgroup renders a block changes no byte.
fn block_stride(blocks: u32) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if blocks <= 2 {
        return 1;
    }
    let mut stride = (f64::from(blocks) * 0.618_033_988_75).round() as u32;
    while gcd(stride, blocks) != 1 {
        stride += 1;
    }
    if u64::from(blocks) * u64::from(stride) > u64::from(u32::MAX) {
        return 1;
    }
    stride
}

/// Check the settings every render needs: frame size, samples, bounces, frame rate.
fn check_settings(settings: &RenderSettings) -> Result<(), RenderError> {
    let invalid = |field: &'static str, value: u32, reason: String| RenderError::InvalidSettings {
        field,
        value: value.to_string(),
        reason,
    };
    for (field, value) in [("width", settings.width), ("height", settings.height)] {
        if value == 0 || value > MAX_IMAGE_SIDE {
            return Err(invalid(
                field,
                value,
                format!("must be in 1..={MAX_IMAGE_SIDE}"),
            ));
        }
    }
    if settings.spp == 0 || settings.spp > MAX_SPP {
        return Err(invalid(
            "spp",
            settings.spp,
            format!("must be in 1..={MAX_SPP}"),
        ));
    }
    if settings.max_bounces > MAX_BOUNCES {
        return Err(invalid(
            "max_bounces",
            settings.max_bounces,
            format!("must be at most {MAX_BOUNCES}"),
        ));
    }
    frame_time(settings, 0).map(|_| ())
}

/// A non-empty `rect` inside the frame of `settings`.
fn check_rect(settings: &RenderSettings, rect: TileRect) -> Result<(), RenderError> {
    if rect.fits_in(settings.width, settings.height) {
        Ok(())
    } else {
        Err(RenderError::TileOutside {
            rect,
            width: settings.width,
            height: settings.height,
        })
    }
}

/// The animation time of `frame`.
fn frame_time(settings: &RenderSettings, frame: u32) -> Result<f64, RenderError> {
    settings
        .frame_rate
        .time_of(frame)
        .ok_or_else(|| RenderError::InvalidSettings {
            field: "frame_rate",
            value: settings.frame_rate.to_string(),
            reason: "must be a positive fraction".into(),
        })
}

fn camera<'c>(cameras: &'c [CameraDef], name: Option<&str>) -> Result<&'c CameraDef, RenderError> {
    match name {
        None => cameras.first().ok_or(RenderError::NoCamera),
        Some(name) => {
            cameras
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| RenderError::UnknownCamera {
                    name: name.to_string(),
                    available: if cameras.is_empty() {
                        "no cameras".into()
                    } else {
                        cameras
                            .iter()
                            .map(|c| format!("{:?}", c.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                })
        }
    }
}

impl TileRenderer for SceneRenderer {
    fn class(&self) -> &DeterminismClass {
        self.gpu.class_ref()
    }

    fn render_tile(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        self.render(settings, frame, rect)
            .map_err(RenderFailure::from)
    }

    fn render_tiles(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rects: &[TileRect],
    ) -> Result<Vec<Vec<u8>>, (usize, RenderFailure)> {
        self.render_batch(settings, frame, rects)
            .map_err(|(i, e)| (i, RenderFailure::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_regeneration_follows_the_scene_unless_forced() {
        let forced = |v: &str| forced_regeneration(Some(v));
        assert!(regenerates(true, forced_regeneration(None)));
        assert!(!regenerates(false, forced_regeneration(None)));
        assert!(regenerates(false, forced("on")));
        assert!(!regenerates(true, forced("off")));
        // Anything else is not a choice: the scene decides.
        assert!(regenerates(true, forced("1")));
        assert!(!regenerates(false, forced("yes")));
    }

    /// `main` renders block `(b × stride) mod blocks` for b in 0..blocks: every block once,
    /// and each half of the workgroups (what llvmpipe gives each of two threads) takes
    /// blocks from both halves of the band.
    #[test]
    fn block_stride_visits_every_block_once_and_spreads_them() {
        for blocks in 1..3000u32 {
            let stride = block_stride(blocks);
            let mut seen = vec![false; blocks as usize];
            for b in 0..blocks {
                let block = (b * stride % blocks) as usize;
                assert!(
                    !seen[block],
                    "{blocks} blocks, stride {stride}: block {block} twice"
                );
                seen[block] = true;
            }
            if blocks >= 64 {
                let first_half = (0..blocks / 2).filter(|&b| b * stride % blocks < blocks / 2);
                let share = first_half.count() as f64 / f64::from(blocks / 2);
                assert!(
                    (0.4..=0.6).contains(&share),
                    "{blocks} blocks: {share} of the first thread's blocks in the top half"
                );
            }
        }
        assert_eq!(block_stride(64), 41);
        assert_eq!(block_stride(1024), 633);
    }
}
