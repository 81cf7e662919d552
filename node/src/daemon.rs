//! `tessera node`: a renderer node as a daemon. It registers with the coordinator over
//! HTTP, then takes render tasks from the bus (the shared `tasks` queue and its own
//! `node.<key>` queue), renders at most `slots` at once, publishes each signed
//! [`tessera_protocol::wire::BatchResult`] with publisher confirms and only then acks the task. A signed
//! [`NodeSignal`] every `heartbeat` renews the leases of the tasks it holds; tasks it may
//! not take (blocked on the job, requirements unmet) are declined with a signal, and
//! failures are reported the same way.
//!
//! Redelivery is normal: a task whose ack was lost is rendered again and published again
//! under the same message id (the task id); the coordinator ignores the duplicate.
//!
//! Test-only fault hooks come from the environment at start: see [`crate::worker`]
//! (`TESSERA_FAULT_EXIT_AFTER_PUBLISH=1` exits with status 77 after the first result is
//! published, before its task is acked; `TESSERA_FAULT_DUPLICATE_RESULTS=1` publishes
//! every result a second time, after the next one).

use crate::worker::{
    self, Enrolment, Faults, LoopEnd, RendererFactory, SceneCache, SceneSource, StartError,
    WireError,
};
use crate::{DishonestMode, Node};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_api::RegisterResponse;
use tessera_bus::{Bus, BusError, Delivery};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::statements::{NodeSignal, Role, Signed, TaskNote};
use tessera_protocol::wire::{
    node_queue, Capabilities, RenderTask, QUEUE_RESULTS, QUEUE_SIGNALS, QUEUE_TASKS,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Default interval of lease heartbeats.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a stopping node waits for renders in progress to publish their results
/// before it abandons them (their tasks return to the queue, unacked).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What `tessera node` runs with.
pub struct NodeDaemonConfig {
    /// Base URL of the coordinator's HTTP API.
    pub coordinator: String,
    /// The farm's worker token, when the coordinator requires one.
    pub token: Option<String>,
    /// The node's signing key (its identity).
    pub key: SecretKey,
    /// Display name.
    pub name: String,
    /// Tasks rendered at once (also the prefetch of both task queues).
    pub slots: u32,
    /// Root of the scene cache.
    pub cache_dir: PathBuf,
    /// Interval of lease heartbeats ([`DEFAULT_HEARTBEAT`]).
    pub heartbeat: Duration,
    /// Drill only: how this node cheats.
    pub dishonest: Option<DishonestMode>,
    /// Where a plain listener serves `GET /metrics` (none: no metrics served).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl NodeDaemonConfig {
    fn enrolment(&self) -> Enrolment<'_> {
        Enrolment {
            role: Role::Node,
            coordinator: &self.coordinator,
            token: self.token.as_deref(),
            name: &self.name,
            key: &self.key,
            slots: self.slots,
            cache_dir: &self.cache_dir,
        }
    }
}

impl std::fmt::Debug for NodeDaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.enrolment()
            .debug_struct(f, "NodeDaemonConfig")
            .field("heartbeat", &self.heartbeat)
            .field("dishonest", &self.dishonest)
            .finish()
    }
}

/// Why the node daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeDaemonError {
    /// It could not start: a bad config, registration, or the bus (connecting it, or
    /// declaring the own queue).
    #[error(transparent)]
    Start(#[from] StartError),
    /// The bus closed while the node was consuming.
    #[error("bus closed while consuming queue {0}")]
    BusClosed(String),
    /// The metrics listener could not be bound.
    #[error(transparent)]
    Metrics(#[from] crate::metrics_http::MetricsListenError),
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Malformed: parked (dead-lettered), with the reason.
    Parked(String),
    /// Not for this node: declined with a signal, acked.
    Declined(String),
    /// Rendered; the result is published and the task acked.
    Rendered,
    /// The coordinator no longer wants it (its job was paused, cancelled or ended, or
    /// another node holds it): acked without rendering.
    Withdrawn,
    /// Loading the scene or rendering failed: reported with a signal, acked.
    Failed(String),
    /// Not acked (the bus failed, or the node is stopping): the broker redelivers it.
    Abandoned(String),
}

/// The running node after registration: bus, key, capabilities, loaded scenes, and the
/// set of tasks it is rendering. Tests build it directly with an in-process bus and a
/// [`SceneSource::Fixed`] scene.
pub struct NodeState<B: Bus> {
    bus: B,
    key: SecretKey,
    me: PublicKey,
    name: String,
    capabilities: Capabilities,
    scenes: SceneCache<Arc<Node>>,
    /// Tasks it holds: received and waiting for a slot, or rendering.
    held: Mutex<BTreeSet<String>>,
    faults: Faults,
    signal_seq: AtomicU64,
    /// Fault hook `duplicate_results`: the copy of the last result, not yet published.
    held_back: Mutex<Option<HeldBack>>,
    metrics: crate::metrics::NodeMetrics,
}

/// A result copy held back by the `duplicate_results` fault hook.
struct HeldBack {
    message_id: String,
    body: Vec<u8>,
    since: std::time::Instant,
}

impl<B: Bus> NodeState<B> {
    /// A node state over `bus`: `capabilities` decide which tasks it takes, scenes come
    /// from `source` through `factory`.
    pub fn new(
        bus: B,
        key: SecretKey,
        name: &str,
        capabilities: Capabilities,
        source: SceneSource,
        factory: Arc<dyn RendererFactory>,
        dishonest: Option<DishonestMode>,
    ) -> Self {
        let node_key = worker::copy_key(&key);
        let node_name = name.to_string();
        let scenes = SceneCache::new(source, factory, move |scene_hash, renderer| {
            Arc::new(Node::new(
                node_name.clone(),
                worker::copy_key(&node_key),
                *scene_hash,
                renderer,
                dishonest,
            ))
        });
        let metrics = crate::metrics::NodeMetrics::new(scenes.load_counter());
        Self {
            metrics,
            bus,
            me: key.public(),
            key,
            name: name.to_string(),
            capabilities,
            scenes,
            held: Mutex::new(BTreeSet::new()),
            faults: Faults::default(),
            signal_seq: AtomicU64::new(0),
            held_back: Mutex::new(None),
        }
    }

    /// The same state with these fault hooks (see [`crate::worker`]).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &crate::metrics::NodeMetrics {
        &self.metrics
    }

    /// The node's public key.
    pub fn public(&self) -> PublicKey {
        self.me
    }

    /// Its own queue, `node.<key>`.
    pub fn own_queue(&self) -> String {
        node_queue(&self.me)
    }

    /// Tasks it holds now (received and waiting for a slot, or rendering), in id order:
    /// what its signals report as `active`.
    pub fn active(&self) -> Vec<String> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().cloned().collect()
    }

    /// Count a delivery's task as held (its lease is renewed) until it is handled. Called
    /// when it arrives, before it waits for a slot; the message id is the task id.
    pub fn hold(&self, message_id: &str) {
        self.set_held(message_id, true);
    }

    /// Handle one delivered task to the end: park it if malformed, decline it if not for
    /// this node, else load the scene, render, publish the result (confirmed) and ack.
    /// Never panics on what the message holds.
    pub async fn handle_delivery(&self, d: Delivery) -> Handled {
        let outcome = self.handle_inner(&d).await;
        self.set_held(&d.message_id, false);
        outcome
    }

    async fn handle_inner(&self, d: &Delivery) -> Handled {
        let task = match parse_task(&d.body) {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(node = %self.me.short(), queue = %d.queue, message = %d.message_id, %reason, "malformed task parked");
                if let Err(e) = self.bus.nack(d, false).await {
                    return Handled::Abandoned(format!("parking failed: {e}"));
                }
                return Handled::Parked(reason.to_string());
            }
        };
        let span = tracing::info_span!("task", node = %self.me.short(), task = %task.task_id, job = %hex::encode(&task.job_id[..6]), frame = task.frame, round = task.round);
        self.handle_task(d, task).instrument(span).await
    }

    async fn handle_task(&self, d: &Delivery, task: RenderTask) -> Handled {
        if let Some(reason) = self.ineligible(&task) {
            // Not held any more: the signal must not renew what it declines.
            self.set_held(&d.message_id, false);
            tracing::info!(%reason, "task declined");
            let note = TaskNote {
                task_id: task.task_id.clone(),
                attempt: task.attempt,
                reason: reason.clone(),
            };
            return match self.signal(vec![note], vec![]).await {
                Ok(()) => self.settle(d, Handled::Declined(reason)).await,
                Err(e) => self.give_back(d, format!("declining: {e}")).await,
            };
        }
        if !self.scenes.wanted(&task.task_id).await {
            self.set_held(&d.message_id, false);
            tracing::info!("task withdrawn by the coordinator (its job is paused or over, or another node holds it): not rendered");
            return self.settle(d, Handled::Withdrawn).await;
        }
        self.set_held(&task.task_id, true);
        let outcome = self.render_and_publish(d, &task).await;
        self.set_held(&task.task_id, false);
        outcome
    }

    /// Why this node must not render `task`, if it must not.
    fn ineligible(&self, task: &RenderTask) -> Option<String> {
        if task.blocked.contains(&self.me) {
            return Some("this node is blocked on the job".into());
        }
        self.capabilities
            .meets(&task.requirements)
            .err()
            .map(|unmet| unmet.to_string())
    }

    async fn render_and_publish(&self, d: &Delivery, task: &RenderTask) -> Handled {
        let started = std::time::Instant::now();
        let node = match self.scenes.get(&task.scene_hash).await {
            Ok(n) => n,
            Err(e) => return self.fail(d, task, e.to_string()).await,
        };
        let render_task = task.clone();
        let render_started = std::time::Instant::now();
        let busy = self.metrics.busy();
        let rendered = tokio::task::spawn_blocking(move || node.handle_task(&render_task)).await;
        drop(busy);
        let render_took = render_started.elapsed();
        let result = match rendered {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(d, task, e.to_string()).await,
            Err(e) => return self.fail(d, task, format!("render task failed: {e}")).await,
        };
        let body = match serde_json::to_vec(&result) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .fail(d, task, format!("encoding the result: {e}"))
                    .await
            }
        };
        let copy = self.faults.duplicate_results.then(|| body.clone());
        if let Err(e) = self.bus.publish(QUEUE_RESULTS, &task.task_id, body).await {
            return self
                .give_back(d, format!("publishing the result: {e}"))
                .await;
        }
        if let Some(copy) = copy {
            self.duplicate_later(&task.task_id, copy).await;
        }
        self.faults.after_publish(&task.task_id);
        self.metrics.rendered(task.tiles.len(), render_took);
        tracing::info!(
            tiles = task.tiles.len(),
            ms = started.elapsed().as_millis() as u64,
            "result published"
        );
        self.settle(d, Handled::Rendered).await
    }

    async fn fail(&self, d: &Delivery, task: &RenderTask, reason: String) -> Handled {
        tracing::warn!(%reason, "task failed");
        self.metrics.failed();
        let note = TaskNote {
            task_id: task.task_id.clone(),
            attempt: task.attempt,
            reason: reason.clone(),
        };
        // The signal that reports the failure still names the task as held: the
        // coordinator counts a failure only from the node that holds the task's lease,
        // and takes the lease from this same signal if no heartbeat named it yet.
        let sent = self.signal(vec![], vec![note]).await;
        self.set_held(&task.task_id, false);
        self.set_held(&d.message_id, false);
        match sent {
            Ok(()) => self.settle(d, Handled::Failed(reason)).await,
            Err(e) => {
                self.give_back(d, format!("reporting failure ({reason}): {e}"))
                    .await
            }
        }
    }

    /// Ack `d`; a failed ack is harmless (redelivered, and handled idempotently).
    async fn settle(&self, d: &Delivery, outcome: Handled) -> Handled {
        if let Err(e) = self.bus.ack(d).await {
            tracing::warn!(message = %d.message_id, error = %e, "ack failed; the task will be redelivered");
        }
        outcome
    }

    /// Requeue `d` after a bus failure.
    async fn give_back(&self, d: &Delivery, reason: String) -> Handled {
        tracing::warn!(message = %d.message_id, %reason, "task handed back");
        if let Err(e) = self.bus.nack(d, true).await {
            tracing::debug!(message = %d.message_id, error = %e, "hand-back failed; the broker redelivers it");
        }
        Handled::Abandoned(reason)
    }

    /// Fault hook `duplicate_results`: hold back a copy of the result just published and
    /// publish the copy held back before it (so the coordinator gets that one again, after
    /// a newer result).
    async fn duplicate_later(&self, message_id: &str, body: Vec<u8>) {
        let previous = {
            let mut held = self.held_back.lock().unwrap_or_else(|e| e.into_inner());
            held.replace(HeldBack {
                message_id: message_id.to_string(),
                body,
                since: std::time::Instant::now(),
            })
        };
        if let Some(previous) = previous {
            self.publish_duplicate(previous).await;
        }
    }

    /// Fault hook `duplicate_results`: publish the held-back copy if it has waited
    /// `older_than`.
    async fn flush_duplicate(&self, older_than: Duration) {
        let due = {
            let mut held = self.held_back.lock().unwrap_or_else(|e| e.into_inner());
            if held
                .as_ref()
                .is_some_and(|h| h.since.elapsed() >= older_than)
            {
                held.take()
            } else {
                None
            }
        };
        if let Some(due) = due {
            self.publish_duplicate(due).await;
        }
    }

    async fn publish_duplicate(&self, copy: HeldBack) {
        match self
            .bus
            .publish(QUEUE_RESULTS, &copy.message_id, copy.body)
            .await
        {
            Ok(()) => {
                tracing::warn!(message = %copy.message_id, "fault hook: duplicate result published")
            }
            Err(e) => {
                tracing::warn!(message = %copy.message_id, error = %e, "fault hook: duplicate result not published")
            }
        }
    }

    /// Fault hook `duplicate_results`: publish a held-back copy once it waited
    /// [`Faults::DUPLICATE_HOLD`], until `stop`.
    async fn flush_duplicates(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = Ticker::new(Duration::from_millis(100), stop);
        while ticks.tick().await {
            self.flush_duplicate(Faults::DUPLICATE_HOLD).await;
        }
    }

    fn set_held(&self, task_id: &str, on: bool) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            held.insert(task_id.to_string());
        } else {
            held.remove(task_id);
        }
    }

    /// Publish a signed [`NodeSignal`] with the held tasks and these notes.
    pub async fn signal(
        &self,
        declined: Vec<TaskNote>,
        failed: Vec<TaskNote>,
    ) -> Result<(), BusError> {
        let signal = NodeSignal {
            node: self.me,
            sent_unix_ms: worker::unix_ms(),
            active: self.active(),
            declined,
            failed,
        };
        let seq = self.signal_seq.fetch_add(1, Ordering::Relaxed);
        let message_id = format!("signal-{}-{}-{seq}", self.me.short(), signal.sent_unix_ms);
        let body = serde_json::to_vec(&Signed::sign(signal, &self.key))
            .expect("a signed node signal always encodes");
        self.bus.publish(QUEUE_SIGNALS, &message_id, body).await
    }

    /// Consume both task queues until `shutdown`, with at most `slots` tasks at once and
    /// a heartbeat every `heartbeat`; then let renders in progress finish (up to
    /// [`SHUTDOWN_GRACE`]) and return. The own queue must already be declared.
    pub async fn serve(
        self: Arc<Self>,
        slots: u32,
        heartbeat: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), NodeDaemonError> {
        let permits = Arc::new(Semaphore::new(slots.max(1) as usize));
        self.metrics.set_slots(slots.max(1));
        let tracker = TaskTracker::new();
        let stop = shutdown.child_token();
        let heartbeat_stop = CancellationToken::new();
        let beat = tokio::spawn(self.clone().heartbeat(heartbeat, heartbeat_stop.clone()));
        let duplicates = self
            .faults
            .duplicate_results
            .then(|| tokio::spawn(self.clone().flush_duplicates(heartbeat_stop.clone())));
        let mut loops = Vec::new();
        for queue in [QUEUE_TASKS.to_string(), self.own_queue()] {
            let state = self.clone();
            let handle = {
                let state = state.clone();
                move |d: Delivery| {
                    let state = state.clone();
                    state.hold(&d.message_id);
                    async move {
                        state.handle_delivery(d).await;
                    }
                }
            };
            let consumer = worker::consume(
                state.bus.clone(),
                queue.clone(),
                permits.clone(),
                tracker.clone(),
                stop.clone(),
                handle,
            );
            let stop = stop.clone();
            loops.push(tokio::spawn(async move {
                let end = consumer.await;
                stop.cancel();
                (queue, end)
            }));
        }
        tracing::info!(node = %self.me.short(), name = %self.name, slots, "node serving");
        let mut closed = None;
        for l in loops {
            if let Ok((queue, LoopEnd::BusClosed)) = l.await {
                closed.get_or_insert(queue);
            }
        }
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(active = ?self.active(), "renders still running after the grace period; abandoning them (their tasks return to the queue)");
        }
        heartbeat_stop.cancel();
        let _ = beat.await;
        if let Some(duplicates) = duplicates {
            let _ = duplicates.await;
            self.flush_duplicate(Duration::ZERO).await;
        }
        tracing::info!(node = %self.me.short(), "node stopped");
        match closed {
            Some(queue) if !shutdown.is_cancelled() => Err(NodeDaemonError::BusClosed(queue)),
            _ => Ok(()),
        }
    }

    /// Publish a signal every `every` until `stop` (renews the leases of active tasks).
    async fn heartbeat(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticks = Ticker::new(every.max(Duration::from_millis(10)), stop.clone());
        while ticks.tick().await {
            let sent = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                r = self.signal(vec![], vec![]) => r,
            };
            if let Err(e) = sent {
                tracing::warn!(node = %self.me.short(), error = %e, "heartbeat not published");
            }
        }
    }
}

/// Ticks every `period` until `stop`; a late tick delays the next ones (no bursts).
struct Ticker {
    ticks: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticker {
    fn new(period: Duration, stop: CancellationToken) -> Self {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { ticks, stop }
    }

    /// Wait for the next tick (the first comes at once); `false` once stopped.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            _ = self.ticks.tick() => true,
        }
    }
}

/// Why a delivered task is parked unread.
#[derive(Debug, thiserror::Error)]
enum MalformedTask {
    /// The body is not a task.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Its version or id is unusable.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Decode a task and check what decoding cannot.
fn parse_task(body: &[u8]) -> Result<RenderTask, MalformedTask> {
    let task: RenderTask = serde_json::from_slice(body)?;
    worker::check_wire(task.version, &task.task_id, "task", "node")?;
    Ok(task)
}

/// Run `tessera node` until `shutdown`: register with the coordinator (challenge, signed
/// registration, session token), connect the bus with `connect` (given the registration
/// answer, for the AMQP namespace), both by [`worker::start`], declare the own queue, and
/// serve ([`NodeState::serve`]).
pub async fn run_node<B, C, F>(
    cfg: NodeDaemonConfig,
    connect: C,
    factory: Arc<dyn RendererFactory>,
    shutdown: CancellationToken,
) -> Result<(), NodeDaemonError>
where
    B: Bus,
    C: FnOnce(RegisterResponse) -> F,
    F: Future<Output = Result<B, BusError>>,
{
    let metrics = match cfg.metrics_listen {
        Some(addr) => Some(crate::metrics_http::bind(addr).await?),
        None => None,
    };
    let who = cfg.enrolment();
    let Some(started) = worker::start(who, factory.as_ref(), connect, &shutdown).await? else {
        return Ok(());
    };
    let own = node_queue(&cfg.key.public());
    if let Err(source) = started.bus.declare(&own).await {
        let what = format!("declaring queue {own}");
        return Err(StartError::Bus { what, source }.into());
    }
    let state = NodeState::new(
        started.bus,
        cfg.key,
        &cfg.name,
        started.capabilities,
        started.scenes,
        factory,
        cfg.dishonest,
    );
    let state = Arc::new(state.with_faults(started.faults));
    if let Some(listener) = metrics {
        tracing::info!(listen = ?listener.local_addr().ok(), "metrics listener up (no token)");
        let shown = state.clone();
        let render: crate::metrics_http::RenderMetrics = Arc::new(move || shown.metrics().text());
        tokio::spawn(crate::metrics_http::serve(
            listener,
            render,
            shutdown.clone(),
        ));
    }
    state.serve(cfg.slots, cfg.heartbeat, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::StubFactory;
    use tessera_bus::InProcessBus;
    use tessera_protocol::blocks::tile_hash;
    use tessera_protocol::wire::{BatchResult, Requirements, TaskTile, WIRE_VERSION};
    use tessera_protocol::{merkle, RenderFailure, RenderSettings, TileRect, TileRenderer};

    fn state(
        bus: &InProcessBus,
        factory: Arc<dyn RendererFactory>,
    ) -> Arc<NodeState<InProcessBus>> {
        let caps = factory.capabilities(2);
        Arc::new(NodeState::new(
            bus.clone(),
            SecretKey::generate(),
            "test-node",
            caps,
            SceneSource::Fixed("scene.glb".into()),
            factory,
            None,
        ))
    }

    fn task(id: &str) -> RenderTask {
        RenderTask {
            version: WIRE_VERSION,
            task_id: id.into(),
            job_id: [3; 16],
            scene_hash: [7; 32],
            settings: RenderSettings {
                width: 32,
                height: 16,
                spp: 4,
                max_bounces: 2,
                seed: 1,
                camera: None,
                frame_rate: Default::default(),
            },
            frame: 0,
            round: 0,
            batch_id: 1,
            tiles: vec![
                TaskTile {
                    tile_index: 0,
                    rect: TileRect {
                        x: 0,
                        y: 0,
                        w: 16,
                        h: 16,
                    },
                },
                TaskTile {
                    tile_index: 1,
                    rect: TileRect {
                        x: 16,
                        y: 0,
                        w: 16,
                        h: 16,
                    },
                },
            ],
            blocked: vec![],
            attempt: 0,
            requirements: Requirements::default(),
        }
    }

    async fn deliver(bus: &InProcessBus, queue: &str, id: &str, body: Vec<u8>) -> Delivery {
        bus.publish(queue, id, body).await.unwrap();
        bus.next(queue).await.unwrap()
    }

    async fn next_signal(bus: &InProcessBus) -> NodeSignal {
        let d = bus.next(QUEUE_SIGNALS).await.unwrap();
        let signed: Signed<NodeSignal> = serde_json::from_slice(&d.body).unwrap();
        signed.verify().unwrap();
        assert_eq!(signed.signer, signed.statement.node);
        signed.statement
    }

    fn check_result(r: &BatchResult, t: &RenderTask, node: &PublicKey) {
        r.batch.signed.verify().unwrap();
        let c = &r.batch.signed.statement;
        assert_eq!(c.node, *node);
        assert_eq!(c.job_id, t.job_id);
        assert_eq!(c.tile_ids, vec![0, 1]);
        let leaves: Vec<_> = r.batch.tiles.iter().map(|l| l.leaf).collect();
        assert_eq!(merkle::root(&leaves).unwrap(), c.batch_root);
        for (leaf, tile) in r.batch.tiles.iter().zip(&r.tiles) {
            assert_eq!(tile_hash(&tile.bytes, leaf.rect), Some(leaf.tile_hash));
        }
    }

    #[tokio::test]
    async fn good_task_gives_a_verifiable_result_under_the_task_id() {
        let bus = InProcessBus::new();
        let node = state(&bus, Arc::new(StubFactory::default()));
        let t = task("t-1");
        let d = deliver(&bus, QUEUE_TASKS, "t-1", serde_json::to_vec(&t).unwrap()).await;
        assert_eq!(node.handle_delivery(d).await, Handled::Rendered);
        let out = bus.next(QUEUE_RESULTS).await.unwrap();
        assert_eq!(out.message_id, "t-1");
        let r: BatchResult = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(r.task_id, "t-1");
        check_result(&r, &t, &node.public());
        assert!(node.active().is_empty());
        assert!(bus.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn duplicate_results_hook_repeats_each_result_after_the_next_one() {
        let bus = InProcessBus::new();
        let caps = StubFactory::default().capabilities(1);
        let node = Arc::new(
            NodeState::new(
                bus.clone(),
                SecretKey::generate(),
                "dup-node",
                caps,
                SceneSource::Fixed("scene.glb".into()),
                Arc::new(StubFactory::default()),
                None,
            )
            .with_faults(Faults {
                duplicate_results: true,
                ..Faults::default()
            }),
        );
        for id in ["t-a", "t-b"] {
            let d = deliver(
                &bus,
                QUEUE_TASKS,
                id,
                serde_json::to_vec(&task(id)).unwrap(),
            )
            .await;
            assert_eq!(node.handle_delivery(d).await, Handled::Rendered);
        }
        let mut order = Vec::new();
        for _ in 0..4 {
            let d = tokio::time::timeout(Duration::from_secs(5), bus.next(QUEUE_RESULTS))
                .await
                .expect("the held-back copy is published within the hold time")
                .unwrap();
            let r: BatchResult = serde_json::from_slice(&d.body).unwrap();
            assert_eq!(r.task_id, d.message_id);
            order.push(d.message_id);
            if order.len() == 3 {
                // The copy of t-b waits for a next result, then for the hold time.
                node.flush_duplicate(Faults::DUPLICATE_HOLD).await;
                tokio::time::sleep(Faults::DUPLICATE_HOLD).await;
                node.flush_duplicate(Faults::DUPLICATE_HOLD).await;
            }
        }
        assert_eq!(order, ["t-a", "t-b", "t-a", "t-b"]);
    }

    #[tokio::test]
    async fn blocked_task_is_declined_with_a_signed_signal() {
        let bus = InProcessBus::new();
        let node = state(&bus, Arc::new(StubFactory::default()));
        let mut t = task("t-2");
        t.blocked = vec![SecretKey::generate().public(), node.public()];
        let d = deliver(&bus, QUEUE_TASKS, "t-2", serde_json::to_vec(&t).unwrap()).await;
        assert!(
            matches!(node.handle_delivery(d).await, Handled::Declined(r) if r.contains("blocked"))
        );
        let s = next_signal(&bus).await;
        assert_eq!(s.declined.len(), 1);
        assert_eq!(s.declined[0].task_id, "t-2");
        assert!(s.failed.is_empty());
        assert!(s.active.is_empty(), "a declined task is not renewed");
        assert!(bus.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn unmet_requirements_are_declined() {
        let bus = InProcessBus::new();
        let node = state(&bus, Arc::new(StubFactory::default()));
        let mut t = task("t-3");
        t.requirements.min_memory_bytes = 1 << 40;
        let d = deliver(
            &bus,
            &node.own_queue(),
            "t-3",
            serde_json::to_vec(&t).unwrap(),
        )
        .await;
        assert!(
            matches!(node.handle_delivery(d).await, Handled::Declined(r) if r.contains("memory"))
        );
        assert_eq!(next_signal(&bus).await.declined[0].task_id, "t-3");
    }

    #[tokio::test]
    async fn malformed_tasks_are_parked() {
        let bus = InProcessBus::new();
        let node = state(&bus, Arc::new(StubFactory::default()));
        let mut old = serde_json::to_value(task("t-4")).unwrap();
        old["version"] = 99.into();
        for (id, body) in [
            ("junk", b"{not json".to_vec()),
            ("t-4", serde_json::to_vec(&old).unwrap()),
        ] {
            let d = deliver(&bus, QUEUE_TASKS, id, body).await;
            assert!(matches!(node.handle_delivery(d).await, Handled::Parked(_)));
        }
        let dead: Vec<_> = bus
            .dead_letters()
            .into_iter()
            .map(|d| d.message_id)
            .collect();
        assert_eq!(dead, ["junk", "t-4"]);
        assert!(matches!(
            parse_task(b"{not json"),
            Err(MalformedTask::Json(_))
        ));
        let old = serde_json::to_vec(&old).unwrap();
        match parse_task(&old) {
            Err(MalformedTask::Wire(WireError::Version { id, version, .. })) => {
                assert_eq!((id.as_str(), version), ("t-4", 99))
            }
            other => panic!("{other:?}"),
        }
    }

    /// The stub, counting how many tiles render at once; or, when `broken`, failing every
    /// tile.
    struct Probe {
        stub: crate::stub::HashRenderer,
        broken: bool,
        now: std::sync::atomic::AtomicUsize,
        max: std::sync::atomic::AtomicUsize,
    }
    impl Probe {
        fn new(delay_per_tile: Duration, broken: bool) -> Self {
            Self {
                stub: crate::stub::HashRenderer::new(delay_per_tile),
                broken,
                now: Default::default(),
                max: Default::default(),
            }
        }
    }
    impl TileRenderer for Probe {
        fn class(&self) -> &tessera_protocol::DeterminismClass {
            self.stub.class()
        }
        fn render_tile(
            &self,
            s: &RenderSettings,
            f: u32,
            r: TileRect,
        ) -> Result<Vec<u8>, RenderFailure> {
            if self.broken {
                return Err(RenderFailure("device lost".into()));
            }
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            let out = self.stub.render_tile(s, f, r);
            self.now.fetch_sub(1, Ordering::SeqCst);
            out
        }
    }

    /// Loads every scene as this renderer (with the stub's capabilities).
    struct FixedFactory(Arc<dyn TileRenderer>);
    impl RendererFactory for FixedFactory {
        fn capabilities(&self, slots: u32) -> Capabilities {
            StubFactory::default().capabilities(slots)
        }
        fn load(
            &self,
            _: &std::path::Path,
            _: &tessera_protocol::Digest,
        ) -> Result<Arc<dyn TileRenderer>, worker::LoadError> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn render_failure_is_reported_and_acked() {
        let bus = InProcessBus::new();
        let broken = Arc::new(Probe::new(Duration::ZERO, true));
        let node = state(&bus, Arc::new(FixedFactory(broken)));
        let d = deliver(
            &bus,
            QUEUE_TASKS,
            "t-5",
            serde_json::to_vec(&task("t-5")).unwrap(),
        )
        .await;
        assert!(
            matches!(node.handle_delivery(d).await, Handled::Failed(r) if r.contains("device lost"))
        );
        let s = next_signal(&bus).await;
        assert_eq!(s.failed[0].task_id, "t-5");
        // The failing node still names the task as held: the coordinator takes a failure
        // only from the lease holder.
        assert_eq!(s.active, ["t-5"]);
        assert!(
            s.failed[0].reason.contains("tile 0"),
            "{}",
            s.failed[0].reason
        );
        let text = node.metrics().text();
        assert!(
            text.lines()
                .any(|l| l == "tessera_node_task_failures_total 1"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "tessera_node_tasks_rendered_total 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn serve_takes_both_queues_heartbeats_and_stops() {
        let bus = InProcessBus::new();
        let renderer = Arc::new(Probe::new(Duration::from_millis(20), false));
        let node = state(&bus, Arc::new(FixedFactory(renderer.clone())));
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(node.clone().serve(
            2,
            Duration::from_millis(20),
            shutdown.clone(),
        ));
        let ids = ["a", "b", "c", "d"];
        for (i, id) in ids.iter().enumerate() {
            let queue = if i % 2 == 0 {
                QUEUE_TASKS.to_string()
            } else {
                node.own_queue()
            };
            bus.publish(&queue, id, serde_json::to_vec(&task(id)).unwrap())
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        for _ in ids {
            let d = tokio::time::timeout(Duration::from_secs(10), bus.next(QUEUE_RESULTS))
                .await
                .unwrap()
                .unwrap();
            let r: BatchResult = serde_json::from_slice(&d.body).unwrap();
            check_result(&r, &task(&r.task_id), &node.public());
            got.push(r.task_id);
        }
        got.sort();
        assert_eq!(got, ids);
        // Heartbeats came while tasks were active, and name only real task ids.
        let mut saw_active = false;
        for _ in 0..50 {
            let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_millis(200), bus.next(QUEUE_SIGNALS)).await
            else {
                break;
            };
            let s: Signed<NodeSignal> = serde_json::from_slice(&d.body).unwrap();
            s.verify().unwrap();
            assert!(s.statement.active.iter().all(|a| ids.contains(&a.as_str())));
            saw_active |= !s.statement.active.is_empty();
        }
        assert!(saw_active);
        let max = renderer.max.load(Ordering::SeqCst);
        assert!(max <= 2, "{max} renders at once with 2 slots");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // The metrics counted each task once, and no slot is left busy.
        let text = node.metrics().text();
        for line in [
            "tessera_node_tasks_rendered_total 4",
            "tessera_node_tiles_rendered_total 8",
            "tessera_node_slots 2",
            "tessera_node_slots_busy 0",
            "tessera_node_tile_render_seconds_count 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[tokio::test]
    async fn unreachable_coordinator_is_named_and_run_node_is_send() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let cfg = NodeDaemonConfig {
            coordinator: url.clone(),
            token: Some("secret-token".into()),
            key: SecretKey::generate(),
            name: "n1".into(),
            slots: 1,
            cache_dir: std::env::temp_dir(),
            heartbeat: DEFAULT_HEARTBEAT,
            dishonest: None,
            metrics_listen: None,
        };
        assert!(!format!("{cfg:?}").contains("secret-token"));
        let run = run_node(
            cfg,
            |_| async { Ok(InProcessBus::new()) },
            Arc::new(StubFactory::default()),
            CancellationToken::new(),
        );
        fn is_send<T: Send>(t: T) -> T {
            t
        }
        let err = is_send(run).await.unwrap_err().to_string();
        assert!(err.contains("n1") && err.contains(&url), "{err}");
    }
}
