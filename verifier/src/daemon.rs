//! `tessera verifier`: the verifier as a daemon. It registers with the coordinator over
//! HTTP (role `verifier`), takes [`VerifyRequest`]s from the `verify` queue, downloads and
//! loads the request's scene, judges the node ([`Verifier::handle_request`], on a
//! blocking thread), publishes the signed [`VerdictMessage`] under the request id with
//! publisher confirms, and only then acks the request. A request it cannot judge
//! (malformed, or refused by the checks) is parked, never answered.
//!
//! Redelivery is normal: a request whose ack was lost is judged again (the same verdict,
//! since re-rendering is deterministic) and published again under the same message id.
//!
//! Test-only fault hooks come from the environment at start: see
//! [`tessera_node::worker`] (`TESSERA_FAULT_EXIT_AFTER_PUBLISH=1` exits with status 77
//! after the first verdict is published, before its request is acked).

use crate::{Verifier, VerifyError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tessera_api::RegisterResponse;
use tessera_bus::{Bus, BusError, Delivery};
use tessera_node::worker::{
    self, Enrolment, Faults, LoopEnd, RendererFactory, SceneCache, SceneSource, StartError,
};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::statements::{Decision, Role};
use tessera_protocol::wire::{
    verifier_queue, VerdictMessage, VerifyRequest, QUEUE_VERDICTS, QUEUE_VERIFY, WIRE_VERSION,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long a stopping verifier waits for judgements in progress before it abandons them
/// (their requests return to the queue, unacked).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Pause before a request whose scene could not be loaded is handed back, so that a
/// coordinator outage does not become a busy loop (the delivery limit parks it in the end).
pub const SCENE_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What `tessera verifier` runs with.
pub struct VerifierDaemonConfig {
    /// Base URL of the coordinator's HTTP API.
    pub coordinator: String,
    /// The farm's worker token, when the coordinator requires one.
    pub token: Option<String>,
    /// The verifier's signing key (its identity; the manifest must name it).
    pub key: SecretKey,
    /// Display name.
    pub name: String,
    /// Requests judged at once (also the prefetch of the `verify` queue).
    pub slots: u32,
    /// Root of the scene cache.
    pub cache_dir: PathBuf,
    /// Where a plain listener serves `GET /metrics` (none: no metrics served).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl VerifierDaemonConfig {
    fn enrolment(&self) -> Enrolment<'_> {
        Enrolment {
            role: Role::Verifier,
            coordinator: &self.coordinator,
            token: self.token.as_deref(),
            name: &self.name,
            key: &self.key,
            slots: self.slots,
            cache_dir: &self.cache_dir,
        }
    }
}

impl std::fmt::Debug for VerifierDaemonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.enrolment()
            .debug_struct(f, "VerifierDaemonConfig")
            .finish()
    }
}

/// Why the verifier daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifierDaemonError {
    /// It could not start: a bad config, registration, or connecting the bus.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The bus closed while the verifier was consuming.
    #[error("bus closed while consuming queue {0}")]
    BusClosed(String),
    /// The metrics listener could not be bound.
    #[error(transparent)]
    Metrics(#[from] tessera_node::metrics_http::MetricsListenError),
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Malformed: parked, with the reason.
    Parked(String),
    /// Refused by the checks ([`VerifyError`]): parked, with the reason.
    Refused(String),
    /// Judged: the verdict is published and the request acked.
    Judged(Decision),
    /// Not acked (scene unavailable, bus failure): handed back for redelivery.
    Abandoned(String),
}

/// The running verifier after registration. Tests build it directly with an in-process
/// bus and a [`SceneSource::Fixed`] scene.
pub struct VerifierState<B: Bus> {
    bus: B,
    me: PublicKey,
    scenes: SceneCache<Arc<Verifier>>,
    faults: Faults,
    metrics: crate::metrics::VerifierMetrics,
}

impl<B: Bus> VerifierState<B> {
    /// A verifier state over `bus`, signing with `key`; scenes come from `source` through
    /// `factory`.
    pub fn new(
        bus: B,
        key: SecretKey,
        source: SceneSource,
        factory: Arc<dyn RendererFactory>,
    ) -> Self {
        let me = key.public();
        let scenes = SceneCache::new(source, factory, move |_, renderer| {
            Arc::new(Verifier::new(worker::copy_key(&key), renderer))
        });
        Self {
            bus,
            me,
            metrics: crate::metrics::VerifierMetrics::new(scenes.load_counter()),
            scenes,
            faults: Faults::default(),
        }
    }

    /// The same state with these fault hooks.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The verifier's metrics.
    pub fn metrics(&self) -> &crate::metrics::VerifierMetrics {
        &self.metrics
    }

    /// The verifier's public key.
    pub fn public(&self) -> PublicKey {
        self.me
    }

    /// Handle one delivered request to the end: park it if malformed or refused, else
    /// judge it, publish the verdict (confirmed) and ack. Never panics on what the
    /// message holds.
    pub async fn handle_delivery(&self, d: Delivery) -> Handled {
        let req = match parse_request(&d.body) {
            Ok(r) => r,
            Err(reason) => {
                tracing::warn!(verifier = %self.me.short(), message = %d.message_id, %reason, "malformed verify request parked");
                self.metrics.refused();
                return self.park(&d, Handled::Parked(reason.to_string())).await;
            }
        };
        let m = &req.manifest.statement;
        let span = tracing::info_span!("verify", verifier = %self.me.short(), request = %req.request_id, job = %hex::encode(&m.job_id[..6]), node = %req.node.short(), round = req.commitment.statement.round);
        self.judge(d, req).instrument(span).await
    }

    async fn judge(&self, d: Delivery, req: VerifyRequest) -> Handled {
        let started = std::time::Instant::now();
        let verifier = match self.scenes.get(&req.manifest.statement.scene_hash).await {
            Ok(v) => v,
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(%reason, "scene unavailable; request handed back");
                tokio::time::sleep(SCENE_RETRY_PAUSE).await;
                return self.give_back(&d, reason).await;
            }
        };
        let req = Arc::new(req);
        let judged = {
            let req = req.clone();
            tokio::task::spawn_blocking(move || verifier.handle_request(&req)).await
        };
        let verdict = match judged {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let reason = e.to_string();
                tracing::warn!(%reason, kind = refusal_kind(&e), "verify request refused and parked");
                self.metrics.refused();
                return self.park(&d, Handled::Refused(reason)).await;
            }
            Err(e) => {
                return self
                    .give_back(&d, format!("judging task failed: {e}"))
                    .await
            }
        };
        let decision = verdict.statement.decision;
        let msg = VerdictMessage {
            version: WIRE_VERSION,
            request_id: req.request_id.clone(),
            verdict,
        };
        let body = serde_json::to_vec(&msg).expect("a verdict message always encodes");
        if let Err(e) = self
            .bus
            .publish(QUEUE_VERDICTS, &req.request_id, body)
            .await
        {
            return self
                .give_back(&d, format!("publishing the verdict: {e}"))
                .await;
        }
        self.faults.after_publish(&req.request_id);
        self.metrics
            .judged(decision, req.samples.len(), started.elapsed());
        tracing::info!(
            ?decision,
            samples = req.samples.len(),
            ms = started.elapsed().as_millis() as u64,
            "verdict published"
        );
        if let Err(e) = self.bus.ack(&d).await {
            tracing::warn!(error = %e, "ack failed; the request will be redelivered");
        }
        Handled::Judged(decision)
    }

    async fn park(&self, d: &Delivery, outcome: Handled) -> Handled {
        match self.bus.nack(d, false).await {
            Ok(()) => outcome,
            Err(e) => Handled::Abandoned(format!("parking failed: {e}")),
        }
    }

    async fn give_back(&self, d: &Delivery, reason: String) -> Handled {
        if let Err(e) = self.bus.nack(d, true).await {
            tracing::debug!(message = %d.message_id, error = %e, "hand-back failed; the broker redelivers it");
        }
        Handled::Abandoned(reason)
    }

    /// Consume the `verify` queue until `shutdown`, judging at most `slots` requests at
    /// once; then let judgements in progress finish (up to [`SHUTDOWN_GRACE`]) and
    /// return.
    pub async fn serve(
        self: Arc<Self>,
        slots: u32,
        shutdown: CancellationToken,
    ) -> Result<(), VerifierDaemonError> {
        let permits = Arc::new(Semaphore::new(slots.max(1) as usize));
        let tracker = TaskTracker::new();
        tracing::info!(verifier = %self.me.short(), slots, "verifier serving");
        // The shared queue, and this verifier's own (escalated checks routed to it).
        let mut loops = Vec::new();
        for queue in [QUEUE_VERIFY.to_string(), verifier_queue(&self.me)] {
            let state = self.clone();
            let consumer = worker::consume(
                self.bus.clone(),
                queue.clone(),
                permits.clone(),
                tracker.clone(),
                shutdown.clone(),
                move |d| {
                    let state = state.clone();
                    async move {
                        state.handle_delivery(d).await;
                    }
                },
            );
            let stop = shutdown.clone();
            loops.push(tokio::spawn(async move {
                let end = consumer.await;
                stop.cancel();
                (queue, end)
            }));
        }
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
            tracing::warn!("judgements still running after the grace period; abandoning them");
        }
        tracing::info!(verifier = %self.me.short(), "verifier stopped");
        match closed {
            Some(queue) => Err(VerifierDaemonError::BusClosed(queue)),
            None => Ok(()),
        }
    }
}

fn refusal_kind(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::BadRequest { .. } | VerifyError::Check { .. } => "bad request",
        VerifyError::Rerender { .. } => "re-render failed",
    }
}

/// Why a delivered verify request is parked before it is judged.
#[derive(Debug, thiserror::Error)]
enum MalformedRequest {
    /// The body is not a `VerifyRequest` in JSON.
    #[error("json: {0}")]
    Json(serde_json::Error),
    /// Its wire version or id is wrong.
    #[error(transparent)]
    Wire(worker::WireError),
}

/// Decode a request and check what decoding cannot.
fn parse_request(body: &[u8]) -> Result<VerifyRequest, MalformedRequest> {
    let req: VerifyRequest = serde_json::from_slice(body).map_err(MalformedRequest::Json)?;
    worker::check_wire(req.version, &req.request_id, "request", "verifier")
        .map_err(MalformedRequest::Wire)?;
    Ok(req)
}

/// Run `tessera verifier` until `shutdown`: register with the coordinator (role
/// `verifier`), connect the bus with `connect` (given the registration answer, for the
/// AMQP namespace), both by [`worker::start`], and serve ([`VerifierState::serve`]).
pub async fn run_verifier<B, C, F>(
    cfg: VerifierDaemonConfig,
    connect: C,
    factory: Arc<dyn RendererFactory>,
    shutdown: CancellationToken,
) -> Result<(), VerifierDaemonError>
where
    B: Bus,
    C: FnOnce(RegisterResponse) -> F,
    F: Future<Output = Result<B, BusError>>,
{
    let metrics = match cfg.metrics_listen {
        Some(addr) => Some(tessera_node::metrics_http::bind(addr).await?),
        None => None,
    };
    let who = cfg.enrolment();
    let Some(started) = worker::start(who, factory.as_ref(), connect, &shutdown).await? else {
        return Ok(());
    };
    let own = verifier_queue(&cfg.key.public());
    if let Err(source) = started.bus.declare(&own).await {
        let what = format!("declaring queue {own}");
        return Err(StartError::Bus { what, source }.into());
    }
    let state = VerifierState::new(started.bus, cfg.key, started.scenes, factory);
    let state = Arc::new(state.with_faults(started.faults));
    if let Some(listener) = metrics {
        tracing::info!(listen = ?listener.local_addr().ok(), "metrics listener up (no token)");
        let shown = state.clone();
        let render: tessera_node::metrics_http::RenderMetrics =
            Arc::new(move || shown.metrics().text());
        tokio::spawn(tessera_node::metrics_http::serve(
            listener,
            render,
            shutdown.clone(),
        ));
    }
    state.serve(cfg.slots, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks;
    use tessera_bus::InProcessBus;
    use tessera_node::worker::StubFactory;
    use tessera_node::{DishonestMode, Node};
    use tessera_protocol::bundle::BatchRecord;
    use tessera_protocol::payments::{default_tiers, Pricing, SamplingPolicy};
    use tessera_protocol::sampling::nonce_commitment;
    use tessera_protocol::statements::{
        CheckKind, JobManifest, NodeSnapshot, RoundCommitment, Signed, MANIFEST_VERSION,
    };
    use tessera_protocol::tolerance::{Band, TileMetrics};
    use tessera_protocol::wire::{
        RenderTask, Requirements, SampledBlock, TaskTile, VerdictMessage,
    };
    use tessera_protocol::{tile_layout, RenderSettings, TileRenderer};

    /// A real request: a 2-tile job rendered by one node (honest or not), committed and
    /// sampled as the coordinator does it.
    fn request(
        verifier: PublicKey,
        cheat: Option<DishonestMode>,
        check: CheckKind,
    ) -> VerifyRequest {
        request_for(vec![verifier], cheat, check)
    }

    /// [`request`] for a job whose manifest names `verifiers`.
    fn request_for(
        verifiers: Vec<PublicKey>,
        cheat: Option<DishonestMode>,
        check: CheckKind,
    ) -> VerifyRequest {
        let coordinator = SecretKey::generate();
        let nonce = [5u8; 32];
        let settings = RenderSettings {
            width: 32,
            height: 16,
            spp: 4,
            max_bounces: 1,
            seed: 11,
            camera: None,
            frame_rate: Default::default(),
        };
        let manifest = JobManifest {
            version: MANIFEST_VERSION,
            job_id: [1; 16],
            client: "studio".into(),
            scene_name: "s.glb".into(),
            scene_hash: [9; 32],
            settings: settings.clone(),
            frame_start: 0,
            frame_end: 0,
            tile_size: 16,
            tier: default_tiers().remove(0),
            sampling: SamplingPolicy::default(),
            pricing: Pricing::default(),
            slash_pct: 10,
            challenge_window_secs: 0,
            nonce_commitments: vec![nonce_commitment(&nonce)],
            dispute_nonce_commitment: nonce_commitment(&[6u8; 32]),
            dispute_deposit_pct: 10,
            tolerance: Default::default(),
            verifiers,
            created_unix: 0,
        };
        let node_key = SecretKey::generate();
        let node_pub = node_key.public();
        let renderer: Arc<dyn TileRenderer> =
            Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO));
        let node = Node::new("n", node_key, manifest.scene_hash, renderer, cheat);
        let tiles = tile_layout(32, 16, 16)
            .into_iter()
            .enumerate()
            .map(|(i, rect)| TaskTile {
                tile_index: i as u32,
                rect,
            })
            .collect();
        let result = node
            .handle_task(&RenderTask {
                version: WIRE_VERSION,
                task_id: "t".into(),
                job_id: manifest.job_id,
                scene_hash: manifest.scene_hash,
                settings,
                frame: 0,
                round: 0,
                batch_id: 0,
                tiles,
                blocked: vec![],
                attempt: 0,
                requirements: Requirements::default(),
            })
            .unwrap();
        let batches: Vec<BatchRecord> = vec![result.batch.clone()];
        let commitment = Signed::sign(
            RoundCommitment {
                job_id: manifest.job_id,
                epoch: 0,
                round: 0,
                round_root: checks::round_root(&batches).unwrap(),
                n_batches: 1,
                nodes: vec![NodeSnapshot {
                    node: node_pub,
                    trust: 0,
                    stake: 0,
                }],
            },
            &coordinator,
        );
        let exp = checks::expected_sample(
            &manifest,
            &commitment.statement,
            &nonce,
            &batches,
            &node_pub,
            check,
        )
        .unwrap();
        let samples = checks::build_proofs(&batches, &node_pub, &exp.indices, &mut |_, pos| {
            Ok::<_, ()>(result.tiles[pos].bytes.clone())
        })
        .unwrap()
        .into_iter()
        .map(|(proof, delivered)| {
            let l = &batches[0].tiles[proof.position as usize];
            SampledBlock {
                frame: 0,
                tile_index: l.tile_index,
                rect: tessera_protocol::blocks::block_rect(l.rect, proof.block).unwrap(),
                committed_hash: proof.block_hash,
                delivered,
                proof,
            }
        })
        .collect();
        VerifyRequest {
            version: WIRE_VERSION,
            request_id: "req-1".into(),
            manifest: Signed::sign(manifest, &coordinator),
            commitment,
            round_batches: batches,
            check,
            dispute: None,
            nonce,
            node: node_pub,
            samples,
            first: None,
        }
    }

    fn state(bus: &InProcessBus) -> Arc<VerifierState<InProcessBus>> {
        Arc::new(VerifierState::new(
            bus.clone(),
            SecretKey::generate(),
            SceneSource::Fixed("scene.glb".into()),
            Arc::new(StubFactory::default()),
        ))
    }

    async fn deliver(bus: &InProcessBus, req: &VerifyRequest) -> Delivery {
        let body = serde_json::to_vec(req).unwrap();
        bus.publish(QUEUE_VERIFY, &req.request_id, body)
            .await
            .unwrap();
        bus.next(QUEUE_VERIFY).await.unwrap()
    }

    #[tokio::test]
    async fn honest_and_cheating_nodes_get_signed_verdicts() {
        let bus = InProcessBus::new();
        let v = state(&bus);
        // A first check never fails on a fuzzy mismatch: it escalates; the escalated
        // check (more samples) fails.
        for (cheat, check, want) in [
            (None, CheckKind::FIRST, Decision::Pass),
            (
                Some(DishonestMode::Black),
                CheckKind::FIRST,
                Decision::Escalate,
            ),
            (
                Some(DishonestMode::Black),
                CheckKind::FIRST.escalate(),
                Decision::Fail,
            ),
        ] {
            let req = request(v.public(), cheat, check);
            let d = deliver(&bus, &req).await;
            assert_eq!(v.handle_delivery(d).await, Handled::Judged(want));
            let out = bus.next(QUEUE_VERDICTS).await.unwrap();
            assert_eq!(out.message_id, "req-1");
            let msg: VerdictMessage = serde_json::from_slice(&out.body).unwrap();
            msg.verdict.verify().unwrap();
            assert_eq!(msg.verdict.signer, v.public());
            assert_eq!(msg.verdict.statement.node, req.node);
            assert_eq!(msg.verdict.statement.decision, want);
        }
        assert!(bus.dead_letters().is_empty());
        // One check per request, counted by decision.
        let text = v.metrics().text();
        for line in [
            "tessera_verifier_checks_total 3",
            "tessera_verifier_verdicts_total{decision=\"pass\"} 1",
            "tessera_verifier_verdicts_total{decision=\"escalate\"} 1",
            "tessera_verifier_verdicts_total{decision=\"fail\"} 1",
            "tessera_verifier_check_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[tokio::test]
    async fn malformed_and_refused_requests_are_parked() {
        let bus = InProcessBus::new();
        let v = state(&bus);
        bus.publish(QUEUE_VERIFY, "junk", b"[]".to_vec())
            .await
            .unwrap();
        let d = bus.next(QUEUE_VERIFY).await.unwrap();
        assert!(matches!(v.handle_delivery(d).await, Handled::Parked(_)));
        // Not named in the manifest: refused, no verdict.
        let mut req = request(SecretKey::generate().public(), None, CheckKind::FIRST);
        req.request_id = "req-2".into();
        let d = deliver(&bus, &req).await;
        assert!(
            matches!(v.handle_delivery(d).await, Handled::Refused(r) if r.contains("not named"))
        );
        let dead: Vec<_> = bus
            .dead_letters()
            .into_iter()
            .map(|d| d.message_id)
            .collect();
        assert_eq!(dead, ["junk", "req-2"]);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), bus.next(QUEUE_VERDICTS))
                .await
                .is_err()
        );
    }

    #[test]
    fn a_tampered_leaf_and_a_forged_verdict_are_named_by_their_variants() {
        let key = SecretKey::generate();
        let public = key.public();
        let renderer: Arc<dyn TileRenderer> =
            Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO));
        let verifier = Verifier::new(key, renderer);
        let req = request(public, None, CheckKind::FIRST);

        // A leaf changed after the node signed its batch: the batch check names the tile.
        let mut bad = req.clone();
        let signed_leaf = bad.round_batches[0].tiles[1].leaf;
        bad.round_batches[0].tiles[1].leaf[0] ^= 1;
        let err = verifier.handle_request(&bad).err();
        assert!(
            matches!(
                &err,
                Some(VerifyError::Check { id, source }) if id == "req-1" && matches!(
                    **source,
                    checks::CheckError::LeafMismatch { tile: 1, expected, .. }
                        if expected == signed_leaf
                )
            ),
            "{err:?}"
        );

        // An honest verdict re-derives; one whose first sample claims the wrong `matched`
        // is named with that sample's leaf.
        let mut verdict = verifier.handle_request(&req).unwrap().statement;
        let faults = |v: &tessera_protocol::statements::Verdict| verdict_faults(&req, v);
        assert_eq!(faults(&verdict), []);
        verdict.samples[0].matched = !verdict.samples[0].matched;
        let at = tessera_protocol::blocks::BlockRef {
            leaf: verdict.samples[0].leaf_index,
            block: verdict.samples[0].block,
        };
        let found = faults(&verdict);
        assert!(
            found.contains(&checks::VerdictFault::Matched { at }),
            "{found:?}"
        );
    }

    /// What the coordinator's and the auditor's re-derivation (`checks::verdict_errors`)
    /// finds wrong with `v` as the verdict on round 0's request `req` (signed by anyone:
    /// the re-derivation leaves the signature to `Signed::verify`).
    fn verdict_faults(
        req: &VerifyRequest,
        v: &tessera_protocol::statements::Verdict,
    ) -> Vec<checks::VerdictFault> {
        let v = Signed::sign(v.clone(), &SecretKey::generate());
        let m = &req.manifest.statement;
        let expected = checks::expected_sample(
            m,
            &req.commitment.statement,
            &req.nonce,
            &req.round_batches,
            &req.node,
            req.check,
        )
        .unwrap();
        let delivered: Vec<&[u8]> = req.samples.iter().map(|s| s.delivered.as_slice()).collect();
        let proofs: Vec<_> = req.samples.iter().map(|s| s.proof.clone()).collect();
        checks::verdict_errors(
            m,
            &req.round_batches,
            &req.node,
            0,
            req.check,
            &expected,
            &proofs,
            &delivered,
            &v,
            req.first.as_ref(),
        )
    }

    /// A request whose manifest is of another version is refused naming both versions,
    /// before its signature (the v2 manifest's no longer verifies once `block_far` is
    /// defaulted in; here the signature is simply left stale).
    #[test]
    fn a_manifest_of_another_version_is_refused_by_version() {
        let key = SecretKey::generate();
        let mut req = request(key.public(), None, CheckKind::FIRST);
        let verifier = Verifier::new(
            key,
            Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO)),
        );
        req.manifest.statement.version = 2;
        let err = verifier.handle_request(&req).unwrap_err().to_string();
        assert_eq!(err, "verify request req-1: manifest version 2, expected 3");
    }

    /// Two verifiers of the node's class (the stand-in's) that re-render its noisy blocks
    /// to the same bytes corroborate each other on the escalated check; the same verdict
    /// is only a same-class mismatch when its first render is its own, or absent, or has
    /// other bytes for every block, and is judged by tolerance alone when it claims
    /// another class than the node's.
    #[test]
    fn evidence_needs_two_verifiers_of_the_nodes_class_that_agree() {
        use crate::verify::{evidence, Evidence};
        use tessera_protocol::statements::Verdict;
        let (s1, s2) = ([31u8; 32], [32u8; 32]);
        let (k1, k2) = (SecretKey::from_seed(&s1), SecretKey::from_seed(&s2));
        let stub = || -> Arc<dyn TileRenderer> {
            Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO))
        };
        let (v1, v2) = (
            Verifier::new(SecretKey::from_seed(&s1), stub()),
            Verifier::new(SecretKey::from_seed(&s2), stub()),
        );
        let first_req = request_for(
            vec![k1.public(), k2.public()],
            Some(DishonestMode::Noise),
            CheckKind::FIRST,
        );
        let first = v1.handle_request(&first_req).unwrap();
        assert_eq!(first.statement.decision, Decision::Escalate);
        // 8 blocks, fewer than k: the escalated check samples the same ones.
        let mut req = first_req.clone();
        req.check = CheckKind::FIRST.escalate();
        req.first = Some(first.clone());
        let second = v2.handle_request(&req).unwrap();
        assert_eq!(second.statement.decision, Decision::Fail);
        let m = &req.manifest.statement;
        let of = |signer: &PublicKey, v: &Verdict, first: Option<&Signed<Verdict>>| {
            evidence(m, &req.round_batches, signer, v, first)
        };
        let v = &second.statement;
        assert_eq!(of(&k2.public(), v, Some(&first)), Evidence::Corroborated);
        assert_eq!(
            of(&k2.public(), &first.statement, None),
            Evidence::SameClassMismatch
        );
        // Its own first render corroborates nothing, nor does none.
        assert_eq!(
            of(&k1.public(), v, Some(&first)),
            Evidence::SameClassMismatch
        );
        assert_eq!(of(&k2.public(), v, None), Evidence::SameClassMismatch);
        // A first render with other bytes in every block, signed by its verifier.
        let mut other = first.statement.clone();
        for s in &mut other.samples {
            s.rerender_hash[0] ^= 1;
        }
        let other = Signed::sign(other, &k1);
        assert_eq!(
            of(&k2.public(), v, Some(&other)),
            Evidence::SameClassMismatch
        );
        // The same, signed by a key the manifest does not name, or not signed at all.
        let stranger = Signed::sign(first.statement.clone(), &SecretKey::generate());
        assert_eq!(
            of(&k2.public(), v, Some(&stranger)),
            Evidence::SameClassMismatch
        );
        let mut unsigned = first.clone();
        unsigned.signature[0] ^= 1;
        assert_eq!(
            of(&k2.public(), v, Some(&unsigned)),
            Evidence::SameClassMismatch
        );
        // A verdict of another class than the node's is judged by tolerance.
        let mut across = v.clone();
        across.verifier_class_id[0] ^= 1;
        assert_eq!(of(&k2.public(), &across, Some(&first)), Evidence::Tolerance);
    }

    /// The verdict sent with an escalated check must be the one on the check it
    /// escalates; a first check carries none. Anything else is refused, naming it, and no
    /// verdict is signed.
    #[test]
    fn the_first_verdict_sent_with_a_check_must_be_the_escalated_ones() {
        let key = SecretKey::generate();
        let public = key.public();
        let verifier = Verifier::new(
            key,
            Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO)),
        );
        let first_req = request(public, Some(DishonestMode::Noise), CheckKind::FIRST);
        let first = verifier.handle_request(&first_req).unwrap();
        assert_eq!(first.statement.decision, Decision::Escalate);

        let mut req = first_req.clone();
        req.first = Some(first.clone());
        let err = verifier.handle_request(&req).unwrap_err().to_string();
        assert_eq!(
            err,
            "verify request req-1: a first check carries the verdict of an earlier check"
        );

        // Another request's node (each `request` has a node of its own).
        let mut req = request(
            public,
            Some(DishonestMode::Noise),
            CheckKind::FIRST.escalate(),
        );
        req.first = Some(first.clone());
        let err = verifier.handle_request(&req).unwrap_err().to_string();
        assert!(err.contains("is not on the first check of node"), "{err}");

        // Signed by a key the manifest does not name.
        let mut req = first_req.clone();
        req.check = CheckKind::FIRST.escalate();
        req.first = Some(Signed::sign(
            first.statement.clone(),
            &SecretKey::generate(),
        ));
        let err = verifier.handle_request(&req).unwrap_err().to_string();
        assert!(err.contains("which the manifest does not name"), "{err}");
    }

    /// A sampled block whose delivered bytes do not hash to the committed block hash fails
    /// the node and is named `far` (not `close`, which its unmeasured `{0,0,0,0}`
    /// metrics give under the default `block_far`); the coordinator's and the auditor's
    /// re-derivation (`verdict_errors`) agrees with it, and refuses it relabelled `close`.
    #[test]
    fn a_tampered_delivery_is_named_far_and_re_derives() {
        let key = SecretKey::generate();
        // Noise: no block matches, so the tampered one is judged by its metrics.
        let mut req = request(key.public(), Some(DishonestMode::Noise), CheckKind::FIRST);
        let renderer: Arc<dyn TileRenderer> =
            Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO));
        let verifier = Verifier::new(key, renderer);
        req.samples[0].delivered[0] ^= 1;
        let mut verdict = verifier.handle_request(&req).unwrap().statement;
        assert_eq!(verdict.decision, Decision::Fail);
        let tampered = &verdict.samples[0];
        assert!(!tampered.delivered_ok && !tampered.matched, "{tampered:?}");
        assert_eq!(tampered.metrics, TileMetrics::default());
        assert_eq!(tampered.band, Band::Far);
        assert!(verdict.samples[1..].iter().all(|s| s.delivered_ok));
        assert_eq!(verdict.aggregate_band, Band::Far);

        let faults = |v: &tessera_protocol::statements::Verdict| verdict_faults(&req, v);
        assert_eq!(faults(&verdict), []);
        verdict.samples[0].band = Band::Close;
        let at = tessera_protocol::blocks::BlockRef {
            leaf: verdict.samples[0].leaf_index,
            block: verdict.samples[0].block,
        };
        assert_eq!(
            faults(&verdict),
            [checks::VerdictFault::Band {
                at,
                band: Band::Close
            }]
        );
    }

    #[tokio::test]
    async fn serve_judges_and_stops() {
        let bus = InProcessBus::new();
        let v = state(&bus);
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(v.clone().serve(2, shutdown.clone()));
        let req = request(v.public(), None, CheckKind::FIRST);
        bus.publish(QUEUE_VERIFY, "req-1", serde_json::to_vec(&req).unwrap())
            .await
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), bus.next(QUEUE_VERDICTS))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.message_id, "req-1");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
