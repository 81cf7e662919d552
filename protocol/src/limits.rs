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
}
