//! The detection simulation behind `tessera simulate`: measure how often sampled re-rendering catches a cheating node, by
//! running thousands of small jobs through the real protocol code with a CPU stand-in
//! renderer, and compare the rate with what the block sampling predicts.
//!
//! Every job has three nodes, each committing `--tiles` tiles: a cheater that forges a
//! fraction `--forged-fraction` of its pixel-work in the shape `--shape` (whole tiles,
//! scattered 8 × 8 blocks, lower spp everywhere, or a small patch in every tile; see
//! [`Shape`]), committed to so that integrity holds, an honest node of the cheater's
//! determinism class, and an honest node of another class whose tiles differ by tiny
//! amounts (the cross-class tolerance bands); and three verifiers, two of the cheater's
//! class and one of the other. Every first check goes to a verifier of the cheater's
//! class; after a mismatch in its own class the machine sends the escalated check to the
//! other verifier of that class, whose render can corroborate the first (two renders of
//! the class agree, the node's bytes differ: it fails), and after any other escalation to
//! the verifier of the other class. Tasks, result checks, round commitments,
//! verify requests, verdicts, escalation, re-render rounds and payments are the
//! coordinator's job state machine (`tessera_coordinator::machine`), driven directly
//! with a virtual clock; nodes are [`tessera_node::Node`]s; verdicts come from
//! [`tessera_verifier::Verifier`]; the machine's transfers land on a
//! [`tessera_protocol::payments::Ledger`]. docs/SIMULATION.md has the method and results.
//!
//! The prediction is per job, from what the forger did ([`TilePlan`]): with q the share
//! of the cheater's committed pixels that lie in blocks holding a forged pixel, its first
//! check (k pixels drawn uniformly with replacement) samples the forgery with
//! probability 1 − (1 − q)^k ([`catch_probability`]); the report predicts the mean over
//! jobs, and counts separately how often the forgery was sampled and how the sampled
//! forged blocks were judged, so that a gap between prediction and measure shows whether
//! the sampling or the comparison made it.
//!
//! Every simulated node has the trust `--trust` (default 100: an established node, above
//! the new-node threshold and the trusted tier's minimum), so its k is
//! `SamplingPolicy::node_k(tier, trust)`, capped at the blocks it committed.

#![warn(missing_docs)]

mod job;
mod renderers;
mod stats;
pub mod table;

pub use job::{JobError, JobRecord};
pub use renderers::{patch_size, spp_dropped, Forger, Forgery, Shape, TilePlan};
use serde::Serialize;
pub use stats::{
    catch_probability, predicted_detection, wilson, Bands, Forged, Judged, MetricSums, Money,
    Tally, CATCH_SCALE, Z_99,
};
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
    /// The cheater's forged fraction of its pixel-work.
    pub forged_fraction: f64,
    /// The shape of its forgery, by name ([`Shape::name`]).
    pub shape: String,
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
            shape: "tiles".into(),
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

/// How far, relative to f, the forged fraction of `--shape spp` (round(f · spp) / spp) may
/// lie from the requested f.
pub const SPP_RESOLUTION: f64 = 0.1;

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
    /// The cheater's forged fraction of its pixel-work.
    pub forged_fraction: f64,
    /// The shape of its forgery.
    pub shape: Shape,
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
        let Some(shape) = Shape::parse(&a.shape) else {
            let names: Vec<_> = Shape::ALL.iter().map(|s| s.name()).collect();
            invalid!(
                "--shape {:?} is unknown; expected one of {}",
                a.shape,
                names.join(", ")
            );
        };
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
        if shape == Shape::Spp {
            // The forged fraction is round(f · spp) / spp samples of every pixel: spp must
            // resolve f, and leave a sample to render.
            let dropped = spp_dropped(a.forged_fraction, a.spp);
            let actual = f64::from(dropped) / f64::from(a.spp);
            if dropped == a.spp {
                invalid!(
                    "--spp {} with --shape spp and --forged-fraction {} leaves no sample to render (spp − round(f · spp) = 0); use a forged fraction below 1",
                    a.spp,
                    a.forged_fraction
                );
            }
            if (actual - a.forged_fraction).abs() > SPP_RESOLUTION * a.forged_fraction {
                invalid!(
                    "--spp {} cannot forge --forged-fraction {} with --shape spp: round(f · spp) / spp = {} is more than {} % off; use an spp that resolves f (e.g. --spp 100)",
                    a.spp,
                    a.forged_fraction,
                    actual,
                    SPP_RESOLUTION * 100.0
                );
            }
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
            shape,
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
    /// The shape of the cheater's forgery.
    pub shape: Shape,
    /// The requested forged fraction f of the cheater's pixel-work.
    pub forged_fraction: f64,
    /// The forged fraction measured: claimed pixel-samples not behind the delivered
    /// values (every sample of a black, noisy or copied pixel, the samples left out of a
    /// lower-spp one) over pixel-samples committed, the cheaters' round-0 work of all
    /// jobs (each commits the same, so this is the mean over jobs).
    pub forged_work_fraction: f64,
    /// Pixels whose value is not the honest one, over pixels committed.
    pub forged_pixel_fraction: f64,
    /// The mean q: committed pixels lying in blocks that hold a forged pixel, over
    /// pixels committed (what the block sampling can see of the forgery).
    pub touched_fraction: f64,
    /// k of the policy for this tier and trust, before the cap.
    pub k_policy: u32,
    /// min(k_policy, blocks): the most blocks a first check samples (it draws k_policy
    /// pixels).
    pub k: u32,
    /// Blocks each node commits per job.
    pub blocks_per_node: u64,
    /// Seed.
    pub seed: u64,
    /// Cheaters whose round ended in a fail.
    pub detected: u64,
    /// detected / jobs.
    pub measured_detection: f64,
    /// 99 % Wilson score interval of the measured rate: [low, high].
    pub ci99: [f64; 2],
    /// The mean over jobs of the chance that the cheater's first check samples a block
    /// holding a forged pixel, from what the forger did in the job: 1 − (1 − q)^k, or
    /// [q > 0] when the node's blocks are at most k ([`catch_probability`]). It assumes
    /// the comparison flags every sampled block that holds a forged pixel.
    pub predicted_detection: f64,
    /// Whether the prediction lies inside the interval.
    pub agrees: bool,
    /// Cheaters whose first check sampled a block holding a forged pixel (the event the
    /// prediction is for; detected ≤ this, the gap is the comparison's).
    pub forged_sampled: u64,
    /// forged_sampled / jobs.
    pub forged_sampled_rate: f64,
    /// 99 % Wilson score interval of forged_sampled_rate.
    pub forged_sampled_ci99: [f64; 2],
    /// Whether the prediction lies inside that interval (the sampling is as predicted).
    pub sampling_agrees: bool,
    /// How the cheaters' first checks judged the sampled blocks holding a forged pixel.
    pub forged_blocks: Judged,
    /// The aggregates of the cheaters' first checks that sampled a forged pixel.
    pub forged_first_aggregates: Judged,
    /// The aggregates of the cheaters' escalated checks.
    pub escalated_aggregates: Judged,
    /// Cheaters whose round ended inconclusive (neither paid nor slashed).
    pub cheater_inconclusive: u64,
    /// Cheaters that happened to forge no pixel (counted among the cheaters, as the
    /// prediction does).
    pub cheaters_without_forgery: u64,
    /// Tiles the cheaters forged a pixel of.
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
    /// First checks that escalated to a second verifier (of the node's class after a
    /// same-class mismatch, else of the other class).
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
        let predicted = t.forged.catch_fixed as f64 / CATCH_SCALE / t.jobs.max(1) as f64;
        let (slo, shi) = wilson(t.forged_sampled, t.jobs, Z_99);
        let rate = |x: u64, of: u64| if of == 0 { 0.0 } else { x as f64 / of as f64 };
        let f = &t.forged;
        Self {
            jobs: t.jobs,
            tiles_per_job: cfg.tiles,
            tile_size: cfg.tile_size,
            spp: cfg.spp,
            batch: cfg.batch,
            tier: cfg.tier.name.clone(),
            trust: cfg.trust,
            shape: cfg.shape,
            forged_fraction: cfg.forged_fraction,
            forged_work_fraction: rate(f.samples, f.committed_samples),
            forged_pixel_fraction: rate(f.pixels, f.committed_pixels),
            touched_fraction: rate(f.touched_pixels, f.committed_pixels),
            k_policy: cfg.policy_k(),
            k,
            blocks_per_node: cfg.blocks(),
            seed: cfg.seed,
            detected: t.detected,
            measured_detection: measured,
            ci99: [lo, hi],
            predicted_detection: predicted,
            agrees: lo <= predicted && predicted <= hi,
            forged_sampled: t.forged_sampled,
            forged_sampled_rate: rate(t.forged_sampled, t.jobs),
            forged_sampled_ci99: [slo, shi],
            sampling_agrees: slo <= predicted && predicted <= shi,
            forged_blocks: t.forged_blocks.judged(),
            forged_first_aggregates: t.forged_first_aggregates.judged(),
            escalated_aggregates: t.escalated_aggregates.judged(),
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
                "shape" => p.shape = v.to_string(),
                "spp" => p.spp = v.parse().unwrap(),
                "tiles" => p.tiles = v.parse().unwrap(),
                "tile" => p.tile_size = v.parse().unwrap(),
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
        // Each job's prediction is then [it forged], exactly.
        let forged = (r.jobs - r.cheaters_without_forgery) as f64 / r.jobs as f64;
        assert!((r.predicted_detection - forged).abs() < 1e-12, "{r:?}");
        assert_eq!(r.forged_sampled, r.jobs - r.cheaters_without_forgery);
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
    fn each_shape_reports_what_its_forger_did() {
        // 32 tiles of 16 × 16 at 40 spp, 5 % (2 of 40 samples for the spp shape);
        // priority samples every one of the 128 blocks, so every forgery is sampled.
        for shape in Shape::ALL {
            let r = small(&[
                ("jobs", "12"),
                ("forged-fraction", "0.05"),
                ("tier", "priority"),
                ("shape", shape.name()),
                ("spp", "40"),
            ]);
            assert_eq!(r.shape, shape);
            assert!(r.sound(), "{r:?}");
            assert!(r.detected <= r.forged_sampled, "{r:?}");
            assert_eq!(
                r.forged_sampled,
                r.jobs - r.cheaters_without_forgery,
                "{r:?}"
            );
            match shape {
                Shape::Spp => {
                    assert_eq!(r.forged_work_fraction, 0.05);
                    assert_eq!((r.forged_pixel_fraction, r.touched_fraction), (1.0, 1.0));
                    assert_eq!(r.forged_tiles, 12 * 32);
                }
                Shape::Patches => {
                    // 4 × 3 pixels of every 16 × 16 tile, in 1 to 4 of its 4 blocks.
                    assert_eq!(r.forged_pixel_fraction, 12.0 / 256.0);
                    assert!(r.touched_fraction >= 0.25, "{r:?}");
                    assert_eq!(r.forged_tiles, 12 * 32);
                }
                Shape::Tiles | Shape::Blocks => {
                    // A forged region is whole tiles or whole blocks: q is the pixels'
                    // share, and a quarter of the kinds (quarter-spp) forges 3/4 of the
                    // samples of 40 (30).
                    assert_eq!(r.touched_fraction, r.forged_pixel_fraction);
                    assert!(r.forged_work_fraction < r.forged_pixel_fraction, "{r:?}");
                    assert!(r.forged_work_fraction >= 0.75 * r.forged_pixel_fraction);
                }
            }
            // What a first check sampled of the forgery was judged, and counted.
            assert_eq!(
                r.forged_first_aggregates.n, r.forged_sampled,
                "{shape}: {r:?}"
            );
            assert!(r.forged_blocks.n >= r.forged_sampled, "{shape}: {r:?}");
        }
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
