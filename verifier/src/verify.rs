//! The verifier's state machine for one request: check everything the coordinator sent,
//! re-render the sampled pixel blocks, compare, and sign the verdict.

use crate::{checks, tolerance};
use std::sync::Arc;
use tessera_protocol::blocks::{block_hash, block_rect, BlockRef};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::statements::{CheckKind, Decision, SampleCheck, Signed, Verdict};
use tessera_protocol::tolerance::{Band, TileMetrics, Tolerance};
use tessera_protocol::wire::VerifyRequest;
use tessera_protocol::TileRenderer;

/// A request that cannot be judged: no verdict is signed for it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Something in the request does not check out (the coordinator's fault, not the node's).
    #[error("verify request {id}: {reason}")]
    BadRequest {
        /// Request id.
        id: String,
        /// What failed.
        reason: String,
    },
    /// A batch, the round commitment, the nonce, the sample or a proof in the request
    /// does not check (the coordinator's fault, not the node's).
    #[error("verify request {id}: {source}")]
    Check {
        /// Request id.
        id: String,
        /// What failed (boxed: it carries digests and keys).
        source: Box<checks::CheckError>,
    },
    /// The re-render itself failed.
    #[error("verify request {id}: re-render of frame {frame} tile {tile} block {block} failed: {reason}")]
    Rerender {
        /// Request id.
        id: String,
        /// Frame.
        frame: u32,
        /// Tile.
        tile: u32,
        /// The block of the tile.
        block: u32,
        /// Renderer error.
        reason: String,
    },
}

/// A verifier: its key and the renderer it re-renders with.
pub struct Verifier {
    key: SecretKey,
    renderer: Arc<dyn TileRenderer>,
}

impl Verifier {
    /// A verifier signing with `key` and re-rendering with `renderer`.
    pub fn new(key: SecretKey, renderer: Arc<dyn TileRenderer>) -> Self {
        Self { key, renderer }
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// Judge one node's work in one round.
    pub fn handle_request(&self, req: &VerifyRequest) -> Result<Signed<Verdict>, VerifyError> {
        let bad = |reason: String| VerifyError::BadRequest {
            id: req.request_id.clone(),
            reason,
        };
        let failed = |source: checks::CheckError| VerifyError::Check {
            id: req.request_id.clone(),
            source: Box::new(source),
        };
        let manifest = &req.manifest.statement;
        // The version first: a manifest of another version may still parse, and would
        // then be refused only as a signature that does not verify.
        manifest.check_version().map_err(|e| bad(e.to_string()))?;
        req.manifest
            .verify()
            .map_err(|e| bad(format!("manifest: {e}")))?;
        if !manifest.verifiers.contains(&self.key.public()) {
            return Err(bad("this verifier is not named in the manifest".into()));
        }
        let round = req.commitment.statement.round;
        checks::check_round_commitment(
            &req.commitment,
            &req.manifest.signer,
            &manifest.job_id,
            round,
            &req.round_batches,
        )
        .map_err(failed)?;
        checks::check_check_nonce(manifest, round, req.check, &req.nonce).map_err(failed)?;
        if req.check.dispute {
            let Some(d) = &req.dispute else {
                return Err(bad("a dispute check without the dispute commitment".into()));
            };
            d.verify()
                .map_err(|e| bad(format!("dispute commitment: {e}")))?;
            if d.signer != req.manifest.signer
                || d.statement.job_id != manifest.job_id
                || !d.statement.checks.contains(&(round, req.node))
            {
                return Err(bad(format!(
                    "the dispute commitment does not cover round {round} of node {}",
                    req.node.short()
                )));
            }
        }
        let layout = checks::layout(manifest);
        for b in &req.round_batches {
            checks::check_batch(b, manifest, &layout).map_err(failed)?;
        }
        let expected = checks::expected_sample(
            manifest,
            &req.commitment.statement,
            &req.nonce,
            &req.round_batches,
            &req.node,
            req.check,
        )
        .map_err(failed)?;
        let asked: Vec<BlockRef> = req.samples.iter().map(|s| s.proof.block_ref()).collect();
        if asked != expected.indices {
            return Err(bad(format!(
                "sampled blocks {asked:?} are not the derived {:?}",
                expected.indices
            )));
        }
        let leaves = checks::node_leaves(&req.round_batches, &req.node);
        let class_id = self.renderer.class().id();
        let committed_class = req
            .round_batches
            .iter()
            .find(|b| b.signed.statement.node == req.node)
            .map(|b| b.signed.statement.class_id)
            .unwrap_or_default();
        for s in &req.samples {
            checks::check_proof(&req.round_batches, &req.node, &s.proof).map_err(failed)?;
            let (bi, pos) = leaves[s.proof.leaf_index as usize];
            let committed = &req.round_batches[bi].tiles[pos];
            let frame = req.round_batches[bi].signed.statement.frame;
            if s.proof.block_hash != s.committed_hash
                || committed.tile_index != s.tile_index
                || frame != s.frame
                || block_rect(committed.rect, s.proof.block) != Some(s.rect)
            {
                return Err(bad(format!(
                    "sample {}: block fields differ from the commitment",
                    s.proof.block_ref()
                )));
            }
        }
        // Re-render the sampled blocks of each frame together: one list per frame, which
        // a renderer may draw in one dispatch; the bytes are those of each block alone.
        let mut rerenders: Vec<Vec<u8>> = vec![Vec::new(); req.samples.len()];
        let mut by_frame: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (i, s) in req.samples.iter().enumerate() {
            by_frame.entry(s.frame).or_default().push(i);
        }
        for (frame, at) in by_frame {
            let rects: Vec<_> = at.iter().map(|&i| req.samples[i].rect).collect();
            let blocks = self
                .renderer
                .render_tiles(&manifest.settings, frame, &rects)
                .map_err(|(j, e)| VerifyError::Rerender {
                    id: req.request_id.clone(),
                    frame,
                    tile: req.samples[at[j]].tile_index,
                    block: req.samples[at[j]].proof.block,
                    reason: e.0,
                })?;
            for (i, bytes) in at.into_iter().zip(blocks) {
                rerenders[i] = bytes;
            }
        }
        // `s.committed_hash` is the proved block hash (checked above).
        let delivered_ok: Vec<bool> = req
            .samples
            .iter()
            .map(|s| {
                block_hash(&s.delivered) == s.committed_hash
                    && s.delivered.len() == s.rect.canonical_len()
            })
            .collect();
        let all_ok = delivered_ok.iter().all(|&ok| ok);
        // Metrics against the delivered bytes, when they are the committed ones (else
        // nothing trustworthy to measure against: the integrity failure decides).
        let (metrics, aggregate) = if all_ok {
            let pairs: Vec<tolerance::BlockPair<'_>> = req
                .samples
                .iter()
                .zip(&rerenders)
                .map(|(s, r)| tolerance::BlockPair {
                    committed: &s.delivered,
                    rerender: r,
                    rect: s.rect,
                })
                .collect();
            tolerance::blocks_metrics(&manifest.tolerance, &pairs)
                .map_err(|e| bad(format!("sampled blocks: {e}")))?
        } else {
            (
                vec![TileMetrics::default(); req.samples.len()],
                TileMetrics::default(),
            )
        };
        let mut samples = Vec::with_capacity(req.samples.len());
        for (((s, rerender), ok), m) in req
            .samples
            .iter()
            .zip(rerenders)
            .zip(delivered_ok)
            .zip(metrics)
        {
            let rerender_hash = block_hash(&rerender);
            let matched = rerender_hash == s.committed_hash;
            let metrics = if matched { TileMetrics::IDENTICAL } else { m };
            let band = sample_band(&manifest.tolerance, ok, matched, &metrics);
            if !matched {
                let same_class = committed_class == class_id;
                tracing::warn!(
                    node = %req.node.short(), frame = s.frame, tile = s.tile_index,
                    block = s.proof.block, ?band, same_class,
                    diverged_ppm = metrics.diverged_ppm, psnr_cdb = metrics.psnr_cdb,
                    flip_mean_ppm = metrics.flip_mean_ppm,
                    "re-rendered block differs from the commitment{}",
                    if same_class { " inside one determinism class (a class-definition defect; judged by tolerance)" } else { "" }
                );
            }
            samples.push(SampleCheck {
                leaf_index: s.proof.leaf_index,
                block: s.proof.block,
                frame: s.frame,
                tile_index: s.tile_index,
                committed_hash: s.committed_hash,
                rerender_hash,
                delivered_ok: ok,
                matched,
                metrics,
                band,
            });
        }
        let all_matched = samples.iter().all(|s| s.matched);
        let aggregate = if all_matched {
            TileMetrics::IDENTICAL
        } else {
            aggregate
        };
        let aggregate_band = manifest.tolerance.band(all_matched, &aggregate);
        let decision = decision_for(req.check, &samples, aggregate_band);
        let verdict = Verdict {
            job_id: manifest.job_id,
            round,
            check: req.check,
            node: req.node,
            seed: expected.seed,
            n_committed: expected.n,
            k: expected.k,
            samples,
            aggregate,
            aggregate_band,
            verifier_class_id: class_id,
            decision,
        };
        Ok(Signed::sign(verdict, &self.key))
    }
}

/// The band of one sampled block, from whether its delivered bytes hash to the committed
/// block hash (`delivered_ok`), whether the re-render has the committed bytes (`matched`)
/// and its metrics: [`Band::Far`] when the delivered bytes fail their integrity check,
/// whatever the re-render and the metrics (the bytes delivered for the block are not the
/// ones committed, and nothing was measured against them); else the tolerance's per-block
/// band (`Tolerance::block_band`: match, far beyond `block_far`, else close). The
/// verifier, the coordinator's re-derivation and the auditor all band blocks with this.
pub fn sample_band(
    tolerance: &Tolerance,
    delivered_ok: bool,
    matched: bool,
    metrics: &TileMetrics,
) -> Band {
    if delivered_ok {
        tolerance.block_band(matched, metrics)
    } else {
        Band::Far
    }
}

/// The rule, from the blocks' bands and the aggregate's band alone (an auditor applies
/// it again):
/// - a delivered block that does not hash to its commitment fails at once (a
///   cryptographic fact, not a fuzzy one);
/// - every block matching passes; so does an aggregate that matches or is close with no
///   block far;
/// - otherwise a first check escalates (more samples, a second verifier), so one fuzzy
///   mismatch never slashes anyone;
/// - an escalated check fails on a far aggregate or a far block, and is inconclusive
///   when only an ambiguous aggregate remains (neither paid nor slashed; the tiles are
///   rendered elsewhere).
pub fn decision_for(check: CheckKind, samples: &[SampleCheck], aggregate: Band) -> Decision {
    let far_block = samples.iter().any(|s| s.band == Band::Far);
    if samples.iter().any(|s| !s.delivered_ok) {
        Decision::Fail
    } else if samples.iter().all(|s| s.band == Band::Match)
        || (matches!(aggregate, Band::Match | Band::Close) && !far_block)
    {
        Decision::Pass
    } else if !check.escalated {
        Decision::Escalate
    } else if aggregate == Band::Far || far_block {
        Decision::Fail
    } else {
        Decision::Inconclusive
    }
}
