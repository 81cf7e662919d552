//! The renders of `tessera calibrate`, one child process per determinism class (drivers
//! read their environment when they load, so each class needs a process of its own): the
//! spec the parent writes, the child's loop (every frame of every scene, tile by tile as a
//! node renders, written as raw canonical bytes) with its report, and reading both back;
//! and the class presets: the environment that makes a child render in a given class.

use crate::{Gpu, LoadOptions, RenderError, Scene, SceneError, SceneRenderer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessera_protocol::canonical::paste;
use tessera_protocol::{tile_layout, DeterminismClass, RenderSettings, TileRect};

/// One frame the child renders for every scene.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameJob {
    /// The frame's name, also its file name.
    pub name: String,
    /// Samples per pixel.
    pub spp: u32,
    /// Render seed.
    pub seed: u64,
    /// Frame number.
    pub frame: u32,
}

/// What the parent asks a child to render (`spec.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RenderSpec {
    /// The scene files.
    pub scenes: Vec<PathBuf>,
    /// Size, bounces and camera; each job sets spp and seed.
    pub settings: RenderSettings,
    /// Tile edge.
    pub tile: u32,
    /// The frames of each scene.
    pub jobs: Vec<FrameJob>,
}

/// The frames a child rendered: `[scene][job name]`, each a frame's canonical bytes.
pub type ClassFrames = Vec<BTreeMap<String, Vec<u8>>>;

/// What a child reports besides its frames (`class.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    /// The adapter's determinism class.
    pub class: DeterminismClass,
    /// Seconds to open the adapter.
    pub gpu_init_s: f64,
    /// Seconds to load and render every scene.
    pub render_s: f64,
}

/// Why a class's renders failed or cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ClassRenderError {
    /// A file cannot be read.
    #[error("reading {what}{path}: {source}")]
    Read {
        /// What the file is (`render spec ` or empty).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A spec or report file does not parse.
    #[error("{what}{path}: not valid: {source}")]
    Parse {
        /// What the file is (`render spec ` or empty).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A file cannot be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The adapter cannot be opened.
    #[error(transparent)]
    Gpu(Box<RenderError>),
    /// A scene does not load.
    #[error("loading scene {path}: {source}")]
    Load {
        /// The scene file.
        path: PathBuf,
        /// Why.
        source: Box<SceneError>,
    },
    /// A scene cannot be uploaded.
    #[error("uploading scene {path}: {source}")]
    Upload {
        /// The scene file.
        path: PathBuf,
        /// Why.
        source: Box<RenderError>,
    },
    /// A tile failed to render.
    #[error("{path}: {job} render, tile {rect}: {source}")]
    Tile {
        /// The scene file.
        path: PathBuf,
        /// The frame's name.
        job: String,
        /// The tile.
        rect: TileRect,
        /// Why.
        source: Box<RenderError>,
    },
    /// A rendered tile is not the canonical bytes of its rectangle.
    #[error("{path}: {job} render, tile {rect}: {len} bytes, not the tile's canonical size")]
    TileSize {
        /// The scene file.
        path: PathBuf,
        /// The frame's name.
        job: String,
        /// The tile.
        rect: TileRect,
        /// The rendered bytes' length.
        len: usize,
    },
    /// A frame file has the wrong size.
    #[error("{path}: {len} bytes, a {width}x{height} frame has {want}")]
    FrameSize {
        /// The frame file.
        path: PathBuf,
        /// Its size.
        len: usize,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// The size it should have.
        want: usize,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ClassRenderError> {
    std::fs::read(path).map_err(|source| ClassRenderError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ClassRenderError> {
    std::fs::write(path, bytes).map_err(|source| ClassRenderError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<T: for<'a> Deserialize<'a>>(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<T, ClassRenderError> {
    serde_json::from_slice(bytes).map_err(|source| ClassRenderError::Parse {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The file of scene `scene_idx`'s frame `job` in a child's folder.
pub fn frame_file(dir: &Path, scene_idx: usize, job: &str) -> PathBuf {
    dir.join(format!("{scene_idx}-{job}.bin"))
}

/// Write `spec` to `path` for a child to read.
pub fn write_spec(path: &Path, spec: &RenderSpec) -> Result<(), ClassRenderError> {
    let bytes = serde_json::to_vec(spec).map_err(|source| ClassRenderError::Parse {
        what: "",
        path: path.to_path_buf(),
        source,
    })?;
    write(path, &bytes)
}

/// The child: render every job of the spec at `spec_path` for every scene, tile by tile
/// as a node does, and write each frame's canonical bytes ([`frame_file`]) and the
/// [`ChildReport`] (`class.json`) to `out`. `progress` gets a line per step.
pub fn render_spec(
    spec_path: &Path,
    out: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<(), ClassRenderError> {
    let spec: RenderSpec = parse("render spec ", spec_path, &read("render spec ", spec_path)?)?;
    let started = Instant::now();
    let gpu = Arc::new(Gpu::new().map_err(|e| ClassRenderError::Gpu(Box::new(e)))?);
    let gpu_init_s = started.elapsed().as_secs_f64();
    progress(format!("adapter: {}", gpu.class()));
    let started = Instant::now();
    let (w, h) = (spec.settings.width, spec.settings.height);
    for (scene_idx, path) in spec.scenes.iter().enumerate() {
        let scene_started = Instant::now();
        let scene = Scene::load(path, &LoadOptions::default()).map_err(|source| {
            ClassRenderError::Load {
                path: path.clone(),
                source: Box::new(source),
            }
        })?;
        let renderer =
            SceneRenderer::new(gpu.clone(), &scene).map_err(|source| ClassRenderError::Upload {
                path: path.clone(),
                source: Box::new(source),
            })?;
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
                    .map_err(|source| ClassRenderError::Tile {
                        path: path.clone(),
                        job: job.name.clone(),
                        rect,
                        source: Box::new(source),
                    })?;
                if !paste(&mut frame, w, h, rect, &bytes) {
                    return Err(ClassRenderError::TileSize {
                        path: path.clone(),
                        job: job.name.clone(),
                        rect,
                        len: bytes.len(),
                    });
                }
            }
            write(&frame_file(out, scene_idx, &job.name), &frame)?;
        }
        progress(format!(
            "rendered {} in {:.1} s",
            path.display(),
            scene_started.elapsed().as_secs_f64()
        ));
    }
    let report = ChildReport {
        class: gpu.class(),
        gpu_init_s,
        render_s: started.elapsed().as_secs_f64(),
    };
    let file = out.join("class.json");
    let bytes = serde_json::to_vec(&report).map_err(|source| ClassRenderError::Parse {
        what: "",
        path: file.clone(),
        source,
    })?;
    write(&file, &bytes)
}

/// Read back what a child wrote to `dir`: its report, and per scene (of `n_scenes`) the
/// frame of every job, each checked to be a whole `width × height` frame.
pub fn read_class(
    dir: &Path,
    n_scenes: usize,
    jobs: &[FrameJob],
    width: u32,
    height: u32,
) -> Result<(ChildReport, ClassFrames), ClassRenderError> {
    let report_path = dir.join("class.json");
    let child: ChildReport = parse("", &report_path, &read("", &report_path)?)?;
    let want = width as usize * height as usize * 8;
    let mut frames = Vec::new();
    for scene_idx in 0..n_scenes {
        let mut by_job = BTreeMap::new();
        for job in jobs {
            let file = frame_file(dir, scene_idx, &job.name);
            let bytes = read("", &file)?;
            if bytes.len() != want {
                return Err(ClassRenderError::FrameSize {
                    path: file,
                    len: bytes.len(),
                    width,
                    height,
                    want,
                });
            }
            by_job.insert(job.name.clone(), bytes);
        }
        frames.push(by_job);
    }
    Ok((child, frames))
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

/// A class to render in: a preset, or lavapipe from a given Vulkan driver manifest; the
/// environment its child process gets.
#[derive(Clone, Debug)]
pub struct ClassEnv {
    /// The `--classes` entry.
    pub name: String,
    /// The variables set for the child.
    pub env: Vec<(String, String)>,
    /// What it is, for the report.
    pub about: String,
}

/// A `--classes` entry that names no class.
#[derive(Debug, thiserror::Error)]
pub enum ClassEnvError {
    /// `vk-icd:FILE` with no file there.
    #[error("--classes {name}: no Vulkan driver manifest (ICD JSON) at {file}")]
    NoManifest {
        /// The entry.
        name: String,
        /// The file.
        file: String,
    },
    /// Neither a preset nor `vk-icd:FILE`.
    #[error("--classes: unknown class {name:?}; expected some of {presets}, or vk-icd:FILE")]
    Unknown {
        /// The entry.
        name: String,
        /// The presets' names, comma-separated.
        presets: String,
    },
}

impl ClassEnv {
    /// A `--classes` entry: a preset's name (`default`, `lavapipe`, `lp128`, `sse41`,
    /// `gl`) or `vk-icd:FILE`.
    pub fn parse(name: &str) -> Result<ClassEnv, ClassEnvError> {
        if let Some(file) = name.strip_prefix("vk-icd:") {
            let path = Path::new(file);
            if !path.is_file() {
                return Err(ClassEnvError::NoManifest {
                    name: name.into(),
                    file: file.into(),
                });
            }
            let mut env: Vec<(String, String)> = LAVAPIPE
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            env.push(("VK_ICD_FILENAMES".into(), file.into()));
            return Ok(ClassEnv {
                name: name.into(),
                env,
                about: format!("lavapipe from the Vulkan driver manifest {file}"),
            });
        }
        let Some(p) = PRESETS.iter().find(|p| p.name == name) else {
            let names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
            return Err(ClassEnvError::Unknown {
                name: name.into(),
                presets: names.join(", "),
            });
        };
        Ok(ClassEnv {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_is_a_preset_or_a_vulkan_driver_manifest() {
        let sse41 = ClassEnv::parse("sse41").unwrap();
        assert!(sse41
            .env
            .contains(&("GALLIUM_OVERRIDE_CPU_CAPS".into(), "sse4.1".into())));
        let dir = tempfile::tempdir().unwrap();
        let icd = dir.path().join("lvp.json");
        let spec = format!("vk-icd:{}", icd.display());
        let e = ClassEnv::parse(&spec).unwrap_err().to_string();
        assert!(e.contains("no Vulkan driver manifest"), "{e}");
        std::fs::write(&icd, "{}").unwrap();
        let c = ClassEnv::parse(&spec).unwrap();
        assert_eq!(c.name, spec);
        assert!(c
            .env
            .contains(&("VK_ICD_FILENAMES".into(), icd.display().to_string())));
        assert!(c
            .env
            .contains(&("WGPU_ADAPTER_NAME".into(), "llvmpipe".into())));
        let e = ClassEnv::parse("mesa99").unwrap_err().to_string();
        assert!(e.contains("vk-icd:FILE"), "{e}");
    }
}
