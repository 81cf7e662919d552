//! The coordinator: plans jobs into tiles and batches, dispatches them over a [`bus::Bus`],
//! checks every delivered tile against its signed commitment, fixes each round's
//! commitments before revealing the round's nonce, sends samples to verifiers, applies the
//! tier's payment rules on the ledger, and assembles the proof bundle.
//!
//! The rules of a round ([`job`]) are sequenced by one sans-IO job state machine
//! ([`machine`]). [`daemon`] is `tessera coordinator`: the machines driven over the store
//! one transaction per input ([`daemon::service`]), over RabbitMQ and an HTTP API.
//! [`embedded`] is `tessera render`: that same service, with the node and verifier
//! daemons' code, in one process over the in-process bus and a private SQLite store. The
//! detection simulation (`tessera-sim`) drives the machine directly.

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
