//! Resolving glTF URIs safely: base64 data URIs, or relative paths inside the scene folder.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a URI's bytes come from.
pub(crate) enum UriTarget {
    /// Bytes embedded in the URI itself (`data:...;base64,...`).
    Data(Vec<u8>),
    /// A file inside the scene folder.
    File {
        /// Canonical path (checked to be inside the folder).
        path: PathBuf,
        /// The path relative to the folder as the URI names it: percent-decoded, `.`
        /// segments dropped, `/`-separated (symbolic links inside the folder not followed).
        relative: String,
    },
}

/// Why a URI was refused; the caller adds the file, field and URI.
pub(crate) struct UriRefusal(pub String);

/// Resolve `uri` against `folder` (the canonical folder of the scene file).
///
/// Allowed: `data:` URIs with base64 payloads, and relative paths whose every segment stays
/// inside `folder` (percent-decoded first, so `%2e%2e` is `..`). Refused: any other scheme
/// (`http:`, `file:`, ...), absolute paths, `..` segments, backslashes, queries, fragments,
/// and symbolic links that lead out of the folder.
pub(crate) fn resolve(uri: &str, folder: &Path, max_bytes: u64) -> Result<UriTarget, UriRefusal> {
    let refuse = |reason: &str| Err(UriRefusal(reason.to_string()));
    if uri.is_empty() {
        return refuse("empty uri");
    }
    if uri.len() >= 5 && uri[..5].eq_ignore_ascii_case("data:") {
        return decode_data_uri(uri, max_bytes).map(UriTarget::Data);
    }
    if let Some(colon) = uri.find(':') {
        let slash = uri.find('/').unwrap_or(usize::MAX);
        if colon < slash {
            let scheme = &uri[..colon];
            return Err(UriRefusal(format!(
                "uri scheme {scheme:?} is not allowed; only data: URIs and relative paths \
                 inside the scene folder are"
            )));
        }
    }
    if uri.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    if uri.contains('\\') {
        return refuse("backslashes are not allowed in uris");
    }
    if uri.contains('?') || uri.contains('#') {
        return refuse("queries and fragments are not allowed in uris");
    }
    let decoded = percent_decode(uri)?;
    if decoded.contains('\\') || decoded.contains('\0') || decoded.contains(':') {
        return refuse("encoded backslash, colon or NUL is not allowed");
    }
    if decoded.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    let mut path = folder.to_path_buf();
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" => return refuse("empty path segment"),
            "." => {}
            ".." => return refuse("points outside the scene folder"),
            s => {
                path.push(s);
                segments.push(s);
            }
        }
    }
    let canonical =
        std::fs::canonicalize(&path).map_err(|e| UriRefusal(format!("cannot open: {e}")))?;
    if !canonical.starts_with(folder) {
        return refuse("points outside the scene folder (through a symbolic link)");
    }
    if !canonical.is_file() {
        return refuse("is not a regular file");
    }
    Ok(UriTarget::File {
        path: canonical,
        relative: segments.join("/"),
    })
}

/// Read a whole file, refusing files larger than `max_bytes` before reading them.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > max_bytes {
        return Err(ReadError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` guards against a file that grows while it is read.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Why [`read_bounded`] failed.
pub(crate) enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
}

fn percent_decode(uri: &str) -> Result<String, UriRefusal> {
    let bytes = uri.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| UriRefusal("truncated percent escape".into()))?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UriRefusal("invalid percent escape".into()))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriRefusal("percent-decoded uri is not UTF-8".into()))
}

fn decode_data_uri(uri: &str, max_bytes: u64) -> Result<Vec<u8>, UriRefusal> {
    let comma = uri
        .find(',')
        .ok_or_else(|| UriRefusal("data uri without a comma".into()))?;
    let header = &uri[5..comma];
    if !header
        .split(';')
        .any(|part| part.eq_ignore_ascii_case("base64"))
    {
        return Err(UriRefusal("only base64 data uris are supported".into()));
    }
    let payload = &uri.as_bytes()[comma + 1..];
    let decoded_len = payload.len() as u64 / 4 * 3;
    if decoded_len > max_bytes {
        return Err(UriRefusal(format!(
            "data uri holds about {decoded_len} bytes, more than the limit of {max_bytes}"
        )));
    }
    base64_decode(payload).map_err(|e| UriRefusal(e.to_string()))
}

/// Why a base64 payload is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Base64Error {
    /// The length (padding included) cannot be a base64 encoding.
    #[error("invalid base64 length {len}")]
    Length {
        /// The payload's length in bytes.
        len: usize,
    },
    /// A byte outside the base64 alphabet.
    #[error("invalid base64 character {found:?} at offset {offset}")]
    Character {
        /// The byte, as a character.
        found: char,
        /// Its offset in the payload.
        offset: usize,
    },
}

/// Decode standard base64 (RFC 4648 alphabet, optional `=` padding, no whitespace).
pub(crate) fn base64_decode(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let trimmed = match input {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        all => all,
    };
    if trimmed.len() % 4 == 1 {
        return Err(Base64Error::Length { len: input.len() });
    }
    let mut out = Vec::with_capacity(trimmed.len() / 4 * 3 + 2);
    for (chunk_idx, chunk) in trimmed.chunks(4).enumerate() {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or(Base64Error::Character {
                found: c as char,
                offset: chunk_idx * 4 + i,
            })?;
            acc |= v << (18 - 6 * i as u32);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert_eq!(
            base64_decode(b"Zm9vY!=="),
            Err(Base64Error::Character {
                found: '!',
                offset: 5
            })
        );
        assert_eq!(base64_decode(b"Z"), Err(Base64Error::Length { len: 1 }));
    }

    #[test]
    fn refuses_escapes_and_schemes() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        for uri in [
            "../x.bin",
            "a/../../x.bin",
            "%2e%2e/x.bin",
            "/etc/passwd",
            "http://example.com/x.bin",
            "file:///etc/passwd",
            "C:/x.bin",
            "a\\b.bin",
            "x.bin?y",
            "",
        ] {
            assert!(resolve(uri, &dir, 1 << 20).is_err(), "{uri} accepted");
        }
    }

    #[test]
    fn names_files_relative_to_the_folder() {
        let tmp = std::env::temp_dir().join(format!("tessera-uri-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("tex dir")).unwrap();
        std::fs::write(tmp.join("tex dir/a.png"), b"x").unwrap();
        let folder = tmp.canonicalize().unwrap();
        for uri in ["tex%20dir/a.png", "./tex dir/./a.png"] {
            match resolve(uri, &folder, 1 << 20) {
                Ok(UriTarget::File { path, relative }) => {
                    assert_eq!(relative, "tex dir/a.png", "{uri}");
                    assert_eq!(path, folder.join("tex dir").join("a.png"));
                }
                _ => panic!("{uri} not resolved to a file"),
            }
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
