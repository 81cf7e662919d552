//! Checks shared by the verifier and the auditor: batch integrity, round roots, sample
//! derivation, inclusion proofs and the re-derivation of a verdict. Each failure is a
//! [`CheckError`] that names the thing and the values.

use crate::verify::decision_for;
use tessera_protocol::bundle::{BatchRecord, SampleProof};
use tessera_protocol::canonical::{tile_hash, JobId, LeafInput};
use tessera_protocol::keys::{KeyError, PublicKey};
use tessera_protocol::merkle;
use tessera_protocol::sampling::{nonce_commitment, sample_indices, sample_seed};
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
    /// Leaves committed.
    pub n: u32,
    /// Leaves to sample (before capping at n).
    pub k: u32,
    /// Sampled leaf indices, ascending.
    pub indices: Vec<u32>,
}

/// Derive seed, k and indices of one check of `node` from the manifest, the round
/// commitment (trust snapshot, root), the nonce (the round's, or the dispute nonce for a
/// dispute check) and the batches. k is the node's k for its trust and the tier, times the
/// check's multiplier; an escalated check's indices contain its first check's (the same
/// shuffle, drawn further).
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
    let n = node_leaves(batches, node).len() as u32;
    let k = manifest
        .sampling
        .node_k(&manifest.tier, snapshot.trust)
        .saturating_mul(check.k_multiplier(manifest.tolerance.escalation_multiplier));
    let seed = sample_seed(&commitment.round_root, nonce, &manifest.job_id, node);
    Ok(ExpectedSample {
        seed,
        n,
        k,
        indices: sample_indices(&seed, n, k),
    })
}

/// Build inclusion proofs for the sampled leaf indices of `node`.
pub fn build_proofs(
    batches: &[BatchRecord],
    node: &PublicKey,
    indices: &[u32],
) -> Vec<SampleProof> {
    let leaves = node_leaves(batches, node);
    indices
        .iter()
        .filter_map(|&i| {
            let &(bi, pos) = leaves.get(i as usize)?;
            let b = &batches[bi];
            let all: Vec<Digest> = b.tiles.iter().map(|t| t.leaf).collect();
            Some(SampleProof {
                leaf_index: i,
                batch_id: b.signed.statement.batch_id,
                position: pos as u32,
                leaf: all[pos],
                proof: merkle::prove(&all, &[pos]),
            })
        })
        .collect()
}

/// Check one inclusion proof against the batch it names.
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
    /// It checked other leaves than sampling drew.
    #[error("checked leaves {checked:?}, sampled {sampled:?}")]
    Leaves {
        /// The leaf indices the verdict checked.
        checked: Vec<u32>,
        /// The leaf indices sampling drew.
        sampled: Vec<u32>,
    },
    /// Delivered tiles and samples are not equally many.
    #[error("{delivered} delivered tiles recorded for {samples} samples")]
    DeliveredCount {
        /// Delivered tiles recorded.
        delivered: usize,
        /// Samples in the verdict.
        samples: usize,
    },
    /// A sample's committed tile is not the batch's.
    #[error("leaf {leaf}: committed tile differs from the batch")]
    CommittedTile {
        /// The leaf index.
        leaf: u32,
    },
    /// A sample's `delivered_ok` contradicts the delivered bytes.
    #[error("leaf {leaf}: 'delivered_ok' contradicts the delivered bytes")]
    DeliveredOk {
        /// The leaf index.
        leaf: u32,
    },
    /// A sample's `matched` contradicts its hashes.
    #[error("leaf {leaf}: 'matched' contradicts the hashes")]
    Matched {
        /// The leaf index.
        leaf: u32,
    },
    /// Identical bytes reported with non-identical metrics.
    #[error("leaf {leaf}: identical bytes with non-identical metrics")]
    IdenticalMetrics {
        /// The leaf index.
        leaf: u32,
    },
    /// A sample's band is not the one its metrics give under the signed tolerance.
    #[error(
        "leaf {leaf}: band {band:?} does not follow from its metrics under the manifest's \
         tolerance"
    )]
    Band {
        /// The leaf index.
        leaf: u32,
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

/// `faults` as one line, `; `-separated (how the auditor and the coordinator show them).
pub fn join_faults(faults: &[VerdictFault]) -> String {
    faults
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything about one verdict that follows from the rules, re-derived: the job, round,
/// check and node it names; the seed, n and k; the sampled leaves and the committed tile
/// of each; `delivered_ok` from `delivered` (the delivered bytes of each sampled leaf, in
/// sample order); `matched` from the hashes; the band of each sample from its metrics
/// under the manifest's signed tolerance; and the decision from the bands and the kind
/// of check (so a first check never fails a node whose delivered tiles hash to their
/// leaves). The coordinator applies a verdict only when this is empty, and `tessera
/// audit` reports the same list. The signature is checked apart (`Signed::verify`); the
/// metrics themselves are the verifier's word, the one thing re-rendering checks.
#[allow(clippy::too_many_arguments)] // everything a verdict is judged against, one value each
pub fn verdict_errors(
    m: &JobManifest,
    batches: &[BatchRecord],
    node: &PublicKey,
    round: u32,
    check: CheckKind,
    expected: &ExpectedSample,
    delivered: &[impl AsRef<[u8]>],
    v: &Verdict,
) -> Vec<VerdictFault> {
    let mut verr = Vec::new();
    if v.job_id != m.job_id || v.round != round || v.check != check || v.node != *node {
        verr.push(VerdictFault::Subject);
    }
    if v.seed != expected.seed || v.n_committed != expected.n || v.k != expected.k {
        verr.push(VerdictFault::Seed);
    }
    let vidx: Vec<u32> = v.samples.iter().map(|s| s.leaf_index).collect();
    if vidx != expected.indices {
        verr.push(VerdictFault::Leaves {
            checked: vidx,
            sampled: expected.indices.clone(),
        });
    }
    if delivered.len() != v.samples.len() {
        verr.push(VerdictFault::DeliveredCount {
            delivered: delivered.len(),
            samples: v.samples.len(),
        });
    }
    let leaves = node_leaves(batches, node);
    for (i, s) in v.samples.iter().enumerate() {
        if let Some(&(bi, pos)) = leaves.get(s.leaf_index as usize) {
            let t = &batches[bi].tiles[pos];
            if t.tile_hash != s.committed_hash
                || t.tile_index != s.tile_index
                || batches[bi].signed.statement.frame != s.frame
            {
                verr.push(VerdictFault::CommittedTile { leaf: s.leaf_index });
            }
            if let Some(bytes) = delivered.get(i) {
                let bytes = bytes.as_ref();
                let ok = tile_hash(bytes) == t.tile_hash && bytes.len() == t.rect.canonical_len();
                if ok != s.delivered_ok {
                    verr.push(VerdictFault::DeliveredOk { leaf: s.leaf_index });
                }
            }
        }
        if s.matched != (s.rerender_hash == s.committed_hash) {
            verr.push(VerdictFault::Matched { leaf: s.leaf_index });
        }
        if s.matched && s.metrics != TileMetrics::IDENTICAL {
            verr.push(VerdictFault::IdenticalMetrics { leaf: s.leaf_index });
        }
        if s.delivered_ok && s.band != m.tolerance.band(s.matched, &s.metrics) {
            verr.push(VerdictFault::Band {
                leaf: s.leaf_index,
                band: s.band,
            });
        }
    }
    if v.decision != decision_for(v.check, &v.samples) {
        verr.push(VerdictFault::Decision {
            decision: v.decision,
        });
    }
    verr
}
