//! Helpers shared by the tests that run the `tessera` binary (`cli.rs`, `farm_cli.rs`).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root (scenes live under it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `cmd` to the end, echoing its stdout and stderr to the test's output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tessera");
    eprintln!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
