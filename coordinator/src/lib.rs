//! The coordinator: plans jobs into tiles and batches, dispatches them over a [`bus::Bus`],
//! checks every delivered tile against its signed commitment, fixes each round's
//! commitments before revealing the round's nonce, sends samples to verifiers, applies the
//! tier's payment rules on the ledger, and assembles the proof bundle.
//!
//! [`embedded`] runs the whole pipeline in one process (in-process bus, local nodes and
//! verifier, SQLite store): `tessera render`. [`daemon`] is `tessera coordinator`: the same
//! rules ([`job`]) as a crash-safe state machine over the store, RabbitMQ and an HTTP API.

#![warn(missing_docs)]

pub use tessera_bus as bus;
pub mod daemon;
pub mod embedded;
pub mod job;
pub mod store;
