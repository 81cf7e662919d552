//! The AMQP bus against a real RabbitMQ (`TESSERA_TEST_AMQP`, default the local guest
//! account): round trips, redelivery counts, parking, prefetch, recovery from
//! `rabbitmqctl close_all_connections` and `stop_app`/`start_app`, and the per-role broker
//! users (created by `.ci/broker-users`, run here when they do not work yet): each may do
//! its role's part and the broker refuses it everything else.
//!
//! Without a broker every test prints `SKIPPED: ...` and passes, unless
//! `TESSERA_REQUIRE_BROKER=1` (CI), where it fails. Each test uses its own random namespace
//! and deletes its queues at the end. Tests that disrupt the broker take the write side of
//! [`BROKER`]; the others take the read side, so no test sees another's disruption. The
//! disruptive ones run `rabbitmqctl` on this machine: they expect the broker to be local.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use tessera_bus::{AmqpBus, AmqpConfig, Bus, BusError, ConnectError, Delivery, Parked, Topology};
use tokio::sync::RwLock;
use tokio::time::{timeout, Instant};

/// Read: an ordinary test. Write: a test that disconnects everyone or restarts the broker.
static BROKER: RwLock<()> = RwLock::const_new(());
/// Bound on waiting for something that should happen promptly.
const WAIT: Duration = Duration::from_secs(20);

fn url() -> String {
    std::env::var("TESSERA_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn broker_required() -> bool {
    std::env::var("TESSERA_REQUIRE_BROKER").is_ok_and(|v| v == "1")
}

/// A config with a fresh namespace and a short reconnect backoff.
fn config() -> AmqpConfig {
    AmqpConfig {
        url: url(),
        namespace: format!("tessera-test-{:016x}", rand::random::<u64>()),
        reconnect_max_backoff: Duration::from_millis(500),
        ..AmqpConfig::default()
    }
}

/// Say on the real stderr (libtest does not capture direct writes) that a test is skipped.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Connect, or `None` (test skipped) when there is no broker and none is required.
async fn connect(cfg: &AmqpConfig) -> Option<AmqpBus> {
    // Logs show with `--nocapture` (RUST_LOG, default: this crate's warnings).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tessera_bus=warn".into()),
        )
        .with_test_writer()
        .try_init();
    match AmqpBus::connect(cfg.clone()).await {
        Ok(bus) => Some(bus),
        Err(e) if broker_required() => {
            panic!("TESSERA_REQUIRE_BROKER=1 but the broker is unusable: {e}")
        }
        Err(e) => {
            skipped(&format!("no broker ({e})"));
            None
        }
    }
}

/// A raw lapin connection, to look at the broker behind the bus's back.
async fn raw() -> Connection {
    Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("raw connection to the broker")
}

/// Delete the test's queues, their exchanges and the parking topology.
async fn cleanup(cfg: &AmqpConfig, queues: &[&str]) {
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    for q in queues.iter().copied().chain(["parked"]) {
        let name = format!("{}.{q}", cfg.namespace);
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("deleting queue {name}: {e}"));
        // Gone with its queue (auto-delete), unless it never had a binding.
        let exchange = format!("{}.to.{q}", cfg.namespace);
        ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("deleting exchange {exchange}: {e}"));
    }
    let exchange = format!("{}.parking", cfg.namespace);
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "OK".into()).await;
}

/// Ready messages in a broker queue.
async fn ready_count(conn: &Connection, queue: &str) -> u32 {
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap();
    q.message_count()
}

async fn next_within(bus: &AmqpBus, queue: &str) -> Delivery {
    timeout(WAIT, bus.next(queue))
        .await
        .unwrap_or_else(|_| panic!("no delivery from queue {queue} within {WAIT:?}"))
        .unwrap_or_else(|| panic!("bus closed while waiting on queue {queue}"))
}

/// Wait until the parking queue holds `n` messages (dead-lettering is asynchronous).
async fn parked_within(bus: &AmqpBus, n: usize) -> Vec<Parked> {
    let deadline = Instant::now() + WAIT;
    loop {
        let parked = bus.parked().await.expect("reading the parking queue");
        if parked.len() >= n || Instant::now() > deadline {
            assert_eq!(parked.len(), n, "parked messages: {parked:?}");
            return parked;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run `rabbitmqctl args`; false (test skipped) if it cannot run and no broker is required.
fn rabbitmqctl(args: &[&str]) -> bool {
    match Command::new("rabbitmqctl").args(args).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) if broker_required() => panic!(
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if broker_required() => panic!("cannot run rabbitmqctl {args:?}: {e}"),
        Ok(out) => {
            skipped(&format!(
                "rabbitmqctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            false
        }
        Err(e) => {
            skipped(&format!("cannot run rabbitmqctl {args:?}: {e}"));
            false
        }
    }
}

/// Starts the broker app again if a test fails while it is stopped.
struct StartAppOnDrop {
    armed: bool,
}

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = Command::new("rabbitmqctl").arg("start_app").status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_is_persistent_with_message_id_and_acks() {
    let _shared = BROKER.read().await;
    let cfg = config();
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    let broker_queue = bus.broker_queue("tasks").unwrap();
    assert_eq!(broker_queue, format!("{}.tasks", cfg.namespace));

    // Look at the first message on the broker itself.
    bus.publish("tasks", "task-1", b"{\"n\":1}".to_vec())
        .await
        .unwrap();
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            broker_queue.as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .unwrap()
        .expect("the published message is in the broker queue");
    let props = &got.delivery.properties;
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some("task-1")
    );
    assert_eq!(got.delivery.data, b"{\"n\":1}");
    got.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();

    // The second goes through the bus.
    bus.publish("tasks", "task-2", b"two".to_vec())
        .await
        .unwrap();
    let d = next_within(&bus, "tasks").await;
    assert_eq!(
        (
            d.queue.as_str(),
            d.message_id.as_str(),
            d.body.as_slice(),
            d.redeliveries
        ),
        ("tasks", "task-2", &b"two"[..], 0)
    );
    bus.ack(&d).await.unwrap();
    // Acked means gone. The ack went over the bus's connection, not `conn`: wait for it.
    let deadline = Instant::now() + WAIT;
    while ready_count(&conn, &broker_queue).await != 0 {
        assert!(
            Instant::now() < deadline,
            "queue {broker_queue} not empty after ack"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Acking twice is a stale delivery, not a panic.
    assert!(matches!(
        bus.ack(&d).await,
        Err(BusError::StaleDelivery { .. })
    ));
    assert!(bus.parked().await.unwrap().is_empty());

    // Bad names are errors that name the value.
    let long = "x".repeat(300);
    let err = bus.publish(&long, "m", vec![]).await.unwrap_err();
    assert!(
        matches!(
            err,
            BusError::Invalid {
                what: "queue name",
                ..
            }
        ),
        "{err}"
    );
    let err = bus.publish("tasks", &long, vec![]).await.unwrap_err();
    assert!(
        matches!(
            err,
            BusError::Invalid {
                what: "message id",
                ..
            }
        ),
        "{err}"
    );

    bus.shutdown().await;
    assert!(bus.next("tasks").await.is_none());
    let late = bus.publish("tasks", "late", vec![]).await;
    assert!(
        matches!(&late, Err(BusError::Closed(q)) if q == "tasks"),
        "{late:?}"
    );
    let _ = conn.close(200, "OK".into()).await;
    cleanup(&cfg, &["tasks"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_with_requeue_counts_redeliveries() {
    let _shared = BROKER.read().await;
    let cfg = config();
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    bus.publish("verify", "v-1", b"req".to_vec()).await.unwrap();
    for expected in 0..3 {
        let d = next_within(&bus, "verify").await;
        assert_eq!(
            (d.message_id.as_str(), d.body.as_slice()),
            ("v-1", &b"req"[..])
        );
        assert_eq!(d.redeliveries, expected);
        if expected < 2 {
            bus.nack(&d, true).await.unwrap();
        } else {
            bus.ack(&d).await.unwrap();
        }
    }
    assert!(bus.parked().await.unwrap().is_empty());
    bus.shutdown().await;
    cleanup(&cfg, &["verify"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_without_requeue_parks_the_message() {
    let _shared = BROKER.read().await;
    let cfg = config();
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    bus.publish("results", "r-1", b"bad".to_vec())
        .await
        .unwrap();
    bus.publish("results", "r-2", b"good".to_vec())
        .await
        .unwrap();
    let d = next_within(&bus, "results").await;
    assert_eq!(d.message_id, "r-1");
    bus.nack(&d, false).await.unwrap();
    let d = next_within(&bus, "results").await;
    assert_eq!(d.message_id, "r-2");
    bus.ack(&d).await.unwrap();

    let want = Parked {
        original_queue: Some("results".into()),
        reason: Some("rejected".into()),
        message_id: "r-1".into(),
        body: b"bad".to_vec(),
    };
    assert_eq!(parked_within(&bus, 1).await, std::slice::from_ref(&want));
    // Reading leaves it there; taking removes it.
    assert_eq!(bus.parked().await.unwrap(), std::slice::from_ref(&want));
    assert_eq!(bus.take_parked().await.unwrap(), [want]);
    assert!(bus.parked().await.unwrap().is_empty());
    bus.shutdown().await;
    cleanup(&cfg, &["results"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_delivery_limit_parks_the_message() {
    let _shared = BROKER.read().await;
    let cfg = AmqpConfig {
        delivery_limit: 2,
        ..config()
    };
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    bus.publish("verdicts", "poison", b"p".to_vec())
        .await
        .unwrap();
    // The first delivery and `delivery_limit` redeliveries, each requeued.
    for expected in 0..=cfg.delivery_limit {
        let d = next_within(&bus, "verdicts").await;
        assert_eq!(
            (d.message_id.as_str(), d.redeliveries),
            ("poison", expected)
        );
        bus.nack(&d, true).await.unwrap();
    }
    let parked = parked_within(&bus, 1).await;
    assert_eq!(parked[0].message_id, "poison");
    assert_eq!(parked[0].original_queue.as_deref(), Some("verdicts"));
    assert_eq!(parked[0].reason.as_deref(), Some("delivery_limit"));
    // Parked, so not redelivered: a new message is the next one.
    bus.publish("verdicts", "fresh", b"f".to_vec())
        .await
        .unwrap();
    let d = next_within(&bus, "verdicts").await;
    assert_eq!(d.message_id, "fresh");
    bus.ack(&d).await.unwrap();
    bus.shutdown().await;
    cleanup(&cfg, &["verdicts"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_respect_prefetch() {
    let _shared = BROKER.read().await;
    let cfg = AmqpConfig {
        prefetch: HashMap::from([("tasks".to_string(), 1)]),
        ..config()
    };
    let Some(a) = connect(&cfg).await else { return };
    let b = AmqpBus::connect(cfg.clone()).await.unwrap();
    for i in 0..4 {
        a.publish("tasks", &format!("t-{i}"), vec![i])
            .await
            .unwrap();
    }
    // `a` holds one unacked message; with prefetch 1 the broker sends it nothing else, so
    // `b` gets all the others. With a larger prefetch `a` would have taken them all.
    let held = next_within(&a, "tasks").await;
    assert_eq!(held.message_id, "t-0");
    let mut by_b = Vec::new();
    for _ in 0..3 {
        let d = next_within(&b, "tasks").await;
        by_b.push(d.message_id.clone());
        b.ack(&d).await.unwrap();
    }
    assert_eq!(by_b, ["t-1", "t-2", "t-3"]);
    a.ack(&held).await.unwrap();

    // Two callers of `next` on one bus compete too: each message goes to one of them.
    a.publish("tasks", "t-4", vec![4]).await.unwrap();
    a.publish("tasks", "t-5", vec![5]).await.unwrap();
    let (x, y) = tokio::join!(
        async {
            let d = next_within(&a, "tasks").await;
            a.ack(&d).await.unwrap();
            d.message_id
        },
        async {
            let d = next_within(&b, "tasks").await;
            b.ack(&d).await.unwrap();
            d.message_id
        }
    );
    let mut got = [x, y];
    got.sort();
    assert_eq!(got, ["t-4", "t-5"]);
    a.shutdown().await;
    b.shutdown().await;
    cleanup(&cfg, &["tasks"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_declare_is_an_error_and_the_bus_goes_on() {
    let _shared = BROKER.read().await;
    let cfg = config();
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    // A classic queue where the bus wants a quorum one: 406 PRECONDITION_FAILED.
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    let classic = format!("{}.classic", cfg.namespace);
    ch.queue_declare(
        classic.as_str().into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = bus.publish("classic", "c-1", vec![]).await.unwrap_err();
    match &err {
        BusError::Broker { what, reason } => {
            assert!(what.contains("classic"), "{err}");
            assert!(reason.contains("PRECONDITION"), "{err}");
        }
        other => panic!("expected a broker refusal, got {other:?}"),
    }
    assert!(matches!(
        bus.declare("classic").await,
        Err(BusError::Broker { .. })
    ));

    // The bus goes on: declares, publishes and consumes elsewhere.
    bus.declare("node.ab12").await.unwrap();
    assert_eq!(
        ready_count(&conn, &format!("{}.node.ab12", cfg.namespace)).await,
        0
    );
    bus.publish("heartbeats", "h-1", vec![1]).await.unwrap();
    let d = next_within(&bus, "heartbeats").await;
    assert_eq!(d.message_id, "h-1");
    bus.ack(&d).await.unwrap();

    // A declared queue deleted behind the bus's back: publishing to it declares it again
    // instead of failing as unroutable.
    let node_queue = format!("{}.node.ab12", cfg.namespace);
    ch.queue_delete(node_queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    bus.publish("node.ab12", "n-1", vec![2]).await.unwrap();
    assert_eq!(ready_count(&conn, &node_queue).await, 1);

    bus.shutdown().await;
    let _ = conn.close(200, "OK".into()).await;
    cleanup(&cfg, &["classic", "node.ab12", "heartbeats"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_close_all_connections() {
    let _exclusive = BROKER.write().await;
    let cfg = config();
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    bus.publish("tasks", "a", b"a".to_vec()).await.unwrap();
    bus.publish("tasks", "b", b"b".to_vec()).await.unwrap();
    let held = next_within(&bus, "tasks").await;
    assert_eq!((held.message_id.as_str(), held.redeliveries), ("a", 0));

    if !rabbitmqctl(&["close_all_connections", "tessera-bus test"]) {
        return;
    }
    // Publishing waits for the new connection and succeeds there.
    bus.publish("tasks", "c", b"c".to_vec()).await.unwrap();
    // `held` came on the closed channel: acking it is stale, not a panic.
    assert!(matches!(
        bus.ack(&held).await,
        Err(BusError::StaleDelivery { .. })
    ));
    assert!(matches!(
        bus.nack(&held, true).await,
        Err(BusError::StaleDelivery { .. })
    ));

    // The consumer keeps receiving: "a" again (requeued by the broker when its channel
    // closed), "b" published before the disconnection, and "c" published after.
    let mut got = BTreeMap::new();
    for _ in 0..3 {
        let d = next_within(&bus, "tasks").await;
        bus.ack(&d).await.unwrap();
        got.insert(d.message_id.clone(), d.redeliveries);
    }
    assert_eq!(
        got.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(got["a"] >= 1, "a was delivered before: {got:?}");
    assert_eq!(got["c"], 0);
    bus.shutdown().await;
    cleanup(&cfg, &["tasks"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_broker_restart() {
    let _exclusive = BROKER.write().await;
    let cfg = config();
    let Some(bus) = connect(&cfg).await else {
        return;
    };
    bus.publish("results", "before", b"1".to_vec())
        .await
        .unwrap();
    // Waiting in a queue nobody consumes yet.
    bus.publish("verify", "queued", b"q".to_vec())
        .await
        .unwrap();
    // A consumer that is running when the broker goes away.
    let consumer = {
        let bus = bus.clone();
        tokio::spawn(async move { next_within(&bus, "results").await })
    };
    let first = consumer.await.unwrap();
    assert_eq!(first.message_id, "before");

    let mut restart_guard = StartAppOnDrop { armed: true };
    if !rabbitmqctl(&["stop_app"]) {
        return;
    }
    // Published while the broker is down: waits, then succeeds after the restart.
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish("results", "during", b"2".to_vec()).await })
    };
    assert!(rabbitmqctl(&["start_app"]));
    restart_guard.armed = false;
    publisher
        .await
        .unwrap()
        .expect("publish across a broker restart");

    // The unacked message survived the restart (persistent, quorum queue) and comes again.
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let d = next_within(&bus, "results").await;
        bus.ack(&d).await.unwrap();
        got.insert(d.message_id.clone(), d.body.clone());
    }
    assert_eq!(
        got,
        BTreeMap::from([
            ("before".into(), b"1".to_vec()),
            ("during".into(), b"2".to_vec())
        ])
    );
    let d = next_within(&bus, "verify").await;
    assert_eq!(
        (d.message_id.as_str(), d.body.as_slice()),
        ("queued", &b"q"[..])
    );
    bus.ack(&d).await.unwrap();
    bus.shutdown().await;
    cleanup(&cfg, &["results", "verify"]).await;
}

/// `url()` with the user `user`, whose password is its name (`.ci/broker-users`).
fn role_url(user: &str) -> String {
    let url = url();
    let (scheme, rest) = url.split_once("://").expect("an amqp:// url");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{user}@{host}")
}

/// Make sure the per-role test users exist with their permissions (`.ci/broker-users`,
/// once per test run); false (test skipped) if that cannot be done and no broker is
/// required.
fn role_users() -> bool {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/broker-users");
        match Command::new("bash").arg(script).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{script} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("cannot run {script}: {e}")),
        }
    });
    match done {
        Ok(()) => true,
        Err(e) if broker_required() => panic!("TESSERA_REQUIRE_BROKER=1 but {e}"),
        Err(e) => {
            skipped(e);
            false
        }
    }
}

/// `err` is the broker's ACCESS_REFUSED for `user`, naming `resource` ("access to
/// exchange 'ns.to.tasks'").
fn assert_refused(err: &BusError, user: &str, resource: &str) {
    match err {
        BusError::AccessRefused { reason, .. } => assert!(
            reason.contains("ACCESS_REFUSED")
                && reason.contains(resource)
                && reason.contains(&format!("user '{user}'")),
            "expected the broker to refuse {resource} to {user}, got: {err}"
        ),
        other => panic!("expected the broker to refuse {resource} to {user}, got {other:?}"),
    }
}

/// The attack of issue 13: every daemon held the same all-powerful broker user, so a node
/// could consume the coordinator's `results` (and take other nodes' results away from it)
/// or publish tasks, verify requests and verdicts. With the per-role users, the broker
/// itself refuses a node or a verifier everything but its role's part, and that part works
/// with a passive bus (no configure permission): consuming its task queues, publishing its
/// results or verdicts, and parking a message by rejecting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_users_are_refused_everything_but_their_part() {
    let _shared = BROKER.read().await;
    let cfg = config();
    if !role_users() {
        return;
    }
    let as_user = |user: &str, topology| AmqpConfig {
        url: role_url(user),
        topology,
        ..cfg.clone()
    };
    let (coordinator_user, node_user, verifier_user) = (
        "tessera-test-coordinator",
        "tessera-test-node",
        "tessera-test-verifier",
    );
    let Some(coordinator) = connect(&as_user(coordinator_user, Topology::Declare)).await else {
        return;
    };
    let node_queue = format!("node.{}", "ab".repeat(32));
    let verifier_queue = format!("verifier.{}", "cd".repeat(32));
    let queues = [
        "tasks",
        "results",
        "verify",
        "verdicts",
        "signals",
        &node_queue,
        &verifier_queue,
    ];
    // The coordinator declares everything; workers only find it.
    for q in queues {
        coordinator.declare(q).await.unwrap();
    }
    let node = AmqpBus::connect(as_user(node_user, Topology::Passive))
        .await
        .expect("a passive bus with the node user");
    let verifier = AmqpBus::connect(as_user(verifier_user, Topology::Passive))
        .await
        .expect("a passive bus with the verifier user");

    // A node's part: tasks in (shared and own queue), results and signals out.
    coordinator
        .publish("tasks", "task-1", b"t1".to_vec())
        .await
        .unwrap();
    coordinator
        .publish(&node_queue, "task-2", b"t2".to_vec())
        .await
        .unwrap();
    let d = next_within(&node, "tasks").await;
    assert_eq!(d.message_id, "task-1");
    node.ack(&d).await.unwrap();
    let d = next_within(&node, &node_queue).await;
    assert_eq!(d.message_id, "task-2");
    // Rejecting parks it: the broker dead-letters, whatever the user's permissions.
    node.nack(&d, false).await.unwrap();
    node.publish("results", "task-1", b"r1".to_vec())
        .await
        .unwrap();
    node.publish("signals", "signal-1", b"s1".to_vec())
        .await
        .unwrap();
    // A verifier's part: requests in (shared and own queue), verdicts out.
    coordinator
        .publish("verify", "req-1", b"v1".to_vec())
        .await
        .unwrap();
    coordinator
        .publish(&verifier_queue, "req-2", b"v2".to_vec())
        .await
        .unwrap();
    for (queue, id) in [("verify", "req-1"), (verifier_queue.as_str(), "req-2")] {
        let d = next_within(&verifier, queue).await;
        assert_eq!(d.message_id, id);
        verifier.ack(&d).await.unwrap();
    }
    verifier
        .publish("verdicts", "req-1", b"ok".to_vec())
        .await
        .unwrap();
    // All of it reaches the coordinator, and only it.
    for (queue, id) in [
        ("results", "task-1"),
        ("signals", "signal-1"),
        ("verdicts", "req-1"),
    ] {
        let d = next_within(&coordinator, queue).await;
        assert_eq!(d.message_id, id);
        coordinator.ack(&d).await.unwrap();
    }
    let parked = parked_within(&coordinator, 1).await;
    assert_eq!(parked[0].message_id, "task-2");
    assert_eq!(
        parked[0].original_queue.as_deref(),
        Some(node_queue.as_str())
    );
    assert_eq!(parked[0].reason.as_deref(), Some("rejected"));

    // Everything else, the broker refuses.
    let ns = &cfg.namespace;
    for (bus, user, may_publish, may_consume) in [
        (
            &node,
            node_user,
            &["results", "signals"][..],
            &["tasks", node_queue.as_str()][..],
        ),
        (
            &verifier,
            verifier_user,
            &["verdicts"][..],
            &["verify", verifier_queue.as_str()][..],
        ),
    ] {
        for q in queues {
            if !may_publish.contains(&q) {
                let err = bus.publish(q, "forged", b"x".to_vec()).await.unwrap_err();
                assert_refused(&err, user, &format!("access to exchange '{ns}.to.{q}'"));
            }
            if !may_consume.contains(&q) {
                let end = timeout(WAIT, bus.next(q)).await;
                assert!(
                    matches!(end, Ok(None)),
                    "{user} consuming {q}: {:?}",
                    end.map(|d| d.map(|d| d.message_id))
                );
                let err = bus.consumer_error(q).expect("why the consumer stopped");
                assert_refused(&err, user, &format!("access to queue '{ns}.{q}'"));
            }
        }
        let err = bus.parked().await.unwrap_err();
        assert_refused(&err, user, &format!("access to queue '{ns}.parked'"));
        // It may not declare anything (a declaring bus declares the parking exchange on
        // connecting)...
        match AmqpBus::connect(as_user(user, Topology::Declare)).await {
            Err(BusError::Connect {
                reason: ConnectError::DeclareExchange { exchange, reason },
                ..
            }) => assert!(
                exchange == format!("{ns}.parking")
                    && reason.contains("ACCESS_REFUSED")
                    && reason.contains(&format!("access to exchange '{ns}.parking'")),
                "{exchange}: {reason}"
            ),
            other => panic!("{user} declaring: {:?}", other.map(|_| "connected")),
        }
        // ... nor publish through the default exchange, which would reach every queue.
        let conn = Connection::connect(&role_url(user), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let sent = async {
            ch.confirm_select(Default::default()).await?;
            ch.basic_publish(
                "".into(),
                format!("{ns}.results").as_str().into(),
                Default::default(),
                b"forged",
                Default::default(),
            )
            .await?
            .await
        };
        let err = sent
            .await
            .expect_err("publishing through the default exchange");
        assert!(
            err.to_string().contains("ACCESS_REFUSED")
                && err.to_string().contains("access to exchange 'amq.default'"),
            "{user}: {err}"
        );
        let _ = conn.close(200, "OK".into()).await;
    }
    // Nothing forged arrived anywhere.
    let conn = raw().await;
    for q in queues {
        assert_eq!(ready_count(&conn, &format!("{ns}.{q}")).await, 0, "{q}");
    }
    let _ = conn.close(200, "OK".into()).await;
    for bus in [&node, &verifier, &coordinator] {
        bus.shutdown().await;
    }
    cleanup(&cfg, &queues).await;
}

/// A worker that starts before the coordinator declared its queues (a passive bus may not
/// declare them) waits for them: its consumer starts once the queue exists, and its
/// publish goes through once the destination exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_bus_waits_for_the_coordinator_to_declare() {
    let _shared = BROKER.read().await;
    let cfg = config();
    if !role_users() {
        return;
    }
    let as_user = |user: &str, topology| AmqpConfig {
        url: role_url(user),
        topology,
        ..cfg.clone()
    };
    let Some(node) = connect(&as_user("tessera-test-node", Topology::Passive)).await else {
        return;
    };
    let own = format!("node.{}", "ef".repeat(32));
    let consumer = {
        let (node, own) = (node.clone(), own.clone());
        tokio::spawn(async move { next_within(&node, &own).await })
    };
    let publisher = {
        let node = node.clone();
        tokio::spawn(async move { node.publish("results", "r-1", b"r".to_vec()).await })
    };
    // Nothing exists yet: both wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!consumer.is_finished() && !publisher.is_finished());
    assert!(node.consumer_error(&own).is_none());

    let coordinator = AmqpBus::connect(as_user("tessera-test-coordinator", Topology::Declare))
        .await
        .expect("the coordinator user connects");
    coordinator.declare("results").await.unwrap();
    coordinator
        .publish(&own, "t-1", b"t".to_vec())
        .await
        .unwrap();
    publisher
        .await
        .unwrap()
        .expect("the result is published once its destination exists");
    let d = consumer.await.unwrap();
    assert_eq!(d.message_id, "t-1");
    node.ack(&d).await.unwrap();
    let d = next_within(&coordinator, "results").await;
    assert_eq!(d.message_id, "r-1");
    coordinator.ack(&d).await.unwrap();
    node.shutdown().await;
    coordinator.shutdown().await;
    cleanup(&cfg, &["results", &own]).await;
}
