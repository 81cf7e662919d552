//! The daemon coordinator's state machine, driven directly (no broker, no HTTP) with a
//! virtual clock: messages are taken from its outbox table the way the publisher takes
//! them, answered by stand-in nodes and a verifier, and fed back. Covers a whole job,
//! leases that expire, duplicated and reordered results, refused inputs, the per-job
//! blocklist, and a restart between commit and publish.

mod common;

use common::*;
use tessera_coordinator::daemon::service::{check_settings, Limits, ServiceError};
use tessera_coordinator::machine::{Control, JobState};
use tessera_protocol::statements::TaskNote;

#[test]
fn a_job_runs_to_done_through_the_outbox_and_audits() {
    let f = Farm::new();
    let (a, v) = (key(1), key(2));
    f.register(&a, "node");
    f.register(&v, "verifier");
    let job = f.submit();
    assert_eq!(state(&f, &job), "queued");
    let msgs = f.drain();
    let ts = tasks(&msgs);
    assert_eq!(ts.len(), 2 * 6 / 2, "2 frames × 6 tiles in tasks of 2");
    let node = f.node(&a, None);
    for t in &ts {
        assert_eq!(
            f.svc.handle_result(&result_body(&node, t), f.now).unwrap(),
            Handled::Done
        );
    }
    assert_eq!(state(&f, &job), "verifying");
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    let frame = f.svc.frame(&job, 1).unwrap();
    assert_eq!(frame.len(), 40 * 24 * 8);
    // Done with its hold-backs released, the job is over: the reconciler reads it no more.
    assert!(f
        .svc
        .job_view(&job)
        .unwrap()
        .progress
        .release_at_ms
        .is_none());
    assert!(f.svc.store().running_job_ids().unwrap().is_empty());
}

#[test]
fn duplicated_and_reordered_results_pay_once() {
    let f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let (na, nb) = (f.node(&a, None), f.node(&b, None));
    // Both nodes render every task; results arrive in reverse order, each twice.
    let mut bodies = Vec::new();
    for t in &ts {
        bodies.push(result_body(&na, t));
        bodies.push(result_body(&nb, t));
    }
    bodies.reverse();
    for body in bodies.iter().chain(bodies.iter()) {
        assert_eq!(f.svc.handle_result(body, f.now).unwrap(), Handled::Done);
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    let msgs = f.drain();
    f.verify(&verifier, &msgs);
    f.verify(&verifier, &msgs); // verdicts delivered twice
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

#[test]
fn a_leased_task_cannot_be_taken_over_by_another_node() {
    let mut f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    f.submit();
    let first = tasks(&f.drain())[0].task_id.clone();
    let holder = |f: &Farm| {
        f.svc
            .task(&first)
            .unwrap()
            .unwrap()
            .holder
            .map(|k| k.to_string())
    };
    f.svc
        .handle_signal(&f.signal(&a, &[&first], &[]), f.now)
        .unwrap();
    assert_eq!(holder(&f), Some(a.public().to_string()));
    // b names the task in its heartbeats: a keeps the lease, and a's heartbeats keep
    // extending it.
    f.now += 1;
    f.svc
        .handle_signal(&f.signal(&b, &[&first], &[]), f.now)
        .unwrap();
    assert_eq!(holder(&f), Some(a.public().to_string()));
    f.now += LEASE - 1;
    f.svc
        .handle_signal(&f.signal(&a, &[&first], &[]), f.now)
        .unwrap();
    f.now += LEASE - 1;
    assert_eq!(f.svc.reconcile(f.now).unwrap(), 0, "a's lease was extended");
    assert_eq!(holder(&f), Some(a.public().to_string()));
    // Once a's lease has expired and the task is requeued, b may lease it.
    f.now += 2;
    assert_eq!(f.svc.reconcile(f.now).unwrap(), 1);
    f.drain();
    f.svc
        .handle_signal(&f.signal(&b, &[&first], &[]), f.now)
        .unwrap();
    assert_eq!(holder(&f), Some(b.public().to_string()));
}

#[test]
fn expired_leases_requeue_and_block_a_silent_node_then_the_job_finishes() {
    let mut f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let first = ts[0].task_id.clone();
    // Node a takes the first task, heartbeats once, then goes silent.
    for _ in 0..3 {
        f.svc
            .handle_signal(&f.signal(&a, &[&first], &[]), f.now)
            .unwrap();
        f.now += LEASE - 1;
        assert_eq!(f.svc.reconcile(f.now).unwrap(), 0, "lease still valid");
        f.now += 2;
        assert_eq!(
            f.svc.reconcile(f.now).unwrap(),
            1,
            "expired lease not requeued"
        );
        let again = tasks(&f.drain());
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].task_id, first);
    }
    // Three expired leases: a is blocked from the job; the republished task says so and
    // goes to b's own queue.
    f.svc
        .handle_signal(&f.signal(&b, &[&first], &[]), f.now)
        .unwrap();
    let nb = f.node(&b, None);
    let msgs_before = f.svc.store().outbox(100).unwrap();
    assert!(msgs_before.is_empty());
    let body = f.svc.task(&first).unwrap().unwrap().body;
    assert_eq!(body.attempt, 3);
    assert!(
        body.blocked.contains(&a.public()),
        "silent node not blocked"
    );
    // a's late result counts for nothing: signed by a, it lost the lease (acked and
    // dropped); with a broken signature it is parked. b's counts.
    let na = f.node(&a, None);
    let late = result_body(&na, &body);
    assert!(matches!(
        f.svc.handle_result(&late, f.now).unwrap(),
        Handled::Superseded(r) if r.contains("does not hold its lease")
    ));
    let mut forged: serde_json::Value = serde_json::from_slice(&late).unwrap();
    let sig = forged["batch"]["signed"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    forged["batch"]["signed"]["signature"] = format!("{flipped}{}", &sig[1..]).into();
    assert!(matches!(
        f.svc.handle_result(&serde_json::to_vec(&forged).unwrap(), f.now).unwrap(),
        Handled::Refused(r) if r.contains("does not hold its lease")
    ));
    f.restart();
    for t in ts.iter().skip(1).chain(std::iter::once(&body)) {
        assert_eq!(
            f.svc.handle_result(&result_body(&nb, t), f.now).unwrap(),
            Handled::Done
        );
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    let bundle: tessera_protocol::bundle::ProofBundle = f.svc.bundle(&job).unwrap();
    assert!(bundle
        .frames
        .iter()
        .flat_map(|f| &f.tiles)
        .all(|t| t.node == b.public()));
}

#[test]
fn refused_inputs_name_their_reason_and_change_nothing() {
    let f = Farm::new();
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let na = f.node(&a, None);
    let good = na.handle_task(&ts[0]).unwrap();
    let refused = |body: Vec<u8>| match f.svc.handle_result(&body, f.now).unwrap() {
        Handled::Refused(r) => r,
        other => panic!("not parked: {other:?}"),
    };
    assert!(refused(b"{not json".to_vec()).contains("malformed result"));
    // Signed by a key that never registered.
    let stranger = Node::new("x", key(50), [7; 32], f.renderer.clone(), None);
    let r = refused(serde_json::to_vec(&stranger.handle_task(&ts[0]).unwrap()).unwrap());
    assert!(r.contains("unknown node"), "{r}");
    // A tile whose bytes do not hash to its leaf.
    let mut bad = good.clone();
    bad.tiles[0].bytes[0] ^= 1;
    assert!(refused(serde_json::to_vec(&bad).unwrap()).contains("do not hash"));
    // A tile with bounds outside the image.
    let mut off = good.clone();
    off.batch.tiles[0].rect.x = 10_000;
    let r = refused(serde_json::to_vec(&off).unwrap());
    assert!(r.contains("tile"), "{r}");
    // A signal signed by someone else than the node it names.
    let forged = Signed {
        statement: NodeSignal {
            node: a.public(),
            sent_unix_ms: 0,
            active: vec![],
            declined: vec![],
            failed: vec![TaskNote {
                task_id: ts[0].task_id.clone(),
                attempt: 0,
                reason: "x".into(),
            }],
        },
        signer: PublicKey(key(50).public().0),
        signature: [0; 64],
    };
    assert!(matches!(
        f.svc
            .handle_signal(&serde_json::to_vec(&forged).unwrap(), f.now)
            .unwrap(),
        Handled::Refused(_)
    ));
    // Nothing above was stored or paid, and the job still finishes.
    assert_eq!(f.svc.job_view(&job).unwrap().progress.tiles_rendered, 0);
    for t in &tasks(&f.drain())
        .into_iter()
        .chain(ts.clone())
        .collect::<Vec<_>>()
    {
        f.svc.handle_result(&result_body(&na, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

#[test]
fn a_cheater_is_slashed_and_its_tiles_rendered_elsewhere() {
    let f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let ts = tasks(&f.drain());
    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Black)), f.node(&b, None));
    for (i, t) in ts.iter().enumerate() {
        let n = if i % 2 == 0 { &cheat } else { &honest };
        f.svc.handle_result(&result_body(n, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "rendering", "round 1 should re-render");
    let round1 = tasks(&f.drain());
    assert!(!round1.is_empty());
    for t in &round1 {
        assert!(t.blocked.contains(&a.public()));
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
    let slashed: u64 = f
        .svc
        .store()
        .job_transfers(&job)
        .unwrap()
        .iter()
        .filter(|t| t.kind == TransferKind::Slash)
        .map(|t| t.amount)
        .sum();
    assert!(slashed > 0, "cheater not slashed");
}

#[test]
fn a_restart_after_commit_still_publishes_what_was_committed() {
    let mut f = Farm::new();
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    // The coordinator dies before its publisher ran: the tasks are still in the outbox.
    f.restart();
    let ts = tasks(&f.drain());
    assert_eq!(ts.len(), 6);
    let n = f.node(&key(1), None);
    for t in &ts {
        f.svc.handle_result(&result_body(&n, t), f.now).unwrap();
    }
    f.restart();
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

#[test]
fn a_node_failure_signal_requeues_and_too_many_fail_the_job_with_a_refund() {
    let mut f = Farm::new();
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let t = tasks(&f.drain())[0].task_id.clone();
    let max = f.svc.config().max_attempts;
    for i in 1..max {
        // A failing node names the task as held in the signal that reports the failure:
        // a failure counts only from the lease holder.
        f.svc
            .handle_signal(&f.signal(&a, &[&t], &[&t]), f.now)
            .unwrap();
        f.now += 1;
        let again = f.drain();
        if i < 3 {
            assert_eq!(tasks(&again).len(), 1, "failed task not republished");
        }
    }
    // a is blocked after 3 failures and is the only node: the task cannot be routed, so
    // the reconciler republishes it until it runs out of attempts.
    f.now += 3_600_000;
    for _ in 0..max {
        f.svc.reconcile(f.now).unwrap();
        f.now += 3_600_000;
    }
    let v = f.svc.job_view(&job).unwrap();
    assert_eq!(v.progress.state.as_str(), "failed");
    assert!(v.progress.error.unwrap().contains("failed"));
    assert_eq!(f.svc.store().balance(&format!("escrow:{job}")).unwrap(), 0);
    assert_eq!(f.svc.store().total().unwrap(), 0);
}

/// A client requeues its failed job inside the job's window: the escrow is funded again
/// from the client's balance with what the failure refunded, the task goes out again with
/// fresh attempts, and the job finishes with a bundle that audits. A stranger is told the
/// job does not exist; after the window, the requeue is refused and changes nothing.
#[test]
fn a_failed_job_requeued_by_its_client_finishes_and_its_client_pays_its_price_once() {
    let mut f = Farm::with_config(ServiceConfig {
        challenge_window_secs: 3_600 * 24,
        ..Farm::config()
    });
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let run = |f: &Farm| -> String {
        let job = f.submit();
        let t = tasks(&f.drain())[0].task_id.clone();
        for _ in 1..f.svc.config().max_attempts {
            f.svc
                .handle_signal(&f.signal(&a, &[&t], &[&t]), f.now)
                .unwrap();
        }
        job
    };
    let job = run(&f);
    let before = f.svc.store().balance("client:studio").unwrap();
    for _ in 0..f.svc.config().max_attempts {
        f.now += 3_600_000;
        f.svc.reconcile(f.now).unwrap();
    }
    assert_eq!(state(&f, &job), "failed");
    let refunded = f.svc.store().balance("client:studio").unwrap() - before;
    assert!(refunded > 0);
    assert!(matches!(
        f.svc.control("mallory", &job, Control::Requeue, f.now),
        Err(ServiceError::NotFound(_))
    ));
    let after = f
        .svc
        .control("studio", &job, Control::Requeue, f.now)
        .unwrap();
    assert_ne!(after, JobState::Failed);
    assert_eq!(
        f.svc.store().balance(&format!("escrow:{job}")).unwrap(),
        refunded
    );
    assert_eq!(f.svc.store().balance("client:studio").unwrap(), before);
    // The failed deliveries' block is lifted: node a renders everything this time.
    let n = f.node(&a, None);
    let mut msgs = f.drain();
    assert!(!tasks(&msgs).is_empty());
    while !tasks(&msgs).is_empty() {
        for t in &tasks(&msgs) {
            f.svc.handle_result(&result_body(&n, t), f.now).unwrap();
        }
        msgs = f.drain();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &msgs);
    assert_eq!(state(&f, &job), "done");
    let bundle: tessera_protocol::bundle::ProofBundle = f.svc.bundle(&job).unwrap();
    assert_eq!(bundle.requeues.len(), 1);
    // The client paid the price once: refunded, funded again, spent.
    let price = tessera_protocol::rules::job_price(&bundle.manifest.statement) as i64;
    assert_eq!(
        f.svc.store().balance("client:studio").unwrap(),
        before - (price - refunded)
    );
    f.now += 3_600_000 * 25;
    f.svc.reconcile(f.now).unwrap();
    assert_paid_once(&f, &job);

    // A second job fails and its window closes: the requeue is refused, nothing moves.
    let job = run(&f);
    for _ in 0..f.svc.config().max_attempts {
        f.now += 3_600_000;
        f.svc.reconcile(f.now).unwrap();
    }
    assert_eq!(state(&f, &job), "failed");
    f.now += 3_600_000 * 25;
    f.svc.reconcile(f.now).unwrap();
    let balances = f.svc.store().balances().unwrap();
    let refused = f.svc.control("studio", &job, Control::Requeue, f.now);
    assert!(
        matches!(&refused, Err(ServiceError::Unavailable(why)) if why.contains("window is over")),
        "{refused:?}"
    );
    assert_eq!(f.svc.store().balances().unwrap(), balances);
    assert_eq!(state(&f, &job), "failed");
}

#[test]
fn hold_backs_are_released_when_the_challenge_window_ends() {
    let mut f = Farm::new();
    let cfg = ServiceConfig {
        challenge_window_secs: 60,
        ..f.svc.config().clone()
    };
    f.svc = Service::new(
        Store::open(&f.db).unwrap(),
        SecretKey::from_seed(&f.coordinator_seed),
        cfg,
    );
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let n = f.node(&key(1), None);
    for t in &tasks(&f.drain()) {
        f.svc.handle_result(&result_body(&n, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let escrow = format!("holdback:{job}:{}", key(1).public());
    let held = f.svc.store().balance(&escrow).unwrap();
    assert!(held > 0, "economy holds half back until the window ends");
    f.now += 59_000;
    f.svc.reconcile(f.now).unwrap();
    assert_eq!(
        f.svc.store().balance(&escrow).unwrap(),
        held,
        "released early"
    );
    f.now += 2_000;
    f.svc.reconcile(f.now).unwrap();
    assert_eq!(f.svc.store().balance(&escrow).unwrap(), 0, "not released");
    f.svc.reconcile(f.now + 1).unwrap(); // nothing twice
    assert_paid_once(&f, &job);
    let bundle: tessera_protocol::bundle::ProofBundle = f.svc.bundle(&job).unwrap();
    let released: u64 = bundle
        .payments
        .statement
        .transfers
        .iter()
        .filter(|t| t.kind == TransferKind::Release)
        .map(|t| t.amount)
        .sum();
    assert_eq!(
        released as i64, held,
        "the bundle's receipt lacks the releases"
    );
}

#[test]
fn jobs_with_requirements_go_only_to_nodes_that_meet_them() {
    let mut f = Farm::new();
    let (small, big, other_class) = (key(1), key(3), key(4));
    let mut caps_small = caps(&f.renderer);
    caps_small.memory_bytes = 1 << 20;
    f.register_with(&small, "node", caps_small);
    let mut caps_big = caps(&f.renderer);
    caps_big.memory_bytes = 8 << 30;
    f.register_with(&big, "node", caps_big.clone());
    let mut caps_other = caps_big.clone();
    caps_other.class.driver = "another driver".into();
    f.register_with(&other_class, "node", caps_other);
    f.register(&key(2), "verifier");
    let job = f.submit_requiring(Requirements {
        class_id: Some(caps_big.class.id()),
        min_memory_bytes: 4 << 30,
    });
    let msgs = f.drain();
    let routed: std::collections::BTreeSet<&str> = msgs
        .iter()
        .filter(|m| m.0 != QUEUE_VERIFY)
        .map(|m| m.0.as_str())
        .collect();
    let want = tessera_protocol::wire::node_queue(&big.public());
    assert_eq!(
        routed,
        [want.as_str()].into_iter().collect(),
        "tasks must go only to the node with enough memory and the required class"
    );
    // The node that meets them declines one anyway (say it lost memory): with nobody
    // else eligible it stays unrouted until the reconciler tries again, never to `tasks`.
    let first = tasks(&msgs)[0].task_id.clone();
    let decline = Signed::sign(
        NodeSignal {
            node: big.public(),
            sent_unix_ms: f.now,
            active: vec![],
            declined: vec![TaskNote {
                task_id: first.clone(),
                attempt: 0,
                reason: "out of memory".into(),
            }],
            failed: vec![],
        },
        &big,
    );
    f.svc
        .handle_signal(&serde_json::to_vec(&decline).unwrap(), f.now)
        .unwrap();
    assert!(
        f.drain().is_empty(),
        "declined task rerouted to an ineligible node"
    );
    // Every task rendered by the eligible node: the job finishes.
    f.now += 1;
    let nb = f.node(&big, None);
    for t in &tasks(&msgs) {
        f.svc.handle_result(&result_body(&nb, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

/// A verifier the job names signs verdicts that do not follow from the rules: each is
/// refused with its reason, counted against the verifier and republished; nothing is
/// paid, slashed or trusted; after three the verifier is barred; an honest verifier
/// finishes the job.
#[test]
fn verdicts_that_do_not_follow_from_the_rules_move_nothing() {
    use tessera_protocol::statements::Decision;
    use tessera_protocol::tolerance::{Band, TileMetrics};
    let f = Farm::new();
    let a = key(1);
    f.register(&a, "node");
    let (rogue_key, honest_key) = (key(2), key(4));
    f.register(&rogue_key, "verifier");
    f.register(&honest_key, "verifier");
    let job = f.submit();
    let na = f.node(&a, None);
    for t in &tasks(&f.drain()) {
        f.svc.handle_result(&result_body(&na, t), f.now).unwrap();
    }
    let msgs = f.drain();
    let req_body = &msgs.iter().find(|m| m.0 == QUEUE_VERIFY).unwrap().2;
    let req: VerifyRequest = serde_json::from_slice(req_body).unwrap();
    let rogue = Verifier::new(key(2), f.renderer.clone());
    let honest = rogue.handle_request(&req).unwrap().statement;
    let stake = |f: &Farm| {
        f.svc
            .store()
            .balance(&format!("stake:{}", a.public()))
            .unwrap()
    };
    let before = (stake(&f), f.svc.store().balances().unwrap());
    type Bend = fn(&mut tessera_protocol::statements::Verdict);
    let forgeries: [(&str, Bend, &str); 4] = [
        (
            "a pass with no samples and a zero seed",
            |v| {
                v.samples.clear();
                v.seed = [0; 32];
                v.k = 0;
            },
            "seed, n or k differ",
        ),
        (
            "a fail on a first check",
            |v| v.decision = Decision::Fail,
            "decision Fail does not follow",
        ),
        (
            "a far band the metrics do not give",
            |v| {
                v.samples[0].matched = false;
                v.samples[0].rerender_hash = [1; 32];
                v.samples[0].metrics = TileMetrics::IDENTICAL;
                v.samples[0].band = Band::Far;
                v.decision = Decision::Escalate;
            },
            "does not follow from its metrics",
        ),
        (
            "samples of other leaves",
            |v| v.samples.reverse(),
            "checked leaves",
        ),
    ];
    for (i, (what, bend, reason)) in forgeries.iter().enumerate() {
        let mut v = honest.clone();
        bend(&mut v);
        let msg = VerdictMessage {
            version: WIRE_VERSION,
            request_id: req.request_id.clone(),
            verdict: Signed::sign(v, &rogue_key),
        };
        match f
            .svc
            .handle_verdict(&serde_json::to_vec(&msg).unwrap(), f.now)
            .unwrap()
        {
            Handled::Refused(r) if i < 3 => {
                assert!(r.contains(reason), "{what}: {r}");
                // Published again at once for another verifier.
                let again = f.drain();
                assert!(again
                    .iter()
                    .any(|m| m.0 == QUEUE_VERIFY && m.1 == req.request_id));
            }
            Handled::Refused(r) => assert!(r.contains("barred after 3"), "{what}: {r}"),
            other => panic!("{what} was not parked: {other:?}"),
        }
        assert_eq!(state(&f, &job), "verifying", "{what}");
        assert_eq!(
            (stake(&f), f.svc.store().balances().unwrap()),
            before,
            "{what}"
        );
    }
    assert_eq!(f.svc.store().trust(&a.public()).unwrap(), 0);
    // The honest verifier's verdicts are taken.
    let honest_verifier = Verifier::new(honest_key, f.renderer.clone());
    f.verify(&honest_verifier, &msgs);
    assert_eq!(state(&f, &job), "done");
    assert_paid_once(&f, &job);
}

/// A signal replayed, stale, or naming a task its sender may not touch does nothing;
/// a node may hold a lease only on a job it may take.
#[test]
fn replayed_stale_and_foreign_signals_do_nothing() {
    let mut f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    f.submit();
    let ts = tasks(&f.drain());
    let t = ts[0].task_id.clone();
    let holder = |f: &Farm| {
        f.svc
            .task(&t)
            .unwrap()
            .unwrap()
            .holder
            .map(|k| k.to_string())
    };
    // b fails a task it does not hold, eight times in one signal: nothing.
    let eight: Vec<&str> = vec![t.as_str(); 8];
    f.svc
        .handle_signal(&f.signal(&b, &[], &eight), f.now)
        .unwrap();
    assert_eq!(f.attempt(&t), 0);
    assert!(tasks(&f.drain()).is_empty());
    // a leases it and fails it once; the same signal again (a replay) does nothing.
    f.now += 1;
    let genuine = f.signal(&a, &[&t], &[&t]);
    f.svc.handle_signal(&genuine, f.now).unwrap();
    assert_eq!(f.attempt(&t), 1);
    for _ in 0..7 {
        assert_eq!(f.svc.handle_signal(&genuine, f.now).unwrap(), Handled::Done);
    }
    assert_eq!(f.attempt(&t), 1, "a replayed failure counted");
    assert_eq!(tasks(&f.drain()).len(), 1);
    // A note about the old attempt counts nothing, even fresh.
    f.now += 1;
    let old = Signed::sign(
        NodeSignal {
            node: a.public(),
            sent_unix_ms: f.now,
            active: vec![t.clone()],
            declined: vec![],
            failed: vec![TaskNote {
                task_id: t.clone(),
                attempt: 0,
                reason: "old".into(),
            }],
        },
        &a,
    );
    f.svc
        .handle_signal(&serde_json::to_vec(&old).unwrap(), f.now)
        .unwrap();
    assert_eq!(f.attempt(&t), 1);
    assert_eq!(holder(&f), Some(a.public().to_string()));
    // A signal sent far from the coordinator's clock is refused.
    f.now += f.svc.config().signal_window_ms + 1;
    let stale = Signed::sign(
        NodeSignal {
            node: b.public(),
            sent_unix_ms: 1,
            active: vec![t.clone()],
            declined: vec![],
            failed: vec![],
        },
        &b,
    );
    assert!(matches!(
        f.svc.handle_signal(&serde_json::to_vec(&stale).unwrap(), f.now).unwrap(),
        Handled::Refused(r) if r.contains("away from this coordinator's clock")
    ));
}

/// A submission with `settings` changed by `change`, for `client`, over `frames`, with
/// `tile`-pixel tiles in batches of `batch`.
fn submit_changed(
    f: &Farm,
    client: &str,
    frames: (u32, u32),
    tile: u32,
    batch: u32,
    change: impl FnOnce(&mut RenderSettings),
) -> Result<String, ServiceError> {
    f.fund(client);
    let mut settings = test_settings();
    change(&mut settings);
    f.svc.submit(
        Submission {
            client,
            scene_name: "scene.glb",
            scene_hash: [7; 32],
            settings,
            frames,
            tier: "economy",
            tile_size: Some(tile),
            batch_size: Some(batch),
            requirements: Default::default(),
        },
        f.now,
    )
}

/// Jobs, tasks and outbox rows in the store.
fn written(f: &Farm) -> (usize, usize, usize) {
    let c = rusqlite::Connection::open(&f.db).unwrap();
    let n = |t: &str| -> usize {
        c.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    (n("jobs"), n("tasks"), n("outbox"))
}

#[test]
fn jobs_over_a_limit_and_settings_that_cannot_render_are_refused_before_anything_is_written() {
    let f = Farm::with_config(ServiceConfig {
        limits: Limits {
            max_job_tasks: 100,
            max_job_tiles: 1_000,
            max_client_jobs: 2,
            max_client_bytes: 1 << 20,
        },
        ..Farm::config()
    });
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let before = written(&f);
    let refused = |r: Result<String, ServiceError>, field: &str| match r {
        Err(ServiceError::Invalid(m)) => assert!(m.contains(field), "{field}: {m}"),
        other => panic!("{field}: expected a refusal, got {other:?}"),
    };
    // 40×24 in 8-pixel tiles is 15 tiles a frame; batches of 1: 15 tasks a frame.
    refused(
        submit_changed(&f, "studio", (0, 6), 8, 1, |_| {}),
        "max_job_tasks",
    );
    refused(
        submit_changed(&f, "studio", (0, 99), 8, 16, |_| {}),
        "max_job_tiles",
    );
    // The API's own maxima: the count must not overflow or wrap.
    refused(
        submit_changed(&f, "studio", (0, 99_999), 8, 1, |s| {
            s.width = 16_384;
            s.height = 16_384;
        }),
        "max_job_tiles",
    );
    refused(
        submit_changed(&f, "studio", (0, 0), 16, 2, |s| {
            s.frame_rate = tessera_protocol::FrameRate { num: 0, den: 0 }
        }),
        "settings.frame_rate",
    );
    refused(
        submit_changed(&f, "studio", (0, 0), 16, 2, |s| s.max_bounces = u32::MAX),
        "settings.max_bounces",
    );
    assert_eq!(written(&f), before, "a refused job wrote something");
    // Within the limits it is accepted; a client's third unfinished job is a quota.
    submit_changed(&f, "studio", (0, 5), 8, 1, |_| {}).unwrap();
    submit_changed(&f, "studio", (0, 0), 16, 2, |_| {}).unwrap();
    match submit_changed(&f, "studio", (0, 0), 16, 2, |_| {}) {
        Err(ServiceError::Quota(m)) => assert!(m.contains("max_client_jobs"), "{m}"),
        other => panic!("expected the client quota, got {other:?}"),
    }
    // Another client has its own.
    submit_changed(&f, "rival", (0, 0), 16, 2, |_| {}).unwrap();
}

#[test]
fn a_camera_the_scene_lacks_is_named() {
    let cams = ["Main".to_string(), "Side".to_string()];
    let mut s = RenderSettings {
        width: 4,
        height: 4,
        spp: 1,
        max_bounces: 1,
        seed: 0,
        camera: Some("Main".into()),
        frame_rate: Default::default(),
    };
    check_settings(&s, &cams).unwrap();
    s.camera = Some("Top".into());
    let e = check_settings(&s, &cams).unwrap_err().to_string();
    assert!(
        e.contains("settings.camera") && e.contains("\"Top\"") && e.contains("\"Side\""),
        "{e}"
    );
    s.camera = None;
    check_settings(&s, &[]).unwrap();
}

#[test]
fn sessions_expire_when_the_worker_goes_quiet_and_are_kept_only_as_hashes() {
    let mut cfg = Farm::config();
    cfg.session_ttl_ms = 60_000;
    let f = Farm::with_config(cfg);
    let k = key(1);
    let c = f.svc.challenge(f.now).unwrap();
    let caps = caps(&f.renderer);
    let reg = Signed::sign(
        Registration {
            role: Role::Node,
            name: "quiet node".into(),
            challenge: tessera_protocol::hexser::decode(&c).unwrap(),
            coordinator: f.svc.public(),
            capabilities: caps.digest(),
        },
        &k,
    );
    let session = f.try_register(&reg, &caps).unwrap();
    // The store holds no copy of the token.
    let c = rusqlite::Connection::open(&f.db).unwrap();
    let stored: String = c
        .query_row("SELECT session FROM workers", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, session);
    // Used within the TTL it lives on (each use renews it)...
    let at = |ms| f.svc.worker_by_session(&session, ms);
    assert!(at(f.now + 50_000).unwrap().is_some());
    assert!(at(f.now + 100_000).unwrap().is_some());
    // ...and after a quiet TTL it is refused; an unknown token is simply unknown.
    match at(f.now + 100_000 + 60_001) {
        Err(ServiceError::Forbidden(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("expected an expired session, got {other:?}"),
    }
    assert!(f.svc.worker_by_session("nope", f.now).unwrap().is_none());
}

#[test]
fn blobs_no_live_job_lists_are_collected_after_their_retention() {
    let f = Farm::new();
    let store = f.svc.store();
    let day = 86_400_000u64;
    let (old, listed, fresh) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    store.record_blob(&old, "studio", 10, day).unwrap();
    store.record_blob(&old, "rival", 10, day).unwrap();
    store.record_blob(&listed, "studio", 20, day).unwrap();
    store.record_blob(&fresh, "studio", 30, 9 * day).unwrap();
    // A running job lists `listed`.
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let listing = format!(r#"{{"entry":"s.gltf","files":{{"s.gltf":"{listed}"}}}}"#);
    let listing = serde_json::from_str(&listing).unwrap();
    store
        .insert_job_scene(&job, &"7".repeat(64), &listing)
        .unwrap();
    assert_eq!(store.client_blob_bytes("studio").unwrap(), 60);
    assert!(store.client_has_blob(&old, "rival").unwrap());
    // Retention: unused since before day 5, jobs ended before day 5.
    let gone = store.collect_blobs(5 * day, 5 * day).unwrap();
    assert_eq!(gone, vec![old.clone()], "only the old, unlisted blob goes");
    assert!(!store.client_has_blob(&old, "rival").unwrap());
    assert!(store.client_has_blob(&listed, "studio").unwrap());
    assert!(store.client_has_blob(&fresh, "studio").unwrap());
    assert_eq!(store.client_blob_bytes("studio").unwrap(), 50);
    // Once the job has ended before the cut-off, its blobs go too.
    store.set_job_state(&job, JobState::Failed).unwrap();
    let ended = store.job_ended_ms(&job).unwrap().expect("an end time");
    let gone = store.collect_blobs(5 * day, ended + 1).unwrap();
    assert_eq!(gone, vec![listed]);
}

#[test]
fn registration_challenges_anyone_may_ask_for_are_bounded() {
    let f = Farm::new();
    let store = f.svc.store();
    let now = 1_000_000;
    for i in 0..3 {
        assert!(store
            .insert_challenge(&format!("c{i}"), now, now + 300_000, 3)
            .unwrap());
    }
    assert!(!store.insert_challenge("c3", now, now + 300_000, 3).unwrap());
    // Once they expire, room is made again.
    assert!(store
        .insert_challenge("c4", now + 300_001, now + 600_001, 3)
        .unwrap());
    assert!(!store.take_challenge("c0", now + 300_001).unwrap());
    assert!(store.take_challenge("c4", now + 300_002).unwrap());
}

#[test]
fn a_job_an_older_coordinator_stored_is_refused_not_resumed_and_holds_up_no_other_job() {
    let mut f = Farm::new();
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let old = f.submit();
    let old_task = tasks(&f.drain())[0].clone();
    let current = f.submit();
    let current_task = tasks(&f.drain())[0].task_id.clone();
    // The old job's state as the coordinator before the job state machine kept it.
    let db = rusqlite::Connection::open(&f.db).unwrap();
    db.execute(
        "UPDATE job_runs SET run = ?2 WHERE job_id = ?1",
        rusqlite::params![
            old,
            r#"{"client":"studio","round":0,"next_batch_id":8,"batch_size":2,"requirements":{},"blocked":[],"error":null,"tiles_total":15,"tiles_verified":0,"scene_hint":null}"#
        ],
    )
    .unwrap();
    drop(db);
    f.restart();
    // Its status still reads; its results are parked with the reason; the reconciler
    // leaves it alone and still ticks the other job.
    let v = f.svc.job_view(&old).unwrap();
    assert_eq!(
        (v.progress.state.as_str(), v.progress.tiles_total),
        ("queued", 15)
    );
    let res = result_body(&f.node(&a, None), &old_task);
    match f.svc.handle_result(&res, f.now).unwrap() {
        Handled::Refused(why) => assert!(why.contains("older coordinator"), "{why}"),
        other => panic!("{other:?}"),
    }
    f.svc
        .handle_signal(&f.signal(&a, &[&current_task], &[]), f.now)
        .unwrap();
    f.now += 4 * LEASE;
    let queued = f.svc.reconcile(f.now).unwrap();
    assert!(queued >= 1, "the current job's expired lease was requeued");
    assert_eq!(f.attempt(&current_task), 1);
    assert_eq!(f.svc.job_view(&current).unwrap().progress.round, 0);
    // The reconciler took the old job out of its round for good: only the current one
    // is read on the next tick.
    assert_eq!(f.svc.store().running_job_ids().unwrap(), vec![current]);
}

#[test]
fn job_control_withdraws_unsent_tasks_orders_them_by_priority_and_cancels_with_a_refund() {
    let mut f = Farm::new();
    let (a, v) = (key(1), key(2));
    f.register(&a, "node");
    f.register(&v, "verifier");
    let low = f.submit();
    let high = f.submit();
    // Nothing is published yet: the client raises the second job's priority, so its tasks
    // leave the outbox first.
    assert_eq!(
        f.svc
            .control("studio", &high, Control::Priority(5), f.now)
            .unwrap(),
        JobState::Queued
    );
    let msgs = f.drain();
    let order: Vec<&str> = msgs
        .iter()
        .filter(|(q, _, _)| q == "tasks")
        .map(|(_, id, _)| id.split('-').next().unwrap())
        .collect();
    let first_low = order.iter().position(|j| *j == low).unwrap();
    assert!(order[..first_low].iter().all(|j| *j == high), "{order:?}");
    assert_eq!(order.iter().filter(|j| **j == high).count(), 6);
    // Another client's job does not exist for it; an unknown one neither.
    assert!(matches!(
        f.svc.control("mallory", &low, Control::Cancel, f.now),
        Err(ServiceError::NotFound(_))
    ));
    // Pause: the tasks on the broker are no longer wanted, and what the job queues while
    // paused (nothing) stays in the outbox; resume sends every open task again.
    let ts = tasks(&msgs);
    let low_tasks: Vec<_> = ts.iter().filter(|t| t.task_id.starts_with(&low)).collect();
    assert_eq!(
        f.svc
            .control("studio", &low, Control::Pause, f.now)
            .unwrap(),
        JobState::Paused
    );
    assert!(!f
        .svc
        .task_wanted(&low_tasks[0].task_id, &a.public())
        .unwrap());
    assert!(f
        .svc
        .task_wanted(
            &ts.iter()
                .find(|t| t.task_id.starts_with(&high))
                .unwrap()
                .task_id,
            &a.public()
        )
        .unwrap());
    f.now += 3_600_000;
    f.svc.reconcile(f.now).unwrap();
    assert!(tasks(&f.drain())
        .iter()
        .all(|t| !t.task_id.starts_with(&low)));
    assert_eq!(
        f.svc
            .control("studio", &low, Control::Resume, f.now)
            .unwrap(),
        JobState::Queued
    );
    let again = tasks(&f.drain());
    assert_eq!(
        again.iter().filter(|t| t.task_id.starts_with(&low)).count(),
        6
    );
    assert!(f
        .svc
        .task_wanted(&low_tasks[0].task_id, &a.public())
        .unwrap());
    // The high job renders and is verified; the low one is cancelled before any of its work
    // was verified: its escrow goes back whole, and its late results are acked and never paid.
    let node = f.node(&a, None);
    for t in ts.iter().filter(|t| t.task_id.starts_with(&high)) {
        assert_eq!(
            f.svc.handle_result(&result_body(&node, t), f.now).unwrap(),
            Handled::Done
        );
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &high), "done");
    let client_before = f.svc.store().balance("client:studio").unwrap();
    let escrow = f.svc.store().balance(&format!("escrow:{low}")).unwrap();
    assert!(escrow > 0);
    assert_eq!(
        f.svc
            .control("studio", &low, Control::Cancel, f.now)
            .unwrap(),
        JobState::Cancelled
    );
    assert_eq!(f.svc.store().balance(&format!("escrow:{low}")).unwrap(), 0);
    assert_eq!(
        f.svc.store().balance("client:studio").unwrap(),
        client_before + escrow
    );
    assert!(
        f.svc.store().running_job_ids().unwrap().is_empty(),
        "a cancelled job is over"
    );
    let transfers = f.svc.store().job_transfers(&low).unwrap().len();
    for t in &low_tasks {
        assert!(!f.svc.task_wanted(&t.task_id, &a.public()).unwrap());
        assert_eq!(
            f.svc.handle_result(&result_body(&node, t), f.now).unwrap(),
            Handled::Done
        );
    }
    assert_eq!(f.svc.store().job_transfers(&low).unwrap().len(), transfers);
    assert_eq!(f.svc.store().total().unwrap(), 0);
    assert!(tasks(&f.drain()).is_empty());
    assert!(matches!(
        f.svc.control("studio", &low, Control::Resume, f.now),
        Err(ServiceError::Unavailable(why)) if why.contains("cancelled")
    ));
}

#[test]
fn the_event_log_of_jobs_that_ended_before_a_time_is_pruned_and_no_other() {
    let f = Farm::new();
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let running = f.submit();
    let cancelled = f.submit();
    let events = |job: &str| {
        f.svc
            .store()
            .events_after(None, Some(job), 0, 10_000)
            .unwrap()
            .len()
    };
    let before = events(&running);
    f.svc
        .control("studio", &cancelled, Control::Cancel, f.now)
        .unwrap();
    let ended = events(&cancelled);
    assert!(ended > 0, "the cancel is in the log");
    // The store stamps a job's end with the wall clock.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(f.svc.store().prune_events(wall - 3_600_000).unwrap(), 0);
    assert_eq!(events(&cancelled), ended);
    assert_eq!(f.svc.store().prune_events(wall + 60_000).unwrap(), ended);
    assert_eq!(events(&cancelled), 0);
    assert_eq!(events(&running), before, "a running job keeps its log");
}
