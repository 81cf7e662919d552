//! The broker connection and its recovery: at most one live [`Link`] at a time, watched by a
//! supervisor task that replaces it (with capped exponential backoff) when it dies.
//!
//! Users of a link never reconnect themselves: they report a dead connection with
//! [`Link::report_broken`] and wait for the next link with [`Shared::wait_link`].

use super::consumer::Slot;
use super::topology::{declare_parking, Destination, EXCHANGE_PART};
use super::{AmqpConfig, Topology};
use crate::{BusError, ConnectError};
use futures_core::Stream;
use lapin::options::ConfirmSelectOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Event};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Bound on one TCP connect plus AMQP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the supervisor looks at the connection state, as a backstop: a broker-initiated
/// `connection.close` ends the connection without an error event.
const STATE_POLL: Duration = Duration::from_millis(250);
/// Bound on a graceful close of a connection being replaced or shut down.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// First reconnect delay; doubled per failure up to `reconnect_max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A process-wide unique, never-zero id for a connection or a consumer channel.
pub(crate) fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// Lowercase `lock` that survives a poisoned mutex (the data is plain bookkeeping).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Capped exponential backoff.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: FIRST_BACKOFF.min(max),
            max,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub(crate) fn reset(&mut self) {
        self.next = FIRST_BACKOFF.min(self.max);
    }
}

/// One live broker connection and what hangs off it.
pub(crate) struct Link {
    /// Unique id of this connection (for logs).
    pub(crate) generation: u64,
    conn: Connection,
    broken: Notify,
    broken_reason: Mutex<Option<String>>,
    /// The confirm-mode publishing channel, opened on first use and reopened when closed.
    publisher: AsyncMutex<Option<Channel>>,
    /// Broker queues whose exchange, queue and binding were declared (or, passive, found)
    /// on this connection.
    declared: Mutex<HashSet<String>>,
}

impl Link {
    /// The connection is up as far as lapin knows.
    pub(crate) fn connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// Tell the supervisor this connection is dead (the first reason wins).
    pub(crate) fn report_broken(&self, reason: String) {
        lock(&self.broken_reason).get_or_insert(reason);
        self.broken.notify_one();
    }

    /// A new channel on this connection.
    pub(crate) async fn channel(&self) -> lapin::Result<Channel> {
        self.conn.create_channel().await
    }

    /// The publishing channel (publisher confirms on), reopened if a channel error closed it.
    pub(crate) async fn publisher(&self) -> lapin::Result<Channel> {
        let mut slot = self.publisher.lock().await;
        if let Some(ch) = slot.as_ref().filter(|ch| ch.status().connected()) {
            return Ok(ch.clone());
        }
        *slot = None;
        let ch = self.conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *slot = Some(ch.clone());
        Ok(ch)
    }

    pub(crate) fn is_declared(&self, broker_queue: &str) -> bool {
        lock(&self.declared).contains(broker_queue)
    }

    pub(crate) fn mark_declared(&self, broker_queue: &str) {
        lock(&self.declared).insert(broker_queue.to_string());
    }

    pub(crate) fn forget_declared(&self, broker_queue: &str) {
        lock(&self.declared).remove(broker_queue);
    }

    async fn close(&self, reason: &str) {
        if self.connected() {
            let closing = self.conn.close(200, ShortString::from(reason));
            if let Ok(Err(e)) = tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
                debug!(generation = self.generation, error = %e, "amqp connection close failed");
            }
        }
    }
}

/// Why [`Shared::wait_link`] gave up.
pub(crate) enum WaitError {
    /// The bus was shut down.
    Shutdown,
    /// The deadline passed.
    Timeout,
}

/// State shared by the bus handles, the supervisor and the consumer pumps.
pub(crate) struct Shared {
    pub(crate) cfg: AmqpConfig,
    link: watch::Sender<Option<Arc<Link>>>,
    shutdown: watch::Sender<bool>,
    /// One consumer per logical queue, started by the first `next`.
    pub(crate) consumers: Mutex<HashMap<String, Arc<Slot>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    pub(crate) fn new(cfg: AmqpConfig) -> Self {
        Self {
            cfg,
            link: watch::Sender::new(None),
            shutdown: watch::Sender::new(false),
            consumers: Mutex::new(HashMap::new()),
            supervisor: Mutex::new(None),
        }
    }

    /// The broker queue behind a logical one: `{namespace}.{queue}`.
    pub(crate) fn broker_queue(&self, queue: &str) -> Result<ShortString, BusError> {
        Ok(self.destination(queue)?.queue)
    }

    /// The broker queue and exchange behind a logical queue: `{namespace}.{queue}` and
    /// `{namespace}.to.{queue}`.
    pub(crate) fn destination(&self, queue: &str) -> Result<Destination, BusError> {
        let invalid = |reason: &str| BusError::Invalid {
            what: "queue name",
            value: queue.to_string(),
            reason: reason.to_string(),
        };
        if queue.is_empty() {
            return Err(invalid("empty"));
        }
        if queue == super::PARKED {
            return Err(invalid("reserved for the parking queue"));
        }
        if queue.starts_with(EXCHANGE_PART) {
            return Err(invalid(
                "names starting with `to.` are reserved for exchanges",
            ));
        }
        let ns = &self.cfg.namespace;
        let name = |n: String| {
            ShortString::try_new(n).map_err(|e| invalid(&format!("broker name too long: {e}")))
        };
        Ok(Destination {
            queue: name(format!("{ns}.{queue}"))?,
            exchange: name(format!("{ns}.{EXCHANGE_PART}{queue}"))?,
        })
    }

    /// `{namespace}.parking`, the dead-letter exchange of every queue.
    pub(crate) fn parking_exchange(&self) -> String {
        format!("{}.parking", self.cfg.namespace)
    }

    /// `{namespace}.parked`, the queue bound to the parking exchange.
    pub(crate) fn parked_queue(&self) -> String {
        format!("{}.{}", self.cfg.namespace, super::PARKED)
    }

    /// The arguments of every work queue: a quorum queue with an explicit delivery limit
    /// that dead-letters (at least once) to the parking exchange.
    pub(crate) fn queue_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        t.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.cfg.delivery_limit)),
        );
        t.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.parking_exchange().into()),
        );
        t.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        // at-least-once dead lettering requires reject-publish overflow.
        t.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        t
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once the bus is shut down.
    pub(crate) async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }

    /// Sleep for `d`; false if the bus was shut down meanwhile.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown_signal() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// The current live link, waiting (until `deadline`, if any) for the supervisor to
    /// establish one.
    pub(crate) async fn wait_link(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Arc<Link>, WaitError> {
        let mut rx = self.link.subscribe();
        let live = async {
            match rx
                .wait_for(|l| l.as_ref().is_some_and(|l| l.connected()))
                .await
            {
                Ok(l) => l.clone(),
                Err(_) => None,
            }
        };
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.shutdown_signal() => Err(WaitError::Shutdown),
            link = live => link.ok_or(WaitError::Shutdown),
            _ = expired => Err(WaitError::Timeout),
        }
    }

    /// Connect for the first time and start the supervisor.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), ConnectError> {
        let link = establish(self).await?;
        self.link.send_replace(Some(link.clone()));
        let handle = tokio::spawn(supervise(self.clone(), link));
        *lock(&self.supervisor) = Some(handle);
        Ok(())
    }

    /// Wait for the supervisor to have closed the connection (after `begin_shutdown`).
    pub(crate) async fn join_supervisor(&self) {
        let handle = lock(&self.supervisor).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// Connect, declare the parking topology (unless the topology is passive), and wrap it as
/// a new link.
async fn establish(shared: &Shared) -> Result<Arc<Link>, ConnectError> {
    let generation = next_generation();
    let props = ConnectionProperties::default()
        .with_connection_name(format!("tessera-bus {} #{generation}", shared.cfg.namespace).into());
    let conn =
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&shared.cfg.url, props))
            .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(ConnectError::Handshake {
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ConnectError::NoAnswer {
                    after: CONNECT_TIMEOUT,
                })
            }
        };
    let link = Arc::new(Link {
        generation,
        conn,
        broken: Notify::new(),
        broken_reason: Mutex::new(None),
        publisher: AsyncMutex::new(None),
        declared: Mutex::new(HashSet::new()),
    });
    if shared.cfg.topology == Topology::Declare {
        let declared = match link.channel().await {
            Ok(ch) => {
                let declared = declare_parking(shared, &ch).await;
                let _ = ch.close(200, "OK".into()).await;
                declared
            }
            Err(e) => Err(ConnectError::Channel {
                reason: e.to_string(),
            }),
        };
        if let Err(e) = declared {
            link.close("topology failed").await;
            return Err(e);
        }
    }
    Ok(link)
}

/// Wait until `link` dies (`Some(reason)`) or the bus shuts down (`None`).
async fn watch_link(shared: &Shared, link: &Link) -> Option<String> {
    let mut events: Pin<Box<dyn Stream<Item = Event> + Send>> =
        Box::pin(link.conn.events_listener());
    let mut poll = tokio::time::interval(STATE_POLL);
    loop {
        tokio::select! {
            biased;
            _ = shared.shutdown_signal() => return None,
            _ = link.broken.notified() => {
                let reason = lock(&link.broken_reason).clone();
                return Some(reason.unwrap_or_else(|| "reported broken".into()));
            }
            event = std::future::poll_fn(|cx| events.as_mut().poll_next(cx)) => match event {
                // Channel errors (a refused declare) are reported here too; the channel's
                // user handles those.
                Some(Event::Error(e)) if e.is_amqp_soft_error() && link.connected() => {
                    debug!(generation = link.generation, error = %e, "amqp channel error");
                }
                Some(Event::Error(e)) => return Some(e.to_string()),
                Some(_) => {}
                None => return Some("connection event stream ended".into()),
            },
            _ = poll.tick() => {
                if !link.connected() {
                    return Some(format!("connection state is {:?}", link.conn.status()));
                }
            }
        }
    }
}

/// Keep one live link: on loss, warn, reconnect with backoff and publish the new link.
async fn supervise(shared: Arc<Shared>, mut link: Arc<Link>) {
    let namespace = shared.cfg.namespace.clone();
    let mut backoff = Backoff::new(shared.cfg.reconnect_max_backoff);
    loop {
        let Some(reason) = watch_link(&shared, &link).await else {
            shared.link.send_replace(None);
            link.close("shutdown").await;
            return;
        };
        let generation = link.generation;
        warn!(%namespace, generation, %reason, "amqp connection lost; reconnecting");
        shared.link.send_replace(None);
        link.close("reconnecting").await;
        let mut attempt = 1u32;
        link = loop {
            match establish(&shared).await {
                Ok(new) => break new,
                Err(error) => {
                    let delay = backoff.next_delay();
                    warn!(%namespace, attempt, %error, retry_in = ?delay, "amqp reconnect failed");
                    if !shared.sleep(delay).await {
                        return;
                    }
                    attempt += 1;
                }
            }
        };
        backoff.reset();
        info!(%namespace, generation = link.generation, attempt, "amqp connection recovered");
        shared.link.send_replace(Some(link.clone()));
    }
}
