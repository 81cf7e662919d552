//! Checks shared by the verifier and the auditor: batch integrity, round roots, sample
//! derivation, inclusion proofs and the re-derivation of a verdict. Each failure is a
//! [`CheckError`] that names the thing and the values.

use crate::verify::{decision_for, evidence, sample_band};
use tessera_protocol::blocks::{self, BlockRef};
use tessera_protocol::bundle::{BatchRecord, SampleProof};
use tessera_protocol::canonical::{JobId, LeafInput};
use tessera_protocol::keys::{KeyError, PublicKey};
use tessera_protocol::merkle;
use tessera_protocol::sampling::{committed_blocks, nonce_commitment, sample_blocks, sample_seed};
use tessera_protocol::statements::{
    CheckKind, Decision, JobManifest, RoundCommitment, Signed, Verdict,
};
use tessera_protocol::tolerance::{Band, TileMetrics};
use tessera_protocol::{tile_layout, Digest, TileRect};

/// Which batch a [`CheckError`] is about, shown as `batch 3 (frame 0, node 9f2c…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRef {
    /// The batch id.
    pub batch_id: u32,
    /// Its frame.
    pub frame: u32,
    /// The node that committed it.
    pub node: PublicKey,
}

impl std::fmt::Display for BatchRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch {} (frame {}, node {})",
            self.batch_id,
            self.frame,
            self.node.short()
        )
    }
}

/// Why a round's batches have no root ([`round_root`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoundRootError {
    /// Two batches are out of order or share an id.
    #[error("batches are not in strictly ascending batch-id order")]
    Order,
    /// The round has no batch.
    #[error("round has no batches")]
    Empty,
}

/// Why a batch, a round commitment, a nonce, a sample or an inclusion proof does not
/// check. The messages are those the verifier parks requests with and the auditor
/// reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The batch's signature does not verify.
    #[error("{batch}: {source}")]
    BatchSignature {
        /// The batch.
        batch: BatchRef,
        /// What the signature check said.
        source: KeyError,
    },
    /// The batch is signed by someone else than the node it names.
    #[error("{batch}: signed by {} instead of the node", .signer.short())]
    BatchSigner {
        /// The batch.
        batch: BatchRef,
        /// Its signer.
        signer: PublicKey,
    },
    /// The batch names another job.
    #[error("{batch}: job id {} is not the manifest's", hex::encode(.job_id))]
    BatchJob {
        /// The batch.
        batch: BatchRef,
        /// The job id it names.
        job_id: JobId,
    },
    /// The batch's frame is outside the job's frames.
    #[error("{batch}: frame outside {first}..{last}")]
    BatchFrame {
        /// The batch.
        batch: BatchRef,
        /// The job's first frame.
        first: u32,
        /// The job's last frame.
        last: u32,
    },
    /// Leaf count, tile ids and leaves are not equally many (or there are none).
    #[error("{batch}: leaf count {leaf_count} / {tile_ids} tile ids / {leaves} leaves disagree")]
    LeafCount {
        /// The batch.
        batch: BatchRef,
        /// The signed leaf count.
        leaf_count: u32,
        /// The signed tile ids.
        tile_ids: usize,
        /// The leaves recorded.
        leaves: usize,
    },
    /// A leaf is for another tile than the commitment says at its position.
    #[error("{batch}: leaf {position} is tile {tile} but the commitment says {committed}")]
    LeafTile {
        /// The batch.
        batch: BatchRef,
        /// The leaf's position in the batch.
        position: usize,
        /// The tile the leaf names.
        tile: u32,
        /// The tile the signed commitment names there.
        committed: u32,
    },
    /// A tile's rectangle is not the layout's for its index.
    #[error("{batch}: tile {tile} has rect {rect} which is not the layout's")]
    TileRect {
        /// The batch.
        batch: BatchRef,
        /// The tile index.
        tile: u32,
        /// The rectangle recorded.
        rect: TileRect,
    },
    /// A leaf is not the digest of its fields.
    #[error(
        "{batch}: tile {tile}: leaf mismatch: expected {}, got {}",
        hex::encode(.expected),
        hex::encode(.got)
    )]
    LeafMismatch {
        /// The batch.
        batch: BatchRef,
        /// The tile index.
        tile: u32,
        /// The leaf recomputed from the fields.
        expected: Digest,
        /// The leaf recorded.
        got: Digest,
    },
    /// The batch root is not the Merkle root of the leaves.
    #[error(
        "{batch}: batch root mismatch: expected {}, got {}",
        hex::encode(.expected),
        hex::encode(.got)
    )]
    BatchRoot {
        /// The batch.
        batch: BatchRef,
        /// The root over the leaves.
        expected: Digest,
        /// The signed root.
        got: Digest,
    },
    /// The round commitment's signature does not verify.
    #[error("round {round} commitment: {source}")]
    CommitmentSignature {
        /// The round.
        round: u32,
        /// What the signature check said.
        source: KeyError,
    },
    /// The round commitment is not signed by the coordinator.
    #[error("round {round} commitment: not signed by the coordinator")]
    CommitmentSigner {
        /// The round.
        round: u32,
    },
    /// The round commitment names another job or round.
    #[error(
        "round {round} commitment: names job {} round {named_round}",
        hex::encode(.job_id)
    )]
    CommitmentNames {
        /// The round checked.
        round: u32,
        /// The job it names.
        job_id: JobId,
        /// The round it names.
        named_round: u32,
    },
    /// The round's batches have no root.
    #[error("round {round}: {source}")]
    RoundRoot {
        /// The round.
        round: u32,
        /// Why.
        source: RoundRootError,
    },
    /// The committed root or batch count is not the batches'.
    #[error(
        "round {round} commitment: round root {} over {n_batches} batches does not match the \
         batches (root {}, {batches} batches)",
        hex::encode(.committed_root),
        hex::encode(.root)
    )]
    CommitmentRoot {
        /// The round.
        round: u32,
        /// The committed root.
        committed_root: Digest,
        /// The committed batch count.
        n_batches: u32,
        /// The root over the batches.
        root: Digest,
        /// The batches given.
        batches: usize,
    },
    /// The dispute nonce does not hash to the manifest's dispute commitment.
    #[error(
        "dispute nonce does not hash to the manifest's commitment {}",
        hex::encode(.commitment)
    )]
    DisputeNonce {
        /// The manifest's dispute nonce commitment.
        commitment: Digest,
    },
    /// The manifest has no nonce commitment for the round.
    #[error("round {round}: the manifest commits to only {committed} nonces")]
    NoNonceCommitment {
        /// The round.
        round: u32,
        /// The nonce commitments in the manifest.
        committed: usize,
    },
    /// The revealed nonce does not hash to the manifest's commitment for the round.
    #[error(
        "round {round}: revealed nonce does not hash to the manifest's commitment {}",
        hex::encode(.commitment)
    )]
    Nonce {
        /// The round.
        round: u32,
        /// The manifest's commitment for it.
        commitment: Digest,
    },
    /// The node has no trust snapshot in the round commitment.
    #[error("round {round}: node {} is not in the round commitment", .node.short())]
    NodeNotCommitted {
        /// The round.
        round: u32,
        /// The node.
        node: PublicKey,
    },
    /// A proof names a leaf index the node does not have.
    #[error("sample leaf {leaf} of node {}: no such leaf", .node.short())]
    NoSuchLeaf {
        /// The leaf index.
        leaf: u32,
        /// The node.
        node: PublicKey,
    },
    /// A proof names another batch, position or leaf than where the leaf is.
    #[error(
        "sample leaf {leaf} of node {}: proof names batch {batch_id} position {position} which \
         is not where the leaf is",
        .node.short()
    )]
    ProofPlace {
        /// The leaf index.
        leaf: u32,
        /// The node.
        node: PublicKey,
        /// The batch the proof names.
        batch_id: u32,
        /// The position the proof names.
        position: u32,
    },
    /// A proof names a block its tile does not have.
    #[error("sample leaf {leaf} of node {}: its tile has no block {block}", .node.short())]
    NoSuchBlock {
        /// The leaf index.
        leaf: u32,
        /// The block named.
        block: u32,
        /// The node.
        node: PublicKey,
    },
    /// The block's proof does not reach its tile's hash in the leaf.
    #[error(
        "sample leaf {leaf} block {block} of node {}: block proof does not reach tile hash {}",
        .node.short(),
        hex::encode(.tile_hash)
    )]
    BlockProof {
        /// The leaf index.
        leaf: u32,
        /// The block.
        block: u32,
        /// The node.
        node: PublicKey,
        /// The tile hash the leaf commits to.
        tile_hash: Digest,
    },
    /// The Merkle proof does not reach the batch root.
    #[error(
        "sample leaf {leaf} of node {}: Merkle proof does not reach batch root {}",
        .node.short(),
        hex::encode(.batch_root)
    )]
    ProofRoot {
        /// The leaf index.
        leaf: u32,
        /// The node.
        node: PublicKey,
        /// The root of the batch that holds the leaf.
        batch_root: Digest,
    },
}

/// Check one signed batch against the manifest: signature, signer = node, tile ids, each
/// leaf recomputed from its fields, leaf count, and the batch root.
pub fn check_batch(
    batch: &BatchRecord,
    manifest: &JobManifest,
    layout: &[TileRect],
) -> Result<(), CheckError> {
    let b = &batch.signed.statement;
    let what = BatchRef {
        batch_id: b.batch_id,
        frame: b.frame,
        node: b.node,
    };
    batch
        .signed
        .verify()
        .map_err(|source| CheckError::BatchSignature {
            batch: what,
            source,
        })?;
    if batch.signed.signer != b.node {
        return Err(CheckError::BatchSigner {
            batch: what,
            signer: batch.signed.signer,
        });
    }
    if b.job_id != manifest.job_id {
        return Err(CheckError::BatchJob {
            batch: what,
            job_id: b.job_id,
        });
    }
    if b.frame < manifest.frame_start || b.frame > manifest.frame_end {
        return Err(CheckError::BatchFrame {
            batch: what,
            first: manifest.frame_start,
            last: manifest.frame_end,
        });
    }
    if b.tile_ids.len() != batch.tiles.len()
        || b.leaf_count as usize != batch.tiles.len()
        || batch.tiles.is_empty()
    {
        return Err(CheckError::LeafCount {
            batch: what,
            leaf_count: b.leaf_count,
            tile_ids: b.tile_ids.len(),
            leaves: batch.tiles.len(),
        });
    }
    let mut leaves = Vec::with_capacity(batch.tiles.len());
    for (pos, (t, id)) in batch.tiles.iter().zip(&b.tile_ids).enumerate() {
        if t.tile_index != *id {
            return Err(CheckError::LeafTile {
                batch: what,
                position: pos,
                tile: t.tile_index,
                committed: *id,
            });
        }
        if layout.get(*id as usize) != Some(&t.rect) {
            return Err(CheckError::TileRect {
                batch: what,
                tile: *id,
                rect: t.rect,
            });
        }
        let leaf = LeafInput {
            job_id: b.job_id,
            frame: b.frame,
            rect: t.rect,
            spp: manifest.settings.spp,
            class_id: b.class_id,
            tile_hash: t.tile_hash,
        }
        .leaf();
        if leaf != t.leaf {
            return Err(CheckError::LeafMismatch {
                batch: what,
                tile: *id,
                expected: leaf,
                got: t.leaf,
            });
        }
        leaves.push(leaf);
    }
    let root = merkle::root(&leaves).expect("non-empty");
    if root != b.batch_root {
        return Err(CheckError::BatchRoot {
            batch: what,
            expected: root,
            got: b.batch_root,
        });
    }
    Ok(())
}

/// Root over the digests of a round's signed batches, in batch-id order.
pub fn round_root(batches: &[BatchRecord]) -> Result<Digest, RoundRootError> {
    let ids: Vec<u32> = batches
        .iter()
        .map(|b| b.signed.statement.batch_id)
        .collect();
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(RoundRootError::Order);
    }
    let digests: Vec<Digest> = batches.iter().map(|b| b.signed.digest()).collect();
    merkle::root(&digests).ok_or(RoundRootError::Empty)
}

/// Check a round commitment: signed by the coordinator, for this job, and fixing exactly
/// `batches`.
pub fn check_round_commitment(
    commitment: &Signed<RoundCommitment>,
    coordinator: &PublicKey,
    job_id: &JobId,
    round: u32,
    batches: &[BatchRecord],
) -> Result<(), CheckError> {
    commitment
        .verify()
        .map_err(|source| CheckError::CommitmentSignature { round, source })?;
    if commitment.signer != *coordinator {
        return Err(CheckError::CommitmentSigner { round });
    }
    let c = &commitment.statement;
    if c.job_id != *job_id || c.round != round {
        return Err(CheckError::CommitmentNames {
            round,
            job_id: c.job_id,
            named_round: c.round,
        });
    }
    let root = round_root(batches).map_err(|source| CheckError::RoundRoot { round, source })?;
    if root != c.round_root || c.n_batches as usize != batches.len() {
        return Err(CheckError::CommitmentRoot {
            round,
            committed_root: c.round_root,
            n_batches: c.n_batches,
            root,
            batches: batches.len(),
        });
    }
    Ok(())
}

/// Check the nonce a check was seeded with: the round's (against the manifest's
/// commitment for `round`), or for a dispute check the dispute nonce.
pub fn check_check_nonce(
    manifest: &JobManifest,
    round: u32,
    check: CheckKind,
    nonce: &Digest,
) -> Result<(), CheckError> {
    if !check.dispute {
        return check_nonce(manifest, round, nonce);
    }
    if nonce_commitment(nonce) != manifest.dispute_nonce_commitment {
        return Err(CheckError::DisputeNonce {
            commitment: manifest.dispute_nonce_commitment,
        });
    }
    Ok(())
}

/// Check a revealed nonce against the manifest's commitment for `round`.
pub fn check_nonce(manifest: &JobManifest, round: u32, nonce: &Digest) -> Result<(), CheckError> {
    let Some(expected) = manifest.nonce_commitments.get(round as usize) else {
        return Err(CheckError::NoNonceCommitment {
            round,
            committed: manifest.nonce_commitments.len(),
        });
    };
    if nonce_commitment(nonce) != *expected {
        return Err(CheckError::Nonce {
            round,
            commitment: *expected,
        });
    }
    Ok(())
}

/// A node's leaves in a round: (batch index in `batches`, position in the batch), ordered by
/// batch id then position. Index `i` in this list is leaf index `i` for sampling.
pub fn node_leaves(batches: &[BatchRecord], node: &PublicKey) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        if b.signed.statement.node == *node {
            out.extend((0..b.tiles.len()).map(|p| (bi, p)));
        }
    }
    out
}

/// What sampling must give for a node in a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSample {
    /// The seed.
    pub seed: Digest,
    /// Blocks committed (over all the node's leaves of the round).
    pub n: u32,
    /// Pixels to draw (at most this many blocks are sampled).
    pub k: u32,
    /// The sampled blocks, ascending.
    pub indices: Vec<BlockRef>,
}

/// Derive seed, k and indices of one check of `node` from the manifest, the round
/// commitment (trust snapshot, root), the nonce (the round's, or the dispute nonce for a
/// dispute check) and the batches. k is the node's k for its trust and the tier, times the
/// check's multiplier; the blocks are `sampling::sample_blocks` over the node's leaves in
/// leaf order; an escalated check's blocks contain its first check's (the same stream,
/// drawn further).
pub fn expected_sample(
    manifest: &JobManifest,
    commitment: &RoundCommitment,
    nonce: &Digest,
    batches: &[BatchRecord],
    node: &PublicKey,
    check: CheckKind,
) -> Result<ExpectedSample, CheckError> {
    let snapshot =
        commitment
            .nodes
            .iter()
            .find(|n| n.node == *node)
            .ok_or(CheckError::NodeNotCommitted {
                round: commitment.round,
                node: *node,
            })?;
    let tiles: Vec<TileRect> = node_leaves(batches, node)
        .into_iter()
        .map(|(bi, pos)| batches[bi].tiles[pos].rect)
        .collect();
    let n = u32::try_from(committed_blocks(&tiles)).unwrap_or(u32::MAX);
    let k = manifest
        .sampling
        .node_k(&manifest.tier, snapshot.trust)
        .saturating_mul(check.k_multiplier(manifest.tolerance.escalation_multiplier));
    let seed = sample_seed(&commitment.round_root, nonce, &manifest.job_id, node);
    Ok(ExpectedSample {
        seed,
        n,
        k,
        indices: sample_blocks(&seed, &tiles, k),
    })
}

/// Build the proofs of the sampled blocks of `node`, with each block's bytes:
/// `tile_bytes(batch index, position)` gives the stored bytes of the leaf's tile (checked
/// against its leaf when the result was taken). Blocks whose leaf or block does not exist
/// (or whose tile's bytes are not its length) are left out (the verifier then refuses the
/// sample).
pub fn build_proofs<E>(
    batches: &[BatchRecord],
    node: &PublicKey,
    blocks_sampled: &[BlockRef],
    tile_bytes: &mut dyn FnMut(usize, usize) -> Result<Vec<u8>, E>,
) -> Result<Vec<(SampleProof, Vec<u8>)>, E> {
    let leaves = node_leaves(batches, node);
    let mut out = Vec::with_capacity(blocks_sampled.len());
    // The blocks come ascending by leaf: each tile is read, cut into block hashes and
    // proved in its batch once, however many of its blocks were drawn.
    struct Leaf {
        index: u32,
        bytes: Vec<u8>,
        hashes: Vec<Digest>,
        leaf: Digest,
        proof: Vec<Digest>,
    }
    let mut current: Option<Leaf> = None;
    for r in blocks_sampled {
        let Some(&(bi, pos)) = leaves.get(r.leaf as usize) else {
            continue;
        };
        let b = &batches[bi];
        let rect = b.tiles[pos].rect;
        if current.as_ref().map(|c| c.index) != Some(r.leaf) {
            let bytes = tile_bytes(bi, pos)?;
            let all: Vec<Digest> = b.tiles.iter().map(|t| t.leaf).collect();
            current = Some(Leaf {
                index: r.leaf,
                hashes: blocks::block_hashes(&bytes, rect).unwrap_or_default(),
                bytes,
                leaf: all[pos],
                proof: merkle::prove(&all, &[pos]),
            });
        }
        let c = current.as_ref().expect("set above");
        let Some(block_proof) = blocks::prove_block(&c.hashes, r.block) else {
            continue;
        };
        let block_bytes = blocks::block_bytes(&c.bytes, rect, r.block).unwrap_or_default();
        out.push((
            SampleProof {
                leaf_index: r.leaf,
                block: r.block,
                block_hash: c.hashes[r.block as usize],
                block_proof,
                batch_id: b.signed.statement.batch_id,
                position: pos as u32,
                leaf: c.leaf,
                proof: c.proof.clone(),
            },
            block_bytes,
        ));
    }
    Ok(out)
}

/// Check one sampled block's proofs: the block's hash against its tile's hash in the
/// leaf, and the leaf against the batch it names.
pub fn check_proof(
    batches: &[BatchRecord],
    node: &PublicKey,
    p: &SampleProof,
) -> Result<(), CheckError> {
    let leaves = node_leaves(batches, node);
    let &(bi, pos) = leaves
        .get(p.leaf_index as usize)
        .ok_or(CheckError::NoSuchLeaf {
            leaf: p.leaf_index,
            node: *node,
        })?;
    let b = &batches[bi];
    if b.signed.statement.batch_id != p.batch_id
        || pos as u32 != p.position
        || b.tiles[pos].leaf != p.leaf
    {
        return Err(CheckError::ProofPlace {
            leaf: p.leaf_index,
            node: *node,
            batch_id: p.batch_id,
            position: p.position,
        });
    }
    let tile = &b.tiles[pos];
    let n = blocks::n_blocks(tile.rect);
    if p.block >= n {
        return Err(CheckError::NoSuchBlock {
            leaf: p.leaf_index,
            block: p.block,
            node: *node,
        });
    }
    if !blocks::verify_block(&tile.tile_hash, p.block, &p.block_hash, n, &p.block_proof) {
        return Err(CheckError::BlockProof {
            leaf: p.leaf_index,
            block: p.block,
            node: *node,
            tile_hash: tile.tile_hash,
        });
    }
    let s = &b.signed.statement;
    if !merkle::verify(
        &s.batch_root,
        &[pos],
        &[p.leaf],
        s.leaf_count as usize,
        &p.proof,
    ) {
        return Err(CheckError::ProofRoot {
            leaf: p.leaf_index,
            node: *node,
            batch_root: s.batch_root,
        });
    }
    Ok(())
}

/// The frame's tile layout from the manifest.
pub fn layout(manifest: &JobManifest) -> Vec<TileRect> {
    tile_layout(
        manifest.settings.width,
        manifest.settings.height,
        manifest.tile_size,
    )
}

/// One way a verdict does not follow from the rules ([`verdict_errors`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictFault {
    /// The verdict names another job, round, check or node than it was asked about.
    #[error("names another job, round, check or node")]
    Subject,
    /// Its seed, n or k are not the derived ones.
    #[error("seed, n or k differ from the derived ones")]
    Seed,
    /// It checked other blocks than sampling drew.
    #[error("checked blocks {}, sampled {}", list(.checked), list(.sampled))]
    Leaves {
        /// The blocks the verdict checked.
        checked: Vec<BlockRef>,
        /// The blocks sampling drew.
        sampled: Vec<BlockRef>,
    },
    /// Delivered blocks, proofs and samples are not equally many.
    #[error("{delivered} delivered blocks and {proofs} proofs recorded for {samples} samples")]
    DeliveredCount {
        /// Delivered blocks recorded.
        delivered: usize,
        /// Proofs recorded.
        proofs: usize,
        /// Samples in the verdict.
        samples: usize,
    },
    /// A sample's committed block is not the proved one, or its tile not the batch's.
    #[error("{at}: committed block differs from the proof or the batch")]
    CommittedTile {
        /// The block.
        at: BlockRef,
    },
    /// A sample's `delivered_ok` contradicts the delivered bytes.
    #[error("{at}: 'delivered_ok' contradicts the delivered bytes")]
    DeliveredOk {
        /// The block.
        at: BlockRef,
    },
    /// A sample's `matched` contradicts its hashes.
    #[error("{at}: 'matched' contradicts the hashes")]
    Matched {
        /// The block.
        at: BlockRef,
    },
    /// Identical bytes reported with non-identical metrics.
    #[error("{at}: identical bytes with non-identical metrics")]
    IdenticalMetrics {
        /// The block.
        at: BlockRef,
    },
    /// A sample's band is not the one its integrity, hashes and metrics give under the
    /// signed tolerance ([`sample_band`]).
    #[error("{at}: band {band:?} does not follow from its metrics under the manifest's tolerance")]
    Band {
        /// The block.
        at: BlockRef,
        /// The band the verdict reports.
        band: Band,
    },
    /// The aggregate's band is not the one its metrics give, or every block matched and
    /// the aggregate is not identical.
    #[error(
        "aggregate band {band:?} does not follow from the aggregate metrics under the \
         manifest's tolerance"
    )]
    Aggregate {
        /// The band the verdict reports.
        band: Band,
    },
    /// The decision is not the one its samples give.
    #[error("decision {decision:?} does not follow from the samples")]
    Decision {
        /// The decision the verdict reports.
        decision: Decision,
    },
}

fn list(blocks: &[BlockRef]) -> String {
    let shown: Vec<String> = blocks
        .iter()
        .take(8)
        .map(|b| format!("{}/{}", b.leaf, b.block))
        .collect();
    let more = blocks.len().saturating_sub(shown.len());
    if more > 0 {
        format!("[{} and {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// `faults` as one line, `; `-separated (how the auditor and the coordinator show them).
pub fn join_faults(faults: &[VerdictFault]) -> String {
    faults
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything about one verdict that follows from the rules, re-derived: the job, round,
/// check and node it names; the seed, n and k; the sampled blocks, and for each the
/// committed block (its hash as `proofs` prove it, which [`check_proof`] checks apart)
/// and tile; `delivered_ok` from `delivered` (the delivered bytes of each sampled block,
/// in sample order); `matched` from the hashes; each block's band from `delivered_ok`,
/// `matched` and its metrics ([`sample_band`]) and the aggregate's band from the
/// aggregate metrics, under the manifest's signed tolerance; and the decision from the
/// bands, the kind of check and the evidence of the node's own class
/// ([`crate::verify::evidence`], for an escalated check with `first`, the verdict of the
/// check it escalates) (so a first check never fails a node whose delivered blocks hash
/// to their commitments). The coordinator
/// applies a verdict only when this is empty, and `tessera audit` reports the same list.
/// The signature is checked apart (`Signed::verify`); the metrics themselves are the
/// verifier's word, the one thing re-rendering checks.
#[allow(clippy::too_many_arguments)] // everything a verdict is judged against, one value each
pub fn verdict_errors(
    m: &JobManifest,
    batches: &[BatchRecord],
    node: &PublicKey,
    round: u32,
    check: CheckKind,
    expected: &ExpectedSample,
    proofs: &[SampleProof],
    delivered: &[impl AsRef<[u8]>],
    verdict: &Signed<Verdict>,
    first: Option<&Signed<Verdict>>,
) -> Vec<VerdictFault> {
    let v = &verdict.statement;
    let mut verr = Vec::new();
    if v.job_id != m.job_id || v.round != round || v.check != check || v.node != *node {
        verr.push(VerdictFault::Subject);
    }
    if v.seed != expected.seed || v.n_committed != expected.n || v.k != expected.k {
        verr.push(VerdictFault::Seed);
    }
    let checked: Vec<BlockRef> = v
        .samples
        .iter()
        .map(|s| BlockRef {
            leaf: s.leaf_index,
            block: s.block,
        })
        .collect();
    if checked != expected.indices {
        verr.push(VerdictFault::Leaves {
            checked: checked.clone(),
            sampled: expected.indices.clone(),
        });
    }
    if delivered.len() != v.samples.len() || proofs.len() != v.samples.len() {
        verr.push(VerdictFault::DeliveredCount {
            delivered: delivered.len(),
            proofs: proofs.len(),
            samples: v.samples.len(),
        });
    }
    let leaves = node_leaves(batches, node);
    for (i, (s, &at)) in v.samples.iter().zip(&checked).enumerate() {
        let proved = proofs
            .get(i)
            .is_some_and(|p| p.block_ref() == at && p.block_hash == s.committed_hash);
        let block = leaves.get(s.leaf_index as usize).and_then(|&(bi, pos)| {
            let t = &batches[bi].tiles[pos];
            let same_tile =
                t.tile_index == s.tile_index && batches[bi].signed.statement.frame == s.frame;
            same_tile
                .then(|| blocks::block_rect(t.rect, s.block))
                .flatten()
        });
        match block {
            Some(rect) if proved => {
                if let Some(bytes) = delivered.get(i) {
                    let bytes = bytes.as_ref();
                    let ok = blocks::block_hash(bytes) == s.committed_hash
                        && bytes.len() == rect.canonical_len();
                    if ok != s.delivered_ok {
                        verr.push(VerdictFault::DeliveredOk { at });
                    }
                }
            }
            _ => verr.push(VerdictFault::CommittedTile { at }),
        }
        if s.matched != (s.rerender_hash == s.committed_hash) {
            verr.push(VerdictFault::Matched { at });
        }
        if s.matched && s.metrics != TileMetrics::IDENTICAL {
            verr.push(VerdictFault::IdenticalMetrics { at });
        }
        if s.band != sample_band(&m.tolerance, s.delivered_ok, s.matched, &s.metrics) {
            verr.push(VerdictFault::Band { at, band: s.band });
        }
    }
    let all_matched = v.samples.iter().all(|s| s.matched);
    if v.samples.iter().all(|s| s.delivered_ok)
        && (v.aggregate_band != m.tolerance.band(all_matched, &v.aggregate)
            || (all_matched && v.aggregate != TileMetrics::IDENTICAL))
    {
        verr.push(VerdictFault::Aggregate {
            band: v.aggregate_band,
        });
    }
    let evidence = evidence(m, batches, &verdict.signer, v, first);
    if v.decision != decision_for(v.check, &v.samples, v.aggregate_band, evidence) {
        verr.push(VerdictFault::Decision {
            decision: v.decision,
        });
    }
    verr
}
