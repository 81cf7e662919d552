//! The limits of one job, in one place: how large a frame, how many samples, bounces and
//! frames, and what tile and batch sizes a job may ask for. `tessera render`, `tessera
//! submit`, the coordinator's flags, its API and its service all check against these
//! (a job that `render` accepts is one the farm accepts, and the other way round); the
//! scene loader's own budget is the renderer's.

use std::ops::RangeInclusive;

/// Largest image edge (width or height) in pixels.
pub const MAX_EDGE: u32 = 16_384;
/// Most samples per pixel.
pub const MAX_SPP: u32 = 1 << 16;
/// Most bounces (Blender's own maximum); the renderer's loop is bounded by it.
pub const MAX_BOUNCES: u32 = 1024;
/// Most frames in one job.
pub const MAX_FRAMES: u32 = 100_000;
/// Tile edges a job may use. Tiles under 8 pixels would make a task, a leaf and a
/// message of every few pixels.
pub const TILE_SIZE: RangeInclusive<u32> = 8..=4096;
/// Tiles per task (one signed batch).
pub const BATCH_SIZE: RangeInclusive<u32> = 1..=1024;

/// Why a frame range is refused, if it is: `last` before `first`, or more than
/// [`MAX_FRAMES`] frames.
pub fn check_frames(first: u32, last: u32) -> Result<(), String> {
    if last < first {
        return Err(format!(
            "frames {first}..{last}: the last frame is before the first"
        ));
    }
    if last - first >= MAX_FRAMES {
        return Err(format!(
            "frames {first}..{last}: at most {MAX_FRAMES} frames per job"
        ));
    }
    Ok(())
}

/// A frame range as the `--frames` flag gives it, `A..B` (inclusive) or a single frame
/// `A`, checked by [`check_frames`]; the error says which part is wrong.
pub fn parse_frames(s: &str) -> Result<(u32, u32), String> {
    let parse = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|e| format!("{x:?} is not a frame number: {e}"))
    };
    let (first, last) = match s.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(s)?, parse(s)?),
    };
    check_frames(first, last)?;
    Ok((first, last))
}

/// Why a frame size, sample count or bounce limit is refused, if it is, naming the
/// flags of `render`, `submit`, `bench render` and `calibrate` that set them.
pub fn check_render_flags(
    width: u32,
    height: u32,
    spp: u32,
    max_bounces: u32,
) -> Result<(), String> {
    if width == 0 || height == 0 || width > MAX_EDGE || height > MAX_EDGE {
        return Err(format!(
            "--width/--height {width}x{height}: each must be 1..={MAX_EDGE}"
        ));
    }
    if spp == 0 || spp > MAX_SPP {
        return Err(format!("--spp {spp}: must be 1..={MAX_SPP}"));
    }
    if max_bounces > MAX_BOUNCES {
        return Err(format!(
            "--max-bounces {max_bounces}: at most {MAX_BOUNCES}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ranges_are_bounded() {
        assert_eq!(check_frames(0, 0), Ok(()));
        assert_eq!(check_frames(5, MAX_FRAMES + 4), Ok(()));
        assert!(check_frames(5, MAX_FRAMES + 5)
            .unwrap_err()
            .contains("at most 100000 frames"));
        assert!(check_frames(3, 2).unwrap_err().contains("before the first"));
    }

    #[test]
    fn frame_ranges_parse_from_one_frame_or_a_range() {
        assert_eq!(parse_frames("7"), Ok((7, 7)));
        assert_eq!(parse_frames(" 2 .. 5"), Ok((2, 5)));
        let e = parse_frames("1..x").unwrap_err();
        assert!(e.starts_with("\"x\" is not a frame number: "), "{e}");
        assert!(parse_frames("5..2")
            .unwrap_err()
            .contains("before the first"));
    }

    #[test]
    fn render_flags_are_bounded() {
        assert_eq!(
            check_render_flags(1, MAX_EDGE, MAX_SPP, MAX_BOUNCES),
            Ok(())
        );
        let e = check_render_flags(0, 8, 1, 0).unwrap_err();
        assert_eq!(e, "--width/--height 0x8: each must be 1..=16384");
        let e = check_render_flags(8, 8, MAX_SPP + 1, 0).unwrap_err();
        assert!(e.starts_with("--spp 65537:"), "{e}");
        let e = check_render_flags(8, 8, 1, MAX_BOUNCES + 1).unwrap_err();
        assert_eq!(e, "--max-bounces 1025: at most 1024");
    }
}
