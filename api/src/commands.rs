//! What the `tessera` client commands do over the API, without their printing: upload a
//! scene's files, wait for a job, download and check its proof bundle and frames, and sum
//! a ledger by kind of account. The binary keeps the flags, the configuration and the
//! output.

use crate::client::{ApiClient, ApiClientError};
use crate::{JobStatus, LedgerView, SceneListing};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tessera_protocol::bundle::ProofBundle;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A request failed.
    #[error(transparent)]
    Api(#[from] ApiClientError),
    /// A scene file could not be read.
    #[error("reading scene file {}", path.display())]
    ReadSceneFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A scene file could not be uploaded.
    #[error("uploading scene file {}", path.display())]
    UploadSceneFile {
        /// The file.
        path: PathBuf,
        /// What the API said.
        #[source]
        source: ApiClientError,
    },
    /// The job failed.
    #[error("job {job} failed: {reason}")]
    JobFailed {
        /// The job id.
        job: String,
        /// The coordinator's reason.
        reason: String,
    },
    /// The job is not done and the caller does not wait.
    #[error(
        "job {job} is {state}, not done ({rendered}/{total} tiles rendered, {verified} \
         verified); pass --wait to wait for it"
    )]
    NotDone {
        /// The job id.
        job: String,
        /// Its state.
        state: String,
        /// Tiles rendered.
        rendered: u32,
        /// Tiles in all.
        total: u32,
        /// Tiles verified.
        verified: u32,
    },
    /// The job is not done after the time the caller waits.
    #[error(
        "job {job} is still {state} after {secs} s ({rendered}/{total} tiles rendered, \
         {verified} verified)"
    )]
    StillRunning {
        /// The job id.
        job: String,
        /// Its state.
        state: String,
        /// Seconds waited.
        secs: u64,
        /// Tiles rendered.
        rendered: u32,
        /// Tiles in all.
        total: u32,
        /// Tiles verified.
        verified: u32,
    },
    /// The bundle is not valid JSON of a proof bundle.
    #[error("GET {url}: not a valid proof bundle")]
    BadBundle {
        /// Where it came from.
        url: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The bundle is another job's.
    #[error("GET {url}: the bundle is for job {bundle_job}, not {job}")]
    WrongJob {
        /// Where it came from.
        url: String,
        /// The job the bundle is for.
        bundle_job: String,
        /// The job asked for.
        job: String,
    },
    /// A frame has the wrong number of bytes.
    #[error(
        "job {job} frame {frame}: {len} bytes, expected {expected} ({width}x{height} RGBA \
         half floats)"
    )]
    FrameSize {
        /// The job id.
        job: String,
        /// The frame.
        frame: u32,
        /// Bytes received.
        len: usize,
        /// Bytes expected.
        expected: usize,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
}

/// Upload a scene's files (`local`: path relative to the scene's folder → local file) as
/// blobs; the listing with `entry` as its entry file, and how many blobs were new to the
/// coordinator.
pub async fn upload_scene(
    client: &ApiClient,
    entry: String,
    local: &BTreeMap<String, PathBuf>,
) -> Result<(SceneListing, usize), CommandError> {
    let mut listing = SceneListing {
        entry,
        files: BTreeMap::new(),
    };
    let mut fresh = 0;
    for (key, file) in local {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| CommandError::ReadSceneFile {
                path: file.clone(),
                source,
            })?;
        let stored =
            client
                .put_blob(bytes)
                .await
                .map_err(|source| CommandError::UploadSceneFile {
                    path: file.clone(),
                    source,
                })?;
        tracing::debug!(file = %key, hash = %stored.hash, size = stored.size, fresh = stored.fresh, "scene file uploaded");
        fresh += usize::from(stored.fresh);
        listing.files.insert(key.clone(), stored.hash);
    }
    Ok((listing, fresh))
}

/// How [`wait_until_done`] waits.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    /// Wait while the job runs (else a job that is not done is an error).
    pub wait: bool,
    /// Give up after this long (`None`: never).
    pub timeout: Option<Duration>,
    /// Time between two status requests.
    pub poll: Duration,
}

/// The job's status once it is done. A failed job is an error; so is one that is not
/// done, unless `how.wait`, and then one still not done after `how.timeout`. While
/// waiting, a coordinator that does not answer (restarting) is waited for too, at least a
/// second apart.
pub async fn wait_until_done(
    client: &ApiClient,
    job: &str,
    how: &Wait,
) -> Result<JobStatus, CommandError> {
    wait_until_done_with(client, job, how, &mut |_| {}).await
}

/// [`wait_until_done`], handing `on_status` every status it reads (the caller draws the
/// progress; nothing is printed here).
pub async fn wait_until_done_with(
    client: &ApiClient,
    job: &str,
    how: &Wait,
    on_status: &mut (dyn FnMut(&JobStatus) + Send),
) -> Result<JobStatus, CommandError> {
    let started = Instant::now();
    loop {
        let s = match client.job(job).await {
            Ok(s) => s,
            Err(e @ ApiClientError::Connect { .. }) if how.wait => {
                if how.timeout.is_some_and(|t| started.elapsed() >= t) {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "coordinator unreachable; still waiting");
                tokio::time::sleep(how.poll.max(Duration::from_secs(1))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        on_status(&s);
        match s.state.as_str() {
            "done" => return Ok(s),
            "failed" => {
                return Err(CommandError::JobFailed {
                    job: job.into(),
                    reason: s.error.as_deref().unwrap_or("no reason given").into(),
                })
            }
            state if !how.wait => {
                return Err(CommandError::NotDone {
                    job: job.into(),
                    state: state.into(),
                    rendered: s.tiles_rendered,
                    total: s.tiles_total,
                    verified: s.tiles_verified,
                })
            }
            state => {
                if let Some(t) = how.timeout {
                    if started.elapsed() >= t {
                        return Err(CommandError::StillRunning {
                            job: job.into(),
                            state: state.into(),
                            secs: t.as_secs(),
                            rendered: s.tiles_rendered,
                            total: s.tiles_total,
                            verified: s.tiles_verified,
                        });
                    }
                }
                tracing::debug!(job, state, "waiting");
                tokio::time::sleep(how.poll).await;
            }
        }
    }
}

/// Download job `job`'s proof bundle: the bundle, checked to be that job's, and its bytes
/// as they came.
pub async fn fetch_bundle(
    client: &ApiClient,
    job: &str,
) -> Result<(ProofBundle, Vec<u8>), CommandError> {
    let url = format!("{}/v1/jobs/{}/bundle", client.base_url(), job);
    let bytes = client.bundle(job).await?;
    let bundle: ProofBundle =
        serde_json::from_slice(&bytes).map_err(|source| CommandError::BadBundle {
            url: url.clone(),
            source,
        })?;
    let bundle_job = hex::encode(bundle.manifest.statement.job_id);
    if bundle_job != job.to_ascii_lowercase() {
        return Err(CommandError::WrongJob {
            url,
            bundle_job,
            job: job.into(),
        });
    }
    Ok((bundle, bytes))
}

/// Download frame `frame` of job `job`, checked to be `width × height` canonical pixels
/// (RGBA half floats). Whether they are the committed tiles is the verifier's check.
pub async fn fetch_frame(
    client: &ApiClient,
    job: &str,
    frame: u32,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, CommandError> {
    let pixels = client.frame(job, frame).await?;
    let expected = width as usize * height as usize * 8;
    if pixels.len() != expected {
        return Err(CommandError::FrameSize {
            job: job.into(),
            frame,
            len: pixels.len(),
            expected,
            width,
            height,
        });
    }
    Ok(pixels)
}

/// What an account is, by its name (`tessera_protocol::payments::account`): `external`,
/// `client`, `escrow`, `node`, `stake`, `hold-back`, `dispute`, `treasury` or `other`.
pub fn account_kind(account: &str) -> &'static str {
    match account.split(':').next().unwrap_or_default() {
        "external" => "external",
        "client" => "client",
        "escrow" => "escrow",
        "node" => "node",
        "stake" => "stake",
        "holdback" => "hold-back",
        "dispute" => "dispute",
        "treasury" => "treasury",
        _ => "other",
    }
}

/// The sum of the balances of a ledger's accounts of one [`account_kind`], in µcr.
pub fn kind_total(ledger: &LedgerView, kind: &str) -> i64 {
    ledger
        .accounts
        .iter()
        .filter(|a| account_kind(&a.account) == kind)
        .map(|a| a.balance)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_kinded_by_their_prefix() {
        assert_eq!(account_kind("holdback:ab:cd"), "hold-back");
        assert_eq!(account_kind("client:alice"), "client");
        assert_eq!(account_kind("external:bank"), "external");
        assert_eq!(account_kind("nonsense"), "other");
    }

    #[test]
    fn messages_name_the_job_and_the_numbers() {
        let e = CommandError::NotDone {
            job: "ab12".into(),
            state: "rendering".into(),
            rendered: 3,
            total: 8,
            verified: 1,
        };
        assert_eq!(
            e.to_string(),
            "job ab12 is rendering, not done (3/8 tiles rendered, 1 verified); pass --wait to wait for it"
        );
        let e = CommandError::FrameSize {
            job: "ab12".into(),
            frame: 2,
            len: 10,
            expected: 32,
            width: 2,
            height: 2,
        };
        assert_eq!(
            e.to_string(),
            "job ab12 frame 2: 10 bytes, expected 32 (2x2 RGBA half floats)"
        );
    }
}
