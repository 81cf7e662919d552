//! The proof bundle, version 3: one JSON document (binary fields hex) that lets anyone audit a
//! job offline: manifest, every batch commitment with its leaves, each round's commitment,
//! revealed nonce, the sampled pixel blocks with their bytes and proofs (block in tile, leaf
//! in batch) and signed verdicts, the final frame and job roots, and the signed payment
//! receipt. Version 3 samples blocks instead of whole tiles (`crate::blocks`).

use crate::blocks::BlockRef;
use crate::hexser;
use crate::keys::PublicKey;
use crate::statements::{
    BatchCommitment, CheckKind, DisputeCommitment, JobManifest, JobRequeue, JobRoots,
    PaymentReceipt, RoundCommitment, Signed, Verdict,
};
use crate::types::{DeterminismClass, Digest, TileRect};
use serde::{Deserialize, Serialize};

/// The `format` field of every bundle.
pub const BUNDLE_FORMAT: &str = "tessera-proof-bundle";
/// The version this code writes and reads.
pub const BUNDLE_VERSION: u32 = 3;

/// A proof bundle.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProofBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Always [`BUNDLE_VERSION`].
    pub version: u32,
    /// The signed job manifest; its signer is the coordinator.
    pub manifest: Signed<JobManifest>,
    /// Nodes that took part, with their determinism class.
    pub nodes: Vec<NodeInfo>,
    /// Verification rounds in order.
    pub rounds: Vec<RoundRecord>,
    /// The final tiles of each frame, in tile order.
    pub frames: Vec<FrameTiles>,
    /// Signed frame roots and job root.
    pub roots: Signed<JobRoots>,
    /// Client disputes, in the order they were opened.
    #[serde(default)]
    pub disputes: Vec<DisputeRecord>,
    /// Its client's requeues after the job failed, in order (each failure refunded the
    /// escrow left; each requeue funded it again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requeues: Vec<Signed<JobRequeue>>,
    /// Signed receipt of every transfer made for the job.
    pub payments: Signed<PaymentReceipt>,
    /// Where the scene file was when the job was rendered: an unsigned hint for
    /// `audit --rerender` (the scene's content hash is what is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_hint: Option<String>,
}

impl ProofBundle {
    /// The work the bundle records: the pixel-samples the nodes rendered (every committed
    /// tile of every round) and those the verifiers re-rendered (every delivered block of
    /// every check: first, escalated and dispute). What it reports is only what the bundle
    /// says; `tessera audit` checks that first.
    pub fn work(&self) -> Work {
        let spp = u64::from(self.manifest.statement.settings.spp);
        let rendered: u64 = self
            .rounds
            .iter()
            .flat_map(|r| &r.batches)
            .flat_map(|b| &b.tiles)
            .map(|t| t.rect.pixels())
            .sum();
        let rerendered: u64 = self
            .rounds
            .iter()
            .flat_map(|r| &r.samples)
            .chain(self.disputes.iter().flat_map(|d| &d.samples))
            .flat_map(|ns| &ns.delivered)
            .map(|d| crate::canonical::pixels(d))
            .sum();
        Work {
            rendered: rendered.saturating_mul(spp),
            rerendered: rerendered.saturating_mul(spp),
        }
    }
}

/// The work of a job ([`ProofBundle::work`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Work {
    /// Pixel-samples rendered by nodes.
    pub rendered: u64,
    /// Pixel-samples re-rendered by verifiers.
    pub rerendered: u64,
}

impl Work {
    /// Re-rendered pixel-samples per rendered one (0 when nothing was rendered).
    pub fn fraction(&self) -> f64 {
        if self.rendered == 0 {
            0.0
        } else {
            self.rerendered as f64 / self.rendered as f64
        }
    }
}

/// A node that took part.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    /// Its key.
    pub key: PublicKey,
    /// A display name.
    pub name: String,
    /// Its determinism class.
    pub class: DeterminismClass,
}

/// One verification round: the batches it fixed, the reveal, the samples and verdicts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoundRecord {
    /// Round number.
    pub round: u32,
    /// Signed batches in batch-id order, each with its leaves.
    pub batches: Vec<BatchRecord>,
    /// The coordinator's signed round commitment (fixes the batches).
    pub commitment: Signed<RoundCommitment>,
    /// The revealed nonce of this round.
    #[serde(with = "hexser::arr")]
    pub nonce: Digest,
    /// Per node and check: the sampled blocks with their proofs and delivered bytes (a
    /// node whose first check escalated has a second, escalated entry).
    pub samples: Vec<NodeSamples>,
    /// The verifiers' signed verdicts, one per entry of `samples`.
    pub verdicts: Vec<Signed<Verdict>>,
}

/// A client's dispute of a finished job: what it fixed, the revealed dispute nonce, and
/// the extra checks with their verdicts. Rounds after `commitment.after_round` re-render
/// the tiles of nodes the dispute failed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DisputeRecord {
    /// The coordinator's signed dispute commitment.
    pub commitment: Signed<DisputeCommitment>,
    /// The revealed dispute nonce (hashes to the manifest's commitment).
    #[serde(with = "hexser::arr")]
    pub nonce: Digest,
    /// Per (round, node) and check: the sampled blocks with their proofs and delivered
    /// bytes.
    pub samples: Vec<NodeSamples>,
    /// One signed verdict per entry of `samples`.
    pub verdicts: Vec<Signed<Verdict>>,
}

/// A signed batch and the leaves it commits to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BatchRecord {
    /// The node's signed commitment.
    pub signed: Signed<BatchCommitment>,
    /// Its tiles in leaf order.
    pub tiles: Vec<LeafRecord>,
}

/// One committed tile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeafRecord {
    /// Tile index in the frame layout.
    pub tile_index: u32,
    /// Tile rectangle.
    pub rect: TileRect,
    /// The tile's hash: the root over its blocks' hashes (`blocks::tile_hash`).
    #[serde(with = "hexser::arr")]
    pub tile_hash: Digest,
    /// The leaf.
    #[serde(with = "hexser::arr")]
    pub leaf: Digest,
}

/// The samples drawn for one node in one round.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeSamples {
    /// The round whose leaves were sampled.
    pub round: u32,
    /// Which check.
    #[serde(default)]
    pub check: CheckKind,
    /// The node.
    pub node: PublicKey,
    /// The sample seed.
    #[serde(with = "hexser::arr")]
    pub seed: Digest,
    /// Blocks the node committed in the round (over all its leaves).
    pub n_committed: u32,
    /// The sampled blocks, ascending (`sampling::sample_blocks`).
    pub indices: Vec<BlockRef>,
    /// A proof per sampled block (same order): the block in its tile, the leaf in its
    /// batch.
    pub proofs: Vec<SampleProof>,
    /// The bytes the node delivered for each sampled block (same order): the evidence an
    /// auditor re-derives the verdict's metrics from, and compares a re-render of another
    /// class against.
    #[serde(with = "hexser::vec_bytes")]
    pub delivered: Vec<Vec<u8>>,
}

/// Inclusion proof of one sampled block: the block's hash in its tile's block tree, and
/// the tile's leaf in its batch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleProof {
    /// Index among the node's leaves of the round.
    pub leaf_index: u32,
    /// The block's index in its tile.
    pub block: u32,
    /// The block's hash (`blocks::block_hash` of its bytes).
    #[serde(with = "hexser::arr")]
    pub block_hash: Digest,
    /// Sibling hashes of the block in its tile's block tree (rs_merkle order).
    #[serde(with = "hexser::vec32")]
    pub block_proof: Vec<Digest>,
    /// The batch holding it.
    pub batch_id: u32,
    /// Position inside the batch.
    pub position: u32,
    /// The leaf.
    #[serde(with = "hexser::arr")]
    pub leaf: Digest,
    /// Sibling hashes of the leaf in its batch (rs_merkle order).
    #[serde(with = "hexser::vec32")]
    pub proof: Vec<Digest>,
}

impl SampleProof {
    /// The block this proves.
    pub fn block_ref(&self) -> BlockRef {
        BlockRef {
            leaf: self.leaf_index,
            block: self.block,
        }
    }
}

/// A frame's final tiles.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FrameTiles {
    /// Frame number.
    pub frame: u32,
    /// Tiles in tile order.
    pub tiles: Vec<FinalTile>,
}

/// A tile as delivered in the final image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FinalTile {
    /// Tile index.
    pub tile_index: u32,
    /// Rectangle.
    pub rect: TileRect,
    /// Its hash (the root over its blocks).
    #[serde(with = "hexser::arr")]
    pub tile_hash: Digest,
    /// Its leaf.
    #[serde(with = "hexser::arr")]
    pub leaf: Digest,
    /// Who rendered it.
    pub node: PublicKey,
    /// In which round.
    pub round: u32,
    /// In which batch.
    pub batch_id: u32,
}
