//! `tessera render`: the farm in one process. The coordinator is the daemon's
//! [`Service`] over a private SQLite store, driven by the daemon's own consumers, outbox
//! publisher and reconciler ([`BusCoordinator`]); the nodes are the node daemon's
//! [`NodeState`]s and the verifier the verifier daemon's [`VerifierState`], all on one
//! [`InProcessBus`]. Nothing here sequences a job: this module only sets the farm up
//! (workers registered with signed challenges as over the API, stakes, the client's
//! credit line), submits the job, waits for the service to end it, and reads the result
//! back (bundle, frames, per-node reports).
//!
//! What differs from the daemons is policy, in [`local_service_config`]: no HTTP, leases
//! and verify timeouts sized for one machine, no queue timeout (a long local queue is
//! not a lost message), local nodes admitted to any tier, and the client may overdraw
//! (the operator is the client). And one rule of a single machine: nobody can dispute a
//! `render` job (there is no API), so when its challenge window is above 0 the window is
//! closed as soon as the job is done, by running the daemon's reconciler at the job's
//! release time ([`Service::reconcile`]), which releases the hold-backs and signs the
//! receipt again, exactly as the farm does when a window ends.

use crate::bus::InProcessBus;
use crate::daemon::service::{
    frame_of_bundle, Limits, Service, ServiceConfig, ServiceError, Submission, MAX_CREDIT,
};
use crate::daemon::{BusCoordinator, DaemonError};
use crate::machine::{JobState, Progress};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_node::daemon::{NodeState, DEFAULT_HEARTBEAT};
use tessera_node::worker::{copy_key, software_version, LoadError, RendererFactory, SceneSource};
use tessera_node::DishonestMode;
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{account, SamplingPolicy, Transfer, TransferKind};
use tessera_protocol::statements::{Decision, Registration, Role, Signed};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::wire::{Capabilities, Requirements};
use tessera_protocol::{Digest, RenderSettings, TileRenderer};
use tessera_verifier::daemon::VerifierState;
use tokio_util::sync::CancellationToken;

/// Everything `tessera render` decides about its job before running.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Paying client account name.
    pub client: String,
    /// Scene file name.
    pub scene_name: String,
    /// Scene content hash.
    pub scene_hash: Digest,
    /// Where the scene file is (recorded unsigned in the bundle for `audit --rerender`).
    pub scene_hint: Option<String>,
    /// Render settings.
    pub settings: RenderSettings,
    /// First frame.
    pub frame_start: u32,
    /// Last frame (inclusive).
    pub frame_end: u32,
    /// Tile edge.
    pub tile_size: u32,
    /// Tiles per batch (per task).
    pub batch_size: u32,
    /// Tier name (`economy`, `priority`, `trusted`).
    pub tier: String,
    /// Sampling policy.
    pub sampling: SamplingPolicy,
    /// Stake slashed on failure, %.
    pub slash_pct: u32,
    /// Challenge window signed into the manifest. `render` closes it when the job is
    /// done (see the module doc); 0 releases hold-backs as the job finishes.
    pub challenge_window_secs: u64,
    /// Stake each local node deposits (its store starts empty).
    pub node_stake: u64,
    /// How re-renders of another class are judged.
    pub tolerance: Tolerance,
    /// Deposit to dispute the job, % of its price.
    pub dispute_deposit_pct: u32,
    /// The job fails when nothing about it moves for this long (no tile rendered, no
    /// round fixed or verified); also how long the verifier may take with one request
    /// before it is asked again.
    pub message_timeout: Duration,
}

/// Pipeline failures.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The coordinator's service refused or failed an input.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The coordinator could not start.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// Nothing moved in time.
    #[error("job {job}: nothing moved for {secs} s (state {state}); gave up")]
    Timeout {
        /// Job id.
        job: String,
        /// Seconds waited.
        secs: u64,
        /// The job's state then.
        state: String,
    },
    /// The coordinator failed the job (its escrow refunded, hold-backs of verified work
    /// released, as the farm does).
    #[error("job {job} failed: {reason}; the client's escrow was refunded and the hold-backs of verified work released")]
    Failed {
        /// Job id.
        job: String,
        /// Why, as the coordinator recorded it.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// What happened to one node in one round.
#[derive(Clone, Debug)]
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// Node key.
    pub key: PublicKey,
    /// Round.
    pub round: u32,
    /// Tiles it committed in the round.
    pub tiles: u32,
    /// Blocks re-rendered by the verifier (in its final check).
    pub sampled: u32,
    /// Pixels it committed in the round.
    pub pixels: u64,
    /// Pixels of the blocks re-rendered in its final check.
    pub sampled_pixels: u64,
    /// The verdict.
    pub decision: Decision,
    /// Paid now (micro-credits).
    pub paid: u64,
    /// Held back.
    pub held: u64,
    /// Slashed.
    pub slashed: u64,
}

/// The finished job.
pub struct JobOutcome {
    /// Job id (hex).
    pub job_id: String,
    /// The proof bundle.
    pub bundle: ProofBundle,
    /// Per frame: canonical RGBA16F bytes of the whole frame.
    pub frames: Vec<(u32, Vec<u8>)>,
    /// Per round and node (in key order), from the bundle's final verdicts and receipt.
    pub reports: Vec<NodeReport>,
    /// Time spent in the nodes' and the verifier's renderers (filled by
    /// `local::LocalFarm`, which wraps them; zero otherwise).
    pub times: RenderTimes,
}

/// Wall time spent rendering for the nodes and re-rendering for the verifier.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RenderTimes {
    /// Seconds in the nodes' renderers.
    pub rendering: f64,
    /// Seconds in the verifier's renderer.
    pub verifying: f64,
}

pub use tessera_protocol::bundle::Work;

impl JobOutcome {
    /// Every transfer of the job: the bundle's signed receipt.
    pub fn transfers(&self) -> &[Transfer] {
        &self.bundle.payments.statement.transfers
    }
}

/// One local renderer node.
pub struct LocalNode {
    /// Name it registers with (letters, digits, spaces, `.`, `_`, `-`).
    pub name: String,
    /// Its signing key.
    pub key: SecretKey,
    /// What renders its tiles (shared with the verifier in `tessera render`).
    pub renderer: Arc<dyn TileRenderer>,
    /// Drill only: how it cheats.
    pub dishonest: Option<DishonestMode>,
}

impl LocalNode {
    /// The name reports show: the registered name, and for a drill node how it cheats.
    pub fn label(&self) -> String {
        match self.dishonest {
            None => self.name.clone(),
            Some(m) => format!("{} (dishonest: {})", self.name, m.name()),
        }
    }
}

/// The in-process farm: coordinator key, local nodes, one verifier, and the folder of
/// the coordinator's store.
pub struct EmbeddedFarm {
    /// Coordinator key.
    pub coordinator_key: SecretKey,
    /// Local nodes.
    pub nodes: Vec<LocalNode>,
    /// The verifier's key.
    pub verifier_key: SecretKey,
    /// What the verifier re-renders with.
    pub verifier_renderer: Arc<dyn TileRenderer>,
    /// Where the coordinator's store goes (`coordinator.db`); `tessera render` gives a
    /// private temporary folder. It should be empty: trust and balances found there
    /// carry over into the job.
    pub data_dir: PathBuf,
}

/// Hands every task the one renderer it was built with, for the one scene it was built
/// for: the scene is already loaded (and the path tracer compiled) by `tessera render`,
/// so nodes and the verifier share it instead of loading it each.
struct LoadedScene {
    scene_hash: Digest,
    renderer: Arc<dyn TileRenderer>,
}

impl RendererFactory for LoadedScene {
    fn capabilities(&self, slots: u32) -> Capabilities {
        Capabilities {
            class: self.renderer.class().clone(),
            memory_bytes: 0,
            slots,
            software: software_version(),
        }
    }

    fn load(&self, _entry: &Path, expected: &Digest) -> Result<Arc<dyn TileRenderer>, LoadError> {
        if *expected != self.scene_hash {
            return Err(LoadError::OtherScene {
                served: self.scene_hash,
                requested: *expected,
            });
        }
        Ok(self.renderer.clone())
    }
}

/// Render slots of each local node and of the verifier: one task (or request) at a time
/// each, as the GPU is shared by all of them.
const LOCAL_SLOTS: u32 = 1;

/// How often the local coordinator's reconciler runs.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// How long the driver waits for the service to handle an input before it looks at the
/// job again anyway (it looks after every input).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The service policy of a farm on one machine, for `cfg`'s job and a verifier `verifier`.
/// The rules are the farm's; only what assumes many machines and strangers differs:
/// leases outlast any stall of a busy machine (heartbeats still renew them), a task
/// waiting in a long local queue is never taken as lost, a verify request may take as
/// long as `message_timeout`, the one job may be as large as the machine allows, the
/// client (the operator) may overdraw, and local nodes take any tier.
pub fn local_service_config(cfg: &JobConfig, verifier: PublicKey) -> ServiceConfig {
    let d = ServiceConfig::default();
    ServiceConfig {
        lease_ms: 120_000,
        tile_size: cfg.tile_size,
        batch_size: cfg.batch_size,
        challenge_window_secs: cfg.challenge_window_secs,
        slash_pct: cfg.slash_pct,
        verify_timeout_ms: cfg.message_timeout.as_millis() as u64,
        unleased_timeout_ms: u64::MAX,
        verifier_keys: vec![verifier],
        client_overdraft: MAX_CREDIT,
        tolerance: cfg.tolerance,
        sampling: cfg.sampling.clone(),
        dispute_deposit_pct: cfg.dispute_deposit_pct,
        limits: Limits {
            max_job_tasks: u64::MAX,
            max_job_tiles: u64::MAX,
            ..d.limits
        },
        enforce_tier_trust: false,
        ..d
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Register `key` with `svc` as `role`, as a worker does over the API: sign the
/// registration of a fresh challenge.
fn register(
    svc: &Service,
    role: Role,
    name: &str,
    key: &SecretKey,
    caps: &Capabilities,
) -> Result<(), ServiceError> {
    let now = now_ms();
    let challenge = svc.challenge(now)?;
    let challenge = tessera_protocol::hexser::decode::<32>(&challenge)
        .map_err(|e| ServiceError::Invalid(format!("challenge: {e}")))?;
    let registration = Registration {
        role,
        name: name.into(),
        challenge,
        coordinator: svc.public(),
        capabilities: caps.digest(),
    };
    svc.register(&Signed::sign(registration, key), caps, None, now)?;
    Ok(())
}

impl EmbeddedFarm {
    /// Run one job to the end and return its frames, bundle and ledger effects.
    pub async fn run_job(&self, cfg: &JobConfig) -> Result<JobOutcome, PipelineError> {
        self.run_job_with_progress(cfg, &mut |_, _| {}).await
    }

    /// [`Self::run_job`], telling `progress` where the job is (its id and progress) each
    /// time the driver looks at it (after inputs, at least once a second) and once at
    /// its end. It prints nothing itself: the caller draws.
    pub async fn run_job_with_progress(
        &self,
        cfg: &JobConfig,
        progress: &mut (dyn FnMut(&str, &Progress) + Send),
    ) -> Result<JobOutcome, PipelineError> {
        if self.nodes.is_empty() {
            return Err(PipelineError::Config("at least one node is needed".into()));
        }
        let store = Store::open_scratch(&self.data_dir.join("coordinator.db"))?;
        let verifier_key = self.verifier_key.public();
        let svc = Service::new(
            store,
            copy_key(&self.coordinator_key),
            local_service_config(cfg, verifier_key),
        );
        // The workers register and the nodes deposit their stakes before anything runs.
        let factory = |renderer: &Arc<dyn TileRenderer>| -> Arc<dyn RendererFactory> {
            Arc::new(LoadedScene {
                scene_hash: cfg.scene_hash,
                renderer: renderer.clone(),
            })
        };
        let verifier_factory = factory(&self.verifier_renderer);
        let verifier_caps = verifier_factory.capabilities(LOCAL_SLOTS);
        register(
            &svc,
            Role::Verifier,
            "verifier",
            &self.verifier_key,
            &verifier_caps,
        )?;
        let mut labels = BTreeMap::new();
        let mut node_states = Vec::new();
        let bus = InProcessBus::new();
        for n in &self.nodes {
            let key = n.key.public();
            let f = factory(&n.renderer);
            let caps = f.capabilities(LOCAL_SLOTS);
            register(&svc, Role::Node, &n.name, &n.key, &caps)?;
            if cfg.node_stake > 0 {
                svc.credit(
                    &account::stake(&key),
                    cfg.node_stake,
                    &format!("render stake of {key}"),
                )?;
            }
            labels.insert(key, n.label());
            node_states.push(Arc::new(NodeState::new(
                bus.clone(),
                copy_key(&n.key),
                &n.name,
                caps,
                SceneSource::Fixed(PathBuf::new()),
                f,
                n.dishonest,
            )));
        }
        let verifier = Arc::new(VerifierState::new(
            bus.clone(),
            copy_key(&self.verifier_key),
            SceneSource::Fixed(PathBuf::new()),
            verifier_factory,
        ));

        let shutdown = CancellationToken::new();
        let coordinator =
            BusCoordinator::start(svc, bus.clone(), RECONCILE_EVERY, &shutdown).await?;
        let mut workers = tokio::task::JoinSet::new();
        for node in node_states {
            let stop = shutdown.clone();
            workers.spawn(async move {
                if let Err(e) = node.serve(LOCAL_SLOTS, DEFAULT_HEARTBEAT, stop).await {
                    tracing::error!("local node stopped: {e}");
                }
            });
        }
        {
            let stop = shutdown.clone();
            workers.spawn(async move {
                if let Err(e) = verifier.serve(LOCAL_SLOTS, stop).await {
                    tracing::error!("local verifier stopped: {e}");
                }
            });
        }
        let result = self.drive(&coordinator, cfg, &labels, progress).await;
        shutdown.cancel();
        while workers.join_next().await.is_some() {}
        coordinator.stopped().await;
        result
    }

    /// Submit the job, wait until the service ends it, and read the result back.
    async fn drive(
        &self,
        coordinator: &BusCoordinator,
        cfg: &JobConfig,
        labels: &BTreeMap<PublicKey, String>,
        report: &mut (dyn FnMut(&str, &Progress) + Send),
    ) -> Result<JobOutcome, PipelineError> {
        let submitted = cfg.clone();
        let job = coordinator
            .with(move |s| {
                let c = submitted;
                let job = s.submit(
                    Submission {
                        client: &c.client,
                        scene_name: &c.scene_name,
                        scene_hash: c.scene_hash,
                        settings: c.settings,
                        frames: (c.frame_start, c.frame_end),
                        tier: &c.tier,
                        tile_size: Some(c.tile_size),
                        batch_size: Some(c.batch_size),
                        requirements: Requirements::default(),
                    },
                    now_ms(),
                )?;
                if let Some(hint) = &c.scene_hint {
                    s.set_scene_hint(&job, hint)?;
                }
                Ok::<_, ServiceError>(job)
            })
            .await?;
        let span = tracing::info_span!("job", job = %&job[..12]);
        let _enter = span.enter();

        // Wait for the end, looking after every input the service handled; the job fails
        // if nothing about it moves for too long.
        let mut handled = coordinator.handled();
        let mut last = None;
        let mut moved = Instant::now();
        let view = loop {
            handled.mark_unchanged();
            let j = job.clone();
            let view = coordinator.read(move |s| s.job_view(&j)).await?;
            report(&job, &view.progress);
            if matches!(view.progress.state, JobState::Done | JobState::Failed) {
                break view;
            }
            let progress = (
                view.progress.state,
                view.progress.round,
                view.progress.tiles_rendered,
                view.progress.tiles_verified,
            );
            if last.as_ref() != Some(&progress) {
                last = Some(progress);
                moved = Instant::now();
            } else if moved.elapsed() > cfg.message_timeout {
                return Err(PipelineError::Timeout {
                    job,
                    secs: cfg.message_timeout.as_secs(),
                    state: view.progress.state.to_string(),
                });
            }
            let _ = tokio::time::timeout(LOOK_EVERY, handled.changed()).await;
        };
        if let Some(release_at) = view.progress.release_at_ms {
            // Nobody can dispute or requeue a `render` job: its window closes now, as the
            // farm's reconciler closes one when it ends.
            coordinator.with(move |s| s.reconcile(release_at)).await?;
        }
        if view.progress.state == JobState::Failed {
            return Err(PipelineError::Failed {
                job,
                reason: view.progress.error.unwrap_or_default(),
            });
        }
        let j = job.clone();
        let frames_of = (cfg.frame_start, cfg.frame_end);
        let (bundle, frames) = coordinator
            .read(move |s| {
                let bundle = s.bundle(&j)?;
                let mut frames = Vec::new();
                for f in frames_of.0..=frames_of.1 {
                    frames.push((f, frame_of_bundle(s.store(), &j, &bundle, f)?));
                }
                Ok::<_, ServiceError>((bundle, frames))
            })
            .await?;
        let reports = node_reports(&bundle, labels);
        Ok(JobOutcome {
            job_id: job,
            bundle,
            frames,
            reports,
            times: RenderTimes::default(),
        })
    }
}

/// What each node got in each round, read from the bundle: its final verdict of the
/// round (not an escalation, not a dispute), the tiles it committed, and its transfers
/// of that round in the signed receipt. Nodes in key order within a round.
pub fn node_reports(bundle: &ProofBundle, labels: &BTreeMap<PublicKey, String>) -> Vec<NodeReport> {
    let transfers = &bundle.payments.statement.transfers;
    let job = hex::encode(bundle.manifest.statement.job_id);
    let mut reports = Vec::new();
    for round in &bundle.rounds {
        let mut finals: Vec<_> = round
            .verdicts
            .iter()
            .filter(|v| v.statement.decision != Decision::Escalate && !v.statement.check.dispute)
            .collect();
        finals.sort_by_key(|v| v.statement.node);
        for v in finals {
            let node = v.statement.node;
            let sum = |kind: TransferKind, account: &str| -> u64 {
                transfers
                    .iter()
                    .filter(|t| t.kind == kind && t.round == round.round)
                    .filter(|t| t.to == account || t.from == account)
                    .map(|t| t.amount)
                    .sum()
            };
            let leaves = tessera_verifier::checks::node_leaves(&round.batches, &node);
            reports.push(NodeReport {
                name: labels.get(&node).cloned().unwrap_or_else(|| node.short()),
                key: node,
                round: round.round,
                tiles: leaves.len() as u32,
                sampled: v.statement.samples.len() as u32,
                pixels: leaves
                    .iter()
                    .map(|&(bi, pos)| round.batches[bi].tiles[pos].rect.pixels())
                    .sum(),
                sampled_pixels: round
                    .samples
                    .iter()
                    .find(|ns| ns.node == node && ns.check == v.statement.check)
                    .map_or(0, |ns| {
                        ns.delivered
                            .iter()
                            .map(|d| tessera_protocol::canonical::pixels(d))
                            .sum()
                    }),
                decision: v.statement.decision,
                paid: sum(TransferKind::PayOnPass, &account::node(&node)),
                held: sum(TransferKind::HoldBack, &account::holdback(&job, &node)),
                slashed: sum(TransferKind::Slash, &account::stake(&node)),
            });
        }
    }
    reports
}
