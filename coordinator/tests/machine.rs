//! The job state machine alone: jobs driven from submission to their end with no SQLite,
//! no bus and no GPU, on a virtual clock. Each test carries the machine's messages between
//! it and stand-in nodes and a verifier, applies its transfers to an in-memory ledger and
//! checks what a farm would see: the bundle audits, the ledger balances, and the rules that
//! the three drivers of a job used to disagree on (a failed job releases its hold-backs, a
//! challenge window releases them when it ends) hold here once for all of them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tessera_coordinator::machine::{
    Ctx, Effect, Farm, Handled, Input, Job, JobSetup, JobState, NodeView, Nonces, Outgoing, Policy,
    Tiles, VerifierView,
};
use tessera_node::stub::HashRenderer;
use tessera_node::{DishonestMode, Node};
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::payments::{
    account, default_tiers, Ledger, Pricing, SamplingPolicy, Transfer, TransferKind,
};
use tessera_protocol::rules::job_price;
use tessera_protocol::statements::{JobManifest, Signed, MANIFEST_VERSION};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::wire::{
    node_queue, Capabilities, Requirements, VerdictMessage, QUEUE_TASKS, WIRE_VERSION,
};
use tessera_protocol::{RenderSettings, TileRenderer};
use tessera_verifier::{audit_bundle, Verifier};

const CLIENT: &str = "client";
const STAKE: u64 = 1_000_000;
const SCENE: [u8; 32] = [7; 32];
const LEASE_MS: u64 = 10_000;

/// A farm around one job: nodes, one verifier, a ledger, the kept tiles, the messages in
/// flight and a clock that moves only when a test moves it.
struct World {
    coordinator: SecretKey,
    nodes: Vec<Node>,
    views: Vec<NodeView>,
    verifier: Verifier,
    ledger: Ledger,
    tiles: BTreeMap<(u32, u32, u32), Vec<u8>>,
    queue: VecDeque<(String, Outgoing)>,
    now: u64,
    bundle: Option<ProofBundle>,
    receipts: u32,
    failed: Option<String>,
}

impl Farm for World {
    fn nodes(&self) -> Vec<NodeView> {
        self.views.clone()
    }
    fn verifiers(&self) -> Vec<VerifierView> {
        vec![VerifierView {
            key: self.verifier.public(),
            class_id: None,
            last_seen_ms: 0,
            faults: 0,
        }]
    }
    fn balance(&self, account: &str) -> i128 {
        self.ledger.balance(account)
    }
}

impl Tiles for World {
    fn tile(&self, round: u32, frame: u32, tile: u32) -> Option<Vec<u8>> {
        self.tiles.get(&(round, frame, tile)).cloned()
    }
}

fn deposit(key: &str, to: String, amount: u64) -> Transfer {
    Transfer {
        key: key.into(),
        kind: TransferKind::Deposit,
        from: account::external("bank"),
        to,
        amount,
        round: 0,
        tiles: 0,
    }
}

impl World {
    /// A farm of one node per entry of `cheats` (`Some`: it cheats that way).
    fn new(cheats: &[Option<DishonestMode>]) -> Self {
        let renderer: Arc<dyn TileRenderer> =
            Arc::new(HashRenderer::new(std::time::Duration::ZERO));
        let nodes: Vec<Node> = cheats
            .iter()
            .enumerate()
            .map(|(i, cheat)| {
                Node::new(
                    format!("node-{i}"),
                    SecretKey::from_seed(&[i as u8 + 1; 32]),
                    SCENE,
                    renderer.clone(),
                    *cheat,
                )
            })
            .collect();
        let mut views: Vec<NodeView> = nodes
            .iter()
            .map(|n| NodeView {
                key: n.public(),
                name: n.name().to_string(),
                caps: Capabilities {
                    class: renderer.class().clone(),
                    memory_bytes: 1 << 30,
                    slots: 1,
                    software: "test".into(),
                },
                trust: 0,
                last_seen_ms: 0,
            })
            .collect();
        views.sort_by_key(|v| v.key);
        let mut ledger = Ledger::new();
        for n in &nodes {
            ledger
                .apply(&deposit(
                    &format!("stake:{}", n.public()),
                    account::stake(&n.public()),
                    STAKE,
                ))
                .unwrap();
        }
        World {
            coordinator: SecretKey::from_seed(&[99; 32]),
            nodes,
            views,
            verifier: Verifier::new(SecretKey::from_seed(&[98; 32]), renderer),
            ledger,
            tiles: BTreeMap::new(),
            queue: VecDeque::new(),
            now: 1_000_000,
            bundle: None,
            receipts: 0,
            failed: None,
        }
    }

    /// Submit a job of `frames` frames of 48×32 px in 16-px tiles, 3 tiles a task, with a
    /// challenge window of `window_secs`: the client's deposit covers its price.
    fn submit(&mut self, frames: u32, window_secs: u64) -> Job {
        let nonces = Nonces::draw(&mut rand::rngs::OsRng);
        let (nonce_commitments, dispute_nonce_commitment) = nonces.commitments();
        let manifest = JobManifest {
            version: MANIFEST_VERSION,
            job_id: [3; 16],
            client: CLIENT.into(),
            scene_name: "test".into(),
            scene_hash: SCENE,
            settings: RenderSettings {
                width: 48,
                height: 32,
                spp: 4,
                max_bounces: 2,
                seed: 5,
                camera: None,
                frame_rate: Default::default(),
            },
            frame_start: 0,
            frame_end: frames - 1,
            tile_size: 16,
            tier: default_tiers()[0].clone(),
            sampling: SamplingPolicy::default(),
            pricing: Pricing::default(),
            slash_pct: 50,
            challenge_window_secs: window_secs,
            nonce_commitments,
            dispute_nonce_commitment,
            dispute_deposit_pct: 10,
            tolerance: Tolerance::default(),
            verifiers: vec![self.verifier.public()],
            created_unix: self.now / 1000,
        };
        self.ledger
            .apply(&deposit(
                "client deposit",
                account::client(CLIENT),
                job_price(&manifest),
            ))
            .unwrap();
        let signed = Signed::sign(manifest, &self.coordinator);
        let setup = JobSetup {
            batch_size: 3,
            requirements: Requirements::default(),
            min_trust: 0,
            scene_hint: None,
        };
        let policy = Policy {
            lease_ms: LEASE_MS,
            ..Policy::default()
        };
        let key = SecretKey::from_seed(&[99; 32]);
        let ctx = Ctx {
            now_ms: self.now,
            farm: self,
            tiles: self,
            key: &key,
        };
        let mut job = Job::start(signed, nonces, setup, policy, &ctx);
        self.carry_out(&mut job);
        job
    }

    fn handle(&mut self, job: &mut Job, input: Input) -> Handled {
        let key = SecretKey::from_seed(&[99; 32]);
        let ctx = Ctx {
            now_ms: self.now,
            farm: self,
            tiles: self,
            key: &key,
        };
        let handled = job.handle(input, &ctx).unwrap();
        self.carry_out(job);
        handled
    }

    fn carry_out(&mut self, job: &mut Job) {
        while let Some(effect) = job.poll_effect() {
            match effect {
                Effect::Publish { queue, message } => self.queue.push_back((queue, message)),
                Effect::KeepResult { round, result } => {
                    let frame = result.batch.signed.statement.frame;
                    for t in result.tiles {
                        self.tiles.insert((round, frame, t.tile_index), t.bytes);
                    }
                }
                Effect::Transfer(t) => {
                    self.ledger.apply(&t).unwrap();
                }
                Effect::Uncollected(t) => panic!("uncollected slash {}", t.key),
                Effect::Trust { node, trust } => {
                    for v in self.views.iter_mut().filter(|v| v.key == node) {
                        v.trust = trust;
                    }
                }
                Effect::Finished(bundle) => self.bundle = Some(*bundle),
                Effect::Receipt(receipt) => {
                    self.receipts += 1;
                    if let Some(b) = self.bundle.as_mut() {
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
    }

    /// The node at `i`.
    fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Take every task message now in flight, in order.
    fn take_tasks(&mut self) -> Vec<(String, tessera_protocol::wire::RenderTask)> {
        let mut tasks = Vec::new();
        let mut rest = VecDeque::new();
        while let Some((q, m)) = self.queue.pop_front() {
            match m {
                Outgoing::Task(t) => tasks.push((q, *t)),
                other => rest.push_back((q, other)),
            }
        }
        self.queue = rest;
        tasks
    }

    /// Deliver `task` rendered by node `i`.
    fn deliver(
        &mut self,
        job: &mut Job,
        i: usize,
        task: &tessera_protocol::wire::RenderTask,
    ) -> Handled {
        let res = self.nodes[i].handle_task(task).unwrap();
        self.handle(job, Input::Result(res))
    }

    /// Answer every check in flight (and those the answers send) with the verifier.
    fn verify_all(&mut self, job: &mut Job) {
        loop {
            let mut checks = Vec::new();
            let mut rest = VecDeque::new();
            while let Some((q, m)) = self.queue.pop_front() {
                match m {
                    Outgoing::Check(r) => checks.push(*r),
                    other => rest.push_back((q, other)),
                }
            }
            self.queue = rest;
            if checks.is_empty() {
                return;
            }
            for req in checks {
                let verdict = self.verifier.handle_request(&req).unwrap();
                let msg = VerdictMessage {
                    version: WIRE_VERSION,
                    request_id: req.request_id.clone(),
                    verdict,
                };
                assert_eq!(self.handle(job, Input::Verdict(msg)), Handled::Done);
            }
        }
    }

    fn balance(&self, account: &str) -> i128 {
        self.ledger.balance(account)
    }
}

fn job_hex() -> String {
    hex::encode([3u8; 16])
}

#[test]
fn a_job_is_driven_to_done_with_no_store_bus_or_gpu() {
    let mut w = World::new(&[None, None]);
    let mut job = w.submit(2, 0);
    let tasks = w.take_tasks();
    // 3×2 tiles a frame, 3 a task: two tasks a frame, all on the shared queue.
    assert_eq!(tasks.len(), 4);
    assert!(tasks.iter().all(|(q, _)| q == QUEUE_TASKS));
    for (i, (_, task)) in tasks.iter().enumerate() {
        assert_eq!(w.deliver(&mut job, i % 2, task), Handled::Done);
        let want = if i < 3 {
            JobState::Rendering
        } else {
            JobState::Verifying
        };
        assert_eq!(job.state(), want, "after result {i}");
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Done);
    assert!(job.is_over(), "no challenge window: nothing is left to do");
    let bundle = w.bundle.clone().expect("a done job emits its bundle");
    let audit = audit_bundle(&bundle, Some(&w.coordinator.public()));
    assert!(audit.passed(), "{audit:?}");
    // The escrow went to the nodes, nothing is held back, the ledger sums to zero.
    let price = job_price(&bundle.manifest.statement) as i128;
    assert_eq!(w.balance(&account::escrow(&job_hex())), 0);
    let earned: i128 = (0..2)
        .map(|i| w.balance(&account::node(&w.node(i).public())))
        .sum();
    assert_eq!(earned, price);
    assert_eq!(w.ledger.total(), 0);
    assert_eq!(job.progress().tiles_verified, 12);
}

#[test]
fn an_expired_lease_sends_the_task_again_and_the_late_result_counts_for_nothing() {
    let mut w = World::new(&[None, None]);
    let mut job = w.submit(1, 0);
    let tasks = w.take_tasks();
    let (_, first) = &tasks[0];
    let (a, b) = (w.node(0).public(), w.node(1).public());
    w.handle(
        &mut job,
        Input::Heartbeat {
            node: a,
            task_id: first.task_id.clone(),
        },
    );
    assert_eq!(job.task(&first.task_id).unwrap().holder, Some(a));
    // A tick before the lease runs out changes nothing.
    w.now += LEASE_MS - 1;
    w.handle(&mut job, Input::Tick);
    assert!(w.take_tasks().is_empty());
    // At the end of the lease the task goes out again, attempt 1, to the shared queue.
    w.now += 1;
    w.handle(&mut job, Input::Tick);
    let again = w.take_tasks();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.task_id, first.task_id);
    assert_eq!(again[0].1.attempt, 1);
    assert_eq!(job.task(&first.task_id).unwrap().holder, None);
    // b leases and delivers it; a's late result lost the race.
    w.handle(
        &mut job,
        Input::Heartbeat {
            node: b,
            task_id: first.task_id.clone(),
        },
    );
    let late = w.node(0).handle_task(first).unwrap();
    assert!(matches!(
        w.handle(&mut job, Input::Result(late)),
        Handled::Superseded(_)
    ));
    assert_eq!(w.deliver(&mut job, 1, &again[0].1), Handled::Done);
    assert!(job.task(&first.task_id).is_some_and(|t| !t.open));
}

#[test]
fn a_task_with_no_queue_timeout_waits_for_ever_and_is_never_sent_twice() {
    // `tessera render` runs with no queue timeout (u64::MAX): a timeout added to the
    // time a task was published must not wrap around and send every task again.
    let mut w = World::new(&[None]);
    let mut job = w.submit(1, 0);
    job = job.with_policy(Policy {
        unleased_timeout_ms: u64::MAX,
        verify_timeout_ms: u64::MAX,
        lease_ms: u64::MAX,
        ..Policy::default()
    });
    let tasks = w.take_tasks();
    let a = w.node(0).public();
    w.handle(
        &mut job,
        Input::Heartbeat {
            node: a,
            task_id: tasks[1].1.task_id.clone(),
        },
    );
    w.now += 1_000_000_000;
    w.handle(&mut job, Input::Tick);
    assert!(w.take_tasks().is_empty(), "nothing is sent again");
    assert_eq!(job.task(&tasks[1].1.task_id).unwrap().holder, Some(a));
}

#[test]
fn a_node_that_lets_three_leases_expire_is_blocked_and_its_task_goes_to_another_node() {
    let mut w = World::new(&[None, None]);
    let mut job = w.submit(1, 0);
    let tasks = w.take_tasks();
    let task = tasks[0].1.task_id.clone();
    let a = w.node(0).public();
    for attempt in 0..3 {
        w.handle(
            &mut job,
            Input::Heartbeat {
                node: a,
                task_id: task.clone(),
            },
        );
        w.now += LEASE_MS;
        w.handle(&mut job, Input::Tick);
        let out = w.take_tasks();
        assert_eq!(out.len(), 1, "attempt {attempt}");
        if attempt < 2 {
            assert_eq!(out[0].0, QUEUE_TASKS);
        } else {
            // Blocked: the task names it and goes to the other node's own queue.
            assert!(out[0].1.blocked.contains(&a));
            assert_eq!(out[0].0, node_queue(&w.node(1).public()));
        }
    }
    assert_eq!(job.blocked(), &[a]);
    // A heartbeat of the blocked node takes no lease.
    w.handle(
        &mut job,
        Input::Heartbeat {
            node: a,
            task_id: task.clone(),
        },
    );
    assert_eq!(job.task(&task).unwrap().holder, None);
}

/// Round 0: node 0 renders frame 0 honestly, node 1 forges frame 1 and is caught; round 1
/// gives frame 1 to node 0, which never renders it.
fn caught_cheater_then_silence(window_secs: u64) -> (World, Job) {
    let mut w = World::new(&[None, Some(DishonestMode::Black)]);
    let mut job = w.submit(2, window_secs);
    for (_, task) in w.take_tasks() {
        let node = task.frame as usize;
        assert_eq!(w.deliver(&mut job, node, &task), Handled::Done);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Rendering, "round 1 is out");
    assert_eq!(job.progress().round, 1);
    assert_eq!(job.blocked(), &[w.node(1).public()]);
    (w, job)
}

#[test]
fn a_failed_job_refunds_the_escrow_and_releases_the_hold_backs_of_work_that_passed() {
    let (mut w, mut job) = caught_cheater_then_silence(0);
    let honest = w.node(0).public();
    let held = w.balance(&account::holdback(&job_hex(), &honest));
    assert!(
        held > 0,
        "the honest node's pass holds part of its pay back"
    );
    // Nobody takes the round-1 tasks: each tick past the unleased timeout sends them out
    // again, until they run out of attempts and the job fails.
    let policy = Policy::default();
    for _ in 0..policy.max_attempts {
        w.now += policy.unleased_timeout_ms;
        w.handle(&mut job, Input::Tick);
        if job.state() == JobState::Failed {
            break;
        }
    }
    assert_eq!(job.state(), JobState::Failed, "{:?}", job.progress());
    assert!(w.failed.as_deref().unwrap().contains("failed 8 times"));
    assert_eq!(w.balance(&account::holdback(&job_hex(), &honest)), 0);
    assert_eq!(w.balance(&account::escrow(&job_hex())), 0);
    let released: u64 = job
        .transfers()
        .iter()
        .filter(|t| t.kind == TransferKind::Release)
        .map(|t| t.amount)
        .sum();
    assert_eq!(i128::from(released), held);
    assert!(job
        .transfers()
        .iter()
        .any(|t| t.kind == TransferKind::Refund && t.to == account::client(CLIENT)));
    assert_eq!(w.ledger.total(), 0);
    assert!(job.is_over());
}

#[test]
fn a_challenge_window_releases_the_hold_backs_when_it_ends_and_signs_the_receipt_again() {
    let mut w = World::new(&[None, None]);
    let mut job = w.submit(1, 60);
    for (i, (_, task)) in w.take_tasks().iter().enumerate() {
        w.deliver(&mut job, i % 2, task);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Done);
    let done_at = w.now;
    assert_eq!(job.progress().release_at_ms, Some(done_at + 60_000));
    assert!(!job.is_over(), "its window is open");
    let held = |w: &World| -> i128 {
        (0..2)
            .map(|i| w.balance(&account::holdback(&job_hex(), &w.node(i).public())))
            .sum()
    };
    let before = held(&w);
    assert!(before > 0);
    w.now = done_at + 59_999;
    w.handle(&mut job, Input::Tick);
    assert_eq!(held(&w), before, "the window is still open");
    assert_eq!(w.receipts, 0);
    w.now = done_at + 60_000;
    w.handle(&mut job, Input::Tick);
    assert_eq!(held(&w), 0);
    assert_eq!(
        w.receipts, 1,
        "the receipt is signed again with the releases"
    );
    assert!(job.is_over());
    let bundle = w.bundle.clone().unwrap();
    assert!(audit_bundle(&bundle, Some(&w.coordinator.public())).passed());
    // The window is closed: no dispute any more.
    assert!(matches!(
        w.handle(
            &mut job,
            Input::Dispute {
                client: CLIENT.into()
            }
        ),
        Handled::Refused(_)
    ));
}

// --- the ledger's rules over random histories of one job ------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;
    use tessera_protocol::rules::dispute_deposit;
    use tessera_protocol::statements::{Decision, TaskNote};
    use tessera_protocol::wire::RenderTask;

    /// One step; indices pick among what exists (modulo its count).
    #[derive(Clone, Debug)]
    enum Op {
        /// A node delivers a task it was sent (any publication, stale ones included).
        Deliver { task: usize, node: usize },
        /// The last result again (at-least-once delivery).
        Redeliver,
        /// A node's heartbeat names a task.
        Heartbeat { task: usize, node: usize },
        /// A node reports a failed render of a task, on its current attempt.
        Failed { task: usize, node: usize },
        /// The verifier answers a check in flight; `lie`: with a pass it did not find,
        /// signed with its own key.
        Answer { check: usize, lie: bool },
        /// The clock moves (past every lease, timeout and window when `long`).
        Tick { long: bool },
        /// The client disputes the job.
        Dispute,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..64usize, 0..3usize).prop_map(|(task, node)| Op::Deliver { task, node }),
            1 => Just(Op::Redeliver),
            2 => (0..64usize, 0..3usize).prop_map(|(task, node)| Op::Heartbeat { task, node }),
            1 => (0..64usize, 0..3usize).prop_map(|(task, node)| Op::Failed { task, node }),
            4 => (0..64usize, prop::bool::weighted(0.2))
                .prop_map(|(check, lie)| Op::Answer { check, lie }),
            2 => prop::bool::ANY.prop_map(|long| Op::Tick { long }),
            1 => Just(Op::Dispute),
        ]
    }

    fn cheat() -> impl Strategy<Value = Option<DishonestMode>> {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(DishonestMode::Black)),
            1 => Just(Some(DishonestMode::LowSpp)),
            1 => Just(Some(DishonestMode::Partial)),
        ]
    }

    /// The run of one history: the world, the job, every task sent, the checks in flight,
    /// and the last result.
    struct Run {
        w: World,
        job: Job,
        sent: Vec<RenderTask>,
        checks: Vec<tessera_protocol::wire::VerifyRequest>,
        last: Option<tessera_protocol::wire::BatchResult>,
        client_paid_in: i128,
        disputes: u32,
    }

    impl Run {
        fn collect(&mut self) {
            let mut rest = VecDeque::new();
            while let Some((q, m)) = self.w.queue.pop_front() {
                match m {
                    Outgoing::Task(t) => self.sent.push(*t),
                    Outgoing::Check(r) => {
                        self.checks.retain(|c| c.request_id != r.request_id);
                        self.checks.push(*r);
                    }
                }
                let _ = q;
            }
            self.w.queue = std::mem::take(&mut rest);
        }

        fn step(&mut self, op: &Op) {
            let n = self.w.nodes.len();
            match *op {
                Op::Deliver { task, node } if !self.sent.is_empty() => {
                    let t = self.sent[task % self.sent.len()].clone();
                    let res = self.w.nodes[node % n].handle_task(&t).unwrap();
                    self.last = Some(res.clone());
                    self.w.handle(&mut self.job, Input::Result(res));
                }
                Op::Redeliver => {
                    if let Some(res) = self.last.clone() {
                        self.w.handle(&mut self.job, Input::Result(res));
                    }
                }
                Op::Heartbeat { task, node } if !self.sent.is_empty() => {
                    let t = &self.sent[task % self.sent.len()];
                    let input = Input::Heartbeat {
                        node: self.w.nodes[node % n].public(),
                        task_id: t.task_id.clone(),
                    };
                    self.w.handle(&mut self.job, input);
                }
                Op::Failed { task, node } if !self.sent.is_empty() => {
                    let t = &self.sent[task % self.sent.len()];
                    let attempt = self.job.task(&t.task_id).map_or(0, |v| v.attempt);
                    let input = Input::RenderFailed {
                        node: self.w.nodes[node % n].public(),
                        note: TaskNote {
                            task_id: t.task_id.clone(),
                            attempt,
                            reason: "test".into(),
                        },
                    };
                    self.w.handle(&mut self.job, input);
                }
                Op::Answer { check, lie } if !self.checks.is_empty() => {
                    let req = self.checks.remove(check % self.checks.len());
                    let mut verdict = self.w.verifier.handle_request(&req).unwrap();
                    if lie && verdict.statement.decision != Decision::Pass {
                        let mut forged = verdict.statement.clone();
                        forged.decision = Decision::Pass;
                        verdict = Signed::sign(forged, &SecretKey::from_seed(&[98; 32]));
                    }
                    let msg = VerdictMessage {
                        version: WIRE_VERSION,
                        request_id: req.request_id.clone(),
                        verdict,
                    };
                    self.w.handle(&mut self.job, Input::Verdict(msg));
                }
                Op::Tick { long } => {
                    self.w.now += if long { 1_800_001 } else { LEASE_MS / 2 };
                    self.w.handle(&mut self.job, Input::Tick);
                }
                Op::Dispute => {
                    let m = self.job.manifest().statement.clone();
                    if self.job.may_dispute(CLIENT, self.w.now).is_ok() {
                        let amount = dispute_deposit(&m);
                        self.disputes += 1;
                        self.w
                            .ledger
                            .apply(&deposit(
                                &format!("dispute deposit {}", self.disputes),
                                account::client(CLIENT),
                                amount,
                            ))
                            .unwrap();
                        self.client_paid_in += i128::from(amount);
                    }
                    let input = Input::Dispute {
                        client: CLIENT.into(),
                    };
                    self.w.handle(&mut self.job, input);
                }
                _ => {}
            }
            self.collect();
        }

        /// Drive the job honestly to its end: every open task delivered by a node that
        /// may take it, every check answered, the clock moved when nothing else moves.
        fn settle(&mut self) {
            for _ in 0..200 {
                if self.job.is_over() {
                    return;
                }
                let mut moved = false;
                let open: Vec<RenderTask> = self
                    .sent
                    .iter()
                    .rev()
                    .filter(|t| self.job.task(&t.task_id).is_some_and(|v| v.open))
                    .cloned()
                    .collect();
                let mut done = std::collections::BTreeSet::new();
                for t in open {
                    if !done.insert(t.task_id.clone()) {
                        continue;
                    }
                    let view = self.job.task(&t.task_id).unwrap();
                    let honest = (0..self.w.nodes.len()).find(|&i| {
                        let k = self.w.nodes[i].public();
                        self.w.nodes[i].dishonest().is_none()
                            && !self.job.blocked().contains(&k)
                            && view.holder.is_none_or(|h| h == k)
                    });
                    if let Some(i) = honest {
                        let res = self.w.nodes[i].handle_task(&view.body).unwrap();
                        self.w.handle(&mut self.job, Input::Result(res));
                        moved = true;
                    }
                }
                self.collect();
                while let Some(req) = self.checks.pop() {
                    let verdict = self.w.verifier.handle_request(&req).unwrap();
                    let msg = VerdictMessage {
                        version: WIRE_VERSION,
                        request_id: req.request_id.clone(),
                        verdict,
                    };
                    self.w.handle(&mut self.job, Input::Verdict(msg));
                    self.collect();
                    moved = true;
                }
                if !moved {
                    self.w.now += 1_800_001;
                    self.w.handle(&mut self.job, Input::Tick);
                    self.collect();
                }
            }
            panic!("the job did not end: {:?}", self.job.progress());
        }

        fn check_ledger(&self) {
            assert_eq!(self.w.ledger.total(), 0, "the ledger sums to zero");
            for (account, balance) in self.w.ledger.balances() {
                assert!(
                    *balance >= 0 || account::may_go_negative(account),
                    "{account} went negative: {balance}"
                );
            }
            for t in self.job.transfers() {
                assert!(
                    self.w.ledger.transfers().any(|l| l == t),
                    "the job's transfer {} is on the ledger",
                    t.key
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Whatever nodes, verifiers and the client do, in whatever order: the ledger sums
        /// to zero and no account that may not goes negative after every step; driven
        /// honestly from there, the job ends, its escrow is empty, a done job's bundle
        /// audits, and its client paid exactly its price, plus the dispute deposit only
        /// when a dispute found nothing; nothing stays held back.
        #[test]
        fn the_ledger_keeps_its_rules_over_random_histories_of_one_job(
            cheats in prop::collection::vec(cheat(), 3),
            frames in 1u32..=2,
            window in prop::bool::ANY,
            ops in prop::collection::vec(op(), 0..40),
        ) {
            let mut cheats = cheats;
            cheats[0] = None; // one honest node, so that every job can end
            let mut w = World::new(&cheats);
            let job = w.submit(frames, if window { 60 } else { 0 });
            let price = i128::from(job_price(&job.manifest().statement));
            let mut run = Run {
                w,
                job,
                sent: Vec::new(),
                checks: Vec::new(),
                last: None,
                client_paid_in: price,
                disputes: 0,
            };
            run.collect();
            for op in &ops {
                run.step(op);
                run.check_ledger();
            }
            run.settle();
            run.check_ledger();
            let job_id = hex::encode(run.job.manifest().statement.job_id);
            prop_assert_eq!(run.w.balance(&account::escrow(&job_id)), 0);
            prop_assert_eq!(run.w.balance(&account::dispute(&job_id)), 0);
            for n in &run.w.nodes {
                // An ended job holds nothing back: released, or forfeited by a dispute.
                prop_assert_eq!(run.w.balance(&account::holdback(&job_id, &n.public())), 0);
            }
            let left = run.w.balance(&account::client(CLIENT));
            let paid = run.client_paid_in - left;
            match run.job.state() {
                JobState::Done => {
                    let bundle = run.w.bundle.clone().unwrap();
                    let audit = audit_bundle(&bundle, Some(&run.w.coordinator.public()));
                    prop_assert!(audit.passed(), "{:?}", audit);
                    let fee: i128 = run
                        .job
                        .transfers()
                        .iter()
                        .filter(|t| t.kind == TransferKind::DisputeFee)
                        .map(|t| i128::from(t.amount))
                        .sum();
                    prop_assert_eq!(paid, price + fee);
                }
                JobState::Failed => prop_assert!(paid <= price, "paid {} of {}", paid, price),
                other => prop_assert!(false, "the job ended {}", other),
            }
        }
    }
}
