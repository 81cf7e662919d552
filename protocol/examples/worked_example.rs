//! Prints every value of docs/PROTOCOL.md's Appendix A ("Worked example with real
//! values"), in the appendix's order and with its labels:
//! `cargo run -p tessera-protocol --example worked_example`.
//!
//! The values are computed in `tests/worked_example/values.rs`, which
//! `tests/worked_example.rs` shares to check that the appendix shows exactly them.

#[path = "../tests/worked_example/values.rs"]
mod values;

fn main() {
    print!("{}", values::compute());
}
