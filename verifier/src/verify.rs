//! The verifier's state machine for one request: check everything the coordinator sent,
//! re-render the sampled tiles, compare, and sign the verdict.

use crate::checks;
use std::sync::Arc;
use tessera_protocol::canonical::tile_hash;
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::statements::{Decision, SampleCheck, Signed, Verdict};
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
    /// The re-render itself failed.
    #[error("verify request {id}: re-render of frame {frame} tile {tile} failed: {reason}")]
    Rerender {
        /// Request id.
        id: String,
        /// Frame.
        frame: u32,
        /// Tile.
        tile: u32,
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
        let manifest = &req.manifest.statement;
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
        .map_err(bad)?;
        checks::check_nonce(manifest, round, &req.nonce).map_err(bad)?;
        let layout = checks::layout(manifest);
        for b in &req.round_batches {
            checks::check_batch(b, manifest, &layout).map_err(bad)?;
        }
        let expected = checks::expected_sample(
            manifest,
            &req.commitment.statement,
            &req.nonce,
            &req.round_batches,
            &req.node,
        )
        .map_err(bad)?;
        let asked: Vec<u32> = req.samples.iter().map(|s| s.proof.leaf_index).collect();
        if asked != expected.indices {
            return Err(bad(format!(
                "sampled indices {asked:?} are not the derived {:?}",
                expected.indices
            )));
        }
        let leaves = checks::node_leaves(&req.round_batches, &req.node);
        let class_id = self.renderer.class().id();
        let mut samples = Vec::with_capacity(req.samples.len());
        for s in &req.samples {
            checks::check_proof(&req.round_batches, &req.node, &s.proof).map_err(bad)?;
            let (bi, pos) = leaves[s.proof.leaf_index as usize];
            let committed = &req.round_batches[bi].tiles[pos];
            let frame = req.round_batches[bi].signed.statement.frame;
            if committed.tile_hash != s.committed_hash
                || committed.tile_index != s.tile_index
                || frame != s.frame
                || committed.rect != s.rect
            {
                return Err(bad(format!(
                    "sample leaf {}: tile fields differ from the commitment",
                    s.proof.leaf_index
                )));
            }
            let delivered_ok = tile_hash(&s.delivered) == committed.tile_hash
                && s.delivered.len() == s.rect.canonical_len();
            let rerender = self
                .renderer
                .render_tile(&manifest.settings, s.frame, s.rect)
                .map_err(|e| VerifyError::Rerender {
                    id: req.request_id.clone(),
                    frame: s.frame,
                    tile: s.tile_index,
                    reason: e.0,
                })?;
            let rerender_hash = tile_hash(&rerender);
            let matched = rerender_hash == committed.tile_hash;
            if !matched {
                tracing::warn!(node = %req.node.short(), frame = s.frame, tile = s.tile_index, "re-render does not match the commitment");
            }
            samples.push(SampleCheck {
                leaf_index: s.proof.leaf_index,
                frame: s.frame,
                tile_index: s.tile_index,
                committed_hash: committed.tile_hash,
                rerender_hash,
                delivered_ok,
                matched,
            });
        }
        let decision = decision_for(&samples);
        let verdict = Verdict {
            job_id: manifest.job_id,
            round,
            node: req.node,
            seed: expected.seed,
            n_committed: expected.n,
            k: expected.k,
            samples,
            verifier_class_id: class_id,
            decision,
        };
        Ok(Signed::sign(verdict, &self.key))
    }
}

/// The rule: pass only if every sampled tile was delivered intact and re-rendered to the
/// same bytes.
pub fn decision_for(samples: &[SampleCheck]) -> Decision {
    if samples.iter().all(|s| s.delivered_ok && s.matched) {
        Decision::Pass
    } else {
        Decision::Fail
    }
}
