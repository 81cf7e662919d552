//! The daemon coordinator's state machine. Every input (a submitted job, a node's result,
//! a verdict, a node signal, a reconciler tick) is one call that reads and writes the store
//! inside one transaction and queues what must be published in the outbox table, so
//! "commit, then publish" survives a crash between the two. No bus, no HTTP, and the
//! clock is a parameter (`now_ms`): tests drive leases with virtual time.

use crate::job::{self, MAX_ROUNDS};
use crate::store::{RequestRow, Store, StoreError, TaskRow, WorkerRow};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tessera_protocol::bundle::{
    BatchRecord, DisputeRecord, FinalTile, NodeInfo, NodeSamples, ProofBundle, RoundRecord,
    BUNDLE_FORMAT, BUNDLE_VERSION,
};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{
    account, default_tiers, trust_after, LedgerError, Pricing, SamplingPolicy, Transfer,
    TransferKind,
};
use tessera_protocol::rules::{
    dispute_opened_transfers, dispute_settled_transfers, dispute_transfers, escrow_transfer,
    verdict_transfers, NodeOutcome,
};
use tessera_protocol::statements::{
    CheckKind, Decision, DisputeCommitment, JobManifest, NodeSignal, NodeSnapshot, Registration,
    RoundCommitment, Signed, Statement, TaskNote, Verdict, MANIFEST_VERSION,
};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::wire::{
    node_queue, queue_verifier, verifier_queue, BatchResult, Capabilities, RenderTask,
    Requirements, VerdictMessage, VerifyRequest, QUEUE_TASKS, QUEUE_VERIFY, WIRE_VERSION,
};

/// The first check of a dispute.
const DISPUTE_CHECK: CheckKind = CheckKind {
    dispute: true,
    escalated: false,
};
use tessera_protocol::{tile_layout, Digest, RenderSettings, TileRect};

use tessera_protocol::limits::{check_frames, BATCH_SIZE, TILE_SIZE};
pub use tessera_protocol::limits::{MAX_BOUNCES, MAX_EDGE, MAX_FRAMES, MAX_SPP};
/// Most task ids one node signal may name (held, declined and failed together).
pub const MAX_SIGNAL_NOTES: usize = 4096;
/// The largest single operator credit (10^15 micro-credits).
pub const MAX_CREDIT: u64 = 1_000_000_000_000_000;
/// Registration challenges waiting to be used at once (anyone may ask for one).
pub const MAX_CHALLENGES: u64 = 10_000;

/// What one job and one client may ask of the farm, in one place. Every limit is checked
/// with checked arithmetic before anything is written; a job over a job limit is refused
/// as invalid (422), a client over a client quota as [`ServiceError::Quota`] (429).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tasks one job may create (`frames × ⌈tiles per frame / batch size⌉`): each is a
    /// row, a message and a lease, all written in the submission's transaction.
    pub max_job_tasks: u64,
    /// Tiles one job may have (`frames × tiles per frame`).
    pub max_job_tiles: u64,
    /// Jobs of one client that have not ended.
    pub max_client_jobs: u64,
    /// Bytes of scene files one client may have stored.
    pub max_client_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_job_tasks: 20_000,
            max_job_tiles: 2_000_000,
            max_client_jobs: 64,
            max_client_bytes: 64 << 30,
        }
    }
}

/// The size of a job before it is planned: `(tiles, tasks)`, or `None` when it overflows.
pub fn job_size(
    width: u32,
    height: u32,
    tile_size: u32,
    batch_size: u32,
    frames: (u32, u32),
) -> Option<(u64, u64)> {
    let t = u64::from(tile_size.max(1));
    let per_frame = u64::from(width).div_ceil(t) * u64::from(height).div_ceil(t);
    let n_frames = u64::from(frames.1.checked_sub(frames.0)?) + 1;
    let tiles = per_frame.checked_mul(n_frames)?;
    let tasks = per_frame
        .div_ceil(u64::from(batch_size.max(1)))
        .checked_mul(n_frames)?;
    Some((tiles, tasks))
}

/// Check a job's settings against what its scene has (a camera of that name) and what
/// the renderer can do (a positive frame rate, bounces within [`MAX_BOUNCES`]). The
/// error names the field.
pub fn check_settings(settings: &RenderSettings, cameras: &[String]) -> Result<(), ServiceError> {
    let bad = |m: String| Err(ServiceError::Invalid(m));
    if let Some(name) = &settings.camera {
        if !cameras.iter().any(|c| c == name) {
            let shown: String = name.chars().take(64).collect();
            return bad(if cameras.is_empty() {
                format!("settings.camera: {shown:?}: the scene has no cameras (leave it out to use the default view)")
            } else {
                format!(
                    "settings.camera: the scene has no camera {shown:?}; it has {}",
                    cameras
                        .iter()
                        .take(16)
                        .map(|c| format!("{c:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
    }
    Ok(())
}

/// Compare a presented secret with the configured one in constant time (BLAKE3 hashes
/// compare in constant time), so response timing does not leak the token.
pub fn same_secret(presented: &str, configured: &str) -> bool {
    blake3::hash(presented.as_bytes()) == blake3::hash(configured.as_bytes())
}

/// What the store keeps of a worker's session token: its BLAKE3 hash (hex).
fn session_digest(session: &str) -> String {
    blake3::hash(session.as_bytes()).to_hex().to_string()
}

/// The farm's challenge window: a day to dispute a job before its hold-backs are
/// released ([`ServiceConfig::default`], and so `tessera coordinator`'s default).
/// `tessera render` signs its own default, 0, into its manifests: it releases
/// hold-backs when the job ends.
pub const DEFAULT_CHALLENGE_WINDOW_SECS: u64 = 86_400;

/// The service's policy knobs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// A task's lease lasts this long after the node's last heartbeat naming it.
    pub lease_ms: u64,
    /// Deliveries of one task before its job fails.
    pub max_attempts: u32,
    /// Failures (expired leases, failed renders, refused results) of one node on one job
    /// before it is blocked from that job.
    pub blocklist_after: u32,
    /// Default tile edge.
    pub tile_size: u32,
    /// Default tiles per task.
    pub batch_size: u32,
    /// Hold-back release delay; 0 releases when the job finishes.
    pub challenge_window_secs: u64,
    /// Stake slashed on a failed verification, %.
    pub slash_pct: u32,
    /// A verify request unanswered this long is published again.
    pub verify_timeout_ms: u64,
    /// An open task nobody leased for this long is published again (a lost or parked
    /// message); a long queue only delays this, it never loses a task.
    pub unleased_timeout_ms: u64,
    /// Nodes must present this token to register, when set (otherwise any key may
    /// register as a node: it starts with no stake and trust 0).
    pub node_token: Option<String>,
    /// A verifier may register when it presents this token (which must differ from the
    /// node token)...
    pub verifier_token: Option<String>,
    /// ...or when its key is one of these. With neither, no key can become a verifier.
    pub verifier_keys: Vec<PublicKey>,
    /// A node signal is taken only when its send time is this close to the
    /// coordinator's clock (and each signal only once), so replays do nothing.
    pub signal_window_ms: u64,
    /// How far a client's balance may fall short of a job's escrow (micro-credits); the
    /// shortfall is lent from the client's credit line, `external:credit:<client>`.
    pub client_overdraft: u64,
    /// AMQP namespace told to registering workers.
    pub namespace: String,
    /// How re-renders of another class are judged (signed into every manifest).
    pub tolerance: Tolerance,
    /// How many tiles are sampled (signed into every manifest).
    pub sampling: SamplingPolicy,
    /// A client's deposit to dispute a job, % of the job's price.
    pub dispute_deposit_pct: u32,
    /// What one job and one client may ask of the farm.
    pub limits: Limits,
    /// A worker's session token expires when the worker has not been heard from (HTTP
    /// with the session, heartbeats) for this long; it then registers again.
    pub session_ttl_ms: u64,
    /// Whether a tier's minimum trust admits nodes (the farm: the trusted tier takes only
    /// nodes that earned it). `tessera render` turns it off: its local nodes are the
    /// operator's own, and its store starts empty each run, so no node has trust yet.
    pub enforce_tier_trust: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            lease_ms: 15_000,
            max_attempts: 8,
            blocklist_after: 3,
            tile_size: 64,
            batch_size: 16,
            challenge_window_secs: DEFAULT_CHALLENGE_WINDOW_SECS,
            slash_pct: 50,
            verify_timeout_ms: 300_000,
            unleased_timeout_ms: 1_800_000,
            node_token: None,
            verifier_token: None,
            verifier_keys: Vec::new(),
            signal_window_ms: 300_000,
            client_overdraft: 0,
            namespace: "tessera".into(),
            tolerance: Tolerance::default(),
            sampling: SamplingPolicy::default(),
            dispute_deposit_pct: 10,
            limits: Limits::default(),
            session_ttl_ms: 86_400_000,
            enforce_tier_trust: true,
        }
    }
}

/// Why the service refused or failed an input.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed (the input may be retried).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input is wrong; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The input names something unknown.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed for this caller.
    #[error("{0}")]
    Forbidden(String),
    /// The farm cannot do it now (e.g. no verifier registered).
    #[error("{0}")]
    Unavailable(String),
    /// The client's balance does not cover the job.
    #[error("{0}")]
    Funds(String),
    /// The client is over one of its quotas ([`Limits`]); it may try again later.
    #[error("{0}")]
    Quota(String),
}

/// What to do with the delivery that carried an input.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Its effect is stored (or it was a harmless duplicate): ack it.
    Done,
    /// It is refused for good: park it (dead-letter) with this reason, logged.
    Refused(String),
    /// It lost a race that at-least-once delivery makes normal, and counts for nothing:
    /// ack it and log the reason. For example an authentic result from a registered node
    /// whose task the broker redelivered to another node, which leased it first (a
    /// broker restart does this). Parking is for what an operator should look at.
    Superseded(String),
}

/// A job's mutable progress (JSON in `job_runs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobRun {
    client: String,
    round: u32,
    next_batch_id: u32,
    batch_size: u32,
    requirements: Requirements,
    blocked: Vec<PublicKey>,
    error: Option<String>,
    tiles_total: u32,
    tiles_verified: u32,
    scene_hint: Option<String>,
    /// When the job's hold-backs are due (done jobs with a challenge window).
    #[serde(default)]
    release_at_ms: Option<u64>,
    /// Nodes need at least this trust to take the job's tasks (the tier's minimum).
    #[serde(default)]
    min_trust: u32,
    /// The client's dispute, once opened.
    #[serde(default)]
    dispute: Option<DisputeRun>,
}

/// A dispute in progress or settled (in [`JobRun`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DisputeRun {
    commitment: Signed<DisputeCommitment>,
    #[serde(with = "tessera_protocol::hexser::arr")]
    nonce: Digest,
    /// Whether every dispute check is final and the deposit has gone to the winner.
    settled: bool,
    /// Nodes the dispute failed.
    lost: Vec<PublicKey>,
}

/// A job as the API shows it.
#[derive(Clone, Debug)]
pub struct JobView {
    /// Signed manifest.
    pub manifest: Signed<JobManifest>,
    /// `queued`, `rendering`, `verifying`, `done`, `failed`.
    pub state: String,
    /// Current round.
    pub round: u32,
    /// Tiles in the job.
    pub tiles_total: u32,
    /// Tiles delivered in the current round plus tiles accepted before.
    pub tiles_rendered: u32,
    /// Tiles accepted.
    pub tiles_verified: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// When its hold-backs are released (a done job inside its challenge window).
    pub release_at_ms: Option<u64>,
}

/// The coordinator's core.
pub struct Service {
    store: Store,
    key: SecretKey,
    cfg: ServiceConfig,
}

fn to_json<T: Serialize>(what: &str, v: &T) -> Result<String, ServiceError> {
    serde_json::to_string(v).map_err(|e| ServiceError::Invalid(format!("encoding {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, ServiceError> {
    serde_json::from_str(s).map_err(|e| {
        ServiceError::Store(StoreError::Corrupt {
            path: "store".into(),
            what: what.into(),
            reason: e.to_string(),
        })
    })
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

impl Service {
    /// A service over `store`, signing with `key`.
    pub fn new(store: Store, key: SecretKey, cfg: ServiceConfig) -> Self {
        Self { store, key, cfg }
    }

    /// The coordinator's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// The store (for the outbox publisher and read-only views).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    // --- registration -----------------------------------------------------------------

    /// A fresh single-use registration challenge (hex), valid for five minutes.
    pub fn challenge(&self, now_ms: u64) -> Result<String, ServiceError> {
        let c = hex::encode(random32());
        if !self
            .store
            .insert_challenge(&c, now_ms, now_ms + 300_000, MAX_CHALLENGES)?
        {
            return Err(ServiceError::Quota(format!(
                "{MAX_CHALLENGES} registrations are in progress, the most the coordinator keeps: try again in a few minutes"
            )));
        }
        Ok(c)
    }

    /// Register a node or verifier that signed a challenge; returns its session token.
    pub fn register(
        &self,
        reg: &Signed<Registration>,
        caps: &Capabilities,
        token: Option<&str>,
        now_ms: u64,
    ) -> Result<String, ServiceError> {
        let r = &reg.statement;
        reg.verify()
            .map_err(|e| ServiceError::Forbidden(format!("registration: {e}")))?;
        self.grant(reg, token)?;
        if r.role != "node" && r.role != "verifier" {
            return Err(ServiceError::Invalid(format!(
                "registration.role: {:?} is neither \"node\" nor \"verifier\"",
                r.role
            )));
        }
        let allowed = |c: char| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-');
        let n = r.name.chars().count();
        if n == 0 || n > 64 || !r.name.chars().all(allowed) {
            return Err(ServiceError::Invalid(
                "registration.name: 1 to 64 letters, digits, spaces, '.', '_' or '-'".into(),
            ));
        }
        if r.coordinator != self.public() {
            return Err(ServiceError::Forbidden(format!(
                "registration names coordinator {}, this is {}",
                r.coordinator.short(),
                self.public().short()
            )));
        }
        if r.capabilities != caps.digest() {
            return Err(ServiceError::Invalid(
                "capabilities: they do not match the signed digest".into(),
            ));
        }
        if caps.slots == 0 || caps.slots > 1024 {
            return Err(ServiceError::Invalid(format!(
                "capabilities.slots: {} is outside 1..=1024",
                caps.slots
            )));
        }
        let session = hex::encode(random32());
        let key = reg.signer;
        self.store
            .atomically(|s| {
                if !s.take_challenge(&hex::encode(r.challenge), now_ms)? {
                    return Err(StoreError::Corrupt {
                        path: "challenge".into(),
                        what: "registration.challenge".into(),
                        reason: "unknown, used or expired".into(),
                    });
                }
                // A key keeps the role it first registered with (checked again here,
                // inside the transaction that writes it).
                if s.worker(&key.to_string())?
                    .is_some_and(|w| w.role != r.role)
                {
                    return Err(StoreError::Corrupt {
                        path: "workers".into(),
                        what: "registration.role".into(),
                        reason: format!("key {} is registered with another role", key.short()),
                    });
                }
                s.upsert_worker(
                    &WorkerRow {
                        key: key.to_string(),
                        name: r.name.clone(),
                        role: r.role.clone(),
                        caps: serde_json::to_string(caps).unwrap_or_default(),
                        last_seen_ms: now_ms,
                    },
                    &session_digest(&session),
                )?;
                s.upsert_node(
                    &key.to_string(),
                    &r.name,
                    &serde_json::to_string(&caps.class).unwrap_or_default(),
                )?;
                Ok(())
            })
            .map_err(|e| match e {
                StoreError::Corrupt { what, reason, .. }
                    if what == "registration.challenge" || what == "registration.role" =>
                {
                    ServiceError::Forbidden(format!("{what}: {reason}"))
                }
                e => e.into(),
            })?;
        tracing::info!(worker = %key.short(), name = %r.name, role = %r.role, "registered");
        Ok(session)
    }

    /// Whether the operator granted the registration's role to its key: a node needs the
    /// node token when one is set; a verifier needs its key on the allow-list or the
    /// verifier token, and with neither configured nobody is a verifier. A key keeps one
    /// role: registering it again with another is refused.
    fn grant(&self, reg: &Signed<Registration>, token: Option<&str>) -> Result<(), ServiceError> {
        let r = &reg.statement;
        let who = format!("registration of {} as a {:?}", reg.signer.short(), r.role);
        let granted = match r.role.as_str() {
            "node" => self
                .cfg
                .node_token
                .as_deref()
                .is_none_or(|want| token.is_some_and(|t| same_secret(t, want))),
            "verifier" => {
                self.cfg.verifier_keys.contains(&reg.signer)
                    || self
                        .cfg
                        .verifier_token
                        .as_deref()
                        .is_some_and(|want| token.is_some_and(|t| same_secret(t, want)))
            }
            other => {
                return Err(ServiceError::Invalid(format!(
                    "registration.role: {other:?} is neither \"node\" nor \"verifier\""
                )))
            }
        };
        if !granted {
            return Err(ServiceError::Forbidden(if r.role == "node" {
                format!("{who}: missing or wrong node token")
            } else {
                format!("{who}: the operator grants the verifier role (--verifier-key, --verifier-token), and not to this key with this token")
            }));
        }
        if let Some(w) = self.store.worker(&reg.signer.to_string())? {
            if w.role != r.role {
                return Err(ServiceError::Forbidden(format!(
                    "{who}: the key is registered as a {:?}, and a key keeps one role",
                    w.role
                )));
            }
        }
        Ok(())
    }

    /// Credit `amount` micro-credits from outside the farm to a client's balance or a
    /// node's stake (`to` is `client:NAME` or `stake:KEY`), once per `reference`: the
    /// operator's record of money that came in. The ledger still sums to zero: the
    /// amount comes from `external:operator-deposits`.
    pub fn credit(&self, to: &str, amount: u64, reference: &str) -> Result<bool, ServiceError> {
        let valid_to = to
            .strip_prefix("client:")
            .is_some_and(|c| !c.is_empty() && c.len() <= 64 && !c.chars().any(char::is_control))
            || to
                .strip_prefix("stake:")
                .is_some_and(|k| tessera_protocol::hexser::decode::<32>(k).is_ok());
        if !valid_to {
            return Err(ServiceError::Invalid(format!(
                "credit.account: {to:?} is neither client:NAME nor stake:NODE_KEY (64 hex)"
            )));
        }
        if amount == 0 || amount > MAX_CREDIT {
            return Err(ServiceError::Invalid(format!(
                "credit.amount: {amount} is outside 1..={MAX_CREDIT}"
            )));
        }
        if reference.is_empty() || reference.len() > 128 || reference.chars().any(char::is_control)
        {
            return Err(ServiceError::Invalid(
                "credit.reference: 1 to 128 printable characters".into(),
            ));
        }
        let t = Transfer {
            key: format!("credit:{reference}"),
            kind: TransferKind::Deposit,
            from: account::external("operator-deposits"),
            to: to.to_string(),
            amount,
            round: 0,
            tiles: 0,
        };
        let applied = self.store.apply_transfer(None, &t).map_err(|e| match e {
            StoreError::Ledger(LedgerError::KeyReused(_)) => ServiceError::Invalid(format!(
                "credit.reference: {reference:?} was used for another credit"
            )),
            e => e.into(),
        })?;
        if applied {
            tracing::info!(account = %to, amount, reference, "credited by the operator");
        }
        Ok(applied)
    }

    /// The worker a live session token belongs to: `Ok(None)` for an unknown token,
    /// [`ServiceError::Forbidden`] for one whose worker has not been heard from for
    /// [`ServiceConfig::session_ttl_ms`] (it registers again). A use keeps the session
    /// alive. The store keeps only the token's hash, so neither a copy of the database
    /// nor the lookup's timing gives the token away.
    pub fn worker_by_session(
        &self,
        session: &str,
        now_ms: u64,
    ) -> Result<Option<WorkerRow>, ServiceError> {
        let Some(w) = self.store.worker_by_session(&session_digest(session))? else {
            return Ok(None);
        };
        if now_ms.saturating_sub(w.last_seen_ms) > self.cfg.session_ttl_ms {
            return Err(ServiceError::Forbidden(
                "session expired: register again".into(),
            ));
        }
        self.store.touch_worker(&w.key, now_ms)?;
        Ok(Some(w))
    }

    fn registered(&self, key: &PublicKey, role: &str) -> Result<Option<WorkerRow>, ServiceError> {
        Ok(self
            .store
            .worker(&key.to_string())?
            .filter(|w| w.role == role))
    }

    // --- submission -------------------------------------------------------------------

    /// Accept a job: sign its manifest (with one nonce commitment per possible round and
    /// the registered verifiers), fund its escrow, and queue round 0.
    #[allow(clippy::too_many_arguments)] // the submission's parts, already validated apart
    pub fn submit(
        &self,
        client: &str,
        scene_name: &str,
        scene_hash: Digest,
        settings: RenderSettings,
        frames: (u32, u32),
        tier: &str,
        tile_size: Option<u32>,
        batch_size: Option<u32>,
        requirements: Requirements,
        now_ms: u64,
    ) -> Result<String, ServiceError> {
        let bad = |m: String| Err(ServiceError::Invalid(m));
        if settings.width == 0 || settings.height == 0 {
            return bad("settings.width/height: must be at least 1".into());
        }
        if settings.width > MAX_EDGE || settings.height > MAX_EDGE {
            return bad(format!("settings.width/height: at most {MAX_EDGE}"));
        }
        if settings.spp == 0 || settings.spp > MAX_SPP {
            return bad(format!(
                "settings.spp: {} is outside 1..={MAX_SPP}",
                settings.spp
            ));
        }
        if let Err(why) = check_frames(frames.0, frames.1) {
            return bad(why);
        }
        if settings.frame_rate.num == 0 || settings.frame_rate.den == 0 {
            return bad(format!(
                "settings.frame_rate: {}/{} is not a positive rate",
                settings.frame_rate.num, settings.frame_rate.den
            ));
        }
        if settings.max_bounces > MAX_BOUNCES {
            return bad(format!(
                "settings.max_bounces: {} is more than the maximum, {MAX_BOUNCES}",
                settings.max_bounces
            ));
        }
        let tile_size = tile_size.unwrap_or(self.cfg.tile_size);
        if !TILE_SIZE.contains(&tile_size) {
            return bad(format!("tile_size: {tile_size} is outside {TILE_SIZE:?}"));
        }
        let batch_size = batch_size.unwrap_or(self.cfg.batch_size);
        if !BATCH_SIZE.contains(&batch_size) {
            return bad(format!(
                "batch_size: {batch_size} is outside {BATCH_SIZE:?}"
            ));
        }
        let Some(tier) = default_tiers().into_iter().find(|t| t.name == tier) else {
            let names: Vec<_> = default_tiers().into_iter().map(|t| t.name).collect();
            let shown: String = tier.chars().take(32).collect();
            return bad(format!(
                "tier: {shown:?} is not one of {}",
                names.join(", ")
            ));
        };
        let limits = &self.cfg.limits;
        let (w, h) = (settings.width, settings.height);
        let Some((tiles, tasks)) = job_size(w, h, tile_size, batch_size, frames) else {
            return bad("the job's size overflows".into());
        };
        if tiles > limits.max_job_tiles {
            return bad(format!(
                "the job has {tiles} tiles ({w}×{h} in tiles of {tile_size}, {} frames), more than max_job_tiles ({}): use larger tiles or fewer frames",
                frames.1 - frames.0 + 1,
                limits.max_job_tiles
            ));
        }
        if tasks > limits.max_job_tasks {
            return bad(format!(
                "the job has {tasks} tasks ({tiles} tiles in batches of {batch_size}), more than max_job_tasks ({}): use larger tiles or batches, or fewer frames",
                limits.max_job_tasks
            ));
        }
        let open = self.store.client_open_jobs(client)?;
        if open >= limits.max_client_jobs {
            return Err(ServiceError::Quota(format!(
                "client {client:?} has {open} jobs that have not ended, the most it may have (max_client_jobs {}); wait for one to end",
                limits.max_client_jobs
            )));
        }
        let verifiers: Vec<PublicKey> = self
            .store
            .workers()?
            .into_iter()
            .filter(|w| w.role == "verifier")
            .filter_map(|w| tessera_protocol::hexser::decode::<32>(&w.key).ok())
            .map(PublicKey)
            .collect();
        if verifiers.is_empty() {
            return Err(ServiceError::Unavailable(
                "no verifier is registered: start `tessera verifier` first".into(),
            ));
        }
        let min_trust = if self.cfg.enforce_tier_trust {
            tier.min_trust
        } else {
            0
        };
        if min_trust > 0 {
            let mut trusted = false;
            for w in self.store.workers()?.iter().filter(|w| w.role == "node") {
                trusted |= self.store.trust(&w.key)? >= min_trust;
            }
            if !trusted {
                return Err(ServiceError::Unavailable(format!(
                    "tier {}: no registered node has the trust it needs ({}); nodes earn one point per verified round",
                    tier.name, tier.min_trust
                )));
            }
        }
        let mut job_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut job_id);
        let job = hex::encode(job_id);
        let nonces = job::fresh_nonces();
        let (nonce_commitments, dispute_nonce_commitment) = job::nonce_commitments(&nonces);
        let manifest = JobManifest {
            version: MANIFEST_VERSION,
            job_id,
            client: client.into(),
            scene_name: scene_name.into(),
            scene_hash,
            settings,
            frame_start: frames.0,
            frame_end: frames.1,
            tile_size,
            tier,
            sampling: self.cfg.sampling.clone(),
            pricing: Pricing::default(),
            slash_pct: self.cfg.slash_pct,
            challenge_window_secs: self.cfg.challenge_window_secs,
            nonce_commitments,
            dispute_nonce_commitment,
            dispute_deposit_pct: self.cfg.dispute_deposit_pct,
            tolerance: self.cfg.tolerance,
            verifiers,
            created_unix: now_ms / 1000,
        };
        let layout = tile_layout(manifest.settings.width, manifest.settings.height, tile_size);
        let mut run = JobRun {
            client: client.into(),
            round: 0,
            next_batch_id: 0,
            batch_size,
            requirements,
            blocked: Vec::new(),
            error: None,
            // At most max_job_tiles, checked above.
            tiles_total: u32::try_from(tiles).map_err(|_| {
                ServiceError::Invalid(format!("the job has {tiles} tiles, too many to count"))
            })?,
            tiles_verified: 0,
            scene_hint: Some(scene_name.into()),
            release_at_ms: None,
            min_trust,
            dispute: None,
        };
        let signed = Signed::sign(manifest.clone(), &self.key);
        let pending: Vec<(u32, u32)> = (frames.0..=frames.1)
            .flat_map(|f| (0..layout.len() as u32).map(move |t| (f, t)))
            .collect();
        self.store
            .atomically(|s| {
                s.insert_job(
                    &job,
                    &to_json("manifest", &signed).map_err(corrupt)?,
                    now_ms / 1000,
                    &nonces,
                )?;
                let escrow = escrow_transfer(&manifest);
                self.fund(s, &format!("job:{job}:overdraft"), client, escrow.amount)?;
                s.apply_transfer(Some(&job), &escrow)?;
                self.dispatch(s, &manifest, &mut run, &layout, &pending, now_ms)
                    .map_err(corrupt)?;
                s.put_run(&job, &to_json("run", &run).map_err(corrupt)?)?;
                Ok(())
            })
            .map_err(funds_error)?;
        tracing::info!(job = %&job[..12], tiles = run.tiles_total, "job accepted");
        Ok(job)
    }

    /// Record where job `job`'s scene is on the submitting machine, unsigned in its
    /// bundle (`scene_hint`), for `tessera audit --rerender` to find it: `tessera render`
    /// gives the scene file's path (a submission over the API has its entry file name).
    pub fn set_scene_hint(&self, job: &str, hint: &str) -> Result<(), ServiceError> {
        let (_, mut run) = self.job(job)?;
        run.scene_hint = Some(hint.to_string());
        self.store.put_run(job, &to_json("run", &run)?)?;
        Ok(())
    }

    /// Make sure `client`'s balance covers `amount` (a job's escrow, a dispute's
    /// deposit): a shortfall within the client's overdraft limit is lent from its credit
    /// line (transfer `key`); beyond it the request is refused (as a `Corrupt { what:
    /// "funds" }` store error, turned into [`ServiceError::Funds`]).
    fn fund(&self, s: &Store, key: &str, client: &str, amount: u64) -> Result<(), StoreError> {
        let have = s.balance(&account::client(client))?.max(0) as u64;
        let short = amount.saturating_sub(have);
        if short == 0 {
            return Ok(());
        }
        let line = account::external(&format!("credit:{client}"));
        let owed = s.balance(&line)?.min(0).unsigned_abs();
        if owed.saturating_add(short) > self.cfg.client_overdraft {
            return Err(StoreError::Corrupt {
                path: "ledger".into(),
                what: "funds".into(),
                reason: format!(
                    "client {client:?}: {amount} µcr needed (escrow or dispute deposit), the balance is {have} µcr and the overdraft left {} µcr; ask the operator to credit the account (`tessera credit`)",
                    self.cfg.client_overdraft.saturating_sub(owed)
                ),
            });
        }
        s.apply_transfer(
            None,
            &Transfer {
                key: key.to_string(),
                kind: TransferKind::Deposit,
                from: line,
                to: account::client(client),
                amount: short,
                round: 0,
                tiles: 0,
            },
        )?;
        Ok(())
    }

    /// Plan `pending` into tasks of the run's current round, store them and queue them.
    fn dispatch(
        &self,
        s: &Store,
        manifest: &JobManifest,
        run: &mut JobRun,
        layout: &[TileRect],
        pending: &[(u32, u32)],
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let tasks = job::plan_tasks(
            manifest,
            layout,
            pending,
            run.batch_size,
            run.round,
            run.next_batch_id,
            &run.blocked,
            &run.requirements,
        );
        run.next_batch_id += tasks.len() as u32;
        let job = hex::encode(manifest.job_id);
        let eligible = self.eligible_nodes(run, None, Some(now_ms))?;
        for task in &tasks {
            let body = to_json("task", task)?;
            s.insert_task(
                &task.task_id,
                &job,
                task.round,
                &body,
                task.tiles.len() as u32,
                now_ms,
            )?;
            if let Some(queue) = route(task, run, &eligible) {
                s.push_outbox(&queue, &task.task_id, body.as_bytes())?;
            }
        }
        s.set_job_state(&job, "queued")?;
        Ok(())
    }

    /// Registered nodes that may take tasks of `run` (not blocked, requirements met),
    /// except `except`, by key. With `now_ms`, only those heard from within
    /// [`Self::liveness_ms`] when there are any (a node that stopped heartbeating should
    /// not be handed work while live ones exist).
    fn eligible_nodes(
        &self,
        run: &JobRun,
        except: Option<&PublicKey>,
        now_ms: Option<u64>,
    ) -> Result<Vec<PublicKey>, ServiceError> {
        let mut all = Vec::new();
        for w in self.store.workers()? {
            if w.role != "node" {
                continue;
            }
            let Ok(key) = tessera_protocol::hexser::decode::<32>(&w.key).map(PublicKey) else {
                continue;
            };
            if run.blocked.contains(&key) || Some(&key) == except {
                continue;
            }
            let Ok(caps) = serde_json::from_str::<Capabilities>(&w.caps) else {
                continue;
            };
            if caps.meets(&run.requirements).is_ok() && self.store.trust(&w.key)? >= run.min_trust {
                all.push((key, w.last_seen_ms));
            }
        }
        let live: Vec<PublicKey> = match now_ms {
            Some(now) => all
                .iter()
                .filter(|(_, seen)| seen + self.liveness_ms() >= now)
                .map(|(k, _)| *k)
                .collect(),
            None => Vec::new(),
        };
        Ok(if live.is_empty() {
            all.into_iter().map(|(k, _)| k).collect()
        } else {
            live
        })
    }

    /// Why `node` may not take tasks of `run`, if it may not: blocked on the job, not a
    /// registered node, capabilities that miss the job's requirements, or less trust than
    /// the tier needs.
    fn ineligible(&self, run: &JobRun, node: &PublicKey) -> Result<Option<String>, ServiceError> {
        if run.blocked.contains(node) {
            return Ok(Some(format!(
                "node {} is blocked on this job",
                node.short()
            )));
        }
        let Some(w) = self.registered(node, "node")? else {
            return Ok(Some(format!("{} is not a registered node", node.short())));
        };
        let caps: Capabilities = match serde_json::from_str(&w.caps) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Some(format!(
                    "node {}: stored capabilities unreadable: {e}",
                    node.short()
                )))
            }
        };
        if let Err(why) = caps.meets(&run.requirements) {
            return Ok(Some(format!(
                "node {} does not meet the job's requirements: {why}",
                node.short()
            )));
        }
        let trust = self.store.trust(&w.key)?;
        if trust < run.min_trust {
            return Ok(Some(format!(
                "node {} has trust {trust}, the job's tier needs {}",
                node.short(),
                run.min_trust
            )));
        }
        Ok(None)
    }

    /// A node not heard from for this long is taken as gone for routing.
    fn liveness_ms(&self) -> u64 {
        (4 * self.cfg.lease_ms).max(30_000)
    }

    // --- results ----------------------------------------------------------------------

    /// A node's batch result.
    pub fn handle_result(&self, body: &[u8], now_ms: u64) -> Result<Handled, ServiceError> {
        let res: BatchResult = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return Ok(Handled::Refused(format!("malformed result: {e}"))),
        };
        if res.version != WIRE_VERSION {
            return Ok(Handled::Refused(format!(
                "result for task {:?}: wire version {}, this coordinator speaks {WIRE_VERSION}",
                res.task_id, res.version
            )));
        }
        let Some(task_row) = self.store.task(&res.task_id)? else {
            return Ok(Handled::Refused(format!(
                "result for unknown task {:?}",
                res.task_id
            )));
        };
        if task_row.state != "open" {
            tracing::debug!(task = %res.task_id, "late or repeated result ignored");
            return Ok(Handled::Done);
        }
        let (signed_manifest, mut run) = self.job(&task_row.job_id)?;
        let manifest = &signed_manifest.statement;
        let task: RenderTask = from_json("task", &task_row.body)?;
        let signer = res.batch.signed.statement.node;
        let known = self.registered(&signer, "node")?.is_some();
        // Only a result the node really signed may count against it: anyone who can
        // publish could otherwise get failures counted against (and block) any node.
        let authentic =
            known && res.batch.signed.signer == signer && res.batch.signed.verify().is_ok();
        // Only the node that holds the task's lease may deliver it, or, while nobody holds
        // it, a node that could have taken it (not blocked, requirements and trust met).
        // Anything else is refused without touching the task: no failure is counted and
        // no attempt is used, so nobody can spend another node's task or a client's job.
        if let Some(holder) = task_row.node.as_deref() {
            if holder != signer.to_string() {
                let reason = format!(
                    "result for task {} from node {}, which does not hold its lease",
                    res.task_id,
                    signer.short()
                );
                // Signed by a registered node: the lease went to another node after a
                // redelivery; nothing to park. Anything else is parked.
                return Ok(if authentic {
                    Handled::Superseded(reason)
                } else {
                    Handled::Refused(reason)
                });
            }
        }
        if authentic {
            if let Some(why) = self.ineligible(&run, &signer)? {
                return Ok(Handled::Refused(format!(
                    "result for task {}: {why}",
                    res.task_id
                )));
            }
        }
        let layout = tile_layout(
            manifest.settings.width,
            manifest.settings.height,
            manifest.tile_size,
        );
        if let Err(reason) = job::check_result(&res, &task, manifest, &layout, known, &run.blocked)
        {
            // The node that may deliver the task delivered something unusable: count it
            // against the node and give the task to someone else, so the job finishes.
            if authentic {
                self.store.atomically(|s| {
                    self.fail_task(s, &mut run, manifest, &task_row, Some(&signer), now_ms)
                        .map_err(corrupt)?;
                    s.put_run(&task_row.job_id, &to_json("run", &run).map_err(corrupt)?)
                })?;
            }
            return Ok(Handled::Refused(reason));
        }
        let job = task_row.job_id.clone();
        let s = &res.batch.signed.statement;
        self.store.atomically(|st| {
            st.insert_result(&job, task.round, &res)?;
            st.set_task_state(&task.task_id, "done")?;
            st.touch_worker(&s.node.to_string(), now_ms)?;
            if st.job_state(&job)?.as_deref() == Some("queued") {
                st.set_job_state(&job, "rendering")?;
            }
            if st.count_tasks(&job, task.round, "open")? == 0 && task.round == run.round {
                self.close_round(st, &signed_manifest, &run, now_ms)
                    .map_err(corrupt)?;
            }
            Ok(())
        })?;
        Ok(Handled::Done)
    }

    /// Every task of the round is in: fix the round, reveal its nonce, sample each node
    /// and queue the verify requests.
    fn close_round(
        &self,
        s: &Store,
        signed_manifest: &Signed<JobManifest>,
        run: &JobRun,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let manifest = &signed_manifest.statement;
        let job = hex::encode(manifest.job_id);
        let round = run.round;
        let batches = self.batches(&job, round)?;
        let nodes: BTreeSet<PublicKey> = batches.iter().map(|b| b.signed.statement.node).collect();
        let mut snapshots = Vec::new();
        for n in &nodes {
            snapshots.push(NodeSnapshot {
                node: *n,
                trust: s.trust(&n.to_string())?,
                stake: s.balance(&account::stake(n))?.max(0) as u64,
            });
        }
        let commitment = job::commit_round(manifest, round, &batches, snapshots, &self.key)
            .map_err(ServiceError::Invalid)?;
        s.insert_round(&job, round, &to_json("round", &commitment)?)?;
        let nonce = s.reveal_nonce(&job, round)?;
        for n in &nodes {
            self.queue_check(
                s,
                signed_manifest,
                &commitment,
                &batches,
                nonce,
                n,
                job::CheckOf::FIRST,
                None,
                now_ms,
            )?;
        }
        s.set_job_state(&job, "verifying")?;
        tracing::info!(job = %&job[..12], round, nodes = nodes.len(), "round fixed, nonce revealed, verification requested");
        Ok(())
    }

    /// Build, store and queue one verify request: the shared `verify` queue, or the own
    /// queue of `verifier` (a second verifier for an escalated check).
    #[allow(clippy::too_many_arguments)] // the check and everything it samples from
    fn queue_check(
        &self,
        s: &Store,
        signed_manifest: &Signed<JobManifest>,
        commitment: &Signed<RoundCommitment>,
        batches: &[BatchRecord],
        nonce: Digest,
        node: &PublicKey,
        check: job::CheckOf<'_>,
        verifier: Option<PublicKey>,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let job = hex::encode(signed_manifest.statement.job_id);
        let round = commitment.statement.round;
        let mut missing = None;
        let (req, mut record) = job::verify_request(
            signed_manifest,
            commitment,
            batches,
            nonce,
            node,
            check,
            &mut |frame, tile| match s.tile_bytes(&job, round, frame, tile) {
                Ok(Some(b)) => b,
                _ => {
                    missing = Some((frame, tile));
                    Vec::new()
                }
            },
        )
        .map_err(ServiceError::Invalid)?;
        if let Some((frame, tile)) = missing {
            return Err(ServiceError::Store(StoreError::Corrupt {
                path: "store".into(),
                what: format!("job {job} round {round} frame {frame} tile {tile}"),
                reason: "delivered bytes are missing".into(),
            }));
        }
        // The tiles are in the store already: the bundle's evidence is filled at the end.
        record.delivered.clear();
        let body = to_json("verify request", &req)?;
        let queue = verifier.map_or_else(|| QUEUE_VERIFY.to_string(), |v| verifier_queue(&v));
        s.insert_request(
            &req.request_id,
            &job,
            round,
            &node.to_string(),
            check.kind,
            &to_json("samples", &record)?,
            body.as_bytes(),
            &queue,
            now_ms,
        )?;
        s.push_outbox(&queue, &req.request_id, body.as_bytes())?;
        Ok(())
    }

    /// The verifier for an escalated check after `first` judged: one of another
    /// determinism class when one is registered, else another verifier, else none (the
    /// shared queue, where any verifier may take it). Verifiers in `avoid` (one that let
    /// the check go unanswered) are not chosen; among equals the one heard from last is.
    fn second_verifier(
        &self,
        manifest: &JobManifest,
        first: &Signed<Verdict>,
        avoid: &[PublicKey],
    ) -> Result<Option<PublicKey>, ServiceError> {
        // Candidates as (of another class, last heard from, key), in key order: the best
        // is the greatest by the first two, the first in key order among equals.
        let mut best: Option<(bool, u64, PublicKey)> = None;
        for w in self.store.workers()? {
            if w.role != "verifier" {
                continue;
            }
            let Ok(key) = tessera_protocol::hexser::decode::<32>(&w.key).map(PublicKey) else {
                continue;
            };
            if key == first.signer || avoid.contains(&key) || !manifest.verifiers.contains(&key) {
                continue;
            }
            if self.store.worker_faults(&w.key)? >= self.cfg.blocklist_after {
                continue;
            }
            let class = serde_json::from_str::<Capabilities>(&w.caps).map(|c| c.class.id());
            let other_class = class.is_ok_and(|c| c != first.statement.verifier_class_id);
            if best.is_none_or(|(o, seen, _)| (other_class, w.last_seen_ms) > (o, seen)) {
                best = Some((other_class, w.last_seen_ms, key));
            }
        }
        Ok(best.map(|(_, _, key)| key))
    }

    /// Where an unanswered request goes next, and whether that is a new queue (to be
    /// stored with the request as it is published). A check left on a verifier's own
    /// queue goes there once more (a restarted verifier finds it in its durable queue);
    /// when that verifier misses the deadline again it is taken as gone, and the check
    /// moves to another verifier, or to the shared queue when there is none. A dispute's
    /// escalated check would otherwise wait on a dead verifier for ever.
    fn republish_queue(&self, req: &RequestRow) -> Result<(String, bool), ServiceError> {
        let (queue, since) = self
            .store
            .request_queue(&req.request_id)?
            .unwrap_or_else(|| (QUEUE_VERIFY.to_string(), 0));
        // `attempts` publications so far; the one at `since` was this queue's first.
        if !req.check.escalated || req.attempts <= since {
            return Ok((queue, false));
        }
        let Some(gone) = queue_verifier(&queue) else {
            return Ok((queue, false));
        };
        let first_kind = CheckKind {
            escalated: false,
            ..req.check
        };
        let Some(first) = self
            .store
            .verdict(&req.job_id, req.round, &req.node, first_kind)?
        else {
            return Ok((queue, false));
        };
        let first: Signed<Verdict> = from_json("verdict", &first)?;
        let manifest = self
            .store
            .manifest(&req.job_id)?
            .ok_or_else(|| ServiceError::NotFound(format!("job {} does not exist", req.job_id)))?;
        let manifest: Signed<JobManifest> = from_json("manifest", &manifest)?;
        let next = self
            .second_verifier(&manifest.statement, &first, &[gone])?
            .map_or_else(|| QUEUE_VERIFY.to_string(), |v| verifier_queue(&v));
        tracing::warn!(request = %req.request_id, verifier = %gone.short(), to = %next, "the verifier chosen for an escalated check did not answer twice: the check moves");
        Ok((next, true))
    }

    fn batches(&self, job: &str, round: u32) -> Result<Vec<BatchRecord>, ServiceError> {
        self.store
            .round_batches(job, round)?
            .iter()
            .map(|r| from_json("batch", r))
            .collect()
    }

    fn job(&self, job: &str) -> Result<(Signed<JobManifest>, JobRun), ServiceError> {
        let m = self
            .store
            .manifest(job)?
            .ok_or_else(|| ServiceError::NotFound(format!("job {job} does not exist")))?;
        let r = self
            .store
            .run(job)?
            .ok_or_else(|| ServiceError::NotFound(format!("job {job} has no run state")))?;
        Ok((from_json("manifest", &m)?, from_json("run", &r)?))
    }

    // --- verdicts ---------------------------------------------------------------------

    /// A verifier's verdict.
    pub fn handle_verdict(&self, body: &[u8], now_ms: u64) -> Result<Handled, ServiceError> {
        let msg: VerdictMessage = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => return Ok(Handled::Refused(format!("malformed verdict: {e}"))),
        };
        if msg.version != WIRE_VERSION {
            return Ok(Handled::Refused(format!(
                "verdict for request {:?}: wire version {}, this coordinator speaks {WIRE_VERSION}",
                msg.request_id, msg.version
            )));
        }
        let Some(req) = self.store.request(&msg.request_id)? else {
            return Ok(Handled::Refused(format!(
                "verdict for unknown request {:?}",
                msg.request_id
            )));
        };
        if req.state != "open" {
            return Ok(Handled::Done);
        }
        if self.store.job_state(&req.job_id)?.as_deref() == Some("failed") {
            tracing::info!(request = %req.request_id, "verdict for a failed job: recorded nowhere, changes nothing");
            self.store.close_request(&req.request_id)?;
            return Ok(Handled::Done);
        }
        let (signed_manifest, mut run) = self.job(&req.job_id)?;
        let manifest = &signed_manifest.statement;
        let Ok(node) = tessera_protocol::hexser::decode::<32>(&req.node).map(PublicKey) else {
            return Ok(Handled::Refused(format!(
                "request {} names a bad node",
                req.request_id
            )));
        };
        let signer = msg.verdict.signer;
        let faults = self.store.worker_faults(&signer.to_string())?;
        if faults >= self.cfg.blocklist_after {
            return Ok(Handled::Refused(format!(
                "verdict for request {} from verifier {}, barred after {faults} verdicts that did not follow from the rules",
                req.request_id,
                signer.short()
            )));
        }
        // The verdict is judged against the request as this coordinator sent it.
        let sent_body = self
            .store
            .request_body(&req.request_id)?
            .unwrap_or_default();
        let sent: VerifyRequest = from_json(
            "verify request",
            std::str::from_utf8(&sent_body).unwrap_or_default(),
        )?;
        if let Err(reason) = job::check_verdict(&msg, &sent) {
            // Signed by one of the job's verifiers, yet not what the rules give: counted
            // against that verifier, and the request goes out again at once so that an
            // honest verifier can answer it. Nothing is paid, slashed or trusted on it.
            if msg.verdict.verify().is_ok() && manifest.verifiers.contains(&signer) {
                let (queue, _) = self
                    .store
                    .request_queue(&req.request_id)?
                    .unwrap_or_else(|| (QUEUE_VERIFY.to_string(), 0));
                let faults = self.store.atomically(|s| {
                    let faults = s.add_worker_fault(&signer.to_string())?;
                    s.push_outbox(&queue, &req.request_id, &sent_body)?;
                    Ok(faults)
                })?;
                tracing::warn!(request = %req.request_id, verifier = %signer.short(), faults, "verdict refused and counted against its verifier: {reason}");
            }
            return Ok(Handled::Refused(reason));
        }
        let job = req.job_id.clone();
        // The round is fixed: the request carries its batches (the ones it was built
        // from), read once for checking, paying and advancing.
        let batches = sent.round_batches;
        let v = &msg.verdict.statement;
        self.store.atomically(|s| {
            s.insert_verdict(
                &job,
                req.round,
                &req.node,
                req.check,
                &to_json("verdict", &msg.verdict).map_err(corrupt)?,
            )?;
            s.close_request(&req.request_id)?;
            // A verifier is heard from when it answers: the freshest is picked first
            // for an escalated check.
            s.touch_worker(&msg.verdict.signer.to_string(), now_ms)?;
            if v.decision == Decision::Escalate {
                tracing::warn!(job = %&job[..12], node = %node.short(), round = req.round, check = req.check.label(), "a sampled tile is not close to the re-render: escalated to a second check");
                let commitment: Signed<RoundCommitment> = from_json(
                    "round",
                    &s.round_commitment(&job, req.round)?.unwrap_or_default(),
                )
                .map_err(corrupt)?;
                let (nonce, dispute) = match (&run.dispute, req.check.dispute) {
                    (Some(d), true) => (d.nonce, Some(&d.commitment)),
                    _ => (s.reveal_nonce(&job, req.round)?, None),
                };
                let second = self
                    .second_verifier(manifest, &msg.verdict, &[])
                    .map_err(corrupt)?;
                self.queue_check(
                    s,
                    &signed_manifest,
                    &commitment,
                    &batches,
                    nonce,
                    &node,
                    job::CheckOf {
                        kind: req.check.escalate(),
                        dispute,
                    },
                    second,
                    now_ms,
                )
                .map_err(corrupt)?;
            } else if req.check.dispute {
                self.settle_dispute_check(s, &signed_manifest, &mut run, &batches, &node, &msg.verdict, req.round, now_ms)
                    .map_err(corrupt)?;
            } else {
                self.settle(s, manifest, &mut run, &batches, &node, &msg.verdict, req.round)
                    .map_err(corrupt)?;
                if s.round_requests(&job, req.round)?
                    .iter()
                    .filter(|r| !r.check.dispute)
                    .all(|r| r.state == "done")
                    && req.round == run.round
                {
                    self.advance(s, &signed_manifest, &mut run, &batches, now_ms)
                        .map_err(corrupt)?;
                }
            }
            s.put_run(&job, &to_json("run", &run).map_err(corrupt)?)
        })?;
        Ok(Handled::Done)
    }

    /// Pay or slash one node for one round (whose batches are `batches`), and adjust its
    /// trust.
    #[allow(clippy::too_many_arguments)] // the verdict and everything it settles against
    fn settle(
        &self,
        s: &Store,
        manifest: &JobManifest,
        run: &mut JobRun,
        batches: &[BatchRecord],
        node: &PublicKey,
        verdict: &Signed<Verdict>,
        round: u32,
    ) -> Result<(), ServiceError> {
        let job = hex::encode(manifest.job_id);
        let commitment: Signed<RoundCommitment> = from_json(
            "round",
            &s.round_commitment(&job, round)?.unwrap_or_default(),
        )?;
        let snap = NodeSnapshot::of(&commitment.statement.nodes, node);
        let tiles: Vec<TileRect> = tessera_verifier::checks::node_leaves(batches, node)
            .iter()
            .map(|&(bi, pos)| batches[bi].tiles[pos].rect)
            .collect();
        let outcome = NodeOutcome {
            round,
            node: *node,
            decision: verdict.statement.decision,
            tiles,
            stake_before: snap.stake,
        };
        for t in verdict_transfers(manifest, &outcome, manifest.slash_pct) {
            s.apply_capped(Some(&job), &t)?;
        }
        let decision = verdict.statement.decision;
        s.set_trust(&node.to_string(), trust_after(snap.trust, decision))?;
        match decision {
            Decision::Pass => {
                run.tiles_verified += outcome.tiles.len() as u32;
            }
            Decision::Fail | Decision::Inconclusive | Decision::Escalate => {
                if decision == Decision::Fail {
                    tracing::warn!(job = %&job[..12], node = %node.short(), round, "verification failed: node unpaid, slashed, its tiles requeued");
                } else {
                    tracing::warn!(job = %&job[..12], node = %node.short(), round, "verification inconclusive after escalation: node neither paid nor slashed, its tiles requeued");
                }
                if !run.blocked.contains(node) {
                    run.blocked.push(*node);
                }
            }
        }
        Ok(())
    }

    // --- disputes ---------------------------------------------------------------------

    /// A client disputes a finished job inside its challenge window: the deposit moves to
    /// the dispute account, a signed dispute commitment fixes which (round, node) work is
    /// checked again, and only then is the dispute nonce revealed and the checks queued.
    pub fn open_dispute(&self, job: &str, client: &str, now_ms: u64) -> Result<(), ServiceError> {
        let (signed_manifest, mut run) = self.job(job)?;
        let manifest = &signed_manifest.statement;
        if run.client != client {
            return Err(ServiceError::Forbidden(format!(
                "job {job} belongs to another client"
            )));
        }
        let state = self.store.job_state(job)?.unwrap_or_default();
        if state != "done" {
            return Err(ServiceError::Unavailable(format!(
                "job {job} is {state}: only a done job can be disputed"
            )));
        }
        if run.dispute.is_some() {
            return Err(ServiceError::Invalid(format!(
                "job {job} has been disputed already"
            )));
        }
        if run.release_at_ms.is_none_or(|t| t <= now_ms) {
            return Err(ServiceError::Unavailable(format!(
                "job {job}: the challenge window is closed (hold-backs released)"
            )));
        }
        let bundle: ProofBundle = from_json("bundle", &self.bundle(job)?)?;
        let checks: BTreeSet<(u32, PublicKey)> = bundle
            .frames
            .iter()
            .flat_map(|f| f.tiles.iter().map(|t| (t.round, t.node)))
            .collect();
        let mut nodes = Vec::new();
        for n in checks.iter().map(|(_, n)| *n).collect::<BTreeSet<_>>() {
            nodes.push(NodeSnapshot {
                node: n,
                trust: self.store.trust(&n.to_string())?,
                stake: self.store.balance(&account::stake(&n))?.max(0) as u64,
            });
        }
        let commitment = Signed::sign(
            DisputeCommitment {
                job_id: manifest.job_id,
                client: client.into(),
                after_round: run.round,
                checks: checks.iter().copied().collect(),
                nodes,
            },
            &self.key,
        );
        self.store
            .atomically(|s| {
                let deposit = dispute_opened_transfers(manifest);
                let need: u64 = deposit.iter().map(|t| t.amount).sum();
                self.fund(s, &format!("job:{job}:dispute:overdraft"), client, need)?;
                for t in &deposit {
                    s.apply_transfer(Some(job), t)?;
                }
                // Fixed above; only now is the dispute nonce revealed.
                let nonce = s.reveal_nonce(job, job::DISPUTE_NONCE_SLOT)?;
                for &(round, node) in &commitment.statement.checks {
                    let batches = self.batches(job, round).map_err(corrupt)?;
                    let rc: Signed<RoundCommitment> = from_json(
                        "round",
                        &s.round_commitment(job, round)?.unwrap_or_default(),
                    )
                    .map_err(corrupt)?;
                    self.queue_check(
                        s,
                        &signed_manifest,
                        &rc,
                        &batches,
                        nonce,
                        &node,
                        job::CheckOf {
                            kind: DISPUTE_CHECK,
                            dispute: Some(&commitment),
                        },
                        None,
                        now_ms,
                    )
                    .map_err(corrupt)?;
                }
                run.dispute = Some(DisputeRun {
                    commitment: commitment.clone(),
                    nonce,
                    settled: false,
                    lost: Vec::new(),
                });
                s.set_job_state(job, "disputed")?;
                s.put_run(job, &to_json("run", &run).map_err(corrupt)?)
            })
            .map_err(funds_error)?;
        tracing::info!(job = %&job[..12], checks = checks.len(), "dispute opened: extra samples requested");
        Ok(())
    }

    /// A dispute check's final verdict: a failure forfeits and claws back the round's pay
    /// into the escrow and slashes; when every dispute check is final the deposit goes to
    /// the side that won, and a lost node's tiles are rendered again.
    #[allow(clippy::too_many_arguments)] // the verdict and everything it settles against
    fn settle_dispute_check(
        &self,
        s: &Store,
        signed_manifest: &Signed<JobManifest>,
        run: &mut JobRun,
        batches: &[BatchRecord],
        node: &PublicKey,
        verdict: &Signed<Verdict>,
        round: u32,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let manifest = &signed_manifest.statement;
        let job = hex::encode(manifest.job_id);
        let Some(dispute) = run.dispute.as_mut() else {
            return Err(ServiceError::Invalid(format!(
                "job {job}: a dispute verdict but no dispute"
            )));
        };
        // The slash is sized from the stake the node had at risk when the disputed round
        // was fixed (its snapshot in the round commitment), not from what is left now: a
        // caught cheat is always charged a slash, collected as far as the stake holds and
        // listed as uncollected beyond that.
        let commitment: Signed<RoundCommitment> = from_json(
            "round",
            &s.round_commitment(&job, round)?.unwrap_or_default(),
        )?;
        let snap = NodeSnapshot::of(&commitment.statement.nodes, node);
        let decision = verdict.statement.decision;
        let outcome = NodeOutcome {
            round,
            node: *node,
            decision,
            tiles: tessera_verifier::checks::node_leaves(batches, node)
                .iter()
                .map(|&(bi, pos)| batches[bi].tiles[pos].rect)
                .collect(),
            stake_before: snap.stake,
        };
        for t in dispute_transfers(manifest, &outcome) {
            s.apply_capped(Some(&job), &t)?;
        }
        s.set_trust(
            &node.to_string(),
            trust_after(s.trust(&node.to_string())?, decision),
        )?;
        if decision == Decision::Fail {
            tracing::warn!(job = %&job[..12], node = %node.short(), round, "dispute upheld: the node's pay for the round is forfeited and clawed back, its stake slashed, its tiles rendered again");
            if !dispute.lost.contains(node) {
                dispute.lost.push(*node);
            }
            if !run.blocked.contains(node) {
                run.blocked.push(*node);
            }
        }
        let after = dispute.commitment.statement.after_round;
        let mut open = 0;
        for r in 0..=after {
            open += s
                .round_requests(&job, r)?
                .iter()
                .filter(|q| q.check.dispute && q.state != "done")
                .count();
        }
        if open > 0 {
            return Ok(());
        }
        self.finish_dispute(s, signed_manifest, run, now_ms)
    }

    fn finish_dispute(
        &self,
        s: &Store,
        signed_manifest: &Signed<JobManifest>,
        run: &mut JobRun,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let manifest = &signed_manifest.statement;
        let job = hex::encode(manifest.job_id);
        let Some(dispute) = run.dispute.as_mut() else {
            return Ok(());
        };
        let lost = dispute.lost.clone();
        dispute.settled = true;
        for t in dispute_settled_transfers(manifest, !lost.is_empty()) {
            s.apply_transfer(Some(&job), &t)?;
        }
        let checks = dispute.commitment.statement.checks.clone();
        if lost.is_empty() {
            tracing::info!(job = %&job[..12], "dispute rejected: every check passed; the client pays for it");
            let release_at = run.release_at_ms;
            self.finalize(s, signed_manifest, run, now_ms)?;
            run.release_at_ms = release_at;
            return Ok(());
        }
        let mut pending = Vec::new();
        for (round, node) in checks.iter().filter(|(_, n)| lost.contains(n)) {
            let batches = self.batches(&job, *round)?;
            pending.extend(job::committed_tiles(&batches, node));
        }
        pending.sort_unstable();
        if run.round + 1 >= MAX_ROUNDS || self.eligible_nodes(run, None, None)?.is_empty() {
            return self.fail_job(
                s,
                manifest,
                run,
                format!(
                    "the dispute found {} forged tiles and no round or node is left to render them again",
                    pending.len()
                ),
            );
        }
        run.round += 1;
        run.tiles_verified = run.tiles_verified.saturating_sub(pending.len() as u32);
        let layout = tessera_verifier::checks::layout(manifest);
        self.dispatch(s, manifest, run, &layout, &pending, now_ms)?;
        s.set_job_state(&job, "rendering")?;
        Ok(())
    }

    /// Every verdict of the round (whose batches are `batches`) is in: re-render failed
    /// nodes' tiles in a new round, or finish the job, or fail it when no round or node is
    /// left.
    fn advance(
        &self,
        s: &Store,
        signed_manifest: &Signed<JobManifest>,
        run: &mut JobRun,
        batches: &[BatchRecord],
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let manifest = &signed_manifest.statement;
        let job = hex::encode(manifest.job_id);
        let mut pending = Vec::new();
        for v in s.round_verdicts(&job, run.round)? {
            let v: Signed<Verdict> = from_json("verdict", &v)?;
            let d = v.statement.decision;
            if !v.statement.check.dispute && matches!(d, Decision::Fail | Decision::Inconclusive) {
                pending.extend(job::committed_tiles(batches, &v.statement.node));
            }
        }
        pending.sort_unstable();
        if pending.is_empty() {
            return self.finalize(s, signed_manifest, run, now_ms);
        }
        if run.round + 1 >= MAX_ROUNDS {
            return self.fail_job(
                s,
                manifest,
                run,
                format!(
                    "{} tiles still failed verification after {MAX_ROUNDS} rounds",
                    pending.len()
                ),
            );
        }
        if self.eligible_nodes(run, None, None)?.is_empty() {
            return self.fail_job(
                s,
                manifest,
                run,
                format!(
                    "{} tiles need re-rendering but every eligible node is blocked",
                    pending.len()
                ),
            );
        }
        run.round += 1;
        let layout = tessera_verifier::checks::layout(manifest);
        self.dispatch(s, manifest, run, &layout, &pending, now_ms)?;
        s.set_job_state(&job, "rendering")?;
        Ok(())
    }

    fn fail_job(
        &self,
        s: &Store,
        manifest: &JobManifest,
        run: &mut JobRun,
        why: String,
    ) -> Result<(), ServiceError> {
        let job = hex::encode(manifest.job_id);
        s.refund_escrow(&job, &run.client)?;
        // Work that passed verification was earned: its hold-backs go to the nodes now,
        // since a failed job has no challenge window.
        s.release_holdbacks(manifest)?;
        s.void_open_tasks(&job)?;
        s.set_job_state(&job, "failed")?;
        tracing::error!(job = %&job[..12], "job failed: {why}; the client's escrow was refunded");
        run.error = Some(why);
        Ok(())
    }

    fn finalize(
        &self,
        s: &Store,
        signed_manifest: &Signed<JobManifest>,
        run: &mut JobRun,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let manifest = &signed_manifest.statement;
        let job = hex::encode(manifest.job_id);
        let mut accepted: BTreeMap<(u32, u32), FinalTile> = BTreeMap::new();
        let mut rounds = Vec::new();
        let mut nodes: BTreeSet<PublicKey> = BTreeSet::new();
        let mut dispute_samples = Vec::new();
        let mut dispute_verdicts = Vec::new();
        let lost: Vec<PublicKey> = run.dispute.as_ref().map_or(Vec::new(), |d| d.lost.clone());
        let disputed_rounds = run
            .dispute
            .as_ref()
            .map_or(0, |d| d.commitment.statement.after_round + 1);
        for round in 0..=run.round {
            let batches = self.batches(&job, round)?;
            let commitment = from_json(
                "round",
                &s.round_commitment(&job, round)?.unwrap_or_default(),
            )?;
            let nonce = tessera_protocol::hexser::decode(
                &s.revealed_nonce(&job, round)?.unwrap_or_default(),
            )
            .map_err(|e| ServiceError::Invalid(format!("nonce of round {round}: {e}")))?;
            let mut verdicts: Vec<Signed<Verdict>> = Vec::new();
            for v in s.round_verdicts(&job, round)? {
                let v: Signed<Verdict> = from_json("verdict", &v)?;
                if v.statement.check.dispute {
                    dispute_verdicts.push(v);
                } else {
                    verdicts.push(v);
                }
            }
            verdicts.sort_by_key(|v| (v.statement.node, v.statement.check));
            for v in &verdicts {
                let node = v.statement.node;
                let lost_here = round < disputed_rounds && lost.contains(&node);
                if v.statement.decision == Decision::Pass && !lost_here {
                    accepted.extend(job::accepted_tiles(&batches, &node, round));
                }
            }
            let mut samples = Vec::new();
            for r in s.round_requests(&job, round)? {
                let mut record: NodeSamples = from_json("samples", &r.samples)?;
                job::fill_evidence(&mut record, &batches, &mut |round, frame, tile| {
                    s.stored_tile(&job, round, frame, tile)
                })
                .map_err(ServiceError::Invalid)?;
                if record.check.dispute {
                    dispute_samples.push(record);
                } else {
                    samples.push(record);
                }
            }
            samples.sort_by_key(|n| (n.node, n.check));
            nodes.extend(batches.iter().map(|b| b.signed.statement.node));
            rounds.push(RoundRecord {
                round,
                batches,
                commitment,
                nonce,
                samples,
                verdicts,
            });
        }
        dispute_samples.sort_by_key(|n| (n.round, n.node, n.check));
        dispute_verdicts.sort_by_key(|v| (v.statement.round, v.statement.node, v.statement.check));
        let disputes: Vec<DisputeRecord> = run
            .dispute
            .iter()
            .map(|d| DisputeRecord {
                commitment: d.commitment.clone(),
                nonce: d.nonce,
                samples: dispute_samples.clone(),
                verdicts: dispute_verdicts.clone(),
            })
            .collect();
        let job::Assembled { frames, roots, .. } = job::assemble(
            manifest,
            &accepted,
            &mut |round, frame, tile| s.stored_tile(&job, round, frame, tile),
            &self.key,
        )
        .map_err(ServiceError::Invalid)?;
        if manifest.challenge_window_secs == 0 {
            s.release_holdbacks(manifest)?;
        } else {
            run.release_at_ms = Some(now_ms + manifest.challenge_window_secs * 1000);
        }
        let payments = Signed::sign(s.job_receipt(&job, manifest.job_id)?, &self.key);
        let mut infos = Vec::new();
        for n in nodes {
            let w = s.worker(&n.to_string())?;
            let (name, class) = match w {
                Some(w) => (
                    w.name,
                    serde_json::from_str::<Capabilities>(&w.caps)
                        .map(|c| c.class)
                        .map_err(|e| {
                            ServiceError::Invalid(format!("capabilities of {}: {e}", n.short()))
                        })?,
                ),
                None => {
                    return Err(ServiceError::Invalid(format!(
                        "node {} delivered tiles but is not registered",
                        n.short()
                    )))
                }
            };
            infos.push(NodeInfo {
                key: n,
                name,
                class,
            });
        }
        let bundle = ProofBundle {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            manifest: signed_manifest.clone(),
            nodes: infos,
            rounds,
            frames,
            roots,
            disputes,
            payments,
            scene_hint: run.scene_hint.clone(),
        };
        s.save_bundle(&job, &to_json("bundle", &bundle)?)?;
        s.void_open_tasks(&job)?;
        s.set_job_state(&job, "done")?;
        tracing::info!(job = %&job[..12], rounds = run.round + 1, "job done: every tile verified and paid");
        Ok(())
    }

    // --- node signals and the reconciler ----------------------------------------------

    /// A node's signed signal: lease heartbeats, declines, failures.
    pub fn handle_signal(&self, body: &[u8], now_ms: u64) -> Result<Handled, ServiceError> {
        let sig: Signed<NodeSignal> = match serde_json::from_slice(body) {
            Ok(s) => s,
            Err(e) => return Ok(Handled::Refused(format!("malformed node signal: {e}"))),
        };
        if let Err(e) = sig.verify() {
            return Ok(Handled::Refused(format!("node signal: {e}")));
        }
        let node = sig.statement.node;
        if sig.signer != node {
            return Ok(Handled::Refused(format!(
                "node signal for {} signed by {}",
                node.short(),
                sig.signer.short()
            )));
        }
        if self.registered(&node, "node")?.is_none() {
            return Ok(Handled::Refused(format!(
                "node signal from unregistered key {}",
                node.short()
            )));
        }
        let sig_s = &sig.statement;
        let window = self.cfg.signal_window_ms;
        if sig_s.sent_unix_ms.abs_diff(now_ms) > window {
            return Ok(Handled::Refused(format!(
                "node signal from {}: sent at {} ms, {} ms away from this coordinator's clock (at most {window} ms): a replay, or the node's clock is wrong",
                node.short(),
                sig_s.sent_unix_ms,
                sig_s.sent_unix_ms.abs_diff(now_ms)
            )));
        }
        let notes = sig_s.active.len() + sig_s.declined.len() + sig_s.failed.len();
        if notes > MAX_SIGNAL_NOTES {
            return Ok(Handled::Refused(format!(
                "node signal from {}: {notes} task ids, at most {MAX_SIGNAL_NOTES}",
                node.short()
            )));
        }
        let digest = blake3::hash(&sig_s.signing_bytes()).to_hex().to_string();
        let key = node.to_string();
        self.store.atomically(|s| {
            if !s.take_signal(
                &digest,
                sig_s.sent_unix_ms,
                now_ms.saturating_sub(2 * window),
            )? {
                tracing::info!(node = %node.short(), "node signal seen before: a replay, ignored");
                return Ok(());
            }
            s.touch_worker(&key, now_ms)?;
            // Whether the node may take each job's tasks, judged once per job: a heartbeat
            // usually names several tasks of one job.
            let mut may_take: BTreeMap<String, Option<String>> = BTreeMap::new();
            for t in &sig_s.active {
                // A lease goes only to a node that may take the task.
                let Some(task) = s.task(t)? else { continue };
                if !may_take.contains_key(&task.job_id) {
                    let (_, run) = self.job(&task.job_id).map_err(corrupt)?;
                    let why = self.ineligible(&run, &node).map_err(corrupt)?;
                    may_take.insert(task.job_id.clone(), why);
                }
                if let Some(why) = &may_take[&task.job_id] {
                    tracing::info!(task = %t, "heartbeat names a task the node may not take: {why}");
                    continue;
                }
                if !s.lease_task(t, &key, now_ms + self.cfg.lease_ms)? {
                    tracing::debug!(task = %t, node = %node.short(), "heartbeat for a task this node does not hold: ignored");
                }
            }
            for note in &sig_s.declined {
                let Some(task) = self.noted_task(s, note, &key, "declined")? else {
                    continue;
                };
                tracing::info!(task = %note.task_id, node = %node.short(), "declined: {}", note.reason);
                let (_, run) = self.job(&task.job_id).map_err(corrupt)?;
                let body: RenderTask = from_json("task", &task.body).map_err(corrupt)?;
                let eligible = self
                    .eligible_nodes(&run, Some(&node), Some(now_ms))
                    .map_err(corrupt)?;
                if let Some(target) = pick(&eligible, body.batch_id) {
                    s.push_outbox(&node_queue(&target), &task.task_id, task.body.as_bytes())?;
                    s.republish_task(&task.task_id, &task.body, task.attempts, now_ms)?;
                }
            }
            for note in &sig_s.failed {
                let Some(task) = self.noted_task(s, note, &key, "failed")? else {
                    continue;
                };
                if task.node.as_deref() != Some(key.as_str()) {
                    tracing::info!(task = %note.task_id, node = %node.short(), "failure reported by a node that does not hold the lease: ignored");
                    continue;
                }
                tracing::warn!(task = %note.task_id, node = %node.short(), "render failed on the node: {}", note.reason);
                let (m, mut run) = self.job(&task.job_id).map_err(corrupt)?;
                self.fail_task(s, &mut run, &m.statement, &task, Some(&node), now_ms)
                    .map_err(corrupt)?;
                s.put_run(&task.job_id, &to_json("run", &run).map_err(corrupt)?)?;
            }
            Ok(())
        })?;
        Ok(Handled::Done)
    }

    /// The open task a node's `kind` note (`declined`, `failed`) is about, when the note
    /// counts: the task is open, the note names its current attempt, nobody else holds
    /// its lease, and this is the node's first such note on that attempt. Anything else
    /// (another job's task waiting in a queue, an old attempt, a repeat) counts nothing.
    fn noted_task(
        &self,
        s: &Store,
        note: &TaskNote,
        node: &str,
        kind: &str,
    ) -> Result<Option<TaskRow>, StoreError> {
        let Some(task) = s.task(&note.task_id)? else {
            return Ok(None);
        };
        if task.state != "open"
            || note.attempt != task.attempts
            || task.node.as_deref().is_some_and(|holder| holder != node)
        {
            tracing::info!(task = %note.task_id, attempt = note.attempt, "{kind} note about a task that is not open to this node on that attempt: ignored");
            return Ok(None);
        }
        if !s.take_note(&task.task_id, task.attempts, node, kind)? {
            tracing::info!(task = %note.task_id, attempt = note.attempt, "repeated {kind} note: ignored");
            return Ok(None);
        }
        Ok(Some(task))
    }

    /// A delivery of `task` failed (lease expired, render failed, result refused): count
    /// it against `node`, block the node from the job after too many, and publish the
    /// task again, or fail the job when it ran out of attempts.
    fn fail_task(
        &self,
        s: &Store,
        run: &mut JobRun,
        manifest: &JobManifest,
        task: &TaskRow,
        node: Option<&PublicKey>,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        if let Some(n) = node {
            let count = s.add_failure(&task.job_id, &n.to_string())?;
            if count >= self.cfg.blocklist_after && !run.blocked.contains(n) {
                tracing::warn!(job = %&task.job_id[..12], node = %n.short(), failures = count, "node blocked from this job");
                run.blocked.push(*n);
            }
        }
        if task.attempts + 1 >= self.cfg.max_attempts {
            return self.fail_job(
                s,
                manifest,
                run,
                format!("task {} failed {} times", task.task_id, task.attempts + 1),
            );
        }
        let mut body: RenderTask = from_json("task", &task.body)?;
        body.attempt = task.attempts + 1;
        body.blocked = run.blocked.clone();
        let json = to_json("task", &body)?;
        s.republish_task(&task.task_id, &json, body.attempt, now_ms)?;
        let eligible = self.eligible_nodes(run, None, Some(now_ms))?;
        if let Some(queue) = route(&body, run, &eligible) {
            s.push_outbox(&queue, &task.task_id, json.as_bytes())?;
        }
        Ok(())
    }

    /// The reconciler: requeue tasks whose lease expired (counted against their node) and
    /// tasks nobody leased for too long; publish unanswered verify requests again.
    /// Returns how many messages it queued.
    pub fn reconcile(&self, now_ms: u64) -> Result<u32, ServiceError> {
        let mut queued = 0;
        for task in self.store.expired_leases(now_ms)? {
            let node = task
                .node
                .as_deref()
                .and_then(|n| tessera_protocol::hexser::decode::<32>(n).ok())
                .map(PublicKey);
            tracing::warn!(task = %task.task_id, node = ?node, "lease expired: task requeued");
            let (m, mut run) = self.job(&task.job_id)?;
            self.store.atomically(|s| {
                self.fail_task(s, &mut run, &m.statement, &task, node.as_ref(), now_ms)
                    .map_err(corrupt)?;
                s.put_run(&task.job_id, &to_json("run", &run).map_err(corrupt)?)
            })?;
            queued += 1;
        }
        let horizon = now_ms.saturating_sub(self.cfg.unleased_timeout_ms);
        for task in self.store.unleased_since(horizon)? {
            tracing::warn!(task = %task.task_id, "no node took the task in time: published again");
            let (m, mut run) = self.job(&task.job_id)?;
            self.store.atomically(|s| {
                self.fail_task(s, &mut run, &m.statement, &task, None, now_ms)
                    .map_err(corrupt)?;
                s.put_run(&task.job_id, &to_json("run", &run).map_err(corrupt)?)
            })?;
            queued += 1;
        }
        for job in self.store.job_ids_in_state("done")? {
            let (m, mut run) = self.job(&job)?;
            if run.release_at_ms.is_none_or(|t| t > now_ms) {
                continue;
            }
            self.store.atomically(|s| {
                s.release_holdbacks(&m.statement)?;
                self.resign_receipt(s, &job).map_err(corrupt)?;
                run.release_at_ms = None;
                s.put_run(&job, &to_json("run", &run).map_err(corrupt)?)
            })?;
            tracing::info!(job = %&job[..12], "challenge window over: hold-backs released");
        }
        let horizon = now_ms.saturating_sub(self.cfg.verify_timeout_ms);
        for req in self.store.stale_requests(horizon)? {
            // A dispute check is never abandoned: the deposit and hold-backs wait for a
            // verifier's answer (failing a done, paid job over it would strand both).
            if req.attempts + 1 >= self.cfg.max_attempts && !req.check.dispute {
                let (m, mut run) = self.job(&req.job_id)?;
                self.store.atomically(|s| {
                    s.close_request(&req.request_id)?;
                    self.fail_job(
                        s,
                        &m.statement,
                        &mut run,
                        format!(
                            "no verifier answered request {} after {} publications",
                            req.request_id,
                            req.attempts + 1
                        ),
                    )
                    .map_err(corrupt)?;
                    s.put_run(&req.job_id, &to_json("run", &run).map_err(corrupt)?)
                })?;
                continue;
            }
            tracing::warn!(request = %req.request_id, "no verdict in time: request published again");
            // Again to the queue it went to, until the verifier chosen for an escalated
            // check proves gone (`republish_queue`): never to the shared queue while it
            // may still answer, where the first verifier could take it.
            let body = self
                .store
                .request_body(&req.request_id)?
                .unwrap_or_default();
            let (queue, moved) = self.republish_queue(&req)?;
            self.store.atomically(|s| {
                if moved {
                    // This publication is attempt `attempts + 1`, the new queue's first.
                    s.set_request_queue(&req.request_id, &queue, req.attempts + 1)?;
                }
                s.touch_request(&req.request_id, now_ms)?;
                s.push_outbox(&queue, &req.request_id, &body)
            })?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Sign a new payment receipt over the job's transfers into its stored bundle.
    fn resign_receipt(&self, s: &Store, job: &str) -> Result<(), ServiceError> {
        let mut bundle: ProofBundle = from_json(
            "bundle",
            &s.bundle(job)?
                .ok_or_else(|| ServiceError::NotFound(format!("bundle of job {job}")))?,
        )?;
        bundle.payments = Signed::sign(
            s.job_receipt(job, bundle.manifest.statement.job_id)?,
            &self.key,
        );
        s.save_bundle(job, &to_json("bundle", &bundle)?)?;
        Ok(())
    }

    // --- views ------------------------------------------------------------------------

    /// A job's status.
    pub fn job_view(&self, job: &str) -> Result<JobView, ServiceError> {
        let (manifest, run) = self.job(job)?;
        let state = self.store.job_state(job)?.unwrap_or_default();
        let rendered_now = self.store.count_task_tiles(job, run.round, "done")?;
        let tiles_rendered = if state == "done" {
            run.tiles_total
        } else {
            (run.tiles_verified + rendered_now).min(run.tiles_total)
        };
        Ok(JobView {
            manifest,
            state,
            round: run.round,
            tiles_total: run.tiles_total,
            tiles_rendered,
            tiles_verified: run.tiles_verified,
            error: run.error,
            release_at_ms: run.release_at_ms,
        })
    }

    /// Every job id, newest first.
    pub fn job_ids(&self) -> Result<Vec<String>, ServiceError> {
        Ok(self.store.job_ids()?)
    }

    /// A finished job's proof bundle (JSON).
    pub fn bundle(&self, job: &str) -> Result<String, ServiceError> {
        let state = self
            .store
            .job_state(job)?
            .ok_or_else(|| ServiceError::NotFound(format!("job {job} does not exist")))?;
        self.store.bundle(job)?.ok_or_else(|| {
            ServiceError::Unavailable(format!(
                "job {job} is {state}: its bundle exists once it is done"
            ))
        })
    }

    /// A finished frame: canonical RGBA16F bytes of the whole image.
    pub fn frame(&self, job: &str, frame: u32) -> Result<Vec<u8>, ServiceError> {
        if self.store.job_state(job)?.is_none() {
            return Err(ServiceError::NotFound(format!("job {job} does not exist")));
        }
        assemble_frame(&self.store, job, frame)
    }
}

/// Frame `frame` of finished job `job`, assembled from the stored tiles its bundle lists
/// (each checked against the bundle's leaf): canonical RGBA16F bytes of the whole image.
pub fn assemble_frame(store: &Store, job: &str, frame: u32) -> Result<Vec<u8>, ServiceError> {
    let json = store
        .bundle(job)?
        .ok_or_else(|| ServiceError::Unavailable(format!("job {job} has no bundle yet")))?;
    let bundle: ProofBundle = from_json("bundle", &json)?;
    drop(json);
    let m = &bundle.manifest.statement;
    let tiles = bundle
        .frames
        .iter()
        .find(|f| f.frame == frame)
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "job {job} has frames {}..{}, not {frame}",
                m.frame_start, m.frame_end
            ))
        })?;
    let (w, h) = (m.settings.width, m.settings.height);
    let mut pixels = vec![0u8; w as usize * h as usize * 8];
    for t in &tiles.tiles {
        let b = store
            .tile_bytes(job, t.round, frame, t.tile_index)?
            .unwrap_or_default();
        if tessera_protocol::canonical::tile_hash(&b) != t.tile_hash
            || !tessera_protocol::canonical::paste(&mut pixels, w, h, t.rect, &b)
        {
            return Err(ServiceError::Store(StoreError::Corrupt {
                path: "store".into(),
                what: format!("job {job} frame {frame} tile {}", t.tile_index),
                reason: "stored bytes do not match the bundle's leaf".into(),
            }));
        }
    }
    Ok(pixels)
}

/// Where a task goes: the shared queue when the job has no requirements and nobody is
/// blocked; otherwise an eligible node's own queue (spread by batch id). None when no
/// node is eligible now (the reconciler tries again later).
fn route(task: &RenderTask, run: &JobRun, eligible: &[PublicKey]) -> Option<String> {
    if run.requirements.is_empty() && run.blocked.is_empty() && run.min_trust == 0 {
        return Some(QUEUE_TASKS.to_string());
    }
    pick(eligible, task.batch_id).map(|n| node_queue(&n))
}

fn pick(eligible: &[PublicKey], batch_id: u32) -> Option<PublicKey> {
    (!eligible.is_empty()).then(|| eligible[batch_id as usize % eligible.len()])
}

/// Carry a service error through a store transaction (which only knows store errors).
/// A store error from [`Service::fund`] refusing a client that cannot pay, as the
/// [`ServiceError::Funds`] it is; any other store error as it is.
fn funds_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::Corrupt { what, reason, .. } if what == "funds" => ServiceError::Funds(reason),
        e => e.into(),
    }
}

fn corrupt(e: ServiceError) -> StoreError {
    match e {
        ServiceError::Store(s) => s,
        other => StoreError::Corrupt {
            path: "service".into(),
            what: "transaction".into(),
            reason: other.to_string(),
        },
    }
}
