//! The coordinator's HTTP API (version 1): the JSON types both sides use, and (in
//! [`client`]) an async client for nodes, verifiers and the `tessera` client commands.
//!
//! Every path starts with `/v1`. Authentication is `Authorization: Bearer TOKEN`: a client
//! API token for client routes, or the session token a node or verifier got from
//! `POST /v1/register` for worker routes. Errors are an [`ApiError`] body with a 4xx/5xx
//! status. docs/PROTOCOL.md is the normative description.

#![warn(missing_docs)]

pub mod client;
pub mod commands;
pub mod flags;
pub mod secrets;
pub mod table;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_protocol::keys::PublicKey;
use tessera_protocol::statements::{Registration, Signed};
use tessera_protocol::wire::{Capabilities, Requirements};
use tessera_protocol::{DeterminismClass, RenderSettings};

/// Largest blob (one scene file) the coordinator accepts, in bytes, unless configured.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 512 * 1024 * 1024;

/// `POST /v1/register/challenge` (no authentication): a fresh single-use challenge.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChallengeResponse {
    /// 32 random bytes, hex; valid for a few minutes, once.
    pub challenge: String,
    /// The coordinator's public key (the registration must name it).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub coordinator: PublicKey,
}

/// `POST /v1/register` body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RegisterRequest {
    /// The signed registration (role, name, challenge, coordinator key, capabilities digest).
    #[schema(value_type = Object)]
    pub registration: Signed<Registration>,
    /// The capabilities whose digest was signed.
    #[schema(value_type = Object)]
    pub capabilities: Capabilities,
    /// The farm's worker token, when the coordinator requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /v1/register` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RegisterResponse {
    /// Bearer token for the worker routes (scene listings and blobs).
    pub session: String,
    /// The coordinator's public key.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub coordinator: PublicKey,
    /// AMQP namespace: queue `q` is `{namespace}.{q}` on the broker.
    pub amqp_namespace: String,
}

/// A scene as a set of content-addressed files.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SceneListing {
    /// The file to load (`.glb` or `.gltf`), a key of `files`.
    pub entry: String,
    /// Relative path inside the scene folder (forward slashes, no `..`, not absolute) →
    /// BLAKE3 hash of its bytes, hex.
    pub files: BTreeMap<String, String>,
}

/// `PUT /v1/blobs/{hash}` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BlobStored {
    /// BLAKE3 of the bytes, hex (equals the path's hash).
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// False when the coordinator already had it.
    pub fresh: bool,
}

/// `POST /v1/jobs` body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobSubmission {
    /// The scene; every file must have been uploaded first.
    pub scene: SceneListing,
    /// Render settings.
    #[schema(value_type = Object)]
    pub settings: RenderSettings,
    /// First frame.
    pub frame_start: u32,
    /// Last frame (inclusive).
    pub frame_end: u32,
    /// Tier name (`economy`, `priority`, `trusted`).
    pub tier: String,
    /// Tile edge in pixels (coordinator default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_size: Option<u32>,
    /// Tiles per task (coordinator default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// What the job requires of nodes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub requirements: Requirements,
}

/// `POST /v1/jobs` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobAccepted {
    /// The job id, hex.
    pub job_id: String,
    /// The scene content hash, hex.
    pub scene_hash: String,
}

/// `POST /v1/jobs/estimate` answer: what `POST /v1/jobs` with the same body would take
/// into escrow, computed on the manifest the coordinator would sign.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobEstimate {
    /// The escrow in micro-credits (`tessera_protocol::rules::job_price`).
    pub price_micro: u64,
    /// The tier's name.
    pub tier: String,
    /// The tile edge in pixels the job would use.
    pub tile_size: u32,
    /// Tiles over all frames.
    pub tiles: u64,
    /// Frames.
    pub frames: u32,
    /// The scene content hash, hex (as `JobAccepted::scene_hash`).
    pub scene_hash: String,
}

/// The job control actions of `POST /v1/jobs/control` and `POST /v1/jobs/{id}/{action}`.
pub const CONTROL_ACTIONS: [&str; 5] = ["cancel", "pause", "resume", "requeue", "priority"];

/// `POST /v1/jobs/control`: one action on several of the client's jobs at once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// The jobs (hex ids), each handled on its own.
    pub jobs: Vec<String>,
    /// `cancel`, `pause`, `resume`, `requeue` or `priority`.
    pub action: String,
    /// The new priority, for `priority` (higher goes first; jobs start at 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// `GET /v1/tasks/{id}/wanted` (nodes).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TaskWanted {
    /// Whether the calling node should render the task now.
    pub wanted: bool,
}

/// `POST /v1/jobs/{id}/priority`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    /// Higher goes first; jobs start at 0.
    pub priority: i32,
}

/// What became of one job of a [`ControlRequest`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ControlOutcome {
    /// The job.
    pub job_id: String,
    /// Its state after the action, when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why the action was refused for this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/jobs/{id}` (and each element of `GET /v1/jobs`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobStatus {
    /// Job id, hex.
    pub job_id: String,
    /// `queued`, `rendering`, `verifying`, `paused`, `done`, `failed`, `cancelled` or
    /// `disputed`.
    pub state: String,
    /// Scene file name.
    pub scene_name: String,
    /// First frame.
    pub frame_start: u32,
    /// Last frame.
    pub frame_end: u32,
    /// Tier.
    pub tier: String,
    /// Tiles in the job (all frames).
    pub tiles_total: u32,
    /// Tiles with a stored, checked result in the current round or an accepted one.
    pub tiles_rendered: u32,
    /// Tiles accepted after verification.
    pub tiles_verified: u32,
    /// Current round.
    pub round: u32,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Submission time, seconds since the Unix epoch.
    pub created_unix: u64,
}

/// `GET /v1/nodes` element: a registered node or verifier.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeView {
    /// Public key.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub key: PublicKey,
    /// Display name.
    pub name: String,
    /// `node` or `verifier`.
    pub role: String,
    /// Determinism class.
    #[schema(value_type = DeterminismClassSchema)]
    pub class: DeterminismClass,
    /// Adapter memory.
    pub memory_bytes: u64,
    /// Render slots.
    pub slots: u32,
    /// Trust score.
    pub trust: u32,
    /// Stake, micro-credits.
    pub stake: i64,
    /// Earned balance, micro-credits.
    pub balance: i64,
    /// Last heartbeat or registration, seconds since the Unix epoch.
    pub last_seen_unix: u64,
    /// Tasks leased to it now.
    pub leased_tasks: u32,
}

/// `GET /v1/ledger`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LedgerView {
    /// Every account with its balance, micro-credits, by name.
    pub accounts: Vec<AccountBalance>,
    /// Sum of all balances (always 0: the ledger is double-entry).
    pub total: i64,
}

/// One account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AccountBalance {
    /// Account name (`client:NAME`, `node:KEY`, `stake:KEY`, `escrow:JOB`, …).
    pub account: String,
    /// Balance, micro-credits.
    pub balance: i64,
}

/// `POST /v1/credits` (operator token): money that came in from outside the farm,
/// credited to a client's balance or a node's stake.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CreditRequest {
    /// `client:NAME` or `stake:NODE_KEY` (64 hex).
    pub account: String,
    /// Micro-credits, at least 1.
    pub amount: u64,
    /// The operator's reference for this payment (1 to 128 printable characters): a
    /// credit is applied once per reference, so a retried request credits nothing twice.
    pub reference: String,
}

/// The answer to a [`CreditRequest`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CreditResponse {
    /// The account credited.
    pub account: String,
    /// Whether this request applied the credit (false: its reference was applied before).
    pub applied: bool,
    /// The account's balance now, micro-credits.
    pub balance: i64,
}

/// Error body of every non-2xx answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApiError {
    /// What went wrong, naming the field or thing.
    pub error: String,
}

/// A determinism class as the API shows it (the schema of
/// [`tessera_protocol::DeterminismClass`]'s JSON): adapters whose renders are byte-identical
/// share one.
#[derive(utoipa::ToSchema)]
#[schema(as = DeterminismClass)]
#[allow(dead_code)] // a schema only: the wire type is the protocol's
pub struct DeterminismClassSchema {
    /// The graphics backend (`vulkan`, …).
    backend: String,
    /// The adapter's name.
    adapter: String,
    /// The driver's name.
    driver: String,
    /// The driver's version text.
    driver_info: String,
    /// The renderer's build.
    renderer_build: String,
    /// The shader's hash.
    shader_hash: String,
}

/// The events a webhook may subscribe to, by their wire names.
///
/// - `job.done`: every tile is verified and paid and the frames are assembled;
/// - `job.failed`: the job ended without its frames (its escrow was refunded);
/// - `job.cancelled`: its client cancelled it;
/// - `verification.failed`: a node failed a check of the job (it is slashed, unpaid for
///   the round, and its tiles are rendered again);
/// - `job.dispute_window_closed`: the job's challenge window closed and its hold-backs
///   were released (jobs signed with a window of 0 release them as they finish, and
///   send no such event).
pub const WEBHOOK_EVENTS: [&str; 5] = [
    "job.done",
    "job.failed",
    "job.cancelled",
    "verification.failed",
    "job.dispute_window_closed",
];

/// `POST /v1/webhooks`: a hook for the calling client's jobs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where events are POSTed: an `http://` URL without credentials in it.
    pub url: String,
    /// The HMAC key deliveries are signed with (16 to 256 bytes); never shown again.
    pub secret: String,
    /// The events to deliver, from [`WEBHOOK_EVENTS`].
    pub events: Vec<String>,
}

/// A client's webhook as the API shows it (`POST /v1/webhooks`, `GET /v1/webhooks`): its
/// secret is never returned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookView {
    /// Its id (what `DELETE /v1/webhooks/{id}` takes).
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// When it was added (Unix ms).
    pub created_ms: u64,
}

/// `GET /v1/webhooks/{id}/deliveries`: one delivery of a hook, newest first, as it
/// stands (what a receiver's owner looks at when an event did not arrive).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// The delivery's id (the `Tessera-Delivery` header).
    pub id: String,
    /// Its event.
    pub event: String,
    /// Its job.
    pub job_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the receiver took it (answered 2xx), Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<u64>,
    /// When it is tried next, Unix ms (neither this nor `delivered_ms`: given up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at_ms: Option<u64>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The JSON body of one webhook delivery. Its `id` is also the `Tessera-Delivery`
/// header: a delivery is sent at least once, so a receiver drops ids it has seen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WebhookEvent {
    /// The delivery's id (the same on every retry of it).
    pub id: String,
    /// One of [`WEBHOOK_EVENTS`] (also the `Tessera-Event` header).
    pub event: String,
    /// The job (hex id).
    pub job_id: String,
    /// The job's state when the event happened.
    pub state: String,
    /// When the coordinator took the event (Unix ms).
    pub at_ms: u64,
    /// What the event carries: tile counts for a job's end, its error for `job.failed`,
    /// the round, node and check for `verification.failed`, the released amount for
    /// `job.dispute_window_closed`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}
