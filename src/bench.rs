//! `tessera bench render`: load, build and render each sample scene at fixed settings on
//! this machine's adapter, and record the timings with everything needed to reproduce
//! them (adapter, driver, determinism class, git commit, date) as JSON under
//! `benches/results/`.
//!
//! What is timed, per scene (wall clock, one thread driving the GPU):
//! - `load_ms`, `bvh_build_ms`: from [`tessera_renderer::Scene::stats`] (`load_ms`
//!   includes the BVH build).
//! - `upload_ms`: [`SceneRenderer::new`], copying the scene to the GPU.
//! - `render_s`: one full frame rendered as a single tile, from the call until the linear
//!   pixels are back on the CPU (after an untimed 8×8, 1 spp warm-up render). With
//!   `--repeat N` the fastest of N runs.
//! - `tiled_s`: the same frame as `--tile`-sized tiles, one after another, as a render
//!   node does it; `tiled_matches_full` checks that the tiles' canonical bytes equal the
//!   full frame's (the renderer's tile = crop guarantee).
//!
//! `samples_per_second` = `width × height × spp / render_s` (camera paths per second,
//! whatever their length); `tiled_samples_per_second` the same over `tiled_s`, and
//! `tiled_fraction` = `render_s / tiled_s`: how much of the full frame's throughput a
//! node keeps at this tile size (the occupancy a farm tile leaves on this adapter).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessera_protocol::{tile_layout, RenderSettings, TileRect};
use tessera_renderer::{encode_canonical, Gpu, LoadOptions, Parallelism, Scene, SceneRenderer};

use tessera_images as images;

/// `tessera bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time loading, BVH building and rendering of each sample scene on this adapter.
    Render(BenchRenderArgs),
    /// Tiles per second through the whole farm pipeline (stand-in renderer), in process
    /// and over RabbitMQ, and the latency from a frame's last tile to its payment.
    Pipeline(crate::bench_pipeline::BenchPipelineArgs),
}

/// Arguments of `tessera bench render`.
#[derive(Args)]
pub struct BenchRenderArgs {
    /// Scenes, comma-separated: file paths, or names looked up in --scene-dir (with or
    /// without the .glb/.gltf extension). Default: every .glb and .gltf in --scene-dir.
    #[arg(long, value_delimiter = ',')]
    scenes: Vec<String>,
    /// Folder of the sample scenes.
    #[arg(long, default_value = "scenes")]
    scene_dir: PathBuf,
    /// Also benchmark DIR/large.gltf (the ≥2M-triangle scene), generating it first with
    /// `gen-scenes --large DIR` when it is missing.
    #[arg(long)]
    large: Option<PathBuf>,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 256)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 256)]
    height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 64)]
    spp: u32,
    /// Maximum bounces (as Cycles counts them).
    #[arg(long, default_value_t = 8)]
    max_bounces: u32,
    /// Render seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tile edge of the tiled run; 0 skips it.
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// Render each frame this many times and keep the fastest.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Device label used in the default output name (default: from the adapter, e.g.
    /// `lavapipe`, `nvidia-h100`).
    #[arg(long)]
    device: Option<String>,
    /// JSON report path (default: benches/results/render-<device>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write each full frame as <scene>.exr (linear) and <scene>.png here.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// How samples are spread over GPU invocations: `auto` (a pixel per invocation on a
    /// CPU adapter, else a sample per invocation), `pixel` or `sample`. The bytes are the
    /// same either way (`tiled_matches_full` and the images show it).
    #[arg(long, value_enum, default_value_t = Spread::Auto)]
    parallelism: Spread,
    /// Invocations per pass with a sample per invocation.
    #[arg(long, default_value_t = tessera_renderer::GPU_THREADS_PER_PASS)]
    threads_per_pass: u32,
}

/// `--parallelism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Spread {
    Auto,
    Pixel,
    Sample,
}

impl BenchRenderArgs {
    fn parallelism(&self, gpu: &Gpu) -> Parallelism {
        match self.parallelism {
            Spread::Auto => Parallelism::for_gpu(gpu),
            Spread::Pixel => Parallelism::PixelPerInvocation,
            Spread::Sample => Parallelism::SamplePerInvocation {
                threads: self.threads_per_pass,
            },
        }
    }
}

/// Run a `bench` subcommand; `Ok(false)` when a scene failed (the report is still written).
pub fn run(cmd: BenchCommand) -> Result<bool> {
    match cmd {
        BenchCommand::Render(a) => bench_render(a),
        BenchCommand::Pipeline(a) => crate::bench_pipeline::run(a),
    }
}

/// One scene's figures.
#[derive(Serialize, Default)]
struct SceneResult {
    scene: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    triangles: usize,
    bvh_nodes: usize,
    load_ms: f64,
    bvh_build_ms: f64,
    geometry_bytes: u64,
    texture_bytes: u64,
    texture_count: usize,
    animated: bool,
    upload_ms: f64,
    render_s: f64,
    samples_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tiled_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tiled_samples_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tiled_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tiled_matches_full: Option<bool>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    format: &'static str,
    device: String,
    date_utc: String,
    git_commit: Option<String>,
    git_dirty: Option<bool>,
    host: Host,
    adapter: tessera_protocol::DeterminismClass,
    determinism_class_id: String,
    gpu_init_ms: f64,
    settings: Settings,
    scenes: Vec<SceneResult>,
}

#[derive(Serialize)]
struct Host {
    cpu: Option<String>,
    cores: usize,
    os: &'static str,
    /// 1, 5 and 15-minute load averages when the run started (other work on the machine
    /// slows the benchmark down).
    load_average: Option<[f64; 3]>,
}

#[derive(Serialize)]
struct Settings {
    width: u32,
    height: u32,
    spp: u32,
    max_bounces: u32,
    seed: u64,
    tile: u32,
    repeat: u32,
    frame: u32,
    /// `pixel`, or `sample:<threads per pass>`.
    parallelism: String,
}

fn resolve_scenes(a: &BenchRenderArgs) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if a.scenes.is_empty() {
        let entries = std::fs::read_dir(&a.scene_dir)
            .with_context(|| format!("listing --scene-dir {}", a.scene_dir.display()))?;
        for e in entries {
            let p = e?.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("glb" | "gltf")) {
                out.push(p);
            }
        }
        out.sort();
    } else {
        for s in &a.scenes {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            let direct = PathBuf::from(s);
            let candidates = [
                direct.clone(),
                a.scene_dir.join(s),
                a.scene_dir.join(format!("{s}.glb")),
                a.scene_dir.join(format!("{s}.gltf")),
            ];
            match candidates.iter().find(|p| p.is_file()) {
                Some(p) => out.push(p.clone()),
                None => bail!(
                    "--scenes: {s:?} is neither a file nor a scene in {}",
                    a.scene_dir.display()
                ),
            }
        }
    }
    if let Some(dir) = &a.large {
        out.push(large_scene(dir)?);
    }
    if out.is_empty() {
        bail!("no scenes to benchmark in {}", a.scene_dir.display());
    }
    Ok(out)
}

/// `DIR/large.gltf`, generated by the `gen-scenes` binary beside this one if missing.
fn large_scene(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("large.gltf");
    if path.is_file() {
        return Ok(path);
    }
    let gen = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("gen-scenes")))
        .filter(|g| g.is_file());
    let Some(gen) = gen else {
        bail!(
            "{} is missing and no gen-scenes binary is beside tessera: run \
             `cargo run --release -p tessera-scenes --bin gen-scenes -- --large {}`",
            path.display(),
            dir.display()
        );
    };
    eprintln!("generating {} with {}", path.display(), gen.display());
    let status = std::process::Command::new(&gen)
        .arg("--large")
        .arg(dir)
        .status()
        .with_context(|| format!("running {}", gen.display()))?;
    if !status.success() || !path.is_file() {
        bail!(
            "{} --large {} failed ({status}) or wrote no large.gltf",
            gen.display(),
            dir.display()
        );
    }
    Ok(path)
}

/// A short, file-name-safe label for an adapter: `lavapipe`, `nvidia-h100`, ….
pub fn device_label(class: &tessera_protocol::DeterminismClass) -> String {
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

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for the current time.
fn utc_now() -> String {
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

fn bench_scene(
    gpu: &Arc<Gpu>,
    path: &Path,
    a: &BenchRenderArgs,
    settings: &RenderSettings,
) -> Result<SceneResult> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let scene = Scene::load(path, &LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    let stats = scene.stats();
    let t = Instant::now();
    let renderer = SceneRenderer::new(gpu.clone(), &scene)
        .with_context(|| format!("uploading {}", path.display()))?
        .with_parallelism(a.parallelism(gpu));
    let upload_ms = t.elapsed().as_secs_f64() * 1e3;

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
    renderer
        .render_linear(&warm, 0, warm_rect)
        .with_context(|| format!("{name}: warm-up render"))?;

    let mut render_s = f64::INFINITY;
    let mut pixels = Vec::new();
    for _ in 0..a.repeat.max(1) {
        let t = Instant::now();
        pixels = renderer
            .render_linear(settings, 0, full)
            .with_context(|| format!("{name}: rendering the full frame"))?;
        render_s = render_s.min(t.elapsed().as_secs_f64());
    }
    let canonical = encode_canonical(&pixels);
    let samples = f64::from(settings.width) * f64::from(settings.height) * f64::from(settings.spp);

    let (mut tiled_s, mut tiled_matches_full) = (None, None);
    if a.tile > 0 {
        let w = settings.width as usize;
        let mut tiled = vec![0u8; canonical.len()];
        let t = Instant::now();
        for rect in tile_layout(settings.width, settings.height, a.tile) {
            let bytes = encode_canonical(
                &renderer
                    .render_linear(settings, 0, rect)
                    .with_context(|| format!("{name}: rendering tile {rect}"))?,
            );
            let row = rect.w as usize * 8;
            for y in 0..rect.h as usize {
                let dst = ((rect.y as usize + y) * w + rect.x as usize) * 8;
                tiled[dst..dst + row].copy_from_slice(&bytes[y * row..(y + 1) * row]);
            }
        }
        tiled_s = Some(t.elapsed().as_secs_f64());
        tiled_matches_full = Some(tiled == canonical);
    }

    if let Some(dir) = &a.images {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = Path::new(&name)
            .file_stem()
            .map_or_else(|| name.clone(), |s| s.to_string_lossy().into());
        images::write_exr(
            &dir.join(format!("{stem}.exr")),
            settings.width,
            settings.height,
            &canonical,
        )?;
        images::write_png(
            &dir.join(format!("{stem}.png")),
            settings.width,
            settings.height,
            &canonical,
            &images::ViewTransform::default(),
        )?;
    }

    Ok(SceneResult {
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
        warnings: scene.warnings().to_vec(),
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn print_table(r: &Report) {
    let s = &r.settings;
    println!(
        "tessera bench render on {} ({} {}), {}x{}, {} spp, {} bounces, commit {}{}",
        r.device,
        r.adapter.adapter,
        r.adapter.driver_info,
        s.width,
        s.height,
        s.spp,
        s.max_bounces,
        r.git_commit
            .as_deref()
            .map_or("?", |c| &c[..c.len().min(10)]),
        if r.git_dirty == Some(true) {
            " (dirty)"
        } else {
            ""
        }
    );
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>12} {:>16} {:>6}",
        "scene",
        "triangles",
        "load ms",
        "bvh ms",
        "geo MiB",
        "tex MiB",
        "render s",
        "samples/s",
        "tiled s (of full)",
        "tiles="
    );
    for x in &r.scenes {
        if let Some(e) = &x.error {
            println!("{:<22} FAILED: {e}", x.scene);
            continue;
        }
        println!(
            "{:<22} {:>10} {:>9.1} {:>9.1} {:>8} {:>8} {:>9.3} {:>12.0} {:>16} {:>6}",
            x.scene,
            x.triangles,
            x.load_ms,
            x.bvh_build_ms,
            mib(x.geometry_bytes),
            mib(x.texture_bytes),
            x.render_s,
            x.samples_per_second,
            x.tiled_s.map_or("-".into(), |t| format!(
                "{t:.3} ({:.0} %)",
                100.0 * x.tiled_fraction.unwrap_or(0.0)
            )),
            x.tiled_matches_full
                .map_or("-", |m| if m { "yes" } else { "NO" }),
        );
    }
}

fn bench_render(a: BenchRenderArgs) -> Result<bool> {
    crate::check_render_flags(a.width, a.height, a.spp, a.max_bounces)?;
    if a.repeat == 0 || a.repeat > 100 {
        bail!("--repeat {}: must be 1..=100", a.repeat);
    }
    let scenes = resolve_scenes(&a)?;
    // What ran, as of the start: commits may land while a long benchmark runs.
    let load = load_average();
    let date_utc = utc_now();
    let git_commit = git(&["rev-parse", "HEAD"]);
    let git_dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    let t = Instant::now();
    let gpu = Arc::new(Gpu::new()?);
    let gpu_init_ms = t.elapsed().as_secs_f64() * 1e3;
    let class = gpu.class();
    let device = a.device.clone().unwrap_or_else(|| device_label(&class));
    eprintln!("adapter: {class}");
    let settings = RenderSettings {
        width: a.width,
        height: a.height,
        spp: a.spp,
        max_bounces: a.max_bounces,
        seed: a.seed,
        camera: None,
        frame_rate: Default::default(),
    };
    let mut results = Vec::new();
    let mut ok = true;
    for path in &scenes {
        eprintln!("bench: {}", path.display());
        match bench_scene(&gpu, path, &a, &settings) {
            Ok(r) => {
                eprintln!(
                    "bench: {}: {:.3} s, {:.0} samples/s",
                    r.scene, r.render_s, r.samples_per_second
                );
                results.push(r);
            }
            Err(e) => {
                ok = false;
                eprintln!("bench: {}: {e:#}", path.display());
                results.push(SceneResult {
                    scene: path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into(),
                    ),
                    path: path.display().to_string(),
                    error: Some(format!("{e:#}")),
                    ..Default::default()
                });
            }
        }
    }
    let report = Report {
        format: "tessera-bench-render v1",
        device: device.clone(),
        date_utc,
        git_commit,
        git_dirty,
        host: Host {
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
            load_average: load,
        },
        determinism_class_id: hex::encode(class.id()),
        adapter: class,
        gpu_init_ms,
        settings: Settings {
            width: a.width,
            height: a.height,
            spp: a.spp,
            max_bounces: a.max_bounces,
            seed: a.seed,
            tile: a.tile,
            repeat: a.repeat,
            frame: 0,
            parallelism: match a.parallelism(&gpu) {
                Parallelism::PixelPerInvocation => "pixel".into(),
                Parallelism::SamplePerInvocation { threads } => format!("sample:{threads}"),
            },
        },
        scenes: results,
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("benches/results/render-{device}.json")));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&out, format!("{json}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    if a.json {
        println!("{json}");
    } else {
        print_table(&report);
        println!("wrote {}", out.display());
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(adapter: &str, driver: &str) -> tessera_protocol::DeterminismClass {
        tessera_protocol::DeterminismClass {
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
