//! The daemon subcommands: `coordinator`, `node` and `verifier`. Each turns its flags into
//! the daemon crate's config, opens what it needs (key, GPU), connects RabbitMQ and runs
//! until SIGINT or SIGTERM cancels its token (a second signal exits at once, status 130).

use crate::farm::{print_config, required, secret, usage, usage_error};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tessera_api::flags::{check_coordinator_url, secret_lines};
use tessera_api::secrets::redact_url;
use tessera_coordinator::settings::{
    check_config, client_token_list, default_data_dir, parse_listen, parse_verifier_keys,
    read_tolerance, DaemonSettings,
};
use tessera_node::broker::{node_prefetch, passive_connect, verifier_prefetch};
use tessera_node::settings::{
    check_amqp_url, check_slots, default_cache_dir, heartbeat_ms, WorkerSettings,
};
use tessera_node::worker::{RendererFactory, StubFactory};
use tessera_node::DishonestMode;
use tessera_protocol::keys::SecretKey;
use tokio_util::sync::CancellationToken;

/// Read a key file written by `tessera keygen`.
fn read_key(path: &Path) -> Result<SecretKey> {
    match tessera_node::keyfile::read_key_file(path) {
        Err(e) if e.is_not_found() => usage!(
            "--key {}: no such file (create one with `tessera keygen -o {}`)",
            path.display(),
            path.display()
        ),
        r => Ok(r?),
    }
}

/// The `--amqp` flag of every daemon.
#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// RabbitMQ URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    #[arg(long, env = "TESSERA_AMQP", value_name = "URL", hide_env_values = true)]
    pub amqp: Option<String>,
}

impl BrokerArgs {
    /// The broker URL: required, and an `amqp://` or `amqps://` one.
    fn url(&self) -> Result<String> {
        let url = required(&self.amqp, "amqp", "TESSERA_AMQP")?;
        check_amqp_url(&url).map_err(usage_error)?;
        Ok(url)
    }
}

/// The address of a daemon's `--metrics-addr`, checked.
fn metrics_addr(given: &Option<String>) -> Result<Option<std::net::SocketAddr>> {
    given
        .as_deref()
        .map(|a| tessera_node::settings::parse_metrics_addr(a).map_err(usage_error))
        .transpose()
}

/// A multi-threaded runtime, with SIGINT/SIGTERM cancelling `token`.
fn run_daemon<F>(what: &str, body: impl FnOnce(CancellationToken) -> F) -> Result<bool>
where
    F: std::future::Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let what = what.to_string();
    runtime.block_on(async move {
        let token = CancellationToken::new();
        let signals = token.clone();
        let name = what.clone();
        tokio::spawn(async move {
            if wait_for_signal().await.is_err() {
                return;
            }
            tracing::info!("{name}: signal received, stopping (again to exit at once)");
            signals.cancel();
            if wait_for_signal().await.is_ok() {
                tracing::warn!("{name}: second signal, exiting now");
                std::process::exit(130);
            }
        });
        body(token).await?;
        tracing::info!("{what} stopped");
        Ok(true)
    })
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

// ---------------------------------------------------------------------------------------
// node and verifier
// ---------------------------------------------------------------------------------------

/// Flags shared by the node and verifier daemons.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Coordinator URL, e.g. `http://127.0.0.1:8700`.
    #[arg(long, env = "TESSERA_COORDINATOR", value_name = "URL")]
    pub coordinator: Option<String>,
    /// Key file (its identity; `tessera keygen -o FILE` makes one).
    #[arg(long, env = "TESSERA_KEY", value_name = "KEYFILE")]
    pub key: Option<PathBuf>,
    /// The farm's worker token, when the coordinator requires one.
    #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the worker token (keeps it out of `ps`).
    #[arg(long, env = "TESSERA_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Display name (default: `node-` or `verifier-` and the key's first 12 hex digits).
    #[arg(long, env = "TESSERA_NAME")]
    pub name: Option<String>,
    /// Scene cache folder (default: `$XDG_CACHE_HOME/tessera/scenes` or
    /// `~/.cache/tessera/scenes`).
    #[arg(long, env = "TESSERA_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Tasks (node) or verify requests (verifier) handled at once.
    #[arg(long, env = "TESSERA_SLOTS", default_value_t = 1)]
    pub slots: u32,
    /// Serve Prometheus metrics at `http://HOST:PORT/metrics`, without a token (bind it to
    /// a private scrape network).
    #[arg(long, env = "TESSERA_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Test only: render with the CPU stand-in (hash) renderer instead of the GPU.
    #[arg(long, hide = true)]
    pub stub_renderer: bool,
    /// Test only: the stand-in renderer sleeps this long per tile.
    #[arg(long, hide = true, default_value_t = 0, value_name = "MS")]
    pub stub_delay_ms: u64,
}

struct Worker {
    settings: WorkerSettings,
    amqp: String,
    key: SecretKey,
}

impl WorkerArgs {
    fn resolve(&self, role: &'static str) -> Result<Worker> {
        let amqp = self.broker.url()?;
        let coordinator = required(&self.coordinator, "coordinator", "TESSERA_COORDINATOR")?;
        check_coordinator_url(&coordinator).map_err(usage_error)?;
        let key_file = required(&self.key, "key", "TESSERA_KEY")?;
        let key = read_key(&key_file)?;
        let public = key.public();
        check_slots(self.slots).map_err(usage_error)?;
        Ok(Worker {
            settings: WorkerSettings {
                role,
                amqp: redact_url(&amqp),
                coordinator,
                key_file,
                public_key: public.to_string(),
                token: secret("token", &self.token, &self.token_file)?,
                name: self
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{role}-{}", public.short())),
                cache: self.cache.clone().unwrap_or_else(default_cache_dir),
                slots: self.slots,
                renderer: if self.stub_renderer { "stub" } else { "gpu" },
                stub_delay_ms: self.stub_delay_ms,
                heartbeat_ms: None,
                dishonest: None,
                metrics_addr: metrics_addr(&self.metrics_addr)?,
            },
            amqp,
            key,
        })
    }

    fn factory(&self) -> Result<Arc<dyn RendererFactory>> {
        Ok(if self.stub_renderer {
            Arc::new(StubFactory {
                delay_per_tile: Duration::from_millis(self.stub_delay_ms),
            })
        } else {
            Arc::new(crate::gpu_factory::GpuFactory::new()?)
        })
    }
}

/// `tessera node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Milliseconds between lease heartbeats.
    #[arg(long, env = "TESSERA_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Drill only: cheat this way (low-spp, noise, black, copy, partial).
    #[arg(long, hide = true)]
    pub dishonest: Option<DishonestMode>,
}

/// `tessera node`: register, then render tasks until a signal.
pub fn node(args: NodeArgs, print: bool) -> Result<bool> {
    let mut w = args.worker.resolve("node")?;
    w.settings.heartbeat_ms = Some(heartbeat_ms(args.heartbeat_ms).map_err(usage_error)?);
    w.settings.dishonest = args.dishonest.map(|m| m.name().to_string());
    if print_config(print, &w.settings)? {
        return Ok(true);
    }
    let factory = args.worker.factory()?;
    let me = w.key.public();
    let slots = w.settings.slots as u16;
    let prefetch = node_prefetch(&me, slots);
    let cfg = w.settings.node_config(w.key, args.dishonest);
    let url = w.amqp;
    run_daemon("node", move |token| async move {
        tessera_node::daemon::run_node(cfg, passive_connect(url, prefetch), factory, token).await?;
        Ok(())
    })
}

/// `tessera verifier`.
#[derive(Args, Debug)]
pub struct VerifierArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// `tessera verifier`: register, then judge sampled tiles until a signal.
pub fn verifier(args: VerifierArgs, print: bool) -> Result<bool> {
    let w = args.worker.resolve("verifier")?;
    if print_config(print, &w.settings)? {
        return Ok(true);
    }
    let factory = args.worker.factory()?;
    let s = w.settings;
    let prefetch = verifier_prefetch(s.slots as u16);
    let cfg = tessera_verifier::daemon::VerifierDaemonConfig {
        coordinator: s.coordinator,
        token: s.token,
        key: w.key,
        name: s.name,
        slots: s.slots,
        cache_dir: s.cache,
        metrics_listen: s.metrics_addr,
    };
    let url = w.amqp;
    run_daemon("verifier", move |token| async move {
        tessera_verifier::daemon::run_verifier(cfg, passive_connect(url, prefetch), factory, token)
            .await?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// coordinator
// ---------------------------------------------------------------------------------------

/// `tessera coordinator`.
#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Address of the HTTP API (default 127.0.0.1:8700).
    #[arg(long, env = "TESSERA_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Also serve Prometheus metrics at `http://HOST:PORT/metrics` without a token (bind it
    /// to a private scrape network); the API serves `/metrics` behind the admin token
    /// either way.
    #[arg(long, env = "TESSERA_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Data directory (SQLite store, keys, blobs; default `~/.local/share/tessera`).
    #[arg(long, env = "TESSERA_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Client API token, `TOKEN` or `CLIENT=TOKEN` (the client name is its ledger
    /// account); repeat for several, or separate them with commas.
    #[arg(
        long = "api-token",
        env = "TESSERA_API_TOKEN",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub api_tokens: Vec<String>,
    /// File of client API tokens, one `CLIENT=TOKEN` (or `TOKEN`) per line, `#` comments
    /// (keeps them out of `ps` and the environment); adds to --api-token.
    #[arg(long, env = "TESSERA_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Token that nodes must present to register (default: none, and the coordinator
    /// warns that any key may register as a node). At least 16 characters.
    #[arg(
        long,
        alias = "worker-token",
        env = "TESSERA_NODE_TOKEN",
        hide_env_values = true
    )]
    pub node_token: Option<String>,
    /// File whose first line is the node token.
    #[arg(long, env = "TESSERA_NODE_TOKEN_FILE", value_name = "FILE")]
    pub node_token_file: Option<PathBuf>,
    /// Token that grants the verifier role at registration. Verifiers are granted, never
    /// claimed: without this or --verifier-key no key can become a verifier.
    #[arg(long, env = "TESSERA_VERIFIER_TOKEN", hide_env_values = true)]
    pub verifier_token: Option<String>,
    /// File whose first line is the verifier token.
    #[arg(long, env = "TESSERA_VERIFIER_TOKEN_FILE", value_name = "FILE")]
    pub verifier_token_file: Option<PathBuf>,
    /// A verifier's public key (64 hex) granted the verifier role; repeat for several, or
    /// separate them with commas.
    #[arg(
        long = "verifier-key",
        env = "TESSERA_VERIFIER_KEYS",
        value_delimiter = ',',
        value_name = "HEX"
    )]
    pub verifier_keys: Vec<String>,
    /// Operator token for crediting client balances and node stakes (`tessera credit`);
    /// without it nothing can be credited over the API.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File whose first line is the admin token.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// How many micro-credits a client's balance may fall short of a job's escrow
    /// (default 0: a job must be paid for before it is dispatched).
    #[arg(long, value_name = "MICRO_CREDITS")]
    pub client_overdraft: Option<u64>,
    /// Prefix of every queue name on the broker.
    #[arg(long, env = "TESSERA_NAMESPACE")]
    pub namespace: Option<String>,
    /// Seconds a node holds a task without a heartbeat before it is requeued.
    #[arg(long, value_name = "SECS")]
    pub lease_secs: Option<u64>,
    /// Seconds between passes of the reconciler (expired leases, lost messages).
    #[arg(long, value_name = "SECS")]
    pub reconcile_secs: Option<u64>,
    /// Deliveries of a task before its job fails.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Failed tasks of one node on one job before it is blocked on that job.
    #[arg(long)]
    pub blocklist_after: Option<u32>,
    /// Default tile edge in pixels (a submission may set its own).
    #[arg(long)]
    pub tile_size: Option<u32>,
    /// Default tiles per task (a submission may set its own).
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Seconds after a job ends during which its client may dispute it; hold-backs are
    /// released when it closes (default 86400, a day; 0 releases them at once and
    /// allows no disputes).
    #[arg(long, value_name = "SECS")]
    pub challenge_window: Option<u64>,
    /// Percentage of a node's stake slashed on a failed verification.
    #[arg(long)]
    pub slash_pct: Option<u32>,
    /// Largest scene file accepted, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_blob_bytes: Option<u64>,
    /// The tolerance thresholds that judge re-renders of another determinism class: a
    /// TOML or JSON file with the fields of `Tolerance` (docs/CALIBRATION.md; the
    /// `thresholds` object that `tessera calibrate --json` prints). Default: the
    /// calibrated defaults.
    #[arg(long, value_name = "FILE")]
    pub tolerance: Option<PathBuf>,
    /// Deliver clients' webhooks to internal addresses too (loopback, private and
    /// link-local networks), for receivers on the farm's own network. Off by default, so
    /// that a client's webhook cannot make the coordinator reach into its network.
    #[arg(long)]
    pub webhook_allow_internal: bool,
    /// A PEM file of root certificates trusted for https webhook receivers besides the
    /// system's (a studio's own certificate authority).
    #[arg(long, value_name = "FILE")]
    pub webhook_ca: Option<PathBuf>,
    /// A client's deposit to dispute a job, percent of the job's price.
    #[arg(long)]
    pub dispute_deposit_pct: Option<u32>,
    /// Seconds before an unanswered verify request is published again.
    #[arg(long, value_name = "SECS")]
    pub verify_timeout_secs: Option<u64>,
    /// Seconds a request's headers may take (also how long an idle connection stays
    /// open; default 10).
    #[arg(long, value_name = "SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Longest pause, in seconds, between two pieces of a request body (default 30).
    #[arg(long, value_name = "SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Connections served at once; more are closed (default 1024).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Blob uploads in progress at once, in total (default 16); more get 429.
    #[arg(long)]
    pub max_uploads: Option<usize>,
    /// Blob uploads in progress at once per client (default 4); more get 429.
    #[arg(long)]
    pub max_uploads_per_client: Option<usize>,
    /// Tasks one job may create (default 20000).
    #[arg(long)]
    pub max_job_tasks: Option<u64>,
    /// Tiles one job may have, over all its frames (default 2000000).
    #[arg(long)]
    pub max_job_tiles: Option<u64>,
    /// Jobs of one client that may be unfinished at once (default 64).
    #[arg(long)]
    pub max_client_jobs: Option<u64>,
    /// Bytes of scene files one client may have stored (default 64 GiB).
    #[arg(long, value_name = "BYTES")]
    pub max_client_bytes: Option<u64>,
    /// Seconds a worker's session lasts without being heard from (default 86400).
    #[arg(long, value_name = "SECS")]
    pub session_ttl_secs: Option<u64>,
    /// Seconds scene files no job needs are kept after their last use before they are
    /// collected (default 604800, a week; finished jobs keep theirs for the challenge
    /// window plus this).
    #[arg(long, value_name = "SECS")]
    pub retention_secs: Option<u64>,
}

/// The coordinator's check of a submitted scene: the renderer's inspection, which runs
/// every structural check and charges the whole budget (decoded texture bytes,
/// environment pixels, vertices, primitives, triangles) from headers and accessor counts,
/// and hashes the files, without decoding anything.
pub(crate) fn scene_inspector() -> tessera_coordinator::daemon::SceneInspector {
    use tessera_coordinator::daemon::InspectedScene;
    use tessera_renderer::{LoadOptions, Scene};
    Arc::new(|entry: &Path| {
        Scene::inspect(entry, &LoadOptions::default())
            .map(|info| InspectedScene {
                content_hash: info.content_hash,
                cameras: info.cameras,
            })
            .map_err(Into::into)
    })
}

/// `tessera coordinator`: serve the API and drive jobs until a signal.
pub fn coordinator(a: CoordinatorArgs, print: bool) -> Result<bool> {
    use tessera_coordinator::daemon::DaemonConfig;
    let amqp_url = a.broker.url()?;
    let d = DaemonConfig::default();
    let listen = match &a.listen {
        None => d.listen,
        Some(l) => parse_listen(l).map_err(usage_error)?,
    };
    let from_file = match &a.api_token_file {
        Some(file) => secret_lines("api-token", file).map_err(usage_error)?,
        None => Vec::new(),
    };
    let api_tokens = client_token_list(&a.api_tokens, from_file).map_err(usage_error)?;
    let inspector = scene_inspector();
    let verifier_keys = parse_verifier_keys(&a.verifier_keys).map_err(usage_error)?;
    let cfg = DaemonConfig {
        amqp_url,
        listen,
        metrics_listen: metrics_addr(&a.metrics_addr)?,
        data_dir: a.data.clone().unwrap_or_else(default_data_dir),
        api_tokens,
        node_token: secret("node-token", &a.node_token, &a.node_token_file)?,
        verifier_token: secret("verifier-token", &a.verifier_token, &a.verifier_token_file)?,
        verifier_keys,
        admin_token: secret("admin-token", &a.admin_token, &a.admin_token_file)?,
        client_overdraft: a.client_overdraft.unwrap_or(d.client_overdraft),
        lease: a.lease_secs.map_or(d.lease, Duration::from_secs),
        reconcile_every: a
            .reconcile_secs
            .map_or(d.reconcile_every, Duration::from_secs),
        max_attempts: a.max_attempts.unwrap_or(d.max_attempts),
        blocklist_after: a.blocklist_after.unwrap_or(d.blocklist_after),
        tile_size: a.tile_size.unwrap_or(d.tile_size),
        batch_size: a.batch_size.unwrap_or(d.batch_size),
        challenge_window_secs: a.challenge_window.unwrap_or(d.challenge_window_secs),
        slash_pct: a.slash_pct.unwrap_or(d.slash_pct),
        max_blob_bytes: a.max_blob_bytes.unwrap_or(d.max_blob_bytes),
        namespace: a.namespace.clone().unwrap_or(d.namespace),
        verify_timeout: a
            .verify_timeout_secs
            .map_or(d.verify_timeout, Duration::from_secs),
        scene_inspector: Some(inspector),
        tolerance: match &a.tolerance {
            Some(path) => read_tolerance(path)?,
            None => d.tolerance,
        },
        dispute_deposit_pct: a.dispute_deposit_pct.unwrap_or(d.dispute_deposit_pct),
        http: tessera_coordinator::daemon::http::HttpLimits {
            header_timeout: a
                .header_timeout_secs
                .map_or(d.http.header_timeout, Duration::from_secs),
            body_timeout: a
                .body_timeout_secs
                .map_or(d.http.body_timeout, Duration::from_secs),
            max_connections: a.max_connections.unwrap_or(d.http.max_connections),
            max_uploads: a.max_uploads.unwrap_or(d.http.max_uploads),
            max_uploads_per_client: a
                .max_uploads_per_client
                .unwrap_or(d.http.max_uploads_per_client),
        },
        limits: tessera_coordinator::daemon::service::Limits {
            max_job_tasks: a.max_job_tasks.unwrap_or(d.limits.max_job_tasks),
            max_job_tiles: a.max_job_tiles.unwrap_or(d.limits.max_job_tiles),
            max_client_jobs: a.max_client_jobs.unwrap_or(d.limits.max_client_jobs),
            max_client_bytes: a.max_client_bytes.unwrap_or(d.limits.max_client_bytes),
        },
        session_ttl: a
            .session_ttl_secs
            .map_or(d.session_ttl, Duration::from_secs),
        retention: a.retention_secs.map_or(d.retention, Duration::from_secs),
        webhooks: tessera_coordinator::daemon::webhooks::WebhookConfig {
            allow_internal: a.webhook_allow_internal || d.webhooks.allow_internal,
            extra_roots_pem: match &a.webhook_ca {
                Some(path) => vec![tessera_coordinator::daemon::webhooks::read_root_pem(path)
                    .map_err(usage_error)?],
                None => d.webhooks.extra_roots_pem.clone(),
            },
            ..d.webhooks.clone()
        },
    };
    check_config(&cfg).map_err(usage_error)?;
    let settings = DaemonSettings::new(&cfg);
    if print_config(print, &settings)? {
        return Ok(true);
    }
    run_daemon("coordinator", move |token| async move {
        tessera_coordinator::daemon::run(cfg, token).await?;
        Ok(())
    })
}
