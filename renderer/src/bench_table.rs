//! The renderer benchmark's report as people read it (`tessera bench render` without
//! `--json`): one row per scene, written to any [`Write`].

use crate::bench::Report;
use std::io::{self, Write};

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A tiled run's time and its share of the full frame's throughput, e.g. `1.234 (91 %)`.
fn of_full(secs: Option<f64>, fraction: Option<f64>) -> String {
    secs.map_or("-".into(), |t| {
        format!("{t:.3} ({:.0} %)", 100.0 * fraction.unwrap_or(0.0))
    })
}

/// Write the benchmark report `r` as the table `tessera bench render` prints.
pub fn write_table(w: &mut impl Write, r: &Report) -> io::Result<()> {
    let s = &r.settings;
    writeln!(
        w,
        "tessera bench render on {} ({} {}), {}x{}, {} spp, {} bounces, commit {}{}",
        r.device,
        r.adapter.adapter,
        r.adapter.driver_info,
        s.width,
        s.height,
        s.spp,
        s.max_bounces,
        r.git_commit
            .as_deref()
            .map_or("?", |c| &c[..c.len().min(10)]),
        if r.git_dirty == Some(true) {
            " (dirty)"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "{:<22} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>12} {:>16} {:>16} {:>6}",
        "scene",
        "triangles",
        "load ms",
        "bvh ms",
        "geo MiB",
        "tex MiB",
        "render s",
        "samples/s",
        "tiled s (of full)",
        "tasks s (of full)",
        "tiles="
    )?;
    for x in &r.scenes {
        if let Some(e) = &x.error {
            writeln!(w, "{:<22} FAILED: {e}", x.scene)?;
            continue;
        }
        writeln!(
            w,
            "{:<22} {:>10} {:>9.1} {:>9.1} {:>8} {:>8} {:>9.3} {:>12.0} {:>16} {:>16} {:>6}",
            x.scene,
            x.triangles,
            x.load_ms,
            x.bvh_build_ms,
            mib(x.geometry_bytes),
            mib(x.texture_bytes),
            x.render_s,
            x.samples_per_second,
            of_full(x.tiled_s, x.tiled_fraction),
            of_full(x.task_s, x.task_fraction),
            match (x.tiled_matches_full, x.task_matches_full) {
                (None, None) => "-",
                (a, b) if a != Some(false) && b != Some(false) => "yes",
                _ => "NO",
            },
        )?;
    }
    Ok(())
}
