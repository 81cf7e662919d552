//! `tessera render`: the whole verifiable pipeline in one process.
//!
//! Local nodes and a verifier run as tasks consuming the in-process bus, exactly as the
//! daemons consume RabbitMQ; GPU work runs on blocking threads. The coordinator drives
//! rounds: dispatch → collect and check batches → fix the round commitment → reveal the
//! round's nonce → sample per node → collect verdicts → pay or slash → requeue the tiles of
//! failed nodes into the next round.

use crate::bus::{Bus, InProcessBus};
use crate::job;
use crate::store::{Store, StoreError};
use rand::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tessera_node::Node;
use tessera_protocol::bundle::{
    BatchRecord, FinalTile, NodeInfo, ProofBundle, RoundRecord, BUNDLE_FORMAT, BUNDLE_VERSION,
};
use tessera_protocol::canonical::JobId;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{
    account, trust_after, Pricing, SamplingPolicy, TierPolicy, Transfer, TransferKind,
};
use tessera_protocol::rules::{escrow_transfer, verdict_transfers, NodeOutcome};
use tessera_protocol::statements::{
    CheckKind, Decision, JobManifest, NodeSnapshot, Signed, Verdict, MANIFEST_VERSION,
};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::wire::{
    BatchResult, RenderTask, VerdictMessage, VerifyRequest, QUEUE_RESULTS, QUEUE_TASKS,
    QUEUE_VERDICTS, QUEUE_VERIFY, WIRE_VERSION,
};
use tessera_protocol::{tile_layout, Digest, RenderSettings, TileRect};
use tessera_verifier::checks;
use tessera_verifier::Verifier;

pub use crate::job::MAX_ROUNDS;

/// Everything `tessera render` decides before running.
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
    /// Tier.
    pub tier: TierPolicy,
    /// Sampling policy.
    pub sampling: SamplingPolicy,
    /// Prices.
    pub pricing: Pricing,
    /// Stake slashed on failure, %.
    pub slash_pct: u32,
    /// Hold-back release delay; 0 releases when the job finishes.
    pub challenge_window_secs: u64,
    /// Stake each local node deposits when it has none.
    pub node_stake: u64,
    /// How re-renders of another class are judged.
    pub tolerance: Tolerance,
    /// Deposit to dispute the job, % of its price.
    pub dispute_deposit_pct: u32,
    /// How long to wait for any one message before giving up.
    pub message_timeout: Duration,
}

/// Pipeline failures.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// Nothing arrived in time.
    #[error("job {job}: waited {secs} s for {what} and nothing came")]
    Timeout {
        /// Job id.
        job: String,
        /// Seconds waited.
        secs: u64,
        /// What was awaited.
        what: String,
    },
    /// Tiles remain but every node failed.
    #[error("job {job}: {tiles} tiles still need rendering but every node failed verification; the client's escrow was refunded")]
    NoHonestNodes {
        /// Job id.
        job: String,
        /// Tiles left.
        tiles: usize,
    },
    /// A message could not be serialized.
    #[error("serializing {0}: {1}")]
    Encode(&'static str, String),
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
    /// Tiles re-rendered by the verifier.
    pub sampled: u32,
    /// The verdict.
    pub decision: Decision,
    /// Paid now, held back, slashed (micro-credits).
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
    /// Per node and round.
    pub reports: Vec<NodeReport>,
    /// Every transfer of the job.
    pub transfers: Vec<Transfer>,
}

/// The in-process farm: coordinator key, local nodes, one verifier, and the store.
pub struct EmbeddedFarm {
    /// Coordinator key.
    pub coordinator_key: SecretKey,
    /// Local nodes.
    pub nodes: Vec<Arc<Node>>,
    /// The verifier.
    pub verifier: Arc<Verifier>,
    /// The store.
    pub store: Store,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn encode<T: serde::Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, PipelineError> {
    serde_json::to_vec(v).map_err(|e| PipelineError::Encode(what, e.to_string()))
}

/// Run a node's consume loop: render tasks, publish results, ack after publishing.
async fn node_loop(bus: InProcessBus, node: Arc<Node>) {
    while let Some(d) = bus.next(QUEUE_TASKS).await {
        let task: RenderTask = match serde_json::from_slice(&d.body) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    node = node.name(),
                    task = d.message_id,
                    "malformed task parked: {e}"
                );
                let _ = bus.nack(&d, false).await;
                continue;
            }
        };
        if task.blocked.contains(&node.public()) {
            // This node failed on this job: give the task back for another node.
            let _ = bus.nack(&d, true).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let worker = node.clone();
        let result = tokio::task::spawn_blocking(move || worker.handle_task(&task)).await;
        match result {
            Ok(Ok(res)) => match serde_json::to_vec(&res) {
                Ok(body) => {
                    if bus.publish(QUEUE_RESULTS, &res.task_id, body).await.is_ok() {
                        let _ = bus.ack(&d).await;
                    }
                }
                Err(e) => tracing::error!(node = node.name(), "cannot encode result: {e}"),
            },
            Ok(Err(e)) => {
                tracing::error!(node = node.name(), "task failed: {e}");
                let _ = bus.nack(&d, false).await;
            }
            Err(e) => {
                tracing::error!(node = node.name(), "render thread died: {e}");
                let _ = bus.nack(&d, true).await;
            }
        }
    }
}

/// Run the verifier's consume loop.
async fn verifier_loop(bus: InProcessBus, verifier: Arc<Verifier>) {
    while let Some(d) = bus.next(QUEUE_VERIFY).await {
        let req: VerifyRequest = match serde_json::from_slice(&d.body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    request = d.message_id,
                    "malformed verify request parked: {e}"
                );
                let _ = bus.nack(&d, false).await;
                continue;
            }
        };
        let v = verifier.clone();
        match tokio::task::spawn_blocking(move || {
            v.handle_request(&req)
                .map(|verdict| (req.request_id, verdict))
        })
        .await
        {
            Ok(Ok((request_id, verdict))) => {
                let msg = VerdictMessage {
                    version: WIRE_VERSION,
                    request_id: request_id.clone(),
                    verdict,
                };
                if let Ok(body) = serde_json::to_vec(&msg) {
                    if bus.publish(QUEUE_VERDICTS, &request_id, body).await.is_ok() {
                        let _ = bus.ack(&d).await;
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::error!("verify request refused: {e}");
                let _ = bus.nack(&d, false).await;
            }
            Err(e) => {
                tracing::error!("verifier thread died: {e}");
                let _ = bus.nack(&d, true).await;
            }
        }
    }
}

impl EmbeddedFarm {
    /// Run one job to the end and return its frames, bundle and ledger effects.
    pub async fn run_job(&mut self, cfg: &JobConfig) -> Result<JobOutcome, PipelineError> {
        if self.nodes.is_empty() {
            return Err(PipelineError::Config("at least one node is needed".into()));
        }
        let bus = InProcessBus::new();
        let mut workers = Vec::new();
        for n in &self.nodes {
            workers.push(tokio::spawn(node_loop(bus.clone(), n.clone())));
        }
        workers.push(tokio::spawn(verifier_loop(
            bus.clone(),
            self.verifier.clone(),
        )));
        let result = self.drive(&bus, cfg).await;
        for w in workers {
            w.abort();
        }
        result
    }

    async fn recv(
        &self,
        bus: &InProcessBus,
        queue: &str,
        cfg: &JobConfig,
        job: &str,
        what: &str,
    ) -> Result<crate::bus::Delivery, PipelineError> {
        match tokio::time::timeout(cfg.message_timeout, bus.next(queue)).await {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(crate::bus::BusError::Closed(queue.into()).into()),
            Err(_) => Err(PipelineError::Timeout {
                job: job.into(),
                secs: cfg.message_timeout.as_secs(),
                what: what.into(),
            }),
        }
    }

    async fn drive(
        &mut self,
        bus: &InProcessBus,
        cfg: &JobConfig,
    ) -> Result<JobOutcome, PipelineError> {
        // Submit: manifest with nonce commitments, escrow, node registration.
        let mut job_id: JobId = [0; 16];
        rand::rngs::OsRng.fill_bytes(&mut job_id);
        let job = hex::encode(job_id);
        let nonces = job::fresh_nonces();
        let (nonce_commitments, dispute_nonce_commitment) = job::nonce_commitments(&nonces);
        let manifest = JobManifest {
            version: MANIFEST_VERSION,
            job_id,
            client: cfg.client.clone(),
            scene_name: cfg.scene_name.clone(),
            scene_hash: cfg.scene_hash,
            settings: cfg.settings.clone(),
            frame_start: cfg.frame_start,
            frame_end: cfg.frame_end,
            tile_size: cfg.tile_size,
            tier: cfg.tier.clone(),
            sampling: cfg.sampling.clone(),
            pricing: cfg.pricing.clone(),
            slash_pct: cfg.slash_pct,
            challenge_window_secs: cfg.challenge_window_secs,
            nonce_commitments,
            dispute_nonce_commitment,
            dispute_deposit_pct: cfg.dispute_deposit_pct,
            tolerance: cfg.tolerance,
            verifiers: vec![self.verifier.public()],
            created_unix: now_unix(),
        };
        let signed_manifest = Signed::sign(manifest.clone(), &self.coordinator_key);
        let manifest_json =
            String::from_utf8(encode("manifest", &signed_manifest)?).unwrap_or_default();
        self.store
            .insert_job(&job, &manifest_json, manifest.created_unix, &nonces)?;
        let span = tracing::info_span!("job", job = %&job[..12]);
        let _enter = span.enter();

        // The client deposits what the job costs (the embedded farm's client has a bank),
        // then the escrow is funded before anything is dispatched.
        let escrow = escrow_transfer(&manifest);
        let client_acct = account::client(&cfg.client);
        let have = self.store.balance(&client_acct)?;
        if i128::from(have) < i128::from(escrow.amount) {
            let top_up = escrow.amount - have.max(0) as u64;
            self.store.apply_transfer(
                None,
                &Transfer {
                    key: format!("job:{job}:deposit"),
                    kind: TransferKind::Deposit,
                    from: account::external("client-bank"),
                    to: client_acct.clone(),
                    amount: top_up,
                    round: 0,
                    tiles: 0,
                },
            )?;
        }
        self.store.apply_transfer(Some(&job), &escrow)?;
        let mut names: BTreeMap<PublicKey, String> = BTreeMap::new();
        let mut infos = Vec::new();
        for n in &self.nodes {
            let key = n.public();
            names.insert(key, n.name().to_string());
            self.store.upsert_node(
                &key.to_string(),
                n.name(),
                &String::from_utf8(encode("class", n.class())?).unwrap_or_default(),
            )?;
            let stake_acct = account::stake(&key);
            if self.store.balance(&stake_acct)? <= 0 && cfg.node_stake > 0 {
                self.store.apply_transfer(
                    None,
                    &Transfer {
                        key: format!("stake:{key}:{job}"),
                        kind: TransferKind::Deposit,
                        from: account::external("node-deposits"),
                        to: stake_acct,
                        amount: cfg.node_stake,
                        round: 0,
                        tiles: 0,
                    },
                )?;
            }
            infos.push(NodeInfo {
                key,
                name: n.name().to_string(),
                class: n.class().clone(),
            });
        }
        infos.sort_by_key(|i| i.key);

        let layout = tile_layout(cfg.settings.width, cfg.settings.height, cfg.tile_size);
        let mut pending: Vec<(u32, u32)> = (cfg.frame_start..=cfg.frame_end)
            .flat_map(|f| (0..layout.len() as u32).map(move |t| (f, t)))
            .collect();
        let mut blocked: Vec<PublicKey> = Vec::new();
        let mut rounds: Vec<RoundRecord> = Vec::new();
        let mut reports = Vec::new();
        let mut accepted: BTreeMap<(u32, u32), FinalTile> = BTreeMap::new();
        let mut next_batch_id: u32 = 0;

        for round in 0..MAX_ROUNDS {
            if pending.is_empty() {
                break;
            }
            self.store.set_job_state(&job, "rendering")?;
            // Dispatch: batches of up to batch_size tiles of one frame.
            let planned = job::plan_tasks(
                &manifest,
                &layout,
                &pending,
                cfg.batch_size,
                round,
                next_batch_id,
                &blocked,
                &Default::default(),
            );
            next_batch_id += planned.len() as u32;
            let mut tasks: BTreeMap<String, RenderTask> = BTreeMap::new();
            for task in planned {
                bus.publish(QUEUE_TASKS, &task.task_id, encode("task", &task)?)
                    .await?;
                tasks.insert(task.task_id.clone(), task);
            }
            tracing::info!(
                round,
                tasks = tasks.len(),
                tiles = pending.len(),
                "dispatched"
            );

            // Collect: check every batch against its task and its own commitment.
            let mut batches: BTreeMap<u32, BatchRecord> = BTreeMap::new();
            let mut delivered: BTreeMap<(u32, u32), Vec<u8>> = BTreeMap::new();
            while batches.len() < tasks.len() {
                let d = self
                    .recv(bus, QUEUE_RESULTS, cfg, &job, "batch results")
                    .await?;
                match self.check_result(&d.body, &tasks, &manifest, &layout, &blocked) {
                    Ok(res) => {
                        let s = &res.batch.signed.statement;
                        let fresh = self.store.insert_result(&job, round, &res)?;
                        bus.ack(&d).await?;
                        if fresh && !batches.contains_key(&s.batch_id) {
                            for t in &res.tiles {
                                delivered.insert((s.frame, t.tile_index), t.bytes.clone());
                            }
                            batches.insert(s.batch_id, res.batch);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(message = d.message_id, "result refused: {reason}");
                        bus.nack(&d, false).await?;
                        if let Some(task) = tasks.get(&d.message_id) {
                            if !batches.contains_key(&task.batch_id) {
                                bus.publish(QUEUE_TASKS, &task.task_id, encode("task", task)?)
                                    .await?;
                            }
                        }
                    }
                }
            }
            let batches: Vec<BatchRecord> = batches.into_values().collect();

            // Fix the round: commitment over every batch, with trust and stake snapshots.
            self.store.set_job_state(&job, "verifying")?;
            let round_nodes: BTreeSet<PublicKey> =
                batches.iter().map(|b| b.signed.statement.node).collect();
            let mut snapshots = Vec::new();
            for n in &round_nodes {
                snapshots.push(NodeSnapshot {
                    node: *n,
                    trust: self.store.trust(&n.to_string())?,
                    stake: self.store.balance(&account::stake(n))?.max(0) as u64,
                });
            }
            let commitment = job::commit_round(
                &manifest,
                round,
                &batches,
                snapshots.clone(),
                &self.coordinator_key,
            )
            .map_err(PipelineError::Config)?;
            self.store.insert_round(
                &job,
                round,
                &String::from_utf8(encode("round", &commitment)?).unwrap_or_default(),
            )?;
            // Only now is the round's nonce revealed.
            let nonce = self.store.reveal_nonce(&job, round)?;

            // Sample per node and ask the verifier; an escalated verdict asks again, with
            // more samples, before anything is paid or slashed.
            let mut samples = Vec::new();
            let mut all_verdicts = Vec::new();
            let mut requests: BTreeMap<String, VerifyRequest> = BTreeMap::new();
            let mut verdicts: BTreeMap<PublicKey, Signed<Verdict>> = BTreeMap::new();
            let mut ask = Vec::from_iter(round_nodes.iter().map(|n| (*n, CheckKind::FIRST)));
            while !ask.is_empty() || !requests.is_empty() {
                for (n, check) in ask.drain(..) {
                    let (req, record) = job::verify_request(
                        &signed_manifest,
                        &commitment,
                        &batches,
                        nonce,
                        &n,
                        job::CheckOf {
                            kind: check,
                            dispute: None,
                        },
                        &mut |frame, tile| {
                            delivered.get(&(frame, tile)).cloned().unwrap_or_default()
                        },
                    )
                    .map_err(PipelineError::Config)?;
                    let request_id = req.request_id.clone();
                    bus.publish(QUEUE_VERIFY, &request_id, encode("verify request", &req)?)
                        .await?;
                    requests.insert(request_id, req);
                    samples.push(record);
                }
                let d = self
                    .recv(bus, QUEUE_VERDICTS, cfg, &job, "verdicts")
                    .await?;
                let msg: Result<VerdictMessage, _> = serde_json::from_slice(&d.body);
                let checked = msg
                    .map_err(|e| format!("malformed verdict: {e}"))
                    .and_then(|m| {
                        let req = requests.get(&m.request_id).ok_or_else(|| {
                            format!("verdict for unknown or answered request {}", m.request_id)
                        })?;
                        job::check_verdict(&m, req)?;
                        Ok((m.request_id, m.verdict))
                    });
                match checked {
                    Ok((request_id, v)) => {
                        let node = v.statement.node;
                        self.store.insert_verdict(
                            &job,
                            round,
                            &node.to_string(),
                            v.statement.check,
                            &String::from_utf8(encode("verdict", &v)?).unwrap_or_default(),
                        )?;
                        bus.ack(&d).await?;
                        requests.remove(&request_id);
                        all_verdicts.push(v.clone());
                        if v.statement.decision == Decision::Escalate {
                            tracing::warn!(
                                node = names.get(&node).cloned().unwrap_or_else(|| node.short()),
                                round,
                                "a sampled tile is not close to the re-render: escalated"
                            );
                            ask.push((node, v.statement.check.escalate()));
                        } else {
                            verdicts.insert(node, v);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(message = d.message_id, "verdict refused: {reason}");
                        bus.nack(&d, false).await?;
                    }
                }
            }

            let mut next_pending = Vec::new();
            for (node, v) in &verdicts {
                let leaves = checks::node_leaves(&batches, node);
                let rects: Vec<TileRect> = leaves
                    .iter()
                    .map(|&(bi, pos)| batches[bi].tiles[pos].rect)
                    .collect();
                let snap = NodeSnapshot::of(&snapshots, node);
                let outcome = NodeOutcome {
                    round,
                    node: *node,
                    decision: v.statement.decision,
                    tiles: rects,
                    stake_before: snap.stake,
                };
                let transfers = verdict_transfers(&manifest, &outcome, manifest.slash_pct);
                self.store.set_trust(
                    &node.to_string(),
                    trust_after(snap.trust, v.statement.decision),
                )?;
                for t in &transfers {
                    self.store.apply_capped(Some(&job), t)?;
                }
                let sum = |k: TransferKind| {
                    transfers
                        .iter()
                        .filter(|t| t.kind == k)
                        .map(|t| t.amount)
                        .sum::<u64>()
                };
                let name = names.get(node).cloned().unwrap_or_else(|| node.short());
                match v.statement.decision {
                    Decision::Pass => {
                        accepted.extend(job::accepted_tiles(&batches, node, round));
                    }
                    Decision::Fail | Decision::Inconclusive | Decision::Escalate => {
                        if v.statement.decision == Decision::Fail {
                            tracing::warn!(
                                node = name,
                                round,
                                "verification failed: node unpaid, slashed, tiles requeued"
                            );
                        } else {
                            tracing::warn!(
                                node = name,
                                round,
                                "verification inconclusive: node neither paid nor slashed, tiles requeued"
                            );
                        }
                        blocked.push(*node);
                        next_pending.extend(job::committed_tiles(&batches, node));
                    }
                }
                reports.push(NodeReport {
                    name,
                    key: *node,
                    round,
                    tiles: leaves.len() as u32,
                    sampled: v.statement.samples.len() as u32,
                    decision: v.statement.decision,
                    paid: sum(TransferKind::PayOnPass),
                    held: sum(TransferKind::HoldBack),
                    slashed: sum(TransferKind::Slash),
                });
            }
            rounds.push(RoundRecord {
                round,
                batches,
                commitment,
                nonce,
                samples,
                verdicts: all_verdicts,
            });
            next_pending.sort_unstable();
            pending = next_pending;
            if !pending.is_empty() && self.nodes.iter().all(|n| blocked.contains(&n.public())) {
                break;
            }
        }

        if !pending.is_empty() {
            self.store.refund_escrow(&job, &cfg.client)?;
            self.store.set_job_state(&job, "failed")?;
            return Err(PipelineError::NoHonestNodes {
                job,
                tiles: pending.len(),
            });
        }

        // Final frames, roots, releases, receipt, bundle.
        let store = &self.store;
        let job::Assembled {
            frames: frame_tiles,
            pixels: frames_out,
            roots,
        } = job::assemble(
            &manifest,
            &accepted,
            &mut |round, frame, tile| store.stored_tile(&job, round, frame, tile),
            &self.coordinator_key,
        )
        .map_err(PipelineError::Config)?;

        if cfg.challenge_window_secs == 0 {
            self.store.release_holdbacks(&manifest)?;
        }
        let receipt = self.store.job_receipt(&job, job_id)?;
        let transfers = receipt.transfers.clone();
        let payments = Signed::sign(receipt, &self.coordinator_key);
        let bundle = ProofBundle {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            manifest: signed_manifest,
            nodes: infos,
            rounds,
            frames: frame_tiles,
            roots,
            disputes: Vec::new(),
            payments,
            scene_hint: cfg.scene_hint.clone(),
        };
        self.store.save_bundle(
            &job,
            &String::from_utf8(encode("bundle", &bundle)?).unwrap_or_default(),
        )?;
        self.store.set_job_state(&job, "done")?;
        Ok(JobOutcome {
            job_id: job,
            bundle,
            frames: frames_out,
            reports,
            transfers,
        })
    }

    /// Check one batch result: parse, match its task, then [`job::check_result`].
    fn check_result(
        &self,
        body: &[u8],
        tasks: &BTreeMap<String, RenderTask>,
        manifest: &JobManifest,
        layout: &[TileRect],
        blocked: &[PublicKey],
    ) -> Result<BatchResult, String> {
        let res: BatchResult =
            serde_json::from_slice(body).map_err(|e| format!("malformed result: {e}"))?;
        let task = tasks
            .get(&res.task_id)
            .ok_or_else(|| format!("result for unknown task {}", res.task_id))?;
        let signer = res.batch.signed.statement.node;
        let known = self.nodes.iter().any(|n| n.public() == signer);
        job::check_result(&res, task, manifest, layout, known, blocked)?;
        Ok(res)
    }
}
