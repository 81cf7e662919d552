//! `tessera bench pipeline`: the flags, the runs (one per bus) and the JSON report under
//! `benches/results/`. What is measured, and how, is `tessera_coordinator::bench`: tiles
//! per second through the whole farm pipeline with the CPU stand-in renderer, once over
//! the in-process bus and once over RabbitMQ, plus the latency from a frame's last stored
//! tile to its first payment.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use tessera_coordinator::bench::{bench_bus, PipelineBench, Report};

/// Arguments of `tessera bench pipeline`.
#[derive(Args)]
pub struct BenchPipelineArgs {
    /// RabbitMQ URL for the AMQP run.
    #[arg(
        long,
        env = "TESSERA_AMQP",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: String,
    /// Which buses: in-process, amqp (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "in-process,amqp")]
    buses: Vec<String>,
    /// Jobs (one frame each).
    #[arg(long, default_value_t = 8)]
    jobs: u32,
    /// Frame width and height in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Tile edge.
    #[arg(long, default_value_t = 8)]
    tile: u32,
    /// Tiles per task.
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// Renderer nodes.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// Render slots per node.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Scene to submit (its content is ignored by the stand-in renderer).
    #[arg(long, default_value = "scenes/cornell-box.glb")]
    scene: PathBuf,
    /// Output JSON (default benches/results/pipeline.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Run the pipeline benchmark.
pub fn run(a: BenchPipelineArgs) -> Result<bool> {
    let bench = PipelineBench {
        amqp: a.amqp,
        jobs: a.jobs,
        size: a.size,
        tile: a.tile,
        batch: a.batch,
        nodes: a.nodes,
        slots: a.slots,
        scene: a.scene,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for bus in &a.buses {
        let r = rt.block_on(bench_bus(&bench, bus, crate::daemons::scene_inspector()))?;
        if std::env::var_os("TESSERA_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{bus}: frame→payment ms in submission order: {:?}",
                r.frame_to_payment_ms
            );
        }
        eprintln!(
            "{:>10}: {} tiles in {:.2} s = {:.0} tiles/s; frame→payment p50 {} ms, p95 {} ms, max {} ms",
            r.bus,
            r.tiles,
            r.seconds,
            r.tiles_per_second,
            r.frame_to_payment_ms_p50,
            r.frame_to_payment_ms_p95,
            r.frame_to_payment_ms_max
        );
        results.push(r);
    }
    let report = Report::new(&bench, results);
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("benches/results/pipeline.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(true)
}
