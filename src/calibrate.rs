//! `tessera calibrate`: the command line of the tolerance calibration, whose method and
//! report are `tessera_verifier::calibrate` (docs/CALIBRATION.md has the numbers). Here:
//! the flags, and the command of the child process that renders one class
//! (`tessera calibrate --render-spec`; one per class because the drivers read their
//! environment when they load: `tessera_renderer::class_child` starts it with the class's
//! variables, e.g. `LP_NATIVE_VECTOR_WIDTH=128`, and reads its frames back; the presets
//! and the child's renders, every scene tile by tile as a node does, are
//! `tessera_renderer::class_render`); and the output (the table is
//! `tessera_verifier::calibrate_table`).
//!
//! Exit code 1 when a class cannot be rendered, fewer than two distinct class ids result,
//! the corpus cannot be separated, or the default thresholds misjudge a pair.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tessera_protocol::RenderSettings;
use tessera_renderer::bench::scene_name;
use tessera_renderer::class_child::{self, own_binary};
use tessera_renderer::class_render::{render_spec, ClassEnv, FrameJob, RenderSpec};
use tessera_renderer::scene_dir::resolve_scenes;
use tessera_renderer::{LoadOptions, Scene};
use tessera_verifier::calibrate::{self, render_jobs, ClassFrames, ClassReport, ReportSettings};
use tessera_verifier::calibrate_table;

/// Arguments of `tessera calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Scenes, comma-separated: file paths, or names looked up in --scene-dir (with or
    /// without the .glb/.gltf extension). Default: every .glb and .gltf in --scene-dir.
    #[arg(long, value_delimiter = ',')]
    scenes: Vec<String>,
    /// Folder of the sample scenes.
    #[arg(long, default_value = "scenes")]
    scene_dir: PathBuf,
    /// Determinism classes to render in, comma-separated; the first is the cheating
    /// node's. Presets: `default` (the adapter wgpu picks here: a GPU when there is one),
    /// `lavapipe`, `lp128` (lavapipe, 128-bit vectors), `sse41` (lavapipe as on a CPU
    /// without AVX and FMA), `gl` (wgpu's OpenGL backend), and `vk-icd:FILE` (lavapipe
    /// from the Vulkan driver manifest FILE, e.g. another Mesa version unpacked beside the
    /// installed one).
    #[arg(long, value_delimiter = ',', default_value = "default,lp128,sse41")]
    classes: Vec<String>,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 128)]
    width: u32,
    /// Frame height in pixels (the default gives 64×64 tiles and, at the bottom edge,
    /// 64×32 ones).
    #[arg(long, default_value_t = 96)]
    height: u32,
    /// Samples per pixel of the honest renders (at least 4: the cheats render ½ and ¼).
    #[arg(long, default_value_t = 16)]
    spp: u32,
    /// Tile edge in pixels.
    #[arg(long = "tile", default_value_t = 64)]
    tile: u32,
    /// Maximum bounces (as Cycles counts them).
    #[arg(long, default_value_t = 8)]
    max_bounces: u32,
    /// Render seed of the honest renders (the replay cheat uses seed + 1).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the tables.
    #[arg(long)]
    json: bool,
    /// Put every compared pair into the JSON report (large).
    #[arg(long)]
    records: bool,
    /// Internal: render the scenes of this spec file in this process (the child of one
    /// class) and write the frames to --render-out.
    #[arg(long, hide = true, requires = "render_out")]
    render_spec: Option<PathBuf>,
    /// Internal: where the child writes its frames.
    #[arg(long, hide = true)]
    render_out: Option<PathBuf>,
}

/// The validated settings of one calibration.
struct Config {
    scenes: Vec<PathBuf>,
    classes: Vec<ClassEnv>,
    settings: ReportSettings,
}

impl Config {
    fn from_args(a: &CalibrateArgs) -> Result<Config> {
        crate::check_render_flags(a.width, a.height, a.spp, a.max_bounces)?;
        if a.spp < 4 {
            bail!(
                "--spp {}: at least 4 (the low-spp cheats render ½ and ¼)",
                a.spp
            );
        }
        if a.tile == 0 || a.tile > 4096 {
            bail!("--tile {}: must be 1..=4096", a.tile);
        }
        if a.seed == u64::MAX {
            bail!("--seed {}: the replay cheat renders seed + 1", a.seed);
        }
        let classes = class_child::parse_classes(&a.classes)?;
        Ok(Config {
            scenes: match resolve_scenes(&a.scenes, &a.scene_dir)? {
                s if s.is_empty() => {
                    bail!("no scenes to calibrate on in {}", a.scene_dir.display())
                }
                s => s,
            },
            classes,
            settings: ReportSettings {
                width: a.width,
                height: a.height,
                spp: a.spp,
                tile: a.tile,
                max_bounces: a.max_bounces,
                seed: a.seed,
                frame: 0,
            },
        })
    }
}

/// Run one class's child process and read back what it rendered.
fn render_class(cfg: &Config, class_idx: usize, tmp: &Path) -> Result<(ClassReport, ClassFrames)> {
    let class = &cfg.classes[class_idx];
    let s = &cfg.settings;
    let jobs: Vec<FrameJob> = render_jobs(s, class_idx)
        .into_iter()
        .map(|j| FrameJob {
            name: j.name,
            spp: j.spp,
            seed: j.seed,
            frame: j.frame,
        })
        .collect();
    let spec = RenderSpec {
        scenes: cfg.scenes.clone(),
        settings: RenderSettings {
            width: s.width,
            height: s.height,
            spp: s.spp,
            max_bounces: s.max_bounces,
            seed: s.seed,
            camera: None,
            frame_rate: Default::default(),
        },
        tile: s.tile,
        jobs,
    };
    let exe = own_binary()?;
    let child = |spec: &Path, out: &Path| {
        let mut cmd = Command::new(&exe);
        cmd.arg("calibrate")
            .arg("--render-spec")
            .arg(spec)
            .arg("--render-out")
            .arg(out);
        cmd
    };
    let dir = tmp.join(format!("class-{class_idx}"));
    let (child, frames) =
        class_child::render_class(class, &spec, &dir, &child, &mut |l| eprintln!("{l}"))?;
    let report = ClassReport {
        name: class.name.clone(),
        about: class.about.clone(),
        env: class.env.iter().cloned().collect(),
        id: hex::encode(child.class.id()),
        class: child.class,
        gpu_init_s: child.gpu_init_s,
        render_s: child.render_s,
    };
    Ok((report, frames))
}

/// `tessera calibrate` (and its child, with `--render-spec`). `Ok(false)` when the
/// defaults do not separate the corpus or no thresholds can be derived.
pub fn run(a: CalibrateArgs) -> Result<bool> {
    if let Some(spec) = &a.render_spec {
        let out = a
            .render_out
            .as_deref()
            .ok_or_else(|| anyhow!("--render-spec needs --render-out"))?;
        render_spec(spec, out, &mut |line| eprintln!("{line}"))?;
        return Ok(true);
    }
    let started = Instant::now();
    let cfg = Config::from_args(&a)?;
    // Load every scene here first, so that a bad file is named before any child starts.
    for path in &cfg.scenes {
        Scene::load(path, &LoadOptions::default())
            .with_context(|| format!("loading scene {}", path.display()))?;
    }
    let scenes: Vec<String> = cfg.scenes.iter().map(|p| scene_name(p)).collect();
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let mut classes = Vec::new();
    let mut frames = Vec::new();
    for idx in 0..cfg.classes.len() {
        let (report, f) = render_class(&cfg, idx, tmp.path())?;
        classes.push(report);
        frames.push(f);
    }
    let rendered: Vec<_> = classes.iter().map(|c| &c.class).collect();
    class_child::check_distinct(&cfg.classes, &rendered)?;
    let mut report = calibrate::report(&cfg.settings, scenes, classes, &frames, a.records)?;
    report.runtime_s = started.elapsed().as_secs_f64();
    if let Some(path) = &a.out {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        calibrate_table::write_table(&mut std::io::stdout().lock(), &report)?;
    }
    Ok(report.separated && report.blocks.separated && report.derived.is_some())
}
