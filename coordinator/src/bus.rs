//! The message bus: one trait, an in-process implementation here, AMQP (RabbitMQ) in the
//! daemons. Semantics follow AMQP work queues: competing consumers, manual ack, nack with
//! or without requeue, at-least-once delivery (consumers must be idempotent).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Mutex as AsyncMutex};

/// Bus failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus is closed.
    #[error("bus closed while using queue {0}")]
    Closed(String),
}

/// A message taken from a queue, to be acked or nacked.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The queue it came from.
    pub queue: String,
    /// Message id (the task / request id).
    pub message_id: String,
    /// Body (JSON).
    pub body: Vec<u8>,
    /// How many times it was delivered before.
    pub redeliveries: u32,
}

/// A queue transport.
pub trait Bus: Send + Sync + 'static {
    /// Publish durably: when this returns Ok the message will be delivered at least once.
    fn publish(
        &self,
        queue: &str,
        message_id: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
    /// Wait for the next message of `queue`; `None` when the bus is closed.
    fn next(&self, queue: &str) -> impl Future<Output = Option<Delivery>> + Send;
    /// The effect of `d` is stored: forget it.
    fn ack(&self, d: &Delivery) -> impl Future<Output = Result<(), BusError>> + Send;
    /// Give `d` back (`requeue`) or drop it to the dead-letter log (`!requeue`).
    fn nack(
        &self,
        d: &Delivery,
        requeue: bool,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// Bound of each in-process queue (publishers wait when it is full).
pub const IN_PROCESS_QUEUE_BOUND: usize = 4096;

struct Queue {
    tx: mpsc::Sender<Delivery>,
    rx: AsyncMutex<mpsc::Receiver<Delivery>>,
}

/// The in-process bus: bounded tokio channels, competing consumers, requeue on nack.
#[derive(Clone, Default)]
pub struct InProcessBus {
    queues: Arc<Mutex<HashMap<String, Arc<Queue>>>>,
    dead: Arc<Mutex<Vec<Delivery>>>,
}

impl InProcessBus {
    /// A new bus with no queues.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.entry(name.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(IN_PROCESS_QUEUE_BOUND);
                Arc::new(Queue {
                    tx,
                    rx: AsyncMutex::new(rx),
                })
            })
            .clone()
    }

    /// Messages dropped with `nack(requeue = false)`.
    pub fn dead_letters(&self) -> Vec<Delivery> {
        self.dead.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Bus for InProcessBus {
    async fn publish(&self, queue: &str, message_id: &str, body: Vec<u8>) -> Result<(), BusError> {
        let d = Delivery {
            queue: queue.into(),
            message_id: message_id.into(),
            body,
            redeliveries: 0,
        };
        self.queue(queue)
            .tx
            .send(d)
            .await
            .map_err(|_| BusError::Closed(queue.into()))
    }

    async fn next(&self, queue: &str) -> Option<Delivery> {
        let q = self.queue(queue);
        let mut rx = q.rx.lock().await;
        rx.recv().await
    }

    async fn ack(&self, _d: &Delivery) -> Result<(), BusError> {
        Ok(())
    }

    async fn nack(&self, d: &Delivery, requeue: bool) -> Result<(), BusError> {
        if requeue {
            let mut again = d.clone();
            again.redeliveries += 1;
            self.queue(&d.queue)
                .tx
                .send(again)
                .await
                .map_err(|_| BusError::Closed(d.queue.clone()))
        } else {
            self.dead
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(d.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn competing_consumers_ack_and_requeue() {
        let bus = InProcessBus::new();
        bus.publish("q", "a", b"1".to_vec()).await.unwrap();
        bus.publish("q", "b", b"2".to_vec()).await.unwrap();
        let first = bus.next("q").await.unwrap();
        assert_eq!(first.message_id, "a");
        bus.nack(&first, true).await.unwrap();
        let second = bus.next("q").await.unwrap();
        assert_eq!(second.message_id, "b");
        let again = bus.next("q").await.unwrap();
        assert_eq!((again.message_id.as_str(), again.redeliveries), ("a", 1));
        bus.nack(&again, false).await.unwrap();
        assert_eq!(bus.dead_letters().len(), 1);
    }
}
