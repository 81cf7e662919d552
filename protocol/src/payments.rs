//! Tiers, sampling policy, prices and the double-entry ledger rules.
//!
//! Money is integer micro-credits. Every transfer has an idempotency key; applying a key
//! twice is a no-op, so redelivered messages never pay twice. Only `external:` accounts
//! (money entering or leaving the farm) may go negative, so the sum of all balances is
//! always zero.

use crate::canonical::FieldWriter;
use crate::keys::PublicKey;
use crate::types::TileRect;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A tier's numbers (configuration; [`default_tiers`] gives DESIGN.md's defaults).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TierPolicy {
    /// Tier name.
    pub name: String,
    /// Price multiplier over the base price.
    pub price_multiplier: u32,
    /// Percentage of a tile's price paid to the node when its verification passes.
    pub paid_on_pass_pct: u32,
    /// Sampling multiplier over the base k.
    pub sampling_multiplier: u32,
    /// Minimum node trust to take work in this tier.
    pub min_trust: u32,
}

impl TierPolicy {
    pub(crate) fn write_fields(&self, w: &mut FieldWriter) {
        w.str(&self.name)
            .u32(self.price_multiplier)
            .u32(self.paid_on_pass_pct)
            .u32(self.sampling_multiplier)
            .u32(self.min_trust);
    }
}

/// The default tiers: economy, priority, trusted.
pub fn default_tiers() -> Vec<TierPolicy> {
    let tier = |name: &str, price, pass, sampling, min_trust| TierPolicy {
        name: name.into(),
        price_multiplier: price,
        paid_on_pass_pct: pass,
        sampling_multiplier: sampling,
        min_trust,
    };
    vec![
        tier("economy", 1, 50, 3, 0),
        tier("priority", 2, 75, 1, 0),
        tier("trusted", 4, 90, 1, 50),
    ]
}

/// How many pixels a check draws from a node's round, its k (the verifier re-renders the
/// blocks that hold them, `sampling::sample_blocks`); integers so the policy can be signed
/// exactly.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SamplingPolicy {
    /// Detection probability P, in parts per million.
    pub detection_ppm: u32,
    /// Forged fraction f (of a node's pixels) to detect, in parts per million.
    pub forged_fraction_ppm: u32,
    /// Nodes with trust below this are "new" and sampled more.
    pub new_node_trust: u32,
    /// Multiplier on k for new nodes.
    pub new_node_multiplier: u32,
    /// No check draws fewer than this many pixels (a node that committed no more blocks
    /// than its k has every block checked instead).
    pub floor: u32,
}

impl Default for SamplingPolicy {
    fn default() -> Self {
        Self {
            detection_ppm: 999_000,
            forged_fraction_ppm: 50_000,
            new_node_trust: 10,
            new_node_multiplier: 2,
            floor: 1,
        }
    }
}

impl SamplingPolicy {
    pub(crate) fn write_fields(&self, w: &mut FieldWriter) {
        w.u32(self.detection_ppm)
            .u32(self.forged_fraction_ppm)
            .u32(self.new_node_trust)
            .u32(self.new_node_multiplier)
            .u32(self.floor);
    }

    /// Base k = ⌈ln(1−P) / ln(1−f)⌉ (135 for P = 0.999, f = 0.05).
    pub fn base_k(&self) -> u32 {
        let p = f64::from(self.detection_ppm.min(999_999)) / 1e6;
        let f = f64::from(self.forged_fraction_ppm.clamp(1, 999_999)) / 1e6;
        let k = ((1.0 - p).ln() / (1.0 - f).ln()).ceil();
        k.max(1.0) as u32
    }

    /// k for a node of `trust` in `tier`: the pixels its first check draws (every block is
    /// checked instead when it committed no more than k blocks).
    pub fn node_k(&self, tier: &TierPolicy, trust: u32) -> u32 {
        let mut k = self
            .base_k()
            .saturating_mul(tier.sampling_multiplier.max(1));
        if trust < self.new_node_trust {
            k = k.saturating_mul(self.new_node_multiplier.max(1));
        }
        k.max(self.floor).max(1)
    }
}

/// Base prices.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pricing {
    /// Micro-credits per million samples (pixels × spp) at price multiplier 1.
    pub micro_per_msample: u64,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            micro_per_msample: 1_000,
        }
    }
}

impl Pricing {
    /// Price of one tile: ⌈pixels × spp × rate × multiplier / 10⁶⌉ micro-credits.
    pub fn tile_price(&self, tier: &TierPolicy, rect: TileRect, spp: u32) -> u64 {
        let samples = u128::from(rect.pixels()) * u128::from(spp);
        let micro =
            samples * u128::from(self.micro_per_msample) * u128::from(tier.price_multiplier);
        micro.div_ceil(1_000_000).min(u128::from(u64::MAX)) as u64
    }
}

/// Split a passed node's earnings into (paid now, held back) by the tier.
pub fn split_on_pass(amount: u64, tier: &TierPolicy) -> (u64, u64) {
    let paid = (u128::from(amount) * u128::from(tier.paid_on_pass_pct.min(100)) / 100) as u64;
    (paid, amount - paid)
}

/// Stake slashed on a failed verification.
pub fn slash_amount(stake_before: u64, slash_pct: u32) -> u64 {
    (u128::from(stake_before) * u128::from(slash_pct.min(100)) / 100) as u64
}

/// Highest trust a node can reach.
pub const TRUST_MAX: u32 = 1_000;

/// A node's trust after a final decision on one of its rounds, BOINC-style: it rises by
/// one per clean round (slowly: the trusted tier's default needs 50), drops to zero on a
/// confirmed failure, and halves on an inconclusive check. An escalation alone changes
/// nothing.
pub fn trust_after(trust: u32, decision: crate::statements::Decision) -> u32 {
    use crate::statements::Decision;
    match decision {
        Decision::Pass => trust.saturating_add(1).min(TRUST_MAX),
        Decision::Fail => 0,
        Decision::Inconclusive => trust / 2,
        Decision::Escalate => trust,
    }
}

/// Account names.
pub mod account {
    use super::*;

    /// Money from outside the farm (deposits); may go negative.
    pub fn external(who: &str) -> String {
        format!("external:{who}")
    }
    /// A client's spendable balance.
    pub fn client(name: &str) -> String {
        format!("client:{name}")
    }
    /// The escrow of a job.
    pub fn escrow(job_hex: &str) -> String {
        format!("escrow:{job_hex}")
    }
    /// A node's earnings.
    pub fn node(key: &PublicKey) -> String {
        format!("node:{key}")
    }
    /// A node's stake.
    pub fn stake(key: &PublicKey) -> String {
        format!("stake:{key}")
    }
    /// Earnings held back for a node on a job until the challenge window ends.
    pub fn holdback(job_hex: &str, key: &PublicKey) -> String {
        format!("holdback:{job_hex}:{key}")
    }
    /// A client's dispute deposit on a job, until the dispute is settled.
    pub fn dispute(job_hex: &str) -> String {
        format!("dispute:{job_hex}")
    }
    /// The farm's treasury (receives slashed stake).
    pub fn treasury() -> String {
        "treasury".into()
    }
    /// True for accounts allowed to go negative.
    pub fn may_go_negative(account: &str) -> bool {
        account.starts_with("external:")
    }
}

/// What a transfer is for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// Money entering the farm.
    Deposit,
    /// Client → escrow at submit.
    Escrow,
    /// Escrow → node on a passed verification.
    PayOnPass,
    /// Escrow → hold-back on a passed verification.
    HoldBack,
    /// Hold-back → node after the challenge window.
    Release,
    /// Stake → treasury on a failed verification.
    Slash,
    /// Escrow → client: money for tiles never rendered.
    Refund,
    /// Hold-back → escrow: a node's held-back pay for work a dispute failed.
    Forfeit,
    /// Node → escrow: the paid part of work a dispute failed, so it can be re-rendered
    /// without charging the client again.
    Clawback,
    /// Client → dispute account when a client disputes a job.
    DisputeDeposit,
    /// Dispute account → client: the dispute found a cheat (the node pays instead).
    DisputeRefund,
    /// Dispute account → treasury: the dispute found nothing; the client pays for it.
    DisputeFee,
}

/// One ledger transfer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transfer {
    /// Idempotency key: a transfer with a key already applied is ignored.
    pub key: String,
    /// What it is for.
    pub kind: TransferKind,
    /// Debited account.
    pub from: String,
    /// Credited account.
    pub to: String,
    /// Micro-credits (> 0).
    pub amount: u64,
    /// Verification round it belongs to (0 where none applies).
    pub round: u32,
    /// Tiles it pays for (0 where none applies).
    pub tiles: u32,
}

impl Transfer {
    pub(crate) fn write_fields(&self, w: &mut FieldWriter) {
        w.str(&self.key)
            .str(&format!("{:?}", self.kind))
            .str(&self.from)
            .str(&self.to)
            .u64(self.amount)
            .u32(self.round)
            .u32(self.tiles);
    }
}

/// Ledger rule violations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Zero-amount transfer.
    #[error("transfer {0}: amount must be positive")]
    ZeroAmount(String),
    /// Same account on both sides.
    #[error("transfer {0}: from and to are the same account {1}")]
    SameAccount(String, String),
    /// Would overdraw an account.
    #[error("transfer {key}: account {account} has {balance}, cannot pay {amount}")]
    Insufficient {
        /// Transfer key.
        key: String,
        /// Account.
        account: String,
        /// Its balance.
        balance: i128,
        /// The amount asked.
        amount: u64,
    },
    /// The same key with different content.
    #[error("transfer {0}: key already used for a different transfer")]
    KeyReused(String),
}

/// The ledger's rules over in-memory balances (the store persists the same transfers).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    balances: BTreeMap<String, i128>,
    applied: BTreeMap<String, Transfer>,
    order: Vec<String>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply `t`. Returns `Ok(true)` if applied, `Ok(false)` if its key was already
    /// applied with the same content (idempotent replay).
    pub fn apply(&mut self, t: &Transfer) -> Result<bool, LedgerError> {
        if let Some(prev) = self.applied.get(&t.key) {
            return if prev == t {
                Ok(false)
            } else {
                Err(LedgerError::KeyReused(t.key.clone()))
            };
        }
        if t.amount == 0 {
            return Err(LedgerError::ZeroAmount(t.key.clone()));
        }
        if t.from == t.to {
            return Err(LedgerError::SameAccount(t.key.clone(), t.from.clone()));
        }
        let balance = self.balance(&t.from);
        if !account::may_go_negative(&t.from) && balance < i128::from(t.amount) {
            return Err(LedgerError::Insufficient {
                key: t.key.clone(),
                account: t.from.clone(),
                balance,
                amount: t.amount,
            });
        }
        *self.balances.entry(t.from.clone()).or_default() -= i128::from(t.amount);
        *self.balances.entry(t.to.clone()).or_default() += i128::from(t.amount);
        self.applied.insert(t.key.clone(), t.clone());
        self.order.push(t.key.clone());
        Ok(true)
    }

    /// Balance of `account` (0 if never used).
    pub fn balance(&self, account: &str) -> i128 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Sum of every balance: always 0.
    pub fn total(&self) -> i128 {
        self.balances.values().sum()
    }

    /// All balances.
    pub fn balances(&self) -> &BTreeMap<String, i128> {
        &self.balances
    }

    /// Applied keys.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.applied.keys().map(String::as_str).collect()
    }

    /// Applied transfers in order.
    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.order.iter().map(|k| &self.applied[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn design_defaults_give_k_135() {
        let p = SamplingPolicy::default();
        assert_eq!(p.base_k(), 135);
        let tiers = default_tiers();
        assert_eq!(p.node_k(&tiers[0], 100), 405);
        assert_eq!(p.node_k(&tiers[1], 100), 135);
        assert_eq!(p.node_k(&tiers[1], 0), 270);
    }

    #[test]
    fn prices_and_splits() {
        let tiers = default_tiers();
        let rect = TileRect {
            x: 0,
            y: 0,
            w: 64,
            h: 64,
        };
        let p = Pricing::default();
        assert_eq!(p.tile_price(&tiers[0], rect, 64), 263); // 262144 samples → ⌈262.144⌉
        assert_eq!(p.tile_price(&tiers[2], rect, 64), 1049);
        assert_eq!(split_on_pass(1001, &tiers[0]), (500, 501));
        assert_eq!(split_on_pass(1000, &tiers[2]), (900, 100));
        assert_eq!(slash_amount(1_000_000, 50), 500_000);
    }

    fn arb_transfer() -> impl Strategy<Value = Transfer> {
        let accts = prop::sample::select(vec![
            "external:bank",
            "client:a",
            "escrow:j",
            "node:n",
            "treasury",
        ]);
        (0u8..30, accts.clone(), accts, 0u64..1000).prop_map(|(k, f, t, a)| Transfer {
            key: format!("k{k}"),
            kind: TransferKind::Deposit,
            from: f.into(),
            to: t.into(),
            amount: a,
            round: 0,
            tiles: 0,
        })
    }

    proptest! {
        #[test]
        fn sum_is_constant_no_key_twice_no_overdraft(ts in proptest::collection::vec(arb_transfer(), 0..80)) {
            let mut l = Ledger::new();
            let mut applied = Vec::new();
            for t in &ts {
                let before = l.clone();
                match l.apply(t) {
                    Ok(true) => applied.push(t.clone()),
                    Ok(false) => prop_assert_eq!(l.balances(), before.balances()),
                    Err(_) => prop_assert_eq!(l.balances(), before.balances()),
                }
                prop_assert_eq!(l.total(), 0);
                for (acct, bal) in l.balances() {
                    prop_assert!(*bal >= 0 || account::may_go_negative(acct), "{} = {}", acct, bal);
                }
            }
            prop_assert_eq!(l.keys().len(), applied.len());
            // Replaying every applied transfer changes nothing.
            let snapshot = l.balances().clone();
            for t in &applied { prop_assert_eq!(l.apply(t), Ok(false)); }
            prop_assert_eq!(l.balances(), &snapshot);
        }
    }
}
