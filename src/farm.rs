//! The farm commands: the client commands that talk to a coordinator over its HTTP API
//! (`submit`, `status`, `fetch`, `nodes`, `ledger`) and the daemons (`coordinator`,
//! `node`, `verifier`) that run the pipeline as separate processes over RabbitMQ.
//!
//! Every command turns its raw `*Args` into a validated `*Config` first; a missing or
//! unusable flag is a [`UsageError`] (exit code 2) that names the flag, its environment
//! variable and the config-file key. `--print-config` (hidden) prints that config as JSON
//! and exits, which is how the precedence of flags, environment and config file is tested.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tessera_api::flags::{self, ClientConfig};
use tessera_api::JobSubmission;
use tessera_api::{commands, table};
use tessera_images as images;
use tessera_images::paths::{create_parent, frame_path, proof_path};
use tessera_protocol::{FrameRate, RenderSettings};
use tessera_renderer::scene_dir;

/// A bad command line found after clap parsed it (a required value missing, a value out
/// of range): exit code 2, like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `Err(UsageError)` from a format string.
macro_rules! usage {
    ($($t:tt)*) => { return Err(anyhow::Error::new($crate::farm::UsageError(format!($($t)*)))) };
}
pub(crate) use usage;

/// A library's error about a flag ([`flags::FlagError`], a secret file's) as a
/// [`UsageError`].
pub(crate) fn usage_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(e.to_string()))
}

/// [`flags::required`], a usage error when missing.
pub(crate) fn required<T: Clone>(value: &Option<T>, flag: &str, env: &str) -> Result<T> {
    flags::required(value, flag, env).map_err(usage_error)
}

/// [`flags::secret`]; a bad file, or a value and a file, is a usage error.
pub(crate) fn secret(
    flag: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>> {
    flags::secret(flag, value, file).map_err(usage_error)
}

/// Print `config` as JSON when `--print-config` was given; `true` means "stop here".
pub(crate) fn print_config<T: Serialize>(print: bool, config: &T) -> Result<bool> {
    if print {
        println!("{}", serde_json::to_string_pretty(config)?);
    }
    Ok(print)
}

// ---------------------------------------------------------------------------------------
// Client commands
// ---------------------------------------------------------------------------------------

/// How to reach the coordinator's API (shared by the client commands).
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Coordinator URL, e.g. `http://127.0.0.1:8700`.
    #[arg(long, env = "TESSERA_COORDINATOR", value_name = "URL")]
    pub coordinator: Option<String>,
    /// Client API token (one of the coordinator's `--api-token`s).
    #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the token (keeps it out of `ps`).
    #[arg(long, env = "TESSERA_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

impl ClientArgs {
    fn config(&self) -> Result<ClientConfig> {
        ClientConfig::new(&self.coordinator, &self.token, &self.token_file).map_err(usage_error)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `tessera submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Scene file (.glb, or .gltf with its files in its folder); every file it reads is
    /// uploaded.
    pub scene: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 256, env = "TESSERA_WIDTH")]
    pub width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 256, env = "TESSERA_HEIGHT")]
    pub height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 64, env = "TESSERA_SPP")]
    pub spp: u32,
    /// Maximum bounces, counted as Blender Cycles counts them (0 = direct light only).
    #[arg(long, alias = "max-bounces", default_value_t = 12)]
    pub bounces: u32,
    /// Render seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Camera name (default: the scene's first camera).
    #[arg(long)]
    pub camera: Option<String>,
    /// Frame range `A..B` (inclusive) or a single frame.
    #[arg(long, default_value = "0")]
    pub frames: String,
    /// Frames per second for sampling animations (`24`, `30000/1001`).
    #[arg(long, default_value = "24", env = "TESSERA_FPS")]
    pub fps: FrameRate,
    /// Tier: economy, priority or trusted.
    #[arg(long, default_value = "economy", env = "TESSERA_TIER")]
    pub tier: String,
    /// Tile edge in pixels (default: the coordinator's).
    #[arg(long, alias = "tile")]
    pub tile_size: Option<u32>,
    /// Tiles per task (default: the coordinator's).
    #[arg(long, alias = "batch")]
    pub batch_size: Option<u32>,
    /// Only nodes of this determinism class id (64 hex digits, as `tessera nodes --json`
    /// shows).
    #[arg(long, value_name = "HEX")]
    pub require_class: Option<String>,
    /// Only nodes whose adapter has at least this many bytes of memory.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub min_memory: u64,
    /// After submitting, wait until the job is done, showing its progress on stderr; a
    /// failed job then fails the command.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (default: never).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// With --wait: milliseconds between two status requests.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub poll_ms: u64,
}

/// The validated [`SubmitArgs`].
#[derive(Debug, Serialize)]
pub struct SubmitConfig {
    /// Where the coordinator is.
    pub client: ClientConfig,
    /// The scene file.
    pub scene: PathBuf,
    /// The job, without its scene listing (filled in after the upload).
    pub job: JobSubmission,
}

impl SubmitArgs {
    /// Check every flag (no file is read).
    pub fn config(&self) -> Result<SubmitConfig> {
        let client = self.client.config()?;
        if let Err(e) = crate::check_render_flags(self.width, self.height, self.spp, self.bounces) {
            usage!("{e:#}");
        }
        let (frame_start, frame_end) = match crate::parse_frames(&self.frames) {
            Ok(r) => r,
            Err(e) => usage!("{e:#}"),
        };
        let settings = RenderSettings {
            width: self.width,
            height: self.height,
            spp: self.spp,
            max_bounces: self.bounces,
            seed: self.seed,
            camera: self.camera.clone(),
            frame_rate: self.fps,
        };
        let job = flags::job_submission(
            settings,
            (frame_start, frame_end),
            &self.tier,
            self.tile_size,
            self.batch_size,
            self.require_class.as_deref(),
            self.min_memory,
        )
        .map_err(usage_error)?;
        Ok(SubmitConfig {
            client,
            scene: self.scene.clone(),
            job,
        })
    }
}

/// `tessera submit`: load the scene, upload its files, submit the job; the job id is the
/// last line of stdout.
pub fn submit(args: SubmitArgs, print: bool) -> Result<bool> {
    let mut cfg = args.config()?;
    if args.poll_ms == 0 {
        usage!("--poll-ms must be at least 1");
    }
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let (scene, entry, local) =
        scene_dir::scene_files(&cfg.scene, cfg.job.settings.camera.as_deref())?;
    for w in scene.warnings() {
        eprintln!("warning: {}: {w}", cfg.scene.display());
    }
    let client = cfg.client.client()?;
    runtime()?.block_on(async {
        let (listing, fresh) = commands::upload_scene(&client, entry, &local).await?;
        eprintln!(
            "uploaded {} file(s) of {} ({fresh} new to the coordinator)",
            local.len(),
            cfg.scene.display()
        );
        cfg.job.scene = listing;
        let accepted = client.submit(&cfg.job).await?;
        let local_hash = hex::encode(scene.content_hash());
        if accepted.scene_hash != local_hash {
            // Nodes check the scene they load against the manifest's hash.
            tracing::warn!(
                job = %accepted.job_id,
                coordinator = %accepted.scene_hash,
                local = %local_hash,
                "the coordinator's scene hash differs from the one loaded here; did a scene file change during the upload?"
            );
        }
        eprintln!(
            "submitted {} ({}x{}, {} spp, frames {}..{}, tier {})",
            cfg.scene.display(),
            cfg.job.settings.width,
            cfg.job.settings.height,
            cfg.job.settings.spp,
            cfg.job.frame_start,
            cfg.job.frame_end,
            cfg.job.tier
        );
        println!("{}", accepted.job_id);
        if args.wait {
            let wait = commands::Wait {
                wait: true,
                timeout: args.timeout.map(Duration::from_secs),
                poll: Duration::from_millis(args.poll_ms),
            };
            let status = wait_showing_progress(&client, &accepted.job_id, &wait).await?;
            eprintln!("{}", table::status_line(&status));
        }
        Ok(true)
    })
}

/// [`commands::wait_until_done`] with the job's progress on stderr (a bar on a terminal,
/// plain lines otherwise) while `how.wait`.
async fn wait_showing_progress(
    client: &tessera_api::client::ApiClient,
    job: &str,
    how: &commands::Wait,
) -> Result<tessera_api::JobStatus, commands::CommandError> {
    if !how.wait {
        return commands::wait_until_done(client, job, how).await;
    }
    let mut progress = crate::progress::JobProgress::new();
    commands::wait_until_done_with(client, job, how, &mut |s| {
        progress.update(&crate::progress::Snapshot::of_status(s))
    })
    .await
}

/// `tessera status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The job id (default: list every job).
    pub job: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON: the job's status object, or an array of them.
    #[arg(long)]
    pub json: bool,
}

/// `tessera status [JOB]`.
pub fn status(args: StatusArgs, print: bool) -> Result<bool> {
    let cfg = args.client.config()?;
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let client = cfg.client()?;
    runtime()?.block_on(async {
        match &args.job {
            Some(id) => {
                let s = client.job(id).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!("{}", table::status_line(&s));
                }
            }
            None => {
                let jobs = client.jobs().await?;
                if args.json {
                    println!("{}", serde_json::to_string(&jobs)?);
                } else {
                    table::write_jobs(&mut std::io::stdout().lock(), &jobs)?;
                }
            }
        }
        Ok(true)
    })
}

/// `tessera fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The job id.
    pub job: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output PNG path; the EXR goes beside it with the .exr extension. With several
    /// frames, `#` characters are replaced by the zero-padded frame number.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Proof bundle path (default: OUTPUT with the extension .proof.json).
    #[arg(long)]
    pub proof: Option<PathBuf>,
    /// Wait until the job is done (or failed) instead of failing when it is not done yet.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (default: never).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// With --wait: milliseconds between two status requests.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub poll_ms: u64,
    /// View transform of the PNG (`standard` or `filmic`); the EXR is always the linear
    /// committed pixels.
    #[arg(long, value_enum, default_value = "standard", env = "TESSERA_VIEW")]
    pub view: images::View,
    /// Exposure of the PNG in stops.
    #[arg(
        long,
        default_value_t = 0.0,
        allow_negative_numbers = true,
        env = "TESSERA_EXPOSURE"
    )]
    pub exposure: f32,
}

/// `tessera fetch JOB -o PATH`: the proof bundle and every frame, each frame checked
/// against the bundle's tile commitments before it is written.
pub fn fetch(args: FetchArgs, print: bool) -> Result<bool> {
    let cfg = args.client.config()?;
    let view = images::ViewTransform::new(args.view, args.exposure).map_err(usage_error)?;
    if args.poll_ms == 0 {
        usage!("--poll-ms must be at least 1");
    }
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let client = cfg.client()?;
    runtime()?.block_on(async {
        let wait = commands::Wait {
            wait: args.wait,
            timeout: args.timeout.map(Duration::from_secs),
            poll: Duration::from_millis(args.poll_ms),
        };
        let status = wait_showing_progress(&client, &args.job, &wait).await?;
        let n_frames = status.frame_end - status.frame_start + 1;
        // Fail on a bad output pattern before downloading anything.
        frame_path(&args.output, status.frame_start, n_frames)?;

        let (bundle, bundle_bytes) = commands::fetch_bundle(&client, &args.job).await?;
        let m = &bundle.manifest.statement;
        let (width, height) = (m.settings.width, m.settings.height);
        let mut written = Vec::new();
        for frame in m.frame_start..=m.frame_end {
            let pixels = commands::fetch_frame(&client, &args.job, frame, width, height).await?;
            let check =
                tessera_verifier::audit::check_image(&bundle, frame, width, height, &pixels);
            if !check.passed {
                bail!(
                    "job {} frame {frame}: the pixels do not match the proof bundle: {}",
                    args.job,
                    check.detail
                );
            }
            let png = frame_path(&args.output, frame, n_frames)?;
            create_parent(&png)?;
            written.extend(images::paths::write_frame(
                png, width, height, &pixels, &view,
            )?);
        }
        let proof = args
            .proof
            .clone()
            .unwrap_or_else(|| proof_path(&args.output, m.frame_start));
        create_parent(&proof)?;
        std::fs::write(&proof, &bundle_bytes)
            .with_context(|| format!("writing proof bundle {}", proof.display()))?;
        written.push(proof);
        for w in &written {
            println!("wrote {}", w.display());
        }
        Ok(true)
    })
}

/// `tessera nodes` and `tessera ledger`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `tessera nodes`.
pub fn nodes(args: ListArgs, print: bool) -> Result<bool> {
    let cfg = args.client.config()?;
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let client = cfg.client()?;
    let nodes = runtime()?.block_on(client.nodes())?;
    if args.json {
        println!("{}", table::nodes_json(&nodes));
    } else {
        table::write_nodes(&mut std::io::stdout().lock(), &nodes, now_unix())?;
    }
    Ok(true)
}

/// `tessera ledger`.
pub fn ledger(args: ListArgs, print: bool) -> Result<bool> {
    let cfg = args.client.config()?;
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let client = cfg.client()?;
    let ledger = runtime()?.block_on(client.ledger())?;
    if args.json {
        println!("{}", serde_json::to_string(&ledger)?);
        return Ok(true);
    }
    table::write_ledger(&mut std::io::stdout().lock(), &ledger)?;
    Ok(true)
}

/// `tessera credit`: the operator credits a client's balance or a node's stake.
#[derive(Args, Debug)]
pub struct CreditArgs {
    /// The client to credit (its name, as in `--api-token CLIENT=TOKEN`).
    #[arg(
        long = "client",
        conflicts_with = "stake",
        required_unless_present = "stake"
    )]
    pub client_name: Option<String>,
    /// The node whose stake to credit (its public key, 64 hex).
    #[arg(long, value_name = "NODE_KEY")]
    pub stake: Option<String>,
    /// Micro-credits to credit.
    #[arg(long)]
    pub amount: u64,
    /// Your reference for this payment: a credit is applied once per reference, so
    /// running the same command again credits nothing twice.
    #[arg(long)]
    pub reference: String,
    /// Coordinator URL and the operator's admin token (`--admin-token` of the
    /// coordinator) as `--token`.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Credit money that came in from outside the farm: to a client's balance (which funds
/// its jobs' escrow) or a node's stake (which verification failures slash).
pub fn credit(args: CreditArgs, print: bool) -> Result<bool> {
    let cfg = args.client.config()?;
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let account = flags::credit_account(args.client_name.as_deref(), args.stake.as_deref())
        .map_err(usage_error)?;
    let client = cfg.client()?;
    let answer = runtime()?.block_on(client.credit(&tessera_api::CreditRequest {
        account,
        amount: args.amount,
        reference: args.reference.clone(),
    }))?;
    if args.json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        println!(
            "{}",
            table::credit_line(args.amount, &args.reference, &answer)
        );
    }
    Ok(true)
}

/// `tessera dispute JOB`: the job's client disputes it inside the challenge window.
#[derive(clap::Args, Debug)]
pub struct DisputeArgs {
    /// The job id.
    pub job: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the job's status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Dispute a finished job: the deposit is taken, extra samples are checked, and the side
/// that loses pays for them (`tessera status JOB` shows the outcome).
pub fn dispute(args: DisputeArgs, print: bool) -> Result<bool> {
    let cfg = args.client.config()?;
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let client = cfg.client()?;
    let s = runtime()?.block_on(client.dispute(&args.job))?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!("{}", table::status_line(&s));
    }
    Ok(true)
}

/// `tessera cancel|pause|resume|requeue JOB...`: one control action on several jobs.
#[derive(clap::Args, Debug)]
pub struct ControlArgs {
    /// The job ids.
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print each job's outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tessera priority N JOB...`.
#[derive(clap::Args, Debug)]
pub struct PriorityArgs {
    /// The new priority: higher goes first among the farm's queued work (jobs start at 0).
    #[arg(allow_negative_numbers = true)]
    pub priority: i32,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Control the client's jobs: `action` is `cancel`, `pause`, `resume`, `requeue` or
/// `priority` (with `priority`). Prints one line per job; fails (exit 1) when the action
/// was refused for any of them.
pub fn control(
    args: ControlArgs,
    action: &str,
    priority: Option<i32>,
    print: bool,
) -> Result<bool> {
    let cfg = args.client.config()?;
    if print_config(print, &cfg)? {
        return Ok(true);
    }
    let client = cfg.client()?;
    let outcomes = runtime()?.block_on(client.control(&args.jobs, action, priority))?;
    if args.json {
        println!("{}", serde_json::to_string(&outcomes)?);
    } else {
        for o in &outcomes {
            println!("{}", table::control_line(action, o));
        }
    }
    Ok(outcomes.iter().all(|o| o.error.is_none()))
}
