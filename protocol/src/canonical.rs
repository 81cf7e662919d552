//! Canonical bytes: tile hashes, commitment leaves, and the field writer every signed
//! statement uses. Fixed-width little-endian fields, no serde in between.

use crate::types::{Digest, TileRect};

/// Derive-key context of commitment leaves (v3: the tile hash is the root over the
/// tile's blocks, [`crate::blocks::tile_hash`]).
pub const LEAF_CONTEXT: &str = "tessera v3 tile leaf";

/// A job id: 16 random bytes chosen by the coordinator at submit time.
pub type JobId = [u8; 16];

/// Everything a commitment leaf binds a tile to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafInput {
    /// The job the tile belongs to.
    pub job_id: JobId,
    /// Frame number.
    pub frame: u32,
    /// Tile rectangle in global pixels.
    pub rect: TileRect,
    /// Samples per pixel the tile claims.
    pub spp: u32,
    /// Determinism class id of the renderer that produced the bytes.
    pub class_id: Digest,
    /// The tile's hash: the root over its blocks' hashes ([`crate::blocks::tile_hash`]).
    pub tile_hash: Digest,
}

impl LeafInput {
    /// The leaf: BLAKE3 derive-key [`LEAF_CONTEXT`] over job id (16 bytes), frame, x, y,
    /// w, h, spp (u32 LE each), class id (32 bytes) and tile hash (32 bytes).
    pub fn leaf(&self) -> Digest {
        let mut w = FieldWriter::new();
        w.bytes(&self.job_id)
            .u32(self.frame)
            .u32(self.rect.x)
            .u32(self.rect.y)
            .u32(self.rect.w)
            .u32(self.rect.h)
            .u32(self.spp)
            .bytes(&self.class_id)
            .bytes(&self.tile_hash);
        blake3::derive_key(LEAF_CONTEXT, &w.finish())
    }
}

/// Writes fields in canonical form: integers little-endian and fixed width, byte strings
/// of variable length prefixed by their u32 length, fixed arrays as they are.
#[derive(Default)]
pub struct FieldWriter {
    buf: Vec<u8>,
}

impl FieldWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// A fixed-width byte array, written as is.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// A variable-length string: u32 LE length, then UTF-8 bytes.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }
    /// A u8.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// A u32, little-endian.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A u64, little-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// An i64, little-endian two's complement.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// An optional string: 0 for none, or 1 then the string.
    pub fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.u8(0),
            Some(s) => self.u8(1).str(s),
        }
    }
    /// A list of 32-byte digests: u32 count, then each digest.
    pub fn digests(&mut self, ds: &[Digest]) -> &mut Self {
        self.u32(ds.len() as u32);
        for d in ds {
            self.bytes(d);
        }
        self
    }
    /// A list of u32: u32 count, then each value.
    pub fn u32s(&mut self, vs: &[u32]) -> &mut Self {
        self.u32(vs.len() as u32);
        for v in vs {
            self.u32(*v);
        }
        self
    }
    /// The bytes written so far.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// How many pixels canonical bytes hold (8 bytes each).
pub fn pixels(canonical: &[u8]) -> u64 {
    (canonical.len() / crate::types::BYTES_PER_PIXEL) as u64
}

/// Convert canonical tile bytes to linear f32 RGBA values.
pub fn tile_to_f32(canonical: &[u8]) -> Vec<f32> {
    canonical
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// Convert linear f32 RGBA values to canonical bytes (round to nearest even half).
pub fn f32_to_tile(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for v in values {
        out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
    }
    out
}

/// Cut `rect` out of a full frame's canonical bytes (`width` pixels per row).
/// Returns `None` if the rectangle does not fit the frame.
pub fn crop(frame: &[u8], width: u32, height: u32, rect: TileRect) -> Option<Vec<u8>> {
    if !rect.fits_in(width, height) || frame.len() != width as usize * height as usize * 8 {
        return None;
    }
    let row = rect.w as usize * 8;
    let mut out = Vec::with_capacity(rect.canonical_len());
    for y in rect.y..rect.y + rect.h {
        let start = (y as usize * width as usize + rect.x as usize) * 8;
        out.extend_from_slice(&frame[start..start + row]);
    }
    Some(out)
}

/// Paste a tile's canonical bytes into a full frame (the inverse of [`crop`]).
/// Returns `false` (and changes nothing) if sizes do not fit.
pub fn paste(frame: &mut [u8], width: u32, height: u32, rect: TileRect, tile: &[u8]) -> bool {
    if !rect.fits_in(width, height)
        || frame.len() != width as usize * height as usize * 8
        || tile.len() != rect.canonical_len()
    {
        return false;
    }
    let row = rect.w as usize * 8;
    for (i, y) in (rect.y..rect.y + rect.h).enumerate() {
        let start = (y as usize * width as usize + rect.x as usize) * 8;
        frame[start..start + row].copy_from_slice(&tile[i * row..(i + 1) * row]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LeafInput {
        LeafInput {
            job_id: [7; 16],
            frame: 3,
            rect: TileRect {
                x: 64,
                y: 0,
                w: 64,
                h: 32,
            },
            spp: 16,
            class_id: [1; 32],
            tile_hash: [2; 32],
        }
    }

    #[test]
    fn leaf_binds_every_field() {
        let base = input().leaf();
        let mut variants = Vec::new();
        let mut i = input();
        i.job_id[15] ^= 1;
        variants.push(i);
        let mut i = input();
        i.frame += 1;
        variants.push(i);
        let mut i = input();
        i.rect.x += 1;
        variants.push(i);
        let mut i = input();
        i.rect.y += 1;
        variants.push(i);
        let mut i = input();
        i.rect.w += 1;
        variants.push(i);
        let mut i = input();
        i.rect.h += 1;
        variants.push(i);
        let mut i = input();
        i.spp += 1;
        variants.push(i);
        let mut i = input();
        i.class_id[0] ^= 1;
        variants.push(i);
        let mut i = input();
        i.tile_hash[31] ^= 1;
        variants.push(i);
        for v in variants {
            assert_ne!(v.leaf(), base, "{v:?}");
        }
    }

    #[test]
    fn leaf_is_domain_separated_from_plain_hash() {
        let i = input();
        let mut w = FieldWriter::new();
        w.bytes(&i.job_id);
        assert_ne!(i.leaf(), *blake3::hash(&w.finish()).as_bytes());
    }

    #[test]
    fn half_round_trip_is_exact() {
        // Every finite half value (NaN payloads are not preserved by f32 conversion).
        let bytes: Vec<u8> = (0u16..=u16::MAX)
            .filter(|&v| half::f16::from_bits(v).is_finite())
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(f32_to_tile(&tile_to_f32(&bytes)), bytes);
    }
}
