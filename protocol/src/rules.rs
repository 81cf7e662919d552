//! The payment rules of a job as one pure function of its manifest and the ordered events
//! of its verification, used by the coordinator to make transfers and by the auditor to
//! re-derive them from the bundle alone.

use crate::keys::PublicKey;
use crate::payments::{account, slash_amount, split_on_pass, Transfer, TransferKind};
use crate::statements::{Decision, JobManifest};
use crate::{tile_layout, TileRect};
use std::collections::BTreeMap;

/// The final outcome of one node in one round (or of a dispute of that round), as the
/// rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOutcome {
    /// Round.
    pub round: u32,
    /// Node.
    pub node: PublicKey,
    /// Final decision (never [`Decision::Escalate`]).
    pub decision: Decision,
    /// The tiles the node committed in the round.
    pub tiles: Vec<TileRect>,
    /// The node's stake in the snapshot of the round (or dispute) commitment.
    pub stake_before: u64,
}

/// What happened to a job, in order; the transfers follow from these alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A node's final decision on a round: pass pays now and holds back, fail slashes,
    /// inconclusive pays and slashes nothing.
    Round(NodeOutcome),
    /// The client opened a dispute: its deposit moves to the dispute account.
    DisputeOpened,
    /// A dispute check's final decision on a round the node had passed: a failure
    /// forfeits the round's hold-back, claws back its paid part (both into the escrow, so
    /// the tiles are re-rendered at no extra charge) and slashes the stake.
    Dispute(NodeOutcome),
    /// Every dispute check is final: the deposit goes back to the client when a node lost,
    /// to the treasury (the cost of the extra sampling) when none did.
    DisputeSettled {
        /// Whether some node failed the dispute.
        node_lost: bool,
    },
    /// The job failed and its client requeued it: the failure refunded `refunded` (the
    /// whole escrow left), and the requeue moves it back into the escrow.
    Requeued {
        /// Which requeue, from 1.
        requeue: u32,
        /// What the failure refunded.
        refunded: u64,
    },
}

/// Price of every tile of the job (all frames) — what the client's escrow must hold.
pub fn job_price(m: &JobManifest) -> u64 {
    let per_frame: u64 = tile_layout(m.settings.width, m.settings.height, m.tile_size)
        .into_iter()
        .map(|r| m.pricing.tile_price(&m.tier, r, m.settings.spp))
        .sum();
    per_frame * u64::from(m.n_frames())
}

/// The deposit a client pays to dispute the job.
pub fn dispute_deposit(m: &JobManifest) -> u64 {
    // Rounded up: a cheap job's dispute still costs something (a deposit of 0 would make
    // extra sampling free to demand).
    (u128::from(job_price(m)) * u128::from(m.dispute_deposit_pct.min(100))).div_ceil(100) as u64
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

/// The key of the refund a job's end without its frames makes (a failure or a cancel)
/// after `requeues` requeues: one refund per failure, so each has its own key.
pub fn refund_key(job_hex: &str, requeues: u32) -> String {
    if requeues == 0 {
        format!("job:{job_hex}:refund")
    } else {
        format!("job:{job_hex}:refund{requeues}")
    }
}

/// The refund of `amount` (the escrow left) when the job ends without its frames after
/// `requeues` requeues.
pub fn refund_transfer(m: &JobManifest, requeues: u32, amount: u64) -> Transfer {
    let job = hex::encode(m.job_id);
    Transfer {
        key: refund_key(&job, requeues),
        kind: TransferKind::Refund,
        from: account::escrow(&job),
        to: account::client(&m.client),
        amount,
        round: 0,
        tiles: 0,
    }
}

/// Requeue number `requeue` (from 1) of a failed job funds the escrow again with what the
/// failure refunded.
pub fn requeue_escrow_transfer(m: &JobManifest, requeue: u32, refunded: u64) -> Transfer {
    let job = hex::encode(m.job_id);
    Transfer {
        key: format!("job:{job}:requeue{requeue}:escrow"),
        kind: TransferKind::Escrow,
        from: account::client(&m.client),
        to: account::escrow(&job),
        amount: refunded,
        round: 0,
        tiles: 0,
    }
}

/// Both transfers of a failure its client requeued: the failure's refund, then the
/// requeue's escrow (nothing when the escrow was empty).
pub fn requeue_transfers(m: &JobManifest, requeue: u32, refunded: u64) -> Vec<Transfer> {
    if refunded == 0 {
        return Vec::new();
    }
    vec![
        refund_transfer(m, requeue.saturating_sub(1), refunded),
        requeue_escrow_transfer(m, requeue, refunded),
    ]
}

/// (paid now, held back) for a node's passed tiles.
fn earnings(m: &JobManifest, tiles: &[TileRect]) -> (u64, u64) {
    let earned: u64 = tiles
        .iter()
        .map(|r| m.pricing.tile_price(&m.tier, *r, m.settings.spp))
        .sum();
    split_on_pass(earned, &m.tier)
}

/// A transfer of `amount` unless it is zero.
#[allow(clippy::too_many_arguments)] // one field each
fn push(
    out: &mut Vec<Transfer>,
    key: String,
    kind: TransferKind,
    from: String,
    to: String,
    amount: u64,
    round: u32,
    tiles: u32,
) {
    if amount > 0 {
        out.push(Transfer {
            key,
            kind,
            from,
            to,
            amount,
            round,
            tiles,
        });
    }
}

/// Transfers for one final round decision: pay now + hold back on pass, slash on fail,
/// nothing on an inconclusive check (or an escalation, which is not final).
pub fn verdict_transfers(m: &JobManifest, o: &NodeOutcome, slash_pct: u32) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let base = format!("job:{job}:r{}:{}", o.round, o.node);
    let n_tiles = o.tiles.len() as u32;
    let mut out = Vec::new();
    match o.decision {
        Decision::Pass => {
            let (paid, held) = earnings(m, &o.tiles);
            push(
                &mut out,
                format!("{base}:pay"),
                TransferKind::PayOnPass,
                account::escrow(&job),
                account::node(&o.node),
                paid,
                o.round,
                n_tiles,
            );
            push(
                &mut out,
                format!("{base}:hold"),
                TransferKind::HoldBack,
                account::escrow(&job),
                account::holdback(&job, &o.node),
                held,
                o.round,
                n_tiles,
            );
        }
        Decision::Fail => push(
            &mut out,
            format!("{base}:slash"),
            TransferKind::Slash,
            account::stake(&o.node),
            account::treasury(),
            slash_amount(o.stake_before, slash_pct),
            o.round,
            n_tiles,
        ),
        Decision::Escalate | Decision::Inconclusive => {}
    }
    out
}

/// The client's dispute deposit.
pub fn dispute_opened_transfers(m: &JobManifest) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let mut out = Vec::new();
    push(
        &mut out,
        format!("job:{job}:dispute:deposit"),
        TransferKind::DisputeDeposit,
        account::client(&m.client),
        account::dispute(&job),
        dispute_deposit(m),
        0,
        0,
    );
    out
}

/// Transfers for a dispute check's final decision on a round the node had passed.
pub fn dispute_transfers(m: &JobManifest, o: &NodeOutcome) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let base = format!("job:{job}:dispute:r{}:{}", o.round, o.node);
    let n_tiles = o.tiles.len() as u32;
    let mut out = Vec::new();
    if o.decision == Decision::Fail {
        let (paid, held) = earnings(m, &o.tiles);
        push(
            &mut out,
            format!("{base}:forfeit"),
            TransferKind::Forfeit,
            account::holdback(&job, &o.node),
            account::escrow(&job),
            held,
            o.round,
            n_tiles,
        );
        push(
            &mut out,
            format!("{base}:clawback"),
            TransferKind::Clawback,
            account::node(&o.node),
            account::escrow(&job),
            paid,
            o.round,
            n_tiles,
        );
        push(
            &mut out,
            format!("{base}:slash"),
            TransferKind::Slash,
            account::stake(&o.node),
            account::treasury(),
            slash_amount(o.stake_before, m.slash_pct),
            o.round,
            n_tiles,
        );
    }
    out
}

/// Where the dispute deposit goes once every dispute check is final.
pub fn dispute_settled_transfers(m: &JobManifest, node_lost: bool) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let mut out = Vec::new();
    let (key, kind, to) = if node_lost {
        (
            "refund",
            TransferKind::DisputeRefund,
            account::client(&m.client),
        )
    } else {
        ("fee", TransferKind::DisputeFee, account::treasury())
    };
    push(
        &mut out,
        format!("job:{job}:dispute:{key}"),
        kind,
        account::dispute(&job),
        to,
        dispute_deposit(m),
        0,
        0,
    );
    out
}

/// Hold-back releases after the challenge window: one per node that still holds anything,
/// in key order, for its hold-backs in `so_far` less what a dispute forfeited.
pub fn release_transfers(m: &JobManifest, so_far: &[Transfer]) -> Vec<Transfer> {
    let job = hex::encode(m.job_id);
    let mut held: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for t in so_far {
        match t.kind {
            TransferKind::HoldBack => {
                let e = held.entry(t.to.clone()).or_default();
                e.0 += t.amount;
                e.1 += i64::from(t.tiles);
            }
            TransferKind::Forfeit => {
                let e = held.entry(t.from.clone()).or_default();
                e.0 = e.0.saturating_sub(t.amount);
                e.1 -= i64::from(t.tiles);
            }
            _ => {}
        }
    }
    held.into_iter()
        .filter(|(_, (amount, _))| *amount > 0)
        .map(|(hb, (amount, tiles))| {
            let node = hb.rsplit(':').next().unwrap_or_default().to_string();
            Transfer {
                key: format!("job:{job}:{node}:release"),
                kind: TransferKind::Release,
                from: hb,
                to: format!("node:{node}"),
                amount,
                round: 0,
                tiles: tiles.max(0) as u32,
            }
        })
        .collect()
}

/// The transfers one event makes.
pub fn event_transfers(m: &JobManifest, e: &Event) -> Vec<Transfer> {
    match e {
        Event::Round(o) => verdict_transfers(m, o, m.slash_pct),
        Event::DisputeOpened => dispute_opened_transfers(m),
        Event::Dispute(o) => dispute_transfers(m, o),
        Event::DisputeSettled { node_lost } => dispute_settled_transfers(m, *node_lost),
        Event::Requeued { requeue, refunded } => requeue_transfers(m, *requeue, *refunded),
    }
}

/// Every transfer of a job, in order: escrow, then each event's, then releases if the
/// window has passed.
pub fn job_transfers(m: &JobManifest, events: &[Event], released: bool) -> Vec<Transfer> {
    let mut all = vec![escrow_transfer(m)];
    for e in events {
        all.extend(event_transfers(m, e));
    }
    if released {
        let rel = release_transfers(m, &all);
        all.extend(rel);
    }
    all
}

/// What becomes of a transfer the rules call for, given what its source account holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collected {
    /// Apply this transfer (a slash capped at the stake that is left).
    Apply(Transfer),
    /// A slash that found the stake empty (slashed away on other jobs since this job's
    /// snapshot): it is listed on the receipt as uncollected, never applied, so a slash
    /// the verdicts call for never silently vanishes.
    Uncollected(Transfer),
}

/// The slash cap: a slash takes at most what the stake holds now (`from_balance`, the
/// balance of the transfer's source account) and is listed as uncollected when that is
/// nothing; a slash is sized from the stake in the round's snapshot, which other jobs may
/// have slashed since. Every other kind applies as the rules sized it.
pub fn collect(t: &Transfer, from_balance: i128) -> Collected {
    if t.kind != TransferKind::Slash {
        return Collected::Apply(t.clone());
    }
    let have = u64::try_from(from_balance.max(0)).unwrap_or(u64::MAX);
    if have == 0 {
        return Collected::Uncollected(t.clone());
    }
    Collected::Apply(Transfer {
        amount: t.amount.min(have),
        ..t.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(kind: TransferKind, amount: u64) -> Transfer {
        Transfer {
            key: "k".into(),
            kind,
            from: "stake:n".into(),
            to: "treasury".into(),
            amount,
            round: 0,
            tiles: 1,
        }
    }

    #[test]
    fn a_slash_takes_at_most_the_stake_left_and_is_listed_when_none_is() {
        let slash = transfer(TransferKind::Slash, 500);
        assert_eq!(collect(&slash, 1_000), Collected::Apply(slash.clone()));
        assert_eq!(
            collect(&slash, 200),
            Collected::Apply(transfer(TransferKind::Slash, 200))
        );
        assert_eq!(collect(&slash, 0), Collected::Uncollected(slash.clone()));
        assert_eq!(collect(&slash, -5), Collected::Uncollected(slash));
    }

    #[test]
    fn only_slashes_are_capped() {
        let pay = transfer(TransferKind::PayOnPass, 500);
        assert_eq!(collect(&pay, 0), Collected::Apply(pay));
    }
}
