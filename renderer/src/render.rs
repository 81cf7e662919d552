//! Rendering tiles of a scene on the GPU and encoding them as canonical bytes.

use std::sync::{mpsc, Arc, Mutex};

use bytemuck::{Pod, Zeroable};
use tessera_protocol::{DeterminismClass, RenderFailure, RenderSettings, TileRect, TileRenderer};
use wgpu::util::DeviceExt;

use crate::error::RenderError;
use crate::gpu::Gpu;
use crate::scene::{CameraDef, Scene};

/// Largest frame width or height: the shader packs pixel coordinates into 16 bits each.
pub const MAX_IMAGE_SIDE: u32 = 65535;
/// Largest samples-per-pixel count accepted.
pub const MAX_SPP: u32 = 1 << 20;
/// Largest `max_bounces` accepted.
pub const MAX_BOUNCES: u32 = 1024;

/// Path samples per dispatch; keeps each GPU submission short on real GPUs (watchdogs).
/// The split does not change the result: samples are always added in order.
const SAMPLES_PER_DISPATCH: u64 = 1 << 20;
/// Largest accumulation buffer per band of rows (further capped by the adapter).
const MAX_BAND_BYTES: u64 = 64 << 20;
const WORKGROUP: u32 = 8;
const BYTES_PER_SUM: u64 = 16;

/// Uniform block of one dispatch; mirrors `Params` in the shader (128 bytes).
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
    cam_origin: [f32; 4],
    cam_right: [f32; 4],
    cam_up: [f32; 4],
    cam_forward: [f32; 4],
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

struct SceneBuffers {
    nodes: wgpu::Buffer,
    tri_geom: wgpu::Buffer,
    tri_shade: wgpu::Buffer,
    materials: wgpu::Buffer,
    emitters: wgpu::Buffer,
    lights: wgpu::Buffer,
}

/// A scene uploaded to a GPU, ready to render tiles of any frame and resolution.
///
/// `Send + Sync`: tiles may be requested from several threads; GPU work of one renderer
/// is serialized by an internal lock.
pub struct SceneRenderer {
    gpu: Arc<Gpu>,
    scene_name: String,
    cameras: Vec<CameraDef>,
    buffers: SceneBuffers,
    triangle_count: u32,
    emitter_count: u32,
    light_count: u32,
    lock: Mutex<()>,
}

impl std::fmt::Debug for SceneRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SceneRenderer")
            .field("scene", &self.scene_name)
            .field("triangles", &self.triangle_count)
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

impl SceneRenderer {
    /// Upload `scene` to `gpu`. Fails when a scene array exceeds the adapter's storage
    /// buffer limits (e.g. 128 MiB per buffer on lavapipe), naming the array.
    pub fn new(gpu: Arc<Gpu>, scene: &Scene) -> Result<Self, RenderError> {
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let data = &scene.gpu;
        let arrays: [(&'static str, &[u8], usize); 6] = [
            ("bvh nodes", bytemuck::cast_slice(&data.nodes), 32),
            ("triangles", bytemuck::cast_slice(&data.tri_geom), 48),
            (
                "triangle normals",
                bytemuck::cast_slice(&data.tri_shade),
                48,
            ),
            ("materials", bytemuck::cast_slice(&data.materials), 32),
            ("emitters", bytemuck::cast_slice(&data.emitters), 8),
            ("lights", bytemuck::cast_slice(&data.lights), 64),
        ];
        for (name, bytes, _) in &arrays {
            if bytes.len() as u64 > limit {
                return Err(RenderError::SceneTooLarge {
                    buffer: name,
                    bytes: bytes.len() as u64,
                    limit,
                });
            }
        }
        let device = &gpu.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let upload = |(name, bytes, elem): &(&'static str, &[u8], usize)| {
            // Bindings may not be empty: an empty array gets one zeroed element.
            let zeros = vec![0u8; *elem];
            let contents = if bytes.is_empty() { &zeros[..] } else { bytes };
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents,
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let buffers = SceneBuffers {
            nodes: upload(&arrays[0]),
            tri_geom: upload(&arrays[1]),
            tri_shade: upload(&arrays[2]),
            materials: upload(&arrays[3]),
            emitters: upload(&arrays[4]),
            lights: upload(&arrays[5]),
        };
        pop_scopes(oom, validation, "uploading the scene")?;
        Ok(SceneRenderer {
            scene_name: scene.name().to_string(),
            cameras: scene.cameras().to_vec(),
            buffers,
            triangle_count: data.tri_geom.len() as u32,
            emitter_count: data.emitters.len() as u32,
            light_count: data.lights.len() as u32,
            lock: Mutex::new(()),
            gpu,
        })
    }

    /// The GPU this renderer draws on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
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

    /// Render `rect` of `frame` and return its linear RGBA values (row-major, alpha = 1)
    /// before half-float encoding.
    pub fn render_linear(
        &self,
        settings: &RenderSettings,
        frame: u32,
        rect: TileRect,
    ) -> Result<Vec<[f32; 4]>, RenderError> {
        let invalid =
            |field: &'static str, value: u32, reason: String| RenderError::InvalidSettings {
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
        if !rect.fits_in(settings.width, settings.height) {
            return Err(RenderError::TileOutside {
                rect,
                width: settings.width,
                height: settings.height,
            });
        }
        let camera = self.camera(settings.camera.as_deref())?;
        let _span =
            tracing::debug_span!("render_tile", scene = %self.scene_name, frame, tile = %rect)
                .entered();

        let aspect = f64::from(settings.width) / f64::from(settings.height);
        let scaled =
            |v: [f64; 3], s: f64| [(v[0] * s) as f32, (v[1] * s) as f32, (v[2] * s) as f32, 0.0];
        let base = Params {
            tile_origin: [rect.x, rect.y],
            tile_size: [rect.w, rect.h],
            image_size: [settings.width, settings.height],
            seed: [settings.seed as u32, (settings.seed >> 32) as u32],
            frame,
            sample_start: 0,
            sample_count: 0,
            max_bounces: settings.max_bounces,
            triangle_count: self.triangle_count,
            emitter_count: self.emitter_count,
            light_count: self.light_count,
            accumulate: 0,
            cam_origin: scaled(camera.origin, 1.0),
            cam_right: scaled(camera.right, camera.tan_half_fov * aspect),
            cam_up: scaled(camera.up, camera.tan_half_fov),
            cam_forward: scaled(camera.forward, 1.0),
        };

        // Bands of full-width rows keep the accumulation buffer within the adapter's
        // limits; a band is just a smaller tile, so the bytes are the same.
        let limits = &self.gpu.limits;
        let band_bytes = MAX_BAND_BYTES
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size);
        let rows =
            (band_bytes / (u64::from(rect.w) * BYTES_PER_SUM)).clamp(1, u64::from(rect.h)) as u32;
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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
            let sums = self.render_band(&base, band, settings.spp)?;
            let spp = settings.spp as f32;
            out.extend(
                sums.chunks_exact(4)
                    .map(|s| [s[0] / spp, s[1] / spp, s[2] / spp, 1.0]),
            );
            y += h;
        }
        Ok(out)
    }

    fn camera(&self, name: Option<&str>) -> Result<&CameraDef, RenderError> {
        match name {
            None => self.cameras.first().ok_or(RenderError::NoCamera),
            Some(name) => self.cameras.iter().find(|c| c.name == name).ok_or_else(|| {
                RenderError::UnknownCamera {
                    name: name.to_string(),
                    available: if self.cameras.is_empty() {
                        "no cameras".into()
                    } else {
                        self.cameras
                            .iter()
                            .map(|c| format!("{:?}", c.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                }
            }),
        }
    }

    /// Per-pixel f32 sums of all samples of `band` (4 floats per pixel).
    fn render_band(
        &self,
        base: &Params,
        band: TileRect,
        spp: u32,
    ) -> Result<Vec<f32>, RenderError> {
        let gpu = &*self.gpu;
        let device = &gpu.device;
        let bytes = band.pixels() * BYTES_PER_SUM;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let accum = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("accum"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let b = &self.buffers;
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pathtrace"),
            layout: &gpu.bind_group_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b.nodes.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: b.tri_geom.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: b.tri_shade.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: b.materials.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 5,
                    resource: b.emitters.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 6,
                    resource: b.lights.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 7,
                    resource: accum.as_entire_binding(),
                },
            ],
        });
        let groups = (band.w.div_ceil(WORKGROUP), band.h.div_ceil(WORKGROUP));
        let per_dispatch = (SAMPLES_PER_DISPATCH / band.pixels()).clamp(1, u64::from(spp)) as u32;
        let mut start = 0u32;
        while start < spp {
            let count = per_dispatch.min(spp - start);
            let params = Params {
                tile_origin: [band.x, band.y],
                tile_size: [band.w, band.h],
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
                pass.set_pipeline(&gpu.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
            }
            start += count;
            if start == spp {
                encoder.copy_buffer_to_buffer(&accum, 0, &readback, 0, bytes);
            }
            gpu.queue.submit([encoder.finish()]);
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
        Ok(sums)
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
}
