//! Checks shared by the verifier and the auditor: batch integrity, round roots, sample
//! derivation, inclusion proofs and the re-derivation of a verdict. Each returns an error string that names the thing.

use crate::verify::decision_for;
use tessera_protocol::bundle::{BatchRecord, SampleProof};
use tessera_protocol::canonical::{tile_hash, JobId, LeafInput};
use tessera_protocol::keys::PublicKey;
use tessera_protocol::merkle;
use tessera_protocol::sampling::{nonce_commitment, sample_indices, sample_seed};
use tessera_protocol::statements::{CheckKind, JobManifest, RoundCommitment, Signed, Verdict};
use tessera_protocol::tolerance::TileMetrics;
use tessera_protocol::{tile_layout, Digest, TileRect};

/// Check one signed batch against the manifest: signature, signer = node, tile ids, each
/// leaf recomputed from its fields, leaf count, and the batch root.
pub fn check_batch(
    batch: &BatchRecord,
    manifest: &JobManifest,
    layout: &[TileRect],
) -> Result<(), String> {
    let b = &batch.signed.statement;
    let what = format!(
        "batch {} (frame {}, node {})",
        b.batch_id,
        b.frame,
        b.node.short()
    );
    batch.signed.verify().map_err(|e| format!("{what}: {e}"))?;
    if batch.signed.signer != b.node {
        return Err(format!(
            "{what}: signed by {} instead of the node",
            batch.signed.signer.short()
        ));
    }
    if b.job_id != manifest.job_id {
        return Err(format!(
            "{what}: job id {} is not the manifest's",
            hex::encode(b.job_id)
        ));
    }
    if b.frame < manifest.frame_start || b.frame > manifest.frame_end {
        return Err(format!(
            "{what}: frame outside {}..{}",
            manifest.frame_start, manifest.frame_end
        ));
    }
    if b.tile_ids.len() != batch.tiles.len()
        || b.leaf_count as usize != batch.tiles.len()
        || batch.tiles.is_empty()
    {
        return Err(format!(
            "{what}: leaf count {} / {} tile ids / {} leaves disagree",
            b.leaf_count,
            b.tile_ids.len(),
            batch.tiles.len()
        ));
    }
    let mut leaves = Vec::with_capacity(batch.tiles.len());
    for (pos, (t, id)) in batch.tiles.iter().zip(&b.tile_ids).enumerate() {
        if t.tile_index != *id {
            return Err(format!(
                "{what}: leaf {pos} is tile {} but the commitment says {id}",
                t.tile_index
            ));
        }
        if layout.get(*id as usize) != Some(&t.rect) {
            return Err(format!(
                "{what}: tile {id} has rect {} which is not the layout's",
                t.rect
            ));
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
            return Err(format!(
                "{what}: tile {id}: leaf mismatch: expected {}, got {}",
                hex::encode(leaf),
                hex::encode(t.leaf)
            ));
        }
        leaves.push(leaf);
    }
    let root = merkle::root(&leaves).expect("non-empty");
    if root != b.batch_root {
        return Err(format!(
            "{what}: batch root mismatch: expected {}, got {}",
            hex::encode(root),
            hex::encode(b.batch_root)
        ));
    }
    Ok(())
}

/// Root over the digests of a round's signed batches, in batch-id order.
pub fn round_root(batches: &[BatchRecord]) -> Result<Digest, String> {
    let ids: Vec<u32> = batches
        .iter()
        .map(|b| b.signed.statement.batch_id)
        .collect();
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err("batches are not in strictly ascending batch-id order".into());
    }
    let digests: Vec<Digest> = batches.iter().map(|b| b.signed.digest()).collect();
    merkle::root(&digests).ok_or_else(|| "round has no batches".to_string())
}

/// Check a round commitment: signed by the coordinator, for this job, and fixing exactly
/// `batches`.
pub fn check_round_commitment(
    commitment: &Signed<RoundCommitment>,
    coordinator: &PublicKey,
    job_id: &JobId,
    round: u32,
    batches: &[BatchRecord],
) -> Result<(), String> {
    commitment
        .verify()
        .map_err(|e| format!("round {round} commitment: {e}"))?;
    if commitment.signer != *coordinator {
        return Err(format!(
            "round {round} commitment: not signed by the coordinator"
        ));
    }
    let c = &commitment.statement;
    if c.job_id != *job_id || c.round != round {
        return Err(format!(
            "round {round} commitment: names job {} round {}",
            hex::encode(c.job_id),
            c.round
        ));
    }
    let root = round_root(batches).map_err(|e| format!("round {round}: {e}"))?;
    if root != c.round_root || c.n_batches as usize != batches.len() {
        return Err(format!(
            "round {round} commitment: round root {} over {} batches does not match the batches (root {}, {} batches)",
            hex::encode(c.round_root),
            c.n_batches,
            hex::encode(root),
            batches.len()
        ));
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
) -> Result<(), String> {
    if !check.dispute {
        return check_nonce(manifest, round, nonce);
    }
    if nonce_commitment(nonce) != manifest.dispute_nonce_commitment {
        return Err(format!(
            "dispute nonce does not hash to the manifest's commitment {}",
            hex::encode(manifest.dispute_nonce_commitment)
        ));
    }
    Ok(())
}

/// Check a revealed nonce against the manifest's commitment for `round`.
pub fn check_nonce(manifest: &JobManifest, round: u32, nonce: &Digest) -> Result<(), String> {
    let Some(expected) = manifest.nonce_commitments.get(round as usize) else {
        return Err(format!(
            "round {round}: the manifest commits to only {} nonces",
            manifest.nonce_commitments.len()
        ));
    };
    if nonce_commitment(nonce) != *expected {
        return Err(format!(
            "round {round}: revealed nonce does not hash to the manifest's commitment {}",
            hex::encode(expected)
        ));
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
) -> Result<ExpectedSample, String> {
    let snapshot = commitment
        .nodes
        .iter()
        .find(|n| n.node == *node)
        .ok_or_else(|| {
            format!(
                "round {}: node {} is not in the round commitment",
                commitment.round,
                node.short()
            )
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
) -> Result<(), String> {
    let leaves = node_leaves(batches, node);
    let what = format!("sample leaf {} of node {}", p.leaf_index, node.short());
    let &(bi, pos) = leaves
        .get(p.leaf_index as usize)
        .ok_or_else(|| format!("{what}: no such leaf"))?;
    let b = &batches[bi];
    if b.signed.statement.batch_id != p.batch_id
        || pos as u32 != p.position
        || b.tiles[pos].leaf != p.leaf
    {
        return Err(format!(
            "{what}: proof names batch {} position {} which is not where the leaf is",
            p.batch_id, p.position
        ));
    }
    let s = &b.signed.statement;
    if !merkle::verify(
        &s.batch_root,
        &[pos],
        &[p.leaf],
        s.leaf_count as usize,
        &p.proof,
    ) {
        return Err(format!(
            "{what}: Merkle proof does not reach batch root {}",
            hex::encode(s.batch_root)
        ));
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
) -> Vec<String> {
    let mut verr = Vec::new();
    if v.job_id != m.job_id || v.round != round || v.check != check || v.node != *node {
        verr.push("names another job, round, check or node".to_string());
    }
    if v.seed != expected.seed || v.n_committed != expected.n || v.k != expected.k {
        verr.push("seed, n or k differ from the derived ones".to_string());
    }
    let vidx: Vec<u32> = v.samples.iter().map(|s| s.leaf_index).collect();
    if vidx != expected.indices {
        verr.push(format!(
            "checked leaves {vidx:?}, sampled {:?}",
            expected.indices
        ));
    }
    if delivered.len() != v.samples.len() {
        verr.push(format!(
            "{} delivered tiles recorded for {} samples",
            delivered.len(),
            v.samples.len()
        ));
    }
    let leaves = node_leaves(batches, node);
    for (i, s) in v.samples.iter().enumerate() {
        if let Some(&(bi, pos)) = leaves.get(s.leaf_index as usize) {
            let t = &batches[bi].tiles[pos];
            if t.tile_hash != s.committed_hash
                || t.tile_index != s.tile_index
                || batches[bi].signed.statement.frame != s.frame
            {
                verr.push(format!(
                    "leaf {}: committed tile differs from the batch",
                    s.leaf_index
                ));
            }
            if let Some(bytes) = delivered.get(i) {
                let bytes = bytes.as_ref();
                let ok = tile_hash(bytes) == t.tile_hash && bytes.len() == t.rect.canonical_len();
                if ok != s.delivered_ok {
                    verr.push(format!(
                        "leaf {}: 'delivered_ok' contradicts the delivered bytes",
                        s.leaf_index
                    ));
                }
            }
        }
        if s.matched != (s.rerender_hash == s.committed_hash) {
            verr.push(format!(
                "leaf {}: 'matched' contradicts the hashes",
                s.leaf_index
            ));
        }
        if s.matched && s.metrics != TileMetrics::IDENTICAL {
            verr.push(format!(
                "leaf {}: identical bytes with non-identical metrics",
                s.leaf_index
            ));
        }
        if s.delivered_ok && s.band != m.tolerance.band(s.matched, &s.metrics) {
            verr.push(format!(
                "leaf {}: band {:?} does not follow from its metrics under the manifest's tolerance",
                s.leaf_index, s.band
            ));
        }
    }
    if v.decision != decision_for(v.check, &v.samples) {
        verr.push(format!(
            "decision {:?} does not follow from the samples",
            v.decision
        ));
    }
    verr
}
