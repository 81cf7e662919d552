//! Messages between coordinator, nodes and verifiers (serde JSON on the bus, versioned).
//! Tile bytes travel hex-encoded inside JSON for now; what is hashed and signed is always the
//! canonical bytes, never this encoding.

use crate::bundle::{BatchRecord, SampleProof};
use crate::canonical::JobId;
use crate::hexser;
use crate::keys::PublicKey;
use crate::statements::{
    CheckKind, DisputeCommitment, JobManifest, RoundCommitment, Signed, Verdict,
};
use crate::types::{DeterminismClass, Digest, RenderSettings, TileRect};
use serde::{Deserialize, Serialize};

/// Version of every wire message.
pub const WIRE_VERSION: u32 = 3;

// Queue names are logical: on RabbitMQ, queue `q` is `{namespace}.{q}` (namespace
// `tessera` by default). See docs/PROTOCOL.md.

/// Queue of render tasks (competing consumers: the nodes).
pub const QUEUE_TASKS: &str = "tasks";
/// Queue of batch results (consumer: the coordinator).
pub const QUEUE_RESULTS: &str = "results";
/// Queue of verification requests (competing consumers: the verifiers).
pub const QUEUE_VERIFY: &str = "verify";
/// The queue of verify requests routed to one verifier (escalated checks go to a second
/// verifier, of another class when one is registered): `verifier.` and its full key in hex.
pub fn verifier_queue(verifier: &PublicKey) -> String {
    format!("verifier.{verifier}")
}

/// The verifier whose own queue `queue` is (the inverse of [`verifier_queue`]); None for
/// any other queue.
pub fn queue_verifier(queue: &str) -> Option<PublicKey> {
    let key = queue.strip_prefix("verifier.")?;
    hexser::decode::<32>(key).ok().map(PublicKey)
}

/// Queue of verdicts (consumer: the coordinator).
pub const QUEUE_VERDICTS: &str = "verdicts";
/// Queue of signed [`crate::statements::NodeSignal`]s: lease heartbeats, declines and
/// failures (consumer: the coordinator).
pub const QUEUE_SIGNALS: &str = "signals";

/// The queue of tasks routed to one node (tasks of jobs with requirements, or with nodes
/// blocked): `node.` followed by the node's full public key in hex.
pub fn node_queue(node: &PublicKey) -> String {
    format!("node.{node}")
}

/// What a node (or verifier) reports about its renderer when it registers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Capabilities {
    /// The determinism class of its renderer (adapter, backend, driver, build, shader).
    pub class: DeterminismClass,
    /// Memory of the adapter in bytes (0 when unknown).
    pub memory_bytes: u64,
    /// Tasks it renders at once (its prefetch).
    pub slots: u32,
    /// `tessera` version string.
    pub software: String,
}

impl Capabilities {
    /// The digest a [`crate::statements::Registration`] signs: BLAKE3 derive-key
    /// `"tessera v1 capabilities"` over class id ‖ memory (u64 LE) ‖ slots (u32 LE) ‖
    /// software (u32 LE length + UTF-8).
    pub fn digest(&self) -> Digest {
        let mut w = crate::canonical::FieldWriter::new();
        w.bytes(&self.class.id())
            .u64(self.memory_bytes)
            .u32(self.slots)
            .str(&self.software);
        *blake3::Hasher::new_derive_key("tessera v1 capabilities")
            .update(&w.finish())
            .finalize()
            .as_bytes()
    }

    /// Whether these capabilities meet `req`.
    pub fn meets(&self, req: &Requirements) -> Result<(), Unmet> {
        if let Some(want) = &req.class_id {
            let have = self.class.id();
            if have != *want {
                return Err(Unmet::Class { want: *want, have });
            }
        }
        if self.memory_bytes < req.min_memory_bytes {
            return Err(Unmet::Memory {
                want: req.min_memory_bytes,
                have: self.memory_bytes,
            });
        }
        Ok(())
    }
}

/// Which of a job's [`Requirements`] a node's [`Capabilities`] do not meet
/// ([`Capabilities::meets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    /// The job requires another determinism class (ids shown by their first 6 bytes).
    #[error(
        "job requires determinism class {}, this renderer is {}",
        hex::encode(&.want[..6]),
        hex::encode(&.have[..6])
    )]
    Class {
        /// The class id the job requires.
        want: Digest,
        /// The renderer's class id.
        have: Digest,
    },
    /// The adapter has less memory than the job requires.
    #[error("job requires {want} bytes of adapter memory, this adapter has {have}")]
    Memory {
        /// Bytes the job requires.
        want: u64,
        /// Bytes the adapter has.
        have: u64,
    },
}

/// What a job asks of the nodes that render it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Requirements {
    /// Only nodes of this determinism class (id).
    #[serde(
        default,
        with = "hexser::opt_arr",
        skip_serializing_if = "Option::is_none"
    )]
    pub class_id: Option<Digest>,
    /// Only adapters with at least this much memory.
    #[serde(default)]
    pub min_memory_bytes: u64,
}

impl Requirements {
    /// Whether anything is required at all.
    pub fn is_empty(&self) -> bool {
        self.class_id.is_none() && self.min_memory_bytes == 0
    }
}

/// One tile to render.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskTile {
    /// Tile index in the frame layout.
    pub tile_index: u32,
    /// Its rectangle.
    pub rect: TileRect,
}

/// A batch of tiles of one frame for one node to render and commit to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RenderTask {
    /// [`WIRE_VERSION`].
    pub version: u32,
    /// Task id (unique; the message id on the bus).
    pub task_id: String,
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// Scene content hash (the node renders only this scene).
    #[serde(with = "hexser::arr")]
    pub scene_hash: Digest,
    /// Render settings.
    pub settings: RenderSettings,
    /// Frame.
    pub frame: u32,
    /// Round the batch belongs to.
    pub round: u32,
    /// Batch id to sign.
    pub batch_id: u32,
    /// Tiles, in leaf order.
    pub tiles: Vec<TaskTile>,
    /// Nodes that must not take this task (failed on this job).
    pub blocked: Vec<PublicKey>,
    /// Delivery attempt, from 0; the reconciler republishes with the next one.
    #[serde(default)]
    pub attempt: u32,
    /// What the job requires of a node.
    #[serde(default)]
    pub requirements: Requirements,
}

/// A delivered tile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeliveredTile {
    /// Tile index.
    pub tile_index: u32,
    /// Canonical bytes, hex.
    #[serde(with = "hex::serde")]
    pub bytes: Vec<u8>,
}

/// A node's answer to a [`RenderTask`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BatchResult {
    /// [`WIRE_VERSION`].
    pub version: u32,
    /// The task answered.
    pub task_id: String,
    /// The round of the task.
    pub round: u32,
    /// The node's determinism class (its id is in the commitment).
    pub class: DeterminismClass,
    /// The signed commitment with its leaves.
    pub batch: BatchRecord,
    /// The tiles' bytes, in leaf order.
    pub tiles: Vec<DeliveredTile>,
}

/// One sampled pixel block the verifier must check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampledBlock {
    /// Proof of the block in its tile and of the tile's leaf in its batch.
    pub proof: SampleProof,
    /// Frame.
    pub frame: u32,
    /// Index of the block's tile.
    pub tile_index: u32,
    /// The block's rectangle, in frame coordinates.
    pub rect: TileRect,
    /// Committed block hash.
    #[serde(with = "hexser::arr")]
    pub committed_hash: Digest,
    /// The block's bytes the node delivered, hex.
    #[serde(with = "hex::serde")]
    pub delivered: Vec<u8>,
}

/// A request to verify one node's work in one round.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerifyRequest {
    /// [`WIRE_VERSION`].
    pub version: u32,
    /// Request id.
    pub request_id: String,
    /// The signed manifest.
    pub manifest: Signed<JobManifest>,
    /// The signed round commitment.
    pub commitment: Signed<RoundCommitment>,
    /// Every batch of the round (the verifier recomputes the round root).
    pub round_batches: Vec<BatchRecord>,
    /// Which check this is.
    #[serde(default)]
    pub check: CheckKind,
    /// For a dispute check: the coordinator's signed dispute commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<Signed<DisputeCommitment>>,
    /// The revealed nonce: the round's, or the dispute nonce for a dispute check.
    #[serde(with = "hexser::arr")]
    pub nonce: Digest,
    /// The node under verification.
    pub node: PublicKey,
    /// The sampled blocks.
    pub samples: Vec<SampledBlock>,
    /// For an escalated check: the verdict of the check it escalates, as the coordinator
    /// accepted it. The escalated check's decision depends on it: when both verifiers are
    /// of the node's determinism class and re-rendered a block to the same bytes, bytes
    /// the node committed differently, two independent renders agree (the verifier
    /// crate's `verify::evidence`), and the node is never paid. Absent for first and
    /// dispute checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Signed<Verdict>>,
}

/// A verifier's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerdictMessage {
    /// [`WIRE_VERSION`].
    pub version: u32,
    /// The request answered.
    pub request_id: String,
    /// The signed verdict.
    pub verdict: Signed<Verdict>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmet_requirements_name_the_class_or_the_memory() {
        let field = |s: &str| s.to_string();
        let class = DeterminismClass {
            backend: field("vulkan"),
            adapter: field("llvmpipe"),
            driver: field("llvmpipe"),
            driver_info: field("Mesa"),
            renderer_build: field("tessera-renderer 0.1.0"),
            shader_hash: field("00"),
        };
        let caps = Capabilities {
            class: class.clone(),
            memory_bytes: 1 << 30,
            slots: 1,
            software: field("tessera"),
        };
        let mut req = Requirements {
            class_id: Some(class.id()),
            min_memory_bytes: 1 << 30,
        };
        assert_eq!(caps.meets(&req), Ok(()));
        req.min_memory_bytes += 1;
        assert_eq!(
            caps.meets(&req),
            Err(Unmet::Memory {
                want: (1 << 30) + 1,
                have: 1 << 30
            })
        );
        req.class_id = Some([7; 32]);
        let err = caps.meets(&req).unwrap_err();
        assert_eq!(
            err,
            Unmet::Class {
                want: [7; 32],
                have: class.id()
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "job requires determinism class 070707070707, this renderer is {}",
                hex::encode(&class.id()[..6])
            )
        );
    }
}
