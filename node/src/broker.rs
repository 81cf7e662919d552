//! The broker connection of the node and verifier daemons: passive (a worker's broker
//! user may not declare anything; the coordinator declares the queues), in the namespace
//! its registration names, with a prefetch per input queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use tessera_api::RegisterResponse;
use tessera_bus::{AmqpBus, AmqpConfig, BusError, Topology};
use tessera_protocol::keys::PublicKey;
use tessera_protocol::wire::{node_queue, QUEUE_TASKS, QUEUE_VERIFY};

/// The connection a worker's `connect` callback returns.
pub type Connecting = Pin<Box<dyn Future<Output = Result<AmqpBus, BusError>> + Send>>;

/// Connect to the broker at `url` once registered, with `prefetch` per queue.
pub fn passive_connect(
    url: String,
    prefetch: HashMap<String, u16>,
) -> impl FnOnce(RegisterResponse) -> Connecting {
    move |registered: RegisterResponse| {
        Box::pin(async move {
            AmqpBus::connect(AmqpConfig {
                url,
                topology: Topology::Passive,
                namespace: registered.amqp_namespace,
                prefetch,
                ..AmqpConfig::default()
            })
            .await
        })
    }
}

/// A node's prefetch: `slots` on the shared tasks queue and on its own queue.
pub fn node_prefetch(key: &PublicKey, slots: u16) -> HashMap<String, u16> {
    HashMap::from([(QUEUE_TASKS.to_string(), slots), (node_queue(key), slots)])
}

/// A verifier's prefetch: `slots` on the verify queue.
pub fn verifier_prefetch(slots: u16) -> HashMap<String, u16> {
    HashMap::from([(QUEUE_VERIFY.to_string(), slots)])
}
