//! `tessera bench pipeline`: tiles per second through the whole farm pipeline (HTTP
//! submission, coordinator, bus, nodes, verifier, ledger, bundle) with the CPU stand-in
//! renderer, once over the in-process bus and once over RabbitMQ, plus the latency from a
//! frame's last stored tile to its first payment. Results go to JSON under
//! `benches/results/`.
//!
//! Everything runs in this process but talks as the daemons do: the coordinator serves
//! its HTTP API on a loopback port, nodes and the verifier register over it, and on
//! RabbitMQ every daemon has its own connection. Jobs are one frame each (a job's frames
//! are paid when its verification round closes), all submitted at once; `tiles_per_second`
//! = tiles of all jobs / (last job done − first submission).

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_api::client::ApiClient;
use tessera_api::{JobSubmission, SceneListing};
use tessera_bus::{AmqpBus, AmqpConfig, Bus, InProcessBus};
use tessera_coordinator::daemon::{self, DaemonConfig};
use tessera_coordinator::store::Store;
use tessera_node::daemon::{run_node, NodeDaemonConfig, DEFAULT_HEARTBEAT};
use tessera_node::worker::StubFactory;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::wire::{QUEUE_TASKS, QUEUE_VERIFY};
use tessera_protocol::RenderSettings;
use tessera_verifier::daemon::{run_verifier, VerifierDaemonConfig};
use tokio_util::sync::CancellationToken;

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

#[derive(Serialize)]
struct BusResult {
    bus: String,
    jobs: u32,
    tiles: u64,
    seconds: f64,
    tiles_per_second: f64,
    frame_to_payment_ms_p50: u64,
    frame_to_payment_ms_p95: u64,
    frame_to_payment_ms_max: u64,
}

#[derive(Serialize)]
struct Report {
    what: &'static str,
    host: String,
    cpus: usize,
    date_unix: u64,
    git_commit: String,
    size: u32,
    tile: u32,
    batch: u32,
    nodes: u32,
    slots: u32,
    tier: &'static str,
    results: Vec<BusResult>,
}

/// Run the pipeline benchmark.
pub fn run(a: BenchPipelineArgs) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for bus in &a.buses {
        let r = rt.block_on(bench_one(&a, bus))?;
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
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let report = Report {
        what: "tessera bench pipeline: stand-in renderer, whole farm pipeline",
        host: host.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        date_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        git_commit: std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        size: a.size,
        tile: a.tile,
        batch: a.batch,
        nodes: a.nodes,
        slots: a.slots,
        tier: "priority",
        results,
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("benches/results/pipeline.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(true)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The token that grants the bench's verifier its role.
const BENCH_VERIFIER_TOKEN: &str = "bench-verifier-token";
/// The bench coordinator's admin token (crediting the client).
const BENCH_ADMIN_TOKEN: &str = "bench-admin-token-0";

async fn bench_one(a: &BenchPipelineArgs, bus_name: &str) -> Result<BusResult> {
    let data = tempfile::tempdir()?;
    // A fresh key's short form: 12 random hex characters from the OS generator.
    let namespace = format!("bench{}", SecretKey::generate().public().short());
    let token = "bench-token".to_string();
    let listener = daemon::bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let cfg = DaemonConfig {
        amqp_url: a.amqp.clone(),
        listen: listener.local_addr()?,
        data_dir: data.path().to_path_buf(),
        api_tokens: vec![token.clone()],
        tile_size: a.tile,
        batch_size: a.batch,
        namespace: namespace.clone(),
        lease: Duration::from_secs(60),
        // The bench's verifier is granted its role with a token; the bench credits its
        // client with the admin token before it submits.
        verifier_token: Some(BENCH_VERIFIER_TOKEN.into()),
        admin_token: Some(BENCH_ADMIN_TOKEN.into()),
        scene_inspector: Some(crate::daemons::scene_inspector()),
        // All of the bench's jobs are in flight at once.
        limits: tessera_coordinator::daemon::service::Limits {
            max_client_jobs: u64::from(a.jobs).max(1),
            ..Default::default()
        },
        ..DaemonConfig::default()
    };
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    match bus_name {
        "in-process" => {
            let bus = InProcessBus::new();
            let shared = bus.clone();
            start_farm(
                &mut tasks,
                a.nodes,
                a.slots,
                cfg,
                bus,
                listener,
                &url,
                &shutdown,
                move |_| {
                    let bus = shared.clone();
                    async move { Ok(bus) }
                },
            );
        }
        "amqp" => {
            let connect = {
                let amqp = a.amqp.clone();
                let slots = a.slots as u16;
                move |ns: String| {
                    let amqp = amqp.clone();
                    async move {
                        let mut c = AmqpConfig::new(amqp);
                        c.namespace = ns;
                        c.prefetch.insert(QUEUE_TASKS.into(), slots * 4);
                        c.prefetch.insert(QUEUE_VERIFY.into(), 2);
                        AmqpBus::connect(c).await
                    }
                }
            };
            let mut coord = AmqpConfig::new(a.amqp.clone());
            coord.namespace = namespace.clone();
            let bus = AmqpBus::connect(coord)
                .await
                .with_context(|| format!("connecting to {}", a.amqp))?;
            start_farm(
                &mut tasks, a.nodes, a.slots, cfg, bus, listener, &url, &shutdown, connect,
            );
        }
        other => bail!("--buses: unknown bus {other:?} (in-process, amqp)"),
    }
    // Submit every job, then wait until all are done.
    let client = ApiClient::new(&url, Some(token))?;
    let operator = client.with_token(BENCH_ADMIN_TOKEN.into());
    wait_for_workers(&operator, a.nodes + 1).await?;
    operator
        .credit(&tessera_api::CreditRequest {
            account: "client:default".into(),
            amount: tessera_coordinator::daemon::service::MAX_CREDIT,
            reference: "bench".into(),
        })
        .await?;
    let bytes =
        std::fs::read(&a.scene).with_context(|| format!("reading {}", a.scene.display()))?;
    let stored = client.put_blob(bytes).await?;
    let entry = a
        .scene
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scene.glb".into());
    let sub = JobSubmission {
        scene: SceneListing {
            entry: entry.clone(),
            files: [(entry, stored.hash)].into_iter().collect(),
        },
        settings: RenderSettings {
            width: a.size,
            height: a.size,
            spp: 1,
            max_bounces: 1,
            seed: 1,
            camera: None,
            frame_rate: Default::default(),
        },
        frame_start: 0,
        frame_end: 0,
        tier: "priority".into(),
        tile_size: Some(a.tile),
        batch_size: Some(a.batch),
        requirements: Default::default(),
    };
    let start = Instant::now();
    let mut jobs = Vec::new();
    for _ in 0..a.jobs {
        jobs.push(client.submit(&sub).await?.job_id);
    }
    let mut tiles = 0u64;
    for job in &jobs {
        loop {
            let s = client.job(job).await?;
            match s.state.as_str() {
                "done" => {
                    tiles += u64::from(s.tiles_total);
                    break;
                }
                "failed" => bail!("job {job} failed: {}", s.error.unwrap_or_default()),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    shutdown.cancel();
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let store = Store::open(&data.path().join("coordinator.db"))?;
    let mut lat = Vec::new();
    for job in &jobs {
        for (_, last_tile, paid) in store.frame_payment_times(job)? {
            lat.push(paid.saturating_sub(last_tile));
        }
    }
    if std::env::var_os("TESSERA_BENCH_VERBOSE").is_some() {
        eprintln!("{bus_name}: frame→payment ms in submission order: {lat:?}");
    }
    lat.sort_unstable();
    Ok(BusResult {
        bus: bus_name.into(),
        jobs: a.jobs,
        tiles,
        seconds,
        tiles_per_second: tiles as f64 / seconds,
        frame_to_payment_ms_p50: percentile(&lat, 0.5),
        frame_to_payment_ms_p95: percentile(&lat, 0.95),
        frame_to_payment_ms_max: lat.last().copied().unwrap_or(0),
    })
}

/// Wait until `n` workers registered (the nodes view is the operator's).
async fn wait_for_workers(client: &ApiClient, n: u32) -> Result<()> {
    for _ in 0..500 {
        if let Ok(nodes) = client.nodes().await {
            if nodes.len() as u32 >= n {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the nodes and the verifier did not register within 10 s")
}

/// Start the coordinator plus `nodes` stand-in nodes and one verifier in `set`, until
/// `shutdown`. `connect(namespace)` gives each node and the verifier its bus.
#[allow(clippy::too_many_arguments)] // the farm's parts
fn start_farm<B, C, F>(
    set: &mut tokio::task::JoinSet<Result<()>>,
    nodes: u32,
    slots: u32,
    cfg: DaemonConfig,
    coordinator_bus: B,
    listener: tokio::net::TcpListener,
    url: &str,
    shutdown: &CancellationToken,
    connect: C,
) where
    B: Bus,
    C: Fn(String) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<B, tessera_bus::BusError>> + Send + 'static,
{
    let stop = shutdown.clone();
    set.spawn(async move {
        daemon::run_with_bus(cfg, coordinator_bus, listener, stop)
            .await
            .context("coordinator")
    });
    for i in 0..nodes {
        let (stop, connect, url) = (shutdown.clone(), connect.clone(), url.to_string());
        set.spawn(async move {
            let key = SecretKey::generate();
            let cache = tempfile::tempdir()?;
            let cfg = NodeDaemonConfig {
                coordinator: url,
                token: None,
                key,
                name: format!("bench-node-{i}"),
                slots,
                cache_dir: cache.path().to_path_buf(),
                heartbeat: DEFAULT_HEARTBEAT,
                dishonest: None,
            };
            run_node(
                cfg,
                move |reg| connect(reg.amqp_namespace),
                Arc::new(StubFactory::default()),
                stop,
            )
            .await
            .with_context(|| format!("node {i}"))
        });
    }
    let (stop, url) = (shutdown.clone(), url.to_string());
    set.spawn(async move {
        let cache = tempfile::tempdir()?;
        let cfg = VerifierDaemonConfig {
            coordinator: url,
            token: Some(BENCH_VERIFIER_TOKEN.into()),
            key: SecretKey::generate(),
            name: "bench-verifier".into(),
            slots: 2,
            cache_dir: cache.path().to_path_buf(),
        };
        run_verifier(
            cfg,
            move |reg| connect(reg.amqp_namespace),
            Arc::new(StubFactory::default()),
            stop,
        )
        .await
        .context("verifier")
    });
}
