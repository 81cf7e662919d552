//! One simulated job, end to end through the real code: a signed manifest with committed
//! nonces, tasks cut by the coordinator's round rules, batches rendered and signed by
//! [`Node`]s and checked by `job::check_result`, the round commitment, the revealed nonce,
//! verify requests judged by [`Verifier`]s (escalating to a second verifier of the other
//! class), failed nodes' tiles re-rendered in the next round, and the payment rules
//! applied to a [`Ledger`].

use super::renderers::{Forger, Memo, OtherClass};
use super::stats::{digest, Bands, Money, Tally};
use super::SimConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tessera_coordinator::job::{self, CheckOf, DISPUTE_NONCE_SLOT, MAX_ROUNDS};
use tessera_node::stub::HashRenderer;
use tessera_node::Node;
use tessera_protocol::bundle::BatchRecord;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{account, Ledger, Pricing, Transfer, TransferKind};
use tessera_protocol::rules::{job_price, job_transfers, Event, NodeOutcome};
use tessera_protocol::statements::{
    CheckKind, Decision, JobManifest, NodeSnapshot, RoundCommitment, Signed, MANIFEST_VERSION,
};
use tessera_protocol::tolerance::{Band, Tolerance};
use tessera_protocol::wire::{Requirements, VerdictMessage, WIRE_VERSION};
use tessera_protocol::{tile_layout, Digest, RenderSettings, TileRect, TileRenderer};
use tessera_verifier::Verifier;

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

/// Who a node is in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Cheater,
    HonestSame,
    HonestOther,
}

/// One worker's farm: the coordinator key, the honest node of the cheater's class and the
/// verifier of that class (both on the memoized stand-in), and the seeds of the keys of
/// the per-job parties. Keys are derived from the seed, so every worker has the same
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
            verifiers: vec![self.first.public(), self.second_key],
            // Simulated: no clock, so that a seed gives the same bytes every time.
            created_unix: 0,
        };
        (Signed::sign(manifest, &self.coordinator), nonces, salt)
    }

    /// Run job `index` to its end and count what happened.
    pub fn run(&self, cfg: &SimConfig, index: u64) -> Result<Tally, String> {
        let (signed, nonces, salt) = self.manifest(cfg, index);
        let manifest = &signed.statement;
        let parties = self.parties(cfg, salt);
        let forger = &parties.forger;
        let layout = tile_layout(
            manifest.settings.width,
            manifest.settings.height,
            cfg.tile_size,
        );
        let mut tally = Tally {
            jobs: 1,
            ..Default::default()
        };
        let forged = layout
            .iter()
            .filter(|r| forger.forgery(0, **r).is_some())
            .count() as u64;
        tally.forged_tiles = forged;
        tally.cheaters_without_forgery = u64::from(forged == 0);

        let mut pending: Vec<(u32, u32)> = (0..FRAMES)
            .flat_map(|f| (0..layout.len() as u32).map(move |t| (f, t)))
            .collect();
        let mut blocked: Vec<PublicKey> = Vec::new();
        let mut retired: Vec<PublicKey> = Vec::new();
        let mut events = Vec::new();
        let mut next_batch_id = 0;
        for round in 0..MAX_ROUNDS {
            if pending.is_empty() {
                break;
            }
            tally.extra_rounds += u64::from(round > 0);
            let tasks = job::plan_tasks(
                manifest,
                &layout,
                &pending,
                cfg.batch,
                round,
                next_batch_id,
                &blocked,
                &Requirements::default(),
            );
            next_batch_id += tasks.len() as u32;
            // Later rounds go to an honest node that neither failed nor was inconclusive.
            let fallback = [&self.honest_same, &parties.honest_other]
                .into_iter()
                .find(|n| !blocked.contains(&n.public()) && !retired.contains(&n.public()));
            let mut batches: Vec<BatchRecord> = Vec::with_capacity(tasks.len());
            let mut delivered: BTreeMap<(u32, u32), Vec<u8>> = BTreeMap::new();
            for task in &tasks {
                let node = match (round, task.frame) {
                    (0, 0) => &parties.cheater,
                    (0, 1) => &self.honest_same,
                    (0, _) => &parties.honest_other,
                    _ => fallback.ok_or("every node failed or was inconclusive")?,
                };
                let res = node.handle_task(task).map_err(|e| e.to_string())?;
                job::check_result(&res, task, manifest, &layout, true, &blocked)?;
                tally.rendered += res.tiles.len() as u64;
                let frame = res.batch.signed.statement.frame;
                for t in res.tiles {
                    delivered.insert((frame, t.tile_index), t.bytes);
                }
                batches.push(res.batch);
            }
            let round_nodes: BTreeSet<PublicKey> =
                batches.iter().map(|b| b.signed.statement.node).collect();
            let snapshots = round_nodes
                .iter()
                .map(|n| NodeSnapshot {
                    node: *n,
                    trust: cfg.trust,
                    stake: NODE_STAKE,
                })
                .collect();
            let commitment =
                job::commit_round(manifest, round, &batches, snapshots, &self.coordinator)?;
            // The round is fixed: only now is its nonce used.
            let nonce = nonces[round as usize];
            let mut next_pending = Vec::new();
            for node in &round_nodes {
                let role = self.role(node);
                let decision = self.judge(
                    &parties.second,
                    &signed,
                    &commitment,
                    &batches,
                    nonce,
                    node,
                    role,
                    &delivered,
                    &mut tally,
                )?;
                let tiles: Vec<TileRect> = job::committed_tiles(&batches, node)
                    .into_iter()
                    .map(|(_, t)| layout[t as usize])
                    .collect();
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
                match decision {
                    Decision::Pass => {}
                    Decision::Fail => {
                        blocked.push(*node);
                        next_pending.extend(job::committed_tiles(&batches, node));
                    }
                    Decision::Inconclusive => {
                        retired.push(*node);
                        next_pending.extend(job::committed_tiles(&batches, node));
                    }
                    Decision::Escalate => return Err("a final decision was escalate".into()),
                }
                events.push(Event::Round(NodeOutcome {
                    round,
                    node: *node,
                    decision,
                    tiles,
                    stake_before: NODE_STAKE,
                }));
            }
            next_pending.sort_unstable();
            pending = next_pending;
        }
        tally.money = self.settle(manifest, &events, pending.is_empty())?;
        Ok(tally)
    }

    /// The final decision on `node` in a round: its first check by the verifier of the
    /// cheater's class; an escalation goes, with `escalation_multiplier` × k samples, to
    /// the verifier of the other class.
    #[allow(clippy::too_many_arguments)] // the round's state, one value each
    fn judge(
        &self,
        second: &Verifier,
        signed: &Signed<JobManifest>,
        commitment: &Signed<RoundCommitment>,
        batches: &[BatchRecord],
        nonce: Digest,
        node: &PublicKey,
        role: Role,
        delivered: &BTreeMap<(u32, u32), Vec<u8>>,
        tally: &mut Tally,
    ) -> Result<Decision, String> {
        let check = |verifier: &Verifier, kind: CheckKind, tally: &mut Tally| {
            let (req, _record) = job::verify_request(
                signed,
                commitment,
                batches,
                nonce,
                node,
                CheckOf {
                    kind,
                    dispute: None,
                },
                &mut |frame, tile| delivered.get(&(frame, tile)).cloned().unwrap_or_default(),
            )?;
            let verdict = verifier.handle_request(&req).map_err(|e| e.to_string())?;
            let msg = VerdictMessage {
                version: WIRE_VERSION,
                request_id: req.request_id.clone(),
                verdict,
            };
            job::check_verdict(&msg, &req)?;
            let v = &msg.verdict.statement;
            tally.rerendered += v.samples.len() as u64;
            for s in &v.samples {
                count_band(&mut tally.bands, s.band);
                if role == Role::HonestOther {
                    count_band(&mut tally.other_class_bands, s.band);
                }
            }
            Ok::<_, String>(v.decision)
        };
        let first = check(&self.first, CheckKind::FIRST, tally)?;
        if first != Decision::Escalate {
            return Ok(first);
        }
        tally.escalations += 1;
        tally.honest_escalations += u64::from(role != Role::Cheater);
        match check(second, CheckKind::FIRST.escalate(), tally)? {
            Decision::Escalate => Err("an escalated check escalated again".into()),
            d => Ok(d),
        }
    }

    /// Apply the job's transfers to a fresh ledger (the client's deposit and the nodes'
    /// stakes first), refund what escrow is left, and sum them up.
    fn settle(&self, m: &JobManifest, events: &[Event], done: bool) -> Result<Money, String> {
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
        let mut apply = |t: &Transfer| ledger.apply(t).map(|_| ()).map_err(|e| e.to_string());
        let price = job_price(m);
        apply(&deposit(
            format!("job:{job}:deposit"),
            "client-bank",
            account::client(CLIENT),
            price,
        ))?;
        for node in self.keys {
            apply(&deposit(
                format!("stake:{node}:{job}"),
                "node-deposits",
                account::stake(&node),
                NODE_STAKE,
            ))?;
        }
        let mut transfers = job_transfers(m, events, true);
        let mut escrow: i128 = 0;
        for t in &transfers {
            if t.to == account::escrow(&job) {
                escrow += i128::from(t.amount);
            }
            if t.from == account::escrow(&job) {
                escrow -= i128::from(t.amount);
            }
        }
        if escrow > 0 {
            transfers.push(Transfer {
                key: format!("job:{job}:refund"),
                kind: TransferKind::Refund,
                from: account::escrow(&job),
                to: account::client(CLIENT),
                amount: escrow as u64,
                round: 0,
                tiles: 0,
            });
        }
        let mut money = Money::default();
        let cheater_earnings = account::node(&self.keys[0]);
        let cheater_stake = account::stake(&self.keys[0]);
        for t in &transfers {
            apply(t)?;
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
            if t.to == cheater_earnings {
                money.earned_by_cheaters += a;
            }
            if t.kind == TransferKind::Slash && t.from == cheater_stake {
                money.slashed_cheaters += a;
            }
        }
        if done && escrow != 0 {
            return Err(format!(
                "every tile was accepted but {escrow} is left in escrow"
            ));
        }
        let total = ledger.total();
        money.total = total as i64;
        money.unbalanced_jobs = u64::from(total != 0);
        Ok(money)
    }
}

fn count_band(b: &mut Bands, band: Band) {
    match band {
        Band::Match => b.r#match += 1,
        Band::Close => b.close += 1,
        Band::Ambiguous => b.ambiguous += 1,
        Band::Far => b.far += 1,
    }
}
