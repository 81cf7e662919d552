//! `tessera simulate` through the binary: the JSON contract scripts rely on, detection that
//! agrees with the sampling's prediction for each cheat shape where the comparison flags
//! the forged blocks, the shapes where it does not, no honest node rejected, and bad flags
//! refused by name.

use serde_json::Value;
use std::process::{Command, Output};

/// Run `cmd` to the end, echoing its stderr (and stdout, which is long) to the test's
/// output.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tessera");
    eprintln!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn simulate(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("simulate")
        .args(args)
        .env_remove("TESSERA_TIER")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_LOG"))
}

fn report(args: &[&str]) -> Value {
    let out = simulate(args);
    assert!(out.status.success(), "simulate {args:?} failed");
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn json_contract_and_detection_that_agrees_with_the_formula() {
    // Priority: k = 135 of n = 160, so sampling (not exhaustive checking) decides. One
    // task per frame (`--batch 160`), so a caught cheater's tiles go to one honest node in
    // the extra round: with several tasks the coordinator spreads them over the eligible
    // nodes (each sampled min(k, its share), which the formula below does not model).
    let v = report(&[
        "--jobs",
        "2000",
        "--forged-fraction",
        "0.05",
        "--tier",
        "priority",
        "--tiles",
        "160",
        "--batch",
        "160",
        "--json",
    ]);
    for key in [
        "measured_detection",
        "predicted_detection",
        "honest_false_rejects",
        "verification_cost",
        "ci99",
        "agrees",
        "jobs",
        "tiles_per_job",
        "k",
        "tier",
        "forged_fraction",
        "shape",
        "forged_work_fraction",
        "touched_fraction",
        "forged_sampled",
        "sampling_agrees",
        "escalations",
        "elapsed_s",
        "jobs_per_s",
    ] {
        assert!(v.get(key).is_some(), "key {key} missing from {v}");
    }
    assert_eq!(num(&v, "jobs"), 2000.0);
    assert_eq!(num(&v, "k"), 135.0);
    assert_eq!(v["tier"], "priority");
    assert_eq!(v["shape"], "tiles");
    let predicted = num(&v, "predicted_detection");
    // The mean over the jobs of 1 − (1 − m/160)^135 for the m tiles each forged; its
    // expectation over m ~ Binomial(160, 0.05) is 0.9906064146 (worked out apart with
    // exact binomials: a little under DESIGN.md's 1 − 0.95^135 = 0.99902, because a
    // job's forged fraction varies around f). A mean of 2000 values in [0, 1] lies within
    // 4.5 of its largest standard errors of it.
    let expected = 0.990_606_414_6;
    let se = (expected * (1.0 - expected) / 2000.0f64).sqrt();
    assert!((predicted - expected).abs() < 4.5 * se, "{predicted}");
    // Whole tiles are whole blocks: q is the forged tiles' share.
    assert_eq!(
        num(&v, "touched_fraction"),
        num(&v, "forged_pixel_fraction")
    );
    assert!(num(&v, "detected") <= num(&v, "forged_sampled"), "{v}");
    let measured = num(&v, "measured_detection");
    let (lo, hi) = (
        v["ci99"][0].as_f64().unwrap(),
        v["ci99"][1].as_f64().unwrap(),
    );
    assert!(lo <= measured && measured <= hi, "{v}");
    assert!(
        lo <= predicted && predicted <= hi,
        "prediction outside the interval: {v}"
    );
    assert_eq!(v["agrees"], true);
    assert_eq!(num(&v, "honest_false_rejects"), 0.0, "{v}");
    assert_eq!(v["ledger"]["total"], 0);
    assert_eq!(v["ledger"]["unbalanced_jobs"], 0);
    // Verification cost, in pixel-samples: every check re-renders at most k blocks of at
    // most 8 × 8 pixels (k = 135 for a first check, 270 escalated), and at least one
    // block; every extra round (a caught cheater's n tiles re-rendered by an honest node)
    // too. Nodes render 3n tiles of 16 × 16 a job, and n per extra round. So the cost
    // lies between these bounds, and far under the whole-tile sampling of v2 (which
    // re-rendered min(k, n) whole tiles per check: 135 of 160).
    let (k, n, jobs) = (135.0, 160.0, 2000.0);
    let (esc, extra) = (num(&v, "escalations"), num(&v, "extra_rounds"));
    let caught = num(&v, "detected") + num(&v, "cheater_inconclusive");
    assert!(esc >= caught && extra == caught, "{v}");
    let tile_px = 256.0;
    let rendered = (3.0 * n * jobs + n * extra) * tile_px;
    assert_eq!(num(&v, "rendered_pixels"), rendered, "{v}");
    let most = (3.0 * k * jobs + 2.0 * k * esc + k * extra) * 64.0;
    let least = 3.0 * jobs + esc + extra;
    let rerendered = num(&v, "rerendered_pixels");
    assert!(
        (least..=most).contains(&rerendered),
        "re-rendered {rerendered} pixels, expected {least}..={most}: {v}"
    );
    let cost = num(&v, "verification_cost");
    assert!((cost - rerendered / rendered).abs() < 1e-9, "{v}");
    let whole_tiles = (3.0 * k * jobs + n * esc + k * extra) / (3.0 * n * jobs + n * extra);
    assert!(
        cost < whole_tiles / 2.0,
        "cost {cost}, whole tiles {whole_tiles}: {v}"
    );
    // The cross-class path is exercised: the other class's samples are close or
    // ambiguous, never far; the cheats are far.
    assert!(v["other_class_bands"]["close"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["other_class_bands"]["far"], 0, "{v}");
    assert!(v["bands"]["far"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn a_small_forged_fraction_slips_through_as_often_as_predicted() {
    // f = 1 %, k = 135: about a quarter of the cheaters go unseen. A verifier that
    // caught everything, or nothing, would fall outside the interval.
    let v = report(&[
        "--jobs",
        "800",
        "--forged-fraction",
        "0.01",
        "--tier",
        "trusted",
        "--tiles",
        "160",
        "--json",
    ]);
    let measured = num(&v, "measured_detection");
    assert!((0.6..0.9).contains(&measured), "{v}");
    // One fixed seed is one draw: at 800 jobs, hold the measured rate to the prediction
    // within 3.29 standard errors (a 99.9 % band), so a biased sample or verifier
    // (catching everything or nothing, or a few points off) fails and chance does not.
    let predicted = num(&v, "predicted_detection");
    let se = (predicted * (1.0 - predicted) / 800.0).sqrt();
    assert!(
        (measured - predicted).abs() <= 3.29 * se,
        "measured {measured}, predicted {predicted} ± {}: {v}",
        3.29 * se
    );
    assert!(num(&v, "forged_tiles_accepted") > 0.0);
    assert_eq!(num(&v, "honest_false_rejects"), 0.0);
}

/// `simulate` on the priority tier with 160 tiles of 16 × 16 pixels a node and one task
/// per frame (640 blocks a node, k = 135 pixel draws: sampling is partial), plus `args`.
fn partial(args: &[&str]) -> Value {
    partial_at(16, args)
}

/// [`partial`] with tiles of `tile` × `tile` pixels: 160 × (tile / 8)² blocks a node.
fn partial_at(tile: u32, args: &[&str]) -> Value {
    let tile_arg = tile.to_string();
    let mut all = vec![
        "--tier", "priority", "--tiles", "160", "--batch", "160", "--spp", "100", "--json",
        "--tile", &tile_arg,
    ];
    all.extend_from_slice(args);
    let v = report(&all);
    assert_eq!(
        (num(&v, "k"), num(&v, "blocks_per_node")),
        (135.0, f64::from(160 * (tile / 8).pow(2))),
        "{v}"
    );
    assert_eq!(num(&v, "honest_false_rejects"), 0.0, "{v}");
    assert_eq!(v["ledger"]["total"], 0, "{v}");
    v
}

#[test]
fn scattered_blocks_are_caught_exactly_when_sampled() {
    // Each 8 × 8 block forged with probability 1 %: about 6 of 640 blocks a job, so a
    // check of 135 draws finds one in about 71 % of the jobs. Every forged block is far,
    // so a cheater is failed exactly when its check sampled one, and the measured rate
    // follows the prediction from the forged blocks.
    let v = partial(&[
        "--jobs",
        "150",
        "--shape",
        "blocks",
        "--forged-fraction",
        "0.01",
    ]);
    assert_eq!(v["shape"], "blocks");
    let predicted = num(&v, "predicted_detection");
    assert!((0.6..0.8).contains(&predicted), "{v}");
    assert_eq!(num(&v, "detected"), num(&v, "forged_sampled"), "{v}");
    assert_eq!(v["agrees"], true, "{v}");
    assert_eq!(v["sampling_agrees"], true, "{v}");
    // The forged work: blocks, less the quarter of their samples a quarter-spp block
    // renders; q is exactly the forged blocks' share.
    let (work, q) = (num(&v, "forged_work_fraction"), num(&v, "touched_fraction"));
    assert!((0.006..0.014).contains(&q) && work < q, "{v}");
    assert_eq!(v["forged_blocks"]["bands"]["close"], 0, "{v}");
}

#[test]
fn patches_in_every_tile_are_caught_by_the_aggregate() {
    // A 2 × 1 patch (0.78 % of the pixels) in every tile, off the block grid: its blocks
    // are a quarter or more of the pixels, so every check samples some, and each
    // sampled one is close on its own (1 or 2 black or noisy pixels of 64); the
    // aggregate over the 135 sampled blocks is far, so every cheater fails.
    let v = partial(&[
        "--jobs",
        "60",
        "--shape",
        "patches",
        "--forged-fraction",
        "0.01",
    ]);
    assert_eq!(num(&v, "forged_pixel_fraction"), 2.0 / 256.0, "{v}");
    assert!(num(&v, "touched_fraction") >= 0.25, "{v}");
    assert_eq!(num(&v, "detected"), 60.0, "{v}");
    assert_eq!(v["agrees"], true, "{v}");
    assert_eq!(v["forged_blocks"]["bands"]["far"], 0, "{v}");
    assert_eq!(v["forged_first_aggregates"]["bands"]["far"], 60, "{v}");
}

#[test]
fn lower_spp_by_five_and_by_one_percent_is_caught() {
    // 95 of 100 samples in every pixel: every block holding a forged pixel, so every
    // check samples the forgery; the blocks are close one by one, the aggregate far.
    let v = partial(&[
        "--jobs",
        "40",
        "--shape",
        "spp",
        "--forged-fraction",
        "0.05",
    ]);
    assert_eq!(num(&v, "forged_work_fraction"), 0.05, "{v}");
    assert_eq!(num(&v, "predicted_detection"), 1.0, "{v}");
    assert_eq!(num(&v, "detected"), 40.0, "{v}");
    assert_eq!(v["agrees"], true, "{v}");
    // 99 of 100: every check samples the forgery too, but no pixel diverges beyond the
    // pixel tolerance and the aggregate ꟻLIP lies between the pass and fail limits, so
    // the tolerance alone would leave it ambiguous (docs/SIMULATION.md). The first check's
    // verifier is of the cheater's class, whose honest bytes are equal: it escalates to
    // the other verifier of that class, which re-renders the same bytes, and the cheater
    // fails on the two renders.
    let v = partial(&[
        "--jobs",
        "30",
        "--shape",
        "spp",
        "--forged-fraction",
        "0.01",
    ]);
    assert_eq!(num(&v, "forged_sampled"), 30.0, "{v}");
    assert_eq!(num(&v, "escalations"), 30.0, "{v}");
    assert_eq!(num(&v, "detected"), 30.0, "{v}");
    assert_eq!(num(&v, "cheater_inconclusive"), 0.0, "{v}");
    assert_eq!(v["agrees"], true, "{v}");
    assert_eq!(v["forged_blocks"]["bands"]["far"], 0, "{v}");
    assert_eq!(v["forged_blocks"]["mean_diverged_ppm"], 0.0, "{v}");
    assert_eq!(
        v["forged_first_aggregates"]["bands"]["ambiguous"], 30,
        "{v}"
    );
    assert_eq!(num(&v, "forged_tiles_accepted"), 0.0, "{v}");
}

#[test]
fn one_forged_pixel_in_every_tile_is_never_paid() {
    // One pixel of every 32 × 32 tile (0.1 % of the work): each forged block is close, and
    // so is many an aggregate, so the tolerance alone passed about half of these cheaters
    // (docs/SIMULATION.md). Every sampled forged block differs from the re-render of the
    // cheater's own class, so the first check escalates to the other verifier of that
    // class, which re-renders the same bytes: the cheater fails where the escalated
    // aggregate is ambiguous, and ends inconclusive (unpaid, not slashed) where it is
    // close, a difference the tolerance allows honest adapters.
    let v = partial_at(
        32,
        &[
            "--jobs",
            "20",
            "--shape",
            "patches",
            "--forged-fraction",
            "0.001",
        ],
    );
    assert_eq!(num(&v, "forged_pixel_fraction"), 1.0 / 1024.0, "{v}");
    assert_eq!(v["forged_blocks"]["bands"]["far"], 0, "{v}");
    assert_eq!(num(&v, "forged_sampled"), 20.0, "{v}");
    assert_eq!(num(&v, "escalations"), 20.0, "{v}");
    let bands = &v["escalated_aggregates"]["bands"];
    assert_eq!(bands["far"], 0, "{v}");
    assert_eq!(num(&v, "detected"), num(bands, "ambiguous"), "{v}");
    assert_eq!(num(&v, "cheater_inconclusive"), num(bands, "close"), "{v}");
    assert!(num(&v, "detected") > 0.0, "{v}");
    assert_eq!(num(&v, "forged_tiles_accepted"), 0.0, "{v}");
}

#[test]
fn the_table_is_readable_without_json() {
    let out = simulate(&["--jobs", "50", "--tiles", "64", "--forged-fraction", "0.2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for row in [
        "measured detection",
        "predicted",
        "honest false rejects",
        "verification cost",
    ] {
        assert!(text.contains(row), "{row} missing:\n{text}");
    }
}

#[test]
fn bad_flags_are_refused_by_name_without_a_panic() {
    for (args, flag) in [
        (&["--forged-fraction", "1.5"][..], "--forged-fraction"),
        (&["--jobs", "0"][..], "--jobs"),
        (&["--tier", "platinum"][..], "--tier"),
        (&["--shape", "stripes"][..], "--shape"),
        // 5 % of 4 samples rounds to none.
        (&["--shape", "spp"][..], "--spp"),
        (
            &["--shape", "spp", "--spp", "100", "--forged-fraction", "1"][..],
            "--spp",
        ),
    ] {
        let out = simulate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && !err.contains("panicked"), "{err}");
    }
}
