//! The calibration report as people read it (`tessera calibrate` without `--json`):
//! classes, honest pairs, thresholds, margins, bands and what was left out of the
//! corpus, written to any [`Write`].

use crate::calibrate::{
    band_name, decision_name, limit, CheatMargin, HonestMargin, Report, HONEST, METRICS, PSNR,
};
use std::collections::BTreeMap;
use std::io::{self, Write};
use tessera_protocol::tolerance::Limits;

/// A metric value as people read it: ppm as a percentage or fraction, PSNR in dB.
fn show(i: usize, v: u32) -> String {
    match i {
        0 => format!("{:.3} %", f64::from(v) / 1e4),
        PSNR => format!("{:.2} dB", f64::from(v) / 100.0),
        _ => format!("{:.4}", f64::from(v) / 1e6),
    }
}

fn show_limits(l: &Limits) -> String {
    (0..4)
        .map(|i| format!("{} {}", METRICS[i], show(i, limit(l, i))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write the calibration report `r` as the tables `tessera calibrate` prints.
pub fn write_table(w: &mut impl Write, r: &Report) -> io::Result<()> {
    let s = &r.settings;
    writeln!(
        w,
        "calibration: {} scene(s), {}x{}, {} spp, {}-pixel tiles, {} bounces, seed {} ({:.0} s)",
        r.scenes.len(),
        s.width,
        s.height,
        s.spp,
        s.tile,
        s.max_bounces,
        s.seed,
        r.runtime_s
    )?;
    writeln!(w, "\nclasses (the first commits the cheats)")?;
    for c in &r.classes {
        writeln!(
            w,
            "  {:<9} id {}  {}  [{:.0} s]",
            c.name,
            &c.id[..12],
            c.class,
            c.gpu_init_s + c.render_s
        )?;
    }
    writeln!(w, "\nhonest renders, class against class")?;
    for p in &r.class_pairs {
        let note = match (p.same_id, p.byte_identical == p.tiles) {
            (true, false) => "  SAME class id, different bytes: a class-definition defect",
            (false, true) => "  different ids, identical bytes",
            _ => "",
        };
        writeln!(
            w,
            "  {} / {}: {}/{} tiles byte-identical{}{}",
            p.a,
            p.b,
            p.byte_identical,
            p.tiles,
            if p.differing_scenes.is_empty() {
                String::new()
            } else {
                format!(" (differ in {})", p.differing_scenes.join(", "))
            },
            note
        )?;
    }
    let t = &r.default_tolerance;
    writeln!(w, "\nthresholds (Tolerance::default)")?;
    writeln!(w, "  pass  {}", show_limits(&t.pass))?;
    writeln!(w, "  fail  {}", show_limits(&t.fail))?;
    match (&r.derived, &r.derive_error) {
        // `block_far` is compared in the blocks' section.
        (Some(d), _) if d.pass == t.pass && d.fail == t.fail => {
            writeln!(w, "  derived from this run: the same")?
        }
        (Some(d), _) => {
            writeln!(w, "  derived from this run: DIFFERENT")?;
            writeln!(w, "    pass  {}", show_limits(&d.pass))?;
            writeln!(w, "    fail  {}", show_limits(&d.fail))?;
        }
        (None, Some(e)) => writeln!(w, "  derived from this run: none: {e}")?,
        (None, None) => {}
    }
    writeln!(w, "\nhonest pairs: worst value against the pass limit")?;
    write_honest(w, &r.margins.honest, "pass")?;
    writeln!(
        w,
        "\nforgeries: the least separated one per cheat, its best metric against the fail limit"
    )?;
    write_cheats(w, &r.margins.cheats, "pairs")?;
    let mut bands: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for k in &r.summary {
        for (b, n) in &k.bands {
            let kind = if k.kind == HONEST {
                "honest"
            } else {
                "forgeries"
            };
            *bands.entry((kind, b.as_str())).or_insert(0) += n;
        }
    }
    writeln!(w, "\nbands under the defaults")?;
    for ((kind, band), n) in &bands {
        writeln!(w, "  {kind:<9} {band:<9} {n}")?;
    }
    if !r.not_forged.is_empty() {
        writeln!(w,
            "\nleft out of the corpus ({} cheat instances change fewer than {:.0} % of their pixels):",
            r.not_forged.len(),
            f64::from(r.forgery_min_changed_ppm) / 1e4
        )?;
        for n in &r.not_forged {
            let bands: Vec<&str> = n.bands.iter().map(|b| band_name(*b)).collect();
            writeln!(
                w,
                "  {:<20} {:<12} {:<16} {}  bands {}",
                n.scene,
                n.tile.to_string(),
                n.kind,
                if n.byte_identical {
                    "byte-identical".to_string()
                } else {
                    format!("{:.2} % changed", f64::from(n.changed_ppm) / 1e4)
                },
                bands.join("/")
            )?;
        }
    }
    writeln!(
        w,
        "\n{}",
        if r.separated {
            "SEPARATED: the defaults pass every honest pair and reject every forgery"
        } else {
            "NOT SEPARATED: the defaults misjudge some pair (see the bands above)"
        }
    )?;
    write_blocks(w, r)
}

/// Per metric, the worst honest value against its limit (`name`: pass or far).
fn write_honest(w: &mut impl Write, margins: &[HonestMargin], name: &str) -> io::Result<()> {
    for (i, h) in margins.iter().enumerate() {
        let worst = h.worst.map_or("all identical".into(), |w| show(i, w));
        let margin = match (h.db, h.ratio) {
            (Some(db), _) => format!("{db:.1} dB"),
            (None, Some(x)) => format!("x{x:.1}"),
            (None, None) => "unbounded".into(),
        };
        writeln!(
            w,
            "  {:<14} worst {:<14} {name} {:<12} margin {margin}",
            h.metric,
            worst,
            show(i, h.pass)
        )?;
    }
    Ok(())
}

/// Per cheat, the least separated forgery's best metric against its limit (`what`: the
/// unit counted).
fn write_cheats(w: &mut impl Write, margins: &[CheatMargin], what: &str) -> io::Result<()> {
    for c in margins {
        let i = METRICS.iter().position(|m| *m == c.metric).unwrap_or(0);
        let margin =
            c.db.map_or(format!("x{:.1}", c.ratio), |db| format!("{db:.1} dB"));
        writeln!(
            w,
            "  {:<16} {:>5} {what:<6} {:<14} {:<12} limit {:<12} margin {:<9} ({} {})",
            c.kind,
            c.pairs,
            c.metric,
            show(i, c.value),
            show(i, c.fail),
            margin,
            c.scene,
            c.tile
        )?;
    }
    Ok(())
}

/// `name n, name n, …` of a count per name.
fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The block checks: per-block far limits, honest envelope, checks and margins.
fn write_blocks(w: &mut impl Write, r: &Report) -> io::Result<()> {
    let b = &r.blocks;
    writeln!(
        w,
        "\nblocks ({0}x{0}): checks of k = {1}, {2} samples per scene, pair and k, escalated x{3}",
        b.block_size,
        b.ks.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        b.seeds,
        b.escalation_multiplier
    )?;
    writeln!(
        w,
        "  far (block_far)  {}",
        show_limits(&b.default_block_far)
    )?;
    match (&b.derived, &b.derive_error) {
        (Some(d), _) if *d == b.default_block_far => {
            writeln!(w, "  derived from this run: the same")?
        }
        (Some(d), _) => writeln!(w, "  derived from this run: DIFFERENT: {}", show_limits(d))?,
        (None, Some(e)) => writeln!(w, "  derived from this run: none: {e}")?,
        (None, None) => {}
    }
    writeln!(
        w,
        "\nhonest blocks: worst value against the per-block far limit"
    )?;
    write_honest(w, &b.margins.honest_blocks, "far ")?;
    writeln!(
        w,
        "\nhonest checks: worst first-check aggregate against the pass limit"
    )?;
    write_honest(w, &b.margins.honest_aggregates, "pass")?;
    writeln!(
        w,
        "\nper kind: blocks (byte-equal / forged / forgeries of >= {:.0} % / far); checks of \
         whole forged frames: caught of counted, escalated decisions; one forged block alone",
        f64::from(b.block_forgery_min_changed_ppm) / 1e4
    )?;
    for k in &b.kinds {
        let checks: Vec<String> = k
            .checks
            .iter()
            .map(|c| {
                if k.kind == HONEST {
                    format!(
                        "k {}: {} checks, first: {}",
                        c.k,
                        c.checks,
                        counts(&c.first)
                    )
                } else {
                    format!(
                        "k {}: caught {}/{} (escalated: {}){}",
                        c.k,
                        c.caught,
                        c.checks,
                        counts(&c.escalated),
                        if c.not_forged > 0 {
                            format!(", {} not forged", c.not_forged)
                        } else {
                            String::new()
                        }
                    )
                }
            })
            .collect();
        writeln!(
            w,
            "  {:<16} {:>6} blocks ({} / {} / {} / {})  {}{}",
            k.kind,
            k.blocks,
            k.bytes_equal,
            k.forged,
            k.block_forgeries,
            k.far_forgeries,
            checks.join("; "),
            if k.kind == HONEST {
                String::new()
            } else {
                format!(
                    "; alone: {} (forgeries: {})",
                    counts(&k.alone),
                    counts(&k.alone_forgeries)
                )
            }
        )?;
    }
    writeln!(
        w,
        "\nblock forgeries: the least separated one per cheat, its best metric against the far limit"
    )?;
    write_cheats(w, &b.margins.cheat_blocks, "blocks")?;
    writeln!(
        w,
        "\nforged frames: the least separated first-check aggregate per cheat against the fail limit"
    )?;
    write_cheats(w, &b.margins.cheat_aggregates, "checks")?;
    if b.misjudged_count > 0 {
        writeln!(w, "\nmisjudged checks ({}):", b.misjudged_count)?;
        for c in &b.misjudged {
            writeln!(
                w,
                "  {:<20} {:<16} {} by {} k {} seed {}: {} then {} (aggregate {} / {}, far blocks {} / {}, {:.2} % changed)",
                c.scene,
                c.kind,
                c.node,
                c.verifier,
                c.k,
                c.seed,
                decision_name(c.decision[0]),
                decision_name(c.decision[1]),
                band_name(c.aggregate_band[0]),
                band_name(c.aggregate_band[1]),
                c.far_blocks[0],
                c.far_blocks[1],
                f64::from(c.changed_ppm) / 1e4
            )?;
        }
    }
    writeln!(
        w,
        "\n{}",
        if b.separated {
            "BLOCKS SEPARATED: every honest check passes, every forged frame and block forgery is caught"
        } else {
            "BLOCKS NOT SEPARATED: the defaults misjudge some check (see above)"
        }
    )
}
