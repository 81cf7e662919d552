//! `gen-scenes`: regenerates Tessera's sample scenes, or checks that the committed ones are current.
//!
//! Exit codes: 0 = written, or (with `--check`) every file is up to date;
//! 1 = `--check` found a missing or different file; 2 = an error (IO, invalid scene).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use tessera_scenes::samples::{large, SAMPLE_SCENES};

/// Regenerate the sample scenes (`.glb`, `.gltf` + files) of the `scenes/` folder.
#[derive(Parser, Debug)]
#[command(name = "gen-scenes", version)]
struct Args {
    /// Folder to write into (or to check); defaults to the `scenes/` crate folder.
    #[arg(long, value_name = "DIR", env = "TESSERA_SCENES_OUT")]
    out: Option<PathBuf>,
    /// Write nothing; exit 1 if any generated file is missing or differs from what is on disk.
    #[arg(long, conflicts_with = "large")]
    check: bool,
    /// Instead of the sample scenes, write the large scale-test scene (`large.gltf`,
    /// `large.bin`, `large-tex-*.png`; about 200 MB, not committed) into DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    large: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if let Some(dir) = &args.large {
        write_large(dir).map(|()| true)
    } else {
        let out = args
            .out
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        if args.check {
            check(&out)
        } else {
            write(&out).map(|()| true)
        }
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

/// Writes one file through a temporary file, so that a reader never sees half a file.
fn write_file(out: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = out.join(name);
    let tmp = out.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

/// Writes every scene's files into `out`.
fn write(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for scene in SAMPLE_SCENES {
        let files = scene
            .files()
            .with_context(|| format!("building {}", scene.file_name))?;
        for (name, bytes) in files {
            let path = write_file(out, &name, &bytes)?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    Ok(())
}

/// Compares every scene's files with those in `out`; returns whether all are current.
fn check(out: &Path) -> anyhow::Result<bool> {
    let mut current = true;
    for scene in SAMPLE_SCENES {
        let files = scene
            .files()
            .with_context(|| format!("building {}", scene.file_name))?;
        for (name, bytes) in files {
            let path = out.join(&name);
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
    }
    if !current {
        eprintln!("gen-scenes: scenes are stale; run `cargo run --release -p tessera-scenes --bin gen-scenes`");
    }
    Ok(current)
}

/// Builds and writes the large scene into `dir`, then prints its size.
fn write_large(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let scene = large().context("building the large scene")?;
    let mut total = 0u64;
    for (name, bytes) in scene.builder.to_gltf_files("large.gltf", "large.bin") {
        write_file(dir, &name, &bytes)?;
        total += bytes.len() as u64;
    }
    println!(
        "wrote {} (large.gltf, large.bin, {} textures): {} triangles, {} bytes of decoded \
         texture data, {} bytes on disk, in {:.1} s",
        dir.display(),
        scene.builder.external_files().len(),
        scene.triangles,
        scene.texture_bytes,
        total,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
