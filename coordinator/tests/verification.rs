//! Verification across determinism classes, escalation, disputes and the trusted tier,
//! driven through the daemon coordinator's state machine with stand-in renderers: an
//! honest node of another class passes by tolerance; the ambiguous band escalates to a
//! second verifier (of another class) and never slashes; a far tile is confirmed by the
//! second verifier before anyone is slashed; a client dispute either finds a cheat (the
//! node's pay comes back, its stake is slashed, its tiles are rendered again and the
//! client pays nothing extra) or costs the client its deposit.

mod common;

use common::*;
use std::collections::BTreeSet;
use tessera_node::stub::OtherClass;
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::payments::{SamplingPolicy, Transfer};
use tessera_protocol::rules::{dispute_deposit, job_price};
use tessera_protocol::statements::{CheckKind, Decision, Verdict};
use tessera_protocol::tolerance::{Band, Limits, Tolerance};

/// Bands decided by the diverged-pixel fraction alone (ppm of the pixels, each limit):
/// the other metrics never flag anything.
fn diverged_limits(pass: u32, fail: u32, block_far: u32) -> Tolerance {
    let open = |max_diverged_ppm| Limits {
        max_diverged_ppm,
        min_psnr_cdb: 0,
        max_flip_mean_ppm: 1_000_000,
        max_flip_p99_ppm: 1_000_000,
    };
    Tolerance {
        pixel_abs_ppm: 2_000,
        pixel_rel_ppm: 20_000,
        pass: open(pass),
        fail: open(fail),
        block_far: open(block_far),
        escalation_multiplier: 2,
    }
}

/// The stand-ins' divergence picks the band: ≤ 1 % close, > 10 % far; a block more than
/// half diverged is far.
fn diverged_only() -> Tolerance {
    diverged_limits(10_000, 100_000, 500_000)
}

fn farm(tolerance: Tolerance) -> Farm {
    Farm::with_config(ServiceConfig {
        tolerance,
        ..Farm::config()
    })
}

fn other(f: &Farm, name: &str, diverged_ppm: u32) -> Arc<dyn TileRenderer> {
    Arc::new(OtherClass::new(f.renderer.clone(), name, diverged_ppm))
}

fn node_with(
    key: &SecretKey,
    renderer: Arc<dyn TileRenderer>,
    cheat: Option<DishonestMode>,
) -> Node {
    Node::new(
        "n",
        SecretKey::from_seed(&key_seed(key)),
        [7; 32],
        renderer,
        cheat,
    )
}

fn bundle(f: &Farm, job: &str) -> ProofBundle {
    f.svc.bundle(job).unwrap()
}

fn transfers(f: &Farm, job: &str) -> Vec<Transfer> {
    f.svc.store().job_transfers(job).unwrap()
}

fn sum(ts: &[Transfer], kind: TransferKind, to_or_from: &str) -> u64 {
    ts.iter()
        .filter(|t| t.kind == kind && (t.to == to_or_from || t.from == to_or_from))
        .map(|t| t.amount)
        .sum()
}

/// What the client `studio` paid for a job: escrow and dispute deposit, less refunds.
fn client_outflow(ts: &[Transfer]) -> u64 {
    let c = "client:studio";
    sum(ts, TransferKind::Escrow, c) + sum(ts, TransferKind::DisputeDeposit, c)
        - sum(ts, TransferKind::Refund, c)
        - sum(ts, TransferKind::DisputeRefund, c)
}

fn all_verdicts(b: &ProofBundle) -> Vec<&Verdict> {
    b.rounds
        .iter()
        .flat_map(|r| r.verdicts.iter())
        .chain(b.disputes.iter().flat_map(|d| d.verdicts.iter()))
        .map(|v| &v.statement)
        .collect()
}

/// Every task goes to `pick(task index)`'s node until none is left in the outbox.
fn render_all(f: &Farm, nodes: &[&Node], pick: impl Fn(usize) -> usize) {
    let ts = tasks(&f.drain());
    for (i, t) in ts.iter().enumerate() {
        let h = f
            .svc
            .handle_result(&result_body(nodes[pick(i)], t), f.now)
            .unwrap();
        assert_eq!(h, Handled::Done);
    }
}

fn audits(b: &ProofBundle) {
    let report = audit_bundle(b, None);
    assert!(
        report.passed(),
        "{:#?}",
        report.failures().collect::<Vec<_>>()
    );
}

#[test]
fn an_honest_node_of_another_class_passes_by_tolerance() {
    let f = farm(diverged_only());
    let (a, v) = (key(1), key(2));
    f.register_with(&a, "node", caps(&other(&f, "b", 500)));
    f.register(&v, "verifier");
    let job = f.submit();
    let na = node_with(&a, other(&f, "b", 500), None);
    render_all(&f, &[&na], |_| 0);
    f.verify(&Verifier::new(v, f.renderer.clone()), &f.drain());
    assert_eq!(state(&f, &job), "done");
    let b = bundle(&f, &job);
    audits(&b);
    let vs = all_verdicts(&b);
    assert!(vs.iter().all(|v| v.decision == Decision::Pass));
    let bands: BTreeSet<Band> = vs
        .iter()
        .flat_map(|v| v.samples.iter().map(|s| s.band))
        .collect();
    assert!(
        bands.contains(&Band::Close),
        "some cross-class tiles differ: {bands:?}"
    );
    assert!(
        bands.iter().all(|b| matches!(b, Band::Match | Band::Close)),
        "{bands:?}"
    );
    assert_paid_once(&f, &job);
    assert_eq!(f.svc.store().trust(&a.public()).unwrap(), 1);
}

#[test]
fn the_ambiguous_band_escalates_to_a_verifier_of_another_class_and_never_slashes() {
    let f = farm(diverged_only());
    let (a, b, v1, v2) = (key(1), key(3), key(2), key(4));
    f.register_with(&a, "node", caps(&other(&f, "b", 40_000)));
    f.register(&b, "node");
    f.register(&v1, "verifier");
    let v2_renderer = other(&f, "v2", 0);
    f.register_with(&v2, "verifier", caps(&v2_renderer));
    f.svc.store().set_trust(&a.public(), 20).unwrap();
    let job = f.submit();
    let price = job_price(&bundle_manifest(&f, &job));
    let na = node_with(&a, other(&f, "b", 40_000), None);
    let nb = f.node(&b, None);
    render_all(&f, &[&na, &nb], |i| i % 2);
    let (first, second) = (
        Verifier::new(key(2), f.renderer.clone()),
        Verifier::new(key(4), v2_renderer),
    );
    // The first verdict on A escalates; the escalated check goes to V2's own queue.
    let msgs = f.drain();
    let verify: Vec<_> = msgs
        .iter()
        .filter(|m| m.0 == QUEUE_VERIFY)
        .cloned()
        .collect();
    f.answer(&[&first], &verify);
    let queued = f.drain();
    let escalated: Vec<_> = queued
        .iter()
        .filter(|m| m.0 == tessera_protocol::wire::verifier_queue(&v2.public()))
        .cloned()
        .collect();
    assert_eq!(
        escalated.len(),
        1,
        "one escalated check, routed to the other-class verifier: {:?}",
        queued.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    // V2 does not answer in time: the reconciler publishes the check again to V2's own
    // queue, never to the shared queue where the first verifier could take it.
    let later = f.now + f.svc.config().verify_timeout_ms + 1;
    f.svc.reconcile(later).unwrap();
    let again = f.drain();
    let routes: Vec<&String> = again.iter().map(|m| &m.0).collect();
    assert_eq!(
        routes,
        vec![&escalated[0].0],
        "the escalated check republished to the same verifier"
    );
    assert_eq!(again[0].2, escalated[0].2, "the same request, unchanged");
    f.verify_with(&[&first, &second], &escalated);
    // A is inconclusive: its tiles are rendered again by B in round 1.
    assert_eq!(state(&f, &job), "rendering");
    render_all(&f, &[&nb], |_| 0);
    f.verify_with(&[&first, &second], &f.drain());
    assert_eq!(state(&f, &job), "done");

    let bd = bundle(&f, &job);
    audits(&bd);
    let on_a: Vec<&Verdict> = all_verdicts(&bd)
        .into_iter()
        .filter(|v| v.node == a.public())
        .collect();
    assert_eq!(on_a.len(), 2);
    assert_eq!(
        (on_a[0].check, on_a[0].decision),
        (CheckKind::FIRST, Decision::Escalate)
    );
    assert_eq!(
        (on_a[1].check, on_a[1].decision),
        (CheckKind::FIRST.escalate(), Decision::Inconclusive)
    );
    assert!(on_a[1].samples.len() >= on_a[0].samples.len());
    assert_eq!(on_a[1].aggregate_band, Band::Ambiguous);
    let escalated_by = bd.rounds[0]
        .verdicts
        .iter()
        .find(|v| v.statement.node == a.public() && v.statement.check.escalated)
        .unwrap()
        .signer;
    assert_eq!(
        escalated_by,
        v2.public(),
        "escalated to the second verifier"
    );
    // Never slashed, never paid; trust halved; the client paid the job's price once.
    let ts = transfers(&f, &job);
    let node_a = format!("node:{}", a.public());
    assert_eq!(
        sum(&ts, TransferKind::Slash, &format!("stake:{}", a.public())),
        0
    );
    assert_eq!(sum(&ts, TransferKind::PayOnPass, &node_a), 0);
    assert_eq!(f.svc.store().trust(&a.public()).unwrap(), 10);
    assert_paid_once(&f, &job);
    let charged = sum(&ts, TransferKind::Escrow, "client:studio")
        - sum(&ts, TransferKind::Refund, "client:studio");
    assert_eq!(
        charged, price,
        "the client pays the job's price and nothing more"
    );
}

/// Escalate node A's first check (A renders in a class 4 % of whose pixels diverge:
/// ambiguous), with `spares` registered as further verifiers of other classes; returns
/// the farm, the job, every verifier with its key (the one that escalated first), and
/// the escalated request as queued.
#[allow(clippy::type_complexity)]
fn escalated_check(
    spares: &[u8],
) -> (
    Farm,
    String,
    Vec<(SecretKey, Verifier)>,
    (String, String, Vec<u8>),
) {
    let f = farm(diverged_only());
    let (a, b, v1) = (key(1), key(3), key(2));
    f.register_with(&a, "node", caps(&other(&f, "b", 40_000)));
    f.register(&b, "node");
    f.register(&v1, "verifier");
    let mut verifiers = vec![(v1, Verifier::new(key(2), f.renderer.clone()))];
    for &n in spares {
        let r = other(&f, &format!("v{n}"), 0);
        f.register_with(&key(n), "verifier", caps(&r));
        verifiers.push((key(n), Verifier::new(key(n), r)));
    }
    f.svc.store().set_trust(&a.public(), 20).unwrap();
    let job = f.submit();
    let na = node_with(&a, other(&f, "b", 40_000), None);
    let nb = f.node(&b, None);
    render_all(&f, &[&na, &nb], |i| i % 2);
    let verify: Vec<_> = f
        .drain()
        .into_iter()
        .filter(|m| m.0 == QUEUE_VERIFY)
        .collect();
    f.answer(&[&verifiers[0].1], &verify);
    let queued = f.drain();
    assert_eq!(
        queued.len(),
        1,
        "{:?}",
        queued.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    let escalated = queued.into_iter().next().unwrap();
    (f, job, verifiers, escalated)
}

/// Run the reconciler one verify timeout later and return where it published.
fn republished(f: &mut Farm) -> Vec<(String, String, Vec<u8>)> {
    f.now += f.svc.config().verify_timeout_ms + 1;
    f.svc.reconcile(f.now).unwrap();
    f.drain()
}

#[test]
fn an_escalated_check_whose_verifier_is_gone_moves_to_another_verifier() {
    let (mut f, job, verifiers, escalated) = escalated_check(&[4, 5]);
    let queue_of = |k: &SecretKey| tessera_protocol::wire::verifier_queue(&k.public());
    let chosen = verifiers
        .iter()
        .position(|(k, _)| queue_of(k) == escalated.0)
        .expect("the escalated check went to a verifier's own queue");
    assert_ne!(chosen, 0, "not to the verifier that escalated");
    // One missed deadline: published again to the same verifier (it may be restarting).
    let again = republished(&mut f);
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].0, escalated.0,
        "first republish stays with the chosen verifier"
    );
    // A second one: the chosen verifier is taken as gone and the check moves to the
    // other spare, never to the verifier that escalated it.
    let moved = republished(&mut f);
    assert_eq!(moved.len(), 1);
    let spare = 3 - chosen;
    assert_eq!(
        moved[0].0,
        queue_of(&verifiers[spare].0),
        "the check moved to the other verifier of another class"
    );
    assert_eq!(moved[0].2, escalated.2, "the same request, unchanged");
    // And it stays there.
    assert_eq!(republished(&mut f)[0].0, moved[0].0);
    let all: Vec<&Verifier> = verifiers.iter().map(|(_, v)| v).collect();
    f.verify_with(&all, &moved);
    // The gone verifier comes back and answers its copy late: nothing changes.
    let before = f.svc.store().balances().unwrap();
    f.answer(&[&verifiers[chosen].1], &[escalated]);
    assert_eq!(f.svc.store().balances().unwrap(), before);
    // A was inconclusive; B renders its tiles again and the job completes and audits.
    assert_eq!(state(&f, &job), "rendering");
    let nb = f.node(&key(3), None);
    render_all(&f, &[&nb], |_| 0);
    f.verify_with(&all, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let bd = bundle(&f, &job);
    audits(&bd);
    let escalated_by = bd.rounds[0]
        .verdicts
        .iter()
        .find(|v| v.statement.node == key(1).public() && v.statement.check.escalated)
        .unwrap()
        .signer;
    assert_eq!(escalated_by, verifiers[spare].0.public());
}

#[test]
fn an_escalated_check_whose_only_second_verifier_is_gone_goes_to_the_shared_queue() {
    let (mut f, job, verifiers, escalated) = escalated_check(&[4]);
    assert_eq!(
        escalated.0,
        tessera_protocol::wire::verifier_queue(&key(4).public())
    );
    assert_eq!(republished(&mut f)[0].0, escalated.0);
    let moved = republished(&mut f);
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].0, QUEUE_VERIFY,
        "no other verifier: any verifier may take it"
    );
    // The first verifier is the only one left; its larger check settles the round
    // instead of the job failing for want of an answer.
    f.verify_with(&[&verifiers[0].1], &moved);
    assert_eq!(state(&f, &job), "rendering");
    let nb = f.node(&key(3), None);
    render_all(&f, &[&nb], |_| 0);
    f.verify_with(&[&verifiers[0].1], &f.drain());
    assert_eq!(state(&f, &job), "done");
    audits(&bundle(&f, &job));
}

#[test]
fn a_far_tile_is_confirmed_by_the_second_verifier_before_a_slash() {
    let f = farm(diverged_only());
    let (a, b, v1, v2) = (key(1), key(3), key(2), key(4));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&v1, "verifier");
    let v2_renderer = other(&f, "v2", 0);
    f.register_with(&v2, "verifier", caps(&v2_renderer));
    let job = f.submit();
    let price = job_price(&bundle_manifest(&f, &job));
    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Noise)), f.node(&b, None));
    render_all(&f, &[&cheat, &honest], |i| i % 2);
    let vs = [
        &Verifier::new(v1, f.renderer.clone()),
        &Verifier::new(key(4), v2_renderer),
    ];
    f.verify_with(&vs, &f.drain());
    render_all(&f, &[&honest], |_| 0);
    f.verify_with(&vs, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let bd = bundle(&f, &job);
    audits(&bd);
    let on_a: Vec<(CheckKind, Decision, PublicKey)> = bd.rounds[0]
        .verdicts
        .iter()
        .filter(|v| v.statement.node == a.public())
        .map(|v| (v.statement.check, v.statement.decision, v.signer))
        .collect();
    assert_eq!(
        on_a.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
        vec![
            (CheckKind::FIRST, Decision::Escalate),
            (CheckKind::FIRST.escalate(), Decision::Fail)
        ]
    );
    assert_eq!(on_a[1].2, v2.public());
    let ts = transfers(&f, &job);
    assert!(sum(&ts, TransferKind::Slash, &format!("stake:{}", a.public())) > 0);
    assert_eq!(f.svc.store().trust(&a.public()).unwrap(), 0);
    assert_paid_once(&f, &job);
    let charged = sum(&ts, TransferKind::Escrow, "client:studio")
        - sum(&ts, TransferKind::Refund, "client:studio");
    assert_eq!(charged, price);
}

/// A tolerance that flags nothing: every mismatch is `close`, every aggregate passes.
fn blind() -> Tolerance {
    diverged_limits(1_000_000, 1_000_000, 1_000_000)
}

/// A tolerance under which a noisy aggregate is `ambiguous`, never `far`, and no block is
/// far: on its own it never fails anyone.
fn never_far() -> Tolerance {
    diverged_limits(10_000, 1_000_000, 1_000_000)
}

/// Within one determinism class honest bytes are equal. A node whose blocks differ from
/// its own class's re-render is escalated even where the tolerance passes them, to a
/// second verifier of that class. When that one re-renders the same bytes as the first,
/// the node fails (slashed, its tiles to another node) if the tolerance does not pass the
/// difference either, and ends inconclusive (unpaid, never slashed) if it does: a
/// difference that small is what a class defined too loosely would show. With no second
/// verifier of the node's class the escalated check goes to the other class and the
/// tolerance alone decides, as before. The audit re-derives every outcome, and a verdict
/// that says `pass` instead does not follow.
#[test]
fn two_renders_of_the_nodes_class_decide_a_mismatch_with_the_tolerance() {
    let cases = [
        ("never far", never_far(), true, Decision::Fail),
        ("never far", never_far(), false, Decision::Inconclusive),
        ("blind", blind(), true, Decision::Inconclusive),
        ("blind", blind(), false, Decision::Pass),
    ];
    for (name, tolerance, corroborating, decision) in cases {
        let case = format!("tolerance {name}, corroborating {corroborating}");
        let f = farm(tolerance);
        let (a, b, v1, v3, v4) = (key(1), key(3), key(2), key(5), key(4));
        f.register(&a, "node");
        f.register(&b, "node");
        f.register(&v1, "verifier");
        let v4_renderer = other(&f, "v4", 0);
        f.register_with(&v4, "verifier", caps(&v4_renderer));
        if corroborating {
            f.register(&v3, "verifier");
        }
        let job = f.submit();
        let (cheat, honest) = (f.node(&a, Some(DishonestMode::Noise)), f.node(&b, None));
        render_all(&f, &[&cheat, &honest], |i| i % 2);
        let vs = [
            &Verifier::new(key(2), f.renderer.clone()),
            &Verifier::new(key(5), f.renderer.clone()),
            &Verifier::new(key(4), v4_renderer.clone()),
        ];
        f.verify_with(&vs, &f.drain());
        if decision != Decision::Pass {
            render_all(&f, &[&honest], |_| 0);
            f.verify_with(&vs, &f.drain());
        }
        assert_eq!(state(&f, &job), "done", "{case}");
        let bd = bundle(&f, &job);
        audits(&bd);
        let on_a: Vec<&Signed<Verdict>> = bd.rounds[0]
            .verdicts
            .iter()
            .filter(|v| v.statement.node == a.public())
            .collect();
        let seen: Vec<_> = on_a
            .iter()
            .map(|v| (v.statement.check, v.statement.decision, v.signer))
            .collect();
        let second = if corroborating {
            v3.public()
        } else {
            v4.public()
        };
        assert_eq!(
            seen,
            vec![
                (CheckKind::FIRST, Decision::Escalate, v1.public()),
                (CheckKind::FIRST.escalate(), decision, second)
            ],
            "{case}"
        );
        // The first check's blocks all differed from the node's; none was far.
        let first = &on_a[0].statement;
        assert!(
            first
                .samples
                .iter()
                .all(|s| !s.matched && s.band == Band::Close),
            "{case}"
        );
        let ts = transfers(&f, &job);
        let slashed = sum(&ts, TransferKind::Slash, &format!("stake:{}", a.public()));
        let paid = sum(
            &ts,
            TransferKind::PayOnPass,
            &format!("node:{}", a.public()),
        );
        assert_paid_once(&f, &job);
        assert_eq!(
            (slashed > 0, paid > 0),
            (decision == Decision::Fail, decision == Decision::Pass),
            "{case}"
        );
        if !corroborating {
            continue;
        }
        // Both verifiers re-rendered the first check's blocks to the same bytes.
        let escalated = &on_a[1].statement;
        for s in &first.samples {
            let again = escalated
                .samples
                .iter()
                .find(|e| (e.leaf_index, e.block) == (s.leaf_index, s.block))
                .unwrap();
            assert_eq!(again.rerender_hash, s.rerender_hash, "{case}");
        }
        // The same verdict saying `pass`, signed by its verifier, does not follow.
        let mut forged = bd.clone();
        let at = forged.rounds[0]
            .verdicts
            .iter()
            .position(|v| v.statement.node == a.public() && v.statement.check.escalated)
            .unwrap();
        let mut statement = forged.rounds[0].verdicts[at].statement.clone();
        statement.decision = Decision::Pass;
        forged.rounds[0].verdicts[at] = Signed::sign(statement, &v3);
        let report = audit_bundle(&forged, None);
        assert!(
            report
                .failures()
                .any(|c| c.name == "verdict" && c.detail.contains("decision Pass does not follow")),
            "{case}: {:#?}",
            report.failures().collect::<Vec<_>>()
        );
    }
}

fn bundle_manifest(f: &Farm, job: &str) -> tessera_protocol::statements::JobManifest {
    f.svc.job_view(job).unwrap().manifest.statement
}

/// One sampled tile per node and round, but a dispute samples everything: a node that
/// forges one tile in twelve usually passes its round and is caught by the dispute.
fn dispute_farm() -> Farm {
    Farm::with_config(ServiceConfig {
        tolerance: Tolerance {
            escalation_multiplier: 100,
            ..diverged_only()
        },
        sampling: SamplingPolicy {
            detection_ppm: 1,
            forged_fraction_ppm: 500_000,
            new_node_trust: 0,
            new_node_multiplier: 1,
            floor: 1,
        },
        challenge_window_secs: 3_600,
        ..Farm::config()
    })
}

#[test]
fn a_dispute_that_finds_a_cheat_claws_back_slashes_and_rerenders_at_no_extra_charge() {
    let mut f = dispute_farm();
    let (a, b, v) = (key(1), key(3), key(2));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&v, "verifier");
    let verifier = Verifier::new(v, f.renderer.clone());
    let honest = f.node(&b, None);
    // Find a job whose one forged tile escaped the single sampled tile of round 0.
    let mut found = None;
    for _ in 0..40 {
        let job = f.submit_with("priority", Requirements::default());
        let cheat = f.node(&a, Some(DishonestMode::Partial));
        render_all(&f, &[&cheat], |_| 0);
        f.verify(&verifier, &f.drain());
        if state(&f, &job) == "done" {
            found = Some(job);
            break;
        }
        // Caught in the round: B renders its tiles again; try another job.
        render_all(&f, &[&honest], |_| 0);
        f.verify(&verifier, &f.drain());
        assert_eq!(state(&f, &job), "done");
        f.now += 1;
    }
    let job = found.expect("a forged tile escapes one sample in twelve most of the time");
    let m = bundle_manifest(&f, &job);
    let client = "client:studio";
    let stake_before = f
        .svc
        .store()
        .balance(&format!("stake:{}", a.public()))
        .unwrap();
    f.svc.open_dispute(&job, "studio", f.now).unwrap();
    assert_eq!(state(&f, &job), "disputed");
    assert_eq!(
        sum(&transfers(&f, &job), TransferKind::DisputeDeposit, client),
        dispute_deposit(&m)
    );
    f.verify(&verifier, &f.drain());
    // Upheld: A's tiles go to B in a new round.
    assert_eq!(state(&f, &job), "rendering");
    render_all(&f, &[&honest], |_| 0);
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");

    let bd = bundle(&f, &job);
    audits(&bd);
    assert_eq!(bd.disputes.len(), 1);
    assert!(bd
        .frames
        .iter()
        .flat_map(|fr| &fr.tiles)
        .all(|t| t.node == b.public()));
    let ts = transfers(&f, &job);
    let node_a = format!("node:{}", a.public());
    let paid_a = sum(&ts, TransferKind::PayOnPass, &node_a);
    assert!(paid_a > 0);
    assert_eq!(
        sum(&ts, TransferKind::Clawback, &node_a),
        paid_a,
        "A's pay comes back"
    );
    assert!(
        sum(
            &ts,
            TransferKind::Forfeit,
            &format!("holdback:{job}:{}", a.public())
        ) > 0
    );
    assert!(
        f.svc
            .store()
            .balance(&format!("stake:{}", a.public()))
            .unwrap()
            < stake_before
    );
    assert_eq!(
        sum(&ts, TransferKind::DisputeRefund, client),
        dispute_deposit(&m)
    );
    assert_eq!(f.svc.store().trust(&a.public()).unwrap(), 0);
    // The client paid the job's price once: the deposit came back, nothing more was taken.
    assert_eq!(client_outflow(&ts), job_price(&m));
    assert_eq!(f.svc.store().total().unwrap(), 0);
    // After the window the remaining hold-backs are released; the bundle still audits.
    f.now += 3_600_000;
    f.svc.reconcile(f.now).unwrap();
    audits(&bundle(&f, &job));
    assert_eq!(
        f.svc
            .store()
            .balance(&format!("holdback:{job}:{}", a.public()))
            .unwrap(),
        0
    );
    assert_eq!(f.svc.store().balance(&format!("escrow:{job}")).unwrap(), 0);
    f.restart();
    audits(&bundle(&f, &job));
}

#[test]
fn a_dispute_that_finds_nothing_costs_the_client_its_deposit() {
    let f = dispute_farm();
    let (a, v) = (key(1), key(2));
    f.register(&a, "node");
    f.register(&v, "verifier");
    let verifier = Verifier::new(v, f.renderer.clone());
    let job = f.submit_with("priority", Requirements::default());
    render_all(&f, &[&f.node(&a, None)], |_| 0);
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let m = bundle_manifest(&f, &job);
    f.svc.open_dispute(&job, "studio", f.now).unwrap();
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let ts = transfers(&f, &job);
    assert_eq!(
        sum(&ts, TransferKind::DisputeFee, "treasury"),
        dispute_deposit(&m)
    );
    assert_eq!(client_outflow(&ts), job_price(&m) + dispute_deposit(&m));
    assert_eq!(
        sum(&ts, TransferKind::Slash, &format!("stake:{}", a.public())),
        0
    );
    let bd = bundle(&f, &job);
    assert_eq!(bd.disputes.len(), 1);
    audits(&bd);
    f.svc.reconcile(f.now + 3_600_001).unwrap();
    let bd = bundle(&f, &job);
    audits(&bd);
    assert!(bd
        .payments
        .statement
        .transfers
        .iter()
        .any(|t| t.kind == TransferKind::Release));
}

#[test]
fn disputes_are_refused_outside_their_rules_and_change_nothing() {
    let f = dispute_farm();
    let (a, v) = (key(1), key(2));
    f.register(&a, "node");
    f.register(&v, "verifier");
    let verifier = Verifier::new(v, f.renderer.clone());
    let job = f.submit_with("priority", Requirements::default());
    let not_done = f.svc.open_dispute(&job, "studio", f.now).unwrap_err();
    assert!(
        not_done.to_string().contains("only a done job"),
        "{not_done}"
    );
    render_all(&f, &[&f.node(&a, None)], |_| 0);
    f.verify(&verifier, &f.drain());
    let total_before = f.svc.store().balances().unwrap();
    let wrong = f.svc.open_dispute(&job, "someone-else", f.now).unwrap_err();
    assert!(wrong.to_string().contains("another client"), "{wrong}");
    let late = f
        .svc
        .open_dispute(&job, "studio", f.now + 3_600_000)
        .unwrap_err();
    assert!(
        late.to_string().contains("challenge window is closed"),
        "{late}"
    );
    assert_eq!(f.svc.store().balances().unwrap(), total_before);
    f.svc.open_dispute(&job, "studio", f.now).unwrap();
    let twice = f.svc.open_dispute(&job, "studio", f.now).unwrap_err();
    assert!(
        twice.to_string().contains("disputed already") || twice.to_string().contains("is disputed"),
        "{twice}"
    );
}

#[test]
fn the_trusted_tier_goes_only_to_nodes_with_enough_trust() {
    let f = Farm::new();
    let (low, high, v) = (key(1), key(3), key(2));
    f.register(&low, "node");
    f.register(&high, "node");
    f.register(&v, "verifier");
    let refused = f
        .try_submit("trusted", Requirements::default())
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no registered node has the trust"),
        "{refused}"
    );
    f.svc.store().set_trust(&high.public(), 60).unwrap();
    let job = f.submit_with("trusted", Requirements::default());
    let msgs = f.drain();
    let queues: BTreeSet<&str> = msgs
        .iter()
        .filter(|m| m.0 != QUEUE_VERIFY)
        .map(|m| m.0.as_str())
        .collect();
    let own = tessera_protocol::wire::node_queue(&high.public());
    assert_eq!(queues, BTreeSet::from([own.as_str()]));
    // A result from the untrusted node is refused and pays nothing.
    let t = &tasks(&msgs)[0];
    let h = f
        .svc
        .handle_result(&result_body(&f.node(&low, None), t), f.now)
        .unwrap();
    assert!(
        matches!(&h, Handled::Refused(r) if r.contains("trust 0")),
        "{h:?}"
    );
    f.held.borrow_mut().extend(msgs);
    render_all(&f, &[&f.node(&high, None)], |_| 0);
    f.verify(&Verifier::new(v, f.renderer.clone()), &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    assert_eq!(f.svc.store().trust(&high.public()).unwrap(), 61);
}

/// Re-signed tampering: each change keeps every signature valid (the test holds the keys)
/// and must still be caught by the audit re-deriving the rule it breaks.
#[test]
fn the_audit_rejects_verdicts_and_payments_that_do_not_follow_from_the_rules() {
    let f = farm(diverged_only());
    let (a, b, v1, v2) = (key(1), key(3), key(2), key(4));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&v1, "verifier");
    let v2_renderer = other(&f, "v2", 0);
    f.register_with(&v2, "verifier", caps(&v2_renderer));
    let job = f.submit();
    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Black)), f.node(&b, None));
    render_all(&f, &[&cheat, &honest], |i| i % 2);
    let vs = [
        &Verifier::new(key(2), f.renderer.clone()),
        &Verifier::new(key(4), v2_renderer),
    ];
    f.verify_with(&vs, &f.drain());
    render_all(&f, &[&honest], |_| 0);
    f.verify_with(&vs, &f.drain());
    let good = bundle(&f, &job);
    audits(&good);
    let coordinator = SecretKey::from_seed(&f.coordinator_seed);
    let coordinator = &coordinator;
    let (a_pub, v1_pub) = (a.public(), v1.public());
    let signer_of = move |pk: &PublicKey| if *pk == v1_pub { key(2) } else { key(4) };
    // (what is changed, the check that must fail)
    type Tamper<'a> = Box<dyn Fn(&mut ProofBundle) + 'a>;
    let escalated_of_a = move |b: &mut ProofBundle| -> usize {
        b.rounds[0]
            .verdicts
            .iter()
            .position(|v| v.statement.node == a_pub && v.statement.check.escalated)
            .unwrap()
    };
    let resign = move |b: &mut ProofBundle, i: usize, edit: &dyn Fn(&mut Verdict)| {
        let v = &mut b.rounds[0].verdicts[i];
        let mut s = v.statement.clone();
        edit(&mut s);
        let k = signer_of(&v.signer);
        *v = Signed::sign(s, &k);
    };
    let cases: Vec<(&str, Tamper<'_>, &str)> = vec![
        (
            "a far tile relabelled close",
            Box::new(move |b| {
                let i = escalated_of_a(b);
                resign(b, i, &|s| s.samples[0].band = Band::Close);
            }),
            "verdict",
        ),
        (
            "a failure turned inconclusive",
            Box::new(move |b| {
                let i = escalated_of_a(b);
                resign(b, i, &|s| s.decision = Decision::Inconclusive);
            }),
            "verdict",
        ),
        (
            "metrics of a tile that matched",
            Box::new(move |b| {
                let i = b.rounds[0]
                    .verdicts
                    .iter()
                    .position(|v| v.statement.samples.iter().any(|s| s.matched))
                    .expect("the honest node's tiles match");
                resign(b, i, &|s| {
                    if let Some(x) = s.samples.iter_mut().find(|x| x.matched) {
                        x.metrics.diverged_ppm = 5;
                    }
                });
            }),
            "verdict",
        ),
        (
            "the escalated check dropped",
            Box::new(move |b| {
                let i = escalated_of_a(b);
                b.rounds[0].verdicts.remove(i);
                let j = b.rounds[0]
                    .samples
                    .iter()
                    .position(|s| s.node == a_pub && s.check.escalated)
                    .unwrap();
                b.rounds[0].samples.remove(j);
            }),
            "escalation",
        ),
        (
            "the slash left out of the receipt",
            Box::new(move |b| {
                let mut r = b.payments.statement.clone();
                r.transfers.retain(|t| t.kind != TransferKind::Slash);
                b.payments = Signed::sign(r, coordinator);
            }),
            "payments",
        ),
        (
            "a slash both collected and listed as uncollected",
            Box::new(move |b| {
                let mut r = b.payments.statement.clone();
                let slash = r
                    .transfers
                    .iter()
                    .find(|t| t.kind == TransferKind::Slash)
                    .cloned()
                    .expect("the cheater was slashed");
                r.uncollected.push(slash);
                b.payments = Signed::sign(r, coordinator);
            }),
            "payments",
        ),
        (
            "an uncollected slash larger than the rules charge",
            Box::new(move |b| {
                let mut r = b.payments.statement.clone();
                let i = r
                    .transfers
                    .iter()
                    .position(|t| t.kind == TransferKind::Slash)
                    .expect("the cheater was slashed");
                let mut slash = r.transfers.remove(i);
                slash.amount += 1;
                r.uncollected.push(slash);
                b.payments = Signed::sign(r, coordinator);
            }),
            "payments",
        ),
        (
            "evidence that is not what was delivered",
            Box::new(move |b| {
                let s = &mut b.rounds[0].samples[0];
                s.delivered[0][0] ^= 1;
            }),
            "verdict",
        ),
    ];
    for (what, tamper, check) in cases {
        let mut bad = good.clone();
        tamper(&mut bad);
        let report = audit_bundle(&bad, None);
        let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
        assert!(
            failed.contains(&check),
            "{what}: expected {check} to fail, failed {failed:?}"
        );
    }
}

/// A verifier that is sent a block whose delivered bytes do not hash to the committed
/// block hash fails the node and names that block `far` (under this tolerance its
/// unmeasured `{0,0,0,0}` metrics would band `close`), and `tessera audit` re-derives
/// that verdict from the bundle: its evidence, bands, decision and payments all agree.
#[test]
fn the_audit_re_derives_a_verdict_on_a_tampered_delivery() {
    use tessera_protocol::blocks::block_rect;
    use tessera_protocol::wire::SampledBlock;
    let f = farm(diverged_only());
    let (a, b, v1, v2) = (key(1), key(3), key(2), key(4));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&v1, "verifier");
    let v2_renderer = other(&f, "v2", 0);
    f.register_with(&v2, "verifier", caps(&v2_renderer));
    let job = f.submit();
    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Black)), f.node(&b, None));
    render_all(&f, &[&cheat, &honest], |i| i % 2);
    let vs = [
        &Verifier::new(key(2), f.renderer.clone()),
        &Verifier::new(key(4), v2_renderer.clone()),
    ];
    f.verify_with(&vs, &f.drain());
    render_all(&f, &[&honest], |_| 0);
    f.verify_with(&vs, &f.drain());
    let mut bundle = bundle(&f, &job);
    audits(&bundle);

    // The cheater's escalated check (a fail): its first sampled block arrives tampered,
    // and the verifier that signed the check judges it again.
    let i = bundle.rounds[0]
        .verdicts
        .iter()
        .position(|v| v.statement.node == a.public() && v.statement.check.escalated)
        .unwrap();
    bundle.rounds[0].samples[i].delivered[0][0] ^= 1;
    let round = &bundle.rounds[0];
    let before = &round.verdicts[i];
    assert_eq!(before.statement.decision, Decision::Fail);
    let ns = &round.samples[i];
    let leaves = tessera_verifier::checks::node_leaves(&round.batches, &ns.node);
    let samples = ns
        .proofs
        .iter()
        .zip(&ns.delivered)
        .map(|(p, delivered)| {
            let (bi, pos) = leaves[p.leaf_index as usize];
            let leaf = &round.batches[bi].tiles[pos];
            SampledBlock {
                proof: p.clone(),
                frame: round.batches[bi].signed.statement.frame,
                tile_index: leaf.tile_index,
                rect: block_rect(leaf.rect, p.block).unwrap(),
                committed_hash: p.block_hash,
                delivered: delivered.clone(),
            }
        })
        .collect();
    let req = VerifyRequest {
        version: WIRE_VERSION,
        request_id: "tampered".into(),
        manifest: bundle.manifest.clone(),
        commitment: round.commitment.clone(),
        round_batches: round.batches.clone(),
        check: ns.check,
        dispute: None,
        nonce: round.nonce,
        node: ns.node,
        samples,
        first: round
            .verdicts
            .iter()
            .find(|v| v.statement.node == ns.node && v.statement.check == CheckKind::FIRST)
            .cloned(),
    };
    let judge = if before.signer == v1.public() {
        vs[0]
    } else {
        vs[1]
    };
    let again = judge.handle_request(&req).unwrap();
    let s = &again.statement;
    assert_eq!(s.decision, Decision::Fail);
    assert!(!s.samples[0].delivered_ok);
    assert_eq!(s.samples[0].band, Band::Far, "{:?}", s.samples[0]);
    assert!(s.samples[1..].iter().all(|x| x.delivered_ok));
    bundle.rounds[0].verdicts[i] = again;
    audits(&bundle);
}

/// A bundle whose manifest says another version is refused by version, naming the one
/// found and the one expected, before its signature is looked at.
#[test]
fn the_audit_refuses_a_manifest_of_another_version_by_version() {
    let f = farm(diverged_only());
    let (a, v) = (key(1), key(2));
    f.register(&a, "node");
    f.register(&v, "verifier");
    let job = f.submit();
    render_all(&f, &[&f.node(&a, None)], |_| 0);
    f.verify(&Verifier::new(v, f.renderer.clone()), &f.drain());
    let mut b = bundle(&f, &job);
    audits(&b);
    b.manifest.statement.version = 2;
    let report = audit_bundle(&b, None);
    let failed: Vec<(&str, &str)> = report
        .failures()
        .map(|c| (c.name.as_str(), c.detail.as_str()))
        .collect();
    assert_eq!(failed, [("format", "manifest version 2, expected 3")]);
    assert!(
        report.checks.iter().all(|c| c.name != "manifest signature"),
        "{:#?}",
        report.checks
    );
}
