//! How the ledger property tests (`ledger_props.rs`, `render_props.rs`, and the
//! simulation's `sim/tests/ledger_props.rs`, which includes this file) pick their cases:
//! a fixed seed in CI, so that CI never goes red at random; `PROPTEST_CASES=N` for a wider
//! run from a fresh seed; `PROPTEST_RNG_SEED=S` to replay one. A failure prints both.

use proptest::test_runner::{Config as ProptestConfig, RngSeed};

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
