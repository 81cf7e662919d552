//! The detection simulation behind `tessera simulate`: measure how often sampled re-rendering catches a cheating node, by
//! running thousands of small jobs through the real protocol code with a CPU stand-in
//! renderer, and compare the rate with the sampling formula 1 − (1 − f)^k.
//!
//! Every job has three nodes, each committing `--tiles` tiles: a cheater that forges each
//! tile independently with probability `--forged-fraction` (quarter-spp, black, noisy or
//! copied tiles, committed to so that integrity holds), an honest node of the cheater's
//! determinism class, and an honest node of another class whose tiles differ by tiny
//! amounts (the cross-class tolerance bands). Tasks, result checks, round commitments,
//! verify requests, verdicts, escalation, re-render rounds and payments are the
//! coordinator's job state machine (`tessera_coordinator::machine`), driven directly
//! with a virtual clock; nodes are [`tessera_node::Node`]s; verdicts come from
//! [`tessera_verifier::Verifier`]; the machine's transfers land on a
//! [`tessera_protocol::payments::Ledger`]. docs/SIMULATION.md has the method and results.
//!
//! Every simulated node has the trust `--trust` (default 100: an established node, above
//! the new-node threshold and the trusted tier's minimum), so its k is
//! `SamplingPolicy::node_k(tier, trust)`, capped at the tiles it committed.

#![warn(missing_docs)]

mod job;
mod renderers;
mod stats;
pub mod table;

pub use job::{JobError, JobRecord};
use serde::Serialize;
pub use stats::{predicted_detection, wilson, Bands, Money, Tally, Z_99};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tessera_protocol::payments::{default_tiers, SamplingPolicy, TierPolicy, TRUST_MAX};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A parameter is out of range; the message names it as `tessera simulate`'s flag.
    #[error("{0}")]
    Invalid(String),
    /// A simulated job broke a rule of the protocol (a bug, never a detection).
    #[error("simulated job {index}: {source}")]
    Job {
        /// The job's index.
        index: u64,
        /// What went wrong.
        source: job::JobError,
    },
    /// A worker thread panicked.
    #[error("a simulation worker panicked")]
    Panicked,
}

/// What to simulate, before it is checked ([`SimConfig::new`]).
#[derive(Clone, Debug)]
pub struct SimParams {
    /// Jobs.
    pub jobs: u64,
    /// Per-tile forging probability of the cheater.
    pub forged_fraction: f64,
    /// The tier's name.
    pub tier: String,
    /// Tiles each node commits per job.
    pub tiles: u32,
    /// Tile edge.
    pub tile_size: u32,
    /// Samples per pixel.
    pub spp: u32,
    /// Tiles per batch.
    pub batch: u32,
    /// Every node's trust.
    pub trust: u32,
    /// Seed.
    pub seed: u64,
    /// Worker threads (`None`: every core).
    pub threads: Option<usize>,
    /// Whether the stand-in renderers are memoized.
    pub render_cache: bool,
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            jobs: 10_000,
            forged_fraction: 0.05,
            tier: "economy".into(),
            tiles: 256,
            tile_size: 16,
            spp: 4,
            batch: 32,
            trust: 100,
            seed: 1,
            threads: None,
            render_cache: true,
        }
    }
}

macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(SimError::Invalid(format!($($arg)*)))
    };
}

/// A validated simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Jobs.
    pub jobs: u64,
    /// Per-tile forging probability of the cheater.
    pub forged_fraction: f64,
    /// The tier.
    pub tier: TierPolicy,
    /// The sampling policy (the default).
    pub sampling: SamplingPolicy,
    /// Tiles each node commits per job.
    pub tiles: u32,
    /// Tile edge.
    pub tile_size: u32,
    /// Samples per pixel.
    pub spp: u32,
    /// Tiles per batch.
    pub batch: u32,
    /// Every node's trust.
    pub trust: u32,
    /// Seed.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Whether the stand-in renderers are memoized.
    pub render_cache: bool,
}

impl SimConfig {
    /// Check `a`; every error names the parameter as `tessera simulate`'s flag.
    pub fn new(a: &SimParams) -> Result<Self, SimError> {
        if a.jobs == 0 || a.jobs > 100_000_000 {
            invalid!("--jobs must be between 1 and 100000000, got {}", a.jobs);
        }
        if !(a.forged_fraction.is_finite() && (0.0..=1.0).contains(&a.forged_fraction)) {
            invalid!(
                "--forged-fraction must be between 0 and 1, got {}",
                a.forged_fraction
            );
        }
        let tiers = default_tiers();
        let Some(tier) = tiers.iter().find(|t| t.name == a.tier).cloned() else {
            let names: Vec<_> = tiers.iter().map(|t| t.name.as_str()).collect();
            invalid!(
                "--tier {:?} is unknown; expected one of {}",
                a.tier,
                names.join(", ")
            );
        };
        if a.tiles == 0 || a.tiles > 16_384 {
            invalid!("--tiles must be between 1 and 16384, got {}", a.tiles);
        }
        if !(16..=64).contains(&a.tile_size) {
            invalid!(
                "--tile must be between 16 and 64 pixels, got {} (in a smaller tile one diverged pixel of the other-class stand-in is beyond the tolerance's fail limit)",
                a.tile_size
            );
        }
        if !(4..=1024).contains(&a.spp) {
            invalid!(
                "--spp must be between 4 and 1024, got {} (the quarter-spp forgery renders spp/4)",
                a.spp
            );
        }
        if a.batch == 0 {
            invalid!("--batch must be at least 1");
        }
        if a.trust > TRUST_MAX {
            invalid!("--trust must be at most {TRUST_MAX}, got {}", a.trust);
        }
        if a.trust < tier.min_trust {
            invalid!(
                "--trust {} is below the {} tier's minimum trust {}",
                a.trust,
                tier.name,
                tier.min_trust
            );
        }
        let threads = match a.threads {
            Some(0) => invalid!("--threads must be at least 1"),
            Some(t) => t.min(1024),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Self {
            jobs: a.jobs,
            forged_fraction: a.forged_fraction,
            tier,
            sampling: SamplingPolicy::default(),
            tiles: a.tiles,
            tile_size: a.tile_size,
            spp: a.spp,
            batch: a.batch,
            trust: a.trust,
            seed: a.seed,
            threads,
            render_cache: a.render_cache,
        })
    }

    /// k of the policy for a node of this trust in this tier, before the cap at n.
    pub fn policy_k(&self) -> u32 {
        self.sampling.node_k(&self.tier, self.trust)
    }

    /// The blocks a cheater commits per job: n tiles of `tile_size` × `tile_size`.
    pub fn blocks(&self) -> u64 {
        let tile = tessera_protocol::TileRect {
            x: 0,
            y: 0,
            w: self.tile_size,
            h: self.tile_size,
        };
        u64::from(self.tiles) * u64::from(tessera_protocol::blocks::n_blocks(tile))
    }

    /// The most blocks a cheater's first check samples: the policy's k (pixels drawn),
    /// capped at its blocks.
    pub fn effective_k(&self) -> u32 {
        u32::try_from(u64::from(self.policy_k()).min(self.blocks())).unwrap_or(u32::MAX)
    }
}

/// The report (`--json` prints it as it is).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Jobs run (each one with a cheater).
    pub jobs: u64,
    /// Tiles each node commits per job (n).
    pub tiles_per_job: u32,
    /// Tile edge in pixels.
    pub tile_size: u32,
    /// Samples per pixel.
    pub spp: u32,
    /// Tiles per batch.
    pub batch: u32,
    /// Tier.
    pub tier: String,
    /// Trust of every node.
    pub trust: u32,
    /// The cheater's per-tile forging probability.
    pub forged_fraction: f64,
    /// k of the policy for this tier and trust, before the cap.
    pub k_policy: u32,
    /// min(k_policy, n): tiles a first check samples.
    pub k: u32,
    /// Seed.
    pub seed: u64,
    /// Cheaters whose round ended in a fail.
    pub detected: u64,
    /// detected / jobs.
    pub measured_detection: f64,
    /// 99 % Wilson score interval of the measured rate: [low, high].
    pub ci99: [f64; 2],
    /// 1 − (1 − f)^k.
    pub predicted_detection: f64,
    /// Whether the prediction lies inside the interval.
    pub agrees: bool,
    /// Cheaters whose round ended inconclusive (neither paid nor slashed).
    pub cheater_inconclusive: u64,
    /// Cheaters that happened to forge no tile (counted among the cheaters, as the
    /// formula does).
    pub cheaters_without_forgery: u64,
    /// Tiles the cheaters forged.
    pub forged_tiles: u64,
    /// Forged tiles accepted into final frames (their cheater passed).
    pub forged_tiles_accepted: u64,
    /// Honest node-rounds judged.
    pub honest_node_rounds: u64,
    /// Honest node-rounds that ended in a fail or inconclusive, over all honest
    /// node-rounds (must be 0).
    pub honest_false_rejects: f64,
    /// Honest node-rounds that failed.
    pub honest_fails: u64,
    /// Honest node-rounds that ended inconclusive.
    pub honest_inconclusive: u64,
    /// First checks that escalated to a second verifier of the other class.
    pub escalations: u64,
    /// … of which on honest nodes (an ambiguous cross-class tile).
    pub honest_escalations: u64,
    /// Rounds after the first (re-renders of failed cheaters' tiles).
    pub extra_rounds: u64,
    /// Pixels nodes rendered (pixel-samples / spp).
    pub rendered_pixels: u64,
    /// Pixels verifiers re-rendered (the sampled blocks), escalations included.
    pub rerendered_pixels: u64,
    /// rerendered_pixels / rendered_pixels: pixel-samples re-rendered per pixel-sample
    /// rendered.
    pub verification_cost: f64,
    /// Every sample by band.
    pub bands: Bands,
    /// The honest other-class node's samples by band (the cross-class path).
    pub other_class_bands: Bands,
    /// Ledger totals over all jobs.
    pub ledger: Money,
    /// Worker threads.
    pub threads: usize,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Jobs per second.
    pub jobs_per_s: f64,
}

impl Report {
    fn new(cfg: &SimConfig, t: &Tally, elapsed_s: f64) -> Self {
        let k = cfg.effective_k();
        let measured = t.detected as f64 / t.jobs.max(1) as f64;
        let (lo, hi) = wilson(t.detected, t.jobs, Z_99);
        let predicted =
            predicted_detection(cfg.forged_fraction, cfg.policy_k(), cfg.tiles, cfg.blocks());
        let rate = |x: u64, of: u64| if of == 0 { 0.0 } else { x as f64 / of as f64 };
        Self {
            jobs: t.jobs,
            tiles_per_job: cfg.tiles,
            tile_size: cfg.tile_size,
            spp: cfg.spp,
            batch: cfg.batch,
            tier: cfg.tier.name.clone(),
            trust: cfg.trust,
            forged_fraction: cfg.forged_fraction,
            k_policy: cfg.policy_k(),
            k,
            seed: cfg.seed,
            detected: t.detected,
            measured_detection: measured,
            ci99: [lo, hi],
            predicted_detection: predicted,
            agrees: lo <= predicted && predicted <= hi,
            cheater_inconclusive: t.cheater_inconclusive,
            cheaters_without_forgery: t.cheaters_without_forgery,
            forged_tiles: t.forged_tiles,
            forged_tiles_accepted: t.forged_accepted,
            honest_node_rounds: t.honest_rounds,
            honest_false_rejects: rate(t.honest_fails + t.honest_inconclusive, t.honest_rounds),
            honest_fails: t.honest_fails,
            honest_inconclusive: t.honest_inconclusive,
            escalations: t.escalations,
            honest_escalations: t.honest_escalations,
            extra_rounds: t.extra_rounds,
            rendered_pixels: t.rendered,
            rerendered_pixels: t.rerendered,
            verification_cost: rate(t.rerendered, t.rendered),
            bands: t.bands,
            other_class_bands: t.other_class_bands,
            ledger: t.money,
            threads: cfg.threads,
            elapsed_s,
            jobs_per_s: t.jobs as f64 / elapsed_s.max(1e-9),
        }
    }

    /// Whether the invariants held: no honest node rejected, every ledger balanced.
    pub fn sound(&self) -> bool {
        self.honest_fails == 0
            && self.honest_inconclusive == 0
            && self.ledger.unbalanced_jobs == 0
            && self.ledger.total == 0
    }
}

/// Run the simulation of `cfg` on its threads; jobs are handed out by index, so the
/// counts do not depend on the thread count or the scheduling.
pub fn simulate(cfg: &SimConfig) -> Result<Report, SimError> {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    // The verifier logs every tile that differs from its commitment; thousands of them
    // are the point here, so the workers log nothing unless TESSERA_LOG asks.
    let quiet = std::env::var_os("TESSERA_LOG").is_none();
    let results: Vec<Result<Tally, SimError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|_| {
                s.spawn(|| {
                    let work = || {
                        let farm = job::Farm::new(cfg);
                        let mut tally = Tally::default();
                        while !stop.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= cfg.jobs {
                                break;
                            }
                            match farm.run(cfg, i) {
                                Ok(t) => tally.add(&t),
                                Err(e) => {
                                    stop.store(true, Ordering::Relaxed);
                                    return Err(SimError::Job {
                                        index: i,
                                        source: e,
                                    });
                                }
                            }
                        }
                        Ok(tally)
                    };
                    if quiet {
                        tracing::subscriber::with_default(
                            tracing::subscriber::NoSubscriber::default(),
                            work,
                        )
                    } else {
                        work()
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(Err(SimError::Panicked)))
            .collect()
    });
    let mut total = Tally::default();
    for r in results {
        total.add(&r?);
    }
    Ok(Report::new(cfg, &total, started.elapsed().as_secs_f64()))
}

/// Run job `index` of the simulation of `cfg` alone, on this thread, and keep what it
/// left behind (its bundle, receipt, applied transfers and balances) for a test of its
/// ledger. The job is the one [`simulate`] runs under that index.
pub fn run_job(cfg: &SimConfig, index: u64) -> Result<JobRecord, SimError> {
    job::Farm::new(cfg)
        .run_recorded(cfg, index)
        .map_err(|source| SimError::Job { index, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(args: &[(&str, &str)]) -> Report {
        let mut p = SimParams {
            tiles: 32,
            batch: 8,
            ..SimParams::default()
        };
        for (k, v) in args {
            match *k {
                "jobs" => p.jobs = v.parse().unwrap(),
                "forged-fraction" => p.forged_fraction = v.parse().unwrap(),
                "tier" => p.tier = v.to_string(),
                "threads" => p.threads = Some(v.parse().unwrap()),
                "seed" => p.seed = v.parse().unwrap(),
                "no-render-cache" => p.render_cache = false,
                other => panic!("no parameter {other}"),
            }
        }
        simulate(&SimConfig::new(&p).unwrap()).unwrap()
    }

    #[test]
    fn every_forgery_is_caught_when_every_tile_is_forged() {
        let r = small(&[
            ("jobs", "20"),
            ("forged-fraction", "1"),
            ("tier", "priority"),
        ]);
        assert_eq!(r.detected, 20, "{r:?}");
        assert_eq!(r.forged_tiles_accepted, 0);
        assert!(r.sound(), "{r:?}");
        assert_eq!(r.ledger.earned_by_cheaters, 0);
        assert!(r.ledger.slashed_cheaters > 0);
    }

    #[test]
    fn nobody_is_failed_when_nobody_forges() {
        let r = small(&[("jobs", "30"), ("forged-fraction", "0")]);
        assert_eq!((r.detected, r.forged_tiles), (0, 0), "{r:?}");
        assert!(r.sound(), "{r:?}");
        assert_eq!(r.bands.far, 0);
        assert_eq!(r.extra_rounds, 0);
    }

    #[test]
    fn detection_follows_the_formula_and_the_seed() {
        // 32 tiles of 16 × 16 are 128 blocks < k = 135: every block is sampled, so a
        // cheater is caught iff it forged a tile.
        let args = [
            ("jobs", "300"),
            ("forged-fraction", "0.02"),
            ("tier", "priority"),
        ];
        let r = small(&args);
        assert_eq!(r.k, 128);
        assert_eq!(r.detected, r.jobs - r.cheaters_without_forgery, "{r:?}");
        assert!(r.agrees, "{r:?}");
        assert!(r.sound(), "{r:?}");
        // The same seed gives the same counts, on any number of threads.
        let mut one_thread = args.to_vec();
        one_thread.push(("threads", "1"));
        let again = small(&one_thread);
        assert_eq!(
            (again.detected, again.rerendered_pixels, again.escalations),
            (r.detected, r.rerendered_pixels, r.escalations)
        );
        assert_eq!((again.bands, again.ledger), (r.bands, r.ledger));
        let mut other_seed = args.to_vec();
        other_seed.push(("seed", "2"));
        assert_ne!(small(&other_seed).forged_tiles, r.forged_tiles);
    }

    #[test]
    fn the_render_cache_changes_no_count() {
        let with = small(&[("jobs", "12"), ("forged-fraction", "0.1")]);
        let without = small(&[
            ("jobs", "12"),
            ("forged-fraction", "0.1"),
            ("no-render-cache", ""),
        ]);
        assert_eq!(with.bands, without.bands);
        assert_eq!(with.detected, without.detected);
        assert_eq!(with.ledger, without.ledger);
    }
}
