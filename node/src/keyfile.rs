//! Key files on disk (`tessera keygen`, the daemons' `--key`, `tessera render`'s data
//! directory): read, written once with mode 0600, or loaded and created when missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use tessera_protocol::keys::{KeyError, SecretKey};

/// A key file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("reading key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no key.
    #[error(transparent)]
    Parse(#[from] KeyError),
    /// The folder of a new key file cannot be created.
    #[error("creating {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new key file cannot be created (it may exist already).
    #[error("creating key file {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new key file cannot be written.
    #[error("writing key file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl KeyFileError {
    /// Whether the file to read does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KeyFileError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Read a key file written by [`write_key_file`] (`tessera keygen`).
pub fn read_key_file(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(SecretKey::from_key_file(
        &text,
        &path.display().to_string(),
    )?)
}

/// Write `key` to a new file at `path` (mode 0600 on Unix), creating its folder; an
/// existing file is an error, never overwritten.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyFileError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|source| KeyFileError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(key.to_key_file().as_bytes())
        .map_err(|source| KeyFileError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Load the key file at `path`, or create it with a fresh key if it does not exist.
pub fn load_or_create_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    if path.exists() {
        return read_key_file(path);
    }
    let key = SecretKey::generate();
    write_key_file(path, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_loaded_again_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/a.key");
        let e = read_key_file(&path).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let key = load_or_create_key(&path).unwrap();
        assert_eq!(load_or_create_key(&path).unwrap().public(), key.public());
        let e = write_key_file(&path, &SecretKey::generate()).unwrap_err();
        assert!(e.to_string().starts_with("creating key file "), "{e}");
        assert_eq!(read_key_file(&path).unwrap().public(), key.public());
    }
}
