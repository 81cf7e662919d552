//! The embedded pipeline (`tessera render`: the farm's service, nodes and verifier in one
//! process) end to end with a CPU stand-in renderer: honest runs pass the audit, every
//! drill mode is caught, unpaid, slashed, and re-rendered by honest nodes, and a job ends
//! as the farm ends one (a failed job's escrow refunded and its hold-backs released; a
//! challenge window's hold-backs released when the job is done).

use std::sync::Arc;
use std::time::Duration;
use tessera_coordinator::embedded::{
    EmbeddedFarm, JobConfig, JobOutcome, LocalNode, PipelineError,
};
use tessera_coordinator::store::Store;
use tessera_node::DishonestMode;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::payments::{account, SamplingPolicy, TransferKind};
use tessera_protocol::statements::Decision;
use tessera_protocol::{DeterminismClass, RenderFailure, RenderSettings, TileRect, TileRenderer};
use tessera_verifier::audit_bundle;

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
        // A render takes time, as a real one does: with instant renders the first node to
        // ask the shared queue could take every task before the others subscribe, and the
        // drills need the cheating node to get work.
        std::thread::sleep(Duration::from_millis(10));
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

/// The farm's settings for a two-frame 80×72 job in 32-pixel tiles, 2 per task.
fn job_config(tier: &str, challenge_window_secs: u64) -> JobConfig {
    JobConfig {
        client: "studio".into(),
        scene_name: "test.glb".into(),
        scene_hash: SCENE_HASH,
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
        tier: tier.into(),
        sampling: SamplingPolicy::default(),
        slash_pct: 50,
        challenge_window_secs,
        node_stake: 1_000_000,
        tolerance: Default::default(),
        dispute_deposit_pct: 10,
        message_timeout: Duration::from_secs(120),
    }
}

const SCENE_HASH: [u8; 32] = [42; 32];

/// A farm of `renderers.len()` local nodes (`node-0`, …), the last `dishonest` of them
/// cheating by `mode`, with an honest verifier, its store in a fresh folder.
fn farm(
    renderers: Vec<Arc<dyn TileRenderer>>,
    dishonest: usize,
    mode: DishonestMode,
) -> (EmbeddedFarm, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let n = renderers.len();
    let nodes = renderers
        .into_iter()
        .enumerate()
        .map(|(i, renderer)| LocalNode {
            name: format!("node-{i}"),
            key: SecretKey::generate(),
            renderer,
            dishonest: (i >= n - dishonest).then_some(mode),
        })
        .collect();
    let farm = EmbeddedFarm {
        coordinator_key: SecretKey::generate(),
        nodes,
        verifier_key: SecretKey::generate(),
        verifier_renderer: renderer(),
        data_dir: dir.path().to_path_buf(),
    };
    (farm, dir)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn store_of(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("coordinator.db")).unwrap()
}

fn run(
    nodes: u32,
    dishonest: u32,
    mode: DishonestMode,
    tier: &str,
) -> (JobOutcome, Store, tempfile::TempDir) {
    run_with_window(nodes, dishonest, mode, tier, 0)
}

fn run_with_window(
    nodes: u32,
    dishonest: u32,
    mode: DishonestMode,
    tier: &str,
    challenge_window_secs: u64,
) -> (JobOutcome, Store, tempfile::TempDir) {
    let (farm, dir) = farm(
        (0..nodes).map(|_| renderer()).collect(),
        dishonest as usize,
        mode,
    );
    let cfg = job_config(tier, challenge_window_secs);
    let outcome = runtime().block_on(farm.run_job(&cfg)).unwrap();
    let store = store_of(&dir);
    (outcome, store, dir)
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
        .transfers()
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
    let keys: std::collections::BTreeSet<_> = outcome.transfers().iter().map(|t| &t.key).collect();
    assert_eq!(
        keys.len(),
        outcome.transfers().len(),
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
        .transfers()
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
            .find(|r| r.name.starts_with("node-2"))
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
            .transfers()
            .iter()
            .filter(|t| t.kind == TransferKind::Escrow)
            .map(|t| t.amount)
            .sum();
        let honest_escrow: u64 = honest
            .transfers()
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
        b.rounds[0].samples[0].indices[0].block ^= 1
    });
    expect_failure(b, "sample indices", |b| {
        b.rounds[0].samples[0].indices[0].leaf ^= 1
    });
    // A sampled block's bytes, its hash, its proof in its tile.
    expect_failure(b, "verdict", |b| {
        b.rounds[0].samples[0].delivered[0][7] ^= 1
    });
    expect_failure(b, "merkle proofs", |b| {
        b.rounds[0].samples[0].proofs[0].block_hash[0] ^= 1
    });
    expect_failure(b, "merkle proofs", |b| {
        let p = b.rounds[0]
            .samples
            .iter_mut()
            .flat_map(|s| &mut s.proofs)
            .find(|p| !p.block_proof.is_empty())
            .unwrap();
        p.block_proof[0][5] ^= 1;
    });
    expect_failure(b, "merkle proofs", |b| {
        b.rounds[0].samples[0].proofs[0].block ^= 1
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
    expect_failure(b, "verdict signature", |b| {
        b.rounds[0].verdicts[0].statement.samples[0].block ^= 1
    });
    expect_failure(b, "verdict signature", |b| {
        b.rounds[0].verdicts[0].statement.aggregate.flip_mean_ppm ^= 1
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

/// A stand-in renderer for the failure drill: renders honestly (after `delay`, so that
/// both nodes take tasks), except that the one that `records` cheats on every tile and
/// notes where, and the other cheats exactly on the tiles noted: it passes its own first
/// round and fails the tiles it is given again.
struct Drill {
    honest: Arc<dyn TileRenderer>,
    noted: Arc<std::sync::Mutex<std::collections::BTreeSet<(u32, u32, u32)>>>,
    records: bool,
    delay: Duration,
}

impl TileRenderer for Drill {
    fn class(&self) -> &DeterminismClass {
        self.honest.class()
    }
    fn render_tile(
        &self,
        s: &RenderSettings,
        frame: u32,
        r: TileRect,
    ) -> Result<Vec<u8>, RenderFailure> {
        std::thread::sleep(self.delay);
        let mut noted = self.noted.lock().unwrap();
        let cheat = if self.records {
            noted.insert((frame, r.x, r.y));
            true
        } else {
            noted.contains(&(frame, r.x, r.y))
        };
        drop(noted);
        if cheat {
            Ok(vec![0; r.pixels() as usize * 8])
        } else {
            self.honest.render_tile(s, frame, r)
        }
    }
}

/// Regression (issue 16): when a `render` job fails, the client's escrow is refunded AND
/// the hold-backs of the work that passed are released, as the farm's coordinator does.
/// The embedded pipeline used to refund only, leaving the honest node's hold-backs in
/// their account for ever.
#[test]
fn a_failed_job_refunds_the_escrow_and_releases_hold_backs() {
    let noted = Arc::default();
    let drill = |records| -> Arc<dyn TileRenderer> {
        Arc::new(Drill {
            honest: renderer(),
            noted: Arc::clone(&noted),
            records,
            delay: Duration::from_millis(30),
        })
    };
    // node-0 passes round 0 and then fails the cheat's tiles; node-1 cheats at once.
    let (farm, dir) = farm(vec![drill(false), drill(true)], 0, DishonestMode::Black);
    let passer = farm.nodes[0].key.public();
    let cheat = farm.nodes[1].key.public();
    let cfg = job_config("priority", 0);
    let err = runtime()
        .block_on(farm.run_job(&cfg))
        .err()
        .expect("the job fails");
    let PipelineError::Failed { job, reason } = &err else {
        panic!("{err}");
    };
    assert!(reason.contains("blocked"), "{reason}");
    let store = store_of(&dir);
    let transfers = store.job_transfers(job).unwrap();
    let sum = |kind: TransferKind, node: &tessera_protocol::keys::PublicKey| -> u64 {
        transfers
            .iter()
            .filter(|t| t.kind == kind)
            .filter(|t| t.to.ends_with(&node.to_string()) || t.from.ends_with(&node.to_string()))
            .map(|t| t.amount)
            .sum()
    };
    let held = sum(TransferKind::HoldBack, &passer);
    assert!(held > 0, "node-0 passed round 0: {transfers:#?}");
    assert_eq!(
        sum(TransferKind::Release, &passer),
        held,
        "hold-backs not released"
    );
    assert_eq!(
        store.balance(&account::holdback(job, &passer)).unwrap(),
        0,
        "hold-backs left in their account"
    );
    assert!(
        sum(TransferKind::Slash, &cheat) > 0,
        "the cheat was not slashed"
    );
    assert!(
        transfers.iter().any(|t| t.kind == TransferKind::Refund),
        "escrow not refunded"
    );
    assert_eq!(store.balance(&account::escrow(job)).unwrap(), 0);
    assert_eq!(store.total().unwrap(), 0, "ledger sum changed");
}

/// Regression (issue 16): with a challenge window above 0, `render` releases the
/// hold-backs when its job is done (nobody can dispute a job of one machine), as the
/// farm's reconciler does when the window ends, and the signed receipt in the bundle
/// lists the releases. The embedded pipeline used to release them only with a window of
/// 0, so with a window they were never released.
#[test]
fn a_challenge_window_releases_hold_backs_when_the_job_is_done() {
    let (outcome, store, _dir) = run_with_window(2, 0, DishonestMode::Black, "priority", 3_600);
    assert_eq!(
        outcome.bundle.manifest.statement.challenge_window_secs,
        3_600
    );
    let sum = |kind: TransferKind| -> u64 {
        outcome
            .transfers()
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.amount)
            .sum()
    };
    assert!(sum(TransferKind::HoldBack) > 0);
    assert_eq!(sum(TransferKind::Release), sum(TransferKind::HoldBack));
    for r in &outcome.reports {
        assert_eq!(
            store
                .balance(&account::holdback(&outcome.job_id, &r.key))
                .unwrap(),
            0,
            "{}: hold-backs left",
            r.name
        );
    }
    assert_ledger_sound(&outcome, &store);
    let report = audit_bundle(&outcome.bundle, None);
    assert!(
        report.passed(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
}

/// `tessera render`'s farm tells its caller where the job is while it runs (the binary
/// draws the progress bar from it): the same job id and tile total every time, verified
/// tiles that never go back, and a last report of the done job with every tile verified.
#[test]
fn the_render_farm_reports_progress_until_the_job_is_done() {
    let (farm, _dir) = farm(vec![renderer(), renderer()], 0, DishonestMode::Black);
    let cfg = job_config("economy", 0);
    let mut seen: Vec<(String, tessera_coordinator::machine::Progress)> = Vec::new();
    let outcome = runtime()
        .block_on(
            farm.run_job_with_progress(&cfg, &mut |job, p| seen.push((job.to_string(), p.clone()))),
        )
        .unwrap();
    let tiles: u32 = outcome
        .bundle
        .frames
        .iter()
        .map(|f| f.tiles.len() as u32)
        .sum();
    let (job, last) = seen.last().expect("progress reported");
    assert_eq!(*job, outcome.job_id);
    assert_eq!(last.state, tessera_coordinator::machine::JobState::Done);
    assert_eq!((last.tiles_total, last.tiles_verified), (tiles, tiles));
    assert!(seen
        .iter()
        .all(|(j, p)| *j == outcome.job_id && p.tiles_total == tiles));
    assert!(seen
        .windows(2)
        .all(|w| w[0].1.tiles_verified <= w[1].1.tiles_verified));
}
