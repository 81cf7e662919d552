//! `tessera simulate`: measure how often sampled re-rendering catches a cheating node, by
//! running thousands of small jobs through the real protocol code with a CPU stand-in
//! renderer, and compare the rate with the sampling formula 1 − (1 − f)^k.
//!
//! Every job has three nodes, each committing `--tiles` tiles: a cheater that forges each
//! tile independently with probability `--forged-fraction` (quarter-spp, black, noisy or
//! copied tiles, committed to so that integrity holds), an honest node of the cheater's
//! determinism class, and an honest node of another class whose tiles differ by tiny
//! amounts (the cross-class tolerance bands). Tasks, result checks, round commitments,
//! verify requests and verdict checks are the coordinator's round rules
//! (`tessera_coordinator::job`); nodes are [`tessera_node::Node`]s; verdicts come from
//! [`tessera_verifier::Verifier`]; payments from `tessera_protocol::rules` on a
//! [`tessera_protocol::payments::Ledger`]. docs/SIMULATION.md has the method and results.
//!
//! Every simulated node has the trust `--trust` (default 100: an established node, above
//! the new-node threshold and the trusted tier's minimum), so its k is
//! `SamplingPolicy::node_k(tier, trust)`, capped at the tiles it committed.

mod job;
mod renderers;
mod stats;

use crate::farm::usage;
use anyhow::Result;
use clap::Args;
use serde::Serialize;
use stats::{predicted_detection, wilson, Bands, Money, Tally, Z_99};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tessera_protocol::payments::{default_tiers, SamplingPolicy, TierPolicy, TRUST_MAX};

/// Arguments of `tessera simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// Jobs to simulate; each has one cheating and two honest nodes.
    #[arg(long, default_value_t = 10_000)]
    jobs: u64,
    /// Probability that the cheater forges any one tile (0 to 1).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    forged_fraction: f64,
    /// Tier: economy, priority or trusted.
    #[arg(long, default_value = "economy", env = "TESSERA_TIER")]
    tier: String,
    /// Tiles each node commits per job (n).
    #[arg(long, default_value_t = 256)]
    tiles: u32,
    /// Tile edge in pixels (16 to 64).
    #[arg(long = "tile", default_value_t = 16)]
    tile: u32,
    /// Samples per pixel of the stand-in renderer (at least 4: one forgery renders a
    /// quarter of them).
    #[arg(long, default_value_t = 4)]
    spp: u32,
    /// Tiles per batch (one task, one signed commitment).
    #[arg(long, default_value_t = 32)]
    batch: u32,
    /// Trust of every simulated node (sets k with the tier; below the sampling policy's
    /// new-node threshold, 10, k is doubled).
    #[arg(long, default_value_t = 100)]
    trust: u32,
    /// Seed: the same seed and flags give the same counts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Render every tile anew instead of remembering the stand-in's tiles (slower; the
    /// counts are the same).
    #[arg(long)]
    no_render_cache: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
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
    /// Check the flags; every error names its flag (a usage error: exit code 2).
    pub fn from_args(a: &SimulateArgs) -> Result<Self> {
        if a.jobs == 0 || a.jobs > 100_000_000 {
            usage!("--jobs must be between 1 and 100000000, got {}", a.jobs);
        }
        if !(a.forged_fraction.is_finite() && (0.0..=1.0).contains(&a.forged_fraction)) {
            usage!(
                "--forged-fraction must be between 0 and 1, got {}",
                a.forged_fraction
            );
        }
        let tiers = default_tiers();
        let Some(tier) = tiers.iter().find(|t| t.name == a.tier).cloned() else {
            let names: Vec<_> = tiers.iter().map(|t| t.name.as_str()).collect();
            usage!(
                "--tier {:?} is unknown; expected one of {}",
                a.tier,
                names.join(", ")
            );
        };
        if a.tiles == 0 || a.tiles > 16_384 {
            usage!("--tiles must be between 1 and 16384, got {}", a.tiles);
        }
        if !(16..=64).contains(&a.tile) {
            usage!(
                "--tile must be between 16 and 64 pixels, got {} (in a smaller tile one diverged pixel of the other-class stand-in is beyond the tolerance's fail limit)",
                a.tile
            );
        }
        if !(4..=1024).contains(&a.spp) {
            usage!(
                "--spp must be between 4 and 1024, got {} (the quarter-spp forgery renders spp/4)",
                a.spp
            );
        }
        if a.batch == 0 {
            usage!("--batch must be at least 1");
        }
        if a.trust > TRUST_MAX {
            usage!("--trust must be at most {TRUST_MAX}, got {}", a.trust);
        }
        if a.trust < tier.min_trust {
            usage!(
                "--trust {} is below the {} tier's minimum trust {}",
                a.trust,
                tier.name,
                tier.min_trust
            );
        }
        let threads = match a.threads {
            Some(0) => usage!("--threads must be at least 1"),
            Some(t) => t.min(1024),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Self {
            jobs: a.jobs,
            forged_fraction: a.forged_fraction,
            tier,
            sampling: SamplingPolicy::default(),
            tiles: a.tiles,
            tile_size: a.tile,
            spp: a.spp,
            batch: a.batch,
            trust: a.trust,
            seed: a.seed,
            threads,
            render_cache: !a.no_render_cache,
        })
    }

    /// k of the policy for a node of this trust in this tier, before the cap at n.
    pub fn policy_k(&self) -> u32 {
        self.sampling.node_k(&self.tier, self.trust)
    }

    /// The k a cheater's first check samples: the policy's k, capped at its n tiles.
    pub fn effective_k(&self) -> u32 {
        self.policy_k().min(self.tiles)
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
    /// Tiles nodes rendered.
    pub rendered_tiles: u64,
    /// Tiles verifiers re-rendered, escalations included.
    pub rerendered_tiles: u64,
    /// rerendered_tiles / rendered_tiles.
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
        let predicted = predicted_detection(cfg.forged_fraction, k);
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
            rendered_tiles: t.rendered,
            rerendered_tiles: t.rerendered,
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

    fn print_table(&self) {
        let pct = |x: f64| format!("{:.3} %", 100.0 * x);
        let rows: Vec<(&str, String)> = vec![
            ("jobs", self.jobs.to_string()),
            ("tier", self.tier.clone()),
            ("node trust", self.trust.to_string()),
            ("tiles per node and job (n)", self.tiles_per_job.to_string()),
            (
                "tile",
                format!("{0}×{0} px, {1} spp", self.tile_size, self.spp),
            ),
            ("forged fraction (f)", pct(self.forged_fraction)),
            (
                "k (policy, sampled)",
                format!("{}, {}", self.k_policy, self.k),
            ),
            ("detected", format!("{} of {}", self.detected, self.jobs)),
            ("measured detection", pct(self.measured_detection)),
            (
                "99 % Wilson interval",
                format!("{} – {}", pct(self.ci99[0]), pct(self.ci99[1])),
            ),
            ("predicted 1 − (1 − f)^k", pct(self.predicted_detection)),
            ("prediction inside interval", self.agrees.to_string()),
            (
                "forged tiles accepted",
                format!("{} of {}", self.forged_tiles_accepted, self.forged_tiles),
            ),
            (
                "honest false rejects",
                format!(
                    "{} ({} fail, {} inconclusive of {} node-rounds)",
                    pct(self.honest_false_rejects),
                    self.honest_fails,
                    self.honest_inconclusive,
                    self.honest_node_rounds
                ),
            ),
            (
                "escalations",
                format!("{} ({} honest)", self.escalations, self.honest_escalations),
            ),
            (
                "verification cost",
                format!(
                    "{:.4} ({} re-rendered / {} rendered)",
                    self.verification_cost, self.rerendered_tiles, self.rendered_tiles
                ),
            ),
            (
                "bands (match/close/ambiguous/far)",
                format!(
                    "{}/{}/{}/{}",
                    self.bands.r#match, self.bands.close, self.bands.ambiguous, self.bands.far
                ),
            ),
            (
                "ledger",
                format!(
                    "total {}; paid {}, released {}, slashed {} ({} from cheaters), refunded {}",
                    self.ledger.total,
                    self.ledger.paid_on_pass,
                    self.ledger.released,
                    self.ledger.slashed,
                    self.ledger.slashed_cheaters,
                    self.ledger.refunded
                ),
            ),
            (
                "time",
                format!(
                    "{:.2} s on {} threads ({:.0} jobs/s)",
                    self.elapsed_s, self.threads, self.jobs_per_s
                ),
            ),
        ];
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in rows {
            println!("{k:<width$}  {v}");
        }
    }
}

/// Run the simulation of `cfg` on its threads; jobs are handed out by index, so the
/// counts do not depend on the thread count or the scheduling.
pub fn simulate(cfg: &SimConfig) -> Result<Report> {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    // The verifier logs every tile that differs from its commitment; thousands of them
    // are the point here, so the workers log nothing unless TESSERA_LOG asks.
    let quiet = std::env::var_os("TESSERA_LOG").is_none();
    let results: Vec<Result<Tally, String>> = std::thread::scope(|s| {
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
                                    return Err(format!("simulated job {i}: {e}"));
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
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a simulation worker panicked".into()))
            })
            .collect()
    });
    let mut total = Tally::default();
    for r in results {
        total.add(&r.map_err(anyhow::Error::msg)?);
    }
    Ok(Report::new(cfg, &total, started.elapsed().as_secs_f64()))
}

/// `tessera simulate`: run, print, and report whether the invariants held (exit 1 if an
/// honest node was rejected or a ledger did not balance).
pub fn run(a: SimulateArgs) -> Result<bool> {
    let cfg = SimConfig::from_args(&a)?;
    let report = simulate(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_table();
    }
    if !report.sound() {
        eprintln!(
            "error: the simulation broke an invariant: {} honest node-rounds rejected, {} ledgers unbalanced (total {})",
            report.honest_fails + report.honest_inconclusive,
            report.ledger.unbalanced_jobs,
            report.ledger.total
        );
    }
    Ok(report.sound())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn config(args: &[&str]) -> Result<SimConfig> {
        let mut all = vec!["simulate"];
        all.extend_from_slice(args);
        SimConfig::from_args(&Cli::try_parse_from(all)?.args)
    }

    #[test]
    fn bad_flags_are_refused_by_name() {
        for (args, flag) in [
            (&["--forged-fraction", "1.5"][..], "--forged-fraction"),
            (&["--forged-fraction", "-0.1"][..], "--forged-fraction"),
            (&["--forged-fraction", "NaN"][..], "--forged-fraction"),
            (&["--jobs", "0"][..], "--jobs"),
            (&["--tier", "gold"][..], "--tier"),
            (&["--tiles", "0"][..], "--tiles"),
            (&["--tile", "8"][..], "--tile"),
            (&["--spp", "2"][..], "--spp"),
            (&["--batch", "0"][..], "--batch"),
            (&["--threads", "0"][..], "--threads"),
            (&["--tier", "trusted", "--trust", "5"][..], "--trust"),
        ] {
            let e = config(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        assert!(config(&[]).is_ok());
    }

    #[test]
    fn k_is_the_policy_k_capped_at_n() {
        let c = config(&["--tier", "priority", "--tiles", "256"]).unwrap();
        assert_eq!((c.policy_k(), c.effective_k()), (135, 135));
        let c = config(&["--tier", "economy", "--tiles", "256"]).unwrap();
        assert_eq!((c.policy_k(), c.effective_k()), (405, 256));
        // A new node is sampled twice as much.
        let c = config(&["--tier", "priority", "--trust", "0"]).unwrap();
        assert_eq!(c.policy_k(), 270);
    }

    fn small(args: &[&str]) -> Report {
        let mut all = vec!["--tiles", "32", "--batch", "8"];
        all.extend_from_slice(args);
        simulate(&config(&all).unwrap()).unwrap()
    }

    #[test]
    fn every_forgery_is_caught_when_every_tile_is_forged() {
        let r = small(&[
            "--jobs",
            "20",
            "--forged-fraction",
            "1",
            "--tier",
            "priority",
        ]);
        assert_eq!(r.detected, 20, "{r:?}");
        assert_eq!(r.forged_tiles_accepted, 0);
        assert!(r.sound(), "{r:?}");
        assert_eq!(r.ledger.earned_by_cheaters, 0);
        assert!(r.ledger.slashed_cheaters > 0);
    }

    #[test]
    fn nobody_is_failed_when_nobody_forges() {
        let r = small(&["--jobs", "30", "--forged-fraction", "0"]);
        assert_eq!((r.detected, r.forged_tiles), (0, 0), "{r:?}");
        assert!(r.sound(), "{r:?}");
        assert_eq!(r.bands.far, 0);
        assert_eq!(r.extra_rounds, 0);
    }

    #[test]
    fn detection_follows_the_formula_and_the_seed() {
        // n = 32 < k: every tile is sampled, so a cheater is caught iff it forged a tile.
        let args = [
            "--jobs",
            "300",
            "--forged-fraction",
            "0.02",
            "--tier",
            "priority",
        ];
        let r = small(&args);
        assert_eq!(r.k, 32);
        assert_eq!(r.detected, r.jobs - r.cheaters_without_forgery, "{r:?}");
        assert!(r.agrees, "{r:?}");
        assert!(r.sound(), "{r:?}");
        // The same seed gives the same counts, on any number of threads.
        let mut one_thread = args.to_vec();
        one_thread.extend(["--threads", "1"]);
        let again = small(&one_thread);
        assert_eq!(
            (again.detected, again.rerendered_tiles, again.escalations),
            (r.detected, r.rerendered_tiles, r.escalations)
        );
        assert_eq!((again.bands, again.ledger), (r.bands, r.ledger));
        let mut other_seed = args.to_vec();
        other_seed.extend(["--seed", "2"]);
        assert_ne!(small(&other_seed).forged_tiles, r.forged_tiles);
    }

    #[test]
    fn the_render_cache_changes_no_count() {
        let with = small(&["--jobs", "12", "--forged-fraction", "0.1"]);
        let without = small(&[
            "--jobs",
            "12",
            "--forged-fraction",
            "0.1",
            "--no-render-cache",
        ]);
        assert_eq!(with.bands, without.bands);
        assert_eq!(with.detected, without.detected);
        assert_eq!(with.ledger, without.ledger);
    }
}
