//! Byte-level formats read without trusting them: the GLB container and image headers.

use std::ops::Range;

/// Random access to untrusted bytes: a slice in memory, or a region of a file read in
/// small pieces ([`super::source::Reader`]), so that a header can be parsed without
/// holding the data.
pub(crate) trait ReadAt {
    /// Copy the bytes at `offset..` into `buf`; returns how many there were (fewer than
    /// `buf.len()` at the end of the data, or after a read error the reader keeps).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> usize;
}

impl ReadAt for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> usize {
        let start = usize::try_from(offset).map_or(self.len(), |o| o.min(self.len()));
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        n
    }
}

/// The two payloads of a GLB file.
pub(crate) struct Glb<'a> {
    pub json: &'a [u8],
    pub bin: Option<&'a [u8]>,
}

/// Where the payloads of a GLB file lie (byte ranges of the file).
pub(crate) struct GlbLayout {
    pub json: Range<u64>,
    pub bin: Option<Range<u64>>,
}

/// The little-endian u32 at `at`, if it lies inside the first `end` bytes.
fn read_u32(src: &mut dyn ReadAt, at: u64, end: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    (at.checked_add(4)? <= end && src.read_at(at, &mut b) == 4).then(|| u32::from_le_bytes(b))
}

/// Why a GLB container cannot be split into its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GlbError {
    /// Fewer bytes than the 12-byte header.
    #[error("truncated GLB: {len} bytes, the header alone needs 12")]
    NoHeader {
        /// The file's length.
        len: u64,
    },
    /// A container version other than 2.
    #[error("GLB version {version} is not supported (only 2)")]
    Version {
        /// The version the header names.
        version: u32,
    },
    /// The header declares more bytes than the file has.
    #[error("truncated GLB: the header says {declared} bytes, the file has {len}")]
    Truncated {
        /// The length the header declares.
        declared: u64,
        /// The file's length.
        len: u64,
    },
    /// The declared length cannot hold a header and a chunk header.
    #[error("GLB header length {declared} is too small to hold a JSON chunk")]
    TooShort {
        /// The length the header declares.
        declared: u64,
    },
    /// A chunk header lies across the end of the container.
    #[error("truncated GLB: chunk {chunk} header at byte {at} is cut off")]
    ChunkHeaderCut {
        /// The chunk's index.
        chunk: usize,
        /// Its byte offset.
        at: u64,
    },
    /// A chunk says it is longer than what remains.
    #[error("truncated GLB: chunk {chunk} says {len} bytes, {remain} remain")]
    ChunkCut {
        /// The chunk's index.
        chunk: usize,
        /// The length it declares.
        len: u32,
        /// The bytes left in the container after its header.
        remain: u64,
    },
    /// Chunk 0 is not the JSON chunk.
    #[error("the first GLB chunk is not JSON")]
    FirstNotJson,
    /// The container holds no chunk at all.
    #[error("GLB without a JSON chunk")]
    NoJson,
}

/// Split a GLB container into its JSON chunk and first BIN chunk (unknown chunks are
/// skipped, as the specification asks). Every length is checked against the real size.
pub(crate) fn parse_glb(bytes: &[u8]) -> Result<Glb<'_>, GlbError> {
    let layout = glb_layout(bytes.len() as u64, &mut &bytes[..])?;
    let slice = |r: Range<u64>| &bytes[r.start as usize..r.end as usize];
    Ok(Glb {
        json: slice(layout.json),
        bin: layout.bin.map(slice),
    })
}

/// [`parse_glb`] for a GLB file of `len` bytes read through `src`: only the 12-byte
/// header and the chunk headers are read.
pub(crate) fn glb_layout(len: u64, src: &mut dyn ReadAt) -> Result<GlbLayout, GlbError> {
    if len < 12 {
        return Err(GlbError::NoHeader { len });
    }
    let version = read_u32(src, 4, len).unwrap_or(0);
    if version != 2 {
        return Err(GlbError::Version { version });
    }
    let declared = u64::from(read_u32(src, 8, len).unwrap_or(0));
    if declared > len {
        return Err(GlbError::Truncated { declared, len });
    }
    if declared < 20 {
        return Err(GlbError::TooShort { declared });
    }
    let body = declared;
    let mut at = 12u64;
    let mut json = None;
    let mut bin = None;
    let mut chunk_idx = 0usize;
    while at < body {
        let (Some(chunk_len), Some(kind)) = (read_u32(src, at, body), read_u32(src, at + 4, body))
        else {
            return Err(GlbError::ChunkHeaderCut {
                chunk: chunk_idx,
                at,
            });
        };
        let start = at + 8;
        let end = start
            .checked_add(u64::from(chunk_len))
            .filter(|&end| end <= body)
            .ok_or(GlbError::ChunkCut {
                chunk: chunk_idx,
                len: chunk_len,
                remain: body - start,
            })?;
        match (&kind.to_le_bytes(), chunk_idx) {
            (b"JSON", 0) => json = Some(start..end),
            (_, 0) => return Err(GlbError::FirstNotJson),
            (b"BIN\0", _) if bin.is_none() => bin = Some(start..end),
            _ => {}
        }
        at = end;
        chunk_idx += 1;
    }
    let json = json.ok_or(GlbError::NoJson)?;
    Ok(GlbLayout { json, bin })
}

/// What a PNG or JPEG header says about the image, enough to bound its decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub kind: ImageKind,
}

/// The format facts that decide how many bytes a pixel decodes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageKind {
    /// IHDR bit depth and colour type (`None` when the header stops before them).
    Png {
        bit_depth: Option<u8>,
        colour_type: Option<u8>,
    },
    /// Components of the frame (1 grey, 3 YCbCr, 4 CMYK).
    Jpeg { components: u8 },
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Why a PNG or JPEG header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    /// The PNG signature is not followed by an IHDR chunk.
    #[error("truncated PNG header")]
    TruncatedPng,
    /// The JPEG segments end (or break) before a frame header.
    #[error("no JPEG frame header found")]
    NoJpegFrame,
}

/// The header of a PNG or JPEG image, or `None` for other formats. Only the header is
/// read: the PNG IHDR chunk, or the JPEG segments up to the first frame header.
pub(crate) fn image_header(src: &mut dyn ReadAt) -> Option<Result<ImageInfo, HeaderError>> {
    let mut head = [0u8; 26];
    let n = src.read_at(0, &mut head);
    let head = &head[..n];
    if head.starts_with(PNG_MAGIC) {
        if n < 24 || &head[12..16] != b"IHDR" {
            return Some(Err(HeaderError::TruncatedPng));
        }
        let be =
            |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        return Some(Ok(ImageInfo {
            width: be(16),
            height: be(20),
            kind: ImageKind::Png {
                bit_depth: head.get(24).copied(),
                colour_type: head.get(25).copied(),
            },
        }));
    }
    if head.starts_with(&[0xff, 0xd8]) {
        return Some(jpeg_header(src).ok_or(HeaderError::NoJpegFrame));
    }
    None
}

fn jpeg_header(src: &mut dyn ReadAt) -> Option<ImageInfo> {
    let mut byte = |at: u64| {
        let mut b = [0u8; 1];
        (src.read_at(at, &mut b) == 1).then_some(b[0])
    };
    let mut at = 2u64;
    loop {
        // Skip fill bytes before a marker.
        while byte(at)? == 0xff && byte(at + 1)? == 0xff {
            at += 1;
        }
        if byte(at)? != 0xff {
            return None;
        }
        let marker = byte(at + 1)?;
        if marker == 0xd8 || marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
            at += 2;
            continue;
        }
        let len = u64::from(u16::from_be_bytes([byte(at + 2)?, byte(at + 3)?]));
        let is_frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame {
            let h = u16::from_be_bytes([byte(at + 5)?, byte(at + 6)?]);
            let w = u16::from_be_bytes([byte(at + 7)?, byte(at + 8)?]);
            let components = byte(at + 9).unwrap_or(4);
            return Some(ImageInfo {
                width: u32::from(w),
                height: u32::from(h),
                kind: ImageKind::Jpeg { components },
            });
        }
        if len < 2 {
            return None;
        }
        at = at.checked_add(2 + len)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glb_rejects_truncation_and_garbage() {
        assert_eq!(
            parse_glb(b"glTF").err(),
            Some(GlbError::NoHeader { len: 4 })
        );
        let mut glb = b"glTF".to_vec();
        glb.extend_from_slice(&2u32.to_le_bytes());
        glb.extend_from_slice(&40u32.to_le_bytes());
        glb.extend_from_slice(&100u32.to_le_bytes());
        glb.extend_from_slice(b"JSON");
        glb.resize(40, b' ');
        let err = parse_glb(&glb).err().unwrap();
        assert_eq!(
            err,
            GlbError::ChunkCut {
                chunk: 0,
                len: 100,
                remain: 20
            }
        );
        assert_eq!(
            err.to_string(),
            "truncated GLB: chunk 0 says 100 bytes, 20 remain"
        );
    }

    #[test]
    fn reads_png_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[16, 6]);
        let info = image_header(&mut &png[..]).unwrap().unwrap();
        assert_eq!((info.width, info.height), (640, 480));
        let png_kind = ImageKind::Png {
            bit_depth: Some(16),
            colour_type: Some(6),
        };
        assert_eq!(info.kind, png_kind);
        assert!(image_header(&mut &b"GIF89a"[..]).is_none());
        assert_eq!(
            image_header(&mut &png[..20]),
            Some(Err(HeaderError::TruncatedPng))
        );
    }

    #[test]
    fn reads_jpeg_frame_header_after_other_segments() {
        // SOI, an APP0 segment of 16 bytes, fill bytes, then SOF0: 8 bit, 300 x 200, 3 components.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 16];
        jpeg.extend_from_slice(&[0u8; 14]);
        jpeg.extend_from_slice(&[0xff, 0xff, 0xff, 0xc0, 0, 17, 8, 0, 200, 1, 44, 3]);
        let info = image_header(&mut &jpeg[..]).unwrap().unwrap();
        assert_eq!((info.width, info.height), (300, 200));
        assert_eq!(info.kind, ImageKind::Jpeg { components: 3 });
        let err = image_header(&mut &jpeg[..24]).unwrap().unwrap_err();
        assert_eq!(err, HeaderError::NoJpegFrame);
        assert_eq!(err.to_string(), "no JPEG frame header found");
    }
}
