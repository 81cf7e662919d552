//! `tessera bench`: the flags and output of `bench render`, whose measuring is
//! `tessera_renderer::bench` (what is timed is described there; the run over the scenes
//! and the report file are `tessera_renderer::bench_run`, the scene lookup
//! `tessera_renderer::scene_dir`, the table `tessera_renderer::bench_table`); the report
//! goes as JSON under `benches/results/`, with the adapter, driver, determinism class, git
//! commit and date needed to reproduce it. `bench pipeline` is [`crate::bench_pipeline`].

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessera_images as images;
use tessera_protocol::RenderSettings;
use tessera_renderer::bench::{
    device_label, parallelism_name, BenchOptions, Report, SceneResult, Settings,
};
use tessera_renderer::bench_run::{bench_scenes, default_report_path, write_report, Provenance};
use tessera_renderer::scene_dir::{large_scene, resolve_scenes as resolve_scene_names};
use tessera_renderer::{Gpu, Parallelism};

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
    /// Tile edge of the tiled runs (tiles one at a time, and tasks of --batch tiles);
    /// 0 skips both.
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// Tiles per task of the task run, cut from the frame's tiles in order as the
    /// coordinator cuts them (its --batch-size) and each rendered as `tessera node`
    /// renders a task; 0 skips it.
    #[arg(long, default_value_t = 16)]
    batch: u32,
    /// Make each run (full frame, tiles, tasks) this many times, interleaved, and keep
    /// the fastest of each.
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

/// The scenes of `--scenes`/`--scene-dir`, and `--large`'s.
fn resolve_scenes(a: &BenchRenderArgs) -> Result<Vec<PathBuf>> {
    let mut out = resolve_scene_names(&a.scenes, &a.scene_dir)?;
    if let Some(dir) = &a.large {
        out.push(large_scene(dir, &mut |line| eprintln!("{line}"))?);
    }
    if out.is_empty() {
        bail!("no scenes to benchmark in {}", a.scene_dir.display());
    }
    Ok(out)
}

/// Write a scene's full frame as `<stem>.exr` and `<stem>.png` in `dir`.
fn write_images(dir: &Path, result: &SceneResult, s: &RenderSettings, frame: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = &result.scene;
    let stem = Path::new(name)
        .file_stem()
        .map_or_else(|| name.clone(), |s| s.to_string_lossy().into());
    images::write_exr(&dir.join(format!("{stem}.exr")), s.width, s.height, frame)?;
    let view = images::ViewTransform::default();
    images::write_png(
        &dir.join(format!("{stem}.png")),
        s.width,
        s.height,
        frame,
        &view,
    )?;
    Ok(())
}

fn bench_render(a: BenchRenderArgs) -> Result<bool> {
    crate::check_render_flags(a.width, a.height, a.spp, a.max_bounces)?;
    if a.repeat == 0 || a.repeat > 100 {
        bail!("--repeat {}: must be 1..=100", a.repeat);
    }
    let scenes = resolve_scenes(&a)?;
    let provenance = Provenance::probe();
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
    let opts = BenchOptions {
        parallelism: a.parallelism(&gpu),
        repeat: a.repeat,
        tile: a.tile,
        batch: a.batch,
    };
    let mut on_frame = |result: &SceneResult, frame: &[u8]| match &a.images {
        Some(dir) => write_images(dir, result, &settings, frame).map_err(Into::into),
        None => Ok(()),
    };
    let (results, ok) = bench_scenes(&gpu, &scenes, &settings, &opts, &mut on_frame, &mut |l| {
        eprintln!("{l}")
    });
    let bench_settings = Settings {
        width: a.width,
        height: a.height,
        spp: a.spp,
        max_bounces: a.max_bounces,
        seed: a.seed,
        tile: a.tile,
        batch: a.batch,
        repeat: a.repeat,
        frame: 0,
        parallelism: parallelism_name(opts.parallelism),
    };
    let report = Report::new(
        provenance,
        device.clone(),
        class,
        gpu_init_ms,
        bench_settings,
        results,
    );
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_report_path(&device));
    let json = write_report(&out, &report)?;
    if a.json {
        println!("{json}");
    } else {
        tessera_renderer::bench_table::write_table(&mut std::io::stdout().lock(), &report)?;
        println!("wrote {}", out.display());
    }
    Ok(ok)
}
