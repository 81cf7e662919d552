//! The message bus: the [`Bus`] trait, an in-process implementation for tests and the
//! embedded pipeline ([`InProcessBus`]), and the RabbitMQ one for the daemons ([`AmqpBus`]).
//!
//! Semantics follow AMQP work queues: competing consumers, manual ack, nack with or without
//! requeue, at-least-once delivery. Every consumer must be idempotent: a message can arrive
//! again after a reconnect, after a stale ack, or after a publish that was retried because
//! its confirmation was lost.
//!
//! Queue names given to the trait are logical (`tasks`, `results`, `verify`, `verdicts`,
//! `signals`, `node.<id>`); the AMQP bus maps them to broker queues under a namespace, each
//! reached through an exchange of its own, so that a broker user's write permission can
//! name the queues it may publish to ([`Topology`]).

#![warn(missing_docs)]

mod amqp;
mod in_process;

pub use amqp::{
    AmqpBus, AmqpConfig, Parked, Topology, DEFAULT_DELIVERY_LIMIT, DEFAULT_PREFETCH,
    PUBLISH_TIMEOUT,
};
pub use in_process::{InProcessBus, IN_PROCESS_QUEUE_BOUND};

use std::future::Future;
use std::time::Duration;

/// Bus failures. Messages name the queue or the operation they concern.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus was shut down (or its in-process queue dropped) while using this queue.
    #[error("bus closed while using queue {0}")]
    Closed(String),
    /// The first connection to the broker failed (later losses are recovered from).
    #[error("cannot connect to amqp broker at {url}: {reason}")]
    Connect {
        /// The broker URL, password redacted.
        url: String,
        /// Why.
        reason: ConnectError,
    },
    /// The broker refused an operation on a live connection (e.g. `406 PRECONDITION_FAILED`
    /// when a queue exists with other arguments). Retrying the same thing will not help.
    #[error("broker refused {what}: {reason}")]
    Broker {
        /// The operation and the queue it was for.
        what: String,
        /// The broker's reply.
        reason: String,
    },
    /// The broker refused this user the operation (`403 ACCESS_REFUSED`): its permissions
    /// do not cover the exchange or queue (docs/PROTOCOL.md §4.7 lists what each role
    /// needs). Retrying will not help.
    #[error("{what}: refused by the broker to this user (check its permissions): {reason}")]
    AccessRefused {
        /// The operation and the queue it was for.
        what: String,
        /// The broker's reply (`ACCESS_REFUSED - write access to exchange ...`).
        reason: String,
    },
    /// The operation did not succeed within the bound: no working broker connection, or
    /// (a [`Topology::Passive`] bus) the exchange or queue was still not declared.
    #[error("{what}: gave up after {after:?} (last error: {last})")]
    Timeout {
        /// The operation and the queue it was for.
        what: String,
        /// How long it tried.
        after: Duration,
        /// The last error seen.
        last: String,
    },
    /// The broker negatively confirmed a publish (e.g. the queue is full: `reject-publish`).
    #[error("broker nacked message {message_id} for queue {queue}")]
    Nacked {
        /// Logical queue.
        queue: String,
        /// The message id.
        message_id: String,
    },
    /// The broker returned a mandatory publish as unroutable.
    #[error("message {message_id} for queue {queue} was returned unroutable: {reason}")]
    Returned {
        /// Logical queue.
        queue: String,
        /// The message id.
        message_id: String,
        /// Reply code and text.
        reason: String,
    },
    /// The delivery cannot be settled any more: the channel it came on is gone (the
    /// connection or channel was recovered since), or it was already acked or nacked. This is
    /// harmless: the broker redelivers a message whose settlement it did not get, and
    /// consumers are idempotent.
    #[error("delivery {message_id} from queue {queue} is stale (channel gone or already settled)")]
    StaleDelivery {
        /// Logical queue.
        queue: String,
        /// The message id.
        message_id: String,
    },
    /// A queue name, message id or setting that the broker cannot take.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What kind of value (`queue name`, `message id`, ...).
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// Why a connection to the broker could not be made (the first one, in
/// [`BusError::Connect`]; a failed reconnect is logged with it). The broker's own replies
/// are kept as text: only this crate touches lapin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection or the AMQP handshake failed (refused, unknown host, bad
    /// credentials, bad virtual host).
    #[error("{reason}")]
    Handshake {
        /// The connection error.
        reason: String,
    },
    /// The broker did not finish the handshake within the bound.
    #[error("no answer within {after:?}")]
    NoAnswer {
        /// The bound.
        after: Duration,
    },
    /// The channel to declare the parking topology on could not be opened.
    #[error("opening a channel: {reason}")]
    Channel {
        /// The broker's reply.
        reason: String,
    },
    /// Declaring the parking exchange failed.
    #[error("declaring exchange {exchange}: {reason}")]
    DeclareExchange {
        /// The broker exchange.
        exchange: String,
        /// The broker's reply.
        reason: String,
    },
    /// Declaring the parked queue failed.
    #[error("declaring queue {queue}: {reason}")]
    DeclareQueue {
        /// The broker queue.
        queue: String,
        /// The broker's reply.
        reason: String,
    },
    /// Binding the parked queue to the parking exchange failed.
    #[error("binding queue {queue} to {exchange}: {reason}")]
    Bind {
        /// The broker queue.
        queue: String,
        /// The broker exchange.
        exchange: String,
        /// The broker's reply.
        reason: String,
    },
}

/// A message taken from a queue, to be acked or nacked through the bus it came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The logical queue it came from.
    pub queue: String,
    /// Message id (the task / request id).
    pub message_id: String,
    /// Body (JSON).
    pub body: Vec<u8>,
    /// How many times it was delivered before (AMQP: the quorum queue's
    /// `x-delivery-count`).
    pub redeliveries: u32,
    /// What settling it needs.
    pub(crate) settle: Settle,
}

/// The private part of a [`Delivery`]: where to send its ack.
#[derive(Debug, Clone)]
pub(crate) enum Settle {
    /// From an [`InProcessBus`]: nothing to track.
    InProcess,
    /// From an [`AmqpBus`] consumer channel.
    Amqp {
        /// The consumer channel's generation (unique per opened channel); an ack is sent
        /// only while it is the queue's current one.
        generation: u64,
        /// lapin's handle for the delivery tag on that channel.
        acker: lapin::Acker,
    },
}

/// A queue transport.
///
/// Delivery is at least once: consumers must be idempotent.
pub trait Bus: Clone + Send + Sync + 'static {
    /// Durable publish: `Ok` only once the broker confirmed it (AMQP: publisher confirms;
    /// the message is persistent and carries `message_id`). Retries across connection loss
    /// within a bound, so the same message may be enqueued twice.
    fn publish(
        &self,
        queue: &str,
        message_id: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
    /// The next delivery from `queue`. A consumer is started on the first call, with the
    /// prefetch configured for that queue. Keeps waiting across connection loss (and, AMQP,
    /// for a queue that is not declared yet); `None` only when the bus was shut down (or,
    /// AMQP, when `queue` is not a valid name or the broker refused this user access to
    /// it, which is logged as an error and kept by [`AmqpBus::consumer_error`]).
    fn next(&self, queue: &str) -> impl Future<Output = Option<Delivery>> + Send;
    /// The effect of `d` is stored: forget it. A stale delivery gives
    /// [`BusError::StaleDelivery`] (never a panic).
    fn ack(&self, d: &Delivery) -> impl Future<Output = Result<(), BusError>> + Send;
    /// Give `d` back (`requeue`, counting a redelivery) or dead-letter it to the parking
    /// queue (`!requeue`).
    fn nack(
        &self,
        d: &Delivery,
        requeue: bool,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
    /// Make sure a queue exists (used for per-node queues `node.<id>`); no-op in process.
    /// An AMQP bus with [`Topology::Passive`] declares nothing: it waits (within
    /// [`PUBLISH_TIMEOUT`]) until the queue and its exchange exist.
    fn declare(&self, queue: &str) -> impl Future<Output = Result<(), BusError>> + Send;
    /// How many messages wait on `queue`, ready for a consumer (not counting those
    /// delivered and not yet acked), when the transport can tell; `None` when it cannot.
    fn ready(&self, queue: &str) -> impl Future<Output = Result<Option<u64>, BusError>> + Send {
        let _ = queue;
        std::future::ready(Ok(None))
    }
}
