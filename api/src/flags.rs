//! What the farm commands' flags become before anything runs: a value that has no
//! default, taken from its flag, its variable or the config file; a secret given as a
//! value or as a file; the client commands' [`ClientConfig`]; the job `submit` asks
//! for; and the account a credit goes to. Every error names the flag (the `tessera` binary makes them usage errors).

use crate::client::{ApiClient, ApiClientError};
use crate::secrets::{self, redacted, SecretError};
use crate::{JobSubmission, SceneListing};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tessera_protocol::hexser::HexError;
use tessera_protocol::limits::{BATCH_SIZE, TILE_SIZE};
use tessera_protocol::payments::{default_tiers, TierPolicy};
use tessera_protocol::wire::Requirements;
use tessera_protocol::RenderSettings;

/// A flag's value that cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// A value without a default is not given anywhere.
    #[error("--{flag} is required (or set {env}, or `{flag}` in the config file)")]
    Missing {
        /// The flag.
        flag: String,
        /// Its environment variable.
        env: String,
    },
    /// A secret's value or file cannot be taken.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The coordinator's URL is unusable.
    #[error("--coordinator: {0}")]
    Coordinator(ApiClientError),
    /// `--stake` is not a public key.
    #[error("--stake {key:?}: {reason} (expected a node's public key, 64 hex)")]
    Stake {
        /// The value given.
        key: String,
        /// Why it is not a key.
        reason: HexError,
    },
    /// Neither or both of `--client` and `--stake`.
    #[error("give exactly one of --client and --stake")]
    CreditTarget,
    /// `--tier` names no tier.
    #[error("--tier {0:?}: expected economy, priority or trusted")]
    Tier(String),
    /// `--tile-size` is out of range.
    #[error("--tile-size {0}: must be {TILE_SIZE:?}")]
    TileSize(u32),
    /// `--batch-size` is out of range.
    #[error("--batch-size {0}: must be {BATCH_SIZE:?}")]
    BatchSize(u32),
    /// `--require-class` is not a class id.
    #[error("--require-class: {0}")]
    Class(HexError),
}

/// A value that has no built-in default: from the flag, its variable `env` or the config
/// file.
pub fn required<T: Clone>(value: &Option<T>, flag: &str, env: &str) -> Result<T, FlagError> {
    value.clone().ok_or_else(|| FlagError::Missing {
        flag: flag.into(),
        env: env.into(),
    })
}

/// A secret given either as a value (`--FLAG`, its variable, the config file) or as a
/// file (`--FLAG-file`, whose first line is the secret, so that it shows neither in `ps`
/// nor in the environment). Both at once is an error.
pub fn secret(
    flag: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, FlagError> {
    let Some(path) = file else {
        return Ok(value.clone());
    };
    if value.is_some() {
        return Err(SecretError::Both { flag: flag.into() }.into());
    }
    let lines = secret_lines(flag, path)?;
    Ok(lines.into_iter().next())
}

/// The token lines of the secrets file of `--FLAG-file` ([`secrets::read_secret_lines`]),
/// with a warning logged when other users may read it.
pub fn secret_lines(flag: &str, path: &Path) -> Result<Vec<String>, SecretError> {
    let lines = secrets::read_secret_lines(flag, path);
    if !matches!(lines, Err(SecretError::Read { .. })) && secrets::others_may_read(path) {
        let file = path.display();
        tracing::warn!("--{flag}-file {file}: other users may read it (chmod 600 it)");
    }
    lines
}

/// That `url` can be the coordinator's base URL.
pub fn check_coordinator_url(url: &str) -> Result<(), FlagError> {
    ApiClient::new(url, None)
        .map(drop)
        .map_err(FlagError::Coordinator)
}

/// How a client command reaches the coordinator: its URL and the client's token.
#[derive(Clone, Debug, Serialize)]
pub struct ClientConfig {
    /// Base URL.
    pub coordinator: String,
    /// Bearer token (`--print-config` shows only a hash of it).
    #[serde(serialize_with = "redact_token")]
    pub token: String,
}

fn redact_token<S: serde::Serializer>(token: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted(token))
}

impl ClientConfig {
    /// From `--coordinator` and `--token` or `--token-file` (each required), the URL
    /// checked.
    pub fn new(
        coordinator: &Option<String>,
        token: &Option<String>,
        token_file: &Option<PathBuf>,
    ) -> Result<ClientConfig, FlagError> {
        let coordinator = required(coordinator, "coordinator", "TESSERA_COORDINATOR")?;
        let token = required(
            &secret("token", token, token_file)?,
            "token",
            "TESSERA_TOKEN",
        )?;
        check_coordinator_url(&coordinator)?;
        Ok(ClientConfig { coordinator, token })
    }

    /// A client of the coordinator with the token.
    pub fn client(&self) -> Result<ApiClient, ApiClientError> {
        ApiClient::new(&self.coordinator, Some(self.token.clone()))
    }
}

/// The ledger account `tessera credit` credits: `client:NAME` for `--client NAME`,
/// `stake:KEY` for `--stake KEY` (a public key); exactly one of them.
pub fn credit_account(client: Option<&str>, stake: Option<&str>) -> Result<String, FlagError> {
    match (client, stake) {
        (Some(c), None) => Ok(format!("client:{c}")),
        (None, Some(k)) => match tessera_protocol::hexser::decode::<32>(k) {
            Ok(_) => Ok(format!("stake:{k}")),
            Err(reason) => Err(FlagError::Stake {
                key: k.into(),
                reason,
            }),
        },
        _ => Err(FlagError::CreditTarget),
    }
}

/// The tier `--tier NAME` names: one of [`default_tiers`].
pub fn tier(name: &str) -> Result<TierPolicy, FlagError> {
    default_tiers()
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| FlagError::Tier(name.into()))
}

/// The job `tessera submit` asks for (its scene listing empty until the upload): the
/// tier, the tile and batch sizes (the coordinator's when `None`) and the required
/// determinism class id (64 hex) checked.
pub fn job_submission(
    settings: RenderSettings,
    (frame_start, frame_end): (u32, u32),
    tier_name: &str,
    tile_size: Option<u32>,
    batch_size: Option<u32>,
    require_class: Option<&str>,
    min_memory_bytes: u64,
) -> Result<JobSubmission, FlagError> {
    let tier = tier(tier_name)?;
    if let Some(t) = tile_size.filter(|t| !TILE_SIZE.contains(t)) {
        return Err(FlagError::TileSize(t));
    }
    if let Some(b) = batch_size.filter(|b| !BATCH_SIZE.contains(b)) {
        return Err(FlagError::BatchSize(b));
    }
    let class_id = require_class
        .map(tessera_protocol::hexser::decode::<32>)
        .transpose()
        .map_err(FlagError::Class)?;
    Ok(JobSubmission {
        scene: SceneListing::default(),
        settings,
        frame_start,
        frame_end,
        tier: tier.name,
        tile_size,
        batch_size,
        requirements: Requirements {
            class_id,
            min_memory_bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_value_names_its_flag_variable_and_key() {
        let e = required::<String>(&None, "coordinator", "TESSERA_COORDINATOR").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--coordinator is required (or set TESSERA_COORDINATOR, or `coordinator` in the config file)"
        );
        assert_eq!(required(&Some(3), "slots", "TESSERA_SLOTS").unwrap(), 3);
    }

    #[test]
    fn a_secret_is_a_value_or_the_first_line_of_a_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "# comment\n  first  \nsecond\n").unwrap();
        let value = Some("v".to_string());
        assert_eq!(secret("token", &value, &None).unwrap(), value);
        assert_eq!(
            secret("token", &None, &Some(file.clone())).unwrap(),
            Some("first".to_string())
        );
        let e = secret("token", &value, &Some(file)).unwrap_err();
        assert_eq!(e.to_string(), "--token and --token-file: give one of them");
        let missing = dir.path().join("none");
        let e = secret("admin-token", &None, &Some(missing)).unwrap_err();
        assert!(e.to_string().starts_with("--admin-token-file "), "{e}");
    }

    #[test]
    fn a_client_config_checks_its_url_and_hides_its_token() {
        let url = Some("http://127.0.0.1:8700".to_string());
        let token = Some("secret-token".to_string());
        let cfg = ClientConfig::new(&url, &token, &None).unwrap();
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["token"], redacted("secret-token"));
        assert_eq!(json["coordinator"], "http://127.0.0.1:8700");
        let e = ClientConfig::new(&url, &None, &None).unwrap_err();
        assert!(e.to_string().starts_with("--token is required"), "{e}");
        let e = ClientConfig::new(&Some("nope".into()), &token, &None).unwrap_err();
        assert!(e.to_string().starts_with("--coordinator: "), "{e}");
    }

    #[test]
    fn a_credit_goes_to_one_client_or_one_stake() {
        let key = "ab".repeat(32);
        assert_eq!(credit_account(Some("acme"), None).unwrap(), "client:acme");
        assert_eq!(
            credit_account(None, Some(&key)).unwrap(),
            format!("stake:{key}")
        );
        let e = credit_account(None, Some("xyz")).unwrap_err().to_string();
        assert!(e.starts_with("--stake \"xyz\": "), "{e}");
        assert!(e.ends_with("(expected a node's public key, 64 hex)"), "{e}");
        assert!(matches!(
            credit_account(Some("a"), Some(&key)),
            Err(FlagError::CreditTarget)
        ));
    }

    #[test]
    fn a_submission_checks_its_tier_sizes_and_class() {
        let settings = RenderSettings {
            width: 8,
            height: 8,
            spp: 1,
            max_bounces: 0,
            seed: 1,
            camera: None,
            frame_rate: Default::default(),
        };
        let class = "cd".repeat(32);
        let job = |tier: &str, tile, batch, class: Option<&str>| {
            job_submission(settings.clone(), (2, 4), tier, tile, batch, class, 7)
        };
        let j = job("priority", Some(16), None, Some(&class)).unwrap();
        assert_eq!(
            (j.frame_start, j.frame_end, j.tier.as_str()),
            (2, 4, "priority")
        );
        assert_eq!(j.requirements.class_id, Some([0xcd; 32]));
        assert_eq!(j.requirements.min_memory_bytes, 7);
        let e = job("gold", None, None, None).unwrap_err().to_string();
        assert_eq!(e, "--tier \"gold\": expected economy, priority or trusted");
        let e = job("economy", Some(4), None, None).unwrap_err().to_string();
        assert_eq!(e, "--tile-size 4: must be 8..=4096");
        let e = job("economy", None, Some(0), None).unwrap_err().to_string();
        assert_eq!(e, "--batch-size 0: must be 1..=1024");
        let e = job("economy", None, None, Some("zz"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--require-class: "), "{e}");
    }
}
