//! The simulation report as people read it (`tessera simulate` without `--json`): one
//! row per measure, written to any [`Write`].

use crate::Report;
use std::io::{self, Write};

/// Write the simulation report `r` as the two-column table `tessera simulate` prints.
pub fn write_table(w: &mut impl Write, r: &Report) -> io::Result<()> {
    let pct = |x: f64| format!("{:.3} %", 100.0 * x);
    let rows: Vec<(&str, String)> = vec![
        ("jobs", r.jobs.to_string()),
        ("tier", r.tier.clone()),
        ("node trust", r.trust.to_string()),
        ("tiles per node and job (n)", r.tiles_per_job.to_string()),
        ("tile", format!("{0}×{0} px, {1} spp", r.tile_size, r.spp)),
        ("shape", r.shape.to_string()),
        ("forged fraction (f)", pct(r.forged_fraction)),
        (
            "forged work (pixel-samples, pixels)",
            format!(
                "{}, {}",
                pct(r.forged_work_fraction),
                pct(r.forged_pixel_fraction)
            ),
        ),
        ("in blocks holding a forgery (q)", pct(r.touched_fraction)),
        (
            "k (policy, sampled), blocks",
            format!("{}, {}, {}", r.k_policy, r.k, r.blocks_per_node),
        ),
        ("detected", format!("{} of {}", r.detected, r.jobs)),
        ("measured detection", pct(r.measured_detection)),
        (
            "99 % Wilson interval",
            format!("{} – {}", pct(r.ci99[0]), pct(r.ci99[1])),
        ),
        ("predicted mean 1 − (1 − q)^k", pct(r.predicted_detection)),
        ("prediction inside interval", r.agrees.to_string()),
        (
            "forgery sampled by a first check",
            format!(
                "{} ({}; prediction inside its interval: {})",
                r.forged_sampled,
                pct(r.forged_sampled_rate),
                r.sampling_agrees
            ),
        ),
        (
            "sampled forged blocks (match/close/far)",
            format!(
                "{}/{}/{}; mean diverged {:.0} ppm, ꟻLIP mean {:.0} ppm",
                r.forged_blocks.bands.r#match,
                r.forged_blocks.bands.close,
                r.forged_blocks.bands.far,
                r.forged_blocks.mean_diverged_ppm,
                r.forged_blocks.mean_flip_mean_ppm
            ),
        ),
        (
            "their checks' aggregates (m/c/a/f)",
            format!(
                "{}/{}/{}/{}; mean diverged {:.0} ppm",
                r.forged_first_aggregates.bands.r#match,
                r.forged_first_aggregates.bands.close,
                r.forged_first_aggregates.bands.ambiguous,
                r.forged_first_aggregates.bands.far,
                r.forged_first_aggregates.mean_diverged_ppm
            ),
        ),
        ("cheaters inconclusive", r.cheater_inconclusive.to_string()),
        (
            "forged tiles accepted",
            format!("{} of {}", r.forged_tiles_accepted, r.forged_tiles),
        ),
        (
            "honest false rejects",
            format!(
                "{} ({} fail, {} inconclusive of {} node-rounds)",
                pct(r.honest_false_rejects),
                r.honest_fails,
                r.honest_inconclusive,
                r.honest_node_rounds
            ),
        ),
        (
            "escalations",
            format!("{} ({} honest)", r.escalations, r.honest_escalations),
        ),
        (
            "verification cost",
            format!(
                "{:.4} ({} pixel-samples re-rendered / {} rendered, per spp)",
                r.verification_cost, r.rerendered_pixels, r.rendered_pixels
            ),
        ),
        (
            "bands (match/close/ambiguous/far)",
            format!(
                "{}/{}/{}/{}",
                r.bands.r#match, r.bands.close, r.bands.ambiguous, r.bands.far
            ),
        ),
        (
            "ledger",
            format!(
                "total {}; paid {}, released {}, slashed {} ({} from cheaters), refunded {}",
                r.ledger.total,
                r.ledger.paid_on_pass,
                r.ledger.released,
                r.ledger.slashed,
                r.ledger.slashed_cheaters,
                r.ledger.refunded
            ),
        ),
        (
            "time",
            format!(
                "{:.2} s on {} threads ({:.0} jobs/s)",
                r.elapsed_s, r.threads, r.jobs_per_s
            ),
        ),
    ];
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in rows {
        writeln!(w, "{k:<width$}  {v}")?;
    }
    Ok(())
}
