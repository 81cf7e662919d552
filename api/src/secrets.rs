//! Secrets on the command line: a token file (which keeps it out of `ps` and the
//! environment), and how logs and `--print-config` show one: a short hash, never the
//! secret.

use std::path::{Path, PathBuf};

/// A secret that cannot be taken; the message names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both `--FLAG` and `--FLAG-file` were given.
    #[error("--{flag} and --{flag}-file: give one of them")]
    Both {
        /// The flag.
        flag: String,
    },
    /// The file cannot be read.
    #[error("--{flag}-file {path}: {source}")]
    Read {
        /// The flag.
        flag: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has no token line.
    #[error("--{flag}-file {path}: no token in it")]
    Empty {
        /// The flag.
        flag: String,
        /// The file.
        path: PathBuf,
    },
}

/// The non-empty, non-comment (`#`) lines of the secrets file of `--FLAG-file`, trimmed;
/// at least one.
pub fn read_secret_lines(flag: &str, path: &Path) -> Result<Vec<String>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        flag: flag.into(),
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err(SecretError::Empty {
            flag: flag.into(),
            path: path.to_path_buf(),
        });
    }
    Ok(lines)
}

/// Whether users other than the owner may read or write the file at `path` (a secrets
/// file should be `chmod 600`); false where that cannot be told.
pub fn others_may_read(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            return meta.permissions().mode() & 0o077 != 0;
        }
    }
    let _ = path;
    false
}

/// How logs and `--print-config` show a secret: never the secret, only a short hash of
/// it, enough to tell which of several sources was taken.
pub fn redacted(secret: &str) -> String {
    format!("*** ({})", &blake3::hash(secret.as_bytes()).to_hex()[..8])
}

/// [`redacted`] for an optional secret (`null` when unset), as a serde field serializer.
pub fn redact_option<S: serde::Serializer>(
    token: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match token {
        Some(t) => s.serialize_str(&redacted(t)),
        None => s.serialize_none(),
    }
}

/// A broker URL with its password hidden, for logs and `--print-config`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_passwords_are_hidden() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("amqp://user@host"), "amqp://user@host");
    }

    #[test]
    fn a_secret_file_gives_its_token_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "# comment\n\n  first  \nsecond\n").unwrap();
        assert_eq!(
            read_secret_lines("token", &file).unwrap(),
            ["first", "second"]
        );
        std::fs::write(&file, "# only a comment\n").unwrap();
        let e = read_secret_lines("token", &file).unwrap_err().to_string();
        assert!(e.ends_with(": no token in it"), "{e}");
    }
}
