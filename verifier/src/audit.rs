//! `tessera audit`: check a proof bundle offline, from the bundle alone, and say exactly
//! which check failed. Optionally check an image against the committed tiles, and re-render
//! the sampled pixel blocks on a local renderer.

use crate::verify::sample_band;
use crate::{checks, tolerance};
use std::collections::{BTreeMap, BTreeSet};
use tessera_protocol::blocks::{block_hash, block_rect, tile_hash, BlockRef};
use tessera_protocol::bundle::{
    BatchRecord, DisputeRecord, NodeSamples, ProofBundle, BUNDLE_FORMAT, BUNDLE_VERSION,
};
use tessera_protocol::canonical::crop;
use tessera_protocol::keys::PublicKey;
use tessera_protocol::merkle;
use tessera_protocol::payments::{Ledger, Transfer, TransferKind};
use tessera_protocol::rules::{job_transfers, Event, NodeOutcome};
use tessera_protocol::statements::{
    CheckKind, Decision, JobManifest, NodeSnapshot, RoundCommitment, Signed, Verdict,
    MANIFEST_VERSION,
};
use tessera_protocol::tolerance::{Band, TileMetrics};
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
    /// The work the bundle records, rendered and re-rendered (set once its format is
    /// known): what fraction of the job verification re-rendered.
    pub work: Option<tessera_protocol::bundle::Work>,
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
    /// A passed check with `Ok`'s detail, or a failed one with the error's message.
    fn record(&mut self, name: &str, r: Result<String, impl std::fmt::Display>) {
        match r {
            Ok(d) => self.pass(name, d),
            Err(e) => self.fail(name, e.to_string()),
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

/// The named check a batch-check error belongs to.
fn batch_check_name(err: &checks::CheckError) -> &'static str {
    match err {
        checks::CheckError::BatchSignature { .. } | checks::CheckError::BatchSigner { .. } => {
            "batch signature"
        }
        checks::CheckError::BatchRoot { .. } => "batch root",
        _ => "leaves",
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
    // Before the manifest's signature: a manifest of another version may still parse, and
    // would then fail only as a signature that does not verify.
    if let Err(e) = b.manifest.statement.check_version() {
        r.fail("format", e.to_string());
        return r;
    }
    r.pass(
        "format",
        format!("{BUNDLE_FORMAT} v{BUNDLE_VERSION}, manifest v{MANIFEST_VERSION}"),
    );
    r.work = Some(b.work());

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
    let mut outcomes: Vec<Event> = Vec::new();
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
                batch_errors.push((batch_check_name(&e), e.to_string()));
                continue;
            }
            let s = &bt.signed.statement;
            match node_class.get(&s.node) {
                None => batch_errors.push((
                    "leaves",
                    format!(
                        "batch {}: node {} is not in the bundle's node list",
                        s.batch_id,
                        s.node.short()
                    ),
                )),
                Some(c) if *c != s.class_id => batch_errors.push((
                    "batch signature",
                    format!(
                        "batch {}: class id differs from node {}'s class signature (batch \
                         signature)",
                        s.batch_id,
                        s.node.short()
                    ),
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
            for (name, e) in batch_errors {
                r.fail(name, format!("round {rn}: {e}"));
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
        let mut next_pending = BTreeSet::new();
        let entries = pair_checks(
            &mut r,
            &format!("round {rn}"),
            &round.samples,
            &round.verdicts,
        );
        let listed: BTreeSet<PublicKey> = entries.keys().map(|(_, n, _)| *n).collect();
        if listed != round_nodes {
            r.fail(
                "sample indices",
                format!(
                    "round {rn}: checks cover {} nodes, {} nodes committed",
                    listed.len(),
                    round_nodes.len()
                ),
            );
        }
        let ctx = CheckContext {
            m,
            batches,
            commitment: &round.commitment.statement,
            nonce: &round.nonce,
        };
        for node in &round_nodes {
            let who = format!("round {rn} node {}", node.short());
            let Some(decision) = audit_chain(&mut r, &ctx, &entries, *node, CheckKind::FIRST, &who)
            else {
                continue;
            };
            let leaves = checks::node_leaves(batches, node);
            outcomes.push(Event::Round(NodeOutcome {
                round: rn,
                node: *node,
                decision,
                tiles: leaves
                    .iter()
                    .map(|&(bi, pos)| batches[bi].tiles[pos].rect)
                    .collect(),
                stake_before: NodeSnapshot::of(&round.commitment.statement.nodes, node).stake,
            }));
            for &(bi, pos) in &leaves {
                let s = &batches[bi].signed.statement;
                let key = (s.frame, s.tile_ids[pos]);
                if decision == Decision::Pass {
                    accepted.insert(key, (rn, bi, pos));
                } else {
                    next_pending.insert(key);
                }
            }
            if decision != Decision::Pass {
                failed_nodes.insert(*node);
            }
        }
        // A dispute opened after this round checks the passed work again.
        for d in b
            .disputes
            .iter()
            .filter(|d| d.commitment.statement.after_round == rn)
        {
            audit_dispute(
                &mut r,
                b,
                d,
                &coord,
                rn,
                &mut outcomes,
                &mut accepted,
                &mut next_pending,
                &mut failed_nodes,
            );
        }
        pending = next_pending;
    }
    if let Some(d) = b
        .disputes
        .iter()
        .find(|d| d.commitment.statement.after_round as usize >= b.rounds.len())
    {
        r.fail(
            "dispute",
            format!(
                "a dispute names round {} as done; the bundle has {} rounds",
                d.commitment.statement.after_round,
                b.rounds.len()
            ),
        );
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
            Err("frame roots do not match the final leaves".to_string())
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

    // Requeues after failures: each refunded the escrow left and funded it again.
    if !b.requeues.is_empty() {
        audit_requeues(&mut r, b, &coord, &mut outcomes);
    }

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
                    Err("payment receipt not signed by the coordinator for this job".to_string())
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
    // The receipt lists transfers in the order they were applied, which depends on when
    // verdicts arrived; the rules fix the set. So: the same transfers, each once, and in
    // the receipt's own order no account the rules protect ever goes negative.
    let by_key = |ts: &[Transfer]| -> BTreeMap<String, Transfer> {
        ts.iter().map(|t| (t.key.clone(), t.clone())).collect()
    };
    let (got_set, mut want_set) = (by_key(got), by_key(&expected));
    // A slash takes at most what the stake held when it was applied (the same stake may
    // have been slashed on another job since the snapshot): up to the rule's amount, or,
    // when the stake was empty, nothing, and then the receipt lists it as uncollected,
    // exactly as the rules sized it. Every slash the verdicts call for is in one place.
    let uncollected = &p.statement.uncollected;
    let mut uncollected_err = None;
    for u in uncollected {
        match want_set.get(&u.key) {
            Some(w) if w == u && w.kind == TransferKind::Slash && !got_set.contains_key(&u.key) => {
                want_set.remove(&u.key);
            }
            _ => {
                uncollected_err = Some(format!(
                    "uncollected {} is not a slash the rules charge, or was also collected",
                    u.key
                ))
            }
        }
    }
    for (k, t) in want_set.iter_mut() {
        if let Some(g) = got_set.get(k) {
            if t.kind == TransferKind::Slash
                && g.kind == t.kind
                && g.amount > 0
                && g.amount <= t.amount
            {
                t.amount = g.amount;
            }
        }
    }
    let pay_result = if let Some(e) = uncollected_err {
        Err(e)
    } else if got_set.len() != got.len() {
        Err("a transfer key appears twice in the receipt".to_string())
    } else if got_set != want_set {
        let missing: Vec<&String> = want_set
            .keys()
            .filter(|k| !got_set.contains_key(*k))
            .collect();
        let extra: Vec<&String> = got_set
            .keys()
            .filter(|k| !want_set.contains_key(*k))
            .collect();
        let differ: Vec<&String> = got_set
            .iter()
            .filter(|(k, t)| want_set.get(*k).is_some_and(|w| w != *t))
            .map(|(k, _)| k)
            .collect();
        Err(format!(
            "{} transfers in the receipt, {} follow from the verdicts and rules; missing {missing:?}, not due {extra:?}, different {differ:?}",
            got.len(),
            expected.len()
        ))
    } else {
        let mut ledger = Ledger::new();
        // Fund from outside the payers the job does not fund itself (the client's account
        // and the nodes' stakes), then apply in the receipt's order: a clawback must be
        // covered by what the job paid the node.
        let mut err = None;
        for t in got {
            let outside = matches!(
                t.kind,
                TransferKind::Escrow | TransferKind::Slash | TransferKind::DisputeDeposit
            );
            if outside {
                let _ = ledger.apply(&Transfer {
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
                err.get_or_insert(e.to_string());
            }
            // A failure refunds the whole escrow left (what its requeue funds again).
            let left = ledger.balance(&t.from);
            if t.kind == TransferKind::Refund && left != 0 {
                err.get_or_insert(format!(
                    "refund {} leaves {left} µcr in the escrow: a failure refunds all that is left",
                    t.key
                ));
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
    };
    r.record("payments", pay_result);
    r
}

/// The samples and verdict of one check, paired by (node, check kind).
type Entries<'a> = BTreeMap<(u32, PublicKey, CheckKind), (&'a NodeSamples, &'a Signed<Verdict>)>;

/// Pair each sample record with the verdict of the same node and check; anything unpaired
/// or repeated is a failed check.
fn pair_checks<'a>(
    r: &mut AuditReport,
    what: &str,
    samples: &'a [NodeSamples],
    verdicts: &'a [Signed<Verdict>],
) -> Entries<'a> {
    let mut out = Entries::new();
    let mut errs = Vec::new();
    for ns in samples {
        let key = (ns.round, ns.node, ns.check);
        let matching: Vec<_> = verdicts
            .iter()
            .filter(|v| {
                v.statement.round == ns.round
                    && v.statement.node == ns.node
                    && v.statement.check == ns.check
            })
            .collect();
        match matching.as_slice() {
            [v] => {
                if out.insert(key, (ns, *v)).is_some() {
                    errs.push(format!(
                        "node {} has two {} sample records",
                        ns.node.short(),
                        ns.check.label()
                    ));
                }
            }
            other => errs.push(format!(
                "node {} {} check: {} verdicts, expected exactly one",
                ns.node.short(),
                ns.check.label(),
                other.len()
            )),
        }
    }
    if verdicts.len() != samples.len() {
        errs.push(format!(
            "{} verdicts for {} sample records",
            verdicts.len(),
            samples.len()
        ));
    }
    for e in errs {
        r.fail("verdict", format!("{what}: {e}"));
    }
    out
}

/// What one check is judged against.
struct CheckContext<'a> {
    m: &'a JobManifest,
    batches: &'a [BatchRecord],
    commitment: &'a RoundCommitment,
    nonce: &'a Digest,
}

/// Audit the chain of checks of one node that starts at `start` (a first or a dispute
/// check): the start check, and its escalated check exactly when the start escalated.
/// Returns the final decision, or None when the chain is broken (already reported).
fn audit_chain(
    r: &mut AuditReport,
    ctx: &CheckContext<'_>,
    entries: &Entries<'_>,
    node: PublicKey,
    start: CheckKind,
    who: &str,
) -> Option<Decision> {
    let round = ctx.commitment.round;
    let Some(&(ns, v)) = entries.get(&(round, node, start)) else {
        r.fail(
            "verdict",
            format!("{who}: no {} check recorded", start.label()),
        );
        return None;
    };
    let first = audit_check(r, ctx, ns, v, None, &format!("{who} {}", start.label()))?;
    let escalated = entries.get(&(round, node, start.escalate()));
    match (first, escalated) {
        (Decision::Escalate, Some(&(ens, ev))) => {
            let wider = ns.indices.iter().all(|i| ens.indices.contains(i));
            r.record(
                "escalation",
                if wider {
                    Ok(format!(
                        "{who}: escalated from {} to {} samples",
                        ns.indices.len(),
                        ens.indices.len()
                    ))
                } else {
                    Err(format!(
                        "{who}: the escalated sample does not contain the first one"
                    ))
                },
            );
            let d = audit_check(
                r,
                ctx,
                ens,
                ev,
                Some(v),
                &format!("{who} {}", start.escalate().label()),
            )?;
            if d == Decision::Escalate {
                r.fail(
                    "escalation",
                    format!("{who}: an escalated check escalated again"),
                );
                return None;
            }
            Some(d)
        }
        (Decision::Escalate, None) => {
            r.fail(
                "escalation",
                format!("{who}: the check escalated but no escalated check follows"),
            );
            None
        }
        (d, Some(_)) => {
            r.fail(
                "escalation",
                format!("{who}: an escalated check follows a {d:?} decision"),
            );
            None
        }
        (d, None) => Some(d),
    }
}

/// Audit one check: seed, indices, proofs, evidence, the verdict's signature and
/// fields, every sample's band, and the decision (an escalated check's against `first`,
/// the verdict of the check it escalates). Returns the verdict's decision when the
/// verdict itself is consistent with the rules.
fn audit_check(
    r: &mut AuditReport,
    ctx: &CheckContext<'_>,
    ns: &NodeSamples,
    verdict: &Signed<Verdict>,
    first: Option<&Signed<Verdict>>,
    who: &str,
) -> Option<Decision> {
    let m = ctx.m;
    let exp = match checks::expected_sample(
        m,
        ctx.commitment,
        ctx.nonce,
        ctx.batches,
        &ns.node,
        ns.check,
    ) {
        Ok(e) => e,
        Err(e) => {
            r.fail("sample seed", format!("{who}: {e}"));
            return None;
        }
    };
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
                "{who}: {} of {} blocks sampled (k = {})",
                exp.indices.len(),
                exp.n,
                exp.k
            ))
        } else {
            Err(format!(
                "{who}: blocks {:?} (n {}) are not the derived {:?} (n {})",
                ns.indices, ns.n_committed, exp.indices, exp.n
            ))
        },
    );
    let proof_idx: Vec<BlockRef> = ns.proofs.iter().map(|p| p.block_ref()).collect();
    let proofs = if proof_idx != exp.indices {
        Err(format!(
            "{who}: proofs cover blocks {proof_idx:?}, sampled {:?}",
            exp.indices
        ))
    } else {
        ns.proofs
            .iter()
            .try_for_each(|p| checks::check_proof(ctx.batches, &ns.node, p))
            .map(|_| format!("{who}: {} inclusion proofs", ns.proofs.len()))
            .map_err(|e| e.to_string())
    };
    r.record("merkle proofs", proofs);

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
    let verr = checks::verdict_errors(
        m,
        ctx.batches,
        &ns.node,
        ctx.commitment.round,
        ns.check,
        &exp,
        &ns.proofs,
        &ns.delivered,
        verdict,
        first,
    );
    let ok = verr.is_empty();
    r.record(
        "verdict",
        if ok {
            Ok(format!("{who}: {:?}", v.decision))
        } else {
            Err(format!("{who}: {}", checks::join_faults(&verr)))
        },
    );
    ok.then_some(v.decision)
}

/// Audit one dispute opened after round `rn`: its commitment, nonce, checks and verdicts,
/// and apply its outcome: failed nodes lose the round's tiles, which later rounds must
/// cover again.
#[allow(clippy::too_many_arguments)] // the audit's running state
fn audit_dispute(
    r: &mut AuditReport,
    b: &ProofBundle,
    d: &DisputeRecord,
    coord: &PublicKey,
    rn: u32,
    events: &mut Vec<Event>,
    accepted: &mut BTreeMap<(u32, u32), (u32, usize, usize)>,
    pending: &mut BTreeSet<(u32, u32)>,
    failed_nodes: &mut BTreeSet<PublicKey>,
) {
    let m = &b.manifest.statement;
    let dc = &d.commitment.statement;
    let what = format!("dispute after round {rn}");
    // It must cover exactly the (round, node) pairs whose work was accepted then.
    let passed: BTreeSet<(u32, PublicKey)> = accepted
        .values()
        .map(|&(round, bi, _)| {
            (
                round,
                b.rounds[round as usize].batches[bi].signed.statement.node,
            )
        })
        .collect();
    let listed: BTreeSet<(u32, PublicKey)> = dc.checks.iter().copied().collect();
    r.record(
        "dispute",
        d.commitment
            .verify()
            .map_err(|e| format!("{what}: commitment: {e}"))
            .and_then(|_| {
                if d.commitment.signer != *coord || dc.job_id != m.job_id {
                    Err(format!(
                        "{what}: commitment not signed by the coordinator for this job"
                    ))
                } else if dc.client != m.client {
                    Err(format!(
                        "{what}: opened by {:?}, the job's client is {:?}",
                        dc.client, m.client
                    ))
                } else if listed != passed || listed.len() != dc.checks.len() {
                    Err(format!(
                        "{what}: checks {} (round, node) pairs, {} had passed",
                        dc.checks.len(),
                        passed.len()
                    ))
                } else {
                    checks::check_check_nonce(
                        m,
                        rn,
                        CheckKind {
                            dispute: true,
                            escalated: false,
                        },
                        &d.nonce,
                    )
                    .map(|_| {
                        format!(
                            "{what}: {} checks fixed before the dispute nonce was revealed",
                            dc.checks.len()
                        )
                    })
                    .map_err(|e| format!("{what}: {e}"))
                }
            }),
    );
    events.push(Event::DisputeOpened);
    let entries = pair_checks(r, &what, &d.samples, &d.verdicts);
    let mut node_lost = false;
    let start = CheckKind {
        dispute: true,
        escalated: false,
    };
    for &(round, node) in &dc.checks {
        let Some(rec) = b.rounds.get(round as usize) else {
            r.fail(
                "dispute",
                format!("{what}: names round {round}, which does not exist"),
            );
            continue;
        };
        let ctx = CheckContext {
            m,
            batches: &rec.batches,
            commitment: &rec.commitment.statement,
            nonce: &d.nonce,
        };
        let who = format!("{what}: round {round} node {}", node.short());
        let Some(decision) = audit_chain(r, &ctx, &entries, node, start, &who) else {
            continue;
        };
        let leaves = checks::node_leaves(&rec.batches, &node);
        events.push(Event::Dispute(NodeOutcome {
            round,
            node,
            decision,
            tiles: leaves
                .iter()
                .map(|&(bi, pos)| rec.batches[bi].tiles[pos].rect)
                .collect(),
            // Sized from the stake the node had at risk when its work was fixed (the
            // round commitment's snapshot), so a caught cheat is always charged a slash:
            // collected, or listed as uncollected when the stake has emptied since.
            stake_before: NodeSnapshot::of(&rec.commitment.statement.nodes, &node).stake,
        }));
        if decision == Decision::Fail {
            node_lost = true;
            failed_nodes.insert(node);
            for &(bi, pos) in &leaves {
                let s = &rec.batches[bi].signed.statement;
                let key = (s.frame, s.tile_ids[pos]);
                accepted.remove(&key);
                pending.insert(key);
            }
        }
    }
    events.push(Event::DisputeSettled { node_lost });
}

/// The client's requeues of the job after failures: each signed by the coordinator for
/// this job and its client, numbered from 1, naming a round of the bundle. Each adds its
/// refund and escrow to the transfers the rules call for (`events`); the first bad one
/// fails the check and adds nothing more.
fn audit_requeues(
    r: &mut AuditReport,
    b: &ProofBundle,
    coord: &PublicKey,
    events: &mut Vec<Event>,
) {
    let m = &b.manifest.statement;
    let mut refunded = 0u64;
    for (i, q) in b.requeues.iter().enumerate() {
        let s = &q.statement;
        let what = format!("requeue {}", i + 1);
        let wrong = if let Err(e) = q.verify() {
            Some(format!("{what}: {e}"))
        } else if q.signer != *coord || s.job_id != m.job_id {
            Some(format!(
                "{what}: not signed by the coordinator for this job"
            ))
        } else if s.client != m.client {
            Some(format!(
                "{what}: made by {:?}, the job's client is {:?}",
                s.client, m.client
            ))
        } else if s.requeue as usize != i + 1 {
            Some(format!("{what}: says it is requeue {}", s.requeue))
        } else if s.failed_in_round as usize >= b.rounds.len() {
            Some(format!(
                "{what}: failed in round {}; the bundle has {} rounds",
                s.failed_in_round,
                b.rounds.len()
            ))
        } else {
            None
        };
        if let Some(why) = wrong {
            r.fail("requeues", why);
            return;
        }
        refunded = refunded.saturating_add(s.refunded);
        events.push(Event::Requeued {
            requeue: s.requeue,
            refunded: s.refunded,
        });
    }
    r.pass(
        "requeues",
        format!(
            "{} requeues after failures, signed by the coordinator: {refunded} µcr refunded and put in escrow again",
            b.requeues.len()
        ),
    );
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
        .filter(|t| {
            crop(pixels, width, height, t.rect).and_then(|c| tile_hash(&c, t.rect))
                != Some(t.tile_hash)
        })
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

/// Re-render every sampled block of every check (rounds and disputes) with `renderer`
/// and compare, whatever this adapter's class:
/// - in the verifier's class each block must hash to the verifier's re-render hash, and
///   the metrics against the recorded delivered blocks (each block's and the aggregate)
///   must equal the verdict's;
/// - in another class (a node's, or one nobody used) the local re-render is judged
///   against the delivered blocks by the manifest's tolerance: a check the verdict passed
///   (aggregate matching or close, no block far) must pass here, and one it did not pass
///   on a far aggregate or a far block must not pass here. (An ambiguous local aggregate
///   is reported, not failed: that is what escalation is for.)
pub fn rerender_samples(b: &ProofBundle, renderer: &dyn TileRenderer) -> AuditReport {
    let mut r = AuditReport::default();
    let m = &b.manifest.statement;
    let my_class = renderer.class().id();
    let layout = checks::layout(m);
    let (mut same, mut cross, mut ambiguous, mut blocks) = (0, 0, 0, 0);
    let checks = b
        .rounds
        .iter()
        .flat_map(|rd| rd.samples.iter().zip(&rd.verdicts))
        .chain(
            b.disputes
                .iter()
                .flat_map(|d| d.samples.iter().zip(&d.verdicts)),
        );
    'check: for (ns, v) in checks {
        let v = &v.statement;
        let who = format!(
            "round {} node {} {} check",
            v.round,
            v.node.short(),
            v.check.label()
        );
        if ns.node != v.node || ns.delivered.len() != v.samples.len() {
            r.fail("rerender", format!("{who}: no delivered bytes recorded"));
            continue;
        }
        // Each sampled block's rectangle, and the blocks of each frame re-rendered
        // together.
        let mut rects = Vec::with_capacity(v.samples.len());
        for s in &v.samples {
            let Some(rect) = layout
                .get(s.tile_index as usize)
                .and_then(|&t| block_rect(t, s.block))
            else {
                r.fail(
                    "rerender",
                    format!(
                        "{who}: frame {} tile {} block {}: not in the layout",
                        s.frame, s.tile_index, s.block
                    ),
                );
                continue 'check;
            };
            rects.push(rect);
        }
        let mut local: Vec<Vec<u8>> = vec![Vec::new(); v.samples.len()];
        let mut by_frame: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, s) in v.samples.iter().enumerate() {
            by_frame.entry(s.frame).or_default().push(i);
        }
        for (frame, at) in by_frame {
            let want: Vec<_> = at.iter().map(|&i| rects[i]).collect();
            match renderer.render_tiles(&m.settings, frame, &want) {
                Ok(out) => {
                    for (i, bytes) in at.into_iter().zip(out) {
                        local[i] = bytes;
                    }
                }
                Err((j, e)) => {
                    let s = &v.samples[at[j]];
                    r.fail(
                        "rerender",
                        format!(
                            "{who}: frame {frame} tile {} block {}: {e}",
                            s.tile_index, s.block
                        ),
                    );
                    continue 'check;
                }
            }
        }
        blocks += v.samples.len();
        let pairs: Vec<tolerance::BlockPair<'_>> = ns
            .delivered
            .iter()
            .zip(&local)
            .zip(&rects)
            .map(|((d, l), &rect)| tolerance::BlockPair {
                committed: d,
                rerender: l,
                rect,
            })
            .collect();
        let all_ok = v.samples.iter().all(|s| s.delivered_ok);
        let measured = if all_ok {
            match tolerance::blocks_metrics(&m.tolerance, &pairs) {
                Ok(x) => Some(x),
                Err(e) => {
                    r.fail("rerender", format!("{who}: {e}"));
                    continue;
                }
            }
        } else {
            None
        };
        if my_class == v.verifier_class_id {
            same += 1;
            for (s, bytes) in v.samples.iter().zip(&local) {
                let h = block_hash(bytes);
                if h != s.rerender_hash {
                    r.fail(
                        "rerender",
                        format!(
                            "{who}: frame {} tile {} block {}: local re-render {} differs from the verifier's {} in the verifier's class",
                            s.frame,
                            s.tile_index,
                            s.block,
                            hex::encode(h),
                            hex::encode(s.rerender_hash)
                        ),
                    );
                }
            }
            if let Some((each, aggregate)) = measured {
                let verdict_each: Vec<TileMetrics> = v.samples.iter().map(|s| s.metrics).collect();
                let all_matched = v.samples.iter().all(|s| s.matched);
                if (!all_matched && aggregate != v.aggregate) || each != verdict_each {
                    r.fail(
                        "rerender",
                        format!(
                            "{who}: metrics (aggregate {aggregate:?}) differ from the verdict's (aggregate {:?})",
                            v.aggregate
                        ),
                    );
                }
            }
            continue;
        }
        cross += 1;
        let Some((each, aggregate)) = measured else {
            continue;
        };
        let local_matched: Vec<bool> = v
            .samples
            .iter()
            .zip(&local)
            .map(|(s, bytes)| block_hash(bytes) == s.committed_hash)
            .collect();
        let all_matched = local_matched.iter().all(|&x| x);
        let band = m.tolerance.band(all_matched, &aggregate);
        let far_block = each
            .iter()
            .zip(&local_matched)
            .any(|(mt, &eq)| sample_band(&m.tolerance, true, eq, mt) == Band::Far);
        let verdict_far = v.samples.iter().any(|s| s.band == Band::Far);
        let passes = |b: Band, far: bool| matches!(b, Band::Match | Band::Close) && !far;
        let fails = |b: Band, far: bool| b == Band::Far || far;
        if band == Band::Ambiguous && !far_block {
            ambiguous += 1;
        } else if passes(band, far_block) != passes(v.aggregate_band, verdict_far)
            || fails(band, far_block) != fails(v.aggregate_band, verdict_far)
        {
            r.fail(
                "rerender",
                format!(
                    "{who}: locally aggregate {band:?} ({aggregate:?}){}, the verdict found {:?}{}",
                    if far_block { " with a far block" } else { "" },
                    v.aggregate_band,
                    if verdict_far { " with a far block" } else { "" },
                ),
            );
        }
    }
    if r.checks.is_empty() {
        if same + cross == 0 {
            r.fail("rerender", "the bundle has no sampled blocks to re-render");
        } else {
            r.pass(
                "rerender",
                format!(
                    "{blocks} sampled blocks of {} checks re-rendered locally agree with the verdicts: {same} checks in the verifier's class (bytes and metrics), {cross} in another class (tolerant comparison; {ambiguous} ambiguous)",
                    same + cross
                ),
            );
        }
    }
    r
}
