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

/// Why a frame range is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameRangeError {
    /// `last` lies before `first`.
    #[error("frames {first}..{last}: the last frame is before the first")]
    Reversed {
        /// The first frame asked for.
        first: u32,
        /// The last frame asked for.
        last: u32,
    },
    /// The range holds more than [`MAX_FRAMES`] frames.
    #[error("frames {first}..{last}: at most {MAX_FRAMES} frames per job")]
    TooMany {
        /// The first frame asked for.
        first: u32,
        /// The last frame asked for.
        last: u32,
    },
}

/// Why a frame range is refused, if it is: `last` before `first`, or more than
/// [`MAX_FRAMES`] frames.
pub fn check_frames(first: u32, last: u32) -> Result<(), FrameRangeError> {
    if last < first {
        return Err(FrameRangeError::Reversed { first, last });
    }
    if last - first >= MAX_FRAMES {
        return Err(FrameRangeError::TooMany { first, last });
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
        let too_many = check_frames(5, MAX_FRAMES + 5).unwrap_err();
        assert_eq!(
            too_many,
            FrameRangeError::TooMany {
                first: 5,
                last: MAX_FRAMES + 5
            }
        );
        assert!(too_many.to_string().contains("at most 100000 frames"));
        let reversed = check_frames(3, 2).unwrap_err();
        assert_eq!(reversed, FrameRangeError::Reversed { first: 3, last: 2 });
        assert_eq!(
            reversed.to_string(),
            "frames 3..2: the last frame is before the first"
        );
    }
}
