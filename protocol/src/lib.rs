//! Tessera's shared protocol: the contracts every part agrees on.
//!
//! Canonical tile bytes, determinism classes, commitment leaves, the domain-separated
//! BLAKE3 Merkle tree, ed25519 signed statements, unpredictable per-node sampling, tier
//! and payment rules, and the proof bundle. Pure code: no IO, no clock, no async runtime.
#![warn(missing_docs)]

pub mod blocks;
pub mod bundle;
pub mod canonical;
pub mod hexser;
pub mod keys;
pub mod limits;
pub mod merkle;
pub mod payments;
pub mod rules;
pub mod sampling;
pub mod statements;
pub mod tolerance;
pub mod types;
pub mod wire;

pub use types::*;
