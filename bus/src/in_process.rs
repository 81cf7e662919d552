//! The in-process bus: bounded tokio channels with the same semantics as the AMQP bus,
//! for tests and the embedded pipeline behind `tessera render`.

use crate::{Bus, BusError, Delivery, Settle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Mutex as AsyncMutex};

/// Bound of each in-process queue (publishers wait when it is full).
pub const IN_PROCESS_QUEUE_BOUND: usize = 4096;

struct Queue {
    tx: mpsc::Sender<Delivery>,
    rx: AsyncMutex<mpsc::Receiver<Delivery>>,
}

/// The in-process bus: bounded tokio channels, competing consumers, requeue on nack
/// (counting a redelivery), nack without requeue to a dead-letter list.
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

    /// Messages dropped with `nack(requeue = false)` (the parking queue of this bus).
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
            settle: Settle::InProcess,
        };
        self.queue(queue)
            .tx
            .send(d)
            .await
            .map_err(|_| BusError::Closed(queue.into()))
    }

    async fn ready(&self, queue: &str) -> Result<Option<u64>, BusError> {
        let tx = &self.queue(queue).tx;
        Ok(Some((tx.max_capacity() - tx.capacity()) as u64))
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

    async fn declare(&self, queue: &str) -> Result<(), BusError> {
        self.queue(queue);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn competing_consumers_ack_and_requeue() {
        let bus = InProcessBus::new();
        bus.declare("q").await.unwrap();
        bus.publish("q", "a", b"1".to_vec()).await.unwrap();
        bus.publish("q", "b", b"2".to_vec()).await.unwrap();
        let first = bus.next("q").await.unwrap();
        assert_eq!(first.message_id, "a");
        bus.nack(&first, true).await.unwrap();
        let second = bus.next("q").await.unwrap();
        assert_eq!(second.message_id, "b");
        bus.ack(&second).await.unwrap();
        let again = bus.next("q").await.unwrap();
        assert_eq!((again.message_id.as_str(), again.redeliveries), ("a", 1));
        bus.nack(&again, false).await.unwrap();
        let dead = bus.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].queue.as_str(), dead[0].body.as_slice()),
            ("q", &b"1"[..])
        );
    }
}
