//! `tessera calibrate` end to end on every sample scene with the real renderer: two
//! determinism classes (on a CPU-only machine: lavapipe at its native vector width and
//! lavapipe as on a CPU without AVX and FMA), and the default tolerance must pass every
//! honest cross-class pair and reject every forgery of the cheat corpus. Also: bad scene
//! files are refused by name before anything renders.

mod common;

use common::{root, run};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

/// The sample scenes' file names.
fn sample_scenes() -> BTreeSet<String> {
    std::fs::read_dir(root().join("scenes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".glb") || n.ends_with(".gltf"))
        .collect()
}

#[test]
fn default_tolerance_passes_honest_classes_and_rejects_every_forgery() {
    let out = run(tessera()
        .current_dir(root())
        .arg("calibrate")
        .arg("--json")
        .args(["--classes", "default,sse41"])
        .args([
            "--width", "64", "--height", "64", "--spp", "8", "--tile", "32",
        ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.trim().is_empty(),
        "calibrate produced no report (a class could not be rendered?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout).expect("calibrate --json prints one JSON report");

    // Two classes were rendered, and they are different classes.
    let classes = r["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{classes:?}");
    let ids: BTreeSet<&str> = classes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        2,
        "only one determinism class could be produced: {classes:?}"
    );

    // Every sample scene was calibrated on.
    let scenes: BTreeSet<String> = r["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(scenes, sample_scenes());

    // Per scene: honest pairs pass, forgeries are far.
    let mut forgeries = std::collections::BTreeMap::<String, u64>::new();
    let mut honest_differing = 0;
    for k in r["summary"].as_array().unwrap() {
        let (scene, kind) = (k["scene"].as_str().unwrap(), k["kind"].as_str().unwrap());
        let bands = k["bands"].as_object().unwrap();
        let pairs = k["pairs"].as_u64().unwrap();
        if kind == "honest" {
            assert!(pairs > 0, "{scene}: no honest pairs");
            honest_differing += pairs - k["bytes_equal"].as_u64().unwrap();
            for b in bands.keys() {
                assert!(
                    b == "match" || b == "close",
                    "{scene}: an honest cross-class pair is {b}: {k}"
                );
            }
        } else {
            *forgeries.entry(kind.to_string()).or_default() += pairs;
            for b in bands.keys() {
                assert_eq!(
                    b, "far",
                    "{scene}: a {kind} forgery is {b}, not rejected: {k}"
                );
            }
        }
    }
    eprintln!("honest pairs with different bytes: {honest_differing}; forgeries: {forgeries:?}");

    // The corpus is real: every cheat forged at least half of its tiles (the rest change
    // under 1 % of their pixels, e.g. a neighbour's pixels pasted over a flat background).
    let tiles_per_scene = 4; // 64x64 frames in 32-pixel tiles
    let instances = (tiles_per_scene * scenes.len()) as u64;
    assert_eq!(forgeries.len(), 12, "{forgeries:?}");
    for (kind, pairs) in &forgeries {
        let forged = pairs / 2; // each forgery is checked against both classes' re-renders
        assert!(
            2 * forged >= instances,
            "{kind}: only {forged} of {instances} tiles were forgeries"
        );
    }

    assert_eq!(r["separated"], Value::Bool(true));
    assert!(out.status.success(), "exit status {:?}", out.status);
}

#[test]
fn bad_scene_files_are_named_before_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.glb");
    let out = run(tessera().arg("calibrate").arg("--scenes").arg(&missing));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.glb"), "{err}");

    let garbage = dir.path().join("garbage.glb");
    std::fs::write(&garbage, b"not a gltf file").unwrap();
    let out = run(tessera().arg("calibrate").arg("--scenes").arg(&garbage));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loading scene") && err.contains("garbage.glb"),
        "{err}"
    );

    let out = run(tessera().args(["calibrate", "--classes", "default,warp-drive"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown class \"warp-drive\""));
}
