//! Benchmark of a verifier's re-render: scattered 8×8 blocks of one frame rendered one by
//! one (`render_tile` each: a dispatch and a readback per block) against the same blocks
//! in one list (`render_tiles`: one dispatch per pass for all of them), side by side in
//! one process on the default adapter, alternating so that neither runs warmer.
//!
//! `cargo run --release -p tessera-renderer --example render_blocks -- [SCENE] [BLOCKS]
//! [ROUNDS]` (defaults: scenes/cornell-box.glb, 135, 3); 256×256, 64 spp, 12 bounces,
//! seed 1 (`tessera render`'s defaults). Prints a Markdown table
//! (benches/results/render-blocks.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tessera_protocol::{tile_layout, RenderSettings, TileRect, TileRenderer};
use tessera_renderer::{Gpu, GpuWork, LoadOptions, Scene, SceneRenderer};

/// One timed render: wall seconds, process CPU seconds, the blocks' bytes.
type Run = (f64, f64, Vec<Vec<u8>>);

/// User + system CPU time of the whole process (every thread), from /proc (Linux; 0
/// elsewhere), in seconds at the kernel's USER_HZ of 100.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scene_path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenes/cornell-box.glb")
    });
    let n_blocks: usize = args.next().map_or(135, |a| a.parse().expect("BLOCKS"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let settings = RenderSettings {
        width: 256,
        height: 256,
        spp: 64,
        max_bounces: 12,
        seed: 1,
        camera: None,
        frame_rate: Default::default(),
    };
    // The frame's 1,024 blocks visited with a stride coprime with their count: scattered
    // over the whole frame, in no spatial order.
    let grid = tile_layout(settings.width, settings.height, 8);
    assert!(n_blocks <= grid.len(), "at most {} blocks", grid.len());
    let blocks: Vec<TileRect> = (0..n_blocks).map(|i| grid[i * 389 % grid.len()]).collect();

    let gpu = Arc::new(Gpu::new().expect("a wgpu adapter"));
    let scene = Scene::load(&scene_path, &LoadOptions::default()).expect("the scene");
    let renderer = SceneRenderer::new(gpu.clone(), &scene).expect("uploading the scene");
    // Warm-up: compiles the shader variant.
    renderer
        .render_tile(&settings, 0, blocks[0])
        .expect("warm-up render");

    let mut one_by_one = Vec::new();
    let mut listed = Vec::new();
    let mut work = [GpuWork::default(); 2];
    for round in 0..rounds {
        for first_alone in [round % 2 == 0, round % 2 != 0] {
            let before = renderer.gpu_work();
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            let bytes: Vec<Vec<u8>> = if first_alone {
                blocks
                    .iter()
                    .map(|&b| renderer.render_tile(&settings, 0, b).expect("a block"))
                    .collect()
            } else {
                renderer
                    .render_tiles(&settings, 0, &blocks)
                    .expect("the blocks")
            };
            let secs = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu_before;
            let after = renderer.gpu_work();
            let spent = GpuWork {
                submissions: after.submissions - before.submissions,
                dispatches: after.dispatches - before.dispatches,
                readbacks: after.readbacks - before.readbacks,
            };
            let (times, slot) = if first_alone {
                (&mut one_by_one, 0)
            } else {
                (&mut listed, 1)
            };
            times.push((secs, cpu, bytes));
            work[slot] = spent;
        }
    }
    let same = one_by_one
        .iter()
        .chain(&listed)
        .all(|(_, _, bytes)| *bytes == one_by_one[0].2);
    let secs = |runs: &[Run]| -> Vec<f64> { runs.iter().map(|r| r.0).collect() };
    let (alone, list) = (secs(&one_by_one), secs(&listed));
    // CPU seconds of all the process's threads (llvmpipe's included) per wall second.
    let busy = |runs: &[Run]| -> f64 {
        runs.iter().map(|r| r.1).sum::<f64>() / runs.iter().map(|r| r.0).sum::<f64>()
    };
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let class = gpu.class();
    println!(
        "{} blocks of 8×8, {} at {}×{}, {} spp, {} bounces, seed {}; adapter {} ({}), {}",
        n_blocks,
        scene_path.file_name().unwrap_or_default().to_string_lossy(),
        settings.width,
        settings.height,
        settings.spp,
        settings.max_bounces,
        settings.seed,
        class.adapter,
        class.backend,
        if same {
            "bytes identical in every run"
        } else {
            "BYTES DIFFER"
        },
    );
    println!();
    println!(
        "| how | runs (s) | best (s) | CPU cores busy | submissions | dispatches | readbacks |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, times, runs, w) in [
        (
            "one by one (`render_tile` each)",
            &alone,
            &one_by_one,
            work[0],
        ),
        ("one list (`render_tiles`)", &list, &listed, work[1]),
    ] {
        println!(
            "| {name} | {} | {:.3} | {:.2} | {} | {} | {} |",
            fmt(times),
            best(times),
            busy(runs),
            w.submissions,
            w.dispatches,
            w.readbacks
        );
    }
    println!();
    println!(
        "speed-up (best against best): {:.2}×",
        best(&alone) / best(&list)
    );
    if !same {
        std::process::exit(1);
    }
}
