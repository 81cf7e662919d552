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

/// Why a `--frames` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramesError {
    /// A part is not a frame number.
    #[error("{text:?} is not a frame number: {source}")]
    NotANumber {
        /// The part as given.
        text: String,
        /// Why it does not parse.
        source: std::num::ParseIntError,
    },
    /// The range is refused.
    #[error(transparent)]
    Range(#[from] FrameRangeError),
}

/// A frame range as the `--frames` flag gives it, `A..B` (inclusive) or a single frame
/// `A`, checked by [`check_frames`]; the error says which part is wrong.
pub fn parse_frames(s: &str) -> Result<(u32, u32), FramesError> {
    let parse = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|source| FramesError::NotANumber {
                text: x.into(),
                source,
            })
    };
    let (first, last) = match s.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(s)?, parse(s)?),
    };
    check_frames(first, last)?;
    Ok((first, last))
}

/// Why a frame size, sample count or bounce limit is refused, naming the flags of
/// `render`, `submit`, `bench render` and `calibrate` that set them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderFlagsError {
    /// A frame edge is 0 or above [`MAX_EDGE`].
    #[error("--width/--height {width}x{height}: each must be 1..={MAX_EDGE}")]
    Size {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// The sample count is 0 or above [`MAX_SPP`].
    #[error("--spp {0}: must be 1..={MAX_SPP}")]
    Spp(u32),
    /// The bounce limit is above [`MAX_BOUNCES`].
    #[error("--max-bounces {0}: at most {MAX_BOUNCES}")]
    Bounces(u32),
}

/// Why a frame size, sample count or bounce limit is refused, if it is.
pub fn check_render_flags(
    width: u32,
    height: u32,
    spp: u32,
    max_bounces: u32,
) -> Result<(), RenderFlagsError> {
    if width == 0 || height == 0 || width > MAX_EDGE || height > MAX_EDGE {
        return Err(RenderFlagsError::Size { width, height });
    }
    if spp == 0 || spp > MAX_SPP {
        return Err(RenderFlagsError::Spp(spp));
    }
    if max_bounces > MAX_BOUNCES {
        return Err(RenderFlagsError::Bounces(max_bounces));
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

    #[test]
    fn frame_ranges_parse_from_one_frame_or_a_range() {
        assert_eq!(parse_frames("7"), Ok((7, 7)));
        assert_eq!(parse_frames(" 2 .. 5"), Ok((2, 5)));
        let e = parse_frames("1..x").unwrap_err();
        assert!(matches!(&e, FramesError::NotANumber { text, .. } if text == "x"));
        assert!(
            e.to_string().starts_with("\"x\" is not a frame number: "),
            "{e}"
        );
        assert_eq!(
            parse_frames("5..2"),
            Err(FramesError::Range(FrameRangeError::Reversed {
                first: 5,
                last: 2
            }))
        );
    }

    #[test]
    fn render_flags_are_bounded() {
        assert_eq!(
            check_render_flags(1, MAX_EDGE, MAX_SPP, MAX_BOUNCES),
            Ok(())
        );
        let e = check_render_flags(0, 8, 1, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--width/--height 0x8: each must be 1..=16384"
        );
        let e = check_render_flags(8, 8, MAX_SPP + 1, 0).unwrap_err();
        assert_eq!(e, RenderFlagsError::Spp(MAX_SPP + 1));
        assert!(e.to_string().starts_with("--spp 65537:"), "{e}");
        let e = check_render_flags(8, 8, 1, MAX_BOUNCES + 1).unwrap_err();
        assert_eq!(e.to_string(), "--max-bounces 1025: at most 1024");
    }
}
