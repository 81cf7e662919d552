//! What the ledger property tests (`ledger_props.rs`, `render_props.rs`, and the
//! simulation's `sim/tests/ledger_props.rs`, which includes this file) share: how they
//! pick their cases (a fixed seed in CI, so that CI never goes red at random;
//! `PROPTEST_CASES=N` for a wider run from a fresh seed; `PROPTEST_RNG_SEED=S` to replay
//! one; a failure prints both), and the balance rules of a ledger.

use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use std::collections::{BTreeMap, BTreeSet};

/// The seed of this run's cases: `PROPTEST_RNG_SEED` (a replay), else a fresh one for a
/// wider run (`PROPTEST_CASES`), else `ci_seed`. Drawn once per test process.
pub fn seed(ci_seed: u64) -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_RNG_SEED={s}: not a u64")),
        Err(_) if std::env::var("PROPTEST_CASES").is_ok() => rand::random(),
        Err(_) => ci_seed,
    })
}

/// The config of a property test: `ci_cases` cases from `ci_seed` unless the environment
/// says otherwise ([`seed`]), shrinking at most `max_shrink_iters` steps.
pub fn config(ci_seed: u64, ci_cases: u32, max_shrink_iters: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        max_shrink_iters,
        rng_seed: RngSeed::Fixed(seed(ci_seed)),
        ..ProptestConfig::default()
    };
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = ci_cases;
    }
    c
}

/// How to run a failing case again.
pub fn replay(ci_seed: u64, ci_cases: u32) -> String {
    format!(
        "replay: PROPTEST_RNG_SEED={} PROPTEST_CASES={}",
        seed(ci_seed),
        config(ci_seed, ci_cases, 0).cases
    )
}

/// The balance rules of a ledger, given every transfer applied to it as (key, from, to,
/// amount) and its balances: keys are unique, every transfer moves a positive amount
/// between two accounts, the balances sum to zero and are exactly what the transfers sum
/// to, and only accounts that `may_go_negative` allows are below zero.
pub fn check_balances<'a>(
    transfers: impl IntoIterator<Item = (&'a str, &'a str, &'a str, i128)>,
    balances: &BTreeMap<String, i128>,
    may_go_negative: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let mut keys = BTreeSet::new();
    let mut derived: BTreeMap<&str, i128> = BTreeMap::new();
    for (key, from, to, amount) in transfers {
        if !keys.insert(key) {
            return Err(format!("transfer key {key} applied twice"));
        }
        if amount <= 0 || from == to {
            return Err(format!("transfer {key} moves {amount} from {from} to {to}"));
        }
        *derived.entry(from).or_default() -= amount;
        *derived.entry(to).or_default() += amount;
    }
    let total: i128 = balances.values().sum();
    if total != 0 {
        return Err(format!("the balances sum to {total}, not 0"));
    }
    for acct in derived
        .keys()
        .copied()
        .chain(balances.keys().map(String::as_str))
    {
        let (bal, want) = (
            balances.get(acct).copied().unwrap_or(0),
            derived.get(acct).copied().unwrap_or(0),
        );
        if bal != want {
            return Err(format!(
                "account {acct} holds {bal} but its transfers sum to {want}"
            ));
        }
        if bal < 0 && !may_go_negative(acct) {
            return Err(format!("account {acct} is negative: {bal}"));
        }
    }
    Ok(())
}
