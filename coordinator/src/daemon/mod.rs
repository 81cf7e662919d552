//! `tessera coordinator`: the [`service::Service`] state machine behind an HTTP API
//! ([`http`]), three AMQP consumers (results, verdicts, node signals), the outbox
//! publisher and the lease reconciler, all in one process with one store.
//!
//! The coordinator declares the whole broker topology: nodes' and verifiers' broker users
//! may not declare anything (docs/PROTOCOL.md §4.7). So it declares the shared queues and
//! every registered worker's own queue at start, and a worker's own queue when it
//! registers; publishing declares the target too.
//!
//! Fault hook for tests (documented in docs/PROTOCOL.md): with
//! `TESSERA_FAULT_EXIT_BEFORE_PUBLISH=QUEUE` the process exits with status 77 just before
//! it would publish its first outbox message to logical queue `QUEUE`, i.e. after the
//! commit that queued it and before the publish.

pub mod http;
pub mod metrics;
pub mod service;
pub mod web;
pub mod webhooks;

use crate::store::Store;
use service::{Handled, Service, ServiceConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tessera_bus::{AmqpBus, AmqpConfig, Bus, BusError, Topology};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::statements::Role;
use tessera_protocol::wire::{
    node_queue, verifier_queue, QUEUE_RESULTS, QUEUE_SIGNALS, QUEUE_TASKS, QUEUE_VERDICTS,
    QUEUE_VERIFY,
};
use tessera_protocol::Digest;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// What the coordinator learns of a submitted scene before it accepts the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedScene {
    /// The scene's content hash (what nodes must render).
    pub content_hash: Digest,
    /// Its cameras' names (a submission's `settings.camera` must be one).
    pub cameras: Vec<String>,
}

/// Checks a scene from its entry file, cheaply and within a budget, and returns what the
/// coordinator needs of it (the binary passes the renderer's inspection; the coordinator
/// crate does not depend on the GPU renderer). Its error is the inspection's own, whose
/// message the submitting client is shown.
pub type SceneInspector = Arc<
    dyn Fn(&Path) -> Result<InspectedScene, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// Everything `tessera coordinator` needs.
#[derive(Clone)]
pub struct DaemonConfig {
    /// Broker URL.
    pub amqp_url: String,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Where a second, plain listener serves `GET /metrics` without a token (a private
    /// scrape network); none: metrics only on the API, behind the admin token.
    pub metrics_listen: Option<SocketAddr>,
    /// Data folder: store, key, blobs, scenes.
    pub data_dir: PathBuf,
    /// Client API tokens: `TOKEN` (client `default`) or `CLIENT=TOKEN`.
    pub api_tokens: Vec<String>,
    /// Token nodes must present to register (none: any key may register as a node).
    pub node_token: Option<String>,
    /// Token that grants the verifier role at registration.
    pub verifier_token: Option<String>,
    /// Keys granted the verifier role. With neither these nor `verifier_token`, no key
    /// can register as a verifier (and no job can be submitted).
    pub verifier_keys: Vec<PublicKey>,
    /// Operator token for `POST /v1/credits` (crediting clients and node stakes); none
    /// disables crediting over HTTP.
    pub admin_token: Option<String>,
    /// How far a client's balance may fall short of a job's escrow.
    pub client_overdraft: u64,
    /// Lease length after a node's last heartbeat.
    pub lease: Duration,
    /// How often the reconciler runs.
    pub reconcile_every: Duration,
    /// Deliveries of one task before its job fails.
    pub max_attempts: u32,
    /// Failures before a node is blocked from a job.
    pub blocklist_after: u32,
    /// Default tile edge.
    pub tile_size: u32,
    /// Default tiles per task.
    pub batch_size: u32,
    /// Hold-back release delay.
    pub challenge_window_secs: u64,
    /// Stake slashed on failure, %.
    pub slash_pct: u32,
    /// Largest uploaded file.
    pub max_blob_bytes: u64,
    /// AMQP namespace (queue `q` is `{namespace}.{q}`).
    pub namespace: String,
    /// Unanswered verify requests are published again after this long.
    pub verify_timeout: Duration,
    /// Scene loader for submissions.
    pub scene_inspector: Option<SceneInspector>,
    /// How re-renders of another class are judged (signed into every manifest).
    pub tolerance: tessera_protocol::tolerance::Tolerance,
    /// A client's deposit to dispute a job, % of its price.
    pub dispute_deposit_pct: u32,
    /// How the HTTP API guards itself (timeouts, connections, uploads).
    pub http: http::HttpLimits,
    /// What one job and one client may ask of the farm.
    pub limits: service::Limits,
    /// A worker's session expires after this long without being heard from.
    pub session_ttl: Duration,
    /// Blobs no job needs are kept this long after their last use (and a finished job's
    /// scene this long after its challenge window), then collected.
    pub retention: Duration,
    /// How webhook deliveries are sent and retried.
    pub webhooks: webhooks::WebhookConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        let s = ServiceConfig::default();
        Self {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            metrics_listen: None,
            data_dir: PathBuf::from("tessera-data"),
            api_tokens: Vec::new(),
            node_token: None,
            verifier_token: None,
            verifier_keys: Vec::new(),
            admin_token: None,
            client_overdraft: s.client_overdraft,
            lease: Duration::from_millis(s.lease_ms),
            reconcile_every: Duration::from_secs(1),
            max_attempts: s.max_attempts,
            blocklist_after: s.blocklist_after,
            tile_size: s.tile_size,
            batch_size: s.batch_size,
            challenge_window_secs: s.challenge_window_secs,
            slash_pct: s.slash_pct,
            max_blob_bytes: tessera_api::DEFAULT_MAX_BLOB_BYTES,
            namespace: s.namespace,
            verify_timeout: Duration::from_millis(s.verify_timeout_ms),
            scene_inspector: None,
            tolerance: s.tolerance,
            dispute_deposit_pct: s.dispute_deposit_pct,
            http: http::HttpLimits::default(),
            limits: s.limits,
            session_ttl: Duration::from_millis(s.session_ttl_ms),
            // A week.
            retention: Duration::from_secs(7 * 86_400),
            webhooks: webhooks::WebhookConfig::default(),
        }
    }
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// The data folder could not be used.
    #[error("data folder {path}: {reason}")]
    Data {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The broker failed.
    #[error(transparent)]
    Bus(#[from] tessera_bus::BusError),
    /// The HTTP listener failed.
    #[error("http listener on {addr}: {reason}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Check the tokens that grant roles and name clients: long enough (the role tokens),
/// and no two the same.
pub fn check_grants(cfg: &DaemonConfig) -> Result<(), DaemonError> {
    for (flag, t) in [
        ("--node-token", &cfg.node_token),
        ("--verifier-token", &cfg.verifier_token),
        ("--admin-token", &cfg.admin_token),
    ] {
        if t.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(DaemonError::Config(format!(
                "{flag}: at least 16 characters"
            )));
        }
    }
    // Every token names one client or grants one role: two equal ones would silently
    // make two clients one, or a client a node.
    let owned = http::client_tokens(&cfg.api_tokens);
    let mut named: Vec<(String, &str)> = owned
        .iter()
        .map(|(client, token)| (format!("--api-token of client {client:?}"), token.as_str()))
        .collect();
    for (flag, t) in [
        ("--node-token", &cfg.node_token),
        ("--verifier-token", &cfg.verifier_token),
        ("--admin-token", &cfg.admin_token),
    ] {
        if let Some(t) = t {
            named.push((flag.to_string(), t));
        }
    }
    for (i, (a, ta)) in named.iter().enumerate() {
        if ta.is_empty() {
            return Err(DaemonError::Config(format!("{a}: the token is empty")));
        }
        for (b, tb) in &named[i + 1..] {
            if service::same_secret(ta, tb) {
                return Err(DaemonError::Config(format!(
                    "{a} and {b} are the same token: each token must name one client or grant one role"
                )));
            }
        }
    }
    Ok(())
}

/// Say loudly at start-up what is open: a farm without a node token takes any key as a
/// node, and one that grants the verifier role to nobody cannot accept jobs.
fn warn_open_roles(cfg: &DaemonConfig) {
    if cfg.node_token.is_none() {
        tracing::warn!("no --node-token: ANY key that reaches the API may register as a node (it starts with no stake and trust 0)");
    }
    if cfg.verifier_token.is_none() && cfg.verifier_keys.is_empty() {
        tracing::warn!("neither --verifier-key nor --verifier-token: NO key can register as a verifier, so no job can be submitted");
    }
}

/// The coordinator's key: `DIR/coordinator.key`, created (mode 0600) on first start.
fn load_or_create_key(dir: &Path) -> Result<SecretKey, DaemonError> {
    let path = dir.join("coordinator.key");
    let data_err = |reason: String| DaemonError::Data {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretKey::from_key_file(&text, &path.display().to_string())
            .map_err(|e| data_err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&path).map_err(|e| data_err(e.to_string()))?;
            std::io::Write::write_all(&mut f, key.to_key_file().as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| data_err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(data_err(e.to_string())),
    }
}

/// Declares a logical queue on the daemon's bus (boxed, so that what the HTTP handlers
/// share does not depend on the bus type).
type DeclareQueue =
    Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send>> + Send + Sync>;

/// How long registration waits for the new worker's queue to be declared.
const WORKER_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared state of the daemon's tasks.
pub(crate) struct Shared {
    /// FIFO-fair (tokio's mutex queues waiters in order), so a verdict waits only for the
    /// inputs that arrived before it, never for a stream of later results.
    pub(crate) service: Arc<tokio::sync::Mutex<Service>>,
    /// Wakes the outbox publisher. Only callers that may have queued a message notify it:
    /// a notification with nobody waiting is kept, so one the publisher made itself would
    /// end its next wait at once, every time (a busy loop).
    pub(crate) outbox: Notify,
    /// Declares a queue on the bus.
    declare: DeclareQueue,
    /// Passes the publisher has made over the outbox (one read each), to watch it with.
    outbox_passes: watch::Sender<u64>,
    /// Calls of [`Shared::with`] so far: inputs handled (or refused), for a driver to
    /// wait on instead of polling.
    handled: watch::Sender<u64>,
}

impl Shared {
    fn new(service: Service, declare: DeclareQueue) -> Self {
        Self {
            service: Arc::new(tokio::sync::Mutex::new(service)),
            outbox: Notify::new(),
            declare,
            outbox_passes: watch::Sender::new(0),
            handled: watch::Sender::new(0),
        }
    }

    /// Run `f` on the service off the async workers (SQLite is blocking), then wake the
    /// outbox publisher, since `f` may have queued messages.
    pub(crate) async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Service) -> T + Send + 'static,
    ) -> T {
        let out = self.with_quiet(f).await;
        self.outbox.notify_one();
        self.handled.send_modify(|n| *n += 1);
        out
    }

    /// Declare the own queue of a worker that just registered (`node.<key>` or
    /// `verifier.<key>`), so that it can consume it at once: its broker user may not
    /// declare. Bounded; a failure is only logged: the worker waits for its queue, and
    /// publishing to that queue declares it first.
    pub(crate) async fn declare_worker_queue(&self, role: Role, key: &PublicKey) {
        let queue = worker_queue(role, key);
        match tokio::time::timeout(WORKER_QUEUE_TIMEOUT, (self.declare)(queue.clone())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%queue, "declaring a registered worker's queue: {e}"),
            Err(_) => {
                tracing::warn!(%queue, "declaring a registered worker's queue: no answer within {WORKER_QUEUE_TIMEOUT:?}")
            }
        }
    }

    /// [`Shared::with`] without waking the publisher: for the publisher's own reads and
    /// deletes of the outbox, which queue nothing.
    async fn with_quiet<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Service) -> T + Send + 'static,
    ) -> T {
        let svc = self.service.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&svc))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// The own queue of a worker of `role`.
fn worker_queue(role: Role, key: &PublicKey) -> String {
    match role {
        Role::Node => node_queue(key),
        Role::Verifier => verifier_queue(key),
    }
}

/// Declare what workers consume or publish to before they can ask for it: the shared
/// queues, and the own queue of every worker registered so far (the broker may have lost
/// them, or they were registered by an older coordinator).
async fn declare_topology<B: Bus>(bus: &B, shared: &Arc<Shared>) -> Result<(), DaemonError> {
    let workers = shared.with(|s| s.store().workers()).await?;
    let own = workers.iter().map(|w| worker_queue(w.role, &w.key));
    let shared_queues = [
        QUEUE_TASKS,
        QUEUE_RESULTS,
        QUEUE_VERIFY,
        QUEUE_VERDICTS,
        QUEUE_SIGNALS,
    ];
    for queue in shared_queues.into_iter().map(String::from).chain(own) {
        bus.declare(&queue).await?;
    }
    Ok(())
}

/// Run the coordinator until `shutdown` is cancelled, on RabbitMQ at `cfg.amqp_url`.
pub async fn run(cfg: DaemonConfig, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let mut amqp = AmqpConfig::new(cfg.amqp_url.clone());
    amqp.namespace = cfg.namespace.clone();
    amqp.topology = Topology::Declare;
    for q in [QUEUE_RESULTS, QUEUE_VERDICTS, QUEUE_SIGNALS] {
        amqp.prefetch.insert(q.to_string(), 64);
    }
    let bus = AmqpBus::connect(amqp).await?;
    let listener = bind(cfg.listen).await?;
    let out = run_with_bus(cfg, bus.clone(), listener, shutdown).await;
    bus.shutdown().await;
    out
}

/// Bind the API's listener.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Listen {
            addr,
            reason: e.to_string(),
        })
}

/// Run the coordinator on any bus (RabbitMQ, or in process for benchmarks and tests),
/// serving the API on `listener`, until `shutdown` is cancelled.
pub async fn run_with_bus<B: Bus>(
    cfg: DaemonConfig,
    bus: B,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    prepare_data_dir(&cfg.data_dir)?;
    if cfg.api_tokens.is_empty() {
        return Err(DaemonError::Config(
            "--api-token: at least one client API token is needed".into(),
        ));
    }
    check_grants(&cfg)?;
    warn_open_roles(&cfg);
    let key = load_or_create_key(&cfg.data_dir)?;
    let db = cfg.data_dir.join("coordinator.db");
    create_private(&db)?;
    let store = Store::open(&db)?;
    private_files(&cfg.data_dir)?;
    let svc_cfg = ServiceConfig {
        lease_ms: cfg.lease.as_millis() as u64,
        max_attempts: cfg.max_attempts,
        blocklist_after: cfg.blocklist_after,
        tile_size: cfg.tile_size,
        batch_size: cfg.batch_size,
        challenge_window_secs: cfg.challenge_window_secs,
        slash_pct: cfg.slash_pct,
        verify_timeout_ms: cfg.verify_timeout.as_millis() as u64,
        node_token: cfg.node_token.clone(),
        verifier_token: cfg.verifier_token.clone(),
        verifier_keys: cfg.verifier_keys.clone(),
        client_overdraft: cfg.client_overdraft,
        namespace: cfg.namespace.clone(),
        tolerance: cfg.tolerance,
        dispute_deposit_pct: cfg.dispute_deposit_pct,
        limits: cfg.limits,
        session_ttl_ms: cfg.session_ttl.as_millis() as u64,
        ..ServiceConfig::default()
    };
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let shared = shared_on(Service::new(store, key, svc_cfg), &bus);
    declare_topology(&bus, &shared).await?;
    let addr = listener.local_addr().ok();
    let me = shared.service.lock().await.public();
    tracing::info!(
        listen = ?addr,
        key = %me.short(),
        "coordinator up"
    );
    let tracker = tokio_util::task::TaskTracker::new();
    spawn_bus_side(&tracker, bus, &shared, cfg.reconcile_every, &shutdown);
    tracker.spawn(webhooks::run(
        shared.clone(),
        cfg.webhooks.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(collect_garbage(
        shared.clone(),
        cfg.data_dir.clone(),
        cfg.retention,
        Duration::from_secs(cfg.challenge_window_secs),
        shutdown.clone(),
    ));
    let state = http::ApiState::new(shared.clone(), &cfg);
    if let Some(metrics) = metrics_listener {
        tracing::info!(listen = ?metrics.local_addr().ok(), "metrics listener up (no token)");
        let (app, limits, stop) = (
            http::metrics_router(state.clone()),
            cfg.http.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move { http::serve(metrics, app, &limits, stop).await });
    }
    let app = http::router(state, &cfg.http);
    http::serve(listener, app, &cfg.http, shutdown.clone()).await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The state the daemon's tasks share, for `service` on `bus`.
fn shared_on<B: Bus>(service: Service, bus: &B) -> Arc<Shared> {
    let declaring = bus.clone();
    Arc::new(Shared::new(
        service,
        Box::new(move |queue| {
            let bus = declaring.clone();
            Box::pin(async move { bus.declare(&queue).await })
        }),
    ))
}

/// Start the tasks that move the service's bytes on `bus`, on `tracker`, until
/// `shutdown`: the three consumers (results, verdicts, node signals), the outbox
/// publisher and the reconciler (every `reconcile_every`). The daemon adds its HTTP API
/// and garbage collector; `tessera render` ([`crate::embedded`]) runs exactly these.
fn spawn_bus_side<B: Bus>(
    tracker: &tokio_util::task::TaskTracker,
    bus: B,
    shared: &Arc<Shared>,
    reconcile_every: Duration,
    shutdown: &CancellationToken,
) {
    tracker.spawn(consume(
        bus.clone(),
        QUEUE_RESULTS,
        shared.clone(),
        shutdown.clone(),
        |s, b, now| s.handle_result(b, now),
    ));
    tracker.spawn(consume(
        bus.clone(),
        QUEUE_VERDICTS,
        shared.clone(),
        shutdown.clone(),
        |s, b, now| s.handle_verdict(b, now),
    ));
    tracker.spawn(consume(
        bus.clone(),
        QUEUE_SIGNALS,
        shared.clone(),
        shutdown.clone(),
        |s, b, now| s.handle_signal(b, now),
    ));
    tracker.spawn(publish_outbox(bus, shared.clone(), shutdown.clone()));
    tracker.spawn(reconcile(shared.clone(), reconcile_every, shutdown.clone()));
}

/// A coordinator without the HTTP API: the [`Service`] driven over a bus by the daemon's
/// own consumers, outbox publisher and reconciler. `tessera render` runs its job on one,
/// over the in-process bus; inputs that come over HTTP in the daemon (registration,
/// credits, the submission, views) are calls to [`BusCoordinator::with`].
pub struct BusCoordinator {
    shared: Arc<Shared>,
    tracker: tokio_util::task::TaskTracker,
}

impl BusCoordinator {
    /// Declare the shared queues on `bus` and start the consumers, the outbox publisher
    /// and the reconciler (every `reconcile_every`) until `shutdown`.
    pub async fn start<B: Bus>(
        service: Service,
        bus: B,
        reconcile_every: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Self, DaemonError> {
        let shared = shared_on(service, &bus);
        declare_topology(&bus, &shared).await?;
        let tracker = tokio_util::task::TaskTracker::new();
        spawn_bus_side(&tracker, bus, &shared, reconcile_every, shutdown);
        Ok(Self { shared, tracker })
    }

    /// Run `f` on the service, off the async workers and in turn with the consumers'
    /// inputs, then wake the outbox publisher (`f` may have queued messages).
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> T + Send + 'static,
    ) -> T {
        self.shared.with(f).await
    }

    /// Run `f` on the service, in turn with the inputs, for reading only: the publisher
    /// is not woken and [`BusCoordinator::handled`] does not change.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> T + Send + 'static,
    ) -> T {
        self.shared.with_quiet(f).await
    }

    /// A receiver that sees a change after each input the service handled (a result,
    /// verdict, signal or reconciler pass, or a call of [`BusCoordinator::with`]).
    pub fn handled(&self) -> watch::Receiver<u64> {
        self.shared.handled.subscribe()
    }

    /// Wait until every task stopped (after `shutdown` was cancelled).
    pub async fn stopped(self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Create the data folder (and its `blobs`, `scenes` and `exports`) readable by the
/// coordinator's user only (0700): it holds unrevealed sampling nonces, session hashes
/// and every client's scenes. Temporary scene folders a crash left behind are removed.
fn prepare_data_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let data_err = |path: &Path, e: std::io::Error| DaemonError::Data {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    for sub in ["", "blobs", "scenes", "exports"] {
        let path = dir.join(sub);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| data_err(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| data_err(&path, e))?;
    }
    let scenes = dir.join("scenes");
    for entry in std::fs::read_dir(&scenes).map_err(|e| data_err(&scenes, e))? {
        // Scenes are only laid out while a submission is inspected.
        remove_entry(&entry.map_err(|e| data_err(&scenes, e))?.path());
    }
    Ok(())
}

/// Create `path` empty with mode 0600 when it is missing, so that SQLite opens a private
/// file from the first moment (it gives its -wal and -shm files the database's mode):
/// the API may answer before [`private_files`] runs.
fn create_private(path: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| DaemonError::Data {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Make the store's files (and the key) readable by the coordinator's user only (0600),
/// also those an older version created.
fn private_files(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    for name in [
        "coordinator.db",
        "coordinator.db-wal",
        "coordinator.db-shm",
        "coordinator.key",
    ] {
        let path = dir.join(name);
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DaemonError::Data {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// How often garbage is collected.
const GC_EVERY: Duration = Duration::from_secs(600);

/// Collect what no job needs any more, every [`GC_EVERY`] (and at start): blobs not
/// used for `retention` and listed by no job that is running or ended less than
/// `challenge_window + retention` ago (it may still be disputed and rendered again), the
/// dashboard's event log of jobs that ended before that, and exported bundles and frames
/// older than `retention` (they are exported again on request). A blob's record and file go together under the service lock, so an upload
/// or submission in progress never loses a file it just stored or checked.
async fn collect_garbage(
    shared: Arc<Shared>,
    data_dir: PathBuf,
    retention: Duration,
    challenge_window: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let now = now_ms();
        let unused_before = now.saturating_sub(retention.as_millis() as u64);
        let ended_after = now.saturating_sub((retention + challenge_window).as_millis() as u64);
        let blobs = data_dir.join("blobs");
        let collected = shared
            .with_quiet(
                move |s| -> Result<(usize, usize), crate::store::StoreError> {
                    let gone = s.store().collect_blobs(unused_before, ended_after)?;
                    for hash in &gone {
                        let _ = std::fs::remove_file(blobs.join(hash));
                    }
                    let events = s.store().prune_events(ended_after)?;
                    Ok((gone.len(), events))
                },
            )
            .await;
        match collected {
            Ok((0, 0)) => {}
            Ok((blobs, events)) => tracing::info!(blobs, events, "garbage collected"),
            Err(e) => tracing::warn!("garbage collection: {e}"),
        }
        let exports = data_dir.join("exports");
        let _ = tokio::task::spawn_blocking(move || remove_older(&exports, retention)).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(GC_EVERY) => {}
        }
    }
}

/// Remove the entries of `dir` last modified more than `age` ago.
fn remove_older(dir: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e > age);
        if old {
            remove_entry(&entry.path());
        }
    }
}

/// Remove a folder with what it holds, or a file (best effort: what cannot be removed
/// now is tried again next time).
fn remove_entry(path: &Path) {
    let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
}

/// Consume one queue: handle each delivery in the service, ack once its effect is
/// committed, park what is refused (with the reason logged), and give back (requeue)
/// what failed for a passing reason such as a busy store.
async fn consume<B: Bus>(
    bus: B,
    queue: &'static str,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    handle: fn(&Service, &[u8], u64) -> Result<Handled, service::ServiceError>,
) {
    loop {
        let d = tokio::select! {
            () = shutdown.cancelled() => return,
            d = bus.next(queue) => match d { Some(d) => d, None => return },
        };
        let body = d.body.clone();
        let outcome = shared.with(move |s| handle(s, &body, now_ms())).await;
        let acked = match outcome {
            Ok(Handled::Done) => bus.ack(&d).await,
            Ok(Handled::Refused(reason)) => {
                tracing::warn!(queue, message = %d.message_id, "parked: {reason}");
                bus.nack(&d, false).await
            }
            Ok(Handled::Superseded(reason)) => {
                tracing::info!(queue, message = %d.message_id, "superseded, dropped: {reason}");
                bus.ack(&d).await
            }
            Err(e) => {
                tracing::error!(queue, message = %d.message_id, "handling failed, message requeued: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                bus.nack(&d, true).await
            }
        };
        if let Err(e) = acked {
            tracing::warn!(queue, message = %d.message_id, "ack/nack failed (the broker redelivers it): {e}");
        }
    }
}

/// Outbox rows taken per pass. Small, because the publisher re-reads the outbox between
/// passes and verification traffic goes first: a verify request queued behind a large
/// submission waits at most one pass (a few tens of milliseconds), not the whole burst.
const OUTBOX_BATCH: u32 = 32;

/// How long an idle publisher waits without a notification before it reads the outbox
/// again anyway.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// The shared task queue is kept at most twice as deep as the registered nodes have
/// render slots, and never shallower than this: the farm's queued work waits in the
/// outbox, where the jobs' priorities order it, a pause or cancel withdraws it, and a new
/// high-priority job goes ahead of it.
const MIN_TASK_DEPTH: u64 = 4;

/// How many more tasks the shared queue takes now (unbounded when the bus cannot count).
async fn task_room<B: Bus>(bus: &B, shared: &Arc<Shared>) -> u64 {
    let slots = shared.with_quiet(|s| s.node_slots()).await.unwrap_or(0);
    let depth = slots.saturating_mul(2).max(MIN_TASK_DEPTH);
    match bus.ready(QUEUE_TASKS).await {
        Ok(Some(ready)) => depth.saturating_sub(ready),
        Ok(None) => u64::MAX,
        Err(e) => {
            tracing::warn!("counting the task queue: {e}");
            u64::MAX
        }
    }
}

/// Publish the outbox in order, with confirms; delete rows only after their confirm.
/// Tasks for the shared queue go out only while it has room ([`MIN_TASK_DEPTH`]).
async fn publish_outbox<B: Bus>(bus: B, shared: Arc<Shared>, shutdown: CancellationToken) {
    let exit_before = std::env::var("TESSERA_FAULT_EXIT_BEFORE_PUBLISH").ok();
    let mut backoff = Duration::from_millis(20);
    loop {
        shared.outbox_passes.send_modify(|n| *n += 1);
        let rows = shared
            .with_quiet(|s| s.store().outbox(OUTBOX_BATCH))
            .await
            .unwrap_or_else(|e| {
                tracing::error!("reading the outbox: {e}");
                Vec::new()
            });
        if rows.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.outbox.notified() => {},
                () = tokio::time::sleep(IDLE_WAIT) => {},
            }
            continue;
        }
        let (rows, mut room) = if rows.iter().any(|r| r.queue == QUEUE_TASKS) {
            // Count the room first, then read the rows again: what this pass sends is
            // the outbox as it is now (a priority just raised, a job just paused), not
            // as it was before the count.
            let room = task_room(&bus, &shared).await;
            let rows = shared
                .with_quiet(|s| s.store().outbox(OUTBOX_BATCH))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!("reading the outbox: {e}");
                    Vec::new()
                });
            (rows, room)
        } else {
            (rows, u64::MAX)
        };
        let mut sent = Vec::new();
        let mut held = false;
        for row in &rows {
            if row.queue == QUEUE_TASKS {
                // Shared-queue tasks come last: the rest of the pass waits with this one.
                if room == 0 {
                    held = true;
                    break;
                }
                room -= 1;
            }
            if exit_before.as_deref() == Some(row.queue.as_str()) {
                tracing::error!(queue = %row.queue, "fault hook: exiting between commit and publish");
                std::process::exit(77);
            }
            match bus
                .publish(&row.queue, &row.message_id, row.body.clone())
                .await
            {
                Ok(()) => sent.push(row.seq),
                Err(e) => {
                    tracing::error!(queue = %row.queue, message = %row.message_id, "publish failed, will retry: {e}");
                    break;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        if !sent.is_empty() {
            backoff = Duration::from_millis(20);
            if let Err(e) = shared
                .with_quiet(move |s| s.store().delete_outbox(&sent))
                .await
            {
                tracing::error!("trimming the outbox: {e}");
            }
        } else if held {
            // The shared queue is full: a handled input (a result frees a slot) or the
            // idle wait ends the wait, and the next pass counts it again.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.outbox.notified() => {},
                () = tokio::time::sleep(IDLE_WAIT) => {},
            }
        } else {
            // Nothing went out (no broker, or it refused): retry soon, backing off to 1 s.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// Run the reconciler every `every`.
async fn reconcile(shared: Arc<Shared>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {},
        }
        if let Err(e) = shared.with(|s| s.reconcile(now_ms())).await {
            tracing::error!("reconciler: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_bus::InProcessBus;

    fn shared(dir: &tempfile::TempDir) -> Arc<Shared> {
        let store = Store::open(&dir.path().join("coordinator.db")).unwrap();
        let service = Service::new(store, SecretKey::generate(), ServiceConfig::default());
        Arc::new(Shared::new(
            service,
            Box::new(|_| Box::pin(async { Ok(()) })),
        ))
    }

    /// An idle coordinator's publisher sleeps between wake-ups: over a minute of virtual
    /// time with an empty outbox it reads the outbox once per reconciler pass (each one
    /// notifies it) and once per fallback timeout (about 180 times; the bound allows 240),
    /// never in a loop that wakes itself. The count, not the clock, is checked: paused
    /// time moves only while every task waits, so a publisher that never waits stops the
    /// clock, and the watcher below ends the test once the count has passed the bound.
    #[tokio::test(start_paused = true)]
    async fn an_idle_publisher_waits_for_work() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(&dir);
        let shutdown = CancellationToken::new();
        let every = Duration::from_secs(1);
        let tracker = tokio_util::task::TaskTracker::new();
        tracker.spawn(publish_outbox(
            InProcessBus::new(),
            shared.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(reconcile(shared.clone(), every, shutdown.clone()));
        let minute = Duration::from_secs(60);
        let wake_ups =
            minute.as_millis() / every.as_millis() + minute.as_millis() / IDLE_WAIT.as_millis();
        let bound = (wake_ups * 4 / 3) as u64;
        let mut passes = shared.outbox_passes.subscribe();
        let runaway = async {
            while *passes.borrow_and_update() <= bound {
                passes.changed().await.unwrap();
            }
        };
        tokio::select! {
            () = tokio::time::sleep(minute) => {},
            () = runaway => {},
        }
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        let n = *shared.outbox_passes.borrow();
        assert!(
            n <= bound,
            "the publisher read an empty outbox more than {bound} times in a minute: it wakes itself"
        );
        assert!(n > 1, "the publisher never woke again ({n} passes)");
    }

    /// A message committed while the publisher waits goes out at once: the commit wakes
    /// it, and no (virtual) time passes before the publication, so it never waits for its
    /// fallback timeout.
    #[tokio::test(start_paused = true)]
    async fn a_message_committed_to_an_idle_outbox_is_published_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(&dir);
        let shutdown = CancellationToken::new();
        let bus = InProcessBus::new();
        let publisher = tokio::spawn(publish_outbox(
            bus.clone(),
            shared.clone(),
            shutdown.clone(),
        ));
        // The publisher finds the outbox empty and waits.
        tokio::time::sleep(IDLE_WAIT / 4).await;
        let committed = tokio::time::Instant::now();
        shared
            .with(|s| s.store().push_outbox("tasks", "m1", b"task", None, 0))
            .await
            .unwrap();
        let d = bus.next("tasks").await.unwrap();
        assert_eq!(d.message_id, "m1");
        assert_eq!(
            tokio::time::Instant::now() - committed,
            Duration::ZERO,
            "the publisher slept on a committed message"
        );
        shutdown.cancel();
        publisher.await.unwrap();
    }
}
