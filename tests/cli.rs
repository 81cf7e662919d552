//! The `tessera` binary end to end on the embedded default, with the real renderer on
//! whatever adapter wgpu finds (lavapipe in CI): render → audit (--image, --rerender),
//! the drill through the CLI, tampered images, and refused scene files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tessera");
    eprintln!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn render(dir: &Path, name: &str, extra: &[&str]) -> Output {
    let mut c = tessera();
    c.arg("render")
        .arg(root().join("scenes/cornell-box.glb"))
        .arg("-o")
        .arg(dir.join(format!("{name}.png")))
        .arg("--proof")
        .arg(dir.join(format!("{name}.proof.json")))
        .args([
            "--width",
            "64",
            "--height",
            "48",
            "--spp",
            "8",
            "--tile",
            "16",
            "--max-bounces",
            "3",
        ])
        .args(extra)
        .env("TESSERA_DATA", dir.join("data"));
    run(&mut c)
}

#[test]
fn render_then_audit_image_and_rerender() {
    let dir = tempfile::tempdir().unwrap();
    let out = render(dir.path(), "cb", &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PASS") && stdout.contains("wrote"),
        "{stdout}"
    );
    for f in ["cb.png", "cb.exr", "cb.proof.json"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let bundle = dir.path().join("cb.proof.json");
    let exr = dir.path().join("cb.exr");
    let ok = run(tessera().arg("audit").arg(&bundle).arg("--image").arg(&exr));
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("audit passed"));

    let rr = run(tessera()
        .arg("audit")
        .arg(&bundle)
        .arg("--rerender")
        .arg("--scene")
        .arg(root().join("scenes/cornell-box.glb")));
    assert!(rr.status.success());
    assert!(String::from_utf8_lossy(&rr.stdout).contains("sampled tiles re-rendered locally agree"));

    // One changed pixel fails --image.
    let (w, h, mut px) = read_exr(&exr);
    px[(10 * w as usize + 20) * 8] ^= 0x01;
    let bad = dir.path().join("bad.exr");
    write_exr(&bad, w, h, &px);
    let fail = run(tessera().arg("audit").arg(&bundle).arg("--image").arg(&bad));
    assert_eq!(fail.status.code(), Some(1));
    let s = String::from_utf8_lossy(&fail.stdout);
    assert!(
        s.contains("FAIL image") && s.contains("1 tiles differ"),
        "{s}"
    );

    // One changed byte in the bundle fails and is named.
    let text = std::fs::read_to_string(&bundle).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let nonce = v["rounds"][0]["nonce"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if nonce.starts_with('0') { "1" } else { "0" },
        &nonce[1..]
    );
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, text.replace(&nonce, &flipped)).unwrap();
    let t = run(tessera().arg("audit").arg(&tampered));
    assert_eq!(t.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&t.stdout).contains("FAIL nonce reveal"));
}

#[test]
fn drill_through_the_cli_names_the_cheater_and_keeps_the_image() {
    let dir = tempfile::tempdir().unwrap();
    assert!(render(dir.path(), "honest", &[]).status.success());
    let out = render(
        dir.path(),
        "d",
        &[
            "--nodes",
            "3",
            "--dishonest-nodes",
            "1",
            "--dishonest-mode",
            "low-spp",
            "--batch",
            "2",
        ],
    );
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("node-2 (dishonest: low-spp)")
            && s.contains("CAUGHT CHEATING")
            && s.contains("slashed 500000"),
        "{s}"
    );
    let a = std::fs::read(dir.path().join("honest.exr")).unwrap();
    let b = std::fs::read(dir.path().join("d.exr")).unwrap();
    assert_eq!(
        a, b,
        "the drill's final image differs from the honest render"
    );
    let audit = run(tessera()
        .arg("audit")
        .arg(dir.path().join("d.proof.json"))
        .arg("--image")
        .arg(dir.path().join("d.exr")));
    assert!(audit.status.success());
}

#[test]
fn bad_scene_files_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let not_gltf = d.join("notes.glb");
    std::fs::write(&not_gltf, b"this is not a glTF file at all").unwrap();
    let glb = std::fs::read(root().join("scenes/cornell-box.glb")).unwrap();
    let truncated = d.join("truncated.glb");
    std::fs::write(&truncated, &glb[..glb.len() / 2]).unwrap();
    let outside = d.join("scene").join("outside.gltf");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(
        &outside,
        r#"{"asset":{"version":"2.0"},"buffers":[{"uri":"../secret.bin","byteLength":4}]}"#,
    )
    .unwrap();
    for (path, needle) in [
        (&not_gltf, "notes.glb"),
        (&truncated, "truncated.glb"),
        (&outside, "../secret.bin"),
    ] {
        let out = run(tessera()
            .arg("render")
            .arg(path)
            .arg("-o")
            .arg(d.join("x.png"))
            .env("TESSERA_DATA", d.join("data")));
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("error:") && err.contains(needle),
            "{}: {err}",
            path.display()
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn blender_export_renders_and_names_what_it_does_not_support() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tessera();
    c.arg("render")
        .arg(root().join("scenes/blender-studio.glb"))
        .arg("-o")
        .arg(dir.path().join("studio.png"))
        .args([
            "--width",
            "48",
            "--height",
            "32",
            "--spp",
            "4",
            "--tile",
            "16",
            "--max-bounces",
            "2",
        ])
        .env("TESSERA_DATA", dir.path().join("data"));
    let out = run(&mut c);
    assert!(out.status.success());
    let audit = run(tessera()
        .arg("audit")
        .arg(dir.path().join("studio.proof.json"))
        .arg("--image")
        .arg(dir.path().join("studio.exr")));
    assert!(audit.status.success());
}

fn read_exr(p: &Path) -> (u32, u32, Vec<u8>) {
    use exr::prelude::*;
    let img = read_first_rgba_layer_from_file(
        p,
        |res, _| (res.width(), vec![0u8; res.width() * res.height() * 8]),
        |(w, buf): &mut (usize, Vec<u8>), pos, (r, g, b, a): (f16, f16, f16, f16)| {
            let i = (pos.y() * *w + pos.x()) * 8;
            for (k, v) in [r, g, b, a].into_iter().enumerate() {
                buf[i + 2 * k..i + 2 * k + 2].copy_from_slice(&v.to_le_bytes());
            }
        },
    )
    .unwrap();
    let s = img.layer_data.size;
    (
        s.width() as u32,
        s.height() as u32,
        img.layer_data.channel_data.pixels.1,
    )
}

fn write_exr(p: &Path, w: u32, h: u32, px: &[u8]) {
    use exr::prelude::*;
    let at = |i: usize| f16::from_le_bytes([px[2 * i], px[2 * i + 1]]);
    write_rgba_file(p, w as usize, h as usize, |x, y| {
        let i = (y * w as usize + x) * 4;
        (at(i), at(i + 1), at(i + 2), at(i + 3))
    })
    .unwrap();
}
