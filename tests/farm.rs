//! The farm's acceptance tests: `tessera coordinator`, `node` and `verifier` as separate
//! processes on a real RabbitMQ broker (`TESSERA_TEST_AMQP`, default the local guest
//! account), driven by the client commands, through crashes, broker disruptions,
//! duplicated and hostile messages. Each test ends with the same invariant check
//! ([`Farm::check_invariants`]): the bundle and images audit, the ledger sums to 0, and
//! every final tile is paid exactly once, to the node that rendered it.
//!
//! Without a broker every test prints `SKIPPED: …` and passes, unless
//! `TESSERA_REQUIRE_BROKER=1` (CI), where it fails. Each test has its own namespace,
//! folder and port, and runs alone (some restart the broker). A failing test prints every
//! daemon's log.

#[path = "farm/harness.rs"]
mod harness;

use harness::{
    cornell_box, job_flags, rabbitmqctl, run_ok, serial, small_job, tessera, wait_until, Farm,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const STUB: &str = "--stub-renderer";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The node keys (hex) that rendered the bundle's final tiles.
fn final_nodes(b: &tessera_protocol::bundle::ProofBundle) -> BTreeSet<String> {
    b.frames
        .iter()
        .flat_map(|f| &f.tiles)
        .map(|t| t.node.to_string())
        .collect()
}

/// Coordinator, two nodes and a verifier on the GPU renderer (lavapipe here): the job's
/// frames equal, byte for byte, what `tessera render` writes at the same settings.
#[test]
fn cornell_box_over_rabbitmq_matches_embedded_render() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    farm.verifier("verifier", "verifier", &[], &[]);
    farm.node("n1", &[], &[]);
    farm.node("n2", &[], &[]);
    // Both consumers are up before anything is queued, so both get tasks.
    std::thread::sleep(Duration::from_millis(500));
    let settings = [
        "--width", "64", "--height", "64", "--spp", "4", "--seed", "7", "--frames", "0..1",
    ];
    let mut submit = settings.to_vec();
    submit.extend(["--bounces", "4", "--tile-size", "16", "--batch-size", "2"]);
    let job = farm.submit(&cornell_box(), &submit);
    farm.wait_done(&job, secs(90));
    let checked = farm.check_invariants(&job);

    // Re-render the sampled tiles here: the verdicts hold.
    run_ok(
        tessera()
            .arg("audit")
            .arg(checked.out.join("proof.json"))
            .arg("--rerender")
            .arg("--scene")
            .arg(cornell_box()),
    );
    // The same job in one process.
    let local = farm.path("local");
    std::fs::create_dir_all(&local).unwrap();
    let mut render = tessera();
    render
        .arg("render")
        .arg(cornell_box())
        .arg("-o")
        .arg(local.join("r-#.png"))
        .args(settings)
        .args(["--max-bounces", "4", "--tile", "16", "--batch", "2"])
        .arg("--data")
        .arg(farm.path("render-data"));
    run_ok(&mut render);
    for f in 0..=1 {
        for ext in ["png", "exr"] {
            let farm_file = checked.out.join(format!("f-{f}.{ext}"));
            let local_file = local.join(format!("r-{f}.{ext}"));
            let a = std::fs::read(&farm_file).unwrap();
            let b = std::fs::read(&local_file).unwrap();
            assert!(
                a == b,
                "{} ({} bytes) differs from {} ({} bytes)",
                farm_file.display(),
                a.len(),
                local_file.display(),
                b.len()
            );
        }
    }
    // 16 tasks round-robin over two consumers: both nodes rendered final tiles.
    let nodes = final_nodes(&checked.bundle);
    assert_eq!(
        nodes,
        BTreeSet::from([farm.key("n1"), farm.key("n2")]),
        "final tiles by {nodes:?}"
    );
}

/// A node killed (SIGKILL) while it renders and holds a lease: the lease expires, the
/// task is requeued, and a second node finishes the job. The dead node is paid nothing.
#[test]
fn node_killed_mid_task_is_replaced_after_its_lease_expires() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&["--lease-secs", "2", "--reconcile-secs", "1"], &[]) else {
        return;
    };
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    // 4 s per tile: it is still on its first task when it is killed.
    farm.node(
        "n1",
        &[STUB, "--stub-delay-ms", "4000", "--heartbeat-ms", "300"],
        &[],
    );
    let job = farm.submit(&cornell_box(), &small_job());
    wait_until("n1 holds a lease", secs(20), || {
        (farm.leased("n1") > 0).then_some(())
    });
    assert_eq!(farm.state(&job), "queued", "nothing was delivered yet");
    farm.kill("n1");
    farm.wait_log("coordinator", "lease expired: task requeued", secs(15));
    farm.node("n2", &[STUB, "--stub-delay-ms", "50"], &[]);
    farm.wait_done(&job, secs(30));
    let checked = farm.check_invariants(&job);
    assert_eq!(
        final_nodes(&checked.bundle),
        BTreeSet::from([farm.key("n2")])
    );
    let n1 = format!("node:{}", farm.key("n1"));
    assert_eq!(checked.ledger.get(&n1).copied().unwrap_or(0), 0);
    farm.assert_parked(&[]);
}

/// A node that exits after publishing its result but before acking its task
/// (`TESSERA_FAULT_EXIT_AFTER_PUBLISH=1`): its result counts, the task comes back to the
/// queue, the second node renders it again and that result is ignored; paid once.
#[test]
fn node_exiting_after_publish_before_ack_is_paid_once() {
    let _serial = serial();
    let debug = format!("{},tessera_coordinator=debug", harness::LOG);
    let Some(mut farm) = Farm::start(&[], &[("TESSERA_LOG", &debug)]) else {
        return;
    };
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    farm.node(
        "n1",
        &[STUB, "--stub-delay-ms", "100"],
        &[("TESSERA_FAULT_EXIT_AFTER_PUBLISH", "1")],
    );
    let job = farm.submit(&cornell_box(), &small_job());
    let status = farm.wait_exit("n1", secs(20));
    assert_eq!(status.code(), Some(77), "n1: {status}");
    farm.node("n2", &[STUB, "--stub-delay-ms", "100"], &[]);
    farm.wait_done(&job, secs(30));
    // n2 got both tasks: the one n1 never acked, and the other. It renders the other; the
    // one n1 delivered it skips when the coordinator already has its result (it asks
    // before rendering), or renders again, and then the coordinator ignores the repeat.
    wait_until("n2 handled both tasks", secs(10), || {
        let rendered = farm.count("n2", "result published");
        let skipped = farm.count("n2", "task withdrawn by the coordinator");
        (rendered >= 1 && rendered + skipped == 2).then_some((rendered, skipped))
    });
    if farm.count("n2", "result published") == 2 {
        farm.wait_log("coordinator", "late or repeated result ignored", secs(10));
    }
    let checked = farm.check_invariants(&job);
    let batches: Vec<_> = checked.bundle.rounds[0]
        .batches
        .iter()
        .map(|b| b.signed.statement.node.to_string())
        .collect();
    let (n1, n2) = (farm.key("n1"), farm.key("n2"));
    assert_eq!(batches.len(), 2, "one batch per task");
    assert!(
        batches.contains(&n1) && batches.contains(&n2),
        "n1's published result counts, n2's repeat of it does not: {batches:?}"
    );
    farm.assert_parked(&[]);
}

/// The verifier killed (SIGKILL) while it re-renders (job `verifying`), then restarted
/// with the same key: the manifest names that key, so its verdict is accepted.
#[test]
fn verifier_killed_before_its_verdict_restarts_with_the_same_key() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    // 4 tiles re-rendered at 2 s each: time enough to kill it while judging.
    farm.verifier(
        "verifier",
        "verifier",
        &[STUB, "--stub-delay-ms", "2000"],
        &[],
    );
    farm.node("n1", &[STUB], &[]);
    let job = farm.submit(&cornell_box(), &small_job());
    farm.wait_state(&job, &["verifying"], secs(20));
    farm.wait_log("verifier", "scene loaded", secs(10));
    farm.kill("verifier");
    assert_eq!(farm.state(&job), "verifying");
    assert_eq!(farm.count("verifier", "verdict published"), 0);
    farm.verifier("verifier-2", "verifier", &[STUB], &[]);
    farm.wait_done(&job, secs(30));
    let checked = farm.check_invariants(&job);
    let v = farm.key("verifier");
    let m = &checked.bundle.manifest.statement;
    let named: Vec<String> = m.verifiers.iter().map(|k| k.to_string()).collect();
    assert_eq!(named, std::slice::from_ref(&v), "the manifest's verifiers");
    for r in &checked.bundle.rounds {
        for verdict in &r.verdicts {
            assert_eq!(verdict.signer.to_string(), v);
        }
    }
    assert_eq!(farm.count("verifier-2", "verdict published"), 1);
    farm.assert_parked(&[]);
}

/// The verifier exits after publishing its first verdict, before acking the request
/// (`TESSERA_FAULT_EXIT_AFTER_PUBLISH=1`), and is restarted with the same key: it judges
/// the redelivered request again (ignored) and the rest; the job is paid once.
#[test]
fn verifier_exiting_after_its_verdict_restarts_and_nothing_is_paid_twice() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    farm.verifier(
        "verifier",
        "verifier",
        &[STUB],
        &[("TESSERA_FAULT_EXIT_AFTER_PUBLISH", "1")],
    );
    farm.node("n1", &[STUB, "--stub-delay-ms", "200"], &[]);
    farm.node("n2", &[STUB, "--stub-delay-ms", "200"], &[]);
    std::thread::sleep(Duration::from_millis(300));
    // Four one-tile tasks over two nodes: usually one verify request per node.
    let job = farm.submit(&cornell_box(), &job_flags(32, 32, 1));
    let status = farm.wait_exit("verifier", secs(30));
    assert_eq!(status.code(), Some(77), "verifier: {status}");
    farm.verifier("verifier-2", "verifier", &[STUB], &[]);
    farm.wait_done(&job, secs(30));
    let bundle: tessera_protocol::bundle::ProofBundle = {
        let checked = farm.check_invariants(&job);
        checked.bundle
    };
    let verdicts: usize = bundle.rounds.iter().map(|r| r.verdicts.len()).sum();
    // The restarted verifier answers every request: the one whose ack was lost (again),
    // and any other.
    farm.wait_count("verifier-2", "verdict published", verdicts, secs(15));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(farm.count("verifier-2", "verdict published"), verdicts);
    // Still exactly as paid as when the job finished.
    farm.check_invariants(&job);
    farm.assert_parked(&[]);
}

/// The coordinator exits between the commit that fixes a round (and queues its verify
/// requests) and their publication (`TESSERA_FAULT_EXIT_BEFORE_PUBLISH=verify`), and is
/// restarted on the same data and port; nodes and verifier keep running; the outbox
/// publishes what was committed and the job finishes.
#[test]
fn coordinator_killed_between_commit_and_publish_resumes_from_its_outbox() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[("TESSERA_FAULT_EXIT_BEFORE_PUBLISH", "verify")])
    else {
        return;
    };
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    farm.node("n1", &[STUB, "--stub-delay-ms", "100"], &[]);
    let job = farm.submit(&cornell_box(), &small_job());
    let status = farm.wait_exit("coordinator", secs(30));
    assert_eq!(status.code(), Some(77), "coordinator: {status}");
    assert!(farm
        .log("coordinator")
        .contains("fault hook: exiting between commit and publish"));
    farm.start_coordinator("coordinator-2", &[]);
    // The round was committed before the exit.
    let state = farm.status(&job)["state"].as_str().unwrap().to_string();
    assert!(
        state == "verifying" || state == "done",
        "after the restart the job is {state}"
    );
    farm.wait_done(&job, secs(30));
    farm.check_invariants(&job);
    for d in ["n1", "verifier"] {
        assert!(
            farm.alive(d),
            "{d} did not survive the coordinator's restart"
        );
    }
    farm.assert_parked(&[]);
}

/// A farm of two slow stand-in nodes and a verifier, with a 16-tile job in flight
/// (`rendering`); the job id.
fn busy_farm(farm: &mut Farm) -> String {
    farm.verifier(
        "verifier",
        "verifier",
        &[STUB, "--stub-delay-ms", "50"],
        &[],
    );
    farm.node("n1", &[STUB, "--stub-delay-ms", "300"], &[]);
    farm.node("n2", &[STUB, "--stub-delay-ms", "300"], &[]);
    let job = farm.submit(&cornell_box(), &job_flags(64, 64, 2));
    farm.wait_state(&job, &["rendering"], secs(20));
    job
}

/// `rabbitmqctl close_all_connections` while the job renders: every daemon reconnects
/// and the job finishes.
#[test]
fn daemons_reconnect_after_close_all_connections() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    let job = busy_farm(&mut farm);
    if !rabbitmqctl(&["close_all_connections", "tessera farm test"]) {
        return;
    }
    farm.wait_done(&job, secs(40));
    for d in ["coordinator", "n1", "n2", "verifier"] {
        assert!(farm.alive(d), "{d} exited");
        farm.wait_log(d, "amqp connection recovered", secs(10));
    }
    farm.check_invariants(&job);
    farm.assert_parked(&[]);
}

/// `rabbitmqctl stop_app`, a few seconds, `start_app` while the job renders: every
/// daemon reconnects and the job finishes.
#[test]
fn job_survives_a_broker_restart() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    let job = busy_farm(&mut farm);
    let mut restart = harness::StartAppOnDrop { armed: true };
    if !rabbitmqctl(&["stop_app"]) {
        return;
    }
    std::thread::sleep(secs(3));
    assert!(rabbitmqctl(&["start_app"]));
    restart.armed = false;
    farm.wait_done(&job, secs(60));
    for d in ["coordinator", "n1", "n2", "verifier"] {
        assert!(farm.alive(d), "{d} exited");
        farm.wait_log(d, "amqp connection recovered", secs(10));
    }
    farm.check_invariants(&job);
    farm.assert_parked(&[]);
}

/// Every result delivered twice, the copy after the node's next result
/// (`TESSERA_FAULT_DUPLICATE_RESULTS=1`): the coordinator ignores each copy, the job
/// finishes, nothing is paid twice.
#[test]
fn results_delivered_twice_out_of_order_are_paid_once() {
    let _serial = serial();
    let debug = format!("{},tessera_coordinator=debug", harness::LOG);
    let Some(mut farm) = Farm::start(&[], &[("TESSERA_LOG", &debug)]) else {
        return;
    };
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    farm.node(
        "n1",
        &[STUB, "--stub-delay-ms", "100"],
        &[("TESSERA_FAULT_DUPLICATE_RESULTS", "1")],
    );
    // 8 tiles in 4 tasks.
    let job = farm.submit(&cornell_box(), &job_flags(64, 32, 2));
    farm.wait_done(&job, secs(30));
    // The last copy goes out after a second without a next result.
    farm.wait_count("n1", "fault hook: duplicate result published", 4, secs(10));
    farm.wait_count(
        "coordinator",
        "late or repeated result ignored",
        4,
        secs(10),
    );
    let checked = farm.check_invariants(&job);
    let ids: Vec<u32> = checked.bundle.rounds[0]
        .batches
        .iter()
        .map(|b| b.signed.statement.batch_id)
        .collect();
    assert_eq!(ids, [0, 1, 2, 3], "one batch per task");
    assert_eq!(checked.bundle.rounds.len(), 1);
    farm.assert_parked(&[]);
}

/// Hostile and malformed messages on the job's namespace: junk on every coordinator
/// queue, a correct result signed by a key that never registered, a result whose tile
/// bytes do not hash to their leaves (from a registered key), and a junk task. Each is
/// parked with its reason logged, nobody is paid for them, and the job finishes. Each is
/// sent as the broker user that may send it: results and signals as a node, the verdict as
/// a verifier, the task as the coordinator.
#[test]
fn malformed_and_hostile_messages_are_parked_and_paid_nothing() {
    use tessera_bus::Bus;
    use tessera_node::worker::RendererFactory;
    use tessera_protocol::keys::SecretKey;
    use tessera_protocol::wire::RenderTask;
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    let rt = harness::runtime();
    let bus = harness::connect_bus(&rt, &farm.ns).expect("broker");
    let as_node = harness::connect_bus_as(&rt, &farm.ns, "node").expect("broker");
    let as_verifier = harness::connect_bus_as(&rt, &farm.ns, "verifier").expect("broker");
    // A registered node that never takes a task, and a key that never registers.
    let registered = SecretKey::generate();
    let stranger = SecretKey::generate();
    rt.block_on(async {
        tessera_api::client::ApiClient::new(&farm.url, None)
            .unwrap()
            .register_worker(
                tessera_protocol::statements::Role::Node,
                "forger",
                &registered,
                tessera_node::worker::StubFactory::default().capabilities(1),
                None,
            )
            .await
            .expect("registering the forger")
    });
    let job = farm.submit(&cornell_box(), &small_job());
    // A real task, read from the queue and handed back.
    let task: RenderTask = rt.block_on(async {
        let d = tokio::time::timeout(secs(10), as_node.next("tasks"))
            .await
            .expect("a task is queued")
            .expect("bus open");
        as_node.nack(&d, true).await.unwrap();
        serde_json::from_slice(&d.body).unwrap()
    });
    assert!(task.task_id.starts_with(&job), "{}", task.task_id);
    let forge = |key: &SecretKey| {
        let renderer = std::sync::Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO));
        let node = tessera_node::Node::new(
            "forger",
            SecretKey::from_key_file(&key.to_key_file(), "k").unwrap(),
            task.scene_hash,
            renderer,
            None,
        );
        node.handle_task(&task).unwrap()
    };
    let unregistered = forge(&stranger);
    let mut bad_bytes = forge(&registered);
    bad_bytes.tiles[0].bytes[0] ^= 0x40;
    let messages: Vec<(&str, &str, Vec<u8>)> = vec![
        ("results", "hostile-junk-result", b"\x00not json".to_vec()),
        (
            "results",
            "hostile-unregistered",
            serde_json::to_vec(&unregistered).unwrap(),
        ),
        (
            "results",
            "hostile-bad-bytes",
            serde_json::to_vec(&bad_bytes).unwrap(),
        ),
        (
            "verdicts",
            "hostile-junk-verdict",
            b"{\"verdict\":1}".to_vec(),
        ),
        ("signals", "hostile-junk-signal", b"[]".to_vec()),
        ("tasks", "hostile-junk-task", b"not a task".to_vec()),
    ];
    let sent: Vec<(&str, &str)> = messages.iter().map(|(q, id, _)| (*q, *id)).collect();
    rt.block_on(async {
        for (queue, id, body) in messages.clone() {
            let sender = match queue {
                "results" | "signals" => &as_node,
                "verdicts" => &as_verifier,
                _ => &bus,
            };
            sender.publish(queue, id, body).await.unwrap();
        }
    });
    let coordinator_parked = [
        "hostile-junk-result",
        "hostile-unregistered",
        "hostile-bad-bytes",
        "hostile-junk-verdict",
        "hostile-junk-signal",
    ];
    wait_until(
        "the coordinator parks the hostile messages",
        secs(15),
        || {
            let parked = rt.block_on(bus.parked()).unwrap();
            let ids: BTreeSet<&str> = parked.iter().map(|p| p.message_id.as_str()).collect();
            coordinator_parked
                .iter()
                .all(|id| ids.contains(id))
                .then_some(())
        },
    );
    let log = farm.log("coordinator");
    for reason in [
        "malformed result",
        &format!("batch signed by unknown node {}", stranger.public().short()),
        "delivered bytes do not hash to the committed leaf",
        "malformed verdict",
        "malformed node signal",
    ] {
        assert!(
            log.contains(reason),
            "the coordinator's log names {reason:?}"
        );
    }
    // Now the real nodes: one parks the junk task, they render the job.
    farm.node("n1", &[STUB, "--stub-delay-ms", "50"], &[]);
    farm.node("n2", &[STUB, "--stub-delay-ms", "50"], &[]);
    farm.wait_done(&job, secs(30));
    let parked = rt.block_on(bus.parked()).unwrap();
    for b in [&bus, &as_node, &as_verifier] {
        rt.block_on(b.shutdown());
    }
    let queues: BTreeMap<&str, &str> = sent.iter().map(|(q, id)| (*id, *q)).collect();
    for p in &parked {
        assert_eq!(p.reason.as_deref(), Some("rejected"), "{p:?}");
        assert_eq!(
            p.original_queue.as_deref(),
            queues.get(p.message_id.as_str()).copied(),
            "{p:?}"
        );
    }
    farm.assert_parked(&queues.keys().copied().collect::<Vec<_>>());
    assert!(
        farm.log("n1").contains("malformed task parked")
            || farm.log("n2").contains("malformed task parked")
    );
    let checked = farm.check_invariants(&job);
    for k in [&registered, &stranger] {
        let acct = format!("node:{}", k.public());
        assert_eq!(checked.ledger.get(&acct).copied().unwrap_or(0), 0, "{acct}");
    }
    let nodes = final_nodes(&checked.bundle);
    let real = BTreeSet::from([farm.key("n1"), farm.key("n2")]);
    assert!(
        !nodes.is_empty() && nodes.is_subset(&real),
        "final tiles by {nodes:?}, not only by the real nodes"
    );
}

/// Job control from the CLI on the real farm. Two jobs' tasks wait (on the broker, as
/// deep as the shared queue may be, and the rest in the coordinator's outbox) before any
/// node is up; the client pauses one and cancels the other. The outbox's are withdrawn; the
/// node asks before it renders each task on the broker and renders none of them; the cancelled job's escrow goes back and
/// pays nobody; the paused one, resumed, renders, verifies and audits with every tile paid
/// once. Controlling a job that ended is refused (exit 1).
#[test]
fn paused_and_cancelled_jobs_are_not_rendered_and_a_resumed_one_finishes() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    farm.verifier(
        "verifier",
        "verifier",
        &[STUB, "--stub-delay-ms", "50"],
        &[],
    );
    let paused = farm.submit(&cornell_box(), &job_flags(64, 32, 2));
    let cancelled = farm.submit(&cornell_box(), &small_job());
    // The shared queue holds 4 tasks (no node has registered slots yet); the other 2 wait
    // in the coordinator's outbox, where the pause and the cancel withdraw them.
    wait_until("4 of the jobs' 6 tasks are on the broker", secs(20), || {
        (farm.ready("tasks") == 4).then_some(())
    });
    let out = run_ok(&mut farm.client(&["pause", &paused]));
    assert!(out.contains("pause: paused"), "{out}");
    let out = run_ok(&mut farm.client(&["cancel", &cancelled]));
    assert!(out.contains("cancel: cancelled"), "{out}");
    assert_eq!(farm.state(&paused), "paused");
    let ledger = farm.ledger();
    assert_eq!(
        ledger
            .get(&format!("escrow:{cancelled}"))
            .copied()
            .unwrap_or(0),
        0
    );

    farm.node("n1", &[STUB, "--stub-delay-ms", "50"], &[]);
    farm.wait_count("n1", "task withdrawn by the coordinator", 4, secs(30));
    assert_eq!(
        farm.count("n1", "result published"),
        0,
        "{}",
        farm.log("n1")
    );
    assert_eq!(farm.state(&paused), "paused");

    let out = run_ok(&mut farm.client(&["resume", &paused]));
    assert!(out.contains("resume: "), "{out}");
    farm.wait_done(&paused, secs(30));
    // Every node balance is what the resumed job paid: nothing came from the other.
    farm.check_invariants(&paused);
    assert_eq!(farm.state(&cancelled), "cancelled");
    let status = farm
        .client(&["cancel", &cancelled, &paused])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("cancel refused") && out.contains("is cancelled"),
        "{out}"
    );
    assert!(out.contains("is done"), "{out}");
    farm.assert_parked(&[]);
}
