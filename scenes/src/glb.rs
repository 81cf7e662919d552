//! The GLB container: a 12-byte header followed by a JSON chunk and an optional BIN chunk.

/// `"glTF"` read as a little-endian u32.
pub const GLB_MAGIC: u32 = 0x4654_6C67;
/// Container version.
pub const GLB_VERSION: u32 = 2;
/// `"JSON"` chunk type.
pub const CHUNK_JSON: u32 = 0x4E4F_534A;
/// `"BIN\0"` chunk type.
pub const CHUNK_BIN: u32 = 0x004E_4942;

fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("GLB section over 4 GiB: the builder keeps its buffer under 3 GiB")
}

/// Wraps a JSON document and its binary buffer into GLB bytes. The JSON chunk is padded
/// with spaces and the BIN chunk with zeros to 4-byte multiples; an empty `bin` writes
/// no BIN chunk.
pub(crate) fn write(json: &[u8], bin: &[u8]) -> Vec<u8> {
    let json_len = padded(json.len());
    let bin_len = padded(bin.len());
    let mut total = 12 + 8 + json_len;
    if !bin.is_empty() {
        total += 8 + bin_len;
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&GLB_MAGIC.to_le_bytes());
    out.extend_from_slice(&GLB_VERSION.to_le_bytes());
    out.extend_from_slice(&len_u32(total).to_le_bytes());

    out.extend_from_slice(&len_u32(json_len).to_le_bytes());
    out.extend_from_slice(&CHUNK_JSON.to_le_bytes());
    out.extend_from_slice(json);
    out.resize(out.len() + json_len - json.len(), b' ');

    if !bin.is_empty() {
        out.extend_from_slice(&len_u32(bin_len).to_le_bytes());
        out.extend_from_slice(&CHUNK_BIN.to_le_bytes());
        out.extend_from_slice(bin);
        out.resize(out.len() + bin_len - bin.len(), 0);
    }
    debug_assert_eq!(out.len(), total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_json_with_spaces_and_bin_with_zeros() {
        let glb = write(b"{}", &[1, 2, 3, 4, 5]);
        assert_eq!(&glb[0..4], b"glTF");
        assert_eq!(u32::from_le_bytes(glb[8..12].try_into().unwrap()), 40);
        assert_eq!(glb.len(), 40);
        assert_eq!(u32::from_le_bytes(glb[12..16].try_into().unwrap()), 4);
        assert_eq!(&glb[16..20], b"JSON");
        assert_eq!(&glb[20..24], b"{}  ");
        assert_eq!(u32::from_le_bytes(glb[24..28].try_into().unwrap()), 8);
        assert_eq!(&glb[28..32], b"BIN\0");
        assert_eq!(&glb[32..40], &[1, 2, 3, 4, 5, 0, 0, 0]);
    }

    #[test]
    fn no_bin_chunk_without_data() {
        let glb = write(b"{}", &[]);
        assert_eq!(glb.len(), 24);
    }
}
