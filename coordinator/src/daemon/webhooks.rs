//! Webhooks: a client's hooks (added, listed and removed over the API), the deliveries
//! the service queues for them, and the task that POSTs those deliveries.
//!
//! The service never waits for a receiver: [`enqueue`] only appends delivery rows, in
//! the transaction of the effect that caused them (a job's state, a failed check, the
//! receipt at the end of the challenge window), so an event is queued exactly when its
//! effect commits. [`run`] reads due rows in short store calls, never holding the
//! service lock while it talks to a receiver, and POSTs each signed body with a timeout
//! and bounded concurrency. A 2xx marks it delivered; anything else is tried again after
//! an exponential back-off, up to [`WebhookConfig::max_attempts`]. A crash between a POST
//! and its mark sends the delivery again with the same id: delivery is at least once,
//! and receivers drop `Tessera-Delivery` ids they have seen.
//!
//! This module and `http.rs` are the coordinator's only HTTP code: `http.rs` serves the
//! API, this one is a client of the clients' receivers (`tests/architecture.rs`).

use super::service::ServiceError;
use crate::machine::{Effect, Job, JobState};
use crate::store::{DueDelivery, Store, StoreError, WebhookRow};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tessera_api::{WebhookDelivery, WebhookEvent, WebhookRequest, WebhookView, WEBHOOK_EVENTS};
use tessera_protocol::payments::TransferKind;
use tessera_protocol::statements::Decision;
use tokio_util::sync::CancellationToken;

/// Webhooks one client may have.
pub const MAX_CLIENT_WEBHOOKS: u64 = 10;
/// Longest webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Shortest webhook secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest webhook secret, in bytes.
pub const MAX_SECRET_BYTES: usize = 256;

/// The header naming a delivery's event.
pub const EVENT_HEADER: &str = "Tessera-Event";
/// The header carrying a delivery's id (the same on every retry).
pub const DELIVERY_HEADER: &str = "Tessera-Delivery";
/// The header carrying a delivery's signature, `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Tessera-Signature";

// --- the API's side -----------------------------------------------------------------

fn invalid(m: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(m.into())
}

/// Check a webhook request: an `http://` or `https://` URL with a host and no credentials, within
/// [`MAX_URL_BYTES`]; a secret of [`MIN_SECRET_BYTES`] to [`MAX_SECRET_BYTES`] bytes
/// without control characters; one or more events, each from [`WEBHOOK_EVENTS`]. The
/// error names the field. Returns the URL as it is kept and the events without repeats.
pub fn check_request(req: &WebhookRequest) -> Result<(String, Vec<String>), ServiceError> {
    let url = check_url(&req.url)?;
    let n = req.secret.len();
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&n) {
        return Err(invalid(format!(
            "secret: {n} bytes; {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
        )));
    }
    if req.secret.chars().any(char::is_control) {
        return Err(invalid("secret: control characters are not allowed"));
    }
    if req.events.is_empty() {
        return Err(invalid(format!(
            "events: name at least one of {}",
            WEBHOOK_EVENTS.join(", ")
        )));
    }
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        if !WEBHOOK_EVENTS.contains(&e.as_str()) {
            let shown: String = e.chars().take(64).collect();
            return Err(invalid(format!(
                "events: {shown:?} is not one of {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    Ok((url, events))
}

/// Check a webhook URL (see [`check_request`]); the error names the field, `url`.
pub fn check_url(url: &str) -> Result<String, ServiceError> {
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "url: {} bytes, at most {MAX_URL_BYTES}",
            url.len()
        )));
    }
    let shown: String = url.chars().take(128).collect();
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(format!("url: {shown:?}: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(invalid(format!(
                "url: {shown:?}: scheme {other:?}; only http:// and https:// URLs are delivered to"
            )))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "url: credentials in the URL are not allowed (the body is signed with the secret instead)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("url: {shown:?}: no host")));
    }
    Ok(parsed.to_string())
}

fn view(h: WebhookRow) -> WebhookView {
    WebhookView {
        id: h.id,
        url: h.url,
        events: h.events,
        created_ms: h.created_ms,
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Add a webhook for `client` ([`check_request`]); over [`MAX_CLIENT_WEBHOOKS`] it is
/// refused as a quota. Its secret is kept for signing and never shown again.
pub fn add(
    store: &Store,
    client: &str,
    req: &WebhookRequest,
    now_ms: u64,
) -> Result<WebhookView, ServiceError> {
    let (url, events) = check_request(req)?;
    let hook = WebhookRow {
        id: random_id(),
        client: client.to_string(),
        url,
        secret: req.secret.clone(),
        events,
        created_ms: now_ms,
    };
    if !store.insert_webhook(&hook, MAX_CLIENT_WEBHOOKS)? {
        return Err(ServiceError::Quota(format!(
            "client {client:?} has {MAX_CLIENT_WEBHOOKS} webhooks, the most it may have: remove one first"
        )));
    }
    tracing::info!(client, hook = %hook.id, events = ?hook.events, "webhook added");
    Ok(view(hook))
}

/// `client`'s webhooks, without their secrets.
pub fn list(store: &Store, client: &str) -> Result<Vec<WebhookView>, ServiceError> {
    Ok(store
        .client_webhooks(client)?
        .into_iter()
        .map(view)
        .collect())
}

/// Remove `client`'s webhook `id` with its waiting deliveries; another client's hook
/// does not exist for `client`.
pub fn remove(store: &Store, client: &str, id: &str) -> Result<WebhookView, ServiceError> {
    let hook = store
        .delete_webhook(client, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("webhook {id} does not exist")))?;
    tracing::info!(client, hook = %hook.id, "webhook removed");
    Ok(view(hook))
}

/// Deliveries one answer of [`deliveries`] lists.
pub const MAX_LISTED_DELIVERIES: u32 = 100;

/// The latest deliveries (at most [`MAX_LISTED_DELIVERIES`], newest first) of `client`'s
/// webhook `id`; another client's hook does not exist for `client`.
pub fn deliveries(
    store: &Store,
    client: &str,
    id: &str,
) -> Result<Vec<WebhookDelivery>, ServiceError> {
    if !store.client_webhooks(client)?.iter().any(|h| h.id == id) {
        return Err(ServiceError::NotFound(format!(
            "webhook {id} does not exist"
        )));
    }
    Ok(store
        .recent_deliveries(id, MAX_LISTED_DELIVERIES)?
        .into_iter()
        .map(|d| WebhookDelivery {
            id: d.id,
            event: d.event,
            job_id: d.job_id,
            attempts: d.attempts,
            delivered_ms: d.delivered_ms,
            next_at_ms: d.next_at_ms,
            last_error: d.last_error,
        })
        .collect())
}

// --- the service's side -----------------------------------------------------------------

/// The event `effect` is for webhooks, with what it carries; `None` for effects no hook
/// hears of.
fn event_of(machine: &Job, effect: &Effect) -> Option<(&'static str, JobState, serde_json::Value)> {
    let progress = || machine.progress();
    match effect {
        Effect::State(JobState::Done) => {
            let p = progress();
            Some((
                "job.done",
                JobState::Done,
                serde_json::json!({
                    "tiles_total": p.tiles_total,
                    "rounds": p.round + 1,
                    "release_at_ms": p.release_at_ms,
                }),
            ))
        }
        Effect::State(JobState::Failed) => {
            let p = progress();
            Some((
                "job.failed",
                JobState::Failed,
                serde_json::json!({
                    "tiles_total": p.tiles_total,
                    "tiles_verified": p.tiles_verified,
                    "error": p.error,
                }),
            ))
        }
        Effect::State(JobState::Cancelled) => {
            let p = progress();
            Some((
                "job.cancelled",
                JobState::Cancelled,
                serde_json::json!({
                    "tiles_total": p.tiles_total,
                    "tiles_verified": p.tiles_verified,
                }),
            ))
        }
        Effect::Verdict(v) if v.statement.decision == Decision::Fail => {
            let s = &v.statement;
            Some((
                "verification.failed",
                machine.state(),
                serde_json::json!({
                    "round": s.round,
                    "node": s.node.to_string(),
                    "escalated": s.check.escalated,
                    "dispute": s.check.dispute,
                    "samples": s.samples.len(),
                    "verifier": v.signer.to_string(),
                }),
            ))
        }
        Effect::Receipt(receipt) => {
            let released: u64 = receipt
                .statement
                .transfers
                .iter()
                .filter(|t| t.kind == TransferKind::Release)
                .map(|t| t.amount)
                .sum();
            Some((
                "job.dispute_window_closed",
                machine.state(),
                serde_json::json!({ "released": released }),
            ))
        }
        _ => None,
    }
}

/// Queue a delivery of `effect` of job `job` to every webhook of the job's client that
/// asked for its event, in the caller's transaction (the one that carries the effect
/// out): an event is queued if and only if its effect commits. Effects no hook hears of
/// cost nothing; the others one indexed read and a row per hook.
pub fn enqueue(
    s: &Store,
    job: &str,
    machine: &Job,
    effect: &Effect,
    now_ms: u64,
) -> Result<(), StoreError> {
    let Some((event, state, data)) = event_of(machine, effect) else {
        return Ok(());
    };
    let client = &machine.manifest().statement.client;
    for hook in s.webhooks_for_event(client, event)? {
        let id = random_id();
        let body = WebhookEvent {
            id: id.clone(),
            event: event.to_string(),
            job_id: job.to_string(),
            state: state.to_string(),
            at_ms: now_ms,
            data: data.clone(),
        };
        let json = s.encode("webhook event", job, &body)?;
        s.insert_delivery(&id, &hook, job, event, &json, now_ms)?;
    }
    Ok(())
}

// --- delivery -----------------------------------------------------------------------------

/// How the delivery task works.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// A POST that has not answered in this long failed.
    pub timeout: Duration,
    /// The wait after the first failed attempt; it doubles after each one...
    pub first_retry: Duration,
    /// ...up to this.
    pub max_retry: Duration,
    /// Attempts of one delivery before it is given up (logged, kept as failed).
    pub max_attempts: u32,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// How often the task looks for due deliveries when it has nothing in flight.
    pub poll_every: Duration,
    /// Finished deliveries (delivered or given up) are removed this long after they
    /// were queued.
    pub retention: Duration,
    /// Deliver to internal addresses too (loopback, private, link-local, ...; see
    /// [`is_internal`]): for a farm whose receivers are on its own network. Off by
    /// default, so that a client's webhook cannot make the coordinator POST into the
    /// network it runs in (the broker's management API, a cloud metadata service).
    pub allow_internal: bool,
    /// Root certificates (PEM) trusted for https receivers besides the system's (a
    /// studio's own certificate authority).
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl Default for WebhookConfig {
    /// 10 s per POST; retries after 1 s, doubling up to 10 minutes, for 153 attempts
    /// (about a day); 8 in flight.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            max_attempts: 153,
            concurrency: 8,
            poll_every: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 86_400),
            allow_internal: false,
            extra_roots_pem: Vec::new(),
        }
    }
}

impl WebhookConfig {
    /// The wait after failed attempt number `attempts` (1 for the first): `first_retry`
    /// doubled `attempts - 1` times, at most `max_retry`.
    pub fn retry_after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        self.first_retry
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_retry)
    }

    /// How long a delivery is tried before it is given up: the waits between its
    /// [`WebhookConfig::max_attempts`] attempts.
    pub fn retry_span(&self) -> Duration {
        (1..self.max_attempts.max(1))
            .map(|n| self.retry_after(n))
            .sum()
    }
}

/// Why a file of root certificates (`--webhook-ca`) was not taken.
#[derive(Debug, thiserror::Error)]
pub enum RootsFileError {
    /// It could not be read.
    #[error("--webhook-ca {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds no PEM certificate, or a broken one.
    #[error("--webhook-ca {path}: {reason}")]
    NotPem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Read a PEM file of root certificates for [`WebhookConfig::extra_roots_pem`]: an error
/// names the file and what is wrong with it (unreadable, or no certificate in it).
pub fn read_root_pem(path: &std::path::Path) -> Result<Vec<u8>, RootsFileError> {
    let pem = std::fs::read(path).map_err(|source| RootsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let not_pem = |reason: String| RootsFileError::NotPem {
        path: path.to_path_buf(),
        reason,
    };
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(not_pem("no PEM certificate in it".into())),
        Err(e) => Err(not_pem(format!("not PEM certificates: {e}"))),
    }
}

/// The `Tessera-Signature` value of `body` sent at `unix_secs`:
/// `t=<unix_secs>,v1=<hex HMAC-SHA256(secret, "<unix_secs>.<body>")>`.
pub fn signature(secret: &str, unix_secs: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Where the delivery task reads and writes its rows: a short call on the store, off the
/// async workers.
pub trait DeliveryStore: Clone + Send + Sync + 'static {
    /// Run `f` on the store.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send;
}

/// The daemon's own store, reached the way the outbox publisher reaches it: one short
/// call under the service lock at a time, never held across a POST.
impl DeliveryStore for Arc<super::Shared> {
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send {
        let shared = self.clone();
        async move { shared.with_quiet(move |svc| f(svc.store())).await }
    }
}

/// A store connection of the delivery task's own (SQLite serializes it with the
/// service's), for a delivery task beside a [`super::service::Service`] that is not the
/// daemon's (tests, tools).
#[derive(Clone)]
pub struct OwnStore(Arc<std::sync::Mutex<Store>>);

impl OwnStore {
    /// The delivery task's store.
    pub fn new(store: Store) -> Self {
        Self(Arc::new(std::sync::Mutex::new(store)))
    }
}

impl DeliveryStore for OwnStore {
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send {
        let store = self.0.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let guard = store
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                f(&guard)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The hook's URL is not one the task delivers to (never retried).
    #[error("refused: {0}")]
    Refused(String),
    /// No answer: connection refused, reset, or timed out.
    #[error("no answer: {0}")]
    Transport(String),
    /// The receiver answered, but not with 2xx.
    #[error("http {0}")]
    Status(u16),
}

/// Whether `ip` is an address a client's webhook may not reach unless the operator
/// allows it ([`WebhookConfig::allow_internal`]): unspecified, loopback, private
/// (RFC 1918, unique local `fc00::/7`), link-local (`169.254/16`, where cloud metadata
/// services answer, and `fe80::/10`), shared (`100.64/10`), benchmarking, documentation,
/// reserved, broadcast and multicast addresses, and IPv6 addresses that embed one
/// (IPv4-mapped, NAT64).
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b {
                let o = v6.octets();
                return is_internal(IpAddr::V4(std::net::Ipv4Addr::new(
                    o[12], o[13], o[14], o[15],
                )));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// The delivery client's resolver when internal addresses are not allowed: a host's
/// internal addresses are dropped, and a host with nothing else is an error naming it,
/// so a name that resolves (or is rebound) to an internal address is never connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to internal addresses ({}), which webhooks are not delivered to",
                    all.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// POST one delivery, signed now; an internal address is refused unless `allow_internal`
/// (a name is checked as it resolves, by [`PublicOnly`]).
async fn post(
    http: &reqwest::Client,
    d: &DueDelivery,
    allow_internal: bool,
) -> Result<(), DeliveryError> {
    let url = reqwest::Url::parse(&d.url)
        .map_err(|e| DeliveryError::Refused(format!("url {:?}: {e}", d.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DeliveryError::Refused(format!(
            "url {:?}: only http:// and https:// URLs are delivered to",
            d.url
        )));
    }
    let literal = url.host_str().and_then(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
    });
    if let Some(ip) = literal.filter(|ip| !allow_internal && is_internal(*ip)) {
        return Err(DeliveryError::Refused(format!(
            "url {:?}: {ip} is an internal address, which webhooks are not delivered to (the coordinator's operator may allow them: --webhook-allow-internal)",
            d.url
        )));
    }
    let unix_secs = super::now_ms() / 1000;
    let answer = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, &d.event)
        .header(DELIVERY_HEADER, &d.id)
        .header(
            SIGNATURE_HEADER,
            signature(&d.secret, unix_secs, d.body.as_bytes()),
        )
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| {
            // reqwest's text leaves out the cause (refused, reset): it is in the chain.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            DeliveryError::Transport(text)
        })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status.as_u16()))
    }
}

/// Record what one attempt of `d` gave: delivered, due again after its back-off, or
/// given up. A failed write is only logged: the delivery stays due and is sent again.
async fn record<S: DeliveryStore>(
    store: &S,
    cfg: &WebhookConfig,
    d: DueDelivery,
    outcome: Result<(), DeliveryError>,
) {
    let attempts = d.attempts.saturating_add(1);
    let now = super::now_ms();
    let written = match &outcome {
        Ok(()) => {
            tracing::debug!(hook = %d.hook_id, delivery = %d.id, event = %d.event, attempts, "webhook delivered");
            let id = d.id.clone();
            store
                .call(move |s| s.mark_delivered(&id, attempts, now))
                .await
        }
        Err(e) => {
            let refused = matches!(e, DeliveryError::Refused(_));
            let next = (!refused && attempts < cfg.max_attempts)
                .then(|| now.saturating_add(cfg.retry_after(attempts).as_millis() as u64));
            match next {
                Some(at) => {
                    tracing::info!(hook = %d.hook_id, delivery = %d.id, event = %d.event, attempts, retry_in_ms = at - now, "webhook delivery failed, will retry: {e}")
                }
                None => {
                    tracing::warn!(hook = %d.hook_id, delivery = %d.id, event = %d.event, attempts, "webhook delivery given up: {e}")
                }
            }
            let (id, error) = (d.id.clone(), e.to_string());
            store
                .call(move |s| s.mark_failed(&id, attempts, next, &error))
                .await
        }
    };
    if let Err(e) = written {
        tracing::error!(delivery = %d.id, "recording a webhook delivery (it will be sent again): {e}");
    }
}

/// POSTs in flight to one hook at once: a receiver that does not answer holds at most
/// this many of the task's slots until its timeouts, never all of them.
const PER_HOOK: usize = 2;

/// How often finished deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deliver due webhook deliveries until `shutdown`: at most `cfg.concurrency` POSTs in
/// flight (and [`PER_HOOK`] to one hook), each read from and recorded in `store` in short calls. A delivery in flight
/// when `shutdown` comes is dropped unrecorded, so it is sent again after a restart.
pub async fn run<S: DeliveryStore>(store: S, cfg: WebhookConfig, shutdown: CancellationToken) {
    let mut roots = Vec::new();
    for pem in &cfg.extra_roots_pem {
        match reqwest::Certificate::from_pem_bundle(pem) {
            Ok(certs) => roots.extend(certs),
            Err(e) => {
                tracing::error!("webhooks: a root certificate file is not PEM, left out: {e}")
            }
        }
    }
    let mut builder = tessera_api::client::http_client_builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tessera-coordinator/", env!("CARGO_PKG_VERSION")))
        .tls_certs_merge(roots);
    if !cfg.allow_internal {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    let http = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks: no HTTP client, nothing will be delivered: {e}");
            return;
        }
    };
    let slots = cfg.concurrency.max(1);
    // Deliveries in flight, by id → their hook.
    let mut in_flight: HashMap<String, String> = HashMap::new();
    let mut posts = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(cfg.poll_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = posts.join_next(), if !posts.is_empty() => {
                if let Ok((d, outcome)) = done {
                    let d: DueDelivery = d;
                    in_flight.remove(&d.id);
                    record(&store, &cfg, d, outcome).await;
                }
            }
            _ = tick.tick() => {}
        }
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            let before = super::now_ms().saturating_sub(cfg.retention.as_millis() as u64);
            match store.call(move |s| s.prune_deliveries(before)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "finished webhook deliveries pruned"),
                Err(e) => tracing::warn!("pruning webhook deliveries: {e}"),
            }
        }
        let free = slots.saturating_sub(in_flight.len());
        if free == 0 {
            continue;
        }
        let now = super::now_ms();
        // Read past what a dead receiver's hook may not take now, so that it cannot hold
        // up the others' deliveries.
        let limit = (slots * 4) as u32;
        let due = match store.call(move |s| s.due_deliveries(now, limit)).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("reading due webhook deliveries: {e}");
                continue;
            }
        };
        let mut per_hook: HashMap<String, usize> = HashMap::new();
        for hook in in_flight.values() {
            *per_hook.entry(hook.clone()).or_default() += 1;
        }
        let mut fresh = Vec::new();
        for d in due {
            if fresh.len() == free {
                break;
            }
            let of_hook = per_hook.entry(d.hook_id.clone()).or_default();
            if in_flight.contains_key(&d.id) || *of_hook >= PER_HOOK {
                continue;
            }
            *of_hook += 1;
            fresh.push(d);
        }
        for d in fresh {
            in_flight.insert(d.id.clone(), d.hook_id.clone());
            let http = http.clone();
            let allow_internal = cfg.allow_internal;
            posts.spawn(async move {
                let outcome = post(&http, &d, allow_internal).await;
                (d, outcome)
            });
        }
    }
    posts.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_back_off_doubles_to_ten_minutes_and_retries_for_about_a_day() {
        let cfg = WebhookConfig::default();
        assert_eq!(cfg.retry_after(1), Duration::from_secs(1));
        assert_eq!(cfg.retry_after(2), Duration::from_secs(2));
        assert_eq!(cfg.retry_after(10), Duration::from_secs(512));
        assert_eq!(cfg.retry_after(11), Duration::from_secs(600));
        assert_eq!(cfg.retry_after(u32::MAX), Duration::from_secs(600));
        let span = cfg.retry_span();
        assert!(
            span >= Duration::from_secs(23 * 3600) && span <= Duration::from_secs(25 * 3600),
            "retries span {span:?}"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        let s = signature("Jefe", 1_700_000_000, b"{}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        let want = format!(
            "t=1700000000,v1={}",
            hex::encode(mac.finalize().into_bytes())
        );
        assert_eq!(s, want);
        assert_ne!(s, signature("Jefe", 1_700_000_001, b"{}"));
        assert_ne!(s, signature("Jefe", 1_700_000_000, b"{ }"));
        assert_ne!(s, signature("jefe", 1_700_000_000, b"{}"));
    }

    fn req(url: &str, secret: &str, events: &[&str]) -> WebhookRequest {
        WebhookRequest {
            url: url.into(),
            secret: secret.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn bad_urls_secrets_and_events_are_refused_naming_the_field() {
        let secret = "0123456789abcdef";
        let refused = |r: WebhookRequest| match check_request(&r) {
            Err(ServiceError::Invalid(m)) => m,
            other => panic!("{r:?}: {other:?}"),
        };
        for url in [
            "ftp://example.com/hook",
            "file:///etc/passwd",
            "http://user:pw@example.com/hook",
            "http://user@example.com/hook",
            "not a url",
            "http://",
            &format!("http://example.com/{}", "a".repeat(MAX_URL_BYTES)),
        ] {
            let m = refused(req(url, secret, &["job.done"]));
            assert!(m.starts_with("url: "), "{url}: {m}");
        }
        for s in [
            "short",
            &"x".repeat(MAX_SECRET_BYTES + 1),
            "0123456789\nabcdef",
        ] {
            let m = refused(req("http://example.com/h", s, &["job.done"]));
            assert!(m.starts_with("secret: "), "{s:?}: {m}");
        }
        for events in [&[][..], &["job.started"], &["job.done", "JOB.DONE"]] {
            let m = refused(req("http://example.com/h", secret, events));
            assert!(m.starts_with("events: "), "{events:?}: {m}");
        }
        let (url, events) = check_request(&req(
            "http://127.0.0.1:9/h?x=1",
            secret,
            &["job.done", "job.failed", "job.done"],
        ))
        .unwrap();
        assert_eq!(url, "http://127.0.0.1:9/h?x=1");
        assert_eq!(events, ["job.done", "job.failed"]);
        let (url, _) =
            check_request(&req("https://hooks.example.com/t", secret, &["job.done"])).unwrap();
        assert_eq!(url, "https://hooks.example.com/t");
    }

    #[test]
    fn internal_addresses_are_told_from_public_ones() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }
}
