//! The run of `tessera bench render` around [`bench_scene`]: what ran (the commit, the
//! date, the machine) taken as the run starts, every scene benchmarked in turn (one that
//! fails is recorded with its error and the run goes on), the [`Report`] put together,
//! and its JSON file written.

use crate::bench::{bench_scene, scene_name, BenchOptions, Host, Report, SceneResult, Settings};
use crate::Gpu;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_protocol::{DeterminismClass, RenderSettings};

/// What ran, as of the start: commits may land while a long benchmark runs.
#[derive(Debug)]
pub struct Provenance {
    /// The machine.
    pub host: Host,
    /// When the run started (`YYYY-MM-DDTHH:MM:SSZ`).
    pub date_utc: String,
    /// `git rev-parse HEAD` in the current folder, if git answers.
    pub git_commit: Option<String>,
    /// Whether tracked files have changes, if git answers.
    pub git_dirty: Option<bool>,
}

/// What `git ARGS` prints (trimmed), if it runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Provenance {
    /// This machine, the time and the git commit of the current folder, now.
    pub fn probe() -> Provenance {
        Provenance {
            host: Host::probe(),
            date_utc: crate::bench::utc_now(),
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty()),
        }
    }
}

impl Report {
    /// The report of a run that started as `provenance` says, on the adapter of `class`.
    pub fn new(
        provenance: Provenance,
        device: String,
        class: DeterminismClass,
        gpu_init_ms: f64,
        settings: Settings,
        scenes: Vec<SceneResult>,
    ) -> Report {
        Report {
            format: "tessera-bench-render v1",
            device,
            date_utc: provenance.date_utc,
            git_commit: provenance.git_commit,
            git_dirty: provenance.git_dirty,
            host: provenance.host,
            determinism_class_id: hex::encode(class.id()),
            adapter: class,
            gpu_init_ms,
            settings,
            scenes,
        }
    }
}

/// What [`bench_scenes`] calls with each scene's figures and full frame (its canonical
/// bytes), to write it; an `Err` fails the scene with that error (and its causes).
pub type OnFrame<'a> =
    dyn FnMut(&SceneResult, &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + 'a;

/// An error and its causes joined by `: `.
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Benchmark every scene of `scenes` in turn; `on_frame` gets each scene's figures and
/// full frame (its canonical bytes), to write it, and may fail the scene. A scene that
/// fails is recorded with its error and no figures. `progress` gets a line as each scene
/// starts and one when it is done or failed. The results, and whether every scene passed.
pub fn bench_scenes(
    gpu: &Arc<Gpu>,
    scenes: &[PathBuf],
    settings: &RenderSettings,
    opts: &BenchOptions,
    on_frame: &mut OnFrame<'_>,
    progress: &mut dyn FnMut(String),
) -> (Vec<SceneResult>, bool) {
    let mut results = Vec::new();
    let mut ok = true;
    for path in scenes {
        progress(format!("bench: {}", path.display()));
        let result = bench_scene(gpu, path, settings, opts)
            .map_err(|e| chain_text(&e))
            .and_then(|(result, frame)| {
                on_frame(&result, &frame)
                    .map(|()| result)
                    .map_err(|e| chain_text(&*e))
            });
        match result {
            Ok(r) => {
                progress(format!(
                    "bench: {}: {:.3} s, {:.0} samples/s",
                    r.scene, r.render_s, r.samples_per_second
                ));
                results.push(r);
            }
            Err(e) => {
                ok = false;
                progress(format!("bench: {}: {e}", path.display()));
                results.push(SceneResult {
                    scene: scene_name(path),
                    path: path.display().to_string(),
                    error: Some(e),
                    ..Default::default()
                });
            }
        }
    }
    (results, ok)
}

/// A report file that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportFileError {
    /// Its folder cannot be created.
    #[error("creating {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The report cannot be encoded.
    #[error("encoding the report: {0}")]
    Encode(#[from] serde_json::Error),
    /// The file cannot be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a report goes by default: `benches/results/render-<device>.json`.
pub fn default_report_path(device: &str) -> PathBuf {
    PathBuf::from(format!("benches/results/render-{device}.json"))
}

/// Write `report` as pretty JSON (and a newline) to `path`, creating its folder; the JSON
/// written, without the newline.
pub fn write_report(path: &Path, report: &Report) -> Result<String, ReportFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ReportFileError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, format!("{json}\n")).map_err(|source| ReportFileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_is_written_with_its_causes() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain_text(&e), "outer: inner");
    }

    #[test]
    fn a_report_is_written_under_a_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results/render-x.json");
        let class = DeterminismClass {
            backend: "vulkan".into(),
            adapter: "a".into(),
            driver: "d".into(),
            driver_info: "1".into(),
            renderer_build: "b".into(),
            shader_hash: "s".into(),
        };
        let settings = Settings {
            width: 1,
            height: 1,
            spp: 1,
            max_bounces: 0,
            seed: 1,
            tile: 0,
            batch: 0,
            repeat: 1,
            frame: 0,
            parallelism: "pixel".into(),
        };
        let provenance = Provenance::probe();
        let report = Report::new(provenance, "x".into(), class, 1.5, settings, vec![]);
        assert_eq!(report.determinism_class_id.len(), 64);
        let json = write_report(&path, &report).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{json}\n"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["format"], "tessera-bench-render v1");
        assert_eq!(v["gpu_init_ms"], 1.5);
        assert_eq!(
            default_report_path("x"),
            Path::new("benches/results/render-x.json")
        );
        let blocked = dir.path().join("results/render-x.json/inner.json");
        let e = write_report(&blocked, &report).unwrap_err().to_string();
        assert!(e.starts_with("creating "), "{e}");
    }
}
