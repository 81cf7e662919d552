//! The payment rules of a job as one pure function of its manifest and verdicts, used by
//! the coordinator to make transfers and by the auditor to re-derive them.

use crate::keys::PublicKey;
use crate::payments::{account, slash_amount, split_on_pass, Transfer, TransferKind};
use crate::statements::{Decision, JobManifest};
use crate::{tile_layout, TileRect};

/// The outcome of one node in one round, as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOutcome {
    /// Round.
    pub round: u32,
    /// Node.
    pub node: PublicKey,
    /// Verdict decision.
    pub decision: Decision,
    /// The tiles the node committed in the round.
    pub tiles: Vec<TileRect>,
    /// The node's stake in the round commitment's snapshot.
    pub stake_before: u64,
}

/// Price of every tile of the job (all frames) — what the client's escrow must hold.
pub fn job_price(m: &JobManifest) -> u64 {
    let per_frame: u64 = tile_layout(m.settings.width, m.settings.height, m.tile_size)
        .into_iter()
        .map(|r| m.pricing.tile_price(&m.tier, r, m.settings.spp))
        .sum();
    per_frame * u64::from(m.n_frames())
}

/// The client's escrow transfer made at submit.
pub fn escrow_transfer(m: &JobManifest) -> Transfer {
    let job = hex::encode(m.job_id);
    Transfer {
        key: format!("job:{job}:escrow"),
        kind: TransferKind::Escrow,
        from: account::client(&m.client),
        to: account::escrow(&job),
        amount: job_price(m),
        round: 0,
        tiles: 0,
    }
}

/// Transfers for one verdict: pay now + hold back on pass, slash on fail.
pub fn verdict_transfers(m: &JobManifest, o: &NodeOutcome, slash_pct: u32) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let base = format!("job:{job}:r{}:{}", o.round, o.node);
    let n_tiles = o.tiles.len() as u32;
    let mut out = Vec::new();
    match o.decision {
        Decision::Pass => {
            let earned: u64 = o
                .tiles
                .iter()
                .map(|r| m.pricing.tile_price(&m.tier, *r, m.settings.spp))
                .sum();
            let (paid, held) = split_on_pass(earned, &m.tier);
            let mut push = |suffix: &str, kind, to: String, amount| {
                if amount > 0 {
                    out.push(Transfer {
                        key: format!("{base}:{suffix}"),
                        kind,
                        from: account::escrow(&job),
                        to,
                        amount,
                        round: o.round,
                        tiles: n_tiles,
                    });
                }
            };
            push("pay", TransferKind::PayOnPass, account::node(&o.node), paid);
            push(
                "hold",
                TransferKind::HoldBack,
                account::holdback(&job, &o.node),
                held,
            );
        }
        Decision::Fail => {
            let amount = slash_amount(o.stake_before, slash_pct);
            if amount > 0 {
                out.push(Transfer {
                    key: format!("{base}:slash"),
                    kind: TransferKind::Slash,
                    from: account::stake(&o.node),
                    to: account::treasury(),
                    amount,
                    round: o.round,
                    tiles: n_tiles,
                });
            }
        }
    }
    out
}

/// Hold-back releases after the challenge window: one per node that holds anything, in
/// key order, for the sum of its hold-backs in `so_far`.
pub fn release_transfers(m: &JobManifest, so_far: &[Transfer]) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let mut held: std::collections::BTreeMap<String, (u64, u32)> = Default::default();
    for t in so_far.iter().filter(|t| t.kind == TransferKind::HoldBack) {
        let e = held.entry(t.to.clone()).or_default();
        e.0 += t.amount;
        e.1 += t.tiles;
    }
    held.into_iter()
        .map(|(hb, (amount, tiles))| {
            let node = hb.rsplit(':').next().unwrap_or_default().to_string();
            Transfer {
                key: format!("job:{job}:{node}:release"),
                kind: TransferKind::Release,
                from: hb,
                to: format!("node:{node}"),
                amount,
                round: 0,
                tiles,
            }
        })
        .collect()
}

/// Every transfer of a finished job, in order: escrow, then each round's outcomes (in the
/// order given: by round, then node key), then releases if the window has passed.
pub fn job_transfers(m: &JobManifest, outcomes: &[NodeOutcome], released: bool) -> Vec<Transfer> {
    let mut all = vec![escrow_transfer(m)];
    for o in outcomes {
        all.extend(verdict_transfers(m, o, m.slash_pct));
    }
    if released {
        let rel = release_transfers(m, &all);
        all.extend(rel);
    }
    all
}
