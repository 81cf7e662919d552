//! A [`Comparison`] as `tessera compare` prints it without `--json`.

use crate::compare::Comparison;
use std::io::{self, Write};

/// Write the size, the exposure match (when `exposure_match`), PSNR and FLIP of `c`.
pub fn write_text(w: &mut impl Write, c: &Comparison, exposure_match: bool) -> io::Result<()> {
    let psnr = c
        .psnr_db
        .map_or_else(|| "inf".to_string(), |p| format!("{p:.2}"));
    writeln!(w, "size        {}x{}", c.width, c.height)?;
    if exposure_match {
        writeln!(
            w,
            "exposure    B x {:.6} (mean A {:.6}, mean B {:.6})",
            c.exposure_scale, c.mean_a, c.mean_b
        )?;
    }
    writeln!(
        w,
        "PSNR        {psnr} dB (linear RGB, peak 1.0; MSE {:.6e})",
        c.mse
    )?;
    writeln!(
        w,
        "FLIP        mean {:.6}, p99 {:.6}, max {:.6} (LDR, sRGB 8-bit, 67.02 ppd)",
        c.flip_mean, c.flip_p99, c.flip_max
    )
}
