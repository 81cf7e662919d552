//! The coordinator: plans jobs into tiles and batches, dispatches them over a [`bus::Bus`],
//! checks every delivered tile against its signed commitment, fixes each round's
//! commitments before revealing the round's nonce, sends samples to verifiers, applies the
//! tier's payment rules on the ledger, and assembles the proof bundle.
//!
//! [`daemon`] is `tessera coordinator`: the rules ([`job`]) sequenced by one crash-safe
//! state machine over the store ([`daemon::service`]), driven over RabbitMQ and an HTTP
//! API. [`embedded`] is `tessera render`: that same service, with the node and verifier
//! daemons' code, in one process over the in-process bus and a private SQLite store.

#![warn(missing_docs)]

pub use tessera_bus as bus;
pub mod bench;
pub mod daemon;
pub mod embedded;
pub mod job;
pub mod local;
pub mod machine;
pub mod settings;
pub mod store;
