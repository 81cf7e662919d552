//! The embedded pipeline end to end with a CPU stand-in renderer: honest runs pass the
//! audit, and every drill mode is caught, unpaid, slashed, and re-rendered by honest nodes.

use std::sync::Arc;
use std::time::Duration;
use tessera_coordinator::embedded::{EmbeddedFarm, JobConfig, JobOutcome};
use tessera_coordinator::store::Store;
use tessera_node::{DishonestMode, Node};
use tessera_protocol::keys::SecretKey;
use tessera_protocol::payments::{default_tiers, Pricing, SamplingPolicy, TransferKind};
use tessera_protocol::statements::Decision;
use tessera_protocol::{DeterminismClass, RenderFailure, RenderSettings, TileRect, TileRenderer};
use tessera_verifier::{audit_bundle, Verifier};

/// Pixel value = mean over samples of an integer hash of (seed, frame, x, y, sample):
/// deterministic, tile == crop, and fewer samples give different bytes.
struct HashRenderer(DeterminismClass);

impl TileRenderer for HashRenderer {
    fn class(&self) -> &DeterminismClass {
        &self.0
    }
    fn render_tile(
        &self,
        s: &RenderSettings,
        frame: u32,
        r: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        let mut v = Vec::with_capacity(r.pixels() as usize * 4);
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                let mut acc = [0f32; 3];
                for smp in 0..s.spp {
                    let h = blake3::hash(
                        &[
                            s.seed.to_le_bytes().as_slice(),
                            &frame.to_le_bytes(),
                            &x.to_le_bytes(),
                            &y.to_le_bytes(),
                            &smp.to_le_bytes(),
                        ]
                        .concat(),
                    );
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a += f32::from(h.as_bytes()[c]) / 255.0;
                    }
                }
                v.extend(acc.map(|a| a / s.spp as f32));
                v.push(1.0);
            }
        }
        Ok(tessera_protocol::canonical::f32_to_tile(&v))
    }
}

fn renderer() -> Arc<dyn TileRenderer> {
    Arc::new(HashRenderer(DeterminismClass {
        backend: "cpu".into(),
        adapter: "hash".into(),
        driver: "test".into(),
        driver_info: "1".into(),
        renderer_build: "drill".into(),
        shader_hash: "00".into(),
    }))
}

fn run(
    nodes: u32,
    dishonest: u32,
    mode: DishonestMode,
    tier: &str,
) -> (JobOutcome, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let r = renderer();
    let scene_hash = [42; 32];
    let nodes: Vec<Arc<Node>> = (0..nodes)
        .map(|i| {
            let cheat = (i >= nodes - dishonest).then_some(mode);
            Arc::new(Node::new(
                format!("node-{i}"),
                SecretKey::generate(),
                scene_hash,
                r.clone(),
                cheat,
            ))
        })
        .collect();
    let mut farm = EmbeddedFarm {
        coordinator_key: SecretKey::generate(),
        nodes,
        verifier: Arc::new(Verifier::new(SecretKey::generate(), r.clone())),
        store: Store::open(&dir.path().join("t.db")).unwrap(),
    };
    let cfg = JobConfig {
        client: "studio".into(),
        scene_name: "test.glb".into(),
        scene_hash,
        scene_hint: None,
        settings: RenderSettings {
            width: 80,
            height: 72,
            spp: 8,
            max_bounces: 4,
            seed: 7,
            camera: None,
            frame_rate: Default::default(),
        },
        frame_start: 0,
        frame_end: 1,
        tile_size: 32,
        batch_size: 2,
        tier: default_tiers()
            .into_iter()
            .find(|t| t.name == tier)
            .unwrap(),
        sampling: SamplingPolicy::default(),
        pricing: Pricing::default(),
        slash_pct: 50,
        challenge_window_secs: 0,
        node_stake: 1_000_000,
        tolerance: Default::default(),
        dispute_deposit_pct: 10,
        message_timeout: Duration::from_secs(120),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(farm.run_job(&cfg)).unwrap();
    (outcome, farm.store, dir)
}

fn assert_ledger_sound(outcome: &JobOutcome, store: &Store) {
    assert_eq!(store.total().unwrap(), 0, "ledger sum changed");
    let tiles_total = outcome
        .bundle
        .frames
        .iter()
        .map(|f| f.tiles.len() as u32)
        .sum::<u32>();
    let paid_tiles: u32 = outcome
        .transfers
        .iter()
        .filter(|t| t.kind == TransferKind::PayOnPass)
        .map(|t| t.tiles)
        .sum();
    assert_eq!(
        paid_tiles, tiles_total,
        "every final tile is paid exactly once"
    );
    let escrow = format!("escrow:{}", outcome.job_id);
    assert_eq!(
        store.balance(&escrow).unwrap(),
        0,
        "escrow fully spent on verified tiles"
    );
    let keys: std::collections::BTreeSet<_> = outcome.transfers.iter().map(|t| &t.key).collect();
    assert_eq!(
        keys.len(),
        outcome.transfers.len(),
        "a transfer key appears twice"
    );
}

#[test]
fn honest_job_passes_audit_and_pays_by_tier() {
    let (outcome, store, _dir) = run(2, 0, DishonestMode::Black, "priority");
    let report = audit_bundle(&outcome.bundle, None);
    assert!(
        report.passed(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
    assert!(outcome.reports.iter().all(|r| r.decision == Decision::Pass));
    assert_ledger_sound(&outcome, &store);
    // Priority: 75 % on pass, 25 % held back, then released (window 0).
    for r in &outcome.reports {
        let earned = r.paid + r.held;
        assert!(earned > 0);
        assert_eq!(
            r.paid,
            earned * 75 / 100,
            "{}: pay-on-pass is not 75 %",
            r.name
        );
    }
    let held: u64 = outcome.reports.iter().map(|r| r.held).sum();
    let released: u64 = outcome
        .transfers
        .iter()
        .filter(|t| t.kind == TransferKind::Release)
        .map(|t| t.amount)
        .sum();
    assert_eq!(released, held);
}

#[test]
fn every_drill_mode_is_caught_unpaid_slashed_and_repaired() {
    let (honest, _s, _d) = run(1, 0, DishonestMode::Black, "economy");
    for mode in DishonestMode::ALL {
        let (outcome, store, _dir) = run(3, 1, mode, "economy");
        let cheater = outcome
            .reports
            .iter()
            .find(|r| r.name == "node-2")
            .unwrap_or_else(|| panic!("{mode:?}: cheater got no work"));
        assert_eq!(cheater.decision, Decision::Fail, "{mode:?} not caught");
        assert_eq!(cheater.paid + cheater.held, 0, "{mode:?}: cheater paid");
        assert_eq!(
            cheater.slashed, 500_000,
            "{mode:?}: cheater not slashed by half its stake"
        );
        assert!(
            outcome.bundle.rounds.len() >= 2,
            "{mode:?}: tiles not re-rendered in a later round"
        );
        assert!(
            outcome
                .bundle
                .frames
                .iter()
                .flat_map(|f| &f.tiles)
                .all(|t| t.node != cheater.key),
            "{mode:?}: a cheater tile is in the final image"
        );
        assert_eq!(
            outcome.frames, honest.frames,
            "{mode:?}: final frames differ from an honest run"
        );
        let report = audit_bundle(&outcome.bundle, None);
        assert!(
            report.passed(),
            "{mode:?}: {:#?}",
            report.failures().collect::<Vec<_>>()
        );
        assert_ledger_sound(&outcome, &store);
        // The client paid the honest price, nothing extra.
        let escrowed: u64 = outcome
            .transfers
            .iter()
            .filter(|t| t.kind == TransferKind::Escrow)
            .map(|t| t.amount)
            .sum();
        let honest_escrow: u64 = honest
            .transfers
            .iter()
            .filter(|t| t.kind == TransferKind::Escrow)
            .map(|t| t.amount)
            .sum();
        assert_eq!(escrowed, honest_escrow);
    }
}

/// Change one thing in a bundle and expect the audit to name `check` among its failures.
fn expect_failure(
    bundle: &tessera_protocol::bundle::ProofBundle,
    check: &str,
    tamper: impl FnOnce(&mut tessera_protocol::bundle::ProofBundle),
) {
    let mut b = bundle.clone();
    tamper(&mut b);
    let report = audit_bundle(&b, None);
    let failed: Vec<_> = report.failures().map(|c| c.name.clone()).collect();
    assert!(
        failed.iter().any(|f| f == check),
        "tampering for {check:?}: failures were {failed:?}"
    );
}

#[test]
fn any_changed_byte_fails_the_named_check() {
    let (outcome, _s, _d) = run(3, 1, DishonestMode::Noise, "economy");
    let b = &outcome.bundle;
    assert!(audit_bundle(b, None).passed());
    expect_failure(b, "manifest signature", |b| b.manifest.signature[0] ^= 1);
    expect_failure(b, "manifest signature", |b| {
        b.manifest.statement.settings.spp += 1
    });
    expect_failure(b, "batch signature", |b| {
        b.rounds[0].batches[0].signed.signature[5] ^= 1
    });
    expect_failure(b, "batch signature", |b| {
        b.rounds[0].batches[0].signed.statement.batch_root[0] ^= 1
    });
    expect_failure(b, "leaves", |b| {
        b.rounds[0].batches[0].tiles[0].leaf[3] ^= 1
    });
    expect_failure(b, "leaves", |b| {
        b.rounds[0].batches[0].tiles[0].tile_hash[3] ^= 1
    });
    expect_failure(b, "round commitment", |b| {
        b.rounds[0].commitment.statement.round_root[1] ^= 1
    });
    expect_failure(b, "nonce reveal", |b| b.rounds[0].nonce[0] ^= 1);
    expect_failure(b, "sample seed", |b| b.rounds[0].samples[0].seed[0] ^= 1);
    expect_failure(b, "sample indices", |b| {
        b.rounds[0].samples[0].indices[0] ^= 1
    });
    expect_failure(b, "merkle proofs", |b| {
        let p = b.rounds[0]
            .samples
            .iter_mut()
            .flat_map(|s| &mut s.proofs)
            .find(|p| !p.proof.is_empty())
            .unwrap();
        p.proof[0][0] ^= 1;
    });
    expect_failure(b, "verdict signature", |b| {
        b.rounds[0].verdicts[0].signature[9] ^= 1
    });
    expect_failure(b, "verdict signature", |b| {
        let v = &mut b.rounds[0].verdicts[0].statement;
        v.decision = if v.decision == Decision::Pass {
            Decision::Fail
        } else {
            Decision::Pass
        };
    });
    expect_failure(b, "verdict signature", |b| {
        b.rounds[0].verdicts[0].statement.samples[0].rerender_hash[0] ^= 1
    });
    expect_failure(b, "final tiles", |b| b.frames[0].tiles[1].leaf[0] ^= 1);
    expect_failure(b, "roots signature", |b| {
        b.roots.statement.frames[0].root[0] ^= 1
    });
    expect_failure(b, "frame roots", |b| {
        b.roots.statement.frames[0].root[0] ^= 1
    });
    expect_failure(b, "job root", |b| b.roots.statement.job_root[31] ^= 1);
    expect_failure(b, "payments signature", |b| {
        b.payments.statement.transfers[1].amount += 1
    });
    expect_failure(b, "payments signature", |b| b.payments.signature[0] ^= 1);
    // A coordinator that re-signs a wrong payment list is still caught by the rules.
    let key = SecretKey::generate();
    let mut forged = b.clone();
    forged.manifest =
        tessera_protocol::statements::Signed::sign(forged.manifest.statement.clone(), &key);
    forged.payments.statement.transfers[1].amount += 1;
    forged.payments =
        tessera_protocol::statements::Signed::sign(forged.payments.statement.clone(), &key);
    let failed: Vec<_> = audit_bundle(&forged, None)
        .failures()
        .map(|c| c.name.clone())
        .collect();
    assert!(failed.contains(&"payments".to_string()), "{failed:?}");
    // And pinning the real coordinator key rejects the re-signed manifest.
    let pinned = b.manifest.signer;
    assert!(!audit_bundle(&forged, Some(&pinned)).passed());
}
