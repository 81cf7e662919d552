//! The client tokens and verifier keys of a [`DaemonConfig`], the checks of it beyond
//! its types (ranges, non-zero timeouts, the tokens' grants), the tolerance file it may
//! name, the listen address, the default data directory, and what `--print-config`
//! shows of it: [`DaemonSettings`], where every secret is replaced by a short hash of it.

use crate::daemon::{check_grants, http::client_tokens, DaemonConfig};
use serde::Serialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use tessera_api::secrets::{redact_option, redact_url, redacted};
use tessera_protocol::keys::PublicKey;
use tessera_protocol::limits::{BATCH_SIZE, TILE_SIZE};
use tessera_protocol::tolerance::Tolerance;

/// A coordinator configuration that cannot run; the message names the flag and value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A tolerance file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ToleranceFileError {
    /// The file cannot be read.
    #[error("--tolerance: reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no [`Tolerance`].
    #[error("--tolerance {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
}

/// Read a [`Tolerance`] from a JSON file (by its `.json` extension) or a TOML file.
pub fn read_tolerance(path: &Path) -> Result<Tolerance, ToleranceFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ToleranceFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| ToleranceFileError::Parse {
        path: path.to_path_buf(),
        reason,
    })
}

/// The client API tokens: the flag's values (trimmed, blanks dropped) and then a
/// token file's lines; at least one, each `TOKEN` or `CLIENT=TOKEN` with neither side
/// empty.
pub fn client_token_list(
    given: &[String],
    from_file: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    let mut tokens: Vec<String> = given
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.extend(from_file);
    if tokens.is_empty() {
        return Err(ConfigError(
            "--api-token is required (or set TESSERA_API_TOKEN, or `api-token` in the config file)"
                .into(),
        ));
    }
    let empty_side = |t: &String| {
        t.split_once('=')
            .is_some_and(|(c, t)| c.is_empty() || t.is_empty())
    };
    if tokens.iter().any(empty_side) {
        return Err(ConfigError(
            "--api-token: expected TOKEN or CLIENT=TOKEN, got an empty client or token".into(),
        ));
    }
    Ok(tokens)
}

/// The keys granted the verifier role: each a public key in hex (blanks dropped).
pub fn parse_verifier_keys(given: &[String]) -> Result<Vec<PublicKey>, ConfigError> {
    given
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .map(|k| {
            tessera_protocol::hexser::decode::<32>(k)
                .map(PublicKey)
                .map_err(|e| {
                    ConfigError(format!(
                        "--verifier-key {k:?}: {e} (expected a public key, 64 hex)"
                    ))
                })
        })
        .collect()
}

/// The address of `--listen HOST:PORT`: the first that `host` resolves to.
pub fn parse_listen(listen: &str) -> Result<SocketAddr, ConfigError> {
    match listen.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(ConfigError(format!(
            "--listen {listen}: resolves to no address"
        ))),
        Err(e) => Err(ConfigError(format!(
            "--listen {listen}: {e} (expected HOST:PORT)"
        ))),
    }
}

/// The data directory when `--data` is not given (the coordinator's and `render`'s):
/// `$XDG_DATA_HOME/tessera`, else `~/.local/share/tessera`, else `.tessera`.
pub fn default_data_dir() -> PathBuf {
    data_dir_in(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn data_dir_in(xdg_data: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    match (xdg_data, home) {
        (Some(x), _) => x.join("tessera"),
        (None, Some(h)) => h.join(".local/share/tessera"),
        (None, None) => PathBuf::from(".tessera"),
    }
}

/// Check what the types of `cfg` allow but the coordinator cannot run with, in the
/// order the flags are documented; the first problem is the error.
pub fn check_config(cfg: &DaemonConfig) -> Result<(), ConfigError> {
    let fail = |m: String| Err(ConfigError(m));
    if cfg.metrics_listen == Some(cfg.listen) {
        return fail(format!(
            "--metrics-addr {}: the API listens there (--listen); give the tokenless metrics listener an address of its own",
            cfg.listen
        ));
    }
    if cfg.http.header_timeout.is_zero()
        || cfg.http.body_timeout.is_zero()
        || cfg.session_ttl.is_zero()
    {
        return fail(
            "--header-timeout-secs, --body-timeout-secs and --session-ttl-secs must be at least 1"
                .into(),
        );
    }
    if cfg.http.max_connections == 0
        || cfg.http.max_uploads == 0
        || cfg.http.max_uploads_per_client == 0
    {
        return fail(
            "--max-connections, --max-uploads and --max-uploads-per-client must be at least 1"
                .into(),
        );
    }
    let l = &cfg.limits;
    if l.max_job_tasks == 0 || l.max_job_tiles == 0 || l.max_client_jobs == 0 {
        return fail(
            "--max-job-tasks, --max-job-tiles and --max-client-jobs must be at least 1".into(),
        );
    }
    if let Err(e) = cfg.tolerance.check() {
        return fail(format!("--tolerance: {e}"));
    }
    if cfg.dispute_deposit_pct > 100 {
        return fail(format!(
            "--dispute-deposit-pct {}: at most 100",
            cfg.dispute_deposit_pct
        ));
    }
    if cfg.lease.is_zero() || cfg.reconcile_every.is_zero() || cfg.verify_timeout.is_zero() {
        return fail(
            "--lease-secs, --reconcile-secs and --verify-timeout-secs must be at least 1".into(),
        );
    }
    if !TILE_SIZE.contains(&cfg.tile_size) {
        return fail(format!(
            "--tile-size {}: must be {TILE_SIZE:?}",
            cfg.tile_size
        ));
    }
    if !BATCH_SIZE.contains(&cfg.batch_size) {
        return fail(format!(
            "--batch-size {}: must be {BATCH_SIZE:?}",
            cfg.batch_size
        ));
    }
    if cfg.slash_pct > 100 {
        return fail(format!("--slash-pct {}: at most 100", cfg.slash_pct));
    }
    check_grants(cfg).map_err(|e| ConfigError(e.to_string()))
}

/// What `--print-config` shows of a coordinator's config: every field, secrets
/// [`redacted`], durations in seconds.
#[allow(missing_docs)] // the fields are DaemonConfig's
#[derive(Debug, Serialize)]
pub struct DaemonSettings {
    pub amqp: String,
    pub listen: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub data: PathBuf,
    /// `CLIENT=` and a hash of each token, never the token.
    pub api_tokens: Vec<String>,
    #[serde(serialize_with = "redact_option")]
    pub node_token: Option<String>,
    #[serde(serialize_with = "redact_option")]
    pub verifier_token: Option<String>,
    pub verifier_keys: Vec<String>,
    #[serde(serialize_with = "redact_option")]
    pub admin_token: Option<String>,
    pub client_overdraft: u64,
    pub namespace: String,
    pub lease_secs: f64,
    pub reconcile_secs: f64,
    pub max_attempts: u32,
    pub blocklist_after: u32,
    pub tile_size: u32,
    pub batch_size: u32,
    pub challenge_window_secs: u64,
    pub slash_pct: u32,
    pub max_blob_bytes: u64,
    pub verify_timeout_secs: f64,
    pub tolerance: Tolerance,
    pub dispute_deposit_pct: u32,
    pub header_timeout_secs: f64,
    pub body_timeout_secs: f64,
    pub max_connections: usize,
    pub max_uploads: usize,
    pub max_uploads_per_client: usize,
    pub max_job_tasks: u64,
    pub max_job_tiles: u64,
    pub max_client_jobs: u64,
    pub max_client_bytes: u64,
    pub session_ttl_secs: f64,
    pub retention_secs: f64,
}

impl DaemonSettings {
    /// What `--print-config` shows of `cfg`.
    pub fn new(cfg: &DaemonConfig) -> DaemonSettings {
        DaemonSettings {
            amqp: redact_url(&cfg.amqp_url),
            listen: cfg.listen,
            metrics_addr: cfg.metrics_listen,
            data: cfg.data_dir.clone(),
            api_tokens: client_tokens(&cfg.api_tokens)
                .iter()
                .map(|(client, token)| format!("{client}={}", redacted(token)))
                .collect(),
            node_token: cfg.node_token.clone(),
            verifier_token: cfg.verifier_token.clone(),
            verifier_keys: cfg.verifier_keys.iter().map(|k| k.to_string()).collect(),
            admin_token: cfg.admin_token.clone(),
            client_overdraft: cfg.client_overdraft,
            namespace: cfg.namespace.clone(),
            lease_secs: cfg.lease.as_secs_f64(),
            reconcile_secs: cfg.reconcile_every.as_secs_f64(),
            max_attempts: cfg.max_attempts,
            blocklist_after: cfg.blocklist_after,
            tile_size: cfg.tile_size,
            batch_size: cfg.batch_size,
            challenge_window_secs: cfg.challenge_window_secs,
            slash_pct: cfg.slash_pct,
            max_blob_bytes: cfg.max_blob_bytes,
            verify_timeout_secs: cfg.verify_timeout.as_secs_f64(),
            tolerance: cfg.tolerance,
            dispute_deposit_pct: cfg.dispute_deposit_pct,
            header_timeout_secs: cfg.http.header_timeout.as_secs_f64(),
            body_timeout_secs: cfg.http.body_timeout.as_secs_f64(),
            max_connections: cfg.http.max_connections,
            max_uploads: cfg.http.max_uploads,
            max_uploads_per_client: cfg.http.max_uploads_per_client,
            max_job_tasks: cfg.limits.max_job_tasks,
            max_job_tiles: cfg.limits.max_job_tiles,
            max_client_jobs: cfg.limits.max_client_jobs,
            max_client_bytes: cfg.limits.max_client_bytes,
            session_ttl_secs: cfg.session_ttl.as_secs_f64(),
            retention_secs: cfg.retention.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_address_is_host_and_port() {
        let addr = parse_listen("127.0.0.1:8700").unwrap();
        assert_eq!(addr, "127.0.0.1:8700".parse().unwrap());
        let e = parse_listen("127.0.0.1").unwrap_err().to_string();
        assert!(e.starts_with("--listen 127.0.0.1: "), "{e}");
        assert!(e.ends_with("(expected HOST:PORT)"), "{e}");
    }

    #[test]
    fn the_data_directory_follows_xdg_then_home() {
        let (x, h) = (PathBuf::from("/x"), PathBuf::from("/h"));
        assert_eq!(
            data_dir_in(Some(x), Some(h.clone())),
            PathBuf::from("/x/tessera")
        );
        assert_eq!(
            data_dir_in(None, Some(h)),
            PathBuf::from("/h/.local/share/tessera")
        );
        assert_eq!(data_dir_in(None, None), PathBuf::from(".tessera"));
    }

    #[test]
    fn the_default_config_passes_but_a_zero_lease_does_not() {
        let mut cfg = DaemonConfig {
            api_tokens: vec!["client-token-0123456789".into()],
            verifier_token: Some("verifier-token-0123456789".into()),
            ..DaemonConfig::default()
        };
        check_config(&cfg).unwrap();
        cfg.lease = std::time::Duration::ZERO;
        let e = check_config(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("--lease-secs"), "{e}");
        cfg.lease = std::time::Duration::from_secs(15);
        cfg.metrics_listen = Some(cfg.listen);
        let e = check_config(&cfg).unwrap_err().to_string();
        assert!(
            e.starts_with("--metrics-addr 127.0.0.1:8700: the API"),
            "{e}"
        );
    }
}
