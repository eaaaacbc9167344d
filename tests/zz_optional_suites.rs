//! The last thing `cargo test` prints: which optional suites were skipped
//! on this machine and the one command that runs them all (see
//! `tests/common/optional.rs`). Not a libtest harness (`harness = false` in
//! Cargo.toml), so its output is never captured; named `zz_` because cargo
//! runs integration tests in name order, and the lib has `doctest = false`
//! so no doc-test run comes after it. Under `LINKFRESH_REQUIRE_ALL=1` a
//! skipped suite fails here too.

#[path = "common/optional.rs"]
mod optional;

use std::process::ExitCode;

use optional::{REQUIRE_ALL, RUN_ALL, Suite, required};

fn main() -> ExitCode {
    // `cargo test -- --list` asks every target for its tests: this has none.
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    let skipped: Vec<String> = Suite::ALL
        .into_iter()
        .filter_map(|s| {
            s.probe()
                .err()
                .map(|why| format!("  {} ({why}): {}", s.name(), s.hint()))
        })
        .collect();
    if skipped.is_empty() {
        println!("\nall optional suites ran");
        return ExitCode::SUCCESS;
    }
    println!(
        "\nskipped suites, each with what enables it:\n{}\nor run `{RUN_ALL}` to run them all",
        skipped.join("\n")
    );
    if required() {
        println!("{REQUIRE_ALL}=1: no suite may be skipped");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
