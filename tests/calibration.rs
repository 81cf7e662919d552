//! `tessera calibrate` end to end on every sample scene with the real renderer: two
//! determinism classes (on a CPU-only machine: lavapipe at its native vector width and
//! lavapipe as on a CPU without AVX and FMA), and the default tolerance must pass every
//! honest cross-class pair and reject every forgery of the cheat corpus, and in the block
//! checks of protocol v3 pass every honest check and catch every forged frame and block
//! forgery. Also: bad scene files are refused by name before anything renders.

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
    check_blocks(&r);
    assert!(out.status.success(), "exit status {:?}", out.status);
}

/// The metric names of a report, in `TileMetrics` order, and whether larger is worse.
const METRICS: [(&str, &str, bool); 4] = [
    ("diverged_ppm", "max_diverged_ppm", true),
    ("psnr_cdb", "min_psnr_cdb", false),
    ("flip_mean_ppm", "max_flip_mean_ppm", true),
    ("flip_p99_ppm", "max_flip_p99_ppm", true),
];

/// The block part of the report: honest checks pass at once, every forged frame of every
/// cheat (the block cheats included) is caught, every block forgery is far and caught
/// alone, and the derived per-block far limits keep the honest blocks inside by 4×.
fn check_blocks(r: &Value) {
    let b = &r["blocks"];
    let kinds = b["kinds"].as_array().unwrap();
    let kind = |name: &str| {
        kinds
            .iter()
            .find(|k| k["kind"] == name)
            .unwrap_or_else(|| panic!("no block summary of {name}: {b}"))
    };
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    // Honest: every check of both k passes at its first check.
    let honest = kind("honest");
    assert!(n(&honest["blocks"]) > 0, "{honest}");
    for c in honest["checks"].as_array().unwrap() {
        assert!(n(&c["checks"]) > 0, "{c}");
        assert_eq!(
            n(&c["first"]["pass"]),
            n(&c["checks"]),
            "honest checks: {c}"
        );
    }
    assert_eq!(honest["bands"].get("far"), None, "{honest}");
    // Every cheat: its forged frames are caught (first check escalates, escalated check
    // fails) in at least half of the checks measured, and every check counted.
    assert_eq!(kinds.len(), 13, "honest and 12 cheats");
    for k in &kinds[1..] {
        let name = k["kind"].as_str().unwrap();
        assert!(n(&k["forged"]) > 0, "{name} forged no block: {k}");
        for c in k["checks"].as_array().unwrap() {
            let (checks, caught) = (n(&c["checks"]), n(&c["caught"]));
            assert_eq!(caught, checks, "{name}: forged frames not caught: {c}");
            assert!(
                checks >= n(&c["not_forged"]),
                "{name}: most checks sampled (almost) nothing forged: {c}"
            );
        }
        // A block forgery (a quarter of the block changed) alone is always caught.
        let alone = k["alone_forgeries"].as_object().unwrap();
        assert!(
            alone.keys().all(|d| d == "caught"),
            "{name}: a block forgery alone escapes: {k}"
        );
        assert_eq!(n(&k["far_forgeries"]), n(&k["block_forgeries"]), "{k}");
    }
    // The two block cheats do what they are for: sparse changes every block a little (no
    // block forgery; only the aggregate can catch it, and does), block-grid whole blocks
    // on the grid and leaves the others' bytes alone.
    let sparse = kind("sparse");
    assert_eq!(n(&sparse["block_forgeries"]), 0, "{sparse}");
    let grid = kind("block-grid");
    assert!(n(&grid["block_forgeries"]) > 0, "{grid}");
    assert!(2 * n(&grid["forged"]) <= n(&grid["blocks"]), "{grid}");
    // block_far derived, inside which every honest block lies by 4× and outside which the
    // most honest-looking block forgery of each cheat lies.
    let derived = &b["derived"];
    assert!(
        derived.is_object(),
        "no block_far derived: {}",
        b["derive_error"]
    );
    for (i, (metric, limit, larger_worse)) in METRICS.iter().enumerate() {
        let l = n(&derived[limit]) as f64;
        if let Some(worst) = b["margins"]["honest_blocks"][i]["worst"].as_u64() {
            let worst = worst as f64;
            if *larger_worse {
                assert!(4.0 * worst <= l, "honest block {metric} {worst} vs {l}");
            } else {
                assert!(worst >= l + 602.0, "honest block {metric} {worst} vs {l}");
            }
        }
    }
    for k in &kinds[1..] {
        let Some(m) = k["extreme"].as_object() else {
            continue;
        };
        let beyond = METRICS.iter().any(|(metric, limit, larger_worse)| {
            let (v, l) = (n(&m[*metric]), n(&derived[limit]));
            if *larger_worse {
                v > l
            } else {
                v < l
            }
        });
        assert!(
            beyond,
            "{}: a block forgery within block_far: {m:?}",
            k["kind"]
        );
    }
    assert_eq!(b["derived"], b["default_block_far"], "{b}");
    assert_eq!(n(&b["misjudged_count"]), 0, "{}", b["misjudged"]);
    assert_eq!(b["separated"], Value::Bool(true));
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
