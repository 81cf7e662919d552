//! One job's state machine, sans IO (quinn-proto is the model): no store, no bus, no
//! clock and no OS randomness inside. A driver hands it typed inputs ([`Input`]) with a
//! [`Ctx`] (the time, what it may read of the farm and of the stored tiles, the signing
//! key) and polls the effects ([`Effect`]) it must carry out: messages to publish,
//! transfers, trust changes, state changes, the finished job's bundle. Every rule of a
//! job's lifecycle is decided here once: dispatch, results, round commitment, nonce reveal,
//! verify requests, verdicts, escalation, settlement, re-render rounds, leases and
//! retries, failure, disputes and the release of hold-backs. Payment amounts come from
//! `tessera_protocol::rules` (the auditor re-derives them from the bundle), including the
//! slash cap ([`rules::collect`]).
//!
//! The driver applies the effects of one input before it hands in the next (the farm it
//! shows the machine must include them: a stake slashed, a trust changed). On an `Err`
//! the input is half applied and the driver must drop this copy of the job (the daemon
//! rolls its transaction back and reloads). A refused input (`Ok(Handled::Refused)`)
//! changes nothing but what its effects say (a verifier's fault, a failed task).

use crate::job::{self, CheckOf, VerdictRefusal, DISPUTE_NONCE_SLOT, MAX_ROUNDS};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tessera_protocol::bundle::{
    BatchRecord, DisputeRecord, FinalTile, NodeInfo, NodeSamples, ProofBundle, RoundRecord,
    BUNDLE_FORMAT, BUNDLE_VERSION,
};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::payments::{account, trust_after, Transfer};
use tessera_protocol::rules::{
    self, dispute_opened_transfers, dispute_settled_transfers, dispute_transfers, escrow_transfer,
    release_transfers, verdict_transfers, Collected, NodeOutcome,
};
use tessera_protocol::statements::{
    CheckKind, Decision, DisputeCommitment, JobManifest, JobRequeue, NodeSnapshot, PaymentReceipt,
    RoundCommitment, Signed, TaskNote, Verdict,
};
use tessera_protocol::wire::{
    node_queue, queue_verifier, verifier_queue, BatchResult, Capabilities, RenderTask,
    Requirements, VerdictMessage, VerifyRequest, QUEUE_TASKS, QUEUE_VERIFY, WIRE_VERSION,
};
use tessera_protocol::{Digest, TileRect};
use tessera_verifier::verify::{evidence, Evidence};

/// The policy knobs a job's machine reads (the daemon's `ServiceConfig` carries them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A task's lease lasts this long after the holder's last heartbeat naming it.
    pub lease_ms: u64,
    /// Deliveries of one task (and publications of one verify request) before the job
    /// fails.
    pub max_attempts: u32,
    /// Failures of one node on one job before it is blocked from the job; verdicts of a
    /// verifier that do not follow from the rules before it is barred.
    pub blocklist_after: u32,
    /// A verify request unanswered this long is published again.
    pub verify_timeout_ms: u64,
    /// An open task nobody leased for this long is published again (`u64::MAX`: never,
    /// as `tessera render`, whose one machine has nobody else to give it to).
    pub unleased_timeout_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            lease_ms: 15_000,
            max_attempts: 8,
            blocklist_after: 3,
            verify_timeout_ms: 300_000,
            unleased_timeout_ms: 1_800_000,
        }
    }
}

impl Policy {
    /// A node not heard from for this long is taken as gone for routing.
    pub fn liveness_ms(&self) -> u64 {
        (4 * self.lease_ms).max(30_000)
    }
}

/// Where a job is, as clients see it (the wire spellings are lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Its tasks wait for nodes.
    Queued,
    /// Results are coming in.
    Rendering,
    /// The round is fixed and its checks are out.
    Verifying,
    /// Its client paused it: nothing new is dispatched, leases in flight finish and
    /// delivered work is still verified and paid.
    Paused,
    /// Every tile is verified, paid and assembled.
    Done,
    /// It ended without its frames; the escrow went back to the client.
    Failed,
    /// Its client cancelled it: verified work was paid, the rest of the escrow went back
    /// to the client, and results that come later are never paid.
    Cancelled,
    /// A done job whose client's dispute is being checked.
    Disputed,
}

impl JobState {
    /// Whether a job in this state has ended (done, failed or cancelled), as far as its
    /// render goes: a done job may still run again for a dispute.
    pub fn has_ended(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }

    /// Every state, in lifecycle order (filters, metrics).
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Rendering,
        JobState::Verifying,
        JobState::Paused,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Disputed,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Rendering => "rendering",
            JobState::Verifying => "verifying",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Disputed => "disputed",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job state spelled in no way [`JobState`] knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownJobState(pub String);

impl std::str::FromStr for JobState {
    type Err = UnknownJobState;
    fn from_str(s: &str) -> Result<Self, UnknownJobState> {
        Ok(match s {
            "queued" => JobState::Queued,
            "rendering" => JobState::Rendering,
            "verifying" => JobState::Verifying,
            "paused" => JobState::Paused,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "disputed" => JobState::Disputed,
            other => return Err(UnknownJobState(other.into())),
        })
    }
}

/// A registered node as the machine sees it.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// Its key.
    pub key: PublicKey,
    /// Its name.
    pub name: String,
    /// What it registered.
    pub caps: Capabilities,
    /// Its trust now.
    pub trust: u32,
    /// When it was last heard from.
    pub last_seen_ms: u64,
}

/// A registered verifier as the machine sees it.
#[derive(Clone, Debug)]
pub struct VerifierView {
    /// Its key.
    pub key: PublicKey,
    /// The id of its determinism class, when its capabilities are readable.
    pub class_id: Option<Digest>,
    /// When it was last heard from.
    pub last_seen_ms: u64,
    /// Its verdicts that did not follow from the rules.
    pub faults: u32,
}

/// What a job's machine may read of the farm around it.
pub trait Farm {
    /// Every registered node, in key order.
    fn nodes(&self) -> Vec<NodeView>;
    /// One registered node.
    fn node(&self, key: &PublicKey) -> Option<NodeView> {
        self.nodes().into_iter().find(|n| n.key == *key)
    }
    /// Every registered verifier, in key order.
    fn verifiers(&self) -> Vec<VerifierView>;
    /// An account's balance now (stakes, for snapshots and the slash cap).
    fn balance(&self, account: &str) -> i128;
}

/// The delivered tiles the driver keeps (from [`Effect::KeepResult`]).
pub trait Tiles {
    /// The bytes of tile `tile` of `frame` delivered in `round`.
    fn tile(&self, round: u32, frame: u32, tile: u32) -> Option<Vec<u8>>;
}

/// What an input is handled with.
pub struct Ctx<'a> {
    /// The time, ms since the Unix epoch (virtual in tests and the simulation).
    pub now_ms: u64,
    /// The farm around the job.
    pub farm: &'a dyn Farm,
    /// The tiles delivered so far.
    pub tiles: &'a dyn Tiles,
    /// The coordinator's key: round and dispute commitments, roots and receipts.
    pub key: &'a SecretKey,
}

/// An input to a job.
#[derive(Clone, Debug)]
pub enum Input {
    /// A node's batch result.
    Result(BatchResult),
    /// A verifier's verdict.
    Verdict(VerdictMessage),
    /// A node's heartbeat naming one of the job's tasks (the driver checked the signal's
    /// signature, freshness and that it was not seen before).
    Heartbeat {
        /// The node.
        node: PublicKey,
        /// The task it works on.
        task_id: String,
    },
    /// A node declined one of the job's tasks (checked as for a heartbeat).
    Declined {
        /// The node.
        node: PublicKey,
        /// Which task, on which attempt, and why.
        note: TaskNote,
    },
    /// A node's render of one of the job's tasks failed (checked as for a heartbeat).
    RenderFailed {
        /// The node.
        node: PublicKey,
        /// Which task, on which attempt, and why.
        note: TaskNote,
    },
    /// Time passed: expired leases, unleased tasks, unanswered checks, the challenge
    /// window.
    Tick,
    /// The job's client disputes it (the driver funded the deposit,
    /// [`rules::dispute_deposit`], in the client's account).
    Dispute {
        /// Who asks.
        client: String,
    },
    /// The job's client controls it: cancel, pause, resume, requeue, priority.
    Control {
        /// Who asks.
        client: String,
        /// What.
        action: Control,
    },
}

/// What a client may do to its running job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    /// Stop the job for good: nothing more is dispatched or verified, the work verified so
    /// far is paid by the rules (its hold-backs released, as a cancelled job has no
    /// challenge window), the rest of the escrow goes back to the client, and results
    /// delivered later are acked and never paid.
    Cancel,
    /// Dispatch nothing new (tasks not yet taken are withdrawn); leases in flight finish,
    /// and delivered work is verified and paid as usual.
    Pause,
    /// Undo a pause: every open task nobody holds is published again.
    Resume,
    /// Give failing work a fresh start: every open task gets a full set of attempts again
    /// and goes out once more unless a node holds it, and nodes blocked for failed
    /// deliveries (not for failed verification) may take the job's tasks again.
    Requeue,
    /// The job's priority among the farm's queued work (higher first; 0 by default).
    Priority(i32),
}

impl Control {
    /// The action's name, as the API and CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            Control::Cancel => "cancel",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Requeue => "requeue",
            Control::Priority(_) => "priority",
        }
    }
}

/// Why a client may not control a job now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlRefusal {
    /// Another client's job.
    #[error("job {0} belongs to another client")]
    NotOwner(String),
    /// The job has ended, or is being disputed: there is nothing left to control.
    #[error(
        "job {job} is {state}: only a queued, rendering, verifying or paused job can be {action}"
    )]
    Ended {
        /// The job.
        job: String,
        /// Where it is.
        state: JobState,
        /// What was asked, as a past participle ("cancelled").
        action: &'static str,
    },
    /// A failed job that cannot be requeued (any more).
    #[error("job {job} failed and cannot be requeued: {why}")]
    NotRequeuable {
        /// The job.
        job: String,
        /// Why not.
        why: String,
    },
}

/// What the machine says to do with the delivery that carried an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Its effect is stored (or it was a harmless duplicate): ack it.
    Done,
    /// It is refused for good: park it (dead-letter) with this reason, logged.
    Refused(String),
    /// It lost a race that at-least-once delivery makes normal and counts for nothing:
    /// ack it and log the reason (a result from a node whose task the broker redelivered
    /// to another node, which leased it first).
    Superseded(String),
}

/// What the driver must carry out, in order.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Publish `message` to `queue`.
    Publish {
        /// The queue.
        queue: String,
        /// The message.
        message: Outgoing,
    },
    /// Keep the delivered tiles of an accepted result: the machine keeps only their
    /// commitments, and reads the bytes back through [`Tiles`].
    KeepResult {
        /// Its round.
        round: u32,
        /// The result.
        result: Box<BatchResult>,
    },
    /// Apply this transfer to the ledger as it is (the slash cap is applied already).
    Transfer(Transfer),
    /// A slash that found the stake empty: list it on the job's receipt, move nothing.
    Uncollected(Transfer),
    /// Set a node's trust.
    Trust {
        /// The node.
        node: PublicKey,
        /// Its trust from now on.
        trust: u32,
    },
    /// Count a verdict that does not follow from the rules against its verifier.
    VerifierFault {
        /// The verifier.
        verifier: PublicKey,
    },
    /// A worker was heard from now.
    Seen {
        /// The worker.
        key: PublicKey,
    },
    /// The job moved to this state.
    State(JobState),
    /// The job is done: its proof bundle (the frames are assembled from the kept tiles).
    Finished(Box<ProofBundle>),
    /// The receipt of a finished job is signed again (after the hold-backs' release at
    /// the end of the challenge window).
    Receipt(Box<Signed<PaymentReceipt>>),
    /// The job failed, and why (the escrow's refund is among the transfers before it).
    Failed(String),
    /// A verdict was taken (re-derived and accepted): a first check, an escalated one or
    /// a dispute check, with its decision and each sampled tile's band.
    Verdict(Box<Signed<Verdict>>),
    /// Take back every task message of the job not yet sent (paused or cancelled); copies
    /// already on the broker are refused by [`Job::wants`] when a node asks.
    Withdraw,
    /// The job's priority changed: tasks of the job not yet sent go by this one.
    Priority(i32),
}

/// A message the machine sends.
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A task for the nodes.
    Task(Box<RenderTask>),
    /// A check for the verifiers.
    Check(Box<VerifyRequest>),
}

impl Outgoing {
    /// Its id (the task or request id), which lets consumers drop duplicates.
    pub fn id(&self) -> &str {
        match self {
            Outgoing::Task(t) => &t.task_id,
            Outgoing::Check(r) => &r.request_id,
        }
    }

    /// Its wire bytes (JSON).
    pub fn body(&self) -> Vec<u8> {
        let body = match self {
            Outgoing::Task(t) => serde_json::to_vec(t),
            Outgoing::Check(r) => serde_json::to_vec(r),
        };
        // Both are plain data (strings, numbers, byte arrays as hex): serde_json cannot
        // fail on them.
        body.unwrap_or_default()
    }
}

/// Why an input could not be handled: the job's own records contradict each other, or a
/// rule found inputs the machine should never have let in. The driver drops this copy of
/// the job.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A record the machine needs is missing or does not fit.
    #[error("job {job}: {what}")]
    Inconsistent {
        /// The job (hex).
        job: String,
        /// What does not fit.
        what: String,
    },
}

/// Why a client may not dispute a job now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisputeRefusal {
    /// Another client's job.
    #[error("job {0} belongs to another client")]
    NotOwner(String),
    /// Only a done job can be disputed.
    #[error("job {job} is {state}: only a done job can be disputed")]
    NotDone {
        /// The job.
        job: String,
        /// Where it is.
        state: JobState,
    },
    /// One dispute per job.
    #[error("job {0} has been disputed already")]
    Again(String),
    /// The hold-backs are released.
    #[error("job {0}: the challenge window is closed (hold-backs released)")]
    WindowClosed(String),
}

/// A task as the machine holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    /// Whether it waits for a result.
    pub open: bool,
    /// Who holds its lease.
    pub holder: Option<PublicKey>,
    /// Its attempt (publications so far less one).
    pub attempt: u32,
    /// Its body as it goes out now (attempt and blocked nodes included).
    pub body: RenderTask,
}

/// Who may render a task now ([`Job::wants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskClaim {
    /// Any node may: the task is open, nobody holds its lease and the job is not paused.
    pub free: bool,
    /// The lease holder of an open task, who may render it even while the job is paused
    /// (a lease in flight finishes).
    pub holder: Option<PublicKey>,
}

impl TaskClaim {
    /// Whether `node` may render the task now.
    pub fn wants(&self, node: &PublicKey) -> bool {
        self.free || self.holder == Some(*node)
    }
}

/// One check of one node's round, as the machine holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckView {
    /// The round.
    pub round: u32,
    /// The node.
    pub node: PublicKey,
    /// Which check.
    pub check: CheckKind,
    /// Whether it waits for a verdict.
    pub open: bool,
}

/// How a job starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSetup {
    /// Tiles per task.
    pub batch_size: u32,
    /// What a node must have to take the job's tasks.
    pub requirements: Requirements,
    /// Nodes need at least this trust (the tier's minimum, or 0).
    pub min_trust: u32,
    /// Where the scene came from, for the bundle.
    pub scene_hint: Option<String>,
}

/// A job's secret nonces: one per round, then the dispute nonce. The signed manifest
/// carries their commitments ([`Nonces::commitments`]) before anything is dispatched.
#[derive(Clone, Serialize, Deserialize)]
pub struct Nonces(#[serde(with = "tessera_protocol::hexser::vec32")] Vec<Digest>);

impl Nonces {
    /// Fresh nonces from `rng` (the OS's in the daemon, a seeded one in the simulation).
    pub fn draw(rng: &mut dyn RngCore) -> Self {
        Nonces(
            (0..=DISPUTE_NONCE_SLOT)
                .map(|_| {
                    let mut n = [0u8; 32];
                    rng.fill_bytes(&mut n);
                    n
                })
                .collect(),
        )
    }

    /// These nonces, as the daemon stores them.
    pub fn from_vec(nonces: Vec<Digest>) -> Self {
        Nonces(nonces)
    }

    /// The manifest's commitments: (per round, dispute).
    pub fn commitments(&self) -> (Vec<Digest>, Digest) {
        job::nonce_commitments(&self.0)
    }

    fn get(&self, slot: u32) -> Option<Digest> {
        self.0.get(slot as usize).copied()
    }
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonces({} secret)", self.0.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum TaskState {
    Open,
    Done,
    Void,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Task {
    task: RenderTask,
    state: TaskState,
    holder: Option<PublicKey>,
    lease_until_ms: u64,
    /// Publications so far less one (the attempt the task body names).
    attempts: u32,
    /// When it was last published.
    published_ms: u64,
    /// The attempt its client's last requeue started from: it fails the job after
    /// `max_attempts` more.
    #[serde(default)]
    attempts_base: u32,
    /// (attempt, node, failed?) notes taken.
    notes: BTreeSet<(u32, PublicKey, bool)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Request {
    round: u32,
    node: PublicKey,
    check: CheckKind,
    /// The bundle's sample record (without the delivered bytes, filled at the end); the
    /// request itself is rebuilt from the round when it is needed again.
    record: NodeSamples,
    open: bool,
    queue: String,
    /// The publication that was the queue's first.
    queue_since: u32,
    /// Publications so far less one.
    attempts: u32,
    sent_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Round {
    /// Accepted batches, in batch-id order.
    batches: Vec<BatchRecord>,
    commitment: Option<Signed<RoundCommitment>>,
    verdicts: Vec<Signed<Verdict>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Dispute {
    commitment: Signed<DisputeCommitment>,
    #[serde(with = "tessera_protocol::hexser::arr")]
    nonce: Digest,
    lost: Vec<PublicKey>,
}

/// One job, from submission to its end. It serializes (serde) to what the daemon keeps
/// between inputs; the pending effects and the policy are not part of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    manifest: Signed<JobManifest>,
    job: String,
    nonces: Nonces,
    layout: Vec<TileRect>,
    setup: JobSetup,
    #[serde(skip)]
    policy: Policy,
    state: JobState,
    round: u32,
    next_batch_id: u32,
    blocked: Vec<PublicKey>,
    failures: BTreeMap<PublicKey, u32>,
    tasks: BTreeMap<String, Task>,
    rounds: Vec<Round>,
    requests: BTreeMap<String, Request>,
    transfers: Vec<Transfer>,
    uncollected: Vec<Transfer>,
    tiles_verified: u32,
    error: Option<String>,
    release_at_ms: Option<u64>,
    dispute: Option<Dispute>,
    /// Paused by its client (the state clients see is [`JobState::Paused`]).
    #[serde(default)]
    paused: bool,
    /// Its priority among the farm's queued work.
    #[serde(default)]
    priority: i32,
    /// Nodes blocked for failed verification (dispute included): a requeue does not
    /// lift these blocks.
    #[serde(default)]
    convicted: Vec<PublicKey>,
    /// What the job's failure stopped (while its client may still requeue it).
    #[serde(default)]
    stopped: Option<Stopped>,
    /// Its client's requeues after failures, signed (the proof bundle lists them).
    #[serde(default)]
    requeues: Vec<Signed<JobRequeue>>,
    #[serde(skip)]
    effects: VecDeque<Effect>,
}

/// What a failure stopped, kept so that its client's requeue starts exactly that again.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stopped {
    /// The state the job failed in.
    state: JobState,
    /// The round it failed in.
    round: u32,
    /// Tasks that were open.
    tasks: Vec<String>,
    /// Checks that were open.
    requests: Vec<String>,
    /// Tiles a new round was to render (a failure between rounds).
    pending: Vec<(u32, u32)>,
    /// What the failure refunded (the escrow left).
    refunded: u64,
}

/// A job's progress, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Where it is.
    pub state: JobState,
    /// The current round.
    pub round: u32,
    /// Tiles in the job.
    pub tiles_total: u32,
    /// Tiles delivered in the current round plus tiles accepted before (all of them once
    /// the job is done).
    pub tiles_rendered: u32,
    /// Tiles accepted.
    pub tiles_verified: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// When its hold-backs are released (a done job inside its challenge window, or a
    /// failed one inside the window in which its client may requeue it).
    pub release_at_ms: Option<u64>,
}

impl Job {
    /// Start a job: the escrow moves from the client's account (which the driver funded
    /// with [`rules::job_price`]) and every tile is dispatched in round 0.
    pub fn start(
        manifest: Signed<JobManifest>,
        nonces: Nonces,
        setup: JobSetup,
        policy: Policy,
        ctx: &Ctx<'_>,
    ) -> Self {
        let m = &manifest.statement;
        let layout = tessera_verifier::checks::layout(m);
        let job = hex::encode(m.job_id);
        let mut this = Job {
            job,
            nonces,
            setup,
            policy,
            state: JobState::Queued,
            round: 0,
            next_batch_id: 0,
            blocked: Vec::new(),
            failures: BTreeMap::new(),
            tasks: BTreeMap::new(),
            rounds: vec![Round::default()],
            requests: BTreeMap::new(),
            transfers: Vec::new(),
            uncollected: Vec::new(),
            tiles_verified: 0,
            error: None,
            release_at_ms: None,
            dispute: None,
            paused: false,
            priority: 0,
            convicted: Vec::new(),
            stopped: None,
            requeues: Vec::new(),
            effects: VecDeque::new(),
            layout,
            manifest,
        };
        this.apply(escrow_transfer(&this.manifest.statement), ctx);
        let pending: Vec<(u32, u32)> = (this.manifest.statement.frame_start
            ..=this.manifest.statement.frame_end)
            .flat_map(|f| (0..this.layout.len() as u32).map(move |t| (f, t)))
            .collect();
        this.dispatch(&pending, ctx);
        this
    }

    /// The signed manifest.
    pub fn manifest(&self) -> &Signed<JobManifest> {
        &self.manifest
    }

    /// Where the job is, as its client sees it: [`JobState::Paused`] while a paused job
    /// is still running.
    pub fn state(&self) -> JobState {
        if self.paused && !self.state.has_ended() && self.state != JobState::Disputed {
            JobState::Paused
        } else {
            self.state
        }
    }

    /// Its priority among the farm's queued work (higher first).
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Whether `node` should render task `task_id` now: the task is open and `node` holds
    /// its lease, or nobody does and the job is not paused (a lease in flight finishes). A
    /// node asks before it renders a task it took from a queue, so that the copies of a
    /// paused or cancelled job's tasks still on the broker are not rendered for nothing.
    pub fn wants(&self, task_id: &str, node: &PublicKey) -> bool {
        self.tasks
            .get(task_id)
            .is_some_and(|t| self.claim(t).wants(node))
    }

    /// Per task, in task id order, what [`Self::wants`] answers from. The daemon's store
    /// keeps these beside the machine, so that a node's question reads one row instead of
    /// the whole job.
    pub fn task_claims(&self) -> impl Iterator<Item = (&str, TaskClaim)> + '_ {
        self.tasks
            .iter()
            .map(|(id, t)| (id.as_str(), self.claim(t)))
    }

    fn claim(&self, t: &Task) -> TaskClaim {
        let open = t.state == TaskState::Open;
        TaskClaim {
            free: open && t.holder.is_none() && !self.paused,
            holder: t.holder.filter(|_| open),
        }
    }

    /// Its progress.
    pub fn progress(&self) -> Progress {
        let tiles_total = self.layout.len() as u32 * self.manifest.statement.n_frames();
        let rendered_now: u32 = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Done && t.task.round == self.round)
            .map(|t| t.task.tiles.len() as u32)
            .sum();
        Progress {
            state: self.state(),
            round: self.round,
            tiles_total,
            tiles_rendered: if self.state == JobState::Done {
                tiles_total
            } else {
                (self.tiles_verified + rendered_now).min(tiles_total)
            },
            tiles_verified: self.tiles_verified,
            error: self.error.clone(),
            release_at_ms: self.release_at_ms,
        }
    }

    /// A job read back from what the daemon kept ([`serde`]), under `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Set where the scene came from (for the bundle).
    pub fn set_scene_hint(&mut self, hint: &str) {
        self.setup.scene_hint = Some(hint.to_string());
    }

    /// One of the job's tasks.
    pub fn task(&self, task_id: &str) -> Option<TaskView> {
        self.tasks.get(task_id).map(|t| TaskView {
            open: t.state == TaskState::Open,
            holder: t.holder,
            attempt: t.attempts,
            body: t.task.clone(),
        })
    }

    /// The nodes holding leases on the job's open tasks, one entry per task.
    pub fn lease_holders(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.tasks
            .values()
            .filter(|t| t.state == TaskState::Open)
            .filter_map(|t| t.holder)
    }

    /// Whether `client` may dispute the job at `now_ms`: its own job, done, not disputed
    /// before, inside its challenge window.
    pub fn may_dispute(&self, client: &str, now_ms: u64) -> Result<(), DisputeRefusal> {
        if self.manifest.statement.client != client {
            return Err(DisputeRefusal::NotOwner(self.job.clone()));
        }
        if self.state != JobState::Done {
            return Err(DisputeRefusal::NotDone {
                job: self.job.clone(),
                state: self.state,
            });
        }
        if self.dispute.is_some() {
            return Err(DisputeRefusal::Again(self.job.clone()));
        }
        if self.release_at_ms.is_none_or(|t| t <= now_ms) {
            return Err(DisputeRefusal::WindowClosed(self.job.clone()));
        }
        Ok(())
    }

    /// Every verdict the job took, round by round.
    pub fn verdicts(&self) -> impl Iterator<Item = &Signed<Verdict>> + '_ {
        self.rounds.iter().flat_map(|r| r.verdicts.iter())
    }

    /// The signed commitments of the rounds fixed so far.
    pub fn commitments(&self) -> impl Iterator<Item = &Signed<RoundCommitment>> + '_ {
        self.rounds.iter().filter_map(|r| r.commitment.as_ref())
    }

    /// Every check sent, open or answered.
    pub fn checks(&self) -> Vec<CheckView> {
        self.requests
            .values()
            .map(|r| CheckView {
                round: r.round,
                node: r.node,
                check: r.check,
                open: r.open,
            })
            .collect()
    }

    /// Nodes blocked from the job.
    pub fn blocked(&self) -> &[PublicKey] {
        &self.blocked
    }

    /// The job's transfers so far, in order (what its receipt lists).
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// The job's receipt now: its transfers and uncollected slashes.
    pub fn receipt(&self) -> PaymentReceipt {
        PaymentReceipt {
            job_id: self.manifest.statement.job_id,
            transfers: self.transfers.clone(),
            uncollected: self.uncollected.clone(),
        }
    }

    /// Whether the job needs no further input: cancelled, or done or failed with its
    /// window closed (a failed job's client may requeue it inside the window) and no
    /// dispute open.
    pub fn is_over(&self) -> bool {
        match self.state {
            JobState::Cancelled => true,
            JobState::Done | JobState::Failed => self.release_at_ms.is_none(),
            _ => false,
        }
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Handle one input.
    pub fn handle(&mut self, input: Input, ctx: &Ctx<'_>) -> Result<Handled, MachineError> {
        match input {
            Input::Result(res) => self.handle_result(res, ctx),
            Input::Verdict(msg) => self.handle_verdict(msg, ctx),
            Input::Heartbeat { node, task_id } => Ok(self.handle_heartbeat(&node, &task_id, ctx)),
            Input::Declined { node, note } => Ok(self.handle_declined(&node, &note, ctx)),
            Input::RenderFailed { node, note } => self.handle_render_failed(&node, &note, ctx),
            Input::Tick => self.handle_tick(ctx).map(|_| Handled::Done),
            Input::Dispute { client } => self.handle_dispute(&client, ctx),
            Input::Control { client, action } => Ok(self.handle_control(&client, action, ctx)),
        }
    }

    fn inconsistent(&self, what: impl Into<String>) -> MachineError {
        MachineError::Inconsistent {
            job: self.job.clone(),
            what: what.into(),
        }
    }

    fn set_state(&mut self, state: JobState) {
        let before = self.state();
        self.state = state;
        self.state_changed(before);
    }

    /// Tell the driver the state clients see, when it is no longer `before`.
    fn state_changed(&mut self, before: JobState) {
        let now = self.state();
        if now != before {
            self.effects.push_back(Effect::State(now));
        }
    }

    /// Apply one transfer the rules call for, under the slash cap.
    fn apply(&mut self, t: Transfer, ctx: &Ctx<'_>) {
        match rules::collect(&t, ctx.farm.balance(&t.from)) {
            Collected::Apply(t) => {
                self.transfers.push(t.clone());
                self.effects.push_back(Effect::Transfer(t));
            }
            Collected::Uncollected(t) => {
                self.uncollected.push(t.clone());
                self.effects.push_back(Effect::Uncollected(t));
            }
        }
    }

    // --- dispatch and eligibility -----------------------------------------------------

    /// Cut `pending` tiles into tasks of the current round and publish them.
    fn dispatch(&mut self, pending: &[(u32, u32)], ctx: &Ctx<'_>) {
        let tasks = job::plan_tasks(
            &self.manifest.statement,
            &self.layout,
            pending,
            self.setup.batch_size,
            self.round,
            self.next_batch_id,
            &self.blocked,
            &self.setup.requirements,
        );
        self.next_batch_id += tasks.len() as u32;
        let eligible = self.eligible_nodes(ctx, None, true);
        for task in tasks {
            self.publish_task(&task, &eligible);
            self.tasks.insert(
                task.task_id.clone(),
                Task {
                    task,
                    state: TaskState::Open,
                    holder: None,
                    lease_until_ms: 0,
                    attempts: 0,
                    published_ms: ctx.now_ms,
                    attempts_base: 0,
                    notes: BTreeSet::new(),
                },
            );
        }
        self.set_state(JobState::Queued);
    }

    /// Publish a task where an eligible node will find it: the shared queue, or, for a job
    /// with requirements, a minimum trust or blocked nodes, one eligible node's own queue
    /// (spread by batch id; none eligible now: it waits for a tick).
    fn publish_task(&mut self, task: &RenderTask, eligible: &[PublicKey]) {
        if self.paused {
            // Resume publishes it.
            return;
        }
        let queue = if self.setup.requirements.is_empty()
            && self.blocked.is_empty()
            && self.setup.min_trust == 0
        {
            Some(QUEUE_TASKS.to_string())
        } else {
            pick(eligible, task.batch_id).map(|n| node_queue(&n))
        };
        if let Some(queue) = queue {
            self.effects.push_back(Effect::Publish {
                queue,
                message: Outgoing::Task(Box::new(task.clone())),
            });
        }
    }

    /// Why `node` may not take the job's tasks, if it may not: blocked, not registered,
    /// capabilities short of the requirements, or less trust than the tier needs.
    fn ineligible(&self, node: &PublicKey, ctx: &Ctx<'_>) -> Option<String> {
        if self.blocked.contains(node) {
            return Some(format!("node {} is blocked on this job", node.short()));
        }
        let Some(n) = ctx.farm.node(node) else {
            return Some(format!("{} is not a registered node", node.short()));
        };
        if let Err(why) = n.caps.meets(&self.setup.requirements) {
            return Some(format!(
                "node {} does not meet the job's requirements: {why}",
                node.short()
            ));
        }
        if n.trust < self.setup.min_trust {
            return Some(format!(
                "node {} has trust {}, the job's tier needs {}",
                node.short(),
                n.trust,
                self.setup.min_trust
            ));
        }
        None
    }

    /// Nodes that may take the job's tasks, except `except`, in key order; with `live`,
    /// only those heard from within the liveness window when there are any.
    fn eligible_nodes(
        &self,
        ctx: &Ctx<'_>,
        except: Option<&PublicKey>,
        live: bool,
    ) -> Vec<PublicKey> {
        let all: Vec<NodeView> = ctx
            .farm
            .nodes()
            .into_iter()
            .filter(|n| Some(&n.key) != except && self.ineligible(&n.key, ctx).is_none())
            .collect();
        let fresh: Vec<PublicKey> = all
            .iter()
            .filter(|n| {
                live && n.last_seen_ms.saturating_add(self.policy.liveness_ms()) >= ctx.now_ms
            })
            .map(|n| n.key)
            .collect();
        if fresh.is_empty() {
            all.into_iter().map(|n| n.key).collect()
        } else {
            fresh
        }
    }

    // --- results ----------------------------------------------------------------------

    fn handle_result(&mut self, res: BatchResult, ctx: &Ctx<'_>) -> Result<Handled, MachineError> {
        if res.version != WIRE_VERSION {
            return Ok(Handled::Refused(format!(
                "result for task {:?}: wire version {}, this coordinator speaks {WIRE_VERSION}",
                res.task_id, res.version
            )));
        }
        let Some(task) = self.tasks.get(&res.task_id) else {
            return Ok(Handled::Refused(format!(
                "result for unknown task {:?}",
                res.task_id
            )));
        };
        if task.state != TaskState::Open {
            tracing::debug!(task = %res.task_id, "late or repeated result ignored");
            return Ok(Handled::Done);
        }
        let signer = res.batch.signed.statement.node;
        let known = ctx.farm.node(&signer).is_some();
        // Only a result the node really signed may count against it: anyone who can
        // publish could otherwise get failures counted against (and block) any node.
        let authentic =
            known && res.batch.signed.signer == signer && res.batch.signed.verify().is_ok();
        // Only the lease holder may deliver, or, while nobody holds the lease, a node that
        // could have taken the task; anything else touches nothing.
        if let Some(holder) = task.holder {
            if holder != signer {
                let reason = format!(
                    "result for task {} from node {}, which does not hold its lease",
                    res.task_id,
                    signer.short()
                );
                return Ok(if authentic {
                    Handled::Superseded(reason)
                } else {
                    Handled::Refused(reason)
                });
            }
        }
        if authentic {
            if let Some(why) = self.ineligible(&signer, ctx) {
                return Ok(Handled::Refused(format!(
                    "result for task {}: {why}",
                    res.task_id
                )));
            }
        }
        let body = task.task.clone();
        if let Err(reason) = job::check_result(
            &res,
            &body,
            &self.manifest.statement,
            &self.layout,
            known,
            &self.blocked,
        ) {
            // The node that may deliver the task delivered something unusable: count it
            // against the node and give the task to someone else, so the job finishes.
            if authentic {
                self.fail_task(&res.task_id, Some(signer), ctx);
            }
            return Ok(Handled::Refused(reason.to_string()));
        }
        let round = body.round;
        if let Some(t) = self.tasks.get_mut(&res.task_id) {
            t.state = TaskState::Done;
        }
        let rec = &mut self.rounds[round as usize];
        let at = rec
            .batches
            .partition_point(|b| b.signed.statement.batch_id < body.batch_id);
        rec.batches.insert(at, res.batch.clone());
        self.effects.push_back(Effect::Seen { key: signer });
        if self.state == JobState::Queued {
            self.set_state(JobState::Rendering);
        }
        let round_done = round == self.round
            && !self
                .tasks
                .values()
                .any(|t| t.state == TaskState::Open && t.task.round == round);
        // The round's checks read the tiles of the result that closed it, which the
        // driver keeps only once this input is handled.
        let fresh = round_done.then(|| (res.batch.signed.statement.frame, res.tiles.clone()));
        self.effects.push_back(Effect::KeepResult {
            round,
            result: Box::new(res),
        });
        if let Some((fresh_frame, tiles)) = fresh {
            self.close_round(ctx, &|frame, tile| {
                (frame == fresh_frame)
                    .then(|| tiles.iter().find(|t| t.tile_index == tile))
                    .flatten()
                    .map(|t| t.bytes.clone())
            })?;
        }
        Ok(Handled::Done)
    }

    /// Every task of the round is in: fix the round, reveal its nonce, sample each node
    /// and publish the checks. `fresh` reads tiles of the result that closed the round,
    /// which the driver keeps only after this input.
    fn close_round(
        &mut self,
        ctx: &Ctx<'_>,
        fresh: &dyn Fn(u32, u32) -> Option<Vec<u8>>,
    ) -> Result<(), MachineError> {
        let round = self.round;
        let batches = self.rounds[round as usize].batches.clone();
        let nodes: BTreeSet<PublicKey> = batches.iter().map(|b| b.signed.statement.node).collect();
        let snapshots = nodes
            .iter()
            .map(|n| NodeSnapshot {
                node: *n,
                trust: ctx.farm.node(n).map_or(0, |v| v.trust),
                stake: u64::try_from(ctx.farm.balance(&account::stake(n)).max(0))
                    .unwrap_or(u64::MAX),
            })
            .collect();
        let commitment = job::commit_round(
            &self.manifest.statement,
            round,
            &batches,
            snapshots,
            ctx.key,
        )
        .map_err(|e| self.inconsistent(format!("round {round}: {e}")))?;
        self.rounds[round as usize].commitment = Some(commitment);
        for n in &nodes {
            self.queue_check(round, n, CheckKind::FIRST, None, ctx, fresh)?;
        }
        self.set_state(JobState::Verifying);
        tracing::info!(job = %&self.job[..12], round, nodes = nodes.len(), "round fixed, nonce revealed, verification requested");
        Ok(())
    }

    /// Build and publish one check of `node` in `round`: the shared `verify` queue, or
    /// `verifier`'s own (a second verifier for an escalated check).
    fn queue_check(
        &mut self,
        round: u32,
        node: &PublicKey,
        kind: CheckKind,
        verifier: Option<PublicKey>,
        ctx: &Ctx<'_>,
        fresh: &dyn Fn(u32, u32) -> Option<Vec<u8>>,
    ) -> Result<(), MachineError> {
        let (req, mut record) = self.build_request(round, node, kind, ctx, fresh)?;
        record.delivered.clear();
        let queue = verifier.map_or_else(|| QUEUE_VERIFY.to_string(), |v| verifier_queue(&v));
        self.requests.insert(
            req.request_id.clone(),
            Request {
                round,
                node: *node,
                check: kind,
                record,
                open: true,
                queue: queue.clone(),
                queue_since: 0,
                attempts: 0,
                sent_ms: ctx.now_ms,
            },
        );
        self.effects.push_back(Effect::Publish {
            queue,
            message: Outgoing::Check(Box::new(req)),
        });
        Ok(())
    }

    /// The verify request of check `kind` of `node` in `round`, and its sample record:
    /// a pure function of the round, the nonce (the round's, or the dispute's) and the
    /// delivered tiles, so a request is rebuilt, never stored, when it is needed again.
    fn build_request(
        &self,
        round: u32,
        node: &PublicKey,
        kind: CheckKind,
        ctx: &Ctx<'_>,
        fresh: &dyn Fn(u32, u32) -> Option<Vec<u8>>,
    ) -> Result<(VerifyRequest, NodeSamples), MachineError> {
        let rec = &self.rounds[round as usize];
        let commitment = rec
            .commitment
            .as_ref()
            .ok_or_else(|| self.inconsistent(format!("round {round} is not fixed")))?;
        let (nonce, dispute) = if kind.dispute {
            let d = self
                .dispute
                .as_ref()
                .ok_or_else(|| self.inconsistent("a dispute check without a dispute"))?;
            (d.nonce, Some(&d.commitment))
        } else {
            let n = self
                .nonces
                .get(round)
                .ok_or_else(|| self.inconsistent(format!("no nonce for round {round}")))?;
            (n, None)
        };
        let mut missing = None;
        let built = job::verify_request(
            &self.manifest,
            commitment,
            &rec.batches,
            nonce,
            node,
            CheckOf {
                kind,
                dispute,
                first: self.first_verdict(round, node, kind),
            },
            &mut |frame, tile| {
                fresh(frame, tile)
                    .or_else(|| ctx.tiles.tile(round, frame, tile))
                    .unwrap_or_else(|| {
                        missing = Some((frame, tile));
                        Vec::new()
                    })
            },
        )
        .map_err(|e| self.inconsistent(format!("round {round}: {e}")))?;
        if let Some((frame, tile)) = missing {
            return Err(self.inconsistent(format!(
                "round {round} frame {frame} tile {tile}: delivered bytes are missing"
            )));
        }
        Ok(built)
    }

    /// The verdict of the check that `kind` escalates, for `node` in `round` (the request
    /// of an escalated check carries it); `None` for a check that is not escalated.
    fn first_verdict(
        &self,
        round: u32,
        node: &PublicKey,
        kind: CheckKind,
    ) -> Option<&Signed<Verdict>> {
        if !kind.escalated {
            return None;
        }
        let first = CheckKind {
            escalated: false,
            ..kind
        };
        self.rounds[round as usize]
            .verdicts
            .iter()
            .find(|v| v.statement.node == *node && v.statement.check == first)
    }

    /// The request `id` as it was sent.
    fn sent_request(&self, id: &str, ctx: &Ctx<'_>) -> Result<VerifyRequest, MachineError> {
        let r = self
            .requests
            .get(id)
            .ok_or_else(|| self.inconsistent(format!("no request {id}")))?;
        Ok(self
            .build_request(r.round, &r.node, r.check, ctx, &|_, _| None)?
            .0)
    }

    // --- verdicts ---------------------------------------------------------------------

    fn handle_verdict(
        &mut self,
        msg: VerdictMessage,
        ctx: &Ctx<'_>,
    ) -> Result<Handled, MachineError> {
        if msg.version != WIRE_VERSION {
            return Ok(Handled::Refused(format!(
                "verdict for request {:?}: wire version {}, this coordinator speaks {WIRE_VERSION}",
                msg.request_id, msg.version
            )));
        }
        let Some(req) = self.requests.get(&msg.request_id) else {
            return Ok(Handled::Refused(format!(
                "verdict for unknown request {:?}",
                msg.request_id
            )));
        };
        if !req.open {
            return Ok(Handled::Done);
        }
        if matches!(self.state, JobState::Failed | JobState::Cancelled) {
            // A failed or cancelled job's checks change nothing.
            tracing::info!(request = %msg.request_id, state = %self.state, "verdict for a job that ended: recorded nowhere, changes nothing");
            if let Some(r) = self.requests.get_mut(&msg.request_id) {
                r.open = false;
            }
            return Ok(Handled::Done);
        }
        let signer = msg.verdict.signer;
        let faults = ctx
            .farm
            .verifiers()
            .iter()
            .find(|v| v.key == signer)
            .map_or(0, |v| v.faults);
        if faults >= self.policy.blocklist_after {
            return Ok(Handled::Refused(format!(
                "verdict for request {} from verifier {}, barred after {faults} verdicts that did not follow from the rules",
                msg.request_id,
                signer.short()
            )));
        }
        let (round, node, check, queue) = (req.round, req.node, req.check, req.queue.clone());
        let sent = self.sent_request(&msg.request_id, ctx)?;
        if let Err(reason) = job::check_verdict(&msg, &sent) {
            // Signed by one of the job's verifiers, yet not what the rules give: counted
            // against that verifier, and the request goes out again at once so that an
            // honest verifier can answer it. Nothing is paid, slashed or trusted on it.
            let by_a_verifier = !matches!(
                reason,
                VerdictRefusal::Signature(_) | VerdictRefusal::UnknownVerifier(_)
            );
            if by_a_verifier {
                let publish = Effect::Publish {
                    queue,
                    message: Outgoing::Check(Box::new(sent)),
                };
                tracing::warn!(request = %msg.request_id, verifier = %signer.short(), "verdict refused and counted against its verifier: {reason}");
                self.effects
                    .push_back(Effect::VerifierFault { verifier: signer });
                self.effects.push_back(publish);
            }
            return Ok(Handled::Refused(reason.to_string()));
        }
        if let Some(r) = self.requests.get_mut(&msg.request_id) {
            r.open = false;
        }
        self.rounds[round as usize]
            .verdicts
            .push(msg.verdict.clone());
        self.effects.push_back(Effect::Seen { key: signer });
        self.effects
            .push_back(Effect::Verdict(Box::new(msg.verdict.clone())));
        let decision = msg.verdict.statement.decision;
        if decision == Decision::Escalate {
            tracing::warn!(job = %&self.job[..12], node = %node.short(), round, check = check.label(), "the sampled blocks did not pass: escalated to a second check");
            let second = self.second_verifier(round, &msg.verdict, &[], ctx);
            self.queue_check(round, &node, check.escalate(), second, ctx, &|_, _| None)?;
        } else if check.dispute {
            self.settle_dispute_check(round, &node, &msg.verdict, ctx)?;
        } else {
            self.settle(round, &node, &msg.verdict, ctx)?;
            let round_done = round == self.round
                && !self
                    .requests
                    .values()
                    .any(|r| r.round == round && !r.check.dispute && r.open);
            if round_done {
                self.advance(ctx)?;
            }
        }
        Ok(Handled::Done)
    }

    /// The verifier for an escalated check after `first` judged in `round`. When `first`'s
    /// verifier is of the node's class and found other bytes than the node's
    /// ([`Evidence::SameClassMismatch`]), one of that same class, whose re-render can
    /// corroborate the first one; otherwise one of another determinism class. Else
    /// another verifier, else none (the shared queue). Verifiers in `avoid` are not
    /// chosen, nor barred ones; among equals the one heard from last, then the first in
    /// key order.
    fn second_verifier(
        &self,
        round: u32,
        first: &Signed<Verdict>,
        avoid: &[PublicKey],
        ctx: &Ctx<'_>,
    ) -> Option<PublicKey> {
        let same_class_wanted = evidence(
            &self.manifest.statement,
            &self.rounds[round as usize].batches,
            &first.signer,
            &first.statement,
            None,
        ) == Evidence::SameClassMismatch;
        let mut best: Option<(bool, u64, PublicKey)> = None;
        for v in ctx.farm.verifiers() {
            if v.key == first.signer
                || avoid.contains(&v.key)
                || !self.manifest.statement.verifiers.contains(&v.key)
                || v.faults >= self.policy.blocklist_after
            {
                continue;
            }
            let wanted = v
                .class_id
                .is_some_and(|c| (c == first.statement.verifier_class_id) == same_class_wanted);
            if best.is_none_or(|(o, seen, _)| (wanted, v.last_seen_ms) > (o, seen)) {
                best = Some((wanted, v.last_seen_ms, v.key));
            }
        }
        best.map(|(_, _, key)| key)
    }

    /// The outcome of `node`'s work in `round` under `decision`, with its stake from the
    /// round's snapshot.
    fn outcome(
        &self,
        round: u32,
        node: &PublicKey,
        decision: Decision,
    ) -> Result<(NodeOutcome, NodeSnapshot), MachineError> {
        let rec = &self.rounds[round as usize];
        let commitment = rec
            .commitment
            .as_ref()
            .ok_or_else(|| self.inconsistent(format!("round {round} is not fixed")))?;
        let snap = NodeSnapshot::of(&commitment.statement.nodes, node);
        let tiles = tessera_verifier::checks::node_leaves(&rec.batches, node)
            .iter()
            .map(|&(bi, pos)| rec.batches[bi].tiles[pos].rect)
            .collect();
        Ok((
            NodeOutcome {
                round,
                node: *node,
                decision,
                tiles,
                stake_before: snap.stake,
            },
            snap,
        ))
    }

    /// Pay or slash `node` for `round` on its final verdict, set its trust, and block it
    /// from the job unless it passed.
    fn settle(
        &mut self,
        round: u32,
        node: &PublicKey,
        verdict: &Signed<Verdict>,
        ctx: &Ctx<'_>,
    ) -> Result<(), MachineError> {
        let decision = verdict.statement.decision;
        let (outcome, snap) = self.outcome(round, node, decision)?;
        for t in verdict_transfers(
            &self.manifest.statement,
            &outcome,
            self.manifest.statement.slash_pct,
        ) {
            self.apply(t, ctx);
        }
        self.effects.push_back(Effect::Trust {
            node: *node,
            trust: trust_after(snap.trust, decision),
        });
        if decision == Decision::Pass {
            self.tiles_verified += outcome.tiles.len() as u32;
            return Ok(());
        }
        if decision == Decision::Fail {
            tracing::warn!(job = %&self.job[..12], node = %node.short(), round, "verification failed: node unpaid, slashed, its tiles requeued");
        } else {
            tracing::warn!(job = %&self.job[..12], node = %node.short(), round, "verification inconclusive after escalation: node neither paid nor slashed, its tiles requeued");
        }
        if !self.blocked.contains(node) {
            self.blocked.push(*node);
        }
        if !self.convicted.contains(node) {
            self.convicted.push(*node);
        }
        Ok(())
    }

    /// Every final verdict of the round is in: re-render the tiles of nodes that failed
    /// or ended inconclusive in a new round, or finish the job, or fail it when no round
    /// or node is left.
    fn advance(&mut self, ctx: &Ctx<'_>) -> Result<(), MachineError> {
        let rec = &self.rounds[self.round as usize];
        let mut pending = Vec::new();
        for v in &rec.verdicts {
            let d = v.statement.decision;
            if !v.statement.check.dispute && matches!(d, Decision::Fail | Decision::Inconclusive) {
                pending.extend(job::committed_tiles(&rec.batches, &v.statement.node));
            }
        }
        pending.sort_unstable();
        pending.dedup();
        if pending.is_empty() {
            return self.finalize(ctx);
        }
        self.next_round(
            pending,
            |n| format!("{n} tiles still failed verification after {MAX_ROUNDS} rounds"),
            ctx,
        )
    }

    /// Render `pending` again in a new round, or fail the job (`why_last` when no round
    /// is left) when it cannot be.
    fn next_round(
        &mut self,
        pending: Vec<(u32, u32)>,
        why_last: impl Fn(usize) -> String,
        ctx: &Ctx<'_>,
    ) -> Result<(), MachineError> {
        if self.round + 1 >= MAX_ROUNDS {
            self.fail_job(why_last(pending.len()), pending, ctx);
            return Ok(());
        }
        if self.eligible_nodes(ctx, None, false).is_empty() {
            let why = format!(
                "{} tiles need re-rendering but every eligible node is blocked",
                pending.len()
            );
            self.fail_job(why, pending, ctx);
            return Ok(());
        }
        self.round += 1;
        self.rounds.push(Round::default());
        self.dispatch(&pending, ctx);
        self.set_state(JobState::Rendering);
        Ok(())
    }

    /// End the job without its frames: refund what is left in escrow and void its open
    /// tasks and checks. The hold-backs of work that passed wait for the challenge
    /// window, inside which its client may requeue the job (`pending`: the tiles a new
    /// round was to render, when it failed between rounds).
    fn fail_job(&mut self, why: String, pending: Vec<(u32, u32)>, ctx: &Ctx<'_>) {
        let stopped = Stopped {
            state: self.state,
            round: self.round,
            tasks: self
                .tasks
                .iter()
                .filter(|(_, t)| t.state == TaskState::Open)
                .map(|(id, _)| id.clone())
                .collect(),
            requests: self
                .requests
                .iter()
                .filter(|(_, r)| r.open)
                .map(|(id, _)| id.clone())
                .collect(),
            pending,
            refunded: escrow_left(&self.transfers, &self.job).max(0) as u64,
        };
        self.end_unfinished(ctx);
        let window_ms = self
            .manifest
            .statement
            .challenge_window_secs
            .saturating_mul(1000);
        if window_ms == 0 {
            self.release_holdbacks(ctx);
            self.release_at_ms = None;
        } else {
            self.release_at_ms = Some(ctx.now_ms.saturating_add(window_ms));
            self.stopped = Some(stopped);
        }
        self.error = Some(why.clone());
        self.set_state(JobState::Failed);
        self.effects.push_back(Effect::Failed(why));
    }

    /// What failing and cancelling share: refund what is left in escrow, void its open
    /// tasks and checks, and leave the pause.
    fn end_unfinished(&mut self, ctx: &Ctx<'_>) {
        let left = escrow_left(&self.transfers, &self.job);
        if left > 0 {
            let refund = rules::refund_transfer(
                &self.manifest.statement,
                self.requeues.len() as u32,
                left as u64,
            );
            self.apply(refund, ctx);
        }
        self.void_open_tasks();
        for r in self.requests.values_mut() {
            r.open = false;
        }
        self.paused = false;
    }

    fn release_holdbacks(&mut self, ctx: &Ctx<'_>) {
        for t in release_transfers(&self.manifest.statement, &self.transfers) {
            if !self.transfers.iter().any(|d| d.key == t.key) {
                self.apply(t, ctx);
            }
        }
    }

    fn void_open_tasks(&mut self) {
        for t in self.tasks.values_mut() {
            if t.state == TaskState::Open {
                t.state = TaskState::Void;
            }
        }
    }

    /// Every tile is verified: assemble the frames and roots, release the hold-backs or
    /// start the challenge window, and emit the proof bundle.
    fn finalize(&mut self, ctx: &Ctx<'_>) -> Result<(), MachineError> {
        let m = &self.manifest.statement;
        let lost: Vec<PublicKey> = self.dispute.as_ref().map_or(Vec::new(), |d| d.lost.clone());
        let disputed_rounds = self
            .dispute
            .as_ref()
            .map_or(0, |d| d.commitment.statement.after_round + 1);
        let mut accepted: BTreeMap<(u32, u32), FinalTile> = BTreeMap::new();
        let mut rounds = Vec::new();
        let mut nodes: BTreeSet<PublicKey> = BTreeSet::new();
        let mut dispute_samples = Vec::new();
        let mut dispute_verdicts = Vec::new();
        let tiles = ctx.tiles;
        let mut read = |round: u32, frame: u32, tile: u32| tiles.tile(round, frame, tile);
        for (round, rec) in self.rounds.iter().enumerate() {
            let round = round as u32;
            let commitment = rec
                .commitment
                .clone()
                .ok_or_else(|| self.inconsistent(format!("round {round} is not fixed")))?;
            let nonce = self
                .nonces
                .get(round)
                .ok_or_else(|| self.inconsistent(format!("no nonce for round {round}")))?;
            let mut verdicts = Vec::new();
            for v in &rec.verdicts {
                if v.statement.check.dispute {
                    dispute_verdicts.push(v.clone());
                } else {
                    verdicts.push(v.clone());
                }
            }
            verdicts.sort_by_key(|v| (v.statement.node, v.statement.check));
            for v in &verdicts {
                let node = v.statement.node;
                let lost_here = round < disputed_rounds && lost.contains(&node);
                if v.statement.decision == Decision::Pass && !lost_here {
                    accepted.extend(job::accepted_tiles(&rec.batches, &node, round));
                }
            }
            let mut samples = Vec::new();
            for r in self.requests.values().filter(|r| r.round == round) {
                let mut record = r.record.clone();
                job::fill_evidence(&mut record, &rec.batches, &mut read)
                    .map_err(|e| self.inconsistent(e.to_string()))?;
                if record.check.dispute {
                    dispute_samples.push(record);
                } else {
                    samples.push(record);
                }
            }
            samples.sort_by_key(|n| (n.node, n.check));
            nodes.extend(rec.batches.iter().map(|b| b.signed.statement.node));
            rounds.push(RoundRecord {
                round,
                batches: rec.batches.clone(),
                commitment,
                nonce,
                samples,
                verdicts,
            });
        }
        dispute_samples.sort_by_key(|n| (n.round, n.node, n.check));
        dispute_verdicts.sort_by_key(|v| (v.statement.round, v.statement.node, v.statement.check));
        let disputes: Vec<DisputeRecord> = self
            .dispute
            .iter()
            .map(|d| DisputeRecord {
                commitment: d.commitment.clone(),
                nonce: d.nonce,
                samples: dispute_samples.clone(),
                verdicts: dispute_verdicts.clone(),
            })
            .collect();
        let job::Assembled { frames, roots, .. } = job::assemble(m, &accepted, &mut read, ctx.key)
            .map_err(|e| self.inconsistent(e.to_string()))?;
        let mut infos = Vec::new();
        for n in nodes {
            let v = ctx.farm.node(&n).ok_or_else(|| {
                self.inconsistent(format!(
                    "node {} delivered tiles but is not registered",
                    n.short()
                ))
            })?;
            infos.push(NodeInfo {
                key: n,
                name: v.name,
                class: v.caps.class,
            });
        }
        let window_ms = m.challenge_window_secs.saturating_mul(1000);
        let scene_hint = self.setup.scene_hint.clone();
        let manifest = self.manifest.clone();
        if window_ms == 0 {
            self.release_holdbacks(ctx);
            self.release_at_ms = None;
        } else {
            self.release_at_ms = Some(ctx.now_ms.saturating_add(window_ms));
        }
        let bundle = ProofBundle {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            manifest,
            nodes: infos,
            rounds,
            frames,
            roots,
            disputes,
            requeues: self.requeues.clone(),
            payments: Signed::sign(self.receipt(), ctx.key),
            scene_hint,
        };
        self.void_open_tasks();
        self.set_state(JobState::Done);
        self.effects.push_back(Effect::Finished(Box::new(bundle)));
        Ok(())
    }

    // --- node signals and time --------------------------------------------------------

    /// A heartbeat takes the lease of an open task nobody holds, or renews the holder's;
    /// only a node that may take the job's tasks gets one.
    fn handle_heartbeat(&mut self, node: &PublicKey, task_id: &str, ctx: &Ctx<'_>) -> Handled {
        self.effects.push_back(Effect::Seen { key: *node });
        if let Some(why) = self.ineligible(node, ctx) {
            tracing::info!(task = %task_id, "heartbeat names a task the node may not take: {why}");
            return Handled::Done;
        }
        if let Some(t) = self.tasks.get_mut(task_id) {
            if t.state == TaskState::Open && t.holder.is_none_or(|h| h == *node) {
                t.holder = Some(*node);
                t.lease_until_ms = ctx.now_ms.saturating_add(self.policy.lease_ms);
            } else {
                tracing::debug!(task = %task_id, node = %node.short(), "heartbeat for a task this node does not hold: ignored");
            }
        }
        Handled::Done
    }

    /// Whether a `failed` (else `declined`) note of `node` counts: the task is open, the
    /// note names its current attempt, nobody else holds its lease, and it is the node's
    /// first such note on that attempt.
    fn take_note(&mut self, node: &PublicKey, note: &TaskNote, failed: bool) -> bool {
        let kind = if failed { "failed" } else { "declined" };
        let Some(t) = self.tasks.get_mut(&note.task_id) else {
            return false;
        };
        if t.state != TaskState::Open
            || note.attempt != t.attempts
            || t.holder.is_some_and(|h| h != *node)
        {
            tracing::info!(task = %note.task_id, attempt = note.attempt, "{kind} note about a task that is not open to this node on that attempt: ignored");
            return false;
        }
        if !t.notes.insert((t.attempts, *node, failed)) {
            tracing::info!(task = %note.task_id, attempt = note.attempt, "repeated {kind} note: ignored");
            return false;
        }
        true
    }

    /// A decline sends the task to another eligible node's own queue.
    fn handle_declined(&mut self, node: &PublicKey, note: &TaskNote, ctx: &Ctx<'_>) -> Handled {
        self.effects.push_back(Effect::Seen { key: *node });
        if !self.take_note(node, note, false) {
            return Handled::Done;
        }
        tracing::info!(task = %note.task_id, node = %node.short(), "declined: {}", note.reason);
        let eligible = self.eligible_nodes(ctx, Some(node), true);
        let Some(t) = self.tasks.get_mut(&note.task_id) else {
            return Handled::Done;
        };
        if let Some(target) = pick(&eligible, t.task.batch_id).filter(|_| !self.paused) {
            t.published_ms = ctx.now_ms;
            t.holder = None;
            let publish = Effect::Publish {
                queue: node_queue(&target),
                message: Outgoing::Task(Box::new(t.task.clone())),
            };
            self.effects.push_back(publish);
        }
        Handled::Done
    }

    /// A failed render counts against the lease holder and sends the task out again.
    fn handle_render_failed(
        &mut self,
        node: &PublicKey,
        note: &TaskNote,
        ctx: &Ctx<'_>,
    ) -> Result<Handled, MachineError> {
        self.effects.push_back(Effect::Seen { key: *node });
        let holds = self
            .tasks
            .get(&note.task_id)
            .is_some_and(|t| t.holder == Some(*node));
        if !holds {
            tracing::info!(task = %note.task_id, node = %node.short(), "failure reported by a node that does not hold the lease: ignored");
            return Ok(Handled::Done);
        }
        if !self.take_note(node, note, true) {
            return Ok(Handled::Done);
        }
        tracing::warn!(task = %note.task_id, node = %node.short(), "render failed on the node: {}", note.reason);
        self.fail_task(&note.task_id, Some(*node), ctx);
        Ok(Handled::Done)
    }

    /// A delivery of a task failed (lease expired, render failed, result refused): count
    /// it against `node`, block the node from the job after too many, and publish the
    /// task again, or fail the job when the task ran out of attempts.
    fn fail_task(&mut self, task_id: &str, node: Option<PublicKey>, ctx: &Ctx<'_>) {
        if let Some(n) = node {
            let count = self.failures.entry(n).or_default();
            *count += 1;
            if *count >= self.policy.blocklist_after && !self.blocked.contains(&n) {
                tracing::warn!(job = %&self.job[..12], node = %n.short(), failures = *count, "node blocked from this job");
                self.blocked.push(n);
            }
        }
        let Some(t) = self.tasks.get(task_id) else {
            return;
        };
        if t.attempts - t.attempts_base + 1 >= self.policy.max_attempts {
            let why = format!(
                "task {task_id} failed {} times",
                t.attempts - t.attempts_base + 1
            );
            self.fail_job(why, Vec::new(), ctx);
            return;
        }
        let eligible = self.eligible_nodes(ctx, None, true);
        let blocked = self.blocked.clone();
        let Some(t) = self.tasks.get_mut(task_id) else {
            return;
        };
        t.attempts += 1;
        t.task.attempt = t.attempts;
        t.task.blocked = blocked;
        t.holder = None;
        t.published_ms = ctx.now_ms;
        let task = t.task.clone();
        self.publish_task(&task, &eligible);
    }

    /// Requeue tasks whose lease expired (counted against their node) and tasks nobody
    /// leased for too long; publish unanswered checks again (or fail the job when one ran
    /// out of publications); release the hold-backs when the challenge window is over.
    fn handle_tick(&mut self, ctx: &Ctx<'_>) -> Result<(), MachineError> {
        let now = ctx.now_ms;
        let expired: Vec<(String, Option<PublicKey>)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Open)
            .filter_map(|(id, t)| match t.holder {
                Some(h) if t.lease_until_ms <= now => Some((id.clone(), Some(h))),
                // A paused job's tasks wait unpublished: nobody is late to take them.
                None if !self.paused
                    && t.published_ms
                        .saturating_add(self.policy.unleased_timeout_ms)
                        <= now =>
                {
                    Some((id.clone(), None))
                }
                _ => None,
            })
            .collect();
        for (id, node) in expired {
            if self.state.has_ended() {
                break;
            }
            match node {
                Some(n) => {
                    tracing::warn!(task = %id, node = %n.short(), "lease expired: task requeued")
                }
                None => {
                    tracing::warn!(task = %id, "no node took the task in time: published again")
                }
            }
            self.fail_task(&id, node, ctx);
        }
        let window_over = self.release_at_ms.is_some_and(|t| t <= now);
        if self.state == JobState::Done && window_over {
            self.release_holdbacks(ctx);
            self.release_at_ms = None;
            self.effects
                .push_back(Effect::Receipt(Box::new(Signed::sign(
                    self.receipt(),
                    ctx.key,
                ))));
        }
        if self.state == JobState::Failed && window_over {
            // Nobody requeued the failed job in its window: the work that passed is paid
            // in full, and the job is over.
            self.release_holdbacks(ctx);
            self.release_at_ms = None;
            self.stopped = None;
        }
        let stale: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, r)| {
                r.open && r.sent_ms.saturating_add(self.policy.verify_timeout_ms) <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if self.state.has_ended() && self.state != JobState::Done {
                break;
            }
            let r = &self.requests[&id];
            // A dispute check is never abandoned: the deposit and hold-backs wait for it.
            if r.attempts + 1 >= self.policy.max_attempts && !r.check.dispute {
                let why = format!(
                    "no verifier answered request {id} after {} publications",
                    r.attempts + 1
                );
                self.fail_job(why, Vec::new(), ctx);
                break;
            }
            let (queue, moved) = self.republish_queue(&id, ctx);
            if moved {
                tracing::warn!(request = %id, to = %queue, "the verifier chosen for an escalated check did not answer twice: the check moves");
            } else {
                tracing::warn!(request = %id, "no verdict in time: request published again");
            }
            let sent = self.sent_request(&id, ctx)?;
            let Some(r) = self.requests.get_mut(&id) else {
                continue;
            };
            r.attempts += 1;
            if moved {
                r.queue = queue.clone();
                r.queue_since = r.attempts;
            }
            r.sent_ms = now;
            let publish = Effect::Publish {
                queue,
                message: Outgoing::Check(Box::new(sent)),
            };
            self.effects.push_back(publish);
        }
        Ok(())
    }

    /// Where an unanswered request goes next, and whether that is a new queue: a check on
    /// a verifier's own queue goes there once more (a restarted verifier finds it in its
    /// durable queue); when that verifier misses the deadline again it is taken as gone
    /// and the check moves to another verifier, or to the shared queue.
    fn republish_queue(&self, id: &str, ctx: &Ctx<'_>) -> (String, bool) {
        let r = &self.requests[id];
        if !r.check.escalated || r.attempts < r.queue_since + 1 {
            return (r.queue.clone(), false);
        }
        let Some(gone) = queue_verifier(&r.queue) else {
            return (r.queue.clone(), false);
        };
        let Some(first) = self.first_verdict(r.round, &r.node, r.check) else {
            return (r.queue.clone(), false);
        };
        let next = self
            .second_verifier(r.round, first, &[gone], ctx)
            .map_or_else(|| QUEUE_VERIFY.to_string(), |v| verifier_queue(&v));
        (next, true)
    }

    // --- disputes ---------------------------------------------------------------------

    /// The client disputes the done job inside its challenge window: the deposit moves to
    /// the dispute account, a signed dispute commitment fixes which (round, node) work is
    /// checked again, and only then is the dispute nonce revealed and the checks queued.
    fn handle_dispute(&mut self, client: &str, ctx: &Ctx<'_>) -> Result<Handled, MachineError> {
        if let Err(why) = self.may_dispute(client, ctx.now_ms) {
            return Ok(Handled::Refused(why.to_string()));
        }
        let m = &self.manifest.statement;
        // The (round, node) work in the final frames: what the passing verdicts accepted.
        let mut checks: BTreeSet<(u32, PublicKey)> = BTreeSet::new();
        for (round, rec) in self.rounds.iter().enumerate() {
            for v in &rec.verdicts {
                if !v.statement.check.dispute && v.statement.decision == Decision::Pass {
                    checks.insert((round as u32, v.statement.node));
                }
            }
        }
        let nodes = checks
            .iter()
            .map(|(_, n)| *n)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|n| NodeSnapshot {
                node: n,
                trust: ctx.farm.node(&n).map_or(0, |v| v.trust),
                stake: u64::try_from(ctx.farm.balance(&account::stake(&n)).max(0))
                    .unwrap_or(u64::MAX),
            })
            .collect();
        let commitment = Signed::sign(
            DisputeCommitment {
                job_id: m.job_id,
                client: client.into(),
                after_round: self.round,
                checks: checks.iter().copied().collect(),
                nodes,
            },
            ctx.key,
        );
        for t in dispute_opened_transfers(m) {
            self.apply(t, ctx);
        }
        let nonce = self
            .nonces
            .get(DISPUTE_NONCE_SLOT)
            .ok_or_else(|| self.inconsistent("no dispute nonce"))?;
        self.dispute = Some(Dispute {
            commitment,
            nonce,
            lost: Vec::new(),
        });
        const DISPUTE_CHECK: CheckKind = CheckKind {
            dispute: true,
            escalated: false,
        };
        for (round, node) in checks {
            self.queue_check(round, &node, DISPUTE_CHECK, None, ctx, &|_, _| None)?;
        }
        self.set_state(JobState::Disputed);
        Ok(Handled::Done)
    }

    /// A dispute check's final verdict: a failure forfeits and claws back the round's pay
    /// into the escrow and slashes (sized from the round's snapshot); when every dispute
    /// check is final the deposit goes to the side that won.
    fn settle_dispute_check(
        &mut self,
        round: u32,
        node: &PublicKey,
        verdict: &Signed<Verdict>,
        ctx: &Ctx<'_>,
    ) -> Result<(), MachineError> {
        let decision = verdict.statement.decision;
        let (outcome, _) = self.outcome(round, node, decision)?;
        for t in dispute_transfers(&self.manifest.statement, &outcome) {
            self.apply(t, ctx);
        }
        let trust = ctx.farm.node(node).map_or(0, |v| v.trust);
        self.effects.push_back(Effect::Trust {
            node: *node,
            trust: trust_after(trust, decision),
        });
        if decision == Decision::Fail {
            tracing::warn!(job = %&self.job[..12], node = %node.short(), round, "dispute upheld: the node's pay for the round is forfeited and clawed back, its stake slashed, its tiles rendered again");
            if let Some(d) = self.dispute.as_mut() {
                if !d.lost.contains(node) {
                    d.lost.push(*node);
                }
            }
            if !self.blocked.contains(node) {
                self.blocked.push(*node);
            }
            if !self.convicted.contains(node) {
                self.convicted.push(*node);
            }
        }
        if self.requests.values().any(|r| r.check.dispute && r.open) {
            return Ok(());
        }
        self.finish_dispute(ctx)
    }

    /// Every dispute check is final: the deposit goes to the winner; with no node lost
    /// the job is done again (its receipt signed anew), else the lost nodes' tiles are
    /// rendered again in a new round.
    fn finish_dispute(&mut self, ctx: &Ctx<'_>) -> Result<(), MachineError> {
        let Some(d) = self.dispute.as_ref() else {
            return Ok(());
        };
        let lost = d.lost.clone();
        let checks = d.commitment.statement.checks.clone();
        for t in dispute_settled_transfers(&self.manifest.statement, !lost.is_empty()) {
            self.apply(t, ctx);
        }
        if lost.is_empty() {
            tracing::info!(job = %&self.job[..12], "dispute rejected: every check passed; the client pays for it");
            let release_at = self.release_at_ms;
            self.finalize(ctx)?;
            self.release_at_ms = release_at;
            return Ok(());
        }
        let mut pending = Vec::new();
        for (round, node) in checks.iter().filter(|(_, n)| lost.contains(n)) {
            pending.extend(job::committed_tiles(
                &self.rounds[*round as usize].batches,
                node,
            ));
        }
        pending.sort_unstable();
        self.tiles_verified = self.tiles_verified.saturating_sub(pending.len() as u32);
        self.next_round(
            pending,
            |n| {
                format!(
                    "the dispute found {n} forged tiles and no round or node is left to render them again"
                )
            },
            ctx,
        )
    }
}

impl Job {
    // --- job control --------------------------------------------------------------------

    /// Whether `client` may do `action` to the job now: its own job, not ended and not
    /// being disputed.
    pub fn may_control(&self, client: &str, action: Control) -> Result<(), ControlRefusal> {
        if self.manifest.statement.client != client {
            return Err(ControlRefusal::NotOwner(self.job.clone()));
        }
        if self.state == JobState::Failed && action == Control::Requeue {
            return self.may_requeue_failed();
        }
        if self.state.has_ended() || self.state == JobState::Disputed {
            return Err(ControlRefusal::Ended {
                job: self.job.clone(),
                state: self.state,
                action: match action {
                    Control::Cancel => "cancelled",
                    Control::Pause => "paused",
                    Control::Resume => "resumed",
                    Control::Requeue => "requeued",
                    Control::Priority(_) => "reprioritized",
                },
            });
        }
        Ok(())
    }

    /// Whether the failed job can start again: its window is open (its hold-backs are
    /// not released) and, when it failed between rounds, a round is left.
    fn may_requeue_failed(&self) -> Result<(), ControlRefusal> {
        let refuse = |why: String| ControlRefusal::NotRequeuable {
            job: self.job.clone(),
            why,
        };
        let Some(stopped) = &self.stopped else {
            return Err(refuse(
                "its challenge window is over and the work that passed is paid in full; submit it again".into(),
            ));
        };
        if !stopped.pending.is_empty() && self.round + 1 >= MAX_ROUNDS {
            return Err(refuse(format!(
                "it used all {MAX_ROUNDS} verification rounds its manifest has nonces for; submit it again"
            )));
        }
        Ok(())
    }

    /// The escrow a requeue of the failed job needs from its client (what its failure
    /// refunded); `None` when the job has not failed.
    pub fn requeue_price(&self) -> Option<u64> {
        self.stopped.as_ref().map(|s| s.refunded)
    }

    /// The signed requeues of the job after failures, in order.
    pub fn requeues(&self) -> &[Signed<JobRequeue>] {
        &self.requeues
    }

    /// Start a failed job again where its failure stopped it: the escrow is funded again
    /// with what the failure refunded (the client's account holds it), blocks for failed
    /// deliveries are lifted (blocks for failed verification stay), the tasks and checks
    /// it voided are open again with a full set of attempts, or the round it could not
    /// start starts now. Refused, changing nothing, when no node could render its tiles.
    fn requeue_failed(&mut self, ctx: &Ctx<'_>) -> Handled {
        let Some(stopped) = self.stopped.clone() else {
            return Handled::Refused(format!("job {}: nothing to requeue", self.job));
        };
        let (blocked_before, failures_before) = (self.blocked.clone(), self.failures.clone());
        self.failures.clear();
        let convicted = self.convicted.clone();
        self.blocked.retain(|n| convicted.contains(n));
        let renders = !stopped.pending.is_empty() || !stopped.tasks.is_empty();
        if renders && self.eligible_nodes(ctx, None, false).is_empty() {
            self.blocked = blocked_before;
            self.failures = failures_before;
            return Handled::Refused(format!(
                "job {}: no registered node may render it (every one is blocked for failed verification); requeue it when another node has joined",
                self.job
            ));
        }
        let m = &self.manifest.statement;
        let n = self.requeues.len() as u32 + 1;
        let requeue = JobRequeue {
            job_id: m.job_id,
            client: m.client.clone(),
            requeue: n,
            failed_in_round: stopped.round,
            refunded: stopped.refunded,
            reason: self.error.take().unwrap_or_default(),
        };
        if stopped.refunded > 0 {
            let escrow = rules::requeue_escrow_transfer(m, n, stopped.refunded);
            self.apply(escrow, ctx);
        }
        self.requeues.push(Signed::sign(requeue, ctx.key));
        self.stopped = None;
        self.release_at_ms = None;
        let before = self.state();
        if !stopped.pending.is_empty() {
            self.round += 1;
            self.rounds.push(Round::default());
            self.dispatch(&stopped.pending, ctx);
            self.state = JobState::Rendering;
        } else {
            let blocked = self.blocked.clone();
            for id in &stopped.tasks {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.state = TaskState::Open;
                    t.attempts += 1;
                    t.attempts_base = t.attempts;
                    t.task.attempt = t.attempts;
                    t.task.blocked = blocked.clone();
                    t.holder = None;
                }
            }
            self.publish_unheld(ctx);
            for id in &stopped.requests {
                let Some(r) = self.requests.get_mut(id) else {
                    continue;
                };
                r.open = true;
                r.attempts = 0;
                r.queue_since = 0;
                r.sent_ms = ctx.now_ms;
                let queue = r.queue.clone();
                match self.sent_request(id, ctx) {
                    Ok(sent) => self.effects.push_back(Effect::Publish {
                        queue,
                        message: Outgoing::Check(Box::new(sent)),
                    }),
                    Err(e) => {
                        tracing::error!(request = %id, "a requeued check cannot be rebuilt: {e}")
                    }
                }
            }
            self.state = stopped.state;
        }
        self.state_changed(before);
        tracing::info!(job = %&self.job[..12], requeue = n, refunded = stopped.refunded, "failed job requeued by its client: the escrow is funded again");
        Handled::Done
    }

    /// The client's control of its job (see [`Control`]). Pausing a paused job, resuming
    /// a running one or setting the priority it has change nothing.
    fn handle_control(&mut self, client: &str, action: Control, ctx: &Ctx<'_>) -> Handled {
        if let Err(why) = self.may_control(client, action) {
            return Handled::Refused(why.to_string());
        }
        if self.state == JobState::Failed {
            return self.requeue_failed(ctx);
        }
        let before = self.state();
        match action {
            Control::Cancel => {
                self.end_unfinished(ctx);
                // A cancelled job has no challenge window: the work that passed is paid
                // in full now.
                self.release_holdbacks(ctx);
                self.error = Some("cancelled by its client".into());
                self.state = JobState::Cancelled;
                self.effects.push_back(Effect::Withdraw);
                tracing::info!(job = %&self.job[..12], "job cancelled by its client: verified work paid, the rest of the escrow refunded");
            }
            Control::Pause if !self.paused => {
                self.paused = true;
                self.effects.push_back(Effect::Withdraw);
                tracing::info!(job = %&self.job[..12], "job paused by its client");
            }
            Control::Resume if self.paused => {
                self.paused = false;
                self.publish_unheld(ctx);
                tracing::info!(job = %&self.job[..12], "job resumed by its client");
            }
            Control::Requeue => {
                // Blocks for failed deliveries are lifted, blocks for failed verification
                // stay.
                self.failures.clear();
                let convicted = self.convicted.clone();
                self.blocked.retain(|n| convicted.contains(n));
                let blocked = self.blocked.clone();
                let mut fresh = 0;
                for t in self.tasks.values_mut() {
                    if t.state != TaskState::Open {
                        continue;
                    }
                    let leased = t.holder.is_some() && t.lease_until_ms > ctx.now_ms;
                    if leased {
                        t.attempts_base = t.attempts;
                        continue;
                    }
                    t.attempts += 1;
                    t.attempts_base = t.attempts;
                    t.task.attempt = t.attempts;
                    t.task.blocked = blocked.clone();
                    t.holder = None;
                    fresh += 1;
                }
                self.effects.push_back(Effect::Withdraw);
                self.publish_unheld(ctx);
                tracing::info!(job = %&self.job[..12], tasks = fresh, "job requeued by its client: open tasks start their attempts again");
            }
            Control::Priority(p) if p != self.priority => {
                self.priority = p;
                self.effects.push_back(Effect::Priority(p));
            }
            Control::Pause | Control::Resume | Control::Priority(_) => {}
        }
        self.state_changed(before);
        Handled::Done
    }

    /// Publish every open task nobody holds (after a pause, or a requeue).
    fn publish_unheld(&mut self, ctx: &Ctx<'_>) {
        if self.paused {
            return;
        }
        let eligible = self.eligible_nodes(ctx, None, true);
        let unheld: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Open && t.holder.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in unheld {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.published_ms = ctx.now_ms;
                let task = t.task.clone();
                self.publish_task(&task, &eligible);
            }
        }
    }
}

/// What is left in a job's escrow after `transfers`.
fn escrow_left(transfers: &[Transfer], job: &str) -> i128 {
    let escrow = account::escrow(job);
    transfers.iter().fold(0i128, |left, t| {
        let a = i128::from(t.amount);
        left + if t.to == escrow { a } else { 0 } - if t.from == escrow { a } else { 0 }
    })
}

/// The eligible node that gets batch `batch_id` on its own queue: spread by batch id.
fn pick(eligible: &[PublicKey], batch_id: u32) -> Option<PublicKey> {
    (!eligible.is_empty()).then(|| eligible[batch_id as usize % eligible.len()])
}

// --- tile states (read-only, for the dashboard) ---------------------------------------

/// Where one tile of a job is, as the dashboard's tile grid shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TilePhase {
    /// Dispatched (or waiting for dispatch), nobody holds its lease.
    Queued,
    /// A node holds the lease of its task ([`TileStatus::node`]).
    Rendering,
    /// Delivered and committed; no verdict on its node's work in its round yet.
    Delivered,
    /// A verifier re-rendered it ([`TileStatus::check`]) and escalated: the node's work
    /// is being checked again.
    Sampled,
    /// Its node's work in its round passed verification.
    Verified,
    /// Its node's work in its round failed verification or ended inconclusive (and no
    /// later round renders it).
    Failed,
    /// Never finished: its job was cancelled or failed first.
    Abandoned,
}

impl TilePhase {
    /// The lowercase name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            TilePhase::Queued => "queued",
            TilePhase::Rendering => "rendering",
            TilePhase::Delivered => "delivered",
            TilePhase::Sampled => "sampled",
            TilePhase::Verified => "verified",
            TilePhase::Failed => "failed",
            TilePhase::Abandoned => "abandoned",
        }
    }
}

/// A verifier's re-render of one tile: its band and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileCheck {
    /// The round of the tile it checked.
    pub round: u32,
    /// Which check of that round (first, escalated, dispute).
    pub check: CheckKind,
    /// The band of the re-render against the delivered tile.
    pub band: tessera_protocol::tolerance::Band,
    /// The metrics of that comparison.
    pub metrics: tessera_protocol::tolerance::TileMetrics,
    /// The decision of the verdict that sampled it.
    pub decision: Decision,
}

/// One tile of a job now ([`Job::tiles`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileStatus {
    /// Its frame.
    pub frame: u32,
    /// Its index in the frame's layout.
    pub tile_index: u32,
    /// Its rectangle in the frame.
    pub rect: TileRect,
    /// The round of its latest rendering (0 first; N > 0: re-rendered in round N).
    pub round: u32,
    /// Where it is.
    pub phase: TilePhase,
    /// The node holding its lease (rendering) or that delivered it (after).
    pub node: Option<PublicKey>,
    /// The latest verifier re-render of it, if it was sampled.
    pub check: Option<TileCheck>,
    /// Earlier rounds in which it was rendered and rejected (failed or inconclusive).
    pub rejected_in: Vec<u32>,
}

impl Job {
    /// Every tile of the job, frame by frame in layout order, with where it is now: the
    /// state the tasks, the accepted batches and the verdicts imply. Reads only.
    pub fn tiles(&self) -> Vec<TileStatus> {
        let m = &self.manifest.statement;
        let n_tiles = self.layout.len() as u32;
        let at = |frame: u32, tile: u32| -> Option<usize> {
            (frame >= m.frame_start && frame <= m.frame_end && tile < n_tiles)
                .then(|| ((frame - m.frame_start) * n_tiles + tile) as usize)
        };
        let mut out: Vec<TileStatus> = (m.frame_start..=m.frame_end)
            .flat_map(|frame| {
                self.layout
                    .iter()
                    .enumerate()
                    .map(move |(i, rect)| TileStatus {
                        frame,
                        tile_index: i as u32,
                        rect: *rect,
                        round: 0,
                        phase: TilePhase::Queued,
                        node: None,
                        check: None,
                        rejected_in: Vec::new(),
                    })
            })
            .collect();
        // Tasks, oldest round first, so that a later round's task wins.
        let mut tasks: Vec<&Task> = self.tasks.values().collect();
        tasks.sort_by_key(|t| t.task.round);
        for t in tasks {
            for tile in &t.task.tiles {
                let Some(i) = at(t.task.frame, tile.tile_index) else {
                    continue;
                };
                let s = &mut out[i];
                if t.task.round < s.round {
                    continue;
                }
                s.round = t.task.round;
                (s.phase, s.node) = match (t.state, t.holder) {
                    (TaskState::Open, Some(node)) => (TilePhase::Rendering, Some(node)),
                    (TaskState::Open, None) => (TilePhase::Queued, None),
                    (TaskState::Done, _) => (TilePhase::Delivered, None),
                    (TaskState::Void, _) => (TilePhase::Abandoned, None),
                };
            }
        }
        // Accepted batches name who delivered each tile.
        for (round, rec) in self.rounds.iter().enumerate() {
            let round = round as u32;
            for b in &rec.batches {
                let st = &b.signed.statement;
                for leaf in &b.tiles {
                    let Some(i) = at(st.frame, leaf.tile_index) else {
                        continue;
                    };
                    let s = &mut out[i];
                    if round > s.round || (round == s.round && s.phase != TilePhase::Rendering) {
                        s.round = round;
                        s.phase = TilePhase::Delivered;
                        s.node = Some(st.node);
                    }
                }
            }
        }
        // Verdicts, in the order they were taken: samples first, then each node's final
        // decision on its round's tiles.
        for (round, rec) in self.rounds.iter().enumerate() {
            let round = round as u32;
            for v in &rec.verdicts {
                let vs = &v.statement;
                for sample in &vs.samples {
                    let Some(i) = at(sample.frame, sample.tile_index) else {
                        continue;
                    };
                    if out[i].round == round && out[i].node == Some(vs.node) {
                        out[i].check = Some(TileCheck {
                            round,
                            check: vs.check,
                            band: sample.band,
                            metrics: sample.metrics,
                            decision: vs.decision,
                        });
                    }
                }
                let phase = match vs.decision {
                    Decision::Pass if vs.check.dispute => None,
                    Decision::Pass => Some(TilePhase::Verified),
                    Decision::Escalate => Some(TilePhase::Sampled),
                    Decision::Fail | Decision::Inconclusive => Some(TilePhase::Failed),
                };
                for b in rec
                    .batches
                    .iter()
                    .filter(|b| b.signed.statement.node == vs.node)
                {
                    let frame = b.signed.statement.frame;
                    for leaf in &b.tiles {
                        let Some(i) = at(frame, leaf.tile_index) else {
                            continue;
                        };
                        let s = &mut out[i];
                        if phase == Some(TilePhase::Failed) && !s.rejected_in.contains(&round) {
                            s.rejected_in.push(round);
                        }
                        if s.round == round && s.node == Some(vs.node) {
                            if let Some(p) = phase {
                                s.phase = p;
                            }
                        }
                    }
                }
            }
        }
        for s in &mut out {
            // A rejection in the tile's own (latest) round is its phase, not history.
            let round = s.round;
            if s.phase == TilePhase::Failed {
                s.rejected_in.retain(|r| *r != round);
            }
            s.rejected_in.sort_unstable();
        }
        out
    }
}
