//! The bytes of buffers and images: held in memory ([`Scene::load`](super::Scene::load)
//! reads everything it decodes), or a region of a file left on disk
//! ([`Scene::inspect`](super::Scene::inspect) hashes external files as a stream and reads
//! only headers, through a small read-ahead window).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::ReadAt;
use super::uri::ReadError;

/// Bytes of the scene file, the GLB `BIN` chunk, a buffer or an image.
pub(crate) enum Blob {
    /// Read into memory (data URIs and the GLB `BIN` chunk always; files under `load`).
    Memory(Vec<u8>),
    /// `len` bytes at `offset` of a file (under `inspect` only).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Blob {
    pub fn len(&self) -> u64 {
        match self {
            Blob::Memory(v) => v.len() as u64,
            Blob::File { len, .. } => *len,
        }
    }

    /// Keep only the first `len` bytes.
    pub fn truncate(&mut self, new_len: u64) {
        match self {
            Blob::Memory(v) => v.truncate(new_len as usize),
            Blob::File { len, .. } => *len = (*len).min(new_len),
        }
    }

    /// The bytes `start..start + len` (which the caller has checked lie inside); a copy
    /// when in memory.
    pub fn range(&self, start: u64, len: u64) -> Blob {
        match self {
            Blob::Memory(v) => Blob::Memory(v[start as usize..(start + len) as usize].to_vec()),
            Blob::File { path, offset, .. } => Blob::File {
                path: path.clone(),
                offset: offset + start,
                len,
            },
        }
    }

    /// The bytes in memory (read from the file if they are not).
    pub fn into_vec(self) -> std::io::Result<Vec<u8>> {
        match self {
            Blob::Memory(v) => Ok(v),
            Blob::File { path, offset, len } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(offset))?;
                let mut out = Vec::with_capacity(len as usize);
                file.take(len).read_to_end(&mut out)?;
                if (out.len() as u64) < len {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(out)
            }
        }
    }

    /// A reader over the bytes, for headers.
    pub fn reader(&self) -> std::io::Result<Reader<'_>> {
        Ok(match self {
            Blob::Memory(v) => Reader::Memory { bytes: v, pos: 0 },
            Blob::File { path, offset, len } => Reader::File(Window::open(path, *offset, *len)?),
        })
    }
}

/// Reads a [`Blob`] by random access ([`ReadAt`]) or as a stream (`Read + Seek`).
pub(crate) enum Reader<'a> {
    Memory { bytes: &'a [u8], pos: u64 },
    File(Window),
}

impl Reader<'_> {
    /// The read error that cut the data short, if any ([`ReadAt`] reports it as the end).
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        match self {
            Reader::Memory { .. } => None,
            Reader::File(w) => w.error.take(),
        }
    }
}

impl ReadAt for Reader<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> usize {
        match self {
            Reader::Memory { bytes, .. } => bytes.read_at(offset, buf),
            Reader::File(w) => w.read_at(offset, buf),
        }
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = match self {
            Reader::Memory { pos, .. } => *pos,
            Reader::File(w) => w.pos,
        };
        let n = self.read_at(pos, buf);
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        match self {
            Reader::Memory { pos, .. } => *pos += n as u64,
            Reader::File(w) => w.pos += n as u64,
        }
        Ok(n)
    }
}

impl Seek for Reader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let (pos, len) = match self {
            Reader::Memory { bytes, pos } => (pos, bytes.len() as u64),
            Reader::File(w) => (&mut w.pos, w.len),
        };
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => pos.checked_add_signed(d),
        };
        *pos = new.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(*pos)
    }
}

/// A region of a file read through one cached block, so that byte-by-byte header parsing
/// costs one system call per block.
pub(crate) struct Window {
    file: File,
    offset: u64,
    len: u64,
    /// Stream position (for `Read`), relative to `offset`.
    pos: u64,
    /// Start of `block`, relative to `offset`.
    block_at: u64,
    block: Vec<u8>,
    error: Option<std::io::Error>,
}

const BLOCK: u64 = 64 * 1024;

impl Window {
    fn open(path: &Path, offset: u64, len: u64) -> std::io::Result<Window> {
        Ok(Window {
            file: File::open(path)?,
            offset,
            len,
            pos: 0,
            block_at: 0,
            block: Vec::new(),
            error: None,
        })
    }

    fn fill(&mut self, at: u64) -> std::io::Result<()> {
        let want = BLOCK.min(self.len - at) as usize;
        self.block.clear();
        self.block_at = at;
        self.file.seek(SeekFrom::Start(self.offset + at))?;
        (&mut self.file)
            .take(want as u64)
            .read_to_end(&mut self.block)?;
        if self.block.len() < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when it was hashed",
            ));
        }
        Ok(())
    }
}

impl ReadAt for Window {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> usize {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            if at >= self.len || self.error.is_some() {
                break;
            }
            let cached = self.block_at..self.block_at + self.block.len() as u64;
            if !cached.contains(&at) {
                if let Err(e) = self.fill(at) {
                    self.error = Some(e);
                    break;
                }
            }
            let from = (at - self.block_at) as usize;
            let n = (buf.len() - done).min(self.block.len() - from);
            buf[done..done + n].copy_from_slice(&self.block[from..from + n]);
            done += n;
        }
        done
    }
}

/// Feed a file to `hasher` as its length (u64 little-endian) and then its bytes, reading
/// it through a fixed buffer; files larger than `max_bytes` are refused before any read.
/// Returns the length.
pub(crate) fn hash_file(
    path: &Path,
    max_bytes: u64,
    hasher: &mut blake3::Hasher,
) -> Result<u64, ReadError> {
    let file = File::open(path).map_err(ReadError::Io)?;
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > max_bytes {
        return Err(ReadError::TooLarge(len));
    }
    hasher.update(&len.to_le_bytes());
    let read = hash_stream(file.take(len), hasher).map_err(ReadError::Io)?;
    if read != len {
        return Err(ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file shrank from {len} to {read} bytes while it was read"),
        )));
    }
    Ok(len)
}

/// Feed everything `reader` yields to `hasher` through a fixed buffer; returns the count.
pub(crate) fn hash_stream(
    mut reader: impl Read,
    hasher: &mut blake3::Hasher,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_window_reads_like_the_slice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let blob = Blob::File {
            path: path.clone(),
            offset: 1000,
            len: 250_000,
        };
        let expected = &data[1000..251_000];
        let mut reader = blob.reader().unwrap();
        for (at, n) in [
            (0u64, 10usize),
            (65_530, 20),
            (249_990, 30),
            (250_000, 4),
            (7, 140_000),
        ] {
            let mut buf = vec![0u8; n];
            let got = reader.read_at(at, &mut buf);
            let want = &expected[(at as usize).min(expected.len())..];
            let want = &want[..n.min(want.len())];
            assert_eq!(&buf[..got], want, "at {at}");
        }
        let mut all = Vec::new();
        reader.seek(SeekFrom::Start(0)).unwrap();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, expected);
        assert_eq!(blob.range(10, 5).into_vec().unwrap(), &expected[10..15]);
    }

    #[test]
    fn hashing_a_file_equals_hashing_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut streamed = blake3::Hasher::new();
        assert_eq!(hash_file(&path, 1 << 20, &mut streamed).ok(), Some(600_000));
        let mut whole = blake3::Hasher::new();
        whole.update(&600_000u64.to_le_bytes());
        whole.update(&data);
        assert_eq!(streamed.finalize(), whole.finalize());
        assert!(matches!(
            hash_file(&path, 1000, &mut blake3::Hasher::new()),
            Err(ReadError::TooLarge(600_000))
        ));
    }
}
