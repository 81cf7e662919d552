//! The coordinator's HTTP API (version 1; types in `tessera_api`): registration of nodes
//! and verifiers, content-addressed scene uploads, job submission and status, results,
//! nodes and the ledger. Every error is an `ApiError` JSON body naming what is wrong.
//!
//! Nothing a stranger sends costs more than a few kilobytes before it is authenticated:
//! every route but registration sits behind an authentication layer that runs before
//! any body is read ([`authenticate`]); registration bodies are capped at
//! [`PUBLIC_BODY_LIMIT`]; uploads stream to a temporary file, capped per client and in
//! total; connections are capped and cut when their headers or body stall ([`serve`]).
//! Every read is scoped to the client that owns what it reads: another client's job,
//! scene or blob is "not found", and the operator's views (nodes, the whole ledger,
//! credits) need the admin token.

use super::service::{check_settings, Service, ServiceError, Submission, MAX_EDGE};
use super::{now_ms, DaemonConfig, SceneInspector, Shared};
use crate::machine::{Control, JobState};
use crate::store::Store;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_api::{
    AccountBalance, ApiError, BlobStored, ChallengeResponse, ControlOutcome, ControlRequest,
    CreditRequest, CreditResponse, JobAccepted, JobEstimate, JobStatus, JobSubmission, LedgerView,
    NodeView, PriorityRequest, RegisterRequest, RegisterResponse, SceneListing, TaskWanted,
    WebhookDelivery, WebhookRequest, WebhookView, CONTROL_ACTIONS,
};
use tessera_protocol::keys::PublicKey;
use tessera_protocol::payments::account;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Largest body of a route anyone may call (registration).
pub const PUBLIC_BODY_LIMIT: usize = 64 << 10;
/// Largest JSON body of an authenticated route (a submission lists up to 4,096 files).
pub const JSON_BODY_LIMIT: usize = 4 << 20;
/// Longest error text an answer or a log line carries.
const MAX_MESSAGE: usize = 1024;
/// Jobs one `POST /v1/jobs/control` may name.
const MAX_CONTROL_JOBS: usize = 500;
/// Scene inspections run at once (each reads and hashes a whole scene).
const INSPECTIONS: usize = 2;
/// How long a submission waits for an inspection slot before it is turned away.
const INSPECTION_WAIT: Duration = Duration::from_secs(60);
/// At most one warning about refused tokens per this long (the rest are counted).
const WARN_EVERY_MS: u64 = 10_000;

/// How the API guards itself: the HTTP side of [`DaemonConfig`].
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// A request whose headers are not all in within this long is cut off (also the
    /// longest a kept-alive connection may sit idle).
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Blob uploads in progress at once, in total...
    pub max_uploads: usize,
    /// ...and per client.
    pub max_uploads_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_uploads: 16,
            max_uploads_per_client: 4,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub(super) shared: Arc<Shared>,
    /// BLAKE3(token) → client name: a lookup by hash leaks nothing of the token through
    /// timing.
    pub(super) clients: Arc<HashMap<[u8; 32], String>>,
    /// BLAKE3 of the operator's token (crediting, nodes, the whole ledger).
    pub(super) admin: Option<[u8; 32]>,
    data_dir: PathBuf,
    max_blob_bytes: u64,
    max_client_bytes: u64,
    inspector: Option<SceneInspector>,
    namespace: String,
    uploads: Arc<Uploads>,
    inspections: Arc<Semaphore>,
    exports: Arc<Exports>,
    refusals: Arc<Throttle>,
}

impl ApiState {
    pub(crate) fn new(shared: Arc<Shared>, cfg: &DaemonConfig) -> Self {
        let clients = client_tokens(&cfg.api_tokens)
            .into_iter()
            .map(|(client, token)| (digest(&token), client))
            .collect();
        Self {
            shared,
            clients: Arc::new(clients),
            admin: cfg.admin_token.as_deref().map(digest),
            data_dir: cfg.data_dir.clone(),
            max_blob_bytes: cfg.max_blob_bytes,
            max_client_bytes: cfg.limits.max_client_bytes,
            inspector: cfg.scene_inspector.clone(),
            namespace: cfg.namespace.clone(),
            uploads: Arc::new(Uploads::new(&cfg.http)),
            inspections: Arc::new(Semaphore::new(INSPECTIONS)),
            exports: Arc::new(Exports::new(&cfg.data_dir)),
            refusals: Arc::new(Throttle::default()),
        }
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.data_dir.join("blobs").join(hash)
    }
}

/// `--api-token` values as (client, token): `CLIENT=TOKEN`, or `TOKEN` for client
/// `default`.
pub fn client_tokens(api_tokens: &[String]) -> Vec<(String, String)> {
    api_tokens
        .iter()
        .map(|t| match t.split_once('=') {
            Some((client, token)) => (client.to_string(), token.to_string()),
            None => ("default".to_string(), t.clone()),
        })
        .collect()
}

fn digest(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// Text from a request, made safe to answer and log: control characters escaped (no
/// forged log lines), at most [`MAX_MESSAGE`] characters.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE));
    for (n, c) in text.chars().enumerate() {
        if n >= MAX_MESSAGE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error answer.
struct Fail(StatusCode, String);

impl Fail {
    fn new(status: StatusCode, message: impl AsRef<str>) -> Self {
        Self(status, sanitize(message.as_ref()))
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

/// The HTTP status of a service error, for the API and the dashboard alike.
pub(super) fn status_of_error(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
        ServiceError::Unavailable(_) => StatusCode::CONFLICT,
        ServiceError::Funds(_) => StatusCode::PAYMENT_REQUIRED,
        ServiceError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
    }
}

impl From<ServiceError> for Fail {
    fn from(e: ServiceError) -> Self {
        let status = status_of_error(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("api: {}", sanitize(&e.to_string()));
        }
        Fail::new(status, e.to_string())
    }
}

impl From<crate::store::StoreError> for Fail {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

type Answer<T> = Result<T, Fail>;

/// A JSON route's body, or its rejection (too large: 413; broken off or too slow) as an
/// `ApiError` naming `what`.
fn body_of(what: &str, body: Result<Bytes, BytesRejection>) -> Answer<Bytes> {
    body.map_err(|e| {
        if timed_out(&e) {
            return Fail::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("{what} body: the client stopped sending it"),
            );
        }
        Fail::new(e.status(), format!("{what} body: {}", e.body_text()))
    })
}

/// Whether a body failed because it stalled ([`HttpLimits::body_timeout`]).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The body length a request declares (`Content-Length`), if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// A refusal sent before the body was read: the connection closes with it, so the
/// unread body is never taken.
fn refuse_unread(fail: Fail) -> Response {
    let mut answer = fail.into_response();
    answer.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    answer
}

/// Refuse a request whose declared body (`Content-Length`) is over `limit` at once, with
/// 413, before any of it is read (a body without a length is cut at the limit while it
/// is read).
async fn declared_limit(State(limit): State<usize>, req: Request, next: Next) -> Response {
    match declared_length(req.headers()) {
        Some(n) if n > limit as u64 => refuse_unread(Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is {n} bytes, more than this route takes ({limit} bytes)"),
        )),
        _ => next.run(req).await,
    }
}

/// Logs a kind of warning at most once per [`WARN_EVERY_MS`], with how many were
/// left out in between, so a stranger's requests cannot flood the log.
#[derive(Default)]
struct Throttle {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// `Some(left out since the last one)` when a warning may be logged now.
    fn allow(&self, now_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

// --- authentication ------------------------------------------------------------------

/// Who is calling, as the authentication layer found it (a request extension).
#[derive(Clone, Debug)]
enum Caller {
    /// A client, by name.
    Client(String),
    /// A registered node or verifier, by key.
    Worker(PublicKey),
    /// The operator.
    Admin,
}

impl Caller {
    fn client(&self) -> Answer<&str> {
        match self {
            Caller::Client(c) => Ok(c),
            _ => Err(Fail::new(StatusCode::FORBIDDEN, "clients only")),
        }
    }
}

/// Who may call a group of routes.
#[derive(Clone, Copy)]
struct Allow {
    clients: bool,
    workers: bool,
    admin: bool,
}

const CLIENTS: Allow = Allow {
    clients: true,
    workers: false,
    admin: false,
};
const CLIENTS_AND_WORKERS: Allow = Allow {
    clients: true,
    workers: true,
    admin: false,
};
const ANYONE: Allow = Allow {
    clients: true,
    workers: true,
    admin: true,
};
const WORKERS: Allow = Allow {
    clients: false,
    workers: true,
    admin: false,
};
const CLIENTS_AND_ADMIN: Allow = Allow {
    clients: true,
    workers: false,
    admin: true,
};
const ADMIN: Allow = Allow {
    clients: false,
    workers: false,
    admin: true,
};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The authentication layer: find the caller from the `Authorization` header alone and
/// refuse before the handler, and so before any of the body is read. A refused
/// request's body is never read: the connection closes with the answer.
async fn authenticate(
    State((st, allow)): State<(ApiState, Allow)>,
    mut req: Request,
    next: Next,
) -> Response {
    match st.caller(req.headers(), allow).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(fail) => refuse_unread(fail),
    }
}

impl ApiState {
    async fn caller(&self, headers: &HeaderMap, allow: Allow) -> Answer<Caller> {
        let Some(token) = bearer(headers) else {
            return Err(Fail::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer TOKEN header",
            ));
        };
        let d = digest(token);
        let wrong_kind = || {
            Fail::new(
                StatusCode::FORBIDDEN,
                if allow.admin && !allow.clients {
                    "this needs the operator's admin token"
                } else {
                    "this token may not do this"
                },
            )
        };
        if self.admin.is_some_and(|a| a == d) {
            return if allow.admin {
                Ok(Caller::Admin)
            } else {
                Err(wrong_kind())
            };
        }
        if let Some(client) = self.clients.get(&d) {
            return if allow.clients {
                Ok(Caller::Client(client.clone()))
            } else {
                Err(wrong_kind())
            };
        }
        if allow.workers {
            let t = token.to_string();
            match self
                .shared
                .with(move |s| s.worker_by_session(&t, now_ms()))
                .await
            {
                Ok(Some(w)) => return Ok(Caller::Worker(w.key)),
                Ok(None) => {}
                // An expired session: the worker registers again.
                Err(ServiceError::Forbidden(m)) => {
                    return Err(Fail::new(StatusCode::UNAUTHORIZED, m))
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(left_out) = self.refusals.allow(now_ms()) {
            tracing::warn!(
                left_out,
                "api: request with an unknown token refused (at most one warning per {} s)",
                WARN_EVERY_MS / 1000
            );
        }
        Err(Fail::new(StatusCode::UNAUTHORIZED, "unknown token"))
    }
}

/// The API's routes, each group behind its authentication layer.
pub fn router(state: ApiState, http: &HttpLimits) -> Router {
    let guard = |allow: Allow| middleware::from_fn_with_state((state.clone(), allow), authenticate);
    let cap = |limit: usize| middleware::from_fn_with_state(limit, declared_limit);
    let public = Router::new()
        .route("/v1/register/challenge", post(challenge))
        .route("/v1/register", post(register))
        .route_layer(cap(PUBLIC_BODY_LIMIT))
        .layer(DefaultBodyLimit::max(PUBLIC_BODY_LIMIT));
    let uploads = Router::new()
        .route("/v1/blobs/{hash}", put(put_blob))
        .route("/v1/blobs", post(post_blob))
        .route_layer(guard(CLIENTS))
        .layer(DefaultBodyLimit::disable());
    let clients = Router::new()
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/estimate", post(estimate_job))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/bundle", get(job_bundle))
        .route("/v1/jobs/{id}/dispute", post(job_dispute))
        .route("/v1/jobs/control", post(control_jobs))
        .route("/v1/jobs/{id}/priority", post(job_priority))
        .route("/v1/jobs/{id}/{action}", post(control_job))
        .route("/v1/jobs/{id}/frames/{frame}", get(job_frame))
        .route("/v1/webhooks", post(add_webhook).get(list_webhooks))
        .route("/v1/webhooks/{id}", delete(remove_webhook))
        .route("/v1/webhooks/{id}/deliveries", get(webhook_deliveries))
        .route_layer(cap(JSON_BODY_LIMIT))
        .route_layer(guard(CLIENTS))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT));
    let reads = Router::new()
        .route("/v1/blobs/{hash}", get(get_blob))
        .route("/v1/scenes/{hash}", get(get_scene))
        .route_layer(guard(CLIENTS_AND_WORKERS));
    let workers = Router::new()
        .route("/v1/tasks/{id}/wanted", get(task_wanted))
        .route_layer(guard(WORKERS));
    let document = Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route_layer(guard(ANYONE));
    let ledger = Router::new()
        .route("/v1/ledger", get(ledger))
        .route_layer(guard(CLIENTS_AND_ADMIN));
    let operator = Router::new()
        .route("/v1/nodes", get(nodes))
        .route("/v1/credits", post(credit))
        .route_layer(cap(PUBLIC_BODY_LIMIT))
        .route_layer(guard(ADMIN))
        .layer(DefaultBodyLimit::max(PUBLIC_BODY_LIMIT));
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(guard(ADMIN));
    Router::new()
        .merge(public)
        .merge(uploads)
        .merge(clients)
        .merge(reads)
        .merge(workers)
        .merge(document)
        .merge(ledger)
        .merge(operator)
        .merge(metrics)
        .merge(super::web::router(&state))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            http.body_timeout,
        ))
        .with_state(state)
}

/// The routes of the plain metrics listener (`--metrics-addr`): `GET /metrics` alone,
/// without a token, for a private scrape network; everything else is 404.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serve `app` on `listener` until `shutdown`: HTTP/1 connections, at most
/// `max_connections` at once (more are closed at once), each cut when a request's
/// headers take longer than `header_timeout` (which also bounds a kept-alive idle
/// connection); in-flight requests get a few seconds to finish at shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let full = Throttle::default();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(left_out) = full.allow(now_ms()) {
                tracing::warn!(
                    left_out,
                    "http: {} connections open, the most allowed: a new one was closed",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 << 10)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (a reset, a timeout): nothing to report.
            let _ = conn.await;
            drop(slot);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
}

fn check_hash(hash: &str) -> Answer<()> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("hash {hash:?}: expected 64 lowercase hex characters"),
        ))
    }
}

fn check_job_id(id: &str) -> Answer<()> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("job id {id:?}: expected 32 hex characters"),
        ))
    }
}

// --- registration --------------------------------------------------------------------

#[utoipa::path(post, path = "/v1/register/challenge", tag = "workers",
    responses((status = 200, description = "a fresh challenge to sign", body = ChallengeResponse),
        (status = 429, description = "too many open challenges", body = ApiError)))]
async fn challenge(State(st): State<ApiState>) -> Answer<Json<ChallengeResponse>> {
    let (challenge, coordinator) = st
        .shared
        .with(|s| s.challenge(now_ms()).map(|c| (c, s.public())))
        .await?;
    Ok(Json(ChallengeResponse {
        challenge,
        coordinator,
    }))
}

#[utoipa::path(post, path = "/v1/register", tag = "workers", request_body = RegisterRequest,
    responses((status = 200, description = "registered: a session token", body = RegisterResponse),
        (status = 401, description = "the role's token is wrong", body = ApiError),
        (status = 403, description = "the key may not take this role", body = ApiError),
        (status = 422, description = "the registration does not check out", body = ApiError)))]
async fn register(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<RegisterResponse>> {
    let body = body_of("register", body)?;
    let req: RegisterRequest = serde_json::from_slice(&body)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("register body: {e}")))?;
    let (role, key) = (req.registration.statement.role, req.registration.signer);
    let (session, coordinator) = st
        .shared
        .with(move |s| {
            s.register(
                &req.registration,
                &req.capabilities,
                req.token.as_deref(),
                now_ms(),
            )
            .map(|t| (t, s.public()))
        })
        .await
        .inspect_err(|e| {
            if let Some(left_out) = st.refusals.allow(now_ms()) {
                tracing::warn!(
                    left_out,
                    "registration refused: {}",
                    sanitize(&e.to_string())
                );
            }
        })?;
    // Its broker user may not declare its own queue: the coordinator does.
    st.shared.declare_worker_queue(role, &key).await;
    Ok(Json(RegisterResponse {
        session,
        coordinator,
        amqp_namespace: st.namespace.clone(),
    }))
}

// --- blobs ---------------------------------------------------------------------------

/// Blob uploads in progress, in total and per client.
struct Uploads {
    total: Arc<Semaphore>,
    per_client: Mutex<HashMap<String, usize>>,
    max_per_client: usize,
}

/// A slot of [`Uploads`], given back on drop.
struct UploadSlot {
    uploads: Arc<Uploads>,
    client: String,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl Uploads {
    fn new(limits: &HttpLimits) -> Self {
        Self {
            total: Arc::new(Semaphore::new(limits.max_uploads.max(1))),
            per_client: Mutex::new(HashMap::new()),
            max_per_client: limits.max_uploads_per_client.max(1),
        }
    }

    /// A slot for `client` now, or 429: uploads are refused, not queued, so a client
    /// cannot pile up open bodies.
    fn take(self: &Arc<Self>, client: &str) -> Answer<UploadSlot> {
        let busy = |what: String| {
            Fail::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{what}: try again when one has finished"),
            )
        };
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            busy(
                "the coordinator is receiving as many uploads as it takes at once (max_uploads)"
                    .into(),
            )
        })?;
        let mut per = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = per.entry(client.to_string()).or_insert(0);
        if *n >= self.max_per_client {
            return Err(busy(format!(
                "client {client:?} has {} uploads in progress, the most it may (max_uploads_per_client)",
                self.max_per_client
            )));
        }
        *n += 1;
        Ok(UploadSlot {
            uploads: self.clone(),
            client: client.to_string(),
            _total: total,
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut per = self
            .uploads
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.client);
            }
        }
    }
}

/// `PUT /v1/blobs/{hash}`: store a scene file. The body streams into a temporary file
/// (a unique name, so concurrent uploads of one blob do not collide) while it is hashed;
/// it is checked against the path's hash, the size limit and the client's storage quota,
/// then renamed into place and recorded as the client's, in one step under the service
/// lock (so garbage collection never sees a file without its record).
#[utoipa::path(put, path = "/v1/blobs/{hash}", tag = "scenes", params(("hash" = String, Path, description = "the blob's BLAKE3 hash, 64 hex digits")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes"),
    responses((status = 201, description = "stored", body = BlobStored),
        (status = 200, description = "this client had it already", body = BlobStored),
        (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 413, description = "over the size limit", body = ApiError),
        (status = 422, description = "the bytes do not hash to the name", body = ApiError),
        (status = 429, description = "over the client's storage quota or upload slots", body = ApiError)),
    security(("bearer" = [])))]
async fn put_blob(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer<(StatusCode, Json<BlobStored>)> {
    let client = caller.client()?.to_string();
    check_hash(&hash)?;
    let what = format!("blob {hash}");
    let declared = declared_length(&headers);
    if let Some(n) = declared.filter(|&n| n > st.max_blob_bytes) {
        return Err(too_large(&st, &what, n));
    }
    let (c, h) = (client.clone(), hash.clone());
    let (used, had) = st
        .shared
        .with(move |s| -> Result<_, ServiceError> {
            let store = s.store();
            Ok((store.client_blob_bytes(&c)?, store.client_has_blob(&h, &c)?))
        })
        .await?;
    let quota = |size: u64| -> Answer<()> {
        if !had && used.saturating_add(size) > st.max_client_bytes {
            return Err(Fail::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "client {client:?} stores {used} bytes; {size} more would pass its quota (max_client_bytes: {} bytes)",
                    st.max_client_bytes
                ),
            ));
        }
        Ok(())
    };
    quota(declared.unwrap_or(0))?;
    let _slot = st.uploads.take(&client)?;
    let (tmp_path, actual, size) = stream_blob(&st, body, &what).await?;
    if actual != hash {
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("blob {hash}: the body hashes to {actual}"),
        ));
    }
    quota(size)?;
    let path = st.blob_path(&hash);
    let (c, h) = (client.clone(), hash.clone());
    st.shared
        .with(move |s| -> Result<(), ServiceError> {
            if !path.exists() {
                tmp_path
                    .persist(&path)
                    .map_err(|e| ServiceError::Invalid(format!("storing blob {h}: {}", e.error)))?;
            }
            s.store().record_blob(&h, &c, size, now_ms())?;
            Ok(())
        })
        .await?;
    let status = if had {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(BlobStored {
            hash,
            size,
            fresh: !had,
        }),
    ))
}

/// The 413 answer to an upload (`what`, e.g. `blob 9f2c…`) of `n` bytes or more.
fn too_large(st: &ApiState, what: &str, n: u64) -> Fail {
    Fail::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{what}: {n} bytes or more, more than the largest file this coordinator takes (max_blob_bytes: {} bytes)",
            st.max_blob_bytes
        ),
    )
}

/// Stream an upload's body into a temporary file in the blob folder, hashing it with
/// BLAKE3 as it is written and refusing it once it passes `max_blob_bytes`; synced before
/// it is handed back with its hash (hex) and size. The caller moves it into place or
/// drops it (which deletes it). `what` names the upload in every error.
async fn stream_blob(
    st: &ApiState,
    mut body: Body,
    what: &str,
) -> Answer<(tempfile::TempPath, String, u64)> {
    let io = |step: &str, e: std::io::Error| {
        Fail::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing {what}: {step}: {e}"),
        )
    };
    let tmp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(st.data_dir.join("blobs"))
        .map_err(|e| io("temporary file", e))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Fail::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("{what}: the body broke off after {size} bytes: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > st.max_blob_bytes {
            return Err(too_large(st, what, size));
        }
        hasher.update(&data);
        file.write_all(&data).await.map_err(|e| io("write", e))?;
    }
    file.sync_all().await.map_err(|e| io("sync", e))?;
    Ok((tmp_path, hasher.finalize().to_hex().to_string(), size))
}

/// `POST /v1/blobs`: store a scene file whose hash the coordinator computes, for clients
/// without BLAKE3 (the Blender add-on): the body streams into a temporary file while it is
/// hashed, under the same size limit, upload slots and storage quota as
/// `PUT /v1/blobs/{hash}` (the quota is checked once the hash says whether the client had
/// the blob already), then is renamed into place and recorded as the client's.
#[utoipa::path(post, path = "/v1/blobs", tag = "scenes",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes"),
    responses((status = 201, description = "stored; the answer names its hash", body = BlobStored),
        (status = 200, description = "this client had it already", body = BlobStored),
        (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 408, description = "the body broke off", body = ApiError),
        (status = 413, description = "over the size limit", body = ApiError),
        (status = 429, description = "over the client's storage quota or upload slots", body = ApiError)),
    security(("bearer" = [])))]
async fn post_blob(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer<(StatusCode, Json<BlobStored>)> {
    let client = caller.client()?.to_string();
    let what = "blob upload";
    if let Some(n) = declared_length(&headers).filter(|&n| n > st.max_blob_bytes) {
        return Err(too_large(&st, what, n));
    }
    let _slot = st.uploads.take(&client)?;
    let (tmp_path, hash, size) = stream_blob(&st, body, what).await?;
    let path = st.blob_path(&hash);
    let (c, h, quota) = (client.clone(), hash.clone(), st.max_client_bytes);
    let had = st
        .shared
        .with(move |s| -> Result<bool, ServiceError> {
            let store = s.store();
            let had = store.client_has_blob(&h, &c)?;
            let used = store.client_blob_bytes(&c)?;
            if !had && used.saturating_add(size) > quota {
                return Err(ServiceError::Quota(format!(
                    "client {c:?} stores {used} bytes; {size} more would pass its quota (max_client_bytes: {quota} bytes)"
                )));
            }
            if !path.exists() {
                tmp_path
                    .persist(&path)
                    .map_err(|e| ServiceError::Invalid(format!("storing blob {h}: {}", e.error)))?;
            }
            store.record_blob(&h, &c, size, now_ms())?;
            Ok(had)
        })
        .await?;
    let status = if had {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(BlobStored {
            hash,
            size,
            fresh: !had,
        }),
    ))
}

/// `GET /v1/blobs/{hash}`: a client reads only blobs it stored; a worker reads any
/// (it renders every client's scenes).
#[utoipa::path(get, path = "/v1/blobs/{hash}", tag = "scenes", params(("hash" = String, Path, description = "the blob's BLAKE3 hash, 64 hex digits")),
    responses((status = 200, description = "the blob's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError), (status = 404, description = "no such blob for this caller", body = ApiError)),
    security(("bearer" = [])))]
async fn get_blob(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(hash): UrlPath<String>,
) -> Answer<Response> {
    check_hash(&hash)?;
    let not_found = || Fail::new(StatusCode::NOT_FOUND, format!("blob {hash} is not stored"));
    if let Caller::Client(client) = &caller {
        let (c, h) = (client.clone(), hash.clone());
        if !st
            .shared
            .with(move |s| s.store().client_has_blob(&h, &c))
            .await?
        {
            return Err(not_found());
        }
    }
    let file = tokio::fs::File::open(st.blob_path(&hash))
        .await
        .map_err(|_| not_found())?;
    Ok(stream_file(file, "application/octet-stream").await)
}

/// A file as an answer, streamed (never read whole into memory).
async fn stream_file(file: tokio::fs::File, content_type: &'static str) -> Response {
    let len = file.metadata().await.map(|m| m.len()).ok();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut answer = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(len) = len {
        answer
            .headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    answer
}

/// `GET /v1/scenes/{hash}`: a scene's file listing, to a worker or to a client with a
/// job on that scene.
#[utoipa::path(get, path = "/v1/scenes/{hash}", tag = "scenes", params(("hash" = String, Path, description = "the scene hash, 64 hex digits")),
    responses((status = 200, description = "the scene's files", body = SceneListing),
        (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError), (status = 404, description = "no such scene", body = ApiError)),
    security(("bearer" = [])))]
async fn get_scene(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(hash): UrlPath<String>,
) -> Answer<Json<SceneListing>> {
    check_hash(&hash)?;
    let h = hash.clone();
    let listing = st
        .shared
        .with(move |s| -> Result<Option<SceneListing>, ServiceError> {
            let store = s.store();
            if let Caller::Client(client) = &caller {
                if !store.client_has_scene(client, &h)? {
                    return Ok(None);
                }
            }
            Ok(store.scene(&h)?)
        })
        .await?
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("scene {hash} is not known")))?;
    Ok(Json(listing))
}

/// A scene path a listing may not use.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("scene path {path:?}: {why}")]
pub struct BadScenePath {
    /// The path as listed.
    pub path: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A listing's relative path, checked: forward slashes, no `..`, `.` or empty parts, not
/// absolute, no backslashes or NULs.
pub fn check_relative_path(p: &str) -> Result<(), BadScenePath> {
    let bad = |why| {
        Err(BadScenePath {
            path: p.into(),
            why,
        })
    };
    if p.is_empty() || p.len() > 512 {
        return bad("1 to 512 characters");
    }
    if p.starts_with('/') || p.contains('\\') || p.contains(':') || p.chars().any(char::is_control)
    {
        return bad("must be relative, with forward slashes");
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("empty, '.' or '..' component");
    }
    Ok(())
}

/// Why a submitted scene could not be laid out as files and inspected.
#[derive(Debug, thiserror::Error)]
enum SceneCheckError {
    /// The temporary folder could not be made.
    #[error("temporary scene folder: {0}")]
    Folder(std::io::Error),
    /// A listed file could not be linked or copied from its blob.
    #[error("{path}: {source}")]
    File {
        /// The file's path in the listing.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The scene inspector refused the scene.
    #[error("{0}")]
    Inspect(Box<dyn std::error::Error + Send + Sync>),
}

// --- jobs ----------------------------------------------------------------------------

/// A submission that passed what `POST /v1/jobs` and `POST /v1/jobs/estimate` check
/// before the service decides: the submission, its scene's content hash and name.
struct CheckedSubmission {
    sub: JobSubmission,
    scene_hash: tessera_protocol::Digest,
    scene_name: String,
}

impl CheckedSubmission {
    /// What the service is asked to submit (or estimate) for `client`.
    fn submission<'a>(&'a self, client: &'a str) -> Submission<'a> {
        Submission {
            client,
            scene_name: &self.scene_name,
            scene_hash: self.scene_hash,
            settings: self.sub.settings.clone(),
            frames: (self.sub.frame_start, self.sub.frame_end),
            tier: &self.sub.tier,
            tile_size: self.sub.tile_size,
            batch_size: self.sub.batch_size,
            requirements: self.sub.requirements.clone(),
        }
    }
}

/// The checks a submission and an estimate share, in order: everything cheap first (the
/// listing, that the client stored every file, the settings' bounds), then the scene's
/// inspection off the service lock (at most [`INSPECTIONS`] at once, within the scene
/// loader's budget) in a temporary folder that goes away whatever the outcome, and the
/// settings against the scene. `record_blobs`: the files are noted as used (a submission;
/// it keeps them from garbage collection from now on).
async fn check_submission(
    st: &ApiState,
    client: &str,
    body: Result<Bytes, BytesRejection>,
    record_blobs: bool,
) -> Result<CheckedSubmission, Fail> {
    let body = body_of("job submission", body)?;
    let sub: JobSubmission = serde_json::from_slice(&body)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("job submission: {e}")))?;
    drop(body);
    let unprocessable = |m: String| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    if sub.scene.files.is_empty() || sub.scene.files.len() > 4096 {
        return Err(unprocessable("scene.files: 1 to 4096 files".into()));
    }
    if !sub.scene.files.contains_key(&sub.scene.entry) {
        return Err(unprocessable(format!(
            "scene.entry {:?} is not one of scene.files",
            sub.scene.entry
        )));
    }
    for (path, hash) in &sub.scene.files {
        check_relative_path(path).map_err(|e| unprocessable(e.to_string()))?;
        check_hash(hash)?;
    }
    let s = &sub.settings;
    if s.width == 0 || s.height == 0 || s.width > MAX_EDGE || s.height > MAX_EDGE {
        return Err(unprocessable(format!(
            "settings.width/height: 1 to {MAX_EDGE}"
        )));
    }
    // The client must have stored every file itself; using them keeps them from
    // garbage collection from now on.
    let (c, files) = (client.to_string(), sub.scene.files.clone());
    let missing = st
        .shared
        .with(move |s| -> Result<Option<String>, ServiceError> {
            let store = s.store();
            for (path, hash) in &files {
                if !store.client_has_blob(hash, &c)? {
                    return Ok(Some(format!(
                        "scene file {path}: blob {hash} was not uploaded"
                    )));
                }
            }
            if record_blobs {
                for hash in files.values() {
                    store.record_blob(hash, &c, 0, now_ms())?;
                }
            }
            Ok(None)
        })
        .await?;
    if let Some(m) = missing {
        return Err(unprocessable(m));
    }
    let Some(inspector) = st.inspector.clone() else {
        return Err(Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this coordinator cannot load scenes",
        ));
    };
    let _inspecting = tokio::time::timeout(INSPECTION_WAIT, st.inspections.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            Fail::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the coordinator is busy checking other scenes: try again",
            )
        })?;
    let (data, scene) = (st.data_dir.clone(), sub.scene.clone());
    let inspected = tokio::task::spawn_blocking(move || -> Result<_, SceneCheckError> {
        // Lay the scene out as files (hard links to the blobs) in a temporary folder
        // and inspect it; the folder goes when this returns.
        let dir = tempfile::Builder::new()
            .prefix("scene-")
            .tempdir_in(data.join("scenes"))
            .map_err(SceneCheckError::Folder)?;
        materialize(dir.path(), &data.join("blobs"), &scene)?;
        inspector(&dir.path().join(&scene.entry)).map_err(SceneCheckError::Inspect)
    })
    .await
    .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| unprocessable(format!("scene {}: {e}", sub.scene.entry)))?;
    drop(_inspecting);
    check_settings(&sub.settings, &inspected.cameras)?;
    let scene_hash = inspected.content_hash;
    let scene_name = Path::new(&sub.scene.entry).file_name().map_or_else(
        || sub.scene.entry.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(CheckedSubmission {
        sub,
        scene_hash,
        scene_name,
    })
}

/// `POST /v1/jobs`: [`check_submission`] (the files noted as used), and only then write
/// the job.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobSubmission,
    responses((status = 200, description = "accepted and queued", body = JobAccepted),
        (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 402, description = "the client's balance does not cover the escrow", body = ApiError),
        (status = 409, description = "the farm cannot take it now", body = ApiError),
        (status = 422, description = "the submission is invalid (the message names the field)", body = ApiError),
        (status = 429, description = "over the client's job quota", body = ApiError)),
    security(("bearer" = [])))]
async fn submit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<JobAccepted>> {
    let client = caller.client()?.to_string();
    let checked = check_submission(&st, &client, body, true).await?;
    let hash_hex = hex::encode(checked.scene_hash);
    let scene_hash = hash_hex.clone();
    let job_id = st
        .shared
        .with(move |s| {
            let job = s.submit(checked.submission(&client), now_ms())?;
            s.store()
                .insert_job_scene(&job, &scene_hash, &checked.sub.scene)?;
            Ok::<_, ServiceError>(job)
        })
        .await?;
    Ok(Json(JobAccepted {
        job_id,
        scene_hash: hash_hex,
    }))
}

/// `POST /v1/jobs/estimate`: what `POST /v1/jobs` with the same body would take into
/// escrow (`rules::job_price` on the manifest it would sign), its tier and tile count.
/// It refuses what the submission would refuse, with the same statuses (the listing, the
/// client's files, the scene's inspection, the settings against the scene, the service's
/// checks, the funds), and writes nothing: no job, no escrow, no blob record.
#[utoipa::path(post, path = "/v1/jobs/estimate", tag = "jobs", request_body = JobSubmission,
    responses((status = 200, description = "what the submission would cost", body = JobEstimate),
        (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 402, description = "the client's balance does not cover the escrow", body = ApiError),
        (status = 409, description = "the farm cannot take it now", body = ApiError),
        (status = 422, description = "the submission is invalid (the message names the field)", body = ApiError),
        (status = 429, description = "over the client's job quota", body = ApiError)),
    security(("bearer" = [])))]
async fn estimate_job(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<JobEstimate>> {
    let client = caller.client()?.to_string();
    let checked = check_submission(&st, &client, body, false).await?;
    let scene_hash = checked.scene_hash;
    let estimate = st
        .shared
        .with(move |s| s.estimate(checked.submission(&client), now_ms()))
        .await?;
    Ok(Json(JobEstimate {
        price_micro: estimate.price,
        tier: estimate.tier,
        tile_size: estimate.tile_size,
        tiles: estimate.tiles,
        frames: estimate.frames,
        scene_hash: hex::encode(scene_hash),
    }))
}

/// Hard-link (or copy) each blob to its path under `dir`.
fn materialize(dir: &Path, blobs: &Path, scene: &SceneListing) -> Result<(), SceneCheckError> {
    for (rel, hash) in &scene.files {
        let file = |source| SceneCheckError::File {
            path: rel.clone(),
            source,
        };
        let dst = dir.join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(file)?;
        }
        let src = blobs.join(hash);
        std::fs::hard_link(&src, &dst)
            .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
            .map_err(file)?;
    }
    Ok(())
}

fn status_of(s: &Service, id: &str) -> Result<JobStatus, ServiceError> {
    let v = s.job_view(id)?;
    let m = &v.manifest.statement;
    Ok(JobStatus {
        job_id: id.to_string(),
        state: v.progress.state.to_string(),
        scene_name: m.scene_name.clone(),
        frame_start: m.frame_start,
        frame_end: m.frame_end,
        tier: m.tier.name.clone(),
        tiles_total: v.progress.tiles_total,
        tiles_rendered: v.progress.tiles_rendered,
        tiles_verified: v.progress.tiles_verified,
        round: v.progress.round,
        error: v.progress.error,
        created_unix: m.created_unix,
    })
}

/// The job `id` if `client` owns it; another client's job does not exist for it.
fn owned(s: &Service, id: &str, client: &str) -> Result<(), ServiceError> {
    match s.store().job_client(id)? {
        Some(owner) if owner == client => Ok(()),
        _ => Err(ServiceError::NotFound(format!("job {id} does not exist"))),
    }
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, description = "the client's jobs, newest first", body = Vec<JobStatus>), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError)),
    security(("bearer" = [])))]
async fn list_jobs(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Answer<Json<Vec<JobStatus>>> {
    let client = caller.client()?.to_string();
    let jobs = st
        .shared
        .with(move |s| {
            s.store()
                .client_job_ids(&client)?
                .iter()
                .map(|id| status_of(s, id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(jobs))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "the job id, 32 hex digits")),
    responses((status = 200, description = "the job's status", body = JobStatus), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 404, description = "no such job of this client", body = ApiError)),
    security(("bearer" = [])))]
async fn job_status(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Answer<Json<JobStatus>> {
    let client = caller.client()?.to_string();
    check_job_id(&id)?;
    Ok(Json(
        st.shared
            .with(move |s| {
                owned(s, &id, &client)?;
                status_of(s, &id)
            })
            .await?,
    ))
}

/// `POST /v1/jobs/{id}/dispute`: the job's client disputes it inside its challenge
/// window; the answer is the job's status (`disputed`).
#[utoipa::path(post, path = "/v1/jobs/{id}/dispute", tag = "jobs", params(("id" = String, Path, description = "the job id, 32 hex digits")),
    responses((status = 200, description = "disputed: extra samples are checked", body = JobStatus), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 402, description = "the deposit is not covered", body = ApiError),
        (status = 404, description = "no such job of this client", body = ApiError),
        (status = 409, description = "not done, or its challenge window is closed", body = ApiError),
        (status = 422, description = "disputed before", body = ApiError)),
    security(("bearer" = [])))]
async fn job_dispute(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Answer<Json<JobStatus>> {
    let client = caller.client()?.to_string();
    check_job_id(&id)?;
    Ok(Json(
        st.shared
            .with(move |s| {
                owned(s, &id, &client)?;
                s.open_dispute(&id, &client, now_ms())?;
                status_of(s, &id)
            })
            .await?,
    ))
}

// --- the OpenAPI document ----------------------------------------------------------

/// The HTTP API's OpenAPI 3.1 document, generated from the handlers' `utoipa::path`
/// annotations and the API types (`tessera_api`), so it cannot drift from the routes it
/// describes; `coordinator/tests/openapi.rs` checks it against the OAS 3.1 schema and every
/// response of the API's tests against it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tessera coordinator API",
        description = "Clients submit scenes and jobs, follow and control them and fetch frames and proof bundles; nodes and verifiers register; the operator credits accounts. Every route but registration needs `Authorization: Bearer TOKEN`: a client's API token, a worker's session token or the operator's admin token."
    ),
    paths(
        challenge, register, put_blob, post_blob, get_blob, get_scene, submit, list_jobs, job_status,
        job_dispute, control_jobs, control_job, job_priority, task_wanted, job_bundle,
        job_frame, nodes, ledger, credit, openapi_json, add_webhook, list_webhooks,
        webhook_deliveries, remove_webhook, estimate_job
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Adds the bearer-token security scheme the paths name, and the answers every route
/// may give.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a client's API token, a worker's session token or the operator's admin token",
                    ))
                    .build(),
            ),
        );
        // What any route may answer besides its own: a body that is not the route's
        // JSON, too slow or too large, and a store failure.
        use utoipa::openapi::{RefOr, ResponseBuilder};
        let error = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ApiError")))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                responses.entry("400".into()).or_insert_with(|| {
                    error("the request is malformed: a path parameter or the body (the message says what)")
                });
                if op.request_body.is_some() {
                    for (status, what) in [
                        ("408", "the body was not sent in time"),
                        ("413", "the body is over the route's limit"),
                    ] {
                        responses
                            .entry(status.into())
                            .or_insert_with(|| error(what));
                    }
                }
                responses
                    .entry("500".into())
                    .or_insert_with(|| error("the coordinator's store failed; try again"));
            }
        }
    }
}

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "this document (OpenAPI 3.1)", body = Object),
        (status = 401, description = "missing or unknown token", body = ApiError)),
    security(("bearer" = [])))]
/// `GET /v1/openapi.json`: the document, for any caller with a valid token.
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

// --- job control -------------------------------------------------------------------

/// The control action `action` (one of [`CONTROL_ACTIONS`]), with `priority` for
/// `priority`.
fn control_of(action: &str, priority: Option<i32>) -> Answer<Control> {
    let refuse = |why: String| Err(Fail::new(StatusCode::UNPROCESSABLE_ENTITY, why));
    match (action, priority) {
        ("cancel", None) => Ok(Control::Cancel),
        ("pause", None) => Ok(Control::Pause),
        ("resume", None) => Ok(Control::Resume),
        ("requeue", None) => Ok(Control::Requeue),
        ("priority", Some(p)) => Ok(Control::Priority(p)),
        ("priority", None) => refuse("action \"priority\" needs a \"priority\" number".into()),
        (a, Some(_)) if CONTROL_ACTIONS.contains(&a) => {
            refuse(format!("action {a:?} takes no \"priority\""))
        }
        (a, _) => refuse(format!(
            "unknown action {:?}: one of {}",
            sanitize(a),
            CONTROL_ACTIONS.join(", ")
        )),
    }
}

/// `POST /v1/jobs/control`: one action on each of several of the client's jobs, each in
/// a transaction of its own; one outcome per job, in the order asked (a job of another
/// client does not exist for this one).
#[utoipa::path(post, path = "/v1/jobs/control", tag = "jobs", request_body = ControlRequest,
    responses((status = 200, description = "one outcome per job, in the order asked", body = Vec<ControlOutcome>), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 422, description = "unknown action, a malformed job id, or too many jobs", body = ApiError)),
    security(("bearer" = [])))]
async fn control_jobs(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<Vec<ControlOutcome>>> {
    let client = caller.client()?.to_string();
    let body = body_of("control request", body)?;
    let req: ControlRequest = serde_json::from_slice(&body).map_err(|e| {
        Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("control request: {e}"),
        )
    })?;
    let action = control_of(&req.action, req.priority)?;
    if req.jobs.is_empty() || req.jobs.len() > MAX_CONTROL_JOBS {
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "control request: \"jobs\" names {} jobs; 1 to {MAX_CONTROL_JOBS} at once",
                req.jobs.len()
            ),
        ));
    }
    for id in &req.jobs {
        check_job_id(id)?;
    }
    let outcomes = st
        .shared
        .with(move |s| {
            let now = now_ms();
            Ok::<_, ServiceError>(
                req.jobs
                    .iter()
                    .map(|id| match s.control(&client, id, action, now) {
                        Ok(state) => ControlOutcome {
                            job_id: id.clone(),
                            state: Some(state.to_string()),
                            error: None,
                        },
                        Err(e) => ControlOutcome {
                            job_id: id.clone(),
                            state: None,
                            error: Some(e.to_string()),
                        },
                    })
                    .collect(),
            )
        })
        .await?;
    Ok(Json(outcomes))
}

/// `POST /v1/jobs/{id}/{action}` (`cancel`, `pause`, `resume`, `requeue`): the job's
/// status after it.
#[utoipa::path(post, path = "/v1/jobs/{id}/{action}", tag = "jobs",
    params(("id" = String, Path, description = "the job id, 32 hex digits"), ("action" = String, Path, description = "cancel, pause, resume or requeue")),
    responses((status = 200, description = "the job's status after the action", body = JobStatus), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 402, description = "requeue of a failed job: the client's balance and overdraft do not cover its escrow again", body = ApiError),
        (status = 404, description = "no such job of this client", body = ApiError),
        (status = 409, description = "the job has ended (a failed job: its window is over, or no node may render it)", body = ApiError),
        (status = 422, description = "unknown action", body = ApiError)),
    security(("bearer" = [])))]
async fn control_job(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath((id, action)): UrlPath<(String, String)>,
) -> Answer<Json<JobStatus>> {
    let client = caller.client()?.to_string();
    check_job_id(&id)?;
    if action == "priority" {
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "priority: send {\"priority\": N} as the body",
        ));
    }
    let action = control_of(&action, None)?;
    control_one(st, client, id, action).await
}

/// `POST /v1/jobs/{id}/priority` with `{"priority": N}`.
#[utoipa::path(post, path = "/v1/jobs/{id}/priority", tag = "jobs", params(("id" = String, Path, description = "the job id, 32 hex digits")), request_body = PriorityRequest,
    responses((status = 200, description = "the job's status", body = JobStatus), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 404, description = "no such job of this client", body = ApiError),
        (status = 409, description = "the job has ended", body = ApiError),
        (status = 422, description = "not a priority", body = ApiError)),
    security(("bearer" = [])))]
async fn job_priority(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<JobStatus>> {
    let client = caller.client()?.to_string();
    check_job_id(&id)?;
    let body = body_of("priority request", body)?;
    let req: PriorityRequest = serde_json::from_slice(&body).map_err(|e| {
        Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("priority request: {e}"),
        )
    })?;
    control_one(st, client, id, Control::Priority(req.priority)).await
}

async fn control_one(
    st: ApiState,
    client: String,
    id: String,
    action: Control,
) -> Answer<Json<JobStatus>> {
    Ok(Json(
        st.shared
            .with(move |s| {
                s.control(&client, &id, action, now_ms())?;
                status_of(s, &id)
            })
            .await?,
    ))
}

// --- webhooks --------------------------------------------------------------------------

/// `POST /v1/webhooks`: a webhook for the calling client's jobs (201 with the hook, its
/// secret left out); a bad field is a 422 naming it, one hook too many a 429.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = WebhookRequest,
    responses((status = 201, description = "added (its secret is never shown again)", body = WebhookView), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 422, description = "a bad url, secret or events (the message starts with the field)", body = ApiError),
        (status = 429, description = "the client has as many hooks as it may", body = ApiError)),
    security(("bearer" = [])))]
async fn add_webhook(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<(StatusCode, Json<WebhookView>)> {
    let client = caller.client()?.to_string();
    let body = body_of("webhook", body)?;
    let req: WebhookRequest = serde_json::from_slice(&body)
        .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, format!("webhook: {e}")))?;
    let hook = st
        .shared
        .with(move |s| super::webhooks::add(s.store(), &client, &req, now_ms()))
        .await?;
    Ok((StatusCode::CREATED, Json(hook)))
}

/// `GET /v1/webhooks`: the calling client's webhooks (never their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "the client's webhooks", body = Vec<WebhookView>), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError)),
    security(("bearer" = [])))]
async fn list_webhooks(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Answer<Json<Vec<WebhookView>>> {
    let client = caller.client()?.to_string();
    let hooks = st
        .shared
        .with(move |s| super::webhooks::list(s.store(), &client))
        .await?;
    Ok(Json(hooks))
}

/// A webhook id as the URL gives it: 32 hex characters, or 404.
fn check_hook_id(id: &str) -> Answer<()> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("webhook {id:?} does not exist (ids are 32 hex characters)"),
        ))
    }
}

/// `GET /v1/webhooks/{id}/deliveries`: the latest deliveries of one of the calling
/// client's webhooks, newest first; another client's hook is 404.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "the webhook id, 32 hex digits")),
    responses((status = 200, description = "its latest deliveries, newest first", body = Vec<WebhookDelivery>), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 404, description = "no such webhook of this client", body = ApiError)),
    security(("bearer" = [])))]
async fn webhook_deliveries(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Answer<Json<Vec<WebhookDelivery>>> {
    let client = caller.client()?.to_string();
    check_hook_id(&id)?;
    let rows = st
        .shared
        .with(move |s| super::webhooks::deliveries(s.store(), &client, &id))
        .await?;
    Ok(Json(rows))
}

/// `DELETE /v1/webhooks/{id}`: remove one of the calling client's webhooks and the
/// deliveries waiting for it; another client's hook is 404, as a missing one is.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the webhook id, 32 hex digits")),
    responses((status = 200, description = "removed, with the deliveries waiting for it", body = WebhookView), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 404, description = "no such webhook of this client", body = ApiError)),
    security(("bearer" = [])))]
async fn remove_webhook(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Answer<Json<WebhookView>> {
    let client = caller.client()?.to_string();
    check_hook_id(&id)?;
    let hook = st
        .shared
        .with(move |s| super::webhooks::remove(s.store(), &client, &id))
        .await?;
    Ok(Json(hook))
}

/// `GET /v1/tasks/{id}/wanted` (nodes): whether the calling node should render the task
/// it took from a queue ([`crate::machine::Job::wants`]).
#[utoipa::path(get, path = "/v1/tasks/{id}/wanted", tag = "workers",
    params(("id" = String, Path, description = "the task id")),
    responses((status = 200, description = "whether the calling node should render it", body = TaskWanted), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 422, description = "not a task id", body = ApiError)),
    security(("bearer" = [])))]
async fn task_wanted(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Answer<Json<TaskWanted>> {
    let Caller::Worker(node) = caller else {
        return Err(Fail::new(StatusCode::FORBIDDEN, "nodes only"));
    };
    if id.len() > 200 {
        return Err(Fail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "task id too long",
        ));
    }
    let wanted = st.shared.with(move |s| s.task_wanted(&id, &node)).await?;
    Ok(Json(TaskWanted { wanted }))
}

/// Finished jobs' bundles and frames as files under `DATA/exports/<job>-<ended>/`,
/// written once (off the service lock, from a reader connection of its own) and then
/// streamed from disk: a request never re-parses a bundle or assembles a frame under the
/// lock. A job that ends again (after a dispute) gets a new folder.
struct Exports {
    root: PathBuf,
    db: PathBuf,
    /// One export at a time; it holds the reader connection.
    reader: tokio::sync::Mutex<Option<Store>>,
}

/// What is exported of a job.
#[derive(Clone, Copy)]
enum Export {
    Bundle,
    Frame(u32),
}

impl Exports {
    fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("exports"),
            db: data_dir.join("coordinator.db"),
            reader: tokio::sync::Mutex::new(None),
        }
    }

    /// The file of `what` of `job` (owned by `client`), exported if it was not yet.
    async fn file(
        self: &Arc<Self>,
        st: &ApiState,
        client: &str,
        job: &str,
        what: Export,
    ) -> Answer<tokio::fs::File> {
        let (j, c) = (job.to_string(), client.to_string());
        let ended = st
            .shared
            .with(move |s| -> Result<u64, ServiceError> {
                owned(s, &j, &c)?;
                let state = s.store().job_state(&j)?;
                match (state, s.store().job_ended_ms(&j)?) {
                    (Some(JobState::Done), Some(ended)) => Ok(ended),
                    (state, _) => Err(ServiceError::Unavailable(format!(
                        "job {j} is {}: its bundle and frames exist once it is done",
                        state.map_or("unknown", JobState::as_str)
                    ))),
                }
            })
            .await?;
        let dir = self.root.join(format!("{job}-{ended}"));
        let path = match what {
            Export::Bundle => dir.join("bundle.json"),
            Export::Frame(f) => dir.join(format!("frame-{f}.rgba16f")),
        };
        if let Ok(file) = tokio::fs::File::open(&path).await {
            return Ok(file);
        }
        let mut reader = self.reader.lock().await;
        if let Ok(file) = tokio::fs::File::open(&path).await {
            return Ok(file);
        }
        let (db, job, target) = (self.db.clone(), job.to_string(), path.clone());
        let mut taken = reader.take();
        let (store, written) = tokio::task::spawn_blocking(move || {
            let store = match taken.take() {
                Some(s) => s,
                None => match Store::open(&db) {
                    Ok(s) => s,
                    Err(e) => return (None, Err(ServiceError::from(e))),
                },
            };
            let written = export(&store, &job, what, &target);
            (Some(store), written)
        })
        .await
        .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        *reader = store;
        written?;
        tokio::fs::File::open(&path).await.map_err(|e| {
            Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

/// Write `what` of `job` from `store` to `target` (through a temporary file, so a
/// reader never sees half of it).
fn export(store: &Store, job: &str, what: Export, target: &Path) -> Result<(), ServiceError> {
    let bytes = match what {
        Export::Bundle => {
            let bundle = store
                .bundle(job)?
                .ok_or_else(|| ServiceError::Unavailable(format!("job {job} has no bundle yet")))?;
            serde_json::to_vec(&bundle).map_err(|e| {
                ServiceError::Invalid(format!("encoding the bundle of job {job}: {e}"))
            })?
        }
        Export::Frame(f) => super::service::assemble_frame(store, job, f)?,
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    let io = |e: std::io::Error| {
        ServiceError::Store(crate::store::StoreError::Corrupt {
            path: dir.display().to_string(),
            what: "export".into(),
            reason: e.to_string(),
        })
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(io)?;
    tmp.persist(target).map_err(|e| io(e.error))?;
    Ok(())
}

#[utoipa::path(get, path = "/v1/jobs/{id}/bundle", tag = "jobs", params(("id" = String, Path, description = "the job id, 32 hex digits")),
    responses((status = 200, description = "the proof bundle (JSON, docs/PROTOCOL.md)", content_type = "application/json", body = Object), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 404, description = "no such job of this client", body = ApiError),
        (status = 409, description = "not done yet", body = ApiError)),
    security(("bearer" = [])))]
async fn job_bundle(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Answer<Response> {
    let client = caller.client()?.to_string();
    check_job_id(&id)?;
    let file = st.exports.file(&st, &client, &id, Export::Bundle).await?;
    Ok(stream_file(file, "application/json").await)
}

#[utoipa::path(get, path = "/v1/jobs/{id}/frames/{frame}", tag = "jobs",
    params(("id" = String, Path, description = "the job id, 32 hex digits"), ("frame" = u32, Path, description = "the frame number")),
    responses((status = 200, description = "the frame's canonical bytes: linear RGBA half floats, little-endian, row-major", content_type = "application/octet-stream", body = Vec<u8>), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 404, description = "no such job or frame", body = ApiError),
        (status = 409, description = "not done yet", body = ApiError)),
    security(("bearer" = [])))]
async fn job_frame(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath((id, frame)): UrlPath<(String, String)>,
) -> Answer<Response> {
    let client = caller.client()?.to_string();
    check_job_id(&id)?;
    let frame: u32 = frame.parse().map_err(|_| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            format!("frame {frame:?}: expected a frame number"),
        )
    })?;
    let file = st
        .exports
        .file(&st, &client, &id, Export::Frame(frame))
        .await?;
    Ok(stream_file(file, "application/octet-stream").await)
}

// --- the operator's views --------------------------------------------------------------

/// `GET /v1/nodes` (admin token): every registered worker.
#[utoipa::path(get, path = "/v1/nodes", tag = "operator",
    responses((status = 200, description = "registered nodes and verifiers", body = Vec<NodeView>), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError)),
    security(("bearer" = [])))]
async fn nodes(State(st): State<ApiState>) -> Answer<Json<Vec<NodeView>>> {
    let views = st
        .shared
        .with(|s| -> Result<Vec<NodeView>, ServiceError> {
            let store = s.store();
            let leases = s.leases_by_node()?;
            let mut out = Vec::new();
            for w in store.workers()? {
                let (key, caps) = (w.key, w.caps);
                out.push(NodeView {
                    key,
                    name: w.name,
                    role: w.role.to_string(),
                    class: caps.class,
                    memory_bytes: caps.memory_bytes,
                    slots: caps.slots,
                    trust: store.trust(&key)?,
                    stake: store.balance(&account::stake(&key))?,
                    balance: store.balance(&account::node(&key))?,
                    last_seen_unix: w.last_seen_ms / 1000,
                    leased_tasks: leases.get(&key.to_string()).copied().unwrap_or(0),
                });
            }
            Ok(out)
        })
        .await?;
    Ok(Json(views))
}

/// `GET /v1/ledger`: the operator sees every account; a client its own (its balance,
/// its credit line, and the escrow and dispute deposit of each of its jobs). The total
/// is the whole ledger's either way (always 0).
#[utoipa::path(get, path = "/v1/ledger", tag = "operator",
    responses((status = 200, description = "balances: a client's own accounts, or the operator's whole ledger", body = LedgerView), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError)),
    security(("bearer" = [])))]
async fn ledger(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Answer<Json<LedgerView>> {
    let view = st
        .shared
        .with(move |s| -> Result<LedgerView, ServiceError> {
            let store = s.store();
            let mine: Option<std::collections::HashSet<String>> = match &caller {
                Caller::Admin => None,
                Caller::Client(c) => {
                    let mut set: std::collections::HashSet<String> = [
                        account::client(c),
                        account::external(&format!("credit:{c}")),
                    ]
                    .into();
                    for job in store.client_job_ids(c)? {
                        set.insert(account::escrow(&job));
                        set.insert(account::dispute(&job));
                    }
                    Some(set)
                }
                Caller::Worker(_) => {
                    return Err(ServiceError::Forbidden(
                        "clients and the operator only".into(),
                    ))
                }
            };
            let accounts = store
                .balances()?
                .into_iter()
                .filter(|(a, _)| mine.as_ref().is_none_or(|m| m.contains(a)))
                .map(|(account, balance)| AccountBalance { account, balance })
                .collect();
            Ok(LedgerView {
                accounts,
                total: store.total()?,
            })
        })
        .await?;
    Ok(Json(view))
}

/// `GET /metrics` (admin token, or the plain metrics listener): the coordinator's
/// Prometheus metrics, the gauges read from the store now.
async fn metrics(State(st): State<ApiState>) -> Answer<Response> {
    let text = st.shared.with_quiet(|s| s.metrics_text()).await?;
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// `POST /v1/credits` (admin token): the operator credits a client's balance or a
/// node's stake with money that came in from outside the farm.
#[utoipa::path(post, path = "/v1/credits", tag = "operator", request_body = CreditRequest,
    responses((status = 200, description = "credited (once per reference)", body = CreditResponse), (status = 401, description = "missing or unknown token", body = ApiError), (status = 403, description = "this token may not do this", body = ApiError),
        (status = 422, description = "bad account or amount", body = ApiError)),
    security(("bearer" = [])))]
async fn credit(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<CreditResponse>> {
    let body = body_of("credit", body)?;
    let req: CreditRequest = serde_json::from_slice(&body)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("credit body: {e}")))?;
    let account = req.account.clone();
    let (applied, balance) = st
        .shared
        .with(move |s| {
            let applied = s.credit(&req.account, req.amount, &req.reference)?;
            Ok::<_, ServiceError>((applied, s.store().balance(&req.account)?))
        })
        .await?;
    Ok(Json(CreditResponse {
        account,
        applied,
        balance,
    }))
}

#[cfg(test)]
mod tests {
    use super::{check_relative_path, sanitize, Throttle, MAX_MESSAGE, WARN_EVERY_MS};

    #[test]
    fn text_from_requests_cannot_forge_log_lines_or_grow_answers() {
        let forged = "node\n2026-12-05T00:00:00Z ERROR admin logged in\r";
        let clean = sanitize(forged);
        assert!(!clean.contains('\n') && !clean.contains('\r'), "{clean}");
        assert!(clean.contains("\\n2026"), "{clean}");
        let long = sanitize(&"x".repeat(20 << 20));
        assert_eq!(long.chars().count(), MAX_MESSAGE + 1);
        assert!(long.ends_with('…'));
        assert_eq!(sanitize("plain"), "plain");
    }

    #[test]
    fn refused_token_warnings_are_rate_limited_and_counted() {
        let t = Throttle::default();
        let start = 10 * WARN_EVERY_MS;
        assert_eq!(t.allow(start), Some(0));
        for i in 1..=500 {
            assert_eq!(t.allow(start + i), None);
        }
        assert_eq!(t.allow(start + WARN_EVERY_MS), Some(500));
        assert_eq!(t.allow(start + WARN_EVERY_MS + 1), None);
    }

    #[test]
    fn scene_paths_stay_inside_the_scene_folder() {
        for ok in ["scene.gltf", "textures/a.png", "a/b/c.bin"] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "c:x",
        ] {
            let e = check_relative_path(bad).unwrap_err();
            assert_eq!(e.path, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
