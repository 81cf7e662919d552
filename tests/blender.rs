//! The Blender add-on (addons/blender/tessera_farm) inside Blender's Python module: runs
//! tests/blender/test_addon.py with `bpy` 4.5 from PyPI in a virtual environment under
//! target/blender/venv, made here when missing (Python 3.11, which bpy 4.5 needs:
//! `TESSERA_PYTHON`, else `python3.11`). Its farm test starts `tessera coordinator`, a node
//! and a verifier on the local RabbitMQ. Without Python 3.11 or PyPI the test prints
//! SKIPPED, unless TESSERA_REQUIRE_BLENDER=1 (CI), which makes it fail loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, made (with bpy and nothing else) if missing; `Err` says why not.
fn venv() -> Result<PathBuf, String> {
    let dir = root().join("target").join("blender").join("venv");
    let python = dir.join("bin").join("python");
    let has_bpy = |p: &Path| {
        Command::new(p)
            .args(["-c", "import bpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && has_bpy(&python) {
        return Ok(python);
    }
    let base = std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3.11".into());
    let out = Command::new(&base)
        .args(["-m", "venv", "--clear"])
        .arg(&dir)
        .output()
        .map_err(|e| format!("{base}: {e} (bpy 4.5 needs Python 3.11; set TESSERA_PYTHON)"))?;
    if !out.status.success() {
        return Err(format!(
            "{base} -m venv {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "bpy==4.5.*"])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !out.status.success() || !has_bpy(&python) {
        return Err(format!(
            "pip install bpy==4.5.* failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(python)
}

#[test]
fn the_blender_addon_submits_follows_and_fetches_in_bpy() {
    let required = std::env::var("TESSERA_REQUIRE_BLENDER").is_ok_and(|v| v == "1");
    let python = match venv() {
        Ok(p) => p,
        Err(why) if !required => {
            println!("SKIPPED: the Blender add-on test needs bpy 4.5: {why}");
            return;
        }
        Err(why) => panic!("TESSERA_REQUIRE_BLENDER=1 and bpy 4.5 cannot be installed: {why}"),
    };
    let mut stderr = String::new();
    for script in ["test_client.py", "test_addon.py"] {
        let out = Command::new(&python)
            .arg(root().join("tests").join("blender").join(script))
            .env("TESSERA_BIN", env!("CARGO_BIN_EXE_tessera"))
            .current_dir(root())
            .output()
            .expect("run the add-on's test");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "--- {script} stdout\n{}\n--- {script} stderr\n{err}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.status.success(), "tests/blender/{script} failed");
        stderr += &err;
    }
    // A farm test that skipped (no broker) is a failure where the broker is required.
    if std::env::var("TESSERA_REQUIRE_BROKER").is_ok_and(|v| v == "1") {
        assert!(
            !stderr.contains("skipped 'no RabbitMQ"),
            "TESSERA_REQUIRE_BROKER=1 and the farm test skipped"
        );
    }
}
