//! An async HTTP client for the coordinator's API, used by nodes, verifiers and the
//! `tessera` client commands.
//!
//! Every error names the URL it was about; an answer with a 4xx/5xx status shows the
//! status and the server's [`ApiError`] text. Downloaded blobs are checked against their
//! BLAKE3 hash before anyone sees them, so a cache directory only ever holds files whose
//! content matches their listing.

use crate::{
    ApiError, BlobStored, ChallengeResponse, ControlOutcome, ControlRequest, CreditRequest,
    CreditResponse, JobAccepted, JobStatus, JobSubmission, LedgerView, NodeView, RegisterRequest,
    RegisterResponse, SceneListing, TaskWanted, WebhookDelivery, WebhookRequest, WebhookView,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::statements::{Registration, Role, Signed};
use tessera_protocol::wire::Capabilities;
use tokio::io::AsyncWriteExt;

/// How long connecting to the coordinator may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a JSON request (everything but blobs, bundles and frames) may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a transfer of bytes may stall between two reads (blobs, bundles, frames have
/// no total limit: a scene file may be hundreds of MiB).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest piece of a non-JSON error body repeated in an error message.
const MAX_ERROR_TEXT: usize = 300;

/// What went wrong talking to the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// The base URL (or a value put into a path) is unusable.
    #[error("bad url {url:?}: {reason}")]
    BadUrl {
        /// The URL or value.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request did not get an answer (connection refused, timeout, reset).
    #[error("{method} {url}: no answer from the coordinator: {source}")]
    Connect {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The coordinator answered with a 4xx/5xx status.
    #[error("{method} {url}: http {status}: {message}")]
    Status {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The server's [`ApiError::error`] text (or the start of its body).
        message: String,
    },
    /// The answer could not be read or decoded.
    #[error("{method} {url}: bad answer: {reason}")]
    Body {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A downloaded blob's bytes do not hash to the hash it was asked for.
    #[error("GET {url}: blob hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// Full URL.
        url: String,
        /// The hash asked for.
        expected: String,
        /// BLAKE3 of what came back.
        actual: String,
    },
    /// A scene listing is unusable (bad path, bad hash, missing entry).
    #[error("scene {scene}: {reason}")]
    BadListing {
        /// Scene hash, hex.
        scene: String,
        /// What is wrong, naming the path.
        reason: String,
    },
    /// A path in a scene listing would leave the scene folder or cannot be a file name
    /// ([`validate_scene_path`]).
    #[error("scene {scene}: {what} {path:?}: {source}")]
    BadScenePath {
        /// Scene hash, hex.
        scene: String,
        /// `path` (a listed file) or `entry` (the entry file).
        what: &'static str,
        /// The path as listed.
        path: String,
        /// What is wrong with it.
        source: ScenePathError,
    },
    /// Reading or writing the local cache failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A client of one coordinator, optionally authenticated with a bearer token. Cheap to
/// clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    /// A worker's session, renewed by registering again when the coordinator says it
    /// expired (401).
    session: Option<Arc<Session>>,
}

/// Registers again and returns the new session token.
pub type Renew = Box<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<String, ApiClientError>> + Send>,
        > + Send
        + Sync,
>;

/// A worker's session token and how to get a new one.
pub struct Session {
    token: std::sync::RwLock<String>,
    renew: Renew,
    /// One renewal at a time: requests that failed together register once.
    renewing: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("token", &"***").finish()
    }
}

impl Session {
    fn token(&self) -> String {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A fresh token after `stale` was refused: registers again unless another request
    /// already did since.
    async fn renew(&self, stale: &str) -> Result<String, ApiClientError> {
        let mut renewals = self.renewing.lock().await;
        let now = self.token();
        if now != stale {
            return Ok(now);
        }
        let fresh = (self.renew)().await?;
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        *renewals += 1;
        tracing::info!(renewals = *renewals, "session expired: registered again");
        Ok(fresh)
    }
}

impl ApiClient {
    /// A client of the coordinator at `base_url` (`http://host:port`, with or without a
    /// trailing slash or a path prefix), sending `token` as `Authorization: Bearer` when
    /// set. `http://` or `https://` (a coordinator behind a TLS-terminating proxy; the
    /// system's root certificates are trusted).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ApiClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let bad = |reason: &str| ApiClientError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let url = reqwest::Url::parse(&base).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        let http = http_client_builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| bad(&format!("cannot build the http client: {e}")))?;
        Ok(Self {
            base,
            http,
            token,
            session: None,
        })
    }

    /// The same client with another bearer token (e.g. the session token from
    /// [`ApiClient::register`]).
    pub fn with_token(&self, token: String) -> Self {
        Self {
            token: Some(token),
            session: None,
            ..self.clone()
        }
    }

    /// A client carrying a worker's session `token`, which calls `renew` (registering
    /// again) and retries once when the coordinator answers that the session expired.
    pub fn with_session(&self, token: String, renew: Renew) -> Self {
        Self {
            token: None,
            session: Some(Arc::new(Session {
                token: std::sync::RwLock::new(token),
                renew,
                renewing: tokio::sync::Mutex::new(0),
            })),
            ..self.clone()
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /v1/register/challenge`: a fresh single-use challenge.
    pub async fn challenge(&self) -> Result<ChallengeResponse, ApiClientError> {
        self.json(Method::POST, "/v1/register/challenge".into(), None::<&()>)
            .await
    }

    /// `POST /v1/register`.
    pub async fn register(
        &self,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, ApiClientError> {
        self.json(Method::POST, "/v1/register".into(), Some(req))
            .await
    }

    /// The whole registration of a node or verifier: fetch a challenge, sign a
    /// [`Registration`] for `role` naming it, the coordinator and `capabilities`, and
    /// register with the farm's worker token `farm_token`. The answer's `session` is the
    /// bearer token for the worker routes (see [`ApiClient::with_token`]).
    pub async fn register_worker(
        &self,
        role: Role,
        name: &str,
        key: &SecretKey,
        capabilities: Capabilities,
        farm_token: Option<String>,
    ) -> Result<RegisterResponse, ApiClientError> {
        let ch = self.challenge().await?;
        let challenge = parse_digest(&ch.challenge).map_err(|reason| ApiClientError::Body {
            method: "POST".into(),
            url: self.url("/v1/register/challenge"),
            reason: format!("challenge: {reason}"),
        })?;
        let registration = Registration {
            role,
            name: name.to_string(),
            challenge,
            coordinator: ch.coordinator,
            capabilities: capabilities.digest(),
        };
        let resp = self
            .register(&RegisterRequest {
                registration: Signed::sign(registration, key),
                capabilities,
                token: farm_token,
            })
            .await?;
        if resp.coordinator != ch.coordinator {
            return Err(ApiClientError::Body {
                method: "POST".into(),
                url: self.url("/v1/register"),
                reason: format!(
                    "coordinator key {} differs from the challenge's {}",
                    resp.coordinator.short(),
                    ch.coordinator.short()
                ),
            });
        }
        Ok(resp)
    }

    /// `PUT /v1/blobs/{blake3 hex}`: upload one scene file.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobStored, ApiClientError> {
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let path = format!("/v1/blobs/{hash}");
        let url = self.url(&path);
        let req = self
            .request(Method::PUT, &url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let stored: BlobStored =
            decode_json("PUT", &url, self.send("PUT", &url, req).await?).await?;
        if stored.hash != hash {
            return Err(ApiClientError::Body {
                method: "PUT".into(),
                url,
                reason: format!("stored hash {} differs from {hash}", stored.hash),
            });
        }
        Ok(stored)
    }

    /// `GET /v1/blobs/{hash}`: one scene file, checked against its hash.
    pub async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, ApiClientError> {
        let hash = blob_hash(hash)?;
        let url = self.url(&format!("/v1/blobs/{hash}"));
        let bytes = self.bytes(&url).await?;
        let actual = blake3::hash(&bytes).to_hex().to_string();
        if actual != hash {
            return Err(ApiClientError::HashMismatch {
                url,
                expected: hash,
                actual,
            });
        }
        Ok(bytes)
    }

    /// `POST /v1/jobs`: submit a job whose scene files were all uploaded.
    pub async fn submit(&self, job: &JobSubmission) -> Result<JobAccepted, ApiClientError> {
        self.json(Method::POST, "/v1/jobs".into(), Some(job)).await
    }

    /// `GET /v1/scenes/{hash}`: the files of a scene.
    pub async fn scene(&self, scene_hash: &str) -> Result<SceneListing, ApiClientError> {
        let id = path_segment(scene_hash)?;
        self.json(Method::GET, format!("/v1/scenes/{id}"), None::<&()>)
            .await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, job_id: &str) -> Result<JobStatus, ApiClientError> {
        let id = path_segment(job_id)?;
        self.json(Method::GET, format!("/v1/jobs/{id}"), None::<&()>)
            .await
    }

    /// `POST /v1/jobs/{id}/dispute`: dispute a finished job inside its challenge window.
    pub async fn dispute(&self, job_id: &str) -> Result<JobStatus, ApiClientError> {
        let id = path_segment(job_id)?;
        self.json(Method::POST, format!("/v1/jobs/{id}/dispute"), None::<&()>)
            .await
    }

    /// `POST /v1/jobs/control`: one control action (`cancel`, `pause`, `resume`,
    /// `requeue`, `priority` with `priority`) on each of `jobs`; an outcome per job.
    pub async fn control(
        &self,
        jobs: &[String],
        action: &str,
        priority: Option<i32>,
    ) -> Result<Vec<ControlOutcome>, ApiClientError> {
        let body = ControlRequest {
            jobs: jobs.to_vec(),
            action: action.into(),
            priority,
        };
        self.json(Method::POST, "/v1/jobs/control".into(), Some(&body))
            .await
    }

    /// `GET /v1/tasks/{id}/wanted` (nodes): whether the coordinator still wants this node
    /// to render the task (its job is not paused or over, nobody else holds it).
    pub async fn task_wanted(&self, task_id: &str) -> Result<bool, ApiClientError> {
        let id = path_segment(task_id)?;
        let answer: TaskWanted = self
            .json(Method::GET, format!("/v1/tasks/{id}/wanted"), None::<&()>)
            .await?;
        Ok(answer.wanted)
    }

    /// `GET /v1/jobs`.
    pub async fn jobs(&self) -> Result<Vec<JobStatus>, ApiClientError> {
        self.json(Method::GET, "/v1/jobs".into(), None::<&()>).await
    }

    /// `GET /v1/jobs/{id}/bundle`: the proof bundle, as the raw JSON bytes.
    pub async fn bundle(&self, job_id: &str) -> Result<Vec<u8>, ApiClientError> {
        let id = path_segment(job_id)?;
        self.bytes(&self.url(&format!("/v1/jobs/{id}/bundle")))
            .await
    }

    /// `GET /v1/jobs/{id}/frames/{frame}`: a finished frame's canonical bytes (linear
    /// RGBA, IEEE half floats, little-endian, row-major, no header).
    pub async fn frame(&self, job_id: &str, frame: u32) -> Result<Vec<u8>, ApiClientError> {
        let id = path_segment(job_id)?;
        self.bytes(&self.url(&format!("/v1/jobs/{id}/frames/{frame}")))
            .await
    }

    /// `GET /v1/nodes`: registered nodes and verifiers.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ApiClientError> {
        self.json(Method::GET, "/v1/nodes".into(), None::<&()>)
            .await
    }

    /// `GET /v1/ledger`.
    pub async fn ledger(&self) -> Result<LedgerView, ApiClientError> {
        self.json(Method::GET, "/v1/ledger".into(), None::<&()>)
            .await
    }

    /// `POST /v1/credits` (with the operator's admin token).
    pub async fn credit(&self, req: &CreditRequest) -> Result<CreditResponse, ApiClientError> {
        self.json(Method::POST, "/v1/credits".into(), Some(req))
            .await
    }

    /// `POST /v1/webhooks`: add a webhook for this client's jobs.
    pub async fn add_webhook(&self, req: &WebhookRequest) -> Result<WebhookView, ApiClientError> {
        self.json(Method::POST, "/v1/webhooks".into(), Some(req))
            .await
    }

    /// `GET /v1/webhooks`: this client's webhooks (without their secrets).
    pub async fn webhooks(&self) -> Result<Vec<WebhookView>, ApiClientError> {
        self.json(Method::GET, "/v1/webhooks".into(), None::<&()>)
            .await
    }

    /// `GET /v1/webhooks/{id}/deliveries`: the hook's latest deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
    ) -> Result<Vec<WebhookDelivery>, ApiClientError> {
        let id = path_segment(id)?;
        self.json(
            Method::GET,
            format!("/v1/webhooks/{id}/deliveries"),
            None::<&()>,
        )
        .await
    }

    /// `DELETE /v1/webhooks/{id}`: remove one of this client's webhooks (with the
    /// deliveries still waiting for it); the answer is the hook removed.
    pub async fn remove_webhook(&self, id: &str) -> Result<WebhookView, ApiClientError> {
        let id = path_segment(id)?;
        self.json(Method::DELETE, format!("/v1/webhooks/{id}"), None::<&()>)
            .await
    }

    /// Make the scene `scene_hash` available under `cache_root/<scene_hash>/` and return
    /// the path of its entry file. Every path of the listing is checked first
    /// ([`validate_scene_path`]); files already there whose hash matches are reused;
    /// missing or stale ones are downloaded to a temporary file, checked against their
    /// hash, and renamed into place, so a crash never leaves a wrong file under its name.
    pub async fn download_scene(
        &self,
        scene_hash: &str,
        cache_root: &Path,
    ) -> Result<PathBuf, ApiClientError> {
        let scene = scene_hash.to_string();
        let bad = |reason: String| ApiClientError::BadListing {
            scene: scene.clone(),
            reason,
        };
        let folder_name = blob_hash(scene_hash)
            .map_err(|_| bad("scene hash must be 64 lowercase hex digits".to_string()))?;
        let listing = self.scene(scene_hash).await?;
        let mut files = Vec::with_capacity(listing.files.len());
        for (path, hash) in &listing.files {
            let rel = validate_scene_path(path).map_err(|source| ApiClientError::BadScenePath {
                scene: scene.clone(),
                what: "path",
                path: path.clone(),
                source,
            })?;
            let hash = blob_hash(hash).map_err(|_| {
                bad(format!(
                    "path {path:?}: hash {hash:?} is not 64 lowercase hex digits"
                ))
            })?;
            files.push((rel, hash));
        }
        if !listing.files.contains_key(&listing.entry) {
            return Err(bad(format!(
                "entry {:?} is not one of the listed files",
                listing.entry
            )));
        }
        let dir = cache_root.join(folder_name);
        for (rel, hash) in &files {
            let target = dir.join(rel);
            if file_has_hash(&target, hash).await? {
                tracing::debug!(scene = %scene, file = %rel.display(), "cached scene file reused");
                continue;
            }
            self.download_blob_to(hash, &target).await?;
            tracing::debug!(scene = %scene, file = %rel.display(), "scene file downloaded");
        }
        let entry =
            validate_scene_path(&listing.entry).map_err(|source| ApiClientError::BadScenePath {
                scene: scene.clone(),
                what: "entry",
                path: listing.entry.clone(),
                source,
            })?;
        Ok(dir.join(entry))
    }

    /// Stream blob `hash` into a temporary file next to `target`, check its hash, and
    /// rename it to `target`.
    async fn download_blob_to(&self, hash: &str, target: &Path) -> Result<(), ApiClientError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ApiClientError::Io { path, source }
        };
        let parent = target.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(
            ".{name}.{}-{}.part",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let url = self.url(&format!("/v1/blobs/{hash}"));
        let result = async {
            let mut resp = self
                .send("GET", &url, self.request(Method::GET, &url))
                .await?;
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
            let mut hasher = blake3::Hasher::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| ApiClientError::Body {
                method: "GET".into(),
                url: url.clone(),
                reason: format!("reading the body: {e}"),
            })? {
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io(&tmp))?;
            }
            file.flush().await.map_err(io(&tmp))?;
            file.sync_all().await.map_err(io(&tmp))?;
            drop(file);
            let actual = hasher.finalize().to_hex().to_string();
            if actual != hash {
                return Err(ApiClientError::HashMismatch {
                    url: url.clone(),
                    expected: hash.to_string(),
                    actual,
                });
            }
            tokio::fs::rename(&tmp, target).await.map_err(io(target))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let req = self.http.request(method, url);
        match (&self.session, &self.token) {
            (Some(s), _) => req.bearer_auth(s.token()),
            (None, Some(t)) => req.bearer_auth(t),
            (None, None) => req,
        }
    }

    /// Send `req`; an error status becomes [`ApiClientError::Status`].
    async fn send(
        &self,
        method: &str,
        url: &str,
        req: RequestBuilder,
    ) -> Result<Response, ApiClientError> {
        let connect = |source| ApiClientError::Connect {
            method: method.to_string(),
            url: url.to_string(),
            source,
        };
        // A session's request is kept to be sent again with a renewed token.
        let again = self
            .session
            .as_ref()
            .and_then(|s| Some((s.clone(), s.token(), req.try_clone()?)));
        let mut resp = req.send().await.map_err(connect)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            if let Some((session, stale, req)) = again {
                let fresh = session.renew(&stale).await?;
                let mut retry = req.build().map_err(connect)?;
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {fresh}"))
                    .map_err(|e| ApiClientError::Body {
                        method: method.to_string(),
                        url: url.to_string(),
                        reason: format!("session token: {e}"),
                    })?;
                retry
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, value);
                resp = self.http.execute(retry).await.map_err(connect)?;
            }
        }
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(ApiClientError::Status {
            method: method.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            message: error_message(status, &body),
        })
    }

    async fn json<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<T, ApiClientError> {
        let url = self.url(&path);
        let m = method.to_string();
        let mut req = self.request(method, &url).timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(&m, &url, req).await?;
        decode_json(&m, &url, resp).await
    }

    async fn bytes(&self, url: &str) -> Result<Vec<u8>, ApiClientError> {
        let resp = self
            .send("GET", url, self.request(Method::GET, url))
            .await?;
        let bytes = resp.bytes().await.map_err(|e| ApiClientError::Body {
            method: "GET".into(),
            url: url.to_string(),
            reason: format!("reading the body: {e}"),
        })?;
        Ok(bytes.to_vec())
    }
}

async fn decode_json<T: DeserializeOwned>(
    method: &str,
    url: &str,
    resp: Response,
) -> Result<T, ApiClientError> {
    let body_err = |reason: String| ApiClientError::Body {
        method: method.to_string(),
        url: url.to_string(),
        reason,
    };
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| body_err(format!("reading the body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| body_err(format!("json: {e}")))
}

/// The server's [`ApiError`] text, or the start of a body that is not one.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        return e.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no error text")
            .to_string();
    }
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `s` as a blob hash (64 lowercase hex digits), or an error naming it.
fn blob_hash(s: &str) -> Result<String, ApiClientError> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_string())
    } else {
        Err(ApiClientError::BadUrl {
            url: s.to_string(),
            reason: "a blob hash is 64 lowercase hex digits".into(),
        })
    }
}

/// `s` as one URL path segment (ids and hashes: letters, digits, `-`, `_`, `.`).
fn path_segment(s: &str) -> Result<&str, ApiClientError> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s)
    } else {
        Err(ApiClientError::BadUrl {
            url: s.to_string(),
            reason: "an id must be letters, digits, '-', '_' or '.'".into(),
        })
    }
}

/// Why a hex digest from the coordinator is unusable.
#[derive(Debug, thiserror::Error)]
enum DigestError {
    /// Not hex at all.
    #[error("{value:?} is not hex: {source}")]
    NotHex {
        /// The text received.
        value: String,
        /// The decoder's error.
        source: hex::FromHexError,
    },
    /// Hex, but not 32 bytes.
    #[error("{len} bytes, expected 32")]
    Length {
        /// How many bytes it decodes to.
        len: usize,
    },
}

fn parse_digest(s: &str) -> Result<[u8; 32], DigestError> {
    let bytes = hex::decode(s).map_err(|source| DigestError::NotHex {
        value: s.to_string(),
        source,
    })?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| DigestError::Length { len: b.len() })
}

/// What is wrong with one relative path of a [`SceneListing`] ([`validate_scene_path`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScenePathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A backslash, colon or control character (a drive, another separator).
    #[error("character {0:?} is not allowed")]
    Character(char),
    /// Two slashes in a row, or one at the end.
    #[error("empty path component")]
    EmptyComponent,
    /// A `.` or `..` component.
    #[error("{0:?} component")]
    DotComponent(&'static str),
}

/// Check one relative path of a [`SceneListing`] and turn it into a local relative path.
///
/// Accepted: forward slashes between non-empty components, none of them `.` or `..`, not
/// absolute, no backslash, colon or control character (so nothing can name a drive, a
/// parent folder or a file outside the scene folder on any platform).
pub fn validate_scene_path(path: &str) -> Result<PathBuf, ScenePathError> {
    if path.is_empty() {
        return Err(ScenePathError::Empty);
    }
    if path.starts_with('/') {
        return Err(ScenePathError::Absolute);
    }
    if let Some(c) = path
        .chars()
        .find(|c| *c == '\\' || *c == ':' || c.is_control())
    {
        return Err(ScenePathError::Character(c));
    }
    let mut out = PathBuf::new();
    for component in path.split('/') {
        match component {
            "" => return Err(ScenePathError::EmptyComponent),
            "." => return Err(ScenePathError::DotComponent(".")),
            ".." => return Err(ScenePathError::DotComponent("..")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether `path` exists and its bytes hash to `hash`.
async fn file_has_hash(path: &Path, hash: &str) -> Result<bool, ApiClientError> {
    let path_buf = path.to_path_buf();
    let hash = hash.to_string();
    let check = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let mut file = match std::fs::File::open(&path_buf) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            return Ok(false);
        }
        let mut hasher = blake3::Hasher::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hasher.finalize().to_hex().as_str() == hash)
    })
    .await;
    match check {
        Ok(r) => r.map_err(|source| ApiClientError::Io {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) => Err(ApiClientError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("hashing task failed: {e}")),
        }),
    }
}

/// A reqwest client builder whose TLS (rustls) has its crypto provider, ring, installed
/// for the process: every reqwest client of the workspace is built from one (a client
/// built otherwise would find no provider). TLS verifies servers against the system's
/// root certificates.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Err: another provider was installed first; reqwest uses that one. rustls
        // deprecates ring's provider for lacking post-quantum key exchange; aws-lc, which
        // has it, needs cmake to build, and classical TLS 1.2/1.3 is what receivers and
        // proxies speak today.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let _ = provider.install_default();
    });
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_paths_are_validated() {
        for good in [
            "scene.glb",
            "a/b/c.bin",
            "textures/wood 2.png",
            "..a/b..",
            "a.b/.c",
        ] {
            assert!(validate_scene_path(good).is_ok(), "{good}");
        }
        assert_eq!(
            validate_scene_path("a/b/c.bin").unwrap(),
            Path::new("a").join("b").join("c.bin")
        );
        for (bad, why, text) in [
            ("", ScenePathError::Empty, "empty path"),
            ("/etc/passwd", ScenePathError::Absolute, "absolute path"),
            (
                "../x.bin",
                ScenePathError::DotComponent(".."),
                "\"..\" component",
            ),
            (
                "a/../../x",
                ScenePathError::DotComponent(".."),
                "\"..\" component",
            ),
            (
                "a/./b",
                ScenePathError::DotComponent("."),
                "\".\" component",
            ),
            (
                "a//b",
                ScenePathError::EmptyComponent,
                "empty path component",
            ),
            ("a/", ScenePathError::EmptyComponent, "empty path component"),
            (
                "a\\b",
                ScenePathError::Character('\\'),
                "character '\\\\' is not allowed",
            ),
            (
                "C:x",
                ScenePathError::Character(':'),
                "character ':' is not allowed",
            ),
            (
                "a\0b",
                ScenePathError::Character('\0'),
                "character '\\0' is not allowed",
            ),
        ] {
            let err = validate_scene_path(bad).unwrap_err();
            assert_eq!(err, why, "{bad:?}");
            assert_eq!(err.to_string(), text, "{bad:?}");
        }
    }

    #[test]
    fn base_url_is_checked() {
        assert!(ApiClient::new("http://127.0.0.1:8080/", None).is_ok());
        assert_eq!(
            ApiClient::new("http://h:1/", None).unwrap().base_url(),
            "http://h:1"
        );
        let err = ApiClient::new("ftp://h", None).unwrap_err().to_string();
        assert!(err.contains("ftp://h") && err.contains("scheme"), "{err}");
        assert!(ApiClient::new("not a url", None).is_err());
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert!(path_segment("ab12").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a%2f"] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
        assert!(blob_hash(&"a".repeat(64)).is_ok());
        assert!(blob_hash(&"A".repeat(64)).is_err());
        assert!(blob_hash("abc").is_err());
    }

    #[test]
    fn error_text_comes_from_the_api_error_body() {
        let body = serde_json::to_vec(&ApiError {
            error: "job 12: not found".into(),
        })
        .unwrap();
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, &body),
            "job 12: not found"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
        let long = "x".repeat(1000);
        assert!(error_message(StatusCode::BAD_GATEWAY, long.as_bytes()).len() < 400);
    }

    #[tokio::test]
    async fn connection_errors_name_the_url() {
        // A port that was free a moment ago: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let client = ApiClient::new(&base, None).unwrap();
        let err = client.jobs().await.unwrap_err().to_string();
        assert!(err.contains(&format!("GET {base}/v1/jobs")), "{err}");
    }

    #[tokio::test]
    async fn cached_files_are_reused_only_when_their_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bin");
        let hash = blake3::hash(b"hello").to_hex().to_string();
        assert!(!file_has_hash(&f, &hash).await.unwrap());
        std::fs::write(&f, b"hello").unwrap();
        assert!(file_has_hash(&f, &hash).await.unwrap());
        std::fs::write(&f, b"hellO").unwrap();
        assert!(!file_has_hash(&f, &hash).await.unwrap());
    }
}
