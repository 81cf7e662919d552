//! What `tessera audit` reads from files around [`crate::audit`]: the proof bundle, the
//! scene to re-render (found beside the bundle or where it was rendered), and the check
//! of that scene's hash and of an image file against the bundle; and the report as
//! `tessera audit` prints it.

use crate::audit::{check_image, AuditReport, CheckResult};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::Digest;

/// A proof bundle file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    /// The file cannot be read.
    #[error("reading proof bundle {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a bundle.
    #[error("proof bundle {path}: not a valid bundle: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// Read and parse the proof bundle at `path` (nothing in it is checked yet).
pub fn read_bundle(path: &Path) -> Result<ProofBundle, BundleFileError> {
    let text = std::fs::read(path).map_err(|source| BundleFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| BundleFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The scene file to re-render `bundle` (read from `bundle_path`) with: `given` when
/// set, else the path recorded at render time if it exists, else the scene's name beside
/// the bundle if it exists, else the scene's name as a path.
pub fn rerender_scene_path(
    bundle_path: &Path,
    bundle: &ProofBundle,
    given: Option<&Path>,
) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let name = &bundle.manifest.statement.scene_name;
    let beside = bundle_path.parent().unwrap_or(Path::new(".")).join(name);
    match &bundle.scene_hint {
        Some(h) if Path::new(h).exists() => PathBuf::from(h),
        _ if beside.exists() => beside,
        _ => PathBuf::from(name),
    }
}

/// The failed `rerender` check when the scene at `path` (content hash `hash`) is not the
/// one the job rendered; `None` when it is.
pub fn scene_mismatch(path: &Path, hash: &Digest, bundle: &ProofBundle) -> Option<CheckResult> {
    let want = &bundle.manifest.statement.scene_hash;
    (hash != want).then(|| CheckResult {
        name: "rerender".into(),
        passed: false,
        detail: format!(
            "scene {} has hash {}, the job rendered {}",
            path.display(),
            hex::encode(hash),
            hex::encode(want)
        ),
    })
}

/// The `image` check of the `index`-th image file (`path`, the job's frame
/// `frame_start + index`), given what reading it gave: its size and canonical pixels, or
/// the reason it could not be read (its message is the failed check's detail).
pub fn check_image_file(
    bundle: &ProofBundle,
    index: usize,
    path: &Path,
    read: Result<(u32, u32, Vec<u8>), impl std::fmt::Display>,
) -> CheckResult {
    match read {
        Ok((w, h, pixels)) => {
            let frame = bundle.manifest.statement.frame_start + index as u32;
            let mut c = check_image(bundle, frame, w, h, &pixels);
            c.detail = format!("{}: {}", path.display(), c.detail);
            c
        }
        Err(e) => CheckResult {
            name: "image".into(),
            passed: false,
            detail: e.to_string(),
        },
    }
}

/// Write an audit report as `tessera audit` prints it: with `json` one object
/// (`passed`, `checks`), otherwise a line per check and a verdict line.
pub fn write_report(w: &mut impl Write, report: &AuditReport, json: bool) -> io::Result<()> {
    let ok = report.passed();
    if json {
        let work = report.work.map(|x| {
            serde_json::json!({
                "rendered": x.rendered,
                "rerendered": x.rerendered,
                "fraction": x.fraction(),
            })
        });
        let v = serde_json::json!({"passed": ok, "checks": report.checks, "work": work});
        return writeln!(w, "{v}");
    }
    for c in &report.checks {
        let status = if c.passed { "ok  " } else { "FAIL" };
        writeln!(w, "{status} {:<20} {}", c.name, c.detail)?;
    }
    if let Some(x) = report.work {
        writeln!(
            w,
            "work: verifiers re-rendered {:.2} % of the pixel-samples the nodes rendered ({} of {})",
            100.0 * x.fraction(),
            x.rerendered,
            x.rendered
        )?;
    }
    if ok {
        writeln!(w, "audit passed: {} checks", report.checks.len())
    } else {
        let failed: Vec<_> = report.failures().map(|c| c.name.clone()).collect();
        writeln!(w, "audit FAILED: {}", failed.join(", "))
    }
}
