//! The verifier: re-renders the tiles that sampling picked, compares them with what nodes
//! committed to, and signs verdicts; and the offline audit of a whole proof bundle.
//!
//! Both use the same checks ([`checks`]), so what a verifier accepts is exactly what an
//! auditor can re-derive from the bundle alone. The verifier reaches a renderer only
//! through [`tessera_protocol::TileRenderer`], so it is tested with fakes.

#![warn(missing_docs)]

pub mod audit;
pub mod audit_files;
pub mod calibrate;
pub mod calibrate_table;
pub mod checks;
pub mod compare;
pub mod compare_text;
pub mod daemon;
pub mod metrics;
pub mod tolerance;
pub mod verify;

pub use audit::{audit_bundle, AuditReport, CheckResult};
pub use verify::{Verifier, VerifyError};
