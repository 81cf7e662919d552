//! The verifier's state machine for one request: check everything the coordinator sent,
//! re-render the sampled pixel blocks, compare, and sign the verdict.

use crate::{checks, tolerance};
use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_protocol::blocks::{block_hash, block_rect, BlockRef};
use tessera_protocol::bundle::BatchRecord;
use tessera_protocol::keys::{KeyError, PublicKey, SecretKey};
use tessera_protocol::statements::{
    CheckKind, Decision, JobManifest, SampleCheck, Signed, Verdict,
};
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
        match (&req.first, req.check.escalated) {
            (Some(_), false) => {
                return Err(bad(format!(
                    "a {} check carries the verdict of an earlier check",
                    req.check.label()
                )))
            }
            (Some(f), true) => check_first(manifest, round, &req.node, req.check, f)
                .map_err(|e| bad(e.to_string()))?,
            (None, _) => {}
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
                // The class of the block's own batch (a node may commit a round's batches
                // under different classes, e.g. after a driver update), as `evidence` reads it.
                let (bi, _) = leaves[s.proof.leaf_index as usize];
                let same_class = req.round_batches[bi].signed.statement.class_id == class_id;
                tracing::warn!(
                    node = %req.node.short(), frame = s.frame, tile = s.tile_index,
                    block = s.proof.block, ?band, same_class,
                    diverged_ppm = metrics.diverged_ppm, psnr_cdb = metrics.psnr_cdb,
                    flip_mean_ppm = metrics.flip_mean_ppm,
                    "re-rendered block differs from the commitment{}",
                    if same_class { " inside one determinism class (a cheat or a class-definition defect: a second verifier of the class tells them apart)" } else { "" }
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
        let mut verdict = Verdict {
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
            decision: Decision::Escalate,
        };
        let evidence = evidence(
            manifest,
            &req.round_batches,
            &self.key.public(),
            &verdict,
            req.first.as_ref(),
        );
        if evidence == Evidence::Corroborated {
            tracing::warn!(
                node = %req.node.short(), round, check = req.check.label(),
                "two verifiers of the node's determinism class re-rendered a sampled block to the same bytes, and the node committed other bytes"
            );
        }
        verdict.decision = decision_for(req.check, &verdict.samples, aggregate_band, evidence);
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

/// What a check knows about the node's bytes beyond the tolerance: whether a render of
/// the node's own determinism class disagrees with them, and whether a second one agrees
/// with the first. Within one class honest bytes are equal, so a mismatch there is a
/// cheat or a class defined too loosely; one verifier's render cannot tell them apart (it
/// may be the faulty one), two independent renders that agree byte for byte can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// No block that the verifier re-rendered in the node's own class differs from the
    /// committed bytes: every mismatch, if any, is across classes, judged by tolerance.
    Tolerance,
    /// A block the verifier re-rendered in the node's own class (the class the node
    /// committed the block's tile under) differs from the committed bytes, which were the
    /// ones delivered.
    SameClassMismatch,
    /// Such a block, on an escalated check, and the first check's verifier (another key,
    /// of the same class) re-rendered that block to exactly the same bytes: two renders of
    /// the node's class agree, and the node committed other bytes. [`decision_for`] fails
    /// the node on it unless the tolerance passes the difference (then: inconclusive).
    Corroborated,
}

/// The [`Evidence`] of verdict `v`, signed by `signer`, on the node `v.node` whose round
/// batches are `batches`; `first` is the verdict of the check an escalated `v` escalates
/// (ignored unless it is a validly signed verdict of one of the manifest's verifiers other
/// than `signer`, of the same class as `v`'s, on the same job, round, node and kind of
/// check: what a verifier asks of the `first` it is sent). The verifier, the
/// coordinator's re-derivation and the auditor all use this.
pub fn evidence(
    manifest: &JobManifest,
    batches: &[BatchRecord],
    signer: &PublicKey,
    v: &Verdict,
    first: Option<&Signed<Verdict>>,
) -> Evidence {
    let leaves = checks::node_leaves(batches, &v.node);
    let own_class_mismatch = |s: &&SampleCheck| {
        s.delivered_ok
            && !s.matched
            && leaves.get(s.leaf_index as usize).is_some_and(|&(bi, _)| {
                batches[bi].signed.statement.class_id == v.verifier_class_id
            })
    };
    if !v.samples.iter().any(|s| own_class_mismatch(&s)) {
        return Evidence::Tolerance;
    }
    let Some(f) = first.filter(|f| {
        f.signer != *signer
            && f.statement.verifier_class_id == v.verifier_class_id
            && check_first(manifest, v.round, &v.node, v.check, f).is_ok()
    }) else {
        return Evidence::SameClassMismatch;
    };
    let first_blocks: BTreeMap<(u32, u32), &SampleCheck> = f
        .statement
        .samples
        .iter()
        .map(|t| ((t.leaf_index, t.block), t))
        .collect();
    let agrees = v.samples.iter().filter(own_class_mismatch).any(|s| {
        first_blocks.get(&(s.leaf_index, s.block)).is_some_and(|t| {
            t.delivered_ok
                && t.committed_hash == s.committed_hash
                && t.rerender_hash == s.rerender_hash
        })
    });
    if agrees {
        Evidence::Corroborated
    } else {
        Evidence::SameClassMismatch
    }
}

/// Why the verdict sent with an escalated check ([`VerifyRequest::first`]) is not the
/// one on the check it escalates.
#[derive(Debug, thiserror::Error)]
pub enum FirstVerdictError {
    /// Its signature does not verify.
    #[error("the first check's verdict: {0}")]
    Signature(#[from] KeyError),
    /// Signed by a key the manifest does not name as a verifier.
    #[error("the first check's verdict is signed by {0}, which the manifest does not name")]
    Signer(String),
    /// On another job, round, node or kind of check.
    #[error("the verdict sent as the first check's is not on the {check} check of node {node} in round {round}")]
    Subject {
        /// The label of the check it should be on.
        check: &'static str,
        /// The node (short).
        node: String,
        /// The round.
        round: u32,
    },
}

/// Check that `first`, sent with an escalated check of `node` in `round`, is the verdict
/// of the check it escalates: a verdict on the same job, round, node and kind of check,
/// signed by one of the manifest's verifiers.
fn check_first(
    manifest: &JobManifest,
    round: u32,
    node: &PublicKey,
    check: CheckKind,
    first: &Signed<Verdict>,
) -> Result<(), FirstVerdictError> {
    first.verify()?;
    if !manifest.verifiers.contains(&first.signer) {
        return Err(FirstVerdictError::Signer(first.signer.short()));
    }
    let f = &first.statement;
    if f.job_id != manifest.job_id
        || f.round != round
        || f.node != *node
        || f.check.escalated
        || f.check.escalate() != check
    {
        return Err(FirstVerdictError::Subject {
            check: CheckKind {
                escalated: false,
                ..check
            }
            .label(),
            node: node.short(),
            round,
        });
    }
    Ok(())
}

/// The rule, from the blocks' bands, the aggregate's band and the [`Evidence`] (an
/// auditor applies it again):
/// - a delivered block that does not hash to its commitment fails at once (a
///   cryptographic fact, not a fuzzy one);
/// - every block matching passes;
/// - two verifiers of the node's class agreeing on a block the node committed otherwise
///   ([`Evidence::Corroborated`], escalated checks only) fail the node when the
///   tolerance does not pass the difference either (an ambiguous or far aggregate, or a
///   far block), and leave it inconclusive when it does: a difference that honest
///   adapters of different classes may show is what a class defined too loosely would
///   show too, so it is never paid and never slashed on the bytes alone;
/// - a first check whose verifier, of the node's class, found other bytes (any evidence
///   but [`Evidence::Tolerance`]) escalates, to a second verifier of that class,
///   whatever the tolerance says: honest bytes within a class are equal;
/// - otherwise an aggregate that matches or is close with no block far passes;
/// - otherwise a first check escalates (more samples, a second verifier), so one fuzzy
///   mismatch never slashes anyone;
/// - an escalated check fails on a far aggregate or a far block, and is inconclusive
///   when only an ambiguous aggregate remains (neither paid nor slashed; the tiles are
///   rendered elsewhere).
pub fn decision_for(
    check: CheckKind,
    samples: &[SampleCheck],
    aggregate: Band,
    evidence: Evidence,
) -> Decision {
    let far_block = samples.iter().any(|s| s.band == Band::Far);
    if samples.iter().any(|s| !s.delivered_ok) {
        Decision::Fail
    } else if samples.iter().all(|s| s.band == Band::Match) {
        Decision::Pass
    } else if evidence == Evidence::Corroborated && check.escalated {
        if aggregate == Band::Ambiguous || aggregate == Band::Far || far_block {
            Decision::Fail
        } else {
            Decision::Inconclusive
        }
    } else if (check.escalated || evidence == Evidence::Tolerance)
        && matches!(aggregate, Band::Match | Band::Close)
        && !far_block
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(band: Band, delivered_ok: bool) -> SampleCheck {
        SampleCheck {
            leaf_index: 0,
            block: 0,
            frame: 0,
            tile_index: 0,
            committed_hash: [1; 32],
            rerender_hash: if band == Band::Match {
                [1; 32]
            } else {
                [2; 32]
            },
            delivered_ok,
            matched: band == Band::Match,
            metrics: TileMetrics::default(),
            band,
        }
    }

    /// The rule's rows, in order, on a first and on an escalated check, under each
    /// evidence: a same-class mismatch is never paid on a first check, and fails only on
    /// an escalated one that corroborates it and whose tolerance does not pass it.
    #[test]
    fn the_decision_follows_the_rule_table() {
        use Band::*;
        use Decision::*;
        use Evidence::*;
        let first = CheckKind::FIRST;
        let escalated = first.escalate();
        let close = [sample(Match, true), sample(Close, true)];
        let far = [sample(Match, true), sample(Far, true)];
        let cases: &[(CheckKind, &[SampleCheck], Band, Evidence, Decision)] = &[
            // A block that is not the committed one fails, whatever else.
            (first, &[sample(Close, false)], Close, Corroborated, Fail),
            // Every block matching passes, whatever the evidence claims.
            (
                first,
                &[sample(Match, true)],
                Match,
                SameClassMismatch,
                Pass,
            ),
            (escalated, &[sample(Match, true)], Match, Corroborated, Pass),
            // Close, across classes: the tolerance passes it.
            (first, &close, Close, Tolerance, Pass),
            (escalated, &close, Close, Tolerance, Pass),
            // Close, but the node's own class re-rendered other bytes.
            (first, &close, Close, SameClassMismatch, Escalate),
            (first, &close, Close, Corroborated, Escalate),
            (escalated, &close, Close, SameClassMismatch, Pass),
            // Two renders of the class agree: the tolerance decides between a fail and
            // an inconclusive (what a loosely defined class could explain), never a pass.
            (escalated, &close, Close, Corroborated, Inconclusive),
            (escalated, &close, Ambiguous, Corroborated, Fail),
            (escalated, &close, Far, Corroborated, Fail),
            (escalated, &far, Close, Corroborated, Fail),
            // Ambiguous or far, by tolerance.
            (first, &close, Ambiguous, Tolerance, Escalate),
            (escalated, &close, Ambiguous, Tolerance, Inconclusive),
            (
                escalated,
                &close,
                Ambiguous,
                SameClassMismatch,
                Inconclusive,
            ),
            (first, &far, Close, Tolerance, Escalate),
            (escalated, &far, Close, Tolerance, Fail),
            (escalated, &close, Far, SameClassMismatch, Fail),
        ];
        for (i, &(check, samples, aggregate, evidence, want)) in cases.iter().enumerate() {
            assert_eq!(
                decision_for(check, samples, aggregate, evidence),
                want,
                "case {i}: {} check, aggregate {aggregate:?}, {evidence:?}",
                check.label()
            );
        }
    }
}
