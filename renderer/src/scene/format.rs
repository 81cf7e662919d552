//! Byte-level formats read without trusting them: the GLB container and image headers.

/// The two payloads of a GLB file.
pub(crate) struct Glb<'a> {
    pub json: &'a [u8],
    pub bin: Option<&'a [u8]>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Split a GLB container into its JSON chunk and first BIN chunk (unknown chunks are
/// skipped, as the specification asks). Every length is checked against the real size.
pub(crate) fn parse_glb(bytes: &[u8]) -> Result<Glb<'_>, String> {
    if bytes.len() < 12 {
        return Err(format!(
            "truncated GLB: {} bytes, the header alone needs 12",
            bytes.len()
        ));
    }
    let version = read_u32(bytes, 4).unwrap_or(0);
    if version != 2 {
        return Err(format!("GLB version {version} is not supported (only 2)"));
    }
    let declared = read_u32(bytes, 8).unwrap_or(0) as usize;
    if declared > bytes.len() {
        return Err(format!(
            "truncated GLB: the header says {declared} bytes, the file has {}",
            bytes.len()
        ));
    }
    if declared < 20 {
        return Err(format!(
            "GLB header length {declared} is too small to hold a JSON chunk"
        ));
    }
    let body = &bytes[..declared];
    let mut at = 12usize;
    let mut json = None;
    let mut bin = None;
    let mut chunk_idx = 0usize;
    while at < body.len() {
        let (Some(len), Some(kind)) = (read_u32(body, at), read_u32(body, at + 4)) else {
            return Err(format!(
                "truncated GLB: chunk {chunk_idx} header at byte {at} is cut off"
            ));
        };
        let start = at + 8;
        let end = start
            .checked_add(len as usize)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| {
                format!(
                    "truncated GLB: chunk {chunk_idx} says {len} bytes, {} remain",
                    body.len() - start
                )
            })?;
        let data = &body[start..end];
        match (&kind.to_le_bytes(), chunk_idx) {
            (b"JSON", 0) => json = Some(data),
            (_, 0) => return Err("the first GLB chunk is not JSON".to_string()),
            (b"BIN\0", _) if bin.is_none() => bin = Some(data),
            _ => {}
        }
        at = end;
        chunk_idx += 1;
    }
    let json = json.ok_or_else(|| "GLB without a JSON chunk".to_string())?;
    Ok(Glb { json, bin })
}

/// Width and height of a PNG or JPEG image from its header, or `None` for other formats.
pub(crate) fn image_size(bytes: &[u8]) -> Option<Result<(u32, u32), String>> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let size = (|| {
            if bytes.get(12..16)? != b"IHDR" {
                return None;
            }
            let w = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
            let h = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
            Some((w, h))
        })();
        return Some(size.ok_or_else(|| "truncated PNG header".to_string()));
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        return Some(jpeg_size(bytes).ok_or_else(|| "no JPEG frame header found".to_string()));
    }
    None
}

fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2usize;
    loop {
        // Skip fill bytes before a marker.
        while *bytes.get(at)? == 0xff && *bytes.get(at + 1)? == 0xff {
            at += 1;
        }
        if *bytes.get(at)? != 0xff {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xd8 || marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
            at += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let is_frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame {
            let h = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            let w = u16::from_be_bytes([*bytes.get(at + 7)?, *bytes.get(at + 8)?]);
            return Some((u32::from(w), u32::from(h)));
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
        assert!(parse_glb(b"glTF").is_err());
        let mut glb = b"glTF".to_vec();
        glb.extend_from_slice(&2u32.to_le_bytes());
        glb.extend_from_slice(&40u32.to_le_bytes());
        glb.extend_from_slice(&100u32.to_le_bytes());
        glb.extend_from_slice(b"JSON");
        glb.resize(40, b' ');
        let err = parse_glb(&glb).err().unwrap();
        assert!(err.contains("chunk 0 says 100 bytes"), "{err}");
    }

    #[test]
    fn reads_png_size() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(image_size(&png).unwrap().unwrap(), (640, 480));
        assert!(image_size(b"GIF89a").is_none());
    }
}
