//! The `tessera` binary end to end on the embedded default, with the real renderer on
//! whatever adapter wgpu finds (lavapipe in CI): render → audit (--image, --rerender),
//! the drill through the CLI, tampered images, and refused scene files.

mod common;

use common::{root, run};
use std::path::Path;
use std::process::{Command, Output};

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
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
    // The work: 64 × 48 pixels at 8 spp rendered; the node (new, economy: 810 pixel
    // draws) committed 48 blocks, fewer than its draws, so all were re-rendered.
    let j = run(tessera().arg("audit").arg(&bundle).arg("--json"));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("audit --json");
    assert_eq!(v["work"]["rendered"], 64 * 48 * 8, "{v}");
    assert_eq!(v["work"]["rerendered"], 64 * 48 * 8, "{v}");
    assert_eq!(v["work"]["fraction"], 1.0, "{v}");

    let rr = run(tessera()
        .arg("audit")
        .arg(&bundle)
        .arg("--rerender")
        .arg("--scene")
        .arg(root().join("scenes/cornell-box.glb")));
    assert!(rr.status.success());
    let same = String::from_utf8_lossy(&rr.stdout).to_string();
    assert!(
        same.contains("sampled blocks of") && same.contains("re-rendered locally agree"),
        "{same}"
    );
    assert!(same.contains("0 in another class"), "{same}");

    // The same audit on another determinism class (lavapipe at 128-bit vectors names
    // another adapter, so another class) compares by tolerance instead of bytes.
    let text = std::fs::read_to_string(&bundle).unwrap();
    if text.contains("llvmpipe") {
        let other = run(tessera()
            .arg("audit")
            .arg(&bundle)
            .arg("--rerender")
            .arg("--scene")
            .arg(root().join("scenes/cornell-box.glb"))
            .env("LP_NATIVE_VECTOR_WIDTH", "128"));
        let s = String::from_utf8_lossy(&other.stdout).to_string();
        assert!(other.status.success(), "{s}");
        assert!(s.contains(": 0 checks in the verifier's class"), "{s}");
        assert!(s.contains("in another class (tolerant comparison"), "{s}");
    }

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

/// The sRGB OETF, written out again here so the test does not trust the code under test.
fn oetf(v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 {
        12.92 * v
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

fn aces(x: f64) -> f64 {
    ((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0.0, 1.0)
}

#[test]
fn view_and_exposure_change_the_png_and_never_the_exr() {
    let dir = tempfile::tempdir().unwrap();
    assert!(render(dir.path(), "std", &[]).status.success());
    assert!(
        render(dir.path(), "film", &["--view", "filmic", "--exposure", "1"])
            .status
            .success()
    );
    assert!(render(dir.path(), "dark", &["--exposure", "-2"])
        .status
        .success());
    let exr = std::fs::read(dir.path().join("std.exr")).unwrap();
    for other in ["film.exr", "dark.exr"] {
        assert_eq!(
            exr,
            std::fs::read(dir.path().join(other)).unwrap(),
            "{other}: the EXR depends on --view/--exposure"
        );
    }
    // The EXR is linear RGBA half float.
    let meta = exr::meta::MetaData::read_from_file(dir.path().join("std.exr"), false).unwrap();
    let channels: Vec<(String, exr::meta::attribute::SampleType)> = meta.headers[0]
        .channels
        .list
        .iter()
        .map(|c| (c.name.to_string(), c.sample_type))
        .collect();
    let f16 = exr::meta::attribute::SampleType::F16;
    assert_eq!(
        channels,
        vec![
            ("A".to_string(), f16),
            ("B".to_string(), f16),
            ("G".to_string(), f16),
            ("R".to_string(), f16)
        ]
    );
    // Each PNG is its view transform of the EXR's linear values.
    let (w, h, px) = read_exr(&dir.path().join("std.exr"));
    let linear =
        |i: usize| f64::from(half::f16::from_le_bytes([px[2 * i], px[2 * i + 1]]).to_f32());
    for (name, f) in [
        ("std.png", (|x: f64| oetf(x)) as fn(f64) -> f64),
        ("film.png", |x: f64| oetf(aces(2.0 * x))),
        ("dark.png", |x: f64| oetf(0.25 * x)),
    ] {
        let png = image::open(dir.path().join(name)).unwrap().into_rgba8();
        assert_eq!((png.width(), png.height()), (w, h));
        let mut off_by_one = 0;
        for (p, rgba) in png.pixels().enumerate() {
            for c in 0..3 {
                let want = (255.0 * f(linear(p * 4 + c)) + 0.5).floor();
                let got = f64::from(rgba[c]);
                // f32 maths in the binary may land on the other side of a .5 boundary.
                assert!((got - want).abs() <= 1.0, "{name} pixel {p} channel {c}");
                off_by_one += usize::from(got != want);
            }
            assert_eq!(rgba[3], 255);
        }
        assert!(
            off_by_one * 1000 < (w * h * 3) as usize,
            "{name}: {off_by_one}"
        );
    }
    let bad = render(dir.path(), "bad", &["--view", "agx"]);
    assert_eq!(bad.status.code(), Some(2));
}

fn compare_json(a: &Path, b: &Path, extra: &[&str]) -> serde_json::Value {
    let out = run(tessera()
        .arg("compare")
        .arg(a)
        .arg(b)
        .arg("--json")
        .args(extra));
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn flat_exr(path: &Path, w: u32, h: u32, rgb: impl Fn(u32, u32) -> [f32; 3]) {
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let [r, g, b] = rgb(x, y);
            for v in [r, g, b, 1.0] {
                px.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
    }
    write_exr(path, w, h, &px);
}

#[test]
fn compare_reports_psnr_and_flip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pattern = |x: u32, y: u32| {
        let v = ((x * 7 + y * 13) % 32) as f32 / 32.0;
        [v, 0.5 * v, 0.25]
    };
    flat_exr(&d.join("a.exr"), 48, 32, pattern);
    flat_exr(&d.join("a2.exr"), 48, 32, pattern);
    // Identical: MSE 0, PSNR +inf (null in JSON), FLIP 0.
    let same = compare_json(&d.join("a.exr"), &d.join("a2.exr"), &[]);
    assert_eq!(same["mse"], 0.0);
    assert!(same["psnr_db"].is_null());
    assert_eq!(same["psnr_peak"], 1.0);
    assert_eq!(same["flip_mean"], 0.0);
    assert_eq!(same["flip_p99"], 0.0);
    let text = run(tessera()
        .arg("compare")
        .arg(d.join("a.exr"))
        .arg(d.join("a2.exr")));
    assert!(String::from_utf8_lossy(&text.stdout).contains("PSNR        inf dB"));

    // +1/64 on every channel (exact in half floats): PSNR = 20·log10(64) = 36.12 dB.
    flat_exr(&d.join("b.exr"), 48, 32, |x, y| {
        pattern(x, y).map(|v| v + 1.0 / 64.0)
    });
    let off = compare_json(
        &d.join("a.exr"),
        &d.join("b.exr"),
        &["--error-map", d.join("map.png").to_str().unwrap()],
    );
    let psnr = off["psnr_db"].as_f64().unwrap();
    assert!((psnr - 20.0 * 64f64.log10()).abs() < 1e-6, "{psnr}");
    let flip = off["flip_mean"].as_f64().unwrap();
    assert!(flip > 0.0 && flip < 0.2, "{flip}");
    assert!(off["flip_p99"].as_f64().unwrap() >= flip);
    assert!(d.join("map.png").exists());

    // Twice as bright: exposure matching removes it exactly.
    flat_exr(&d.join("c.exr"), 48, 32, |x, y| {
        pattern(x, y).map(|v| 2.0 * v)
    });
    let raw = compare_json(&d.join("a.exr"), &d.join("c.exr"), &[]);
    assert!(raw["psnr_db"].as_f64().unwrap() < 30.0);
    let matched = compare_json(&d.join("a.exr"), &d.join("c.exr"), &["--exposure-match"]);
    assert_eq!(matched["exposure_scale"], 0.5);
    assert!(matched["psnr_db"].is_null());
    assert_eq!(matched["flip_mean"], 0.0);

    // PNGs are read too (as sRGB); a PNG against itself is identical.
    image::save_buffer(
        d.join("p.png"),
        &[10u8, 200, 30, 40, 50, 60],
        2,
        1,
        image::ColorType::Rgb8,
    )
    .unwrap();
    let png = compare_json(&d.join("p.png"), &d.join("p.png"), &[]);
    assert!(png["psnr_db"].is_null());

    // Different sizes and non-images are errors that name the problem.
    flat_exr(&d.join("small.exr"), 8, 8, pattern);
    let err = run(tessera()
        .arg("compare")
        .arg(d.join("a.exr"))
        .arg(d.join("small.exr")));
    assert_eq!(err.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("image sizes differ: A is 48x32, B is 8x8")
    );
    std::fs::write(d.join("notes.exr"), b"not an image").unwrap();
    let err = run(tessera()
        .arg("compare")
        .arg(d.join("a.exr"))
        .arg(d.join("notes.exr")));
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("neither an OpenEXR nor a PNG"));
}

#[test]
fn bench_render_writes_a_report_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(tessera()
        .arg("bench")
        .arg("render")
        .arg("--scene-dir")
        .arg(root().join("scenes"))
        .args(["--scenes", "cornell-box", "--width", "32", "--height", "24"])
        .args(["--spp", "2", "--max-bounces", "2", "--tile", "16", "--json"])
        // Tasks of 3 of the 4 tiles: the first (two tiles of the top row and one below)
        // is not one rectangle, so it renders as a list of pixels; the second is one tile.
        .args(["--batch", "3", "--repeat", "2"])
        .arg("--out")
        .arg(d.join("r.json"))
        .arg("--images")
        .arg(d.join("img")));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("r.json")).unwrap()).unwrap();
    assert_eq!(v, file);
    assert_eq!(v["format"], "tessera-bench-render v1");
    assert_eq!(v["settings"]["spp"], 2);
    assert!(v["adapter"]["adapter"].is_string() && v["date_utc"].is_string());
    let s = &v["scenes"][0];
    assert_eq!(s["scene"], "cornell-box.glb");
    assert_eq!(s["triangles"], 32);
    assert_eq!(s["tiled_matches_full"], true);
    assert_eq!(s["task_matches_full"], true);
    assert_eq!(v["settings"]["batch"], 3);
    assert_eq!(v["settings"]["repeat"], 2);
    for run in ["tiled", "task"] {
        let fraction = s[format!("{run}_fraction")].as_f64().unwrap();
        let secs = s[format!("{run}_s")].as_f64().unwrap();
        let want = s["render_s"].as_f64().unwrap() / secs;
        assert!((fraction - want).abs() < 1e-9, "{run}: {fraction} {want}");
    }
    let sps = s["samples_per_second"].as_f64().unwrap();
    let render_s = s["render_s"].as_f64().unwrap();
    assert!(
        (sps * render_s - 32.0 * 24.0 * 2.0).abs() < 1e-3,
        "{sps} {render_s}"
    );
    let (w, h, _) = read_exr(&d.join("img/cornell-box.exr"));
    assert_eq!((w, h), (32, 24));
    assert!(d.join("img/cornell-box.png").exists());

    let missing = run(tessera()
        .arg("bench")
        .arg("render")
        .args(["--scenes", "no-such-scene"]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-scene"));
}

/// Regression (issue 16): with a challenge window, `render` releases the hold-backs when
/// its job is done (nobody can dispute a job of one machine; the farm's reconciler
/// releases them when the window ends), and the bundle's signed receipt lists the
/// releases. The old embedded loop released them only with a window of 0.
#[test]
fn a_challenge_window_is_closed_when_the_render_job_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let out = render(
        dir.path(),
        "w",
        &["--challenge-window", "3600", "--tier", "priority"],
    );
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let held: u64 = s
        .lines()
        .filter_map(|l| l.split(" µcr now, ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(held > 0, "{s}");
    assert!(
        s.contains(&format!("hold-backs released: {held} µcr")),
        "{s}"
    );
    let bundle = dir.path().join("w.proof.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(v["manifest"]["statement"]["challenge_window_secs"], 3600);
    let released: u64 = v["payments"]["statement"]["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "release")
        .map(|t| t["amount"].as_u64().unwrap())
        .sum();
    assert_eq!(released, held);
    let audit = run(tessera().arg("audit").arg(&bundle));
    assert!(audit.status.success());
    // The coordinator's store was private to the run and is gone; the keys stay.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["keys"]);
}

/// Tiles, batches and frames are held to the farm's limits (`protocol::limits`), before
/// any work: a job `render` accepts is one the farm accepts.
#[test]
fn render_refuses_what_the_farm_refuses() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, needle) in [
        (&["--tile", "4"][..], "--tile 4: must be 8..=4096"),
        (&["--batch", "2000"][..], "--batch 2000: must be 1..=1024"),
        (&["--frames", "0..100000"][..], "at most 100000 frames"),
    ] {
        let out = run(tessera()
            .arg("render")
            .arg(root().join("scenes/cornell-box.glb"))
            .arg("-o")
            .arg(dir.path().join("x.png"))
            .args(flags)
            .env("TESSERA_DATA", dir.path().join("data")));
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
}

/// An output name the frames cannot be written under is refused before anything renders
/// (it used to fail after the render, losing the frames and the proof bundle), and the
/// output's folder is made when it is missing.
#[test]
fn render_checks_its_outputs_before_it_renders() {
    let dir = tempfile::tempdir().unwrap();
    for (output, frames, needle) in [
        ("x.exr", "0..0", "the file name must end in .png"),
        ("x", "0..0", "the file name must end in .png"),
        ("x.png", "0..1", "several frames need a `#`"),
    ] {
        let out = run(tessera()
            .arg("render")
            .arg(root().join("scenes/cornell-box.glb"))
            .arg("-o")
            .arg(dir.path().join(output))
            .args(["--frames", frames])
            .env("TESSERA_DATA", dir.path().join("data")));
        assert_eq!(out.status.code(), Some(1), "{output}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{output}: {err}");
        assert!(!err.contains("adapter:"), "{output}: rendered first: {err}");
    }
    let nested = dir.path().join("new/folder");
    let mut c = tessera();
    c.arg("render")
        .arg(root().join("scenes/cornell-box.glb"))
        .arg("-o")
        .arg(nested.join("f.png"))
        .args([
            "--width", "16", "--height", "16", "--spp", "1", "--tile", "16",
        ])
        .env("TESSERA_DATA", dir.path().join("data"));
    let out = run(&mut c);
    assert!(out.status.success());
    for file in ["f.png", "f.exr", "f.proof.json"] {
        assert!(nested.join(file).is_file(), "{file} missing");
    }
}

/// Logs written to a pipe or a file carry no ANSI colour codes: `fetch --wait` against a
/// coordinator that does not answer logs a warning per try, then gives up.
#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = tessera()
        .args([
            "fetch",
            &"ab".repeat(32),
            "--wait",
            "--timeout",
            "1",
            "--poll-ms",
            "100",
        ])
        .args(["--coordinator", &format!("http://127.0.0.1:{port}")])
        .args(["--token", "client-token-0123456789"])
        .arg("-o")
        .arg(dir.path().join("f.png"))
        .env_remove("NO_COLOR")
        .env_remove("TESSERA_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("coordinator unreachable; still waiting"),
        "the warning is logged: {err}"
    );
    assert!(
        !err.contains("\x1b["),
        "colour codes in piped logs: {err:?}"
    );
}
