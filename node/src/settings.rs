//! The validated settings of a worker daemon (`tessera node`, `tessera verifier`): what
//! `--print-config` shows of them ([`WorkerSettings`], the broker's password and the
//! token hidden), the checks of the broker URL, the slots and the heartbeat, the default
//! scene cache, and the node daemon's config made from them.

use crate::daemon::{NodeDaemonConfig, DEFAULT_HEARTBEAT};
use crate::DishonestMode;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tessera_api::secrets::{redact_option, redact_url};
use tessera_protocol::keys::SecretKey;

/// Most requests a worker handles at once.
pub const MAX_SLOTS: u32 = 1024;

/// A worker flag whose value cannot run; the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum WorkerFlagError {
    /// The broker URL is not an AMQP one (shown with its password hidden).
    #[error("--amqp {url}: expected an amqp:// URL such as amqp://guest:guest@127.0.0.1:5672/%2f")]
    Amqp {
        /// The URL, password hidden.
        url: String,
    },
    /// No slots, or too many.
    #[error("--slots {0}: must be 1..={MAX_SLOTS}")]
    Slots(u32),
    /// A heartbeat interval of 0.
    #[error("--heartbeat-ms must be at least 1")]
    Heartbeat,
    /// A metrics address that is not `HOST:PORT`, or resolves to nothing.
    #[error("--metrics-addr {addr}: {reason}")]
    MetricsAddr {
        /// What was given.
        addr: String,
        /// Why it is not an address.
        reason: String,
    },
}

/// The address of `--metrics-addr HOST:PORT` (any daemon's): the first that `host`
/// resolves to.
pub fn parse_metrics_addr(addr: &str) -> Result<std::net::SocketAddr, WorkerFlagError> {
    use std::net::ToSocketAddrs;
    let fail = |reason: String| WorkerFlagError::MetricsAddr {
        addr: addr.to_string(),
        reason,
    };
    match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(fail("resolves to no address".into())),
        Err(e) => Err(fail(format!("{e} (expected HOST:PORT)"))),
    }
}

/// That `url` is an `amqp://` or `amqps://` URL.
pub fn check_amqp_url(url: &str) -> Result<(), WorkerFlagError> {
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        return Ok(());
    }
    Err(WorkerFlagError::Amqp {
        url: redact_url(url),
    })
}

/// That `slots` is 1..=[`MAX_SLOTS`].
pub fn check_slots(slots: u32) -> Result<(), WorkerFlagError> {
    if slots == 0 || slots > MAX_SLOTS {
        return Err(WorkerFlagError::Slots(slots));
    }
    Ok(())
}

/// The heartbeat interval in ms: `given`, at least 1, or [`DEFAULT_HEARTBEAT`].
pub fn heartbeat_ms(given: Option<u64>) -> Result<u64, WorkerFlagError> {
    match given.unwrap_or(DEFAULT_HEARTBEAT.as_millis() as u64) {
        0 => Err(WorkerFlagError::Heartbeat),
        ms => Ok(ms),
    }
}

/// The scene cache when none is given: `$XDG_CACHE_HOME/tessera/scenes`, else
/// `~/.cache/tessera/scenes`, else `.tessera/cache`.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_in(
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn cache_dir_in(xdg_cache: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    match (xdg_cache, home) {
        (Some(x), _) => x.join("tessera/scenes"),
        (None, Some(h)) => h.join(".cache/tessera/scenes"),
        (None, None) => PathBuf::from(".tessera/cache"),
    }
}

/// A worker daemon's validated flags (printed by `--print-config`).
#[derive(Debug, Serialize)]
pub struct WorkerSettings {
    /// Role.
    pub role: &'static str,
    /// Broker URL, password hidden.
    pub amqp: String,
    /// Coordinator URL.
    pub coordinator: String,
    /// Key file.
    pub key_file: PathBuf,
    /// Its public key.
    pub public_key: String,
    /// Worker token (only a hash of it is shown).
    #[serde(serialize_with = "redact_option")]
    pub token: Option<String>,
    /// Display name.
    pub name: String,
    /// Scene cache.
    pub cache: PathBuf,
    /// Requests handled at once.
    pub slots: u32,
    /// `gpu` or `stub`.
    pub renderer: &'static str,
    /// Stub delay.
    pub stub_delay_ms: u64,
    /// Node only: heartbeat interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// Node only (drill): how it cheats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dishonest: Option<String>,
    /// Where `GET /metrics` is served without a token (none: not served).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl WorkerSettings {
    /// The node daemon's config: these settings, the node's `key`, its heartbeat interval
    /// (the settings' or [`DEFAULT_HEARTBEAT`]) and, in a drill, how it cheats.
    pub fn node_config(self, key: SecretKey, dishonest: Option<DishonestMode>) -> NodeDaemonConfig {
        NodeDaemonConfig {
            heartbeat: self
                .heartbeat_ms
                .map_or(DEFAULT_HEARTBEAT, Duration::from_millis),
            coordinator: self.coordinator,
            token: self.token,
            key,
            name: self.name,
            slots: self.slots,
            cache_dir: self.cache,
            dishonest,
            metrics_listen: self.metrics_addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_url_slots_and_heartbeat_are_checked() {
        check_amqp_url("amqp://h").unwrap();
        check_amqp_url("amqps://h").unwrap();
        let e = check_amqp_url("http://u:pw@h").unwrap_err().to_string();
        assert!(e.starts_with("--amqp http://u:***@h: expected"), "{e}");
        check_slots(1).unwrap();
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9100").unwrap(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 9100))
        );
        let e = parse_metrics_addr("127.0.0.1").unwrap_err().to_string();
        assert!(e.starts_with("--metrics-addr 127.0.0.1: "), "{e}");
        check_slots(MAX_SLOTS).unwrap();
        assert_eq!(
            check_slots(0).unwrap_err().to_string(),
            "--slots 0: must be 1..=1024"
        );
        assert!(check_slots(MAX_SLOTS + 1).is_err());
        assert_eq!(heartbeat_ms(None).unwrap(), 2000);
        assert_eq!(heartbeat_ms(Some(5)).unwrap(), 5);
        assert!(matches!(
            heartbeat_ms(Some(0)),
            Err(WorkerFlagError::Heartbeat)
        ));
    }

    #[test]
    fn the_cache_follows_xdg_then_home() {
        let (x, h) = (PathBuf::from("/x"), PathBuf::from("/h"));
        assert_eq!(
            cache_dir_in(Some(x), Some(h.clone())),
            PathBuf::from("/x/tessera/scenes")
        );
        assert_eq!(
            cache_dir_in(None, Some(h)),
            PathBuf::from("/h/.cache/tessera/scenes")
        );
        assert_eq!(cache_dir_in(None, None), PathBuf::from(".tessera/cache"));
    }

    fn settings_metrics() -> Option<std::net::SocketAddr> {
        Some(std::net::SocketAddr::from(([10, 0, 0, 5], 9101)))
    }

    #[test]
    fn a_node_config_keeps_the_settings() {
        let key = SecretKey::generate();
        let settings = WorkerSettings {
            role: "node",
            amqp: "amqp://h".into(),
            coordinator: "http://c".into(),
            key_file: "k".into(),
            public_key: key.public().to_string(),
            token: Some("t".into()),
            name: "n".into(),
            cache: "/c".into(),
            slots: 3,
            renderer: "stub",
            stub_delay_ms: 0,
            heartbeat_ms: Some(250),
            dishonest: None,
            metrics_addr: Some(std::net::SocketAddr::from(([10, 0, 0, 5], 9101))),
        };
        let json = serde_json::to_value(&settings).unwrap();
        assert_ne!(json["token"], "t");
        assert!(json.get("dishonest").is_none());
        assert_eq!(json["metrics_addr"], "10.0.0.5:9101");
        let public = key.public();
        let cfg = settings.node_config(key, Some(DishonestMode::Black));
        assert_eq!(cfg.heartbeat, Duration::from_millis(250));
        assert_eq!((cfg.slots, cfg.name.as_str()), (3, "n"));
        assert_eq!(cfg.metrics_listen, settings_metrics());
        assert_eq!(cfg.cache_dir, PathBuf::from("/c"));
        assert_eq!(cfg.key.public(), public);
        assert_eq!(cfg.dishonest, Some(DishonestMode::Black));
    }
}
