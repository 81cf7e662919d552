//! The AMQP bus against a real RabbitMQ (`TESSERA_TEST_AMQP`, default the local guest
//! account): round trips, redelivery counts, parking, prefetch, and recovery from
//! `rabbitmqctl close_all_connections` and `stop_app`/`start_app`.
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
use std::time::Duration;
use tessera_bus::{AmqpBus, AmqpConfig, Bus, BusError, Delivery, Parked};
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

/// Delete the test's queues and parking topology.
async fn cleanup(cfg: &AmqpConfig, queues: &[&str]) {
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    for q in queues.iter().copied().chain(["parked"]) {
        let name = format!("{}.{q}", cfg.namespace);
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("deleting queue {name}: {e}"));
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
