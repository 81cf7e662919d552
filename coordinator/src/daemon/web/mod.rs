//! The coordinator's web dashboard, under `/ui/` on the API's listener: the studio's
//! jobs (filters, bulk control), each job's frame as it fills in with a live tile grid
//! (every tile's state down to the verifier's band and metrics), verdicts, payments and
//! the dispute window, downloads, and for the operator the nodes, the whole ledger and
//! the disputes. Live updates come as Server-Sent Events from the store's event log
//! ([`crate::store::events`]), resumed after a reconnect from `Last-Event-ID`.
//!
//! Pages are rendered on the server with `maud` (HTML checked at compile time, every
//! interpolated value escaped) and made interactive with htmx, vendored as a file; the
//! stylesheet, htmx and a few lines of our own script are compiled into the binary
//! ([`asset`]). No JavaScript build toolchain, no template files to ship.
//!
//! Authentication: a client pastes its API token (or the operator its admin token) into
//! `/ui/login` and gets a session cookie: 32 random bytes, kept server side only as their
//! BLAKE3 hash, `HttpOnly; SameSite=Strict; Path=/ui`, with an expiry. Every other `/ui/`
//! route except the static assets sits behind [`guard`]: no valid session → a redirect
//! to the login page (401 for htmx and event-stream requests), and every POST must carry
//! the session's CSRF token (a form field or the `X-CSRF-Token` header htmx sends). A
//! client sees only its own jobs (another client's is "not found"); the operator sees
//! every job read-only, the nodes and the whole ledger.

mod live;
mod pages;
mod preview;

use super::http::{sanitize, ApiState};
use super::service::{same_secret, Service, ServiceError};
use super::{now_ms, DaemonConfig, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The session cookie's name.
const COOKIE: &str = "tessera_session";
/// How long a dashboard session lasts after login.
const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at once (expired ones are dropped first); more logins are refused.
const MAX_SESSIONS: usize = 10_000;
/// Largest form a dashboard POST may send (a bulk action names up to 500 jobs).
const FORM_LIMIT: usize = 64 << 10;
/// The header htmx sends the CSRF token in (set on `<body hx-headers>`).
const CSRF_HEADER: &str = "x-csrf-token";

/// Who a dashboard session belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    /// A client, by name: its own jobs and accounts.
    Client(String),
    /// The operator: every job (read-only), the nodes, the whole ledger.
    Admin,
}

impl Who {
    /// The client's name; `None` for the operator (who sees every client's).
    fn client(&self) -> Option<&str> {
        match self {
            Who::Client(c) => Some(c),
            Who::Admin => None,
        }
    }
}

/// A request's valid session (a request extension set by [`guard`]).
#[derive(Clone, Debug)]
struct Viewer {
    who: Who,
    /// The session's CSRF token (hex), written into every form.
    csrf: String,
    /// BLAKE3 of the session cookie: the key it is kept under.
    session: [u8; 32],
}

/// A POST's form fields, read and checked by [`guard`] (a request extension).
#[derive(Clone, Debug, Default)]
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> + '_ {
        let name = name.to_string();
        self.0
            .iter()
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Session {
    who: Who,
    csrf: String,
    expires_ms: u64,
}

/// The dashboard's sessions, by BLAKE3 of their cookie: the cookie itself is never kept.
#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `who`: the cookie's value, or `None` when [`MAX_SESSIONS`] live
    /// sessions exist.
    fn create(&self, who: Who, now_ms: u64) -> Option<String> {
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires_ms > now_ms);
            if map.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let cookie = random_hex();
        map.insert(
            *blake3::hash(cookie.as_bytes()).as_bytes(),
            Session {
                who,
                csrf: random_hex(),
                expires_ms: now_ms + SESSION_TTL_MS,
            },
        );
        Some(cookie)
    }

    /// The live session the request's cookie names.
    fn find(&self, headers: &HeaderMap, now_ms: u64) -> Option<Viewer> {
        let cookie = session_cookie(headers)?;
        let key = *blake3::hash(cookie.as_bytes()).as_bytes();
        let map = self.lock();
        let s = map.get(&key).filter(|s| s.expires_ms > now_ms)?;
        Some(Viewer {
            who: s.who.clone(),
            csrf: s.csrf.clone(),
            session: key,
        })
    }

    fn alive(&self, key: &[u8; 32], now_ms: u64) -> bool {
        self.lock().get(key).is_some_and(|s| s.expires_ms > now_ms)
    }

    fn end(&self, key: &[u8; 32]) {
        self.lock().remove(key);
    }
}

/// The value of the session cookie, if the request has one of the right shape.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What the dashboard's handlers share.
#[derive(Clone)]
struct Web {
    shared: Arc<Shared>,
    /// BLAKE3(token) → client name (the API's `--api-token` values).
    clients: Arc<HashMap<[u8; 32], String>>,
    /// BLAKE3 of the operator's token.
    admin: Option<[u8; 32]>,
    sessions: Arc<Sessions>,
}

impl Web {
    /// Run `f` on the service for reading (off the async workers; the outbox publisher
    /// is not woken and no input is counted).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, Oops> {
        Ok(self.shared.with_quiet(f).await?)
    }
}

/// The dashboard's routes (merged into [`super::http::router`]), over the API's clients,
/// admin token and service.
pub fn router<S: Clone + Send + Sync + 'static>(api: &ApiState) -> Router<S> {
    let web = Web {
        shared: api.shared.clone(),
        clients: api.clients.clone(),
        admin: api.admin,
        sessions: Arc::new(Sessions::default()),
    };
    let private = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/jobs") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/jobs") }))
        .route("/ui/logout", post(logout))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/actions", post(pages::actions))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/jobs/{id}/live", get(pages::job_live))
        .route(
            "/ui/jobs/{id}/frames/{frame}/preview.png",
            get(preview::preview),
        )
        .route("/ui/jobs/{id}/download/{file}", get(pages::download))
        .route("/ui/nodes", get(pages::nodes))
        .route("/ui/ledger", get(pages::ledger))
        .route("/ui/disputes", get(pages::disputes))
        .route("/ui/events", get(live::events))
        .route_layer(middleware::from_fn_with_state(web.clone(), guard));
    let public = Router::new()
        .route("/ui/login", get(pages::login_page).post(login))
        .route("/ui/static/{file}", get(asset));
    Router::new()
        .merge(private)
        .merge(public)
        .layer(middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(web)
}

/// The coordinator's HTTP API and dashboard over `service`, without a bus or any
/// background task: what the service queues stays in its outbox. For tests and demos
/// that drive the service themselves (a second `Service` on the same store file sees
/// the same jobs).
pub fn standalone(service: Service, cfg: &DaemonConfig) -> Router {
    let shared = Arc::new(Shared::new(
        service,
        Box::new(|_queue| Box::pin(async { Ok(()) })),
    ));
    super::http::router(ApiState::new(shared, cfg), &cfg.http)
}

/// Whether the request wants data rather than a page (htmx, an event stream): such a
/// request is refused with 401, not redirected to the login page.
fn wants_data(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key("hx-request")
        || h.get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"))
        || req.uri().path() == "/ui/events"
}

/// The session layer of every private `/ui/` route: a live session, and on a POST the
/// session's CSRF token (header or form field; the form, at most [`FORM_LIMIT`] bytes,
/// is read here and handed on as [`Form`]).
async fn guard(State(web): State<Web>, req: Request, next: Next) -> Response {
    let Some(viewer) = web.sessions.find(req.headers(), now_ms()) else {
        if wants_data(&req) {
            return (
                StatusCode::UNAUTHORIZED,
                "no valid dashboard session: log in at /ui/login",
            )
                .into_response();
        }
        return Redirect::to("/ui/login").into_response();
    };
    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
            Ok(b) => b,
            Err(_) => {
                return Oops(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the form is larger than {FORM_LIMIT} bytes"),
                )
                .into_response()
            }
        };
        let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(&bytes) {
            Ok(f) => f,
            Err(e) => return Oops(StatusCode::BAD_REQUEST, format!("form: {e}")).into_response(),
        };
        let form = Form(fields);
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .or_else(|| form.get("csrf"));
        if !presented.is_some_and(|p| same_secret(p, &viewer.csrf)) {
            return Oops(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page and try again".into(),
            )
            .into_response();
        }
        parts.extensions.insert(form);
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(viewer);
    next.run(Request::from_parts(parts, body)).await
}

/// Headers on every dashboard answer: no framing, no sniffing, no referrer, scripts
/// only from the dashboard itself, and pages never cached (static assets are, by URL).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

// --- login -----------------------------------------------------------------------------

/// `POST /ui/login` with `token=…`: a client's API token or the operator's admin token
/// opens a session.
async fn login(State(web): State<Web>, body: Bytes) -> Response {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = Form(fields)
        .get("token")
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    let d = *blake3::hash(token.as_bytes()).as_bytes();
    let who = if token.is_empty() {
        None
    } else if web.admin.is_some_and(|a| a == d) {
        Some(Who::Admin)
    } else {
        web.clients.get(&d).map(|c| Who::Client(c.clone()))
    };
    let Some(who) = who else {
        return (
            StatusCode::UNAUTHORIZED,
            pages::login_form(Some("unknown token")),
        )
            .into_response();
    };
    let Some(cookie) = web.sessions.create(who, now_ms()) else {
        return Oops(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard sessions are open: try again later".into(),
        )
        .into_response();
    };
    let set = format!(
        "{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}",
        SESSION_TTL_MS / 1000
    );
    let mut res = Redirect::to("/ui/jobs").into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /ui/logout`: the session ends and its cookie is cleared.
async fn logout(
    State(web): State<Web>,
    axum::Extension(viewer): axum::Extension<Viewer>,
) -> Response {
    web.sessions.end(&viewer.session);
    let mut res = Redirect::to("/ui/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "tessera_session=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0",
        ),
    );
    res
}

// --- static assets ---------------------------------------------------------------------

/// htmx 2 (`htmx.org` from the npm registry, `dist/htmx.min.js`, Zero-Clause BSD: see
/// `assets/htmx.LICENSE`).
const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("assets/dash.css");
const JS: &[u8] = include_bytes!("assets/dash.js");

fn asset_bytes(name: &str) -> Option<(&'static [u8], &'static str)> {
    match name {
        "htmx.min.js" => Some((HTMX, "text/javascript; charset=utf-8")),
        "dash.css" => Some((CSS, "text/css; charset=utf-8")),
        "dash.js" => Some((JS, "text/javascript; charset=utf-8")),
        _ => None,
    }
}

/// An asset's URL, with a digest of its bytes so that a new binary's assets are fetched
/// anew although they are cached for a year.
fn asset_url(name: &'static str) -> String {
    static DIGESTS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let digests = DIGESTS.get_or_init(|| {
        ["htmx.min.js", "dash.css", "dash.js"]
            .into_iter()
            .filter_map(|n| {
                let (bytes, _) = asset_bytes(n)?;
                Some((n, blake3::hash(bytes).to_hex()[..12].to_string()))
            })
            .collect()
    });
    format!(
        "/ui/static/{name}?v={}",
        digests.get(name).map_or("0", String::as_str)
    )
}

/// `GET /ui/static/{file}`: a compiled-in asset, cached for a year.
async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    match asset_bytes(&file) {
        Some((bytes, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => Oops(
            StatusCode::NOT_FOUND,
            format!("no asset {:?}", sanitize(&file)),
        )
        .into_response(),
    }
}

// --- errors ----------------------------------------------------------------------------

/// An error page (or fragment): the status and what went wrong, escaped.
struct Oops(StatusCode, String);

impl IntoResponse for Oops {
    fn into_response(self) -> Response {
        let text = sanitize(&self.1);
        (self.0, pages::error_page(self.0, &text)).into_response()
    }
}

impl From<ServiceError> for Oops {
    fn from(e: ServiceError) -> Self {
        let status = super::http::status_of_error(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("dashboard: {}", sanitize(&e.to_string()));
        }
        Oops(status, e.to_string())
    }
}

/// A job id from a URL: 32 lowercase hex characters.
fn check_job_id(id: &str) -> Result<(), Oops> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Oops(
            StatusCode::BAD_REQUEST,
            format!("job id {id:?}: expected 32 hex characters"),
        ))
    }
}

/// Job `id` if `who` may see it: a client its own (another client's job does not exist
/// for it), the operator any.
fn visible(s: &Service, id: &str, who: &Who) -> Result<(), ServiceError> {
    let owner = s.store().job_client(id)?;
    match (owner, who) {
        (Some(_), Who::Admin) => Ok(()),
        (Some(owner), Who::Client(c)) if owner == *c => Ok(()),
        _ => Err(ServiceError::NotFound(format!("job {id} does not exist"))),
    }
}
