//! The GPU: adapter choice, device, and the compiled path-tracing pipeline.

use std::sync::Arc;

use tessera_protocol::DeterminismClass;

use crate::error::RenderError;
use crate::{RENDERER_BUILD, SHADER_SOURCE};

/// An adapter, its device and queue, and the path-tracing pipeline compiled for it.
///
/// Shared between renderers with `Arc<Gpu>`; all methods take `&self` and are safe to call
/// from several threads.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// The compiled variants of the path tracer, by the features they keep, each compiled
    /// when a scene first needs it (lookups only: nothing iterates the map).
    variants: std::sync::Mutex<std::collections::HashMap<ShaderFeatures, Arc<Variant>>>,
    module: wgpu::ShaderModule,
    pipeline_layout: wgpu::PipelineLayout,
    pub(crate) bind_group_layout: wgpu::BindGroupLayout,
    pub(crate) limits: wgpu::Limits,
    /// Whether the adapter is a CPU (lavapipe, llvmpipe): then a pixel per invocation.
    pub(crate) is_cpu: bool,
    class: DeterminismClass,
    memory_bytes: u64,
}

/// The shader features a scene uses. The path tracer is compiled without the others
/// (WGSL override constants), which drops branches the scene never takes: the bytes are
/// those of the full shader, and every node and verifier of a scene compiles the same
/// variant. On lavapipe the Cornell box renders in about three quarters of the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShaderFeatures {
    /// Any material with a texture.
    pub textures: bool,
    /// Any triangle with alpha MASK or BLEND.
    pub alpha: bool,
    /// An environment image.
    pub env_image: bool,
    /// Any punctual light.
    pub punctual: bool,
    /// Not a feature but a schedule: `main` starts a pixel's next sample in a SIMD lane as
    /// soon as the lane's path ends (path regeneration), instead of when the longest path
    /// of the lane's group ends. It pays on CPU adapters for scenes lit only by emitters in
    /// a black world (the Cornell box), and costs elsewhere ([`crate::render`] chooses).
    pub regenerate: bool,
}

impl ShaderFeatures {
    /// Every feature: the full shader.
    pub const ALL: ShaderFeatures = ShaderFeatures {
        textures: true,
        alpha: true,
        env_image: true,
        punctual: true,
        regenerate: false,
    };

    fn constants(self) -> [(&'static str, f64); 5] {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        [
            ("TEXTURES", flag(self.textures)),
            ("ALPHA", flag(self.alpha)),
            ("ENV_IMAGE", flag(self.env_image)),
            ("PUNCTUAL", flag(self.punctual)),
            ("REGENERATE", flag(self.regenerate)),
        ]
    }
}

/// One compiled variant of the path tracer.
pub(crate) struct Variant {
    features: ShaderFeatures,
    /// `main`: a pixel per invocation.
    pub main: wgpu::ComputePipeline,
    /// `spread` and `gather`: a sample per invocation, compiled on first use (a CPU
    /// adapter never needs them, and compiling the path tracer again costs it seconds).
    per_sample: std::sync::OnceLock<Result<PerSample, RenderError>>,
}

/// The pipelines of the sample-per-invocation passes.
pub(crate) struct PerSample {
    pub spread: wgpu::ComputePipeline,
    pub gather: wgpu::ComputePipeline,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("class", &self.class).finish()
    }
}

impl Gpu {
    /// Open the GPU, honouring wgpu's environment variables: `WGPU_BACKEND` (e.g.
    /// `vulkan`), `WGPU_ADAPTER_NAME` (case-insensitive substring of the adapter name),
    /// `WGPU_POWER_PREF` (`low`/`high`), and the instance flags such as `WGPU_DEBUG`.
    /// Without `WGPU_BACKEND`, the primary backends (Vulkan, Metal, DX12) are tried
    /// first and OpenGL only when they offer no adapter. The device gets the adapter's own
    /// limits and no optional features.
    pub fn new() -> Result<Gpu, RenderError> {
        let adapter = match wgpu::Backends::from_env() {
            Some(backends) => pollster::block_on(choose_adapter(backends))?,
            None => match pollster::block_on(choose_adapter(wgpu::Backends::PRIMARY)) {
                Ok(adapter) => adapter,
                Err(RenderError::NoAdapter { .. }) => {
                    pollster::block_on(choose_adapter(wgpu::Backends::all()))?
                }
                Err(err) => return Err(err),
            },
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tessera"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| RenderError::Device {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        // Errors outside an error scope must not panic the process.
        device.on_uncaptured_error(Arc::new(|err| {
            tracing::error!("uncaptured gpu error: {err}");
        }));

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some("pathtrace.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER_SOURCE.into()),
        };
        // Every check but the loop bound stays on (buffer, image and index bounds, integer
        // division). The bound is a 64-bit counter that naga adds to every loop in case the
        // loop never ends, which lavapipe pays on every BVH node visit; every loop of
        // pathtrace.wgsl ends by construction: traversal descends an acyclic tree built
        // here (bvh.rs) and pops a stack that only its pushes fill, the sample, bounce,
        // light and triangle loops count up to a bound, and the CDF searches halve a
        // non-empty range. Bytes are unchanged (only control flow the loops never take is
        // dropped).
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = false;
        // SAFETY: wgpu requires that a shader compiled without loop bounding has no infinite
        // loop; pathtrace.wgsl has none, as said above. The module is the crate's own
        // constant source, never a caller's.
        #[allow(unsafe_code)]
        let module = unsafe { device.create_shader_module_trusted(descriptor, checks) };
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let texture =
            |binding: u32, sample_type: wgpu::TextureSampleType| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Texture {
                    sample_type,
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                    multisampled: false,
                },
                count: None,
            };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        // 1..=12: scene arrays (read-only), 13: the accumulation buffer, 14 and 15:
        // textures, 16: per-sample values (`spread` and `gather`), 17: the pixels of a
        // listed band (read-only).
        entries.extend((1..=12).map(|b| storage(b, true)));
        entries.push(storage(13, false));
        entries.push(texture(14, wgpu::TextureSampleType::Uint));
        entries.push(texture(
            15,
            wgpu::TextureSampleType::Float { filterable: false },
        ));
        entries.push(storage(16, false));
        entries.push(storage(17, true));
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("pathtrace"),
            entries: &entries,
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("pathtrace"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(RenderError::Gpu {
                context: "compiling the path tracer",
                reason: err.to_string(),
            });
        }

        let class = DeterminismClass {
            backend: info.backend.to_str().to_string(),
            adapter: info.name.clone(),
            driver: info.driver.clone(),
            driver_info: driver_info(&info),
            renderer_build: RENDERER_BUILD.to_string(),
            shader_hash: blake3::hash(SHADER_SOURCE.as_bytes()).to_hex().to_string(),
        };
        let memory_bytes = adapter_memory(&info);
        tracing::info!(class = %class, memory_bytes, "gpu ready");
        Ok(Gpu {
            device,
            queue,
            variants: Default::default(),
            module,
            pipeline_layout: layout,
            bind_group_layout,
            limits,
            is_cpu: info.device_type == wgpu::DeviceType::Cpu,
            class,
            memory_bytes,
        })
    }

    /// The path tracer compiled with `features`, compiled now when it is the first use.
    pub(crate) fn variant(&self, features: ShaderFeatures) -> Result<Arc<Variant>, RenderError> {
        let mut variants = self
            .variants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(v) = variants.get(&features) {
            return Ok(v.clone());
        }
        let started = std::time::Instant::now();
        let main = self.pipeline("main", features, "compiling the path tracer")?;
        tracing::debug!(
            ?features,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "path tracer compiled"
        );
        let v = Arc::new(Variant {
            features,
            main,
            per_sample: std::sync::OnceLock::new(),
        });
        variants.insert(features, v.clone());
        Ok(v)
    }

    /// One entry point of the path tracer with `features`, compiled; a validation error
    /// is a [`RenderError::Gpu`] with `context`.
    fn pipeline(
        &self,
        entry: &'static str,
        features: ShaderFeatures,
        context: &'static str,
    ) -> Result<wgpu::ComputePipeline, RenderError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let constants = features.constants();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&self.pipeline_layout),
                module: &self.module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: None,
            });
        match pollster::block_on(scope.pop()) {
            Some(err) => Err(RenderError::Gpu {
                context,
                reason: err.to_string(),
            }),
            None => Ok(pipeline),
        }
    }

    /// The adapter's memory in bytes, as far as it can be found (0 when unknown): wgpu
    /// does not report it, so a CPU adapter (lavapipe) reports the machine's RAM and an
    /// NVIDIA one asks `nvidia-smi`.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The determinism class of renders on this GPU.
    pub fn class(&self) -> DeterminismClass {
        self.class.clone()
    }

    pub(crate) fn class_ref(&self) -> &DeterminismClass {
        &self.class
    }
}

/// Best-effort adapter memory (see [`Gpu::memory_bytes`]).
/// The driver version as the class records it. A CPU adapter (lavapipe) compiles the
/// shader for the host CPU with LLVM, so the instructions it may use belong to the class
/// too: two machines with the same Mesa but one with FMA and one without (or one run with
/// `GALLIUM_OVERRIDE_CPU_CAPS`) round differently. The adapter name already carries the
/// vector width (`256 bits`); the CPU features are appended here.
fn driver_info(info: &wgpu::AdapterInfo) -> String {
    if info.device_type != wgpu::DeviceType::Cpu {
        return info.driver_info.clone();
    }
    format!("{}; cpu {}", info.driver_info, cpu_jit_features())
}

/// The CPU features LLVM may use in lavapipe's shaders: `GALLIUM_OVERRIDE_CPU_CAPS` when
/// set (Mesa then limits itself to that level), else the ones the host has.
fn cpu_jit_features() -> String {
    if let Ok(caps) = std::env::var("GALLIUM_OVERRIDE_CPU_CAPS") {
        if !caps.trim().is_empty() {
            return format!("caps={}", caps.trim());
        }
    }
    host_features().join(",")
}

#[cfg(target_arch = "x86_64")]
fn host_features() -> Vec<&'static str> {
    let mut on = Vec::new();
    macro_rules! probe {
        ($($f:tt),*) => {$(
            if std::arch::is_x86_feature_detected!($f) {
                on.push($f);
            }
        )*};
    }
    probe!("sse4.1", "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512vl");
    on
}

#[cfg(target_arch = "aarch64")]
fn host_features() -> Vec<&'static str> {
    let mut on = vec!["neon"];
    if std::arch::is_aarch64_feature_detected!("fp16") {
        on.push("fp16");
    }
    on
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn host_features() -> Vec<&'static str> {
    vec![std::env::consts::ARCH]
}

fn adapter_memory(info: &wgpu::AdapterInfo) -> u64 {
    const NVIDIA: u32 = 0x10de;
    if info.device_type == wgpu::DeviceType::Cpu {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        return meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
    }
    if info.vendor == NVIDIA {
        let out = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=memory.total", "--format=csv,noheader,nounits"])
            .output();
        if let Ok(out) = out {
            return String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .map_or(0, |mib| mib * 1024 * 1024);
        }
    }
    0
}

fn supports_compute(adapter: &wgpu::Adapter) -> bool {
    adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

async fn choose_adapter(backends: wgpu::Backends) -> Result<wgpu::Adapter, RenderError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let adapters = instance.enumerate_adapters(backends).await;
        let needle = wanted.to_lowercase();
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({})", i.name, i.backend.to_str())
            })
            .collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle) && supports_compute(a))
            .ok_or_else(|| RenderError::AdapterNotFound {
                wanted,
                available: if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            });
    }
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
        .map_err(|e| RenderError::NoAdapter {
            details: e.to_string(),
        })?;
    if !supports_compute(&adapter) {
        return Err(RenderError::NoAdapter {
            details: format!(
                "adapter {:?} has no compute shaders",
                adapter.get_info().name
            ),
        });
    }
    Ok(adapter)
}

impl Variant {
    /// The `spread` and `gather` pipelines of this variant, compiled on first use.
    pub(crate) fn per_sample(&self, gpu: &Gpu) -> Result<&PerSample, RenderError> {
        const CONTEXT: &str = "compiling the per-sample passes";
        let compiled = self.per_sample.get_or_init(|| {
            Ok(PerSample {
                spread: gpu.pipeline("spread", self.features, CONTEXT)?,
                gather: gpu.pipeline("gather", self.features, CONTEXT)?,
            })
        });
        // A failed compilation is kept and given to every caller.
        compiled.as_ref().map_err(RenderError::clone)
    }
}
