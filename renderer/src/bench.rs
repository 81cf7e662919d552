//! The renderer benchmark (`tessera bench render`): load, build and render one scene at
//! fixed settings on an adapter, full frame and tiled, and the report that records the
//! timings with what is needed to reproduce them.
//!
//! What is timed, per scene (wall clock, one thread driving the GPU):
//! - `load_ms`, `bvh_build_ms`: from [`Scene::stats`] (`load_ms` includes the BVH build).
//! - `upload_ms`: [`SceneRenderer::new`], copying the scene to the GPU.
//! - `render_s`: one full frame rendered as a single tile, from the call until the linear
//!   pixels are back on the CPU (after an untimed 8×8, 1 spp warm-up render).
//! - `tiled_s`: the same frame as `tile`-sized tiles rendered one at a time: a task of one
//!   tile, or a verifier re-rendering one tile.
//! - `task_s`: the same tiles cut into tasks of `batch` consecutive tiles, as the
//!   coordinator cuts a frame (`--batch-size`, 16 by default), each task rendered the way
//!   `tessera node` renders one ([`SceneRenderer::render_batch`]: tiles that make one
//!   rectangle as that rectangle, any other task as one list of pixels).
//! - `tiled_matches_full` / `task_matches_full` check that the tiles' canonical bytes
//!   equal the full frame's (the renderer's tile = crop guarantee).
//!
//! With `repeat` > 1 each of the three runs is made that many times, interleaved (full,
//! tiled, task, full, …) so that all three see the same machine, and the fastest of each
//! is kept: on a shared machine one run of each says more about the machine than about
//! tiling.
//!
//! `samples_per_second` = `width × height × spp / render_s` (camera paths per second,
//! whatever their length); `tiled_samples_per_second` and `task_samples_per_second` the
//! same over `tiled_s` and `task_s`, and `tiled_fraction` = `render_s / tiled_s`,
//! `task_fraction` = `render_s / task_s`: how much of the full frame's throughput is kept
//! at this tile size (the occupancy a farm tile leaves on this adapter), one tile at a
//! time and as a node renders its tasks.

use crate::SceneRenderer;
use crate::{encode_canonical, Gpu, LoadOptions, Parallelism, RenderError, Scene, SceneError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessera_protocol::canonical::paste;
use tessera_protocol::{tile_layout, DeterminismClass, RenderSettings, TileRect};

/// Why one scene could not be benchmarked.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The scene did not load.
    #[error("loading {}", path.display())]
    Load {
        /// The scene file.
        path: PathBuf,
        /// Why (boxed: scene errors are large).
        #[source]
        source: Box<SceneError>,
    },
    /// The scene could not be uploaded to the adapter.
    #[error("uploading {}", path.display())]
    Upload {
        /// The scene file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RenderError,
    },
    /// Two renders of the full frame gave different bytes (the renderer's determinism
    /// broke on this adapter).
    #[error("{scene}: two renders of the full frame gave different bytes")]
    Nondeterministic {
        /// The scene's file name.
        scene: String,
    },
    /// A render failed.
    #[error("{scene}: {what}")]
    Render {
        /// The scene's file name.
        scene: String,
        /// Which render: `warm-up render`, `rendering the full frame`, `rendering tile …`.
        what: String,
        /// Why.
        #[source]
        source: RenderError,
    },
}

/// How one scene is benchmarked besides its render settings.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// How samples are spread over GPU invocations.
    pub parallelism: Parallelism,
    /// Make each run (full frame, tiled, tasks) this many times, interleaved, and keep
    /// the fastest of each (at least once).
    pub repeat: u32,
    /// Tile edge of the tiled and task runs; 0 skips both.
    pub tile: u32,
    /// Tiles per task of the task run (the coordinator's `--batch-size`); 0 skips it.
    pub batch: u32,
}

/// One scene's figures.
#[derive(Serialize, Default, Debug)]
pub struct SceneResult {
    /// The scene's file name.
    pub scene: String,
    /// Its path.
    pub path: String,
    /// Why the scene failed, if it did (then the figures are 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Triangles.
    pub triangles: usize,
    /// BVH nodes.
    pub bvh_nodes: usize,
    /// Loading, BVH included, in ms.
    pub load_ms: f64,
    /// Building the BVH, in ms.
    pub bvh_build_ms: f64,
    /// Geometry bytes on the GPU.
    pub geometry_bytes: u64,
    /// Texture bytes on the GPU.
    pub texture_bytes: u64,
    /// Textures.
    pub texture_count: usize,
    /// Whether the scene is animated.
    pub animated: bool,
    /// Uploading the scene, in ms.
    pub upload_ms: f64,
    /// The full frame as one tile, in s (the fastest run).
    pub render_s: f64,
    /// Camera paths per second of the full frame.
    pub samples_per_second: f64,
    /// The frame as tiles rendered one at a time, in s (the fastest run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiled_s: Option<f64>,
    /// Camera paths per second of the tiled run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiled_samples_per_second: Option<f64>,
    /// `render_s / tiled_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiled_fraction: Option<f64>,
    /// Whether the tiles' bytes equal the full frame's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiled_matches_full: Option<bool>,
    /// The frame as tasks of `batch` tiles, in s (the fastest run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_s: Option<f64>,
    /// Camera paths per second of the task run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_samples_per_second: Option<f64>,
    /// `render_s / task_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_fraction: Option<f64>,
    /// Whether the tasks' tiles' bytes equal the full frame's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_matches_full: Option<bool>,
    /// The scene's warnings (unsupported features).
    pub warnings: Vec<String>,
}

/// The whole benchmark report (`benches/results/render-<device>.json`).
#[derive(Serialize, Debug)]
pub struct Report {
    /// `tessera-bench-render v1`.
    pub format: &'static str,
    /// The device label ([`device_label`] or the caller's).
    pub device: String,
    /// When the run started (`YYYY-MM-DDTHH:MM:SSZ`).
    pub date_utc: String,
    /// The commit that ran, if known.
    pub git_commit: Option<String>,
    /// Whether the work tree had changes.
    pub git_dirty: Option<bool>,
    /// The machine.
    pub host: Host,
    /// The adapter's determinism class.
    pub adapter: DeterminismClass,
    /// Its id (hex).
    pub determinism_class_id: String,
    /// Opening the adapter and compiling the path tracer, in ms.
    pub gpu_init_ms: f64,
    /// The settings.
    pub settings: Settings,
    /// Per scene.
    pub scenes: Vec<SceneResult>,
}

/// The machine a benchmark ran on.
#[derive(Serialize, Debug)]
pub struct Host {
    /// CPU model (Linux).
    pub cpu: Option<String>,
    /// Available parallelism.
    pub cores: usize,
    /// Operating system.
    pub os: &'static str,
    /// 1, 5 and 15-minute load averages when the run started (other work on the machine
    /// slows the benchmark down).
    pub load_average: Option<[f64; 3]>,
}

impl Host {
    /// This machine, now.
    pub fn probe() -> Host {
        Host {
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
            load_average: load_average(),
        }
    }
}

/// The settings of a benchmark run.
#[derive(Serialize, Debug)]
pub struct Settings {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Samples per pixel.
    pub spp: u32,
    /// Maximum bounces.
    pub max_bounces: u32,
    /// Render seed.
    pub seed: u64,
    /// Tile edge of the tiled and task runs (0: none).
    pub tile: u32,
    /// Tiles per task of the task run (0: none).
    pub batch: u32,
    /// Runs of each kind (full frame, tiled, tasks), the fastest kept.
    pub repeat: u32,
    /// The frame rendered.
    pub frame: u32,
    /// `pixel`, or `sample:<threads per pass>`.
    pub parallelism: String,
}

/// How a report names a [`Parallelism`]: `pixel` or `sample:<threads per pass>`.
pub fn parallelism_name(p: Parallelism) -> String {
    match p {
        Parallelism::PixelPerInvocation => "pixel".into(),
        Parallelism::SamplePerInvocation { threads } => format!("sample:{threads}"),
    }
}

/// A short, file-name-safe label for an adapter: `lavapipe`, `nvidia-h100`, ….
pub fn device_label(class: &DeterminismClass) -> String {
    let adapter = class.adapter.to_lowercase();
    if adapter.contains("llvmpipe") || class.driver.to_lowercase().contains("llvmpipe") {
        return "lavapipe".into();
    }
    for gpu in ["h100", "h200", "a100", "l40s", "l4"] {
        if adapter.contains("nvidia") && adapter.contains(gpu) {
            return format!("nvidia-{gpu}");
        }
    }
    let mut label = String::new();
    for c in adapter.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c);
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let label = label.trim_matches('-').to_string();
    if label.is_empty() {
        "unknown".into()
    } else {
        label
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for the current time.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The file name of a scene path, as reports name scenes.
pub fn scene_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Benchmark the scene at `path` on `gpu` (frame 0): its figures, and the full frame's
/// canonical bytes.
pub fn bench_scene(
    gpu: &Arc<Gpu>,
    path: &Path,
    settings: &RenderSettings,
    opts: &BenchOptions,
) -> Result<(SceneResult, Vec<u8>), BenchError> {
    let name = scene_name(path);
    let scene = Scene::load(path, &LoadOptions::default()).map_err(|source| BenchError::Load {
        path: path.into(),
        source: Box::new(source),
    })?;
    let stats = scene.stats();
    let t = Instant::now();
    let renderer = SceneRenderer::new(gpu.clone(), &scene)
        .map_err(|source| BenchError::Upload {
            path: path.into(),
            source,
        })?
        .with_parallelism(opts.parallelism);
    let upload_ms = t.elapsed().as_secs_f64() * 1e3;
    let render = |settings: &RenderSettings, rect: TileRect, what: &dyn Fn() -> String| {
        renderer
            .render_linear(settings, 0, rect)
            .map_err(|source| BenchError::Render {
                scene: name.clone(),
                what: what(),
                source,
            })
    };

    let full = TileRect {
        x: 0,
        y: 0,
        w: settings.width,
        h: settings.height,
    };
    let warm = RenderSettings {
        spp: 1,
        ..settings.clone()
    };
    let warm_rect = TileRect {
        w: settings.width.min(8),
        h: settings.height.min(8),
        ..full
    };
    render(&warm, warm_rect, &|| "warm-up render".into())?;

    let tiles = if opts.tile > 0 {
        tile_layout(settings.width, settings.height, opts.tile)
    } else {
        Vec::new()
    };
    let tasks: Vec<&[TileRect]> = if opts.batch > 0 {
        tiles.chunks(opts.batch as usize).collect()
    } else {
        Vec::new()
    };
    let (width, height) = (settings.width, settings.height);
    let mut render_s = f64::INFINITY;
    let (mut tiled_s, mut task_s) = (f64::INFINITY, f64::INFINITY);
    // Every run's bytes are checked against the first full frame's.
    let mut canonical: Option<Vec<u8>> = None;
    let (mut tiled_matches_full, mut task_matches_full) = (true, true);
    for _ in 0..opts.repeat.max(1) {
        let t = Instant::now();
        let pixels = render(settings, full, &|| "rendering the full frame".into())?;
        render_s = render_s.min(t.elapsed().as_secs_f64());
        let bytes = encode_canonical(&pixels);
        let canonical = canonical.get_or_insert_with(|| bytes.clone());
        if bytes != *canonical {
            return Err(BenchError::Nondeterministic {
                scene: name.clone(),
            });
        }
        if !tiles.is_empty() {
            let mut tiled = vec![0u8; canonical.len()];
            let mut pasted = true;
            let t = Instant::now();
            for &rect in &tiles {
                let bytes = encode_canonical(&render(settings, rect, &|| {
                    format!("rendering tile {rect}")
                })?);
                pasted &= paste(&mut tiled, width, height, rect, &bytes);
            }
            tiled_s = tiled_s.min(t.elapsed().as_secs_f64());
            tiled_matches_full &= pasted && tiled == *canonical;
        }
        if !tasks.is_empty() {
            let mut by_task = vec![0u8; canonical.len()];
            let mut pasted = true;
            let t = Instant::now();
            for task in &tasks {
                let bytes = renderer
                    .render_batch(settings, 0, task)
                    .map_err(|(i, source)| BenchError::Render {
                        scene: name.clone(),
                        what: format!("rendering the task of tiles {}", task_rects(task, i)),
                        source,
                    })?;
                for (&rect, b) in task.iter().zip(&bytes) {
                    pasted &= paste(&mut by_task, width, height, rect, b);
                }
            }
            task_s = task_s.min(t.elapsed().as_secs_f64());
            task_matches_full &= pasted && by_task == *canonical;
        }
    }
    let canonical = canonical.unwrap_or_default();
    let samples = f64::from(settings.width) * f64::from(settings.height) * f64::from(settings.spp);
    let tiled_s = (!tiles.is_empty()).then_some(tiled_s);
    let tiled_matches_full = tiled_s.map(|_| tiled_matches_full);
    let task_s = (!tasks.is_empty()).then_some(task_s);
    let task_matches_full = task_s.map(|_| task_matches_full);

    let result = SceneResult {
        scene: name,
        path: path.display().to_string(),
        error: None,
        triangles: stats.triangles,
        bvh_nodes: stats.bvh_nodes,
        load_ms: stats.load_ms,
        bvh_build_ms: stats.bvh_build_ms,
        geometry_bytes: stats.geometry_bytes,
        texture_bytes: stats.texture_bytes,
        texture_count: stats.texture_count,
        animated: stats.animated,
        upload_ms,
        render_s,
        samples_per_second: samples / render_s,
        tiled_s,
        tiled_samples_per_second: tiled_s.map(|t| samples / t),
        tiled_fraction: tiled_s.map(|t| render_s / t),
        tiled_matches_full,
        task_s,
        task_samples_per_second: task_s.map(|t| samples / t),
        task_fraction: task_s.map(|t| render_s / t),
        task_matches_full,
        warnings: scene.warnings().to_vec(),
    };
    Ok((result, canonical))
}

/// How an error names a task: its first tile and, when the renderer named another, that
/// one too.
fn task_rects(task: &[TileRect], failed: usize) -> String {
    let first = task.first().map_or_else(|| "-".into(), ToString::to_string);
    match task.get(failed) {
        Some(r) if failed > 0 => format!("from {first} (at {r})"),
        _ => format!("from {first}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(adapter: &str, driver: &str) -> DeterminismClass {
        DeterminismClass {
            backend: "vulkan".into(),
            adapter: adapter.into(),
            driver: driver.into(),
            driver_info: String::new(),
            renderer_build: String::new(),
            shader_hash: String::new(),
        }
    }

    #[test]
    fn device_labels() {
        assert_eq!(
            device_label(&class("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe")),
            "lavapipe"
        );
        assert_eq!(
            device_label(&class("NVIDIA H100 80GB HBM3", "NVIDIA")),
            "nvidia-h100"
        );
        assert_eq!(
            device_label(&class("AMD Radeon RX 7900 XTX", "radv")),
            "amd-radeon-rx-7900-xtx"
        );
    }

    #[test]
    fn utc_now_is_well_formed() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
