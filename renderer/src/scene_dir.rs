//! Which scene files a command works on: named on its command line (paths, or names in
//! a scene folder with or without their extension), or every glTF scene in the folder;
//! the large benchmark scene, generated when missing; and the files of one scene that
//! `tessera submit` uploads.

use crate::{LoadOptions, Scene, SceneError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A scene list that cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SceneDirError {
    /// The scene folder cannot be listed.
    #[error("listing --scene-dir {dir}: {source}")]
    List {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A name is neither a file nor a scene in the folder.
    #[error("--scenes: {name:?} is neither a file nor a scene in {dir}")]
    NotFound {
        /// The name as given.
        name: String,
        /// The folder it was looked up in.
        dir: PathBuf,
    },
}

/// The scene files of `names` (each a file path, or a scene in `dir` with or without its
/// `.glb`/`.gltf` extension; blank names are skipped), or when `names` is empty every
/// `.glb` and `.gltf` in `dir`, sorted. The list may be empty.
pub fn resolve_scenes(names: &[String], dir: &Path) -> Result<Vec<PathBuf>, SceneDirError> {
    let list = |source| SceneDirError::List {
        dir: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    if names.is_empty() {
        for e in std::fs::read_dir(dir).map_err(list)? {
            let p = e.map_err(list)?.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("glb" | "gltf")) {
                out.push(p);
            }
        }
        out.sort();
        return Ok(out);
    }
    for s in names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let candidates = [
            PathBuf::from(s),
            dir.join(s),
            dir.join(format!("{s}.glb")),
            dir.join(format!("{s}.gltf")),
        ];
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => out.push(p.clone()),
            None => {
                return Err(SceneDirError::NotFound {
                    name: s.into(),
                    dir: dir.to_path_buf(),
                })
            }
        }
    }
    Ok(out)
}

/// A scene that cannot be listed for upload.
#[derive(Debug, thiserror::Error)]
pub enum SceneFilesError {
    /// The scene does not load.
    #[error("loading scene {path}: {source}")]
    Load {
        /// The entry file.
        path: PathBuf,
        /// Why.
        source: Box<SceneError>,
    },
    /// The requested camera is not in the scene.
    #[error("--camera {name:?}: scene {path} has no such camera (it has: {has})")]
    NoCamera {
        /// The camera asked for.
        name: String,
        /// The entry file.
        path: PathBuf,
        /// The scene's cameras, comma-separated, or `none`.
        has: String,
    },
    /// A file name cannot be sent as a listing key.
    #[error("scene {path}: {what} not UTF-8")]
    NotUtf8 {
        /// The entry file.
        path: PathBuf,
        /// Which name.
        what: String,
    },
}

/// The scene at `path`, loaded (so a bad scene fails here, naming the file), with its
/// files: the entry file's name, and the entry file and every file it reads by path
/// relative to the scene's folder (forward slashes) with their local paths. `camera`,
/// when given, must be one of the scene's.
pub fn scene_files(
    path: &Path,
    camera: Option<&str>,
) -> Result<(Scene, String, BTreeMap<String, PathBuf>), SceneFilesError> {
    let scene =
        Scene::load(path, &LoadOptions::default()).map_err(|source| SceneFilesError::Load {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    if let Some(name) = camera {
        let names = scene.camera_names();
        if !names.iter().any(|n| n == name) {
            return Err(SceneFilesError::NoCamera {
                name: name.into(),
                path: path.to_path_buf(),
                has: if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
            });
        }
    }
    let not_utf8 = |what: String| SceneFilesError::NotUtf8 {
        path: path.to_path_buf(),
        what,
    };
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entry = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| not_utf8("the file name is".into()))?
        .to_string();
    let mut local = BTreeMap::new();
    local.insert(entry.clone(), path.to_path_buf());
    for rel in scene.files() {
        let parts: Option<Vec<&str>> = rel.iter().map(|c| c.to_str()).collect();
        let key = parts
            .ok_or_else(|| not_utf8(format!("file {} has a name that is", rel.display())))?
            .join("/");
        local.insert(key, folder.join(rel));
    }
    Ok((scene, entry, local))
}

/// The large scene cannot be found or generated.
#[derive(Debug, thiserror::Error)]
pub enum LargeSceneError {
    /// It is missing and there is no generator.
    #[error("{path} is missing and no gen-scenes binary is beside tessera: run `cargo run --release -p tessera-scenes --bin gen-scenes -- --large {dir}`")]
    NoGenerator {
        /// The scene file.
        path: PathBuf,
        /// Its folder.
        dir: PathBuf,
    },
    /// The generator could not be started.
    #[error("running {gen}: {source}")]
    Start {
        /// The generator.
        gen: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The generator failed or wrote no scene.
    #[error("{gen} --large {dir} failed ({status}) or wrote no large.gltf")]
    Failed {
        /// The generator.
        gen: PathBuf,
        /// The folder.
        dir: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// `dir/large.gltf` (the ≥2M-triangle benchmark scene), generated first by the
/// `gen-scenes` binary beside the running one when it is missing; `progress` hears when.
pub fn large_scene(
    dir: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<PathBuf, LargeSceneError> {
    let path = dir.join("large.gltf");
    if path.is_file() {
        return Ok(path);
    }
    let gen = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("gen-scenes")))
        .filter(|g| g.is_file());
    let Some(gen) = gen else {
        return Err(LargeSceneError::NoGenerator {
            path,
            dir: dir.to_path_buf(),
        });
    };
    progress(format!(
        "generating {} with {}",
        path.display(),
        gen.display()
    ));
    let status = std::process::Command::new(&gen)
        .arg("--large")
        .arg(dir)
        .status()
        .map_err(|source| LargeSceneError::Start {
            gen: gen.clone(),
            source,
        })?;
    if !status.success() || !path.is_file() {
        return Err(LargeSceneError::Failed {
            gen,
            dir: dir.to_path_buf(),
            status,
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_paths_or_scenes_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.glb", "a.gltf", "notes.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let all = resolve_scenes(&[], dir.path()).unwrap();
        assert_eq!(all, [dir.path().join("a.gltf"), dir.path().join("b.glb")]);
        let named = resolve_scenes(&["b".into(), " ".into(), "a.gltf".into()], dir.path());
        assert_eq!(
            named.unwrap(),
            [dir.path().join("b.glb"), dir.path().join("a.gltf")]
        );
        let e = resolve_scenes(&["c".into()], dir.path()).unwrap_err();
        assert!(
            e.to_string().starts_with("--scenes: \"c\" is neither"),
            "{e}"
        );
    }
}
