//! The rules of a round, which the job state machine ([`crate::machine`]) sequences:
//! cutting pending tiles into tasks, checking a node's result against its task, fixing a
//! round, building the verifier's requests, checking verdicts, and assembling the final
//! frames and roots. Pure: no store, no bus, no clock.

use std::collections::BTreeMap;
use tessera_protocol::blocks::{block_bytes, block_rect, tile_hash};
use tessera_protocol::bundle::{BatchRecord, FinalTile, FrameTiles, NodeSamples};
use tessera_protocol::canonical::{paste, JobId};
use tessera_protocol::keys::{PublicKey, SecretKey};
use tessera_protocol::merkle;
use tessera_protocol::statements::{
    CheckKind, DisputeCommitment, FrameRoot, JobManifest, JobRoots, NodeSnapshot, RoundCommitment,
    Signed, Verdict,
};
use tessera_protocol::wire::{
    BatchResult, RenderTask, Requirements, SampledBlock, TaskTile, VerdictMessage, VerifyRequest,
    WIRE_VERSION,
};
use tessera_protocol::{Digest, TileRect};
use tessera_verifier::checks::{self, CheckError, RoundRootError, VerdictFault};

/// Why a batch result does not answer its task ([`check_result`]); the node that sent it
/// is counted against, and the task goes to another node.
#[derive(Debug, thiserror::Error)]
pub enum ResultRefusal {
    /// Signed by a key that is not a registered node.
    #[error("batch signed by unknown node {}", .0.short())]
    UnknownNode(PublicKey),
    /// Signed by a node blocked from this job after failing on it.
    #[error("node {} failed on this job and may not deliver", .0.short())]
    Blocked(PublicKey),
    /// Another batch, frame, job or round than the task's.
    #[error("batch {batch} does not answer task {task}")]
    OtherTask {
        /// The batch id it signed.
        batch: u32,
        /// The task it was checked against.
        task: String,
    },
    /// Other tiles than the task's.
    #[error("batch {batch} commits tiles {got:?}, the task asked {want:?}")]
    OtherTiles {
        /// The batch id.
        batch: u32,
        /// The tiles it commits.
        got: Vec<u32>,
        /// The tiles of the task.
        want: Vec<u32>,
    },
    /// Its determinism class does not hash to the class id it signed.
    #[error("batch {0}: class does not match its class id")]
    ClassMismatch(u32),
    /// The signed batch does not check out against the manifest.
    #[error(transparent)]
    Batch(CheckError),
    /// Not one delivered tile per leaf.
    #[error("batch {batch}: {delivered} tiles delivered for {leaves} leaves")]
    TileCount {
        /// The batch id.
        batch: u32,
        /// Tiles delivered.
        delivered: usize,
        /// Leaves committed.
        leaves: usize,
    },
    /// A delivered tile does not hash to its committed leaf.
    #[error("batch {batch} tile {tile}: delivered bytes do not hash to the committed leaf")]
    TileBytes {
        /// The batch id.
        batch: u32,
        /// The tile index.
        tile: u32,
    },
}

/// Why a verdict is refused ([`check_verdict`]): nothing is paid, slashed or trusted on it.
#[derive(Debug, thiserror::Error)]
pub enum VerdictRefusal {
    /// Its signature does not check out.
    #[error("{0}")]
    Signature(String),
    /// Signed by a key that is not one of the manifest's verifiers.
    #[error("verdict signed by unknown verifier {}", .0.short())]
    UnknownVerifier(PublicKey),
    /// It answers another request than the one it was checked against.
    #[error("verdict names request {named}, it was checked against {sent}")]
    OtherRequest {
        /// The request it names.
        named: String,
        /// The request it was checked against.
        sent: String,
    },
    /// The sample it should be about cannot be derived.
    #[error(transparent)]
    Sample(CheckError),
    /// It does not follow from the rules.
    #[error("verdict of verifier {} for request {request} does not follow from the rules: {}", .verifier.short(), checks::join_faults(.errors))]
    DoesNotFollow {
        /// Its signer.
        verifier: PublicKey,
        /// The request.
        request: String,
        /// Each thing in it that does not follow.
        errors: Vec<VerdictFault>,
    },
}

/// A rule of the round that cannot be applied to the job's own records (which the job's
/// machine should never have let in): the job's driver drops this copy of the job.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The round's batches do not make a round root.
    #[error(transparent)]
    RoundRoot(#[from] RoundRootError),
    /// A check's sample cannot be derived from the round's records.
    #[error(transparent)]
    Sample(#[from] CheckError),
    /// A sample names a leaf the node never committed.
    #[error("round {round} node {}: sampled leaf {leaf} does not exist", .node.short())]
    NoLeaf {
        /// The round.
        round: u32,
        /// The node.
        node: PublicKey,
        /// The leaf index.
        leaf: u32,
    },
    /// A tile's delivered bytes are not kept.
    #[error("round {round} frame {frame} tile {tile} is not kept")]
    NotKept {
        /// The round it was delivered in.
        round: u32,
        /// The frame.
        frame: u32,
        /// The tile index.
        tile: u32,
    },
    /// A tile of a final frame has no accepted render.
    #[error("frame {frame} tile {tile} has no accepted render")]
    NotAccepted {
        /// The frame.
        frame: u32,
        /// The tile index.
        tile: u32,
    },
    /// A tile's kept bytes do not match its leaf.
    #[error("stored bytes of frame {frame} tile {tile} do not match their leaf")]
    Mismatch {
        /// The frame.
        frame: u32,
        /// The tile index.
        tile: u32,
    },
}

/// The kept bytes of tile `tile` of `frame` delivered in `round` (`None`: not kept).
pub type ReadTile<'a> = dyn FnMut(u32, u32, u32) -> Option<Vec<u8>> + 'a;

/// Verification rounds a job may take (round 0 plus re-renders of failed nodes' tiles).
pub const MAX_ROUNDS: u32 = 4;

/// Where the dispute nonce is kept among a job's nonces: after the round nonces.
pub const DISPUTE_NONCE_SLOT: u32 = MAX_ROUNDS;

/// The manifest's commitments to a job's secret nonces (one per round, then the dispute
/// nonce at [`DISPUTE_NONCE_SLOT`]): (per round, dispute).
pub fn nonce_commitments(nonces: &[Digest]) -> (Vec<Digest>, Digest) {
    let slot = DISPUTE_NONCE_SLOT as usize;
    let rounds = nonces[..slot.min(nonces.len())]
        .iter()
        .map(tessera_protocol::sampling::nonce_commitment)
        .collect();
    let dispute = nonces
        .get(slot)
        .map(tessera_protocol::sampling::nonce_commitment)
        .unwrap_or_default();
    (rounds, dispute)
}

/// The task id of batch `batch_id` of job `job` (hex).
pub fn task_id(job: &str, batch_id: u32) -> String {
    format!("{job}-b{batch_id}")
}

/// The verify request id of one check of `node` in `round` of job `job` (hex): the first
/// check is `{job}-r{round}-{node}`, the others add the check's label.
pub fn request_id(job: &str, round: u32, node: &PublicKey, check: CheckKind) -> String {
    if check == CheckKind::FIRST {
        format!("{job}-r{round}-{}", node.short())
    } else {
        format!("{job}-r{round}-{}-{}", node.short(), check.label())
    }
}

/// The job (hex) a task or request id belongs to: ids start with the job's 32 hex digits
/// and a dash ([`task_id`], [`request_id`]).
pub fn job_of(id: &str) -> Option<&str> {
    let job = id.get(..32)?;
    (id.as_bytes().get(32) == Some(&b'-') && job.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(job)
}

/// Cut `pending` (frame, tile index) pairs into tasks of up to `batch_size` tiles of one
/// frame each, numbering batches from `first_batch_id`.
#[allow(clippy::too_many_arguments)] // each is one field of the task
pub fn plan_tasks(
    manifest: &JobManifest,
    layout: &[TileRect],
    pending: &[(u32, u32)],
    batch_size: u32,
    round: u32,
    first_batch_id: u32,
    blocked: &[PublicKey],
    requirements: &Requirements,
) -> Vec<RenderTask> {
    let job = hex::encode(manifest.job_id);
    let mut by_frame: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(f, t) in pending {
        by_frame.entry(f).or_default().push(t);
    }
    let mut next_batch_id = first_batch_id;
    let mut tasks = Vec::new();
    for (frame, tiles) in by_frame {
        for chunk in tiles.chunks(batch_size.max(1) as usize) {
            let batch_id = next_batch_id;
            next_batch_id += 1;
            tasks.push(RenderTask {
                version: WIRE_VERSION,
                task_id: task_id(&job, batch_id),
                job_id: manifest.job_id,
                scene_hash: manifest.scene_hash,
                settings: manifest.settings.clone(),
                frame,
                round,
                batch_id,
                tiles: chunk
                    .iter()
                    .map(|&i| TaskTile {
                        tile_index: i,
                        rect: layout[i as usize],
                    })
                    .collect(),
                blocked: blocked.to_vec(),
                attempt: 0,
                requirements: requirements.clone(),
            });
        }
    }
    tasks
}

/// Check one batch result against the task it answers: the node is known and not blocked,
/// the batch answers exactly this task, its class matches its class id, the signed batch
/// checks out against the manifest, and every delivered tile hashes to its leaf.
pub fn check_result(
    res: &BatchResult,
    task: &RenderTask,
    manifest: &JobManifest,
    layout: &[TileRect],
    known_node: bool,
    blocked: &[PublicKey],
) -> Result<(), ResultRefusal> {
    let s = &res.batch.signed.statement;
    if !known_node {
        return Err(ResultRefusal::UnknownNode(s.node));
    }
    if blocked.contains(&s.node) {
        return Err(ResultRefusal::Blocked(s.node));
    }
    if s.batch_id != task.batch_id
        || s.frame != task.frame
        || s.job_id != task.job_id
        || res.round != task.round
    {
        return Err(ResultRefusal::OtherTask {
            batch: s.batch_id,
            task: task.task_id.clone(),
        });
    }
    let want: Vec<u32> = task.tiles.iter().map(|t| t.tile_index).collect();
    if s.tile_ids != want {
        return Err(ResultRefusal::OtherTiles {
            batch: s.batch_id,
            got: s.tile_ids.clone(),
            want,
        });
    }
    if res.class.id() != s.class_id {
        return Err(ResultRefusal::ClassMismatch(s.batch_id));
    }
    checks::check_batch(&res.batch, manifest, layout).map_err(ResultRefusal::Batch)?;
    if res.tiles.len() != res.batch.tiles.len() {
        return Err(ResultRefusal::TileCount {
            batch: s.batch_id,
            delivered: res.tiles.len(),
            leaves: res.batch.tiles.len(),
        });
    }
    for (l, t) in res.batch.tiles.iter().zip(&res.tiles) {
        if t.tile_index != l.tile_index
            || t.bytes.len() != l.rect.canonical_len()
            || tile_hash(&t.bytes, l.rect) != Some(l.tile_hash)
        {
            return Err(ResultRefusal::TileBytes {
                batch: s.batch_id,
                tile: l.tile_index,
            });
        }
    }
    Ok(())
}

/// Fix a round: the signed commitment over every batch (in batch-id order) with the
/// nodes' trust and stake at this moment.
pub fn commit_round(
    manifest: &JobManifest,
    round: u32,
    batches: &[BatchRecord],
    snapshots: Vec<NodeSnapshot>,
    key: &SecretKey,
) -> Result<Signed<RoundCommitment>, RoundError> {
    let commitment = RoundCommitment {
        job_id: manifest.job_id,
        epoch: 0,
        round,
        round_root: checks::round_root(batches)?,
        n_batches: batches.len() as u32,
        nodes: snapshots,
    };
    Ok(Signed::sign(commitment, key))
}

/// One check of one node: which check, for a dispute check the signed dispute
/// commitment, and for an escalated check the verdict of the check it escalates.
#[derive(Clone, Copy)]
pub struct CheckOf<'a> {
    /// The check.
    pub kind: CheckKind,
    /// The dispute commitment of a dispute check.
    pub dispute: Option<&'a Signed<DisputeCommitment>>,
    /// The verdict of the check an escalated check escalates (the request carries it).
    pub first: Option<&'a Signed<Verdict>>,
}

impl CheckOf<'_> {
    /// The first check of a round.
    pub const FIRST: CheckOf<'static> = CheckOf {
        kind: CheckKind::FIRST,
        dispute: None,
        first: None,
    };
}

/// The verify request for one check of `node` once its nonce is revealed (the round's, or
/// the dispute nonce), and the sample record that goes into the bundle. `delivered` gives
/// the stored bytes of (frame, tile); the request carries only the sampled blocks' bytes,
/// each with its proof.
pub fn verify_request(
    signed_manifest: &Signed<JobManifest>,
    commitment: &Signed<RoundCommitment>,
    batches: &[BatchRecord],
    nonce: Digest,
    node: &PublicKey,
    check: CheckOf<'_>,
    delivered: &mut dyn FnMut(u32, u32) -> Vec<u8>,
) -> Result<(VerifyRequest, NodeSamples), RoundError> {
    let manifest = &signed_manifest.statement;
    let exp = checks::expected_sample(
        manifest,
        &commitment.statement,
        &nonce,
        batches,
        node,
        check.kind,
    )?;
    let proved = checks::build_proofs(batches, node, &exp.indices, &mut |bi, pos| {
        let b = &batches[bi];
        Ok::<_, std::convert::Infallible>(delivered(
            b.signed.statement.frame,
            b.tiles[pos].tile_index,
        ))
    })
    .unwrap_or_else(|never| match never {});
    let leaves = checks::node_leaves(batches, node);
    let samples: Vec<SampledBlock> = proved
        .iter()
        .map(|(p, bytes)| {
            let (bi, pos) = leaves[p.leaf_index as usize];
            let b = &batches[bi];
            let l = &b.tiles[pos];
            SampledBlock {
                proof: p.clone(),
                frame: b.signed.statement.frame,
                tile_index: l.tile_index,
                rect: block_rect(l.rect, p.block).unwrap_or(l.rect),
                committed_hash: p.block_hash,
                delivered: bytes.clone(),
            }
        })
        .collect();
    let job = hex::encode(manifest.job_id);
    let round = commitment.statement.round;
    let record = NodeSamples {
        round,
        check: check.kind,
        node: *node,
        seed: exp.seed,
        n_committed: exp.n,
        indices: exp.indices,
        proofs: proved.into_iter().map(|(p, _)| p).collect(),
        delivered: samples.iter().map(|s| s.delivered.clone()).collect(),
    };
    let req = VerifyRequest {
        version: WIRE_VERSION,
        request_id: request_id(&job, round, node, check.kind),
        manifest: signed_manifest.clone(),
        commitment: commitment.clone(),
        round_batches: batches.to_vec(),
        check: check.kind,
        dispute: check.dispute.cloned(),
        nonce,
        node: *node,
        samples,
        first: check.first.cloned(),
    };
    Ok((req, record))
}

/// Fill a sample record's evidence (the delivered bytes of each sampled block, in proof
/// order) from the kept tiles: `bytes(round, frame, tile)`. Records are stored without it
/// so that tile bytes are kept once; the bundle carries it.
pub fn fill_evidence(
    record: &mut NodeSamples,
    batches: &[BatchRecord],
    bytes: &mut ReadTile<'_>,
) -> Result<(), RoundError> {
    let leaves = checks::node_leaves(batches, &record.node);
    let mut out = Vec::with_capacity(record.proofs.len());
    let mut current: Option<(u32, Vec<u8>)> = None;
    for p in &record.proofs {
        let &(bi, pos) = leaves
            .get(p.leaf_index as usize)
            .ok_or(RoundError::NoLeaf {
                round: record.round,
                node: record.node,
                leaf: p.leaf_index,
            })?;
        let (frame, tile) = (batches[bi].signed.statement.frame, &batches[bi].tiles[pos]);
        if current.as_ref().map(|c| c.0) != Some(p.leaf_index) {
            let kept = bytes(record.round, frame, tile.tile_index).ok_or(RoundError::NotKept {
                round: record.round,
                frame,
                tile: tile.tile_index,
            })?;
            current = Some((p.leaf_index, kept));
        }
        let kept = &current.as_ref().expect("set above").1;
        out.push(
            block_bytes(kept, tile.rect, p.block).ok_or(RoundError::Mismatch {
                frame,
                tile: tile.tile_index,
            })?,
        );
    }
    record.delivered = out;
    Ok(())
}

/// Check a verdict message against the request `req` it answers (the request this
/// coordinator built and sent): signed by one of the manifest's verifiers, about this
/// check of this node in this round of this job, and everything in it that follows from
/// the rules re-derived with the auditor's own code (`checks::verdict_errors`): the seed
/// from the round root and the revealed nonce, k from the signed policy and the round's
/// trust snapshot, the sampled indices, the committed leaves and hashes, whether each
/// delivered tile hashes to its leaf, the band of every sample under the signed
/// tolerance, and the decision from the bands and the kind of check. A verdict that does
/// not follow must move no money and no trust.
pub fn check_verdict(msg: &VerdictMessage, req: &VerifyRequest) -> Result<(), VerdictRefusal> {
    let manifest = &req.manifest.statement;
    msg.verdict
        .verify()
        .map_err(|e| VerdictRefusal::Signature(e.to_string()))?;
    if !manifest.verifiers.contains(&msg.verdict.signer) {
        return Err(VerdictRefusal::UnknownVerifier(msg.verdict.signer));
    }
    if msg.request_id != req.request_id {
        return Err(VerdictRefusal::OtherRequest {
            named: msg.request_id.clone(),
            sent: req.request_id.clone(),
        });
    }
    let commitment = &req.commitment.statement;
    let expected = checks::expected_sample(
        manifest,
        commitment,
        &req.nonce,
        &req.round_batches,
        &req.node,
        req.check,
    )
    .map_err(VerdictRefusal::Sample)?;
    let delivered: Vec<&[u8]> = req.samples.iter().map(|s| s.delivered.as_slice()).collect();
    let proofs: Vec<_> = req.samples.iter().map(|s| s.proof.clone()).collect();
    let errors = checks::verdict_errors(
        manifest,
        &req.round_batches,
        &req.node,
        commitment.round,
        req.check,
        &expected,
        &proofs,
        &delivered,
        &msg.verdict,
        req.first.as_ref(),
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(VerdictRefusal::DoesNotFollow {
            verifier: msg.verdict.signer,
            request: msg.request_id.clone(),
            errors,
        })
    }
}

/// The tiles a node's passing verdict accepts: (frame, tile index) → final tile.
pub fn accepted_tiles(
    batches: &[BatchRecord],
    node: &PublicKey,
    round: u32,
) -> Vec<((u32, u32), FinalTile)> {
    checks::node_leaves(batches, node)
        .into_iter()
        .map(|(bi, pos)| {
            let b = &batches[bi];
            let s = &b.signed.statement;
            let l = &b.tiles[pos];
            (
                (s.frame, l.tile_index),
                FinalTile {
                    tile_index: l.tile_index,
                    rect: l.rect,
                    tile_hash: l.tile_hash,
                    leaf: l.leaf,
                    node: *node,
                    round,
                    batch_id: s.batch_id,
                },
            )
        })
        .collect()
}

/// The (frame, tile index) pairs a node committed in a round (requeued when it fails).
pub fn committed_tiles(batches: &[BatchRecord], node: &PublicKey) -> Vec<(u32, u32)> {
    checks::node_leaves(batches, node)
        .into_iter()
        .map(|(bi, pos)| {
            (
                batches[bi].signed.statement.frame,
                batches[bi].tiles[pos].tile_index,
            )
        })
        .collect()
}

/// A finished job's frames.
pub struct Assembled {
    /// Per frame, its accepted tiles in tile order.
    pub frames: Vec<FrameTiles>,
    /// Per frame, its pixels (canonical RGBA16F).
    pub pixels: Vec<(u32, Vec<u8>)>,
    /// The signed frame and job roots.
    pub roots: Signed<JobRoots>,
}

/// The final frames of a job: per frame its accepted tiles in tile order and its pixels
/// (canonical RGBA16F), and the signed job roots. `bytes(round, frame, tile)` reads a
/// kept tile; every one is checked against its leaf's hash before it is pasted.
pub fn assemble(
    manifest: &JobManifest,
    accepted: &BTreeMap<(u32, u32), FinalTile>,
    bytes: &mut ReadTile<'_>,
    key: &SecretKey,
) -> Result<Assembled, RoundError> {
    let (w, h) = (manifest.settings.width, manifest.settings.height);
    let n_tiles = checks::layout(manifest).len() as u32;
    let mut frames_out = Vec::new();
    let mut frame_tiles = Vec::new();
    let mut frame_roots = Vec::new();
    for frame in manifest.frame_start..=manifest.frame_end {
        let tiles: Vec<FinalTile> = (0..n_tiles)
            .map(|t| {
                accepted
                    .get(&(frame, t))
                    .cloned()
                    .ok_or(RoundError::NotAccepted { frame, tile: t })
            })
            .collect::<Result<_, _>>()?;
        let mut pixels = vec![0u8; w as usize * h as usize * 8];
        for t in &tiles {
            let b = bytes(t.round, frame, t.tile_index).ok_or(RoundError::NotKept {
                round: t.round,
                frame,
                tile: t.tile_index,
            })?;
            if tile_hash(&b, t.rect) != Some(t.tile_hash) || !paste(&mut pixels, w, h, t.rect, &b) {
                return Err(RoundError::Mismatch {
                    frame,
                    tile: t.tile_index,
                });
            }
        }
        let leaves: Vec<Digest> = tiles.iter().map(|t| t.leaf).collect();
        frame_roots.push(FrameRoot {
            frame,
            root: merkle::root(&leaves).unwrap_or_default(),
            leaf_count: leaves.len() as u32,
        });
        frame_tiles.push(FrameTiles { frame, tiles });
        frames_out.push((frame, pixels));
    }
    let root_hashes: Vec<Digest> = frame_roots.iter().map(|f| f.root).collect();
    let job_id: JobId = manifest.job_id;
    let roots = Signed::sign(
        JobRoots {
            job_id,
            job_root: merkle::root(&root_hashes).unwrap_or_default(),
            frames: frame_roots,
        },
        key,
    );
    Ok(Assembled {
        frames: frame_tiles,
        pixels: frames_out,
        roots,
    })
}
