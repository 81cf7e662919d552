//! The coordinator's HTTP API (version 1; types in `tessera_api`): registration of nodes
//! and verifiers, content-addressed scene uploads, job submission and status, results,
//! nodes and the ledger. Every error is an `ApiError` JSON body naming what is wrong.

use super::service::{ServiceError, MAX_EDGE};
use super::{now_ms, DaemonConfig, SceneInspector, Shared};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_api::{
    AccountBalance, ApiError, BlobStored, ChallengeResponse, CreditRequest, CreditResponse,
    JobAccepted, JobStatus, JobSubmission, LedgerView, NodeView, RegisterRequest, RegisterResponse,
    SceneListing,
};
use tessera_protocol::payments::account;
use tessera_protocol::wire::Capabilities;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    shared: Arc<Shared>,
    /// token → client name.
    clients: Arc<HashMap<String, String>>,
    data_dir: PathBuf,
    max_blob_bytes: u64,
    inspector: Option<SceneInspector>,
    namespace: String,
    /// The operator's token for crediting accounts.
    admin_token: Option<String>,
}

impl ApiState {
    pub(crate) fn new(shared: Arc<Shared>, cfg: &DaemonConfig) -> Self {
        let clients = cfg
            .api_tokens
            .iter()
            .map(|t| match t.split_once('=') {
                Some((client, token)) => (token.to_string(), client.to_string()),
                None => (t.clone(), "default".to_string()),
            })
            .collect();
        Self {
            shared,
            clients: Arc::new(clients),
            data_dir: cfg.data_dir.clone(),
            max_blob_bytes: cfg.max_blob_bytes,
            inspector: cfg.scene_inspector.clone(),
            namespace: cfg.namespace.clone(),
            admin_token: cfg.admin_token.clone(),
        }
    }
}

/// An error answer.
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<ServiceError> for Fail {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::Unavailable(_) => StatusCode::CONFLICT,
            ServiceError::Funds(_) => StatusCode::PAYMENT_REQUIRED,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("api: {e}");
        }
        Fail(status, e.to_string())
    }
}

type Answer<T> = Result<T, Fail>;

/// Who is calling.
enum Caller {
    Client(String),
    Worker,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

impl ApiState {
    /// A client token, or (when `workers_too`) a worker session.
    async fn caller(&self, headers: &HeaderMap, workers_too: bool) -> Answer<Caller> {
        let Some(token) = bearer(headers) else {
            return Err(Fail(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer TOKEN header".into(),
            ));
        };
        if let Some(client) = self.clients.get(token) {
            return Ok(Caller::Client(client.clone()));
        }
        if workers_too {
            let t = token.to_string();
            if self
                .shared
                .with(move |s| s.worker_by_session(&t))
                .await?
                .is_some()
            {
                return Ok(Caller::Worker);
            }
        }
        tracing::warn!("api: request with an unknown token refused");
        Err(Fail(StatusCode::UNAUTHORIZED, "unknown token".into()))
    }

    async fn client(&self, headers: &HeaderMap) -> Answer<String> {
        match self.caller(headers, false).await? {
            Caller::Client(c) => Ok(c),
            Caller::Worker => Err(Fail(StatusCode::FORBIDDEN, "clients only".into())),
        }
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.data_dir.join("blobs").join(hash)
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let limit = usize::try_from(state.max_blob_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/register/challenge", post(challenge))
        .route("/v1/register", post(register))
        .route("/v1/blobs/{hash}", put(put_blob).get(get_blob))
        .route("/v1/scenes/{hash}", get(get_scene))
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/bundle", get(job_bundle))
        .route("/v1/jobs/{id}/dispute", post(job_dispute))
        .route("/v1/jobs/{id}/frames/{frame}", get(job_frame))
        .route("/v1/nodes", get(nodes))
        .route("/v1/ledger", get(ledger))
        .route("/v1/credits", post(credit))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn check_hash(hash: &str) -> Answer<()> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Fail(
            StatusCode::BAD_REQUEST,
            format!("hash {hash:?}: expected 64 lowercase hex characters"),
        ))
    }
}

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

async fn register(State(st): State<ApiState>, body: Bytes) -> Answer<Json<RegisterResponse>> {
    let req: RegisterRequest = serde_json::from_slice(&body)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, format!("register body: {e}")))?;
    let (role, key) = (
        req.registration.statement.role.clone(),
        req.registration.signer,
    );
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
        .inspect_err(|e| tracing::warn!("registration refused: {e}"))?;
    // Its broker user may not declare its own queue: the coordinator does.
    st.shared.declare_worker_queue(&role, &key).await;
    Ok(Json(RegisterResponse {
        session,
        coordinator,
        amqp_namespace: st.namespace.clone(),
    }))
}

async fn put_blob(
    State(st): State<ApiState>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<(StatusCode, Json<BlobStored>)> {
    st.client(&headers).await?;
    check_hash(&hash)?;
    let actual = blake3::hash(&body).to_hex().to_string();
    if actual != hash {
        return Err(Fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("blob {hash}: the body hashes to {actual}"),
        ));
    }
    let path = st.blob_path(&hash);
    let size = body.len() as u64;
    let fresh = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        if path.exists() {
            return Ok(false);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &body)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(true)
    })
    .await
    .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| {
        Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing blob {hash}: {e}"),
        )
    })?;
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(BlobStored { hash, size, fresh })))
}

async fn get_blob(
    State(st): State<ApiState>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
) -> Answer<Vec<u8>> {
    st.caller(&headers, true).await?;
    check_hash(&hash)?;
    tokio::fs::read(st.blob_path(&hash))
        .await
        .map_err(|_| Fail(StatusCode::NOT_FOUND, format!("blob {hash} is not stored")))
}

async fn get_scene(
    State(st): State<ApiState>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
) -> Answer<Json<SceneListing>> {
    st.caller(&headers, true).await?;
    check_hash(&hash)?;
    let h = hash.clone();
    let listing = st
        .shared
        .with(move |s| s.store().scene(&h))
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| Fail(StatusCode::NOT_FOUND, format!("scene {hash} is not known")))?;
    serde_json::from_str(&listing).map(Json).map_err(|e| {
        Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scene {hash}: {e}"),
        )
    })
}

/// A listing's relative path, checked: forward slashes, no `..`, `.` or empty parts, not
/// absolute, no backslashes or NULs.
pub fn check_relative_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 512 {
        return Err(format!("scene path {p:?}: 1 to 512 characters"));
    }
    if p.starts_with('/') || p.contains('\\') || p.contains(':') || p.chars().any(char::is_control)
    {
        return Err(format!(
            "scene path {p:?}: must be relative, with forward slashes"
        ));
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("scene path {p:?}: empty, '.' or '..' component"));
    }
    Ok(())
}

async fn submit(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Json<JobAccepted>> {
    let client = st.client(&headers).await?;
    let sub: JobSubmission = serde_json::from_slice(&body)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, format!("job submission: {e}")))?;
    let unprocessable = |m: String| Fail(StatusCode::UNPROCESSABLE_ENTITY, m);
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
        check_relative_path(path).map_err(unprocessable)?;
        check_hash(hash)?;
        if !st.blob_path(hash).exists() {
            return Err(unprocessable(format!(
                "scene file {path}: blob {hash} was not uploaded"
            )));
        }
    }
    if sub.settings.width > MAX_EDGE || sub.settings.height > MAX_EDGE {
        return Err(unprocessable(format!(
            "settings.width/height: at most {MAX_EDGE}"
        )));
    }
    let Some(inspector) = st.inspector.clone() else {
        return Err(Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "this coordinator cannot load scenes".into(),
        ));
    };
    // Lay the scene out as files (hard links to the blobs) and load it: a bad scene is
    // refused here, with the loader's error, before anything is queued.
    let listing_json = serde_json::to_string(&sub.scene).unwrap_or_default();
    let dir = st
        .data_dir
        .join("scenes")
        .join(blake3::hash(listing_json.as_bytes()).to_hex().as_str());
    let blobs = st.data_dir.join("blobs");
    let scene = sub.scene.clone();
    let scene_hash = tokio::task::spawn_blocking(move || -> Result<[u8; 32], String> {
        materialize(&dir, &blobs, &scene)?;
        inspector(&dir.join(&scene.entry))
    })
    .await
    .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| unprocessable(format!("scene {}: {e}", sub.scene.entry)))?;
    let scene_name = Path::new(&sub.scene.entry).file_name().map_or_else(
        || sub.scene.entry.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    let hash_hex = hex::encode(scene_hash);
    let job_id = st
        .shared
        .with(move |s| {
            s.store()
                .insert_scene(&hex::encode(scene_hash), &listing_json)?;
            s.submit(
                &client,
                &scene_name,
                scene_hash,
                sub.settings,
                (sub.frame_start, sub.frame_end),
                &sub.tier,
                sub.tile_size,
                sub.batch_size,
                sub.requirements,
                now_ms(),
            )
        })
        .await?;
    Ok(Json(JobAccepted {
        job_id,
        scene_hash: hash_hex,
    }))
}

/// Hard-link (or copy) each blob to its path under `dir`.
fn materialize(dir: &Path, blobs: &Path, scene: &SceneListing) -> Result<(), String> {
    for (rel, hash) in &scene.files {
        let dst = dir.join(rel);
        if dst.exists() {
            continue;
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let src = blobs.join(hash);
        std::fs::hard_link(&src, &dst)
            .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
            .map_err(|e| format!("{rel}: {e}"))?;
    }
    Ok(())
}

fn status_of(s: &super::service::Service, id: &str) -> Result<JobStatus, ServiceError> {
    let v = s.job_view(id)?;
    let m = &v.manifest.statement;
    Ok(JobStatus {
        job_id: id.to_string(),
        state: v.state,
        scene_name: m.scene_name.clone(),
        frame_start: m.frame_start,
        frame_end: m.frame_end,
        tier: m.tier.name.clone(),
        tiles_total: v.tiles_total,
        tiles_rendered: v.tiles_rendered,
        tiles_verified: v.tiles_verified,
        round: v.round,
        error: v.error,
        created_unix: m.created_unix,
    })
}

fn check_job_id(id: &str) -> Answer<()> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Fail(
            StatusCode::BAD_REQUEST,
            format!("job id {id:?}: expected 32 hex characters"),
        ))
    }
}

async fn list_jobs(State(st): State<ApiState>, headers: HeaderMap) -> Answer<Json<Vec<JobStatus>>> {
    st.client(&headers).await?;
    let jobs = st
        .shared
        .with(|s| {
            s.job_ids()?
                .iter()
                .map(|id| status_of(s, id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(jobs))
}

async fn job_status(
    State(st): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Answer<Json<JobStatus>> {
    st.client(&headers).await?;
    check_job_id(&id)?;
    Ok(Json(st.shared.with(move |s| status_of(s, &id)).await?))
}

/// `POST /v1/jobs/{id}/dispute`: the job's client disputes it inside its challenge
/// window; the answer is the job's status (`disputed`).
async fn job_dispute(
    State(st): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Answer<Json<JobStatus>> {
    let client = st.client(&headers).await?;
    check_job_id(&id)?;
    Ok(Json(
        st.shared
            .with(move |s| {
                s.open_dispute(&id, &client, now_ms())?;
                status_of(s, &id)
            })
            .await?,
    ))
}

async fn job_bundle(
    State(st): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    st.client(&headers).await?;
    check_job_id(&id)?;
    let json = st.shared.with(move |s| s.bundle(&id)).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

async fn job_frame(
    State(st): State<ApiState>,
    UrlPath((id, frame)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Answer<Vec<u8>> {
    st.client(&headers).await?;
    check_job_id(&id)?;
    let frame: u32 = frame.parse().map_err(|_| {
        Fail(
            StatusCode::BAD_REQUEST,
            format!("frame {frame:?}: expected a frame number"),
        )
    })?;
    Ok(st.shared.with(move |s| s.frame(&id, frame)).await?)
}

async fn nodes(State(st): State<ApiState>, headers: HeaderMap) -> Answer<Json<Vec<NodeView>>> {
    st.caller(&headers, false).await?;
    let views = st
        .shared
        .with(|s| -> Result<Vec<NodeView>, ServiceError> {
            let store = s.store();
            let leases: HashMap<String, u32> = store.leases_by_node()?.into_iter().collect();
            let mut out = Vec::new();
            for w in store.workers()? {
                let Ok(key) = tessera_protocol::hexser::decode::<32>(&w.key)
                    .map(tessera_protocol::keys::PublicKey)
                else {
                    continue;
                };
                let Ok(caps) = serde_json::from_str::<Capabilities>(&w.caps) else {
                    continue;
                };
                out.push(NodeView {
                    key,
                    name: w.name,
                    role: w.role,
                    class: caps.class,
                    memory_bytes: caps.memory_bytes,
                    slots: caps.slots,
                    trust: store.trust(&w.key)?,
                    stake: store.balance(&account::stake(&key))?,
                    balance: store.balance(&account::node(&key))?,
                    last_seen_unix: w.last_seen_ms / 1000,
                    leased_tasks: leases.get(&w.key).copied().unwrap_or(0),
                });
            }
            Ok(out)
        })
        .await?;
    Ok(Json(views))
}

async fn ledger(State(st): State<ApiState>, headers: HeaderMap) -> Answer<Json<LedgerView>> {
    st.client(&headers).await?;
    let view = st
        .shared
        .with(|s| -> Result<LedgerView, ServiceError> {
            let accounts = s
                .store()
                .balances()?
                .into_iter()
                .map(|(account, balance)| AccountBalance { account, balance })
                .collect();
            Ok(LedgerView {
                accounts,
                total: s.store().total()?,
            })
        })
        .await?;
    Ok(Json(view))
}

/// `POST /v1/credits`: the operator credits a client's balance or a node's stake with
/// money that came in from outside the farm. Only the admin token may; the body is read
/// only after the token is checked.
async fn credit(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Json<CreditResponse>> {
    let admin = st.admin_token.as_deref().ok_or_else(|| {
        Fail(
            StatusCode::FORBIDDEN,
            "crediting is off: the coordinator has no --admin-token".into(),
        )
    })?;
    if !super::service::same_secret(bearer(&headers).unwrap_or_default(), admin) {
        return Err(Fail(
            StatusCode::FORBIDDEN,
            "crediting needs the operator's admin token".into(),
        ));
    }
    let req: CreditRequest = serde_json::from_slice(&body)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, format!("credit body: {e}")))?;
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
    use super::check_relative_path;

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
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
