//! The parent's side of `tessera calibrate`'s class renders: the `--classes` list
//! checked, and one child process per class started with that class's environment, its
//! failure told from the log it wrote, and its frames read back ([`crate::class_render`]
//! is the child's side: the spec, the render loop and the files).

use crate::class_render::{
    read_class, write_spec, ChildReport, ClassEnv, ClassEnvError, ClassFrames, ClassRenderError,
    RenderSpec,
};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;
use tessera_protocol::DeterminismClass;

/// Why a class list is refused or a class's child process did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum ClassChildError {
    /// A `--classes` entry names no class.
    #[error(transparent)]
    Class(#[from] ClassEnvError),
    /// A `--classes` entry is given twice.
    #[error("--classes: {name:?} is listed twice")]
    Twice {
        /// The entry.
        name: String,
    },
    /// Fewer than two classes: nothing to compare.
    #[error("--classes: at least two classes are needed to calibrate, got {count}")]
    TooFew {
        /// How many were given.
        count: usize,
    },
    /// The binary of this process cannot be found.
    #[error("finding the tessera binary: {source}")]
    OwnBinary {
        /// Why.
        source: std::io::Error,
    },
    /// The class's folder or log file cannot be created.
    #[error("creating {path}: {source}")]
    Create {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The child process cannot be started.
    #[error("class {class}: starting {program}: {source}")]
    Start {
        /// The class's `--classes` entry.
        class: String,
        /// The program started.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The child process exited with a failure.
    #[error("class {class} ({env}): the renderer process failed ({status}): {log}")]
    Failed {
        /// The class's `--classes` entry.
        class: String,
        /// Its variables, as [`env_text`] writes them.
        env: String,
        /// How the child exited.
        status: ExitStatus,
        /// The `error` lines of its log, or else its last five lines, joined by ` | `.
        log: String,
    },
    /// Every class rendered as the same determinism class: nothing to compare.
    #[error(
        "every class of --classes {classes} rendered as the same determinism class ({class}): \
         calibration needs renders from two different classes"
    )]
    SameClass {
        /// The `--classes` entries, comma-separated.
        classes: String,
        /// The class they all rendered as.
        class: Box<DeterminismClass>,
    },
    /// The spec cannot be written or what the child wrote cannot be read back.
    #[error(transparent)]
    Files(#[from] ClassRenderError),
}

/// The `--classes` entries (each trimmed) as classes: no entry twice, at least two.
pub fn parse_classes(names: &[String]) -> Result<Vec<ClassEnv>, ClassChildError> {
    let mut classes: Vec<ClassEnv> = Vec::new();
    for name in names {
        let class = ClassEnv::parse(name.trim())?;
        if classes.iter().any(|c| c.name == class.name) {
            return Err(ClassChildError::Twice { name: name.clone() });
        }
        classes.push(class);
    }
    if classes.len() < 2 {
        return Err(ClassChildError::TooFew {
            count: classes.len(),
        });
    }
    Ok(classes)
}

/// That the children of `classes` rendered as at least two determinism classes
/// (`rendered`, in the same order).
pub fn check_distinct(
    classes: &[ClassEnv],
    rendered: &[&DeterminismClass],
) -> Result<(), ClassChildError> {
    let mut ids: Vec<_> = rendered.iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    match rendered.first() {
        Some(first) if ids.len() < 2 => Err(ClassChildError::SameClass {
            classes: classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            class: Box::new((*first).clone()),
        }),
        _ => Ok(()),
    }
}

/// The binary of this process, to start children with. On Linux `/proc/self/exe`, which
/// still runs this very build when the file was replaced by a rebuild meanwhile.
pub fn own_binary() -> Result<PathBuf, ClassChildError> {
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().map_err(|source| ClassChildError::OwnBinary { source })
}

/// A class's variables as `K=V K=V`, or `no variables set`.
pub fn env_text(class: &ClassEnv) -> String {
    if class.env.is_empty() {
        return "no variables set".to_string();
    }
    let pairs: Vec<String> = class.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(" ")
}

/// What a failed child's log says: its lines that start with `error`, or when there are
/// none its last five lines, joined by ` | `.
fn failure_log(log: &str) -> String {
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error")).collect();
    if !errors.is_empty() {
        return errors.join(" | ");
    }
    let mut tail: Vec<&str> = log.lines().rev().take(5).collect();
    tail.reverse();
    tail.join(" | ")
}

/// Render `spec` in `class` in a child process and read back what it rendered. The spec
/// is written to `dir/spec.json`; `child(spec_file, dir)` is the command that makes the
/// child render it into `dir` (this function adds the class's environment and sends the
/// child's stderr to `dir/stderr.log`). `progress` gets a line as the child starts and
/// one when it is done.
pub fn render_class(
    class: &ClassEnv,
    spec: &RenderSpec,
    dir: &Path,
    child: &dyn Fn(&Path, &Path) -> Command,
    progress: &mut dyn FnMut(String),
) -> Result<(ChildReport, ClassFrames), ClassChildError> {
    let create = |path: &Path, source| ClassChildError::Create {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| create(dir, e))?;
    let spec_path = dir.join("spec.json");
    write_spec(&spec_path, spec)?;
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).map_err(|e| create(&log_path, e))?;
    let env = env_text(class);
    progress(format!(
        "class {} ({env}): rendering {} scene(s) x {} frame(s)",
        class.name,
        spec.scenes.len(),
        spec.jobs.len()
    ));
    let mut cmd = child(&spec_path, dir);
    cmd.envs(class.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let started = Instant::now();
    let status = cmd.status().map_err(|source| ClassChildError::Start {
        class: class.name.clone(),
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(ClassChildError::Failed {
            class: class.name.clone(),
            env,
            status,
            log: failure_log(&log),
        });
    }
    let s = &spec.settings;
    let (report, frames) = read_class(dir, spec.scenes.len(), &spec.jobs, s.width, s.height)?;
    progress(format!(
        "class {}: {} in {:.1} s",
        class.name,
        report.class,
        started.elapsed().as_secs_f64()
    ));
    Ok((report, frames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_protocol::RenderSettings;

    #[test]
    fn a_class_list_has_two_distinct_classes() {
        let list = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            parse_classes(&names)
        };
        let classes = list(&["default", " lp128"]).unwrap();
        assert_eq!(classes[1].name, "lp128");
        assert_eq!(env_text(&classes[0]), "no variables set");
        assert!(env_text(&classes[1]).contains("LP_NATIVE_VECTOR_WIDTH=128"));
        let e = list(&["lp128", "lp128"]).unwrap_err().to_string();
        assert_eq!(e, "--classes: \"lp128\" is listed twice");
        let e = list(&["gl"]).unwrap_err().to_string();
        assert!(e.contains("at least two classes"), "{e}");
        assert!(matches!(
            list(&["gl", "mesa99"]),
            Err(ClassChildError::Class(_))
        ));
    }

    #[test]
    fn the_classes_must_render_as_two_determinism_classes() {
        let class = |adapter: &str| DeterminismClass {
            backend: "vulkan".into(),
            adapter: adapter.into(),
            driver: "d".into(),
            driver_info: "1".into(),
            renderer_build: "b".into(),
            shader_hash: "s".into(),
        };
        let envs = parse_classes(&["default".into(), "lp128".into()]).unwrap();
        let (a, b) = (class("a"), class("b"));
        check_distinct(&envs, &[&a, &b]).unwrap();
        let e = check_distinct(&envs, &[&a, &a]).unwrap_err().to_string();
        assert!(
            e.starts_with("every class of --classes default,lp128 rendered as the same"),
            "{e}"
        );
        assert!(e.ends_with("calibration needs renders from two different classes"));
    }

    #[test]
    fn a_failed_child_is_told_by_its_error_lines_or_its_last_lines() {
        assert_eq!(
            failure_log("loading\nerror: one\nmore\nerror: two\n"),
            "error: one | error: two"
        );
        let log: String = (1..=7).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            failure_log(&log),
            "line 3 | line 4 | line 5 | line 6 | line 7"
        );
    }

    #[test]
    fn a_child_that_fails_names_its_class_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let class = ClassEnv::parse("lp128").unwrap();
        let spec = RenderSpec {
            scenes: vec![],
            settings: RenderSettings {
                width: 1,
                height: 1,
                spp: 1,
                max_bounces: 0,
                seed: 1,
                camera: None,
                frame_rate: Default::default(),
            },
            tile: 1,
            jobs: vec![],
        };
        let child = |spec: &Path, _: &Path| {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(
                    "test -f \"$0\" && echo \"error: vectors $LP_NATIVE_VECTOR_WIDTH\" >&2; exit 3",
                )
                .arg(spec);
            c
        };
        let mut lines = Vec::new();
        let e = render_class(&class, &spec, dir.path(), &child, &mut |l| lines.push(l))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("class lp128 (WGPU_BACKEND=vulkan"), "{e}");
        assert!(e.ends_with(": error: vectors 128"), "{e}");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("rendering 0 scene(s) x 0 frame(s)"));
    }
}
