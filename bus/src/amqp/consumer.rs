//! Consumers: one pump task per logical queue that owns a consumer channel (its own
//! prefetch), forwards deliveries into a bounded channel read by `next`, and reopens the
//! channel after a channel error, a broker cancel or a reconnect. A queue that does not
//! exist yet (a passive bus waits for the coordinator to declare it) is retried; a queue
//! the broker refuses this user ends the consumer for good.

use super::link::{lock, next_generation, Backoff, Link, Shared};
use super::topology::{self, Destination};
use super::Topology;
use crate::{BusError, Delivery, Settle};
use futures_core::Stream;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tracing::{debug, error, info, warn};

/// Bound on closing a consumer channel before reopening it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumer side of one logical queue.
pub(crate) struct Slot {
    /// Deliveries forwarded by the pump; `next` callers compete for them.
    pub(crate) rx: AsyncMutex<mpsc::Receiver<Delivery>>,
    /// Generation of the consumer channel now open (0: none). Deliveries of any other
    /// generation are stale.
    generation: AtomicU64,
    /// Why the pump stopped for good (the broker refused this user the queue).
    failure: Mutex<Option<BusError>>,
}

impl Slot {
    /// Why the consumer stopped for good, if it did.
    pub(crate) fn failure(&self) -> Option<BusError> {
        lock(&self.failure).clone()
    }

    /// Whether `d` can still be settled on its channel.
    pub(crate) fn is_current(&self, d: &Delivery) -> bool {
        match &d.settle {
            Settle::Amqp { generation, acker } => {
                *generation == self.generation.load(Ordering::SeqCst) && acker.usable()
            }
            Settle::InProcess => false,
        }
    }
}

/// The slot of `queue`, starting its pump on first use.
pub(crate) fn slot(shared: &Arc<Shared>, queue: &str) -> Result<Arc<Slot>, BusError> {
    let mut consumers = lock(&shared.consumers);
    if let Some(slot) = consumers.get(queue) {
        return Ok(slot.clone());
    }
    let dest = shared.destination(queue)?;
    let prefetch = shared.cfg.prefetch_for(queue).max(1);
    let (tx, rx) = mpsc::channel(usize::from(prefetch));
    let slot = Arc::new(Slot {
        rx: AsyncMutex::new(rx),
        generation: AtomicU64::new(0),
        failure: Mutex::new(None),
    });
    consumers.insert(queue.to_string(), slot.clone());
    tokio::spawn(pump(
        shared.clone(),
        queue.to_string(),
        dest,
        prefetch,
        slot.clone(),
        tx,
    ));
    Ok(slot)
}

/// The slot of `queue` if a consumer was started for it.
pub(crate) fn existing_slot(shared: &Shared, queue: &str) -> Option<Arc<Slot>> {
    lock(&shared.consumers).get(queue).cloned()
}

/// Open a consumer channel on `link`: per-consumer prefetch, the queue declared (or,
/// passive, found), consuming with manual acks.
async fn open(
    shared: &Shared,
    link: &Link,
    dest: &Destination,
    prefetch: u16,
) -> lapin::Result<(Channel, Consumer)> {
    let ch = link.channel().await?;
    // Quorum queues support only per-consumer prefetch (global = false).
    ch.basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    match shared.cfg.topology {
        Topology::Declare => {
            topology::declare_destination(shared, &ch, dest).await?;
            link.mark_declared(dest.queue.as_str());
        }
        Topology::Passive => topology::check_queue(&ch, dest).await?,
    }
    let consumer = ch
        .basic_consume(
            dest.queue.clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((ch, consumer))
}

/// Keep a consumer on `broker_queue` open and forward its deliveries to `tx` until shutdown.
async fn pump(
    shared: Arc<Shared>,
    queue: String,
    dest: Destination,
    prefetch: u16,
    slot: Arc<Slot>,
    tx: mpsc::Sender<Delivery>,
) {
    let mut backoff = Backoff::new(shared.cfg.reconnect_max_backoff);
    // Whether the wait for a missing queue was logged (once per wait, not per retry).
    let mut waiting_logged = false;
    loop {
        let Ok(link) = shared.wait_link(None).await else {
            return;
        };
        let (channel, mut consumer) = match open(&shared, &link, &dest, prefetch).await {
            Ok(opened) => opened,
            Err(e) => {
                if topology::is_access_refused(&e) && link.connected() {
                    // Retrying cannot help: end the consumer (`next` returns `None`) and
                    // keep the reason for `consumer_error`.
                    let what = format!("consuming queue {queue} ({})", dest.queue);
                    let failure = topology::refusal(what, &e);
                    error!(%queue, error = %failure, "consumer stopped");
                    *lock(&slot.failure) = Some(failure);
                    return;
                }
                if topology::is_not_found(&e) && link.connected() {
                    // Passive: the coordinator has not declared it yet.
                    if !waiting_logged {
                        warn!(%queue, broker_queue = %dest.queue, "queue does not exist yet; waiting for the coordinator to declare it");
                        waiting_logged = true;
                    }
                } else if e.is_amqp_soft_error() && link.connected() {
                    // A refused declare (queue exists with other arguments): needs an operator.
                    error!(%queue, error = %e, "broker refused consumer; retrying");
                } else if link.connected() {
                    warn!(%queue, error = %e, "cannot start consumer; retrying");
                } else {
                    link.report_broken(format!("starting consumer on {queue}: {e}"));
                }
                if !shared.sleep(backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        // The delay before the next reopen stays short unless opening keeps failing.
        backoff.reset();
        if waiting_logged {
            info!(%queue, "queue declared; consuming");
            waiting_logged = false;
        }
        let generation = next_generation();
        slot.generation.store(generation, Ordering::SeqCst);
        debug!(%queue, generation, prefetch, "consumer started");
        let ended = loop {
            let next_item = std::future::poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx));
            let item = tokio::select! {
                biased;
                _ = shared.shutdown_signal() => return,
                item = next_item => item,
            };
            match item {
                Some(Ok(d)) => {
                    let delivery = convert(&queue, generation, d);
                    tokio::select! {
                        biased;
                        _ = shared.shutdown_signal() => return,
                        sent = tx.send(delivery) => if sent.is_err() { return },
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "consumer cancelled (channel closed or queue deleted)".to_string(),
            }
        };
        // Nothing from this channel can be settled any more.
        slot.generation.store(0, Ordering::SeqCst);
        if link.connected() {
            warn!(%queue, generation, reason = %ended, "consumer channel ended; reopening");
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "reopening".into())).await;
        } else {
            link.report_broken(format!("consumer on {queue} ended: {ended}"));
        }
        if !shared.sleep(backoff.next_delay()).await {
            return;
        }
    }
}

/// A lapin delivery as a bus delivery of `generation`.
fn convert(queue: &str, generation: u64, d: lapin::message::Delivery) -> Delivery {
    let redeliveries = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| int_header(h, "x-delivery-count"))
        .unwrap_or(u32::from(d.redelivered));
    Delivery {
        queue: queue.to_string(),
        message_id: d
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        body: d.data,
        redeliveries,
        settle: Settle::Amqp {
            generation,
            acker: d.acker,
        },
    }
}

/// An integer header of any AMQP integer type, if it fits a u32.
pub(crate) fn int_header(headers: &FieldTable, key: &str) -> Option<u32> {
    let v = headers.inner().get(key)?;
    let n: i128 = match v {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// A string header (long or short string), if present.
pub(crate) fn str_header(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}
