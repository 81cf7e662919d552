//! Property test of the ledger under the simulation's driver (`tessera simulate`: the job
//! state machine driven directly on a virtual clock, its transfers on an in-memory
//! ledger). Random simulations (forged fraction, cheat shape, tier, tiles, tile size,
//! spp, batch, trust, seed; a few jobs each) run one job at a time through [`run_job`], and for each
//! job:
//!
//! - the job ends done (two of its three nodes are honest), and its bundle audits, which
//!   re-derives every transfer from the verdicts with the protocol's rules;
//! - the transfers the driver applied are exactly the machine's receipt and the bundle's
//!   (same keys, kinds, accounts, amounts, order);
//! - the ledger sums to zero, every balance is exactly its transfers, keys are unique,
//!   and only `external:` accounts are negative;
//! - no honest node is slashed, and every round an honest node worked in is passed and
//!   paid what the rules give its tiles;
//! - a detected cheater is neither paid nor held back anything for the round it failed,
//!   and is slashed the rule's share of the stake in the round commitment; a cheater
//!   that forged nothing is never failed, and one that forged a whole tile or block is
//!   caught when its check samples every block;
//! - hold-backs are all released (the window is 0), no escrow is left, and the client
//!   paid exactly the job's price.
//!
//! Then the whole simulation ([`simulate`], the same jobs by index) reports sound and
//! adds up to the jobs run one by one. A parameter outside what `tessera simulate`
//! takes (a trust below the tier's minimum) must be refused, naming the flag.
//!
//! Reproducing a failure: as in the coordinator's `ledger_props.rs`, without environment
//! variables the cases come from the fixed [`CI_SEED`];
//! `PROPTEST_CASES=500 cargo test --release -p tessera-sim --test ledger_props` draws a
//! fresh seed, and `PROPTEST_RNG_SEED=<seed>` with the same case count replays it. The
//! simulation is deterministic for a seed, so a replay takes the same path.

#[path = "../../coordinator/tests/props/mod.rs"]
mod props;

use proptest::prelude::*;
use std::collections::BTreeMap;
use tessera_protocol::keys::PublicKey;
use tessera_protocol::payments::{account, slash_amount, split_on_pass, TransferKind};
use tessera_protocol::rules::job_price;
use tessera_protocol::statements::Decision;
use tessera_protocol::TileRect;
use tessera_sim::{
    run_job, simulate, spp_dropped, JobRecord, Shape, SimConfig, SimError, SimParams, Tally,
};
use tessera_verifier::audit_bundle;

const TIERS: [&str; 3] = ["economy", "priority", "trusted"];

fn params_strategy() -> impl Strategy<Value = SimParams> {
    (
        1u64..=3,
        prop_oneof![
            1 => Just(0.0f64),
            1 => Just(1.0),
            3 => 0.0f64..=1.0,
        ],
        0usize..3,
        1u32..=12,
        prop_oneof![Just(16u32), Just(24)],
        4u32..=8,
        1u32..=6,
        prop_oneof![1 => 0u32..=100, 1 => Just(100u32)],
        any::<u64>(),
        0usize..Shape::ALL.len(),
    )
        .prop_map(
            |(jobs, forged_fraction, tier, tiles, tile_size, spp, batch, trust, seed, shape)| {
                SimParams {
                    jobs,
                    forged_fraction: spp_resolved(Shape::ALL[shape], forged_fraction, spp),
                    shape: Shape::ALL[shape].name().into(),
                    tier: TIERS[tier].into(),
                    tiles,
                    tile_size,
                    spp,
                    batch,
                    trust,
                    seed,
                    threads: Some(1),
                    render_cache: true,
                }
            },
        )
}

/// The forged fraction `tessera simulate` takes for `shape` near `f` at `spp`: for the
/// spp shape a whole number of samples, leaving one to render.
fn spp_resolved(shape: Shape, f: f64, spp: u32) -> f64 {
    if shape != Shape::Spp {
        return f;
    }
    f64::from(spp_dropped(f, spp).min(spp - 1)) / f64::from(spp)
}

/// (round, node) of a node's work in a round.
type Work = (u32, PublicKey);

/// Check every rule on one job's record; the error names the rule broken.
fn check_job(cfg: &SimConfig, r: &JobRecord) -> Result<(), String> {
    let Some(b) = &r.bundle else {
        return Err(format!(
            "the job failed with two honest nodes on the farm: {:?}",
            r.failed
        ));
    };
    let report = audit_bundle(b, Some(&r.coordinator));
    if !report.passed() {
        return Err(format!(
            "the bundle does not audit: {:#?}",
            report.failures().collect::<Vec<_>>()
        ));
    }
    let m = &b.manifest.statement;
    let job = hex::encode(m.job_id);

    // Applied == receipt == the bundle's.
    let applied: Vec<_> = r
        .applied
        .iter()
        .filter(|t| t.kind != TransferKind::Deposit)
        .cloned()
        .collect();
    if applied != r.receipt.transfers || applied != b.payments.statement.transfers {
        return Err(format!(
            "the driver applied {applied:#?}\nthe machine's receipt lists {:#?}\nthe bundle's {:#?}",
            r.receipt.transfers, b.payments.statement.transfers
        ));
    }
    if !r.receipt.uncollected.is_empty() {
        return Err(format!(
            "slashes found a stake empty: {:?}",
            r.receipt.uncollected
        ));
    }

    // The ledger.
    let transfers = r.applied.iter().map(|t| {
        (
            t.key.as_str(),
            t.from.as_str(),
            t.to.as_str(),
            i128::from(t.amount),
        )
    });
    props::check_balances(transfers, &r.balances, account::may_go_negative)?;

    // What each node committed, the final decision on it, and the stake it had at risk.
    let mut committed: BTreeMap<Work, Vec<TileRect>> = BTreeMap::new();
    let mut decisions: BTreeMap<Work, Decision> = BTreeMap::new();
    let mut stakes: BTreeMap<Work, u64> = BTreeMap::new();
    for round in &b.rounds {
        for batch in &round.batches {
            committed
                .entry((round.round, batch.signed.statement.node))
                .or_default()
                .extend(batch.tiles.iter().map(|t| t.rect));
        }
        for n in &round.commitment.statement.nodes {
            stakes.insert((round.round, n.node), n.stake);
        }
        let of = |node: &PublicKey, escalated: bool| {
            round
                .verdicts
                .iter()
                .map(|v| &v.statement)
                .find(|v| v.node == *node && !v.check.dispute && v.check.escalated == escalated)
                .map(|v| v.decision)
        };
        for &(_, node) in committed.keys().filter(|w| w.0 == round.round) {
            let d = match of(&node, false) {
                Some(Decision::Escalate) => of(&node, true),
                d => d,
            };
            if let Some(d) = d {
                decisions.insert((round.round, node), d);
            }
        }
    }
    let sum = |kind: TransferKind, acct: &str, round: Option<u32>| -> u64 {
        applied
            .iter()
            .filter(|t| t.kind == kind && (t.from == acct || t.to == acct))
            .filter(|t| round.is_none_or(|n| t.round == n))
            .map(|t| t.amount)
            .sum()
    };
    for (w @ (round, node), rects) in &committed {
        let cheater = *node == r.cheater;
        let who = format!(
            "{} in round {round}",
            if cheater {
                "the cheater"
            } else {
                "an honest node"
            }
        );
        let decision = decisions.get(w).copied();
        let pay = sum(TransferKind::PayOnPass, &account::node(node), Some(*round));
        let hold = sum(
            TransferKind::HoldBack,
            &account::holdback(&job, node),
            Some(*round),
        );
        let slashed = sum(TransferKind::Slash, &account::stake(node), Some(*round));
        if !cheater && decision != Some(Decision::Pass) {
            return Err(format!("{who} was judged {decision:?}"));
        }
        match decision {
            Some(Decision::Pass) => {
                let earned = rects
                    .iter()
                    .map(|t| m.pricing.tile_price(&m.tier, *t, m.settings.spp))
                    .sum();
                let want = split_on_pass(earned, &m.tier);
                if (pay, hold) != want || slashed != 0 {
                    return Err(format!(
                        "{who} passed {} tiles: paid {pay}, held {hold}, slashed {slashed}; the rules give {want:?} and no slash",
                        rects.len()
                    ));
                }
            }
            Some(Decision::Fail) => {
                let stake = stakes.get(w).copied().unwrap_or(0);
                let want = slash_amount(stake, m.slash_pct);
                if pay + hold != 0 || slashed != want {
                    return Err(format!(
                        "{who} was caught: paid {pay}, held {hold}, slashed {slashed} (the rule takes {want} of {stake})"
                    ));
                }
            }
            other => {
                if pay + hold + slashed != 0 {
                    return Err(format!(
                        "{who} was judged {other:?}: paid {pay}, held {hold}, slashed {slashed}"
                    ));
                }
            }
        }
    }
    for node in &r.honest {
        let slashed = sum(TransferKind::Slash, &account::stake(node), None);
        if slashed != 0 {
            return Err(format!("honest node {node} was slashed {slashed}"));
        }
    }

    // What the cheater's forgeries lead to, from the inputs.
    let t = &r.tally;
    let cheater_failed = decisions
        .iter()
        .any(|((_, n), d)| *n == r.cheater && *d == Decision::Fail);
    if cheater_failed != (t.detected == 1) {
        return Err(format!(
            "the cheater failed: {cheater_failed}; the tally counts {} detections",
            t.detected
        ));
    }
    if t.forged_tiles == 0 && (t.detected + t.cheater_inconclusive) != 0 {
        return Err("a cheater that forged nothing was not passed".into());
    }
    if cfg.forged_fraction == 0.0 && t.forged_tiles != 0 {
        return Err(format!(
            "forged fraction 0, {} forged tiles",
            t.forged_tiles
        ));
    }
    if cfg.forged_fraction == 1.0 && t.forged_tiles != u64::from(cfg.tiles) {
        return Err(format!(
            "forged fraction 1, {} of {} tiles forged",
            t.forged_tiles, cfg.tiles
        ));
    }
    // Whole forged tiles and blocks are far wherever they are sampled; a patch or a few
    // samples fewer need not be (docs/SIMULATION.md).
    if t.forged_tiles > 0
        && matches!(cfg.shape, Shape::Tiles | Shape::Blocks)
        && cfg.effective_k() >= cfg.tiles
        && t.detected + t.cheater_inconclusive == 0
    {
        return Err(format!(
            "every tile of the cheater was sampled (k {} ≥ {} tiles), {} forged, and it passed",
            cfg.effective_k(),
            cfg.tiles,
            t.forged_tiles
        ));
    }

    // Hold-backs released, escrow empty, the client charged the price.
    for node in std::iter::once(&r.cheater).chain(&r.honest) {
        let hb = account::holdback(&job, node);
        let (held, released) = (
            sum(TransferKind::HoldBack, &hb, None),
            sum(TransferKind::Release, &hb, None),
        );
        if held != released || r.balances.get(&hb).copied().unwrap_or(0) != 0 {
            return Err(format!("{hb}: {held} held back, {released} released"));
        }
    }
    let escrow = account::escrow(&job);
    if r.balances.get(&escrow).copied().unwrap_or(0) != 0 {
        return Err(format!("{escrow} is not empty"));
    }
    let escrowed = sum(TransferKind::Escrow, &escrow, None);
    let refunded = sum(TransferKind::Refund, &escrow, None);
    if escrowed != job_price(m) || refunded != 0 {
        return Err(format!(
            "the client escrowed {escrowed} (the price is {}) and got {refunded} back",
            job_price(m)
        ));
    }
    Ok(())
}

/// Run `p`'s jobs one by one and check each, then the whole simulation.
fn run_and_check(p: &SimParams) -> Result<(), String> {
    let cfg = match SimConfig::new(p) {
        Ok(cfg) => cfg,
        Err(SimError::Invalid(why)) if p.trust < cfg_min_trust(&p.tier) => {
            if why.contains("--trust") {
                return Ok(());
            }
            return Err(format!("a trust below the tier's minimum refused as {why}"));
        }
        Err(e) => return Err(format!("the parameters were refused: {e}")),
    };
    let mut total = Tally::default();
    for index in 0..cfg.jobs {
        let record = run_job(&cfg, index).map_err(|e| e.to_string())?;
        check_job(&cfg, &record).map_err(|e| format!("job {index}: {e}"))?;
        total.add(&record.tally);
    }
    let report = simulate(&cfg).map_err(|e| e.to_string())?;
    if !report.sound() {
        return Err(format!("the report is not sound: {report:#?}"));
    }
    if (
        report.detected,
        report.forged_tiles,
        report.rendered_pixels,
        report.ledger,
    ) != (
        total.detected,
        total.forged_tiles,
        total.rendered,
        total.money,
    ) {
        return Err(format!(
            "the simulation's report does not add up to its jobs run one by one: {report:#?}\n{total:#?}"
        ));
    }
    Ok(())
}

fn cfg_min_trust(tier: &str) -> u32 {
    tessera_protocol::payments::default_tiers()
        .into_iter()
        .find(|t| t.name == tier)
        .map_or(0, |t| t.min_trust)
}

/// The seed of the cases in CI ([`props::seed`]).
const CI_SEED: u64 = 0x5e1d_9e0a_11ed_9e55;
/// Cases in CI.
const CI_CASES: u32 = 64;

fn config() -> proptest::test_runner::Config {
    props::config(CI_SEED, CI_CASES, 512)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn simulated_jobs_keep_the_ledger_rules(params in params_strategy()) {
        if let Err(e) = run_and_check(&params) {
            return Err(TestCaseError::fail(format!(
                "{e}\nparams: {params:#?}\n{}",
                props::replay(CI_SEED, CI_CASES)
            )));
        }
    }
}
