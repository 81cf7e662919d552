//! `tessera calibrate`: measures how far apart honest renders of different determinism
//! classes are, and how far a corpus of forged tiles is from an honest re-render, and
//! derives the cross-class tolerance (`Tolerance::default()`) from the two.
//!
//! Method (docs/CALIBRATION.md has the numbers):
//! 1. Every sample scene is rendered in each determinism class of `--classes`, one child
//!    process per class (`tessera calibrate --render-spec`), because the drivers read
//!    their environment when they load: the parent sets the class's variables (e.g.
//!    `LP_NATIVE_VECTOR_WIDTH=128`) and the child renders every scene tile by tile, as a
//!    node does, writing raw canonical frames. The first class is the cheating node's; it
//!    also renders what the cheats need (half and quarter spp, frame + 1, seed + 1).
//! 2. Honest pairs: every tile committed in class A and re-rendered in class B, for every
//!    ordered pair of classes (A ≠ B).
//! 3. Cheats: per scene and tile, the node's class forges the tile ([`Cheat`]) and every
//!    class re-renders it (its own class included: same-class checks compare metrics too
//!    when bytes differ). A cheat that changes fewer than 1 % of the tile's pixels
//!    ([`FORGERY_MIN_CHANGED_PPM`]; e.g. a neighbour's pixels pasted over a flat wall, or
//!    any cheat in a tile that is already converged) forged nothing the metrics can see:
//!    it is listed apart with its bands, and never counted as caught.
//! 4. Every pair gets [`tile_metrics`] and its band under `Tolerance::default()`;
//!    [`derive_tolerance`] derives thresholds from the measurements, and the report gives
//!    the margins and whether the defaults agree with the derived thresholds.
//!
//! Exit code 1 when a class cannot be rendered, fewer than two distinct class ids result,
//! the corpus cannot be separated, or the default thresholds misjudge a pair.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use tessera_protocol::canonical::{crop, f32_to_tile, tile_to_f32};
use tessera_protocol::tolerance::{Band, Limits, TileMetrics, Tolerance, PSNR_CAP_CDB};
use tessera_protocol::{tile_layout, DeterminismClass, RenderSettings, TileRect};
use tessera_renderer::{Gpu, LoadOptions, Scene, SceneRenderer};
use tessera_verifier::tolerance::tile_metrics;

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

/// A way of getting a determinism class: environment variables for the child process.
struct Preset {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    about: &'static str,
}

/// Mesa's lavapipe, whatever else the machine has.
const LAVAPIPE: [(&str, &str); 2] = [
    ("WGPU_BACKEND", "vulkan"),
    ("WGPU_ADAPTER_NAME", "llvmpipe"),
];

/// A class to render in: a preset, or lavapipe from a given Vulkan driver manifest.
#[derive(Clone, Debug)]
struct Class {
    name: String,
    env: Vec<(String, String)>,
    about: String,
}

impl Class {
    /// A `--classes` entry: a preset's name or `vk-icd:FILE`.
    fn parse(name: &str) -> Result<Class> {
        if let Some(file) = name.strip_prefix("vk-icd:") {
            let path = Path::new(file);
            if !path.is_file() {
                bail!("--classes {name}: no Vulkan driver manifest (ICD JSON) at {file}");
            }
            let mut env: Vec<(String, String)> = LAVAPIPE
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            env.push(("VK_ICD_FILENAMES".into(), file.into()));
            return Ok(Class {
                name: name.into(),
                env,
                about: format!("lavapipe from the Vulkan driver manifest {file}"),
            });
        }
        let Some(p) = PRESETS.iter().find(|p| p.name == name) else {
            let names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
            bail!(
                "--classes: unknown class {name:?}; expected some of {}, or vk-icd:FILE",
                names.join(", ")
            );
        };
        Ok(Class {
            name: p.name.into(),
            env: p
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            about: p.about.into(),
        })
    }
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "default",
        env: &[],
        about: "the adapter wgpu picks in this environment (a GPU when there is one)",
    },
    Preset {
        name: "lavapipe",
        env: &LAVAPIPE,
        about: "Mesa lavapipe (CPU Vulkan) at the CPU's native vector width",
    },
    Preset {
        name: "lp128",
        env: &[LAVAPIPE[0], LAVAPIPE[1], ("LP_NATIVE_VECTOR_WIDTH", "128")],
        about: "lavapipe with 128-bit vectors",
    },
    Preset {
        name: "sse41",
        env: &[
            LAVAPIPE[0],
            LAVAPIPE[1],
            ("GALLIUM_OVERRIDE_CPU_CAPS", "sse4.1"),
        ],
        about: "lavapipe as on a CPU without AVX, AVX2 and FMA (128-bit vectors)",
    },
    Preset {
        name: "gl",
        env: &[("WGPU_BACKEND", "gl")],
        about: "wgpu's OpenGL backend (Mesa llvmpipe GL without a GPU)",
    },
];

/// The validated settings of one calibration.
struct Config {
    scenes: Vec<PathBuf>,
    classes: Vec<Class>,
    width: u32,
    height: u32,
    spp: u32,
    tile: u32,
    max_bounces: u32,
    seed: u64,
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
        let mut classes: Vec<Class> = Vec::new();
        for name in &a.classes {
            let p = Class::parse(name.trim())?;
            if classes.iter().any(|c| c.name == p.name) {
                bail!("--classes: {name:?} is listed twice");
            }
            classes.push(p);
        }
        if classes.len() < 2 {
            bail!(
                "--classes: at least two classes are needed to calibrate, got {}",
                classes.len()
            );
        }
        Ok(Config {
            scenes: resolve_scenes(&a.scenes, &a.scene_dir)?,
            classes,
            width: a.width,
            height: a.height,
            spp: a.spp,
            tile: a.tile,
            max_bounces: a.max_bounces,
            seed: a.seed,
        })
    }

    fn settings(&self, spp: u32, seed: u64) -> RenderSettings {
        RenderSettings {
            width: self.width,
            height: self.height,
            spp,
            max_bounces: self.max_bounces,
            seed,
            camera: None,
            frame_rate: Default::default(),
        }
    }

    /// What each class renders: the honest frame, and for the node's class (the first)
    /// what its cheats need.
    fn jobs(&self, class_idx: usize) -> Vec<RenderJob> {
        let job = |name: &str, spp: u32, seed: u64, frame: u32| RenderJob {
            name: name.into(),
            spp,
            seed,
            frame,
        };
        let mut jobs = vec![job(HONEST, self.spp, self.seed, 0)];
        if class_idx == 0 {
            jobs.extend([
                job(HALF_SPP, self.spp / 2, self.seed, 0),
                job(QUARTER_SPP, self.spp / 4, self.seed, 0),
                job(NEXT_FRAME, self.spp, self.seed, 1),
                job(REPLAY, self.spp, self.seed + 1, 0),
            ]);
        }
        jobs
    }
}

const HONEST: &str = "honest";
const HALF_SPP: &str = "half-spp";
const QUARTER_SPP: &str = "quarter-spp";
const NEXT_FRAME: &str = "next-frame";
const REPLAY: &str = "replay";

/// Scene paths from `--scenes` (paths or names in `dir`), or every scene in `dir`.
fn resolve_scenes(names: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if names.is_empty() {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("listing --scene-dir {}", dir.display()))?;
        for e in entries {
            let p = e
                .with_context(|| format!("listing --scene-dir {}", dir.display()))?
                .path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("glb" | "gltf")) {
                out.push(p);
            }
        }
        out.sort();
    } else {
        for s in names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let candidates = [
                PathBuf::from(s),
                dir.join(s),
                dir.join(format!("{s}.glb")),
                dir.join(format!("{s}.gltf")),
            ];
            match candidates.iter().find(|p| p.is_file()) {
                Some(p) => out.push(p.clone()),
                None => bail!(
                    "--scenes: {s:?} is neither a file nor a scene in {}",
                    dir.display()
                ),
            }
        }
    }
    if out.is_empty() {
        bail!("no scenes to calibrate on in {}", dir.display());
    }
    Ok(out)
}

/// One frame a child renders for every scene.
#[derive(Clone, Serialize, Deserialize)]
struct RenderJob {
    name: String,
    spp: u32,
    seed: u64,
    frame: u32,
}

/// What the parent asks a child to render.
#[derive(Serialize, Deserialize)]
struct RenderSpec {
    scenes: Vec<PathBuf>,
    settings: RenderSettings,
    tile: u32,
    jobs: Vec<RenderJob>,
}

/// What a child reports besides its frames (`class.json`).
#[derive(Serialize, Deserialize)]
struct ChildReport {
    class: DeterminismClass,
    gpu_init_s: f64,
    render_s: f64,
}

fn frame_file(dir: &Path, scene_idx: usize, job: &str) -> PathBuf {
    dir.join(format!("{scene_idx}-{job}.bin"))
}

/// The child: render every job of `spec` for every scene, tile by tile as a node does,
/// and write each frame's canonical bytes and the class to `out`.
fn render_child(spec_path: &Path, out: &Path) -> Result<bool> {
    let text = std::fs::read(spec_path)
        .with_context(|| format!("reading render spec {}", spec_path.display()))?;
    let spec: RenderSpec = serde_json::from_slice(&text)
        .with_context(|| format!("render spec {}: not valid", spec_path.display()))?;
    let started = Instant::now();
    let gpu = Arc::new(Gpu::new()?);
    let gpu_init_s = started.elapsed().as_secs_f64();
    eprintln!("adapter: {}", gpu.class());
    let started = Instant::now();
    let (w, h) = (spec.settings.width, spec.settings.height);
    for (scene_idx, path) in spec.scenes.iter().enumerate() {
        let scene_started = Instant::now();
        let scene = Scene::load(path, &LoadOptions::default())
            .with_context(|| format!("loading scene {}", path.display()))?;
        let renderer = SceneRenderer::new(gpu.clone(), &scene)
            .with_context(|| format!("uploading scene {}", path.display()))?;
        for job in &spec.jobs {
            let settings = RenderSettings {
                spp: job.spp,
                seed: job.seed,
                ..spec.settings.clone()
            };
            let mut frame = vec![0u8; w as usize * h as usize * 8];
            for rect in tile_layout(w, h, spec.tile) {
                let bytes = renderer
                    .render(&settings, job.frame, rect)
                    .with_context(|| {
                        format!("{}: {} render, tile {rect}", path.display(), job.name)
                    })?;
                let row = rect.w as usize * 8;
                for y in 0..rect.h as usize {
                    let dst = ((rect.y as usize + y) * w as usize + rect.x as usize) * 8;
                    frame[dst..dst + row].copy_from_slice(&bytes[y * row..(y + 1) * row]);
                }
            }
            let file = frame_file(out, scene_idx, &job.name);
            std::fs::write(&file, &frame).with_context(|| format!("writing {}", file.display()))?;
        }
        eprintln!(
            "rendered {} in {:.1} s",
            path.display(),
            scene_started.elapsed().as_secs_f64()
        );
    }
    let report = ChildReport {
        class: gpu.class(),
        gpu_init_s,
        render_s: started.elapsed().as_secs_f64(),
    };
    let file = out.join("class.json");
    std::fs::write(&file, serde_json::to_vec(&report)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(true)
}

/// The frames one class rendered: `[scene][job name]`.
type ClassFrames = Vec<BTreeMap<String, Vec<u8>>>;

/// One class as the report shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassReport {
    /// Preset name (`--classes`).
    pub name: String,
    /// What the preset is.
    pub about: String,
    /// Environment variables the child process got.
    pub env: BTreeMap<String, String>,
    /// The determinism class the renderer reported.
    pub class: DeterminismClass,
    /// Its id (hex).
    pub id: String,
    /// Seconds to open the adapter and compile the path tracer.
    pub gpu_init_s: f64,
    /// Seconds rendering (and loading) every scene.
    pub render_s: f64,
}

/// The binary of this process, to start children with. On Linux `/proc/self/exe`, which
/// still runs this very build when the file was replaced by a rebuild meanwhile.
fn own_binary() -> Result<PathBuf> {
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().context("finding the tessera binary")
}

/// Run one class's child process and read back what it rendered.
fn render_class(cfg: &Config, class_idx: usize, tmp: &Path) -> Result<(ClassReport, ClassFrames)> {
    let preset = &cfg.classes[class_idx];
    let dir = tmp.join(format!("class-{class_idx}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let jobs = cfg.jobs(class_idx);
    let spec = RenderSpec {
        scenes: cfg.scenes.clone(),
        settings: cfg.settings(cfg.spp, cfg.seed),
        tile: cfg.tile,
        jobs: jobs.clone(),
    };
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)
        .with_context(|| format!("writing {}", spec_path.display()))?;
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let exe = own_binary()?;
    let env_text: Vec<String> = preset.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let env_text = if env_text.is_empty() {
        "no variables set".to_string()
    } else {
        env_text.join(" ")
    };
    eprintln!(
        "class {} ({env_text}): rendering {} scene(s) x {} frame(s)",
        preset.name,
        cfg.scenes.len(),
        jobs.len()
    );
    let mut cmd = Command::new(&exe);
    cmd.arg("calibrate")
        .arg("--render-spec")
        .arg(&spec_path)
        .arg("--render-out")
        .arg(&dir)
        .envs(preset.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("class {}: starting {}", preset.name, exe.display()))?;
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error")).collect();
        let tail: Vec<&str> = if errors.is_empty() {
            log.lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        } else {
            errors
        };
        bail!(
            "class {} ({env_text}): the renderer process failed ({status}): {}",
            preset.name,
            tail.join(" | ")
        );
    }
    let report_path = dir.join("class.json");
    let child: ChildReport = serde_json::from_slice(
        &std::fs::read(&report_path)
            .with_context(|| format!("reading {}", report_path.display()))?,
    )
    .with_context(|| format!("{}: not valid", report_path.display()))?;
    let want = cfg.width as usize * cfg.height as usize * 8;
    let mut frames = Vec::new();
    for scene_idx in 0..cfg.scenes.len() {
        let mut by_job = BTreeMap::new();
        for job in &jobs {
            let file = frame_file(&dir, scene_idx, &job.name);
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if bytes.len() != want {
                bail!(
                    "{}: {} bytes, a {}x{} frame has {want}",
                    file.display(),
                    bytes.len(),
                    cfg.width,
                    cfg.height
                );
            }
            by_job.insert(job.name.clone(), bytes);
        }
        frames.push(by_job);
    }
    eprintln!(
        "class {}: {} in {:.1} s",
        preset.name,
        child.class,
        started.elapsed().as_secs_f64()
    );
    let report = ClassReport {
        name: preset.name.clone(),
        about: preset.about.clone(),
        env: preset.env.iter().cloned().collect(),
        id: hex::encode(child.class.id()),
        class: child.class,
        gpu_init_s: child.gpu_init_s,
        render_s: child.render_s,
    };
    Ok((report, frames))
}

/// The forgeries of the corpus. Each is made by the node's class from its own renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// Rendered with half the samples, claiming all of them.
    HalfSpp,
    /// Rendered with a quarter of the samples.
    QuarterSpp,
    /// The honest tile plus Gaussian noise, σ = 5 % of the value + 0.01 (fixed seed).
    Noise,
    /// The honest tile through a 3×3 box blur (clamped at the tile's edges).
    Blur,
    /// A neighbouring region of the same size (one tile width right, else left, else one
    /// tile height down, else up).
    Neighbour,
    /// The same tile of the next frame.
    OtherFrame,
    /// Black.
    Black,
    /// The honest tile with a 16×16 mid-grey (0.5) square at its centre.
    PatchGrey,
    /// The honest tile with the neighbour's pixels in that 16×16 square.
    PatchNeighbour,
    /// The same tile rendered with another seed (a tile replayed from an earlier job).
    Replay,
}

impl Cheat {
    /// Every cheat of the corpus.
    pub const ALL: [Cheat; 10] = [
        Cheat::HalfSpp,
        Cheat::QuarterSpp,
        Cheat::Noise,
        Cheat::Blur,
        Cheat::Neighbour,
        Cheat::OtherFrame,
        Cheat::Black,
        Cheat::PatchGrey,
        Cheat::PatchNeighbour,
        Cheat::Replay,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Cheat::HalfSpp => "half-spp",
            Cheat::QuarterSpp => "quarter-spp",
            Cheat::Noise => "noise",
            Cheat::Blur => "blur",
            Cheat::Neighbour => "neighbour",
            Cheat::OtherFrame => "other-frame",
            Cheat::Black => "black",
            Cheat::PatchGrey => "patch-grey",
            Cheat::PatchNeighbour => "patch-neighbour",
            Cheat::Replay => "replay",
        }
    }
}

/// Edge of the forged square of the patch cheats.
const PATCH: u32 = 16;
/// Seed of the noise cheat's generator (xor the scene and tile indices).
const NOISE_SEED: u64 = 0x7e55_e4a0_0000_0000;

/// A region of `rect`'s size next to it inside the frame, if there is one.
fn neighbour(rect: TileRect, width: u32, height: u32) -> Option<TileRect> {
    let (x, y, w, h) = (rect.x, rect.y, rect.w, rect.h);
    let at = |x, y| TileRect { x, y, w, h };
    if x + 2 * w <= width {
        Some(at(x + w, y))
    } else if x >= w {
        Some(at(x - w, y))
    } else if y + 2 * h <= height {
        Some(at(x, y + h))
    } else if y >= h {
        Some(at(x, y - h))
    } else {
        None
    }
}

/// The forged bytes of `cheat` for `rect` of scene `scene_idx`, made from the node
/// class's `frames`; `None` when the cheat does not apply (no neighbour in a one-tile
/// frame).
fn forge(
    cheat: Cheat,
    cfg: &Config,
    frames: &BTreeMap<String, Vec<u8>>,
    scene_idx: usize,
    tile_idx: usize,
    rect: TileRect,
) -> Option<Vec<u8>> {
    let (fw, fh) = (cfg.width, cfg.height);
    let cut = |job: &str, r: TileRect| frames.get(job).and_then(|f| crop(f, fw, fh, r));
    let honest = || cut(HONEST, rect);
    let (w, h) = (rect.w as usize, rect.h as usize);
    // The patch: PATCH×PATCH (clipped to the tile) at the tile's centre, tile coordinates.
    let (pw, ph) = (rect.w.min(PATCH) as usize, rect.h.min(PATCH) as usize);
    let (px, py) = ((w - pw) / 2, (h - ph) / 2);
    let in_patch = |i: usize| {
        let (x, y) = (i % w, i / w);
        (px..px + pw).contains(&x) && (py..py + ph).contains(&y)
    };
    match cheat {
        Cheat::HalfSpp => cut(HALF_SPP, rect),
        Cheat::QuarterSpp => cut(QUARTER_SPP, rect),
        Cheat::OtherFrame => cut(NEXT_FRAME, rect),
        Cheat::Replay => cut(REPLAY, rect),
        Cheat::Neighbour => cut(HONEST, neighbour(rect, fw, fh)?),
        Cheat::Black => Some(f32_to_tile(&[0.0, 0.0, 0.0, 1.0].repeat(w * h))),
        Cheat::Noise => {
            let mut v = tile_to_f32(&honest()?);
            let mut rng = ChaCha8Rng::seed_from_u64(
                NOISE_SEED ^ ((scene_idx as u64) << 32) ^ tile_idx as u64,
            );
            for (i, x) in v.iter_mut().enumerate() {
                if i % 4 != 3 {
                    let n: f64 = StandardNormal.sample(&mut rng);
                    *x += (n * (0.05 * f64::from(x.abs()) + 0.01)) as f32;
                }
            }
            Some(f32_to_tile(&v))
        }
        Cheat::Blur => {
            let v = tile_to_f32(&honest()?);
            let mut out = v.clone();
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let (mut sum, mut n) = (0f32, 0f32);
                        for yy in y.saturating_sub(1)..(y + 2).min(h) {
                            for xx in x.saturating_sub(1)..(x + 2).min(w) {
                                sum += v[(yy * w + xx) * 4 + c];
                                n += 1.0;
                            }
                        }
                        out[(y * w + x) * 4 + c] = sum / n;
                    }
                }
            }
            Some(f32_to_tile(&out))
        }
        Cheat::PatchGrey => {
            let mut v = tile_to_f32(&honest()?);
            for (i, p) in v.chunks_exact_mut(4).enumerate() {
                if in_patch(i) {
                    p[..3].copy_from_slice(&[0.5; 3]);
                }
            }
            Some(f32_to_tile(&v))
        }
        Cheat::PatchNeighbour => {
            let mut v = tile_to_f32(&honest()?);
            let n = tile_to_f32(&cut(HONEST, neighbour(rect, fw, fh)?)?);
            for (i, (p, q)) in v.chunks_exact_mut(4).zip(n.chunks_exact(4)).enumerate() {
                if in_patch(i) {
                    p.copy_from_slice(q);
                }
            }
            Some(f32_to_tile(&v))
        }
    }
}

/// One compared pair: a committed tile against a re-render (only in the report with
/// `--records`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairRecord {
    /// Scene file name.
    pub scene: String,
    /// The tile.
    pub tile: TileRect,
    /// `honest`, or the cheat's name.
    pub kind: String,
    /// The class (preset name) that committed the tile.
    pub node: String,
    /// The class that re-rendered it.
    pub verifier: String,
    /// Whether the two classes have the same id.
    pub same_class: bool,
    /// Whether the committed bytes equal the re-render.
    pub bytes_equal: bool,
    /// The metrics of the re-render against the committed tile.
    pub metrics: TileMetrics,
    /// The band under `Tolerance::default()`.
    pub band: Band,
}

/// A cheat left out of the corpus because it forged (almost) nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NotForged {
    /// Scene file name.
    pub scene: String,
    /// The tile.
    pub tile: TileRect,
    /// The cheat's name.
    pub kind: String,
    /// Pixels of the forged tile that diverge from the node's honest tile, ppm (0 when
    /// the bytes are equal).
    pub changed_ppm: u32,
    /// Whether the forged bytes equal the honest tile.
    pub byte_identical: bool,
    /// Its band under the defaults against each class's re-render, in class order.
    pub bands: Vec<Band>,
}

/// The whole report (`--json`, `--out`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `tessera-calibration/1`.
    pub format: String,
    /// The render settings.
    pub settings: ReportSettings,
    /// The classes, the node's first.
    pub classes: Vec<ClassReport>,
    /// Per pair of classes, how many honest tiles were byte-identical.
    pub class_pairs: Vec<ClassPair>,
    /// The scenes (file names).
    pub scenes: Vec<String>,
    /// A forged tile counts as a forgery only when at least this many ppm of its pixels
    /// diverge from the node's honest tile.
    pub forgery_min_changed_ppm: u32,
    /// Cheats left out of the corpus: they change fewer pixels than that.
    pub not_forged: Vec<NotForged>,
    /// Per scene and kind (`honest` and each cheat): counts, extreme metrics, bands.
    pub summary: Vec<KindSummary>,
    /// The starting point of the derivation: the design's limits before measurement.
    pub prior: Tolerance,
    /// The thresholds derived from these measurements ([`derive_tolerance`]).
    pub derived: Option<Tolerance>,
    /// Why no thresholds could be derived, if so.
    pub derive_error: Option<String>,
    /// `Tolerance::default()`, which bands every pair.
    pub default_tolerance: Tolerance,
    /// Whether the derived thresholds equal the defaults.
    pub defaults_agree: bool,
    /// Margins of the defaults: honest pairs against the pass limits, forgeries against
    /// the fail limits.
    pub margins: Margins,
    /// Whether the defaults pass every honest pair and reject every forgery.
    pub separated: bool,
    /// Seconds of the whole run.
    pub runtime_s: f64,
    /// Every compared pair (with `--records`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<PairRecord>,
}

/// The render settings of a calibration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportSettings {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Honest samples per pixel.
    pub spp: u32,
    /// Tile edge.
    pub tile: u32,
    /// Maximum bounces.
    pub max_bounces: u32,
    /// Honest render seed.
    pub seed: u64,
    /// The frame (the other-frame cheat renders the next).
    pub frame: u32,
}

/// Two classes' honest renders compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassPair {
    /// One class (preset name).
    pub a: String,
    /// The other.
    pub b: String,
    /// Whether their ids are equal (so their bytes must be too).
    pub same_id: bool,
    /// Tiles compared.
    pub tiles: usize,
    /// Tiles with equal bytes.
    pub byte_identical: usize,
    /// Scenes with at least one differing tile.
    pub differing_scenes: Vec<String>,
}

/// One kind of pair in one scene, summed up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindSummary {
    /// Scene file name.
    pub scene: String,
    /// `honest` or the cheat's name.
    pub kind: String,
    /// Pairs compared (forgeries only for a cheat).
    pub pairs: usize,
    /// Pairs with equal bytes.
    pub bytes_equal: usize,
    /// Over the pairs with different bytes, each metric's most honest-looking value for a
    /// cheat, its most distant value for honest pairs (the worst case either way).
    pub extreme: Option<TileMetrics>,
    /// Count per band under the defaults.
    pub bands: BTreeMap<String, usize>,
}

/// Margins of a tolerance on a corpus.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Margins {
    /// Per metric: the worst honest value against the pass limit.
    pub honest: Vec<HonestMargin>,
    /// Per cheat kind: the least separated forgery's best metric against its fail limit.
    pub cheats: Vec<CheatMargin>,
}

/// How far inside the pass limit the worst honest pair is, for one metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HonestMargin {
    /// `diverged_ppm`, `psnr_cdb`, `flip_mean_ppm` or `flip_p99_ppm`.
    pub metric: String,
    /// The worst honest value (over pairs with different bytes; none when all match).
    pub worst: Option<u32>,
    /// The pass limit.
    pub pass: u32,
    /// pass / worst for the ppm metrics, the MSE ratio `10^(dB/10)` for PSNR; `None`
    /// when unbounded (no honest pair differs, or the worst is 0).
    pub ratio: Option<f64>,
    /// For PSNR: worst − pass in dB.
    pub db: Option<f64>,
}

/// How far beyond a fail limit the least separated forgery of one cheat is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheatMargin {
    /// The cheat's name.
    pub kind: String,
    /// Forgeries (pairs) measured.
    pub pairs: usize,
    /// Where the least separated one is.
    pub scene: String,
    /// Its tile.
    pub tile: TileRect,
    /// The metric that separates it best.
    pub metric: String,
    /// Its value.
    pub value: u32,
    /// The fail limit.
    pub fail: u32,
    /// value / fail for the ppm metrics, the MSE ratio for PSNR; below 1: not rejected.
    pub ratio: f64,
    /// For PSNR: fail − value in dB.
    pub db: Option<f64>,
}

/// Metric names in reports, in [`TileMetrics`] field order.
pub const METRICS: [&str; 4] = ["diverged_ppm", "psnr_cdb", "flip_mean_ppm", "flip_p99_ppm"];
/// Index of PSNR in [`METRICS`], the one metric where smaller is worse.
const PSNR: usize = 1;

fn metric(m: &TileMetrics, i: usize) -> u32 {
    [m.diverged_ppm, m.psnr_cdb, m.flip_mean_ppm, m.flip_p99_ppm][i]
}

fn limit(l: &Limits, i: usize) -> u32 {
    [
        l.max_diverged_ppm,
        l.min_psnr_cdb,
        l.max_flip_mean_ppm,
        l.max_flip_p99_ppm,
    ][i]
}

fn set_limit(l: &mut Limits, i: usize, v: u32) {
    *[
        &mut l.max_diverged_ppm,
        &mut l.min_psnr_cdb,
        &mut l.max_flip_mean_ppm,
        &mut l.max_flip_p99_ppm,
    ][i] = v;
}

/// How far `value` is beyond `limit` on the bad side, as a ratio: value / limit for the
/// ppm metrics, the MSE ratio `10^((limit − value)/1000)` for PSNR (centi-dB).
fn beyond(i: usize, value: u32, limit: u32) -> f64 {
    if i == PSNR {
        10f64.powf((f64::from(limit) - f64::from(value)) / 1000.0)
    } else if limit == 0 {
        f64::INFINITY
    } else {
        f64::from(value) / f64::from(limit)
    }
}

/// The best separation of `m` from the limits `l`: (ratio, metric index).
fn best_beyond(m: &TileMetrics, l: &Limits) -> (f64, usize) {
    (0..4)
        .map(|i| (beyond(i, metric(m, i), limit(l, i)), i))
        .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// The margin every honest pair must keep inside the pass limits: a factor of 4 (6 dB
/// for PSNR).
pub const HONEST_MARGIN: f64 = 4.0;
/// The margin every forgery must keep beyond some fail limit: a factor of 2 (3 dB).
pub const CHEAT_MARGIN: f64 = 2.0;
/// A forged tile is a forgery when at least 1 % of its pixels diverge from the honest
/// tile. Fewer is below the resolution of the metrics: ꟻLIP p99 ignores the worst 1 % by
/// definition, and the pass limit must let honest classes differ in a few pixels.
pub const FORGERY_MIN_CHANGED_PPM: u32 = 10_000;

/// The design's limits before any measurement: what the tolerance started from, and what
/// [`derive_tolerance`] tightens where the corpus requires it.
pub const PRIOR: Tolerance = Tolerance {
    pixel_abs_ppm: 2_000,
    pixel_rel_ppm: 20_000,
    pass: Limits {
        max_diverged_ppm: 20_000,
        min_psnr_cdb: 4_000,
        max_flip_mean_ppm: 10_000,
        max_flip_p99_ppm: 150_000,
    },
    fail: Limits {
        max_diverged_ppm: 60_000,
        min_psnr_cdb: 3_000,
        max_flip_mean_ppm: 25_000,
        max_flip_p99_ppm: 400_000,
    },
    escalation_multiplier: 2,
};

/// The ppm values limits are rounded to: 1, 1.5, 2, 3, 5, 7 × 10^k, 10 to 700 000.
fn ppm_ladder() -> impl DoubleEndedIterator<Item = u32> {
    (1..=5).flat_map(|k| {
        let p = 10u32.pow(k);
        [p, p * 3 / 2, 2 * p, 3 * p, 5 * p, 7 * p]
    })
}

/// The loosest limit of metric `i` that has `value` beyond it by [`CHEAT_MARGIN`]: a ladder
/// value for ppm, a whole dB for PSNR; `None` when no limit can.
fn limit_catching(i: usize, value: u32) -> Option<u32> {
    if i == PSNR {
        // value ≤ limit − 3.01 dB, rounded up to whole dB.
        let need = f64::from(value) + 1000.0 * CHEAT_MARGIN.log10();
        let cdb = ((need / 100.0).ceil() * 100.0) as u32;
        (cdb < PSNR_CAP_CDB).then_some(cdb)
    } else {
        ppm_ladder()
            .rev()
            .find(|&l| f64::from(value) >= CHEAT_MARGIN * f64::from(l))
    }
}

/// Derive thresholds from honest pairs and forgeries (metrics of pairs with different
/// bytes), starting from `prior`:
/// 1. While some forgery is not beyond a fail limit by [`CHEAT_MARGIN`], take the one that
///    needs the most tightening, and tighten the one fail limit that catches it with the
///    least tightening (a ladder value: 1, 1.5, 2, 3, 5, 7 × 10^k ppm, whole dB).
/// 2. Each pass limit keeps the prior's ratio to its fail limit (rounded down to the
///    ladder; PSNR: the prior's dB offset).
/// 3. Every honest pair must lie inside the pass limits by [`HONEST_MARGIN`].
///
/// Limits are only ever tightened, so a corpus that the prior already separates keeps it.
/// `Err` names the forgery or honest pair that cannot be separated.
pub fn derive_tolerance(
    prior: &Tolerance,
    honest: &[TileMetrics],
    forgeries: &[(String, TileMetrics)],
) -> Result<Tolerance, String> {
    let mut t = *prior;
    loop {
        // For each forgery not caught: its cheapest tightening (factor, metric, limit).
        let mut hardest: Option<(f64, usize, u32)> = None;
        for (kind, m) in forgeries {
            if best_beyond(m, &t.fail).0 >= CHEAT_MARGIN {
                continue;
            }
            let cheapest = (0..4)
                .filter_map(|i| {
                    let l = limit_catching(i, metric(m, i))?;
                    let factor = 1.0 / beyond(i, limit(&t.fail, i), l).max(1.0);
                    Some((factor, i, l))
                })
                .fold(None::<(f64, usize, u32)>, |a, b| match a {
                    Some(a) if a.0 >= b.0 => Some(a),
                    _ => Some(b),
                })
                .ok_or_else(|| {
                    format!("a {kind} forgery ({m:?}) is within every limit the ladder has")
                })?;
            if hardest.is_none_or(|h| cheapest.0 < h.0) {
                hardest = Some(cheapest);
            }
        }
        let Some((_, i, l)) = hardest else { break };
        set_limit(&mut t.fail, i, l);
    }
    for i in 0..4 {
        let (pp, pf) = (limit(&prior.pass, i), limit(&prior.fail, i));
        let fail = limit(&t.fail, i);
        let pass = if i == PSNR {
            (fail + pp.saturating_sub(pf)).min(PSNR_CAP_CDB)
        } else {
            let scaled = u64::from(fail) * u64::from(pp) / u64::from(pf.max(1));
            ppm_ladder()
                .rev()
                .find(|&v| u64::from(v) <= scaled)
                .unwrap_or(0)
                .min(limit(&prior.pass, i))
        };
        set_limit(&mut t.pass, i, pass);
    }
    for m in honest {
        for (i, name) in METRICS.iter().enumerate() {
            let (v, pass) = (metric(m, i), limit(&t.pass, i));
            if beyond(i, v, pass) * HONEST_MARGIN > 1.0 + 1e-9 {
                return Err(format!(
                    "an honest pair has {name} = {v}, not inside the pass limit {pass} by \
                     the margin {HONEST_MARGIN} that the forgeries leave room for"
                ));
            }
        }
    }
    t.check()?;
    Ok(t)
}

/// Margins of `t` on `honest` pairs and `forgeries` (`(kind, scene, tile, metrics)`).
pub fn margins(
    t: &Tolerance,
    honest: &[TileMetrics],
    forgeries: &[(String, String, TileRect, TileMetrics)],
) -> Margins {
    let mut out = Margins::default();
    for (i, name) in METRICS.iter().enumerate() {
        let values = honest.iter().map(|m| metric(m, i));
        let worst = if i == PSNR {
            values.min()
        } else {
            values.max()
        };
        let pass = limit(&t.pass, i);
        let ratio = worst.and_then(|w| {
            let r = 1.0 / beyond(i, w, pass);
            r.is_finite().then_some(r)
        });
        out.honest.push(HonestMargin {
            metric: name.to_string(),
            worst,
            pass,
            ratio,
            db: worst
                .filter(|_| i == PSNR)
                .map(|w| (f64::from(w) - f64::from(pass)) / 100.0),
        });
    }
    for cheat in Cheat::ALL {
        let of_kind: Vec<_> = forgeries.iter().filter(|f| f.0 == cheat.name()).collect();
        let least = of_kind
            .iter()
            .map(|f| (best_beyond(&f.3, &t.fail), f))
            .min_by(|a, b| a.0 .0.total_cmp(&b.0 .0));
        if let Some(((ratio, i), (_, scene, tile, m))) = least {
            let (value, fail) = (metric(m, i), limit(&t.fail, i));
            out.cheats.push(CheatMargin {
                kind: cheat.name().to_string(),
                pairs: of_kind.len(),
                scene: scene.clone(),
                tile: *tile,
                metric: METRICS[i].to_string(),
                value,
                fail,
                ratio,
                db: (i == PSNR).then(|| (f64::from(fail) - f64::from(value)) / 100.0),
            });
        }
    }
    out
}

/// Compare every honest pair and every cheat of every tile of every scene.
fn measure(
    cfg: &Config,
    scenes: &[String],
    classes: &[ClassReport],
    frames: &[ClassFrames],
) -> Result<(Vec<PairRecord>, Vec<NotForged>)> {
    let t = Tolerance::default();
    let (fw, fh) = (cfg.width, cfg.height);
    let honest_tile = |class: usize, scene: usize, rect: TileRect| -> Result<Vec<u8>> {
        crop(&frames[class][scene][HONEST], fw, fh, rect)
            .ok_or_else(|| anyhow!("tile {rect} does not fit the {fw}x{fh} frame"))
    };
    let mut records = Vec::new();
    let mut not_forged = Vec::new();
    let pair = |scene: &str, rect, kind: &str, node: usize, verifier: usize, a: &[u8], b: &[u8]| {
        let metrics = tile_metrics(&t, a, b, rect).map_err(|e| anyhow!("{scene}: {kind}: {e}"))?;
        let bytes_equal = a == b;
        Ok::<_, anyhow::Error>(PairRecord {
            scene: scene.to_string(),
            tile: rect,
            kind: kind.to_string(),
            node: classes[node].name.clone(),
            verifier: classes[verifier].name.clone(),
            same_class: classes[node].id == classes[verifier].id,
            bytes_equal,
            metrics,
            band: t.band(bytes_equal, &metrics),
        })
    };
    for (s, name) in scenes.iter().enumerate() {
        for (tile_idx, &rect) in tile_layout(fw, fh, cfg.tile).iter().enumerate() {
            let rerenders: Vec<Vec<u8>> = (0..classes.len())
                .map(|c| honest_tile(c, s, rect))
                .collect::<Result<_>>()?;
            for a in 0..classes.len() {
                for b in (0..classes.len()).filter(|&b| b != a) {
                    records.push(pair(
                        name,
                        rect,
                        HONEST,
                        a,
                        b,
                        &rerenders[a],
                        &rerenders[b],
                    )?);
                }
            }
            for cheat in Cheat::ALL {
                let Some(forged) = forge(cheat, cfg, &frames[0][s], s, tile_idx, rect) else {
                    continue;
                };
                let own = pair(name, rect, cheat.name(), 0, 0, &forged, &rerenders[0])?;
                let checks: Vec<PairRecord> = (0..classes.len())
                    .map(|b| pair(name, rect, cheat.name(), 0, b, &forged, &rerenders[b]))
                    .collect::<Result<_>>()?;
                if own.bytes_equal || own.metrics.diverged_ppm < FORGERY_MIN_CHANGED_PPM {
                    not_forged.push(NotForged {
                        scene: name.clone(),
                        tile: rect,
                        kind: cheat.name().into(),
                        changed_ppm: own.metrics.diverged_ppm,
                        byte_identical: own.bytes_equal,
                        bands: checks.iter().map(|r| r.band).collect(),
                    });
                } else {
                    records.extend(checks);
                }
            }
        }
    }
    Ok((records, not_forged))
}

/// Per pair of classes: how many honest tiles are byte-identical.
fn class_pairs(
    cfg: &Config,
    scenes: &[String],
    classes: &[ClassReport],
    frames: &[ClassFrames],
) -> Vec<ClassPair> {
    let (fw, fh) = (cfg.width, cfg.height);
    let tiles = tile_layout(fw, fh, cfg.tile);
    let mut out = Vec::new();
    for a in 0..classes.len() {
        for b in a + 1..classes.len() {
            let mut pair = ClassPair {
                a: classes[a].name.clone(),
                b: classes[b].name.clone(),
                same_id: classes[a].id == classes[b].id,
                tiles: 0,
                byte_identical: 0,
                differing_scenes: Vec::new(),
            };
            for (s, name) in scenes.iter().enumerate() {
                let (fa, fb) = (&frames[a][s][HONEST], &frames[b][s][HONEST]);
                for &rect in &tiles {
                    pair.tiles += 1;
                    if crop(fa, fw, fh, rect) == crop(fb, fw, fh, rect) {
                        pair.byte_identical += 1;
                    } else if !pair.differing_scenes.contains(name) {
                        pair.differing_scenes.push(name.clone());
                    }
                }
            }
            out.push(pair);
        }
    }
    out
}

/// Per scene and kind: counts, the worst-case metrics, and the bands.
fn summarize(scenes: &[String], records: &[PairRecord]) -> Vec<KindSummary> {
    let mut out = Vec::new();
    for scene in scenes {
        for kind in std::iter::once(HONEST).chain(Cheat::ALL.iter().map(|c| c.name())) {
            let of_kind: Vec<&PairRecord> = records
                .iter()
                .filter(|r| r.kind == kind && &r.scene == scene)
                .collect();
            let differing: Vec<&TileMetrics> = of_kind
                .iter()
                .filter(|r| !r.bytes_equal)
                .map(|r| &r.metrics)
                .collect();
            // Honest pairs: the largest distance; forgeries: the smallest.
            let pick = |i: usize| {
                let v = differing.iter().map(|m| metric(m, i));
                if (kind == HONEST) == (i == PSNR) {
                    v.min()
                } else {
                    v.max()
                }
            };
            let extreme = (!differing.is_empty()).then(|| TileMetrics {
                diverged_ppm: pick(0).unwrap_or(0),
                psnr_cdb: pick(1).unwrap_or(PSNR_CAP_CDB),
                flip_mean_ppm: pick(2).unwrap_or(0),
                flip_p99_ppm: pick(3).unwrap_or(0),
            });
            let mut bands = BTreeMap::new();
            for r in &of_kind {
                *bands.entry(band_name(r.band).to_string()).or_insert(0) += 1;
            }
            out.push(KindSummary {
                scene: scene.clone(),
                kind: kind.to_string(),
                pairs: of_kind.len(),
                bytes_equal: of_kind.iter().filter(|r| r.bytes_equal).count(),
                extreme,
                bands,
            });
        }
    }
    out
}

/// The file name of a scene path, for reports.
fn scene_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `tessera calibrate` (and its child, with `--render-spec`). `Ok(false)` when the
/// defaults do not separate the corpus or no thresholds can be derived.
pub fn run(a: CalibrateArgs) -> Result<bool> {
    if let Some(spec) = &a.render_spec {
        let out = a
            .render_out
            .as_deref()
            .ok_or_else(|| anyhow!("--render-spec needs --render-out"))?;
        return render_child(spec, out);
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
    let mut ids: Vec<&str> = classes.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 {
        bail!(
            "every class of --classes {} rendered as the same determinism class ({}): \
             calibration needs renders from two different classes",
            cfg.classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            classes[0].class
        );
    }

    let (records, not_forged) = measure(&cfg, &scenes, &classes, &frames)?;
    let honest: Vec<TileMetrics> = records
        .iter()
        .filter(|r| r.kind == HONEST && !r.bytes_equal)
        .map(|r| r.metrics)
        .collect();
    let forgeries: Vec<(String, String, TileRect, TileMetrics)> = records
        .iter()
        .filter(|r| r.kind != HONEST && !r.bytes_equal)
        .map(|r| (r.kind.clone(), r.scene.clone(), r.tile, r.metrics))
        .collect();
    let kinds: Vec<(String, TileMetrics)> = forgeries.iter().map(|f| (f.0.clone(), f.3)).collect();
    let (derived, derive_error) = match derive_tolerance(&PRIOR, &honest, &kinds) {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e)),
    };
    let t = Tolerance::default();
    let separated = records.iter().all(|r| match r.kind.as_str() {
        HONEST => matches!(r.band, Band::Match | Band::Close),
        _ => r.band == Band::Far,
    });
    let report = Report {
        format: "tessera-calibration/1".into(),
        settings: ReportSettings {
            width: cfg.width,
            height: cfg.height,
            spp: cfg.spp,
            tile: cfg.tile,
            max_bounces: cfg.max_bounces,
            seed: cfg.seed,
            frame: 0,
        },
        class_pairs: class_pairs(&cfg, &scenes, &classes, &frames),
        classes,
        summary: summarize(&scenes, &records),
        scenes,
        forgery_min_changed_ppm: FORGERY_MIN_CHANGED_PPM,
        not_forged,
        prior: PRIOR,
        defaults_agree: derived == Some(t),
        derived,
        derive_error,
        default_tolerance: t,
        margins: margins(&t, &honest, &forgeries),
        separated,
        runtime_s: started.elapsed().as_secs_f64(),
        records: if a.records { records } else { Vec::new() },
    };
    if let Some(path) = &a.out {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report.separated && report.derived.is_some())
}

fn band_name(b: Band) -> &'static str {
    match b {
        Band::Match => "match",
        Band::Close => "close",
        Band::Ambiguous => "ambiguous",
        Band::Far => "far",
    }
}

/// A metric value as people read it: ppm as a percentage or fraction, PSNR in dB.
fn show(i: usize, v: u32) -> String {
    match i {
        0 => format!("{:.3} %", f64::from(v) / 1e4),
        PSNR => format!("{:.2} dB", f64::from(v) / 100.0),
        _ => format!("{:.4}", f64::from(v) / 1e6),
    }
}

fn show_limits(l: &Limits) -> String {
    (0..4)
        .map(|i| format!("{} {}", METRICS[i], show(i, limit(l, i))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(r: &Report) {
    let s = &r.settings;
    println!(
        "calibration: {} scene(s), {}x{}, {} spp, {}-pixel tiles, {} bounces, seed {} ({:.0} s)",
        r.scenes.len(),
        s.width,
        s.height,
        s.spp,
        s.tile,
        s.max_bounces,
        s.seed,
        r.runtime_s
    );
    println!("\nclasses (the first commits the cheats)");
    for c in &r.classes {
        println!(
            "  {:<9} id {}  {}  [{:.0} s]",
            c.name,
            &c.id[..12],
            c.class,
            c.gpu_init_s + c.render_s
        );
    }
    println!("\nhonest renders, class against class");
    for p in &r.class_pairs {
        let note = match (p.same_id, p.byte_identical == p.tiles) {
            (true, false) => "  SAME class id, different bytes: a class-definition defect",
            (false, true) => "  different ids, identical bytes",
            _ => "",
        };
        println!(
            "  {} / {}: {}/{} tiles byte-identical{}{}",
            p.a,
            p.b,
            p.byte_identical,
            p.tiles,
            if p.differing_scenes.is_empty() {
                String::new()
            } else {
                format!(" (differ in {})", p.differing_scenes.join(", "))
            },
            note
        );
    }
    let t = &r.default_tolerance;
    println!("\nthresholds (Tolerance::default)");
    println!("  pass  {}", show_limits(&t.pass));
    println!("  fail  {}", show_limits(&t.fail));
    match (&r.derived, &r.derive_error) {
        (Some(_), _) if r.defaults_agree => println!("  derived from this run: the same"),
        (Some(d), _) => {
            println!("  derived from this run: DIFFERENT");
            println!("    pass  {}", show_limits(&d.pass));
            println!("    fail  {}", show_limits(&d.fail));
        }
        (None, Some(e)) => println!("  derived from this run: none: {e}"),
        (None, None) => {}
    }
    println!("\nhonest pairs: worst value against the pass limit");
    for (i, h) in r.margins.honest.iter().enumerate() {
        let worst = h.worst.map_or("all identical".into(), |w| show(i, w));
        let margin = match (h.db, h.ratio) {
            (Some(db), _) => format!("{db:.1} dB"),
            (None, Some(x)) => format!("x{x:.1}"),
            (None, None) => "unbounded".into(),
        };
        println!(
            "  {:<14} worst {:<14} pass {:<12} margin {margin}",
            h.metric,
            worst,
            show(i, h.pass)
        );
    }
    println!(
        "\nforgeries: the least separated one per cheat, its best metric against the fail limit"
    );
    for c in &r.margins.cheats {
        let i = METRICS.iter().position(|m| *m == c.metric).unwrap_or(0);
        let margin =
            c.db.map_or(format!("x{:.1}", c.ratio), |db| format!("{db:.1} dB"));
        println!(
            "  {:<16} {:>4} pairs  {:<14} {:<12} fail {:<12} margin {:<9} ({} {})",
            c.kind,
            c.pairs,
            c.metric,
            show(i, c.value),
            show(i, c.fail),
            margin,
            c.scene,
            c.tile
        );
    }
    let mut bands: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for k in &r.summary {
        for (b, n) in &k.bands {
            let kind = if k.kind == HONEST {
                "honest"
            } else {
                "forgeries"
            };
            *bands.entry((kind, b.as_str())).or_insert(0) += n;
        }
    }
    println!("\nbands under the defaults");
    for ((kind, band), n) in &bands {
        println!("  {kind:<9} {band:<9} {n}");
    }
    if !r.not_forged.is_empty() {
        println!(
            "\nleft out of the corpus ({} cheat instances change fewer than {:.0} % of their pixels):",
            r.not_forged.len(),
            f64::from(r.forgery_min_changed_ppm) / 1e4
        );
        for n in &r.not_forged {
            let bands: Vec<&str> = n.bands.iter().map(|b| band_name(*b)).collect();
            println!(
                "  {:<20} {:<12} {:<16} {}  bands {}",
                n.scene,
                n.tile.to_string(),
                n.kind,
                if n.byte_identical {
                    "byte-identical".to_string()
                } else {
                    format!("{:.2} % changed", f64::from(n.changed_ppm) / 1e4)
                },
                bands.join("/")
            );
        }
    }
    println!(
        "\n{}",
        if r.separated {
            "SEPARATED: the defaults pass every honest pair and reject every forgery"
        } else {
            "NOT SEPARATED: the defaults misjudge some pair (see the bands above)"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(d: u32, p: u32, fm: u32, f99: u32) -> TileMetrics {
        TileMetrics {
            diverged_ppm: d,
            psnr_cdb: p,
            flip_mean_ppm: fm,
            flip_p99_ppm: f99,
        }
    }

    #[test]
    fn the_prior_is_kept_when_it_separates_the_corpus() {
        let honest = [metrics(0, 9_000, 10, 100)];
        let black = [(
            "black".to_string(),
            metrics(900_000, 1_000, 600_000, 900_000),
        )];
        assert_eq!(derive_tolerance(&PRIOR, &honest, &black), Ok(PRIOR));
        assert_eq!(derive_tolerance(&PRIOR, &[], &[]), Ok(PRIOR));
    }

    #[test]
    fn a_forgery_inside_the_prior_tightens_the_cheapest_limit() {
        // 3 % diverged is caught by a 1.5 % fail limit (a quarter of the prior's 6 %);
        // PSNR 45 dB would need 49 dB (19 dB tighter), FLIP far more.
        let f = [("replay".to_string(), metrics(30_000, 4_500, 2_000, 40_000))];
        let t = derive_tolerance(&PRIOR, &[], &f).unwrap();
        assert_eq!(t.fail.max_diverged_ppm, 15_000);
        assert_eq!(t.pass.max_diverged_ppm, 5_000);
        assert_eq!((t.pass.min_psnr_cdb, t.fail.min_psnr_cdb), (4_000, 3_000));
        assert_eq!(t.band(false, &f[0].1), Band::Far);
        // Only PSNR can catch this one: the fail limit rises to value + 3 dB, whole dB.
        let f = [("blur".to_string(), metrics(0, 3_562, 0, 0))];
        let t = derive_tolerance(&PRIOR, &[], &f).unwrap();
        assert_eq!(t.fail.min_psnr_cdb, 3_900);
        assert_eq!(t.pass.min_psnr_cdb, 4_900);
    }

    #[test]
    fn honest_pairs_too_close_to_the_forgeries_are_an_error() {
        let f = [("replay".to_string(), metrics(30_000, 10_000, 0, 0))];
        // The derived pass limit is 0.5 % diverged; 0.2 % is not inside it by 4x.
        let err = derive_tolerance(&PRIOR, &[metrics(2_000, 9_000, 0, 0)], &f).unwrap_err();
        assert!(err.contains("diverged_ppm = 2000"), "{err}");
        let err =
            derive_tolerance(&PRIOR, &[], &[("x".into(), metrics(5, 10_000, 5, 5))]).unwrap_err();
        assert!(err.contains("within every limit"), "{err}");
    }

    #[test]
    fn margins_name_the_least_separated_forgery() {
        let rect = TileRect {
            x: 0,
            y: 0,
            w: 8,
            h: 8,
        };
        let f = [
            (
                "noise".to_string(),
                "a".to_string(),
                rect,
                metrics(900_000, 2_000, 0, 0),
            ),
            (
                "noise".to_string(),
                "b".to_string(),
                rect,
                metrics(120_000, 3_500, 0, 0),
            ),
        ];
        let m = margins(&PRIOR, &[metrics(100, 8_000, 0, 0)], &f);
        assert_eq!(m.honest[0].ratio, Some(200.0));
        assert_eq!(m.honest[1].db, Some(40.0));
        assert_eq!(m.honest[2].ratio, None);
        assert_eq!(m.cheats.len(), 1);
        let c = &m.cheats[0];
        assert_eq!(
            (c.scene.as_str(), c.metric.as_str(), c.value),
            ("b", "diverged_ppm", 120_000)
        );
        assert!((c.ratio - 2.0).abs() < 1e-12);
    }

    #[test]
    fn neighbours_stay_inside_the_frame() {
        let r = |x, y, w, h| TileRect { x, y, w, h };
        assert_eq!(neighbour(r(0, 0, 32, 32), 128, 64), Some(r(32, 0, 32, 32)));
        assert_eq!(neighbour(r(96, 0, 32, 32), 128, 64), Some(r(64, 0, 32, 32)));
        assert_eq!(neighbour(r(0, 0, 64, 32), 64, 64), Some(r(0, 32, 64, 32)));
        assert_eq!(neighbour(r(0, 32, 64, 32), 64, 64), Some(r(0, 0, 64, 32)));
        assert_eq!(neighbour(r(0, 0, 64, 64), 64, 64), None);
        // An edge tile narrower than the others still gets a region of its own size.
        assert_eq!(neighbour(r(64, 0, 16, 64), 80, 64), Some(r(48, 0, 16, 64)));
    }

    #[test]
    fn a_class_is_a_preset_or_a_vulkan_driver_manifest() {
        let sse41 = Class::parse("sse41").unwrap();
        assert!(sse41
            .env
            .contains(&("GALLIUM_OVERRIDE_CPU_CAPS".into(), "sse4.1".into())));
        let dir = tempfile::tempdir().unwrap();
        let icd = dir.path().join("lvp.json");
        let spec = format!("vk-icd:{}", icd.display());
        let e = Class::parse(&spec).unwrap_err().to_string();
        assert!(e.contains("no Vulkan driver manifest"), "{e}");
        std::fs::write(&icd, "{}").unwrap();
        let c = Class::parse(&spec).unwrap();
        assert_eq!(c.name, spec);
        assert!(c
            .env
            .contains(&("VK_ICD_FILENAMES".into(), icd.display().to_string())));
        assert!(c
            .env
            .contains(&("WGPU_ADAPTER_NAME".into(), "llvmpipe".into())));
        let e = Class::parse("mesa99").unwrap_err().to_string();
        assert!(e.contains("vk-icd:FILE"), "{e}");
    }

    fn config(width: u32, height: u32, tile: u32) -> Config {
        Config {
            scenes: Vec::new(),
            classes: vec![
                Class::parse("default").unwrap(),
                Class::parse("sse41").unwrap(),
            ],
            width,
            height,
            spp: 8,
            tile,
            max_bounces: 4,
            seed: 1,
        }
    }

    /// A frame whose pixel (x, y) has red x, green y, blue 0.25.
    fn gradient(width: u32, height: u32) -> BTreeMap<String, Vec<u8>> {
        let mut v = Vec::new();
        for y in 0..height {
            for x in 0..width {
                v.extend_from_slice(&[x as f32, y as f32, 0.25, 1.0]);
            }
        }
        let frame = f32_to_tile(&v);
        [HONEST, HALF_SPP, QUARTER_SPP, NEXT_FRAME, REPLAY]
            .into_iter()
            .map(|j| (j.to_string(), frame.clone()))
            .collect()
    }

    #[test]
    fn every_cheat_forges_every_tile_size_without_panicking() {
        let cfg = config(37, 21, 16);
        let frames = gradient(37, 21);
        for (i, rect) in tile_layout(37, 21, 16).into_iter().enumerate() {
            for cheat in Cheat::ALL {
                if let Some(bytes) = forge(cheat, &cfg, &frames, 0, i, rect) {
                    assert_eq!(bytes.len(), rect.canonical_len(), "{cheat:?} {rect}");
                }
            }
        }
    }

    #[test]
    fn patches_sit_at_the_tile_centre() {
        let cfg = config(64, 32, 32);
        let frames = gradient(64, 32);
        let rect = TileRect {
            x: 32,
            y: 0,
            w: 32,
            h: 32,
        };
        let grey = tile_to_f32(&forge(Cheat::PatchGrey, &cfg, &frames, 0, 1, rect).unwrap());
        let px = |v: &[f32], x: usize, y: usize| v[(y * 32 + x) * 4];
        assert_eq!(px(&grey, 8, 8), 0.5);
        assert_eq!(px(&grey, 23, 23), 0.5);
        assert_eq!(px(&grey, 7, 8), 39.0); // global x = 32 + 7
        assert_eq!(px(&grey, 24, 23), 56.0);
        // The neighbour of the right tile is the left one: its red is 32 lower.
        let copied = tile_to_f32(&forge(Cheat::PatchNeighbour, &cfg, &frames, 0, 1, rect).unwrap());
        assert_eq!(px(&copied, 8, 8), 8.0);
        assert_eq!(px(&copied, 7, 8), 39.0);
        let black = tile_to_f32(&forge(Cheat::Black, &cfg, &frames, 0, 1, rect).unwrap());
        assert!(black.chunks_exact(4).all(|p| p == [0.0, 0.0, 0.0, 1.0]));
        // Noise is reproducible.
        let a = forge(Cheat::Noise, &cfg, &frames, 0, 1, rect);
        assert_eq!(a, forge(Cheat::Noise, &cfg, &frames, 0, 1, rect));
        assert_ne!(a, forge(Cheat::Noise, &cfg, &frames, 0, 0, rect));
    }
}
