//! Where a job's frame files go: a pattern whose `#` run becomes the zero-padded frame
//! number, the EXR beside each PNG, the proof bundle beside the first frame, and the
//! folder they go in.

use crate::{write_exr, write_png, ImageError, ViewTransform};
use std::path::{Path, PathBuf};

/// An output pattern that cannot name every frame's PNG.
#[derive(Debug, thiserror::Error)]
pub enum FramePathError {
    /// Several frames and no `#` for the frame number.
    #[error("output {}: several frames need a `#` in the file name for the frame number", pattern.display())]
    NoFrameNumber {
        /// The pattern.
        pattern: PathBuf,
    },
    /// The name does not end in `.png`.
    #[error("output {}: the file name must end in .png (the EXR is written beside it, with the extension .exr)", pattern.display())]
    NotPng {
        /// The pattern.
        pattern: PathBuf,
    },
}

/// The PNG path of `frame` of `n_frames`: the first run of `#` in `pattern` becomes the
/// zero-padded frame number; without one, only a single frame can be written. The name
/// must end in `.png` (any case): the EXR goes beside it, so checking the pattern before
/// a render is what keeps a long render from being lost to an unwritable name.
pub fn frame_path(pattern: &Path, frame: u32, n_frames: u32) -> Result<PathBuf, FramePathError> {
    let png = pattern
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        return Err(FramePathError::NotPng {
            pattern: pattern.to_path_buf(),
        });
    }
    let s = pattern.to_string_lossy();
    if let Some(start) = s.find('#') {
        let len = s[start..].chars().take_while(|&c| c == '#').count();
        return Ok(PathBuf::from(format!(
            "{}{:0len$}{}",
            &s[..start],
            frame,
            &s[start + len..]
        )));
    }
    if n_frames > 1 {
        return Err(FramePathError::NoFrameNumber {
            pattern: pattern.to_path_buf(),
        });
    }
    Ok(pattern.to_path_buf())
}

/// The default proof bundle path: the first frame's path with the extension
/// `.proof.json`.
pub fn proof_path(pattern: &Path, first_frame: u32) -> PathBuf {
    frame_path(pattern, first_frame, 1)
        .unwrap_or(pattern.to_path_buf())
        .with_extension("proof.json")
}

/// A folder that cannot be created.
#[derive(Debug, thiserror::Error)]
#[error("creating folder {}: {source}", path.display())]
pub struct FolderError {
    /// The folder.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Create the folder that `file` goes in, if it names one.
pub fn create_parent(file: &Path) -> Result<(), FolderError> {
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| FolderError {
            path: dir.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// Write one frame's canonical `pixels` as the PNG `png` (through `view`) and as the EXR
/// beside it; returns both paths.
pub fn write_frame(
    png: PathBuf,
    width: u32,
    height: u32,
    pixels: &[u8],
    view: &ViewTransform,
) -> Result<[PathBuf; 2], ImageError> {
    let exr = png.with_extension("exr");
    write_png(&png, width, height, pixels, view)?;
    write_exr(&exr, width, height, pixels)?;
    Ok([png, exr])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_become_the_padded_frame_number() {
        let p = frame_path(Path::new("out/f-###.png"), 7, 3).unwrap();
        assert_eq!(p, Path::new("out/f-007.png"));
        assert!(frame_path(Path::new("f.png"), 1, 2).is_err());
        assert_eq!(
            frame_path(Path::new("F.PNG"), 1, 1).unwrap(),
            Path::new("F.PNG")
        );
        for bad in ["f.exr", "f", "f.png.tmp", "out/f-#.jpg"] {
            let e = frame_path(Path::new(bad), 1, 1).unwrap_err().to_string();
            assert!(e.starts_with(&format!("output {bad}: ")), "{e}");
            assert!(e.contains("must end in .png"), "{e}");
        }
        assert_eq!(
            frame_path(Path::new("f.png"), 1, 1).unwrap(),
            Path::new("f.png")
        );
        assert_eq!(
            proof_path(Path::new("f-##.png"), 3),
            Path::new("f-03.proof.json")
        );
    }

    #[test]
    fn a_file_gets_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        create_parent(&dir.path().join("a/b/f.png")).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        create_parent(Path::new("f.png")).unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let e = create_parent(&blocker.join("sub/f.png")).unwrap_err();
        assert!(e.to_string().starts_with("creating folder "), "{e}");
    }
}
