//! The daemon coordinator's state machine, driven directly (no broker, no HTTP) with a
//! virtual clock: messages are taken from its outbox table the way the publisher takes
//! them, answered by stand-in nodes and a verifier, and fed back. Covers a whole job,
//! leases that expire, duplicated and reordered results, refused inputs, the per-job
//! blocklist, and a restart between commit and publish.

use std::sync::Arc;
use std::time::Duration;
use tessera_coordinator::daemon::service::{Handled, Service, ServiceConfig};
use tessera_coordinator::store::Store;
use tessera_node::stub::HashRenderer;
use tessera_node::{DishonestMode, Node};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::TransferKind;
use tessera_protocol::statements::{NodeSignal, Registration, Signed, TaskNote};
use tessera_protocol::wire::{
    Capabilities, RenderTask, Requirements, VerdictMessage, VerifyRequest, QUEUE_VERIFY,
    WIRE_VERSION,
};
use tessera_protocol::{RenderSettings, TileRenderer};
use tessera_verifier::{audit_bundle, Verifier};

const LEASE: u64 = 10_000;

struct Farm {
    svc: Service,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    coordinator_seed: [u8; 32],
    now: u64,
    renderer: Arc<dyn TileRenderer>,
}

fn caps(r: &Arc<dyn TileRenderer>) -> Capabilities {
    Capabilities {
        class: r.class().clone(),
        memory_bytes: 1 << 30,
        slots: 2,
        software: "test".into(),
    }
}

impl Farm {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let seed = [9u8; 32];
        let svc = Service::new(
            Store::open(&db).unwrap(),
            SecretKey::from_seed(&seed),
            ServiceConfig {
                lease_ms: LEASE,
                batch_size: 2,
                tile_size: 16,
                ..ServiceConfig::default()
            },
        );
        Self {
            svc,
            _dir: dir,
            db,
            coordinator_seed: seed,
            now: 1_000_000,
            renderer: Arc::new(HashRenderer::new(Duration::ZERO)),
        }
    }

    /// Close and reopen the store, as a restarted coordinator does.
    fn restart(&mut self) {
        let cfg = self.svc.config().clone();
        self.svc = Service::new(
            Store::open(&self.db).unwrap(),
            SecretKey::from_seed(&self.coordinator_seed),
            cfg,
        );
    }

    fn register(&self, key: &SecretKey, role: &str) {
        self.register_with(key, role, caps(&self.renderer));
    }

    fn register_with(&self, key: &SecretKey, role: &str, caps: Capabilities) {
        let c = self.svc.challenge(self.now).unwrap();
        let reg = Signed::sign(
            Registration {
                role: role.into(),
                name: format!("{role}-{}", key.public().short()),
                challenge: tessera_protocol::hexser::decode(&c).unwrap(),
                coordinator: self.svc.public(),
                capabilities: caps.digest(),
            },
            key,
        );
        self.svc.register(&reg, &caps, None, self.now).unwrap();
    }

    fn submit(&self) -> String {
        self.submit_requiring(Requirements::default())
    }

    fn submit_requiring(&self, requirements: Requirements) -> String {
        self.svc
            .submit(
                "studio",
                "scene.glb",
                [7; 32],
                RenderSettings {
                    width: 40,
                    height: 24,
                    spp: 4,
                    max_bounces: 2,
                    seed: 3,
                    camera: None,
                    frame_rate: Default::default(),
                },
                (0, 1),
                "economy",
                None,
                None,
                requirements,
                self.now,
            )
            .unwrap()
    }

    /// Take every message the outbox holds (what the publisher would send), in order.
    fn drain(&self) -> Vec<(String, String, Vec<u8>)> {
        let rows = self.svc.store().outbox(10_000).unwrap();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        self.svc.store().delete_outbox(&seqs).unwrap();
        rows.into_iter()
            .map(|r| (r.queue, r.message_id, r.body))
            .collect()
    }

    fn node(&self, key: &SecretKey, cheat: Option<DishonestMode>) -> Node {
        Node::new(
            "n",
            SecretKey::from_seed(&key_seed(key)),
            [7; 32],
            self.renderer.clone(),
            cheat,
        )
    }

    fn signal(&self, key: &SecretKey, active: &[&str], failed: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&Signed::sign(
            NodeSignal {
                node: key.public(),
                sent_unix_ms: self.now,
                active: active.iter().map(|s| s.to_string()).collect(),
                declined: vec![],
                failed: failed
                    .iter()
                    .map(|t| TaskNote {
                        task_id: t.to_string(),
                        reason: "gpu lost".into(),
                    })
                    .collect(),
            },
            key,
        ))
        .unwrap()
    }

    /// Answer verify requests with `verifier` and feed the verdicts back.
    fn verify(&self, verifier: &Verifier, msgs: &[(String, String, Vec<u8>)]) {
        for (q, _, body) in msgs.iter().filter(|m| m.0 == QUEUE_VERIFY) {
            assert_eq!(q, QUEUE_VERIFY);
            let req: VerifyRequest = serde_json::from_slice(body).unwrap();
            let verdict = verifier.handle_request(&req).unwrap();
            let msg = VerdictMessage {
                version: WIRE_VERSION,
                request_id: req.request_id,
                verdict,
            };
            let h = self
                .svc
                .handle_verdict(&serde_json::to_vec(&msg).unwrap(), self.now)
                .unwrap();
            assert_eq!(h, Handled::Done);
        }
    }
}

/// Keys in these tests come from seeds so a node can be rebuilt from its key.
fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn key_seed(k: &SecretKey) -> [u8; 32] {
    (1..=255u8)
        .map(|n| [n; 32])
        .find(|s| SecretKey::from_seed(s).public() == k.public())
        .expect("test keys come from key(n)")
}

fn tasks(msgs: &[(String, String, Vec<u8>)]) -> Vec<RenderTask> {
    msgs.iter()
        .filter(|m| m.0 == "tasks" || m.0.starts_with("node."))
        .map(|m| serde_json::from_slice(&m.2).unwrap())
        .collect()
}

fn result_body(node: &Node, task: &RenderTask) -> Vec<u8> {
    serde_json::to_vec(&node.handle_task(task).unwrap()).unwrap()
}

fn state(f: &Farm, job: &str) -> String {
    f.svc.job_view(job).unwrap().state
}

fn assert_paid_once(f: &Farm, job: &str) {
    let bundle: tessera_protocol::bundle::ProofBundle =
        serde_json::from_str(&f.svc.bundle(job).unwrap()).unwrap();
    let report = audit_bundle(&bundle, None);
    assert!(
        report.passed(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert_eq!(f.svc.store().total().unwrap(), 0, "ledger sum changed");
    let transfers = f.svc.store().job_transfers(job).unwrap();
    let keys: std::collections::BTreeSet<_> = transfers.iter().map(|t| &t.key).collect();
    assert_eq!(keys.len(), transfers.len(), "a transfer key appears twice");
    let tiles: u32 = bundle.frames.iter().map(|f| f.tiles.len() as u32).sum();
    let paid: u32 = transfers
        .iter()
        .filter(|t| t.kind == TransferKind::PayOnPass)
        .map(|t| t.tiles)
        .sum();
    assert_eq!(paid, tiles, "every final tile is paid exactly once");
    assert_eq!(f.svc.store().balance(&format!("escrow:{job}")).unwrap(), 0);
}

#[test]
fn a_job_runs_to_done_through_the_outbox_and_audits() {
    let f = Farm::new();
    let (a, v) = (key(1), key(2));
    f.register(&a, "node");
    f.register(&v, "verifier");
    let job = f.submit();
    assert_eq!(state(&f, &job), "queued");
    let msgs = f.drain();
    let ts = tasks(&msgs);
    assert_eq!(ts.len(), 2 * 6 / 2, "2 frames × 6 tiles in tasks of 2");
    let node = f.node(&a, None);
    for t in &ts {
        assert_eq!(
            f.svc.handle_result(&result_body(&node, t), f.now).unwrap(),
            Handled::Done
        );
    }
    assert_eq!(state(&f, &job), "verifying");
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    let frame = f.svc.frame(&job, 1).unwrap();
    assert_eq!(frame.len(), 40 * 24 * 8);
}

#[test]
fn duplicated_and_reordered_results_pay_once() {
    let f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let (na, nb) = (f.node(&a, None), f.node(&b, None));
    // Both nodes render every task; results arrive in reverse order, each twice.
    let mut bodies = Vec::new();
    for t in &ts {
        bodies.push(result_body(&na, t));
        bodies.push(result_body(&nb, t));
    }
    bodies.reverse();
    for body in bodies.iter().chain(bodies.iter()) {
        assert_eq!(f.svc.handle_result(body, f.now).unwrap(), Handled::Done);
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    let msgs = f.drain();
    f.verify(&verifier, &msgs);
    f.verify(&verifier, &msgs); // verdicts delivered twice
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

#[test]
fn expired_leases_requeue_and_block_a_silent_node_then_the_job_finishes() {
    let mut f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let first = ts[0].task_id.clone();
    // Node a takes the first task, heartbeats once, then goes silent.
    for _ in 0..3 {
        f.svc
            .handle_signal(&f.signal(&a, &[&first], &[]), f.now)
            .unwrap();
        f.now += LEASE - 1;
        assert_eq!(f.svc.reconcile(f.now).unwrap(), 0, "lease still valid");
        f.now += 2;
        assert_eq!(
            f.svc.reconcile(f.now).unwrap(),
            1,
            "expired lease not requeued"
        );
        let again = tasks(&f.drain());
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].task_id, first);
    }
    // Three expired leases: a is blocked from the job; the republished task says so and
    // goes to b's own queue.
    f.svc
        .handle_signal(&f.signal(&b, &[&first], &[]), f.now)
        .unwrap();
    let nb = f.node(&b, None);
    let msgs_before = f.svc.store().outbox(100).unwrap();
    assert!(msgs_before.is_empty());
    let task = f.svc.store().task(&first).unwrap().unwrap();
    let body: RenderTask = serde_json::from_str(&task.body).unwrap();
    assert_eq!(body.attempt, 3);
    assert!(
        body.blocked.contains(&a.public()),
        "silent node not blocked"
    );
    // a's late result is refused; b's counts.
    let na = f.node(&a, None);
    assert!(matches!(
        f.svc.handle_result(&result_body(&na, &body), f.now).unwrap(),
        Handled::Refused(r) if r.contains("may not deliver")
    ));
    f.restart();
    for t in ts.iter().skip(1).chain(std::iter::once(&body)) {
        assert_eq!(
            f.svc.handle_result(&result_body(&nb, t), f.now).unwrap(),
            Handled::Done
        );
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    let bundle: tessera_protocol::bundle::ProofBundle =
        serde_json::from_str(&f.svc.bundle(&job).unwrap()).unwrap();
    assert!(bundle
        .frames
        .iter()
        .flat_map(|f| &f.tiles)
        .all(|t| t.node == b.public()));
}

#[test]
fn refused_inputs_name_their_reason_and_change_nothing() {
    let f = Farm::new();
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let na = f.node(&a, None);
    let good = na.handle_task(&ts[0]).unwrap();
    let refused = |body: Vec<u8>| match f.svc.handle_result(&body, f.now).unwrap() {
        Handled::Refused(r) => r,
        Handled::Done => panic!("accepted"),
    };
    assert!(refused(b"{not json".to_vec()).contains("malformed result"));
    // Signed by a key that never registered.
    let stranger = Node::new("x", key(50), [7; 32], f.renderer.clone(), None);
    let r = refused(serde_json::to_vec(&stranger.handle_task(&ts[0]).unwrap()).unwrap());
    assert!(r.contains("unknown node"), "{r}");
    // A tile whose bytes do not hash to its leaf.
    let mut bad = good.clone();
    bad.tiles[0].bytes[0] ^= 1;
    assert!(refused(serde_json::to_vec(&bad).unwrap()).contains("do not hash"));
    // A tile with bounds outside the image.
    let mut off = good.clone();
    off.batch.tiles[0].rect.x = 10_000;
    let r = refused(serde_json::to_vec(&off).unwrap());
    assert!(r.contains("tile"), "{r}");
    // A signal signed by someone else than the node it names.
    let forged = Signed {
        statement: NodeSignal {
            node: a.public(),
            sent_unix_ms: 0,
            active: vec![],
            declined: vec![],
            failed: vec![TaskNote {
                task_id: ts[0].task_id.clone(),
                reason: "x".into(),
            }],
        },
        signer: PublicKey(key(50).public().0),
        signature: [0; 64],
    };
    assert!(matches!(
        f.svc
            .handle_signal(&serde_json::to_vec(&forged).unwrap(), f.now)
            .unwrap(),
        Handled::Refused(_)
    ));
    // Nothing above was stored or paid, and the job still finishes.
    assert_eq!(f.svc.job_view(&job).unwrap().tiles_rendered, 0);
    for t in &tasks(&f.drain())
        .into_iter()
        .chain(ts.clone())
        .collect::<Vec<_>>()
    {
        f.svc.handle_result(&result_body(&na, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

#[test]
fn a_cheater_is_slashed_and_its_tiles_rendered_elsewhere() {
    let f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Black)), f.node(&b, None));
    for (i, t) in ts.iter().enumerate() {
        let n = if i % 2 == 0 { &cheat } else { &honest };
        f.svc.handle_result(&result_body(n, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "rendering", "round 1 should re-render");
    let round1 = tasks(&f.drain());
    assert!(!round1.is_empty());
    for t in &round1 {
        assert!(t.blocked.contains(&a.public()));
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    let slashed: u64 = f
        .svc
        .store()
        .job_transfers(&job)
        .unwrap()
        .iter()
        .filter(|t| t.kind == TransferKind::Slash)
        .map(|t| t.amount)
        .sum();
    assert!(slashed > 0, "cheater not slashed");
}

#[test]
fn a_restart_after_commit_still_publishes_what_was_committed() {
    let mut f = Farm::new();
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    // The coordinator dies before its publisher ran: the tasks are still in the outbox.
    f.restart();
    let ts = tasks(&f.drain());
    assert_eq!(ts.len(), 6);
    let n = f.node(&key(1), None);
    for t in &ts {
        f.svc.handle_result(&result_body(&n, t), f.now).unwrap();
    }
    f.restart();
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

#[test]
fn a_node_failure_signal_requeues_and_too_many_fail_the_job_with_a_refund() {
    let mut f = Farm::new();
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let t = tasks(&f.drain())[0].task_id.clone();
    let max = f.svc.config().max_attempts;
    for i in 1..max {
        f.svc
            .handle_signal(&f.signal(&a, &[], &[&t]), f.now)
            .unwrap();
        f.now += 1;
        let again = f.drain();
        if i < 3 {
            assert_eq!(tasks(&again).len(), 1, "failed task not republished");
        }
    }
    // a is blocked after 3 failures and is the only node: the task cannot be routed, so
    // the reconciler republishes it until it runs out of attempts.
    f.now += 3_600_000;
    for _ in 0..max {
        f.svc.reconcile(f.now).unwrap();
        f.now += 3_600_000;
    }
    let v = f.svc.job_view(&job).unwrap();
    assert_eq!(v.state, "failed");
    assert!(v.error.unwrap().contains("failed"));
    assert_eq!(f.svc.store().balance(&format!("escrow:{job}")).unwrap(), 0);
    assert_eq!(f.svc.store().total().unwrap(), 0);
}

#[test]
fn hold_backs_are_released_when_the_challenge_window_ends() {
    let mut f = Farm::new();
    let cfg = ServiceConfig {
        challenge_window_secs: 60,
        ..f.svc.config().clone()
    };
    f.svc = Service::new(
        Store::open(&f.db).unwrap(),
        SecretKey::from_seed(&f.coordinator_seed),
        cfg,
    );
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let n = f.node(&key(1), None);
    for t in &tasks(&f.drain()) {
        f.svc.handle_result(&result_body(&n, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let escrow = format!("holdback:{job}:{}", key(1).public());
    let held = f.svc.store().balance(&escrow).unwrap();
    assert!(held > 0, "economy holds half back until the window ends");
    f.now += 59_000;
    f.svc.reconcile(f.now).unwrap();
    assert_eq!(
        f.svc.store().balance(&escrow).unwrap(),
        held,
        "released early"
    );
    f.now += 2_000;
    f.svc.reconcile(f.now).unwrap();
    assert_eq!(f.svc.store().balance(&escrow).unwrap(), 0, "not released");
    f.svc.reconcile(f.now + 1).unwrap(); // nothing twice
    assert_paid_once(&f, &job);
    let bundle: tessera_protocol::bundle::ProofBundle =
        serde_json::from_str(&f.svc.bundle(&job).unwrap()).unwrap();
    let released: u64 = bundle
        .payments
        .statement
        .transfers
        .iter()
        .filter(|t| t.kind == TransferKind::Release)
        .map(|t| t.amount)
        .sum();
    assert_eq!(
        released as i64, held,
        "the bundle's receipt lacks the releases"
    );
}

#[test]
fn jobs_with_requirements_go_only_to_nodes_that_meet_them() {
    let mut f = Farm::new();
    let (small, big, other_class) = (key(1), key(3), key(4));
    let mut caps_small = caps(&f.renderer);
    caps_small.memory_bytes = 1 << 20;
    f.register_with(&small, "node", caps_small);
    let mut caps_big = caps(&f.renderer);
    caps_big.memory_bytes = 8 << 30;
    f.register_with(&big, "node", caps_big.clone());
    let mut caps_other = caps_big.clone();
    caps_other.class.driver = "another driver".into();
    f.register_with(&other_class, "node", caps_other);
    f.register(&key(2), "verifier");
    let job = f.submit_requiring(Requirements {
        class_id: Some(caps_big.class.id()),
        min_memory_bytes: 4 << 30,
    });
    let msgs = f.drain();
    let routed: std::collections::BTreeSet<&str> = msgs
        .iter()
        .filter(|m| m.0 != QUEUE_VERIFY)
        .map(|m| m.0.as_str())
        .collect();
    let want = tessera_protocol::wire::node_queue(&big.public());
    assert_eq!(
        routed,
        [want.as_str()].into_iter().collect(),
        "tasks must go only to the node with enough memory and the required class"
    );
    // The node that meets them declines one anyway (say it lost memory): with nobody
    // else eligible it stays unrouted until the reconciler tries again, never to `tasks`.
    let first = tasks(&msgs)[0].task_id.clone();
    let decline = Signed::sign(
        NodeSignal {
            node: big.public(),
            sent_unix_ms: f.now,
            active: vec![],
            declined: vec![TaskNote {
                task_id: first.clone(),
                reason: "out of memory".into(),
            }],
            failed: vec![],
        },
        &big,
    );
    f.svc
        .handle_signal(&serde_json::to_vec(&decline).unwrap(), f.now)
        .unwrap();
    assert!(
        f.drain().is_empty(),
        "declined task rerouted to an ineligible node"
    );
    // Every task rendered by the eligible node: the job finishes.
    f.now += 1;
    let nb = f.node(&big, None);
    for t in &tasks(&msgs) {
        f.svc.handle_result(&result_body(&nb, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}
