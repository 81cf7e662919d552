//! `gen-scenes`: regenerates Tessera's sample scenes, or checks that the committed ones are current.
//!
//! Exit codes: 0 = written, or (with `--check`) every file is up to date;
//! 1 = `--check` found a missing or different file; 2 = an error (IO, invalid scene).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tessera_scenes::samples::SAMPLE_SCENES;

/// Regenerate the sample scenes (`.glb`) of the `scenes/` folder.
#[derive(Parser, Debug)]
#[command(name = "gen-scenes", version)]
struct Args {
    /// Folder to write into (or to check); defaults to the `scenes/` crate folder.
    #[arg(long, value_name = "DIR", env = "TESSERA_SCENES_OUT")]
    out: Option<PathBuf>,
    /// Write nothing; exit 1 if any generated file is missing or differs from what is on disk.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let result = if args.check {
        check(&out)
    } else {
        write(&out).map(|()| true)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("gen-scenes: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes every scene into `out` (through a temporary file, so a reader never sees half a file).
fn write(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for scene in SAMPLE_SCENES {
        let bytes = scene
            .to_glb()
            .with_context(|| format!("building {}", scene.file_name))?;
        let path = out.join(scene.file_name);
        let tmp = out.join(format!(".{}.tmp", scene.file_name));
        std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

/// Compares every scene with its file in `out`; returns whether all are current.
fn check(out: &Path) -> anyhow::Result<bool> {
    let mut current = true;
    for scene in SAMPLE_SCENES {
        let bytes = scene
            .to_glb()
            .with_context(|| format!("building {}", scene.file_name))?;
        let path = out.join(scene.file_name);
        match std::fs::read(&path) {
            Ok(on_disk) if on_disk == bytes => println!("ok {}", path.display()),
            Ok(on_disk) => {
                current = false;
                println!(
                    "stale {}: {} bytes on disk, {} generated",
                    path.display(),
                    on_disk.len(),
                    bytes.len()
                );
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                current = false;
                println!("missing {}", path.display());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", path.display()));
            }
        }
    }
    if !current {
        eprintln!("gen-scenes: scenes are stale; run `cargo run --release -p tessera-scenes --bin gen-scenes`");
    }
    Ok(current)
}
