//! `tessera`: the one binary. `render` runs the whole verifiable pipeline in one process;
//! `audit` checks a proof bundle offline; `keygen` writes a key file; `compare` measures
//! how far apart two images are; `bench` times the renderer on the sample scenes. The
//! farm runs as separate processes: the `coordinator`, `node` and `verifier` daemons over
//! RabbitMQ, driven through the coordinator's HTTP API by `submit`, `status`, `fetch`,
//! `nodes` and `ledger` ([`farm`], [`daemons`]).
//!
//! Flags may also come from `TESSERA_*` environment variables and from a TOML file
//! (`--config FILE` or `TESSERA_CONFIG`; [`config`]): flag > environment > file > default.
//!
//! Exit codes: 0 success; 1 the work failed (render error, audit found a failed check,
//! the coordinator refused or could not be reached); 2 bad command line (clap, a missing
//! required value, a bad config file).

mod bench;
mod bench_pipeline;
mod calibrate;
mod config;
mod daemons;
mod farm;
mod gpu_factory;
mod progress;
mod simulate;
mod webhook;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tessera_coordinator::local::{check_nodes, write_summary, LocalFarm, LocalJob};
use tessera_coordinator::settings::default_data_dir;
use tessera_images as images;
use tessera_images::paths::{create_parent, frame_path, proof_path};
use tessera_node::DishonestMode;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::limits;
use tessera_protocol::{RenderSettings, TileRenderer};
use tessera_renderer::{Gpu, LoadOptions, Scene, SceneRenderer};
use tessera_verifier::{audit_bundle, audit_files, compare, compare_text};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Verifiable render farm: render glTF scenes, commit with signed Merkle roots, verify by sampled re-rendering, pay by tier."
)]
struct Cli {
    /// TOML file with flag defaults (see the README: top-level keys, `[node]`, `[client]`, …).
    #[arg(long, global = true, env = "TESSERA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the validated configuration of a farm command as JSON and exit (for tests;
    /// tokens are printed).
    #[arg(long, global = true, hide = true)]
    print_config: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a glTF scene through the whole verifiable pipeline in this process.
    Render(RenderArgs),
    /// Check a proof bundle offline; optionally an image and a local re-render.
    Audit(AuditArgs),
    /// Write a new ed25519 key file (mode 0600).
    Keygen(KeygenArgs),
    /// Compare two images (EXR or PNG): PSNR on linear RGB and LDR FLIP.
    Compare(CompareArgs),
    /// Benchmarks: `bench render` times the renderer on the sample scenes.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Measure honest cross-class renders and a corpus of forged tiles, and derive the
    /// cross-class tolerance from them (docs/CALIBRATION.md).
    Calibrate(calibrate::CalibrateArgs),
    /// Run the coordinator daemon: HTTP API, store, and the job pipeline over RabbitMQ.
    Coordinator(Box<daemons::CoordinatorArgs>),
    /// Run a renderer node daemon: takes render tasks from RabbitMQ.
    Node(daemons::NodeArgs),
    /// Run a verifier daemon: re-renders sampled tiles and signs verdicts.
    Verifier(daemons::VerifierArgs),
    /// Upload a scene and submit a render job; prints the job id as the last line.
    Submit(farm::SubmitArgs),
    /// Show a job's state (or list every job).
    Status(farm::StatusArgs),
    /// Download a finished job's frames (PNG + EXR) and proof bundle.
    Fetch(farm::FetchArgs),
    /// List the registered nodes and verifiers.
    Nodes(farm::ListArgs),
    /// Show the ledger's account balances.
    Ledger(farm::ListArgs),
    /// Credit a client's balance or a node's stake (the operator, with the admin token).
    Credit(farm::CreditArgs),
    /// Dispute a finished job inside its challenge window (extra samples; the side that
    /// loses pays for them).
    Dispute(farm::DisputeArgs),
    /// Cancel jobs: dispatch stops, verified work is paid, the rest of the escrow is
    /// refunded, and results that come later are never paid.
    Cancel(farm::ControlArgs),
    /// Pause jobs: nothing new is dispatched; work in flight finishes and is verified.
    Pause(farm::ControlArgs),
    /// Resume paused jobs.
    Resume(farm::ControlArgs),
    /// Requeue jobs' failing work: open tasks get their attempts again and go out anew.
    Requeue(farm::ControlArgs),
    /// Set jobs' priority among the farm's queued work (higher first; jobs start at 0).
    Priority(farm::PriorityArgs),
    /// The client's webhooks: `add` (events of its jobs POSTed to a URL, signed),
    /// `list`, `remove`, `deliveries`.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Measure detection: thousands of jobs with a cheating node through the real
    /// verification code and a CPU stand-in renderer, against 1 − (1 − f)^k.
    Simulate(simulate::SimulateArgs),
}

#[derive(Args)]
struct RenderArgs {
    /// Scene file (.glb, or .gltf with its buffers in the same folder).
    scene: PathBuf,
    /// Output PNG path; the EXR goes beside it with the .exr extension. With several frames,
    /// `#` characters are replaced by the zero-padded frame number.
    #[arg(short, long)]
    output: PathBuf,
    /// Proof bundle path (default: OUTPUT with the extension .proof.json).
    #[arg(long)]
    proof: Option<PathBuf>,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 256, env = "TESSERA_WIDTH")]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 256, env = "TESSERA_HEIGHT")]
    height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 64, env = "TESSERA_SPP")]
    spp: u32,
    /// Maximum bounces, counted as Blender Cycles counts them (0 = direct light only).
    #[arg(long, default_value_t = 12)]
    max_bounces: u32,
    /// Render seed: the same scene and settings give the same bytes on the same adapter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Camera name (default: the scene's first camera).
    #[arg(long)]
    camera: Option<String>,
    /// Frame range `A..B` (inclusive) or a single frame.
    #[arg(long, default_value = "0")]
    frames: String,
    /// Frames per second for sampling the scene's animations: frame `f` is at time
    /// `f / fps` seconds. A fraction such as `30000/1001` is exact.
    #[arg(long, default_value = "24", env = "TESSERA_FPS")]
    fps: tessera_protocol::FrameRate,
    /// Tile edge in pixels (8..=4096).
    #[arg(long = "tile", default_value_t = 64)]
    tile: u32,
    /// Tiles per batch (one task, one signed commitment; 1..=1024).
    #[arg(long, default_value_t = 4)]
    batch: u32,
    /// Local renderer nodes, each with its own key.
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Drill: how many of the local nodes cheat.
    #[arg(long, default_value_t = 0)]
    dishonest_nodes: u32,
    /// Drill: how they cheat (low-spp, noise, black, copy, partial).
    #[arg(long, default_value = "low-spp")]
    dishonest_mode: DishonestMode,
    /// Tier: economy, priority or trusted.
    #[arg(long, default_value = "economy", env = "TESSERA_TIER")]
    tier: String,
    /// Challenge window signed into the manifest, in seconds. Nobody can dispute a job of
    /// one machine, so `render` closes it when the job is done: hold-backs are released
    /// then either way (0, the default here, releases them as the job finishes; the
    /// farm's coordinator defaults to a day).
    #[arg(long, default_value_t = 0)]
    challenge_window: u64,
    /// Data directory: the coordinator's, nodes' and verifier's keys, and while a job
    /// runs the coordinator's store, in a private folder removed when the job ends.
    #[arg(long, env = "TESSERA_DATA")]
    data: Option<PathBuf>,
    /// View transform of the PNG: `standard` (clamp, sRGB curve) or `filmic` (Narkowicz's
    /// ACES fit, sRGB curve). The EXR is always the linear committed pixels.
    #[arg(long, value_enum, default_value = "standard", env = "TESSERA_VIEW")]
    view: images::View,
    /// Exposure of the PNG in stops: linear values × 2^EV before the view transform.
    #[arg(
        long,
        default_value_t = 0.0,
        allow_negative_numbers = true,
        env = "TESSERA_EXPOSURE"
    )]
    exposure: f32,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// The reference image (EXR, or PNG decoded as sRGB).
    a: PathBuf,
    /// The test image, same size.
    b: PathBuf,
    /// Scale B by mean(A)/mean(B) before measuring.
    #[arg(long)]
    exposure_match: bool,
    /// Write the FLIP error map (magma colours) to this PNG.
    #[arg(long)]
    error_map: Option<PathBuf>,
    /// Print the metrics as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AuditArgs {
    /// The proof bundle.
    bundle: PathBuf,
    /// An EXR image of the job's first frame to check tile by tile (repeat for more frames,
    /// in frame order).
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Re-render the sampled tiles on this machine's adapter and compare.
    #[arg(long)]
    rerender: bool,
    /// Scene file for --rerender (default: the bundle's scene name, beside the bundle or as
    /// given at render time).
    #[arg(long)]
    scene: Option<PathBuf>,
    /// Pin the coordinator's public key (hex).
    #[arg(long, env = "TESSERA_COORDINATOR_KEY")]
    coordinator_key: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the key file.
    #[arg(short, long)]
    output: PathBuf,
}

/// Parse the command line with the config file's values as flag defaults. Exits with
/// code 2 on a bad command line or config file.
fn parse_cli() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    if let Some(path) = config::config_path(&args, std::env::var_os("TESSERA_CONFIG")) {
        match config::ConfigFile::read(&path).and_then(|c| c.apply(cmd)) {
            Ok(c) => cmd = c,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        }
    }
    let mut matches = cmd.get_matches_from(args);
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

fn main() {
    let cli = parse_cli();
    tracing_subscriber::fmt()
        .with_writer(progress::LogWriter)
        // Colour codes only for a person at a terminal, never in a log file or pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "warn,tessera=info".into()),
        )
        .init();
    let result = match cli.command {
        Command::Render(a) => render(a),
        Command::Audit(a) => audit(a),
        Command::Keygen(a) => keygen(&a.output),
        Command::Compare(a) => compare_images(a),
        Command::Bench(c) => bench::run(c),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Coordinator(a) => daemons::coordinator(*a, cli.print_config),
        Command::Node(a) => daemons::node(a, cli.print_config),
        Command::Verifier(a) => daemons::verifier(a, cli.print_config),
        Command::Submit(a) => farm::submit(a, cli.print_config),
        Command::Status(a) => farm::status(a, cli.print_config),
        Command::Fetch(a) => farm::fetch(a, cli.print_config),
        Command::Nodes(a) => farm::nodes(a, cli.print_config),
        Command::Ledger(a) => farm::ledger(a, cli.print_config),
        Command::Dispute(a) => farm::dispute(a, cli.print_config),
        Command::Cancel(a) => farm::control(a, "cancel", None, cli.print_config),
        Command::Pause(a) => farm::control(a, "pause", None, cli.print_config),
        Command::Resume(a) => farm::control(a, "resume", None, cli.print_config),
        Command::Requeue(a) => farm::control(a, "requeue", None, cli.print_config),
        Command::Priority(a) => {
            farm::control(a.control, "priority", Some(a.priority), cli.print_config)
        }
        Command::Credit(a) => farm::credit(a, cli.print_config),
        Command::Webhook(c) => webhook::run(c, cli.print_config),
        Command::Simulate(a) => simulate::run(a),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            let usage = e.downcast_ref::<farm::UsageError>().is_some();
            std::process::exit(if usage { 2 } else { 1 });
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message
/// already holds (library errors often print their source in their own text as well).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn keygen(output: &Path) -> Result<bool> {
    let key = SecretKey::generate();
    tessera_node::keyfile::write_key_file(output, &key)?;
    println!("{}", key.public());
    Ok(true)
}

/// `--frames` ([`limits::parse_frames`]).
fn parse_frames(s: &str) -> Result<(u32, u32)> {
    limits::parse_frames(s).map_err(|why| anyhow!("--frames {s:?}: {why}"))
}

/// The limits on the render flags that `render`, `submit`, `bench render` and
/// `calibrate` share ([`limits::check_render_flags`]).
pub(crate) fn check_render_flags(w: u32, h: u32, spp: u32, max_bounces: u32) -> Result<()> {
    Ok(limits::check_render_flags(w, h, spp, max_bounces)?)
}

fn render(a: RenderArgs) -> Result<bool> {
    let started = Instant::now();
    // Validate everything before any work.
    check_render_flags(a.width, a.height, a.spp, a.max_bounces)?;
    if !limits::TILE_SIZE.contains(&a.tile) {
        bail!("--tile {}: must be {:?}", a.tile, limits::TILE_SIZE);
    }
    if !limits::BATCH_SIZE.contains(&a.batch) {
        bail!("--batch {}: must be {:?}", a.batch, limits::BATCH_SIZE);
    }
    let view = images::ViewTransform::new(a.view, a.exposure)?;
    check_nodes(a.nodes, a.dishonest_nodes)?;
    let (frame_start, frame_end) = parse_frames(&a.frames)?;
    let n_frames = frame_end - frame_start + 1;
    // A name or folder the outputs cannot be written under fails now, not after the render.
    let proof = a
        .proof
        .clone()
        .unwrap_or_else(|| proof_path(&a.output, frame_start));
    create_parent(&frame_path(&a.output, frame_start, n_frames)?)?;
    create_parent(&proof)?;
    let tier = tessera_api::flags::tier(&a.tier)?;
    if tier.min_trust > 0 {
        eprintln!("note: tier {} is meant for nodes with trust >= {}; local nodes are admitted for this run", tier.name, tier.min_trust);
    }

    let scene = Scene::load(&a.scene, &LoadOptions::default())
        .with_context(|| format!("loading scene {}", a.scene.display()))?;
    for w in scene.warnings() {
        eprintln!("warning: {}: {w}", a.scene.display());
    }
    let gpu = Arc::new(Gpu::new()?);
    let renderer: Arc<dyn TileRenderer> = Arc::new(SceneRenderer::new(gpu.clone(), &scene)?);
    eprintln!("adapter: {}", renderer.class());

    let cfg = LocalJob {
        scene: &a.scene,
        scene_hash: scene.content_hash(),
        settings: RenderSettings {
            width: a.width,
            height: a.height,
            spp: a.spp,
            max_bounces: a.max_bounces,
            seed: a.seed,
            camera: a.camera.clone(),
            frame_rate: a.fps,
        },
        frames: (frame_start, frame_end),
        tile_size: a.tile,
        batch_size: a.batch,
        tier: tier.name.clone(),
        challenge_window_secs: a.challenge_window,
    }
    .config();
    let farm = LocalFarm {
        data_dir: a.data.clone().unwrap_or_else(default_data_dir),
        nodes: a.nodes,
        dishonest_nodes: a.dishonest_nodes,
        dishonest_mode: a.dishonest_mode,
        renderer: renderer.clone(),
    };
    let outcome = {
        let mut shown = progress::JobProgress::new();
        farm.run_with_progress(&cfg, &mut |job, p| {
            shown.update(&progress::Snapshot::of_progress(job, p))
        })?
    };

    // Outputs: the proof bundle first, as no later step can make it again.
    let json = serde_json::to_vec_pretty(&outcome.bundle)?;
    std::fs::write(&proof, json)
        .with_context(|| format!("writing proof bundle {}", proof.display()))?;
    let mut written = vec![proof];
    for (frame, pixels) in &outcome.frames {
        let png = frame_path(&a.output, *frame, n_frames)?;
        create_parent(&png)?;
        written.extend(images::paths::write_frame(
            png, a.width, a.height, pixels, &view,
        )?);
    }

    let seconds = started.elapsed().as_secs_f64();
    write_summary(
        &mut std::io::stdout().lock(),
        &outcome,
        seconds,
        &written,
        a.json,
    )?;
    Ok(true)
}

fn compare_images(a: CompareArgs) -> Result<bool> {
    let img_a = images::read_linear(&a.a)?;
    let img_b = images::read_linear(&a.b)?;
    let (c, error_map) = compare::compare(&img_a, &img_b, a.exposure_match)
        .with_context(|| format!("comparing {} with {}", a.a.display(), a.b.display()))?;
    if let Some(path) = &a.error_map {
        let rgb = compare::error_map_rgb8(&error_map, c.width, c.height);
        images::write_rgb8_png(path, c.width, c.height, &rgb)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&c)?;
        v["a"] = serde_json::json!(a.a);
        v["b"] = serde_json::json!(a.b);
        println!("{v}");
    } else {
        compare_text::write_text(&mut std::io::stdout().lock(), &c, a.exposure_match)?;
    }
    Ok(true)
}

fn audit(a: AuditArgs) -> Result<bool> {
    let bundle = audit_files::read_bundle(&a.bundle)?;
    let pinned = match &a.coordinator_key {
        Some(h) => Some(PublicKey(
            tessera_protocol::hexser::decode(h)
                .map_err(|e| anyhow::anyhow!("--coordinator-key: {e}"))?,
        )),
        None => None,
    };
    let mut report = audit_bundle(&bundle, pinned.as_ref());
    for (i, img) in a.image.iter().enumerate() {
        let read = images::read_exr(img).map_err(|e| format!("{:#}", anyhow::Error::from(e)));
        report
            .checks
            .push(audit_files::check_image_file(&bundle, i, img, read));
    }
    if a.rerender {
        let scene_path = audit_files::rerender_scene_path(&a.bundle, &bundle, a.scene.as_deref());
        let scene = Scene::load(&scene_path, &LoadOptions::default()).with_context(|| {
            format!(
                "--rerender: loading scene {} (pass --scene)",
                scene_path.display()
            )
        })?;
        if let Some(c) = audit_files::scene_mismatch(&scene_path, &scene.content_hash(), &bundle) {
            report.checks.push(c);
        } else {
            let gpu = Arc::new(Gpu::new()?);
            let renderer = SceneRenderer::new(gpu, &scene)?;
            eprintln!("re-rendering sampled tiles on {}", renderer.class());
            report.extend(tessera_verifier::audit::rerender_samples(
                &bundle, &renderer,
            ));
        }
    }
    audit_files::write_report(&mut std::io::stdout().lock(), &report, a.json)?;
    Ok(report.passed())
}
