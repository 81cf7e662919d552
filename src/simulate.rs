//! `tessera simulate`: the flags, checked into a [`SimConfig`], the detection simulation
//! of `tessera_sim` run on them, and its report printed (`tessera_sim::table`, or JSON).

use crate::farm::usage;
use anyhow::Result;
use clap::Args;
use tessera_sim::{simulate, SimConfig, SimParams};

/// Arguments of `tessera simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// Jobs to simulate; each has one cheating and two honest nodes.
    #[arg(long, default_value_t = 10_000)]
    jobs: u64,
    /// Fraction of its pixel-work the cheater forges (0 to 1), in the shape `--shape`.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    forged_fraction: f64,
    /// Shape of the forgery: tiles (each tile forged with probability f), blocks (each
    /// 8 × 8 block forged with probability f), spp (every tile rendered with
    /// spp − round(f · spp) samples; needs an spp that resolves f, e.g. --spp 100) or
    /// patches (one rectangle of about f of the pixels in every tile, off the block grid).
    #[arg(long, default_value = "tiles")]
    shape: String,
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

/// Check the flags into a simulation; every error names its flag (a usage error: exit
/// code 2).
pub fn config(a: &SimulateArgs) -> Result<SimConfig> {
    let params = SimParams {
        jobs: a.jobs,
        forged_fraction: a.forged_fraction,
        shape: a.shape.clone(),
        tier: a.tier.clone(),
        tiles: a.tiles,
        tile_size: a.tile,
        spp: a.spp,
        batch: a.batch,
        trust: a.trust,
        seed: a.seed,
        threads: a.threads,
        render_cache: !a.no_render_cache,
    };
    match SimConfig::new(&params) {
        Ok(c) => Ok(c),
        Err(e) => usage!("{e}"),
    }
}

/// `tessera simulate`: run, print, and report whether the invariants held (exit 1 if an
/// honest node was rejected or a ledger did not balance).
pub fn run(a: SimulateArgs) -> Result<bool> {
    let cfg = config(&a)?;
    let report = simulate(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        tessera_sim::table::write_table(&mut std::io::stdout().lock(), &report)?;
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

    fn parse(args: &[&str]) -> Result<SimConfig> {
        let mut all = vec!["simulate"];
        all.extend_from_slice(args);
        config(&Cli::try_parse_from(all)?.args)
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
            (&["--shape", "stripes"][..], "--shape"),
            // 5 % of 4 samples is 0 (the default spp cannot resolve it) …
            (&["--shape", "spp"][..], "--spp"),
            // … 1 % of 60 is 1 of 60 (1.67 %) …
            (
                &["--shape", "spp", "--spp", "60", "--forged-fraction", "0.01"][..],
                "--spp",
            ),
            // … and all of them leaves nothing to render.
            (
                &["--shape", "spp", "--spp", "100", "--forged-fraction", "1"][..],
                "--spp",
            ),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        assert!(parse(&[]).is_ok());
        // What spp resolves: 1 % of 100, 5 % of 20 and of 100, 20 % of 5.
        for (spp, f) in [
            ("100", "0.01"),
            ("20", "0.05"),
            ("100", "0.05"),
            ("5", "0.2"),
        ] {
            let c = parse(&["--shape", "spp", "--spp", spp, "--forged-fraction", f]);
            assert!(
                c.is_ok(),
                "--spp {spp} --forged-fraction {f}: {:?}",
                c.err()
            );
        }
        // Nothing forged needs no resolution.
        assert!(parse(&["--shape", "spp", "--forged-fraction", "0"]).is_ok());
    }

    #[test]
    fn k_is_the_policy_k_capped_at_the_blocks() {
        // 256 tiles of 16 × 16 are 1024 blocks: k pixels check at most k blocks.
        let c = parse(&["--tier", "priority", "--tiles", "256"]).unwrap();
        assert_eq!((c.policy_k(), c.effective_k()), (135, 135));
        let c = parse(&["--tier", "economy", "--tiles", "256"]).unwrap();
        assert_eq!((c.policy_k(), c.effective_k()), (405, 405));
        // 64 tiles of 16 × 16 are 256 blocks, fewer than k: all of them.
        let c = parse(&["--tier", "economy", "--tiles", "64"]).unwrap();
        assert_eq!((c.policy_k(), c.effective_k()), (405, 256));
        // A new node is sampled twice as much.
        let c = parse(&["--tier", "priority", "--trust", "0"]).unwrap();
        assert_eq!(c.policy_k(), 270);
    }
}
