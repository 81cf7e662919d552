//! `tessera audit`: check a proof bundle offline, from the bundle alone, and say exactly
//! which check failed. Optionally check an image against the committed tiles, and re-render
//! the sampled tiles on a local renderer.

use crate::checks;
use crate::verify::decision_for;
use std::collections::{BTreeMap, BTreeSet};
use tessera_protocol::bundle::{BatchRecord, ProofBundle, BUNDLE_FORMAT, BUNDLE_VERSION};
use tessera_protocol::canonical::{crop, tile_hash};
use tessera_protocol::keys::PublicKey;
use tessera_protocol::merkle;
use tessera_protocol::payments::{Ledger, TransferKind};
use tessera_protocol::rules::{job_transfers, NodeOutcome};
use tessera_protocol::statements::Decision;
use tessera_protocol::{Digest, TileRenderer};

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckResult {
    /// Check name, e.g. `batch signature`, `leaves`, `nonce reveal`, `payments`.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was checked, or what failed and where.
    pub detail: String,
}

/// Every check run on a bundle.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AuditReport {
    /// Checks in the order they ran.
    pub checks: Vec<CheckResult>,
}

impl AuditReport {
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            name: name.into(),
            passed: true,
            detail: detail.into(),
        });
    }
    fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            name: name.into(),
            passed: false,
            detail: detail.into(),
        });
    }
    fn record(&mut self, name: &str, r: Result<String, String>) {
        match r {
            Ok(d) => self.pass(name, d),
            Err(d) => self.fail(name, d),
        }
    }
    /// True if every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }
    /// Append another report's checks.
    pub fn extend(&mut self, other: AuditReport) {
        self.checks.extend(other.checks);
    }
}

/// Classify a batch-check error into the named check it belongs to.
fn batch_check_name(err: &str) -> &'static str {
    if err.contains("signature") || err.contains("signed by") {
        "batch signature"
    } else if err.contains("batch root") {
        "batch root"
    } else {
        "leaves"
    }
}

/// Audit a bundle: every signature, leaf, root, nonce reveal, sample, verdict and payment.
/// `coordinator` pins the expected coordinator key; `None` trusts the manifest's signer
/// (and says so).
pub fn audit_bundle(b: &ProofBundle, coordinator: Option<&PublicKey>) -> AuditReport {
    let mut r = AuditReport::default();
    if b.format != BUNDLE_FORMAT || b.version != BUNDLE_VERSION {
        r.fail(
            "format",
            format!(
                "format {:?} version {} (expected {BUNDLE_FORMAT:?} version {BUNDLE_VERSION})",
                b.format, b.version
            ),
        );
        return r;
    }
    r.pass("format", format!("{BUNDLE_FORMAT} v{BUNDLE_VERSION}"));

    let m = &b.manifest.statement;
    let coord = b.manifest.signer;
    r.record(
        "manifest signature",
        b.manifest
            .verify()
            .map_err(|e| format!("manifest: {e}"))
            .and_then(|_| match coordinator {
                Some(k) if *k != coord => Err(format!(
                    "manifest signed by {coord}, expected coordinator {k}"
                )),
                Some(_) => Ok(format!(
                    "signed by the pinned coordinator {}",
                    coord.short()
                )),
                None => Ok(format!(
                    "signed by coordinator {} (not pinned)",
                    coord.short()
                )),
            }),
    );
    let layout = checks::layout(m);
    let frames: Vec<u32> = (m.frame_start..=m.frame_end).collect();

    // Nodes and their classes.
    let mut node_class: BTreeMap<PublicKey, Digest> = BTreeMap::new();
    let mut dup = None;
    for n in &b.nodes {
        if node_class.insert(n.key, n.class.id()).is_some() {
            dup = Some(n.key);
        }
    }
    r.record(
        "nodes",
        match dup {
            Some(k) => Err(format!("node {} listed twice", k.short())),
            None => Ok(format!("{} nodes", b.nodes.len())),
        },
    );

    // Which tiles each round must cover.
    let mut pending: BTreeSet<(u32, u32)> = frames
        .iter()
        .flat_map(|&f| (0..layout.len() as u32).map(move |t| (f, t)))
        .collect();
    let mut failed_nodes: BTreeSet<PublicKey> = BTreeSet::new();
    let mut outcomes: Vec<NodeOutcome> = Vec::new();
    // (frame, tile) -> (round, batch index, position) of the passed leaf.
    let mut accepted: BTreeMap<(u32, u32), (u32, usize, usize)> = BTreeMap::new();

    for (ri, round) in b.rounds.iter().enumerate() {
        let rn = round.round;
        if rn as usize != ri {
            r.fail(
                "rounds",
                format!("round at position {ri} says it is round {rn}"),
            );
            return r;
        }
        let batches: &[BatchRecord] = &round.batches;
        // Batches: signature, leaves, roots, classes.
        let mut batch_errors = Vec::new();
        for bt in batches {
            if let Err(e) = checks::check_batch(bt, m, &layout) {
                batch_errors.push(e);
                continue;
            }
            let s = &bt.signed.statement;
            match node_class.get(&s.node) {
                None => batch_errors.push(format!(
                    "batch {}: node {} is not in the bundle's node list",
                    s.batch_id,
                    s.node.short()
                )),
                Some(c) if *c != s.class_id => batch_errors.push(format!(
                    "batch {}: class id differs from node {}'s class signature (batch signature)",
                    s.batch_id,
                    s.node.short()
                )),
                _ => {}
            }
        }
        if batch_errors.is_empty() {
            r.pass(
                "batches",
                format!(
                    "round {rn}: {} batches: signatures, leaves and batch roots check",
                    batches.len()
                ),
            );
        } else {
            for e in batch_errors {
                r.fail(batch_check_name(&e), format!("round {rn}: {e}"));
            }
        }
        // Coverage: exactly the pending tiles, each once.
        let mut covered = BTreeSet::new();
        let mut cover_err = None;
        for bt in batches {
            let s = &bt.signed.statement;
            if failed_nodes.contains(&s.node) {
                cover_err = Some(format!(
                    "batch {} comes from node {} which failed earlier in this job",
                    s.batch_id,
                    s.node.short()
                ));
            }
            for t in &s.tile_ids {
                if !covered.insert((s.frame, *t)) {
                    cover_err = Some(format!("frame {} tile {t} committed twice", s.frame));
                }
            }
        }
        if covered != pending && cover_err.is_none() {
            cover_err = Some(format!(
                "round covers {} tiles, {} were due",
                covered.len(),
                pending.len()
            ));
        }
        r.record(
            "rounds",
            cover_err.map_or_else(
                || {
                    Ok(format!(
                        "round {rn} covers its {} tiles once each",
                        covered.len()
                    ))
                },
                Err,
            ),
        );

        r.record(
            "round commitment",
            checks::check_round_commitment(&round.commitment, &coord, &m.job_id, rn, batches)
                .map(|_| format!("round {rn} root fixed before the reveal")),
        );
        r.record(
            "nonce reveal",
            checks::check_nonce(m, rn, &round.nonce)
                .map(|_| format!("round {rn} nonce matches the manifest's commitment")),
        );

        let round_nodes: BTreeSet<PublicKey> =
            batches.iter().map(|b| b.signed.statement.node).collect();
        let sampled_nodes: BTreeSet<PublicKey> = round.samples.iter().map(|s| s.node).collect();
        if round_nodes != sampled_nodes || round.samples.len() != round_nodes.len() {
            r.fail(
                "sample indices",
                format!(
                    "round {rn}: samples list {} nodes, {} nodes committed",
                    round.samples.len(),
                    round_nodes.len()
                ),
            );
        }
        let mut next_pending = BTreeSet::new();
        for ns in &round.samples {
            let exp = match checks::expected_sample(
                m,
                &round.commitment.statement,
                &round.nonce,
                batches,
                &ns.node,
            ) {
                Ok(e) => e,
                Err(e) => {
                    r.fail("sample seed", e);
                    continue;
                }
            };
            let who = format!("round {rn} node {}", ns.node.short());
            r.record(
                "sample seed",
                if ns.seed == exp.seed {
                    Ok(format!("{who}: seed re-derived"))
                } else {
                    Err(format!(
                        "{who}: seed {} is not the derived {}",
                        hex::encode(ns.seed),
                        hex::encode(exp.seed)
                    ))
                },
            );
            r.record(
                "sample indices",
                if ns.indices == exp.indices && ns.n_committed == exp.n {
                    Ok(format!(
                        "{who}: {} of {} leaves sampled (k = {})",
                        exp.indices.len(),
                        exp.n,
                        exp.k
                    ))
                } else {
                    Err(format!(
                        "{who}: indices {:?} (n {}) are not the derived {:?} (n {})",
                        ns.indices, ns.n_committed, exp.indices, exp.n
                    ))
                },
            );
            let proof_idx: Vec<u32> = ns.proofs.iter().map(|p| p.leaf_index).collect();
            let proofs = if proof_idx != exp.indices {
                Err(format!(
                    "{who}: proofs cover leaves {proof_idx:?}, sampled {:?}",
                    exp.indices
                ))
            } else {
                ns.proofs
                    .iter()
                    .try_for_each(|p| checks::check_proof(batches, &ns.node, p))
                    .map(|_| format!("{who}: {} inclusion proofs", ns.proofs.len()))
            };
            r.record("merkle proofs", proofs);

            // The verdict for this node.
            let verdicts: Vec<_> = round
                .verdicts
                .iter()
                .filter(|v| v.statement.node == ns.node)
                .collect();
            let [verdict] = verdicts.as_slice() else {
                r.fail(
                    "verdict",
                    format!("{who}: {} verdicts, expected exactly one", verdicts.len()),
                );
                continue;
            };
            r.record(
                "verdict signature",
                verdict
                    .verify()
                    .map_err(|e| format!("{who}: verdict: {e}"))
                    .and_then(|_| {
                        if m.verifiers.contains(&verdict.signer) {
                            Ok(format!(
                                "{who}: signed by verifier {}",
                                verdict.signer.short()
                            ))
                        } else {
                            Err(format!(
                                "{who}: verdict signed by {} which the manifest does not name",
                                verdict.signer.short()
                            ))
                        }
                    }),
            );
            let v = &verdict.statement;
            let leaves = checks::node_leaves(batches, &ns.node);
            let mut verr = Vec::new();
            if v.job_id != m.job_id || v.round != rn {
                verr.push("names another job or round".to_string());
            }
            if v.seed != exp.seed || v.n_committed != exp.n || v.k != exp.k {
                verr.push("seed, n or k differ from the derived ones".to_string());
            }
            let vidx: Vec<u32> = v.samples.iter().map(|s| s.leaf_index).collect();
            if vidx != exp.indices {
                verr.push(format!(
                    "checked leaves {vidx:?}, sampled {:?}",
                    exp.indices
                ));
            }
            for s in &v.samples {
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
                    if s.matched != (s.rerender_hash == s.committed_hash) {
                        verr.push(format!(
                            "leaf {}: 'matched' contradicts the hashes",
                            s.leaf_index
                        ));
                    }
                }
            }
            if v.decision != decision_for(&v.samples) {
                verr.push(format!(
                    "decision {:?} does not follow from the samples",
                    v.decision
                ));
            }
            r.record(
                "verdict",
                if verr.is_empty() {
                    Ok(format!("{who}: {:?}", v.decision))
                } else {
                    Err(format!("{who}: {}", verr.join("; ")))
                },
            );

            let stake_before = round
                .commitment
                .statement
                .nodes
                .iter()
                .find(|n| n.node == ns.node)
                .map_or(0, |n| n.stake);
            let node_tiles: Vec<_> = leaves
                .iter()
                .map(|&(bi, pos)| batches[bi].tiles[pos].rect)
                .collect();
            outcomes.push(NodeOutcome {
                round: rn,
                node: ns.node,
                decision: v.decision,
                tiles: node_tiles,
                stake_before,
            });
            for &(bi, pos) in &leaves {
                let s = &batches[bi].signed.statement;
                let key = (s.frame, s.tile_ids[pos]);
                match v.decision {
                    Decision::Pass => {
                        accepted.insert(key, (rn, bi, pos));
                    }
                    Decision::Fail => {
                        next_pending.insert(key);
                    }
                }
            }
            if v.decision == Decision::Fail {
                failed_nodes.insert(ns.node);
            }
        }
        if round.verdicts.len() != round_nodes.len() {
            r.fail(
                "verdict",
                format!(
                    "round {rn}: {} verdicts for {} nodes",
                    round.verdicts.len(),
                    round_nodes.len()
                ),
            );
        }
        pending = next_pending;
    }
    r.record(
        "rounds",
        if pending.is_empty() {
            Ok(format!(
                "{} rounds; every tile passed verification",
                b.rounds.len()
            ))
        } else {
            Err(format!("{} tiles never passed verification", pending.len()))
        },
    );

    // Final tiles and roots.
    let mut frame_roots = Vec::new();
    let mut ferr = Vec::new();
    if b.frames.len() != frames.len() {
        ferr.push(format!(
            "{} frames in the bundle, manifest has {}",
            b.frames.len(),
            frames.len()
        ));
    }
    for (ft, &f) in b.frames.iter().zip(&frames) {
        if ft.frame != f || ft.tiles.len() != layout.len() {
            ferr.push(format!(
                "frame {}: {} tiles (expected frame {f} with {})",
                ft.frame,
                ft.tiles.len(),
                layout.len()
            ));
            continue;
        }
        for (i, t) in ft.tiles.iter().enumerate() {
            let ok = t.tile_index == i as u32
                && accepted.get(&(f, i as u32)).is_some_and(|&(rn, bi, pos)| {
                    let bt = &b.rounds[rn as usize].batches[bi];
                    let l = &bt.tiles[pos];
                    rn == t.round
                        && bt.signed.statement.batch_id == t.batch_id
                        && bt.signed.statement.node == t.node
                        && l.leaf == t.leaf
                        && l.tile_hash == t.tile_hash
                        && l.rect == t.rect
                });
            if !ok {
                ferr.push(format!(
                    "frame {f} tile {i}: not the leaf of a passed batch"
                ));
            }
        }
        let leaves: Vec<Digest> = ft.tiles.iter().map(|t| t.leaf).collect();
        frame_roots.push((
            f,
            merkle::root(&leaves).unwrap_or_default(),
            leaves.len() as u32,
        ));
    }
    r.record(
        "final tiles",
        if ferr.is_empty() {
            Ok(format!(
                "{} frames, every tile is a verified leaf",
                b.frames.len()
            ))
        } else {
            Err(ferr.join("; "))
        },
    );

    let roots = &b.roots;
    r.record(
        "roots signature",
        roots
            .verify()
            .map_err(|e| format!("job roots: {e}"))
            .and_then(|_| {
                if roots.signer == coord {
                    Ok("signed by the coordinator".into())
                } else {
                    Err(format!(
                        "job roots signed by {}, not the coordinator",
                        roots.signer.short()
                    ))
                }
            }),
    );
    let rs = &roots.statement;
    let fr_ok = rs.job_id == m.job_id
        && rs.frames.len() == frame_roots.len()
        && rs
            .frames
            .iter()
            .zip(&frame_roots)
            .all(|(a, (f, root, n))| a.frame == *f && a.root == *root && a.leaf_count == *n);
    r.record(
        "frame roots",
        if fr_ok {
            Ok(format!(
                "{} frame roots re-derived from the final leaves",
                frame_roots.len()
            ))
        } else {
            Err("frame roots do not match the final leaves".into())
        },
    );
    let frame_root_hashes: Vec<Digest> = rs.frames.iter().map(|f| f.root).collect();
    let job_root = merkle::root(&frame_root_hashes);
    r.record(
        "job root",
        if job_root == Some(rs.job_root) {
            Ok(format!("job root {}", hex::encode(rs.job_root)))
        } else {
            Err(format!(
                "job root {} is not the root over the frame roots",
                hex::encode(rs.job_root)
            ))
        },
    );

    // Payments.
    let p = &b.payments;
    r.record(
        "payments signature",
        p.verify()
            .map_err(|e| format!("payment receipt: {e}"))
            .and_then(|_| {
                if p.signer == coord && p.statement.job_id == m.job_id {
                    Ok("signed by the coordinator".into())
                } else {
                    Err("payment receipt not signed by the coordinator for this job".into())
                }
            }),
    );
    let released = p
        .statement
        .transfers
        .iter()
        .any(|t| t.kind == TransferKind::Release);
    let expected = job_transfers(m, &outcomes, released);
    let got = &p.statement.transfers;
    let pay_result = if *got == expected {
        let mut ledger = Ledger::new();
        // Fund the payers the receipt draws on from outside, then apply in order.
        let mut err = None;
        for t in got {
            if t.kind == TransferKind::Escrow || t.kind == TransferKind::Slash {
                let _ = ledger.apply(&tessera_protocol::payments::Transfer {
                    key: format!("fund:{}", t.key),
                    kind: TransferKind::Deposit,
                    from: "external:audit".into(),
                    to: t.from.clone(),
                    amount: t.amount,
                    round: 0,
                    tiles: 0,
                });
            }
            if let Err(e) = ledger.apply(t) {
                err = Some(e.to_string());
            }
        }
        let paid_tiles: u32 = got
            .iter()
            .filter(|t| t.kind == TransferKind::PayOnPass)
            .map(|t| t.tiles)
            .sum();
        match err {
            Some(e) => Err(e),
            None => Ok(format!("{} transfers follow from the verdicts and tier {:?}; {} tiles paid; ledger sums to {}", got.len(), m.tier.name, paid_tiles, ledger.total())),
        }
    } else {
        let first = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        Err(format!("{} transfers in the receipt, {} follow from the rules; first difference at #{first}: got {:?}, expected {:?}", got.len(), expected.len(), got.get(first), expected.get(first)))
    };
    r.record("payments", pay_result);
    r
}

/// Check a decoded frame (canonical RGBA16F bytes, row-major, `width × height`) against the
/// committed tiles of `frame`: every tile's crop must hash to its committed tile hash.
pub fn check_image(
    b: &ProofBundle,
    frame: u32,
    width: u32,
    height: u32,
    pixels: &[u8],
) -> CheckResult {
    let m = &b.manifest.statement;
    let name = "image".to_string();
    if width != m.settings.width || height != m.settings.height {
        return CheckResult {
            name,
            passed: false,
            detail: format!(
                "image is {width}x{height}, the job rendered {}x{}",
                m.settings.width, m.settings.height
            ),
        };
    }
    let Some(ft) = b.frames.iter().find(|f| f.frame == frame) else {
        return CheckResult {
            name,
            passed: false,
            detail: format!("the bundle has no frame {frame}"),
        };
    };
    let bad: Vec<String> = ft
        .tiles
        .iter()
        .filter(|t| crop(pixels, width, height, t.rect).map(|c| tile_hash(&c)) != Some(t.tile_hash))
        .map(|t| format!("tile {} ({})", t.tile_index, t.rect))
        .collect();
    if bad.is_empty() {
        CheckResult {
            name,
            passed: true,
            detail: format!(
                "frame {frame}: all {} tiles are the committed ones",
                ft.tiles.len()
            ),
        }
    } else {
        CheckResult {
            name,
            passed: false,
            detail: format!(
                "frame {frame}: {} tiles differ from the commitment: {}",
                bad.len(),
                bad.join(", ")
            ),
        }
    }
}

/// Re-render every sampled tile of every verdict with `renderer` and compare: in the
/// verifier's class the bytes must hash to the verifier's re-render hash; in a node's class
/// a passed tile must hash to the committed hash.
pub fn rerender_samples(b: &ProofBundle, renderer: &dyn TileRenderer) -> AuditReport {
    let mut r = AuditReport::default();
    let m = &b.manifest.statement;
    let my_class = renderer.class().id();
    let layout = checks::layout(m);
    let mut compared = 0;
    let mut skipped = 0;
    for round in &b.rounds {
        for v in &round.verdicts {
            let v = &v.statement;
            let node_class = b
                .nodes
                .iter()
                .find(|n| n.key == v.node)
                .map(|n| n.class.id());
            for s in &v.samples {
                let Some(rect) = layout.get(s.tile_index as usize).copied() else {
                    r.fail(
                        "rerender",
                        format!("round {} tile {}: not in the layout", v.round, s.tile_index),
                    );
                    continue;
                };
                let bytes = match renderer.render_tile(&m.settings, s.frame, rect) {
                    Ok(b) => b,
                    Err(e) => {
                        r.fail(
                            "rerender",
                            format!("frame {} tile {}: {e}", s.frame, s.tile_index),
                        );
                        continue;
                    }
                };
                let h = tile_hash(&bytes);
                let who = format!(
                    "round {} node {} frame {} tile {}",
                    v.round,
                    v.node.short(),
                    s.frame,
                    s.tile_index
                );
                if my_class == v.verifier_class_id {
                    compared += 1;
                    if h != s.rerender_hash {
                        r.fail(
                            "rerender",
                            format!(
                                "{who}: local re-render {} differs from the verifier's {}",
                                hex::encode(h),
                                hex::encode(s.rerender_hash)
                            ),
                        );
                    }
                } else if Some(my_class) == node_class {
                    compared += 1;
                    if (h == s.committed_hash) != s.matched {
                        r.fail("rerender", format!("{who}: local re-render {} the commitment, the verdict says the opposite", if h == s.committed_hash { "matches" } else { "differs from" }));
                    }
                } else {
                    skipped += 1;
                }
            }
        }
    }
    if r.checks.is_empty() {
        if compared == 0 {
            r.fail("rerender", format!("no sampled tile could be compared: this adapter's determinism class is neither the verifier's nor a node's ({skipped} tiles; cross-class comparison is not implemented yet)"));
        } else {
            r.pass("rerender", format!("{compared} sampled tiles re-rendered locally agree with the verdicts ({skipped} of other classes skipped)"));
        }
    }
    r
}
