//! One simulated job, end to end through the real code: a signed manifest with committed
//! nonces, driven by the coordinator's job state machine ([`Job`]: tasks, result checks,
//! the round commitment, the revealed nonce, verify requests, escalation to a second
//! verifier (of the node's class after a same-class mismatch, else of the other class),
//! failed nodes' tiles re-rendered in the next round,
//! payments), with batches rendered and signed by [`Node`]s, verdicts from [`Verifier`]s,
//! and the machine's transfers applied to a [`Ledger`].

use crate::renderers::{Forger, Memo, OtherClass, TilePlan};
use crate::stats::{catch_probability, digest, Forged, Money, Tally, CATCH_SCALE};
use crate::SimConfig;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tessera_coordinator::job::{self, DISPUTE_NONCE_SLOT};
use tessera_coordinator::machine::{
    Ctx, Effect, Farm as MachineFarm, Handled, Input, Job, JobSetup, JobState, MachineError,
    NodeView, Nonces, Outgoing, Policy, Tiles, VerifierView,
};
use tessera_node::stub::HashRenderer;
use tessera_node::{Node, NodeError};
use tessera_protocol::blocks::n_blocks;
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::canonical;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{account, Ledger, LedgerError, Pricing, Transfer, TransferKind};
use tessera_protocol::rules::job_price;
use tessera_protocol::statements::{
    CheckKind, Decision, JobManifest, PaymentReceipt, Signed, Verdict, MANIFEST_VERSION,
};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::wire::{
    node_queue, verifier_queue, Capabilities, RenderTask, Requirements, VerdictMessage,
    WIRE_VERSION,
};
use tessera_protocol::{tile_layout, Digest, RenderSettings, TileRect, TileRenderer};
use tessera_verifier::{Verifier, VerifyError};

/// Frames of a job: the cheater renders frame 0, the honest node of its class frame 1,
/// the honest node of the other class frame 2 (in round 0; later rounds go to an honest
/// node that has not failed).
pub const FRAMES: u32 = 3;

/// Stake every node has when a job starts, micro-credits.
pub const NODE_STAKE: u64 = 1_000_000;

/// Percentage of the stake slashed on a fail (the `render` default).
const SLASH_PCT: u32 = 50;

/// Percentage of the price a dispute deposit takes (no dispute is simulated).
const DISPUTE_DEPOSIT_PCT: u32 = 10;

/// The simulated client.
const CLIENT: &str = "simulated-client";

/// How a simulated job broke a rule of the protocol: the real code refused what honest
/// parties sent it, or the job ended in a state it must never end in. A bug, never a
/// detection.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A node could not render its task.
    #[error(transparent)]
    Render(#[from] NodeError),
    /// A verifier refused a check request.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The job state machine found an input it should never have let in.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The ledger refused a transfer the machine asked for.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The machine refused (or dropped as superseded) a message of an honest party.
    #[error("the coordinator refused an honest message: {why}")]
    Refused {
        /// The machine's reason.
        why: String,
    },
    /// A later round's task blocks every honest node.
    #[error("every honest node is blocked")]
    AllBlocked,
    /// An escalated check asked for escalation again.
    #[error("an escalated check escalated again")]
    EscalatedTwice,
    /// A slash found the stake it takes from empty.
    #[error("slash {key} found the stake empty")]
    StakeEmpty {
        /// The transfer's key.
        key: String,
    },
    /// The machine sent nothing more, but the job is neither done nor failed.
    #[error("the job stopped while {state}")]
    Stopped {
        /// Where it stopped.
        state: JobState,
    },
    /// The job ended with money left in its escrow.
    #[error("the job ended with {left} left in escrow")]
    EscrowLeft {
        /// What is left, micro-credits.
        left: i128,
    },
}

/// What one simulated job left behind, for tests of its ledger ([`crate::run_job`]):
/// read-only copies of what the job's driver saw, kept after the job ended.
#[derive(Clone, Debug)]
pub struct JobRecord {
    /// What the job counted.
    pub tally: Tally,
    /// The job's proof bundle (`None`: the job failed).
    pub bundle: Option<ProofBundle>,
    /// The job's receipt as its machine lists it at the end (a failed job's too).
    pub receipt: PaymentReceipt,
    /// Why the job failed, as its machine said (`None`: it is done).
    pub failed: Option<String>,
    /// Every transfer applied to the job's ledger, in order: the simulation's deposits
    /// (the client's and each node's stake), then the machine's transfers.
    pub applied: Vec<Transfer>,
    /// The ledger's balances when the job ended.
    pub balances: BTreeMap<String, i128>,
    /// The cheating node.
    pub cheater: PublicKey,
    /// The honest nodes: of the cheater's class, then of the other class.
    pub honest: [PublicKey; 2],
    /// The coordinator, which signs the manifest and the receipt.
    pub coordinator: PublicKey,
}

/// Who a node is in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Cheater,
    HonestSame,
    HonestOther,
}

/// One worker's farm: the coordinator key, the honest node of the cheater's class and the
/// two verifiers of that class (all on the memoized stand-in), and the seeds of the keys
/// of the per-job parties. Keys are derived from the seed, so every worker has the same
/// farm.
pub struct Farm {
    coordinator: SecretKey,
    cheater_seed: Digest,
    other_seed: Digest,
    second_seed: Digest,
    keys: [PublicKey; 3],
    same_class: Arc<dyn TileRenderer>,
    honest_same: Node,
    first: Verifier,
    /// The second verifier of the cheater's class: the machine sends it the escalated
    /// check after a same-class mismatch, so that two renders of the class can agree.
    same_second: Verifier,
    second_key: PublicKey,
    scene_hash: Digest,
}

/// The parties that depend on the job: the cheater (its forger draws from the job's
/// salt), and the honest node and verifier of the other class (bound to the job's scene,
/// which decides where that class drifts).
struct JobParties {
    cheater: Node,
    forger: Arc<Forger>,
    honest_other: Node,
    second: Verifier,
}

fn key_seed(seed: u64, role: &str) -> Digest {
    digest(&[
        b"tessera simulate key",
        &seed.to_le_bytes(),
        role.as_bytes(),
    ])
}

impl Farm {
    /// A farm for `cfg` (its stand-in memoized unless `cfg.render_cache` is off).
    pub fn new(cfg: &SimConfig) -> Self {
        let stub: Arc<dyn TileRenderer> = Arc::new(HashRenderer::new(std::time::Duration::ZERO));
        let same_class: Arc<dyn TileRenderer> = if cfg.render_cache {
            Arc::new(Memo::new(stub))
        } else {
            stub
        };
        let scene_hash = digest(&[b"tessera simulate scene"]);
        let cheater_seed = key_seed(cfg.seed, "cheater");
        let other_seed = key_seed(cfg.seed, "honest other");
        let second_seed = key_seed(cfg.seed, "verifier other");
        let honest_same = Node::new(
            "honest-same-class",
            SecretKey::from_seed(&key_seed(cfg.seed, "honest same")),
            scene_hash,
            same_class.clone(),
            None,
        );
        Self {
            coordinator: SecretKey::from_seed(&key_seed(cfg.seed, "coordinator")),
            keys: [
                SecretKey::from_seed(&cheater_seed).public(),
                honest_same.public(),
                SecretKey::from_seed(&other_seed).public(),
            ],
            cheater_seed,
            other_seed,
            second_key: SecretKey::from_seed(&second_seed).public(),
            second_seed,
            first: Verifier::new(
                SecretKey::from_seed(&key_seed(cfg.seed, "verifier same")),
                same_class.clone(),
            ),
            same_second: Verifier::new(
                SecretKey::from_seed(&key_seed(cfg.seed, "verifier same second")),
                same_class.clone(),
            ),
            honest_same,
            same_class,
            scene_hash,
        }
    }

    fn parties(&self, cfg: &SimConfig, salt: Digest) -> JobParties {
        let forger = Arc::new(Forger::new(
            self.same_class.clone(),
            salt,
            cfg.forged_fraction,
            cfg.shape,
        ));
        let other: Arc<dyn TileRenderer> = Arc::new(OtherClass::new(self.same_class.clone(), salt));
        JobParties {
            cheater: Node::new(
                "cheater",
                SecretKey::from_seed(&self.cheater_seed),
                self.scene_hash,
                forger.clone(),
                None,
            ),
            forger,
            honest_other: Node::new(
                "honest-other-class",
                SecretKey::from_seed(&self.other_seed),
                self.scene_hash,
                other.clone(),
                None,
            ),
            second: Verifier::new(SecretKey::from_seed(&self.second_seed), other),
        }
    }

    fn role(&self, node: &PublicKey) -> Role {
        if *node == self.keys[0] {
            Role::Cheater
        } else if *node == self.keys[1] {
            Role::HonestSame
        } else {
            Role::HonestOther
        }
    }

    /// The manifest of job `index`, signed, with the job's nonces (one per round, then
    /// the dispute nonce) and its salt.
    fn manifest(&self, cfg: &SimConfig, index: u64) -> (Signed<JobManifest>, Vec<Digest>, Digest) {
        let salt = digest(&[
            b"tessera simulate job",
            &cfg.seed.to_le_bytes(),
            &index.to_le_bytes(),
        ]);
        let mut job_id = [0u8; 16];
        job_id.copy_from_slice(&digest(&[b"job id", &salt])[..16]);
        let nonces: Vec<Digest> = (0..=DISPUTE_NONCE_SLOT)
            .map(|i| digest(&[b"nonce", &salt, &i.to_le_bytes()]))
            .collect();
        let (nonce_commitments, dispute_nonce_commitment) = job::nonce_commitments(&nonces);
        let manifest = JobManifest {
            version: MANIFEST_VERSION,
            job_id,
            client: CLIENT.into(),
            scene_name: "simulated".into(),
            scene_hash: self.scene_hash,
            settings: RenderSettings {
                width: cfg.tiles * cfg.tile_size,
                height: cfg.tile_size,
                spp: cfg.spp,
                max_bounces: 0,
                seed: cfg.seed,
                camera: None,
                frame_rate: Default::default(),
            },
            frame_start: 0,
            frame_end: FRAMES - 1,
            tile_size: cfg.tile_size,
            tier: cfg.tier.clone(),
            sampling: cfg.sampling.clone(),
            pricing: Pricing::default(),
            slash_pct: SLASH_PCT,
            challenge_window_secs: 0,
            nonce_commitments,
            dispute_nonce_commitment,
            dispute_deposit_pct: DISPUTE_DEPOSIT_PCT,
            tolerance: Tolerance::default(),
            verifiers: vec![
                self.first.public(),
                self.same_second.public(),
                self.second_key,
            ],
            // Simulated: no clock, so that a seed gives the same bytes every time.
            created_unix: 0,
        };
        (Signed::sign(manifest, &self.coordinator), nonces, salt)
    }

    /// Run job `index` to its end through the job state machine and count what
    /// happened. The nodes and verifiers answer the machine's messages in the order it
    /// sends them, on a virtual clock that never moves (nothing here waits on a lease).
    pub fn run(&self, cfg: &SimConfig, index: u64) -> Result<Tally, JobError> {
        self.run_recorded(cfg, index).map(|r| r.tally)
    }

    /// [`Farm::run`], keeping what the job left behind: its bundle, receipt, applied
    /// transfers and balances.
    pub fn run_recorded(&self, cfg: &SimConfig, index: u64) -> Result<JobRecord, JobError> {
        let (signed, nonces, salt) = self.manifest(cfg, index);
        let parties = self.parties(cfg, salt);
        let forger = &parties.forger;
        let layout = tile_layout(
            signed.statement.settings.width,
            signed.statement.settings.height,
            cfg.tile_size,
        );
        let mut tally = Tally {
            jobs: 1,
            ..Default::default()
        };
        // The cheater renders frame 0 in round 0 (`renderer_for`), and only then.
        let plans: Vec<TilePlan> = layout.iter().map(|r| forger.plan(0, *r, cfg.spp)).collect();
        tally.forged = forged_work(&layout, &plans, cfg);
        let forged = tally.forged.tiles;
        tally.forged_tiles = forged;
        tally.cheaters_without_forgery = u64::from(tally.forged.pixels == 0);

        let mut world = World::new(self, &parties, cfg, &signed.statement);
        let job_hex = hex::encode(signed.statement.job_id);
        let mut tiles = Kept::default();
        let mut queue: VecDeque<(String, Outgoing)> = VecDeque::new();
        let mut machine = Job::start(
            signed,
            Nonces::from_vec(nonces),
            JobSetup {
                batch_size: cfg.batch,
                requirements: Requirements::default(),
                min_trust: 0,
                scene_hint: None,
            },
            Policy::default(),
            &world.ctx(&tiles, &self.coordinator),
        );
        world.carry_out(&mut machine, &mut tiles, &mut queue, &mut tally)?;
        let mut last_round = 0;
        while let Some((to, message)) = queue.pop_front() {
            let input = match message {
                Outgoing::Task(task) => {
                    last_round = last_round.max(task.round);
                    let node = self.renderer_for(&parties, &to, &task)?;
                    let res = node.handle_task(&task)?;
                    tally.rendered += res
                        .tiles
                        .iter()
                        .map(|t| canonical::pixels(&t.bytes))
                        .sum::<u64>();
                    Input::Result(res)
                }
                Outgoing::Check(req) => {
                    let verifier = if to == verifier_queue(&self.second_key) {
                        &parties.second
                    } else if to == verifier_queue(&self.same_second.public()) {
                        &self.same_second
                    } else {
                        &self.first
                    };
                    let verdict = verifier.handle_request(&req)?;
                    let v = &verdict.statement;
                    let role = self.role(&v.node);
                    tally.rerendered += req
                        .samples
                        .iter()
                        .map(|s| canonical::pixels(&s.delivered))
                        .sum::<u64>();
                    for s in &v.samples {
                        tally.bands.add_one(s.band);
                        if role == Role::HonestOther {
                            tally.other_class_bands.add_one(s.band);
                        }
                    }
                    if role == Role::Cheater {
                        count_cheater_check(&mut tally, v, &layout, &plans);
                    }
                    count_decision(&mut tally, role, v.check, v.decision, forged)?;
                    Input::Verdict(VerdictMessage {
                        version: WIRE_VERSION,
                        request_id: req.request_id.clone(),
                        verdict,
                    })
                }
            };
            let ctx = world.ctx(&tiles, &self.coordinator);
            match machine.handle(input, &ctx)? {
                Handled::Done => {}
                Handled::Refused(why) | Handled::Superseded(why) => {
                    return Err(JobError::Refused { why })
                }
            }
            world.carry_out(&mut machine, &mut tiles, &mut queue, &mut tally)?;
        }
        tally.extra_rounds = u64::from(last_round);
        match machine.state() {
            JobState::Done | JobState::Failed => {}
            state => return Err(JobError::Stopped { state }),
        }
        let left = world.ledger.balance(&account::escrow(&job_hex));
        if left != 0 {
            return Err(JobError::EscrowLeft { left });
        }
        let total = world.ledger.total();
        tally.money.total = total as i64;
        tally.money.unbalanced_jobs = u64::from(total != 0);
        Ok(JobRecord {
            tally,
            bundle: world.bundle.map(|b| *b),
            receipt: machine.receipt(),
            failed: world.failed,
            applied: world.applied,
            balances: world.ledger.balances().clone(),
            cheater: self.keys[0],
            honest: [self.keys[1], self.keys[2]],
            coordinator: self.coordinator.public(),
        })
    }

    /// The node that takes a task from `queue`: its own queue's owner, else in round 0
    /// frame 0 the cheater, frame 1 the honest node of its class, frame 2 the honest node
    /// of the other class; later rounds an honest node the task does not block.
    fn renderer_for<'a>(
        &'a self,
        parties: &'a JobParties,
        queue: &str,
        task: &RenderTask,
    ) -> Result<&'a Node, JobError> {
        let nodes = [&parties.cheater, &self.honest_same, &parties.honest_other];
        if let Some(n) = nodes.iter().find(|n| node_queue(&n.public()) == queue) {
            return Ok(n);
        }
        Ok(match (task.round, task.frame) {
            (0, 0) => &parties.cheater,
            (0, 1) => &self.honest_same,
            (0, _) => &parties.honest_other,
            _ => [&self.honest_same, &parties.honest_other]
                .into_iter()
                .find(|n| !task.blocked.contains(&n.public()))
                .ok_or(JobError::AllBlocked)?,
        })
    }
}

/// What the cheater forged in the tiles `layout` of frame 0 it commits in round 0 (its
/// `plans`), and the chance that its first check samples a forged pixel.
fn forged_work(layout: &[TileRect], plans: &[TilePlan], cfg: &SimConfig) -> Forged {
    let mut f = Forged::default();
    let mut blocks = 0u64;
    for (&rect, plan) in layout.iter().zip(plans) {
        f.committed_pixels += rect.pixels();
        f.committed_samples += rect.pixels() * u64::from(cfg.spp);
        let pixels = plan.forged_pixels(rect);
        f.tiles += u64::from(pixels > 0);
        f.pixels += pixels;
        f.samples += plan.forged_samples(rect, cfg.spp);
        f.touched_pixels += plan.touched_pixels(rect);
        blocks += u64::from(n_blocks(rect));
    }
    let p = catch_probability(f.touched_pixels, f.committed_pixels, cfg.policy_k(), blocks);
    f.catch_fixed = (p * CATCH_SCALE).round() as u128;
    f
}

/// Count how a check of the cheater judged its forged blocks: the sampled blocks that
/// hold a forged pixel and the aggregate of a first check that sampled one (or of an
/// escalated check).
fn count_cheater_check(tally: &mut Tally, v: &Verdict, layout: &[TileRect], plans: &[TilePlan]) {
    if v.check.escalated {
        tally
            .escalated_aggregates
            .add_one(v.aggregate_band, &v.aggregate);
        return;
    }
    let mut sampled = false;
    for s in &v.samples {
        let i = s.tile_index as usize;
        let touched = s.frame == 0
            && matches!((layout.get(i), plans.get(i)), (Some(&r), Some(p)) if p.touches(r, s.block));
        if touched {
            sampled = true;
            tally.forged_blocks.add_one(s.band, &s.metrics);
        }
    }
    if sampled {
        tally.forged_sampled += 1;
        tally
            .forged_first_aggregates
            .add_one(v.aggregate_band, &v.aggregate);
    }
}

/// Count one verdict: an escalation, or a node's final decision on a round.
fn count_decision(
    tally: &mut Tally,
    role: Role,
    check: CheckKind,
    decision: Decision,
    forged: u64,
) -> Result<(), JobError> {
    if decision == Decision::Escalate {
        if check.escalated {
            return Err(JobError::EscalatedTwice);
        }
        tally.escalations += 1;
        tally.honest_escalations += u64::from(role != Role::Cheater);
        return Ok(());
    }
    if role == Role::Cheater {
        match decision {
            Decision::Fail => tally.detected += 1,
            Decision::Inconclusive => tally.cheater_inconclusive += 1,
            _ => tally.forged_accepted += forged,
        }
    } else {
        tally.honest_rounds += 1;
        tally.other_class_rounds += u64::from(role == Role::HonestOther);
        tally.honest_fails += u64::from(decision == Decision::Fail);
        tally.honest_inconclusive += u64::from(decision == Decision::Inconclusive);
    }
    Ok(())
}

/// The tiles the machine asked to keep.
#[derive(Default)]
struct Kept(BTreeMap<(u32, u32, u32), Vec<u8>>);

impl Tiles for Kept {
    fn tile(&self, round: u32, frame: u32, tile: u32) -> Option<Vec<u8>> {
        self.0.get(&(round, frame, tile)).cloned()
    }
}

/// The farm one simulated job sees: its three nodes, its three verifiers (two of the
/// cheater's class, one of the other), and a ledger holding the client's deposit and the
/// nodes' stakes.
struct World {
    nodes: Vec<NodeView>,
    verifiers: Vec<VerifierView>,
    ledger: Ledger,
    cheater: PublicKey,
    /// Every transfer applied to `ledger`, in order (for [`JobRecord`]).
    applied: Vec<Transfer>,
    /// The bundle the machine finished the job with.
    bundle: Option<Box<ProofBundle>>,
    /// Why the machine failed the job.
    failed: Option<String>,
}

impl World {
    fn new(farm: &Farm, parties: &JobParties, cfg: &SimConfig, m: &JobManifest) -> Self {
        let view = |node: &Node| NodeView {
            key: node.public(),
            name: node.public().short(),
            caps: Capabilities {
                class: node.class().clone(),
                memory_bytes: 0,
                slots: 1,
                software: "simulated".into(),
            },
            trust: cfg.trust,
            last_seen_ms: 0,
        };
        let mut nodes = vec![
            view(&parties.cheater),
            view(&farm.honest_same),
            view(&parties.honest_other),
        ];
        nodes.sort_by_key(|n| n.key);
        let mut verifiers = vec![
            VerifierView {
                key: farm.first.public(),
                class_id: Some(farm.same_class.class().id()),
                last_seen_ms: 0,
                faults: 0,
            },
            VerifierView {
                key: farm.same_second.public(),
                class_id: Some(farm.same_class.class().id()),
                last_seen_ms: 0,
                faults: 0,
            },
            VerifierView {
                key: farm.second_key,
                class_id: Some(parties.honest_other.class().id()),
                last_seen_ms: 0,
                faults: 0,
            },
        ];
        verifiers.sort_by_key(|v| v.key);
        let job = hex::encode(m.job_id);
        let deposit = |key: String, from: &str, to: String, amount: u64| Transfer {
            key,
            kind: TransferKind::Deposit,
            from: account::external(from),
            to,
            amount,
            round: 0,
            tiles: 0,
        };
        let mut ledger = Ledger::new();
        let mut deposits = vec![deposit(
            format!("job:{job}:deposit"),
            "client-bank",
            account::client(CLIENT),
            job_price(m),
        )];
        for node in farm.keys {
            deposits.push(deposit(
                format!("stake:{node}:{job}"),
                "node-deposits",
                account::stake(&node),
                NODE_STAKE,
            ));
        }
        for t in &deposits {
            // Fresh keys on a fresh ledger: these cannot be refused.
            let _ = ledger.apply(t);
        }
        World {
            nodes,
            verifiers,
            ledger,
            cheater: farm.keys[0],
            applied: deposits,
            bundle: None,
            failed: None,
        }
    }

    fn ctx<'a>(&'a self, tiles: &'a Kept, key: &'a SecretKey) -> Ctx<'a> {
        Ctx {
            now_ms: 0,
            farm: self,
            tiles,
            key,
        }
    }

    /// Carry out what the machine asks: queue its messages, keep tiles, move money and
    /// trust, and count the money moved.
    fn carry_out(
        &mut self,
        machine: &mut Job,
        tiles: &mut Kept,
        queue: &mut VecDeque<(String, Outgoing)>,
        tally: &mut Tally,
    ) -> Result<(), JobError> {
        while let Some(effect) = machine.poll_effect() {
            match effect {
                Effect::Publish { queue: to, message } => queue.push_back((to, message)),
                Effect::KeepResult { round, result } => {
                    let frame = result.batch.signed.statement.frame;
                    for t in result.tiles {
                        tiles.0.insert((round, frame, t.tile_index), t.bytes);
                    }
                }
                Effect::Transfer(t) => {
                    self.ledger.apply(&t)?;
                    count_money(&mut tally.money, &t, &self.cheater);
                    self.applied.push(t);
                }
                Effect::Uncollected(t) => return Err(JobError::StakeEmpty { key: t.key }),
                Effect::Trust { node, trust } => {
                    if let Some(n) = self.nodes.iter_mut().find(|n| n.key == node) {
                        n.trust = trust;
                    }
                }
                Effect::Finished(bundle) => self.bundle = Some(bundle),
                Effect::Receipt(receipt) => {
                    if let Some(b) = &mut self.bundle {
                        b.payments = *receipt;
                    }
                }
                Effect::Failed(why) => self.failed = Some(why),
                Effect::Seen { .. }
                | Effect::State(_)
                | Effect::VerifierFault { .. }
                | Effect::Verdict(_)
                | Effect::Withdraw
                | Effect::Priority(_) => {}
            }
        }
        Ok(())
    }
}

impl MachineFarm for World {
    fn nodes(&self) -> Vec<NodeView> {
        self.nodes.clone()
    }
    fn verifiers(&self) -> Vec<VerifierView> {
        self.verifiers.clone()
    }
    fn balance(&self, account: &str) -> i128 {
        self.ledger.balance(account)
    }
}

/// Add one transfer to the money totals.
fn count_money(money: &mut Money, t: &Transfer, cheater: &PublicKey) {
    let a = t.amount;
    match t.kind {
        TransferKind::Escrow => money.escrowed += a,
        TransferKind::PayOnPass => money.paid_on_pass += a,
        TransferKind::HoldBack => money.held_back += a,
        TransferKind::Release => money.released += a,
        TransferKind::Slash => money.slashed += a,
        TransferKind::Refund => money.refunded += a,
        _ => {}
    }
    if t.to == account::node(cheater) {
        money.earned_by_cheaters += a;
    }
    if t.kind == TransferKind::Slash && t.from == account::stake(cheater) {
        money.slashed_cheaters += a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escalated_check_may_not_escalate_again() {
        let mut tally = Tally::default();
        let first = CheckKind {
            dispute: false,
            escalated: false,
        };
        count_decision(&mut tally, Role::HonestSame, first, Decision::Escalate, 0).unwrap();
        assert_eq!((tally.escalations, tally.honest_escalations), (1, 1));
        let second = CheckKind {
            escalated: true,
            ..first
        };
        let err =
            count_decision(&mut tally, Role::Cheater, second, Decision::Escalate, 0).unwrap_err();
        assert!(matches!(err, JobError::EscalatedTwice), "{err:?}");
        assert_eq!(err.to_string(), "an escalated check escalated again");
        assert_eq!(
            tally.escalations, 1,
            "the refused escalation is not counted"
        );
    }
}
