//! The test harness shared by the coordinator's state-machine tests: a [`Service`] over
//! a temporary SQLite store with a virtual clock, whose outbox is drained the way the
//! publisher drains it, answered by stand-in nodes and verifiers, and fed back.
#![allow(dead_code, unused_imports)] // each test file uses part of it (and of its prelude)

pub use std::sync::Arc;
pub use std::time::Duration;
pub use tessera_coordinator::daemon::service::{Handled, Service, ServiceConfig, Submission};
pub use tessera_coordinator::store::Store;
pub use tessera_node::stub::HashRenderer;
pub use tessera_node::{DishonestMode, Node};
pub use tessera_protocol::keys::{PublicKey, SecretKey};
pub use tessera_protocol::payments::TransferKind;
pub use tessera_protocol::statements::{NodeSignal, Registration, Role, Signed, TaskNote};
pub use tessera_protocol::wire::{
    Capabilities, RenderTask, Requirements, VerdictMessage, VerifyRequest, QUEUE_VERIFY,
    WIRE_VERSION,
};
pub use tessera_protocol::{RenderSettings, TileRenderer};
pub use tessera_verifier::{audit_bundle, Verifier};

pub const LEASE: u64 = 10_000;

/// The verifier token every test farm grants the verifier role with.
pub const VERIFIER_TOKEN: &str = "test-verifier-token";

/// What the operator deposits as a node's stake in these tests (once per node).
pub const NODE_STAKE: u64 = 1_000_000;

/// What the operator credits each client with before its first job.
pub const CLIENT_CREDIT: u64 = 1_000_000_000_000;

pub struct Farm {
    pub svc: Service,
    pub _dir: tempfile::TempDir,
    pub db: std::path::PathBuf,
    pub coordinator_seed: [u8; 32],
    pub now: u64,
    pub renderer: Arc<dyn TileRenderer>,
    /// Messages [`Farm::verify`] drained but did not answer.
    pub held: std::cell::RefCell<Vec<(String, String, Vec<u8>)>>,
}

pub fn caps(r: &Arc<dyn TileRenderer>) -> Capabilities {
    Capabilities {
        class: r.class().clone(),
        memory_bytes: 1 << 30,
        slots: 2,
        software: "test".into(),
    }
}

impl Farm {
    pub fn new() -> Self {
        Self::with_config(Self::config())
    }

    /// The configuration [`Farm::new`] uses: short leases, 16-pixel tiles, 2 per task,
    /// and no challenge window (hold-backs released when a job finishes) unless a test
    /// sets one.
    pub fn config() -> ServiceConfig {
        ServiceConfig {
            lease_ms: LEASE,
            challenge_window_secs: 0,
            batch_size: 2,
            tile_size: 16,
            verifier_token: Some(VERIFIER_TOKEN.into()),
            ..ServiceConfig::default()
        }
    }

    /// A farm whose service runs with `cfg` (verifiers are granted their role with
    /// [`VERIFIER_TOKEN`] unless `cfg` grants it otherwise).
    pub fn with_config(mut cfg: ServiceConfig) -> Self {
        if cfg.verifier_token.is_none() && cfg.verifier_keys.is_empty() {
            cfg.verifier_token = Some(VERIFIER_TOKEN.into());
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let seed = [9u8; 32];
        let svc = Service::new(Store::open(&db).unwrap(), SecretKey::from_seed(&seed), cfg);
        Self {
            svc,
            _dir: dir,
            db,
            coordinator_seed: seed,
            now: 1_000_000,
            renderer: Arc::new(HashRenderer::new(Duration::ZERO)),
            held: Default::default(),
        }
    }

    /// Close and reopen the store, as a restarted coordinator does.
    pub fn restart(&mut self) {
        let cfg = self.svc.config().clone();
        self.svc = Service::new(
            Store::open(&self.db).unwrap(),
            SecretKey::from_seed(&self.coordinator_seed),
            cfg,
        );
    }

    pub fn register(&self, key: &SecretKey, role: &str) {
        self.register_with(key, role, caps(&self.renderer));
    }

    pub fn register_with(&self, key: &SecretKey, role: &str, caps: Capabilities) {
        let c = self.svc.challenge(self.now).unwrap();
        let reg = Signed::sign(
            Registration {
                role: role.parse().expect("node or verifier"),
                name: format!("{role}-{}", key.public().short()),
                challenge: tessera_protocol::hexser::decode(&c).unwrap(),
                coordinator: self.svc.public(),
                capabilities: caps.digest(),
            },
            key,
        );
        self.try_register(&reg, &caps).unwrap();
        if role == "node" {
            // The operator deposits each node's stake once (stake is never granted).
            self.svc
                .credit(
                    &format!("stake:{}", key.public()),
                    NODE_STAKE,
                    &format!("stake-{}", key.public()),
                )
                .unwrap();
        }
    }

    /// Register with the token the farm's configuration asks of the role.
    pub fn try_register(
        &self,
        reg: &Signed<Registration>,
        caps: &Capabilities,
    ) -> Result<String, tessera_coordinator::daemon::service::ServiceError> {
        let cfg = self.svc.config();
        let token = match reg.statement.role.as_str() {
            "verifier" => cfg.verifier_token.clone(),
            _ => cfg.node_token.clone(),
        };
        self.svc.register(reg, caps, token.as_deref(), self.now)
    }

    /// Credit `client` once with [`CLIENT_CREDIT`], as its operator would before its
    /// first job.
    pub fn fund(&self, client: &str) {
        self.svc
            .credit(
                &format!("client:{client}"),
                CLIENT_CREDIT,
                &format!("client-{client}"),
            )
            .unwrap();
    }

    pub fn submit(&self) -> String {
        self.submit_requiring(Requirements::default())
    }

    pub fn submit_requiring(&self, requirements: Requirements) -> String {
        self.submit_with("economy", requirements)
    }

    /// Submit the test job (40×24, 2 frames, client `studio`) in `tier`.
    pub fn submit_with(&self, tier: &str, requirements: Requirements) -> String {
        self.try_submit(tier, requirements).unwrap()
    }

    /// [`Farm::submit_with`], returning the service's answer.
    pub fn try_submit(
        &self,
        tier: &str,
        requirements: Requirements,
    ) -> Result<String, tessera_coordinator::daemon::service::ServiceError> {
        self.fund("studio");
        self.svc.submit(
            Submission {
                client: "studio",
                scene_name: "scene.glb",
                scene_hash: [7; 32],
                settings: test_settings(),
                frames: (0, 1),
                tier,
                tile_size: None,
                batch_size: None,
                requirements,
            },
            self.now,
        )
    }

    /// Take every message the outbox holds (what the publisher would send), in order,
    /// after those [`Self::verify`] set aside.
    pub fn drain(&self) -> Vec<(String, String, Vec<u8>)> {
        let mut out = self.held.take();
        out.extend(self.drain_outbox());
        out
    }

    pub fn drain_outbox(&self) -> Vec<(String, String, Vec<u8>)> {
        let rows = self.svc.store().outbox(10_000).unwrap();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        self.svc.store().delete_outbox(&seqs).unwrap();
        rows.into_iter()
            .map(|r| (r.queue, r.message_id, r.body))
            .collect()
    }

    pub fn node(&self, key: &SecretKey, cheat: Option<DishonestMode>) -> Node {
        Node::new(
            "n",
            SecretKey::from_seed(&key_seed(key)),
            [7; 32],
            self.renderer.clone(),
            cheat,
        )
    }

    pub fn signal(&self, key: &SecretKey, active: &[&str], failed: &[&str]) -> Vec<u8> {
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
                        attempt: self.attempt(t),
                        reason: "gpu lost".into(),
                    })
                    .collect(),
            },
            key,
        ))
        .unwrap()
    }

    /// The attempt `task` is on now (0 for an unknown task).
    pub fn attempt(&self, task: &str) -> u32 {
        self.svc.task(task).unwrap().map_or(0, |t| t.attempt)
    }

    /// Answer verify requests with `verifier` and feed the verdicts back, then answer the
    /// escalated checks those verdicts queue, until none is left; other messages queued
    /// meanwhile are kept for the next [`Self::drain`].
    pub fn verify(&self, verifier: &Verifier, msgs: &[(String, String, Vec<u8>)]) {
        self.verify_with(&[verifier], msgs)
    }

    /// [`Self::verify`] where a request routed to a verifier's own queue goes to that one.
    pub fn verify_with(&self, verifiers: &[&Verifier], msgs: &[(String, String, Vec<u8>)]) {
        let is_verify = |q: &str| q == QUEUE_VERIFY || q.starts_with("verifier.");
        let mut batch: Vec<_> = msgs.iter().filter(|m| is_verify(&m.0)).cloned().collect();
        while !batch.is_empty() {
            self.answer(verifiers, &batch);
            batch.clear();
            for m in self.drain_outbox() {
                if is_verify(&m.0) {
                    batch.push(m);
                } else {
                    self.held.borrow_mut().push(m);
                }
            }
        }
    }

    pub fn answer(&self, verifiers: &[&Verifier], msgs: &[(String, String, Vec<u8>)]) {
        for (q, _, body) in msgs {
            let verifier = verifiers
                .iter()
                .find(|v| *q == tessera_protocol::wire::verifier_queue(&v.public()))
                .unwrap_or(&verifiers[0]);
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
/// The settings of the test job: 40×24 pixels, 4 spp, 2 bounces.
pub fn test_settings() -> RenderSettings {
    RenderSettings {
        width: 40,
        height: 24,
        spp: 4,
        max_bounces: 2,
        seed: 3,
        camera: None,
        frame_rate: Default::default(),
    }
}

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

pub fn key_seed(k: &SecretKey) -> [u8; 32] {
    (1..=255u8)
        .map(|n| [n; 32])
        .find(|s| SecretKey::from_seed(s).public() == k.public())
        .expect("test keys come from key(n)")
}

pub fn tasks(msgs: &[(String, String, Vec<u8>)]) -> Vec<RenderTask> {
    msgs.iter()
        .filter(|m| m.0 == "tasks" || m.0.starts_with("node."))
        .map(|m| serde_json::from_slice(&m.2).unwrap())
        .collect()
}

pub fn result_body(node: &Node, task: &RenderTask) -> Vec<u8> {
    serde_json::to_vec(&node.handle_task(task).unwrap()).unwrap()
}

pub fn state(f: &Farm, job: &str) -> String {
    f.svc.job_view(job).unwrap().progress.state.to_string()
}

pub fn assert_paid_once(f: &Farm, job: &str) {
    let bundle: tessera_protocol::bundle::ProofBundle = f.svc.bundle(job).unwrap();
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

/// Farms with another configuration, and jobs of other clients and tiers (for the
/// ledger's property tests).
impl Farm {
    /// Submit the job [`Farm::submit`] submits, for `client` in `tier` over `frames`;
    /// the service's answer as it is (the client pays from its balance: [`Farm::fund`]).
    pub fn submit_as(
        &self,
        client: &str,
        tier: &str,
        frames: (u32, u32),
    ) -> Result<String, tessera_coordinator::daemon::service::ServiceError> {
        self.svc.submit(
            Submission {
                client,
                scene_name: "scene.glb",
                scene_hash: [7; 32],
                settings: test_settings(),
                frames,
                tier,
                tile_size: None,
                batch_size: None,
                requirements: Requirements::default(),
            },
            self.now,
        )
    }
}
