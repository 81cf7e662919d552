//! The daemon coordinator's state machine. Every input (a submitted job, a node's result,
//! a verdict, a node signal, a reconciler tick) is one call that reads and writes the store
//! inside one transaction and queues what must be published in the outbox table, so
//! "commit, then publish" survives a crash between the two. No bus, no HTTP, and the
//! clock is a parameter (`now_ms`): tests drive leases with virtual time.

use crate::job;
use crate::machine::{
    Control, ControlRefusal, Ctx, DisputeRefusal, Effect, Farm, Input, Job, JobSetup, JobState,
    NodeView, Nonces, Policy, Progress, TaskView, Tiles, VerifierView,
};
use crate::store::{Store, StoreError, StoredMachine, WorkerRow};
use rand::RngCore;
use std::collections::BTreeMap;
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{
    account, default_tiers, LedgerError, Pricing, SamplingPolicy, Transfer, TransferKind,
};
use tessera_protocol::rules::{dispute_deposit, job_price};
use tessera_protocol::statements::{
    JobManifest, NodeSignal, Registration, Role, Signed, Statement, MANIFEST_VERSION,
};
use tessera_protocol::tolerance::Tolerance;
use tessera_protocol::wire::{BatchResult, Capabilities, Requirements, VerdictMessage};
use tessera_protocol::{Digest, RenderSettings};

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

impl ServiceConfig {
    /// The policy the job machines run under.
    pub fn policy(&self) -> Policy {
        Policy {
            lease_ms: self.lease_ms,
            max_attempts: self.max_attempts,
            blocklist_after: self.blocklist_after,
            verify_timeout_ms: self.verify_timeout_ms,
            unleased_timeout_ms: self.unleased_timeout_ms,
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

pub use crate::machine::Handled;

/// A job as the API shows it.
#[derive(Clone, Debug)]
pub struct JobView {
    /// Signed manifest.
    pub manifest: Signed<JobManifest>,
    /// Where it is.
    pub progress: Progress,
}

/// The coordinator's core.
pub struct Service {
    store: Store,
    key: SecretKey,
    cfg: ServiceConfig,
    metrics: super::metrics::Metrics,
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

impl Service {
    /// A service over `store`, signing with `key`.
    pub fn new(store: Store, key: SecretKey, cfg: ServiceConfig) -> Self {
        Self {
            store,
            key,
            cfg,
            metrics: super::metrics::Metrics::new(),
        }
    }

    /// The coordinator's metrics (moved by the effects carried out).
    pub fn metrics(&self) -> &super::metrics::Metrics {
        &self.metrics
    }

    /// The metrics as `GET /metrics` serves them, the gauges read from the store now.
    pub fn metrics_text(&self) -> Result<String, ServiceError> {
        Ok(self.metrics.encode(&self.store)?)
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
                if s.worker(&key)?.is_some_and(|w| w.role != r.role) {
                    return Err(StoreError::Corrupt {
                        path: "workers".into(),
                        what: "registration.role".into(),
                        reason: format!("key {} is registered with another role", key.short()),
                    });
                }
                s.upsert_worker(
                    &WorkerRow {
                        key,
                        name: r.name.clone(),
                        role: r.role,
                        caps: caps.clone(),
                        last_seen_ms: now_ms,
                    },
                    &session_digest(&session),
                )?;
                s.upsert_node(&key, &r.name, &caps.class)?;
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
        let who = format!(
            "registration of {} as a {:?}",
            reg.signer.short(),
            r.role.as_str()
        );
        let granted = match r.role {
            Role::Node => self
                .cfg
                .node_token
                .as_deref()
                .is_none_or(|want| token.is_some_and(|t| same_secret(t, want))),
            Role::Verifier => {
                self.cfg.verifier_keys.contains(&reg.signer)
                    || self
                        .cfg
                        .verifier_token
                        .as_deref()
                        .is_some_and(|want| token.is_some_and(|t| same_secret(t, want)))
            }
        };
        if !granted {
            return Err(ServiceError::Forbidden(if r.role == Role::Node {
                format!("{who}: missing or wrong node token")
            } else {
                format!("{who}: the operator grants the verifier role (--verifier-key, --verifier-token), and not to this key with this token")
            }));
        }
        if let Some(w) = self.store.worker(&reg.signer)? {
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

    fn registered(&self, key: &PublicKey, role: Role) -> Result<Option<WorkerRow>, ServiceError> {
        Ok(self.store.worker(key)?.filter(|w| w.role == role))
    }

    // --- submission -------------------------------------------------------------------

    /// Accept a job: sign its manifest (with one nonce commitment per possible round and
    /// the registered verifiers), fund its escrow, and queue round 0.
    pub fn submit(&self, sub: Submission<'_>, now_ms: u64) -> Result<String, ServiceError> {
        let client = sub.client;
        let Planned {
            manifest,
            nonces,
            setup,
            tiles,
        } = self.plan(sub, now_ms)?;
        let job = hex::encode(manifest.job_id);
        let signed = Signed::sign(manifest.clone(), &self.key);
        self.store
            .atomically(|s| {
                s.insert_job(&job, &signed, now_ms / 1000)?;
                self.fund(
                    s,
                    &format!("job:{job}:overdraft"),
                    client,
                    job_price(&manifest),
                )?;
                let farm = StoreFarm::read(s)?;
                let tiles = StoreTiles {
                    store: s,
                    job: &job,
                };
                let ctx = self.ctx(&farm, &tiles, now_ms);
                let mut machine = Job::start(
                    signed.clone(),
                    nonces.clone(),
                    setup.clone(),
                    self.cfg.policy(),
                    &ctx,
                );
                self.carry_out(s, &job, &mut machine, now_ms)?;
                s.put_machine(&job, &machine)
            })
            .map_err(funds_error)?;
        tracing::info!(job = %&job[..12], tiles, "job accepted");
        Ok(job)
    }

    /// What [`Self::submit`] would charge for the same job, refusing exactly what it
    /// would refuse (its checks, then whether the client's balance and overdraft cover
    /// the escrow), without writing anything.
    pub fn estimate(&self, sub: Submission<'_>, now_ms: u64) -> Result<Estimate, ServiceError> {
        let client = sub.client;
        let planned = self.plan(sub, now_ms)?;
        let m = &planned.manifest;
        let price = job_price(m);
        self.store
            .atomically(|s| self.shortfall(s, client, price))
            .map_err(funds_error)?;
        Ok(Estimate {
            price,
            tier: m.tier.name.clone(),
            tile_size: m.tile_size,
            tiles: planned.tiles,
            frames: m.n_frames(),
        })
    }

    /// Everything [`Self::submit`] checks before it writes (the settings' bounds, the
    /// tier, the job's size, the client's job quota, a verifier, a node of the tier's
    /// trust) and the manifest it would sign: reads the store, writes nothing.
    fn plan(&self, sub: Submission<'_>, now_ms: u64) -> Result<Planned, ServiceError> {
        let Submission {
            client,
            scene_name,
            scene_hash,
            settings,
            frames,
            tier,
            tile_size,
            batch_size,
            requirements,
        } = sub;
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
            return bad(why.to_string());
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
            .filter(|w| w.role == Role::Verifier)
            .map(|w| w.key)
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
            for w in self
                .store
                .workers()?
                .iter()
                .filter(|w| w.role == Role::Node)
            {
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
        let nonces = Nonces::draw(&mut rand::rngs::OsRng);
        let (nonce_commitments, dispute_nonce_commitment) = nonces.commitments();
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
        let setup = JobSetup {
            batch_size,
            requirements,
            min_trust,
            scene_hint: Some(scene_name.into()),
        };
        Ok(Planned {
            manifest,
            nonces,
            setup,
            tiles,
        })
    }

    /// Record where job `job`'s scene is on the submitting machine, unsigned in its
    /// bundle (`scene_hint`), for `tessera audit --rerender` to find it: `tessera render`
    /// gives the scene file's path (a submission over the API has its entry file name).
    pub fn set_scene_hint(&self, job: &str, hint: &str) -> Result<(), ServiceError> {
        Ok(self.store.atomically(|s| {
            let mut machine = self.load_resumable(s, job)?;
            machine.set_scene_hint(hint);
            s.put_machine(job, &machine)
        })?)
    }

    /// Make sure `client`'s balance covers `amount` (a job's escrow, a dispute's
    /// deposit): a shortfall within the client's overdraft limit is lent from its credit
    /// line (transfer `key`); beyond it the request is refused (as a `Corrupt { what:
    /// "funds" }` store error, turned into [`ServiceError::Funds`]).
    fn fund(&self, s: &Store, key: &str, client: &str, amount: u64) -> Result<(), StoreError> {
        let short = self.shortfall(s, client, amount)?;
        if short == 0 {
            return Ok(());
        }
        let line = account::external(&format!("credit:{client}"));
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

    /// What [`Self::fund`] would lend `client` from its credit line to cover `amount`
    /// (0 when its balance covers it), or the same refusal: reads, writes nothing.
    fn shortfall(&self, s: &Store, client: &str, amount: u64) -> Result<u64, StoreError> {
        let have = s.balance(&account::client(client))?.max(0) as u64;
        let short = amount.saturating_sub(have);
        if short == 0 {
            return Ok(0);
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
        Ok(short)
    }

    // --- the job machines ---------------------------------------------------------------

    /// The context a job's machine handles an input in.
    fn ctx<'a>(&'a self, farm: &'a StoreFarm, tiles: &'a StoreTiles<'a>, now_ms: u64) -> Ctx<'a> {
        Ctx {
            now_ms,
            farm,
            tiles,
            key: &self.key,
        }
    }

    /// Job `job`'s machine as the store keeps it; `None` for a job an older coordinator
    /// stored (before the job state machine), which cannot be resumed: its inputs are
    /// refused, the reconciler leaves it alone, and its status comes from what it stored.
    fn load(&self, s: &Store, job: &str) -> Result<Option<Job>, StoreError> {
        match s.machine(job)? {
            Some(StoredMachine::Machine(machine)) => {
                Ok(Some(machine.with_policy(self.cfg.policy())))
            }
            Some(StoredMachine::Older(_)) => Ok(None),
            None => Err(StoreError::Corrupt {
                path: "store".into(),
                what: "job state".into(),
                reason: format!("job {job} has no state"),
            }),
        }
    }

    /// [`Self::load`] for a job that must be resumable.
    fn load_resumable(&self, s: &Store, job: &str) -> Result<Job, StoreError> {
        self.load(s, job)?.ok_or_else(|| StoreError::Corrupt {
            path: "store".into(),
            what: format!("job {job}"),
            reason: OLDER.into(),
        })
    }

    /// Whether the store has job `job` (its small state column, not the machine, which
    /// the input's own transaction reads).
    fn has_job(&self, job: &str) -> Result<bool, ServiceError> {
        Ok(self.store.job_state(job)?.is_some())
    }

    /// Hand `inputs` to job `job`'s machine in one transaction: load it, let it handle
    /// each input and carry out its effects (the farm it reads is read again after each
    /// one), keep it. Returns what to do with each input's delivery and how many messages
    /// were queued.
    fn drive(
        &self,
        s: &Store,
        job: &str,
        now_ms: u64,
        inputs: Vec<Input>,
    ) -> Result<(Vec<Handled>, u32), StoreError> {
        let Some(mut machine) = self.load(s, job)? else {
            let refused = Handled::Refused(format!("job {job}: {OLDER}"));
            return Ok((vec![refused; inputs.len()], 0));
        };
        let tiles = StoreTiles { store: s, job };
        let mut handled = Vec::with_capacity(inputs.len());
        let mut queued = 0;
        for input in inputs {
            let farm = StoreFarm::read(s)?;
            let ctx = self.ctx(&farm, &tiles, now_ms);
            let h = machine
                .handle(input, &ctx)
                .map_err(|e| corrupt(ServiceError::Invalid(e.to_string())))?;
            handled.push(h);
            queued += self.carry_out(s, job, &mut machine, now_ms)?;
        }
        s.put_machine(job, &machine)?;
        Ok((handled, queued))
    }

    /// [`Self::drive`] with one input, in a transaction of its own.
    fn drive_one(&self, job: &str, now_ms: u64, input: Input) -> Result<Handled, ServiceError> {
        let (mut handled, _) = self
            .store
            .atomically(|s| self.drive(s, job, now_ms, vec![input]))?;
        Ok(handled.pop().unwrap_or(Handled::Done))
    }

    /// Carry out what job `job`'s machine asks, in the caller's transaction: messages into
    /// the outbox, results and bundles into the store, transfers into the ledger. Returns
    /// how many messages it queued.
    fn carry_out(
        &self,
        s: &Store,
        job: &str,
        machine: &mut Job,
        now_ms: u64,
    ) -> Result<u32, StoreError> {
        let mut queued = 0;
        while let Some(effect) = machine.poll_effect() {
            self.metrics.effect(&effect, now_ms);
            super::webhooks::enqueue(s, job, machine, &effect, now_ms)?;
            crate::store::events::record(s, job, &effect, now_ms)?;
            match effect {
                Effect::Publish { queue, message } => {
                    s.push_outbox(
                        &queue,
                        message.id(),
                        &message.body(),
                        Some(job),
                        machine.priority(),
                    )?;
                    queued += 1;
                }
                Effect::KeepResult { round, result } => {
                    s.insert_result(job, round, &result)?;
                }
                Effect::Transfer(t) => {
                    s.apply_transfer(Some(job), &t)?;
                }
                Effect::Uncollected(t) => {
                    s.list_uncollected(Some(job), &t)?;
                }
                Effect::Trust { node, trust } => s.set_trust(&node, trust)?,
                Effect::VerifierFault { verifier } => {
                    let faults = s.add_worker_fault(&verifier)?;
                    tracing::info!(verifier = %verifier.short(), faults, "verdicts of this verifier that did not follow from the rules");
                }
                Effect::Seen { key } => s.touch_worker(&key, now_ms)?,
                Effect::State(state) => {
                    s.set_job_state(job, state)?;
                    tracing::debug!(job = %&job[..12], %state, "job state");
                }
                Effect::Finished(bundle) => {
                    s.save_bundle(job, &bundle)?;
                    tracing::info!(job = %&job[..12], rounds = bundle.rounds.len(), "job done: every tile verified and paid");
                }
                Effect::Receipt(receipt) => {
                    let mut bundle = s.bundle(job)?.ok_or_else(|| StoreError::Corrupt {
                        path: "store".into(),
                        what: format!("bundle of job {job}"),
                        reason: "a done job has no bundle".into(),
                    })?;
                    bundle.payments = *receipt;
                    s.save_bundle(job, &bundle)?;
                    tracing::info!(job = %&job[..12], "challenge window over: hold-backs released");
                }
                Effect::Failed(why) => {
                    tracing::error!(job = %&job[..12], "job failed: {why}; the client's escrow was refunded");
                }
                Effect::Verdict(v) => {
                    tracing::debug!(job = %&job[..12], round = v.statement.round, node = %v.statement.node.short(), decision = ?v.statement.decision, "verdict taken");
                }
                Effect::Withdraw => {
                    let n = s.withdraw_tasks(job)?;
                    tracing::info!(job = %&job[..12], tasks = n, "unsent task messages withdrawn");
                }
                Effect::Priority(p) => s.set_outbox_priority(job, p)?,
            }
        }
        Ok(queued)
    }

    // --- inputs -----------------------------------------------------------------------

    /// A node's batch result.
    pub fn handle_result(&self, body: &[u8], now_ms: u64) -> Result<Handled, ServiceError> {
        let res: BatchResult = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return Ok(Handled::Refused(format!("malformed result: {e}"))),
        };
        let job = match job::job_of(&res.task_id) {
            Some(j) if self.has_job(j)? => j.to_string(),
            _ => {
                return Ok(Handled::Refused(format!(
                    "result for unknown task {:?}",
                    res.task_id
                )))
            }
        };
        self.drive_one(&job, now_ms, Input::Result(res))
    }

    /// A verifier's verdict.
    pub fn handle_verdict(&self, body: &[u8], now_ms: u64) -> Result<Handled, ServiceError> {
        let msg: VerdictMessage = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => return Ok(Handled::Refused(format!("malformed verdict: {e}"))),
        };
        let job = match job::job_of(&msg.request_id) {
            Some(j) if self.has_job(j)? => j.to_string(),
            _ => {
                return Ok(Handled::Refused(format!(
                    "verdict for unknown request {:?}",
                    msg.request_id
                )))
            }
        };
        self.drive_one(&job, now_ms, Input::Verdict(msg))
    }

    /// A client disputes a finished job inside its challenge window: its deposit is
    /// funded, then the job's machine fixes the dispute and queues its checks.
    pub fn open_dispute(&self, job: &str, client: &str, now_ms: u64) -> Result<(), ServiceError> {
        if !self.has_job(job)? {
            return Err(ServiceError::NotFound(format!("job {job} does not exist")));
        }
        let Some(machine) = self.load(&self.store, job)? else {
            return Err(ServiceError::Unavailable(format!("job {job}: {OLDER}")));
        };
        machine
            .may_dispute(client, now_ms)
            .map_err(|why| match why {
                DisputeRefusal::NotOwner(_) => ServiceError::Forbidden(why.to_string()),
                DisputeRefusal::Again(_) => ServiceError::Invalid(why.to_string()),
                DisputeRefusal::NotDone { .. } | DisputeRefusal::WindowClosed(_) => {
                    ServiceError::Unavailable(why.to_string())
                }
            })?;
        let deposit = dispute_deposit(&machine.manifest().statement);
        let (handled, queued) = self
            .store
            .atomically(|s| {
                self.fund(s, &format!("job:{job}:dispute:overdraft"), client, deposit)?;
                let (mut handled, queued) = self.drive(
                    s,
                    job,
                    now_ms,
                    vec![Input::Dispute {
                        client: client.into(),
                    }],
                )?;
                Ok((handled.pop(), queued))
            })
            .map_err(funds_error)?;
        if let Some(Handled::Refused(why)) = handled {
            return Err(ServiceError::Invalid(why));
        }
        tracing::info!(job = %&job[..12], checks = queued, "dispute opened: extra samples requested");
        Ok(())
    }

    /// Client `client` controls its job `job` ([`Control`]): the job's machine decides, in
    /// a transaction of its own. Returns the job's state after it. Another client's job
    /// does not exist for `client`; a job that ended cannot be controlled.
    pub fn control(
        &self,
        client: &str,
        job: &str,
        action: Control,
        now_ms: u64,
    ) -> Result<JobState, ServiceError> {
        let missing = || ServiceError::NotFound(format!("job {job} does not exist"));
        if self
            .store
            .job_client(job)?
            .is_none_or(|owner| owner != client)
        {
            return Err(missing());
        }
        let Some(machine) = self.load(&self.store, job)? else {
            return Err(ServiceError::Unavailable(format!("job {job}: {OLDER}")));
        };
        machine
            .may_control(client, action)
            .map_err(|why| match why {
                ControlRefusal::NotOwner(_) => missing(),
                ControlRefusal::Ended { .. } | ControlRefusal::NotRequeuable { .. } => {
                    ServiceError::Unavailable(why.to_string())
                }
            })?;
        let input = Input::Control {
            client: client.into(),
            action,
        };
        // A failed job's requeue funds its escrow again with what the failure refunded;
        // a refusal takes the funding back with it (one transaction).
        let refused = |why: String| StoreError::Corrupt {
            path: format!("job {job}"),
            what: "control refused".into(),
            reason: why,
        };
        let escrow = machine
            .requeue_price()
            .filter(|_| action == Control::Requeue);
        let requeues = machine.requeues().len() + 1;
        let done = self.store.atomically(|s| {
            if let Some(amount) = escrow {
                let key = format!("job:{job}:requeue{requeues}:overdraft");
                self.fund(s, &key, client, amount)?;
            }
            let (mut handled, _) = self.drive(s, job, now_ms, vec![input])?;
            match handled.pop() {
                Some(Handled::Refused(why)) => Err(refused(why)),
                _ => Ok(()),
            }
        });
        match done {
            Err(StoreError::Corrupt { what, reason, .. }) if what == "control refused" => {
                return Err(ServiceError::Unavailable(reason))
            }
            other => other.map_err(funds_error)?,
        }
        tracing::info!(job = %&job[..12], action = action.name(), "job control");
        self.store.job_state(job)?.ok_or_else(missing)
    }

    /// Whether node `node` should render task `task_id` now ([`Job::wants`]): an unknown
    /// task, or one of a job that ended, is not wanted.
    pub fn task_wanted(&self, task_id: &str, node: &PublicKey) -> Result<bool, ServiceError> {
        let Some(job) = job::job_of(task_id) else {
            return Ok(false);
        };
        if !self.has_job(job)? {
            return Ok(false);
        }
        if let Some(wanted) = self.store.task_wanted(job, task_id, node)? {
            return Ok(wanted);
        }
        // A machine kept before its claims were (put again, it gets them).
        Ok(self
            .load(&self.store, job)?
            .is_some_and(|machine| machine.wants(task_id, node)))
    }

    /// A node's signed signal: lease heartbeats, declines, failures, each handed to the
    /// machine of the job its task belongs to.
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
        if self.registered(&node, Role::Node)?.is_none() {
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
        // Heartbeats first, then declines, then failures, each job's in the order sent.
        let mut by_job: BTreeMap<String, Vec<Input>> = BTreeMap::new();
        let mut add = |task_id: &str, input: Input| {
            if let Some(job) = job::job_of(task_id) {
                by_job.entry(job.to_string()).or_default().push(input);
            }
        };
        for t in &sig_s.active {
            add(
                t,
                Input::Heartbeat {
                    node,
                    task_id: t.clone(),
                },
            );
        }
        for note in &sig_s.declined {
            add(
                &note.task_id,
                Input::Declined {
                    node,
                    note: note.clone(),
                },
            );
        }
        for note in &sig_s.failed {
            add(
                &note.task_id,
                Input::RenderFailed {
                    node,
                    note: note.clone(),
                },
            );
        }
        let digest = blake3::hash(&sig_s.signing_bytes()).to_hex().to_string();
        self.store.atomically(|s| {
            if !s.take_signal(
                &digest,
                sig_s.sent_unix_ms,
                now_ms.saturating_sub(2 * window),
            )? {
                tracing::info!(node = %node.short(), "node signal seen before: a replay, ignored");
                return Ok(());
            }
            s.touch_worker(&node, now_ms)?;
            for (job, inputs) in by_job {
                if s.job_state(&job)?.is_some() {
                    self.drive(s, &job, now_ms, inputs)?;
                }
            }
            Ok(())
        })?;
        Ok(Handled::Done)
    }

    /// The reconciler: a tick for every job that is not over (expired leases, unleased
    /// tasks, unanswered checks, challenge windows). Returns how many messages it queued.
    pub fn reconcile(&self, now_ms: u64) -> Result<u32, ServiceError> {
        let mut queued = 0;
        for job in self.store.running_job_ids()? {
            let ticked = self.store.atomically(|s| match self.load(s, &job)? {
                Some(machine) if !machine.is_over() => {
                    Ok(self.drive(s, &job, now_ms, vec![Input::Tick])?.1)
                }
                // Over (saved before the column said so) or not resumable: never again.
                _ => s.retire_machine(&job).map(|()| 0),
            });
            // One job that cannot be ticked must not hold up every other one.
            match ticked {
                Ok(n) => queued += n,
                Err(e) => {
                    tracing::error!(job = %&job[..12.min(job.len())], "reconciling the job failed: {e}")
                }
            }
        }
        Ok(queued)
    }

    /// How many leases each node holds on open tasks, by key (hex).
    pub fn leases_by_node(&self) -> Result<BTreeMap<String, u32>, ServiceError> {
        let mut leases = BTreeMap::new();
        for state in [JobState::Queued, JobState::Rendering, JobState::Paused] {
            for job in self.store.job_ids_in_state(state)? {
                let Some(machine) = self.load(&self.store, &job)? else {
                    continue;
                };
                for node in machine.lease_holders() {
                    *leases.entry(node.to_string()).or_default() += 1;
                }
            }
        }
        Ok(leases)
    }

    /// The render slots of every registered node: how many tasks the farm renders at
    /// once, which sizes the shared task queue's depth.
    pub fn node_slots(&self) -> Result<u64, ServiceError> {
        let farm = StoreFarm::read(&self.store)?;
        Ok(farm.nodes().iter().map(|n| u64::from(n.caps.slots)).sum())
    }

    /// One task of a job, as its machine holds it.
    pub fn task(&self, task_id: &str) -> Result<Option<TaskView>, ServiceError> {
        let Some(job) = job::job_of(task_id) else {
            return Ok(None);
        };
        if !self.has_job(job)? {
            return Ok(None);
        }
        Ok(self
            .load(&self.store, job)?
            .and_then(|machine| machine.task(task_id)))
    }

    // --- views ------------------------------------------------------------------------

    /// A job's status.
    pub fn job_view(&self, job: &str) -> Result<JobView, ServiceError> {
        let missing = || ServiceError::NotFound(format!("job {job} does not exist"));
        let progress = match self.store.machine(job)?.ok_or_else(missing)? {
            StoredMachine::Machine(machine) => {
                return Ok(JobView {
                    manifest: machine.manifest().clone(),
                    progress: machine.progress(),
                })
            }
            StoredMachine::Older(progress) => progress,
        };
        let manifest = self.store.manifest(job)?.ok_or_else(missing)?;
        Ok(JobView { manifest, progress })
    }

    /// Every job id, newest first.
    pub fn job_ids(&self) -> Result<Vec<String>, ServiceError> {
        Ok(self.store.job_ids()?)
    }

    /// A finished job's proof bundle.
    pub fn bundle(&self, job: &str) -> Result<ProofBundle, ServiceError> {
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
    let bundle = store
        .bundle(job)?
        .ok_or_else(|| ServiceError::Unavailable(format!("job {job} has no bundle yet")))?;
    frame_of_bundle(store, job, &bundle, frame)
}

/// [`assemble_frame`] with the job's bundle already read (a caller that assembles every
/// frame reads it once).
pub fn frame_of_bundle(
    store: &Store,
    job: &str,
    bundle: &ProofBundle,
    frame: u32,
) -> Result<Vec<u8>, ServiceError> {
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
        if tessera_protocol::blocks::tile_hash(&b, t.rect) != Some(t.tile_hash)
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

/// Why a job an older coordinator stored is not resumed.
const OLDER: &str = "stored by an older coordinator, before the job state machine: it cannot be resumed (its bundle and frames, once done, are kept)";

/// What a job's machine reads of the store: the registered nodes and verifiers, and the
/// nodes' stakes (the only balances the rules read), as they are when an input is handled.
struct StoreFarm {
    nodes: Vec<NodeView>,
    verifiers: Vec<VerifierView>,
    stakes: BTreeMap<String, i128>,
}

impl StoreFarm {
    fn read(s: &Store) -> Result<Self, StoreError> {
        let mut farm = StoreFarm {
            nodes: Vec::new(),
            verifiers: Vec::new(),
            stakes: BTreeMap::new(),
        };
        for w in s.workers()? {
            let key = w.key;
            match w.role {
                Role::Node => {
                    let stake = account::stake(&key);
                    farm.stakes
                        .insert(stake.clone(), i128::from(s.balance(&stake)?));
                    farm.nodes.push(NodeView {
                        key,
                        name: w.name,
                        caps: w.caps,
                        trust: s.trust(&key)?,
                        last_seen_ms: w.last_seen_ms,
                    });
                }
                Role::Verifier => farm.verifiers.push(VerifierView {
                    key,
                    class_id: Some(w.caps.class.id()),
                    last_seen_ms: w.last_seen_ms,
                    faults: s.worker_faults(&key)?,
                }),
            }
        }
        farm.nodes.sort_by_key(|n| n.key);
        farm.verifiers.sort_by_key(|v| v.key);
        Ok(farm)
    }
}

impl Farm for StoreFarm {
    fn nodes(&self) -> Vec<NodeView> {
        self.nodes.clone()
    }
    fn node(&self, key: &PublicKey) -> Option<NodeView> {
        self.nodes
            .binary_search_by_key(key, |n| n.key)
            .ok()
            .map(|i| self.nodes[i].clone())
    }
    fn verifiers(&self) -> Vec<VerifierView> {
        self.verifiers.clone()
    }
    fn balance(&self, account: &str) -> i128 {
        self.stakes.get(account).copied().unwrap_or(0)
    }
}

/// The tiles of one job the store kept.
struct StoreTiles<'a> {
    store: &'a Store,
    job: &'a str,
}

impl Tiles for StoreTiles<'_> {
    fn tile(&self, round: u32, frame: u32, tile: u32) -> Option<Vec<u8>> {
        self.store
            .tile_bytes(self.job, round, frame, tile)
            .ok()
            .flatten()
    }
}

/// Carry a service error through a store transaction (which only knows store errors).
/// A store error from [`Service::fund`] refusing a client that cannot pay, as the
/// [`ServiceError::Funds`] it is; any other store error as it is.
/// A job [`Service::plan`] checked: the manifest to sign and what its machine starts with.
struct Planned {
    manifest: JobManifest,
    nonces: Nonces,
    setup: JobSetup,
    /// Tiles over all frames.
    tiles: u64,
}

/// A job as its client submits it ([`Service::submit`], [`Service::estimate`]): the parts
/// the API has already checked apart (the listing, the scene's inspection); the service
/// checks the rest.
#[derive(Clone, Debug)]
pub struct Submission<'a> {
    /// The paying client.
    pub client: &'a str,
    /// The scene's name (its entry file), signed into the manifest.
    pub scene_name: &'a str,
    /// The scene's content hash.
    pub scene_hash: Digest,
    /// Render settings.
    pub settings: RenderSettings,
    /// First and last frame.
    pub frames: (u32, u32),
    /// Tier name.
    pub tier: &'a str,
    /// Tile edge (`None`: the farm's).
    pub tile_size: Option<u32>,
    /// Tiles per task (`None`: the farm's).
    pub batch_size: Option<u32>,
    /// What a node must offer to take its tasks.
    pub requirements: Requirements,
}

/// What a job would cost ([`Service::estimate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The escrow the submission would take, in micro-credits (`rules::job_price`).
    pub price: u64,
    /// The tier's name.
    pub tier: String,
    /// The tile edge the job would use (the coordinator's default when not asked for).
    pub tile_size: u32,
    /// Tiles over all frames.
    pub tiles: u64,
    /// Frames.
    pub frames: u32,
}

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
