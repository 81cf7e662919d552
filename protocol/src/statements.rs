//! Signed statements: the job manifest, node batch commitments, round commitments, verifier
//! verdicts, frame and job roots, and payment receipts.
//!
//! Each statement has a domain tag and a canonical field encoding ([`FieldWriter`]); the
//! signature is ed25519 over `tag ‖ 0x00 ‖ fields`. Serde (JSON, hex for bytes) is only
//! how statements travel and are stored; it is never what is signed.

use crate::canonical::{FieldWriter, JobId};
use crate::hexser;
use crate::keys::{KeyError, PublicKey, SecretKey};
use crate::payments::{Pricing, SamplingPolicy, TierPolicy, Transfer};
use crate::tolerance::{Band, TileMetrics, Tolerance};
use crate::types::{Digest, RenderSettings};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A statement with a canonical encoding.
pub trait Statement: Serialize + DeserializeOwned + Clone {
    /// Domain tag, e.g. `"tessera v1 batch"`.
    const DOMAIN: &'static str;
    /// Write the statement's fields.
    fn write_fields(&self, w: &mut FieldWriter);
    /// The exact bytes that are signed: tag, a zero byte, then the fields.
    fn signing_bytes(&self) -> Vec<u8> {
        let mut w = FieldWriter::new();
        w.bytes(Self::DOMAIN.as_bytes()).u8(0);
        self.write_fields(&mut w);
        w.finish()
    }
}

/// A statement with its signer and signature.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(bound = "T: Statement")]
pub struct Signed<T: Statement> {
    /// The statement.
    pub statement: T,
    /// Who signed it.
    pub signer: PublicKey,
    /// ed25519 signature over [`Statement::signing_bytes`].
    #[serde(with = "hexser::arr")]
    pub signature: [u8; 64],
}

impl<T: Statement> Signed<T> {
    /// Sign `statement` with `key`.
    pub fn sign(statement: T, key: &SecretKey) -> Self {
        let signature = key.sign(&statement.signing_bytes());
        Self {
            statement,
            signer: key.public(),
            signature,
        }
    }

    /// Check the signature under `self.signer`.
    pub fn verify(&self) -> Result<(), KeyError> {
        self.signer
            .verify(&self.statement.signing_bytes(), &self.signature)
    }

    /// A digest of the whole signed statement (bytes, signer, signature).
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new_derive_key("tessera v1 signed statement");
        h.update(&self.statement.signing_bytes());
        h.update(&self.signer.0);
        h.update(&self.signature);
        *h.finalize().as_bytes()
    }
}

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 3;

/// A manifest of another format version than [`MANIFEST_VERSION`]
/// ([`JobManifest::check_version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("manifest version {found}, expected {MANIFEST_VERSION}")]
pub struct ManifestVersionError {
    /// The version the manifest says it has.
    pub found: u32,
}

/// The job manifest, signed by the coordinator before any task is dispatched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobManifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// The job id.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// The client (account) that pays.
    pub client: String,
    /// Scene file name as submitted.
    pub scene_name: String,
    /// Content hash of the scene and its resources.
    #[serde(with = "hexser::arr")]
    pub scene_hash: Digest,
    /// Render settings.
    pub settings: RenderSettings,
    /// First frame (inclusive).
    pub frame_start: u32,
    /// Last frame (inclusive).
    pub frame_end: u32,
    /// Tile edge length in pixels.
    pub tile_size: u32,
    /// The tier with its numbers.
    pub tier: TierPolicy,
    /// How many pixels a check draws from a node's round (its k,
    /// `SamplingPolicy::node_k`).
    pub sampling: SamplingPolicy,
    /// Prices.
    pub pricing: Pricing,
    /// Percentage of a node's stake slashed on a failed verification.
    pub slash_pct: u32,
    /// Seconds before hold-backs are released.
    pub challenge_window_secs: u64,
    /// BLAKE3(nonce) for each verification round, in round order; the nonces are revealed
    /// only after that round's commitments are fixed.
    #[serde(with = "hexser::vec32")]
    pub nonce_commitments: Vec<Digest>,
    /// BLAKE3(nonce) of the dispute nonce: revealed only if the client disputes the job,
    /// after the dispute's checks are fixed ([`DisputeCommitment`]).
    #[serde(with = "hexser::arr")]
    pub dispute_nonce_commitment: Digest,
    /// Percentage of the job price a client deposits to dispute it; the side that loses
    /// the dispute pays for its extra sampling.
    pub dispute_deposit_pct: u32,
    /// How re-renders of another class are judged.
    pub tolerance: Tolerance,
    /// Keys whose verdicts count.
    pub verifiers: Vec<PublicKey>,
    /// Unix seconds at submit.
    pub created_unix: u64,
}

impl Statement for JobManifest {
    const DOMAIN: &'static str = "tessera v1 job manifest";
    fn write_fields(&self, w: &mut FieldWriter) {
        let s = &self.settings;
        w.u32(self.version)
            .bytes(&self.job_id)
            .str(&self.client)
            .str(&self.scene_name)
            .bytes(&self.scene_hash)
            .u32(s.width)
            .u32(s.height)
            .u32(s.spp)
            .u32(s.max_bounces)
            .u64(s.seed)
            .opt_str(s.camera.as_deref())
            .u32(s.frame_rate.num)
            .u32(s.frame_rate.den)
            .u32(self.frame_start)
            .u32(self.frame_end)
            .u32(self.tile_size);
        self.tier.write_fields(w);
        self.sampling.write_fields(w);
        w.u64(self.pricing.micro_per_msample)
            .u32(self.slash_pct)
            .u64(self.challenge_window_secs)
            .digests(&self.nonce_commitments)
            .bytes(&self.dispute_nonce_commitment)
            .u32(self.dispute_deposit_pct);
        self.tolerance.write_fields(w);
        w.u32(self.verifiers.len() as u32);
        for v in &self.verifiers {
            w.bytes(&v.0);
        }
        w.u64(self.created_unix);
    }
}

impl JobManifest {
    /// Refuse a manifest whose `version` is not [`MANIFEST_VERSION`]. Whoever takes a
    /// manifest from another party calls this before checking its signature: a v2
    /// manifest parses as this type (the tolerance's `block_far` has a serde default),
    /// and would otherwise be refused only as a signature that does not verify.
    pub fn check_version(&self) -> Result<(), ManifestVersionError> {
        if self.version == MANIFEST_VERSION {
            Ok(())
        } else {
            Err(ManifestVersionError {
                found: self.version,
            })
        }
    }

    /// Number of frames.
    pub fn n_frames(&self) -> u32 {
        self.frame_end.saturating_sub(self.frame_start) + 1
    }
}

/// What a node signs for each batch of tiles it returns.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BatchCommitment {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// The frame.
    pub frame: u32,
    /// Batch id, unique within the job.
    pub batch_id: u32,
    /// Tile indices (in the frame's tile layout) in leaf order.
    pub tile_ids: Vec<u32>,
    /// Merkle root over the batch's leaves in `tile_ids` order.
    #[serde(with = "hexser::arr")]
    pub batch_root: Digest,
    /// Number of leaves (= `tile_ids.len()`).
    pub leaf_count: u32,
    /// Determinism class id of the node's renderer.
    #[serde(with = "hexser::arr")]
    pub class_id: Digest,
    /// The node's public key (must equal the signer).
    pub node: PublicKey,
}

impl Statement for BatchCommitment {
    const DOMAIN: &'static str = "tessera v1 batch";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id)
            .u32(self.frame)
            .u32(self.batch_id)
            .u32s(&self.tile_ids)
            .bytes(&self.batch_root)
            .u32(self.leaf_count)
            .bytes(&self.class_id)
            .bytes(&self.node.0);
    }
}

/// The coordinator's statement that fixes every batch of one verification round before the
/// round's nonce is revealed. Its `round_root` is the "epoch root" of sampling.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoundCommitment {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// Commitment epoch (one per job for now: 0).
    pub epoch: u32,
    /// Round within the epoch: 0 for the first renders, then one per re-render of
    /// tiles taken from failed nodes.
    pub round: u32,
    /// Merkle root over the digests of the round's signed batches, in batch-id order.
    #[serde(with = "hexser::arr")]
    pub round_root: Digest,
    /// Number of batches.
    pub n_batches: u32,
    /// Each node of the round with its trust (sets its k) and stake (sets a slash) at
    /// the time of commitment, ordered by key.
    pub nodes: Vec<NodeSnapshot>,
}

/// A node's standing when a round is committed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The node.
    pub node: PublicKey,
    /// Trust score.
    pub trust: u32,
    /// Stake in micro-credits.
    pub stake: u64,
}

impl NodeSnapshot {
    /// `node`'s snapshot among `nodes`; a node the snapshot does not list has trust 0
    /// and stake 0 (nothing to slash, the new-node k).
    pub fn of(nodes: &[NodeSnapshot], node: &PublicKey) -> NodeSnapshot {
        nodes
            .iter()
            .find(|n| n.node == *node)
            .cloned()
            .unwrap_or(NodeSnapshot {
                node: *node,
                trust: 0,
                stake: 0,
            })
    }
}

impl Statement for RoundCommitment {
    const DOMAIN: &'static str = "tessera v1 round";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id)
            .u32(self.epoch)
            .u32(self.round)
            .bytes(&self.round_root)
            .u32(self.n_batches)
            .u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.bytes(&n.node.0).u32(n.trust).u64(n.stake);
        }
    }
}

/// The coordinator's statement that fixes a client's dispute before the dispute nonce is
/// revealed: which (round, node) checks it covers and each node's standing at that time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DisputeCommitment {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// The client who disputes (pays the deposit).
    pub client: String,
    /// The last round finished when the dispute was opened.
    pub after_round: u32,
    /// The (round, node) pairs whose passed work is checked again, ascending.
    pub checks: Vec<(u32, PublicKey)>,
    /// Each disputed node's trust and stake now, ordered by key.
    pub nodes: Vec<NodeSnapshot>,
}

impl Statement for DisputeCommitment {
    const DOMAIN: &'static str = "tessera v1 dispute";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id)
            .str(&self.client)
            .u32(self.after_round)
            .u32(self.checks.len() as u32);
        for (r, n) in &self.checks {
            w.u32(*r).bytes(&n.0);
        }
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.bytes(&n.node.0).u32(n.trust).u64(n.stake);
        }
    }
}

/// The coordinator's statement that a client requeued its failed job: the failure
/// refunded the whole escrow left (`refunded`), and the requeue moves that amount from the
/// client back into the escrow, so the job's unverified tiles are paid for again. The
/// auditor re-derives both transfers from it ([`crate::rules::requeue_transfers`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRequeue {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// The client who requeued it (the job's own).
    pub client: String,
    /// Which requeue of a failed job this is, from 1.
    pub requeue: u32,
    /// The round the job was in when it failed.
    pub failed_in_round: u32,
    /// What the failure refunded to the client (micro-credits).
    pub refunded: u64,
    /// Why it failed.
    pub reason: String,
}

impl Statement for JobRequeue {
    const DOMAIN: &'static str = "tessera v1 requeue";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id)
            .str(&self.client)
            .u32(self.requeue)
            .u32(self.failed_in_round)
            .u64(self.refunded)
            .str(&self.reason);
    }
}

/// Outcome of one check of one node in one round.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Every sampled block matched, or their aggregate matched or was close with no
    /// block far: pay.
    Pass,
    /// A confirmed failure (a delivered block that does not hash to its commitment, or
    /// a far aggregate or a far block on an escalated check): no pay, slash, requeue.
    Fail,
    /// A first (or dispute) check whose aggregate is ambiguous or far, or that found a
    /// far block: no verdict on the node yet; more samples go to a second verifier
    /// ([`CheckKind::escalated`]).
    Escalate,
    /// An escalated check whose aggregate is ambiguous, with no block far: the node is
    /// neither paid nor slashed for the round and its tiles are rendered elsewhere.
    Inconclusive,
}

impl Decision {
    /// The byte written when a verdict is signed.
    pub fn code(self) -> u8 {
        match self {
            Decision::Fail => 0,
            Decision::Pass => 1,
            Decision::Escalate => 2,
            Decision::Inconclusive => 3,
        }
    }

    /// Whether this decision ends the node's verification in the round (everything but
    /// [`Decision::Escalate`]).
    pub fn is_final(self) -> bool {
        self != Decision::Escalate
    }
}

/// Which check of a node's round a verdict answers. The first check draws k pixels with
/// the round's nonce (`sampling::sample_blocks`); an escalated check draws
/// `escalation_multiplier` times as many from the same seed (a superset of the first
/// check's blocks: the same stream, drawn further); a dispute check uses the dispute
/// nonce and starts at the escalated size.
#[derive(
    Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub struct CheckKind {
    /// Opened by a client dispute (seeded by the dispute nonce).
    #[serde(default)]
    pub dispute: bool,
    /// The second, larger check after an ambiguous first one.
    #[serde(default)]
    pub escalated: bool,
}

impl CheckKind {
    /// The first check of a round.
    pub const FIRST: CheckKind = CheckKind {
        dispute: false,
        escalated: false,
    };

    /// This check escalated.
    pub fn escalate(self) -> CheckKind {
        CheckKind {
            escalated: true,
            ..self
        }
    }

    /// How many times the node's base k this check samples.
    pub fn k_multiplier(self, escalation_multiplier: u32) -> u32 {
        let m = escalation_multiplier.max(1);
        let mut f = 1u32;
        if self.dispute {
            f = f.saturating_mul(m);
        }
        if self.escalated {
            f = f.saturating_mul(m);
        }
        f
    }

    /// A short label for logs and ids: `first`, `escalated`, `dispute`, `dispute-escalated`.
    pub fn label(self) -> &'static str {
        match (self.dispute, self.escalated) {
            (false, false) => "first",
            (false, true) => "escalated",
            (true, false) => "dispute",
            (true, true) => "dispute-escalated",
        }
    }

    fn code(self) -> u8 {
        u8::from(self.dispute) << 1 | u8::from(self.escalated)
    }
}

/// One re-rendered sample: a pixel block of a committed tile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleCheck {
    /// Index among the node's leaves of the round (ordered by batch id, then leaf order).
    pub leaf_index: u32,
    /// The block's index in its tile (`blocks::block_rect`).
    pub block: u32,
    /// Frame of the tile.
    pub frame: u32,
    /// Tile index in the frame's layout.
    pub tile_index: u32,
    /// The block hash the node committed to (proved against its leaf).
    #[serde(with = "hexser::arr")]
    pub committed_hash: Digest,
    /// The block hash of the verifier's re-render.
    #[serde(with = "hexser::arr")]
    pub rerender_hash: Digest,
    /// Whether the delivered bytes hashed to the committed block hash (integrity).
    pub delivered_ok: bool,
    /// Whether the re-render has the same bytes as the committed block.
    pub matched: bool,
    /// The re-rendered block against the delivered one ([`TileMetrics::IDENTICAL`] when
    /// the bytes match; all zero when they do not and some block of the check failed
    /// its integrity check, since nothing is measured then).
    pub metrics: TileMetrics,
    /// The block's band under the manifest's tolerance: far when its delivered bytes
    /// failed their integrity check; else match, far (beyond the per-block far limits)
    /// or close (neither; the verdict's aggregate judges it). The verifier crate's
    /// `verify::sample_band` computes it.
    pub band: Band,
}

/// The verifier's signed verdict on one node's work in one round.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// The round.
    pub round: u32,
    /// Which check of the round this is.
    #[serde(default)]
    pub check: CheckKind,
    /// The node judged.
    pub node: PublicKey,
    /// The sample seed (recomputable from the round root, nonce, job id and node key).
    #[serde(with = "hexser::arr")]
    pub seed: Digest,
    /// How many blocks the node committed in the round.
    pub n_committed: u32,
    /// The check's k: how many pixels were drawn, so at most that many blocks are
    /// checked; when the node committed at most `k` blocks nothing was drawn and every
    /// block is checked (`sampling::sample_blocks`).
    pub k: u32,
    /// The samples, ascending by (leaf index, block).
    pub samples: Vec<SampleCheck>,
    /// The metrics of all the re-rendered blocks together against the delivered ones
    /// (the tolerant comparison across classes is over every sampled pixel).
    pub aggregate: TileMetrics,
    /// The band the manifest's tolerance puts the aggregate in.
    pub aggregate_band: Band,
    /// Determinism class id of the verifier's renderer.
    #[serde(with = "hexser::arr")]
    pub verifier_class_id: Digest,
    /// The decision.
    pub decision: Decision,
}

impl Statement for Verdict {
    const DOMAIN: &'static str = "tessera v3 verdict";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id)
            .u32(self.round)
            .u8(self.check.code())
            .bytes(&self.node.0)
            .bytes(&self.seed)
            .u32(self.n_committed)
            .u32(self.k)
            .u32(self.samples.len() as u32);
        for s in &self.samples {
            w.u32(s.leaf_index)
                .u32(s.block)
                .u32(s.frame)
                .u32(s.tile_index)
                .bytes(&s.committed_hash)
                .bytes(&s.rerender_hash)
                .u8(s.delivered_ok as u8)
                .u8(s.matched as u8);
            s.metrics.write_fields(w);
            w.u8(s.band.code());
        }
        self.aggregate.write_fields(w);
        w.u8(self.aggregate_band.code());
        w.bytes(&self.verifier_class_id).u8(self.decision.code());
    }
}

/// One frame's root over all its final leaves in tile order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FrameRoot {
    /// Frame number.
    pub frame: u32,
    /// Merkle root over the frame's leaves in tile order.
    #[serde(with = "hexser::arr")]
    pub root: Digest,
    /// Number of leaves (tiles).
    pub leaf_count: u32,
}

/// The coordinator's final statement: every frame root, and the job root over them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRoots {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// Frame roots in frame order.
    pub frames: Vec<FrameRoot>,
    /// Merkle root over the frame roots in frame order.
    #[serde(with = "hexser::arr")]
    pub job_root: Digest,
}

impl Statement for JobRoots {
    const DOMAIN: &'static str = "tessera v1 job roots";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id).u32(self.frames.len() as u32);
        for f in &self.frames {
            w.u32(f.frame).bytes(&f.root).u32(f.leaf_count);
        }
        w.bytes(&self.job_root);
    }
}

/// The coordinator's receipt of every ledger transfer made for the job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PaymentReceipt {
    /// The job.
    #[serde(with = "hexser::arr")]
    pub job_id: JobId,
    /// The transfers, in the order they were applied.
    pub transfers: Vec<Transfer>,
    /// Slashes the rules charged that found the node's stake already empty (slashed away
    /// on other jobs since this job's snapshot), each as the rules sized it. Listed so a
    /// slash can never silently vanish from the receipt: the audit wants every slash the
    /// verdicts call for either among the transfers or here.
    #[serde(default)]
    pub uncollected: Vec<Transfer>,
}

impl Statement for PaymentReceipt {
    const DOMAIN: &'static str = "tessera v1 payments";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.job_id).u32(self.transfers.len() as u32);
        for t in &self.transfers {
            t.write_fields(w);
        }
        w.u32(self.uncollected.len() as u32);
        for t in &self.uncollected {
            t.write_fields(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tolerance::Limits;

    fn batch() -> BatchCommitment {
        BatchCommitment {
            job_id: [1; 16],
            frame: 0,
            batch_id: 4,
            tile_ids: vec![1, 2, 3],
            batch_root: [9; 32],
            leaf_count: 3,
            class_id: [5; 32],
            node: SecretKey::from_seed(&[3; 32]).public(),
        }
    }

    #[test]
    fn signed_statement_round_trips_and_detects_changes() {
        let key = SecretKey::from_seed(&[3; 32]);
        let s = Signed::sign(batch(), &key);
        s.verify().unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: Signed<BatchCommitment> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        back.verify().unwrap();
        let mut t = s.clone();
        t.statement.tile_ids[1] = 7;
        assert!(t.verify().is_err());
        let mut t = s.clone();
        t.signature[10] ^= 1;
        assert!(t.verify().is_err());
        let mut t = s;
        t.signer = SecretKey::from_seed(&[4; 32]).public();
        assert!(t.verify().is_err());
    }

    /// A manifest of another version is refused by version, before its signature is
    /// looked at, and the error names the version found and the one expected.
    #[test]
    fn a_manifest_of_another_version_is_refused_naming_both_versions() {
        let v2: JobManifest = serde_json::from_str(V2_MANIFEST).unwrap();
        assert_eq!(v2.tolerance.block_far, Limits::block_far_default());
        let err = v2.check_version().unwrap_err();
        assert_eq!(err, ManifestVersionError { found: 2 });
        assert_eq!(err.to_string(), "manifest version 2, expected 3");
        let v3 = JobManifest {
            version: MANIFEST_VERSION,
            ..v2
        };
        assert_eq!(v3.check_version(), Ok(()));
    }

    /// A v2 manifest's JSON: no `block_far` in its tolerance.
    const V2_MANIFEST: &str = r#"{
        "version": 2,
        "job_id": "000102030405060708090a0b0c0d0e0f",
        "client": "default", "scene_name": "s.glb",
        "scene_hash": "abababababababababababababababababababababababababababababababab",
        "settings": { "width": 48, "height": 8, "spp": 16, "max_bounces": 4, "seed": 1,
                      "camera": null, "frame_rate": { "num": 24, "den": 1 } },
        "frame_start": 7, "frame_end": 7, "tile_size": 20,
        "tier": { "name": "economy", "price_multiplier": 1, "paid_on_pass_pct": 50,
                  "sampling_multiplier": 3, "min_trust": 0 },
        "sampling": { "detection_ppm": 999000, "forged_fraction_ppm": 50000,
                      "new_node_trust": 10, "new_node_multiplier": 2, "floor": 1 },
        "pricing": { "micro_per_msample": 1000 },
        "slash_pct": 50, "challenge_window_secs": 0,
        "nonce_commitments": [],
        "dispute_nonce_commitment": "abababababababababababababababababababababababababababababababab",
        "dispute_deposit_pct": 10,
        "tolerance": {
            "pixel_abs_ppm": 2000, "pixel_rel_ppm": 20000,
            "pass": { "max_diverged_ppm": 1500, "min_psnr_cdb": 4000,
                      "max_flip_mean_ppm": 10000, "max_flip_p99_ppm": 150000 },
            "fail": { "max_diverged_ppm": 5000, "min_psnr_cdb": 3000,
                      "max_flip_mean_ppm": 25000, "max_flip_p99_ppm": 400000 },
            "escalation_multiplier": 2
        },
        "verifiers": [],
        "created_unix": 0
    }"#;

    #[test]
    fn domains_differ_between_statement_kinds() {
        let b = batch();
        let roots = JobRoots {
            job_id: [1; 16],
            frames: vec![],
            job_root: [0; 32],
        };
        assert!(b.signing_bytes().starts_with(b"tessera v1 batch\0"));
        assert!(roots.signing_bytes().starts_with(b"tessera v1 job roots\0"));
    }

    #[test]
    fn a_requeue_signs_every_field() {
        let q = JobRequeue {
            job_id: [1; 16],
            client: "studio".into(),
            requeue: 1,
            failed_in_round: 2,
            refunded: 5_000,
            reason: "task t failed 8 times".into(),
        };
        let signed = Signed::sign(q, &SecretKey::from_seed(&[4; 32]));
        assert!(signed.verify().is_ok());
        assert!(signed
            .statement
            .signing_bytes()
            .starts_with(b"tessera v1 requeue\0"));
        let changes: [fn(&mut JobRequeue); 6] = [
            |q| q.job_id[0] ^= 1,
            |q| q.client.push('x'),
            |q| q.requeue += 1,
            |q| q.failed_in_round += 1,
            |q| q.refunded -= 1,
            |q| q.reason.clear(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut t = signed.clone();
            change(&mut t.statement);
            assert!(t.verify().is_err(), "field {i} is not signed");
        }
    }
}

/// What a worker registers as. The wire and the signed bytes spell it `node` or
/// `verifier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Renders tasks.
    Node,
    /// Re-renders samples and signs verdicts.
    Verifier,
}

impl Role {
    /// Its spelling on the wire and in signed bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Verifier => "verifier",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "node" => Ok(Role::Node),
            "verifier" => Ok(Role::Verifier),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// A [`Role`]'s text that is neither `node` nor `verifier`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither \"node\" nor \"verifier\"")]
pub struct UnknownRole(pub String);

/// What a node or verifier proves when it registers: it holds the key it names, right now
/// (the challenge is fresh and single-use), for this coordinator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// What it registers as.
    pub role: Role,
    /// Operator-chosen display name.
    pub name: String,
    /// The challenge the coordinator handed out.
    #[serde(with = "hexser::arr")]
    pub challenge: Digest,
    /// The coordinator's public key (binds the signature to one farm).
    pub coordinator: PublicKey,
    /// Digest of the capabilities the registrant reports ([`crate::wire::Capabilities::digest`]).
    #[serde(with = "hexser::arr")]
    pub capabilities: Digest,
}

impl Statement for Registration {
    const DOMAIN: &'static str = "tessera v1 register";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.str(self.role.as_str())
            .str(&self.name)
            .bytes(&self.challenge)
            .bytes(&self.coordinator.0)
            .bytes(&self.capabilities);
    }
}

/// A task id with a reason, in a [`NodeSignal`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskNote {
    /// The task.
    pub task_id: String,
    /// The task's delivery attempt the note is about (`RenderTask::attempt`): a note
    /// counts at most once per attempt, and only for the attempt now open.
    pub attempt: u32,
    /// Why (free text for logs).
    pub reason: String,
}

/// A node's periodic signal: which tasks it holds (a lease heartbeat), which it declines
/// (not eligible) and which failed on it. Signed, so nobody can renew or fail another
/// node's leases.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeSignal {
    /// The sender (must equal the signer).
    pub node: PublicKey,
    /// Sender's clock in milliseconds since the Unix epoch. The coordinator takes a
    /// signal only within a window around its own clock, and each signal once, so a
    /// replayed signal does nothing; its own clock decides leases.
    pub sent_unix_ms: u64,
    /// Tasks it is rendering now.
    pub active: Vec<String>,
    /// Tasks it received but will not render (blocked on the job, or requirements unmet).
    pub declined: Vec<TaskNote>,
    /// Tasks that failed while rendering.
    pub failed: Vec<TaskNote>,
}

impl Statement for NodeSignal {
    const DOMAIN: &'static str = "tessera v1 node signal";
    fn write_fields(&self, w: &mut FieldWriter) {
        w.bytes(&self.node.0)
            .u64(self.sent_unix_ms)
            .u32(self.active.len() as u32);
        for t in &self.active {
            w.str(t);
        }
        for notes in [&self.declined, &self.failed] {
            w.u32(notes.len() as u32);
            for n in notes {
                w.str(&n.task_id).u32(n.attempt).str(&n.reason);
            }
        }
    }
}
