//! The farm tried as an attacker would, with only what the docs describe: forged
//! verdicts from a verifier the operator granted, node signals and results signed with
//! real registered keys but not following the rules, role claims, and jobs nobody paid
//! for, all through the real message path (HTTP and RabbitMQ, the real daemons). Each
//! attack must be refused with nothing paid, slashed, failed or blocked that the rules do
//! not call for, and the ledger summing to zero.
//!
//! The attackers speak to the broker with their role's credentials (a node's, a
//! verifier's), as a real rogue worker would.
//!
//! Like tests/farm.rs: without a broker every test prints `SKIPPED: …` and passes, unless
//! `TESSERA_REQUIRE_BROKER=1` (CI), where it fails.

#[path = "farm/harness.rs"]
mod harness;

use harness::{
    cornell_box, serial, small_job, tessera, wait_until, Farm, NODE_STAKE, TOKEN, VERIFIER_TOKEN,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tessera_api::client::ApiClient;
use tessera_bus::{AmqpBus, Bus};
use tessera_node::worker::{RendererFactory, StubFactory};
use tessera_protocol::keys::SecretKey;
use tessera_protocol::statements::{Decision, NodeSignal, Signed, TaskNote};
use tessera_protocol::wire::{
    node_queue, Capabilities, RenderTask, VerdictMessage, VerifyRequest, WIRE_VERSION,
};

const STUB: &str = "--stub-renderer";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Register `key` as `role` through the API with `token`; the API's answer.
fn register(
    rt: &tokio::runtime::Runtime,
    farm: &Farm,
    role: &str,
    name: &str,
    key: &SecretKey,
    caps: Capabilities,
    token: Option<&str>,
) -> Result<String, String> {
    rt.block_on(async {
        ApiClient::new(&farm.url, None)
            .unwrap()
            .register_worker(
                role.parse().expect("node or verifier"),
                name,
                key,
                caps,
                token.map(String::from),
            )
            .await
            .map(|r| r.session)
            .map_err(|e| e.to_string())
    })
}

fn stub_caps() -> Capabilities {
    StubFactory::default().capabilities(1)
}

/// The next message on `queue`, taken (acked) or handed back (`keep` false).
fn take(rt: &tokio::runtime::Runtime, bus: &AmqpBus, queue: &str, keep: bool) -> Vec<u8> {
    rt.block_on(async {
        let d = tokio::time::timeout(secs(30), bus.next(queue))
            .await
            .unwrap_or_else(|_| panic!("nothing arrived on {queue} in 30 s"))
            .expect("bus open");
        if keep {
            bus.ack(&d).await.unwrap();
        } else {
            bus.nack(&d, true).await.unwrap();
        }
        d.body
    })
}

fn publish(rt: &tokio::runtime::Runtime, bus: &AmqpBus, queue: &str, id: &str, body: Vec<u8>) {
    rt.block_on(bus.publish(queue, id, body)).unwrap();
}

/// A node signal signed by `key`, sent now.
fn signal(key: &SecretKey, active: &[&str], declined: &[TaskNote], failed: &[TaskNote]) -> Vec<u8> {
    let sent_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    serde_json::to_vec(&Signed::sign(
        NodeSignal {
            node: key.public(),
            sent_unix_ms,
            active: active.iter().map(|s| s.to_string()).collect(),
            declined: declined.to_vec(),
            failed: failed.to_vec(),
        },
        key,
    ))
    .unwrap()
}

fn note(task: &RenderTask) -> TaskNote {
    TaskNote {
        task_id: task.task_id.clone(),
        attempt: task.attempt,
        reason: "forged".into(),
    }
}

/// A node's account, stake and trust as `tessera nodes --json` and `ledger` show them.
fn standing(farm: &Farm, key_hex: &str) -> (i64, i64, u64) {
    let ledger = farm.ledger();
    let node = farm
        .nodes()
        .into_iter()
        .find(|n| n["key"] == key_hex)
        .unwrap_or_else(|| panic!("node {key_hex} is not registered"));
    (
        ledger.get(&format!("node:{key_hex}")).copied().unwrap_or(0),
        ledger
            .get(&format!("stake:{key_hex}"))
            .copied()
            .unwrap_or(0),
        node["trust"].as_u64().unwrap(),
    )
}

/// Roles are granted, not claimed; money and stake come from the operator's deposits.
#[test]
fn roles_are_granted_and_money_comes_from_deposits() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    let rt = harness::runtime();
    // No token, a node's token, or a wrong one: nobody becomes a verifier.
    let claimant = SecretKey::generate();
    for token in [
        None,
        Some("farm-test-token"),
        Some("not-the-verifier-token"),
    ] {
        let e = register(
            &rt,
            &farm,
            "verifier",
            "claimant",
            &claimant,
            stub_caps(),
            token,
        )
        .expect_err("a claimed verifier role");
        assert!(e.contains("403") && e.contains("verifier role"), "{e}");
    }
    // A registered node cannot take the verifier role too, even with the token.
    let node_key = SecretKey::generate();
    register(&rt, &farm, "node", "n", &node_key, stub_caps(), None).expect("node registers");
    let e = register(
        &rt,
        &farm,
        "verifier",
        "n",
        &node_key,
        stub_caps(),
        Some(VERIFIER_TOKEN),
    )
    .expect_err("a second role for one key");
    assert!(e.contains("keeps one role"), "{e}");
    // A node is given no stake for registering.
    let (earned, stake, trust) = standing(&farm, &node_key.public().to_string());
    assert_eq!((earned, stake, trust), (0, 0, 0));
    // Without the grant nothing registered as a verifier, so no job can be submitted; with it one can.
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    farm.node("n1", &[STUB], &[]);
    // A client with no balance cannot submit: 402, nothing queued, nothing moved.
    let before = farm.ledger();
    let out = farm
        .client(&["submit"])
        .arg(cornell_box())
        .args(small_job())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unpaid job was accepted");
    assert!(err.contains("402") && err.contains("escrow"), "{err}");
    assert_eq!(farm.ledger(), before, "a refused submission moved money");
    // Crediting needs the admin token; a client's token is refused.
    let out = tessera()
        .args([
            "credit",
            "--client",
            "studio",
            "--amount",
            "5",
            "--reference",
            "x",
        ])
        .args(["--coordinator", &farm.url, "--token", TOKEN])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    // The same reference credits once.
    let first = farm.credit(&["--client=studio"], 1_000_000_000, "wire-1");
    let again = farm.credit(&["--client=studio"], 1_000_000_000, "wire-1");
    assert!(first.contains("credited"), "{first}");
    assert!(again.contains("nothing credited"), "{again}");
    assert_eq!(farm.ledger()["client:studio"], 1_000_000_000);
    let job = farm.submit(&cornell_box(), &small_job());
    farm.wait_done(&job, secs(60));
    let checked = farm.check_invariants(&job);
    let deposits = checked.ledger["external:operator-deposits"];
    assert!(deposits < 0, "every credit comes from outside: {deposits}");
    assert!(
        checked
            .ledger
            .iter()
            .all(|(a, b)| *b >= 0 || a.starts_with("external:")),
        "only external accounts go negative: {:?}",
        checked.ledger
    );
}

/// A verifier the operator granted turns rogue: a `pass` with no samples and a zero seed,
/// and a `fail` on a first check, both correctly signed. The coordinator re-derives them,
/// refuses both (parked, logged, counted against the verifier), pays and slashes nobody,
/// and an honest verifier then finishes the job.
#[test]
fn forged_verdicts_move_no_money_and_no_trust() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    let rt = harness::runtime();
    let bus = harness::connect_bus_as(&rt, &farm.ns, "verifier").expect("broker");
    let rogue = SecretKey::generate();
    register(
        &rt,
        &farm,
        "verifier",
        "rogue",
        &rogue,
        stub_caps(),
        Some(VERIFIER_TOKEN),
    )
    .expect("the operator granted this verifier");
    // The honest verifier is granted too (named in the job's manifest), but starts later.
    farm.key("verifier");
    let honest_key = SecretKey::from_key_file(
        &std::fs::read_to_string(farm.path("verifier.key")).unwrap(),
        "verifier key",
    )
    .unwrap();
    register(
        &rt,
        &farm,
        "verifier",
        "verifier",
        &honest_key,
        stub_caps(),
        Some(VERIFIER_TOKEN),
    )
    .expect("the honest verifier registers");
    farm.node("n1", &[STUB], &[]);
    farm.node("n2", &[STUB], &[]);
    let job = farm.submit(&cornell_box(), &small_job());
    // The rogue takes the first checks off the shared queue and answers them.
    let mut forged = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let req: VerifyRequest = serde_json::from_slice(&take(&rt, &bus, "verify", true)).unwrap();
        nodes.push(req.node.to_string());
        // What an honest verifier of the stub class would say, then bent.
        let honest = tessera_verifier::Verifier::new(
            SecretKey::from_key_file(&rogue.to_key_file(), "k").unwrap(),
            std::sync::Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO)),
        )
        .handle_request(&req)
        .unwrap();
        let mut v = honest.statement.clone();
        if i == 0 {
            v.samples.clear();
            v.seed = [0; 32];
            v.k = 0;
            v.decision = Decision::Pass;
        } else {
            v.decision = Decision::Fail;
        }
        let msg = VerdictMessage {
            version: WIRE_VERSION,
            request_id: req.request_id.clone(),
            verdict: Signed::sign(v, &rogue),
        };
        let id = format!("forged-verdict-{i}");
        publish(
            &rt,
            &bus,
            "verdicts",
            &id,
            serde_json::to_vec(&msg).unwrap(),
        );
        forged.push(id);
    }
    farm.wait_count(
        "coordinator",
        "verdict refused and counted against its verifier",
        2,
        secs(20),
    );
    let log = farm.log("coordinator");
    assert!(
        log.contains("seed, n or k differ from the derived ones"),
        "{log}"
    );
    assert!(
        log.contains("decision Fail does not follow from the samples"),
        "{log}"
    );
    // Nothing moved: no pay, no hold-back, stakes whole, trust untouched.
    for n in &nodes {
        assert_eq!(standing(&farm, n), (0, NODE_STAKE as i64, 0), "node {n}");
    }
    assert_eq!(farm.state(&job), "verifying");
    // An honest verifier answers the requests the coordinator published again.
    rt.block_on(bus.shutdown());
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    farm.wait_done(&job, secs(60));
    let checked = farm.check_invariants(&job);
    for v in checked.bundle.rounds.iter().flat_map(|r| &r.verdicts) {
        assert_ne!(
            v.signer,
            rogue.public(),
            "a forged verdict is in the bundle"
        );
    }
    for n in &nodes {
        assert_eq!(checked.ledger[&format!("stake:{n}")], NODE_STAKE as i64);
    }
    farm.assert_parked(&forged.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Registered nodes with real keys, not following the rules: failure notes for a task
/// they do not hold (waiting in the queue), fifty declines in one signal, one genuine
/// failure replayed seven times, a result from a node that does not hold the task's
/// lease, and one from a node without the job's required determinism class. None fails
/// a job, blocks a node or pays anyone; the jobs then finish on eligible nodes.
#[test]
fn forged_signals_and_results_change_nothing() {
    let _serial = serial();
    let Some(mut farm) = Farm::start(&[], &[]) else {
        return;
    };
    let rt = harness::runtime();
    let bus = harness::connect_bus_as(&rt, &farm.ns, "node").expect("broker");
    farm.verifier("verifier", "verifier", &[STUB], &[]);
    let (mallory, holder) = (SecretKey::generate(), SecretKey::generate());
    for (k, name) in [(&mallory, "mallory"), (&holder, "holder")] {
        register(&rt, &farm, "node", name, k, stub_caps(), None).expect("node registers");
    }
    // A node of another determinism class.
    let mut other = stub_caps();
    other.class.adapter = "some other adapter".into();
    let outsider = SecretKey::generate();
    register(&rt, &farm, "node", "outsider", &outsider, other, None).expect("registers");

    // Job A, for any node: its tasks wait on the shared queue.
    let job_a = farm.submit(&cornell_box(), &small_job());
    let task: RenderTask = serde_json::from_slice(&take(&rt, &bus, "tasks", false)).unwrap();
    assert!(task.task_id.starts_with(&job_a));
    let t = task.task_id.as_str();
    // (1) Eight failures of a task mallory does not hold in one signal, then fifty
    // declines of it in another: the failures count nothing, the declines once.
    let failed: Vec<TaskNote> = (0..8).map(|_| note(&task)).collect();
    publish(
        &rt,
        &bus,
        "signals",
        "eight-failures",
        signal(&mallory, &[], &[], &failed),
    );
    let declines: Vec<TaskNote> = (0..50).map(|_| note(&task)).collect();
    publish(
        &rt,
        &bus,
        "signals",
        "fifty-declines",
        signal(&mallory, &[], &declines, &[]),
    );
    farm.wait_log("coordinator", "declined: forged", secs(20));
    // (2) holder takes the lease and reports one genuine failure, which is replayed.
    publish(
        &rt,
        &bus,
        "signals",
        "holder-lease",
        signal(&holder, &[t], &[], &[]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let genuine = signal(&holder, &[t], &[], &[note(&task)]);
    for i in 0..8 {
        publish(
            &rt,
            &bus,
            "signals",
            &format!("replay-{i}"),
            genuine.clone(),
        );
    }
    farm.wait_count("coordinator", "a replay, ignored", 7, secs(20));
    let log = farm.log("coordinator");
    assert_eq!(log.matches("render failed on the node").count(), 1, "{log}");
    assert_eq!(log.matches("declined: forged").count(), 1, "{log}");
    assert!(log.contains("does not hold the lease: ignored"), "{log}");
    assert!(!log.contains("node blocked from this job"), "{log}");
    assert_eq!(farm.state(&job_a), "queued");

    // Job B needs the stand-in's class: its tasks go to mallory's and holder's queues.
    let class = hex::encode(stub_caps().class.id());
    let mut flags = small_job();
    flags.extend(["--require-class".to_string(), class]);
    let job_b = farm.submit(&cornell_box(), &flags);
    let mut b_tasks: BTreeMap<String, RenderTask> = BTreeMap::new();
    wait_until("job B's two tasks are routed", secs(20), || {
        for k in [&mallory, &holder] {
            let got = rt.block_on(async {
                let d = tokio::time::timeout(secs(1), bus.next(&node_queue(&k.public())))
                    .await
                    .ok()??;
                bus.nack(&d, true).await.ok()?;
                Some(d.body)
            });
            if let Some(t) = got.and_then(|b| serde_json::from_slice::<RenderTask>(&b).ok()) {
                if t.task_id.starts_with(&job_b) {
                    b_tasks.insert(t.task_id.clone(), t);
                }
            }
        }
        (b_tasks.len() == 2).then_some(())
    });
    let (x, y) = {
        let mut it = b_tasks.values();
        (it.next().unwrap().clone(), it.next().unwrap().clone())
    };
    let forge = |key: &SecretKey, task: &RenderTask| {
        let node = tessera_node::Node::new(
            "forger",
            SecretKey::from_key_file(&key.to_key_file(), "k").unwrap(),
            task.scene_hash,
            std::sync::Arc::new(tessera_node::stub::HashRenderer::new(Duration::ZERO)),
            None,
        );
        serde_json::to_vec(&node.handle_task(task).unwrap()).unwrap()
    };
    // (3) holder leases X; mallory delivers X anyway, and the outsider delivers Y.
    publish(
        &rt,
        &bus,
        "signals",
        "holder-lease-x",
        signal(&holder, &[&x.task_id], &[], &[]),
    );
    std::thread::sleep(Duration::from_millis(300));
    publish(&rt, &bus, "results", "not-the-holder", forge(&mallory, &x));
    publish(&rt, &bus, "results", "other-class", forge(&outsider, &y));
    farm.wait_log("coordinator", "which does not hold its lease", secs(20));
    farm.wait_log(
        "coordinator",
        "does not meet the job's requirements",
        secs(20),
    );
    assert_eq!(farm.status(&job_b)["tiles_rendered"], 0);
    // The lease holder delivers X, and Y (unleased, holder is eligible): B is rendered,
    // verified and paid to holder alone.
    publish(&rt, &bus, "results", "holder-x", forge(&holder, &x));
    publish(&rt, &bus, "results", "holder-y", forge(&holder, &y));
    farm.wait_done(&job_b, secs(60));
    let checked = farm.check_invariants(&job_b);
    let holder_acct = format!("node:{}", holder.public());
    assert!(checked.ledger[&holder_acct] > 0);
    for k in [&mallory, &outsider] {
        assert!(!checked.ledger.contains_key(&format!("node:{}", k.public())));
    }
    // mallory's result is signed by a registered node that lost the race for the lease:
    // dropped, not parked (an honest node whose task was redelivered looks the same).
    farm.wait_log("coordinator", "superseded, dropped", secs(5));
    farm.assert_parked(&["other-class"]);

    // Honest nodes render job A, whose failed task went back to the shared queue.
    rt.block_on(bus.shutdown());
    farm.node("n1", &[STUB], &[]);
    farm.node("n2", &[STUB], &[]);
    farm.wait_done(&job_a, secs(60));
    let ledger = farm.ledger();
    for k in [&mallory, &outsider] {
        assert!(
            !ledger.contains_key(&format!("node:{}", k.public())),
            "{ledger:?}"
        );
        assert!(
            !ledger.contains_key(&format!("stake:{}", k.public())),
            "{ledger:?}"
        );
    }
    assert_eq!(ledger[&holder_acct], checked.ledger[&holder_acct]);
    assert_eq!(
        ledger.get(&format!("escrow:{job_a}")).copied().unwrap_or(0),
        0
    );
}
