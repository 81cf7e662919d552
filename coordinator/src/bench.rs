//! The pipeline benchmark (`tessera bench pipeline`): tiles per second through the whole
//! farm pipeline (HTTP submission, coordinator, bus, nodes, verifier, ledger, bundle) with
//! the CPU stand-in renderer, over one bus, plus the latency from a frame's last stored
//! tile to its first payment.
//!
//! Everything runs in this process but talks as the daemons do: the coordinator serves
//! its HTTP API on a loopback port, nodes and the verifier register over it, and on
//! RabbitMQ every daemon has its own connection. Jobs are one frame each (a job's frames
//! are paid when its verification round closes), all submitted at once; `tiles_per_second`
//! = tiles of all jobs / (last job done − first submission).

use crate::daemon::{self, DaemonConfig, DaemonError, SceneInspector};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_api::client::{ApiClient, ApiClientError};
use tessera_api::{JobSubmission, SceneListing};
use tessera_bus::{AmqpBus, AmqpConfig, Bus, BusError, InProcessBus};
use tessera_node::daemon::{run_node, NodeDaemonConfig, NodeDaemonError, DEFAULT_HEARTBEAT};
use tessera_node::worker::StubFactory;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::wire::{QUEUE_TASKS, QUEUE_VERIFY};
use tessera_protocol::RenderSettings;
use tessera_verifier::daemon::{run_verifier, VerifierDaemonConfig, VerifierDaemonError};
use tokio_util::sync::CancellationToken;

/// The token that grants the bench's verifier its role.
const BENCH_VERIFIER_TOKEN: &str = "bench-verifier-token";
/// The bench coordinator's admin token (crediting the client).
const BENCH_ADMIN_TOKEN: &str = "bench-admin-token-0";

/// What one benchmark run measures: the farm's shape and the jobs submitted.
#[derive(Clone, Debug)]
pub struct PipelineBench {
    /// RabbitMQ URL for the AMQP run.
    pub amqp: String,
    /// Jobs (one frame each).
    pub jobs: u32,
    /// Frame width and height in pixels.
    pub size: u32,
    /// Tile edge.
    pub tile: u32,
    /// Tiles per task.
    pub batch: u32,
    /// Renderer nodes.
    pub nodes: u32,
    /// Render slots per node.
    pub slots: u32,
    /// Scene to submit (its content is ignored by the stand-in renderer).
    pub scene: PathBuf,
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bus name that is neither `in-process` nor `amqp`.
    #[error("--buses: unknown bus {0:?} (in-process, amqp)")]
    UnknownBus(String),
    /// The coordinator's broker connection failed.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The broker URL.
        url: String,
        /// Why.
        source: BusError,
    },
    /// The coordinator stopped with an error.
    #[error("coordinator: {0}")]
    Coordinator(#[from] DaemonError),
    /// A node stopped with an error.
    #[error("node {index}: {source}")]
    Node {
        /// Which node.
        index: u32,
        /// Why.
        source: NodeDaemonError,
    },
    /// The verifier stopped with an error.
    #[error("verifier: {0}")]
    Verifier(#[from] VerifierDaemonError),
    /// A request to the coordinator's API failed.
    #[error(transparent)]
    Api(#[from] ApiClientError),
    /// The scene file could not be read.
    #[error("reading {path}: {source}")]
    Scene {
        /// The scene file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The workers did not register in time.
    #[error("the nodes and the verifier did not register within 10 s")]
    Registration,
    /// A job failed.
    #[error("job {job} failed: {error}")]
    JobFailed {
        /// The job id.
        job: String,
        /// The coordinator's reason.
        error: String,
    },
    /// The store could not be read after the run.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A temporary folder or the loopback listener's address.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A farm task panicked or was cancelled.
    #[error("a farm task ended abnormally: {0}")]
    Join(String),
}

/// The measurements over one bus.
#[derive(Clone, Debug, Serialize)]
pub struct BusResult {
    /// `in-process` or `amqp`.
    pub bus: String,
    /// Jobs run.
    pub jobs: u32,
    /// Tiles of all jobs.
    pub tiles: u64,
    /// From the first submission to the last job done.
    pub seconds: f64,
    /// `tiles / seconds`.
    pub tiles_per_second: f64,
    /// Median latency from a frame's last stored tile to its first payment.
    pub frame_to_payment_ms_p50: u64,
    /// Its 95th percentile.
    pub frame_to_payment_ms_p95: u64,
    /// Its maximum.
    pub frame_to_payment_ms_max: u64,
    /// Every frame's latency in submission order (not in the JSON report).
    #[serde(skip)]
    pub frame_to_payment_ms: Vec<u64>,
}

/// The JSON report of a benchmark: what ran where, and one result per bus.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was measured.
    pub what: &'static str,
    /// The host name.
    pub host: String,
    /// Available parallelism.
    pub cpus: usize,
    /// When (seconds since the Unix epoch).
    pub date_unix: u64,
    /// `git rev-parse --short HEAD` in the working directory, empty when unknown.
    pub git_commit: String,
    /// Frame edge.
    pub size: u32,
    /// Tile edge.
    pub tile: u32,
    /// Tiles per task.
    pub batch: u32,
    /// Nodes.
    pub nodes: u32,
    /// Slots per node.
    pub slots: u32,
    /// The jobs' tier.
    pub tier: &'static str,
    /// One per bus.
    pub results: Vec<BusResult>,
}

impl Report {
    /// The report of `results`, with this host, the time and the git commit.
    pub fn new(b: &PipelineBench, results: Vec<BusResult>) -> Report {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        Report {
            what: "tessera bench pipeline: stand-in renderer, whole farm pipeline",
            host,
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
            size: b.size,
            tile: b.tile,
            batch: b.batch,
            nodes: b.nodes,
            slots: b.slots,
            tier: "priority",
            results,
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run the benchmark over one bus (`in-process` or `amqp`): start a farm, submit every
/// job, wait until all are done, stop the farm and read the payment latencies from its
/// store. `inspector` checks the submitted scene, as the daemon's does.
pub async fn bench_bus(
    b: &PipelineBench,
    bus_name: &str,
    inspector: SceneInspector,
) -> Result<BusResult, BenchError> {
    let data = tempfile::tempdir()?;
    // A fresh key's short form: 12 random hex characters from the OS generator.
    let namespace = format!("bench{}", SecretKey::generate().public().short());
    let token = "bench-token".to_string();
    let listener = daemon::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let cfg = DaemonConfig {
        amqp_url: b.amqp.clone(),
        listen: listener.local_addr()?,
        data_dir: data.path().to_path_buf(),
        api_tokens: vec![token.clone()],
        tile_size: b.tile,
        batch_size: b.batch,
        namespace: namespace.clone(),
        lease: Duration::from_secs(60),
        // The bench's verifier is granted its role with a token; the bench credits its
        // client with the admin token before it submits.
        verifier_token: Some(BENCH_VERIFIER_TOKEN.into()),
        admin_token: Some(BENCH_ADMIN_TOKEN.into()),
        scene_inspector: Some(inspector),
        // All of the bench's jobs are in flight at once.
        limits: crate::daemon::service::Limits {
            max_client_jobs: u64::from(b.jobs).max(1),
            ..Default::default()
        },
        ..DaemonConfig::default()
    };
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let farm = Farm {
        nodes: b.nodes,
        slots: b.slots,
        url: url.clone(),
        shutdown: shutdown.clone(),
    };
    match bus_name {
        "in-process" => {
            let bus = InProcessBus::new();
            let shared = bus.clone();
            farm.start(&mut tasks, cfg, bus, listener, move |_| {
                let bus = shared.clone();
                async move { Ok(bus) }
            });
        }
        "amqp" => {
            let connect = {
                let amqp = b.amqp.clone();
                let slots = b.slots as u16;
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
            let mut coord = AmqpConfig::new(b.amqp.clone());
            coord.namespace = namespace.clone();
            let bus = AmqpBus::connect(coord)
                .await
                .map_err(|source| BenchError::Connect {
                    url: b.amqp.clone(),
                    source,
                })?;
            farm.start(&mut tasks, cfg, bus, listener, connect);
        }
        other => return Err(BenchError::UnknownBus(other.into())),
    }
    // Submit every job, then wait until all are done.
    let client = ApiClient::new(&url, Some(token))?;
    let operator = client.with_token(BENCH_ADMIN_TOKEN.into());
    wait_for_workers(&operator, b.nodes + 1).await?;
    operator
        .credit(&tessera_api::CreditRequest {
            account: "client:default".into(),
            amount: crate::daemon::service::MAX_CREDIT,
            reference: "bench".into(),
        })
        .await?;
    let bytes = std::fs::read(&b.scene).map_err(|source| BenchError::Scene {
        path: b.scene.clone(),
        source,
    })?;
    let stored = client.put_blob(bytes).await?;
    let entry = b
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
            width: b.size,
            height: b.size,
            spp: 1,
            max_bounces: 1,
            seed: 1,
            camera: None,
            frame_rate: Default::default(),
        },
        frame_start: 0,
        frame_end: 0,
        tier: "priority".into(),
        tile_size: Some(b.tile),
        batch_size: Some(b.batch),
        requirements: Default::default(),
    };
    let start = Instant::now();
    let mut jobs = Vec::new();
    for _ in 0..b.jobs {
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
                "failed" => {
                    return Err(BenchError::JobFailed {
                        job: job.clone(),
                        error: s.error.unwrap_or_default(),
                    })
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    shutdown.cancel();
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| BenchError::Join(e.to_string()))??;
    }
    let store = Store::open(&data.path().join("coordinator.db"))?;
    let mut lat = Vec::new();
    for job in &jobs {
        for (_, last_tile, paid) in store.frame_payment_times(job)? {
            lat.push(paid.saturating_sub(last_tile));
        }
    }
    let in_order = lat.clone();
    lat.sort_unstable();
    Ok(BusResult {
        bus: bus_name.into(),
        jobs: b.jobs,
        tiles,
        seconds,
        tiles_per_second: tiles as f64 / seconds,
        frame_to_payment_ms_p50: percentile(&lat, 0.5),
        frame_to_payment_ms_p95: percentile(&lat, 0.95),
        frame_to_payment_ms_max: lat.last().copied().unwrap_or(0),
        frame_to_payment_ms: in_order,
    })
}

/// Wait until `n` workers registered (the nodes view is the operator's).
async fn wait_for_workers(client: &ApiClient, n: u32) -> Result<(), BenchError> {
    for _ in 0..500 {
        if let Ok(nodes) = client.nodes().await {
            if nodes.len() as u32 >= n {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BenchError::Registration)
}

/// The shape of a bench farm: its stand-in nodes and the coordinator's URL.
struct Farm {
    nodes: u32,
    slots: u32,
    url: String,
    shutdown: CancellationToken,
}

impl Farm {
    /// Start the coordinator plus the stand-in nodes and one verifier in `set`, until
    /// `shutdown`. `connect(namespace)` gives each node and the verifier its bus.
    fn start<B, C, F>(
        &self,
        set: &mut tokio::task::JoinSet<Result<(), BenchError>>,
        cfg: DaemonConfig,
        coordinator_bus: B,
        listener: tokio::net::TcpListener,
        connect: C,
    ) where
        B: Bus,
        C: Fn(String) -> F + Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Result<B, BusError>> + Send + 'static,
    {
        let stop = self.shutdown.clone();
        set.spawn(async move {
            daemon::run_with_bus(cfg, coordinator_bus, listener, stop).await?;
            Ok(())
        });
        for i in 0..self.nodes {
            let (stop, connect, url) = (self.shutdown.clone(), connect.clone(), self.url.clone());
            let slots = self.slots;
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
                    metrics_listen: None,
                };
                run_node(
                    cfg,
                    move |reg| connect(reg.amqp_namespace),
                    Arc::new(StubFactory::default()),
                    stop,
                )
                .await
                .map_err(|source| BenchError::Node { index: i, source })
            });
        }
        let (stop, url) = (self.shutdown.clone(), self.url.clone());
        set.spawn(async move {
            let cache = tempfile::tempdir()?;
            let cfg = VerifierDaemonConfig {
                coordinator: url,
                token: Some(BENCH_VERIFIER_TOKEN.into()),
                key: SecretKey::generate(),
                name: "bench-verifier".into(),
                slots: 2,
                cache_dir: cache.path().to_path_buf(),
                metrics_listen: None,
            };
            run_verifier(
                cfg,
                move |reg| connect(reg.amqp_namespace),
                Arc::new(StubFactory::default()),
                stop,
            )
            .await?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_round_to_the_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.5), 3);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.95), 5);
        assert_eq!(percentile(&[7], 0.95), 7);
    }
}
