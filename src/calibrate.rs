//! `tessera calibrate`: the command line of the tolerance calibration, whose method and
//! report are `tessera_verifier::calibrate` (docs/CALIBRATION.md has the numbers). Here:
//! the flags, the class presets, one child process per class (`tessera calibrate
//! --render-spec`), because the drivers read their environment when they load: the parent
//! sets the class's variables (e.g. `LP_NATIVE_VECTOR_WIDTH=128`) and the child renders
//! every scene tile by tile, as a node does, writing raw canonical frames; and the
//! printed report.
//!
//! Exit code 1 when a class cannot be rendered, fewer than two distinct class ids result,
//! the corpus cannot be separated, or the default thresholds misjudge a pair.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use tessera_protocol::tolerance::Limits;
use tessera_protocol::{tile_layout, DeterminismClass, RenderSettings};
use tessera_renderer::{Gpu, LoadOptions, Scene, SceneRenderer};
use tessera_verifier::calibrate::{
    self, band_name, limit, render_jobs, ClassFrames, ClassReport, RenderJob, Report,
    ReportSettings, HONEST, METRICS, PSNR,
};

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
    let s = &cfg.settings;
    let jobs = render_jobs(s, class_idx);
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
    let want = s.width as usize * s.height as usize * 8;
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
                    s.width,
                    s.height
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
        print_report(&report);
    }
    Ok(report.separated && report.derived.is_some())
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
}
