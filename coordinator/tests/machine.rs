//! The job state machine alone: jobs driven from submission to their end with no SQLite,
//! no bus and no GPU, on a virtual clock. Each test carries the machine's messages between
//! it and stand-in nodes and a verifier, applies its transfers to an in-memory ledger and
//! checks what a farm would see: the bundle audits, the ledger balances, and the rules that
//! the three drivers of a job used to disagree on (a failed job releases its hold-backs, a
//! challenge window releases them when it ends) hold here once for all of them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tessera_coordinator::machine::{
    Control, Ctx, Effect, Farm, Handled, Input, Job, JobSetup, JobState, NodeView, Nonces,
    Outgoing, Policy, Tiles, VerifierView,
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
    /// Withdrawals of unsent tasks asked for (pause, cancel, requeue).
    withdrawn: u32,
    /// The priority the machine last asked for.
    priority: Option<i32>,
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
            withdrawn: 0,
            priority: None,
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
                Effect::Withdraw => {
                    // What a driver's outbox had not sent yet is taken back.
                    self.withdrawn += 1;
                    self.queue.retain(|(_, m)| !matches!(m, Outgoing::Task(_)));
                }
                Effect::Priority(p) => self.priority = Some(p),
                Effect::Seen { .. }
                | Effect::State(_)
                | Effect::VerifierFault { .. }
                | Effect::Verdict(_) => {}
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
    // With no challenge window, its work is paid in full at once: nothing to requeue.
    assert!(job.is_over());
    assert!(matches!(
        control(&mut w, &mut job, Control::Requeue),
        Handled::Refused(why) if why.contains("window is over")
    ));
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

// --- job control ------------------------------------------------------------------------

fn control(w: &mut World, job: &mut Job, action: Control) -> Handled {
    w.handle(
        job,
        Input::Control {
            client: CLIENT.into(),
            action,
        },
    )
}

/// The price of one of the test job's tiles (all are full 16×16 tiles).
fn tile_price(job: &Job) -> u64 {
    let m = &job.manifest().statement;
    let rect = tessera_protocol::TileRect {
        x: 0,
        y: 0,
        w: 16,
        h: 16,
    };
    m.pricing.tile_price(&m.tier, rect, m.settings.spp)
}

/// Blocks of one of the test jobs' 16 × 16 tiles (a verdict counts blocks).
fn blocks_per_tile(_job: &Job) -> u32 {
    tessera_protocol::blocks::n_blocks(tessera_protocol::TileRect {
        x: 0,
        y: 0,
        w: 16,
        h: 16,
    })
}

#[test]
fn cancelling_a_job_pays_verified_work_refunds_the_rest_and_never_pays_late_results() {
    let (mut w, mut job) = caught_cheater_then_silence(60);
    let honest = w.node(0).public();
    let round1 = w.take_tasks();
    assert!(!round1.is_empty());
    let verified = job.progress().tiles_verified;
    assert_eq!(verified, 6, "the honest node's frame passed");
    assert_eq!(control(&mut w, &mut job, Control::Cancel), Handled::Done);
    assert_eq!(job.state(), JobState::Cancelled);
    assert!(job.is_over());
    assert!(w.withdrawn > 0, "unsent tasks are withdrawn");
    // Verified work is paid in full (its hold-back released: no challenge window), the
    // rest of the escrow goes back to the client, the cheater's stake was slashed.
    let value = i128::from(verified) * i128::from(tile_price(&job));
    assert_eq!(w.balance(&account::node(&honest)), value);
    assert_eq!(w.balance(&account::holdback(&job_hex(), &honest)), 0);
    assert_eq!(w.balance(&account::escrow(&job_hex())), 0);
    let price = i128::from(job_price(&job.manifest().statement));
    assert_eq!(w.balance(&account::client(CLIENT)), price - value);
    assert_eq!(w.ledger.total(), 0);
    // Results that come later (a round-1 task rendered anyway) are acked, never paid.
    let transfers = job.transfers().len();
    let balances = w.ledger.balances().clone();
    for (_, task) in &round1 {
        assert!(!job.wants(&task.task_id, &honest));
        assert_eq!(w.deliver(&mut job, 0, task), Handled::Done);
    }
    w.now += 3_600_000;
    w.handle(&mut job, Input::Tick);
    assert_eq!(job.transfers().len(), transfers);
    assert_eq!(w.ledger.balances(), &balances);
    assert!(
        w.take_tasks().is_empty() && w.queue.is_empty(),
        "nothing goes out"
    );
    // A cancelled job cannot be controlled again, nor disputed.
    assert!(matches!(
        control(&mut w, &mut job, Control::Resume),
        Handled::Refused(why) if why.contains("cancelled")
    ));
    assert!(job.may_dispute(CLIENT, w.now).is_err());
}

#[test]
fn a_verdict_that_comes_after_the_cancel_moves_nothing() {
    let mut w = World::new(&[None, None]);
    let mut job = w.submit(1, 0);
    for (i, (_, task)) in w.take_tasks().iter().enumerate() {
        w.deliver(&mut job, i % 2, task);
    }
    assert_eq!(job.state(), JobState::Verifying);
    let checks: Vec<_> = std::mem::take(&mut w.queue).into_iter().collect();
    assert!(!checks.is_empty());
    assert_eq!(control(&mut w, &mut job, Control::Cancel), Handled::Done);
    let price = i128::from(job_price(&job.manifest().statement));
    assert_eq!(
        w.balance(&account::client(CLIENT)),
        price,
        "nothing was verified: all refunded"
    );
    for (_, m) in checks {
        let Outgoing::Check(req) = m else { continue };
        let verdict = w.verifier.handle_request(&req).unwrap();
        let msg = VerdictMessage {
            version: WIRE_VERSION,
            request_id: req.request_id.clone(),
            verdict,
        };
        assert_eq!(w.handle(&mut job, Input::Verdict(msg)), Handled::Done);
    }
    assert_eq!(w.balance(&account::client(CLIENT)), price);
    assert_eq!(job.state(), JobState::Cancelled);
    assert_eq!(w.ledger.total(), 0);
}

#[test]
fn a_paused_job_sends_nothing_new_until_it_is_resumed_and_work_in_flight_finishes() {
    let mut w = World::new(&[None, None]);
    let mut job = w.submit(2, 0);
    let tasks = w.take_tasks();
    assert_eq!(tasks.len(), 4);
    let (a, b) = (w.node(0).public(), w.node(1).public());
    // Node 0 leases the first task, then the client pauses.
    w.handle(
        &mut job,
        Input::Heartbeat {
            node: a,
            task_id: tasks[0].1.task_id.clone(),
        },
    );
    assert_eq!(control(&mut w, &mut job, Control::Pause), Handled::Done);
    assert_eq!(job.state(), JobState::Paused);
    assert_eq!(job.progress().state, JobState::Paused);
    // Copies already on the broker are not wanted, except by the lease holder.
    assert!(job.wants(&tasks[0].1.task_id, &a));
    assert!(!job.wants(&tasks[1].1.task_id, &b));
    // Pausing again changes nothing; the clock passing every timeout sends nothing.
    assert_eq!(control(&mut w, &mut job, Control::Pause), Handled::Done);
    w.now += 3_600_000;
    w.handle(&mut job, Input::Tick);
    assert!(w.take_tasks().is_empty(), "a paused job sends no task");
    // The lease expired in the pause: counted, but not sent; a delivery in flight from
    // node 1 (which took a copy before the pause) is still taken and verified later.
    assert_eq!(w.deliver(&mut job, 1, &tasks[1].1), Handled::Done);
    assert_eq!(job.state(), JobState::Paused);
    // Resume: every open task nobody holds goes out again, the state is what it was.
    assert_eq!(control(&mut w, &mut job, Control::Resume), Handled::Done);
    assert_ne!(job.state(), JobState::Paused);
    let again = w.take_tasks();
    let mut ids: Vec<&str> = again.iter().map(|(_, t)| t.task_id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = [0, 2, 3]
        .iter()
        .map(|&i| tasks[i].1.task_id.as_str())
        .collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for (i, (_, task)) in again.iter().enumerate() {
        assert_eq!(w.deliver(&mut job, i % 2, task), Handled::Done);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Done);
    let bundle = w.bundle.clone().unwrap();
    assert!(audit_bundle(&bundle, Some(&w.coordinator.public())).passed());
    assert_eq!(w.ledger.total(), 0);
}

#[test]
fn requeue_gives_failing_tasks_their_attempts_again_and_lifts_delivery_blocks() {
    let mut w = World::new(&[None, None, None]);
    let mut job = w.submit(1, 0);
    let tasks = w.take_tasks();
    let task = tasks[0].1.clone();
    let policy = Policy::default();
    // The first node not blocked takes the task and fails it, attempt after attempt (a
    // node is blocked after 3).
    let fail = |w: &mut World, job: &mut Job| {
        let attempt = job.task(&task.task_id).unwrap().attempt;
        let node = (0..3)
            .map(|i| w.node(i).public())
            .find(|k| !job.blocked().contains(k))
            .expect("a node left to fail it");
        w.handle(
            job,
            Input::Heartbeat {
                node,
                task_id: task.task_id.clone(),
            },
        );
        let holder = job.task(&task.task_id).unwrap().holder.unwrap();
        w.handle(
            job,
            Input::RenderFailed {
                node: holder,
                note: tessera_protocol::statements::TaskNote {
                    task_id: task.task_id.clone(),
                    attempt,
                    reason: "gpu fell over".into(),
                },
            },
        );
    };
    for _ in 0..policy.max_attempts - 1 {
        fail(&mut w, &mut job);
    }
    assert_ne!(job.state(), JobState::Failed);
    assert_eq!(
        job.blocked().len(),
        2,
        "two nodes failed it three times each"
    );
    assert_eq!(control(&mut w, &mut job, Control::Requeue), Handled::Done);
    assert!(
        job.blocked().is_empty(),
        "a block for failed deliveries is lifted"
    );
    assert!(w.withdrawn > 0);
    let view = job.task(&task.task_id).unwrap();
    assert_eq!(view.attempt, policy.max_attempts, "a fresh attempt");
    assert!(view.open && view.holder.is_none());
    assert!(
        w.take_tasks()
            .iter()
            .any(|(_, t)| t.task_id == task.task_id && t.attempt == view.attempt),
        "the task goes out again"
    );
    // It may fail max_attempts - 1 more times without failing the job.
    for _ in 0..policy.max_attempts - 1 {
        fail(&mut w, &mut job);
    }
    assert_ne!(job.state(), JobState::Failed, "{:?}", job.progress());
    fail(&mut w, &mut job);
    assert_eq!(job.state(), JobState::Failed);
    assert_eq!(w.ledger.total(), 0);
}

#[test]
fn requeue_keeps_the_block_of_a_node_that_failed_verification() {
    let (mut w, mut job) = caught_cheater_then_silence(0);
    let cheater = w.node(1).public();
    assert_eq!(control(&mut w, &mut job, Control::Requeue), Handled::Done);
    assert_eq!(job.blocked(), &[cheater]);
    for (_, t) in w.take_tasks() {
        assert!(t.blocked.contains(&cheater));
    }
}

/// Tick `job` past the unleased timeout until its open tasks run out of attempts and it
/// fails (nobody takes them).
fn fail_by_silence(w: &mut World, job: &mut Job) {
    let policy = Policy::default();
    for _ in 0..policy.max_attempts {
        w.now += policy.unleased_timeout_ms;
        w.handle(job, Input::Tick);
        if job.state() == JobState::Failed {
            break;
        }
    }
    assert_eq!(job.state(), JobState::Failed, "{:?}", job.progress());
}

#[test]
fn a_failed_job_requeued_inside_its_window_is_funded_again_finishes_and_audits() {
    let (mut w, mut job) = caught_cheater_then_silence(60);
    let honest = w.node(0).public();
    let price = i128::from(job_price(&job.manifest().statement));
    let held = w.balance(&account::holdback(&job_hex(), &honest));
    assert!(held > 0);
    fail_by_silence(&mut w, &mut job);
    w.take_tasks();
    // The escrow's rest went back to the client; the hold-back waits for the window,
    // inside which the client may requeue the job.
    assert_eq!(w.balance(&account::escrow(&job_hex())), 0);
    assert_eq!(w.balance(&account::holdback(&job_hex(), &honest)), held);
    let refunded = w.balance(&account::client(CLIENT));
    assert!(refunded > 0 && refunded < price);
    assert!(
        !job.is_over(),
        "a failed job inside its window may be requeued"
    );
    assert_eq!(job.requeue_price(), Some(refunded as u64));
    assert_eq!(control(&mut w, &mut job, Control::Requeue), Handled::Done);
    assert_eq!(job.state(), JobState::Rendering);
    assert_eq!(job.progress().error, None);
    // The requeue funded the escrow again with exactly what the failure refunded.
    assert_eq!(w.balance(&account::escrow(&job_hex())), refunded);
    assert_eq!(w.balance(&account::client(CLIENT)), 0);
    assert_eq!(job.requeue_price(), None);
    let tasks = w.take_tasks();
    assert_eq!(tasks.len(), 2, "frame 1's two tasks go out again");
    for (_, task) in &tasks {
        let view = job.task(&task.task_id).unwrap();
        assert!(view.open && view.holder.is_none());
        assert_eq!(task.attempt, view.attempt);
        assert!(
            task.blocked.contains(&w.node(1).public()),
            "the cheater stays blocked"
        );
        assert_eq!(w.deliver(&mut job, 0, task), Handled::Done);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Done, "{:?}", job.progress());
    // The client paid the job's price once, whatever went back and forth.
    assert_eq!(w.balance(&account::client(CLIENT)), 0);
    assert_eq!(w.ledger.total(), 0);
    let bundle = w.bundle.clone().unwrap();
    assert_eq!(bundle.requeues.len(), 1);
    let q = &bundle.requeues[0].statement;
    assert_eq!((q.requeue, q.failed_in_round), (1, 1));
    assert_eq!(i128::from(q.refunded), refunded);
    assert!(q.reason.contains("failed 8 times"), "{}", q.reason);
    let coordinator = w.coordinator.public();
    let audit = audit_bundle(&bundle, Some(&coordinator));
    assert!(audit.passed(), "{audit:?}");

    // What the auditor refuses: a requeue record altered after signing, a refund and a
    // requeue the bundle does not explain, and a coordinator that refunds part of the
    // escrow and says it refunded that.
    let failures = |b: &ProofBundle| -> Vec<String> {
        audit_bundle(b, Some(&coordinator))
            .failures()
            .map(|c| c.name.to_string())
            .collect()
    };
    let mut altered = bundle.clone();
    altered.requeues[0].statement.refunded -= 1;
    assert!(failures(&altered).contains(&"requeues".to_string()));
    let mut hidden = bundle.clone();
    hidden.requeues.clear();
    assert_eq!(failures(&hidden), ["payments"]);
    let mut short = bundle.clone();
    let mut record = short.requeues[0].statement.clone();
    record.refunded -= 1;
    short.requeues[0] = Signed::sign(record, &w.coordinator);
    let mut receipt = short.payments.statement.clone();
    for t in receipt.transfers.iter_mut() {
        if t.kind == TransferKind::Refund || t.key.contains(":requeue1:") {
            t.amount -= 1;
        }
    }
    short.payments = Signed::sign(receipt, &w.coordinator);
    assert_eq!(failures(&short), ["payments"]);
}

#[test]
fn a_failed_job_pays_its_hold_backs_when_its_window_closes_and_cannot_be_requeued_after() {
    let (mut w, mut job) = caught_cheater_then_silence(60);
    let honest = w.node(0).public();
    let held = w.balance(&account::holdback(&job_hex(), &honest));
    fail_by_silence(&mut w, &mut job);
    w.take_tasks();
    let transfers = job.transfers().len();
    w.now += 59_000;
    w.handle(&mut job, Input::Tick);
    assert_eq!(job.transfers().len(), transfers, "the window is still open");
    w.now += 60_000;
    w.handle(&mut job, Input::Tick);
    assert!(job.is_over());
    assert_eq!(w.balance(&account::holdback(&job_hex(), &honest)), 0);
    let released: u64 = job
        .transfers()
        .iter()
        .filter(|t| t.kind == TransferKind::Release)
        .map(|t| t.amount)
        .sum();
    assert_eq!(i128::from(released), held);
    let refused = control(&mut w, &mut job, Control::Requeue);
    assert!(
        matches!(&refused, Handled::Refused(why) if why.contains("window is over")),
        "{refused:?}"
    );
    assert!(w.take_tasks().is_empty());
    assert_eq!(job.state(), JobState::Failed);
    assert_eq!(w.ledger.total(), 0);
}

/// Round 0: node 0 renders half of frame 0, then lets the other half's lease expire until
/// it is blocked for failed deliveries; node 1 forges the rest and is caught. No node is
/// left for round 1 and the job fails between rounds.
fn every_node_blocked_between_rounds() -> (World, Job) {
    let mut w = World::new(&[None, Some(DishonestMode::Black)]);
    let mut job = w.submit(2, 60);
    let tasks = w.take_tasks();
    let (a, b) = (w.node(0).public(), w.node(1).public());
    assert_eq!(w.deliver(&mut job, 0, &tasks[1].1), Handled::Done);
    let expiring = tasks[0].1.task_id.clone();
    for _ in 0..3 {
        w.handle(
            &mut job,
            Input::Heartbeat {
                node: a,
                task_id: expiring.clone(),
            },
        );
        w.now += LEASE_MS;
        w.handle(&mut job, Input::Tick);
    }
    assert_eq!(job.blocked(), &[a]);
    let again = w.take_tasks();
    let last = again
        .iter()
        .rev()
        .find(|(_, t)| t.task_id == expiring)
        .unwrap();
    assert_eq!(w.deliver(&mut job, 1, &last.1), Handled::Done);
    for (_, task) in &tasks[2..] {
        assert_eq!(w.deliver(&mut job, 1, task), Handled::Done);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Failed, "{:?}", job.progress());
    assert!(w
        .failed
        .as_deref()
        .unwrap()
        .contains("every eligible node is blocked"));
    assert!(job.blocked().contains(&b));
    (w, job)
}

#[test]
fn a_job_that_failed_between_rounds_is_requeued_into_the_next_round() {
    let (mut w, mut job) = every_node_blocked_between_rounds();
    let refunded = w.balance(&account::client(CLIENT));
    assert_eq!(control(&mut w, &mut job, Control::Requeue), Handled::Done);
    assert_eq!(
        job.blocked(),
        &[w.node(1).public()],
        "only the cheater stays blocked"
    );
    assert_eq!(job.progress().round, 1);
    assert_eq!(w.balance(&account::escrow(&job_hex())), refunded);
    let tasks = w.take_tasks();
    assert_eq!(tasks.len(), 3, "the cheater's 9 tiles, 3 a task");
    for (_, task) in &tasks {
        assert_eq!(task.round, 1);
        assert_eq!(w.deliver(&mut job, 0, task), Handled::Done);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Done, "{:?}", job.progress());
    let bundle = w.bundle.clone().unwrap();
    assert_eq!(bundle.rounds.len(), 2);
    assert_eq!(bundle.requeues[0].statement.failed_in_round, 0);
    let audit = audit_bundle(&bundle, Some(&w.coordinator.public()));
    assert!(audit.passed(), "{audit:?}");
    assert_eq!(w.balance(&account::client(CLIENT)), 0);
    assert_eq!(w.ledger.total(), 0);
}

#[test]
fn a_requeue_with_no_node_to_render_is_refused_and_changes_nothing() {
    let mut w = World::new(&[Some(DishonestMode::Black)]);
    let mut job = w.submit(1, 60);
    for (_, task) in w.take_tasks() {
        w.deliver(&mut job, 0, &task);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Failed, "{:?}", job.progress());
    let (transfers, balances) = (job.transfers().len(), w.ledger.balances().clone());
    let refused = control(&mut w, &mut job, Control::Requeue);
    assert!(
        matches!(&refused, Handled::Refused(why) if why.contains("no registered node may render it")),
        "{refused:?}"
    );
    assert_eq!(job.state(), JobState::Failed);
    assert_eq!(job.transfers().len(), transfers);
    assert_eq!(w.ledger.balances(), &balances);
    assert_eq!(
        job.requeue_price(),
        Some(job_price(&job.manifest().statement))
    );
    assert!(w.take_tasks().is_empty());
}

#[test]
fn priority_is_the_clients_and_only_a_running_job_takes_control() {
    let mut w = World::new(&[None]);
    let mut job = w.submit(1, 0);
    assert_eq!(job.priority(), 0);
    assert_eq!(
        control(&mut w, &mut job, Control::Priority(7)),
        Handled::Done
    );
    assert_eq!((job.priority(), w.priority), (7, Some(7)));
    let other = w.handle(
        &mut job,
        Input::Control {
            client: "mallory".into(),
            action: Control::Cancel,
        },
    );
    assert!(matches!(other, Handled::Refused(why) if why.contains("another client")));
    assert_ne!(job.state(), JobState::Cancelled);
    for (_, task) in w.take_tasks() {
        w.deliver(&mut job, 0, &task);
    }
    w.verify_all(&mut job);
    assert_eq!(job.state(), JobState::Done);
    for action in [
        Control::Cancel,
        Control::Pause,
        Control::Requeue,
        Control::Priority(1),
    ] {
        assert!(
            matches!(control(&mut w, &mut job, action), Handled::Refused(why) if why.contains("is done")),
            "{action:?}"
        );
    }
    assert_eq!(job.priority(), 7);
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
        /// Every node goes quiet for as long as it takes the open tasks to run out of
        /// attempts (the job fails, unless nothing is open).
        Silence,
        /// The client disputes the job.
        Dispute,
        /// The client controls the job (cancel, pause, resume, requeue, priority).
        Control(Control),
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
            1 => Just(Op::Silence),
            2 => prop_oneof![
                1 => Just(Control::Cancel),
                2 => Just(Control::Pause),
                2 => Just(Control::Resume),
                1 => Just(Control::Requeue),
                1 => (-3i32..3).prop_map(Control::Priority),
            ]
            .prop_map(Op::Control),
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
        /// The job's transfers right after its cancel was taken.
        cancelled_with: Option<usize>,
        /// Requeues of the failed job taken.
        requeued: u32,
        /// A store the job's machine is put into after every step, as the daemon does.
        store: tessera_coordinator::store::Store,
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
                Op::Silence => {
                    for _ in 0..Policy::default().max_attempts {
                        self.w.now += 1_800_001;
                        self.w.handle(&mut self.job, Input::Tick);
                    }
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
                Op::Control(action) => {
                    let input = Input::Control {
                        client: CLIENT.into(),
                        action,
                    };
                    let live = self.job.may_control(CLIENT, action).is_ok();
                    let failed = self.job.state() == JobState::Failed;
                    let (transfers, balances) =
                        (self.job.transfers().len(), self.w.ledger.balances().clone());
                    let handled = self.w.handle(&mut self.job, input);
                    match &handled {
                        Handled::Done => assert!(live, "{action:?} was taken"),
                        // The machine alone knows whether a node may render a requeue.
                        Handled::Refused(why)
                            if live && failed && why.contains("no registered node") => {}
                        other => assert!(!live, "{action:?}: {other:?}"),
                    }
                    if handled != Handled::Done {
                        assert_eq!(self.job.transfers().len(), transfers);
                        assert_eq!(self.w.ledger.balances(), &balances);
                    }
                    if live && failed && handled == Handled::Done {
                        // The escrow holds again what the failure refunded.
                        let q = &self.job.requeues().last().unwrap().statement;
                        let job = hex::encode(q.job_id);
                        assert_eq!(
                            self.w.balance(&account::escrow(&job)),
                            i128::from(q.refunded)
                        );
                        assert_ne!(self.job.state(), JobState::Failed);
                        self.requeued += 1;
                    }
                    if live && action == Control::Cancel {
                        assert_eq!(self.job.state(), JobState::Cancelled);
                        self.cancelled_with = Some(self.job.transfers().len());
                    }
                }
                _ => {}
            }
            self.collect();
        }

        /// Drive the job honestly to its end: every open task delivered by a node that
        /// may take it, every check answered, the clock moved when nothing else moves; a
        /// failed job is requeued by its client first when `requeue` (and it may be).
        fn settle(&mut self, requeue: bool) {
            if requeue
                && self.job.state() == JobState::Failed
                && self.job.may_control(CLIENT, Control::Requeue).is_ok()
            {
                self.step(&Op::Control(Control::Requeue));
            }
            if self.job.state() == JobState::Paused {
                let input = Input::Control {
                    client: CLIENT.into(),
                    action: Control::Resume,
                };
                assert_eq!(self.w.handle(&mut self.job, input), Handled::Done);
                self.collect();
            }
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

        /// The store, given the machine after each step, says for every task the job
        /// sent (and one it never had) and every node (and a stranger) what the machine
        /// says: the claims it keeps follow every change, written as differences.
        fn check_claims(&self) {
            let job_id = hex::encode(self.job.manifest().statement.job_id);
            self.store.put_machine(&job_id, &self.job).unwrap();
            let mut keys: Vec<_> = self.w.nodes.iter().map(|n| n.public()).collect();
            keys.push(SecretKey::from_seed(&[7; 32]).public());
            let unknown = format!("{job_id}-never");
            let ids = self
                .sent
                .iter()
                .map(|t| t.task_id.as_str())
                .chain([unknown.as_str()]);
            for id in ids {
                for k in &keys {
                    assert_eq!(
                        self.store.task_wanted(&job_id, id, k).unwrap(),
                        Some(self.job.wants(id, k)),
                        "task {id}, node {}",
                        k.short()
                    );
                }
            }
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
        /// when a dispute found nothing; nothing stays held back. After every step the
        /// store's task claims answer a node as the machine does (`check_claims`).
        #[test]
        fn the_ledger_keeps_its_rules_over_random_histories_of_one_job(
            cheats in prop::collection::vec(cheat(), 3),
            frames in 1u32..=2,
            window in prop::bool::ANY,
            ops in prop::collection::vec(op(), 0..40),
            requeue in prop::bool::ANY,
        ) {
            let mut cheats = cheats;
            cheats[0] = None; // one honest node, so that every job can end
            let mut w = World::new(&cheats);
            let job = w.submit(frames, if window { 6 * 3_600 } else { 0 });
            let price = i128::from(job_price(&job.manifest().statement));
            let mut run = Run {
                w,
                job,
                sent: Vec::new(),
                checks: Vec::new(),
                last: None,
                client_paid_in: price,
                disputes: 0,
                cancelled_with: None,
                requeued: 0,
                store: tessera_coordinator::store::Store::open(std::path::Path::new(":memory:"))
                    .unwrap(),
            };
            run.collect();
            for op in &ops {
                run.step(op);
                run.check_ledger();
                run.check_claims();
            }
            run.settle(requeue);
            run.check_ledger();
            run.check_claims();
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
                    prop_assert_eq!(bundle.requeues.len() as u32, run.requeued);
                }
                JobState::Failed => prop_assert!(paid <= price, "paid {} of {}", paid, price),
                JobState::Cancelled => {
                    // Nothing moved after the cancel, late results and verdicts included.
                    prop_assert_eq!(Some(run.job.transfers().len()), run.cancelled_with);
                    // The client paid exactly the verified work, at the tier's price, and
                    // got the rest of its escrow back.
                    let verified: i128 = run
                        .job
                        .verdicts()
                        .filter(|v| !v.statement.check.dispute)
                        .filter(|v| v.statement.decision == Decision::Pass)
                        .map(|v| i128::from(v.statement.n_committed))
                        .sum::<i128>()
                        / i128::from(blocks_per_tile(&run.job));
                    let value = verified * i128::from(tile_price(&run.job));
                    prop_assert_eq!(paid, value);
                    // Net of what requeues of a failed job put back in escrow.
                    let refunded: i128 = run
                        .job
                        .transfers()
                        .iter()
                        .map(|t| match t.kind {
                            TransferKind::Refund => i128::from(t.amount),
                            TransferKind::Escrow if t.key.contains(":requeue") => {
                                -i128::from(t.amount)
                            }
                            _ => 0,
                        })
                        .sum();
                    prop_assert_eq!(refunded, price - value);
                }
                other => prop_assert!(false, "the job ended {}", other),
            }
        }
    }
}
