//! The broker objects behind a logical queue, and declaring them: with
//! [`Topology::Declare`](super::Topology::Declare) (the coordinator) they are created, with
//! [`Topology::Passive`](super::Topology::Passive) (nodes, verifiers) only checked, which
//! needs no configure permission.
//!
//! Logical queue `q` is the quorum queue `{ns}.q`, reached only through the direct exchange
//! `{ns}.to.q` (bound to it with the queue's name as the key), never through the default
//! exchange: publishing through the default exchange is authorised against `amq.default`,
//! which would let any user who may publish at all publish to every queue. With one
//! exchange per queue, a user's write permission names the queues it may publish to, and
//! its read permission the queues it may consume, and because no name is both an exchange
//! and a queue, no worker can bind one queue to another's exchange.

use super::Shared;
use crate::{BusError, ConnectError};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::AMQPErrorKind;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

/// Reply code of a refused operation (a permission the user lacks).
pub(crate) const ACCESS_REFUSED: u16 = 403;
/// Reply code of an exchange or queue that does not exist.
pub(crate) const NOT_FOUND: u16 = 404;

/// The middle part of every exchange name (`{ns}.to.{queue}`); logical queues may not
/// start with it.
pub(crate) const EXCHANGE_PART: &str = "to.";

/// The broker names behind one logical queue.
#[derive(Clone, Debug)]
pub(crate) struct Destination {
    /// `{ns}.{queue}`.
    pub(crate) queue: ShortString,
    /// `{ns}.to.{queue}`, the direct exchange bound to it.
    pub(crate) exchange: ShortString,
}

/// The AMQP reply code of a channel-level (soft) error, if `e` is one.
pub(crate) fn soft_error_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(err) if matches!(err.kind(), AMQPErrorKind::Soft(_)) => {
            Some(err.get_id())
        }
        _ => None,
    }
}

/// Whether the broker refused `e`'s operation to this user (`403 ACCESS_REFUSED`).
pub(crate) fn is_access_refused(e: &lapin::Error) -> bool {
    soft_error_code(e) == Some(ACCESS_REFUSED)
}

/// Whether `e` says an exchange or queue does not exist (`404 NOT_FOUND`).
pub(crate) fn is_not_found(e: &lapin::Error) -> bool {
    soft_error_code(e) == Some(NOT_FOUND)
}

fn durable_exchange(auto_delete: bool) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        auto_delete,
        ..ExchangeDeclareOptions::default()
    }
}

/// Create `dest` on `ch`: its exchange (durable, direct; auto-deleted when its queue is
/// deleted, so the two live and go together), its queue (the work queue arguments), and
/// the binding. Idempotent. A refused step closes `ch`.
pub(crate) async fn declare_destination(
    shared: &Shared,
    ch: &Channel,
    dest: &Destination,
) -> lapin::Result<()> {
    ch.exchange_declare(
        dest.exchange.clone(),
        ExchangeKind::Direct,
        durable_exchange(true),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        dest.queue.clone(),
        QueueDeclareOptions::durable(),
        shared.queue_args(),
    )
    .await?;
    ch.queue_bind(
        dest.queue.clone(),
        dest.exchange.clone(),
        dest.queue.clone(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Check on `ch` that the exchange of `dest` exists (passive declare: needs no
/// permission). A missing one is `404 NOT_FOUND` and closes `ch`.
pub(crate) async fn check_exchange(ch: &Channel, dest: &Destination) -> lapin::Result<()> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        dest.exchange.clone(),
        ExchangeKind::Direct,
        passive,
        FieldTable::default(),
    )
    .await
}

/// Check on `ch` that the queue of `dest` exists (passive declare: needs no permission).
/// A missing one is `404 NOT_FOUND` and closes `ch`.
pub(crate) async fn check_queue(ch: &Channel, dest: &Destination) -> lapin::Result<()> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(dest.queue.clone(), passive, FieldTable::default())
        .await
        .map(|_| ())
}

/// The messages ready on the queue of `dest` (a passive declare's count: delivered and
/// unacked ones are not counted).
pub(crate) async fn count_ready(ch: &Channel, dest: &Destination) -> lapin::Result<u32> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(dest.queue.clone(), passive, FieldTable::default())
        .await
        .map(|q| q.message_count())
}

/// The parking exchange (durable fanout) and the parked queue (durable quorum, no DLX),
/// bound together.
pub(crate) async fn declare_parking(shared: &Shared, ch: &Channel) -> Result<(), ConnectError> {
    let exchange = shared.parking_exchange();
    let queue = shared.parked_queue();
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Fanout,
        durable_exchange(false),
        FieldTable::default(),
    )
    .await
    .map_err(|e| ConnectError::DeclareExchange {
        exchange: exchange.clone(),
        reason: e.to_string(),
    })?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(|e| ConnectError::DeclareQueue {
            queue: queue.clone(),
            reason: e.to_string(),
        })?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| ConnectError::Bind {
        queue: queue.clone(),
        exchange: exchange.clone(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// The error for a failed step of `what` on a live connection, when retrying cannot help:
/// the user's permissions refused it, or the broker refused it otherwise (e.g. `406
/// PRECONDITION_FAILED`, a queue that exists with other arguments).
pub(crate) fn refusal(what: String, e: &lapin::Error) -> BusError {
    if is_access_refused(e) {
        BusError::AccessRefused {
            what,
            reason: e.to_string(),
        }
    } else {
        BusError::Broker {
            what,
            reason: e.to_string(),
        }
    }
}
