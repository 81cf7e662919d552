//! `tessera` binary.
fn main() {}
