//! The RabbitMQ bus: durable quorum queues under a namespace, publisher confirms, manual
//! acks, dead-lettering to a parking queue, and automatic recovery from connection loss.
//!
//! Topology (all durable; `{ns}` is [`AmqpConfig::namespace`]):
//! - logical queue `q` is the quorum queue `{ns}.q` with `x-delivery-limit`,
//!   `x-dead-letter-exchange={ns}.parking`, `x-dead-letter-strategy=at-least-once` and
//!   `x-overflow=reject-publish`; messages reach it only through its own direct exchange
//!   `{ns}.to.q` (routing key `{ns}.q`), never through the default exchange, so that a
//!   broker user's write permission names the queues it may publish to
//!   (`topology.rs` says why);
//! - `{ns}.parking` is a fanout exchange bound to the quorum queue `{ns}.parked`, which
//!   collects what was nacked without requeue or exceeded the delivery limit.
//!
//! Who declares ([`Topology`]): a `Declare` bus (the coordinator) declares all of it; a
//! `Passive` bus (nodes, verifiers, whose broker users have no configure permission)
//! declares nothing and only checks that what it uses exists, waiting for it when it does
//! not yet.
//!
//! Recovery: a supervisor task owns the connection. When it dies (broker restart,
//! `close_all_connections`, network) the supervisor warns, reconnects with capped
//! exponential backoff and re-declares the parking topology; each consumer pump then opens
//! a new channel, re-declares (or finds) its queue and consumes again; `publish` waits for
//! the new connection and retries until a confirm (bounded by [`PUBLISH_TIMEOUT`]).
//! Deliveries from a dead channel are stale: the broker redelivers them.

mod consumer;
mod link;
mod topology;

use crate::{Bus, BusError, Delivery, Settle};
use consumer::str_header;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Confirmation};
use link::{Backoff, Link, Shared, WaitError};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use topology::Destination;
use tracing::{debug, error};

/// Prefetch of a consumer whose queue has no entry in [`AmqpConfig::prefetch`].
pub const DEFAULT_PREFETCH: u16 = 16;
/// Default `x-delivery-limit`: deliveries after the first before a message is parked.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 10;
/// How long `publish`, `declare` and `parked` keep retrying across connection loss.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one ack or nack.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Logical name of the parking queue (reserved: not usable as a work queue).
const PARKED: &str = "parked";
/// AMQP reply code of a mandatory message that no queue took.
const NO_ROUTE: u16 = 312;

/// Whether a bus creates the broker objects it uses or only uses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Topology {
    /// Declare everything used: on every connection the parking exchange and queue, and
    /// for each logical queue published to, consumed or [`Bus::declare`]d, its exchange,
    /// queue and binding. The broker user needs configure permission on the namespace.
    /// This is the coordinator.
    #[default]
    Declare,
    /// Declare nothing: before publishing to or consuming a queue, check passively (which
    /// needs no permission) that its exchange and queue exist, and wait for them when they
    /// do not yet (a consumer keeps waiting; `publish` and `declare` within
    /// [`PUBLISH_TIMEOUT`]). The broker user needs no configure permission. Nodes and
    /// verifiers, whose queues the coordinator declares.
    Passive,
}

/// How to reach the broker and shape the queues.
#[derive(Clone)]
pub struct AmqpConfig {
    /// Broker URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// Whether this bus declares the topology or only uses it; default
    /// [`Topology::Declare`].
    pub topology: Topology,
    /// Prefix of every broker name (`{namespace}.{queue}`); default `tessera`.
    pub namespace: String,
    /// Prefetch per logical queue (per consumer), or per family of queues (`node.*`);
    /// [`DEFAULT_PREFETCH`] otherwise. 0 is taken as 1.
    pub prefetch: HashMap<String, u16>,
    /// `x-delivery-limit` of every work queue; default [`DEFAULT_DELIVERY_LIMIT`]. A
    /// queue's arguments are fixed when it is first declared: changing this later makes
    /// declaring that queue fail with `406 PRECONDITION_FAILED`.
    pub delivery_limit: u32,
    /// Cap of the exponential reconnect backoff; default 5 s.
    pub reconnect_max_backoff: Duration,
}

impl AmqpConfig {
    /// Defaults with this broker URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The consumer prefetch of a logical queue: its own entry, else the entry of its
    /// family (`node.*` for `node.ab12`), else [`DEFAULT_PREFETCH`].
    pub fn prefetch_for(&self, queue: &str) -> u16 {
        let family = queue.split_once('.').map(|(head, _)| format!("{head}.*"));
        self.prefetch
            .get(queue)
            .or_else(|| family.and_then(|f| self.prefetch.get(&f)))
            .copied()
            .unwrap_or(DEFAULT_PREFETCH)
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            topology: Topology::Declare,
            namespace: "tessera".into(),
            prefetch: HashMap::new(),
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            reconnect_max_backoff: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact(&self.url))
            .field("topology", &self.topology)
            .field("namespace", &self.namespace)
            .field("prefetch", &self.prefetch)
            .field("delivery_limit", &self.delivery_limit)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .finish()
    }
}

/// `url` with the password replaced by `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let user = rest[..at].split(':').next().unwrap_or("");
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

/// A message in the parking queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The logical queue it was dead-lettered from (`x-first-death-queue`), if known.
    pub original_queue: Option<String>,
    /// Why (`rejected`: nack without requeue; `delivery_limit`: too many redeliveries;
    /// `expired`), if known.
    pub reason: Option<String>,
    /// The message id.
    pub message_id: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The RabbitMQ bus. Cheap to clone; the connection is shared. Dropping the last clone
/// shuts it down (as [`AmqpBus::shutdown`] does, without waiting).
#[derive(Clone)]
pub struct AmqpBus {
    shared: Arc<Shared>,
    _guard: Arc<ShutdownOnDrop>,
}

struct ShutdownOnDrop(Arc<Shared>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// One failed attempt of a retried operation.
enum Failure {
    /// Retrying cannot help.
    Final(BusError),
    /// The connection or a channel failed; retry on a working one.
    Transient(String),
}

impl From<lapin::Error> for Failure {
    fn from(e: lapin::Error) -> Self {
        Failure::Transient(e.to_string())
    }
}

impl Failure {
    /// A failed step of `what` on `link`: final when the broker refused this user the
    /// operation (retrying cannot help), else transient.
    fn of(what: impl FnOnce() -> String, link: &Link, e: lapin::Error) -> Self {
        if topology::is_access_refused(&e) && link.connected() {
            Failure::Final(topology::refusal(what(), &e))
        } else {
            e.into()
        }
    }
}

impl AmqpBus {
    /// Connect, declare the parking topology and start the recovery supervisor. Fails if
    /// the broker cannot be reached now; later losses are recovered from.
    pub async fn connect(cfg: AmqpConfig) -> Result<Self, BusError> {
        let namespace_ok = !cfg.namespace.is_empty()
            && cfg.namespace.len() <= 200
            && !cfg.namespace.starts_with("amq.");
        if !namespace_ok {
            return Err(BusError::Invalid {
                what: "namespace",
                value: cfg.namespace.clone(),
                reason: "must be 1 to 200 bytes and not start with amq.".into(),
            });
        }
        let url = redact(&cfg.url);
        let shared = Arc::new(Shared::new(cfg));
        shared
            .start()
            .await
            .map_err(|reason| BusError::Connect { url, reason })?;
        Ok(Self {
            _guard: Arc::new(ShutdownOnDrop(shared.clone())),
            shared,
        })
    }

    /// Stop consuming, close the connection and wait for that. Afterwards `next` returns
    /// `None` and the other operations fail with [`BusError::Closed`].
    pub async fn shutdown(&self) {
        self.shared.begin_shutdown();
        self.shared.join_supervisor().await;
    }

    /// The namespace of every broker name.
    pub fn namespace(&self) -> &str {
        &self.shared.cfg.namespace
    }

    /// The broker queue behind a logical queue (`{namespace}.{queue}`).
    pub fn broker_queue(&self, queue: &str) -> Result<String, BusError> {
        self.shared.broker_queue(queue).map(String::from)
    }

    /// Why the consumer of `queue` stopped for good, if it did: the broker refused this
    /// user access to the queue ([`BusError::AccessRefused`]). [`Bus::next`] on that queue
    /// returns `None` from then on.
    pub fn consumer_error(&self, queue: &str) -> Option<BusError> {
        consumer::existing_slot(&self.shared, queue).and_then(|slot| slot.failure())
    }

    /// What is in the parking queue now, oldest first, leaving it there. Each read counts
    /// as a delivery of those messages (the parking queue has no delivery limit). Needs
    /// read permission on `{namespace}.parked` (the coordinator's).
    pub async fn parked(&self) -> Result<Vec<Parked>, BusError> {
        self.read_parked(false).await
    }

    /// Like [`AmqpBus::parked`], but removes what it returns.
    pub async fn take_parked(&self) -> Result<Vec<Parked>, BusError> {
        self.read_parked(true).await
    }

    async fn read_parked(&self, take: bool) -> Result<Vec<Parked>, BusError> {
        let what = format!("reading parking queue {}", self.shared.parked_queue());
        self.retry(PARKED, &what, |link| self.try_read_parked(link, take))
            .await
    }

    async fn try_read_parked(&self, link: Arc<Link>, take: bool) -> Result<Vec<Parked>, Failure> {
        let queue = self.shared.parked_queue();
        let ch = link.channel().await?;
        let mut parked = Vec::new();
        let mut last_tag = None;
        // Unacked gets stay with this channel, so the loop ends when all were seen.
        while let Some(msg) = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| Failure::of(|| format!("reading queue {queue}"), &link, e))?
        {
            last_tag = Some(msg.delivery.delivery_tag);
            parked.push(self.to_parked(msg.delivery));
        }
        if let (true, Some(tag)) = (take, last_tag) {
            ch.basic_ack(tag, BasicAckOptions { multiple: true })
                .await?;
            // The ack is sent: a failed close must not make the caller read them again.
            let _ = ch.close(200, "OK".into()).await;
        } else {
            // Closing the channel puts the unacked messages back.
            ch.close(200, "OK".into()).await?;
        }
        Ok(parked)
    }

    fn to_parked(&self, d: lapin::message::Delivery) -> Parked {
        let headers = d.properties.headers().clone().unwrap_or_default();
        let first_death = |key: &str| {
            str_header(&headers, &format!("x-first-death-{key}")).or_else(|| {
                match headers.inner().get("x-death") {
                    Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().last() {
                        Some(AMQPValue::FieldTable(death)) => str_header(death, key),
                        _ => None,
                    },
                    _ => None,
                }
            })
        };
        let prefix = format!("{}.", self.shared.cfg.namespace);
        Parked {
            original_queue: first_death("queue")
                .map(|q| q.strip_prefix(&prefix).map(String::from).unwrap_or(q)),
            reason: first_death("reason"),
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            body: d.data,
        }
    }

    /// Run `attempt` on a live connection until it succeeds, fails for good, the bus shuts
    /// down, or [`PUBLISH_TIMEOUT`] passes.
    async fn retry<'a, T, F, Fut>(
        &'a self,
        queue: &str,
        what: &str,
        mut attempt: F,
    ) -> Result<T, BusError>
    where
        F: FnMut(Arc<Link>) -> Fut,
        Fut: Future<Output = Result<T, Failure>> + 'a,
    {
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let mut last = String::from("none");
        loop {
            let timeout = |last: String| BusError::Timeout {
                what: what.to_string(),
                after: PUBLISH_TIMEOUT,
                last,
            };
            let link = match self.shared.wait_link(Some(deadline)).await {
                Ok(link) => link,
                Err(WaitError::Shutdown) => return Err(BusError::Closed(queue.to_string())),
                Err(WaitError::Timeout) => return Err(timeout(last)),
            };
            // An attempt can hang (a blocked connection, a confirm that never comes).
            let Ok(outcome) = tokio::time::timeout_at(deadline, attempt(link.clone())).await else {
                return Err(timeout(format!("{last}; then no answer from the broker")));
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(reason)) => {
                    debug!(%queue, %reason, "{what}: retrying");
                    if !link.connected() {
                        link.report_broken(format!("{what}: {reason}"));
                    }
                    last = reason;
                }
            }
            if Instant::now() >= deadline {
                return Err(timeout(last));
            }
            if !self.shared.sleep(backoff.next_delay()).await {
                return Err(BusError::Closed(queue.to_string()));
            }
        }
    }

    /// Make sure the exchange, queue and binding behind `queue` exist, unless that was
    /// done on this connection already: declared ([`Topology::Declare`]) or found
    /// ([`Topology::Passive`]; a missing one is a transient failure, so callers wait for
    /// the coordinator to declare it).
    async fn ensure_declared(
        &self,
        link: &Link,
        queue: &str,
        dest: &Destination,
    ) -> Result<(), Failure> {
        if link.is_declared(dest.queue.as_str()) {
            return Ok(());
        }
        // A channel of its own: a refused declare closes it and nothing else.
        let ch = link.channel().await?;
        let done = match self.shared.cfg.topology {
            Topology::Declare => topology::declare_destination(&self.shared, &ch, dest).await,
            Topology::Passive => match topology::check_exchange(&ch, dest).await {
                Ok(()) => topology::check_queue(&ch, dest).await,
                Err(e) => Err(e),
            },
        };
        match done {
            Ok(()) => {
                link.mark_declared(dest.queue.as_str());
                let _ = ch.close(200, "OK".into()).await;
                Ok(())
            }
            Err(e) if topology::is_not_found(&e) && link.connected() => {
                Err(Failure::Transient(format!(
                    "exchange {} or queue {} does not exist yet (the coordinator declares \
                     them): {e}",
                    dest.exchange, dest.queue
                )))
            }
            Err(e) if e.is_amqp_soft_error() && link.connected() => Err(Failure::Final(
                topology::refusal(format!("declaring queue {queue} ({})", dest.queue), &e),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn try_publish(
        &self,
        link: Arc<Link>,
        queue: &str,
        dest: &Destination,
        message_id: &ShortString,
        body: &[u8],
    ) -> Result<(), Failure> {
        let props = BasicProperties::default()
            .with_message_id(message_id.clone())
            .with_delivery_mode(2);
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let mut redeclared = false;
        loop {
            self.ensure_declared(&link, queue, dest).await?;
            let ch = link.publisher().await?;
            let published = async {
                ch.basic_publish(
                    dest.exchange.clone(),
                    dest.queue.clone(),
                    options,
                    body,
                    props.clone(),
                )
                .await?
                .await
            };
            let confirm = match published.await {
                Ok(confirm) => confirm,
                Err(e) => {
                    if topology::is_not_found(&e) {
                        // The exchange went with its deleted queue: declare (or wait for)
                        // both again.
                        link.forget_declared(dest.queue.as_str());
                    }
                    let what = || {
                        format!(
                            "publishing message {message_id} to queue {queue} (exchange {})",
                            dest.exchange
                        )
                    };
                    return Err(Failure::of(what, &link, e));
                }
            };
            let final_error = match confirm {
                Confirmation::Ack(None) => return Ok(()),
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                    let declares = self.shared.cfg.topology == Topology::Declare;
                    if returned.reply_code == NO_ROUTE && declares && !redeclared {
                        // The queue was deleted behind our back: declare it again, once.
                        link.forget_declared(dest.queue.as_str());
                        redeclared = true;
                        continue;
                    }
                    BusError::Returned {
                        queue: queue.to_string(),
                        message_id: message_id.to_string(),
                        reason: format!("{} {}", returned.reply_code, returned.reply_text),
                    }
                }
                Confirmation::Nack(None) => BusError::Nacked {
                    queue: queue.to_string(),
                    message_id: message_id.to_string(),
                },
                Confirmation::NotRequested => {
                    // The channel lost confirm mode: reopen it.
                    return Err(Failure::Transient(
                        "publishing channel is not in confirm mode".into(),
                    ));
                }
            };
            return Err(Failure::Final(final_error));
        }
    }

    async fn settle(&self, d: &Delivery, requeue: Option<bool>) -> Result<(), BusError> {
        let what = if requeue.is_some() { "nack" } else { "ack" };
        let stale = || BusError::StaleDelivery {
            queue: d.queue.clone(),
            message_id: d.message_id.clone(),
        };
        let Settle::Amqp { acker, .. } = &d.settle else {
            return Err(BusError::Invalid {
                what: "delivery",
                value: d.message_id.clone(),
                reason: format!(
                    "{what} on the amqp bus of a delivery from queue {} of another bus",
                    d.queue
                ),
            });
        };
        if self.shared.is_shut_down() {
            return Err(BusError::Closed(d.queue.clone()));
        }
        let current =
            consumer::existing_slot(&self.shared, &d.queue).is_some_and(|slot| slot.is_current(d));
        if !current {
            return Err(stale());
        }
        let sent = async {
            match requeue {
                None => acker.ack(BasicAckOptions::default()).await,
                Some(requeue) => {
                    acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue,
                        })
                        .await
                }
            }
        };
        match tokio::time::timeout(SETTLE_TIMEOUT, sent).await {
            Ok(Ok(true)) => Ok(()),
            // Already settled, or the channel closed meanwhile.
            Ok(Ok(false)) => Err(stale()),
            Ok(Err(e)) => {
                let (queue, message_id) = (&d.queue, &d.message_id);
                debug!(%queue, %message_id, error = %e, "{what} failed: channel gone");
                Err(stale())
            }
            Err(_) => Err(BusError::Timeout {
                what: format!("{what} of message {} from queue {}", d.message_id, d.queue),
                after: SETTLE_TIMEOUT,
                last: "no answer".into(),
            }),
        }
    }
}

impl Bus for AmqpBus {
    async fn publish(&self, queue: &str, message_id: &str, body: Vec<u8>) -> Result<(), BusError> {
        let dest = self.shared.destination(queue)?;
        let message_id_short = ShortString::try_new(message_id).map_err(|e| BusError::Invalid {
            what: "message id",
            value: message_id.to_string(),
            reason: e.to_string(),
        })?;
        let what = format!("publishing message {message_id} to queue {queue}");
        let (dest, message_id_short, body) = (&dest, &message_id_short, &body);
        self.retry(queue, &what, |link| {
            self.try_publish(link, queue, dest, message_id_short, body)
        })
        .await
    }

    async fn next(&self, queue: &str) -> Option<Delivery> {
        let slot = match consumer::slot(&self.shared, queue) {
            Ok(slot) => slot,
            Err(e) => {
                error!(%queue, error = %e, "cannot consume");
                return None;
            }
        };
        let take = async {
            let mut rx = slot.rx.lock().await;
            loop {
                let d = rx.recv().await?;
                if slot.is_current(&d) {
                    return Some(d);
                }
                let message_id = &d.message_id;
                debug!(%queue, %message_id, "dropping a stale delivery; the broker redelivers it");
            }
        };
        tokio::select! {
            biased;
            _ = self.shared.shutdown_signal() => None,
            d = take => d,
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<(), BusError> {
        self.settle(d, None).await
    }

    async fn nack(&self, d: &Delivery, requeue: bool) -> Result<(), BusError> {
        self.settle(d, Some(requeue)).await
    }

    async fn ready(&self, queue: &str) -> Result<Option<u64>, BusError> {
        let dest = self.shared.destination(queue)?;
        let what = format!("counting the messages of queue {queue}");
        let dest = &dest;
        self.retry(queue, &what, |link| async move {
            self.ensure_declared(&link, queue, dest).await?;
            // A channel of its own: a refused passive declare closes it and nothing else.
            let ch = link.channel().await?;
            let count = topology::count_ready(&ch, dest).await?;
            let _ = ch.close(200, "OK".into()).await;
            Ok(Some(u64::from(count)))
        })
        .await
    }

    async fn declare(&self, queue: &str) -> Result<(), BusError> {
        let dest = self.shared.destination(queue)?;
        let what = format!("declaring queue {queue}");
        let dest = &dest;
        self.retry(queue, &what, |link| async move {
            self.ensure_declared(&link, queue, dest).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::consumer::int_header;
    use super::*;
    use crate::ConnectError;

    #[test]
    fn prefetch_by_queue_then_family_then_default() {
        let cfg = AmqpConfig {
            prefetch: HashMap::from([
                ("tasks".into(), 2),
                ("node.*".into(), 1),
                ("node.x".into(), 5),
            ]),
            ..AmqpConfig::default()
        };
        assert_eq!(cfg.prefetch_for("tasks"), 2);
        assert_eq!(cfg.prefetch_for("node.ab12"), 1);
        assert_eq!(cfg.prefetch_for("node.x"), 5);
        assert_eq!(cfg.prefetch_for("results"), DEFAULT_PREFETCH);
    }

    #[test]
    fn redacts_the_password() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
    }

    #[test]
    fn queue_arguments_are_quorum_with_parking() {
        let shared = Shared::new(AmqpConfig {
            namespace: "ns".into(),
            delivery_limit: 3,
            ..AmqpConfig::default()
        });
        let args = shared.queue_args();
        assert_eq!(str_header(&args, "x-queue-type").as_deref(), Some("quorum"));
        assert_eq!(int_header(&args, "x-delivery-limit"), Some(3));
        assert_eq!(
            str_header(&args, "x-dead-letter-exchange").as_deref(),
            Some("ns.parking")
        );
        assert_eq!(
            str_header(&args, "x-dead-letter-strategy").as_deref(),
            Some("at-least-once")
        );
        assert_eq!(
            str_header(&args, "x-overflow").as_deref(),
            Some("reject-publish")
        );
        assert_eq!(shared.broker_queue("tasks").unwrap().as_str(), "ns.tasks");
        let dest = shared.destination("node.ab12").unwrap();
        assert_eq!(
            (dest.queue.as_str(), dest.exchange.as_str()),
            ("ns.node.ab12", "ns.to.node.ab12")
        );
        for reserved in ["parked", "to.tasks"] {
            assert!(matches!(
                shared.broker_queue(reserved),
                Err(BusError::Invalid { .. })
            ));
        }
        assert!(matches!(
            shared.broker_queue(&"x".repeat(300)),
            Err(BusError::Invalid { .. })
        ));
    }

    /// A port nothing listens on refuses the connection at once: the error is the
    /// handshake's (not a timeout) and names the broker without its password.
    #[tokio::test]
    async fn refused_connection_is_a_handshake_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = AmqpConfig {
            url: format!("amqp://guest:secret@127.0.0.1:{port}/%2f"),
            ..AmqpConfig::default()
        };
        match AmqpBus::connect(cfg).await {
            Err(BusError::Connect {
                url,
                reason: reason @ ConnectError::Handshake { .. },
            }) => {
                assert_eq!(url, format!("amqp://guest:***@127.0.0.1:{port}/%2f"));
                let text = BusError::Connect { url, reason }.to_string();
                assert!(!text.contains("secret"), "{text}");
            }
            other => panic!("{:?}", other.map(|_| "connected")),
        }
    }
}
